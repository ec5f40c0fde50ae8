//! Event-router jobs, Kafka → Kafka, against a real Kafka-API broker
//! (`OPENEG_TEST_KAFKA_BROKERS`, tansu in CI). Source and sink are the same broker under
//! different topic names: a mapped topic (same partition count), a renamed one the job
//! creates, and a mapped one with fewer partitions (placed by key hash). Records keep key,
//! value (also none), headers and order; the job's stored positions and figures follow; an
//! engine restart resumes without skipping. `OPENEG_ROUTER_TEST_RECORDS` records per topic
//! (default 3,000: the shared test broker keeps everything in one SQLite file).

mod common;

use common::{create_topic, kafka_brokers, unique};
use openeg_connectors::mirror::Placement;
use openeg_engine::{Engine, EngineConfig, RunState, TaskKind};
use openeg_store::{Document, Kind, MetaStore, MirrorStore, SqliteStore};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

const P: &str = "p-router";
const JOB: &str = "job-1";

/// A record's headers: (name, value), in order.
type HeaderList = Vec<(String, Option<Vec<u8>>)>;

/// A record as read back: partition, offset, key, value, headers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: HeaderList,
}

impl Rec {
    fn header(&self, k: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n == k)
            .and_then(|(_, v)| v.as_ref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// What a copy must keep: key, value and the source's own headers.
    fn content(&self) -> (Option<Vec<u8>>, Option<Vec<u8>>, HeaderList) {
        let own = self
            .headers
            .iter()
            .filter(|(k, _)| !k.starts_with("eg-origin-"))
            .cloned()
            .collect();
        (self.key.clone(), self.value.clone(), own)
    }
}

/// Produces records `from..to` to `topic`: record `i` to partition `i % 3`, key `k-{i}`,
/// value `v-{i}`, header `h = i`; record `from` has no key and record `from + 1` no value.
async fn produce(brokers: &str, topic: &str, from: usize, to: usize) {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let sends = (from..to).map(|i| {
        let p = &p;
        async move {
            let (key, value, h) = (format!("k-{i}"), format!("v-{i}"), i.to_string());
            let headers = OwnedHeaders::new().insert(Header {
                key: "h",
                value: Some(&h),
            });
            let mut r = FutureRecord::<str, str>::to(topic)
                .partition((i % 3) as i32)
                .headers(headers);
            if i != from {
                r = r.key(&key);
            }
            if i != from + 1 {
                r = r.payload(&value);
            }
            p.send(r, Duration::from_secs(60))
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        }
    });
    for r in futures_util::future::join_all(sends).await {
        r.unwrap();
    }
}

/// Every record of `topic` up to its high watermarks, per partition in offset order.
fn read_all(brokers: &str, topic: &str) -> BTreeMap<i32, Vec<Rec>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("openeg-test-{}", unique()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .unwrap();
    let parts = md.topics()[0].partitions().len() as i32;
    let mut want = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..parts {
        let (_, high) = c
            .fetch_watermarks(topic, p, Duration::from_secs(30))
            .unwrap();
        want.insert(p, high);
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out: BTreeMap<i32, Vec<Rec>> = (0..parts).map(|p| (p, Vec::new())).collect();
    let deadline = Instant::now() + Duration::from_secs(240);
    let done = |out: &BTreeMap<i32, Vec<Rec>>| {
        want.iter()
            .all(|(p, high)| *high == 0 || out[p].last().is_some_and(|r| r.offset + 1 >= *high))
    };
    while !done(&out) {
        assert!(Instant::now() < deadline, "{topic} not read in time");
        let Some(m) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.unwrap();
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        out.get_mut(&m.partition()).unwrap().push(Rec {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
        });
    }
    out
}

fn job_doc(brokers: &str, u: &str) -> Document {
    let ep = |alias: &str| {
        json!({"config_type": "CLOUD", "region": "r1", "project_id": "p1",
               "instance_id": "i1", "cluster_alias": alias, "address": brokers,
               "authenticate_mode": "PLAINTEXT"})
    };
    let body = json!({
        "job_id": JOB, "name": "dr", "status": "WAIT_START", "_desired": "RUNNING",
        "source_type": "KAFKA", "sink_type": "KAFKA",
        "source_config": {"source_kafka": ep(&format!("dr{u}"))},
        "sink_config": {"sink_kafka": ep("backup")},
        "advance_config": {"kafka2kafka": {
            "topics": format!("rj-a-{u},rj-b-{u},rj-c-{u}"),
            "topic_mappings": [
                {"source_topic": format!("rj-a-{u}"), "sink_topic": format!("rj-a-copy-{u}")},
                {"source_topic": format!("rj-c-{u}"), "sink_topic": format!("rj-c-copy-{u}")}],
            "rename_topic": true, "is_add_header": true, "is_sync_progress": true,
            "replica_cnt": 1, "seek_to": "earliest", "compress_alg": "lz4"}},
    });
    Document {
        project_id: P.into(),
        kind: Kind::RouterJob,
        id: JOB.into(),
        name: "dr".into(),
        parent_id: Some("cl".into()),
        created_at: 1_700_000_000_000,
        updated_at: 1_700_000_000_000,
        body,
        refs: Vec::new(),
    }
}

async fn engine(store: &Arc<SqliteStore>, dir: &std::path::Path) -> Arc<Engine> {
    let cfg = EngineConfig {
        node_name: "node-j".into(),
        ..Default::default()
    };
    common::start_engine_fast(store, dir, cfg).await
}

/// Waits until the job runs and its figures show every partition caught up with `want`
/// records per topic.
async fn caught_up(e: &Engine, topics: usize, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let st = e.runtime_status(TaskKind::RouterJob, P, JOB);
        let figures = e.metrics.job_figures(JOB).map(|f| f.snapshot());
        if let (Some(st), Some(f)) = (&st, &figures) {
            let per_topic: BTreeMap<&str, i64> =
                f.iter().fold(BTreeMap::new(), |mut m, ((t, _), p)| {
                    *m.entry(t.as_str()).or_default() += p.next;
                    m
                });
            if st.state == RunState::Running
                && per_topic.len() == topics
                && per_topic.values().all(|n| *n >= want)
                && f.values().all(|p| p.next == p.high)
            {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the job did not catch up: {st:?} {figures:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A target partition's records with copies made again after a restart dropped (a copy whose
/// `eg-origin-offset` is not above the greatest seen before it).
fn deduplicated(records: &[Rec]) -> Vec<Rec> {
    let mut seen = -1i64;
    let mut out = Vec::new();
    for r in records {
        let o: i64 = r.header("eg-origin-offset").unwrap().parse().unwrap();
        if o > seen {
            seen = o;
            out.push(r.clone());
        }
    }
    out
}

/// Each target partition holds its source partition's records, in order, with the origin
/// headers; returns how many copies were duplicates.
fn same_partitions(brokers: &str, src: &str, dst: &str) -> usize {
    let source = read_all(brokers, src);
    let target = read_all(brokers, dst);
    let mut duplicates = 0;
    for (p, recs) in &source {
        let copies = deduplicated(&target[p]);
        duplicates += target[p].len() - copies.len();
        assert_eq!(copies.len(), recs.len(), "{dst}/{p}");
        for (s, c) in recs.iter().zip(&copies) {
            assert_eq!(
                s.content(),
                c.content(),
                "{dst}/{p} copy of offset {}",
                s.offset
            );
            assert_eq!(c.header("eg-origin-topic").as_deref(), Some(src));
            assert_eq!(c.header("eg-origin-partition"), Some(p.to_string()));
            assert_eq!(c.header("eg-origin-offset"), Some(s.offset.to_string()));
        }
    }
    duplicates
}

fn consumer(brokers: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap()
}

/// Commits `offsets` of `topic` for `group` (member-less, as a consumer that stopped).
fn commit(brokers: &str, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
            .unwrap();
    }
    consumer(brokers, group)
        .commit(&tpl, rdkafka::consumer::CommitMode::Sync)
        .unwrap();
}

/// What `group` committed on partitions `0..3` of `topic` (absent: nothing).
fn committed(brokers: &str, group: &str, topic: &str) -> HashMap<i32, i64> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition(topic, p);
    }
    consumer(brokers, group)
        .committed_offsets(tpl, Duration::from_secs(30))
        .unwrap()
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// The `eg-origin-offset` of the copy at `offset` of `topic`/`partition`.
fn origin_at(brokers: &str, topic: &str, partition: i32, offset: i64) -> i64 {
    let c = consumer(brokers, &format!("openeg-test-{}", unique()));
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
        .unwrap();
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "{topic}/{partition}@{offset} not read"
        );
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            let h = m.headers().unwrap();
            let o = h.iter().find(|h| h.key == "eg-origin-offset").unwrap();
            return String::from_utf8_lossy(o.value.unwrap()).parse().unwrap();
        }
    }
}

/// A source group's offsets reach the sink translated: a consumer of the copy that starts at
/// the translated offset reads next the record the group would have read next at the source
/// (nothing skipped), and the record before it there is the group's last read one (nothing
/// read twice).
async fn group_translated(brokers: &str, group: &str, src: &str, dst: &str, at: &[(i32, i64)]) {
    let before = committed(brokers, group, dst);
    commit(brokers, group, src, at);
    // Rounds run every 5 s; a busy shared test broker answers each group's requests slowly.
    let deadline = Instant::now() + Duration::from_secs(120);
    let got = loop {
        let got = committed(brokers, group, dst);
        if at
            .iter()
            .all(|(p, _)| got.get(p).is_some_and(|t| before.get(p) != Some(t)))
        {
            break got;
        }
        assert!(
            Instant::now() < deadline,
            "{group} not translated onto {dst}: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let highs: HashMap<i32, i64> = read_all(brokers, dst)
        .into_iter()
        .map(|(p, r)| (p, r.last().map_or(0, |r| r.offset + 1)))
        .collect();
    for (p, c) in at {
        let t = got[p];
        if t < highs[p] {
            assert_eq!(
                origin_at(brokers, dst, *p, t),
                *c,
                "{dst}/{p}: first read after the move"
            );
        }
        if t > 0 {
            assert_eq!(
                origin_at(brokers, dst, *p, t - 1),
                c - 1,
                "{dst}/{p}: last read before"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_job_copies_maps_renames_and_resumes() {
    let Some(brokers) = kafka_brokers() else {
        return;
    };
    let u = unique();
    let (a, b, c) = (
        format!("rj-a-{u}"),
        format!("rj-b-{u}"),
        format!("rj-c-{u}"),
    );
    let (a_copy, b_copy, c_copy) = (
        format!("rj-a-copy-{u}"),
        format!("dr{u}.{b}"),
        format!("rj-c-copy-{u}"),
    );
    for t in [&a, &b, &c, &a_copy] {
        create_topic(&brokers, t, 3).await;
    }
    create_topic(&brokers, &c_copy, 2).await;
    let total: usize = std::env::var("OPENEG_ROUTER_TEST_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000)
        .max(10);
    let first = total * 3 / 5;
    for t in [&a, &b, &c] {
        produce(&brokers, t, 0, first).await;
    }
    let dir = std::env::temp_dir().join(format!("openeg-router-{u}"));
    let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    store.insert(&job_doc(&brokers, &u), &[]).await.unwrap();

    let e = engine(&store, &dir).await;
    caught_up(&e, 3, first as i64).await;
    assert_eq!(same_partitions(&brokers, &a, &a_copy), 0);
    assert_eq!(same_partitions(&brokers, &b, &b_copy), 0);
    // is_sync_progress: a group that read part of each partition moves to the copy exactly.
    let per_partition = (first / 3) as i64;
    let group = format!("app-{u}");
    group_translated(
        &brokers,
        &group,
        &a,
        &a_copy,
        &[(0, 17), (1, per_partition / 2), (2, per_partition)],
    )
    .await;
    // Fewer target partitions: every copy where the key's hash (else its source partition)
    // puts it, each source record once.
    let placement = Placement::new(3, 2);
    let source_c = read_all(&brokers, &c);
    let copies_c = read_all(&brokers, &c_copy);
    let mut copied: HashMap<String, Rec> = HashMap::new();
    for (p, recs) in &copies_c {
        for r in recs {
            let sp: i32 = r.header("eg-origin-partition").unwrap().parse().unwrap();
            assert_eq!(*p, placement.partition(r.key.as_deref(), sp), "{r:?}");
            let at = format!("{sp}/{}", r.header("eg-origin-offset").unwrap());
            assert!(
                copied.insert(at, r.clone()).is_none(),
                "copied twice: {r:?}"
            );
        }
    }
    assert_eq!(copied.len(), first);
    for (p, recs) in &source_c {
        for s in recs {
            let c = &copied[&format!("{p}/{}", s.offset)];
            assert_eq!(s.content(), c.content());
        }
    }
    // The stored positions are the last record of every partition.
    let (counts, positions): (Vec<_>, Vec<_>) = store
        .mirror_positions(JOB, &brokers)
        .await
        .unwrap()
        .into_iter()
        .partition(|p| p.partition < 0);
    assert_eq!(positions.len(), 9, "{positions:?}");
    // Each topic's partition count is recorded (added partitions are told apart by it).
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.iter().all(|c| c.source_offset == 3), "{counts:?}");
    for pos in &positions {
        let recs = &read_all(&brokers, &pos.topic)[&pos.partition];
        assert_eq!(pos.source_offset, recs.last().unwrap().offset, "{pos:?}");
    }
    e.shutdown().await;
    drop(e);

    // Records produced while no engine runs are copied from the stored positions.
    for t in [&a, &b, &c] {
        produce(&brokers, t, first, total).await;
    }
    let e = engine(&store, &dir.join("second")).await;
    caught_up(&e, 3, total as i64).await;
    let dup_a = same_partitions(&brokers, &a, &a_copy);
    let dup_b = same_partitions(&brokers, &b, &b_copy);
    // A clean shutdown commits what was copied: nothing, or at most a batch per partition,
    // is copied again.
    assert!(dup_a + dup_b <= 6 * 1000, "{dup_a} + {dup_b} duplicates");
    // The group read on at the source (each offset past its first one: the sink's offsets
    // only move forward); its new offsets translate past any copies made twice.
    let per_partition = (total / 3) as i64;
    group_translated(
        &brokers,
        &group,
        &a,
        &a_copy,
        &[
            (0, per_partition - 5),
            (1, per_partition - 1),
            (2, per_partition * 4 / 5),
        ],
    )
    .await;
    e.shutdown().await;
}

/// A job stopped in the middle of a copy lets the batches it has in flight finish and stores
/// their pairs: every copy in the target has its pair (`mirror_copy_ends` is each target
/// partition's end, which a switch-over starts after), and the next run copies nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_stopped_mid_copy_stores_the_pairs_of_every_copy_it_made() {
    let Some(brokers) = kafka_brokers() else {
        return;
    };
    let u = unique();
    let (src, dst) = (format!("rj-stop-{u}"), format!("rj-stop-copy-{u}"));
    create_topic(&brokers, &src, 3).await;
    create_topic(&brokers, &dst, 3).await;
    let total = 30_000;
    produce(&brokers, &src, 0, total).await;
    let mut doc = job_doc(&brokers, &u);
    doc.body["advance_config"]["kafka2kafka"] = json!({
        "topics": src, "topic_mappings": [{"source_topic": src, "sink_topic": dst}],
        "is_add_header": true, "seek_to": "earliest"});
    let dir = std::env::temp_dir().join(format!("openeg-router-stop-{u}"));
    let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    store.insert(&doc, &[]).await.unwrap();

    let e = engine(&store, &dir).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let copied = e.metrics.job_figures(JOB).map_or(0, |f| f.copied.get());
        if copied >= 1_000 {
            break;
        }
        assert!(Instant::now() < deadline, "the job copied {copied} records");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    e.shutdown().await;
    drop(e);

    let c = consumer(&brokers, &format!("marks-{u}"));
    let ends: HashMap<i32, i64> = store
        .mirror_copy_ends(JOB, &brokers)
        .await
        .unwrap()
        .into_iter()
        .filter(|(t, _, _)| *t == dst)
        .map(|(_, p, end)| (p, end))
        .collect();
    let mut copied = 0;
    for p in 0..3 {
        let (_, high) = c
            .fetch_watermarks(&dst, p, Duration::from_secs(10))
            .unwrap();
        copied += high;
        let end = ends.get(&p).map_or(-1, |e| *e);
        assert_eq!(high, end + 1, "partition {p}: copies past the stored pairs");
    }
    assert!(
        copied < total as i64,
        "the copy ended before the stop ({copied} copies): nothing was in flight"
    );

    let e = engine(&store, &dir.join("second")).await;
    caught_up(&e, 1, total as i64).await;
    assert_eq!(same_partitions(&brokers, &src, &dst), 0, "copied twice");
    e.shutdown().await;
}
