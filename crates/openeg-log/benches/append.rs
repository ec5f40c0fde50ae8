//! Append throughput of the embedded log: 64 concurrent appenders, 500-byte records,
//! batches of 1 and 10, fsync on (and off, for comparison).
//!
//! `cargo bench -p openeg-log --bench append`; set `OPENEG_BENCH_DIR` to measure another
//! disk (default: the system temp dir) and `OPENEG_BENCH_SECS` for the run length.

use bytes::Bytes;
use openeg_log::{EventLog, LogConfig, SegmentLog};
use std::sync::Arc;
use std::time::{Duration, Instant};

const APPENDERS: usize = 64;
const RECORD_BYTES: usize = 500;

async fn run(batch: usize, fsync: bool, secs: f64) -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::var_os("OPENEG_BENCH_DIR")
        .map(Into::into)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!(
        "openeg-log-bench-{}-{batch}-{fsync}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = LogConfig::default();
    cfg.fsync = fsync;
    let log = Arc::new(SegmentLog::open(&dir, cfg).await?);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..APPENDERS {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let record = Bytes::from(vec![b'a' + (t % 26) as u8; RECORD_BYTES]);
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let records = vec![record.clone(); batch];
                let t0 = Instant::now();
                log.append("bench", 0, records).await?;
                latencies.push(t0.elapsed());
            }
            Ok::<_, openeg_log::LogError>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    let s = log.stats();
    println!(
        "batch={batch:>2} fsync={fsync:<5} appends/s={:>8.0} events/s={:>8.0} MB/s={:>6.1} \
         fsyncs/s={:>6.0} appends/fsync={:>6.1} p50={:?} p99={:?}",
        s.appends as f64 / elapsed,
        s.records as f64 / elapsed,
        s.bytes as f64 / elapsed / 1e6,
        s.fsyncs as f64 / elapsed,
        s.appends as f64 / s.writes.max(1) as f64,
        pct(0.5),
        pct(0.99),
    );
    drop(log);
    // Recovery cost: reopening scans and checksums the tail segment.
    let t0 = Instant::now();
    let log = SegmentLog::open(&dir, LogConfig::default()).await?;
    let reopen = t0.elapsed();
    let end = log.end_offset("bench", 0).await?;
    println!("         reopen with {end} records on disk: {reopen:?}");
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secs: f64 = std::env::var("OPENEG_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!("{APPENDERS} appenders, {RECORD_BYTES}-byte records, {secs}s per run");
    for (batch, fsync) in [(1, true), (10, true), (1, false), (10, false)] {
        rt.block_on(run(batch, fsync, secs))?;
    }
    Ok(())
}
