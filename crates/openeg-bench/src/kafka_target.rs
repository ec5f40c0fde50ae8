//! `openeg-bench kafka-target`: delivery rate through an HC.Kafka target vs a bare rdkafka
//! producer, to the same broker with the same producer settings.
//!
//! Per run: a fresh `openeg serve` of its own; a KAFKA connection, a channel, a custom
//! source and one subscription with an HC.Kafka target (ORIGINAL) to a fresh topic (one
//! partition, created with the AdminClient: OpenEG never creates topics). `count` events of
//! `size` bytes are published (signed PutEvents, `connections` concurrent requests of `batch`
//! events, bodies built before the clock starts). OpenEG's time runs from the first
//! PutEvents until the topic's high watermark reaches `count`; the topic is then read back
//! and the distinct event ids counted, so only records that arrived count (if some id is
//! missing or duplicated, the time runs until every id was read back).
//!
//! Baseline: a `FutureProducer` with the brokers, `acks` and security OpenEG derives from the
//! connection (`openeg_connectors::sinks::kafka::settings`) and librdkafka's defaults
//! otherwise (OpenEG's shorter timeouts would expire records queued at once), sending the
//! same records (value = the event's JSON as logged, key = event id,
//! the same `ce_*` headers) to another fresh topic, every record queued at once; its time
//! runs from the first send to the last delivery report (the broker's acknowledgement).

use super::harness::{self, OwnServer};
use super::{event, Client};
use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Value};
use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct KafkaTargetArgs {
    /// The `openeg` binary (default: the one beside this executable).
    #[arg(long)]
    openeg: Option<PathBuf>,
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:19092")]
    brokers: String,
    /// Events (and baseline records).
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Approximate size of each event's JSON (the record value).
    #[arg(long, default_value_t = 500)]
    size: usize,
    /// The connection's `acks` (0, 1 or all), used by both sides.
    #[arg(long, default_value = "1")]
    acks: String,
    /// Concurrent PutEvents requests.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Events per PutEvents request (1–20).
    #[arg(long, default_value_t = 20)]
    batch: usize,
    /// Repetitions (each with a fresh server and fresh topics).
    #[arg(long, default_value_t = 1)]
    runs: u32,
    /// Seconds allowed per phase.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Keep the server's temporary directory.
    #[arg(long)]
    keep: bool,
    /// Delete the run's topics at its end (on tansu's SQLite storage a deletion keeps the
    /// broker busy for minutes, so they are kept by default).
    #[arg(long)]
    delete_topics: bool,
    /// Also read OpenEG's topic back and count distinct event ids (slow on a slow broker);
    /// without it, the high watermark (records in the fresh topic) is what arrived.
    #[arg(long)]
    read_back: bool,
}

struct RunResult {
    openeg_rate: f64,
    baseline_rate: f64,
}

pub async fn run(a: KafkaTargetArgs) -> anyhow::Result<()> {
    if !(1..=20).contains(&a.batch) || a.connections == 0 || a.count == 0 {
        bail!("need --batch 1–20 (PutEvents' limit), --connections and --count > 0");
    }
    println!(
        "kafka-target: {} events × {} B, acks={}, broker {}, {} PutEvents connections × {} events; \
         OpenEG: first PutEvents → all records in the topic; baseline: rdkafka FutureProducer, \
         first send → last ack",
        a.count, a.size, a.acks, a.brokers, a.connections, a.batch
    );
    let mut results = Vec::new();
    for i in 1..=a.runs {
        let r = one_run(&a, i).await?;
        println!(
            "  run {i}: openeg {:>8.0} ev/s   baseline {:>8.0} rec/s   ratio {:.2}x",
            r.openeg_rate,
            r.baseline_rate,
            r.openeg_rate / r.baseline_rate
        );
        results.push(r);
    }
    let ours: Vec<f64> = results.iter().map(|r| r.openeg_rate).collect();
    let theirs: Vec<f64> = results.iter().map(|r| r.baseline_rate).collect();
    let ratios: Vec<f64> = results
        .iter()
        .map(|r| r.openeg_rate / r.baseline_rate)
        .collect();
    let (om, olo, ohi) = harness::summary(&ours);
    let (bm, blo, bhi) = harness::summary(&theirs);
    let (rm, rlo, rhi) = harness::summary(&ratios);
    println!(
        "median of {} runs: openeg {om:.0} ev/s ({olo:.0}–{ohi:.0}), baseline {bm:.0} rec/s \
         ({blo:.0}–{bhi:.0}), ratio {rm:.2}x ({rlo:.2}–{rhi:.2})",
        a.runs
    );
    Ok(())
}

async fn one_run(a: &KafkaTargetArgs, run: u32) -> anyhow::Result<RunResult> {
    let tag = harness::short_id(8);
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &a.brokers)
        .create()
        .context("creating the Kafka admin client")?;
    let ours_topic = format!("openeg-bench-{tag}-openeg");
    let base_topic = format!("openeg-bench-{tag}-baseline");
    create_topics(&admin, &[&ours_topic, &base_topic], 1).await?;
    let detail = json!({"instance_id": "openeg-bench", "addr": a.brokers,
        "security_protocol": "PLAINTEXT", "enable_sasl_ssl": false, "acks": a.acks});

    let own = OwnServer::start(a.openeg.as_deref(), "kafka-target").await?;
    let outcome = openeg_phase(a, &own, &detail, &ours_topic, run).await;
    let kept = a.keep || outcome.is_err();
    if outcome.is_err() {
        eprintln!("server log: {}", own.server.log.display());
    }
    own.finish(kept).await?;
    let ours = outcome?;
    let theirs = baseline_phase(a, &detail, &base_topic, run).await?;
    if a.delete_topics {
        let _ = admin
            .delete_topics(&[&ours_topic, &base_topic], &AdminOptions::new())
            .await;
    }
    Ok(RunResult {
        openeg_rate: ours,
        baseline_rate: theirs,
    })
}

/// Creates the topics with `partitions` each; a busy broker may time out, so timeouts are
/// retried (a topic created meanwhile then already exists).
pub(crate) async fn create_topics(
    admin: &AdminClient<DefaultClientContext>,
    names: &[&str],
    partitions: i32,
) -> anyhow::Result<()> {
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(60)))
        .request_timeout(Some(Duration::from_secs(60)));
    let mut tries = 0;
    loop {
        tries += 1;
        match admin.create_topics(&topics, &opts).await {
            Ok(results) => {
                for r in results {
                    match r {
                        Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((t, e)) => bail!("creating topic {t}: {e}"),
                    }
                }
                return Ok(());
            }
            Err(e) if tries < 5 => eprintln!("creating topics: {e}; again"),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The events of a run: the same ids and JSON on both sides.
fn events(a: &KafkaTargetArgs, run: u32, source: &str) -> Vec<Value> {
    (0..a.count)
        .map(|i| {
            let mut e = event(source, i, a.size, json!({}));
            e["id"] = json!(format!("r{run}-{i}"));
            e
        })
        .collect()
}

/// OpenEG's rate (events/s).
async fn openeg_phase(
    a: &KafkaTargetArgs,
    own: &OwnServer,
    detail: &Value,
    topic: &str,
    run: u32,
) -> anyhow::Result<f64> {
    let c = Client::with_timeout(
        &own.server.base,
        own.cred.clone(),
        a.connections,
        Some(Duration::from_secs(60)),
    )?;
    let p = own.cred.project_id.clone();
    let connection_id = c.create_kafka_connection(detail).await?;
    let (channel, source) = c.setup_channel("kafka").await?;
    let sub = json!({"name": format!("bench-{}", harness::short_id(8)), "channel_id": channel,
        "sources": [{"name": source, "provider_type": "CUSTOM",
            "filter": {"source": [{"op": "StringIn", "values": [source]}]}}],
        "targets": [{"name": "HC.Kafka", "provider_type": "OFFICIAL",
            "connection_id": connection_id, "kafka_detail": {"topic": topic},
            "transform": {"type": "ORIGINAL"}}]});
    let (s, v) = c
        .call("POST", &format!("/v1/{p}/subscriptions"), Some(&sub))
        .await?;
    if s != 200 {
        bail!("creating the subscription: {s} {v}");
    }

    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        events(a, run, &source)
            .chunks(a.batch)
            .map(|ch| json!({ "events": ch }).to_string().into_bytes())
            .collect(),
    );
    let path = format!("/v1/{p}/channels/{channel}/events");
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..a.connections {
        let (c, path, bodies, next, acked) = (
            c.clone(),
            path.clone(),
            bodies.clone(),
            next.clone(),
            acked.clone(),
        );
        senders.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return Ok::<_, anyhow::Error>(());
                };
                // A refused or failed request would leave events unpublished: the run is void.
                let (s, v) = c.call_bytes("POST", &path, body.clone()).await?;
                if s != 200 || v["failed_count"] != 0 {
                    bail!("PutEvents answered {s} {v}");
                }
                let n = v["events"].as_array().map_or(0, Vec::len);
                acked.fetch_add(n as u64, Ordering::Relaxed);
            }
        });
    }
    let brokers = a.brokers.clone();
    let watch_topic = topic.to_string();
    let (count, limit) = (a.count, Duration::from_secs(a.timeout));
    // The high watermark is polled on a blocking thread (librdkafka calls block).
    let watermark = tokio::task::spawn_blocking(move || {
        wait_watermark(&brokers, &watch_topic, count, start, limit)
    });
    while let Some(r) = senders.join_next().await {
        r??;
    }
    let published = start.elapsed();
    let reached = watermark.await??;
    let acked = acked.load(Ordering::Relaxed);
    if acked != a.count {
        bail!("{acked} of {} events acknowledged", a.count);
    }
    let (distinct, records, elapsed) = if a.read_back {
        // Only distinct ids that arrived count.
        let brokers = a.brokers.clone();
        let topic = topic.to_string();
        let (distinct, records, verified) =
            tokio::task::spawn_blocking(move || read_back(&brokers, &topic, count, start, limit))
                .await??;
        // With duplicates or gaps the high watermark overstated what had arrived.
        let exact = distinct >= count && records == count;
        (distinct, records, if exact { reached } else { verified })
    } else {
        // A second look: records re-sent by the producer would show as more than `count`.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let records = high_watermark(&a.brokers, topic).await?;
        (records.min(count), records, reached)
    };
    let m = own.server.metrics().await.unwrap_or_default();
    let metric = |k: &str| m.get(k).copied().unwrap_or(f64::NAN);
    println!(
        "    openeg: published {acked} in {:.2} s ({:.0} ev/s); {count} records in the topic after \
         {:.2} s ({records} records in it{}); attempts {}, retries {}, \
         failed {}",
        published.as_secs_f64(),
        acked as f64 / published.as_secs_f64(),
        elapsed.as_secs_f64(),
        if a.read_back {
            format!(", {distinct} distinct ids read back")
        } else {
            String::new()
        },
        metric("openeg_delivery_attempts_total"),
        metric("openeg_delivery_retries_total"),
        metric("openeg_deliveries_failed_total"),
    );
    Ok(distinct.min(count) as f64 / elapsed.as_secs_f64())
}

/// Records in partition 0 of `topic` (a busy broker may take a while to answer).
async fn high_watermark(brokers: &str, topic: &str) -> anyhow::Result<u64> {
    let (brokers, topic) = (brokers.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let (_, high) =
            watermark_consumer(&brokers)?.fetch_watermarks(&topic, 0, Duration::from_secs(120))?;
        Ok(high.max(0) as u64)
    })
    .await?
}

fn watermark_consumer(brokers: &str) -> anyhow::Result<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("openeg-bench-{}", harness::short_id(8)))
        .set("enable.auto.commit", "false")
        .create()?)
}

/// Waits until `topic`'s partition 0 holds `count` records; the time since `start` then.
fn wait_watermark(
    brokers: &str,
    topic: &str,
    count: u64,
    start: Instant,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let c = watermark_consumer(brokers)?;
    loop {
        if let Ok((_, high)) = c.fetch_watermarks(topic, 0, Duration::from_secs(5)) {
            if high >= 0 && high as u64 >= count {
                return Ok(start.elapsed());
            }
        }
        if start.elapsed() > limit {
            bail!("{topic}: fewer than {count} records within {limit:?}");
        }
        // Not more often: each look is a query on the broker, and a slow broker answers
        // them one after the other (250 ms is under 1 % of a run).
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Reads `topic` from the beginning up to its high watermark, and on until `count` distinct
/// keys were seen (or nothing came for 60 s); returns distinct keys, records read, and the
/// time since `start` when the last new key was read.
fn read_back(
    brokers: &str,
    topic: &str,
    count: u64,
    start: Instant,
    limit: Duration,
) -> anyhow::Result<(u64, u64, Duration)> {
    // The watermark is asked through another client: the reader's connection is busy with
    // its fetches.
    let (_, high) =
        watermark_consumer(brokers)?.fetch_watermarks(topic, 0, Duration::from_secs(120))?;
    let high = high.max(0) as u64;
    // Small fetches: a slow broker answers a large one only after a long pause.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("openeg-bench-{}", harness::short_id(8)))
        .set("enable.auto.commit", "false")
        .set("max.partition.fetch.bytes", "262144")
        .set("fetch.max.bytes", "262144")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
    c.assign(&tpl)?;
    let mut keys: HashSet<Vec<u8>> = HashSet::with_capacity(count as usize);
    let mut records = 0u64;
    let mut last_new = start.elapsed();
    let mut idle_since = Instant::now();
    while (keys.len() as u64) < count || records < high {
        match c.poll(Duration::from_millis(200)) {
            Some(m) => {
                let m = m?;
                records += 1;
                idle_since = Instant::now();
                if keys.insert(m.key().unwrap_or_default().to_vec()) {
                    last_new = start.elapsed();
                }
            }
            // Everything there was read and nothing more came.
            None if idle_since.elapsed() > Duration::from_secs(60) => break,
            None => {}
        }
        if start.elapsed() > limit {
            bail!("{topic}: reading back timed out");
        }
    }
    Ok((keys.len() as u64, records, last_new))
}

/// The baseline's rate (records/s).
async fn baseline_phase(
    a: &KafkaTargetArgs,
    detail: &Value,
    topic: &str,
    run: u32,
) -> anyhow::Result<f64> {
    let settings = openeg_connectors::sinks::kafka::settings(&json!({ "kafka_detail": detail }))
        .map_err(|e| anyhow::anyhow!("producer settings: {e}"))?;
    // A bare producer: the connection's brokers, acks and security, librdkafka's defaults
    // otherwise. OpenEG's 25 s message timeout (kept below its attempt timeout) would expire
    // records that wait longer than that in the local queue, as all 100k queued at once do
    // on a slow broker.
    let mut cfg = ClientConfig::new();
    for (k, v) in &settings.0 {
        if !matches!(
            *k,
            "message.timeout.ms" | "request.timeout.ms" | "topic.metadata.propagation.max.ms"
        ) {
            cfg.set(*k, v);
        }
    }
    let producer: FutureProducer = cfg.create().context("creating the producer")?;
    // The same bytes as OpenEG sends: the event as logged (compact JSON), key = id, headers.
    let source = "openeg-bench";
    let records: Vec<(String, Vec<u8>)> = events(a, run, source)
        .into_iter()
        .map(|e| {
            let id = e["id"].as_str().unwrap_or_default().to_string();
            (id, e.to_string().into_bytes())
        })
        .collect();
    let start = Instant::now();
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
    let mut ok = 0u64;
    let mut failed = 0u64;
    for (id, value) in &records {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "ce_specversion",
                value: Some("1.0"),
            })
            .insert(Header {
                key: "ce_id",
                value: Some(id.as_str()),
            })
            .insert(Header {
                key: "ce_source",
                value: Some(source),
            })
            .insert(Header {
                key: "ce_type",
                value: Some("bench"),
            });
        let mut record = FutureRecord::<str, [u8]>::to(topic)
            .payload(&value[..])
            .key(id.as_str())
            .headers(headers);
        loop {
            match producer.send_result(record) {
                Ok(f) => {
                    pending.push_back(f);
                    break;
                }
                // librdkafka's queue is full: wait for the oldest acknowledgement.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    match pending.pop_front() {
                        Some(f) => tally(f.await, &mut ok, &mut failed),
                        None => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                }
                Err((e, _)) => bail!("producing: {e}"),
            }
        }
    }
    while let Some(f) = pending.pop_front() {
        tally(f.await, &mut ok, &mut failed);
    }
    let elapsed = start.elapsed();
    // Records in the topic: more than acknowledged means the producer re-sent some.
    let in_topic = high_watermark(&a.brokers, topic).await?;
    println!(
        "    baseline: {ok} records acknowledged in {:.2} s, {failed} failed; {in_topic} in the topic",
        elapsed.as_secs_f64()
    );
    if ok != a.count {
        bail!("baseline: {ok} of {} records acknowledged", a.count);
    }
    Ok(ok as f64 / elapsed.as_secs_f64())
}

/// Counts one delivery report (an error, or a report lost with the producer, is a failure).
fn tally<E>(r: Result<OwnedDeliveryResult, E>, ok: &mut u64, failed: &mut u64) {
    match r {
        Ok(Ok(_)) => *ok += 1,
        _ => *failed += 1,
    }
}
