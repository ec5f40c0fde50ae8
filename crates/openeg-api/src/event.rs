//! CloudEvents 1.0 validation for PutEvents / PutOfficialEvents (`API.md` §3.3, `LIMITS.md` §2).
//!
//! Whole-request violations reject everything (400 `EG.00513000`); per-event violations fail
//! only that event and are reported in the response's `events` list.

use crate::validate::compact_len;
use crate::EgError;
use serde_json::{Map, Value};

pub const MAX_EVENTS: usize = 20;
pub const MAX_REQUEST_BYTES: usize = 262_144;
pub const MAX_EVENT_BYTES: usize = 65_536;

/// Attributes with a defined meaning; every other top-level member is an extension.
const KNOWN: &[&str] = &[
    "id",
    "source",
    "specversion",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
    "data",
];

/// Checks the request envelope and returns the events array.
pub fn batch(body: &[u8]) -> Result<Vec<Value>, EgError> {
    if body.len() > MAX_REQUEST_BYTES {
        return Err(EgError::param(format!(
            "the request body must be at most {MAX_REQUEST_BYTES} bytes"
        )));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| EgError::param("request body is not valid JSON"))?;
    let events = match v {
        Value::Object(mut m) => m.remove("events"),
        _ => return Err(EgError::param("request body must be a JSON object")),
    };
    match events {
        Some(Value::Array(a)) if a.is_empty() => Err(EgError::param("events must not be empty")),
        Some(Value::Array(a)) if a.len() > MAX_EVENTS => Err(EgError::param(format!(
            "at most {MAX_EVENTS} events per request"
        ))),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(EgError::param("events must be an array")),
        None => Err(EgError::param("events is required")),
    }
}

fn req_attr<'a>(m: &'a Map<String, Value>, key: &str) -> Result<&'a str, EgError> {
    match m.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => Err(EgError::param(format!("{key} must not be empty"))),
        None | Some(Value::Null) => Err(EgError::param(format!("{key} is required"))),
        Some(_) => Err(EgError::param(format!("{key} must be a string"))),
    }
}

fn opt_attr<'a>(m: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, EgError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(EgError::param(format!("{key} must be a string"))),
    }
}

/// `application/json`, optionally with parameters (`; charset=utf-8`).
fn is_json_media_type(s: &str) -> bool {
    let base = s.split(';').next().unwrap_or("").trim();
    base.eq_ignore_ascii_case("application/json")
}

/// A strict RFC 3339 `date-time` check without a date library:
/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` with field ranges checked (day-of-month against the
/// month and leap years).
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(r)?;
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(sec)) = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    ) else {
        return false;
    };
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return false;
    }
    if !matches!(b.get(10), Some(b'T') | Some(b't') | Some(b' ')) {
        return false;
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let dim = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    if d == 0 || d > dim || h > 23 || mi > 59 || sec > 60 {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match b.get(i) {
        Some(b'Z') | Some(b'z') => i + 1 == b.len(),
        Some(b'+') | Some(b'-') => {
            let (Some(oh), Some(om)) = (digits(i + 1..i + 3), digits(i + 4..i + 6)) else {
                return false;
            };
            b.get(i + 3) == Some(&b':') && oh <= 23 && om <= 59 && i + 6 == b.len()
        }
        _ => false,
    }
}

fn valid_extension_name(k: &str) -> bool {
    (1..=20).contains(&k.len())
        && k.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// The id of an event as reported back (`""` when missing or not a string).
pub fn event_id(ev: &Value) -> String {
    ev.get("id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// Validates one CloudEvent; the error is reported for this event only.
pub fn validate(ev: &Value) -> Result<(), EgError> {
    let m = ev
        .as_object()
        .ok_or_else(|| EgError::param("an event must be a JSON object"))?;
    if compact_len(ev) > MAX_EVENT_BYTES {
        return Err(EgError::param(format!(
            "an event must be at most {MAX_EVENT_BYTES} bytes"
        )));
    }
    req_attr(m, "id")?;
    req_attr(m, "source")?;
    let sv = req_attr(m, "specversion")?;
    if sv != "1.0" {
        return Err(EgError::param("specversion must be 1.0"));
    }
    req_attr(m, "type")?;
    if let Some(ct) = opt_attr(m, "datacontenttype")? {
        if !is_json_media_type(ct) {
            return Err(EgError::param("datacontenttype must be application/json"));
        }
    }
    if let Some(ds) = opt_attr(m, "dataschema")? {
        if ds.is_empty() || ds.chars().any(char::is_whitespace) {
            return Err(EgError::param("dataschema must be a URI reference"));
        }
    }
    opt_attr(m, "subject")?;
    if let Some(t) = opt_attr(m, "time")? {
        if !is_rfc3339(t) {
            return Err(EgError::param("time must be an RFC 3339 timestamp"));
        }
    }
    if m.contains_key("data_base64") {
        return Err(EgError::param(
            "data_base64 is not supported; send JSON data",
        ));
    }
    for (k, v) in m {
        if KNOWN.contains(&k.as_str()) {
            continue;
        }
        if !valid_extension_name(k) {
            return Err(EgError::param(format!(
                "extension attribute {k} must match ^[a-z0-9]{{1,20}}$"
            )));
        }
        if v.is_object() || v.is_array() {
            return Err(EgError::param(format!(
                "extension attribute {k} must be a string, number or boolean"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok_event() -> Value {
        json!({"id": "e1", "source": "orders-app", "specversion": "1.0", "type": "order.created",
               "datacontenttype": "application/json; charset=utf-8", "time": "2024-01-02T03:04:05Z",
               "subject": "s", "data": {"a": 1}, "traceid": "abc"})
    }

    #[test]
    fn valid_event_passes() {
        assert_eq!(validate(&ok_event()), Ok(()));
        assert_eq!(
            validate(&json!({"id": "e", "source": "s", "specversion": "1.0", "type": "t"})),
            Ok(())
        );
    }

    #[test]
    fn each_rule_fails_alone() {
        let cases: Vec<(&str, Value)> = vec![
            ("id", json!(null)),
            ("id", json!("")),
            ("id", json!(5)),
            ("source", json!("")),
            ("specversion", json!("0.3")),
            ("type", json!([])),
            ("datacontenttype", json!("text/plain")),
            ("time", json!("2024-01-02 03:04")),
            ("time", json!("2024-02-30T00:00:00Z")),
            ("dataschema", json!("has space")),
            ("data_base64", json!("AAAA")),
            ("Bad_Ext", json!("x")),
            ("toolongextensionname1", json!("x")),
            ("nested", json!({"a": 1})),
        ];
        for (k, v) in cases {
            let mut e = ok_event();
            if v.is_null() {
                e.as_object_mut().unwrap().remove(k);
            } else {
                e[k] = v.clone();
            }
            let err = validate(&e).expect_err(&format!("{k}={v} must fail"));
            assert_eq!(err.code, "EG.00513000", "{k}");
        }
        assert!(validate(&json!("string")).is_err());
    }

    #[test]
    fn oversized_event_fails() {
        let mut e = ok_event();
        e["data"] = json!({"blob": "x".repeat(MAX_EVENT_BYTES)});
        assert!(validate(&e).is_err());
    }

    #[test]
    fn rfc3339() {
        for ok in [
            "2024-01-02T03:04:05Z",
            "2022-01-17T12:07:00.955Z",
            "2024-02-29T23:59:60+08:00",
            "2024-01-02t03:04:05z",
        ] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in [
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-02T03:04:05",
            "2024-01-02T03:04:05.Z",
            "2024-01-02T03:04:05+0800",
            "x",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }

    #[test]
    fn batch_envelope() {
        assert!(batch(b"not json").is_err());
        assert!(batch(b"[]").is_err());
        assert!(batch(b"{}").is_err());
        assert!(batch(br#"{"events": []}"#).is_err());
        assert!(batch(br#"{"events": {}}"#).is_err());
        let many = json!({"events": vec![ok_event(); 21]}).to_string();
        assert!(batch(many.as_bytes()).is_err());
        let twenty = json!({"events": vec![ok_event(); 20]}).to_string();
        assert_eq!(batch(twenty.as_bytes()).unwrap().len(), 20);
        let big = vec![b' '; MAX_REQUEST_BYTES + 1];
        assert!(batch(&big).is_err());
        assert_eq!(event_id(&json!({"id": 3})), "");
    }
}
