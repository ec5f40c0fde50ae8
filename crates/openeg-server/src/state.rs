//! Shared server state and the configuration the binary hands in.

use openeg_store::secrets::SecretBox;
use openeg_store::MetaStore;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// One AK/SK pair bound to one project (`docs/signing.md`).
#[derive(Clone)]
pub struct Credential {
    pub access_key: String,
    pub secret_key: String,
    pub project_id: String,
    pub domain_id: String,
}

impl std::fmt::Debug for Credential {
    // The SK never reaches logs, even through Debug.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("access_key", &self.access_key)
            .field("secret_key", &"******")
            .field("project_id", &self.project_id)
            .field("domain_id", &self.domain_id)
            .finish()
    }
}

/// Per-project quota limits (`docs/limits.md`).
#[derive(Debug, Clone)]
pub struct Quotas {
    pub channel: u64,
    pub channel_subscription: u64,
    pub source: u64,
    pub source_rabbitmq: u64,
    pub source_rocketmq: u64,
    pub subscription: u64,
    pub subscription_target: u64,
    pub connection: u64,
    pub private_endpoint: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            channel: 50,
            channel_subscription: 100,
            source: 100,
            source_rabbitmq: 10,
            source_rocketmq: 10,
            subscription: 500,
            subscription_target: 5,
            connection: 50,
            private_endpoint: 10,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Instance name used in `X-Request-Id`.
    pub node_name: String,
    pub credentials: Vec<Credential>,
    /// Largest accepted request body (`docs/limits.md`: 12 MiB).
    pub max_body_bytes: usize,
    /// Allowed `X-Sdk-Date` skew.
    pub clock_skew_secs: i64,
    pub quotas: Quotas,
    pub functiongraph_endpoint: Option<String>,
    pub smn_endpoint: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            node_name: "openeg-0".into(),
            credentials: Vec::new(),
            max_body_bytes: 12 * 1024 * 1024,
            clock_skew_secs: 15 * 60,
            quotas: Quotas::default(),
            functiongraph_endpoint: None,
            smn_endpoint: None,
        }
    }
}

/// A channel as PutEvents sees it: its name and the custom sources attached to it.
#[derive(Debug)]
pub struct PublishTarget {
    pub channel_id: String,
    pub is_default: bool,
    pub sources: HashSet<String>,
    /// `name`, `cross_account` and `policy` of a channel open to other accounts, else `None`.
    pub cross_account: Option<serde_json::Value>,
}

impl PublishTarget {
    /// Whether an account of another project may publish here (`openeg_api::channel_policy`).
    pub fn accepts_account(&self, owner_project: &str, account: &str) -> bool {
        self.cross_account.as_ref().is_some_and(|c| {
            openeg_api::channel_policy::allows_put_events(c, owner_project, account)
        })
    }
}

/// A cache entry: when it was loaded, and the channel.
pub type CachedTarget = (std::time::Instant, Arc<PublishTarget>);

/// Bounds how long another node's source change can go unseen by publishing; changes on
/// this node invalidate the cache at once.
pub const PUBLISH_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// Failed token-issuing attempts per access key, for rate limiting: `limit` failures within
/// a window block the key until the window ends.
///
/// The keys come from unauthenticated requests, so the map is bounded: when full, expired
/// windows are dropped first, then the oldest windows (down to 90 % of the bound, so the
/// sweep runs once per many inserts, not on each).
pub struct FailedLogins {
    /// Access key → (failures in the window, window start in ms).
    map: Mutex<HashMap<String, (u32, i64)>>,
    max_keys: usize,
}

impl Default for FailedLogins {
    fn default() -> Self {
        FailedLogins::with_capacity(FailedLogins::MAX_KEYS)
    }
}

impl FailedLogins {
    /// Access keys tracked at most.
    pub const MAX_KEYS: usize = 10_000;
    /// Length of a window.
    pub const WINDOW_MS: i64 = 60_000;

    pub fn with_capacity(max_keys: usize) -> Self {
        FailedLogins {
            map: Mutex::new(HashMap::new()),
            max_keys: max_keys.max(1),
        }
    }

    /// Whether `ak` has `limit` or more failures in its current window.
    pub fn blocked(&self, ak: &str, limit: u32, now: i64) -> bool {
        let map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        matches!(map.get(ak), Some((n, since)) if *n >= limit && now - since < Self::WINDOW_MS)
    }

    /// Counts one failure of `ak`.
    pub fn record(&self, ak: &str, now: i64) {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !map.contains_key(ak) && map.len() >= self.max_keys {
            map.retain(|_, (_, since)| now - *since < Self::WINDOW_MS);
            if map.len() >= self.max_keys {
                let keep = self.max_keys - self.max_keys.div_ceil(10);
                let mut starts: Vec<i64> = map.values().map(|(_, since)| *since).collect();
                let cut = starts.len() - keep;
                // Window starts at or below the cut-th oldest go; ties may take a few more.
                let (_, oldest_kept, _) = starts.select_nth_unstable(cut - 1);
                let threshold = *oldest_kept;
                map.retain(|_, (_, since)| *since > threshold);
            }
        }
        let e = map.entry(ak.to_string()).or_insert((0, now));
        if now - e.1 >= Self::WINDOW_MS {
            *e = (0, now);
        }
        e.0 += 1;
    }

    /// Access keys tracked now.
    pub fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

pub struct Inner {
    pub store: Arc<dyn MetaStore>,
    pub secrets: SecretBox,
    pub cfg: ServerConfig,
    pub creds: HashMap<String, Credential>,
    /// Projects known to exist with their default channel (avoids a store round trip).
    pub known_projects: Mutex<HashSet<String>>,
    pub failed_logins: FailedLogins,
    /// What publishing needs to know about a channel, cached for [`PUBLISH_CACHE_TTL`].
    pub publish_cache: Mutex<HashMap<(String, String), CachedTarget>>,
    /// The data plane; `None` answers publishing with 503 (a control-plane-only node).
    pub engine: Option<Arc<openeg_engine::Engine>>,
    /// Delivery state and traces (with the engine).
    pub delivery: Option<Arc<dyn openeg_store::delivery::DeliveryStore>>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(store: Arc<dyn MetaStore>, secrets: SecretBox, cfg: ServerConfig) -> Self {
        let creds = cfg
            .credentials
            .iter()
            .map(|c| (c.access_key.clone(), c.clone()))
            .collect();
        AppState(Arc::new(Inner {
            store,
            secrets,
            cfg,
            creds,
            known_projects: Mutex::new(HashSet::new()),
            failed_logins: FailedLogins::default(),
            publish_cache: Mutex::new(HashMap::new()),
            engine: None,
            delivery: None,
        }))
    }

    /// Attaches the data plane (call before serving).
    pub fn with_data_plane(
        store: Arc<dyn MetaStore>,
        secrets: SecretBox,
        cfg: ServerConfig,
        engine: Arc<openeg_engine::Engine>,
        delivery: Arc<dyn openeg_store::delivery::DeliveryStore>,
    ) -> Self {
        let AppState(inner) = AppState::new(store, secrets, cfg);
        match Arc::try_unwrap(inner) {
            Ok(mut i) => {
                i.engine = Some(engine);
                i.delivery = Some(delivery);
                AppState(Arc::new(i))
            }
            Err(shared) => AppState(shared),
        }
    }

    /// Channels or sources of a project changed: publishing re-reads them.
    pub fn invalidate_publish_cache(&self, project_id: &str) {
        if let Ok(mut c) = self.publish_cache.lock() {
            c.retain(|(p, _), _| p != project_id);
        }
    }

    /// The control plane changed a resource (subscription, custom source, event stream,
    /// router job): the engine re-reads it and acts (routes recompiled, pending deliveries of
    /// a deleted subscription dropped, long-running work started or stopped). Call after the
    /// store write; it returns once the runtime status reflects the change.
    pub async fn resource_changed(
        &self,
        kind: openeg_engine::ResourceKind,
        project_id: &str,
        id: &str,
    ) {
        if let Some(e) = &self.engine {
            e.resource_changed(kind, project_id, id).await;
        }
    }

    /// The runtime status of a supervised resource's work: this node's supervisor's. A node
    /// without a data plane, or whose supervisor has not seen the resource, reports what
    /// would be reported without running anything (`runtimes::status_without_data_plane`).
    /// `None`: not supervised (APPLICATION and official sources).
    ///
    /// Work whose document says it does not run (stopped, or not runnable in this build) is
    /// answered from the document alone: a change made through another node reaches this
    /// node's supervisor a moment later, and the answer must not lag the document.
    pub fn runtime_status(
        &self,
        kind: openeg_engine::TaskKind,
        rec: &openeg_store::Document,
    ) -> Option<openeg_engine::RuntimeStatus> {
        use openeg_engine::runtimes::{plan, status_without_data_plane, Plan};
        let from_document = || status_without_data_plane(kind, &rec.body, &self.cfg.node_name);
        match plan(kind, &rec.body) {
            Plan::Unsupervised => None,
            Plan::Stopped | Plan::Unrunnable(_) => from_document(),
            Plan::Run => self
                .engine
                .as_ref()
                .and_then(|e| e.runtime_status(kind, &rec.project_id, &rec.id))
                .or_else(from_document),
        }
    }
}

/// The authenticated caller, inserted into request extensions by the auth middleware.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The credential's project: every store call is keyed by it.
    pub project_id: String,
    pub access_key: String,
    /// Set only on PutEvents into another project's channel (cross-account publishing): the
    /// path's project, whose channel policy decides whether the call is allowed.
    pub foreign_project: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_logins_block_a_key_for_its_window() {
        let f = FailedLogins::default();
        for i in 0..10 {
            assert!(!f.blocked("ak", 10, 1_000 + i));
            f.record("ak", 1_000 + i);
        }
        assert!(f.blocked("ak", 10, 2_000));
        assert!(!f.blocked("other", 10, 2_000));
        assert!(!f.blocked("ak", 10, 1_000 + FailedLogins::WINDOW_MS));
        f.record("ak", 1_000 + FailedLogins::WINDOW_MS);
        assert!(!f.blocked("ak", 10, 1_000 + FailedLogins::WINDOW_MS));
    }

    #[test]
    fn failed_logins_stay_bounded_dropping_expired_then_oldest() {
        let f = FailedLogins::with_capacity(100);
        // 60 expired windows, then 40 live ones.
        for i in 0..60 {
            f.record(&format!("old{i}"), i);
        }
        let now = 10 * FailedLogins::WINDOW_MS;
        for i in 0..40 {
            for _ in 0..10 {
                f.record(&format!("live{i}"), now + i);
            }
        }
        assert_eq!(f.len(), 100);
        f.record("new0", now + 100);
        // The expired went first; every live block survives.
        assert_eq!(f.len(), 41);
        for i in 0..40 {
            assert!(f.blocked(&format!("live{i}"), 10, now + 200), "live{i}");
        }
        // A flood of distinct keys never grows the map past its bound, and the newest keys
        // are the ones kept.
        for i in 0..100_000 {
            f.record(&format!("flood{i}"), now + 1_000 + i);
            assert!(f.len() <= 100);
        }
        assert!(f.blocked("flood99999", 1, now + 101_000));
        assert!(!f.blocked("live0", 1, now + 200));
    }
}
