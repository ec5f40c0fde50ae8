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
//!
//! Layout: `sources.rs` validates the source, `targets.rs` the targets (kinds, detail objects,
//! connections, dead-letter queues), `common.rs` holds what both share (the [`Env`], client ids,
//! limits); this module validates whole bodies and handles source and target sets. Every public
//! item is re-exported here.

mod common;
mod sources;
mod targets;
#[cfg(test)]
mod test_support;

pub use common::{ChannelFacts, Env, MAX_DETAIL_BYTES, PROVIDER_TYPES};
pub use sources::{validate_source, validate_sources, MAX_FILTER_BYTES};
pub use targets::{
    check_dead_letter_topics, is_http_url, target_kind, validate_target, validate_targets,
    TargetKind, CONN_KAFKA, CONN_ROCKETMQ, CONN_WEBHOOK, DEFAULT_RETRY_TIMES, MAX_RETRY_TIMES,
};

use crate::field::Fields;
use crate::validate::{self, NamePattern};
use crate::EgError;
use serde_json::{Map, Value};
use std::collections::HashSet;

/// Description length limit.
pub const MAX_DESCRIPTION: usize = 255;
/// ExecuteSubscriptionOperation accepts 1..=this many ids.
pub const MAX_OPERATION_IDS: usize = 10;
/// ExecuteSubscriptionOperation operations and the status each one sets.
pub const OPERATIONS: [(&str, &str); 2] = [("ENABLE", "ENABLED"), ("DISABLE", "DISABLED")];

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

fn description(o: &Fields) -> Result<Option<String>, EgError> {
    let d = o.opt_str_max("description", MAX_DESCRIPTION)?;
    Ok(d.map(str::to_string))
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

/// Reference keys of a subscription (`openeg_store::Document::refs`), deduplicated in order:
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
    use super::test_support::*;
    use super::*;
    use serde_json::json;

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
