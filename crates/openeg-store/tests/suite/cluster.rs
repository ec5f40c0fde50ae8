//! `ClusterStore`: node heartbeats and partition leases (taken only when free, expired or
//! one's own; the epoch moves with each change of owner; renewals and releases), and task
//! statuses fenced by their lease.

use openeg_store::cluster::{ClusterStore, Lease, TaskStatusRow};
use std::sync::Arc;

pub async fn run_cluster_suite(s: Arc<dyn ClusterStore>, label: &str) {
    nodes(&*s).await;
    leases(&*s).await;
    racing_acquires(s.clone()).await;
    fenced_task_status(&*s).await;
    settings(&*s).await;
    candidates(&*s).await;
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

async fn fenced_task_status(s: &dyn ClusterStore) {
    let task = "task:event_source:p:src-1";
    let row = |owner: &str, epoch: u64, state: &str, at: i64| TaskStatusRow {
        task: task.into(),
        owner: owner.into(),
        epoch,
        state: state.into(),
        error_code: if state == "ERROR" {
            "EG.00511000".into()
        } else {
            String::new()
        },
        error_message: if state == "ERROR" {
            "broker down".into()
        } else {
            String::new()
        },
        restarts: 2,
        updated_at: at,
    };
    // Nobody holds the lease: nothing is written.
    assert!(!s
        .put_task_status(&row("a", 1, "RUNNING", 100_000))
        .await
        .unwrap());
    assert!(s
        .task_statuses()
        .await
        .unwrap()
        .iter()
        .all(|r| r.task != task));
    assert_eq!(
        s.acquire_lease(task, 0, "a", 100_000, 5_000).await.unwrap(),
        Some(1)
    );
    assert!(s
        .put_task_status(&row("a", 1, "RUNNING", 101_000))
        .await
        .unwrap());
    // Another node, a wrong epoch, or the holder after expiry: fenced out.
    assert!(!s
        .put_task_status(&row("b", 1, "ERROR", 101_500))
        .await
        .unwrap());
    assert!(!s
        .put_task_status(&row("a", 2, "ERROR", 101_500))
        .await
        .unwrap());
    assert!(!s
        .put_task_status(&row("a", 1, "ERROR", 105_001))
        .await
        .unwrap());
    // b takes the expired lease (epoch 2); a's old epoch stays fenced out.
    assert_eq!(
        s.acquire_lease(task, 0, "b", 105_001, 5_000).await.unwrap(),
        Some(2)
    );
    assert!(s
        .put_task_status(&row("b", 2, "ERROR", 105_100))
        .await
        .unwrap());
    assert!(!s
        .put_task_status(&row("a", 1, "RUNNING", 105_200))
        .await
        .unwrap());
    let got: Vec<TaskStatusRow> = s
        .task_statuses()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.task == task)
        .collect();
    assert_eq!(got, vec![row("b", 2, "ERROR", 105_100)]);
    // The task's resource is deleted. Another node forgets it first: the status goes, the
    // holder's live lease stays (it is still stopping the run).
    let lease_of = |l: &[openeg_store::cluster::Lease]| {
        l.iter()
            .filter(|l| l.topic == task)
            .map(|l| l.owner.clone())
            .collect::<Vec<_>>()
    };
    s.forget_task(task, "a", 105_200).await.unwrap();
    assert!(s
        .task_statuses()
        .await
        .unwrap()
        .iter()
        .all(|r| r.task != task));
    assert_eq!(lease_of(&s.leases().await.unwrap()), ["b"]);
    // The holder forgets it: the lease goes too, and nothing can publish the status again.
    s.forget_task(task, "b", 105_300).await.unwrap();
    assert!(lease_of(&s.leases().await.unwrap()).is_empty());
    assert!(!s
        .put_task_status(&row("b", 2, "RUNNING", 105_400))
        .await
        .unwrap());
    assert!(s
        .task_statuses()
        .await
        .unwrap()
        .iter()
        .all(|r| r.task != task));
    // An expired lease goes whoever forgets.
    assert!(s
        .acquire_lease(task, 0, "b", 106_000, 5_000)
        .await
        .unwrap()
        .is_some());
    s.forget_task(task, "a", 111_001).await.unwrap();
    assert!(lease_of(&s.leases().await.unwrap()).is_empty());
}

async fn settings(s: &dyn ClusterStore) {
    assert_eq!(s.setting_or_insert("k", "first").await.unwrap(), "first");
    assert_eq!(s.setting_or_insert("k", "second").await.unwrap(), "first");
    assert_eq!(s.setting_or_insert("other", "x").await.unwrap(), "x");
}

async fn candidates(s: &dyn ClusterStore) {
    let t = |x: &str| x.to_string();
    s.replace_task_candidates("n1", &[t("task:a"), t("task:b")])
        .await
        .unwrap();
    s.replace_task_candidates("n2", &[t("task:b")])
        .await
        .unwrap();
    let got = s.task_candidates().await.unwrap();
    let pairs: Vec<(&str, &str)> = got.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(
        pairs,
        [("task:a", "n1"), ("task:b", "n1"), ("task:b", "n2")]
    );
    // Replacing drops what the node no longer runs.
    s.replace_task_candidates("n1", &[t("task:c")])
        .await
        .unwrap();
    let got = s.task_candidates().await.unwrap();
    let pairs: Vec<(&str, &str)> = got.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(pairs, [("task:b", "n2"), ("task:c", "n1")]);
    s.replace_task_candidates("n2", &[]).await.unwrap();
    s.replace_task_candidates("n1", &[]).await.unwrap();
    assert!(s.task_candidates().await.unwrap().is_empty());
}
