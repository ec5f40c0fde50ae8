//! Access endpoints (ops 50–53).
//!
//! User-created endpoints are `PRIVATE` (one per VPC per project, quota `PRIVATE_ENDPOINT`).
//! Every project also lists one synthetic `PUBLIC` endpoint — OpenEG's own address — first in
//! ListEndpoints; it is never stored, has a stable id and cannot be updated or deleted (403
//! `EG.00514004`).
//!
//! `domain` is the host (and port) the request was addressed to (its `Host` header), i.e. the
//! address the caller reached OpenEG at, so clients publish to the same place [dec]. It is
//! computed when rendering, never stored.

use super::{get_or_404, pick, save_update};
use crate::error::ApiResult;
use crate::openapi::{paging, query, s, Op};
use crate::projects::DEFAULT_CHANNEL;
use crate::state::{AppState, Tenant};
use crate::util::{
    fmt_time, json_body, list_query, list_reply, new_id, no_content, now_ms, ok, stable_id, Params,
    Query,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use axum::Extension;
use openeg_api::endpoint::{validate_create, validate_update, MAX_DESCRIPTION_LEN, MAX_NET_ID_LEN};
use openeg_api::validate::NamePattern;
use openeg_api::EgError;
use openeg_store::{Document, Kind, QuotaCheck, StoreError};
use serde_json::{json, Map, Value};

const INFO: &[&str] = &[
    "id",
    "name",
    "vpc_id",
    "subnet_id",
    "domain",
    "description",
    "status",
    "error_info",
    "type",
    "scalable",
    "created_time",
    "updated_time",
    "endpoints",
];

/// Name of the synthetic public endpoint.
pub const PUBLIC_NAME: &str = "public";

/// Quota-check name used for the one-private-endpoint-per-VPC rule (mapped to `EG.00513006`).
const VPC_RULE: &str = "ENDPOINT_PER_VPC";

pub fn ops() -> Vec<Op> {
    const T: &str = "Access endpoints";
    let one = "/v1/{project_id}/endpoints/{endpoint_id}";
    let net_id = || s::doc(s::non_empty(MAX_NET_ID_LEN), "no whitespace");
    let description = || s::max(MAX_DESCRIPTION_LEN);
    vec![
        Op::put("UpdateEndpoint", one, update)
            .summary(T, "Update the description of a private endpoint")
            .body(s::obj(&[("description", description())]))
            .ok(info_schema()),
        Op::delete("DeleteEndpoint", one, delete).summary(T, "Delete a private endpoint"),
        Op::post("CreateEndpoint", "/v1/{project_id}/endpoints", create)
            .summary(T, "Create a private endpoint (one per VPC)")
            .body(s::req(
                s::obj(&[
                    ("name", s::name(NamePattern::Mixed)),
                    ("vpc_id", net_id()),
                    ("subnet_id", net_id()),
                    ("description", description()),
                ]),
                &["name", "vpc_id", "subnet_id"],
            ))
            .ok(info_schema()),
        Op::get("ListEndpoints", "/v1/{project_id}/endpoints", list)
            .summary(T, "List endpoints: the public one first, then private ones")
            .params(paging())
            .params([
                query("type", s::one_of(&["PRIVATE", "PUBLIC"])),
                query("name", s::string()),
                query("vpc_id", s::string()),
                query("fuzzy_name", s::string()),
                query("subnet_id", s::string()),
            ])
            .ok(s::list(info_schema())),
    ]
}

/// `EndpointInfo`.
fn info_schema() -> Value {
    s::req(
        s::obj(&[
            ("id", s::string()),
            ("name", s::string()),
            ("vpc_id", s::string()),
            ("subnet_id", s::string()),
            ("domain", s::string()),
            ("description", s::string()),
            (
                "status",
                s::one_of(&["CREATED", "CREATING", "CREATE_FAILED", "DELETE_FAILED"]),
            ),
            ("error_info", s::error_info()),
            ("type", s::one_of(&["PRIVATE", "PUBLIC"])),
            ("scalable", s::boolean()),
            ("created_time", s::time()),
            ("updated_time", s::time()),
            (
                "endpoints",
                s::array(s::obj(&[
                    ("endpoint_service_id", s::string()),
                    ("endpoint_service_name", s::string()),
                    ("marker_id", s::string()),
                    ("id", s::string()),
                    ("ip", s::string()),
                    ("created_time", s::time()),
                ])),
            ),
        ]),
        &["id", "name", "type", "status"],
    )
}

/// Stable id of a project's synthetic public endpoint.
pub fn public_id(project_id: &str) -> String {
    stable_id(&format!("openeg:public-endpoint:{project_id}"))
}

/// The address the caller reached OpenEG at (its `Host` header), else `localhost`.
fn domain(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or("localhost")
        .to_string()
}

fn render(body: &Value, domain: &str) -> Value {
    let mut v = pick(body, INFO);
    if let Value::Object(m) = &mut v {
        m.insert("domain".into(), domain.into());
    }
    v
}

/// The synthetic public endpoint; its times are those of the project's default channel (the
/// moment the project appeared), so they are stable too.
async fn public_endpoint(st: &AppState, project_id: &str) -> ApiResult<Value> {
    let created = st
        .store
        .get_by_name(project_id, Kind::Channel, DEFAULT_CHANNEL)
        .await?
        .map(|r| r.created_at)
        .unwrap_or(0);
    Ok(json!({
        "id": public_id(project_id),
        "name": PUBLIC_NAME,
        "description": "public access endpoint",
        "status": "CREATED",
        "error_info": {},
        "type": "PUBLIC",
        "scalable": false,
        "created_time": fmt_time(created),
        "updated_time": fmt_time(created),
        "endpoints": [],
    }))
}

async fn create(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let v = json_body(&body)?;
    let e = validate_create(&v)?;
    let now = now_ms();
    let id = new_id();
    let mut doc = Map::new();
    doc.insert("id".into(), id.clone().into());
    doc.insert("name".into(), e.name.clone().into());
    doc.insert("vpc_id".into(), e.vpc_id.clone().into());
    doc.insert("subnet_id".into(), e.subnet_id.into());
    doc.insert("description".into(), e.description.into());
    doc.insert("status".into(), "CREATED".into());
    doc.insert("error_info".into(), json!({}));
    doc.insert("type".into(), "PRIVATE".into());
    doc.insert("scalable".into(), false.into());
    doc.insert("created_time".into(), fmt_time(now).into());
    doc.insert("updated_time".into(), fmt_time(now).into());
    doc.insert("endpoints".into(), json!([]));
    let rec = Document {
        project_id: t.project_id.clone(),
        kind: Kind::Endpoint,
        id,
        name: e.name,
        parent_id: None,
        created_at: now,
        updated_at: now,
        body: Value::Object(doc),
        refs: Vec::new(),
    };
    // Both rules are checked atomically with the insert: at most one endpoint per VPC
    // (checked first, the more specific error), then the project quota.
    let per_vpc = QuotaCheck {
        quota: VPC_RULE,
        kind: Kind::Endpoint,
        parent_id: None,
        body_eq: Some(("vpc_id".into(), e.vpc_id.clone())),
        max: 1,
    };
    let quota = QuotaCheck {
        quota: "PRIVATE_ENDPOINT",
        kind: Kind::Endpoint,
        parent_id: None,
        body_eq: None,
        max: st.cfg.quotas.private_endpoint,
    };
    match st.store.insert(&rec, &[per_vpc, quota]).await {
        Ok(()) => {}
        Err(StoreError::Quota(VPC_RULE)) => {
            return Err(EgError::vpc_conflict(format!(
                "an endpoint for vpc {} already exists",
                e.vpc_id
            ))
            .into())
        }
        Err(err) => return Err(err.into()),
    }
    Ok(ok(render(&rec.body, &domain(&headers))))
}

async fn list(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    headers: HeaderMap,
    q: Query,
) -> ApiResult<Response> {
    let paging = q.paging()?;
    let ty = q.one_of("type", &["PRIVATE", "PUBLIC"])?;
    let vpc_id = q.get("vpc_id");
    let subnet_id = q.get("subnet_id");
    // Does the synthetic public endpoint match the filters? (It has no VPC or subnet.)
    let public_matches = ty.as_deref() != Some("PRIVATE")
        && vpc_id.is_none()
        && subnet_id.is_none()
        && q.get("name").is_none_or(|n| n == PUBLIC_NAME)
        && q.get("fuzzy_name").is_none_or(|f| {
            PUBLIC_NAME
                .to_ascii_lowercase()
                .contains(&f.to_ascii_lowercase())
        });
    let mut lq = list_query(&q, &paging);
    if let Some(v) = vpc_id {
        lq.body_eq.push(("vpc_id".into(), v.to_string()));
    }
    if let Some(s) = subnet_id {
        lq.body_eq.push(("subnet_id".into(), s.to_string()));
    }
    let mut items = Vec::new();
    // The public endpoint is position 0 of the combined listing.
    let mut limit = paging.limit;
    if public_matches {
        if paging.offset == 0 {
            items.push(public_endpoint(&st, &t.project_id).await?);
            limit -= 1;
            lq.offset = 0;
        } else {
            lq.offset = paging.offset - 1;
        }
    }
    let (private_total, recs) = if ty.as_deref() == Some("PUBLIC") {
        (0, Vec::new())
    } else {
        // limit 0 would mean "no limit" to nobody; a store page of 0 is asked as 1 and dropped.
        lq.limit = Some(limit.max(1));
        let (n, mut recs) = st.store.list(&t.project_id, Kind::Endpoint, &lq).await?;
        recs.truncate(limit as usize);
        (n, recs)
    };
    let dom = domain(&headers);
    items.extend(recs.iter().map(|r| r.body.clone()));
    let items = items.iter().map(|b| render(b, &dom)).collect();
    Ok(list_reply(private_total + u64::from(public_matches), items))
}

/// Rejects the synthetic public endpoint (403) and loads a private one (404 if absent).
async fn load_private(
    st: &AppState,
    project_id: &str,
    id: &str,
    what: &str,
) -> ApiResult<Document> {
    if id == public_id(project_id) {
        return Err(
            EgError::not_modifiable(format!("the public endpoint cannot be {what}")).into(),
        );
    }
    get_or_404(st, project_id, Kind::Endpoint, id).await
}

async fn update(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    headers: HeaderMap,
    p: Params,
    body: Bytes,
) -> ApiResult<Response> {
    let mut rec = load_private(&st, &t.project_id, p.get("endpoint_id"), "updated").await?;
    let v = json_body(&body)?;
    let description = validate_update(&v)?;
    let Value::Object(mut doc) = rec.body.clone() else {
        return Err(EgError::internal().into());
    };
    if let Some(d) = description {
        doc.insert("description".into(), d.into());
    }
    let now = now_ms();
    save_update(&st, &mut rec, doc, now, "endpoint").await?;
    Ok(ok(render(&rec.body, &domain(&headers))))
}

async fn delete(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
) -> ApiResult<Response> {
    let rec = load_private(&st, &t.project_id, p.get("endpoint_id"), "deleted").await?;
    if !st
        .store
        .delete(&t.project_id, Kind::Endpoint, &rec.id)
        .await?
    {
        return Err(EgError::not_found("endpoint does not exist").into());
    }
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_ids_are_stable_per_project() {
        assert_eq!(public_id("p1"), public_id("p1"));
        assert_ne!(public_id("p1"), public_id("p2"));
        assert_eq!(public_id("p1").len(), 36);
    }

    #[test]
    fn domain_from_host_header() {
        let mut h = HeaderMap::new();
        assert_eq!(domain(&h), "localhost");
        h.insert(header::HOST, "eg.example:8080".parse().unwrap());
        assert_eq!(domain(&h), "eg.example:8080");
    }
}
