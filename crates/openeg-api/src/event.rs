//! CloudEvents 1.0 validation for PutEvents / PutOfficialEvents (`docs/limits.md`).
//!
//! Whole-request violations reject everything (400 `EG.00513000`); per-event violations fail
//! only that event and are reported in the response's `events` list.
//!
//! Events are checked on their JSON text, without building a tree: the top-level members are
//! read as borrowed slices of the request ([`check`]), attributes are decoded one by one, and
//! the text that is logged is the event's members re-joined with insignificant whitespace
//! removed. Publishing costs one pass over the bytes instead of a parse, a size pass and a
//! serialization; the `data` member travels as it was sent.

use crate::EgError;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

pub const MAX_EVENTS: usize = 20;
pub const MAX_REQUEST_BYTES: usize = 262_144;
pub const MAX_EVENT_BYTES: usize = 65_536;
/// Most characters (not bytes) of `id`, `source`, `type` and `subject`.
pub const MAX_ATTRIBUTE_CHARS: usize = 256;
/// Up to this many members, a repeated name is found by comparing with each earlier one
/// (cheaper than hashing for the handful of members an event has); beyond it, by a map, so
/// an event with tens of thousands of members costs linear time, not quadratic.
const LINEAR_MEMBER_SCAN: usize = 16;

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

/// A JSON string, borrowed from the input when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The members of a JSON object in order, values unparsed. A repeated name keeps its first
/// position and its last value, as parsing the object into a map would.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

/// Collects an object's members (see [`Members`]).
struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Members<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
        let mut out: Vec<(Cow<'de, str>, &'de RawValue)> = Vec::with_capacity(8);
        // Position of each name in `out`, built once `out` outgrows a linear scan.
        let mut index: Option<HashMap<Cow<'de, str>, usize>> = None;
        while let Some(Text(k)) = map.next_key::<Text<'de>>()? {
            let v: &'de RawValue = map.next_value()?;
            let seen = match &index {
                Some(ix) => ix.get(&k).copied(),
                None => out.iter().position(|(name, _)| *name == k),
            };
            match seen {
                Some(i) => out[i].1 = v,
                None => {
                    if let Some(ix) = index.as_mut() {
                        ix.insert(k.clone(), out.len());
                    }
                    out.push((k, v));
                    if index.is_none() && out.len() > LINEAR_MEMBER_SCAN {
                        index = Some(
                            out.iter()
                                .enumerate()
                                .map(|(i, (name, _))| (name.clone(), i))
                                .collect(),
                        );
                    }
                }
            }
        }
        Ok(Members(out))
    }
}

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(MembersVisitor)
    }
}

/// Any JSON value, kept as its members when it is an object (`None` otherwise): the
/// elements of an events array are read in the same pass as the array.
struct Element<'a>(Option<Members<'a>>);

/// Any JSON value, kept as its elements when it is an array (`None` otherwise).
struct Elements<'a>(Option<Vec<Element<'a>>>);

/// Implements `visit_*` for every non-container JSON value as `$none`.
macro_rules! scalars_are {
    ($v:ty, $none:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<$v, E> {
            Ok($none)
        }
        fn visit_i64<E>(self, _: i64) -> Result<$v, E> {
            Ok($none)
        }
        fn visit_u64<E>(self, _: u64) -> Result<$v, E> {
            Ok($none)
        }
        fn visit_f64<E>(self, _: f64) -> Result<$v, E> {
            Ok($none)
        }
        fn visit_str<E>(self, _: &str) -> Result<$v, E> {
            Ok($none)
        }
        fn visit_unit<E>(self) -> Result<$v, E> {
            Ok($none)
        }
    };
}

impl<'de> Deserialize<'de> for Element<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Element<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            scalars_are!(Element<'de>, Element(None));
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Element<'de>, A::Error> {
                MembersVisitor.visit_map(map).map(|m| Element(Some(m)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Element<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Element(None))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Elements<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Elements<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            scalars_are!(Elements<'de>, Elements(None));
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Elements<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Elements(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Elements<'de>, A::Error> {
                let mut out = Vec::new();
                while let Some(e) = seq.next_element::<Element<'de>>()? {
                    out.push(e);
                }
                Ok(Elements(Some(out)))
            }
        }
        d.deserialize_any(V)
    }
}

/// The PutEvents envelope: its `events` member (the last one, as in a map), if any.
struct Envelope<'a>(Option<Elements<'a>>);

impl<'de> Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Envelope<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
                let mut events = None;
                while let Some(Text(k)) = map.next_key::<Text<'de>>()? {
                    if k == "events" {
                        events = Some(map.next_value::<Elements<'de>>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Envelope(events))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> Members<'a> {
    /// Members of `text` (valid JSON); `None` when it is not an object.
    fn of(text: &'a str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }
}

/// Checks the request envelope `{"events": [...]}` and checks each event, in one pass over
/// the body.
pub fn batch(body: &[u8]) -> Result<Vec<Checked>, EgError> {
    if body.len() > MAX_REQUEST_BYTES {
        return Err(EgError::param(format!(
            "the request body must be at most {MAX_REQUEST_BYTES} bytes"
        )));
    }
    let envelope: Envelope = serde_json::from_slice(body).map_err(|_| {
        if serde_json::from_slice::<IgnoredAny>(body).is_err() {
            EgError::param("request body is not valid JSON")
        } else {
            EgError::param("request body must be a JSON object")
        }
    })?;
    match envelope.0 {
        None => Err(EgError::param("events is required")),
        Some(Elements(None)) => Err(EgError::param("events must be an array")),
        Some(Elements(Some(events))) => checked_all(events),
    }
}

/// Checks each event of a JSON array text (a CloudEvents batch).
pub fn array(text: &str, not_array: &str) -> Result<Vec<Checked>, EgError> {
    match serde_json::from_str::<Elements>(text) {
        Ok(Elements(Some(events))) => checked_all(events),
        _ => Err(EgError::param(not_array.to_string())),
    }
}

fn checked_all(events: Vec<Element>) -> Result<Vec<Checked>, EgError> {
    if events.is_empty() {
        return Err(EgError::param("events must not be empty"));
    }
    if events.len() > MAX_EVENTS {
        return Err(EgError::param(format!(
            "at most {MAX_EVENTS} events per request"
        )));
    }
    Ok(events.into_iter().map(|e| checked(e.0)).collect())
}

/// One event of a publish request after [`check`].
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// `id` when it is a string, else `""` (reported back per event).
    pub id: String,
    /// `source` when it is a string, else `""`.
    pub source: String,
    /// The text to log (the event without insignificant whitespace), or why the event is
    /// rejected.
    pub result: Result<Vec<u8>, EgError>,
}

/// Checks one CloudEvent given as JSON text (valid JSON: a slice of a parsed request).
pub fn check(text: &str) -> Checked {
    checked(Members::of(text))
}

fn checked(m: Option<Members>) -> Checked {
    let Some(m) = m else {
        return Checked {
            id: String::new(),
            source: String::new(),
            result: Err(EgError::param("an event must be a JSON object")),
        };
    };
    let string_of = |name: &str| -> String {
        m.get(name)
            .and_then(|v| serde_json::from_str::<Text>(v.get()).ok())
            .map(|t| t.0.into_owned())
            .unwrap_or_default()
    };
    Checked {
        id: string_of("id"),
        source: string_of("source"),
        result: check_members(&m),
    }
}

/// Validates one CloudEvent given as a JSON value (binary mode, HC.EG forwarding).
pub fn validate(ev: &Value) -> Result<(), EgError> {
    let text = serde_json::to_string(ev).map_err(|_| EgError::param("an event must be JSON"))?;
    check(&text).result.map(|_| ())
}

/// The text of `v` when it is a string; `None` when absent or null; an error otherwise.
fn attr<'a>(m: &Members<'a>, key: &str) -> Result<Option<Cow<'a, str>>, EgError> {
    match m.get(key) {
        None => Ok(None),
        Some(v) if v.get() == "null" => Ok(None),
        Some(v) => serde_json::from_str::<Text>(v.get())
            .map(|t| Some(t.0))
            .map_err(|_| EgError::param(format!("{key} must be a string"))),
    }
}

fn req_attr<'a>(m: &Members<'a>, key: &str) -> Result<Cow<'a, str>, EgError> {
    match attr(m, key)? {
        Some(s) if !s.is_empty() => Ok(s),
        Some(_) => Err(EgError::param(format!("{key} must not be empty"))),
        None => Err(EgError::param(format!("{key} is required"))),
    }
}

/// `id`, `source`, `type`, `subject`: at most [`MAX_ATTRIBUTE_CHARS`] characters and no
/// control character (Unicode category Cc: U+0000–U+001F, U+007F–U+009F), which would break
/// logs, headers and filters downstream.
fn bounded(key: &str, s: &str) -> Result<(), EgError> {
    if s.len() > MAX_ATTRIBUTE_CHARS && s.chars().count() > MAX_ATTRIBUTE_CHARS {
        return Err(EgError::param(format!(
            "{key} must be at most {MAX_ATTRIBUTE_CHARS} characters"
        )));
    }
    if s.chars().any(char::is_control) {
        return Err(EgError::param(format!(
            "{key} must not contain control characters"
        )));
    }
    Ok(())
}

/// Appends `json` (valid JSON text) without whitespace outside strings.
fn push_minified(out: &mut Vec<u8>, json: &str) {
    let b = json.as_bytes();
    let ws = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r');
    if !b.iter().copied().any(ws) {
        out.extend_from_slice(b);
        return;
    }
    let (mut in_str, mut esc, mut run) = (false, false, 0);
    for (i, &c) in b.iter().enumerate() {
        if in_str {
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
            }
        } else if c == b'"' {
            in_str = true;
        } else if ws(c) {
            out.extend_from_slice(&b[run..i]);
            run = i + 1;
        }
    }
    out.extend_from_slice(&b[run..]);
}

/// The event's members re-joined compactly: the logged text.
fn compact(m: &Members) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.0.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum());
    out.push(b'{');
    for (i, (k, v)) in m.0.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if serde_json::to_writer(&mut out, k.as_ref()).is_err() {
            out.extend_from_slice(b"\"\"");
        }
        out.push(b':');
        push_minified(&mut out, v.get());
    }
    out.push(b'}');
    out
}

fn check_members(m: &Members) -> Result<Vec<u8>, EgError> {
    let text = compact(m);
    if text.len() > MAX_EVENT_BYTES {
        return Err(EgError::param(format!(
            "an event must be at most {MAX_EVENT_BYTES} bytes"
        )));
    }
    bounded("id", &req_attr(m, "id")?)?;
    bounded("source", &req_attr(m, "source")?)?;
    if req_attr(m, "specversion")? != "1.0" {
        return Err(EgError::param("specversion must be 1.0"));
    }
    bounded("type", &req_attr(m, "type")?)?;
    if let Some(ct) = attr(m, "datacontenttype")? {
        if !is_json_media_type(&ct) {
            return Err(EgError::param("datacontenttype must be application/json"));
        }
    }
    if let Some(ds) = attr(m, "dataschema")? {
        if ds.is_empty() || ds.chars().any(char::is_whitespace) {
            return Err(EgError::param("dataschema must be a URI reference"));
        }
    }
    if let Some(subject) = attr(m, "subject")? {
        if subject.is_empty() {
            return Err(EgError::param("subject must not be empty"));
        }
        bounded("subject", &subject)?;
    }
    if let Some(t) = attr(m, "time")? {
        if !is_rfc3339(&t) {
            return Err(EgError::param("time must be an RFC 3339 timestamp"));
        }
    }
    if m.get("data_base64").is_some() {
        return Err(EgError::param(
            "data_base64 is not supported; send JSON data",
        ));
    }
    for (k, v) in &m.0 {
        if KNOWN.contains(&k.as_ref()) {
            continue;
        }
        if !valid_extension_name(k) {
            return Err(EgError::param(format!(
                "extension attribute {k} must match ^[a-z0-9]{{1,20}}$"
            )));
        }
        if matches!(v.get().as_bytes().first(), Some(b'{' | b'[')) {
            return Err(EgError::param(format!(
                "extension attribute {k} must be a string, number or boolean"
            )));
        }
    }
    Ok(text)
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
            ("subject", json!("")),
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
        assert!(batch(br#"{"events": null}"#).is_err());
        assert_eq!(
            batch(br#"{"x": 1, "events": [1, {"a": 2}]}"#)
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn ids_and_sources_are_reported_whatever_else_fails() {
        let c = check(r#"{"id": 3, "source": "s"}"#);
        assert_eq!((c.id.as_str(), c.source.as_str()), ("", "s"));
        assert!(c.result.is_err());
        let c = check(r#"{"id": "a\u0062c"}"#);
        assert_eq!(c.id, "abc");
        let c = check("[1]");
        assert_eq!(c.id, "");
        assert_eq!(
            c.result.unwrap_err(),
            EgError::param("an event must be a JSON object")
        );
    }

    #[test]
    fn logged_text_is_the_event_without_whitespace() {
        let text =
            "{ \"id\" : \"e 1\",\n\t\"source\":\"s\", \"specversion\": \"1.0\", \"type\": \"t\", \
                    \"data\": { \"msg\": \"two  spaces\\\" and \\\\\", \"n\": [1, 2.50, -3e2] } }";
        let out = check(text).result.unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out,
            r#"{"id":"e 1","source":"s","specversion":"1.0","type":"t","data":{"msg":"two  spaces\" and \\","n":[1,2.50,-3e2]}}"#
        );
        // The same JSON value as the request's event.
        let sent: Value = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), sent);
    }

    #[test]
    fn repeated_members_keep_the_last_value_like_a_parsed_object() {
        let text = r#"{"id":"a","source":"s","id":"b","specversion":"1.0","type":"t"}"#;
        let c = check(text);
        assert_eq!(c.id, "b");
        let out = c.result.unwrap();
        let parsed: Value = serde_json::from_str(text).unwrap();
        assert_eq!(out, serde_json::to_vec(&parsed).unwrap());
    }

    #[test]
    fn text_and_value_checks_agree() {
        // Every rule, checked on the text (PutEvents) and on a value (binary mode, HC.EG):
        // same outcome, same message.
        let mut cases = vec![
            ok_event(),
            json!({"id": "e", "source": "s", "specversion": "1.0", "type": "t"}),
        ];
        for (k, v) in [
            ("id", json!(null)),
            ("id", json!("")),
            ("type", json!(7)),
            ("subject", json!(1)),
            ("time", json!("2024-02-30T00:00:00Z")),
            ("datacontenttype", json!("application/json;charset=utf-8")),
            ("ext1", json!(null)),
            ("ext2", json!(true)),
            ("ext3", json!([1])),
            ("data_base64", json!(null)),
            ("id", json!("i".repeat(257))),
            ("source", json!("\u{e9}".repeat(257))),
            ("type", json!("t\u{0}")),
            ("subject", json!("line\nbreak")),
            ("subject", json!("\u{e9}".repeat(256))),
            ("subject", json!("")),
        ] {
            let mut e = ok_event();
            e[k] = v;
            cases.push(e);
        }
        for e in cases {
            let c = check(&e.to_string());
            assert_eq!(c.result.clone().map(|_| ()), validate(&e), "{e}");
            if let Ok(text) = c.result {
                assert_eq!(text, serde_json::to_vec(&e).unwrap(), "{e}");
            }
        }
    }

    #[test]
    fn attribute_bounds_count_characters_and_refuse_control_characters() {
        for key in ["id", "source", "type", "subject"] {
            let ok = vec![
                "a".to_string(),
                "x".repeat(MAX_ATTRIBUTE_CHARS),
                // 256 characters of 2, 3 and 4 bytes: the limit is in characters.
                "\u{e9}".repeat(MAX_ATTRIBUTE_CHARS),
                "\u{4e2d}".repeat(MAX_ATTRIBUTE_CHARS),
                "\u{1f600}".repeat(MAX_ATTRIBUTE_CHARS),
                // Not control characters (categories Zs and Cf).
                "no-break\u{a0}space, zero\u{200b}width".into(),
            ];
            for v in ok {
                let mut e = ok_event();
                e[key] = json!(v);
                assert_eq!(validate(&e), Ok(()), "{key} = {v:?}");
            }
            let mut too_long = ok_event();
            too_long[key] = json!("\u{e9}".repeat(MAX_ATTRIBUTE_CHARS + 1));
            let err = validate(&too_long).unwrap_err();
            assert_eq!(err.code, "EG.00513000");
            assert_eq!(
                err.msg,
                format!("Parameter error: {key} must be at most 256 characters")
            );
            for c in [
                '\u{0}', '\t', '\n', '\r', '\u{1f}', '\u{7f}', '\u{85}', '\u{9f}',
            ] {
                let mut e = ok_event();
                e[key] = json!(format!("a{c}b"));
                let err = validate(&e).expect_err(&format!("{key} with {c:?}"));
                assert_eq!(
                    err.msg,
                    format!("Parameter error: {key} must not contain control characters")
                );
                // The same character sent as a JSON escape is the same character.
                let text = e.to_string();
                assert!(check(&text).result.is_err());
            }
        }
    }

    #[test]
    fn duplicate_members_are_found_in_linear_time() {
        const N: usize = 50_000;
        let mut text = String::from(r#"{"id":"e","source":"s","specversion":"1.0","type":"t""#);
        for i in 0..N {
            text.push_str(&format!(r#","m{i}":{i}"#));
        }
        // Repeats of an early, a middle and the last member, and of a known attribute.
        text.push_str(r#","m0":"first","m25000":"middle","m49999":"last","id":"e2"}"#);
        let started = std::time::Instant::now();
        let m = Members::of(&text).unwrap();
        let elapsed = started.elapsed();
        assert_eq!(m.0.len(), N + 4, "a repeated name keeps one position");
        assert_eq!(m.get("m0").unwrap().get(), r#""first""#);
        assert_eq!(m.get("m25000").unwrap().get(), r#""middle""#);
        assert_eq!(m.get("m49999").unwrap().get(), r#""last""#);
        assert_eq!(m.get("id").unwrap().get(), r#""e2""#);
        assert_eq!(m.0[0].0, "id", "the first position is kept");
        // Quadratic comparison takes over a billion string compares here (many seconds even
        // optimized); linear is milliseconds. The bound leaves room for slow debug builds.
        assert!(
            elapsed < std::time::Duration::from_secs(2),
            "50k members took {elapsed:?}"
        );
        // Below the hashing threshold the scan finds repeats too.
        let c = check(r#"{"id":"a","source":"s","id":"b","specversion":"1.0","type":"t"}"#);
        assert_eq!(c.id, "b");
    }
}
