//! [`ApiError`]: the one error type handlers return; renders `{"error_code","error_msg","request_id"}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use openeg_api::EgError;
use openeg_store::StoreError;

tokio::task_local! {
    /// The current request's `X-Request-Id`, set by the outermost middleware so that every
    /// error body can carry it without threading it through handlers.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> String {
    REQUEST_ID.try_with(|id| id.clone()).unwrap_or_default()
}

#[derive(Debug)]
pub struct ApiError(pub EgError);

pub type ApiResult<T> = Result<T, ApiError>;

impl From<EgError> for ApiError {
    fn from(e: EgError) -> Self {
        ApiError(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Duplicate => ApiError(EgError::duplicate("name already exists")),
            StoreError::Quota(q) => ApiError(EgError::quota(format!("quota {q} exceeded"))),
            StoreError::Backend(msg) => {
                tracing::error!(request_id = %current_request_id(), error = %msg, "storage failure");
                ApiError(EgError::internal())
            }
        }
    }
}

pub const JSON_UTF8: &str = "application/json;charset=UTF-8";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        if e.status >= 500 {
            tracing::warn!(request_id = %current_request_id(), code = e.code, "server error answered");
        }
        let body = serde_json::json!({
            "error_code": e.code,
            "error_msg": e.msg,
            "request_id": current_request_id(),
        });
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, body.to_string()).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
        if e.status == 503 {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}
