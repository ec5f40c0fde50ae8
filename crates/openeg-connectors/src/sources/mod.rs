//! Event sources: where events enter OpenEG from outside (a broker's queue or topic), behind
//! the small [`Source`] trait, the counterpart of [`crate::Sink`].
//!
//! A source hands out [`Batch`]es of records and is told to acknowledge one upstream only
//! once OpenEG holds it durably. That commit rule is in the types: [`Source::ack`] takes an
//! [`Ack`], and the only way to get one is [`Batch::append_durably`], which returns it after
//! the [`DurableLog`] answered that every record of the batch is durable. A crash between the
//! append and the ack re-reads the batch from upstream: at-least-once, never lost.
//!
//! Source kinds are registered in [`REGISTRY`] (one line per kind, one module each under
//! `sources/`); [`build`] makes a source from a resource's spec or says why it cannot. Kinds
//! not registered are [`BuildError::Unsupported`].

pub mod kafka;
pub mod rabbitmq;
pub mod rocketmq;

use bytes::Bytes;

/// One record read from upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceRecord {
    /// What is appended to OpenEG. For sources feeding a channel (custom sources), a
    /// CloudEvent as JSON text: the source module maps a broker message to an event.
    pub payload: Bytes,
    /// The upstream record key, if it has one (Kafka/RocketMQ).
    pub key: Option<String>,
    /// Where upstream the record is, for sources that can tell (Kafka, RocketMQ): an OBS
    /// stream sink names its objects after it.
    pub position: Option<Position>,
    /// The upstream record as it was, for a source read to be copied rather than turned into
    /// an event (an event-router job's Kafka source); `None` otherwise.
    pub raw: Option<Box<RawRecord>>,
}

/// A Kafka record as read, for copying it unchanged: `None` and empty differ (a tombstone
/// has no value, and a copy must have none either).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawRecord {
    pub topic: String,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// In the record's order; a header may have no value.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// The record's timestamp (create or log-append time), if it has one.
    pub timestamp_ms: Option<i64>,
}

/// A record's place upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    /// The Kafka partition number, or the RocketMQ `{broker}-{queue id}`.
    pub partition: String,
    /// The record's offset in it.
    pub offset: i64,
}

/// Names a batch to the source that made it; the source maps it to its upstream position
/// (delivery tags, partition offsets) when the batch is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchToken(pub u64);

/// Records read from upstream and not acknowledged yet.
#[derive(Debug)]
pub struct Batch {
    token: BatchToken,
    records: Vec<SourceRecord>,
}

impl Batch {
    pub fn new(token: BatchToken, records: Vec<SourceRecord>) -> Self {
        Batch { token, records }
    }

    pub fn token(&self) -> BatchToken {
        self.token
    }

    pub fn records(&self) -> &[SourceRecord] {
        &self.records
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Appends the batch to `log` and, once the log says it is durable, returns the [`Ack`]
    /// that lets the source acknowledge it upstream. On an error there is no `Ack`: the batch
    /// stays unacknowledged upstream and is read again.
    pub async fn append_durably(self, log: &dyn DurableLog) -> Result<Ack, AppendError> {
        log.append(&self.records).await?;
        Ok(Ack { token: self.token })
    }
}

/// Proof that a batch is durable in OpenEG: only [`Batch::append_durably`] makes one, so a
/// source cannot be acknowledged for records OpenEG does not hold.
#[derive(Debug)]
#[must_use = "an Ack not passed to Source::ack leaves the batch unacknowledged upstream"]
pub struct Ack {
    token: BatchToken,
}

impl Ack {
    /// The batch this acknowledges.
    pub fn token(&self) -> BatchToken {
        self.token
    }
}

/// Why a durable append failed; nothing of the batch may be acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AppendError(pub String);

/// OpenEG's side of the commit: where a source's batches become durable.
#[async_trait::async_trait]
pub trait DurableLog: Send + Sync {
    /// Appends the records; `Ok` only once every one of them is durable (or deliberately
    /// rejected, e.g. not an event, and reported by the implementation).
    async fn append(&self, records: &[SourceRecord]) -> Result<(), AppendError>;
}

/// A source's own view of its connection, for status and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// Connected badly or not at all; `reason` never holds secrets.
    Unhealthy {
        reason: String,
    },
}

/// A failure reading from or acknowledging to upstream. The runner restarts the source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// Where events come from.
#[async_trait::async_trait]
pub trait Source: Send {
    /// Connects upstream and starts consuming; the runner reports the source running only
    /// once this returned `Ok`. A source that connects lazily in [`Source::next_batch`] may
    /// keep this default.
    async fn connect(&mut self) -> Result<(), SourceError> {
        Ok(())
    }

    /// Waits for the next batch of 1 to `max` records. Dropping the future loses nothing:
    /// records not acknowledged are read again (after a restart at the latest).
    async fn next_batch(&mut self, max: usize) -> Result<Batch, SourceError>;

    /// Acknowledges upstream the batch `ack` was made for.
    async fn ack(&mut self, ack: Ack) -> Result<(), SourceError>;

    fn health(&self) -> Health;

    /// Batches that may be handed out before the first of them is acknowledged, with their
    /// acknowledgements arriving in any order. The default, 1, suits a source that commits a
    /// position covering every batch before it; a source keeping a watermark per partition
    /// (one batch out per partition) may allow more.
    fn concurrent_batches(&self) -> usize {
        1
    }
}

/// What a source is built from: its kind and its broker settings, secrets in clear (they
/// are revealed only to build the source; `Debug` shows the kind alone).
#[derive(Clone)]
pub struct SourceSpec {
    /// A custom source's `type` (`RABBITMQ`, `ROCKETMQ`) or an event stream's source `name`
    /// (`HC.Kafka`, `HC.DMS_ROCKETMQ`, ...).
    pub kind: String,
    pub detail: serde_json::Value,
}

impl std::fmt::Debug for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceSpec")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// What a source may need besides its spec.
#[derive(Debug, Clone, Default)]
pub struct BuildContext {
    /// The resource (custom source or event stream) the source reads for: a stable name for
    /// consumer groups and client ids.
    pub resource_id: String,
    /// This node's name.
    pub node_name: String,
    /// The resource's `name`: the CloudEvents `source` of the events a custom source reads.
    pub resource_name: String,
    /// How long a partial batch may wait for more records (an event stream's
    /// `batch_window.interval`); zero: hand out what is there.
    pub batch_interval: std::time::Duration,
    /// Where the source keeps its consumer lag, if it can tell it (an event stream's
    /// figures): records upstream after its committed position.
    pub lag: Option<LagGauge>,
    /// Where to start reading, per partition, overriding the group's committed offset (an
    /// event-router job resumes from its own stored positions); empty for everyone else.
    pub start_offsets: std::collections::HashMap<i32, i64>,
}

/// A source's consumer lag in records; [`LAG_UNKNOWN`] until the source knows it.
pub type LagGauge = std::sync::Arc<std::sync::atomic::AtomicI64>;
/// A [`LagGauge`] before the source reported.
pub const LAG_UNKNOWN: i64 = -1;

/// Why no source could be built. Building does no I/O: connecting is [`Source::connect`]
/// (or the source's first [`Source::next_batch`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("{kind} sources are not supported by this build")]
    Unsupported { kind: String },
    #[error("invalid {kind} source settings: {reason}")]
    Invalid { kind: String, reason: String },
}

/// Makes a source of one kind.
pub type BuildFn = fn(&SourceSpec, &BuildContext) -> Result<Box<dyn Source>, BuildError>;

/// The source kinds this build can run: `(kind, build function)`, one line per kind.
pub const REGISTRY: &[(&str, BuildFn)] = &[
    (rabbitmq::KIND, rabbitmq::build),
    (rocketmq::KIND, rocketmq::build),
    (kafka::KIND, kafka::build),
    (rocketmq::STREAM_KINDS[0], rocketmq::build_stream),
    (rocketmq::STREAM_KINDS[1], rocketmq::build_stream),
    (rocketmq::STREAM_KINDS[2], rocketmq::build_stream),
];

/// Whether this build has a source of `kind`.
pub fn is_supported(kind: &str) -> bool {
    REGISTRY.iter().any(|(k, _)| *k == kind)
}

/// Builds the source a spec describes.
pub fn build(spec: &SourceSpec, ctx: &BuildContext) -> Result<Box<dyn Source>, BuildError> {
    match REGISTRY.iter().find(|(k, _)| *k == spec.kind) {
        Some((_, f)) => f(spec, ctx),
        None => Err(BuildError::Unsupported {
            kind: spec.kind.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// Test double: a source replaying fixed batches and recording what it was acked for.
    struct ScriptedSource {
        batches: VecDeque<Vec<&'static str>>,
        next_token: u64,
        acked: Vec<BatchToken>,
    }

    #[async_trait::async_trait]
    impl Source for ScriptedSource {
        async fn next_batch(&mut self, max: usize) -> Result<Batch, SourceError> {
            let texts = self
                .batches
                .pop_front()
                .ok_or_else(|| SourceError("drained".into()))?;
            self.next_token += 1;
            let records = texts
                .into_iter()
                .take(max)
                .map(|t| SourceRecord {
                    payload: Bytes::from_static(t.as_bytes()),
                    ..SourceRecord::default()
                })
                .collect();
            Ok(Batch::new(BatchToken(self.next_token), records))
        }
        async fn ack(&mut self, ack: Ack) -> Result<(), SourceError> {
            self.acked.push(ack.token());
            Ok(())
        }
        fn health(&self) -> Health {
            Health::Healthy
        }
    }

    /// Test double: an in-memory log that fails while `fail` is set.
    #[derive(Default)]
    struct MemoryLog {
        held: Mutex<Vec<Bytes>>,
        fail: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl DurableLog for MemoryLog {
        async fn append(&self, records: &[SourceRecord]) -> Result<(), AppendError> {
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(AppendError("disk full".into()));
            }
            let mut held = self
                .held
                .lock()
                .map_err(|_| AppendError("poisoned".into()))?;
            held.extend(records.iter().map(|r| r.payload.clone()));
            Ok(())
        }
    }

    #[tokio::test]
    async fn only_durable_batches_are_acked() {
        let mut src = ScriptedSource {
            batches: VecDeque::from(vec![vec!["a", "b"], vec!["c"]]),
            next_token: 0,
            acked: Vec::new(),
        };
        let log = MemoryLog::default();
        let b = src.next_batch(10).await.unwrap();
        assert_eq!((b.len(), b.token()), (2, BatchToken(1)));
        let ack = b.append_durably(&log).await.unwrap();
        src.ack(ack).await.unwrap();

        log.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        let b = src.next_batch(10).await.unwrap();
        assert_eq!(
            b.append_durably(&log).await.unwrap_err(),
            AppendError("disk full".into())
        );
        // The failed batch got no Ack, so the source was never told to acknowledge it.
        assert_eq!(src.acked, vec![BatchToken(1)]);
        assert_eq!(log.held.lock().unwrap().len(), 2);
        assert_eq!(src.health(), Health::Healthy);
    }

    #[test]
    fn unregistered_kinds_are_unsupported() {
        for kind in ["RABBITMQ", "ROCKETMQ", "HC.Kafka", "HC.DMS_ROCKETMQ"] {
            assert!(is_supported(kind));
        }
        for kind in ["KAFKA", "HC.Other"] {
            assert!(!is_supported(kind));
            let spec = SourceSpec {
                kind: kind.into(),
                detail: serde_json::json!({"password": "pw-secret"}),
            };
            let err = build(&spec, &BuildContext::default()).err().unwrap();
            assert_eq!(
                err,
                BuildError::Unsupported {
                    kind: kind.to_string()
                }
            );
            assert_eq!(
                err.to_string(),
                format!("{kind} sources are not supported by this build")
            );
            // Secrets in the spec never reach Debug output (logs).
            assert!(!format!("{spec:?}").contains("pw-secret"));
        }
    }
}
