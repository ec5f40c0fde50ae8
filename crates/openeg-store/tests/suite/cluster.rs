//! `ClusterStore`: node heartbeats and partition leases (taken only when free, expired or
//! one's own; the epoch moves with each change of owner; renewals and releases).

use openeg_store::cluster::{ClusterStore, Lease};
use std::sync::Arc;

pub async fn run_cluster_suite(s: Arc<dyn ClusterStore>, label: &str) {
    nodes(&*s).await;
    leases(&*s).await;
    racing_acquires(s).await;
    eprintln!("{label}: cluster suite passed");
}

async fn nodes(s: &dyn ClusterStore) {
    s.heartbeat("n-b", "127.0.0.1:2", 1_000).await.unwrap();
    s.heartbeat("n-a", "127.0.0.1:1", 1_500).await.unwrap();
    let all = s.nodes(0).await.unwrap();
    let names: Vec<&str> = all.iter().map(|n| n.node.as_str()).collect();
    assert_eq!(names, ["n-a", "n-b"]);
    // A later heartbeat moves heartbeat_at (and the address) but not started_at.
    s.heartbeat("n-b", "127.0.0.1:3", 5_000).await.unwrap();
    let live = s.nodes(2_000).await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(
        (
            live[0].node.as_str(),
            live[0].address.as_str(),
            live[0].started_at,
            live[0].heartbeat_at
        ),
        ("n-b", "127.0.0.1:3", 1_000, 5_000)
    );
}

async fn leases(s: &dyn ClusterStore) {
    let t = "p.ch-leases";
    // Free: taken at epoch 1.
    assert_eq!(
        s.acquire_lease(t, 0, "a", 10_000, 5_000).await.unwrap(),
        Some(1)
    );
    // Held by a until 15,000: b cannot take it, a keeps it (same epoch).
    assert_eq!(
        s.acquire_lease(t, 0, "b", 14_999, 5_000).await.unwrap(),
        None
    );
    assert_eq!(
        s.acquire_lease(t, 0, "a", 12_000, 5_000).await.unwrap(),
        Some(1)
    );
    // Renewed by a: now until 21,000.
    let held = s.renew_leases("a", 16_000, 5_000).await.unwrap();
    assert_eq!(
        held,
        vec![Lease {
            topic: t.into(),
            partition: 0,
            owner: "a".into(),
            epoch: 1,
            expires_at: 21_000
        }]
    );
    assert_eq!(
        s.acquire_lease(t, 0, "b", 20_000, 5_000).await.unwrap(),
        None
    );
    // Expired (a stopped renewing): b takes it, the epoch moves.
    assert_eq!(
        s.acquire_lease(t, 0, "b", 21_001, 5_000).await.unwrap(),
        Some(2)
    );
    // a's renewal no longer includes it.
    assert!(s.renew_leases("a", 21_002, 5_000).await.unwrap().is_empty());
    // Released by b (a's release of b's lease changes nothing): a takes it at once.
    s.release_lease(t, 0, "a").await.unwrap();
    assert_eq!(
        s.acquire_lease(t, 0, "c", 21_003, 5_000).await.unwrap(),
        None
    );
    s.release_lease(t, 0, "b").await.unwrap();
    assert_eq!(
        s.acquire_lease(t, 0, "a", 21_004, 5_000).await.unwrap(),
        Some(3)
    );
    // Partitions are independent.
    assert_eq!(
        s.acquire_lease(t, 1, "b", 21_005, 5_000).await.unwrap(),
        Some(1)
    );
    let all = s.leases().await.unwrap();
    let mine: Vec<(u32, &str, u64)> = all
        .iter()
        .filter(|l| l.topic == t)
        .map(|l| (l.partition, l.owner.as_str(), l.epoch))
        .collect();
    assert_eq!(mine, [(0, "a", 3), (1, "b", 1)]);
}

async fn racing_acquires(s: Arc<dyn ClusterStore>) {
    let t = "p.ch-race";
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.acquire_lease(t, 0, &format!("node-{i}"), 50_000, 5_000)
                .await
                .unwrap()
                .map(|_| i)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        if let Some(i) = task.await.unwrap() {
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "one owner: {winners:?}");
}
