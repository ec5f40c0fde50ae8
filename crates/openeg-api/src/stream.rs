//! Event stream request validation (ops 56 and 58, `docs/limits.md`).
//!
//! Create and update bodies are identical (update is a full replacement). [`parse`] turns a
//! body into the stored document members (`name`, `description`, `source`, `sink`,
//! `rule_config`, `option`); the server adds `id`, `status` and the timestamps, seals secrets
//! and checks that `sink.sink_kafka.connectionId` names a KAFKA connection of the project.
//!
//! Optional detail fields that are `null` or `""` mean "not set" (the reference's example sends
//! `"ssl_certificate_pwd": null` and `"password": ""`) and are not stored. Unknown members of a
//! detail object are dropped.

use crate::field::Fields;
use crate::validate::{self, NamePattern};
use crate::EgError;
use openeg_rules::{validate_filter, validate_transform, TransformUse};
use serde_json::{Map, Value};

/// The validated body of a create or update request.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSpec {
    pub name: String,
    /// Wire-shaped members to store (without id, status, timestamps).
    pub doc: Map<String, Value>,
    /// `sink.sink_kafka.connectionId` when the sink is Kafka (must be a KAFKA connection).
    pub kafka_connection_id: Option<String>,
}

/// Longest `description`.
pub const DESCRIPTION_MAX: usize = 255;
/// Largest `option.thread_num`.
pub const MAX_THREADS: i64 = 64;
/// `option.batch_window` members and their bounds.
pub const BATCH_WINDOW: [(&str, i64, i64); 3] =
    [("count", 1, 10_000), ("time", 0, 16), ("interval", 0, 15)];

/// Type and range of one detail field (also drives the OpenAPI document).
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    /// String of at most this many characters.
    Str(usize),
    /// One of these strings.
    Enum(&'static [&'static str]),
    Bool,
    /// Integer within bounds.
    Int(i64, i64),
}

/// One detail field: wire name, type, required, accepted alias.
pub type Field = (&'static str, Ty, bool, Option<&'static str>);

const S: Ty = Ty::Str(256);
const INT: Ty = Ty::Int(i64::MIN, i64::MAX);
const POS: Ty = Ty::Int(1, i32::MAX as i64);

const SOURCE_KAFKA: &[Field] = &[
    ("addr", S, false, None),
    ("group", S, true, None),
    ("instance_name", S, false, None),
    ("security_protocol", S, false, None),
    ("instance_id", S, false, None),
    ("topic", S, true, None),
    ("seek_to", Ty::Enum(&["earliest", "latest"]), false, None),
    ("enable_sasl_ssl", Ty::Bool, false, None),
    (
        "sasl_mechanism",
        Ty::Enum(&["PLAIN", "SCRAM-SHA-512"]),
        false,
        None,
    ),
    ("ssl_certificate_url", Ty::Str(512), false, None),
    (
        "ssl_certificate_pwd",
        Ty::Str(256),
        false,
        Some("ssl_certificate_password"),
    ),
    ("user_name", S, false, None),
    ("password", S, false, None),
];

const SOURCE_MOBILE_ROCKETMQ: &[Field] = &[
    ("group_id", S, true, None),
    ("instance_id", S, true, None),
    ("topic", S, true, None),
    ("tag", S, false, None),
    ("authentication_required", Ty::Bool, false, None),
    ("msg_trace_switch", Ty::Bool, false, None),
    ("access_key", S, false, None),
    ("secret_key", S, false, None),
    ("message_model", S, true, None),
    ("addr_type", S, true, None),
    ("addr", S, true, None),
    ("sdk_url", Ty::Str(1024), true, None),
    ("consume_timeout", Ty::Int(1000, 900_000), true, None),
    ("message_type", S, true, None),
    ("suspend_time", Ty::Int(10, 1800), false, None),
    (
        "max_reconsumer_times",
        Ty::Int(-1, i32::MAX as i64),
        false,
        Some("max_reconsume_times"),
    ),
    ("consumer_thread_nums", POS, false, None),
    ("consumer_batch_max_size", POS, false, None),
    (
        "consumer_max_wait",
        Ty::Int(0, i32::MAX as i64),
        false,
        None,
    ),
    ("vpc_id", S, false, None),
    ("subnet_id", S, false, None),
];

const SOURCE_COMMUNITY_ROCKETMQ: &[Field] = &[
    ("instance_name", S, false, None),
    ("instance_id", S, false, None),
    ("addr", S, true, None),
    ("group", S, true, None),
    ("topic", S, true, None),
    ("tag", S, false, None),
    ("vpc_id", S, true, None),
    ("subnet_id", S, true, None),
    ("ssl_enable", Ty::Bool, false, None),
    ("enable_acl", Ty::Bool, false, None),
    ("access_key", S, false, None),
    ("secret_key", S, false, None),
    ("message_type", S, false, None),
    ("consume_timeout", INT, false, None),
    ("consumer_thread_nums", POS, false, None),
    ("consumer_batch_max_size", POS, false, None),
    (
        "max_reconsume_times",
        Ty::Int(-1, i32::MAX as i64),
        false,
        Some("max_reconsumer_times"),
    ),
    ("suspend_current_queue_time_millis", INT, false, None),
];

const SOURCE_DMS_ROCKETMQ: &[Field] = &[
    // Not in EG's reference: OpenEG reaches a DMS instance through its name server list.
    ("addr", S, false, None),
    ("instance_name", S, false, None),
    ("instance_id", S, true, None),
    ("group", S, true, None),
    ("topic", S, true, None),
    ("tag", S, false, None),
    ("ssl_enable", Ty::Bool, false, None),
    ("enable_acl", Ty::Bool, false, None),
    ("access_key", S, false, None),
    ("secret_key", S, false, None),
    ("message_type", S, false, None),
    ("engine_version", S, false, None),
    ("consume_timeout", INT, false, None),
    ("consumer_thread_nums", POS, false, None),
    ("consumer_batch_max_size", POS, false, None),
    (
        "max_reconsume_times",
        Ty::Int(-1, i32::MAX as i64),
        false,
        Some("max_reconsumer_times"),
    ),
    ("suspend_current_queue_time_millis", INT, false, None),
];

const SINK_FG: &[Field] = &[
    ("invoke_type", Ty::Enum(&["SYNC", "ASYNC"]), false, None),
    ("urn", Ty::Str(512), false, None),
    ("agency", S, false, None),
];

const SINK_KAFKA: &[Field] = &[("topic", S, true, None), ("connectionId", S, true, None)];

const SINK_OBS: &[Field] = &[
    ("access_key", S, true, None),
    ("secret_key", S, true, None),
    ("obs_bucket", S, true, None),
    ("obs_path", Ty::Str(1024), false, None),
    ("time_format", S, true, None),
];

/// (member, canonical `name`, fields).
pub const SOURCES: &[(&str, &str, &[Field])] = &[
    ("source_kafka", "HC.Kafka", SOURCE_KAFKA),
    (
        "source_mobile_rocketmq",
        "HC.MOBILE_ROCKETMQ",
        SOURCE_MOBILE_ROCKETMQ,
    ),
    (
        "source_community_rocketmq",
        "HC.COMMUNITY_ROCKETMQ",
        SOURCE_COMMUNITY_ROCKETMQ,
    ),
    (
        "source_dms_rocketmq",
        "HC.DMS_ROCKETMQ",
        SOURCE_DMS_ROCKETMQ,
    ),
];

/// Sink members, as [`SOURCES`].
pub const SINKS: &[(&str, &str, &[Field])] = &[
    ("sink_fg", "HC.FunctionGraph", SINK_FG),
    ("sink_kafka", "HC.Kafka", SINK_KAFKA),
    ("sink_obs", "HC.OBS", SINK_OBS),
];

fn is_unset(v: Option<&Value>) -> bool {
    matches!(v, None | Some(Value::Null)) || v.and_then(Value::as_str) == Some("")
}

/// Validates one detail object against its field table; returns the cleaned object.
fn detail(
    o: &Map<String, Value>,
    path: &str,
    fields: &[Field],
) -> Result<Map<String, Value>, EgError> {
    let mut out = Map::new();
    for &(key, ty, required, alias) in fields {
        let mut v = o.get(key);
        if is_unset(v) {
            if let Some(a) = alias {
                v = o.get(a);
            }
        }
        let f = format!("{path}.{key}");
        let v = match v {
            Some(v) if !is_unset(Some(v)) => v,
            _ if required => return Err(EgError::param(format!("{f} is required"))),
            _ => continue,
        };
        let stored = match ty {
            Ty::Str(max) => {
                let s = v
                    .as_str()
                    .ok_or_else(|| EgError::param(format!("{f} must be a string")))?;
                validate::max_len(&f, s, max)?;
                v.clone()
            }
            Ty::Enum(allowed) => match v.as_str() {
                Some(s) if allowed.contains(&s) => v.clone(),
                _ => {
                    return Err(EgError::param(format!(
                        "{f} must be one of {}",
                        allowed.join(", ")
                    )))
                }
            },
            Ty::Bool => {
                if !v.is_boolean() {
                    return Err(EgError::param(format!("{f} must be a boolean")));
                }
                v.clone()
            }
            Ty::Int(min, max) => match v.as_i64() {
                Some(i) if (min..=max).contains(&i) => v.clone(),
                Some(_) => {
                    return Err(EgError::param(format!(
                        "{f} must be an integer between {min} and {max}"
                    )))
                }
                None => return Err(EgError::param(format!("{f} must be an integer"))),
            },
        };
        out.insert(key.to_string(), stored);
    }
    Ok(out)
}

/// `source` or `sink`: exactly one member of `kinds`, an optional consistent `name`.
fn endpoint(
    src: &Map<String, Value>,
    what: &str,
    kinds: &[(&'static str, &'static str, &'static [Field])],
) -> Result<(Map<String, Value>, &'static str), EgError> {
    let o = match src.get(what) {
        None | Some(Value::Null) => return Err(EgError::param(format!("{what} is required"))),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(EgError::param(format!("{what} must be a JSON object"))),
    };
    let members: Vec<&str> = kinds.iter().map(|k| k.0).collect();
    let present: Vec<_> = kinds
        .iter()
        .filter(|(m, _, _)| !matches!(o.get(*m), None | Some(Value::Null)))
        .collect();
    let &(member, canonical, fields) = match present.as_slice() {
        [one] => *one,
        _ => {
            return Err(EgError::param(format!(
                "{what} must have exactly one of {}",
                members.join(", ")
            )))
        }
    };
    let path = format!("{what}.{member}");
    let d = o
        .get(member)
        .and_then(Value::as_object)
        .ok_or_else(|| EgError::param(format!("{path} must be a JSON object")))?;
    let mut cleaned = detail(d, &path, fields)?;
    if member == "sink_kafka" {
        if let Some(kt) = d.get("keyTransform").filter(|v| !v.is_null()) {
            let arr = kt.as_array().ok_or_else(|| {
                EgError::param(format!("{path}.keyTransform must be an array of TransForm"))
            })?;
            for (i, t) in arr.iter().enumerate() {
                if !t.is_object() {
                    return Err(EgError::param(format!(
                        "{path}.keyTransform[{i}] must be a JSON object"
                    )));
                }
                validate_transform(t, TransformUse::Key)
                    .map_err(|e| EgError::param(format!("{path}.keyTransform[{i}]: {e}")))?;
            }
            cleaned.insert("keyTransform".into(), kt.clone());
        }
    }
    if let Some(n) = Fields::new(o, what).opt_str("name")? {
        if !n.is_empty() && n != canonical {
            return Err(EgError::param(format!(
                "{what}.name must be {canonical} for {member}"
            )));
        }
    }
    let mut out = Map::new();
    out.insert(member.to_string(), Value::Object(cleaned));
    out.insert("name".into(), canonical.into());
    Ok((out, member))
}

fn rule_config(rc: &Map<String, Value>) -> Result<Map<String, Value>, EgError> {
    let mut out = Map::new();
    match rc.get("transform") {
        None | Some(Value::Null) => {}
        Some(t @ Value::Object(_)) => {
            validate_transform(t, TransformUse::Payload)
                .map_err(|e| EgError::param(format!("rule_config.transform: {e}")))?;
            out.insert("transform".into(), t.clone());
        }
        Some(_) => {
            return Err(EgError::param(
                "rule_config.transform must be a JSON object",
            ))
        }
    }
    match rc.get("filter") {
        None | Some(Value::Null) => {}
        Some(f @ Value::Object(_)) => {
            validate_filter(f, false)
                .map_err(|e| EgError::filter(format!("rule_config.filter: {e}")))?;
            out.insert("filter".into(), f.clone());
        }
        Some(_) => return Err(EgError::param("rule_config.filter must be a JSON object")),
    }
    Ok(out)
}

/// An integer member that may also arrive as a numeric string (`"thread_num": "3"`).
fn int_or_string(
    o: &Map<String, Value>,
    f: &str,
    key: &str,
    min: i64,
    max: i64,
) -> Result<Option<i64>, EgError> {
    let n = match o.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(_) => None,
    };
    match n {
        Some(i) if (min..=max).contains(&i) => Ok(Some(i)),
        _ => Err(EgError::param(format!(
            "{f} must be an integer between {min} and {max}"
        ))),
    }
}

fn run_option(o: &Map<String, Value>) -> Result<Map<String, Value>, EgError> {
    let mut out = Map::new();
    let tn = int_or_string(o, "option.thread_num", "thread_num", 1, MAX_THREADS)?.unwrap_or(1);
    out.insert("thread_num".into(), tn.into());
    match o.get("batch_window") {
        None | Some(Value::Null) => {}
        Some(Value::Object(bw)) => {
            let mut b = Map::new();
            for (key, min, max) in BATCH_WINDOW {
                let f = format!("option.batch_window.{key}");
                if let Some(i) = int_or_string(bw, &f, key, min, max)? {
                    b.insert(key.into(), i.into());
                }
            }
            out.insert("batch_window".into(), Value::Object(b));
        }
        Some(_) => return Err(EgError::param("option.batch_window must be a JSON object")),
    }
    Ok(out)
}

/// Validates a create/update body (`EventStreamingCreateReq` / `EventStreamingUpdateReq`).
pub fn parse(v: &Value) -> Result<StreamSpec, EgError> {
    let src = Fields::body(v)?;
    let name = src.req_str("name")?;
    validate::name("name", name, NamePattern::Mixed)?;
    let mut doc = Map::new();
    doc.insert("name".into(), name.into());
    let desc = src
        .opt_str_max("description", DESCRIPTION_MAX)?
        .unwrap_or("");
    doc.insert("description".into(), desc.into());
    let (source, _) = endpoint(src.map(), "source", SOURCES)?;
    doc.insert("source".into(), Value::Object(source));
    let (sink, member) = endpoint(src.map(), "sink", SINKS)?;
    let kafka_connection_id = if member == "sink_kafka" {
        sink.get("sink_kafka")
            .and_then(|k| k.get("connectionId"))
            .and_then(Value::as_str)
            .map(str::to_string)
    } else {
        None
    };
    doc.insert("sink".into(), Value::Object(sink));
    let rc = match src.opt_obj("rule_config")? {
        Some(rc) => rule_config(rc)?,
        None => Map::new(),
    };
    doc.insert("rule_config".into(), Value::Object(rc));
    let opt = match src.opt_obj("option")? {
        Some(o) => run_option(o)?,
        None => run_option(&Map::new())?,
    };
    doc.insert("option".into(), Value::Object(opt));
    Ok(StreamSpec {
        name: name.to_string(),
        doc,
        kafka_connection_id,
    })
}

/// Status after a ResumeEventStreaming `operation` (op 61): `START` → `RUNNING`,
/// `PAUSE` → `STOPPED`; anything else is a 400.
pub fn operation_status(op: Option<&Value>) -> Result<&'static str, EgError> {
    let op = op.and_then(Value::as_str);
    OPERATIONS
        .iter()
        .find(|(o, _)| Some(*o) == op)
        .map(|(_, status)| *status)
        .ok_or_else(|| EgError::param("operation must be START or PAUSE"))
}

/// ResumeEventStreaming operations and the status each one sets.
pub const OPERATIONS: [(&str, &str); 2] = [("START", "RUNNING"), ("PAUSE", "STOPPED")];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sources() -> Vec<(&'static str, Value)> {
        vec![
            (
                "source_kafka",
                json!({"addr": "10.0.0.1:9092", "group": "g", "topic": "t",
                "seek_to": "earliest", "ssl_certificate_pwd": null, "user_name": "", "password": "pw"}),
            ),
            (
                "source_mobile_rocketmq",
                json!({"group_id": "g", "instance_id": "i", "topic": "t",
                "message_model": "CLUSTERING", "addr_type": "PUBLIC", "addr": "a", "sdk_url": "u",
                "consume_timeout": 30000, "message_type": "NORMAL", "max_reconsume_times": 3}),
            ),
            (
                "source_community_rocketmq",
                json!({"addr": "a", "group": "g", "topic": "t",
                "vpc_id": "v", "subnet_id": "s", "max_reconsume_times": -1}),
            ),
            (
                "source_dms_rocketmq",
                json!({"instance_id": "i", "group": "g", "topic": "t",
                "secret_key": "sk"}),
            ),
        ]
    }

    fn sinks() -> Vec<(&'static str, Value)> {
        vec![
            (
                "sink_fg",
                json!({"invoke_type": "SYNC", "urn": "urn:fss:r:p:function:default:f:latest"}),
            ),
            (
                "sink_kafka",
                json!({"topic": "t", "connectionId": "c1",
                "keyTransform": [{"type": "ORIGINAL"}]}),
            ),
            (
                "sink_obs",
                json!({"access_key": "ak", "secret_key": "sk", "obs_bucket": "b",
                "time_format": "yyyy"}),
            ),
        ]
    }

    fn body(src: (&str, Value), sink: (&str, Value)) -> Value {
        json!({"name": "s1", "source": {src.0: src.1}, "sink": {sink.0: sink.1}})
    }

    #[test]
    fn every_source_and_sink_kind_is_accepted() {
        for s in sources() {
            for k in sinks() {
                let spec = parse(&body(s.clone(), k.clone())).unwrap();
                assert_eq!(spec.name, "s1");
                assert!(spec.doc["source"].get(s.0).is_some());
                assert!(spec.doc["sink"].get(k.0).is_some());
                assert_eq!(spec.doc["option"]["thread_num"], 1);
                assert_eq!(
                    spec.kafka_connection_id.as_deref(),
                    (k.0 == "sink_kafka").then_some("c1")
                );
            }
        }
    }

    #[test]
    fn unset_optionals_are_dropped_and_aliases_canonicalized() {
        let spec = parse(&body(sources()[0].clone(), sinks()[0].clone())).unwrap();
        let k = &spec.doc["source"]["source_kafka"];
        assert!(k.get("ssl_certificate_pwd").is_none());
        assert!(k.get("user_name").is_none());
        assert_eq!(spec.doc["source"]["name"], "HC.Kafka");
        let spec = parse(&body(sources()[1].clone(), sinks()[0].clone())).unwrap();
        assert_eq!(
            spec.doc["source"]["source_mobile_rocketmq"]["max_reconsumer_times"],
            3
        );
    }

    fn err(v: &Value) -> String {
        let e = parse(v).unwrap_err();
        assert_eq!(e.status, 400);
        e.msg
    }

    #[test]
    fn invalid_sources_name_the_field() {
        let cases = [
            (
                "source_kafka",
                json!({"group": "g"}),
                "source.source_kafka.topic is required",
            ),
            (
                "source_kafka",
                json!({"group": "g", "topic": "t", "seek_to": "middle"}),
                "seek_to",
            ),
            (
                "source_kafka",
                json!({"group": "g", "topic": "t", "sasl_mechanism": "X"}),
                "sasl_mechanism",
            ),
            (
                "source_mobile_rocketmq",
                json!({"group_id": "g", "instance_id": "i", "topic": "t",
                "message_model": "CLUSTERING", "addr_type": "PUBLIC", "addr": "a", "sdk_url": "u",
                "consume_timeout": 5, "message_type": "NORMAL"}),
                "consume_timeout",
            ),
            (
                "source_mobile_rocketmq",
                json!({"group_id": "g"}),
                "source.source_mobile_rocketmq.instance_id is required",
            ),
            (
                "source_community_rocketmq",
                json!({"addr": "a", "group": "g", "topic": "t", "vpc_id": "v"}),
                "source.source_community_rocketmq.subnet_id is required",
            ),
            (
                "source_community_rocketmq",
                json!({"addr": "a", "group": "g", "topic": "t", "vpc_id": "v",
                "subnet_id": "s", "ssl_enable": "yes"}),
                "ssl_enable must be a boolean",
            ),
            (
                "source_dms_rocketmq",
                json!({"group": "g", "topic": "t"}),
                "source.source_dms_rocketmq.instance_id is required",
            ),
            (
                "source_dms_rocketmq",
                json!({"instance_id": "i", "group": "g", "topic": 5}),
                "topic must be a string",
            ),
            ("source_dms_rocketmq", json!("x"), "must be a JSON object"),
        ];
        for (m, d, want) in cases {
            let msg = err(&body((m, d), sinks()[0].clone()));
            assert!(msg.contains(want), "{m}: {msg}");
        }
    }

    #[test]
    fn invalid_sinks_name_the_field() {
        let cases = [
            (
                "sink_fg",
                json!({"invoke_type": "SOMETIMES"}),
                "sink.sink_fg.invoke_type",
            ),
            (
                "sink_kafka",
                json!({"connectionId": "c"}),
                "sink.sink_kafka.topic is required",
            ),
            (
                "sink_kafka",
                json!({"topic": "t"}),
                "sink.sink_kafka.connectionId is required",
            ),
            (
                "sink_kafka",
                json!({"topic": "t", "connectionId": "c", "keyTransform": {"type": "ORIGINAL"}}),
                "keyTransform",
            ),
            (
                "sink_kafka",
                json!({"topic": "t", "connectionId": "c", "keyTransform": [{"type": "BOGUS"}]}),
                "keyTransform[0]",
            ),
            (
                "sink_obs",
                json!({"access_key": "a", "secret_key": "s", "obs_bucket": "b"}),
                "sink.sink_obs.time_format is required",
            ),
            (
                "sink_obs",
                json!({"secret_key": "s", "obs_bucket": "b", "time_format": "t"}),
                "sink.sink_obs.access_key is required",
            ),
        ];
        for (m, d, want) in cases {
            let msg = err(&body(sources()[0].clone(), (m, d)));
            assert!(msg.contains(want), "{m}: {msg}");
        }
    }

    #[test]
    fn exactly_one_member_and_consistent_names() {
        let mut v = body(sources()[0].clone(), sinks()[0].clone());
        v["source"]["source_dms_rocketmq"] = sources()[3].1.clone();
        assert!(err(&v).contains("exactly one"));
        let mut v = body(sources()[0].clone(), sinks()[0].clone());
        v["sink"] = json!({});
        assert!(err(&v).contains("sink must have exactly one"));
        let mut v = body(sources()[0].clone(), sinks()[0].clone());
        v["source"]["name"] = json!("HC.OBS");
        assert!(err(&v).contains("source.name"));
        let mut v = body(sources()[0].clone(), sinks()[0].clone());
        v.as_object_mut().unwrap().remove("source");
        assert!(err(&v).contains("source is required"));
    }

    #[test]
    fn name_option_and_rule_config() {
        let mut v = body(sources()[0].clone(), sinks()[0].clone());
        v["name"] = json!("-bad");
        assert!(err(&v).contains("name"));
        let mut v = body(sources()[0].clone(), sinks()[0].clone());
        v["option"] =
            json!({"thread_num": "3", "batch_window": {"count": 500, "time": 10, "interval": 0}});
        v["rule_config"] = json!({"filter": {}, "transform": {"type": "ORIGINAL"}});
        let spec = parse(&v).unwrap();
        assert_eq!(spec.doc["option"]["thread_num"], 3);
        assert_eq!(spec.doc["option"]["batch_window"]["count"], 500);
        for (opt, want) in [
            (json!({"thread_num": 65}), "thread_num"),
            (json!({"thread_num": "x"}), "thread_num"),
            (json!({"batch_window": {"count": 0}}), "batch_window.count"),
            (json!({"batch_window": {"time": 17}}), "batch_window.time"),
            (
                json!({"batch_window": {"interval": 16}}),
                "batch_window.interval",
            ),
        ] {
            v["option"] = opt;
            assert!(err(&v).contains(want), "{want}");
        }
        v["option"] = json!({});
        v["rule_config"] = json!({"transform": {"type": "NOPE"}});
        assert!(err(&v).contains("rule_config.transform"));
        v["rule_config"] = json!({"filter": {"data": {"x": [{"op": "NoSuchOp", "value": 1}]}}});
        assert!(parse(&v).is_err());
        v["rule_config"] =
            json!({"filter": {"data": {"x": [{"op": "StringIn", "values": ["a"]}]}}});
        parse(&v).unwrap();
    }

    #[test]
    fn operations() {
        assert_eq!(operation_status(Some(&json!("START"))).unwrap(), "RUNNING");
        assert_eq!(operation_status(Some(&json!("PAUSE"))).unwrap(), "STOPPED");
        assert!(operation_status(Some(&json!("STOP"))).is_err());
        assert!(operation_status(None).is_err());
    }
}
