//! RabbitMQ custom event sources (`type: RABBITMQ`): consume the user's queue and turn every
//! message into a CloudEvent for the source's channel.
//!
//! * Connection: `detail.instance_id` is the broker address (`amqp://host[:port][/vhost]` or
//!   `host:port`, [`openeg_api::source::rabbitmq_broker`]); `detail.vhost_name` wins over the
//!   URL's vhost (default `/`); `detail.queue_name` is consumed with `detail.user_name` and
//!   `detail.password` (revealed by the engine; given to the broker only through SASL PLAIN,
//!   never in a URI, a log line or an error). TLS (`amqps://`, `ssl_enable`) is not built in.
//! * Consuming: manual acknowledgements, prefetch [`PREFETCH`]. A batch is acknowledged with
//!   `multiple = true` up to its last delivery tag, and only with the [`Ack`] of a durable
//!   append. Unacknowledged messages go back to the queue when the connection closes: a
//!   crash or a lost connection re-reads them (at-least-once).
//! * Each message becomes one CloudEvent 1.0 ([`to_event`]): `id` = the `message_id`
//!   property (else a fresh UUID), `source` = the event source's name, `type` =
//!   [`EVENT_TYPE`], `subject` = `vhosts/{vhost}/queues/{queue}`, `time` = the `timestamp`
//!   property (else the time consumed), `data` = `{"context": body, "meta": {...}}`.
//! * A message whose event would exceed the event size limit is rejected without requeue
//!   (the queue's dead-letter exchange gets it, if it has one), with a warning.

use super::{
    Ack, Batch, BatchToken, BuildContext, BuildError, Health, Source, SourceError, SourceRecord,
    SourceSpec,
};
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use lapin::auth::AuthProvider;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use lapin::{Channel, Connection, ConnectionProperties, Consumer};
use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

/// The source kind.
pub const KIND: &str = "RABBITMQ";
/// `type` of the events a RabbitMQ source produces.
pub const EVENT_TYPE: &str = "RABBITMQ:CloudTrace:message";
/// Unacknowledged messages the broker may send ahead.
pub const PREFETCH: u16 = 1000;
/// Time allowed for TCP connect, AMQP handshake, queue checks and `basic.consume`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Heartbeat proposed to the broker (seconds): a silent dead connection is noticed within
/// about twice this.
const HEARTBEAT_SECS: u16 = 10;

/// Builds a RabbitMQ source from its spec (no I/O).
pub fn build(spec: &SourceSpec, ctx: &BuildContext) -> Result<Box<dyn Source>, BuildError> {
    let settings = Settings::from_detail(&spec.detail)?;
    let subject = subject(&settings.vhost, settings.queue.as_str());
    Ok(Box::new(RabbitSource {
        settings,
        source_name: ctx.resource_name.clone(),
        subject,
        connection_name: format!("openeg {} source {}", ctx.node_name, ctx.resource_id),
        live: None,
        batches: VecDeque::new(),
        next_token: 0,
        health: Health::Unhealthy {
            reason: "not connected yet".into(),
        },
    }))
}

fn invalid(reason: impl Into<String>) -> BuildError {
    BuildError::Invalid {
        kind: KIND.into(),
        reason: reason.into(),
    }
}

/// Where and as whom to consume. `Debug` leaves the password out.
struct Settings {
    host: String,
    port: u16,
    vhost: String,
    queue: ShortString,
    user: String,
    password: String,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("vhost", &self.vhost)
            .field("queue", &self.queue)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Settings {
    fn from_detail(d: &Value) -> Result<Settings, BuildError> {
        let text = |k: &str| d.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        let instance = text("instance_id")
            .ok_or_else(|| invalid("detail.instance_id (the broker address) is required"))?;
        let broker = openeg_api::source::rabbitmq_broker(instance)
            .map_err(|e| invalid(format!("detail.instance_id: {e}")))?;
        if broker.tls || d.get("ssl_enable").and_then(Value::as_bool) == Some(true) {
            return Err(invalid(
                "TLS (amqps://, ssl_enable) is not supported by this build; use amqp://",
            ));
        }
        let queue = text("queue_name").ok_or_else(|| invalid("detail.queue_name is required"))?;
        let queue = ShortString::try_new(queue)
            .map_err(|_| invalid("detail.queue_name must be at most 255 bytes"))?;
        let vhost = text("vhost_name")
            .map(str::to_string)
            .or(broker.vhost)
            .unwrap_or_else(|| "/".to_string());
        let defaults = AMQPUserInfo::default();
        Ok(Settings {
            host: broker.host,
            port: broker.port,
            vhost,
            queue,
            user: text("user_name")
                .map(str::to_string)
                .unwrap_or(defaults.username),
            password: d
                .get("password")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or(defaults.password),
        })
    }

    /// The broker as errors and logs name it (no credentials).
    fn describe(&self) -> String {
        format!(
            "broker {}:{}, vhost {:?}, queue {:?}",
            self.host,
            self.port,
            self.vhost,
            self.queue.as_str()
        )
    }

    /// The URI lapin connects with: no password (it goes through [`PlainAuth`]), since lapin
    /// traces the URI it connects to.
    fn uri(&self) -> AMQPUri {
        AMQPUri {
            scheme: AMQPScheme::AMQP,
            authority: AMQPAuthority {
                userinfo: AMQPUserInfo {
                    username: self.user.clone(),
                    password: String::new(),
                },
                host: self.host.clone(),
                port: self.port,
            },
            vhost: self.vhost.clone(),
            query: AMQPQueryString {
                heartbeat: Some(HEARTBEAT_SECS),
                connection_timeout: u64::try_from(CONNECT_TIMEOUT.as_millis()).ok(),
                ..Default::default()
            },
        }
    }
}

/// SASL PLAIN with the source's credentials; the password stays out of every URI and log.
struct PlainAuth {
    user: String,
    password: String,
}

impl AuthProvider for PlainAuth {
    fn mechanism(&self) -> ShortString {
        "PLAIN".into()
    }

    fn auth_starter(&self) -> Result<LongString, String> {
        Ok(format!("\0{}\0{}", self.user, self.password).into())
    }
}

/// The subject of a queue's events; `None` when it would exceed the attribute limit.
fn subject(vhost: &str, queue: &str) -> Option<String> {
    let s = format!("vhosts/{}/queues/{}", segment(vhost), segment(queue));
    (s.chars().count() <= openeg_api::event::MAX_ATTRIBUTE_CHARS).then_some(s)
}

/// A vhost or queue name in `subject`: `/`, `%` and control characters percent-encoded (so
/// `vhosts/%2F/queues/q` splits unambiguously, as RabbitMQ's management API writes the
/// default vhost); everything else as it is.
fn segment(name: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c == '/' || c == '%' || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// An open connection consuming the queue.
struct Live {
    connection: Connection,
    channel: Channel,
    consumer: Consumer,
}

pub struct RabbitSource {
    settings: Settings,
    source_name: String,
    subject: Option<String>,
    connection_name: String,
    live: Option<Live>,
    /// Batches handed out and not acknowledged yet: token and last delivery tag, in order.
    batches: VecDeque<(BatchToken, u64)>,
    next_token: u64,
    /// Why the source is not connected (when `live` is `None`).
    health: Health,
}

impl RabbitSource {
    /// Forgets the connection after a failure (dropping it closes it, which returns its
    /// unacknowledged messages to the queue) and says why: the broker, the step that failed
    /// if it is not plain from the caller's context, and the error.
    fn fail(&mut self, step: Option<&str>, e: impl std::fmt::Display) -> SourceError {
        self.live = None;
        self.batches.clear();
        let broker = self.settings.describe();
        let reason = match step {
            Some(step) => format!("{broker}: {step}: {e}"),
            None => format!("{broker}: {e}"),
        };
        self.health = Health::Unhealthy {
            reason: reason.clone(),
        };
        SourceError(reason)
    }

    async fn open(&self) -> Result<Live, (Option<&'static str>, lapin::Error)> {
        let props = ConnectionProperties::default()
            .with_connection_name(self.connection_name.clone().into())
            .with_auth_provider(PlainAuth {
                user: self.settings.user.clone(),
                password: self.settings.password.clone(),
            });
        let connection = Connection::connect_uri(self.settings.uri(), props)
            .await
            .map_err(|e| (None, e))?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| (Some("opening a channel"), e))?;
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await
            .map_err(|e| (Some("setting the prefetch"), e))?;
        let consumer = channel
            .basic_consume(
                self.settings.queue.clone(),
                format!("openeg-{}", uuid::Uuid::new_v4()).into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| (Some("starting the consumer"), e))?;
        Ok(Live {
            connection,
            channel,
            consumer,
        })
    }

    /// The next delivery, waiting for one (`wait`) or only taking what has arrived.
    async fn delivery(&mut self, wait: bool) -> Result<Option<Delivery>, SourceError> {
        let Some(live) = self.live.as_mut() else {
            return Err(SourceError("not connected".into()));
        };
        let consumer = &mut live.consumer;
        let next = std::future::poll_fn(|cx| {
            match futures_core::Stream::poll_next(Pin::new(&mut *consumer), cx) {
                Poll::Pending if !wait => Poll::Ready(Ok(None)),
                Poll::Pending => Poll::Pending,
                Poll::Ready(Some(Ok(d))) => Poll::Ready(Ok(Some(d))),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Err(Some(e))),
                Poll::Ready(None) => Poll::Ready(Err(None)),
            }
        })
        .await;
        match next {
            Ok(d) => Ok(d),
            Err(Some(e)) => Err(self.fail(None, e)),
            Err(None) => Err(self.fail(None, "the broker cancelled the consumer (queue deleted?)")),
        }
    }
}

#[async_trait::async_trait]
impl Source for RabbitSource {
    async fn connect(&mut self) -> Result<(), SourceError> {
        if self.live.is_some() {
            return Ok(());
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, self.open()).await {
            Ok(Ok(live)) => {
                self.live = Some(live);
                self.batches.clear();
                self.health = Health::Healthy;
                Ok(())
            }
            Ok(Err((what, e))) => Err(self.fail(what, e)),
            Err(_) => Err(self.fail(
                None,
                format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
            )),
        }
    }

    async fn next_batch(&mut self, max: usize) -> Result<Batch, SourceError> {
        self.connect().await?;
        let max = max.max(1);
        let mut records = Vec::new();
        let mut last_tag = 0;
        while records.len() < max {
            // Wait for the first record; then take only what has already arrived.
            let Some(d) = self.delivery(records.is_empty()).await? else {
                break;
            };
            let event = to_event(&d, &self.source_name, self.subject.as_deref(), Utc::now());
            let payload = serde_json::to_vec(&event).unwrap_or_default();
            if payload.len() > openeg_api::event::MAX_EVENT_BYTES {
                tracing::warn!(
                    source = %self.source_name,
                    delivery_tag = d.delivery_tag,
                    event_bytes = payload.len(),
                    limit = openeg_api::event::MAX_EVENT_BYTES,
                    "RabbitMQ message too large for an event: rejected without requeue"
                );
                let rejected = match self.live.as_ref() {
                    Some(live) => {
                        live.channel
                            .basic_reject(d.delivery_tag, BasicRejectOptions { requeue: false })
                            .await
                    }
                    None => Ok(()),
                };
                if let Err(e) = rejected {
                    return Err(self.fail(Some("rejecting an oversized message"), e));
                }
                continue;
            }
            last_tag = d.delivery_tag;
            records.push(SourceRecord {
                payload: Bytes::from(payload),
                ..SourceRecord::default()
            });
        }
        self.next_token += 1;
        let token = BatchToken(self.next_token);
        self.batches.push_back((token, last_tag));
        Ok(Batch::new(token, records))
    }

    async fn ack(&mut self, ack: Ack) -> Result<(), SourceError> {
        let token = ack.token();
        let Some(pos) = self.batches.iter().position(|(t, _)| *t == token) else {
            return Err(SourceError(
                "the batch was read on an earlier connection; the broker redelivers it".into(),
            ));
        };
        // Batches are acknowledged in order; `multiple` covers every earlier one too.
        let tag = self.batches[pos].1;
        self.batches.drain(..=pos);
        let Some(live) = self.live.as_ref() else {
            return Err(SourceError("not connected".into()));
        };
        let acked = live
            .channel
            .basic_ack(tag, BasicAckOptions { multiple: true })
            .await;
        acked.map_err(|e| self.fail(None, e))
    }

    fn health(&self) -> Health {
        match &self.live {
            Some(live) if live.connection.status().connected() => Health::Healthy,
            Some(_) => Health::Unhealthy {
                reason: format!("{}: connection lost", self.settings.describe()),
            },
            None => self.health.clone(),
        }
    }
}

/// A usable CloudEvent `id` from a `message_id`: not empty, within the attribute limit, no
/// control characters (the channel's event checks).
fn usable_id(id: &str) -> bool {
    !id.is_empty()
        && id.chars().count() <= openeg_api::event::MAX_ATTRIBUTE_CHARS
        && !id.chars().any(char::is_control)
}

/// The CloudEvent of one broker message (see the module documentation); `now` is the time
/// consumed, used when the message has no `timestamp`.
pub fn to_event(d: &Delivery, source: &str, subject: Option<&str>, now: DateTime<Utc>) -> Value {
    let p = &d.properties;
    let id = p
        .message_id()
        .as_ref()
        .map(ShortString::as_str)
        .filter(|id| usable_id(id))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let time = p
        .timestamp()
        .and_then(|s| i64::try_from(s).ok())
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| now.to_rfc3339_opts(SecondsFormat::Millis, true));
    let mut data = Map::new();
    match serde_json::from_slice::<Value>(&d.data) {
        Ok(v) => {
            data.insert("context".into(), v);
        }
        Err(_) => match std::str::from_utf8(&d.data) {
            Ok(text) => {
                data.insert("context".into(), Value::String(text.to_string()));
            }
            Err(_) => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(&d.data);
                data.insert("context".into(), Value::String(b64));
                data.insert("contextEncoding".into(), "base64".into());
            }
        },
    }
    data.insert(
        "meta".into(),
        json!({
            "exchange": d.exchange.as_str(),
            "routingKey": d.routing_key.as_str(),
            "redeliver": d.redelivered,
            "headers": p.headers().as_ref().map(table_json).unwrap_or_else(|| json!({})),
            "contentType": p.content_type().as_ref().map(ShortString::as_str),
        }),
    );
    let mut ev = Map::new();
    ev.insert("specversion".into(), "1.0".into());
    ev.insert("id".into(), id.into());
    ev.insert("source".into(), source.into());
    ev.insert("type".into(), EVENT_TYPE.into());
    if let Some(s) = subject {
        ev.insert("subject".into(), s.into());
    }
    ev.insert("time".into(), time.into());
    ev.insert("datacontenttype".into(), "application/json".into());
    ev.insert("data".into(), Value::Object(data));
    Value::Object(ev)
}

/// An AMQP table as a JSON object.
fn table_json(t: &FieldTable) -> Value {
    Value::Object(
        t.inner()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), amqp_json(v)))
            .collect(),
    )
}

/// Byte strings are UTF-8 text when they are, else base64; timestamps RFC 3339; decimals
/// numbers; non-finite floats `null`.
fn amqp_json(v: &AMQPValue) -> Value {
    let bytes = |b: &[u8]| match std::str::from_utf8(b) {
        Ok(s) => Value::String(s.to_string()),
        Err(_) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
    };
    match v {
        AMQPValue::Boolean(b) => (*b).into(),
        AMQPValue::ShortShortInt(n) => (*n).into(),
        AMQPValue::ShortShortUInt(n) => (*n).into(),
        AMQPValue::ShortInt(n) => (*n).into(),
        AMQPValue::ShortUInt(n) => (*n).into(),
        AMQPValue::LongInt(n) => (*n).into(),
        AMQPValue::LongUInt(n) => (*n).into(),
        AMQPValue::LongLongInt(n) => (*n).into(),
        AMQPValue::Float(f) => {
            serde_json::Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number)
        }
        AMQPValue::Double(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        AMQPValue::DecimalValue(d) => {
            let v = f64::from(d.value) / 10f64.powi(i32::from(d.scale));
            serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
        }
        AMQPValue::ShortString(s) => s.as_str().into(),
        AMQPValue::LongString(s) => bytes(s.as_bytes()),
        AMQPValue::ByteArray(b) => bytes(b.as_slice()),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(amqp_json).collect()),
        AMQPValue::Timestamp(s) => i64::try_from(*s)
            .ok()
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .map_or_else(
                || (*s).into(),
                |t| t.to_rfc3339_opts(SecondsFormat::Secs, true).into(),
            ),
        AMQPValue::FieldTable(t) => table_json(t),
        AMQPValue::Void => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::BasicProperties;

    fn delivery(body: &[u8], props: BasicProperties) -> Delivery {
        let mut d = Delivery::mock(7, "ex".into(), "rk.1".into(), true, body.to_vec());
        d.properties = props;
        d
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 123_000_000).unwrap()
    }

    const SUBJECT: &str = "vhosts/%2F/queues/orders";

    /// The event passes the channel's checks (what `SourcePump` publishes).
    fn checked(ev: &Value) {
        let text = serde_json::to_string(ev).unwrap();
        assert!(
            openeg_api::event::check(&text).result.is_ok(),
            "{:?}",
            openeg_api::event::check(&text).result
        );
    }

    #[test]
    fn json_body_with_message_id_timestamp_and_headers() {
        let mut headers = FieldTable::default();
        headers.insert("n".into(), AMQPValue::LongInt(-3));
        headers.insert("s".into(), AMQPValue::LongString("text".into()));
        headers.insert("bin".into(), AMQPValue::ByteArray(vec![0xff, 0x00].into()));
        headers.insert("flag".into(), AMQPValue::Boolean(true));
        headers.insert("at".into(), AMQPValue::Timestamp(0));
        headers.insert(
            "list".into(),
            AMQPValue::FieldArray(vec![AMQPValue::ShortShortUInt(1), AMQPValue::Void].into()),
        );
        let mut inner = FieldTable::default();
        inner.insert("d".into(), AMQPValue::Double(1.5));
        headers.insert("nested".into(), AMQPValue::FieldTable(inner));
        let props = BasicProperties::default()
            .with_message_id("m-1".into())
            .with_timestamp(1_700_000_000)
            .with_content_type("application/json".into())
            .with_headers(headers);
        let ev = to_event(
            &delivery(br#"{"order": 42, "ok": true}"#, props),
            "my-src",
            Some(SUBJECT),
            now(),
        );
        assert_eq!(
            ev,
            json!({
                "specversion": "1.0",
                "id": "m-1",
                "source": "my-src",
                "type": "RABBITMQ:CloudTrace:message",
                "subject": "vhosts/%2F/queues/orders",
                "time": "2023-11-14T22:13:20Z",
                "datacontenttype": "application/json",
                "data": {
                    "context": {"order": 42, "ok": true},
                    "meta": {
                        "exchange": "ex",
                        "routingKey": "rk.1",
                        "redeliver": true,
                        "headers": {
                            "at": "1970-01-01T00:00:00Z",
                            "bin": "/wA=",
                            "flag": true,
                            "list": [1, null],
                            "n": -3,
                            "nested": {"d": 1.5},
                            "s": "text",
                        },
                        "contentType": "application/json",
                    },
                },
            })
        );
        checked(&ev);
    }

    #[test]
    fn text_body_without_properties() {
        let ev = to_event(
            &delivery(b"hello, world", BasicProperties::default()),
            "s",
            Some(SUBJECT),
            now(),
        );
        assert_eq!(ev["data"]["context"], "hello, world");
        assert!(ev["data"].get("contextEncoding").is_none());
        assert_eq!(ev["data"]["meta"]["headers"], json!({}));
        assert_eq!(ev["data"]["meta"]["contentType"], Value::Null);
        // No timestamp: the time consumed.
        assert_eq!(ev["time"], "2023-11-14T22:13:20.123Z");
        // No message_id: a fresh UUID each time (a redelivery gets another id).
        let id = ev["id"].as_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        let again = to_event(
            &delivery(b"hello, world", BasicProperties::default()),
            "s",
            Some(SUBJECT),
            now(),
        );
        assert_ne!(again["id"], ev["id"]);
        checked(&ev);
    }

    #[test]
    fn binary_body_is_base64() {
        let ev = to_event(
            &delivery(&[0xde, 0xad, 0xbe, 0xef], BasicProperties::default()),
            "s",
            Some(SUBJECT),
            now(),
        );
        assert_eq!(ev["data"]["context"], "3q2+7w==");
        assert_eq!(ev["data"]["contextEncoding"], "base64");
        checked(&ev);
    }

    #[test]
    fn unusable_message_ids_get_a_uuid() {
        // (A short string holds at most 255 bytes: never over the 256-character limit.)
        for bad in ["", "a\nb", "tab\there", "\u{7f}"] {
            let props = BasicProperties::default().with_message_id(bad.into());
            let ev = to_event(&delivery(b"{}", props), "s", None, now());
            assert!(uuid::Uuid::parse_str(ev["id"].as_str().unwrap()).is_ok());
            assert!(ev.get("subject").is_none());
            checked(&ev);
        }
    }

    #[test]
    fn subjects() {
        assert_eq!(subject("/", "orders").as_deref(), Some(SUBJECT));
        assert_eq!(
            subject("prod", "a/b%c").as_deref(),
            Some("vhosts/prod/queues/a%2Fb%25c")
        );
        assert_eq!(
            subject("v", "订单\u{7f}").as_deref(),
            Some("vhosts/v/queues/订单%7F")
        );
        assert_eq!(subject("v", &"q".repeat(250)), None);
    }

    fn spec(detail: Value) -> SourceSpec {
        SourceSpec {
            kind: KIND.into(),
            detail,
        }
    }

    #[test]
    fn settings_from_detail() {
        let s = Settings::from_detail(&json!({
            "instance_id": "amqp://mq.example:5673/v1", "queue_name": "q",
            "user_name": "u", "password": "pw-secret"
        }))
        .unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.vhost.as_str(), s.queue.as_str()),
            ("mq.example", 5673, "v1", "q")
        );
        assert_eq!((s.user.as_str(), s.password.as_str()), ("u", "pw-secret"));
        // Secrets stay out of Debug, descriptions and the URI lapin traces.
        assert!(!format!("{s:?}").contains("pw-secret"));
        assert!(!s.describe().contains("pw-secret"));
        assert!(!format!("{:?}", s.uri()).contains("pw-secret"));
        // vhost_name wins; the default vhost is "/".
        let s = Settings::from_detail(&json!({
            "instance_id": "amqp://h/v1", "vhost_name": "v2", "queue_name": "q"
        }))
        .unwrap();
        assert_eq!((s.vhost.as_str(), s.port), ("v2", 5672));
        let s = Settings::from_detail(&json!({"instance_id": "h:1", "queue_name": "q"})).unwrap();
        assert_eq!(s.vhost, "/");

        for (detail, reason) in [
            (json!({"queue_name": "q"}), "instance_id"),
            (json!({"instance_id": "h:1"}), "queue_name"),
            (
                json!({"instance_id": "amqps://h", "queue_name": "q"}),
                "TLS",
            ),
            (
                json!({"instance_id": "h:1", "queue_name": "q", "ssl_enable": true}),
                "TLS",
            ),
            (
                json!({"instance_id": "h:1", "queue_name": "é".repeat(200)}),
                "255 bytes",
            ),
        ] {
            let err = build(&spec(detail), &BuildContext::default())
                .err()
                .unwrap();
            let text = err.to_string();
            assert!(text.contains(reason), "{text}");
            assert!(
                text.starts_with("invalid RABBITMQ source settings"),
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn an_unreachable_broker_is_an_error_without_secrets() {
        // Port 9 (discard) is closed on test machines: the connection is refused.
        let mut src = build(
            &spec(json!({
                "instance_id": "127.0.0.1:9", "queue_name": "q",
                "user_name": "u", "password": "pw-secret"
            })),
            &BuildContext::default(),
        )
        .unwrap();
        assert!(matches!(src.health(), Health::Unhealthy { .. }));
        let err = src.connect().await.unwrap_err();
        assert!(err.0.contains("127.0.0.1:9"), "{err}");
        assert!(!err.0.contains("pw-secret"), "{err}");
        let Health::Unhealthy { reason } = src.health() else {
            panic!("unhealthy expected");
        };
        assert_eq!(reason, err.0);
    }
}
