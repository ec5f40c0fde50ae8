//! Two nodes on one store never touch each other's work (issue #12, part 6): a node starting
//! beside a live one releases only its own claims, and its poller does not claim a delivery
//! another node holds a lease on.
//!
//! Node A's first attempt of an event fails (500), so the event becomes a retrying delivery
//! that A's poller claims; the webhook holds that second attempt for a few seconds. While it
//! hangs, node B starts on the same store with its own log, which does not hold the event:
//! had B released or claimed A's delivery, it would have attempted it a third time or given
//! it up as "no longer in the log". Instead exactly two requests arrive and the delivery
//! ends succeeded after two attempts. SQLite (one file, two handles) always; PostgreSQL
//! when `OPENEG_TEST_DATABASE_URL` is set.

mod common;

use common::{
    channel_with_webhook, drop_pg_schema, event, pg_store, scripted_receiver, unique,
    wait_for_within,
};
use openeg_engine::{Engine, EngineConfig};
use openeg_log::{LogConfig, SegmentLog};
use openeg_store::delivery::{DeliveryStatus, DeliveryStore};
use openeg_store::secrets::SecretBox;
use openeg_store::{MetaStore, SqliteStore};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const HOLD: Duration = Duration::from_secs(3);

async fn engine<S>(store: Arc<S>, dir: &Path, node: &str) -> Arc<Engine>
where
    S: MetaStore + DeliveryStore + 'static,
{
    let log = Arc::new(
        SegmentLog::open(dir.join(node), LogConfig::default())
            .await
            .unwrap(),
    );
    let key = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
    let cfg = EngineConfig {
        node_name: node.to_string(),
        poll_interval: Duration::from_millis(50),
        ..EngineConfig::default()
    };
    Engine::start(
        store.clone(),
        store,
        log.clone(),
        SecretBox::from_key_base64(key).unwrap(),
        cfg,
        log.topics(),
    )
    .await
    .unwrap()
}

/// Waits until `id` has had `n` requests.
async fn wait_requests(
    seen: &std::sync::Mutex<std::collections::HashMap<String, u32>>,
    id: &str,
    n: u32,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = seen.lock().unwrap().get(id).copied().unwrap_or(0);
        if got >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{id}: {got} of {n} requests within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn second_node_leaves_the_first_nodes_claim_alone<S, F, Fut>(open: F, label: &str)
where
    S: MetaStore + DeliveryStore + 'static,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<S>>,
{
    let dir = std::env::temp_dir().join(format!("openeg-nodes-{}", unique()));
    // 1st attempt: 500 at once; 2nd (the claimed retry): held, then 200; any more: 200.
    let (hook, seen) = scripted_receiver(|n| match n {
        1 => (500, Duration::ZERO),
        2 => (200, HOLD),
        _ => (200, Duration::ZERO),
    })
    .await;
    let store_a = open().await;
    let project = format!("pn{}", unique());
    let channel = channel_with_webhook(&*store_a, &project, &hook).await;
    let a = engine(store_a.clone(), &dir, "node-a").await;
    a.publish_texts(&project, &channel, &[event("e1")])
        .await
        .unwrap();
    // The retry (about 1 s after the failure) is claimed by A's poller and now hangs.
    wait_requests(&seen, "e1", 2).await;
    let held_since = Instant::now();
    let store_b = open().await;
    let b = engine(store_b.clone(), &dir, "node-b").await;
    // B's start and a few dozen of its polls fall inside A's held attempt.
    tokio::time::sleep(HOLD.saturating_sub(held_since.elapsed()) + Duration::from_secs(1)).await;
    let deliveries = store_b
        .event_deliveries(&project, &channel, 0)
        .await
        .unwrap();
    assert_eq!(deliveries.len(), 1, "{label}: {deliveries:?}");
    let d = &deliveries[0];
    assert_eq!(
        d.status,
        DeliveryStatus::Succeeded,
        "{label}: node B released, claimed or gave up node A's delivery: {d:?}"
    );
    assert_eq!(d.attempts, 2, "{label}: {d:?}");
    // Nothing attempts it again afterwards either.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        seen.lock().unwrap().get("e1").copied(),
        Some(2),
        "{label}: the event was attempted by both nodes"
    );
    b.shutdown().await;
    a.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_second_node_leaves_the_first_nodes_claim_alone() {
    let path = std::env::temp_dir().join(format!("openeg-nodes-{}.db", unique()));
    let p = path.clone();
    second_node_leaves_the_first_nodes_claim_alone(
        || {
            let p = p.clone();
            async move { Arc::new(SqliteStore::open(&p).await.unwrap()) }
        },
        "sqlite",
    )
    .await;
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_second_node_leaves_the_first_nodes_claim_alone() {
    let Some((store, schema)) = pg_store().await else {
        return;
    };
    // One pool for both nodes: the store is what they share, the pool is not the point.
    second_node_leaves_the_first_nodes_claim_alone(
        || {
            let s = store.clone();
            async move { s }
        },
        "postgresql",
    )
    .await;
    drop_pg_schema(&schema).await;
}

/// A subscription written through node A reaches node B's routing within a second through
/// the store's change feed, and still does after B's listening connection was killed
/// (`pg_terminate_backend`): B reconnects, resyncs, and hears the next change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_config_changes_reach_the_other_node() {
    use openeg_engine::ResourceKind;
    use openeg_store::changes::LISTENER_APPLICATION_NAME;
    use openeg_store::{Document, Kind};
    use serde_json::json;
    use sqlx::Connection;

    let Some((store, schema)) = pg_store().await else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("openeg-feed-{}", unique()));
    let a = engine(store.clone(), &dir, "node-a").await;
    let b = engine(store.clone(), &dir, "node-b").await;
    b.follow_changes(
        store.listen_changes().await.unwrap(),
        Duration::from_secs(3600),
    );
    let (url, seen) = scripted_receiver(|_| (200, Duration::ZERO)).await;
    // Channels with no subscription yet: B compiles (and caches) their empty routes.
    let mut channels = Vec::new();
    for n in 0..2 {
        let ch = format!("ch-{n}-{}", unique());
        let doc = Document {
            project_id: "p-feed".into(),
            kind: Kind::Channel,
            id: ch.clone(),
            name: ch.clone(),
            parent_id: None,
            created_at: 1,
            updated_at: 1,
            body: json!({"id": ch, "name": ch}),
            refs: Vec::new(),
        };
        store.insert(&doc, &[]).await.unwrap();
        b.publish_texts("p-feed", &ch, &[event(&format!("before-{n}"))])
            .await
            .unwrap();
        channels.push(ch);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let subscribe = |ch: &str| {
        let sub = format!("sub-{}", unique());
        Document {
            project_id: "p-feed".into(),
            kind: Kind::Subscription,
            id: sub.clone(),
            name: sub.clone(),
            parent_id: Some(ch.to_string()),
            created_at: 1,
            updated_at: 1,
            body: json!({
                "id": sub, "name": sub, "channel_id": ch, "status": "ENABLED",
                "sources": [{"id": "s1", "name": "app", "provider_type": "CUSTOM",
                             "filter": {"source": [{"op": "StringIn", "values": ["app"]}]}}],
                "targets": [{"id": format!("t-{sub}"), "name": "WEBHOOK",
                             "provider_type": "CUSTOM", "retry_times": 3,
                             "detail": {"url": url}, "transform": {"type": "ORIGINAL"}}],
            }),
            refs: Vec::new(),
        }
    };

    // Written through node A (which tells only itself); B must hear it from the feed.
    let sub = subscribe(&channels[0]);
    store.insert(&sub, &[]).await.unwrap();
    a.resource_changed(
        ResourceKind::Subscription {
            channel_id: channels[0].clone(),
        },
        "p-feed",
        &sub.id,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    b.publish_texts("p-feed", &channels[0], &[event("after-0")])
        .await
        .unwrap();
    wait_for_within(&seen, &["after-0".to_string()], Duration::from_secs(10)).await;

    // Kill B's listener; the next change still arrives (after its reconnect and resync).
    let mut admin = sqlx::PgConnection::connect(&common::pg_url().unwrap())
        .await
        .unwrap();
    let killed: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(LISTENER_APPLICATION_NAME)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(!killed.is_empty(), "no listener connection found");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sub = subscribe(&channels[1]);
    store.insert(&sub, &[]).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    b.publish_texts("p-feed", &channels[1], &[event("after-1")])
        .await
        .unwrap();
    wait_for_within(&seen, &["after-1".to_string()], Duration::from_secs(10)).await;
    assert!(
        !seen.lock().unwrap().contains_key("before-0"),
        "published before the subscription existed"
    );
    b.shutdown().await;
    a.shutdown().await;
    drop_pg_schema(&schema).await;
    let _ = std::fs::remove_dir_all(&dir);
}
