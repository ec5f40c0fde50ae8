//! Event-router jobs that copy one Kafka cluster into another (`kafka2kafka`,
//! `docs/router-jobs.md`).
//!
//! A started job ([`KafkaJobRun`]) connects to both clusters, picks the source topics
//! (`topics`, or `topic_regex` over the source's topics), makes sure each has its target topic
//! on the sink (created with the source's partition count and `replica_cnt` replicas when it
//! is missing) and runs one pipeline per topic: a Kafka source that hands out the records as
//! read (`openeg_connectors::sources::kafka::build_mirror`) into a [`MirrorWriter`], under
//! the same loop as event streams ([`crate::stream::drive`]).
//!
//! Invariants:
//! * A record's copy keeps its key, value (a tombstone stays one), headers (in order) and
//!   timestamp. It keeps its partition number when the target topic has at least as many
//!   partitions, else it goes by key hash (`openeg_connectors::mirror::Placement`).
//! * The job's committed position is its stored offset pairs (`openeg_store::mirror`): a
//!   batch's pairs are written after the sink acknowledged every copy (`acks=all`) and before
//!   the source is told the batch is done. A restart copies from the greatest pair + 1 of each
//!   partition, so nothing is skipped; what was copied and not committed is copied again.
//! * Pairs are stored for the run's first record of a partition, wherever the target offsets
//!   stop being consecutive, at least every [`PAIR_EVERY`] records, and for each batch's last
//!   record: between two consecutive pairs the copies sit at consecutive target offsets, which
//!   is what translating a consumer group's offset needs.
//! * A copy that fails is sent again (1 s doubling to 60 s); the partition waits meanwhile. A
//!   mirror drops nothing, so the job shows `ERROR` with the failure until the sink takes it.

use super::{fail, FiguresEnd};
use crate::metrics::{JobFigures, PartitionFigures, SIDE_ABNORMAL, SIDE_NORMAL};
use crate::stream::{drive, DRAIN};
use crate::supervisor::{ErrorInfo, Ready, Runtime, StopSignal};
use crate::Engine;
use futures_util::future::join_all;
use openeg_connectors::backoff;
use openeg_connectors::mirror::kafka::{Admin, Copy, Endpoint, MirrorProducer, TopicInfo};
use openeg_connectors::mirror::Placement;
use openeg_connectors::sources::{
    kafka as kafka_source, AppendError, BuildContext, DurableLog, Source, SourceRecord, SourceSpec,
};
use openeg_connectors::Outcome;
use openeg_store::mirror::MirrorPair;
use openeg_store::secrets::SecretBox;
use openeg_store::DeliveryStore;
use serde_json::Value;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// The partition of the pair that records a topic's partition count (its source offset).
const TOPIC_MARK: i32 = -1;
/// At most this many records pass between two stored pairs of a partition.
pub const PAIR_EVERY: u32 = 100;
/// Records per batch a job's source hands out.
const BATCH: usize = 1000;
/// How long a partial batch waits for more records.
const BATCH_WAIT: Duration = Duration::from_millis(50);
/// How often the source's watermarks are read (syncDetail's `max_offset`).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How often the source's topics are listed again: a topic `topic_regex` now picks (or no
/// longer does), or a copied topic's added partitions, restart the run, which reads them.
const TOPOLOGY_EVERY: Duration = Duration::from_secs(30);
/// Partitions standing still below their end read per progress round (each read can take up
/// to a request timeout: the round's other work must not wait long).
const PROBES_PER_ROUND: usize = 4;
/// Longest wait between two attempts of a failing batch.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);
/// How a sink status found by the group sync begins (it clears once a round succeeds).
pub(crate) const GROUP_NOTE: &str = "translating consumer-group offsets: ";
/// Headers a copy gets with `is_add_header`.
pub const ORIGIN_TOPIC: &str = "eg-origin-topic";
pub const ORIGIN_PARTITION: &str = "eg-origin-partition";
pub const ORIGIN_OFFSET: &str = "eg-origin-offset";

/// Which source topics a job copies.
#[derive(Debug, Clone)]
pub(crate) enum TopicSelector {
    Names(Vec<String>),
    /// Anchored: the whole name must match (as Java's `matches()`).
    Regex(regex::Regex),
}

impl TopicSelector {
    /// `topics` (comma-separated names) when given, else `topic_regex` (anchored); `member`
    /// names the advanced-configuration object in errors.
    pub(crate) fn parse(
        topics: Option<&str>,
        regex: Option<&str>,
        member: &str,
    ) -> Result<TopicSelector, String> {
        match (topics, regex) {
            (Some(t), _) => Ok(TopicSelector::Names(
                t.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            )),
            (None, Some(r)) => regex::Regex::new(&format!("^(?:{r})$"))
                .map(TopicSelector::Regex)
                .map_err(|e| format!("advance_config.{member}.topic_regex: {e}")),
            (None, None) => Err(format!(
                "advance_config.{member} has neither topics nor topic_regex"
            )),
        }
    }
}

/// What a Kafka→Kafka job runs with, read from its document (secrets revealed: no `Debug`).
#[derive(Clone)]
pub(crate) struct KafkaJobPlan {
    /// The `source_kafka` object, password revealed, for the source's consumers.
    source_member: Value,
    source: Endpoint,
    sink: Endpoint,
    /// The `cluster_alias` of the cluster the job copied from when it was made (`rename_topic`
    /// prefixes it).
    source_alias: String,
    /// Selection, mappings and renaming are written from the first source's side; a job
    /// switched over (`_switched`) reads its copies and writes into their origins.
    switched: bool,
    topics: TopicSelector,
    mappings: Vec<(String, String)>,
    rename: bool,
    seek_to: &'static str,
    compress_alg: String,
    replicas: i32,
    add_header: bool,
    /// `is_sync_progress`: translate the source's consumer-group offsets onto the sink.
    sync_progress: bool,
}

impl KafkaJobPlan {
    /// The plan of a stored job document, or why it cannot run.
    pub(crate) fn of(body: &Value, secrets: &SecretBox) -> Result<KafkaJobPlan, String> {
        let member =
            |cfg: &str, name: &str| super::revealed_member(body, secrets, cfg, name, "Kafka");
        let source_member = member("source_config", "source_kafka")?;
        let sink_member = member("sink_config", "sink_kafka")?;
        let source = Endpoint::of(&source_member).map_err(|e| format!("source_kafka: {e}"))?;
        let sink = Endpoint::of(&sink_member).map_err(|e| format!("sink_kafka: {e}"))?;
        let a = body
            .get("advance_config")
            .and_then(|c| c.get("kafka2kafka"))
            .filter(|v| v.is_object())
            .ok_or("advance_config.kafka2kafka is required to run a Kafka job")?;
        let text = |v: &Value, k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let flag = |k: &str| a.get(k).and_then(Value::as_bool).unwrap_or(false);
        let topics = TopicSelector::parse(
            text(a, "topics").as_deref(),
            text(a, "topic_regex").as_deref(),
            "kafka2kafka",
        )?;
        let mappings = a
            .get("topic_mappings")
            .and_then(Value::as_array)
            .map(|m| {
                m.iter()
                    .filter_map(|e| Some((text(e, "source_topic")?, text(e, "sink_topic")?)))
                    .collect()
            })
            .unwrap_or_default();
        let replicas = match a.get("replica_cnt") {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => Some(1),
        }
        .and_then(|n| i32::try_from(n).ok())
        .filter(|n| *n > 0)
        .ok_or("advance_config.kafka2kafka.replica_cnt is not a positive count")?;
        let switched = body
            .get("_switched")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let first_source = if switched {
            &sink_member
        } else {
            &source_member
        };
        Ok(KafkaJobPlan {
            source_alias: text(first_source, "cluster_alias").unwrap_or_default(),
            switched,
            source_member,
            source,
            sink,
            topics,
            mappings,
            rename: flag("rename_topic"),
            // A disaster-recovery copy starts with what the topic holds unless told otherwise.
            seek_to: match text(a, "seek_to").as_deref() {
                Some("latest") => "latest",
                _ => "earliest",
            },
            compress_alg: text(a, "compress_alg").unwrap_or_else(|| "none".into()),
            replicas,
            add_header: flag("is_add_header"),
            sync_progress: flag("is_sync_progress"),
        })
    }

    /// The sink topic of source topic `src`. As made: a `topic_mappings` entry, else with
    /// `rename_topic` `{source cluster_alias}.{src}` (as DMS Smart Connect names copies),
    /// else `src`. Switched over: the topic `src` is the copy of ([`Self::origin_of`]).
    pub(crate) fn target_topic(&self, src: &str) -> String {
        if self.switched {
            return self.origin_of(src).unwrap_or_else(|| src.to_string());
        }
        self.copy_of(src)
    }

    /// Where the job as made copies topic `src`.
    fn copy_of(&self, src: &str) -> String {
        if let Some((_, t)) = self.mappings.iter().find(|(s, _)| s == src) {
            return t.clone();
        }
        if self.rename && !self.source_alias.is_empty() {
            return format!("{}.{src}", self.source_alias);
        }
        src.to_string()
    }

    /// Whether the job as made copies topic `src`.
    fn selects(&self, src: &str) -> bool {
        match &self.topics {
            TopicSelector::Names(names) => names.iter().any(|n| n == src),
            TopicSelector::Regex(r) => !src.starts_with("__") && r.is_match(src),
        }
    }

    /// The topic the job as made copies into `copy`, if any: a mapped name, the name without
    /// the alias prefix, or `copy` itself, whichever the job selects and copies there.
    fn origin_of(&self, copy: &str) -> Option<String> {
        let prefix = format!("{}.", self.source_alias);
        let renamed = (self.rename && !self.source_alias.is_empty())
            .then(|| copy.strip_prefix(&prefix))
            .flatten();
        self.mappings
            .iter()
            .filter(|(_, t)| t == copy)
            .map(|(s, _)| s.as_str())
            .chain(renamed)
            .chain(std::iter::once(copy))
            .find(|c| self.selects(c) && self.copy_of(c) == copy)
            .map(str::to_string)
    }

    /// Whether source and sink are one cluster (then a copy must not land in a copied topic).
    fn same_cluster(&self) -> bool {
        self.source.servers() == self.sink.servers()
    }

    /// The source topics this job copies, of the cluster's `topics`: internal ones (`__…`)
    /// never, and on a single cluster never a topic the job writes into.
    pub(crate) fn select(&self, topics: &[TopicInfo]) -> Result<Vec<TopicInfo>, String> {
        let picked: Vec<TopicInfo> = match &self.topics {
            // Switched over: the copies of the selected topics, named as the job made them.
            TopicSelector::Names(names) if self.switched => {
                let mut out = Vec::new();
                for n in names {
                    let copy = self.copy_of(n);
                    match topics.iter().find(|t| t.name == copy) {
                        Some(t) => out.push(t.clone()),
                        None => {
                            return Err(format!(
                                "topic {copy} (the copy of {n}; the job is switched over) does \
                                 not exist on the source cluster"
                            ))
                        }
                    }
                }
                out
            }
            TopicSelector::Regex(_) if self.switched => topics
                .iter()
                .filter(|t| self.origin_of(&t.name).is_some())
                .cloned()
                .collect(),
            TopicSelector::Names(names) => {
                let mut out = Vec::new();
                for n in names {
                    match topics.iter().find(|t| &t.name == n) {
                        Some(t) => out.push(t.clone()),
                        None => {
                            return Err(format!("topic {n} does not exist on the source cluster"))
                        }
                    }
                }
                out
            }
            TopicSelector::Regex(r) => {
                let matching: Vec<&TopicInfo> = topics
                    .iter()
                    .filter(|t| !t.name.starts_with("__") && r.is_match(&t.name))
                    .collect();
                // On one cluster the job's own copies may match too (made by an earlier run):
                // they are not sources.
                let own: Vec<String> = if self.same_cluster() {
                    matching
                        .iter()
                        .map(|t| self.target_topic(&t.name))
                        .collect()
                } else {
                    Vec::new()
                };
                matching
                    .into_iter()
                    .filter(|t| !own.contains(&t.name) || self.target_topic(&t.name) == t.name)
                    .cloned()
                    .collect()
            }
        };
        if self.same_cluster() {
            let targets: Vec<String> = picked.iter().map(|t| self.target_topic(&t.name)).collect();
            if let Some(t) = picked.iter().find(|t| targets.contains(&t.name)) {
                return Err(format!(
                    "source and sink are the same cluster and topic {} would be copied into a \
                     topic this job copies",
                    t.name
                ));
            }
        }
        if picked.is_empty() {
            return Err("no topic of the source cluster matches the job's topic_regex".into());
        }
        Ok(picked)
    }
}

/// A running Kafka→Kafka job.
pub(crate) struct KafkaJobRun {
    pub(crate) engine: Weak<Engine>,
    pub(crate) job_id: String,
    pub(crate) node_name: String,
    pub(crate) plan: KafkaJobPlan,
}

/// One topic's pipeline before it runs.
struct Pipeline {
    source: kafka_source::KafkaSource,
    writer: Arc<MirrorWriter>,
}

/// A source topic the job copies, and where.
#[derive(Debug, Clone)]
struct Mirrored {
    topic: TopicInfo,
    target: String,
    placement: Placement,
}

/// What a run has once connected: its pipelines, both clusters and its topics.
struct Prepared {
    pipelines: Vec<Pipeline>,
    /// Per source partition, where the copies the job made into it going the other way end.
    floors: HashMap<(String, i32), i64>,
    source_admin: Admin,
    sink_admin: Admin,
    topics: Vec<Mirrored>,
}

impl KafkaJobRun {
    fn group(&self) -> String {
        format!("openeg-router-{}", self.job_id)
    }

    /// Connects, ensures the target topics and builds one pipeline per topic.
    async fn prepare(
        &self,
        figures: &Arc<JobFigures>,
        delivery: &Arc<dyn DeliveryStore>,
        ready: &Ready,
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
        let all = source_admin
            .topics()
            .await
            .map_err(|e| fail(format!("listing the source cluster's topics failed: {e}")))?;
        let topics = plan.select(&all).map_err(fail)?;
        let producer = Arc::new(
            MirrorProducer::new(&plan.sink, &plan.compress_alg)
                .map_err(|e| fail(format!("the sink cluster cannot be written: {e}")))?,
        );
        let cluster = plan.source.servers();
        let positions = delivery
            .mirror_positions(&self.job_id, &cluster)
            .await
            .map_err(|e| fail(format!("reading the job's positions failed: {e}")))?;
        // Per partition the next offset to copy (a start marker says where a partition that
        // has copied nothing yet starts); per topic the partition count the job knew.
        let mut stored: HashMap<(String, i32), i64> = HashMap::new();
        let mut known_partitions: HashMap<String, i32> = HashMap::new();
        for p in positions {
            if p.partition == TOPIC_MARK {
                let n = i32::try_from(p.source_offset).unwrap_or(i32::MAX);
                known_partitions.insert(p.topic, n);
            } else {
                stored.insert((p.topic, p.partition), p.source_offset.saturating_add(1));
            }
        }
        // What this job copied into the source while it ran the other way (before a
        // switch-over) came from the sink: a partition starts after those copies, never
        // below them, so nothing goes back where it came from.
        let copied_back: HashMap<(String, i32), i64> = delivery
            .mirror_copy_ends(&self.job_id, &plan.sink.servers())
            .await
            .map_err(|e| fail(format!("reading the job's positions failed: {e}")))?
            .into_iter()
            .map(|(t, p, o)| ((t, p), o.saturating_add(1)))
            .collect();
        let failing = Arc::new(AtomicUsize::new(0));
        let mut floors = HashMap::new();
        let mut pipelines = Vec::new();
        let mut mirrored = Vec::new();
        for t in &topics {
            let target = plan.target_topic(&t.name);
            let n_dst = sink_admin
                .ensure_topic(&target, t.partitions, plan.replicas)
                .await
                .map_err(|e| {
                    figures.set_sink(SIDE_ABNORMAL, e.clone());
                    fail(e)
                })?;
            let parts: Vec<i32> = (0..t.partitions).collect();
            let committed: HashMap<i32, i64> = source_admin
                .committed(&self.group(), &t.name, &parts)
                .await
                .map_err(|e| fail(format!("reading the job's group offsets failed: {e}")))?
                .into_iter()
                .collect();
            let marks = source_admin
                .watermarks(&t.name, &parts)
                .await
                .map_err(|e| fail(format!("reading the source's watermarks failed: {e}")))?;
            let mut start_offsets = HashMap::new();
            // Partitions beyond the count the job knew were added since: copied whole.
            let known = known_partitions.get(&t.name).copied();
            let mut markers = Vec::new();
            for (p, low, high) in marks {
                // The job's own pairs are its commit; the group follows them (asynchronously).
                let key = (t.name.clone(), p);
                let mut own = stored.get(&key).or(committed.get(&p)).copied();
                if let Some(o) = own.filter(|o| *o > high) {
                    // Recreated or truncated: the pairs describe records that are gone, and
                    // what the partition holds now was never copied.
                    tracing::warn!(job_id = %self.job_id, topic = %t.name, partition = p,
                        position = o, high,
                        "event-router job: the source partition is behind the job's position \
                         (recreated?); copying it from its start");
                    delivery
                        .forget_mirror_partition(&self.job_id, &cluster, &t.name, p)
                        .await
                        .map_err(|e| fail(format!("resetting the job's positions: {e}")))?;
                    own = Some(low);
                }
                let mut floor = copied_back.get(&key).copied();
                if let Some(f) = floor.filter(|f| *f > high) {
                    // The copies made into it going the other way are gone with it.
                    tracing::warn!(job_id = %self.job_id, topic = %t.name, partition = p,
                        copies_end = f, high,
                        "event-router job: the source partition holds less than the job copied \
                         into it before a switch-over (recreated?); those copies are forgotten");
                    delivery
                        .forget_mirror_target(&self.job_id, &plan.sink.servers(), &t.name, p)
                        .await
                        .map_err(|e| fail(format!("resetting the job's positions: {e}")))?;
                    floor = None;
                }
                if let Some(f) = floor {
                    floors.insert(key.clone(), f);
                }
                let at = match own.into_iter().chain(floor).max() {
                    None if plan.seek_to == "latest" && known.is_none_or(|n| p < n) => high,
                    None => low,
                    Some(o) if o < low => {
                        tracing::warn!(job_id = %self.job_id, topic = %t.name, partition = p,
                            position = o, low,
                            "event-router job: records after the job's position were removed \
                             by the source's retention before they were copied");
                        low
                    }
                    Some(o) => o,
                };
                if !stored.contains_key(&key) {
                    // Where it starts, so that a restart before its first copy starts there
                    // again rather than applying `seek_to` anew.
                    markers.push(MirrorPair {
                        topic: t.name.clone(),
                        partition: p,
                        source_offset: at.saturating_sub(1),
                        target_topic: String::new(),
                        target_partition: -1,
                        target_offset: -1,
                    });
                }
                start_offsets.insert(p, at);
                figures.advance(&t.name, p, &target, Some(at), Some(high));
            }
            if known.is_some_and(|n| n > t.partitions) {
                // Fewer partitions than before (recreated): the greater count must go.
                delivery
                    .forget_mirror_partition(&self.job_id, &cluster, &t.name, TOPIC_MARK)
                    .await
                    .map_err(|e| fail(format!("resetting the job's positions: {e}")))?;
            }
            if known != Some(t.partitions) {
                markers.push(MirrorPair {
                    topic: t.name.clone(),
                    partition: TOPIC_MARK,
                    source_offset: i64::from(t.partitions),
                    target_topic: String::new(),
                    target_partition: -1,
                    target_offset: -1,
                });
            }
            delivery
                .put_mirror_pairs(&self.job_id, &cluster, &markers)
                .await
                .map_err(|e| fail(format!("storing the job's positions failed: {e}")))?;
            let spec = SourceSpec {
                kind: kafka_source::KIND.into(),
                // Every partition starts at an explicit offset; one found out of range (retention
                // moved past it meanwhile) restarts at the earliest record left, never the end.
                detail: Endpoint::consumer_detail(
                    &plan.source_member,
                    &t.name,
                    &self.group(),
                    "earliest",
                ),
            };
            let ctx = BuildContext {
                resource_id: self.job_id.clone(),
                node_name: self.node_name.clone(),
                resource_name: self.job_id.clone(),
                batch_interval: BATCH_WAIT,
                lag: None,
                start_offsets,
            };
            let source = kafka_source::build_mirror(&spec, &ctx)
                .map_err(|e| fail(format!("the source cannot be read: {e}")))?;
            let placement = Placement::new(t.partitions, n_dst);
            mirrored.push(Mirrored {
                topic: t.clone(),
                target: target.clone(),
                placement,
            });
            pipelines.push(Pipeline {
                source,
                writer: Arc::new(MirrorWriter {
                    job_id: self.job_id.clone(),
                    cluster: cluster.clone(),
                    target_topic: target,
                    placement,
                    producer: producer.clone(),
                    add_header: plan.add_header,
                    delivery: delivery.clone(),
                    figures: figures.clone(),
                    ready: ready.clone(),
                    failing: failing.clone(),
                    marks: Mutex::new(HashMap::new()),
                }),
            });
        }
        Ok(Prepared {
            pipelines,
            floors,
            source_admin,
            sink_admin,
            topics: mirrored,
        })
    }
}

#[async_trait::async_trait]
impl Runtime for KafkaJobRun {
    async fn run(&self, mut stop: StopSignal, ready: Ready) -> Result<(), ErrorInfo> {
        let (mut end, delivery) = FiguresEnd::begin(&self.engine, &self.job_id, true)?;
        let figures = end.figures.clone();
        let prepared = tokio::select! {
            _ = stop.stopped() => { end.failed = false; return Ok(()); }
            p = self.prepare(&figures, &delivery, &ready) => p?,
        };
        let Prepared {
            pipelines,
            floors,
            source_admin,
            sink_admin,
            topics,
        } = prepared;
        let groups = self.plan.sync_progress.then(|| GroupSync {
            sink: sink_admin.clone(),
            delivery: delivery.clone(),
            job_id: self.job_id.clone(),
            cluster: self.plan.source.servers(),
            floors,
        });
        let prune = Prune {
            delivery: delivery.clone(),
            job_id: self.job_id.clone(),
            cluster: self.plan.source.servers(),
            done: Mutex::new(HashMap::new()),
        };
        // The pipelines' own stop: sent on every way out of the run (a stop, a restart, one
        // pipeline failing), so each finishes the batches it has in flight first.
        let (halt, halted) = tokio::sync::watch::channel(false);
        let halt = Arc::new(halt);
        let mut runs = Vec::new();
        for mut p in pipelines {
            tokio::select! {
                _ = stop.stopped() => { end.failed = false; return Ok(()); }
                c = p.source.connect() => c.map_err(|e| {
                    figures.set_source(SIDE_ABNORMAL, e.to_string());
                    fail(format!("connecting to the source failed: {e}"))
                })?,
            }
            let (halt, halted) = (halt.clone(), StopSignal(halted.clone()));
            runs.push(async move {
                let mut source = p.source;
                let writer = p.writer.clone();
                let r = drive(&mut source, p.writer, BATCH, halted).await;
                if r.is_err() {
                    halt.send_replace(true);
                }
                // Closing a consumer or the producer blocks: not on the async threads.
                tokio::task::spawn_blocking(move || drop((source, writer)));
                r
            });
        }
        ready.ready();
        let mut pipelines = Box::pin(join_all(runs));
        let (result, ended) = tokio::select! {
            _ = stop.stopped() => (Ok(()), false),
            r = &mut pipelines => (r.into_iter().find_map(Result::err).map_or(Ok(()), Err), true),
            why = progress(&self.plan, &source_admin, &topics, &figures, groups.as_ref(), &prune)
                => {
                tracing::info!(job_id = %self.job_id, %why, "event-router job: restarting");
                (Err(fail(format!("{why}: the job restarts to read them"))), false)
            }
        };
        // The batches in flight finish and their pairs are stored (within [`DRAIN`]): the
        // next run, or the job switched over, copies none of those copies again.
        halt.send_replace(true);
        if !ended {
            let _ = tokio::time::timeout(DRAIN + Duration::from_millis(500), &mut pipelines).await;
        }
        end.failed = result.is_err();
        // Closing Kafka clients blocks (a producer flushes, an admin client joins its
        // thread): not on the async threads.
        let clients = (pipelines, source_admin, sink_admin, groups);
        tokio::task::spawn_blocking(move || drop(clients));
        result
    }
}

/// Every [`PROGRESS_EVERY`]: reads the source's watermarks (syncDetail's `max_offset`; a failed
/// read marks the source `ABNORMAL`, the copy goes on where it can), drops the offset pairs no
/// translation can need any more (below the low watermark: those records are gone), and with
/// `is_sync_progress` translates the consumer groups' offsets ([`GroupSync`]). Every
/// [`TOPOLOGY_EVERY`] it lists the source's topics: when the job would now copy other topics or
/// partitions, it returns why (the run restarts). A partition whose copy stood still below
/// its end for a whole round is read once from its position ([`Admin::records_between`]): when
/// nothing readable lies there (transaction markers, aborted records), its figures record that
/// end (`empty_to`), so `sync_remain_total` counts only records.
async fn progress(
    plan: &KafkaJobPlan,
    admin: &Admin,
    topics: &[Mirrored],
    figures: &JobFigures,
    groups: Option<&GroupSync>,
    prune: &Prune,
) -> String {
    let copied: Vec<TopicInfo> = topics.iter().map(|t| t.topic.clone()).collect();
    let mut listed_at = tokio::time::Instant::now();
    // Per partition behind its end: (next, high) last round, and whether it was read since.
    let mut behind: HashMap<(String, i32), (i64, i64, bool)> = HashMap::new();
    loop {
        tokio::time::sleep(PROGRESS_EVERY).await;
        if listed_at.elapsed() >= TOPOLOGY_EVERY {
            listed_at = tokio::time::Instant::now();
            // A failed listing changes nothing (the watermarks below report the source).
            if let Ok(Ok(now)) = admin.topics().await.map(|all| plan.select(&all)) {
                if now != copied {
                    return "the copied topics or their partitions changed".to_string();
                }
            }
        }
        let mut failed = None;
        for t in topics {
            let parts: Vec<i32> = (0..t.topic.partitions).collect();
            match admin.watermarks(&t.topic.name, &parts).await {
                Ok(marks) => {
                    for (p, low, high) in marks {
                        figures.advance(&t.topic.name, p, "", None, Some(high));
                        prune.below(&t.topic.name, p, low).await;
                    }
                }
                Err(e) => failed = Some(e),
            }
        }
        if failed.is_none() {
            skip_unreadable_ends(admin, figures, &mut behind).await;
        }
        let mut sink_failed = None;
        if let Some(g) = groups {
            let (source_err, sink_err) = g.sync(admin, topics, figures).await;
            failed = failed.or(source_err);
            sink_failed = sink_err;
        }
        match failed {
            Some(e) => figures.set_source(SIDE_ABNORMAL, e),
            None => figures.set_source(SIDE_NORMAL, ""),
        }
        match sink_failed {
            Some(e) => figures.set_sink(SIDE_ABNORMAL, e),
            // A failing copy says so itself (and clears it once it goes through).
            None => figures.clear_sink_note(),
        }
    }
}

/// Records, for partitions that stood still below their end for a round, an end that holds no
/// record to copy (see [`progress`]); each standstill is read once.
async fn skip_unreadable_ends(
    admin: &Admin,
    figures: &JobFigures,
    behind: &mut HashMap<(String, i32), (i64, i64, bool)>,
) {
    let now: HashMap<(String, i32), (i64, i64)> = figures
        .snapshot()
        .into_iter()
        .filter(|(_, f)| f.position() < f.high)
        .map(|(k, f)| (k, (f.next, f.high)))
        .collect();
    behind.retain(|k, _| now.contains_key(k));
    let mut probes = 0;
    for (key, (next, high)) in now {
        let seen = match behind.entry(key.clone()) {
            Entry::Vacant(v) => {
                // First seen behind: it has to stand still for a round first.
                v.insert((next, high, false));
                continue;
            }
            Entry::Occupied(o) => o.into_mut(),
        };
        if (seen.0, seen.1) != (next, high) {
            *seen = (next, high, false);
            continue;
        }
        if seen.2 || probes >= PROBES_PER_ROUND {
            continue;
        }
        probes += 1;
        let (topic, partition) = &key;
        match admin.records_between(topic, *partition, next, high).await {
            Ok(false) => {
                tracing::debug!(%topic, partition, next, high,
                    "event-router job: the partition ends with no record to copy");
                figures.empty_to(topic, *partition, high);
                seen.2 = true;
            }
            Ok(true) => seen.2 = true,
            // Left as it is (it counts as remaining); read again next round.
            Err(e) => tracing::debug!(%topic, partition, error = %e,
                "event-router job: reading a partition's end failed"),
        }
    }
}

/// Drops the pairs of partitions below their low watermark, keeping what translation needs.
struct Prune {
    delivery: Arc<dyn DeliveryStore>,
    job_id: String,
    cluster: String,
    /// Per (topic, partition), the low watermark pruned at last.
    done: Mutex<HashMap<(String, i32), i64>>,
}

impl Prune {
    async fn below(&self, topic: &str, partition: i32, low: i64) {
        let key = (topic.to_string(), partition);
        {
            let done = self.done.lock().unwrap_or_else(|p| p.into_inner());
            if done.get(&key).is_some_and(|l| *l >= low) {
                return;
            }
        }
        match self
            .delivery
            .prune_mirror_pairs(&self.job_id, &self.cluster, topic, partition, low)
            .await
        {
            Ok(_) => {
                let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
                done.insert(key, low);
            }
            Err(e) => tracing::warn!(job_id = %self.job_id, %topic, partition, error = %e,
                "event-router job: dropping old offset pairs failed (tried again later)"),
        }
    }
}

/// Consumer-group offset translation (`is_sync_progress`): every consumer group of the
/// source that committed offsets on a copied topic gets, on the sink, the offset of the copy
/// after its last read record, so that it can move to the sink and read on without skipping a
/// record.
///
/// * A group's committed offset `c` is written only once the job copied and committed
///   everything before it (`c` at most the partition's next offset to copy); later rounds
///   catch up.
/// * `T(c) = t + (c − s)` for the greatest stored pair `(s, t)` with `s <= c` (the pairs'
///   invariant makes it exact).
/// * The sink's group offset only moves forward, and a group with members on the sink (in
///   use there) is left alone.
/// * Topics placed by key hash have no per-partition correspondence: their groups are not
///   translated.
/// * A group that cannot be read or written (not authorized, say) is skipped and reported;
///   the others go on.
struct GroupSync {
    sink: Admin,
    delivery: Arc<dyn DeliveryStore>,
    job_id: String,
    cluster: String,
    /// Per source partition, where the copies the job made into it before a switch-over end.
    /// A group that stopped below it is not translated: it was reading those copies, and its
    /// offset on the sink (where it read the originals) is already the right one or behind
    /// it, which re-reads and never skips.
    floors: HashMap<(String, i32), i64>,
}

/// Groups translated at once in a round.
const GROUPS_AT_ONCE: usize = 8;

impl GroupSync {
    /// One round; the last source-side and sink-side failure, if any.
    async fn sync(
        &self,
        source: &Admin,
        topics: &[Mirrored],
        figures: &JobFigures,
    ) -> (Option<String>, Option<String>) {
        let groups = match source.groups().await {
            Ok(g) => g,
            Err(e) => return (Some(e), None),
        };
        let names: Vec<String> = groups
            .into_iter()
            .map(|(g, _)| g)
            .filter(|g| !g.starts_with("openeg-router-"))
            .collect();
        // Consumers of groups that went away are closed off the async threads.
        let gone = (source.keep_groups(&names), self.sink.keep_groups(&names));
        if !gone.0.is_empty() || !gone.1.is_empty() {
            tokio::task::spawn_blocking(move || drop(gone));
        }
        // Only partitions that keep their number can be translated.
        let wanted: Vec<(String, Vec<i32>)> = topics
            .iter()
            .map(|t| {
                let parts = (0..t.topic.partitions)
                    .filter(|p| t.placement.keeps_partition(*p))
                    .collect::<Vec<i32>>();
                (t.topic.name.clone(), parts)
            })
            .filter(|(_, parts)| !parts.is_empty())
            .collect();
        if names.is_empty() || wanted.is_empty() {
            return (None, None);
        }
        let busy: HashMap<String, bool> = match self.sink.groups().await {
            Ok(b) => b.into_iter().collect(),
            Err(e) => return (None, Some(format!("{GROUP_NOTE}{e}"))),
        };
        let positions = figures.snapshot();
        let idle: Vec<&String> = names
            .iter()
            .filter(|g| busy.get(*g) != Some(&true))
            .collect();
        let mut outcomes = Vec::with_capacity(idle.len());
        for chunk in idle.chunks(GROUPS_AT_ONCE) {
            let round: Vec<_> = chunk
                .iter()
                .map(|g| self.sync_group(source, g, topics, &wanted, &positions))
                .collect();
            outcomes.extend(futures_util::future::join_all(round).await);
        }
        let mut out = (None, None);
        for (source_err, sink_err) in outcomes {
            out.0 = source_err.or(out.0);
            out.1 = sink_err.or(out.1);
        }
        out
    }

    /// Translates one group's offsets on every copied topic (one offset read for all of
    /// them); its source-side and sink-side failure, if any.
    async fn sync_group(
        &self,
        source: &Admin,
        g: &str,
        topics: &[Mirrored],
        wanted: &[(String, Vec<i32>)],
        positions: &BTreeMap<(String, i32), PartitionFigures>,
    ) -> (Option<String>, Option<String>) {
        let committed = match source.committed_many(g, wanted).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(job_id = %self.job_id, group = %g, error = %e,
                    "event-router job: a source group's offsets cannot be read");
                return (Some(e), None);
            }
        };
        let mut sink_err = None;
        for t in topics {
            let mut writes = Vec::new();
            for (topic, p, c) in committed.iter().filter(|(n, _, _)| *n == t.topic.name) {
                let key = (topic.clone(), *p);
                let (next, position) = positions
                    .get(&key)
                    .map_or((-1, -1), |f| (f.next, f.position()));
                if *c > position || self.floors.get(&key).is_some_and(|f| c < f) {
                    continue;
                }
                // Past the last copy only offsets with no record (transaction markers): the
                // group has read what a consumer of the copies reads up to `next`.
                let c = (*c).min(next);
                match self
                    .delivery
                    .mirror_pair_at(&self.job_id, &self.cluster, topic, *p, &t.target, c)
                    .await
                {
                    Ok(Some(pair)) => writes.push((*p, pair.translate(c))),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(job_id = %self.job_id, error = %e,
                        "event-router job: reading offset pairs failed"),
                }
            }
            if writes.is_empty() {
                continue;
            }
            let target_parts: Vec<i32> = writes.iter().map(|(p, _)| *p).collect();
            let result = async {
                let current: HashMap<i32, i64> = self
                    .sink
                    .committed(g, &t.target, &target_parts)
                    .await?
                    .into_iter()
                    .collect();
                let forward: Vec<(i32, i64)> = writes
                    .into_iter()
                    .filter(|(p, to)| current.get(p).is_none_or(|now| to > now))
                    .collect();
                if forward.is_empty() {
                    return Ok(());
                }
                self.sink.commit(g, &t.target, &forward).await
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(job_id = %self.job_id, group = %g, error = %e,
                    "event-router job: a group's translated offsets cannot be written");
                sink_err = Some(format!("{GROUP_NOTE}{e}"));
            }
        }
        (None, sink_err)
    }
}

/// A partition's last copy and pair, as the pair rules need them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark {
    /// The source and target offsets of the partition's last copy.
    last_source: i64,
    last_target: i64,
    /// Copies since the last stored pair.
    since: u32,
}

/// Which of a batch's copies get a stored pair. `copies` are `(source offset, target offset)`
/// in source order for one source partition; `mark` the partition's state before the batch
/// (`None`: the run's first batch there); `consecutive` whether target offsets are expected
/// to follow each other (the partition keeps its number; copies by key hash spread over
/// partitions). A pair goes wherever the source offsets jump (transaction markers, compacted
/// records) or the target offsets do, so that between two pairs both run in step. Returns the
/// indexes and the state after the batch.
pub(crate) fn pairs_of(
    mark: Option<Mark>,
    copies: &[(i64, i64)],
    consecutive: bool,
) -> (Vec<usize>, Option<Mark>) {
    let mut out = Vec::new();
    let mut mark = mark;
    for (i, &(s, t)) in copies.iter().enumerate() {
        let pair = match mark {
            None => true,
            Some(m) => {
                s != m.last_source.saturating_add(1)
                    || (consecutive && t != m.last_target.saturating_add(1))
                    || m.since + 1 >= PAIR_EVERY
                    || i + 1 == copies.len()
            }
        };
        let since = match mark {
            Some(m) if !pair => m.since + 1,
            _ => 0,
        };
        if pair {
            out.push(i);
        }
        mark = Some(Mark {
            last_source: s,
            last_target: t,
            since,
        });
    }
    (out, mark)
}

/// The sink side of one topic's pipeline: copies a batch (records of one source partition,
/// in order) into the target topic, stores the batch's pairs, then lets the source commit.
struct MirrorWriter {
    job_id: String,
    /// The source cluster's servers (pairs are per source cluster).
    cluster: String,
    target_topic: String,
    placement: Placement,
    producer: Arc<MirrorProducer>,
    add_header: bool,
    delivery: Arc<dyn DeliveryStore>,
    figures: Arc<JobFigures>,
    ready: Ready,
    /// Batches failing now, over the job's topics; `ERROR` while any does.
    failing: Arc<AtomicUsize>,
    /// Per source partition, its pair state in this run.
    marks: Mutex<HashMap<i32, Mark>>,
}

impl MirrorWriter {
    /// The copy of one record, with its source partition and offset.
    fn copy(&self, r: &SourceRecord) -> Result<(i32, i64, Copy), AppendError> {
        let raw = r
            .raw
            .as_ref()
            .ok_or_else(|| AppendError("a record without its Kafka form".into()))?;
        let (p, offset) = r
            .position
            .as_ref()
            .and_then(|pos| Some((pos.partition.parse::<i32>().ok()?, pos.offset)))
            .ok_or_else(|| AppendError("a record without its partition and offset".into()))?;
        let mut headers = raw.headers.clone();
        if self.add_header {
            for (k, v) in [
                (ORIGIN_TOPIC, raw.topic.clone()),
                (ORIGIN_PARTITION, p.to_string()),
                (ORIGIN_OFFSET, offset.to_string()),
            ] {
                headers.push((k.to_string(), Some(v.into())));
            }
        }
        let copy = Copy {
            partition: self.placement.partition(raw.key.as_deref(), p),
            key: raw.key.clone(),
            value: raw.value.clone(),
            headers,
            timestamp_ms: raw.timestamp_ms,
        };
        Ok((p, offset, copy))
    }

    /// Marks the sink failing (the first time for this batch) and says why.
    fn failing(&self, first: bool, why: &str) {
        if first {
            self.failing.fetch_add(1, Ordering::SeqCst);
        }
        self.figures.set_sink(SIDE_ABNORMAL, why);
        self.ready.not_ready(fail(why));
    }
}

#[async_trait::async_trait]
impl DurableLog for MirrorWriter {
    async fn append(&self, records: &[SourceRecord]) -> Result<(), AppendError> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        let topic = first
            .raw
            .as_ref()
            .map(|r| r.topic.clone())
            .unwrap_or_default();
        let mut copies = Vec::with_capacity(records.len());
        let mut sources = Vec::with_capacity(records.len());
        for r in records {
            let (p, offset, c) = self.copy(r)?;
            sources.push((p, offset));
            copies.push(c);
        }
        let mut targets: Vec<i64> = vec![-1; copies.len()];
        // Send everything; on a failure send again from the first copy that failed, so the
        // copies stay in source order after it (those sent again land twice: at-least-once).
        let mut from = 0;
        let mut failures: u32 = 0;
        loop {
            let results = self
                .producer
                .send_all(&self.target_topic, &copies[from..])
                .await;
            let mut first_failed = None;
            for (i, r) in results.into_iter().enumerate() {
                match r {
                    Ok(o) => targets[from + i] = o,
                    Err(o) => {
                        if first_failed.is_none() {
                            first_failed = Some((from + i, o));
                        }
                    }
                }
            }
            let Some((at, outcome)) = first_failed else {
                break;
            };
            failures += 1;
            let (code, detail, retry_after) = match outcome {
                Outcome::Retry {
                    code,
                    detail,
                    retry_after,
                } => (code, detail, retry_after),
                Outcome::GiveUp { code, detail } => (code, detail, None),
                Outcome::Delivered { code } => (code, String::new(), None),
            };
            let why = format!(
                "copying into topic {} failed ({code}): {detail}",
                self.target_topic
            );
            tracing::warn!(job_id = %self.job_id, %why, failures,
                "event-router job: a copy failed; it is sent again");
            self.failing(failures == 1, &why);
            from = at;
            tokio::time::sleep(backoff::delay(failures, retry_after).min(MAX_RETRY_DELAY)).await;
        }
        // Pairs per source partition (a batch is one partition's, but do not rely on it).
        let mut by_partition: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for (i, (p, _)) in sources.iter().enumerate() {
            by_partition.entry(*p).or_default().push(i);
        }
        let mut pairs = Vec::new();
        let mut new_marks = Vec::new();
        {
            let marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
            for (p, idx) in &by_partition {
                let ts: Vec<(i64, i64)> = idx.iter().map(|&i| (sources[i].1, targets[i])).collect();
                let (chosen, mark) = pairs_of(
                    marks.get(p).copied(),
                    &ts,
                    self.placement.keeps_partition(*p),
                );
                // Copies spread by key hash: also each target partition's last copy, where a
                // job switched over to read the target starts (`mirror_copy_ends`).
                let mut chosen = chosen;
                if !self.placement.keeps_partition(*p) {
                    let mut last: BTreeMap<i32, usize> = BTreeMap::new();
                    for (c, &i) in idx.iter().enumerate() {
                        last.insert(copies[i].partition, c);
                    }
                    chosen.extend(last.into_values());
                    chosen.sort_unstable();
                    chosen.dedup();
                }
                for c in chosen {
                    let i = idx[c];
                    pairs.push(MirrorPair {
                        topic: topic.clone(),
                        partition: *p,
                        source_offset: sources[i].1,
                        target_topic: self.target_topic.clone(),
                        target_partition: copies[i].partition,
                        target_offset: targets[i],
                    });
                }
                if let Some(m) = mark {
                    new_marks.push((*p, m));
                }
            }
        }
        self.delivery
            .put_mirror_pairs(&self.job_id, &self.cluster, &pairs)
            .await
            .map_err(|e| AppendError(format!("storing the job's positions failed: {e}")))?;
        {
            let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
            marks.extend(new_marks);
        }
        for (p, idx) in &by_partition {
            if let Some(&last) = idx.last() {
                let next = sources[last].1.saturating_add(1);
                self.figures
                    .advance(&topic, *p, &self.target_topic, Some(next), None);
            }
        }
        self.figures.copied.add(records.len() as u64);
        if failures > 0 && self.failing.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.figures.set_sink(SIDE_NORMAL, "");
            self.ready.ready();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secrets() -> SecretBox {
        SecretBox::from_key_base64("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=").unwrap()
    }

    fn job(k2k: Value) -> Value {
        json!({
            "source_type": "KAFKA",
            "source_config": {"source_kafka": {"address": "127.0.0.1:9092", "cluster_alias": "dr",
                "authenticate_mode": "PLAINTEXT"}},
            "sink_config": {"sink_kafka": {"address": "127.0.0.2:9092"}},
            "advance_config": {"kafka2kafka": k2k},
        })
    }

    fn topics(names: &[&str]) -> Vec<TopicInfo> {
        names
            .iter()
            .map(|n| TopicInfo {
                name: n.to_string(),
                partitions: 3,
            })
            .collect()
    }

    #[test]
    fn target_topics_mapping_then_rename() {
        let p = KafkaJobPlan::of(
            &job(
                json!({"topics": "a, b", "rename_topic": true, "replica_cnt": "2",
                "topic_mappings": [{"source_topic": "a", "sink_topic": "a-copy"}]}),
            ),
            &secrets(),
        )
        .unwrap();
        assert_eq!(p.target_topic("a"), "a-copy");
        assert_eq!(p.target_topic("b"), "dr.b");
        assert_eq!(p.replicas, 2);
        assert_eq!(p.seek_to, "earliest");
        let plain = KafkaJobPlan::of(&job(json!({"topics": "a"})), &secrets()).unwrap();
        assert_eq!(plain.target_topic("a"), "a");
        let missing = plain.select(&topics(&["b"])).unwrap_err();
        assert!(missing.contains("topic a does not exist"), "{missing}");
    }

    /// A job switched over (`_switched`, source and sink swapped by the API) reads the copies
    /// and writes each into the topic it was copied from.
    fn switched(k2k: Value) -> KafkaJobPlan {
        let mut body = job(k2k);
        let (src, sink) = (
            body["source_config"]["source_kafka"].clone(),
            body["sink_config"]["sink_kafka"].clone(),
        );
        body["source_config"] = json!({ "source_kafka": sink });
        body["sink_config"] = json!({ "sink_kafka": src });
        body["_switched"] = json!(true);
        KafkaJobPlan::of(&body, &secrets()).unwrap()
    }

    #[test]
    fn a_switched_job_copies_the_copies_back_to_their_topics() {
        let k2k = json!({"topics": "a,b,c", "rename_topic": true,
            "topic_mappings": [{"source_topic": "a", "sink_topic": "a-copy"}]});
        let p = switched(k2k.clone());
        assert_eq!(p.source.servers(), "127.0.0.2:9092");
        let got = p
            .select(&topics(&["a", "a-copy", "b", "dr.b", "dr.c", "dr.x"]))
            .unwrap();
        let names: Vec<&str> = got.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a-copy", "dr.b", "dr.c"]);
        assert_eq!(p.target_topic("a-copy"), "a");
        assert_eq!(p.target_topic("dr.b"), "b");
        let missing = p.select(&topics(&["a-copy", "dr.b"])).unwrap_err();
        assert!(missing.contains("topic dr.c (the copy of c"), "{missing}");
        // A regex picks the copies of the topics it matches, named as they were copied.
        let r = switched(json!({"topic_regex": "o.*", "rename_topic": true,
            "topic_mappings": [{"source_topic": "orders", "sink_topic": "archive"}]}));
        let got = r
            .select(&topics(&[
                "archive",
                "dr.orders-eu",
                "dr.x",
                "orders",
                "dr.archive",
            ]))
            .unwrap();
        let names: Vec<&str> = got.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["archive", "dr.orders-eu"]);
        assert_eq!(r.target_topic("archive"), "orders");
        assert_eq!(r.target_topic("dr.orders-eu"), "orders-eu");
        // Not switched: the same settings read the originals.
        let fwd = KafkaJobPlan::of(&job(k2k), &secrets()).unwrap();
        assert_eq!(fwd.target_topic("a"), "a-copy");
    }

    #[test]
    fn regex_is_anchored_and_skips_internal_topics() {
        let p = KafkaJobPlan::of(&job(json!({"topic_regex": "orders.*"})), &secrets()).unwrap();
        let got = p
            .select(&topics(&[
                "orders",
                "orders-eu",
                "x-orders",
                "__orders_offsets",
            ]))
            .unwrap();
        let names: Vec<&str> = got.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["orders", "orders-eu"]);
        assert!(p.select(&topics(&["x"])).is_err());
        assert!(KafkaJobPlan::of(&job(json!({"topic_regex": "("})), &secrets()).is_err());
    }

    #[test]
    fn one_cluster_never_copies_into_a_copied_topic() {
        let mut body = job(json!({"topics": "a,b", "topic_mappings": [
            {"source_topic": "a", "sink_topic": "b"}]}));
        body["sink_config"]["sink_kafka"]["address"] = json!("127.0.0.1:9092");
        let p = KafkaJobPlan::of(&body, &secrets()).unwrap();
        assert!(p.select(&topics(&["a", "b"])).is_err());
        let mut same = job(json!({"topics": "a"}));
        same["sink_config"]["sink_kafka"]["address"] = json!("127.0.0.1:9092");
        assert!(KafkaJobPlan::of(&same, &secrets())
            .unwrap()
            .select(&topics(&["a"]))
            .is_err());
    }

    #[test]
    fn plans_need_addresses_and_reveal_passwords() {
        let mut body = job(json!({"topics": "a"}));
        body["source_config"]["source_kafka"]["address"] = Value::Null;
        let Err(err) = KafkaJobPlan::of(&body, &secrets()) else {
            panic!("a job without a source address cannot run");
        };
        assert!(err.contains("source_kafka: address"), "{err}");
        let mut sealed = job(json!({"topics": "a"}));
        sealed["source_config"]["source_kafka"]["authenticate_mode"] = json!("SASL_PLAINTEXT");
        sealed["source_config"]["source_kafka"]["user_name"] = json!("u");
        sealed["source_config"]["source_kafka"]["password"] = json!(secrets().encrypt("the-pw"));
        let p = KafkaJobPlan::of(&sealed, &secrets()).unwrap();
        assert_eq!(p.source_member["password"], "the-pw");
        assert!(!format!("{:?}", p.source).contains("the-pw"));
        assert!(KafkaJobPlan::of(&json!({"source_type": "KAFKA"}), &secrets()).is_err());
    }

    #[test]
    fn pairs_at_the_start_breaks_every_hundred_and_batch_ends() {
        let same = |v: &[i64]| -> Vec<(i64, i64)> { v.iter().map(|&o| (o, o)).collect() };
        // First batch of a run: its first record, then the last.
        let (p, m) = pairs_of(None, &same(&[10, 11, 12, 13]), true);
        assert_eq!(p, [0, 3]);
        assert_eq!(m.unwrap().last_target, 13);
        // A break in the target (a copy landed after a duplicate) gets a pair.
        let (p, _) = pairs_of(m, &[(14, 14), (15, 15), (16, 20), (17, 21)], true);
        assert_eq!(p, [2, 3]);
        // A jump in the source (a transaction marker at 16) gets one too: translating 17
        // from a pair at 14 would land one record too far.
        let (p, _) = pairs_of(m, &[(14, 14), (15, 15), (17, 16), (18, 17)], true);
        assert_eq!(p, [2, 3]);
        // A break across batches.
        let (p, _) = pairs_of(m, &[(14, 30)], true);
        assert_eq!(p, [0]);
        // Every hundred records at least.
        let long: Vec<i64> = (0..250).collect();
        let (p, _) = pairs_of(None, &same(&long), true);
        assert_eq!(p, [0, 100, 200, 249]);
        // By key hash: no target breaks, only the start, every hundred and the end.
        let (p, _) = pairs_of(None, &[(0, 5), (1, 0), (2, 9), (3, 1)], false);
        assert_eq!(p, [0, 3]);
    }
}
