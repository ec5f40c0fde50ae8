//! Helpers of the engine's integration tests: a webhook receiver, stores, a channel with a
//! webhook subscription, events.

#![allow(dead_code)]

use openeg_store::{Document, Kind, MetaStore};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The secrets key of the engines these tests start.
pub const KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

/// `OPENEG_TEST_KAFKA_BROKERS`, or `None` after printing why Kafka tests are skipped
/// (`OPENEG_REQUIRE_KAFKA=1`: a missing variable fails instead).
pub fn kafka_brokers() -> Option<String> {
    service_env("OPENEG_TEST_KAFKA_BROKERS", "OPENEG_REQUIRE_KAFKA")
}

/// The test service address in `var`, or `None` after printing why its tests are skipped;
/// `require=1` makes a missing variable fail instead (CI).
pub fn service_env(var: &str, require: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(u) if !u.trim().is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var(require).as_deref() != Ok("1"),
                "{require}=1 but {var} is not set"
            );
            eprintln!("skipped: {var} not set");
            None
        }
    }
}

/// Creates `topic` with `partitions` on the test broker (it must not exist).
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let r = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    for t in r {
        t.unwrap();
    }
}

/// The embedded log under `dir/log`. A test restarting its engine on the same directory
/// waits (up to 15 s) for the previous engine's last tasks to release the log's lock.
pub async fn open_log(dir: &std::path::Path) -> Arc<openeg_log::SegmentLog> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match openeg_log::SegmentLog::open(dir.join("log"), openeg_log::LogConfig::default()).await
        {
            Ok(log) => return Arc::new(log),
            Err(openeg_log::LogError::Locked(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("opening the log under {}: {e}", dir.display()),
        }
    }
}

/// An engine (node `node-r`) on a SQLite store and the embedded log, routing what the log holds.
pub async fn start_engine(
    store: &Arc<openeg_store::SqliteStore>,
    log: &Arc<openeg_log::SegmentLog>,
) -> Arc<openeg_engine::Engine> {
    openeg_engine::Engine::start(
        store.clone(),
        store.clone(),
        log.clone(),
        openeg_store::secrets::SecretBox::from_key_base64(KEY).unwrap(),
        openeg_engine::EngineConfig {
            node_name: "node-r".into(),
            ..Default::default()
        },
        log.topics(),
    )
    .await
    .unwrap()
}

/// An engine on `store` and an embedded log under `dir`, with `cfg` (its `node_name`) and
/// failed tasks restarted fast (200 ms doubling to 2 s), for tests that wait on restarts.
pub async fn start_engine_fast(
    store: &Arc<openeg_store::SqliteStore>,
    dir: &std::path::Path,
    cfg: openeg_engine::EngineConfig,
) -> Arc<openeg_engine::Engine> {
    let log = open_log(dir).await;
    openeg_engine::Engine::start(
        store.clone(),
        store.clone(),
        log.clone(),
        openeg_store::secrets::SecretBox::from_key_base64(KEY).unwrap(),
        openeg_engine::EngineConfig {
            restart_backoff: openeg_engine::supervisor::Backoff {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(2),
            },
            ..cfg
        },
        log.topics(),
    )
    .await
    .unwrap()
}

pub fn pg_url() -> Option<String> {
    match std::env::var("OPENEG_TEST_DATABASE_URL") {
        Ok(u) if !u.trim().is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var("OPENEG_REQUIRE_PG").as_deref() != Ok("1"),
                "OPENEG_REQUIRE_PG=1 but OPENEG_TEST_DATABASE_URL is not set"
            );
            eprintln!("skipped: OPENEG_TEST_DATABASE_URL not set");
            None
        }
    }
}

/// A PostgreSQL store in a fresh schema of `OPENEG_TEST_DATABASE_URL` (tests never see each
/// other's rows, nor rows left by earlier runs: the retry poller and the restart release are
/// global), or `None` when PostgreSQL is not configured. Drop it with [`drop_pg_schema`].
pub async fn pg_store() -> Option<(Arc<openeg_store::PgStore>, String)> {
    use sqlx::Connection;
    let url = pg_url()?;
    let schema = format!("openeg_e_{}", unique());
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let scoped = format!("{url}{sep}options=-c%20search_path%3D{schema}");
    let store = openeg_store::PgStore::connect(&scoped).await.unwrap();
    Some((Arc::new(store), schema))
}

pub async fn drop_pg_schema(schema: &str) {
    use sqlx::Connection;
    if let Some(url) = pg_url() {
        if let Ok(mut admin) = sqlx::PgConnection::connect(&url).await {
            let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&mut admin)
                .await;
        }
    }
}

pub fn unique() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", n, std::process::id())
}

/// A webhook that answers 200 and counts the event ids it received.
pub async fn receiver() -> (String, Arc<Mutex<HashMap<String, u32>>>) {
    scripted_receiver(|_| (200, Duration::ZERO)).await
}

/// A webhook whose answer to the `n`th request (1-based) for an event id is `script(n)`: a
/// status and a delay before answering. Counts the requests per event id.
pub async fn scripted_receiver(
    script: impl Fn(u32) -> (u16, Duration) + Send + Sync + 'static,
) -> (String, Arc<Mutex<HashMap<String, u32>>>) {
    let seen: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let s = seen.clone();
    let url = http_receiver(move |body| {
        let n = match body.get("id").and_then(Value::as_str) {
            Some(id) => {
                let mut s = s.lock().unwrap();
                let n = s.entry(id.to_string()).or_default();
                *n += 1;
                *n
            }
            None => 1,
        };
        script(n)
    })
    .await;
    (url, seen)
}

/// A webhook on a free local port (its URL is returned) that hands every request's JSON body
/// to `handle` and answers with the status it returns, after the delay it returns.
pub async fn http_receiver(
    handle: impl Fn(&Value) -> (u16, Duration) + Send + Sync + 'static,
) -> String {
    let handle = Arc::new(handle);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = l.accept().await else {
                return;
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // One request: headers, then Content-Length bytes of body.
                    let (head_end, len) = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (i + 4, len);
                        }
                        let mut chunk = [0u8; 8192];
                        match c.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    while buf.len() < head_end + len {
                        let mut chunk = [0u8; 8192];
                        match c.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body: Value =
                        serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or_default();
                    buf.drain(..head_end + len);
                    let (status, delay) = handle(&body);
                    tokio::time::sleep(delay).await;
                    let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
                    if c.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// A channel with one subscription (source `app`) delivering to `url`; returns the channel id.
pub async fn channel_with_webhook(meta: &dyn MetaStore, project: &str, url: &str) -> String {
    let now = 1_700_000_000_000;
    let channel_id = format!("ch-{}", unique());
    let rec = |kind, id: &str, name: &str, parent: Option<&str>, body: Value| Document {
        project_id: project.into(),
        kind,
        id: id.into(),
        name: name.into(),
        parent_id: parent.map(str::to_string),
        created_at: now,
        updated_at: now,
        body,
        refs: Vec::new(),
    };
    meta.insert(
        &rec(
            Kind::Channel,
            &channel_id,
            "orders",
            None,
            json!({"id": channel_id, "name": "orders"}),
        ),
        &[],
    )
    .await
    .unwrap();
    // Ids are unique like the server's: a target's concurrency slot is keyed by them.
    let sub_id = format!("sub-{}", unique());
    let sub = json!({
        "id": sub_id, "name": "to-hook", "channel_id": channel_id, "status": "ENABLED",
        "sources": [{"id": "s1", "name": "app", "provider_type": "CUSTOM",
                     "filter": {"source": [{"op": "StringIn", "values": ["app"]}]}}],
        "targets": [{"id": format!("t-{sub_id}"), "name": "WEBHOOK", "provider_type": "CUSTOM",
                     "retry_times": 3, "detail": {"url": url},
                     "transform": {"type": "ORIGINAL"}}],
    });
    meta.insert(
        &rec(
            Kind::Subscription,
            &sub_id,
            "to-hook",
            Some(&channel_id),
            sub,
        ),
        &[],
    )
    .await
    .unwrap();
    channel_id
}

pub fn event(id: &str) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"id": id, "source": "app", "specversion": "1.0", "type": "t",
                               "data": {"k": 1}}),
    )
    .unwrap()
}

pub async fn wait_for(seen: &Mutex<HashMap<String, u32>>, ids: &[String]) {
    wait_for_within(seen, ids, Duration::from_secs(30)).await
}

pub async fn wait_for_within(seen: &Mutex<HashMap<String, u32>>, ids: &[String], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let missing: Vec<&String> = {
            let s = seen.lock().unwrap();
            ids.iter().filter(|id| !s.contains_key(*id)).collect()
        };
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} not delivered within {limit:?}, e.g. {:?}",
            missing.len(),
            ids.len(),
            &missing[..missing.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A channel log on Kafka at `brokers`, topics named with `prefix`, 3 partitions.
pub async fn kafka_log(brokers: &str, prefix: &str) -> Arc<openeg_log_kafka::KafkaLog> {
    let mut cfg = openeg_log_kafka::KafkaLogConfig::new(brokers);
    cfg.topic_prefix = prefix.to_string();
    cfg.partitions = 3;
    Arc::new(openeg_log_kafka::KafkaLog::connect(cfg).await.unwrap())
}

/// A cluster node `name`: an engine on the shared PostgreSQL `store` and a Kafka log.
pub async fn cluster_node(
    store: &Arc<openeg_store::PgStore>,
    brokers: &str,
    prefix: &str,
    name: &str,
) -> Arc<openeg_engine::Engine> {
    let cfg = openeg_engine::EngineConfig {
        node_name: name.into(),
        cluster: Some(openeg_engine::cluster::ClusterConfig {
            node: name.into(),
            address: format!("{name}:8080"),
            store: store.clone(),
        }),
        recent_events_bytes: openeg_engine::RECENT_EVENTS_BYTES,
        ..Default::default()
    };
    openeg_engine::Engine::start(
        store.clone(),
        store.clone(),
        kafka_log(brokers, prefix).await,
        openeg_store::secrets::SecretBox::from_key_base64(KEY).unwrap(),
        cfg,
        Vec::new(),
    )
    .await
    .unwrap()
}
