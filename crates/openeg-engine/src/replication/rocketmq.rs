//! Event-router jobs that copy one RocketMQ cluster into another (`rocketmq2rocketmq`,
//! `docs/router-jobs.md`).
//!
//! A started job ([`RocketJobRun`]) connects to both clusters, picks the source topics
//! (`topics`, or `topic_regex` over the source's topics), makes sure each exists on the target
//! (created with as many queues as the source's when missing) and copies every queue of them:
//! one consumer in the job's own group `openeg-router-{job id}` with every queue assigned,
//! one producer on the target.
//!
//! Invariants:
//! * A copy keeps body, flag, tags, keys, the client's message id and user properties
//!   (`openeg_connectors::mirror::rocketmq::NOT_COPIED` lists what it does not keep). It goes
//!   to the target queue of the same index when the target topic has at least as many queues
//!   (each queue's order is kept), else by a hash of its keys.
//! * The job's position is its group's committed offsets on the source: a round's offsets are
//!   committed only after the target answered `SEND_OK` for every copy of it. A restart
//!   (a crash included) continues from them: nothing is skipped, and what was copied and not
//!   committed is copied again (at-least-once).
//! * `seek_to` applies only to queues the job never read: the first time it reads a queue it
//!   stores where it started (one offset pair, `topic@broker`/queue id), and a restart
//!   continues from the greater of that and the group's committed offset.
//! * A copy the target refuses is sent again (1 s doubling to 60 s) while the job shows
//!   `ERROR` with the reason; nothing after it in its queue is committed meanwhile.

use super::{fail, kafka::TopicSelector, FiguresEnd};
use crate::metrics::{JobFigures, SIDE_ABNORMAL, SIDE_NORMAL};
use crate::supervisor::{ErrorInfo, Ready, Runtime, StopSignal};
use crate::Engine;
use futures_util::future::join_all;
use openeg_connectors::backoff;
use openeg_connectors::mirror::rocketmq::{
    compression, Admin, Endpoint, MirrorConsumer, MirrorProducer, Polled, Queue, QueuePlacement,
    SeekTo,
};
use openeg_store::mirror::MirrorPair;
use openeg_store::secrets::SecretBox;
use openeg_store::DeliveryStore;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How long one poll waits for messages.
const POLL_WAIT: Duration = Duration::from_millis(500);
/// About how many messages one round copies.
const ROUND: usize = 2048;
/// How often the source queues' ends are read (syncDetail's `max_offset`).
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// How often the copied topics' queues (and `topic_regex`) are read again: a change restarts
/// the run, which then reads the new queues too.
const TOPOLOGY_EVERY: Duration = Duration::from_secs(30);
/// Most body bytes one round holds.
const ROUND_BYTES: usize = 64 << 20;
/// The sink status note of a job asking for `is_sync_progress`.
const SYNC_PROGRESS_NOTE: &str = "is_sync_progress is not applied to RocketMQ jobs yet: \
                                  consumer-group offsets are not translated to the target";
/// How long messages may wait unread, with the target taking copies, before the source is
/// reported `ABNORMAL`: the client swallows some pull failures (a group without permission to
/// read, say), which then show only as a backlog that does not move.
const STALLED_AFTER: Duration = Duration::from_secs(30);
/// How often the offset pairs no start can need any more are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Longest wait between two attempts of a refused copy.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// What a RocketMQ→RocketMQ job runs with, read from its document (secrets revealed).
#[derive(Debug, Clone)]
pub(crate) struct RocketJobPlan {
    source: Endpoint,
    sink: Endpoint,
    topics: TopicSelector,
    seek_to: SeekTo,
    compress_alg: String,
    /// `is_sync_progress`: not applied to RocketMQ jobs yet (said in the job's status).
    sync_progress: bool,
}

impl RocketJobPlan {
    /// The plan of a stored job document, or why it cannot run.
    pub(crate) fn of(body: &Value, secrets: &SecretBox) -> Result<RocketJobPlan, String> {
        let member =
            |cfg: &str, name: &str| super::revealed_member(body, secrets, cfg, name, "RocketMQ");
        let source = Endpoint::of(&member("source_config", "source_rocketmq")?)
            .map_err(|e| format!("source_rocketmq: {e}"))?;
        let sink = Endpoint::of(&member("sink_config", "sink_rocketmq")?)
            .map_err(|e| format!("sink_rocketmq: {e}"))?;
        let a = body
            .get("advance_config")
            .and_then(|c| c.get("rocketmq2rocketmq"))
            .filter(|v| v.is_object())
            .ok_or("advance_config.rocketmq2rocketmq is required to run a RocketMQ job")?;
        let text = |k: &str| {
            a.get(k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let topics = TopicSelector::parse(
            text("topics").as_deref(),
            text("topic_regex").as_deref(),
            "rocketmq2rocketmq",
        )?;
        // A timestamp may arrive as a number too.
        let seek = match a.get("seek_to") {
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => text("seek_to"),
        };
        let seek_to = SeekTo::parse(seek.as_deref())
            .map_err(|e| format!("advance_config.rocketmq2rocketmq.{e}"))?;
        let compress_alg = text("compress_alg").unwrap_or_else(|| "none".into());
        compression(&compress_alg).map_err(|e| format!("advance_config.rocketmq2rocketmq.{e}"))?;
        Ok(RocketJobPlan {
            source,
            sink,
            topics,
            seek_to,
            compress_alg,
            sync_progress: a
                .get("is_sync_progress")
                .is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true")),
        })
    }

    /// The source topics this job copies, of the cluster's copyable `topics`; on one cluster
    /// nothing (a copy would land in its own source).
    pub(crate) fn select(&self, topics: &[String]) -> Result<Vec<String>, String> {
        if self.source.servers() == self.sink.servers() {
            return Err(
                "source and sink are the same RocketMQ cluster: every copy would land in the \
                 topic it was read from"
                    .into(),
            );
        }
        let picked: Vec<String> = match &self.topics {
            TopicSelector::Names(names) => {
                let mut picked: Vec<String> = Vec::new();
                for n in names {
                    if !topics.contains(n) {
                        return Err(format!("topic {n} does not exist on the source cluster"));
                    }
                    if !picked.contains(n) {
                        picked.push(n.clone());
                    }
                }
                picked
            }
            TopicSelector::Regex(r) => topics.iter().filter(|t| r.is_match(t)).cloned().collect(),
        };
        if picked.is_empty() {
            return Err("no topic of the source cluster matches the job's topic_regex".into());
        }
        Ok(picked)
    }
}

/// A running RocketMQ→RocketMQ job.
pub(crate) struct RocketJobRun {
    pub(crate) engine: Weak<Engine>,
    pub(crate) job_id: String,
    pub(crate) plan: RocketJobPlan,
}

/// The target topic of the pair of a target queue's last copy (`{topic}@{broker}#{id}`): one
/// per queue, so that pruning, which keeps the greatest pair per target topic, keeps every
/// queue's.
pub fn copy_end_key(q: &Queue) -> String {
    format!("{}#{}", figures_topic(q), q.queue_id)
}

/// The figures' key of a source queue's topic: `{topic}@{broker}` (a RocketMQ topic name has
/// no `@`).
pub fn figures_topic(q: &Queue) -> String {
    format!("{}@{}", q.topic, q.broker)
}

/// Where each source queue's copies go.
struct Route {
    target: Queue,
    /// The topic's placement and this queue's index among its topic's queues, and the
    /// target topic's queues (for placement by key).
    placement: QueuePlacement,
    index: usize,
    targets: Arc<Vec<Queue>>,
}

/// What a run has once connected.
struct Prepared {
    consumer: Arc<MirrorConsumer>,
    producer: MirrorProducer,
    routes: HashMap<Queue, Route>,
    /// The topics copied and, per queue, the next offset to copy (the job's position).
    topics: Vec<String>,
    positions: BTreeMap<Queue, i64>,
    /// The source's admin client (re-reading `topic_regex`), until the watcher takes it.
    source_admin: Option<Admin>,
    /// The job's offset pairs, and when the older ones were last dropped.
    delivery: Arc<dyn DeliveryStore>,
    pruned_at: Instant,
}

impl RocketJobRun {
    fn group(&self) -> String {
        format!("openeg-router-{}", self.job_id)
    }

    /// What the sink status says while the copies go through.
    fn sink_note(&self) -> &'static str {
        if self.plan.sync_progress {
            SYNC_PROGRESS_NOTE
        } else {
            ""
        }
    }

    async fn prepare(
        &self,
        figures: &Arc<JobFigures>,
        delivery: &Arc<dyn DeliveryStore>,
    ) -> Result<Prepared, ErrorInfo> {
        let plan = &self.plan;
        let source_admin = Admin::connect(&plan.source).await.map_err(|e| {
            figures.set_source(SIDE_ABNORMAL, e.clone());
            fail(format!("connecting to the source cluster failed: {e}"))
        })?;
        figures.set_source(SIDE_NORMAL, "");
        let sink_admin = Admin::connect(&plan.sink).await.map_err(|e| {
            figures.set_sink(SIDE_ABNORMAL, e.clone());
            fail(format!("connecting to the sink cluster failed: {e}"))
        })?;
        figures.set_sink(SIDE_NORMAL, "");
        // Two name-server lists may front one cluster: compare brokers.
        let (a, b) = (
            source_admin.broker_addrs().await.map_err(fail)?,
            sink_admin.broker_addrs().await.map_err(fail)?,
        );
        if let Some(shared) = a.iter().find(|x| b.contains(x)) {
            return Err(fail(format!(
                "source and sink are the same RocketMQ cluster (broker {shared} is in both): \
                 every copy would land in the topic it was read from"
            )));
        }
        let all = source_admin
            .topics()
            .await
            .map_err(|e| fail(format!("listing the source cluster's topics failed: {e}")))?;
        let topics = plan.select(&all).map_err(fail)?;
        for t in &topics {
            let route = source_admin
                .route(t)
                .await
                .map_err(|e| fail(format!("reading the route of topic {t} failed: {e}")))?
                .ok_or_else(|| fail(format!("topic {t} has no queue on the source cluster")))?;
            sink_admin
                .ensure_topic(t, route.queues())
                .await
                .map_err(|e| {
                    figures.set_sink(SIDE_ABNORMAL, e.clone());
                    fail(e)
                })?;
        }
        let compress = compression(&plan.compress_alg).map_err(fail)?;
        let (producer, targets) =
            MirrorProducer::open(&plan.sink, &self.group(), compress, &topics)
                .await
                .map_err(|e| {
                    figures.set_sink(SIDE_ABNORMAL, e.clone());
                    fail(format!("the sink cluster cannot be written: {e}"))
                })?;
        // Queues the job read before, and from where (see `MirrorConsumer::open`).
        let cluster = plan.source.servers();
        let taken: HashMap<Queue, i64> = delivery
            .mirror_positions(&self.job_id, &cluster)
            .await
            .map_err(|e| fail(format!("reading the job's positions failed: {e}")))?
            .into_iter()
            .filter_map(|p| {
                let (topic, broker) = p.topic.split_once('@')?;
                Some((
                    Queue {
                        topic: topic.to_string(),
                        broker: broker.to_string(),
                        queue_id: p.partition,
                    },
                    p.source_offset.saturating_add(1),
                ))
            })
            .collect();
        // What this job copied into the source while it ran the other way (before a
        // switch-over) came from the sink: a queue starts after those copies, never below
        // them, so nothing goes back where it came from.
        let copied_back = delivery
            .mirror_copy_ends(&self.job_id, &plan.sink.servers())
            .await
            .map_err(|e| fail(format!("reading the job's positions failed: {e}")))?;
        let mut floors: HashMap<Queue, i64> = HashMap::new();
        for (key, queue_id, end) in copied_back {
            let Some((topic, broker)) = key.rsplit_once('#').and_then(|(t, _)| t.split_once('@'))
            else {
                continue;
            };
            let q = Queue {
                topic: topic.to_string(),
                broker: broker.to_string(),
                queue_id,
            };
            let after = end.saturating_add(1);
            let at = floors.entry(q).or_insert(after);
            *at = (*at).max(after);
        }
        let (consumer, starts) = MirrorConsumer::open(
            &plan.source,
            &self.group(),
            &topics,
            plan.seek_to,
            &taken,
            &floors,
        )
        .await
        .map_err(|e| {
            figures.set_source(SIDE_ABNORMAL, e.clone());
            fail(format!("the source cannot be read: {e}"))
        })?;
        for s in starts.iter().filter(|s| s.stale_floor.is_some()) {
            // The copies made into it going the other way are gone with it.
            tracing::warn!(job_id = %self.job_id, queue = ?s.queue, copies_end = ?s.stale_floor,
                max_offset = s.max_offset,
                "event-router job: the source queue holds less than the job copied into it \
                 before a switch-over (recreated?); those copies are forgotten");
            delivery
                .forget_mirror_target(
                    &self.job_id,
                    &plan.sink.servers(),
                    &copy_end_key(&s.queue),
                    s.queue.queue_id,
                )
                .await
                .map_err(|e| fail(format!("resetting the job's positions: {e}")))?;
        }
        // A queue read for the first time: where `seek_to` put it, so that a restart before
        // its first commit does not apply `seek_to` again (`last` would skip what came since).
        let first: Vec<MirrorPair> = starts
            .iter()
            .filter(|s| s.new)
            .map(|s| MirrorPair {
                topic: figures_topic(&s.queue),
                partition: s.queue.queue_id,
                source_offset: s.offset - 1,
                target_topic: s.queue.topic.clone(),
                target_partition: -1,
                target_offset: -1,
            })
            .collect();
        if !first.is_empty() {
            delivery
                .put_mirror_pairs(&self.job_id, &cluster, &first)
                .await
                .map_err(|e| fail(format!("storing the job's positions failed: {e}")))?;
        }
        let mut by_topic: BTreeMap<&str, Vec<&Queue>> = BTreeMap::new();
        for s in &starts {
            by_topic
                .entry(s.queue.topic.as_str())
                .or_default()
                .push(&s.queue);
        }
        let mut routes = HashMap::new();
        for (topic, source_queues) in &by_topic {
            let target_queues = Arc::new(targets.get(*topic).cloned().unwrap_or_default());
            let placement = QueuePlacement::new(source_queues.len(), target_queues.len());
            for (index, q) in source_queues.iter().enumerate() {
                let Some(target) = target_queues.get(placement.target(index, None)).cloned() else {
                    return Err(fail(format!("topic {topic} has no queue on the target")));
                };
                routes.insert(
                    (*q).clone(),
                    Route {
                        target,
                        placement,
                        index,
                        targets: target_queues.clone(),
                    },
                );
            }
        }
        for s in &starts {
            figures.advance(
                &figures_topic(&s.queue),
                s.queue.queue_id,
                &s.queue.topic,
                Some(s.offset),
                Some(s.max_offset),
            );
        }
        Ok(Prepared {
            consumer: Arc::new(consumer),
            producer,
            routes,
            topics,
            positions: starts.into_iter().map(|s| (s.queue, s.offset)).collect(),
            source_admin: Some(source_admin),
            delivery: delivery.clone(),
            pruned_at: Instant::now(),
        })
    }

    /// Copies one round: every queue's messages in order to their target queues (queues in
    /// parallel), then commits each queue's next offset. Returns `false` when stopped.
    async fn copy_round(
        &self,
        p: &mut Prepared,
        polled: Vec<Polled>,
        figures: &JobFigures,
        ready: &Ready,
        stop: &mut StopSignal,
    ) -> Result<bool, ErrorInfo> {
        let n = polled.len();
        // Per source queue, then per target queue, in read order.
        let mut per_queue: BTreeMap<Queue, Vec<Polled>> = BTreeMap::new();
        for m in polled {
            per_queue.entry(m.queue.clone()).or_default().push(m);
        }
        let mut sends: BTreeMap<Queue, Vec<Polled>> = BTreeMap::new();
        let mut next: Vec<(Queue, i64)> = Vec::new();
        for (q, msgs) in per_queue {
            let route = p.routes.get(&q).ok_or_else(|| {
                fail(format!(
                    "a message of queue {q:?}, which the job was not assigned"
                ))
            })?;
            if let Some(last) = msgs.last() {
                next.push((q.clone(), last.offset.saturating_add(1)));
            }
            for m in msgs {
                let target = if route.placement.keeps_queues() {
                    route.target.clone()
                } else {
                    let i = route.placement.target(route.index, m.keys());
                    route
                        .targets
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| route.target.clone())
                };
                sends.entry(target).or_default().push(m);
            }
        }
        // Each target queue's last copy of the round, for its pair (see below).
        let mut last_copies: Vec<MirrorPair> = Vec::with_capacity(sends.len());
        let mut failures = 0u32;
        let producer = &p.producer;
        while !sends.is_empty() {
            let results = join_all(
                sends
                    .iter()
                    .map(|(q, msgs)| async move { (q.clone(), producer.send(q, msgs).await) }),
            )
            .await;
            let mut why = None;
            for (q, r) in results {
                match r {
                    Ok(at) => {
                        let last = sends.remove(&q).and_then(|msgs| msgs.into_iter().last());
                        if let (Some(m), Some(at)) = (last, at) {
                            last_copies.push(MirrorPair {
                                topic: figures_topic(&m.queue),
                                partition: m.queue.queue_id,
                                source_offset: m.offset,
                                target_topic: copy_end_key(&q),
                                target_partition: q.queue_id,
                                target_offset: at,
                            });
                        }
                    }
                    Err((sent, e)) => {
                        if let Some(rest) = sends.get_mut(&q) {
                            rest.drain(..sent.min(rest.len()));
                        }
                        why = Some(format!("copying into topic {} failed: {e}", q.topic));
                    }
                }
            }
            let Some(why) = why else { break };
            failures += 1;
            tracing::warn!(job_id = %self.job_id, %why, failures,
                "event-router job: a copy failed; it is sent again");
            figures.set_sink(SIDE_ABNORMAL, why.clone());
            ready.not_ready(fail(why));
            tokio::select! {
                _ = stop.stopped() => return Ok(false),
                _ = tokio::time::sleep(backoff::delay(failures, None).min(MAX_RETRY_DELAY)) => {}
            }
        }
        if failures > 0 {
            figures.set_sink(SIDE_NORMAL, self.sink_note());
            ready.ready();
        }
        // Where the round's copies end in each target queue: a job switched over to read the
        // target starts there (`MirrorStore::mirror_copy_ends`). Stored before the commit.
        let cluster = self.plan.source.servers();
        p.delivery
            .put_mirror_pairs(&self.job_id, &cluster, &last_copies)
            .await
            .map_err(|e| fail(format!("storing the job's positions failed: {e}")))?;
        if p.pruned_at.elapsed() >= PRUNE_EVERY {
            // Per target queue only its last copy is needed (it has a target topic of its
            // own): one pair per source queue and target queue stays.
            p.pruned_at = Instant::now();
            for (q, o) in &p.positions {
                let topic = figures_topic(q);
                let pruned = p
                    .delivery
                    .prune_mirror_pairs(&self.job_id, &cluster, &topic, q.queue_id, *o)
                    .await;
                if let Err(e) = pruned {
                    tracing::warn!(job_id = %self.job_id, error = %e,
                        "event-router job: dropping old offset pairs failed (tried again later)");
                    break;
                }
            }
        }
        for (q, o) in next {
            figures.advance(&figures_topic(&q), q.queue_id, "", Some(o), None);
            p.positions.insert(q, o);
        }
        // Every queue's position each time: the client's commit reports no failure and its
        // broker update is one-way, so a lost one is made good by the next round.
        p.consumer
            .commit(p.positions.iter().map(|(q, o)| (q.clone(), *o)).collect())
            .await
            .map_err(|e| fail(format!("committing the job's position failed: {e}")))?;
        figures.copied.add(n as u64);
        Ok(true)
    }
}

#[async_trait::async_trait]
impl Runtime for RocketJobRun {
    async fn run(&self, mut stop: StopSignal, ready: Ready) -> Result<(), ErrorInfo> {
        let (mut end, delivery) = FiguresEnd::begin(&self.engine, &self.job_id, true)?;
        let figures = end.figures.clone();
        let prepared = tokio::select! {
            _ = stop.stopped() => { end.failed = false; return Ok(()); }
            p = self.prepare(&figures, &delivery) => p?,
        };
        if self.plan.sync_progress {
            tracing::warn!(job_id = %self.job_id,
                "event-router job: is_sync_progress is not applied to RocketMQ jobs yet; \
                 consumer-group offsets are not translated");
            figures.set_sink(SIDE_NORMAL, SYNC_PROGRESS_NOTE);
        }
        ready.ready();
        let mut prepared = prepared;
        // Queue ends (syncDetail's `max_offset`) and topology checks run beside the copy.
        let (changed_tx, mut changed) = tokio::sync::watch::channel(None::<String>);
        let watcher = tokio::spawn(watch_source(
            prepared.consumer.clone(),
            figures.clone(),
            prepared.positions.keys().cloned().collect(),
            prepared.topics.clone(),
            match &self.plan.topics {
                TopicSelector::Regex(_) => {
                    prepared.source_admin.take().map(|a| (a, self.plan.clone()))
                }
                TopicSelector::Names(_) => None,
            },
            changed_tx,
        ));
        let _watcher = AbortOnDrop(watcher);
        // A poll is never cancelled: what it takes from the consumer is copied, or the run
        // ends and a restart reads it again from the committed offsets.
        let result = loop {
            if stop.is_stopped() {
                break Ok(());
            }
            if let Some(why) = changed.borrow_and_update().clone() {
                tracing::info!(job_id = %self.job_id, %why, "event-router job: restarting");
                break Err(fail(format!("{why}: the job restarts to read them")));
            }
            let polled = match prepared.consumer.poll(POLL_WAIT, ROUND, ROUND_BYTES).await {
                Ok(p) => p,
                Err(e) => break Err(fail(format!("reading the source failed: {e}"))),
            };
            if polled.is_empty() {
                continue;
            }
            match self
                .copy_round(&mut prepared, polled, &figures, &ready, &mut stop)
                .await
            {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        end.failed = result.is_err();
        result
    }
}

/// A task aborted when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Beside the copy: every [`PROGRESS_EVERY`] reads the queues' ends into the figures (a
/// broker that does not answer marks the source `ABNORMAL`); every [`TOPOLOGY_EVERY`] reads
/// the topics' queues again (and with `topic_regex` the matching topics), and reports a
/// change through `changed`.
async fn watch_source(
    consumer: Arc<MirrorConsumer>,
    figures: Arc<JobFigures>,
    queues: Vec<Queue>,
    topics: Vec<String>,
    regex: Option<(Admin, RocketJobPlan)>,
    changed: tokio::sync::watch::Sender<Option<String>>,
) {
    let mut last_topology = tokio::time::Instant::now();
    // Since when the backlog has waited without a message read, and the positions then.
    let mut stalled: Option<(tokio::time::Instant, u64)> = None;
    loop {
        match consumer.max_offsets(queues.clone()).await {
            Ok((ends, failed)) => {
                for (q, max) in ends {
                    figures.advance(&figures_topic(&q), q.queue_id, "", None, Some(max));
                }
                match failed {
                    Some(e) => figures.set_source(SIDE_ABNORMAL, e),
                    None => match stall(&figures, consumer.polled(), &mut stalled) {
                        Some(why) => figures.set_source(SIDE_ABNORMAL, why),
                        None => figures.set_source(SIDE_NORMAL, ""),
                    },
                }
            }
            Err(e) => figures.set_source(SIDE_ABNORMAL, e),
        }
        if last_topology.elapsed() >= TOPOLOGY_EVERY {
            last_topology = tokio::time::Instant::now();
            if let Ok(now) = consumer.queues(topics.clone()).await {
                if now != queues {
                    let _ = changed.send(Some("the copied topics' queues changed".into()));
                    return;
                }
            }
            if let Some((admin, plan)) = &regex {
                if let Ok(Ok(picked)) = admin.topics().await.map(|all| plan.select(&all)) {
                    if picked != topics {
                        let _ = changed.send(Some("topics matching topic_regex changed".into()));
                        return;
                    }
                }
            }
        }
        tokio::time::sleep(PROGRESS_EVERY).await;
    }
}

/// Whether the backlog has waited [`STALLED_AFTER`] without a message read (`read`: the
/// messages polled so far) while the target takes copies (a failing target is the sink's
/// report); `stalled` carries the state between calls.
fn stall(
    figures: &JobFigures,
    read: u64,
    stalled: &mut Option<(tokio::time::Instant, u64)>,
) -> Option<String> {
    let queues = figures.snapshot();
    let waiting: i64 = queues.values().map(|f| (f.high - f.next).max(0)).sum();
    let sink_failing = figures
        .sink
        .lock()
        .ok()
        .and_then(|s| s.clone())
        .is_some_and(|(status, _)| status == SIDE_ABNORMAL);
    if waiting == 0 || sink_failing {
        *stalled = None;
        return None;
    }
    match stalled {
        Some((since, at)) if *at == read => (since.elapsed() >= STALLED_AFTER).then(|| {
            format!(
                "{waiting} messages have waited {} s and none could be read: check that the \
                 job's consumer group (openeg-router-{{job id}}) may read the topics (the \
                 client reports no error)",
                since.elapsed().as_secs()
            )
        }),
        _ => {
            *stalled = Some((tokio::time::Instant::now(), read));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test(start_paused = true)]
    async fn a_backlog_that_does_not_move_is_reported_after_a_while() {
        let f = JobFigures::default();
        let mut stalled = None;
        f.advance("t@b", 0, "t", Some(5), Some(5));
        assert_eq!(stall(&f, 5, &mut stalled), None, "nothing waits");
        f.advance("t@b", 0, "", None, Some(9));
        assert_eq!(stall(&f, 5, &mut stalled), None, "starts the clock");
        tokio::time::advance(STALLED_AFTER).await;
        let why = stall(&f, 5, &mut stalled).expect("stalled");
        assert!(why.starts_with("4 messages have waited 30 s"), "{why}");
        // A failing target explains it already.
        f.set_sink(SIDE_ABNORMAL, "refused");
        assert_eq!(stall(&f, 5, &mut stalled), None);
        f.set_sink(SIDE_NORMAL, "");
        assert_eq!(stall(&f, 5, &mut stalled), None, "starts the clock again");
        // Messages polled (a long round still being copied) restart the clock.
        tokio::time::advance(STALLED_AFTER / 2).await;
        assert_eq!(stall(&f, 7, &mut stalled), None);
        tokio::time::advance(STALLED_AFTER / 2).await;
        assert_eq!(stall(&f, 7, &mut stalled), None);
    }

    fn secrets() -> SecretBox {
        SecretBox::from_key_base64("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=").unwrap()
    }

    fn job(r2r: Value) -> Value {
        json!({
            "source_type": "ROCKETMQ",
            "source_config": {"source_rocketmq": {"address": "127.0.0.1:9876",
                "cluster_alias": "a", "acl_open": true, "user_name": "u",
                "password": secrets().encrypt("the-pw")}},
            "sink_config": {"sink_rocketmq": {"address": "127.0.0.2:9876", "ssl_open": "false"}},
            "advance_config": {"rocketmq2rocketmq": r2r},
        })
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn plans() {
        let p = RocketJobPlan::of(
            &job(json!({"topics": "a, b, a", "seek_to": "last",
            "compress_alg": "lz4", "is_sync_progress": false})),
            &secrets(),
        )
        .unwrap();
        assert_eq!(p.seek_to, SeekTo::Last);
        assert_eq!(p.source.settings.acl, Some(("u".into(), "the-pw".into())));
        assert!(!format!("{p:?}").contains("the-pw"));
        assert_eq!(
            p.select(&names(&["a", "b", "c"])).unwrap(),
            names(&["a", "b"])
        );
        let e = p.select(&names(&["a"])).unwrap_err();
        assert!(e.contains("topic b does not exist"), "{e}");
        let p = RocketJobPlan::of(
            &job(json!({"topic_regex": "or.*", "topics": "",
            "seek_to": 1_700_000_000_000u64})),
            &secrets(),
        )
        .unwrap();
        assert_eq!(p.seek_to, SeekTo::Timestamp(1_700_000_000_000));
        assert_eq!(
            p.select(&names(&["orders", "xorders", "or"])).unwrap(),
            names(&["orders", "or"])
        );
        assert!(p.select(&names(&["x"])).is_err());
        // Defaults: every queue from its first message, no compression.
        let p = RocketJobPlan::of(&job(json!({"topics": "a"})), &secrets()).unwrap();
        assert_eq!(
            (p.seek_to, p.compress_alg.as_str()),
            (SeekTo::First, "none")
        );
        for bad in [
            json!({"topics": "a", "seek_to": "soon"}),
            json!({"topics": "a", "compress_alg": "brotli"}),
            json!({"topic_regex": "("}),
            json!({}),
        ] {
            assert!(
                RocketJobPlan::of(&job(bad.clone()), &secrets()).is_err(),
                "{bad}"
            );
        }
        let mut same = job(json!({"topics": "a"}));
        same["sink_config"]["sink_rocketmq"]["address"] = json!("127.0.0.1:9876");
        let p = RocketJobPlan::of(&same, &secrets()).unwrap();
        assert!(p
            .select(&names(&["a"]))
            .unwrap_err()
            .contains("same RocketMQ cluster"));
        assert!(RocketJobPlan::of(&json!({"source_type": "ROCKETMQ"}), &secrets()).is_err());
    }
}
