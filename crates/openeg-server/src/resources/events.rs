//! Publishing (ops 20–22): PutEvents, PutOfficialEvents, CheckPutEvents.
//!
//! PutEvents also accepts the CloudEvents HTTP bindings on the same path: structured mode
//! (`application/cloudevents+json`, one event), batched mode
//! (`application/cloudevents-batch+json`, an array) and binary mode (`ce-*` headers, body =
//! `data`). Per-event failures are reported in the 200 body; accepted events are appended to
//! the channel's log as one batch and the response is sent only after that append is durable.
//! If the log cannot take the batch the whole request fails (503 `EG.00511001` with
//! `Retry-After` while the log is failed) and no event of it is acknowledged.

use super::get_or_404;
use crate::error::ApiResult;
use crate::openapi::{path_param, s, Op};
use crate::projects::DEFAULT_CHANNEL;
use crate::state::{AppState, PublishTarget, Tenant, PUBLISH_CACHE_TTL};
use crate::util::{json_body, json_reply, ok, Params};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use axum::Extension;
use openeg_api::field::Fields;
use openeg_api::{event, EgError};
use openeg_engine::PublishError;
use openeg_store::{Kind, ListQuery};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

pub fn ops() -> Vec<Op> {
    const T: &str = "Events";
    let batch = s::req(
        s::obj(&[("events", s::array_len(cloud_event(), 1, event::MAX_EVENTS))]),
        &["events"],
    );
    let per_event = s::req(
        s::obj(&[
            ("failed_count", s::int()),
            (
                "events",
                s::array(s::req(
                    s::obj(&[
                        ("event_id", s::string()),
                        ("error_code", s::string()),
                        ("error_msg", s::string()),
                    ]),
                    &["event_id"],
                )),
            ),
        ]),
        &["failed_count", "events"],
    );
    vec![
        Op::post("PutEvents", PUT_EVENTS_PATH, put_events)
            .summary(
                T,
                "Publish events to a channel (per-event results); also CloudEvents structured, \
             batched and binary (ce-* headers) modes",
            )
            .body(batch.clone())
            .also_accepts("application/cloudevents+json", cloud_event())
            .also_accepts(
                "application/cloudevents-batch+json",
                s::array_len(cloud_event(), 1, event::MAX_EVENTS),
            )
            .ok(per_event.clone())
            .errors(&[503]),
        Op::post(
            "PutOfficialEvents",
            "/v1/{project_id}/official/sources/{source_name}/events",
            put_official_events,
        )
        .summary(
            T,
            "Publish events of an official (HC.) source to the default channel",
        )
        .param(path_param(
            "source_name",
            s::doc(
                serde_json::json!({"type": "string", "pattern": "^HC\\."}),
                "official source name",
            ),
        ))
        .body(batch)
        .ok(per_event)
        .errors(&[503]),
        Op::post(
            "CheckPutEvents",
            "/v1/{project_id}/events/check",
            check_put_events,
        )
        .summary(T, "Check whether sources can publish to channels")
        .body(s::req(
            s::obj(&[(
                "sources",
                s::array_len(
                    s::req(
                        s::obj(&[
                            ("channel_id", s::non_empty(64)),
                            ("source_name", s::non_empty(128)),
                        ]),
                        &["channel_id", "source_name"],
                    ),
                    1,
                    MAX_CHECKS,
                ),
            )]),
            &["sources"],
        ))
        .ok(s::req(
            s::obj(&[
                ("failed_count", s::int()),
                (
                    "sources",
                    s::array(s::req(
                        s::obj(&[
                            ("channel_id", s::string()),
                            ("source_name", s::string()),
                            ("check_result", s::boolean()),
                            ("check_detail", s::string()),
                        ]),
                        &["channel_id", "source_name", "check_result"],
                    )),
                ),
            ]),
            &["failed_count", "sources"],
        )),
    ]
}

/// The PutEvents route; a credential may call it on another project's path (cross-account
/// publishing, allowed by the channel's policy; see `auth::is_put_events`).
pub const PUT_EVENTS_PATH: &str = "/v1/{project_id}/channels/{channel_id}/events";

/// Most entries of one CheckPutEvents request.
const MAX_CHECKS: usize = 100;

/// A CloudEvents 1.0 event in JSON.
fn cloud_event() -> Value {
    s::req(
        s::obj(&[
            ("id", attribute()),
            ("source", attribute()),
            ("specversion", s::one_of(&["1.0"])),
            ("type", attribute()),
            ("datacontenttype", s::one_of(&["application/json"])),
            ("dataschema", s::string()),
            ("data", s::any()),
            ("time", s::doc(s::string(), "RFC 3339")),
            ("subject", attribute()),
        ]),
        &["id", "source", "specversion", "type"],
    )
}

/// `id`, `source`, `type`, `subject`: 1–256 characters, no control characters (Unicode Cc).
fn attribute() -> Value {
    let mut v = s::non_empty(event::MAX_ATTRIBUTE_CHARS);
    v["pattern"] = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$".into();
    v
}

/// The events of a PutEvents request, in whichever HTTP binding it came, each checked.
fn request_events(headers: &HeaderMap, body: &[u8]) -> Result<Vec<event::Checked>, EgError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if body.len() > event::MAX_REQUEST_BYTES {
        return Err(EgError::param(format!(
            "the request body must be at most {} bytes",
            event::MAX_REQUEST_BYTES
        )));
    }
    if ct == "application/cloudevents+json" {
        let v: &RawValue = serde_json::from_slice(body)
            .map_err(|_| EgError::param("request body is not valid JSON"))?;
        return Ok(vec![event::check(v.get())]);
    }
    if ct == "application/cloudevents-batch+json" {
        let v: &RawValue = serde_json::from_slice(body)
            .map_err(|_| EgError::param("request body is not valid JSON"))?;
        return event::array(v.get(), "a cloudevents batch must be a JSON array");
    }
    if headers.contains_key("ce-specversion") {
        let ev = binary_mode_event(headers, &ct, body)?;
        return Ok(vec![event::check(&ev.to_string())]);
    }
    event::batch(body)
}

/// Builds the event of a binary-mode request: attributes from `ce-*` headers, data = body.
fn binary_mode_event(headers: &HeaderMap, ct: &str, body: &[u8]) -> Result<Value, EgError> {
    let mut m = Map::new();
    for (name, value) in headers {
        if let Some(attr) = name.as_str().strip_prefix("ce-") {
            let v = value
                .to_str()
                .map_err(|_| EgError::param(format!("header {name} is not valid text")))?;
            let decoded = percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned();
            m.insert(attr.to_string(), Value::String(decoded));
        }
    }
    if !body.is_empty() {
        let data: Value = serde_json::from_slice(body).map_err(|_| {
            EgError::param("binary-mode data must be JSON (only application/json is supported)")
        })?;
        m.insert("data".into(), data);
        if !ct.is_empty() {
            m.insert("datacontenttype".into(), Value::String(ct.to_string()));
        }
    }
    Ok(Value::Object(m))
}

/// Names of the custom sources attached to a channel.
async fn channel_sources(
    st: &AppState,
    project: &str,
    channel_id: &str,
) -> ApiResult<HashSet<String>> {
    let q = ListQuery {
        parent_id: Some(channel_id.to_string()),
        ..Default::default()
    };
    let (_, recs) = st.store.list(project, Kind::Source, &q).await?;
    Ok(recs.into_iter().map(|r| r.name).collect())
}

/// The members of a channel document that cross-account publishing reads.
fn channel_policy_view(body: &Value) -> Option<Value> {
    (body.get("cross_account") == Some(&Value::Bool(true))).then(|| {
        json!({
            "name": body.get("name"),
            "cross_account": true,
            "policy": body.get("policy"),
        })
    })
}

/// The channel as publishing sees it, from the short-lived cache or the store.
async fn publish_target(
    st: &AppState,
    project: &str,
    channel_id: &str,
) -> ApiResult<Arc<PublishTarget>> {
    let key = (project.to_string(), channel_id.to_string());
    if let Ok(c) = st.publish_cache.lock() {
        if let Some((at, t)) = c.get(&key) {
            if at.elapsed() < PUBLISH_CACHE_TTL {
                return Ok(t.clone());
            }
        }
    }
    let channel = get_or_404(st, project, Kind::Channel, channel_id).await?;
    let target = Arc::new(PublishTarget {
        is_default: channel.name == DEFAULT_CHANNEL,
        sources: channel_sources(st, project, &channel.id).await?,
        channel_id: channel.id,
        cross_account: channel_policy_view(&channel.body),
    });
    if let Ok(mut c) = st.publish_cache.lock() {
        c.insert(key, (Instant::now(), target.clone()));
    }
    Ok(target)
}

/// Per-event outcome: the text to log, or why the event is rejected.
type Outcome = Result<Vec<u8>, EgError>;

/// `{"failed_count", "events": [{"event_id"[, "error_code", "error_msg"]}]}`, written
/// directly: it is the reply to every publish.
fn response(events: &[event::Checked], outcomes: &[Outcome]) -> Response {
    let failed = outcomes.iter().filter(|o| o.is_err()).count();
    let mut out = Vec::with_capacity(40 + events.len() * 64);
    out.extend_from_slice(format!("{{\"failed_count\":{failed},\"events\":[").as_bytes());
    let string = |out: &mut Vec<u8>, s: &str| {
        if serde_json::to_writer(&mut *out, s).is_err() {
            out.extend_from_slice(b"\"\"");
        }
    };
    for (i, (ev, o)) in events.iter().zip(outcomes).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"event_id\":");
        string(&mut out, &ev.id);
        if let Err(e) = o {
            out.extend_from_slice(b",\"error_code\":");
            string(&mut out, e.code);
            out.extend_from_slice(b",\"error_msg\":");
            string(&mut out, &e.msg);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    json_reply(out)
}

/// Appends the accepted events as one durable batch. If the log does not take it, the whole
/// request fails and no event of it is acknowledged: a 200 with per-event errors would let a
/// client that only checks the status lose events.
async fn append_accepted(
    st: &AppState,
    project_id: &str,
    channel_id: &str,
    outcomes: &mut [Outcome],
) -> ApiResult<()> {
    let accepted: Vec<Vec<u8>> = outcomes
        .iter_mut()
        .filter_map(|o| o.as_mut().ok().map(std::mem::take))
        .collect();
    if accepted.is_empty() {
        return Ok(());
    }
    let Some(engine) = &st.engine else {
        return Err(EgError::unavailable("event publishing is not enabled on this node").into());
    };
    let Err(e) = engine
        .publish_texts(project_id, channel_id, &accepted)
        .await
    else {
        return Ok(());
    };
    let request_id = crate::error::current_request_id();
    tracing::error!(%request_id, project_id, channel_id, error = %e, "appending events failed");
    Err(match e {
        PublishError::LogUnavailable(_) => {
            EgError::unavailable("the channel's event log cannot take events now, retry later")
        }
        PublishError::ChannelGone => EgError::publish_missing("the channel was deleted"),
        PublishError::Other(_) => EgError::internal(),
    }
    .into())
}

async fn put_events(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let owner = t.foreign_project.as_deref().unwrap_or(&t.project_id);
    let channel = match (
        publish_target(&st, owner, p.get("channel_id")).await,
        &t.foreign_project,
    ) {
        (Ok(c), None) => c,
        (Ok(c), Some(_)) if c.accepts_account(owner, caller_domain(&st, &t)) => c,
        // Another project's unknown channel answers like a refused one, so that project's
        // channels cannot be probed.
        (Ok(_), Some(_)) => return Err(not_cross_account()),
        (Err(e), Some(_)) if e.0.status == 404 => return Err(not_cross_account()),
        (Err(e), _) => return Err(e),
    };
    let mut events = request_events(&headers, &body)?;
    let (is_default, sources) = (channel.is_default, &channel.sources);
    let mut outcomes: Vec<Outcome> = events
        .iter_mut()
        .map(|ev| {
            let text = std::mem::replace(&mut ev.result, Ok(Vec::new()))?;
            let src = ev.source.as_str();
            if sources.contains(src) || (is_default && src.starts_with("HC.")) {
                Ok(text)
            } else {
                Err(EgError::publish_missing(format!(
                    "source {src} is not a source of this channel"
                )))
            }
        })
        .collect();
    append_accepted(&st, owner, &channel.channel_id, &mut outcomes).await?;
    Ok(response(&events, &outcomes))
}

fn not_cross_account() -> crate::error::ApiError {
    EgError::forbidden(
        "the channel does not accept events from this account (its cross_account switch and \
         policy decide)",
    )
    .into()
}

/// The caller's account (IAM domain id), which channel policies name.
fn caller_domain<'a>(st: &'a AppState, t: &Tenant) -> &'a str {
    st.creds
        .get(&t.access_key)
        .map(|c| c.domain_id.as_str())
        .unwrap_or("")
}

async fn put_official_events(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
    body: Bytes,
) -> ApiResult<Response> {
    let source_name = p.get("source_name");
    if !source_name.starts_with("HC.") {
        return Err(EgError::param("source_name must start with HC.").into());
    }
    let mut events = event::batch(&body)?;
    let Some(channel) = st
        .store
        .get_by_name(&t.project_id, Kind::Channel, DEFAULT_CHANNEL)
        .await?
    else {
        return Err(EgError::publish_missing("the default channel is missing").into());
    };
    let mut outcomes: Vec<Outcome> = events
        .iter_mut()
        .map(|ev| {
            let text = std::mem::replace(&mut ev.result, Ok(Vec::new()))?;
            if ev.source == source_name {
                Ok(text)
            } else {
                Err(EgError::param(format!(
                    "event source {} differs from {source_name}",
                    ev.source
                )))
            }
        })
        .collect();
    if outcomes.iter().any(Result::is_ok) {
        // Official sources are listed once they have been used.
        super::sources::record_official_source(&st, &t.project_id, source_name).await?;
    }
    append_accepted(&st, &t.project_id, &channel.id, &mut outcomes).await?;
    Ok(response(&events, &outcomes))
}

async fn check_put_events(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    body: Bytes,
) -> ApiResult<Response> {
    let v = json_body(&body)?;
    let o = Fields::body(&v)?.map();
    let items = match o.get("sources") {
        Some(Value::Array(a)) if !a.is_empty() && a.len() <= MAX_CHECKS => a,
        Some(Value::Array(_)) => {
            return Err(
                EgError::param(format!("sources must hold 1 to {MAX_CHECKS} entries")).into(),
            )
        }
        Some(_) => return Err(EgError::param("sources must be an array").into()),
        None => return Err(EgError::param("sources is required").into()),
    };
    let mut results = Vec::with_capacity(items.len());
    let mut failed = 0;
    for (i, item) in items.iter().enumerate() {
        let m = item
            .as_object()
            .ok_or_else(|| EgError::param(format!("sources[{i}] must be an object")))?;
        let m = Fields::root(m);
        let channel_id = m.req_str("channel_id")?;
        let source_name = m.req_str("source_name")?;
        let detail = check_one(&st, &t.project_id, channel_id, source_name).await?;
        if detail.is_some() {
            failed += 1;
        }
        results.push(json!({
            "channel_id": channel_id,
            "source_name": source_name,
            "check_result": detail.is_none(),
            "check_detail": detail.unwrap_or_else(|| "events from this source can be published".into()),
        }));
    }
    Ok(ok(json!({"failed_count": failed, "sources": results})))
}

/// `None` when the source can publish to the channel, else why not.
async fn check_one(
    st: &AppState,
    project: &str,
    channel_id: &str,
    source: &str,
) -> ApiResult<Option<String>> {
    let Some(channel) = st.store.get(project, Kind::Channel, channel_id).await? else {
        return Ok(Some(format!("channel {channel_id} does not exist")));
    };
    let official = source.starts_with("HC.");
    let belongs = if official {
        channel.name == DEFAULT_CHANNEL
    } else {
        channel_sources(st, project, channel_id)
            .await?
            .contains(source)
    };
    if !belongs {
        return Ok(Some(format!(
            "source {source} is not a source of channel {}",
            channel.name
        )));
    }
    let key = if official {
        format!("official:{source}")
    } else {
        format!("source:{source}")
    };
    let q = ListQuery {
        parent_id: Some(channel.id.clone()),
        has_ref: Some(key),
        ..Default::default()
    };
    let (_, subs) = st.store.list(project, Kind::Subscription, &q).await?;
    let active = subs
        .iter()
        .any(|s| s.body.get("status").and_then(Value::as_str) != Some("DISABLED"));
    if !active {
        return Ok(Some(format!(
            "no enabled subscription of channel {} uses source {source}",
            channel.name
        )));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[tokio::test]
    async fn response_is_the_per_event_report() {
        let events = event::batch(br#"{"events":[{"id":"a\"1"},{"id":"b"}]}"#).unwrap();
        let outcomes = vec![Ok(Vec::new()), Err(EgError::param("bad \"x\""))];
        let r = response(&events, &outcomes);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[header::CONTENT_TYPE], crate::error::JSON_UTF8);
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        let e = EgError::param("bad \"x\"");
        assert_eq!(
            v,
            json!({"failed_count": 1, "events": [{"event_id": "a\"1"},
                {"event_id": "b", "error_code": e.code, "error_msg": e.msg}]})
        );
    }

    #[test]
    fn bindings() {
        let mut h = HeaderMap::new();
        let body = br#"{"events":[{"id":"1"}]}"#;
        assert_eq!(request_events(&h, body).unwrap().len(), 1);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/cloudevents+json; charset=utf-8"),
        );
        let one = request_events(&h, br#"{"id":"x","source":"s"}"#).unwrap();
        assert_eq!(one[0].id, "x");
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/cloudevents-batch+json"),
        );
        assert_eq!(
            request_events(&h, br#"[{"id":"a"},{"id":"b"}]"#)
                .unwrap()
                .len(),
            2
        );
        assert!(request_events(&h, b"[]").is_err());
        assert!(request_events(&h, br#"{"id":"a"}"#).is_err());
        let mut b = HeaderMap::new();
        b.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        b.insert("ce-specversion", HeaderValue::from_static("1.0"));
        b.insert("ce-id", HeaderValue::from_static("e%201"));
        b.insert("ce-source", HeaderValue::from_static("app"));
        b.insert("ce-type", HeaderValue::from_static("t"));
        let ev = request_events(&b, br#"{"k":1}"#).unwrap().remove(0);
        assert_eq!(ev.id, "e 1");
        let logged: Value = serde_json::from_slice(&ev.result.unwrap()).unwrap();
        assert_eq!(logged["id"], "e 1");
        assert_eq!(logged["data"]["k"], 1);
        assert_eq!(logged["datacontenttype"], "application/json");
        assert!(request_events(&b, b"not json").is_err());
    }
}
