//! Validation of a filter rule (the rules of `docs/filter-rules.md`) into the typed [`Filter`].

use super::{Condition, FieldFilter, Filter, Op, Operand};
use crate::number::Num;
use crate::RuleError;
use serde_json::{Map, Value};

const MAX_CONDITIONS: usize = 5; // per condition list or and-block
const MAX_DATA_FIELDS: usize = 5; // matching fields under data, all levels
const MAX_DEPTH: usize = 5; // levels below data
const MAX_FILTER_BYTES: usize = 2048; // compact JSON

/// Validates `rule` and returns its typed form. `require_source` is false for event
/// streams; there `source` is optional and, when given, may use any operator (stream events
/// are not published under a registered source name).
pub fn parse_filter(rule: &Value, require_source: bool) -> Result<Filter, RuleError> {
    // Duplicate keys need no code: serde_json keeps the last one while parsing.
    let obj = rule
        .as_object()
        .ok_or_else(|| RuleError::new("", "the filter rule must be a JSON object"))?;
    let size = serde_json::to_string(rule)
        .map(|s| s.len())
        .unwrap_or(usize::MAX);
    if size > MAX_FILTER_BYTES {
        return Err(RuleError::new(
            "",
            format!("the filter rule is {size} bytes compact, more than {MAX_FILTER_BYTES}"),
        ));
    }
    for k in obj.keys() {
        if !matches!(k.as_str(), "source" | "type" | "subject" | "data") {
            return Err(RuleError::new(
                k.clone(),
                format!("unknown top-level key {k:?}: only source, type, subject and data may be filtered"),
            ));
        }
    }
    let mut fields = Vec::new();
    match obj.get("source") {
        None if require_source => {
            return Err(RuleError::new(
                "source",
                "the filter rule must contain source",
            ))
        }
        None => {}
        Some(v) => {
            if require_source {
                if !v.is_array() {
                    return Err(RuleError::new(
                        "source",
                        "source must be a condition list using StringIn",
                    ));
                }
                let f = leaf(vec!["source".into()], v, "source")?;
                for (i, c) in f.conditions.iter().enumerate() {
                    if c.op != Op::StringIn {
                        return Err(RuleError::new(
                            format!("source[{i}].op"),
                            format!(
                                "source accepts only the StringIn operator, not {}",
                                c.op.name()
                            ),
                        ));
                    }
                }
                fields.push(f);
            } else {
                fields.push(leaf(vec!["source".into()], v, "source")?);
            }
        }
    }
    for k in ["type", "subject"] {
        if let Some(v) = obj.get(k) {
            fields.push(leaf(vec![k.into()], v, k)?);
        }
    }
    if let Some(d) = obj.get("data") {
        let m = d
            .as_object()
            .ok_or_else(|| RuleError::new("data", "data must be a JSON object"))?;
        let mut path = vec!["data".to_string()];
        data_node(m, &mut path, &mut fields)?;
        let n = fields.iter().filter(|f| f.path[0] == "data").count();
        if n > MAX_DATA_FIELDS {
            return Err(RuleError::new(
                "data",
                format!("data holds {n} matching fields, at most {MAX_DATA_FIELDS} are allowed"),
            ));
        }
    }
    Ok(Filter { fields })
}

fn is_and_block(v: &Value) -> bool {
    matches!(v.as_object(), Some(m) if m.len() == 1 && m.get("and").is_some_and(Value::is_array))
}

fn data_node(
    m: &Map<String, Value>,
    path: &mut Vec<String>,
    out: &mut Vec<FieldFilter>,
) -> Result<(), RuleError> {
    for (k, v) in m {
        path.push(k.clone());
        let dotted = path.join(".");
        // path[0] is "data", so the level of this key is path.len() - 1.
        if path.len() - 1 > MAX_DEPTH {
            return Err(RuleError::new(
                dotted,
                format!("a matching field may be at most {MAX_DEPTH} levels below data"),
            ));
        }
        if v.is_array() || is_and_block(v) {
            out.push(leaf(path.clone(), v, &dotted)?);
            if out.iter().filter(|f| f.path[0] == "data").count() > MAX_DATA_FIELDS {
                return Err(RuleError::new(
                    dotted,
                    format!("data holds more than {MAX_DATA_FIELDS} matching fields"),
                ));
            }
        } else if let Some(inner) = v.as_object() {
            data_node(inner, path, out)?;
        } else {
            return Err(RuleError::new(
                dotted,
                "a data key must hold a condition list, an and-block or a nested object",
            ));
        }
        path.pop();
    }
    Ok(())
}

/// A matching field: a condition list or an and-block of 1 to 5 conditions.
fn leaf(path: Vec<String>, v: &Value, at: &str) -> Result<FieldFilter, RuleError> {
    let (list, all, base): (&[Value], bool, String) = if let Some(a) = v.as_array() {
        (a, false, at.to_string())
    } else if is_and_block(v) {
        let a = v["and"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        (a, true, format!("{at}.and"))
    } else {
        return Err(RuleError::new(
            at,
            "must be a condition list [...] or an and-block {\"and\": [...]}",
        ));
    };
    if list.is_empty() || list.len() > MAX_CONDITIONS {
        return Err(RuleError::new(
            base,
            format!(
                "{} conditions given, a condition list or and-block holds 1 to {MAX_CONDITIONS}",
                list.len()
            ),
        ));
    }
    let mut conditions = Vec::with_capacity(list.len());
    for (i, c) in list.iter().enumerate() {
        conditions.push(condition(c, &format!("{base}[{i}]"))?);
    }
    Ok(FieldFilter {
        path,
        conditions,
        all,
    })
}

fn num_of(v: &Value) -> Option<Num> {
    v.as_number().map(Num::from_json)
}

fn condition(c: &Value, at: &str) -> Result<Condition, RuleError> {
    let m = c
        .as_object()
        .ok_or_else(|| RuleError::new(at, "a condition must be a JSON object {\"op\": ...}"))?;
    for k in m.keys() {
        if !matches!(k.as_str(), "op" | "value" | "values") {
            return Err(RuleError::new(
                format!("{at}.{k}"),
                format!("unknown condition key {k:?}: only op, value and values are allowed"),
            ));
        }
    }
    let op_v = m
        .get("op")
        .ok_or_else(|| RuleError::new(format!("{at}.op"), "the condition has no op"))?;
    let name = op_v
        .as_str()
        .ok_or_else(|| RuleError::new(format!("{at}.op"), "op must be a string"))?;
    let op = Op::from_name(name).ok_or_else(|| {
        RuleError::new(
            format!("{at}.op"),
            format!("unknown operator {name:?}: not one of the 18 filter operators"),
        )
    })?;
    let vpath = format!("{at}.values");
    let need_values = || -> Result<&Vec<Value>, RuleError> {
        let v = m.get("values").ok_or_else(|| {
            RuleError::new(&vpath, format!("{name} needs values, a non-empty array"))
        })?;
        let a = v
            .as_array()
            .ok_or_else(|| RuleError::new(&vpath, format!("{name} needs values to be an array")))?;
        if a.is_empty() {
            return Err(RuleError::new(
                &vpath,
                format!("{name} needs a non-empty values array"),
            ));
        }
        Ok(a)
    };
    let operand = match op {
        Op::StringIn
        | Op::StringNotIn
        | Op::StringStartsWith
        | Op::StringNotStartsWith
        | Op::StringEndsWith
        | Op::StringNotEndsWith => {
            let a = need_values()?;
            let mut out = Vec::with_capacity(a.len());
            for (i, x) in a.iter().enumerate() {
                let s = x.as_str().ok_or_else(|| {
                    RuleError::new(
                        format!("{vpath}[{i}]"),
                        format!("{name} values must be strings"),
                    )
                })?;
                out.push(s.to_string());
            }
            Operand::Strings(out)
        }
        Op::NumberIn | Op::NumberNotIn => {
            let a = need_values()?;
            let mut out = Vec::with_capacity(a.len());
            for (i, x) in a.iter().enumerate() {
                out.push(num_of(x).ok_or_else(|| {
                    RuleError::new(
                        format!("{vpath}[{i}]"),
                        format!("{name} values must be numbers"),
                    )
                })?);
            }
            Operand::Numbers(out)
        }
        Op::NumberInRange | Op::NumberNotInRange => {
            let a = need_values()?;
            let mut out = Vec::with_capacity(a.len());
            for (i, x) in a.iter().enumerate() {
                let p = format!("{vpath}[{i}]");
                let pair = x.as_array().filter(|p| p.len() == 2).ok_or_else(|| {
                    RuleError::new(
                        &p,
                        format!("{name} values must be [low, high] number pairs"),
                    )
                })?;
                let (lo, hi) = match (num_of(&pair[0]), num_of(&pair[1])) {
                    (Some(lo), Some(hi)) => (lo, hi),
                    _ => {
                        return Err(RuleError::new(
                            &p,
                            format!("{name} values must be [low, high] number pairs"),
                        ))
                    }
                };
                if lo.cmp_num(hi) == Some(std::cmp::Ordering::Greater) {
                    return Err(RuleError::new(
                        &p,
                        format!("{name} range has low {lo} > high {hi}"),
                    ));
                }
                out.push((lo, hi));
            }
            Operand::Ranges(out)
        }
        Op::NumberLessThan
        | Op::NumberNotLessThan
        | Op::NumberGreaterThan
        | Op::NumberNotGreaterThan => {
            if let Some(v) = m.get("value") {
                Operand::Number(num_of(v).ok_or_else(|| {
                    RuleError::new(
                        format!("{at}.value"),
                        format!("{name} needs value to be a number"),
                    )
                })?)
            } else if let Some(v) = m.get("values") {
                // `values` holding exactly one number is an accepted alias.
                match v.as_array().map(Vec::as_slice) {
                    Some([x]) if x.is_number() => Operand::Number(num_of(x).unwrap_or(Num::Int(0))),
                    _ => {
                        return Err(RuleError::new(
                            vpath,
                            format!(
                            "{name} needs value (a number) or values holding exactly one number"
                        ),
                        ))
                    }
                }
            } else {
                return Err(RuleError::new(
                    format!("{at}.value"),
                    format!("{name} needs value, a number"),
                ));
            }
        }
        Op::IsNull | Op::IsNotNull | Op::IsTrue | Op::IsNotTrue => Operand::None,
    };
    Ok(Condition { op, operand })
}
