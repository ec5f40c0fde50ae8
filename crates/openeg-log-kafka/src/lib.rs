//! OpenEG's event log on a Kafka cluster: [`KafkaLog`] implements [`EventLog`] over rdkafka
//! (librdkafka), for deployments that already run Kafka and want it to hold the events
//! instead of the embedded [`openeg_log::SegmentLog`].
//!
//! # Guarantees of [`KafkaLog`]
//!
//! * **Acknowledged means replicated.** `append` produces with `acks=all` and
//!   `enable.idempotence=true` and returns `Ok` only once every record's delivery report came
//!   back without error: each record is then stored by all in-sync replicas. librdkafka's own
//!   retries do not duplicate or reorder records within a partition (idempotence).
//! * **Batches are not atomic and their offsets need not be contiguous.** Kafka gives no
//!   contiguous offsets to one client's batch: with several writers on a partition, the
//!   returned range `first..last + 1` (of the reported offsets) may include other writers'
//!   records. Each record is durable on its own once reported; if any record fails, the call
//!   fails after every delivery report of the batch is in (nothing of the call is still in
//!   flight), and the records that did succeed stay. The caller's retry may duplicate them:
//!   at-least-once, like the engine's delivery.
//! * **Empty batches** create the topic if missing and return an empty range at the end offset.
//! * **Limits.** A batch larger than `max_batch_bytes` (sum of payloads) or holding a record
//!   larger than `max_record_bytes` fails with [`LogError::BatchTooLarge`] before anything is
//!   sent.
//! * **Topics are created on first use** (`append`, `subscribe`) with the configured partitions
//!   and replication factor through the admin API; "already exists" is success, so several
//!   processes may race. Known topics and their partition counts are cached. A partition beyond
//!   the topic's count is [`LogError::UnknownPartition`].
//! * **Reads** return records with offsets `>= from` up to `max_records` and about `max_bytes`
//!   (at least one record when any is there), only what Kafka acknowledged (below the high
//!   watermark). Empty at the end offset; below the start offset or past the end:
//!   [`LogError::OffsetOutOfRange`] carrying the watermarks. An unknown topic reads as empty
//!   (start = end = 0). Each partition has a cached reader (a consumer that never joins a group,
//!   `max_cached_readers` of them, least recently used closed first) that remembers its
//!   position, so sequential reads do not seek; see `reader.rs`.
//! * **Offsets.** `start_offset` and `end_offset` are the partition's low and high watermarks
//!   (0 for an unknown topic); `partitions` comes from the cluster's metadata (the configured
//!   count for an unknown topic).
//! * **Watches.** `subscribe` creates the topic if missing and returns a watch of the end
//!   offset. This process's own appends advance it at once; other writers' appends are seen by
//!   a poll of the high watermark every `watch_interval` (100 ms by default), one poll task per
//!   watched partition, which ends when every receiver is gone (or the topic is deleted: the
//!   watch closes).
//! * **Consumer-group offsets** are Kafka's own: `commit` is a synchronous offset commit of an
//!   explicit partition by a consumer with `group.id = <prefix><group>` that never joins the
//!   group (a "simple" commit, generation -1); `committed` reads it back with an offset fetch.
//!   They live in the cluster (`__consumer_offsets`), so they survive a restart and are shared
//!   by every process using the same prefix. A commit waits at most `operation_timeout`.
//! * **Deletion.** `delete_topic` deletes the Kafka topic through the admin API (a missing
//!   topic is fine) after closing its readers, forgets its cached partition count and watches
//!   (which close), waits (at most `operation_timeout`) until the cluster's metadata no longer
//!   lists it, and then replaces the producer (its idempotence sequence numbers would not
//!   match a topic created anew under the same name). The broker drops the topic's committed
//!   offsets as it does for any deleted topic. Kafka has no fence against a racing append: an
//!   append running concurrently may create the topic anew instead of failing with
//!   [`LogError::TopicDeleted`]. Another process's producer may fail one append to a topic
//!   re-created under it (`OutOfOrderSequenceNumber`, reported as [`LogError::Backend`]); its
//!   retry succeeds once librdkafka has reset the sequence.
//! * **Errors.** librdkafka's errors that have no closer variant are [`LogError::Backend`],
//!   naming what was done and the broker's reason, never a configured property's value. Every
//!   request to the cluster is bounded (`operation_timeout`, `delivery_timeout`); blocking
//!   librdkafka calls run on Tokio's blocking pool.
//! * **No storage failures to report.** [`EventLog::failures`] is empty: the cluster is the
//!   health authority and each failed call says why.
//!
//! # Layout
//!
//! ```text
//! log topic <name>, partition p  →  Kafka topic <prefix><escaped name>, partition p
//! consumer group <g>             →  Kafka consumer group <prefix><g> (offsets only, no members)
//! readers                        →  group.id <prefix>_reader (required by librdkafka's
//!                                   `assign`; never joined, never committed to)
//! ```
//!
//! `<prefix>` is `topic_prefix` (`openeg.` by default). In `<escaped name>` the bytes
//! `[A-Za-z0-9.-]` of the name stay as they are and every other byte, `_` included, becomes
//! `_XX` (upper-case hex): the engine's `<project_id>.<channel_id>` becomes
//! `openeg.<project_id>.<channel_id>`. A Kafka name longer than 249 characters (Kafka's limit)
//! is [`LogError::InvalidName`]; see [`kafka_topic_name`]. Records are the payloads as values,
//! without key or headers.

mod config;
mod names;
mod reader;

pub use config::KafkaLogConfig;
pub use names::{kafka_topic_name, MAX_KAFKA_TOPIC_LEN};

use async_trait::async_trait;
use bytes::Bytes;
use openeg_log::{EventLog, LogError, LogRecord};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::{ClientConfig, FromClientConfig};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Lock a mutex, ignoring poisoning: every critical section leaves the data consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn backend(context: impl std::fmt::Display, e: KafkaError) -> LogError {
    LogError::Backend(format!("{context}: {e}"))
}

pub(crate) fn is_unknown_topic(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic)
    )
}

/// Low and high watermark of a partition; `None` if the topic does not exist (blocking).
pub(crate) fn watermarks(
    c: &BaseConsumer,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<Option<(u64, u64)>, LogError> {
    match c.fetch_watermarks(topic, partition, timeout) {
        Ok((low, high)) => Ok(Some((low.max(0) as u64, high.max(0) as u64))),
        Err(e) if is_unknown_topic(&e) => Ok(None),
        Err(e) => Err(backend(
            format!("reading the offsets of {topic} partition {partition}"),
            e,
        )),
    }
}

/// The topic's partition count from the cluster's metadata; `None` if it does not exist
/// (blocking).
fn metadata_partitions(
    c: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<Option<u32>, LogError> {
    let md = match c.fetch_metadata(Some(topic), timeout) {
        Ok(md) => md,
        Err(e) if is_unknown_topic(&e) => return Ok(None),
        Err(e) => return Err(backend(format!("reading the metadata of {topic}"), e)),
    };
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    if let Some(err) = t.error() {
        return match RDKafkaErrorCode::from(err) {
            RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => Ok(None),
            code => Err(LogError::Backend(format!(
                "reading the metadata of {topic}: {code}"
            ))),
        };
    }
    let n = t.partitions().len();
    Ok((n > 0).then_some(n as u32))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LogError> + Send + 'static,
) -> Result<T, LogError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LogError::Backend(format!("a blocking Kafka call failed: {e}")))?
}

fn millis(d: Duration) -> String {
    d.as_millis().max(1).to_string()
}

/// A watched partition: (Kafka topic, partition).
type WatchKey = (String, u32);

struct Inner {
    cfg: KafkaLogConfig,
    /// Replaced after a topic deletion (see `delete_topic`); appends hold the one they started
    /// with.
    producer: RwLock<Arc<FutureProducer>>,
    producer_config: ClientConfig,
    admin: AdminClient<DefaultClientContext>,
    /// Metadata and watermark queries: a consumer that never reads or joins its group.
    meta: Arc<BaseConsumer>,
    /// Settings of the readers (and, with a `group.id`, of the group clients).
    consumer_config: ClientConfig,
    /// Settings of the single-record readers.
    point_consumer_config: ClientConfig,
    /// Kafka topics known to exist → their partition count.
    topics: Mutex<HashMap<String, u32>>,
    readers: reader::Readers,
    /// (Kafka topic, partition) → the end-offset watch. The poll task holds a weak reference,
    /// so removing the entry closes the watch.
    watches: Mutex<HashMap<WatchKey, Arc<watch::Sender<u64>>>>,
    /// Kafka group id → the client that commits and fetches its offsets.
    groups: Mutex<HashMap<String, Arc<BaseConsumer>>>,
}

/// The event log on a Kafka cluster; see the crate documentation for its guarantees.
pub struct KafkaLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("cfg", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

impl KafkaLog {
    /// Build the clients and check that the cluster answers a metadata request within
    /// `operation_timeout`. Must be called inside a Tokio runtime.
    pub async fn connect(cfg: KafkaLogConfig) -> Result<KafkaLog, LogError> {
        if !names::valid_prefix(&cfg.topic_prefix) {
            return Err(LogError::InvalidName(cfg.topic_prefix.clone()));
        }
        if cfg.partitions == 0 || cfg.partitions > i32::MAX as u32 {
            return Err(LogError::Backend(format!(
                "Kafka log: partitions must be at least 1, not {}",
                cfg.partitions
            )));
        }
        if cfg.bootstrap_servers.trim().is_empty() {
            return Err(LogError::Backend(
                "Kafka log: no bootstrap servers configured".into(),
            ));
        }
        for (k, _) in &cfg.properties {
            if config::RESERVED_PROPERTIES.contains(&k.trim()) {
                return Err(LogError::Backend(format!(
                    "Kafka log: the librdkafka property {k} is set by the log itself and cannot be overridden"
                )));
            }
        }
        let mut base = ClientConfig::new();
        base.set("bootstrap.servers", cfg.bootstrap_servers.trim())
            .set("client.id", "openeg-log");
        for (k, v) in &cfg.properties {
            base.set(k.trim(), v);
        }

        let mut producer_config = base.clone();
        producer_config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", millis(cfg.delivery_timeout))
            // Every append is awaited by a PutEvents request: librdkafka's default 5 ms of
            // lingering would be added to each answer. Concurrent requests still share
            // produce requests (what is queued while one is in flight goes in the next).
            .set("linger.ms", "0");
        let mut consumer_config = base.clone();
        consumer_config
            // librdkafka refuses `assign` without a group ("Unknown group"). Readers never
            // join it (no subscription) and never commit; the group clients replace it.
            .set("group.id", format!("{}_reader", cfg.topic_prefix))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            // Reading below the start offset is an error to report, not a reason to jump.
            .set("auto.offset.reset", "error")
            .set("allow.auto.create.topics", "false")
            // librdkafka prefetches up to 64 MB per consumer by default; readers are many.
            .set("queued.max.messages.kbytes", "4096")
            .set("queued.min.messages", "1000");
        // Single-record readers jump around (retries): small fetches that come back at once,
        // no prefetch of a megabyte that the next jump throws away.
        let mut point_consumer_config = consumer_config.clone();
        point_consumer_config
            .set("queued.min.messages", "1")
            .set("max.partition.fetch.bytes", "65536")
            .set("fetch.wait.max.ms", "10");

        let producer: FutureProducer = create(&cfg, &producer_config, "producer")?;
        let admin: AdminClient<DefaultClientContext> = create(&cfg, &base, "admin client")?;
        let meta: BaseConsumer = create(&cfg, &consumer_config, "metadata client")?;
        let meta = Arc::new(meta);

        let probe = meta.clone();
        let timeout = cfg.operation_timeout;
        let servers = cfg.bootstrap_servers.clone();
        blocking(move || {
            probe.fetch_metadata(None, timeout).map(drop).map_err(|e| {
                LogError::Backend(format!(
                    "the Kafka cluster at {servers} did not answer a metadata request within {timeout:?}: {e}"
                ))
            })
        })
        .await?;
        tracing::info!(servers = %cfg.bootstrap_servers, prefix = %cfg.topic_prefix, "connected to the Kafka event log");
        Ok(KafkaLog {
            inner: Arc::new(Inner {
                readers: reader::Readers::new(cfg.max_cached_readers),
                cfg,
                producer: RwLock::new(Arc::new(producer)),
                producer_config,
                admin,
                meta,
                consumer_config,
                point_consumer_config,
                topics: Mutex::default(),
                watches: Mutex::default(),
                groups: Mutex::default(),
            }),
        })
    }

    /// The configuration the log was opened with.
    pub fn config(&self) -> &KafkaLogConfig {
        &self.inner.cfg
    }

    /// How many times a reader was positioned at an offset (a partition's first read, or a
    /// read not starting where the previous one ended), for tests and metrics.
    pub fn reader_seeks(&self) -> u64 {
        self.inner
            .readers
            .seeks
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The Kafka topic holding log topic `topic`.
    pub fn kafka_topic(&self, topic: &str) -> Result<String, LogError> {
        kafka_topic_name(&self.inner.cfg.topic_prefix, topic)
    }
}

/// Creates a client; an error message never carries a configured property's value.
fn create<T: FromClientConfig>(
    cfg: &KafkaLogConfig,
    c: &ClientConfig,
    what: &str,
) -> Result<T, LogError> {
    c.create().map_err(|e| {
        let mut msg = format!("creating the Kafka {what}: {e}");
        for (_, v) in &cfg.properties {
            // Values this short are not secrets, and replacing them would garble the text.
            if v.len() >= 3 {
                msg = msg.replace(v.as_str(), "******");
            }
        }
        LogError::Backend(msg)
    })
}

fn partition_index(topic: &str, partition: u32, count: u32) -> Result<i32, LogError> {
    if partition < count {
        // `count` came from Kafka's i32 partition ids.
        Ok(partition as i32)
    } else {
        Err(LogError::UnknownPartition {
            topic: topic.to_owned(),
            partition,
        })
    }
}

/// Sets a watch to `end` if that moves it forward.
fn advance(tx: &watch::Sender<u64>, end: u64) {
    tx.send_if_modified(|v| {
        if end > *v {
            *v = end;
            true
        } else {
            false
        }
    });
}

/// What came back for the records of one `append`.
#[derive(Default)]
struct Deliveries {
    first: Option<u64>,
    last: u64,
    error: Option<LogError>,
}

impl Deliveries {
    async fn settle(&mut self, f: DeliveryFuture, topic: &str, partition: u32) {
        match f.await {
            Ok(Ok(d)) if d.offset >= 0 => {
                let o = d.offset as u64;
                self.first = Some(self.first.map_or(o, |f| f.min(o)));
                self.last = self.last.max(o);
            }
            Ok(Ok(_)) => {
                self.fail(LogError::Backend(format!(
                    "appending to {topic} partition {partition}: the broker reported no offset"
                )));
            }
            Ok(Err((e, m))) => {
                let e = match e.rdkafka_error_code() {
                    Some(RDKafkaErrorCode::UnknownPartition) => LogError::UnknownPartition {
                        topic: topic.to_owned(),
                        partition,
                    },
                    Some(
                        RDKafkaErrorCode::MessageSizeTooLarge
                        | RDKafkaErrorCode::InvalidMessageSize,
                    ) => LogError::Backend(format!(
                        "appending to {topic} partition {partition}: the cluster refused a record of {} bytes as too large: {e}",
                        m.payload().map_or(0, <[u8]>::len)
                    )),
                    _ => backend(format!("appending to {topic} partition {partition}"), e),
                };
                self.fail(e);
            }
            Err(_) => self.fail(LogError::Backend(format!(
                "appending to {topic} partition {partition}: the producer dropped the delivery report"
            ))),
        }
    }

    fn fail(&mut self, e: LogError) {
        self.error.get_or_insert(e);
    }
}

impl Inner {
    fn name(&self, topic: &str) -> Result<String, LogError> {
        kafka_topic_name(&self.cfg.topic_prefix, topic)
    }

    /// The partition count of a Kafka topic, cached; `None` if it does not exist.
    async fn lookup(&self, k: &str) -> Result<Option<u32>, LogError> {
        if let Some(n) = lock(&self.topics).get(k).copied() {
            return Ok(Some(n));
        }
        let meta = self.meta.clone();
        let (k2, timeout) = (k.to_owned(), self.cfg.operation_timeout);
        let n = blocking(move || metadata_partitions(&meta, &k2, timeout)).await?;
        if let Some(n) = n {
            lock(&self.topics).insert(k.to_owned(), n);
        }
        Ok(n)
    }

    /// The partition count of a Kafka topic, creating the topic if it does not exist.
    async fn ensure_topic(&self, k: &str) -> Result<u32, LogError> {
        if let Some(n) = self.lookup(k).await? {
            return Ok(n);
        }
        let timeout = self.cfg.operation_timeout;
        let new = NewTopic::new(
            k,
            self.cfg.partitions as i32,
            TopicReplication::Fixed(self.cfg.replication_factor),
        );
        let opts = AdminOptions::new()
            .operation_timeout(Some(timeout))
            .request_timeout(Some(timeout));
        let results = self
            .admin
            .create_topics([&new], &opts)
            .await
            .map_err(|e| backend(format!("creating Kafka topic {k}"), e))?;
        for r in results {
            match r {
                Ok(_) => {
                    tracing::info!(
                        topic = k,
                        partitions = self.cfg.partitions,
                        "created Kafka topic"
                    );
                }
                // Another process (or a concurrent call) was first.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(LogError::Backend(format!(
                        "creating Kafka topic {k}: {code}"
                    )))
                }
            }
        }
        // Creation propagates through the cluster; wait until the metadata shows the topic so
        // the producer and the readers find it.
        let deadline = Instant::now() + timeout;
        loop {
            let meta = self.meta.clone();
            let k2 = k.to_owned();
            if let Some(n) = blocking(move || metadata_partitions(&meta, &k2, timeout)).await? {
                lock(&self.topics).insert(k.to_owned(), n);
                return Ok(n);
            }
            if Instant::now() >= deadline {
                return Err(LogError::Backend(format!(
                    "Kafka topic {k} was created but is not in the cluster's metadata after {timeout:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn watermarks(&self, k: &str, partition: i32) -> Result<Option<(u64, u64)>, LogError> {
        let meta = self.meta.clone();
        let (k2, timeout) = (k.to_owned(), self.cfg.operation_timeout);
        blocking(move || watermarks(&meta, &k2, partition, timeout)).await
    }

    /// Watermarks of a log topic's partition; (0, 0) for an unknown topic.
    async fn offsets(&self, topic: &str, partition: u32) -> Result<(u64, u64), LogError> {
        let k = self.name(topic)?;
        let Some(count) = self.lookup(&k).await? else {
            return Ok((0, 0));
        };
        let p = partition_index(topic, partition, count)?;
        Ok(self.watermarks(&k, p).await?.unwrap_or((0, 0)))
    }

    /// Replace the producer. The idempotent producer keeps a sequence number per partition,
    /// and a topic created anew under a deleted one's name starts from zero: the old
    /// producer's next append there would fail with `OutOfOrderSequenceNumber`.
    async fn renew_producer(&self) -> Result<(), LogError> {
        let fresh: FutureProducer = create(&self.cfg, &self.producer_config, "producer")?;
        let old = std::mem::replace(
            &mut *self
                .producer
                .write()
                .unwrap_or_else(PoisonError::into_inner),
            Arc::new(fresh),
        );
        // Appends still running hold their own reference; the last one closes it. Closing
        // waits for librdkafka's threads, so not on this thread.
        tokio::task::spawn_blocking(move || drop(old));
        Ok(())
    }

    fn notify(&self, k: &str, partition: u32, end: u64) {
        if let Some(tx) = lock(&self.watches).get(&(k.to_owned(), partition)) {
            advance(tx, end);
        }
    }

    /// The client of a consumer group (Kafka group id), created on first use.
    async fn group(&self, group_id: &str) -> Result<Arc<BaseConsumer>, LogError> {
        if let Some(c) = lock(&self.groups).get(group_id) {
            return Ok(c.clone());
        }
        let mut config = self.consumer_config.clone();
        config.set("group.id", group_id);
        let created: BaseConsumer = create(&self.cfg, &config, "consumer-group client")?;
        let c = lock(&self.groups)
            .entry(group_id.to_owned())
            .or_insert_with(|| Arc::new(created))
            .clone();
        Ok(c)
    }

    fn group_id(&self, group: &str) -> Result<String, LogError> {
        if group.is_empty() {
            return Err(LogError::InvalidName(group.to_owned()));
        }
        Ok(format!("{}{group}", self.cfg.topic_prefix))
    }

    /// A watch's poll of the high watermark, until its receivers or the log are gone.
    async fn watch_end(
        inner: Weak<Inner>,
        tx: Weak<watch::Sender<u64>>,
        k: String,
        partition: u32,
        interval: Duration,
    ) {
        let key = (k, partition);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate
        loop {
            tick.tick().await;
            let Some(me) = inner.upgrade() else { return };
            {
                let Some(sender) = tx.upgrade() else { return };
                // Under the lock that `subscribe` takes, so no receiver appears meanwhile.
                let mut watches = lock(&me.watches);
                if sender.receiver_count() == 0 {
                    if watches.get(&key).is_some_and(|t| Arc::ptr_eq(t, &sender)) {
                        watches.remove(&key);
                    }
                    return;
                }
            }
            let (meta, timeout) = (me.meta.clone(), me.cfg.operation_timeout);
            // Neither the log nor the watch is kept alive across the query.
            drop(me);
            let k = key.0.clone();
            let p = key.1 as i32;
            match blocking(move || watermarks(&meta, &k, p, timeout)).await {
                Ok(Some((_, high))) => {
                    if let Some(sender) = tx.upgrade() {
                        advance(&sender, high);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(topic = %key.0, partition, error = %e, "polling the end offset failed");
                }
            }
        }
    }
}

#[async_trait]
impl EventLog for KafkaLog {
    async fn append(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Bytes>,
    ) -> Result<Range<u64>, LogError> {
        let inner = &self.inner;
        let k = inner.name(topic)?;
        let size: usize = records.iter().map(Bytes::len).sum();
        if size > inner.cfg.max_batch_bytes {
            return Err(LogError::BatchTooLarge {
                size,
                limit: inner.cfg.max_batch_bytes,
            });
        }
        if let Some(r) = records
            .iter()
            .find(|r| r.len() > inner.cfg.max_record_bytes)
        {
            return Err(LogError::BatchTooLarge {
                size: r.len(),
                limit: inner.cfg.max_record_bytes,
            });
        }
        let count = inner.ensure_topic(&k).await?;
        let p = partition_index(topic, partition, count)?;
        if records.is_empty() {
            let end = inner.watermarks(&k, p).await?.map_or(0, |w| w.1);
            return Ok(end..end);
        }
        let producer = inner
            .producer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let deadline = Instant::now() + inner.cfg.delivery_timeout;
        let mut pending: VecDeque<DeliveryFuture> = VecDeque::with_capacity(records.len());
        let mut done = Deliveries::default();
        'records: for r in &records {
            loop {
                let record = FutureRecord::<(), [u8]>::to(&k)
                    .partition(p)
                    .payload(&r[..]);
                match producer.send_result(record) {
                    Ok(f) => {
                        pending.push_back(f);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                        if Instant::now() < deadline =>
                    {
                        // librdkafka's local queue is full: wait for room.
                        match pending.pop_front() {
                            Some(f) => done.settle(f, topic, partition).await,
                            None => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                    }
                    Err((e, _)) => {
                        done.fail(backend(
                            format!("appending to {topic} partition {partition}"),
                            e,
                        ));
                        break 'records;
                    }
                }
            }
        }
        for f in pending {
            done.settle(f, topic, partition).await;
        }
        if let Some(first) = done.first {
            inner.notify(&k, partition, done.last + 1);
            if done.error.is_none() {
                return Ok(first..done.last + 1);
            }
        }
        if matches!(
            &done.error,
            Some(LogError::Backend(_) | LogError::UnknownPartition { .. })
        ) {
            // Maybe deleted or changed behind our back: ask the cluster again next time.
            lock(&inner.topics).remove(&k);
        }
        Err(done.error.unwrap_or_else(|| {
            LogError::Backend(format!(
                "appending to {topic} partition {partition}: no delivery report"
            ))
        }))
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<LogRecord>, LogError> {
        let inner = &self.inner;
        let k = inner.name(topic)?;
        let Some(count) = inner.lookup(&k).await? else {
            return if from == 0 {
                Ok(Vec::new())
            } else {
                Err(LogError::OffsetOutOfRange {
                    topic: topic.to_owned(),
                    requested: from,
                    start: 0,
                    end: 0,
                })
            };
        };
        let p = partition_index(topic, partition, count)?;
        // Single-record reads (an event looked up by offset: retries, ShowDetailOfEvent) get a
        // reader of their own per partition (cache slot -1 - p), so they never move the
        // sequential reader a router is tailing with away from its position.
        let slot = if max_records <= 1 { -1 - p } else { p };
        let (reader, evicted) = inner.readers.get(&k, slot);
        reader::drop_readers(evicted);
        let q = reader::ReadRequest {
            log_topic: topic.to_owned(),
            kafka_topic: k,
            partition: p,
            from,
            max_records,
            max_bytes,
            timeout: inner.cfg.operation_timeout,
        };
        let me = self.inner.clone();
        blocking(move || {
            let config = if slot < 0 {
                &me.point_consumer_config
            } else {
                &me.consumer_config
            };
            reader::read_blocking(&reader, config, &me.readers.seeks, &q)
        })
        .await
    }

    async fn start_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        Ok(self.inner.offsets(topic, partition).await?.0)
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        Ok(self.inner.offsets(topic, partition).await?.1)
    }

    async fn partitions(&self, topic: &str) -> Result<u32, LogError> {
        let k = self.inner.name(topic)?;
        Ok(self
            .inner
            .lookup(&k)
            .await?
            .unwrap_or(self.inner.cfg.partitions))
    }

    async fn subscribe(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<watch::Receiver<u64>, LogError> {
        let inner = &self.inner;
        let k = inner.name(topic)?;
        let count = inner.ensure_topic(&k).await?;
        let p = partition_index(topic, partition, count)?;
        let key = (k.clone(), partition);
        if let Some(tx) = lock(&inner.watches).get(&key) {
            return Ok(tx.subscribe());
        }
        let end = inner.watermarks(&k, p).await?.map_or(0, |w| w.1);
        let mut watches = lock(&inner.watches);
        if let Some(tx) = watches.get(&key) {
            // Another subscriber was quicker.
            advance(tx, end);
            return Ok(tx.subscribe());
        }
        let (tx, rx) = watch::channel(end);
        let tx = Arc::new(tx);
        watches.insert(key, tx.clone());
        tokio::spawn(Inner::watch_end(
            Arc::downgrade(inner),
            Arc::downgrade(&tx),
            k,
            partition,
            inner.cfg.watch_interval,
        ));
        Ok(rx)
    }

    async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<(), LogError> {
        let inner = &self.inner;
        let k = inner.name(topic)?;
        let group_id = inner.group_id(group)?;
        let count = inner.lookup(&k).await?.unwrap_or(inner.cfg.partitions);
        let p = partition_index(topic, partition, count)?;
        let offset = i64::try_from(offset).map_err(|_| LogError::OffsetOutOfRange {
            topic: topic.to_owned(),
            requested: offset,
            start: 0,
            end: i64::MAX as u64,
        })?;
        let c = inner.group(&group_id).await?;
        let timeout = inner.cfg.operation_timeout;
        let what = format!("committing offset {offset} of {k} partition {p} for group {group_id}");
        let what2 = what.clone();
        // A synchronous commit has no timeout of its own (it waits for the group
        // coordinator); the call gives up after `operation_timeout`.
        let run = blocking(move || {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&k, p, Offset::Offset(offset))
                .map_err(|e| backend(&what2, e))?;
            c.commit(&tpl, CommitMode::Sync)
                .map_err(|e| backend(&what2, e))
        });
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| LogError::Backend(format!("{what}: no answer within {timeout:?}")))?
    }

    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>, LogError> {
        let inner = &self.inner;
        let k = inner.name(topic)?;
        let group_id = inner.group_id(group)?;
        let Some(count) = inner.lookup(&k).await? else {
            // Offsets of a topic that does not exist are gone with it.
            return Ok(None);
        };
        let p = partition_index(topic, partition, count)?;
        let c = inner.group(&group_id).await?;
        let timeout = inner.cfg.operation_timeout;
        blocking(move || {
            let what =
                format!("reading the offset of {k} partition {p} committed by group {group_id}");
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&k, p);
            let got = c
                .committed_offsets(tpl, timeout)
                .map_err(|e| backend(&what, e))?;
            let Some(elem) = got.find_partition(&k, p) else {
                return Ok(None);
            };
            elem.error().map_err(|e| backend(&what, e))?;
            Ok(match elem.offset() {
                Offset::Offset(o) if o >= 0 => Some(o as u64),
                _ => None,
            })
        })
        .await
    }

    async fn delete_topic(&self, topic: &str) -> Result<(), LogError> {
        let inner = &self.inner;
        let k = inner.name(topic)?;
        lock(&inner.topics).remove(&k);
        // Dropping the senders closes the watches (their poll tasks hold weak references).
        let closed: Vec<Arc<watch::Sender<u64>>> = {
            let mut watches = lock(&inner.watches);
            let keys: Vec<WatchKey> = watches.keys().filter(|key| key.0 == k).cloned().collect();
            keys.iter().filter_map(|key| watches.remove(key)).collect()
        };
        drop(closed);
        // Close the readers before the topic goes, so none is fetching from it meanwhile.
        let readers = inner.readers.remove_topic(&k);
        blocking(move || {
            drop(readers);
            Ok(())
        })
        .await?;
        let timeout = inner.cfg.operation_timeout;
        let opts = AdminOptions::new()
            .operation_timeout(Some(timeout))
            .request_timeout(Some(timeout));
        let results = inner
            .admin
            .delete_topics(&[k.as_str()], &opts)
            .await
            .map_err(|e| backend(format!("deleting Kafka topic {k}"), e))?;
        for r in results {
            match r {
                Ok(_) => tracing::info!(topic = %k, "deleted Kafka topic"),
                Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((_, code)) => {
                    return Err(LogError::Backend(format!(
                        "deleting Kafka topic {k}: {code}"
                    )))
                }
            }
        }
        // Deletion propagates through the cluster: return once the topic is gone, so a read
        // right after sees an empty topic.
        let deadline = Instant::now() + timeout;
        loop {
            let meta = inner.meta.clone();
            let k2 = k.clone();
            if blocking(move || metadata_partitions(&meta, &k2, timeout))
                .await?
                .is_none()
            {
                lock(&inner.topics).remove(&k);
                inner.renew_producer().await?;
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LogError::Backend(format!(
                    "Kafka topic {k} was deleted but is still in the cluster's metadata after {timeout:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
