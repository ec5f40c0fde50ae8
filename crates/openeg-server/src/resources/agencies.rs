//! Service agencies (ops 44–45).
//!
//! OpenEG has no IAM: CreateAgencies records the fixed agency name of a scenario as a
//! `Kind::Agency` record (name = agency name, body `{type, name, created_time}`), and
//! ListAgencies returns what was recorded for a scenario. Idempotent.

use crate::error::ApiResult;
use crate::openapi::{query_req, s, Op};
use crate::state::{AppState, Tenant};
use crate::util::{fmt_time, json_body, new_id, now_ms, ok, Query};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use openeg_api::field::Fields;
use openeg_api::EgError;
use openeg_store::{Document, Kind, ListQuery, SortKey, StoreError};
use serde_json::json;

/// Scenario → the agency name OpenEG records for it.
pub const SCENARIOS: &[(&str, &str)] = &[
    ("TARGET_CONNECTION", "EG_TRUST"),
    ("CUSTOM_SOURCE_RABBITMQ", "EG_SOURCE_RABBITMQ_AGENCY"),
];

pub fn ops() -> Vec<Op> {
    const T: &str = "Service agencies";
    let path = "/v1/{project_id}/service-agencies";
    let scenarios: Vec<&str> = SCENARIOS.iter().map(|(t, _)| *t).collect();
    let reply = || {
        s::req(
            s::obj(&[("agencies", s::array(s::string()))]),
            &["agencies"],
        )
    };
    vec![
        Op::get("ListAgencies", path, list)
            .summary(T, "List the agencies recorded for a scenario")
            .param(query_req("type", s::one_of(&scenarios)))
            .ok(reply()),
        Op::post("CreateAgencies", path, create)
            .summary(T, "Record the agency of a scenario (idempotent)")
            .body(s::req(
                s::obj(&[("type", s::one_of(&scenarios))]),
                &["type"],
            ))
            .ok(reply()),
    ]
}

fn agency_for(scenario: &str) -> Result<&'static str, EgError> {
    SCENARIOS
        .iter()
        .find(|(t, _)| *t == scenario)
        .map(|(_, a)| *a)
        .ok_or_else(|| {
            EgError::param("type must be one of TARGET_CONNECTION, CUSTOM_SOURCE_RABBITMQ")
        })
}

/// `{"agencies": [...]}` of what is recorded for a scenario.
async fn recorded(st: &AppState, project_id: &str, scenario: &str) -> ApiResult<Response> {
    let q = ListQuery {
        body_eq: vec![("type".into(), scenario.to_string())],
        sort: SortKey::Name,
        descending: false,
        ..Default::default()
    };
    let (_, recs) = st.store.list(project_id, Kind::Agency, &q).await?;
    let names: Vec<&str> = recs.iter().map(|r| r.name.as_str()).collect();
    Ok(ok(json!({ "agencies": names })))
}

async fn list(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    q: Query,
) -> ApiResult<Response> {
    let scenario = q
        .get("type")
        .ok_or_else(|| EgError::param("type is required"))?;
    agency_for(scenario)?;
    recorded(&st, &t.project_id, scenario).await
}

async fn create(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    body: Bytes,
) -> ApiResult<Response> {
    let v = json_body(&body)?;
    let src = Fields::body(&v)?;
    let scenario = src.req_str("type")?;
    let agency = agency_for(scenario)?;
    if st
        .store
        .get_by_name(&t.project_id, Kind::Agency, agency)
        .await?
        .is_none()
    {
        let now = now_ms();
        let rec = Document {
            project_id: t.project_id.clone(),
            kind: Kind::Agency,
            id: new_id(),
            name: agency.to_string(),
            parent_id: None,
            created_at: now,
            updated_at: now,
            body: json!({"type": scenario, "name": agency, "created_time": fmt_time(now)}),
            refs: Vec::new(),
        };
        match st.store.insert(&rec, &[]).await {
            Ok(()) | Err(StoreError::Duplicate) => {}
            Err(e) => return Err(e.into()),
        }
    }
    recorded(&st, &t.project_id, scenario).await
}

#[cfg(test)]
mod tests {
    use crate::state::ServerConfig;
    use crate::testing::{app, call, code};
    use serde_json::json;

    #[tokio::test]
    async fn record_and_list() {
        let (r, _) = app(ServerConfig::default()).await;
        let (s, e) = call(&r, "GET", "/v1/{p}/service-agencies", None).await;
        assert_eq!((s, code(&e)), (400, "EG.00513000"));
        let (s, e) = call(&r, "GET", "/v1/{p}/service-agencies?type=OTHER", None).await;
        assert_eq!((s, code(&e)), (400, "EG.00513000"));
        let (s, v) = call(
            &r,
            "GET",
            "/v1/{p}/service-agencies?type=TARGET_CONNECTION",
            None,
        )
        .await;
        assert_eq!((s, v), (200, json!({"agencies": []})));
        for _ in 0..2 {
            let (s, v) = call(
                &r,
                "POST",
                "/v1/{p}/service-agencies",
                Some(json!({"type": "TARGET_CONNECTION"})),
            )
            .await;
            assert_eq!((s, v), (200, json!({"agencies": ["EG_TRUST"]})));
        }
        let (s, v) = call(
            &r,
            "GET",
            "/v1/{p}/service-agencies?type=TARGET_CONNECTION",
            None,
        )
        .await;
        assert_eq!((s, v), (200, json!({"agencies": ["EG_TRUST"]})));
        let (_, v) = call(
            &r,
            "GET",
            "/v1/{p}/service-agencies?type=CUSTOM_SOURCE_RABBITMQ",
            None,
        )
        .await;
        assert_eq!(v, json!({"agencies": []}));
        let (_, v) = call(
            &r,
            "POST",
            "/v1/{p}/service-agencies",
            Some(json!({"type": "CUSTOM_SOURCE_RABBITMQ"})),
        )
        .await;
        assert_eq!(v, json!({"agencies": ["EG_SOURCE_RABBITMQ_AGENCY"]}));
        let (s, e) = call(&r, "POST", "/v1/{p}/service-agencies", Some(json!({}))).await;
        assert_eq!((s, code(&e)), (400, "EG.00513000"));
    }
}
