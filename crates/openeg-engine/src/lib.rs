//! The data plane: events flow log → router → targets (`ARCHITECTURE.md`, "The event's path").
//!
//! * [`Engine::publish`] appends accepted events to the channel's log topic (durable before it
//!   returns) and makes sure a router tails that channel.
//! * One router task per channel ([`router`]) reads the log from its committed offset, matches
//!   each event with the channel's compiled [`routes::ChannelRoutes`] and makes the first
//!   attempts at once; trace rows and outcomes are written behind it in batches by the
//!   recorder. Its log offset is committed (at most every 200 ms) only below every attempt
//!   still running and after a recorder flush, so everything below the committed offset is
//!   delivered, given up, or a durable pending delivery. Events already in the log at start
//!   are replayed record-first and idempotently ([`router`]), so a restart re-sends only
//!   attempts that were running or unrecorded.
//! * Attempts ([`dispatch`]) run with bounded concurrency per target; the outcome updates the
//!   delivery (success, retry at a backoff time, or failure).
//! * The retry poller ([`retry`]) claims due deliveries (leases make claims exclusive) and
//!   attempts them again, re-reading the event from the log. A crashed attempt is retried when
//!   its lease expires: delivery is at-least-once.
//!
//! Log topics are named `<project_id>.<channel_id>` (a `.` cannot occur in a project id), so
//! a router can find its project from the topic alone.

pub mod dispatch;
pub mod envelope;
mod error;
pub mod metrics;
pub mod retry;
pub mod router;
pub mod routes;

use bytes::Bytes;
use openeg_log::EventLog;
use openeg_store::delivery::DeliveryStore;
use openeg_store::secrets::SecretBox;
use openeg_store::MetaStore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::watch;

pub use error::EngineError;
pub use metrics::Metrics;

/// Consumer group of the routers in the log.
pub const ROUTER_GROUP: &str = "router";
/// An event may cross at most this many channel hops (`docs/transforms.md`).
pub const MAX_HOPS: u64 = 3;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub functiongraph_endpoint: Option<String>,
    pub smn_endpoint: Option<String>,
    /// In-flight attempts per target.
    pub target_concurrency: usize,
    /// Attempts waiting for a slot per target before new ones are left to the retry poller.
    pub target_queue: usize,
    /// Lease of a delivery being attempted (must exceed the longest attempt timeout).
    pub lease: Duration,
    /// How often the retry poller looks for due deliveries.
    pub poll_interval: Duration,
    /// Records read per router batch.
    pub batch_records: usize,
    /// This node's name: the holder recorded on its claims.
    pub node_name: String,
    /// Account (IAM domain id) of each project with a credential: HC.EG targets that forward
    /// into another project's channel publish as this account, which that channel's policy
    /// must allow.
    pub project_domains: HashMap<String, String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            functiongraph_endpoint: None,
            smn_endpoint: None,
            target_concurrency: 16,
            target_queue: 10_000,
            lease: Duration::from_secs(330),
            poll_interval: Duration::from_millis(200),
            batch_records: 4096,
            node_name: "openeg-0".into(),
            project_domains: HashMap::new(),
        }
    }
}

/// Log topic of a channel.
pub fn topic(project_id: &str, channel_id: &str) -> String {
    format!("{project_id}.{channel_id}")
}

/// The inverse of [`topic`].
pub fn split_topic(topic: &str) -> Option<(&str, &str)> {
    topic.split_once('.')
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Why [`Engine::publish_texts`] did not take a batch. No event of it was acknowledged.
#[derive(Debug)]
pub enum PublishError {
    /// The channel's log cannot take appends now (I/O or fsync failure, recovery pending):
    /// the caller may retry later.
    LogUnavailable(String),
    /// The channel's log was deleted while the batch was on its way (channel deleted).
    ChannelGone,
    /// Anything else (a batch over the log's size limit, an invalid topic name).
    Other(String),
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublishError::LogUnavailable(e) => write!(f, "the channel log is unavailable: {e}"),
            PublishError::ChannelGone => f.write_str("the channel log was deleted"),
            PublishError::Other(e) => write!(f, "appending to the channel log: {e}"),
        }
    }
}

impl From<openeg_log::LogError> for PublishError {
    fn from(e: openeg_log::LogError) -> Self {
        use openeg_log::LogError as L;
        match e {
            L::TopicDeleted(_) => PublishError::ChannelGone,
            L::BatchTooLarge { .. } | L::InvalidName(_) | L::UnknownPartition { .. } => {
                PublishError::Other(e.to_string())
            }
            other => PublishError::LogUnavailable(other.to_string()),
        }
    }
}

/// A channel log that refuses appends, as health checks report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFailure {
    pub project_id: String,
    pub channel_id: String,
    /// For operators; may name files, so it is logged, not sent to clients.
    pub reason: String,
}

/// Shared by every task of the data plane.
pub struct Engine {
    pub(crate) meta: Arc<dyn MetaStore>,
    pub(crate) delivery: Arc<dyn DeliveryStore>,
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) secrets: SecretBox,
    pub(crate) cfg: EngineConfig,
    pub(crate) http: openeg_connectors::sinks::HttpClient,
    pub metrics: Metrics,
    pub(crate) failure_log: dispatch::FailureLog,
    /// Compiled routes per topic, recompiled after subscription changes.
    pub(crate) routes: routes::RouteCache,
    /// Topics with a running router.
    pub(crate) routers: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    /// Per-target concurrency, kept across route reloads.
    pub(crate) slots: Mutex<HashMap<String, Arc<dispatch::Slot>>>,
    pub(crate) shutdown: watch::Receiver<bool>,
    shutdown_tx: watch::Sender<bool>,
    /// Attempt outcomes on their way to the store, batched by [`dispatch::run_recorder`].
    pub(crate) recorder: tokio::sync::mpsc::Sender<dispatch::Record>,
    me: Weak<Engine>,
}

impl Engine {
    /// Creates the engine and starts the retry poller and a router for every topic that
    /// already has data.
    pub async fn start(
        meta: Arc<dyn MetaStore>,
        delivery: Arc<dyn DeliveryStore>,
        log: Arc<dyn EventLog>,
        secrets: SecretBox,
        cfg: EngineConfig,
        existing_topics: Vec<String>,
    ) -> Result<Arc<Engine>, EngineError> {
        let http = openeg_connectors::sinks::HttpClient::new().map_err(EngineError::HttpClient)?;
        let (shutdown_tx, shutdown) = watch::channel(false);
        // This node owns the embedded log, so leases of never-attempted deliveries, and its
        // own unanswered claims, were held by the process that stopped: make them due now
        // instead of waiting them out.
        match delivery.release_pending(now_ms(), &cfg.node_name).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                deliveries = n,
                "resuming deliveries left pending by the last run"
            ),
            Err(e) => return Err(EngineError::store("releasing pending deliveries")(e)),
        }
        let (recorder, rx) = tokio::sync::mpsc::channel(65_536);
        let metrics = Metrics::default();
        tokio::spawn(dispatch::run_recorder(
            delivery.clone(),
            rx,
            metrics.store_rejected.clone(),
        ));
        let engine = Arc::new_cyclic(|me| Engine {
            meta,
            delivery,
            log,
            secrets,
            cfg,
            http,
            metrics,
            failure_log: dispatch::FailureLog::default(),
            routes: routes::RouteCache::default(),
            routers: Mutex::new(HashMap::new()),
            slots: Mutex::new(HashMap::new()),
            shutdown,
            shutdown_tx,
            recorder,
            me: me.clone(),
        });
        for t in existing_topics {
            engine.ensure_router(&t);
        }
        tokio::spawn(retry::run(engine.clone()));
        Ok(engine)
    }

    /// Appends events (already validated) to a channel's log, durably, and wakes its router.
    pub async fn publish(
        &self,
        project_id: &str,
        channel_id: &str,
        events: &[&serde_json::Value],
    ) -> Result<(), PublishError> {
        let texts: Vec<Vec<u8>> = events
            .iter()
            .map(|ev| serde_json::to_vec(ev).unwrap_or_else(|_| b"null".to_vec()))
            .collect();
        self.publish_texts(project_id, channel_id, &texts).await
    }

    /// [`Engine::publish`] for events already in their logged form: compact JSON texts
    /// (`openeg_api::event::check`). On error nothing of the batch is acknowledged.
    pub async fn publish_texts(
        &self,
        project_id: &str,
        channel_id: &str,
        events: &[Vec<u8>],
    ) -> Result<(), PublishError> {
        let enc = envelope::Encoder::new(now_ms());
        let records: Vec<Bytes> = events.iter().map(|ev| enc.encode(ev)).collect();
        let t = topic(project_id, channel_id);
        let started = std::time::Instant::now();
        self.log.append(&t, 0, records).await?;
        self.metrics.append_latency.observe(started.elapsed());
        self.metrics.ingested.add(events.len() as u64);
        self.ensure_router(&t);
        Ok(())
    }

    /// Channel logs that currently refuse appends (storage failure, recovery pending).
    pub fn log_failures(&self) -> Vec<LogFailure> {
        self.log
            .failures()
            .into_iter()
            .map(|f| {
                let (project_id, channel_id) = split_topic(&f.topic).unwrap_or(("", &f.topic));
                LogFailure {
                    project_id: project_id.to_string(),
                    channel_id: channel_id.to_string(),
                    reason: f.reason,
                }
            })
            .collect()
    }

    /// Reads one logged event back (ShowDetailOfEvent, retries): its JSON text as logged, or
    /// `None` when the log no longer holds it.
    pub async fn read_event(
        &self,
        project_id: &str,
        channel_id: &str,
        offset: u64,
    ) -> Result<Option<Bytes>, EngineError> {
        let t = topic(project_id, channel_id);
        let record = match self.log.read(&t, 0, offset, 1, 1).await {
            Ok(recs) => recs.into_iter().find(|r| r.offset == offset),
            Err(openeg_log::LogError::OffsetOutOfRange { .. }) => None,
            Err(e) => return Err(EngineError::log("reading the channel log")(e)),
        };
        let Some(record) = record else {
            return Ok(None);
        };
        envelope::event_of(&record.payload)
            .map(Some)
            .map_err(|error| EngineError::UnreadableRecord {
                topic: t,
                offset,
                error,
            })
    }

    /// Subscriptions of a channel changed: the next batch uses freshly compiled routes.
    pub fn subscriptions_changed(&self, project_id: &str, channel_id: &str) {
        self.routes.invalidate(&topic(project_id, channel_id));
    }

    /// A subscription was deleted: its pending deliveries go with it (traces stay).
    pub async fn subscription_deleted(
        &self,
        project_id: &str,
        channel_id: &str,
        subscription_id: &str,
    ) {
        self.subscriptions_changed(project_id, channel_id);
        if let Err(e) = self
            .delivery
            .drop_pending_for_subscription(project_id, subscription_id)
            .await
        {
            tracing::warn!(error = %e, subscription_id, "dropping pending deliveries failed");
        }
    }

    /// Starts the router of a topic if none runs.
    pub(crate) fn ensure_router(&self, t: &str) {
        let Ok(mut routers) = self.routers.lock() else {
            return;
        };
        if routers.get(t).is_some_and(|h| !h.is_finished()) {
            return;
        }
        let Some(engine) = self.me.upgrade() else {
            return;
        };
        let handle = tokio::spawn(router::run(engine, t.to_string()));
        routers.insert(t.to_string(), handle);
    }

    /// Stops routers and the poller. Routers give running attempts a moment to finish and
    /// commit what is recorded; attempts still running after that are abandoned (they are
    /// made again after the restart: at-least-once).
    pub async fn shutdown(&self) {
        let _ = self.shutdown_tx.send(true);
        let handles: Vec<_> = match self.routers.lock() {
            Ok(mut r) => r.drain().map(|(_, h)| h).collect(),
            Err(_) => Vec::new(),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        for h in handles {
            let _ = tokio::time::timeout_at(deadline, h).await;
        }
    }
}
