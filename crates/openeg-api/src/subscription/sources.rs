//! Subscription sources: `sources` (exactly one) and each SubscriptionSource with its filter.

use super::common::{client_id, provider_type, size_of, Env, MAX_DETAIL_BYTES};
use crate::field::{required_array, Fields};
use crate::EgError;
use openeg_rules::validate_filter;
use serde_json::{Map, Value};

/// Compact-JSON size limit of a filter rule.
pub const MAX_FILTER_BYTES: usize = 2048;

/// `sources`: exactly one SubscriptionSource.
pub fn validate_sources(
    v: Option<&Value>,
    env: &Env,
    old_provider_type: Option<&str>,
) -> Result<Vec<Value>, EgError> {
    let a = required_array(v, "sources")?;
    if a.len() != 1 {
        return Err(EgError::param(format!(
            "sources must hold exactly one source, not {}",
            a.len()
        )));
    }
    a.iter()
        .enumerate()
        .map(|(i, s)| validate_source(s, &format!("sources[{i}]"), env, old_provider_type))
        .collect()
}

/// One SubscriptionSource (table order: id, name, provider_type, detail, filter). `path`
/// prefixes field names in messages (`""` for a bare body). Returns the normalized document
/// (no timestamps).
pub fn validate_source(
    s: &Value,
    path: &str,
    env: &Env,
    old_provider_type: Option<&str>,
) -> Result<Value, EgError> {
    let o = Fields::object(s, path)?;
    let mut doc = Map::new();
    if let Some(id) = client_id(&o)? {
        doc.insert("id".into(), id.into());
    }
    let name = o.req_str("name")?;
    let pt = provider_type(&o)?;
    if let Some(old) = old_provider_type {
        if old != pt {
            return Err(EgError::param(format!(
                "{} cannot change (it is {old})",
                o.at("provider_type")
            )));
        }
    }
    if pt == "CUSTOM" {
        if !env.custom_sources.contains(name) {
            return Err(EgError::param(format!(
                "{}: {name} is not a custom event source of the project",
                o.at("name")
            )));
        }
    } else {
        if !name.starts_with("HC.") {
            return Err(EgError::param(format!(
                "{}: official event source names start with HC.",
                o.at("name")
            )));
        }
        if !env.channel.as_ref().is_some_and(|c| c.is_default) {
            return Err(EgError::channel(
                "official event sources can only be subscribed on the default channel",
            ));
        }
    }
    doc.insert("name".into(), name.into());
    doc.insert("provider_type".into(), pt.into());
    if let Some(d) = o.opt_obj("detail")? {
        let n = size_of(d);
        if n > MAX_DETAIL_BYTES {
            return Err(EgError::param(format!(
                "{} is {n} bytes compact, more than {MAX_DETAIL_BYTES}",
                o.at("detail")
            )));
        }
        doc.insert("detail".into(), Value::Object(d.clone()));
    }
    let fpath = o.at("filter");
    let filter = match o.get("filter") {
        None => return Err(EgError::filter(format!("{fpath} is required"))),
        Some(f) => f,
    };
    if !filter.is_object() {
        return Err(EgError::filter(format!("{fpath} must be a JSON object")));
    }
    let n = size_of(filter);
    if n > MAX_FILTER_BYTES {
        return Err(EgError::filter(format!(
            "{fpath} is {n} bytes compact, more than {MAX_FILTER_BYTES}"
        )));
    }
    validate_filter(filter, true).map_err(|e| EgError::filter(format!("{fpath}: {e}")))?;
    doc.insert("filter".into(), filter.clone());
    Ok(Value::Object(doc))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn source_rules() {
        let e = env();
        let ok = |s: Value| validate_source(&s, "sources[0]", &e, None);
        assert!(ok(source()).is_ok());
        let id = "a".repeat(32);
        assert_eq!(
            ok(with(source(), "/id", json!(id))).unwrap()["id"],
            json!(id)
        );
        assert_eq!(
            code(ok(with(
                source(),
                "/id",
                json!(format!("UPPER{}", "a".repeat(30)))
            ))),
            "EG.00513000"
        );
        assert_eq!(
            code(ok(with(source(), "/id", json!("a".repeat(31))))),
            "EG.00513000"
        );
        assert_eq!(
            code(ok(with(source(), "/id", json!("a".repeat(65))))),
            "EG.00513000"
        );
        assert_eq!(code(ok(without(source(), "/name"))), "EG.00513000");
        assert_eq!(
            code(ok(with(source(), "/name", json!("no-such-src")))),
            "EG.00513000"
        );
        assert_eq!(code(ok(without(source(), "/provider_type"))), "EG.00513000");
        assert_eq!(
            code(ok(with(source(), "/provider_type", json!("PARTNER")))),
            "EG.00513000"
        );
        assert!(ok(with(source(), "/detail", json!({"k": "v"}))).is_ok());
        assert_eq!(
            code(ok(with(source(), "/detail", json!("str")))),
            "EG.00513000"
        );
        assert_eq!(
            code(ok(with(
                source(),
                "/detail",
                json!({"x": "y".repeat(1100)})
            ))),
            "EG.00513000"
        );
        // detail exactly 1024 bytes compact is fine
        let base = size_of(&json!({"x": ""}));
        assert!(ok(with(
            source(),
            "/detail",
            json!({"x": "y".repeat(1024 - base)})
        ))
        .is_ok());
        assert_eq!(
            code(ok(with(
                source(),
                "/detail",
                json!({"x": "y".repeat(1025 - base)})
            ))),
            "EG.00513000"
        );
    }

    #[test]
    fn official_source_needs_default_channel_and_hc_prefix() {
        let official = json!({"name": "HC.OBS", "provider_type": "OFFICIAL",
                              "filter": {"source": [{"op": "StringIn", "values": ["HC.OBS"]}]}});
        assert!(validate_source(&official, "s", &default_env(), None).is_ok());
        assert_eq!(
            code(validate_source(&official, "s", &env(), None)),
            "EG.00513005"
        );
        let not_hc = with(official.clone(), "/name", json!("OBS"));
        assert_eq!(
            code(validate_source(&not_hc, "s", &default_env(), None)),
            "EG.00513000"
        );
    }

    #[test]
    fn source_provider_type_is_immutable() {
        let e = default_env();
        let official = json!({"name": "HC.OBS", "provider_type": "OFFICIAL",
                              "filter": {"source": [{"op": "StringIn", "values": ["HC.OBS"]}]}});
        assert_eq!(
            code(validate_source(&official, "", &e, Some("CUSTOM"))),
            "EG.00513000"
        );
        assert!(validate_source(&official, "", &e, Some("OFFICIAL")).is_ok());
        // the immutability error wins over the channel error
        assert_eq!(
            code(validate_source(&official, "", &env(), Some("CUSTOM"))),
            "EG.00513000"
        );
    }

    #[test]
    fn filter_rules() {
        let e = env();
        let f = |filter: Value| validate_source(&with(source(), "/filter", filter), "s", &e, None);
        assert_eq!(
            code(validate_source(
                &without(source(), "/filter"),
                "s",
                &e,
                None
            )),
            "EG.00513004"
        );
        assert_eq!(code(f(json!([1, 2]))), "EG.00513004");
        assert_eq!(
            code(f(json!({"type": [{"op": "StringIn", "values": ["a"]}]}))),
            "EG.00513004"
        );
        assert_eq!(
            code(f(
                json!({"source": [{"op": "StringIn", "values": ["a"]}], "id": []})
            )),
            "EG.00513004"
        );
        // the filter is kept exactly as submitted
        let rich = json!({"source": [{"op": "StringIn", "values": ["app-src"]}],
                          "data": {"amount": [{"op": "NumberGreaterThan", "value": 10}]}});
        assert_eq!(f(rich.clone()).unwrap()["filter"], rich);
    }

    #[test]
    fn filter_size_limit_is_compact_2048() {
        let e = env();
        let sized = |n: usize| {
            let mut f = json!({"source": [{"op": "StringIn", "values": ["app-src"]}],
                               "type": [{"op": "StringIn", "values": [""]}]});
            let base = size_of(&f);
            f["type"][0]["values"][0] = json!("x".repeat(n - base));
            assert_eq!(size_of(&f), n);
            f
        };
        assert!(validate_source(&with(source(), "/filter", sized(2048)), "s", &e, None).is_ok());
        assert_eq!(
            code(validate_source(
                &with(source(), "/filter", sized(2049)),
                "s",
                &e,
                None
            )),
            "EG.00513004"
        );
    }
}
