//! OBS buckets (ops 54–55).
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

use super::subscriptions::info_schema;
use crate::error::ApiResult;
use crate::openapi::{paging, s, Op};
use crate::util::{json_body, list_reply, Query};
use axum::body::Bytes;
use axum::response::Response;
use openeg_api::endpoint::validate_refurbish;
use openeg_api::EgError;
use openeg_rules::TransformUse;

pub fn ops() -> Vec<Op> {
    const T: &str = "OBS buckets";
    let o = s::any_object;
    vec![
        Op::get(
            "ListObsBuckets",
            "/v1/{project_id}/subscriptions/obsbuckets",
            list,
        )
        .summary(T, "List the buckets of the configured object store")
        .params(paging())
        .ok(s::list(s::obj(&[
            ("responseHeaders", o()),
            ("originalHeaders", o()),
            ("statusCode", s::int()),
            ("bucketName", s::string()),
            (
                "owner",
                s::obj(&[("displayName", s::string()), ("id", s::string())]),
            ),
            ("creationDate", s::string()),
            ("location", s::string()),
            ("storageClass", o()),
            ("metadata", o()),
            ("acl", o()),
            ("bucketStorageClass", o()),
            ("bucketType", s::string()),
            ("requestId", s::string()),
        ]))),
        Op::post(
            "Refurbishobs",
            "/v1/{project_id}/subscriptions/obsbuckets/{bucket_name}/refurbishobs",
            refurbish,
        )
        .summary(T, "Convert a FunctionGraph OBS trigger into a subscription")
        .body(s::req(
            s::obj(&[
                ("agency_name", s::non_empty(64)),
                ("id", s::non_empty(128)),
                (
                    "transform",
                    s::transform(TransformUse::Payload.allowed_types()),
                ),
            ]),
            &["agency_name", "id", "transform"],
        ))
        .ok(info_schema()),
    ]
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
