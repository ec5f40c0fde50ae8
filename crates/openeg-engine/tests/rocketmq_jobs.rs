//! Event-router jobs, RocketMQ → RocketMQ, between two real rocketmq-rust clusters with
//! different cluster and broker names (`OPENEG_TEST_ROCKETMQ_NAMESRV` and
//! `OPENEG_TEST_ROCKETMQ_NAMESRV2`; `scripts/brokers.sh` starts both; skipped without them
//! unless `OPENEG_REQUIRE_ROCKETMQ=1`):
//! * two topics with tags, keys and a user property are copied queue for queue (each target
//!   queue holds its source queue's messages in the same order), the target topics created by
//!   the job; a STOP, more messages, a START: the job continues from its committed offsets
//!   with nothing copied twice or skipped; syncDetail's figures reach 0 remaining;
//! * `seek_to: last` copies only what arrives after the start; a timestamp copies what was
//!   stored from then on.

mod common;

use common::unique;
use openeg_connectors::rocketmq::{self as rmq, ClientSettings, Consumed, Outgoing};
use openeg_engine::{Engine, EngineConfig, ResourceKind, RunState, TaskKind};
use openeg_store::{Document, Kind, MetaStore, SqliteStore};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const P: &str = "p-rmq-jobs";

fn namesrvs() -> Option<(String, String)> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    match (
        var("OPENEG_TEST_ROCKETMQ_NAMESRV"),
        var("OPENEG_TEST_ROCKETMQ_NAMESRV2"),
    ) {
        (Some(a), Some(b)) => Some((a, b)),
        _ => {
            assert!(
                std::env::var("OPENEG_REQUIRE_ROCKETMQ").as_deref() != Ok("1"),
                "OPENEG_REQUIRE_ROCKETMQ=1 but OPENEG_TEST_ROCKETMQ_NAMESRV or \
                 OPENEG_TEST_ROCKETMQ_NAMESRV2 is not set"
            );
            eprintln!("skipped: OPENEG_TEST_ROCKETMQ_NAMESRV(2) not set");
            None
        }
    }
}

fn client(namesrv: &str) -> ClientSettings {
    ClientSettings::new(namesrv, false, None, "namesrv").unwrap()
}

fn job_doc(id: &str, source: &str, sink: &str, advance: Value) -> Document {
    let ep = |a: &str| {
        json!({"config_type": "CLOUD", "region": "r1", "project_id": "p1",
               "cluster_alias": "c", "address": a, "ssl_open": "false", "acl_open": false})
    };
    Document {
        project_id: P.into(),
        kind: Kind::RouterJob,
        id: id.into(),
        name: format!("rmq-dr-{id}"),
        parent_id: Some("cl".into()),
        created_at: 1_700_000_000_000,
        updated_at: 1_700_000_000_000,
        body: json!({
            "job_id": id, "name": format!("rmq-dr-{id}"), "status": "WAIT_START",
            "_desired": "RUNNING", "source_type": "ROCKETMQ", "sink_type": "ROCKETMQ",
            "source_config": {"source_rocketmq": ep(source)},
            "sink_config": {"sink_rocketmq": ep(sink)},
            "advance_config": {"rocketmq2rocketmq": advance},
        }),
        refs: Vec::new(),
    }
}

fn message(prefix: &str, i: usize) -> Outgoing {
    Outgoing {
        body: json!({"p": prefix, "i": i}).to_string().into_bytes(),
        keys: Some(format!("{prefix}-{i}")),
        tag: Some(["TagA", "TagB", "TagC"][i % 3].to_string()),
        properties: vec![
            ("seq".to_string(), i.to_string()),
            ("origin".to_string(), prefix.to_string()),
        ],
    }
}

async fn produce(ns: &str, topic: &str, prefix: &str, range: std::ops::Range<usize>) {
    let messages = range.map(|i| message(prefix, i)).collect();
    rmq::produce(&client(ns), topic, messages).await.unwrap();
}

/// Everything a topic holds, read in a group of its own: per queue id, in offset order.
async fn read_all(ns: &str, topic: &str, count: usize) -> BTreeMap<i32, Vec<Consumed>> {
    let got = rmq::consume(
        &client(ns),
        topic,
        &format!("check-{}", unique()),
        count,
        Duration::from_secs(120),
    )
    .await
    .unwrap();
    let mut out: BTreeMap<i32, Vec<Consumed>> = BTreeMap::new();
    for m in got {
        out.entry(m.queue_id).or_default().push(m);
    }
    for q in out.values_mut() {
        q.sort_by_key(|m| m.queue_offset);
        q.dedup_by_key(|m| m.queue_offset);
    }
    out
}

/// What a copy must keep of a message.
fn kept(
    m: &Consumed,
) -> (
    Option<String>,
    Option<String>,
    Vec<u8>,
    String,
    Option<String>,
) {
    (
        m.keys.clone(),
        m.tags.clone(),
        m.body.clone(),
        m.msg_id.clone(),
        m.properties.get("seq").cloned(),
    )
}

async fn engine(store: &Arc<SqliteStore>, dir: &std::path::Path) -> Arc<Engine> {
    let cfg = EngineConfig {
        node_name: "node-rmq".into(),
        ..Default::default()
    };
    common::start_engine_fast(store, dir, cfg).await
}

/// Waits until job `id` runs and has copied every queue up to its end.
async fn caught_up(e: &Engine, id: &str, want_copied: u64) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let st = e.runtime_status(TaskKind::RouterJob, P, id);
        let f = e.metrics.job_figures(id);
        if let (Some(st), Some(f)) = (&st, &f) {
            let queues = f.snapshot();
            if st.state == RunState::Running
                && f.copied.get() >= want_copied
                && !queues.is_empty()
                && queues.values().all(|q| q.next >= q.high)
            {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "job {id} did not catch up: {st:?} copied {:?} {:?}",
            f.as_ref().map(|f| f.copied.get()),
            f.as_ref().map(|f| f.snapshot())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn set_desired(store: &Arc<SqliteStore>, e: &Engine, id: &str, desired: &str) {
    let mut job = store.get(P, Kind::RouterJob, id).await.unwrap().unwrap();
    job.body["_desired"] = json!(desired);
    store.update(&job).await.unwrap();
    e.resource_changed(ResourceKind::RouterJob, P, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rocketmq_job_copies_queue_for_queue_and_continues_after_stop() {
    let Some((ns1, ns2)) = namesrvs() else {
        return;
    };
    let u = unique();
    let (t1, t2) = (format!("dr-a-{u}"), format!("dr-b-{u}"));
    const N: usize = 600;
    produce(&ns1, &t1, "a", 0..N).await;
    produce(&ns1, &t2, "b", 0..N / 2).await;

    let dir = std::env::temp_dir().join(format!("openeg-rmq-job-{u}"));
    let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    let id = "job-q";
    store
        .insert(
            &job_doc(
                id,
                &ns1,
                &ns2,
                json!({"topics": format!("{t1},{t2}"), "topic_regex": "", "seek_to": "first",
                       "compress_alg": "none", "is_sync_progress": false}),
            ),
            &[],
        )
        .await
        .unwrap();
    let e = engine(&store, &dir).await;
    caught_up(&e, id, (N + N / 2) as u64).await;

    // STOP, more messages, START: the job goes on from its committed offsets.
    set_desired(&store, &e, id, "STOPPED").await;
    produce(&ns1, &t1, "a", N..N + 200).await;
    set_desired(&store, &e, id, "RUNNING").await;
    caught_up(&e, id, 200).await;
    let f = e.metrics.job_figures(id).unwrap();
    let queues = f.snapshot();
    let mut named: Vec<&str> = queues.keys().map(|(t, _)| t.as_str()).collect();
    named.dedup();
    assert_eq!(
        named,
        [format!("{t1}@broker-a"), format!("{t2}@broker-a")],
        "{queues:?}"
    );

    for (topic, total) in [(&t1, N + 200), (&t2, N / 2)] {
        let src = read_all(&ns1, topic, total).await;
        let dst = read_all(&ns2, topic, total).await;
        assert_eq!(src.values().map(Vec::len).sum::<usize>(), total);
        assert_eq!(
            src.keys().collect::<Vec<_>>(),
            dst.keys().collect::<Vec<_>>(),
            "{topic}: the target has other queues"
        );
        for (q, msgs) in &src {
            let copies = &dst[q];
            assert!(copies.iter().all(|m| m.broker == "broker-b"));
            let a: Vec<_> = msgs.iter().map(kept).collect();
            let b: Vec<_> = copies.iter().map(kept).collect();
            assert_eq!(a.len(), b.len(), "{topic} queue {q}: message counts differ");
            if let Some(i) = (0..a.len()).find(|&i| a[i] != b[i]) {
                panic!(
                    "{topic} queue {q}: copy {i} differs from the source:\n{:?}\n{:?}\n{:?}\n{:?}",
                    a[i], b[i], msgs[i].properties, copies[i].properties
                );
            }
            assert!(copies
                .iter()
                .all(|m| m.properties.get("origin").map(String::as_str) == Some(&topic[3..4])));
        }
    }
    e.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rocketmq_job_seek_to_last_and_timestamp() {
    let Some((ns1, ns2)) = namesrvs() else {
        return;
    };
    let u = unique();
    let (t_last, t_time) = (format!("dr-last-{u}"), format!("dr-time-{u}"));
    produce(&ns1, &t_last, "old", 0..20).await;
    produce(&ns1, &t_time, "old", 0..20).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let from = chrono::Utc::now().timestamp_millis();
    tokio::time::sleep(Duration::from_millis(500)).await;
    produce(&ns1, &t_time, "new", 0..30).await;

    let dir = std::env::temp_dir().join(format!("openeg-rmq-seek-{u}"));
    let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    for (id, topic, seek) in [
        ("job-last", &t_last, json!("last")),
        ("job-time", &t_time, json!(from.to_string())),
    ] {
        store
            .insert(
                &job_doc(id, &ns1, &ns2, json!({"topics": topic, "seek_to": seek})),
                &[],
            )
            .await
            .unwrap();
    }
    let e = engine(&store, &dir).await;
    caught_up(&e, "job-time", 30).await;
    caught_up(&e, "job-last", 0).await;
    produce(&ns1, &t_last, "new", 0..25).await;
    caught_up(&e, "job-last", 25).await;
    for (topic, n) in [(&t_last, 25), (&t_time, 30)] {
        let dst = read_all(&ns2, topic, n).await;
        let keys: Vec<String> = dst
            .values()
            .flatten()
            .filter_map(|m| m.keys.clone())
            .collect();
        assert_eq!(keys.len(), n, "{topic}: {keys:?}");
        assert!(
            keys.iter().all(|k| k.starts_with("new-")),
            "{topic}: {keys:?}"
        );
    }
    e.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
