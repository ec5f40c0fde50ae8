//! `openeg-bench`: load benchmarks against a running OpenEG, each side by side with its
//! baseline in the same run.
//!
//! * `ingest`: durable publishing. Signed PutEvents of 500-byte events over N connections,
//!   then the same workload into RabbitMQ (durable queue, persistent messages, publisher
//!   confirms: a message counts once confirmed, as an event counts once answered 200).
//! * `deliver`: webhook delivery at a fixed publish rate; reports the sustained delivery rate
//!   and publish→deliver latency percentiles measured by a local receiver.
//! * `crash`: starts its own `openeg serve`, SIGKILLs and restarts it under paced load, and
//!   reports lost and duplicated deliveries and restart→delivery times (`crash.rs`).
//! * `rocketmq produce|consume`: a RocketMQ client for the end-to-end suite (`rocketmq.rs`).
//! * `stream`: an event stream Kafka → Kafka vs a bare rdkafka loop (`stream.rs`).

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

mod cluster;
mod crash;
mod harness;
mod kafka_target;
mod mirror;
mod rabbitmq_source;
mod redis_mirror;
mod rocketmq;
mod stream;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "openeg-bench")]
struct Cli {
    /// OpenEG endpoint.
    #[arg(long, default_value = "http://127.0.0.1:8080", global = true)]
    endpoint: String,
    /// Credentials file of the server (the development credential by default).
    #[arg(long, default_value = "openeg-data/credentials.toml", global = true)]
    credentials: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Durable ingest rate vs RabbitMQ.
    Ingest {
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Seconds per measured phase.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Batch sizes to measure.
        #[arg(long, value_delimiter = ',', default_value = "1,10")]
        batches: Vec<usize>,
        #[arg(long, default_value_t = 500)]
        event_bytes: usize,
        #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
        amqp: String,
        /// Skip the RabbitMQ phase.
        #[arg(long)]
        no_rabbitmq: bool,
    },
    /// Webhook delivery rate and publish→deliver latency at a fixed publish rate.
    Deliver {
        #[arg(long, default_value_t = 5000)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 10)]
        batch: usize,
    },
    /// SIGKILLs and restarts its own `openeg serve` under paced publishing; reports lost and
    /// duplicated webhook deliveries (ignores --endpoint and --credentials).
    Crash(crash::CrashArgs),
    /// A small RocketMQ producer and consumer for the end-to-end suite.
    #[command(subcommand)]
    Rocketmq(rocketmq::RocketMqCmd),
    /// HC.Kafka target delivery rate vs a bare rdkafka producer (own server).
    KafkaTarget(kafka_target::KafkaTargetArgs),
    /// RABBITMQ source drain rate into a channel vs a bare lapin consumer (own server).
    RabbitmqSource(rabbitmq_source::RabbitmqSourceArgs),
    /// Distributed mode: 3 nodes vs 1 through a slow webhook, and Kafka + PostgreSQL ingest
    /// vs the embedded default (own servers).
    Cluster(cluster::ClusterArgs),
    /// An event stream Kafka → Kafka vs a bare rdkafka consume → produce → commit loop
    /// (own server).
    Stream(stream::StreamArgs),
    /// A Kafka → Kafka event-router job vs a bare rdkafka consume → produce → commit loop
    /// with acks=all (own server).
    Mirror(stream::StreamArgs),
    /// A Redis → Redis event-router job vs a native replica (REPLICAOF): full-sync time and
    /// incremental lag (own servers).
    RedisMirror(redis_mirror::RedisMirrorArgs),
}

#[derive(serde::Deserialize)]
struct CredFile {
    credentials: Vec<Cred>,
}
#[derive(serde::Deserialize, Clone)]
struct Cred {
    access_key: String,
    secret_key: String,
    project_id: String,
}

/// A minimal SDK-HMAC-SHA256 client (the same signing code the server verifies with).
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
    host: String,
    cred: Cred,
}

impl Client {
    fn new(endpoint: &str, cred: Cred, pool: usize) -> anyhow::Result<Self> {
        Self::with_timeout(endpoint, cred, pool, None)
    }

    /// A client whose requests fail after `timeout` (the crash harness: a request to a killed
    /// server must not hang).
    fn with_timeout(
        endpoint: &str,
        cred: Cred,
        pool: usize,
        timeout: Option<Duration>,
    ) -> anyhow::Result<Self> {
        let url: reqwest::Url = endpoint.parse().context("endpoint")?;
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or("127.0.0.1")),
            None => url.host_str().unwrap_or("127.0.0.1").to_string(),
        };
        let mut builder = reqwest::Client::builder()
            .pool_max_idle_per_host(pool)
            .tcp_nodelay(true);
        if let Some(t) = timeout {
            builder = builder.timeout(t).connect_timeout(t);
        }
        let http = builder.build()?;
        Ok(Client {
            http,
            base: endpoint.trim_end_matches('/').to_string(),
            host,
            cred,
        })
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let body_bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.call_bytes(method, path, body_bytes).await
    }

    /// A signed request whose path may carry a query string.
    /// POSTs `body`; anything but 200 is an error naming `what`.
    async fn post_ok(&self, path: &str, body: &Value, what: &str) -> anyhow::Result<Value> {
        let (s, v) = self.call("POST", path, Some(body)).await?;
        if s != 200 {
            anyhow::bail!("{what}: {s} {v}");
        }
        Ok(v)
    }

    async fn call_query(&self, method: &str, path_and_query: &str) -> anyhow::Result<(u16, Value)> {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        self.send(method, path, query, Vec::new()).await
    }

    /// Signs and sends a prebuilt body (the ingest loop reuses one body per connection, as
    /// the RabbitMQ side reuses one payload).
    async fn call_bytes(
        &self,
        method: &str,
        path: &str,
        body_bytes: Vec<u8>,
    ) -> anyhow::Result<(u16, Value)> {
        self.send(method, path, "", body_bytes).await
    }

    /// Signs (SDK-HMAC-SHA256) and sends; `query` is already in canonical form.
    async fn send(
        &self,
        method: &str,
        path: &str,
        query: &str,
        body_bytes: Vec<u8>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut h = http::HeaderMap::new();
        h.insert(
            "content-type",
            http::HeaderValue::from_static("application/json"),
        );
        h.insert("host", http::HeaderValue::from_str(&self.host)?);
        let date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        h.insert("x-sdk-date", http::HeaderValue::from_str(&date)?);
        let authz = openeg_server::auth::signing::authorization_for(
            &self.cred.access_key,
            &self.cred.secret_key,
            method,
            path,
            query,
            &h,
            &body_bytes,
        )
        .map_err(|e| anyhow::anyhow!("signing: {}", e.reason()))?;
        let m = reqwest::Method::from_bytes(method.as_bytes())?;
        let resp = self
            .http
            .request(
                m,
                if query.is_empty() {
                    format!("{}{path}", self.base)
                } else {
                    format!("{}{path}?{query}", self.base)
                },
            )
            .header("content-type", "application/json")
            .header("x-sdk-date", date)
            .header("authorization", authz)
            .body(body_bytes)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Ok((status, v))
    }

    /// A KAFKA connection with `detail` (its `kafka_detail`); returns its id.
    async fn create_kafka_connection(&self, detail: &Value) -> anyhow::Result<String> {
        let p = &self.cred.project_id;
        let body = json!({"name": format!("bench-kafka-{}", harness::short_id(6)),
            "vpc_id": "vpc-bench", "subnet_id": "subnet-bench", "type": "KAFKA",
            "kafka_detail": detail});
        let (s, conn) = self
            .call("POST", &format!("/v1/{p}/connections"), Some(&body))
            .await?;
        if s != 200 {
            bail!("creating the KAFKA connection: {s} {conn}");
        }
        Ok(conn["id"].as_str().unwrap_or_default().to_string())
    }

    /// A fresh channel with one custom source; returns (channel id, source name).
    async fn setup_channel(&self, tag: &str) -> anyhow::Result<(String, String)> {
        let p = &self.cred.project_id;
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let (s, ch) = self
            .call(
                "POST",
                &format!("/v1/{p}/channels"),
                Some(&json!({"name": format!("bench-{tag}-{suffix}")})),
            )
            .await?;
        if s != 200 {
            bail!("creating a channel: {s} {ch}");
        }
        let channel_id = ch["id"].as_str().unwrap_or_default().to_string();
        let source = format!("bench-{tag}-{suffix}");
        let (s, v) = self
            .call(
                "POST",
                &format!("/v1/{p}/sources"),
                Some(&json!({"name": source, "channel_id": channel_id})),
            )
            .await?;
        if s != 200 {
            bail!("creating a source: {s} {v}");
        }
        Ok((channel_id, source))
    }

    /// One subscription of `source`'s events in `channel` with a single WEBHOOK target
    /// (ORIGINAL payload) at `url`.
    async fn webhook_subscription(
        &self,
        channel: &str,
        source: &str,
        url: &str,
    ) -> anyhow::Result<()> {
        let p = &self.cred.project_id;
        let sub = json!({"name": format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]), "channel_id": channel,
            "sources": [{"name": source, "provider_type": "CUSTOM", "filter": {"source": [{"op": "StringIn", "values": [source]}]}}],
            "targets": [{"name": "WEBHOOK", "provider_type": "CUSTOM", "detail": {"url": url}, "transform": {"type": "ORIGINAL"}}]});
        let (s, v) = self
            .call("POST", &format!("/v1/{p}/subscriptions"), Some(&sub))
            .await?;
        if s != 200 {
            bail!("creating the subscription: {s} {v}");
        }
        Ok(())
    }
}

fn event(source: &str, id: u64, bytes: usize, extra: Value) -> Value {
    let mut ev = json!({"id": format!("b{id}"), "source": source, "specversion": "1.0", "type": "bench", "data": extra});
    let len = ev.to_string().len();
    if let Some(d) = ev["data"].as_object_mut() {
        d.insert(
            "pad".into(),
            Value::String("x".repeat(bytes.saturating_sub(len + 10))),
        );
    }
    ev
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

async fn openeg_ingest(
    c: &Client,
    channel: &str,
    source: &str,
    conns: usize,
    batch: usize,
    bytes: usize,
    secs: u64,
) -> anyhow::Result<(f64, u64)> {
    let path = format!("/v1/{}/channels/{channel}/events", c.cred.project_id);
    let acked = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (c, path, source, acked, errors, stop, next) = (
            c.clone(),
            path.clone(),
            source.to_string(),
            acked.clone(),
            errors.clone(),
            stop.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // Ids may repeat (duplicates are accepted and delivered again), so one body per
            // connection keeps the client's CPU out of the measurement, as on the RabbitMQ side.
            let events: Vec<Value> = (0..batch)
                .map(|_| {
                    event(
                        &source,
                        next.fetch_add(1, Ordering::Relaxed),
                        bytes,
                        json!({}),
                    )
                })
                .collect();
            let body = json!({"events": events}).to_string().into_bytes();
            while !stop.load(Ordering::Relaxed) {
                match c.call_bytes("POST", &path, body.clone()).await {
                    Ok((200, v)) if v["failed_count"] == 0 => {
                        acked.fetch_add(batch as u64, Ordering::Relaxed);
                    }
                    other => {
                        // The first failure is shown: a run with failures is not a measurement.
                        if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                            match other {
                                Ok((s, v)) => eprintln!("    PutEvents failed: {s} {v}"),
                                Err(e) => eprintln!("    PutEvents failed: {e}"),
                            }
                        }
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let counted = acked.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    for t in tasks {
        let _ = t.await;
    }
    let e = errors.load(Ordering::Relaxed);
    if e > 0 {
        eprintln!("  openeg: {e} failed requests");
    }
    Ok((counted as f64 / elapsed, acked.load(Ordering::Relaxed)))
}

/// Waits until the router has traced `expected` events of the channel (every accepted event
/// gets a trace row once routed); returns the seconds that took, so one phase's routing
/// backlog never overlaps the next phase.
async fn drain(c: &Client, channel: &str, since_ms: i64, expected: u64) -> anyhow::Result<f64> {
    let start = Instant::now();
    let p = &c.cred.project_id;
    loop {
        let now = chrono::Utc::now().timestamp_millis() + 60_000;
        let path = format!("/v1/{p}/traced-events?channel_id={channel}&start_time={since_ms}&end_time={now}&limit=1");
        let (s, v) = c.call_query("GET", &path).await?;
        let total = v["total"].as_u64().unwrap_or(0);
        if s == 200 && total >= expected {
            return Ok(start.elapsed().as_secs_f64());
        }
        if start.elapsed() > Duration::from_secs(600) {
            bail!("routing did not catch up: {total} of {expected} traced");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn rabbitmq_ingest(
    url: &str,
    conns: usize,
    batch: usize,
    bytes: usize,
    secs: u64,
) -> anyhow::Result<f64> {
    use lapin::options::{
        BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
    };
    use lapin::types::FieldTable;
    use lapin::{BasicProperties, Connection, ConnectionProperties};
    let queue = format!("openeg-bench-{}", uuid::Uuid::new_v4().simple());
    let payload = event("bench", 0, bytes, json!({})).to_string().into_bytes();
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let setup = Connection::connect(url, ConnectionProperties::default())
        .await
        .context("connecting to RabbitMQ")?;
    let ch = setup.create_channel().await?;
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let conn = Connection::connect(url, ConnectionProperties::default()).await?;
        let (queue, payload, acked, stop) =
            (queue.clone(), payload.clone(), acked.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let ch = conn.create_channel().await?;
            ch.confirm_select(ConfirmSelectOptions::default()).await?;
            let props = BasicProperties::default().with_delivery_mode(2);
            while !stop.load(Ordering::Relaxed) {
                let mut confirms = Vec::with_capacity(batch);
                for _ in 0..batch {
                    confirms.push(
                        ch.basic_publish(
                            "".into(),
                            queue.as_str().into(),
                            BasicPublishOptions::default(),
                            &payload,
                            props.clone(),
                        )
                        .await?,
                    );
                }
                let mut ok = 0u64;
                for c in confirms {
                    if c.await?.is_ack() {
                        ok += 1;
                    }
                }
                acked.fetch_add(ok, Ordering::Relaxed);
            }
            let _ = conn.close(200, "done".into()).await;
            Ok::<_, lapin::Error>(())
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let counted = acked.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    for t in tasks {
        if let Ok(Err(e)) = t.await {
            eprintln!("  rabbitmq publisher: {e}");
        }
    }
    let _ = ch
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = setup.close(200, "done".into()).await;
    Ok(counted as f64 / elapsed)
}

async fn ingest(
    c: Client,
    conns: usize,
    secs: u64,
    batches: Vec<usize>,
    bytes: usize,
    amqp: String,
    no_rabbit: bool,
) -> anyhow::Result<()> {
    let since_ms = chrono::Utc::now().timestamp_millis() - 1_000;
    let (channel, source) = c.setup_channel("ingest").await?;
    let mut accepted = 0u64;
    println!("ingest: {conns} connections, {bytes}-byte events, {secs} s per phase, durable on both sides");
    println!(
        "{:>6} {:>16} {:>16} {:>8} {:>18}",
        "batch", "openeg ev/s", "rabbitmq msg/s", "ratio", "routing drain s"
    );
    for b in batches {
        let (ours, n) = openeg_ingest(&c, &channel, &source, conns, b, bytes, secs).await?;
        accepted += n;
        let drained = drain(&c, &channel, since_ms, accepted).await?;
        let theirs = if no_rabbit {
            f64::NAN
        } else {
            rabbitmq_ingest(&amqp, conns, b, bytes, secs).await?
        };
        println!(
            "{b:>6} {ours:>16.0} {theirs:>16.0} {:>7.2}x {drained:>18.1}",
            ours / theirs
        );
    }
    Ok(())
}

type Latencies = Arc<Mutex<Vec<u64>>>;

async fn receive(
    axum::extract::State(lat): axum::extract::State<Latencies>,
    body: axum::body::Bytes,
) -> &'static str {
    let now = now_us();
    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
        if let Some(sent) = v.pointer("/data/sent_us").and_then(Value::as_u64) {
            if let Ok(mut l) = lat.lock() {
                l.push(now.saturating_sub(sent));
            }
        }
    }
    "ok"
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

async fn deliver(c: Client, rate: u64, secs: u64, batch: usize) -> anyhow::Result<()> {
    let lat: Latencies = Arc::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(lat.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move { axum::serve(l, app).await });
    let (channel, source) = c.setup_channel("deliver").await?;
    let p = c.cred.project_id.clone();
    c.webhook_subscription(&channel, &source, &format!("http://{addr}/hook"))
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let path = format!("/v1/{p}/channels/{channel}/events");
    let total = rate * secs;
    let requests = total / batch as u64;
    let interval = Duration::from_secs_f64(batch as f64 / rate as f64);
    let published = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut inflight = tokio::task::JoinSet::new();
    for r in 0..requests {
        tick.tick().await;
        let (c, path, source, published) =
            (c.clone(), path.clone(), source.clone(), published.clone());
        inflight.spawn(async move {
            let sent = now_us();
            let events: Vec<Value> = (0..batch as u64)
                .map(|i| event(&source, r * 1000 + i, 500, json!({"sent_us": sent})))
                .collect();
            if let Ok((200, v)) = c
                .call("POST", &path, Some(&json!({"events": events})))
                .await
            {
                if v["failed_count"] == 0 {
                    published.fetch_add(batch as u64, Ordering::Relaxed);
                }
            }
        });
        while inflight.len() > 256 {
            inflight.join_next().await;
        }
    }
    while inflight.join_next().await.is_some() {}
    let publish_secs = start.elapsed().as_secs_f64();
    let published = published.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = lat.lock().map(|l| l.len() as u64).unwrap_or(0);
        if n >= published || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all_secs = start.elapsed().as_secs_f64();
    let mut v = lat.lock().map(|l| l.clone()).unwrap_or_default();
    v.sort_unstable();
    println!("deliver: target {rate} ev/s for {secs} s, batches of {batch}, one webhook subscription (ORIGINAL)");
    println!(
        "  published {published} in {publish_secs:.1} s ({:.0} ev/s)",
        published as f64 / publish_secs
    );
    println!(
        "  delivered {} in {all_secs:.1} s ({:.0} ev/s)",
        v.len(),
        v.len() as f64 / all_secs
    );
    println!(
        "  publish->deliver latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        pct(&v, 0.5),
        pct(&v, 0.9),
        pct(&v, 0.99),
        pct(&v, 1.0)
    );
    Ok(())
}

/// The first credential of a running server's credentials file.
fn load_cred(path: &std::path::Path) -> anyhow::Result<Cred> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str::<CredFile>(&text)?
        .credentials
        .into_iter()
        .next()
        .context("no credential in the file")
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Ingest {
                connections,
                seconds,
                batches,
                event_bytes,
                amqp,
                no_rabbitmq,
            } => {
                let c = Client::new(&cli.endpoint, load_cred(&cli.credentials)?, connections)?;
                ingest(
                    c,
                    connections,
                    seconds,
                    batches,
                    event_bytes,
                    amqp,
                    no_rabbitmq,
                )
                .await
            }
            Cmd::Deliver {
                rate,
                seconds,
                batch,
            } => {
                let c = Client::new(&cli.endpoint, load_cred(&cli.credentials)?, 64)?;
                deliver(c, rate, seconds, batch).await
            }
            Cmd::Crash(args) => crash::run(args).await,
            Cmd::Rocketmq(cmd) => rocketmq::run(cmd).await,
            Cmd::KafkaTarget(args) => kafka_target::run(args).await,
            Cmd::Cluster(args) => cluster::run(args).await,
            Cmd::Stream(args) => stream::run(args).await,
            Cmd::Mirror(args) => mirror::run(args).await,
            Cmd::RedisMirror(args) => redis_mirror::run(args).await,
            Cmd::RabbitmqSource(args) => rabbitmq_source::run(args).await,
        }
    })
}
