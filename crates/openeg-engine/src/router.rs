//! One router per channel: tail the log, match, dispatch, record, commit.
//!
//! Two paths (`ARCHITECTURE.md`, "The event's path"):
//! * **Fast path** (steady state): matched events are attempted at once, before anything is
//!   written; trace rows, deliveries left to the retry poller and the attempts' outcomes go
//!   to the recorder, which writes them in batches behind the data path. The committed
//!   offset stays below every event whose attempt is still running ([`Inflight`]) and moves
//!   only after a recorder flush, so everything below it is recorded.
//! * **Replay path** (events already in the log when the router started, i.e. possibly routed
//!   before a crash): deliveries are recorded first, idempotently, and only those this router
//!   created are attempted, so a restart re-sends only what was in flight or unrecorded.

use crate::dispatch::{self, Event, Inflight, Job, Record, Stored};
use crate::{now_ms, split_topic, Engine, ROUTER_GROUP};
use openeg_log::LogError;
use openeg_store::delivery::{NewDelivery, TraceRow};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The CloudEvent attributes a trace row needs; everything else is skipped unparsed.
#[derive(Deserialize)]
struct Attrs<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    source: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "type")]
    ty: Option<Cow<'a, str>>,
}

/// The log record written by [`Engine::publish`].
#[derive(Deserialize)]
pub(crate) struct Envelope<'a> {
    pub received: i64,
    #[serde(borrow)]
    pub event: &'a RawValue,
}

/// The event's part of a log record as a shared slice of it (no copy); `raw` must borrow
/// from `payload` (it does: it is the envelope's `event` member).
pub(crate) fn event_bytes(payload: &bytes::Bytes, raw: &[u8]) -> bytes::Bytes {
    let start = (raw.as_ptr() as usize).wrapping_sub(payload.as_ptr() as usize);
    match start.checked_add(raw.len()) {
        Some(end) if end <= payload.len() => payload.slice(start..end),
        _ => bytes::Bytes::copy_from_slice(raw),
    }
}

/// Runs until shutdown. Errors (store or log unavailable) are logged and retried after a pause;
/// the committed offset only moves after the deliveries of a batch are recorded.
pub(crate) async fn run(engine: Arc<Engine>, topic: String) {
    let Some((project, channel)) = split_topic(&topic).map(|(p, c)| (p.to_string(), c.to_string()))
    else {
        tracing::warn!(%topic, "not a channel topic; no router");
        return;
    };
    let mut shutdown = engine.shutdown.clone();
    let mut end = match engine.log.subscribe(&topic, 0).await {
        Ok(rx) => rx,
        Err(e) => {
            tracing::error!(%topic, error = %e, "cannot watch the channel log");
            return;
        }
    };
    let next = match engine.log.committed(ROUTER_GROUP, &topic, 0).await {
        Ok(Some(o)) => o,
        Ok(None) => engine.log.start_offset(&topic, 0).await.unwrap_or(0),
        Err(e) => {
            tracing::error!(%topic, error = %e, "cannot read the router offset");
            return;
        }
    };
    // The committed offset only shortens replay after a restart: recording is idempotent
    // (a replayed delivery is not created or dispatched twice), so it is committed at most
    // once per COMMIT_INTERVAL, not after every batch.
    let mut committed = next;
    let mut last_commit = Instant::now();
    // Events below this were in the log before this router started (possibly routed before a
    // crash): a replay task takes them record-first, beside this loop, so that a backlog does
    // not hold back events published after the start. Commits stay below its progress.
    let replay_until = (*end.borrow()).max(next);
    let replayed = Arc::new(AtomicU64::new(next));
    if next < replay_until {
        tokio::spawn(replay(
            engine.clone(),
            topic.clone(),
            project.clone(),
            channel.clone(),
            next,
            replay_until,
            replayed.clone(),
        ));
    }
    let mut next = replay_until;
    let inflight = Arc::new(Inflight::with_replay(replayed));
    tracing::debug!(%topic, from = committed, replay_until, "router started");
    loop {
        if *shutdown.borrow() {
            finish(&engine, &topic, &inflight, &mut committed, next).await;
            return;
        }
        match step(
            &engine,
            &topic,
            &project,
            &channel,
            next,
            Path::Fast(&inflight),
        )
        .await
        {
            Ok(Some(n)) => {
                next = n;
                if last_commit.elapsed() >= COMMIT_INTERVAL {
                    commit(&engine, &topic, &inflight, &mut committed, next).await;
                    last_commit = Instant::now();
                }
            }
            Ok(None) => {
                // Caught up. A commit costs a recorder flush (a store transaction) and an
                // offsets file write (two fsyncs); under a steady trickle the router catches
                // up after almost every publish, so it still commits at most once per
                // COMMIT_INTERVAL, and a timer commits what is left once publishing stops.
                if last_commit.elapsed() >= COMMIT_INTERVAL {
                    commit(&engine, &topic, &inflight, &mut committed, next).await;
                    last_commit = Instant::now();
                }
                // Sleep until the end offset moves past `next` (or, while something below it
                // is uncommitted, until the next commit is due), or shutdown.
                let waiting = committed < next;
                let due = tokio::time::Instant::from_std(last_commit + COMMIT_INTERVAL);
                let stop = tokio::select! {
                    r = end.wait_for(|e| *e > next) => r.is_err(),
                    _ = tokio::time::sleep_until(due), if waiting => false,
                    _ = shutdown.changed() => true,
                };
                if stop {
                    finish(&engine, &topic, &inflight, &mut committed, next).await;
                    return;
                }
            }
            Err(StepError::OutOfRange { start }) => {
                // Retention holds what this router has not passed, so this takes a log
                // changed behind the server's back; the loss is counted, not hidden.
                let lost = start.saturating_sub(next);
                engine.metrics.expired_unrouted.add(lost);
                tracing::error!(%topic, from = next, to = start, events = lost, "events removed from the log before they were routed");
                next = start;
            }
            Err(StepError::Other(e)) => {
                tracing::warn!(%topic, error = %e, "routing failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {},
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

const COMMIT_INTERVAL: Duration = Duration::from_millis(200);

/// Routes `[from, until)` on the replay path (record first, then attempt only what this call
/// created), publishing its progress in `replayed`: the router commits nothing above it.
async fn replay(
    engine: Arc<Engine>,
    topic: String,
    project: String,
    channel: String,
    from: u64,
    until: u64,
    replayed: Arc<AtomicU64>,
) {
    let mut shutdown = engine.shutdown.clone();
    let started = Instant::now();
    let mut next = from;
    while next < until {
        if *shutdown.borrow() {
            return;
        }
        match step(
            &engine,
            &topic,
            &project,
            &channel,
            next,
            Path::Replay { until },
        )
        .await
        {
            Ok(Some(n)) => next = n,
            // Nothing readable below `until` any more: the range is done.
            Ok(None) => next = until,
            Err(StepError::OutOfRange { start }) => {
                let lost = start.min(until).saturating_sub(next);
                engine.metrics.expired_unrouted.add(lost);
                tracing::error!(%topic, from = next, to = start, events = lost, "events removed from the log before they were routed");
                next = start.min(until);
            }
            Err(StepError::Other(e)) => {
                tracing::warn!(%topic, error = %e, "replaying failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {},
                    _ = shutdown.changed() => return,
                }
            }
        }
        replayed.store(next, Ordering::Release);
    }
    tracing::info!(%topic, events = until - from, seconds = started.elapsed().as_secs_f64(), "replayed the events logged before the start");
}

/// Cleans the free text of trace rows and deliveries in place (see
/// [`dispatch::clean_text`]); `true` if anything changed.
fn sanitize(traces: &mut [TraceRow], deliveries: &mut [NewDelivery]) -> bool {
    let mut changed = false;
    let mut fix = |s: &mut String| {
        if s.chars().count() > 256 || s.chars().any(char::is_control) {
            *s = dispatch::clean_text(s, 256);
            changed = true;
        }
    };
    for t in traces.iter_mut() {
        fix(&mut t.event_id);
        fix(&mut t.source_name);
        fix(&mut t.event_type);
    }
    for d in deliveries.iter_mut() {
        fix(&mut d.event_id);
    }
    changed
}

/// Commits the highest offset below which everything is recorded: no unrecorded attempt in
/// flight, and the recorder flushed.
async fn commit(engine: &Engine, topic: &str, inflight: &Inflight, committed: &mut u64, next: u64) {
    let to = inflight.low_water(next);
    if to <= *committed {
        return;
    }
    if !dispatch::flush(engine).await {
        return;
    }
    match engine.log.commit(ROUTER_GROUP, topic, 0, to).await {
        Ok(()) => *committed = to,
        Err(e) => tracing::warn!(topic, error = %e, "committing the router offset failed"),
    }
}

/// On shutdown: give running attempts a moment to finish, then commit what is recorded, so a
/// restart replays (and re-sends) as little as possible.
async fn finish(engine: &Engine, topic: &str, inflight: &Inflight, committed: &mut u64, next: u64) {
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while inflight.low_water(next) < next && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    commit(engine, topic, inflight, committed, next).await;
}

const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

#[derive(Clone, Copy)]
enum Path<'a> {
    Fast(&'a Arc<Inflight>),
    /// Record first, then attempt; offsets from `until` on are left to the fast path.
    Replay {
        until: u64,
    },
}

enum StepError {
    OutOfRange { start: u64 },
    Other(String),
}

/// Routes one batch starting at `from`; returns the next offset, or `None` when caught up.
async fn step(
    engine: &Arc<Engine>,
    topic: &str,
    project: &str,
    channel: &str,
    from: u64,
    path: Path<'_>,
) -> Result<Option<u64>, StepError> {
    let mut recs = match engine
        .log
        .read(topic, 0, from, engine.cfg.batch_records, 4 << 20)
        .await
    {
        Ok(r) => r,
        Err(LogError::OffsetOutOfRange { start, .. }) if from < start => {
            return Err(StepError::OutOfRange { start })
        }
        Err(e) => return Err(StepError::Other(e.to_string())),
    };
    if let Path::Replay { until } = path {
        recs.retain(|r| r.offset < until);
    }
    let Some(last) = recs.last().map(|r| r.offset) else {
        return Ok(None);
    };
    let routes = engine
        .routes_for(project, channel)
        .await
        .map_err(StepError::Other)?;
    let now = now_ms();
    let lease = engine.cfg.lease.as_millis() as i64;
    let mut traces = Vec::new();
    let mut deliveries = Vec::new();
    let mut jobs: Vec<(usize, Job)> = Vec::new();
    let mut fast: Vec<Job> = Vec::new();
    let mut scratch = openeg_rules::Scratch::default();
    let mut hits = Vec::new();
    for rec in &recs {
        let Ok(env) = serde_json::from_slice::<Envelope>(&rec.payload) else {
            tracing::warn!(topic, offset = rec.offset, "unreadable log record skipped");
            continue;
        };
        let raw = env.event.get().as_bytes();
        let _ = routes.matcher.matches_into(raw, &mut scratch, &mut hits);
        // Only the trace attributes are read here; the whole event is parsed only when some
        // subscription matched (transforms need it).
        let Ok(attrs) = serde_json::from_slice::<Attrs>(raw) else {
            continue;
        };
        let event_id = attrs.id.map(Cow::into_owned).unwrap_or_default();
        let source = attrs.source.map(Cow::into_owned).unwrap_or_default();
        let provider = if source.starts_with("HC.") {
            "OFFICIAL"
        } else {
            "CUSTOM"
        };
        let base = TraceRow {
            project_id: project.to_string(),
            channel_id: channel.to_string(),
            offset: rec.offset,
            event_id: event_id.clone(),
            source_name: source.clone(),
            source_provider: provider.to_string(),
            event_type: attrs.ty.map(Cow::into_owned).unwrap_or_default(),
            received_at: env.received,
            subscription_id: String::new(),
            subscription_name: String::new(),
            event_size: raw.len() as u64,
            process_ms: now.saturating_sub(env.received).max(0),
        };
        if hits.is_empty() {
            traces.push(base);
            continue;
        }
        engine.metrics.matched.add(1);
        let event = Arc::new(Event::new(event_bytes(&rec.payload, raw)));
        for &h in &hits {
            let Some(sub) = routes.matched.get(h) else {
                continue;
            };
            traces.push(TraceRow {
                subscription_id: sub.id.clone(),
                subscription_name: sub.name.clone(),
                ..base.clone()
            });
            for t in &sub.targets {
                // Dispatch now if the target has room, else leave it to the retry poller at once.
                let dispatch_now = dispatch::has_room(engine, t);
                let d = NewDelivery {
                    project_id: project.to_string(),
                    channel_id: channel.to_string(),
                    offset: rec.offset,
                    event_id: event_id.clone(),
                    received_at: env.received,
                    subscription_id: sub.id.clone(),
                    subscription_name: sub.name.clone(),
                    target_id: t.target_id.clone(),
                    target_name: t.target_name.clone(),
                    next_at: if dispatch_now { now + lease } else { now },
                };
                let job = |stored| Job {
                    stored,
                    route: t.clone(),
                    event: event.clone(),
                    attempts: 0,
                    received_at: env.received,
                };
                match path {
                    Path::Fast(inflight) if dispatch_now => {
                        let ticket = inflight.ticket(rec.offset);
                        fast.push(job(Stored::Unrecorded(Box::new(d), ticket)));
                    }
                    Path::Fast(_) => deliveries.push(d),
                    Path::Replay { .. } => {
                        let d_next_at = d.next_at;
                        deliveries.push(d);
                        if dispatch_now {
                            let lease_until = d_next_at;
                            jobs.push((
                                deliveries.len() - 1,
                                job(Stored::Claimed { id: 0, lease_until }),
                            ));
                        }
                    }
                }
            }
        }
    }
    if let Path::Fast(_) = path {
        for job in fast {
            dispatch::spawn(engine.clone(), job);
        }
        // The log offset is committed by the caller (see `run`) after a recorder flush.
        engine
            .recorder
            .send(Record::Routed {
                traces,
                pending: deliveries,
            })
            .await
            .map_err(|_| StepError::Other("the delivery recorder stopped".into()))?;
        return Ok(Some(last + 1));
    }
    let ids = match engine.delivery.record_routed(&traces, &deliveries).await {
        Ok(ids) => ids,
        // Text the store may refuse (a control character, an overlong id: possible in a log
        // written before PutEvents checked them) would stall this channel forever; recorded
        // sanitized, the events are still delivered as logged.
        Err(e) if sanitize(&mut traces, &mut deliveries) => {
            tracing::warn!(topic, error = %e, "recording a replayed batch failed; retrying with sanitized text");
            let ids = engine
                .delivery
                .record_routed(&traces, &deliveries)
                .await
                .map_err(|e| StepError::Other(e.to_string()))?;
            engine.metrics.store_rejected.add(1);
            ids
        }
        Err(e) => return Err(StepError::Other(e.to_string())),
    };
    for (idx, mut job) in jobs {
        // A delivery that already existed was routed before the restart; whoever holds its
        // lease, or the poller, attempts it.
        if let Some(r) = ids.get(idx).filter(|r| r.created) {
            if let Stored::Claimed { id, .. } = &mut job.stored {
                *id = r.id;
            }
            dispatch::spawn(engine.clone(), job);
        }
    }
    Ok(Some(last + 1))
}
