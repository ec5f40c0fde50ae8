//! Subscription targets: what a target delivers to ([`TargetKind`], [`target_kind`]), the
//! validation of `targets` and of each SubscriptionTarget (kind detail objects and their
//! required settings, connections, retries, transform, dead-letter queue) and the dead-letter
//! loop check over a target set. Undeliverable targets are `EG.00513003`.

use super::common::{client_id, provider_type, size_of, Env, MAX_DETAIL_BYTES};
use crate::field::{join, required_array, ErrFn, Fields};
use crate::validate;
use crate::EgError;
use openeg_rules::{validate_transform, TransformUse};
use serde_json::{Map, Value};

/// Retries after the first attempt when `retry_times` is absent (`docs/limits.md`).
pub const DEFAULT_RETRY_TIMES: i64 = 16;
/// Largest accepted `retry_times`.
pub const MAX_RETRY_TIMES: i64 = 100;

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

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::validate_create;
    use super::*;
    use serde_json::json;

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
}
