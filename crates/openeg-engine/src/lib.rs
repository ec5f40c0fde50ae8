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
//! * Long-running work (custom event sources, event streams, router jobs) runs under the
//!   [`supervisor`], keyed by resource; [`runtimes`] decides from each resource document what
//!   should run. [`Engine::resource_changed`] is the one change hook of the control plane.
//!
//! Log topics are named `<project_id>.<channel_id>` (a `.` cannot occur in a project id), so
//! a router can find its project from the topic alone.

// Proving rocketmq-client-rust's deeply nested futures `Send` (RocketMQ router jobs hold its
// clients across awaits) needs more than the default 128.
#![recursion_limit = "256"]

pub mod cluster;
mod dead_letter;
pub mod dispatch;
pub mod envelope;
mod error;
pub mod metrics;
pub mod position;
mod recent;
mod replication;
pub mod retry;
pub mod router;
pub mod routes;
pub mod runtimes;
pub mod stream;
pub mod supervisor;

use bytes::Bytes;
use openeg_log::EventLog;
use openeg_store::delivery::DeliveryStore;
use openeg_store::secrets::SecretBox;
use openeg_store::{Document, Kind, MetaStore};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::watch;

pub use error::EngineError;
pub use metrics::Metrics;
pub use supervisor::{RunState, RuntimeStatus, TaskKind};

/// Messages (attempt outcomes, routed batches) waiting for the recorder.
const RECORDER_QUEUE: usize = 2 * dispatch::RECORD_BATCH;

/// Consumer group of the routers in the log.
pub const ROUTER_GROUP: &str = "router";
/// An event may cross at most this many channel hops (`docs/transforms.md`).
pub const MAX_HOPS: u64 = 3;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub functiongraph_endpoint: Option<String>,
    pub smn_endpoint: Option<String>,
    /// The S3-compatible store of event streams' OBS sinks, and the region it signs for.
    pub obs_endpoint: Option<String>,
    pub obs_region: Option<String>,
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
    /// Restart delays of supervised work that failed.
    pub restart_backoff: supervisor::Backoff,
    /// CA bundle (PEM) trusted by Kafka TLS connections; `None`: the system's CA store.
    /// Process-wide: the first engine started sets it.
    pub kafka_ca_file: Option<String>,
    /// Several nodes share the channel log (Kafka): partitions are routed under leases
    /// (`cluster.rs`). `None`: this node routes every partition of its log.
    pub cluster: Option<cluster::ClusterConfig>,
    /// Byte budget of the recently routed events kept for retries (`recent.rs`); 0: none.
    /// Worth it on a shared log only, where reading an event back is a broker fetch.
    pub recent_events_bytes: usize,
}

/// The recent-events budget for a log on a Kafka cluster.
pub const RECENT_EVENTS_BYTES: usize = recent::DEFAULT_BUDGET;

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            functiongraph_endpoint: None,
            smn_endpoint: None,
            obs_endpoint: None,
            obs_region: None,
            target_concurrency: 16,
            target_queue: 10_000,
            lease: Duration::from_secs(330),
            poll_interval: Duration::from_millis(200),
            batch_records: 4096,
            node_name: "openeg-0".into(),
            project_domains: HashMap::new(),
            restart_backoff: supervisor::Backoff::default(),
            kafka_ca_file: None,
            cluster: None,
            recent_events_bytes: 0,
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

/// A resource the control plane changed, for [`Engine::resource_changed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceKind {
    /// A subscription of channel `channel_id`.
    Subscription {
        channel_id: String,
    },
    /// A custom event source.
    EventSource,
    EventStream,
    /// An event-router job.
    RouterJob,
    /// A connection (KAFKA, ROCKETMQ, WEBHOOK): the targets using it are built anew.
    Connection,
}

impl ResourceKind {
    /// The supervised kind, for resources that may have long-running work.
    pub fn task_kind(&self) -> Option<TaskKind> {
        match self {
            ResourceKind::Subscription { .. } | ResourceKind::Connection => None,
            ResourceKind::EventSource => Some(TaskKind::EventSource),
            ResourceKind::EventStream => Some(TaskKind::EventStream),
            ResourceKind::RouterJob => Some(TaskKind::RouterJob),
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
    /// Dead-letter publishes in flight (over every target).
    pub(crate) dead_letter_slots: Arc<tokio::sync::Semaphore>,
    /// Recently routed events, on a shared log only (`recent.rs`).
    pub(crate) recent: Option<recent::RecentEvents>,
    /// Compiled routes per topic, recompiled after subscription changes.
    pub(crate) routes: routes::RouteCache,
    /// Topics with a running router.
    pub(crate) routers: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    /// Per-target concurrency, kept across route reloads.
    pub(crate) slots: Mutex<HashMap<String, Arc<dispatch::Slot>>>,
    pub(crate) shutdown: watch::Receiver<bool>,
    shutdown_tx: watch::Sender<bool>,
    /// On a shared log: which partitions this node may route (`cluster.rs`).
    pub(crate) ownership: Option<Arc<cluster::Ownership>>,
    /// The partition balancer's task, awaited at shutdown (it gives the leases back).
    balancer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Attempt outcomes on their way to the store, batched by [`dispatch::run_recorder`].
    pub(crate) recorder: tokio::sync::mpsc::Sender<dispatch::RecorderMsg>,
    /// Long-running work: sources, streams, router jobs.
    supervisor: supervisor::Supervisor,
    /// Serializes "re-read a resource, then apply it" so a stale read never wins.
    supervising: tokio::sync::Mutex<()>,
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
        openeg_connectors::sinks::kafka::set_trusted_ca_file(cfg.kafka_ca_file.clone());
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
        // The recorder's queue bounds the write-behind window, and with it what a crash can
        // re-send: when outcomes arrive faster than the store writes them, attempts wait to
        // hand theirs over (holding their target slot), so routers leave new deliveries to the
        // poller, recorded first, instead of running ahead of the store. Two full batches, so
        // the recorder always has its next batch waiting.
        let (recorder, rx) = tokio::sync::mpsc::channel(RECORDER_QUEUE);
        let metrics = Metrics::default();
        let _ = metrics.node.set(cfg.node_name.clone());
        let supervisor = supervisor::Supervisor::new(
            &cfg.node_name,
            cfg.restart_backoff,
            Duration::from_secs(5),
        );
        tokio::spawn(dispatch::run_recorder(
            delivery.clone(),
            rx,
            metrics.store_rejected.clone(),
        ));
        let ownership = cfg
            .cluster
            .clone()
            .map(|c| Arc::new(cluster::Ownership::new(c)));
        let recent = (cfg.recent_events_bytes > 0)
            .then(|| recent::RecentEvents::new(cfg.recent_events_bytes));
        let engine = Arc::new_cyclic(|me| Engine {
            meta,
            delivery,
            log,
            secrets,
            cfg,
            http,
            metrics,
            failure_log: dispatch::FailureLog::default(),
            dead_letter_slots: Arc::new(tokio::sync::Semaphore::new(dead_letter::CONCURRENCY)),
            recent,
            routes: routes::RouteCache::default(),
            routers: Mutex::new(HashMap::new()),
            slots: Mutex::new(HashMap::new()),
            shutdown,
            shutdown_tx,
            ownership,
            balancer: Mutex::new(None),
            recorder,
            supervisor,
            supervising: tokio::sync::Mutex::new(()),
            me: me.clone(),
        });
        for t in existing_topics {
            engine.ensure_router(&t);
        }
        tokio::spawn(retry::run(engine.clone()));
        if let Some(own) = engine.ownership.clone() {
            let h = tokio::spawn(cluster::run(engine.clone(), own));
            if let Ok(mut b) = engine.balancer.lock() {
                *b = Some(h);
            }
        }
        engine.supervise_all().await?;
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
        let t = topic(project_id, channel_id);
        let started = std::time::Instant::now();
        let partitions = self.log.partitions(&t).await?;
        if partitions <= 1 {
            let records: Vec<Bytes> = events.iter().map(|ev| enc.encode(ev)).collect();
            self.log.append(&t, 0, records).await?;
        } else {
            // Each event to its key's partition; the partitions' appends run together and
            // the request is answered once all are durable (any failure fails it).
            let mut parts: Vec<Vec<Bytes>> = vec![Vec::new(); partitions as usize];
            for ev in events {
                let p = position::partition_for(&envelope::partition_key(ev), partitions);
                parts[p as usize].push(enc.encode(ev));
            }
            let appends = parts
                .into_iter()
                .enumerate()
                .filter(|(_, recs)| !recs.is_empty())
                .map(|(p, recs)| self.log.append(&t, p as u32, recs));
            for r in futures_util::future::join_all(appends).await {
                r?;
            }
        }
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

    /// Reads one logged event back (ShowDetailOfEvent, retries) by its position (the "log
    /// offset" of trace rows and deliveries, [`position`]): its JSON text as logged, or `None`
    /// when the log no longer holds it.
    pub async fn read_event(
        &self,
        project_id: &str,
        channel_id: &str,
        position: u64,
    ) -> Result<Option<Bytes>, EngineError> {
        let t = topic(project_id, channel_id);
        if let Some(hit) = self.recent.as_ref().and_then(|c| c.get(&t, position)) {
            self.metrics.event_cache_hits.add(1);
            return Ok(Some(hit));
        }
        if self.recent.is_some() {
            self.metrics.event_cache_misses.add(1);
        }
        let (partition, offset) = position::split(position);
        let record = match self.log.read(&t, partition, offset, 1, 1).await {
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

    /// The control plane changed (created, updated, operated or deleted) a resource: the
    /// engine re-reads it from the MetaStore and acts.
    ///
    /// * A subscription: its channel's next batch uses freshly compiled routes; if it is gone,
    ///   its pending deliveries go with it (traces stay).
    /// * A source, stream or router job: the supervisor starts, restarts or stops its work
    ///   according to the document's desired state ([`runtimes::plan`]); a deleted one is
    ///   stopped and forgotten. Returns once that is done, so the status it reports
    ///   ([`Engine::runtime_status`]) already reflects the change.
    pub async fn resource_changed(&self, kind: ResourceKind, project_id: &str, id: &str) {
        match kind {
            ResourceKind::Subscription { channel_id } => {
                self.routes.invalidate(&topic(project_id, &channel_id));
                match self.meta.get(project_id, Kind::Subscription, id).await {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        if let Err(e) = self
                            .delivery
                            .drop_pending_for_subscription(project_id, id)
                            .await
                        {
                            tracing::warn!(error = %e, subscription_id = id, "dropping pending deliveries failed");
                        }
                    }
                    Err(e) => tracing::warn!(
                        error = %e,
                        subscription_id = id,
                        "reading a changed subscription failed: pending deliveries of a deleted one are kept"
                    ),
                }
            }
            // Which channels' targets use it is in their documents; connections change
            // rarely, so every channel of the project compiles again.
            ResourceKind::Connection => {
                self.routes.invalidate_project(project_id);
                self.restart_streams_using(project_id, id).await;
            }
            ResourceKind::EventSource | ResourceKind::EventStream | ResourceKind::RouterJob => {
                let Some(task) = kind.task_kind() else {
                    return;
                };
                let _one = self.supervising.lock().await;
                let key = supervisor::TaskKey::new(task, project_id, id);
                match self.meta.get(project_id, task.store_kind(), id).await {
                    Ok(Some(rec)) => {
                        let desired = self.desired(task, &rec);
                        self.supervisor.apply(key, desired).await;
                    }
                    Ok(None) => {
                        self.absent(key).await;
                        if task == TaskKind::EventStream {
                            self.metrics.forget_stream(id);
                        }
                        if task == TaskKind::RouterJob {
                            self.metrics.forget_job(id);
                            // A job made again later is another job: its positions go.
                            if let Err(e) = self.delivery.delete_mirror_pairs(id).await {
                                tracing::warn!(error = %e, job_id = id,
                                    "deleting a deleted job's offset pairs failed");
                            }
                        }
                    }
                    Err(e) => tracing::warn!(
                        error = %e,
                        kind = task.as_str(),
                        id,
                        "reading a changed resource failed: its work is left as it was"
                    ),
                }
            }
        }
    }

    /// Restarts the running event streams whose Kafka sink uses connection `id` (they hold a
    /// `connection:{id}` reference), so they write through its new settings. Stopped and
    /// unrunnable streams pick the connection up when they next start.
    async fn restart_streams_using(&self, project_id: &str, id: &str) {
        let streams = match self
            .meta
            .referencing(project_id, &format!("connection:{id}"))
            .await
        {
            Ok(docs) => docs,
            Err(e) => {
                tracing::warn!(error = %e, connection_id = id,
                    "reading the streams of a changed connection failed: they keep its old settings");
                return;
            }
        };
        let _one = self.supervising.lock().await;
        for rec in streams.iter().filter(|r| r.kind == Kind::EventStream) {
            let desired = self.desired(TaskKind::EventStream, rec);
            if matches!(desired, supervisor::Desired::Run { .. }) {
                tracing::info!(stream_id = %rec.id, connection_id = id,
                    "event stream restarted: its sink's connection changed");
                let key = supervisor::TaskKey::new(TaskKind::EventStream, project_id, &rec.id);
                self.supervisor.restart(key, desired).await;
            }
        }
    }

    /// The runtime status of a resource's work; `None` when it is not supervised here
    /// (APPLICATION and official sources, unknown resources). In a cluster, work that runs
    /// on another node (it holds the work's lease) shows the status that node published.
    pub fn runtime_status(
        &self,
        kind: TaskKind,
        project_id: &str,
        id: &str,
    ) -> Option<RuntimeStatus> {
        let key = supervisor::TaskKey::new(kind, project_id, id);
        let local = self.supervisor.status(&key)?;
        if local.state == RunState::Stopped {
            return Some(local);
        }
        Some(
            self.ownership
                .as_ref()
                .and_then(|own| own.published_status(&key))
                .unwrap_or(local),
        )
    }

    /// Follows the store's change feed (several nodes on one PostgreSQL): every document
    /// written by any node is applied here as [`Engine::resource_changed`] would, so a change
    /// made through another node reaches this one's routes and runtimes within moments. After
    /// a resync event (the feed may have missed changes), and every `safety_poll` in case a
    /// notification was lost some other way, everything is reloaded.
    pub fn follow_changes(
        self: &Arc<Self>,
        mut changes: openeg_store::changes::ChangeListener,
        safety_poll: Duration,
    ) -> tokio::task::JoinHandle<()> {
        use openeg_store::changes::ChangeEvent;
        let engine = self.clone();
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut poll = tokio::time::interval(safety_poll);
            poll.tick().await;
            loop {
                tokio::select! {
                    ev = changes.next() => match ev {
                        ChangeEvent::Changed(c) => engine.apply_change(c).await,
                        ChangeEvent::Resync => engine.resync().await,
                    },
                    _ = poll.tick() => engine.resync().await,
                    _ = shutdown.changed() => return,
                }
            }
        })
    }

    /// A change another node (or this one) committed.
    async fn apply_change(&self, c: openeg_store::changes::Change) {
        let kind = match c.kind {
            Kind::Subscription => match c.parent_id {
                Some(channel_id) => ResourceKind::Subscription { channel_id },
                None => return,
            },
            Kind::Source => ResourceKind::EventSource,
            Kind::EventStream => ResourceKind::EventStream,
            Kind::RouterJob => ResourceKind::RouterJob,
            Kind::Connection => ResourceKind::Connection,
            _ => return,
        };
        self.resource_changed(kind, &c.project_id, &c.id).await;
    }

    /// Stops supervised work whose resource is gone and, in a cluster, forgets its published
    /// status (and its lease once this node no longer runs it), which would otherwise stay.
    async fn absent(&self, key: supervisor::TaskKey) {
        let lease = cluster::task_lease_name(&key);
        self.supervisor
            .apply(key, supervisor::Desired::Absent)
            .await;
        if let Some(own) = &self.ownership {
            if let Err(e) = own.forget_task(&lease).await {
                tracing::warn!(error = %e, task = %lease,
                    "forgetting a deleted task's status failed");
            }
        }
    }

    /// Reloads everything derived from the configuration: routes compile again on next use,
    /// and supervised work is made what the store says (started, restarted on a new
    /// revision, stopped when its resource is gone).
    pub async fn resync(&self) {
        self.routes.invalidate_all();
        if let Err(e) = self.supervise_all().await {
            tracing::warn!(error = %e, "resync: supervised work not reloaded");
            return;
        }
        for key in self.supervisor.keys() {
            let gone = matches!(
                self.meta
                    .get(&key.project_id, key.kind.store_kind(), &key.id)
                    .await,
                Ok(None)
            );
            if gone {
                let _one = self.supervising.lock().await;
                self.absent(key).await;
            }
        }
    }

    /// At start: every source, stream and router job that should run is started (and every
    /// other supervised one gets its status).
    async fn supervise_all(&self) -> Result<(), EngineError> {
        let _one = self.supervising.lock().await;
        for task in TaskKind::ALL {
            let recs =
                self.meta
                    .list_global(task.store_kind())
                    .await
                    .map_err(EngineError::store(format!(
                        "listing {} resources to supervise",
                        task.as_str()
                    )))?;
            for rec in recs {
                let desired = self.desired(task, &rec);
                if !matches!(desired, supervisor::Desired::Absent) {
                    let key = supervisor::TaskKey::new(task, &rec.project_id, &rec.id);
                    self.supervisor.apply(key, desired).await;
                }
            }
        }
        Ok(())
    }

    /// What the supervisor should do with a resource's work.
    fn desired(&self, kind: TaskKind, rec: &Document) -> supervisor::Desired {
        use supervisor::Desired;
        match runtimes::plan(kind, &rec.body) {
            runtimes::Plan::Unsupervised => Desired::Absent,
            runtimes::Plan::Stopped => Desired::Stopped,
            runtimes::Plan::Unrunnable(e) => Desired::Unrunnable(e),
            runtimes::Plan::Run => match self.build_runtime(kind, rec) {
                Ok(runtime) => Desired::Run {
                    revision: runtimes::revision(kind, &rec.body),
                    // In a cluster the work runs on one node at a time, under its lease.
                    runtime: match &self.ownership {
                        Some(own) => Arc::new(cluster::Leased::new(
                            own.clone(),
                            &supervisor::TaskKey::new(kind, &rec.project_id, &rec.id),
                            runtime,
                        )),
                        None => runtime,
                    },
                },
                Err(e) => Desired::Unrunnable(e),
            },
        }
    }

    /// The runtime of a resource whose plan is to run.
    fn build_runtime(
        &self,
        kind: TaskKind,
        rec: &Document,
    ) -> Result<Arc<dyn supervisor::Runtime>, supervisor::ErrorInfo> {
        match kind {
            TaskKind::EventSource => {
                let mut detail = rec.body.get("detail").cloned().unwrap_or(Value::Null);
                self.secrets.reveal_json(&mut detail);
                let spec = openeg_connectors::sources::SourceSpec {
                    kind: rec
                        .body
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    detail,
                };
                let ctx = openeg_connectors::sources::BuildContext {
                    resource_id: rec.id.clone(),
                    node_name: self.cfg.node_name.clone(),
                    resource_name: rec
                        .body
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or(&rec.name)
                        .to_string(),
                    batch_interval: Duration::ZERO,
                    lag: None,
                    start_offsets: Default::default(),
                };
                // Building does no I/O: a spec that cannot be built is reported at once.
                openeg_connectors::sources::build(&spec, &ctx)
                    .map_err(|e| runtimes::build_error_info(&e))?;
                Ok(Arc::new(runtimes::SourcePump {
                    engine: self.me.clone(),
                    project_id: rec.project_id.clone(),
                    channel_id: rec.parent_id.clone().unwrap_or_default(),
                    spec,
                    ctx,
                    build: openeg_connectors::sources::build,
                }))
            }
            TaskKind::EventStream => Ok(Arc::new(self.stream_run(rec)?)),
            TaskKind::RouterJob
                if rec.body.get("source_type").and_then(Value::as_str) == Some("DCS") =>
            {
                let plan = replication::RedisJobPlan::of(&rec.body, &self.secrets)
                    .map_err(supervisor::ErrorInfo::not_run)?;
                Ok(Arc::new(replication::RedisJobRun {
                    engine: self.me.clone(),
                    job_id: rec.id.clone(),
                    plan,
                }))
            }
            TaskKind::RouterJob
                if rec.body.get("source_type").and_then(Value::as_str) == Some("ROCKETMQ") =>
            {
                let plan = replication::RocketJobPlan::of(&rec.body, &self.secrets)
                    .map_err(supervisor::ErrorInfo::not_run)?;
                Ok(Arc::new(replication::RocketJobRun {
                    engine: self.me.clone(),
                    job_id: rec.id.clone(),
                    plan,
                }))
            }
            TaskKind::RouterJob => {
                let plan = replication::KafkaJobPlan::of(&rec.body, &self.secrets)
                    .map_err(supervisor::ErrorInfo::not_run)?;
                Ok(Arc::new(replication::KafkaJobRun {
                    engine: self.me.clone(),
                    job_id: rec.id.clone(),
                    node_name: self.cfg.node_name.clone(),
                    plan,
                }))
            }
        }
    }

    /// The runtime of an event stream document (whose plan is to run).
    fn stream_run(&self, rec: &Document) -> Result<stream::StreamRun, supervisor::ErrorInfo> {
        let body = &rec.body;
        let empty = Value::Null;
        let source = body.get("source").unwrap_or(&empty);
        let kind = source
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        // The detail is the source's one `source_*` member.
        let mut detail = source
            .as_object()
            .and_then(|o| {
                o.iter()
                    .find(|(k, v)| k.starts_with("source_") && v.is_object())
            })
            .map(|(_, v)| v.clone())
            .unwrap_or(Value::Null);
        self.secrets.reveal_json(&mut detail);
        let option = body.get("option").unwrap_or(&empty);
        let window = option.get("batch_window").unwrap_or(&empty);
        let int = |v: &Value, k: &str| v.get(k).and_then(Value::as_i64);
        let rule = body.get("rule_config").unwrap_or(&empty);
        let spec = openeg_connectors::sources::SourceSpec { kind, detail };
        let ctx = openeg_connectors::sources::BuildContext {
            resource_id: rec.id.clone(),
            node_name: self.cfg.node_name.clone(),
            resource_name: body
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(&rec.name)
                .to_string(),
            batch_interval: Duration::from_secs(
                int(window, "interval").unwrap_or(0).clamp(0, 15) as u64
            ),
            // Set by the run (figures exist only where a stream runs).
            lag: None,
            start_offsets: Default::default(),
        };
        // Building does no I/O: a source that cannot be built is reported at once.
        openeg_connectors::sources::build(&spec, &ctx)
            .map_err(|e| runtimes::build_error_info(&e))?;
        let sink = stream::SinkPlan::of_stored(body.get("sink").unwrap_or(&empty), &self.secrets)
            .map_err(supervisor::ErrorInfo::not_run)?;
        if matches!(sink, stream::SinkPlan::Obs(_)) && self.cfg.obs_endpoint.is_none() {
            return Err(supervisor::ErrorInfo::not_run(
                stream::STREAM_OBS_NOT_CONFIGURED,
            ));
        }
        Ok(stream::StreamRun {
            engine: self.me.clone(),
            project_id: rec.project_id.clone(),
            stream_id: rec.id.clone(),
            source: spec,
            ctx,
            build: openeg_connectors::sources::build,
            sink,
            filter: rule.get("filter").filter(|f| f.is_object()).cloned(),
            transform: rule.get("transform").filter(|f| f.is_object()).cloned(),
            count: int(window, "count").unwrap_or(1).clamp(1, 10_000) as usize,
            threads: int(option, "thread_num").unwrap_or(1).clamp(1, 64) as usize,
            retries: int(window, "time")
                .filter(|t| *t > 0)
                .and_then(|t| u32::try_from(t).ok()),
        })
    }

    /// The cluster as this node sees it (`GET /openeg/v1/cluster`): nodes, and the
    /// partitions of `project_id`'s channels with their owner and lag.
    pub async fn cluster_view(&self, project_id: &str) -> Result<Value, EngineError> {
        cluster::view(self, project_id).await
    }

    /// Topics with a router task (on a shared log: every channel this node knows).
    pub(crate) fn router_topics(&self) -> Vec<String> {
        match self.routers.lock() {
            Ok(r) => r.keys().cloned().collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Starts a router for every channel in the store (on a shared log a channel may get its
    /// first events through another node).
    pub(crate) async fn ensure_all_routers(&self) {
        match self.meta.list_global(Kind::Channel).await {
            Ok(channels) => {
                for c in channels {
                    self.ensure_router(&topic(&c.project_id, &c.id));
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing channels for their routers failed"),
        }
    }

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
        // Sources first: nothing appends to a channel once its router stops.
        self.supervisor.shutdown().await;
        let _ = self.shutdown_tx.send(true);
        let handles: Vec<_> = match self.routers.lock() {
            Ok(mut r) => r.drain().map(|(_, h)| h).collect(),
            Err(_) => Vec::new(),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        for h in handles {
            let _ = tokio::time::timeout_at(deadline, h).await;
        }
        let balancer = self.balancer.lock().ok().and_then(|mut b| b.take());
        if let Some(h) = balancer {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let _ = tokio::time::timeout_at(deadline, h).await;
        }
    }
}
