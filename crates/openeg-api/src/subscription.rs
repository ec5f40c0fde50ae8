//! Subscriptions: validation and normalization of create/update bodies, their
//! source and targets, plus the pure helpers the server needs around them (set replacement,
//! reference keys, client ids, target kinds, ExecuteSubscriptionOperation bodies).
//!
//! Nothing here does I/O. The server first resolves what a body may refer to (the channel, the
//! project's custom sources and connections) into an [`Env`]; validation then runs every check
//! in the order of the field tables (`docs/errors.md`) and stops at the first violation.
//!
//! Error codes: generic violations are `EG.00513000`; filter problems `EG.00513004`; an unknown
//! channel, or an official source outside the default channel, `EG.00513005`; everything that
//! makes a target undeliverable (kind undeterminable, the kind's detail object or one of its
//! required settings missing or invalid, a detail object over 1024 bytes, a connection that does
//! not exist or has the wrong type, an HC.EG target into its own channel, a dead-letter topic
//! equal to a Kafka target's topic on the same connection) `EG.00513003`.
//!
//! Stored documents keep the wire shape: sources `{id, name, provider_type, detail?, filter,
//! created_time, updated_time}`, targets `{id, name, provider_type, connection_id?, detail?,
//! kafka_detail?, smn_detail?, eg_detail?, apigw_detail?, rocketmq_detail?, retry_times,
//! transform, dead_letter_queue?, created_time, updated_time}`. Target `name` is kept as sent;
//! delivery code decides the kind with [`target_kind`], the same function validation uses.

use crate::field::{join, required_array, ErrFn, Fields};
use crate::validate::{self, NamePattern};
use crate::EgError;
use openeg_rules::{validate_filter, validate_transform, TransformUse};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

/// Retries after the first attempt when `retry_times` is absent (`docs/limits.md`).
pub const DEFAULT_RETRY_TIMES: i64 = 16;
/// Largest accepted `retry_times`.
pub const MAX_RETRY_TIMES: i64 = 100;
/// Compact-JSON size limit of a source `detail` and of every target detail object.
pub const MAX_DETAIL_BYTES: usize = 1024;
/// Compact-JSON size limit of a filter rule.
pub const MAX_FILTER_BYTES: usize = 2048;
/// Description length limit.
pub const MAX_DESCRIPTION: usize = 255;
/// ExecuteSubscriptionOperation accepts 1..=this many ids.
pub const MAX_OPERATION_IDS: usize = 10;

/// `provider_type` of subscription sources and targets.
pub const PROVIDER_TYPES: [&str; 2] = ["CUSTOM", "OFFICIAL"];
/// ExecuteSubscriptionOperation operations and the status each one sets.
pub const OPERATIONS: [(&str, &str); 2] = [("ENABLE", "ENABLED"), ("DISABLE", "DISABLED")];

/// Target members holding a kind's settings, in table order.
const DETAIL_MEMBERS: [&str; 6] = [
    "detail",
    "kafka_detail",
    "smn_detail",
    "eg_detail",
    "apigw_detail",
    "rocketmq_detail",
];

/// Connection types (`type` of a connection document; absent means WEBHOOK).
pub const CONN_WEBHOOK: &str = "WEBHOOK";
pub const CONN_KAFKA: &str = "KAFKA";
pub const CONN_ROCKETMQ: &str = "ROCKETMQ";

/// What a target delivers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    Webhook,
    FunctionGraph,
    Workflow,
    Smn,
    Eg,
    Kafka,
    Apigw,
    RocketMq,
}

impl TargetKind {
    pub const ALL: [TargetKind; 8] = [
        TargetKind::Webhook,
        TargetKind::FunctionGraph,
        TargetKind::Workflow,
        TargetKind::Smn,
        TargetKind::Eg,
        TargetKind::Kafka,
        TargetKind::Apigw,
        TargetKind::RocketMq,
    ];

    /// The target `name` that selects this kind.
    pub fn wire_name(self) -> &'static str {
        match self {
            TargetKind::Webhook => "WEBHOOK",
            TargetKind::FunctionGraph => "HC.FunctionGraph",
            TargetKind::Workflow => "HC.FunctionFlow",
            TargetKind::Smn => "HC.SMN",
            TargetKind::Eg => "HC.EG",
            TargetKind::Kafka => "HC.Kafka",
            TargetKind::Apigw => "HC.APIGW",
            TargetKind::RocketMq => "HC.RocketMQ",
        }
    }

    /// The kind a target `name` selects (ASCII case-insensitive).
    pub fn from_name(name: &str) -> Option<TargetKind> {
        TargetKind::ALL
            .into_iter()
            .find(|k| k.wire_name().eq_ignore_ascii_case(name))
    }

    /// The member holding this kind's settings.
    pub fn detail_member(self) -> &'static str {
        match self {
            TargetKind::Webhook | TargetKind::FunctionGraph | TargetKind::Workflow => "detail",
            TargetKind::Smn => "smn_detail",
            TargetKind::Eg => "eg_detail",
            TargetKind::Kafka => "kafka_detail",
            TargetKind::Apigw => "apigw_detail",
            TargetKind::RocketMq => "rocketmq_detail",
        }
    }

    /// The connection type this kind requires (`connection_id` mandatory), if any.
    fn required_connection(self) -> Option<&'static str> {
        match self {
            TargetKind::Kafka => Some(CONN_KAFKA),
            TargetKind::RocketMq => Some(CONN_ROCKETMQ),
            _ => None,
        }
    }

    /// How the payload transform is validated for this kind.
    pub fn transform_use(self) -> TransformUse {
        match self {
            TargetKind::FunctionGraph | TargetKind::Workflow => TransformUse::FunctionGraphPayload,
            _ => TransformUse::Payload,
        }
    }
}

fn present(v: Option<&Value>) -> bool {
    v.is_some_and(|v| !v.is_null())
}

/// The kind of a target document (request body or stored): by `name`, else inferred from the
/// one populated detail object (`kafka_detail`, `smn_detail`, `eg_detail`, `apigw_detail`,
/// `rocketmq_detail`; without any of them `detail.urn` → FunctionGraph, `detail.workflow_id` →
/// workflow, `detail.url` → webhook). `None` when the name is unknown and zero or several
/// candidates exist. `HC.FunctionGraph` whose `detail` has a `workflow_id` and no `urn` is a
/// workflow target [dec].
pub fn target_kind(t: &Value) -> Option<TargetKind> {
    let detail = t.get("detail").and_then(Value::as_object);
    let named = t
        .get("name")
        .and_then(Value::as_str)
        .and_then(TargetKind::from_name);
    match named {
        Some(TargetKind::FunctionGraph)
            if detail.is_some_and(|d| !present(d.get("urn")) && present(d.get("workflow_id"))) =>
        {
            Some(TargetKind::Workflow)
        }
        Some(k) => Some(k),
        None => {
            let mut found = Vec::new();
            for (member, kind) in [
                ("kafka_detail", TargetKind::Kafka),
                ("smn_detail", TargetKind::Smn),
                ("eg_detail", TargetKind::Eg),
                ("apigw_detail", TargetKind::Apigw),
                ("rocketmq_detail", TargetKind::RocketMq),
            ] {
                if t.get(member).is_some_and(Value::is_object) {
                    found.push(kind);
                }
            }
            if found.is_empty() {
                if let Some(d) = detail {
                    for (key, kind) in [
                        ("urn", TargetKind::FunctionGraph),
                        ("workflow_id", TargetKind::Workflow),
                        ("url", TargetKind::Webhook),
                    ] {
                        if present(d.get(key)) {
                            found.push(kind);
                        }
                    }
                }
            }
            match found.as_slice() {
                [one] => Some(*one),
                _ => None,
            }
        }
    }
}

/// The channel a subscription belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelFacts {
    pub id: String,
    pub name: String,
    /// The project's default channel (official sources only subscribe there).
    pub is_default: bool,
}

/// Store facts a body is validated against, resolved by the caller beforehand.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub project_id: String,
    /// The subscription's channel; `None` when the body's `channel_id` names no channel of the
    /// project (create only).
    pub channel: Option<ChannelFacts>,
    /// Names of the project's custom event sources.
    pub custom_sources: HashSet<String>,
    /// The project's connections: id → type (`WEBHOOK`, `KAFKA`, `ROCKETMQ`).
    pub connections: HashMap<String, String>,
}

/// A validated CreateSubscription body. Sources and targets are normalized documents without
/// timestamps (client ids kept when given); see [`merge_entries`].
#[derive(Debug, Clone, PartialEq)]
pub struct CreateSubscription {
    pub name: String,
    pub description: String,
    pub channel: ChannelFacts,
    pub sources: Vec<Value>,
    pub targets: Vec<Value>,
}

/// A validated UpdateSubscription body; `None` = unchanged.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UpdateSubscription {
    pub description: Option<String>,
    pub sources: Option<Vec<Value>>,
    pub targets: Option<Vec<Value>>,
}

/// A validated ExecuteSubscriptionOperation body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Distinct ids in first-seen order.
    pub ids: Vec<String>,
    /// The status the operation sets: `ENABLED` or `DISABLED`.
    pub status: &'static str,
}

// ------------------------------------------------------------------ shared helpers

fn size_of<T: Serialize + ?Sized>(v: &T) -> usize {
    serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX)
}

/// The optional client `id` of a source or target.
fn client_id(f: &Fields) -> Result<Option<String>, EgError> {
    match f.opt_str("id")? {
        Some(id) if !id.is_empty() => {
            validate::name(&f.at("id"), id, NamePattern::ClientId)?;
            Ok(Some(id.to_string()))
        }
        _ => Ok(None),
    }
}

/// `provider_type` of a source or target: CUSTOM or OFFICIAL.
fn provider_type<'a>(f: &Fields<'a>) -> Result<&'a str, EgError> {
    let pt = f.req_str("provider_type")?;
    if !PROVIDER_TYPES.contains(&pt) {
        return Err(EgError::param(format!(
            "{} must be CUSTOM or OFFICIAL",
            f.at("provider_type")
        )));
    }
    Ok(pt)
}

fn description(o: &Fields) -> Result<Option<String>, EgError> {
    Ok(o.opt_str_max("description", MAX_DESCRIPTION)?
        .map(str::to_string))
}

/// True for an absolute `http`/`https` URL with a non-empty host (optional userinfo, optional
/// numeric port ≤ 65535, IPv6 literal in brackets) and no whitespace or control characters.
pub fn is_http_url(s: &str) -> bool {
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let strip = |p: &str| {
        s.get(..p.len())
            .filter(|head| head.eq_ignore_ascii_case(p))
            .map(|_| &s[p.len()..])
    };
    let Some(rest) = strip("http://").or_else(|| strip("https://")) else {
        return false;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host_ok, port) = if let Some(r) = hostport.strip_prefix('[') {
        match r.split_once(']') {
            Some((h, tail)) => {
                let ok = !h.is_empty()
                    && h.chars()
                        .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
                let port = if tail.is_empty() {
                    None
                } else if let Some(p) = tail.strip_prefix(':') {
                    Some(p)
                } else {
                    return false;
                };
                (ok, port)
            }
            None => return false,
        }
    } else {
        let (h, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        };
        let ok = !h.is_empty()
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '%'));
        (ok, port)
    };
    let port_ok = match port {
        None | Some("") => true,
        Some(p) => {
            p.len() <= 5
                && p.chars().all(|c| c.is_ascii_digit())
                && p.parse::<u32>().is_ok_and(|n| n <= 65535)
        }
    };
    host_ok && port_ok
}

// ------------------------------------------------------------------ bodies

/// Validates a CreateSubscription body (table order: name, description, channel_id, sources,
/// targets). `env.channel` must be the channel named by `channel_id`, or `None` if it does not
/// exist. The target count is only checked for ≥ 1; the quota is the caller's (after
/// uniqueness, `docs/errors.md`).
pub fn validate_create(body: &Value, env: &Env) -> Result<CreateSubscription, EgError> {
    let o = Fields::body(body)?;
    let name = o.req_str("name")?;
    validate::name("name", name, NamePattern::Mixed)?;
    let description = description(&o)?.unwrap_or_default();
    let channel_id = o.req_str("channel_id")?;
    let channel = match &env.channel {
        Some(c) if c.id == channel_id => c.clone(),
        _ => {
            return Err(EgError::channel(format!(
                "channel {channel_id} does not exist"
            )))
        }
    };
    let sources = validate_sources(o.get("sources"), env, None)?;
    let targets = validate_targets(o.get("targets"), env)?;
    Ok(CreateSubscription {
        name: name.to_string(),
        description,
        channel,
        sources,
        targets,
    })
}

/// Validates an UpdateSubscription body. `name` and `channel_id` may be repeated but not
/// changed; `old_provider_type` is the current source's `provider_type`, which must not change.
pub fn validate_update(
    body: &Value,
    env: &Env,
    current_name: &str,
    old_provider_type: Option<&str>,
) -> Result<UpdateSubscription, EgError> {
    let o = Fields::body(body)?;
    if let Some(n) = o.opt_str("name")? {
        if n != current_name {
            return Err(EgError::param("name cannot be changed"));
        }
    }
    let description = description(&o)?;
    if let Some(c) = o.opt_str("channel_id")? {
        if env.channel.as_ref().is_none_or(|ch| ch.id != c) {
            return Err(EgError::param("channel_id cannot be changed"));
        }
    }
    let sources = match o.get("sources") {
        None => None,
        v => Some(validate_sources(v, env, old_provider_type)?),
    };
    let targets = match o.get("targets") {
        None => None,
        v => Some(validate_targets(v, env)?),
    };
    Ok(UpdateSubscription {
        description,
        sources,
        targets,
    })
}

/// `sources`: exactly one SubscriptionSource.
pub fn validate_sources(
    v: Option<&Value>,
    env: &Env,
    old_provider_type: Option<&str>,
) -> Result<Vec<Value>, EgError> {
    let a = required_array(v, "sources")?;
    if a.len() != 1 {
        return Err(EgError::param(format!(
            "sources must hold exactly one source, not {}",
            a.len()
        )));
    }
    a.iter()
        .enumerate()
        .map(|(i, s)| validate_source(s, &format!("sources[{i}]"), env, old_provider_type))
        .collect()
}

/// One SubscriptionSource (table order: id, name, provider_type, detail, filter). `path`
/// prefixes field names in messages (`""` for a bare body). Returns the normalized document
/// (no timestamps).
pub fn validate_source(
    s: &Value,
    path: &str,
    env: &Env,
    old_provider_type: Option<&str>,
) -> Result<Value, EgError> {
    let o = Fields::object(s, path)?;
    let mut doc = Map::new();
    if let Some(id) = client_id(&o)? {
        doc.insert("id".into(), id.into());
    }
    let name = o.req_str("name")?;
    let pt = provider_type(&o)?;
    if let Some(old) = old_provider_type {
        if old != pt {
            return Err(EgError::param(format!(
                "{} cannot change (it is {old})",
                o.at("provider_type")
            )));
        }
    }
    if pt == "CUSTOM" {
        if !env.custom_sources.contains(name) {
            return Err(EgError::param(format!(
                "{}: {name} is not a custom event source of the project",
                o.at("name")
            )));
        }
    } else {
        if !name.starts_with("HC.") {
            return Err(EgError::param(format!(
                "{}: official event source names start with HC.",
                o.at("name")
            )));
        }
        if !env.channel.as_ref().is_some_and(|c| c.is_default) {
            return Err(EgError::channel(
                "official event sources can only be subscribed on the default channel",
            ));
        }
    }
    doc.insert("name".into(), name.into());
    doc.insert("provider_type".into(), pt.into());
    if let Some(d) = o.opt_obj("detail")? {
        let n = size_of(d);
        if n > MAX_DETAIL_BYTES {
            return Err(EgError::param(format!(
                "{} is {n} bytes compact, more than {MAX_DETAIL_BYTES}",
                o.at("detail")
            )));
        }
        doc.insert("detail".into(), Value::Object(d.clone()));
    }
    let fpath = o.at("filter");
    let filter = match o.get("filter") {
        None => return Err(EgError::filter(format!("{fpath} is required"))),
        Some(f) => f,
    };
    if !filter.is_object() {
        return Err(EgError::filter(format!("{fpath} must be a JSON object")));
    }
    let n = size_of(filter);
    if n > MAX_FILTER_BYTES {
        return Err(EgError::filter(format!(
            "{fpath} is {n} bytes compact, more than {MAX_FILTER_BYTES}"
        )));
    }
    validate_filter(filter, true).map_err(|e| EgError::filter(format!("{fpath}: {e}")))?;
    doc.insert("filter".into(), filter.clone());
    Ok(Value::Object(doc))
}

/// `targets`: at least one SubscriptionTarget, each valid, and no dead-letter topic equal to a
/// Kafka target's topic on the same connection.
pub fn validate_targets(v: Option<&Value>, env: &Env) -> Result<Vec<Value>, EgError> {
    let a = required_array(v, "targets")?;
    if a.is_empty() {
        return Err(EgError::param("targets must hold at least one target"));
    }
    let docs = a
        .iter()
        .enumerate()
        .map(|(i, t)| validate_target(t, &format!("targets[{i}]"), env))
        .collect::<Result<Vec<_>, _>>()?;
    check_dead_letter_topics(&docs)?;
    Ok(docs)
}

/// One SubscriptionTarget (table order: id, name, provider_type, connection_id, the detail
/// objects, then the kind's required settings, retry_times, transform, dead_letter_queue).
/// Returns the normalized document (no timestamps; `retry_times` defaulted).
pub fn validate_target(t: &Value, path: &str, env: &Env) -> Result<Value, EgError> {
    let o = Fields::object(t, path)?;
    let mut doc = Map::new();
    if let Some(id) = client_id(&o)? {
        doc.insert("id".into(), id.into());
    }
    let name = o.req_str("name")?;
    doc.insert("name".into(), name.into());
    let pt = provider_type(&o)?;
    doc.insert("provider_type".into(), pt.into());
    let conn = match o.opt_str("connection_id")? {
        Some(c) if !c.is_empty() => {
            validate::max_len(&o.at("connection_id"), c, 64)?;
            doc.insert("connection_id".into(), c.into());
            Some(c)
        }
        _ => None,
    };
    for member in DETAIL_MEMBERS {
        if let Some(d) = o.opt_obj(member)? {
            let n = size_of(d);
            if n > MAX_DETAIL_BYTES {
                return Err(EgError::target(format!(
                    "{} is {n} bytes compact, more than {MAX_DETAIL_BYTES}",
                    o.at(member)
                )));
            }
            let mut d = d.clone();
            if member == "kafka_detail" {
                default_key_type(&mut d);
            }
            doc.insert(member.into(), Value::Object(d));
        }
    }
    let doc = Value::Object(doc);
    let kind = target_kind(&doc).ok_or_else(|| {
        EgError::target(format!(
            "{}: {name} is not a known target kind and the kind cannot be inferred from exactly one detail object",
            o.at("name")
        ))
    })?;
    check_kind(kind, &doc, path, env, conn)?;
    let Value::Object(mut doc) = doc else {
        return Err(EgError::internal());
    };
    let retry = match o.get("retry_times") {
        None => DEFAULT_RETRY_TIMES,
        Some(v) => match v.as_i64() {
            Some(n) if (0..=MAX_RETRY_TIMES).contains(&n) => n,
            _ => {
                return Err(EgError::param(format!(
                    "{} must be an integer between 0 and {MAX_RETRY_TIMES}",
                    o.at("retry_times")
                )))
            }
        },
    };
    doc.insert("retry_times".into(), retry.into());
    let tpath = o.at("transform");
    let transform = match o.get("transform") {
        None => return Err(EgError::param(format!("{tpath} is required"))),
        Some(v) if v.is_object() => v,
        Some(_) => return Err(EgError::param(format!("{tpath} must be a JSON object"))),
    };
    validate_transform(transform, kind.transform_use())
        .map_err(|e| EgError::param(format!("{tpath}: {e}")))?;
    doc.insert("transform".into(), transform.clone());
    if let Some(d) = o.nested("dead_letter_queue")? {
        validate_dead_letter_queue(&d, env)?;
        doc.insert("dead_letter_queue".into(), Value::Object(d.map().clone()));
    }
    Ok(Value::Object(doc))
}

/// `kafka_detail.keyTransform.type` is optional: a key transform with neither type nor
/// value nor template is `NONE` (no record key). A value without a type stays an error.
fn default_key_type(d: &mut Map<String, Value>) {
    if let Some(Value::Object(kt)) = d.get_mut("keyTransform") {
        let unset = |k: &str| matches!(kt.get(k), None | Some(Value::Null));
        if unset("type") && unset("value") && unset("template") {
            kt.insert("type".into(), "NONE".into());
        }
    }
}

/// The connection `id` exists and has type `want` (any type when `None`).
fn check_connection(
    env: &Env,
    path: &str,
    id: &str,
    want: Option<&str>,
    err: ErrFn,
) -> Result<(), EgError> {
    match env.connections.get(id) {
        None => Err(err(format!("{path}: connection {id} does not exist"))),
        Some(t) => match want {
            Some(w) if t != w => Err(err(format!(
                "{path}: connection {id} is a {t} connection, {w} is required"
            ))),
            _ => Ok(()),
        },
    }
}

fn check_kind(
    kind: TargetKind,
    doc: &Value,
    path: &str,
    env: &Env,
    conn: Option<&str>,
) -> Result<(), EgError> {
    let member = kind.detail_member();
    let mpath = join(path, member);
    let d = doc.get(member).and_then(Value::as_object).ok_or_else(|| {
        EgError::target(format!(
            "{mpath} is required for {} targets",
            kind.wire_name()
        ))
    })?;
    // A missing or empty required setting makes the target undeliverable.
    let d = Fields::new(d, mpath).missing_as(EgError::target);
    let req = |key: &str| d.req_str(key);
    let cpath = join(path, "connection_id");
    match kind.required_connection() {
        Some(want) => match conn {
            Some(c) => check_connection(env, &cpath, c, Some(want), EgError::target)?,
            None => {
                return Err(EgError::target(format!(
                    "{cpath} (a {want} connection) is required for {} targets",
                    kind.wire_name()
                )))
            }
        },
        None => {
            if let Some(c) = conn {
                let want = (kind == TargetKind::Webhook).then_some(CONN_WEBHOOK);
                check_connection(env, &cpath, c, want, EgError::target)?;
            }
        }
    }
    match kind {
        TargetKind::Webhook | TargetKind::Apigw => {
            let url = req("url")?;
            if !is_http_url(url) {
                return Err(EgError::target(format!(
                    "{} must be an absolute http or https URL with a host",
                    d.at("url")
                )));
            }
            if kind == TargetKind::Apigw {
                check_header_parameters(&d)?;
            }
        }
        TargetKind::FunctionGraph => {
            req("urn")?;
            let it = req("invoke_type")?;
            if it != "SYNC" && it != "ASYNC" {
                return Err(EgError::target(format!(
                    "{} must be SYNC or ASYNC",
                    d.at("invoke_type")
                )));
            }
            req("agency_name")?;
        }
        TargetKind::Workflow => {
            req("workflow_id")?;
            req("agency_name")?;
        }
        TargetKind::Smn => {
            req("urn")?;
            req("agency_name")?;
            if let Some(st) = d.opt_obj("subject_transform")? {
                validate_transform(&Value::Object(st.clone()), TransformUse::SmnSubject)
                    .map_err(|e| EgError::param(format!("{}: {e}", d.at("subject_transform"))))?;
            }
        }
        TargetKind::Eg => {
            let project = req("target_project_id")?;
            let channel = req("target_channel_id")?;
            req("target_region")?;
            d.opt_bool("cross_region")?;
            d.opt_bool("cross_account")?;
            req("agency_name")?;
            if project == env.project_id && env.channel.as_ref().is_some_and(|c| c.id == channel) {
                return Err(EgError::target(format!(
                    "{}: an HC.EG target cannot deliver into the subscription's own channel",
                    d.path()
                )));
            }
        }
        TargetKind::Kafka => {
            req("topic")?;
            if let Some(kt) = d.opt_obj("keyTransform")? {
                validate_transform(&Value::Object(kt.clone()), TransformUse::Key)
                    .map_err(|e| EgError::param(format!("{}: {e}", d.at("keyTransform"))))?;
            }
        }
        TargetKind::RocketMq => {
            req("topic")?;
            if let Some(kt) = d.opt_obj("key_transform")? {
                validate_transform(&Value::Object(kt.clone()), TransformUse::Key)
                    .map_err(|e| EgError::param(format!("{}: {e}", d.at("key_transform"))))?;
            }
        }
    }
    Ok(())
}

/// `invocation_http_parameters.header_parameters`: objects with a header-name `key`, a string
/// `value` without CR/LF and an optional boolean `is_value_secret`. `d` is the detail object.
fn check_header_parameters(d: &Fields) -> Result<(), EgError> {
    let Some(ihp) = d.nested("invocation_http_parameters")? else {
        return Ok(());
    };
    let Some(headers) = ihp.opt_array("header_parameters")? else {
        return Ok(());
    };
    for (i, h) in headers.iter().enumerate() {
        let h = Fields::object(h, format!("{}[{i}]", ihp.at("header_parameters")))?;
        h.opt_bool("is_value_secret")?;
        let key = h.req_str("key")?;
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if !key.chars().all(token) {
            return Err(EgError::param(format!(
                "{} must be an HTTP header name",
                h.at("key")
            )));
        }
        if let Some(v) = h.opt_str("value")? {
            if v.contains(['\r', '\n', '\0']) {
                return Err(EgError::param(format!(
                    "{} must not contain line breaks",
                    h.at("value")
                )));
            }
        }
    }
    Ok(())
}

/// DeadLetterQueue (table order: type, instance_id, connection_id, topic).
fn validate_dead_letter_queue(d: &Fields, env: &Env) -> Result<(), EgError> {
    let ty = d.req_str("type")?;
    if ty != "KAFKA" {
        return Err(EgError::param(format!("{} must be KAFKA", d.at("type"))));
    }
    d.req_str("instance_id")?;
    let conn = d.req_str("connection_id")?;
    check_connection(
        env,
        &d.at("connection_id"),
        conn,
        Some(CONN_KAFKA),
        EgError::param,
    )?;
    d.req_str("topic")?;
    Ok(())
}

/// A dead-letter queue must not write to the topic of a Kafka target on the same connection
/// (delivery loop) → `EG.00513003`. Checked over a whole target set.
pub fn check_dead_letter_topics(targets: &[Value]) -> Result<(), EgError> {
    let kafka: Vec<(&str, &str)> = targets
        .iter()
        .filter(|t| target_kind(t) == Some(TargetKind::Kafka))
        .filter_map(|t| {
            let c = t.get("connection_id")?.as_str()?;
            let topic = t.get("kafka_detail")?.get("topic")?.as_str()?;
            Some((c, topic))
        })
        .collect();
    for t in targets {
        let Some(dlq) = t.get("dead_letter_queue") else {
            continue;
        };
        let c = dlq.get("connection_id").and_then(Value::as_str);
        let topic = dlq.get("topic").and_then(Value::as_str);
        if let (Some(c), Some(topic)) = (c, topic) {
            if kafka.contains(&(c, topic)) {
                return Err(EgError::target(format!(
                    "dead_letter_queue.topic {topic} is the topic of a Kafka target on the same connection"
                )));
            }
        }
    }
    Ok(())
}

/// Validates an ExecuteSubscriptionOperation body: `subscription_ids` 1–10 non-empty strings
/// (duplicates kept once, first-seen order), `operation` `ENABLE` | `DISABLE`.
pub fn validate_operation(body: &Value) -> Result<Operation, EgError> {
    let o = Fields::body(body)?;
    let a = o.req_array("subscription_ids")?;
    if a.is_empty() || a.len() > MAX_OPERATION_IDS {
        return Err(EgError::param(format!(
            "subscription_ids must hold 1 to {MAX_OPERATION_IDS} ids"
        )));
    }
    let mut ids: Vec<String> = Vec::new();
    for v in a {
        match v.as_str() {
            Some(s) if !s.is_empty() => {
                if !ids.iter().any(|x| x == s) {
                    ids.push(s.to_string());
                }
            }
            _ => {
                return Err(EgError::param(
                    "subscription_ids must hold non-empty strings",
                ))
            }
        }
    }
    let op = o.req_str("operation")?;
    let Some(&(_, status)) = OPERATIONS.iter().find(|(o, _)| *o == op) else {
        return Err(EgError::param("operation must be ENABLE or DISABLE"));
    };
    Ok(Operation { ids, status })
}

// ------------------------------------------------------------------ set handling

/// Replaces a source or target set (update semantics): each new entry gets its
/// client id or a generated one; an entry whose id is in `old` keeps that entry's
/// `created_time`; every entry gets `updated_time = now`. Entries of `old` not listed are gone.
/// Output members: `id` first, then the entry's members, then the two timestamps.
pub fn merge_entries(
    old: &[Value],
    new: Vec<Value>,
    now: &str,
    mut gen_id: impl FnMut() -> String,
) -> Vec<Value> {
    new.into_iter()
        .map(|e| {
            let e = match e {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            let id = match e.get("id") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                _ => gen_id(),
            };
            let created = find_by_id(old, &id)
                .and_then(|o| o.get("created_time"))
                .cloned()
                .unwrap_or_else(|| now.into());
            let mut out = Map::new();
            out.insert("id".into(), id.into());
            out.extend(
                e.into_iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "id" | "created_time" | "updated_time")),
            );
            out.insert("created_time".into(), created);
            out.insert("updated_time".into(), now.into());
            Value::Object(out)
        })
        .collect()
}

/// The entry of a set with this `id`.
pub fn find_by_id<'a>(set: &'a [Value], id: &str) -> Option<&'a Value> {
    set.iter()
        .find(|v| v.get("id").and_then(Value::as_str) == Some(id))
}

/// The ids of a source or target set. Client ids are unique service-wide among sources and
/// among targets; a source and a target may share one (the reference's CreateSubscription
/// example does), their paths (`sources/{id}`, `targets/{id}`) never meet.
pub fn client_ids(set: &[Value]) -> Vec<String> {
    set.iter()
        .filter_map(|v| v.get("id").and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The first id that occurs twice.
pub fn first_duplicate(ids: &[String]) -> Option<&str> {
    let mut seen = HashSet::new();
    ids.iter()
        .find(|i| !seen.insert(i.as_str()))
        .map(String::as_str)
}

/// Reference keys of a subscription (`openeg_store::Record::refs`), deduplicated in order:
/// `source:<name>` (CUSTOM) / `official:<name>` (OFFICIAL) per source, `tid:<id>` per source
/// and target id, `connection:<id>` per target and dead-letter connection, `fn:<urn>` per
/// FunctionGraph target, `workflow:<id>` per workflow target.
pub fn refs(sources: &[Value], targets: &[Value]) -> Vec<String> {
    let s = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .filter(|x| !x.is_empty())
            .map(str::to_string)
    };
    let mut out: Vec<String> = Vec::new();
    for src in sources {
        if let Some(name) = s(src, "name") {
            let prefix = if src.get("provider_type").and_then(Value::as_str) == Some("OFFICIAL") {
                "official"
            } else {
                "source"
            };
            out.push(format!("{prefix}:{name}"));
        }
        if let Some(id) = s(src, "id") {
            out.push(format!("tid:{id}"));
        }
    }
    for t in targets {
        if let Some(id) = s(t, "id") {
            out.push(format!("tid:{id}"));
        }
        if let Some(c) = s(t, "connection_id") {
            out.push(format!("connection:{c}"));
        }
        if let Some(c) = t
            .get("dead_letter_queue")
            .and_then(|d| s(d, "connection_id"))
        {
            out.push(format!("connection:{c}"));
        }
        let detail = t.get("detail").cloned().unwrap_or(Value::Null);
        match target_kind(t) {
            Some(TargetKind::FunctionGraph) => {
                if let Some(urn) = s(&detail, "urn") {
                    out.push(format!("fn:{urn}"));
                }
            }
            Some(TargetKind::Workflow) => {
                if let Some(w) = s(&detail, "workflow_id") {
                    out.push(format!("workflow:{w}"));
                }
            }
            _ => {}
        }
    }
    let mut seen = HashSet::new();
    out.retain(|k| seen.insert(k.clone()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PROJECT: &str = "p1";
    const CH: &str = "ch-1";
    const KAFKA_CONN: &str = "conn-kafka";
    const RMQ_CONN: &str = "conn-rmq";
    const WH_CONN: &str = "conn-webhook";

    fn env() -> Env {
        Env {
            project_id: PROJECT.into(),
            channel: Some(ChannelFacts {
                id: CH.into(),
                name: "orders".into(),
                is_default: false,
            }),
            custom_sources: ["app-src".to_string()].into_iter().collect(),
            connections: [
                (KAFKA_CONN.to_string(), CONN_KAFKA.to_string()),
                (RMQ_CONN.to_string(), CONN_ROCKETMQ.to_string()),
                (WH_CONN.to_string(), CONN_WEBHOOK.to_string()),
            ]
            .into_iter()
            .collect(),
        }
    }

    fn default_env() -> Env {
        let mut e = env();
        e.channel = Some(ChannelFacts {
            id: "ch-default".into(),
            name: "default".into(),
            is_default: true,
        });
        e
    }

    fn filter() -> Value {
        json!({"source": [{"op": "StringIn", "values": ["app-src"]}]})
    }

    fn source() -> Value {
        json!({"name": "app-src", "provider_type": "CUSTOM", "filter": filter()})
    }

    fn original() -> Value {
        json!({"type": "ORIGINAL", "value": ""})
    }

    fn webhook() -> Value {
        json!({"name": "WEBHOOK", "provider_type": "CUSTOM",
               "detail": {"url": "https://hooks.example.com/p?x=1"}, "transform": original()})
    }

    fn fg() -> Value {
        json!({"name": "HC.FunctionGraph", "provider_type": "OFFICIAL",
               "detail": {"urn": "urn:fss:r:p:function:default:f1:latest", "invoke_type": "SYNC",
                          "agency_name": "EG_AGENCY"},
               "transform": original()})
    }

    fn workflow() -> Value {
        json!({"name": "HC.FunctionFlow", "provider_type": "OFFICIAL",
               "detail": {"workflow_id": "wf-1", "agency_name": "EG_AGENCY"}, "transform": original()})
    }

    fn smn() -> Value {
        json!({"name": "HC.SMN", "provider_type": "OFFICIAL",
               "smn_detail": {"urn": "urn:smn:r:p:t", "agency_name": "a",
                              "subject_transform": {"type": "CONSTANT", "value": "hi"}},
               "transform": original()})
    }

    fn eg() -> Value {
        json!({"name": "HC.EG", "provider_type": "OFFICIAL",
               "eg_detail": {"target_project_id": PROJECT, "target_channel_id": "other-ch",
                             "target_region": "r1", "cross_region": false, "cross_account": false,
                             "agency_name": "a"},
               "transform": original()})
    }

    fn kafka() -> Value {
        json!({"name": "HC.Kafka", "provider_type": "OFFICIAL", "connection_id": KAFKA_CONN,
               "kafka_detail": {"topic": "orders", "keyTransform": {"type": "CONSTANT", "value": "k"}},
               "transform": original()})
    }

    fn apigw() -> Value {
        json!({"name": "HC.APIGW", "provider_type": "OFFICIAL",
               "apigw_detail": {"url": "https://api.example.com/x", "invocation_http_parameters": {
                   "header_parameters": [{"is_value_secret": true, "key": "X-Secret", "value": "s"},
                                         {"is_value_secret": false, "key": "X-Plain", "value": "p"}]}},
               "transform": original()})
    }

    fn rocketmq() -> Value {
        json!({"name": "HC.RocketMQ", "provider_type": "OFFICIAL", "connection_id": RMQ_CONN,
               "rocketmq_detail": {"topic": "t1", "key_transform": {"type": "CONSTANT", "value": "k"}},
               "transform": original()})
    }

    fn create_body(targets: Vec<Value>) -> Value {
        json!({"name": "sub-1", "channel_id": CH, "sources": [source()], "targets": targets})
    }

    fn create(body: &Value) -> Result<CreateSubscription, EgError> {
        validate_create(body, &env())
    }

    fn code(r: Result<impl std::fmt::Debug, EgError>) -> &'static str {
        match r {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => e.code,
        }
    }

    fn target(t: Value) -> Result<Value, EgError> {
        validate_target(&t, "targets[0]", &env())
    }

    fn with(mut v: Value, ptr: &str, new: Value) -> Value {
        if let Some(slot) = v.pointer_mut(ptr) {
            *slot = new;
        } else {
            let (parent, key) = ptr.rsplit_once('/').unwrap();
            v.pointer_mut(parent)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .insert(key.into(), new);
        }
        v
    }

    fn without(mut v: Value, ptr: &str) -> Value {
        let (parent, key) = ptr.rsplit_once('/').unwrap();
        v.pointer_mut(parent)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove(key);
        v
    }

    // ---------------------------------------------------------------- create body

    #[test]
    fn valid_create_normalizes() {
        let c = create(&create_body(vec![webhook()])).unwrap();
        assert_eq!(c.name, "sub-1");
        assert_eq!(c.description, "");
        assert_eq!(c.channel.id, CH);
        assert_eq!(c.sources, vec![source()]);
        assert_eq!(c.targets[0]["retry_times"], 16);
        assert_eq!(
            c.targets[0]["detail"]["url"],
            "https://hooks.example.com/p?x=1"
        );
        assert!(c.targets[0].get("id").is_none());
    }

    #[test]
    fn name_rules() {
        let b = create_body(vec![webhook()]);
        assert_eq!(
            code(create(&with(b.clone(), "/name", json!("a".repeat(129))))),
            "EG.00513000"
        );
        assert!(create(&with(b.clone(), "/name", json!("a".repeat(128)))).is_ok());
        assert_eq!(
            code(create(&with(b.clone(), "/name", json!("-x")))),
            "EG.00513000"
        );
        assert_eq!(code(create(&without(b.clone(), "/name"))), "EG.00513000");
        assert_eq!(code(create(&with(b, "/name", json!(5)))), "EG.00513000");
        assert_eq!(code(create(&json!([1]))), "EG.00513000");
    }

    #[test]
    fn description_length() {
        let b = create_body(vec![webhook()]);
        assert!(create(&with(b.clone(), "/description", json!("d".repeat(255)))).is_ok());
        assert_eq!(
            code(create(&with(b, "/description", json!("d".repeat(256))))),
            "EG.00513000"
        );
    }

    #[test]
    fn channel_missing_vs_unknown() {
        let b = create_body(vec![webhook()]);
        assert_eq!(
            code(create(&without(b.clone(), "/channel_id"))),
            "EG.00513000"
        );
        assert_eq!(
            code(create(&with(b.clone(), "/channel_id", json!("")))),
            "EG.00513000"
        );
        assert_eq!(
            code(create(&with(b.clone(), "/channel_id", json!("nope")))),
            "EG.00513005"
        );
        let mut e = env();
        e.channel = None;
        assert_eq!(code(validate_create(&b, &e)), "EG.00513005");
    }

    #[test]
    fn exactly_one_source() {
        let b = create_body(vec![webhook()]);
        assert_eq!(
            code(create(&with(b.clone(), "/sources", json!([])))),
            "EG.00513000"
        );
        assert_eq!(
            code(create(&with(
                b.clone(),
                "/sources",
                json!([source(), source()])
            ))),
            "EG.00513000"
        );
        assert_eq!(code(create(&without(b.clone(), "/sources"))), "EG.00513000");
        assert_eq!(
            code(create(&with(b, "/sources", json!({"a": 1})))),
            "EG.00513000"
        );
    }

    #[test]
    fn targets_present_and_non_empty() {
        let b = create_body(vec![webhook()]);
        assert_eq!(
            code(create(&with(b.clone(), "/targets", json!([])))),
            "EG.00513000"
        );
        assert_eq!(code(create(&without(b, "/targets"))), "EG.00513000");
        // the count quota is the server's: six targets validate here
        assert!(create(&create_body(vec![webhook(); 6])).is_ok());
    }

    #[test]
    fn field_errors_follow_table_order() {
        // a bad name is reported before a bad channel, a bad channel before a bad source
        let b = json!({"name": "-bad", "channel_id": "nope", "sources": [], "targets": []});
        let e = create(&b).unwrap_err();
        assert!(e.msg.contains("name"), "{}", e.msg);
        let b = with(b, "/name", json!("ok"));
        assert_eq!(code(create(&b)), "EG.00513005");
        let b = with(b, "/channel_id", json!(CH));
        assert!(create(&b).unwrap_err().msg.contains("sources"));
        // filter (513004) before targets (513003)
        let b = create_body(vec![with(webhook(), "/detail/url", json!("ftp://x"))]);
        let b = with(b, "/sources/0/filter", json!({"type": []}));
        assert_eq!(code(create(&b)), "EG.00513004");
    }

    // ---------------------------------------------------------------- sources

    #[test]
    fn source_rules() {
        let e = env();
        let ok = |s: Value| validate_source(&s, "sources[0]", &e, None);
        assert!(ok(source()).is_ok());
        let id = "a".repeat(32);
        assert_eq!(
            ok(with(source(), "/id", json!(id))).unwrap()["id"],
            json!(id)
        );
        assert_eq!(
            code(ok(with(
                source(),
                "/id",
                json!(format!("UPPER{}", "a".repeat(30)))
            ))),
            "EG.00513000"
        );
        assert_eq!(
            code(ok(with(source(), "/id", json!("a".repeat(31))))),
            "EG.00513000"
        );
        assert_eq!(
            code(ok(with(source(), "/id", json!("a".repeat(65))))),
            "EG.00513000"
        );
        assert_eq!(code(ok(without(source(), "/name"))), "EG.00513000");
        assert_eq!(
            code(ok(with(source(), "/name", json!("no-such-src")))),
            "EG.00513000"
        );
        assert_eq!(code(ok(without(source(), "/provider_type"))), "EG.00513000");
        assert_eq!(
            code(ok(with(source(), "/provider_type", json!("PARTNER")))),
            "EG.00513000"
        );
        assert!(ok(with(source(), "/detail", json!({"k": "v"}))).is_ok());
        assert_eq!(
            code(ok(with(source(), "/detail", json!("str")))),
            "EG.00513000"
        );
        assert_eq!(
            code(ok(with(
                source(),
                "/detail",
                json!({"x": "y".repeat(1100)})
            ))),
            "EG.00513000"
        );
        // detail exactly 1024 bytes compact is fine
        let base = size_of(&json!({"x": ""}));
        assert!(ok(with(
            source(),
            "/detail",
            json!({"x": "y".repeat(1024 - base)})
        ))
        .is_ok());
        assert_eq!(
            code(ok(with(
                source(),
                "/detail",
                json!({"x": "y".repeat(1025 - base)})
            ))),
            "EG.00513000"
        );
    }

    #[test]
    fn official_source_needs_default_channel_and_hc_prefix() {
        let official = json!({"name": "HC.OBS", "provider_type": "OFFICIAL",
                              "filter": {"source": [{"op": "StringIn", "values": ["HC.OBS"]}]}});
        assert!(validate_source(&official, "s", &default_env(), None).is_ok());
        assert_eq!(
            code(validate_source(&official, "s", &env(), None)),
            "EG.00513005"
        );
        let not_hc = with(official.clone(), "/name", json!("OBS"));
        assert_eq!(
            code(validate_source(&not_hc, "s", &default_env(), None)),
            "EG.00513000"
        );
    }

    #[test]
    fn source_provider_type_is_immutable() {
        let e = default_env();
        let official = json!({"name": "HC.OBS", "provider_type": "OFFICIAL",
                              "filter": {"source": [{"op": "StringIn", "values": ["HC.OBS"]}]}});
        assert_eq!(
            code(validate_source(&official, "", &e, Some("CUSTOM"))),
            "EG.00513000"
        );
        assert!(validate_source(&official, "", &e, Some("OFFICIAL")).is_ok());
        // the immutability error wins over the channel error
        assert_eq!(
            code(validate_source(&official, "", &env(), Some("CUSTOM"))),
            "EG.00513000"
        );
    }

    #[test]
    fn filter_rules() {
        let e = env();
        let f = |filter: Value| validate_source(&with(source(), "/filter", filter), "s", &e, None);
        assert_eq!(
            code(validate_source(
                &without(source(), "/filter"),
                "s",
                &e,
                None
            )),
            "EG.00513004"
        );
        assert_eq!(code(f(json!([1, 2]))), "EG.00513004");
        assert_eq!(
            code(f(json!({"type": [{"op": "StringIn", "values": ["a"]}]}))),
            "EG.00513004"
        );
        assert_eq!(
            code(f(
                json!({"source": [{"op": "StringIn", "values": ["a"]}], "id": []})
            )),
            "EG.00513004"
        );
        // the filter is kept exactly as submitted
        let rich = json!({"source": [{"op": "StringIn", "values": ["app-src"]}],
                          "data": {"amount": [{"op": "NumberGreaterThan", "value": 10}]}});
        assert_eq!(f(rich.clone()).unwrap()["filter"], rich);
    }

    #[test]
    fn filter_size_limit_is_compact_2048() {
        let e = env();
        let sized = |n: usize| {
            let mut f = json!({"source": [{"op": "StringIn", "values": ["app-src"]}],
                               "type": [{"op": "StringIn", "values": [""]}]});
            let base = size_of(&f);
            f["type"][0]["values"][0] = json!("x".repeat(n - base));
            assert_eq!(size_of(&f), n);
            f
        };
        assert!(validate_source(&with(source(), "/filter", sized(2048)), "s", &e, None).is_ok());
        assert_eq!(
            code(validate_source(
                &with(source(), "/filter", sized(2049)),
                "s",
                &e,
                None
            )),
            "EG.00513004"
        );
    }

    // ---------------------------------------------------------------- target kinds

    #[test]
    fn every_kind_valid() {
        for (t, k) in [
            (webhook(), TargetKind::Webhook),
            (fg(), TargetKind::FunctionGraph),
            (workflow(), TargetKind::Workflow),
            (smn(), TargetKind::Smn),
            (eg(), TargetKind::Eg),
            (kafka(), TargetKind::Kafka),
            (apigw(), TargetKind::Apigw),
            (rocketmq(), TargetKind::RocketMq),
        ] {
            let d = target(t.clone()).unwrap_or_else(|e| panic!("{t}: {e}"));
            assert_eq!(target_kind(&d), Some(k));
            assert_eq!(d["retry_times"], 16);
            assert_eq!(d["transform"], original());
        }
        let wc = with(webhook(), "/connection_id", json!(WH_CONN));
        assert_eq!(target(wc).unwrap()["connection_id"], WH_CONN);
    }

    #[test]
    fn webhook_invalid() {
        for url in [
            "not a url",
            "ftp://example.com/x",
            "http://",
            "/hook",
            "http:///x",
            "https://h:99999/",
            "http://a b/",
        ] {
            assert_eq!(
                code(target(with(webhook(), "/detail/url", json!(url)))),
                "EG.00513003",
                "{url}"
            );
        }
        assert_eq!(code(target(without(webhook(), "/detail"))), "EG.00513003");
        assert_eq!(
            code(target(without(webhook(), "/detail/url"))),
            "EG.00513003"
        );
        assert_eq!(
            code(target(with(webhook(), "/detail/url", json!("")))),
            "EG.00513003"
        );
        // connection must exist and be a WEBHOOK connection
        assert_eq!(
            code(target(with(webhook(), "/connection_id", json!("nope")))),
            "EG.00513003"
        );
        assert_eq!(
            code(target(with(webhook(), "/connection_id", json!(KAFKA_CONN)))),
            "EG.00513003"
        );
        assert_eq!(
            code(target(with(
                webhook(),
                "/connection_id",
                json!("c".repeat(65))
            ))),
            "EG.00513000"
        );
        // oversized detail
        let long = format!("http://a.example/{}", "x".repeat(1100));
        assert_eq!(
            code(target(with(webhook(), "/detail/url", json!(long)))),
            "EG.00513003"
        );
    }

    #[test]
    fn url_parser() {
        for ok in [
            "http://a",
            "HTTPS://A.example:443/x?y#z",
            "http://u:p@h:8080/",
            "http://[::1]:80/x",
            "http://10.0.0.1/",
            "http://h:/",
        ] {
            assert!(is_http_url(ok), "{ok}");
        }
        for bad in [
            "",
            "http:/a",
            "https//a",
            "http://[::1",
            "http://[::1]x",
            "http://h:x/",
            "mailto:a@b",
            "http://@/",
        ] {
            assert!(!is_http_url(bad), "{bad}");
        }
    }

    #[test]
    fn functiongraph_invalid() {
        assert_eq!(code(target(without(fg(), "/detail/urn"))), "EG.00513003");
        assert_eq!(
            code(target(with(fg(), "/detail/invoke_type", json!("LATER")))),
            "EG.00513003"
        );
        assert_eq!(
            code(target(without(fg(), "/detail/invoke_type"))),
            "EG.00513003"
        );
        assert_eq!(
            code(target(without(fg(), "/detail/agency_name"))),
            "EG.00513003"
        );
        assert_eq!(code(target(without(fg(), "/detail"))), "EG.00513003");
        assert!(target(with(fg(), "/detail/invoke_type", json!("ASYNC"))).is_ok());
    }

    #[test]
    fn workflow_invalid() {
        assert_eq!(
            code(target(without(workflow(), "/detail/workflow_id"))),
            "EG.00513003"
        );
        assert_eq!(
            code(target(without(workflow(), "/detail/agency_name"))),
            "EG.00513003"
        );
        // HC.FunctionGraph carrying a workflow_id only is a workflow target
        let t = with(workflow(), "/name", json!("HC.FunctionGraph"));
        assert_eq!(target_kind(&target(t).unwrap()), Some(TargetKind::Workflow));
    }

    #[test]
    fn smn_invalid() {
        assert_eq!(code(target(without(smn(), "/smn_detail"))), "EG.00513003");
        assert_eq!(
            code(target(without(smn(), "/smn_detail/urn"))),
            "EG.00513003"
        );
        assert_eq!(
            code(target(without(smn(), "/smn_detail/agency_name"))),
            "EG.00513003"
        );
        assert_eq!(
            code(target(with(
                smn(),
                "/smn_detail/subject_transform",
                json!("x")
            ))),
            "EG.00513000"
        );
        assert!(target(without(smn(), "/smn_detail/subject_transform")).is_ok());
    }

    #[test]
    fn eg_invalid() {
        for k in [
            "target_project_id",
            "target_channel_id",
            "target_region",
            "agency_name",
        ] {
            assert_eq!(
                code(target(without(eg(), &format!("/eg_detail/{k}")))),
                "EG.00513003",
                "{k}"
            );
        }
        assert_eq!(code(target(without(eg(), "/eg_detail"))), "EG.00513003");
        assert_eq!(
            code(target(with(eg(), "/eg_detail/cross_region", json!("no")))),
            "EG.00513000"
        );
        assert_eq!(
            code(target(with(eg(), "/eg_detail/cross_account", json!(1)))),
            "EG.00513000"
        );
        // into its own channel
        assert_eq!(
            code(target(with(
                eg(),
                "/eg_detail/target_channel_id",
                json!(CH)
            ))),
            "EG.00513003"
        );
        // same channel id in another project is fine
        let other = with(eg(), "/eg_detail/target_channel_id", json!(CH));
        assert!(target(with(other, "/eg_detail/target_project_id", json!("p2"))).is_ok());
    }

    #[test]
    fn kafka_invalid() {
        assert_eq!(
            code(target(without(kafka(), "/kafka_detail"))),
            "EG.00513003"
        );
        assert_eq!(
            code(target(without(kafka(), "/kafka_detail/topic"))),
            "EG.00513003"
        );
        assert_eq!(
            code(target(without(kafka(), "/connection_id"))),
            "EG.00513003"
        );
        assert_eq!(
            code(target(with(kafka(), "/connection_id", json!(WH_CONN)))),
            "EG.00513003"
        );
        assert_eq!(
            code(target(with(kafka(), "/connection_id", json!("missing")))),
            "EG.00513003"
        );
        assert_eq!(
            code(target(with(
                kafka(),
                "/kafka_detail/keyTransform",
                json!([])
            ))),
            "EG.00513000"
        );
        assert!(target(without(kafka(), "/kafka_detail/keyTransform")).is_ok());
        // keyTransform.type may be left out when there is nothing else: no key.
        let t = target(with(kafka(), "/kafka_detail/keyTransform", json!({}))).unwrap();
        assert_eq!(t["kafka_detail"]["keyTransform"], json!({"type": "NONE"}));
        let t = target(with(
            kafka(),
            "/kafka_detail/keyTransform",
            json!({"type": null}),
        ))
        .unwrap();
        assert_eq!(t["kafka_detail"]["keyTransform"]["type"], "NONE");
        assert_eq!(
            code(target(with(
                kafka(),
                "/kafka_detail/keyTransform",
                json!({"value": "k"})
            ))),
            "EG.00513000"
        );
    }

    #[test]
    fn apigw_invalid() {
        assert_eq!(
            code(target(without(apigw(), "/apigw_detail"))),
            "EG.00513003"
        );
        assert_eq!(
            code(target(with(
                apigw(),
                "/apigw_detail/url",
                json!("gopher://x")
            ))),
            "EG.00513003"
        );
        let hp = "/apigw_detail/invocation_http_parameters/header_parameters";
        assert_eq!(code(target(with(apigw(), hp, json!({})))), "EG.00513000");
        assert_eq!(
            code(target(with(
                apigw(),
                &format!("{hp}/0/key"),
                json!("bad key")
            ))),
            "EG.00513000"
        );
        assert_eq!(
            code(target(with(
                apigw(),
                &format!("{hp}/0/value"),
                json!("a\r\nb")
            ))),
            "EG.00513000"
        );
        assert_eq!(
            code(target(with(
                apigw(),
                &format!("{hp}/0/is_value_secret"),
                json!("yes")
            ))),
            "EG.00513000"
        );
        assert!(target(without(apigw(), "/apigw_detail/invocation_http_parameters")).is_ok());
    }

    #[test]
    fn rocketmq_invalid() {
        assert_eq!(
            code(target(without(rocketmq(), "/rocketmq_detail"))),
            "EG.00513003"
        );
        assert_eq!(
            code(target(without(rocketmq(), "/rocketmq_detail/topic"))),
            "EG.00513003"
        );
        assert_eq!(
            code(target(without(rocketmq(), "/connection_id"))),
            "EG.00513003"
        );
        assert_eq!(
            code(target(with(
                rocketmq(),
                "/connection_id",
                json!(KAFKA_CONN)
            ))),
            "EG.00513003"
        );
        assert_eq!(
            code(target(with(
                rocketmq(),
                "/rocketmq_detail/key_transform",
                json!(1)
            ))),
            "EG.00513000"
        );
    }

    #[test]
    fn kind_inference() {
        // unknown name: inferred from the single populated detail object
        let t = with(kafka(), "/name", json!("my-kafka"));
        assert_eq!(target_kind(&target(t).unwrap()), Some(TargetKind::Kafka));
        let t = with(webhook(), "/name", json!("anything"));
        assert_eq!(target_kind(&target(t).unwrap()), Some(TargetKind::Webhook));
        let t = with(fg(), "/name", json!("fn"));
        assert_eq!(
            target_kind(&target(t).unwrap()),
            Some(TargetKind::FunctionGraph)
        );
        // names are matched case-insensitively
        let t = with(webhook(), "/name", json!("webhook"));
        assert_eq!(target_kind(&target(t).unwrap()), Some(TargetKind::Webhook));
        // nothing to infer from, or ambiguous
        let t =
            json!({"name": "SomethingElse", "provider_type": "OFFICIAL", "transform": original()});
        assert_eq!(code(target(t)), "EG.00513003");
        let t = with(
            with(kafka(), "/name", json!("x")),
            "/smn_detail",
            smn()["smn_detail"].clone(),
        );
        assert_eq!(code(target(t)), "EG.00513003");
        let t = with(webhook(), "/name", json!("x"));
        let t = with(t, "/detail/urn", json!("urn:x"));
        assert_eq!(code(target(t)), "EG.00513003");
        // a known name with extra detail objects is fine (the reference example fills them all)
        let t = with(webhook(), "/kafka_detail", json!({"topic": "t"}));
        assert!(target(t).is_ok());
    }

    #[test]
    fn every_detail_object_limited_to_1024() {
        for member in DETAIL_MEMBERS {
            let mut t = webhook();
            if member != "detail" {
                t[member] = json!({});
            }
            let t = with(t, &format!("/{member}/pad"), json!("x".repeat(1100)));
            assert_eq!(code(target(t)), "EG.00513003", "{member}");
        }
        assert_eq!(
            code(target(with(webhook(), "/smn_detail", json!("str")))),
            "EG.00513000"
        );
    }

    #[test]
    fn target_common_fields() {
        assert_eq!(code(target(without(webhook(), "/name"))), "EG.00513000");
        assert_eq!(
            code(target(without(webhook(), "/provider_type"))),
            "EG.00513000"
        );
        assert_eq!(
            code(target(with(webhook(), "/provider_type", json!("PARTNER")))),
            "EG.00513000"
        );
        assert_eq!(
            code(target(with(webhook(), "/id", json!("a".repeat(31))))),
            "EG.00513000"
        );
        assert_eq!(
            code(target(with(webhook(), "/id", json!("A".repeat(32))))),
            "EG.00513000"
        );
        assert_eq!(
            target(with(webhook(), "/id", json!("a".repeat(64)))).unwrap()["id"],
            json!("a".repeat(64))
        );
        assert_eq!(code(target(json!("x"))), "EG.00513000");
    }

    #[test]
    fn retry_times_bounds() {
        assert_eq!(
            target(with(webhook(), "/retry_times", json!(0))).unwrap()["retry_times"],
            0
        );
        assert_eq!(
            target(with(webhook(), "/retry_times", json!(100))).unwrap()["retry_times"],
            100
        );
        assert_eq!(
            target(with(webhook(), "/retry_times", json!(null))).unwrap()["retry_times"],
            16
        );
        for bad in [json!(101), json!(-1), json!(1.5), json!("3")] {
            assert_eq!(
                code(target(with(webhook(), "/retry_times", bad.clone()))),
                "EG.00513000",
                "{bad}"
            );
        }
    }

    #[test]
    fn transform_required_and_validated() {
        assert_eq!(
            code(target(without(webhook(), "/transform"))),
            "EG.00513000"
        );
        assert_eq!(
            code(target(with(webhook(), "/transform", json!("ORIGINAL")))),
            "EG.00513000"
        );
        assert_eq!(
            code(target(with(
                webhook(),
                "/transform",
                json!({"type": "FOO"})
            ))),
            "EG.00513000"
        );
        let bad_var = json!({"type": "VARIABLE", "value": "not json", "template": "x"});
        assert_eq!(
            code(target(with(webhook(), "/transform", bad_var))),
            "EG.00513000"
        );
        let var = json!({"type": "VARIABLE", "value": "{\"a\": \"$.data.x\"}", "template": "{\"a\": ${a}}"});
        assert_eq!(
            target(with(webhook(), "/transform", var.clone())).unwrap()["transform"],
            var
        );
        // FunctionGraph payloads must be JSON
        let text = json!({"type": "VARIABLE", "value": "{\"a\": \"$.id\"}", "template": "plain ${a} text"});
        assert!(target(with(webhook(), "/transform", text.clone())).is_ok());
        assert_eq!(
            code(target(with(fg(), "/transform", text.clone()))),
            "EG.00513000"
        );
        assert_eq!(
            code(target(with(workflow(), "/transform", text))),
            "EG.00513000"
        );
    }

    // ---------------------------------------------------------------- dead-letter queue

    fn dlq(topic: &str) -> Value {
        json!({"type": "KAFKA", "instance_id": "i-1", "connection_id": KAFKA_CONN, "topic": topic})
    }

    #[test]
    fn dead_letter_queue_fields() {
        assert!(target(with(webhook(), "/dead_letter_queue", dlq("dlq"))).is_ok());
        assert_eq!(
            code(target(with(
                webhook(),
                "/dead_letter_queue",
                with(dlq("d"), "/type", json!("SQS"))
            ))),
            "EG.00513000"
        );
        for k in ["type", "instance_id", "connection_id", "topic"] {
            let d = without(dlq("d"), &format!("/{k}"));
            assert_eq!(
                code(target(with(webhook(), "/dead_letter_queue", d))),
                "EG.00513000",
                "{k}"
            );
        }
        let d = with(dlq("d"), "/connection_id", json!(WH_CONN));
        assert_eq!(
            code(target(with(webhook(), "/dead_letter_queue", d))),
            "EG.00513000"
        );
        let d = with(dlq("d"), "/connection_id", json!("missing"));
        assert_eq!(
            code(target(with(webhook(), "/dead_letter_queue", d))),
            "EG.00513000"
        );
        assert_eq!(
            code(target(with(webhook(), "/dead_letter_queue", json!([])))),
            "EG.00513000"
        );
    }

    #[test]
    fn dead_letter_topic_must_differ_from_kafka_target_topic() {
        let same = with(kafka(), "/dead_letter_queue", dlq("orders"));
        assert_eq!(code(create(&create_body(vec![same]))), "EG.00513003");
        let other = with(kafka(), "/dead_letter_queue", dlq("orders-dlq"));
        assert!(create(&create_body(vec![other])).is_ok());
        // across targets of one subscription too
        let wh = with(webhook(), "/dead_letter_queue", dlq("orders"));
        assert_eq!(code(create(&create_body(vec![kafka(), wh]))), "EG.00513003");
        // the same topic on another connection is fine
        let mut env2 = env();
        env2.connections.insert("k2".into(), CONN_KAFKA.into());
        let d = with(dlq("orders"), "/connection_id", json!("k2"));
        let t = with(kafka(), "/dead_letter_queue", d);
        assert!(validate_create(&create_body(vec![t]), &env2).is_ok());
    }

    // ---------------------------------------------------------------- update

    #[test]
    fn update_bodies() {
        let e = env();
        let u = validate_update(&json!({"description": "x"}), &e, "sub-1", Some("CUSTOM")).unwrap();
        assert_eq!(
            u,
            UpdateSubscription {
                description: Some("x".into()),
                ..Default::default()
            }
        );
        assert_eq!(
            code(validate_update(
                &json!({"name": "other"}),
                &e,
                "sub-1",
                None
            )),
            "EG.00513000"
        );
        assert!(validate_update(&json!({"name": "sub-1"}), &e, "sub-1", None).is_ok());
        assert_eq!(
            code(validate_update(
                &json!({"channel_id": "x"}),
                &e,
                "sub-1",
                None
            )),
            "EG.00513000"
        );
        assert!(validate_update(&json!({"channel_id": CH}), &e, "sub-1", None).is_ok());
        assert_eq!(
            code(validate_update(&json!({"targets": []}), &e, "sub-1", None)),
            "EG.00513000"
        );
        assert_eq!(
            code(validate_update(&json!({"sources": []}), &e, "sub-1", None)),
            "EG.00513000"
        );
        assert_eq!(
            code(validate_update(
                &json!({"description": "d".repeat(256)}),
                &e,
                "sub-1",
                None
            )),
            "EG.00513000"
        );
        let u = validate_update(
            &json!({"targets": [webhook(), fg()], "sources": null}),
            &e,
            "sub-1",
            None,
        )
        .unwrap();
        assert_eq!(u.targets.map(|t| t.len()), Some(2));
        assert!(u.sources.is_none());
        let official = json!({"sources": [{"name": "HC.OBS", "provider_type": "OFFICIAL",
                              "filter": {"source": [{"op": "StringIn", "values": ["HC.OBS"]}]}}]});
        assert_eq!(
            code(validate_update(&official, &e, "sub-1", Some("CUSTOM"))),
            "EG.00513000"
        );
    }

    #[test]
    fn merge_keeps_created_time_of_known_ids() {
        let old = vec![
            json!({"id": "a", "name": "x", "created_time": "T0", "updated_time": "T0"}),
            json!({"id": "b", "name": "y", "created_time": "T0", "updated_time": "T0"}),
        ];
        let new = vec![
            json!({"id": "a", "name": "x2"}),
            json!({"name": "z"}),
            json!({"id": "c", "name": "w"}),
        ];
        let mut n = 0;
        let out = merge_entries(&old, new, "T1", || {
            n += 1;
            format!("gen-{n}")
        });
        assert_eq!(
            out[0],
            json!({"id": "a", "name": "x2", "created_time": "T0", "updated_time": "T1"})
        );
        assert_eq!(
            out[1],
            json!({"id": "gen-1", "name": "z", "created_time": "T1", "updated_time": "T1"})
        );
        assert_eq!(out[2]["id"], "c");
        assert_eq!(out[2]["created_time"], "T1");
        assert!(find_by_id(&out, "b").is_none());
        let keys: Vec<_> = out[0].as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["id", "name", "created_time", "updated_time"]);
        let out = merge_entries(
            &[],
            vec![json!({"name": "n", "id": "x", "transform": {}})],
            "T",
            String::new,
        );
        let keys: Vec<_> = out[0].as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            ["id", "name", "transform", "created_time", "updated_time"]
        );
    }

    // ---------------------------------------------------------------- refs, ids, operation

    #[test]
    fn reference_keys() {
        let sources = vec![json!({"id": "s1", "name": "app-src", "provider_type": "CUSTOM"})];
        let mut wf = workflow();
        wf["id"] = json!("t3");
        let mut k = kafka();
        k["id"] = json!("t2");
        k["dead_letter_queue"] = dlq("dlq");
        let mut f = fg();
        f["id"] = json!("t1");
        let mut w = webhook();
        w["id"] = json!("t4");
        w["connection_id"] = json!(WH_CONN);
        let r = refs(&sources, &[f, k, wf, w]);
        assert_eq!(
            r,
            [
                "source:app-src",
                "tid:s1",
                "tid:t1",
                "fn:urn:fss:r:p:function:default:f1:latest",
                "tid:t2",
                "connection:conn-kafka",
                "tid:t3",
                "workflow:wf-1",
                "tid:t4",
                "connection:conn-webhook",
            ]
        );
        let off = vec![json!({"id": "s1", "name": "HC.OBS", "provider_type": "OFFICIAL"})];
        assert_eq!(refs(&off, &[]), ["official:HC.OBS", "tid:s1"]);
    }

    #[test]
    fn client_id_helpers() {
        let ids = client_ids(&[
            json!({"id": "b"}),
            json!({"name": "x"}),
            json!({"id": ""}),
            json!({"id": "a"}),
            json!({"id": "b"}),
        ]);
        assert_eq!(ids, ["b", "a", "b"]);
        assert_eq!(first_duplicate(&ids), Some("b"));
        assert_eq!(first_duplicate(&ids[..2]), None);
    }

    #[test]
    fn operation_bodies() {
        let op = validate_operation(
            &json!({"subscription_ids": ["a", "b", "a"], "operation": "DISABLE"}),
        )
        .unwrap();
        assert_eq!(
            op,
            Operation {
                ids: vec!["a".into(), "b".into()],
                status: "DISABLED"
            }
        );
        assert_eq!(
            validate_operation(&json!({"subscription_ids": ["a"], "operation": "ENABLE"}))
                .unwrap()
                .status,
            "ENABLED"
        );
        let eleven: Vec<String> = (0..11).map(|i| format!("id{i}")).collect();
        for bad in [
            json!({"subscription_ids": [], "operation": "ENABLE"}),
            json!({"subscription_ids": eleven, "operation": "ENABLE"}),
            json!({"subscription_ids": ["a"], "operation": "START"}),
            json!({"subscription_ids": ["a"]}),
            json!({"operation": "ENABLE"}),
            json!({"subscription_ids": [1], "operation": "ENABLE"}),
            json!({"subscription_ids": [""], "operation": "ENABLE"}),
            json!({"subscription_ids": "a", "operation": "ENABLE"}),
        ] {
            assert_eq!(code(validate_operation(&bad)), "EG.00513000", "{bad}");
        }
    }
}
