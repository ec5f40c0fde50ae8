//! Event schemas (ops 29–38): request validation, JSON Schema checking of
//! schema definitions (against the draft meta-schemas bundled in the `jsonschema` crate), and
//! the inference behind DiscoverEventSchemaFromData.
//!
//! Pure: no I/O. Every error is 400 `EG.00513000` naming the field and the problem.

use crate::field::Fields;
use crate::validate::{self, NamePattern};
use crate::EgError;
use serde_json::{json, Map, Value};

/// Schema formats: JSON Schema draft-06 (the default) and OpenAPI 3.0 Schema Objects (the
/// format of every example in the EG reference).
pub const FORMAT_DRAFT_6: &str = "JSON_SCHEMA_DRAFT_6";
pub const FORMAT_OPENAPI_3_0: &str = "OPENAPI_3_0";
pub const FORMATS: [&str; 2] = [FORMAT_DRAFT_6, FORMAT_OPENAPI_3_0];
/// `$schema` of inferred documents.
pub const DRAFT_6_URI: &str = "http://json-schema.org/draft-06/schema#";
/// DiscoverEventSchemaFromData: the sample event is at most this many characters.
pub const MAX_EVENT_CHARS: usize = 1024;
/// Fixed ceilings (`docs/limits.md`).
pub const MAX_SCHEMAS: u64 = 1000;
pub const MAX_VERSIONS: u64 = 1000;

/// `$schema` values the bundled meta-schemas cover (with and without the trailing `#`).
const KNOWN_DRAFTS: &[&str] = &[
    "http://json-schema.org/draft-04/schema",
    "http://json-schema.org/draft-06/schema",
    "http://json-schema.org/draft-07/schema",
    "https://json-schema.org/draft/2019-09/schema",
    "https://json-schema.org/draft/2020-12/schema",
];

/// A validated CreateEventSchema body.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateSchema {
    pub name: String,
    pub description: String,
    pub compatibility: String,
    pub format: String,
    pub definition: String,
}

/// A validated UpdateEventSchema body (absent members stay unchanged).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UpdateSchema {
    pub description: Option<String>,
    pub compatibility: Option<String>,
}

fn description(src: &Fields) -> Result<Option<String>, EgError> {
    Ok(src.opt_str_max("description", 255)?.map(str::to_string))
}

fn compatibility(c: &str) -> Result<(), EgError> {
    let n = c.chars().count();
    if !(1..=32).contains(&n) {
        return Err(EgError::param(
            "compatibility must be 1 to 32 characters long",
        ));
    }
    Ok(())
}

fn format(src: &Fields) -> Result<&'static str, EgError> {
    match src.opt_str("format")? {
        None | Some("") => Ok(FORMAT_DRAFT_6),
        Some(f) => FORMATS
            .into_iter()
            .find(|k| *k == f)
            .ok_or_else(|| EgError::param(format!("format must be one of {}", FORMATS.join(", ")))),
    }
}

/// CreateEventSchema body: name (mixed-case pattern), description (≤ 255), compatibility
/// (required, 1–32), format (default `JSON_SCHEMA_DRAFT_6`), definition (required, a valid
/// schema of that format).
pub fn create(v: &Value) -> Result<CreateSchema, EgError> {
    let src = Fields::body(v)?;
    let name = src.req_str("name")?;
    validate::name("name", name, NamePattern::Mixed)?;
    let description = description(&src)?.unwrap_or_default();
    let compat = src.req_str("compatibility")?;
    compatibility(compat)?;
    let format = format(&src)?;
    let definition = src.req_str("definition")?;
    check_definition(definition, format)?;
    Ok(CreateSchema {
        name: name.to_string(),
        description,
        compatibility: compat.to_string(),
        format: format.to_string(),
        definition: definition.to_string(),
    })
}

/// UpdateEventSchema body: description, compatibility. `name` is not updatable: a different
/// name is rejected by the caller, which knows the current one.
pub fn update(v: &Value) -> Result<UpdateSchema, EgError> {
    let src = Fields::body(v)?;
    let description = description(&src)?;
    let compat = match src.opt_str("compatibility")? {
        Some(c) => {
            compatibility(c)?;
            Some(c.to_string())
        }
        None => None,
    };
    Ok(UpdateSchema {
        description,
        compatibility: compat,
    })
}

/// CreateEventSchemaVersion body: `{definition}` (required, a valid schema of the schema's
/// `format`).
pub fn create_version(v: &Value, format: &str) -> Result<String, EgError> {
    let src = Fields::body(v)?;
    let definition = src.req_str("definition")?;
    check_definition(definition, format)?;
    Ok(definition.to_string())
}

/// A version path parameter: a positive integer.
pub fn version_param(s: &str) -> Result<i64, EgError> {
    match s.trim().parse::<i64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(EgError::param("version must be a positive integer")),
    }
}

/// A schema definition must parse as JSON and be a valid JSON Schema: an object or boolean
/// that validates against the meta-schema of its `$schema` draft. Without `$schema` the
/// `format` decides: draft-06 for `JSON_SCHEMA_DRAFT_6`; draft-04 for `OPENAPI_3_0`, whose
/// Schema Object extends JSON Schema Wright draft 00, the draft described by the draft-04
/// meta-schema (OpenAPI keywords such as `nullable` are unknown to it and allowed).
/// Returns the parsed document.
pub fn check_definition(text: &str, format: &str) -> Result<Value, EgError> {
    if text.trim().is_empty() {
        return Err(EgError::param("definition must not be empty"));
    }
    let v: Value = serde_json::from_str(text).map_err(|e| {
        EgError::param(format!(
            "definition is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    if !v.is_object() && !v.is_boolean() {
        return Err(EgError::param(
            "definition is not a valid JSON Schema: it must be a JSON object or boolean",
        ));
    }
    if let Some(s) = v.get("$schema") {
        let known = s
            .as_str()
            .is_some_and(|s| KNOWN_DRAFTS.contains(&s.trim_end_matches('#')));
        if !known {
            return Err(EgError::param(
                "definition is not a valid JSON Schema: unsupported $schema (draft-04, draft-06, draft-07, 2019-09 or 2020-12)",
            ));
        }
    }
    // The crate documents a panic when the meta-schema cannot be detected; `$schema` is checked
    // above, and the unwind guard keeps any other surprise a 400 instead of a dropped request.
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let checked = if v.get("$schema").is_some() {
            jsonschema::meta::validate(&v)
        } else if format == FORMAT_OPENAPI_3_0 {
            jsonschema::draft4::meta::validate(&v)
        } else {
            jsonschema::draft6::meta::validate(&v)
        };
        checked.map_err(|e| {
            let at = e.instance_path().to_string();
            let at = if at.is_empty() { "/".to_string() } else { at };
            format!("at {at}: {e}")
        })
    }));
    match res {
        Ok(Ok(())) => Ok(v),
        Ok(Err(detail)) => Err(EgError::param(format!(
            "definition is not a valid JSON Schema ({detail})"
        ))),
        Err(_) => Err(EgError::param("definition is not a valid JSON Schema")),
    }
}

/// What DiscoverEventSchemaFromData found.
#[derive(Debug, Clone, PartialEq)]
pub struct Discovered {
    /// The requested format.
    pub format: &'static str,
    /// The inferred schema text; `None` when the body holds no sample event (the reference's
    /// example sends `{}`): nothing to infer from.
    pub definition: Option<String>,
}

/// DiscoverEventSchemaFromData body `{event, format}`, both optional.
pub fn discover(v: &Value) -> Result<Discovered, EgError> {
    let src = Fields::body(v)?;
    let format = format(&src)?;
    let event = match src.opt_str("event")? {
        None | Some("") => {
            return Ok(Discovered {
                format,
                definition: None,
            })
        }
        Some(e) => e,
    };
    if event.chars().count() > MAX_EVENT_CHARS {
        return Err(EgError::param(format!(
            "event must be at most {MAX_EVENT_CHARS} characters long"
        )));
    }
    let data: Value = serde_json::from_str(event).map_err(|e| {
        EgError::param(format!(
            "event is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let doc = if format == FORMAT_OPENAPI_3_0 {
        to_openapi(&infer(&data))
    } else {
        infer_document(&data)
    };
    Ok(Discovered {
        format,
        definition: Some(doc.to_string()),
    })
}

/// Rewrites an inferred schema as an OpenAPI 3.0 Schema Object, which has one `type` per
/// schema and no `null` type: `null` becomes `nullable: true`, several types an `anyOf` of
/// single-type schemas (the object and array members stay beside it and constrain only
/// values of their type).
pub fn to_openapi(schema: &Value) -> Value {
    let Value::Object(m) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (k, v) in m {
        match (k.as_str(), v) {
            ("type", _) => {}
            ("properties", Value::Object(props)) => {
                let p = props
                    .iter()
                    .map(|(n, s)| (n.clone(), to_openapi(s)))
                    .collect();
                out.insert(k.clone(), Value::Object(p));
            }
            ("items", s) => {
                out.insert(k.clone(), to_openapi(s));
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    let mut types = types_of(schema);
    if types.iter().any(|t| t == "null") {
        types.retain(|t| t != "null");
        out.insert("nullable".into(), true.into());
    }
    match types.as_slice() {
        [] => {}
        [one] => {
            out.insert("type".into(), one.clone().into());
        }
        many => {
            let any: Vec<Value> = many.iter().map(|t| json!({ "type": t })).collect();
            out.insert("anyOf".into(), Value::Array(any));
        }
    }
    Value::Object(out)
}

/// The draft-06 document inferred from a sample: [`infer`] plus `$schema`.
pub fn infer_document(data: &Value) -> Value {
    let mut out = Map::new();
    out.insert("$schema".into(), DRAFT_6_URI.into());
    if let Value::Object(m) = infer(data) {
        out.extend(m);
    }
    Value::Object(out)
}

/// Infers a schema: `type` (integer for integral numbers, number otherwise, null), objects
/// with `properties` and `required` (every key present), arrays with `items` (the merge of
/// the element schemas; `{}` for an empty array).
pub fn infer(v: &Value) -> Value {
    match v {
        Value::Null => json!({"type": "null"}),
        Value::Bool(_) => json!({"type": "boolean"}),
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({"type": "integer"}),
        Value::Number(_) => json!({"type": "number"}),
        Value::String(_) => json!({"type": "string"}),
        Value::Array(a) => {
            let items = a
                .iter()
                .map(infer)
                .reduce(|x, y| merge(&x, &y))
                .unwrap_or_else(|| json!({}));
            json!({"type": "array", "items": items})
        }
        Value::Object(m) => {
            let props: Map<String, Value> = m.iter().map(|(k, v)| (k.clone(), infer(v))).collect();
            let required: Vec<Value> = m.keys().map(|k| Value::String(k.clone())).collect();
            json!({"type": "object", "properties": props, "required": required})
        }
    }
}

fn types_of(s: &Value) -> Vec<String> {
    match s.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// Merges two inferred schemas: the union of types (integer joins number), object
/// properties merged (required = keys required in both object samples), items merged.
/// `{}` (any) absorbs everything.
pub fn merge(a: &Value, b: &Value) -> Value {
    let (ta, tb) = (types_of(a), types_of(b));
    if ta.is_empty() || tb.is_empty() {
        // `{}` from an empty array: the other sample is more specific.
        return if ta.is_empty() { b.clone() } else { a.clone() };
    }
    let mut types: Vec<String> = Vec::new();
    for t in ta.iter().chain(tb.iter()) {
        if !types.contains(t) {
            types.push(t.clone());
        }
    }
    if types.iter().any(|t| t == "number") {
        types.retain(|t| t != "integer");
    }
    let mut out = Map::new();
    out.insert(
        "type".into(),
        if types.len() == 1 {
            Value::String(types.remove(0))
        } else {
            Value::Array(types.into_iter().map(Value::String).collect())
        },
    );
    // Objects.
    let (pa, pb) = (a.get("properties"), b.get("properties"));
    if pa.is_some() || pb.is_some() {
        let mut props = Map::new();
        let empty = Map::new();
        let ma = pa.and_then(Value::as_object).unwrap_or(&empty);
        let mb = pb.and_then(Value::as_object).unwrap_or(&empty);
        for (k, v) in ma {
            let merged = match mb.get(k) {
                Some(w) => merge(v, w),
                None => v.clone(),
            };
            props.insert(k.clone(), merged);
        }
        for (k, v) in mb {
            if !ma.contains_key(k) {
                props.insert(k.clone(), v.clone());
            }
        }
        let req = |s: &Value| -> Option<Vec<String>> {
            s.get("required").and_then(Value::as_array).map(|r| {
                r.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
        };
        let required: Vec<Value> = match (req(a), req(b)) {
            (Some(x), Some(y)) => x
                .into_iter()
                .filter(|k| y.contains(k))
                .map(Value::String)
                .collect(),
            (Some(x), None) | (None, Some(x)) => x.into_iter().map(Value::String).collect(),
            (None, None) => Vec::new(),
        };
        out.insert("properties".into(), Value::Object(props));
        out.insert("required".into(), Value::Array(required));
    }
    // Arrays.
    match (a.get("items"), b.get("items")) {
        (Some(x), Some(y)) => {
            out.insert("items".into(), merge(x, y));
        }
        (Some(x), None) | (None, Some(x)) => {
            out.insert("items".into(), x.clone());
        }
        (None, None) => {}
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_msg(e: EgError) -> String {
        format!("{e:?}")
    }

    #[test]
    fn valid_definitions() {
        for d in [
            r#"{}"#,
            r#"true"#,
            r#"{"type":"object","properties":{"a":{"type":"string"}},"required":["a"]}"#,
            r#"{"$schema":"http://json-schema.org/draft-06/schema#","type":["string","null"]}"#,
            r#"{"$schema":"http://json-schema.org/draft-07/schema#","if":{"type":"string"}}"#,
            r#"{"$schema":"http://json-schema.org/draft-04/schema#","type":"integer"}"#,
        ] {
            for f in FORMATS {
                // OpenAPI 3.0 Schema Objects are objects: no boolean schemas.
                if d == "true" && f == FORMAT_OPENAPI_3_0 {
                    assert!(check_definition(d, f).is_err());
                    continue;
                }
                check_definition(d, f).unwrap_or_else(|e| panic!("{d} {f}: {e:?}"));
            }
        }
    }

    #[test]
    fn formats_pick_the_default_meta_schema() {
        // Draft-04 (the OpenAPI 3.0 base) has boolean exclusiveMinimum; draft-06 a number.
        let d4 = r#"{"type":"number","minimum":1,"exclusiveMinimum":true,"nullable":true}"#;
        let d6 = r#"{"type":"number","exclusiveMinimum":1}"#;
        check_definition(d4, FORMAT_OPENAPI_3_0).unwrap();
        assert!(check_definition(d4, FORMAT_DRAFT_6).is_err());
        check_definition(d6, FORMAT_DRAFT_6).unwrap();
        assert!(check_definition(d6, FORMAT_OPENAPI_3_0).is_err());
        // A declared $schema wins over the format.
        let declared =
            r#"{"$schema":"http://json-schema.org/draft-06/schema#","exclusiveMinimum":1}"#;
        check_definition(declared, FORMAT_OPENAPI_3_0).unwrap();
    }

    #[test]
    fn invalid_definitions() {
        for (d, needle) in [
            ("", "empty"),
            ("not json", "not valid JSON"),
            (r#"{"type": 5}"#, "not a valid JSON Schema"),
            (r#"{"type": "wat"}"#, "not a valid JSON Schema"),
            (r#"{"required": "a"}"#, "not a valid JSON Schema"),
            (r#"{"properties": {"a": 1}}"#, "not a valid JSON Schema"),
            (r#"[1,2]"#, "object or boolean"),
            (r#"5"#, "object or boolean"),
            (
                r#"{"$schema":"http://example.com/x"}"#,
                "unsupported $schema",
            ),
            (r#"{"$schema":5}"#, "unsupported $schema"),
        ] {
            let e = check_definition(d, FORMAT_DRAFT_6).expect_err(d);
            assert_eq!(e.code, "EG.00513000");
            assert!(code_msg(e.clone()).contains(needle), "{d}: {e:?}");
        }
    }

    #[test]
    fn create_body() {
        let c = create(&json!({"name":"s1","compatibility":"NONE","definition":"{}"})).unwrap();
        assert_eq!(c.format, FORMAT_DRAFT_6);
        assert_eq!(c.description, "");
        let c = create(
            &json!({"name":"s1","compatibility":"NONE","definition":"{}",
                               "format":"OPENAPI_3_0"}),
        )
        .unwrap();
        assert_eq!(c.format, FORMAT_OPENAPI_3_0);
        for bad in [
            json!({"compatibility":"NONE","definition":"{}"}),
            json!({"name":"-x","compatibility":"NONE","definition":"{}"}),
            json!({"name":"s","definition":"{}"}),
            json!({"name":"s","compatibility":"","definition":"{}"}),
            json!({"name":"s","compatibility":"x".repeat(33),"definition":"{}"}),
            json!({"name":"s","compatibility":"NONE"}),
            json!({"name":"s","compatibility":"NONE","definition":{}}),
            json!({"name":"s","compatibility":"NONE","definition":"{}","format":"XML"}),
            json!({"name":"s","compatibility":"NONE","definition":"{}","description":"d".repeat(256)}),
            json!([]),
        ] {
            assert_eq!(
                create(&bad).expect_err(&bad.to_string()).code,
                "EG.00513000"
            );
        }
        let u = update(&json!({"description":"x"})).unwrap();
        assert_eq!(u.description.as_deref(), Some("x"));
        assert!(u.compatibility.is_none());
        assert!(update(&json!({"compatibility":""})).is_err());
        for f in FORMATS {
            assert_eq!(
                create_version(&json!({"definition":"{}"}), f).unwrap(),
                "{}"
            );
            assert!(create_version(&json!({"definition":"{\"type\":5}"}), f).is_err());
            assert!(create_version(&json!({}), f).is_err());
        }
    }

    #[test]
    fn version_params() {
        assert_eq!(version_param("3").unwrap(), 3);
        for bad in ["x", "0", "-1", "1.5", ""] {
            assert!(version_param(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn infers_scalars_objects_arrays() {
        let s = infer_document(&json!({
            "a": 1, "b": 1.5, "c": "x", "d": true, "e": null,
            "o": {"x": [1, 2]},
            "arr": [{"k": 1, "m": "z"}, {"k": 2.5}],
            "mixed": [1, "s"],
            "empty": []
        }));
        assert_eq!(s["$schema"], DRAFT_6_URI);
        assert_eq!(s["type"], "object");
        let p = &s["properties"];
        assert_eq!(p["a"]["type"], "integer");
        assert_eq!(p["b"]["type"], "number");
        assert_eq!(p["c"]["type"], "string");
        assert_eq!(p["d"]["type"], "boolean");
        assert_eq!(p["e"]["type"], "null");
        assert_eq!(p["o"]["properties"]["x"]["items"]["type"], "integer");
        assert_eq!(p["o"]["required"], json!(["x"]));
        assert_eq!(p["arr"]["items"]["type"], "object");
        assert_eq!(p["arr"]["items"]["properties"]["k"]["type"], "number");
        assert_eq!(p["arr"]["items"]["properties"]["m"]["type"], "string");
        assert_eq!(p["arr"]["items"]["required"], json!(["k"]));
        assert_eq!(p["mixed"]["items"]["type"], json!(["integer", "string"]));
        assert_eq!(p["empty"]["items"], json!({}));
        assert_eq!(
            s["required"],
            json!(["a", "b", "c", "d", "e", "o", "arr", "mixed", "empty"])
        );
        // The inferred document is itself a valid schema the sample satisfies.
        check_definition(&s.to_string(), FORMAT_DRAFT_6).unwrap();
        assert!(jsonschema::is_valid(
            &s,
            &json!({"a": 1, "b": 1.5, "c": "x", "d": true, "e": null, "o": {"x": []}, "arr": [], "mixed": [], "empty": []})
        ));
        assert_eq!(infer_document(&json!(3))["type"], "integer");
        assert_eq!(infer_document(&json!([]))["items"], json!({}));
    }

    #[test]
    fn discover_openapi() {
        let event =
            r#"{"a": 1, "n": null, "m": [1, "s"], "o": {"x": null}, "u": [null, {"k": 1}]}"#;
        let d = discover(&json!({"event": event, "format": "OPENAPI_3_0"})).unwrap();
        assert_eq!(d.format, FORMAT_OPENAPI_3_0);
        let text = d.definition.unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(v.get("$schema").is_none());
        assert_eq!(v["type"], "object");
        let p = &v["properties"];
        assert_eq!(p["a"], json!({"type": "integer"}));
        assert_eq!(p["n"], json!({"nullable": true}));
        assert_eq!(
            p["m"]["items"]["anyOf"],
            json!([{"type": "integer"}, {"type": "string"}])
        );
        assert_eq!(p["o"]["properties"]["x"], json!({"nullable": true}));
        let u = &p["u"]["items"];
        assert_eq!(
            (u["type"].clone(), u["nullable"].clone()),
            (json!("object"), json!(true))
        );
        assert_eq!(u["properties"]["k"]["type"], "integer");
        // What discovery returns is accepted as a definition of that format.
        check_definition(&text, FORMAT_OPENAPI_3_0).unwrap();
    }

    #[test]
    fn merge_null_with_object() {
        let m = merge(&infer(&json!(null)), &infer(&json!({"a": 1})));
        assert_eq!(m["type"], json!(["null", "object"]));
        assert_eq!(m["required"], json!(["a"]));
    }

    #[test]
    fn discover_body() {
        let d = discover(&json!({"event": "{\"id\":\"x\"}"})).unwrap();
        assert_eq!(d.format, FORMAT_DRAFT_6);
        let v: Value = serde_json::from_str(d.definition.as_deref().unwrap()).unwrap();
        assert_eq!(v["properties"]["id"]["type"], "string");
        // No sample, nothing to discover.
        for empty in [
            json!({}),
            json!({"event": null}),
            json!({"format": "OPENAPI_3_0"}),
        ] {
            assert_eq!(discover(&empty).unwrap().definition, None, "{empty}");
        }
        for bad in [
            json!({"event": "{nope"}),
            json!({"event": {"id": 1}}),
            json!({"event": "{}", "format": "OTHER"}),
            json!({"event": format!("\"{}\"", "x".repeat(1100))}),
        ] {
            assert_eq!(
                discover(&bad).expect_err(&bad.to_string()).code,
                "EG.00513000"
            );
        }
    }
}
