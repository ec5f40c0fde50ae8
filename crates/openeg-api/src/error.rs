//! The one error type of the EG wire contract (`docs/errors.md`).
//!
//! An [`EgError`] is an HTTP status, an EG `error_code` and an `error_msg` made of the code's
//! fixed message plus an optional detail. Renderers add `request_id`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgError {
    pub status: u16,
    pub code: &'static str,
    pub msg: String,
}

impl fmt::Display for EgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.msg)
    }
}

impl std::error::Error for EgError {}

fn with_detail(base: &str, detail: impl fmt::Display) -> String {
    let d = detail.to_string();
    if d.is_empty() {
        base.to_string()
    } else {
        format!("{base}: {d}")
    }
}

impl EgError {
    pub fn new(status: u16, code: &'static str, msg: impl Into<String>) -> Self {
        EgError {
            status,
            code,
            msg: msg.into(),
        }
    }

    // ---- 400 ----
    /// `EG.00513000` generic parameter error.
    pub fn param(detail: impl fmt::Display) -> Self {
        Self::new(400, "EG.00513000", with_detail("Parameter error", detail))
    }
    /// `EG.00513001` duplicate name.
    pub fn duplicate(detail: impl fmt::Display) -> Self {
        Self::new(
            400,
            "EG.00513001",
            with_detail("resource already exists", detail),
        )
    }
    /// `EG.00513002` subscription in a transitional state.
    pub fn invalid_subscription_status(detail: impl fmt::Display) -> Self {
        Self::new(
            400,
            "EG.00513002",
            with_detail("invalid subscription status", detail),
        )
    }
    /// `EG.00513003` invalid target address / target details.
    pub fn target(detail: impl fmt::Display) -> Self {
        Self::new(
            400,
            "EG.00513003",
            with_detail("invalid target address", detail),
        )
    }
    /// `EG.00513004` invalid filter rule.
    pub fn filter(detail: impl fmt::Display) -> Self {
        Self::new(
            400,
            "EG.00513004",
            with_detail("invalid filter parameters", detail),
        )
    }
    /// `EG.00513005` channel unusable.
    pub fn channel(detail: impl fmt::Display) -> Self {
        Self::new(400, "EG.00513005", with_detail("invalid channel", detail))
    }
    /// `EG.00513006` endpoint for this VPC exists.
    pub fn vpc_conflict(detail: impl fmt::Display) -> Self {
        Self::new(400, "EG.00513006", with_detail("vpc CONFLICT", detail))
    }

    // ---- 401 / 403 ----
    /// `APIGW.0301` any authentication failure (401).
    pub fn unauthenticated(reason: impl fmt::Display) -> Self {
        Self::new(
            401,
            "APIGW.0301",
            with_detail("Incorrect IAM authentication information", reason),
        )
    }
    /// `EG.00512000` no permission (wrong project).
    pub fn forbidden(detail: impl fmt::Display) -> Self {
        Self::new(
            403,
            "EG.00512000",
            with_detail("no permission to operate", detail),
        )
    }
    /// `EG.00514003` quota exceeded (403).
    pub fn quota(detail: impl fmt::Display) -> Self {
        Self::new(
            403,
            "EG.00514003",
            with_detail("resource quota unavailable", detail),
        )
    }
    /// `EG.00514004` system-owned resource may not be modified (403).
    pub fn not_modifiable(detail: impl fmt::Display) -> Self {
        Self::new(
            403,
            "EG.00514004",
            with_detail("resource not modified", detail),
        )
    }

    // ---- 404 / 409 ----
    /// `APIGW.0101` no such API (404).
    pub fn no_route() -> Self {
        Self::new(
            404,
            "APIGW.0101",
            "The API does not exist or has not been published in the environment",
        )
    }
    /// `EG.00514001` resource not found (404).
    pub fn not_found(detail: impl fmt::Display) -> Self {
        Self::new(
            404,
            "EG.00514001",
            with_detail("resource not found", detail),
        )
    }
    /// `EG.00514002` resource still bound (409).
    pub fn conflict(detail: impl fmt::Display) -> Self {
        Self::new(409, "EG.00514002", with_detail("resource conflict", detail))
    }
    /// `EG.00514005` connection still being created (409).
    pub fn cannot_delete(detail: impl fmt::Display) -> Self {
        Self::new(
            409,
            "EG.00514005",
            with_detail("resource can not be deleted", detail),
        )
    }

    // ---- gateway size limits ----
    pub fn too_large() -> Self {
        Self::new(413, "APIGW.0201", "Request entity too large")
    }
    pub fn headers_too_large() -> Self {
        Self::new(431, "APIGW.0201", "Request header too large")
    }
    pub fn uri_too_large() -> Self {
        Self::new(414, "APIGW.0201", "Request URI too large")
    }

    // ---- 5xx ----
    /// `EG.00511000`; the detail is for logs only and never sent.
    pub fn internal() -> Self {
        Self::new(500, "EG.00511000", "internal server error")
    }
    /// `EG.00515001` resource missing at publish time.
    pub fn publish_missing(detail: impl fmt::Display) -> Self {
        Self::new(
            500,
            "EG.00515001",
            with_detail("resource not found", detail),
        )
    }
    /// `EG.00511001` service unavailable.
    pub fn unavailable(detail: impl fmt::Display) -> Self {
        Self::new(
            503,
            "EG.00511001",
            with_detail("service unavailable", detail),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_is_appended_after_colon() {
        let e = EgError::param("limit must be between 1 and 1000");
        assert_eq!(e.status, 400);
        assert_eq!(e.code, "EG.00513000");
        assert_eq!(e.msg, "Parameter error: limit must be between 1 and 1000");
        assert_eq!(EgError::param("").msg, "Parameter error");
    }

    #[test]
    fn two_resource_not_found_codes_stay_distinct() {
        assert_eq!(EgError::not_found("x").status, 404);
        assert_eq!(EgError::publish_missing("x").status, 500);
        assert_ne!(
            EgError::not_found("x").code,
            EgError::publish_missing("x").code
        );
    }
}
