//! HC.Kafka targets against a real Kafka-API broker: records with the transformed payload,
//! the key (key transform, else the event id) and the CloudEvents `ce_*` headers; a missing
//! topic is a retried failure naming the topic, delivered once the topic exists. Needs
//! `OPENEG_TEST_KAFKA_BROKERS` (e.g. `127.0.0.1:19092`, `scripts/brokers.sh` starts one);
//! skipped without it unless `OPENEG_REQUIRE_KAFKA=1`.

mod common;

use common::{create_topic, kafka_brokers, unique, KEY};
use openeg_engine::{Engine, EngineConfig};
use openeg_log::{LogConfig, SegmentLog};
use openeg_store::delivery::{DeadLetterState, DeliveryStatus, DeliveryStore};
use openeg_store::secrets::SecretBox;
use openeg_store::{Document, Kind, MetaStore, SqliteStore};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const P: &str = "p-kafka";

/// One consumed record.
#[derive(Debug)]
struct Rec {
    key: Option<String>,
    value: Value,
    headers: HashMap<String, String>,
}

/// Reads `topic` (partition 0) from the beginning until `want` records arrived.
fn consume(brokers: &str, topic: &str, want: usize, limit: Duration) -> Vec<Rec> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("openeg-test-{}", unique()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    while out.len() < want {
        assert!(
            Instant::now() < deadline,
            "{topic}: {} of {want} records within {limit:?}",
            out.len()
        );
        let Some(m) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.unwrap();
        let mut headers = HashMap::new();
        if let Some(h) = m.headers() {
            for h in h.iter() {
                let v = String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned();
                headers.insert(h.key.to_string(), v);
            }
        }
        out.push(Rec {
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            value: serde_json::from_slice(m.payload().unwrap_or_default()).unwrap(),
            headers,
        });
    }
    out
}

fn doc(kind: Kind, id: &str, parent: Option<&str>, body: Value) -> Document {
    Document {
        project_id: P.into(),
        kind,
        id: id.into(),
        name: id.into(),
        parent_id: parent.map(str::to_string),
        created_at: 1_700_000_000_000,
        updated_at: 1_700_000_000_000,
        body,
        refs: Vec::new(),
    }
}

/// A channel with one subscription per `(topic, transform, key transform)` target; returns
/// the channel id and the subscription ids.
async fn channel_to_kafka(
    store: &SqliteStore,
    conn: &str,
    targets: &[(&str, Value, Option<Value>)],
) -> (String, Vec<String>) {
    let ch = format!("ch-{}", unique());
    store
        .insert(
            &doc(Kind::Channel, &ch, None, json!({"id": ch, "name": ch})),
            &[],
        )
        .await
        .unwrap();
    let mut subs = Vec::new();
    for (i, (topic, transform, key)) in targets.iter().enumerate() {
        let sub = format!("sub-{i}-{}", unique());
        let mut detail = json!({"topic": topic});
        if let Some(k) = key {
            detail["keyTransform"] = k.clone();
        }
        let body = json!({
            "id": sub, "name": sub, "channel_id": ch, "status": "ENABLED",
            "sources": [{"id": "s1", "name": "app", "provider_type": "CUSTOM",
                         "filter": {"source": [{"op": "StringIn", "values": ["app"]}]}}],
            "targets": [{"id": format!("t-{sub}"), "name": "HC.Kafka",
                         "provider_type": "OFFICIAL", "connection_id": conn,
                         "retry_times": 16, "kafka_detail": detail, "transform": transform}],
        });
        store
            .insert(&doc(Kind::Subscription, &sub, Some(&ch), body), &[])
            .await
            .unwrap();
        subs.push(sub);
    }
    (ch, subs)
}

fn event(i: usize) -> Vec<u8> {
    let mut e = json!({"id": format!("e-{i}"), "source": "app", "specversion": "1.0",
                       "type": "order.created", "data": {"n": i}});
    if i & 1 == 0 {
        e["subject"] = json!(format!("s-{i}"));
    } else {
        e["time"] = json!("2024-05-01T10:00:00Z");
    }
    serde_json::to_vec(&e).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_targets_deliver_records_and_retry_a_missing_topic() {
    let Some(brokers) = kafka_brokers() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("openeg-kafka-{}", unique()));
    let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    let secrets = SecretBox::from_key_base64(KEY).unwrap();
    // The connection as the server stores it (password sealed; not used: PLAINTEXT).
    let conn = format!("conn-{}", unique());
    let body = json!({"id": conn, "name": "k", "type": "KAFKA", "vpc_id": "v", "subnet_id": "s",
        "kafka_detail": {"instance_id": "i", "addr": brokers, "security_protocol": "PLAINTEXT",
                         "enable_sasl_ssl": false, "acks": "all",
                         "password": secrets.encrypt("unused")}});
    store
        .insert(&doc(Kind::Connection, &conn, None, body), &[])
        .await
        .unwrap();

    let u = unique();
    let (t_plain, t_keyed, t_missing) = (
        format!("openeg-plain-{u}"),
        format!("openeg-keyed-{u}"),
        format!("openeg-missing-{u}"),
    );
    create_topic(&brokers, &t_plain, 1).await;
    create_topic(&brokers, &t_keyed, 1).await;
    let variable = json!({"type": "VARIABLE", "value": "{\"n\":\"$.data.n\"}",
                          "template": "{\"n\":${n}}"});
    let key = json!({"type": "VARIABLE", "value": "{\"n\":\"$.data.n\"}",
                     "template": "key-${n}"});
    let original = json!({"type": "ORIGINAL"});
    let (ch, _) = channel_to_kafka(
        &store,
        &conn,
        &[
            (&t_plain, variable, None),
            (&t_keyed, original.clone(), Some(key)),
        ],
    )
    .await;
    let (ch_missing, subs_missing) =
        channel_to_kafka(&store, &conn, &[(&t_missing, original, None)]).await;

    let log = Arc::new(
        SegmentLog::open(dir.join("log"), LogConfig::default())
            .await
            .unwrap(),
    );
    let engine = Engine::start(
        store.clone(),
        store.clone(),
        log.clone(),
        secrets,
        EngineConfig::default(),
        log.topics(),
    )
    .await
    .unwrap();

    const N: usize = 200;
    let events: Vec<Vec<u8>> = (0..N).map(event).collect();
    for chunk in events.chunks(50) {
        engine.publish_texts(P, &ch, chunk).await.unwrap();
    }
    engine
        .publish_texts(P, &ch_missing, &[event(1000)])
        .await
        .unwrap();

    // Every event arrives (at least once) with its payload, key and headers.
    let (b, tp, tk) = (brokers.clone(), t_plain.clone(), t_keyed.clone());
    let (plain, keyed) = tokio::task::spawn_blocking(move || {
        let limit = Duration::from_secs(60);
        (consume(&b, &tp, N, limit), consume(&b, &tk, N, limit))
    })
    .await
    .unwrap();
    let by_id = |recs: &[Rec]| -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for r in recs {
            *m.entry(r.headers["ce_id"].clone()).or_default() += 1;
        }
        m
    };
    let (plain_ids, keyed_ids) = (by_id(&plain), by_id(&keyed));
    for i in 0..N {
        let id = format!("e-{i}");
        assert!(plain_ids.contains_key(&id), "{id} missing from {t_plain}");
        assert!(keyed_ids.contains_key(&id), "{id} missing from {t_keyed}");
    }
    for r in &plain {
        let id = &r.headers["ce_id"];
        let i: usize = id.trim_start_matches("e-").parse().unwrap();
        assert_eq!(r.value, json!({"n": i}), "{r:?}");
        assert_eq!(
            r.key.as_deref(),
            Some(id.as_str()),
            "default key is the event id"
        );
        assert_eq!(r.headers["ce_specversion"], "1.0");
        assert_eq!(r.headers["ce_source"], "app");
        assert_eq!(r.headers["ce_type"], "order.created");
        if i & 1 == 0 {
            assert_eq!(r.headers["ce_subject"], format!("s-{i}"));
            assert!(!r.headers.contains_key("ce_time"), "{r:?}");
        } else {
            assert_eq!(r.headers["ce_time"], "2024-05-01T10:00:00Z");
            assert!(!r.headers.contains_key("ce_subject"), "{r:?}");
        }
    }
    for r in &keyed {
        let i: usize = r.headers["ce_id"].trim_start_matches("e-").parse().unwrap();
        assert_eq!(r.key.as_deref(), Some(format!("key-{i}").as_str()));
        // ORIGINAL: the event as published.
        let sent: Value = serde_json::from_slice(&event(i)).unwrap();
        assert_eq!(r.value, sent);
    }

    // The missing topic: the delivery is RETRYING, its attempts name the Kafka error.
    let deadline = Instant::now() + Duration::from_secs(60);
    let d = loop {
        let ds = store.event_deliveries(P, &ch_missing, 0).await.unwrap();
        if let Some(d) = ds.first().filter(|d| d.status == DeliveryStatus::Retrying) {
            break d.clone();
        }
        assert!(Instant::now() < deadline, "no retrying delivery: {ds:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(d.subscription_id, subs_missing[0]);
    let code = &d.recent.first().expect("an attempt is recorded").code;
    assert!(code.starts_with("UnknownTopic"), "{d:?}");

    // Once the topic exists, a retry delivers the event.
    create_topic(&brokers, &t_missing, 1).await;
    let (b, tm) = (brokers.clone(), t_missing.clone());
    let late = tokio::task::spawn_blocking(move || consume(&b, &tm, 1, Duration::from_secs(90)))
        .await
        .unwrap();
    assert_eq!(late[0].headers["ce_id"], "e-1000");
    assert_eq!(late[0].key.as_deref(), Some("e-1000"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ds = store.event_deliveries(P, &ch_missing, 0).await.unwrap();
        if ds.first().map(|d| d.status) == Some(DeliveryStatus::Succeeded) {
            assert!(ds[0].attempts >= 2, "{ds:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not recorded as delivered: {ds:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    engine.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits until every delivery of `ch` (one per event offset in `0..n`) has the dead-letter
/// state `state`; returns them.
async fn wait_dead_letters(
    store: &SqliteStore,
    ch: &str,
    n: u64,
    state: DeadLetterState,
    limit: Duration,
) -> Vec<openeg_store::delivery::Delivery> {
    let deadline = Instant::now() + limit;
    loop {
        let mut all = Vec::new();
        for off in 0..n {
            all.extend(store.event_deliveries(P, ch, off).await.unwrap());
        }
        if all.len() as u64 == n && all.iter().all(|d| d.dead_letter.state == state) {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "not all {state:?} within {limit:?}: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A webhook target that fails for good lands each event in its Kafka dead-letter topic:
/// value = the original event, key = its id, the `eg-*` headers. While the dead-letter topic
/// is missing, the record waits (`DEAD_LETTER`, publishes retried), and is published once the
/// topic exists: nothing is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_events_go_to_the_dead_letter_topic() {
    let Some(brokers) = kafka_brokers() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("openeg-dlq-{}", unique()));
    let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    let secrets = SecretBox::from_key_base64(KEY).unwrap();
    let conn = format!("conn-{}", unique());
    let body = json!({"id": conn, "name": "k", "type": "KAFKA", "vpc_id": "v", "subnet_id": "s",
        "kafka_detail": {"instance_id": "i", "addr": brokers, "security_protocol": "PLAINTEXT",
                         "acks": "all"}});
    store
        .insert(&doc(Kind::Connection, &conn, None, body), &[])
        .await
        .unwrap();
    // 503 then 503: retried once (retry_times 1), then given up. 400: not retried.
    let (url_503, _) = common::scripted_receiver(|_| (503, Duration::ZERO)).await;
    let (url_400, _) = common::scripted_receiver(|_| (400, Duration::ZERO)).await;
    let u = unique();
    let (dlq_ok, dlq_late) = (format!("openeg-dlq-{u}"), format!("openeg-dlq-late-{u}"));
    create_topic(&brokers, &dlq_ok, 1).await;

    let mut channels = Vec::new();
    for (url, topic, retry_times) in [(&url_503, &dlq_ok, 1), (&url_400, &dlq_late, 5)] {
        let ch = format!("ch-{}", unique());
        store
            .insert(
                &doc(Kind::Channel, &ch, None, json!({"id": ch, "name": ch})),
                &[],
            )
            .await
            .unwrap();
        let sub = format!("sub-{}", unique());
        let body = json!({
            "id": sub, "name": sub, "channel_id": ch, "status": "ENABLED",
            "sources": [{"id": "s1", "name": "app", "provider_type": "CUSTOM",
                         "filter": {"source": [{"op": "StringIn", "values": ["app"]}]}}],
            "targets": [{"id": format!("t-{sub}"), "name": "WEBHOOK",
                         "provider_type": "CUSTOM", "retry_times": retry_times,
                         "detail": {"url": url, "protocol": "HTTP"},
                         "dead_letter_queue": {"type": "KAFKA", "connection_id": conn,
                                               "topic": topic},
                         "transform": {"type": "VARIABLE", "value": "{\"n\":\"$.data.n\"}",
                                       "template": "{\"n\":${n}}"}}],
        });
        store
            .insert(&doc(Kind::Subscription, &sub, Some(&ch), body), &[])
            .await
            .unwrap();
        channels.push((ch, sub));
    }

    let log = Arc::new(
        SegmentLog::open(dir.join("log"), LogConfig::default())
            .await
            .unwrap(),
    );
    let engine = Engine::start(
        store.clone(),
        store.clone(),
        log.clone(),
        secrets,
        EngineConfig {
            poll_interval: Duration::from_millis(100),
            ..EngineConfig::default()
        },
        log.topics(),
    )
    .await
    .unwrap();
    const N: usize = 20;
    let events: Vec<Vec<u8>> = (0..N).map(event).collect();
    for (ch, _) in &channels {
        engine.publish_texts(P, ch, &events).await.unwrap();
    }

    // Retried once (about 1 s), then the record is published.
    let (ch, sub) = &channels[0];
    let sent = wait_dead_letters(
        &store,
        ch,
        N as u64,
        DeadLetterState::Sent,
        Duration::from_secs(60),
    )
    .await;
    assert!(sent
        .iter()
        .all(|d| d.status == DeliveryStatus::Failed && d.attempts == 2));
    let (b, t) = (brokers.clone(), dlq_ok.clone());
    let recs = tokio::task::spawn_blocking(move || consume(&b, &t, N, Duration::from_secs(60)))
        .await
        .unwrap();
    let mut seen = std::collections::HashSet::new();
    for r in &recs {
        let id = r.key.clone().expect("keyed by the event id");
        let i: usize = id.trim_start_matches("e-").parse().unwrap();
        let original: Value = serde_json::from_slice(&event(i)).unwrap();
        assert_eq!(r.value, original, "the untransformed event");
        assert_eq!(r.headers["eg-subscription-id"], *sub);
        assert_eq!(r.headers["eg-target-id"], format!("t-{sub}"));
        assert_eq!(r.headers["eg-attempts"], "2");
        assert_eq!(r.headers["eg-last-status"], "503");
        let t = chrono::DateTime::parse_from_rfc3339(&r.headers["eg-failed-time"]).unwrap();
        assert!(r.headers["eg-failed-time"].ends_with('Z'));
        assert!((chrono::Utc::now() - t.to_utc()).num_seconds() < 120);
        seen.insert(id);
    }
    assert_eq!(seen.len(), N);

    // 400 is not retried; the dead-letter topic does not exist yet: publishes fail and wait.
    let (ch, _) = &channels[1];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ds = store.event_deliveries(P, ch, 0).await.unwrap();
        if let Some(d) = ds.first().filter(|d| d.dead_letter.tries >= 2) {
            assert_eq!(d.status, DeliveryStatus::DeadLetter);
            assert_eq!(d.dead_letter.state, DeadLetterState::Pending);
            assert_eq!(d.attempts, 1, "400 is not retried");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failed dead-letter publish: {ds:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    create_topic(&brokers, &dlq_late, 1).await;
    wait_dead_letters(
        &store,
        ch,
        N as u64,
        DeadLetterState::Sent,
        Duration::from_secs(90),
    )
    .await;
    let (b, t) = (brokers.clone(), dlq_late.clone());
    let recs = tokio::task::spawn_blocking(move || consume(&b, &t, N, Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(recs
        .iter()
        .all(|r| r.headers["eg-last-status"] == "400" && r.headers["eg-attempts"] == "1"));
    let metrics = engine.metrics.render();
    assert!(
        metrics.contains(&format!("openeg_dead_letters_sent_total {}", 2 * N)),
        "{metrics}"
    );
    assert!(metrics.contains("openeg_dead_letters_dropped_total 0"));

    engine.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
