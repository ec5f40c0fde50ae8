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

use axum::extract::Request;
use axum::http::{header, HeaderValue, Uri};
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
            .summary("OpenEG", "Liveness")
            .extension()
            .ok(s::req(
                s::obj(&[("status", s::one_of(&["ok"]))]),
                &["status"],
            )),
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
        .with_state(st)
}

async fn health() -> Response {
    util::ok(serde_json::json!({"status": "ok"}))
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
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
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
