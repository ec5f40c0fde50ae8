//! Event sources (ops 23–27).
//!
//! Custom sources are `Kind::Source` records (name = source name, parent = channel id) whose
//! body is the `CustomizeSourceInfo` wire document with secrets sealed.
//!
//! Official (`HC.`) sources are not stored as such: ListEventSources synthesizes them from a
//! built-in catalogue ([`CATALOGUE`]) plus every official source this project uses (refs
//! `official:<name>` held by subscriptions, and `Kind::Source` records with `provider_type`
//! `OFFICIAL` written by [`record_official_source`]). Their ids are derived from the name
//! ([`official_source_id`]), so the same name always has the same id.

use super::{get_or_404, pick, save_update};
use crate::error::ApiResult;
use crate::openapi::{paging, query, s, Op};
use crate::projects::DEFAULT_CHANNEL;
use crate::secrets::seal;
use crate::state::{AppState, Tenant};
use crate::util::{
    fmt_time, json_body, list_query, list_reply, new_id, no_content, now_ms, ok, Params, Query,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use openeg_api::source::{self, SourceType};
use openeg_api::validate::{NamePattern, Paging, SortField};
use openeg_api::EgError;
use openeg_engine::supervisor::NOT_RUN_CODE;
use openeg_engine::{ResourceKind, RunState, TaskKind};
use openeg_store::{Document, Kind, ListQuery, QuotaCheck, StoreError};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// Members of `CustomizeSourceInfo`, in wire order.
const INFO: &[&str] = &[
    "id",
    "name",
    "label",
    "description",
    "provider_type",
    "event_types",
    "created_time",
    "updated_time",
    "channel_id",
    "channel_name",
    "type",
    "detail",
    "status",
    "error_info",
];

/// Reference key prefix subscriptions use for the official sources they consume.
pub const OFFICIAL_REF_PREFIX: &str = "official:";

/// One entry of the built-in official source catalogue.
pub struct OfficialSource {
    pub name: &'static str,
    pub label: &'static str,
    pub description: &'static str,
    /// (event type name, description)
    pub event_types: &'static [(&'static str, &'static str)],
}

/// Built-in official sources listed in every project [dec].
pub const CATALOGUE: &[OfficialSource] = &[
    OfficialSource {
        name: "HC.OBS",
        label: "Object Storage Service (OBS)",
        description: "Events of the Object Storage Service",
        event_types: &[
            ("OBS:CloudTrace:ApiCall", "OBS API call"),
            ("OBS:CloudTrace:ConsoleAction", "OBS console action"),
            ("OBS:DICE:ObjectCreated:Put", "object uploaded with PUT"),
            ("OBS:DICE:ObjectRemoved:Delete", "object deleted"),
        ],
    },
    OfficialSource {
        name: "HC.SMN",
        label: "Simple Message Notification (SMN)",
        description: "Events of the Simple Message Notification service",
        event_types: &[
            ("SMN:CloudTrace:ApiCall", "SMN API call"),
            ("SMN:CloudTrace:ConsoleAction", "SMN console action"),
        ],
    },
    OfficialSource {
        name: "HC.FunctionGraph",
        label: "FunctionGraph",
        description: "Events of the FunctionGraph service",
        event_types: &[
            ("FunctionGraph:CloudTrace:ApiCall", "FunctionGraph API call"),
            (
                "FunctionGraph:CloudTrace:ConsoleAction",
                "FunctionGraph console action",
            ),
        ],
    },
    OfficialSource {
        name: "HC.APIGW",
        label: "API Gateway (APIG)",
        description: "Events of the API Gateway service",
        event_types: &[
            ("APIGW:CloudTrace:ApiCall", "API Gateway API call"),
            (
                "APIGW:CloudTrace:ConsoleAction",
                "API Gateway console action",
            ),
        ],
    },
];

/// Creation time shown for catalogue entries (the date of the v1 API).
const CATALOGUE_CREATED_MS: i64 = 1_650_370_810_000; // 2022-04-19T12:20:10Z

pub fn ops() -> Vec<Op> {
    const T: &str = "Event sources";
    let one = "/v1/{project_id}/sources/{source_id}";
    let types = [
        SourceType::Application,
        SourceType::Rabbitmq,
        SourceType::Rocketmq,
    ]
    .map(SourceType::as_str);
    vec![
        Op::post("CreateEventSource", "/v1/{project_id}/sources", create)
            .summary(T, "Create a custom event source on a custom channel")
            .body(s::req(
                s::obj(&[
                    ("name", s::name(NamePattern::Lower)),
                    ("description", s::max(source::DESCRIPTION_MAX)),
                    ("channel_id", s::string()),
                    ("type", s::one_of(&types)),
                    ("detail", detail_schema()),
                ]),
                &["name", "channel_id"],
            ))
            .ok(info_schema()),
        Op::get("ListEventSources", "/v1/{project_id}/sources", list)
            .summary(T, "List custom and official event sources")
            .params(paging())
            .params([
                query("channel_id", s::string()),
                query(
                    "provider_type",
                    s::one_of(&["OFFICIAL", "CUSTOM", "PARTNER"]),
                ),
                query("name", s::string()),
                query("fuzzy_name", s::string()),
                query("fuzzy_label", s::string()),
            ])
            .ok(s::list(info_schema())),
        Op::put("UpdateEventSource", one, update)
            .summary(
                T,
                "Update the description or broker detail of a custom source",
            )
            .body(s::obj(&[
                ("description", s::max(source::DESCRIPTION_MAX)),
                ("detail", detail_schema()),
            ]))
            .ok(info_schema()),
        Op::get("ShowDetailOfEventSource", one, show)
            .summary(T, "Show an event source")
            .ok(info_schema()),
        Op::delete("DeleteEventSource", one, delete)
            .summary(T, "Delete a custom source no subscription uses")
            .errors(&[409]),
    ]
}

/// `detail` of RABBITMQ / ROCKETMQ sources (the union of both).
fn detail_schema() -> Value {
    let st = s::string;
    s::doc(
        s::obj(&[
            ("instance_id", st()),
            ("group", st()),
            ("topic", st()),
            ("access_key", st()),
            ("secret_key", st()),
            ("vpc_id", st()),
            ("subnet_id", st()),
            ("namesrv_address", st()),
            ("ssl_enable", s::boolean()),
            ("enable_acl", s::boolean()),
            ("vhost_name", st()),
            ("queue_name", st()),
            ("user_name", st()),
            ("password", st()),
        ]),
        &format!(
            "broker settings of RABBITMQ and ROCKETMQ sources, at most {} bytes serialized",
            source::DETAIL_MAX_BYTES
        ),
    )
}

/// `CustomizeSourceInfo`.
fn info_schema() -> Value {
    s::req(
        s::obj(&[
            ("id", s::string()),
            ("name", s::string()),
            ("label", s::string()),
            ("description", s::string()),
            (
                "provider_type",
                s::one_of(&["CUSTOM", "OFFICIAL", "PARTNER"]),
            ),
            (
                "event_types",
                s::array(s::obj(&[
                    ("name", s::string()),
                    ("description", s::string()),
                ])),
            ),
            ("created_time", s::time()),
            ("updated_time", s::time()),
            ("channel_id", s::string()),
            ("channel_name", s::string()),
            ("type", s::string()),
            ("detail", s::any_object()),
            ("status", s::one_of(&["RUNNING", "CREATE_FAILED", "ERROR"])),
            ("error_info", s::error_info()),
        ]),
        &["id", "name", "provider_type"],
    )
}

/// Stable UUID-shaped id of an official source: SHA-256 of the name with the version and
/// variant bits of a v4 UUID, so it looks like every other id and never changes.
pub fn official_source_id(name: &str) -> String {
    let d = Sha256::new()
        .chain_update(b"openeg:official-source:")
        .chain_update(name.as_bytes())
        .finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b).to_string()
}

/// Records that this project used official source `name` (e.g. from PutOfficialEvents), so
/// that ListEventSources shows it even without a subscription. Idempotent.
pub async fn record_official_source(st: &AppState, project_id: &str, name: &str) -> ApiResult<()> {
    if st
        .store
        .get_by_name(project_id, Kind::Source, name)
        .await?
        .is_some()
    {
        return Ok(());
    }
    let default_id = default_channel_id(st, project_id).await?;
    let now = now_ms();
    let id = official_source_id(name);
    let rec = Document {
        project_id: project_id.to_string(),
        kind: Kind::Source,
        id: id.clone(),
        name: name.to_string(),
        parent_id: Some(default_id.clone()),
        created_at: now,
        updated_at: now,
        body: official_doc(name, now, &default_id),
        refs: Vec::new(),
    };
    match st.store.insert(&rec, &[]).await {
        Ok(()) | Err(StoreError::Duplicate) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn default_channel_id(st: &AppState, project_id: &str) -> ApiResult<String> {
    Ok(st
        .store
        .get_by_name(project_id, Kind::Channel, DEFAULT_CHANNEL)
        .await?
        .map(|r| r.id)
        .unwrap_or_default())
}

/// The `CustomizeSourceInfo` document of an official source.
fn official_doc(name: &str, created_ms: i64, default_channel_id: &str) -> Value {
    let cat = CATALOGUE.iter().find(|c| c.name == name);
    let event_types: Vec<Value> = cat
        .map(|c| {
            c.event_types
                .iter()
                .map(|(n, d)| json!({"name": n, "description": d}))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "id": official_source_id(name),
        "name": name,
        "label": cat.map(|c| c.label).unwrap_or(name),
        "description": cat.map(|c| c.description).unwrap_or(""),
        "provider_type": "OFFICIAL",
        "event_types": event_types,
        "created_time": fmt_time(created_ms),
        "updated_time": fmt_time(created_ms),
        "channel_id": default_channel_id,
        "channel_name": DEFAULT_CHANNEL,
        "status": "RUNNING",
        "error_info": {},
    })
}

/// `error_msg` of a source's `error_info`: EG's fixed message of `EG.00511000`, the code the
/// supervisor reports for work that does not run (an infrastructure condition, not a
/// configuration error); the reason is `error_detail`.
const NOT_RUN_MSG: &str = "internal server error";

/// `status` and `error_info` of a custom source as they are now, from the engine's
/// supervisor ([`AppState::runtime_status`]). APPLICATION sources are not supervised: PutEvents
/// is their runtime, so they are `RUNNING` whenever the server is. Broker sources (RabbitMQ,
/// RocketMQ) need a consumer of the user's broker: `RUNNING` only while it is connected and
/// consuming (RabbitMQ), else `ERROR` with the last failure or the reason none runs.
fn runtime_view(st: &AppState, rec: &Document) -> (&'static str, Value) {
    let Some(rs) = st.runtime_status(TaskKind::EventSource, rec) else {
        return ("RUNNING", json!({}));
    };
    let info = |code: &str, detail: &str| json!({"error_code": code, "error_msg": NOT_RUN_MSG, "error_detail": detail});
    match (rs.state, rs.error) {
        (RunState::Running, _) => ("RUNNING", json!({})),
        (RunState::Error, Some(e)) => ("ERROR", info(&e.code, &e.message)),
        (RunState::Error, None) => ("ERROR", info(NOT_RUN_CODE, "the source is not running")),
        (RunState::Stopped, _) => ("ERROR", info(NOT_RUN_CODE, "the source is stopped")),
    }
}

/// A custom source as the API shows it: the stored document with the status of now
/// (documents stored by older versions said `RUNNING` for every type).
fn source_view(st: &AppState, rec: &Document) -> Value {
    let mut v = pick(&rec.body, INFO);
    let ty = rec
        .body
        .get("type")
        .and_then(Value::as_str)
        .and_then(SourceType::parse);
    if let (Some(_), Value::Object(m)) = (ty, &mut v) {
        let (status, error_info) = runtime_view(st, rec);
        m.insert("status".into(), status.into());
        m.insert("error_info".into(), error_info);
    }
    v
}

/// One listing entry with its sort keys.
struct Entry {
    created: i64,
    updated: i64,
    name: String,
    id: String,
    doc: Value,
}

/// Every official source of the project: the catalogue, those subscriptions use, and those
/// recorded as used. The earliest use gives the creation time of non-catalogue entries.
async fn official_entries(st: &AppState, project_id: &str) -> ApiResult<Vec<Entry>> {
    let mut used: BTreeMap<String, i64> = CATALOGUE
        .iter()
        .map(|c| (c.name.to_string(), CATALOGUE_CREATED_MS))
        .collect();
    let all = ListQuery::default();
    let (_, subs) = st.store.list(project_id, Kind::Subscription, &all).await?;
    for s in &subs {
        for r in &s.refs {
            if let Some(n) = r.strip_prefix(OFFICIAL_REF_PREFIX) {
                let e = used.entry(n.to_string()).or_insert(s.created_at);
                *e = (*e).min(s.created_at);
            }
        }
    }
    let recorded = ListQuery {
        body_eq: vec![("provider_type".into(), "OFFICIAL".into())],
        ..Default::default()
    };
    let (_, recs) = st.store.list(project_id, Kind::Source, &recorded).await?;
    for r in &recs {
        let e = used.entry(r.name.clone()).or_insert(r.created_at);
        *e = (*e).min(r.created_at);
    }
    let default_id = default_channel_id(st, project_id).await?;
    Ok(used
        .into_iter()
        .map(|(name, at)| Entry {
            created: at,
            updated: at,
            id: official_source_id(&name),
            doc: official_doc(&name, at, &default_id),
            name,
        })
        .collect())
}

/// The official source with this id, if the project has it.
async fn official_by_id(st: &AppState, project_id: &str, id: &str) -> ApiResult<Option<Value>> {
    Ok(official_entries(st, project_id)
        .await?
        .into_iter()
        .find(|e| e.id == id)
        .map(|e| e.doc))
}

fn is_official(rec: &Document) -> bool {
    rec.body.get("provider_type").and_then(Value::as_str) == Some("OFFICIAL")
}

async fn create(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    body: Bytes,
) -> ApiResult<Response> {
    let v = json_body(&body)?;
    // The channel is looked up first so validation can report fields in table order.
    let channel = match v.get("channel_id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => st
            .store
            .get(&t.project_id, Kind::Channel, id)
            .await?
            .filter(|c| c.name != DEFAULT_CHANNEL),
        _ => None,
    };
    let req = source::parse_create(&v, |id| channel.as_ref().is_some_and(|c| c.id == id))?;
    let Some(channel) = channel else {
        return Err(EgError::channel("channel_id is required").into());
    };
    let mut detail = Value::Object(req.detail);
    seal(&mut detail, None, &st.secrets)?;

    if st
        .store
        .get_by_name(&t.project_id, Kind::Source, &req.name)
        .await?
        .is_some()
    {
        return Err(StoreError::Duplicate.into());
    }
    let now = now_ms();
    let id = new_id();
    // `status` and `error_info` are not stored: they are the runtime's (see `source_view`).
    let doc = json!({
        "id": id,
        "name": req.name,
        "label": req.name,
        "description": req.description,
        "provider_type": "CUSTOM",
        "event_types": [],
        "created_time": fmt_time(now),
        "updated_time": fmt_time(now),
        "channel_id": channel.id,
        "channel_name": channel.name,
        "type": req.source_type.as_str(),
        "detail": detail,
    });
    let rec = Document {
        project_id: t.project_id.clone(),
        kind: Kind::Source,
        id,
        name: req.name.clone(),
        parent_id: Some(channel.id.clone()),
        created_at: now,
        updated_at: now,
        body: doc,
        refs: Vec::new(),
    };
    let mut quotas = vec![QuotaCheck {
        quota: "SOURCE",
        kind: Kind::Source,
        parent_id: None,
        body_eq: Some(("provider_type".into(), "CUSTOM".into())),
        max: st.cfg.quotas.source,
    }];
    if let Some(q) = req.source_type.quota() {
        quotas.push(QuotaCheck {
            quota: q,
            kind: Kind::Source,
            parent_id: None,
            body_eq: Some(("type".into(), req.source_type.as_str().into())),
            max: match req.source_type {
                SourceType::Rabbitmq => st.cfg.quotas.source_rabbitmq,
                _ => st.cfg.quotas.source_rocketmq,
            },
        });
    }
    st.store.insert(&rec, &quotas).await?;
    st.invalidate_publish_cache(&t.project_id);
    st.resource_changed(ResourceKind::EventSource, &rec.project_id, &rec.id)
        .await;
    Ok(ok(source_view(&st, &rec)))
}

/// Total order of listing entries: the sort key, ties by id, both in the requested direction.
fn compare(a: &Entry, b: &Entry, p: &Paging) -> Ordering {
    let o = match p.sort {
        SortField::CreatedTime => a.created.cmp(&b.created),
        SortField::UpdatedTime => a.updated.cmp(&b.updated),
        SortField::Name => a.name.as_bytes().cmp(b.name.as_bytes()),
    }
    .then_with(|| a.id.cmp(&b.id));
    if p.descending {
        o.reverse()
    } else {
        o
    }
}

fn contains_ci(hay: &str, needle: &str) -> bool {
    hay.to_ascii_lowercase()
        .contains(&needle.to_ascii_lowercase())
}

async fn list(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    q: Query,
) -> ApiResult<Response> {
    let paging = q.paging()?;
    let provider = q.one_of("provider_type", &["OFFICIAL", "CUSTOM", "PARTNER"])?;
    let mut lq = list_query(&q, &paging);
    lq.body_eq.push(("provider_type".into(), "CUSTOM".into()));
    if let Some(c) = q.get("channel_id") {
        lq.parent_id = Some(c.to_string());
    }
    if let Some(l) = q.get("fuzzy_label") {
        lq.body_contains.push(("label".into(), l.to_string()));
    }
    match provider.as_deref() {
        Some("CUSTOM") => {
            let (total, recs) = st.store.list(&t.project_id, Kind::Source, &lq).await?;
            return Ok(list_reply(
                total,
                recs.iter().map(|r| source_view(&st, r)).collect(),
            ));
        }
        Some("PARTNER") => return Ok(list_reply(0, Vec::new())),
        _ => {}
    }
    // Official entries are synthesized, so merge, sort and page in memory.
    let mut entries: Vec<Entry> = Vec::new();
    if provider.is_none() {
        let all = ListQuery {
            offset: 0,
            limit: None,
            ..lq.clone()
        };
        let (_, recs) = st.store.list(&t.project_id, Kind::Source, &all).await?;
        entries.extend(recs.into_iter().map(|r| Entry {
            created: r.created_at,
            updated: r.updated_at,
            doc: source_view(&st, &r),
            id: r.id,
            name: r.name,
        }));
    }
    for e in official_entries(&st, &t.project_id).await? {
        let label = e.doc.get("label").and_then(Value::as_str).unwrap_or("");
        let channel = e
            .doc
            .get("channel_id")
            .and_then(Value::as_str)
            .unwrap_or("");
        let keep = q.get("name").is_none_or(|n| n == e.name)
            && q.get("fuzzy_name").is_none_or(|f| contains_ci(&e.name, f))
            && q.get("fuzzy_label").is_none_or(|f| contains_ci(label, f))
            && q.get("channel_id").is_none_or(|c| c == channel);
        if keep {
            entries.push(e);
        }
    }
    entries.sort_by(|a, b| compare(a, b, &paging));
    let total = entries.len() as u64;
    let items = entries
        .into_iter()
        .skip(usize::try_from(paging.offset).unwrap_or(usize::MAX))
        .take(usize::try_from(paging.limit).unwrap_or(usize::MAX))
        .map(|e| e.doc)
        .collect();
    Ok(list_reply(total, items))
}

async fn show(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
) -> ApiResult<Response> {
    let id = p.get("source_id");
    if let Some(rec) = st.store.get(&t.project_id, Kind::Source, id).await? {
        if is_official(&rec) {
            // Render through the catalogue so the document stays current.
            if let Some(doc) = official_by_id(&st, &t.project_id, id).await? {
                return Ok(ok(doc));
            }
        }
        return Ok(ok(source_view(&st, &rec)));
    }
    match official_by_id(&st, &t.project_id, id).await? {
        Some(doc) => Ok(ok(doc)),
        None => Err(EgError::not_found(format!("source {id} does not exist")).into()),
    }
}

/// Loads a custom source for update/delete: official sources are 403, unknown ids 404.
async fn custom_or_error(
    st: &AppState,
    project_id: &str,
    id: &str,
    what: &str,
) -> ApiResult<Document> {
    match st.store.get(project_id, Kind::Source, id).await? {
        Some(rec) if is_official(&rec) => {
            Err(EgError::not_modifiable(format!("official sources cannot be {what}")).into())
        }
        Some(rec) => Ok(rec),
        None => {
            if official_by_id(st, project_id, id).await?.is_some() {
                return Err(
                    EgError::not_modifiable(format!("official sources cannot be {what}")).into(),
                );
            }
            // Same 404 as every other resource.
            get_or_404(st, project_id, Kind::Source, id).await
        }
    }
}

async fn update(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
    body: Bytes,
) -> ApiResult<Response> {
    let mut rec = custom_or_error(&st, &t.project_id, p.get("source_id"), "updated").await?;
    let v = json_body(&body)?;
    let str_of = |k: &str| {
        rec.body
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let stype = SourceType::parse(&str_of("type")).unwrap_or(SourceType::Application);
    let req = source::parse_update(&v, &rec.name, &str_of("channel_id"), stype)?;
    let Value::Object(mut doc) = rec.body.clone() else {
        return Err(EgError::internal().into());
    };
    if let Some(d) = req.description {
        doc.insert("description".into(), d.into());
    }
    if let Some(d) = req.detail {
        let mut detail = Value::Object(d);
        seal(&mut detail, doc.get("detail"), &st.secrets)?;
        doc.insert("detail".into(), detail);
    }
    let now = now_ms();
    save_update(&st, &mut rec, doc, now, "source").await?;
    st.resource_changed(ResourceKind::EventSource, &rec.project_id, &rec.id)
        .await;
    Ok(ok(source_view(&st, &rec)))
}

async fn delete(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
) -> ApiResult<Response> {
    let rec = custom_or_error(&st, &t.project_id, p.get("source_id"), "deleted").await?;
    let users = st
        .store
        .referencing(&t.project_id, &format!("source:{}", rec.name))
        .await?;
    if !users.is_empty() {
        let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).take(5).collect();
        return Err(EgError::conflict(format!(
            "source is used by {} subscription(s): {}",
            users.len(),
            names.join(", ")
        ))
        .into());
    }
    st.store
        .delete(&t.project_id, Kind::Source, &rec.id)
        .await?;
    st.invalidate_publish_cache(&t.project_id);
    st.resource_changed(ResourceKind::EventSource, &rec.project_id, &rec.id)
        .await;
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ServerConfig;
    use crate::testing::{app, call, code, PROJECT};
    use axum::Router;
    use openeg_store::secrets::SecretBox;

    async fn channel(r: &Router, name: &str) -> String {
        let (s, v) = call(r, "POST", "/v1/{p}/channels", Some(json!({"name": name}))).await;
        assert_eq!(s, 200, "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    async fn default_id(r: &Router) -> String {
        let (_, v) = call(r, "GET", "/v1/{p}/channels?name=default", None).await;
        v["items"][0]["id"].as_str().unwrap().to_string()
    }

    fn rocket() -> Value {
        json!({"instance_id": "r", "group": "g", "topic": "t", "access_key": "ak",
               "secret_key": "rmq-secret", "namesrv_address": "127.0.0.1:9", "enable_acl": true})
    }

    #[test]
    fn official_ids_are_stable_v4_shaped() {
        let a = official_source_id("HC.OBS");
        assert_eq!(a, official_source_id("HC.OBS"));
        assert_ne!(a, official_source_id("HC.SMN"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn catalogue_docs() {
        let d = official_doc("HC.OBS", CATALOGUE_CREATED_MS, "ch");
        assert_eq!(d["provider_type"], "OFFICIAL");
        assert_eq!(d["channel_name"], "default");
        assert_eq!(d["created_time"], "2022-04-19T12:20:10Z");
        assert!(!d["event_types"].as_array().unwrap().is_empty());
        let d = official_doc("HC.Other", 0, "ch");
        assert_eq!(d["label"], "HC.Other");
        assert_eq!(d["event_types"], json!([]));
    }

    #[tokio::test]
    async fn application_crud() {
        let (r, _) = app(ServerConfig::default()).await;
        let ch = channel(&r, "ch1").await;
        let (s, v) = call(
            &r,
            "POST",
            "/v1/{p}/sources",
            Some(json!({"name": "app-1", "channel_id": ch, "description": "d"})),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, INFO);
        assert_eq!(
            (
                v["type"].as_str(),
                v["status"].as_str(),
                v["label"].as_str()
            ),
            (Some("APPLICATION"), Some("RUNNING"), Some("app-1"))
        );
        assert_eq!(
            (
                v["channel_name"].as_str(),
                &v["error_info"],
                &v["event_types"]
            ),
            (Some("ch1"), &json!({}), &json!([]))
        );
        let id = v["id"].as_str().unwrap().to_string();
        let (s, g) = call(&r, "GET", &format!("/v1/{{p}}/sources/{id}"), None).await;
        assert_eq!((s, &g), (200, &v));
        let (s, u) = call(
            &r,
            "PUT",
            &format!("/v1/{{p}}/sources/{id}"),
            Some(json!({"description": "new"})),
        )
        .await;
        assert_eq!((s, u["description"].as_str()), (200, Some("new")));
        assert_eq!(u["created_time"], v["created_time"]);
        let (s, u) = call(
            &r,
            "PUT",
            &format!("/v1/{{p}}/sources/{id}"),
            Some(json!({"name": "x"})),
        )
        .await;
        assert_eq!((s, code(&u)), (400, "EG.00513000"));
        // Duplicate (even on another channel).
        let ch2 = channel(&r, "ch2").await;
        let (s, e) = call(
            &r,
            "POST",
            "/v1/{p}/sources",
            Some(json!({"name": "app-1", "channel_id": ch2})),
        )
        .await;
        assert_eq!((s, code(&e)), (400, "EG.00513001"));
        // Channel with a source cannot be deleted.
        let (s, _) = call(&r, "DELETE", &format!("/v1/{{p}}/channels/{ch}"), None).await;
        assert_eq!(s, 409);
        let (s, _) = call(&r, "DELETE", &format!("/v1/{{p}}/sources/{id}"), None).await;
        assert_eq!(s, 204);
        let (s, e) = call(&r, "GET", &format!("/v1/{{p}}/sources/{id}"), None).await;
        assert_eq!((s, code(&e)), (404, "EG.00514001"));
        let (s, e) = call(&r, "DELETE", &format!("/v1/{{p}}/sources/{id}"), None).await;
        assert_eq!((s, code(&e)), (404, "EG.00514001"));
    }

    #[tokio::test]
    async fn channel_errors() {
        let (r, _) = app(ServerConfig::default()).await;
        let def = default_id(&r).await;
        for body in [
            json!({"name": "s"}),
            json!({"name": "s", "channel_id": def}),
            json!({"name": "s", "channel_id": "00000000-0000-4000-8000-000000000000"}),
        ] {
            let (s, e) = call(&r, "POST", "/v1/{p}/sources", Some(body)).await;
            assert_eq!((s, code(&e)), (400, "EG.00513005"), "{e}");
        }
        let (s, e) = call(&r, "POST", "/v1/{p}/sources", Some(json!({"name": "hc.x"}))).await;
        assert_eq!((s, code(&e)), (400, "EG.00513000"));
    }

    #[tokio::test]
    async fn rocketmq_secret_sealed_and_kept() {
        let (r, st) = app(ServerConfig::default()).await;
        let ch = channel(&r, "ch1").await;
        let (s, v) = call(
            &r,
            "POST",
            "/v1/{p}/sources",
            Some(json!({"name": "rmq", "channel_id": ch, "type": "ROCKETMQ", "detail": rocket()})),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["detail"]["secret_key"], "******");
        assert_eq!(v["detail"]["enable_acl"], true);
        let id = v["id"].as_str().unwrap().to_string();
        let stored = st
            .store
            .get(PROJECT, Kind::Source, &id)
            .await
            .unwrap()
            .unwrap();
        let sealed = stored.body["detail"]["secret_key"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(SecretBox::is_encrypted(&sealed));
        let mut d = rocket();
        d["secret_key"] = json!("******");
        d["topic"] = json!("t2");
        let (s, u) = call(
            &r,
            "PUT",
            &format!("/v1/{{p}}/sources/{id}"),
            Some(json!({"detail": d})),
        )
        .await;
        assert_eq!((s, u["detail"]["topic"].as_str()), (200, Some("t2")), "{u}");
        let stored = st
            .store
            .get(PROJECT, Kind::Source, &id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            stored.body["detail"]["secret_key"].as_str(),
            Some(sealed.as_str())
        );
        // The mask on create is an error.
        let mut d = rocket();
        d["secret_key"] = json!("******");
        let (s, e) = call(
            &r,
            "POST",
            "/v1/{p}/sources",
            Some(json!({"name": "rmq2", "channel_id": ch, "type": "ROCKETMQ", "detail": d})),
        )
        .await;
        assert_eq!((s, code(&e)), (400, "EG.00513000"));
    }

    #[tokio::test]
    async fn broker_sources_say_they_do_not_run() {
        // No data plane here: the status is what the supervisor reports for work that
        // cannot run in this build.
        let (r, _) = app(ServerConfig::default()).await;
        let ch = channel(&r, "ch1").await;
        let (s, v) = call(
            &r,
            "POST",
            "/v1/{p}/sources",
            Some(json!({"name": "rmq", "channel_id": ch, "type": "ROCKETMQ", "detail": rocket()})),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["status"], "ERROR");
        assert_eq!(
            v["error_info"],
            json!({
                "error_code": "EG.00511000",
                "error_msg": "internal server error",
                "error_detail": "not run on this node: it has no data plane, or has not \
                                 picked this resource up",
            })
        );
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, INFO);
        let id = v["id"].as_str().unwrap();
        let (_, g) = call(&r, "GET", &format!("/v1/{{p}}/sources/{id}"), None).await;
        assert_eq!(g, v);
    }

    #[tokio::test]
    async fn quotas_and_order() {
        let mut cfg = ServerConfig::default();
        cfg.quotas.source_rabbitmq = 1;
        cfg.quotas.source = 2;
        let (r, _) = app(cfg).await;
        let ch = channel(&r, "ch1").await;
        let rabbit =
            json!({"instance_id": "amqp://127.0.0.1:9", "queue_name": "q", "password": "pw"});
        let mk = |name: &str, t: &str| json!({"name": name, "channel_id": ch, "type": t, "detail": rabbit});
        let (s, v) = call(&r, "POST", "/v1/{p}/sources", Some(mk("r1", "RABBITMQ"))).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["detail"]["password"], "******");
        let (s, e) = call(&r, "POST", "/v1/{p}/sources", Some(mk("r2", "RABBITMQ"))).await;
        assert_eq!((s, code(&e)), (403, "EG.00514003"));
        // Duplicate beats quota.
        let (s, e) = call(&r, "POST", "/v1/{p}/sources", Some(mk("r1", "RABBITMQ"))).await;
        assert_eq!((s, code(&e)), (400, "EG.00513001"));
        let (s, _) = call(&r, "POST", "/v1/{p}/sources", Some(mk("a1", "APPLICATION"))).await;
        assert_eq!(s, 200);
        let (s, e) = call(&r, "POST", "/v1/{p}/sources", Some(mk("a2", "APPLICATION"))).await;
        assert_eq!((s, code(&e)), (403, "EG.00514003"));
    }

    #[tokio::test]
    async fn official_sources_listed_and_protected() {
        let (r, st) = app(ServerConfig::default()).await;
        let def = default_id(&r).await;
        let ch = channel(&r, "ch1").await;
        for n in ["zeta", "alpha"] {
            let (s, _) = call(
                &r,
                "POST",
                "/v1/{p}/sources",
                Some(json!({"name": n, "channel_id": ch})),
            )
            .await;
            assert_eq!(s, 200);
        }
        // A subscription using an official source outside the catalogue, and one using a custom source.
        let now = now_ms();
        let sub = Document {
            project_id: PROJECT.into(),
            kind: Kind::Subscription,
            id: new_id(),
            name: "sub".into(),
            parent_id: Some(def.clone()),
            created_at: now,
            updated_at: now,
            body: json!({}),
            refs: vec!["official:HC.CTS".into(), "source:alpha".into()],
        };
        st.store.insert(&sub, &[]).await.unwrap();

        let (_, all) = call(&r, "GET", "/v1/{p}/sources?limit=1000", None).await;
        let n = CATALOGUE.len() as u64 + 3;
        assert_eq!(
            (all["total"].as_u64(), all["size"].as_u64()),
            (Some(n), Some(n))
        );
        let (_, off) = call(
            &r,
            "GET",
            "/v1/{p}/sources?provider_type=OFFICIAL&sort=name:asc",
            None,
        )
        .await;
        let names: Vec<&str> = off["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["HC.APIGW", "HC.CTS", "HC.FunctionGraph", "HC.OBS", "HC.SMN"]
        );
        assert!(off["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["channel_id"] == json!(def)));
        let (_, cus) = call(
            &r,
            "GET",
            "/v1/{p}/sources?provider_type=CUSTOM&sort=name:asc",
            None,
        )
        .await;
        let names: Vec<&str> = cus["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["alpha", "zeta"]);
        // Paging over the merged list, sorted by name descending.
        let (_, p2) = call(
            &r,
            "GET",
            "/v1/{p}/sources?sort=name:DESC&offset=1&limit=2",
            None,
        )
        .await;
        let names: Vec<&str> = p2["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            (p2["total"].as_u64(), names),
            (Some(n), vec!["alpha", "HC.SMN"])
        );
        // Filters.
        let (_, f) = call(&r, "GET", "/v1/{p}/sources?fuzzy_label=object", None).await;
        assert_eq!(f["items"][0]["name"], "HC.OBS");
        assert_eq!(f["total"], 1);
        let (_, f) = call(
            &r,
            "GET",
            &format!("/v1/{{p}}/sources?channel_id={ch}"),
            None,
        )
        .await;
        assert_eq!(f["total"], 2);
        let (_, f) = call(
            &r,
            "GET",
            &format!("/v1/{{p}}/sources?channel_id={def}"),
            None,
        )
        .await;
        assert_eq!(f["total"].as_u64(), Some(CATALOGUE.len() as u64 + 1));
        let (_, f) = call(&r, "GET", "/v1/{p}/sources?name=HC.SMN", None).await;
        assert_eq!(f["total"], 1);
        let (_, f) = call(&r, "GET", "/v1/{p}/sources?fuzzy_name=ALP", None).await;
        assert_eq!(f["items"][0]["name"], "alpha");
        let (_, f) = call(&r, "GET", "/v1/{p}/sources?provider_type=PARTNER", None).await;
        assert_eq!(f["total"], 0);
        let (s, _) = call(&r, "GET", "/v1/{p}/sources?provider_type=X", None).await;
        assert_eq!(s, 400);
        // Show / update / delete of an official source.
        let id = official_source_id("HC.CTS");
        let (s, g) = call(&r, "GET", &format!("/v1/{{p}}/sources/{id}"), None).await;
        assert_eq!(
            (s, g["name"].as_str(), g["provider_type"].as_str()),
            (200, Some("HC.CTS"), Some("OFFICIAL"))
        );
        let (s, e) = call(
            &r,
            "PUT",
            &format!("/v1/{{p}}/sources/{id}"),
            Some(json!({"description": "x"})),
        )
        .await;
        assert_eq!((s, code(&e)), (403, "EG.00514004"));
        let obs = official_source_id("HC.OBS");
        let (s, e) = call(&r, "DELETE", &format!("/v1/{{p}}/sources/{obs}"), None).await;
        assert_eq!((s, code(&e)), (403, "EG.00514004"));
        // A used custom source cannot be deleted.
        let alpha = cus["items"][0]["id"].as_str().unwrap().to_string();
        let (s, e) = call(&r, "DELETE", &format!("/v1/{{p}}/sources/{alpha}"), None).await;
        assert_eq!((s, code(&e)), (409, "EG.00514002"));
        // Recorded official sources show up once.
        record_official_source(&st, PROJECT, "HC.DMS")
            .await
            .unwrap();
        record_official_source(&st, PROJECT, "HC.DMS")
            .await
            .unwrap();
        record_official_source(&st, PROJECT, "HC.OBS")
            .await
            .unwrap();
        let (_, off) = call(&r, "GET", "/v1/{p}/sources?provider_type=OFFICIAL", None).await;
        assert_eq!(off["total"].as_u64(), Some(CATALOGUE.len() as u64 + 2));
        let dms = official_source_id("HC.DMS");
        let (s, _) = call(&r, "GET", &format!("/v1/{{p}}/sources/{dms}"), None).await;
        assert_eq!(s, 200);
        let (s, _) = call(&r, "DELETE", &format!("/v1/{{p}}/sources/{dms}"), None).await;
        assert_eq!(s, 403);
    }
}
