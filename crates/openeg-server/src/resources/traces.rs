//! Event traces (ops 17–19) and metrics (ops 77–78), served from the
//! delivery store; event bodies are read back from the channel log.

use super::get_or_404;
use crate::error::ApiResult;
use crate::openapi::{paging_no_sort, query, query_req, s, Op, Param};
use crate::state::{AppState, Tenant};
use crate::util::{ok, Params, Query};
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use openeg_api::EgError;
use openeg_store::delivery::{
    DeadLetterState, DeliveryStatus, DeliveryStore, MetricsQuery, TraceQuery,
};
use openeg_store::Kind;
use serde_json::{json, Value};
use std::sync::Arc;

const WEEK_MS: i64 = 7 * 24 * 3600 * 1000;

pub fn ops() -> Vec<Op> {
    const T: &str = "Traces";
    let epoch_ms = || s::doc(s::int_range(0, i64::MAX), "epoch milliseconds");
    let detail = s::obj(&[
        (
            "deliverTime",
            s::doc(s::string(), "yyyy-MM-dd HH:mm:ss UTC"),
        ),
        ("deliverStatus", s::one_of(&["SUCCESS", "FAILED"])),
        ("deliverConsuming", s::int()),
        ("deliverRspCode", s::string()),
    ]);
    let target = s::obj(&[
        ("deliverTargetId", s::string()),
        ("deliverTargetName", s::string()),
        ("deliverStatus", s::one_of(&["SUCCESS", "FAILED"])),
        ("deliverDetailList", s::array(detail)),
    ]);
    let item = s::obj(&[
        ("subscriptionId", s::string()),
        ("subscriptionName", s::string()),
        ("successCounts", s::int()),
        ("failCounts", s::int()),
        ("allDeliverTimes", s::int()),
        ("deliverTargetList", s::array(target)),
    ]);
    let common = |ps: Vec<Param>| -> Vec<Param> {
        let mut v = vec![
            query("filter", s::one_of(&FILTERS)),
            query("period", s::int_range(1, MAX_PERIOD_MIN)),
            query("start_time", epoch_ms()),
            query("end_time", epoch_ms()),
            query("provider_type", s::string()),
        ];
        v.extend(ps);
        v
    };
    let int = s::int;
    vec![
        Op::get(
            "ShowDetailOfEventTrace",
            "/v1/{project_id}/events/trace/detail/{trace_id}",
            show_event_trace,
        )
        .summary(T, "Show where an event was delivered")
        .param(query_req("channel_id", s::string()))
        .ok(s::obj(&[
            ("eventId", s::string()),
            ("eventSource", s::string()),
            ("eventType", s::string()),
            ("receiveTime", int()),
            ("channelId", s::string()),
            ("channelName", s::string()),
            ("deliverList", s::array(item)),
        ]))
        .errors(&[503]),
        Op::get(
            "ShowDetailOfEvent",
            "/v1/{project_id}/events/detail/{trace_id}",
            show_event,
        )
        .summary(T, "Show a published event as received")
        .ok(s::doc(s::any_object(), "the CloudEvent"))
        .errors(&[503]),
        Op::get(
            "ListTracedEvents",
            "/v1/{project_id}/traced-events",
            list_traced_events,
        )
        .summary(
            T,
            "List traced events of a channel in a time window (at most 7 days)",
        )
        .params([
            query_req("start_time", epoch_ms()),
            query_req("end_time", epoch_ms()),
            query_req("channel_id", s::string()),
            query("event_id", s::string()),
            query("source_name", s::string()),
            query("event_type", s::string()),
            query("subscription_name", s::string()),
        ])
        .params(paging_no_sort())
        .ok(s::req(
            s::obj(&[
                ("total", int()),
                ("size", int()),
                (
                    "result",
                    s::array(s::obj(&[
                        ("subscription_name", s::string()),
                        ("source_name", s::string()),
                        ("source_provider", s::string()),
                        ("event_type", s::string()),
                        ("event_id", s::string()),
                        ("event_received_time", int()),
                    ])),
                ),
            ]),
            &["total", "size", "result"],
        ))
        .errors(&[404, 503]),
        Op::get(
            "ListPubMetrics",
            "/v1/{project_id}/metrics/pub",
            pub_metrics,
        )
        .summary(T, "Publishing metrics per time bucket")
        .params(common(vec![
            query("channel_id", s::string()),
            query("source_name", s::string()),
        ]))
        .ok(metrics_reply(&[
            "event_size",
            "timestamp",
            "num",
            "success_num",
            "process_time",
            "invoke_time",
        ]))
        .errors(&[503]),
        Op::get(
            "ListSubMetrics",
            "/v1/{project_id}/metrics/sub",
            sub_metrics,
        )
        .summary(T, "Delivery metrics per time bucket")
        .params(common(vec![
            query("subscription_id", s::string()),
            query("target_id", s::string()),
        ]))
        .ok(metrics_reply(&[
            "fail_num",
            "retry_success_num",
            "retry_fail_num",
            "retry_times",
            "timestamp",
            "num",
            "success_num",
            "process_time",
            "invoke_time",
        ]))
        .errors(&[503]),
    ]
}

/// Statistics of the metrics `filter` parameter.
const FILTERS: [&str; 4] = ["sum", "avg", "max", "min"];
/// Largest metrics `period` in minutes.
const MAX_PERIOD_MIN: i64 = 1440;

/// `{total, result: [{<integer fields>}]}`.
fn metrics_reply(fields: &[&str]) -> Value {
    let f: Vec<(&str, Value)> = fields.iter().map(|k| (*k, s::int())).collect();
    s::req(
        s::obj(&[("total", s::int()), ("result", s::array(s::obj(&f)))]),
        &["total", "result"],
    )
}

fn delivery_store(st: &AppState) -> ApiResult<Arc<dyn DeliveryStore>> {
    st.delivery
        .clone()
        .ok_or_else(|| EgError::unavailable("the data plane is not enabled on this node").into())
}

fn int_param(q: &Query, key: &str) -> ApiResult<Option<i64>> {
    match q.get(key) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| EgError::param(format!("{key} must be an integer")).into()),
    }
}

fn window(q: &Query, required: bool) -> ApiResult<(i64, i64)> {
    let now = crate::util::now_ms();
    let (s, e) = (int_param(q, "start_time")?, int_param(q, "end_time")?);
    let (s, e) = match (s, e) {
        (Some(s), Some(e)) => (s, e),
        _ if required => return Err(EgError::param("start_time and end_time are required").into()),
        (s, e) => (s.unwrap_or(now - 3_600_000), e.unwrap_or(now)),
    };
    if s < 0 || s > e {
        return Err(EgError::param("start_time must not be after end_time").into());
    }
    if e - s > WEEK_MS {
        return Err(EgError::param("the time window must be at most 7 days").into());
    }
    Ok((s, e))
}

async fn list_traced_events(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    q: Query,
) -> ApiResult<Response> {
    let ds = delivery_store(&st)?;
    let (start, end) = window(&q, true)?;
    let channel_id = q
        .get("channel_id")
        .ok_or_else(|| EgError::param("channel_id is required"))?;
    get_or_404(&st, &t.project_id, Kind::Channel, channel_id).await?;
    let paging = openeg_api::validate::paging(q.get("offset"), q.get("limit"), None)?;
    let tq = TraceQuery {
        channel_id: channel_id.to_string(),
        start_ms: start,
        end_ms: end,
        event_id: q.get("event_id").map(str::to_string),
        source_name: q.get("source_name").map(str::to_string),
        event_type: q.get("event_type").map(str::to_string),
        subscription_name: q.get("subscription_name").map(str::to_string),
        offset: paging.offset,
        limit: paging.limit,
    };
    let (total, rows) = ds.list_traces(&t.project_id, &tq).await?;
    let result: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "subscription_name": r.subscription_name,
                "source_name": r.source_name,
                "source_provider": r.source_provider,
                "event_type": r.event_type,
                "event_id": r.event_id,
                "event_received_time": r.received_at,
            })
        })
        .collect();
    Ok(ok(
        json!({"total": total, "size": result.len(), "result": result}),
    ))
}

/// `yyyy-MM-dd HH:mm:ss` UTC.
fn deliver_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

async fn show_event_trace(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
    q: Query,
) -> ApiResult<Response> {
    let trace_id = p.get("trace_id");
    let ds = delivery_store(&st)?;
    let channel_id = q
        .get("channel_id")
        .ok_or_else(|| EgError::param("channel_id is required"))?;
    let channel = get_or_404(&st, &t.project_id, Kind::Channel, channel_id).await?;
    let rows = ds
        .event_traces(&t.project_id, Some(channel_id), trace_id)
        .await?;
    let Some(first) = rows.first() else {
        return Err(
            EgError::not_found(format!("event {trace_id} has no trace in this channel")).into(),
        );
    };
    let deliveries = ds
        .event_deliveries(&t.project_id, channel_id, first.offset)
        .await?;
    let mut deliver_list = Vec::new();
    for row in rows.iter().filter(|r| !r.subscription_id.is_empty()) {
        let mine: Vec<_> = deliveries
            .iter()
            .filter(|d| d.subscription_id == row.subscription_id)
            .collect();
        let success = mine
            .iter()
            .filter(|d| d.status == DeliveryStatus::Succeeded)
            .count();
        let failed = mine
            .iter()
            .filter(|d| {
                matches!(
                    d.status,
                    DeliveryStatus::Failed | DeliveryStatus::DeadLetter
                )
            })
            .count();
        let attempts: u32 = mine.iter().map(|d| d.attempts).sum();
        let targets: Vec<Value> = mine
            .iter()
            .map(|d| {
                let status = if d.status == DeliveryStatus::Succeeded {
                    "SUCCESS"
                } else {
                    "FAILED"
                };
                let mut target = json!({
                    "deliverTargetId": d.target_id,
                    "deliverTargetName": d.target_name,
                    "deliverStatus": status,
                    "deliverDetailList": d.recent.iter().map(|a| json!({
                        "deliverTime": deliver_time(a.at),
                        "deliverStatus": if a.success { "SUCCESS" } else { "FAILED" },
                        "deliverConsuming": a.latency_ms,
                        "deliverRspCode": a.code,
                    })).collect::<Vec<_>>(),
                });
                // OpenEG's addition: where the failed event's dead-letter record stands.
                if d.dead_letter.state != DeadLetterState::None {
                    target["deadLetterStatus"] = d.dead_letter.state.as_str().into();
                    target["deadLetterFailedTimes"] = d.dead_letter.tries.into();
                }
                target
            })
            .collect();
        deliver_list.push(json!({
            "subscriptionId": row.subscription_id,
            "subscriptionName": row.subscription_name,
            "successCounts": success,
            "failCounts": failed,
            "allDeliverTimes": attempts,
            "deliverTargetList": targets,
        }));
    }
    Ok(ok(json!({
        "eventId": first.event_id,
        "eventSource": first.source_name,
        "eventType": first.event_type,
        "receiveTime": first.received_at,
        "channelId": channel.id,
        "channelName": channel.name,
        "deliverList": deliver_list,
    })))
}

async fn show_event(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
) -> ApiResult<Response> {
    let trace_id = p.get("trace_id");
    let ds = delivery_store(&st)?;
    let rows = ds.event_traces(&t.project_id, None, trace_id).await?;
    let not_found = || EgError::not_found(format!("event {trace_id} does not exist"));
    let first = rows.first().ok_or_else(not_found)?;
    let Some(engine) = &st.engine else {
        return Err(EgError::unavailable("the data plane is not enabled on this node").into());
    };
    let event = engine
        .read_event(&t.project_id, &first.channel_id, first.offset)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "reading an event back failed");
            EgError::internal()
        })?
        .ok_or_else(not_found)?;
    let event: Value = serde_json::from_slice(&event).map_err(|_| EgError::internal())?;
    Ok(ok(event))
}

/// `filter` (sum|avg|max|min) and `period` (minutes, 1–1440) of the metrics APIs.
fn metrics_query(t: &Tenant, q: &Query) -> ApiResult<(MetricsQuery, String)> {
    let filter = q
        .one_of("filter", &FILTERS)?
        .unwrap_or_else(|| "sum".into());
    let period = int_param(q, "period")?.unwrap_or(1);
    if !(1..=MAX_PERIOD_MIN).contains(&period) {
        return Err(EgError::param(format!(
            "period must be between 1 and {MAX_PERIOD_MIN} minutes"
        ))
        .into());
    }
    let (start, end) = window(q, false)?;
    if (end - start) / (period * 60_000) > 1440 {
        return Err(EgError::param("at most 1440 buckets per response; raise period").into());
    }
    Ok((
        MetricsQuery {
            project_id: t.project_id.clone(),
            start_ms: start,
            end_ms: end,
            period_ms: period * 60_000,
            channel_id: q.get("channel_id").map(str::to_string),
            source_name: q.get("source_name").map(str::to_string),
            subscription_id: q.get("subscription_id").map(str::to_string),
            target_id: q.get("target_id").map(str::to_string),
        },
        filter,
    ))
}

/// A bucket's value per the metrics `filter` (`sum` by default) over `n` samples.
fn statistic(filter: &str, n: u64, sum: u64, max: u64, min: u64) -> u64 {
    match filter {
        "max" => max,
        "min" => min,
        "avg" if n > 0 => sum / n,
        "avg" => 0,
        _ => sum,
    }
}

async fn pub_metrics(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    q: Query,
) -> ApiResult<Response> {
    let ds = delivery_store(&st)?;
    let (mq, filter) = metrics_query(&t, &q)?;
    let buckets = ds.pub_metrics(&mq).await?;
    let result: Vec<Value> = buckets
        .iter()
        .map(|b| {
            let stat = |sum, max, min| statistic(&filter, b.events, sum, max, min);
            let size = stat(b.size_sum, b.size_max, b.size_min);
            // Routing is publishing's processing step, and there is no other invocation.
            let process = stat(b.process_sum_ms, b.process_max_ms, b.process_min_ms);
            json!({"event_size": size, "timestamp": b.start_ms, "num": b.events, "success_num": b.events,
                   "process_time": process, "invoke_time": process})
        })
        .collect();
    Ok(ok(json!({"total": result.len(), "result": result})))
}

async fn sub_metrics(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    q: Query,
) -> ApiResult<Response> {
    let ds = delivery_store(&st)?;
    let (mq, filter) = metrics_query(&t, &q)?;
    let buckets = ds.sub_metrics(&mq).await?;
    let result: Vec<Value> = buckets
        .iter()
        .map(|b| {
            let attempted = b.succeeded + b.failed;
            let latency = statistic(
                &filter,
                attempted,
                b.latency_sum_ms,
                b.latency_max_ms,
                b.latency_min_ms,
            );
            json!({"fail_num": b.failed, "retry_success_num": b.retry_succeeded, "retry_fail_num": b.retry_failed,
                   "retry_times": b.retries, "timestamp": b.start_ms, "num": b.deliveries,
                   "success_num": b.succeeded, "process_time": latency, "invoke_time": latency})
        })
        .collect();
    Ok(ok(json!({"total": result.len(), "result": result})))
}

#[cfg(test)]
mod tests {
    #[test]
    fn deliver_time_format() {
        assert_eq!(
            super::deliver_time(1_704_164_645_123),
            "2024-01-02 03:04:05"
        );
    }
}
