//! Channels (ops 12–16).

use super::{get_or_404, pick, save_update};
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
use openeg_api::field::Fields;
use openeg_api::validate::{self, NamePattern};
use openeg_api::EgError;
use openeg_store::{Document, Kind, QuotaCheck};
use serde_json::{Map, Value};

const DESCRIPTION_MAX: usize = 255;

const INFO: &[&str] = &[
    "id",
    "name",
    "description",
    "provider_type",
    "created_time",
    "updated_time",
    "enterprise_project_id",
];

pub fn ops() -> Vec<Op> {
    const T: &str = "Channels";
    let one = "/v1/{project_id}/channels/{channel_id}";
    vec![
        Op::post("CreateChannel", "/v1/{project_id}/channels", create)
            .summary(T, "Create a custom channel")
            .body(s::req(
                with_mutable(vec![
                    ("name", s::name(NamePattern::Mixed)),
                    ("provider_type", s::one_of(&["CUSTOM", "INTERNAL"])),
                ]),
                &["name"],
            ))
            .ok(info_schema()),
        Op::get("ListChannels", "/v1/{project_id}/channels", list)
            .summary(T, "List channels (the default channel included)")
            .params(paging())
            .params([
                query(
                    "provider_type",
                    s::one_of(&["OFFICIAL", "CUSTOM", "PARTNER"]),
                ),
                query("name", s::string()),
                query("fuzzy_name", s::string()),
                query("enterprise_project_id", s::string()),
            ])
            .ok(s::list(info_schema())),
        Op::put("UpdateChannel", one, update)
            .summary(T, "Update a channel (not the default channel)")
            .body(with_mutable(vec![("name", s::string())]))
            .ok(info_schema()),
        Op::get("ShowDetailOfChannel", one, show)
            .summary(T, "Show a channel")
            .ok(info_schema()),
        Op::delete("DeleteChannel", one, delete)
            .summary(T, "Delete a channel without sources and subscriptions")
            .errors(&[409]),
    ]
}

/// A body schema of `extra` members plus the mutable ones of create and update.
fn with_mutable(mut extra: Vec<(&str, Value)>) -> Value {
    let principal = s::obj(&[("IAM", s::array(s::string()))]);
    let statement = s::obj(&[
        ("Sid", s::string()),
        ("Effect", s::one_of(&["Allow", "Deny"])),
        (
            "Principal",
            s::doc(
                serde_json::json!({"type": "object", "additionalProperties": principal}),
                "principal name -> {IAM: [account ids]}",
            ),
        ),
        ("Action", s::string()),
        ("Resource", s::string()),
    ]);
    extra.extend([
        ("description", s::max(DESCRIPTION_MAX)),
        ("enterprise_project_id", s::max(64)),
        (
            "policy",
            s::doc(
                serde_json::json!({"type": "object", "additionalProperties": statement}),
                "statement name -> statement",
            ),
        ),
        ("cross_account", s::boolean()),
    ]);
    s::obj(&extra)
}

fn info_schema() -> Value {
    s::req(
        s::obj(&[
            ("id", s::string()),
            ("name", s::string()),
            ("description", s::string()),
            (
                "provider_type",
                s::one_of(&["OFFICIAL", "CUSTOM", "PARTNER"]),
            ),
            ("created_time", s::time()),
            ("updated_time", s::time()),
            ("enterprise_project_id", s::string()),
        ]),
        &["id", "name", "provider_type"],
    )
}

/// Members shared by create and update: description, enterprise project, policy, cross_account.
fn apply_mutable(src: &Fields, doc: &mut Map<String, Value>) -> ApiResult<()> {
    if let Some(d) = src.opt_str("description")? {
        validate::max_len("description", d, DESCRIPTION_MAX)?;
        doc.insert("description".into(), d.into());
    }
    if let Some(e) = src.opt_str("enterprise_project_id")? {
        validate::max_len("enterprise_project_id", e, 64)?;
        doc.insert("enterprise_project_id".into(), e.into());
    }
    if let Some(p) = src.opt_obj("policy")? {
        validate_policy(p)?;
        doc.insert("policy".into(), Value::Object(p.clone()));
    }
    if let Some(c) = src.opt_bool("cross_account")? {
        doc.insert("cross_account".into(), c.into());
    }
    Ok(())
}

/// Policy: statement name → {Sid, Effect, Principal{name → {IAM: [account ids]}}, Action, Resource}.
fn validate_policy(p: &Map<String, Value>) -> ApiResult<()> {
    for (name, st) in p {
        let st = st
            .as_object()
            .ok_or_else(|| EgError::param(format!("policy.{name} must be an object")))?;
        let st = Fields::root(st);
        for k in ["Sid", "Effect", "Action", "Resource"] {
            st.opt_str(k)
                .map_err(|_| EgError::param(format!("policy.{name}.{k} must be a string")))?;
        }
        if let Some(e) = st.opt_str("Effect")? {
            if e != "Allow" && e != "Deny" {
                return Err(
                    EgError::param(format!("policy.{name}.Effect must be Allow or Deny")).into(),
                );
            }
        }
        if let Some(pr) = st.opt_obj("Principal")? {
            for (pn, pv) in pr {
                let ok = pv
                    .get("IAM")
                    .map(|iam| {
                        iam.as_array()
                            .is_some_and(|a| a.iter().all(Value::is_string))
                    })
                    .unwrap_or(true);
                if !pv.is_object() || !ok {
                    return Err(EgError::param(format!(
                        "policy.{name}.Principal.{pn} must be an object with IAM: [string]"
                    ))
                    .into());
                }
            }
        }
    }
    Ok(())
}

async fn create(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    body: Bytes,
) -> ApiResult<Response> {
    let v = json_body(&body)?;
    let src = Fields::body(&v)?;
    let name = src.req_str("name")?;
    validate::name("name", name, NamePattern::Mixed)?;
    if name == DEFAULT_CHANNEL {
        return Err(EgError::param("name must not be default").into());
    }
    if let Some(pt) = src.opt_str("provider_type")? {
        if pt != "CUSTOM" && pt != "INTERNAL" {
            return Err(EgError::param("provider_type must be CUSTOM or INTERNAL").into());
        }
    }
    let now = now_ms();
    let id = new_id();
    let mut doc = Map::new();
    doc.insert("id".into(), id.clone().into());
    doc.insert("name".into(), name.into());
    doc.insert("description".into(), "".into());
    doc.insert("provider_type".into(), "CUSTOM".into());
    apply_mutable(&src, &mut doc)?;
    doc.insert("created_time".into(), fmt_time(now).into());
    doc.insert("updated_time".into(), fmt_time(now).into());
    let rec = Document {
        project_id: t.project_id.clone(),
        kind: Kind::Channel,
        id,
        name: name.to_string(),
        parent_id: None,
        created_at: now,
        updated_at: now,
        body: Value::Object(doc),
        refs: Vec::new(),
    };
    let quota = QuotaCheck {
        quota: "CHANNEL",
        kind: Kind::Channel,
        parent_id: None,
        body_eq: Some(("provider_type".into(), "CUSTOM".into())),
        max: st.cfg.quotas.channel,
    };
    st.store.insert(&rec, &[quota]).await?;
    Ok(ok(pick(&rec.body, INFO)))
}

async fn list(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    q: Query,
) -> ApiResult<Response> {
    let paging = q.paging()?;
    let mut lq = list_query(&q, &paging);
    if let Some(pt) = q.one_of("provider_type", &["OFFICIAL", "CUSTOM", "PARTNER"])? {
        lq.body_eq.push(("provider_type".into(), pt));
    }
    if let Some(e) = q.get("enterprise_project_id") {
        lq.body_eq
            .push(("enterprise_project_id".into(), e.to_string()));
    }
    let (total, recs) = st.store.list(&t.project_id, Kind::Channel, &lq).await?;
    Ok(list_reply(
        total,
        recs.iter().map(|r| pick(&r.body, INFO)).collect(),
    ))
}

async fn show(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
) -> ApiResult<Response> {
    let rec = get_or_404(&st, &t.project_id, Kind::Channel, p.get("channel_id")).await?;
    Ok(ok(pick(&rec.body, INFO)))
}

async fn update(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
    body: Bytes,
) -> ApiResult<Response> {
    let mut rec = get_or_404(&st, &t.project_id, Kind::Channel, p.get("channel_id")).await?;
    if rec.name == DEFAULT_CHANNEL {
        return Err(EgError::not_modifiable("the default channel cannot be updated").into());
    }
    let v = json_body(&body)?;
    let src = Fields::body(&v)?;
    if let Some(n) = src.opt_str("name")? {
        if n != rec.name {
            return Err(EgError::param("name cannot be changed").into());
        }
    }
    let Value::Object(mut doc) = rec.body.clone() else {
        return Err(EgError::internal().into());
    };
    apply_mutable(&src, &mut doc)?;
    let now = now_ms();
    save_update(&st, &mut rec, doc, now, "channel").await?;
    // The policy and cross_account switch decide cross-account publishing at once.
    st.invalidate_publish_cache(&t.project_id);
    Ok(ok(pick(&rec.body, INFO)))
}

async fn delete(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
) -> ApiResult<Response> {
    let rec = get_or_404(&st, &t.project_id, Kind::Channel, p.get("channel_id")).await?;
    if rec.name == DEFAULT_CHANNEL {
        return Err(EgError::not_modifiable("the default channel cannot be deleted").into());
    }
    let sources = st
        .store
        .count(&t.project_id, Kind::Source, Some(&rec.id))
        .await?;
    let subs = st
        .store
        .count(&t.project_id, Kind::Subscription, Some(&rec.id))
        .await?;
    if sources + subs > 0 {
        return Err(EgError::conflict(format!(
            "channel still has {sources} source(s) and {subs} subscription(s)"
        ))
        .into());
    }
    st.store
        .delete(&t.project_id, Kind::Channel, &rec.id)
        .await?;
    st.invalidate_publish_cache(&t.project_id);
    Ok(no_content())
}
