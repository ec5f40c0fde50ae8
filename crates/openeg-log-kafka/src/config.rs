//! [`KafkaLogConfig`]: where the cluster is and how topics are made.

use std::time::Duration;

/// librdkafka properties [`crate::KafkaLog`] sets itself because the guarantees rest on
/// them; [`KafkaLogConfig::properties`] may not override them.
pub(crate) const RESERVED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "acks",
    "request.required.acks",
    "enable.idempotence",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "group.id",
    "enable.auto.commit",
    "enable.partition.eof",
    "auto.offset.reset",
    "isolation.level",
];

/// Configuration of [`crate::KafkaLog`].
#[derive(Clone)]
#[non_exhaustive]
pub struct KafkaLogConfig {
    /// `host:port` of one or more brokers, comma-separated.
    pub bootstrap_servers: String,
    /// Put before every Kafka topic and consumer-group name, so OpenEG's topics and groups
    /// are recognisable on a shared cluster. Kafka's topic characters only.
    pub topic_prefix: String,
    /// Partitions of the topics the log creates.
    pub partitions: u32,
    /// Replication factor of the topics the log creates; `-1` takes the broker's
    /// `default.replication.factor`.
    pub replication_factor: i32,
    /// Extra librdkafka properties for every client (security settings: `security.protocol`,
    /// `sasl.*`, `ssl.*`). Values are never logged or put into error messages; the keys in
    /// the log's own guarantees (acks, idempotence, offsets) cannot be overridden.
    pub properties: Vec<(String, String)>,
    /// Largest accepted `append` batch (sum of the payloads).
    pub max_batch_bytes: usize,
    /// Largest accepted record (payload); Kafka's default `message.max.bytes` is about 1 MB.
    pub max_record_bytes: usize,
    /// Bound on every metadata, watermark, admin and offset request, and on `connect`.
    pub operation_timeout: Duration,
    /// How long librdkafka may try to deliver one record (`message.timeout.ms`), retries
    /// included; an `append` fails after it.
    pub delivery_timeout: Duration,
    /// How often a [`openeg_log::EventLog::subscribe`] watch asks the cluster for the end
    /// offset, to see other writers' appends (its own appends update it at once).
    pub watch_interval: Duration,
    /// Readers (one consumer per topic partition) kept between reads; the least recently
    /// used one is closed beyond this.
    pub max_cached_readers: usize,
}

impl KafkaLogConfig {
    /// Defaults for a cluster at `bootstrap_servers`.
    pub fn new(bootstrap_servers: impl Into<String>) -> KafkaLogConfig {
        KafkaLogConfig {
            bootstrap_servers: bootstrap_servers.into(),
            topic_prefix: "openeg.".to_owned(),
            partitions: 3,
            replication_factor: 1,
            properties: Vec::new(),
            max_batch_bytes: 16 << 20,
            max_record_bytes: 1_000_000,
            operation_timeout: Duration::from_secs(10),
            delivery_timeout: Duration::from_secs(30),
            watch_interval: Duration::from_millis(100),
            max_cached_readers: 64,
        }
    }
}

impl std::fmt::Debug for KafkaLogConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Property values may be passwords: show the keys only.
        let keys: Vec<&str> = self.properties.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("KafkaLogConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("topic_prefix", &self.topic_prefix)
            .field("partitions", &self.partitions)
            .field("replication_factor", &self.replication_factor)
            .field("properties", &keys)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("max_record_bytes", &self.max_record_bytes)
            .field("operation_timeout", &self.operation_timeout)
            .field("delivery_timeout", &self.delivery_timeout)
            .field("watch_interval", &self.watch_interval)
            .field("max_cached_readers", &self.max_cached_readers)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = KafkaLogConfig::new("a:9092,b:9092");
        assert_eq!(c.bootstrap_servers, "a:9092,b:9092");
        assert_eq!(c.topic_prefix, "openeg.");
        assert_eq!(c.partitions, 3);
        assert_eq!(c.replication_factor, 1);
        assert!(c.properties.is_empty());
        assert_eq!(c.max_batch_bytes, 16 << 20);
        assert_eq!(c.max_record_bytes, 1_000_000);
        assert_eq!(c.operation_timeout, Duration::from_secs(10));
        assert_eq!(c.delivery_timeout, Duration::from_secs(30));
        assert_eq!(c.watch_interval, Duration::from_millis(100));
        assert_eq!(c.max_cached_readers, 64);
    }

    #[test]
    fn debug_hides_property_values() {
        let mut c = KafkaLogConfig::new("a:1");
        c.properties
            .push(("sasl.password".into(), "hunter2-secret".into()));
        let shown = format!("{c:?}");
        assert!(shown.contains("sasl.password"), "{shown}");
        assert!(!shown.contains("hunter2-secret"), "{shown}");
    }
}
