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

use crate::Result;
use async_trait::async_trait;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Not yet attempted, or the attempt outcome is not recorded yet.
    Pending,
    /// Failed at least once; will be attempted again at `next_at`.
    Retrying,
    Succeeded,
    /// Given up (not retriable, retries exhausted, or too old).
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "PENDING",
            DeliveryStatus::Retrying => "RETRYING",
            DeliveryStatus::Succeeded => "SUCCEEDED",
            DeliveryStatus::Failed => "FAILED",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PENDING" => Some(DeliveryStatus::Pending),
            "RETRYING" => Some(DeliveryStatus::Retrying),
            "SUCCEEDED" => Some(DeliveryStatus::Succeeded),
            "FAILED" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
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
}

/// Attempts kept per delivery for ShowDetailOfEventTrace (`LIMITS.md` §6).
pub const KEPT_ATTEMPTS: usize = 3;

/// Filters of ListTracedEvents (`API.md` §3.3). Newest first; ties by (offset, subscription_id).
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

/// Aggregates for ListPubMetrics / ListSubMetrics, per time bucket.
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

/// Publish-side counts of one bucket (from trace rows, one count per event).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PubBucket {
    pub start_ms: i64,
    pub events: u64,
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

#[async_trait]
pub trait DeliveryStore: Send + Sync + 'static {
    /// Writes the trace rows and creates the deliveries of routed events, atomically; returns
    /// the ids of the new deliveries in input order.
    async fn record_routed(&self, traces: &[TraceRow], deliveries: &[NewDelivery]) -> Result<Vec<i64>>;

    /// Records one attempt of delivery `id`: new status, attempts count and next attempt time;
    /// `attempt` is prepended to `recent` (keeping [`KEPT_ATTEMPTS`]). False if the delivery no
    /// longer exists (e.g. its subscription was deleted).
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
    /// several concurrent claimers: no delivery is returned twice within one lease).
    async fn claim_due(&self, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<Delivery>>;

    /// ListTracedEvents: (total, page).
    async fn list_traces(&self, project_id: &str, q: &TraceQuery) -> Result<(u64, Vec<TraceRow>)>;

    /// The newest event with this id in the project (optionally in one channel): its trace
    /// rows (one per matched subscription, or the single unmatched row). Several events may
    /// share an id (different sources); "newest" = largest `received_at`, then offset, and
    /// only that event's rows (same channel and offset) are returned. Empty if unknown.
    async fn event_traces(&self, project_id: &str, channel_id: Option<&str>, event_id: &str) -> Result<Vec<TraceRow>>;

    /// Every delivery of one event (channel + offset), ordered by (subscription_id, target_id).
    async fn event_deliveries(&self, project_id: &str, channel_id: &str, offset: u64) -> Result<Vec<Delivery>>;

    /// Deletes the Pending/Retrying deliveries of a subscription (it was deleted); returns how many.
    async fn drop_pending_for_subscription(&self, project_id: &str, subscription_id: &str) -> Result<u64>;

    /// Deletes trace rows and finished deliveries with `received_at < cutoff_ms`, and pending
    /// ones older than that too (they are past the maximum event age); returns rows removed.
    async fn purge_before(&self, cutoff_ms: i64) -> Result<u64>;

    /// Publish metrics per bucket (events counted once each, by `received_at`); only buckets
    /// with data are returned, ascending.
    async fn pub_metrics(&self, q: &MetricsQuery) -> Result<Vec<PubBucket>>;

    /// Delivery metrics per bucket (by `received_at`); only buckets with data, ascending.
    async fn sub_metrics(&self, q: &MetricsQuery) -> Result<Vec<SubBucket>>;
}
