//! ListQuotas (op 46, `docs/limits.md`).

use crate::error::ApiResult;
use crate::openapi::{query, s, Op};
use crate::state::{AppState, Tenant};
use crate::util::{ok, Query};
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use openeg_store::{Kind, ListQuery};
use serde_json::{json, Value};
use std::collections::HashMap;

pub fn ops() -> Vec<Op> {
    vec![Op::get("ListQuotas", "/v1/{project_id}/quotas", list)
        .summary("Quotas", "List quotas and their use")
        .param(query("type", s::one_of(TYPES)))
        .ok(s::req(
            s::obj(&[(
                "quotas",
                s::req(
                    s::obj(&[(
                        "resources",
                        s::array(s::req(
                            s::obj(&[
                                ("name", s::string()),
                                ("type", s::one_of(TYPES)),
                                ("max", s::int()),
                                ("min", s::int()),
                                ("quota", s::int()),
                                ("used", s::int()),
                            ]),
                            &["type", "quota", "used"],
                        )),
                    )]),
                    &["resources"],
                ),
            )]),
            &["quotas"],
        ))]
}

const TYPES: &[&str] = &[
    "CHANNEL",
    "CHANNEL_SUBSCRIPTION",
    "SOURCE",
    "SUBSCRIPTION",
    "SUBSCRIPTION_TARGET",
    "CONNECTION",
    "PRIVATE_ENDPOINT",
    "SOURCE_RABBITMQ",
    "SOURCE_ROCKETMQ",
];

async fn count_eq(
    st: &AppState,
    project: &str,
    kind: Kind,
    key: &str,
    val: &str,
) -> ApiResult<u64> {
    let q = ListQuery {
        body_eq: vec![(key.to_string(), val.to_string())],
        limit: Some(1),
        ..Default::default()
    };
    Ok(st.store.list(project, kind, &q).await?.0)
}

/// Largest number of subscriptions in one channel, and of targets in one subscription.
async fn per_parent_maxima(st: &AppState, project: &str) -> ApiResult<(u64, u64)> {
    let (_, subs) = st
        .store
        .list(project, Kind::Subscription, &ListQuery::default())
        .await?;
    let mut per_channel: HashMap<String, u64> = HashMap::new();
    let mut max_targets = 0u64;
    for s in &subs {
        *per_channel
            .entry(s.parent_id.clone().unwrap_or_default())
            .or_default() += 1;
        let n = s
            .body
            .get("targets")
            .and_then(Value::as_array)
            .map_or(0, |a| a.len() as u64);
        max_targets = max_targets.max(n);
    }
    Ok((
        per_channel.values().copied().max().unwrap_or(0),
        max_targets,
    ))
}

async fn list(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    q: Query,
) -> ApiResult<Response> {
    let only = q.one_of("type", TYPES)?;
    let p = t.project_id.as_str();
    let qs = &st.cfg.quotas;
    let (max_per_channel, max_targets) = per_parent_maxima(&st, p).await?;
    let mut items = Vec::new();
    for ty in TYPES {
        if only.as_deref().is_some_and(|o| o != *ty) {
            continue;
        }
        let (name, quota, max, min, used) = match *ty {
            "CHANNEL" => (
                "channel",
                qs.channel,
                10000,
                0,
                count_eq(&st, p, Kind::Channel, "provider_type", "CUSTOM").await?,
            ),
            "CHANNEL_SUBSCRIPTION" => (
                "channel subscription",
                qs.channel_subscription,
                10000,
                0,
                max_per_channel,
            ),
            "SOURCE" => (
                "source",
                qs.source,
                10000,
                0,
                count_eq(&st, p, Kind::Source, "provider_type", "CUSTOM").await?,
            ),
            "SUBSCRIPTION" => (
                "subscription",
                qs.subscription,
                10000,
                0,
                st.store.count(p, Kind::Subscription, None).await?,
            ),
            "SUBSCRIPTION_TARGET" => (
                "subscription target",
                qs.subscription_target,
                5,
                1,
                max_targets,
            ),
            "CONNECTION" => (
                "connection",
                qs.connection,
                10000,
                0,
                st.store.count(p, Kind::Connection, None).await?,
            ),
            "PRIVATE_ENDPOINT" => (
                "private endpoint",
                qs.private_endpoint,
                1000,
                0,
                st.store.count(p, Kind::Endpoint, None).await?,
            ),
            "SOURCE_RABBITMQ" => (
                "rabbitmq source",
                qs.source_rabbitmq,
                1000,
                0,
                count_eq(&st, p, Kind::Source, "type", "RABBITMQ").await?,
            ),
            _ => (
                "rocketmq source",
                qs.source_rocketmq,
                1000,
                0,
                count_eq(&st, p, Kind::Source, "type", "ROCKETMQ").await?,
            ),
        };
        items.push(
            json!({"name": name, "type": ty, "max": max, "min": min, "quota": quota, "used": used}),
        );
    }
    Ok(ok(json!({"quotas": {"resources": items}})))
}
