//! OBS buckets (ops 54–55, `API.md` §3.13).
//!
//! ListObsBuckets lists the buckets of a configured S3-compatible object store; OpenEG has none
//! configured yet, so it answers the SDK's `ListObsBucketsResponse` shape with no items
//! (`{"total":0,"size":0,"items":[]}`) after validating the paging parameters [dec].
//!
//! Refurbishobs converts a FunctionGraph OBS trigger into a subscription. OpenEG keeps no
//! FunctionGraph triggers, so after validating the body it answers 404 `EG.00514001` for any
//! trigger id; the bucket name is not looked up [dec].
//!
//! Both routes are literal below `/v1/{p}/subscriptions/`, so they win over the captured
//! `/v1/{p}/subscriptions/{subscription_id}` routes (axum/matchit prefers static segments).

use crate::error::ApiResult;
use crate::state::AppState;
use crate::util::{json_body, list_reply, Query};
use axum::body::Bytes;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use openeg_api::endpoint::validate_refurbish;
use openeg_api::EgError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/{project_id}/subscriptions/obsbuckets", get(list))
        .route(
            "/v1/{project_id}/subscriptions/obsbuckets/{bucket_name}/refurbishobs",
            post(refurbish),
        )
}

async fn list(q: Query) -> ApiResult<Response> {
    q.paging()?;
    Ok(list_reply(0, Vec::new()))
}

async fn refurbish(body: Bytes) -> ApiResult<Response> {
    let v = json_body(&body)?;
    let id = validate_refurbish(&v)?;
    Err(EgError::not_found(format!("FunctionGraph OBS trigger {id} does not exist")).into())
}
