//! OpenEG's durable event log.
//!
//! [`EventLog`] is shaped like Kafka so the router does not care whether events sit in the
//! embedded log or in Kafka: topics are channels, offsets are per partition, consumer groups
//! commit offsets. [`SegmentLog`] is the embedded implementation.
//!
//! # Guarantees of [`SegmentLog`]
//!
//! * **Acknowledged means durable.** `append` returns `Ok` only after the batch is written and
//!   `fdatasync`ed; new segment files are fsynced together with their directory before data
//!   lands in them. An acknowledged batch survives `kill -9` and power loss.
//! * **Group commit.** Each topic has one writer task. Concurrent appends queue up while the
//!   previous fsync runs and are then written with one `pwrite` and one `fdatasync`, so the
//!   fsync rate is bounded by the disk, not by the request rate.
//! * **Atomic batches.** One `append` is one checksummed frame: after a crash a batch is
//!   visible whole or not at all.
//! * **Recovery.** On open, the last segment of each topic is scanned; the first frame with a
//!   bad length or checksum is the torn tail and is truncated (logged with `tracing`). A frame
//!   with a valid checksum but an unexpected offset cannot come from a torn write, so opening
//!   fails with [`LogError::Corrupt`] instead of cutting it.
//!   Earlier segments are never truncated: they were fsynced before the next segment was
//!   created, so damage there is reported as [`LogError::Corrupt`] when read. Their index is
//!   built on first read, so opening a large log stays fast.
//! * **Readers never see unacknowledged data** and never hold the topic lock during I/O, so
//!   reads do not stall appends. A tailing reader waits on [`EventLog::subscribe`].
//! * **Backpressure** comes from the callers: every appender awaits its acknowledgement, so
//!   the writer's queue holds at most one batch per in-flight request.
//! * **Failures and recovery.** If a write cannot be undone, an fsync fails or a new segment
//!   cannot be made, the topic is *failed*: the append that hit the error and every later one
//!   fail ([`LogError::Failed`] once failed) and [`SegmentLog::failures`] lists the topic.
//!   Nothing past the last acknowledged append is trusted: after a failed fsync the kernel may
//!   have dropped the dirty pages while the page cache still shows them. The writer recovers
//!   in place, without a restart, with a backoff (50 ms doubling to 1 s; an append arriving
//!   after the backoff tries at once): it reopens the active segment, cuts it back to the
//!   acknowledged length (so the failed batch is never visible, and its offsets are reused),
//!   syncs it, and checks every frame of it as opening the log does; a half-made segment file
//!   from a failed roll is removed. Recovery succeeds only if that sync succeeds and the
//!   frames end exactly at the acknowledged end offset; until then the topic stays failed.
//!   Acknowledged appends were fsynced before they were acknowledged, so none is lost.
//!   [`FaultInjection`] is a mock that makes syncs fail on demand, for tests.
//! * **Partitions.** The embedded log has one partition (0) per topic; the trait carries the
//!   partition so a Kafka implementation can slot in.
//!
//! # Layout
//!
//! ```text
//! <root>/LOCK                                  flock'ed while open (one process per log)
//! <root>/topics/<name>/<base offset:020>.log   segments; <name> is %-encoded
//! <root>/offsets/<group>.offsets               consumer offsets of one group
//! <root>/trash/                                topics being deleted
//! ```
//!
//! Frame format: see `frame.rs`; offsets file format: see `offsets.rs`.
//!
//! # Retention
//!
//! [`SegmentLog::enforce_retention`] (called periodically by the engine) deletes whole oldest
//! segments that are older than `retention_max_age` (by their last append time, the file's
//! mtime) or beyond `retention_max_bytes` per topic. The active segment is never deleted;
//! when it has itself expired it is sealed first (a new empty segment takes over), so a quiet
//! topic's events do not outlive the age limit. With `retention_hold_group` set, segments the
//! group's committed offset has not passed are kept whatever their age or size (the router's
//! group: an event is never deleted before it was routed). Reading below the start offset
//! fails with [`LogError::OffsetOutOfRange`] (carrying the valid range), like Kafka, so a
//! consumer notices that it lost events instead of silently skipping them.

mod fault;
mod frame;
mod names;
mod offsets;
mod segment;
mod topic;

use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

pub use fault::FaultInjection;
use topic::Topic;

/// One record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub offset: u64,
    pub payload: Bytes,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    #[error("I/O error {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt log data in {} at byte {position}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    #[error("offset {requested} is outside [{start}, {end}] of topic {topic}")]
    OffsetOutOfRange {
        topic: String,
        requested: u64,
        start: u64,
        end: u64,
    },
    #[error("topic {topic} has no partition {partition}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("invalid topic or group name {0:?}")]
    InvalidName(String),
    #[error("batch of {size} bytes exceeds the limit of {limit} bytes")]
    BatchTooLarge { size: usize, limit: usize },
    #[error("topic {0} is being deleted")]
    TopicDeleted(String),
    /// The topic failed (e.g. a failed fsync) and has not recovered yet; the writer retries
    /// recovery on its own.
    #[error("log failed, recovery pending: {0}")]
    Failed(String),
    #[error("log directory {} is in use by another process", .0.display())]
    Locked(PathBuf),
    /// A log served by an external system (e.g. Kafka) failed or did not answer; the message
    /// says what was being done and the backend's reason.
    #[error("event log backend: {0}")]
    Backend(String),
}

pub(crate) fn io_err(context: String) -> impl FnOnce(std::io::Error) -> LogError {
    move |source| LogError::Io { context, source }
}

/// Lock a mutex, ignoring poisoning: every critical section leaves the data consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads starting at most this many records below the end are served in place (see `read`).
const INLINE_READ_RECORDS: u64 = 256;

/// A durable, partitioned, append-only log of opaque records, shaped like Kafka.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Append `records` to one partition as one atomic batch and return their offsets
    /// (contiguous). Returns once the batch is durable. An empty batch writes nothing and
    /// returns an empty range at the end offset.
    async fn append(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Bytes>,
    ) -> Result<Range<u64>, LogError>;

    /// Read records with offsets `>= from`, at most `max_records` and about `max_bytes` of
    /// payload (at least one record is returned if any is available, whatever its size).
    /// Empty at the end offset; [`LogError::OffsetOutOfRange`] below the start offset or past
    /// the end. An unknown topic reads as empty with start = end = 0.
    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<LogRecord>, LogError>;

    /// First offset still stored (moves forward with retention).
    async fn start_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError>;

    /// Offset the next appended record will get; everything below it is durable.
    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError>;

    /// Number of partitions of `topic`.
    async fn partitions(&self, topic: &str) -> Result<u32, LogError>;

    /// Watch the end offset of a partition, so a tailing reader can sleep until new data is
    /// durable instead of polling. Creates the topic if it does not exist.
    async fn subscribe(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<watch::Receiver<u64>, LogError>;

    /// Durably store `offset` (the next offset to consume) for a consumer group.
    async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<(), LogError>;

    /// The offset last committed by `group`, if any.
    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>, LogError>;

    /// Delete a topic, its data and its committed offsets. Appends already acknowledged are
    /// deleted too; appends racing with the deletion fail with [`LogError::TopicDeleted`].
    /// Deleting a missing topic succeeds. Watches from [`EventLog::subscribe`] on the old
    /// topic close (`changed()` returns an error).
    async fn delete_topic(&self, topic: &str) -> Result<(), LogError>;

    /// Topics that currently refuse appends because of a storage failure, for health checks.
    fn failures(&self) -> Vec<TopicFailure> {
        Vec::new()
    }
}

/// Configuration of [`SegmentLog`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LogConfig {
    /// Roll to a new segment when the active one would exceed this size. Recovery checksums
    /// the whole active segment on open and a sealed segment is indexed by a scan on its first
    /// read, so this bounds both costs; it is also the granularity of retention.
    pub segment_bytes: u64,
    /// Delete segments whose last append is older than this.
    pub retention_max_age: Option<Duration>,
    /// Keep each topic's total size at most this (the active segment is always kept).
    pub retention_max_bytes: Option<u64>,
    /// fsync before acknowledging. Only turn off for benchmarks: without it an acknowledged
    /// append can be lost on power failure and sealed segments may be torn.
    pub fsync: bool,
    /// Largest accepted batch (encoded size).
    pub max_batch_bytes: usize,
    /// Retention never deletes a segment holding an offset at or above this consumer group's
    /// committed offset of the topic (none committed: nothing is deleted): events a consumer
    /// has not passed are held, not silently dropped. `None`: age and size alone decide.
    pub retention_hold_group: Option<String>,
    /// Fault-injection mock for tests (failing syncs); `None` outside tests.
    pub fault_injection: Option<FaultInjection>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 16 << 20,
            retention_max_age: Some(Duration::from_secs(7 * 24 * 3600)),
            retention_max_bytes: None,
            fsync: true,
            max_batch_bytes: 16 << 20,
            retention_hold_group: None,
            fault_injection: None,
        }
    }
}

/// Counters since open, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Acknowledged `append` calls.
    pub appends: u64,
    /// Acknowledged records.
    pub records: u64,
    /// Bytes written to segments.
    pub bytes: u64,
    /// Group writes (one `pwrite` each).
    pub writes: u64,
    /// Data fsyncs; `appends / fsyncs` is the average group-commit size.
    pub fsyncs: u64,
}

#[derive(Default)]
pub(crate) struct StatsInner {
    appends: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
    writes: AtomicU64,
    fsyncs: AtomicU64,
}

/// A topic whose log failed and has not recovered (see [`EventLog::failures`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicFailure {
    pub topic: String,
    /// What failed, for operators (may name files).
    pub reason: String,
    /// When the topic failed.
    pub since: SystemTime,
}

/// What one [`SegmentLog::enforce_retention`] run removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub segments_deleted: u64,
    pub bytes_deleted: u64,
    /// Expired (by age or size) but kept: the hold group has not passed them yet.
    pub segments_held: u64,
}

/// The embedded log: a directory of topics, each a list of segment files.
pub struct SegmentLog {
    root: PathBuf,
    topics_dir: PathBuf,
    trash_dir: PathBuf,
    cfg: Arc<LogConfig>,
    topics: Mutex<HashMap<String, Arc<Topic>>>,
    /// Serialises topic creation, deletion and retention (all rare) off the hot path.
    admin: tokio::sync::Mutex<()>,
    offsets: offsets::Offsets,
    stats: Arc<StatsInner>,
    /// Holds the flock on `<root>/LOCK` for as long as the log is open.
    _lock: File,
    trash_seq: AtomicU64,
}

fn blocking_err(e: tokio::task::JoinError) -> LogError {
    LogError::Io {
        context: "running blocking log I/O".into(),
        source: std::io::Error::other(e.to_string()),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LogError> + Send + 'static,
) -> Result<T, LogError> {
    tokio::task::spawn_blocking(f).await.map_err(blocking_err)?
}

fn create_dir(dir: &Path) -> Result<(), LogError> {
    std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))
}

impl SegmentLog {
    /// Open or create the log in `dir`, recovering every topic's tail. Must be called inside
    /// a Tokio runtime (each topic gets a writer task).
    pub async fn open(dir: impl Into<PathBuf>, cfg: LogConfig) -> Result<SegmentLog, LogError> {
        let root: PathBuf = dir.into();
        let cfg = Arc::new(cfg);
        let cfg2 = cfg.clone();
        let root2 = root.clone();
        let (lock_file, topics, offsets) = blocking(move || {
            let root = root2;
            let cfg = cfg2;
            create_dir(&root)?;
            let lock_path = root.join("LOCK");
            let lock_file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(io_err(format!("opening {}", lock_path.display())))?;
            // SAFETY: flock on a file descriptor we own; no memory is passed.
            if unsafe { libc::flock(lock_file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                return Err(LogError::Locked(root));
            }
            let topics_dir = root.join("topics");
            let offsets_dir = root.join("offsets");
            let trash_dir = root.join("trash");
            for d in [&topics_dir, &offsets_dir, &trash_dir] {
                create_dir(d)?;
            }
            // Finish deletions interrupted by a crash.
            std::fs::remove_dir_all(&trash_dir)
                .map_err(io_err(format!("clearing {}", trash_dir.display())))?;
            create_dir(&trash_dir)?;
            if cfg.fsync {
                segment::sync_dir(&root)?;
            }
            let mut topics = Vec::new();
            let entries = std::fs::read_dir(&topics_dir)
                .map_err(io_err(format!("listing {}", topics_dir.display())))?;
            for entry in entries {
                let entry = entry.map_err(io_err(format!("listing {}", topics_dir.display())))?;
                let encoded = entry.file_name();
                let Some(name) = encoded.to_str().and_then(names::decode) else {
                    tracing::warn!(path = %entry.path().display(), "ignoring unexpected entry in the log's topics directory");
                    continue;
                };
                topics.push(Topic::open_blocking(name, entry.path(), &cfg)?);
            }
            let offsets = offsets::Offsets::load(offsets_dir, cfg.fsync)?;
            Ok((lock_file, topics, offsets))
        })
        .await?;
        let stats = Arc::new(StatsInner::default());
        let mut map = HashMap::new();
        for (state, dir, name) in topics {
            let t = Topic::start(name.clone(), dir, state, cfg.clone(), stats.clone());
            map.insert(name, Arc::new(t));
        }
        Ok(SegmentLog {
            topics_dir: root.join("topics"),
            trash_dir: root.join("trash"),
            root,
            cfg,
            topics: Mutex::new(map),
            admin: tokio::sync::Mutex::new(()),
            offsets,
            stats,
            _lock: lock_file,
            trash_seq: AtomicU64::new(0),
        })
    }

    /// Counters since open.
    pub fn stats(&self) -> LogStats {
        let s = &self.stats;
        LogStats {
            appends: s.appends.load(Ordering::Relaxed),
            records: s.records.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
            writes: s.writes.load(Ordering::Relaxed),
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
        }
    }

    /// Topics whose log failed and has not recovered yet, by name.
    pub fn failures(&self) -> Vec<TopicFailure> {
        let topics: Vec<Arc<Topic>> = lock(&self.topics).values().cloned().collect();
        let mut out: Vec<TopicFailure> = topics
            .iter()
            .filter_map(|t| lock(&t.shared.failure).clone())
            .collect();
        out.sort_by(|a, b| a.topic.cmp(&b.topic));
        out
    }

    /// The log's root directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Names of the topics in the log (those found at open and those created since).
    pub fn topics(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.topics).keys().cloned().collect();
        names.sort();
        names
    }

    fn existing(&self, topic: &str) -> Option<Arc<Topic>> {
        lock(&self.topics).get(topic).cloned()
    }

    fn check_partition(topic: &str, partition: u32) -> Result<(), LogError> {
        if partition == 0 {
            Ok(())
        } else {
            Err(LogError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
            })
        }
    }

    /// The topic, created (directory, first segment, writer) if missing.
    async fn topic(&self, name: &str) -> Result<Arc<Topic>, LogError> {
        if let Some(t) = self.existing(name) {
            return Ok(t);
        }
        let encoded = names::encode(name)?;
        let _admin = self.admin.lock().await;
        if let Some(t) = self.existing(name) {
            return Ok(t);
        }
        let dir = self.topics_dir.join(encoded);
        let topics_dir = self.topics_dir.clone();
        let cfg = self.cfg.clone();
        let owned = name.to_owned();
        let (state, dir, name) = blocking(move || {
            create_dir(&dir)?;
            if cfg.fsync {
                segment::sync_dir(&topics_dir)?;
            }
            Topic::open_blocking(owned, dir, &cfg)
        })
        .await?;
        let t = Arc::new(Topic::start(
            name.clone(),
            dir,
            state,
            self.cfg.clone(),
            self.stats.clone(),
        ));
        lock(&self.topics).insert(name, t.clone());
        Ok(t)
    }

    /// Delete whole segments beyond the configured age or size, oldest first, never a
    /// topic's active segment. `now` is a parameter so tests and the engine control time.
    pub async fn enforce_retention(&self, now: SystemTime) -> Result<RetentionReport, LogError> {
        if self.cfg.retention_max_age.is_none() && self.cfg.retention_max_bytes.is_none() {
            return Ok(RetentionReport::default());
        }
        // Excludes topic deletion (which moves the directory) and concurrent retention runs.
        let _admin = self.admin.lock().await;
        let topics: Vec<Arc<Topic>> = lock(&self.topics).values().cloned().collect();
        let mut report = RetentionReport::default();
        for t in topics {
            if let Some(age) = self.cfg.retention_max_age {
                // A quiet topic never fills its active segment; seal it once it has expired
                // so that its events do not outlive the retention period.
                let active = lock(&t.shared.state).segments.last().cloned();
                if let Some(active) = active {
                    let expired =
                        active.len() > 0 && active.modified().is_ok_and(|m| m + age <= now);
                    if expired {
                        t.roll().await;
                    }
                }
            }
            let shared = t.shared.clone();
            let cfg = self.cfg.clone();
            let hold = cfg
                .retention_hold_group
                .as_deref()
                .map(|g| self.offsets.committed(g, &t.shared.name, 0).unwrap_or(0));
            let r = blocking(move || retain_topic(&shared, &cfg, now, hold)).await?;
            report.segments_deleted += r.segments_deleted;
            report.bytes_deleted += r.bytes_deleted;
            report.segments_held += r.segments_held;
        }
        Ok(report)
    }
}

/// Retention for one topic (blocking).
fn retain_topic(
    shared: &topic::Shared,
    cfg: &LogConfig,
    now: SystemTime,
    hold: Option<u64>,
) -> Result<RetentionReport, LogError> {
    let (sealed, next_bases, mut total) = {
        let st = lock(&shared.state);
        let sealed: Vec<Arc<segment::Segment>> =
            st.segments[..st.segments.len().saturating_sub(1)].to_vec();
        // A sealed segment ends where the next one begins.
        let next_bases: Vec<u64> = st.segments.iter().skip(1).map(|s| s.base).collect();
        let total: u64 = st.segments.iter().map(|s| s.len()).sum();
        (sealed, next_bases, total)
    };
    let mut doomed = 0;
    let mut held = 0;
    for (i, seg) in sealed.iter().enumerate() {
        let too_big = cfg.retention_max_bytes.is_some_and(|max| total > max);
        let too_old = match cfg.retention_max_age {
            Some(age) => {
                let modified = seg
                    .modified()
                    .map_err(io_err(format!("stat {}", seg.path.display())))?;
                modified + age <= now
            }
            None => false,
        };
        if !(too_big || too_old) {
            break;
        }
        if hold.is_some_and(|h| next_bases.get(i).is_none_or(|&end| end > h)) {
            // The consumer has not passed this segment: keep it and everything after it.
            held = (sealed.len() - i) as u64;
            break;
        }
        total -= seg.len();
        doomed += 1;
    }
    if held > 0 {
        tracing::warn!(topic = %shared.name, segments = held, "expired segments kept: the router has not passed them yet");
    }
    if doomed == 0 {
        return Ok(RetentionReport {
            segments_held: held,
            ..RetentionReport::default()
        });
    }
    // Only retention removes segments and it runs under the admin lock, so the first `doomed`
    // segments are still the ones examined. Unpublish first, then delete oldest first, so a
    // crash midway leaves a contiguous suffix.
    lock(&shared.state).segments.drain(..doomed);
    let mut report = RetentionReport {
        segments_held: held,
        ..RetentionReport::default()
    };
    for seg in &sealed[..doomed] {
        std::fs::remove_file(&seg.path)
            .map_err(io_err(format!("deleting {}", seg.path.display())))?;
        report.segments_deleted += 1;
        report.bytes_deleted += seg.len();
        tracing::debug!(topic = %shared.name, segment = %seg.path.display(), "retention deleted segment");
    }
    if cfg.fsync {
        segment::sync_dir(&shared.dir)?;
    }
    Ok(report)
}

#[async_trait]
impl EventLog for SegmentLog {
    async fn append(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Bytes>,
    ) -> Result<Range<u64>, LogError> {
        Self::check_partition(topic, partition)?;
        let size = frame::encoded_len(&records);
        if size > self.cfg.max_batch_bytes || size > frame::MAX_BODY_LEN as usize {
            return Err(LogError::BatchTooLarge {
                size,
                limit: self.cfg.max_batch_bytes.min(frame::MAX_BODY_LEN as usize),
            });
        }
        let t = self.topic(topic).await?;
        if records.is_empty() {
            let end = lock(&t.shared.state).end;
            return Ok(end..end);
        }
        t.append(records).await
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<LogRecord>, LogError> {
        Self::check_partition(topic, partition)?;
        let Some(t) = self.existing(topic) else {
            return if from == 0 {
                Ok(Vec::new())
            } else {
                Err(LogError::OffsetOutOfRange {
                    topic: topic.to_owned(),
                    requested: from,
                    start: 0,
                    end: 0,
                })
            };
        };
        let shared = t.shared.clone();
        // A reader following the tail reads what was just written, from the page cache, in
        // microseconds: do it in place rather than paying two thread hand-offs per read.
        // Anything further back may touch the disk and goes to the blocking pool.
        let end = lock(&shared.state).end;
        if end.saturating_sub(from) <= INLINE_READ_RECORDS {
            return Topic::read_blocking(&shared, from, max_records, max_bytes);
        }
        blocking(move || Topic::read_blocking(&shared, from, max_records, max_bytes)).await
    }

    async fn start_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        Self::check_partition(topic, partition)?;
        Ok(self
            .existing(topic)
            .map_or(0, |t| lock(&t.shared.state).start()))
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        Self::check_partition(topic, partition)?;
        Ok(self
            .existing(topic)
            .map_or(0, |t| lock(&t.shared.state).end))
    }

    async fn partitions(&self, _topic: &str) -> Result<u32, LogError> {
        Ok(1)
    }

    async fn subscribe(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<watch::Receiver<u64>, LogError> {
        Self::check_partition(topic, partition)?;
        Ok(self.topic(topic).await?.shared.end_watch.subscribe())
    }

    async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<(), LogError> {
        Self::check_partition(topic, partition)?;
        self.offsets.commit(group, topic, partition, offset).await
    }

    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>, LogError> {
        Self::check_partition(topic, partition)?;
        Ok(self.offsets.committed(group, topic, partition))
    }

    fn failures(&self) -> Vec<TopicFailure> {
        SegmentLog::failures(self)
    }

    async fn delete_topic(&self, topic: &str) -> Result<(), LogError> {
        let _admin = self.admin.lock().await;
        let Some(t) = self.existing(topic) else {
            // Still forget offsets committed for a topic that never had data.
            return self.offsets.remove_topic(topic).await;
        };
        t.shutdown_for_delete().await;
        let dir = t.shared.dir.clone();
        let trash = self.trash_dir.join(format!(
            "{}-{}",
            self.trash_seq.fetch_add(1, Ordering::Relaxed),
            dir.file_name().and_then(|n| n.to_str()).unwrap_or("topic")
        ));
        let topics_dir = self.topics_dir.clone();
        let fsync = self.cfg.fsync;
        blocking(move || {
            // Rename first (atomic), so a crash cannot leave a half-deleted topic behind.
            std::fs::rename(&dir, &trash)
                .map_err(io_err(format!("moving {} to trash", dir.display())))?;
            if fsync {
                segment::sync_dir(&topics_dir)?;
            }
            std::fs::remove_dir_all(&trash).map_err(io_err(format!("deleting {}", trash.display())))
        })
        .await?;
        lock(&self.topics).remove(topic);
        self.offsets.remove_topic(topic).await
    }
}
