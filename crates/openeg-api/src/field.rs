//! Typed access to the members of a JSON object, with errors that name the member's full path.
//!
//! The one family of member helpers of every request body. A [`Fields`] is an object plus the
//! path it sits at (`""` for the request body, `targets[0].detail`,
//! `advance_config.kafka2kafka`); member `key` is reported as `<path>.<key>` (just `key` at the
//! root), e.g. `targets[0].detail.url is required`.
//!
//! Error shape: a member of the wrong type (or too long) is reported with the context's
//! `invalid` constructor, `400 EG.00513000` ([`EgError::param`]: `<path> must be a string`,
//! `… a boolean`, `… a JSON object`, …) unless [`Fields::invalid_as`] picks another one. A
//! required member that is missing (or an empty string) is reported with the context's `missing`
//! constructor, [`EgError::param`] unless [`Fields::missing_as`] picks another one (subscription
//! targets use [`EgError::target`]). Absent and `null` members are "not set" everywhere;
//! [`Fields::blank_is_absent`] makes `""` "not set" too, and [`Fields::cap`] bounds every string
//! of the context (router jobs). [`Fields::lenient_str`] reads stored documents without errors.

use crate::EgError;
use serde_json::{Map, Value};

/// Builds an [`EgError`] from a message detail (`EgError::param`, `EgError::target`, …).
pub type ErrFn = fn(String) -> EgError;

/// A JSON object at a member path, and how its members are reported. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    obj: &'a Map<String, Value>,
    path: String,
    on_missing: ErrFn,
    on_invalid: ErrFn,
    blank_is_absent: bool,
    cap: Option<usize>,
}

/// `<path>.<key>`, or `key` at the root.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A required array: absent or `null` → `<path> is required`; another type → `<path> must be an
/// array` (both `EG.00513000`).
pub fn required_array<'a>(v: Option<&'a Value>, path: &str) -> Result<&'a Vec<Value>, EgError> {
    match v {
        None | Some(Value::Null) => Err(EgError::param(format!("{path} is required"))),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(EgError::param(format!("{path} must be an array"))),
    }
}

impl<'a> Fields<'a> {
    /// The members of `obj`, which sits at `path` (`""` for the request body).
    pub fn new(obj: &'a Map<String, Value>, path: impl Into<String>) -> Self {
        Fields {
            obj,
            path: path.into(),
            on_missing: EgError::param,
            on_invalid: EgError::param,
            blank_is_absent: false,
            cap: None,
        }
    }

    /// The members of `obj` at the root (member names are reported bare).
    pub fn root(obj: &'a Map<String, Value>) -> Self {
        Fields::new(obj, "")
    }

    /// The request body, which must be a JSON object (`request body must be a JSON object`).
    pub fn body(v: &'a Value) -> Result<Self, EgError> {
        Fields::object(v, "")
    }

    /// `v`, which sits at `path` and must be a JSON object (`<path> must be a JSON object`;
    /// `request body …` when `path` is empty).
    pub fn object(v: &'a Value, path: impl Into<String>) -> Result<Self, EgError> {
        let path = path.into();
        match v.as_object() {
            Some(obj) => Ok(Fields::new(obj, path)),
            None => {
                let what = if path.is_empty() {
                    "request body"
                } else {
                    &path
                };
                Err(EgError::param(format!("{what} must be a JSON object")))
            }
        }
    }

    /// Reports missing or empty required members with `f` instead of [`EgError::param`].
    pub fn missing_as(mut self, f: ErrFn) -> Self {
        self.on_missing = f;
        self
    }

    /// Reports members of the wrong type (and strings that are too long) with `f` instead of
    /// [`EgError::param`].
    pub fn invalid_as(mut self, f: ErrFn) -> Self {
        self.on_invalid = f;
        self
    }

    /// Treats `""` like an absent member (the SDK's way of leaving members unset): optional
    /// members read as `None`, required ones as missing.
    pub fn blank_is_absent(mut self) -> Self {
        self.blank_is_absent = true;
        self
    }

    /// Refuses every string member longer than `max` characters (`<path> is too long`).
    pub fn cap(mut self, max: usize) -> Self {
        self.cap = Some(max);
        self
    }

    /// The object itself.
    pub fn map(&self) -> &'a Map<String, Value> {
        self.obj
    }

    /// The path of the object (`""` at the root).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The path of member `key`, as errors name it.
    pub fn at(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Member `key` if set: absent and `null` (and `""` with [`Self::blank_is_absent`]) are
    /// `None`.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() && self.blank_is_absent => None,
            Some(v) => Some(v),
        }
    }

    fn type_err(&self, key: &str, what: &str) -> EgError {
        (self.on_invalid)(format!("{} must be {what}", self.at(key)))
    }

    /// The context's error for a required member that is missing (`<path> is required`), for
    /// members checked by hand.
    pub fn missing(&self, key: &str) -> EgError {
        (self.on_missing)(format!("{} is required", self.at(key)))
    }

    fn empty(&self, key: &str) -> EgError {
        (self.on_missing)(format!("{} must not be empty", self.at(key)))
    }

    /// Optional string.
    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>, EgError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => {
                if let Some(max) = self.cap {
                    if s.chars().count() > max {
                        return Err((self.on_invalid)(format!("{} is too long", self.at(key))));
                    }
                }
                Ok(Some(s))
            }
            Some(_) => Err(self.type_err(key, "a string")),
        }
    }

    /// Required non-empty string: missing → `<path> is required`, `""` → `<path> must not be
    /// empty` (both with the `missing` constructor).
    pub fn req_str(&self, key: &str) -> Result<&'a str, EgError> {
        match self.opt_str(key)? {
            Some(s) if !s.is_empty() => Ok(s),
            Some(_) => Err(self.empty(key)),
            None => Err(self.missing(key)),
        }
    }

    /// Required string that may be empty, for stored documents whose emptiness validation
    /// already ruled on: missing → `<path> is required` (with the `missing` constructor); `""`
    /// is a value unless [`Self::blank_is_absent`].
    pub fn present_str(&self, key: &str) -> Result<&'a str, EgError> {
        self.opt_str(key)?.ok_or_else(|| self.missing(key))
    }

    /// Optional string of at most `max` characters (`<path> must be at most <max> characters
    /// long`).
    pub fn opt_str_max(&self, key: &str, max: usize) -> Result<Option<&'a str>, EgError> {
        match self.opt_str(key)? {
            Some(s) if s.chars().count() > max => {
                Err(self.type_err(key, &format!("at most {max} characters long")))
            }
            s => Ok(s),
        }
    }

    /// Required non-empty string of at most `max` characters; the length is checked before
    /// emptiness.
    pub fn req_str_max(&self, key: &str, max: usize) -> Result<&'a str, EgError> {
        match self.opt_str_max(key, max)? {
            Some(s) if !s.is_empty() => Ok(s),
            Some(_) => Err(self.empty(key)),
            None => Err(self.missing(key)),
        }
    }

    /// String member `key` read leniently, for stored documents: `""` when absent or not a
    /// string; never an error (the context's settings do not apply).
    pub fn lenient_str(&self, key: &str) -> &'a str {
        self.obj
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// Optional boolean.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, EgError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.type_err(key, "a boolean")),
        }
    }

    /// Required boolean.
    pub fn req_bool(&self, key: &str) -> Result<bool, EgError> {
        self.opt_bool(key)?.ok_or_else(|| self.missing(key))
    }

    /// A boolean that the reference types as a string: `true`, `false`, `"true"`, `"false"`
    /// (ASCII case-insensitive); anything else → `<path> must be true or false`.
    pub fn opt_flag(&self, key: &str) -> Result<Option<bool>, EgError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => flag_value(v)
                .map(Some)
                .ok_or_else(|| self.type_err(key, "true or false")),
        }
    }

    /// Optional integer within `min..=max`.
    pub fn opt_int(&self, key: &str, min: i64, max: i64) -> Result<Option<i64>, EgError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) if (min..=max).contains(&i) => Ok(Some(i)),
                _ => Err(self.type_err(key, &format!("an integer between {min} and {max}"))),
            },
            Some(_) => Err(self.type_err(key, "an integer")),
        }
    }

    /// Required integer within `min..=max`.
    pub fn req_int(&self, key: &str, min: i64, max: i64) -> Result<i64, EgError> {
        self.opt_int(key, min, max)?
            .ok_or_else(|| self.missing(key))
    }

    /// Optional non-negative integer given as a number or a string of at most 18 digits,
    /// returned as given (`<path> must be a non-negative integer`).
    pub fn opt_count(&self, key: &str) -> Result<Option<Value>, EgError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(Some(Value::String(s.clone())))
            }
            Some(Value::Number(n)) if n.as_u64().is_some() => Ok(Some(Value::Number(n.clone()))),
            Some(_) => Err(self.type_err(key, "a non-negative integer")),
        }
    }

    /// Optional object member.
    pub fn opt_obj(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, EgError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(self.type_err(key, "a JSON object")),
        }
    }

    /// Optional object member as a context at `<path>.<key>` with this context's settings.
    pub fn nested(&self, key: &str) -> Result<Option<Fields<'a>>, EgError> {
        Ok(self.opt_obj(key)?.map(|m| self.child(m, self.at(key))))
    }

    /// Optional array member.
    pub fn opt_array(&self, key: &str) -> Result<Option<&'a Vec<Value>>, EgError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(self.type_err(key, "an array")),
        }
    }

    /// Required array member (see [`required_array`]).
    pub fn req_array(&self, key: &str) -> Result<&'a Vec<Value>, EgError> {
        required_array(self.get(key), &self.at(key))
    }

    /// A member that may be wrapped in a one-element array (the reference's examples do so):
    /// absent, `null`, `""`, `[]` and `[null]` are `None`; a longer array → `<path> must be an
    /// object (or a one-element array)`.
    pub fn single(&self, key: &str) -> Result<Option<&'a Value>, EgError> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::Array(a)) if a.is_empty() => Ok(None),
            Some(Value::Array(a)) if a.len() == 1 => match &a[0] {
                Value::Null => Ok(None),
                v => Ok(Some(v)),
            },
            Some(Value::Array(_)) => Err(self.type_err(key, "an object (or a one-element array)")),
            Some(v) => Ok(Some(v)),
        }
    }

    /// [`Self::single`] that must be an object, as a context at `<path>.<key>` with this
    /// context's settings.
    pub fn single_obj(&self, key: &str) -> Result<Option<Fields<'a>>, EgError> {
        match self.single(key)? {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(self.child(m, self.at(key)))),
            Some(_) => Err(self.type_err(key, "a JSON object")),
        }
    }

    /// `obj` at `path` with this context's settings.
    pub fn child(&self, obj: &'a Map<String, Value>, path: impl Into<String>) -> Fields<'a> {
        Fields {
            obj,
            path: path.into(),
            ..self.clone()
        }
    }
}

/// Reads a stored or submitted boolean-or-string flag (see [`Fields::opt_flag`]).
pub fn flag_value(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(r: Result<impl std::fmt::Debug, EgError>) -> (u16, &'static str, String) {
        let e = r.unwrap_err();
        (e.status, e.code, e.msg)
    }

    fn param(m: &str) -> (u16, &'static str, String) {
        (400, "EG.00513000", format!("Parameter error: {m}"))
    }

    #[test]
    fn typed_members() {
        let v: Value = serde_json::json!({"s": "x", "n": 3, "b": true, "e": "", "z": null});
        let o = Fields::body(&v).unwrap();
        assert_eq!(o.req_str("s").unwrap(), "x");
        assert!(o.req_str("e").is_err());
        assert!(o.req_str("missing").is_err());
        assert!(o.req_str("n").is_err());
        assert_eq!(o.opt_str("z").unwrap(), None);
        assert_eq!(o.opt_int("n", 0, 5).unwrap(), Some(3));
        assert!(o.opt_int("n", 4, 5).is_err());
        assert_eq!(o.opt_bool("b").unwrap(), Some(true));
        assert!(o.opt_bool("s").is_err());
    }

    #[test]
    fn body_must_be_an_object() {
        assert_eq!(
            msg(Fields::body(&json!([1]))),
            param("request body must be a JSON object")
        );
        assert_eq!(
            msg(Fields::object(&json!("x"), "targets[0]")),
            param("targets[0] must be a JSON object")
        );
        let v = json!({"a": 1});
        let f = Fields::body(&v).unwrap();
        assert_eq!((f.path(), f.map().len()), ("", 1));
    }

    #[test]
    fn missing_required_members() {
        let v = json!({"e": "", "z": null});
        let f = Fields::body(&v).unwrap();
        assert_eq!(msg(f.req_str("name")), param("name is required"));
        assert_eq!(msg(f.req_str("z")), param("z is required"));
        assert_eq!(msg(f.req_str("e")), param("e must not be empty"));
        assert_eq!(msg(f.req_str_max("e", 3)), param("e must not be empty"));
        assert_eq!(msg(f.req_bool("b")), param("b is required"));
        assert_eq!(msg(f.req_int("n", 0, 5)), param("n is required"));
        assert_eq!(msg(f.req_array("a")), param("a is required"));
        assert_eq!(f.missing("x").msg, "Parameter error: x is required");
    }

    #[test]
    fn wrong_types() {
        let v = json!({"s": "x", "n": 3, "b": true, "o": {}, "a": [], "f": 1.5});
        let f = Fields::new(v.as_object().unwrap(), "p");
        assert_eq!(msg(f.opt_str("n")), param("p.n must be a string"));
        assert_eq!(msg(f.req_str("b")), param("p.b must be a string"));
        assert_eq!(msg(f.opt_bool("s")), param("p.s must be a boolean"));
        assert_eq!(msg(f.opt_obj("a")), param("p.a must be a JSON object"));
        assert_eq!(msg(f.nested("s")), param("p.s must be a JSON object"));
        assert_eq!(msg(f.opt_array("o")), param("p.o must be an array"));
        assert_eq!(msg(f.req_array("o")), param("p.o must be an array"));
        assert_eq!(msg(f.opt_int("s", 0, 5)), param("p.s must be an integer"));
        assert_eq!(
            msg(f.opt_int("f", 0, 5)),
            param("p.f must be an integer between 0 and 5")
        );
        assert_eq!(
            msg(f.opt_int("n", 4, 5)),
            param("p.n must be an integer between 4 and 5")
        );
        assert_eq!(msg(f.opt_flag("n")), param("p.n must be true or false"));
        assert_eq!(
            msg(f.opt_count("f")),
            param("p.f must be a non-negative integer")
        );
        assert_eq!(
            msg(f.opt_str_max("s", 0)),
            param("p.s must be at most 0 characters long")
        );
    }

    #[test]
    fn values_and_null_handling() {
        let v = json!({"s": "x", "n": 3, "b": false, "o": {"k": 1}, "a": [1], "z": null,
                       "e": "", "t": "TRUE", "d": "12"});
        let f = Fields::body(&v).unwrap();
        assert_eq!(f.req_str("s").unwrap(), "x");
        assert_eq!(f.opt_str("e").unwrap(), Some(""));
        assert_eq!(f.opt_int("n", 0, 5).unwrap(), Some(3));
        assert_eq!(f.req_int("n", 3, 3).unwrap(), 3);
        assert_eq!(f.opt_bool("b").unwrap(), Some(false));
        assert_eq!(f.opt_flag("t").unwrap(), Some(true));
        assert_eq!(f.opt_flag("b").unwrap(), Some(false));
        assert_eq!(f.opt_count("d").unwrap(), Some(json!("12")));
        assert_eq!(f.opt_count("n").unwrap(), Some(json!(3)));
        assert_eq!(f.opt_obj("o").unwrap().map(Map::len), Some(1));
        assert_eq!(f.opt_array("a").unwrap().map(Vec::len), Some(1));
        // `null` is "not set" for every getter.
        assert_eq!(f.get("z"), None);
        assert_eq!(f.opt_str("z").unwrap(), None);
        assert_eq!(f.opt_bool("z").unwrap(), None);
        assert_eq!(f.opt_flag("z").unwrap(), None);
        assert_eq!(f.opt_int("z", 0, 1).unwrap(), None);
        assert_eq!(f.opt_count("z").unwrap(), None);
        assert!(f.opt_obj("z").unwrap().is_none());
        assert!(f.nested("z").unwrap().is_none());
        assert!(f.opt_array("z").unwrap().is_none());
        assert!(f.single("z").unwrap().is_none());
        assert_eq!(msg(f.req_array("z")), param("z is required"));
    }

    #[test]
    fn nested_paths_name_the_full_member() {
        let v = json!({"targets": [{"detail": {"url": 5, "h": {"k": ""}}}]});
        let t = Fields::object(&v["targets"][0], "targets[0]").unwrap();
        let d = t.nested("detail").unwrap().unwrap();
        assert_eq!(d.path(), "targets[0].detail");
        assert_eq!(d.at("url"), "targets[0].detail.url");
        assert_eq!(
            msg(d.opt_str("url")),
            param("targets[0].detail.url must be a string")
        );
        assert_eq!(
            msg(d.req_str("missing")),
            param("targets[0].detail.missing is required")
        );
        let h = d.nested("h").unwrap().unwrap();
        assert_eq!(
            msg(h.req_str("k")),
            param("targets[0].detail.h.k must not be empty")
        );
        assert_eq!(join("", "k"), "k");
        assert_eq!(join("a[1]", "k"), "a[1].k");
    }

    #[test]
    fn missing_constructor_applies_to_missing_and_empty_only() {
        let v = json!({"url": "", "n": 1});
        let f =
            Fields::new(v.as_object().unwrap(), "targets[0].detail").missing_as(EgError::target);
        let e = f.req_str("url").unwrap_err();
        assert_eq!((e.status, e.code), (400, "EG.00513003"));
        assert_eq!(
            e.msg,
            "invalid target address: targets[0].detail.url must not be empty"
        );
        assert_eq!(f.req_str("urn").unwrap_err().code, "EG.00513003");
        assert_eq!(f.req_bool("b").unwrap_err().code, "EG.00513003");
        // A wrong type stays a parameter error.
        assert_eq!(f.req_str("n").unwrap_err().code, "EG.00513000");
        // Nested contexts inherit the constructor.
        let v = json!({"o": {}});
        let f = Fields::body(&v).unwrap().missing_as(EgError::target);
        let o = f.nested("o").unwrap().unwrap();
        assert_eq!(o.req_str("k").unwrap_err().code, "EG.00513003");
    }

    #[test]
    fn blank_is_absent_and_cap() {
        let v = json!({"e": "", "s": "abcd", "b": "", "n": ""});
        let f = Fields::new(v.as_object().unwrap(), "p")
            .blank_is_absent()
            .cap(3);
        assert_eq!(f.opt_str("e").unwrap(), None);
        assert_eq!(msg(f.req_str("e")), param("p.e is required"));
        assert_eq!(f.opt_bool("b").unwrap(), None);
        assert_eq!(msg(f.req_bool("b")), param("p.b is required"));
        assert_eq!(f.opt_count("n").unwrap(), None);
        assert_eq!(msg(f.opt_str("s")), param("p.s is too long"));
        // Settings are inherited by nested contexts.
        let v = json!({"o": [{"e": ""}]});
        let f = Fields::body(&v).unwrap().blank_is_absent();
        let o = f.single_obj("o").unwrap().unwrap();
        assert_eq!(o.path(), "o");
        assert_eq!(o.opt_str("e").unwrap(), None);
        // Without the setting `""` is a value.
        let v = json!({"b": ""});
        let f = Fields::body(&v).unwrap();
        assert_eq!(msg(f.opt_bool("b")), param("b must be a boolean"));
    }

    #[test]
    fn invalid_constructor_applies_to_wrong_types_and_lengths() {
        fn bare(detail: String) -> EgError {
            EgError::new(500, "X", detail)
        }
        let v = json!({"n": 1, "s": "abcd", "o": {"b": "x"}});
        let f = Fields::new(v.as_object().unwrap(), "p").invalid_as(bare);
        assert_eq!(
            msg(f.opt_str("n")),
            (500, "X", "p.n must be a string".into())
        );
        assert_eq!(
            msg(f.opt_str_max("s", 3)),
            (500, "X", "p.s must be at most 3 characters long".into())
        );
        assert_eq!(
            msg(f.clone().cap(2).opt_str("s")),
            (500, "X", "p.s is too long".into())
        );
        // Nested contexts inherit the constructor; missing members keep theirs.
        let o = f.nested("o").unwrap().unwrap();
        assert_eq!(
            msg(o.opt_bool("b")),
            (500, "X", "p.o.b must be a boolean".into())
        );
        assert_eq!(msg(o.req_str("k")), param("p.o.k is required"));
        let f = f.missing_as(bare);
        assert_eq!(msg(f.req_str("k")), (500, "X", "p.k is required".into()));
    }

    #[test]
    fn present_strings() {
        let v = json!({"s": "x", "e": "", "n": 5, "z": null});
        let f = Fields::new(v.as_object().unwrap(), "p");
        assert_eq!(f.present_str("s").unwrap(), "x");
        assert_eq!(f.present_str("e").unwrap(), "");
        assert_eq!(msg(f.present_str("z")), param("p.z is required"));
        assert_eq!(msg(f.present_str("absent")), param("p.absent is required"));
        assert_eq!(msg(f.present_str("n")), param("p.n must be a string"));
        let f = f.blank_is_absent();
        assert_eq!(msg(f.present_str("e")), param("p.e is required"));
    }

    #[test]
    fn lenient_strings() {
        let v = json!({"s": "x", "e": "", "n": 5, "z": null, "long": "abcd"});
        let f = Fields::body(&v).unwrap().blank_is_absent().cap(1);
        assert_eq!(f.lenient_str("s"), "x");
        assert_eq!(f.lenient_str("long"), "abcd");
        for k in ["e", "n", "z", "absent"] {
            assert_eq!(f.lenient_str(k), "", "{k}");
        }
    }

    #[test]
    fn single_element_arrays() {
        let v = json!({"o": {"a": 1}, "w": [{"a": 1}], "e": [], "n": [null], "s": "",
                       "two": [{}, {}], "x": 5, "wx": [5]});
        let f = Fields::new(v.as_object().unwrap(), "cfg");
        assert_eq!(f.single("o").unwrap(), Some(&json!({"a": 1})));
        assert_eq!(f.single("w").unwrap(), Some(&json!({"a": 1})));
        for k in ["e", "n", "s", "absent"] {
            assert_eq!(f.single(k).unwrap(), None, "{k}");
        }
        assert_eq!(
            msg(f.single("two")),
            param("cfg.two must be an object (or a one-element array)")
        );
        assert_eq!(f.single("x").unwrap(), Some(&json!(5)));
        assert_eq!(
            msg(f.single_obj("wx")),
            param("cfg.wx must be a JSON object")
        );
        let w = f.single_obj("w").unwrap().unwrap();
        assert_eq!(w.at("a"), "cfg.w.a");
    }
}
