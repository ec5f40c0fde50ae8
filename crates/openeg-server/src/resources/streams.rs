//! Event streams (ops 56–61, `docs/limits.md`).
//!
//! A stream document is stored in its `EventStreamingDetail` wire shape with secrets sealed
//! (`password`, `secret_key`, `ssl_certificate_pwd`, `sink_obs.access_key`). Body validation is
//! `openeg_api::stream`; this module adds the project checks (unique name, KAFKA connection of
//! `sink_kafka.connectionId`, the fixed ceiling of 100 streams).
//!
//! START/PAUSE record the desired state (`_desired`: `RUNNING` / `STOPPED`) and tell the
//! engine, whose supervisor starts or stops the stream's work; from then on `status` is the
//! supervisor's runtime status ([`stream_view`]). The stored `status` (`CREATED`) is shown until
//! the first operation. No stream runtime exists in this build, so a started stream shows
//! `ERROR` (nothing moves data), a paused one `STOPPED`.

use super::{get_or_404, render};
use crate::error::ApiResult;
use crate::openapi::{paging_no_sort, s, Access, Op};
use crate::state::{AppState, Tenant};
use crate::util::{fmt_time, json_body, list_reply, new_id, no_content, now_ms, ok, Params, Query};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use openeg_api::field::Fields;
use openeg_api::stream::{self, StreamSpec};
use openeg_api::validate::{self, NamePattern};
use openeg_api::EgError;
use openeg_engine::supervisor::NOT_RUN_CODE;
use openeg_engine::{ResourceKind, RunState, TaskKind};
use openeg_rules::TransformUse;
use openeg_store::{Document, Kind, ListQuery, QuotaCheck, SortKey};
use serde_json::{json, Map, Value};

/// Fixed ceiling of event streams per project (`docs/limits.md`).
const MAX_STREAMS: u64 = 100;

pub fn ops() -> Vec<Op> {
    const T: &str = "Event streams";
    let one = "/v1/{project_id}/eventstreamings/{eventstreaming_id}";
    let id_reply = || {
        s::req(
            s::obj(&[("eventStreamingID", s::string())]),
            &["eventStreamingID"],
        )
    };
    let detail = s::req(
        s::obj(&[
            ("id", s::string()),
            ("name", s::string()),
            ("description", s::string()),
            ("source", s::any_object()),
            ("sink", s::any_object()),
            ("rule_config", s::any_object()),
            ("option", s::any_object()),
            (
                "status",
                s::one_of(&["CREATED", "RUNNING", "ERROR", "STOPPED"]),
            ),
            ("created_time", s::time()),
            ("updated_time", s::time()),
            ("error_info", s::error_info()),
        ]),
        &["id", "name", "status"],
    );
    vec![
        Op::post(
            "CreateEventStreaming",
            "/v1/{project_id}/eventstreamings",
            create,
        )
        .summary(T, "Create an event stream (one source, one sink)")
        .body(request_schema())
        .ok(id_reply()),
        Op::get(
            "ListEventStreaming",
            "/v1/{project_id}/eventstreamings",
            list,
        )
        .summary(T, "List event streams")
        .params(paging_no_sort())
        .ok(s::list(detail.clone())),
        Op::put("UpdateEventStreaming", one, update)
            .summary(T, "Replace an event stream's configuration")
            .body(request_schema())
            .ok(id_reply()),
        Op::get("ShowEventStreaming", one, show)
            .summary(T, "Show an event stream")
            .ok(detail),
        Op::get(
            "ShowEventStreamingStatus",
            "/openeg/v1/eventstreamings/{eventstreaming_id}/status",
            runtime,
        )
        .summary(
            "OpenEG",
            "An event stream's runtime: status, error_info, the node running it and its \
             figures there (records read, filtered, written, skipped; failed sink calls; consumer \
             lag)",
        )
        .extension()
        .access(Access::Credential)
        .ok(s::req(
            s::obj(&[
                ("id", s::string()),
                (
                    "status",
                    s::one_of(&["CREATED", "RUNNING", "ERROR", "STOPPED"]),
                ),
                ("error_info", s::any_object()),
                ("node", s::string()),
                ("records_read", s::int()),
                ("records_filtered", s::int()),
                ("records_written", s::int()),
                ("records_skipped", s::int()),
                ("sink_failures", s::int()),
                // Records after the committed position; null while not known.
                ("lag", s::any()),
                ("last_error", s::any()),
            ]),
            &["id", "status", "node"],
        ))
        .errors(&[401, 404]),
        Op::delete("DeleteEventStreaming", one, delete).summary(T, "Delete an event stream"),
        Op::post(
            "ResumeEventStreaming",
            "/v1/{project_id}/eventstreamings/operate/{eventstreaming_id}",
            resume,
        )
        .summary(T, "Start or pause an event stream")
        .body(s::req(
            s::obj(&[("operation", s::one_of(&stream::OPERATIONS.map(|(o, _)| o)))]),
            &["operation"],
        ))
        .ok(id_reply()),
    ]
}

/// One detail member from the validator's field table.
fn fields_schema(fields: &[stream::Field]) -> Value {
    let props: Vec<(&str, Value)> = fields
        .iter()
        .map(|(name, ty, _, _)| {
            let v = match *ty {
                stream::Ty::Str(n) => s::max(n),
                stream::Ty::Enum(e) => s::one_of(e),
                stream::Ty::Bool => s::boolean(),
                stream::Ty::Int(min, max) => s::int_range(min, max),
            };
            (*name, v)
        })
        .collect();
    let required: Vec<&str> = fields.iter().filter(|f| f.2).map(|f| f.0).collect();
    let mut o = s::obj(&props);
    if !required.is_empty() {
        o = s::req(o, &required);
    }
    o
}

/// `source` / `sink`: exactly one member, with the matching optional `name`.
fn side_schema(table: &[(&str, &str, &[stream::Field])]) -> Value {
    let variants: Vec<Value> = table
        .iter()
        .map(|(member, canonical, fields)| {
            let mut m = fields_schema(fields);
            if *member == "sink_kafka" {
                m["properties"]["keyTransform"] =
                    s::array(s::transform(TransformUse::Key.allowed_types()));
            }
            json!({
                "type": "object",
                "required": [member],
                "properties": {"name": s::one_of(&[canonical]), *member: m},
                "additionalProperties": false,
            })
        })
        .collect();
    json!({ "oneOf": variants })
}

/// `EventStreamingCreateReq` / `EventStreamingUpdateReq` (identical).
fn request_schema() -> Value {
    s::req(
        s::obj(&[
            ("name", s::name(NamePattern::Mixed)),
            ("description", s::max(stream::DESCRIPTION_MAX)),
            ("source", side_schema(stream::SOURCES)),
            ("sink", side_schema(stream::SINKS)),
            (
                "rule_config",
                s::obj(&[
                    (
                        "transform",
                        s::transform(TransformUse::Payload.allowed_types()),
                    ),
                    (
                        "filter",
                        s::doc(s::any_object(), "filter rule (see docs/filter-rules.md)"),
                    ),
                ]),
            ),
            (
                "option",
                s::obj(&[
                    ("thread_num", s::int_range(1, stream::MAX_THREADS)),
                    (
                        "batch_window",
                        s::obj(
                            &stream::BATCH_WINDOW.map(|(k, min, max)| (k, s::int_range(min, max))),
                        ),
                    ),
                ]),
            ),
        ]),
        &["name", "source", "sink"],
    )
}

/// A stream as the API shows it: the stored document, with `status` from the supervisor once
/// the stream was started or paused.
fn stream_view(st: &AppState, rec: &Document) -> Value {
    let mut v = render(&rec.body);
    if let Value::Object(m) = &mut v {
        let (status, error_info) = runtime_view(st, rec);
        if let Some(status) = status {
            m.insert("status".into(), status.into());
        }
        if let Some(info) = error_info {
            m.insert("error_info".into(), info);
        }
    }
    v
}

/// The status a started or paused stream shows (from the supervisor), and its `error_info`
/// (an OpenEG extension, present while `ERROR`: the reason in `error_detail`). `None`: the
/// stored status stands (never operated).
fn runtime_view(st: &AppState, rec: &Document) -> (Option<&'static str>, Option<Value>) {
    if rec.body.get("_desired").is_none() {
        return (None, None);
    }
    let Some(rs) = st.runtime_status(TaskKind::EventStream, rec) else {
        return (None, None);
    };
    match rs.state {
        RunState::Running => (Some("RUNNING"), None),
        RunState::Stopped => (Some("STOPPED"), None),
        RunState::Error => {
            let (code, detail) = rs
                .error
                .map(|e| (e.code, e.message))
                .unwrap_or_else(|| (NOT_RUN_CODE.to_string(), "the stream is not running".into()));
            (
                Some("ERROR"),
                Some(
                    json!({"error_code": code, "error_msg": "internal server error",
                            "error_detail": detail}),
                ),
            )
        }
    }
}

/// `GET /openeg/v1/eventstreamings/{eventstreaming_id}/status`: the status, the node that
/// runs the stream and what it did there (figures of this node: zero through another node).
async fn runtime(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
) -> ApiResult<Response> {
    let id = p.get("eventstreaming_id");
    let rec = get_or_404(&st, &t.project_id, Kind::EventStream, id).await?;
    let (status, error_info) = runtime_view(&st, &rec);
    let status = status
        .map(str::to_string)
        .or_else(|| {
            rec.body
                .get("status")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "CREATED".into());
    let node = st
        .runtime_status(TaskKind::EventStream, &rec)
        .map(|r| r.node_name)
        .unwrap_or_default();
    let figures = st
        .engine
        .as_ref()
        .and_then(|e| e.metrics.stream_figures(&rec.id));
    let n = |f: fn(&openeg_engine::metrics::StreamFigures) -> u64| {
        figures.as_deref().map(f).unwrap_or(0)
    };
    let last_error = figures
        .as_deref()
        .and_then(|f| f.last_error.lock().ok().and_then(|e| e.clone()));
    Ok(ok(json!({
        "id": rec.id,
        "status": status,
        "error_info": error_info.unwrap_or_else(|| json!({})),
        "node": node,
        "records_read": n(|f| f.read.get()),
        "records_filtered": n(|f| f.filtered.get()),
        "records_written": n(|f| f.written.get()),
        "records_skipped": n(|f| f.skipped.get()),
        "sink_failures": n(|f| f.sink_failures.get()),
        "lag": figures.as_deref().and_then(|f| f.lag()),
        "last_error": last_error,
    })))
}

fn id_reply(id: &str) -> Response {
    ok(json!({ "eventStreamingID": id }))
}

/// Validates the body and the project references (the Kafka sink's connection).
async fn parse_body(st: &AppState, project_id: &str, body: &Bytes) -> ApiResult<StreamSpec> {
    let v = json_body(body)?;
    let spec = stream::parse(&v)?;
    if let Some(cid) = &spec.kafka_connection_id {
        let conn = st.store.get(project_id, Kind::Connection, cid).await?;
        let is_kafka = conn
            .as_ref()
            .and_then(|c| c.body.get("type"))
            .and_then(Value::as_str)
            == Some("KAFKA");
        if !is_kafka {
            return Err(EgError::param(format!(
                "sink.sink_kafka.connectionId {cid} is not a KAFKA connection of this project"
            ))
            .into());
        }
    }
    Ok(spec)
}

fn refs(spec: &StreamSpec) -> Vec<String> {
    spec.kafka_connection_id
        .iter()
        .map(|c| format!("connection:{c}"))
        .collect()
}

async fn create(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    body: Bytes,
) -> ApiResult<Response> {
    let spec = parse_body(&st, &t.project_id, &body).await?;
    let now = now_ms();
    let id = new_id();
    let mut doc = spec.doc.clone();
    doc.insert("status".into(), "CREATED".into());
    doc.insert("id".into(), id.clone().into());
    doc.insert("created_time".into(), fmt_time(now).into());
    doc.insert("updated_time".into(), fmt_time(now).into());
    let mut body = Value::Object(doc);
    crate::secrets::seal(&mut body, None, &st.secrets)?;
    let rec = Document {
        project_id: t.project_id.clone(),
        kind: Kind::EventStream,
        id: id.clone(),
        name: spec.name.clone(),
        parent_id: None,
        created_at: now,
        updated_at: now,
        body,
        refs: refs(&spec),
    };
    let quota = QuotaCheck {
        quota: "EVENT_STREAMING",
        kind: Kind::EventStream,
        parent_id: None,
        body_eq: None,
        max: MAX_STREAMS,
    };
    st.store.insert(&rec, &[quota]).await?;
    st.resource_changed(ResourceKind::EventStream, &rec.project_id, &id)
        .await;
    Ok(id_reply(&id))
}

async fn list(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    q: Query,
) -> ApiResult<Response> {
    let paging = validate::paging(q.get("offset"), q.get("limit"), None)?;
    let lq = ListQuery {
        sort: SortKey::CreatedAt,
        descending: true,
        offset: paging.offset,
        limit: Some(paging.limit),
        ..Default::default()
    };
    let (total, recs) = st.store.list(&t.project_id, Kind::EventStream, &lq).await?;
    Ok(list_reply(
        total,
        recs.iter().map(|r| stream_view(&st, r)).collect(),
    ))
}

async fn show(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
) -> ApiResult<Response> {
    let eventstreaming_id = p.get("eventstreaming_id");
    let rec = get_or_404(&st, &t.project_id, Kind::EventStream, eventstreaming_id).await?;
    Ok(ok(stream_view(&st, &rec)))
}

async fn update(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
    body: Bytes,
) -> ApiResult<Response> {
    let eventstreaming_id = p.get("eventstreaming_id");
    let mut rec = get_or_404(&st, &t.project_id, Kind::EventStream, eventstreaming_id).await?;
    let spec = parse_body(&st, &t.project_id, &body).await?;
    let now = now_ms();
    let mut doc: Map<String, Value> = spec.doc.clone();
    for k in ["status", "_desired", "id", "created_time"] {
        if let Some(v) = rec.body.get(k) {
            doc.insert(k.into(), v.clone());
        }
    }
    doc.insert("updated_time".into(), fmt_time(now).into());
    let mut new_body = Value::Object(doc);
    crate::secrets::seal(&mut new_body, Some(&rec.body), &st.secrets)?;
    rec.name = spec.name.clone();
    rec.body = new_body;
    rec.refs = refs(&spec);
    rec.updated_at = now;
    if !st.store.update(&rec).await? {
        return Err(EgError::not_found("event stream does not exist").into());
    }
    st.resource_changed(ResourceKind::EventStream, &rec.project_id, &rec.id)
        .await;
    Ok(id_reply(&rec.id))
}

async fn delete(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
) -> ApiResult<Response> {
    let eventstreaming_id = p.get("eventstreaming_id");
    let rec = get_or_404(&st, &t.project_id, Kind::EventStream, eventstreaming_id).await?;
    st.store
        .delete(&t.project_id, Kind::EventStream, &rec.id)
        .await?;
    // Stops the stream's work, if any.
    st.resource_changed(ResourceKind::EventStream, &rec.project_id, &rec.id)
        .await;
    Ok(no_content())
}

async fn resume(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
    body: Bytes,
) -> ApiResult<Response> {
    let eventstreaming_id = p.get("eventstreaming_id");
    let mut rec = get_or_404(&st, &t.project_id, Kind::EventStream, eventstreaming_id).await?;
    let v = json_body(&body)?;
    let src = Fields::body(&v)?.map();
    let desired = stream::operation_status(src.get("operation"))?;
    // The desired state is stored; the status shown is the supervisor's (`stream_view`).
    // Repeating the current operation changes nothing (not even `updated_time`).
    if rec.body.get("_desired").and_then(Value::as_str) != Some(desired) {
        let now = now_ms();
        if let Value::Object(doc) = &mut rec.body {
            doc.insert("_desired".into(), desired.into());
            doc.insert("updated_time".into(), fmt_time(now).into());
        }
        rec.updated_at = now;
        if !st.store.update(&rec).await? {
            return Err(EgError::not_found("event stream does not exist").into());
        }
        st.resource_changed(ResourceKind::EventStream, &rec.project_id, &rec.id)
            .await;
    }
    Ok(id_reply(&rec.id))
}
