//! `openeg-bench rabbitmq-source`: draining a RabbitMQ queue into a channel through a RABBITMQ
//! event source vs a bare lapin consumer.
//!
//! Per run: `count` persistent messages of `size` bytes (JSON objects with a `message_id`)
//! are published with confirms to a fresh durable queue. Then a fresh `openeg serve` of its
//! own gets a channel and a RABBITMQ source consuming that queue. OpenEG's time runs from the
//! CreateEventSource request (connecting included; the time to `RUNNING` is shown too) until
//! `openeg_events_ingested_total` on `GET /metrics` reaches `count`: the server counts events
//! there only once the channel log's append returned, i.e. after the fsync, and the server is
//! the bench's own, so the counter is this queue's events alone. Afterwards the source is
//! deleted (its connection closes, returning anything unacknowledged to the queue) and the
//! queue must be empty: every message was acknowledged. The channel's traced events (one
//! trace row per routed event) are then awaited as a check, untimed.
//!
//! Baseline: the same number of messages in another fresh queue, drained by a lapin consumer
//! with the same prefetch that acknowledges every message as it arrives (no work, no fsync);
//! its time runs from connecting until the last ack was sent, and its queue must be empty
//! after its channel closed.

use super::harness::{self, OwnServer};
use super::Client;
use anyhow::{bail, Context};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct RabbitmqSourceArgs {
    /// The `openeg` binary (default: the one beside this executable).
    #[arg(long)]
    openeg: Option<PathBuf>,
    /// The broker (its host, port, user and password are given to the source too).
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    /// Messages in the queue.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Bytes per message body.
    #[arg(long, default_value_t = 500)]
    size: usize,
    /// The baseline consumer's prefetch (OpenEG's source uses its own, `PREFETCH` in
    /// `openeg-connectors/src/sources/rabbitmq.rs`: 1000).
    #[arg(long, default_value_t = openeg_connectors::sources::rabbitmq::PREFETCH)]
    prefetch: u16,
    /// Repetitions (each with a fresh server and fresh queues).
    #[arg(long, default_value_t = 1)]
    runs: u32,
    /// Seconds allowed per phase.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Keep the server's temporary directory.
    #[arg(long)]
    keep: bool,
}

pub async fn run(a: RabbitmqSourceArgs) -> anyhow::Result<()> {
    if a.count == 0 || a.prefetch == 0 {
        bail!("--count and --prefetch must be positive");
    }
    let ours_prefetch = openeg_connectors::sources::rabbitmq::PREFETCH;
    println!(
        "rabbitmq-source: {} messages × {} B already queued (durable, persistent); prefetch: \
         source {ours_prefetch}, baseline {}; OpenEG: CreateEventSource → {} events durable in the \
         channel (openeg_events_ingested_total); baseline: lapin consumer acking each message",
        a.count, a.size, a.prefetch, a.count
    );
    let (mut ours, mut theirs, mut ratios, mut from_running) = (vec![], vec![], vec![], vec![]);
    for i in 1..=a.runs {
        let (o, running) = openeg_phase(&a).await?;
        let b = baseline_phase(&a).await?;
        println!(
            "  run {i}: openeg {o:>8.0} msg/s ({running:.0} msg/s from RUNNING)   baseline {b:>8.0} \
             msg/s   ratio {:.2}x",
            o / b
        );
        ours.push(o);
        theirs.push(b);
        ratios.push(o / b);
        from_running.push(running / b);
    }
    let (om, olo, ohi) = harness::summary(&ours);
    let (bm, blo, bhi) = harness::summary(&theirs);
    let (rm, rlo, rhi) = harness::summary(&ratios);
    let (fm, _, _) = harness::summary(&from_running);
    println!(
        "median of {} runs: openeg {om:.0} msg/s ({olo:.0}–{ohi:.0}), baseline {bm:.0} msg/s \
         ({blo:.0}–{bhi:.0}), ratio {rm:.2}x ({rlo:.2}–{rhi:.2}); from RUNNING {fm:.2}x",
        a.runs
    );
    Ok(())
}

/// A fresh durable queue holding `count` persistent messages (publisher confirms).
async fn fill(a: &RabbitmqSourceArgs) -> anyhow::Result<String> {
    let queue = format!("openeg-bench-{}", harness::short_id(12));
    let conn = Connection::connect(&a.amqp_url, ConnectionProperties::default())
        .await
        .context("connecting to RabbitMQ")?;
    let ch = conn.create_channel().await?;
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let mut confirms = std::collections::VecDeque::new();
    for i in 0..a.count {
        let mut body = json!({"n": i, "pad": ""}).to_string();
        let pad = a.size.saturating_sub(body.len());
        body = json!({"n": i, "pad": "x".repeat(pad)}).to_string();
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(format!("m{i}").into());
        confirms.push_back(
            ch.basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                props,
            )
            .await?,
        );
        // A bounded window of unconfirmed messages.
        while confirms.len() > 2000 {
            if let Some(c) = confirms.pop_front() {
                if !c.await?.is_ack() {
                    bail!("RabbitMQ nacked a message");
                }
            }
        }
    }
    for c in confirms {
        if !c.await?.is_ack() {
            bail!("RabbitMQ nacked a message");
        }
    }
    let _ = conn.close(200, "filled".into()).await;
    Ok(queue)
}

/// Messages ready in `queue` (not counting ones delivered and unacknowledged).
async fn ready(url: &str, queue: &str) -> anyhow::Result<u32> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    let q = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let _ = conn.close(200, "done".into()).await;
    Ok(q.message_count())
}

async fn delete_queue(url: &str, queue: &str) -> anyhow::Result<()> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.queue_delete(queue.into(), QueueDeleteOptions::default())
        .await?;
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

/// The source's `instance_id`, user and password, from the AMQP URL.
fn broker_detail(url: &str) -> anyhow::Result<(String, String, String, String)> {
    let u: lapin::uri::AMQPUri = url
        .parse()
        .map_err(|e| anyhow::anyhow!("--amqp-url: {e}"))?;
    Ok((
        format!("amqp://{}:{}", u.authority.host, u.authority.port),
        u.vhost,
        u.authority.userinfo.username,
        u.authority.userinfo.password,
    ))
}

/// OpenEG's rate from CreateEventSource and from `RUNNING` (messages/s).
async fn openeg_phase(a: &RabbitmqSourceArgs) -> anyhow::Result<(f64, f64)> {
    let queue = fill(a).await?;
    let own = OwnServer::start(a.openeg.as_deref(), "rabbitmq-source").await?;
    let outcome = openeg_drain(a, &own, &queue).await;
    if outcome.is_err() {
        eprintln!("server log: {}", own.server.log.display());
    }
    own.finish(a.keep || outcome.is_err()).await?;
    delete_queue(&a.amqp_url, &queue).await?;
    outcome
}

async fn openeg_drain(
    a: &RabbitmqSourceArgs,
    own: &OwnServer,
    queue: &str,
) -> anyhow::Result<(f64, f64)> {
    let c = Client::with_timeout(
        &own.server.base,
        own.cred.clone(),
        2,
        Some(Duration::from_secs(30)),
    )?;
    let p = own.cred.project_id.clone();
    let (s, ch) = c
        .call(
            "POST",
            &format!("/v1/{p}/channels"),
            Some(&json!({"name": format!("bench-rabbitmq-{}", harness::short_id(6))})),
        )
        .await?;
    if s != 200 {
        bail!("creating a channel: {s} {ch}");
    }
    let channel = ch["id"].as_str().unwrap_or_default().to_string();
    let (instance, vhost, user, password) = broker_detail(&a.amqp_url)?;
    let body = json!({"name": format!("bench-rabbitmq-{}", harness::short_id(6)),
        "channel_id": channel, "type": "RABBITMQ",
        "detail": {"instance_id": instance, "vhost_name": vhost, "queue_name": queue,
            "user_name": user, "password": password}});
    let limit = Duration::from_secs(a.timeout);
    let start = Instant::now();
    let (s, src) = c
        .call("POST", &format!("/v1/{p}/sources"), Some(&body))
        .await?;
    if s != 200 {
        bail!("creating the RABBITMQ source: {s} {src}");
    }
    let source_id = src["id"].as_str().unwrap_or_default().to_string();
    let mut running: Option<Duration> = (src["status"] == "RUNNING").then(|| start.elapsed());
    let done = loop {
        if running.is_none() {
            let (_, v) = c
                .call("GET", &format!("/v1/{p}/sources/{source_id}"), None)
                .await?;
            if v["status"] == "RUNNING" {
                running = Some(start.elapsed());
            }
        }
        let ingested = own
            .server
            .metrics()
            .await?
            .get("openeg_events_ingested_total")
            .copied()
            .unwrap_or(0.0) as u64;
        if ingested >= a.count {
            break start.elapsed();
        }
        if start.elapsed() > limit {
            bail!(
                "{ingested} of {} messages ingested within {limit:?}",
                a.count
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let running = running.unwrap_or(done);

    // Untimed checks: everything acknowledged, everything in the channel's log.
    let (s, v) = c
        .call("DELETE", &format!("/v1/{p}/sources/{source_id}"), None)
        .await?;
    if !(200..300).contains(&s) {
        bail!("deleting the source: {s} {v}");
    }
    let mut left = ready(&a.amqp_url, queue).await?;
    let settle = Instant::now();
    while left > 0 && settle.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        left = ready(&a.amqp_url, queue).await?;
    }
    let traced = traced_total(&c, &p, &channel, a.count, limit).await?;
    let m = own.server.metrics().await?;
    let ingested = m
        .get("openeg_events_ingested_total")
        .copied()
        .unwrap_or(0.0);
    println!(
        "    openeg: RUNNING after {:.2} s, {} events durable after {:.2} s; then {ingested} \
         ingested in all, {left} messages left in the queue, {traced} traced events",
        running.as_secs_f64(),
        a.count,
        done.as_secs_f64()
    );
    if left > 0 {
        bail!("{left} messages were not acknowledged");
    }
    let n = a.count as f64;
    Ok((n / done.as_secs_f64(), n / (done - running).as_secs_f64()))
}

/// The channel's traced events, once they reach `want` (or what there is after `limit`).
async fn traced_total(
    c: &Client,
    p: &str,
    channel: &str,
    want: u64,
    limit: Duration,
) -> anyhow::Result<u64> {
    let t0 = Instant::now();
    let since = chrono::Utc::now().timestamp_millis() - 3_600_000;
    loop {
        let now = chrono::Utc::now().timestamp_millis() + 60_000;
        let path = format!(
            "/v1/{p}/traced-events?channel_id={channel}&start_time={since}&end_time={now}&limit=1"
        );
        let (s, v) = c.call_query("GET", &path).await?;
        let total = v["total"].as_u64().unwrap_or(0);
        if (s == 200 && total >= want) || t0.elapsed() > limit {
            return Ok(total);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The baseline's rate (messages/s).
async fn baseline_phase(a: &RabbitmqSourceArgs) -> anyhow::Result<f64> {
    use futures_core::Stream;
    let queue = fill(a).await?;
    let start = Instant::now();
    let conn = Connection::connect(&a.amqp_url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.basic_qos(a.prefetch, BasicQosOptions::default()).await?;
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "openeg-bench-baseline".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut acked = 0u64;
    while acked < a.count {
        let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut consumer).poll_next(cx));
        let d = match tokio::time::timeout(Duration::from_secs(a.timeout), next).await {
            Ok(Some(d)) => d?,
            Ok(None) => bail!("the consumer was cancelled after {acked} messages"),
            Err(_) => bail!("baseline: {acked} of {} messages", a.count),
        };
        d.ack(BasicAckOptions::default()).await?;
        acked += 1;
    }
    let elapsed = start.elapsed();
    let _ = ch.close(200, "done".into()).await;
    let _ = conn.close(200, "done".into()).await;
    let left = ready(&a.amqp_url, &queue).await?;
    delete_queue(&a.amqp_url, &queue).await?;
    println!(
        "    baseline: {acked} messages acknowledged in {:.2} s, {left} left in the queue",
        elapsed.as_secs_f64()
    );
    if left > 0 {
        bail!("baseline: {left} messages were not acknowledged");
    }
    Ok(acked as f64 / elapsed.as_secs_f64())
}
