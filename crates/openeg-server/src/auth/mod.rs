//! Authentication and tenancy: the middleware in front of every `/v1/{project_id}/...` route,
//! and OpenEG's own token issuer (`POST /v3/auth/tokens`, `docs/signing.md`).
//!
//! Order of checks (`docs/errors.md`): body size (413) → credential (401) → project binding (403).
//! Only the access key and the failure reason are ever logged.

pub mod signing;

use crate::error::{ApiError, ApiResult, JSON_UTF8};
use crate::projects;
use crate::state::{AppState, Credential, Tenant};
use crate::util::{fmt_time, now_ms};
use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use openeg_api::EgError;
use percent_encoding::percent_decode_str;
use rand::RngCore;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const TOKEN_TTL_MS: i64 = 24 * 3600 * 1000;
const MAX_TOKEN_LEN: usize = 16384;
const LOGIN_FAILURES_PER_MINUTE: u32 = 10;

/// Middleware for project-scoped routes (`/v1/{project_id}/...`).
pub async fn require_tenant(State(st): State<AppState>, req: Request, next: Next) -> Response {
    match authenticate(&st, req, true).await {
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Middleware for OpenEG's own signed routes without a project in the path
/// (`/openeg/v1/...`): the caller acts in its credential's project.
pub async fn require_credential(State(st): State<AppState>, req: Request, next: Next) -> Response {
    match authenticate(&st, req, false).await {
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

fn path_project(path: &str) -> Option<String> {
    let mut it = path.split('/');
    it.next();
    it.next(); // "v1"
    it.next()
        .map(|p| percent_decode_str(p).decode_utf8_lossy().into_owned())
}

/// Longest project id OpenEG accepts.
pub const PROJECT_ID_MAX: usize = 64;
/// The project id rule as a regular expression (for the OpenAPI document).
pub const PROJECT_ID_PATTERN: &str = "^[A-Za-z0-9_-]+$";

fn valid_project_id(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= PROJECT_ID_MAX
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

async fn read_body(st: &AppState, body: Body) -> ApiResult<Bytes> {
    to_bytes(body, st.cfg.max_body_bytes)
        .await
        .map_err(|_| ApiError(EgError::too_large()))
}

async fn authenticate(st: &AppState, req: Request, path_has_project: bool) -> ApiResult<Request> {
    let (mut parts, body) = req.into_parts();
    let bytes = read_body(st, body).await?;
    let (project, access_key) = if let Some(authz) = parts.headers.get(header::AUTHORIZATION) {
        let authz = authz
            .to_str()
            .map_err(|_| EgError::unauthenticated("malformed authorization header"))?;
        let cred = verify_signature(st, &parts, authz, &bytes)?;
        (cred.project_id.clone(), cred.access_key.clone())
    } else if let Some(tok) = parts.headers.get("x-auth-token") {
        verify_token(st, tok.as_bytes()).await?
    } else {
        return Err(EgError::unauthenticated("missing credential").into());
    };

    let path_project = if path_has_project {
        path_project(parts.uri.path()).unwrap_or_default()
    } else {
        project.clone()
    };
    // A credential acts in its own project only. The one exception is publishing into
    // another project's channel (cross-account PutEvents): it passes here, and PutEvents
    // checks the channel's `cross_account` switch and policy before accepting anything.
    let foreign_project = if path_project == project {
        None
    } else if is_put_events(&parts) && valid_project_id(&path_project) {
        Some(path_project.clone())
    } else {
        return Err(EgError::forbidden("the project does not belong to the credential").into());
    };
    if let Some(h) = parts.headers.get("x-project-id") {
        if h.as_bytes() != project.as_bytes() && h.as_bytes() != path_project.as_bytes() {
            return Err(EgError::forbidden("X-Project-Id does not match the credential").into());
        }
    }
    if !valid_project_id(&project) {
        return Err(EgError::param("invalid project_id").into());
    }
    projects::ensure(st, &project).await?;
    parts.extensions.insert(Tenant {
        project_id: project,
        access_key,
        foreign_project,
    });
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// The PutEvents route, the only one a credential may call on another project's path.
fn is_put_events(parts: &axum::http::request::Parts) -> bool {
    // The route already matched (this runs as a route layer), so the shape decides:
    // /v1/{project_id}/channels/{channel_id}/events.
    let seg: Vec<&str> = parts.uri.path().split('/').collect();
    parts.method == axum::http::Method::POST
        && matches!(seg.as_slice(), ["", "v1", _, "channels", _, "events"])
}

fn verify_signature<'a>(
    st: &'a AppState,
    parts: &axum::http::request::Parts,
    authz: &str,
    body: &[u8],
) -> ApiResult<&'a Credential> {
    let parsed =
        signing::parse_authorization(authz).map_err(|e| EgError::unauthenticated(e.reason()))?;
    let Some(cred) = st.creds.get(&parsed.access) else {
        tracing::info!(access_key = %parsed.access, "authentication failed: unknown access key");
        // Same text as a wrong signature: do not reveal whether the AK exists.
        return Err(EgError::unauthenticated(signing::SigError::Mismatch.reason()).into());
    };
    let req = signing::SignedRequest {
        method: parts.method.as_str(),
        raw_path: parts.uri.path(),
        raw_query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body,
    };
    let now = chrono::Utc::now().timestamp();
    signing::verify(&req, &parsed, &cred.secret_key, now, st.cfg.clock_skew_secs).map_err(|e| {
        tracing::info!(access_key = %parsed.access, reason = e.reason(), "authentication failed");
        ApiError(EgError::unauthenticated(e.reason()))
    })?;
    Ok(cred)
}

fn token_hash(token: &[u8]) -> String {
    hex::encode(Sha256::digest(token))
}

async fn verify_token(st: &AppState, token: &[u8]) -> ApiResult<(String, String)> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(EgError::unauthenticated("invalid token").into());
    }
    let hash = token_hash(token);
    let found = st.store.get_token(&hash).await?;
    match found {
        Some((project, ak, expires)) if expires > now_ms() && st.creds.contains_key(&ak) => {
            Ok((project, ak))
        }
        _ => Err(EgError::unauthenticated("invalid or expired token").into()),
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

fn login_blocked(st: &AppState, ak: &str) -> bool {
    st.failed_logins
        .blocked(ak, LOGIN_FAILURES_PER_MINUTE, now_ms())
}

fn login_failed(st: &AppState, ak: &str) {
    st.failed_logins.record(ak, now_ms());
}

/// `POST /v3/auth/tokens`: password body with AK as user name and SK as password.
pub async fn issue_token(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let _ = headers;
    match issue_token_inner(&st, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn issue_token_inner(st: &AppState, body: &[u8]) -> ApiResult<Response> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| EgError::param("request body is not valid JSON"))?;
    let ident = v.pointer("/auth/identity").unwrap_or(&Value::Null);
    let methods_ok = ident
        .get("methods")
        .and_then(Value::as_array)
        .is_some_and(|m| m.iter().any(|x| x == "password"));
    let user = ident.pointer("/password/user").unwrap_or(&Value::Null);
    let (Some(ak), Some(sk)) = (str_at(user, &["name"]), str_at(user, &["password"])) else {
        return Err(
            EgError::param("auth.identity.password.user.name and password are required").into(),
        );
    };
    if !methods_ok {
        return Err(EgError::param("auth.identity.methods must contain password").into());
    }
    if login_blocked(st, ak) {
        return Err(EgError::unauthenticated("too many failed attempts, retry later").into());
    }
    let cred = st
        .creds
        .get(ak)
        .filter(|c| bool::from(c.secret_key.as_bytes().ct_eq(sk.as_bytes())));
    let Some(cred) = cred else {
        login_failed(st, ak);
        tracing::info!(access_key = %ak, "token request refused");
        return Err(EgError::unauthenticated("invalid credential").into());
    };
    let domain = user.get("domain");
    if let Some(d) = domain {
        let id = str_at(d, &["id"]);
        let name = str_at(d, &["name"]);
        if id.is_some_and(|x| x != cred.domain_id) || name.is_some_and(|x| x != cred.domain_id) {
            login_failed(st, ak);
            return Err(EgError::unauthenticated("invalid credential").into());
        }
    }
    if let Some(p) = v.pointer("/auth/scope/project") {
        let id = str_at(p, &["id"]);
        let name = str_at(p, &["name"]);
        if id.is_some_and(|x| x != cred.project_id) || name.is_some_and(|x| x != cred.project_id) {
            return Err(
                EgError::unauthenticated("the credential does not own that project").into(),
            );
        }
    }
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let now = now_ms();
    let expires = now + TOKEN_TTL_MS;
    st.store
        .put_token(
            &token_hash(token.as_bytes()),
            &cred.project_id,
            &cred.access_key,
            expires,
        )
        .await?;
    let body = json!({"token": {
        "expires_at": fmt_time(expires),
        "issued_at": fmt_time(now),
        "project": {"id": cred.project_id},
        "methods": ["password"],
    }});
    let mut resp = (StatusCode::CREATED, body.to_string()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
    if let Ok(h) = HeaderValue::from_str(&token) {
        resp.headers_mut().insert("x-subject-token", h);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_from_path() {
        assert_eq!(path_project("/v1/abc/channels").as_deref(), Some("abc"));
        assert_eq!(path_project("/v1/a%2Db/x").as_deref(), Some("a-b"));
        assert!(valid_project_id("0123456789abcdef0123456789abcdef"));
        assert!(!valid_project_id("a/b"));
        assert!(!valid_project_id(""));
        assert!(!valid_project_id(&"a".repeat(65)));
    }
}
