//! Our compiled matcher against the `quamina` crate (0.7.0) on the CityLots data, same events,
//! same run. `cargo bench -p openeg-rules --bench vs_quamina`.
//!
//! Uses the first `BENCH_LINES` lines (default 50,000) of the CityLots data set
//! (`citylots-rules.json`, `citylots-synth.jlines.gz` in `OPENEG_CITYLOTS_DIR`), wrapped as
//! CloudEvents; one warm-up pass then `BENCH_RUNS` (default 5) timed passes of each matcher, alternating,
//! medians reported.
//! Rules are translated to Quamina's pattern syntax (StringIn → exact strings, StartsWith →
//! prefix, EndsWith → suffix, NotIn → anything-but, IsNotNull → exists, numbers → numeric).

use flate2::read::MultiGzDecoder;
use openeg_rules::{MatcherBuilder, Scratch};
use quamina::Quamina;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::time::Instant;

/// A file of the data set: in `OPENEG_CITYLOTS_DIR`, else where this project's machines keep it.
fn data_file(name: &str) -> String {
    let dir = std::env::var("OPENEG_CITYLOTS_DIR").unwrap_or_else(|_| "/work/shared/data".into());
    format!("{dir}/{name}")
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn load(limit: usize) -> (Vec<Vec<u8>>, Vec<Value>) {
    let file = std::fs::File::open(data_file("citylots-synth.jlines.gz"))
        .expect("the CityLots data set (set OPENEG_CITYLOTS_DIR)");
    let mut events = Vec::new();
    let mut props = Vec::new();
    for (i, line) in BufReader::new(MultiGzDecoder::new(file))
        .lines()
        .take(limit)
        .enumerate()
    {
        let line = line.expect("line");
        let v: Value = serde_json::from_str(&line).expect("json line");
        props.push(v["properties"].clone());
        events.push(
            format!(
                r#"{{"specversion":"1.0","id":"{}","source":"citylots","type":"Feature","data":{}}}"#,
                i + 1,
                line
            )
            .into_bytes(),
        );
    }
    (events, props)
}

/// Translates one EventGrid filter condition list into Quamina match expressions.
fn q_conds(list: &Value) -> Value {
    let mut out = Vec::new();
    for c in list.as_array().expect("condition list") {
        let vals = c.get("values").cloned().unwrap_or(Value::Null);
        match c["op"].as_str().unwrap_or("") {
            "StringIn" => out.extend(vals.as_array().cloned().unwrap_or_default()),
            "StringStartsWith" => out.extend(
                vals.as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| json!({"prefix": p})),
            ),
            "StringEndsWith" => out.extend(
                vals.as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| json!({"suffix": p})),
            ),
            "StringNotIn" => out.push(json!({"anything-but": vals})),
            "IsNotNull" => out.push(json!({"exists": true})),
            "NumberIn" => out.extend(
                vals.as_array()
                    .into_iter()
                    .flatten()
                    .map(|n| json!({"numeric": ["=", n]})),
            ),
            "NumberInRange" => out.extend(
                vals.as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| json!({"numeric": [">=", r[0], "<=", r[1]]})),
            ),
            other => panic!("no Quamina translation for {other}"),
        }
    }
    Value::Array(out)
}

fn q_pattern(filter: &Value) -> String {
    fn node(v: &Value) -> Value {
        match v {
            Value::Array(_) => q_conds(v),
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), node(v))).collect())
            }
            other => other.clone(),
        }
    }
    node(filter).to_string()
}

struct Row {
    name: String,
    rules: usize,
    ours_build_ms: f64,
    q_build_ms: Option<f64>,
    ours_eps: f64,
    q_eps: Option<f64>,
    ours_matches: u64,
    q_matches: Option<u64>,
    note: String,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Builds both matchers, then alternates their timed passes so machine noise (other jobs on
/// the 2 cores) hits both alike.
fn scenario(name: &str, filters: &[Value], events: &[&[u8]], runs: usize) -> Row {
    let t = Instant::now();
    let mut b = MatcherBuilder::new();
    for f in filters {
        b.add_rule(f, true).expect("valid rule");
    }
    let m = b.build();
    let ours_build_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut scratch = Scratch::default();
    let mut out = Vec::new();
    let mut ours_pass = || {
        let mut n = 0u64;
        for e in events {
            let _ = m.matches_into(e, &mut scratch, &mut out);
            n += out.len() as u64;
        }
        n
    };

    let t = Instant::now();
    let mut q = Quamina::<usize>::new();
    let mut note = String::new();
    for (i, f) in filters.iter().enumerate() {
        if let Err(e) = q.add_pattern(i, &q_pattern(f)) {
            note = format!("quamina add_pattern failed at rule {i}: {e}");
            break;
        }
    }
    let q_build_ms = t.elapsed().as_secs_f64() * 1e3;
    let q_ok = note.is_empty();
    let q_pass = || {
        let mut n = 0u64;
        for e in events {
            n += q.matches_for_event(e).map(|v| v.len() as u64).unwrap_or(0);
        }
        n
    };

    // Warm-up (and match totals), then alternating timed passes.
    let ours_matches = ours_pass();
    let q_matches = q_ok.then(&q_pass);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        std::hint::black_box(ours_pass());
        ours.push(events.len() as f64 / t.elapsed().as_secs_f64());
        if q_ok {
            let t = Instant::now();
            std::hint::black_box(q_pass());
            theirs.push(events.len() as f64 / t.elapsed().as_secs_f64());
        }
    }
    Row {
        name: name.to_string(),
        rules: filters.len(),
        ours_build_ms,
        q_build_ms: q_ok.then_some(q_build_ms),
        ours_eps: median(ours),
        q_eps: q_ok.then(|| median(theirs)),
        ours_matches,
        q_matches,
        note,
    }
}

fn src() -> Value {
    json!([{"op": "StringIn", "values": ["citylots"]}])
}

fn main() {
    let lines = env("BENCH_LINES", 50_000);
    let runs = env("BENCH_RUNS", 5).max(1);
    let rules: Value = serde_json::from_str(
        &std::fs::read_to_string(data_file("citylots-rules.json")).expect("rules file"),
    )
    .expect("json");
    let shared: Vec<Value> = rules["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["filter"].clone())
        .collect();
    eprintln!(
        "loading the first {lines} lines of {} ...",
        data_file("citylots-synth.jlines.gz")
    );
    let (owned, props) = load(lines);
    // One contiguous buffer, as a channel's ingest buffer would be.
    let mut buf = Vec::new();
    let mut ends = Vec::new();
    for e in &owned {
        buf.extend_from_slice(e);
        ends.push(buf.len());
    }
    drop(owned);
    let events: Vec<&[u8]> = ends
        .iter()
        .scan(0, |start, &end| {
            let s = &buf[*start..end];
            *start = end;
            Some(s)
        })
        .collect();

    // Distinct BLKLOT values spread over the sample: exact-match rules that do match.
    let blklots: Vec<String> = props
        .iter()
        .filter_map(|p| p["BLKLOT"].as_str().map(String::from))
        .collect();
    let pick = |n: usize| -> Vec<String> {
        let step = (blklots.len() / n).max(1);
        (0..n)
            .map(|i| blklots[(i * step) % blklots.len()].clone())
            .collect()
    };
    let exact = |n: usize| -> Vec<Value> {
        pick(n)
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                // Alternate fields so several index tables are exercised.
                let field = ["BLKLOT", "MAPBLKLOT"][i % 2];
                json!({"source": src(), "data": {"properties": {field: [{"op": "StringIn", "values": [v]}]}}})
            })
            .collect()
    };
    let shared_prefix: Vec<Value> = pick(1000)
        .into_iter()
        .map(|v| {
            json!({"source": src(), "data": {"properties": {
                "ST_TYPE": [{"op": "StringIn", "values": ["ST"]}],
                "BLKLOT": [{"op": "StringIn", "values": [v]}]}}})
        })
        .collect();

    // Prefix rules that overlap heavily ("0", "00", "001", ... share leading bytes).
    let prefixes: Vec<Value> = pick(1000)
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let p: String = v.chars().take(1 + i % 6).collect();
            json!({"source": src(), "data": {"properties": {
                "BLKLOT": [{"op": "StringStartsWith", "values": [p]}]}}})
        })
        .collect();

    let rows = vec![
        scenario("1 rule (s01 exact STREET)", &shared[..1], &events, runs),
        scenario(
            "1 rule (s08 number in coordinates)",
            &shared[7..8],
            &events,
            runs,
        ),
        scenario("10 shared citylots rules", &shared, &events, runs),
        scenario("1,000 exact-match rules", &exact(1000), &events, runs),
        scenario("10,000 exact-match rules", &exact(10_000), &events, runs),
        scenario(
            "1,000 rules sharing a first condition",
            &shared_prefix,
            &events,
            runs,
        ),
        scenario("1,000 overlapping prefix rules", &prefixes, &events, runs),
    ];

    println!(
        "\nopeneg-rules vs quamina 0.7.0 — first {} CityLots events, median of {} passes\n",
        events.len(),
        runs
    );
    println!(
        "{:<40} {:>6} {:>10} {:>10} {:>12} {:>12} {:>7} {:>10} {:>10}",
        "scenario",
        "rules",
        "build ms",
        "q build",
        "ours ev/s",
        "quamina ev/s",
        "ratio",
        "matches",
        "q matches"
    );
    for r in &rows {
        println!(
            "{:<40} {:>6} {:>10.2} {:>10} {:>12.0} {:>12} {:>7} {:>10} {:>10}",
            r.name,
            r.rules,
            r.ours_build_ms,
            r.q_build_ms.map_or("-".into(), |v| format!("{v:.2}")),
            r.ours_eps,
            r.q_eps.map_or("-".into(), |v| format!("{v:.0}")),
            r.q_eps
                .map_or("-".into(), |v| format!("{:.2}x", r.ours_eps / v)),
            r.ours_matches,
            r.q_matches.map_or("-".into(), |v| v.to_string()),
        );
        if !r.note.is_empty() {
            println!("    note: {}", r.note);
        }
    }
    // Flatness: 1,000 vs 10,000 rules, passes alternated so noise hits both alike.
    let build = |fs: &[Value]| {
        let mut b = MatcherBuilder::new();
        for f in fs {
            b.add_rule(f, true).expect("valid rule");
        }
        b.build()
    };
    let (m1, m10) = (build(&exact(1000)), build(&exact(10_000)));
    let mut scratch = Scratch::default();
    let mut out = Vec::new();
    let mut time = |m: &openeg_rules::Matcher| {
        let t = Instant::now();
        for e in &events {
            let _ = m.matches_into(e, &mut scratch, &mut out);
        }
        t.elapsed().as_secs_f64()
    };
    time(&m1);
    time(&m10);
    let (mut t1, mut t10) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(5) {
        t1.push(time(&m1));
        t10.push(time(&m10));
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "\nours, 10,000 vs 1,000 exact-match rules (alternating passes): per-event cost {:+.1}% (median), {:+.1}% (best pass)",
        (median(t10.clone()) / median(t1.clone()) - 1.0) * 100.0,
        (best(&t10) / best(&t1) - 1.0) * 100.0
    );
}
