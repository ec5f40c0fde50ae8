//! What RocketMQ targets and sources share: the client's runtime and the client settings.
//!
//! rocketmq-rust's client (`rocketmq-client-rust`) runs only on a runtime it is given
//! explicitly (a `RuntimeOwner` and a `ClientRuntime`), and a process-wide client must outlive
//! any one caller's tokio runtime (each test has its own). So one dedicated thread owns that
//! runtime for the life of the process ([`spawn`] runs a future there; callers on any runtime
//! await its result). Its two worker threads do only RocketMQ I/O.
//!
//! [`ClientSettings`] is where to connect and as whom: the name server address list (`;`
//! separated, as RocketMQ writes it) and ACL credentials, if any. TLS is not built into this
//! build's client transport, so a connection asking for it is refused with that reason.

use rocketmq_client_rust::{
    AclClientRPCHook, ClientError, ClientRuntime, ClientRuntimeConfig, SessionCredentials,
};
use rocketmq_observability::TelemetryRuntimeGuard;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Worker threads of the RocketMQ client runtime.
const WORKER_THREADS: usize = 2;

/// The client runtime's thread: its tokio handle and the shared `ClientRuntime`.
struct Host {
    handle: tokio::runtime::Handle,
    client_runtime: Arc<ClientRuntime>,
}

fn host() -> Result<&'static Host, String> {
    static HOST: OnceLock<Result<Host, String>> = OnceLock::new();
    HOST.get_or_init(start_host).as_ref().map_err(Clone::clone)
}

fn start_host() -> Result<Host, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("openeg-rocketmq".into())
        .spawn(move || {
            let owner = match RuntimeOwner::plan(RuntimeConfig::for_parallelism(
                "openeg-rocketmq",
                WORKER_THREADS,
            )) {
                Ok(plan) => plan.build().map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let owner = match owner {
                Ok(o) => o,
                Err(e) => {
                    let _ = tx.send(Err(format!("starting the RocketMQ client runtime: {e}")));
                    return;
                }
            };
            // The guard lives as long as this thread, i.e. the process.
            let telemetry = TelemetryRuntimeGuard::noop();
            let client_runtime = match ClientRuntime::try_new(
                owner.root_context().component("openeg-rocketmq"),
                ClientRuntimeConfig::default(),
                telemetry.handle(),
            ) {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Err(format!("starting the RocketMQ client runtime: {e}")));
                    return;
                }
            };
            owner.block_on(async move {
                let _ = tx.send(Ok(Host {
                    handle: tokio::runtime::Handle::current(),
                    client_runtime,
                }));
                // The runtime serves spawned client work until the process ends.
                std::future::pending::<()>().await;
            });
            drop(telemetry);
        })
        .map_err(|e| format!("starting the RocketMQ client thread: {e}"))?;
    rx.recv()
        .map_err(|_| "the RocketMQ client thread ended while starting".to_string())?
}

/// The shared client runtime (starting its thread on first use).
pub(crate) fn client_runtime() -> Result<Arc<ClientRuntime>, String> {
    host().map(|h| h.client_runtime.clone())
}

/// Runs `fut` on the RocketMQ client runtime and waits for its output from any runtime.
/// `fut` is spawned at once: the returned future holds only its handle (so callers' futures
/// stay small and their `Send` proofs shallow).
pub(crate) fn spawn<F>(fut: F) -> impl Future<Output = Result<F::Output, String>> + Send
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handle = spawn_handle(fut);
    async move {
        handle?
            .await
            .map_err(|e| format!("RocketMQ client task failed: {e}"))
    }
}

/// Starts `fut` on the RocketMQ client runtime; its handle can be awaited from any runtime
/// and kept across cancelled waits.
pub(crate) fn spawn_handle<F>(fut: F) -> Result<tokio::task::JoinHandle<F::Output>, String>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    Ok(host()?.handle.spawn(fut))
}

/// Runs `fut` on the RocketMQ client runtime without waiting (shutdowns from `Drop`).
pub(crate) fn spawn_detached<F>(fut: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    if let Ok(h) = host() {
        h.handle.spawn(fut);
    }
}

/// Where a client connects and as whom. `Debug` leaves the secret key out.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSettings {
    /// Name server addresses, `host:port;host:port`.
    pub namesrv: String,
    /// ACL access key and secret key.
    pub acl: Option<(String, String)>,
}

impl std::fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSettings")
            .field("namesrv", &self.namesrv)
            .field("acl_user", &self.acl.as_ref().map(|(user, _)| user))
            .finish()
    }
}

impl ClientSettings {
    /// Settings from a name server list (`,` or `;` separated, `http://` allowed), whether
    /// TLS is asked for, and ACL credentials when ACL is on.
    pub fn new(
        namesrv: &str,
        tls: bool,
        acl: Option<(&str, &str)>,
        what: &str,
    ) -> Result<ClientSettings, String> {
        if tls {
            return Err(format!(
                "{what}: TLS to RocketMQ is not supported by this build; use a plain connection"
            ));
        }
        let list: Vec<&str> = namesrv
            .split([',', ';'])
            .map(|a| {
                let a = a.trim();
                a.strip_prefix("http://")
                    .or_else(|| a.strip_prefix("https://"))
                    .unwrap_or(a)
            })
            .collect();
        let addrs = openeg_api::connection::parse_addr_list(&list.join(","))
            .map_err(|e| format!("{what}: {e}"))?;
        let namesrv = addrs
            .iter()
            .map(|(h, p)| format!("{h}:{p}"))
            .collect::<Vec<_>>()
            .join(";");
        let acl = match acl {
            None => None,
            Some((user, secret)) if !user.is_empty() && !secret.is_empty() => {
                Some((user.to_string(), secret.to_string()))
            }
            Some(_) => return Err("ACL is enabled but its credentials are missing".into()),
        };
        Ok(ClientSettings { namesrv, acl })
    }

    /// The request hook signing every request with the ACL credentials, if any.
    pub(crate) fn rpc_hook(&self) -> Option<Arc<AclClientRPCHook>> {
        self.acl.as_ref().map(|(user, secret)| {
            Arc::new(AclClientRPCHook::new(SessionCredentials::with_keys(
                user.as_str(),
                secret.as_str(),
            )))
        })
    }

    /// A key identifying these settings (shared producers); holds the secret: never logged.
    pub(crate) fn cache_key(&self) -> String {
        match &self.acl {
            None => self.namesrv.clone(),
            Some((u, s)) => format!("{}\u{0}{u}\u{0}{s}", self.namesrv),
        }
    }
}

/// `true`, `"true"` (any case): RocketMQ flags arrive as booleans or strings.
pub(crate) fn flag(v: Option<&serde_json::Value>) -> bool {
    match v {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) => s.trim().eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// A client error as one line: the broker's response code when it sent one.
pub(crate) fn describe(e: &ClientError) -> String {
    match e.broker_response_code() {
        Some(code) => format!("{e} (response code {code})"),
        None => e.to_string(),
    }
}

/// A unique client instance name: the client shares one connection factory per instance
/// name, and that factory keeps the name server list of its first user.
pub(crate) fn instance_name(role: &str) -> String {
    format!("openeg-{role}-{}", uuid::Uuid::new_v4().simple())
}

/// One message as [`produce`] sends it.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    pub body: Vec<u8>,
    pub keys: Option<String>,
    pub tag: Option<String>,
    /// User properties.
    pub properties: Vec<(String, String)>,
}

/// One message as [`consume`] read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    /// The client's message id (`UNIQ_KEY`), else the broker's.
    pub msg_id: String,
    pub keys: Option<String>,
    pub tags: Option<String>,
    pub body: Vec<u8>,
    /// Every property, system ones included.
    pub properties: std::collections::BTreeMap<String, String>,
    /// Where it was read: broker, queue id and offset.
    pub broker: String,
    pub queue_id: i32,
    pub queue_offset: i64,
}

/// Tries of one message by [`produce`].
const PRODUCE_TRIES: u32 = 8;

/// Sends `messages` to `topic` one by one (synchronously: each `SEND_OK` before the next) with
/// a producer of its own; returns their message ids. For tests and `openeg-bench`.
pub async fn produce(
    settings: &ClientSettings,
    topic: &str,
    messages: Vec<Outgoing>,
) -> Result<Vec<String>, String> {
    use rocketmq_model::common::message::message_single::Message;
    let runtime = client_runtime()?;
    let settings = settings.clone();
    let topic = topic.to_string();
    spawn(async move {
        let mut config = rocketmq_client_rust::ClientConfig::default();
        config.set_instance_name(instance_name("tool-producer").into());
        let mut builder = rocketmq_client_rust::DefaultMQProducer::builder(runtime)
            .client_config(config)
            .producer_group("OPENEG_TOOL_PRODUCER")
            .name_server_addr(settings.namesrv.clone());
        if let Some(hook) = settings.rpc_hook() {
            builder = builder.rpc_hook(hook);
        }
        let mut producer = builder.build();
        producer.start().await.map_err(|e| describe(&e))?;
        let mut ids = Vec::with_capacity(messages.len());
        let mut failure = None;
        for m in messages {
            let mut msg = Message::builder()
                .topic(topic.as_str())
                .body(m.body)
                .build_unchecked();
            if let Some(k) = m.keys {
                msg.set_keys(k.into());
            }
            if let Some(t) = m.tag {
                msg.set_tags(t.into());
            }
            for (k, v) in m.properties {
                rocketmq_model::common::message::MessageTrait::put_property(
                    &mut msg,
                    k.into(),
                    v.into(),
                );
            }
            // A loaded broker refuses sends for a moment (SYSTEM_BUSY, flow control): each
            // message gets a few tries over about 30 s, as RocketMQ's own clients retry.
            let mut tries = 0u32;
            loop {
                tries += 1;
                let why = match producer.send_with_timeout(msg.clone(), 10_000).await {
                    Ok(Some(r)) if r.send_status == rocketmq_client_rust::SendStatus::SendOk => {
                        ids.push(r.msg_id.map(|i| i.to_string()).unwrap_or_default());
                        break;
                    }
                    Ok(r) => format!("send status {:?}", r.map(|r| r.send_status)),
                    Err(e) => describe(&e),
                };
                if tries >= PRODUCE_TRIES {
                    failure = Some(format!("{why} (after {tries} tries)"));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500 << (tries - 1).min(3))).await;
            }
            if failure.is_some() {
                break;
            }
        }
        producer.shutdown().await;
        match failure {
            Some(e) => Err(e),
            None => Ok(ids),
        }
    })
    .await?
}

/// Reads `topic` from its first offset in a consumer group of its own until `count` messages
/// arrived or `timeout` passed; returns what arrived. For tests and `openeg-bench`.
pub async fn consume(
    settings: &ClientSettings,
    topic: &str,
    group: &str,
    count: usize,
    timeout: std::time::Duration,
) -> Result<Vec<Consumed>, String> {
    use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
    let runtime = client_runtime()?;
    let settings = settings.clone();
    let topic = topic.to_string();
    let group = group.to_string();
    spawn(async move {
        let mut builder = rocketmq_client_rust::DefaultLitePullConsumer::builder(runtime)
            .instance_name(instance_name("tool-consumer"))
            .name_server_addr(settings.namesrv.clone())
            .consumer_group(group)
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset);
        if let Some(hook) = settings.rpc_hook() {
            builder = builder.rpc_hook(hook);
        }
        let consumer = builder.build().map_err(|e| describe(&e))?;
        consumer.subscribe(&topic).await.map_err(|e| describe(&e))?;
        consumer.start().await.map_err(|e| describe(&e))?;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < count && tokio::time::Instant::now() < deadline {
            for m in consumer.poll_with_timeout(500).await {
                let properties: std::collections::BTreeMap<String, String> = m
                    .properties()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let msg_id = properties
                    .get("UNIQ_KEY")
                    .cloned()
                    .unwrap_or_else(|| m.msg_id().to_string());
                out.push(Consumed {
                    msg_id,
                    keys: properties.get("KEYS").cloned(),
                    tags: properties.get("TAGS").cloned(),
                    body: m.body().map(|b| b.to_vec()).unwrap_or_default(),
                    properties,
                    broker: m.broker_name().to_string(),
                    queue_id: m.queue_id(),
                    queue_offset: m.queue_offset(),
                });
            }
        }
        consumer.shutdown().await;
        Ok(out)
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings() {
        let s = ClientSettings::new(" http://a:9876; b:9877 ,", false, None, "addr").unwrap();
        assert_eq!(s.namesrv, "a:9876;b:9877");
        assert_eq!(s.acl, None);
        let e = ClientSettings::new("a:1", true, None, "addr").unwrap_err();
        assert!(e.contains("TLS to RocketMQ is not supported"), "{e}");
        assert!(ClientSettings::new("", false, None, "addr").is_err());
        assert!(ClientSettings::new("a", false, None, "addr").is_err());
        let s = ClientSettings::new("a:1", false, Some(("ak", "sk-secret")), "addr").unwrap();
        assert_eq!(s.acl, Some(("ak".into(), "sk-secret".into())));
        assert!(!format!("{s:?}").contains("sk-secret"), "{s:?}");
        assert!(s.rpc_hook().is_some());
        assert!(ClientSettings::new("a:1", false, Some(("ak", "")), "addr").is_err());
        assert!(flag(Some(&serde_json::json!("TRUE"))));
        assert!(flag(Some(&serde_json::json!(true))));
        assert!(!flag(Some(&serde_json::json!("no"))));
        assert!(!flag(None));
    }
}
