//! The channel router: one task per channel, and in it one loop per partition of the
//! channel's log, tails the log, matches, dispatches, records and commits. (Not EG's
//! professional event-router resource, which is `event_router` in the server and API crates.)
//!
//! Inside a partition's loop every offset is a *position* (`crate::position`: the partition
//! in the high bits), the number trace rows and deliveries store; it is turned back into the
//! partition's own offset only where the log is called (`read`, `commit`, the end watch).
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
//!
//! One batch is one `step`: `read` it from the log, `plan` what it turns into (trace rows,
//! deliveries, attempts: a pure function of the records, the compiled routes and the targets'
//! room), then `hand_off` the plan (fast path: start the attempts, send the rest to the
//! recorder; replay path: record, then start what the recording created).

use crate::dispatch::{self, Event, Inflight, Job, RecorderMsg, Stored, Ticket};
use crate::envelope::Envelope;
use crate::position::{self, position, split};
use crate::routes::{ChannelRoutes, TargetRoute};
use crate::{now_ms, split_topic, Engine, EngineError, ROUTER_GROUP};
use bytes::Bytes;
use openeg_log::LogError;
use openeg_store::delivery::{NewDelivery, TraceRow};
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

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

/// Runs until shutdown: one loop per partition of the channel's log.
pub(crate) async fn run(engine: Arc<Engine>, topic: String) {
    let Some((project, channel)) = split_topic(&topic).map(|(p, c)| (p.to_string(), c.to_string()))
    else {
        tracing::warn!(%topic, "not a channel topic; no router");
        return;
    };
    let partitions = match engine.log.partitions(&topic).await {
        Ok(n) => n.clamp(1, position::MAX_PARTITIONS),
        Err(e) => {
            tracing::error!(%topic, error = %e, "cannot read the channel log's partitions");
            return;
        }
    };
    if partitions == 1 {
        return run_partition(engine, topic, project, channel, 0).await;
    }
    let mut loops = tokio::task::JoinSet::new();
    for p in 0..partitions {
        loops.spawn(run_partition(
            engine.clone(),
            topic.clone(),
            project.clone(),
            channel.clone(),
            p,
        ));
    }
    while loops.join_next().await.is_some() {}
}

/// One partition's loop, until shutdown. On a shared log (`crate::cluster`) it routes only
/// while this node holds the partition's lease, and waits for it otherwise.
async fn run_partition(
    engine: Arc<Engine>,
    topic: String,
    project: String,
    channel: String,
    partition: u32,
) {
    let Some(own) = engine.ownership.clone() else {
        let stop = engine.shutdown.clone();
        return route_partition(engine, topic, project, channel, partition, stop).await;
    };
    let mut shutdown = engine.shutdown.clone();
    let mut grant = own.watch(&topic, partition);
    loop {
        let epoch = tokio::select! {
            r = grant.wait_for(Option::is_some) => match r {
                Ok(e) => e.unwrap_or_default(),
                Err(_) => return,
            },
            _ = shutdown.wait_for(|s| *s) => return,
        };
        tracing::info!(%topic, partition, epoch, "routing this partition");
        let stop = crate::cluster::stop_signal(engine.shutdown.clone(), grant.clone(), epoch);
        own.set_running(&topic, partition, true);
        route_partition(
            engine.clone(),
            topic.clone(),
            project.clone(),
            channel.clone(),
            partition,
            stop,
        )
        .await;
        own.set_running(&topic, partition, false);
        tracing::info!(%topic, partition, epoch, "stopped routing this partition");
        if *shutdown.borrow() {
            return;
        }
    }
}

/// Routes one partition until `shutdown` (the engine's, or the end of this node's lease) is
/// set. Errors (store or log unavailable) are logged and retried after a pause; the committed
/// offset only moves after the deliveries of a batch are recorded.
async fn route_partition(
    engine: Arc<Engine>,
    topic: String,
    project: String,
    channel: String,
    partition: u32,
    mut shutdown: watch::Receiver<bool>,
) {
    let at =
        |offset: u64| position(partition, offset.min(position::MAX_OFFSET)).unwrap_or(u64::MAX);
    let lag = crate::metrics::LagEntry::new(&engine.metrics, &channel, partition);
    let mut end = match engine.log.subscribe(&topic, partition).await {
        Ok(rx) => rx,
        Err(e) => {
            tracing::error!(%topic, error = %e, "cannot watch the channel log");
            return;
        }
    };
    let next = match engine.log.committed(ROUTER_GROUP, &topic, partition).await {
        Ok(Some(o)) => at(o),
        Ok(None) => at(engine
            .log
            .start_offset(&topic, partition)
            .await
            .unwrap_or(0)),
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
    let replay_until = at(*end.borrow()).max(next);
    let replayed = Arc::new(AtomicU64::new(next));
    if next < replay_until {
        tokio::spawn(replay(
            engine.clone(),
            shutdown.clone(),
            topic.clone(),
            project.clone(),
            channel.clone(),
            next..replay_until,
            replayed.clone(),
        ));
    }
    let mut next = replay_until;
    let inflight = Arc::new(Inflight::with_replay(replayed));
    tracing::debug!(%topic, from = committed, replay_until, "router started");
    loop {
        lag.set(end.borrow().saturating_sub(split(next).1));
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
                    r = end.wait_for(|e| at(*e) > next) => r.is_err(),
                    _ = tokio::time::sleep_until(due), if waiting => false,
                    _ = shutdown.changed() => true,
                };
                if stop {
                    finish(&engine, &topic, &inflight, &mut committed, next).await;
                    return;
                }
            }
            Err(StepError::OutOfRange { start }) => {
                next = skip_removed(&engine, &topic, next, at(start), u64::MAX);
            }
            Err(StepError::Failed(e)) => {
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

/// Routes the positions `range` on the replay path (record first, then attempt only what
/// this call created), publishing its progress in `replayed`: the router commits nothing
/// above it.
async fn replay(
    engine: Arc<Engine>,
    mut shutdown: watch::Receiver<bool>,
    topic: String,
    project: String,
    channel: String,
    range: std::ops::Range<u64>,
    replayed: Arc<AtomicU64>,
) {
    let (from, until) = (range.start, range.end);
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
                let start = position(split(next).0, start).unwrap_or(until);
                next = skip_removed(&engine, &topic, next, start, until);
            }
            Err(StepError::Failed(e)) => {
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

/// The log starts at `start`, above `from`: events removed before they were routed.
/// Retention holds what a router has not passed, so this takes a log changed behind the
/// server's back; the loss is counted, not hidden. Returns where routing goes on (`start`,
/// but not past `until`, the end of a replay's range).
fn skip_removed(engine: &Engine, topic: &str, from: u64, start: u64, until: u64) -> u64 {
    let to = start.min(until);
    let lost = to.saturating_sub(from);
    engine.metrics.expired_unrouted.add(lost);
    tracing::error!(%topic, from, to = start, events = lost, "events removed from the log before they were routed");
    to
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
    let (partition, offset) = split(to);
    match engine
        .log
        .commit(ROUTER_GROUP, topic, partition, offset)
        .await
    {
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

impl Path<'_> {
    fn mode(self) -> Mode {
        match self {
            Path::Fast(_) => Mode::Fast,
            Path::Replay { .. } => Mode::Replay,
        }
    }
}

enum StepError {
    /// The log starts at `start`, above the offset asked for.
    OutOfRange {
        start: u64,
    },
    Failed(EngineError),
}

impl From<EngineError> for StepError {
    fn from(e: EngineError) -> Self {
        StepError::Failed(e)
    }
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
    let recs = read(engine, topic, from, path).await?;
    let Some(last) = recs.last().map(|r| r.offset) else {
        return Ok(None);
    };
    let routes = engine.routes_for(project, channel).await?;
    let lease = engine.cfg.lease.as_millis() as i64;
    let plan = plan(&recs, &routes, path.mode(), now_ms(), lease, |t| {
        dispatch::has_room(engine, t)
    });
    for offset in &plan.unreadable {
        tracing::warn!(topic, offset, "unreadable log record skipped");
    }
    engine.metrics.matched.add(plan.matched);
    if let Some(recent) = &engine.recent {
        for (position, text) in &plan.matched_events {
            recent.insert(topic, *position, text.clone());
        }
    }
    hand_off(engine, topic, plan, path).await?;
    Ok(Some(last + 1))
}

/// Reads the batch starting at position `from` (on the replay path, only positions below its
/// end); the records carry positions.
async fn read(
    engine: &Engine,
    topic: &str,
    from: u64,
    path: Path<'_>,
) -> Result<Vec<openeg_log::LogRecord>, StepError> {
    let (partition, offset) = split(from);
    let mut recs = match engine
        .log
        .read(topic, partition, offset, engine.cfg.batch_records, 4 << 20)
        .await
    {
        Ok(r) => r,
        Err(LogError::OffsetOutOfRange { start, .. }) if offset < start => {
            return Err(StepError::OutOfRange { start })
        }
        Err(e) => return Err(EngineError::log("reading the channel log")(e).into()),
    };
    for r in &mut recs {
        r.offset = position(partition, r.offset).ok_or_else(|| {
            EngineError::log("reading the channel log")(LogError::OffsetOutOfRange {
                topic: topic.to_string(),
                requested: r.offset,
                start: 0,
                end: position::MAX_OFFSET,
            })
        })?;
    }
    if let Path::Replay { until } = path {
        recs.retain(|r| r.offset < until);
    }
    Ok(recs)
}

/// Which path a batch takes (see the module's documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Fast,
    Replay,
}

/// What one batch turns into, decided without I/O by [`plan`] and carried out by [`hand_off`].
#[derive(Default)]
struct Plan {
    /// One row per subscription an event matched, or one with no subscription for an event
    /// that matched none.
    traces: Vec<TraceRow>,
    /// Deliveries to store. Fast path: those left to the retry poller (their target had no
    /// room); replay path: every delivery of the batch (recorded before any attempt).
    deliveries: Vec<NewDelivery>,
    /// Fast path: first attempts to make at once, before anything is stored, in offset order.
    fast: Vec<FastJob>,
    /// Replay path: attempts to make once recorded, by index in `deliveries`, each only if
    /// the recording created its delivery (an existing one was routed before the restart).
    replay: Vec<(usize, Job)>,
    /// Events some subscription matched.
    matched: u64,
    /// Those events' positions and JSON texts (kept for retries on a shared log).
    matched_events: Vec<(u64, Bytes)>,
    /// Offsets of records that are not event envelopes (skipped).
    unreadable: Vec<u64>,
}

/// A first attempt of the fast path; its [`Ticket`] is taken when it is handed off.
struct FastJob {
    delivery: NewDelivery,
    route: Arc<TargetRoute>,
    event: Arc<Event>,
}

impl FastJob {
    fn into_job(self, ticket: Ticket) -> Job {
        let received_at = self.delivery.received_at;
        Job {
            stored: Stored::Unrecorded(Box::new(self.delivery), ticket),
            route: self.route,
            event: self.event,
            attempts: 0,
            received_at,
        }
    }
}

/// Matches a batch of log records against a channel's routes and decides what is written
/// and attempted: a trace row per matched subscription (one without subscription for an
/// unmatched event) and, per target of a matched subscription, a delivery that is attempted
/// now when `has_room(target)` (leased for `lease_ms` from `now`) or else left to the retry
/// poller (due `now`). Records that are not envelopes are skipped.
fn plan(
    recs: &[openeg_log::LogRecord],
    routes: &ChannelRoutes,
    mode: Mode,
    now: i64,
    lease_ms: i64,
    mut has_room: impl FnMut(&TargetRoute) -> bool,
) -> Plan {
    let project = &routes.project_id;
    let channel = &routes.channel_id;
    let mut plan = Plan::default();
    let mut scratch = openeg_rules::Scratch::default();
    let mut hits = Vec::new();
    for rec in recs {
        let Ok(env) = Envelope::decode(&rec.payload) else {
            plan.unreadable.push(rec.offset);
            continue;
        };
        let raw = env.event();
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
            project_id: project.clone(),
            channel_id: channel.clone(),
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
            plan.traces.push(base);
            continue;
        }
        plan.matched += 1;
        let text = env.event_in(&rec.payload);
        plan.matched_events.push((rec.offset, text.clone()));
        let event = Arc::new(Event::new(text));
        for &h in &hits {
            let Some(sub) = routes.matched.get(h) else {
                continue;
            };
            plan.traces.push(TraceRow {
                subscription_id: sub.id.clone(),
                subscription_name: sub.name.clone(),
                ..base.clone()
            });
            for t in &sub.targets {
                // Dispatch now if the target has room, else leave it to the retry poller at once.
                let dispatch_now = has_room(t);
                let d = NewDelivery {
                    project_id: project.clone(),
                    channel_id: channel.clone(),
                    offset: rec.offset,
                    event_id: event_id.clone(),
                    received_at: env.received,
                    subscription_id: sub.id.clone(),
                    subscription_name: sub.name.clone(),
                    target_id: t.target_id.clone(),
                    target_name: t.target_name.clone(),
                    next_at: if dispatch_now { now + lease_ms } else { now },
                };
                match mode {
                    Mode::Fast if dispatch_now => plan.fast.push(FastJob {
                        delivery: d,
                        route: t.clone(),
                        event: event.clone(),
                    }),
                    Mode::Fast => plan.deliveries.push(d),
                    Mode::Replay => {
                        let lease_until = d.next_at;
                        plan.deliveries.push(d);
                        if dispatch_now {
                            let job = Job {
                                stored: Stored::Claimed { id: 0, lease_until },
                                route: t.clone(),
                                event: event.clone(),
                                attempts: 0,
                                received_at: env.received,
                            };
                            plan.replay.push((plan.deliveries.len() - 1, job));
                        }
                    }
                }
            }
        }
    }
    plan
}

/// Carries out a plan. Fast path: a ticket for every attempt, in offset order, before any
/// attempt starts (the committed offset stays below them until their outcomes reach the
/// recorder), then the attempts, then traces and the poller's deliveries to the recorder.
/// Replay path: record first (idempotently; sanitized if the store refuses the text), then
/// attempt only the deliveries this recording created.
async fn hand_off(
    engine: &Arc<Engine>,
    topic: &str,
    plan: Plan,
    path: Path<'_>,
) -> Result<(), EngineError> {
    let Plan {
        mut traces,
        mut deliveries,
        fast,
        replay,
        ..
    } = plan;
    if let Path::Fast(inflight) = path {
        debug_assert!(replay.is_empty());
        let jobs: Vec<Job> = fast
            .into_iter()
            .map(|j| {
                let ticket = inflight.ticket(j.delivery.offset);
                j.into_job(ticket)
            })
            .collect();
        for job in jobs {
            dispatch::spawn(engine.clone(), job);
        }
        // The log offset is committed by the caller (see `run`) after a recorder flush.
        return engine
            .recorder
            .send(RecorderMsg::Routed {
                traces,
                pending: deliveries,
            })
            .await
            .map_err(|_| EngineError::RecorderStopped);
    }
    debug_assert!(fast.is_empty());
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
                .map_err(EngineError::store("recording a replayed batch"))?;
            engine.metrics.store_rejected.add(1);
            ids
        }
        Err(e) => return Err(EngineError::store("recording a replayed batch")(e)),
    };
    for (idx, mut job) in replay {
        // A delivery that already existed was routed before the restart; whoever holds its
        // lease, or the poller, attempts it.
        if let Some(r) = ids.get(idx).filter(|r| r.created) {
            if let Stored::Claimed { id, .. } = &mut job.stored {
                *id = r.id;
            }
            dispatch::spawn(engine.clone(), job);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::{Destination, SubscriptionRoute};
    use bytes::Bytes;
    use openeg_rules::{CompiledTransform, MatcherBuilder, TransformUse};
    use openeg_store::delivery::DeliveryStatus;
    use serde_json::json;
    use std::collections::HashMap;

    const NOW: i64 = 1_700_000_010_000;
    const RECEIVED: i64 = 1_700_000_000_000;
    const LEASE: i64 = 330_000;

    fn target(sub: &str, id: &str) -> Arc<TargetRoute> {
        let original = json!({"type": "ORIGINAL"});
        Arc::new(TargetRoute {
            subscription_id: sub.into(),
            subscription_name: format!("{sub}-name"),
            target_id: id.into(),
            target_name: "WEBHOOK".into(),
            retry_times: 0,
            payload: CompiledTransform::compile(&original, TransformUse::Payload).unwrap(),
            key: None,
            subject: None,
            dead_letter: None,
            destination: Destination::Unavailable("not sent in tests".into()),
            slot_key: format!("{sub}/{id}"),
        })
    }

    /// `sub-a` (targets t1, t2) takes every event of source `app`; `sub-b` (target t3) those
    /// of type `order.created`.
    fn routes() -> ChannelRoutes {
        let mut b = MatcherBuilder::new();
        let subs = [
            (
                "sub-a",
                json!({"source": [{"op": "StringIn", "values": ["app"]}]}),
                vec![target("sub-a", "t1"), target("sub-a", "t2")],
            ),
            (
                "sub-b",
                json!({"source": [{"op": "StringIn", "values": ["app"]}],
                       "type": [{"op": "StringIn", "values": ["order.created"]}]}),
                vec![target("sub-b", "t3")],
            ),
        ];
        let mut matched = Vec::new();
        let mut targets = HashMap::new();
        for (id, filter, ts) in subs {
            assert_eq!(b.add_rule(&filter, true).unwrap(), matched.len());
            for t in &ts {
                targets.insert((id.to_string(), t.target_id.clone()), t.clone());
            }
            matched.push(SubscriptionRoute {
                id: id.into(),
                name: format!("{id}-name"),
                targets: ts,
            });
        }
        ChannelRoutes {
            project_id: "p1".into(),
            channel_id: "ch".into(),
            matcher: b.build(),
            matched,
            targets,
        }
    }

    fn event(id: &str, source: &str, ty: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({"id": id, "source": source, "specversion": "1.0",
            "type": ty, "data": {"n": 1}}))
        .unwrap()
    }

    fn rec(offset: u64, payload: Bytes) -> openeg_log::LogRecord {
        openeg_log::LogRecord { offset, payload }
    }

    /// e1 matches both subscriptions, offset 11 is not an envelope, e2 matches nothing, 13's
    /// event is not an object, e3 matches `sub-a` only.
    fn batch() -> Vec<openeg_log::LogRecord> {
        let enc = crate::envelope::Encoder::new(RECEIVED);
        vec![
            rec(10, enc.encode(&event("e1", "app", "order.created"))),
            rec(11, Bytes::from_static(b"{\"received\":1,\"event\"")),
            rec(12, enc.encode(&event("e2", "HC.OBS", "x"))),
            rec(13, enc.encode(b"1")),
            rec(14, enc.encode(&event("e3", "app", "order.paid"))),
        ]
    }

    fn subs_of(traces: &[TraceRow], offset: u64) -> Vec<&str> {
        let mut s: Vec<&str> = traces
            .iter()
            .filter(|t| t.offset == offset)
            .map(|t| t.subscription_id.as_str())
            .collect();
        s.sort_unstable();
        s
    }

    fn target_of(d: &NewDelivery) -> (u64, &str, &str) {
        (d.offset, d.subscription_id.as_str(), d.target_id.as_str())
    }

    #[test]
    fn a_matched_event_makes_a_trace_per_subscription_and_an_attempt_per_target() {
        let recs = batch();
        let p = plan(&recs, &routes(), Mode::Fast, NOW, LEASE, |_| true);
        assert_eq!(p.matched, 2);
        assert_eq!(p.unreadable, vec![11], "the unreadable record is skipped");
        assert_eq!(subs_of(&p.traces, 10), ["sub-a", "sub-b"]);
        assert_eq!(subs_of(&p.traces, 14), ["sub-a"]);
        assert_eq!(subs_of(&p.traces, 13), Vec::<&str>::new());
        assert_eq!(p.traces.len(), 4);
        let t = p
            .traces
            .iter()
            .find(|t| t.subscription_id == "sub-b")
            .unwrap();
        assert_eq!((t.project_id.as_str(), t.channel_id.as_str()), ("p1", "ch"));
        assert_eq!(t.event_id, "e1");
        assert_eq!(t.source_name, "app");
        assert_eq!(t.source_provider, "CUSTOM");
        assert_eq!(t.event_type, "order.created");
        assert_eq!(t.subscription_name, "sub-b-name");
        assert_eq!(t.received_at, RECEIVED);
        assert_eq!(t.process_ms, NOW - RECEIVED);
        assert_eq!(
            t.event_size,
            event("e1", "app", "order.created").len() as u64
        );

        // Every target with room is attempted at once, in offset order; nothing is stored yet.
        assert!(p.deliveries.is_empty() && p.replay.is_empty());
        let mut fast: Vec<_> = p.fast.iter().map(|j| target_of(&j.delivery)).collect();
        let offsets: Vec<u64> = fast.iter().map(|f| f.0).collect();
        assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "{offsets:?}");
        fast.sort_unstable();
        assert_eq!(
            fast,
            [
                (10, "sub-a", "t1"),
                (10, "sub-a", "t2"),
                (10, "sub-b", "t3"),
                (14, "sub-a", "t1"),
                (14, "sub-a", "t2"),
            ]
        );
        for j in &p.fast {
            assert_eq!(j.delivery.next_at, NOW + LEASE, "leased while attempted");
            assert_eq!(j.delivery.received_at, RECEIVED);
            assert_eq!(j.route.subscription_id, j.delivery.subscription_id);
            assert_eq!(j.route.target_id, j.delivery.target_id);
        }
        // One event per record, shared by its attempts and sliced from the record.
        let of_10: Vec<_> = p.fast.iter().filter(|j| j.delivery.offset == 10).collect();
        assert!(of_10.iter().all(|j| Arc::ptr_eq(&j.event, &of_10[0].event)));
        let raw = of_10[0].event.raw();
        assert_eq!(&raw[..], &event("e1", "app", "order.created")[..]);
        assert!(recs[0].payload.as_ptr_range().contains(&raw.as_ptr()));
    }

    #[test]
    fn an_unmatched_event_gets_one_trace_without_subscription() {
        let recs = batch();
        let p = plan(&recs[2..3], &routes(), Mode::Fast, NOW, LEASE, |_| true);
        assert_eq!(p.matched, 0);
        assert_eq!(p.traces.len(), 1);
        let t = &p.traces[0];
        assert_eq!((t.offset, t.event_id.as_str()), (12, "e2"));
        assert_eq!(t.subscription_id, "");
        assert_eq!(t.subscription_name, "");
        assert_eq!(t.source_provider, "OFFICIAL");
        assert!(p.fast.is_empty() && p.deliveries.is_empty() && p.replay.is_empty());
        assert!(p.unreadable.is_empty());
    }

    #[test]
    fn a_target_without_room_is_left_to_the_poller() {
        let recs = batch();
        let mut asked = Vec::new();
        let p = plan(&recs[..1], &routes(), Mode::Fast, NOW, LEASE, |t| {
            asked.push(t.target_id.clone());
            t.target_id != "t2"
        });
        asked.sort_unstable();
        assert_eq!(asked, ["t1", "t2", "t3"], "asked once per target");
        let mut fast: Vec<_> = p.fast.iter().map(|j| target_of(&j.delivery)).collect();
        fast.sort_unstable();
        assert_eq!(fast, [(10, "sub-a", "t1"), (10, "sub-b", "t3")]);
        assert_eq!(p.deliveries.len(), 1);
        assert_eq!(target_of(&p.deliveries[0]), (10, "sub-a", "t2"));
        assert_eq!(p.deliveries[0].next_at, NOW, "due for the poller at once");
    }

    #[test]
    fn the_replay_path_records_every_delivery_then_attempts() {
        let recs = batch();
        let p = plan(&recs, &routes(), Mode::Replay, NOW, LEASE, |t| {
            t.target_id != "t2"
        });
        assert!(
            p.fast.is_empty(),
            "nothing is attempted before it is recorded"
        );
        assert_eq!(p.traces.len(), 4);
        let mut all: Vec<_> = p.deliveries.iter().map(target_of).collect();
        all.sort_unstable();
        assert_eq!(
            all,
            [
                (10, "sub-a", "t1"),
                (10, "sub-a", "t2"),
                (10, "sub-b", "t3"),
                (14, "sub-a", "t1"),
                (14, "sub-a", "t2"),
            ]
        );
        // Attempts follow the recording of their delivery, except for targets without room.
        assert_eq!(p.replay.len(), 3);
        for (idx, job) in &p.replay {
            let d = &p.deliveries[*idx];
            assert_ne!(d.target_id, "t2");
            assert_eq!(job.route.target_id, d.target_id);
            assert_eq!(job.route.subscription_id, d.subscription_id);
            assert_eq!(job.attempts, 0);
            match job.stored {
                Stored::Claimed { id, lease_until } => {
                    assert_eq!((id, lease_until), (0, NOW + LEASE));
                    assert_eq!(d.next_at, lease_until);
                }
                Stored::Unrecorded(..) => panic!("a replayed attempt is recorded first"),
            }
        }
        for d in p.deliveries.iter().filter(|d| d.target_id == "t2") {
            assert_eq!(d.next_at, NOW);
        }
    }

    /// The hand-off of both paths against a store: fast attempts are recorded behind them,
    /// a replayed batch is recorded, then attempted only where the recording created the
    /// delivery (a second replay of the same batch attempts nothing).
    #[tokio::test]
    async fn hand_off_attempts_and_records() {
        let (engine, store, dir) =
            crate::routes::tests::engine(crate::EngineConfig::default()).await;
        let deliveries = |offset| {
            let store = store.clone();
            async move {
                let mut d = openeg_store::delivery::DeliveryStore::event_deliveries(
                    &*store, "p1", "ch", offset,
                )
                .await
                .unwrap();
                d.sort_by(|a, b| a.target_id.cmp(&b.target_id));
                d.into_iter()
                    .map(|d| (d.target_id, d.status, d.attempts))
                    .collect::<Vec<_>>()
            }
        };
        let recs = batch();
        let routes = routes();

        // Fast path: t2 has no room and is left pending; t1 and t3 are attempted (their
        // targets give up at once) and their outcomes create the rows.
        let inflight = Arc::new(Inflight::default());
        // Planned a minute ahead, so the retry poller does not claim t2 (its subscription is
        // not in the store: it would be given up as removed).
        let p = plan(
            &recs[..1],
            &routes,
            Mode::Fast,
            now_ms() + 60_000,
            LEASE,
            |t| t.target_id != "t2",
        );
        hand_off(&engine, "p1.ch", p, Path::Fast(&inflight))
            .await
            .unwrap();
        let want = vec![
            ("t1".to_string(), DeliveryStatus::Failed, 1),
            ("t2".to_string(), DeliveryStatus::Pending, 0),
            ("t3".to_string(), DeliveryStatus::Failed, 1),
        ];
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(dispatch::flush(&engine).await);
            if inflight.low_water(11) == 11 && deliveries(10).await == want {
                break;
            }
            assert!(Instant::now() < deadline, "{:?}", deliveries(10).await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // Replay path: recorded first, then attempted.
        let replayed = || plan(&recs[4..], &routes, Mode::Replay, now_ms(), LEASE, |_| true);
        hand_off(&engine, "p1.ch", replayed(), Path::Replay { until: 15 })
            .await
            .unwrap();
        let want = vec![
            ("t1".to_string(), DeliveryStatus::Failed, 1),
            ("t2".to_string(), DeliveryStatus::Failed, 1),
        ];
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(dispatch::flush(&engine).await);
            if deliveries(14).await == want {
                break;
            }
            assert!(Instant::now() < deadline, "{:?}", deliveries(14).await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Replayed again (a second restart): the deliveries exist, nothing is attempted again.
        hand_off(&engine, "p1.ch", replayed(), Path::Replay { until: 15 })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(dispatch::flush(&engine).await);
        assert_eq!(deliveries(14).await, want);
        engine.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
