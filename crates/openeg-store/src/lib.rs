//! Metadata store: every EG resource is a JSON document row keyed by
//! `(project_id, kind, id)`, with the columns the control plane filters on (`name`,
//! `parent_id`, timestamps) and a side table of references (`refs`) for bound-resource checks
//! and reverse look-ups (which subscriptions use connection X, which target function URN Y).
//!
//! Two implementations pass the same suite: SQLite (embedded default) and PostgreSQL.
//!
//! Invariants:
//! * `(project_id, kind, name)` is unique when `name` is non-empty (duplicate → [`StoreError::Duplicate`]).
//! * [`MetaStore::insert`] checks its quota counts and inserts atomically: concurrent inserts
//!   never exceed a quota.
//! * Documents are stored as given; secret encryption happens before the store (see `secrets`).
//!
//! Delivery state and traces (the router's durable work queue) live in the same database
//! behind [`DeliveryStore`] (see [`delivery`]); both backends implement both traits.
//!
//! Entry points: [`open_stores`] (both handles), [`open_store`], [`SqliteStore`], [`PgStore`],
//! [`secrets::SecretBox`].

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

#[macro_use]
mod common;
pub mod changes;
pub mod cluster;
pub mod delivery;
pub mod mirror;
mod postgres;
pub mod secrets;
mod sqlite;

pub use cluster::ClusterStore;
pub use delivery::DeliveryStore;
pub use mirror::MirrorStore;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Resource kinds stored in the metadata table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Channel,
    Source,
    Connection,
    Subscription,
    Agency,
    Schema,
    SchemaVersion,
    Endpoint,
    EventStream,
    RouterCluster,
    RouterJob,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Channel => "channel",
            Kind::Source => "source",
            Kind::Connection => "connection",
            Kind::Subscription => "subscription",
            Kind::Agency => "agency",
            Kind::Schema => "schema",
            Kind::SchemaVersion => "schema_version",
            Kind::Endpoint => "endpoint",
            Kind::EventStream => "event_stream",
            Kind::RouterCluster => "router_cluster",
            Kind::RouterJob => "router_job",
        }
    }

    pub const ALL: [Kind; 11] = [
        Kind::Channel,
        Kind::Source,
        Kind::Connection,
        Kind::Subscription,
        Kind::Agency,
        Kind::Schema,
        Kind::SchemaVersion,
        Kind::Endpoint,
        Kind::EventStream,
        Kind::RouterCluster,
        Kind::RouterJob,
    ];

    /// The inverse of [`Kind::as_str`].
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One stored resource: its JSON document (`body`) and the row around it.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub project_id: String,
    pub kind: Kind,
    pub id: String,
    /// Unique per (project, kind) when non-empty; `""` for unnamed kinds.
    pub name: String,
    /// Owning resource (channel of a source/subscription, schema of a version), if any.
    pub parent_id: Option<String>,
    /// Unix epoch milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
    /// The resource document (the wire shape, secrets already encrypted).
    pub body: Value,
    /// Reference keys this resource holds, e.g. `"connection:<id>"`, `"fn:<urn>"`,
    /// `"source:<name>"`. Replaced as a whole on update.
    pub refs: Vec<String>,
}

/// Sort order of a listing. Ties are always broken by `id` in the same direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    #[default]
    CreatedAt,
    UpdatedAt,
    Name,
}

/// A listing query; every filter is optional and they AND together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListQuery {
    pub parent_id: Option<String>,
    /// Exact name.
    pub name: Option<String>,
    /// Substring of name, ASCII case-insensitive.
    pub fuzzy_name: Option<String>,
    /// The record holds this reference key.
    pub has_ref: Option<String>,
    /// Top-level string members of `body` that must equal the given value.
    pub body_eq: Vec<(String, String)>,
    /// Top-level string member of `body` that must contain the value (ASCII case-insensitive).
    pub body_contains: Vec<(String, String)>,
    pub sort: SortKey,
    pub descending: bool,
    pub offset: u64,
    /// `None` = no limit.
    pub limit: Option<u64>,
}

/// A count that must stay at or below `max` after an insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaCheck {
    /// Quota type name for the error message, e.g. `"CHANNEL"`.
    pub quota: &'static str,
    pub kind: Kind,
    /// Count only records with this parent (per-channel quotas).
    pub parent_id: Option<String>,
    /// Count only records whose body member equals this value (e.g. `type` = `RABBITMQ`).
    pub body_eq: Option<(String, String)>,
    /// The insert fails when the count after it would exceed `max`. The new record adds one
    /// only if it matches `kind`, `parent_id` and `body_eq`.
    pub max: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("duplicate name")]
    Duplicate,
    #[error("quota {0} exceeded")]
    Quota(&'static str),
    #[error("storage error: {0}")]
    Backend(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Holds an exclusive section of [`MetaStore::exclusive`]; leaving it is dropping it.
#[must_use = "the section is left when the guard is dropped"]
pub struct Exclusive {
    _held: Vec<Box<dyn Send>>,
}

impl Exclusive {
    pub(crate) fn new(held: Vec<Box<dyn Send>>) -> Self {
        Exclusive { _held: held }
    }
}

impl std::fmt::Debug for Exclusive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Exclusive")
    }
}

/// The process-local part of an exclusive section: one async mutex per name.
pub(crate) async fn local_section(name: &str) -> tokio::sync::OwnedMutexGuard<()> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static SECTIONS: OnceLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> =
        OnceLock::new();
    let m = {
        let mut map = SECTIONS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(name.to_string()).or_default().clone()
    };
    m.lock_owned().await
}

#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// Registers a project; returns true when it did not exist before (the caller then
    /// creates its default channel).
    async fn ensure_project(&self, project_id: &str) -> Result<bool>;

    /// Inserts after checking every quota, atomically.
    async fn insert(&self, rec: &Document, quotas: &[QuotaCheck]) -> Result<()>;

    async fn get(&self, project_id: &str, kind: Kind, id: &str) -> Result<Option<Document>>;

    /// Look-up by exact name; an empty name never matches (unnamed kinds).
    async fn get_by_name(
        &self,
        project_id: &str,
        kind: Kind,
        name: &str,
    ) -> Result<Option<Document>>;

    /// Replaces name, parent, body, refs and `updated_at` of an existing record; false if absent.
    /// Renaming onto another record's name → [`StoreError::Duplicate`].
    async fn update(&self, rec: &Document) -> Result<bool>;

    /// Deletes; false if absent.
    async fn delete(&self, project_id: &str, kind: Kind, id: &str) -> Result<bool>;

    /// Returns (total matches ignoring offset/limit, the page).
    async fn list(
        &self,
        project_id: &str,
        kind: Kind,
        q: &ListQuery,
    ) -> Result<(u64, Vec<Document>)>;

    /// Number of records of `kind` in the project, optionally under one parent.
    async fn count(&self, project_id: &str, kind: Kind, parent_id: Option<&str>) -> Result<u64>;

    /// Records of any kind in the project that hold reference `key`, ordered by (kind, id).
    async fn referencing(&self, project_id: &str, key: &str) -> Result<Vec<Document>>;

    /// Records of `kind` in **any** project that hold reference `key` (global uniqueness checks),
    /// ordered by (project, id).
    async fn referencing_global(&self, kind: Kind, key: &str) -> Result<Vec<Document>>;

    /// Every record of `kind` in **any** project, ordered by (project, id): what the engine's
    /// supervisor scans at start (sources, streams, router jobs).
    async fn list_global(&self, kind: Kind) -> Result<Vec<Document>>;

    /// Enters the exclusive section `name` for as long as the returned guard lives: no other
    /// holder of the same name, in this process or (PostgreSQL) any node on the database,
    /// is inside it meanwhile. For read-check-write sequences a single statement cannot make
    /// atomic (a name or client id unique across documents, version numbering).
    async fn exclusive(&self, name: &str) -> Result<Exclusive>;

    /// Stores (or replaces) an API token by the hex SHA-256 of the token; the token itself is
    /// never stored.
    async fn put_token(
        &self,
        token_sha256_hex: &str,
        project_id: &str,
        access_key: &str,
        expires_at: i64,
    ) -> Result<()>;

    /// Returns `(project_id, access_key, expires_at)`; expired tokens are returned too (until
    /// purged), so the caller must compare `expires_at` with the clock.
    async fn get_token(&self, token_sha256_hex: &str) -> Result<Option<(String, String, i64)>>;

    /// Deletes tokens with `expires_at <= now_ms`; returns how many.
    async fn purge_expired_tokens(&self, now_ms: i64) -> Result<u64>;
}

/// Both store handles over one database (one pool / connection set).
#[derive(Clone)]
pub struct Stores {
    pub meta: Arc<dyn MetaStore>,
    pub delivery: Arc<dyn DeliveryStore>,
    /// Cluster membership and partition leases (`cluster.rs`).
    pub cluster: Arc<dyn ClusterStore>,
    /// The PostgreSQL store when that is the backend (its change feed: `changes.rs`).
    pub postgres: Option<Arc<PgStore>>,
}

/// Opens the configured database: PostgreSQL when `database_url` is given, else SQLite at
/// `data_dir/openeg.db` (the directory is created if missing). Migrations run either way.
/// Both handles share the same pool.
pub async fn open_stores(database_url: Option<&str>, data_dir: &Path) -> Result<Stores> {
    match database_url {
        Some(url) => {
            let s = Arc::new(PgStore::connect(url).await?);
            Ok(Stores {
                meta: s.clone(),
                delivery: s.clone(),
                cluster: s.clone(),
                postgres: Some(s),
            })
        }
        None => {
            std::fs::create_dir_all(data_dir)
                .map_err(|e| StoreError::Backend(format!("cannot create data directory: {e}")))?;
            let s = Arc::new(SqliteStore::open(&data_dir.join("openeg.db")).await?);
            Ok(Stores {
                meta: s.clone(),
                delivery: s.clone(),
                cluster: s,
                postgres: None,
            })
        }
    }
}

/// Opens the configured store: PostgreSQL when `database_url` is given, else SQLite at
/// `data_dir/openeg.db` (the directory is created if missing). Migrations run either way.
/// Same as [`open_stores`], keeping only the metadata handle.
pub async fn open_store(database_url: Option<&str>, data_dir: &Path) -> Result<Arc<dyn MetaStore>> {
    Ok(open_stores(database_url, data_dir).await?.meta)
}
