//! EventGrid filter rules (`RULES.md`) and transforms (`TRANSFORM.md`).
//!
//! STUB: the validation entry points below are the contract the control plane calls; the
//! compiled matcher and the transform engine are built behind them.

use serde_json::Value;
use std::fmt;

/// A precise validation failure: where (a JSON path into the rule) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for RuleError {}

/// Validates a filter rule (`RULES.md` §2). `require_source` is false for event streams.
pub fn validate_filter(_filter: &Value, _require_source: bool) -> Result<(), RuleError> {
    Ok(())
}

/// Where a TransForm object is used; decides which `type`s are allowed and extra checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransformUse {
    /// A delivered payload (webhook, APIGW, SMN message, Kafka value, EG channel, stream).
    Payload,
    /// A FunctionGraph payload: must render to JSON (`TRANSFORM.md` §5.1, X9).
    FunctionGraphPayload,
    /// A record/message key: `NONE` allowed, `ORIGINAL` means no key.
    Key,
    /// An SMN subject: `CONSTANT` or `VARIABLE` only.
    SmnSubject,
}

/// Validates a TransForm object `{type, value, template}` (`TRANSFORM.md` §3).
pub fn validate_transform(_transform: &Value, _usage: TransformUse) -> Result<(), RuleError> {
    Ok(())
}
