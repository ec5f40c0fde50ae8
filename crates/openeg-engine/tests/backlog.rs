//! A restart with a backlog must not hold back new events (issue #18): events already in the
//! log when the engine starts are replayed beside the router's tail, so an event published
//! after the start is delivered at once, whatever the backlog.
//!
//! The backlog is appended to the channel's log while no engine runs (as after a crash that
//! left it unrouted). SQLite always; PostgreSQL too when `OPENEG_TEST_DATABASE_URL` is set.
//! `OPENEG_BACKLOG_EVENTS` sets the backlog (default 20,000; the figure is 100,000).

mod common;

use common::{
    channel_with_webhook, drop_pg_schema, event, pg_store, receiver, unique, wait_for,
    wait_for_within,
};
use openeg_engine::{Engine, EngineConfig};
use openeg_log::{EventLog, LogConfig, SegmentLog};
use openeg_store::delivery::DeliveryStore;
use openeg_store::secrets::SecretBox;
use openeg_store::{MetaStore, SqliteStore};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn first_new_event_after_restart<S>(store: Arc<S>, label: &str)
where
    S: MetaStore + DeliveryStore + 'static,
{
    let backlog: usize = std::env::var("OPENEG_BACKLOG_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let dir = std::env::temp_dir().join(format!("openeg-backlog-{}", unique()));
    let log = Arc::new(
        SegmentLog::open(dir.join("log"), LogConfig::default())
            .await
            .unwrap(),
    );
    let (hook, seen) = receiver().await;
    let project = format!("pb{}", unique());
    let channel = channel_with_webhook(&*store, &project, &hook).await;
    let topic = openeg_engine::topic(&project, &channel);
    // The unrouted backlog, in batches as PutEvents would have appended it.
    let t0 = Instant::now();
    for chunk in (0..backlog).collect::<Vec<_>>().chunks(1000) {
        let recs = chunk
            .iter()
            .map(|i| {
                openeg_engine::envelope::encode(1_700_000_000_000, &event(&format!("old-{i}")))
            })
            .collect();
        log.append(&topic, 0, recs).await.unwrap();
    }
    eprintln!("{label}: {backlog} events appended in {:?}", t0.elapsed());

    let key = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
    let started = Instant::now();
    let engine = Engine::start(
        store.clone(),
        store.clone(),
        log.clone(),
        SecretBox::from_key_base64(key).unwrap(),
        EngineConfig::default(),
        log.topics(),
    )
    .await
    .unwrap();
    let published = Instant::now();
    engine
        .publish_texts(&project, &channel, &[event("new-after-restart")])
        .await
        .unwrap();
    wait_for(&seen, &["new-after-restart".to_string()]).await;
    let first = published.elapsed();
    eprintln!(
        "{label}: engine start {:?}, then the first new event delivered {:?} after its publish, \
         backlog delivered so far: {}",
        published - started,
        first,
        seen.lock().unwrap().len() - 1
    );
    assert!(
        first < Duration::from_secs(1),
        "{label}: a new event waited {first:?} behind a backlog of {backlog}"
    );
    // The backlog itself is still delivered, every event.
    let want: Vec<String> = (0..backlog).map(|i| format!("old-{i}")).collect();
    wait_for_within(&seen, &want, Duration::from_secs(300)).await;
    eprintln!(
        "{label}: backlog delivered {:?} after the start",
        started.elapsed()
    );
    engine.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_restart_with_a_backlog() {
    let dir = std::env::temp_dir().join(format!("openeg-backlog-db-{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Arc::new(SqliteStore::open(&dir.join("openeg.db")).await.unwrap());
    first_new_event_after_restart(store, "sqlite").await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_with_a_backlog() {
    let Some((store, schema)) = pg_store().await else {
        return;
    };
    first_new_event_after_restart(store, "postgres").await;
    drop_pg_schema(&schema).await;
}
