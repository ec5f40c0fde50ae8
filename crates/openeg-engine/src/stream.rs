//! The event stream runtime: one source → `rule_config` filter and transform → one sink
//! (`docs/streams.md`).
//!
//! A stream's source is an `openeg_connectors::sources` [`Source`] (its kind is the stream's
//! `source.name`, e.g. `HC.Kafka`), and the sink takes the place the channel log has for a
//! custom source: [`StreamWriter`] is the [`DurableLog`] a batch is appended to, and its
//! append returns only once the sink acknowledged every record of the batch. So the commit
//! rule of the sources module holds unchanged: a source position is committed only with the
//! [`openeg_connectors::sources::Ack`] of a batch the sink took.
//!
//! * Batches: the source forms them (`batch_window.count` records, or fewer after
//!   `batch_window.interval` seconds); up to [`Source::concurrent_batches`] are in the writer
//!   at once (a Kafka source: one per partition), so a failing sink holds back only the
//!   partition it failed for.
//! * `option.thread_num` bounds the sink calls in progress at once (a semaphore held per
//!   attempt, not while waiting to retry).
//! * A sink failure worth retrying is retried for that batch, 1 s doubling to 60 s; meanwhile
//!   the status is `ERROR` with the failure, and `RUNNING` again once no batch fails.
//!   `batch_window.time`, when set, is how many retries a batch gets before the run fails
//!   (the supervisor restarts it with backoff and the batch is read again).
//! * A record the Kafka sink refuses for good because of the record itself (too large,
//!   invalid) is skipped with a warning and counted: one poison record must not stall its
//!   partition forever. Other permanent failures (authorization, a function's 4xx) are about
//!   the sink and are retried like any failure.
//! * Sinks: HC.Kafka, one record per event (key: the first `keyTransform`'s output, else the
//!   source record's key); HC.FunctionGraph, one invocation per batch with a JSON array of the
//!   transformed events.

use crate::metrics::StreamFigures;
use crate::supervisor::{ErrorInfo, Ready, Runtime, StopSignal};
use crate::Engine;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use openeg_api::target_spec::{FunctionGraphDetail, InvokeType, KafkaDetail};
use openeg_connectors::sinks::obs::{ObsConfig, ObsSink};
use openeg_connectors::sinks::{self, BuildContext as SinkContext};
use openeg_connectors::sources::{
    self, Ack, AppendError, BuildContext, DurableLog, Source, SourceRecord, SourceSpec,
};
use openeg_connectors::{backoff, Message, Outcome, Sink};
use openeg_rules::{CompiledTransform, Matcher, MatcherBuilder, Rendered, TransformUse};
use openeg_store::secrets::SecretBox;
use openeg_store::Kind;
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Longest wait between two attempts of a failing batch.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);
/// Sink failures about the record itself (Kafka error names): such a record is skipped, since
/// no retry can deliver it and it would stall its partition.
const RECORD_FAULTS: &[&str] = &[
    "MessageSizeTooLarge",
    "InvalidMessageSize",
    "MessageBatchTooLarge",
    "InvalidRecord",
];
/// Batches in the writer at once, whatever the source allows.
const MAX_BATCHES: usize = 256;

/// Where a stream delivers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SinkPlan {
    Kafka {
        connection_id: String,
        topic: String,
        key_transform: Option<Value>,
    },
    FunctionGraph {
        urn: String,
        invoke_type: InvokeType,
    },
    Obs(ObsPlan),
}

/// An OBS sink: where objects go and the keys they are written with.
#[derive(Clone, PartialEq)]
pub(crate) struct ObsPlan {
    bucket: String,
    /// `obs_path`: the key prefix.
    path: String,
    time_format: String,
    access_key: String,
    /// Never logged (no Debug of it).
    secret_key: String,
}

impl std::fmt::Debug for ObsPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObsPlan")
            .field("bucket", &self.bucket)
            .field("path", &self.path)
            .field("time_format", &self.time_format)
            .finish_non_exhaustive()
    }
}

impl SinkPlan {
    /// The sink of a stored stream's `sink`, its secrets (sealed at rest) revealed.
    pub(crate) fn of_stored(sink: &Value, secrets: &SecretBox) -> Result<SinkPlan, String> {
        let mut sink = sink.clone();
        secrets.reveal_json(&mut sink);
        SinkPlan::of(&sink)
    }

    /// The sink of a stream document's `sink`, or why it cannot run here.
    pub(crate) fn of(sink: &Value) -> Result<SinkPlan, String> {
        let text = |o: &Value, k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
        if let Some(k) = sink.get("sink_kafka").filter(|v| v.is_object()) {
            return Ok(SinkPlan::Kafka {
                connection_id: text(k, "connectionId").unwrap_or_default(),
                topic: text(k, "topic").unwrap_or_default(),
                key_transform: k
                    .get("keyTransform")
                    .and_then(Value::as_array)
                    .and_then(|a| a.first())
                    .cloned(),
            });
        }
        if let Some(f) = sink.get("sink_fg").filter(|v| v.is_object()) {
            let urn = text(f, "urn").unwrap_or_default();
            if urn.is_empty() {
                return Err("sink_fg.urn is required to invoke a function".into());
            }
            let invoke_type = match f.get("invoke_type").and_then(Value::as_str) {
                Some("ASYNC") => InvokeType::Async,
                _ => InvokeType::Sync,
            };
            return Ok(SinkPlan::FunctionGraph { urn, invoke_type });
        }
        if let Some(o) = sink.get("sink_obs").filter(|v| v.is_object()) {
            let bucket = text(o, "obs_bucket").unwrap_or_default();
            if bucket.is_empty() {
                return Err("sink_obs.obs_bucket is required to write objects".into());
            }
            return Ok(SinkPlan::Obs(ObsPlan {
                bucket,
                path: text(o, "obs_path").unwrap_or_default(),
                time_format: text(o, "time_format").unwrap_or_default(),
                access_key: text(o, "access_key").unwrap_or_default(),
                secret_key: text(o, "secret_key").unwrap_or_default(),
            }));
        }
        Err("the stream has no sink this build can run".into())
    }
}

/// Why a stream into OBS does not run on an OpenEG without `obs_endpoint`.
pub const STREAM_OBS_NOT_CONFIGURED: &str =
    "obs_endpoint is not configured: this OpenEG does not know the S3-compatible store OBS \
     sinks write to, and nothing is written";

/// What a stream runs with, read from its document (secrets revealed in `source`).
pub(crate) struct StreamRun {
    pub(crate) engine: Weak<Engine>,
    pub(crate) project_id: String,
    pub(crate) stream_id: String,
    pub(crate) source: SourceSpec,
    pub(crate) ctx: BuildContext,
    pub(crate) build: sources::BuildFn,
    pub(crate) sink: SinkPlan,
    pub(crate) filter: Option<Value>,
    pub(crate) transform: Option<Value>,
    /// `batch_window.count`.
    pub(crate) count: usize,
    /// `option.thread_num`.
    pub(crate) threads: usize,
    /// `batch_window.time`: retries of a batch before the run fails; `None`: forever.
    pub(crate) retries: Option<u32>,
}

fn fail(msg: impl Into<String>) -> ErrorInfo {
    ErrorInfo::not_run(msg)
}

impl StreamRun {
    /// The sink, built from the plan (a Kafka sink reads its connection from the store).
    async fn build_sink(&self, engine: &Engine) -> Result<(Box<dyn Sink>, Delivery), ErrorInfo> {
        let sink_ctx = |connection| SinkContext {
            http: &engine.http,
            project_id: &self.project_id,
            functiongraph_endpoint: engine.cfg.functiongraph_endpoint.as_deref(),
            smn_endpoint: engine.cfg.smn_endpoint.as_deref(),
            connection,
        };
        match &self.sink {
            SinkPlan::Kafka {
                connection_id,
                topic,
                ..
            } => {
                let mut conn = engine
                    .meta
                    .get(&self.project_id, Kind::Connection, connection_id)
                    .await
                    .map_err(|e| fail(format!("loading connection {connection_id}: {e}")))?
                    .ok_or_else(|| fail(format!("connection {connection_id} does not exist")))?
                    .body;
                engine.secrets.reveal_json(&mut conn);
                let detail = KafkaDetail {
                    topic: topic.clone(),
                    key_transform: None,
                };
                let sink = sinks::kafka::build(&detail, &sink_ctx(Some(&conn)))
                    .map_err(|e| fail(format!("the Kafka sink cannot be used: {e}")))?;
                Ok((sink, Delivery::PerRecord))
            }
            SinkPlan::FunctionGraph { urn, invoke_type } => {
                let detail = FunctionGraphDetail {
                    urn: urn.clone(),
                    invoke_type: *invoke_type,
                    agency_name: None,
                };
                let sink = sinks::functiongraph::build(&detail, &sink_ctx(None))
                    .map_err(|e| fail(format!("the FunctionGraph sink cannot be used: {e}")))?;
                Ok((sink, Delivery::JsonArray))
            }
            SinkPlan::Obs(plan) => {
                let endpoint = engine
                    .cfg
                    .obs_endpoint
                    .clone()
                    .ok_or_else(|| fail(STREAM_OBS_NOT_CONFIGURED))?;
                let cfg = ObsConfig {
                    endpoint,
                    region: engine
                        .cfg
                        .obs_region
                        .clone()
                        .unwrap_or_else(|| sinks::obs::DEFAULT_REGION.into()),
                    bucket: plan.bucket.clone(),
                    access_key: plan.access_key.clone(),
                    secret_key: plan.secret_key.clone(),
                };
                let sink = ObsSink::new(engine.http.clone(), &cfg)
                    .map_err(|e| fail(format!("the OBS sink cannot be used: {e}")))?;
                Ok((
                    Box::new(sink),
                    Delivery::Objects {
                        path: plan.path.clone(),
                        time_format: plan.time_format.clone(),
                    },
                ))
            }
        }
    }

    fn compile(&self) -> Result<Rules, ErrorInfo> {
        let matcher = match &self.filter {
            Some(f) => {
                let mut b = MatcherBuilder::new();
                b.add_rule(f, false)
                    .map_err(|e| fail(format!("rule_config.filter: {e}")))?;
                Some(b.build())
            }
            None => None,
        };
        let transform = self
            .transform
            .as_ref()
            .map(|t| CompiledTransform::compile(t, TransformUse::Payload))
            .transpose()
            .map_err(|e| fail(format!("rule_config.transform: {e}")))?;
        let key = match &self.sink {
            SinkPlan::Kafka {
                key_transform: Some(k),
                ..
            } => Some(
                CompiledTransform::compile(k, TransformUse::Key)
                    .map_err(|e| fail(format!("sink_kafka.keyTransform: {e}")))?,
            ),
            _ => None,
        };
        Ok(Rules {
            matcher,
            transform,
            key,
        })
    }
}

/// The compiled `rule_config` and key transform.
struct Rules {
    matcher: Option<Matcher>,
    transform: Option<CompiledTransform>,
    key: Option<CompiledTransform>,
}

impl Rules {
    /// The sink message of one source record: `Ok(None)` when the filter drops it, `Err` when
    /// the record cannot be read as an event (it is skipped).
    fn message(&self, r: &SourceRecord) -> Result<Option<Message>, String> {
        if self.matcher.is_none() && self.transform.is_none() && self.key.is_none() {
            // Nothing reads the event: it goes as the source made it.
            return Ok(Some(Message {
                payload: r.payload.clone(),
                key: r.key.clone(),
                ..Message::default()
            }));
        }
        let event: Value = serde_json::from_slice(&r.payload)
            .map_err(|e| format!("the record's event cannot be read: {e}"))?;
        if let Some(m) = &self.matcher {
            if m.matches_value(&event).is_empty() {
                return Ok(None);
            }
        }
        let payload = match &self.transform {
            Some(t) => match t.render(&event) {
                Rendered::Text(s) => s.into(),
                Rendered::None => return Ok(None),
            },
            None => r.payload.clone(),
        };
        let key = match &self.key {
            Some(k) => k.render_text(&event),
            None => r.key.clone(),
        };
        Ok(Some(Message {
            payload,
            key,
            ..Message::default()
        }))
    }
}

#[async_trait::async_trait]
impl Runtime for StreamRun {
    async fn run(&self, mut stop: StopSignal, ready: Ready) -> Result<(), ErrorInfo> {
        let engine = self
            .engine
            .upgrade()
            .ok_or_else(|| fail("the engine is shutting down"))?;
        let rules = self.compile()?;
        let (sink, delivery) = self.build_sink(&engine).await?;
        let figures = engine.metrics.stream(&self.stream_id);
        drop(engine);
        // The lag is the running source's: not known once this run ends.
        let _lag = LagReset(figures.lag.clone());
        let ctx = BuildContext {
            lag: Some(figures.lag.clone()),
            ..self.ctx.clone()
        };
        let mut source: Box<dyn Source> =
            (self.build)(&self.source, &ctx).map_err(|e| fail(e.to_string()))?;
        tokio::select! {
            _ = stop.stopped() => return Ok(()),
            c = source.connect() => c.map_err(|e| fail(format!("connecting to the source failed: {e}")))?,
        }
        ready.ready();
        let writer = Arc::new(StreamWriter {
            rules,
            sink,
            delivery,
            calls: Semaphore::new(self.threads.max(1)),
            retries: self.retries,
            failing: AtomicUsize::new(0),
            figures,
            ready,
            stream_id: self.stream_id.clone(),
        });
        drive(source.as_mut(), writer, self.count, stop).await
    }
}

/// How long a stopped [`drive`] lets the batches already in its writer finish: within the
/// supervisor's grace period, so a stop never waits on a sink that keeps failing.
pub(crate) const DRAIN: Duration = Duration::from_secs(2);

type Inflight = FuturesUnordered<BoxFuture<'static, Result<Ack, AppendError>>>;

/// Runs a connected source into `writer` until `stop`: batches of up to `count` records,
/// up to [`Source::concurrent_batches`] of them in the writer at once, each acknowledged to
/// the source once the writer took it (the commit rule of the sources module). On stop no
/// new batch is read and those in the writer get [`DRAIN`] to finish (a stream commits
/// them, a router job stores their offset pairs, so nothing it already copied is copied
/// again, or back after a switch-over). `Ok` on stop; a source or writer failure ends it
/// with the reason.
pub(crate) async fn drive(
    source: &mut dyn Source,
    writer: Arc<dyn DurableLog>,
    count: usize,
    mut stop: StopSignal,
) -> Result<(), ErrorInfo> {
    let limit = source.concurrent_batches().clamp(1, MAX_BATCHES);
    let mut inflight: Inflight = FuturesUnordered::new();
    loop {
        tokio::select! {
            _ = stop.stopped() => return drain(source, inflight).await,
            Some(done) = inflight.next() => {
                let ack = done.map_err(|e| fail(e.0))?;
                // A commit that hangs must not hold a PAUSE or a delete back.
                tokio::select! {
                    _ = stop.stopped() => return drain(source, inflight).await,
                    r = source.ack(ack) => r.map_err(|e| {
                        fail(format!("committing to the source failed: {e}"))
                    })?,
                }
            }
            b = source.next_batch(count), if inflight.len() < limit => {
                let batch = b.map_err(|e| fail(format!("reading from the source failed: {e}")))?;
                let w = writer.clone();
                inflight.push(Box::pin(async move { batch.append_durably(w.as_ref()).await }));
            }
        }
    }
}

/// After a stop: the batches in the writer finish and are acknowledged, for up to [`DRAIN`]
/// (what does not finish is read again by the next run: at-least-once, as after a crash).
async fn drain(source: &mut dyn Source, mut inflight: Inflight) -> Result<(), ErrorInfo> {
    let finish = async {
        while let Some(done) = inflight.next().await {
            match done {
                Ok(ack) => {
                    if let Err(e) = source.ack(ack).await {
                        tracing::debug!(error = %e, "a commit while stopping failed");
                        return;
                    }
                }
                // Acknowledgements may come in any order (one batch per partition at a
                // time): the others are still committed.
                Err(_) => continue,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN, finish).await;
    Ok(())
}

/// The sink side of a stream, as the [`DurableLog`] its batches are appended to.
struct StreamWriter {
    rules: Rules,
    sink: Box<dyn Sink>,
    delivery: Delivery,
    calls: Semaphore,
    retries: Option<u32>,
    /// Batches failing now; the status is `ERROR` while any does.
    failing: AtomicUsize,
    figures: Arc<StreamFigures>,
    ready: Ready,
    stream_id: String,
}

impl StreamWriter {
    /// Skips a record that can never be delivered: counted, logged, kept as the last error.
    fn skip(&self, code: &str, detail: &str) {
        self.figures.skipped.add(1);
        tracing::warn!(stream = %self.stream_id, %code, %detail,
            "event stream: a record cannot be delivered; it is skipped");
        if let Ok(mut last) = self.figures.last_error.lock() {
            *last = Some(format!("a record was skipped ({code}): {detail}"));
        }
    }

    /// What goes to the sink for a batch's records: one [`Unit`] per sink call.
    fn units(&self, records: &[SourceRecord]) -> Vec<Unit> {
        let mut messages: Vec<(usize, Message)> = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            match self.rules.message(r) {
                Ok(Some(m)) => messages.push((i, m)),
                Ok(None) => self.figures.filtered.add(1),
                Err(why) => self.skip("", &why),
            }
        }
        match &self.delivery {
            Delivery::PerRecord => messages
                .into_iter()
                .map(|(_, msg)| Unit { msg, records: 1 })
                .collect(),
            Delivery::JsonArray if messages.is_empty() => Vec::new(),
            Delivery::JsonArray => {
                let items: Vec<Value> = messages
                    .iter()
                    .map(|(_, m)| {
                        serde_json::from_slice(&m.payload).unwrap_or_else(|_| {
                            Value::String(String::from_utf8_lossy(&m.payload).into_owned())
                        })
                    })
                    .collect();
                vec![Unit {
                    records: messages.len() as u64,
                    msg: Message {
                        payload: Value::Array(items).to_string().into(),
                        ..Message::default()
                    },
                }]
            }
            Delivery::Objects { path, time_format } => {
                objects(records, messages, path, time_format)
            }
        }
    }

    /// One attempt at the units of `pending`; what is left to retry, and the last
    /// retryable failure.
    async fn attempt(&self, pending: Vec<Unit>) -> (Vec<Unit>, Option<Outcome>) {
        let Ok(_permit) = self.calls.acquire().await else {
            let closed = Outcome::Retry {
                code: String::new(),
                detail: "the stream is stopping".into(),
                retry_after: None,
            };
            return (pending, Some(closed));
        };
        let outcomes: Vec<Outcome> =
            futures_util::future::join_all(pending.iter().map(|u| self.sink.send(&u.msg))).await;
        let mut left = Vec::new();
        let mut last = None;
        for (u, o) in pending.into_iter().zip(outcomes) {
            match o {
                Outcome::Delivered { .. } => self.figures.written.add(u.records),
                Outcome::Retry { .. } => {
                    left.push(u);
                    last = Some(o);
                }
                Outcome::GiveUp { code, detail }
                    if self.delivery == Delivery::PerRecord
                        && RECORD_FAULTS.contains(&code.as_str()) =>
                {
                    self.skip(&code, &detail);
                }
                // Anything else a sink gives up on (authorization, configuration, a function
                // answering 4xx, a missing bucket) is about the sink, not the record: the
                // batch waits for it.
                Outcome::GiveUp { code, detail } => {
                    left.push(u);
                    last = Some(Outcome::Retry {
                        code,
                        detail,
                        retry_after: None,
                    });
                }
            }
        }
        (left, last)
    }
}

/// One sink call's message and how many source records it carries.
struct Unit {
    msg: Message,
    records: u64,
}

/// How a batch's messages reach the sink.
#[derive(Debug, Clone, PartialEq)]
enum Delivery {
    /// One call per message (Kafka: one record per event).
    PerRecord,
    /// One call per batch whose body is a JSON array of the messages (FunctionGraph).
    JsonArray,
    /// One object per source partition of the batch, a message per line (OBS), named
    /// `{path}/{time_format of the first record's time}/{partition}-{first}-{last}.json`
    /// after the offsets the batch spans there: a batch written again overwrites itself.
    Objects { path: String, time_format: String },
}

/// The OBS objects of a batch: its `messages` (index into `records`, message) grouped by the
/// source partition of their records. The offsets in a key are the batch's first and last
/// record of that partition, filtered ones included, so they depend only on the batch.
fn objects(
    records: &[SourceRecord],
    messages: Vec<(usize, Message)>,
    path: &str,
    time_format: &str,
) -> Vec<Unit> {
    let mut parts: std::collections::BTreeMap<String, ObjectPart> =
        std::collections::BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        let (partition, offset) = match &r.position {
            Some(p) => (p.partition.clone(), p.offset),
            // Stream sources all say where a record is; an index keeps keys apart otherwise.
            None => ("-".to_string(), i as i64),
        };
        let e = parts.entry(partition).or_insert_with(|| ObjectPart {
            first: offset,
            last: offset,
            time: event_time(r),
            lines: Vec::new(),
            records: 0,
        });
        e.first = e.first.min(offset);
        e.last = e.last.max(offset);
    }
    for (i, m) in messages {
        let partition = match &records[i].position {
            Some(p) => p.partition.clone(),
            None => "-".to_string(),
        };
        if let Some(e) = parts.get_mut(&partition) {
            e.lines.extend_from_slice(&m.payload);
            e.lines.push(b'\n');
            e.records += 1;
        }
    }
    parts
        .into_iter()
        .filter(|(_, e)| e.records > 0)
        .map(|(partition, e)| {
            let dir = sinks::obs::time_dir(time_format, e.time.as_deref());
            Unit {
                msg: Message {
                    payload: e.lines.into(),
                    key: Some(sinks::obs::object_key(
                        path, &dir, &partition, e.first, e.last,
                    )),
                    ..Message::default()
                },
                records: e.records,
            }
        })
        .collect()
}

/// One partition's share of a batch on its way to an object.
struct ObjectPart {
    /// The batch's first and last offsets in the partition.
    first: i64,
    last: i64,
    /// The first record's event `time`.
    time: Option<String>,
    /// The messages, one per line.
    lines: Vec<u8>,
    records: u64,
}

/// The `time` of a record's event, if it has one.
fn event_time(r: &SourceRecord) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Time {
        time: Option<String>,
    }
    serde_json::from_slice::<Time>(&r.payload).ok()?.time
}

/// Sets a stream's lag back to "not known" when its run ends.
struct LagReset(sources::LagGauge);

impl Drop for LagReset {
    fn drop(&mut self) {
        self.0
            .store(sources::LAG_UNKNOWN, std::sync::atomic::Ordering::Relaxed);
    }
}

#[async_trait::async_trait]
impl DurableLog for StreamWriter {
    async fn append(&self, records: &[SourceRecord]) -> Result<(), AppendError> {
        let mut pending = self.units(records);
        self.figures.read.add(records.len() as u64);
        let mut failures: u32 = 0;
        while !pending.is_empty() {
            let (left, last) = self.attempt(pending).await;
            pending = left;
            let Some(Outcome::Retry {
                code,
                detail,
                retry_after,
            }) = last
            else {
                break;
            };
            failures += 1;
            let why = format!("the sink failed ({code}): {detail}");
            self.figures.sink_failures.add(1);
            if let Ok(mut last) = self.figures.last_error.lock() {
                *last = Some(why.clone());
            }
            if failures == 1 {
                self.failing.fetch_add(1, Ordering::SeqCst);
            }
            self.ready.not_ready(ErrorInfo {
                code: crate::supervisor::NOT_RUN_CODE.to_string(),
                message: why.clone(),
            });
            if self.retries.is_some_and(|max| failures > max) {
                self.failing.fetch_sub(1, Ordering::SeqCst);
                return Err(AppendError(format!(
                    "{why}; gave up after {} retries (batch_window.time)",
                    failures - 1
                )));
            }
            tokio::time::sleep(backoff::delay(failures, retry_after).min(MAX_RETRY_DELAY)).await;
        }
        if failures > 0 && self.failing.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.ready.ready();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openeg_connectors::sources::{Batch, BatchToken, Health, SourceError};
    use serde_json::json;

    /// A test source: hands out `n` one-record batches (tokens 1..=n), up to 4 at once, and
    /// records the acknowledgements.
    struct TestSource {
        n: u64,
        handed: u64,
        acked: Arc<std::sync::Mutex<Vec<u64>>>,
    }

    #[async_trait::async_trait]
    impl Source for TestSource {
        async fn next_batch(&mut self, _max: usize) -> Result<Batch, SourceError> {
            if self.handed == self.n {
                std::future::pending::<()>().await;
            }
            self.handed += 1;
            let r = SourceRecord::default();
            Ok(Batch::new(BatchToken(self.handed), vec![r]))
        }

        async fn ack(&mut self, ack: Ack) -> Result<(), SourceError> {
            self.acked.lock().unwrap().push(ack.token().0);
            Ok(())
        }

        fn health(&self) -> Health {
            Health::Healthy
        }

        fn concurrent_batches(&self) -> usize {
            4
        }
    }

    /// A test log whose appends wait until released.
    struct HeldLog {
        started: AtomicUsize,
        release: tokio::sync::Notify,
        released: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl DurableLog for HeldLog {
        async fn append(&self, _records: &[SourceRecord]) -> Result<(), AppendError> {
            self.started.fetch_add(1, Ordering::SeqCst);
            while !self.released.load(Ordering::SeqCst) {
                let notified = self.release.notified();
                if self.released.load(Ordering::SeqCst) {
                    break;
                }
                notified.await;
            }
            Ok(())
        }
    }

    async fn held_drive(
        release_after: Option<Duration>,
    ) -> (Vec<u64>, Duration, Result<(), ErrorInfo>) {
        let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut source = TestSource {
            n: 3,
            handed: 0,
            acked: acked.clone(),
        };
        let log = Arc::new(HeldLog {
            started: AtomicUsize::new(0),
            release: tokio::sync::Notify::new(),
            released: false.into(),
        });
        let (tx, rx) = tokio::sync::watch::channel(false);
        let l = log.clone();
        let run = tokio::spawn(async move {
            let r = drive(&mut source, l, 1, StopSignal(rx)).await;
            (source, r)
        });
        while log.started.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let stopped_at = tokio::time::Instant::now();
        tx.send_replace(true);
        if let Some(after) = release_after {
            tokio::time::sleep(after).await;
            log.released.store(true, Ordering::SeqCst);
            log.release.notify_waiters();
        }
        let (_source, r) = run.await.unwrap();
        let took = stopped_at.elapsed();
        let mut acks = acked.lock().unwrap().clone();
        acks.sort_unstable();
        (acks, took, r)
    }

    #[tokio::test]
    async fn a_stopped_drive_lets_the_batches_in_the_writer_finish_and_acknowledges_them() {
        let (acks, took, r) = held_drive(Some(Duration::from_millis(300))).await;
        assert!(r.is_ok());
        assert_eq!(acks, vec![1, 2, 3], "every batch in the writer at the stop");
        assert!(
            took >= Duration::from_millis(300) && took < DRAIN,
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopped_drive_waits_for_a_writer_that_hangs_no_longer_than_its_drain_time() {
        let (acks, took, r) = held_drive(None).await;
        assert!(r.is_ok());
        assert!(acks.is_empty(), "nothing finished: nothing acknowledged");
        assert_eq!(took, DRAIN);
    }

    #[test]
    fn sink_plans_of_stream_documents() {
        let k = SinkPlan::of(&json!({"name": "HC.Kafka", "sink_kafka": {"topic": "t",
            "connectionId": "c", "keyTransform": [{"type": "CONSTANT", "value": "k"}]}}));
        assert_eq!(
            k,
            Ok(SinkPlan::Kafka {
                connection_id: "c".into(),
                topic: "t".into(),
                key_transform: Some(json!({"type": "CONSTANT", "value": "k"})),
            })
        );
        let f = SinkPlan::of(&json!({"sink_fg": {"urn": "u", "invoke_type": "ASYNC"}}));
        assert!(matches!(
            f,
            Ok(SinkPlan::FunctionGraph {
                invoke_type: InvokeType::Async,
                ..
            })
        ));
        assert!(SinkPlan::of(&json!({"sink_fg": {}})).is_err());
        let o = SinkPlan::of(&json!({"sink_obs": {"obs_bucket": "b", "obs_path": "p",
            "time_format": "yyyy", "access_key": "ak", "secret_key": "the-sk"}}))
        .unwrap();
        assert!(matches!(&o, SinkPlan::Obs(p) if p.bucket == "b" && p.path == "p"));
        assert!(!format!("{o:?}").contains("the-sk"));
        assert!(SinkPlan::of(&json!({"sink_obs": {"time_format": "yyyy"}})).is_err());
        // Stored documents hold the secret key sealed; the plan signs with the plain one.
        let secrets =
            SecretBox::from_key_base64("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=").unwrap();
        let stored = json!({"sink_obs": {"obs_bucket": "b", "time_format": "yyyy",
            "access_key": "ak", "secret_key": secrets.encrypt("the-sk")}});
        assert_ne!(stored["sink_obs"]["secret_key"], json!("the-sk"));
        let plan = SinkPlan::of_stored(&stored, &secrets).unwrap();
        assert!(matches!(&plan, SinkPlan::Obs(p) if p.secret_key == "the-sk"));
    }

    #[test]
    fn rules_filter_transform_and_key() {
        let rules = Rules {
            matcher: {
                let mut b = MatcherBuilder::new();
                b.add_rule(
                    &json!({"data": {"n": [{"op": "NumberGreaterThan", "value": 1}]}}),
                    false,
                )
                .unwrap();
                Some(b.build())
            },
            transform: Some(
                CompiledTransform::compile(
                    &json!({"type": "VARIABLE", "value": "{\"n\":\"$.data.n\"}",
                            "template": "{\"v\":${n}}"}),
                    TransformUse::Payload,
                )
                .unwrap(),
            ),
            key: None,
        };
        let rec = |n: i64| SourceRecord {
            payload: json!({"specversion": "1.0", "id": "x", "source": "s", "type": "t",
                "data": {"n": n}})
            .to_string()
            .into(),
            key: Some("k1".into()),
            ..SourceRecord::default()
        };
        assert!(rules.message(&rec(1)).unwrap().is_none());
        let m = rules.message(&rec(5)).unwrap().unwrap();
        assert_eq!(&m.payload[..], br#"{"v":5}"#);
        assert_eq!(m.key.as_deref(), Some("k1"));
        let garbled = SourceRecord {
            payload: "{not json".into(),
            ..SourceRecord::default()
        };
        assert!(rules.message(&garbled).is_err());
    }
}
