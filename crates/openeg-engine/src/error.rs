//! What can go wrong in the data plane, by what failed.

use crate::envelope::EnvelopeError;
use openeg_log::LogError;
use openeg_store::StoreError;

/// An engine operation failed. The message says what was being done and why it failed; the
/// variant says which part failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The metadata or delivery store refused or failed.
    #[error("{context}: {error}")]
    Store { context: String, error: StoreError },
    /// A channel log could not be read or written.
    #[error("{context}: {error}")]
    Log { context: String, error: LogError },
    /// A channel log holds a record that is not an event envelope.
    #[error("log record {offset} of {topic}: {error}")]
    UnreadableRecord {
        topic: String,
        offset: u64,
        error: EnvelopeError,
    },
    /// The recorder task, which writes traces and outcomes, is gone (shutting down).
    #[error("the delivery recorder stopped")]
    RecorderStopped,
    /// The HTTP client of the sinks could not be built.
    #[error("{0}")]
    HttpClient(String),
}

impl EngineError {
    /// Wraps a store error with what was being done.
    pub(crate) fn store(context: impl Into<String>) -> impl FnOnce(StoreError) -> EngineError {
        let context = context.into();
        move |error| EngineError::Store { context, error }
    }

    /// Wraps a log error with what was being done.
    pub(crate) fn log(context: impl Into<String>) -> impl FnOnce(LogError) -> EngineError {
        let context = context.into();
        move |error| EngineError::Log { context, error }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_was_done() {
        let e = EngineError::store("loading subscriptions")(StoreError::Backend("down".into()));
        assert_eq!(e.to_string(), "loading subscriptions: storage error: down");
        let e = EngineError::log("reading the channel log")(LogError::Failed("fsync".into()));
        assert_eq!(
            e.to_string(),
            "reading the channel log: log failed, recovery pending: fsync"
        );
        assert_eq!(
            EngineError::RecorderStopped.to_string(),
            "the delivery recorder stopped"
        );
    }
}
