//! `openeg-bench mirror`: a Kafka → Kafka event-router job vs a bare rdkafka consume →
//! produce loop that commits after the delivery reports, same broker, same run.
//!
//! Per run: a source topic of `partitions` partitions is filled with `count` records of about
//! `size` bytes (before any clock starts); each side then copies all of it into a fresh topic
//! of its own, with `acks=all` (what a job writes with).
//!
//! * Baseline: the stream bench's loop (`stream::baseline`): a `StreamConsumer` in a group of
//!   its own, batches of up to `batch` records produced through a `FutureProducer`, delivery
//!   reports awaited, offsets committed; its time runs from the consumer's creation to the
//!   last report.
//! * OpenEG: a fresh `openeg serve`, a cluster and a job (`kafka2kafka`, the topic mapped to
//!   the job's own target, which exists) created through the API; its time runs from the START
//!   request until syncDetail reports every record copied (`offset` summed over the partitions
//!   = `count`, and `sync_remain_total` 0). The target topic is then checked to hold them.

use super::harness::{self, OwnServer};
use super::stream::{baseline, fill, wait_records, StreamArgs};
use super::{kafka_target, Client};
use anyhow::{bail, Context};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub async fn run(a: StreamArgs) -> anyhow::Result<()> {
    if a.count == 0 || a.partitions < 1 || !(1..=10_000).contains(&a.batch) {
        bail!("need --count > 0, --partitions ≥ 1 and --batch 1–10000");
    }
    println!(
        "mirror: {} records × {} B over {} partitions, broker {}, acks=all; baseline: rdkafka \
         consume → produce → commit after delivery reports, batches of {}",
        a.count, a.size, a.partitions, a.brokers, a.batch
    );
    let mut ratios = Vec::new();
    for run in 1..=a.runs {
        let (base, ours) = one_run(&a).await?;
        println!(
            "  run {run}: baseline {base:>8.0} rec/s   openeg job {ours:>8.0} rec/s ({:.2}x)",
            ours / base
        );
        ratios.push(ours / base);
    }
    let (m, lo, hi) = harness::summary(&ratios);
    println!("median of {} runs: ratio {m:.2}x ({lo:.2}–{hi:.2})", a.runs);
    Ok(())
}

/// (baseline, OpenEG), records per second.
async fn one_run(a: &StreamArgs) -> anyhow::Result<(f64, f64)> {
    let tag = harness::short_id(8);
    let src = format!("openeg-bench-{tag}-msrc");
    let base_dst = format!("openeg-bench-{tag}-mbase");
    let ours_dst = format!("openeg-bench-{tag}-mjob");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &a.brokers)
        .create()
        .context("creating the Kafka admin client")?;
    kafka_target::create_topics(&admin, &[&src, &base_dst, &ours_dst], a.partitions).await?;
    fill(a, &src).await?;
    let detail = json!({"instance_id": "openeg-bench", "addr": a.brokers,
        "security_protocol": "PLAINTEXT", "acks": "all"});
    let base = baseline(a, &detail, &src, &base_dst).await?;
    let ours = openeg_phase(a, &src, &ours_dst).await?;
    Ok((base, ours))
}

async fn openeg_phase(a: &StreamArgs, src: &str, dst: &str) -> anyhow::Result<f64> {
    let own = OwnServer::start(a.openeg.as_deref(), "mirror").await?;
    let outcome = async {
        let c = Client::new(&own.server.base, own.cred.clone(), 4)?;
        let p = own.cred.project_id.clone();
        let cluster_id = router_cluster(&c, &p, "KAFKA").await?;
        let ep = json!({"config_type": "CLOUD", "region": "r1", "project_id": "p1",
            "instance_id": "i1", "cluster_alias": "bench", "address": a.brokers,
            "authenticate_mode": "PLAINTEXT"});
        let job = json!({
            "cluster_id": cluster_id, "name": format!("bench-{}", harness::short_id(8)),
            "scene_type": "DISASTER_BACKUP",
            "source_config": {"source_kafka": ep}, "sink_config": {"sink_kafka": ep},
            "advance_config": {"kafka2kafka": {"topics": src,
                "topic_mappings": [{"source_topic": src, "sink_topic": dst}],
                "rename_topic": false, "is_add_header": false, "is_sync_progress": false,
                "replica_cnt": 1, "seek_to": "earliest", "compress_alg": "none"}},
        });
        let v = c
            .post_ok(
                &format!("/v1/{p}/eventrouter/jobs"),
                &job,
                "creating the job",
            )
            .await?;
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
        let limit = Duration::from_secs(a.timeout);
        let elapsed = loop {
            let (s, v) = c.call("POST", &detail, Some(&page)).await?;
            if s != 200 {
                bail!("the job's syncDetail: {s} {v}");
            }
            if copied(&v) >= a.count && v["metadata"]["sync_remain_total"] == json!(0) {
                break start.elapsed();
            }
            if start.elapsed() > limit {
                bail!(
                    "{} of {} records copied within {limit:?}: {v}",
                    copied(&v),
                    a.count
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        wait_records(a, dst, Instant::now()).await?;
        println!(
            "    openeg job: {} records in {:.2} s",
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

/// Creates an event-router cluster of `family` (KAFKA, DCS) in project `p`; its id.
pub(crate) async fn router_cluster(c: &Client, p: &str, family: &str) -> anyhow::Result<String> {
    let cluster = json!({"name": format!("bench-{}", harness::short_id(8)),
        "source_type": family, "sink_type": family, "vpc_id": "vpc-1",
        "subnet_id": "subnet-1", "zone_names": "az1", "flavor": "small",
        "bss_param": {"charging_mode": "postPaid"}, "public_access_enabled": false});
    let v = c
        .post_ok(
            &format!("/v1/{p}/eventrouter/clusters"),
            &cluster,
            "creating the cluster",
        )
        .await?;
    Ok(v["cluster_id"].as_str().unwrap_or_default().to_string())
}

/// Records copied as syncDetail tells: the next offsets summed over every partition.
fn copied(v: &Value) -> u64 {
    v["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .flat_map(|i| i["offset_details"].as_array().cloned().unwrap_or_default())
                .map(|d| d["offset"]["offset"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}
