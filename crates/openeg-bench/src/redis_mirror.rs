//! `openeg-bench redis-mirror`: a Redis → Redis event-router job (`dcs2dcs`) vs a native Redis
//! replica (`REPLICAOF`) of the same source, same run.
//!
//! Per run, three `redis-server` processes of the bench's own on free ports: the source (filled
//! with `keys` keys before any clock starts: strings of `size` bytes, and every fourth key a
//! hash of 8 such fields; a third of them with a TTL), a native replica and OpenEG's target.
//!
//! * Full sync. Native: `REPLICAOF source`, until `master_link_status:up` and the replica holds
//!   every key. OpenEG: a fresh `openeg serve`, a cluster and a job through the API; from the
//!   START request until syncDetail says `incremental` with the target at the source's offset
//!   (and the target holds every key). Reported: OpenEG's time / the native time.
//! * Incremental lag. With both replicas following, `rate` writes a second for `seconds`
//!   seconds (SET and HSET over the key space), of which 100 a second are probes
//!   `SET probe:{n} …`; both targets publish keyspace events, and a probe's lag is the time
//!   from just before its write is sent to the source to its event on a target. Reported: p50 / p99 /
//!   max of each, and the p99 ratio.
//!
//! The source runs with `repl-diskless-sync-delay 0` (the default waits 5 s for more replicas
//! before a snapshot, which would count against whichever side asks first).

use super::harness::{self, OwnServer};
use super::Client;
use anyhow::{bail, Context};
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct RedisMirrorArgs {
    /// The `openeg` binary (default: the one beside this executable).
    #[arg(long)]
    pub(crate) openeg: Option<PathBuf>,
    /// The `redis-server` binary.
    #[arg(long, default_value = "redis-server")]
    pub(crate) redis_server: String,
    /// Keys in the source before the full sync.
    #[arg(long, default_value_t = 200_000)]
    pub(crate) keys: usize,
    /// Bytes per string value (and hash field value).
    #[arg(long, default_value_t = 100)]
    pub(crate) size: usize,
    /// Writes per second during the incremental phase.
    #[arg(long, default_value_t = 5_000)]
    pub(crate) rate: u32,
    /// Seconds of writes during the incremental phase.
    #[arg(long, default_value_t = 20)]
    pub(crate) seconds: u64,
    #[arg(long, default_value_t = 1)]
    pub(crate) runs: u32,
    /// Seconds allowed per phase.
    #[arg(long, default_value_t = 600)]
    pub(crate) timeout: u64,
    /// Keep the servers' temporary directories.
    #[arg(long)]
    pub(crate) keep: bool,
}

/// A `redis-server` of the bench's own, stopped when dropped.
struct RedisProc {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl RedisProc {
    fn start(bin: &str, extra: &[&str]) -> anyhow::Result<RedisProc> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("openeg-bench-redis-{}", harness::short_id(8)));
        std::fs::create_dir_all(&dir)?;
        let child = Command::new(bin)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--repl-backlog-size", "256mb"])
            .arg("--dir")
            .arg(&dir)
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {bin}"))?;
        let p = RedisProc { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("{bin} did not listen on {port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(p)
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn client(&self) -> anyhow::Result<redis::Client> {
        Ok(redis::Client::open(format!("redis://{}/0", self.addr()))?)
    }

    async fn conn(&self) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        Ok(self.client()?.get_multiplexed_async_connection().await?)
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn info(
    c: &mut redis::aio::MultiplexedConnection,
    section: &str,
) -> anyhow::Result<HashMap<String, String>> {
    let s: String = redis::cmd("INFO").arg(section).query_async(c).await?;
    Ok(s.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect())
}

async fn dbsize(c: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<usize> {
    Ok(redis::cmd("DBSIZE").query_async(c).await?)
}

async fn fill(src: &RedisProc, keys: usize, size: usize) -> anyhow::Result<()> {
    let mut c = src.conn().await?;
    let value = "v".repeat(size);
    let mut pipe = redis::pipe();
    for i in 0..keys {
        let k = format!("key:{i:09}");
        if i % 4 == 3 {
            let fields: Vec<(String, &str)> =
                (0..8).map(|f| (format!("f{f}"), value.as_str())).collect();
            pipe.hset_multiple(&k, &fields).ignore();
        } else {
            pipe.set(&k, format!("{i}-{value}")).ignore();
        }
        if i % 3 == 0 {
            pipe.pexpire(&k, 3_600_000).ignore();
        }
        if i % 1000 == 999 {
            let _: () = pipe.query_async(&mut c).await?;
            pipe = redis::pipe();
        }
    }
    if !pipe.is_empty() {
        let _: () = pipe.query_async(&mut c).await?;
    }
    Ok(())
}

pub async fn run(a: RedisMirrorArgs) -> anyhow::Result<()> {
    if a.keys == 0 || a.rate < 100 || a.seconds == 0 {
        bail!("need --keys > 0, --rate ≥ 100 and --seconds > 0");
    }
    println!(
        "redis-mirror: {} keys (values {} B), then {} writes/s for {} s; baseline: a native \
         replica (REPLICAOF) of the same source",
        a.keys, a.size, a.rate, a.seconds
    );
    let mut full = Vec::new();
    let mut lag = Vec::new();
    for run in 1..=a.runs {
        let r = one_run(&a).await?;
        println!(
            "  run {run}: full sync native {:.2} s, openeg {:.2} s ({:.2}x); incremental lag \
             p50/p99/max native {:.2}/{:.2}/{:.2} ms, openeg {:.2}/{:.2}/{:.2} ms ({} probes)",
            r.native_full,
            r.ours_full,
            r.ours_full / r.native_full,
            r.native_lag[0],
            r.native_lag[1],
            r.native_lag[2],
            r.ours_lag[0],
            r.ours_lag[1],
            r.ours_lag[2],
            r.probes
        );
        full.push(r.ours_full / r.native_full);
        lag.push(r.ours_lag[1]);
    }
    let (m, lo, hi) = harness::summary(&full);
    println!(
        "median of {} runs: full sync time ratio {m:.2}x ({lo:.2}–{hi:.2}), lower is better",
        a.runs
    );
    let (m, lo, hi) = harness::summary(&lag);
    println!(
        "median of {} runs: openeg incremental lag p99 {m:.2} ms ({lo:.2}–{hi:.2})",
        a.runs
    );
    Ok(())
}

struct RunFigures {
    native_full: f64,
    ours_full: f64,
    /// p50, p99, max in ms.
    native_lag: [f64; 3],
    ours_lag: [f64; 3],
    probes: usize,
}

async fn one_run(a: &RedisMirrorArgs) -> anyhow::Result<RunFigures> {
    let src = RedisProc::start(&a.redis_server, &["--repl-diskless-sync-delay", "0"])?;
    let native = RedisProc::start(&a.redis_server, &[])?;
    let target = RedisProc::start(&a.redis_server, &[])?;
    fill(&src, a.keys, a.size).await?;
    let mut sc = src.conn().await?;
    let keys = dbsize(&mut sc).await?;

    // Native full sync.
    let mut nc = native.conn().await?;
    let start = Instant::now();
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(src.port)
        .query_async(&mut nc)
        .await?;
    loop {
        let i = info(&mut nc, "replication").await?;
        if i.get("master_link_status").map(String::as_str) == Some("up")
            && dbsize(&mut nc).await? >= keys
        {
            break;
        }
        if start.elapsed() > Duration::from_secs(a.timeout) {
            bail!("the native replica did not sync within {} s", a.timeout);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let native_full = start.elapsed().as_secs_f64();

    // OpenEG full sync.
    let own = OwnServer::start(a.openeg.as_deref(), "redis-mirror").await?;
    let outcome = async {
        let c = Client::new(&own.server.base, own.cred.clone(), 4)?;
        let p = own.cred.project_id.clone();
        let cluster_id = super::mirror::router_cluster(&c, &p, "DCS").await?;
        let ep = |addr: String| json!({"config_type": "CLOUD", "region": "r1", "project_id": "p1", "address": addr});
        let job = json!({
            "cluster_id": cluster_id, "name": format!("bench-{}", harness::short_id(8)),
            "scene_type": "DISASTER_BACKUP",
            "source_config": {"source_dcs": ep(src.addr())},
            "sink_config": {"sink_dcs": ep(target.addr())},
            "advance_config": {"dcs2dcs": {"synchronize_type": "full_incremental",
                "connect_retry_time": "1", "other_retry_time": "1"}},
        });
        let v = c.post_ok(&format!("/v1/{p}/eventrouter/jobs"), &job, "creating the job").await?;
        let id = v["job_id"].as_str().unwrap_or_default().to_string();
        let start = Instant::now();
        c.post_ok(
            &format!("/v1/{p}/eventrouter/jobs/{id}/action"),
            &json!({"operation": "START"}),
            "starting the job",
        )
        .await?;
        let detail = format!("/v1/{p}/eventrouter/jobs/{id}/syncDetail");
        let page = json!({"offset": 0, "limit": 10});
        let mut tc = target.conn().await?;
        let ours_full = loop {
            let v = c.post_ok(&detail, &page, "the job's syncDetail").await?;
            let want: u64 = info(&mut sc, "replication").await?
                .get("master_repl_offset")
                .and_then(|o| o.parse().ok())
                .unwrap_or(u64::MAX);
            let item = &v["items"][0];
            if item["syncPhase"] == json!("incremental")
                && item["sinkOffset"].as_u64().unwrap_or(0) >= want
            {
                break start.elapsed().as_secs_f64();
            }
            if start.elapsed() > Duration::from_secs(a.timeout) {
                bail!("the job did not copy the snapshot within {} s: {v}", a.timeout);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let got = dbsize(&mut tc).await?;
        if got != keys {
            bail!("the job's target holds {got} keys, the source {keys}");
        }

        // Incremental lag, both replicas at once.
        let (native_lag, ours_lag, probes) = incremental(a, &src, &native, &target).await?;
        Ok(RunFigures { native_full, ours_full, native_lag, ours_lag, probes })
    }
    .await;
    let kept = a.keep || outcome.is_err();
    if outcome.is_err() {
        eprintln!("server log: {}", own.server.log.display());
    }
    own.finish(kept).await?;
    outcome
}

/// Probe send times, by probe number.
type Sent = Arc<Mutex<HashMap<u64, Instant>>>;

/// Collects, on a thread of its own, each probe's lag as `target` applies it (keyspace events).
fn watch(
    target: &RedisProc,
    sent: Sent,
) -> anyhow::Result<(
    std::thread::JoinHandle<Vec<f64>>,
    Arc<std::sync::atomic::AtomicBool>,
)> {
    let client = target.client()?;
    let mut cfg = client.get_connection()?;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg("K$")
        .query(&mut cfg)?;
    let mut con = client.get_connection()?;
    con.set_read_timeout(Some(Duration::from_millis(200)))?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let mut lags = Vec::new();
        let mut ps = con.as_pubsub();
        if ps.psubscribe("__keyspace@0__:probe:*").is_err() {
            return lags;
        }
        let _ = ready_tx.send(());
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok(msg) = ps.get_message() else { continue };
            let at = Instant::now();
            let n: Option<u64> = msg
                .get_channel_name()
                .rsplit(':')
                .next()
                .and_then(|n| n.parse().ok());
            if let Some(n) = n {
                if let Some(t) = sent.lock().ok().and_then(|m| m.get(&n).copied()) {
                    lags.push(at.saturating_duration_since(t).as_secs_f64() * 1000.0);
                }
            }
        }
        lags
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .context("subscribing to the target's keyspace events")?;
    Ok((h, stop))
}

fn percentiles(mut v: Vec<f64>) -> [f64; 3] {
    if v.is_empty() {
        return [f64::NAN; 3];
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    [at(0.5), at(0.99), v[v.len() - 1]]
}

async fn incremental(
    a: &RedisMirrorArgs,
    src: &RedisProc,
    native: &RedisProc,
    target: &RedisProc,
) -> anyhow::Result<([f64; 3], [f64; 3], usize)> {
    let sent: Sent = Arc::new(Mutex::new(HashMap::new()));
    let (nh, nstop) = watch(native, sent.clone())?;
    let (oh, ostop) = watch(target, sent.clone())?;
    let mut c = src.conn().await?;
    let value = "w".repeat(a.size);
    // 100 ticks a second; each writes rate/100 commands, one of them a probe.
    let per_tick = (a.rate / 100).max(1) as u64;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = Instant::now() + Duration::from_secs(a.seconds);
    let mut n = 0u64;
    let mut probe = 0u64;
    while Instant::now() < end {
        tick.tick().await;
        let mut pipe = redis::pipe();
        for _ in 0..per_tick - 1 {
            n += 1;
            let idx = (n * 7919) % a.keys as u64;
            let k = format!("key:{idx:09}");
            // The key keeps its type (fill made every fourth a hash).
            if idx % 4 == 3 {
                pipe.hset(&k, "f0", &value).ignore();
            } else {
                pipe.set(&k, &value).ignore();
            }
        }
        let _: () = pipe.query_async(&mut c).await?;
        probe += 1;
        // Noted before it is sent: the event may come back before the reply.
        if let Ok(mut m) = sent.lock() {
            m.insert(probe, Instant::now());
        }
        let _: () = redis::cmd("SET")
            .arg(format!("probe:{probe}"))
            .arg(probe)
            .query_async(&mut c)
            .await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    nstop.store(true, std::sync::atomic::Ordering::Relaxed);
    ostop.store(true, std::sync::atomic::Ordering::Relaxed);
    let nl = nh
        .join()
        .map_err(|_| anyhow::anyhow!("the native watcher panicked"))?;
    let ol = oh
        .join()
        .map_err(|_| anyhow::anyhow!("the openeg watcher panicked"))?;
    if ol.len() < probe as usize * 9 / 10 {
        bail!("the job's target saw {} of {probe} probes", ol.len());
    }
    Ok((percentiles(nl), percentiles(ol), probe as usize))
}
