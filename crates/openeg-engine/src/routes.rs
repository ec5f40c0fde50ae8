//! A channel's subscriptions compiled for routing: one matcher over every enabled
//! subscription's filter, and per target its compiled transforms and sink.
//!
//! Each stored target is parsed once into a typed [`TargetSpec`] (secrets revealed first); a
//! target that does not parse is skipped with a warning. The connection it names, if any, is
//! loaded from the store (secrets revealed) and handed to its sink's build
//! ([`openeg_connectors::sinks::build`]); a target whose sink cannot be built (endpoint not
//! configured, kind not supported yet, connection missing) becomes
//! [`Destination::Unavailable`].
//!
//! Disabled subscriptions stay in [`ChannelRoutes::targets`] (their pending retries still
//! deliver, `docs/limits.md`) but not in the matcher (they match nothing new).

use crate::{Engine, EngineError};
use openeg_api::target_spec::{TargetDetail, TargetSpec};
use openeg_connectors::sinks::dead_letter::{self, DeadLetterSink};
use openeg_connectors::sinks::{self, BuildContext, BuildError};
use openeg_connectors::Sink;
use openeg_rules::{CompiledTransform, Matcher, MatcherBuilder, RuleError, TransformUse};
use openeg_store::{Kind, ListQuery};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Where a target's failed events go when it has a `dead_letter_queue`.
pub enum DeadLetterRoute {
    Topic(DeadLetterSink),
    /// The queue's connection is missing or unusable: publishes fail (and are retried
    /// through the dead-letter window: the connection may be fixed) with this reason.
    Unavailable(String),
}

/// How a target is reached: a sink, another channel of this OpenEG (HC.EG), or not at all.
pub enum Destination {
    /// An HTTP-family sink.
    Sink(Box<dyn Sink>),
    /// HC.EG: republish into another channel of this OpenEG.
    Channel {
        /// The subscription's project (whose account publishes).
        from_project: String,
        project_id: String,
        channel_id: String,
    },
    /// The target cannot be delivered (kind not supported yet, endpoint not configured…);
    /// attempts fail without retry with this reason.
    Unavailable(String),
}

pub struct TargetRoute {
    pub subscription_id: String,
    pub subscription_name: String,
    pub target_id: String,
    /// The target's `name` as configured (e.g. `WEBHOOK`), for traces.
    pub target_name: String,
    pub retry_times: u32,
    pub payload: CompiledTransform,
    /// Kafka/RocketMQ key or SMN subject.
    pub key: Option<CompiledTransform>,
    pub subject: Option<CompiledTransform>,
    pub destination: Destination,
    pub dead_letter: Option<DeadLetterRoute>,
    /// Key of the concurrency slot (`<subscription>/<target>`).
    pub slot_key: String,
}

pub struct SubscriptionRoute {
    pub id: String,
    pub name: String,
    pub targets: Vec<Arc<TargetRoute>>,
}

pub struct ChannelRoutes {
    pub project_id: String,
    pub channel_id: String,
    pub matcher: Matcher,
    /// By matcher rule index.
    pub matched: Vec<SubscriptionRoute>,
    /// Every target of every subscription (enabled or not), by (subscription id, target id).
    pub targets: HashMap<(String, String), Arc<TargetRoute>>,
}

/// Compiled routes per channel topic, with a generation per topic so that a compile which
/// raced with a subscription change is never cached: the change bumps the generation, and a
/// compile started under an older one is thrown away and redone.
#[derive(Default)]
pub struct RouteCache(Mutex<Cache>);

#[derive(Default)]
struct Cache {
    topics: HashMap<String, CacheEntry>,
    /// Bumped when routes of many channels go stale at once (a connection changed): a compile
    /// started before it is not cached, whatever its topic.
    epoch: u64,
}

#[derive(Default)]
struct CacheEntry {
    generation: u64,
    routes: Option<Arc<ChannelRoutes>>,
}

/// A cache miss: compile, then offer the result with [`RouteCache::offer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Miss {
    generation: u64,
    epoch: u64,
}

impl RouteCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached routes, or the generation a compile must start from.
    pub fn get(&self, topic: &str) -> Result<Arc<ChannelRoutes>, Miss> {
        let m = self.lock();
        let e = m.topics.get(topic);
        match e.and_then(|e| e.routes.clone()) {
            Some(r) => Ok(r),
            None => Err(Miss {
                generation: e.map_or(0, |e| e.generation),
                epoch: m.epoch,
            }),
        }
    }

    /// Caches routes compiled since `miss`, unless the topic's subscriptions changed during the
    /// compile (then they may be stale: `false`, compile again).
    pub fn offer(&self, topic: &str, miss: Miss, routes: Arc<ChannelRoutes>) -> bool {
        let mut m = self.lock();
        if m.epoch != miss.epoch {
            return false;
        }
        let e = m.topics.entry(topic.to_string()).or_default();
        if e.generation != miss.generation {
            return false;
        }
        e.routes = Some(routes);
        true
    }

    /// The topic's subscriptions changed: drop its routes and outdate running compiles.
    pub fn invalidate(&self, topic: &str) {
        let mut m = self.lock();
        let e = m.topics.entry(topic.to_string()).or_default();
        e.generation += 1;
        e.routes = None;
    }

    /// Everything may be stale (changes were missed): drop every channel's routes and
    /// outdate every running compile.
    pub fn invalidate_all(&self) {
        let mut m = self.lock();
        m.epoch += 1;
        for e in m.topics.values_mut() {
            e.generation += 1;
            e.routes = None;
        }
    }

    /// Everything of a project may be stale (a connection its targets use changed): drop its
    /// channels' routes and outdate every running compile.
    pub fn invalidate_project(&self, project_id: &str) {
        let mut m = self.lock();
        m.epoch += 1;
        let prefix = format!("{project_id}.");
        for (t, e) in m.topics.iter_mut() {
            if t.starts_with(&prefix) {
                e.generation += 1;
                e.routes = None;
            }
        }
    }
}

/// Compiles that may be outdated by concurrent changes before the last one is used uncached.
const COMPILE_TRIES: usize = 5;

/// Connections resolved during one compile, by id (`None`: it does not exist).
type Connections = HashMap<String, Option<Value>>;

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

impl Engine {
    /// The compiled routes of a channel, compiling them if needed.
    pub(crate) async fn routes_for(
        &self,
        project_id: &str,
        channel_id: &str,
    ) -> Result<Arc<ChannelRoutes>, EngineError> {
        let t = crate::topic(project_id, channel_id);
        let mut tries = 0;
        loop {
            let miss = match self.routes.get(&t) {
                Ok(r) => return Ok(r),
                Err(miss) => miss,
            };
            let compiled = Arc::new(self.compile_routes(project_id, channel_id).await?);
            tries += 1;
            // Under a storm of changes, use the newest compile for this batch uncached: it
            // read the store after every change made before it started.
            if self.routes.offer(&t, miss, compiled.clone()) || tries >= COMPILE_TRIES {
                return Ok(compiled);
            }
        }
    }

    async fn compile_routes(
        &self,
        project_id: &str,
        channel_id: &str,
    ) -> Result<ChannelRoutes, EngineError> {
        let q = ListQuery {
            parent_id: Some(channel_id.to_string()),
            ..Default::default()
        };
        let (_, subs) = self
            .meta
            .list(project_id, Kind::Subscription, &q)
            .await
            .map_err(EngineError::store("loading subscriptions"))?;
        let mut builder = MatcherBuilder::new();
        let mut matched = Vec::new();
        let mut targets = HashMap::new();
        let mut connections = Connections::new();
        for rec in &subs {
            let body = &rec.body;
            let enabled = !matches!(
                str_at(body, "/status"),
                Some("DISABLED") | Some("FROZEN") | Some("ERROR")
            );
            let name = str_at(body, "/name").unwrap_or_default().to_string();
            let mut routes = Vec::new();
            for t in body
                .get("targets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let mut t = t.clone();
                // Secrets (APIGW header values) are decrypted only here, for sending.
                self.secrets.reveal_json(&mut t);
                let spec = match TargetSpec::parse(&t) {
                    Ok(spec) => spec,
                    Err(e) => {
                        tracing::warn!(subscription_id = %rec.id, error = %e, "target skipped");
                        continue;
                    }
                };
                for c in spec
                    .connection_id
                    .iter()
                    .chain(spec.dead_letter_queue.iter().map(|d| &d.connection_id))
                {
                    self.resolve_connection(project_id, c, &mut connections)
                        .await?;
                }
                match self.compile_target(project_id, &rec.id, &name, &spec, &connections) {
                    Ok(tr) => {
                        let tr = Arc::new(tr);
                        targets.insert((rec.id.clone(), tr.target_id.clone()), tr.clone());
                        routes.push(tr);
                    }
                    Err(e) => {
                        tracing::warn!(subscription_id = %rec.id, error = %e, "target skipped")
                    }
                }
            }
            if !enabled {
                continue;
            }
            let Some(filter) = body.pointer("/sources/0/filter") else {
                continue;
            };
            match builder.add_rule(filter, true) {
                Ok(idx) => {
                    debug_assert_eq!(idx, matched.len());
                    matched.push(SubscriptionRoute {
                        id: rec.id.clone(),
                        name,
                        targets: routes,
                    });
                }
                Err(e) => tracing::warn!(subscription_id = %rec.id, error = %e, "filter skipped"),
            }
        }
        Ok(ChannelRoutes {
            project_id: project_id.to_string(),
            channel_id: channel_id.to_string(),
            matcher: builder.build(),
            matched,
            targets,
        })
    }

    /// Loads a connection into `cache` (secrets revealed, for the sink) unless it is there.
    async fn resolve_connection(
        &self,
        project_id: &str,
        id: &str,
        cache: &mut Connections,
    ) -> Result<(), EngineError> {
        if cache.contains_key(id) {
            return Ok(());
        }
        let doc = self
            .meta
            .get(project_id, Kind::Connection, id)
            .await
            .map_err(EngineError::store(format!("loading connection {id}")))?
            .map(|rec| {
                let mut body = rec.body;
                self.secrets.reveal_json(&mut body);
                body
            });
        cache.insert(id.to_string(), doc);
        Ok(())
    }

    fn compile_target(
        &self,
        project_id: &str,
        sub_id: &str,
        sub_name: &str,
        spec: &TargetSpec,
        connections: &Connections,
    ) -> Result<TargetRoute, RuleError> {
        let compile = |t: &Value, usage| CompiledTransform::compile(t, usage);
        let payload = compile(&spec.transform, spec.kind().transform_use())?;
        let subject = spec
            .subject_transform()
            .map(|t| compile(t, TransformUse::SmnSubject))
            .transpose()?;
        let key = spec
            .key_transform()
            .map(|t| compile(t, TransformUse::Key))
            .transpose()?;
        Ok(TargetRoute {
            subscription_id: sub_id.to_string(),
            subscription_name: sub_name.to_string(),
            slot_key: format!("{sub_id}/{}", spec.id),
            target_id: spec.id.clone(),
            target_name: spec.name.clone(),
            retry_times: spec.retry_times,
            payload,
            key,
            subject,
            destination: self.destination_for(project_id, spec, connections),
            dead_letter: spec.dead_letter_queue.as_ref().map(|d| {
                let conn = connections.get(&d.connection_id).and_then(Option::as_ref);
                match dead_letter::build(d, conn) {
                    Ok(sink) => DeadLetterRoute::Topic(sink),
                    Err(e) => DeadLetterRoute::Unavailable(e.to_string()),
                }
            }),
        })
    }

    /// How a target is reached: HC.EG republishes here; every other kind is the sink its
    /// connector module builds, or `Unavailable` with the reason it cannot be built.
    fn destination_for(
        &self,
        project_id: &str,
        spec: &TargetSpec,
        conns: &Connections,
    ) -> Destination {
        let connection = match &spec.connection_id {
            Some(id) => match conns.get(id) {
                Some(Some(doc)) => Some(doc),
                _ => {
                    return Destination::Unavailable(
                        BuildError::MissingConnection(id.clone()).to_string(),
                    )
                }
            },
            None => None,
        };
        if let TargetDetail::Eg(d) = &spec.detail {
            return Destination::Channel {
                from_project: project_id.to_string(),
                project_id: d.target_project_id.clone(),
                channel_id: d.target_channel_id.clone(),
            };
        }
        let ctx = BuildContext {
            http: &self.http,
            project_id,
            functiongraph_endpoint: self.cfg.functiongraph_endpoint.as_deref(),
            smn_endpoint: self.cfg.smn_endpoint.as_deref(),
            connection,
        };
        match sinks::build(spec, &ctx) {
            Ok(sink) => Destination::Sink(sink),
            Err(e) => Destination::Unavailable(e.to_string()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use openeg_store::MetaStore;

    fn miss_of(c: &RouteCache, topic: &str) -> Miss {
        match c.get(topic) {
            Err(m) => m,
            Ok(_) => panic!("{topic} unexpectedly cached"),
        }
    }

    fn routes() -> Arc<ChannelRoutes> {
        Arc::new(ChannelRoutes {
            project_id: "p".into(),
            channel_id: "c".into(),
            matcher: MatcherBuilder::new().build(),
            matched: Vec::new(),
            targets: HashMap::new(),
        })
    }

    #[test]
    fn a_compile_that_raced_with_a_change_is_not_cached() {
        let cache = RouteCache::default();
        let miss = miss_of(&cache, "t");
        // A subscription changes while the compile reads the store.
        cache.invalidate("t");
        assert!(!cache.offer("t", miss, routes()), "stale compile cached");
        assert!(cache.get("t").is_err(), "the next batch must compile again");
        // A compile started after the change is cached.
        let miss = miss_of(&cache, "t");
        let r = routes();
        assert!(cache.offer("t", miss, r.clone()));
        assert!(cache.get("t").is_ok_and(|c| Arc::ptr_eq(&c, &r)));
        // A change drops cached routes; other topics are unaffected.
        let other = miss_of(&cache, "u");
        assert!(cache.offer("u", other, routes()));
        cache.invalidate("t");
        assert!(cache.get("t").is_err());
        assert!(cache.get("u").is_ok());
    }

    #[test]
    fn a_connection_change_drops_the_projects_routes_and_outdates_compiles() {
        let cache = RouteCache::default();
        for t in ["p.a", "p.b", "q.a"] {
            let m = miss_of(&cache, t);
            assert!(cache.offer(t, m, routes()));
        }
        // A compile of a channel never cached yet is running when the connection changes.
        let racing = miss_of(&cache, "p.c");
        cache.invalidate_project("p");
        assert!(cache.get("p.a").is_err() && cache.get("p.b").is_err());
        assert!(cache.get("q.a").is_ok(), "another project keeps its routes");
        assert!(
            !cache.offer("p.c", racing, routes()),
            "stale compile cached"
        );
        let fresh = miss_of(&cache, "p.c");
        assert!(cache.offer("p.c", fresh, routes()));
    }

    #[test]
    fn two_compiles_racing_the_same_change() {
        let cache = RouteCache::default();
        let first = miss_of(&cache, "t");
        cache.invalidate("t");
        let second = miss_of(&cache, "t");
        assert!(cache.offer("t", second, routes()));
        // The older compile finishing last must not overwrite the newer routes.
        let Ok(newer) = cache.get("t") else {
            panic!("the newer compile is cached")
        };
        assert!(!cache.offer("t", first, routes()));
        assert!(cache.get("t").is_ok_and(|c| Arc::ptr_eq(&c, &newer)));
    }

    /// An engine on an in-memory SQLite store and a log in a fresh temporary directory.
    pub(crate) async fn engine(
        cfg: crate::EngineConfig,
    ) -> (
        Arc<Engine>,
        Arc<openeg_store::SqliteStore>,
        std::path::PathBuf,
    ) {
        let store = Arc::new(openeg_store::SqliteStore::open_in_memory().await.unwrap());
        let dir = std::env::temp_dir().join(format!(
            "openeg-routes-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        let log = Arc::new(
            openeg_log::SegmentLog::open(dir.join("log"), openeg_log::LogConfig::default())
                .await
                .unwrap(),
        );
        let secrets = openeg_store::secrets::SecretBox::from_key_base64(
            "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",
        )
        .unwrap();
        let engine = Engine::start(store.clone(), store.clone(), log, secrets, cfg, vec![])
            .await
            .unwrap();
        (engine, store, dir)
    }

    fn record(kind: Kind, id: &str, parent: Option<&str>, body: Value) -> openeg_store::Document {
        openeg_store::Document {
            project_id: "p1".into(),
            kind,
            id: id.into(),
            name: id.into(),
            parent_id: parent.map(str::to_string),
            created_at: 1,
            updated_at: 1,
            body,
            refs: Vec::new(),
        }
    }

    fn reason(r: &ChannelRoutes, target: &str) -> String {
        match &r.targets[&("sub-1".to_string(), target.to_string())].destination {
            Destination::Unavailable(reason) => reason.clone(),
            Destination::Sink(_) => "sink".into(),
            Destination::Channel {
                from_project,
                project_id,
                channel_id,
            } => format!("channel {from_project}->{project_id}/{channel_id}"),
        }
    }

    /// Every kind compiles from its typed spec: sinks, HC.EG republishing, and the reasons of
    /// targets that cannot be delivered; connections are loaded and their secrets revealed.
    #[tokio::test]
    async fn targets_compile_from_typed_specs() {
        use serde_json::json;
        let (engine, store, dir) = engine(crate::EngineConfig::default()).await;
        let sealed = engine.secrets.encrypt("kafka-pass");
        let conns = [
            json!({"id": "conn-w", "name": "w", "type": "WEBHOOK"}),
            json!({"id": "conn-k", "name": "k", "type": "KAFKA",
                   "kafka_detail": {"instance_id": "i", "addr": "127.0.0.1:9092",
                                    "user_name": "u", "password": sealed}}),
        ];
        for c in conns {
            let id = c["id"].as_str().unwrap().to_string();
            store
                .insert(&record(Kind::Connection, &id, None, c), &[])
                .await
                .unwrap();
        }
        let o = json!({"type": "ORIGINAL", "value": ""});
        let sub = json!({"id": "sub-1", "name": "s1", "channel_id": "ch", "status": "ENABLED",
        "sources": [{"id": "s", "name": "app", "provider_type": "CUSTOM",
                     "filter": {"source": [{"op": "StringIn", "values": ["app"]}]}}],
        "targets": [
            // The reference's example: a WEBHOOK target carrying every detail object.
            {"id": "ref", "name": "WEBHOOK", "provider_type": "CUSTOM", "connection_id": "conn-w",
             "detail": {"url": "http://127.0.0.1:9/hook", "urn": "urn:fss:f", "invoke_type": "ASYNC"},
             "kafka_detail": {"topic": "t", "keyTransform": {"type": "NONE", "value": "string"}},
             "smn_detail": {"urn": "u", "subject_transform": {"type": "CONSTANT", "value": "s"}},
             "retry_times": 1000, "transform": o},
            {"id": "kafka", "name": "HC.Kafka", "connection_id": "conn-k",
             "kafka_detail": {"topic": "orders", "keyTransform": {"type": "CONSTANT", "value": "k"}},
             "retry_times": 2, "transform": o},
            {"id": "rmq", "name": "HC.RocketMQ", "connection_id": "conn-k",
             "rocketmq_detail": {"topic": "t"}, "transform": o},
            {"id": "gone", "name": "WEBHOOK", "connection_id": "conn-deleted",
             "detail": {"url": "http://127.0.0.1:9/hook"}, "transform": o},
            {"id": "fg", "name": "HC.FunctionGraph", "detail": {"urn": "urn:fss:f",
             "invoke_type": "SYNC", "agency_name": "a"}, "transform": o},
            {"id": "wf", "name": "HC.FunctionFlow", "detail": {"workflow_id": "w"}, "transform": o},
            {"id": "smn", "name": "HC.SMN", "smn_detail": {"urn": "u",
             "subject_transform": {"type": "CONSTANT", "value": "s"}}, "transform": o},
            {"id": "eg", "name": "HC.EG", "eg_detail": {"target_project_id": "p2",
             "target_channel_id": "ch2", "target_region": "r"}, "transform": o},
            {"id": "apigw", "name": "HC.APIGW", "apigw_detail": {"url": "http://127.0.0.1:9/a"},
             "transform": o},
            // Skipped: a kind this version does not know, and a webhook without its URL.
            {"id": "future", "name": "HC.Pulsar", "pulsar_detail": {}, "transform": o},
            {"id": "no-url", "name": "WEBHOOK", "detail": {}, "transform": o},
        ]});
        store
            .insert(&record(Kind::Subscription, "sub-1", Some("ch"), sub), &[])
            .await
            .unwrap();

        let r = engine.compile_routes("p1", "ch").await.unwrap();
        assert_eq!(r.matched.len(), 1);
        assert_eq!(r.matched[0].targets.len(), 9);
        assert!(!r
            .targets
            .contains_key(&("sub-1".to_string(), "future".to_string())));
        assert!(!r
            .targets
            .contains_key(&("sub-1".to_string(), "no-url".to_string())));
        assert_eq!(reason(&r, "ref"), "sink");
        assert_eq!(reason(&r, "apigw"), "sink");
        let by = |id: &str| r.targets[&("sub-1".to_string(), id.to_string())].clone();
        let reference = by("ref");
        assert_eq!(reference.retry_times, 100);
        assert_eq!(reference.target_name, "WEBHOOK");
        assert_eq!(reference.slot_key, "sub-1/ref");
        assert!(reference.key.is_none() && reference.subject.is_none());
        assert!(reference.payload.is_original());
        // A KAFKA connection without TLS: a producer (it connects lazily).
        assert_eq!(reason(&r, "kafka"), "sink");
        assert!(by("kafka").key.is_some());
        assert_eq!(by("kafka").retry_times, 2);
        // conn-k is a KAFKA connection: no rocketmq_detail.
        assert_eq!(
            reason(&r, "rmq"),
            "connection conn-k: the connection has no rocketmq_detail (is it a ROCKETMQ \
             connection?)"
        );
        assert_eq!(reason(&r, "gone"), "connection conn-deleted does not exist");
        assert_eq!(reason(&r, "fg"), "functiongraph_endpoint is not configured");
        assert_eq!(reason(&r, "wf"), "functiongraph_endpoint is not configured");
        assert_eq!(reason(&r, "smn"), "smn_endpoint is not configured");
        assert!(by("smn").subject.is_some());
        assert_eq!(reason(&r, "eg"), "channel p1->p2/ch2");

        // Connections are loaded once per compile, with their secrets revealed for the sink.
        let mut cache = Connections::new();
        engine
            .resolve_connection("p1", "conn-k", &mut cache)
            .await
            .unwrap();
        engine
            .resolve_connection("p1", "conn-deleted", &mut cache)
            .await
            .unwrap();
        assert_eq!(
            cache["conn-k"].as_ref().unwrap()["kafka_detail"]["password"],
            "kafka-pass"
        );
        assert!(cache["conn-deleted"].is_none());
        engine.shutdown().await;

        // With the endpoints configured, FunctionGraph, workflow and SMN targets are sinks.
        let (engine, store2, dir2) = engine_with_endpoints().await;
        let sub = json!({"id": "sub-1", "name": "s1", "status": "ENABLED",
        "sources": [{"filter": {"source": [{"op": "StringIn", "values": ["app"]}]}}],
        "targets": [
            {"id": "fg", "name": "HC.FunctionGraph", "detail": {"urn": "urn:fss:f"}, "transform": o},
            {"id": "wf", "name": "HC.FunctionFlow", "detail": {"workflow_id": "w"}, "transform": o},
            {"id": "smn", "name": "HC.SMN", "smn_detail": {"urn": "u"}, "transform": o},
        ]});
        store2
            .insert(&record(Kind::Subscription, "sub-1", Some("ch"), sub), &[])
            .await
            .unwrap();
        let r = engine.compile_routes("p1", "ch").await.unwrap();
        for t in ["fg", "wf", "smn"] {
            assert_eq!(reason(&r, t), "sink", "{t}");
        }
        engine.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&dir2);
    }

    async fn engine_with_endpoints() -> (
        Arc<Engine>,
        Arc<openeg_store::SqliteStore>,
        std::path::PathBuf,
    ) {
        engine(crate::EngineConfig {
            functiongraph_endpoint: Some("http://127.0.0.1:9/fg".into()),
            smn_endpoint: Some("http://127.0.0.1:9/smn".into()),
            ..Default::default()
        })
        .await
    }
}
