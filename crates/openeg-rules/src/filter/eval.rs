//! A direct, uncompiled evaluator of one [`Filter`] over a parsed event. It is the source of
//! the "which condition failed first" explanations; the compiled [`crate::Matcher`] must agree
//! with it (tests check both against an independent reference).

use super::{Condition, FieldFilter, Filter, Scalar};
use crate::number::Num;
use serde_json::Value;

/// The hits of a field path in `event`.
pub fn resolve<'a>(event: &'a Value, path: &[String]) -> Vec<&'a Value> {
    let Some(top) = event.as_object().and_then(|o| o.get(path[0].as_str())) else {
        return Vec::new();
    };
    if path.len() == 1 {
        return vec![top];
    }
    // Data paths start at an object; `data` that is not an object makes every path absent.
    let Some(obj) = top.as_object() else {
        return Vec::new();
    };
    let mut cur: Vec<&Value> = match obj.get(path[1].as_str()) {
        Some(v) => vec![v],
        None => return Vec::new(),
    };
    for key in &path[2..] {
        let mut next = Vec::new();
        for h in cur {
            step(h, key, &mut next);
        }
        cur = next;
    }
    cur
}

fn step<'a>(v: &'a Value, key: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(o) => {
            if let Some(x) = o.get(key) {
                out.push(x);
            }
        }
        // Arrays: enter every object element, arrays nested in arrays flattened.
        Value::Array(a) => {
            for e in a {
                if e.is_array() || e.is_object() {
                    step(e, key, out);
                }
            }
        }
        _ => {}
    }
}

/// Candidate scalars of the hits, strings borrowed.
pub fn candidates<'a>(hits: &[&'a Value], out: &mut Vec<Scalar<'a>>) {
    for h in hits {
        push_scalars(h, out);
    }
}

fn push_scalars<'a>(v: &'a Value, out: &mut Vec<Scalar<'a>>) {
    match v {
        Value::String(s) => out.push(Scalar::Str(s.as_bytes())),
        Value::Number(n) => out.push(Scalar::Num(Num::from_json(n))),
        Value::Bool(b) => out.push(Scalar::Bool(*b)),
        Value::Array(a) => a.iter().for_each(|e| push_scalars(e, out)),
        Value::Null | Value::Object(_) => {}
    }
}

/// Evaluates one matching field. `Err` carries why it is false.
pub fn eval_field(f: &FieldFilter, event: &Value) -> Result<(), String> {
    let hits = resolve(event, &f.path);
    let nonnull = hits.iter().any(|h| !h.is_null());
    let mut cands = Vec::new();
    candidates(&hits, &mut cands);
    let truth = |c: &Condition| c.eval_with(nonnull, cands.iter().copied());
    let shown = || describe_hits(&hits);
    if f.all {
        for (i, c) in f.conditions.iter().enumerate() {
            if !truth(c) {
                return Err(format!(
                    "{}: and-block condition {} ({}) is false for {}",
                    f.dotted(),
                    i,
                    c.describe(),
                    shown()
                ));
            }
        }
        Ok(())
    } else if f.conditions.iter().any(truth) {
        Ok(())
    } else {
        let conds: Vec<String> = f.conditions.iter().map(Condition::describe).collect();
        Err(format!(
            "{}: {} is false for {}",
            f.dotted(),
            conds.join(" OR "),
            shown()
        ))
    }
}

fn describe_hits(hits: &[&Value]) -> String {
    match hits {
        [] => "an absent field".to_string(),
        [one] => format!("value {}", clip(&one.to_string())),
        many => format!(
            "values {}",
            clip(&serde_json::to_string(many).unwrap_or_default())
        ),
    }
}

fn clip(s: &str) -> String {
    if s.chars().count() <= 120 {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(120).collect::<String>())
    }
}

/// Evaluates a whole rule; `Err` names the first matching field (in rule order) that is false.
pub fn eval_filter(filter: &Filter, event: &Value) -> Result<(), String> {
    for f in &filter.fields {
        eval_field(f, event)?;
    }
    Ok(())
}
