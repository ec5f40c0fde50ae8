//! HC.Kafka targets: one record per attempt to `kafka_detail.topic`, through a producer built
//! from the target's KAFKA connection (`kafka_detail` of the connection document: `addr`,
//! `security_protocol`, `enable_sasl_ssl`, `user_name`, `password`, `acks`).
//!
//! The record: value = the transformed payload; key = the key transform's output, else the
//! event id; headers = the event's CloudEvents attributes in Kafka binary-mode form
//! (`ce_specversion`, `ce_id`, `ce_source`, `ce_type`, `ce_subject`, `ce_time`). OpenEG never
//! creates a user's topic: a missing one is a retried failure (`docs/limits.md`).
//!
//! Producers are shared by every target whose connection settings are the same (a process-wide
//! map of weak references), so a connection used by many targets holds one set of broker
//! sockets. PLAINTEXT, SASL_PLAINTEXT, SSL and SASL_SSL are supported. TLS verifies the
//! broker's certificate (and host name) against the operator's CA file when one is set
//! ([`set_trusted_ca_file`], the `kafka_ca_file` setting), else the system's CA store: a
//! connection cannot turn verification off.

use super::{BuildContext, BuildError};
use crate::{EventAttributes, Message, Outcome, Sink};
use openeg_api::connection::parse_addr_list;
use openeg_api::target_spec::KafkaDetail;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

/// How long librdkafka may try to deliver one record (its own retries included): below the
/// engine's 30 s attempt timeout, so the attempt ends with the broker's reason.
pub const MESSAGE_TIMEOUT_MS: u32 = 25_000;
/// How long a record for a topic the cluster does not know waits for the topic to appear
/// before it fails with "unknown topic" (librdkafka's default is 30 s, past the attempt).
pub const UNKNOWN_TOPIC_WAIT_MS: u32 = 5_000;
/// How long `send` may wait for room in the producer's local queue.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts in flight per HC.Kafka target. librdkafka puts the records of concurrent sends
/// into one ProduceRequest, so this bounds the batch: the engine's default of 16 would cap
/// every request at 16 records and the rate at 16 per broker round trip. The records wait in
/// the producer's local queue (100,000 messages by default), not in the engine.
pub const MAX_IN_FLIGHT: usize = 1024;
/// SASL mechanisms accepted in `sasl_mechanism` (PLAIN when absent).
pub const SASL_MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// The CA bundle (PEM file) TLS connections to Kafka trust, set once at start-up from the
/// operator's configuration; `None`: the system's CA store.
static TRUSTED_CA_FILE: OnceLock<Option<String>> = OnceLock::new();

/// Sets the CA file Kafka TLS connections trust (call once, before any connection is used;
/// later calls are ignored).
pub fn set_trusted_ca_file(path: Option<String>) {
    let _ = TRUSTED_CA_FILE.set(path);
}

fn ca_location() -> String {
    match TRUSTED_CA_FILE.get() {
        Some(Some(p)) => p.clone(),
        // librdkafka looks for the system's CA bundle in the usual places.
        _ => "probe".to_string(),
    }
}

/// Producer settings derived from a connection document: librdkafka properties, in a fixed
/// order (they are also the key under which producers are shared). Holds the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ProducerSettings(pub Vec<(&'static str, String)>);

impl std::fmt::Debug for ProducerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: Vec<(&str, &str)> = self
            .0
            .iter()
            .map(|(k, v)| (*k, if *k == "sasl.password" { "******" } else { v }))
            .collect();
        f.debug_tuple("ProducerSettings").field(&shown).finish()
    }
}

impl ProducerSettings {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    fn cache_key(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.0 {
            s.push_str(k);
            s.push('\u{0}');
            s.push_str(v);
            s.push('\u{0}');
        }
        s
    }
}

/// The producer settings of a KAFKA connection document (`ConnectionInfo`, secrets revealed),
/// or why it cannot be used.
pub fn settings(connection: &Value) -> Result<ProducerSettings, String> {
    let d = connection
        .get("kafka_detail")
        .and_then(Value::as_object)
        .ok_or("the connection has no kafka_detail (is it a KAFKA connection?)")?;
    let text = |k: &str| {
        d.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let addr = text("addr").ok_or("kafka_detail.addr is missing")?;
    let brokers = parse_addr_list(addr).map_err(|e| format!("kafka_detail.addr: {e}"))?;
    let servers: Vec<String> = brokers.iter().map(|(h, p)| format!("{h}:{p}")).collect();
    let sasl_flag = d
        .get("enable_sasl_ssl")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let protocol = text("security_protocol")
        .or_else(|| text("protocol"))
        .unwrap_or(if sasl_flag { "SASL_SSL" } else { "PLAINTEXT" })
        .to_ascii_uppercase();
    let acks = match d.get("acks") {
        None | Some(Value::Null) => "1",
        Some(Value::String(s)) => match s.trim() {
            "" | "1" => "1",
            "0" => "0",
            "all" | "-1" => "all",
            other => return Err(format!("kafka_detail.acks {other:?} is not 0, 1 or all")),
        },
        Some(Value::Number(n)) => match n.as_i64() {
            Some(0) => "0",
            Some(1) => "1",
            Some(-1) => "all",
            _ => return Err(format!("kafka_detail.acks {n} is not 0, 1 or all")),
        },
        Some(_) => return Err("kafka_detail.acks is not 0, 1 or all".into()),
    };
    let mut out = vec![
        ("bootstrap.servers", servers.join(",")),
        ("client.id", "openeg".to_string()),
        ("acks", acks.to_string()),
        // A user's topics are theirs to create: a missing topic is a failure, not a side
        // effect of delivering.
        ("allow.auto.create.topics", "false".to_string()),
        ("message.timeout.ms", MESSAGE_TIMEOUT_MS.to_string()),
        ("request.timeout.ms", "20000".to_string()),
        (
            "topic.metadata.propagation.max.ms",
            UNKNOWN_TOPIC_WAIT_MS.to_string(),
        ),
    ];
    let tls = match protocol.as_str() {
        "PLAINTEXT" | "SASL_PLAINTEXT" => false,
        "SSL" | "SASL_SSL" => true,
        other => return Err(format!("security_protocol {other} is not supported")),
    };
    out.push(("security.protocol", protocol.to_ascii_lowercase()));
    if protocol.starts_with("SASL_") {
        let mechanism = text("sasl_mechanism")
            .unwrap_or("PLAIN")
            .to_ascii_uppercase();
        if !SASL_MECHANISMS.contains(&mechanism.as_str()) {
            return Err(format!(
                "kafka_detail.sasl_mechanism {mechanism} is not one of {}",
                SASL_MECHANISMS.join(", ")
            ));
        }
        let user = text("user_name").ok_or("kafka_detail.user_name is required for SASL")?;
        let password = d
            .get("password")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or("kafka_detail.password is required for SASL")?;
        out.push(("sasl.mechanism", mechanism));
        out.push(("sasl.username", user.to_string()));
        out.push(("sasl.password", password.to_string()));
    }
    if tls {
        out.push(("ssl.ca.location", ca_location()));
        out.push(("enable.ssl.certificate.verification", "true".to_string()));
        out.push(("ssl.endpoint.identification.algorithm", "https".to_string()));
    }
    Ok(ProducerSettings(out))
}

/// One producer per distinct settings, alive as long as a sink uses it.
pub(crate) fn shared_producer(s: &ProducerSettings) -> Result<Arc<FutureProducer>, String> {
    static PRODUCERS: OnceLock<Mutex<HashMap<String, Weak<FutureProducer>>>> = OnceLock::new();
    let key = s.cache_key();
    let mut map = PRODUCERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(p) = map.get(&key).and_then(Weak::upgrade) {
        return Ok(p);
    }
    let mut cfg = ClientConfig::new();
    for (k, v) in &s.0 {
        cfg.set(*k, v);
    }
    // The error text names the property, never its value.
    let p: FutureProducer = cfg
        .create()
        .map_err(|e| format!("creating the Kafka producer: {e}"))?;
    let p = Arc::new(p);
    map.retain(|_, w| w.strong_count() > 0);
    map.insert(key, Arc::downgrade(&p));
    Ok(p)
}

pub struct KafkaSink {
    producer: Arc<FutureProducer>,
    topic: String,
}

/// An HC.Kafka target through its connection (resolved by the caller, secrets revealed).
pub fn build(d: &KafkaDetail, ctx: &BuildContext) -> Result<Box<dyn Sink>, BuildError> {
    let conn = ctx
        .connection
        .ok_or_else(|| BuildError::Invalid("HC.Kafka targets need a connection_id".into()))?;
    let id = conn.get("id").and_then(Value::as_str).unwrap_or("?");
    let settings =
        settings(conn).map_err(|e| BuildError::Invalid(format!("connection {id}: {e}")))?;
    let producer = shared_producer(&settings)
        .map_err(|e| BuildError::Invalid(format!("connection {id}: {e}")))?;
    Ok(Box::new(KafkaSink {
        producer,
        topic: d.topic.clone(),
    }))
}

/// The record key: the key transform's output when there is one, else the event id.
pub fn record_key(msg: &Message) -> Option<&str> {
    msg.key
        .as_deref()
        .or(msg.event.as_ref().map(|e| e.id.as_str()))
}

/// CloudEvents Kafka binary-mode headers of the original event.
pub fn ce_headers(e: &EventAttributes) -> Vec<(&'static str, &str)> {
    let mut h = vec![
        ("ce_specversion", e.specversion.as_str()),
        ("ce_id", e.id.as_str()),
        ("ce_source", e.source.as_str()),
        ("ce_type", e.ty.as_str()),
    ];
    if let Some(s) = &e.subject {
        h.push(("ce_subject", s.as_str()));
    }
    if let Some(t) = &e.time {
        h.push(("ce_time", t.as_str()));
    }
    h
}

/// Whether a failure may go away by itself (broker down or moving, topic not there yet,
/// timeouts) or cannot (record too large, not authorized, bad configuration).
pub fn is_permanent(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::MessageSizeTooLarge
            | C::InvalidMessageSize
            | C::MessageBatchTooLarge
            | C::InvalidRecord
            | C::InvalidTopic
            | C::InvalidConfig
            | C::InvalidRequiredAcks
            | C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed
            | C::SaslAuthenticationFailed
            | C::Authentication
            | C::UnsupportedSASLMechanism
            | C::IllegalSASLState
            | C::InvalidArgument
            | C::Fatal
    )
}

/// The attempt outcome of a failed produce: the code is the Kafka error name.
pub fn classify(err: &KafkaError, topic: &str) -> Outcome {
    let Some(code) = err.rdkafka_error_code() else {
        return Outcome::Retry {
            code: "KafkaError".into(),
            detail: err.to_string(),
            retry_after: None,
        };
    };
    let name = format!("{code:?}");
    let detail = match code {
        RDKafkaErrorCode::UnknownTopic | RDKafkaErrorCode::UnknownTopicOrPartition => {
            format!("topic {topic} does not exist on the Kafka cluster (OpenEG does not create topics): {err}")
        }
        _ => format!("topic {topic}: {err}"),
    };
    if is_permanent(code) {
        Outcome::GiveUp { code: name, detail }
    } else {
        Outcome::Retry {
            code: name,
            detail,
            retry_after: None,
        }
    }
}

#[async_trait::async_trait]
impl Sink for KafkaSink {
    fn wants_event(&self) -> bool {
        true
    }

    fn max_in_flight(&self) -> Option<usize> {
        Some(MAX_IN_FLIGHT)
    }

    async fn send(&self, msg: &Message) -> Outcome {
        let mut headers = OwnedHeaders::new();
        if let Some(e) = &msg.event {
            for (key, value) in ce_headers(e) {
                headers = headers.insert(Header {
                    key,
                    value: Some(value),
                });
            }
        }
        let mut record = FutureRecord::<str, [u8]>::to(&self.topic)
            .payload(&msg.payload[..])
            .headers(headers);
        if let Some(k) = record_key(msg) {
            record = record.key(k);
        }
        match self
            .producer
            .send(record, Timeout::After(QUEUE_TIMEOUT))
            .await
        {
            Ok(_) => Outcome::Delivered { code: "200".into() },
            Err((e, _)) => classify(&e, &self.topic),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conn(detail: Value) -> Value {
        json!({"id": "c1", "type": "KAFKA", "kafka_detail": detail})
    }

    #[test]
    fn settings_from_a_connection() {
        let s = settings(&conn(json!({"instance_id": "i", "addr": "a:9092; b:9093",
            "security_protocol": "PLAINTEXT", "enable_sasl_ssl": false, "acks": "all"})))
        .unwrap();
        assert_eq!(s.get("bootstrap.servers"), Some("a:9092,b:9093"));
        assert_eq!(s.get("acks"), Some("all"));
        assert_eq!(s.get("security.protocol"), Some("plaintext"));
        assert_eq!(s.get("allow.auto.create.topics"), Some("false"));
        assert_eq!(s.get("message.timeout.ms"), Some("25000"));
        assert_eq!(s.get("sasl.username"), None);

        for (acks, want) in [
            (json!("0"), "0"),
            (json!("1"), "1"),
            (json!(0), "0"),
            (json!(-1), "all"),
            (json!("-1"), "all"),
            (json!(""), "1"),
            (Value::Null, "1"),
        ] {
            let s = settings(&conn(json!({"addr": "a:1", "acks": acks}))).unwrap();
            assert_eq!(s.get("acks"), Some(want), "{acks}");
        }
        assert!(settings(&conn(json!({"addr": "a:1", "acks": "2"}))).is_err());

        let s = settings(&conn(
            json!({"addr": "a:1", "security_protocol": "SASL_PLAINTEXT",
            "user_name": "u", "password": "secret-pw"}),
        ))
        .unwrap();
        assert_eq!(s.get("security.protocol"), Some("sasl_plaintext"));
        assert_eq!(s.get("sasl.mechanism"), Some("PLAIN"));
        assert_eq!(s.get("sasl.username"), Some("u"));
        assert_eq!(s.get("sasl.password"), Some("secret-pw"));
        assert!(!format!("{s:?}").contains("secret-pw"), "{s:?}");
        let s = settings(&conn(json!({"addr": "a:1", "protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-512", "user_name": "u", "password": "p"})))
        .unwrap();
        assert_eq!(s.get("sasl.mechanism"), Some("SCRAM-SHA-512"));

        let e = settings(&conn(
            json!({"addr": "a:1", "security_protocol": "SASL_PLAINTEXT",
            "user_name": "u"}),
        ))
        .unwrap_err();
        assert!(e.contains("password is required"), "{e}");
        // enable_sasl_ssl without a protocol means SASL_SSL: TLS, verified, plus SASL.
        let s = settings(&conn(json!({"addr": "a:1", "enable_sasl_ssl": true,
            "user_name": "u", "password": "p"})))
        .unwrap();
        assert_eq!(s.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(s.get("sasl.username"), Some("u"));
        assert_eq!(s.get("enable.ssl.certificate.verification"), Some("true"));
        assert_eq!(
            s.get("ssl.endpoint.identification.algorithm"),
            Some("https")
        );
        assert_eq!(s.get("ssl.ca.location"), Some("probe"));
        let s = settings(&conn(json!({"addr": "a:1", "security_protocol": "SSL"}))).unwrap();
        assert_eq!(s.get("security.protocol"), Some("ssl"));
        assert_eq!(s.get("sasl.username"), None);
        let e = settings(&conn(
            json!({"addr": "a:1", "security_protocol": "SASL_SSL",
            "user_name": "u"}),
        ))
        .unwrap_err();
        assert!(e.contains("password is required"), "{e}");
        let e = settings(&conn(
            json!({"addr": "a:1", "security_protocol": "KERBEROS"}),
        ))
        .unwrap_err();
        assert!(e.contains("KERBEROS is not supported"), "{e}");
        assert!(settings(&conn(json!({"acks": "1"}))).is_err());
        assert!(settings(&json!({"id": "w", "type": "WEBHOOK"})).is_err());
    }

    #[test]
    fn keys_and_headers() {
        let ev = EventAttributes {
            id: "e1".into(),
            source: "app".into(),
            specversion: "1.0".into(),
            ty: "order.created".into(),
            subject: None,
            time: Some("2024-01-01T00:00:00Z".into()),
        };
        let mut m = Message {
            event: Some(ev.clone()),
            ..Default::default()
        };
        assert_eq!(record_key(&m), Some("e1"));
        m.key = Some("k".into());
        assert_eq!(record_key(&m), Some("k"));
        assert_eq!(record_key(&Message::default()), None);
        assert_eq!(
            ce_headers(&ev),
            vec![
                ("ce_specversion", "1.0"),
                ("ce_id", "e1"),
                ("ce_source", "app"),
                ("ce_type", "order.created"),
                ("ce_time", "2024-01-01T00:00:00Z"),
            ]
        );
        let with_subject = EventAttributes {
            subject: Some("s".into()),
            time: None,
            ..ev
        };
        assert_eq!(ce_headers(&with_subject)[4], ("ce_subject", "s"));
    }

    #[test]
    fn failures_are_classified() {
        let e = |c| KafkaError::MessageProduction(c);
        for c in [
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::UnknownTopic,
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::NotLeaderForPartition,
            RDKafkaErrorCode::RequestTimedOut,
            RDKafkaErrorCode::QueueFull,
        ] {
            assert!(
                matches!(classify(&e(c), "t"), Outcome::Retry { .. }),
                "{c:?}"
            );
        }
        for c in [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::SaslAuthenticationFailed,
            RDKafkaErrorCode::InvalidConfig,
        ] {
            assert!(
                matches!(classify(&e(c), "t"), Outcome::GiveUp { .. }),
                "{c:?}"
            );
        }
        match classify(&e(RDKafkaErrorCode::UnknownTopic), "orders") {
            Outcome::Retry { code, detail, .. } => {
                assert_eq!(code, "UnknownTopic");
                assert!(detail.contains("topic orders does not exist"), "{detail}");
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn builds_share_a_producer_per_connection() {
        let http = super::super::HttpClient::new().unwrap();
        let c = conn(json!({"addr": "127.0.0.1:9", "acks": "1"}));
        let ctx = BuildContext {
            http: &http,
            project_id: "p",
            functiongraph_endpoint: None,
            smn_endpoint: None,
            connection: Some(&c),
        };
        let d = KafkaDetail {
            topic: "t".into(),
            key_transform: None,
        };
        let s1 = settings(&c).unwrap();
        let a = shared_producer(&s1).unwrap();
        let b = shared_producer(&s1).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let sink = build(&d, &ctx).unwrap();
        assert_eq!(sink.max_in_flight(), Some(MAX_IN_FLIGHT));
        let bad = conn(json!({"addr": "127.0.0.1:9", "security_protocol": "GSSAPI"}));
        let ctx = BuildContext {
            connection: Some(&bad),
            ..ctx
        };
        let e = build(&d, &ctx).err().unwrap().to_string();
        assert!(
            e.starts_with("connection c1: security_protocol GSSAPI"),
            "{e}"
        );
        let ctx = BuildContext {
            connection: None,
            ..ctx
        };
        assert!(build(&d, &ctx).is_err());
    }
}
