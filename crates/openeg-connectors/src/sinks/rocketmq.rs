//! HC.RocketMQ targets: one message per attempt to `rocketmq_detail.topic`, through a
//! producer built from the target's ROCKETMQ connection (`rocketmq_detail` of the connection
//! document: `addr` = the name server list, `use_tls`, `enable_acl`, `user_name`,
//! `password`), plus [`check_connection`], the name-server probe of such a connection.
//!
//! The message: body = the transformed payload; `KEYS` = the key transform's output, else the
//! event id; `TAGS` = `rocketmq_detail.tag` only when the target names one; user properties =
//! the event's CloudEvents attributes as the CloudEvents RocketMQ binding names them
//! (`CE_specversion`, `CE_id`, `CE_source`, `CE_type`, `CE_subject`, `CE_time`).
//!
//! Delivered means `SEND_OK`: the broker stored the message as configured. `FLUSH_DISK_TIMEOUT`,
//! `FLUSH_SLAVE_TIMEOUT` and `SLAVE_NOT_AVAILABLE` (stored on the master, durability asked for
//! not confirmed) are retried, like every broker or network error, with the status or error
//! named; a retry may duplicate the message, which at-least-once allows. OpenEG never creates a
//! user's topic on purpose: a missing one is a retried failure (a broker with
//! `autoCreateTopicEnable` creates it itself).
//!
//! Producers are shared by every target whose connection settings are the same (a process-wide
//! map of weak references) and started on first use; they run on the RocketMQ client runtime
//! (`crate::rocketmq`). TLS is not supported (the connection fails the build with that
//! reason); ACL credentials sign every request.

use super::{BuildContext, BuildError};
use crate::rocketmq::{self as rmq, ClientSettings};
use crate::{EventAttributes, Message, Outcome, Sink};
use openeg_api::target_spec::RocketMqDetail;
use rocketmq_client_rust::{ClientConfig, DefaultMQProducer, SendStatus};
use rocketmq_model::common::message::message_single::Message as RmqMessage;
use rocketmq_model::common::message::MessageTrait;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

/// How long one send may take, the client's own retry included: below the engine's 30 s
/// attempt timeout, so the attempt ends with the broker's reason.
pub const SEND_TIMEOUT_MS: u64 = 10_000;
/// Outer bound of an attempt (starting the producer included).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(25);
/// How long [`check_connection`] waits for the name server.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// The producer group OpenEG's producers use (the broker only records it).
pub const PRODUCER_GROUP: &str = "OPENEG_PRODUCER";
/// A topic every RocketMQ name server knows when the broker auto-creates topics; the
/// connection check asks for its route (an unknown topic is an answer too).
const PROBE_TOPIC: &str = "TBW102";

/// The client settings of a ROCKETMQ connection document (`ConnectionInfo`, secrets
/// revealed), or why it cannot be used.
pub fn settings(connection: &Value) -> Result<ClientSettings, String> {
    let d = connection
        .get("rocketmq_detail")
        .and_then(Value::as_object)
        .ok_or("the connection has no rocketmq_detail (is it a ROCKETMQ connection?)")?;
    let text = |k: &str| {
        d.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let addr = text("addr").ok_or("rocketmq_detail.addr is missing")?;
    let acl = if rmq::flag(d.get("enable_acl")) {
        let user = text("user_name").ok_or("rocketmq_detail.user_name is required for ACL")?;
        let password = d
            .get("password")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or("rocketmq_detail.password is required for ACL")?;
        Some((user, password))
    } else {
        None
    };
    ClientSettings::new(
        addr,
        rmq::flag(d.get("use_tls")),
        acl,
        "rocketmq_detail.addr",
    )
}

/// A started producer; shut down on the client runtime when the last target lets go of it.
struct Started(Option<DefaultMQProducer>);

impl Drop for Started {
    fn drop(&mut self) {
        if let Some(mut p) = self.0.take() {
            rmq::spawn_detached(async move { p.shutdown().await });
        }
    }
}

/// One producer per distinct settings, started on first use (a failed start is tried again
/// by the next attempt).
struct SharedProducer {
    settings: ClientSettings,
    started: tokio::sync::OnceCell<Arc<Started>>,
}

impl SharedProducer {
    async fn get(&self) -> Result<Arc<Started>, String> {
        self.started
            .get_or_try_init(|| async {
                let p = start_producer(&self.settings).await?;
                Ok::<_, String>(Arc::new(Started(Some(p))))
            })
            .await
            .cloned()
    }
}

async fn start_producer(s: &ClientSettings) -> Result<DefaultMQProducer, String> {
    let runtime = rmq::client_runtime()?;
    let settings = s.clone();
    rmq::spawn(async move {
        let mut config = ClientConfig::default();
        config.set_instance_name(rmq::instance_name("producer").into());
        let mut builder = DefaultMQProducer::builder(runtime)
            .client_config(config)
            .producer_group(PRODUCER_GROUP)
            .name_server_addr(settings.namesrv.clone())
            .send_msg_timeout(SEND_TIMEOUT_MS as u32)
            .retry_times_when_send_failed(1);
        if let Some(hook) = settings.rpc_hook() {
            builder = builder.rpc_hook(hook);
        }
        let mut producer = builder.build();
        producer
            .start()
            .await
            .map_err(|e| format!("starting the RocketMQ producer: {}", rmq::describe(&e)))?;
        Ok(producer)
    })
    .await?
}

fn shared_producer(s: &ClientSettings) -> Arc<SharedProducer> {
    static PRODUCERS: OnceLock<Mutex<HashMap<String, Weak<SharedProducer>>>> = OnceLock::new();
    let key = s.cache_key();
    let mut map = PRODUCERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(p) = map.get(&key).and_then(Weak::upgrade) {
        return p;
    }
    let p = Arc::new(SharedProducer {
        settings: s.clone(),
        started: tokio::sync::OnceCell::new(),
    });
    map.retain(|_, w| w.strong_count() > 0);
    map.insert(key, Arc::downgrade(&p));
    p
}

pub struct RocketMqSink {
    producer: Arc<SharedProducer>,
    topic: String,
    tag: Option<String>,
}

/// An HC.RocketMQ target through its connection (resolved by the caller, secrets revealed).
pub fn build(d: &RocketMqDetail, ctx: &BuildContext) -> Result<Box<dyn Sink>, BuildError> {
    let conn = ctx
        .connection
        .ok_or_else(|| BuildError::Invalid("HC.RocketMQ targets need a connection_id".into()))?;
    let id = conn.get("id").and_then(Value::as_str).unwrap_or("?");
    let settings =
        settings(conn).map_err(|e| BuildError::Invalid(format!("connection {id}: {e}")))?;
    Ok(Box::new(RocketMqSink {
        producer: shared_producer(&settings),
        topic: d.topic.clone(),
        tag: d.tag.clone(),
    }))
}

/// The message keys: the key transform's output when there is one, else the event id.
pub fn message_keys(msg: &Message) -> Option<&str> {
    msg.key
        .as_deref()
        .or(msg.event.as_ref().map(|e| e.id.as_str()))
        .filter(|k| !k.is_empty())
}

/// CloudEvents attributes as RocketMQ user properties (the CloudEvents RocketMQ binding).
pub fn ce_properties(e: &EventAttributes) -> Vec<(&'static str, &str)> {
    let mut p = vec![
        ("CE_specversion", e.specversion.as_str()),
        ("CE_id", e.id.as_str()),
        ("CE_source", e.source.as_str()),
        ("CE_type", e.ty.as_str()),
    ];
    if let Some(s) = &e.subject {
        p.push(("CE_subject", s.as_str()));
    }
    if let Some(t) = &e.time {
        p.push(("CE_time", t.as_str()));
    }
    p
}

/// The message a target sends for `msg`.
pub fn to_message(topic: &str, tag: Option<&str>, msg: &Message) -> RmqMessage {
    let mut m = RmqMessage::builder()
        .topic(topic)
        .body(msg.payload.clone())
        .build_unchecked();
    if let Some(k) = message_keys(msg) {
        m.set_keys(k.into());
    }
    if let Some(t) = tag.filter(|t| !t.is_empty()) {
        m.set_tags(t.into());
    }
    if let Some(e) = &msg.event {
        for (k, v) in ce_properties(e) {
            // Empty values are refused by the client; an absent property says the same.
            if !v.is_empty() {
                let _ = m.put_user_property(k.into(), v.into());
            }
        }
    }
    m
}

/// The attempt outcome of a send status: only `SEND_OK` is delivered.
pub fn classify_status(status: SendStatus, topic: &str) -> Outcome {
    let code = match status {
        SendStatus::SendOk => {
            return Outcome::Delivered {
                code: "SEND_OK".into(),
            }
        }
        SendStatus::FlushDiskTimeout => "FLUSH_DISK_TIMEOUT",
        SendStatus::FlushSlaveTimeout => "FLUSH_SLAVE_TIMEOUT",
        SendStatus::SlaveNotAvailable => "SLAVE_NOT_AVAILABLE",
    };
    Outcome::Retry {
        code: code.into(),
        detail: format!(
            "topic {topic}: the broker answered {code} (stored, durability not confirmed)"
        ),
        retry_after: None,
    }
}

/// A failed send: retried, the error named (a topic without route is said to be missing).
pub fn classify_error(error: &str, topic: &str) -> Outcome {
    let lower = error.to_ascii_lowercase();
    let detail = if lower.contains("route") || lower.contains("topic not exist") {
        format!(
            "topic {topic} does not exist on the RocketMQ cluster or has no route \
             (OpenEG does not create topics): {error}"
        )
    } else {
        format!("topic {topic}: {error}")
    };
    Outcome::Retry {
        code: "RocketMQError".into(),
        detail,
        retry_after: None,
    }
}

#[async_trait::async_trait]
impl Sink for RocketMqSink {
    fn wants_event(&self) -> bool {
        true
    }

    async fn send(&self, msg: &Message) -> Outcome {
        let message = to_message(&self.topic, self.tag.as_deref(), msg);
        let attempt = async {
            let producer = self.producer.get().await?;
            rmq::spawn(async move {
                let p = producer.0.as_ref().ok_or("the producer is shut down")?;
                p.send_with_timeout(message, SEND_TIMEOUT_MS)
                    .await
                    .map_err(|e| rmq::describe(&e))
            })
            .await?
        };
        match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await {
            Ok(Ok(Some(result))) => classify_status(result.send_status, &self.topic),
            Ok(Ok(None)) => classify_error("the broker returned no send result", &self.topic),
            Ok(Err(e)) => classify_error(&e, &self.topic),
            Err(_) => classify_error(
                &format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs()),
                &self.topic,
            ),
        }
    }
}

/// Checks a ROCKETMQ connection document (`ConnectionInfo`, secrets revealed): its settings
/// are usable and its name server answers a topic route query. A bad address, a port that
/// does not speak RocketMQ remoting, or a refused request fail with the reason.
pub async fn check_connection(connection_doc: &Value) -> Result<(), String> {
    let settings = settings(connection_doc)?;
    let runtime = rmq::client_runtime()?;
    let namesrv = settings.namesrv.clone();
    let probe = rmq::spawn(async move {
        let mut config = ClientConfig::default();
        config.set_instance_name(rmq::instance_name("check").into());
        let mut builder = DefaultMQProducer::builder(runtime)
            .client_config(config)
            .producer_group(format!("{PRODUCER_GROUP}_CHECK"))
            .name_server_addr(settings.namesrv.clone());
        if let Some(hook) = settings.rpc_hook() {
            builder = builder.rpc_hook(hook);
        }
        let mut producer = builder.build();
        if let Err(e) = producer.start().await {
            return Err(format!("starting a client: {}", rmq::describe(&e)));
        }
        let result = tokio::time::timeout(
            CHECK_TIMEOUT,
            producer.fetch_publish_message_queues(PROBE_TOPIC),
        )
        .await;
        producer.shutdown().await;
        match result {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                let text = rmq::describe(&e);
                // The name server answered that it has no such route: it is reachable and
                // speaks RocketMQ (a broker without topic auto-creation has no TBW102).
                if answered_without_route(&text) {
                    Ok(())
                } else {
                    Err(text)
                }
            }
            Err(_) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
        }
    });
    match tokio::time::timeout(CHECK_TIMEOUT + Duration::from_secs(5), probe).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) | Ok(Err(e)) => Err(format!("RocketMQ name server {namesrv}: {e}")),
        Err(_) => Err(format!(
            "RocketMQ name server {namesrv}: no answer within {} s",
            CHECK_TIMEOUT.as_secs()
        )),
    }
}

/// Whether a route query's error is the name server's own "no such topic" answer.
fn answered_without_route(error: &str) -> bool {
    error.contains("response code 17") || error.contains("Can not find Message Queue")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conn(detail: Value) -> Value {
        json!({"id": "c1", "type": "ROCKETMQ", "rocketmq_detail": detail})
    }

    #[test]
    fn settings_from_a_connection() {
        let s = settings(&conn(json!({"instance_id": "i", "addr": "a:9876;b:9876",
            "use_tls": false, "enable_acl": false})))
        .unwrap();
        assert_eq!(s.namesrv, "a:9876;b:9876");
        assert_eq!(s.acl, None);
        let s = settings(&conn(json!({"addr": "a:1", "enable_acl": "true",
            "user_name": "u", "password": "pw-secret"})))
        .unwrap();
        assert_eq!(s.acl, Some(("u".into(), "pw-secret".into())));
        assert!(!format!("{s:?}").contains("pw-secret"));
        let e = settings(&conn(
            json!({"addr": "a:1", "enable_acl": true, "user_name": "u"}),
        ))
        .unwrap_err();
        assert!(e.contains("password is required"), "{e}");
        let e = settings(&conn(json!({"addr": "a:1", "use_tls": true}))).unwrap_err();
        assert!(e.contains("TLS to RocketMQ is not supported"), "{e}");
        assert!(settings(&conn(json!({"use_tls": false}))).is_err());
        assert!(settings(&json!({"id": "w", "type": "WEBHOOK"})).is_err());
    }

    #[test]
    fn messages() {
        let ev = EventAttributes {
            id: "e1".into(),
            source: "app".into(),
            specversion: "1.0".into(),
            ty: "order.created".into(),
            subject: None,
            time: Some("2024-01-01T00:00:00Z".into()),
        };
        let mut msg = Message {
            payload: bytes::Bytes::from_static(b"{\"a\":1}"),
            event: Some(ev.clone()),
            ..Default::default()
        };
        let m = to_message("t", None, &msg);
        assert_eq!(m.topic().as_str(), "t");
        assert_eq!(m.body_slice(), b"{\"a\":1}");
        assert_eq!(m.keys(), Some(vec!["e1".to_string()]));
        assert_eq!(m.tags(), None);
        assert_eq!(m.property("CE_id"), Some("e1"));
        assert_eq!(m.property("CE_type"), Some("order.created"));
        assert_eq!(m.property("CE_time"), Some("2024-01-01T00:00:00Z"));
        assert_eq!(m.property("CE_subject"), None);
        msg.key = Some("k".into());
        let m = to_message("t", Some("TagA"), &msg);
        assert_eq!(m.keys(), Some(vec!["k".to_string()]));
        assert_eq!(m.tags(), Some("TagA"));
        assert_eq!(message_keys(&Message::default()), None);
        assert_eq!(ce_properties(&ev).len(), 5);
    }

    #[test]
    fn outcomes() {
        assert!(classify_status(SendStatus::SendOk, "t").is_success());
        for s in [
            SendStatus::FlushDiskTimeout,
            SendStatus::FlushSlaveTimeout,
            SendStatus::SlaveNotAvailable,
        ] {
            assert!(matches!(classify_status(s, "t"), Outcome::Retry { .. }));
        }
        match classify_status(SendStatus::FlushDiskTimeout, "t") {
            Outcome::Retry { code, .. } => assert_eq!(code, "FLUSH_DISK_TIMEOUT"),
            o => panic!("{o:?}"),
        }
        match classify_error("No route info of this topic: orders", "orders") {
            Outcome::Retry { detail, .. } => {
                assert!(detail.contains("topic orders does not exist"), "{detail}")
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn builds_share_a_producer_per_connection() {
        let http = super::super::HttpClient::new().unwrap();
        let c = conn(json!({"addr": "127.0.0.1:9"}));
        let ctx = BuildContext {
            http: &http,
            project_id: "p",
            functiongraph_endpoint: None,
            smn_endpoint: None,
            connection: Some(&c),
        };
        let d = RocketMqDetail {
            topic: "t".into(),
            key_transform: None,
            tag: None,
        };
        let s = settings(&c).unwrap();
        assert!(Arc::ptr_eq(&shared_producer(&s), &shared_producer(&s)));
        assert!(build(&d, &ctx).is_ok());
        let tls = conn(json!({"addr": "127.0.0.1:9", "use_tls": true}));
        let e = build(
            &d,
            &BuildContext {
                connection: Some(&tls),
                ..ctx
            },
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.starts_with("connection c1: rocketmq_detail.addr: TLS"),
            "{e}"
        );
        let none = BuildContext {
            connection: None,
            ..ctx
        };
        assert!(build(&d, &none).is_err());
    }

    #[tokio::test]
    async fn check_fails_on_a_closed_port() {
        let e = check_connection(&conn(json!({"addr": "127.0.0.1:9"})))
            .await
            .unwrap_err();
        assert!(e.starts_with("RocketMQ name server 127.0.0.1:9: "), "{e}");
        assert!(
            check_connection(&conn(json!({"addr": "127.0.0.1:9", "use_tls": true})))
                .await
                .is_err()
        );
    }
}
