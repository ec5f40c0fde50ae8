//! One topic (channel): its segments, its visible offsets and its writer task.
//!
//! Group commit: `append` sends its batch to the topic's writer task and awaits a oneshot.
//! The writer drains everything queued, encodes it into one buffer, issues one positioned
//! write and one `fdatasync` on a blocking thread, then publishes the new end offset and
//! completes every waiter. Batches that arrive during that fsync form the next group, so the
//! number of fsyncs tracks disk latency, not request rate.
//!
//! Failure: a write that cannot be undone, a failed fsync or a failed roll marks the writer
//! failed ([`Failure`], mirrored in [`Shared::failure`] for health checks). Appends fail fast
//! until [`Writer::recover`] succeeds; the writer tries it after a backoff, on its own or when
//! an append arrives.

use crate::frame;
use crate::segment::{self, IndexEntry, ReadQuery, Segment, INDEX_INTERVAL};
use crate::{io_err, lock, LogConfig, LogError, LogRecord, StatsInner, TopicFailure};
use bytes::Bytes;
use std::collections::VecDeque;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, oneshot, watch};

/// Upper bound on the bytes written by one group commit, to bound memory and latency.
const MAX_GROUP_BYTES: usize = 8 << 20;
/// Delay before the first recovery attempt of a failed topic; doubled after each failed
/// attempt up to [`MAX_RECOVERY_BACKOFF`], so a broken disk is not hammered.
const FIRST_RECOVERY_BACKOFF: Duration = Duration::from_millis(50);
const MAX_RECOVERY_BACKOFF: Duration = Duration::from_secs(1);

type AppendReply = oneshot::Sender<Result<Range<u64>, LogError>>;

enum Msg {
    Append {
        records: Vec<Bytes>,
        reply: AppendReply,
    },
    /// Seal the active segment if it holds data (so retention can delete it).
    Roll(oneshot::Sender<()>),
    /// Finish what was queued before this message, then stop accepting appends.
    Shutdown(oneshot::Sender<()>),
}

pub(crate) struct TopicState {
    /// Sorted by base; the last one is the active segment.
    pub segments: Vec<Arc<Segment>>,
    /// End offset (exclusive) of acknowledged, durable records.
    pub end: u64,
}

impl TopicState {
    pub(crate) fn start(&self) -> u64 {
        self.segments.first().map_or(self.end, |s| s.base)
    }
}

/// What readers and the writer share.
pub(crate) struct Shared {
    pub name: String,
    pub dir: PathBuf,
    pub state: Mutex<TopicState>,
    pub end_watch: watch::Sender<u64>,
    /// Set while the writer is failed (see the module docs).
    pub failure: Mutex<Option<TopicFailure>>,
}

pub(crate) struct Topic {
    pub shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Msg>,
    deleting: AtomicBool,
}

impl Topic {
    /// Open (recovering the tail) or create the topic stored in `dir` and start its writer.
    /// Blocking: call from a blocking context; `spawn_writer` must then run on the runtime.
    pub(crate) fn open_blocking(
        name: String,
        dir: PathBuf,
        cfg: &LogConfig,
    ) -> Result<(TopicState, PathBuf, String), LogError> {
        let mut bases = Vec::new();
        let entries =
            std::fs::read_dir(&dir).map_err(io_err(format!("listing {}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(io_err(format!("listing {}", dir.display())))?;
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            if let Some(base) = segment::parse_segment_file_name(file_name) {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        let mut segments = Vec::with_capacity(bases.len().max(1));
        for &base in &bases {
            segments.push(Arc::new(Segment::open(
                dir.join(segment::segment_file_name(base)),
                base,
            )?));
        }
        let end = match segments.last() {
            Some(tail) => tail.recover_tail(cfg.fsync)?,
            None => {
                segments.push(Segment::create(&dir, 0, cfg.fsync)?);
                0
            }
        };
        Ok((TopicState { segments, end }, dir, name))
    }

    /// Wrap recovered state and spawn the writer task (needs a Tokio runtime).
    pub(crate) fn start(
        name: String,
        dir: PathBuf,
        state: TopicState,
        cfg: Arc<LogConfig>,
        stats: Arc<StatsInner>,
    ) -> Topic {
        let active = state.segments.last().cloned();
        let end = state.end;
        let shared = Arc::new(Shared {
            name,
            dir: dir.clone(),
            state: Mutex::new(state),
            end_watch: watch::Sender::new(end),
            failure: Mutex::new(None),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = active.map(|active| Writer {
            dir,
            len: active.len(),
            // Force an index entry at the next frame; cheap and keeps lookups short.
            since_index: INDEX_INTERVAL,
            active,
            next: end,
            cfg,
            stats,
            failed: None,
        });
        tokio::spawn(run_writer(writer, shared.clone(), rx));
        Topic {
            shared,
            tx,
            deleting: AtomicBool::new(false),
        }
    }

    pub(crate) async fn append(&self, records: Vec<Bytes>) -> Result<Range<u64>, LogError> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::Append { records, reply }).is_err() {
            return Err(self.stopped());
        }
        rx.await.map_err(|_| self.stopped())?
    }

    fn stopped(&self) -> LogError {
        if self.deleting.load(Ordering::Acquire) {
            LogError::TopicDeleted(self.shared.name.clone())
        } else {
            LogError::Failed("log writer stopped".into())
        }
    }

    /// Stop the writer after it has finished everything queued so far.
    pub(crate) async fn shutdown_for_delete(&self) {
        self.deleting.store(true, Ordering::Release);
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(ack)).is_ok() {
            let _ = done.await;
        }
    }

    /// Seal the active segment if it is not empty; returns once done.
    pub(crate) async fn roll(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Roll(ack)).is_ok() {
            let _ = done.await;
        }
    }

    /// Capture what a read needs under the lock, then read without holding it.
    pub(crate) fn read_blocking(
        shared: &Shared,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<LogRecord>, LogError> {
        let (segs, end) = {
            let st = lock(&shared.state);
            let start = st.start();
            if from < start || from > st.end {
                return Err(LogError::OffsetOutOfRange {
                    topic: shared.name.clone(),
                    requested: from,
                    start,
                    end: st.end,
                });
            }
            if from == st.end || max_records == 0 {
                return Ok(Vec::new());
            }
            let first = st.segments.partition_point(|s| s.base <= from).max(1) - 1;
            let segs: Vec<(Arc<Segment>, u64, Option<u64>)> = st.segments[first..]
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let next_base = st.segments.get(first + i + 1).map(|n| n.base);
                    (s.clone(), s.len(), next_base)
                })
                .collect();
            (segs, st.end)
        };
        let mut q = ReadQuery {
            next: from,
            end,
            max_records,
            max_bytes,
            bytes: 0,
        };
        let mut out = Vec::new();
        for (seg, len, next_base) in segs {
            if seg.read_into(&mut q, len, next_base, &mut out)? || q.next >= end {
                break;
            }
        }
        Ok(out)
    }
}

/// The writer's private state; moved into blocking tasks for each write.
struct Writer {
    dir: PathBuf,
    active: Arc<Segment>,
    /// Durable length of the active segment.
    len: u64,
    /// Next offset to assign.
    next: u64,
    since_index: u64,
    cfg: Arc<LogConfig>,
    stats: Arc<StatsInner>,
    /// Set after a failure that leaves the file in an unknown state (notably a failed
    /// fsync, after which the kernel may have dropped dirty pages): nothing more is
    /// acknowledged until [`Writer::recover`] has succeeded.
    failed: Option<Failure>,
}

/// Why a writer failed and when it tries to recover next.
struct Failure {
    reason: String,
    since: SystemTime,
    retry_at: Instant,
    backoff: Duration,
}

struct Written {
    ranges: Vec<Range<u64>>,
    index: Vec<IndexEntry>,
    len: u64,
    end: u64,
}

impl Writer {
    /// Marks the writer failed; recovery is first tried after a short backoff.
    fn fail(&mut self, reason: String) {
        tracing::error!(segment = %self.active.path.display(), %reason, "event log failed; appends are refused until it recovers");
        self.failed = Some(Failure {
            reason,
            since: SystemTime::now(),
            retry_at: Instant::now() + FIRST_RECOVERY_BACKOFF,
            backoff: FIRST_RECOVERY_BACKOFF,
        });
    }

    /// `fdatasync`, unless the fault-injection mock answers first.
    fn sync_data(&self, file: &std::fs::File) -> std::io::Result<()> {
        if let Some(faults) = &self.cfg.fault_injection {
            faults.before_sync()?;
        }
        file.sync_data()
    }

    /// Brings a failed writer back: what was acknowledged is kept, everything after it is cut.
    ///
    /// A half-made segment from a failed roll is removed (it never held data). The active
    /// segment is reopened (a fresh file description, so an error already reported on the old
    /// one cannot hide a new one), cut back to the acknowledged length, synced, and scanned
    /// like recovery on open: every frame must check out and end at the acknowledged end
    /// offset. Returns the reopened segment, which replaces the active one for readers.
    fn recover(&mut self) -> Result<Arc<Segment>, LogError> {
        let stray = self.dir.join(segment::segment_file_name(self.next));
        if self.active.base != self.next {
            match std::fs::metadata(&stray) {
                Ok(m) if m.len() == 0 => {
                    std::fs::remove_file(&stray)
                        .map_err(io_err(format!("removing {}", stray.display())))?;
                    if self.cfg.fsync {
                        segment::sync_dir(&self.dir)?;
                    }
                }
                Ok(_) => {
                    return Err(LogError::Corrupt {
                        path: stray,
                        position: 0,
                        reason: "a segment that never took an acknowledged append holds data"
                            .into(),
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(format!("stat {}", stray.display()))(e)),
            }
        }
        let seg = Segment::open(self.active.path.clone(), self.active.base)?;
        let on_disk = seg.len();
        if on_disk < self.len {
            return Err(LogError::Corrupt {
                path: seg.path.clone(),
                position: on_disk,
                reason: format!("shorter than its {} acknowledged bytes", self.len),
            });
        }
        let file = seg.file();
        file.set_len(self.len)
            .map_err(io_err(format!("truncating {}", seg.path.display())))?;
        seg.set_len(self.len);
        if self.cfg.fsync {
            self.sync_data(file)
                .map_err(io_err(format!("syncing {}", seg.path.display())))?;
        }
        // Only checked, never cut: everything left is acknowledged.
        let end = seg.check_all()?;
        if end != self.next {
            return Err(LogError::Corrupt {
                path: seg.path.clone(),
                position: self.len,
                reason: format!(
                    "frames end at offset {end}, acknowledged appends at {}",
                    self.next
                ),
            });
        }
        let seg = Arc::new(seg);
        self.active = seg.clone();
        self.since_index = INDEX_INTERVAL;
        Ok(seg)
    }

    fn roll(&mut self) -> Result<Arc<Segment>, LogError> {
        let seg = Segment::create(&self.dir, self.next, self.cfg.fsync).inspect_err(|e| {
            // The new file may exist half-made; recovery removes it.
            self.fail(format!("segment roll failed: {e}"));
        })?;
        self.active = seg.clone();
        self.len = 0;
        self.since_index = INDEX_INTERVAL;
        Ok(seg)
    }

    fn write(&mut self, batches: &[Vec<Bytes>]) -> Result<Written, LogError> {
        let total: usize = batches.iter().map(|b| frame::encoded_len(b)).sum();
        let mut buf = Vec::with_capacity(total);
        let mut ranges = Vec::with_capacity(batches.len());
        let mut index = Vec::new();
        let mut next = self.next;
        let mut since = self.since_index;
        for batch in batches {
            let pos = self.len + buf.len() as u64;
            if since >= INDEX_INTERVAL {
                index.push(IndexEntry { offset: next, pos });
                since = 0;
            }
            let before = buf.len();
            frame::encode(&mut buf, next, batch);
            since += (buf.len() - before) as u64;
            let n = batch.len() as u64;
            ranges.push(next..next + n);
            next += n;
        }
        let file = self.active.file();
        if let Err(e) = file.write_all_at(&buf, self.len) {
            // Cut whatever part landed so the next group starts at a frame boundary.
            let undo = file.set_len(self.len).and_then(|()| {
                if self.cfg.fsync {
                    self.sync_data(file)
                } else {
                    Ok(())
                }
            });
            if let Err(u) = undo {
                self.fail(format!("write failed ({e}) and could not be undone ({u})"));
            }
            return Err(io_err(format!("writing {}", self.active.path.display()))(e));
        }
        if self.cfg.fsync {
            if let Err(e) = self.sync_data(file) {
                self.fail(format!(
                    "fsync of {} failed: {e}",
                    self.active.path.display()
                ));
                return Err(io_err(format!("syncing {}", self.active.path.display()))(e));
            }
            self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        self.stats
            .appends
            .fetch_add(batches.len() as u64, Ordering::Relaxed);
        self.stats
            .records
            .fetch_add(next - self.next, Ordering::Relaxed);
        self.stats
            .bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.len += buf.len() as u64;
        self.next = next;
        self.since_index = since;
        Ok(Written {
            ranges,
            index,
            len: self.len,
            end: next,
        })
    }
}

/// Fail every queued append with the same error.
fn fail_all(pending: &mut VecDeque<(Vec<Bytes>, AppendReply)>, err: impl Fn() -> LogError) {
    for (_, reply) in pending.drain(..) {
        let _ = reply.send(Err(err()));
    }
}

fn join_err_msg(msg: &str) -> LogError {
    LogError::Failed(format!("log writer task failed: {msg}"))
}

/// Mirrors the writer's failure state (or its loss after a panic) for health checks.
fn publish_failure(shared: &Shared, writer: Option<&Writer>) {
    let now = match writer {
        None => Some(TopicFailure {
            topic: shared.name.clone(),
            reason: "log writer stopped after a panic".into(),
            since: SystemTime::now(),
        }),
        Some(w) => w.failed.as_ref().map(|f| TopicFailure {
            topic: shared.name.clone(),
            reason: f.reason.clone(),
            since: f.since,
        }),
    };
    let mut slot = lock(&shared.failure);
    if slot.is_some() && now.is_none() {
        tracing::info!(topic = %shared.name, "event log recovered");
    }
    *slot = now;
}

/// One recovery attempt of a failed writer. `None` if the blocking thread panicked.
async fn try_recover(w: Writer, shared: &Shared) -> Option<Writer> {
    let (mut w, res) = match on_blocking(w, Writer::recover).await {
        Ok(v) => v,
        Err(msg) => {
            tracing::error!(topic = %shared.name, error = %msg, "log recovery panicked");
            return None;
        }
    };
    match res {
        Ok(seg) => {
            {
                let mut st = lock(&shared.state);
                match st.segments.last_mut() {
                    Some(last) if last.base == seg.base => *last = seg,
                    _ => st.segments.push(seg),
                }
            }
            w.failed = None;
        }
        Err(e) => {
            if let Some(f) = w.failed.as_mut() {
                f.backoff = (f.backoff * 2).min(MAX_RECOVERY_BACKOFF);
                f.retry_at = Instant::now() + f.backoff;
                tracing::warn!(topic = %shared.name, error = %e, retry_in_ms = f.backoff.as_millis() as u64, "log recovery failed");
            }
        }
    }
    Some(w)
}

/// Requests the writer has received but not finished.
#[derive(Default)]
struct Inbox {
    pending: VecDeque<(Vec<Bytes>, AppendReply)>,
    rolls: Vec<oneshot::Sender<()>>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Inbox {
    fn accept(&mut self, msg: Msg) {
        match msg {
            Msg::Append { records, reply } => self.pending.push_back((records, reply)),
            Msg::Roll(ack) => self.rolls.push(ack),
            Msg::Shutdown(ack) => self.shutdown = Some(ack),
        }
    }

    fn idle(&self) -> bool {
        self.pending.is_empty() && self.rolls.is_empty()
    }
}

/// Run `f` on the writer on a blocking thread. `None` if that thread panicked (the writer
/// is then gone and every later append fails).
async fn on_blocking<T: Send + 'static>(
    mut w: Writer,
    f: impl FnOnce(&mut Writer) -> T + Send + 'static,
) -> Result<(Writer, T), String> {
    tokio::task::spawn_blocking(move || {
        let r = f(&mut w);
        (w, r)
    })
    .await
    .map_err(|e| e.to_string())
}

async fn run_writer(
    mut writer: Option<Writer>,
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Msg>,
) {
    let mut inbox = Inbox::default();
    loop {
        if inbox.idle() {
            if let Some(ack) = inbox.shutdown.take() {
                // Everything before the shutdown request is done; refuse the rest.
                rx.close();
                while let Ok(msg) = rx.try_recv() {
                    if let Msg::Append { reply, .. } = msg {
                        let _ = reply.send(Err(LogError::TopicDeleted(shared.name.clone())));
                    }
                }
                let _ = ack.send(());
                return;
            }
            // A failed writer retries recovery on its own, so the topic heals without traffic.
            let retry_at = writer
                .as_ref()
                .and_then(|w| w.failed.as_ref())
                .map(|f| f.retry_at);
            let msg = match retry_at {
                Some(at) => match tokio::time::timeout_at(at.into(), rx.recv()).await {
                    Ok(msg) => msg,
                    Err(_elapsed) => {
                        if let Some(w) = writer.take() {
                            writer = try_recover(w, &shared).await;
                        }
                        publish_failure(&shared, writer.as_ref());
                        continue;
                    }
                },
                None => rx.recv().await,
            };
            match msg {
                Some(msg) => inbox.accept(msg),
                None => return,
            }
        }
        // Group commit: take everything that queued up while the last write ran.
        while inbox.shutdown.is_none() {
            match rx.try_recv() {
                Ok(msg) => inbox.accept(msg),
                Err(_) => break,
            }
        }
        if inbox.idle() {
            continue;
        }
        let Some(mut w) = writer.take() else {
            fail_all(&mut inbox.pending, || {
                LogError::Failed("log writer stopped after a panic".into())
            });
            inbox.rolls.clear();
            continue;
        };
        if w.failed
            .as_ref()
            .is_some_and(|f| f.retry_at <= Instant::now())
        {
            let recovered = try_recover(w, &shared).await;
            publish_failure(&shared, recovered.as_ref());
            let Some(w2) = recovered else {
                continue;
            };
            w = w2;
        }
        if let Some(f) = &w.failed {
            let reason = f.reason.clone();
            fail_all(&mut inbox.pending, || LogError::Failed(reason.clone()));
            inbox.rolls.clear();
            writer = Some(w);
            continue;
        }

        // Roll if asked to (retention of a quiet topic) or if the next batch does not fit; a
        // batch larger than a segment gets a segment of its own rather than an error.
        let next_len = inbox
            .pending
            .front()
            .map_or(0, |(records, _)| frame::encoded_len(records) as u64);
        let requested = !inbox.rolls.is_empty();
        if w.len > 0 && (requested || w.len + next_len > w.cfg.segment_bytes) {
            match on_blocking(w, Writer::roll).await {
                Err(msg) => {
                    fail_all(&mut inbox.pending, || join_err_msg(&msg));
                    inbox.rolls.clear();
                    publish_failure(&shared, None);
                    continue;
                }
                Ok((w2, Err(e))) => {
                    let msg = e.to_string();
                    fail_all(&mut inbox.pending, || {
                        LogError::Failed(format!("segment roll failed: {msg}"))
                    });
                    inbox.rolls.clear();
                    publish_failure(&shared, Some(&w2));
                    writer = Some(w2);
                    continue;
                }
                Ok((w2, Ok(seg))) => {
                    lock(&shared.state).segments.push(seg);
                    w = w2;
                }
            }
        }
        for ack in inbox.rolls.drain(..) {
            let _ = ack.send(());
        }
        if inbox.pending.is_empty() {
            writer = Some(w);
            continue;
        }

        // Take as many queued batches as fit in the active segment and the group limit.
        let mut n = 0;
        let mut bytes = w.len;
        let mut group_bytes = 0usize;
        for (records, _) in inbox.pending.iter() {
            let l = frame::encoded_len(records);
            if n > 0
                && (bytes + l as u64 > w.cfg.segment_bytes || group_bytes + l > MAX_GROUP_BYTES)
            {
                break;
            }
            n += 1;
            bytes += l as u64;
            group_bytes += l;
        }
        let (batches, replies): (Vec<Vec<Bytes>>, Vec<AppendReply>) =
            inbox.pending.drain(..n).unzip();
        let active = w.active.clone();
        let (w2, res) = match on_blocking(w, move |w| w.write(&batches)).await {
            Ok(v) => v,
            Err(msg) => {
                for reply in replies {
                    let _ = reply.send(Err(join_err_msg(&msg)));
                }
                publish_failure(&shared, None);
                continue;
            }
        };
        if w2.failed.is_some() {
            publish_failure(&shared, Some(&w2));
        }
        writer = Some(w2);
        match res {
            Ok(written) => {
                {
                    let mut st = lock(&shared.state);
                    active.push_index(&written.index);
                    active.set_len(written.len);
                    st.end = written.end;
                }
                shared.end_watch.send_replace(written.end);
                for (reply, range) in replies.into_iter().zip(written.ranges) {
                    let _ = reply.send(Ok(range));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(LogError::Io {
                        context: "appending".into(),
                        source: std::io::Error::other(msg.clone()),
                    }));
                }
            }
        }
    }
}
