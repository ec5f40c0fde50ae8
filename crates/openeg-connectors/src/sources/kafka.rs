//! Kafka stream sources (an event stream's `source.source_kafka`, kind [`KIND`]): consume the
//! user's topic, commit in the stream's consumer group, and turn every record into a
//! CloudEvent.
//!
//! * Partitions are assigned by the source itself (every partition of the topic, checked
//!   again every [`PARTITION_PROBE`] for added ones), not by group membership: a stream runs
//!   on one node at a time, and without a membership there are no heartbeats to miss, no
//!   rebalance to wait for after a crash (a restarted stream reads at once), and no poll
//!   deadline a slow sink could break. The group holds the committed offsets (where a run
//!   starts; `kafka-consumer-groups --describe` shows them) and nothing else.
//!
//! * Connection: `addr` (bootstrap servers), `security_protocol` / `enable_sasl_ssl`,
//!   `sasl_mechanism`, `user_name`, `password`, read as a KAFKA connection's `kafka_detail`
//!   is (one mapping, [`crate::sinks::kafka::settings`]); the password never reaches a log line
//!   or an error. `instance_id` / `instance_name` (a DMS instance in EG) are not needed:
//!   `addr` says where the brokers are. `seek_to` is where a group without a committed
//!   offset starts (`latest` by default, as EG does).
//! * Batches are per partition, so a partition's records leave in order and its committed
//!   offset is a contiguous watermark: a partition with a batch handed out gives no other
//!   until that one is acknowledged, and acknowledging commits the offset after the batch's
//!   last record. Other partitions keep giving batches meanwhile (a failing sink holds back
//!   only the partition it failed for). A batch is handed out when it holds `max` records or
//!   its first record waited [`BuildContext::batch_interval`] (at once when that is zero).
//! * Backpressure without loss: a partition holding four batches (at least 10,000 records)
//!   waiting stops the reading while its sink is merely busy, and is paused at the consumer
//!   (resumed once half of that went out) when its batch has been at the sink for 5 s, so the
//!   other partitions are read again. Memory stays bounded while a sink fails.
//! * Each record becomes one CloudEvent 1.0 ([`to_event`]): `id` = `{topic}-{partition}-{offset}`,
//!   `source` = the stream's name, `type` = [`EVENT_TYPE`], `subject` = the topic, `time` =
//!   the record's timestamp (else now), `data` = the value (JSON when it parses, else its
//!   text, else base64 in `data_base64`), the record key in the extension `partitionkey`.
//! * A crash or stop between a sink's acknowledgement and the commit re-reads the batch:
//!   at-least-once. Commits are asynchronous; one lost on a crash only re-reads.

use super::{
    Ack, Batch, BatchToken, BuildContext, BuildError, Health, LagGauge, Position, RawRecord,
    Source, SourceError, SourceRecord, SourceSpec,
};
use crate::sinks::kafka as kafka_sink;
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use futures_util::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers as _, Message as _};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The source kind: an event stream's source `name`.
pub const KIND: &str = "HC.Kafka";
/// `type` of the events a Kafka stream source produces.
pub const EVENT_TYPE: &str = "KAFKA:CloudTrace:message";
/// Time allowed for the first metadata request (broker reachable, topic present).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Producer-only properties of the shared Kafka settings, left out of a consumer's.
const PRODUCER_ONLY: &[&str] = &[
    "acks",
    "message.timeout.ms",
    "topic.metadata.propagation.max.ms",
    "request.timeout.ms",
];
/// How often the topic's partition count is read again, to assign partitions added to it.
pub const PARTITION_PROBE: Duration = Duration::from_secs(60);
/// How often a partition probe in progress is looked at.
const PROBE_POLL: Duration = Duration::from_millis(500);
/// The longest a fetch waits at the broker for records (librdkafka's default: 500).
const FETCH_WAIT_MS: &str = "100";
/// How often librdkafka reports statistics (the consumer lag comes from them).
const STATS_INTERVAL_MS: &str = "5000";

fn invalid(reason: impl Into<String>) -> BuildError {
    BuildError::Invalid {
        kind: KIND.into(),
        reason: reason.into(),
    }
}

/// Consumer properties (the password among them: never logged), topic, group.
struct Settings {
    properties: Vec<(&'static str, String)>,
    topic: String,
    group: String,
    seek_to: &'static str,
    /// Records are kept as read ([`SourceRecord::raw`]) instead of becoming events.
    raw: bool,
}

impl Settings {
    fn from_detail(d: &Value) -> Result<Settings, BuildError> {
        let text = |k: &str| {
            d.get(k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        if text("addr").is_none() {
            return Err(invalid(
                "source_kafka.addr (the bootstrap servers) is required to run a stream in \
                 OpenEG: an instance_id alone does not say where the brokers are",
            ));
        }
        let topic = text("topic").ok_or_else(|| invalid("source_kafka.topic is required"))?;
        let group = text("group").ok_or_else(|| invalid("source_kafka.group is required"))?;
        let seek_to = match text("seek_to") {
            None | Some("latest") => "latest",
            Some("earliest") => "earliest",
            Some(other) => {
                return Err(invalid(format!(
                    "source_kafka.seek_to {other:?} is not earliest or latest"
                )))
            }
        };
        let as_connection = serde_json::json!({ "kafka_detail": d });
        let shared = kafka_sink::settings(&as_connection)
            .map_err(|e| invalid(e.replace("kafka_detail", "source_kafka")))?;
        let properties = shared
            .0
            .into_iter()
            .filter(|(k, _)| !PRODUCER_ONLY.contains(k))
            .collect();
        Ok(Settings {
            properties,
            topic: topic.to_string(),
            group: group.to_string(),
            seek_to,
            raw: false,
        })
    }

    fn describe(&self) -> String {
        let servers = self
            .properties
            .iter()
            .find(|(k, _)| *k == "bootstrap.servers")
            .map(|(_, v)| v.as_str())
            .unwrap_or_default();
        format!(
            "Kafka {servers}, topic {:?}, group {:?}",
            self.topic, self.group
        )
    }
}

/// Records of one partition read and not handed out yet, and its batch out, if any.
#[derive(Default)]
struct Partition {
    waiting: Vec<(i64, SourceRecord)>,
    /// When the oldest waiting record arrived.
    since: Option<Instant>,
    /// A batch of this partition is handed out and not acknowledged.
    busy: bool,
    /// Since when that batch is out.
    out_since: Option<Instant>,
    /// Bytes of the waiting records' payloads (and raw keys and values).
    bytes: usize,
    /// The offset after the last record taken in this run (0: none yet). A record below it
    /// (fetched again after a re-assignment or a resume) is dropped: it is held or was delivered.
    next_offset: i64,
    paused: bool,
}

pub struct KafkaSource {
    settings: Settings,
    stream_name: String,
    interval: Duration,
    consumer: Option<Arc<StreamConsumer<LagContext>>>,
    partitions: BTreeMap<i32, Partition>,
    /// Batches handed out: token → (partition, offset after its last record).
    out: HashMap<u64, (i32, i64)>,
    next_token: u64,
    /// Records a partition may hold waiting before it is paused (set from `max`).
    cap: usize,
    health: Health,
    /// The partitions assigned (every partition of the topic when last looked).
    assigned: Vec<i32>,
    /// A read of the topic's partitions in progress, and when the next one is due.
    probe: Option<tokio::task::JoinHandle<Result<Vec<AddedPartition>, String>>>,
    next_probe: Instant,
    /// Where the consumer lag goes (librdkafka's statistics), if anywhere.
    lag: Option<LagGauge>,
    /// Where partitions start instead of the group's committed offset.
    start_offsets: HashMap<i32, i64>,
}

/// A partition found added to the topic and where to start reading it.
type AddedPartition = (i32, Offset);

/// Keeps the consumer lag librdkafka's statistics report: records in the topic after the
/// group's committed offsets, summed over the assigned partitions.
struct LagContext {
    lag: Option<LagGauge>,
}

impl ClientContext for LagContext {
    fn stats(&self, s: Statistics) {
        let Some(gauge) = &self.lag else { return };
        let lags = s.topics.values().flat_map(|t| t.partitions.values());
        // A partition with nothing committed yet reports -1: its lag is not known.
        let known: Vec<i64> = lags
            .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
            .map(|p| p.consumer_lag)
            .collect();
        if !known.is_empty() {
            gauge.store(known.iter().sum(), Ordering::Relaxed);
        }
    }
}

impl ConsumerContext for LagContext {
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        // A refused commit only means records are read again after a restart; but a group
        // that also has members (another application, or a member not yet expired) refuses
        // every commit of this member-less consumer, and that must be visible.
        if let Err(e) = result {
            let partitions: Vec<i32> = offsets.elements().iter().map(|e| e.partition()).collect();
            tracing::warn!(error = %e, ?partitions,
                "Kafka stream source: committing offsets failed (records after the last \
                 committed offset are read again after a restart; does another consumer use \
                 this stream's group?)");
        }
    }
}

/// Builds a Kafka stream source from its spec (no I/O).
pub fn build(spec: &SourceSpec, ctx: &BuildContext) -> Result<Box<dyn Source>, BuildError> {
    Ok(Box::new(source(Settings::from_detail(&spec.detail)?, ctx)))
}

/// Builds the Kafka source of an event-router job's topic (no I/O): `spec.detail` as a
/// stream's `source_kafka` (`addr`, `topic`, `group`, `seek_to`, SASL/TLS members). Its
/// records are the topic's records as read ([`SourceRecord::raw`], the value also in
/// `payload`), not events; `ctx.start_offsets` says where partitions start.
pub fn build_mirror(spec: &SourceSpec, ctx: &BuildContext) -> Result<KafkaSource, BuildError> {
    let mut settings = Settings::from_detail(&spec.detail)?;
    settings.raw = true;
    Ok(source(settings, ctx))
}

fn source(settings: Settings, ctx: &BuildContext) -> KafkaSource {
    KafkaSource {
        settings,
        stream_name: ctx.resource_name.clone(),
        interval: ctx.batch_interval,
        consumer: None,
        partitions: BTreeMap::new(),
        out: HashMap::new(),
        next_token: 0,
        cap: cap(1),
        health: Health::Unhealthy {
            reason: "not connected yet".into(),
        },
        assigned: Vec::new(),
        probe: None,
        next_probe: Instant::now(),
        lag: ctx.lag.clone(),
        start_offsets: ctx.start_offsets.clone(),
    }
}

impl KafkaSource {
    /// A consume error: fatal ones end the run, others are logged (librdkafka recovers).
    fn consume_error(&mut self, e: KafkaError) -> Result<(), SourceError> {
        if is_fatal(&e) {
            return Err(self.fail(format!("consuming failed: {e}")));
        }
        tracing::warn!(source = %self.settings.describe(), error = %e,
            "Kafka stream source: a transient consume error (the client retries)");
        Ok(())
    }

    fn fail(&mut self, e: impl std::fmt::Display) -> SourceError {
        self.consumer = None;
        self.partitions.clear();
        self.out.clear();
        self.assigned.clear();
        if let Some(p) = self.probe.take() {
            p.abort();
        }
        let reason = format!("{}: {e}", self.settings.describe());
        self.health = Health::Unhealthy {
            reason: reason.clone(),
        };
        SourceError(reason)
    }

    fn consumer(&self) -> Result<Arc<StreamConsumer<LagContext>>, SourceError> {
        self.consumer
            .clone()
            .ok_or_else(|| SourceError("the consumer is not connected".into()))
    }

    /// A batch ready to hand out: a partition not busy whose waiting records fill `max` or
    /// waited `interval`; else the earliest time one will be ready.
    fn ready_batch(&mut self, max: usize) -> Result<Batch, Option<Instant>> {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        let mut pick = None;
        for (&p, part) in &self.partitions {
            let Some(since) = part.since.filter(|_| !part.busy) else {
                continue;
            };
            let due = since + self.interval;
            if part.waiting.len() >= max || part.bytes >= MAX_WAITING_BYTES || now >= due {
                pick = Some(p);
                break;
            }
            next = Some(next.map_or(due, |n| n.min(due)));
        }
        let Some(p) = pick else { return Err(next) };
        let part = self.partitions.entry(p).or_default();
        let n = part.waiting.len().min(max);
        let taken: Vec<(i64, SourceRecord)> = part.waiting.drain(..n).collect();
        part.bytes = part
            .bytes
            .saturating_sub(taken.iter().map(|(_, r)| record_bytes(r)).sum());
        part.busy = true;
        part.out_since = Some(now);
        part.since = if part.waiting.is_empty() {
            None
        } else {
            Some(now)
        };
        let last = taken.last().map(|(o, _)| *o).unwrap_or_default();
        self.next_token += 1;
        self.out.insert(self.next_token, (p, last + 1));
        let records = taken.into_iter().map(|(_, r)| r).collect();
        Ok(Batch::new(BatchToken(self.next_token), records))
    }

    fn take(&mut self, m: &BorrowedMessage<'_>) -> Result<(), SourceError> {
        let p = m.partition();
        let first_of_run = match self.partitions.get(&p) {
            // Read again after a re-assignment or a resume: already held or delivered.
            Some(part) if m.offset() < part.next_offset => return Ok(()),
            Some(_) => false,
            None => true,
        };
        if first_of_run {
            // Fix where this run started: a group without a committed offset starts at
            // `seek_to`, and `latest` would move on if this run ended before its first commit,
            // skipping what it read. Committing the first record's own offset changes nothing
            // when the group had one.
            let consumer = self.consumer()?;
            consumer
                .commit(
                    &one_partition(&self.settings.topic, p, Some(m.offset())),
                    CommitMode::Async,
                )
                .map_err(|e| self.fail(format!("committing partition {p} failed: {e}")))?;
        }
        let position = Some(Position {
            partition: p.to_string(),
            offset: m.offset(),
        });
        let record = if self.settings.raw {
            let value = m.payload().map(Bytes::copy_from_slice);
            SourceRecord {
                payload: value.clone().unwrap_or_default(),
                key: None,
                position,
                raw: Some(Box::new(raw_record(m, value))),
            }
        } else {
            SourceRecord {
                payload: Bytes::from(to_event(m, &self.stream_name, Utc::now()).to_string()),
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                position,
                raw: None,
            }
        };
        let part = self.partitions.entry(p).or_default();
        part.next_offset = m.offset() + 1;
        part.bytes = part.bytes.saturating_add(record_bytes(&record));
        part.waiting.push((m.offset(), record));
        part.since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Backpressure. A partition holding `cap` records waiting is *full*: while its batch at
    /// the sink is younger than [`PAUSE_AFTER`] the source stops reading (the client's own
    /// queue fills and it stops fetching by itself, nothing is dropped); a full partition
    /// whose batch is older (its sink is slow or failing) is paused at the consumer, so the
    /// other partitions are read again. `Some(t)`: stop reading until `t`.
    fn hold(&mut self) -> Result<Option<Instant>, SourceError> {
        let now = Instant::now();
        let mut until: Option<Instant> = None;
        let mut to_pause = Vec::new();
        for (&p, part) in &self.partitions {
            if part.paused || (part.waiting.len() < self.cap && part.bytes < MAX_WAITING_BYTES) {
                continue;
            }
            match part.out_since {
                Some(t) if now >= t + PAUSE_AFTER => to_pause.push(p),
                Some(t) => until = Some(until.map_or(t + PAUSE_AFTER, |u| u.min(t + PAUSE_AFTER))),
                None => {}
            }
        }
        if !to_pause.is_empty() {
            let consumer = self.consumer()?;
            for p in to_pause {
                consumer
                    .pause(&one_partition(&self.settings.topic, p, None))
                    .map_err(|e| SourceError(format!("pausing partition {p}: {e}")))?;
                self.partitions.entry(p).or_default().paused = true;
            }
        }
        Ok(until)
    }
    /// Assigns every partition of `partitions` (at connect), each from the group's committed
    /// offset, else `seek_to`.
    fn assign(&mut self, partitions: Vec<i32>) -> Result<(), SourceError> {
        let consumer = self.consumer()?;
        let mut tpl = TopicPartitionList::new();
        for &p in &partitions {
            let at = match self.start_offsets.get(&p) {
                Some(&o) => Offset::Offset(o),
                None => Offset::Stored,
            };
            tpl.add_partition_offset(&self.settings.topic, p, at)
                .map_err(|e| self.fail(format!("assigning partition {p}: {e}")))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| self.fail(format!("assigning the partitions: {e}")))?;
        self.assigned = partitions;
        Ok(())
    }

    /// Reads the topic's partitions in the background every [`PARTITION_PROBE`] and adds
    /// partitions created since, leaving the assigned ones be. A failed read is tried again at
    /// the next probe. `Some(t)`: a probe is out, look again at `t`.
    fn probe_partitions(&mut self) -> Result<Option<Instant>, SourceError> {
        if let Some(h) = self.probe.as_mut() {
            let Some(done) = h.now_or_never() else {
                return Ok(Some(Instant::now() + PROBE_POLL));
            };
            self.probe = None;
            match done {
                Ok(Ok(added)) if !added.is_empty() => {
                    tracing::info!(source = %self.settings.describe(),
                        added = ?added.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
                        "Kafka stream source: partitions were added to the topic; reading them");
                    let consumer = self.consumer()?;
                    let mut tpl = TopicPartitionList::new();
                    for (p, offset) in &added {
                        tpl.add_partition_offset(&self.settings.topic, *p, *offset)
                            .map_err(|e| self.fail(format!("assigning partition {p}: {e}")))?;
                    }
                    consumer
                        .incremental_assign(&tpl)
                        .map_err(|e| self.fail(format!("assigning new partitions: {e}")))?;
                    self.assigned.extend(added.iter().map(|(p, _)| *p));
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(source = %self.settings.describe(), error = %e,
                    "Kafka stream source: reading the topic's partitions failed"),
                Err(e) => tracing::warn!(source = %self.settings.describe(), error = %e,
                    "Kafka stream source: the partition probe ended"),
            }
        }
        if Instant::now() >= self.next_probe {
            self.next_probe = Instant::now() + PARTITION_PROBE;
            let consumer = self.consumer()?;
            let topic = self.settings.topic.clone();
            let known = self.assigned.clone();
            self.probe = Some(tokio::task::spawn_blocking(move || {
                added_partitions(consumer.as_ref(), &topic, &known)
            }));
            return Ok(Some(Instant::now() + PROBE_POLL));
        }
        Ok(Some(self.next_probe))
    }
}

/// A record as read, for copying it unchanged.
fn raw_record(m: &BorrowedMessage<'_>, value: Option<Bytes>) -> RawRecord {
    let headers = m
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| (h.key.to_string(), h.value.map(Bytes::copy_from_slice)))
                .collect()
        })
        .unwrap_or_default();
    RawRecord {
        topic: m.topic().to_string(),
        key: m.key().map(Bytes::copy_from_slice),
        value,
        headers,
        timestamp_ms: m.timestamp().to_millis(),
    }
}

/// Bytes a partition may hold waiting before it is full, whatever the count (large records).
const MAX_WAITING_BYTES: usize = 64 << 20;

/// What a waiting record holds in memory, roughly.
fn record_bytes(r: &SourceRecord) -> usize {
    let raw = r.raw.as_ref().map_or(0, |w| {
        w.key.as_ref().map_or(0, |k| k.len())
            + w.headers
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, |v| v.len()))
                .sum::<usize>()
    });
    // A raw record's value is its payload too (shared bytes): counted once.
    r.payload.len() + raw
}

/// How many records a partition may hold waiting before it is full, for batches of `max`.
fn cap(max: usize) -> usize {
    (max * 4).max(10_000)
}

/// How long a full partition's batch may be at the sink before the partition is paused.
/// Pausing drops the client's prefetched records of the partition (fetched again on resume,
/// seconds on a slow broker), so it is kept for a sink that is failing, not merely busy.
const PAUSE_AFTER: Duration = Duration::from_secs(5);

/// Consume errors that end the run: the rest (a broker restarting, a connection dropped) are
/// librdkafka's notices of conditions it recovers from by itself.
fn is_fatal(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    match e {
        KafkaError::MessageConsumptionFatal(_) => true,
        KafkaError::MessageConsumption(code) => matches!(
            code,
            C::UnknownTopicOrPartition
                | C::UnknownTopic
                | C::TopicAuthorizationFailed
                | C::GroupAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::SaslAuthenticationFailed
                | C::Authentication
                | C::Fatal
        ),
        _ => true,
    }
}

fn one_partition(topic: &str, p: i32, offset: Option<i64>) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    match offset {
        Some(o) => {
            // Only fails for an invalid offset value, which an offset after a record is not.
            let _ = tpl.add_partition_offset(topic, p, Offset::Offset(o));
        }
        None => {
            tpl.add_partition(topic, p);
        }
    }
    tpl
}

/// The partition ids of `topic`, sorted; an error when the cluster does not answer or the
/// topic does not exist (blocking: run it off the async threads).
fn topic_partitions<C: Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, String> {
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| format!("the cluster did not answer: {e}"))?;
    let mut ids: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if ids.is_empty() {
        return Err("the topic does not exist".into());
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Partitions of `topic` not in `known`, each with where to start: the group's committed
/// offset, else the beginning. A partition created while the stream ran holds only records
/// written since, which `seek_to: latest` would skip (blocking: run it off the async threads).
fn added_partitions<C: Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    topic: &str,
    known: &[i32],
) -> Result<Vec<AddedPartition>, String> {
    let added: Vec<i32> = topic_partitions(consumer, topic, CONNECT_TIMEOUT)?
        .into_iter()
        .filter(|p| !known.contains(p))
        .collect();
    if added.is_empty() {
        return Ok(Vec::new());
    }
    let mut tpl = TopicPartitionList::new();
    for &p in &added {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, CONNECT_TIMEOUT)
        .map_err(|e| format!("reading the group's offsets: {e}"))?;
    Ok(added
        .into_iter()
        .map(|p| {
            let offset = committed
                .find_partition(topic, p)
                .map(|e| e.offset())
                .filter(|o| matches!(o, Offset::Offset(_)))
                .unwrap_or(Offset::Beginning);
            (p, offset)
        })
        .collect())
}

#[async_trait::async_trait]
impl Source for KafkaSource {
    async fn connect(&mut self) -> Result<(), SourceError> {
        let mut cfg = ClientConfig::new();
        for (k, v) in &self.settings.properties {
            cfg.set(*k, v);
        }
        cfg.set("group.id", &self.settings.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", self.settings.seek_to)
            .set("enable.partition.eof", "false")
            // A record reaches the source at most this long after the broker has it, whether
            // or not the broker holds an empty fetch open until data arrives: a partial
            // batch leaves `interval` after its first record, not half a second later.
            .set("fetch.wait.max.ms", FETCH_WAIT_MS);
        if self.lag.is_some() {
            cfg.set("statistics.interval.ms", STATS_INTERVAL_MS);
        }
        let context = LagContext {
            lag: self.lag.clone(),
        };
        // The error names the property, never its value.
        let consumer: StreamConsumer<LagContext> =
            cfg.create_with_context(context).map_err(|e| self.fail(e))?;
        let consumer = Arc::new(consumer);
        let probe = consumer.clone();
        let topic = self.settings.topic.clone();
        let partitions = tokio::task::spawn_blocking(move || {
            topic_partitions(probe.as_ref(), &topic, CONNECT_TIMEOUT)
        })
        .await
        .map_err(|e| self.fail(e))?
        .map_err(|e| self.fail(e))?;
        self.consumer = Some(consumer);
        self.assign(partitions)?;
        self.next_probe = Instant::now() + PARTITION_PROBE;
        self.health = Health::Healthy;
        Ok(())
    }

    async fn next_batch(&mut self, max: usize) -> Result<Batch, SourceError> {
        let max = max.max(1);
        self.cap = cap(max);
        loop {
            let due = match self.ready_batch(max) {
                Ok(b) => return Ok(b),
                Err(due) => due,
            };
            // Wake for the partition probe too, or an idle topic would never be probed.
            let probe = self.probe_partitions()?;
            let due = match (due, probe) {
                (Some(d), Some(p)) => Some(d.min(p)),
                (d, p) => d.or(p),
            };
            if let Some(until) = self.hold()? {
                let at = due.map_or(until, |d| d.min(until));
                tokio::time::sleep_until(at.into()).await;
                continue;
            }
            let consumer = self.consumer()?;
            // `recv` is cancel safe: a record is taken only when it returns.
            let got = match due {
                Some(at) => match tokio::time::timeout_at(at.into(), consumer.recv()).await {
                    Ok(r) => r,
                    Err(_) => continue,
                },
                None => consumer.recv().await,
            };
            match got {
                Ok(m) => self.take(&m)?,
                Err(e) => self.consume_error(e)?,
            }
            // Take what the client already holds without waiting, so that a batch is made of
            // what is there rather than of one record (a zero interval flushes at once).
            for _ in 0..max {
                match consumer.recv().now_or_never() {
                    Some(Ok(m)) => self.take(&m)?,
                    Some(Err(e)) => self.consume_error(e)?,
                    None => break,
                }
            }
        }
    }

    async fn ack(&mut self, ack: Ack) -> Result<(), SourceError> {
        let Some((p, next)) = self.out.remove(&ack.token().0) else {
            // A batch of a consumer since replaced: its records are read again.
            return Ok(());
        };
        let consumer = self.consumer()?;
        consumer
            .commit(
                &one_partition(&self.settings.topic, p, Some(next)),
                CommitMode::Async,
            )
            .map_err(|e| self.fail(format!("committing partition {p} failed: {e}")))?;
        let topic = self.settings.topic.clone();
        if let Some(part) = self.partitions.get_mut(&p) {
            part.busy = false;
            part.out_since = None;
            if part.paused
                && part.waiting.len() < self.cap / 2
                && part.bytes < MAX_WAITING_BYTES / 2
            {
                part.paused = false;
                consumer
                    .resume(&one_partition(&topic, p, None))
                    .map_err(|e| SourceError(format!("resuming partition {p}: {e}")))?;
            }
        }
        Ok(())
    }

    fn health(&self) -> Health {
        self.health.clone()
    }

    fn concurrent_batches(&self) -> usize {
        // Batches are per partition and one partition has at most one out.
        usize::MAX
    }
}

/// The CloudEvent of one Kafka record (module docs).
pub fn to_event(m: &BorrowedMessage<'_>, source: &str, now: DateTime<Utc>) -> Value {
    let topic = m.topic();
    let time = m
        .timestamp()
        .to_millis()
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
        .unwrap_or(now)
        .to_rfc3339_opts(SecondsFormat::Millis, true);
    let mut ev = Map::new();
    ev.insert("specversion".into(), "1.0".into());
    ev.insert(
        "id".into(),
        format!("{topic}-{}-{}", m.partition(), m.offset()).into(),
    );
    ev.insert("source".into(), source.into());
    ev.insert("type".into(), EVENT_TYPE.into());
    ev.insert("subject".into(), topic.into());
    ev.insert("time".into(), time.into());
    let body = m.payload().unwrap_or_default();
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => {
            ev.insert("datacontenttype".into(), "application/json".into());
            ev.insert("data".into(), v);
        }
        Err(_) => match std::str::from_utf8(body) {
            Ok(text) => {
                ev.insert("datacontenttype".into(), "text/plain".into());
                ev.insert("data".into(), text.into());
            }
            Err(_) => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(body);
                ev.insert("data_base64".into(), b64.into());
            }
        },
    }
    if let Some(k) = m.key() {
        ev.insert(
            "partitionkey".into(),
            String::from_utf8_lossy(k).into_owned().into(),
        );
    }
    Value::Object(ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_need_addr_and_keep_the_password_out_of_errors() {
        let e = Settings::from_detail(&json!({"topic": "t", "group": "g", "instance_id": "i"}))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("source_kafka.addr"), "{e}");
        let s = Settings::from_detail(&json!({"addr": "127.0.0.1:9092", "topic": "t",
            "group": "g", "seek_to": "earliest"}))
        .unwrap();
        assert_eq!(s.seek_to, "earliest");
        assert!(s.properties.iter().all(|(k, _)| !PRODUCER_ONLY.contains(k)));
        let e = Settings::from_detail(&json!({"addr": "127.0.0.1:9092", "topic": "t",
            "group": "g", "security_protocol": "SASL_PLAINTEXT", "user_name": "u"}))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("source_kafka.password is required"), "{e}");
        let s = Settings::from_detail(&json!({"addr": "h:1", "topic": "t", "group": "g",
            "security_protocol": "SASL_PLAINTEXT", "user_name": "u", "password": "s3cret"}))
        .unwrap();
        assert!(!s.describe().contains("s3cret"));
    }
}
