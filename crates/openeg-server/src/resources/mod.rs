//! One module per EG resource family; each declares its operations once in `ops()` (the
//! operation table of [`crate::openapi`]), from which both the router and the OpenAPI
//! document are built.
//!
//! Resource documents are stored in their wire shape (including `id`, `created_time`,
//! `updated_time`) with secrets sealed; handlers render them with [`render`], which masks
//! secrets and drops internal members.

pub mod agencies;
pub mod catalog;
pub mod channels;
pub mod connections;
pub mod endpoints;
pub mod event_router;
pub mod events;
pub mod obs;
pub mod quotas;
pub mod rules;
pub mod samples;
pub mod schemas;
pub mod sources;
pub mod streams;
pub mod subscriptions;
pub mod traces;
pub mod triggers;
pub mod versions;

use crate::error::ApiResult;
use crate::openapi::Op;
use crate::state::AppState;
use openeg_api::EgError;
use openeg_store::{Document, Kind};
use serde_json::Value;

/// The operations of every resource family, in EG's order of families.
pub fn ops() -> Vec<Op> {
    [
        subscriptions::ops(),
        channels::ops(),
        traces::ops(),
        events::ops(),
        sources::ops(),
        catalog::ops(),
        schemas::ops(),
        connections::ops(),
        agencies::ops(),
        quotas::ops(),
        versions::ops(),
        triggers::ops(),
        endpoints::ops(),
        obs::ops(),
        streams::ops(),
        samples::ops(),
        event_router::ops(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Loads a resource of the caller's project or answers 404 `EG.00514001`.
pub async fn get_or_404(
    st: &AppState,
    project_id: &str,
    kind: Kind,
    id: &str,
) -> ApiResult<Document> {
    match st.store.get(project_id, kind, id).await? {
        Some(r) => Ok(r),
        None => Err(EgError::not_found(format!("{} {id} does not exist", kind.as_str())).into()),
    }
}

/// Stores `doc` as the new document of `rec`, stamped `updated_time` = `now`; 404
/// `EG.00514001` ("<what> does not exist") if the resource was deleted meanwhile.
pub async fn save_update(
    st: &AppState,
    rec: &mut Document,
    mut doc: serde_json::Map<String, Value>,
    now: i64,
    what: &str,
) -> ApiResult<()> {
    doc.insert("updated_time".into(), crate::util::fmt_time(now).into());
    rec.body = Value::Object(doc);
    rec.updated_at = now;
    if !st.store.update(rec).await? {
        return Err(EgError::not_found(format!("{what} does not exist")).into());
    }
    Ok(())
}

/// The stored document with secrets masked and internal members (leading `_`) removed;
/// top-level members without a value are omitted rather than sent as `null`.
pub fn render(body: &Value) -> Value {
    let mut v = body.clone();
    if let Value::Object(m) = &mut v {
        m.retain(|k, v| !k.starts_with('_') && !v.is_null());
    }
    crate::secrets::mask(&mut v);
    v
}

/// Keeps only the listed members (response models narrower than the stored document).
pub fn pick(body: &Value, keys: &[&str]) -> Value {
    let mut out = serde_json::Map::new();
    for k in keys {
        if let Some(v) = body.get(*k) {
            if !v.is_null() {
                out.insert((*k).to_string(), v.clone());
            }
        }
    }
    let mut v = Value::Object(out);
    crate::secrets::mask(&mut v);
    v
}
