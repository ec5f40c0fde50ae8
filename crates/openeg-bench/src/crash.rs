//! `openeg-bench crash`: at-least-once delivery across SIGKILLs (issue #18).
//!
//! Runs its own `openeg serve` (fresh data_dir, a generated credential, SQLite or a fresh
//! PostgreSQL database), a local webhook receiver that counts requests per CloudEvent id, and
//! paced senders. While they publish, the server is SIGKILLed and restarted `kills` times;
//! after each restart one marker event times restart → first delivery of a new event. Once
//! sending stopped, every acknowledged id must reach the webhook: lost, duplicated and
//! unacknowledged-but-delivered ids and the drain time are reported. `--backlog N` first
//! publishes N events as fast as possible, SIGKILLs right after the last acknowledgement
//! (leaving most of them unrouted), restarts and times one new event's delivery.

use super::harness::{short_id, Server};
use super::{event, pct, Client, Cred};
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

#[derive(clap::Args)]
pub struct CrashArgs {
    /// The `openeg` binary to run (a release build for meaningful numbers).
    #[arg(long)]
    openeg: PathBuf,
    /// PostgreSQL metadata store: the URL of any database of the server. A fresh database
    /// `openeg_crash_<random>` is created through the server's `postgres` database and dropped
    /// at the end. Without it, SQLite in the temporary data_dir.
    #[arg(long)]
    database_url: Option<String>,
    /// SIGKILL + restart cycles.
    #[arg(long, default_value_t = 100)]
    kills: u32,
    /// Events per second over all senders.
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// Concurrent senders, each with one request in flight.
    #[arg(long, default_value_t = 4)]
    senders: usize,
    /// Events per PutEvents request (1–20).
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Seconds from a restart to the next kill: uniform in [min-gap, max-gap].
    #[arg(long, default_value_t = 1.0)]
    min_gap: f64,
    #[arg(long, default_value_t = 3.0)]
    max_gap: f64,
    /// Before the kills: publish this many events as fast as possible, SIGKILL right after the
    /// last acknowledgement, restart and time the delivery of one new event.
    #[arg(long, default_value_t = 0)]
    backlog: u64,
    /// Seconds to wait for every acknowledged event once sending stopped.
    #[arg(long, default_value_t = 300)]
    deadline: u64,
    /// Seconds to keep counting (late duplicates) after everything arrived.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// Skip the last step: one more SIGKILL and restart once everything arrived, counting
    /// what the server sends again (deliveries it still holds as pending although they were
    /// made).
    #[arg(long)]
    no_final_restart: bool,
    /// Approximate size of each event's JSON.
    #[arg(long, default_value_t = 500)]
    event_bytes: usize,
    /// Keep the temporary directory and database even when nothing was lost.
    #[arg(long)]
    keep: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Per-request timeout: a request to a killed server must fail, not hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a marker of the kills phase is awaited (the next kill usually comes first).
const MARKER_TIMEOUT: Duration = Duration::from_secs(60);
/// Concurrent requests of the backlog phase.
const BACKLOG_CONNECTIONS: usize = 16;

pub async fn run(a: CrashArgs) -> anyhow::Result<()> {
    if !(1..=20).contains(&a.batch) {
        bail!("--batch must be 1 to 20 (PutEvents' limit)");
    }
    if a.senders == 0 || a.rate == 0 {
        bail!("--senders and --rate must be positive");
    }
    if !(a.min_gap >= 0.0 && a.max_gap >= a.min_gap) {
        bail!("need 0 <= --min-gap <= --max-gap");
    }
    let bin = std::fs::canonicalize(&a.openeg)
        .with_context(|| format!("--openeg {}", a.openeg.display()))?;
    let dir = std::env::temp_dir().join(format!("openeg-crash-{}", short_id(12)));
    std::fs::create_dir_all(dir.join("data"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let db = match &a.database_url {
        Some(u) => Some(FreshDb::create(u).await?),
        None => None,
    };
    let outcome = run_in(&a, &bin, &dir, db.as_ref()).await;
    let clean = matches!(&outcome, Ok(r) if r.lost == 0);
    let mut kept = Vec::new();
    if clean && !a.keep {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            eprintln!("removing {}: {e}", dir.display());
        }
    } else {
        kept.push(dir.display().to_string());
    }
    if let Some(db) = &db {
        if clean && !a.keep {
            if let Err(e) = db.drop_it().await {
                eprintln!("dropping database {}: {e:#}", db.name);
            }
        } else {
            kept.push(format!("database {}", db.name));
        }
    }
    if !kept.is_empty() {
        eprintln!("kept: {}", kept.join(", "));
    }
    let r = outcome.with_context(|| {
        format!(
            "crash run failed; server log {}",
            dir.join("openeg.log").display()
        )
    })?;
    if a.json {
        println!("{}", r.json);
    } else {
        print!("{}", r.text);
        if kept.is_empty() {
            println!("  (temporary directory removed; --keep keeps it)");
        }
    }
    if r.lost > 0 {
        bail!(
            "{} acknowledged events were never delivered; server log {}",
            r.lost,
            r.log.display()
        );
    }
    Ok(())
}

/// A poisoned lock only means another task panicked mid-update of counters; keep counting.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ------------------------------------------------------------------------ PostgreSQL

/// A database created for one run, so no state of an earlier run is replayed.
struct FreshDb {
    admin: String,
    name: String,
    url: String,
}

impl FreshDb {
    async fn create(given: &str) -> anyhow::Result<Self> {
        use sqlx::Connection;
        let mut u = reqwest::Url::parse(given).context("--database-url")?;
        u.set_path("/postgres");
        let admin = u.to_string();
        let name = format!("openeg_crash_{}", short_id(12));
        u.set_path(&format!("/{name}"));
        let url = u.to_string();
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .with_context(|| format!("connecting to {admin}"))?;
        // The name is ours (hex), so formatting it into the statement is safe.
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .with_context(|| format!("creating database {name}"))?;
        conn.close().await?;
        Ok(FreshDb { admin, name, url })
    }

    async fn drop_it(&self) -> anyhow::Result<()> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.admin).await?;
        // FORCE: sessions of the SIGKILLed server may not have been noticed as gone yet.
        sqlx::raw_sql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await?;
        conn.close().await?;
        Ok(())
    }
}

// ------------------------------------------------------------------------ the server log

/// Lines of the server log at WARN / ERROR level and sqlx slow-statement warnings.
fn scan_log(path: &Path) -> (u64, u64, u64) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let (mut warn, mut error, mut slow) = (0, 0, 0);
    for line in text.lines() {
        if line.contains(" WARN ") {
            warn += 1;
        }
        if line.contains(" ERROR ") {
            error += 1;
        }
        if line.contains("slow statement") {
            slow += 1;
        }
    }
    (warn, error, slow)
}

// ------------------------------------------------------------------------ the webhook

#[derive(Default)]
struct Inbox {
    /// Requests per CloudEvent id.
    counts: HashMap<String, u32>,
    /// When each id first arrived: a duplicate's first arrival is set against the kill that
    /// followed it, which tells how wide the window re-sent after a crash is.
    first_at: HashMap<String, Instant>,
    /// When a duplicated id arrived the second time.
    second_at: HashMap<String, Instant>,
    /// Markers awaited: id → who to tell (arrival time, requests received before it).
    waiters: HashMap<String, oneshot::Sender<(Instant, u64)>>,
    requests: u64,
    unparsed: u64,
}

#[derive(serde::Deserialize)]
struct EventId {
    id: String,
}

async fn hook(
    axum::extract::State(inbox): axum::extract::State<Arc<Mutex<Inbox>>>,
    body: axum::body::Bytes,
) -> &'static str {
    let now = Instant::now();
    let id = serde_json::from_slice::<EventId>(&body).ok().map(|e| e.id);
    let mut ib = lock(&inbox);
    let before = ib.requests;
    ib.requests += 1;
    match id {
        Some(id) => {
            if let Some(tx) = ib.waiters.remove(&id) {
                let _ = tx.send((now, before));
            }
            if ib.first_at.contains_key(&id) {
                ib.second_at.entry(id.clone()).or_insert(now);
            } else {
                ib.first_at.insert(id.clone(), now);
            }
            *ib.counts.entry(id).or_insert(0) += 1;
        }
        None => ib.unparsed += 1,
    }
    "ok"
}

// ------------------------------------------------------------------------ publishing

#[derive(Default)]
struct Stats {
    requests_ok: AtomicU64,
    /// Requests that got no HTTP answer: refused, reset, timed out.
    conn_errors: AtomicU64,
    http_errors: Mutex<BTreeMap<u16, u64>>,
    /// Events of a 200 answer that carry an error_code.
    rejected: AtomicU64,
    /// Events of requests without a 200 answer: maybe logged, never acknowledged.
    unacked: AtomicU64,
}

struct Run {
    inbox: Arc<Mutex<Inbox>>,
    /// Acknowledged ids in acknowledgement order.
    acked: Mutex<Vec<String>>,
    next_id: AtomicU64,
    next_marker: AtomicU64,
    stats: Stats,
    base: String,
    cred: Cred,
    source: String,
    path: String,
    event_bytes: usize,
}

impl Run {
    fn client(&self, pool: usize) -> anyhow::Result<Client> {
        Client::with_timeout(&self.base, self.cred.clone(), pool, Some(REQUEST_TIMEOUT))
    }

    fn new_events(&self, n: usize) -> Vec<Value> {
        (0..n)
            .map(|_| {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                event(&self.source, id, self.event_bytes, json!({}))
            })
            .collect()
    }

    /// One PutEvents of events never sent before; the number acknowledged when it got a 200
    /// answer. Acknowledged ids are recorded; the events of a failed request are never sent
    /// again.
    async fn publish(&self, c: &Client, events: Vec<Value>) -> Option<usize> {
        let n = events.len() as u64;
        let sent: HashSet<String> = events
            .iter()
            .filter_map(|e| e["id"].as_str().map(str::to_string))
            .collect();
        let body = json!({ "events": events });
        match c.call("POST", &self.path, Some(&body)).await {
            Ok((200, v)) => {
                self.stats.requests_ok.fetch_add(1, Ordering::Relaxed);
                let ok: Vec<String> = v["events"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter(|e| e.get("error_code").is_none())
                            .filter_map(|e| e["event_id"].as_str())
                            .filter(|id| sent.contains(*id))
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                let acked = ok.len();
                self.stats
                    .rejected
                    .fetch_add(n - acked as u64, Ordering::Relaxed);
                lock(&self.acked).extend(ok);
                Some(acked)
            }
            Ok((status, _)) => {
                *lock(&self.stats.http_errors).entry(status).or_insert(0) += 1;
                self.stats.unacked.fetch_add(n, Ordering::Relaxed);
                None
            }
            Err(_) => {
                self.stats.conn_errors.fetch_add(1, Ordering::Relaxed);
                self.stats.unacked.fetch_add(n, Ordering::Relaxed);
                None
            }
        }
    }

    fn acked_count(&self) -> usize {
        lock(&self.acked).len()
    }

    fn requests_received(&self) -> u64 {
        lock(&self.inbox).requests
    }

    /// Waits until every acknowledged id has reached the webhook, or `limit` passed; returns
    /// the time taken and the ids still missing.
    async fn wait_all_received(&self, limit: Duration) -> (Duration, Vec<String>) {
        let t0 = Instant::now();
        let mut missing = lock(&self.acked).clone();
        loop {
            {
                let ib = lock(&self.inbox);
                missing.retain(|id| !ib.counts.contains_key(id));
            }
            if missing.is_empty() || t0.elapsed() >= limit {
                return (t0.elapsed(), missing);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One paced sender: a request every `period`, one in flight at a time, as a client with its
/// own connection would.
async fn sender(
    run: Arc<Run>,
    stop: Arc<AtomicBool>,
    period: Duration,
    offset: Duration,
    batch: usize,
) -> anyhow::Result<()> {
    let c = run.client(1)?;
    tokio::time::sleep(offset).await;
    let mut tick = tokio::time::interval(period);
    // After an outage, carry on at the rate instead of bursting the missed requests.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let events = run.new_events(batch);
        if run.publish(&c, events).await.is_none() {
            // The server is down or restarting: do not spin on refused connections.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Restart → first delivery of a new event.
#[derive(Clone, Copy)]
struct Marker {
    /// From the restart (spawn of the new process) to the marker's arrival.
    restart_to_delivery: Duration,
    /// From sending the marker's PutEvents to its arrival.
    publish_to_delivery: Duration,
    /// Webhook requests received between the restart and the marker.
    requests_before: u64,
}

/// Publishes one new marker event (a fresh id per attempt until one is acknowledged) and
/// waits for its delivery; `None` when it did not arrive within `limit` of `restarted`.
async fn marker(
    run: Arc<Run>,
    restarted: Instant,
    requests_at_restart: u64,
    limit: Duration,
) -> Option<Marker> {
    let deadline = restarted + limit;
    while Instant::now() < deadline {
        let id = format!("m{}", run.next_marker.fetch_add(1, Ordering::Relaxed));
        let mut ev = event(&run.source, 0, run.event_bytes, json!({}));
        ev["id"] = Value::String(id.clone());
        // Registered first: the delivery may arrive before the acknowledgement.
        let (tx, rx) = oneshot::channel();
        lock(&run.inbox).waiters.insert(id.clone(), tx);
        // A fresh connection: pooled ones may still point at the killed process.
        let Ok(c) = run.client(1) else {
            return None;
        };
        let sent = Instant::now();
        if run.publish(&c, vec![ev]).await == Some(1) {
            let left = deadline.saturating_duration_since(Instant::now());
            return match tokio::time::timeout(left, rx).await {
                Ok(Ok((at, requests))) => Some(Marker {
                    restart_to_delivery: at.saturating_duration_since(restarted),
                    publish_to_delivery: at.saturating_duration_since(sent),
                    requests_before: requests.saturating_sub(requests_at_restart),
                }),
                _ => {
                    lock(&run.inbox).waiters.remove(&id);
                    None
                }
            };
        }
        lock(&run.inbox).waiters.remove(&id);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

// ------------------------------------------------------------------------ phases

/// Publishes `n` events as fast as possible, SIGKILLs right after the last answer, restarts
/// and times a new event's delivery, then waits for the backlog to arrive.
async fn backlog_phase(
    run: &Arc<Run>,
    server: &mut Server,
    n: u64,
    deadline: Duration,
) -> anyhow::Result<Value> {
    let acked_before = run.acked_count();
    let received_before = run.requests_received();
    let left = Arc::new(AtomicI64::new(n as i64));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..BACKLOG_CONNECTIONS {
        let (run, left) = (run.clone(), left.clone());
        tasks.spawn(async move {
            let c = run.client(1)?;
            loop {
                let take = left.fetch_sub(20, Ordering::Relaxed);
                if take <= 0 {
                    return Ok::<_, anyhow::Error>(());
                }
                let events = run.new_events(take.min(20) as usize);
                run.publish(&c, events).await;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let publish_time = t0.elapsed();
    let delivered_before_kill = run.requests_received() - received_before;
    server.kill().await?;
    let acked = run.acked_count() - acked_before;
    let restarted = Instant::now();
    let listening = server.start().await?;
    let m = marker(
        run.clone(),
        restarted,
        run.requests_received(),
        deadline.max(MARKER_TIMEOUT),
    )
    .await;
    let (_, missing) = run.wait_all_received(deadline).await;
    let drained = restarted.elapsed();
    Ok(json!({
        "events": n,
        "acknowledged": acked,
        "publish_s": publish_time.as_secs_f64(),
        "publish_rate": acked as f64 / publish_time.as_secs_f64(),
        "delivered_before_kill": delivered_before_kill,
        "restart_to_listening_ms": ms(listening),
        "restart_to_first_delivery_ms": m.map(|m| ms(m.restart_to_delivery)),
        "marker_publish_to_delivery_ms": m.map(|m| ms(m.publish_to_delivery)),
        "deliveries_before_marker": m.map(|m| m.requests_before),
        "restart_to_all_delivered_s": missing.is_empty().then_some(drained.as_secs_f64()),
        "missing_at_deadline": missing.len(),
    }))
}

struct Restart {
    listening: Duration,
    marker: Option<Marker>,
    /// A marker not delivered when the next kill came: how long after the restart that was
    /// (a lower bound of its restart → delivery time).
    missed_at: Option<Duration>,
}

/// The marker of the restart at `restarted`, just before the next kill.
async fn settle_marker(
    restarted: Instant,
    listening: Duration,
    h: tokio::task::JoinHandle<Option<Marker>>,
) -> Restart {
    let (marker, missed_at) = if h.is_finished() {
        let m = h.await.ok().flatten();
        (m, m.is_none().then(|| restarted.elapsed()))
    } else {
        h.abort();
        (None, Some(restarted.elapsed()))
    };
    Restart {
        listening,
        marker,
        missed_at,
    }
}

struct Outcome {
    json: Value,
    text: String,
    lost: usize,
    log: PathBuf,
}

async fn run_in(
    a: &CrashArgs,
    bin: &Path,
    dir: &Path,
    db: Option<&FreshDb>,
) -> anyhow::Result<Outcome> {
    let (mut server, cred) = Server::configure(bin, dir, db.map(|d| d.url.as_str()))?;
    let log = server.log.clone();
    let base = server.base.clone();
    let first_start = server.start().await?;

    let inbox = Arc::new(Mutex::new(Inbox::default()));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(inbox.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook_addr = l.local_addr()?;
    tokio::spawn(async move { axum::serve(l, app).await });

    let admin = Client::with_timeout(&base, cred.clone(), 1, Some(Duration::from_secs(30)))?;
    let (channel, source) = admin.setup_channel("crash").await?;
    admin
        .webhook_subscription(&channel, &source, &format!("http://{hook_addr}/hook"))
        .await?;
    let run = Arc::new(Run {
        inbox,
        acked: Mutex::default(),
        next_id: AtomicU64::new(0),
        next_marker: AtomicU64::new(0),
        stats: Stats::default(),
        path: format!("/v1/{}/channels/{channel}/events", cred.project_id),
        base,
        cred,
        source,
        event_bytes: a.event_bytes,
    });
    let deadline = Duration::from_secs(a.deadline);

    let backlog = if a.backlog > 0 {
        Some(backlog_phase(&run, &mut server, a.backlog, deadline).await?)
    } else {
        None
    };

    // Kills phase.
    let acked_before = run.acked_count();
    let stop = Arc::new(AtomicBool::new(false));
    let period = Duration::from_secs_f64((a.senders * a.batch) as f64 / a.rate as f64);
    let mut senders = tokio::task::JoinSet::new();
    let t_phase = Instant::now();
    if a.kills > 0 {
        for i in 0..a.senders {
            let offset = period.mul_f64(i as f64 / a.senders as f64);
            senders.spawn(sender(run.clone(), stop.clone(), period, offset, a.batch));
        }
    }
    let mut restarts: Vec<Restart> = Vec::new();
    type Pending = (Instant, Duration, tokio::task::JoinHandle<Option<Marker>>);
    let mut pending: Option<Pending> = None;
    for _ in 0..a.kills {
        let gap = a.min_gap + (a.max_gap - a.min_gap) * rand::random::<f64>();
        tokio::time::sleep(Duration::from_secs_f64(gap)).await;
        if let Some((restarted, listening, h)) = pending.take() {
            restarts.push(settle_marker(restarted, listening, h).await);
        }
        server.kill().await?;
        let restarted = Instant::now();
        let at_restart = run.requests_received();
        let listening = server.start().await?;
        let h = tokio::spawn(marker(run.clone(), restarted, at_restart, MARKER_TIMEOUT));
        pending = Some((restarted, listening, h));
    }
    if let Some((restarted, listening, h)) = pending.take() {
        // No kill follows the last restart: wait for its marker.
        let marker = h.await.ok().flatten();
        restarts.push(Restart {
            listening,
            marker,
            missed_at: marker.is_none().then(|| restarted.elapsed()),
        });
    }
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = senders.join_next().await {
        r??;
    }
    let send_time = t_phase.elapsed();
    let acked_in_phase = run.acked_count() - acked_before;

    let (drain, missing) = run.wait_all_received(deadline).await;
    if missing.is_empty() && a.settle > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(a.settle)).await;
    }
    server.kill().await?;

    // Accounting over every acknowledged id of the run (backlog and markers included).
    let acked = lock(&run.acked).clone();
    // Per duplicated id: from its first arrival to the kill that followed (µs).
    let mut dup_windows: Vec<u64> = Vec::new();
    let mut dups_without_kill = 0u64;
    let (lost, dups, unacked_received, unacked_dups, requests, unparsed) = {
        let ib = lock(&run.inbox);
        let acked_set: HashSet<&str> = acked.iter().map(String::as_str).collect();
        let (mut lost, mut dups) = (0usize, 0u64);
        for id in &acked {
            match ib.counts.get(id) {
                None => lost += 1,
                Some(n) => {
                    dups += u64::from(n.saturating_sub(1));
                    if let (Some(&first), Some(&second)) =
                        (ib.first_at.get(id), ib.second_at.get(id))
                    {
                        // A kill between the two arrivals: the crash re-sent it; none: sent
                        // twice by a running server (a retry after a timeout, say).
                        match server.kills.iter().find(|&&k| k >= first) {
                            Some(&k) if k <= second => dup_windows.push(us(k - first)),
                            _ => dups_without_kill += 1,
                        }
                    }
                }
            }
        }
        let (mut unacked_received, mut unacked_dups) = (0u64, 0u64);
        for (id, n) in &ib.counts {
            if !acked_set.contains(id.as_str()) {
                unacked_received += 1;
                unacked_dups += u64::from(n.saturating_sub(1));
            }
        }
        (
            lost,
            dups,
            unacked_received,
            unacked_dups,
            ib.requests,
            ib.unparsed,
        )
    };

    // One more SIGKILL and restart, nothing published: whatever the store still holds as
    // due although it was delivered is sent again now, and would be by any later restart.
    let final_restart = if missing.is_empty() && !a.no_final_restart {
        server.start().await?;
        let (resent, quiet_after) = wait_quiet(&run, requests, deadline).await;
        server.kill().await?;
        Some((resent, quiet_after))
    } else {
        None
    };
    let resent_pct = |n: u64| {
        if acked.is_empty() {
            0.0
        } else {
            n as f64 * 100.0 / acked.len() as f64
        }
    };
    let dup_pct = if acked.is_empty() {
        0.0
    } else {
        dups as f64 * 100.0 / acked.len() as f64
    };
    let mut listening: Vec<u64> = restarts.iter().map(|r| us(r.listening)).collect();
    let mut first: Vec<u64> = restarts
        .iter()
        .filter_map(|r| r.marker.map(|m| us(m.restart_to_delivery)))
        .collect();
    // Misses counted at their kill time: without them a slow restart would improve the p50.
    let mut first_lb: Vec<u64> = restarts
        .iter()
        .filter_map(|r| {
            r.marker
                .map(|m| m.restart_to_delivery)
                .or(r.missed_at)
                .map(us)
        })
        .collect();
    first_lb.sort_unstable();
    let mut marker_lat: Vec<u64> = restarts
        .iter()
        .filter_map(|r| r.marker.map(|m| us(m.publish_to_delivery)))
        .collect();
    listening.sort_unstable();
    first.sort_unstable();
    marker_lat.sort_unstable();
    dup_windows.sort_unstable();
    let missed_markers = restarts.iter().filter(|r| r.marker.is_none()).count();
    let (warns, errors, slow) = scan_log(&log);
    let st = &run.stats;
    let http_errors: BTreeMap<String, u64> = lock(&st.http_errors)
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    let store = if db.is_some() { "postgresql" } else { "sqlite" };
    let drain_s = missing.is_empty().then_some(drain.as_secs_f64());

    let json = json!({
        "store": store,
        "kills": a.kills,
        "rate": a.rate,
        "senders": a.senders,
        "batch": a.batch,
        "gap_s": [a.min_gap, a.max_gap],
        "event_bytes": a.event_bytes,
        "first_start_ms": ms(first_start),
        "send_s": send_time.as_secs_f64(),
        "acked_in_kills_phase": acked_in_phase,
        "acknowledged": acked.len(),
        "lost": lost,
        "lost_examples": missing.iter().take(5).collect::<Vec<_>>(),
        "duplicates": dups,
        "duplicates_pct": dup_pct,
        "duplicate_first_arrival_before_kill_ms": {"p50": pct(&dup_windows, 0.5),
            "p90": pct(&dup_windows, 0.9), "max": pct(&dup_windows, 1.0)},
        "duplicates_without_a_kill_between": dups_without_kill,
        "received_not_acknowledged": unacked_received,
        "duplicates_not_acknowledged": unacked_dups,
        "webhook_requests": requests,
        "webhook_unparsed": unparsed,
        "publish_requests_ok": st.requests_ok.load(Ordering::Relaxed),
        "publish_connection_errors": st.conn_errors.load(Ordering::Relaxed),
        "publish_http_errors": http_errors,
        "rejected_events": st.rejected.load(Ordering::Relaxed),
        "unacknowledged_events": st.unacked.load(Ordering::Relaxed),
        "drain_s": drain_s,
        "restart_to_listening_ms": {"p50": pct(&listening, 0.5), "max": pct(&listening, 1.0)},
        "restart_to_first_delivery_ms": {"p50": pct(&first, 0.5), "max": pct(&first, 1.0),
            "p50_misses_at_kill_time": pct(&first_lb, 0.5)},
        "marker_publish_to_delivery_ms": {"p50": pct(&marker_lat, 0.5), "max": pct(&marker_lat, 1.0)},
        "markers_missed": missed_markers,
        "restarts": restarts.iter().map(|r| json!({
            "listening_ms": ms(r.listening),
            "first_delivery_ms": r.marker.map(|m| ms(m.restart_to_delivery)),
            "missed_at_ms": r.missed_at.map(ms),
        })).collect::<Vec<_>>(),
        "backlog": backlog,
        "final_restart": final_restart.map(|(resent, quiet)| json!({
            "resent": resent,
            "resent_pct": resent_pct(resent),
            "last_resent_s": quiet.as_secs_f64(),
        })),
        "server_log": log.display().to_string(),
        "server_log_warnings": warns,
        "server_log_errors": errors,
        "server_log_slow_statements": slow,
    });

    let mut t = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(
        t,
        "crash: {store}, {} kills {:.1}–{:.1} s apart, {} senders × batches of {} at {} ev/s ({}-byte events)",
        a.kills, a.min_gap, a.max_gap, a.senders, a.batch, a.rate, a.event_bytes
    );
    if let Some(b) = &json["backlog"].as_object() {
        let f = |k: &str| b.get(k).cloned().unwrap_or(Value::Null);
        let _ = writeln!(
            t,
            "  backlog: {} events acknowledged in {:.1} s, {} delivered before the SIGKILL",
            f("acknowledged"),
            f("publish_s").as_f64().unwrap_or(f64::NAN),
            f("delivered_before_kill")
        );
        let _ = writeln!(
            t,
            "    restart→listening {:.0} ms, restart→first new delivery {} ms ({} deliveries before it), all delivered {} s after restart",
            f("restart_to_listening_ms").as_f64().unwrap_or(f64::NAN),
            opt_f(&f("restart_to_first_delivery_ms"), 0),
            f("deliveries_before_marker"),
            opt_f(&f("restart_to_all_delivered_s"), 1),
        );
    }
    if a.kills > 0 {
        let _ = writeln!(
            t,
            "  acknowledged          {} ({acked_in_phase} in the kills phase, {:.0} ev/s over {:.1} s)",
            acked.len(),
            acked_in_phase as f64 / send_time.as_secs_f64(),
            send_time.as_secs_f64()
        );
    } else {
        let _ = writeln!(t, "  acknowledged          {}", acked.len());
    }
    let _ = writeln!(t, "  lost                  {lost}");
    let _ = writeln!(
        t,
        "  duplicates            {dups} ({dup_pct:.2} % of acknowledged)"
    );
    let _ = writeln!(
        t,
        "  dup window            first arrival → next kill: p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms; {dups_without_kill} duplicates with no kill between",
        pct(&dup_windows, 0.5),
        pct(&dup_windows, 0.9),
        pct(&dup_windows, 1.0)
    );
    let _ = writeln!(
        t,
        "  received, not acked   {unacked_received} ids ({unacked_dups} duplicates among them)"
    );
    let _ = writeln!(
        t,
        "  publish errors        {} connection, http {:?}, {} rejected events; {} events unacknowledged",
        st.conn_errors.load(Ordering::Relaxed),
        http_errors,
        st.rejected.load(Ordering::Relaxed),
        st.unacked.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        t,
        "  drain time            {} s (deadline {} s)",
        opt_f(&json["drain_s"], 2),
        a.deadline
    );
    if a.kills > 0 {
        let _ = writeln!(
            t,
            "  restart→listening     p50 {:.0} ms, max {:.0} ms (first start {:.0} ms)",
            pct(&listening, 0.5),
            pct(&listening, 1.0),
            ms(first_start)
        );
        let _ = writeln!(
            t,
            "  restart→first new delivery  p50 {:.0} ms, max {:.0} ms of {} delivered markers; {} not delivered before the next kill (p50 {:.0} ms counting them at their kill time)",
            pct(&first, 0.5),
            pct(&first, 1.0),
            first.len(),
            missed_markers,
            pct(&first_lb, 0.5)
        );
        let _ = writeln!(
            t,
            "  marker publish→delivery     p50 {:.1} ms, max {:.1} ms",
            pct(&marker_lat, 0.5),
            pct(&marker_lat, 1.0)
        );
    }
    if let Some((resent, quiet)) = final_restart {
        let _ = writeln!(
            t,
            "  after a final restart {resent} deliveries sent again ({:.2} % of acknowledged), the last {:.1} s after it answered",
            resent_pct(resent),
            quiet.as_secs_f64()
        );
    }
    let _ = writeln!(
        t,
        "  server log            {} ({warns} WARN, {errors} ERROR, {slow} slow statements)",
        log.display()
    );
    Ok(Outcome {
        json,
        text: t,
        lost,
        log,
    })
}

/// Waits until the webhook has been quiet for [`QUIET`] (or `limit` passed); returns the
/// requests received beyond `before` and when the last of them arrived, from now.
async fn wait_quiet(run: &Run, before: u64, limit: Duration) -> (u64, Duration) {
    let t0 = Instant::now();
    let mut last = (before, Duration::ZERO);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let n = run.requests_received();
        if n != last.0 {
            last = (n, t0.elapsed());
        } else if t0.elapsed() - last.1 >= QUIET || t0.elapsed() >= limit {
            return (last.0 - before, last.1);
        }
    }
}

/// Silence of the webhook after which a final restart is taken to have re-sent everything
/// (the retry poller polls every 200 ms).
const QUIET: Duration = Duration::from_secs(5);

fn opt_f(v: &Value, decimals: usize) -> String {
    match v.as_f64() {
        Some(x) => format!("{x:.decimals$}"),
        None => "—".into(),
    }
}
