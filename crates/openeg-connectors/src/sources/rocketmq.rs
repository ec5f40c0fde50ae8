//! RocketMQ custom event sources (`type: ROCKETMQ`): consume the user's topic in a consumer
//! group and turn every message into a CloudEvent for the source's channel.
//!
//! * Connection: `detail.namesrv_address` is the name server list (`http://` allowed),
//!   `detail.topic` the topic, `detail.group` the consumer group (clustering: the group's
//!   members share the topic's queues). `enable_acl` signs requests with `access_key` /
//!   `secret_key` (never in a log line or an error); `ssl_enable` (TLS) is refused.
//!   `instance_id` (a DMS instance in EG) is not needed: the name server says where brokers
//!   are.
//! * Consuming: a lite pull consumer with auto-commit off. A batch is one poll (an event
//!   stream with a `batch_window.interval` gathers polls up to `count` messages, or fewer once
//!   the first waited the interval); acknowledging
//!   it (only with the [`Ack`] of a durable append) commits, per queue, the offset after its
//!   last message, and persists it to the broker. A crash between the append and the commit
//!   re-reads the batch from the last committed offset: at-least-once, never lost. A new group
//!   starts at the first retained offset, so messages produced while the group first gets its
//!   queues are not skipped.
//! * Status: [`Source::connect`] starts the consumer and asks the name server for the topic's
//!   route; only then is the source running. While no message arrives the route is asked again
//!   every [`ROUTE_CHECK`]; a name server that stops answering (or a topic that disappears)
//!   fails the source with the reason, and the runner reconnects with backoff.
//! * Each message becomes one CloudEvent 1.0 ([`to_event`]): `id` = the msgId (the client's
//!   unique key, else the broker's), `source` = the event source's name, `type` =
//!   [`EVENT_TYPE`], `subject` = `topics/{topic}`, `time` = the born (else store) timestamp,
//!   else now, `data` = `{"context": body, "meta": {topic, tags, keys, queueId, queueOffset,
//!   properties}}` (`properties`: the user properties, system ones left out).
//! * A message whose event would exceed the event size limit is skipped with a warning (its
//!   offset is committed with its batch).

use super::{
    Ack, Batch, BatchToken, BuildContext, BuildError, Health, LagGauge, Position, Source,
    SourceError, SourceRecord, SourceSpec,
};
use crate::rocketmq::{self as rmq, ClientSettings};
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use rocketmq_client_rust::DefaultLitePullConsumer;
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::STRING_HASH_SET;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The source kind.
pub const KIND: &str = "ROCKETMQ";
/// `type` of the events a RocketMQ source produces.
pub const EVENT_TYPE: &str = "ROCKETMQ:CloudTrace:message";
/// How long one poll waits for messages.
const POLL_MS: u64 = 1_000;
/// How often an idle source asks the name server for the topic's route again.
pub const ROUTE_CHECK: Duration = Duration::from_secs(10);
/// How often an event stream's RocketMQ source reads its consumer lag.
const LAG_EVERY: Duration = Duration::from_secs(5);
/// Time allowed for starting the consumer and the route query.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// The message property holding the client-generated message id.
const UNIQ_KEY: &str = "UNIQ_KEY";

/// Builds a RocketMQ source from its spec (no I/O).
pub fn build(spec: &SourceSpec, ctx: &BuildContext) -> Result<Box<dyn Source>, BuildError> {
    let settings = Settings::from_detail(&spec.detail)?;
    Ok(Box::new(RocketSource::new(
        Shape::Channel,
        settings,
        &ctx.resource_name,
    )))
}

/// The event stream source kinds served by this consumer (`source.name`).
pub const STREAM_KINDS: [&str; 3] = [
    "HC.COMMUNITY_ROCKETMQ",
    "HC.DMS_ROCKETMQ",
    "HC.MOBILE_ROCKETMQ",
];

/// Builds an event stream's RocketMQ source (any of [`STREAM_KINDS`]) from its
/// `source_*_rocketmq` detail: `addr` is the name server list (a DMS or mobile instance is
/// reached through it too: `instance_id` alone does not say where it is), `group` (`group_id`
/// for the mobile kind) the consumer group; `enable_acl` (`authentication_required`) signs
/// with `access_key` / `secret_key`.
pub fn build_stream(spec: &SourceSpec, ctx: &BuildContext) -> Result<Box<dyn Source>, BuildError> {
    let d = &spec.detail;
    let text = |k: &str| {
        d.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
    };
    let addr = text("addr").ok_or_else(|| BuildError::Invalid {
        kind: spec.kind.clone(),
        reason: "addr (the name server list) is required to run a stream in OpenEG: an \
                 instance_id alone does not say where the brokers are"
            .into(),
    })?;
    let acl = rmq::flag(d.get("enable_acl")) || rmq::flag(d.get("authentication_required"));
    let detail = serde_json::json!({
        "namesrv_address": addr,
        "topic": text("topic"),
        "group": text("group").or_else(|| text("group_id")),
        "enable_acl": acl,
        "ssl_enable": rmq::flag(d.get("ssl_enable")),
        "access_key": text("access_key"),
        "secret_key": d.get("secret_key"),
    });
    let settings = Settings::from_detail(&detail).map_err(|e| match e {
        BuildError::Invalid { reason, .. } => BuildError::Invalid {
            kind: spec.kind.clone(),
            reason: reason
                .replace("detail.namesrv_address", "addr")
                .replace("detail.", ""),
        },
        other => other,
    })?;
    let mut source = RocketSource::new(Shape::Stream, settings, &ctx.resource_name);
    source.interval = ctx.batch_interval;
    source.lag = ctx.lag.clone();
    Ok(Box::new(source))
}

fn invalid(reason: impl Into<String>) -> BuildError {
    BuildError::Invalid {
        kind: KIND.into(),
        reason: reason.into(),
    }
}

/// Where and as which group to consume. `Debug` leaves the secret key out.
#[derive(Debug)]
struct Settings {
    client: ClientSettings,
    topic: String,
    group: String,
}

impl Settings {
    fn from_detail(d: &Value) -> Result<Settings, BuildError> {
        let text = |k: &str| {
            d.get(k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let namesrv = text("namesrv_address")
            .ok_or_else(|| invalid("detail.namesrv_address (the name server) is required"))?;
        let topic = text("topic").ok_or_else(|| invalid("detail.topic is required"))?;
        let group = text("group").ok_or_else(|| invalid("detail.group is required"))?;
        let acl = if rmq::flag(d.get("enable_acl")) {
            Some((
                text("access_key").unwrap_or_default(),
                d.get("secret_key")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            ))
        } else {
            None
        };
        let client = ClientSettings::new(
            namesrv,
            rmq::flag(d.get("ssl_enable")),
            acl,
            "detail.namesrv_address",
        )
        .map_err(invalid)?;
        Ok(Settings {
            client,
            topic: topic.to_string(),
            group: group.to_string(),
        })
    }

    /// The consumer as errors and logs name it (no credentials).
    fn describe(&self) -> String {
        format!(
            "name server {}, topic {:?}, group {:?}",
            self.client.namesrv, self.topic, self.group
        )
    }
}

/// The subject of a topic's events; `None` when it would exceed the attribute limit.
fn subject(topic: &str) -> Option<String> {
    let s = format!("topics/{topic}");
    (s.chars().count() <= openeg_api::event::MAX_ATTRIBUTE_CHARS).then_some(s)
}

/// A started consumer; shut down on the client runtime when dropped (which persists the
/// committed offsets and leaves the group, so its queues move to other members at once).
struct Consumer(Option<Arc<DefaultLitePullConsumer>>);

impl Consumer {
    fn get(&self) -> Result<Arc<DefaultLitePullConsumer>, SourceError> {
        self.0
            .clone()
            .ok_or_else(|| SourceError("the consumer is shut down".into()))
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            rmq::spawn_detached(async move { c.shutdown().await });
        }
    }
}

/// Which events a source makes of messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A custom source's, for its channel ([`to_event`]).
    Channel,
    /// An event stream's ([`to_stream_event`]).
    Stream,
}

pub struct RocketSource {
    shape: Shape,
    settings: Settings,
    source_name: String,
    subject: Option<String>,
    consumer: Option<Consumer>,
    /// A poll started and not yet taken: kept across a cancelled `next_batch`, since the
    /// consumer has moved past what it returns.
    polling: Option<JoinHandle<Vec<MessageExt>>>,
    /// Batches handed out and not acknowledged yet: token and, per queue, the offset after
    /// the batch's last message.
    batches: VecDeque<(BatchToken, HashMap<MessageQueue, i64>)>,
    next_token: u64,
    last_route_check: Instant,
    health: Health,
    /// How long a partial batch may gather more messages (an event stream's
    /// `batch_window.interval`); zero: a batch is what one poll returned.
    interval: Duration,
    /// Messages polled and not handed out yet (`None`: skipped, only its offset counts), each
    /// with its queue and offset, and when the first of them arrived.
    gathered: VecDeque<(Option<SourceRecord>, MessageQueue, i64)>,
    gathered_since: Option<Instant>,
    /// Where the consumer lag goes (an event stream's figures), the reading in progress and
    /// when the last one started.
    lag: Option<LagGauge>,
    lag_reading: Option<JoinHandle<()>>,
    last_lag_read: Option<Instant>,
}

impl RocketSource {
    fn new(shape: Shape, settings: Settings, source_name: &str) -> RocketSource {
        RocketSource {
            shape,
            subject: match shape {
                Shape::Channel => subject(&settings.topic),
                Shape::Stream => None,
            },
            settings,
            source_name: source_name.to_string(),
            consumer: None,
            polling: None,
            batches: VecDeque::new(),
            next_token: 0,
            last_route_check: Instant::now(),
            health: Health::Unhealthy {
                reason: "not connected yet".into(),
            },
            interval: Duration::ZERO,
            gathered: VecDeque::new(),
            gathered_since: None,
            lag: None,
            lag_reading: None,
            last_lag_read: None,
        }
    }

    /// Every [`LAG_EVERY`], reads the lag in the background: per queue of the topic, the
    /// broker's max offset minus the group's committed one (queues with no commit yet are
    /// left out), summed.
    fn read_lag(&mut self) {
        let Some(gauge) = self.lag.clone() else {
            return;
        };
        if self.lag_reading.as_ref().is_some_and(|h| !h.is_finished())
            || self.last_lag_read.is_some_and(|t| t.elapsed() < LAG_EVERY)
        {
            return;
        }
        let Some(c) = self.consumer.as_ref().and_then(|c| c.get().ok()) else {
            return;
        };
        let topic = self.settings.topic.clone();
        self.last_lag_read = Some(Instant::now());
        self.lag_reading = rmq::spawn_handle(async move {
            let read = async {
                let queues = c.fetch_message_queues(&topic).await.ok()?;
                let mut total = None;
                for mq in queues {
                    let committed = c.committed(&mq).await.ok().filter(|o| *o >= 0);
                    let max = c.max_offset(&mq).await.ok();
                    if let (Some(committed), Some(max)) = (committed, max) {
                        *total.get_or_insert(0) += (max - committed).max(0);
                    }
                }
                total
            };
            if let Ok(Some(n)) = tokio::time::timeout(CONNECT_TIMEOUT, read).await {
                gauge.store(n, std::sync::atomic::Ordering::Relaxed);
            }
        })
        .ok();
    }

    /// Hands out up to `max` gathered messages (all of them when the interval is zero: one
    /// poll is one batch) if there are `max`, or the first waited the interval; else when the
    /// gathered ones will be due.
    fn gathered_batch(&mut self, max: usize) -> Result<Batch, Option<Instant>> {
        let Some(since) = self.gathered_since else {
            return Err(None);
        };
        let due = since + self.interval;
        let n = if self.interval.is_zero() {
            self.gathered.len()
        } else if self.gathered.len() >= max || Instant::now() >= due {
            self.gathered.len().min(max)
        } else {
            return Err(Some(due));
        };
        let mut offsets: HashMap<MessageQueue, i64> = HashMap::new();
        let mut records = Vec::with_capacity(n);
        for (record, mq, offset) in self.gathered.drain(..n) {
            let e = offsets.entry(mq).or_insert(offset + 1);
            *e = (*e).max(offset + 1);
            records.extend(record);
        }
        self.gathered_since = (!self.gathered.is_empty()).then(Instant::now);
        self.next_token += 1;
        let token = BatchToken(self.next_token);
        self.batches.push_back((token, offsets));
        Ok(Batch::new(token, records))
    }

    /// Forgets the consumer after a failure (dropping it shuts it down; what was not
    /// committed is read again) and says why.
    fn fail(&mut self, e: impl std::fmt::Display) -> SourceError {
        self.consumer = None;
        if let Some(p) = self.polling.take() {
            p.abort();
        }
        self.batches.clear();
        self.gathered.clear();
        self.gathered_since = None;
        if let Some(h) = self.lag_reading.take() {
            h.abort();
        }
        let reason = format!("{}: {e}", self.settings.describe());
        self.health = Health::Unhealthy {
            reason: reason.clone(),
        };
        SourceError(reason)
    }

    async fn open(&self) -> Result<Consumer, String> {
        let runtime = rmq::client_runtime()?;
        let client = self.settings.client.clone();
        let topic = self.settings.topic.clone();
        let group = self.settings.group.clone();
        rmq::spawn(async move {
            let mut builder = DefaultLitePullConsumer::builder(runtime)
                .instance_name(rmq::instance_name("source"))
                .name_server_addr(client.namesrv.clone())
                .consumer_group(group)
                .auto_commit(false)
                .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset);
            if let Some(hook) = client.rpc_hook() {
                builder = builder.rpc_hook(hook);
            }
            let consumer = builder
                .build()
                .map_err(|e| format!("creating the consumer: {}", rmq::describe(&e)))?;
            let consumer = Consumer(Some(Arc::new(consumer)));
            let c = consumer.get().map_err(|e| e.0)?;
            c.subscribe(&topic)
                .await
                .map_err(|e| format!("subscribing: {}", rmq::describe(&e)))?;
            c.start()
                .await
                .map_err(|e| format!("starting the consumer: {}", rmq::describe(&e)))?;
            route(&c, &topic).await?;
            Ok(consumer)
        })
        .await?
    }

    /// Asks the name server for the topic's route again.
    async fn check_route(&mut self) -> Result<(), SourceError> {
        let c = match &self.consumer {
            Some(c) => c.get()?,
            None => return Err(SourceError("not connected".into())),
        };
        let topic = self.settings.topic.clone();
        let checked = tokio::time::timeout(
            CONNECT_TIMEOUT,
            rmq::spawn(async move { route(&c, &topic).await }),
        )
        .await;
        self.last_route_check = Instant::now();
        match checked {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e)) | Err(e)) => Err(self.fail(e)),
            Err(_) => Err(self.fail(format!(
                "the name server did not answer within {} s",
                CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// The topic's route from the name server: at least one queue.
async fn route(c: &DefaultLitePullConsumer, topic: &str) -> Result<(), String> {
    match c.fetch_message_queues(topic).await {
        Ok(queues) if !queues.is_empty() => Ok(()),
        Ok(_) => Err(format!("topic {topic} has no queues")),
        Err(e) => Err(format!(
            "no route for topic {topic} (name server unreachable, or the topic does not exist): {}",
            rmq::describe(&e)
        )),
    }
}

#[async_trait::async_trait]
impl Source for RocketSource {
    async fn connect(&mut self) -> Result<(), SourceError> {
        if self.consumer.is_some() {
            return Ok(());
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, self.open()).await {
            Ok(Ok(consumer)) => {
                self.consumer = Some(consumer);
                self.batches.clear();
                self.last_route_check = Instant::now();
                self.health = Health::Healthy;
                Ok(())
            }
            Ok(Err(e)) => Err(self.fail(e)),
            Err(_) => Err(self.fail(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))),
        }
    }

    async fn next_batch(&mut self, max: usize) -> Result<Batch, SourceError> {
        self.connect().await?;
        let max = max.max(1);
        loop {
            self.read_lag();
            let due = match self.gathered_batch(max) {
                Ok(batch) => return Ok(batch),
                Err(due) => due,
            };
            if self.polling.is_none() {
                let c = match &self.consumer {
                    Some(c) => c.get()?,
                    None => return Err(SourceError("not connected".into())),
                };
                let poll = rmq::spawn_handle(async move { c.poll_with_timeout(POLL_MS).await })
                    .map_err(SourceError)?;
                self.polling = Some(poll);
            }
            let Some(poll) = self.polling.as_mut() else {
                continue;
            };
            // Awaiting the handle is cancel safe: an unfinished poll stays in `polling`.
            let polled = match due {
                Some(at) => match tokio::time::timeout_at(at.into(), poll).await {
                    Ok(r) => r,
                    Err(_) => continue,
                },
                None => poll.await,
            };
            self.polling = None;
            let messages = match polled {
                Ok(m) => m,
                Err(e) => return Err(self.fail(format!("polling failed: {e}"))),
            };
            if messages.is_empty() {
                if self.last_route_check.elapsed() >= ROUTE_CHECK {
                    self.check_route().await?;
                }
                continue;
            }
            self.last_route_check = Instant::now();
            // A poll returns one pull's worth (the client's pull batch size, 32 at most by
            // default). With a zero interval that is the batch (`max` bounds only what the
            // runner appends at once); else polls gather up to `max`.
            self.gathered_since.get_or_insert_with(Instant::now);
            for m in &messages {
                let mq =
                    MessageQueue::from_parts(m.topic().as_str(), m.broker_name(), m.queue_id());
                let event = match self.shape {
                    Shape::Channel => {
                        to_event(m, &self.source_name, self.subject.as_deref(), Utc::now())
                    }
                    Shape::Stream => to_stream_event(m, &self.source_name, Utc::now()),
                };
                let payload = serde_json::to_vec(&event).unwrap_or_default();
                // The event size limit is a channel's; a stream's sink takes what it can.
                if self.shape == Shape::Channel
                    && payload.len() > openeg_api::event::MAX_EVENT_BYTES
                {
                    tracing::warn!(
                        source = %self.source_name,
                        queue_id = m.queue_id(),
                        queue_offset = m.queue_offset(),
                        event_bytes = payload.len(),
                        limit = openeg_api::event::MAX_EVENT_BYTES,
                        "RocketMQ message too large for an event: skipped"
                    );
                    // Its offset is committed with the batch it would have been in.
                    self.gathered.push_back((None, mq, m.queue_offset()));
                    continue;
                }
                let record = SourceRecord {
                    payload: Bytes::from(payload),
                    key: m.message_inner().keys().map(|k| k.join(" ")),
                    position: Some(Position {
                        partition: format!("{}-{}", m.broker_name(), m.queue_id()),
                        offset: m.queue_offset(),
                    }),
                    raw: None,
                };
                self.gathered
                    .push_back((Some(record), mq, m.queue_offset()));
            }
        }
    }

    async fn ack(&mut self, ack: Ack) -> Result<(), SourceError> {
        let token = ack.token();
        let Some(pos) = self.batches.iter().position(|(t, _)| *t == token) else {
            return Err(SourceError(
                "the batch was read by an earlier consumer; the broker redelivers it".into(),
            ));
        };
        // Batches are acknowledged in order: committing this one covers the earlier ones.
        let mut offsets: HashMap<MessageQueue, i64> = HashMap::new();
        for (_, o) in self.batches.drain(..=pos) {
            for (mq, next) in o {
                let e = offsets.entry(mq).or_insert(next);
                *e = (*e).max(next);
            }
        }
        let c = match &self.consumer {
            Some(c) => c.get()?,
            None => return Err(SourceError("not connected".into())),
        };
        rmq::spawn(async move { c.commit_with_map(offsets, true).await })
            .await
            .map_err(|e| self.fail(e))
    }

    fn health(&self) -> Health {
        self.health.clone()
    }
}

/// The event id of a message: the client's unique key, else the broker's msgId, else new.
fn event_id(m: &MessageExt) -> String {
    m.properties()
        .iter()
        .find(|(k, _)| k.as_str() == UNIQ_KEY)
        .map(|(_, v)| v.as_str())
        .filter(|id| usable_id(id))
        .or(Some(m.msg_id().as_str()).filter(|id| usable_id(id)))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The event time of a message: born, else stored, else `now`.
fn event_time(m: &MessageExt, now: DateTime<Utc>) -> String {
    millis(m.born_timestamp())
        .or_else(|| millis(m.store_timestamp()))
        .unwrap_or_else(|| now.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// The CloudEvent of one message read by an event stream: `source` = the stream's name,
/// `subject` = the topic, `data` = the body (JSON when it parses, else its text, else base64
/// in `data_base64`); `id`, `type` and `time` as [`to_event`].
pub fn to_stream_event(m: &MessageExt, source: &str, now: DateTime<Utc>) -> Value {
    let mut ev = Map::new();
    ev.insert("specversion".into(), "1.0".into());
    ev.insert("id".into(), event_id(m).into());
    ev.insert("source".into(), source.into());
    ev.insert("type".into(), EVENT_TYPE.into());
    ev.insert("subject".into(), m.topic().as_str().into());
    ev.insert("time".into(), event_time(m, now).into());
    let body = m.body().unwrap_or_default();
    match serde_json::from_slice::<Value>(&body) {
        Ok(v) => {
            ev.insert("datacontenttype".into(), "application/json".into());
            ev.insert("data".into(), v);
        }
        Err(_) => match std::str::from_utf8(&body) {
            Ok(text) => {
                ev.insert("datacontenttype".into(), "text/plain".into());
                ev.insert("data".into(), text.into());
            }
            Err(_) => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(&body);
                ev.insert("data_base64".into(), b64.into());
            }
        },
    }
    Value::Object(ev)
}

/// A usable CloudEvent `id`: not empty, within the attribute limit, no control characters.
fn usable_id(id: &str) -> bool {
    !id.is_empty()
        && id.chars().count() <= openeg_api::event::MAX_ATTRIBUTE_CHARS
        && !id.chars().any(char::is_control)
}

/// A millisecond timestamp as RFC 3339, if it is one (> 0).
fn millis(ts: i64) -> Option<String> {
    if ts <= 0 {
        return None;
    }
    DateTime::from_timestamp_millis(ts).map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// The CloudEvent of one message (see the module documentation); `now` is the time consumed,
/// used when the message has no timestamp.
pub fn to_event(m: &MessageExt, source: &str, subject: Option<&str>, now: DateTime<Utc>) -> Value {
    let props = m.properties();
    let id = event_id(m);
    let time = event_time(m, now);
    let body = m.body().unwrap_or_default();
    let mut data = Map::new();
    match serde_json::from_slice::<Value>(&body) {
        Ok(v) => {
            data.insert("context".into(), v);
        }
        Err(_) => match std::str::from_utf8(&body) {
            Ok(text) => {
                data.insert("context".into(), Value::String(text.to_string()));
            }
            Err(_) => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(&body);
                data.insert("context".into(), Value::String(b64));
                data.insert("contextEncoding".into(), "base64".into());
            }
        },
    }
    let mut user: Vec<(&str, &str)> = props
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .filter(|(k, _)| !STRING_HASH_SET.contains(k))
        .collect();
    user.sort_unstable();
    let properties: Map<String, Value> = user
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    let inner = m.message_inner();
    data.insert(
        "meta".into(),
        json!({
            "topic": m.topic().as_str(),
            "tags": inner.tags(),
            "keys": inner.property("KEYS"),
            "queueId": m.queue_id(),
            "queueOffset": m.queue_offset(),
            "properties": properties,
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

#[cfg(test)]
mod tests {
    use super::*;
    use rocketmq_model::common::message::message_single::Message;
    use rocketmq_model::common::message::MessageTrait;

    fn msg(topic: &str, body: &[u8]) -> Message {
        Message::builder()
            .topic(topic)
            .body_slice(body)
            .build_unchecked()
    }

    fn message(body: &[u8]) -> MessageExt {
        let mut inner = msg("orders", body);
        inner.set_tags("TagA".into());
        inner.set_keys("k1 k2".into());
        inner.put_property(UNIQ_KEY.into(), "7F0000010001".into());
        inner.put_property("color".into(), "blue".into());
        let mut m = MessageExt::default();
        m.set_message_inner(inner);
        m.set_queue_id(3);
        m.set_queue_offset(42);
        m.set_born_timestamp(1_700_000_000_123);
        m.set_store_timestamp(1_700_000_000_456);
        m.set_msg_id("OFFSETID".into());
        m
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    /// The event passes the channel's checks (what `SourcePump` publishes).
    fn checked(ev: &Value) {
        let text = serde_json::to_string(ev).unwrap();
        let r = openeg_api::event::check(&text).result;
        assert!(r.is_ok(), "{r:?}");
    }

    #[test]
    fn json_body() {
        let ev = to_event(
            &message(br#"{"order": 42}"#),
            "my-src",
            Some("topics/orders"),
            now(),
        );
        assert_eq!(
            ev,
            json!({
                "specversion": "1.0",
                "id": "7F0000010001",
                "source": "my-src",
                "type": "ROCKETMQ:CloudTrace:message",
                "subject": "topics/orders",
                "time": "2023-11-14T22:13:20.123Z",
                "datacontenttype": "application/json",
                "data": {
                    "context": {"order": 42},
                    "meta": {
                        "topic": "orders",
                        "tags": "TagA",
                        "keys": "k1 k2",
                        "queueId": 3,
                        "queueOffset": 42,
                        "properties": {"color": "blue"},
                    },
                },
            })
        );
        checked(&ev);
    }

    #[test]
    fn text_binary_and_fallbacks() {
        let ev = to_event(&message(b"hello"), "s", None, now());
        assert_eq!(ev["data"]["context"], "hello");
        assert!(ev["data"].get("contextEncoding").is_none());
        assert!(ev.get("subject").is_none());
        let ev = to_event(&message(&[0xde, 0xad, 0xbe, 0xef]), "s", None, now());
        assert_eq!(ev["data"]["context"], "3q2+7w==");
        assert_eq!(ev["data"]["contextEncoding"], "base64");
        checked(&ev);

        // No unique key: the broker's msgId; no born time: the store time; neither: now.
        let mut m = MessageExt::default();
        m.set_message_inner(msg("t", b"{}"));
        m.set_msg_id("OFFSETID".into());
        m.set_store_timestamp(1_700_000_000_456);
        let ev = to_event(&m, "s", None, now());
        assert_eq!(ev["id"], "OFFSETID");
        assert_eq!(ev["time"], "2023-11-14T22:13:20.456Z");
        assert_eq!(ev["data"]["meta"]["tags"], Value::Null);
        assert_eq!(ev["data"]["meta"]["properties"], json!({}));
        let mut m = MessageExt::default();
        m.set_message_inner(msg("t", b""));
        let ev = to_event(&m, "s", None, now());
        assert!(uuid::Uuid::parse_str(ev["id"].as_str().unwrap()).is_ok());
        assert_eq!(ev["time"], "2027-01-15T08:00:00.000Z");
        assert_eq!(ev["data"]["context"], "");
        checked(&ev);
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
            "namesrv_address": "http://ns1:9876;ns2:9876", "topic": "t", "group": "g",
            "instance_id": "ignored", "enable_acl": true, "access_key": "ak",
            "secret_key": "sk-secret"
        }))
        .unwrap();
        assert_eq!(s.client.namesrv, "ns1:9876;ns2:9876");
        assert_eq!((s.topic.as_str(), s.group.as_str()), ("t", "g"));
        assert!(!format!("{s:?}").contains("sk-secret"));
        assert!(!s.describe().contains("sk-secret"));
        for (detail, reason) in [
            (json!({"topic": "t", "group": "g"}), "namesrv_address"),
            (json!({"namesrv_address": "h:1", "group": "g"}), "topic"),
            (json!({"namesrv_address": "h:1", "topic": "t"}), "group"),
            (
                json!({"namesrv_address": "h:1", "topic": "t", "group": "g", "ssl_enable": true}),
                "TLS",
            ),
            (
                json!({"namesrv_address": "h:1", "topic": "t", "group": "g",
                       "enable_acl": true, "access_key": "ak"}),
                "credentials",
            ),
        ] {
            let text = build(&spec(detail), &BuildContext::default())
                .err()
                .unwrap()
                .to_string();
            assert!(text.contains(reason), "{text}");
            assert!(
                text.starts_with("invalid ROCKETMQ source settings"),
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn an_unreachable_name_server_is_an_error() {
        let mut src = build(
            &spec(json!({"namesrv_address": "127.0.0.1:9", "topic": "t", "group": "g"})),
            &BuildContext::default(),
        )
        .unwrap();
        assert!(matches!(src.health(), Health::Unhealthy { .. }));
        let started = Instant::now();
        let err = src.connect().await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(err.0.contains("127.0.0.1:9"), "{err}");
        let Health::Unhealthy { reason } = src.health() else {
            panic!("unhealthy expected");
        };
        assert_eq!(reason, err.0);
    }
}
