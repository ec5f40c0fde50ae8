//! Professional event-router clusters (ops 71–76, `API.md` §3.17) and jobs (ops 63–70, §3.16).
//!
//! OpenEG provisions nothing for a cluster: it is `RUNNING` from its creation [dec]. Clusters
//! are stored in their wire shape (`EventRouterClusterInfo` without `job_count`, which is
//! counted from the cluster's jobs on every render). Jobs are stored as `EventRouterJobInfo`
//! with `parent_id` = cluster id; OpenEG runs no replication: START/STOP only move `status`
//! and syncDetail reports zeros [dec].

use super::{get_or_404, pick, render};
use crate::error::ApiResult;
use crate::state::{AppState, Tenant};
use crate::util::{fmt_time, json_body, list_query, list_reply, new_id, now_ms, ok, Params, Query};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use openeg_api::router_job::{self, MAX_CLUSTERS, MAX_JOBS_PER_CLUSTER};
use openeg_api::validate;
use openeg_api::EgError;
use openeg_store::{Kind, QuotaCheck, Record};
use serde_json::{json, Map, Value};
use std::time::Duration;

/// Availability zones OpenEG reports [dec].
const ZONES: &[&str] = &["az1"];

const CLUSTER_INFO: &[&str] = &[
    "cluster_id",
    "name",
    "description",
    "source_type",
    "sink_type",
    "subnet_id",
    "vpc_id",
    "zone_names",
    "status",
    "job_count",
    "flavor",
    "charging_mode",
    "err_code",
    "err_message",
    "created_time",
    "updated_time",
    "public_access_enabled",
    "nat_id",
    "eip_id",
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/{project_id}/eventrouter/clusters/availability-zone",
            get(zones),
        )
        .route(
            "/v1/{project_id}/eventrouter/clusters",
            post(create_cluster).get(list_clusters),
        )
        .route(
            "/v1/{project_id}/eventrouter/clusters/{cluster_id}",
            get(show_cluster).put(update_cluster).delete(delete_cluster),
        )
        .route(
            "/v1/{project_id}/eventrouter/jobs",
            post(create_job).get(list_jobs),
        )
        .route(
            "/v1/{project_id}/eventrouter/jobs/validation",
            post(validate_job),
        )
        .route(
            "/v1/{project_id}/eventrouter/jobs/{job_id}",
            get(show_job).put(update_job).delete(delete_job),
        )
        .route(
            "/v1/{project_id}/eventrouter/jobs/{job_id}/action",
            post(job_action),
        )
        .route(
            "/v1/{project_id}/eventrouter/jobs/{job_id}/syncDetail",
            post(sync_detail),
        )
}

async fn zones() -> ApiResult<Response> {
    Ok(ok(json!({ "zone_names": ZONES })))
}

/// The wire `EventRouterClusterInfo` with its current job count.
async fn render_cluster(st: &AppState, rec: &Record) -> ApiResult<Value> {
    let jobs = st
        .store
        .count(&rec.project_id, Kind::RouterJob, Some(&rec.id))
        .await?;
    let mut v = pick(&rec.body, CLUSTER_INFO);
    if let Value::Object(m) = &mut v {
        m.insert("job_count".into(), jobs.into());
    }
    Ok(v)
}

async fn create_cluster(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    body: Bytes,
) -> ApiResult<Response> {
    let v = json_body(&body)?;
    let mut doc = router_job::cluster_create(&v)?;
    let now = now_ms();
    let id = new_id();
    let name = doc
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    doc.insert("cluster_id".into(), id.clone().into());
    doc.insert("status".into(), "RUNNING".into());
    doc.insert("created_time".into(), fmt_time(now).into());
    doc.insert("updated_time".into(), fmt_time(now).into());
    let mut body = Value::Object(doc);
    crate::secrets::seal(&mut body, None, &st.secrets)?;
    let rec = Record {
        project_id: t.project_id.clone(),
        kind: Kind::RouterCluster,
        id,
        name,
        parent_id: None,
        created_at: now,
        updated_at: now,
        body,
        refs: Vec::new(),
    };
    let quota = QuotaCheck {
        quota: "EVENTROUTER_CLUSTER",
        kind: Kind::RouterCluster,
        parent_id: None,
        body_eq: None,
        max: MAX_CLUSTERS,
    };
    st.store.insert(&rec, &[quota]).await?;
    Ok(ok(render_cluster(&st, &rec).await?))
}

async fn list_clusters(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    q: Query,
) -> ApiResult<Response> {
    let paging = q.paging()?;
    let lq = list_query(&q, &paging);
    let (total, recs) = st
        .store
        .list(&t.project_id, Kind::RouterCluster, &lq)
        .await?;
    let mut items = Vec::with_capacity(recs.len());
    for r in &recs {
        items.push(render_cluster(&st, r).await?);
    }
    Ok(list_reply(total, items))
}

async fn show_cluster(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
) -> ApiResult<Response> {
    let rec = get_or_404(&st, &t.project_id, Kind::RouterCluster, p.at(1)).await?;
    Ok(ok(render_cluster(&st, &rec).await?))
}

async fn update_cluster(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
    body: Bytes,
) -> ApiResult<Response> {
    let mut rec = get_or_404(&st, &t.project_id, Kind::RouterCluster, p.at(1)).await?;
    let v = json_body(&body)?;
    let Value::Object(old) = &rec.body else {
        return Err(EgError::internal().into());
    };
    let mut doc = router_job::cluster_update(&v, old)?;
    let now = now_ms();
    doc.insert("updated_time".into(), fmt_time(now).into());
    rec.name = doc
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut body = Value::Object(doc);
    crate::secrets::seal(&mut body, Some(&rec.body), &st.secrets)?;
    rec.body = body;
    rec.updated_at = now;
    if !st.store.update(&rec).await? {
        return Err(EgError::not_found("router_cluster does not exist").into());
    }
    Ok(ok(render_cluster(&st, &rec).await?))
}

async fn delete_cluster(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
) -> ApiResult<Response> {
    let rec = get_or_404(&st, &t.project_id, Kind::RouterCluster, p.at(1)).await?;
    let jobs = st
        .store
        .count(&t.project_id, Kind::RouterJob, Some(&rec.id))
        .await?;
    if jobs > 0 {
        return Err(EgError::conflict(format!("cluster still has {jobs} job(s)")).into());
    }
    st.store
        .delete(&t.project_id, Kind::RouterCluster, &rec.id)
        .await?;
    Ok(ok(json!({ "cluster_id": rec.id })))
}

// ------------------------------------------------------------------------------------ jobs

/// Internal top-level copies of the sink endpoint's members, for the list filters.
fn index_sink(doc: &mut Map<String, Value>) {
    let sink = doc
        .get("sink_config")
        .and_then(Value::as_object)
        .and_then(|m| m.values().next())
        .cloned()
        .unwrap_or(Value::Null);
    for (k, member) in [
        ("_sink_region", "region"),
        ("_sink_instance_id", "instance_id"),
        ("_sink_address", "address"),
    ] {
        match sink.get(member).and_then(Value::as_str) {
            Some(v) => doc.insert(k.into(), v.into()),
            None => doc.remove(k),
        };
    }
}

/// Loads the cluster a job body names (404 when it is not the caller's).
async fn cluster_of(st: &AppState, project_id: &str, v: &Value) -> ApiResult<(Record, String)> {
    let cid = router_job::job_cluster_id(v)?;
    let c = get_or_404(st, project_id, Kind::RouterCluster, cid).await?;
    let ty = c
        .body
        .get("source_type")
        .and_then(Value::as_str)
        .unwrap_or("KAFKA")
        .to_string();
    Ok((c, ty))
}

async fn create_job(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    body: Bytes,
) -> ApiResult<Response> {
    let v = json_body(&body)?;
    let (cluster, ty) = cluster_of(&st, &t.project_id, &v).await?;
    let mut doc = router_job::job_body(&v, &ty)?;
    let now = now_ms();
    let id = new_id();
    let name = doc["name"].as_str().unwrap_or_default().to_string();
    let status = router_job::initial_status(&doc);
    doc.insert("job_id".into(), id.clone().into());
    for k in ["vpc_id", "subnet_id"] {
        doc.insert(
            k.into(),
            cluster.body.get(k).cloned().unwrap_or(Value::Null),
        );
    }
    doc.insert("status".into(), status.into());
    doc.insert("err_code".into(), Value::Null);
    doc.insert("err_message".into(), Value::Null);
    doc.insert("created_time".into(), fmt_time(now).into());
    doc.insert("updated_time".into(), fmt_time(now).into());
    for k in ["sink_status", "source_status"] {
        doc.insert(k.into(), "UNDEFINED".into());
    }
    for k in [
        "sink_status_info",
        "source_status_info",
        "log_group_id",
        "log_stream_id",
    ] {
        doc.insert(k.into(), "".into());
    }
    index_sink(&mut doc);
    let mut body = Value::Object(doc);
    crate::secrets::seal(&mut body, None, &st.secrets)?;
    let rec = Record {
        project_id: t.project_id.clone(),
        kind: Kind::RouterJob,
        id,
        name,
        parent_id: Some(cluster.id.clone()),
        created_at: now,
        updated_at: now,
        body,
        refs: Vec::new(),
    };
    let quota = QuotaCheck {
        quota: "EVENTROUTER_JOB",
        kind: Kind::RouterJob,
        parent_id: Some(cluster.id),
        body_eq: None,
        max: MAX_JOBS_PER_CLUSTER,
    };
    st.store.insert(&rec, &[quota]).await?;
    Ok(ok(render(&rec.body)))
}

async fn list_jobs(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    q: Query,
) -> ApiResult<Response> {
    let paging = q.paging()?;
    let mut lq = list_query(&q, &paging);
    lq.parent_id = q.get("cluster_id").map(str::to_string);
    for (param, key) in [
        ("sink_region", "_sink_region"),
        ("sink_instance_id", "_sink_instance_id"),
        ("sink_address", "_sink_address"),
        ("status", "status"),
    ] {
        if let Some(v) = q.get(param) {
            lq.body_eq.push((key.into(), v.to_string()));
        }
    }
    let (total, recs) = st.store.list(&t.project_id, Kind::RouterJob, &lq).await?;
    Ok(list_reply(
        total,
        recs.iter().map(|r| render(&r.body)).collect(),
    ))
}

async fn show_job(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
) -> ApiResult<Response> {
    let rec = get_or_404(&st, &t.project_id, Kind::RouterJob, p.at(1)).await?;
    Ok(ok(render(&rec.body)))
}

async fn update_job(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
    body: Bytes,
) -> ApiResult<Response> {
    let mut rec = get_or_404(&st, &t.project_id, Kind::RouterJob, p.at(1)).await?;
    let v = json_body(&body)?;
    let cid = router_job::job_cluster_id(&v)?;
    if Some(cid) != rec.parent_id.as_deref() {
        return Err(EgError::param("cluster_id cannot be changed").into());
    }
    let (_, ty) = cluster_of(&st, &t.project_id, &v).await?;
    let new = router_job::job_body(&v, &ty)?;
    let Value::Object(mut doc) = rec.body.clone() else {
        return Err(EgError::internal().into());
    };
    let old_status = doc
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let status = match router_job::initial_status(&new) {
        "WAIT_START" if old_status == "RUNNING" || old_status == "STOPPED" => old_status,
        s => s.to_string(),
    };
    for (k, v) in new {
        doc.insert(k, v);
    }
    let now = now_ms();
    doc.insert("status".into(), status.into());
    doc.insert("updated_time".into(), fmt_time(now).into());
    index_sink(&mut doc);
    rec.name = doc["name"].as_str().unwrap_or_default().to_string();
    let mut body = Value::Object(doc);
    crate::secrets::seal(&mut body, Some(&rec.body), &st.secrets)?;
    rec.body = body;
    rec.updated_at = now;
    if !st.store.update(&rec).await? {
        return Err(EgError::not_found("router_job does not exist").into());
    }
    Ok(ok(render(&rec.body)))
}

async fn delete_job(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
) -> ApiResult<Response> {
    let rec = get_or_404(&st, &t.project_id, Kind::RouterJob, p.at(1)).await?;
    st.store
        .delete(&t.project_id, Kind::RouterJob, &rec.id)
        .await?;
    Ok(ok(json!({ "job_id": rec.id })))
}

/// Addresses as a sorted set (`;` and `,` separate).
fn addr_set(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s
        .split([';', ','])
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// `source_config` {source_x: p} ⇄ `sink_config` {sink_x: p}.
fn swap_roles(doc: &mut Map<String, Value>) {
    let rename = |v: Option<Value>, from: &str, to: &str| -> Value {
        match v {
            Some(Value::Object(m)) => Value::Object(
                m.into_iter()
                    .map(|(k, v)| (k.replacen(from, to, 1), v))
                    .collect(),
            ),
            _ => Value::Null,
        }
    };
    let src = doc.remove("source_config");
    let sink = doc.remove("sink_config");
    doc.insert("sink_config".into(), rename(src, "source_", "sink_"));
    doc.insert("source_config".into(), rename(sink, "sink_", "source_"));
}

async fn job_action(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
    body: Bytes,
) -> ApiResult<Response> {
    let mut rec = get_or_404(&st, &t.project_id, Kind::RouterJob, p.at(1)).await?;
    let v = json_body(&body)?;
    let src = validate::object(&v, "request body")?;
    let op = validate::req_str(src, "operation")?;
    let status = match op {
        "START" => "RUNNING",
        "STOP" => "STOPPED",
        _ => return Err(EgError::param("operation must be START or STOP").into()),
    };
    let Value::Object(mut doc) = rec.body.clone() else {
        return Err(EgError::internal().into());
    };
    if doc.get("status").and_then(Value::as_str) == Some("NO_CONFIGURATION") {
        return Err(EgError::param("the job has no source_config and sink_config yet").into());
    }
    if let Some(cfg) = validate::opt_obj(src, "config")? {
        validate::opt_bool(cfg, "switch_now")
            .map_err(|_| EgError::param("config.switch_now must be a boolean"))?;
        let addr = validate::opt_str(cfg, "sink_address")
            .map_err(|_| EgError::param("config.sink_address must be a string"))?;
        if let Some(a) = addr.filter(|a| !a.trim().is_empty()) {
            let want = addr_set(a);
            let cur = Value::Object(doc.clone());
            let sink = router_job::endpoint_address(&cur, "sink").map(addr_set);
            let source = router_job::endpoint_address(&cur, "source").map(addr_set);
            if source.as_ref() == Some(&want) {
                swap_roles(&mut doc);
                index_sink(&mut doc);
            } else if sink.as_ref() != Some(&want) {
                return Err(EgError::param(
                    "config.sink_address matches neither the source nor the sink address",
                )
                .into());
            }
        }
    }
    let now = now_ms();
    doc.insert("status".into(), status.into());
    doc.insert("updated_time".into(), fmt_time(now).into());
    rec.body = Value::Object(doc);
    rec.updated_at = now;
    if !st.store.update(&rec).await? {
        return Err(EgError::not_found("router_job does not exist").into());
    }
    Ok(ok(json!({ "job_id": rec.id })))
}

/// One TCP connect (2 s timeout) to the first address of `addr`.
async fn probe(item: &str, addr: Option<&str>) -> Value {
    let first = addr.and_then(|a| addr_set(a).into_iter().next());
    let (status, reason) = match &first {
        None => ("FAILED", "no address configured".to_string()),
        Some(a) => match tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(a.as_str()),
        )
        .await
        {
            Ok(Ok(_)) => ("SUCCESS", String::new()),
            Ok(Err(e)) => ("FAILED", format!("connect to {a} failed: {}", e.kind())),
            Err(_) => ("FAILED", format!("connect to {a} timed out")),
        },
    };
    json!({
        "check_item_name": item,
        "name": item,
        "content": first.unwrap_or_default(),
        "status": status,
        "error_code": if status == "SUCCESS" { "" } else { "EG.00513000" },
        "reason": reason,
        "solution": if status == "SUCCESS" { "" } else { "check the address and the network path" },
    })
}

async fn validate_job(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    q: Query,
    body: Bytes,
) -> ApiResult<Response> {
    let vt = q.one_of("validate_type", &["SOURCE_NETWORK", "SINK_NETWORK"])?;
    let v = json_body(&body)?;
    let (_, ty) = cluster_of(&st, &t.project_id, &v).await?;
    let doc = Value::Object(router_job::validation_body(&v, &ty)?);
    let mut results = Vec::new();
    for (item, side) in [("SOURCE_NETWORK", "source"), ("SINK_NETWORK", "sink")] {
        if vt.as_deref().is_none_or(|x| x == item) {
            results.push(probe(item, router_job::endpoint_address(&doc, side)).await);
        }
    }
    Ok(ok(json!({ "results": results })))
}

async fn sync_detail(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
    body: Bytes,
) -> ApiResult<Response> {
    let rec = get_or_404(&st, &t.project_id, Kind::RouterJob, p.at(1)).await?;
    let v = json_body(&body)?;
    router_job::sync_detail_body(&v)?;
    let ty = rec.body.get("source_type").cloned().unwrap_or(Value::Null);
    Ok(ok(json!({
        "metadata": {"sync_remain_total": 0, "source_key_num": 0, "sink_key_num": 0},
        "total": 0,
        "size": 0,
        "type": ty,
        "items": [],
    })))
}
