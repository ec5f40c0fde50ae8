//! EventGrid filter rules (`docs/filter-rules.md`) and transforms (`docs/transforms.md`).
//!
//! Pure code: no I/O, no async. Modules:
//! * [`filter`] — the rule AST, its validation and a direct evaluator that explains results;
//! * [`number`] — the number model (exact `i64`, otherwise correctly rounded `f64`);
//! * [`scan`] — a selective JSON scanner that extracts only the fields rules name;
//! * [`matcher`] — all rules of a channel compiled into one immutable [`Matcher`];
//! * [`explain`] — the `rules test` report shared by the CLI and the HTTP endpoint;
//! * [`jsonpath`] and [`transform`] — transform variables, templates and rendering.

pub mod explain;
pub mod filter;
pub mod jsonpath;
pub mod matcher;
pub mod number;
pub mod scan;
pub mod transform;

use serde_json::Value;
use std::fmt;

pub use explain::test_events;
pub use filter::{parse_filter, Filter};
pub use matcher::{Matcher, MatcherBuilder, Scratch};
pub use transform::{CompiledTransform, Rendered};

/// A precise validation failure: where (a JSON path into the rule) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub path: String,
    pub message: String,
}

impl RuleError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        RuleError {
            path: path.into(),
            message: message.into(),
        }
    }
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

/// Validates a filter rule. `require_source` is false for event streams.
pub fn validate_filter(filter: &Value, require_source: bool) -> Result<(), RuleError> {
    filter::parse_filter(filter, require_source).map(|_| ())
}

/// Where a TransForm object is used; decides which `type`s are allowed and extra checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransformUse {
    /// A delivered payload (webhook, APIGW, SMN message, Kafka value, EG channel, stream).
    Payload,
    /// A FunctionGraph payload: must render to a JSON object.
    FunctionGraphPayload,
    /// A record/message key: `NONE` allowed, `ORIGINAL` means no key.
    Key,
    /// An SMN subject: `CONSTANT` or `VARIABLE` only.
    SmnSubject,
}

/// Validates a TransForm object `{type, value, template}`.
pub fn validate_transform(transform: &Value, usage: TransformUse) -> Result<(), RuleError> {
    CompiledTransform::compile(transform, usage).map(|_| ())
}
