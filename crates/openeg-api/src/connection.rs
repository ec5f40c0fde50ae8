//! Target connections: request validation for CreateConnection and
//! UpdateConnection, the Kafka / RocketMQ detail objects, and broker address parsing shared with
//! MQ-backed event sources.
//!
//! Nothing here does I/O. Secrets (`password`) are validated for presence only; the server
//! seals them before storing.

pub use crate::field::flag_value;
use crate::field::Fields;
use crate::validate::{self, NamePattern};
use crate::EgError;
use serde_json::{Map, Value};

/// `description` limit.
pub const DESCRIPTION_MAX: usize = 255;
/// `vpc_id` / `subnet_id` limit (`docs/limits.md`).
pub const VPC_MAX: usize = 128;
/// Limit of identifier-like detail strings (instance ids, user names) [dec].
pub const FIELD_MAX: usize = 256;
/// Limit of broker address lists (`addr`, `namesrv_address`) [dec].
pub const ADDRESS_MAX: usize = 1024;
/// Kafka `security_protocol` values [dec: the reference leaves the enum open].
pub const SECURITY_PROTOCOLS: &[&str] = &["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];
/// Kafka `acks` values [doc].
pub const ACKS: &[&str] = &["0", "1", "all"];

/// `type` of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionType {
    Webhook,
    Kafka,
    Rocketmq,
}

impl ConnectionType {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionType::Webhook => "WEBHOOK",
            ConnectionType::Kafka => "KAFKA",
            ConnectionType::Rocketmq => "ROCKETMQ",
        }
    }

    pub fn parse(s: &str) -> Option<ConnectionType> {
        match s {
            "WEBHOOK" => Some(ConnectionType::Webhook),
            "KAFKA" => Some(ConnectionType::Kafka),
            "ROCKETMQ" => Some(ConnectionType::Rocketmq),
            _ => None,
        }
    }

    /// The detail member this type carries, if any.
    pub fn detail_key(self) -> Option<&'static str> {
        match self {
            ConnectionType::Webhook => None,
            ConnectionType::Kafka => Some("kafka_detail"),
            ConnectionType::Rocketmq => Some("rocketmq_detail"),
        }
    }
}

/// A validated CreateConnection body. Details are normalized (defaults filled, unknown members
/// dropped) and still hold plaintext secrets.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateConnection {
    pub name: String,
    pub description: String,
    pub vpc_id: String,
    pub subnet_id: String,
    pub conn_type: ConnectionType,
    /// Present exactly when `conn_type` is KAFKA.
    pub kafka_detail: Option<Map<String, Value>>,
    /// Present exactly when `conn_type` is ROCKETMQ.
    pub rocketmq_detail: Option<Map<String, Value>>,
}

impl CreateConnection {
    /// `kafka_detail.instance_id` or `rocketmq_detail.instance_id`.
    pub fn instance_id(&self) -> Option<&str> {
        self.kafka_detail
            .as_ref()
            .or(self.rocketmq_detail.as_ref())
            .and_then(|d| d.get("instance_id"))
            .and_then(Value::as_str)
    }

    /// The broker address list to check for reachability (`addr` of the detail).
    pub fn addr(&self) -> Option<&str> {
        self.kafka_detail
            .as_ref()
            .or(self.rocketmq_detail.as_ref())
            .and_then(|d| d.get("addr"))
            .and_then(Value::as_str)
    }
}

/// Checks a connection name: the mixed-case name pattern, 1–128, not `default`.
pub fn check_name(name: &str) -> Result<(), EgError> {
    validate::name("name", name, NamePattern::Mixed)?;
    if name == "default" {
        return Err(EgError::param("name must not be default"));
    }
    Ok(())
}

/// Validates a CreateConnection body; fields in the order EG documents them, first
/// violation wins.
pub fn parse_create(body: &Value) -> Result<CreateConnection, EgError> {
    let src = Fields::body(body)?;
    let name = src.req_str("name")?;
    check_name(name)?;
    let description = src
        .opt_str_max("description", DESCRIPTION_MAX)?
        .unwrap_or("");
    let vpc_id = src.req_str_max("vpc_id", VPC_MAX)?;
    let subnet_id = src.req_str_max("subnet_id", VPC_MAX)?;
    let conn_type = parse_type(src.get("type"))?;
    let mut kafka_detail = None;
    let mut rocketmq_detail = None;
    match conn_type {
        ConnectionType::Webhook => {}
        ConnectionType::Kafka => {
            let d = src
                .nested("kafka_detail")?
                .ok_or_else(|| EgError::param("kafka_detail is required for KAFKA connections"))?;
            kafka_detail = Some(kafka_detail_create(&d)?);
        }
        ConnectionType::Rocketmq => {
            let d = src.nested("rocketmq_detail")?.ok_or_else(|| {
                EgError::param("rocketmq_detail is required for ROCKETMQ connections")
            })?;
            rocketmq_detail = Some(rocketmq_detail_create(&d)?);
        }
    }
    Ok(CreateConnection {
        name: name.to_string(),
        description: description.to_string(),
        vpc_id: vpc_id.to_string(),
        subnet_id: subnet_id.to_string(),
        conn_type,
        kafka_detail,
        rocketmq_detail,
    })
}

/// `type`: absent → WEBHOOK. The SDK models `type` as an attribute-less class that serializes
/// to `{}` (the reference's example shows `"type": {}`), so an empty object also means the
/// default [dec].
fn parse_type(v: Option<&Value>) -> Result<ConnectionType, EgError> {
    match v {
        None | Some(Value::Null) => Ok(ConnectionType::Webhook),
        Some(Value::Object(m)) if m.is_empty() => Ok(ConnectionType::Webhook),
        Some(Value::String(s)) => ConnectionType::parse(s)
            .ok_or_else(|| EgError::param("type must be one of WEBHOOK, KAFKA, ROCKETMQ")),
        Some(_) => Err(EgError::param("type must be a string")),
    }
}

// ---------------------------------------------------------------- detail helpers

fn non_empty(o: &Map<String, Value>, key: &str) -> bool {
    o.get(key)
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
}

fn copy_str(out: &mut Map<String, Value>, key: &str, v: Option<&str>) {
    if let Some(s) = v {
        out.insert(key.to_string(), Value::String(s.to_string()));
    }
}

// ---------------------------------------------------------------- Kafka

/// `d` is the `kafka_detail` object.
fn kafka_detail_create(d: &Fields) -> Result<Map<String, Value>, EgError> {
    let instance_id = d.req_str_max("instance_id", FIELD_MAX)?;
    let addr = d.req_str_max("addr", ADDRESS_MAX)?;
    parse_addr_list(addr).map_err(|e| EgError::param(format!("{}: {e}", d.at("addr"))))?;
    let protocol = d
        .opt_str_max("security_protocol", 32)?
        .filter(|s| !s.is_empty());
    if let Some(p) = protocol {
        if !SECURITY_PROTOCOLS.contains(&p) {
            return Err(EgError::param(format!(
                "{} must be one of {}",
                d.at("security_protocol"),
                SECURITY_PROTOCOLS.join(", ")
            )));
        }
    }
    let sasl = d.opt_bool("enable_sasl_ssl")?.unwrap_or(false);
    let user_name = d.opt_str_max("user_name", FIELD_MAX)?;
    let password = d.opt_str_max("password", FIELD_MAX)?;
    let acks = kafka_acks(d.map().get("acks"))?;
    let protocol = protocol.unwrap_or(if sasl { "SASL_SSL" } else { "PLAINTEXT" });
    if kafka_needs_credentials(sasl, protocol) {
        if user_name.is_none_or(str::is_empty) {
            return Err(EgError::param(format!(
                "{} is required when SASL is enabled",
                d.at("user_name")
            )));
        }
        if password.is_none_or(str::is_empty) {
            return Err(EgError::param(format!(
                "{} is required when SASL is enabled",
                d.at("password")
            )));
        }
    }
    let mut out = Map::new();
    copy_str(&mut out, "instance_id", Some(instance_id));
    copy_str(&mut out, "addr", Some(addr));
    copy_str(&mut out, "security_protocol", Some(protocol));
    out.insert("enable_sasl_ssl".into(), Value::Bool(sasl));
    copy_str(&mut out, "user_name", user_name);
    copy_str(&mut out, "password", password);
    copy_str(&mut out, "acks", Some(acks));
    Ok(out)
}

/// SASL needs a user name and password.
fn kafka_needs_credentials(enable_sasl_ssl: bool, protocol: &str) -> bool {
    enable_sasl_ssl || protocol.starts_with("SASL_")
}

/// `acks`: `"0"`, `"1"`, `"all"`; default `"1"` [ug]. The integers 0 and 1 are accepted as
/// aliases [dec].
fn kafka_acks(v: Option<&Value>) -> Result<&'static str, EgError> {
    let bad = || EgError::param("kafka_detail.acks must be one of 0, 1, all");
    match v {
        None | Some(Value::Null) => Ok("1"),
        Some(Value::String(s)) if s.is_empty() => Ok("1"),
        Some(Value::String(s)) => ACKS.iter().copied().find(|a| a == s).ok_or_else(bad),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) => Ok("0"),
            Some(1) => Ok("1"),
            _ => Err(bad()),
        },
        Some(_) => Err(bad()),
    }
}

// ---------------------------------------------------------------- RocketMQ

/// `d` is the `rocketmq_detail` object.
fn rocketmq_detail_create(d: &Fields) -> Result<Map<String, Value>, EgError> {
    let instance_id = d.req_str_max("instance_id", FIELD_MAX)?;
    let addr = d.req_str_max("addr", ADDRESS_MAX)?;
    parse_addr_list(addr).map_err(|e| EgError::param(format!("{}: {e}", d.at("addr"))))?;
    let use_tls = d.req_bool("use_tls")?;
    let acl = d.opt_flag("enable_acl")?.unwrap_or(false);
    let user_name = d.opt_str_max("user_name", FIELD_MAX)?;
    let password = d.opt_str_max("password", FIELD_MAX)?;
    rocketmq_acl_credentials(acl, user_name, password)?;
    let mut out = Map::new();
    copy_str(&mut out, "instance_id", Some(instance_id));
    copy_str(&mut out, "addr", Some(addr));
    out.insert("use_tls".into(), Value::Bool(use_tls));
    // Echo the submitted form (bool or string: the reference types it as a string).
    out.insert(
        "enable_acl".into(),
        d.get("enable_acl").cloned().unwrap_or(Value::Bool(false)),
    );
    copy_str(&mut out, "user_name", user_name);
    copy_str(&mut out, "password", password);
    Ok(out)
}

fn rocketmq_acl_credentials(
    acl: bool,
    user: Option<&str>,
    password: Option<&str>,
) -> Result<(), EgError> {
    if acl {
        if user.is_none_or(str::is_empty) {
            return Err(EgError::param(
                "rocketmq_detail.user_name is required when enable_acl is true",
            ));
        }
        if password.is_none_or(str::is_empty) {
            return Err(EgError::param(
                "rocketmq_detail.password is required when enable_acl is true",
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- update

/// A validated UpdateConnection body. Detail patches hold only the members that change
/// (plaintext secrets or `******`); the server seals them against the stored detail and
/// overlays them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UpdateConnection {
    pub description: Option<String>,
    pub kafka_patch: Option<Map<String, Value>>,
    pub rocketmq_patch: Option<Map<String, Value>>,
}

/// Validates an UpdateConnection body against the stored connection. `description` may
/// change; KAFKA connections also take `kafka_detail.user_name`/`password`, ROCKETMQ ones
/// `rocketmq_detail.use_tls`/`enable_acl`/`user_name`/`password` [doc]. Other detail members
/// (instance, addresses, protocol) are immutable: sending them is fine only with the stored
/// value. Name and type are immutable likewise.
pub fn parse_update(
    body: &Value,
    stored_name: &str,
    stored_type: ConnectionType,
    stored_detail: Option<&Map<String, Value>>,
) -> Result<UpdateConnection, EgError> {
    let src = Fields::body(body)?;
    let mut out = UpdateConnection::default();
    if let Some(n) = src.opt_str("name")? {
        if n != stored_name {
            return Err(EgError::param("name cannot be changed"));
        }
    }
    if let Some(d) = src.opt_str_max("description", DESCRIPTION_MAX)? {
        out.description = Some(d.to_string());
    }
    match src.get("type") {
        None => {}
        Some(Value::Object(m)) if m.is_empty() => {}
        Some(v) if v.as_str() != Some(stored_type.as_str()) => {
            return Err(EgError::param("type cannot be changed"));
        }
        Some(_) => {}
    }
    for key in ["vpc_id", "subnet_id"] {
        // Immutable too; accepted when unchanged.
        src.opt_str(key)?;
    }
    let empty = Map::new();
    let stored = stored_detail.unwrap_or(&empty);
    if let Some(d) = src.nested("kafka_detail")? {
        if stored_type != ConnectionType::Kafka {
            return Err(EgError::param(
                "kafka_detail applies to KAFKA connections only",
            ));
        }
        out.kafka_patch = Some(kafka_patch(&d, stored)?);
    }
    if let Some(d) = src.nested("rocketmq_detail")? {
        if stored_type != ConnectionType::Rocketmq {
            return Err(EgError::param(
                "rocketmq_detail applies to ROCKETMQ connections only",
            ));
        }
        out.rocketmq_patch = Some(rocketmq_patch(&d, stored)?);
    }
    Ok(out)
}

/// Fails when `key` is present in `d` with a value other than the stored one.
fn immutable(d: &Fields, stored: &Map<String, Value>, key: &str) -> Result<(), EgError> {
    match d.get(key) {
        None => Ok(()),
        Some(v) if Some(v) == stored.get(key) => Ok(()),
        // An empty string is the SDK's way of leaving some members unset.
        Some(Value::String(s)) if s.is_empty() => Ok(()),
        Some(_) => Err(EgError::param(format!("{} cannot be changed", d.at(key)))),
    }
}

/// The effective value after the update: the patch's, else the stored one.
fn effective<'a>(patch: &'a Map<String, Value>, stored: &'a Map<String, Value>, key: &str) -> bool {
    if patch.contains_key(key) {
        non_empty(patch, key)
    } else {
        non_empty(stored, key)
    }
}

/// `d` is the `kafka_detail` object.
fn kafka_patch(d: &Fields, stored: &Map<String, Value>) -> Result<Map<String, Value>, EgError> {
    for key in [
        "instance_id",
        "addr",
        "security_protocol",
        "enable_sasl_ssl",
        "acks",
    ] {
        immutable(d, stored, key)?;
    }
    let mut patch = Map::new();
    if let Some(u) = d.opt_str_max("user_name", FIELD_MAX)? {
        patch.insert("user_name".into(), u.into());
    }
    if let Some(p) = d.opt_str_max("password", FIELD_MAX)? {
        patch.insert("password".into(), p.into());
    }
    let sasl = stored
        .get("enable_sasl_ssl")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let protocol = stored
        .get("security_protocol")
        .and_then(Value::as_str)
        .unwrap_or("PLAINTEXT");
    if kafka_needs_credentials(sasl, protocol) {
        if !effective(&patch, stored, "user_name") {
            return Err(EgError::param(format!(
                "{} is required when SASL is enabled",
                d.at("user_name")
            )));
        }
        if !effective(&patch, stored, "password") {
            return Err(EgError::param(format!(
                "{} is required when SASL is enabled",
                d.at("password")
            )));
        }
    }
    Ok(patch)
}

/// `d` is the `rocketmq_detail` object.
fn rocketmq_patch(d: &Fields, stored: &Map<String, Value>) -> Result<Map<String, Value>, EgError> {
    for key in ["instance_id", "addr"] {
        immutable(d, stored, key)?;
    }
    let mut patch = Map::new();
    if let Some(t) = d.opt_bool("use_tls")? {
        patch.insert("use_tls".into(), t.into());
    }
    if d.opt_flag("enable_acl")?.is_some() {
        if let Some(v) = d.get("enable_acl") {
            patch.insert("enable_acl".into(), v.clone());
        }
    }
    if let Some(u) = d.opt_str_max("user_name", FIELD_MAX)? {
        patch.insert("user_name".into(), u.into());
    }
    if let Some(p) = d.opt_str_max("password", FIELD_MAX)? {
        patch.insert("password".into(), p.into());
    }
    let acl = patch
        .get("enable_acl")
        .or(stored.get("enable_acl"))
        .and_then(flag_value)
        .unwrap_or(false);
    if acl {
        if !effective(&patch, stored, "user_name") {
            return Err(EgError::param(format!(
                "{} is required when enable_acl is true",
                d.at("user_name")
            )));
        }
        if !effective(&patch, stored, "password") {
            return Err(EgError::param(format!(
                "{} is required when enable_acl is true",
                d.at("password")
            )));
        }
    }
    Ok(patch)
}

// ---------------------------------------------------------------- addresses

/// Parses one `host:port` (`[v6]:port` for IPv6 literals). Hosts are DNS names or IP literals
/// (`A-Za-z0-9.-_`); ports 1–65535.
pub fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let s = s.trim();
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest
            .split_once("]:")
            .ok_or_else(|| format!("{s:?} is not host:port"))?;
        if h.is_empty()
            || !h
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(format!("{s:?} has an invalid IPv6 literal"));
        }
        (h, p)
    } else {
        let (h, p) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?} is not host:port"))?;
        let ok = !h.is_empty()
            && h.len() <= 253
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !ok {
            return Err(format!("{s:?} has an invalid host"));
        }
        (h, p)
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.chars().all(|c| c.is_ascii_digit()) => Ok((host.to_string(), p)),
        _ => Err(format!("{s:?} has an invalid port")),
    }
}

/// Parses a broker address list: `host:port` entries separated by `,` or `;` (Kafka bootstrap
/// servers use commas, RocketMQ name servers semicolons). At least one entry.
pub fn parse_addr_list(s: &str) -> Result<Vec<(String, u16)>, String> {
    let parts: Vec<&str> = s
        .split([',', ';'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        return Err("at least one host:port is required".into());
    }
    parts.into_iter().map(parse_host_port).collect()
}

/// The first `host:port` of an address list, for reachability checks.
pub fn first_addr(s: &str) -> Option<(String, u16)> {
    parse_addr_list(s).ok().and_then(|v| v.into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({"name": "conn-1", "vpc_id": "vpc", "subnet_id": "subnet"})
    }

    fn with(mut v: Value, key: &str, val: Value) -> Value {
        v[key] = val;
        v
    }

    fn kafka(detail: Value) -> Value {
        with(with(base(), "type", json!("KAFKA")), "kafka_detail", detail)
    }

    fn rocket(detail: Value) -> Value {
        with(
            with(base(), "type", json!("ROCKETMQ")),
            "rocketmq_detail",
            detail,
        )
    }

    fn err(v: &Value) -> String {
        let e = parse_create(v).unwrap_err();
        assert_eq!((e.status, e.code), (400, "EG.00513000"), "{e}");
        e.msg
    }

    #[test]
    fn webhook_defaults() {
        let c = parse_create(&base()).unwrap();
        assert_eq!(c.conn_type, ConnectionType::Webhook);
        assert_eq!(c.description, "");
        assert!(c.kafka_detail.is_none() && c.rocketmq_detail.is_none());
        assert_eq!(c.instance_id(), None);
        // The SDK's attribute-less ConnectionType serializes to {}.
        let c = parse_create(&with(base(), "type", json!({}))).unwrap();
        assert_eq!(c.conn_type, ConnectionType::Webhook);
        let c = parse_create(&with(base(), "type", json!("WEBHOOK"))).unwrap();
        assert_eq!(c.conn_type, ConnectionType::Webhook);
        // A detail of another type is ignored.
        let c = parse_create(&with(base(), "kafka_detail", json!({"x": 1}))).unwrap();
        assert!(c.kafka_detail.is_none());
    }

    #[test]
    fn names() {
        assert!(parse_create(&with(base(), "name", json!("A.b_c-9"))).is_ok());
        assert!(parse_create(&with(base(), "name", json!("a".repeat(128)))).is_ok());
        assert!(err(&with(base(), "name", json!("a".repeat(129)))).contains("128"));
        assert!(err(&with(base(), "name", json!("default"))).contains("default"));
        assert!(parse_create(&with(base(), "name", json!("Default"))).is_ok());
        err(&with(base(), "name", json!("-x")));
        err(&with(base(), "name", json!("a b")));
        err(&with(base(), "name", json!("")));
        err(&with(base(), "name", json!(7)));
        let mut v = base();
        v.as_object_mut().unwrap().remove("name");
        assert!(err(&v).contains("name is required"));
    }

    #[test]
    fn common_fields() {
        assert!(parse_create(&with(base(), "description", json!("d".repeat(255)))).is_ok());
        assert!(err(&with(base(), "description", json!("d".repeat(256)))).contains("description"));
        for key in ["vpc_id", "subnet_id"] {
            let mut v = base();
            v.as_object_mut().unwrap().remove(key);
            assert!(err(&v).contains(&format!("{key} is required")));
            assert!(parse_create(&with(base(), key, json!("v".repeat(128)))).is_ok());
            assert!(err(&with(base(), key, json!("v".repeat(129)))).contains(key));
            err(&with(base(), key, json!("")));
        }
        assert!(err(&with(base(), "type", json!("MQTT"))).contains("type"));
        assert!(err(&with(base(), "type", json!(3))).contains("type"));
        assert!(err(&json!([])).contains("JSON object"));
    }

    #[test]
    fn order_is_table_order() {
        // Bad name and bad vpc: the name is reported.
        let v = json!({"name": "-x", "vpc_id": "v".repeat(200), "subnet_id": "s"});
        assert!(err(&v).contains("name"));
        // Bad vpc and bad type: vpc first.
        let v = json!({"name": "x", "vpc_id": "v".repeat(200), "subnet_id": "s", "type": "X"});
        assert!(err(&v).contains("vpc_id"));
    }

    #[test]
    fn kafka_valid() {
        let c = parse_create(&kafka(json!({
            "instance_id": "inst", "addr": "10.0.0.1:9092,10.0.0.2:9092",
            "security_protocol": "SASL_SSL", "enable_sasl_ssl": true,
            "user_name": "u", "password": "p", "acks": "all", "extra": 1
        })))
        .unwrap();
        let d = c.kafka_detail.as_ref().unwrap();
        assert_eq!(d["acks"], "all");
        assert_eq!(d["password"], "p");
        assert!(d.get("extra").is_none());
        assert_eq!(c.instance_id(), Some("inst"));
        assert_eq!(
            first_addr(c.addr().unwrap()),
            Some(("10.0.0.1".into(), 9092))
        );

        let c = parse_create(&kafka(json!({"instance_id": "i", "addr": "h:9"}))).unwrap();
        let d = c.kafka_detail.unwrap();
        assert_eq!(d["acks"], "1");
        assert_eq!(d["enable_sasl_ssl"], false);
        assert_eq!(d["security_protocol"], "PLAINTEXT");
        assert!(d.get("password").is_none());
        let c = parse_create(&kafka(
            json!({"instance_id": "i", "addr": "h:9", "acks": 0}),
        ))
        .unwrap();
        assert_eq!(c.kafka_detail.unwrap()["acks"], "0");
    }

    #[test]
    fn kafka_invalid() {
        assert!(err(&with(base(), "type", json!("KAFKA"))).contains("kafka_detail is required"));
        assert!(err(&kafka(json!("x"))).contains("kafka_detail"));
        assert!(err(&kafka(json!({"addr": "h:9"}))).contains("instance_id"));
        assert!(err(&kafka(json!({"instance_id": "i"}))).contains("addr"));
        assert!(err(&kafka(json!({"instance_id": "i", "addr": "nohost"}))).contains("addr"));
        assert!(err(&kafka(json!({"instance_id": "i", "addr": "h:0"}))).contains("addr"));
        assert!(err(&kafka(json!({"instance_id": "i", "addr": "h:70000"}))).contains("addr"));
        assert!(err(&kafka(
            json!({"instance_id": "i", "addr": "h:9", "enable_sasl_ssl": "yes"})
        ))
        .contains("enable_sasl_ssl"));
        assert!(err(&kafka(
            json!({"instance_id": "i", "addr": "h:9", "enable_sasl_ssl": true})
        ))
        .contains("user_name"));
        assert!(err(&kafka(
            json!({"instance_id": "i", "addr": "h:9", "enable_sasl_ssl": true,
                                  "user_name": "u"})
        ))
        .contains("password"));
        assert!(err(&kafka(
            json!({"instance_id": "i", "addr": "h:9", "enable_sasl_ssl": true,
                                  "user_name": "u", "password": ""})
        ))
        .contains("password"));
        assert!(err(&kafka(json!({"instance_id": "i", "addr": "h:9",
                                  "security_protocol": "SASL_PLAINTEXT"})))
        .contains("user_name"));
        assert!(err(&kafka(
            json!({"instance_id": "i", "addr": "h:9", "security_protocol": "TLS"})
        ))
        .contains("security_protocol"));
        assert!(err(&kafka(
            json!({"instance_id": "i", "addr": "h:9", "acks": "2"})
        ))
        .contains("acks"));
        assert!(err(&kafka(
            json!({"instance_id": "i", "addr": "h:9", "acks": true})
        ))
        .contains("acks"));
        assert!(err(&kafka(
            json!({"instance_id": "i".repeat(257), "addr": "h:9"})
        ))
        .contains("instance_id"));
    }

    #[test]
    fn rocketmq_valid_and_invalid() {
        let c = parse_create(&rocket(
            json!({"instance_id": "r", "addr": "h:8100;h2:8100",
                                            "use_tls": false, "enable_acl": "false"}),
        ))
        .unwrap();
        let d = c.rocketmq_detail.as_ref().unwrap();
        assert_eq!(d["enable_acl"], "false");
        assert_eq!(c.instance_id(), Some("r"));
        let ok = parse_create(&rocket(
            json!({"instance_id": "r", "addr": "h:8100", "use_tls": true,
                                             "enable_acl": true, "user_name": "u", "password": "p"}),
        ));
        assert!(ok.is_ok());
        let ok = parse_create(&rocket(
            json!({"instance_id": "r", "addr": "h:8100", "use_tls": true}),
        ));
        assert_eq!(ok.unwrap().rocketmq_detail.unwrap()["enable_acl"], false);

        assert!(
            err(&with(base(), "type", json!("ROCKETMQ"))).contains("rocketmq_detail is required")
        );
        assert!(err(&rocket(json!({"addr": "h:1", "use_tls": true}))).contains("instance_id"));
        assert!(err(&rocket(json!({"instance_id": "r", "use_tls": true}))).contains("addr"));
        assert!(err(&rocket(json!({"instance_id": "r", "addr": "h:1"}))).contains("use_tls"));
        assert!(err(&rocket(
            json!({"instance_id": "r", "addr": "h:1", "use_tls": "x"})
        ))
        .contains("use_tls"));
        assert!(err(&rocket(
            json!({"instance_id": "r", "addr": "h:1", "use_tls": true,
                                   "enable_acl": "maybe"})
        ))
        .contains("enable_acl"));
        assert!(err(&rocket(
            json!({"instance_id": "r", "addr": "h:1", "use_tls": true,
                                   "enable_acl": "true", "user_name": "u"})
        ))
        .contains("password"));
        assert!(err(&rocket(
            json!({"instance_id": "r", "addr": "h:1", "use_tls": true,
                                   "enable_acl": true, "password": "p"})
        ))
        .contains("user_name"));
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_host_port("h:1").unwrap(), ("h".into(), 1));
        assert_eq!(parse_host_port("[::1]:9092").unwrap(), ("::1".into(), 9092));
        assert_eq!(parse_addr_list(" a:1 , b:2;c:3 ").unwrap().len(), 3);
        assert!(parse_addr_list("").is_err());
        assert!(parse_addr_list(",;").is_err());
        assert!(parse_host_port(":9").is_err());
        assert!(parse_host_port("h:").is_err());
        assert!(parse_host_port("h:+9").is_err());
        assert!(parse_host_port("h/x:9").is_err());
        assert!(parse_host_port("[zz]:9").is_err());
        assert_eq!(first_addr("x"), None);
    }

    #[test]
    fn update_rules() {
        let kd = json!({"instance_id": "i", "addr": "h:9", "security_protocol": "SASL_SSL",
                        "enable_sasl_ssl": true, "user_name": "u", "password": "ENC", "acks": "1"});
        let kd = kd.as_object().unwrap();
        let u = parse_update(
            &json!({"description": "x"}),
            "c",
            ConnectionType::Kafka,
            Some(kd),
        )
        .unwrap();
        assert_eq!(u.description.as_deref(), Some("x"));
        assert!(u.kafka_patch.is_none());
        let u = parse_update(
            &json!({"kafka_detail": {"user_name": "u2", "password": "new", "addr": "h:9"}}),
            "c",
            ConnectionType::Kafka,
            Some(kd),
        )
        .unwrap();
        let p = u.kafka_patch.unwrap();
        assert_eq!(
            (p["user_name"].as_str(), p["password"].as_str()),
            (Some("u2"), Some("new"))
        );
        // Immutable members.
        let e = parse_update(
            &json!({"kafka_detail": {"addr": "other:9"}}),
            "c",
            ConnectionType::Kafka,
            Some(kd),
        )
        .unwrap_err();
        assert!(e.msg.contains("addr cannot be changed"));
        let e = parse_update(
            &json!({"kafka_detail": {"password": ""}}),
            "c",
            ConnectionType::Kafka,
            Some(kd),
        )
        .unwrap_err();
        assert!(e.msg.contains("password"));
        assert!(parse_update(&json!({"name": "d"}), "c", ConnectionType::Kafka, Some(kd)).is_err());
        assert!(parse_update(&json!({"name": "c"}), "c", ConnectionType::Kafka, Some(kd)).is_ok());
        assert!(parse_update(
            &json!({"type": "WEBHOOK"}),
            "c",
            ConnectionType::Kafka,
            Some(kd)
        )
        .is_err());
        assert!(parse_update(
            &json!({"description": "d".repeat(256)}),
            "c",
            ConnectionType::Kafka,
            Some(kd)
        )
        .is_err());
        // Details of another type.
        assert!(parse_update(
            &json!({"kafka_detail": {}}),
            "c",
            ConnectionType::Webhook,
            None
        )
        .is_err());
        assert!(parse_update(
            &json!({"rocketmq_detail": {}}),
            "c",
            ConnectionType::Kafka,
            Some(kd)
        )
        .is_err());

        let rd = json!({"instance_id": "r", "addr": "h:1", "use_tls": false, "enable_acl": false});
        let rd = rd.as_object().unwrap();
        let e = parse_update(
            &json!({"rocketmq_detail": {"enable_acl": "true"}}),
            "c",
            ConnectionType::Rocketmq,
            Some(rd),
        )
        .unwrap_err();
        assert!(e.msg.contains("user_name"));
        let u = parse_update(
            &json!({"rocketmq_detail": {"instance_id": "r", "addr": "h:1", "use_tls": true,
                                        "enable_acl": "true", "user_name": "u", "password": "p"}}),
            "c",
            ConnectionType::Rocketmq,
            Some(rd),
        )
        .unwrap();
        assert_eq!(u.rocketmq_patch.unwrap()["use_tls"], true);
        assert!(parse_update(
            &json!({"rocketmq_detail": {"addr": "x:1"}}),
            "c",
            ConnectionType::Rocketmq,
            Some(rd)
        )
        .is_err());
    }
}
