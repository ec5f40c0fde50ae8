//! `POST /openeg/v1/rules/test` (an OpenEG extension): which of the given events a filter
//! matches and, for each non-match, the first condition that failed. Same code as
//! `openeg rules test`.

use crate::error::ApiResult;
use crate::openapi::s;
use crate::util::{json_body, ok};
use axum::body::Bytes;
use axum::response::Response;
use openeg_api::field::Fields;
use openeg_api::{validate, EgError};
use serde_json::Value;

/// At most this many events per call.
const MAX_EVENTS: usize = 100;

pub async fn test_rules(body: Bytes) -> ApiResult<Response> {
    let v = json_body(&body)?;
    let o = Fields::body(&v)?.map();
    let filter = o
        .get("filter")
        .ok_or_else(|| EgError::param("filter is required"))?;
    let events = match o.get("events") {
        Some(Value::Array(a)) if !a.is_empty() && a.len() <= MAX_EVENTS => a,
        Some(Value::Array(_)) => {
            return Err(EgError::param(format!("events must hold 1 to {MAX_EVENTS} events")).into())
        }
        Some(_) => return Err(EgError::param("events must be an array").into()),
        None => return Err(EgError::param("events is required").into()),
    };
    if validate::compact_len(filter) > 2048 {
        return Err(EgError::filter("the filter must be at most 2048 bytes").into());
    }
    let report = openeg_rules::test_events(filter, events).map_err(EgError::filter)?;
    Ok(ok(report))
}

/// The request body of `POST /openeg/v1/rules/test`.
pub fn request_schema() -> Value {
    s::req(
        s::obj(&[
            (
                "filter",
                s::doc(
                    s::any_object(),
                    "filter rule (see docs/filter-rules.md), at most 2048 bytes",
                ),
            ),
            ("events", s::array_len(s::any_object(), 1, MAX_EVENTS)),
        ]),
        &["filter", "events"],
    )
}

/// The explanation report (`openeg rules test`).
pub fn response_schema() -> Value {
    s::any_object()
}
