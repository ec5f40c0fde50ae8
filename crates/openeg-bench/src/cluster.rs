//! `openeg-bench cluster`: what distributed mode buys and costs, each figure side by side with
//! its baseline in the same run.
//!
//! * **Scale-out**: `events` events through a webhook that answers after `delay-ms`
//!   (20 ms), on 1 node and then on 3 nodes (`runs` times, median ratio), all on one fresh PostgreSQL database and the
//!   Kafka log at `brokers`. Per phase: the nodes start, node 0 gets a channel with a webhook
//!   subscription, the cluster view shows every partition owned; then the events are
//!   published through the nodes round-robin (16 concurrent PutEvents of 20) and the time runs
//!   from the first publish until the webhook has seen every id. Reported: each delivery rate
//!   and 3 nodes / 1 node.
//! * **Ingest cost**: PutEvents acknowledged per second for `ingest-secs` (16 connections ×
//!   20 events of 500 B, no subscription) into 1 node on Kafka + PostgreSQL, and into the
//!   embedded default (SQLite, the embedded log). Reported: Kafka / embedded.

use super::harness::{self, Server};
use super::{event, openeg_ingest, Client, Cred};
use anyhow::{bail, Context};
use serde_json::{json, Value};
use sqlx::Connection;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct ClusterArgs {
    /// The `openeg` binary (default: the one beside this executable).
    #[arg(long)]
    openeg: Option<PathBuf>,
    /// Kafka bootstrap servers of the event log.
    #[arg(long, default_value = "127.0.0.1:19092")]
    brokers: String,
    /// PostgreSQL URL with the right to create databases (a fresh one per phase).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    database_url: String,
    /// Events per scale-out phase (enough that the first second of publishing, when the
    /// nodes' routers start pulling, is a small part of the run).
    #[arg(long, default_value_t = 12000)]
    events: u64,
    /// Scale-out repetitions (each with fresh nodes and a fresh database); the median ratio
    /// is reported.
    #[arg(long, default_value_t = 1)]
    runs: u32,
    /// The webhook's answer delay.
    #[arg(long, default_value_t = 20)]
    delay_ms: u64,
    /// Seconds per ingest phase.
    #[arg(long, default_value_t = 10)]
    ingest_secs: u64,
    /// Skip the ingest comparison.
    #[arg(long)]
    no_ingest: bool,
    /// Skip the scale-out comparison.
    #[arg(long)]
    no_scale_out: bool,
}

pub async fn run(a: ClusterArgs) -> anyhow::Result<()> {
    let bin = harness::openeg_bin(a.openeg.as_deref())?;
    println!(
        "cluster: {} events through a webhook answering after {} ms, Kafka log at {}; \
         time from the first PutEvents until every id reached the webhook",
        a.events, a.delay_ms, a.brokers
    );
    let mut ratios = Vec::new();
    for run in (1..=a.runs.max(1)).filter(|_| !a.no_scale_out) {
        let one = delivery_phase(&a, &bin, 1).await?;
        let three = delivery_phase(&a, &bin, 3).await?;
        println!(
            "  run {run}: 1 node {one:>6.0} ev/s   3 nodes {three:>6.0} ev/s   ratio {:.2}x",
            three / one
        );
        ratios.push(three / one);
    }
    if !ratios.is_empty() {
        let (rm, rlo, rhi) = harness::summary(&ratios);
        println!(
            "  scale-out, median of {} runs: 3 nodes / 1 node = {rm:.2}x ({rlo:.2}–{rhi:.2})",
            ratios.len()
        );
    }
    if a.no_ingest {
        return Ok(());
    }
    println!(
        "ingest: PutEvents for {} s, 16 connections × 20 events × 500 B, no subscription",
        a.ingest_secs
    );
    let embedded = ingest_phase(&a, &bin, false).await?;
    println!("  embedded (SQLite + embedded log): {embedded:>8.0} ev/s");
    let kafka = ingest_phase(&a, &bin, true).await?;
    println!("  1 node on Kafka + PostgreSQL    : {kafka:>8.0} ev/s");
    println!("  Kafka + PostgreSQL / embedded = {:.2}x", kafka / embedded);
    Ok(())
}

/// A database of its own on the server of `admin_url`, dropped by [`drop_database`].
async fn create_database(admin_url: &str) -> anyhow::Result<(String, String)> {
    let name = format!(
        "openeg_bench_{}",
        harness::short_id(10).to_ascii_lowercase()
    );
    let mut c = sqlx::PgConnection::connect(admin_url)
        .await
        .context("connecting to PostgreSQL")?;
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut c)
        .await?;
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin_url, String::new()),
    };
    let Some((server, _db)) = base.rsplit_once('/') else {
        bail!("the database URL has no /database part");
    };
    Ok((name.clone(), format!("{server}/{name}{query}")))
}

async fn drop_database(admin_url: &str, name: &str) {
    if let Ok(mut c) = sqlx::PgConnection::connect(admin_url).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&mut c)
            .await;
    }
}

/// Nodes sharing one database (and a log): started in order; all share node 0's credential.
struct Nodes {
    servers: Vec<Server>,
    cred: Cred,
    dirs: Vec<PathBuf>,
}

/// The secrets key of the benchmark's nodes (base64 of 32 bytes).
const BENCH_KEY: &str = "YmVuY2gtb25seSBrZXkgZm9yIG9wZW5lZy1iZW5jaCE=";

impl Nodes {
    async fn start(
        bin: &Path,
        n: usize,
        database_url: Option<&str>,
        log_url: Option<&str>,
    ) -> anyhow::Result<Nodes> {
        let mut servers = Vec::new();
        let mut dirs = Vec::new();
        let mut cred: Option<Cred> = None;
        for i in 0..n {
            let dir =
                std::env::temp_dir().join(format!("openeg-cluster-{}", harness::short_id(10)));
            let mut extra = toml::Table::new();
            extra.insert("node_name".into(), format!("node-{i}").into());
            // Nodes on one database share the secrets key (a throwaway one: fresh database).
            extra.insert("encryption_key".into(), BENCH_KEY.into());
            if let Some(l) = log_url {
                extra.insert("log_url".into(), l.into());
            }
            let (mut s, c) = Server::configure_with(bin, &dir, database_url, cred.clone(), extra)?;
            s.start().await?;
            cred.get_or_insert(c);
            servers.push(s);
            dirs.push(dir);
        }
        let cred = cred.context("no node")?;
        Ok(Nodes {
            servers,
            cred,
            dirs,
        })
    }

    fn clients(&self) -> anyhow::Result<Vec<Client>> {
        self.servers
            .iter()
            .map(|s| Client::new(&s.base, self.cred.clone(), 32))
            .collect()
    }

    async fn stop(mut self) {
        for s in &mut self.servers {
            let _ = s.kill().await;
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The webhook: counts distinct event ids, answering 200 after `delay`.
async fn slow_webhook(delay: Duration) -> anyhow::Result<(String, Arc<Mutex<HashSet<String>>>)> {
    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let s = s.clone();
            async move {
                tokio::time::sleep(delay).await;
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    if let (Some(id), Ok(mut s)) = (v["id"].as_str(), s.lock()) {
                        s.insert(id.to_string());
                    }
                }
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move { axum::serve(l, app).await });
    Ok((format!("http://{addr}/hook"), seen))
}

async fn delivery_phase(a: &ClusterArgs, bin: &Path, n: usize) -> anyhow::Result<f64> {
    let (db, url) = create_database(&a.database_url).await?;
    let log_url = format!("kafka://{}", a.brokers);
    let nodes = Nodes::start(bin, n, Some(&url), Some(&log_url)).await;
    let nodes = match nodes {
        Ok(nodes) => nodes,
        Err(e) => {
            drop_database(&a.database_url, &db).await;
            return Err(e);
        }
    };
    let r = delivery_run(a, &nodes, n).await;
    if r.is_err() {
        for s in &nodes.servers {
            eprintln!("server log: {}", s.log.display());
        }
    }
    nodes.stop().await;
    drop_database(&a.database_url, &db).await;
    r
}

async fn delivery_run(a: &ClusterArgs, nodes: &Nodes, n: usize) -> anyhow::Result<f64> {
    let clients = nodes.clients()?;
    let c0 = &clients[0];
    let (hook, seen) = slow_webhook(Duration::from_millis(a.delay_ms)).await?;
    let (channel, source) = c0.setup_channel("cluster").await?;
    c0.webhook_subscription(&channel, &source, &hook).await?;
    // The first event creates the topic; then every partition must have a live owner (and,
    // with several nodes, the owners must be all of them) before the clock starts.
    let p = nodes.cred.project_id.clone();
    let path = format!("/v1/{p}/channels/{channel}/events");
    let warm_event = event(&source, u64::MAX, 200, json!({}));
    let warm_id = warm_event["id"].as_str().unwrap_or_default().to_string();
    let warm = json!({ "events": [warm_event] });
    let (s, v) = c0.call("POST", &path, Some(&warm)).await?;
    if s != 200 {
        bail!("PutEvents answered {s} {v}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, v) = c0.call("GET", "/openeg/v1/cluster", None).await?;
        let owners: HashSet<&str> = v["partitions"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["channel_id"] == channel.as_str())
                    .filter_map(|p| p["owner"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        let partitions = v["partitions"].as_array().map_or(0, |ps| {
            ps.iter()
                .filter(|p| p["channel_id"] == channel.as_str())
                .count()
        });
        let all_owned = v["partitions"].as_array().is_some_and(|ps| {
            ps.iter()
                .filter(|p| p["channel_id"] == channel.as_str())
                .all(|p| p["owner"].is_string())
        });
        if s == 200 && partitions > 0 && all_owned && owners.len() == n.min(partitions) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the partitions were not all owned within 60 s: {v}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let Ok(mut s) = seen.lock() {
        s.clear();
    }
    let bodies: Vec<Vec<u8>> = (0..a.events)
        .collect::<Vec<_>>()
        .chunks(20)
        .map(|ids| {
            let evs: Vec<Value> = ids
                .iter()
                .map(|i| event(&source, *i, 500, json!({})))
                .collect();
            json!({ "events": evs }).to_string().into_bytes()
        })
        .collect();
    let bodies = Arc::new(bodies);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for k in 0..16 {
        let (clients, bodies, next, path) =
            (clients.clone(), bodies.clone(), next.clone(), path.clone());
        senders.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return Ok::<_, anyhow::Error>(());
                };
                let c = &clients[(i + k) % clients.len()];
                let (s, v) = c.call_bytes("POST", &path, body.clone()).await?;
                if s != 200 || v["failed_count"] != 0 {
                    bail!("PutEvents answered {s} {v}");
                }
            }
        });
    }
    while let Some(r) = senders.join_next().await {
        r??;
    }
    let published = start.elapsed();
    let limit = Duration::from_secs(600);
    loop {
        let got = seen
            .lock()
            .map(|s| (s.len() - usize::from(s.contains(&warm_id))) as u64)
            .unwrap_or(0);
        if got >= a.events {
            break;
        }
        if start.elapsed() > limit {
            bail!("{got} of {} delivered within {limit:?}", a.events);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = start.elapsed();
    println!(
        "    {n} node(s): published {} in {:.2} s, all delivered after {:.2} s",
        a.events,
        published.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    Ok(a.events as f64 / elapsed.as_secs_f64())
}

async fn ingest_phase(a: &ClusterArgs, bin: &Path, kafka: bool) -> anyhow::Result<f64> {
    let db = if kafka {
        Some(create_database(&a.database_url).await?)
    } else {
        None
    };
    let log_url = format!("kafka://{}", a.brokers);
    let nodes = Nodes::start(
        bin,
        1,
        db.as_ref().map(|(_, url)| url.as_str()),
        kafka.then_some(log_url.as_str()),
    )
    .await;
    let r = match nodes {
        Ok(nodes) => {
            let r = async {
                let c = nodes.clients()?.remove(0);
                let (channel, source) = c.setup_channel("ingest").await?;
                // Failed requests are reported by openeg_ingest; only acknowledged events count.
                let (rate, _acked) =
                    openeg_ingest(&c, &channel, &source, 16, 20, 500, a.ingest_secs).await?;
                Ok::<f64, anyhow::Error>(rate)
            }
            .await;
            nodes.stop().await;
            r
        }
        Err(e) => Err(e),
    };
    if let Some((name, _)) = &db {
        drop_database(&a.database_url, name).await;
    }
    r
}
