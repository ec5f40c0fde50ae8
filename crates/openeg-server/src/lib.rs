//! OpenEG HTTP layer: EG routes, request signing, project scoping, request ids, one handler
//! module per resource family under [`resources`].
//!
//! Layering of one request (outermost first):
//! 1. [`outer`]: `X-Request-Id` (task-local, so error bodies carry it), trailing-slash
//!    normalization, URI/body size limits.
//! 2. axum routing, built from the operation table ([`operations`], [`openapi`]): unknown
//!    path or method → 404 `APIGW.0101`, before any authentication.
//! 3. [`auth::require_tenant`] on `/v1/{project_id}/...` routes: signature or token, project
//!    binding, default channel.
//! 4. The handler, which returns `ApiResult<Response>`.

pub mod auth;
pub mod error;
pub mod openapi;
pub mod projects;
pub mod resources;
pub mod secrets;
pub mod state;
pub mod util;

#[cfg(test)]
pub(crate) mod testing;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::Router;
use error::{ApiError, REQUEST_ID};
use openapi::{Access, Body, Op};
use openeg_api::EgError;
pub use state::{AppState, Credential, Quotas, ServerConfig, Tenant};
use tower::ServiceExt;

const MAX_URI_BYTES: usize = 8 * 1024;
const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Every operation this server answers: the EG resources, then OpenEG's own endpoints.
/// The router and the OpenAPI document are both built from this table.
pub fn operations() -> Vec<Op> {
    let mut ops = resources::ops();
    ops.extend(own_ops());
    ops
}

/// The endpoints outside the EG resource families.
fn own_ops() -> Vec<Op> {
    use openapi::s;
    let token_body = s::req(
        s::obj(&[(
            "auth",
            s::req(
                s::obj(&[
                    (
                        "identity",
                        s::req(
                            s::obj(&[
                                ("methods", s::array(s::one_of(&["password"]))),
                                (
                                    "password",
                                    s::obj(&[(
                                        "user",
                                        s::req(
                                            s::obj(&[
                                                ("name", s::doc(s::string(), "access key")),
                                                ("password", s::doc(s::string(), "secret key")),
                                                (
                                                    "domain",
                                                    s::obj(&[
                                                        ("id", s::string()),
                                                        ("name", s::string()),
                                                    ]),
                                                ),
                                            ]),
                                            &["name", "password"],
                                        ),
                                    )]),
                                ),
                            ]),
                            &["methods", "password"],
                        ),
                    ),
                    (
                        "scope",
                        s::obj(&[(
                            "project",
                            s::obj(&[("id", s::string()), ("name", s::string())]),
                        )]),
                    ),
                ]),
                &["identity"],
            ),
        )]),
        &["auth"],
    );
    let token = s::req(
        s::obj(&[(
            "token",
            s::req(
                s::obj(&[
                    ("expires_at", s::time()),
                    ("issued_at", s::time()),
                    ("project", s::req(s::obj(&[("id", s::string())]), &["id"])),
                    ("methods", s::array(s::string())),
                ]),
                &["expires_at", "issued_at", "project", "methods"],
            ),
        )]),
        &["token"],
    );
    vec![
        Op::post("CreateToken", "/v3/auth/tokens", auth::issue_token)
            .summary(
                "Authentication",
                "Issue a token for an access key pair (X-Subject-Token)",
            )
            .extension()
            .body(token_body)
            .status(201, Body::Json(token))
            .header("X-Subject-Token", "the token, for X-Auth-Token")
            .errors(&[401]),
        Op::post(
            "TestRules",
            "/openeg/v1/rules/test",
            resources::rules::test_rules,
        )
        .summary("OpenEG", "Which events a filter matches, and why not")
        .extension()
        .access(Access::Credential)
        .body(resources::rules::request_schema())
        .ok(resources::rules::response_schema()),
        Op::get("ShowHealth", "/openeg/v1/health", health)
            .summary(
                "OpenEG",
                "Health: 200 when serving; 503 (EG.00511001, naming the channel ids) while \
                 any channel's event log is failed and refuses events",
            )
            .extension()
            .ok(s::req(
                s::obj(&[("status", s::one_of(&["ok"]))]),
                &["status"],
            ))
            .errors(&[503]),
        Op::get("ShowCluster", "/openeg/v1/cluster", show_cluster)
            .summary(
                "OpenEG",
                "The cluster: nodes (live while heartbeating), and each partition of the \
                 caller's channels with its owner, end offset, committed offset and lag",
            )
            .extension()
            .access(Access::Credential)
            .ok(s::req(
                s::obj(&[
                    ("node", s::string()),
                    ("log", s::one_of(&["embedded", "shared"])),
                    ("nodes", s::array(s::any_object())),
                    ("partitions", s::array(s::any_object())),
                    ("tasks", s::array(s::any_object())),
                ]),
                &["node", "log", "nodes", "partitions", "tasks"],
            ))
            .errors(&[401, 503]),
        Op::get(
            "ShowOpenApiDocument",
            "/openeg/v1/openapi.json",
            serve_openapi,
        )
        .summary("OpenEG", "This OpenAPI document")
        .extension()
        .ok(s::req(
            s::obj(&[("openapi", s::string()), ("paths", s::any_object())]),
            &["openapi", "paths"],
        )),
        Op::get("ShowMetrics", "/metrics", prometheus)
            .summary(
                "OpenEG",
                "Prometheus metrics (process-wide, no tenant data)",
            )
            .extension()
            .status(200, Body::Text),
    ]
}

/// The routed application (without the outer layer), built from [`operations`].
pub fn router(st: AppState) -> Router {
    let ops = operations();
    // Extractors buffer bodies up to the server's limit, not axum's smaller default.
    let body_limit = DefaultBodyLimit::max(st.cfg.max_body_bytes);
    let tenant_routes = openapi::routes(&ops, &[Access::Tenant]).route_layer(
        middleware::from_fn_with_state(st.clone(), auth::require_tenant),
    );
    let openeg_routes = openapi::routes(&ops, &[Access::Credential]).route_layer(
        middleware::from_fn_with_state(st.clone(), auth::require_credential),
    );
    openapi::routes(&ops, &[Access::Public, Access::Optional])
        .merge(openeg_routes)
        .merge(tenant_routes)
        .fallback(no_route)
        .method_not_allowed_fallback(no_route)
        .layer(body_limit)
        .with_state(st)
}

/// Most channel ids named by a failing health answer.
const HEALTH_MAX_NAMED: usize = 20;

/// `GET /openeg/v1/health`. Unauthenticated, so a failure names channel ids only (random,
/// no tenant data); the reasons, which may name files, are in the server log.
async fn health(axum::extract::State(st): axum::extract::State<AppState>) -> Response {
    let failures = st
        .engine
        .as_ref()
        .map(|e| e.log_failures())
        .unwrap_or_default();
    if failures.is_empty() {
        return util::ok(serde_json::json!({"status": "ok"}));
    }
    let mut named: Vec<&str> = failures
        .iter()
        .take(HEALTH_MAX_NAMED)
        .map(|f| f.channel_id.as_str())
        .collect();
    let more = failures.len().saturating_sub(named.len());
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    named.sort_unstable();
    ApiError(EgError::unavailable(format!(
        "the event log of {} channel(s) is failed and refuses events: {}{more}",
        failures.len(),
        named.join(", ")
    )))
    .into_response()
}

/// `GET /openeg/v1/cluster` (any credential; partitions of its own project only).
async fn show_cluster(
    axum::extract::State(st): axum::extract::State<AppState>,
    axum::Extension(t): axum::Extension<Tenant>,
) -> Response {
    let Some(engine) = st.engine.as_ref() else {
        return ApiError(EgError::unavailable("this server runs no data plane")).into_response();
    };
    match engine.cluster_view(&t.project_id).await {
        Ok(v) => util::ok(v),
        Err(e) => {
            tracing::error!(error = %e, "reading the cluster view failed");
            ApiError(EgError::unavailable(
                "the cluster view is unavailable: see the server log",
            ))
            .into_response()
        }
    }
}

/// The document, generated once per process.
static OPENAPI: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| openapi::document(&operations()).to_string());

/// The OpenAPI document as JSON text (also printed by `openeg openapi`).
pub fn openapi_document() -> &'static str {
    OPENAPI.as_str()
}

/// `GET /openeg/v1/openapi.json`: no tenant data, so no authentication.
async fn serve_openapi() -> Response {
    let mut r = (axum::http::StatusCode::OK, OPENAPI.as_str()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(error::JSON_UTF8),
    );
    r
}

/// `GET /metrics`: process-wide counters, no tenant data, so no authentication.
async fn prometheus(axum::extract::State(st): axum::extract::State<AppState>) -> Response {
    let body = st
        .engine
        .as_ref()
        .map(|e| e.metrics.render())
        .unwrap_or_default();
    let mut r = (axum::http::StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

async fn no_route() -> ApiError {
    ApiError(EgError::no_route())
}

fn request_id(node: &str) -> String {
    format!(
        "{}-{}-{}",
        uuid::Uuid::new_v4().simple(),
        util::now_ms(),
        node
    )
}

/// Serves until `shutdown` resolves; in-flight requests finish first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    st: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Responses are small and written at once: don't let Nagle hold them back.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, tower::make::Shared::new(service(st)))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The whole application as one service: the outer layer, then the router.
pub fn service(
    st: AppState,
) -> impl tower::Service<
    Request,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl std::future::Future<Output = Result<Response, std::convert::Infallible>> + Send,
> + Clone
       + Send
       + 'static {
    let node: std::sync::Arc<str> = st.cfg.node_name.clone().into();
    let max_body = st.cfg.max_body_bytes;
    let routed = router(st);
    tower::service_fn(move |req: Request| {
        let routed = routed.clone();
        let node = node.clone();
        async move { Ok(outer_service(node, max_body, req, routed).await) }
    })
}

/// Request id (task-local for error bodies, header on every response) around routing.
async fn outer_service(
    node: std::sync::Arc<str>,
    max_body: usize,
    req: Request,
    routed: Router,
) -> Response {
    let id = request_id(&node);
    let mut resp = REQUEST_ID
        .scope(id.clone(), async move {
            match pre_route(req, max_body) {
                Ok(req) => match routed.oneshot(req).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                },
                Err(e) => e.into_response(),
            }
        })
        .await;
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_eg_error(&resp) {
        // An extractor (axum's) refused a body over the limit with its own plain-text 413;
        // size errors are the gateway's, in EG's shape with the request id.
        resp = REQUEST_ID
            .scope(id.clone(), async {
                ApiError(EgError::too_large()).into_response()
            })
            .await;
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// Whether a response is one of ours ([`ApiError`] renders this content type).
fn is_eg_error(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == error::JSON_UTF8.as_bytes())
}

/// Size limits and trailing-slash normalization, before routing.
fn pre_route(mut req: Request, max_body: usize) -> Result<Request, ApiError> {
    if req.uri().to_string().len() > MAX_URI_BYTES {
        return Err(ApiError(EgError::uri_too_large()));
    }
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Err(ApiError(EgError::headers_too_large()));
    }
    let too_big = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > max_body);
    if too_big {
        return Err(ApiError(EgError::too_large()));
    }
    let path = req.uri().path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        let pq = match req.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_string(),
        };
        if let Ok(uri) = pq.parse::<Uri>() {
            *req.uri_mut() = uri;
        }
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A real server (hyper, outer layer, router) on a loopback port.
    async fn running() -> std::net::SocketAddr {
        let store = std::sync::Arc::new(openeg_store::SqliteStore::open_in_memory().await.unwrap());
        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let st = AppState::new(
            store,
            openeg_store::secrets::SecretBox::from_key_base64(&key).unwrap(),
            ServerConfig::default(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, st, std::future::pending()));
        addr
    }

    /// Sends a POST with `len` body bytes (chunked without Content-Length, or with it) while
    /// reading the answer; returns status, X-Request-Id and the JSON body.
    async fn post(
        addr: std::net::SocketAddr,
        path: &str,
        len: usize,
        chunked: bool,
    ) -> (u16, String, serde_json::Value) {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut rd, mut wr) = stream.into_split();
        let framing = if chunked {
            "Transfer-Encoding: chunked".to_string()
        } else {
            format!("Content-Length: {len}")
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
        );
        let writer = tokio::spawn(async move {
            wr.write_all(head.as_bytes()).await?;
            let chunk = vec![b' '; 64 * 1024];
            let mut left = len;
            while left > 0 {
                let n = left.min(chunk.len());
                if chunked {
                    wr.write_all(format!("{n:x}\r\n").as_bytes()).await?;
                }
                wr.write_all(&chunk[..n]).await?;
                if chunked {
                    wr.write_all(b"\r\n").await?;
                }
                left -= n;
            }
            if chunked {
                wr.write_all(b"0\r\n\r\n").await?;
            }
            Ok::<_, std::io::Error>(wr)
        });
        let mut buf = Vec::new();
        let mut tmp = vec![0u8; 64 * 1024];
        let (status, id, body) = loop {
            let n = rd.read(&mut tmp).await.unwrap();
            assert!(n > 0, "connection closed before a full answer: {buf:?}");
            buf.extend_from_slice(&tmp[..n]);
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let header = |name: &str| {
                head.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_string))
            };
            let cl: usize = header("content-length").unwrap().parse().unwrap();
            if buf.len() < end + 4 + cl {
                continue;
            }
            let status: u16 = head[9..12].parse().unwrap();
            let body: serde_json::Value =
                serde_json::from_slice(&buf[end + 4..end + 4 + cl]).unwrap();
            break (status, header("x-request-id").unwrap(), body);
        };
        writer.abort();
        (status, id, body)
    }

    #[tokio::test]
    async fn every_body_over_the_limit_gets_the_eg_error_with_the_request_id() {
        let addr = running().await;
        let max = ServerConfig::default().max_body_bytes;
        for chunked in [false, true] {
            // Over axum's own 2 MiB default, under the server's limit: the handler decides.
            let (status, _, body) = post(addr, "/v3/auth/tokens", 3 << 20, chunked).await;
            assert_eq!(status, 400, "chunked={chunked}: {body}");
            assert_eq!(body["error_code"], "EG.00513000");
            // Over the server's limit, on a public and on a signed route.
            for path in ["/v3/auth/tokens", "/v1/p1/channels"] {
                let (status, id, body) = post(addr, path, max + 1, chunked).await;
                assert_eq!(status, 413, "{path} chunked={chunked}: {body}");
                assert_eq!(body["error_code"], "APIGW.0201");
                assert_eq!(body["request_id"], id.as_str());
                assert!(!id.is_empty());
            }
        }
    }
}
