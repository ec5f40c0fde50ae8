//! Process-wide data-plane counters and latency histograms, rendered in the Prometheus text
//! format by `GET /metrics`. Lock-free: atomics only.

use openeg_connectors::Outcome;
use openeg_store::delivery::DeliveryStatus;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds in seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum in microseconds.
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Default::default(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{b}\"}} {}",
                self.counts[i].load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

#[derive(Default)]
pub struct Metrics {
    pub ingested: Counter,
    pub matched: Counter,
    pub delivered: Counter,
    pub failed: Counter,
    pub retried: Counter,
    pub attempts: Counter,
    pub attempt_latency: Histogram,
    pub publish_to_deliver: Histogram,
    /// One durable append of a publish request's events (group commit included).
    pub append_latency: Histogram,
    /// Events gone from the log before their router passed them.
    pub expired_unrouted: Counter,
    /// Claimed deliveries not attempted because their lease ran out while queued.
    pub lease_expired: Counter,
    /// Records the store rejected for their content, written sanitized and marked failed
    /// (shared with the recorder, which starts before the engine).
    pub store_rejected: std::sync::Arc<Counter>,
    /// Dead-letter records published, publishes that failed (retried), records dropped at
    /// the end of the dead-letter window.
    pub dead_letters_sent: Counter,
    pub dead_letter_failures: Counter,
    pub dead_letters_dropped: Counter,
    /// Events read back (retries, ShowDetailOfEvent) from the recent-events cache of a
    /// shared log, and from the log itself.
    pub event_cache_hits: Counter,
    pub event_cache_misses: Counter,
    /// This node's name (set once at start), for `openeg_node_info`.
    pub(crate) node: std::sync::OnceLock<String>,
    /// Per partition this node routes now, keyed (channel id, partition): events in the log
    /// its router has not passed yet.
    pub(crate) lag: std::sync::Mutex<std::collections::BTreeMap<(String, u32), u64>>,
    /// Per event stream running on this node, keyed by stream id.
    pub(crate) streams:
        std::sync::Mutex<std::collections::BTreeMap<String, std::sync::Arc<StreamFigures>>>,
    /// Per event-router job running on this node, keyed by job id (removed when its run ends).
    pub(crate) jobs:
        std::sync::Mutex<std::collections::BTreeMap<String, std::sync::Arc<JobFigures>>>,
}

/// A side of a job (source or sink cluster) as `source_status` / `sink_status` show it.
pub const SIDE_NORMAL: &str = "NORMAL";
pub const SIDE_ABNORMAL: &str = "ABNORMAL";

/// Live positions of a running event-router job, for syncDetail and the job's side statuses.
#[derive(Default)]
pub struct JobFigures {
    /// `(status, info)` of the source cluster; `None` until the run connected or failed to.
    pub source: std::sync::Mutex<Option<(&'static str, String)>>,
    pub sink: std::sync::Mutex<Option<(&'static str, String)>>,
    /// Per source (topic, partition).
    pub partitions: std::sync::Mutex<std::collections::BTreeMap<(String, i32), PartitionFigures>>,
    /// Records copied by this run.
    pub copied: Counter,
    /// A Redis→Redis run's position (`None` for other job types).
    pub redis: std::sync::Mutex<Option<RedisFigures>>,
}

/// Where a running Redis→Redis job stands (syncDetail's Redis item).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisFigures {
    pub source_addr: String,
    pub sink_addr: String,
    /// `full` while the snapshot is copied, `incremental` while the command stream is.
    pub phase: &'static str,
    /// `syncing`, or `finish` when a `full`-only job has copied its snapshot.
    pub status: &'static str,
    /// Snapshot bytes read and the snapshot's size (when the source announced it).
    pub snapshot_read: u64,
    pub snapshot_size: Option<u64>,
    /// The source's replication offset as last read (`master_repl_offset`).
    pub source_offset: u64,
    /// The stream offset everything before which the target has applied.
    pub sink_offset: u64,
    pub source_keys: Option<u64>,
    pub sink_keys: Option<u64>,
    /// Keys and commands the target took, and refused.
    pub applied: u64,
    pub refused: u64,
}

impl RedisFigures {
    /// Bytes the target is behind: the snapshot left, or the stream behind the source.
    pub fn remaining(&self) -> u64 {
        match self.phase {
            "full" => self
                .snapshot_size
                .map(|n| n.saturating_sub(self.snapshot_read))
                .unwrap_or(0)
                .saturating_add(self.source_offset.saturating_sub(self.sink_offset)),
            _ => self.source_offset.saturating_sub(self.sink_offset),
        }
    }

    /// Progress in [0, 1]: the snapshot's share read during the full phase, then 1 once the
    /// stream has caught up (0.99 while it is behind).
    pub fn progress(&self) -> f64 {
        if self.status == "finish" {
            return 1.0;
        }
        match (self.phase, self.snapshot_size) {
            ("full", Some(n)) if n > 0 => (self.snapshot_read as f64 / n as f64).min(0.99),
            ("full", _) => 0.0,
            // Offsets count from the source's first write ever: no share is meaningful.
            _ if self.source_offset <= self.sink_offset => 1.0,
            _ => 0.99,
        }
    }
}

/// One source partition of a running job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionFigures {
    pub target_topic: String,
    /// The next source offset to copy: everything before it is copied and committed.
    pub next: i64,
    /// The source's high watermark as last read (at least `next`).
    pub high: i64,
    /// Offsets from `next` up to this hold no record to copy (a partition that ends with
    /// transaction markers): not left to copy. `next` stays the last copy's successor, which
    /// consumer-group translation relies on.
    pub empty_to: i64,
}

impl PartitionFigures {
    /// Where the copy stands as syncDetail tells it: `next`, or past an end with no record.
    pub fn position(&self) -> i64 {
        self.next.max(self.empty_to.min(self.high))
    }
}

impl JobFigures {
    pub fn set_source(&self, status: &'static str, info: impl Into<String>) {
        if let Ok(mut s) = self.source.lock() {
            *s = Some((status, info.into()));
        }
    }

    pub fn set_sink(&self, status: &'static str, info: impl Into<String>) {
        if let Ok(mut s) = self.sink.lock() {
            *s = Some((status, info.into()));
        }
    }

    /// Clears the sink's `ABNORMAL` when it came from the group sync (a copy failing keeps
    /// the sink's own note until it goes through).
    pub fn clear_sink_note(&self) {
        if let Ok(mut s) = self.sink.lock() {
            if let Some((status, why)) = s.as_ref() {
                if *status == SIDE_ABNORMAL && why.starts_with(crate::replication::GROUP_NOTE) {
                    *s = Some((SIDE_NORMAL, String::new()));
                }
            }
        }
    }

    /// Sets where `(topic, partition)` stands: `next` only moves forward, `high` is at least it.
    pub fn advance(
        &self,
        topic: &str,
        partition: i32,
        target_topic: &str,
        next: Option<i64>,
        high: Option<i64>,
    ) {
        let mut m = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        let f = m.entry((topic.to_string(), partition)).or_default();
        if f.target_topic.is_empty() {
            f.target_topic = target_topic.to_string();
        }
        if let Some(n) = next {
            f.next = f.next.max(n);
        }
        if let Some(h) = high {
            f.high = h;
        }
        f.high = f.high.max(f.next);
    }

    /// Offsets of `(topic, partition)` below `end` hold no record to copy (read at its end).
    pub fn empty_to(&self, topic: &str, partition: i32, end: i64) {
        let mut m = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = m.get_mut(&(topic.to_string(), partition)) {
            f.empty_to = f.empty_to.max(end);
        }
    }

    /// Updates the Redis position (starting from an empty one).
    pub fn redis_update(&self, f: impl FnOnce(&mut RedisFigures)) {
        let mut r = self.redis.lock().unwrap_or_else(|p| p.into_inner());
        f(r.get_or_insert_with(RedisFigures::default));
    }

    /// A copy of the Redis position.
    pub fn redis_snapshot(&self) -> Option<RedisFigures> {
        self.redis.lock().ok().and_then(|r| r.clone())
    }

    /// A copy of the partitions' figures.
    pub fn snapshot(&self) -> std::collections::BTreeMap<(String, i32), PartitionFigures> {
        self.partitions
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }
}

/// One counter of [`StreamFigures`], for rendering.
type FigureOf = fn(&StreamFigures) -> &Counter;

/// What an event stream did on this node since it was (re)configured here.
pub struct StreamFigures {
    /// Records read from the source and handed to the sink side.
    pub read: Counter,
    /// Records the filter dropped (committed, not written).
    pub filtered: Counter,
    /// Records the sink took.
    pub written: Counter,
    /// Records the sink refused for good because of the record itself.
    pub skipped: Counter,
    /// Sink calls that failed and are retried.
    pub sink_failures: Counter,
    /// The last sink failure, if any (never holds secrets: sinks' texts do not).
    pub last_error: std::sync::Mutex<Option<String>>,
    /// Records in the source after the stream's committed position, as its source last
    /// reported while running ([`openeg_connectors::sources::LAG_UNKNOWN`]: not known).
    pub lag: openeg_connectors::sources::LagGauge,
}

impl Default for StreamFigures {
    fn default() -> Self {
        StreamFigures {
            read: Counter::default(),
            filtered: Counter::default(),
            written: Counter::default(),
            skipped: Counter::default(),
            sink_failures: Counter::default(),
            last_error: std::sync::Mutex::new(None),
            lag: std::sync::Arc::new(std::sync::atomic::AtomicI64::new(
                openeg_connectors::sources::LAG_UNKNOWN,
            )),
        }
    }
}

impl StreamFigures {
    /// The consumer lag, if the source reported one.
    pub fn lag(&self) -> Option<u64> {
        u64::try_from(self.lag.load(std::sync::atomic::Ordering::Relaxed)).ok()
    }
}

impl Metrics {
    /// The figures of stream `id` (created on first use).
    pub(crate) fn stream(&self, id: &str) -> std::sync::Arc<StreamFigures> {
        let mut m = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(id.to_string()).or_default().clone()
    }

    /// The figures of stream `id`, if it ran on this node.
    pub fn stream_figures(&self, id: &str) -> Option<std::sync::Arc<StreamFigures>> {
        let m = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        m.get(id).cloned()
    }

    /// Fresh figures for a run of job `id` starting now.
    /// The side statuses of the run before (one that failed) stay until this run finds out.
    pub(crate) fn start_job(&self, id: &str) -> std::sync::Arc<JobFigures> {
        let f = std::sync::Arc::new(JobFigures::default());
        let mut m = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(before) = m.get(id) {
            let side = |s: &std::sync::Mutex<Option<(&'static str, String)>>| {
                s.lock().ok().and_then(|g| g.clone())
            };
            if let Ok(mut s) = f.source.lock() {
                *s = side(&before.source);
            }
            if let Ok(mut s) = f.sink.lock() {
                *s = side(&before.sink);
            }
        }
        m.insert(id.to_string(), f.clone());
        f
    }

    /// The figures of job `id` while it runs on this node.
    pub fn job_figures(&self, id: &str) -> Option<std::sync::Arc<JobFigures>> {
        let m = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        m.get(id).cloned()
    }

    /// Forgets the figures of a job run that ended (unless a newer run replaced them).
    pub(crate) fn end_job(&self, id: &str, figures: &std::sync::Arc<JobFigures>) {
        let mut m = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if m.get(id)
            .is_some_and(|f| std::sync::Arc::ptr_eq(f, figures))
        {
            m.remove(id);
        }
    }

    /// Forgets a deleted job's figures.
    pub(crate) fn forget_job(&self, id: &str) {
        let mut m = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(id);
    }

    /// Forgets a deleted stream's figures.
    pub(crate) fn forget_stream(&self, id: &str) {
        let mut m = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(id);
    }
}

/// A partition's entry in [`Metrics::lag`], removed when its router stops.
pub(crate) struct LagEntry<'a> {
    metrics: &'a Metrics,
    key: (String, u32),
}

impl<'a> LagEntry<'a> {
    pub(crate) fn new(metrics: &'a Metrics, channel_id: &str, partition: u32) -> Self {
        LagEntry {
            metrics,
            key: (channel_id.to_string(), partition),
        }
    }

    pub(crate) fn set(&self, lag: u64) {
        if let Ok(mut m) = self.metrics.lag.lock() {
            m.insert(self.key.clone(), lag);
        }
    }
}

impl Drop for LagEntry<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.metrics.lag.lock() {
            m.remove(&self.key);
        }
    }
}

impl Metrics {
    pub(crate) fn record_attempt(
        &self,
        outcome: &Outcome,
        status: DeliveryStatus,
        latency: Duration,
        age_ms: i64,
        is_retry: bool,
    ) {
        self.attempts.add(1);
        self.attempt_latency.observe(latency);
        if is_retry {
            self.retried.add(1);
        }
        match status {
            DeliveryStatus::Succeeded => {
                self.delivered.add(1);
                if outcome.is_success() {
                    self.publish_to_deliver
                        .observe(Duration::from_millis(age_ms.max(0) as u64));
                }
            }
            DeliveryStatus::Failed | DeliveryStatus::DeadLetter => self.failed.add(1),
            _ => {}
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters: [(&str, &str, &Counter); 14] = [
            (
                "openeg_events_ingested_total",
                "Events accepted and durably appended",
                &self.ingested,
            ),
            (
                "openeg_events_matched_total",
                "Events that matched at least one subscription",
                &self.matched,
            ),
            (
                "openeg_deliveries_succeeded_total",
                "Deliveries that succeeded",
                &self.delivered,
            ),
            (
                "openeg_deliveries_failed_total",
                "Deliveries given up",
                &self.failed,
            ),
            (
                "openeg_delivery_retries_total",
                "Delivery attempts that were retries",
                &self.retried,
            ),
            (
                "openeg_delivery_attempts_total",
                "Delivery attempts",
                &self.attempts,
            ),
            (
                "openeg_events_expired_unrouted_total",
                "Events removed from a channel log before they were routed",
                &self.expired_unrouted,
            ),
            (
                "openeg_delivery_lease_expired_total",
                "Claimed deliveries left to a later claim because their lease ran out in the queue",
                &self.lease_expired,
            ),
            (
                "openeg_store_rejected_records_total",
                "Delivery records the store rejected for their content (written sanitized, marked failed)",
                &*self.store_rejected,
            ),
            (
                "openeg_dead_letters_sent_total",
                "Dead-letter records published to their topic",
                &self.dead_letters_sent,
            ),
            (
                "openeg_dead_letter_failures_total",
                "Dead-letter publishes that failed and will be retried",
                &self.dead_letter_failures,
            ),
            (
                "openeg_event_cache_hits_total",
                "Events read back from the recent-events cache (shared log only)",
                &self.event_cache_hits,
            ),
            (
                "openeg_event_cache_misses_total",
                "Events read back from the shared log because the cache did not hold them",
                &self.event_cache_misses,
            ),
            (
                "openeg_dead_letters_dropped_total",
                "Dead-letter records dropped after the dead-letter window",
                &self.dead_letters_dropped,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.get()
            );
        }
        self.attempt_latency.render(
            &mut out,
            "openeg_delivery_attempt_seconds",
            "Duration of one delivery attempt",
        );
        self.publish_to_deliver.render(
            &mut out,
            "openeg_publish_to_deliver_seconds",
            "Time from acceptance to successful delivery",
        );
        self.append_latency.render(
            &mut out,
            "openeg_log_append_seconds",
            "Time to append a publish request's events to the channel log durably",
        );
        if let Some(node) = self.node.get() {
            let _ = writeln!(
                out,
                "# HELP openeg_node_info This node\n# TYPE openeg_node_info gauge\n\
                 openeg_node_info{{node=\"{}\"}} 1",
                label(node)
            );
        }
        let lag = self.lag.lock().map(|m| m.clone()).unwrap_or_default();
        let _ = writeln!(
            out,
            "# HELP openeg_partitions_routed Channel log partitions this node routes now\n\
             # TYPE openeg_partitions_routed gauge\nopeneg_partitions_routed {}",
            lag.len()
        );
        let _ = writeln!(
            out,
            "# HELP openeg_channel_lag Events in a channel log partition that this node's router has not passed yet\n\
             # TYPE openeg_channel_lag gauge"
        );
        for ((channel, partition), n) in &lag {
            let _ = writeln!(
                out,
                "openeg_channel_lag{{channel_id=\"{}\",partition=\"{partition}\"}} {n}",
                label(channel)
            );
        }
        let streams = self.streams.lock().map(|m| m.clone()).unwrap_or_default();
        let per_stream: [(&str, &str, FigureOf); 5] = [
            (
                "openeg_stream_records_read_total",
                "Records an event stream read from its source",
                |f| &f.read,
            ),
            (
                "openeg_stream_records_filtered_total",
                "Records an event stream's filter dropped",
                |f| &f.filtered,
            ),
            (
                "openeg_stream_records_written_total",
                "Records an event stream's sink took",
                |f| &f.written,
            ),
            (
                "openeg_stream_records_skipped_total",
                "Records an event stream skipped because its sink refused them for good",
                |f| &f.skipped,
            ),
            (
                "openeg_stream_sink_failures_total",
                "Failed sink calls of an event stream (retried)",
                |f| &f.sink_failures,
            ),
        ];
        for (name, help, get) in per_stream {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (id, f) in &streams {
                let _ = writeln!(
                    out,
                    "{name}{{stream_id=\"{}\"}} {}",
                    label(id),
                    get(f).get()
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP openeg_stream_lag Records in an event stream's source after its committed position\n\
             # TYPE openeg_stream_lag gauge"
        );
        for (id, f) in &streams {
            if let Some(n) = f.lag() {
                let _ = writeln!(out, "openeg_stream_lag{{stream_id=\"{}\"}} {n}", label(id));
            }
        }
        out
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_and_node_are_rendered_while_routed() {
        let m = Metrics::default();
        let _ = m.node.set("node-\"1\"".into());
        {
            let e = LagEntry::new(&m, "ch-1", 2);
            e.set(7);
            let s = m.render();
            assert!(
                s.contains("openeg_node_info{node=\"node-\\\"1\\\"\"} 1"),
                "{s}"
            );
            assert!(s.contains("openeg_partitions_routed 1"), "{s}");
            assert!(
                s.contains("openeg_channel_lag{channel_id=\"ch-1\",partition=\"2\"} 7"),
                "{s}"
            );
        }
        let s = m.render();
        assert!(s.contains("openeg_partitions_routed 0"), "{s}");
        assert!(!s.contains("openeg_channel_lag{"), "{s}");
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(40));
        let mut s = String::new();
        h.render(&mut s, "x", "h");
        assert!(s.contains("x_bucket{le=\"0.001\"} 0"));
        assert!(s.contains("x_bucket{le=\"0.005\"} 1"));
        assert!(s.contains("x_bucket{le=\"0.05\"} 2"));
        assert!(s.contains("x_bucket{le=\"+Inf\"} 2"));
        assert!(s.contains("x_count 2"));
    }

    #[test]
    fn render_has_every_counter() {
        let m = Metrics::default();
        m.ingested.add(5);
        let s = m.render();
        assert!(s.contains("openeg_events_ingested_total 5"));
        assert!(s.contains("openeg_publish_to_deliver_seconds_count 0"));
        assert!(s.contains("openeg_log_append_seconds_count 0"));
    }
}
