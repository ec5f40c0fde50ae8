//! Professional event-router clusters and jobs (`docs/limits.md`): pure
//! validation of create and update bodies into the stored wire documents.

use crate::field::Fields;
use crate::validate::{self, NamePattern};
use crate::EgError;
use serde_json::{Map, Value};

/// Source/sink families a cluster can route between.
pub const CLUSTER_TYPES: &[&str] = &["KAFKA", "ROCKETMQ", "DCS"];

/// Fixed ceilings of `docs/limits.md`
pub const MAX_CLUSTERS: u64 = 50;
pub const MAX_JOBS_PER_CLUSTER: u64 = 100;

fn description(src: &Fields, doc: &mut Map<String, Value>) -> Result<(), EgError> {
    if let Some(d) = src.opt_str_max("description", 256)? {
        doc.insert("description".into(), d.into());
    }
    Ok(())
}

fn opt_id(src: &Fields, key: &str, doc: &mut Map<String, Value>) -> Result<(), EgError> {
    if let Some(s) = src.opt_str_max(key, 64)? {
        if s.is_empty() {
            doc.remove(key);
        } else {
            doc.insert(key.into(), s.into());
        }
    }
    Ok(())
}

/// With public access enabled an EIP is required [dec].
fn check_public_access(doc: &Map<String, Value>) -> Result<(), EgError> {
    if doc.get("public_access_enabled") == Some(&Value::Bool(true))
        && doc.get("eip_id").and_then(Value::as_str).is_none()
    {
        return Err(EgError::param(
            "eip_id is required when public_access_enabled is true",
        ));
    }
    Ok(())
}

/// `charging_mode` of a cluster created without `bss_param`.
pub const CHARGING_PAY_PER_USE: &str = "postPaid";

/// Validates a CreateEventRouterCluster body into the stored document (without `cluster_id`,
/// `status` and timestamps, which the server adds).
pub fn cluster_create(v: &Value) -> Result<Map<String, Value>, EgError> {
    let src = Fields::body(v)?;
    let mut doc = Map::new();
    let name = src.req_str("name")?;
    validate::name("name", name, NamePattern::Mixed)?;
    doc.insert("name".into(), name.into());
    description(&src, &mut doc)?;
    let source_type = src.req_str("source_type")?;
    if !CLUSTER_TYPES.contains(&source_type) {
        return Err(EgError::param(format!(
            "source_type must be one of {}",
            CLUSTER_TYPES.join(", ")
        )));
    }
    let sink_type = src.req_str("sink_type")?;
    if !CLUSTER_TYPES.contains(&sink_type) {
        return Err(EgError::param(format!(
            "sink_type must be one of {}",
            CLUSTER_TYPES.join(", ")
        )));
    }
    if sink_type != source_type {
        return Err(EgError::param("sink_type must equal source_type"));
    }
    doc.insert("source_type".into(), source_type.into());
    doc.insert("sink_type".into(), sink_type.into());
    for key in ["vpc_id", "subnet_id"] {
        let s = src.req_str_max(key, 64)?;
        doc.insert(key.into(), s.into());
    }
    if let Some(z) = src.opt_str_max("zone_names", 256)? {
        doc.insert("zone_names".into(), z.into());
    }
    // No billing parameters means pay-per-use; when they are given, the mode is required.
    let mode = match src.nested("bss_param")? {
        None => CHARGING_PAY_PER_USE,
        Some(bss) => match bss.opt_str("charging_mode") {
            Ok(Some(m)) if !m.is_empty() => m,
            _ => {
                return Err(EgError::param(
                    "bss_param.charging_mode is required and must be a non-empty string",
                ))
            }
        },
    };
    validate::max_len("bss_param.charging_mode", mode, 64)?;
    doc.insert("charging_mode".into(), mode.into());
    if let Some(f) = src.opt_str_max("flavor", 64)? {
        doc.insert("flavor".into(), f.into());
    }
    let public = src.req_bool("public_access_enabled")?;
    doc.insert("public_access_enabled".into(), public.into());
    opt_id(&src, "nat_id", &mut doc)?;
    opt_id(&src, "eip_id", &mut doc)?;
    check_public_access(&doc)?;
    Ok(doc)
}

/// Applies an UpdateEventRouterCluster body (every member optional) to a copy of the stored
/// document; nothing is changed when it fails.
pub fn cluster_update(v: &Value, old: &Map<String, Value>) -> Result<Map<String, Value>, EgError> {
    let src = Fields::body(v)?;
    let mut doc = old.clone();
    if let Some(n) = src.opt_str("name")? {
        validate::name("name", n, NamePattern::Mixed)?;
        doc.insert("name".into(), n.into());
    }
    description(&src, &mut doc)?;
    if let Some(p) = src.opt_bool("public_access_enabled")? {
        doc.insert("public_access_enabled".into(), p.into());
    }
    opt_id(&src, "nat_id", &mut doc)?;
    opt_id(&src, "eip_id", &mut doc)?;
    check_public_access(&doc)?;
    Ok(doc)
}

// ------------------------------------------------------------------------------------ jobs

/// Longest string member of a job's endpoint, advance and condition objects.
const JOB_TEXT_MAX: usize = 1024;

/// The members of a job's endpoint, advance or condition object: `""` means "not set" (like
/// absent and `null`) and strings are at most [`JOB_TEXT_MAX`] characters [dec]. Objects may be
/// wrapped in a one-element array ([`Fields::single_obj`]; the reference's examples do so).
fn job_fields(f: Fields) -> Fields {
    f.blank_is_absent().cap(JOB_TEXT_MAX)
}

fn put(doc: &mut Map<String, Value>, key: &str, v: Option<impl Into<Value>>) {
    if let Some(v) = v {
        doc.insert(key.into(), v.into());
    }
}

/// Family of an endpoint member name (`source_kafka` → `KAFKA`).
fn family_of(member: &str) -> &'static str {
    if member.ends_with("kafka") {
        "KAFKA"
    } else if member.ends_with("rocketmq") {
        "ROCKETMQ"
    } else {
        "DCS"
    }
}

/// KafkaParameters / RocketmqParameters / DcsParameters.
fn endpoint(p: &Fields, family: &str) -> Result<Map<String, Value>, EgError> {
    let mut d = Map::new();
    let config_type = p.req_str("config_type")?;
    d.insert("config_type".into(), config_type.into());
    for k in ["region", "project_id"] {
        d.insert(k.into(), p.req_str(k)?.into());
    }
    let instance = p.opt_str("instance_id")?;
    if config_type == "CLOUD" && instance.is_none() && family != "DCS" {
        return Err(EgError::param(format!(
            "{} is required when config_type is CLOUD",
            p.at("instance_id")
        )));
    }
    put(&mut d, "instance_id", instance);
    put(&mut d, "address", p.opt_str("address")?);
    put(&mut d, "password", p.opt_str("password")?);
    match family {
        "KAFKA" => {
            d.insert("cluster_alias".into(), p.req_str("cluster_alias")?.into());
            let mode = p.opt_str("authenticate_mode")?;
            put(&mut d, "authenticate_mode", mode);
            put(&mut d, "sasl_mechanism", p.opt_str("sasl_mechanism")?);
            put(&mut d, "user_name", p.opt_str("user_name")?);
            if mode == Some("SASL_SSL") && !d.contains_key("password") {
                return Err(EgError::param(format!(
                    "{} is required when authenticate_mode is SASL_SSL",
                    p.at("password")
                )));
            }
        }
        "ROCKETMQ" => {
            d.insert("cluster_alias".into(), p.req_str("cluster_alias")?.into());
            if let Some(ssl) = p.opt_str("ssl_open")? {
                if ssl != "true" && ssl != "false" {
                    return Err(EgError::param(format!(
                        "{} must be \"true\" or \"false\"",
                        p.at("ssl_open")
                    )));
                }
                d.insert("ssl_open".into(), ssl.into());
            }
            let acl = p.opt_bool("acl_open")?;
            put(&mut d, "acl_open", acl);
            put(&mut d, "user_name", p.opt_str("user_name")?);
            if acl == Some(true) && !d.contains_key("password") {
                return Err(EgError::param(format!(
                    "{} is required when acl_open is true",
                    p.at("password")
                )));
            }
        }
        _ => {}
    }
    Ok(d)
}

/// `source_config` / `sink_config`: exactly one member; returns (family, stored object).
fn side(
    src: &Fields,
    key: &str,
    cluster_type: &str,
) -> Result<Option<(&'static str, Value)>, EgError> {
    let Some(cfg) = src.single_obj(key)? else {
        return Ok(None);
    };
    let prefix = if key == "source_config" {
        "source"
    } else {
        "sink"
    };
    let mut found = None;
    for fam in ["kafka", "rocketmq", "dcs"] {
        let member = format!("{prefix}_{fam}");
        if let Some(p) = cfg.single_obj(&member)? {
            if found.is_some() {
                return Err(EgError::param(format!(
                    "{key} must have exactly one of {prefix}_kafka, {prefix}_rocketmq, {prefix}_dcs"
                )));
            }
            let family = family_of(&member);
            if family != cluster_type {
                return Err(EgError::param(format!(
                    "{key}.{member} does not match the cluster type {cluster_type}"
                )));
            }
            let d = endpoint(&job_fields(p), family)?;
            let mut o = Map::new();
            o.insert(member, Value::Object(d));
            found = Some((family, Value::Object(o)));
        }
    }
    if let Some(other) = cfg.map().keys().find(|k| {
        !["kafka", "rocketmq", "dcs"]
            .iter()
            .any(|f| **k == format!("{prefix}_{f}"))
    }) {
        return Err(EgError::param(format!(
            "{key}.{other} is not a known member"
        )));
    }
    Ok(found)
}

fn topics(a: &Fields, d: &mut Map<String, Value>) -> Result<(), EgError> {
    let t = a.opt_str("topics")?;
    let r = a.opt_str("topic_regex")?;
    match (t, r) {
        (Some(_), Some(_)) => Err(EgError::param(format!(
            "{} and {} are mutually exclusive",
            a.at("topics"),
            a.at("topic_regex")
        ))),
        (None, None) => Err(EgError::param(format!(
            "{} or {} is required",
            a.at("topics"),
            a.at("topic_regex")
        ))),
        _ => {
            put(d, "topics", t);
            put(d, "topic_regex", r);
            Ok(())
        }
    }
}

fn one_of(v: &str, allowed: &[&str], field: &str) -> Result<(), EgError> {
    if allowed.contains(&v) {
        Ok(())
    } else {
        Err(EgError::param(format!(
            "{field} must be one of {}",
            allowed.join(", ")
        )))
    }
}

fn advance(src: &Fields, family: &str) -> Result<Option<Value>, EgError> {
    let Some(cfg) = src.single_obj("advance_config")? else {
        return Ok(None);
    };
    for k in cfg.map().keys() {
        if !["kafka2kafka", "rocketmq2rocketmq", "dcs2dcs", "dc2dc"].contains(&k.as_str()) {
            return Err(EgError::param(format!(
                "advance_config.{k} is not a known member"
            )));
        }
    }
    let (canon, aliases): (&str, &[&str]) = match family {
        "KAFKA" => ("kafka2kafka", &["kafka2kafka"]),
        "ROCKETMQ" => ("rocketmq2rocketmq", &["rocketmq2rocketmq"]),
        _ => ("dcs2dcs", &["dcs2dcs", "dc2dc"]),
    };
    for k in ["kafka2kafka", "rocketmq2rocketmq", "dcs2dcs", "dc2dc"] {
        if !aliases.contains(&k) && cfg.single(k)?.is_some() {
            return Err(EgError::param(format!(
                "advance_config.{k} does not match the cluster type {family}"
            )));
        }
    }
    let mut a = None;
    for k in aliases {
        if let Some(m) = cfg.single_obj(k)? {
            a = Some(m.map());
        }
    }
    let Some(a) = a else { return Ok(None) };
    // Reported under the canonical name whichever alias was sent.
    let a = job_fields(Fields::new(a, format!("advance_config.{canon}")));
    let mut d = Map::new();
    match family {
        "KAFKA" => {
            topics(&a, &mut d)?;
            match a.opt_count("replica_cnt")? {
                Some(v) if v.as_u64() != Some(0) && v.as_str() != Some("0") => {
                    d.insert("replica_cnt".into(), v);
                }
                Some(_) => {
                    return Err(EgError::param(format!(
                        "{} must be >= 1",
                        a.at("replica_cnt")
                    )))
                }
                None => return Err(a.missing("replica_cnt")),
            }
            let seek = a.req_str("seek_to")?;
            one_of(seek, &["earliest", "latest"], &a.at("seek_to"))?;
            d.insert("seek_to".into(), seek.into());
            let c = a.req_str("compress_alg")?;
            one_of(
                c,
                &["none", "gzip", "snappy", "lz4", "zstd"],
                &a.at("compress_alg"),
            )?;
            d.insert("compress_alg".into(), c.into());
            d.insert(
                "is_sync_progress".into(),
                a.req_bool("is_sync_progress")?.into(),
            );
            d.insert("is_add_header".into(), a.req_bool("is_add_header")?.into());
            put(&mut d, "rename_topic", a.opt_bool("rename_topic")?);
            // Not subject to the `""` = unset rule: only absent and `null` skip it.
            match a.map().get("topic_mappings") {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => {
                    let mut out = Vec::new();
                    for (i, m) in items.iter().enumerate() {
                        let p = format!("{}[{i}]", a.at("topic_mappings"));
                        let m = m
                            .as_object()
                            .ok_or_else(|| EgError::param(format!("{p} must be an object")))?;
                        let m = a.child(m, p);
                        let mut o = Map::new();
                        o.insert("source_topic".into(), m.req_str("source_topic")?.into());
                        o.insert("sink_topic".into(), m.req_str("sink_topic")?.into());
                        out.push(Value::Object(o));
                    }
                    d.insert("topic_mappings".into(), Value::Array(out));
                }
                Some(_) => {
                    return Err(EgError::param(format!(
                        "{} must be an array",
                        a.at("topic_mappings")
                    )))
                }
            }
        }
        "ROCKETMQ" => {
            topics(&a, &mut d)?;
            d.insert(
                "is_sync_progress".into(),
                a.req_bool("is_sync_progress")?.into(),
            );
            let seek = a.req_str("seek_to")?;
            if seek != "first" && seek != "last" && !seek.bytes().all(|b| b.is_ascii_digit()) {
                return Err(EgError::param(format!(
                    "{} must be first, last or an epoch-ms timestamp",
                    a.at("seek_to")
                )));
            }
            d.insert("seek_to".into(), seek.into());
            let c = a.req_str("compress_alg")?;
            one_of(c, &["none", "gzip", "lz4", "zstd"], &a.at("compress_alg"))?;
            d.insert("compress_alg".into(), c.into());
        }
        _ => {
            d.insert(
                "synchronize_type".into(),
                a.req_str("synchronize_type")?.into(),
            );
            for k in ["connect_retry_time", "other_retry_time"] {
                let v = a.opt_count(k)?.ok_or_else(|| a.missing(k))?;
                d.insert(k.into(), v);
            }
            put(&mut d, "use_rate_limit", a.opt_bool("use_rate_limit")?);
            put(&mut d, "rate_limit", a.opt_count("rate_limit")?);
            let salve = match a.opt_bool("use_salve_node")? {
                Some(b) => Some(b),
                None => a.opt_bool("use_slave_node")?,
            };
            put(&mut d, "use_salve_node", salve);
            for k in [
                "allow_keys",
                "allow_key_prefix",
                "allow_key_suffix",
                "block_keys",
                "block_key_prefix",
                "block_key_suffix",
            ] {
                put(&mut d, k, a.opt_str(k)?);
            }
            // Neither of these two is subject to the `""` = unset rule.
            match a.map().get("allow_db") {
                None | Some(Value::Null) => {}
                Some(Value::Array(xs)) if xs.iter().all(|x| x.as_u64().is_some()) => {
                    d.insert("allow_db".into(), Value::Array(xs.clone()));
                }
                Some(_) => {
                    return Err(EgError::param(format!(
                        "{} must be an array of non-negative integers",
                        a.at("allow_db")
                    )))
                }
            }
            match a.map().get("db_mapping") {
                None | Some(Value::Null) => {}
                Some(Value::Object(m)) if m.values().all(Value::is_string) => {
                    d.insert("db_mapping".into(), Value::Object(m.clone()));
                }
                Some(_) => {
                    return Err(EgError::param(format!(
                        "{} must be an object of strings",
                        a.at("db_mapping")
                    )))
                }
            }
        }
    }
    let mut o = Map::new();
    o.insert(canon.into(), Value::Object(d));
    Ok(Some(Value::Object(o)))
}

/// The `cluster_id` of a job body (checked before the cluster is loaded).
pub fn job_cluster_id(v: &Value) -> Result<&str, EgError> {
    Fields::body(v)?.req_str("cluster_id")
}

/// Validates a CreateEventRouterJob / UpdateEventRouterJob body (full replacement) against its
/// cluster's type. Returns the stored members: `cluster_id`, `name`, `description`,
/// `scene_type`, `source_type`, `sink_type`, `source_config`, `sink_config`, `advance_config`
/// (absent configs are `null`). Status and timestamps are the server's.
pub fn job_body(v: &Value, cluster_type: &str) -> Result<Map<String, Value>, EgError> {
    let src = Fields::body(v)?;
    let mut doc = Map::new();
    doc.insert("cluster_id".into(), src.req_str("cluster_id")?.into());
    let name = src.req_str("name")?;
    validate::name("name", name, NamePattern::Mixed)?;
    doc.insert("name".into(), name.into());
    let d = src.opt_str_max("description", 256)?.unwrap_or("");
    doc.insert("description".into(), d.into());
    let scene = src.req_str("scene_type")?;
    if scene != "DISASTER_BACKUP" {
        return Err(EgError::param("scene_type must be DISASTER_BACKUP"));
    }
    doc.insert("scene_type".into(), scene.into());
    let source = side(&src, "source_config", cluster_type)?;
    let sink = side(&src, "sink_config", cluster_type)?;
    doc.insert("source_type".into(), cluster_type.into());
    doc.insert("sink_type".into(), cluster_type.into());
    doc.insert(
        "source_config".into(),
        source.map(|s| s.1).unwrap_or(Value::Null),
    );
    doc.insert(
        "sink_config".into(),
        sink.map(|s| s.1).unwrap_or(Value::Null),
    );
    doc.insert(
        "advance_config".into(),
        advance(&src, cluster_type)?.unwrap_or(Value::Null),
    );
    Ok(doc)
}

/// ValidateEventRouterJob body: `cluster_id` (checked by the caller), `source_config`,
/// `sink_config`; returns the normalized `{source_config, sink_config}` members.
pub fn validation_body(v: &Value, cluster_type: &str) -> Result<Map<String, Value>, EgError> {
    let src = Fields::body(v)?;
    src.req_str("cluster_id")?;
    let mut doc = Map::new();
    for k in ["source_config", "sink_config"] {
        if let Some((_, c)) = side(&src, k, cluster_type)? {
            doc.insert(k.into(), c);
        }
    }
    Ok(doc)
}

/// `source_config` and `sink_config` both set → `WAIT_START`, else `NO_CONFIGURATION`.
pub fn initial_status(doc: &Map<String, Value>) -> &'static str {
    let set = |k: &str| doc.get(k).is_some_and(|v| !v.is_null());
    if set("source_config") && set("sink_config") {
        "WAIT_START"
    } else {
        "NO_CONFIGURATION"
    }
}

/// The `address` of a job's source or sink endpoint (`side` = `source` | `sink`).
pub fn endpoint_address<'a>(doc: &'a Value, side: &str) -> Option<&'a str> {
    doc.get(format!("{side}_config"))?
        .as_object()?
        .values()
        .next()?
        .get("address")?
        .as_str()
}

/// ShowEventRouterTaskSyncDetail body: `offset` 0–10000, `limit` 10–1000 (both required),
/// `conditions` [{key: topic, operate: EQUAL|LIKE, value}].
/// A ShowEventRouterTaskSyncDetail body: the page and the topic conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncDetailQuery {
    pub offset: usize,
    pub limit: usize,
    pub conditions: Vec<TopicCondition>,
}

/// A `conditions` entry (its key is always `topic`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicCondition {
    Equal(String),
    /// ASCII case-insensitive substring.
    Like(String),
}

impl TopicCondition {
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            TopicCondition::Equal(v) => topic == v,
            TopicCondition::Like(v) => topic.to_ascii_lowercase().contains(&v.to_ascii_lowercase()),
        }
    }
}

pub fn sync_detail_body(v: &Value) -> Result<SyncDetailQuery, EgError> {
    let src = Fields::body(v)?;
    let offset = src.req_int("offset", 0, 10000)? as usize;
    let limit = src.req_int("limit", 10, 1000)? as usize;
    let mut conditions = Vec::new();
    if let Some(cs) = src.opt_array("conditions")? {
        for (i, c) in cs.iter().enumerate() {
            let p = format!("conditions[{i}]");
            let c = c
                .as_object()
                .ok_or_else(|| EgError::param(format!("{p} must be an object")))?;
            let c = job_fields(Fields::new(c, p));
            if c.req_str("key")? != "topic" {
                return Err(EgError::param(format!("{} must be topic", c.at("key"))));
            }
            let op = c.req_str("operate")?;
            one_of(op, &["EQUAL", "LIKE"], &c.at("operate"))?;
            let value = c.opt_str("value")?.unwrap_or_default().to_string();
            conditions.push(if op == "EQUAL" {
                TopicCondition::Equal(value)
            } else {
                TopicCondition::Like(value)
            });
        }
    }
    Ok(SyncDetailQuery {
        offset,
        limit,
        conditions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({"name": "c-1", "source_type": "KAFKA", "sink_type": "KAFKA",
               "vpc_id": "v", "subnet_id": "s", "bss_param": {"charging_mode": "postPaid"},
               "public_access_enabled": false, "zone_names": "az1", "flavor": "small"})
    }

    fn err(v: Value) -> String {
        cluster_create(&v).unwrap_err().to_string()
    }

    #[test]
    fn create_ok() {
        let d = cluster_create(&good()).unwrap();
        assert_eq!(d["name"], "c-1");
        assert_eq!(d["charging_mode"], "postPaid");
        assert_eq!(d["public_access_enabled"], false);
        assert!(d.get("bss_param").is_none());
        assert!(d.get("eip_id").is_none());
    }

    #[test]
    fn bss_param_is_optional() {
        let mut g = good();
        g.as_object_mut().unwrap().remove("bss_param");
        assert_eq!(cluster_create(&g).unwrap()["charging_mode"], "postPaid");
        g["bss_param"] = Value::Null;
        assert_eq!(cluster_create(&g).unwrap()["charging_mode"], "postPaid");
        g["bss_param"] = json!({"charging_mode": "prePaid"});
        assert_eq!(cluster_create(&g).unwrap()["charging_mode"], "prePaid");
        for k in ["zone_names", "flavor", "description", "nat_id", "eip_id"] {
            g.as_object_mut().unwrap().remove(k);
        }
        assert!(cluster_create(&g).is_ok());
    }

    #[test]
    fn create_rejects() {
        let with = |k: &str, v: Value| {
            let mut g = good();
            g[k] = v;
            g
        };
        let without = |k: &str| {
            let mut g = good();
            g.as_object_mut().unwrap().remove(k);
            g
        };
        assert!(err(without("name")).contains("name"));
        assert!(err(with("name", json!("-bad"))).contains("name"));
        assert!(err(with("name", json!("a".repeat(129)))).contains("name"));
        assert!(err(with("description", json!("d".repeat(257)))).contains("description"));
        assert!(err(with("source_type", json!("RABBIT"))).contains("source_type"));
        assert!(err(with("sink_type", json!("DCS"))).contains("sink_type"));
        assert!(err(without("vpc_id")).contains("vpc_id"));
        assert!(err(without("subnet_id")).contains("subnet_id"));
        assert!(err(with("bss_param", json!({}))).contains("bss_param.charging_mode"));
        assert!(err(without("public_access_enabled")).contains("public_access_enabled"));
        assert!(err(with("public_access_enabled", json!("yes"))).contains("public_access_enabled"));
        assert!(err(with("public_access_enabled", json!(true))).contains("eip_id"));
        assert!(err(json!([1])).contains("request body"));
        let mut g = with("public_access_enabled", json!(true));
        g["eip_id"] = json!("e-1");
        assert!(cluster_create(&g).is_ok());
        let d = with("description", json!("d".repeat(256)));
        assert!(cluster_create(&d).is_ok());
    }

    #[test]
    fn update() {
        let old = cluster_create(&good()).unwrap();
        let d = cluster_update(&json!({"name": "c-2", "description": "x"}), &old).unwrap();
        assert_eq!(d["name"], "c-2");
        assert_eq!(d["source_type"], "KAFKA");
        assert!(
            cluster_update(&json!({"public_access_enabled": true}), &old)
                .unwrap_err()
                .to_string()
                .contains("eip_id")
        );
        let d = cluster_update(
            &json!({"public_access_enabled": true, "eip_id": "e", "nat_id": "n"}),
            &old,
        )
        .unwrap();
        assert_eq!(d["eip_id"], "e");
        assert!(cluster_update(&json!({"name": "!"}), &old).is_err());
        assert!(cluster_update(&json!({"nat_id": 3}), &old).is_err());
    }

    fn kafka_ep(addr: &str) -> Value {
        json!({"config_type": "CLOUD", "region": "r1", "project_id": "p1", "instance_id": "i1",
               "cluster_alias": "a", "address": addr, "user_name": "", "password": null,
               "authenticate_mode": "PLAINTEXT", "sasl_mechanism": ""})
    }

    fn job() -> Value {
        json!({"cluster_id": "c", "name": "j-1", "scene_type": "DISASTER_BACKUP",
               "description": "",
               "source_config": [{"source_kafka": [kafka_ep("127.0.0.1:9092")]}],
               "sink_config": {"sink_kafka": kafka_ep("127.0.0.1:9093")},
               "advance_config": [{"kafka2kafka": [{"topics": "t01", "topic_regex": "",
                   "task_cnt": null, "topic_mappings": [], "rename_topic": false,
                   "is_add_header": false, "is_sync_progress": false, "replica_cnt": 1,
                   "seek_to": "earliest", "compress_alg": "none"}]}]})
    }

    fn jerr(v: Value, ty: &str) -> String {
        job_body(&v, ty).unwrap_err().to_string()
    }

    #[test]
    fn job_ok_unwraps_and_drops_empty() {
        let d = job_body(&job(), "KAFKA").unwrap();
        assert_eq!(
            d["source_config"]["source_kafka"]["address"],
            "127.0.0.1:9092"
        );
        assert!(d["source_config"]["source_kafka"].get("password").is_none());
        assert!(d["source_config"]["source_kafka"]
            .get("user_name")
            .is_none());
        assert_eq!(d["advance_config"]["kafka2kafka"]["topics"], "t01");
        assert!(d["advance_config"]["kafka2kafka"]
            .get("topic_regex")
            .is_none());
        assert_eq!(initial_status(&d), "WAIT_START");
        assert_eq!(
            endpoint_address(&Value::Object(d.clone()), "sink"),
            Some("127.0.0.1:9093")
        );
        let bare = json!({"cluster_id": "c", "name": "j", "scene_type": "DISASTER_BACKUP"});
        let d = job_body(&bare, "DCS").unwrap();
        assert_eq!(initial_status(&d), "NO_CONFIGURATION");
        assert!(d["source_config"].is_null());
    }

    #[test]
    fn job_rejects() {
        let set = |path: &[&str], v: Value| {
            let mut j = job();
            let mut cur = &mut j;
            for p in &path[..path.len() - 1] {
                cur = if let Ok(i) = p.parse::<usize>() {
                    &mut cur[i]
                } else {
                    &mut cur[*p]
                };
            }
            cur[path[path.len() - 1]] = v;
            j
        };
        assert!(jerr(job(), "ROCKETMQ").contains("source_config.source_kafka"));
        assert!(jerr(set(&["scene_type"], json!("X")), "KAFKA").contains("scene_type"));
        assert!(jerr(set(&["name"], json!("")), "KAFKA").contains("name"));
        assert!(jerr(
            set(
                &["source_config", "0", "source_kafka", "0", "region"],
                json!("")
            ),
            "KAFKA"
        )
        .contains("source_config.source_kafka.region"));
        assert!(jerr(
            set(
                &["sink_config", "sink_kafka", "authenticate_mode"],
                json!("SASL_SSL")
            ),
            "KAFKA"
        )
        .contains("sink_config.sink_kafka.password"));
        assert!(jerr(
            set(&["sink_config", "sink_rocketmq"], kafka_ep("x")),
            "KAFKA"
        )
        .contains("sink_config"));
        assert!(jerr(
            set(
                &["advance_config", "0", "kafka2kafka", "0", "seek_to"],
                json!("x")
            ),
            "KAFKA"
        )
        .contains("advance_config.kafka2kafka.seek_to"));
        assert!(jerr(
            set(
                &["advance_config", "0", "kafka2kafka", "0", "topic_regex"],
                json!("t.*")
            ),
            "KAFKA"
        )
        .contains("topic_regex"));
        assert!(jerr(
            set(
                &["advance_config", "0", "kafka2kafka", "0", "replica_cnt"],
                json!(0)
            ),
            "KAFKA"
        )
        .contains("replica_cnt"));
        assert!(jerr(
            set(
                &["advance_config", "0", "kafka2kafka", "0", "is_add_header"],
                json!(null)
            ),
            "KAFKA"
        )
        .contains("is_add_header"));
        assert!(jerr(
            set(&["advance_config", "0", "kafka2kafka"], json!([1, 2])),
            "KAFKA"
        )
        .contains("kafka2kafka"));
    }

    #[test]
    fn dcs_aliases() {
        let ep = json!({"config_type": "CLOUD", "region": "r", "project_id": "p",
                        "address": "h:6379", "password": "pw"});
        let j = json!({"cluster_id": "c", "name": "d", "scene_type": "DISASTER_BACKUP",
            "source_config": {"source_dcs": ep}, "sink_config": {"sink_dcs": ep},
            "advance_config": {"dc2dc": {"synchronize_type": "full", "connect_retry_time": "60",
                "other_retry_time": 60, "use_slave_node": true, "allow_db": [0, 1],
                "db_mapping": {"0": "1"}}}});
        let d = job_body(&j, "DCS").unwrap();
        let a = &d["advance_config"]["dcs2dcs"];
        assert_eq!(a["use_salve_node"], true);
        assert_eq!(a["connect_retry_time"], "60");
        assert_eq!(d["source_config"]["source_dcs"]["password"], "pw");
        let mut bad = j.clone();
        bad["advance_config"]["dc2dc"]["synchronize_type"] = json!(null);
        assert!(jerr(bad, "DCS").contains("advance_config.dcs2dcs.synchronize_type"));
        let mut bad = j;
        bad["advance_config"] = json!({"kafka2kafka": {}});
        assert!(jerr(bad, "DCS").contains("kafka2kafka"));
    }

    #[test]
    fn sync_detail() {
        assert!(sync_detail_body(&json!({"offset": 0, "limit": 10})).is_ok());
        let q = sync_detail_body(&json!({"offset": 1, "limit": 10,
            "conditions": [{"key": "topic", "operate": "LIKE", "value": "Ord"},
                           {"key": "topic", "operate": "EQUAL", "value": "orders"}]}))
        .unwrap();
        assert_eq!((q.offset, q.limit), (1, 10));
        assert!(q.conditions[0].matches("my-orders"));
        assert!(!q.conditions[0].matches("pay"));
        assert!(q.conditions[1].matches("orders"));
        assert!(!q.conditions[1].matches("Orders"));
        assert!(sync_detail_body(&json!({"limit": 10}))
            .unwrap_err()
            .to_string()
            .contains("offset"));
        assert!(sync_detail_body(&json!({"offset": 0, "limit": 9}))
            .unwrap_err()
            .to_string()
            .contains("limit"));
        assert!(sync_detail_body(&json!({"offset": 10001, "limit": 10})).is_err());
        assert!(sync_detail_body(&json!({"offset": 0, "limit": 10,
            "conditions": [{"key": "x", "operate": "LIKE"}]}))
        .unwrap_err()
        .to_string()
        .contains("conditions[0].key"));
    }
}
