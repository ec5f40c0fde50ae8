//! A naive reference evaluator written straight from the filter-rule semantics
//! (`docs/filter-rules.md`), on raw JSON rules and
//! events, sharing no code with the crate. Slow and simple on purpose.

use serde_json::{Map, Value};
use std::cmp::Ordering;

/// Does the (already valid) rule match the event?
pub fn matches(rule: &Value, event: &Value) -> bool {
    let rule = rule.as_object().unwrap();
    for (top, spec) in rule {
        if top == "data" {
            if !data_node(spec.as_object().unwrap(), &mut vec![], event) {
                return false;
            }
        } else {
            let hits: Vec<&Value> = event.get(top.as_str()).into_iter().collect();
            if !field(spec, &hits) {
                return false;
            }
        }
    }
    true
}

fn is_leaf(v: &Value) -> bool {
    v.is_array()
        || matches!(v.as_object(), Some(m) if m.len() == 1 && m.get("and").is_some_and(Value::is_array))
}

fn data_node(m: &Map<String, Value>, path: &mut Vec<String>, event: &Value) -> bool {
    for (k, v) in m {
        path.push(k.clone());
        let ok = if is_leaf(v) {
            field(v, &lookup(event, path))
        } else {
            data_node(v.as_object().unwrap(), path, event)
        };
        path.pop();
        if !ok {
            return false;
        }
    }
    true
}

/// Follow the path from `data`; arrays are entered (flattened), hits collected.
fn lookup<'a>(event: &'a Value, path: &[String]) -> Vec<&'a Value> {
    let data = match event.get("data") {
        Some(d @ Value::Object(_)) => d,
        _ => return vec![],
    };
    let mut cur = vec![data];
    for k in path {
        let mut next = vec![];
        for v in cur {
            enter(v, k, &mut next);
        }
        cur = next;
    }
    cur
}

fn enter<'a>(v: &'a Value, k: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(o) => out.extend(o.get(k)),
        Value::Array(a) => a.iter().for_each(|e| enter(e, k, out)),
        _ => {}
    }
}

fn scalars<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(a) => a.iter().for_each(|e| scalars(e, out)),
        Value::Null | Value::Object(_) => {}
        s => out.push(s),
    }
}

fn field(spec: &Value, hits: &[&Value]) -> bool {
    let (conds, all) = match spec {
        Value::Array(a) => (a, false),
        other => (other["and"].as_array().unwrap(), true),
    };
    let mut cands = vec![];
    hits.iter().for_each(|h| scalars(h, &mut cands));
    let not_null = hits.iter().any(|h| !h.is_null());
    let truth = |c: &Value| cond(c, not_null, &cands);
    if all {
        conds.iter().all(truth)
    } else {
        conds.iter().any(truth)
    }
}

#[derive(Clone, Copy)]
enum N {
    I(i64),
    F(f64),
}

fn num(v: &Value) -> Option<N> {
    let n = v.as_number()?;
    Some(match n.as_i64() {
        Some(i) => N::I(i),
        None => N::F(n.as_f64().unwrap()),
    })
}

fn cmp(a: N, b: N) -> Option<Ordering> {
    match (a, b) {
        (N::I(x), N::I(y)) => Some(x.cmp(&y)),
        (x, y) => {
            let f = |n| match n {
                N::I(i) => i as f64,
                N::F(f) => f,
            };
            f(x).partial_cmp(&f(y))
        }
    }
}

fn cond(c: &Value, not_null: bool, cands: &[&Value]) -> bool {
    let op = c["op"].as_str().unwrap();
    let strs = || -> Vec<&str> {
        c["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect()
    };
    let single = || {
        c.get("value")
            .and_then(num)
            .or_else(|| c["values"].as_array().and_then(|a| num(&a[0])))
            .unwrap()
    };
    let any_str = |f: &dyn Fn(&str) -> bool| cands.iter().filter_map(|v| v.as_str()).any(f);
    let any_num = |f: &dyn Fn(N) -> bool| cands.iter().filter_map(|v| num(v)).any(f);
    let string_in = || any_str(&|s| strs().contains(&s));
    let starts = || any_str(&|s| strs().iter().any(|p| s.starts_with(p)));
    let ends = || any_str(&|s| strs().iter().any(|p| s.ends_with(p)));
    let number_in = || {
        let vals: Vec<N> = c["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| num(v).unwrap())
            .collect();
        any_num(&|x| vals.iter().any(|&v| cmp(x, v) == Some(Ordering::Equal)))
    };
    let in_range = || {
        let ranges: Vec<(N, N)> = c["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (num(&p[0]).unwrap(), num(&p[1]).unwrap()))
            .collect();
        any_num(&|x| {
            ranges.iter().any(|&(lo, hi)| {
                matches!(cmp(x, lo), Some(Ordering::Greater | Ordering::Equal))
                    && matches!(cmp(x, hi), Some(Ordering::Less | Ordering::Equal))
            })
        })
    };
    let is_true = || cands.iter().any(|v| **v == Value::Bool(true));
    match op {
        "StringIn" => string_in(),
        "StringNotIn" => not_null && !string_in(),
        "StringStartsWith" => starts(),
        "StringNotStartsWith" => not_null && !starts(),
        "StringEndsWith" => ends(),
        "StringNotEndsWith" => not_null && !ends(),
        "NumberIn" => number_in(),
        "NumberNotIn" => not_null && !number_in(),
        "NumberLessThan" => any_num(&|x| cmp(x, single()) == Some(Ordering::Less)),
        "NumberNotLessThan" => {
            any_num(&|x| matches!(cmp(x, single()), Some(Ordering::Greater | Ordering::Equal)))
        }
        "NumberGreaterThan" => any_num(&|x| cmp(x, single()) == Some(Ordering::Greater)),
        "NumberNotGreaterThan" => {
            any_num(&|x| matches!(cmp(x, single()), Some(Ordering::Less | Ordering::Equal)))
        }
        "NumberInRange" => in_range(),
        "NumberNotInRange" => not_null && !in_range(),
        "IsNull" => !not_null,
        "IsNotNull" => not_null,
        "IsTrue" => is_true(),
        "IsNotTrue" => not_null && !is_true(),
        other => panic!("unknown op {other}"),
    }
}
