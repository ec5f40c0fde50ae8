//! Secrets in resource documents: encrypted before they reach the store,
//! rendered as `******`, and `******` on update means "unchanged".

use openeg_api::EgError;
use openeg_store::secrets::SecretBox;
use serde_json::Value;

pub const MASK: &str = "******";

/// Member names that always hold a secret.
const SECRET_KEYS: &[&str] = &["password", "secret_key", "ssl_certificate_pwd"];

fn is_secret(parent: Option<&str>, key: &str) -> bool {
    SECRET_KEYS.contains(&key) || (parent == Some("sink_obs") && key == "access_key")
}

/// Encrypts every secret member of `new` in place. A `******` value takes the stored value
/// at the same place in `old`; without one it is an error.
pub fn seal(new: &mut Value, old: Option<&Value>, sb: &SecretBox) -> Result<(), EgError> {
    seal_at(new, old, sb, None)
}

fn seal_one(
    v: &mut Value,
    old: Option<&Value>,
    sb: &SecretBox,
    field: &str,
) -> Result<(), EgError> {
    if let Value::String(s) = v {
        if s == MASK {
            match old {
                Some(Value::String(o)) if SecretBox::is_encrypted(o) => {
                    *v = Value::String(o.clone())
                }
                _ => {
                    return Err(EgError::param(format!(
                        "{field}: {MASK} only means unchanged on update"
                    )))
                }
            }
        } else if !s.is_empty() {
            *v = Value::String(sb.encrypt(s));
        }
    }
    Ok(())
}

fn seal_at(
    new: &mut Value,
    old: Option<&Value>,
    sb: &SecretBox,
    parent: Option<&str>,
) -> Result<(), EgError> {
    match new {
        Value::Object(map) => {
            // APIGW header parameters flagged secret.
            let secret_value = map.get("is_value_secret") == Some(&Value::Bool(true));
            for (k, v) in map.iter_mut() {
                let o = old.and_then(|o| o.get(k));
                if is_secret(parent, k) || (secret_value && k == "value") {
                    seal_one(v, o, sb, k)?;
                } else {
                    seal_at(v, o, sb, Some(k))?;
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                seal_at(v, old.and_then(|o| o.get(i)), sb, parent)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Replaces every encrypted string with `******` for rendering.
pub fn mask(v: &mut Value) {
    match v {
        Value::String(s) if SecretBox::is_encrypted(s) => *s = MASK.to_string(),
        Value::Object(m) => m.values_mut().for_each(mask),
        Value::Array(a) => a.iter_mut().for_each(mask),
        _ => {}
    }
}
