//! One delivery attempt: render the transforms, send, and record the outcome durably.

use crate::metrics::Counter;
use crate::routes::{Destination, TargetRoute};
use crate::{now_ms, Engine, MAX_HOPS};
use bytes::Bytes;
use openeg_connectors::backoff;
use openeg_connectors::{EventAttributes, Message, Outcome};
use openeg_rules::Rendered;
use openeg_store::delivery::{
    Attempt, AttemptUpdate, CreatedDelivery, DeadLetterUpdate, DeliveryStatus, DeliveryStore,
    NewDelivery, RecordBatch, TraceRow,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// A delivery to attempt.
pub struct Job {
    /// The stored delivery, or `Unrecorded` for a first attempt made before any row exists
    /// (the router's fast path): its outcome then creates the row.
    pub stored: Stored,
    pub route: Arc<TargetRoute>,
    pub event: Arc<Event>,
    /// Attempts already made.
    pub attempts: u32,
    pub received_at: i64,
}

/// A routed event: its JSON text as logged, parsed only when a target needs more than the
/// text (a transform other than ORIGINAL, a key or subject, a forward).
pub struct Event {
    raw: Bytes,
    parsed: OnceLock<Value>,
}

impl Event {
    /// `raw` is one event's JSON, as the log holds it (validated when it was published).
    pub fn new(raw: Bytes) -> Event {
        Event {
            raw,
            parsed: OnceLock::new(),
        }
    }

    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    pub fn value(&self) -> &Value {
        self.parsed
            .get_or_init(|| serde_json::from_slice(&self.raw).unwrap_or(Value::Null))
    }
}

pub enum Stored {
    /// A stored delivery this node holds the lease of until `lease_until` (epoch ms): its
    /// attempt must end before then, or another claim could attempt it too.
    Claimed { id: i64, lease_until: i64 },
    /// Not in the store yet; the ticket keeps the router's committed offset below the event
    /// until the outcome is handed to the recorder.
    Unrecorded(Box<NewDelivery>, Ticket),
}

/// Log offsets of a router's events whose unrecorded attempts are still running. The router
/// commits no offset above the lowest of them, nor above its replay's progress.
#[derive(Default)]
pub struct Inflight {
    running: Mutex<BTreeMap<u64, usize>>,
    /// The next offset the replay of events logged before the start has not finished.
    pub(crate) replayed: Option<Arc<std::sync::atomic::AtomicU64>>,
}

impl Inflight {
    /// In-flight offsets of a router whose replay has reached `replayed` so far.
    pub(crate) fn with_replay(replayed: Arc<std::sync::atomic::AtomicU64>) -> Self {
        Inflight {
            running: Mutex::default(),
            replayed: Some(replayed),
        }
    }

    pub fn ticket(self: &Arc<Self>, offset: u64) -> Ticket {
        let mut m = self.running.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(offset).or_insert(0) += 1;
        Ticket {
            inflight: self.clone(),
            offset,
        }
    }

    /// The lowest offset still in flight or not yet replayed, or `next` when none is.
    pub fn low_water(&self, next: u64) -> u64 {
        let replayed = self
            .replayed
            .as_ref()
            .map_or(next, |r| r.load(std::sync::atomic::Ordering::Acquire));
        let m = self.running.lock().unwrap_or_else(|p| p.into_inner());
        m.keys().next().map_or(next, |&o| o.min(next)).min(replayed)
    }
}

/// Released when dropped (the attempt's outcome was handed to the recorder).
pub struct Ticket {
    inflight: Arc<Inflight>,
    offset: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut m = self
            .inflight
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.offset) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.offset);
            }
        }
    }
}

/// Concurrency slot of one target: in-flight permits and the number of queued attempts.
pub struct Slot {
    pub sem: Semaphore,
    pub queued: AtomicUsize,
    /// The permits it was made with.
    permits: usize,
}

/// In-flight attempts allowed to a target: the engine's default, or more when its sink
/// batches concurrent sends (`Sink::max_in_flight`).
fn permits(engine: &Engine, route: &TargetRoute) -> usize {
    let default = engine.cfg.target_concurrency;
    match &route.destination {
        Destination::Sink(s) => s.max_in_flight().map_or(default, |n| n.max(default)),
        _ => default,
    }
}

fn slot(engine: &Engine, route: &TargetRoute) -> Arc<Slot> {
    let permits = permits(engine, route);
    let mut slots = match engine.slots.lock() {
        Ok(s) => s,
        Err(p) => p.into_inner(),
    };
    let slot = slots.entry(route.slot_key.clone()).or_insert_with(|| {
        Arc::new(Slot {
            sem: Semaphore::new(permits),
            queued: AtomicUsize::new(0),
            permits,
        })
    });
    // A target updated to another kind gets a slot of its size; attempts holding the old one
    // finish on it.
    if slot.permits != permits {
        *slot = Arc::new(Slot {
            sem: Semaphore::new(permits),
            queued: AtomicUsize::new(0),
            permits,
        });
    }
    slot.clone()
}

/// Whether the target can take one more queued attempt (a slow target never blocks a
/// router: beyond the queue bound its deliveries wait in the store for the retry poller).
pub fn has_room(engine: &Engine, route: &TargetRoute) -> bool {
    slot(engine, route).queued.load(Ordering::Relaxed) < engine.cfg.target_queue
}

/// Queues an attempt on the target's slot.
pub fn spawn(engine: Arc<Engine>, job: Job) {
    let s = slot(&engine, &job.route);
    s.queued.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        let permit = s.sem.acquire().await;
        s.queued.fetch_sub(1, Ordering::Relaxed);
        if permit.is_ok() {
            attempt(&engine, job).await;
        }
    });
}

fn render(route: &TargetRoute, ev: &Event) -> Message {
    // Kafka records carry the event's attributes as headers besides the payload.
    let wants_event = matches!(&route.destination, Destination::Sink(s) if s.wants_event());
    let attributes = || wants_event.then(|| EventAttributes::of(ev.value()));
    // ORIGINAL sends the logged text as it is: the event as published, with insignificant
    // whitespace removed (`openeg_api::event::check`), so the same JSON value as rendering
    // the parsed event would give, without a parse and a serialization.
    if route.payload.is_original() && route.key.is_none() && route.subject.is_none() {
        return Message {
            payload: ev.raw().clone(),
            key: None,
            subject: None,
            event: attributes(),
        };
    }
    let event = ev.value();
    let payload = match route.payload.render(event) {
        Rendered::Text(s) => Bytes::from(s),
        Rendered::None => Bytes::new(),
    };
    Message {
        payload,
        key: route.key.as_ref().and_then(|k| k.render_text(event)),
        subject: route.subject.as_ref().and_then(|s| s.render_text(event)),
        event: attributes(),
    }
}

fn hop_count(ev: &Value) -> u64 {
    match ev.get("eghopcount") {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

/// HC.EG: the output must be a CloudEvent; it is republished into the target channel. A
/// channel of another project takes it only when that channel's `cross_account` switch and
/// policy allow the subscription's account, as for PutEvents from that account.
async fn forward(
    engine: &Engine,
    from_project: &str,
    project_id: &str,
    channel_id: &str,
    source_event: &Value,
    payload: &[u8],
) -> Outcome {
    let give_up = |detail: String| Outcome::GiveUp {
        code: String::new(),
        detail,
    };
    let Ok(mut ev) = serde_json::from_slice::<Value>(payload) else {
        return give_up("the transformed event is not JSON".into());
    };
    let hops = hop_count(source_event).max(hop_count(&ev)) + 1;
    if hops > MAX_HOPS {
        return give_up(format!("the event already crossed {MAX_HOPS} channels"));
    }
    if let Some(m) = ev.as_object_mut() {
        m.insert("eghopcount".into(), Value::String(hops.to_string()));
    }
    if let Err(e) = openeg_api::event::validate(&ev) {
        return give_up(format!("not a valid CloudEvent: {}", e.msg));
    }
    let foreign = from_project != project_id;
    match engine
        .meta
        .get(project_id, openeg_store::Kind::Channel, channel_id)
        .await
    {
        Ok(Some(ch)) if foreign => {
            let account = engine
                .cfg
                .project_domains
                .get(from_project)
                .map(String::as_str)
                .unwrap_or("");
            let view = serde_json::json!({
                "name": ch.name,
                "cross_account": ch.body.get("cross_account"),
                "policy": ch.body.get("policy"),
            });
            if !openeg_api::channel_policy::allows_put_events(&view, project_id, account) {
                return not_cross_account();
            }
        }
        Ok(Some(_)) => {}
        // Another project's missing channel reads like a refused one: its channels cannot be
        // probed through traces.
        Ok(None) if foreign => return not_cross_account(),
        Ok(None) => return give_up("the target channel does not exist".into()),
        Err(e) => {
            return Outcome::Retry {
                code: String::new(),
                detail: e.to_string(),
                retry_after: None,
            }
        }
    }
    match engine.publish(project_id, channel_id, &[&ev]).await {
        Ok(()) => Outcome::Delivered { code: "200".into() },
        Err(e) => Outcome::Retry {
            code: String::new(),
            detail: e.to_string(),
            retry_after: None,
        },
    }
}

/// The refusal of a cross-account forward; the code is what the trace shows
/// (`deliverRspCode`), so it carries the reason.
fn not_cross_account() -> Outcome {
    Outcome::GiveUp {
        code: NOT_CROSS_ACCOUNT.into(),
        detail: NOT_CROSS_ACCOUNT.into(),
    }
}

pub const NOT_CROSS_ACCOUNT: &str = "EG.00512000: the target channel does not accept events \
                                     from this account (cross_account and policy)";

/// How long an attempt of a claimed delivery may run: its lease, less the time the outcome
/// needs to reach the store. `None` when too little is left to try at all: the attempt is
/// not made, and the delivery is claimed again once its lease has run out.
pub(crate) fn lease_budget(lease_until: i64, now: i64) -> Option<Duration> {
    let left = lease_until - now - RECORD_MARGIN_MS;
    (left >= MIN_ATTEMPT_MS).then(|| Duration::from_millis(left as u64))
}

/// Time kept back from a lease for recording the outcome before the lease ends.
const RECORD_MARGIN_MS: i64 = 5_000;
/// Shortest attempt worth starting.
const MIN_ATTEMPT_MS: i64 = 1_000;

/// Makes one attempt and records it.
pub async fn attempt(engine: &Engine, job: Job) {
    let started = now_ms();
    let t0 = Instant::now();
    let route = &job.route;
    // A claimed delivery that waited in its target's queue must not outlive its lease: an
    // attempt past it could run twice (another claim may have been made meanwhile).
    let budget = match job.stored {
        Stored::Claimed { lease_until, .. } => match lease_budget(lease_until, started) {
            Some(b) => Some(b),
            None => {
                engine.metrics.lease_expired.add(1);
                tracing::debug!(subscription_id = %route.subscription_id, target_id = %route.target_id,
                    "claim expired while queued; left to the next claim");
                return;
            }
        },
        Stored::Unrecorded(..) => None,
    };
    let msg = render(route, &job.event);
    let send = send(engine, route, &job.event, &msg);
    let outcome = match budget {
        None => send.await,
        Some(b) => match tokio::time::timeout(b, send).await {
            Ok(o) => o,
            Err(_) => Outcome::Retry {
                code: String::new(),
                detail: "the attempt outlasted its lease".into(),
                retry_after: None,
            },
        },
    };
    finish(engine, job, outcome, started, t0.elapsed()).await;
}

/// Sends one rendered message to the target.
async fn send(engine: &Engine, route: &TargetRoute, event: &Event, msg: &Message) -> Outcome {
    match &route.destination {
        Destination::Sink(sink) => sink.send(msg).await,
        Destination::Channel {
            from_project,
            project_id,
            channel_id,
        } => {
            forward(
                engine,
                from_project,
                project_id,
                channel_id,
                event.value(),
                &msg.payload,
            )
            .await
        }
        Destination::Unavailable(reason) => Outcome::GiveUp {
            code: String::new(),
            detail: reason.clone(),
        },
    }
}

/// Classifies an attempt's outcome (delivered, retry at a backoff time, or failed) and hands
/// it to the recorder.
async fn finish(engine: &Engine, job: Job, outcome: Outcome, started: i64, latency: Duration) {
    let route = &job.route;
    let n = job.attempts + 1;
    let now = now_ms();
    let too_old = now - job.received_at > backoff::MAX_EVENT_AGE.as_millis() as i64;
    let (status, next_at) = match &outcome {
        Outcome::Delivered { .. } => (DeliveryStatus::Succeeded, 0),
        Outcome::Retry { retry_after, .. } if job.attempts < route.retry_times && !too_old => {
            let d = backoff::delay(n, *retry_after);
            (DeliveryStatus::Retrying, now + d.as_millis() as i64)
        }
        // Given up: its dead-letter record is published by the retry poller, at once.
        _ if route.dead_letter.is_some() => (DeliveryStatus::DeadLetter, now),
        _ => (DeliveryStatus::Failed, 0),
    };
    engine.metrics.record_attempt(
        &outcome,
        status,
        latency,
        now - job.received_at,
        job.attempts > 0,
    );
    if let Outcome::GiveUp { code, detail } | Outcome::Retry { code, detail, .. } = &outcome {
        engine
            .failure_log
            .attempt_failed(route, status, code, detail, n);
    }
    let attempt = Attempt {
        at: started,
        success: outcome.is_success(),
        latency_ms: latency.as_millis() as i64,
        code: outcome.code().to_string(),
    };
    let record = match job.stored {
        Stored::Claimed { id, .. } => RecorderMsg::Update(AttemptUpdate {
            id,
            status,
            attempts: n,
            next_at,
            attempt,
        }),
        Stored::Unrecorded(d, ticket) => RecorderMsg::Created(
            CreatedDelivery {
                delivery: NewDelivery { next_at, ..*d },
                status,
                attempts: n,
                attempt: Some(attempt),
            },
            ticket,
        ),
    };
    if engine.recorder.send(record).await.is_err() {
        // The recorder is gone (shutting down): a stored delivery is attempted again when its
        // lease expires, an unrecorded one when its event is routed again after the restart.
        tracing::debug!("attempt not recorded: shutting down");
    }
}

/// INFO lines for failed attempts, rate-limited: at most one per target per
/// [`FAILURE_LOG_INTERVAL`], carrying how many failures went unlogged since. The line names
/// the subscription, target, status, response code and reason; never the target's URL or
/// headers (they may hold credentials).
#[derive(Default)]
pub struct FailureLog(Mutex<HashMap<String, (Instant, u64)>>);

pub const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Targets remembered at most; beyond it, entries older than the interval are forgotten.
const FAILURE_LOG_TARGETS: usize = 10_000;

impl FailureLog {
    /// `Some(failures not logged since the last line)` when a line for `key` is due at `now`.
    pub fn due(&self, key: &str, now: Instant) -> Option<u64> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= FAILURE_LOG_TARGETS && !m.contains_key(key) {
            m.retain(|_, (at, _)| now.duration_since(*at) < FAILURE_LOG_INTERVAL);
        }
        match m.get_mut(key) {
            Some((at, n)) if now.duration_since(*at) < FAILURE_LOG_INTERVAL => {
                *n += 1;
                None
            }
            Some(e) => Some(std::mem::replace(e, (now, 0)).1),
            None => {
                if m.len() < FAILURE_LOG_TARGETS {
                    m.insert(key.to_string(), (now, 0));
                }
                Some(0)
            }
        }
    }

    fn attempt_failed(
        &self,
        route: &TargetRoute,
        status: DeliveryStatus,
        code: &str,
        reason: &str,
        attempt: u32,
    ) {
        let Some(unlogged) = self.due(&route.slot_key, Instant::now()) else {
            return;
        };
        tracing::info!(
            subscription_id = %route.subscription_id,
            target_id = %route.target_id,
            target = %route.target_name,
            status = status.as_str(),
            code,
            reason,
            attempt,
            unlogged_failures = unlogged,
            "delivery attempt failed"
        );
    }
}

/// What the router and the attempts hand to the recorder.
pub(crate) enum RecorderMsg {
    /// Trace rows of a routed batch and the deliveries left to the retry poller.
    Routed {
        traces: Vec<TraceRow>,
        pending: Vec<NewDelivery>,
    },
    /// The first attempt of an unrecorded delivery; its ticket is released once written.
    Created(CreatedDelivery, Ticket),
    Update(AttemptUpdate),
    DeadLetter(DeadLetterUpdate),
    /// Answered once everything sent before it is committed to the store.
    Flush(oneshot::Sender<()>),
}

/// Writes everything that arrived while the previous write ran in one store transaction
/// (one fsync). A failed write is retried until it succeeds: dropping it could lose the
/// only record of a delivery below a committed offset, and waiting stalls the routers
/// (their sends block) instead.
pub(crate) async fn run_recorder(
    delivery: Arc<dyn DeliveryStore>,
    mut rx: mpsc::Receiver<RecorderMsg>,
    rejected: Arc<Counter>,
) {
    let mut batch = RecordBatch::default();
    let mut flushes = Vec::new();
    let mut tickets = Vec::new();
    while let Some(first) = rx.recv().await {
        let linger_until = tokio::time::Instant::now() + RECORD_LINGER;
        let mut next = Some(first);
        while let Some(r) = next.take() {
            match r {
                RecorderMsg::Routed { traces, pending } => {
                    batch.traces.extend(traces);
                    batch
                        .created
                        .extend(pending.into_iter().map(|d| CreatedDelivery {
                            delivery: d,
                            status: DeliveryStatus::Pending,
                            attempts: 0,
                            attempt: None,
                        }));
                }
                RecorderMsg::Created(c, t) => {
                    batch.created.push(c);
                    tickets.push(t);
                }
                RecorderMsg::Update(u) => batch.updates.push(u),
                RecorderMsg::DeadLetter(u) => batch.dead_letters.push(u),
                RecorderMsg::Flush(tx) => flushes.push(tx),
            }
            if batch.len() >= RECORD_BATCH {
                break;
            }
            next = match rx.try_recv() {
                Ok(r) => Some(r),
                // Nothing queued: linger briefly unless someone waits for a flush, so the
                // store sees a few large transactions (few fsyncs competing with the log's)
                // rather than one per attempt.
                Err(_) if flushes.is_empty() => tokio::time::timeout_at(linger_until, rx.recv())
                    .await
                    .ok()
                    .flatten(),
                Err(_) => None,
            };
        }
        write_batch(&*delivery, &mut batch, &rejected).await;
        batch.clear();
        tickets.clear();
        for f in flushes.drain(..) {
            let _ = f.send(());
        }
    }
}

/// Writes a batch, retrying until it is stored. The recorder serves every channel of every
/// tenant, so a batch that keeps failing is split: one record the store rejects for its
/// content (a text PostgreSQL refuses, say) must not hold back everyone else's.
pub(crate) async fn write_batch(
    delivery: &dyn DeliveryStore,
    batch: &mut RecordBatch,
    rejected: &Counter,
) {
    let mut pause = Duration::from_millis(100);
    let mut failures = 0;
    loop {
        let Err(e) = delivery.record_batch(batch).await else {
            return;
        };
        failures += 1;
        tracing::warn!(rows = batch.len(), error = %e, "recording deliveries failed; retrying");
        if failures >= ISOLATE_AFTER && isolate(delivery, batch, rejected).await {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// Whole-batch failures before the batch is written record by record.
const ISOLATE_AFTER: u32 = 3;

/// Writes `batch` one record per transaction. A record that fails alone but is accepted once
/// its text is sanitized is rejected for its content: it is written sanitized, marked failed
/// with the store's reason (shown in its trace), and counted. A record that fails even
/// sanitized means the store itself is failing: it and everything after it stay in `batch`
/// for the next retry and `false` is returned. Rewriting what a failed batch attempt may have
/// half-written is harmless: every write is idempotent.
async fn isolate(
    delivery: &dyn DeliveryStore,
    batch: &mut RecordBatch,
    rejected: &Counter,
) -> bool {
    let mut singles = split(std::mem::take(batch)).into_iter();
    while let Some(one) = singles.next() {
        let Err(e) = delivery.record_batch(&one).await else {
            continue;
        };
        let reason = clean_text(&format!("the store rejected this record: {e}"), 200);
        match delivery.record_batch(&quarantine(&one, &reason)).await {
            Ok(()) => {
                rejected.add(1);
                tracing::error!(%reason, "a delivery record was rejected by the store; stored sanitized and marked failed");
            }
            Err(_) => {
                for rest in std::iter::once(one).chain(singles) {
                    batch.traces.extend(rest.traces);
                    batch.created.extend(rest.created);
                    batch.updates.extend(rest.updates);
                    batch.dead_letters.extend(rest.dead_letters);
                }
                return false;
            }
        }
    }
    true
}

/// One batch per record, in order.
fn split(batch: RecordBatch) -> Vec<RecordBatch> {
    let RecordBatch {
        traces,
        created,
        updates,
        dead_letters,
    } = batch;
    let mut out =
        Vec::with_capacity(traces.len() + created.len() + updates.len() + dead_letters.len());
    out.extend(traces.into_iter().map(|t| RecordBatch {
        traces: vec![t],
        ..Default::default()
    }));
    out.extend(created.into_iter().map(|c| RecordBatch {
        created: vec![c],
        ..Default::default()
    }));
    out.extend(updates.into_iter().map(|u| RecordBatch {
        updates: vec![u],
        ..Default::default()
    }));
    out.extend(dead_letters.into_iter().map(|u| RecordBatch {
        dead_letters: vec![u],
        ..Default::default()
    }));
    out
}

/// Text without control characters, at most `max` characters.
pub(crate) fn clean_text(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// The record with every free text sanitized and any delivery marked failed with `reason`.
fn quarantine(one: &RecordBatch, reason: &str) -> RecordBatch {
    let t = |s: &str| clean_text(s, 256);
    let failed = |at: i64| Attempt {
        at,
        success: false,
        latency_ms: 0,
        code: reason.to_string(),
    };
    RecordBatch {
        traces: one
            .traces
            .iter()
            .map(|r| TraceRow {
                event_id: t(&r.event_id),
                source_name: t(&r.source_name),
                event_type: t(&r.event_type),
                subscription_name: t(&r.subscription_name),
                ..r.clone()
            })
            .collect(),
        created: one
            .created
            .iter()
            .map(|c| CreatedDelivery {
                delivery: NewDelivery {
                    event_id: t(&c.delivery.event_id),
                    subscription_name: t(&c.delivery.subscription_name),
                    target_name: t(&c.delivery.target_name),
                    next_at: 0,
                    ..c.delivery.clone()
                },
                status: DeliveryStatus::Failed,
                attempts: c.attempts,
                attempt: Some(failed(c.attempt.as_ref().map_or_else(now_ms, |a| a.at))),
            })
            .collect(),
        updates: one
            .updates
            .iter()
            .map(|u| AttemptUpdate {
                status: DeliveryStatus::Failed,
                next_at: 0,
                attempt: failed(u.attempt.at),
                ..u.clone()
            })
            .collect(),
        // No free text: what a store rejects here is not the record's content.
        dead_letters: one.dead_letters.clone(),
    }
}

/// Waits until everything handed to the recorder so far is in the store.
pub(crate) async fn flush(engine: &Engine) -> bool {
    let (tx, rx) = oneshot::channel();
    engine.recorder.send(RecorderMsg::Flush(tx)).await.is_ok() && rx.await.is_ok()
}

pub(crate) const RECORD_BATCH: usize = 4096;
/// How long the recorder waits for more work before writing a partial batch.
const RECORD_LINGER: Duration = Duration::from_millis(10);

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that only declares how many attempts it wants in flight.
    struct Pipelined(Option<usize>);

    #[async_trait::async_trait]
    impl openeg_connectors::Sink for Pipelined {
        fn max_in_flight(&self) -> Option<usize> {
            self.0
        }
        async fn send(&self, _: &Message) -> Outcome {
            Outcome::Delivered { code: "200".into() }
        }
    }

    fn route(destination: Destination) -> TargetRoute {
        let original = serde_json::json!({"type": "ORIGINAL"});
        TargetRoute {
            subscription_id: "s".into(),
            subscription_name: "s".into(),
            target_id: "t".into(),
            target_name: "HC.Kafka".into(),
            retry_times: 0,
            payload: openeg_rules::CompiledTransform::compile(
                &original,
                openeg_rules::TransformUse::Payload,
            )
            .unwrap(),
            key: None,
            subject: None,
            dead_letter: None,
            destination,
            slot_key: "s/t".into(),
        }
    }

    #[tokio::test]
    async fn slots_are_sized_by_the_sink() {
        let (engine, _, dir) = crate::routes::tests::engine(crate::EngineConfig::default()).await;
        let default = engine.cfg.target_concurrency;
        let plain = route(Destination::Unavailable("x".into()));
        assert_eq!(slot(&engine, &plain).sem.available_permits(), default);
        // A batching sink gets its own bound; one asking for less keeps the default.
        let kafka = route(Destination::Sink(Box::new(Pipelined(Some(1024)))));
        assert_eq!(slot(&engine, &kafka).sem.available_permits(), 1024);
        let small = route(Destination::Sink(Box::new(Pipelined(Some(2)))));
        assert_eq!(slot(&engine, &small).sem.available_permits(), default);
        // The same target kept: the same slot.
        assert!(Arc::ptr_eq(&slot(&engine, &small), &slot(&engine, &small)));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn low_water_is_the_lowest_running_offset() {
        let f = Arc::new(Inflight::default());
        assert_eq!(
            f.low_water(10),
            10,
            "nothing running: everything below next"
        );
        let a = f.ticket(3);
        let b = f.ticket(3);
        let c = f.ticket(7);
        assert_eq!(f.low_water(10), 3);
        drop(a);
        assert_eq!(f.low_water(10), 3, "offset 3 still has a running attempt");
        drop(b);
        assert_eq!(f.low_water(10), 7);
        assert_eq!(f.low_water(5), 5, "never above next");
        drop(c);
        assert_eq!(f.low_water(10), 10);
        assert!(
            f.running.lock().unwrap().is_empty(),
            "released offsets leave no entry"
        );
    }

    #[test]
    fn commits_stay_below_the_replay() {
        let replayed = Arc::new(std::sync::atomic::AtomicU64::new(4));
        let f = Arc::new(Inflight::with_replay(replayed.clone()));
        assert_eq!(
            f.low_water(100),
            4,
            "the replay has done offsets below 4 only"
        );
        let t = f.ticket(2);
        assert_eq!(f.low_water(100), 2);
        drop(t);
        replayed.store(100, std::sync::atomic::Ordering::Release);
        assert_eq!(f.low_water(100), 100);
        let _t = f.ticket(120);
        assert_eq!(f.low_water(130), 100, "never above the replay's end either");
    }

    #[test]
    fn an_attempt_never_outlives_its_lease() {
        let now = 1_000_000;
        // Plenty left: the attempt may run until the margin before the lease ends.
        assert_eq!(
            lease_budget(now + 60_000, now),
            Some(Duration::from_millis(60_000 - RECORD_MARGIN_MS as u64))
        );
        // Too little left (the claim waited in a full target queue): not attempted at all.
        assert_eq!(lease_budget(now + RECORD_MARGIN_MS + 999, now), None);
        assert_eq!(lease_budget(now - 1, now), None);
        assert!(lease_budget(now + RECORD_MARGIN_MS + MIN_ATTEMPT_MS, now).is_some());
    }

    #[tokio::test]
    async fn a_slow_target_is_cut_at_the_lease_budget() {
        let now = now_ms();
        let budget = lease_budget(now + RECORD_MARGIN_MS + 1_100, now).unwrap();
        let slow = tokio::time::sleep(Duration::from_secs(300));
        let t0 = Instant::now();
        assert!(tokio::time::timeout(budget, slow).await.is_err());
        assert!(t0.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn failed_attempt_lines_are_rate_limited_per_target() {
        let log = FailureLog::default();
        let t0 = Instant::now();
        assert_eq!(log.due("s/a", t0), Some(0), "the first failure is logged");
        assert_eq!(log.due("s/a", t0 + Duration::from_secs(1)), None);
        assert_eq!(log.due("s/a", t0 + Duration::from_secs(2)), None);
        assert_eq!(
            log.due("s/b", t0),
            Some(0),
            "targets are limited separately"
        );
        assert_eq!(
            log.due("s/a", t0 + FAILURE_LOG_INTERVAL),
            Some(2),
            "the next line says how many went unlogged"
        );
        // Bounded: beyond the target limit, stale entries are forgotten first.
        let later = t0 + FAILURE_LOG_INTERVAL * 3;
        for i in 0..FAILURE_LOG_TARGETS + 10 {
            log.due(&format!("k{i}"), later);
        }
        assert!(log.0.lock().unwrap().len() <= FAILURE_LOG_TARGETS);
    }

    #[test]
    fn quarantined_records_are_clean_and_failed() {
        let d = NewDelivery {
            project_id: "p".into(),
            channel_id: "c".into(),
            offset: 7,
            event_id: "a\u{0}b".into(),
            received_at: 1,
            subscription_id: "s".into(),
            subscription_name: "sub".into(),
            target_id: "t".into(),
            target_name: "WEBHOOK".into(),
            next_at: 99,
        };
        let batch = RecordBatch {
            traces: vec![],
            created: vec![CreatedDelivery {
                delivery: d.clone(),
                status: DeliveryStatus::Succeeded,
                attempts: 1,
                attempt: None,
            }],
            updates: vec![],
            dead_letters: vec![],
        };
        let singles = split(batch);
        assert_eq!(singles.len(), 1);
        let q = quarantine(&singles[0], "the store rejected this record: nul");
        let c = &q.created[0];
        assert_eq!(c.delivery.event_id, "ab");
        assert_eq!((c.delivery.offset, c.delivery.next_at), (7, 0));
        assert_eq!(c.status, DeliveryStatus::Failed);
        let a = c.attempt.as_ref().unwrap();
        assert!(!a.success && a.code.contains("store rejected"));
        assert_eq!(clean_text(&"x".repeat(300), 256).len(), 256);
        assert_eq!(clean_text("a\tb\u{7f}c\u{1b}", 10), "abc");
    }

    /// ORIGINAL sends the logged text instead of rendering: that is only right if rendering
    /// the parsed event gives the same JSON value, and the same bytes when the publisher
    /// sent it in serde's compact form.
    #[test]
    fn logged_text_is_what_original_renders() {
        let t = openeg_rules::CompiledTransform::compile(
            &serde_json::json!({"type": "ORIGINAL"}),
            openeg_rules::TransformUse::Payload,
        )
        .unwrap();
        assert!(t.is_original());
        let events = [
            serde_json::json!({"id": "1", "source": "s", "specversion": "1.0", "type": "t",
                "data": {"z": 1, "a": [1.5, -0.0, 1e300, 12345678901234567890u64],
                         "u": "é\u{2028}\"\\\n\u{1}"}}),
            serde_json::json!({"type": "t", "id": "2", "specversion": "1.0", "source": "s",
                "ext": true, "n": null, "data": "text"}),
        ];
        for ev in events {
            // As PutEvents logs it.
            let text = serde_json::to_string(&ev).unwrap();
            let logged = Bytes::from(openeg_api::event::check(&text).result.unwrap());
            let e = Event::new(logged.clone());
            assert_eq!(e.value(), &ev);
            match t.render(e.value()) {
                Rendered::Text(s) => assert_eq!(s.as_bytes(), &logged[..]),
                Rendered::None => panic!("ORIGINAL renders text"),
            }
        }
        // Sent with whitespace, escapes and a non-canonical number: the same value.
        let sent = r#"{ "id": "3", "source": "s", "specversion": "1.0", "type": "t",
            "data": {"n": 2.50, "s": "\u00e9 x"} }"#;
        let logged = openeg_api::event::check(sent).result.unwrap();
        let e = Event::new(Bytes::from(logged));
        let want: Value = serde_json::from_str(sent).unwrap();
        assert_eq!(e.value(), &want);
        match t.render(e.value()) {
            Rendered::Text(s) => assert_eq!(serde_json::from_str::<Value>(&s).unwrap(), want),
            Rendered::None => panic!("ORIGINAL renders text"),
        }
    }
}
