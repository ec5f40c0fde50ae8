//! Event-router jobs that copy one Redis into another (`dcs2dcs`, `docs/router-jobs.md`).
//!
//! A started job ([`RedisJobRun`]) connects to the source as one of its replicas
//! (`openeg_connectors::mirror::redis::link`): the first time the source sends a snapshot,
//! whose keys are written to the target with `RESTORE … REPLACE`, then the stream of every
//! write command after it, applied to the target in order, pipelined.
//!
//! Invariants:
//! * The job's position is `(replication ID, offset)`: everything of the source's stream up
//!   to `offset` is applied on the target. It is stored (as a one-row offset pair,
//!   `openeg_store::mirror`) only after the target answered for every command before it, at
//!   most [`CHECKPOINT_EVERY`] after; a restarted run asks the source to continue from it
//!   (`PSYNC`), and the source sends a new snapshot only when its backlog no longer holds
//!   what follows.
//! * So after a crash, at most the commands of the last [`CHECKPOINT_EVERY`] are applied
//!   again. Writes that set a value (SET, HSET, DEL, EXPIRE, …) come out the same;
//!   a counter incremented in that window (INCR, LPUSH, APPEND) can be counted twice.
//! * A command the target refuses (WRONGTYPE, an unknown module command) is counted and
//!   reported in `sink_status`, and the stream goes on: a replica does the same.
//! * `source_status` / `sink_status` say which side failed; a failed session is retried
//!   after `connect_retry_time` (connecting, authenticating) or `other_retry_time` (else),
//!   with the job `ERROR` meanwhile.

use super::{fail, FiguresEnd};
use crate::metrics::{JobFigures, SIDE_ABNORMAL, SIDE_NORMAL};
use crate::supervisor::{ErrorInfo, Ready, Runtime, StopSignal};
use crate::Engine;
use openeg_connectors::mirror::redis::link::{self, Acked, LinkError, Message, Resume};
use openeg_connectors::mirror::redis::{DbMap, Endpoint, Probe, Sink};
use openeg_store::mirror::MirrorPair;
use openeg_store::secrets::SecretBox;
use openeg_store::DeliveryStore;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// At most this long between applying a command and storing the position after it.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);
/// How often both sides' figures are read (syncDetail).
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// The stored position of a job that copied its snapshot in `full` mode (nothing follows).
const FULL_DONE: &str = "full-done";

/// What a job copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyncMode {
    /// The snapshot, then the command stream (the default).
    FullIncremental,
    /// Only the snapshot: the job is finished once it is copied.
    Full,
    /// Only the commands after the job started.
    Incremental,
}

impl SyncMode {
    fn of(v: Option<&str>) -> Result<SyncMode, String> {
        let v = v.unwrap_or("").trim().to_ascii_lowercase();
        Ok(match v.as_str() {
            "" | "full_incremental" | "full+incremental" | "full-incremental" => {
                SyncMode::FullIncremental
            }
            "full" => SyncMode::Full,
            "incremental" => SyncMode::Incremental,
            other => {
                return Err(format!(
                    "advance_config.dcs2dcs.synchronize_type {other:?} is not one of \
                     full_incremental, full, incremental"
                ))
            }
        })
    }
}

/// What a Redis→Redis job runs with (secrets revealed: no `Debug`).
#[derive(Clone)]
pub(crate) struct RedisJobPlan {
    source: Endpoint,
    sink: Endpoint,
    mode: SyncMode,
    connect_retry: Duration,
    other_retry: Duration,
    /// Bytes per second of the command stream, with `use_rate_limit`.
    rate_limit: Option<u64>,
    dbs: DbMap,
}

fn seconds(a: &Value, k: &str) -> Result<Duration, String> {
    let n = match a.get(k) {
        None | Some(Value::Null) => return Ok(Duration::from_secs(60)),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().trim_end_matches('s').parse().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("advance_config.dcs2dcs.{k} is not a number of seconds"))?;
    // At least a second: a retry loop must not spin.
    Ok(Duration::from_secs(n.clamp(1, 86_400)))
}

impl RedisJobPlan {
    pub(crate) fn of(body: &Value, secrets: &SecretBox) -> Result<RedisJobPlan, String> {
        let member = |cfg: &str, name: &str| -> Result<Endpoint, String> {
            let v = super::revealed_member(body, secrets, cfg, name, "DCS")?;
            Endpoint::of(&v).map_err(|e| format!("{name}: {e}"))
        };
        let source = member("source_config", "source_dcs")?;
        let sink = member("sink_config", "sink_dcs")?;
        let empty = Value::Object(Default::default());
        let a = body
            .get("advance_config")
            .and_then(|c| c.get("dcs2dcs"))
            .filter(|v| v.is_object())
            .unwrap_or(&empty);
        for k in [
            "allow_keys",
            "allow_key_prefix",
            "allow_key_suffix",
            "block_keys",
            "block_key_prefix",
            "block_key_suffix",
        ] {
            if a.get(k)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.trim().is_empty())
            {
                return Err(format!(
                    "advance_config.dcs2dcs.{k}: key filters are not applied by this OpenEG \
                     build (it copies whole databases; allow_db and db_mapping are applied)"
                ));
            }
        }
        let db = |v: &Value| -> Option<u32> {
            match v {
                Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            }
        };
        let allow = match a.get("allow_db") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) if items.is_empty() => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|v| db(v).ok_or("advance_config.dcs2dcs.allow_db holds a non-number"))
                    .collect::<Result<Vec<u32>, _>>()?,
            ),
            Some(_) => return Err("advance_config.dcs2dcs.allow_db is not an array".into()),
        };
        let mut mapping = HashMap::new();
        if let Some(m) = a.get("db_mapping").and_then(Value::as_object) {
            for (k, v) in m {
                match (k.trim().parse::<u32>().ok(), db(v)) {
                    (Some(from), Some(to)) => {
                        mapping.insert(from, to);
                    }
                    _ => {
                        return Err(format!(
                            "advance_config.dcs2dcs.db_mapping entry {k} is not db → db"
                        ))
                    }
                }
            }
        }
        let rate_limit = if a.get("use_rate_limit").and_then(Value::as_bool) == Some(true) {
            let mb = match a.get("rate_limit") {
                None | Some(Value::Null) => Some(5.0),
                Some(Value::Number(n)) => n.as_f64(),
                Some(Value::String(s)) => s
                    .trim()
                    .trim_end_matches("/s")
                    .trim_end_matches(['M', 'B', 'm', 'b'])
                    .trim()
                    .parse()
                    .ok(),
                _ => None,
            }
            // At least 1 KB/s: a pace of nothing would never move.
            .filter(|n: &f64| n.is_finite() && *n >= 0.001)
            .ok_or("advance_config.dcs2dcs.rate_limit is not a MB/s figure of at least 0.001")?;
            Some((mb * 1024.0 * 1024.0) as u64)
        } else {
            None
        };
        Ok(RedisJobPlan {
            source,
            sink,
            mode: SyncMode::of(a.get("synchronize_type").and_then(Value::as_str))?,
            connect_retry: seconds(a, "connect_retry_time")?,
            other_retry: seconds(a, "other_retry_time")?,
            rate_limit,
            dbs: DbMap { allow, mapping },
        })
    }

    /// The key positions are stored under: a job whose source address changes starts anew.
    fn cluster(&self) -> String {
        format!("redis://{}", self.source.addr)
    }
}

/// A running Redis→Redis job.
pub(crate) struct RedisJobRun {
    pub(crate) engine: Weak<Engine>,
    pub(crate) job_id: String,
    pub(crate) plan: RedisJobPlan,
}

/// Why a session ended.
enum Ended {
    Stopped,
    /// A `full` job copied its snapshot: nothing more to do until STOP.
    Finished,
    /// Connecting or authenticating failed: `connect_retry_time`.
    Connect(String),
    /// Anything else: `other_retry_time`.
    Other(String),
}

/// Where the job stands in the source's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Position {
    replid: String,
    offset: u64,
    /// The stream's database at `offset` (the source sends `SELECT` only when it changes).
    db: u32,
    full_done: bool,
}

/// Paces the command stream to `rate` bytes per second (`rate_limit`).
struct Pace {
    rate: u64,
    next: Instant,
}

impl Pace {
    async fn take(&mut self, bytes: u64) {
        let now = Instant::now();
        if self.next < now {
            self.next = now;
        }
        self.next += Duration::from_secs_f64(bytes as f64 / self.rate as f64);
        // A second's worth may go at once.
        if let Some(wait) = self
            .next
            .checked_duration_since(now + Duration::from_secs(1))
        {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Stores `pos` (replacing `before`) as the job's one offset pair.
async fn save_position(
    delivery: &Arc<dyn DeliveryStore>,
    job_id: &str,
    cluster: &str,
    pos: &Position,
    before: Option<&Position>,
) -> Result<(), String> {
    let offset = i64::try_from(pos.offset).unwrap_or(i64::MAX);
    let pair = MirrorPair {
        topic: pos.replid.clone(),
        partition: 0,
        source_offset: offset,
        target_topic: if pos.full_done {
            FULL_DONE.into()
        } else {
            String::new()
        },
        // The pair's target side is unused by Redis jobs: it keeps the stream's database.
        target_partition: i32::try_from(pos.db).unwrap_or(0),
        target_offset: 0,
    };
    let failed = |e: openeg_store::StoreError| format!("storing the job's position failed: {e}");
    delivery
        .put_mirror_pairs(job_id, cluster, &[pair])
        .await
        .map_err(failed)?;
    match before {
        Some(b) if b.replid != pos.replid => {
            delivery
                .forget_mirror_partition(job_id, cluster, &b.replid, 0)
                .await
                .map_err(failed)?;
        }
        _ => {
            delivery
                .prune_mirror_pairs(job_id, cluster, &pos.replid, 0, offset)
                .await
                .map_err(failed)?;
        }
    }
    Ok(())
}

/// What the checkpoint task has stored last, or why it stopped.
type Saved = Result<Option<Position>, String>;

/// Stores the newest applied position (`latest`) at most every [`CHECKPOINT_EVERY`], off the
/// apply path: a store write (an fsync) must not delay applying. When `latest`'s sender is
/// dropped it stores what it last held, then ends.
async fn checkpoints(
    delivery: Arc<dyn DeliveryStore>,
    job_id: String,
    cluster: String,
    mut latest: tokio::sync::watch::Receiver<Option<Position>>,
    saved: tokio::sync::watch::Sender<Saved>,
    mut stored: Option<Position>,
) {
    loop {
        let open = latest.changed().await.is_ok();
        let want = latest.borrow_and_update().clone();
        if let Some(p) = want {
            if stored.as_ref() != Some(&p) {
                match save_position(&delivery, &job_id, &cluster, &p, stored.as_ref()).await {
                    Ok(()) => {
                        stored = Some(p);
                        let _ = saved.send_replace(Ok(stored.clone()));
                    }
                    Err(e) => {
                        let _ = saved.send_replace(Err(e));
                        return;
                    }
                }
            }
        }
        if !open {
            return;
        }
        tokio::time::sleep(CHECKPOINT_EVERY).await;
    }
}

/// Reads both sides' figures every [`PROGRESS_EVERY`] (syncDetail), each answer bounded.
async fn progress(mut source: Probe, mut sink: Probe, figures: Arc<JobFigures>) {
    loop {
        let limit = Duration::from_secs(2);
        let source_offset = tokio::time::timeout(limit, source.repl_offset())
            .await
            .unwrap_or_else(|_| Err("INFO replication timed out".into()));
        let source_keys = tokio::time::timeout(limit, source.key_count())
            .await
            .ok()
            .and_then(Result::ok);
        let sink_keys = tokio::time::timeout(limit, sink.key_count())
            .await
            .ok()
            .and_then(Result::ok);
        match &source_offset {
            Ok(_) => figures.set_source(SIDE_NORMAL, ""),
            Err(e) => figures.set_source(SIDE_ABNORMAL, e.clone()),
        }
        figures.redis_update(|r| {
            if let Ok(o) = source_offset {
                r.source_offset = o;
            }
            r.source_keys = source_keys.or(r.source_keys);
            r.sink_keys = sink_keys.or(r.sink_keys);
            r.source_offset = r.source_offset.max(r.sink_offset);
        });
        tokio::time::sleep(PROGRESS_EVERY).await;
    }
}

/// Aborts a task when dropped (a session's helpers end with it).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl RedisJobRun {
    async fn position(
        &self,
        delivery: &Arc<dyn DeliveryStore>,
    ) -> Result<Option<Position>, String> {
        let pairs = delivery
            .mirror_positions(&self.job_id, &self.plan.cluster())
            .await
            .map_err(|e| format!("reading the job's position failed: {e}"))?;
        Ok(pairs
            .into_iter()
            .max_by_key(|p| p.source_offset)
            .map(|p| Position {
                replid: p.topic,
                offset: u64::try_from(p.source_offset).unwrap_or(0),
                db: u32::try_from(p.target_partition).unwrap_or(0),
                full_done: p.target_topic == FULL_DONE,
            }))
    }

    /// One connection to both sides, until it fails or the job stops.
    async fn session(
        &self,
        figures: &Arc<JobFigures>,
        delivery: &Arc<dyn DeliveryStore>,
        ready: &Ready,
        stop: &mut StopSignal,
    ) -> Ended {
        let plan = &self.plan;
        let stored = match self.position(delivery).await {
            Ok(p) => p,
            Err(e) => return Ended::Other(e),
        };
        let mut source_probe = match Probe::connect(&plan.source).await {
            Ok(p) => p,
            Err(e) => {
                figures.set_source(SIDE_ABNORMAL, e.clone());
                return Ended::Connect(format!("connecting to the source failed: {e}"));
            }
        };
        let mut sink_probe = match Probe::connect(&plan.sink).await {
            Ok(p) => p,
            Err(e) => {
                figures.set_sink(SIDE_ABNORMAL, e.clone());
                return Ended::Connect(format!("connecting to the sink failed: {e}"));
            }
        };
        for (probe, side) in [(&mut source_probe, "source"), (&mut sink_probe, "sink")] {
            if probe.is_cluster().await == Ok(true) {
                return Ended::Other(format!(
                    "the {side} is a Redis Cluster node: cluster instances are not copied by \
                     this OpenEG build"
                ));
            }
        }
        if stored.as_ref().is_some_and(|p| p.full_done) {
            // A `full` job that copied its snapshot has nothing left to do.
            figures.set_source(SIDE_NORMAL, "");
            figures.set_sink(SIDE_NORMAL, "");
            figures.redis_update(|r| {
                r.phase = "full";
                r.status = "finish";
            });
            ready.ready();
            return Ended::Finished;
        }
        let sink = match Sink::connect(&plan.sink, plan.dbs.clone()).await {
            Ok(s) => s,
            Err(e) => {
                figures.set_sink(SIDE_ABNORMAL, e.clone());
                return Ended::Connect(format!("connecting to the sink failed: {e}"));
            }
        };
        figures.set_sink(SIDE_NORMAL, "");
        let acked = Arc::new(Acked::default());
        let resume = stored.as_ref().map(|p| Resume {
            replid: p.replid.clone(),
            offset: p.offset,
            db: p.db,
        });
        if let Some(r) = &resume {
            acked.set(r.offset);
        }
        // Bounded in messages, each bounded in bytes (a snapshot batch holds ≤ 8 MiB).
        let (tx, mut rx) = mpsc::channel(8);
        let ep = plan.source.clone();
        let link_acked = acked.clone();
        let started =
            tokio::task::spawn_blocking(move || link::start(&ep, resume, link_acked, tx)).await;
        let _link = match started {
            Ok(Ok(h)) => h,
            Ok(Err(LinkError::Connect(e))) => {
                figures.set_source(SIDE_ABNORMAL, e.to_string());
                return Ended::Connect(format!("replicating from the source failed: {e}"));
            }
            Ok(Err(LinkError::Refused(e))) => {
                figures.set_source(SIDE_ABNORMAL, e.clone());
                return Ended::Connect(format!("the source refused replication: {e}"));
            }
            Err(e) => return Ended::Other(e.to_string()),
        };
        figures.set_source(SIDE_NORMAL, "");
        ready.ready();
        let _progress = AbortOnDrop(tokio::spawn(progress(
            source_probe,
            sink_probe,
            figures.clone(),
        )));
        let (latest, latest_rx) = tokio::sync::watch::channel(None);
        let (saved_tx, mut saved) = tokio::sync::watch::channel(Ok(stored.clone()));
        let checkpointer = tokio::spawn(checkpoints(
            delivery.clone(),
            self.job_id.clone(),
            plan.cluster(),
            latest_rx,
            saved_tx,
            stored.clone(),
        ));
        let ended = self
            .apply(
                figures, stop, sink, &mut rx, &acked, &latest, &mut saved, stored,
            )
            .await;
        // The last applied position is stored before the session ends (whatever ended it:
        // everything before it was applied).
        drop(latest);
        drop(rx);
        let _ = tokio::time::timeout(Duration::from_secs(10), checkpointer).await;
        ended
    }

    /// Applies what the link reads until the session ends.
    #[allow(clippy::too_many_arguments)]
    async fn apply(
        &self,
        figures: &Arc<JobFigures>,
        stop: &mut StopSignal,
        mut sink: Sink,
        rx: &mut mpsc::Receiver<std::io::Result<Message>>,
        acked: &Acked,
        latest: &tokio::sync::watch::Sender<Option<Position>>,
        saved: &mut tokio::sync::watch::Receiver<Saved>,
        stored: Option<Position>,
    ) -> Ended {
        let plan = &self.plan;
        let mut current: Option<Position> = None;
        let mut skip_snapshot = false;
        let mut pace = plan.rate_limit.map(|rate| Pace {
            rate,
            next: Instant::now(),
        });
        loop {
            let msg = tokio::select! {
                _ = stop.stopped() => return Ended::Stopped,
                m = rx.recv() => m,
            };
            if let Err(e) = &*saved.borrow() {
                return Ended::Other(e.clone());
            }
            let msg = match msg {
                None => {
                    figures.set_source(SIDE_ABNORMAL, "the replication link closed");
                    return Ended::Connect("the source closed the replication link".into());
                }
                Some(Err(e)) => {
                    figures.set_source(SIDE_ABNORMAL, e.to_string());
                    return Ended::Other(format!("replicating from the source failed: {e}"));
                }
                Some(Ok(m)) => m,
            };
            let result = match msg {
                Message::FullSync {
                    replid,
                    offset,
                    size,
                } => {
                    tracing::info!(job_id = %self.job_id, source = %plan.source.addr, offset,
                        "event-router job: the source sends a full snapshot");
                    skip_snapshot = plan.mode == SyncMode::Incremental;
                    current = Some(Position {
                        replid,
                        offset,
                        db: 0,
                        full_done: false,
                    });
                    figures.redis_update(|r| {
                        r.phase = "full";
                        r.status = "syncing";
                        r.snapshot_read = 0;
                        r.snapshot_size = size;
                        r.sink_offset = offset;
                    });
                    Ok(())
                }
                Message::Continue { replid, offset } => {
                    tracing::info!(job_id = %self.job_id, source = %plan.source.addr, offset,
                        "event-router job: the source continues its stream (no snapshot)");
                    let p = Position {
                        replid,
                        offset,
                        db: stored.as_ref().map(|s| s.db).unwrap_or(0),
                        full_done: false,
                    };
                    if stored.as_ref() != Some(&p) {
                        latest.send_replace(Some(p.clone()));
                    }
                    current = Some(p);
                    figures.redis_update(|r| {
                        r.phase = "incremental";
                        r.status = "syncing";
                        r.sink_offset = offset;
                    });
                    Ok(())
                }
                Message::Snapshot { entries, read } => {
                    let r = if skip_snapshot {
                        Ok(Default::default())
                    } else {
                        sink.restore(&entries).await
                    };
                    r.map(|a| {
                        figures.redis_update(|r| {
                            r.snapshot_read = read;
                            r.applied += a.ok;
                            r.refused += a.refused;
                        });
                        self.note_refusals(figures, a.first_refusal);
                    })
                }
                Message::Function(code) => {
                    if skip_snapshot {
                        Ok(())
                    } else {
                        sink.load_function(&code)
                            .await
                            .map(|a| self.note_refusals(figures, a.first_refusal))
                    }
                }
                Message::SnapshotDone => {
                    let Some(mut p) = current.clone() else {
                        return Ended::Other("a snapshot without its start".into());
                    };
                    p.full_done = plan.mode == SyncMode::Full;
                    // Stored before anything of the stream is applied: a restart continues
                    // after the snapshot, never copies it again.
                    latest.send_replace(Some(p.clone()));
                    let done = saved
                        .wait_for(|s| s.is_err() || matches!(s, Ok(Some(x)) if *x == p))
                        .await
                        .map(|s| s.clone());
                    match done {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Ended::Other(e),
                        Err(_) => return Ended::Other("the checkpoint task ended".into()),
                    }
                    // The link acknowledges the snapshot to the source only now.
                    acked.set(p.offset);
                    current = Some(p);
                    let full_only = plan.mode == SyncMode::Full;
                    figures.redis_update(|r| {
                        if let Some(n) = r.snapshot_size {
                            r.snapshot_read = n;
                        }
                        if full_only {
                            r.status = "finish";
                        } else {
                            r.phase = "incremental";
                        }
                    });
                    if full_only {
                        tracing::info!(job_id = %self.job_id,
                            "event-router job: the snapshot is copied (synchronize_type full)");
                        return Ended::Finished;
                    }
                    Ok(())
                }
                Message::Commands {
                    commands,
                    offset,
                    db,
                } => {
                    if let Some(p) = pace.as_mut() {
                        let bytes: usize = commands
                            .iter()
                            .flat_map(|c| c.args.iter().map(Vec::len))
                            .sum();
                        p.take(bytes as u64).await;
                    }
                    match sink.apply(&commands).await {
                        Ok(a) => {
                            acked.set(offset);
                            if let Some(p) = current.as_mut() {
                                p.offset = offset;
                                p.db = db;
                                latest.send_replace(Some(p.clone()));
                            }
                            figures.redis_update(|r| {
                                r.sink_offset = offset;
                                r.source_offset = r.source_offset.max(offset);
                                r.applied += a.ok;
                                r.refused += a.refused;
                            });
                            self.note_refusals(figures, a.first_refusal);
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            if let Err(e) = result {
                figures.set_sink(SIDE_ABNORMAL, e.clone());
                return Ended::Other(format!("writing to the sink failed: {e}"));
            }
        }
    }

    /// A command the target refused is reported on the sink side (the copy goes on).
    fn note_refusals(&self, figures: &JobFigures, first: Option<String>) {
        if let Some(why) = first {
            tracing::warn!(job_id = %self.job_id, reason = %why,
                "event-router job: the target refused a command; the copy goes on");
            figures.set_sink(
                SIDE_ABNORMAL,
                format!("the target refused a command: {why}"),
            );
        }
    }
}

#[async_trait::async_trait]
impl Runtime for RedisJobRun {
    async fn run(&self, mut stop: StopSignal, ready: Ready) -> Result<(), ErrorInfo> {
        let (_end, delivery) = FiguresEnd::begin(&self.engine, &self.job_id, false)?;
        let figures = _end.figures.clone();
        figures.redis_update(|r| {
            r.source_addr = self.plan.source.addr.clone();
            r.sink_addr = self.plan.sink.addr.clone();
            r.phase = "full";
            r.status = "syncing";
        });
        loop {
            let (why, wait) = match self.session(&figures, &delivery, &ready, &mut stop).await {
                Ended::Stopped => return Ok(()),
                Ended::Finished => {
                    // Every connection of the session is closed by now.
                    stop.stopped().await;
                    return Ok(());
                }
                Ended::Connect(why) => (why, self.plan.connect_retry),
                Ended::Other(why) => (why, self.plan.other_retry),
            };
            tracing::warn!(job_id = %self.job_id, reason = %why, retry_in = ?wait,
                "event-router job: replication stopped; retrying");
            ready.not_ready(fail(format!("{why} (retrying in {} s)", wait.as_secs())));
            tokio::select! {
                _ = stop.stopped() => return Ok(()),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(a: Value) -> Value {
        json!({
            "source_config": {"source_dcs": {"address": "127.0.0.1:7001"}},
            "sink_config": {"sink_dcs": {"address": "127.0.0.1:7002", "password": "pw"}},
            "advance_config": {"dcs2dcs": a},
        })
    }

    #[test]
    fn plans() {
        let s = SecretBox::from_key_base64("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=").unwrap();
        let p = RedisJobPlan::of(
            &body(json!({"synchronize_type": "Full+Incremental",
            "connect_retry_time": "5", "other_retry_time": 0, "allow_db": [0, "2"],
            "db_mapping": {"2": "3"}, "use_rate_limit": true, "rate_limit": "2"})),
            &s,
        )
        .unwrap();
        assert_eq!(p.mode, SyncMode::FullIncremental);
        assert_eq!(
            (p.connect_retry, p.other_retry),
            (Duration::from_secs(5), Duration::from_secs(1))
        );
        assert_eq!(p.rate_limit, Some(2 << 20));
        assert_eq!(
            (p.dbs.target(0), p.dbs.target(1), p.dbs.target(2)),
            (Some(0), None, Some(3))
        );
        assert_eq!(p.sink.password.as_deref(), Some("pw"));
        let p = RedisJobPlan::of(&body(json!({"synchronize_type": "FULL"})), &s).unwrap();
        assert_eq!((p.mode, p.rate_limit), (SyncMode::Full, None));
        assert!(RedisJobPlan::of(&body(json!({"synchronize_type": "sometimes"})), &s).is_err());
        let e = RedisJobPlan::of(&body(json!({"allow_key_prefix": "a:"})), &s)
            .err()
            .unwrap();
        assert!(e.contains("key filters"), "{e}");
        assert!(RedisJobPlan::of(&json!({}), &s).is_err());
    }
}
