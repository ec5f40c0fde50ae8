//! Partition ownership when several nodes share one channel log (Kafka): each partition is
//! routed by one node at a time, under a lease in the store (`openeg_store::cluster`).
//!
//! Every node runs a router task for every channel, but a partition's loop only routes while
//! this node holds the partition's lease (its *grant*, below). The balancer, once a second:
//! 1. heartbeats this node and reads the live nodes (heartbeat within [`NODE_TTL`]);
//! 2. renews this node's leases ([`LEASE_TTL`]);
//! 3. assigns every partition of every channel to one live node: nodes sorted by name,
//!    partition `p` of topic `t` to node `(hash(t) + p) mod n`, so each channel's partitions
//!    spread over the nodes and a partition moves only when the set of live nodes changes;
//! 4. takes the leases assigned to it that are free or expired, and gives back those assigned
//!    elsewhere once their loop stopped (a stopping loop waits for its attempts a moment and
//!    commits its offset first, so the next owner replays little).
//!
//! A node that dies stops renewing: its leases expire after [`LEASE_TTL`] and the live nodes
//! take its partitions (within about `LEASE_TTL` + one balance round). A node that cannot
//! reach the store stops routing before its leases can expire, so two nodes never route a
//! partition at once as long as clocks agree within a fraction of the lease. What was in
//! flight on a node that died is attempted again by the next owner (at-least-once).
//!
//! **Singleton work.** Supervised work (a RabbitMQ or RocketMQ source) must run on one node
//! at a time. Every node supervises it, but through [`Leased`]: the run waits for the lease
//! named [`task_lease_name`] (partition 0), assigned and moved exactly like a partition, and
//! stops when the grant moves away. The holder publishes the work's status each round,
//! fenced by the lease's epoch (`ClusterStore::put_task_status`), and every node reads the
//! published statuses back, so the API shows the owner's status whichever node answers.

use crate::supervisor::{ErrorInfo, Ready, RunState, Runtime, RuntimeStatus, StopSignal, TaskKey};
use crate::{now_ms, position, Engine, EngineError};
use openeg_store::cluster::{ClusterStore, TaskStatusRow};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long a lease lasts without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(6);
/// A node is live while its last heartbeat is this recent.
pub const NODE_TTL: Duration = Duration::from_secs(5);
/// How often the balancer runs.
pub const BALANCE_EVERY: Duration = Duration::from_secs(1);
/// Every this many rounds the balancer also starts routers for channels created elsewhere.
const CHANNEL_SCAN_ROUNDS: u64 = 5;

/// This node in a cluster: its name, where its API listens, and the shared store.
#[derive(Clone)]
pub struct ClusterConfig {
    pub node: String,
    pub address: String,
    pub store: Arc<dyn ClusterStore>,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("node", &self.node)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

type Key = (String, u32);

/// One partition as this node sees it.
struct Grant {
    /// `Some(epoch)` while this node may route the partition.
    grant: watch::Sender<Option<u64>>,
    /// Whether its loop is routing now.
    running: watch::Sender<bool>,
}

impl Grant {
    fn new() -> Grant {
        Grant {
            grant: watch::channel(None).0,
            running: watch::channel(false).0,
        }
    }
}

/// The grants of this node (see the module docs).
pub(crate) struct Ownership {
    cfg: ClusterConfig,
    grants: Mutex<HashMap<Key, Grant>>,
    /// Singleton work supervised here, by lease name: its task and how many [`Leased`]
    /// runtimes name it (a new revision is built before the old one is dropped).
    singletons: Mutex<HashMap<String, (TaskKey, usize)>>,
    /// The task statuses the cluster published, as of the last balance round.
    published: Mutex<HashMap<String, TaskStatusRow>>,
    /// The singleton tasks this node last recorded it can run (`None`: not yet this run).
    candidacy: Mutex<Option<Vec<String>>>,
}

/// The lease name of a piece of singleton work (channel log topics never contain `:`).
pub fn task_lease_name(key: &TaskKey) -> String {
    format!("task:{}:{}:{}", key.kind.as_str(), key.project_id, key.id)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Ownership {
    /// Forgets a deleted task's lease, published status and candidates.
    pub(crate) async fn forget_task(&self, name: &str) -> Result<(), openeg_store::StoreError> {
        lock(&self.published).remove(name);
        self.cfg
            .store
            .forget_task(name, &self.cfg.node, now_ms())
            .await
    }

    pub(crate) fn new(cfg: ClusterConfig) -> Ownership {
        Ownership {
            cfg,
            grants: Mutex::default(),
            singletons: Mutex::default(),
            published: Mutex::default(),
            candidacy: Mutex::default(),
        }
    }

    fn register_singleton(&self, name: &str, key: &TaskKey) {
        lock(&self.singletons)
            .entry(name.to_string())
            .or_insert_with(|| (key.clone(), 0))
            .1 += 1;
    }

    fn unregister_singleton(&self, name: &str) {
        let mut s = lock(&self.singletons);
        if let Some(e) = s.get_mut(name) {
            e.1 = e.1.saturating_sub(1);
            if e.1 == 0 {
                s.remove(name);
            }
        }
    }

    fn singletons(&self) -> Vec<(String, TaskKey)> {
        lock(&self.singletons)
            .iter()
            .map(|(n, (k, _))| (n.clone(), k.clone()))
            .collect()
    }

    /// This node's grant of a lease, now.
    fn grant_of(&self, name: &str, partition: u32) -> Option<u64> {
        self.with(name, partition, |g| *g.grant.borrow())
    }

    /// The status another node published for singleton work `key`, if that node holds its
    /// lease (published within [`NODE_TTL`]); `None` when this node holds it or nobody does.
    pub(crate) fn published_status(&self, key: &TaskKey) -> Option<RuntimeStatus> {
        let name = task_lease_name(key);
        if self.grant_of(&name, 0).is_some() {
            return None;
        }
        let row = lock(&self.published).get(&name).cloned()?;
        if row.owner == self.cfg.node || row.updated_at < now_ms() - NODE_TTL.as_millis() as i64 {
            return None;
        }
        let state = match row.state.as_str() {
            "RUNNING" => RunState::Running,
            "STOPPED" => RunState::Stopped,
            _ => RunState::Error,
        };
        Some(RuntimeStatus {
            state,
            error: (state == RunState::Error).then(|| ErrorInfo {
                code: row.error_code.clone(),
                message: row.error_message.clone(),
            }),
            node_name: row.owner,
            restarts: row.restarts,
        })
    }

    fn with<T>(&self, topic: &str, partition: u32, f: impl FnOnce(&Grant) -> T) -> T {
        let mut g = self.grants.lock().unwrap_or_else(|p| p.into_inner());
        f(g.entry((topic.to_string(), partition))
            .or_insert_with(Grant::new))
    }

    /// The partition's grant, to wait on.
    pub(crate) fn watch(&self, topic: &str, partition: u32) -> watch::Receiver<Option<u64>> {
        self.with(topic, partition, |g| g.grant.subscribe())
    }

    /// The partition's loop started or stopped routing.
    pub(crate) fn set_running(&self, topic: &str, partition: u32, running: bool) {
        self.with(topic, partition, |g| {
            g.running.send_replace(running);
        });
    }

    fn set_grant(&self, topic: &str, partition: u32, epoch: Option<u64>) {
        self.with(topic, partition, |g| {
            g.grant.send_if_modified(|v| {
                let changed = *v != epoch;
                *v = epoch;
                changed
            });
        });
    }

    fn is_running(&self, topic: &str, partition: u32) -> bool {
        self.with(topic, partition, |g| *g.running.borrow())
    }

    fn revoke_all(&self) {
        let g = self.grants.lock().unwrap_or_else(|p| p.into_inner());
        for grant in g.values() {
            grant.grant.send_replace(None);
        }
    }
}

/// Why singleton work does not run on a node that does not hold its lease.
pub const STANDBY: &str = "standby: this work runs on one node of the cluster at a time, and \
                           this node does not hold its lease (no node does while the lease \
                           moves)";

/// Singleton work in a cluster: `inner` runs only while this node holds the work's lease
/// (see the module docs). Building one registers the work with the balancer; dropping it
/// (the supervisor replaced or forgot the task) unregisters it, and the lease goes back.
pub(crate) struct Leased {
    own: Arc<Ownership>,
    name: String,
    inner: Arc<dyn Runtime>,
}

impl Leased {
    pub(crate) fn new(own: Arc<Ownership>, key: &TaskKey, inner: Arc<dyn Runtime>) -> Leased {
        let name = task_lease_name(key);
        own.register_singleton(&name, key);
        Leased { own, name, inner }
    }
}

impl Drop for Leased {
    fn drop(&mut self) {
        self.own.unregister_singleton(&self.name);
    }
}

/// Marks a lease's work as running until dropped (the balancer hands a lease back only once
/// its work stopped).
struct RunningMark<'a>(&'a Ownership, &'a str);

impl Drop for RunningMark<'_> {
    fn drop(&mut self) {
        self.0.set_running(self.1, 0, false);
    }
}

#[async_trait::async_trait]
impl Runtime for Leased {
    async fn run(&self, mut stop: StopSignal, ready: Ready) -> Result<(), ErrorInfo> {
        let mut grant = self.own.watch(&self.name, 0);
        loop {
            let epoch = loop {
                if let Some(e) = *grant.borrow_and_update() {
                    break e;
                }
                ready.not_ready(ErrorInfo::not_run(STANDBY));
                tokio::select! {
                    _ = stop.stopped() => return Ok(()),
                    r = grant.changed() => if r.is_err() { return Ok(()) },
                }
            };
            // Running is marked before the grant is checked again, and the balancer revokes
            // before it checks running (both under the grants lock): either the balancer
            // sees it running and keeps the lease, or this run sees the grant gone.
            self.own.set_running(&self.name, 0, true);
            let mark = RunningMark(&self.own, &self.name);
            if *grant.borrow() != Some(epoch) {
                continue;
            }
            let moved = stop_signal(stop.0.clone(), grant.clone(), epoch);
            let result = self
                .inner
                .run(StopSignal(moved.clone()), ready.clone())
                .await;
            drop(mark);
            if stop.is_stopped() {
                return Ok(());
            }
            // Told to stop because the grant moved (even if it came back meanwhile): not a
            // failure, whatever the run returned.
            if !*moved.borrow() {
                result?;
                return Err(ErrorInfo::not_run("the task ended without being stopped"));
            }
            tracing::info!(task = %self.name, "singleton work stopped: its lease moved");
        }
    }
}

/// A stop signal for one routing run: set when the engine shuts down or the grant moves
/// away from `epoch`.
pub(crate) fn stop_signal(
    mut shutdown: watch::Receiver<bool>,
    mut grant: watch::Receiver<Option<u64>>,
    epoch: u64,
) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        loop {
            if *shutdown.borrow() || *grant.borrow() != Some(epoch) {
                let _ = tx.send(true);
                return;
            }
            tokio::select! {
                r = shutdown.changed() => if r.is_err() { let _ = tx.send(true); return; },
                r = grant.changed() => if r.is_err() { let _ = tx.send(true); return; },
                _ = tx.closed() => return,
            }
        }
    });
    rx
}

/// The live node that should route partition `partition` of `topic` (`nodes` sorted).
pub fn assigned_node<'a>(topic: &str, partition: u32, nodes: &'a [String]) -> Option<&'a str> {
    if nodes.is_empty() {
        return None;
    }
    let h = u64::from(position::partition_for(topic.as_bytes(), u32::MAX));
    let i = (h + u64::from(partition)) % nodes.len() as u64;
    nodes.get(i as usize).map(String::as_str)
}

/// The balancer (see the module docs); runs until shutdown, then gives back every lease.
pub(crate) async fn run(engine: Arc<Engine>, own: Arc<Ownership>) {
    let mut shutdown = engine.shutdown.clone();
    let mut tick = tokio::time::interval(BALANCE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut round: u64 = 0;
    // Until when the leases renewed last are certainly ours.
    let mut valid_until: i64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
        if round.is_multiple_of(CHANNEL_SCAN_ROUNDS) {
            engine.ensure_all_routers().await;
        }
        round += 1;
        // A round that hangs on the store counts as failed once it takes half a lease.
        let round_result = tokio::time::timeout(LEASE_TTL / 2, balance(&engine, &own))
            .await
            .unwrap_or_else(|_| {
                Err(openeg_store::StoreError::Backend(
                    "a balance round outlasted half a lease".into(),
                ))
            });
        match round_result {
            Ok(()) => valid_until = now_ms() + (LEASE_TTL.as_millis() as i64) / 2,
            Err(e) => {
                tracing::warn!(error = %e, "partition balancing failed");
                // Stop routing well before the leases could expire and be taken by others.
                if now_ms() > valid_until {
                    own.revoke_all();
                }
            }
        }
    }
    // Shutdown: the loops stop (and commit); then the leases go back at once, so the other
    // nodes take the partitions without waiting for them to expire.
    own.revoke_all();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let running = {
            let g = own.grants.lock().unwrap_or_else(|p| p.into_inner());
            g.values().any(|g| *g.running.borrow())
        };
        if !running || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Leases whose work still runs are not handed over: they expire instead.
    let store = &own.cfg.store;
    if let Ok(held) = store.renew_leases(&own.cfg.node, now_ms(), 0).await {
        for l in held {
            if own.is_running(&l.topic, l.partition) {
                continue;
            }
            let _ = store
                .release_lease(&l.topic, l.partition, &own.cfg.node)
                .await;
        }
    }
}

async fn balance(engine: &Engine, own: &Ownership) -> Result<(), openeg_store::StoreError> {
    let store = &own.cfg.store;
    let me = own.cfg.node.as_str();
    let now = now_ms();
    store.heartbeat(me, &own.cfg.address, now).await?;
    let mut nodes: Vec<String> = store
        .nodes(now - NODE_TTL.as_millis() as i64)
        .await?
        .into_iter()
        .map(|n| n.node)
        .collect();
    if !nodes.iter().any(|n| n == me) {
        nodes.push(me.to_string());
        nodes.sort();
    }
    let ttl = LEASE_TTL.as_millis() as i64;
    let held: BTreeMap<Key, u64> = store
        .renew_leases(me, now, ttl)
        .await?
        .into_iter()
        .map(|l| ((l.topic, l.partition), l.epoch))
        .collect();
    let mut wanted: Vec<Key> = Vec::new();
    for topic in engine.router_topics() {
        let partitions = match engine.log.partitions(&topic).await {
            Ok(n) => n.clamp(1, position::MAX_PARTITIONS),
            Err(e) => {
                tracing::warn!(%topic, error = %e, "cannot read the partitions of a channel log");
                continue;
            }
        };
        for p in 0..partitions {
            wanted.push((topic.clone(), p));
        }
    }
    let singletons = own.singletons();
    for (name, _) in &singletons {
        wanted.push((name.clone(), 0));
    }
    let candidates = candidates(own, &singletons, &nodes).await?;
    for (topic, p) in &wanted {
        // Singleton work goes to a live node that can run it (a node where the runtime
        // cannot be built, e.g. an older version during an upgrade, never gets it).
        let pool = candidates
            .get(topic)
            .map_or(nodes.as_slice(), Vec::as_slice);
        let mine = assigned_node(topic, *p, pool) == Some(me);
        match (mine, held.get(&(topic.clone(), *p))) {
            (true, Some(epoch)) => own.set_grant(topic, *p, Some(*epoch)),
            (true, None) => {
                let epoch = store.acquire_lease(topic, *p, me, now, ttl).await?;
                own.set_grant(topic, *p, epoch);
            }
            (false, Some(_)) => give_back(own, topic, *p).await?,
            (false, None) => own.set_grant(topic, *p, None),
        }
    }
    // Leases of channels this node no longer routes, and of work no longer supervised here.
    for (topic, p) in held.keys() {
        if !wanted.iter().any(|(t, q)| t == topic && q == p) {
            give_back(own, topic, *p).await?;
        }
    }
    publish_statuses(engine, own, &singletons).await
}

/// Records which singleton tasks this node can run (when that changed), and returns, for
/// each task this node runs, the live nodes that can run it (sorted).
async fn candidates(
    own: &Ownership,
    singletons: &[(String, TaskKey)],
    live: &[String],
) -> Result<HashMap<String, Vec<String>>, openeg_store::StoreError> {
    let store = &own.cfg.store;
    let mut mine: Vec<String> = singletons.iter().map(|(n, _)| n.clone()).collect();
    mine.sort();
    let recorded = lock(&own.candidacy).clone();
    if recorded.as_ref() != Some(&mine) {
        store.replace_task_candidates(&own.cfg.node, &mine).await?;
        *lock(&own.candidacy) = Some(mine.clone());
    }
    if mine.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = store.task_candidates().await?;
    Ok(candidate_pools(&rows, &mine, live, &own.cfg.node))
}

/// For each task of `mine`, the nodes of `live` recorded as able to run it, `me` always
/// among them (sorted, as `assigned_node` wants).
fn candidate_pools(
    rows: &[(String, String)],
    mine: &[String],
    live: &[String],
    me: &str,
) -> HashMap<String, Vec<String>> {
    let mut pools: HashMap<String, Vec<String>> = mine
        .iter()
        .map(|t| (t.clone(), vec![me.to_string()]))
        .collect();
    for (task, node) in rows {
        if let Some(pool) = pools.get_mut(task) {
            if node != me && live.iter().any(|n| n == node) {
                pool.push(node.clone());
            }
        }
    }
    for pool in pools.values_mut() {
        pool.sort();
        pool.dedup();
    }
    pools
}

/// Publishes the status of the singleton work this node holds, then reads every node's.
async fn publish_statuses(
    engine: &Engine,
    own: &Ownership,
    singletons: &[(String, TaskKey)],
) -> Result<(), openeg_store::StoreError> {
    let store = &own.cfg.store;
    for (name, key) in singletons {
        let (Some(epoch), Some(st)) = (own.grant_of(name, 0), engine.supervisor.status(key)) else {
            continue;
        };
        // The lease came this round and the work has not noticed yet: next round.
        if st.error.as_ref().is_some_and(|e| e.message == STANDBY) {
            continue;
        }
        let (code, message) = st.error.map(|e| (e.code, e.message)).unwrap_or_default();
        let row = TaskStatusRow {
            task: name.clone(),
            owner: own.cfg.node.clone(),
            epoch,
            state: match st.state {
                RunState::Running => "RUNNING",
                RunState::Error => "ERROR",
                RunState::Stopped => "STOPPED",
            }
            .to_string(),
            error_code: code,
            error_message: message,
            restarts: st.restarts,
            updated_at: now_ms(),
        };
        if !store.put_task_status(&row).await? {
            // The lease moved since this round began: the next round sees it.
            tracing::debug!(task = %name, epoch, "task status fenced out");
        }
    }
    let rows = store.task_statuses().await?;
    *lock(&own.published) = rows.into_iter().map(|r| (r.task.clone(), r)).collect();
    Ok(())
}

/// Stops routing a partition; the lease goes back once its loop stopped (until then it is
/// renewed, so nobody else routes it meanwhile).
async fn give_back(own: &Ownership, topic: &str, p: u32) -> Result<(), openeg_store::StoreError> {
    own.set_grant(topic, p, None);
    if !own.is_running(topic, p) {
        own.cfg.store.release_lease(topic, p, &own.cfg.node).await?;
    }
    Ok(())
}

/// `GET /openeg/v1/cluster`: the nodes, and for the caller's channels each partition's
/// owner and lag (events logged but not yet routed past). On the embedded log: this node
/// alone, owning every partition.
pub async fn view(engine: &Engine, project_id: &str) -> Result<serde_json::Value, EngineError> {
    use serde_json::json;
    let now = now_ms();
    let (nodes, leases) = match &engine.ownership {
        Some(own) => {
            let store = &own.cfg.store;
            let nodes = store
                .nodes(0)
                .await
                .map_err(EngineError::store("listing cluster nodes"))?;
            let leases = store
                .leases()
                .await
                .map_err(EngineError::store("listing partition leases"))?;
            (nodes, Some(leases))
        }
        None => (Vec::new(), None),
    };
    let live_since = now - NODE_TTL.as_millis() as i64;
    let nodes: Vec<serde_json::Value> = if leases.is_some() {
        nodes
            .iter()
            .map(|n| {
                json!({"name": n.node, "address": n.address, "started_at": n.started_at,
                       "heartbeat_at": n.heartbeat_at, "live": n.heartbeat_at >= live_since})
            })
            .collect()
    } else {
        vec![json!({"name": engine.cfg.node_name, "live": true})]
    };
    let prefix = format!("{project_id}.");
    let mut topics: Vec<String> = engine
        .router_topics()
        .into_iter()
        .filter(|t| t.starts_with(&prefix))
        .collect();
    topics.sort();
    let mut partitions = Vec::new();
    for t in &topics {
        let channel_id = &t[prefix.len()..];
        let count = engine
            .log
            .partitions(t)
            .await
            .map_err(EngineError::log("reading partitions"))?;
        for p in 0..count.clamp(1, position::MAX_PARTITIONS) {
            let end = engine
                .log
                .end_offset(t, p)
                .await
                .map_err(EngineError::log("reading the end offset"))?;
            let committed = engine
                .log
                .committed(crate::ROUTER_GROUP, t, p)
                .await
                .map_err(EngineError::log("reading the router offset"))?;
            let lag = end.saturating_sub(committed.unwrap_or(0));
            let mut row = json!({"channel_id": channel_id, "partition": p, "end_offset": end,
                "committed_offset": committed, "lag": lag});
            match &leases {
                Some(leases) => {
                    if let Some(l) = leases
                        .iter()
                        .find(|l| l.topic == *t && l.partition == p && l.expires_at >= now)
                    {
                        row["owner"] = json!(l.owner);
                        row["epoch"] = json!(l.epoch);
                        row["lease_expires_at"] = json!(l.expires_at);
                    } else {
                        row["owner"] = serde_json::Value::Null;
                    }
                }
                None => row["owner"] = json!(engine.cfg.node_name),
            }
            partitions.push(row);
        }
    }
    // Singleton work of the project: who holds it and the status it published.
    let mut tasks = Vec::new();
    if let (Some(own), Some(leases)) = (&engine.ownership, &leases) {
        let published = lock(&own.published).clone();
        for l in leases.iter().filter(|l| l.expires_at >= now) {
            let Some(rest) = l.topic.strip_prefix("task:") else {
                continue;
            };
            let mut parts = rest.splitn(3, ':');
            let (Some(kind), Some(project), Some(id)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if project != project_id {
                continue;
            }
            let mut row = json!({"kind": kind, "id": id, "owner": l.owner, "epoch": l.epoch,
                "lease_expires_at": l.expires_at});
            if let Some(p) = published.get(&l.topic).filter(|p| p.epoch == l.epoch) {
                row["state"] = json!(p.state);
                row["status_updated_at"] = json!(p.updated_at);
                if !p.error_message.is_empty() {
                    row["error_message"] = json!(p.error_message);
                }
            }
            tasks.push(row);
        }
    }
    Ok(json!({
        "node": engine.cfg.node_name,
        "log": if leases.is_some() { "shared" } else { "embedded" },
        "nodes": nodes,
        "partitions": partitions,
        "tasks": tasks,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn singleton_work_goes_only_to_live_nodes_that_can_run_it() {
        let live: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let rows: Vec<(String, String)> = [
            ("task:x", "a"),
            ("task:x", "c"),
            ("task:x", "gone"),
            ("task:y", "b"),
        ]
        .iter()
        .map(|(t, n)| (t.to_string(), n.to_string()))
        .collect();
        let pools = candidate_pools(&rows, &["task:x".into()], &live, "c");
        assert_eq!(
            pools["task:x"],
            ["a", "c"],
            "b cannot run it; gone is not live"
        );
        assert!(!pools.contains_key("task:y"), "only this node's tasks");
        // This node is a candidate even before its own row is read back.
        let pools = candidate_pools(&[], &["task:z".into()], &live, "b");
        assert_eq!(pools["task:z"], ["b"]);
        let pool = candidate_pools(&rows, &["task:x".into()], &live, "a")["task:x"].clone();
        let owner = assigned_node("task:x", 0, &pool).unwrap();
        assert!(["a", "c"].contains(&owner), "{owner}");
    }

    #[test]
    fn partitions_spread_over_nodes_and_stay_put() {
        let nodes: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        for t in ["p.ch1", "p.ch2", "q.other"] {
            let owners: std::collections::HashSet<&str> = (0..3)
                .map(|p| assigned_node(t, p, &nodes).unwrap())
                .collect();
            assert_eq!(owners.len(), 3, "{t}: one partition per node");
        }
        assert_eq!(assigned_node("t", 0, &[]), None);
        let one = vec!["solo".to_string()];
        assert!((0..5).all(|p| assigned_node("t", p, &one) == Some("solo")));
        // Stable: the same inputs give the same owner.
        assert_eq!(
            assigned_node("p.ch1", 1, &nodes),
            assigned_node("p.ch1", 1, &nodes)
        );
    }
}
