//! Subscriptions (ops 1–11).
//!
//! Validation is pure ([`openeg_api::subscription`]); this module resolves what a body refers
//! to (channel, custom sources, connections) into an [`Env`], then runs the checks in the
//! order of `docs/errors.md`: field checks, uniqueness (name, service-wide client ids), quotas.
//!
//! Stored record: kind `Subscription`, `name`, `parent_id` = channel id, body = SubscriptionInfo
//! wire shape (targets' secrets sealed) plus `enterprise_project_id` when given, refs from
//! [`subscription::refs`]. Read-modify-write operations are serialized by one process-wide
//! lock, so concurrent edits of one subscription never lose updates and client-id uniqueness
//! holds within a process.

use super::{get_or_404, pick, render};
use crate::error::ApiResult;
use crate::openapi::{paging, query, s, Op};
use crate::projects::DEFAULT_CHANNEL;
use crate::state::{AppState, Tenant};
use crate::util::{
    fmt_time, json_body, list_query, list_reply, new_id, no_content, now_ms, ok, Params, Query,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use openeg_api::subscription::{self, ChannelFacts, Env};
use openeg_api::validate::NamePattern;
use openeg_api::{validate, EgError};
use openeg_rules::TransformUse;
use openeg_store::{Document, Kind, ListQuery, QuotaCheck};
use serde_json::{json, Map, Value};

/// SubscriptionInfo members (`enterprise_project_id` is stored for filtering only).
const INFO: &[&str] = &[
    "id",
    "name",
    "description",
    "type",
    "status",
    "channel_id",
    "channel_name",
    "used",
    "sources",
    "targets",
    "created_time",
    "updated_time",
];

/// Subscription read-modify-write sequences (names, client-supplied ids unique service-wide)
/// run in the store's exclusive section of this name: one at a time across nodes.
const WRITE: &str = "subscriptions";

pub fn ops() -> Vec<Op> {
    const T: &str = "Subscriptions";
    let one = "/v1/{project_id}/subscriptions/{subscription_id}";
    let target = "/v1/{project_id}/subscriptions/{subscription_id}/targets/{target_id}";
    let epid = || query("enterprise_project_id", s::max(64));
    vec![
        Op::post(
            "CreateSubscription",
            "/v1/{project_id}/subscriptions",
            create,
        )
        .summary(T, "Create a subscription: one source, 1-5 targets")
        .param(epid())
        .body(s::req(
            s::obj(&[
                ("name", s::name(NamePattern::Mixed)),
                ("description", s::max(subscription::MAX_DESCRIPTION)),
                ("channel_id", s::string()),
                ("sources", s::array_len(source_request(), 1, 1)),
                ("targets", s::array_len(target_request(), 1, 5)),
            ]),
            &["name", "channel_id", "sources", "targets"],
        ))
        .ok(info_schema()),
        Op::get("ListSubscriptions", "/v1/{project_id}/subscriptions", list)
            .summary(T, "List subscriptions")
            .params(paging())
            .params([
                query("channel_id", s::string()),
                query("name", s::string()),
                query("fuzzy_name", s::string()),
                query("connection_id", s::max(64)),
                epid(),
            ])
            .ok(s::list(info_schema())),
        Op::put("UpdateSubscription", one, update)
            .summary(
                T,
                "Update a subscription (present sets replace the old ones)",
            )
            .param(epid())
            .body(s::obj(&[
                ("description", s::max(subscription::MAX_DESCRIPTION)),
                ("sources", s::array_len(source_request(), 1, 1)),
                ("targets", s::array_len(target_request(), 1, 5)),
            ]))
            .ok(info_schema()),
        Op::get("ShowDetailOfSubscription", one, show)
            .summary(T, "Show a subscription")
            .param(epid())
            .ok(info_schema()),
        Op::delete("DeleteSubscription", one, delete)
            .summary(T, "Delete a subscription")
            .param(epid()),
        Op::put(
            "UpdateSubscriptionSource",
            "/v1/{project_id}/subscriptions/{subscription_id}/sources/{source_id}",
            update_source,
        )
        .summary(T, "Replace the source of a subscription")
        .param(epid())
        .body(source_request())
        .ok(source_info()),
        Op::post(
            "CreateSubscriptionTarget",
            "/v1/{project_id}/subscriptions/{subscription_id}/targets",
            create_target,
        )
        .summary(T, "Add a target to a subscription")
        .param(epid())
        .body(target_request())
        .ok(target_info()),
        Op::put("UpdateSubscriptionTarget", target, update_target)
            .summary(T, "Replace a target of a subscription")
            .param(epid())
            .body(target_request())
            .ok(target_info()),
        Op::get("ShowDetailOfSubscriptionTarget", target, show_target)
            .summary(T, "Show a target of a subscription")
            .param(epid())
            .ok(target_info()),
        Op::delete("DeleteSubscriptionTarget", target, delete_target)
            .summary(T, "Delete a target (not the last one)")
            .param(epid()),
        Op::post(
            "ExecuteSubscriptionOperation",
            "/v1/{project_id}/subscriptions/operation",
            operate,
        )
        .summary(T, "Enable or disable subscriptions")
        .param(epid())
        .body(s::req(
            s::obj(&[
                (
                    "subscription_ids",
                    s::array_len(s::non_empty(64), 1, subscription::MAX_OPERATION_IDS),
                ),
                (
                    "operation",
                    s::one_of(&subscription::OPERATIONS.map(|(o, _)| o)),
                ),
            ]),
            &["subscription_ids", "operation"],
        ))
        .ok(s::req(
            s::obj(&[
                ("failed_count", s::int()),
                (
                    "events",
                    s::array(s::req(
                        s::obj(&[
                            ("subscription_id", s::string()),
                            ("error_code", s::string()),
                            ("error_msg", s::string()),
                        ]),
                        &["subscription_id"],
                    )),
                ),
            ]),
            &["failed_count", "events"],
        )),
    ]
}

fn provider_type() -> Value {
    s::one_of(&subscription::PROVIDER_TYPES)
}

/// A subscription source in a request (`SubscriptionSource`).
fn source_request() -> Value {
    s::req(
        s::obj(&[
            ("id", s::name(NamePattern::ClientId)),
            ("name", s::non_empty(128)),
            ("provider_type", provider_type()),
            (
                "detail",
                s::doc(
                    s::any_object(),
                    &format!(
                        "at most {} bytes serialized",
                        subscription::MAX_DETAIL_BYTES
                    ),
                ),
            ),
            (
                "filter",
                s::doc(
                    s::req(s::obj(&[("source", s::any_object())]), &["source"]),
                    &format!(
                        "filter rule (see docs/filter-rules.md), at most {} bytes serialized",
                        subscription::MAX_FILTER_BYTES
                    ),
                ),
            ),
        ]),
        &["name", "provider_type", "filter"],
    )
}

/// A subscription target in a request (`SubscriptionTarget`).
fn target_request() -> Value {
    let kinds: Vec<&str> = subscription::TargetKind::ALL
        .iter()
        .map(|k| k.wire_name())
        .collect();
    let payload = TransformUse::Payload.allowed_types();
    let key = TransformUse::Key.allowed_types();
    let str_ = s::string;
    s::req(
        s::obj(&[
            ("id", s::name(NamePattern::ClientId)),
            ("name", s::doc(s::one_of(&kinds), "the target kind")),
            ("provider_type", provider_type()),
            ("connection_id", s::max(64)),
            (
                "detail",
                s::obj(&[
                    ("url", s::doc(str_(), "webhook: absolute http(s) URL")),
                    ("urn", s::doc(str_(), "FunctionGraph function URN")),
                    ("invoke_type", s::one_of(&["SYNC", "ASYNC"])),
                    ("workflow_id", str_()),
                    ("agency_name", str_()),
                ]),
            ),
            (
                "kafka_detail",
                s::obj(&[
                    ("topic", str_()),
                    (
                        "keyTransform",
                        // `type` may be left out: no type, value or template means NONE.
                        s::obj(&[
                            ("type", s::one_of(key)),
                            ("value", str_()),
                            ("template", str_()),
                        ]),
                    ),
                ]),
            ),
            (
                "smn_detail",
                s::obj(&[
                    ("urn", str_()),
                    ("agency_name", str_()),
                    (
                        "subject_transform",
                        s::transform(TransformUse::SmnSubject.allowed_types()),
                    ),
                ]),
            ),
            (
                "eg_detail",
                s::obj(&[
                    ("target_project_id", str_()),
                    ("target_channel_id", str_()),
                    ("target_region", str_()),
                    ("cross_region", s::boolean()),
                    ("cross_account", s::boolean()),
                    ("agency_name", str_()),
                ]),
            ),
            (
                "apigw_detail",
                s::obj(&[
                    ("url", str_()),
                    (
                        "invocation_http_parameters",
                        s::obj(&[(
                            "header_parameters",
                            s::array(s::obj(&[
                                ("is_value_secret", s::boolean()),
                                ("key", str_()),
                                ("value", str_()),
                            ])),
                        )]),
                    ),
                ]),
            ),
            (
                "rocketmq_detail",
                s::obj(&[("topic", str_()), ("key_transform", s::transform(key))]),
            ),
            (
                "retry_times",
                s::int_range(0, subscription::MAX_RETRY_TIMES),
            ),
            ("transform", s::transform(payload)),
            (
                "dead_letter_queue",
                s::obj(&[
                    ("type", s::one_of(&[subscription::CONN_KAFKA])),
                    ("instance_id", str_()),
                    ("connection_id", str_()),
                    ("topic", str_()),
                ]),
            ),
        ]),
        &["name", "provider_type", "transform"],
    )
}

/// `SubscriptionSourceInfo`.
fn source_info() -> Value {
    s::req(
        s::obj(&[
            ("id", s::string()),
            ("name", s::string()),
            ("provider_type", s::string()),
            ("detail", s::any_object()),
            ("filter", s::any_object()),
            ("created_time", s::time()),
            ("updated_time", s::time()),
        ]),
        &["id", "name", "provider_type"],
    )
}

/// `SubscriptionTargetInfo` (secrets masked).
fn target_info() -> Value {
    let o = s::any_object;
    s::req(
        s::obj(&[
            ("id", s::string()),
            ("name", s::string()),
            ("provider_type", s::string()),
            ("connection_id", s::string()),
            ("detail", o()),
            ("kafka_detail", o()),
            ("smn_detail", o()),
            ("eg_detail", o()),
            ("apigw_detail", o()),
            ("rocketmq_detail", o()),
            ("retry_times", s::int()),
            ("transform", o()),
            ("dead_letter_queue", o()),
            ("created_time", s::time()),
            ("updated_time", s::time()),
        ]),
        &["id", "name", "provider_type"],
    )
}

/// `SubscriptionInfo`, also the item of trigger listings.
pub(crate) fn info_schema() -> Value {
    s::req(
        s::obj(&[
            ("id", s::string()),
            ("name", s::string()),
            ("description", s::string()),
            ("type", s::one_of(&["EVENT", "SCHEDULED"])),
            (
                "status",
                s::one_of(&["CREATED", "ENABLED", "DISABLED", "FROZEN", "ERROR"]),
            ),
            ("channel_id", s::string()),
            ("channel_name", s::string()),
            (
                "used",
                s::array(s::obj(&[
                    ("resource_id", s::string()),
                    ("owner", s::string()),
                    ("description", s::string()),
                ])),
            ),
            ("sources", s::array(source_info())),
            ("targets", s::array(target_info())),
            ("created_time", s::time()),
            ("updated_time", s::time()),
        ]),
        &["id", "name", "status", "channel_id", "sources", "targets"],
    )
}

/// The SubscriptionInfo of a stored document (secrets masked).
pub(crate) fn info(body: &Value) -> Value {
    pick(body, INFO)
}

/// A subscription listing restricted by a reference key (connection, trigger look-ups).
pub(crate) async fn list_by_ref(
    st: &AppState,
    project_id: &str,
    q: &Query,
    key: String,
) -> ApiResult<Response> {
    let paging = q.paging()?;
    let mut lq = list_query(q, &paging);
    lq.name = None;
    lq.fuzzy_name = None;
    lq.has_ref = Some(key);
    let (total, recs) = st.store.list(project_id, Kind::Subscription, &lq).await?;
    Ok(list_reply(
        total,
        recs.iter().map(|r| info(&r.body)).collect(),
    ))
}

fn channel_facts(rec: &Document) -> ChannelFacts {
    ChannelFacts {
        id: rec.id.clone(),
        name: rec.name.clone(),
        is_default: rec.name == DEFAULT_CHANNEL,
    }
}

/// The channel of a stored subscription.
fn sub_channel(rec: &Document) -> ChannelFacts {
    let name = str_of(&rec.body, "channel_name").to_string();
    ChannelFacts {
        id: rec
            .parent_id
            .clone()
            .unwrap_or_else(|| str_of(&rec.body, "channel_id").to_string()),
        is_default: name == DEFAULT_CHANNEL,
        name,
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn set_of(body: &Value, key: &str) -> Vec<Value> {
    body.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Resolves the facts validation needs: the project's custom source names and connections
/// (both bounded by quotas, so one listing each).
async fn load_env(
    st: &AppState,
    project_id: &str,
    channel: Option<ChannelFacts>,
    need_sources: bool,
    need_connections: bool,
) -> ApiResult<Env> {
    let mut env = Env {
        project_id: project_id.to_string(),
        channel,
        ..Default::default()
    };
    if need_sources {
        let (_, recs) = st
            .store
            .list(project_id, Kind::Source, &ListQuery::default())
            .await?;
        env.custom_sources = recs
            .into_iter()
            .filter(|r| {
                matches!(
                    r.body.get("provider_type").and_then(Value::as_str),
                    None | Some("CUSTOM")
                )
            })
            .map(|r| r.name)
            .collect();
    }
    if need_connections {
        let (_, recs) = st
            .store
            .list(project_id, Kind::Connection, &ListQuery::default())
            .await?;
        env.connections = recs
            .into_iter()
            .map(|r| {
                let t = r
                    .body
                    .get("type")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                    .unwrap_or(subscription::CONN_WEBHOOK)
                    .to_ascii_uppercase();
                (r.id, t)
            })
            .collect();
    }
    Ok(env)
}

/// Encrypts the secrets of validated targets; `******` keeps the value of the stored target
/// with the same id.
fn seal_targets(st: &AppState, targets: &mut [Value], old: &[Value]) -> ApiResult<()> {
    for t in targets.iter_mut() {
        let prev = t
            .get("id")
            .and_then(Value::as_str)
            .and_then(|id| subscription::find_by_id(old, id))
            .cloned();
        crate::secrets::seal(t, prev.as_ref(), &st.secrets)?;
    }
    Ok(())
}

/// Client ids must be unique among the sources and among the targets, within the
/// subscription and across the whole service; a clash is 400 `EG.00513001`.
/// A source and a target may share an id.
async fn check_client_ids(
    st: &AppState,
    project_id: &str,
    self_id: Option<&str>,
    sources: &[Value],
    targets: &[Value],
) -> ApiResult<()> {
    for (member, set) in [("sources", sources), ("targets", targets)] {
        let ids = subscription::client_ids(set);
        if let Some(d) = subscription::first_duplicate(&ids) {
            return Err(EgError::duplicate(format!(
                "id {d} is used twice in the subscription's {member}"
            ))
            .into());
        }
        for id in &ids {
            // `tid:` refs hold source and target ids alike; the holder's set tells which.
            let hits = st
                .store
                .referencing_global(Kind::Subscription, &format!("tid:{id}"))
                .await?;
            let clash = hits.iter().any(|r| {
                !(r.project_id == project_id && Some(r.id.as_str()) == self_id)
                    && r.body
                        .get(member)
                        .and_then(Value::as_array)
                        .is_some_and(|a| subscription::find_by_id(a, id).is_some())
            });
            if clash {
                return Err(EgError::duplicate(format!(
                    "id {id} is already used by another subscription"
                ))
                .into());
            }
        }
    }
    Ok(())
}

fn check_target_quota(st: &AppState, n: usize) -> ApiResult<()> {
    let max = st.cfg.quotas.subscription_target;
    if u64::try_from(n).unwrap_or(u64::MAX) > max {
        return Err(EgError::quota(format!(
            "quota SUBSCRIPTION_TARGET exceeded: a subscription may have at most {max} targets"
        ))
        .into());
    }
    Ok(())
}

/// Tells the engine a subscription was written or deleted: its channel's routes are
/// recompiled, and a deleted one's pending deliveries dropped.
async fn subscription_changed(st: &AppState, rec: &Document) {
    let kind = openeg_engine::ResourceKind::Subscription {
        channel_id: rec.parent_id.clone().unwrap_or_default(),
    };
    st.resource_changed(kind, &rec.project_id, &rec.id).await;
}

/// Writes the new sets, refs and `updated_time` into a loaded record and stores it.
async fn store_update(
    st: &AppState,
    rec: &mut Document,
    sources: Vec<Value>,
    targets: Vec<Value>,
    now: i64,
) -> ApiResult<()> {
    rec.refs = subscription::refs(&sources, &targets);
    let Value::Object(doc) = &mut rec.body else {
        return Err(EgError::internal().into());
    };
    doc.insert("sources".into(), Value::Array(sources));
    doc.insert("targets".into(), Value::Array(targets));
    doc.insert("updated_time".into(), fmt_time(now).into());
    rec.updated_at = now;
    if !st.store.update(rec).await? {
        return Err(EgError::not_found(format!("subscription {} does not exist", rec.id)).into());
    }
    subscription_changed(st, rec).await;
    Ok(())
}

async fn create(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    q: Query,
    body: Bytes,
) -> ApiResult<Response> {
    let v = json_body(&body)?;
    let channel = match v
        .get("channel_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        Some(id) => st
            .store
            .get(&t.project_id, Kind::Channel, id)
            .await?
            .map(|r| channel_facts(&r)),
        None => None,
    };
    let env = load_env(
        &st,
        &t.project_id,
        channel,
        v.get("sources").is_some(),
        v.get("targets").is_some(),
    )
    .await?;
    let mut req = subscription::validate_create(&v, &env)?;
    let epid = match q.get("enterprise_project_id") {
        Some(e) => {
            validate::max_len("enterprise_project_id", e, 64)?;
            Some(e.to_string())
        }
        None => None,
    };
    seal_targets(&st, &mut req.targets, &[])?;

    let _guard = st.store.exclusive(WRITE).await?;
    if st
        .store
        .get_by_name(&t.project_id, Kind::Subscription, &req.name)
        .await?
        .is_some()
    {
        return Err(EgError::duplicate(format!("subscription {} already exists", req.name)).into());
    }
    let now = now_ms();
    let ts = fmt_time(now);
    let sources = subscription::merge_entries(&[], req.sources, &ts, new_id);
    let targets = subscription::merge_entries(&[], req.targets, &ts, new_id);
    check_client_ids(&st, &t.project_id, None, &sources, &targets).await?;
    check_target_quota(&st, targets.len())?;

    let id = new_id();
    let refs = subscription::refs(&sources, &targets);
    let mut doc = Map::new();
    doc.insert("id".into(), id.clone().into());
    doc.insert("name".into(), req.name.clone().into());
    doc.insert("description".into(), req.description.into());
    doc.insert("type".into(), "EVENT".into());
    doc.insert("status".into(), "ENABLED".into());
    doc.insert("channel_id".into(), req.channel.id.clone().into());
    doc.insert("channel_name".into(), req.channel.name.clone().into());
    doc.insert("used".into(), json!([]));
    doc.insert("sources".into(), Value::Array(sources));
    doc.insert("targets".into(), Value::Array(targets));
    if let Some(e) = epid {
        doc.insert("enterprise_project_id".into(), e.into());
    }
    doc.insert("created_time".into(), ts.clone().into());
    doc.insert("updated_time".into(), ts.into());
    let rec = Document {
        project_id: t.project_id.clone(),
        kind: Kind::Subscription,
        id,
        name: req.name,
        parent_id: Some(req.channel.id.clone()),
        created_at: now,
        updated_at: now,
        body: Value::Object(doc),
        refs,
    };
    let quotas = [
        QuotaCheck {
            quota: "SUBSCRIPTION",
            kind: Kind::Subscription,
            parent_id: None,
            body_eq: None,
            max: st.cfg.quotas.subscription,
        },
        QuotaCheck {
            quota: "CHANNEL_SUBSCRIPTION",
            kind: Kind::Subscription,
            parent_id: Some(req.channel.id),
            body_eq: None,
            max: st.cfg.quotas.channel_subscription,
        },
    ];
    st.store.insert(&rec, &quotas).await?;
    subscription_changed(&st, &rec).await;
    Ok(ok(info(&rec.body)))
}

async fn list(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    q: Query,
) -> ApiResult<Response> {
    let paging = q.paging()?;
    let mut lq = list_query(&q, &paging);
    if let Some(c) = q.get("channel_id") {
        lq.parent_id = Some(c.to_string());
    }
    if let Some(c) = q.get("connection_id") {
        validate::max_len("connection_id", c, 64)?;
        lq.has_ref = Some(format!("connection:{c}"));
    }
    if let Some(e) = q.get("enterprise_project_id") {
        lq.body_eq
            .push(("enterprise_project_id".into(), e.to_string()));
    }
    let (total, recs) = st
        .store
        .list(&t.project_id, Kind::Subscription, &lq)
        .await?;
    Ok(list_reply(
        total,
        recs.iter().map(|r| info(&r.body)).collect(),
    ))
}

async fn show(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
) -> ApiResult<Response> {
    let subscription_id = p.get("subscription_id");
    let rec = get_or_404(&st, &t.project_id, Kind::Subscription, subscription_id).await?;
    Ok(ok(info(&rec.body)))
}

async fn update(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
    body: Bytes,
) -> ApiResult<Response> {
    let _guard = st.store.exclusive(WRITE).await?;
    let subscription_id = p.get("subscription_id");
    let mut rec = get_or_404(&st, &t.project_id, Kind::Subscription, subscription_id).await?;
    let v = json_body(&body)?;
    let env = load_env(
        &st,
        &t.project_id,
        Some(sub_channel(&rec)),
        v.get("sources").is_some(),
        v.get("targets").is_some(),
    )
    .await?;
    let old_sources = set_of(&rec.body, "sources");
    let old_targets = set_of(&rec.body, "targets");
    let old_pt = old_sources
        .first()
        .and_then(|s| s.get("provider_type"))
        .and_then(Value::as_str);
    let mut up = subscription::validate_update(&v, &env, &rec.name, old_pt)?;
    if let Some(targets) = up.targets.as_mut() {
        seal_targets(&st, targets, &old_targets)?;
    }
    let now = now_ms();
    let ts = fmt_time(now);
    let sources = match up.sources {
        Some(s) => subscription::merge_entries(&old_sources, s, &ts, new_id),
        None => old_sources,
    };
    let targets = match up.targets {
        Some(tg) => subscription::merge_entries(&old_targets, tg, &ts, new_id),
        None => old_targets,
    };
    check_client_ids(&st, &t.project_id, Some(&rec.id), &sources, &targets).await?;
    check_target_quota(&st, targets.len())?;
    if let (Some(d), Value::Object(doc)) = (up.description, &mut rec.body) {
        doc.insert("description".into(), d.into());
    }
    store_update(&st, &mut rec, sources, targets, now).await?;
    Ok(ok(info(&rec.body)))
}

async fn delete(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
) -> ApiResult<Response> {
    let _guard = st.store.exclusive(WRITE).await?;
    let subscription_id = p.get("subscription_id");
    let rec = get_or_404(&st, &t.project_id, Kind::Subscription, subscription_id).await?;
    if !st
        .store
        .delete(&t.project_id, Kind::Subscription, &rec.id)
        .await?
    {
        return Err(EgError::not_found(format!("subscription {} does not exist", rec.id)).into());
    }
    subscription_changed(&st, &rec).await;
    Ok(no_content())
}

/// The index of the entry with `id` in a stored set, or 404.
fn position(set: &[Value], id: &str, what: &str) -> ApiResult<usize> {
    set.iter()
        .position(|v| v.get("id").and_then(Value::as_str) == Some(id))
        .ok_or_else(|| {
            EgError::not_found(format!("{what} {id} does not exist in this subscription")).into()
        })
}

/// The common start of updating one source or target: the subscription, its set, the index of
/// the member the path names, and the request body without an `id` (the path names the
/// member; a body id is ignored).
async fn member_update(
    st: &AppState,
    t: &Tenant,
    subscription_id: &str,
    member_id: &str,
    body: &[u8],
    set: &str,
    what: &str,
) -> ApiResult<(Document, Vec<Value>, usize, Value)> {
    let rec = get_or_404(st, &t.project_id, Kind::Subscription, subscription_id).await?;
    let members = set_of(&rec.body, set);
    let idx = position(&members, member_id, what)?;
    let mut v = json_body(body)?;
    if let Value::Object(m) = &mut v {
        m.remove("id");
    }
    Ok((rec, members, idx, v))
}

async fn update_source(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
    body: Bytes,
) -> ApiResult<Response> {
    let source_id = p.get("source_id");
    let _guard = st.store.exclusive(WRITE).await?;
    let (mut rec, mut sources, idx, v) = member_update(
        &st,
        &t,
        p.get("subscription_id"),
        source_id,
        &body,
        "sources",
        "source",
    )
    .await?;
    let env = load_env(&st, &t.project_id, Some(sub_channel(&rec)), true, false).await?;
    let old_pt = sources[idx]
        .get("provider_type")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut doc = subscription::validate_source(&v, "", &env, old_pt.as_deref())?;
    if let Value::Object(m) = &mut doc {
        m.insert("id".into(), source_id.into());
    }
    let now = now_ms();
    let merged = subscription::merge_entries(&sources, vec![doc], &fmt_time(now), new_id);
    let Some(new_source) = merged.into_iter().next() else {
        return Err(EgError::internal().into());
    };
    sources[idx] = new_source.clone();
    let targets = set_of(&rec.body, "targets");
    store_update(&st, &mut rec, sources, targets, now).await?;
    Ok(ok(render(&new_source)))
}

async fn create_target(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
    body: Bytes,
) -> ApiResult<Response> {
    let _guard = st.store.exclusive(WRITE).await?;
    let subscription_id = p.get("subscription_id");
    let mut rec = get_or_404(&st, &t.project_id, Kind::Subscription, subscription_id).await?;
    let v = json_body(&body)?;
    let env = load_env(&st, &t.project_id, Some(sub_channel(&rec)), false, true).await?;
    let doc = subscription::validate_target(&v, "", &env)?;
    let mut new = vec![doc];
    seal_targets(&st, &mut new, &[])?;
    let mut targets = set_of(&rec.body, "targets");
    let now = now_ms();
    let merged = subscription::merge_entries(&[], new, &fmt_time(now), new_id);
    let Some(target) = merged.into_iter().next() else {
        return Err(EgError::internal().into());
    };
    targets.push(target.clone());
    subscription::check_dead_letter_topics(&targets)?;
    let sources = set_of(&rec.body, "sources");
    check_client_ids(&st, &t.project_id, Some(&rec.id), &sources, &targets).await?;
    check_target_quota(&st, targets.len())?;
    store_update(&st, &mut rec, sources, targets, now).await?;
    Ok(ok(render(&target)))
}

async fn show_target(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
) -> ApiResult<Response> {
    let target_id = p.get("target_id");
    let subscription_id = p.get("subscription_id");
    let rec = get_or_404(&st, &t.project_id, Kind::Subscription, subscription_id).await?;
    let targets = set_of(&rec.body, "targets");
    let idx = position(&targets, target_id, "target")?;
    Ok(ok(render(&targets[idx])))
}

async fn update_target(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
    body: Bytes,
) -> ApiResult<Response> {
    let target_id = p.get("target_id");
    let _guard = st.store.exclusive(WRITE).await?;
    let (mut rec, mut targets, idx, v) = member_update(
        &st,
        &t,
        p.get("subscription_id"),
        target_id,
        &body,
        "targets",
        "target",
    )
    .await?;
    let env = load_env(&st, &t.project_id, Some(sub_channel(&rec)), false, true).await?;
    let mut doc = subscription::validate_target(&v, "", &env)?;
    if let Value::Object(m) = &mut doc {
        m.insert("id".into(), target_id.into());
    }
    let mut new = vec![doc];
    seal_targets(&st, &mut new, &targets)?;
    let now = now_ms();
    let merged = subscription::merge_entries(&targets, new, &fmt_time(now), new_id);
    let Some(target) = merged.into_iter().next() else {
        return Err(EgError::internal().into());
    };
    targets[idx] = target.clone();
    subscription::check_dead_letter_topics(&targets)?;
    let sources = set_of(&rec.body, "sources");
    store_update(&st, &mut rec, sources, targets, now).await?;
    Ok(ok(render(&target)))
}

async fn delete_target(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
) -> ApiResult<Response> {
    let target_id = p.get("target_id");
    let _guard = st.store.exclusive(WRITE).await?;
    let subscription_id = p.get("subscription_id");
    let mut rec = get_or_404(&st, &t.project_id, Kind::Subscription, subscription_id).await?;
    let mut targets = set_of(&rec.body, "targets");
    let idx = position(&targets, target_id, "target")?;
    if targets.len() <= 1 {
        return Err(EgError::param("the last target of a subscription cannot be deleted").into());
    }
    targets.remove(idx);
    let sources = set_of(&rec.body, "sources");
    store_update(&st, &mut rec, sources, targets, now_ms()).await?;
    Ok(no_content())
}

/// ExecuteSubscriptionOperation: 200 with per-id results (`docs/errors.md`).
async fn operate(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    body: Bytes,
) -> ApiResult<Response> {
    let v = json_body(&body)?;
    let op = subscription::validate_operation(&v)?;
    let _guard = st.store.exclusive(WRITE).await?;
    let mut events = Vec::with_capacity(op.ids.len());
    let mut failed = 0u64;
    for id in &op.ids {
        let outcome = set_status(&st, &t.project_id, id, op.status).await;
        let mut e = Map::new();
        e.insert("subscription_id".into(), id.clone().into());
        if let Err(err) = outcome {
            failed += 1;
            e.insert("error_code".into(), err.code.into());
            e.insert("error_msg".into(), err.msg.into());
        }
        events.push(Value::Object(e));
    }
    Ok(ok(json!({"failed_count": failed, "events": events})))
}

async fn set_status(
    st: &AppState,
    project_id: &str,
    id: &str,
    status: &str,
) -> Result<(), EgError> {
    let not_found = || EgError::not_found(format!("subscription {id} does not exist"));
    let internal = |e: openeg_store::StoreError| {
        tracing::error!(error = %e, "subscription status change failed");
        EgError::internal()
    };
    let mut rec = st
        .store
        .get(project_id, Kind::Subscription, id)
        .await
        .map_err(internal)?
        .ok_or_else(not_found)?;
    if str_of(&rec.body, "status") == status {
        return Ok(());
    }
    let now = now_ms();
    let Value::Object(doc) = &mut rec.body else {
        return Err(EgError::internal());
    };
    doc.insert("status".into(), status.into());
    doc.insert("updated_time".into(), fmt_time(now).into());
    rec.updated_at = now;
    if st.store.update(&rec).await.map_err(internal)? {
        subscription_changed(st, &rec).await;
        Ok(())
    } else {
        Err(not_found())
    }
}
