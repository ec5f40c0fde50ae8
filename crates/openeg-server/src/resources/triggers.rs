//! Triggers (ops 48–49): the subscriptions that deliver to one FunctionGraph
//! function (`fn:<urn>` reference) or one workflow (`workflow:<id>` reference).
//!
//! The literal `workflow/{workflow_id}` route has two segments, so it never collides with the
//! one-segment `{func_urn}` route; the URN arrives percent-encoded (`urn%3Afss%3A...`) and is
//! compared decoded, exactly.

use super::subscriptions::{info_schema, list_by_ref};
use crate::error::ApiResult;
use crate::openapi::{paging, s, Op};
use crate::state::{AppState, Tenant};
use crate::util::{Params, Query};
use axum::extract::State;
use axum::response::Response;
use axum::Extension;

pub fn ops() -> Vec<Op> {
    const T: &str = "Triggers";
    vec![
        Op::get(
            "ListTriggers",
            "/v1/{project_id}/subscription-triggers/{func_urn}",
            list_triggers,
        )
        .summary(
            T,
            "Subscriptions delivering to a FunctionGraph function (by URN)",
        )
        .params(paging())
        .ok(s::list(info_schema())),
        Op::get(
            "ListWorkflowTriggers",
            "/v1/{project_id}/subscription-triggers/workflow/{workflow_id}",
            list_workflow_triggers,
        )
        .summary(T, "Subscriptions starting a FunctionGraph workflow")
        .params(paging())
        .ok(s::list(info_schema())),
    ]
}

async fn list_triggers(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
    q: Query,
) -> ApiResult<Response> {
    list_by_ref(&st, &t.project_id, &q, format!("fn:{}", p.get("func_urn"))).await
}

async fn list_workflow_triggers(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
    q: Query,
) -> ApiResult<Response> {
    list_by_ref(
        &st,
        &t.project_id,
        &q,
        format!("workflow:{}", p.get("workflow_id")),
    )
    .await
}
