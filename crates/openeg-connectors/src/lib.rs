//! Connectors: where events leave OpenEG and where they come in. Each sink kind is one module
//! under [`sinks`] with its configuration type and its build from a typed target spec next to
//! it, behind the small [`Sink`] trait (Vector's model); [`sinks::build`] dispatches a spec to
//! its module. Sources are the [`sources::Source`] trait and its registry.
//!
//! A sink sends one already-transformed payload and classifies the result as success,
//! retryable failure or permanent failure (`docs/limits.md`); retry scheduling and traces are
//! the engine's business, not the sink's.

// Proving rocketmq-client-rust's deeply nested futures `Send` needs more than the default 128.
#![recursion_limit = "256"]

pub mod backoff;
pub mod check;
pub mod mirror;
pub mod rocketmq;
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
    /// The original event's CloudEvents attributes, for sinks that carry them beside the
    /// payload (Kafka headers); filled only when the sink asks ([`Sink::wants_event`]).
    pub event: Option<EventAttributes>,
}

/// The context attributes of the event a message was rendered from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventAttributes {
    pub id: String,
    pub source: String,
    pub specversion: String,
    /// `type`.
    pub ty: String,
    pub subject: Option<String>,
    pub time: Option<String>,
}

impl EventAttributes {
    /// The attributes of a (validated) CloudEvent; absent text attributes are empty.
    pub fn of(event: &serde_json::Value) -> EventAttributes {
        let text = |k: &str| event.get(k).and_then(serde_json::Value::as_str);
        let req = |k: &str| text(k).unwrap_or_default().to_string();
        EventAttributes {
            id: req("id"),
            source: req("source"),
            specversion: req("specversion"),
            ty: req("type"),
            subject: text("subject").map(str::to_string),
            time: text("time").map(str::to_string),
        }
    }
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
    /// Whether messages for this sink need [`Message::event`].
    fn wants_event(&self) -> bool {
        false
    }
    /// Attempts of one target worth having in flight at once, when more than the engine's
    /// per-target default: a client that batches concurrent sends into one request (Kafka)
    /// needs them to fill its batches.
    fn max_in_flight(&self) -> Option<usize> {
        None
    }
    async fn send(&self, msg: &Message) -> Outcome;
}
