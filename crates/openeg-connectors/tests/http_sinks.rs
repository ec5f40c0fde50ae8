//! HTTP sinks against a real receiver on 127.0.0.1.

use axum::body::Bytes as AxBytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use openeg_connectors::sinks::*;
use openeg_connectors::{Message, Outcome, Sink};
use std::sync::{Arc, Mutex};

type Seen = Arc<Mutex<Vec<(String, String, String, Option<String>)>>>; // path, content-type, body, x-extra

async fn record(
    State(seen): State<Seen>,
    Path(rest): Path<String>,
    headers: HeaderMap,
    body: AxBytes,
) -> (StatusCode, &'static str) {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let extra = headers
        .get("x-extra")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    seen.lock().unwrap().push((
        format!("/{rest}"),
        ct,
        String::from_utf8_lossy(&body).into_owned(),
        extra,
    ));
    if rest.starts_with("fail500") {
        (StatusCode::INTERNAL_SERVER_ERROR, "no")
    } else if rest.starts_with("gone") {
        (StatusCode::NOT_FOUND, "no")
    } else if rest.starts_with("moved") {
        (StatusCode::FOUND, "")
    } else {
        (StatusCode::OK, "ok")
    }
}

async fn receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/{*rest}", post(record))
        .with_state(seen.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

fn msg(p: &'static [u8]) -> Message {
    Message {
        payload: Bytes::from_static(p),
        ..Default::default()
    }
}

#[tokio::test]
async fn webhook_outcomes_and_headers() {
    let (base, seen) = receiver().await;
    let c = HttpClient::new().unwrap();
    let ok = WebhookSink::new(
        c.clone(),
        WebhookConfig {
            url: format!("{base}/hook"),
            headers: vec![("x-extra".into(), "v".into())],
        },
    );
    assert_eq!(
        ok.send(&msg(br#"{"a":1}"#)).await,
        Outcome::Delivered { code: "200".into() }
    );
    assert!(ok.send(&msg(b"plain text")).await.is_success());
    let retry = WebhookSink::new(
        c.clone(),
        WebhookConfig {
            url: format!("{base}/fail500"),
            headers: vec![],
        },
    );
    assert!(
        matches!(retry.send(&msg(b"{}")).await, Outcome::Retry { ref code, .. } if code == "500")
    );
    let gone = WebhookSink::new(
        c.clone(),
        WebhookConfig {
            url: format!("{base}/gone"),
            headers: vec![],
        },
    );
    assert!(
        matches!(gone.send(&msg(b"{}")).await, Outcome::GiveUp { ref code, .. } if code == "404")
    );
    let moved = WebhookSink::new(
        c.clone(),
        WebhookConfig {
            url: format!("{base}/moved"),
            headers: vec![],
        },
    );
    assert!(
        matches!(moved.send(&msg(b"{}")).await, Outcome::GiveUp { ref code, .. } if code == "302")
    );
    // Nothing listens on port 9 of loopback: a network failure is retried with an empty code.
    let dead = WebhookSink::new(
        c,
        WebhookConfig {
            url: "http://127.0.0.1:9/x".into(),
            headers: vec![],
        },
    );
    assert!(
        matches!(dead.send(&msg(b"{}")).await, Outcome::Retry { ref code, .. } if code.is_empty())
    );
    let s = seen.lock().unwrap();
    assert_eq!(
        s[0],
        (
            "/hook".into(),
            "application/json".into(),
            r#"{"a":1}"#.into(),
            Some("v".into())
        )
    );
    assert_eq!(s[1].1, "text/plain; charset=utf-8");
}

#[tokio::test]
async fn functiongraph_and_smn_paths() {
    let (base, seen) = receiver().await;
    let c = HttpClient::new().unwrap();
    let cfg = |t| FunctionGraphConfig {
        endpoint: format!("{base}/"),
        project_id: "p1".into(),
        urn: "urn:fss:r:p:function:default:f1:latest".into(),
        invoke_type: t,
    };
    let sync = FunctionGraphSink::new(c.clone(), &cfg(InvokeType::Sync));
    let asyn = FunctionGraphSink::new(c.clone(), &cfg(InvokeType::Async));
    assert!(sync.send(&msg(br#"{"name":"x"}"#)).await.is_success());
    assert!(asyn.send(&msg(br#"{"name":"y"}"#)).await.is_success());
    assert!(matches!(
        sync.send(&msg(b"not json")).await,
        Outcome::GiveUp { .. }
    ));
    let smn = SmnSink::new(
        c,
        &SmnConfig {
            endpoint: base.clone(),
            project_id: "p1".into(),
            urn: "urn:smn:r:p:topic".into(),
        },
    );
    let m = Message {
        payload: Bytes::from_static(br#"{"k":1}"#),
        subject: Some("subj".into()),
        ..Default::default()
    };
    assert!(smn.send(&m).await.is_success());
    let s = seen.lock().unwrap();
    assert_eq!(
        s.len(),
        3,
        "the non-JSON FunctionGraph payload must not be sent"
    );
    assert_eq!(
        s[0].0,
        "/v2/p1/fgs/functions/urn:fss:r:p:function:default:f1:latest/invocations"
    );
    assert_eq!(
        s[1].0,
        "/v2/p1/fgs/functions/urn:fss:r:p:function:default:f1:latest/invocations-async"
    );
    assert_eq!(
        s[2].0,
        "/v2/p1/notifications/topics/urn:smn:r:p:topic/publish"
    );
    let body: serde_json::Value = serde_json::from_str(&s[2].2).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"subject": "subj", "message": "{\"k\":1}"})
    );
}

/// Sinks built from typed target specs through the registration point reach the same URLs,
/// with APIGW header parameters sent.
#[tokio::test]
async fn sinks_built_from_specs() {
    use openeg_api::target_spec::TargetSpec;
    use serde_json::json;
    let (base, seen) = receiver().await;
    let c = HttpClient::new().unwrap();
    let ctx = BuildContext {
        http: &c,
        project_id: "p1",
        functiongraph_endpoint: Some(&base),
        smn_endpoint: Some(&base),
        connection: None,
    };
    let specs = [
        json!({"name": "WEBHOOK", "detail": {"url": format!("{base}/hook")}}),
        json!({"name": "HC.APIGW", "apigw_detail": {"url": format!("{base}/api"),
            "invocation_http_parameters": {"header_parameters": [
                {"key": "X-Extra", "value": "revealed", "is_value_secret": true}]}}}),
        json!({"name": "HC.FunctionGraph", "detail": {"urn": "urn:fss:f", "invoke_type": "ASYNC"}}),
        json!({"name": "HC.FunctionFlow", "detail": {"workflow_id": "wf-1"}}),
        json!({"name": "HC.SMN", "smn_detail": {"urn": "urn:smn:t"}}),
    ];
    for s in &specs {
        let spec = TargetSpec::parse(s).unwrap();
        let sink = build(&spec, &ctx).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert!(sink.send(&msg(br#"{"a":1}"#)).await.is_success(), "{s}");
    }
    let s = seen.lock().unwrap();
    let paths: Vec<&str> = s.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/hook",
            "/api",
            "/v2/p1/fgs/functions/urn:fss:f/invocations-async",
            "/v2/p1/fgs/workflows/wf-1/executions",
            "/v2/p1/notifications/topics/urn:smn:t/publish",
        ]
    );
    assert_eq!(s[0].3, None);
    assert_eq!(s[1].3.as_deref(), Some("revealed"));
}
