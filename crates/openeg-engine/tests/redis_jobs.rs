//! Event-router jobs, Redis → Redis, against two real `redis-server` processes this test starts
//! on free ports (`OPENEG_TEST_REDIS_SERVER`: the `redis-server` binary; CI sets it). The
//! source holds keys of every type (strings plain, int-encoded and long, lists, hashes, sets,
//! sorted sets and streams, small and large encodings) in two databases, some with TTLs;
//! the job copies the snapshot, then follows writes made meanwhile; an engine restart
//! continues the stream without a new snapshot (`sync_full` on the source stays 1); at the
//! end every key is equal on both sides (`DUMP`, and its TTL). `OPENEG_REDIS_TEST_KEYS` keys
//! (default 20,000).

mod common;

use common::service_env;
use openeg_engine::{Engine, EngineConfig, RunState, TaskKind};
use openeg_store::{Document, Kind, MetaStore, SqliteStore};
use redis::aio::MultiplexedConnection;
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const P: &str = "p-redis";
const JOB: &str = "job-r";

/// A `redis-server` of this test's own, stopped when dropped.
struct Server {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Server {
    fn start(bin: &str) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("openeg-redis-{}", common::unique()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new(bin)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--repl-backlog-size", "64mb"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let s = Server { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn conn(&self, db: u32) -> MultiplexedConnection {
        redis::Client::open(format!("redis://{}/{db}", self.addr()))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes `n` keys of every type into `db`, a third of them with a TTL.
async fn fill(c: &mut MultiplexedConnection, db: u32, n: usize) {
    let mut pipe = redis::pipe();
    for i in 0..n {
        let k = format!("d{db}:{i}");
        match i % 9 {
            0 => pipe.set(&k, format!("value-{i}")),
            1 => pipe.set(&k, i),                        // int-encoded
            2 => pipe.set(&k, "x".repeat(100 + i % 50)), // compressible (LZF)
            3 => pipe.rpush(
                &k,
                (0..(1 + i % 200))
                    .map(|j| format!("e{j}"))
                    .collect::<Vec<_>>(),
            ),
            4 => pipe.hset_multiple(
                &k,
                &(0..(1 + i % 300))
                    .map(|j| (format!("f{j}"), format!("v{j}")))
                    .collect::<Vec<_>>(),
            ),
            5 => pipe.sadd(&k, (0..(1 + i % 600)).collect::<Vec<_>>()), // intset, then hashtable
            6 => pipe.sadd(
                &k,
                (0..(1 + i % 20))
                    .map(|j| format!("m{j}"))
                    .collect::<Vec<_>>(),
            ),
            7 => pipe.zadd_multiple(
                &k,
                &(0..(1 + i % 200))
                    .map(|j| (j as f64 * 1.5, format!("z{j}")))
                    .collect::<Vec<_>>(),
            ),
            _ => pipe.xadd(&k, "*", &[("f", i.to_string()), ("g", "x".repeat(i % 40))]),
        }
        .ignore();
        if i % 3 == 0 {
            pipe.pexpire(&k, 3_600_000 + i as i64).ignore();
        }
        if i % 500 == 499 {
            let _: () = pipe.query_async(c).await.unwrap();
            pipe = redis::pipe();
        }
    }
    if !pipe.is_empty() {
        let _: () = pipe.query_async(c).await.unwrap();
    }
}

fn job_doc(source: &str, sink: &str) -> Document {
    job_doc_with(
        JOB,
        source,
        sink,
        json!({"synchronize_type": "full_incremental",
            "connect_retry_time": "1", "other_retry_time": "1"}),
    )
}

fn job_doc_with(id: &str, source: &str, sink: &str, advance: serde_json::Value) -> Document {
    let ep =
        |a: &str| json!({"config_type": "CLOUD", "region": "r1", "project_id": "p1", "address": a});
    Document {
        project_id: P.into(),
        kind: Kind::RouterJob,
        id: id.into(),
        name: format!("redis-dr-{id}"),
        parent_id: Some("cl".into()),
        created_at: 1_700_000_000_000,
        updated_at: 1_700_000_000_000,
        body: json!({
            "job_id": id, "name": format!("redis-dr-{id}"), "status": "WAIT_START",
            "_desired": "RUNNING", "source_type": "DCS", "sink_type": "DCS",
            "source_config": {"source_dcs": ep(source)},
            "sink_config": {"sink_dcs": ep(sink)},
            "advance_config": {"dcs2dcs": advance},
        }),
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

async fn info_field(c: &mut MultiplexedConnection, section: &str, name: &str) -> String {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(c)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Waits until the job runs in its incremental phase with everything the source wrote applied.
async fn caught_up(e: &Engine, source: &mut MultiplexedConnection) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let want: u64 = info_field(source, "replication", "master_repl_offset")
            .await
            .parse()
            .unwrap();
        let st = e.runtime_status(TaskKind::RouterJob, P, JOB);
        let f = e.metrics.job_figures(JOB).and_then(|f| f.redis_snapshot());
        if let (Some(st), Some(f)) = (&st, &f) {
            if st.state == RunState::Running && f.phase == "incremental" && f.sink_offset >= want {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the job did not catch up: {st:?} {f:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A key's type and content, members sorted where the type has no order.
async fn content(c: &mut MultiplexedConnection, k: &[u8]) -> (String, Vec<Vec<u8>>) {
    let ty: String = redis::cmd("TYPE").arg(k).query_async(c).await.unwrap();
    let mut items: Vec<Vec<u8>> = match ty.as_str() {
        "string" => vec![redis::cmd("GET").arg(k).query_async(c).await.unwrap()],
        "list" => redis::cmd("LRANGE")
            .arg(k)
            .arg(0)
            .arg(-1)
            .query_async(c)
            .await
            .unwrap(),
        "set" => redis::cmd("SMEMBERS").arg(k).query_async(c).await.unwrap(),
        "hash" => {
            let m: Vec<(Vec<u8>, Vec<u8>)> =
                redis::cmd("HGETALL").arg(k).query_async(c).await.unwrap();
            m.into_iter()
                .map(|(f, v)| [f, b"=".to_vec(), v].concat())
                .collect()
        }
        "zset" => {
            let m: Vec<(Vec<u8>, String)> = redis::cmd("ZRANGE")
                .arg(k)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query_async(c)
                .await
                .unwrap();
            m.into_iter()
                .map(|(f, v)| [f, b"=".to_vec(), v.into_bytes()].concat())
                .collect()
        }
        other => panic!("content of a {other}"),
    };
    if ty == "set" || ty == "hash" {
        items.sort();
    }
    (ty, items)
}

/// Every key of `db` on the source has the same `DUMP` on the sink and about the same TTL, and
/// both hold the same number of keys. Returns how many keys were compared.
async fn same_keys(src: &Server, dst: &Server, db: u32) -> usize {
    let mut s = src.conn(db).await;
    let mut d = dst.conn(db).await;
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut s)
        .await
        .unwrap();
    let n_dst: usize = redis::cmd("DBSIZE").query_async(&mut d).await.unwrap();
    assert_eq!(keys.len(), n_dst, "db {db}: key counts differ");
    for chunk in keys.chunks(500) {
        let mut ps = redis::pipe();
        for k in chunk {
            ps.cmd("DUMP").arg(k).cmd("PTTL").arg(k);
        }
        let a: Vec<redis::Value> = ps.query_async(&mut s).await.unwrap();
        let b: Vec<redis::Value> = ps.query_async(&mut d).await.unwrap();
        for (i, k) in chunk.iter().enumerate() {
            let key = String::from_utf8_lossy(k);
            if a[2 * i] != b[2 * i] {
                // Hash-table encodings serialise in the order of a per-process hash seed:
                // equal content, other bytes. Then the content must be equal.
                assert_eq!(
                    content(&mut s, k).await,
                    content(&mut d, k).await,
                    "db {db} key {key}: DUMP and content differ"
                );
            }
            let ttl = |v: &redis::Value| match v {
                redis::Value::Int(n) => *n,
                other => panic!("PTTL {other:?}"),
            };
            let (ta, tb) = (ttl(&a[2 * i + 1]), ttl(&b[2 * i + 1]));
            assert!(
                (ta < 0 && ta == tb) || (ta >= 0 && tb >= 0 && (ta - tb).abs() < 5_000),
                "db {db} key {key}: TTL {ta} on the source, {tb} on the sink"
            );
        }
    }
    keys.len()
}

/// Writes until `stop`: SET/INCR/HSET/LPUSH/DEL/EXPIRE over a few hundred keys, ~1,000 a second,
/// every other round as one MULTI … EXEC, and each round a write into db 3 too (so the
/// stream switches databases, and a continued stream must start in the right one).
async fn writer(addr: String, stop: Arc<AtomicBool>) -> u64 {
    let client = redis::Client::open(format!("redis://{addr}/0")).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let mut c3 = redis::Client::open(format!("redis://{addr}/3"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut i = 0u64;
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let mut pipe = redis::pipe();
        if round.is_multiple_of(2) {
            pipe.atomic();
        }
        for _ in 0..20 {
            i += 1;
            let k = format!("live:{}", i % 300);
            match i % 6 {
                0 => pipe.set(&k, i).ignore(),
                1 => pipe.incr(format!("ctr:{}", i % 7), 1).ignore(),
                2 => pipe.hset(format!("lh:{}", i % 50), "f", i).ignore(),
                3 => pipe.lpush(format!("ll:{}", i % 30), i).ignore(),
                4 => pipe.del(format!("d0:{}", i % 20_000)).ignore(),
                _ => pipe
                    .pexpire(format!("d0:{}", i % 20_000), 7_200_000)
                    .ignore(),
            };
        }
        let _: () = pipe.query_async(&mut c).await.unwrap();
        let _: () = redis::cmd("SET")
            .arg(format!("live3:{}", round % 100))
            .arg(round)
            .query_async(&mut c3)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    i
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_job_copies_snapshot_and_stream_and_continues_after_restart() {
    let Some(bin) = service_env("OPENEG_TEST_REDIS_SERVER", "OPENEG_REQUIRE_REDIS") else {
        return;
    };
    let n: usize = std::env::var("OPENEG_REDIS_TEST_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let src = Server::start(&bin);
    let dst = Server::start(&bin);
    let mut s0 = src.conn(0).await;
    fill(&mut s0, 0, n).await;
    fill(&mut src.conn(3).await, 3, n / 10).await;
    // A function library travels with the snapshot.
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("#!lua name=openeglib\nredis.register_function('echo1', function(keys, args) return args[1] end)")
        .query_async(&mut s0)
        .await
        .unwrap();

    let dir = std::env::temp_dir().join(format!("openeg-redis-job-{}", common::unique()));
    let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    store
        .insert(&job_doc(&src.addr(), &dst.addr()), &[])
        .await
        .unwrap();
    let e = engine(&store, &dir).await;
    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(writer(src.addr(), stop.clone()));
    caught_up(&e, &mut s0).await;
    let f = e
        .metrics
        .job_figures(JOB)
        .and_then(|f| f.redis_snapshot())
        .unwrap();
    assert_eq!(f.refused, 0, "{f:?}");
    assert!(f.applied as usize >= n, "{f:?}");
    assert_eq!(info_field(&mut s0, "stats", "sync_full").await, "1");

    // A restart while writes go on: the stream continues, no second snapshot.
    tokio::time::sleep(Duration::from_secs(2)).await;
    e.shutdown().await;
    drop(e);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let e = engine(&store, &dir).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let writes = w.await.unwrap();
    assert!(writes > 1000, "only {writes} writes");
    caught_up(&e, &mut s0).await;
    assert_eq!(info_field(&mut s0, "stats", "sync_full").await, "1");
    assert_eq!(info_field(&mut s0, "stats", "sync_partial_ok").await, "1");

    let compared = same_keys(&src, &dst, 0).await + same_keys(&src, &dst, 3).await;
    assert!(compared >= n, "{compared}");
    let mut d0 = dst.conn(0).await;
    let echoed: String = redis::cmd("FCALL")
        .arg("echo1")
        .arg(0)
        .arg("hi")
        .query_async(&mut d0)
        .await
        .unwrap();
    assert_eq!(echoed, "hi");
    let f = e
        .metrics
        .job_figures(JOB)
        .and_then(|f| f.redis_snapshot())
        .unwrap();
    assert_eq!(
        (f.phase, f.status, f.remaining()),
        ("incremental", "syncing", 0),
        "{f:?}"
    );
    assert_eq!(f.refused, 0, "{f:?}");

    // The stream's database survives a restart: the source sends SELECT only when it
    // changes, so after the last write went to db 3 a continued stream starts there.
    let mut s3 = src.conn(3).await;
    let _: () = redis::cmd("SET")
        .arg("before-restart")
        .arg(1)
        .query_async(&mut s3)
        .await
        .unwrap();
    caught_up(&e, &mut s0).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    e.shutdown().await;
    drop(e);
    let e = engine(&store, &dir).await;
    let _: () = redis::cmd("SET")
        .arg("after-restart")
        .arg(2)
        .query_async(&mut s3)
        .await
        .unwrap();
    caught_up(&e, &mut s0).await;
    let mut d3 = dst.conn(3).await;
    let got: Option<i64> = redis::cmd("GET")
        .arg("after-restart")
        .query_async(&mut d3)
        .await
        .unwrap();
    let in0: Option<i64> = redis::cmd("GET")
        .arg("after-restart")
        .query_async(&mut d0)
        .await
        .unwrap();
    assert_eq!((got, in0), (Some(2), None));
    assert_eq!(info_field(&mut s0, "stats", "sync_partial_ok").await, "2");
    e.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits until job `id`'s figures satisfy `ok`.
async fn wait_figures(
    e: &Engine,
    id: &str,
    ok: impl Fn(&openeg_engine::metrics::RedisFigures) -> bool,
) -> openeg_engine::metrics::RedisFigures {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = e.runtime_status(TaskKind::RouterJob, P, id);
        let f = e.metrics.job_figures(id).and_then(|f| f.redis_snapshot());
        if let (Some(st), Some(f)) = (&st, &f) {
            if st.state == RunState::Running && ok(f) {
                return f.clone();
            }
        }
        assert!(Instant::now() < deadline, "job {id}: {st:?} {f:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn dbsize(s: &Server, db: u32) -> usize {
    let mut c = s.conn(db).await;
    redis::cmd("DBSIZE").query_async(&mut c).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_jobs_full_only_incremental_only_and_db_mapping() {
    let Some(bin) = service_env("OPENEG_TEST_REDIS_SERVER", "OPENEG_REQUIRE_REDIS") else {
        return;
    };
    let src = Server::start(&bin);
    let (full_dst, incr_dst) = (Server::start(&bin), Server::start(&bin));
    let mut s0 = src.conn(0).await;
    fill(&mut s0, 0, 1000).await;
    fill(&mut src.conn(1).await, 1, 100).await;
    let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    // `full`, db 0 into db 5, db 1 not copied.
    let full = job_doc_with(
        "job-full",
        &src.addr(),
        &full_dst.addr(),
        json!({"synchronize_type": "FULL", "connect_retry_time": 1, "other_retry_time": 1,
               "allow_db": [0], "db_mapping": {"0": "5"}}),
    );
    let incr = job_doc_with(
        "job-incr",
        &src.addr(),
        &incr_dst.addr(),
        json!({"synchronize_type": "incremental", "connect_retry_time": 1,
               "other_retry_time": 1}),
    );
    store.insert(&full, &[]).await.unwrap();
    store.insert(&incr, &[]).await.unwrap();
    let dir = std::env::temp_dir().join(format!("openeg-redis-modes-{}", common::unique()));
    let e = engine(&store, &dir).await;
    let f = wait_figures(&e, "job-full", |f| f.status == "finish").await;
    assert_eq!(f.refused, 0, "{f:?}");
    wait_figures(&e, "job-incr", |f| f.phase == "incremental").await;
    assert_eq!(dbsize(&full_dst, 5).await, 1000);
    assert_eq!(dbsize(&full_dst, 0).await, 0);
    assert_eq!(dbsize(&full_dst, 1).await, 0);
    assert_eq!(
        dbsize(&incr_dst, 0).await,
        0,
        "incremental copies no snapshot"
    );

    let _: () = redis::cmd("SET")
        .arg("later")
        .arg(1)
        .query_async(&mut s0)
        .await
        .unwrap();
    let want: u64 = info_field(&mut s0, "replication", "master_repl_offset")
        .await
        .parse()
        .unwrap();
    wait_figures(&e, "job-incr", |f| f.sink_offset >= want).await;
    let mut i0 = incr_dst.conn(0).await;
    let got: Option<i64> = redis::cmd("GET")
        .arg("later")
        .query_async(&mut i0)
        .await
        .unwrap();
    assert_eq!(got, Some(1));
    // The finished full job copies nothing more, and stays finished after a restart.
    e.shutdown().await;
    drop(e);
    let e = engine(&store, &dir).await;
    let f = wait_figures(&e, "job-full", |f| f.status == "finish").await;
    assert_eq!(
        f.applied, 0,
        "a finished job applies nothing after a restart: {f:?}"
    );
    assert_eq!(dbsize(&full_dst, 5).await, 1000);
    assert_eq!(dbsize(&full_dst, 0).await, 0);
    assert_eq!(info_field(&mut s0, "stats", "sync_full").await, "2");
    e.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
