//! Event schemas and their versions (ops 29–38).
//!
//! A schema is a `Kind::Schema` record named by its name; each version is a
//! `Kind::SchemaVersion` record (unnamed, parent = schema id) keeping its `version` integer in
//! the body. The schema document caches the current version (the highest), its definition and
//! `number_of_versions`; every version mutation re-reads the versions and refreshes that cache
//! while holding [`VERSIONS`], so version numbers are never handed out twice.

use super::{get_or_404, pick, save_update};
use crate::error::ApiResult;
use crate::openapi::{paging, path_param, query, s, Op};
use crate::state::{AppState, Tenant};
use crate::util::{fmt_time, json_body, list_query, list_reply, new_id, no_content, now_ms, ok};
use crate::util::{Params, Query};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use openeg_api::schema::{self, FORMATS, FORMAT_DRAFT_6, MAX_SCHEMAS, MAX_VERSIONS};
use openeg_api::validate::{NamePattern, SortField};
use openeg_api::EgError;
use openeg_store::{Document, Kind, ListQuery, QuotaCheck};
use serde_json::{json, Map, Value};

/// Version numbering and the schema document's version cache run in the store's exclusive
/// section of this name (one writer at a time across nodes).
const VERSIONS: &str = "schema-versions";

/// CustomizeSchema (create, update, show).
const DETAIL: &[&str] = &[
    "id",
    "name",
    "description",
    "compatibility",
    "provider_type",
    "format",
    "number_of_versions",
    "created_time",
    "updated_time",
    "version",
    "definition",
];

/// CustomizeSchemaItemInfo (list).
const ITEM: &[&str] = &[
    "id",
    "name",
    "description",
    "compatibility",
    "provider_type",
    "format",
    "number_of_versions",
    "event_type_id",
    "event_type_name",
    "event_source_id",
    "event_source_name",
    "event_source_label",
    "created_time",
    "updated_time",
];

/// CustomizeSchemaVersion (create, show).
const VERSION_DETAIL: &[&str] = &[
    "id",
    "schema_id",
    "version",
    "format",
    "created_time",
    "updated_time",
    "definition",
];

/// CustomizeSchemaVersionItemInfo (list).
const VERSION_ITEM: &[&str] = &["id", "version", "created_time", "updated_time"];

/// Event-type members of CustomizeSchemaItemInfo: custom schemas carry none.
const EVENT_TYPE_FIELDS: &[&str] = &[
    "event_type_id",
    "event_type_name",
    "event_source_id",
    "event_source_name",
    "event_source_label",
];

pub fn ops() -> Vec<Op> {
    const T: &str = "Event schemas";
    let one = "/v1/{project_id}/schemas/{schema_id}";
    let versions = "/v1/{project_id}/schemas/{schema_id}/versions";
    let version = "/v1/{project_id}/schemas/{schema_id}/versions/{version}";
    let version_param = || path_param("version", s::int_range(1, i64::MAX));
    let st = s::string;
    let definition = || s::doc(s::non_empty(1 << 20), "JSON Schema document as JSON text");
    let item = s::obj(&[
        ("id", st()),
        ("name", st()),
        ("description", st()),
        ("compatibility", st()),
        ("provider_type", s::one_of(&["CUSTOM", "OFFICIAL"])),
        ("format", st()),
        ("number_of_versions", s::int()),
        ("event_type_id", st()),
        ("event_type_name", st()),
        ("event_source_id", st()),
        ("event_source_name", st()),
        ("event_source_label", st()),
        ("created_time", s::time()),
        ("updated_time", s::time()),
    ]);
    let detail = s::req(
        s::obj(&[
            ("id", st()),
            ("name", st()),
            ("description", st()),
            ("compatibility", st()),
            ("provider_type", s::one_of(&["CUSTOM", "OFFICIAL"])),
            ("format", st()),
            ("number_of_versions", s::int()),
            ("created_time", s::time()),
            ("updated_time", s::time()),
            ("version", s::int()),
            ("definition", st()),
        ]),
        &["id", "name"],
    );
    let version_detail = s::req(
        s::obj(&[
            ("id", st()),
            ("schema_id", st()),
            ("version", s::int()),
            ("format", st()),
            ("created_time", s::time()),
            ("updated_time", s::time()),
            ("definition", st()),
        ]),
        &["id", "version"],
    );
    let compatibility = || s::non_empty(32);
    vec![
        Op::post(
            "DiscoverEventSchemaFromData",
            "/v1/{project_id}/schema-discover",
            discover,
        )
        .summary(T, "Infer a JSON Schema from a sample event")
        .body(s::obj(&[
            (
                "event",
                s::doc(
                    s::max(schema::MAX_EVENT_CHARS),
                    "event JSON text; without one nothing is discovered",
                ),
            ),
            ("format", s::one_of(&FORMATS)),
        ]))
        .ok(s::list(item.clone())),
        Op::post("CreateEventSchema", "/v1/{project_id}/schemas", create)
            .summary(T, "Create a schema with its version 1")
            .body(s::req(
                s::obj(&[
                    ("name", s::name(NamePattern::Mixed)),
                    ("description", s::max(255)),
                    ("compatibility", compatibility()),
                    ("format", s::one_of(&FORMATS)),
                    ("definition", definition()),
                ]),
                &["name", "compatibility", "definition"],
            ))
            .ok(detail.clone()),
        Op::get("ListEventSchema", "/v1/{project_id}/schemas", list)
            .summary(T, "List schemas")
            .params(paging())
            .params([
                query("provider_type", s::one_of(&["OFFICIAL", "CUSTOM"])),
                query("name", st()),
                query("fuzzy_name", st()),
            ])
            .ok(s::list(item)),
        Op::put("UpdateEventSchema", one, update)
            .summary(T, "Update the description or compatibility of a schema")
            .body(s::obj(&[
                ("name", st()),
                ("description", s::max(255)),
                ("compatibility", compatibility()),
            ]))
            .ok(detail.clone()),
        Op::get("ShowDetailOfEventSchema", one, show)
            .summary(T, "Show a schema and its current definition")
            .ok(detail),
        Op::delete("DeleteEventSchema", one, delete).summary(T, "Delete a schema and its versions"),
        Op::post("CreateEventSchemaVersion", versions, create_version)
            .summary(T, "Add a version (previous maximum + 1)")
            .body(s::req(
                s::obj(&[("definition", definition())]),
                &["definition"],
            ))
            .ok(version_detail.clone())
            .errors(&[403]),
        Op::get("ListEventSchemaVersions", versions, list_versions)
            .summary(T, "List the versions of a schema")
            .params(paging())
            .param(query("version", st()))
            .ok(s::list(s::obj(&[
                ("id", st()),
                ("version", s::int()),
                ("created_time", s::time()),
                ("updated_time", s::time()),
            ]))),
        Op::get("ShowDetailOfEventSchemaVersion", version, show_version)
            .summary(T, "Show a version")
            .param(version_param())
            .ok(version_detail),
        Op::delete("DeleteEventSchemaVersion", version, delete_version)
            .summary(T, "Delete a version (not the only one)")
            .param(version_param())
            .errors(&[409]),
    ]
}

fn version_of(r: &Document) -> i64 {
    r.body.get("version").and_then(Value::as_i64).unwrap_or(0)
}

/// All versions of a schema, ascending by version number (at most `MAX_VERSIONS`).
async fn versions(st: &AppState, project_id: &str, schema_id: &str) -> ApiResult<Vec<Document>> {
    let q = ListQuery {
        parent_id: Some(schema_id.to_string()),
        ..Default::default()
    };
    let (_, mut recs) = st.store.list(project_id, Kind::SchemaVersion, &q).await?;
    recs.sort_by_key(version_of);
    Ok(recs)
}

fn version_record(
    project_id: &str,
    schema_id: &str,
    version: i64,
    format: &str,
    definition: &str,
    now: i64,
) -> Document {
    let id = new_id();
    let body = json!({
        "id": id,
        "schema_id": schema_id,
        "version": version,
        "format": format,
        "created_time": fmt_time(now),
        "updated_time": fmt_time(now),
        "definition": definition,
    });
    Document {
        project_id: project_id.to_string(),
        kind: Kind::SchemaVersion,
        id,
        name: String::new(),
        parent_id: Some(schema_id.to_string()),
        created_at: now,
        updated_at: now,
        body,
        refs: Vec::new(),
    }
}

fn version_quota(schema_id: &str) -> QuotaCheck {
    QuotaCheck {
        quota: "SCHEMA_VERSION",
        kind: Kind::SchemaVersion,
        parent_id: Some(schema_id.to_string()),
        body_eq: None,
        max: MAX_VERSIONS,
    }
}

/// Refreshes the schema document's cache (current version, its definition, count) from
/// `vers` (ascending, non-empty) and stores it.
async fn refresh_schema(
    st: &AppState,
    mut rec: Document,
    vers: &[Document],
    now: i64,
) -> ApiResult<Document> {
    let Value::Object(mut doc) = rec.body.clone() else {
        return Err(EgError::internal().into());
    };
    if let Some(cur) = vers.last() {
        doc.insert("version".into(), version_of(cur).into());
        doc.insert(
            "definition".into(),
            cur.body.get("definition").cloned().unwrap_or_default(),
        );
    }
    doc.insert("number_of_versions".into(), (vers.len() as u64).into());
    save_update(st, &mut rec, doc, now, "schema").await?;
    Ok(rec)
}

async fn discover(Extension(_t): Extension<Tenant>, body: Bytes) -> ApiResult<Response> {
    let v = json_body(&body)?;
    let found = schema::discover(&v)?;
    let Some(definition) = found.definition else {
        return Ok(list_reply(0, Vec::new()));
    };
    let now = fmt_time(now_ms());
    let mut item = json!({
        "id": "",
        "name": "",
        "description": "",
        "compatibility": "",
        "provider_type": "CUSTOM",
        "format": found.format,
        "number_of_versions": 0,
        "created_time": now,
        "updated_time": now,
        "definition": definition,
    });
    for f in EVENT_TYPE_FIELDS {
        item[*f] = "".into();
    }
    Ok(list_reply(1, vec![item]))
}

async fn create(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    body: Bytes,
) -> ApiResult<Response> {
    let v = json_body(&body)?;
    let req = schema::create(&v)?;
    let now = now_ms();
    let id = new_id();
    let mut doc = Map::new();
    doc.insert("id".into(), id.clone().into());
    doc.insert("name".into(), req.name.clone().into());
    doc.insert("description".into(), req.description.into());
    doc.insert("compatibility".into(), req.compatibility.into());
    doc.insert("provider_type".into(), "CUSTOM".into());
    doc.insert("format".into(), req.format.clone().into());
    doc.insert("number_of_versions".into(), 1.into());
    for f in EVENT_TYPE_FIELDS {
        doc.insert((*f).into(), "".into());
    }
    doc.insert("created_time".into(), fmt_time(now).into());
    doc.insert("updated_time".into(), fmt_time(now).into());
    doc.insert("version".into(), 1.into());
    doc.insert("definition".into(), req.definition.clone().into());
    let rec = Document {
        project_id: t.project_id.clone(),
        kind: Kind::Schema,
        id: id.clone(),
        name: req.name,
        parent_id: None,
        created_at: now,
        updated_at: now,
        body: Value::Object(doc),
        refs: Vec::new(),
    };
    let quota = QuotaCheck {
        quota: "SCHEMA",
        kind: Kind::Schema,
        parent_id: None,
        body_eq: None,
        max: MAX_SCHEMAS,
    };
    let _g = st.store.exclusive(VERSIONS).await?;
    st.store.insert(&rec, &[quota]).await?;
    let ver = version_record(&t.project_id, &id, 1, &req.format, &req.definition, now);
    if let Err(e) = st.store.insert(&ver, &[version_quota(&id)]).await {
        // Keep create all-or-nothing: no schema without its first version.
        let _ = st.store.delete(&t.project_id, Kind::Schema, &id).await;
        return Err(e.into());
    }
    Ok(ok(pick(&rec.body, DETAIL)))
}

async fn list(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    q: Query,
) -> ApiResult<Response> {
    let paging = q.paging()?;
    let mut lq = list_query(&q, &paging);
    if let Some(pt) = q.one_of("provider_type", &["OFFICIAL", "CUSTOM"])? {
        lq.body_eq.push(("provider_type".into(), pt));
    }
    let (total, recs) = st.store.list(&t.project_id, Kind::Schema, &lq).await?;
    Ok(list_reply(
        total,
        recs.iter().map(|r| pick(&r.body, ITEM)).collect(),
    ))
}

async fn show(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
) -> ApiResult<Response> {
    let rec = get_or_404(&st, &t.project_id, Kind::Schema, p.get("schema_id")).await?;
    Ok(ok(pick(&rec.body, DETAIL)))
}

async fn update(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
    body: Bytes,
) -> ApiResult<Response> {
    let v = json_body(&body)?;
    let req = schema::update(&v)?;
    let _g = st.store.exclusive(VERSIONS).await?;
    let mut rec = get_or_404(&st, &t.project_id, Kind::Schema, p.get("schema_id")).await?;
    let Value::Object(mut doc) = rec.body.clone() else {
        return Err(EgError::internal().into());
    };
    if let Some(d) = req.description {
        doc.insert("description".into(), d.into());
    }
    if let Some(c) = req.compatibility {
        doc.insert("compatibility".into(), c.into());
    }
    let now = now_ms();
    save_update(&st, &mut rec, doc, now, "schema").await?;
    Ok(ok(pick(&rec.body, DETAIL)))
}

async fn delete(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
) -> ApiResult<Response> {
    let _g = st.store.exclusive(VERSIONS).await?;
    let rec = get_or_404(&st, &t.project_id, Kind::Schema, p.get("schema_id")).await?;
    for v in versions(&st, &t.project_id, &rec.id).await? {
        st.store
            .delete(&t.project_id, Kind::SchemaVersion, &v.id)
            .await?;
    }
    st.store
        .delete(&t.project_id, Kind::Schema, &rec.id)
        .await?;
    Ok(no_content())
}

async fn create_version(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
    body: Bytes,
) -> ApiResult<Response> {
    let v = json_body(&body)?;
    // The definition is checked against the schema's format; an unknown schema is reported
    // after the body (validation errors come first).
    let format_of = |rec: &Document| {
        rec.body
            .get("format")
            .and_then(Value::as_str)
            .unwrap_or(FORMAT_DRAFT_6)
            .to_string()
    };
    let stored = st
        .store
        .get(&t.project_id, Kind::Schema, p.get("schema_id"))
        .await?;
    let format = stored
        .as_ref()
        .map_or(FORMAT_DRAFT_6.to_string(), format_of);
    let definition = schema::create_version(&v, &format)?;
    let _g = st.store.exclusive(VERSIONS).await?;
    let rec = get_or_404(&st, &t.project_id, Kind::Schema, p.get("schema_id")).await?;
    let mut vers = versions(&st, &t.project_id, &rec.id).await?;
    let next = vers.last().map(version_of).unwrap_or(0) + 1;
    let format = format_of(&rec);
    let now = now_ms();
    let ver = version_record(&t.project_id, &rec.id, next, &format, &definition, now);
    st.store.insert(&ver, &[version_quota(&rec.id)]).await?;
    vers.push(ver.clone());
    refresh_schema(&st, rec, &vers, now).await?;
    Ok(ok(pick(&ver.body, VERSION_DETAIL)))
}

async fn list_versions(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
    q: Query,
) -> ApiResult<Response> {
    let paging = q.paging()?;
    let exact = match q.get("version") {
        Some(s) => Some(schema::version_param(s)?),
        None => None,
    };
    let rec = get_or_404(&st, &t.project_id, Kind::Schema, p.get("schema_id")).await?;
    let mut vers = versions(&st, &t.project_id, &rec.id).await?;
    if let Some(n) = exact {
        vers.retain(|v| version_of(v) == n);
    }
    // Ascending by the sort field, ties (and `name`, which versions lack) by version number.
    match paging.sort {
        SortField::CreatedTime => vers.sort_by_key(|v| (v.created_at, version_of(v))),
        SortField::UpdatedTime => vers.sort_by_key(|v| (v.updated_at, version_of(v))),
        SortField::Name => vers.sort_by_key(version_of),
    }
    if paging.descending {
        vers.reverse();
    }
    let total = vers.len() as u64;
    let items = vers
        .iter()
        .skip(usize::try_from(paging.offset).unwrap_or(usize::MAX))
        .take(usize::try_from(paging.limit).unwrap_or(usize::MAX))
        .map(|v| pick(&v.body, VERSION_ITEM))
        .collect();
    Ok(list_reply(total, items))
}

/// The version record `{version}` of schema `{schema_id}`: 400 for a non-integer, 404 if absent.
async fn find_version(
    st: &AppState,
    project_id: &str,
    p: &Params,
) -> ApiResult<(Document, Vec<Document>, Document)> {
    let n = schema::version_param(p.get("version"))?;
    let rec = get_or_404(st, project_id, Kind::Schema, p.get("schema_id")).await?;
    let vers = versions(st, project_id, &rec.id).await?;
    match vers.iter().find(|v| version_of(v) == n).cloned() {
        Some(v) => Ok((rec, vers, v)),
        None => Err(
            EgError::not_found(format!("version {n} of schema {} does not exist", rec.id)).into(),
        ),
    }
}

async fn show_version(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
) -> ApiResult<Response> {
    let (_, _, v) = find_version(&st, &t.project_id, &p).await?;
    Ok(ok(pick(&v.body, VERSION_DETAIL)))
}

async fn delete_version(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
) -> ApiResult<Response> {
    let _g = st.store.exclusive(VERSIONS).await?;
    let (rec, mut vers, v) = find_version(&st, &t.project_id, &p).await?;
    if vers.len() <= 1 {
        return Err(EgError::conflict(
            "the only remaining version of a schema cannot be deleted; delete the schema instead",
        )
        .into());
    }
    st.store
        .delete(&t.project_id, Kind::SchemaVersion, &v.id)
        .await?;
    vers.retain(|x| x.id != v.id);
    refresh_schema(&st, rec, &vers, now_ms()).await?;
    Ok(no_content())
}
