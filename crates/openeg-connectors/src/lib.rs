//! Connectors: where events leave OpenEG and where they come in. Each sink kind is one module
//! under [`sinks`] with its configuration type and its build from a typed target spec next to
//! it, behind the small [`Sink`] trait (Vector's model); [`sinks::build`] dispatches a spec to
//! its module. Sources are the [`sources::Source`] trait and its registry.
//!
//! A sink sends one already-transformed payload and classifies the result as success,
//! retryable failure or permanent failure (`docs/limits.md`); retry scheduling and traces are
//! the engine's business, not the sink's.

pub mod backoff;
pub mod sinks;
pub mod sources;

use bytes::Bytes;
use std::time::Duration;

/// One message for a sink: the transform output plus what some sinks need besides the body.
#[derive(Debug, Clone, Default)]
pub struct Message {
    pub payload: Bytes,
    /// Kafka/RocketMQ record key.
    pub key: Option<String>,
    /// SMN subject.
    pub subject: Option<String>,
}

/// The result of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered; `code` is the HTTP status or broker acknowledgement text.
    Delivered { code: String },
    /// Failed, worth retrying; `retry_after` is the peer's hint, if it gave a usable one.
    Retry {
        code: String,
        detail: String,
        retry_after: Option<Duration>,
    },
    /// Failed, retrying unchanged cannot help.
    GiveUp { code: String, detail: String },
}

impl Outcome {
    /// The response code recorded in traces (`""` for network failures).
    pub fn code(&self) -> &str {
        match self {
            Outcome::Delivered { code }
            | Outcome::Retry { code, .. }
            | Outcome::GiveUp { code, .. } => code,
        }
    }
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Delivered { .. })
    }
}

/// A delivery target.
#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    async fn send(&self, msg: &Message) -> Outcome;
}
