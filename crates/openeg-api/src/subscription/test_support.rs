//! Fixtures of the subscription tests: an [`Env`] with one connection of each type, one valid
//! target per kind, body builders and JSON-pointer edits.

use super::*;
use serde_json::{json, Value};

pub(super) const PROJECT: &str = "p1";
pub(super) const CH: &str = "ch-1";
pub(super) const KAFKA_CONN: &str = "conn-kafka";
pub(super) const RMQ_CONN: &str = "conn-rmq";
pub(super) const WH_CONN: &str = "conn-webhook";

pub(super) fn env() -> Env {
    Env {
        project_id: PROJECT.into(),
        channel: Some(ChannelFacts {
            id: CH.into(),
            name: "orders".into(),
            is_default: false,
        }),
        custom_sources: ["app-src".to_string()].into_iter().collect(),
        connections: [
            (KAFKA_CONN.to_string(), CONN_KAFKA.to_string()),
            (RMQ_CONN.to_string(), CONN_ROCKETMQ.to_string()),
            (WH_CONN.to_string(), CONN_WEBHOOK.to_string()),
        ]
        .into_iter()
        .collect(),
    }
}

pub(super) fn default_env() -> Env {
    let mut e = env();
    e.channel = Some(ChannelFacts {
        id: "ch-default".into(),
        name: "default".into(),
        is_default: true,
    });
    e
}

pub(super) fn filter() -> Value {
    json!({"source": [{"op": "StringIn", "values": ["app-src"]}]})
}

pub(super) fn source() -> Value {
    json!({"name": "app-src", "provider_type": "CUSTOM", "filter": filter()})
}

pub(super) fn original() -> Value {
    json!({"type": "ORIGINAL", "value": ""})
}

pub(super) fn webhook() -> Value {
    json!({"name": "WEBHOOK", "provider_type": "CUSTOM",
           "detail": {"url": "https://hooks.example.com/p?x=1"}, "transform": original()})
}

pub(super) fn fg() -> Value {
    json!({"name": "HC.FunctionGraph", "provider_type": "OFFICIAL",
           "detail": {"urn": "urn:fss:r:p:function:default:f1:latest", "invoke_type": "SYNC",
                      "agency_name": "EG_AGENCY"},
           "transform": original()})
}

pub(super) fn workflow() -> Value {
    json!({"name": "HC.FunctionFlow", "provider_type": "OFFICIAL",
           "detail": {"workflow_id": "wf-1", "agency_name": "EG_AGENCY"}, "transform": original()})
}

pub(super) fn smn() -> Value {
    json!({"name": "HC.SMN", "provider_type": "OFFICIAL",
           "smn_detail": {"urn": "urn:smn:r:p:t", "agency_name": "a",
                          "subject_transform": {"type": "CONSTANT", "value": "hi"}},
           "transform": original()})
}

pub(super) fn eg() -> Value {
    json!({"name": "HC.EG", "provider_type": "OFFICIAL",
           "eg_detail": {"target_project_id": PROJECT, "target_channel_id": "other-ch",
                         "target_region": "r1", "cross_region": false, "cross_account": false,
                         "agency_name": "a"},
           "transform": original()})
}

pub(super) fn kafka() -> Value {
    json!({"name": "HC.Kafka", "provider_type": "OFFICIAL", "connection_id": KAFKA_CONN,
           "kafka_detail": {"topic": "orders", "keyTransform": {"type": "CONSTANT", "value": "k"}},
           "transform": original()})
}

pub(super) fn apigw() -> Value {
    json!({"name": "HC.APIGW", "provider_type": "OFFICIAL",
           "apigw_detail": {"url": "https://api.example.com/x", "invocation_http_parameters": {
               "header_parameters": [{"is_value_secret": true, "key": "X-Secret", "value": "s"},
                                     {"is_value_secret": false, "key": "X-Plain", "value": "p"}]}},
           "transform": original()})
}

pub(super) fn rocketmq() -> Value {
    json!({"name": "HC.RocketMQ", "provider_type": "OFFICIAL", "connection_id": RMQ_CONN,
           "rocketmq_detail": {"topic": "t1", "key_transform": {"type": "CONSTANT", "value": "k"}},
           "transform": original()})
}

pub(super) fn create_body(targets: Vec<Value>) -> Value {
    json!({"name": "sub-1", "channel_id": CH, "sources": [source()], "targets": targets})
}

pub(super) fn create(body: &Value) -> Result<CreateSubscription, EgError> {
    validate_create(body, &env())
}

pub(super) fn code(r: Result<impl std::fmt::Debug, EgError>) -> &'static str {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code,
    }
}

pub(super) fn target(t: Value) -> Result<Value, EgError> {
    validate_target(&t, "targets[0]", &env())
}

pub(super) fn with(mut v: Value, ptr: &str, new: Value) -> Value {
    if let Some(slot) = v.pointer_mut(ptr) {
        *slot = new;
    } else {
        let (parent, key) = ptr.rsplit_once('/').unwrap();
        v.pointer_mut(parent)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert(key.into(), new);
    }
    v
}

pub(super) fn without(mut v: Value, ptr: &str) -> Value {
    let (parent, key) = ptr.rsplit_once('/').unwrap();
    v.pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove(key);
    v
}

pub(super) fn dlq(topic: &str) -> Value {
    json!({"type": "KAFKA", "instance_id": "i-1", "connection_id": KAFKA_CONN, "topic": topic})
}
