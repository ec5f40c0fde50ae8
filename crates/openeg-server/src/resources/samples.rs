//! Event samples (op 62): a small read-only built-in set for the official
//! sources of the catalogue (`sources::CATALOGUE`). Ids are stable (derived from the sample
//! name), `event_source_id` is the official source's stable id, `content` is the sample event
//! as compact CloudEvent JSON text. `deleted_time` is omitted (never deleted) [dec].

use super::sources::official_source_id;
use crate::error::ApiResult;
use crate::openapi::{paging, query, s, Op};
use crate::util::{fmt_time, list_reply, stable_id, Query};
use axum::response::Response;
use openeg_api::validate::SortField;
use serde_json::{json, Value};

/// Creation time shown for the built-in samples (the date of the v1 API).
const SAMPLES_CREATED_MS: i64 = 1_650_370_810_000; // 2022-04-19T12:20:10Z

/// (sample name, official source, event type, `data` of the sample event)
type Sample = (&'static str, &'static str, &'static str, fn() -> Value);

const SAMPLES: &[Sample] = &[
    (
        "OBS-ObjectCreated-Put",
        "HC.OBS",
        "OBS:DICE:ObjectCreated:Put",
        || {
            json!({"obs": {"version": "2.0", "bucket": {"name": "example-bucket"},
            "object": {"key": "images/cat.png", "size": 1024, "eTag": "0123456789abcdef",
                "versionId": "null"}},
            "eventName": "ObjectCreated:Put", "eventRegion": "cn-north-4"})
        },
    ),
    (
        "OBS-ObjectRemoved-Delete",
        "HC.OBS",
        "OBS:DICE:ObjectRemoved:Delete",
        || {
            json!({"obs": {"version": "2.0", "bucket": {"name": "example-bucket"},
            "object": {"key": "images/cat.png", "versionId": "null"}},
            "eventName": "ObjectRemoved:Delete", "eventRegion": "cn-north-4"})
        },
    ),
    ("SMN-ApiCall", "HC.SMN", "SMN:CloudTrace:ApiCall", || {
        json!({"service_type": "SMN", "resource_type": "topic",
            "trace_name": "createTopic", "trace_type": "ApiCall", "trace_status": "normal",
            "code": "200", "resource_name": "example-topic",
            "user": {"name": "example-user"}})
    }),
    (
        "FunctionGraph-ApiCall",
        "HC.FunctionGraph",
        "FunctionGraph:CloudTrace:ApiCall",
        || {
            json!({"service_type": "FunctionGraph", "resource_type": "function",
            "trace_name": "CreateFunction", "trace_type": "ApiCall", "trace_status": "normal",
            "code": "200", "resource_name": "example-function",
            "user": {"name": "example-user"}})
        },
    ),
];

pub fn ops() -> Vec<Op> {
    vec![
        Op::get("ShowListOfEventSample", "/v1/{project_id}/samples", list)
            .summary("Event samples", "List the built-in sample events")
            .params(paging())
            .params([
                query("name", s::doc(s::string(), "substring, case-insensitive")),
                query("event_type_name", s::string()),
                query("event_source_id", s::string()),
            ])
            .ok(s::list(s::req(
                s::obj(&[
                    ("id", s::string()),
                    ("name", s::string()),
                    (
                        "content",
                        s::doc(s::string(), "the sample CloudEvent as JSON text"),
                    ),
                    ("event_type_id", s::string()),
                    ("event_type_name", s::string()),
                    ("event_source_id", s::string()),
                    ("event_source_name", s::string()),
                    ("created_time", s::time()),
                    ("updated_time", s::time()),
                    ("deleted_time", s::time()),
                ]),
                &["id", "name", "content"],
            ))),
    ]
}

fn item(s: &Sample) -> Value {
    let (name, source, ty, data) = *s;
    let id = stable_id(&format!("openeg:event-sample:{name}"));
    let t = fmt_time(SAMPLES_CREATED_MS);
    let content = json!({
        "specversion": "1.0",
        "id": stable_id(&format!("openeg:event-sample-event:{name}")),
        "source": source,
        "type": ty,
        "time": t,
        "datacontenttype": "application/json",
        "data": data(),
    });
    json!({
        "id": id,
        "name": name,
        "content": content.to_string(),
        "event_type_id": stable_id(&format!("openeg:event-type:{source}:{ty}")),
        "event_type_name": ty,
        "event_source_id": official_source_id(source),
        "event_source_name": source,
        "created_time": t,
        "updated_time": t,
    })
}

async fn list(q: Query) -> ApiResult<Response> {
    let paging = q.paging()?;
    let fuzzy = q.get("name").map(str::to_ascii_lowercase);
    let ty = q.get("event_type_name");
    let src = q.get("event_source_id");
    let mut items: Vec<Value> = SAMPLES
        .iter()
        .map(item)
        .filter(|v| {
            fuzzy.as_deref().is_none_or(|f| {
                v["name"]
                    .as_str()
                    .is_some_and(|n| n.to_ascii_lowercase().contains(f))
            }) && ty.is_none_or(|t| v["event_type_name"] == t)
                && src.is_none_or(|s| v["event_source_id"] == s)
        })
        .collect();
    // Every sample shares one timestamp, so time sorts fall back to the id tie-break.
    items.sort_by(|a, b| {
        let key = |v: &Value| {
            let k = match paging.sort {
                SortField::Name => v["name"].as_str().unwrap_or("").to_string(),
                _ => String::new(),
            };
            (k, v["id"].as_str().unwrap_or("").to_string())
        };
        let ord = key(a).cmp(&key(b));
        if paging.descending {
            ord.reverse()
        } else {
            ord
        }
    });
    let total = items.len() as u64;
    let page = items
        .into_iter()
        .skip(paging.offset as usize)
        .take(paging.limit as usize)
        .collect();
    Ok(list_reply(total, page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_valid_and_stable() {
        for s in SAMPLES {
            let a = item(s);
            assert_eq!(a, item(s));
            let c: Value = serde_json::from_str(a["content"].as_str().unwrap()).unwrap();
            assert_eq!(c["type"], a["event_type_name"]);
            assert_eq!(c["source"], a["event_source_name"]);
            assert!(super::super::sources::CATALOGUE
                .iter()
                .any(|o| o.name == s.1 && o.event_types.iter().any(|(t, _)| *t == s.2)));
        }
    }
}
