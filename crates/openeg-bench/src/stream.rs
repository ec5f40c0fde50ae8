//! `openeg-bench stream`: an event stream Kafka → Kafka vs a bare rdkafka consume → produce
//! loop that commits after the delivery reports, same broker, same run.
//!
//! Per run: a source topic of `partitions` partitions is filled with `count` records of about
//! `size` bytes (before any clock starts); each side then reads all of it in a consumer group
//! of its own from the earliest offset and writes every record to a fresh topic of its own.
//!
//! * Baseline: a `StreamConsumer` subscribed to the topic; up to `batch` records are taken,
//!   each produced through a `FutureProducer` (the producer settings OpenEG derives from a
//!   KAFKA connection), the delivery reports awaited, then the offsets after the batch
//!   committed; repeat. Its time runs from the consumer's creation to the last report.
//! * OpenEG: a fresh `openeg serve`, a KAFKA connection and a stream (batch_window count =
//!   `batch`, interval 1 s, thread_num = partitions) created through the API; its time runs
//!   from the START request until the stream's status (`GET /openeg/v1/eventstreamings/{id}/
//!   status`) counts `count` records written, i.e. acknowledged by the broker, as the
//!   baseline counts its delivery reports; the sink topic is then checked to hold them (a
//!   broker's watermarks polled during the run would load a slow broker and slow the side
//!   measured). Measured twice: with no transform (the sink gets the CloudEvent of each
//!   record) and with a VARIABLE transform.

use super::harness::{self, OwnServer};
use super::kafka_target;
use super::Client;
use anyhow::{bail, Context};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct StreamArgs {
    /// The `openeg` binary (default: the one beside this executable).
    #[arg(long)]
    pub(crate) openeg: Option<PathBuf>,
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:19092")]
    pub(crate) brokers: String,
    /// Records in the source topic.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) count: u64,
    /// Approximate size of each record's value.
    #[arg(long, default_value_t = 256)]
    pub(crate) size: usize,
    #[arg(long, default_value_t = 3)]
    pub(crate) partitions: i32,
    /// Records per batch (the stream's batch_window.count; the baseline's commit batch).
    #[arg(long, default_value_t = 500)]
    pub(crate) batch: usize,
    /// Repetitions (each with fresh topics).
    #[arg(long, default_value_t = 1)]
    pub(crate) runs: u32,
    /// Seconds allowed per phase.
    #[arg(long, default_value_t = 600)]
    pub(crate) timeout: u64,
    /// Keep the servers' temporary directories.
    #[arg(long)]
    pub(crate) keep: bool,
}

pub async fn run(a: StreamArgs) -> anyhow::Result<()> {
    if a.count == 0 || a.partitions < 1 || !(1..=10_000).contains(&a.batch) {
        bail!("need --count > 0, --partitions ≥ 1 and --batch 1–10000");
    }
    println!(
        "stream: {} records × {} B over {} partitions, broker {}, batches of {}; baseline: \
         rdkafka consume → produce → commit after delivery reports",
        a.count, a.size, a.partitions, a.brokers, a.batch
    );
    let mut plain = Vec::new();
    let mut variable = Vec::new();
    for run in 1..=a.runs {
        let (base, ours, ours_var) = one_run(&a).await?;
        println!(
            "  run {run}: baseline {base:>8.0} rec/s   openeg {ours:>8.0} rec/s ({:.2}x)   \
             openeg+VARIABLE {ours_var:>8.0} rec/s ({:.2}x)",
            ours / base,
            ours_var / base
        );
        plain.push(ours / base);
        variable.push(ours_var / base);
    }
    let (pm, plo, phi) = harness::summary(&plain);
    let (vm, vlo, vhi) = harness::summary(&variable);
    println!(
        "median of {} runs: ratio {pm:.2}x ({plo:.2}–{phi:.2}); with a VARIABLE transform \
         {vm:.2}x ({vlo:.2}–{vhi:.2})",
        a.runs
    );
    Ok(())
}

/// (baseline, OpenEG, OpenEG with a VARIABLE transform), records per second.
async fn one_run(a: &StreamArgs) -> anyhow::Result<(f64, f64, f64)> {
    let tag = harness::short_id(8);
    let src = format!("openeg-bench-{tag}-src");
    let sinks = [
        format!("openeg-bench-{tag}-base"),
        format!("openeg-bench-{tag}-ours"),
        format!("openeg-bench-{tag}-var"),
    ];
    let mut names: Vec<&str> = sinks.iter().map(String::as_str).collect();
    names.push(&src);
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &a.brokers)
        .create()
        .context("creating the Kafka admin client")?;
    kafka_target::create_topics(&admin, &names, a.partitions).await?;
    fill(a, &src).await?;
    let detail = json!({"instance_id": "openeg-bench", "addr": a.brokers,
        "security_protocol": "PLAINTEXT", "enable_sasl_ssl": false});
    let base = baseline(a, &detail, &src, &sinks[0]).await?;
    let ours = openeg_phase(a, &detail, &src, &sinks[1], None).await?;
    let variable = json!({"type": "VARIABLE", "value": "{\"n\":\"$.data.n\",\"id\":\"$.id\"}",
        "template": "{\"n\":${n},\"from\":\"${id}\"}"});
    let ours_var = openeg_phase(a, &detail, &src, &sinks[2], Some(variable)).await?;
    Ok((base, ours, ours_var))
}

/// Fills the source topic: record `i` = `{"n": i, "pad": "…"}` of about `size` bytes, key
/// `k-i`, partition `i % partitions`.
pub(crate) async fn fill(a: &StreamArgs, topic: &str) -> anyhow::Result<()> {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &a.brokers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let t0 = Instant::now();
    let mut pending = Vec::with_capacity(a.count as usize);
    for i in 0..a.count {
        let mut v = json!({"n": i, "pad": ""}).to_string();
        let pad = a.size.saturating_sub(v.len());
        v = json!({"n": i, "pad": "x".repeat(pad)}).to_string();
        let key = format!("k-{i}");
        let part = (i % a.partitions as u64) as i32;
        let r = FutureRecord::to(topic)
            .payload(&v)
            .key(&key)
            .partition(part);
        match p.send_result(r) {
            Ok(f) => pending.push(f),
            Err((e, _)) => bail!("filling {topic}: {e}"),
        }
    }
    for f in pending {
        match f.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => bail!("filling {topic}: {e}"),
            Err(_) => bail!("filling {topic}: the producer went away"),
        }
    }
    println!(
        "    source: {} records in {:.1} s",
        a.count,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The records of `topic` (the sum of its partitions' high watermarks).
fn records(c: &BaseConsumer, topic: &str, partitions: i32) -> u64 {
    (0..partitions)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
                .map(|(_, h)| h.max(0) as u64)
                .unwrap_or(0)
        })
        .sum()
}

/// Waits (on a blocking thread) until `topic` holds `count` records; the time since `start`.
pub(crate) async fn wait_records(
    a: &StreamArgs,
    topic: &str,
    start: Instant,
) -> anyhow::Result<Duration> {
    let (brokers, topic, count, parts) =
        (a.brokers.clone(), topic.to_string(), a.count, a.partitions);
    let limit = Duration::from_secs(a.timeout);
    tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", format!("openeg-bench-{}", harness::short_id(8)))
            .create()?;
        loop {
            if records(&c, &topic, parts) >= count {
                return Ok(start.elapsed());
            }
            if start.elapsed() > limit {
                bail!("{topic}: fewer than {count} records within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await?
}

pub(crate) async fn baseline(
    a: &StreamArgs,
    detail: &Value,
    src: &str,
    dst: &str,
) -> anyhow::Result<f64> {
    let settings = openeg_connectors::sinks::kafka::settings(&json!({ "kafka_detail": detail }))
        .map_err(|e| anyhow::anyhow!(e))?;
    let mut pc = ClientConfig::new();
    for (k, v) in &settings.0 {
        pc.set(*k, v);
    }
    let producer: FutureProducer = pc.create()?;
    let start = Instant::now();
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &a.brokers)
        .set(
            "group.id",
            format!("openeg-bench-base-{}", harness::short_id(8)),
        )
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[src])?;
    let limit = Duration::from_secs(a.timeout);
    let mut done = 0u64;
    while done < a.count {
        if start.elapsed() > limit {
            bail!("baseline: {done} of {} records within {limit:?}", a.count);
        }
        // A batch: what arrives until `batch` records or 100 ms without one.
        let mut batch = Vec::with_capacity(a.batch);
        let mut next: HashMap<i32, i64> = HashMap::new();
        while batch.len() < a.batch {
            let wait = if batch.is_empty() { 5_000 } else { 100 };
            match tokio::time::timeout(Duration::from_millis(wait), consumer.recv()).await {
                Ok(Ok(m)) => {
                    next.insert(m.partition(), m.offset() + 1);
                    let value = m.payload().unwrap_or_default().to_vec();
                    let key = m.key().map(<[u8]>::to_vec);
                    batch.push((key, value));
                }
                Ok(Err(e)) => bail!("baseline consume: {e}"),
                Err(_) => break,
            }
        }
        let sends = batch.iter().map(|(k, v)| {
            let mut r = FutureRecord::to(dst).payload(v);
            if let Some(k) = k {
                r = r.key(k);
            }
            producer.send(r, Duration::from_secs(60))
        });
        for r in futures_util::future::join_all(sends).await {
            if let Err((e, _)) = r {
                bail!("baseline produce: {e}");
            }
        }
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &next {
            tpl.add_partition_offset(src, *p, Offset::Offset(*o))?;
        }
        if !next.is_empty() {
            consumer.commit(&tpl, CommitMode::Async)?;
        }
        done += batch.len() as u64;
    }
    let elapsed = start.elapsed();
    println!(
        "    baseline: {} records in {:.2} s",
        a.count,
        elapsed.as_secs_f64()
    );
    Ok(a.count as f64 / elapsed.as_secs_f64())
}

async fn openeg_phase(
    a: &StreamArgs,
    detail: &Value,
    src: &str,
    dst: &str,
    transform: Option<Value>,
) -> anyhow::Result<f64> {
    let own = OwnServer::start(a.openeg.as_deref(), "stream").await?;
    let outcome = async {
        let c = Client::new(&own.server.base, own.cred.clone(), 4)?;
        let p = own.cred.project_id.clone();
        let connection_id = c.create_kafka_connection(detail).await?;
        let mut rule = json!({});
        if let Some(t) = &transform {
            rule["transform"] = t.clone();
        }
        let body = json!({
            "name": format!("bench-{}", harness::short_id(8)),
            "source": {"source_kafka": {"addr": a.brokers, "topic": src,
                "group": format!("openeg-bench-{}", harness::short_id(8)), "seek_to": "earliest"}},
            "sink": {"sink_kafka": {"topic": dst, "connectionId": connection_id}},
            "rule_config": rule,
            "option": {"thread_num": a.partitions,
                       "batch_window": {"count": a.batch, "interval": 1}},
        });
        let (s, v) = c
            .call("POST", &format!("/v1/{p}/eventstreamings"), Some(&body))
            .await?;
        if s != 200 {
            bail!("creating the stream: {s} {v}");
        }
        let id = v["eventStreamingID"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let start = Instant::now();
        let (s, v) = c
            .call(
                "POST",
                &format!("/v1/{p}/eventstreamings/operate/{id}"),
                Some(&json!({"operation": "START"})),
            )
            .await?;
        if s != 200 {
            bail!("starting the stream: {s} {v}");
        }
        // OpenEG's own count of records the broker acknowledged (as the baseline counts its
        // delivery reports): polling the broker's watermarks instead loads a slow broker and
        // slows the side being measured. The topic is checked once at the end.
        let status = format!("/openeg/v1/eventstreamings/{id}/status");
        let limit = Duration::from_secs(a.timeout);
        let mut last_print = Instant::now();
        let elapsed = loop {
            let (s, v) = c.call("GET", &status, None).await?;
            if s != 200 {
                bail!("the stream's status: {s} {v}");
            }
            let written = v["records_written"].as_u64().unwrap_or(0);
            // OPENEG_BENCH_PROGRESS: the stream's figures every 2 s, on stderr.
            if std::env::var_os("OPENEG_BENCH_PROGRESS").is_some()
                && last_print.elapsed() >= Duration::from_secs(2)
            {
                last_print = Instant::now();
                eprintln!(
                    "      {:>5.1} s: {written} written, {} read, {} failed sink calls",
                    start.elapsed().as_secs_f64(),
                    v["records_read"],
                    v["sink_failures"],
                );
            }
            if written >= a.count {
                break start.elapsed();
            }
            if start.elapsed() > limit {
                bail!(
                    "{written} of {} records written within {limit:?}: {v}",
                    a.count
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        wait_records(a, dst, Instant::now()).await?;
        println!(
            "    openeg{}: {} records in {:.2} s",
            if transform.is_some() { "+VARIABLE" } else { "" },
            a.count,
            elapsed.as_secs_f64()
        );
        Ok(a.count as f64 / elapsed.as_secs_f64())
    }
    .await;
    let kept = a.keep || outcome.is_err();
    if outcome.is_err() {
        eprintln!("server log: {}", own.server.log.display());
    }
    own.finish(kept).await?;
    outcome
}
