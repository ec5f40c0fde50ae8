//! The broker side of Kafka-to-Kafka replication: one cluster endpoint of an event-router job
//! ([`Endpoint`]), the producer that writes copies ([`MirrorProducer`]) and the admin calls a
//! job needs ([`Admin`]: topics and their partition counts, creating target topics,
//! watermarks, a group's committed offsets).
//!
//! * An endpoint is a job's `source_kafka` / `sink_kafka` (`address`, `authenticate_mode`,
//!   `sasl_mechanism`, `user_name`, `password`), mapped onto the one SASL/TLS mapping of
//!   KAFKA connections ([`crate::sinks::kafka::settings`]). The password never reaches a log
//!   line or an error (rdkafka's errors name properties, not values).
//! * Copies are produced with `acks=all` and an idempotent producer: a retried send cannot
//!   reorder or duplicate records inside the producer, so the records of one source partition
//!   land in the order they were sent.
//! * Blocking librdkafka calls (metadata, watermarks, committed offsets) run on the blocking
//!   pool.

use crate::sinks::kafka::{self as kafka_sink, ProducerSettings};
use crate::Outcome;
use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Time allowed for one metadata, watermark or offset request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Compression codecs a job may ask for (`compress_alg`) that this build can write.
pub const COMPRESSION: &[&str] = &["none", "gzip", "snappy", "lz4", "zstd"];
/// Producer-only properties of the shared settings, left out of consumers and admin clients.
const PRODUCER_ONLY: &[&str] = &[
    "acks",
    "message.timeout.ms",
    "topic.metadata.propagation.max.ms",
];

/// One cluster of a job: librdkafka settings (the password among them: `Debug` masks it).
#[derive(Debug, Clone)]
pub struct Endpoint {
    settings: ProducerSettings,
}

impl Endpoint {
    /// The endpoint of a job's `source_kafka` / `sink_kafka` object (secrets revealed).
    pub fn of(ep: &Value) -> Result<Endpoint, String> {
        let text = |k: &str| {
            ep.get(k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let address = text("address").ok_or(
            "address (the cluster's bootstrap servers) is required to run a job in OpenEG: \
             an instance_id alone does not say where the brokers are",
        )?;
        let detail = json!({
            "addr": address,
            "security_protocol": text("authenticate_mode").unwrap_or("PLAINTEXT"),
            "sasl_mechanism": text("sasl_mechanism"),
            "user_name": text("user_name"),
            "password": ep.get("password").and_then(Value::as_str),
        });
        let settings = kafka_sink::settings(&json!({ "kafka_detail": detail }))
            .map_err(|e| e.replace("kafka_detail.", "").replace("addr", "address"))?;
        Ok(Endpoint { settings })
    }

    /// The bootstrap servers, sorted: two endpoints with the same set are the same cluster.
    pub fn servers(&self) -> String {
        let mut s: Vec<&str> = self
            .settings
            .get("bootstrap.servers")
            .unwrap_or_default()
            .split(',')
            .collect();
        s.sort_unstable();
        s.dedup();
        s.join(",")
    }

    /// The settings as a consumer's `source_kafka` detail for
    /// [`crate::sources::kafka::build_mirror`]: the same members, `topic` and `group` added.
    pub fn consumer_detail(ep: &Value, topic: &str, group: &str, seek_to: &str) -> Value {
        let text = |k: &str| ep.get(k).and_then(Value::as_str);
        json!({
            "addr": text("address"),
            "topic": topic,
            "group": group,
            "seek_to": seek_to,
            "security_protocol": text("authenticate_mode").filter(|s| !s.is_empty()),
            "sasl_mechanism": text("sasl_mechanism").filter(|s| !s.is_empty()),
            "user_name": text("user_name").filter(|s| !s.is_empty()),
            "password": text("password"),
        })
    }

    fn config(&self, producer: bool) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        for (k, v) in &self.settings.0 {
            if producer || !PRODUCER_ONLY.contains(k) {
                cfg.set(*k, v);
            }
        }
        cfg
    }
}

/// One record to write: a source record's copy.
#[derive(Debug, Clone, Default)]
pub struct Copy {
    pub partition: i32,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    pub timestamp_ms: Option<i64>,
}

/// Writes copies into a target cluster: `acks=all`, idempotent.
pub struct MirrorProducer {
    producer: Arc<FutureProducer>,
}

impl MirrorProducer {
    /// A producer to `ep` compressing with `compress_alg` (one of [`COMPRESSION`]).
    pub fn new(ep: &Endpoint, compress_alg: &str) -> Result<MirrorProducer, String> {
        if !COMPRESSION.contains(&compress_alg) {
            return Err(format!(
                "compress_alg {compress_alg} is not supported by this OpenEG build (it writes {})",
                COMPRESSION.join(", ")
            ));
        }
        let mut cfg = ep.config(true);
        cfg.set("acks", "all")
            .set("enable.idempotence", "true")
            .set("compression.type", compress_alg)
            .set("linger.ms", "5")
            // The sink broker decides what is too large, not this client's 1 MB default: a
            // record the source took should be copied if the sink takes it.
            .set("message.max.bytes", "1000000000");
        let producer: FutureProducer = cfg
            .create()
            .map_err(|e| format!("creating the Kafka producer: {e}"))?;
        Ok(MirrorProducer {
            producer: Arc::new(producer),
        })
    }

    /// Writes `copies` into `topic`, enqueued in their order, and waits for every answer: per
    /// copy its target offset, or the outcome of its failure (the error's Kafka name).
    pub async fn send_all(&self, topic: &str, copies: &[Copy]) -> Vec<Result<i64, Outcome>> {
        let mut waiting: Vec<Result<DeliveryFuture, Outcome>> = Vec::with_capacity(copies.len());
        for c in copies {
            // After a copy that could not be handed over, the rest wait: sending them would
            // put them before it, and they would be sent again with it.
            if waiting.last().is_some_and(Result::is_err) {
                waiting.push(Err(Outcome::Retry {
                    code: "NotSent".into(),
                    detail: "an earlier copy of the batch failed".into(),
                    retry_after: None,
                }));
                continue;
            }
            waiting.push(self.enqueue(topic, c).await);
        }
        let mut out = Vec::with_capacity(copies.len());
        for w in waiting {
            out.push(match w {
                Ok(f) => match f.await {
                    Ok(Ok(d)) => Ok(d.offset),
                    Ok(Err((e, _))) => Err(kafka_sink::classify(&e, topic)),
                    Err(_) => Err(Outcome::Retry {
                        code: "KafkaError".into(),
                        detail: "the producer went away".into(),
                        retry_after: None,
                    }),
                },
                Err(o) => Err(o),
            });
        }
        out
    }

    /// Hands one copy to the producer, waiting while its queue is full.
    async fn enqueue(&self, topic: &str, c: &Copy) -> Result<DeliveryFuture, Outcome> {
        loop {
            let mut headers = OwnedHeaders::new_with_capacity(c.headers.len());
            for (k, v) in &c.headers {
                headers = headers.insert(Header {
                    key: k.as_str(),
                    value: v.as_deref(),
                });
            }
            let mut r = FutureRecord::<[u8], [u8]>::to(topic)
                .partition(c.partition)
                .headers(headers);
            if let Some(k) = &c.key {
                r = r.key(&k[..]);
            }
            if let Some(v) = &c.value {
                r = r.payload(&v[..]);
            }
            if let Some(t) = c.timestamp_ms {
                r = r.timestamp(t);
            }
            match self.producer.send_result(r) {
                Ok(f) => return Ok(f),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(kafka_sink::classify(&e, topic)),
            }
        }
    }
}

/// A topic of a cluster and its partition count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: i32,
}

/// Admin calls on one cluster.
#[derive(Clone)]
pub struct Admin {
    admin: Arc<AdminClient<DefaultClientContext>>,
    endpoint: Endpoint,
    /// One member-less consumer per group whose offsets are read or written, kept: a client
    /// per call would connect (and authenticate) again every round.
    groups: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<BaseConsumer>>>>,
}

impl Admin {
    /// An admin client of `ep`, checked with a metadata request.
    pub async fn connect(ep: &Endpoint) -> Result<Admin, String> {
        let admin: AdminClient<DefaultClientContext> = ep
            .config(false)
            .create()
            .map_err(|e| format!("creating the Kafka admin client: {e}"))?;
        let a = Admin {
            admin: Arc::new(admin),
            endpoint: ep.clone(),
            groups: Default::default(),
        };
        a.topics().await?;
        Ok(a)
    }

    /// Every topic of the cluster with its partition count, sorted by name.
    pub async fn topics(&self) -> Result<Vec<TopicInfo>, String> {
        let admin = self.admin.clone();
        blocking(move || {
            let md = admin
                .inner()
                .fetch_metadata(None, REQUEST_TIMEOUT)
                .map_err(|e| format!("the cluster did not answer a metadata request: {e}"))?;
            let mut out: Vec<TopicInfo> = md
                .topics()
                .iter()
                .filter(|t| t.error().is_none() && !t.partitions().is_empty())
                .map(|t| TopicInfo {
                    name: t.name().to_string(),
                    partitions: t.partitions().len() as i32,
                })
                .collect();
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await
    }

    /// The partition count of `topic`, `None` when the cluster does not have it.
    pub async fn partitions(&self, topic: &str) -> Result<Option<i32>, String> {
        let admin = self.admin.clone();
        let topic = topic.to_string();
        blocking(move || {
            let md = admin
                .inner()
                .fetch_metadata(Some(&topic), REQUEST_TIMEOUT)
                .map_err(|e| format!("the cluster did not answer a metadata request: {e}"))?;
            Ok(md
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
                .map(|t| t.partitions().len() as i32))
        })
        .await
    }

    /// Makes sure `topic` exists: creates it with `partitions` and `replicas` when it does not
    /// (an existing topic is left as it is). Returns its partition count.
    pub async fn ensure_topic(
        &self,
        topic: &str,
        partitions: i32,
        replicas: i32,
    ) -> Result<i32, String> {
        if let Some(n) = self.partitions(topic).await? {
            return Ok(n);
        }
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replicas));
        let opts = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
        let results = self
            .admin
            .create_topics([&new], &opts)
            .await
            .map_err(|e| format!("creating topic {topic}: {e}"))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, RDKafkaErrorCode::InvalidReplicationFactor)) => {
                    return Err(format!(
                        "creating topic {topic}: replica_cnt {replicas} is more than the sink \
                         cluster's brokers"
                    ))
                }
                Err((_, code)) => return Err(format!("creating topic {topic}: {code}")),
            }
        }
        // The new topic reaches every broker's metadata a moment later.
        for _ in 0..50 {
            if let Some(n) = self.partitions(topic).await? {
                return Ok(n);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!(
            "topic {topic} was created but does not show in the metadata"
        ))
    }

    /// The low and high watermarks of `partitions` of `topic`, in their order.
    pub async fn watermarks(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<Vec<(i32, i64, i64)>, String> {
        let admin = self.admin.clone();
        let topic = topic.to_string();
        let partitions = partitions.to_vec();
        blocking(move || {
            partitions
                .iter()
                .map(|&p| {
                    admin
                        .inner()
                        .fetch_watermarks(&topic, p, REQUEST_TIMEOUT)
                        .map(|(lo, hi)| (p, lo, hi))
                        .map_err(|e| format!("reading the watermarks of {topic}/{p}: {e}"))
                })
                .collect()
        })
        .await
    }

    /// Whether a record a consumer can read lies in `from..to` of `topic`/`partition`
    /// (`read_committed`, as the job reads). A partition whose last offsets are transaction
    /// markers (or aborted records) has none there: its `to - from` is not left to copy. An
    /// open transaction in the range counts as records (they may still be committed).
    pub async fn records_between(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        to: i64,
    ) -> Result<bool, String> {
        if from >= to {
            return Ok(false);
        }
        let mut cfg = self.endpoint.config(false);
        cfg.set("group.id", "openeg-probe")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed");
        let topic = topic.to_string();
        blocking(move || {
            let c: BaseConsumer = cfg
                .create()
                .map_err(|e| format!("creating a Kafka consumer: {e}"))?;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&topic, partition, Offset::Offset(from))
                .map_err(|e| format!("offset {from} of {topic}/{partition}: {e}"))?;
            c.assign(&tpl)
                .map_err(|e| format!("reading {topic}/{partition}: {e}"))?;
            let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
            while std::time::Instant::now() < deadline {
                match c.poll(Duration::from_millis(200)) {
                    None => {}
                    Some(Ok(m)) => return Ok(m.offset() < to),
                    Some(Err(KafkaError::PartitionEOF(_))) => {
                        // The end a read_committed consumer sees: below `to` while a
                        // transaction is open there.
                        let at = c.position().ok().and_then(|t| {
                            t.find_partition(&topic, partition)
                                .and_then(|e| match e.offset() {
                                    Offset::Offset(o) => Some(o),
                                    _ => None,
                                })
                        });
                        return Ok(at.is_none_or(|o| o < to));
                    }
                    Some(Err(e)) => return Err(format!("reading {topic}/{partition}: {e}")),
                }
            }
            Err(format!("reading {topic}/{partition}: no answer in time"))
        })
        .await
    }

    /// The offsets group `group` committed on `partitions` of `topic` (absent: none).
    pub async fn committed(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<Vec<(i32, i64)>, String> {
        let consumer = self.group_consumer(group)?;
        let topic = topic.to_string();
        let partitions = partitions.to_vec();
        blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for &p in &partitions {
                tpl.add_partition(&topic, p);
            }
            let got = consumer
                .committed_offsets(tpl, REQUEST_TIMEOUT)
                .map_err(|e| format!("reading the committed offsets of {topic}: {e}"))?;
            Ok(got
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) if o >= 0 => Some((e.partition(), o)),
                    _ => None,
                })
                .collect())
        })
        .await
    }

    /// The offsets group `group` committed on `(topic, partitions)` of several topics, in one
    /// request: `(topic, partition, offset)` (absent: none).
    pub async fn committed_many(
        &self,
        group: &str,
        topics: &[(String, Vec<i32>)],
    ) -> Result<Vec<(String, i32, i64)>, String> {
        let consumer = self.group_consumer(group)?;
        let topics = topics.to_vec();
        blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for (t, parts) in &topics {
                for &p in parts {
                    tpl.add_partition(t, p);
                }
            }
            let got = consumer
                .committed_offsets(tpl, REQUEST_TIMEOUT)
                .map_err(|e| format!("reading committed offsets: {e}"))?;
            Ok(got
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) if o >= 0 => Some((e.topic().to_string(), e.partition(), o)),
                    _ => None,
                })
                .collect())
        })
        .await
    }

    /// The kept member-less consumer of `group` (made on first use).
    fn group_consumer(&self, group: &str) -> Result<Arc<BaseConsumer>, String> {
        let mut m = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = m.get(group) {
            return Ok(c.clone());
        }
        let mut cfg = self.endpoint.config(false);
        cfg.set("group.id", group)
            .set("enable.auto.commit", "false");
        let c: BaseConsumer = cfg
            .create()
            .map_err(|e| format!("creating a Kafka consumer: {e}"))?;
        let c = Arc::new(c);
        m.insert(group.to_string(), c.clone());
        Ok(c)
    }

    /// Forgets the kept consumers of groups not in `keep` (they went away).
    pub fn keep_groups(&self, keep: &[String]) -> Vec<Arc<BaseConsumer>> {
        let mut m = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let gone: Vec<String> = m.keys().filter(|g| !keep.contains(g)).cloned().collect();
        gone.iter().filter_map(|g| m.remove(g)).collect()
    }
}

impl Admin {
    /// The consumer groups of the cluster, by name, with whether each has members now (as
    /// far as the cluster says: a state it does not report counts as none).
    ///
    /// This is the ListGroups request alone (librdkafka's ListConsumerGroups): the older
    /// listing also describes every group, and one group a broker cannot describe fails it.
    pub async fn groups(&self) -> Result<Vec<(String, bool)>, String> {
        let admin = self.admin.clone();
        let mut groups = blocking(move || list_groups(&admin)).await?;
        groups.sort();
        Ok(groups)
    }

    /// Commits `offsets` (partition, offset) of `topic` for group `group` without joining it
    /// (a member-less commit, as tools that reset offsets do).
    pub async fn commit(
        &self,
        group: &str,
        topic: &str,
        offsets: &[(i32, i64)],
    ) -> Result<(), String> {
        let consumer = self.group_consumer(group)?;
        let topic = topic.to_string();
        let group = group.to_string();
        let offsets = offsets.to_vec();
        blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for (p, o) in &offsets {
                tpl.add_partition_offset(&topic, *p, Offset::Offset(*o))
                    .map_err(|e| format!("offset {o} of {topic}/{p}: {e}"))?;
            }
            consumer
                .commit(&tpl, rdkafka::consumer::CommitMode::Sync)
                .map_err(|e| format!("committing offsets of group {group} on {topic}: {e}"))
        })
        .await
    }
}

/// ListConsumerGroups through librdkafka (rdkafka has no wrapper for it): `(group id,
/// has members)` per group. Blocking.
fn list_groups(admin: &AdminClient<DefaultClientContext>) -> Result<Vec<(String, bool)>, String> {
    use rdkafka::bindings as rd;
    use std::ffi::CStr;

    /// Destroys what librdkafka handed out, on every path.
    struct Owned {
        queue: *mut rd::rd_kafka_queue_t,
        options: *mut rd::rd_kafka_AdminOptions_t,
        event: *mut rd::rd_kafka_event_t,
    }
    impl Drop for Owned {
        fn drop(&mut self) {
            // SAFETY: each pointer is null or was returned by librdkafka's constructor for it
            // and is destroyed once, here.
            unsafe {
                if !self.event.is_null() {
                    rd::rd_kafka_event_destroy(self.event);
                }
                if !self.options.is_null() {
                    rd::rd_kafka_AdminOptions_destroy(self.options);
                }
                if !self.queue.is_null() {
                    rd::rd_kafka_queue_destroy(self.queue);
                }
            }
        }
    }

    let rk = admin.inner().native_ptr();
    let timeout_ms = REQUEST_TIMEOUT.as_millis() as i32;
    // SAFETY: `rk` is the admin client's live handle (borrowed for this call); the queue,
    // options and event are owned by `h` and outlive every pointer read from the result; the
    // strings are copied before the event is destroyed.
    unsafe {
        let mut h = Owned {
            queue: rd::rd_kafka_queue_new(rk),
            options: rd::rd_kafka_AdminOptions_new(
                rk,
                rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPS,
            ),
            event: std::ptr::null_mut(),
        };
        if h.queue.is_null() || h.options.is_null() {
            return Err("listing the consumer groups: librdkafka refused the request".into());
        }
        let mut errstr = [0 as std::os::raw::c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(
            h.options,
            timeout_ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        rd::rd_kafka_ListConsumerGroups(rk, h.options, h.queue);
        h.event = rd::rd_kafka_queue_poll(h.queue, timeout_ms.saturating_add(5_000));
        if h.event.is_null() {
            return Err("listing the consumer groups: no answer in time".into());
        }
        if rd::rd_kafka_event_error(h.event) != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        {
            let why = rd::rd_kafka_event_error_string(h.event);
            let why = if why.is_null() {
                String::new()
            } else {
                CStr::from_ptr(why).to_string_lossy().into_owned()
            };
            return Err(format!("listing the consumer groups: {why}"));
        }
        let result = rd::rd_kafka_event_ListConsumerGroups_result(h.event);
        if result.is_null() {
            return Err("listing the consumer groups: an unexpected answer".into());
        }
        let mut errors = 0usize;
        rd::rd_kafka_ListConsumerGroups_result_errors(result, &mut errors);
        if errors > 0 {
            // A partial list would count a group on a broker that did not answer as idle.
            return Err(format!(
                "listing the consumer groups: {errors} broker(s) did not answer"
            ));
        }
        let mut n = 0usize;
        let listings = rd::rd_kafka_ListConsumerGroups_result_valid(result, &mut n);
        if listings.is_null() || n == 0 {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(n);
        for l in std::slice::from_raw_parts(listings, n) {
            let id = rd::rd_kafka_ConsumerGroupListing_group_id(*l);
            if id.is_null() {
                continue;
            }
            use rd::rd_kafka_consumer_group_state_t as S;
            let busy = matches!(
                rd::rd_kafka_ConsumerGroupListing_state(*l),
                S::RD_KAFKA_CONSUMER_GROUP_STATE_STABLE
                    | S::RD_KAFKA_CONSUMER_GROUP_STATE_PREPARING_REBALANCE
                    | S::RD_KAFKA_CONSUMER_GROUP_STATE_COMPLETING_REBALANCE
            );
            out.push((CStr::from_ptr(id).to_string_lossy().into_owned(), busy));
        }
        Ok(out)
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("a blocking Kafka call ended: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_of_job_members() {
        let e = Endpoint::of(
            &json!({"address": "b:9093;a:9092", "authenticate_mode": "PLAINTEXT",
            "user_name": "", "password": null, "sasl_mechanism": ""}),
        )
        .unwrap();
        assert_eq!(e.servers(), "a:9092,b:9093");
        let s = Endpoint::of(
            &json!({"address": "a:1", "authenticate_mode": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-512", "user_name": "u", "password": "the-pw"}),
        )
        .unwrap();
        assert_eq!(s.settings.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(s.settings.get("sasl.password"), Some("the-pw"));
        assert!(!format!("{s:?}").contains("the-pw"));
        let err = Endpoint::of(&json!({"instance_id": "i"})).unwrap_err();
        assert!(err.contains("address"), "{err}");
        let err = Endpoint::of(&json!({"address": "a:1", "authenticate_mode": "SASL_SSL",
            "user_name": "u"}))
        .unwrap_err();
        assert!(err.contains("password"), "{err}");
        assert!(!err.contains("kafka_detail"), "{err}");
        let d = Endpoint::consumer_detail(
            &json!({"address": "a:1", "authenticate_mode": "",
            "password": "pw"}),
            "t",
            "g",
            "earliest",
        );
        assert_eq!(d["addr"], "a:1");
        assert_eq!(d["security_protocol"], Value::Null);
        assert_eq!(
            (d["topic"].as_str(), d["group"].as_str()),
            (Some("t"), Some("g"))
        );
    }

    #[test]
    fn unsupported_compression_is_refused() {
        let e = Endpoint::of(&json!({"address": "127.0.0.1:1"})).unwrap();
        let err = MirrorProducer::new(&e, "brotli").err().unwrap();
        assert!(err.contains("brotli"), "{err}");
        // Every codec of the reference is built in (zstd too).
        for alg in COMPRESSION {
            assert!(MirrorProducer::new(&e, alg).is_ok(), "{alg}");
        }
    }
}
