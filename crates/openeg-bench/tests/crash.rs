//! The duplicate bound under repeated crashes (docs/limits.md, "Delivery guarantees"): 20
//! SIGKILLs of a real `openeg serve` under paced publishing, on SQLite and (with
//! `OPENEG_TEST_DATABASE_URL`) on PostgreSQL. Nothing acknowledged may be lost, and the
//! events the webhook receives twice stay within 2 % of those acknowledged.
//!
//! Runs the `openeg-bench crash` harness against the `openeg` binary beside it in the target
//! directory (`cargo build -p openeg` first; `scripts/test` does) or `OPENEG_BIN`. The
//! webhook is the harness's own Rust receiver: a receiver sharing an interpreter lock with
//! the publishers (the Python e2e test) answers slowly enough that its in-flight requests
//! alone exceed the bound's share at a debug build's rates.
//!
//! With `OPENEG_REQUIRE_PG=1` a missing PostgreSQL URL fails instead of skipping.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// The two runs share two cores: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const KILLS: &str = "20";
const RATE: &str = "400";
const MAX_DUPLICATES_PCT: f64 = 2.0;

fn openeg_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("OPENEG_BIN") {
        return PathBuf::from(p);
    }
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_openeg-bench"));
    let bin = bench.with_file_name(format!("openeg{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} does not exist: run `cargo build -p openeg` first (or set OPENEG_BIN)",
        bin.display()
    );
    bin
}

fn crash_run(database_url: Option<&str>) -> Value {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_openeg-bench"));
    cmd.arg("crash").arg("--openeg").arg(openeg_bin()).args([
        "--kills",
        KILLS,
        "--rate",
        RATE,
        "--deadline",
        "120",
        "--json",
    ]);
    if let Some(url) = database_url {
        cmd.args(["--database-url", url]);
    }
    let out = cmd.output().expect("running openeg-bench crash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openeg-bench crash failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn assert_bound(r: &Value) {
    eprintln!("{r}");
    let acked = r["acknowledged"].as_u64().unwrap();
    assert!(acked >= 5_000, "too few events acknowledged to judge: {r}");
    assert_eq!(r["lost"], 0, "acknowledged events lost: {r}");
    let pct = r["duplicates_pct"].as_f64().unwrap();
    assert!(
        pct <= MAX_DUPLICATES_PCT,
        "{pct:.2} % of acknowledged events delivered twice (bound {MAX_DUPLICATES_PCT} %): {r}"
    );
    // The final restart (nothing published) must not re-send what was delivered.
    assert_eq!(
        r["final_restart"]["resent"], 0,
        "re-sent after a quiet restart: {r}"
    );
}

#[test]
fn sqlite_twenty_kills_lose_nothing_and_duplicate_at_most_two_percent() {
    assert_bound(&crash_run(None));
}

#[test]
fn postgres_twenty_kills_lose_nothing_and_duplicate_at_most_two_percent() {
    let url = match std::env::var("OPENEG_TEST_DATABASE_URL") {
        Ok(u) if !u.trim().is_empty() => u,
        _ => {
            assert!(
                std::env::var("OPENEG_REQUIRE_PG").as_deref() != Ok("1"),
                "OPENEG_REQUIRE_PG=1 but OPENEG_TEST_DATABASE_URL is not set"
            );
            eprintln!("skipped: OPENEG_TEST_DATABASE_URL not set");
            return;
        }
    };
    assert_bound(&crash_run(Some(&url)));
}
