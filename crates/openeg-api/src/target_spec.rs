//! Typed target specs: a stored subscription target document (already validated by
//! [`crate::subscription::validate_target`]) parsed once into its common settings and a typed
//! per-kind detail, for the data plane to build sinks from (`openeg_connectors::sinks::build`).
//!
//! The kind comes from [`target_kind`], the function validation uses; only that kind's detail
//! member is read (a stored target may carry other kinds' detail objects too, as the
//! reference's examples do). Members are read with [`Fields`] and type-checked when present
//! (validation guaranteed their types); only the identifiers a delivery needs (URL, URN,
//! workflow id, target channel, topic, the dead-letter connection and topic) are required (an
//! empty one is kept as stored), and `retry_times` and `transform` keep the defaults delivery
//! always applied. A document whose kind cannot be
//! determined, or that fails these checks, is a [`SpecError`] (the engine skips that target
//! with a warning). Nothing here panics on any JSON.
//!
//! Secrets: the caller decrypts sealed members (APIGW header values) before parsing; the
//! `Debug` output of a spec never shows a secret header value, and error messages name members,
//! never values.

use crate::field::Fields;
use crate::subscription::{target_kind, TargetKind, DEFAULT_RETRY_TIMES, MAX_RETRY_TIMES};
use crate::EgError;
use serde_json::Value;
use std::fmt;

/// Why a stored target document cannot be parsed into a [`TargetSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecError {
    /// The document is not a JSON object.
    NotAnObject,
    /// Neither the name nor exactly one detail object tells the kind.
    UnknownKind,
    /// A member the kind needs is missing or has the wrong type; the message starts with the
    /// member's full path (`detail.url is required`).
    Invalid(String),
}

impl From<EgError> for SpecError {
    /// The message of a [`Fields`] error of a spec context, whose errors carry the bare detail.
    fn from(e: EgError) -> Self {
        SpecError::Invalid(e.msg)
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::NotAnObject => f.write_str("a target must be a JSON object"),
            SpecError::UnknownKind => f.write_str("unknown target kind"),
            SpecError::Invalid(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for SpecError {}

/// One subscription target, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSpec {
    /// `id` (empty when absent).
    pub id: String,
    /// `name` as configured (e.g. `WEBHOOK`), empty when absent.
    pub name: String,
    /// The target connection (`connection_id`), if any: mandatory for Kafka/RocketMQ, an
    /// optional WEBHOOK connection for webhooks.
    pub connection_id: Option<String>,
    /// Retries after the first attempt: `retry_times`, [`DEFAULT_RETRY_TIMES`] when absent or
    /// not a non-negative integer, at most [`MAX_RETRY_TIMES`].
    pub retry_times: u32,
    /// The payload transform (`transform`), `{"type":"ORIGINAL"}` when absent.
    pub transform: Value,
    pub dead_letter_queue: Option<DeadLetterQueue>,
    pub detail: TargetDetail,
}

/// The kind-specific settings of a target.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetDetail {
    Webhook(WebhookDetail),
    Apigw(ApigwDetail),
    FunctionGraph(FunctionGraphDetail),
    Workflow(WorkflowDetail),
    Smn(SmnDetail),
    Eg(EgDetail),
    Kafka(KafkaDetail),
    RocketMq(RocketMqDetail),
}

/// WEBHOOK: `detail.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDetail {
    pub url: String,
}

/// HC.APIGW: `apigw_detail.url` and `invocation_http_parameters.header_parameters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApigwDetail {
    pub url: String,
    /// Entries without a string `key` are left out; a missing `value` is empty.
    pub headers: Vec<HeaderParameter>,
}

/// One APIGW header parameter.
#[derive(Clone, PartialEq, Eq)]
pub struct HeaderParameter {
    pub key: String,
    /// Decrypted when the caller revealed the document.
    pub value: String,
    pub is_value_secret: bool,
}

impl fmt::Debug for HeaderParameter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = if self.is_value_secret {
            "******"
        } else {
            self.value.as_str()
        };
        f.debug_struct("HeaderParameter")
            .field("key", &self.key)
            .field("value", &value)
            .field("is_value_secret", &self.is_value_secret)
            .finish()
    }
}

/// How a function is invoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvokeType {
    Sync,
    Async,
}

/// HC.FunctionGraph: `detail.{urn, invoke_type, agency_name}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionGraphDetail {
    pub urn: String,
    /// `ASYNC` → async; anything else (validation allows only `SYNC`) → sync.
    pub invoke_type: InvokeType,
    pub agency_name: Option<String>,
}

/// HC.FunctionFlow (or HC.FunctionGraph with a `workflow_id` and no `urn`):
/// `detail.{workflow_id, agency_name}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowDetail {
    pub workflow_id: String,
    pub agency_name: Option<String>,
}

/// HC.SMN: `smn_detail.{urn, agency_name, subject_transform}`.
#[derive(Debug, Clone, PartialEq)]
pub struct SmnDetail {
    pub urn: String,
    pub agency_name: Option<String>,
    /// The subject transform, if set (not null).
    pub subject_transform: Option<Value>,
}

/// HC.EG (republish into another channel): `eg_detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgDetail {
    pub target_project_id: String,
    pub target_channel_id: String,
    pub target_region: Option<String>,
    pub cross_region: bool,
    pub cross_account: bool,
    pub agency_name: Option<String>,
}

/// HC.Kafka: `kafka_detail.{topic, keyTransform}` (the connection is
/// [`TargetSpec::connection_id`]).
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaDetail {
    pub topic: String,
    /// The record key transform (`keyTransform`), if set (not null).
    pub key_transform: Option<Value>,
}

/// HC.RocketMQ: `rocketmq_detail.{topic, key_transform, tag}` (the connection is
/// [`TargetSpec::connection_id`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RocketMqDetail {
    pub topic: String,
    /// The message key transform (`key_transform`), if set (not null).
    pub key_transform: Option<Value>,
    /// The message tag (`tag`), when the target names one (a non-empty string) [dec].
    pub tag: Option<String>,
}

/// `dead_letter_queue` (type KAFKA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterQueue {
    pub queue_type: String,
    pub instance_id: Option<String>,
    pub connection_id: String,
    pub topic: String,
}

impl TargetDetail {
    pub fn kind(&self) -> TargetKind {
        match self {
            TargetDetail::Webhook(_) => TargetKind::Webhook,
            TargetDetail::Apigw(_) => TargetKind::Apigw,
            TargetDetail::FunctionGraph(_) => TargetKind::FunctionGraph,
            TargetDetail::Workflow(_) => TargetKind::Workflow,
            TargetDetail::Smn(_) => TargetKind::Smn,
            TargetDetail::Eg(_) => TargetKind::Eg,
            TargetDetail::Kafka(_) => TargetKind::Kafka,
            TargetDetail::RocketMq(_) => TargetKind::RocketMq,
        }
    }
}

impl TargetSpec {
    /// Parses a stored target document (secrets already revealed if the caller sends).
    pub fn parse(t: &Value) -> Result<TargetSpec, SpecError> {
        let o = t.as_object().ok_or(SpecError::NotAnObject)?;
        let kind = target_kind(t).ok_or(SpecError::UnknownKind)?;
        let f = Fields::root(o)
            .missing_as(spec_error)
            .invalid_as(spec_error);
        let detail = parse_detail(kind, &f)?;
        let retry_times = f
            .get("retry_times")
            .and_then(Value::as_u64)
            .unwrap_or(DEFAULT_RETRY_TIMES as u64)
            .min(MAX_RETRY_TIMES as u64) as u32;
        let dead_letter_queue = match f.nested("dead_letter_queue")? {
            None => None,
            Some(d) => Some(parse_dead_letter_queue(&d)?),
        };
        Ok(TargetSpec {
            id: f.lenient_str("id").to_string(),
            name: f.lenient_str("name").to_string(),
            connection_id: f
                .opt_str("connection_id")?
                .filter(|c| !c.is_empty())
                .map(str::to_string),
            retry_times,
            // A stored `null` is kept (and refused when the transform is compiled).
            transform: o
                .get("transform")
                .cloned()
                .unwrap_or_else(|| serde_json::json!({"type": "ORIGINAL"})),
            dead_letter_queue,
            detail,
        })
    }

    pub fn kind(&self) -> TargetKind {
        self.detail.kind()
    }

    /// The record/message key transform (Kafka, RocketMQ).
    pub fn key_transform(&self) -> Option<&Value> {
        match &self.detail {
            TargetDetail::Kafka(d) => d.key_transform.as_ref(),
            TargetDetail::RocketMq(d) => d.key_transform.as_ref(),
            _ => None,
        }
    }

    /// The SMN subject transform.
    pub fn subject_transform(&self) -> Option<&Value> {
        match &self.detail {
            TargetDetail::Smn(d) => d.subject_transform.as_ref(),
            _ => None,
        }
    }
}

// ------------------------------------------------------------------ parsing

/// The error constructor of spec contexts: spec errors are log lines, not wire errors, so the
/// message is the bare detail (`detail.url must be a string`); see [`SpecError::Invalid`].
fn spec_error(detail: String) -> EgError {
    EgError::new(400, "EG.00513000", detail)
}

fn parse_detail(kind: TargetKind, f: &Fields) -> Result<TargetDetail, SpecError> {
    let member = kind.detail_member();
    let Some(d) = f.nested(member)? else {
        return Err(SpecError::Invalid(format!(
            "{} is required for {} targets",
            f.at(member),
            kind.wire_name()
        )));
    };
    let d = &d;
    Ok(match kind {
        TargetKind::Webhook => TargetDetail::Webhook(WebhookDetail {
            url: d.present_str("url")?.to_string(),
        }),
        TargetKind::Apigw => TargetDetail::Apigw(ApigwDetail {
            url: d.present_str("url")?.to_string(),
            headers: header_parameters(d),
        }),
        TargetKind::FunctionGraph => TargetDetail::FunctionGraph(FunctionGraphDetail {
            urn: d.present_str("urn")?.to_string(),
            invoke_type: match d.opt_str("invoke_type")? {
                Some("ASYNC") => InvokeType::Async,
                _ => InvokeType::Sync,
            },
            agency_name: d.opt_str("agency_name")?.map(str::to_string),
        }),
        TargetKind::Workflow => TargetDetail::Workflow(WorkflowDetail {
            workflow_id: d.present_str("workflow_id")?.to_string(),
            agency_name: d.opt_str("agency_name")?.map(str::to_string),
        }),
        TargetKind::Smn => TargetDetail::Smn(SmnDetail {
            urn: d.present_str("urn")?.to_string(),
            agency_name: d.opt_str("agency_name")?.map(str::to_string),
            subject_transform: d.opt_obj("subject_transform")?.cloned().map(Value::Object),
        }),
        TargetKind::Eg => TargetDetail::Eg(EgDetail {
            target_project_id: d.present_str("target_project_id")?.to_string(),
            target_channel_id: d.present_str("target_channel_id")?.to_string(),
            target_region: d.opt_str("target_region")?.map(str::to_string),
            cross_region: d.opt_bool("cross_region")?.unwrap_or(false),
            cross_account: d.opt_bool("cross_account")?.unwrap_or(false),
            agency_name: d.opt_str("agency_name")?.map(str::to_string),
        }),
        TargetKind::Kafka => TargetDetail::Kafka(KafkaDetail {
            topic: d.present_str("topic")?.to_string(),
            key_transform: d.opt_obj("keyTransform")?.cloned().map(Value::Object),
        }),
        TargetKind::RocketMq => TargetDetail::RocketMq(RocketMqDetail {
            topic: d.present_str("topic")?.to_string(),
            key_transform: d.opt_obj("key_transform")?.cloned().map(Value::Object),
            tag: d
                .get("tag")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_string),
        }),
    })
}

/// `invocation_http_parameters.header_parameters`, leniently: entries without a string `key`
/// are left out, a value that is not a string is empty.
fn header_parameters(d: &Fields) -> Vec<HeaderParameter> {
    d.get("invocation_http_parameters")
        .and_then(|p| p.get("header_parameters"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .map(Fields::root)
        .filter_map(|h| {
            Some(HeaderParameter {
                key: h.get("key")?.as_str()?.to_string(),
                value: h.lenient_str("value").to_string(),
                is_value_secret: h.get("is_value_secret") == Some(&Value::Bool(true)),
            })
        })
        .collect()
}

/// `dead_letter_queue`.
fn parse_dead_letter_queue(d: &Fields) -> Result<DeadLetterQueue, EgError> {
    Ok(DeadLetterQueue {
        queue_type: d.opt_str("type")?.unwrap_or("KAFKA").to_string(),
        instance_id: d.opt_str("instance_id")?.map(str::to_string),
        connection_id: d.present_str("connection_id")?.to_string(),
        topic: d.present_str("topic")?.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> TargetSpec {
        match TargetSpec::parse(&v) {
            Ok(s) => s,
            Err(e) => panic!("{v} does not parse: {e}"),
        }
    }

    fn err(v: Value) -> SpecError {
        match TargetSpec::parse(&v) {
            Ok(s) => panic!("{v} parsed: {s:?}"),
            Err(e) => e,
        }
    }

    /// The stored form of a target as `validate_target` and the server write it.
    fn stored(mut t: Value) -> Value {
        let o = t.as_object_mut().unwrap();
        o.entry("id").or_insert(json!("t-1"));
        o.entry("provider_type").or_insert(json!("CUSTOM"));
        o.entry("retry_times").or_insert(json!(16));
        o.entry("transform")
            .or_insert(json!({"type": "ORIGINAL", "value": ""}));
        o.insert("created_time".into(), json!("2024-01-01T00:00:00Z"));
        o.insert("updated_time".into(), json!("2024-01-01T00:00:00Z"));
        t
    }

    #[test]
    fn webhook() {
        let s = parse(stored(json!({"name": "WEBHOOK", "connection_id": "conn-w",
            "detail": {"url": "https://hooks.example.com/p?x=1"}})));
        assert_eq!(s.id, "t-1");
        assert_eq!(s.name, "WEBHOOK");
        assert_eq!(s.kind(), TargetKind::Webhook);
        assert_eq!(s.connection_id.as_deref(), Some("conn-w"));
        assert_eq!(s.retry_times, 16);
        assert_eq!(s.transform, json!({"type": "ORIGINAL", "value": ""}));
        assert_eq!(
            s.detail,
            TargetDetail::Webhook(WebhookDetail {
                url: "https://hooks.example.com/p?x=1".into()
            })
        );
        assert!(s.key_transform().is_none() && s.subject_transform().is_none());
    }

    /// The reference's CreateSubscription example: a WEBHOOK target carrying every detail
    /// object; only `detail.url` matters, and the other kinds' members are not read.
    #[test]
    fn reference_example_webhook_with_every_detail() {
        let s = parse(stored(json!({
            "id": "3a0eef2-78a4-4122-dfge-7ty5e37f64er",
            "name": "WEBHOOK", "provider_type": "CUSTOM", "connection_id": "conn-1",
            "detail": {"url": "http://10.213.96.90:8080/t/nodeapp/trigger-hello-nodejs",
                       "agency_name": "EG_TARGET_AGENCY",
                       "urn": "urn:fss:cn-north-7:bac852160cc743158936edaab6dda813:function:default:gxtestjava:latest",
                       "invoke_type": "ASYNC", "workflow_id": "86afc904-0019-46c8-baed-0225967c1b98"},
            "kafka_detail": {"topic": "8516d278-268a-4a8b-8766-9bf9b3302f43",
                             "keyTransform": {"type": "NONE", "value": "string", "template": "string"}},
            "smn_detail": {"urn": "urn:smn:cn-north-7:bac852160cc743158936edaab6dda813:122",
                           "agency_name": "EG_SMN_PUBLISHER_AGENCY",
                           "subject_transform": {"type": "VARIABLE", "value": "string", "template": "string"}},
            "eg_detail": {"target_project_id": "c5be311886934b7c8afb4f8970376130",
                          "target_channel_id": "10a79a30-bd4a-4955-a3ec-d62dc799347b",
                          "target_region": "cn-north-test", "cross_region": false,
                          "agency_name": "EG_TARGET_AGENCY"},
            "apigw_detail": {"url": "https://dms.cn-north-4.myhuaweicloud.com/testaaa",
                             "invocation_http_parameters": {"header_parameters": [
                                 {"is_value_secret": false, "key": "test-key", "value": "test-value"}]}},
            "retry_times": 16,
            "transform": {"type": "VARIABLE", "value": "{\"name\":\"$.data.name\"}",
                          "template": "My name is ${name}"},
            "dead_letter_queue": {"type": "KAFKA", "instance_id": "kafka-1",
                                  "connection_id": "conn-k", "topic": "dlq"}
        })));
        assert_eq!(s.id, "3a0eef2-78a4-4122-dfge-7ty5e37f64er");
        assert_eq!(
            s.detail,
            TargetDetail::Webhook(WebhookDetail {
                url: "http://10.213.96.90:8080/t/nodeapp/trigger-hello-nodejs".into()
            })
        );
        assert!(s.key_transform().is_none(), "kafka_detail is not read");
        assert!(s.subject_transform().is_none(), "smn_detail is not read");
        assert_eq!(s.transform["type"], "VARIABLE");
        assert_eq!(
            s.dead_letter_queue,
            Some(DeadLetterQueue {
                queue_type: "KAFKA".into(),
                instance_id: Some("kafka-1".into()),
                connection_id: "conn-k".into(),
                topic: "dlq".into(),
            })
        );
    }

    #[test]
    fn apigw() {
        let s = parse(stored(
            json!({"name": "HC.APIGW", "provider_type": "OFFICIAL",
            "apigw_detail": {"url": "https://api.example.com/x", "invocation_http_parameters": {
                "header_parameters": [
                    {"is_value_secret": true, "key": "X-Secret", "value": "s3cr3t"},
                    {"is_value_secret": false, "key": "X-Plain", "value": "p"},
                    {"key": "X-Empty"},
                    {"value": "no key"}]}}}),
        ));
        let TargetDetail::Apigw(d) = &s.detail else {
            panic!("{s:?}")
        };
        assert_eq!(d.url, "https://api.example.com/x");
        let h: Vec<_> = d
            .headers
            .iter()
            .map(|h| (h.key.as_str(), h.value.as_str(), h.is_value_secret))
            .collect();
        assert_eq!(
            h,
            [
                ("X-Secret", "s3cr3t", true),
                ("X-Plain", "p", false),
                ("X-Empty", "", false)
            ]
        );
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("s3cr3t"), "secret in Debug: {dbg}");
        assert!(dbg.contains("X-Secret") && dbg.contains("\"p\""));
        // The reference's example has no header parameters at all.
        let s = parse(stored(json!({"name": "HC.APIGW",
            "apigw_detail": {"url": "https://dms.cn-north-4.myhuaweicloud.com/testaaa"}})));
        assert!(matches!(&s.detail, TargetDetail::Apigw(d) if d.headers.is_empty()));
    }

    #[test]
    fn functiongraph() {
        let body = |it: &str| {
            stored(
                json!({"name": "HC.FunctionGraph", "provider_type": "OFFICIAL",
                "detail": {"urn": "urn:fss:r:p:function:default:f1:latest", "invoke_type": it,
                           "agency_name": "EG_AGENCY"}}),
            )
        };
        let s = parse(body("SYNC"));
        assert_eq!(
            s.detail,
            TargetDetail::FunctionGraph(FunctionGraphDetail {
                urn: "urn:fss:r:p:function:default:f1:latest".into(),
                invoke_type: InvokeType::Sync,
                agency_name: Some("EG_AGENCY".into()),
            })
        );
        let s = parse(body("ASYNC"));
        assert!(
            matches!(&s.detail, TargetDetail::FunctionGraph(d) if d.invoke_type == InvokeType::Async)
        );
    }

    #[test]
    fn workflow() {
        let s = parse(stored(
            json!({"name": "HC.FunctionFlow", "provider_type": "OFFICIAL",
            "detail": {"workflow_id": "wf-1", "agency_name": "EG_AGENCY"}}),
        ));
        assert_eq!(
            s.detail,
            TargetDetail::Workflow(WorkflowDetail {
                workflow_id: "wf-1".into(),
                agency_name: Some("EG_AGENCY".into()),
            })
        );
        // HC.FunctionGraph with a workflow_id and no urn is a workflow target.
        let s = parse(stored(json!({"name": "HC.FunctionGraph",
            "detail": {"workflow_id": "86afc904-0019-46c8-baed-0225967c1b98",
                       "agency_name": "EG_TARGET_AGENCY"}})));
        assert_eq!(s.kind(), TargetKind::Workflow);
    }

    #[test]
    fn smn() {
        // The reference's CreateSubscription example (SMN target without a subject).
        let s = parse(stored(
            json!({"name": "HC.SMN", "provider_type": "OFFICIAL",
            "smn_detail": {"agency_name": "EG_TARGET_AGENCY",
                           "urn": "urn:smn:cn-north-7:bac852160cc743158936edaab6dda813:CES_notification_group_xMXxPQ1ry"},
            "transform": {"type": "ORIGINAL", "value": ""}}),
        ));
        assert_eq!(
            s.detail,
            TargetDetail::Smn(SmnDetail {
                urn: "urn:smn:cn-north-7:bac852160cc743158936edaab6dda813:CES_notification_group_xMXxPQ1ry".into(),
                agency_name: Some("EG_TARGET_AGENCY".into()),
                subject_transform: None,
            })
        );
        let s = parse(stored(json!({"name": "HC.SMN",
            "smn_detail": {"urn": "urn:smn:r:p:t", "agency_name": "a",
                           "subject_transform": {"type": "CONSTANT", "value": "hi"}}})));
        assert_eq!(
            s.subject_transform(),
            Some(&json!({"type": "CONSTANT", "value": "hi"}))
        );
        let s = parse(stored(json!({"name": "HC.SMN",
            "smn_detail": {"urn": "u", "subject_transform": null}})));
        assert!(s.subject_transform().is_none());
    }

    #[test]
    fn eg() {
        let s = parse(stored(json!({"name": "HC.EG", "provider_type": "OFFICIAL",
            "eg_detail": {"target_project_id": "c5be311886934b7c8afb4f8970376130",
                          "target_channel_id": "10a79a30-bd4a-4955-a3ec-d62dc799347b",
                          "target_region": "cn-north-test", "cross_region": false,
                          "cross_account": true, "agency_name": "EG_TARGET_AGENCY"}})));
        assert_eq!(
            s.detail,
            TargetDetail::Eg(EgDetail {
                target_project_id: "c5be311886934b7c8afb4f8970376130".into(),
                target_channel_id: "10a79a30-bd4a-4955-a3ec-d62dc799347b".into(),
                target_region: Some("cn-north-test".into()),
                cross_region: false,
                cross_account: true,
                agency_name: Some("EG_TARGET_AGENCY".into()),
            })
        );
    }

    #[test]
    fn kafka() {
        let s = parse(stored(
            json!({"name": "HC.Kafka", "provider_type": "OFFICIAL",
            "connection_id": "conn-k",
            "kafka_detail": {"topic": "orders", "keyTransform": {"type": "CONSTANT", "value": "k"}}}),
        ));
        assert_eq!(s.kind(), TargetKind::Kafka);
        assert_eq!(s.connection_id.as_deref(), Some("conn-k"));
        assert_eq!(
            s.key_transform(),
            Some(&json!({"type": "CONSTANT", "value": "k"}))
        );
        assert!(matches!(&s.detail, TargetDetail::Kafka(d) if d.topic == "orders"));
        // Without a name the kind is inferred from the one detail object.
        let s = parse(stored(json!({"connection_id": "conn-k",
            "kafka_detail": {"topic": "t", "keyTransform": {"type": "NONE"}}})));
        assert_eq!(s.kind(), TargetKind::Kafka);
        assert_eq!(s.name, "");
    }

    #[test]
    fn rocketmq() {
        let s = parse(stored(
            json!({"name": "HC.RocketMQ", "provider_type": "OFFICIAL",
            "connection_id": "conn-r",
            "rocketmq_detail": {"topic": "t1", "key_transform": {"type": "CONSTANT", "value": "k"}}}),
        ));
        assert_eq!(
            s.detail,
            TargetDetail::RocketMq(RocketMqDetail {
                topic: "t1".into(),
                key_transform: Some(json!({"type": "CONSTANT", "value": "k"})),
                tag: None,
            })
        );
        assert_eq!(s.connection_id.as_deref(), Some("conn-r"));
    }

    #[test]
    fn defaults() {
        let s = parse(json!({"name": "WEBHOOK", "detail": {"url": "http://h/"}}));
        assert_eq!(s.id, "");
        assert_eq!(s.retry_times, DEFAULT_RETRY_TIMES as u32);
        assert_eq!(s.transform, json!({"type": "ORIGINAL"}));
        assert!(s.connection_id.is_none() && s.dead_letter_queue.is_none());
        let retry = |v: Value| {
            parse(json!({"name": "WEBHOOK", "detail": {"url": "http://h/"}, "retry_times": v}))
                .retry_times
        };
        assert_eq!(retry(json!(0)), 0);
        assert_eq!(retry(json!(3)), 3);
        assert_eq!(retry(json!(1000)), MAX_RETRY_TIMES as u32);
        assert_eq!(retry(json!(-1)), 16);
        assert_eq!(retry(json!("5")), 16);
        assert_eq!(retry(Value::Null), 16);
        // An empty connection id is no connection; the name is matched case-insensitively.
        let s = parse(json!({"name": "webhook", "connection_id": "", "detail": {"url": "u"}}));
        assert!(s.connection_id.is_none());
        assert_eq!(s.name, "webhook");
        // A function invoke type left out is SYNC.
        let s = parse(json!({"name": "HC.FunctionGraph", "detail": {"urn": "u"}}));
        assert!(
            matches!(&s.detail, TargetDetail::FunctionGraph(d) if d.invoke_type == InvokeType::Sync && d.agency_name.is_none())
        );
    }

    /// Stored documents are read as they are: an empty identifier is a value, a `null`
    /// transform is kept (compiling it refuses the target), `""` connection ids are none.
    #[test]
    fn stored_values_are_not_second_guessed() {
        let s = parse(
            json!({"name": "WEBHOOK", "detail": {"url": ""}, "transform": null,
            "dead_letter_queue": {"type": "", "connection_id": "", "topic": ""}}),
        );
        assert_eq!(
            s.detail,
            TargetDetail::Webhook(WebhookDetail { url: "".into() })
        );
        assert_eq!(s.transform, Value::Null);
        let d = s.dead_letter_queue.unwrap();
        assert_eq!((d.queue_type.as_str(), d.topic.as_str()), ("", ""));
        // Header entries that are not objects or lack a string key are left out.
        let s = parse(json!({"name": "HC.APIGW", "apigw_detail": {"url": "u",
            "invocation_http_parameters": {"header_parameters": [
                5, {"key": 1}, {"key": "k", "value": 2, "is_value_secret": "true"}]}}}));
        let TargetDetail::Apigw(d) = &s.detail else {
            panic!("{s:?}")
        };
        assert_eq!(
            d.headers,
            [HeaderParameter {
                key: "k".into(),
                value: "".into(),
                is_value_secret: false
            }]
        );
        assert_eq!(
            err(json!({"name": "WEBHOOK", "detail": {"url": "u"}, "dead_letter_queue": 5}))
                .to_string(),
            "dead_letter_queue must be a JSON object"
        );
        assert_eq!(
            err(json!({"name": "HC.EG", "eg_detail": {"target_project_id": "p"}})),
            SpecError::Invalid("eg_detail.target_channel_id is required".into())
        );
    }

    /// What validation stores parses, for every kind.
    #[test]
    fn every_validated_kind_parses() {
        use crate::subscription::{validate_target, ChannelFacts, Env};
        let env = Env {
            project_id: "p1".into(),
            channel: Some(ChannelFacts {
                id: "ch".into(),
                name: "ch".into(),
                is_default: false,
            }),
            connections: [
                ("conn-k", "KAFKA"),
                ("conn-r", "ROCKETMQ"),
                ("conn-w", "WEBHOOK"),
            ]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
            ..Default::default()
        };
        let t = json!({"type": "ORIGINAL", "value": ""});
        let bodies = [
            json!({"name": "WEBHOOK", "provider_type": "CUSTOM", "connection_id": "conn-w",
                   "detail": {"url": "https://h.example.com/"}, "transform": t}),
            json!({"name": "HC.APIGW", "provider_type": "OFFICIAL",
                   "apigw_detail": {"url": "https://api.example.com/x"}, "transform": t}),
            json!({"name": "HC.FunctionGraph", "provider_type": "OFFICIAL",
                   "detail": {"urn": "urn:fss:r:p:function:default:f1:latest",
                              "invoke_type": "ASYNC", "agency_name": "a"}, "transform": t}),
            json!({"name": "HC.FunctionFlow", "provider_type": "OFFICIAL",
                   "detail": {"workflow_id": "wf", "agency_name": "a"}, "transform": t}),
            json!({"name": "HC.SMN", "provider_type": "OFFICIAL",
                   "smn_detail": {"urn": "urn:smn:r:p:t", "agency_name": "a"}, "transform": t}),
            json!({"name": "HC.EG", "provider_type": "OFFICIAL",
                   "eg_detail": {"target_project_id": "p1", "target_channel_id": "other",
                                 "target_region": "r", "agency_name": "a"}, "transform": t}),
            json!({"name": "HC.Kafka", "provider_type": "OFFICIAL", "connection_id": "conn-k",
                   "kafka_detail": {"topic": "orders", "keyTransform": {}}, "transform": t,
                   "dead_letter_queue": {"type": "KAFKA", "instance_id": "i",
                                         "connection_id": "conn-k", "topic": "dlq"}}),
            json!({"name": "HC.RocketMQ", "provider_type": "OFFICIAL", "connection_id": "conn-r",
                   "rocketmq_detail": {"topic": "t1"}, "transform": t}),
        ];
        let mut kinds = Vec::new();
        for b in bodies {
            let doc = match validate_target(&b, "", &env) {
                Ok(d) => d,
                Err(e) => panic!("{b} is invalid: {e:?}"),
            };
            kinds.push(parse(stored(doc)).kind());
        }
        use TargetKind as K;
        assert_eq!(
            kinds,
            [
                K::Webhook,
                K::Apigw,
                K::FunctionGraph,
                K::Workflow,
                K::Smn,
                K::Eg,
                K::Kafka,
                K::RocketMq
            ]
        );
    }

    #[test]
    fn malformed() {
        assert_eq!(err(json!([1])), SpecError::NotAnObject);
        assert_eq!(err(json!(null)), SpecError::NotAnObject);
        // A kind from a newer (or older) version.
        assert_eq!(
            err(json!({"name": "HC.Pulsar", "pulsar_detail": {"topic": "t"}})),
            SpecError::UnknownKind
        );
        // Two candidate detail objects and no known name.
        assert_eq!(
            err(json!({"smn_detail": {"urn": "u"}, "eg_detail": {}})),
            SpecError::UnknownKind
        );
        assert_eq!(
            err(json!({"name": "WEBHOOK", "detail": {}})).to_string(),
            "detail.url is required"
        );
        assert_eq!(
            err(json!({"name": "WEBHOOK", "detail": {"url": 5}})).to_string(),
            "detail.url must be a string"
        );
        assert_eq!(
            err(json!({"name": "HC.SMN"})).to_string(),
            "smn_detail is required for HC.SMN targets"
        );
        assert_eq!(
            err(json!({"name": "HC.APIGW", "apigw_detail": "x"})).to_string(),
            "apigw_detail must be a JSON object"
        );
        assert_eq!(
            err(
                json!({"name": "HC.EG", "eg_detail": {"target_project_id": "p",
                "target_channel_id": "c", "cross_region": "no"}})
            )
            .to_string(),
            "eg_detail.cross_region must be a boolean"
        );
        assert_eq!(
            err(json!({"name": "HC.Kafka", "kafka_detail": {"topic": "t", "keyTransform": "k"}}))
                .to_string(),
            "kafka_detail.keyTransform must be a JSON object"
        );
        assert_eq!(
            err(json!({"name": "WEBHOOK", "detail": {"url": "u"},
                "dead_letter_queue": {"type": "KAFKA", "topic": "t"}}))
            .to_string(),
            "dead_letter_queue.connection_id is required"
        );
        assert_eq!(
            err(json!({"name": "WEBHOOK", "detail": {"url": "u"}, "connection_id": 7})).to_string(),
            "connection_id must be a string"
        );
    }
}
