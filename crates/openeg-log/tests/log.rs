//! Behaviour of the embedded log through its public API, including crash recovery.

use bytes::Bytes;
use openeg_log::{EventLog, FaultInjection, LogConfig, LogError, LogRecord, SegmentLog};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const T: &str = "chan-1";

/// A fresh directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "openeg-log-test-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cfg() -> LogConfig {
    LogConfig::default()
}

fn small_segments(bytes: u64) -> LogConfig {
    let mut c = LogConfig::default();
    c.segment_bytes = bytes;
    c
}

fn rec(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn payload(i: u64) -> String {
    format!("record-{i:06}-{}", "p".repeat((i % 17) as usize))
}

async fn read_all(log: &SegmentLog, topic: &str) -> Vec<LogRecord> {
    let start = log.start_offset(topic, 0).await.unwrap();
    let mut out = Vec::new();
    let mut next = start;
    loop {
        let batch = log.read(topic, 0, next, 37, 1000).await.unwrap();
        let Some(last) = batch.last() else { break };
        next = last.offset + 1;
        out.extend(batch);
    }
    out
}

fn segment_files(root: &Path, topic: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("topics").join(topic))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

/// Append `n` single-record batches with `payload(i)` for their offsets.
async fn fill(log: &SegmentLog, topic: &str, n: u64) {
    for _ in 0..n {
        let end = log.end_offset(topic, 0).await.unwrap();
        let r = log
            .append(topic, 0, vec![rec(&payload(end))])
            .await
            .unwrap();
        assert_eq!(r, end..end + 1);
    }
}

fn assert_payloads(records: &[LogRecord], from: u64, to: u64) {
    let offsets: Vec<u64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (from..to).collect::<Vec<_>>());
    for r in records {
        assert_eq!(r.payload, rec(&payload(r.offset)), "offset {}", r.offset);
    }
}

#[tokio::test]
async fn append_read_roundtrip_and_offsets_across_restarts() {
    let dir = TempDir::new("roundtrip");
    {
        let log = SegmentLog::open(dir.path(), cfg()).await.unwrap();
        assert_eq!(log.end_offset(T, 0).await.unwrap(), 0);
        assert_eq!(log.read(T, 0, 0, 10, 1000).await.unwrap(), vec![]);
        let a = log
            .append(T, 0, vec![rec(&payload(0)), rec(&payload(1))])
            .await
            .unwrap();
        assert_eq!(a, 0..2);
        let b = log.append(T, 0, vec![rec(&payload(2))]).await.unwrap();
        assert_eq!(b, 2..3);
        assert_eq!(log.append(T, 0, vec![]).await.unwrap(), 3..3);
        assert_payloads(&read_all(&log, T).await, 0, 3);
        // Reading from the middle of a batch starts at that record.
        assert_payloads(&log.read(T, 0, 1, 10, 1000).await.unwrap(), 1, 3);
        assert_eq!(log.read(T, 0, 3, 10, 1000).await.unwrap(), vec![]);
        assert!(matches!(
            log.read(T, 0, 4, 10, 1000).await,
            Err(LogError::OffsetOutOfRange {
                requested: 4,
                start: 0,
                end: 3,
                ..
            })
        ));
        assert!(matches!(
            log.append(T, 1, vec![rec("x")]).await,
            Err(LogError::UnknownPartition { partition: 1, .. })
        ));
        assert_eq!(log.stats().records, 3);
    }
    {
        let log = SegmentLog::open(dir.path(), cfg()).await.unwrap();
        assert_eq!(log.end_offset(T, 0).await.unwrap(), 3);
        fill(&log, T, 5).await;
        assert_payloads(&read_all(&log, T).await, 0, 8);
    }
    let log = SegmentLog::open(dir.path(), cfg()).await.unwrap();
    assert_payloads(&read_all(&log, T).await, 0, 8);
    // Other topics are independent.
    assert_eq!(log.append("other", 0, vec![rec("x")]).await.unwrap(), 0..1);
}

#[tokio::test]
async fn read_limits() {
    let dir = TempDir::new("limits");
    let log = SegmentLog::open(dir.path(), cfg()).await.unwrap();
    let big = Bytes::from(vec![7u8; 5000]);
    log.append(T, 0, vec![big.clone(), rec("a"), rec("b")])
        .await
        .unwrap();
    // A record larger than max_bytes is still returned alone, so readers make progress.
    let r = log.read(T, 0, 0, 10, 100).await.unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].payload, big);
    assert_eq!(log.read(T, 0, 0, 10, 5001).await.unwrap().len(), 2);
    assert_eq!(log.read(T, 0, 0, 2, 1 << 20).await.unwrap().len(), 2);
    assert_eq!(log.read(T, 0, 0, 0, 1 << 20).await.unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_shares_fsyncs_between_concurrent_appends() {
    let dir = TempDir::new("group");
    let log = Arc::new(SegmentLog::open(dir.path(), cfg()).await.unwrap());
    const TASKS: usize = 200;
    const ROUNDS: usize = 5;
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let log = log.clone();
        handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for r in 0..ROUNDS {
                let body = format!("t{t}-r{r}");
                let range = log
                    .append(T, 0, vec![rec(&body), rec(&format!("{body}-b"))])
                    .await
                    .unwrap();
                assert_eq!(range.end - range.start, 2);
                got.push((range.start, body));
            }
            got
        }));
    }
    let mut acked = Vec::new();
    for h in handles {
        acked.extend(h.await.unwrap());
    }
    let stats = log.stats();
    eprintln!("{stats:?}");
    let appends = (TASKS * ROUNDS) as u64;
    assert_eq!(stats.appends, appends);
    assert_eq!(stats.records, appends * 2);
    assert!(
        stats.fsyncs * 4 <= appends,
        "group commit did not coalesce: {stats:?}"
    );
    let all = read_all(&log, T).await;
    assert_eq!(all.len() as u64, appends * 2);
    let mut starts: Vec<u64> = acked.iter().map(|(s, _)| *s).collect();
    starts.sort_unstable();
    starts.dedup();
    assert_eq!(starts.len() as u64, appends, "offsets are unique");
    for (start, body) in acked {
        assert_eq!(all[start as usize].payload, rec(&body));
        assert_eq!(all[start as usize + 1].payload, rec(&format!("{body}-b")));
    }
}

#[tokio::test]
async fn segments_roll_and_reads_cross_boundaries() {
    let dir = TempDir::new("roll");
    {
        let log = SegmentLog::open(dir.path(), small_segments(300))
            .await
            .unwrap();
        fill(&log, T, 100).await;
        assert!(segment_files(dir.path(), T).len() > 10);
        assert_payloads(&read_all(&log, T).await, 0, 100);
        for from in [0, 1, 13, 50, 98, 99] {
            let r = log.read(T, 0, from, 1000, 1 << 20).await.unwrap();
            assert_payloads(&r, from, 100);
        }
        // A batch bigger than a segment gets a segment of its own.
        let big: Vec<Bytes> = (100..110).map(|i| rec(&payload(i))).collect();
        assert_eq!(log.append(T, 0, big).await.unwrap(), 100..110);
    }
    let files = segment_files(dir.path(), T);
    for (i, f) in files.iter().enumerate().take(files.len() - 1) {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(
            len <= 300 || i == files.len() - 2,
            "segment {f:?} has {len} bytes"
        );
    }
    let log = SegmentLog::open(dir.path(), small_segments(300))
        .await
        .unwrap();
    assert_payloads(&read_all(&log, T).await, 0, 110);
    assert_payloads(&log.read(T, 0, 57, 1000, 1 << 20).await.unwrap(), 57, 110);
    fill(&log, T, 10).await;
    assert_payloads(&read_all(&log, T).await, 0, 120);
}

/// Flip one byte inside record `victim` of a log of `n` single-record batches and reopen.
async fn flip_and_reopen(name: &str, n: u64, victim: u64) -> (TempDir, SegmentLog) {
    let dir = TempDir::new(name);
    let mut positions = Vec::new();
    {
        let log = SegmentLog::open(dir.path(), cfg()).await.unwrap();
        for i in 0..n {
            positions.push(log.stats().bytes);
            log.append(T, 0, vec![rec(&payload(i))]).await.unwrap();
        }
    }
    let files = segment_files(dir.path(), T);
    assert_eq!(files.len(), 1);
    let mut data = std::fs::read(&files[0]).unwrap();
    // Middle of the payload: frame header is 20 bytes, record length 4.
    let at = positions[victim as usize] as usize + 24 + payload(victim).len() / 2;
    data[at] ^= 0x20;
    std::fs::write(&files[0], &data).unwrap();
    let log = SegmentLog::open(dir.path(), cfg()).await.unwrap();
    let len = std::fs::metadata(&files[0]).unwrap().len();
    assert_eq!(
        len, positions[victim as usize],
        "truncated at the bad frame"
    );
    (dir, log)
}

#[tokio::test]
async fn checksum_mismatch_in_last_record_truncates_only_it() {
    let (_dir, log) = flip_and_reopen("crc-last", 10, 9).await;
    assert_eq!(log.end_offset(T, 0).await.unwrap(), 9);
    assert_payloads(&read_all(&log, T).await, 0, 9);
    assert_eq!(
        log.append(T, 0, vec![rec(&payload(9))]).await.unwrap(),
        9..10
    );
    assert_payloads(&read_all(&log, T).await, 0, 10);
}

#[tokio::test]
async fn checksum_mismatch_in_tail_segment_cuts_from_there() {
    let (_dir, log) = flip_and_reopen("crc-mid", 10, 4).await;
    assert_eq!(log.end_offset(T, 0).await.unwrap(), 4);
    assert_payloads(&read_all(&log, T).await, 0, 4);
    fill(&log, T, 3).await;
    assert_payloads(&read_all(&log, T).await, 0, 7);
}

#[tokio::test]
async fn torn_tail_is_truncated_and_appends_continue() {
    // The last frame is one 3-record batch. Cut it inside the length field, inside the
    // header, inside the first and the last payload, and one byte short of complete.
    let batch: Vec<Bytes> = (12..15u64).map(|i| rec(&payload(i))).collect();
    let frame_len: u64 = 20 + batch.iter().map(|b| 4 + b.len() as u64).sum::<u64>();
    for cut_from_end in [frame_len - 2, frame_len - 11, frame_len - 30, 20, 1] {
        let dir = TempDir::new("torn");
        {
            let log = SegmentLog::open(dir.path(), small_segments(200))
                .await
                .unwrap();
            fill(&log, T, 12).await; // several segments
            assert_eq!(log.append(T, 0, batch.clone()).await.unwrap(), 12..15);
        }
        let files = segment_files(dir.path(), T);
        assert!(files.len() > 2);
        let last = files.last().unwrap();
        let len = std::fs::metadata(last).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(last).unwrap();
        f.set_len(len - cut_from_end).unwrap();
        drop(f);

        let log = SegmentLog::open(dir.path(), small_segments(200))
            .await
            .unwrap();
        // The torn batch is gone as a whole; every complete record is there.
        assert_eq!(std::fs::metadata(last).unwrap().len(), len - frame_len);
        assert_eq!(
            log.end_offset(T, 0).await.unwrap(),
            12,
            "cut {cut_from_end}"
        );
        assert_payloads(&read_all(&log, T).await, 0, 12);
        fill(&log, T, 4).await;
        drop(log);
        let log = SegmentLog::open(dir.path(), small_segments(200))
            .await
            .unwrap();
        assert_payloads(&read_all(&log, T).await, 0, 16);
    }
}

#[tokio::test]
async fn corruption_in_a_sealed_segment_is_reported_not_truncated() {
    let dir = TempDir::new("sealed");
    {
        let log = SegmentLog::open(dir.path(), small_segments(200))
            .await
            .unwrap();
        fill(&log, T, 20).await;
    }
    let files = segment_files(dir.path(), T);
    assert!(files.len() >= 3);
    let victim = &files[1];
    let mut data = std::fs::read(victim).unwrap();
    let len = data.len();
    data[len - 3] ^= 0xff;
    std::fs::write(victim, &data).unwrap();
    let log = SegmentLog::open(dir.path(), small_segments(200))
        .await
        .unwrap();
    assert_eq!(log.end_offset(T, 0).await.unwrap(), 20);
    let from = files[1]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    let err = log.read(T, 0, from, 100, 1 << 20).await.unwrap_err();
    assert!(matches!(err, LogError::Corrupt { .. }), "{err}");
    assert_eq!(std::fs::metadata(victim).unwrap().len(), len as u64);
    // Data before the damage is still readable.
    assert_payloads(
        &log.read(T, 0, 0, from as usize, 1 << 20).await.unwrap(),
        0,
        from,
    );
}

#[tokio::test]
async fn retention_by_size_deletes_oldest_segments_only() {
    let dir = TempDir::new("ret-size");
    let mut c = small_segments(200);
    c.retention_max_bytes = Some(700);
    c.retention_max_age = None;
    let log = SegmentLog::open(dir.path(), c).await.unwrap();
    fill(&log, T, 40).await;
    let before = segment_files(dir.path(), T);
    let report = log.enforce_retention(SystemTime::now()).await.unwrap();
    assert!(report.segments_deleted > 0);
    let after = segment_files(dir.path(), T);
    assert_eq!(
        after.len() as u64,
        before.len() as u64 - report.segments_deleted
    );
    assert_eq!(
        after[..],
        before[before.len() - after.len()..],
        "oldest went first"
    );
    let total: u64 = after
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(total <= 700, "{total} bytes left");
    let start = log.start_offset(T, 0).await.unwrap();
    assert!(start > 0);
    assert!(matches!(
        log.read(T, 0, start - 1, 10, 1000).await,
        Err(LogError::OffsetOutOfRange { start: s, end: 40, .. }) if s == start
    ));
    assert_payloads(&read_all(&log, T).await, start, 40);
    // Idempotent, and the start offset survives a restart.
    assert_eq!(
        log.enforce_retention(SystemTime::now())
            .await
            .unwrap()
            .segments_deleted,
        0
    );
    drop(log);
    let log = SegmentLog::open(dir.path(), small_segments(200))
        .await
        .unwrap();
    assert_eq!(log.start_offset(T, 0).await.unwrap(), start);
    assert_payloads(&read_all(&log, T).await, start, 40);
}

#[tokio::test]
async fn retention_by_age_deletes_expired_segments_oldest_first() {
    let dir = TempDir::new("ret-age");
    let mut c = small_segments(200);
    c.retention_max_age = Some(Duration::from_secs(3600));
    let log = SegmentLog::open(dir.path(), c).await.unwrap();
    fill(&log, T, 30).await;
    let before = segment_files(dir.path(), T);
    assert!(before.len() > 2);
    let now = SystemTime::now();
    assert_eq!(
        log.enforce_retention(now).await.unwrap().segments_deleted,
        0
    );

    // Make the oldest segments old, as if written two hours ago.
    let old = now - Duration::from_secs(7200);
    for f in &before[..2] {
        let file = std::fs::OpenOptions::new().write(true).open(f).unwrap();
        file.set_modified(old).unwrap();
    }
    let report = log.enforce_retention(now).await.unwrap();
    assert_eq!(report.segments_deleted, 2);
    assert_eq!(segment_files(dir.path(), T), before[2..]);
    let start = log.start_offset(T, 0).await.unwrap();
    assert!(start > 0);
    assert_payloads(&read_all(&log, T).await, start, 30);

    // Once everything has expired, even the active segment goes: it is sealed first and a
    // fresh empty one takes over, so a quiet topic does not keep old events forever.
    let report = log
        .enforce_retention(now + Duration::from_secs(7200))
        .await
        .unwrap();
    assert_eq!(report.segments_deleted as usize, before.len() - 2);
    let after = segment_files(dir.path(), T);
    assert_eq!(after.len(), 1);
    assert!(after[0].ends_with("00000000000000000030.log"));
    assert_eq!(log.start_offset(T, 0).await.unwrap(), 30);
    assert_eq!(log.end_offset(T, 0).await.unwrap(), 30);
    fill(&log, T, 2).await;
    assert_payloads(&read_all(&log, T).await, 30, 32);
    drop(log);
    let log = SegmentLog::open(dir.path(), small_segments(200))
        .await
        .unwrap();
    assert_payloads(&read_all(&log, T).await, 30, 32);
}

#[tokio::test]
async fn consumer_offsets_survive_reopen() {
    let dir = TempDir::new("offsets");
    {
        let log = SegmentLog::open(dir.path(), cfg()).await.unwrap();
        assert_eq!(log.committed("router", T, 0).await.unwrap(), None);
        log.commit("router", T, 0, 5).await.unwrap();
        log.commit("router", T, 0, 7).await.unwrap();
        log.commit("router", "other/chan", 0, 3).await.unwrap();
        log.commit("replay:g", T, 0, 1).await.unwrap();
        assert_eq!(log.committed("router", T, 0).await.unwrap(), Some(7));
    }
    let log = Arc::new(SegmentLog::open(dir.path(), cfg()).await.unwrap());
    assert_eq!(log.committed("router", T, 0).await.unwrap(), Some(7));
    assert_eq!(
        log.committed("router", "other/chan", 0).await.unwrap(),
        Some(3)
    );
    assert_eq!(log.committed("replay:g", T, 0).await.unwrap(), Some(1));
    assert_eq!(log.committed("nobody", T, 0).await.unwrap(), None);
    // Concurrent commits to one group all land.
    let mut hs = Vec::new();
    for i in 0..50u64 {
        let log = log.clone();
        hs.push(tokio::spawn(async move {
            log.commit("router", &format!("c{i}"), 0, i).await.unwrap()
        }));
    }
    for h in hs {
        h.await.unwrap();
    }
    drop(log);
    let log = SegmentLog::open(dir.path(), cfg()).await.unwrap();
    for i in 0..50u64 {
        assert_eq!(
            log.committed("router", &format!("c{i}"), 0).await.unwrap(),
            Some(i)
        );
    }
}

#[tokio::test]
async fn delete_topic_removes_data_and_offsets() {
    let dir = TempDir::new("delete");
    let log = SegmentLog::open(dir.path(), cfg()).await.unwrap();
    fill(&log, T, 5).await;
    fill(&log, "keep", 2).await;
    log.commit("router", T, 0, 3).await.unwrap();
    log.delete_topic(T).await.unwrap();
    log.delete_topic(T).await.unwrap();
    assert_eq!(log.end_offset(T, 0).await.unwrap(), 0);
    assert_eq!(log.committed("router", T, 0).await.unwrap(), None);
    assert!(!dir.path().join("topics").join(T).exists());
    assert_eq!(log.append(T, 0, vec![rec("new")]).await.unwrap(), 0..1);
    drop(log);
    let log = SegmentLog::open(dir.path(), cfg()).await.unwrap();
    assert_eq!(log.end_offset(T, 0).await.unwrap(), 1);
    assert_eq!(log.end_offset("keep", 0).await.unwrap(), 2);
}

#[tokio::test]
async fn subscribe_wakes_a_tailing_reader() {
    let dir = TempDir::new("subscribe");
    let log = Arc::new(SegmentLog::open(dir.path(), cfg()).await.unwrap());
    let mut rx = log.subscribe(T, 0).await.unwrap();
    assert_eq!(*rx.borrow_and_update(), 0);
    let writer = log.clone();
    tokio::spawn(async move { writer.append(T, 0, vec![rec("a"), rec("b")]).await });
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(*rx.borrow_and_update(), 2);
    assert_eq!(log.read(T, 0, 0, 10, 100).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_log() {
    let dir = TempDir::new("lock");
    let _log = SegmentLog::open(dir.path(), cfg()).await.unwrap();
    // flock is per open file description, so a second open in-process conflicts too.
    assert!(matches!(
        SegmentLog::open(dir.path(), cfg()).await,
        Err(LogError::Locked(_))
    ));
}

#[tokio::test]
async fn names_are_encoded_safely() {
    let dir = TempDir::new("names");
    {
        let log = SegmentLog::open(dir.path(), cfg()).await.unwrap();
        for name in ["../escape", "a/b", ".hidden", "ünïcode"] {
            assert_eq!(log.append(name, 0, vec![rec(name)]).await.unwrap(), 0..1);
        }
        assert!(matches!(
            log.append("", 0, vec![rec("x")]).await,
            Err(LogError::InvalidName(_))
        ));
    }
    assert!(!dir.path().join("escape").exists());
    let log = SegmentLog::open(dir.path(), cfg()).await.unwrap();
    for name in ["../escape", "a/b", ".hidden", "ünïcode"] {
        assert_eq!(
            log.read(name, 0, 0, 10, 100).await.unwrap()[0].payload,
            rec(name)
        );
    }
}

const CRASH_ENV: &str = "OPENEG_LOG_CRASH_DIR";

/// Child side of `acknowledged_appends_survive_sigkill`: append forever from several tasks
/// and print every acknowledged record. Does nothing in a normal test run.
#[test]
fn crash_child_process() {
    let Ok(dir) = std::env::var(CRASH_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let log = Arc::new(
            SegmentLog::open(&dir, small_segments(16 * 1024))
                .await
                .unwrap(),
        );
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                for seq in 0u64.. {
                    let n = 1 + (seq % 3) as usize;
                    let bodies: Vec<String> = (0..n)
                        .map(|k| format!("w{t}-s{seq}-k{k}-{}", "x".repeat((seq % 50) as usize)))
                        .collect();
                    let recs = bodies.iter().map(|b| rec(b)).collect();
                    let range = log.append("crash", 0, recs).await.unwrap();
                    for (off, body) in range.zip(&bodies) {
                        println!("ACK {off} {body} END");
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = TempDir::new("crash");
    let exe = std::env::current_exe().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut acked: Vec<(u64, String)> = Vec::new();
    for round in 0..3u64 {
        let mut child = Command::new(&exe)
            .args([
                "crash_child_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // A line cut by the kill lacks its END marker and is ignored.
                let mut parts = line.split(' ');
                if let (Some("ACK"), Some(off), Some(body), Some("END"), None) = (
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                ) {
                    got.push((off.parse::<u64>().unwrap(), body.to_owned()));
                    if got.len() == 1 {
                        let _ = first_tx.send(());
                    }
                }
            }
            got
        });
        // Kill at a random moment once the child is appending (startup time varies a lot
        // on a loaded machine, so do not count it).
        first_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("child never acknowledged an append");
        let jitter = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64
            % 400;
        std::thread::sleep(Duration::from_millis(100 + jitter));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let got = reader.join().unwrap();
        acked.extend(got);

        rt.block_on(async {
            let log = SegmentLog::open(dir.path(), small_segments(16 * 1024))
                .await
                .unwrap();
            let all = read_all(&log, "crash").await;
            let end = log.end_offset("crash", 0).await.unwrap();
            assert_eq!(all.len() as u64, end, "offsets are contiguous from 0");
            eprintln!(
                "round {round}: {} acknowledged so far, {end} records recovered, {} segments",
                acked.len(),
                segment_files(dir.path(), "crash").len()
            );
            for (off, body) in &acked {
                let r = all
                    .get(*off as usize)
                    .unwrap_or_else(|| panic!("acknowledged offset {off} lost (end {end})"));
                assert_eq!(r.offset, *off);
                assert_eq!(r.payload, rec(body), "payload of offset {off}");
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tailing_reader_sees_every_record_in_order_while_appends_run() {
    let dir = TempDir::new("tail");
    let log = Arc::new(
        SegmentLog::open(dir.path(), small_segments(4096))
            .await
            .unwrap(),
    );
    const WRITERS: u64 = 16;
    const PER_WRITER: u64 = 40;
    let total = WRITERS * PER_WRITER * 2;
    let mut rx = log.subscribe(T, 0).await.unwrap();
    let reader = {
        let log = log.clone();
        tokio::spawn(async move {
            let mut next = 0u64;
            let mut seen = Vec::new();
            while next < total {
                let batch = log.read(T, 0, next, 64, 4096).await.unwrap();
                if batch.is_empty() {
                    tokio::time::timeout(Duration::from_secs(10), rx.changed())
                        .await
                        .unwrap()
                        .unwrap();
                    continue;
                }
                for r in batch {
                    assert_eq!(r.offset, next);
                    next += 1;
                    seen.push(r.payload);
                }
            }
            seen
        })
    };
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let log = log.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..PER_WRITER {
                let a = format!("w{w}-{i}-a");
                let b = format!("w{w}-{i}-b");
                let r = log.append(T, 0, vec![rec(&a), rec(&b)]).await.unwrap();
                assert_eq!(r.end - r.start, 2);
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let seen = reader.await.unwrap();
    assert_eq!(seen.len() as u64, total);
    // Batches are contiguous and each writer's batches appear in its own order.
    let mut last_per_writer = vec![None::<u64>; WRITERS as usize];
    for pair in seen.chunks(2) {
        let a = std::str::from_utf8(&pair[0]).unwrap();
        let (w, rest) = a[1..].split_once('-').unwrap();
        let (i, suffix) = rest.split_once('-').unwrap();
        assert_eq!(suffix, "a");
        assert_eq!(pair[1], rec(&format!("w{w}-{i}-b")));
        let (w, i): (usize, u64) = (w.parse().unwrap(), i.parse().unwrap());
        assert!(last_per_writer[w].is_none_or(|prev| prev + 1 == i));
        last_per_writer[w] = Some(i);
    }
}

#[tokio::test]
async fn a_valid_frame_with_the_wrong_offset_is_an_error_not_a_torn_tail() {
    let dir = TempDir::new("discontinuity");
    {
        let log = SegmentLog::open(dir.path(), cfg()).await.unwrap();
        fill(&log, T, 3).await;
    }
    let files = segment_files(dir.path(), T);
    let moved = files[0].with_file_name("00000000000000000005.log");
    std::fs::rename(&files[0], &moved).unwrap();
    let len = std::fs::metadata(&moved).unwrap().len();
    assert!(matches!(
        SegmentLog::open(dir.path(), cfg()).await,
        Err(LogError::Corrupt { .. })
    ));
    assert_eq!(
        std::fs::metadata(&moved).unwrap().len(),
        len,
        "nothing was cut"
    );
}

#[tokio::test]
async fn retention_holds_what_the_hold_group_has_not_passed() {
    let dir = TempDir::new("ret-hold");
    let mut c = small_segments(200);
    c.retention_max_age = Some(Duration::from_secs(3600));
    c.retention_hold_group = Some("router".into());
    let log = SegmentLog::open(dir.path(), c).await.unwrap();
    fill(&log, T, 30).await;
    let before = segment_files(dir.path(), T);
    assert!(before.len() > 3, "{before:?}");
    let later = SystemTime::now() + Duration::from_secs(7200);

    // Nothing committed yet: everything has expired, nothing may go.
    let r = log.enforce_retention(later).await.unwrap();
    assert_eq!(r.segments_deleted, 0);
    assert!(r.segments_held > 0);
    // (The expired active segment was sealed and an empty one took over: nothing removed.)
    let after = segment_files(dir.path(), T);
    assert_eq!(after[..before.len()], before[..]);
    assert_eq!(log.start_offset(T, 0).await.unwrap(), 0);
    assert_payloads(&read_all(&log, T).await, 0, 30);

    // The group passed the first two segments (committed = the third one's base): exactly
    // those two go, the segment holding the committed offset stays.
    let third = segment_base(&before[2]);
    log.commit("router", T, 0, third).await.unwrap();
    let r = log.enforce_retention(later).await.unwrap();
    assert_eq!(r.segments_deleted, 2);
    assert!(r.segments_held > 0);
    assert_eq!(
        segment_files(dir.path(), T)[..before.len() - 2],
        before[2..]
    );
    assert_eq!(log.start_offset(T, 0).await.unwrap(), third);
    assert_payloads(&read_all(&log, T).await, third, 30);

    // Once the group has passed everything, expired data goes as without a hold.
    log.commit("router", T, 0, 30).await.unwrap();
    let r = log.enforce_retention(later).await.unwrap();
    assert_eq!(r.segments_held, 0);
    assert_eq!(log.start_offset(T, 0).await.unwrap(), 30);
}

fn segment_base(p: &std::path::Path) -> u64 {
    p.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

fn with_faults(faults: &FaultInjection, segment_bytes: u64) -> LogConfig {
    let mut c = small_segments(segment_bytes);
    c.fault_injection = Some(faults.clone());
    c
}

/// Waits until the log lists no failed topic (the writer recovers on its own).
async fn wait_recovered(log: &SegmentLog) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !log.failures().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the topic did not recover: {:?}",
            log.failures()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_failed_fsync_fails_the_append_and_the_topic_recovers_in_place() {
    let dir = TempDir::new("fsync-fail");
    let faults = FaultInjection::new();
    let log = SegmentLog::open(dir.path(), with_faults(&faults, 1 << 20))
        .await
        .unwrap();
    fill(&log, T, 3).await;
    assert!(log.failures().is_empty());

    faults.fail_next_syncs(1);
    let lost: Vec<Bytes> = (0..4)
        .map(|i| rec(&format!("never-acknowledged-{i}")))
        .collect();
    assert!(log.append(T, 0, lost).await.is_err());
    let failed = log.failures();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].topic, T);
    assert!(failed[0].reason.contains("fault-injection"), "{failed:?}");
    // The failed batch is not visible, not even in part.
    assert_eq!(log.end_offset(T, 0).await.unwrap(), 3);
    assert_payloads(&read_all(&log, T).await, 0, 3);

    wait_recovered(&log).await;
    // Appends resume at the offsets the failed batch would have had.
    fill(&log, T, 2).await;
    assert_payloads(&read_all(&log, T).await, 0, 5);
    let seg = segment_files(dir.path(), T).pop().unwrap();
    let bytes = std::fs::read(&seg).unwrap();
    assert!(
        !bytes.windows(18).any(|w| w == b"never-acknowledged"),
        "the unacknowledged batch was not cut from the segment"
    );
    drop(log);

    // What is on disk is exactly the acknowledged records, and opens cleanly.
    let log = SegmentLog::open(dir.path(), small_segments(1 << 20))
        .await
        .unwrap();
    assert_payloads(&read_all(&log, T).await, 0, 5);
    assert!(log.failures().is_empty());
}

#[tokio::test]
async fn a_failed_topic_refuses_appends_until_syncs_work_again() {
    let dir = TempDir::new("fsync-fail-file");
    let switch = dir.path().join("log-sync");
    let faults = FaultInjection::syncs_fail_while_exists(&switch);
    let log = Arc::new(
        SegmentLog::open(dir.path().join("log"), with_faults(&faults, 300))
            .await
            .unwrap(),
    );
    fill(&log, T, 4).await; // more than one segment
    fill(&log, "other", 1).await;

    std::fs::write(&switch, b"").unwrap();
    // Concurrent appends of one group all fail together.
    let appends: Vec<_> = (0..5)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.append(T, 0, vec![rec(&format!("lost-{i}"))]).await })
        })
        .collect();
    for a in appends {
        assert!(a.await.unwrap().is_err());
    }
    // Recovery keeps failing while syncs fail; appends fail fast meanwhile.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let failed = log.failures();
    assert_eq!(
        failed.iter().map(|f| f.topic.as_str()).collect::<Vec<_>>(),
        [T]
    );
    match log.append(T, 0, vec![rec("refused")]).await {
        Err(LogError::Failed(_)) | Err(LogError::Io { .. }) => {}
        other => panic!("append on a failed topic: {other:?}"),
    }
    // Other topics are not failed by one topic's failure (until they sync themselves).
    assert!(log.failures().iter().all(|f| f.topic == T));
    assert_eq!(log.end_offset(T, 0).await.unwrap(), 4);

    std::fs::remove_file(&switch).unwrap();
    wait_recovered(&log).await;
    fill(&log, T, 6).await; // rolls to new segments after the recovery
    fill(&log, "other", 1).await;
    assert_payloads(&read_all(&log, T).await, 0, 10);
    drop(log);
    let log = SegmentLog::open(dir.path().join("log"), small_segments(300))
        .await
        .unwrap();
    assert_payloads(&read_all(&log, T).await, 0, 10);
    assert_payloads(&read_all(&log, "other").await, 0, 2);
}
