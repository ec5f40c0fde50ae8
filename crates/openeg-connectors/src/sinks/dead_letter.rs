//! Dead-letter queues: where a target's events go once the target has failed for good (retries
//! exhausted, or a failure that is not retried). A target's `dead_letter_queue` names a KAFKA
//! connection and a topic; each failed (event, target) becomes one Kafka record there:
//!
//! * value = the original, untransformed CloudEvent JSON (as published);
//! * key = the event `id`;
//! * headers `eg-subscription-id`, `eg-target-id` (as stored), `eg-attempts` (decimal count of
//!   attempts made), `eg-last-status` (the last HTTP status or error code), `eg-failed-time`
//!   (RFC 3339 UTC).
//!
//! The producer is the one the Kafka target uses for the same connection settings (shared).
//! Retrying a failed publish is the engine's job (durably, for the dead-letter window).
//!
//! While the queue's broker is down, a publish costs the producer's whole message timeout
//! (25 s). So after a publish failed for a reason that may pass, the sink is *tripped*: one
//! publish at a time goes to the broker (a probe) and the others fail at once, counted as
//! failed publishes and retried on their backoff; an answer from the broker closes it again
//! (a success, or a refusal of that one record). An outage then shows in every pending
//! record's trace within one timeout, and the dead-letter slots are not all held waiting.

use super::kafka::{self, shared_producer};
use super::BuildError;
use crate::Outcome;
use openeg_api::target_spec::DeadLetterQueue;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a publish may wait for room in the producer's local queue.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// The facts a dead-letter record carries about the failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterRecord<'a> {
    pub event_id: &'a str,
    /// The original event's JSON text.
    pub event: &'a [u8],
    pub subscription_id: &'a str,
    pub target_id: &'a str,
    pub attempts: u32,
    pub last_status: &'a str,
    /// Epoch milliseconds of the failure.
    pub failed_at_ms: i64,
}

impl DeadLetterRecord<'_> {
    /// The record's headers, in a fixed order.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("eg-subscription-id", self.subscription_id.to_string()),
            ("eg-target-id", self.target_id.to_string()),
            ("eg-attempts", self.attempts.to_string()),
            ("eg-last-status", self.last_status.to_string()),
            ("eg-failed-time", rfc3339_utc(self.failed_at_ms)),
        ]
    }
}

/// `2024-01-02T03:04:05.678Z`.
fn rfc3339_utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `code` of a publish that was not tried because the sink is tripped (module docs).
pub const NOT_TRIED: &str = "DeadLetterQueueUnavailable";

/// A target's dead-letter topic, ready to publish to.
pub struct DeadLetterSink {
    producer: Arc<FutureProducer>,
    topic: String,
    /// The last publish failed (module docs).
    tripped: AtomicBool,
    /// A probe publish is under way while tripped.
    probing: AtomicBool,
}

/// Ends a probe when dropped (also when the publish future is dropped mid-way).
struct Probe<'a>(&'a AtomicBool);

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl std::fmt::Debug for DeadLetterSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterSink")
            .field("topic", &self.topic)
            .finish()
    }
}

/// The dead-letter sink of `dlq` through its connection document (resolved by the caller,
/// secrets revealed; `None` when it does not exist).
pub fn build(
    dlq: &DeadLetterQueue,
    connection: Option<&Value>,
) -> Result<DeadLetterSink, BuildError> {
    let conn =
        connection.ok_or_else(|| BuildError::MissingConnection(dlq.connection_id.clone()))?;
    let id = conn.get("id").and_then(Value::as_str).unwrap_or("?");
    let settings = kafka::settings(conn)
        .map_err(|e| BuildError::Invalid(format!("dead-letter connection {id}: {e}")))?;
    let producer = shared_producer(&settings)
        .map_err(|e| BuildError::Invalid(format!("dead-letter connection {id}: {e}")))?;
    Ok(DeadLetterSink::new(producer, dlq.topic.clone()))
}

impl DeadLetterSink {
    fn new(producer: Arc<FutureProducer>, topic: String) -> DeadLetterSink {
        DeadLetterSink {
            producer,
            topic,
            tripped: AtomicBool::new(false),
            probing: AtomicBool::new(false),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Publishes one record; `Delivered` once the broker acknowledged it (per the
    /// connection's `acks`). While tripped, only one publish at a time is tried; the others
    /// return `Retry` with code [`NOT_TRIED`] at once.
    pub async fn publish(&self, r: &DeadLetterRecord<'_>) -> Outcome {
        let _probe = if self.tripped.load(Ordering::Acquire) {
            if self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                return Outcome::Retry {
                    code: NOT_TRIED.into(),
                    detail: format!(
                        "topic {}: not tried: the last publish to this dead-letter queue failed \
                         and another one is checking the broker",
                        self.topic
                    ),
                    retry_after: None,
                };
            }
            Some(Probe(&self.probing))
        } else {
            None
        };
        let outcome = self.send(r).await;
        // Only a failure that may pass (the broker down or busy) trips it; an answer that
        // refuses this one record (too large, say) shows the broker is there.
        self.tripped
            .store(matches!(outcome, Outcome::Retry { .. }), Ordering::Release);
        outcome
    }

    async fn send(&self, r: &DeadLetterRecord<'_>) -> Outcome {
        let mut headers = OwnedHeaders::new();
        for (key, value) in r.headers() {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_str()),
            });
        }
        let record = FutureRecord::<str, [u8]>::to(&self.topic)
            .payload(r.event)
            .key(r.event_id)
            .headers(headers);
        match self
            .producer
            .send(record, Timeout::After(QUEUE_TIMEOUT))
            .await
        {
            Ok(_) => Outcome::Delivered { code: "200".into() },
            Err((e, _)) => kafka::classify(&e, &self.topic),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn headers_follow_the_contract() {
        let r = DeadLetterRecord {
            event_id: "e1",
            event: b"{}",
            subscription_id: "s1",
            target_id: "t1",
            attempts: 17,
            last_status: "503",
            failed_at_ms: 1_704_164_645_678,
        };
        assert_eq!(
            r.headers(),
            vec![
                ("eg-subscription-id", "s1".to_string()),
                ("eg-target-id", "t1".to_string()),
                ("eg-attempts", "17".to_string()),
                ("eg-last-status", "503".to_string()),
                ("eg-failed-time", "2024-01-02T03:04:05.678Z".to_string()),
            ]
        );
    }

    fn record() -> DeadLetterRecord<'static> {
        DeadLetterRecord {
            event_id: "e1",
            event: b"{}",
            subscription_id: "s1",
            target_id: "t1",
            attempts: 1,
            last_status: "400",
            failed_at_ms: 0,
        }
    }

    /// A broker that is down (nothing listens on port 1), with a 400 ms message timeout.
    fn down_sink() -> DeadLetterSink {
        let p: FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("message.timeout.ms", "400")
            .create()
            .unwrap();
        DeadLetterSink::new(Arc::new(p), "dlq".into())
    }

    #[tokio::test]
    async fn a_failed_publish_trips_the_sink_to_one_probe_at_a_time() {
        let sink = down_sink();
        // Not tripped: tried (and timed out by the producer).
        let first = sink.publish(&record()).await;
        assert!(
            matches!(&first, Outcome::Retry { code, .. } if code != NOT_TRIED),
            "{first:?}"
        );
        // Tripped: one probe goes to the producer; publishes meanwhile fail at once.
        let r = record();
        let probe = sink.publish(&r);
        tokio::pin!(probe);
        let meanwhile = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            sink.publish(&record()).await
        };
        let (probe_outcome, o) = tokio::join!(&mut probe, meanwhile);
        assert!(
            matches!(&o, Outcome::Retry { code, .. } if code == NOT_TRIED),
            "{o:?}"
        );
        assert!(
            matches!(&probe_outcome, Outcome::Retry { code, .. } if code != NOT_TRIED),
            "{probe_outcome:?}"
        );
        // The probe ended: the next publish is the next probe.
        let next = sink.publish(&record()).await;
        assert!(
            matches!(&next, Outcome::Retry { code, .. } if code != NOT_TRIED),
            "{next:?}"
        );
    }

    #[test]
    fn builds_from_a_kafka_connection_only() {
        let dlq = DeadLetterQueue {
            queue_type: "KAFKA".into(),
            instance_id: None,
            connection_id: "c1".into(),
            topic: "dlq".into(),
        };
        let c = json!({"id": "c1", "type": "KAFKA", "kafka_detail": {"addr": "127.0.0.1:9"}});
        let s = build(&dlq, Some(&c)).unwrap();
        assert_eq!(s.topic(), "dlq");
        assert_eq!(
            build(&dlq, None).unwrap_err(),
            BuildError::MissingConnection("c1".into())
        );
        let r = json!({"id": "c2", "type": "ROCKETMQ", "rocketmq_detail": {"addr": "a:1"}});
        let e = build(&dlq, Some(&r)).unwrap_err().to_string();
        assert!(e.starts_with("dead-letter connection c2:"), "{e}");
    }
}
