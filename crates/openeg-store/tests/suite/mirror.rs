//! `MirrorStore`: offset pairs of replication jobs (upsert per source record, positions per
//! partition and source cluster, the pair at or below an offset, pruning, deletion per job).

use openeg_store::mirror::{MirrorPair, MirrorStore};
use std::sync::Arc;

pub async fn run_mirror_suite(s: Arc<dyn MirrorStore>, label: &str) {
    pairs_and_positions(&*s).await;
    pair_at(&*s).await;
    prune_and_delete(&*s).await;
    eprintln!("{label}: mirror suite passed");
}

fn p(topic: &str, partition: i32, source: i64, target_topic: &str, target: i64) -> MirrorPair {
    MirrorPair {
        topic: topic.into(),
        partition,
        source_offset: source,
        target_topic: target_topic.into(),
        target_partition: partition,
        target_offset: target,
    }
}

async fn pairs_and_positions(s: &dyn MirrorStore) {
    // Target partition and offset differ from the source's: a swapped column shows.
    let placed = MirrorPair {
        topic: "t-k".into(),
        partition: 2,
        source_offset: 30,
        target_topic: "t-k.copy".into(),
        target_partition: 0,
        target_offset: 7,
    };
    s.put_mirror_pairs("job-placed", "c1", std::slice::from_ref(&placed))
        .await
        .unwrap();
    let positions = s.mirror_positions("job-placed", "c1").await.unwrap();
    assert_eq!(positions.len(), 1);
    assert_eq!(positions[0], placed);
    assert_eq!(
        s.mirror_pair_at("job-placed", "c1", "t-k", 2, "t-k.copy", 31)
            .await
            .unwrap(),
        Some(placed)
    );
    assert_eq!(s.delete_mirror_pairs("job-placed").await.unwrap(), 1);

    // A recreated source partition: its pairs go, the job's other partitions and clusters stay.
    let fj = "job-forget";
    s.put_mirror_pairs(
        fj,
        "c1",
        &[
            p("t", 0, 5, "t", 5),
            p("t", 0, 9, "t", 9),
            p("t", 1, 3, "t", 3),
        ],
    )
    .await
    .unwrap();
    s.put_mirror_pairs(fj, "c2", &[p("t", 0, 7, "t", 7)])
        .await
        .unwrap();
    assert_eq!(
        s.forget_mirror_partition(fj, "c1", "t", 0).await.unwrap(),
        2
    );
    assert_eq!(
        s.mirror_positions(fj, "c1").await.unwrap(),
        [p("t", 1, 3, "t", 3)]
    );
    assert_eq!(
        s.mirror_positions(fj, "c2").await.unwrap(),
        [p("t", 0, 7, "t", 7)]
    );
    assert_eq!(
        s.forget_mirror_partition(fj, "c1", "t", 0).await.unwrap(),
        0
    );
    assert_eq!(s.delete_mirror_pairs(fj).await.unwrap(), 2);

    let job = "job-positions";
    assert!(s.mirror_positions(job, "c1").await.unwrap().is_empty());
    s.put_mirror_pairs(job, "c1", &[]).await.unwrap();
    s.put_mirror_pairs(
        job,
        "c1",
        &[
            p("t-a", 0, 0, "t-a.copy", 10),
            p("t-a", 0, 99, "t-a.copy", 109),
            p("t-a", 1, 5, "t-a.copy", 0),
            p("t-b", 0, 7, "t-b", 7),
        ],
    )
    .await
    .unwrap();
    // Another source cluster (a switched-over job) and another job are kept apart.
    s.put_mirror_pairs(job, "c2", &[p("t-a", 0, 500, "t-a", 0)])
        .await
        .unwrap();
    s.put_mirror_pairs("job-other", "c1", &[p("t-a", 0, 1_000, "t-a.copy", 1)])
        .await
        .unwrap();
    let got = s.mirror_positions(job, "c1").await.unwrap();
    assert_eq!(
        got,
        [
            p("t-a", 0, 99, "t-a.copy", 109),
            p("t-a", 1, 5, "t-a.copy", 0),
            p("t-b", 0, 7, "t-b", 7),
        ]
    );
    assert_eq!(
        s.mirror_positions(job, "c2").await.unwrap(),
        [p("t-a", 0, 500, "t-a", 0)]
    );
    // Where the job's copies end per target partition: the greatest target offset, over
    // every source partition that copies into it; start markers (target partition -1) and
    // other clusters do not count.
    s.put_mirror_pairs(
        job,
        "c1",
        &[
            MirrorPair {
                target_partition: 0,
                ..p("t-b", 1, 3, "t-a.copy", 200)
            },
            MirrorPair {
                target_partition: -1,
                target_offset: -1,
                ..p("t-c", 0, 41, "t-c", 0)
            },
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        s.mirror_copy_ends(job, "c1").await.unwrap(),
        [
            ("t-a.copy".to_string(), 0, 200),
            ("t-a.copy".to_string(), 1, 0),
            ("t-b".to_string(), 0, 7),
        ]
    );
    assert_eq!(
        s.mirror_copy_ends(job, "c2").await.unwrap(),
        [("t-a".to_string(), 0, 0)]
    );
    assert!(s.mirror_copy_ends(job, "c9").await.unwrap().is_empty());
    // A recreated target partition: the pairs of copies into it go, and nothing else.
    s.put_mirror_pairs(
        job,
        "c3",
        &[p("t-x", 0, 1, "t-a.copy", 9), p("t-x", 1, 1, "t-y", 9)],
    )
    .await
    .unwrap();
    assert_eq!(
        s.forget_mirror_target(job, "c3", "t-a.copy", 0)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.mirror_copy_ends(job, "c3").await.unwrap(),
        [("t-y".to_string(), 1, 9)]
    );
    assert_eq!(
        s.forget_mirror_target(job, "c3", "t-y", 1).await.unwrap(),
        1
    );
    for (t, part) in [("t-b", 1), ("t-c", 0)] {
        assert_eq!(
            s.forget_mirror_partition(job, "c1", t, part).await.unwrap(),
            1
        );
    }
    // A record copied again (after a crash) replaces its pair: the later copy counts.
    s.put_mirror_pairs(job, "c1", &[p("t-a", 0, 99, "t-a.copy", 150)])
        .await
        .unwrap();
    assert_eq!(
        s.mirror_positions(job, "c1").await.unwrap()[0],
        p("t-a", 0, 99, "t-a.copy", 150)
    );
    // Offsets beyond 32 bits survive the round trip.
    let big = 1_i64 << 40;
    s.put_mirror_pairs(job, "c1", &[p("t-b", 0, big, "t-b", big + 3)])
        .await
        .unwrap();
    assert_eq!(
        s.mirror_positions(job, "c1").await.unwrap()[2],
        p("t-b", 0, big, "t-b", big + 3)
    );
}

async fn pair_at(s: &dyn MirrorStore) {
    let job = "job-at";
    s.put_mirror_pairs(
        job,
        "c1",
        &[
            p("t", 0, 10, "t.copy", 0),
            p("t", 0, 50, "t.copy", 40),
            p("t", 0, 80, "t.copy", 100),
            // The same source partition copied into an older mapping's topic.
            p("t", 0, 60, "t.old", 5),
            p("t", 1, 3, "t.copy", 3),
        ],
    )
    .await
    .unwrap();
    let at = |o| s.mirror_pair_at(job, "c1", "t", 0, "t.copy", o);
    assert_eq!(at(50).await.unwrap(), Some(p("t", 0, 50, "t.copy", 40)));
    assert_eq!(at(79).await.unwrap(), Some(p("t", 0, 50, "t.copy", 40)));
    assert_eq!(at(80).await.unwrap(), Some(p("t", 0, 80, "t.copy", 100)));
    assert_eq!(
        at(i64::MAX).await.unwrap(),
        Some(p("t", 0, 80, "t.copy", 100))
    );
    // Below every pair: the least one (nothing before it was copied).
    assert_eq!(at(2).await.unwrap(), Some(p("t", 0, 10, "t.copy", 0)));
    // Only pairs into the asked target topic count.
    assert_eq!(
        s.mirror_pair_at(job, "c1", "t", 0, "t.old", 70)
            .await
            .unwrap(),
        Some(p("t", 0, 60, "t.old", 5))
    );
    assert_eq!(
        s.mirror_pair_at(job, "c1", "t", 2, "t.copy", 70)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.mirror_pair_at(job, "c2", "t", 0, "t.copy", 70)
            .await
            .unwrap(),
        None
    );
}

async fn prune_and_delete(s: &dyn MirrorStore) {
    let job = "job-prune";
    let pairs: Vec<MirrorPair> = (0..5).map(|i| p("t", 0, i * 100, "t", i * 100)).collect();
    s.put_mirror_pairs(job, "c1", &pairs).await.unwrap();
    s.put_mirror_pairs(job, "c1", &[p("t", 1, 0, "t", 0)])
        .await
        .unwrap();
    // Below the least pair: nothing goes.
    assert_eq!(
        s.prune_mirror_pairs(job, "c1", "t", 0, -1).await.unwrap(),
        0
    );
    // Up to 250: the pairs at 0 and 100 go, the one at 200 stays (it translates 200..=299).
    assert_eq!(
        s.prune_mirror_pairs(job, "c1", "t", 0, 250).await.unwrap(),
        2
    );
    assert_eq!(
        s.mirror_pair_at(job, "c1", "t", 0, "t", 250).await.unwrap(),
        Some(p("t", 0, 200, "t", 200))
    );
    assert_eq!(
        s.mirror_pair_at(job, "c1", "t", 0, "t", 0).await.unwrap(),
        Some(p("t", 0, 200, "t", 200))
    );
    // Partition 1 untouched.
    assert_eq!(
        s.mirror_pair_at(job, "c1", "t", 1, "t", 0).await.unwrap(),
        Some(p("t", 1, 0, "t", 0))
    );
    // Pruning is per target topic: the greatest pair at or below `below` into another topic
    // (an older mapping) does not let the pairs a translation into this one needs go.
    let two = "job-prune-two";
    s.put_mirror_pairs(
        two,
        "c1",
        &[
            p("t", 0, 10, "t.copy", 0),
            p("t", 0, 50, "t.copy", 40),
            p("t", 0, 60, "t.old", 5),
            p("t", 0, 80, "t.copy", 100),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        s.prune_mirror_pairs(two, "c1", "t", 0, 70).await.unwrap(),
        1
    );
    let kept = s
        .mirror_pair_at(two, "c1", "t", 0, "t.copy", 70)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept, p("t", 0, 50, "t.copy", 40));
    assert_eq!(kept.translate(70), 60);
    assert_eq!(
        s.mirror_pair_at(two, "c1", "t", 0, "t.old", 70)
            .await
            .unwrap(),
        Some(p("t", 0, 60, "t.old", 5))
    );
    assert_eq!(s.delete_mirror_pairs(two).await.unwrap(), 3);
    assert_eq!(s.delete_mirror_pairs(job).await.unwrap(), 4);
    assert!(s.mirror_positions(job, "c1").await.unwrap().is_empty());
    assert_eq!(s.delete_mirror_pairs(job).await.unwrap(), 0);
}
