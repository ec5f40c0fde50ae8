//! Delivery state and traces (issue #5): the durable work queue of the router and the data
//! behind the trace and metrics APIs.
//!
//! Model: when the router has matched a log record it calls [`DeliveryStore::record_routed`]
//! once, in one transaction, with a [`TraceRow`] per (event, matched subscription) (or one
//! with an empty subscription when nothing matched) and a [`NewDelivery`] per (event, target).
//! Only then does it commit its log offset, so every event below the committed offset is
//! either delivered, given up, or a durable pending delivery: a restart loses nothing.
//!
//! Deliveries are claimed with a lease: `next_at` is the earliest time anyone may attempt it.
//! The router sets `next_at = now + lease` on insert because it makes the first attempt
//! itself; the retry poller claims due rows with [`DeliveryStore::claim_due`], which pushes
//! `next_at` forward by the lease in the same statement, so two pollers (or a poller and the
//! router) never attempt the same delivery at once, and a crashed attempt is retried after
//! its lease expires.
//!
//! Replays are idempotent: a router that crashed after [`DeliveryStore::record_routed`] but
//! before committing its offset routes the same events again; trace rows are unique per
//! (project, channel, offset, subscription) and deliveries per (project, channel, offset,
//! subscription, target), so the replay adds nothing and returns the existing delivery ids.
//!
//! Time windows: trace listings take `start_ms <= received_at <= end_ms` (both ends, as the
//! API's `start_time`/`end_time`); metrics take `start_ms <= received_at < end_ms` so that
//! buckets `[start + k·period, start + (k+1)·period)` never overlap.

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::{Result, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Not yet attempted, or the attempt outcome is not recorded yet.
    Pending,
    /// Failed at least once; will be attempted again at `next_at`.
    Retrying,
    Succeeded,
    /// Given up (not retriable, retries exhausted, or too old).
    Failed,
    /// Given up at the target, and its dead-letter record is not published yet: due like a
    /// retry (the claimer publishes the record instead of attempting the target). Ends as
    /// `Failed` with [`DeadLetterState::Sent`] or [`DeadLetterState::Dropped`].
    DeadLetter,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "PENDING",
            DeliveryStatus::Retrying => "RETRYING",
            DeliveryStatus::Succeeded => "SUCCEEDED",
            DeliveryStatus::Failed => "FAILED",
            DeliveryStatus::DeadLetter => "DEAD_LETTER",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PENDING" => Some(DeliveryStatus::Pending),
            "RETRYING" => Some(DeliveryStatus::Retrying),
            "SUCCEEDED" => Some(DeliveryStatus::Succeeded),
            "FAILED" => Some(DeliveryStatus::Failed),
            "DEAD_LETTER" => Some(DeliveryStatus::DeadLetter),
            _ => None,
        }
    }
}

/// Where a delivery's dead-letter record stands. Stored in one text column (`dead_letter`):
/// `''` when none was due, else `STATE/tries`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeadLetterState {
    /// The target succeeded, is still being retried, or has no dead-letter queue.
    #[default]
    None,
    /// Due (the delivery is [`DeliveryStatus::DeadLetter`]).
    Pending,
    /// Published to the dead-letter topic.
    Sent,
    /// Not published within the dead-letter window (`docs/limits.md`): dropped and logged.
    Dropped,
}

impl DeadLetterState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterState::None => "",
            DeadLetterState::Pending => "PENDING",
            DeadLetterState::Sent => "SENT",
            DeadLetterState::Dropped => "DROPPED",
        }
    }
}

/// A delivery's dead-letter state and how many publishes of its record failed so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeadLetter {
    pub state: DeadLetterState,
    pub tries: u32,
}

impl DeadLetter {
    pub(crate) fn encode(self) -> String {
        match self.state {
            DeadLetterState::None => String::new(),
            s => format!("{}/{}", s.as_str(), self.tries),
        }
    }

    pub(crate) fn decode(text: &str) -> DeadLetter {
        let (state, tries) = text.split_once('/').unwrap_or((text, "0"));
        let state = match state {
            "PENDING" => DeadLetterState::Pending,
            "SENT" => DeadLetterState::Sent,
            "DROPPED" => DeadLetterState::Dropped,
            _ => DeadLetterState::None,
        };
        DeadLetter {
            state,
            tries: tries.parse().unwrap_or(0),
        }
    }
}

/// One publish of a delivery's dead-letter record, to record with
/// [`RecordBatch::dead_letters`]. Leaves `attempts` and the target's attempts (`recent`) as
/// they were: they are what the record reports (`eg-attempts`, `eg-last-status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterUpdate {
    pub id: i64,
    /// `DeadLetter` (try again at `next_at`) or `Failed` (sent or dropped).
    pub status: DeliveryStatus,
    pub next_at: i64,
    pub dead_letter: DeadLetter,
}

/// One (event, subscription) row of ListTracedEvents; `subscription_id == ""` when the event
/// matched nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRow {
    pub project_id: String,
    pub channel_id: String,
    /// Log offset of the event in the channel's log.
    pub offset: u64,
    pub event_id: String,
    pub source_name: String,
    /// `CUSTOM` or `OFFICIAL`.
    pub source_provider: String,
    pub event_type: String,
    /// Epoch ms when the event was accepted.
    pub received_at: i64,
    pub subscription_id: String,
    pub subscription_name: String,
    /// Size of the event (its JSON text as logged) in bytes: ListPubMetrics `event_size`.
    pub event_size: u64,
    /// Milliseconds from acceptance to routing: ListPubMetrics `process_time`.
    pub process_ms: i64,
}

/// A delivery to create: one (event, target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub project_id: String,
    pub channel_id: String,
    pub offset: u64,
    pub event_id: String,
    pub received_at: i64,
    pub subscription_id: String,
    pub subscription_name: String,
    pub target_id: String,
    pub target_name: String,
    /// Earliest attempt time by someone other than the creator (the lease), epoch ms.
    pub next_at: i64,
}

/// The id of a delivery passed to [`DeliveryStore::record_routed`], and whether this call
/// created it (`false`: it already existed, the batch is a replay after a crash, and whoever
/// holds its lease, or the retry poller, attempts it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routed {
    pub id: i64,
    pub created: bool,
}

/// One attempt to record with [`DeliveryStore::record_attempts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptUpdate {
    pub id: i64,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_at: i64,
    pub attempt: Attempt,
}

/// A delivery created by the router's write-behind path ([`DeliveryStore::record_batch`]):
/// either still pending (`attempt == None`: it is left to the retry poller), or already
/// attempted once by the router, in which case it is created with that outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedDelivery {
    /// Identity and `next_at` (the due time when `Pending`/`Retrying`).
    pub delivery: NewDelivery,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub attempt: Option<Attempt>,
}

/// Everything the router and its attempts produced since the last write, written in one
/// transaction by [`DeliveryStore::record_batch`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordBatch {
    pub traces: Vec<TraceRow>,
    pub created: Vec<CreatedDelivery>,
    pub updates: Vec<AttemptUpdate>,
    /// Applied after `updates` (an update of a missing delivery is ignored).
    pub dead_letters: Vec<DeadLetterUpdate>,
}

impl RecordBatch {
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn len(&self) -> usize {
        self.traces.len() + self.created.len() + self.updates.len() + self.dead_letters.len()
    }
    pub fn clear(&mut self) {
        self.traces.clear();
        self.created.clear();
        self.updates.clear();
        self.dead_letters.clear();
    }
}

/// One attempt, as shown by ShowDetailOfEventTrace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Epoch ms when the attempt started.
    pub at: i64,
    pub success: bool,
    pub latency_ms: i64,
    /// HTTP status or broker text; `""` for network failures.
    pub code: String,
}

/// A stored delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Store-assigned id.
    pub id: i64,
    pub project_id: String,
    pub channel_id: String,
    pub offset: u64,
    pub event_id: String,
    pub received_at: i64,
    pub subscription_id: String,
    pub subscription_name: String,
    pub target_id: String,
    pub target_name: String,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    pub next_at: i64,
    /// The newest attempts, newest first, at most [`KEPT_ATTEMPTS`].
    pub recent: Vec<Attempt>,
    pub updated_at: i64,
    pub dead_letter: DeadLetter,
}

/// Attempts kept per delivery for ShowDetailOfEventTrace (`docs/limits.md`).
pub const KEPT_ATTEMPTS: usize = 3;

/// Filters of ListTracedEvents: exact matches, AND-ed, in one channel,
/// `start_ms <= received_at <= end_ms`. Order: `received_at` descending (newest first), then
/// offset descending, then `subscription_id` ascending (the rows of one event stay together).
/// `limit == 0` returns an empty page (the total is still counted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceQuery {
    pub channel_id: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub event_id: Option<String>,
    pub source_name: Option<String>,
    pub event_type: Option<String>,
    pub subscription_name: Option<String>,
    pub offset: u64,
    pub limit: u64,
}

/// Aggregates for ListPubMetrics / ListSubMetrics, per time bucket:
/// `start_ms <= received_at < end_ms`, bucket `k` covers `[start_ms + k·period_ms,
/// start_ms + (k+1)·period_ms)`. `period_ms` must be positive.
///
/// Filters: `channel_id` applies to both; `source_name` to publish metrics only (deliveries do
/// not record the source); `subscription_id` and `target_id` to delivery metrics only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsQuery {
    pub project_id: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Bucket size in ms.
    pub period_ms: i64,
    pub channel_id: Option<String>,
    pub source_name: Option<String>,
    pub subscription_id: Option<String>,
    pub target_id: Option<String>,
}

/// Publish-side aggregates of one bucket (from trace rows, each event counted once).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PubBucket {
    pub start_ms: i64,
    pub events: u64,
    /// Sum / max / min of [`TraceRow::event_size`] over the events.
    pub size_sum: u64,
    pub size_max: u64,
    pub size_min: u64,
    /// Sum / max / min of [`TraceRow::process_ms`] over the events.
    pub process_sum_ms: u64,
    pub process_max_ms: u64,
    pub process_min_ms: u64,
}

/// Delivery-side counts of one bucket (from deliveries, bucketed by `received_at`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubBucket {
    pub start_ms: i64,
    pub deliveries: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Succeeded after more than one attempt.
    pub retry_succeeded: u64,
    /// Failed after more than one attempt.
    pub retry_failed: u64,
    /// Sum over deliveries of (attempts − 1).
    pub retries: u64,
    /// Sum / max / min of the latest attempt latency (ms) over deliveries with an attempt.
    pub latency_sum_ms: u64,
    pub latency_max_ms: u64,
    pub latency_min_ms: u64,
}

/// Every delivery store also keeps the offset pairs of replication jobs ([`crate::MirrorStore`]),
/// so the engine reaches both through its one delivery handle.
#[async_trait]
pub trait DeliveryStore: crate::mirror::MirrorStore + Send + Sync + 'static {
    /// Writes the trace rows and creates the deliveries of routed events, atomically; returns
    /// the ids of the new deliveries in input order. New deliveries are `Pending` with
    /// `attempts = 0` and an empty `recent`. A trace row or delivery that already exists (a
    /// replay after a crash, see the module doc) is left unchanged, and for such a delivery
    /// the id of the existing one is returned (so a caller may attempt it again: at least
    /// once). Offsets above `i64::MAX` are rejected.
    async fn record_routed(
        &self,
        traces: &[TraceRow],
        deliveries: &[NewDelivery],
    ) -> Result<Vec<Routed>>;

    /// The router's write-behind batch, in one transaction: trace rows and created
    /// deliveries are inserted unless they exist already (a replay keeps the stored row, as
    /// in [`DeliveryStore::record_routed`]), then `updates` are applied in order as by
    /// [`DeliveryStore::record_attempts`] (an update of a missing delivery is ignored).
    /// Offsets above `i64::MAX` are rejected.
    async fn record_batch(&self, batch: &RecordBatch) -> Result<()>;

    /// The batched form of [`DeliveryStore::record_attempt`]: every update in one transaction
    /// (one commit, one fsync), in order. Returns per update whether the delivery existed.
    async fn record_attempts(&self, updates: &[AttemptUpdate]) -> Result<Vec<bool>>;

    /// Makes due now every `Pending` delivery with a future `next_at` and every delivery
    /// still claimed by `node` (a claim of [`DeliveryStore::claim_due`] never answered by an
    /// outcome); returns how many. A node calls it at start: those leases were held by the
    /// process that just stopped, so waiting for them to expire only delays delivery (a
    /// retry claimed at a crash would otherwise wait out the whole lease). Claims of other
    /// nodes are left alone.
    async fn release_pending(&self, now_ms: i64, node: &str) -> Result<u64>;

    /// Records one attempt of delivery `id`: new status, attempts count and next attempt time;
    /// `attempt` is prepended to `recent` (keeping [`KEPT_ATTEMPTS`]) and its latency becomes
    /// the delivery's latest latency for [`SubBucket`]. `updated_at` is set to the store's
    /// clock. False if the delivery no longer exists (e.g. its subscription was deleted).
    async fn record_attempt(
        &self,
        id: i64,
        status: DeliveryStatus,
        attempts: u32,
        next_at: i64,
        attempt: &Attempt,
    ) -> Result<bool>;

    /// Claims up to `limit` deliveries in Pending/Retrying with `next_at <= now_ms`, oldest
    /// `next_at` first, setting their `next_at = now_ms + lease_ms` atomically (safe with
    /// several concurrent claimers: no delivery is returned twice within one lease). Returned
    /// in claim order (previous `next_at`, then id); each carries its new `next_at`. The
    /// claim records `node` as its holder until an outcome ([`DeliveryStore::record_attempt`],
    /// the batched forms, [`DeliveryStore::postpone`]) ends it.
    async fn claim_due(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
        node: &str,
    ) -> Result<Vec<Delivery>>;

    /// ListTracedEvents: (total, page).
    async fn list_traces(&self, project_id: &str, q: &TraceQuery) -> Result<(u64, Vec<TraceRow>)>;

    /// The newest event with this id in the project (optionally in one channel): its trace
    /// rows (one per matched subscription, or the single unmatched row). Several events may
    /// share an id (different sources); "newest" = largest `received_at`, then offset, then
    /// channel id, and only that event's rows (same channel and offset) are returned, ordered
    /// by `subscription_id`. Empty if unknown.
    async fn event_traces(
        &self,
        project_id: &str,
        channel_id: Option<&str>,
        event_id: &str,
    ) -> Result<Vec<TraceRow>>;

    /// Every delivery of one event (channel + offset), ordered by (subscription_id, target_id).
    async fn event_deliveries(
        &self,
        project_id: &str,
        channel_id: &str,
        offset: u64,
    ) -> Result<Vec<Delivery>>;

    /// Moves the claim of Pending/Retrying deliveries `ids` to `next_at` (a claimer that could
    /// not attempt them gives them back early instead of holding them for a whole lease);
    /// returns how many were changed.
    async fn postpone(&self, ids: &[i64], next_at: i64) -> Result<u64>;

    /// Deletes the Pending/Retrying deliveries of a subscription (it was deleted); returns how many.
    async fn drop_pending_for_subscription(
        &self,
        project_id: &str,
        subscription_id: &str,
    ) -> Result<u64>;

    /// Deletes trace rows and finished deliveries with `received_at < cutoff_ms`, and pending
    /// ones older than that too (they are past the maximum event age); returns rows removed
    /// (trace rows + deliveries). SQLite deletes in chunks so the router is not blocked.
    async fn purge_before(&self, cutoff_ms: i64) -> Result<u64>;

    /// Publish metrics per bucket (events counted once each, by `received_at`); only buckets
    /// with data are returned, ascending.
    async fn pub_metrics(&self, q: &MetricsQuery) -> Result<Vec<PubBucket>>;

    /// Delivery metrics per bucket (by `received_at`); only buckets with data, ascending.
    async fn sub_metrics(&self, q: &MetricsQuery) -> Result<Vec<SubBucket>>;
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by both backends.

/// Statuses a claimer may pick up; written as a literal in SQL so the partial index applies.
pub(crate) const DUE_STATUSES_SQL: &str = "('PENDING', 'RETRYING', 'DEAD_LETTER')";

/// Columns of a delivery, in the order of [`DeliveryTuple`].
pub(crate) const DELIVERY_COLS: &str = "id, project_id, channel_id, log_offset, event_id, \
    received_at, subscription_id, subscription_name, target_id, target_name, status, attempts, \
    next_at, recent, updated_at, dead_letter";

/// Columns of a trace row, in the order of [`TraceTuple`].
pub(crate) const TRACE_COLS: &str = "project_id, channel_id, log_offset, event_id, source_name, \
    source_provider, event_type, received_at, subscription_id, subscription_name, event_size, \
    process_ms";

pub(crate) type DeliveryTuple = (
    i64,
    String,
    String,
    i64,
    String,
    i64,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    String,
    i64,
    String,
);

pub(crate) type TraceTuple = (
    String,
    String,
    i64,
    String,
    String,
    String,
    String,
    i64,
    String,
    String,
    i64,
    i64,
);

/// Key columns returned by the delivery insert: (id, project, channel, offset, sub, target).
pub(crate) type InsertedKey = (i64, String, String, i64, String, String);

pub(crate) fn delivery_from_tuple(t: DeliveryTuple) -> Result<Delivery> {
    let status = DeliveryStatus::parse(&t.10)
        .ok_or_else(|| StoreError::Backend("unknown delivery status in database".into()))?;
    Ok(Delivery {
        id: t.0,
        project_id: t.1,
        channel_id: t.2,
        offset: u64::try_from(t.3).unwrap_or(0),
        event_id: t.4,
        received_at: t.5,
        subscription_id: t.6,
        subscription_name: t.7,
        target_id: t.8,
        target_name: t.9,
        status,
        attempts: u32::try_from(t.11).unwrap_or(0),
        next_at: t.12,
        recent: decode_recent(&t.13)?,
        updated_at: t.14,
        dead_letter: match DeadLetter::decode(&t.15) {
            // Entered by an attempt's outcome, which does not write the column.
            d if status == DeliveryStatus::DeadLetter => DeadLetter {
                state: DeadLetterState::Pending,
                tries: d.tries,
            },
            d => d,
        },
    })
}

pub(crate) fn trace_from_tuple(t: TraceTuple) -> TraceRow {
    TraceRow {
        project_id: t.0,
        channel_id: t.1,
        offset: u64::try_from(t.2).unwrap_or(0),
        event_id: t.3,
        source_name: t.4,
        source_provider: t.5,
        event_type: t.6,
        received_at: t.7,
        subscription_id: t.8,
        subscription_name: t.9,
        event_size: u64::try_from(t.10).unwrap_or(0),
        process_ms: t.11,
    }
}

/// Offsets are stored as signed 64-bit integers.
pub(crate) fn offset_to_i64(offset: u64) -> Result<i64> {
    i64::try_from(offset).map_err(|_| StoreError::Backend("log offset out of range".into()))
}

/// Rejects offsets that do not fit the column before anything is written.
pub(crate) fn check_offsets(traces: &[TraceRow], deliveries: &[NewDelivery]) -> Result<()> {
    for o in traces
        .iter()
        .map(|t| t.offset)
        .chain(deliveries.iter().map(|d| d.offset))
    {
        offset_to_i64(o)?;
    }
    Ok(())
}

pub(crate) fn check_period(q: &MetricsQuery) -> Result<()> {
    if q.period_ms <= 0 {
        return Err(StoreError::Backend(
            "metrics period must be positive".into(),
        ));
    }
    Ok(())
}

/// Aggregate columns of delivery metrics, after the bucket expression; portable SQL (the
/// casts keep PostgreSQL's `SUM(bigint)` from returning `numeric`).
pub(crate) const SUB_AGGREGATES: &str = " AS bucket, COUNT(*), \
    CAST(COALESCE(SUM(CASE WHEN status = 'SUCCEEDED' THEN 1 ELSE 0 END), 0) AS BIGINT), \
    CAST(COALESCE(SUM(CASE WHEN status IN ('FAILED', 'DEAD_LETTER') THEN 1 ELSE 0 END), 0) \
        AS BIGINT), \
    CAST(COALESCE(SUM(CASE WHEN status = 'SUCCEEDED' AND attempts > 1 THEN 1 ELSE 0 END), 0) \
        AS BIGINT), \
    CAST(COALESCE(SUM(CASE WHEN status IN ('FAILED', 'DEAD_LETTER') AND attempts > 1 \
        THEN 1 ELSE 0 END), 0) \
        AS BIGINT), \
    CAST(COALESCE(SUM(CASE WHEN attempts > 1 THEN attempts - 1 ELSE 0 END), 0) AS BIGINT), \
    CAST(COALESCE(SUM(last_latency_ms), 0) AS BIGINT), \
    CAST(COALESCE(MAX(last_latency_ms), 0) AS BIGINT), \
    CAST(COALESCE(MIN(last_latency_ms), 0) AS BIGINT)";

/// (bucket, deliveries, succeeded, failed, retry_succeeded, retry_failed, retries,
/// latency sum, max, min).
pub(crate) type SubTuple = (i64, i64, i64, i64, i64, i64, i64, i64, i64, i64);

/// Aggregates of ListPubMetrics (after `SELECT (received_at - start) / period`) over a
/// derived table with one row per event (`received_at`, `event_size`, `process_ms`), in the
/// order of [`PubTuple`].
pub(crate) const PUB_AGGREGATES: &str = " AS bucket, COUNT(*), \
     CAST(COALESCE(SUM(event_size), 0) AS BIGINT), \
    CAST(COALESCE(MAX(event_size), 0) AS BIGINT), CAST(COALESCE(MIN(event_size), 0) AS BIGINT), \
    CAST(COALESCE(SUM(process_ms), 0) AS BIGINT), CAST(COALESCE(MAX(process_ms), 0) AS BIGINT), \
    CAST(COALESCE(MIN(process_ms), 0) AS BIGINT)";

/// (bucket, events, size sum, max, min, process sum, max, min).
pub(crate) type PubTuple = (i64, i64, i64, i64, i64, i64, i64, i64);

pub(crate) fn pub_bucket(q: &MetricsQuery, t: PubTuple) -> PubBucket {
    let u = |v: i64| u64::try_from(v).unwrap_or(0);
    PubBucket {
        start_ms: bucket_start(q, t.0),
        events: u(t.1),
        size_sum: u(t.2),
        size_max: u(t.3),
        size_min: u(t.4),
        process_sum_ms: u(t.5),
        process_max_ms: u(t.6),
        process_min_ms: u(t.7),
    }
}

pub(crate) fn bucket_start(q: &MetricsQuery, bucket: i64) -> i64 {
    q.start_ms
        .saturating_add(bucket.saturating_mul(q.period_ms))
}

pub(crate) fn sub_bucket(q: &MetricsQuery, t: SubTuple) -> SubBucket {
    let u = |v: i64| u64::try_from(v).unwrap_or(0);
    SubBucket {
        start_ms: bucket_start(q, t.0),
        deliveries: u(t.1),
        succeeded: u(t.2),
        failed: u(t.3),
        retry_succeeded: u(t.4),
        retry_failed: u(t.5),
        retries: u(t.6),
        latency_sum_ms: u(t.7),
        latency_max_ms: u(t.8),
        latency_min_ms: u(t.9),
    }
}

/// One attempt as stored in the `recent` JSON array (short member names: many rows).
pub(crate) fn attempt_json(a: &Attempt) -> Value {
    json!({"at": a.at, "ok": a.success, "ms": a.latency_ms, "code": a.code})
}

pub(crate) fn decode_recent(text: &str) -> Result<Vec<Attempt>> {
    let bad = || StoreError::Backend("stored delivery attempts are malformed".into());
    let v: Value = serde_json::from_str(text).map_err(|_| bad())?;
    let arr = v.as_array().ok_or_else(bad)?;
    arr.iter()
        .map(|a| {
            Ok(Attempt {
                at: a.get("at").and_then(Value::as_i64).ok_or_else(bad)?,
                success: a.get("ok").and_then(Value::as_bool).ok_or_else(bad)?,
                latency_ms: a.get("ms").and_then(Value::as_i64).ok_or_else(bad)?,
                code: a
                    .get("code")
                    .and_then(Value::as_str)
                    .ok_or_else(bad)?
                    .to_owned(),
            })
        })
        .collect()
}

/// `recent` after prepending `attempt`: newest first, at most [`KEPT_ATTEMPTS`].
pub(crate) fn prepend_recent(stored: &str, attempt: &Attempt) -> Result<String> {
    let mut v = Vec::with_capacity(KEPT_ATTEMPTS);
    v.push(attempt_json(attempt));
    let old: Value = serde_json::from_str(stored)
        .map_err(|_| StoreError::Backend("stored delivery attempts are malformed".into()))?;
    if let Value::Array(old) = old {
        v.extend(old.into_iter().take(KEPT_ATTEMPTS - 1));
    }
    Ok(Value::Array(v).to_string())
}

/// Unique key of a delivery: (project, channel, offset, subscription, target).
type DeliveryKey<'a> = (&'a str, &'a str, i64, &'a str, &'a str);

/// Maps rows returned by an `INSERT … ON CONFLICT DO NOTHING RETURNING` back to input
/// positions by their unique key, so nothing depends on the order of RETURNING.
pub(crate) struct IdMap<'a> {
    deliveries: &'a [NewDelivery],
    positions: HashMap<DeliveryKey<'a>, Vec<usize>>,
    ids: Vec<Option<Routed>>,
}

impl<'a> IdMap<'a> {
    pub(crate) fn new(deliveries: &'a [NewDelivery]) -> Self {
        let mut positions: HashMap<DeliveryKey<'a>, Vec<usize>> =
            HashMap::with_capacity(deliveries.len());
        for (i, d) in deliveries.iter().enumerate() {
            positions.entry(key_of(d)).or_default().push(i);
        }
        IdMap {
            deliveries,
            positions,
            ids: vec![None; deliveries.len()],
        }
    }

    pub(crate) fn set(&mut self, row: &InsertedKey) {
        self.set_row(row, true);
    }

    /// A row that existed before this call (a replay): its id, not created.
    pub(crate) fn set_existing(&mut self, row: &InsertedKey) {
        self.set_row(row, false);
    }

    fn set_row(&mut self, row: &InsertedKey, created: bool) {
        let key = (
            row.1.as_str(),
            row.2.as_str(),
            row.3,
            row.4.as_str(),
            row.5.as_str(),
        );
        if let Some(ps) = self.positions.get(&key) {
            for &p in ps {
                self.ids[p] = Some(Routed { id: row.0, created });
            }
        }
    }

    /// Sets the id of input position `pos` and of every other position with the same key.
    pub(crate) fn set_at(&mut self, pos: usize, id: i64) {
        let key = key_of(&self.deliveries[pos]);
        if let Some(ps) = self.positions.get(&key) {
            for &p in ps {
                self.ids[p] = Some(Routed { id, created: false });
            }
        }
    }

    /// The input positions still without an id (deliveries that already existed).
    pub(crate) fn missing_positions(&self) -> Vec<usize> {
        (0..self.ids.len())
            .filter(|&i| self.ids[i].is_none())
            .collect()
    }

    pub(crate) fn has(&self, pos: usize) -> bool {
        self.ids.get(pos).is_some_and(Option::is_some)
    }

    /// Every input delivery still without an id (they already existed), in input order.
    pub(crate) fn missing(&self) -> Vec<&'a NewDelivery> {
        self.ids
            .iter()
            .zip(self.deliveries)
            .filter(|(id, _)| id.is_none())
            .map(|(_, d)| d)
            .collect()
    }

    pub(crate) fn finish(self) -> Result<Vec<Routed>> {
        self.ids
            .into_iter()
            .map(|id| id.ok_or_else(|| StoreError::Backend("delivery id not returned".into())))
            .collect()
    }
}

pub(crate) fn key_of(d: &NewDelivery) -> DeliveryKey<'_> {
    (
        d.project_id.as_str(),
        d.channel_id.as_str(),
        i64::try_from(d.offset).unwrap_or(i64::MAX),
        d.subscription_id.as_str(),
        d.target_id.as_str(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att(at: i64) -> Attempt {
        Attempt {
            at,
            success: at % 2 == 0,
            latency_ms: at * 10,
            code: format!("c{at}"),
        }
    }

    #[test]
    fn recent_keeps_newest_first() {
        let mut s = "[]".to_string();
        for i in 1..=5 {
            s = prepend_recent(&s, &att(i)).unwrap();
        }
        assert_eq!(decode_recent(&s).unwrap(), vec![att(5), att(4), att(3)]);
        assert!(decode_recent("{").is_err());
        assert!(decode_recent("[{\"at\":1}]").is_err());
    }

    #[test]
    fn statuses_roundtrip() {
        for s in [
            DeliveryStatus::Pending,
            DeliveryStatus::Retrying,
            DeliveryStatus::Succeeded,
            DeliveryStatus::Failed,
        ] {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(DeliveryStatus::parse("x"), None);
    }
}
