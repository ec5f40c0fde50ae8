//! Custom event sources: request validation for CreateEventSource and
//! UpdateEventSource and the MQ `detail` objects (RocketMQ per the SDK's RocketMqDetail,
//! RabbitMQ per the reference).
//!
//! Nothing here does I/O: the caller looks the channel up first and says whether it is usable.
//! Secrets (`secret_key`, `password`) are validated for presence only; the server seals them.

use crate::connection::{parse_addr_list, parse_host_port, ADDRESS_MAX, FIELD_MAX};
use crate::field::Fields;
use crate::validate::{self, NamePattern};
use crate::EgError;
use serde_json::{Map, Value};

/// `description` limit.
pub const DESCRIPTION_MAX: usize = 255;
/// Compact-serialized size limit of a `detail` object [dec].
pub const DETAIL_MAX_BYTES: usize = 4096;
/// Default AMQP ports.
pub const AMQP_PORT: u16 = 5672;
pub const AMQPS_PORT: u16 = 5671;

/// `type` of a custom source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceType {
    Application,
    Rabbitmq,
    Rocketmq,
}

impl SourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceType::Application => "APPLICATION",
            SourceType::Rabbitmq => "RABBITMQ",
            SourceType::Rocketmq => "ROCKETMQ",
        }
    }

    pub fn parse(s: &str) -> Option<SourceType> {
        match s {
            "APPLICATION" => Some(SourceType::Application),
            "RABBITMQ" => Some(SourceType::Rabbitmq),
            "ROCKETMQ" => Some(SourceType::Rocketmq),
            _ => None,
        }
    }

    /// The per-type quota besides `SOURCE` (`docs/limits.md`).
    pub fn quota(self) -> Option<&'static str> {
        match self {
            SourceType::Application => None,
            SourceType::Rabbitmq => Some("SOURCE_RABBITMQ"),
            SourceType::Rocketmq => Some("SOURCE_ROCKETMQ"),
        }
    }
}

/// A validated CreateEventSource body; `detail` is normalized and still holds plaintext
/// secrets.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateSource {
    pub name: String,
    pub description: String,
    pub channel_id: String,
    pub source_type: SourceType,
    pub detail: Map<String, Value>,
}

/// A validated UpdateEventSource body.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UpdateSource {
    pub description: Option<String>,
    /// The replacement detail (whole object; `******` secrets mean "unchanged").
    pub detail: Option<Map<String, Value>>,
}

/// Checks a custom source name: lower-case pattern, 1–128, not `hc.`-prefixed.
pub fn check_name(name: &str) -> Result<(), EgError> {
    validate::name("name", name, NamePattern::Lower)?;
    if name.starts_with("hc.") {
        return Err(EgError::param("name must not start with hc."));
    }
    Ok(())
}

/// Validates a CreateEventSource body in table order (`name`, `description`, `channel_id`,
/// `type`, `detail`); first violation wins. `channel_usable(id)` tells whether `id` names a
/// custom channel of the project; a missing, default or unknown channel is `EG.00513005`.
pub fn parse_create(
    body: &Value,
    channel_usable: impl Fn(&str) -> bool,
) -> Result<CreateSource, EgError> {
    let src = Fields::body(body)?;
    let name = src.req_str("name")?;
    check_name(name)?;
    let description = src
        .opt_str_max("description", DESCRIPTION_MAX)?
        .unwrap_or("");
    let channel_id = match src.opt_str("channel_id")? {
        Some(c) if !c.is_empty() => c,
        _ => {
            return Err(EgError::channel(
                "channel_id is required (a custom channel)",
            ))
        }
    };
    if !channel_usable(channel_id) {
        return Err(EgError::channel(format!(
            "channel {channel_id} is not a custom channel of this project"
        )));
    }
    let source_type = match src.opt_str("type")? {
        None | Some("") => SourceType::Application,
        Some(t) => SourceType::parse(t)
            .ok_or_else(|| EgError::param("type must be one of APPLICATION, RABBITMQ, ROCKETMQ"))?,
    };
    let detail = parse_detail(source_type, src.get("detail"))?;
    Ok(CreateSource {
        name: name.to_string(),
        description: description.to_string(),
        channel_id: channel_id.to_string(),
        source_type,
        detail,
    })
}

/// Validates an UpdateEventSource body: `description` and `detail` may change; `name`,
/// `channel_id` and `type` are immutable (accepted only when unchanged).
pub fn parse_update(
    body: &Value,
    stored_name: &str,
    stored_channel_id: &str,
    stored_type: SourceType,
) -> Result<UpdateSource, EgError> {
    let src = Fields::body(body)?;
    let mut out = UpdateSource::default();
    for (key, stored) in [
        ("name", stored_name),
        ("channel_id", stored_channel_id),
        ("type", stored_type.as_str()),
    ] {
        if let Some(v) = src.opt_str(key)? {
            if !v.is_empty() && v != stored {
                return Err(EgError::param(format!("{key} cannot be changed")));
            }
        }
    }
    if let Some(d) = src.opt_str_max("description", DESCRIPTION_MAX)? {
        out.description = Some(d.to_string());
    }
    if let Some(d) = src.get("detail") {
        out.detail = Some(parse_detail(stored_type, Some(d))?);
    }
    Ok(out)
}

/// Validates and normalizes `detail` for a source type. The reference's examples show the
/// detail as JSON text; a string holding a JSON object is accepted as an alias [dec].
/// Members unknown for the type are dropped. `detail` is optional (the reference's
/// CreateEventSource example creates a RABBITMQ source without one): an MQ source without
/// it has no broker yet and gets one with UpdateEventSource; a given detail must be complete.
pub fn parse_detail(t: SourceType, v: Option<&Value>) -> Result<Map<String, Value>, EgError> {
    let parsed;
    let obj = match v {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => {
            parsed = serde_json::from_str::<Value>(s).ok();
            match &parsed {
                Some(Value::Object(m)) => Some(m),
                _ => return Err(EgError::param("detail must be a JSON object")),
            }
        }
        Some(_) => return Err(EgError::param("detail must be a JSON object")),
    };
    if let Some(m) = obj {
        let size = serde_json::to_vec(m).map(|b| b.len()).unwrap_or(usize::MAX);
        if size > DETAIL_MAX_BYTES {
            return Err(EgError::param(format!(
                "detail must be at most {DETAIL_MAX_BYTES} bytes when serialized"
            )));
        }
    }
    match t {
        SourceType::Application => Ok(obj.cloned().unwrap_or_default()),
        SourceType::Rocketmq => obj.map_or(Ok(Map::new()), rocketmq_detail),
        SourceType::Rabbitmq => obj.map_or(Ok(Map::new()), rabbitmq_detail),
    }
}

/// RocketMqDetail [sdk]: `group`, `topic` and `namesrv_address` (the broker) required;
/// `access_key`/`secret_key` required only when `enable_acl` is true [dec].
fn rocketmq_detail(d: &Map<String, Value>) -> Result<Map<String, Value>, EgError> {
    const P: &str = "detail";
    let f = Fields::new(d, P);
    let mut out = Map::new();
    let instance_id = f.opt_str_max("instance_id", FIELD_MAX)?;
    put(&mut out, "instance_id", instance_id);
    put(&mut out, "group", Some(f.req_str_max("group", FIELD_MAX)?));
    put(&mut out, "topic", Some(f.req_str_max("topic", FIELD_MAX)?));
    let ak = f.opt_str_max("access_key", FIELD_MAX)?;
    put(&mut out, "access_key", ak);
    let sk = f.opt_str_max("secret_key", FIELD_MAX)?;
    put(&mut out, "secret_key", sk);
    put(&mut out, "vpc_id", f.opt_str_max("vpc_id", FIELD_MAX)?);
    put(
        &mut out,
        "subnet_id",
        f.opt_str_max("subnet_id", FIELD_MAX)?,
    );
    let addr = f
        .req_str_max("namesrv_address", ADDRESS_MAX)
        .map_err(|e| EgError::param(format!("{} (the RocketMQ name server address)", e.msg)))?;
    parse_addr_list(strip_http(addr))
        .map_err(|e| EgError::param(format!("{P}.namesrv_address: {e}")))?;
    put(&mut out, "namesrv_address", Some(addr));
    if let Some(b) = f.opt_bool("ssl_enable")? {
        out.insert("ssl_enable".into(), b.into());
    }
    let acl = f.opt_bool("enable_acl")?;
    if let Some(b) = acl {
        out.insert("enable_acl".into(), b.into());
    }
    if acl == Some(true) {
        if ak.is_none_or(str::is_empty) {
            return Err(EgError::param(
                "detail.access_key is required when enable_acl is true",
            ));
        }
        if sk.is_none_or(str::is_empty) {
            return Err(EgError::param(
                "detail.secret_key is required when enable_acl is true",
            ));
        }
    }
    Ok(out)
}

/// RocketMQ name servers are sometimes written `http://host:port`.
fn strip_http(s: &str) -> &str {
    s.trim()
        .strip_prefix("http://")
        .or_else(|| s.trim().strip_prefix("https://"))
        .unwrap_or(s)
}

/// RabbitMQ [doc]: `queue_name` required, and `instance_id` must carry the broker address
/// (`amqp[s]://host[:port][/vhost]` or `host:port`) [dec: OpenEG has no instance registry].
fn rabbitmq_detail(d: &Map<String, Value>) -> Result<Map<String, Value>, EgError> {
    const P: &str = "detail";
    let f = Fields::new(d, P);
    let mut out = Map::new();
    let instance_id = f
        .req_str_max("instance_id", ADDRESS_MAX)
        .map_err(|e| EgError::param(format!("{} (the RabbitMQ broker address)", e.msg)))?;
    rabbitmq_broker(instance_id).map_err(|e| EgError::param(format!("{P}.instance_id: {e}")))?;
    put(&mut out, "instance_id", Some(instance_id));
    put(
        &mut out,
        "vhost_name",
        f.opt_str_max("vhost_name", FIELD_MAX)?,
    );
    put(
        &mut out,
        "queue_name",
        Some(f.req_str_max("queue_name", FIELD_MAX)?),
    );
    put(
        &mut out,
        "user_name",
        f.opt_str_max("user_name", FIELD_MAX)?,
    );
    put(&mut out, "password", f.opt_str_max("password", FIELD_MAX)?);
    put(&mut out, "vpc_id", f.opt_str_max("vpc_id", FIELD_MAX)?);
    put(
        &mut out,
        "subnet_id",
        f.opt_str_max("subnet_id", FIELD_MAX)?,
    );
    if let Some(b) = f.opt_bool("ssl_enable")? {
        out.insert("ssl_enable".into(), b.into());
    }
    Ok(out)
}

fn put(out: &mut Map<String, Value>, key: &str, v: Option<&str>) {
    if let Some(s) = v {
        out.insert(key.to_string(), Value::String(s.to_string()));
    }
}

/// Where a RabbitMQ source's broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RabbitBroker {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Virtual host from the URL path, if any (`detail.vhost_name` wins when set).
    pub vhost: Option<String>,
}

/// Parses the broker address carried in a RabbitMQ source's `instance_id`:
/// `amqp://host[:port][/vhost]`, `amqps://host[:port][/vhost]` or `host:port`. Credentials in
/// the URL are refused: they belong in `user_name`/`password`, which are stored encrypted.
pub fn rabbitmq_broker(instance_id: &str) -> Result<RabbitBroker, String> {
    let s = instance_id.trim();
    let (tls, rest) = if let Some(r) = s.strip_prefix("amqps://") {
        (true, Some(r))
    } else if let Some(r) = s.strip_prefix("amqp://") {
        (false, Some(r))
    } else {
        (false, None)
    };
    let Some(rest) = rest else {
        if s.contains("://") {
            return Err("only amqp:// and amqps:// broker URLs are supported".into());
        }
        let (host, port) = parse_host_port(s).map_err(|e| {
            format!("{e}; expected a broker address amqp://host[:port][/vhost] or host:port")
        })?;
        return Ok(RabbitBroker {
            tls: false,
            host,
            port,
            vhost: None,
        });
    };
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (rest, None),
    };
    if authority.contains('@') {
        return Err(
            "credentials in the broker URL are not accepted; use user_name and password".into(),
        );
    }
    let default_port = if tls { AMQPS_PORT } else { AMQP_PORT };
    let has_port = if authority.starts_with('[') {
        authority.contains("]:")
    } else {
        authority.contains(':')
    };
    let (host, port) = if has_port {
        parse_host_port(authority)?
    } else {
        parse_host_port(&format!("{authority}:{default_port}"))?
    };
    let vhost = path.filter(|p| !p.is_empty()).map(percent_decode);
    Ok(RabbitBroker {
        tls,
        host,
        port,
        vhost,
    })
}

/// Minimal `%XX` decoding for AMQP vhost paths (`%2f` is `/`).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CH: &str = "ch-1";

    fn usable(id: &str) -> bool {
        id == CH
    }

    fn base() -> Value {
        json!({"name": "src-1", "channel_id": CH})
    }

    fn with(mut v: Value, key: &str, val: Value) -> Value {
        v[key] = val;
        v
    }

    fn rocket(detail: Value) -> Value {
        with(with(base(), "type", json!("ROCKETMQ")), "detail", detail)
    }

    fn rabbit(detail: Value) -> Value {
        with(with(base(), "type", json!("RABBITMQ")), "detail", detail)
    }

    fn err(v: &Value) -> EgError {
        parse_create(v, usable).unwrap_err()
    }

    fn param_err(v: &Value) -> String {
        let e = err(v);
        assert_eq!((e.status, e.code), (400, "EG.00513000"), "{e}");
        e.msg
    }

    fn rocket_ok() -> Value {
        json!({"instance_id": "r", "group": "g", "topic": "t", "access_key": "ak",
               "secret_key": "sk", "namesrv_address": "10.0.0.1:8100;10.0.0.2:8100",
               "ssl_enable": false, "enable_acl": true})
    }

    #[test]
    fn application_defaults() {
        let s = parse_create(&base(), usable).unwrap();
        assert_eq!(s.source_type, SourceType::Application);
        assert_eq!(
            (
                s.name.as_str(),
                s.description.as_str(),
                s.channel_id.as_str()
            ),
            ("src-1", "", CH)
        );
        assert!(s.detail.is_empty());
        let s = parse_create(&with(base(), "detail", json!({"k": "v"})), usable).unwrap();
        assert_eq!(s.detail["k"], "v");
        assert_eq!(SourceType::Application.quota(), None);
        assert_eq!(SourceType::Rabbitmq.quota(), Some("SOURCE_RABBITMQ"));
        assert_eq!(SourceType::Rocketmq.quota(), Some("SOURCE_ROCKETMQ"));
    }

    #[test]
    fn names() {
        assert!(parse_create(&with(base(), "name", json!("a".repeat(128))), usable).is_ok());
        assert!(param_err(&with(base(), "name", json!("a".repeat(129)))).contains("128"));
        assert!(param_err(&with(base(), "name", json!("UpperCase"))).contains("name"));
        assert!(param_err(&with(base(), "name", json!("hc.mine"))).contains("hc."));
        assert!(parse_create(&with(base(), "name", json!("hcx.mine")), usable).is_ok());
        param_err(&with(base(), "name", json!("-lead")));
        param_err(&with(base(), "name", json!("a b")));
        param_err(&with(base(), "name", json!("")));
        let mut v = base();
        v.as_object_mut().unwrap().remove("name");
        assert!(param_err(&v).contains("name is required"));
    }

    #[test]
    fn description() {
        assert!(parse_create(&with(base(), "description", json!("d".repeat(255))), usable).is_ok());
        assert!(
            param_err(&with(base(), "description", json!("d".repeat(256)))).contains("description")
        );
        param_err(&with(base(), "description", json!(1)));
    }

    #[test]
    fn channel() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("channel_id");
        assert_eq!(err(&v).code, "EG.00513005");
        assert_eq!(
            err(&with(base(), "channel_id", json!(""))).code,
            "EG.00513005"
        );
        assert_eq!(
            err(&with(base(), "channel_id", json!("other"))).code,
            "EG.00513005"
        );
        assert_eq!(
            err(&with(base(), "channel_id", json!(5))).code,
            "EG.00513000"
        );
        // Name errors come first (table order); then channel before type.
        let v = json!({"name": "Bad", "channel_id": "other"});
        assert_eq!(err(&v).code, "EG.00513000");
        let v = json!({"name": "ok", "channel_id": "other", "type": "KAFKA"});
        assert_eq!(err(&v).code, "EG.00513005");
    }

    #[test]
    fn types() {
        assert!(param_err(&with(base(), "type", json!("KAFKA"))).contains("type"));
        param_err(&with(base(), "type", json!(1)));
        assert!(parse_create(&with(base(), "type", json!("APPLICATION")), usable).is_ok());
        // Without a detail an MQ source has no broker yet; a given one must be complete.
        for t in ["ROCKETMQ", "RABBITMQ"] {
            for d in [None, Some(Value::Null), Some(json!(""))] {
                let mut v = with(base(), "type", json!(t));
                if let Some(d) = d {
                    v = with(v, "detail", d);
                }
                let s = parse_create(&v, usable).unwrap();
                assert!(s.detail.is_empty(), "{t} {v}");
            }
            param_err(&with(with(base(), "type", json!(t)), "detail", json!({})));
        }
        param_err(&with(base(), "detail", json!([1])));
        param_err(&with(base(), "detail", json!("not json")));
        param_err(&with(
            base(),
            "detail",
            json!({"x": "y".repeat(DETAIL_MAX_BYTES)}),
        ));
    }

    #[test]
    fn rocketmq_valid() {
        let s = parse_create(&rocket(rocket_ok()), usable).unwrap();
        assert_eq!(s.source_type, SourceType::Rocketmq);
        assert_eq!(s.detail["secret_key"], "sk");
        assert_eq!(s.detail["enable_acl"], true);
        // Without ACL the keys are optional.
        let s = parse_create(
            &rocket(json!({"group": "g", "topic": "t", "namesrv_address": "h:9876"})),
            usable,
        )
        .unwrap();
        assert!(s.detail.get("secret_key").is_none());
        let s = parse_create(
            &rocket(
                json!({"group": "g", "topic": "t", "namesrv_address": "http://h:9876",
                           "enable_acl": false, "extra": "dropped", "queue_name": "dropped"}),
            ),
            usable,
        )
        .unwrap();
        assert!(s.detail.get("extra").is_none() && s.detail.get("queue_name").is_none());
        // JSON-text alias.
        let text = serde_json::to_string(&rocket_ok()).unwrap();
        assert!(parse_create(&rocket(json!(text)), usable).is_ok());
    }

    #[test]
    fn rocketmq_invalid() {
        let drop = |k: &str| {
            let mut d = rocket_ok();
            d.as_object_mut().unwrap().remove(k);
            param_err(&rocket(d))
        };
        assert!(drop("group").contains("detail.group is required"));
        assert!(drop("topic").contains("detail.topic is required"));
        assert!(drop("namesrv_address").contains("namesrv_address"));
        assert!(drop("access_key").contains("access_key is required when enable_acl"));
        assert!(drop("secret_key").contains("secret_key is required when enable_acl"));
        let set = |k: &str, v: Value| {
            let mut d = rocket_ok();
            d[k] = v;
            param_err(&rocket(d))
        };
        assert!(set("group", json!("")).contains("group"));
        assert!(set("topic", json!(3)).contains("detail.topic must be a string"));
        assert!(set("enable_acl", json!("true")).contains("enable_acl must be a boolean"));
        assert!(set("ssl_enable", json!(1)).contains("ssl_enable"));
        assert!(set("namesrv_address", json!("nowhere")).contains("namesrv_address"));
        assert!(set("secret_key", json!("")).contains("secret_key"));
        assert!(set("instance_id", json!("i".repeat(257))).contains("instance_id"));
    }

    fn rabbit_ok() -> Value {
        json!({"instance_id": "amqp://127.0.0.1:5672", "vhost_name": "/", "queue_name": "q1",
               "user_name": "u", "password": "p"})
    }

    #[test]
    fn rabbitmq_valid_and_invalid() {
        let s = parse_create(&rabbit(rabbit_ok()), usable).unwrap();
        assert_eq!(s.detail["queue_name"], "q1");
        assert_eq!(s.detail["password"], "p");
        let mut d = rabbit_ok();
        d.as_object_mut().unwrap().remove("queue_name");
        assert!(param_err(&rabbit(d)).contains("queue_name is required"));
        let mut d = rabbit_ok();
        d.as_object_mut().unwrap().remove("instance_id");
        assert!(param_err(&rabbit(d)).contains("instance_id"));
        let mut d = rabbit_ok();
        d["instance_id"] = json!("ac14144e-9v3c-43d6-acfd-bf09b52c98uy");
        assert!(param_err(&rabbit(d)).contains("broker address"));
        let mut d = rabbit_ok();
        d["instance_id"] = json!("amqp://user:pw@h:5672");
        assert!(param_err(&rabbit(d)).contains("credentials"));
        let mut d = rabbit_ok();
        d["password"] = json!(5);
        assert!(param_err(&rabbit(d)).contains("password"));
    }

    #[test]
    fn brokers() {
        assert_eq!(
            rabbitmq_broker("amqp://h").unwrap(),
            RabbitBroker {
                tls: false,
                host: "h".into(),
                port: 5672,
                vhost: None
            }
        );
        assert_eq!(
            rabbitmq_broker("amqps://h:1/%2f").unwrap(),
            RabbitBroker {
                tls: true,
                host: "h".into(),
                port: 1,
                vhost: Some("/".into())
            }
        );
        assert_eq!(rabbitmq_broker("h:9").unwrap().port, 9);
        assert_eq!(rabbitmq_broker("amqp://[::1]").unwrap().host, "::1");
        assert!(rabbitmq_broker("http://h:1").is_err());
        assert!(rabbitmq_broker("amqp://").is_err());
        assert!(rabbitmq_broker("h").is_err());
        assert_eq!(percent_decode("a%2Fb%zz%"), "a/b%zz%");
    }

    #[test]
    fn update() {
        let u = parse_update(
            &json!({"description": "d"}),
            "n",
            CH,
            SourceType::Application,
        )
        .unwrap();
        assert_eq!(
            u,
            UpdateSource {
                description: Some("d".into()),
                detail: None
            }
        );
        let u = parse_update(
            &json!({"detail": rocket_ok()}),
            "n",
            CH,
            SourceType::Rocketmq,
        )
        .unwrap();
        assert_eq!(u.detail.unwrap()["topic"], "t");
        let mut d = rocket_ok();
        d.as_object_mut().unwrap().remove("topic");
        assert!(parse_update(&json!({"detail": d}), "n", CH, SourceType::Rocketmq).is_err());
        assert!(parse_update(
            &json!({"description": "d".repeat(256)}),
            "n",
            CH,
            SourceType::Application
        )
        .is_err());
        assert!(parse_update(&json!({"name": "m"}), "n", CH, SourceType::Application).is_err());
        assert!(parse_update(
            &json!({"name": "n", "channel_id": CH, "type": "APPLICATION"}),
            "n",
            CH,
            SourceType::Application
        )
        .is_ok());
        assert!(parse_update(
            &json!({"channel_id": "x"}),
            "n",
            CH,
            SourceType::Application
        )
        .is_err());
        assert!(parse_update(
            &json!({"type": "ROCKETMQ"}),
            "n",
            CH,
            SourceType::Application
        )
        .is_err());
        assert!(parse_update(&json!([]), "n", CH, SourceType::Application).is_err());
    }
}
