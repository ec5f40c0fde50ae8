//! Cluster membership and partition leases: which nodes are alive, and which node routes
//! which partition of a shared (Kafka) channel log.
//!
//! * A node is alive while its heartbeat (`heartbeat`, every second or so) is recent; the
//!   row stays after it stops (the cluster view shows when it was last seen).
//! * A lease gives one node the right to route one partition until `expires_at`. It is taken
//!   (`acquire_lease`) only when free, expired or already the caller's; each change of owner
//!   increases its `epoch`, so a node that lost a lease and got it back can tell. A holder
//!   renews its leases (`renew_leases`) well inside their lifetime and hands one back
//!   (`release_lease`) after it stopped routing it; a node that died simply stops renewing,
//!   and its leases expire.
//! * Times are the callers' epoch milliseconds: nodes are assumed to have clocks within a
//!   fraction of a lease's lifetime of each other (NTP).
//!
//! * Singleton work (a broker source) holds a lease too, named by its task (partition 0).
//!   Its holder publishes the work's status (`put_task_status`) so every node shows the same;
//!   the write is fenced: it lands only while the writer holds that lease at that epoch, so a
//!   node that lost the work can never overwrite what the new owner reports.
//!
//! Schema (version 6): `cluster_nodes(node, address, started_at, heartbeat_at)` and
//! `partition_leases(topic, partition, owner, epoch, expires_at)`; (version 7)
//! `task_status(task, owner, epoch, state, error_code, error_message, restarts, updated_at)`
//! and `cluster_settings(name, value)` (what every node must agree on, such as a check value
//! sealed with the secrets key); (version 8) `task_candidates(task, node)`: which nodes can
//! run which singleton task.

use crate::common::{backend, pg_sql, sqlite_sql};
use crate::{PgStore, Result, SqliteStore};
use async_trait::async_trait;

/// A node as last heard from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub node: String,
    /// Where its API listens (for the cluster view).
    pub address: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
}

/// One partition's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub topic: String,
    pub partition: u32,
    pub owner: String,
    pub epoch: u64,
    pub expires_at: i64,
}

/// The status of a piece of singleton work, as its lease holder last published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStatusRow {
    /// The task's lease name.
    pub task: String,
    pub owner: String,
    pub epoch: u64,
    /// `RUNNING`, `ERROR` or `STOPPED`.
    pub state: String,
    pub error_code: String,
    pub error_message: String,
    pub restarts: u32,
    pub updated_at: i64,
}

#[async_trait]
pub trait ClusterStore: Send + Sync + 'static {
    /// Records that `node` (listening at `address`) is alive at `now_ms`.
    async fn heartbeat(&self, node: &str, address: &str, now_ms: i64) -> Result<()>;

    /// Nodes whose last heartbeat is at or after `since_ms`, ordered by name.
    async fn nodes(&self, since_ms: i64) -> Result<Vec<NodeRow>>;

    /// Takes (or keeps) the lease of a partition for `node` until `now_ms + ttl_ms`, if it is
    /// free, expired or already `node`'s; returns its epoch, or `None` if another node holds it.
    async fn acquire_lease(
        &self,
        topic: &str,
        partition: u32,
        node: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Option<u64>>;

    /// Extends every unexpired lease of `node` to `now_ms + ttl_ms`; returns the leases it
    /// holds now.
    async fn renew_leases(&self, node: &str, now_ms: i64, ttl_ms: i64) -> Result<Vec<Lease>>;

    /// Hands a lease back (expires it now) if `node` holds it.
    async fn release_lease(&self, topic: &str, partition: u32, node: &str) -> Result<()>;

    /// Every lease, ordered by (topic, partition).
    async fn leases(&self) -> Result<Vec<Lease>>;

    /// Publishes the status of task `row.task`, fenced: written only if `row.owner` holds the
    /// lease named `row.task` (partition 0) at `row.epoch`, unexpired at `row.updated_at`.
    /// Returns whether it was written.
    async fn put_task_status(&self, row: &TaskStatusRow) -> Result<bool>;

    /// Every published task status, ordered by task.
    async fn task_statuses(&self) -> Result<Vec<TaskStatusRow>>;

    /// Forgets singleton task `task`, whose resource was deleted, as node `node` at `now_ms`:
    /// its published status, and its lease when `node` holds it or it expired (a holder
    /// still stopping its run keeps its lease until it forgets the task itself; without a
    /// lease nobody can publish the status again, as that is fenced by it). Candidates go
    /// with each node's next `replace_task_candidates`.
    async fn forget_task(&self, task: &str, node: &str, now_ms: i64) -> Result<()>;

    /// Records that `node` can run exactly the singleton tasks `tasks` (replacing what it
    /// recorded before): a task's lease is assigned among the nodes that can run it.
    async fn replace_task_candidates(&self, node: &str, tasks: &[String]) -> Result<()>;

    /// Every (task, node) candidate pair, ordered by task then node.
    async fn task_candidates(&self) -> Result<Vec<(String, String)>>;

    /// The value of setting `name` shared by every node; stores `value` first when it has
    /// none (the first writer wins: racing callers all get the same value back).
    async fn setting_or_insert(&self, name: &str, value: &str) -> Result<String>;
}

pub(crate) const PG_MIGRATION_6: &[&str] = &[
    r#"CREATE TABLE cluster_nodes (
        node TEXT COLLATE "C" PRIMARY KEY,
        address TEXT NOT NULL,
        started_at BIGINT NOT NULL,
        heartbeat_at BIGINT NOT NULL
    )"#,
    r#"CREATE TABLE partition_leases (
        topic TEXT COLLATE "C" NOT NULL,
        partition BIGINT NOT NULL,
        owner TEXT COLLATE "C" NOT NULL,
        epoch BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        PRIMARY KEY (topic, partition)
    )"#,
];

pub(crate) const SQLITE_MIGRATION_6: &[&str] = &[
    "CREATE TABLE cluster_nodes (
        node TEXT PRIMARY KEY,
        address TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        heartbeat_at INTEGER NOT NULL
    )",
    "CREATE TABLE partition_leases (
        topic TEXT NOT NULL,
        partition INTEGER NOT NULL,
        owner TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (topic, partition)
    )",
];

pub(crate) const PG_MIGRATION_7: &[&str] = &[
    r#"CREATE TABLE cluster_settings (
        name TEXT COLLATE "C" PRIMARY KEY,
        value TEXT NOT NULL
    )"#,
    r#"CREATE TABLE task_status (
        task TEXT COLLATE "C" PRIMARY KEY,
        owner TEXT COLLATE "C" NOT NULL,
        epoch BIGINT NOT NULL,
        state TEXT NOT NULL,
        error_code TEXT NOT NULL,
        error_message TEXT NOT NULL,
        restarts BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )"#,
];

pub(crate) const SQLITE_MIGRATION_7: &[&str] = &[
    "CREATE TABLE cluster_settings (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )",
    "CREATE TABLE task_status (
        task TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        state TEXT NOT NULL,
        error_code TEXT NOT NULL,
        error_message TEXT NOT NULL,
        restarts INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    )",
];

pub(crate) const PG_MIGRATION_8: &[&str] = &[r#"CREATE TABLE task_candidates (
        task TEXT COLLATE "C" NOT NULL,
        node TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (task, node)
    )"#];

pub(crate) const SQLITE_MIGRATION_8: &[&str] = &["CREATE TABLE task_candidates (
        task TEXT NOT NULL,
        node TEXT NOT NULL,
        PRIMARY KEY (task, node)
    )"];

type NodeTuple = (String, String, i64, i64);
type TaskStatusTuple = (String, String, i64, String, String, String, i64, i64);

fn task_status_row(t: TaskStatusTuple) -> TaskStatusRow {
    TaskStatusRow {
        task: t.0,
        owner: t.1,
        epoch: u64::try_from(t.2).unwrap_or(0),
        state: t.3,
        error_code: t.4,
        error_message: t.5,
        restarts: u32::try_from(t.6).unwrap_or(u32::MAX),
        updated_at: t.7,
    }
}
type LeaseTuple = (String, i64, String, i64, i64);

fn node_row(t: NodeTuple) -> NodeRow {
    NodeRow {
        node: t.0,
        address: t.1,
        started_at: t.2,
        heartbeat_at: t.3,
    }
}

fn lease(t: LeaseTuple) -> Lease {
    Lease {
        topic: t.0,
        partition: u32::try_from(t.1).unwrap_or(0),
        owner: t.2,
        epoch: u64::try_from(t.3).unwrap_or(0),
        expires_at: t.4,
    }
}

// One statement each, written for PostgreSQL (`$n` parameters) and given to SQLite with `?n`
// (its numbered parameters: SQLite would read `$n` as names, numbered by first use). The
// upsert's WHERE makes "free, expired or mine" and the epoch bump one atomic step.
const HEARTBEAT: &str = "INSERT INTO cluster_nodes (node, address, started_at, heartbeat_at) \
     VALUES ($1, $2, $3, $3) ON CONFLICT (node) DO UPDATE SET address = excluded.address, \
     heartbeat_at = excluded.heartbeat_at";
const NODES: &str = "SELECT node, address, started_at, heartbeat_at FROM cluster_nodes \
     WHERE heartbeat_at >= $1 ORDER BY node";
const ACQUIRE: &str = "INSERT INTO partition_leases (topic, partition, owner, epoch, expires_at) \
     VALUES ($1, $2, $3, 1, $5) ON CONFLICT (topic, partition) DO UPDATE SET \
     epoch = CASE WHEN partition_leases.owner = excluded.owner THEN partition_leases.epoch \
                  ELSE partition_leases.epoch + 1 END, \
     owner = excluded.owner, expires_at = excluded.expires_at \
     WHERE partition_leases.owner = excluded.owner OR partition_leases.expires_at < $4 \
     RETURNING epoch";
const RENEW: &str = "UPDATE partition_leases SET expires_at = $3 \
     WHERE owner = $1 AND expires_at >= $2 \
     RETURNING topic, partition, owner, epoch, expires_at";
const RELEASE: &str = "UPDATE partition_leases SET expires_at = 0 \
     WHERE topic = $1 AND partition = $2 AND owner = $3";
const LEASES: &str = "SELECT topic, partition, owner, epoch, expires_at FROM partition_leases \
     ORDER BY topic, partition";

// The fence: the row is written only by the holder of the task's lease at that epoch.
const PUT_TASK_STATUS: &str = "INSERT INTO task_status (task, owner, epoch, state, error_code, \
     error_message, restarts, updated_at) \
     SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE EXISTS (SELECT 1 FROM partition_leases l \
     WHERE l.topic = $1 AND l.partition = 0 AND l.owner = $2 AND l.epoch = $3 \
     AND l.expires_at >= $8) \
     ON CONFLICT (task) DO UPDATE SET owner = excluded.owner, epoch = excluded.epoch, \
     state = excluded.state, error_code = excluded.error_code, \
     error_message = excluded.error_message, restarts = excluded.restarts, \
     updated_at = excluded.updated_at WHERE task_status.epoch <= excluded.epoch";
const TASK_STATUSES: &str = "SELECT task, owner, epoch, state, error_code, error_message, \
     restarts, updated_at FROM task_status ORDER BY task";

const DELETE_CANDIDATES: &str = "DELETE FROM task_candidates WHERE node = $1";
const FORGET_TASK_STATUS: &str = "DELETE FROM task_status WHERE task = $1";
const FORGET_TASK_LEASE: &str = "DELETE FROM partition_leases WHERE topic = $1 \
     AND partition = 0 AND (owner = $2 OR expires_at < $3)";
const INSERT_CANDIDATE: &str = "INSERT INTO task_candidates (task, node) VALUES ($1, $2) \
     ON CONFLICT (task, node) DO NOTHING";
const CANDIDATES: &str = "SELECT task, node FROM task_candidates ORDER BY task, node";
const INSERT_SETTING: &str =
    "INSERT INTO cluster_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
const SETTING: &str = "SELECT value FROM cluster_settings WHERE name = $1";

macro_rules! cluster_store {
    ($store:ty, $lock:ident, $sql:ident) => {
        #[async_trait]
        impl ClusterStore for $store {
            async fn heartbeat(&self, node: &str, address: &str, now_ms: i64) -> Result<()> {
                let _g = $lock!(self);
                sqlx::query(&$sql(HEARTBEAT))
                    .bind(node)
                    .bind(address)
                    .bind(now_ms)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| backend("heartbeat", e))?;
                Ok(())
            }

            async fn nodes(&self, since_ms: i64) -> Result<Vec<NodeRow>> {
                let rows: Vec<NodeTuple> = sqlx::query_as(&$sql(NODES))
                    .bind(since_ms)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| backend("nodes", e))?;
                Ok(rows.into_iter().map(node_row).collect())
            }

            async fn acquire_lease(
                &self,
                topic: &str,
                partition: u32,
                node: &str,
                now_ms: i64,
                ttl_ms: i64,
            ) -> Result<Option<u64>> {
                let _g = $lock!(self);
                let epoch: Option<i64> = sqlx::query_scalar(&$sql(ACQUIRE))
                    .bind(topic)
                    .bind(i64::from(partition))
                    .bind(node)
                    .bind(now_ms)
                    .bind(now_ms.saturating_add(ttl_ms))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| backend("acquire_lease", e))?;
                Ok(epoch.map(|e| u64::try_from(e).unwrap_or(0)))
            }

            async fn renew_leases(
                &self,
                node: &str,
                now_ms: i64,
                ttl_ms: i64,
            ) -> Result<Vec<Lease>> {
                let _g = $lock!(self);
                let rows: Vec<LeaseTuple> = sqlx::query_as(&$sql(RENEW))
                    .bind(node)
                    .bind(now_ms)
                    .bind(now_ms.saturating_add(ttl_ms))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| backend("renew_leases", e))?;
                let mut out: Vec<Lease> = rows.into_iter().map(lease).collect();
                out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
                Ok(out)
            }

            async fn release_lease(&self, topic: &str, partition: u32, node: &str) -> Result<()> {
                let _g = $lock!(self);
                sqlx::query(&$sql(RELEASE))
                    .bind(topic)
                    .bind(i64::from(partition))
                    .bind(node)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| backend("release_lease", e))?;
                Ok(())
            }

            async fn leases(&self) -> Result<Vec<Lease>> {
                let rows: Vec<LeaseTuple> = sqlx::query_as(&$sql(LEASES))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| backend("leases", e))?;
                Ok(rows.into_iter().map(lease).collect())
            }

            async fn put_task_status(&self, row: &TaskStatusRow) -> Result<bool> {
                let _g = $lock!(self);
                let r = sqlx::query(&$sql(PUT_TASK_STATUS))
                    .bind(&row.task)
                    .bind(&row.owner)
                    .bind(i64::try_from(row.epoch).unwrap_or(i64::MAX))
                    .bind(&row.state)
                    .bind(&row.error_code)
                    .bind(&row.error_message)
                    .bind(i64::from(row.restarts))
                    .bind(row.updated_at)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| backend("put_task_status", e))?;
                Ok(r.rows_affected() > 0)
            }

            async fn task_statuses(&self) -> Result<Vec<TaskStatusRow>> {
                let rows: Vec<TaskStatusTuple> = sqlx::query_as(&$sql(TASK_STATUSES))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| backend("task_statuses", e))?;
                Ok(rows.into_iter().map(task_status_row).collect())
            }

            async fn forget_task(&self, task: &str, node: &str, now_ms: i64) -> Result<()> {
                let _g = $lock!(self);
                let mut tx = self
                    .pool
                    .begin()
                    .await
                    .map_err(|e| backend("forget_task", e))?;
                sqlx::query(&$sql(FORGET_TASK_LEASE))
                    .bind(task)
                    .bind(node)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| backend("forget_task", e))?;
                sqlx::query(&$sql(FORGET_TASK_STATUS))
                    .bind(task)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| backend("forget_task", e))?;
                tx.commit().await.map_err(|e| backend("forget_task", e))
            }

            async fn replace_task_candidates(&self, node: &str, tasks: &[String]) -> Result<()> {
                let _g = $lock!(self);
                let mut tx = self
                    .pool
                    .begin()
                    .await
                    .map_err(|e| backend("replace_task_candidates", e))?;
                sqlx::query(&$sql(DELETE_CANDIDATES))
                    .bind(node)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| backend("replace_task_candidates", e))?;
                for t in tasks {
                    sqlx::query(&$sql(INSERT_CANDIDATE))
                        .bind(t)
                        .bind(node)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| backend("replace_task_candidates", e))?;
                }
                tx.commit()
                    .await
                    .map_err(|e| backend("replace_task_candidates", e))
            }

            async fn task_candidates(&self) -> Result<Vec<(String, String)>> {
                sqlx::query_as(&$sql(CANDIDATES))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| backend("task_candidates", e))
            }

            async fn setting_or_insert(&self, name: &str, value: &str) -> Result<String> {
                let _g = $lock!(self);
                sqlx::query(&$sql(INSERT_SETTING))
                    .bind(name)
                    .bind(value)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| backend("setting_or_insert", e))?;
                sqlx::query_scalar(&$sql(SETTING))
                    .bind(name)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| backend("setting_or_insert", e))
            }
        }
    };
}

cluster_store!(SqliteStore, sqlite_write, sqlite_sql);
cluster_store!(PgStore, no_lock, pg_sql);
