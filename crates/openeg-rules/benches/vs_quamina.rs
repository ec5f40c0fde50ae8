//! Our compiled matcher against the `quamina` crate (0.7.0) on the CityLots data, same events,
//! same run. `cargo bench -p openeg-rules --bench vs_quamina`.
//!
//! Uses the first `BENCH_LINES` lines (default 50,000) of the CityLots data set
//! (`citylots-rules.json`, `citylots-synth.jlines.gz` in `OPENEG_CITYLOTS_DIR`; not part of the
//! repository), wrapped as CloudEvents; one warm-up pass then `BENCH_RUNS` (default 5) timed passes of each matcher,
//! alternating, medians reported. Passes are timed in thread CPU time. `BENCH_ONLY=a,b` runs
//! only the scenarios whose name contains `a` or `b` (`BENCH_ONLY=src/type`: the shared first
//! condition comparison; `flat`: the 1,000 vs 10,000 rules check).
//!
//! The `src/type` scenarios put the same CityLots payloads under varied `source`/`type`
//! attributes: 1,000 rules that share `source` and differ in `type`, against 1,000 rules whose
//! `source` differs (with or without a `type` condition). Event `i` carries id
//! `j = 7919 i mod 2,000` (rules name ids below 1,000) and every fourth event comes from a
//! source no rule names, so every case matches the same events.
//!
//! Rules are translated to Quamina's pattern syntax (StringIn → exact strings, StartsWith →
//! prefix, EndsWith → suffix, NotIn → anything-but, IsNotNull → exists, numbers → numeric).

use flate2::read::MultiGzDecoder;
use openeg_rules::{MatcherBuilder, Scratch};
use quamina::Quamina;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::time::Instant;

/// This thread's CPU time in seconds. Timed passes use it rather than wall time: the bench
/// shares a small machine with builds, and time spent waiting for a core is not matching.
fn cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the call only writes it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// A file of the CityLots data set, in `OPENEG_CITYLOTS_DIR`.
fn data_file(name: &str) -> String {
    match std::env::var("OPENEG_CITYLOTS_DIR") {
        Ok(dir) => format!("{dir}/{name}"),
        Err(_) => {
            eprintln!("set OPENEG_CITYLOTS_DIR to the directory of the CityLots data set");
            std::process::exit(2);
        }
    }
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The CityLots lines as `data` of CloudEvents from `citylots`, their `properties`, and the
/// raw lines.
fn load(limit: usize) -> (Vec<Vec<u8>>, Vec<Value>, Vec<String>) {
    let file = std::fs::File::open(data_file("citylots-synth.jlines.gz"))
        .expect("the CityLots data set (OPENEG_CITYLOTS_DIR)");
    let mut events = Vec::new();
    let mut props = Vec::new();
    let mut lines = Vec::new();
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
        lines.push(line);
    }
    (events, props, lines)
}

/// One contiguous buffer of events, as a channel's ingest buffer would be; `events` borrows it.
struct EventSet {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl EventSet {
    fn new(events: impl IntoIterator<Item = Vec<u8>>) -> Self {
        let mut buf = Vec::new();
        let mut ends = Vec::new();
        for e in events {
            buf.extend_from_slice(&e);
            ends.push(buf.len());
        }
        EventSet { buf, ends }
    }

    fn events(&self) -> Vec<&[u8]> {
        self.ends
            .iter()
            .scan(0, |start, &end| {
                let s = &self.buf[*start..end];
                *start = end;
                Some(s)
            })
            .collect()
    }
}

/// Ids the `src/type` rules name are `0..SRC_TYPE_RULES`; events cycle over twice as many.
const SRC_TYPE_RULES: usize = 1000;

/// Event `i`'s `(source, type)`: `shared` picks one source for every event a rule can match,
/// otherwise the source carries the id too; every fourth event is from an unnamed source.
fn src_type_attrs(i: usize, shared: bool) -> (String, String) {
    // 7919 is prime, so consecutive events spread over all 2,000 ids.
    let j = (i * 7919) % (2 * SRC_TYPE_RULES);
    let source = if i % 4 == 3 {
        "billing-app".to_string()
    } else if shared {
        "orders-app".to_string()
    } else {
        format!("orders-app-{j}")
    };
    (source, format!("com.example.order.v{j}"))
}

fn src_type_events(lines: &[String], shared: bool) -> EventSet {
    EventSet::new(lines.iter().enumerate().map(|(i, line)| {
        let (source, ty) = src_type_attrs(i, shared);
        format!(
            r#"{{"specversion":"1.0","id":"{}","source":"{source}","type":"{ty}","data":{line}}}"#,
            i + 1
        )
        .into_bytes()
    }))
}

fn src_type_rules(shared_source: bool, with_type: bool) -> Vec<Value> {
    (0..SRC_TYPE_RULES)
        .map(|k| {
            let source = if shared_source {
                "orders-app".to_string()
            } else {
                format!("orders-app-{k}")
            };
            let mut r = json!({"source": [{"op": "StringIn", "values": [source]}]});
            if with_type {
                r["type"] =
                    json!([{"op": "StringIn", "values": [format!("com.example.order.v{k}")]}]);
            }
            r
        })
        .collect()
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
        let t = cpu_secs();
        std::hint::black_box(ours_pass());
        ours.push(events.len() as f64 / (cpu_secs() - t));
        if q_ok {
            let t = cpu_secs();
            std::hint::black_box(q_pass());
            theirs.push(events.len() as f64 / (cpu_secs() - t));
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

/// Alternating timed passes of two of our matchers, each over its own events, so machine noise
/// hits both alike: the ratio of per-event costs `b / a` (= throughput `a / b`) as (median of
/// passes, best pass).
fn alternate(
    a: (&openeg_rules::Matcher, &[&[u8]]),
    b: (&openeg_rules::Matcher, &[&[u8]]),
    runs: usize,
) -> (f64, f64) {
    let mut scratch = Scratch::default();
    let mut out = Vec::new();
    let mut time = |(m, events): (&openeg_rules::Matcher, &[&[u8]])| {
        let t = cpu_secs();
        for e in events {
            let _ = m.matches_into(e, &mut scratch, &mut out);
        }
        (cpu_secs() - t) / events.len().max(1) as f64
    };
    time(a);
    time(b);
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(5) {
        ta.push(time(a));
        tb.push(time(b));
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    (
        median(tb.clone()) / median(ta.clone()),
        best(&tb) / best(&ta),
    )
}

fn build(filters: &[Value]) -> openeg_rules::Matcher {
    let mut b = MatcherBuilder::new();
    for f in filters {
        b.add_rule(f, true).expect("valid rule");
    }
    b.build()
}

fn main() {
    let lines = env("BENCH_LINES", 50_000);
    let runs = env("BENCH_RUNS", 5).max(1);
    let only: Vec<String> = std::env::var("BENCH_ONLY")
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
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
    let (owned, props, raw) = load(lines);
    let citylots = EventSet::new(owned);
    let events = citylots.events();
    const ST_DISTINCT_SRC: &str = "src/type: 1,000 rules, distinct source";
    const ST_DISTINCT_BOTH: &str = "src/type: 1,000 distinct source+type";
    const ST_SHARED: &str = "src/type: 1,000 shared source, own type";
    let src_type_wanted = [ST_DISTINCT_SRC, ST_DISTINCT_BOTH, ST_SHARED]
        .iter()
        .any(|n| wanted(n));
    let (st_shared, st_distinct) = if src_type_wanted {
        (src_type_events(&raw, true), src_type_events(&raw, false))
    } else {
        (EventSet::new([]), EventSet::new([]))
    };
    drop(raw);
    let (st_shared_ev, st_distinct_ev) = (st_shared.events(), st_distinct.events());

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
    let shared_prefix = || -> Vec<Value> {
        pick(1000)
            .into_iter()
            .map(|v| {
                json!({"source": src(), "data": {"properties": {
                    "ST_TYPE": [{"op": "StringIn", "values": ["ST"]}],
                    "BLKLOT": [{"op": "StringIn", "values": [v]}]}}})
            })
            .collect()
    };

    // Prefix rules that overlap heavily ("0", "00", "001", ... share leading bytes).
    let prefixes = || -> Vec<Value> {
        pick(1000)
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let p: String = v.chars().take(1 + i % 6).collect();
                json!({"source": src(), "data": {"properties": {
                    "BLKLOT": [{"op": "StringStartsWith", "values": [p]}]}}})
            })
            .collect()
    };

    type Case<'a> = (&'a str, Box<dyn Fn() -> Vec<Value> + 'a>, &'a [&'a [u8]]);
    let cases: Vec<Case> = vec![
        (
            "1 rule (s01 exact STREET)",
            Box::new(|| shared[..1].to_vec()),
            &events,
        ),
        (
            "1 rule (s08 number in coordinates)",
            Box::new(|| shared[7..8].to_vec()),
            &events,
        ),
        (
            "10 shared citylots rules",
            Box::new(|| shared.clone()),
            &events,
        ),
        ("1,000 exact-match rules", Box::new(|| exact(1000)), &events),
        (
            "10,000 exact-match rules",
            Box::new(|| exact(10_000)),
            &events,
        ),
        (
            "1,000 rules sharing a first condition",
            Box::new(shared_prefix),
            &events,
        ),
        (
            "1,000 overlapping prefix rules",
            Box::new(prefixes),
            &events,
        ),
        (
            ST_DISTINCT_SRC,
            Box::new(|| src_type_rules(false, false)),
            &st_distinct_ev,
        ),
        (
            ST_DISTINCT_BOTH,
            Box::new(|| src_type_rules(false, true)),
            &st_distinct_ev,
        ),
        (
            ST_SHARED,
            Box::new(|| src_type_rules(true, true)),
            &st_shared_ev,
        ),
    ];
    let rows: Vec<Row> = cases
        .iter()
        .filter(|(name, _, _)| wanted(name))
        .map(|(name, filters, evs)| scenario(name, &filters(), evs, runs))
        .collect();

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

    // Shared first condition vs distinct rules: throughput ratios from the table, then ours
    // again with alternating passes (the figure least disturbed by other load).
    let row = |name: &str| rows.iter().find(|r| r.name == name);
    if let Some(sh) = row(ST_SHARED) {
        println!();
        for dname in [ST_DISTINCT_SRC, ST_DISTINCT_BOTH] {
            if let Some(d) = row(dname) {
                let q = match (sh.q_eps, d.q_eps) {
                    (Some(a), Some(b)) => format!("{:.2}", a / b),
                    _ => "-".into(),
                };
                println!(
                    "shared/distinct throughput vs \"{dname}\": ours {:.2}, quamina {q}",
                    sh.ours_eps / d.ours_eps
                );
            }
        }
    }
    if wanted("src/type") {
        let m_shared = build(&src_type_rules(true, true));
        for (label, with_type) in [("distinct source", false), ("distinct source+type", true)] {
            let m_distinct = build(&src_type_rules(false, with_type));
            let (med, best) = alternate(
                (&m_shared, &st_shared_ev),
                (&m_distinct, &st_distinct_ev),
                runs,
            );
            println!(
                "ours, shared source vs {label} (alternating passes): shared/distinct throughput {med:.2} (median), {best:.2} (best pass)"
            );
        }
    }

    // Flatness: 1,000 vs 10,000 rules, passes alternated so noise hits both alike.
    if wanted("flat") {
        let (m1, m10) = (build(&exact(1000)), build(&exact(10_000)));
        let (med, best) = alternate((&m1, &events), (&m10, &events), runs);
        println!(
            "\nours, 10,000 vs 1,000 exact-match rules (alternating passes): per-event cost {:+.1}% (median), {:+.1}% (best pass)",
            (med - 1.0) * 100.0,
            (best - 1.0) * 100.0
        );
    }
}
