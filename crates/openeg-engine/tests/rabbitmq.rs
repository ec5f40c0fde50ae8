//! RABBITMQ custom event sources against a real broker: consuming into the channel and on to
//! a webhook, status from the connection (wrong password, fixed by an update), and no loss
//! across engine restarts; in a cluster (two nodes on PostgreSQL and a Kafka log, also
//! needing `OPENEG_TEST_DATABASE_URL` and `OPENEG_TEST_KAFKA_BROKERS`), one node consumes and
//! the other takes over when it stops. Needs `OPENEG_TEST_RABBITMQ_URL` (e.g.
//! `amqp://guest:guest@127.0.0.1:5672/%2f`); skipped without it unless
//! `OPENEG_REQUIRE_RABBITMQ=1`.

mod common;

use common::{channel_with_webhook, open_log, start_engine, unique, KEY};
use lapin::options::{BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use openeg_engine::{Engine, ResourceKind, RunState, RuntimeStatus, TaskKind};
use openeg_store::secrets::SecretBox;
use openeg_store::{Document, Kind, MetaStore, SqliteStore};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const P: &str = "p-rabbit";

fn rabbit_url() -> Option<String> {
    match std::env::var("OPENEG_TEST_RABBITMQ_URL") {
        Ok(u) if !u.trim().is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var("OPENEG_REQUIRE_RABBITMQ").as_deref() != Ok("1"),
                "OPENEG_REQUIRE_RABBITMQ=1 but OPENEG_TEST_RABBITMQ_URL is not set"
            );
            eprintln!("skipped: OPENEG_TEST_RABBITMQ_URL not set");
            None
        }
    }
}

/// The test broker: an admin channel, and a source `detail` (password sealed as the server
/// stores it) for a queue.
struct Broker {
    _conn: Connection,
    ch: Channel,
    uri: AMQPUri,
    secrets: SecretBox,
}

impl Broker {
    async fn connect(url: &str) -> Broker {
        let uri: AMQPUri = url.parse().unwrap();
        let conn = Connection::connect(url, ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        Broker {
            _conn: conn,
            ch,
            uri,
            secrets: SecretBox::from_key_base64(KEY).unwrap(),
        }
    }

    async fn queue(&self) -> String {
        let q = format!("openeg-test-{}", unique());
        self.ch
            .queue_declare(
                q.as_str().into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        q
    }

    async fn delete(&self, q: &str) {
        let _ = self
            .ch
            .queue_delete(q.into(), QueueDeleteOptions::default())
            .await;
    }

    /// `q` as the broker reports it now (a passive declare).
    async fn inspect(&self, q: &str) -> lapin::Queue {
        self.ch
            .queue_declare(
                q.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap()
    }

    /// Messages ready in `q` (unacknowledged ones are not counted while their consumer's
    /// connection is open).
    async fn ready(&self, q: &str) -> u32 {
        self.inspect(q).await.message_count()
    }

    /// Consumers of `q` now.
    async fn consumers(&self, q: &str) -> u32 {
        self.inspect(q).await.consumer_count()
    }

    async fn publish(&self, q: &str, body: &[u8], props: BasicProperties) {
        self.ch
            .basic_publish(
                "".into(),
                q.into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    fn detail(&self, queue: &str, password: &str) -> Value {
        let a = &self.uri.authority;
        json!({
            "instance_id": format!("amqp://{}:{}", a.host, a.port),
            "vhost_name": self.uri.vhost,
            "queue_name": queue,
            "user_name": a.userinfo.username,
            "password": self.secrets.encrypt(password),
        })
    }

    fn password(&self) -> &str {
        &self.uri.authority.userinfo.password
    }
}

/// A RABBITMQ source named `app` (the name `channel_with_webhook`'s subscription matches).
fn source_record(id: &str, channel_id: &str, detail: Value) -> Document {
    named_source_record(id, "app", channel_id, detail)
}

fn named_source_record(id: &str, name: &str, channel_id: &str, detail: Value) -> Document {
    Document {
        project_id: P.into(),
        kind: Kind::Source,
        id: id.into(),
        name: name.into(),
        parent_id: Some(channel_id.into()),
        created_at: 1,
        updated_at: 1,
        body: json!({
            "id": id, "name": name, "type": "RABBITMQ", "provider_type": "CUSTOM",
            "channel_id": channel_id, "detail": detail,
        }),
        refs: Vec::new(),
    }
}

fn status(engine: &Engine, id: &str) -> Option<RuntimeStatus> {
    engine.runtime_status(TaskKind::EventSource, P, id)
}

/// Waits until the source's status satisfies `cond`; panics with the last status after
/// `limit`.
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

/// A webhook answering 200 that keeps every request body by event id.
async fn body_receiver() -> (String, Arc<Mutex<HashMap<String, Value>>>) {
    let seen: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
    let s = seen.clone();
    let url = common::http_receiver(move |body| {
        if let Some(id) = body.get("id").and_then(Value::as_str) {
            s.lock().unwrap().insert(id.to_string(), body.clone());
        }
        (200, Duration::ZERO)
    })
    .await;
    (url, seen)
}

async fn wait_delivered(seen: &Mutex<HashMap<String, Value>>, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let got = seen.lock().unwrap().len();
        if got >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{got} of {n} delivered within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The message ids of every event in the channel's log, with repeats.
async fn logged_ids(engine: &Engine, channel_id: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut offset = 0;
    while let Some(raw) = engine.read_event(P, channel_id, offset).await.unwrap() {
        let ev: Value = serde_json::from_slice(&raw).unwrap();
        ids.push(ev["id"].as_str().unwrap_or_default().to_string());
        offset += 1;
    }
    ids
}

#[tokio::test]
async fn a_queue_is_consumed_into_the_channel_and_delivered() {
    let Some(url) = rabbit_url() else { return };
    let broker = Broker::connect(&url).await;
    let q = broker.queue().await;
    let dir = std::env::temp_dir().join(format!("openeg-rabbit-{}", unique()));
    let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    let (hook, seen) = body_receiver().await;
    let ch = channel_with_webhook(store.as_ref(), P, &hook).await;
    let detail = broker.detail(&q, broker.password());
    store
        .insert(&source_record("src-1", &ch, detail), &[])
        .await
        .unwrap();
    let log = open_log(&dir).await;
    let engine = start_engine(&store, &log).await;
    wait_status(&engine, "src-1", Duration::from_secs(10), |s| {
        s.state == RunState::Running
    })
    .await;

    const N: usize = 500;
    for i in 0..N {
        let mut headers = FieldTable::default();
        headers.insert("x-i".into(), AMQPValue::LongLongInt(i as i64));
        let props = BasicProperties::default()
            .with_message_id(format!("m-{i}").into())
            .with_headers(headers);
        let (body, props) = match i % 3 {
            0 => (json!({"i": i}).to_string().into_bytes(), props),
            1 => (
                format!("text {i}").into_bytes(),
                props
                    .with_timestamp(1_700_000_000 + i as u64)
                    .with_content_type("text/plain".into()),
            ),
            _ => (vec![0xff, 0xfe, (i % 256) as u8], props),
        };
        broker.publish(&q, &body, props).await;
    }
    // Too large for an event (64 KiB): rejected without requeue, the rest flows on.
    let big = vec![b'x'; 70_000];
    let props = BasicProperties::default().with_message_id("big".into());
    broker.publish(&q, &big, props).await;
    broker
        .publish(
            &q,
            b"{}",
            BasicProperties::default().with_message_id("after-big".into()),
        )
        .await;
    wait_delivered(&seen, N + 1, Duration::from_secs(60)).await;
    assert!(seen.lock().unwrap().contains_key("after-big"));
    assert!(!seen.lock().unwrap().contains_key("big"));
    let subject = format!("vhosts/{}/queues/{q}", broker.uri.vhost.replace('/', "%2F"));
    {
        let seen = seen.lock().unwrap();
        for i in 0..N {
            let ev = &seen[&format!("m-{i}")];
            assert_eq!(ev["source"], "app", "{ev}");
            assert_eq!(ev["specversion"], "1.0");
            assert_eq!(ev["type"], "RABBITMQ:CloudTrace:message");
            assert_eq!(ev["subject"], subject.as_str());
            assert_eq!(ev["datacontenttype"], "application/json");
            let meta = &ev["data"]["meta"];
            assert_eq!(
                (&meta["exchange"], &meta["routingKey"], &meta["redeliver"]),
                (&json!(""), &json!(q), &json!(false)),
                "{ev}"
            );
            assert_eq!(meta["headers"], json!({"x-i": i}));
            let ctx = &ev["data"]["context"];
            match i % 3 {
                0 => assert_eq!(*ctx, json!({"i": i})),
                1 => {
                    assert_eq!(*ctx, json!(format!("text {i}")));
                    assert_eq!(meta["contentType"], "text/plain");
                    let t = chrono_like(1_700_000_000 + i as i64);
                    assert_eq!(ev["time"], t.as_str());
                }
                _ => {
                    assert_eq!(ev["data"]["contextEncoding"], "base64");
                    assert!(ctx.is_string());
                }
            }
        }
    }
    // Everything was acknowledged: nothing is ready now, and nothing comes back when the
    // consumer's connection closes (unacknowledged messages would).
    let deadline = Instant::now() + Duration::from_secs(10);
    while broker.ready(&q).await > 0 {
        assert!(Instant::now() < deadline, "messages left in the queue");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status(&engine, "src-1").unwrap().state, RunState::Running);
    tokio::time::sleep(Duration::from_millis(300)).await;
    engine.shutdown().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        broker.ready(&q).await,
        0,
        "unacknowledged messages came back"
    );
    assert_eq!(logged_ids(&engine, &ch).await.len(), N + 1);
    broker.delete(&q).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// RFC 3339 UTC of a Unix time in seconds, without a date library: days from the civil
/// algorithm (Howard Hinnant's `civil_from_days`).
fn chrono_like(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[tokio::test]
async fn connection_failures_show_error_until_the_source_is_fixed() {
    let Some(url) = rabbit_url() else { return };
    let broker = Broker::connect(&url).await;
    let q = broker.queue().await;
    let dir = std::env::temp_dir().join(format!("openeg-rabbit-{}", unique()));
    let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    let (hook, seen) = body_receiver().await;
    let ch = channel_with_webhook(store.as_ref(), P, &hook).await;
    let wrong = "wrong-pass-e2e-secret";
    store
        .insert(&source_record("src-pw", &ch, broker.detail(&q, wrong)), &[])
        .await
        .unwrap();
    let mut missing = broker.detail(&format!("{q}-missing"), broker.password());
    store
        .insert(
            &named_source_record("src-q", "app-q", &ch, missing.clone()),
            &[],
        )
        .await
        .unwrap();
    let mut unreachable = missing.clone();
    unreachable["instance_id"] = json!("amqp://127.0.0.1:9");
    store
        .insert(
            &named_source_record("src-host", "app-host", &ch, unreachable),
            &[],
        )
        .await
        .unwrap();
    let log = open_log(&dir).await;
    let engine = start_engine(&store, &log).await;

    let failed = |s: &RuntimeStatus| s.state == RunState::Error && s.restarts >= 1;
    for (id, expect) in [
        ("src-pw", "ACCESS_REFUSED"),
        ("src-q", "NOT_FOUND"),
        ("src-host", "127.0.0.1:9"),
    ] {
        let st = wait_status(&engine, id, Duration::from_secs(10), failed).await;
        let e = st.error.unwrap();
        assert_eq!(e.code, "EG.00511000");
        assert!(e.message.contains(expect), "{id}: {}", e.message);
        assert!(!e.message.contains(wrong), "{}", e.message);
        assert_eq!(st.node_name, "node-r");
    }
    // Still failing a while later: restarted with backoff, never RUNNING.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let st = status(&engine, "src-pw").unwrap();
    assert_eq!(st.state, RunState::Error);
    assert!(st.restarts >= 2, "{st:?}");

    // The fix: the right password, then the change hook. Running within 2 s, and consuming.
    let mut rec = store.get(P, Kind::Source, "src-pw").await.unwrap().unwrap();
    rec.body["detail"] = broker.detail(&q, broker.password());
    store.update(&rec).await.unwrap();
    let fixed_at = Instant::now();
    engine
        .resource_changed(ResourceKind::EventSource, P, "src-pw")
        .await;
    wait_status(&engine, "src-pw", Duration::from_secs(2), |s| {
        s.state == RunState::Running && s.error.is_none()
    })
    .await;
    assert!(fixed_at.elapsed() < Duration::from_secs(2));
    for i in 0..10 {
        let props = BasicProperties::default().with_message_id(format!("fixed-{i}").into());
        broker.publish(&q, b"{}", props).await;
    }
    wait_delivered(&seen, 10, Duration::from_secs(10)).await;

    // A missing queue that appears is picked up by the next restart (backoff ≤ 60 s; the
    // hook restarts it at once).
    let q2 = format!("{q}-missing");
    broker
        .ch
        .queue_declare(
            q2.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut rec = store.get(P, Kind::Source, "src-q").await.unwrap().unwrap();
    missing["password"] = json!(broker.secrets.encrypt(broker.password()));
    rec.body["detail"] = missing;
    store.update(&rec).await.unwrap();
    engine
        .resource_changed(ResourceKind::EventSource, P, "src-q")
        .await;
    wait_status(&engine, "src-q", Duration::from_secs(2), |s| {
        s.state == RunState::Running
    })
    .await;

    // A queue deleted under a running source: ERROR, then RUNNING again once it is back.
    broker.delete(&q2).await;
    wait_status(&engine, "src-q", Duration::from_secs(5), |s| {
        s.state == RunState::Error
    })
    .await;
    broker
        .ch
        .queue_declare(
            q2.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    wait_status(&engine, "src-q", Duration::from_secs(10), |s| {
        s.state == RunState::Running
    })
    .await;

    engine.shutdown().await;
    broker.delete(&q).await;
    broker.delete(&q2).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn nothing_is_lost_when_the_engine_stops_mid_stream() {
    let Some(url) = rabbit_url() else { return };
    let broker = Arc::new(Broker::connect(&url).await);
    let q = broker.queue().await;
    let dir = std::env::temp_dir().join(format!("openeg-rabbit-{}", unique()));
    let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    let ch = format!("ch-{}", unique());
    store
        .insert(
            &source_record("src-r", &ch, broker.detail(&q, broker.password())),
            &[],
        )
        .await
        .unwrap();

    // Published before the engine runs at all.
    const BEFORE: usize = 200;
    const TOTAL: usize = 2000;
    let id = |i: usize| format!("r-{i}");
    for i in 0..BEFORE {
        let props = BasicProperties::default().with_message_id(id(i).into());
        broker.publish(&q, b"{}", props).await;
    }
    let log = open_log(&dir).await;
    let engine = start_engine(&store, &log).await;
    // Keep publishing while the engine consumes, and stop it mid-stream.
    let publisher = {
        let broker = broker.clone();
        let q = q.clone();
        tokio::spawn(async move {
            for i in BEFORE..TOTAL {
                let props = BasicProperties::default().with_message_id(id(i).into());
                broker.publish(&q, b"{}", props).await;
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while logged_ids(&engine, &ch).await.len() < BEFORE + 100 {
        assert!(Instant::now() < deadline, "nothing consumed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    engine.shutdown().await;
    let at_stop = logged_ids(&engine, &ch).await.len();
    drop(engine);
    assert!(at_stop < TOTAL, "the engine should stop mid-stream");
    publisher.await.unwrap();

    // After the restart every message is in the log (repeats allowed: at-least-once), and
    // the queue is drained.
    let engine = start_engine(&store, &log).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ids = logged_ids(&engine, &ch).await;
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        if distinct.len() == TOTAL {
            assert!((0..TOTAL).all(|i| distinct.contains(&id(i))));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {TOTAL} messages in the log",
            distinct.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while broker.ready(&q).await > 0 {
        assert!(Instant::now() < deadline, "messages left in the queue");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    engine.shutdown().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        broker.ready(&q).await,
        0,
        "unacknowledged messages came back"
    );
    broker.delete(&q).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_a_cluster_one_node_consumes_and_another_takes_over_when_it_stops() {
    let Some(url) = rabbit_url() else { return };
    let Some(brokers) = common::kafka_brokers() else {
        return;
    };
    let Some((store, schema)) = common::pg_store().await else {
        return;
    };
    let broker = Broker::connect(&url).await;
    let q = broker.queue().await;
    let (hook, seen) = body_receiver().await;
    let ch = channel_with_webhook(&*store, P, &hook).await;
    store
        .insert(
            &source_record("src-c", &ch, broker.detail(&q, broker.password())),
            &[],
        )
        .await
        .unwrap();
    let prefix = format!("openeg-t{}.", unique());
    let a = common::cluster_node(&store, &brokers, &prefix, "node-a").await;
    let b = common::cluster_node(&store, &brokers, &prefix, "node-b").await;

    // One node runs the source, and both report that node's status.
    let running = |s: &RuntimeStatus| s.state == RunState::Running;
    let owner = wait_status(&a, "src-c", Duration::from_secs(30), running)
        .await
        .node_name;
    // It may move once when node-b joins; then both agree on the owner.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let owner_a = wait_status(&a, "src-c", Duration::from_secs(10), running)
        .await
        .node_name;
    let owner_b = wait_status(&b, "src-c", Duration::from_secs(10), running)
        .await
        .node_name;
    assert_eq!(
        owner_a, owner_b,
        "both nodes show the owner's status (first: {owner})"
    );
    assert_eq!(broker.consumers(&q).await, 1, "one node consumes");

    const N: usize = 100;
    let publish = |from: usize| {
        let broker = &broker;
        let q = &q;
        async move {
            for i in from..from + N {
                let props = BasicProperties::default().with_message_id(format!("c-{i}").into());
                broker
                    .publish(q, json!({"i": i}).to_string().as_bytes(), props)
                    .await;
            }
        }
    };
    publish(0).await;
    wait_delivered(&seen, N, Duration::from_secs(60)).await;
    assert_eq!(broker.consumers(&q).await, 1, "still one consumer");

    // The owner stops (its lease goes back): the other node takes the source over.
    let (gone, survivor, survivor_name) = if owner_a == "node-a" {
        (a, b, "node-b")
    } else {
        (b, a, "node-a")
    };
    gone.shutdown().await;
    let t0 = Instant::now();
    wait_status(&survivor, "src-c", Duration::from_secs(20), |s| {
        s.state == RunState::Running && s.node_name == survivor_name
    })
    .await;
    eprintln!("taken over in {:?}", t0.elapsed());
    publish(N).await;
    wait_delivered(&seen, 2 * N, Duration::from_secs(60)).await;
    assert_eq!(broker.consumers(&q).await, 1);
    let got = seen.lock().unwrap().clone();
    for i in 0..2 * N {
        let ev = got.get(&format!("c-{i}")).expect("every message delivered");
        assert_eq!(ev["data"]["context"], json!({"i": i}));
    }
    survivor.shutdown().await;
    broker.delete(&q).await;
    common::drop_pg_schema(&schema).await;
}
