//! Event streams against a real Kafka-API broker (`OPENEG_TEST_KAFKA_BROKERS`, tansu in CI):
//! Kafka → Kafka, 20,000 records (`OPENEG_STREAM_TEST_RECORDS`: 100,000 by hand) with a filter
//! and a VARIABLE transform over 3 partitions, across an engine restart; Kafka → FunctionGraph (a local fake) with batch windows, a failing function and
//! PAUSE; RocketMQ → Kafka with 10,000 messages (`OPENEG_TEST_ROCKETMQ_NAMESRV` too);
//! Kafka → OBS into an S3 API server (`OPENEG_TEST_S3_ENDPOINT`, moto in CI), replayed.

mod common;

use common::{create_topic, http_receiver, kafka_brokers, service_env, unique, KEY};
use openeg_engine::{Engine, EngineConfig, ResourceKind, RunState, RuntimeStatus, TaskKind};
use openeg_store::secrets::SecretBox;
use openeg_store::{Document, Kind, MetaStore, SqliteStore};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const P: &str = "p-streams";

/// The batches a fake function took: when, and the `data.n` of each event.
type Batches = Vec<(Instant, Vec<u64>)>;

/// Produces `values` to `topic`, record `i` to partition `i % partitions` with key `k-{i}`.
async fn produce(brokers: &str, topic: &str, partitions: i32, values: &[(usize, Value)]) {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let sends = values.iter().map(|(i, v)| {
        let body = v.to_string();
        let key = format!("k-{i}");
        let p = &p;
        async move {
            p.send(
                FutureRecord::to(topic)
                    .payload(&body)
                    .key(&key)
                    .partition((*i as i32) % partitions),
                Duration::from_secs(30),
            )
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
        }
    });
    for r in futures_util::future::join_all(sends).await {
        r.unwrap();
    }
}

/// Every record of `topic` (all partitions, from the beginning) until `want` arrived or
/// `limit` passed: (key, value).
fn consume_all(
    brokers: &str,
    topic: &str,
    partitions: i32,
    want: usize,
    limit: Duration,
) -> Vec<(Option<String>, Value)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("openeg-test-{}", unique()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < deadline {
        let Some(m) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.unwrap();
        out.push((
            m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            serde_json::from_slice(m.payload().unwrap_or_default()).unwrap(),
        ));
    }
    out
}

/// How many records `topic` holds: the sum of its partitions' high watermarks.
fn records_in(brokers: &str, topic: &str, partitions: i32) -> usize {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    (0..partitions)
        .map(|p| {
            let (_, high) = c
                .fetch_watermarks(topic, p, Duration::from_secs(30))
                .unwrap();
            high as usize
        })
        .sum()
}

fn doc(kind: Kind, id: &str, body: Value) -> Document {
    Document {
        project_id: P.into(),
        kind,
        id: id.into(),
        name: id.into(),
        parent_id: None,
        created_at: 1_700_000_000_000,
        updated_at: 1_700_000_000_000,
        body,
        refs: Vec::new(),
    }
}

async fn engine(store: &Arc<SqliteStore>, dir: &std::path::Path, fg: Option<&str>) -> Arc<Engine> {
    engine_with(
        store,
        dir,
        EngineConfig {
            functiongraph_endpoint: fg.map(str::to_string),
            ..Default::default()
        },
    )
    .await
}

async fn engine_with(
    store: &Arc<SqliteStore>,
    dir: &std::path::Path,
    cfg: EngineConfig,
) -> Arc<Engine> {
    let cfg = EngineConfig {
        node_name: "node-s".into(),
        ..cfg
    };
    common::start_engine_fast(store, dir, cfg).await
}

/// The KAFKA connection `conn` to `brokers`.
async fn kafka_connection(store: &SqliteStore, brokers: &str) {
    let body = json!({"id": "conn", "name": "conn", "type": "KAFKA",
                      "kafka_detail": {"addr": brokers}});
    store
        .insert(&doc(Kind::Connection, "conn", body), &[])
        .await
        .unwrap();
}

/// A fake FunctionGraph: answers 503 while `down` (recording the `data.n` it refused), else
/// 200, recording every batch it took.
struct FakeFunction {
    endpoint: String,
    down: Arc<Mutex<bool>>,
    batches: Arc<Mutex<Batches>>,
    refused: Arc<Mutex<Vec<u64>>>,
}

async fn fake_function(down: bool) -> FakeFunction {
    let down = Arc::new(Mutex::new(down));
    let batches: Arc<Mutex<Batches>> = Arc::default();
    let refused: Arc<Mutex<Vec<u64>>> = Arc::default();
    let url = {
        let (down, batches, refused) = (down.clone(), batches.clone(), refused.clone());
        http_receiver(move |body| {
            let ns: Vec<u64> = body
                .as_array()
                .map(|a| a.iter().filter_map(|e| e["data"]["n"].as_u64()).collect())
                .unwrap_or_default();
            if *down.lock().unwrap() {
                refused.lock().unwrap().extend(ns);
                return (503, Duration::ZERO);
            }
            batches.lock().unwrap().push((Instant::now(), ns));
            (200, Duration::ZERO)
        })
        .await
    };
    FakeFunction {
        endpoint: url.trim_end_matches("/hook").to_string(),
        down,
        batches,
        refused,
    }
}

fn status(engine: &Engine, id: &str) -> Option<RuntimeStatus> {
    engine.runtime_status(TaskKind::EventStream, P, id)
}

async fn wait_status(
    engine: &Engine,
    id: &str,
    limit: Duration,
    cond: impl Fn(&RuntimeStatus) -> bool,
) -> RuntimeStatus {
    let deadline = Instant::now() + limit;
    loop {
        let st = status(engine, id);
        if let Some(st) = st.as_ref().filter(|s| cond(s)) {
            return st.clone();
        }
        assert!(Instant::now() < deadline, "status not reached: {st:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn kafka_source(brokers: &str, topic: &str, group: &str) -> Value {
    json!({"name": "HC.Kafka", "source_kafka": {"addr": brokers, "topic": topic,
        "group": group, "seek_to": "earliest"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_to_kafka_filters_transforms_and_resumes_after_a_restart() {
    let Some(brokers) = kafka_brokers() else {
        return;
    };
    let u = unique();
    let (src, dst) = (format!("st-src-{u}"), format!("st-dst-{u}"));
    create_topic(&brokers, &src, 3).await;
    create_topic(&brokers, &dst, 3).await;
    let dir = std::env::temp_dir().join(format!("openeg-streams-{u}"));
    let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    kafka_connection(&store, &brokers).await;
    let stream = json!({
        "id": "s1", "name": "orders", "_desired": "RUNNING",
        "source": kafka_source(&brokers, &src, &format!("g-{u}")),
        "sink": {"name": "HC.Kafka", "sink_kafka": {"topic": dst, "connectionId": "conn",
                 "keyTransform": [{"type": "VARIABLE", "value": "{\"n\":\"$.data.n\"}",
                                   "template": "key-${n}"}]}},
        "rule_config": {
            "filter": {"data": {"keep": [{"op": "IsTrue"}]}},
            "transform": {"type": "VARIABLE", "value": "{\"n\":\"$.data.n\",\"s\":\"$.subject\"}",
                          "template": "{\"n\":${n},\"topic\":\"${s}\"}"}},
        "option": {"thread_num": 2, "batch_window": {"count": 100, "interval": 1}},
    });
    store
        .insert(&doc(Kind::EventStream, "s1", stream), &[])
        .await
        .unwrap();
    let value = |i: usize| (i, json!({"n": i, "keep": !i.is_multiple_of(3)}));
    // 100,000 by hand (`OPENEG_STREAM_TEST_RECORDS=100000`); CI's shared test broker keeps
    // every record in one SQLite file, and at that size the suites after this one time out.
    let total: usize = std::env::var("OPENEG_STREAM_TEST_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
        .max(10);
    let first = total * 3 / 5;
    let before: Vec<_> = (0..first).map(value).collect();
    produce(&brokers, &src, 3, &before).await;

    let e = engine(&store, &dir, None).await;
    wait_status(&e, "s1", Duration::from_secs(30), |s| {
        s.state == RunState::Running
    })
    .await;
    let kept = |range: std::ops::Range<usize>| range.filter(|i| !i.is_multiple_of(3)).count();
    let got = consume_all(&brokers, &dst, 3, kept(0..first), Duration::from_secs(240));
    assert_eq!(got.len(), kept(0..first));
    for (key, v) in &got {
        let n = v["n"].as_u64().unwrap();
        assert_eq!(key.as_deref(), Some(format!("key-{n}").as_str()));
        assert_eq!(v["topic"], json!(src));
    }
    e.shutdown().await;
    drop(e);

    // Records produced while no engine runs are read from the committed position.
    let after: Vec<_> = (first..total).map(value).collect();
    produce(&brokers, &src, 3, &after).await;
    let e = engine(&store, &dir.join("second"), None).await;
    let want = kept(0..total);
    // The restarted stream writes at least the records produced meanwhile; then the sink
    // topic is read once, as many records as it holds (duplicates included).
    let figures = loop {
        if let Some(f) = e.metrics.stream_figures("s1") {
            break f;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let deadline = Instant::now() + Duration::from_secs(240);
    while figures.written.get() < kept(first..total) as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let held = records_in(&brokers, &dst, 3);
    let got = consume_all(&brokers, &dst, 3, held, Duration::from_secs(240));
    let distinct: HashSet<u64> = got.iter().map(|(_, v)| v["n"].as_u64().unwrap()).collect();
    let expected: HashSet<u64> = (0..total as u64).filter(|i| !i.is_multiple_of(3)).collect();
    let mut missing: Vec<u64> = expected.difference(&distinct).copied().collect();
    missing.sort_unstable();
    assert!(
        missing.is_empty(),
        "{} of {} missing (first {:?}, last {:?}); the restarted stream read {}, wrote {}",
        missing.len(),
        expected.len(),
        missing.first(),
        missing.last(),
        figures.read.get(),
        figures.written.get(),
    );
    assert_eq!(distinct, expected);
    // A clean stop commits what the sink took: at most the batches in flight come again.
    assert!(
        got.len() - want <= 3 * 100,
        "{} duplicates after a restart",
        got.len() - want
    );
    e.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_to_functiongraph_batches_retries_and_pauses() {
    let Some(brokers) = kafka_brokers() else {
        return;
    };
    let u = unique();
    let src = format!("st-fg-{u}");
    create_topic(&brokers, &src, 3).await;
    let FakeFunction {
        endpoint,
        down,
        batches,
        ..
    } = fake_function(false).await;
    let dir = std::env::temp_dir().join(format!("openeg-streams-{u}"));
    let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    let stream = json!({
        "id": "s2", "name": "to-fn", "_desired": "RUNNING",
        "source": kafka_source(&brokers, &src, &format!("g-{u}")),
        "sink": {"name": "HC.FunctionGraph", "sink_fg": {"urn": "urn:fss:x:p:function:default:f:latest",
                 "invoke_type": "SYNC"}},
        "rule_config": {},
        "option": {"thread_num": 3, "batch_window": {"count": 500, "interval": 1}},
    });
    store
        .insert(&doc(Kind::EventStream, "s2", stream), &[])
        .await
        .unwrap();
    const N: usize = 1_234;
    let values: Vec<_> = (0..N).map(|i| (i, json!({"n": i}))).collect();
    produce(&brokers, &src, 3, &values).await;
    let e = engine(&store, &dir, Some(&endpoint)).await;
    wait_status(&e, "s2", Duration::from_secs(30), |s| {
        s.state == RunState::Running
    })
    .await;
    let seen = |b: &Mutex<Batches>| -> HashMap<u64, usize> {
        let mut m = HashMap::new();
        for (_, ns) in b.lock().unwrap().iter() {
            for n in ns {
                *m.entry(*n).or_default() += 1;
            }
        }
        m
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen(&batches).len() < N && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen(&batches).len(), N);
    let calls = batches.lock().unwrap().len();
    // ⌈N/500⌉ + one partial batch per partition at most.
    assert!(
        calls <= N.div_ceil(500) + 3,
        "{calls} invocations for {N} records"
    );

    // A partial batch leaves after the interval (1 s), not before and not much after: within
    // interval + 200 ms of the source reading its first record, which is at most the
    // client's fetch wait (100 ms) after the broker acknowledged it. The best of three is
    // held to that bound (a loaded machine can stall any one of them); none may be early.
    let mut took = Vec::new();
    for k in 0..3 {
        batches.lock().unwrap().clear();
        let n = N + 10_000 + k;
        // Before the send: the broker cannot have the record earlier (the lower bound);
        // after the acknowledgement: it has it (the upper bound).
        let sent = Instant::now();
        produce(&brokers, &src, 3, &[(n, json!({"n": n}))]).await;
        let acked = Instant::now();
        while seen(&batches).is_empty() && acked.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let at = batches.lock().unwrap().first().map(|(t, _)| *t);
        let at = at.expect("the partial batch was not flushed");
        assert!(
            at - sent >= Duration::from_millis(950),
            "a partial batch left before the interval: {:?}",
            at - sent
        );
        took.push(at.saturating_duration_since(acked));
    }
    let best = took.iter().min().copied().unwrap_or_default();
    assert!(
        best <= Duration::from_millis(1_000 + 200 + 100 + 50),
        "partial batches flushed {took:?} after the broker had their record"
    );

    // The function fails: the stream shows ERROR with the failure, and nothing passes it.
    batches.lock().unwrap().clear();
    *down.lock().unwrap() = true;
    let more: Vec<_> = (N + 1..N + 301).map(|i| (i, json!({"n": i}))).collect();
    produce(&brokers, &src, 3, &more).await;
    let st = wait_status(&e, "s2", Duration::from_secs(20), |s| {
        s.state == RunState::Error
    })
    .await;
    let why = st.error.map(|e| e.message).unwrap_or_default();
    assert!(why.contains("503"), "{why}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    *down.lock().unwrap() = false;
    let want: HashSet<u64> = (N as u64 + 1..N as u64 + 301).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen(&batches).len() < want.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen(&batches).keys().copied().collect::<HashSet<_>>(), want);
    wait_status(&e, "s2", Duration::from_secs(10), |s| {
        s.state == RunState::Running
    })
    .await;

    // PAUSE: nothing is written while paused; START resumes where it stopped.
    let mut d = store
        .get(P, Kind::EventStream, "s2")
        .await
        .unwrap()
        .unwrap();
    d.body["_desired"] = json!("STOPPED");
    store.update(&d).await.unwrap();
    e.resource_changed(ResourceKind::EventStream, P, "s2").await;
    assert_eq!(status(&e, "s2").map(|s| s.state), Some(RunState::Stopped));
    batches.lock().unwrap().clear();
    let paused: Vec<_> = (N + 301..N + 401).map(|i| (i, json!({"n": i}))).collect();
    produce(&brokers, &src, 3, &paused).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(batches.lock().unwrap().is_empty(), "written while paused");
    d.body["_desired"] = json!("RUNNING");
    store.update(&d).await.unwrap();
    e.resource_changed(ResourceKind::EventStream, P, "s2").await;
    let want: HashSet<u64> = (N as u64 + 301..N as u64 + 401).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen(&batches).len() < want.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen(&batches).keys().copied().collect::<HashSet<_>>(), want);
    e.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn namesrv() -> Option<String> {
    service_env("OPENEG_TEST_ROCKETMQ_NAMESRV", "OPENEG_REQUIRE_ROCKETMQ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rocketmq_to_kafka_delivers_every_message() {
    use openeg_connectors::rocketmq::{self as rmq, ClientSettings, Outgoing};
    let Some(brokers) = kafka_brokers() else {
        return;
    };
    let Some(ns) = namesrv() else { return };
    let u = unique();
    let (src, dst) = (format!("st-rmq-{u}"), format!("st-rmq-dst-{u}"));
    create_topic(&brokers, &dst, 1).await;
    let client = ClientSettings::new(&ns, false, None, "namesrv").unwrap();
    const N: usize = 10_000;
    let outgoing = |i: usize| Outgoing {
        body: json!({"i": i}).to_string().into_bytes(),
        keys: Some(format!("m-{i}")),
        tag: None,
        properties: Vec::new(),
    };
    // The first message creates the topic (the test broker auto-creates topics).
    rmq::produce(&client, &src, vec![outgoing(0)])
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("openeg-streams-{u}"));
    let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    kafka_connection(&store, &brokers).await;
    let stream = json!({
        "id": "s3", "name": "from-rocket", "_desired": "RUNNING",
        "source": {"name": "HC.COMMUNITY_ROCKETMQ", "source_community_rocketmq": {
            "addr": ns, "group": format!("g-{u}"), "topic": src, "vpc_id": "v",
            "subnet_id": "s"}},
        "sink": {"name": "HC.Kafka", "sink_kafka": {"topic": dst, "connectionId": "conn"}},
        "rule_config": {"transform": {"type": "VARIABLE",
            "value": "{\"i\":\"$.data.i\",\"s\":\"$.source\",\"t\":\"$.type\"}",
            "template": "{\"i\":${i},\"by\":\"${s}\",\"type\":\"${t}\"}"}},
        "option": {"thread_num": 1, "batch_window": {"count": 100, "interval": 1}},
    });
    store
        .insert(&doc(Kind::EventStream, "s3", stream), &[])
        .await
        .unwrap();
    let e = engine(&store, &dir, None).await;
    wait_status(&e, "s3", Duration::from_secs(30), |s| {
        s.state == RunState::Running
    })
    .await;
    rmq::produce(&client, &src, (1..N).map(outgoing).collect())
        .await
        .unwrap();
    let got = consume_all(&brokers, &dst, 1, N, Duration::from_secs(180));
    let ids: HashSet<u64> = got.iter().map(|(_, v)| v["i"].as_u64().unwrap()).collect();
    assert_eq!(ids, (0..N as u64).collect::<HashSet<_>>());
    let (_, first) = &got[0];
    assert_eq!(first["by"], json!("from-rocket"));
    assert_eq!(first["type"], json!("ROCKETMQ:CloudTrace:message"));
    // The lag is read from the brokers every 5 s: nothing is left once all is committed.
    let figures = e.metrics.stream_figures("s3").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while figures.lag() != Some(0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(figures.lag(), Some(0));
    e.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A new group with `seek_to: latest` whose first batch never reached the sink: after a
/// restart the stream starts where the first run did, not at the new end of the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_latest_start_is_kept_across_a_restart_before_the_first_commit() {
    let Some(brokers) = kafka_brokers() else {
        return;
    };
    let u = unique();
    let src = format!("st-latest-{u}");
    create_topic(&brokers, &src, 1).await;
    let FakeFunction {
        endpoint,
        down,
        batches,
        refused,
    } = fake_function(true).await;
    let dir = std::env::temp_dir().join(format!("openeg-streams-{u}"));
    let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    let stream = json!({
        "id": "s4", "name": "latest", "_desired": "RUNNING",
        "source": {"name": "HC.Kafka", "source_kafka": {"addr": brokers, "topic": src,
            "group": format!("g-{u}"), "seek_to": "latest"}},
        "sink": {"name": "HC.FunctionGraph", "sink_fg": {"urn": "urn:fss:x:p:function:default:f:latest"}},
        "option": {"batch_window": {"count": 100, "interval": 1}},
    });
    store
        .insert(&doc(Kind::EventStream, "s4", stream), &[])
        .await
        .unwrap();
    let e = engine(&store, &dir, Some(&endpoint)).await;
    wait_status(&e, "s4", Duration::from_secs(30), |s| {
        s.state == RunState::Running
    })
    .await;
    // Warm-up records until the function is called: the consumer has its position.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    while refused.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the stream never called the function"
        );
        produce(&brokers, &src, 1, &[(n, json!({"n": n}))]).await;
        n += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let values: Vec<_> = (1000..1050).map(|i| (i, json!({"n": i}))).collect();
    produce(&brokers, &src, 1, &values).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    e.shutdown().await;
    drop(e);
    // Nothing reached the function; the next run must read it all again. (A log directory of
    // its own: the first engine's tasks may still hold theirs for a moment after shutdown.)
    *down.lock().unwrap() = false;
    let e = engine(&store, &dir.join("second"), Some(&endpoint)).await;
    // Warm-up records sent before the consumer had its position are skipped by `latest`;
    // from the first one it read on, nothing may be.
    let first = refused.lock().unwrap().iter().copied().min().unwrap();
    let want: HashSet<u64> = (first..n as u64).chain(1000..1050).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = || -> HashSet<u64> {
        batches
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, ns)| ns.iter().copied())
            .collect()
    };
    while !want.is_subset(&got()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        want.is_subset(&got()),
        "missing {:?}",
        want.difference(&got()).collect::<Vec<_>>()
    );
    e.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// `OPENEG_TEST_S3_ENDPOINT`, or `None` after printing why (`OPENEG_REQUIRE_S3=1`: fail).
fn s3_endpoint() -> Option<String> {
    service_env("OPENEG_TEST_S3_ENDPOINT", "OPENEG_REQUIRE_S3")
}

/// A bucket of the test S3 server, read through signed requests.
struct TestBucket {
    bucket: rusty_s3::Bucket,
    creds: rusty_s3::Credentials,
    http: reqwest::Client,
}

impl TestBucket {
    async fn create(endpoint: &str, name: &str) -> TestBucket {
        use rusty_s3::S3Action;
        let bucket = rusty_s3::Bucket::new(
            endpoint.parse().unwrap(),
            rusty_s3::UrlStyle::Path,
            name.to_string(),
            // The test server's own region: creating a bucket elsewhere needs a location body.
            "us-east-1",
        )
        .unwrap();
        let creds = rusty_s3::Credentials::new("test", "test");
        let http = reqwest::Client::new();
        let url =
            rusty_s3::actions::CreateBucket::new(&bucket, &creds).sign(Duration::from_secs(60));
        let r = http
            .put(url)
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "creating the bucket: {}",
            r.status()
        );
        TestBucket {
            bucket,
            creds,
            http,
        }
    }

    /// Every object: key → body.
    async fn objects(&self) -> std::collections::BTreeMap<String, String> {
        use rusty_s3::S3Action;
        let url = rusty_s3::actions::ListObjectsV2::new(&self.bucket, Some(&self.creds))
            .sign(Duration::from_secs(60));
        let text = self
            .http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let list = rusty_s3::actions::ListObjectsV2::parse_response(&text).unwrap();
        assert!(list.next_continuation_token.is_none(), "more than one page");
        let mut out = std::collections::BTreeMap::new();
        for o in list.contents {
            let url = rusty_s3::actions::GetObject::new(&self.bucket, Some(&self.creds), &o.key)
                .sign(Duration::from_secs(60));
            let body = self
                .http
                .get(url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            out.insert(o.key, body);
        }
        out
    }
}

/// The `data.n` of every line of every object, and the object keys.
fn lines_of(objects: &std::collections::BTreeMap<String, String>) -> Vec<u64> {
    objects
        .values()
        .flat_map(|body| body.lines())
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["data"]["n"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// Kafka → OBS: one object per batch and partition at `{obs_path}/{time}/{p}-{first}-{last}.json`
/// holding the batch's events one per line; the whole topic read again (offsets reset)
/// writes the same keys again: objects are overwritten, not added.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_to_obs_writes_one_object_per_batch_and_a_replay_overwrites() {
    use rdkafka::consumer::CommitMode;
    let Some(brokers) = kafka_brokers() else {
        return;
    };
    let Some(s3) = s3_endpoint() else { return };
    let u = unique();
    let src = format!("st-obs-{u}");
    create_topic(&brokers, &src, 3).await;
    let bucket = TestBucket::create(&s3, &format!("openeg-{u}")).await;
    let dir = std::env::temp_dir().join(format!("openeg-streams-{u}"));
    let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    let group = format!("g-{u}");
    let secrets = SecretBox::from_key_base64(KEY).unwrap();
    let mut sink = json!({"name": "HC.OBS", "sink_obs": {"obs_bucket": format!("openeg-{u}"),
        "obs_path": "dump/", "time_format": "yyyy/MM/dd", "access_key": "test",
        "secret_key": "test"}});
    // Stored sealed, as the API stores it: the runtime must reveal it.
    sink["sink_obs"]["secret_key"] = json!(secrets.encrypt("test"));
    let stream = json!({
        "id": "s5", "name": "to-obs", "_desired": "RUNNING",
        "source": kafka_source(&brokers, &src, &group),
        "sink": sink,
        "rule_config": {"filter": {"data": {"n": [{"op": "NumberNotIn", "values": [7, 8]}]}}},
        // Whole batches only (600 records per partition): a replay forms the same ones.
        "option": {"thread_num": 2, "batch_window": {"count": 100, "interval": 15}},
    });
    store
        .insert(&doc(Kind::EventStream, "s5", stream), &[])
        .await
        .unwrap();
    const N: usize = 1_800;
    let values: Vec<_> = (0..N).map(|i| (i, json!({"n": i}))).collect();
    produce(&brokers, &src, 3, &values).await;
    let want: Vec<u64> = (0..N as u64).filter(|n| *n != 7 && *n != 8).collect();
    let cfg = || EngineConfig {
        obs_endpoint: Some(s3.clone()),
        ..Default::default()
    };
    let e = engine_with(&store, &dir, cfg()).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut objects = bucket.objects().await;
    while lines_of(&objects).len() < want.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        objects = bucket.objects().await;
    }
    let mut got = lines_of(&objects);
    got.sort_unstable();
    assert_eq!(got, want, "every record once, in {} objects", objects.len());
    // 6 batches of 100 per partition; the key spans the batch's offsets in its partition.
    assert_eq!(
        objects.len(),
        18,
        "{:?}",
        objects.keys().collect::<Vec<_>>()
    );
    let today = chrono::Utc::now().format("%Y/%m/%d").to_string();
    for (key, body) in &objects {
        let name = key
            .strip_prefix(&format!("dump/{today}/"))
            .unwrap_or_else(|| panic!("{key}"));
        let parts: Vec<i64> = name
            .trim_end_matches(".json")
            .split('-')
            .map(|x| x.parse().unwrap())
            .collect();
        let (p, first, last) = (parts[0], parts[1], parts[2]);
        assert_eq!(last - first, 99, "{key}");
        for line in body.lines() {
            let ev: Value = serde_json::from_str(line).unwrap();
            let id = ev["id"].as_str().unwrap();
            let offset: i64 = id.rsplit('-').next().unwrap().parse().unwrap();
            assert!(id.starts_with(&format!("{src}-{p}-")), "{id} in {key}");
            assert!((first..=last).contains(&offset), "{id} in {key}");
        }
    }
    // The count follows the store's answer to the last upload.
    let figures = e.metrics.stream_figures("s5").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while figures.written.get() < want.len() as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(figures.written.get(), want.len() as u64);
    // The lag comes from the client's statistics (every 5 s) once the commits landed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while figures.lag() != Some(0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(figures.lag(), Some(0));
    e.shutdown().await;
    drop(e);

    // Replay: the group's offsets back to the start, read it all again.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(&src, p, Offset::Offset(0))
            .unwrap();
    }
    c.commit(&tpl, CommitMode::Sync).unwrap();
    drop(c);
    let e = engine_with(&store, &dir.join("second"), cfg()).await;
    // A new engine: its figures count the replay alone (they exist once its run started).
    let deadline = Instant::now() + Duration::from_secs(90);
    let figures = loop {
        if let Some(f) = e.metrics.stream_figures("s5") {
            break f;
        }
        assert!(Instant::now() < deadline, "the stream did not start again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    while figures.written.get() < want.len() as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        figures.written.get(),
        want.len() as u64,
        "the replay wrote everything"
    );
    let again = bucket.objects().await;
    assert_eq!(
        again, objects,
        "the replay overwrote the same objects with the same lines"
    );
    e.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A running stream writes through its KAFKA connection's current settings: changing the
/// connection restarts the stream (here from an unreachable broker to the real one).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kafka_sink_follows_its_connection_when_it_changes() {
    let Some(brokers) = kafka_brokers() else {
        return;
    };
    let u = unique();
    let (src, dst) = (format!("st-conn-{u}"), format!("st-conn-dst-{u}"));
    create_topic(&brokers, &src, 1).await;
    create_topic(&brokers, &dst, 1).await;
    let dir = std::env::temp_dir().join(format!("openeg-streams-{u}"));
    let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    let conn = |addr: &str| {
        doc(
            Kind::Connection,
            "conn",
            json!({"id": "conn", "name": "conn", "type": "KAFKA", "kafka_detail": {"addr": addr}}),
        )
    };
    store.insert(&conn("127.0.0.1:9"), &[]).await.unwrap();
    let mut stream = doc(
        Kind::EventStream,
        "s6",
        json!({
            "id": "s6", "name": "via-conn", "_desired": "RUNNING",
            "source": kafka_source(&brokers, &src, &format!("g-{u}")),
            "sink": {"name": "HC.Kafka", "sink_kafka": {"topic": dst, "connectionId": "conn"}},
            "option": {"batch_window": {"count": 10, "interval": 1}},
        }),
    );
    stream.refs = vec!["connection:conn".into()];
    store.insert(&stream, &[]).await.unwrap();
    let e = engine(&store, &dir, None).await;
    wait_status(&e, "s6", Duration::from_secs(30), |s| {
        s.state == RunState::Running
    })
    .await;
    let values: Vec<_> = (0..20).map(|i| (i, json!({"n": i}))).collect();
    produce(&brokers, &src, 1, &values).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        consume_all(&brokers, &dst, 1, 1, Duration::from_secs(2)).is_empty(),
        "written through an unreachable broker?"
    );
    let mut fixed = conn(&brokers);
    fixed.updated_at += 1;
    assert!(store.update(&fixed).await.unwrap());
    e.resource_changed(ResourceKind::Connection, P, "conn")
        .await;
    let got = consume_all(&brokers, &dst, 1, 20, Duration::from_secs(60));
    let ns: HashSet<u64> = got
        .iter()
        .map(|(_, v)| v["data"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, (0..20).collect::<HashSet<_>>());
    e.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
