//! Small HTTP helpers shared by the resource handlers: query parsing, path extraction with EG
//! errors, JSON bodies, replies, ids and timestamps.

use crate::error::{ApiError, ApiResult, JSON_UTF8};
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use openeg_api::validate::{self, Paging, SortField};
use openeg_api::EgError;
use openeg_store::{ListQuery, SortKey};
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};

/// Decoded query parameters in arrival order (repeated keys kept).
#[derive(Debug, Default, Clone)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        Query(
            raw.unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (decode(k), decode(v)),
                    None => (decode(p), String::new()),
                })
                .collect(),
        )
    }

    /// First value of `key`; an empty value counts as absent.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, comma-separated values split.
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .flat_map(|(_, v)| v.split(',').map(str::to_string).collect::<Vec<_>>())
            .filter(|v| !v.is_empty())
            .collect()
    }

    pub fn paging(&self) -> ApiResult<Paging> {
        Ok(validate::paging(
            self.get("offset"),
            self.get("limit"),
            self.get("sort"),
        )?)
    }

    /// A value restricted to an enum.
    pub fn one_of(&self, key: &str, allowed: &[&str]) -> ApiResult<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if allowed.contains(&v) => Ok(Some(v.to_string())),
            Some(_) => {
                Err(EgError::param(format!("{key} must be one of {}", allowed.join(", "))).into())
            }
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Query::parse(parts.uri.query()))
    }
}

/// Path parameters by name, percent-decoded: the `{name}` segments of the route template of
/// the operation being served (`/v1/{project_id}/channels/{channel_id}` →
/// `p.get("channel_id")`).
#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// The value of path parameter `name`. Reading a name the route template does not have is
    /// a programming error: it panics in debug builds (the test walking the operation table
    /// drives every route's handler) and reads as `""` otherwise.
    pub fn get(&self, name: &str) -> &str {
        #[cfg(test)]
        tests::READS.with(|r| r.borrow_mut().push(name.to_string()));
        match self.0.iter().find(|(k, _)| k == name) {
            Some((_, v)) => v,
            None => {
                debug_assert!(false, "no path parameter {{{name}}} in this route");
                ""
            }
        }
    }

    /// Every parameter as (name, value), in route order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<Vec<(String, String)>>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(Params(v)),
            Err(_) => Err(EgError::param("invalid path parameter").into()),
        }
    }
}

/// Parses a request body as JSON; an empty body is `{}`-less: it is an error.
pub fn json_body(bytes: &[u8]) -> ApiResult<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(EgError::param("request body is required").into());
    }
    serde_json::from_slice(bytes).map_err(|e| {
        EgError::param(format!(
            "request body is not valid JSON ({})",
            e.classify_str()
        ))
        .into()
    })
}

trait ClassifyStr {
    fn classify_str(&self) -> &'static str;
}
impl ClassifyStr for serde_json::Error {
    fn classify_str(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "data error",
            serde_json::error::Category::Eof => "unexpected end",
        }
    }
}

/// 200 with a JSON body.
pub fn ok(v: Value) -> Response {
    json_reply(v.to_string().into_bytes())
}

/// 200 with a JSON body already serialized.
pub fn json_reply(body: Vec<u8>) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
    r
}

/// 204 without a body.
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// `{"total","size","items"}`.
pub fn list_reply(total: u64, items: Vec<Value>) -> Response {
    ok(json!({"total": total, "size": items.len(), "items": items}))
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A UUID-shaped id derived from a seed, for built-in catalogue entries whose ids must be
/// stable across restarts and nodes.
pub fn stable_id(seed: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = hex::encode(Sha256::digest(seed.as_bytes()));
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// RFC 3339 UTC with second precision and `Z`.
pub fn fmt_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A store query from paging plus the common name filters.
pub fn list_query(q: &Query, paging: &Paging) -> ListQuery {
    ListQuery {
        name: q.get("name").map(str::to_string),
        fuzzy_name: q.get("fuzzy_name").map(str::to_string),
        sort: match paging.sort {
            SortField::CreatedTime => SortKey::CreatedAt,
            SortField::UpdatedTime => SortKey::UpdatedAt,
            SortField::Name => SortKey::Name,
        },
        descending: paging.descending,
        offset: paging.offset,
        limit: Some(paging.limit),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// Names read through [`Params::get`] on this thread, for the route walk.
        pub(super) static READS: std::cell::RefCell<Vec<String>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }

    #[test]
    fn query_parsing() {
        let q = Query::parse(Some("a=1&b=x%20y&a=2&t=A,B&e=&plus=a+b"));
        assert_eq!(q.get("a"), Some("1"));
        assert_eq!(q.get("b"), Some("x y"));
        assert_eq!(q.get("e"), None);
        assert_eq!(q.get("plus"), Some("a+b"));
        assert_eq!(q.all("t"), vec!["A", "B"]);
        assert_eq!(q.all("a"), vec!["1", "2"]);
    }

    #[test]
    fn stable_ids_are_stable_and_uuid_shaped() {
        let a = stable_id("HC.OBS");
        assert_eq!(a, stable_id("HC.OBS"));
        assert_ne!(a, stable_id("HC.SMN"));
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }

    #[test]
    fn time_format() {
        assert_eq!(fmt_time(1_704_164_645_123), "2024-01-02T03:04:05Z");
    }

    /// Every `{name}` of every route template reads back through [`Params`] by that name,
    /// percent-decoded, and nothing else besides. Then every tenant operation's handler runs
    /// once with its parameters filled in and an empty body: it must read each of its path
    /// parameters (handlers read them before anything can fail), and reading a name its route
    /// lacks fails here (`Params::get` panics on it in debug builds).
    #[tokio::test]
    async fn every_route_parameter_is_readable() {
        use crate::openapi::{path_names, Access, Verb};
        use crate::testing::{app, call};
        use axum::body::Body;
        use axum::http::Request;
        use tower::ServiceExt;

        async fn echo(p: Params) -> axum::Json<Vec<(String, String)>> {
            axum::Json(p.iter().map(|(k, v)| (k.into(), v.into())).collect())
        }
        let fill = |path: &str, value: &dyn Fn(&str) -> String| {
            path_names(path).iter().fold(path.to_string(), |u, n| {
                u.replace(&format!("{{{n}}}"), &value(n))
            })
        };

        let ops = crate::operations();
        for op in ops.iter().filter(|op| !path_names(op.path).is_empty()) {
            let uri = fill(op.path, &|n| format!("v%20{n}%3A"));
            let r = axum::Router::new().route(op.path, axum::routing::any(echo));
            let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
            let resp = r.oneshot(req).await.unwrap();
            assert_eq!(resp.status(), 200, "{} {}", op.id, op.path);
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            let got: Vec<(String, String)> = serde_json::from_slice(&bytes).unwrap();
            let want: Vec<(String, String)> = path_names(op.path)
                .iter()
                .map(|n| (n.to_string(), format!("v {n}:")))
                .collect();
            assert_eq!(got, want, "{} {}", op.id, op.path);
        }

        // Served without extracting `Params`: the bucket name is not looked up.
        const NO_PARAMS: &[&str] = &["Refurbishobs"];
        let (r, _) = app(crate::ServerConfig::default()).await;
        for op in ops.iter().filter(|op| op.access == Access::Tenant) {
            let uri = fill(op.path, &|n| {
                if n == "project_id" { "{p}" } else { "1" }.to_string()
            });
            let body = matches!(op.verb, Verb::Post | Verb::Put).then(|| json!({}));
            READS.with(|r| r.borrow_mut().clear());
            let verb = op.verb.as_str().to_uppercase();
            let (status, v) = call(&r, &verb, &uri, body).await;
            assert!(
                status != 405 && v.is_object(),
                "{} {}: {status} {v}",
                op.id,
                op.path
            );
            if NO_PARAMS.contains(&op.id) {
                continue;
            }
            let read = READS.with(|r| r.borrow().clone());
            for n in path_names(op.path)
                .into_iter()
                .filter(|n| *n != "project_id")
            {
                assert!(
                    read.iter().any(|r| r == n),
                    "{} {}: {{{n}}} not read",
                    op.id,
                    op.path
                );
            }
        }
    }

    /// A path parameter that does not decode to UTF-8 is the EG parameter error.
    #[tokio::test]
    async fn undecodable_path_parameter() {
        use crate::testing::{app, call, code};
        let (r, _) = app(crate::ServerConfig::default()).await;
        for path in [
            "/v1/{p}/channels/%FF",
            "/v1/{p}/subscriptions/s/targets/%C3%28",
        ] {
            let (status, v) = call(&r, "GET", path, None).await;
            assert_eq!(status, 400, "{path}: {v}");
            assert_eq!(code(&v), "EG.00513000", "{path}: {v}");
            assert_eq!(v["error_msg"], "Parameter error: invalid path parameter");
        }
    }

    #[test]
    fn bodies() {
        assert!(json_body(b"").is_err());
        assert!(json_body(b"{").is_err());
        assert_eq!(json_body(b"{\"a\":1}").unwrap()["a"], 1);
    }
}
