//! Behavioural suite every `DeliveryStore` backend must pass.
//!
//! `claim_due` and `purge_before` are global (all projects), so sections keep to their own
//! "eras": every delivery outside the claim sections has `next_at = FAR` (never due), claim
//! sections drop their pending rows at the end, and only the purge-related sections use
//! negative `received_at` values (every other section uses non-negative ones).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use openeg_store::delivery::{
    Attempt, AttemptUpdate, CreatedDelivery, DeadLetter, DeadLetterState, DeadLetterUpdate,
    Delivery, DeliveryStatus, DeliveryStore, MetricsQuery, NewDelivery, PubBucket, RecordBatch,
    Routed, SubBucket, TraceQuery, TraceRow, KEPT_ATTEMPTS,
};

/// A `next_at` no claim in this suite ever reaches.
const FAR: i64 = i64::MAX / 4;

#[allow(clippy::too_many_arguments)]
fn trace(
    project: &str,
    channel: &str,
    offset: u64,
    event_id: &str,
    source: &str,
    event_type: &str,
    at: i64,
    sub_id: &str,
    sub_name: &str,
) -> TraceRow {
    TraceRow {
        project_id: project.into(),
        channel_id: channel.into(),
        offset,
        event_id: event_id.into(),
        source_name: source.into(),
        source_provider: "CUSTOM".into(),
        event_type: event_type.into(),
        received_at: at,
        subscription_id: sub_id.into(),
        subscription_name: sub_name.into(),
        event_size: size_of(offset),
        process_ms: process_of(offset),
    }
}

/// The event size and routing time the suite gives the event at `offset`.
fn size_of(offset: u64) -> u64 {
    100 + 10 * (offset % 1000)
}
fn process_of(offset: u64) -> i64 {
    2 * (offset % 1000) as i64
}

fn nd(
    project: &str,
    channel: &str,
    offset: u64,
    at: i64,
    sub_id: &str,
    target_id: &str,
    next_at: i64,
) -> NewDelivery {
    NewDelivery {
        project_id: project.into(),
        channel_id: channel.into(),
        offset,
        event_id: format!("ev-{channel}-{offset}"),
        received_at: at,
        subscription_id: sub_id.into(),
        subscription_name: format!("name-{sub_id}"),
        target_id: target_id.into(),
        target_name: format!("tname-{target_id}"),
        next_at,
    }
}

fn attempt(at: i64, success: bool, latency_ms: i64, code: &str) -> Attempt {
    Attempt {
        at,
        success,
        latency_ms,
        code: code.into(),
    }
}

fn keys(v: &[TraceRow]) -> Vec<(u64, &str)> {
    v.iter()
        .map(|t| (t.offset, t.subscription_id.as_str()))
        .collect()
}

fn dkeys(v: &[Delivery]) -> Vec<(u64, &str, &str)> {
    v.iter()
        .map(|d| (d.offset, d.subscription_id.as_str(), d.target_id.as_str()))
        .collect()
}

fn tq(channel: &str, start: i64, end: i64) -> TraceQuery {
    TraceQuery {
        channel_id: channel.into(),
        start_ms: start,
        end_ms: end,
        limit: 100,
        ..Default::default()
    }
}

/// The delivery with this id, looked up through its event.
fn ids_of(r: Vec<Routed>) -> Vec<i64> {
    r.into_iter().map(|r| r.id).collect()
}

async fn find(s: &dyn DeliveryStore, d: &NewDelivery, id: i64) -> Delivery {
    s.event_deliveries(&d.project_id, &d.channel_id, d.offset)
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.id == id)
        .unwrap_or_else(|| panic!("delivery {id} not found"))
}

pub async fn run_delivery_suite(store: Arc<dyn DeliveryStore>, label: &str) {
    let s = store.as_ref();
    roundtrip(s).await;
    replay_is_idempotent(s).await;
    list_traces(s).await;
    event_traces(s).await;
    event_deliveries(s).await;
    record_attempt(s).await;
    claim_lease(s).await;
    concurrent_claims(store.clone()).await;
    drop_pending(s).await;
    metrics(s).await;
    batched_attempts_and_release(s).await;
    write_behind_batch(s).await;
    throughput(s, label).await;
    purge(s).await;
    dead_letters(s).await;
}

/// A delivery given up with a dead-letter queue is due (`DEAD_LETTER`) until its record is
/// published; publishes change neither its attempts nor the target's recorded attempts.
async fn dead_letters(s: &dyn DeliveryStore) {
    let p = "d-dlq";
    let d = nd(p, "ch", 1, 100, "s", "t", FAR);
    let id = ids_of(
        s.record_routed(&[], std::slice::from_ref(&d))
            .await
            .unwrap(),
    )[0];
    let last = attempt(40, false, 7, "503");
    assert!(s
        .record_attempt(id, DeliveryStatus::DeadLetter, 3, 50, &last)
        .await
        .unwrap());
    let got = find(s, &d, id).await;
    assert_eq!(got.status, DeliveryStatus::DeadLetter);
    assert_eq!(
        got.dead_letter,
        DeadLetter {
            state: DeadLetterState::Pending,
            tries: 0
        }
    );
    let claimed = s.claim_due(60, 1_000, 10_000, "n1").await.unwrap();
    let c = claimed
        .iter()
        .find(|c| c.id == id)
        .expect("claimed while DEAD_LETTER");
    assert_eq!((c.status, c.next_at), (DeliveryStatus::DeadLetter, 1_060));

    let update = |status, next_at, state, tries| RecordBatch {
        dead_letters: vec![DeadLetterUpdate {
            id,
            status,
            next_at,
            dead_letter: DeadLetter { state, tries },
        }],
        ..Default::default()
    };
    s.record_batch(&update(
        DeliveryStatus::DeadLetter,
        5_000,
        DeadLetterState::Pending,
        1,
    ))
    .await
    .unwrap();
    let got = find(s, &d, id).await;
    assert_eq!(
        (got.status, got.next_at, got.attempts, got.dead_letter.tries),
        (DeliveryStatus::DeadLetter, 5_000, 3, 1)
    );
    assert_eq!(got.recent, vec![last.clone()]);
    // The publish released the claim: a restart of n1 has nothing of it to release.
    assert!(s
        .claim_due(4_000, 1_000, 10_000, "n1")
        .await
        .unwrap()
        .iter()
        .all(|c| c.id != id));

    s.record_batch(&update(DeliveryStatus::Failed, 0, DeadLetterState::Sent, 1))
        .await
        .unwrap();
    let got = find(s, &d, id).await;
    assert_eq!(
        (got.status, got.attempts, got.dead_letter),
        (
            DeliveryStatus::Failed,
            3,
            DeadLetter {
                state: DeadLetterState::Sent,
                tries: 1
            }
        )
    );
    assert_eq!(got.recent, vec![last]);
    assert!(s
        .claim_due(i64::MAX / 2, 1, 10_000, "n1")
        .await
        .unwrap()
        .iter()
        .all(|c| c.id != id));
    // Dropped is kept apart from sent; a missing delivery is ignored.
    s.record_batch(&update(
        DeliveryStatus::Failed,
        0,
        DeadLetterState::Dropped,
        9,
    ))
    .await
    .unwrap();
    assert_eq!(
        find(s, &d, id).await.dead_letter,
        DeadLetter {
            state: DeadLetterState::Dropped,
            tries: 9
        }
    );
    let mut missing = update(DeliveryStatus::Failed, 0, DeadLetterState::Sent, 0);
    missing.dead_letters[0].id = id + 1_000_000;
    s.record_batch(&missing).await.unwrap();
}

async fn roundtrip(s: &dyn DeliveryStore) {
    let p = "d-rt";
    assert!(s.record_routed(&[], &[]).await.unwrap().is_empty());

    let traces = vec![
        trace(p, "ch", 1, "e1", "src", "t", 100, "s1", "sn1"),
        trace(p, "ch", 1, "e1", "src", "t", 100, "s2", "sn2"),
        trace(p, "ch", 2, "e2", "src", "t", 200, "", ""),
    ];
    let dels = vec![
        nd(p, "ch", 1, 100, "s2", "t1", FAR),
        nd(p, "ch", 1, 100, "s1", "t2", FAR - 1),
        nd(p, "ch", 1, 100, "s1", "t1", FAR - 2),
    ];
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let ids = ids_of(s.record_routed(&traces, &dels).await.unwrap());
    assert_eq!(ids.len(), 3);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 3, "distinct ids");
    for (d, id) in dels.iter().zip(&ids) {
        let got = find(s, d, *id).await;
        assert_eq!(got.project_id, d.project_id);
        assert_eq!(got.channel_id, d.channel_id);
        assert_eq!(got.offset, d.offset);
        assert_eq!(got.event_id, d.event_id);
        assert_eq!(got.received_at, d.received_at);
        assert_eq!(got.subscription_id, d.subscription_id);
        assert_eq!(got.subscription_name, d.subscription_name);
        assert_eq!(
            got.target_id, d.target_id,
            "id {id} belongs to its input row"
        );
        assert_eq!(got.target_name, d.target_name);
        assert_eq!(got.next_at, d.next_at);
        assert_eq!(got.status, DeliveryStatus::Pending);
        assert_eq!(got.attempts, 0);
        assert!(got.recent.is_empty());
        assert!(got.updated_at >= before);
    }

    let (total, rows) = s.list_traces(p, &tq("ch", 0, 1000)).await.unwrap();
    assert_eq!(total, 3);
    // Every field survives.
    assert_eq!(rows[0], traces[2]);
    assert_eq!(rows[1..], traces[..2]);

    // Traces only, deliveries only.
    assert!(s
        .record_routed(&[trace(p, "ch", 3, "e3", "src", "t", 300, "", "")], &[])
        .await
        .unwrap()
        .is_empty());
    let only = s
        .record_routed(&[], &[nd(p, "ch", 3, 300, "s1", "t1", FAR)])
        .await
        .unwrap();
    assert_eq!(only.len(), 1);
    assert!(only[0].id > 0 && only[0].created);

    // An offset beyond i64 is rejected before anything is written.
    let bad = s
        .record_routed(
            &[trace(p, "ch", 4, "e4", "src", "t", 400, "", "")],
            &[nd(p, "ch", u64::MAX, 400, "s1", "t1", FAR)],
        )
        .await;
    assert!(bad.is_err());
    assert_eq!(s.list_traces(p, &tq("ch", 0, 1000)).await.unwrap().0, 4);

    // Large offsets (within i64) round-trip.
    let big = (i64::MAX as u64) - 1;
    let id = s
        .record_routed(
            &[trace(p, "big", big, "eb", "src", "t", 500, "", "")],
            &[nd(p, "big", big, 500, "s1", "t1", FAR)],
        )
        .await
        .unwrap();
    let d = s.event_deliveries(p, "big", big).await.unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].id, d[0].offset), (id[0].id, big));
    assert_eq!(s.event_traces(p, None, "eb").await.unwrap()[0].offset, big);
}

async fn replay_is_idempotent(s: &dyn DeliveryStore) {
    let p = "d-replay";
    let traces = vec![
        trace(p, "ch", 1, "e1", "src", "t", 100, "s1", "sn1"),
        trace(p, "ch", 2, "e2", "src", "t", 100, "s1", "sn1"),
    ];
    let dels = vec![
        nd(p, "ch", 1, 100, "s1", "t1", FAR),
        nd(p, "ch", 2, 100, "s1", "t1", FAR),
    ];
    let first = ids_of(s.record_routed(&traces, &dels).await.unwrap());
    s.record_attempt(
        first[0],
        DeliveryStatus::Succeeded,
        1,
        FAR,
        &attempt(1, true, 5, "200"),
    )
    .await
    .unwrap();

    // Replay of the same batch plus one new event: old ids come back, state is kept.
    let mut traces2 = traces.clone();
    traces2.push(trace(p, "ch", 3, "e3", "src", "t", 100, "s1", "sn1"));
    let mut dels2 = dels.clone();
    dels2.insert(1, nd(p, "ch", 3, 100, "s1", "t1", FAR));
    // The same delivery twice in one batch gets one id.
    dels2.push(dels[1].clone());
    let routed = s.record_routed(&traces2, &dels2).await.unwrap();
    assert_eq!(
        routed.iter().map(|r| r.created).collect::<Vec<_>>(),
        vec![false, true, false, false],
        "only the new delivery is created by the replay"
    );
    let second = ids_of(routed);
    assert_eq!(second.len(), 4);
    assert_eq!(second[0], first[0]);
    assert_eq!(second[2], first[1]);
    assert_eq!(second[3], first[1]);
    assert!(!first.contains(&second[1]));
    let kept = find(s, &dels[0], first[0]).await;
    assert_eq!(kept.status, DeliveryStatus::Succeeded);
    assert_eq!(kept.attempts, 1);

    let (total, _) = s.list_traces(p, &tq("ch", 0, 1000)).await.unwrap();
    assert_eq!(total, 3, "replayed trace rows are not duplicated");
    for off in 1..=3 {
        assert_eq!(s.event_deliveries(p, "ch", off).await.unwrap().len(), 1);
    }
}

async fn list_traces(s: &dyn DeliveryStore) {
    let p = "d-list";
    let traces = vec![
        trace(p, "ch1", 1, "e1", "src1", "t1", 1000, "s1", "sa"),
        trace(p, "ch1", 1, "e1", "src1", "t1", 1000, "s2", "sb"),
        trace(p, "ch1", 2, "e2", "src2", "t2", 2000, "", ""),
        trace(p, "ch1", 3, "e3", "src1", "t2", 3000, "s1", "sa"),
        trace(p, "ch1", 4, "e4", "src2", "t1", 3000, "s2", "sb"),
        trace(p, "ch2", 1, "e1", "src1", "t1", 2500, "s1", "sa"),
        trace(
            "d-list-other",
            "ch1",
            9,
            "e1",
            "src1",
            "t1",
            2000,
            "s1",
            "sa",
        ),
    ];
    s.record_routed(&traces, &[]).await.unwrap();

    let all = [(4, "s2"), (3, "s1"), (2, ""), (1, "s1"), (1, "s2")];
    let (total, rows) = s.list_traces(p, &tq("ch1", 0, 10_000)).await.unwrap();
    assert_eq!(total, 5);
    assert_eq!(
        keys(&rows),
        all,
        "newest first, then offset desc, then subscription"
    );
    assert!(rows
        .iter()
        .all(|r| r.project_id == p && r.channel_id == "ch1"));

    // Window: both ends inclusive.
    let (total, rows) = s.list_traces(p, &tq("ch1", 1000, 2000)).await.unwrap();
    assert_eq!(total, 3);
    assert_eq!(keys(&rows), all[2..]);
    let (total, rows) = s.list_traces(p, &tq("ch1", 1001, 2999)).await.unwrap();
    assert_eq!((total, keys(&rows)), (1, vec![(2, "")]));
    assert_eq!(s.list_traces(p, &tq("ch1", 3001, 9999)).await.unwrap().0, 0);

    // Filters, one at a time and together.
    let mut q = tq("ch1", 0, 10_000);
    q.event_id = Some("e1".into());
    assert_eq!(keys(&s.list_traces(p, &q).await.unwrap().1), all[3..]);
    let mut q = tq("ch1", 0, 10_000);
    q.source_name = Some("src1".into());
    assert_eq!(
        keys(&s.list_traces(p, &q).await.unwrap().1),
        [(3, "s1"), (1, "s1"), (1, "s2")]
    );
    let mut q = tq("ch1", 0, 10_000);
    q.event_type = Some("t2".into());
    assert_eq!(
        keys(&s.list_traces(p, &q).await.unwrap().1),
        [(3, "s1"), (2, "")]
    );
    let mut q = tq("ch1", 0, 10_000);
    q.subscription_name = Some("sb".into());
    assert_eq!(
        keys(&s.list_traces(p, &q).await.unwrap().1),
        [(4, "s2"), (1, "s2")]
    );
    let mut q = tq("ch1", 0, 10_000);
    q.source_name = Some("src1".into());
    q.event_type = Some("t1".into());
    q.subscription_name = Some("sa".into());
    assert_eq!(keys(&s.list_traces(p, &q).await.unwrap().1), [(1, "s1")]);
    let mut q = tq("ch1", 0, 10_000);
    q.event_id = Some("E1".into());
    assert_eq!(
        s.list_traces(p, &q).await.unwrap().0,
        0,
        "exact, case-sensitive"
    );
    assert_eq!(s.list_traces(p, &tq("ch2", 0, 10_000)).await.unwrap().0, 1);
    assert_eq!(s.list_traces(p, &tq("nope", 0, 10_000)).await.unwrap().0, 0);
    assert_eq!(
        s.list_traces("nope", &tq("ch1", 0, 10_000))
            .await
            .unwrap()
            .0,
        0
    );

    // Paging.
    let mut q = tq("ch1", 0, 10_000);
    q.offset = 1;
    q.limit = 2;
    let (total, rows) = s.list_traces(p, &q).await.unwrap();
    assert_eq!((total, keys(&rows)), (5, all[1..3].to_vec()));
    q.offset = 4;
    assert_eq!(keys(&s.list_traces(p, &q).await.unwrap().1), all[4..]);
    q.offset = 10;
    assert_eq!(s.list_traces(p, &q).await.unwrap(), (5, vec![]));
    q.offset = 0;
    q.limit = 0;
    assert_eq!(s.list_traces(p, &q).await.unwrap(), (5, vec![]));
}

async fn event_traces(s: &dyn DeliveryStore) {
    let p = "d-ev";
    s.record_routed(
        &[
            trace(p, "ch1", 5, "dup", "srcA", "t", 100, "b", "nb"),
            trace(p, "ch1", 5, "dup", "srcA", "t", 100, "a", "na"),
            trace(p, "ch2", 1, "dup", "srcB", "t", 200, "c", "nc"),
            trace(p, "ch1", 7, "tie", "src", "t", 300, "", ""),
            trace(p, "ch1", 8, "tie", "src", "t", 300, "x", "nx"),
            trace(p, "ch1", 9, "other", "src", "t", 999, "a", "na"),
        ],
        &[],
    )
    .await
    .unwrap();

    let rows = s.event_traces(p, None, "dup").await.unwrap();
    assert_eq!(keys(&rows), [(1, "c")], "newest by received_at");
    assert_eq!(rows[0].channel_id, "ch2");
    assert_eq!(rows[0].source_name, "srcB");
    let rows = s.event_traces(p, Some("ch1"), "dup").await.unwrap();
    assert_eq!(
        keys(&rows),
        [(5, "a"), (5, "b")],
        "only that channel, by subscription"
    );
    assert!(s
        .event_traces(p, Some("ch3"), "dup")
        .await
        .unwrap()
        .is_empty());
    let rows = s.event_traces(p, None, "tie").await.unwrap();
    assert_eq!(keys(&rows), [(8, "x")], "same time: larger offset");
    assert!(s.event_traces(p, None, "unknown").await.unwrap().is_empty());
    assert!(s
        .event_traces("d-ev-x", None, "dup")
        .await
        .unwrap()
        .is_empty());
}

async fn event_deliveries(s: &dyn DeliveryStore) {
    let p = "d-evd";
    s.record_routed(
        &[],
        &[
            nd(p, "ch", 5, 100, "b", "t1", FAR),
            nd(p, "ch", 5, 100, "a", "t2", FAR),
            nd(p, "ch", 6, 100, "a", "t0", FAR),
            nd(p, "ch", 5, 100, "a", "t1", FAR),
            nd(p, "ch2", 5, 100, "a", "t0", FAR),
        ],
    )
    .await
    .unwrap();
    let got = s.event_deliveries(p, "ch", 5).await.unwrap();
    assert_eq!(
        dkeys(&got),
        [(5, "a", "t1"), (5, "a", "t2"), (5, "b", "t1")]
    );
    assert!(s.event_deliveries(p, "ch", 7).await.unwrap().is_empty());
    assert!(s.event_deliveries("x", "ch", 5).await.unwrap().is_empty());
}

async fn record_attempt(s: &dyn DeliveryStore) {
    let p = "d-att";
    let d = nd(p, "ch", 1, 100, "s", "t", FAR);
    let id = s
        .record_routed(&[], std::slice::from_ref(&d))
        .await
        .unwrap()[0]
        .id;
    let a = |i: i64| attempt(1000 + i, i == 4, 10 * i, &format!("{}", 500 + i));
    for i in 1..=3 {
        assert!(s
            .record_attempt(id, DeliveryStatus::Retrying, i as u32, 5000 + i, &a(i))
            .await
            .unwrap());
    }
    let got = find(s, &d, id).await;
    assert_eq!(got.recent, vec![a(3), a(2), a(1)]);
    assert_eq!(
        (got.status, got.attempts, got.next_at),
        (DeliveryStatus::Retrying, 3, 5003)
    );
    assert!(s
        .record_attempt(id, DeliveryStatus::Succeeded, 4, 0, &a(4))
        .await
        .unwrap());
    let got = find(s, &d, id).await;
    assert_eq!(got.recent.len(), KEPT_ATTEMPTS);
    assert_eq!(got.recent, vec![a(4), a(3), a(2)], "3 newest, newest first");
    assert_eq!(
        (got.status, got.attempts, got.next_at),
        (DeliveryStatus::Succeeded, 4, 0)
    );
    // Network failure: empty code, unicode-free but quoted text survives JSON.
    let net = attempt(2000, false, 0, "");
    let quoted = attempt(2001, false, 1, "\"x\" \\ y");
    s.record_attempt(id, DeliveryStatus::Failed, 6, 0, &net)
        .await
        .unwrap();
    s.record_attempt(id, DeliveryStatus::Failed, 6, 0, &quoted)
        .await
        .unwrap();
    let got = find(s, &d, id).await;
    assert_eq!(got.recent, vec![quoted, net, a(4)]);

    assert!(!s
        .record_attempt(id + 1_000_000, DeliveryStatus::Failed, 1, 0, &a(1))
        .await
        .unwrap());
}

async fn claim_lease(s: &dyn DeliveryStore) {
    let p = "d-claim";
    let dels = vec![
        nd(p, "ch", 1, 100, "s", "t", 200),
        nd(p, "ch", 2, 100, "s", "t", 100),
        nd(p, "ch", 3, 100, "s", "t", 300),
        nd(p, "ch", 4, 100, "s", "t", 10_000),
    ];
    let ids = ids_of(s.record_routed(&[], &dels).await.unwrap());

    assert!(
        s.claim_due(99, 1000, 10, "n1").await.unwrap().is_empty(),
        "none due"
    );
    assert!(
        s.claim_due(250, 1000, 0, "n1").await.unwrap().is_empty(),
        "limit 0"
    );
    let got = s.claim_due(250, 1000, 10, "n1").await.unwrap();
    assert_eq!(
        got.iter().map(|d| d.id).collect::<Vec<_>>(),
        [ids[1], ids[0]],
        "oldest next_at first"
    );
    assert!(got.iter().all(|d| d.next_at == 1250), "lease applied");
    assert_eq!(got[0].offset, 2);
    assert_eq!(
        find(s, &dels[0], ids[0]).await.next_at,
        1250,
        "lease stored"
    );
    // Within the lease nobody gets them again.
    assert!(s.claim_due(250, 1000, 10, "n1").await.unwrap().is_empty());
    // Limit.
    let got = s.claim_due(300, 1000, 1, "n1").await.unwrap();
    assert_eq!(got.iter().map(|d| d.id).collect::<Vec<_>>(), [ids[2]]);
    assert!(s.claim_due(1249, 1000, 10, "n1").await.unwrap().is_empty());
    // After the lease (next_at <= now): claimable again; ties by id.
    let got = s.claim_due(1250, 1000, 10, "n1").await.unwrap();
    let mut expect = vec![ids[0], ids[1]];
    expect.sort();
    assert_eq!(got.iter().map(|d| d.id).collect::<Vec<_>>(), expect);
    assert!(got.iter().all(|d| d.next_at == 2250));

    // Only Pending / Retrying are claimed.
    s.record_attempt(
        ids[0],
        DeliveryStatus::Succeeded,
        1,
        0,
        &attempt(1, true, 1, "200"),
    )
    .await
    .unwrap();
    s.record_attempt(
        ids[1],
        DeliveryStatus::Retrying,
        1,
        3000,
        &attempt(1, false, 1, "503"),
    )
    .await
    .unwrap();
    s.record_attempt(
        ids[2],
        DeliveryStatus::Failed,
        1,
        0,
        &attempt(1, false, 1, "400"),
    )
    .await
    .unwrap();
    let got = s.claim_due(5000, 1000, 10, "n1").await.unwrap();
    assert_eq!(got.iter().map(|d| d.id).collect::<Vec<_>>(), [ids[1]]);
    assert_eq!(got[0].status, DeliveryStatus::Retrying);
    assert_eq!(got[0].attempts, 1);
    assert_eq!(got[0].recent.len(), 1);
    // ids[1]'s lease from that claim ended at 6000; ids[3] becomes due at 10_000.
    let got = s.claim_due(10_000, 1000, 10, "n1").await.unwrap();
    assert_eq!(
        got.iter().map(|d| d.id).collect::<Vec<_>>(),
        [ids[1], ids[3]]
    );

    // Leave nothing claimable behind for later sections.
    assert_eq!(s.drop_pending_for_subscription(p, "s").await.unwrap(), 2);
    assert!(s
        .claim_due(1_000_000, 1000, 10, "n1")
        .await
        .unwrap()
        .is_empty());
}

async fn concurrent_claims(store: Arc<dyn DeliveryStore>) {
    let p = "d-conc";
    let dels: Vec<NewDelivery> = (0..200u64)
        .map(|i| nd(p, "ch", i, 100, "s", "t", 50 + (i as i64 % 17)))
        .collect();
    let ids = ids_of(store.record_routed(&[], &dels).await.unwrap());

    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = s.claim_due(1000, 1_000_000, 7, "n1").await.unwrap();
                if got.is_empty() {
                    break;
                }
                assert!(got.len() <= 7);
                mine.extend(got.into_iter().map(|d| d.id));
                tokio::task::yield_now().await;
            }
            mine
        }));
    }
    let mut counts: HashMap<i64, usize> = HashMap::new();
    let mut busy_tasks = 0;
    for t in tasks {
        let mine = t.await.unwrap();
        busy_tasks += usize::from(!mine.is_empty());
        for id in mine {
            *counts.entry(id).or_default() += 1;
        }
    }
    assert!(
        counts.values().all(|&n| n == 1),
        "claimed twice: {counts:?}"
    );
    assert_eq!(
        counts.keys().copied().collect::<BTreeSet<_>>(),
        ids.iter().copied().collect::<BTreeSet<_>>(),
        "every row claimed"
    );
    eprintln!("concurrent claims: 200 rows over {busy_tasks} of 8 claimers");
    assert!(store
        .claim_due(1000, 1_000_000, 500, "n1")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.drop_pending_for_subscription(p, "s").await.unwrap(),
        200
    );
}

async fn drop_pending(s: &dyn DeliveryStore) {
    let p = "d-drop";
    let dels = vec![
        nd(p, "ch", 1, 100, "x", "t", FAR),
        nd(p, "ch", 2, 100, "x", "t", FAR),
        nd(p, "ch", 3, 100, "x", "t", FAR),
        nd(p, "ch", 4, 100, "x", "t", FAR),
        nd(p, "ch", 5, 100, "y", "t", FAR),
        nd("d-drop-other", "ch", 1, 100, "x", "t", FAR),
    ];
    let ids = ids_of(s.record_routed(&[], &dels).await.unwrap());
    let st = [
        DeliveryStatus::Succeeded,
        DeliveryStatus::Failed,
        DeliveryStatus::Retrying,
    ];
    for (id, status) in ids.iter().zip(st) {
        s.record_attempt(*id, status, 1, FAR, &attempt(1, false, 1, ""))
            .await
            .unwrap();
    }
    assert_eq!(s.drop_pending_for_subscription(p, "x").await.unwrap(), 2);
    assert_eq!(s.event_deliveries(p, "ch", 1).await.unwrap().len(), 1);
    assert_eq!(s.event_deliveries(p, "ch", 2).await.unwrap().len(), 1);
    assert!(s.event_deliveries(p, "ch", 3).await.unwrap().is_empty());
    assert!(s.event_deliveries(p, "ch", 4).await.unwrap().is_empty());
    assert_eq!(s.event_deliveries(p, "ch", 5).await.unwrap().len(), 1);
    assert_eq!(
        s.event_deliveries("d-drop-other", "ch", 1)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(!s
        .record_attempt(
            ids[3],
            DeliveryStatus::Failed,
            2,
            0,
            &attempt(2, false, 1, "")
        )
        .await
        .unwrap());
    assert_eq!(s.drop_pending_for_subscription(p, "x").await.unwrap(), 0);
    assert_eq!(s.drop_pending_for_subscription(p, "nope").await.unwrap(), 0);
}

fn mq(project: &str) -> MetricsQuery {
    MetricsQuery {
        project_id: project.into(),
        start_ms: 10_000,
        end_ms: 13_000,
        period_ms: 1000,
        ..Default::default()
    }
}

async fn metrics(s: &dyn DeliveryStore) {
    let p = "d-met";
    let traces = vec![
        // One event matched by three subscriptions counts once.
        trace(p, "ch1", 1, "e1", "s1", "t", 10_100, "a", "na"),
        trace(p, "ch1", 1, "e1", "s1", "t", 10_100, "b", "nb"),
        trace(p, "ch1", 1, "e1", "s1", "t", 10_100, "c", "nc"),
        trace(p, "ch1", 2, "e2", "s2", "t", 10_999, "", ""),
        trace(p, "ch2", 1, "e3", "s1", "t", 12_500, "a", "na"),
        trace(p, "ch1", 3, "e4", "s1", "t", 9_999, "a", "na"),
        trace(p, "ch1", 4, "e5", "s1", "t", 13_000, "a", "na"),
    ];
    let dels = vec![
        nd(p, "ch1", 1, 10_100, "a", "t1", FAR),
        nd(p, "ch1", 1, 10_100, "b", "t1", FAR),
        nd(p, "ch1", 1, 10_100, "c", "t1", FAR),
        nd(p, "ch1", 1, 10_100, "c", "t2", FAR),
        nd(p, "ch2", 1, 12_500, "a", "t1", FAR),
        nd(p, "ch1", 3, 9_999, "a", "t1", FAR),
        nd(p, "ch1", 4, 13_000, "a", "t1", FAR),
    ];
    let ids = ids_of(s.record_routed(&traces, &dels).await.unwrap());
    let rec = |i: usize, st: DeliveryStatus, n: u32, ms: i64| {
        let id = ids[i];
        async move {
            assert!(s
                .record_attempt(
                    id,
                    st,
                    n,
                    FAR,
                    &attempt(n.into(), st == DeliveryStatus::Succeeded, ms, "")
                )
                .await
                .unwrap());
        }
    };
    // a/t1: failed once (100 ms), then succeeded (40 ms).
    rec(0, DeliveryStatus::Retrying, 1, 100).await;
    rec(0, DeliveryStatus::Succeeded, 2, 40).await;
    // b/t1: succeeded at once (10 ms).
    rec(1, DeliveryStatus::Succeeded, 1, 10).await;
    // c/t1: failed three times, given up (latest 7 ms).
    rec(2, DeliveryStatus::Retrying, 1, 5).await;
    rec(2, DeliveryStatus::Retrying, 2, 6).await;
    rec(2, DeliveryStatus::Failed, 3, 7).await;
    // c/t2: never attempted (no latency). ch2 a/t1: failed once, 300 ms.
    rec(4, DeliveryStatus::Failed, 1, 300).await;
    // Outside the window.
    rec(5, DeliveryStatus::Succeeded, 1, 1).await;
    rec(6, DeliveryStatus::Succeeded, 1, 1).await;

    // A bucket of the events at these offsets (each counted once, whatever it matched).
    let pb = |start_ms, offsets: &[u64]| {
        let sizes = offsets.iter().map(|&o| size_of(o));
        let procs = offsets.iter().map(|&o| process_of(o) as u64);
        PubBucket {
            start_ms,
            events: offsets.len() as u64,
            size_sum: sizes.clone().sum(),
            size_max: sizes.clone().max().unwrap_or(0),
            size_min: sizes.min().unwrap_or(0),
            process_sum_ms: procs.clone().sum(),
            process_max_ms: procs.clone().max().unwrap_or(0),
            process_min_ms: procs.min().unwrap_or(0),
        }
    };
    assert_eq!(
        s.pub_metrics(&mq(p)).await.unwrap(),
        [pb(10_000, &[1, 2]), pb(12_000, &[1])]
    );
    let mut q = mq(p);
    q.channel_id = Some("ch1".into());
    assert_eq!(s.pub_metrics(&q).await.unwrap(), [pb(10_000, &[1, 2])]);
    let mut q = mq(p);
    q.source_name = Some("s1".into());
    assert_eq!(
        s.pub_metrics(&q).await.unwrap(),
        [pb(10_000, &[1]), pb(12_000, &[1])]
    );
    q.channel_id = Some("ch2".into());
    q.source_name = Some("s2".into());
    assert!(s.pub_metrics(&q).await.unwrap().is_empty());
    let mut q = mq(p);
    q.period_ms = 3000;
    assert_eq!(s.pub_metrics(&q).await.unwrap(), [pb(10_000, &[1, 2, 1])]);
    q.period_ms = 1;
    assert_eq!(s.pub_metrics(&q).await.unwrap().len(), 3);
    assert_eq!(s.pub_metrics(&q).await.unwrap()[1], pb(10_999, &[2]));
    q.period_ms = 0;
    assert!(s.pub_metrics(&q).await.is_err());
    assert!(s.sub_metrics(&q).await.is_err());
    assert!(s.pub_metrics(&mq("nope")).await.unwrap().is_empty());

    let b10 = SubBucket {
        start_ms: 10_000,
        deliveries: 4,
        succeeded: 2,
        failed: 1,
        retry_succeeded: 1,
        retry_failed: 1,
        retries: 3,
        latency_sum_ms: 57,
        latency_max_ms: 40,
        latency_min_ms: 7,
    };
    let b12 = SubBucket {
        start_ms: 12_000,
        deliveries: 1,
        succeeded: 0,
        failed: 1,
        retry_succeeded: 0,
        retry_failed: 0,
        retries: 0,
        latency_sum_ms: 300,
        latency_max_ms: 300,
        latency_min_ms: 300,
    };
    assert_eq!(
        s.sub_metrics(&mq(p)).await.unwrap(),
        [b10.clone(), b12.clone()]
    );
    let mut q = mq(p);
    q.channel_id = Some("ch2".into());
    assert_eq!(s.sub_metrics(&q).await.unwrap(), std::slice::from_ref(&b12));
    let mut q = mq(p);
    q.subscription_id = Some("a".into());
    let a10 = SubBucket {
        start_ms: 10_000,
        deliveries: 1,
        succeeded: 1,
        retry_succeeded: 1,
        retries: 1,
        latency_sum_ms: 40,
        latency_max_ms: 40,
        latency_min_ms: 40,
        ..Default::default()
    };
    assert_eq!(s.sub_metrics(&q).await.unwrap(), [a10, b12]);
    let mut q = mq(p);
    q.target_id = Some("t2".into());
    assert_eq!(
        s.sub_metrics(&q).await.unwrap(),
        [SubBucket {
            start_ms: 10_000,
            deliveries: 1,
            ..Default::default()
        }],
        "no attempt: no latency"
    );
    q.subscription_id = Some("a".into());
    assert!(s.sub_metrics(&q).await.unwrap().is_empty());
    let mut q = mq(p);
    q.period_ms = 3000;
    let all = s.sub_metrics(&q).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].deliveries, all[0].latency_sum_ms), (5, 357));
}

/// Not a timed assertion: prints how long the hot path takes so a regression to row-by-row
/// writes is visible.
async fn throughput(s: &dyn DeliveryStore, label: &str) {
    let p = "d-perf";
    const N: u64 = 10_000;
    let mk = |channel: &str, i: u64| {
        let at = -1_000_000_000 - (i as i64);
        (
            trace(
                p,
                channel,
                i,
                &format!("e{i}"),
                "src",
                "type.a",
                at,
                "sub",
                "sub-name",
            ),
            nd(p, channel, i, at, "sub", "target", FAR),
        )
    };
    let (traces, dels): (Vec<_>, Vec<_>) = (0..N).map(|i| mk("one", i)).unzip();
    let t0 = Instant::now();
    let ids = ids_of(s.record_routed(&traces, &dels).await.unwrap());
    let one = t0.elapsed();
    assert_eq!(ids.len(), N as usize);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), N as usize);

    let (traces, dels): (Vec<_>, Vec<_>) = (0..N).map(|i| mk("batched", i)).unzip();
    let t0 = Instant::now();
    for (t, d) in traces.chunks(500).zip(dels.chunks(500)) {
        s.record_routed(t, d).await.unwrap();
    }
    let batched = t0.elapsed();
    let rate = |d: std::time::Duration| (2 * N) as f64 / d.as_secs_f64();
    eprintln!(
        "[{label}] record_routed: {N} events (1 trace + 1 delivery each) in one call: \
         {one:?} ({:.0} rows/s); in 20 calls of 500: {batched:?} ({:.0} rows/s)",
        rate(one),
        rate(batched)
    );
    let id = s.event_deliveries(p, "batched", 4321).await.unwrap()[0].id;
    assert!(id > 0);
}

async fn batched_attempts_and_release(s: &dyn DeliveryStore) {
    let p = "d-batch";
    let dels = vec![
        nd(p, "ch", 1, 100, "s", "t1", FAR),
        nd(p, "ch", 2, 100, "s", "t1", FAR),
        nd(p, "ch", 3, 100, "s", "t1", 50),
    ];
    let ids = ids_of(s.record_routed(&[], &dels).await.unwrap());
    let up = |id: i64, st: DeliveryStatus, n: u32| AttemptUpdate {
        id,
        status: st,
        attempts: n,
        next_at: 0,
        attempt: attempt(10 + n as i64, st == DeliveryStatus::Succeeded, 3, "200"),
    };
    let found = s
        .record_attempts(&[
            up(ids[0], DeliveryStatus::Succeeded, 1),
            up(i64::MAX, DeliveryStatus::Failed, 1),
            up(ids[1], DeliveryStatus::Retrying, 1),
            up(ids[1], DeliveryStatus::Succeeded, 2),
        ])
        .await
        .unwrap();
    assert_eq!(found, vec![true, false, true, true]);
    let d0 = find(s, &dels[0], ids[0]).await;
    assert_eq!(
        (d0.status, d0.attempts, d0.recent.len()),
        (DeliveryStatus::Succeeded, 1, 1)
    );
    let d1 = find(s, &dels[1], ids[1]).await;
    assert_eq!(
        (d1.status, d1.attempts, d1.recent.len()),
        (DeliveryStatus::Succeeded, 2, 2)
    );
    assert_eq!(d1.recent[0].at, 12, "newest first, in update order");
    assert!(s.record_attempts(&[]).await.unwrap().is_empty());

    // Only the still-pending delivery with a future lease is released.
    let released = s.release_pending(1_000, "n1").await.unwrap();
    assert!(released >= 1);
    let d2 = find(s, &dels[2], ids[2]).await;
    assert_eq!(d2.next_at, 50, "an already-due delivery keeps its time");
    let claimed = s.claim_due(1_000, 10, 100_000, "n1").await.unwrap();
    assert!(claimed
        .iter()
        .all(|d| d.status == DeliveryStatus::Pending || d.status == DeliveryStatus::Retrying));
    assert!(claimed.iter().any(|d| d.id == ids[2]));
    assert!(!claimed.iter().any(|d| d.id == ids[0] || d.id == ids[1]));

    // Claims are owned: a restarting node releases its own unanswered claims (also of
    // retrying deliveries), never another node's.
    assert_eq!(
        s.release_pending(1_005, "other-node").await.unwrap(),
        0,
        "another node's claims stay"
    );
    assert_eq!(find(s, &dels[2], ids[2]).await.next_at, 1_010);
    let released = s.release_pending(1_005, "n1").await.unwrap();
    assert_eq!(
        released as usize,
        claimed.len(),
        "every claim of n1 released"
    );
    assert_eq!(find(s, &dels[2], ids[2]).await.next_at, 1_005);
    let again = s.claim_due(1_005, 100, 100_000, "n1").await.unwrap();
    assert!(again.iter().any(|d| d.id == ids[2]));
    // An outcome ends the claim: a retry scheduled at 5000 is not moved by a release.
    s.record_attempts(&[AttemptUpdate {
        id: ids[2],
        status: DeliveryStatus::Retrying,
        attempts: 1,
        next_at: 5_000,
        attempt: attempt(1_006, false, 1, "500"),
    }])
    .await
    .unwrap();
    s.release_pending(1_006, "n1").await.unwrap();
    let d2 = find(s, &dels[2], ids[2]).await;
    assert_eq!((d2.status, d2.next_at), (DeliveryStatus::Retrying, 5_000));
    // Given back by postpone: no longer claimed either.
    let got = s.claim_due(5_000, 100, 100_000, "n1").await.unwrap();
    assert!(got.iter().any(|d| d.id == ids[2]));
    s.postpone(&[ids[2]], 7_000).await.unwrap();
    s.release_pending(5_001, "n1").await.unwrap();
    assert_eq!(find(s, &dels[2], ids[2]).await.next_at, 7_000);
}

/// `record_batch`: traces, deliveries created with their first outcome (or pending), and
/// updates by id, in one call; a replayed batch keeps what is stored.
async fn write_behind_batch(s: &dyn DeliveryStore) {
    let p = "d-wb";
    s.record_batch(&RecordBatch::default()).await.unwrap();
    // An existing delivery (made by the record-first path) to update by id in the batch.
    let old = nd(p, "ch", 1, 100, "s", "t1", FAR);
    let old_id = ids_of(
        s.record_routed(&[], std::slice::from_ref(&old))
            .await
            .unwrap(),
    )[0];
    let created =
        |offset: u64, target: &str, status: DeliveryStatus, a: Option<Attempt>, next_at: i64| {
            CreatedDelivery {
                delivery: nd(p, "ch", offset, 100 + offset as i64, "s", target, next_at),
                status,
                attempts: u32::from(a.is_some()),
                attempt: a,
            }
        };
    let batch = RecordBatch {
        traces: vec![
            trace(p, "ch", 2, "e2", "src", "t", 102, "s", "sn"),
            trace(p, "ch", 3, "e3", "src", "t", 103, "", ""),
        ],
        created: vec![
            created(
                2,
                "t1",
                DeliveryStatus::Succeeded,
                Some(attempt(7, true, 4, "200")),
                0,
            ),
            created(
                2,
                "t2",
                DeliveryStatus::Retrying,
                Some(attempt(8, false, 5, "500")),
                FAR,
            ),
            created(2, "t3", DeliveryStatus::Pending, None, FAR - 1),
        ],
        updates: vec![
            AttemptUpdate {
                id: old_id,
                status: DeliveryStatus::Succeeded,
                attempts: 1,
                next_at: 0,
                attempt: attempt(9, true, 6, "204"),
            },
            AttemptUpdate {
                id: i64::MAX,
                status: DeliveryStatus::Failed,
                attempts: 1,
                next_at: 0,
                attempt: attempt(9, false, 6, ""),
            },
        ],
        dead_letters: vec![],
    };
    assert_eq!(batch.len(), 7);
    s.record_batch(&batch).await.unwrap();

    let (total, rows) = s.list_traces(p, &tq("ch", 0, 1000)).await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(rows[0], batch.traces[1], "newest first, every field kept");
    assert_eq!(rows[1], batch.traces[0]);

    let got = s.event_deliveries(p, "ch", 2).await.unwrap();
    assert_eq!(
        dkeys(&got),
        vec![(2, "s", "t1"), (2, "s", "t2"), (2, "s", "t3")]
    );
    assert_eq!(
        (got[0].status, got[0].attempts),
        (DeliveryStatus::Succeeded, 1)
    );
    assert_eq!(got[0].recent, vec![attempt(7, true, 4, "200")]);
    assert_eq!(got[0].event_id, "ev-ch-2");
    assert_eq!(got[0].target_name, "tname-t1");
    assert_eq!(
        (got[1].status, got[1].attempts, got[1].next_at),
        (DeliveryStatus::Retrying, 1, FAR)
    );
    assert_eq!(got[1].recent, vec![attempt(8, false, 5, "500")]);
    assert_eq!(
        (got[2].status, got[2].attempts, got[2].next_at),
        (DeliveryStatus::Pending, 0, FAR - 1)
    );
    assert!(got[2].recent.is_empty());
    let o = find(s, &old, old_id).await;
    assert_eq!((o.status, o.attempts), (DeliveryStatus::Succeeded, 1));
    assert_eq!(o.recent, vec![attempt(9, true, 6, "204")]);

    // A replay (same keys, other states) changes nothing stored.
    let mut replay = batch.clone();
    replay.updates.clear();
    for c in &mut replay.created {
        c.status = DeliveryStatus::Failed;
        c.attempts = 9;
    }
    replay.traces[0].event_type = "changed".into();
    s.record_batch(&replay).await.unwrap();
    assert_eq!(s.event_deliveries(p, "ch", 2).await.unwrap(), got);
    let (total, rows2) = s.list_traces(p, &tq("ch", 0, 1000)).await.unwrap();
    assert_eq!((total, rows2), (2, rows));

    // Offsets beyond i64 are rejected and nothing of the batch is written.
    let bad = RecordBatch {
        traces: vec![trace(p, "ch", 5, "e5", "src", "t", 105, "", "")],
        created: vec![created(u64::MAX, "t1", DeliveryStatus::Pending, None, FAR)],
        updates: vec![],
        dead_letters: vec![],
    };
    assert!(s.record_batch(&bad).await.is_err());
    assert_eq!(s.list_traces(p, &tq("ch", 0, 1000)).await.unwrap().0, 2);

    // postpone: only unfinished deliveries move.
    let ids: Vec<i64> = got.iter().map(|d| d.id).chain([i64::MAX]).collect();
    assert_eq!(s.postpone(&ids, FAR - 7).await.unwrap(), 2);
    assert_eq!(s.postpone(&[], FAR - 7).await.unwrap(), 0);
    let after = s.event_deliveries(p, "ch", 2).await.unwrap();
    assert_eq!(
        after[0].next_at, got[0].next_at,
        "a succeeded delivery keeps its time"
    );
    assert_eq!((after[1].next_at, after[2].next_at), (FAR - 7, FAR - 7));
    s.drop_pending_for_subscription(p, "s").await.unwrap();
}

async fn purge(s: &dyn DeliveryStore) {
    let p = "d-purge";
    let dels = vec![
        nd(p, "ch", 1, -300, "s", "t", FAR),
        nd(p, "ch", 2, -200, "s", "t", FAR),
        nd(p, "ch", 3, -100, "s", "t", FAR),
    ];
    let ids = ids_of(
        s.record_routed(
            &[
                trace(p, "ch", 1, "e1", "src", "t", -300, "s", "n"),
                trace(p, "ch", 2, "e2", "src", "t", -200, "s", "n"),
                trace(p, "ch", 3, "e3", "src", "t", -100, "s", "n"),
            ],
            &dels,
        )
        .await
        .unwrap(),
    );
    s.record_attempt(
        ids[1],
        DeliveryStatus::Succeeded,
        1,
        0,
        &attempt(1, true, 1, "200"),
    )
    .await
    .unwrap();
    // Everything of the throughput section (received_at <= -1e9), in several chunks.
    assert_eq!(s.purge_before(-999_999_999).await.unwrap(), 40_000);
    // Pending and finished rows alike; the cutoff itself is kept.
    assert_eq!(s.purge_before(-200).await.unwrap(), 2);
    assert_eq!(s.purge_before(-200).await.unwrap(), 0);
    let (total, rows) = s.list_traces(p, &tq("ch", -1000, 0)).await.unwrap();
    assert_eq!((total, keys(&rows)), (2, vec![(3, "s"), (2, "s")]));
    assert!(s.event_deliveries(p, "ch", 1).await.unwrap().is_empty());
    assert_eq!(s.event_deliveries(p, "ch", 2).await.unwrap().len(), 1);
    assert_eq!(s.purge_before(0).await.unwrap(), 4);
    assert!(!s
        .record_attempt(
            ids[2],
            DeliveryStatus::Failed,
            1,
            0,
            &attempt(1, false, 1, "")
        )
        .await
        .unwrap());
    // Nothing of the other sections (received_at >= 0) was touched.
    assert_eq!(
        s.list_traces("d-list", &tq("ch1", 0, 10_000))
            .await
            .unwrap()
            .0,
        5
    );
}
