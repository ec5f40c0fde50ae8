//! A channel's subscriptions compiled for routing: one matcher over every enabled
//! subscription's filter, and per target its compiled transforms and sink.
//!
//! Disabled subscriptions stay in [`ChannelRoutes::targets`] (their pending retries still
//! deliver, `docs/limits.md`) but not in the matcher (they match nothing new).

use crate::Engine;
use openeg_api::subscription::{target_kind, TargetKind};
use openeg_connectors::sinks::{
    FunctionGraphConfig, FunctionGraphSink, InvokeType, SmnConfig, SmnSink, WebhookConfig,
    WebhookSink,
};
use openeg_connectors::Sink;
use openeg_rules::{CompiledTransform, Matcher, MatcherBuilder, TransformUse};
use openeg_store::{Kind, ListQuery};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How a target is reached.
pub enum Delivery {
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
    pub delivery: Delivery,
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
pub struct RouteCache(Mutex<HashMap<String, CacheEntry>>);

#[derive(Default)]
struct CacheEntry {
    generation: u64,
    routes: Option<Arc<ChannelRoutes>>,
}

/// A cache miss: compile, then offer the result with [`RouteCache::offer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Miss {
    generation: u64,
}

impl RouteCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CacheEntry>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached routes, or the generation a compile must start from.
    pub fn get(&self, topic: &str) -> Result<Arc<ChannelRoutes>, Miss> {
        let m = self.lock();
        let e = m.get(topic);
        match e.and_then(|e| e.routes.clone()) {
            Some(r) => Ok(r),
            None => Err(Miss {
                generation: e.map_or(0, |e| e.generation),
            }),
        }
    }

    /// Caches routes compiled since `miss`, unless the topic's subscriptions changed during the
    /// compile (then they may be stale: `false`, compile again).
    pub fn offer(&self, topic: &str, miss: Miss, routes: Arc<ChannelRoutes>) -> bool {
        let mut m = self.lock();
        let e = m.entry(topic.to_string()).or_default();
        if e.generation != miss.generation {
            return false;
        }
        e.routes = Some(routes);
        true
    }

    /// The topic's subscriptions changed: drop its routes and outdate running compiles.
    pub fn invalidate(&self, topic: &str) {
        let mut m = self.lock();
        let e = m.entry(topic.to_string()).or_default();
        e.generation += 1;
        e.routes = None;
    }
}

/// Compiles that may be outdated by concurrent changes before the last one is used uncached.
const COMPILE_TRIES: usize = 5;

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

impl Engine {
    /// The compiled routes of a channel, compiling them if needed.
    pub(crate) async fn routes_for(
        &self,
        project_id: &str,
        channel_id: &str,
    ) -> Result<Arc<ChannelRoutes>, String> {
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
    ) -> Result<ChannelRoutes, String> {
        let q = ListQuery {
            parent_id: Some(channel_id.to_string()),
            ..Default::default()
        };
        let (_, subs) = self
            .meta
            .list(project_id, Kind::Subscription, &q)
            .await
            .map_err(|e| format!("loading subscriptions: {e}"))?;
        let mut builder = MatcherBuilder::new();
        let mut matched = Vec::new();
        let mut targets = HashMap::new();
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
                match self.compile_target(project_id, &rec.id, &name, t) {
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

    fn compile_target(
        &self,
        project_id: &str,
        sub_id: &str,
        sub_name: &str,
        t: &Value,
    ) -> Result<TargetRoute, String> {
        let kind = target_kind(t).ok_or("unknown target kind")?;
        let mut t = t.clone();
        // Secrets (APIGW header values) are decrypted only here, for sending.
        self.secrets.reveal_json(&mut t);
        let payload_use = match kind {
            TargetKind::FunctionGraph | TargetKind::Workflow => TransformUse::FunctionGraphPayload,
            _ => TransformUse::Payload,
        };
        let default_transform = serde_json::json!({"type": "ORIGINAL"});
        let payload = CompiledTransform::compile(
            t.get("transform").unwrap_or(&default_transform),
            payload_use,
        )
        .map_err(|e| e.to_string())?;
        let subject = match t.pointer("/smn_detail/subject_transform") {
            Some(st) if !st.is_null() => Some(
                CompiledTransform::compile(st, TransformUse::SmnSubject)
                    .map_err(|e| e.to_string())?,
            ),
            _ => None,
        };
        let key = match t
            .pointer("/kafka_detail/keyTransform")
            .or_else(|| t.pointer("/rocketmq_detail/key_transform"))
        {
            Some(k) if !k.is_null() => {
                Some(CompiledTransform::compile(k, TransformUse::Key).map_err(|e| e.to_string())?)
            }
            _ => None,
        };
        let delivery = self.delivery_for(project_id, kind, &t);
        let target_id = str_at(&t, "/id").unwrap_or_default().to_string();
        Ok(TargetRoute {
            subscription_id: sub_id.to_string(),
            subscription_name: sub_name.to_string(),
            slot_key: format!("{sub_id}/{target_id}"),
            target_id,
            target_name: str_at(&t, "/name").unwrap_or_default().to_string(),
            retry_times: t
                .get("retry_times")
                .and_then(Value::as_u64)
                .unwrap_or(16)
                .min(100) as u32,
            payload,
            key,
            subject,
            delivery,
        })
    }

    fn delivery_for(&self, project_id: &str, kind: TargetKind, t: &Value) -> Delivery {
        let http = self.http.clone();
        match kind {
            TargetKind::Webhook => match str_at(t, "/detail/url") {
                Some(url) => Delivery::Sink(Box::new(WebhookSink::new(
                    http,
                    WebhookConfig {
                        url: url.to_string(),
                        headers: vec![],
                    },
                ))),
                None => Delivery::Unavailable("webhook url missing".into()),
            },
            TargetKind::Apigw => match str_at(t, "/apigw_detail/url") {
                Some(url) => {
                    let headers = t
                        .pointer("/apigw_detail/invocation_http_parameters/header_parameters")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|h| {
                            Some((
                                str_at(h, "/key")?.to_string(),
                                str_at(h, "/value").unwrap_or("").to_string(),
                            ))
                        })
                        .collect();
                    Delivery::Sink(Box::new(WebhookSink::new(
                        http,
                        WebhookConfig {
                            url: url.to_string(),
                            headers,
                        },
                    )))
                }
                None => Delivery::Unavailable("apigw url missing".into()),
            },
            TargetKind::FunctionGraph => {
                let Some(endpoint) = self.cfg.functiongraph_endpoint.clone() else {
                    return Delivery::Unavailable(
                        "functiongraph_endpoint is not configured".into(),
                    );
                };
                let invoke_type = if str_at(t, "/detail/invoke_type") == Some("ASYNC") {
                    InvokeType::Async
                } else {
                    InvokeType::Sync
                };
                let cfg = FunctionGraphConfig {
                    endpoint,
                    project_id: project_id.to_string(),
                    urn: str_at(t, "/detail/urn").unwrap_or_default().to_string(),
                    invoke_type,
                };
                Delivery::Sink(Box::new(FunctionGraphSink::new(http, &cfg)))
            }
            TargetKind::Workflow => {
                // FunctionGraph workflows are started through the FunctionGraph endpoint:
                // POST {endpoint}/v2/{project}/fgs/workflows/{workflow_id}/executions.
                let Some(endpoint) = self.cfg.functiongraph_endpoint.clone() else {
                    return Delivery::Unavailable(
                        "functiongraph_endpoint is not configured".into(),
                    );
                };
                let wf = str_at(t, "/detail/workflow_id").unwrap_or_default();
                let url = format!(
                    "{}/v2/{}/fgs/workflows/{}/executions",
                    endpoint.trim_end_matches('/'),
                    openeg_connectors::sinks::http::path_segment(project_id),
                    openeg_connectors::sinks::http::path_segment(wf)
                );
                Delivery::Sink(Box::new(WebhookSink::new(
                    http,
                    WebhookConfig {
                        url,
                        headers: vec![],
                    },
                )))
            }
            TargetKind::Smn => {
                let Some(endpoint) = self.cfg.smn_endpoint.clone() else {
                    return Delivery::Unavailable("smn_endpoint is not configured".into());
                };
                let cfg = SmnConfig {
                    endpoint,
                    project_id: project_id.to_string(),
                    urn: str_at(t, "/smn_detail/urn").unwrap_or_default().to_string(),
                };
                Delivery::Sink(Box::new(SmnSink::new(http, &cfg)))
            }
            TargetKind::Eg => Delivery::Channel {
                from_project: project_id.to_string(),
                project_id: str_at(t, "/eg_detail/target_project_id")
                    .unwrap_or_default()
                    .to_string(),
                channel_id: str_at(t, "/eg_detail/target_channel_id")
                    .unwrap_or_default()
                    .to_string(),
            },
            TargetKind::Kafka | TargetKind::RocketMq => Delivery::Unavailable(format!(
                "{} targets are not supported by this build yet",
                kind.wire_name()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
