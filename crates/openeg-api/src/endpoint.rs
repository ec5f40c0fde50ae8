//! Access endpoints and the OBS-trigger refurbish body: pure request
//! validation. The server stores the result in the wire shape.

use crate::field::Fields;
use crate::validate::{self, NamePattern};
use crate::EgError;
use openeg_rules::{validate_transform, TransformUse};
use serde_json::Value;

/// Maximum length of `vpc_id` / `subnet_id` [dec: VPC ids are 36-character UUIDs; 64 leaves
/// room for other formats].
pub const MAX_NET_ID_LEN: usize = 64;
/// Maximum length of `description` (255, as for other resources).
pub const MAX_DESCRIPTION_LEN: usize = 255;

/// A validated CreateEndpoint body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointCreate {
    pub name: String,
    pub vpc_id: String,
    pub subnet_id: String,
    pub description: String,
}

fn net_id(o: &Fields, key: &str) -> Result<String, EgError> {
    let v = o.req_str_max(key, MAX_NET_ID_LEN)?;
    if v.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(EgError::param(format!(
            "{key} must not contain whitespace or control characters"
        )));
    }
    Ok(v.to_string())
}

fn description(o: &Fields) -> Result<Option<String>, EgError> {
    Ok(o.opt_str_max("description", MAX_DESCRIPTION_LEN)?
        .map(str::to_string))
}

/// Validates a CreateEndpoint body: `name` (mixed-case pattern), `vpc_id`, `subnet_id` (required),
/// `description` (optional, ≤ 255). Unknown members are ignored.
pub fn validate_create(v: &Value) -> Result<EndpointCreate, EgError> {
    let o = Fields::body(v)?;
    let name = o.req_str("name")?;
    validate::name("name", name, NamePattern::Mixed)?;
    let vpc_id = net_id(&o, "vpc_id")?;
    let subnet_id = net_id(&o, "subnet_id")?;
    let description = description(&o)?.unwrap_or_default();
    Ok(EndpointCreate {
        name: name.to_string(),
        vpc_id,
        subnet_id,
        description,
    })
}

/// Validates an UpdateEndpoint body (`description` only); `None` = leave it unchanged.
pub fn validate_update(v: &Value) -> Result<Option<String>, EgError> {
    description(&Fields::body(v)?)
}

/// Validates a Refurbishobs body: `agency_name`, `id` (required strings) and `transform`
/// (required, a valid payload transform → otherwise 400 `EG.00513000`). Returns the trigger id.
pub fn validate_refurbish(v: &Value) -> Result<String, EgError> {
    let o = Fields::body(v)?;
    o.req_str_max("agency_name", 64)?;
    let id = o.req_str_max("id", 128)?;
    let transform = match o.get("transform") {
        None => return Err(EgError::param("transform is required")),
        Some(t) if t.is_object() => t,
        Some(_) => return Err(EgError::param("transform must be a JSON object")),
    };
    validate_transform(transform, TransformUse::Payload)
        .map_err(|e| EgError::param(format!("transform: {e}")))?;
    Ok(id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn create_happy_path_and_defaults() {
        let e = validate_create(&json!({"name": "ep.1", "vpc_id": "v", "subnet_id": "s",
            "extra": 1}))
        .unwrap();
        assert_eq!(e.name, "ep.1");
        assert_eq!((e.vpc_id.as_str(), e.subnet_id.as_str()), ("v", "s"));
        assert_eq!(e.description, "");
        let e = validate_create(
            &json!({"name": "A", "vpc_id": "v", "subnet_id": "s", "description": "d"}),
        )
        .unwrap();
        assert_eq!(e.description, "d");
    }

    #[test]
    fn create_rejects_bad_bodies() {
        let bad = [
            json!([]),
            json!({"vpc_id": "v", "subnet_id": "s"}),
            json!({"name": "", "vpc_id": "v", "subnet_id": "s"}),
            json!({"name": "-x", "vpc_id": "v", "subnet_id": "s"}),
            json!({"name": "a b", "vpc_id": "v", "subnet_id": "s"}),
            json!({"name": "x".repeat(129), "vpc_id": "v", "subnet_id": "s"}),
            json!({"name": 5, "vpc_id": "v", "subnet_id": "s"}),
            json!({"name": "a", "subnet_id": "s"}),
            json!({"name": "a", "vpc_id": "", "subnet_id": "s"}),
            json!({"name": "a", "vpc_id": 1, "subnet_id": "s"}),
            json!({"name": "a", "vpc_id": "v"}),
            json!({"name": "a", "vpc_id": "v", "subnet_id": "s t"}),
            json!({"name": "a", "vpc_id": "v".repeat(65), "subnet_id": "s"}),
            json!({"name": "a", "vpc_id": "v", "subnet_id": "s", "description": 3}),
            json!({"name": "a", "vpc_id": "v", "subnet_id": "s", "description": "d".repeat(256)}),
        ];
        for b in bad {
            let e = validate_create(&b).unwrap_err();
            assert_eq!((e.status, e.code), (400, "EG.00513000"), "{b}");
        }
        assert!(
            validate_create(&json!({"name": "x".repeat(128), "vpc_id": "v".repeat(64),
            "subnet_id": "s", "description": "é".repeat(255)}))
            .is_ok()
        );
    }

    #[test]
    fn update_description_only() {
        assert_eq!(validate_update(&json!({})).unwrap(), None);
        assert_eq!(
            validate_update(&json!({"description": "x", "name": "ignored"})).unwrap(),
            Some("x".into())
        );
        assert_eq!(
            validate_update(&json!({"description": ""})).unwrap(),
            Some(String::new())
        );
        assert!(validate_update(&json!({"description": 1})).is_err());
        assert!(validate_update(&json!({"description": "d".repeat(256)})).is_err());
        assert!(validate_update(&json!("x")).is_err());
    }

    #[test]
    fn refurbish_body() {
        let ok = json!({"agency_name": "EG_AGENCY", "id": "trigger-1",
            "transform": {"type": "ORIGINAL"}});
        assert_eq!(validate_refurbish(&ok).unwrap(), "trigger-1");
        let bad = [
            json!({"id": "t", "transform": {"type": "ORIGINAL"}}),
            json!({"agency_name": "a", "transform": {"type": "ORIGINAL"}}),
            json!({"agency_name": "a", "id": "t"}),
            json!({"agency_name": "a", "id": "t", "transform": "ORIGINAL"}),
            json!({"agency_name": "a", "id": "t", "transform": {"type": "NOPE"}}),
            json!({"agency_name": "a", "id": "t", "transform": {}}),
            json!({"agency_name": "", "id": "t", "transform": {"type": "ORIGINAL"}}),
        ];
        for b in bad {
            let e = validate_refurbish(&b).unwrap_err();
            assert_eq!((e.status, e.code), (400, "EG.00513000"), "{b}");
        }
    }
}
