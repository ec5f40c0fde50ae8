//! RocketMQ→RocketMQ replication's broker side: a job's cluster [`Endpoint`], the source's
//! [`MirrorConsumer`] (every queue of the copied topics assigned to the job's own group,
//! offsets committed only when told), the target's [`MirrorProducer`] (copies sent to a chosen
//! queue, in order) and [`Admin`] (topic lists, routes, creating target topics), all on
//! rocketmq-rust's client and its admin API, run on the shared client runtime
//! (`crate::rocketmq`).
//!
//! A copy keeps the message's body, flag and properties (tags, keys, the client's message id
//! `UNIQ_KEY` and every user property), except the ones a broker sets while storing or
//! delivering, and those that would make the target treat the copy differently from a plain
//! stored message (delay, timer, transaction): [`NOT_COPIED`]. A message read from the source
//! was delivered there already, so its copy is delivered at once too.

use crate::rocketmq::{self as rmq, ClientSettings};
use rocketmq_client_rust::{
    DefaultLitePullConsumer, DefaultMQAdminExt, DefaultMQProducer, MQAdminMutationExt,
    MQAdminReadExt, SendStatus,
};
use rocketmq_model::common::compression::compression_type::CompressionType;
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_model::common::message::MessageTrait;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// Properties a copy does not carry (see the module documentation).
pub const NOT_COPIED: &[&str] = &[
    "MIN_OFFSET",
    "MAX_OFFSET",
    "REAL_TOPIC",
    "REAL_QID",
    "DELAY",
    "TIMER_DELIVER_MS",
    "TIMER_DELAY_SEC",
    "TIMER_DELAY_MS",
    "TIMER_OUT_MS",
    "TIMER_ENQUEUE_MS",
    "TIMER_DEQUEUE_MS",
    "TIMER_ROLL_TIMES",
    "TIMER_DEL_UNIQKEY",
    "__STARTDELIVERTIME",
    "TRAN_MSG",
    "TRAN_PREPARED_QUEUE_OFFSET",
    "PGROUP",
    "CHECK_IMMUNITY_TIME_IN_SECONDS",
    "CLUSTER",
    "MSG_REGION",
    "TRACE_ON",
    "CONSUME_START_TIME",
    "RETRY_TOPIC",
    "ORIGIN_MESSAGE_ID",
    "RECONSUME_TIME",
    "MAX_RECONSUME_TIMES",
    "INNER_NUM",
    "INNER_BASE",
    "INNER_MULTI_DISPATCH",
    "INNER_MULTI_QUEUE_OFFSET",
    "bname",
    "POP_CK",
    "POP_CK_OFFSET",
    "1ST_POP_TIME",
];

/// Time allowed for one broker or name-server request made here.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Send timeout of one copy batch, in ms.
const SEND_TIMEOUT_MS: u64 = 10_000;
/// How long a target topic made by a job may take to appear in the name server's routes.
const ROUTE_WAIT: Duration = Duration::from_secs(30);
/// Bodies at least this long are compressed with the job's `compress_alg`.
pub const COMPRESS_OVER: usize = 4096;

/// A job's `source_rocketmq` / `sink_rocketmq` cluster. `Debug` leaves the password out.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub settings: ClientSettings,
}

impl Endpoint {
    /// The endpoint of a job's RocketMQ member (secrets revealed): `address` is the name
    /// server list; `acl_open` signs requests with `user_name` / `password`; `ssl_open`
    /// (TLS) is refused by this build.
    pub fn of(ep: &Value) -> Result<Endpoint, String> {
        let text = |k: &str| {
            ep.get(k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let address = text("address").ok_or(
            "address (the name server list) is required to run a job in OpenEG: an \
             instance_id alone does not say where the brokers are",
        )?;
        let acl = rmq::flag(ep.get("acl_open")).then(|| {
            (
                text("user_name").unwrap_or_default(),
                ep.get("password")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            )
        });
        let settings = ClientSettings::new(address, rmq::flag(ep.get("ssl_open")), acl, "address")
            .map_err(|e| e.replace("ACL is enabled", "acl_open is true"))?;
        Ok(Endpoint { settings })
    }

    /// The name servers, sorted: two endpoints with the same set are the same cluster.
    pub fn servers(&self) -> String {
        let mut s: Vec<&str> = self.settings.namesrv.split(';').collect();
        s.sort_unstable();
        s.join(";")
    }
}

/// A message queue, as the job names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Queue {
    pub topic: String,
    pub broker: String,
    pub queue_id: i32,
}

impl Queue {
    fn mq(&self) -> MessageQueue {
        MessageQueue::from_parts(self.topic.as_str(), self.broker.as_str(), self.queue_id)
    }

    fn of(mq: &MessageQueue) -> Queue {
        Queue {
            topic: mq.topic_str().to_string(),
            broker: mq.broker_name().to_string(),
            queue_id: mq.queue_id(),
        }
    }
}

/// Where a job starts in a queue its group never committed (`seek_to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    /// The queue's first retained message.
    First,
    /// The queue's end: only messages sent after the job started.
    Last,
    /// The first message stored at or after this time (epoch ms).
    Timestamp(u64),
}

impl SeekTo {
    /// `first` (also `earliest`; the default), `last` (also `latest`) or epoch milliseconds.
    pub fn parse(v: Option<&str>) -> Result<SeekTo, String> {
        match v.map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(SeekTo::First),
            Some(s) if s.eq_ignore_ascii_case("first") || s.eq_ignore_ascii_case("earliest") => {
                Ok(SeekTo::First)
            }
            Some(s) if s.eq_ignore_ascii_case("last") || s.eq_ignore_ascii_case("latest") => {
                Ok(SeekTo::Last)
            }
            Some(s) => s.parse::<u64>().map(SeekTo::Timestamp).map_err(|_| {
                format!("seek_to {s:?} is neither first, last nor an epoch-ms timestamp")
            }),
        }
    }
}

/// Whether a source topic may be copied: never RocketMQ's system topics, retry and
/// dead-letter topics, or the topics named after a broker or cluster.
pub fn is_copyable_topic(name: &str, brokers_and_clusters: &[String]) -> bool {
    !(rocketmq_model::topic::is_system_topic(name)
        || name.starts_with("%RETRY%")
        || name.starts_with("%DLQ%")
        || name.starts_with("rmq_sys_")
        || name.starts_with("RMQ_SYS_")
        || name.starts_with("SCHEDULE_TOPIC")
        || name == "TBW102"
        || brokers_and_clusters.iter().any(|b| b == name))
}

/// One message as read from the source: where it was, and what its copy carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polled {
    pub queue: Queue,
    pub offset: i64,
    pub body: bytes::Bytes,
    pub flag: i32,
    /// The properties a copy carries, sorted by name.
    pub properties: Vec<(String, String)>,
}

impl Polled {
    fn of(m: &MessageExt) -> Polled {
        let mut properties: Vec<(String, String)> = m
            .properties()
            .iter()
            .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        properties.sort_unstable();
        Polled {
            queue: Queue {
                topic: m.topic().to_string(),
                broker: m.broker_name().to_string(),
                queue_id: m.queue_id(),
            },
            offset: m.queue_offset(),
            body: m.body().unwrap_or_default(),
            flag: m.flag(),
            properties,
        }
    }

    /// The message's `KEYS` property, if any (what a key hash places by).
    pub fn keys(&self) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == "KEYS")
            .map(|(_, v)| v.as_str())
    }

    /// The copy sent to `topic`.
    fn copy(&self, topic: &str) -> Message {
        let mut m = Message::builder()
            .topic(topic)
            .body(self.body.to_vec())
            .build_unchecked();
        m.set_flag(self.flag);
        for (k, v) in &self.properties {
            m.put_property(k.as_str().into(), v.as_str().into());
        }
        m
    }
}

/// Runs `fut` on the client runtime within [`REQUEST_TIMEOUT`] (`what` names it in errors).
async fn bounded<T: Send + 'static>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, String>> + Send + 'static,
) -> Result<T, String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, rmq::spawn(fut)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "{what}: no answer within {} s",
            REQUEST_TIMEOUT.as_secs()
        )),
    }
}

/// A cluster as its name server knows it: the names of its brokers and clusters, and each
/// broker's addresses by broker id (0: the master).
struct ClusterView {
    names: Vec<String>,
    brokers: Vec<HashMap<u64, String>>,
}

async fn cluster_view(a: &DefaultMQAdminExt) -> Result<ClusterView, String> {
    let c = a
        .examine_broker_cluster_info()
        .await
        .map_err(|e| rmq::describe(&e))?;
    let mut names: Vec<String> = Vec::new();
    let mut brokers = Vec::new();
    if let Some(t) = &c.broker_addr_table {
        names.extend(t.keys().map(|k| k.to_string()));
        brokers.extend(t.values().map(|b| {
            b.broker_addrs()
                .iter()
                .map(|(id, addr)| (*id, addr.to_string()))
                .collect()
        }));
    }
    if let Some(t) = &c.cluster_addr_table {
        names.extend(t.keys().map(|k| k.to_string()));
    }
    Ok(ClusterView { names, brokers })
}

/// A cluster's admin client; shut down on the client runtime when dropped.
pub struct Admin {
    admin: Option<Arc<tokio::sync::Mutex<DefaultMQAdminExt>>>,
    namesrv: String,
}

impl Drop for Admin {
    fn drop(&mut self) {
        if let Some(a) = self.admin.take() {
            rmq::spawn_detached(async move { a.lock().await.shutdown().await });
        }
    }
}

/// Whether `endpoint`'s name server answers an admin client (signed with its ACL credentials)
/// with its cluster: what ValidateEventRouterJob checks. Boxed, so that callers need not prove
/// the client's deeply nested futures `Send` themselves.
pub fn check(
    endpoint: &Endpoint,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>> {
    let endpoint = endpoint.clone();
    Box::pin(async move { Admin::connect(&endpoint).await.map(drop) })
}

/// One topic's queues on a cluster, from its route: (broker, read queues, write queues).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRoute {
    pub brokers: Vec<(String, u32, u32)>,
}

impl TopicRoute {
    /// Queues over every broker (the greater of read and write per broker).
    pub fn queues(&self) -> u32 {
        self.brokers.iter().map(|(_, r, w)| (*r).max(*w)).sum()
    }
}

impl Admin {
    /// Starts an admin client on `endpoint`'s name servers.
    pub async fn connect(endpoint: &Endpoint) -> Result<Admin, String> {
        let runtime = rmq::client_runtime()?;
        let settings = endpoint.settings.clone();
        let namesrv = settings.namesrv.clone();
        let admin = bounded("starting the admin client", async move {
            let mut admin = match settings.rpc_hook() {
                Some(hook) => DefaultMQAdminExt::with_rpc_hook(runtime, hook),
                None => DefaultMQAdminExt::new(runtime),
            };
            admin.set_namesrv_addr(settings.namesrv.as_str());
            admin
                .client_config_mut()
                .set_instance_name(rmq::instance_name("router-admin").into());
            admin.start().await.map_err(|e| rmq::describe(&e))?;
            // Starting does not reach the name server: ask it something.
            if let Err(e) = admin.examine_broker_cluster_info().await {
                admin.shutdown().await;
                return Err(rmq::describe(&e));
            }
            Ok(admin)
        })
        .await
        .map_err(|e| format!("name server {namesrv}: {e}"))?;
        Ok(Admin {
            admin: Some(Arc::new(tokio::sync::Mutex::new(admin))),
            namesrv,
        })
    }

    fn get(&self) -> Result<Arc<tokio::sync::Mutex<DefaultMQAdminExt>>, String> {
        self.admin
            .clone()
            .ok_or_else(|| "the admin client is shut down".into())
    }

    /// The cluster's topics that may be copied ([`is_copyable_topic`]), sorted.
    pub async fn topics(&self) -> Result<Vec<String>, String> {
        let a = self.get()?;
        let namesrv = self.namesrv.clone();
        bounded("listing topics", async move {
            let a = a.lock().await;
            let list = a
                .fetch_all_topic_list()
                .await
                .map_err(|e| rmq::describe(&e))?;
            let names = cluster_view(&a).await?.names;
            let mut topics: Vec<String> = list
                .topic_list
                .iter()
                .map(|t| t.to_string())
                .filter(|t| is_copyable_topic(t, &names))
                .collect();
            topics.sort_unstable();
            topics.dedup();
            Ok(topics)
        })
        .await
        .map_err(|e| format!("name server {namesrv}: {e}"))
    }

    /// The addresses of the cluster's brokers (two endpoints sharing one are one cluster).
    pub async fn broker_addrs(&self) -> Result<Vec<String>, String> {
        let a = self.get()?;
        bounded("reading the cluster's brokers", async move {
            let a = a.lock().await;
            let mut addrs: Vec<String> = cluster_view(&a)
                .await?
                .brokers
                .into_iter()
                .flat_map(|b| b.into_values())
                .collect();
            addrs.sort_unstable();
            addrs.dedup();
            Ok(addrs)
        })
        .await
    }

    /// The topic's route, or `None` when the name server knows no queue of it.
    pub async fn route(&self, topic: &str) -> Result<Option<TopicRoute>, String> {
        let a = self.get()?;
        let topic = topic.to_string();
        bounded("reading a topic route", async move {
            let a = a.lock().await;
            match a.examine_topic_route_info(topic.as_str().into()).await {
                Ok(Some(r)) => {
                    let mut brokers: Vec<(String, u32, u32)> = r
                        .queue_datas
                        .iter()
                        .map(|q| {
                            (
                                q.broker_name.to_string(),
                                q.read_queue_nums,
                                q.write_queue_nums,
                            )
                        })
                        .collect();
                    brokers.sort();
                    Ok((!brokers.is_empty()).then_some(TopicRoute { brokers }))
                }
                Ok(None) => Ok(None),
                // The name server answers an unknown topic with an error code (17).
                Err(e) if e.broker_response_code() == Some(17) => Ok(None),
                Err(e) => Err(rmq::describe(&e)),
            }
        })
        .await
    }

    /// Makes sure `topic` exists with at least `queues` queues in all: a missing topic is
    /// created on every master broker of the cluster, with the queues spread over them; an
    /// existing one is kept as it is. Returns the topic's route.
    pub async fn ensure_topic(&self, topic: &str, queues: u32) -> Result<TopicRoute, String> {
        if let Some(r) = self.route(topic).await? {
            return Ok(r);
        }
        let a = self.get()?;
        let name = topic.to_string();
        bounded("creating a topic", async move {
            let a = a.lock().await;
            let mut masters: Vec<String> = cluster_view(&a)
                .await?
                .brokers
                .into_iter()
                .filter_map(|mut b| b.remove(&0))
                .collect();
            masters.sort_unstable();
            if masters.is_empty() {
                return Err("the cluster has no master broker".to_string());
            }
            let n = u32::try_from(masters.len()).unwrap_or(u32::MAX);
            let per = queues.max(1).div_ceil(n);
            for addr in masters {
                let config = rocketmq_model::common::config::TopicConfig::with_queues(
                    name.as_str(),
                    per,
                    per,
                );
                a.upsert_topic_config(addr.as_str().into(), config)
                    .await
                    .map_err(|e| format!("broker {addr}: {}", rmq::describe(&e)))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| format!("creating topic {topic} on the target cluster failed: {e}"))?;
        // The brokers register the topic with the name server right after creating it.
        let deadline = tokio::time::Instant::now() + ROUTE_WAIT;
        loop {
            if let Some(r) = self.route(topic).await? {
                return Ok(r);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "topic {topic} was created on the target cluster but its name server does \
                     not route it within {} s",
                    ROUTE_WAIT.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The source side: a lite pull consumer of the job's group with every queue of the copied
/// topics assigned (no rebalancing: the group is the job's own). Shut down when dropped.
pub struct MirrorConsumer {
    consumer: Option<Arc<DefaultLitePullConsumer>>,
    /// Messages polled so far (a reader that sees it move knows the source answers).
    polled: Arc<std::sync::atomic::AtomicU64>,
}

impl Drop for MirrorConsumer {
    fn drop(&mut self) {
        if let Some(c) = self.consumer.take() {
            rmq::spawn_detached(async move { c.shutdown().await });
        }
    }
}

/// Where a queue's copying starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStart {
    pub queue: Queue,
    /// The first offset copied: the group's committed offset, else where `seek_to` says.
    pub offset: i64,
    /// The queue's end when the job started.
    pub max_offset: i64,
    /// Whether the job had not read this queue before (`offset` came from `seek_to`).
    pub new: bool,
    /// A floor given for the queue that lies beyond its end (the queue was recreated): it was
    /// not applied.
    pub stale_floor: Option<i64>,
}

impl MirrorConsumer {
    /// Starts the consumer in `group`, assigns it every queue of `topics` and places each:
    /// a queue in `taken` (the job read it before, from that offset on) or with a committed
    /// offset above 0 continues at the greater of the two; a new queue of a topic the job
    /// read before starts at its first message; any other queue where `seek` says. (A broker
    /// may answer 0 rather than "none" for a group that never committed, so the committed
    /// offset alone cannot tell a new queue.) A queue in `floors` starts at that offset at the
    /// least, unless it lies beyond the queue's end. Returns the queues, sorted.
    pub async fn open(
        endpoint: &Endpoint,
        group: &str,
        topics: &[String],
        seek: SeekTo,
        taken: &HashMap<Queue, i64>,
        floors: &HashMap<Queue, i64>,
    ) -> Result<(MirrorConsumer, Vec<QueueStart>), String> {
        let taken = taken.clone();
        let floors = floors.clone();
        let runtime = rmq::client_runtime()?;
        let settings = endpoint.settings.clone();
        let group = group.to_string();
        let topics = topics.to_vec();
        let namesrv = settings.namesrv.clone();
        let opened = tokio::time::timeout(
            REQUEST_TIMEOUT * 2,
            rmq::spawn(async move {
                let mut builder = DefaultLitePullConsumer::builder(runtime)
                    .instance_name(rmq::instance_name("router-source"))
                    .name_server_addr(settings.namesrv.clone())
                    .consumer_group(group)
                    .auto_commit(false)
                    .consume_from_where(match seek {
                        SeekTo::Last => ConsumeFromWhere::ConsumeFromLastOffset,
                        _ => ConsumeFromWhere::ConsumeFromFirstOffset,
                    });
                if let Some(hook) = settings.rpc_hook() {
                    builder = builder.rpc_hook(hook);
                }
                let c = Arc::new(builder.build().map_err(|e| rmq::describe(&e))?);
                let consumer = MirrorConsumer {
                    polled: Default::default(),
                    consumer: Some(c.clone()),
                };
                c.start().await.map_err(|e| rmq::describe(&e))?;
                let mut all = Vec::new();
                for t in &topics {
                    let qs = c
                        .fetch_message_queues(t)
                        .await
                        .map_err(|e| format!("topic {t}: {}", rmq::describe(&e)))?;
                    if qs.is_empty() {
                        return Err(format!("topic {t} has no queue on the source cluster"));
                    }
                    all.extend(qs);
                }
                all.sort_by_key(Queue::of);
                c.assign(all.clone()).await.map_err(|e| rmq::describe(&e))?;
                let mut starts = Vec::with_capacity(all.len());
                for mq in &all {
                    let q = Queue::of(mq);
                    let committed = c.committed(mq).await.map_err(|e| {
                        format!("reading the group's offset of {q:?}: {}", rmq::describe(&e))
                    })?;
                    let min = c.min_offset(mq).await.map_err(|e| rmq::describe(&e))?;
                    let max = c.max_offset(mq).await.map_err(|e| rmq::describe(&e))?;
                    // `.max(min).min(max)`, not `clamp`: a broker's answer must not panic us.
                    let within = |o: i64| o.max(min).min(max);
                    let known_topic = taken
                        .keys()
                        .chain(floors.keys())
                        .any(|k| k.topic == q.topic);
                    let floor = floors.get(&q).copied();
                    let stale_floor = floor.filter(|f| *f > max);
                    let floor = floor.filter(|f| *f <= max);
                    let new = !taken.contains_key(&q) && committed <= 0 && floor.is_none();
                    let offset = if !new {
                        // Retention may have removed what the group had not read, or the queue
                        // was recreated shorter: read on from what is there.
                        let at = committed.max(taken.get(&q).copied().unwrap_or(0));
                        within(at.max(floor.unwrap_or(0)))
                    } else if known_topic {
                        // A queue added to a topic the job copies: all of it.
                        min
                    } else {
                        match seek {
                            SeekTo::First => min,
                            SeekTo::Last => max,
                            SeekTo::Timestamp(ts) => within(
                                c.offset_for_timestamp(mq, ts)
                                    .await
                                    .map_err(|e| rmq::describe(&e))?,
                            ),
                        }
                    };
                    if offset != committed {
                        c.seek(mq, offset).await.map_err(|e| rmq::describe(&e))?;
                    }
                    starts.push(QueueStart {
                        queue: q,
                        offset,
                        max_offset: max,
                        new,
                        stale_floor,
                    });
                }
                Ok((consumer, starts))
            }),
        )
        .await;
        match opened {
            Ok(Ok(r)) => r.map_err(|e| format!("name server {namesrv}: {e}")),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!(
                "name server {namesrv}: the consumer did not start within {} s",
                (REQUEST_TIMEOUT * 2).as_secs()
            )),
        }
    }

    fn get(&self) -> Result<Arc<DefaultLitePullConsumer>, String> {
        self.consumer
            .clone()
            .ok_or_else(|| "the consumer is shut down".into())
    }

    /// Up to about `max` messages or `max_bytes` of bodies: what one poll of `wait` returns,
    /// and what further short polls find ready.
    pub async fn poll(
        &self,
        wait: Duration,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<Polled>, String> {
        let c = self.get()?;
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        let polled = self.polled.clone();
        rmq::spawn(async move {
            let mut out: Vec<Polled> = c
                .poll_with_timeout(wait_ms)
                .await
                .iter()
                .map(Polled::of)
                .collect();
            let mut bytes: usize = out.iter().map(|m| m.body.len()).sum();
            while !out.is_empty() && out.len() < max && bytes < max_bytes {
                let more = c.poll_with_timeout(1).await;
                if more.is_empty() {
                    break;
                }
                bytes += more
                    .iter()
                    .map(|m| m.body().map_or(0, |b| b.len()))
                    .sum::<usize>();
                out.extend(more.iter().map(Polled::of));
            }
            polled.fetch_add(out.len() as u64, std::sync::atomic::Ordering::Relaxed);
            out
        })
        .await
    }

    /// How many messages this consumer has polled.
    pub fn polled(&self) -> u64 {
        self.polled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Commits, per queue, the offset of the next message to copy, and sends it to the broker.
    pub async fn commit(&self, next: Vec<(Queue, i64)>) -> Result<(), String> {
        let c = self.get()?;
        let map: HashMap<MessageQueue, i64> = next.iter().map(|(q, o)| (q.mq(), *o)).collect();
        rmq::spawn(async move { c.commit_with_map(map, true).await }).await
    }

    /// The queues' ends (the next offset a message sent there gets), read in parallel; a
    /// queue whose broker does not answer is left out, and the first such error returned.
    pub async fn max_offsets(
        &self,
        queues: Vec<Queue>,
    ) -> Result<(Vec<(Queue, i64)>, Option<String>), String> {
        let c = self.get()?;
        bounded("reading the queues' ends", async move {
            let reads = queues.into_iter().map(|q| {
                let c = c.clone();
                async move {
                    let r = c.max_offset(&q.mq()).await;
                    (q, r)
                }
            });
            let mut out = Vec::new();
            let mut failed = None;
            for (q, r) in futures_util::future::join_all(reads).await {
                match r {
                    Ok(max) => out.push((q, max)),
                    Err(e) => {
                        failed.get_or_insert_with(|| format!("queue {q:?}: {}", rmq::describe(&e)));
                    }
                }
            }
            Ok((out, failed))
        })
        .await
    }

    /// The queues of `topics` as the name server routes them now, sorted.
    pub async fn queues(&self, topics: Vec<String>) -> Result<Vec<Queue>, String> {
        let c = self.get()?;
        bounded("reading the topics' queues", async move {
            let mut out = Vec::new();
            for t in topics {
                let qs = c
                    .fetch_message_queues(&t)
                    .await
                    .map_err(|e| format!("topic {t}: {}", rmq::describe(&e)))?;
                out.extend(qs.iter().map(Queue::of));
            }
            out.sort();
            Ok(out)
        })
        .await
    }
}

/// The target side: one producer per job. Shut down when dropped.
pub struct MirrorProducer {
    producer: Option<Arc<DefaultMQProducer>>,
}

impl Drop for MirrorProducer {
    fn drop(&mut self) {
        if let Some(mut p) = self.producer.take() {
            // Aborted sends drop their clones of the producer shortly.
            rmq::spawn_detached(async move {
                for _ in 0..100 {
                    match Arc::try_unwrap(p) {
                        Ok(mut producer) => {
                            producer.shutdown().await;
                            return;
                        }
                        Err(shared) => p = shared,
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                tracing::warn!("event-router job: a producer still in use was not shut down");
            });
        }
    }
}

/// A job's `compress_alg` as the producer's compression (`None`: never compress). RocketMQ
/// knows zlib, not gzip: `gzip` (the same deflate stream, another wrapper) is zlib here.
pub fn compression(alg: &str) -> Result<Option<CompressionType>, String> {
    match alg.trim().to_ascii_lowercase().as_str() {
        "" | "none" => Ok(None),
        "gzip" | "zlib" => Ok(Some(CompressionType::Zlib)),
        "lz4" => Ok(Some(CompressionType::LZ4)),
        "zstd" => Ok(Some(CompressionType::Zstd)),
        other => Err(format!(
            "compress_alg {other:?} is not one of none, gzip, lz4, zstd"
        )),
    }
}

impl MirrorProducer {
    /// Starts a producer on `endpoint` and reads the write queues of each of `topics`
    /// (sorted by broker and queue id).
    pub async fn open(
        endpoint: &Endpoint,
        group: &str,
        compress: Option<CompressionType>,
        topics: &[String],
    ) -> Result<(MirrorProducer, BTreeMap<String, Vec<Queue>>), String> {
        let runtime = rmq::client_runtime()?;
        let settings = endpoint.settings.clone();
        let group = group.to_string();
        let topics = topics.to_vec();
        let namesrv = settings.namesrv.clone();
        let opened = tokio::time::timeout(
            REQUEST_TIMEOUT * 2,
            rmq::spawn(async move {
                let mut config = rocketmq_client_rust::ClientConfig::default();
                config.set_instance_name(rmq::instance_name("router-sink").into());
                let mut builder = DefaultMQProducer::builder(runtime)
                    .client_config(config)
                    .producer_group(group)
                    .name_server_addr(settings.namesrv.clone())
                    // A failed batch is sent again by the job, to the same queue.
                    .retry_times_when_send_failed(0);
                builder = match compress {
                    Some(c) => builder
                        .compress_type(c)
                        .compress_msg_body_over_howmuch(COMPRESS_OVER as u32),
                    None => builder.compress_msg_body_over_howmuch(u32::MAX),
                };
                if let Some(hook) = settings.rpc_hook() {
                    builder = builder.rpc_hook(hook);
                }
                let mut p = builder.build();
                p.start().await.map_err(|e| rmq::describe(&e))?;
                let mut queues = BTreeMap::new();
                for t in &topics {
                    let found = p
                        .fetch_publish_message_queues(t)
                        .await
                        .map_err(|e| format!("topic {t}: {}", rmq::describe(&e)));
                    let mut qs: Vec<Queue> = match found {
                        Ok(qs) => qs.iter().map(Queue::of).collect(),
                        Err(e) => {
                            p.shutdown().await;
                            return Err(e);
                        }
                    };
                    qs.sort();
                    qs.dedup();
                    if qs.is_empty() {
                        p.shutdown().await;
                        return Err(format!("topic {t} has no writable queue on the target"));
                    }
                    queues.insert(t.clone(), qs);
                }
                Ok((
                    MirrorProducer {
                        producer: Some(Arc::new(p)),
                    },
                    queues,
                ))
            }),
        )
        .await;
        match opened {
            Ok(Ok(r)) => r.map_err(|e| format!("name server {namesrv}: {e}")),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!(
                "name server {namesrv}: the producer did not start within {} s",
                (REQUEST_TIMEOUT * 2).as_secs()
            )),
        }
    }

    /// Sends copies of `messages` to `queue`, one after the other (each stored before the
    /// next is sent, which keeps their order). `Ok`: the target queue offset of the last
    /// one. `Err((sent, why))`: the first `sent` were stored (`SEND_OK`), the rest not.
    ///
    /// Not in batches: a batch's stored messages get the batch's message id in place of their
    /// own (seen with rocketmq-rust 1.0), and a copy must keep its id.
    pub async fn send(
        &self,
        queue: &Queue,
        messages: &[Polled],
    ) -> Result<Option<i64>, (usize, String)> {
        let p = self
            .producer
            .clone()
            .ok_or((0, "the producer is shut down".to_string()))?;
        let messages = messages.to_vec();
        let topic = queue.topic.clone();
        let mq = queue.mq();
        // Aborted when this future is dropped (a stopped run): a send task left running would
        // interleave with the next run's copies of the same queue.
        let task = rmq::spawn_handle(async move {
            let mut last = None;
            for (sent, m) in messages.iter().enumerate() {
                let result = p
                    .send_to_queue_with_timeout(m.copy(&topic), mq.clone(), SEND_TIMEOUT_MS)
                    .await
                    .map_err(|e| (sent, rmq::describe(&e)))?;
                last = result.as_ref().map(|r| r.queue_offset as i64);
                match result.map(|r| r.send_status) {
                    Some(SendStatus::SendOk) => {}
                    // The master stored it; only its flush or replica did not confirm in
                    // time. Sending it again would store it twice.
                    Some(
                        s @ (SendStatus::FlushDiskTimeout
                        | SendStatus::FlushSlaveTimeout
                        | SendStatus::SlaveNotAvailable),
                    ) => {
                        tracing::warn!(status = ?s, %topic,
                            "event-router job: a copy was stored without its flush or replica \
                             confirmed");
                    }
                    None => return Err((sent, "the broker answered no send status".to_string())),
                }
            }
            Ok(last)
        })
        .map_err(|e| (0, e))?;
        let mut task = AbortOnDrop(Some(task));
        match task.0.as_mut() {
            Some(handle) => match handle.await {
                Ok(r) => r,
                Err(e) => Err((0, format!("RocketMQ client task failed: {e}"))),
            },
            None => Err((0, "the send was not started".to_string())),
        }
    }
}

/// A client task aborted when dropped.
struct AbortOnDrop<T>(Option<tokio::task::JoinHandle<T>>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

/// Where the copies of one source topic's queues go: a source queue (by its index among the
/// topic's queues, sorted by broker and id) goes to the target queue of the same index when
/// the target has at least as many queues, which keeps each queue's order; else by a hash
/// of the message's keys (keyless: the source index modulo the target's count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuePlacement {
    source_queues: usize,
    target_queues: usize,
}

impl QueuePlacement {
    pub fn new(source_queues: usize, target_queues: usize) -> QueuePlacement {
        QueuePlacement {
            source_queues,
            target_queues: target_queues.max(1),
        }
    }

    /// Whether every source queue keeps its own target queue.
    pub fn keeps_queues(&self) -> bool {
        self.target_queues >= self.source_queues
    }

    /// The target queue index of a message read from source queue index `source`.
    pub fn target(&self, source: usize, keys: Option<&str>) -> usize {
        if self.keeps_queues() {
            return source;
        }
        match keys.filter(|k| !k.is_empty()) {
            Some(k) => (super::murmur2(k.as_bytes()) & 0x7fff_ffff) as usize % self.target_queues,
            None => source % self.target_queues,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn endpoints() {
        let e = Endpoint::of(&json!({"address": "b:9876;a:9876", "acl_open": true,
            "user_name": "u", "password": "pw-secret", "ssl_open": "false"}))
        .unwrap();
        assert_eq!(e.servers(), "a:9876;b:9876");
        assert!(!format!("{e:?}").contains("pw-secret"));
        assert!(Endpoint::of(&json!({"instance_id": "x"})).is_err());
        let tls = Endpoint::of(&json!({"address": "a:1", "ssl_open": "true"})).unwrap_err();
        assert!(tls.contains("TLS"), "{tls}");
        let acl = Endpoint::of(&json!({"address": "a:1", "acl_open": true})).unwrap_err();
        assert!(acl.contains("acl_open"), "{acl}");
    }

    #[test]
    fn seek_to_values() {
        assert_eq!(SeekTo::parse(None), Ok(SeekTo::First));
        assert_eq!(SeekTo::parse(Some("FIRST")), Ok(SeekTo::First));
        assert_eq!(SeekTo::parse(Some("last")), Ok(SeekTo::Last));
        assert_eq!(
            SeekTo::parse(Some("1700000000000")),
            Ok(SeekTo::Timestamp(1_700_000_000_000))
        );
        assert!(SeekTo::parse(Some("yesterday")).is_err());
        assert!(SeekTo::parse(Some("-5")).is_err());
    }

    #[test]
    fn copyable_topics() {
        let named = vec!["broker-a".to_string(), "DefaultCluster".to_string()];
        for t in [
            "TBW102",
            "%RETRY%g",
            "%DLQ%g",
            "RMQ_SYS_TRANS_HALF_TOPIC",
            "SCHEDULE_TOPIC_XXXX",
            "broker-a",
            "DefaultCluster",
            "rmq_sys_wheel_timer",
        ] {
            assert!(!is_copyable_topic(t, &named), "{t}");
        }
        assert!(is_copyable_topic("orders", &named));
    }

    fn polled(body: usize, props: &[(&str, &str)]) -> Polled {
        Polled {
            queue: Queue {
                topic: "t".into(),
                broker: "b".into(),
                queue_id: 0,
            },
            offset: 0,
            body: vec![b'x'; body].into(),
            flag: 0,
            properties: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn copies_keep_tags_keys_and_user_properties() {
        let m = polled(3, &[("KEYS", "k1"), ("TAGS", "TagA"), ("color", "red")]);
        let c = m.copy("target");
        assert_eq!(c.topic().as_str(), "target");
        assert_eq!(c.tags().map(|t| t.to_string()), Some("TagA".into()));
        assert_eq!(
            c.property("color").map(|v| v.to_string()),
            Some("red".into())
        );
        assert_eq!(m.keys(), Some("k1"));
    }

    #[test]
    fn placement() {
        let same = QueuePlacement::new(4, 8);
        assert!(same.keeps_queues());
        assert_eq!(same.target(3, Some("k")), 3);
        let fewer = QueuePlacement::new(8, 2);
        assert!(!fewer.keeps_queues());
        assert_eq!(fewer.target(5, None), 1);
        let a = fewer.target(0, Some("order-1"));
        assert_eq!(a, fewer.target(7, Some("order-1")));
        assert!(a < 2);
    }
}
