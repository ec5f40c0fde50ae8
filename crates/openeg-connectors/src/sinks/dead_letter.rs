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

use super::kafka::{self, shared_producer};
use super::BuildError;
use crate::Outcome;
use openeg_api::target_spec::DeadLetterQueue;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use serde_json::Value;
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

/// A target's dead-letter topic, ready to publish to.
pub struct DeadLetterSink {
    producer: Arc<FutureProducer>,
    topic: String,
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
    Ok(DeadLetterSink {
        producer,
        topic: dlq.topic.clone(),
    })
}

impl DeadLetterSink {
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Publishes one record; `Delivered` once the broker acknowledged it (per the
    /// connection's `acks`).
    pub async fn publish(&self, r: &DeadLetterRecord<'_>) -> Outcome {
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
