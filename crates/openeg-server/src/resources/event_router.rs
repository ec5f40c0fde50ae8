//! Professional event-router clusters (ops 71–76) and jobs (ops 63–70).
//!
//! OpenEG provisions nothing for a cluster: it is `RUNNING` from its creation [dec]. Clusters
//! are stored in their wire shape (`EventRouterClusterInfo` without `job_count`, which is
//! counted from the cluster's jobs on every render). Jobs are stored as `EventRouterJobInfo`
//! with `parent_id` = cluster id. START/STOP record the desired state (`_desired`) and tell the
//! engine, whose supervisor runs or stops the job; from then on `status`, `err_code` and
//! `err_message` are the supervisor's runtime status ([`job_view`]); before the first START or
//! STOP the stored status shows (`WAIT_START`, `NO_CONFIGURATION`). OpenEG has no replication
//! runtime yet and says so: a started job shows `ERROR` with `err_message`, a stopped one
//! `STOPPED`, and syncDetail answers `state: NOT_RUNNING` with no figures [dec].

use super::{get_or_404, pick, render, save_update};
use crate::error::ApiResult;
use crate::openapi::{paging, query, s, Op};
use crate::state::{AppState, Tenant};
use crate::util::{fmt_time, json_body, list_query, list_reply, new_id, now_ms, ok, Params, Query};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use openeg_api::event_router::{self, MAX_CLUSTERS, MAX_JOBS_PER_CLUSTER};
use openeg_api::field::Fields;
use openeg_api::validate::NamePattern;
use openeg_api::EgError;
use openeg_engine::metrics::PartitionFigures;
use openeg_engine::runtimes::ROUTER_JOB_NOT_RUN;
use openeg_engine::{ResourceKind, RunState, RuntimeStatus, TaskKind};
use openeg_store::{Document, Kind, ListQuery, QuotaCheck};
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

pub fn ops() -> Vec<Op> {
    const C: &str = "Event-router clusters";
    const J: &str = "Event-router jobs";
    let clusters = "/v1/{project_id}/eventrouter/clusters";
    let cluster = "/v1/{project_id}/eventrouter/clusters/{cluster_id}";
    let jobs = "/v1/{project_id}/eventrouter/jobs";
    let job = "/v1/{project_id}/eventrouter/jobs/{job_id}";
    let st = s::string;
    let n = |v: Value| s::nullable(v);
    let cluster_info = s::req(
        s::obj(&[
            ("cluster_id", st()),
            ("name", st()),
            ("description", st()),
            ("source_type", s::one_of(event_router::CLUSTER_TYPES)),
            ("sink_type", s::one_of(event_router::CLUSTER_TYPES)),
            ("subnet_id", st()),
            ("vpc_id", st()),
            ("zone_names", st()),
            ("status", s::one_of(&["CREATING", "RUNNING", "ERROR"])),
            ("job_count", s::int()),
            ("flavor", st()),
            ("charging_mode", st()),
            ("err_code", st()),
            ("err_message", st()),
            ("created_time", s::time()),
            ("updated_time", s::time()),
            ("public_access_enabled", s::boolean()),
            ("nat_id", st()),
            ("eip_id", st()),
        ]),
        &["cluster_id", "name", "status"],
    );
    let job_info = s::req(
        s::obj(&[
            ("cluster_id", st()),
            ("job_id", st()),
            ("name", st()),
            ("description", st()),
            ("scene_type", st()),
            ("source_type", st()),
            ("sink_type", st()),
            ("subnet_id", n(st())),
            ("vpc_id", n(st())),
            ("source_config", n(s::any_object())),
            ("sink_config", n(s::any_object())),
            ("advance_config", n(s::any_object())),
            ("status", st()),
            ("err_code", n(st())),
            ("err_message", n(st())),
            ("created_time", s::time()),
            ("updated_time", s::time()),
            ("sink_status", st()),
            ("sink_status_info", st()),
            ("source_status", st()),
            ("source_status_info", st()),
            ("log_group_id", st()),
            ("log_stream_id", st()),
        ]),
        &["job_id", "cluster_id", "name", "status"],
    );
    let name = || s::name(NamePattern::Mixed);
    let job_id_reply = || s::req(s::obj(&[("job_id", st())]), &["job_id"]);
    let description = || s::max(256);
    vec![
        Op::post("CreateEventRouterJob", jobs, create_job)
            .summary(J, "Create a replication job in a cluster")
            .body(job_request())
            .ok(job_info.clone())
            .errors(&[404]),
        Op::get("ListEventRouterJobs", jobs, list_jobs)
            .summary(J, "List replication jobs")
            .params(paging())
            .params(
                [
                    "fuzzy_name",
                    "sink_region",
                    "sink_instance_id",
                    "sink_address",
                    "status",
                    "cluster_id",
                ]
                .map(|p| query(p, st())),
            )
            .ok(s::list(job_info.clone())),
        Op::delete("DeleteEventRouterJob", job, delete_job)
            .summary(J, "Delete a job")
            .ok(job_id_reply()),
        Op::get("ShowEventRouterJob", job, show_job)
            .summary(J, "Show a job")
            .ok(job_info.clone()),
        Op::put("UpdateEventRouterJob", job, update_job)
            .summary(J, "Replace a job's configuration")
            .body(job_request())
            .ok(job_info),
        Op::post(
            "ExecuteEventRouterJobOperation",
            "/v1/{project_id}/eventrouter/jobs/{job_id}/action",
            job_action,
        )
        .summary(J, "Start or stop a job, or switch its roles")
        .body(s::req(
            s::obj(&[
                ("operation", s::one_of(&["START", "STOP"])),
                (
                    "config",
                    s::obj(&[
                        ("switch_now", s::boolean()),
                        (
                            "sink_address",
                            s::doc(st(), "semicolon-separated addresses"),
                        ),
                    ]),
                ),
            ]),
            &["operation"],
        ))
        .ok(job_id_reply()),
        Op::post(
            "ValidateEventRouterJob",
            "/v1/{project_id}/eventrouter/jobs/validation",
            validate_job,
        )
        .summary(J, "Check network reachability of a job's endpoints")
        .params([
            query("validate_type", s::one_of(&VALIDATE_TYPES)),
            query("job_id", st()),
        ])
        .body(s::req(
            s::obj(&[
                ("cluster_id", s::non_empty(64)),
                ("source_config", side_schema("source")),
                ("sink_config", side_schema("sink")),
            ]),
            &["cluster_id"],
        ))
        .ok(s::req(
            s::obj(&[(
                "results",
                s::array(s::obj(&[
                    ("check_item_name", st()),
                    ("name", st()),
                    ("content", st()),
                    ("status", s::one_of(&["SUCCESS", "FAILED"])),
                    ("error_code", st()),
                    ("reason", st()),
                    ("solution", st()),
                ])),
            )]),
            &["results"],
        ))
        .errors(&[404]),
        Op::post(
            "ShowEventRouterTaskSyncDetail",
            "/v1/{project_id}/eventrouter/jobs/{job_id}/syncDetail",
            sync_detail,
        )
        .summary(J, "Replication progress of a job")
        .body(s::req(
            s::obj(&[
                ("offset", s::int_range(0, 10_000)),
                ("limit", s::int_range(10, 1000)),
                (
                    "conditions",
                    s::array(s::obj(&[
                        ("key", s::one_of(&["topic"])),
                        ("operate", s::one_of(&["EQUAL", "LIKE"])),
                        ("value", st()),
                    ])),
                ),
            ]),
            &["offset", "limit"],
        ))
        .ok(s::req(
            s::obj(&[
                (
                    "metadata",
                    s::obj(&[
                        ("sync_remain_total", s::int()),
                        ("source_key_num", s::int()),
                        ("sink_key_num", s::int()),
                    ]),
                ),
                ("total", s::int()),
                ("size", s::int()),
                ("type", n(st())),
                ("items", s::array(s::any_object())),
                (
                    "state",
                    s::doc(
                        s::one_of(&["NOT_RUNNING"]),
                        "OpenEG: the job is not replicating, so there are no figures",
                    ),
                ),
                ("state_detail", st()),
            ]),
            &["total", "size", "items"],
        )),
        Op::get(
            "ListAvailabilityZones",
            "/v1/{project_id}/eventrouter/clusters/availability-zone",
            zones,
        )
        .summary(C, "List availability zones")
        .ok(s::req(
            s::obj(&[("zone_names", s::array(st()))]),
            &["zone_names"],
        )),
        Op::post("CreateEventRouterCluster", clusters, create_cluster)
            .summary(C, "Create a cluster")
            .body(s::req(
                s::obj(&[
                    ("name", name()),
                    ("description", description()),
                    ("source_type", s::one_of(event_router::CLUSTER_TYPES)),
                    ("sink_type", s::one_of(event_router::CLUSTER_TYPES)),
                    ("vpc_id", s::non_empty(64)),
                    ("subnet_id", s::non_empty(64)),
                    ("zone_names", s::max(256)),
                    (
                        "bss_param",
                        s::req(
                            s::obj(&[("charging_mode", s::non_empty(64))]),
                            &["charging_mode"],
                        ),
                    ),
                    ("flavor", s::max(64)),
                    ("public_access_enabled", s::boolean()),
                    ("nat_id", s::max(64)),
                    ("eip_id", s::max(64)),
                ]),
                &[
                    "name",
                    "source_type",
                    "sink_type",
                    "vpc_id",
                    "subnet_id",
                    "public_access_enabled",
                ],
            ))
            .ok(cluster_info.clone())
            .errors(&[403]),
        Op::get("ListEventRouterClusters", clusters, list_clusters)
            .summary(C, "List clusters")
            .params(paging())
            .param(query("fuzzy_name", st()))
            .ok(s::list(cluster_info.clone())),
        Op::delete("DeleteEventRouterCluster", cluster, delete_cluster)
            .summary(C, "Delete a cluster without jobs")
            .ok(s::req(s::obj(&[("cluster_id", st())]), &["cluster_id"]))
            .errors(&[409]),
        Op::get("ShowEventRouterCluster", cluster, show_cluster)
            .summary(C, "Show a cluster")
            .ok(cluster_info.clone()),
        Op::put("UpdateEventRouterCluster", cluster, update_cluster)
            .summary(C, "Update a cluster")
            .body(s::obj(&[
                ("name", name()),
                ("description", description()),
                ("public_access_enabled", s::boolean()),
                ("nat_id", s::max(64)),
                ("eip_id", s::max(64)),
            ]))
            .ok(cluster_info),
    ]
}

/// `validate_type` values of ValidateEventRouterJob.
const VALIDATE_TYPES: [&str; 2] = ["SOURCE_NETWORK", "SINK_NETWORK"];

/// `source_config` / `sink_config`: one of `<side>_kafka`, `<side>_rocketmq`, `<side>_dcs`.
fn side_schema(side: &str) -> Value {
    let st = s::string;
    let common = [
        ("config_type", s::one_of(&["CLOUD"])),
        ("region", st()),
        ("project_id", st()),
        ("instance_id", st()),
        ("address", s::doc(st(), "host:port[;host:port...]")),
        ("password", st()),
    ];
    let with = |extra: &[(&str, Value)], required: &[&str]| {
        let mut props: Vec<(&str, Value)> = common.to_vec();
        props.extend_from_slice(extra);
        s::req(s::obj(&props), required)
    };
    let kafka = with(
        &[
            ("cluster_alias", st()),
            ("authenticate_mode", st()),
            ("sasl_mechanism", st()),
            ("user_name", st()),
        ],
        &["config_type", "region", "project_id", "cluster_alias"],
    );
    let rocketmq = with(
        &[
            ("cluster_alias", st()),
            ("ssl_open", s::one_of(&["true", "false"])),
            ("acl_open", s::boolean()),
            ("user_name", st()),
        ],
        &["config_type", "region", "project_id", "cluster_alias"],
    );
    let dcs = with(&[], &["config_type", "region", "project_id"]);
    let variants: Vec<Value> = [("kafka", kafka), ("rocketmq", rocketmq), ("dcs", dcs)]
        .into_iter()
        .map(|(fam, schema)| {
            let member = format!("{side}_{fam}");
            json!({"type": "object", "required": [member], "properties": {member.clone(): schema},
                   "additionalProperties": false})
        })
        .collect();
    json!({ "oneOf": variants })
}

/// CreateEventRouterJob / UpdateEventRouterJob (full replacement).
fn job_request() -> Value {
    let st = s::string;
    let topics = || s::doc(st(), "comma-separated topic names");
    s::req(
        s::obj(&[
            ("cluster_id", s::non_empty(64)),
            ("name", s::name(NamePattern::Mixed)),
            ("description", s::max(256)),
            ("scene_type", s::one_of(&["DISASTER_BACKUP"])),
            ("source_config", side_schema("source")),
            ("sink_config", side_schema("sink")),
            (
                "advance_config",
                s::obj(&[
                    (
                        "kafka2kafka",
                        s::obj(&[
                            ("topics", topics()),
                            ("topic_regex", st()),
                            ("replica_cnt", s::int_range(1, 1000)),
                            ("seek_to", s::one_of(&["earliest", "latest"])),
                            (
                                "compress_alg",
                                s::one_of(&["none", "gzip", "snappy", "lz4", "zstd"]),
                            ),
                            ("is_sync_progress", s::boolean()),
                            ("is_add_header", s::boolean()),
                            ("rename_topic", s::boolean()),
                            (
                                "topic_mappings",
                                s::array(s::obj(&[("source_topic", st()), ("sink_topic", st())])),
                            ),
                        ]),
                    ),
                    (
                        "rocketmq2rocketmq",
                        s::obj(&[
                            ("topics", topics()),
                            ("topic_regex", st()),
                            ("is_sync_progress", s::boolean()),
                            ("seek_to", st()),
                            ("compress_alg", s::one_of(&["none", "gzip", "lz4", "zstd"])),
                        ]),
                    ),
                    (
                        "dcs2dcs",
                        s::obj(&[
                            ("synchronize_type", st()),
                            ("connect_retry_time", st()),
                            ("other_retry_time", st()),
                            ("use_rate_limit", s::boolean()),
                            ("rate_limit", st()),
                            ("use_salve_node", s::boolean()),
                            ("allow_db", s::array(s::int())),
                            ("db_mapping", s::any_object()),
                        ]),
                    ),
                ]),
            ),
        ]),
        &["cluster_id", "name", "scene_type"],
    )
}

async fn zones() -> ApiResult<Response> {
    Ok(ok(json!({ "zone_names": ZONES })))
}

/// The wire `EventRouterClusterInfo` with its current job count.
async fn render_cluster(st: &AppState, rec: &Document) -> ApiResult<Value> {
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
    let mut doc = event_router::cluster_create(&v)?;
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
    let rec = Document {
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
    let rec = get_or_404(&st, &t.project_id, Kind::RouterCluster, p.get("cluster_id")).await?;
    Ok(ok(render_cluster(&st, &rec).await?))
}

async fn update_cluster(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
    body: Bytes,
) -> ApiResult<Response> {
    let mut rec = get_or_404(&st, &t.project_id, Kind::RouterCluster, p.get("cluster_id")).await?;
    let v = json_body(&body)?;
    let Value::Object(old) = &rec.body else {
        return Err(EgError::internal().into());
    };
    let mut doc = event_router::cluster_update(&v, old)?;
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
    let rec = get_or_404(&st, &t.project_id, Kind::RouterCluster, p.get("cluster_id")).await?;
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

/// A job as the API shows it: the stored document, with `status`, `err_code` and
/// `err_message` from the supervisor once the job was started or stopped.
fn job_view(st: &AppState, rec: &Document) -> Value {
    let mut body = rec.body.clone();
    if rec.body.get("_desired").is_some() {
        // Set in the stored document (members keep their place), then rendered.
        if let (Some(rs), Value::Object(m)) =
            (st.runtime_status(TaskKind::RouterJob, rec), &mut body)
        {
            let status = match rs.state {
                RunState::Running => "RUNNING",
                RunState::Error => "ERROR",
                RunState::Stopped => "STOPPED",
            };
            let (code, message) = match rs.error {
                Some(e) => (e.code.into(), e.message.into()),
                None => (Value::Null, Value::Null),
            };
            m.insert("status".into(), status.into());
            m.insert("err_code".into(), code);
            m.insert("err_message".into(), message);
            // Each side's connectivity as the run found it (a run that failed to connect
            // leaves its finding); otherwise the stored `UNDEFINED` shows.
            let figures = st
                .engine
                .as_ref()
                .and_then(|e| e.metrics.job_figures(&rec.id));
            // Only this node's own finding: in a cluster another node may run the job now.
            let here = rs.node_name == st.cfg.node_name && rs.state != RunState::Stopped;
            if let (Some(f), true) = (figures, here) {
                for (side, info, got) in [
                    ("source_status", "source_status_info", &f.source),
                    ("sink_status", "sink_status_info", &f.sink),
                ] {
                    if let Some((status, why)) = got.lock().ok().and_then(|g| g.clone()) {
                        m.insert(side.into(), status.into());
                        m.insert(info.into(), why.into());
                    }
                }
            }
        }
    }
    render(&body)
}

/// Loads the cluster a job body names (404 when it is not the caller's).
async fn cluster_of(st: &AppState, project_id: &str, v: &Value) -> ApiResult<(Document, String)> {
    let cid = event_router::job_cluster_id(v)?;
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
    let mut doc = event_router::job_body(&v, &ty)?;
    let now = now_ms();
    let id = new_id();
    let name = doc["name"].as_str().unwrap_or_default().to_string();
    let status = event_router::initial_status(&doc);
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
    let rec = Document {
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
    st.resource_changed(ResourceKind::RouterJob, &rec.project_id, &rec.id)
        .await;
    Ok(ok(job_view(&st, &rec)))
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
    ] {
        if let Some(v) = q.get(param) {
            lq.body_eq.push((key.into(), v.to_string()));
        }
    }
    let Some(want) = q.get("status") else {
        let (total, recs) = st.store.list(&t.project_id, Kind::RouterJob, &lq).await?;
        return Ok(list_reply(
            total,
            recs.iter().map(|r| job_view(&st, r)).collect(),
        ));
    };
    // The status shown is the runtime's, not a stored member: filter the rendered jobs, then
    // page (a project has at most MAX_CLUSTERS × MAX_JOBS_PER_CLUSTER jobs).
    let all = ListQuery {
        offset: 0,
        limit: None,
        ..lq
    };
    let (_, recs) = st.store.list(&t.project_id, Kind::RouterJob, &all).await?;
    let matching: Vec<Value> = recs
        .iter()
        .map(|r| job_view(&st, r))
        .filter(|v| v.get("status").and_then(Value::as_str) == Some(want))
        .collect();
    let total = matching.len() as u64;
    let items = matching
        .into_iter()
        .skip(usize::try_from(paging.offset).unwrap_or(usize::MAX))
        .take(usize::try_from(paging.limit).unwrap_or(usize::MAX))
        .collect();
    Ok(list_reply(total, items))
}

async fn show_job(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
) -> ApiResult<Response> {
    let rec = get_or_404(&st, &t.project_id, Kind::RouterJob, p.get("job_id")).await?;
    Ok(ok(job_view(&st, &rec)))
}

async fn update_job(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
    body: Bytes,
) -> ApiResult<Response> {
    let mut rec = get_or_404(&st, &t.project_id, Kind::RouterJob, p.get("job_id")).await?;
    let v = json_body(&body)?;
    let cid = event_router::job_cluster_id(&v)?;
    if Some(cid) != rec.parent_id.as_deref() {
        return Err(EgError::param("cluster_id cannot be changed").into());
    }
    let (_, ty) = cluster_of(&st, &t.project_id, &v).await?;
    let new = event_router::job_body(&v, &ty)?;
    let Value::Object(mut doc) = rec.body.clone() else {
        return Err(EgError::internal().into());
    };
    // A started or stopped job keeps its desired state (`_desired`) across a
    // reconfiguration; one left without source or sink must be started again.
    let status = event_router::initial_status(&new);
    if status == "NO_CONFIGURATION" {
        doc.remove("_desired");
    }
    let source_before = event_router::endpoint_address(&rec.body, "source").map(addr_set);
    for (k, v) in new {
        doc.insert(k, v);
    }
    // A switched-over job given another source is configured afresh: its topic settings
    // are read from that source's side again.
    let cur = Value::Object(doc.clone());
    if event_router::endpoint_address(&cur, "source").map(addr_set) != source_before {
        doc.remove("_switched");
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
    st.resource_changed(ResourceKind::RouterJob, &rec.project_id, &rec.id)
        .await;
    Ok(ok(job_view(&st, &rec)))
}

async fn delete_job(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
) -> ApiResult<Response> {
    let rec = get_or_404(&st, &t.project_id, Kind::RouterJob, p.get("job_id")).await?;
    st.store
        .delete(&t.project_id, Kind::RouterJob, &rec.id)
        .await?;
    st.resource_changed(ResourceKind::RouterJob, &rec.project_id, &rec.id)
        .await;
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
    let mut rec = get_or_404(&st, &t.project_id, Kind::RouterJob, p.get("job_id")).await?;
    let v = json_body(&body)?;
    let src = Fields::body(&v)?;
    let op = src.req_str("operation")?;
    // The desired state is stored; the status shown is the supervisor's (`job_view`).
    let desired = match op {
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
    if let Some(cfg) = src.nested("config")? {
        let switch_now = cfg.opt_bool("switch_now")?.unwrap_or(false);
        let addr = cfg.opt_str("sink_address")?;
        if let Some(a) = addr.filter(|a| !a.trim().is_empty()) {
            let want = addr_set(a);
            let cur = Value::Object(doc.clone());
            let sink = event_router::endpoint_address(&cur, "sink").map(addr_set);
            let source = event_router::endpoint_address(&cur, "source").map(addr_set);
            if source.as_ref() == Some(&want) {
                // A switch-over. Without `switch_now` only a job that copied everything
                // switches: what it has not copied yet would stay behind on the old source.
                if !switch_now {
                    caught_up(&st, &rec).map_err(|why| {
                        EgError::param(format!(
                            "the job cannot switch over now: {why}; switch once syncDetail's \
                             sync_remain_total is 0, or pass config.switch_now: true"
                        ))
                    })?;
                }
                swap_roles(&mut doc);
                index_sink(&mut doc);
                // The runtime reads the topic settings from the first source's side.
                let switched = doc.get("_switched").and_then(Value::as_bool) == Some(true);
                doc.insert("_switched".into(), (!switched).into());
            } else if sink.as_ref() != Some(&want) {
                return Err(EgError::param(
                    "config.sink_address matches neither the source nor the sink address",
                )
                .into());
            }
        }
    }
    let now = now_ms();
    doc.insert("_desired".into(), desired.into());
    save_update(&st, &mut rec, doc, now, "router_job").await?;
    st.resource_changed(ResourceKind::RouterJob, &rec.project_id, &rec.id)
        .await;
    Ok(ok(json!({ "job_id": rec.id })))
}

/// Whether job `rec` runs on this node and has copied everything its source holds, as its
/// live figures say; else why not.
fn caught_up(st: &AppState, rec: &Document) -> Result<(), String> {
    match st.runtime_status(TaskKind::RouterJob, rec) {
        Some(s) if s.state == RunState::Running && s.node_name == st.cfg.node_name => {}
        Some(s) if s.state == RunState::Running => {
            return Err(format!(
                "it runs on node {}, the only one that knows its positions: send the switch \
                 there",
                s.node_name
            ))
        }
        _ => return Err("it is not running, so what it has left to copy is not known".into()),
    }
    let figures = st
        .engine
        .as_ref()
        .and_then(|e| e.metrics.job_figures(&rec.id))
        .ok_or("its positions are not known yet")?;
    let left = if let Some(r) = figures.redis_snapshot() {
        if r.phase != "incremental" {
            return Err(format!("its {} synchronisation is not done", r.phase));
        }
        i64::try_from(r.remaining()).unwrap_or(i64::MAX)
    } else if rec.body.get("source_type").and_then(Value::as_str) == Some("ROCKETMQ") {
        rocketmq_sync_rows(&figures.snapshot()).1
    } else {
        kafka_sync_rows(&figures.snapshot(), &Value::Null).1
    };
    if left > 0 {
        return Err(format!("{left} records are left to copy"));
    }
    Ok(())
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

/// Past the TCP check, a Redis endpoint must answer `PING` after `AUTH` with the password
/// given: what a job needs to replicate from it or write to it.
async fn redis_check(result: &mut Value, member: &Value) {
    use openeg_connectors::mirror::redis::{Endpoint, Probe};
    let failure = match Endpoint::of(member) {
        Err(e) => Some(e),
        Ok(ep) => match tokio::time::timeout(Duration::from_secs(5), Probe::connect(&ep)).await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(format!("the Redis check (AUTH, PING) failed: {e}")),
            Err(_) => Some("the Redis check (AUTH, PING) timed out".to_string()),
        },
    };
    if let Some(why) = failure {
        result["status"] = json!("FAILED");
        result["error_code"] = json!("EG.00513000");
        result["reason"] = json!(why);
        result["solution"] = json!("check the address, the password and that the server is Redis");
    }
}

/// Past the TCP check, a Kafka endpoint must answer a metadata request made with the
/// security protocol and SASL credentials given: what a job needs to read or write it.
async fn kafka_check(result: &mut Value, member: &Value) {
    use openeg_connectors::mirror::kafka::{Admin, Endpoint};
    let failure = match Endpoint::of(member) {
        Err(e) => Some(e),
        Ok(ep) => match tokio::time::timeout(Duration::from_secs(20), Admin::connect(&ep)).await {
            Ok(Ok(admin)) => {
                // Closing a Kafka client joins its thread: not on the async threads.
                tokio::task::spawn_blocking(move || drop(admin));
                None
            }
            Ok(Err(e)) => Some(format!("the Kafka check (metadata request) failed: {e}")),
            Err(_) => Some("the Kafka check (metadata request) timed out".to_string()),
        },
    };
    if let Some(why) = failure {
        result["status"] = json!("FAILED");
        result["error_code"] = json!("EG.00513000");
        result["reason"] = json!(why);
        result["solution"] =
            json!("check the address, the security protocol and credentials, and that it is Kafka");
    }
}

/// Past the TCP check, a RocketMQ endpoint's name server must answer an admin client (signed
/// with the ACL credentials given) with its cluster's brokers.
async fn rocketmq_check(result: &mut Value, member: &Value) {
    use openeg_connectors::mirror::rocketmq::{check, Endpoint};
    let failure = match Endpoint::of(member) {
        Err(e) => Some(e),
        Ok(ep) => match tokio::time::timeout(Duration::from_secs(20), check(&ep)).await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(format!(
                "the RocketMQ check (cluster information) failed: {e}"
            )),
            Err(_) => Some("the RocketMQ check (cluster information) timed out".to_string()),
        },
    };
    if let Some(why) = failure {
        result["status"] = json!("FAILED");
        result["error_code"] = json!("EG.00513000");
        result["reason"] = json!(why);
        result["solution"] =
            json!("check the name server address, the ACL credentials and that it is RocketMQ");
    }
}

async fn validate_job(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    q: Query,
    body: Bytes,
) -> ApiResult<Response> {
    let vt = q.one_of("validate_type", &VALIDATE_TYPES)?;
    let v = json_body(&body)?;
    let (_, ty) = cluster_of(&st, &t.project_id, &v).await?;
    let doc = Value::Object(event_router::validation_body(&v, &ty)?);
    let mut results = Vec::new();
    for (item, side) in [("SOURCE_NETWORK", "source"), ("SINK_NETWORK", "sink")] {
        if vt.as_deref().is_none_or(|x| x == item) {
            let mut r = probe(item, event_router::endpoint_address(&doc, side)).await;
            if r["status"] == "SUCCESS" {
                if let Some(dcs) = doc.pointer(&format!("/{side}_config/{side}_dcs")) {
                    redis_check(&mut r, dcs).await;
                } else if let Some(rmq) = doc.pointer(&format!("/{side}_config/{side}_rocketmq")) {
                    rocketmq_check(&mut r, rmq).await;
                } else if let Some(kafka) = doc.pointer(&format!("/{side}_config/{side}_kafka")) {
                    kafka_check(&mut r, kafka).await;
                }
            }
            results.push(r);
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
    let rec = get_or_404(&st, &t.project_id, Kind::RouterJob, p.get("job_id")).await?;
    let v = json_body(&body)?;
    let q = event_router::sync_detail_body(&v)?;
    let ty = rec.body.get("source_type").cloned().unwrap_or(Value::Null);
    let status = st.runtime_status(TaskKind::RouterJob, &rec);
    let figures = status
        .as_ref()
        .filter(|s| s.state == RunState::Running && s.node_name == st.cfg.node_name)
        .and_then(|_| st.engine.as_ref())
        .and_then(|e| e.metrics.job_figures(&rec.id));
    let Some(figures) = figures else {
        // Nothing runs here, so there are no positions to report: no items and no invented
        // figures in `metadata`; `state` says why (an OpenEG member beside the EG ones).
        let detail = match status {
            Some(s) if s.state == RunState::Running => {
                "the job runs on another node: ask the node running it".to_string()
            }
            Some(RuntimeStatus { error: Some(e), .. }) => e.message,
            Some(_) => "the job is not running (not started, or stopped): there are no live \
                        positions; it is not run now"
                .to_string(),
            None => ROUTER_JOB_NOT_RUN.to_string(),
        };
        return Ok(ok(json!({
            "metadata": {},
            "total": 0,
            "size": 0,
            "type": ty,
            "items": [],
            "state": "NOT_RUNNING",
            "state_detail": detail,
        })));
    };
    if let Some(r) = figures.redis_snapshot() {
        // One item: the job's link (topic conditions do not apply to Redis).
        let row = json!({
            "sourceAddr": r.source_addr,
            "sinkAddr": r.sink_addr,
            "taskProgress": format!("{:.4}", r.progress()),
            "syncPhase": r.phase,
            "sourceOffset": r.source_offset,
            "sinkOffset": r.sink_offset,
            "taskStatus": r.status,
        });
        let items: Vec<Value> = std::iter::once(row).skip(q.offset).take(q.limit).collect();
        let mut metadata = json!({"sync_remain_total": r.remaining()});
        if let Some(n) = r.source_keys {
            metadata["source_key_num"] = json!(n);
        }
        if let Some(n) = r.sink_keys {
            metadata["sink_key_num"] = json!(n);
        }
        return Ok(ok(json!({
            "metadata": metadata,
            "total": 1,
            "size": items.len(),
            "type": ty,
            "items": items,
        })));
    }
    let (rows, remaining) = if ty == "ROCKETMQ" {
        rocketmq_sync_rows(&figures.snapshot())
    } else {
        let alias = rec
            .body
            .pointer("/source_config/source_kafka/cluster_alias")
            .cloned()
            .unwrap_or(Value::Null);
        kafka_sync_rows(&figures.snapshot(), &alias)
    };
    let matching: Vec<Value> = rows
        .into_iter()
        .filter(|(topic, _)| q.conditions.iter().all(|c| c.matches(topic)))
        .map(|(_, row)| row)
        .collect();
    let total = matching.len();
    let items: Vec<Value> = matching.into_iter().skip(q.offset).take(q.limit).collect();
    Ok(ok(json!({
        "metadata": {"sync_remain_total": remaining},
        "total": total,
        "size": items.len(),
        "type": ty,
        "items": items,
    })))
}

/// syncDetail rows of a running RocketMQ job, one per source topic in name order (its queues
/// over every broker in `offset_details`), and the messages left to copy over all of them.
/// The figures key a queue by `{topic}@{broker}` and its id.
fn rocketmq_sync_rows(
    queues: &std::collections::BTreeMap<(String, i32), PartitionFigures>,
) -> (Vec<(String, Value)>, i64) {
    let mut topics: std::collections::BTreeMap<&str, (Vec<Value>, i64)> =
        std::collections::BTreeMap::new();
    let mut total = 0i64;
    for ((key, queue), f) in queues {
        let (topic, broker) = key.split_once('@').unwrap_or((key.as_str(), ""));
        let remain = (f.high - f.next).max(0);
        total += remain;
        let t = topics.entry(topic).or_default();
        t.1 += remain;
        t.0.push(json!({
            "queue": {"rocketmq_topic": topic, "rocketmq_broker": broker, "rocketmq_queue": queue},
            "offset": {"rocketmq_offset": f.next, "max_offset": f.high},
        }));
    }
    let rows = topics
        .into_iter()
        .map(|(topic, (details, remain))| {
            (
                topic.to_string(),
                json!({
                    "topic": topic,
                    "number": details.len(),
                    "sync_remain_num": remain,
                    "offset_details": details,
                }),
            )
        })
        .collect();
    (rows, total)
}

/// syncDetail rows of a running Kafka job, one per source topic in name order, and the
/// records left to copy over all of them.
fn kafka_sync_rows(
    parts: &std::collections::BTreeMap<(String, i32), PartitionFigures>,
    alias: &Value,
) -> (Vec<(String, Value)>, i64) {
    let mut rows: Vec<(String, Value)> = Vec::new();
    let mut total = 0i64;
    let mut current: Option<(String, Vec<Value>, i64)> = None;
    let finish = |c: (String, Vec<Value>, i64), rows: &mut Vec<(String, Value)>| {
        let (topic, details, remain) = c;
        rows.push((
            topic.clone(),
            json!({
                "topic": topic,
                "number": details.len(),
                "sync_remain_num": remain,
                "offset_details": details,
            }),
        ));
    };
    for ((topic, p), f) in parts {
        if current.as_ref().is_some_and(|c| &c.0 != topic) {
            if let Some(c) = current.take() {
                finish(c, &mut rows);
            }
        }
        let c = current.get_or_insert_with(|| (topic.clone(), Vec::new(), 0));
        let remain = (f.high - f.position()).max(0);
        c.2 += remain;
        total += remain;
        c.1.push(json!({
            "partition": {"cluter": alias, "topic": topic, "partition": p},
            "offset": {"offset": f.position(), "max_offset": f.high},
        }));
    }
    if let Some(c) = current.take() {
        finish(c, &mut rows);
    }
    (rows, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(next: i64, high: i64) -> PartitionFigures {
        PartitionFigures {
            target_topic: String::new(),
            next,
            high,
            empty_to: 0,
        }
    }

    #[test]
    fn kafka_rows_count_an_end_without_records_as_copied() {
        let mut marked = figures(10, 12);
        marked.empty_to = 12;
        let parts = std::collections::BTreeMap::from([
            (("t".to_string(), 0), figures(5, 9)),
            (("t".to_string(), 1), marked),
            (("u".to_string(), 0), figures(3, 4)),
        ]);
        let (rows, total) = kafka_sync_rows(&parts, &json!("dr"));
        assert_eq!(total, 5);
        assert_eq!(rows[0].1["sync_remain_num"], 4);
        assert_eq!(
            rows[0].1["offset_details"][1]["offset"],
            json!({"offset": 12, "max_offset": 12})
        );
        assert_eq!(rows[1].1["sync_remain_num"], 1);
    }

    #[test]
    fn rocketmq_rows_group_queues_by_topic() {
        let queues = std::collections::BTreeMap::from([
            (("orders@broker-a".to_string(), 0), figures(5, 9)),
            (("orders@broker-a".to_string(), 1), figures(7, 7)),
            (("orders@broker-b".to_string(), 0), figures(1, 3)),
            (("pay@broker-a".to_string(), 0), figures(4, 4)),
        ]);
        let (rows, total) = rocketmq_sync_rows(&queues);
        assert_eq!(total, 6);
        let names: Vec<&str> = rows.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(names, ["orders", "pay"]);
        let orders = &rows[0].1;
        assert_eq!(orders["number"], 3);
        assert_eq!(orders["sync_remain_num"], 6);
        assert_eq!(
            orders["offset_details"][2],
            json!({"queue": {"rocketmq_topic": "orders", "rocketmq_broker": "broker-b",
                             "rocketmq_queue": 0},
                   "offset": {"rocketmq_offset": 1, "max_offset": 3}})
        );
        assert_eq!(rows[1].1["sync_remain_num"], 0);
    }
}
