//! ListEventTarget (op 28): a built-in, read-only catalogue with one entry per
//! subscription target kind (support type SUBSCRIPTION) and per event-stream sink (FLOW).

use crate::error::ApiResult;
use crate::openapi::{paging, query, s, Op};
use crate::state::AppState;
use crate::util::{list_reply, stable_id, Query};
use axum::extract::State;
use axum::response::Response;
use openeg_api::validate::SortField;
use openeg_api::EgError;
use serde_json::{json, Value};

pub fn ops() -> Vec<Op> {
    vec![
        Op::get("ListEventTarget", "/v1/{project_id}/target-catalogs", list)
            .summary(
                "Target catalogue",
                "List the target kinds and event-stream sinks",
            )
            .params(paging())
            .params([
                query("fuzzy_label", s::string()),
                query("support_types", s::array(s::one_of(&SUPPORT_TYPES))),
            ])
            .ok(s::list(s::req(
                s::obj(&[
                    ("id", s::string()),
                    ("name", s::string()),
                    ("label", s::string()),
                    ("description", s::string()),
                    ("provider_type", s::one_of(&["OFFICIAL", "CUSTOM"])),
                    ("support_types", s::array(s::one_of(&SUPPORT_TYPES))),
                    (
                        "parameters",
                        s::array(s::obj(&[
                            ("name", s::string()),
                            ("label", s::string()),
                            ("metadata", s::any_object()),
                        ])),
                    ),
                    ("created_time", s::time()),
                    ("updated_time", s::time()),
                ]),
                &["id", "name", "provider_type"],
            ))),
    ]
}

/// `support_types` values.
const SUPPORT_TYPES: [&str; 2] = ["SUBSCRIPTION", "FLOW"];

/// (name, label, description, provider_type, support type, [(param, required, type)])
type Entry = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, bool, &'static str)],
);

const CATALOG: &[Entry] = &[
    (
        "WEBHOOK",
        "Webhook",
        "Deliver events to an HTTP(S) endpoint",
        "CUSTOM",
        "SUBSCRIPTION",
        &[("url", true, "string"), ("connection_id", false, "string")],
    ),
    (
        "HC.APIGW",
        "API Gateway",
        "Deliver events to an API published on API Gateway",
        "OFFICIAL",
        "SUBSCRIPTION",
        &[
            ("url", true, "string"),
            ("invocation_http_parameters", false, "object"),
        ],
    ),
    (
        "HC.FunctionGraph",
        "FunctionGraph",
        "Invoke a FunctionGraph function",
        "OFFICIAL",
        "SUBSCRIPTION",
        &[
            ("urn", true, "string"),
            ("invoke_type", true, "string"),
            ("agency_name", true, "string"),
        ],
    ),
    (
        "HC.FunctionFlow",
        "FunctionGraph workflow",
        "Start a FunctionGraph workflow",
        "OFFICIAL",
        "SUBSCRIPTION",
        &[
            ("workflow_id", true, "string"),
            ("agency_name", true, "string"),
        ],
    ),
    (
        "HC.SMN",
        "Simple Message Notification",
        "Publish events to an SMN topic",
        "OFFICIAL",
        "SUBSCRIPTION",
        &[
            ("urn", true, "string"),
            ("agency_name", true, "string"),
            ("subject_transform", false, "object"),
        ],
    ),
    (
        "HC.EG",
        "EventGrid channel",
        "Forward events into another event channel",
        "OFFICIAL",
        "SUBSCRIPTION",
        &[
            ("target_project_id", true, "string"),
            ("target_channel_id", true, "string"),
            ("target_region", true, "string"),
            ("agency_name", true, "string"),
            ("cross_region", false, "boolean"),
        ],
    ),
    (
        "HC.Kafka",
        "Distributed Message Service for Kafka",
        "Produce events to a Kafka topic",
        "OFFICIAL",
        "SUBSCRIPTION",
        &[
            ("topic", true, "string"),
            ("connection_id", true, "string"),
            ("keyTransform", false, "object"),
        ],
    ),
    (
        "HC.RocketMQ",
        "Distributed Message Service for RocketMQ",
        "Produce events to a RocketMQ topic",
        "OFFICIAL",
        "SUBSCRIPTION",
        &[
            ("topic", true, "string"),
            ("connection_id", true, "string"),
            ("key_transform", false, "object"),
        ],
    ),
    (
        "HC.FunctionGraph",
        "FunctionGraph",
        "Event stream sink: invoke a function",
        "OFFICIAL",
        "FLOW",
        &[
            ("urn", true, "string"),
            ("invoke_type", true, "string"),
            ("agency", false, "string"),
        ],
    ),
    (
        "HC.Kafka",
        "Distributed Message Service for Kafka",
        "Event stream sink: produce to a Kafka topic",
        "OFFICIAL",
        "FLOW",
        &[
            ("topic", true, "string"),
            ("connectionId", true, "string"),
            ("keyTransform", false, "array"),
        ],
    ),
    (
        "HC.OBS",
        "Object Storage Service",
        "Event stream sink: write objects to a bucket",
        "OFFICIAL",
        "FLOW",
        &[
            ("obs_bucket", true, "string"),
            ("access_key", true, "string"),
            ("secret_key", true, "string"),
            ("obs_path", false, "string"),
            ("time_format", true, "string"),
        ],
    ),
];

/// Fixed timestamps: the catalogue is part of the release, not of any project's history.
const CATALOG_TIME: &str = "2024-01-01T00:00:00Z";

fn item(e: &Entry) -> Value {
    let (name, label, description, provider, support, params) = *e;
    json!({
        "id": stable_id(&format!("target-catalog:{support}:{name}")),
        "name": name,
        "label": label,
        "description": description,
        "provider_type": provider,
        "support_types": [support],
        "parameters": params.iter().map(|(p, req, ty)| json!({
            "name": p,
            "label": p,
            "metadata": {"required": req, "type": ty},
        })).collect::<Vec<_>>(),
        "created_time": CATALOG_TIME,
        "updated_time": CATALOG_TIME,
    })
}

async fn list(State(_st): State<AppState>, q: Query) -> ApiResult<Response> {
    let paging = q.paging()?;
    let types = q.all("support_types");
    if let Some(bad) = types.iter().find(|t| !SUPPORT_TYPES.contains(&t.as_str())) {
        return Err(EgError::param(format!(
            "support_types value {bad} must be SUBSCRIPTION or FLOW"
        ))
        .into());
    }
    let fuzzy = q.get("fuzzy_label").map(str::to_ascii_lowercase);
    let mut entries: Vec<&Entry> = CATALOG
        .iter()
        .filter(|e| types.is_empty() || types.iter().any(|t| t == e.4))
        .filter(|e| {
            fuzzy
                .as_ref()
                .is_none_or(|f| e.1.to_ascii_lowercase().contains(f.as_str()))
        })
        .collect();
    // Every entry shares one timestamp, so time sorts fall back to the id tie-break.
    entries.sort_by(|a, b| {
        let ord = match paging.sort {
            SortField::Name => a.0.cmp(b.0).then(a.4.cmp(b.4)),
            _ => item(a)["id"].as_str().cmp(&item(b)["id"].as_str()),
        };
        if paging.descending {
            ord.reverse()
        } else {
            ord
        }
    });
    let total = entries.len() as u64;
    let page = entries
        .into_iter()
        .skip(paging.offset as usize)
        .take(paging.limit as usize)
        .map(item)
        .collect();
    Ok(list_reply(total, page))
}
