//! A channel log with several partitions (as a Kafka log has): PutEvents spreads events over
//! the partitions by key, one router loop per partition delivers them all, and the positions
//! stored in trace rows and deliveries find their events again (retries, ShowDetailOfEvent).
//!
//! `PartitionedLog` is a test adapter, not a mock of Kafka: it gives a `SegmentLog` several
//! partitions by keeping partition `p` of topic `t` as the one partition of topic `t~p`.

mod common;

use async_trait::async_trait;
use bytes::Bytes;
use common::{channel_with_webhook, event, scripted_receiver, unique, wait_for};
use openeg_engine::{position, Engine, EngineConfig};
use openeg_log::{EventLog, LogConfig, LogError, LogRecord, SegmentLog};
use openeg_store::delivery::DeliveryStore;
use openeg_store::secrets::SecretBox;
use openeg_store::SqliteStore;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

const PARTITIONS: u32 = 3;

struct PartitionedLog {
    inner: SegmentLog,
    /// Records appended per partition, to check the spread.
    appended: Mutex<HashMap<u32, u64>>,
}

impl PartitionedLog {
    fn name(topic: &str, partition: u32) -> String {
        format!("{topic}~{partition}")
    }
}

#[async_trait]
impl EventLog for PartitionedLog {
    async fn append(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Bytes>,
    ) -> Result<Range<u64>, LogError> {
        assert!(partition < PARTITIONS, "append to partition {partition}");
        *self.appended.lock().unwrap().entry(partition).or_default() += records.len() as u64;
        self.inner
            .append(&Self::name(topic, partition), 0, records)
            .await
    }
    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<LogRecord>, LogError> {
        self.inner
            .read(
                &Self::name(topic, partition),
                0,
                from,
                max_records,
                max_bytes,
            )
            .await
    }
    async fn start_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        self.inner
            .start_offset(&Self::name(topic, partition), 0)
            .await
    }
    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        self.inner
            .end_offset(&Self::name(topic, partition), 0)
            .await
    }
    async fn partitions(&self, _topic: &str) -> Result<u32, LogError> {
        Ok(PARTITIONS)
    }
    async fn subscribe(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<watch::Receiver<u64>, LogError> {
        self.inner.subscribe(&Self::name(topic, partition), 0).await
    }
    async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<(), LogError> {
        self.inner
            .commit(group, &Self::name(topic, partition), 0, offset)
            .await
    }
    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>, LogError> {
        self.inner
            .committed(group, &Self::name(topic, partition), 0)
            .await
    }
    async fn delete_topic(&self, topic: &str) -> Result<(), LogError> {
        for p in 0..PARTITIONS {
            self.inner.delete_topic(&Self::name(topic, p)).await?;
        }
        Ok(())
    }
}

#[tokio::test]
async fn events_spread_over_partitions_are_all_delivered_and_found_again() {
    let dir = std::env::temp_dir().join(format!("openeg-partitions-{}", unique()));
    let log = Arc::new(PartitionedLog {
        inner: SegmentLog::open(dir.join("log"), LogConfig::default())
            .await
            .unwrap(),
        appended: Mutex::default(),
    });
    let store = Arc::new(SqliteStore::open(&dir.join("meta.db")).await.unwrap());
    // Every event fails once (503, retried), so each is attempted again by the retry poller,
    // which reads it back from its partition by the stored position.
    let (hook, seen) = scripted_receiver(|n| {
        if n == 1 {
            (503, Duration::ZERO)
        } else {
            (200, Duration::ZERO)
        }
    })
    .await;
    let project = format!("pp{}", unique());
    let channel = channel_with_webhook(&*store, &project, &hook).await;
    let engine = Engine::start(
        store.clone(),
        store.clone(),
        log.clone(),
        SecretBox::from_key_base64("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=").unwrap(),
        EngineConfig::default(),
        Vec::new(),
    )
    .await
    .unwrap();

    let ids: Vec<String> = (0..300).map(|i| format!("pe-{i}")).collect();
    for chunk in ids.chunks(20) {
        let texts: Vec<Vec<u8>> = chunk.iter().map(|id| event(id)).collect();
        engine
            .publish_texts(&project, &channel, &texts)
            .await
            .unwrap();
    }
    // Events with one partitionkey land in one partition, whatever their ids.
    let keyed: Vec<Vec<u8>> = (0..20)
        .map(|i| {
            let mut v: serde_json::Value =
                serde_json::from_slice(&event(&format!("pk-{i}"))).unwrap();
            v["partitionkey"] = "customer-7".into();
            serde_json::to_vec(&v).unwrap()
        })
        .collect();
    let before = log.appended.lock().unwrap().clone();
    engine
        .publish_texts(&project, &channel, &keyed)
        .await
        .unwrap();
    let after = log.appended.lock().unwrap().clone();
    let grew: Vec<u32> = (0..PARTITIONS)
        .filter(|p| after.get(p) != before.get(p))
        .collect();
    assert_eq!(
        grew,
        vec![position::partition_for(b"customer-7", PARTITIONS)]
    );
    // The ids spread over every partition.
    for p in 0..PARTITIONS {
        assert!(before.get(&p).copied().unwrap_or(0) > 50, "{before:?}");
    }

    let mut all = ids.clone();
    all.extend((0..20).map(|i| format!("pk-{i}")));
    wait_for(&seen, &all).await;
    // Retried: each event was sent twice (a 503, then 200), and none more often.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let counts = seen.lock().unwrap().clone();
        if all.iter().all(|id| counts.get(id) == Some(&2)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{counts:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Every delivery names its event by a position that reads that event back.
    let mut partitions_seen = std::collections::HashSet::new();
    for id in ["pe-0", "pe-1", "pe-2", "pe-3", "pe-4", "pe-5", "pk-3"] {
        let rows = store
            .event_traces(&project, Some(&channel), id)
            .await
            .unwrap();
        let row = rows.first().unwrap_or_else(|| panic!("no trace of {id}"));
        partitions_seen.insert(position::split(row.offset).0);
        let text = engine
            .read_event(&project, &channel, row.offset)
            .await
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(v["id"], id);
    }
    assert!(partitions_seen.len() > 1, "{partitions_seen:?}");
    engine.shutdown().await;
}
