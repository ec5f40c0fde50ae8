//! The engine's change hook and supervisor over a real store: what runs after a start and
//! after `resource_changed`, and the runtime status the API reads.

mod common;

use common::unique;
use openeg_engine::runtimes::ROUTER_JOB_NOT_RUN;
use openeg_engine::stream::STREAM_OBS_NOT_CONFIGURED;
use openeg_engine::{Engine, EngineConfig, ResourceKind, RunState, RuntimeStatus, TaskKind};
use openeg_log::{LogConfig, SegmentLog};
use openeg_store::delivery::{DeliveryStore, NewDelivery};
use openeg_store::secrets::SecretBox;
use openeg_store::{Document, Kind, MetaStore, SqliteStore};
use serde_json::{json, Value};
use std::sync::Arc;

const P: &str = "p1";
const NODE: &str = "node-x";

fn record(kind: Kind, id: &str, parent: Option<&str>, body: Value) -> Document {
    Document {
        project_id: P.into(),
        kind,
        id: id.into(),
        name: id.into(),
        parent_id: parent.map(Into::into),
        created_at: 1,
        updated_at: 1,
        body,
        refs: Vec::new(),
    }
}

fn error(message: &str) -> Option<RuntimeStatus> {
    Some(RuntimeStatus {
        state: RunState::Error,
        error: Some(openeg_engine::supervisor::ErrorInfo::not_run(message)),
        node_name: NODE.into(),
        restarts: 0,
    })
}

fn stopped() -> Option<RuntimeStatus> {
    Some(RuntimeStatus {
        state: RunState::Stopped,
        error: None,
        node_name: NODE.into(),
        restarts: 0,
    })
}

async fn engine(store: Arc<SqliteStore>, dir: &std::path::Path) -> Arc<Engine> {
    let log = Arc::new(
        SegmentLog::open(dir.join("log"), LogConfig::default())
            .await
            .unwrap(),
    );
    let key = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
    Engine::start(
        store.clone(),
        store,
        log,
        SecretBox::from_key_base64(key).unwrap(),
        EngineConfig {
            node_name: NODE.into(),
            ..Default::default()
        },
        Vec::new(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn start_and_changes_set_the_runtime_status() {
    let dir = std::env::temp_dir().join(format!("openeg-supervised-{}", unique()));
    let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    let rabbit = json!({"type": "RABBITMQ", "provider_type": "CUSTOM", "detail": {}});
    for rec in [
        record(Kind::Source, "rmq", Some("ch"), rabbit),
        record(
            Kind::Source,
            "app",
            Some("ch"),
            json!({"type": "APPLICATION", "provider_type": "CUSTOM"}),
        ),
        record(
            Kind::EventStream,
            "st-run",
            None,
            json!({"status": "ERROR", "_desired": "RUNNING",
                   "source": {"name": "HC.COMMUNITY_ROCKETMQ", "source_community_rocketmq": {}},
                   "sink": {"name": "HC.Kafka", "sink_kafka": {"topic": "t", "connectionId": "c"}}}),
        ),
        record(
            Kind::EventStream,
            "st-obs",
            None,
            json!({"status": "ERROR", "_desired": "RUNNING",
                   "source": {"name": "HC.Kafka", "source_kafka": {"addr": "127.0.0.1:9",
                              "topic": "t", "group": "g"}},
                   "sink": {"name": "HC.OBS", "sink_obs": {"obs_bucket": "b"}}}),
        ),
        record(
            Kind::EventStream,
            "st-new",
            None,
            json!({"status": "CREATED"}),
        ),
        record(
            Kind::RouterJob,
            "job",
            Some("cl"),
            json!({"status": "WAIT_START", "_desired": "RUNNING"}),
        ),
    ] {
        store.insert(&rec, &[]).await.unwrap();
    }

    // At start, every supervised resource gets its status.
    let engine = engine(store.clone(), &dir).await;
    let status = |kind, id: &str| engine.runtime_status(kind, P, id);
    // RABBITMQ sources run; one without broker settings cannot, and says why.
    assert_eq!(
        status(TaskKind::EventSource, "rmq"),
        error(
            "invalid RABBITMQ source settings: detail.instance_id (the broker address) is \
             required"
        )
    );
    // APPLICATION sources are not supervised: PutEvents is their runtime.
    assert_eq!(status(TaskKind::EventSource, "app"), None);
    assert_eq!(
        status(TaskKind::EventStream, "st-run"),
        error(
            "invalid HC.COMMUNITY_ROCKETMQ source settings: addr (the name server list) is \
             required to run a stream in OpenEG: an instance_id alone does not say where the \
             brokers are"
        )
    );
    assert_eq!(
        status(TaskKind::EventStream, "st-obs"),
        error(STREAM_OBS_NOT_CONFIGURED)
    );
    assert_eq!(status(TaskKind::EventStream, "st-new"), stopped());
    assert_eq!(
        status(TaskKind::RouterJob, "job"),
        error(ROUTER_JOB_NOT_RUN)
    );

    // STOP: the hook re-reads the document.
    let mut job = store.get(P, Kind::RouterJob, "job").await.unwrap().unwrap();
    job.body["_desired"] = json!("STOPPED");
    store.update(&job).await.unwrap();
    engine
        .resource_changed(ResourceKind::RouterJob, P, "job")
        .await;
    assert_eq!(status(TaskKind::RouterJob, "job"), stopped());

    // A new resource, then its deletion.
    let late = record(
        Kind::Source,
        "rocket",
        Some("ch"),
        json!({"type": "ROCKETMQ", "provider_type": "CUSTOM"}),
    );
    store.insert(&late, &[]).await.unwrap();
    engine
        .resource_changed(ResourceKind::EventSource, P, "rocket")
        .await;
    assert_eq!(
        status(TaskKind::EventSource, "rocket"),
        error(
            "invalid ROCKETMQ source settings: detail.namesrv_address (the name server) is \
             required"
        )
    );
    store.delete(P, Kind::Source, "rocket").await.unwrap();
    engine
        .resource_changed(ResourceKind::EventSource, P, "rocket")
        .await;
    assert_eq!(status(TaskKind::EventSource, "rocket"), None);

    engine.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_deleted_subscription_loses_its_pending_deliveries() {
    let dir = std::env::temp_dir().join(format!("openeg-supervised-{}", unique()));
    let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    let engine = engine(store.clone(), &dir).await;
    store
        .insert(
            &record(Kind::Subscription, "kept", Some("ch"), json!({})),
            &[],
        )
        .await
        .unwrap();
    let far = i64::MAX / 4;
    let pending = |offset: u64, sub: &str| NewDelivery {
        project_id: P.into(),
        channel_id: "ch".into(),
        offset,
        event_id: format!("ev-{offset}"),
        received_at: 1,
        subscription_id: sub.into(),
        subscription_name: sub.into(),
        target_id: "t".into(),
        target_name: "t".into(),
        next_at: far,
    };
    store
        .record_routed(&[], &[pending(0, "kept"), pending(1, "gone")])
        .await
        .unwrap();
    for sub in ["kept", "gone"] {
        let kind = ResourceKind::Subscription {
            channel_id: "ch".into(),
        };
        engine.resource_changed(kind, P, sub).await;
    }
    assert_eq!(store.event_deliveries(P, "ch", 0).await.unwrap().len(), 1);
    assert!(store.event_deliveries(P, "ch", 1).await.unwrap().is_empty());
    engine.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
