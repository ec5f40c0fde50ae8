//! `openeg rules test|bench`: try filter rules on one event, or benchmark the compiled matcher
//! on a JSON-lines data set (file formats in the README's filter-rule tools section).

use anyhow::{bail, Context};
use clap::Subcommand;
use openeg_rules::filter::eval::eval_filter;
use openeg_rules::{parse_filter, Filter, MatcherBuilder, Scratch};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Subcommand)]
pub enum RulesCmd {
    /// Which rules match one event, and why a rule does not.
    Test {
        /// A rules file (`{"rules": [{"id", "description", "filter"}]}`), one filter object, or
        /// an array of filters.
        #[arg(long)]
        rules: PathBuf,
        /// A CloudEvent JSON object (or an array of them).
        #[arg(long)]
        event: PathBuf,
    },
    /// Benchmark the compiled matcher: one warm-up pass, then timed passes over every event.
    Bench {
        /// A rules file: `{"envelope": "...", "rules": [{"id", "description", "filter"}]}`.
        #[arg(long)]
        rules: PathBuf,
        /// JSON lines, gzipped or not; each line is wrapped as the rules file's envelope says.
        #[arg(long)]
        data: PathBuf,
        /// Number of timed passes (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Use only the first N lines of the data file.
        #[arg(long)]
        limit: Option<usize>,
        /// Print one JSON object as the last line.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: RulesCmd) -> anyhow::Result<()> {
    match cmd {
        RulesCmd::Test { rules, event } => test(&rules, &event),
        RulesCmd::Bench {
            rules,
            data,
            runs,
            limit,
            json,
        } => bench(&rules, &data, runs.max(1), limit, json),
    }
}

struct RuleEntry {
    id: String,
    description: String,
    filter: Filter,
}

/// The envelope when the rules file names none: a CityLots record as the event's `data`.
const DEFAULT_ENVELOPE: &str = r#"{"specversion":"1.0","id":"<line number, from 1>","source":"citylots","type":"Feature","data":<record>}"#;

fn load_rules(path: &Path) -> anyhow::Result<(Vec<RuleEntry>, String)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let envelope = doc
        .get("envelope")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_ENVELOPE)
        .to_string();
    let items: Vec<(String, String, Value)> = match &doc {
        Value::Object(o) if o.contains_key("rules") => doc["rules"]
            .as_array()
            .context("\"rules\" must be an array")?
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let id = match r.get("id") {
                    Some(Value::String(s)) => s.clone(),
                    Some(v) if !v.is_null() => v.to_string(),
                    _ => format!("rule-{}", i + 1),
                };
                let desc = r
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                (id, desc, r.get("filter").cloned().unwrap_or(Value::Null))
            })
            .collect(),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, f)| (format!("rule-{}", i + 1), String::new(), f.clone()))
            .collect(),
        other => vec![("rule".into(), String::new(), other.clone())],
    };
    let mut out = Vec::with_capacity(items.len());
    for (id, description, f) in items {
        // Subscription rules first; a rule without source is accepted as an event-stream rule.
        let filter = parse_filter(&f, true)
            .or_else(|e| parse_filter(&f, false).map_err(|_| e))
            .map_err(|e| anyhow::anyhow!("rule {id}: invalid filter (EG.00513004): {e}"))?;
        out.push(RuleEntry {
            id,
            description,
            filter,
        });
    }
    Ok((out, envelope))
}

fn test(rules: &Path, event: &Path) -> anyhow::Result<()> {
    let (entries, _) = load_rules(rules)?;
    let text =
        std::fs::read_to_string(event).with_context(|| format!("reading {}", event.display()))?;
    let ev: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", event.display()))?;
    let events = match ev {
        Value::Array(a) => a,
        other => vec![other],
    };
    let mut b = MatcherBuilder::new();
    for e in &entries {
        b.add_filter(e.filter.clone());
    }
    let m = b.build();
    let mut out = std::io::stdout().lock();
    for (n, ev) in events.iter().enumerate() {
        if events.len() > 1 {
            writeln!(out, "event {n}:")?;
        }
        let matched = m.matches_value(ev);
        for (i, e) in entries.iter().enumerate() {
            if matched.binary_search(&i).is_ok() {
                writeln!(out, "MATCH     {}", e.id)?;
            } else {
                let why = eval_filter(&e.filter, ev)
                    .err()
                    .unwrap_or_else(|| "the event is not a JSON object".into());
                writeln!(out, "NO MATCH  {}: {}", e.id, why)?;
            }
        }
        writeln!(out, "{} of {} rules match", matched.len(), entries.len())?;
    }
    Ok(())
}

/// All wrapped events in one buffer, with their end offsets.
struct Events {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl Events {
    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&e| {
            let s = &self.buf[start..e];
            start = e;
            s
        })
    }
}

/// Splits the envelope around its `<…record…>` and `<…line…>` placeholders.
fn envelope_parts(env: &str) -> anyhow::Result<Vec<(String, Option<bool>)>> {
    // Each part: literal text, then an optional placeholder (true = record, false = line no).
    let mut parts = Vec::new();
    let mut rest = env;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>') else {
            break;
        };
        let name = &rest[open + 1..open + close];
        let kind = if name.contains("record") {
            Some(true)
        } else if name.contains("line") {
            Some(false)
        } else {
            None
        };
        match kind {
            Some(k) => {
                parts.push((rest[..open].to_string(), Some(k)));
                rest = &rest[open + close + 1..];
            }
            None => {
                parts.push((rest[..open + 1].to_string(), None));
                rest = &rest[open + 1..];
            }
        }
    }
    parts.push((rest.to_string(), None));
    if !parts.iter().any(|p| p.1 == Some(true)) {
        bail!("the envelope has no <record> placeholder: {env}");
    }
    Ok(parts)
}

fn load_events(
    path: &Path,
    envelope: &str,
    limit: Option<usize>,
    quiet: bool,
) -> anyhow::Result<Events> {
    let parts = envelope_parts(envelope)?;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let gz = reader.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let input: Box<dyn Read> = if gz {
        Box::new(flate2::bufread::MultiGzDecoder::new(reader))
    } else {
        Box::new(reader)
    };
    let mut lines = BufReader::with_capacity(1 << 20, input);
    let mut ev = Events {
        buf: Vec::new(),
        ends: Vec::new(),
    };
    let mut line = Vec::new();
    let mut n = 0usize;
    let mut next_report = 20_000usize;
    let started = Instant::now();
    let mut err = std::io::stderr();
    loop {
        if limit.is_some_and(|l| ev.ends.len() >= l) {
            break;
        }
        line.clear();
        if lines.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        n += 1;
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        for (lit, ph) in &parts {
            ev.buf.extend_from_slice(lit.as_bytes());
            match ph {
                Some(true) => ev.buf.extend_from_slice(&line),
                Some(false) => ev.buf.extend_from_slice(n.to_string().as_bytes()),
                None => {}
            }
        }
        ev.ends.push(ev.buf.len());
        if !quiet && n >= next_report {
            next_report += 20_000;
            let _ = write!(
                err,
                "\rloading {}: {} events, {:.1} MB in {:.1}s{}",
                path.display(),
                ev.ends.len(),
                ev.buf.len() as f64 / 1e6,
                started.elapsed().as_secs_f64(),
                if total > 0 && !gz {
                    format!(" ({:.0}%)", 100.0 * ev.buf.len() as f64 / total as f64)
                } else {
                    String::new()
                }
            );
        }
    }
    if !quiet {
        let _ = writeln!(
            err,
            "\rloaded {}: {} events, {:.1} MB in {:.1}s          ",
            path.display(),
            ev.ends.len(),
            ev.buf.len() as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(ev)
}

fn bench(
    rules: &Path,
    data: &Path,
    runs: usize,
    limit: Option<usize>,
    as_json: bool,
) -> anyhow::Result<()> {
    let (entries, envelope) = load_rules(rules)?;
    let events = load_events(data, &envelope, limit, false)?;
    let t0 = Instant::now();
    let mut b = MatcherBuilder::new();
    for e in &entries {
        b.add_filter(e.filter.clone());
    }
    let m = b.build();
    let build_ms = t0.elapsed().as_secs_f64() * 1e3;

    let mut scratch = Scratch::default();
    let mut out = Vec::new();
    let pass = |scratch: &mut Scratch, out: &mut Vec<usize>| {
        let mut counts = vec![0u64; entries.len()];
        let mut errors = 0u64;
        for ev in events.iter() {
            if m.matches_into(ev, scratch, out).is_err() {
                errors += 1;
            }
            for &r in out.iter() {
                counts[r] += 1;
            }
        }
        (counts, errors)
    };
    let (counts, errors) = pass(&mut scratch, &mut out); // warm-up
    let mut rates = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let (c, _) = pass(&mut scratch, &mut out);
        let secs = t.elapsed().as_secs_f64();
        if c != counts {
            bail!("counts differ between passes");
        }
        rates.push(events.ends.len() as f64 / secs.max(1e-9));
    }
    rates.sort_by(f64::total_cmp);
    let median = if runs % 2 == 1 {
        rates[runs / 2]
    } else {
        (rates[runs / 2 - 1] + rates[runs / 2]) / 2.0
    };

    let mut so = std::io::stdout().lock();
    if !as_json {
        writeln!(so, "{:<36} {:>10}  description", "rule", "matches")?;
        for (e, c) in entries.iter().zip(&counts) {
            writeln!(so, "{:<36} {:>10}  {}", e.id, c, e.description)?;
        }
        writeln!(so)?;
        writeln!(so, "events        {}", events.ends.len())?;
        if errors > 0 {
            writeln!(so, "malformed     {errors}")?;
        }
        writeln!(so, "rules         {}", entries.len())?;
        writeln!(so, "build         {build_ms:.2} ms")?;
        writeln!(
            so,
            "events/s      median {:.0}  (min {:.0}, max {:.0}, {} runs)",
            median,
            rates[0],
            rates[runs - 1],
            runs
        )?;
        writeln!(
            so,
            "MB/s          median {:.1}",
            median * events.buf.len() as f64 / events.ends.len().max(1) as f64 / 1e6
        )?;
    } else {
        let mut cmap = serde_json::Map::new();
        for (e, c) in entries.iter().zip(&counts) {
            let prev = cmap.get(&e.id).and_then(Value::as_u64).unwrap_or(0);
            cmap.insert(e.id.clone(), json!(prev + c));
        }
        let report = json!({
            "events": events.ends.len(),
            "rules": entries.len(),
            "build_ms": (build_ms * 1000.0).round() / 1000.0,
            "events_per_sec": median.round(),
            "counts": cmap,
        });
        writeln!(so, "{report}")?;
    }
    Ok(())
}
