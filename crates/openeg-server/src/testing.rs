//! The resource modules' shared unit-test harness: every resource route of the crate on an
//! in-memory SQLite store, for project [`PROJECT`], without authentication.

use crate::state::{AppState, ServerConfig, Tenant};
use axum::body::Body;
use axum::http::Request;
use axum::{Extension, Router};
use base64::Engine;
use openeg_store::secrets::SecretBox;
use openeg_store::SqliteStore;
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;

/// The project every harness request is made for (`{p}` in [`call`]'s paths).
pub(crate) const PROJECT: &str = "p1";

/// Every resource route of the crate for project [`PROJECT`], without authentication.
pub(crate) async fn app(cfg: ServerConfig) -> (Router, AppState) {
    let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let st = AppState::new(store, SecretBox::from_key_base64(&key).unwrap(), cfg);
    crate::projects::ensure(&st, PROJECT).await.unwrap();
    let tenant = Tenant {
        project_id: PROJECT.into(),
        access_key: "ak".into(),
        foreign_project: None,
    };
    let ops = crate::resources::ops();
    let r = crate::openapi::routes(&ops, &[crate::openapi::Access::Tenant])
        .layer(Extension(tenant))
        .with_state(st.clone());
    (r, st)
}

/// One request (`{p}` in `path` stands for [`PROJECT`]): status and JSON body (`null` if none).
pub(crate) async fn call(
    r: &Router,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path.replace("{p}", PROJECT))
        .header("content-type", "application/json")
        .body(body.map(|b| Body::from(b.to_string())).unwrap_or_default())
        .unwrap();
    let resp = r.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, v)
}

/// The EG error code of an error body (`""` if none).
pub(crate) fn code(v: &Value) -> &str {
    v["error_code"].as_str().unwrap_or("")
}
