//! Embedded SQLite implementation.
//!
//! Durability: WAL with `synchronous=FULL`. Metadata writes are rare (control-plane calls), so
//! the extra fsync per commit is cheap, and a create that returned 200 survives a power loss
//! (NORMAL+WAL may lose the last commits on power failure, though never corrupts).
//!
//! Writers are serialised twice: an in-process mutex (so concurrent API calls queue instead of
//! spinning in SQLite's busy handler) and `BEGIN IMMEDIATE` (so the quota count and the insert
//! sit under one write lock even if another process opens the file).

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use tokio::sync::Mutex;

use crate::common::{
    backend, body_text, build_record, counts_toward, map_write_err, now_ms, sort_column, to_i64,
    to_u64,
};
use crate::{Document, Kind, ListQuery, MetaStore, QuotaCheck, Result, StoreError};

mod delivery;

const MIGRATIONS: &[(i64, &[&str])] = &[
    (
    1,
    &[
        "CREATE TABLE projects (
            project_id TEXT PRIMARY KEY,
            created_at INTEGER NOT NULL
        )",
        "CREATE TABLE records (
            project_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            id TEXT NOT NULL,
            name TEXT NOT NULL,
            parent_id TEXT,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            body TEXT NOT NULL,
            PRIMARY KEY (project_id, kind, id)
        )",
        "CREATE UNIQUE INDEX records_name_uq ON records (project_id, kind, name) WHERE name <> ''",
        "CREATE INDEX records_parent ON records (project_id, kind, parent_id)",
        // `pos` keeps the caller's order (and duplicates) so a record round-trips exactly.
        "CREATE TABLE record_refs (
            project_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            id TEXT NOT NULL,
            pos INTEGER NOT NULL,
            ref_key TEXT NOT NULL,
            PRIMARY KEY (project_id, kind, id, pos),
            FOREIGN KEY (project_id, kind, id) REFERENCES records (project_id, kind, id)
                ON DELETE CASCADE
        )",
        "CREATE INDEX record_refs_project_key ON record_refs (project_id, ref_key)",
        "CREATE INDEX record_refs_kind_key ON record_refs (kind, ref_key)",
        "CREATE TABLE api_tokens (
            token_sha256 TEXT PRIMARY KEY,
            project_id TEXT NOT NULL,
            access_key TEXT NOT NULL,
            expires_at INTEGER NOT NULL
        )",
        "CREATE INDEX api_tokens_expires ON api_tokens (expires_at)",
    ],
    ),
    (2, delivery::MIGRATION_2),
    (3, delivery::MIGRATION_3),
    (4, delivery::MIGRATION_4),
    (5, delivery::MIGRATION_5),
    (6, crate::cluster::SQLITE_MIGRATION_6),
    (7, crate::cluster::SQLITE_MIGRATION_7),
    (8, crate::cluster::SQLITE_MIGRATION_8),
    (9, crate::mirror::SQLITE_MIGRATION_9),
];

const COLS: &str = "r.project_id, r.kind, r.id, r.name, r.parent_id, r.created_at, r.updated_at, \
    r.body, (SELECT json_group_array(f.ref_key ORDER BY f.pos) FROM record_refs f \
    WHERE f.project_id = r.project_id AND f.kind = r.kind AND f.id = r.id) AS refs";

/// SQLite-backed [`MetaStore`].
#[derive(Debug)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    pub(crate) write: Mutex<()>,
    /// Trace topic keys by project and channel id (`delivery.rs`, schema version 3).
    topics: std::sync::Mutex<HashMap<String, HashMap<String, i64>>>,
    /// Trace rows written per topic since its last indexing run (approximate across
    /// restarts: it starts at 0, so a tail may grow to twice the threshold once).
    unindexed: std::sync::Mutex<HashMap<i64, u64>>,
    /// See [`delivery::TRACE_INDEX_ROWS`].
    trace_index_rows: u64,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file and runs migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Backend(format!("cannot create database directory: {e}"))
            })?;
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // Trace and delivery indexes grow by thousands of rows a second; SQLite's 2 MiB
            // default page cache turns their inserts into disk reads (pages are allocated
            // lazily, so an idle connection stays small).
            .pragma("cache_size", "-32768");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await
            .map_err(|e| backend("open sqlite", e))?;
        Self::init(pool).await
    }

    /// A private in-memory database (tests). One connection, kept for the pool's lifetime,
    /// because every SQLite in-memory connection is a separate database.
    pub async fn open_in_memory() -> Result<Self> {
        Self::init(memory_pool().await?).await
    }

    /// Closes the pool (waits for checked-out connections).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn init(pool: SqlitePool) -> Result<Self> {
        let store = SqliteStore {
            pool,
            write: Mutex::new(()),
            topics: Default::default(),
            unindexed: Default::default(),
            trace_index_rows: delivery::TRACE_INDEX_ROWS,
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        let op = "migrate";
        let _g = self.write.lock().await;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| backend(op, e))?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS openeg_schema_migrations (
                version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| backend(op, e))?;
        let current: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM openeg_schema_migrations")
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| backend(op, e))?;
        for (version, stmts) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            for stmt in *stmts {
                sqlx::query(stmt)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| backend(op, e))?;
            }
            sqlx::query("INSERT INTO openeg_schema_migrations (version, applied_at) VALUES (?, ?)")
                .bind(version)
                .bind(now_ms())
                .execute(&mut *tx)
                .await
                .map_err(|e| backend(op, e))?;
        }
        tx.commit().await.map_err(|e| backend(op, e))
    }
}

/// The pool of a private in-memory database: one connection for the pool's lifetime.
async fn memory_pool() -> Result<SqlitePool> {
    let opts = SqliteConnectOptions::from_str("sqlite::memory:")
        .map_err(|e| backend("open sqlite", e))?
        .foreign_keys(true);
    SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(opts)
        .await
        .map_err(|e| backend("open sqlite", e))
}

fn row_to_document(row: &SqliteRow) -> Result<Document> {
    let g = |e| backend("decode row", e);
    build_record(
        row.try_get(0).map_err(g)?,
        row.try_get(1).map_err(g)?,
        row.try_get(2).map_err(g)?,
        row.try_get(3).map_err(g)?,
        row.try_get(4).map_err(g)?,
        row.try_get(5).map_err(g)?,
        row.try_get(6).map_err(g)?,
        row.try_get(7).map_err(g)?,
        row.try_get(8).map_err(g)?,
    )
}

fn rows_to_documents(rows: &[SqliteRow]) -> Result<Vec<Document>> {
    rows.iter().map(row_to_document).collect()
}

/// Appends the WHERE clause of a listing; every user value is a bound parameter.
fn push_filters<'a>(
    qb: &mut QueryBuilder<'a, Sqlite>,
    project_id: &'a str,
    kind: Kind,
    q: &'a ListQuery,
) {
    qb.push(" FROM records r WHERE r.project_id = ")
        .push_bind(project_id)
        .push(" AND r.kind = ")
        .push_bind(kind.as_str());
    if let Some(p) = &q.parent_id {
        qb.push(" AND r.parent_id = ").push_bind(p.as_str());
    }
    if let Some(n) = &q.name {
        qb.push(" AND r.name = ").push_bind(n.as_str());
    }
    if let Some(f) = &q.fuzzy_name {
        // instr() instead of LIKE: no wildcard escaping to get wrong; SQLite's lower() folds
        // ASCII only, which is exactly the contract.
        qb.push(" AND instr(lower(r.name), ")
            .push_bind(f.to_ascii_lowercase())
            .push(") > 0");
    }
    if let Some(k) = &q.has_ref {
        qb.push(
            " AND EXISTS (SELECT 1 FROM record_refs f WHERE f.project_id = r.project_id \
             AND f.kind = r.kind AND f.id = r.id AND f.ref_key = ",
        )
        .push_bind(k.as_str())
        .push(")");
    }
    // json_each() matches the member name as a bound value, so keys containing `.`, `"` or
    // `[` cannot be misread as a JSON path.
    for (k, v) in &q.body_eq {
        qb.push(" AND EXISTS (SELECT 1 FROM json_each(r.body) j WHERE j.key = ")
            .push_bind(k.as_str())
            .push(" AND j.type = 'text' AND j.value = ")
            .push_bind(v.as_str())
            .push(")");
    }
    for (k, v) in &q.body_contains {
        qb.push(" AND EXISTS (SELECT 1 FROM json_each(r.body) j WHERE j.key = ")
            .push_bind(k.as_str())
            .push(" AND j.type = 'text' AND instr(lower(j.value), ")
            .push_bind(v.to_ascii_lowercase())
            .push(") > 0)");
    }
}

async fn insert_refs(conn: &mut sqlx::SqliteConnection, rec: &Document, op: &str) -> Result<()> {
    // Batches stay far below SQLite's 32766 bound-parameter limit.
    for (chunk_no, chunk) in rec.refs.chunks(500).enumerate() {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO record_refs (project_id, kind, id, pos, ref_key) ");
        qb.push_values(chunk.iter().enumerate(), |mut b, (i, key)| {
            let pos = i64::try_from(chunk_no * 500 + i).unwrap_or(i64::MAX);
            b.push_bind(rec.project_id.as_str())
                .push_bind(rec.kind.as_str())
                .push_bind(rec.id.as_str())
                .push_bind(pos)
                .push_bind(key.as_str());
        });
        qb.build()
            .execute(&mut *conn)
            .await
            .map_err(|e| backend(op, e))?;
    }
    Ok(())
}

#[async_trait]
impl MetaStore for SqliteStore {
    async fn ensure_project(&self, project_id: &str) -> Result<bool> {
        let _g = self.write.lock().await;
        let r = sqlx::query(
            "INSERT INTO projects (project_id, created_at) VALUES (?, ?) \
             ON CONFLICT (project_id) DO NOTHING",
        )
        .bind(project_id)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(|e| backend("ensure_project", e))?;
        Ok(r.rows_affected() == 1)
    }

    async fn insert(&self, rec: &Document, quotas: &[QuotaCheck]) -> Result<()> {
        let op = "insert";
        let body = body_text(&rec.body)?;
        let _g = self.write.lock().await;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| backend(op, e))?;
        for q in quotas {
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new("SELECT COUNT(*) FROM records r WHERE r.project_id = ");
            qb.push_bind(rec.project_id.as_str())
                .push(" AND r.kind = ")
                .push_bind(q.kind.as_str());
            if let Some(p) = &q.parent_id {
                qb.push(" AND r.parent_id = ").push_bind(p.as_str());
            }
            if let Some((k, v)) = &q.body_eq {
                qb.push(" AND EXISTS (SELECT 1 FROM json_each(r.body) j WHERE j.key = ")
                    .push_bind(k.as_str())
                    .push(" AND j.type = 'text' AND j.value = ")
                    .push_bind(v.as_str())
                    .push(")");
            }
            let n: i64 = qb
                .build_query_scalar()
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| backend(op, e))?;
            let after = to_u64(n) + u64::from(counts_toward(rec, q));
            if after > q.max {
                // Dropping `tx` rolls back; nothing was written.
                return Err(StoreError::Quota(q.quota));
            }
        }
        sqlx::query(
            "INSERT INTO records (project_id, kind, id, name, parent_id, created_at, updated_at, body) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&rec.project_id)
        .bind(rec.kind.as_str())
        .bind(&rec.id)
        .bind(&rec.name)
        .bind(&rec.parent_id)
        .bind(rec.created_at)
        .bind(rec.updated_at)
        .bind(&body)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_write_err(op, e))?;
        insert_refs(&mut tx, rec, op).await?;
        tx.commit().await.map_err(|e| backend(op, e))
    }

    async fn get(&self, project_id: &str, kind: Kind, id: &str) -> Result<Option<Document>> {
        let sql = format!(
            "SELECT {COLS} FROM records r WHERE r.project_id = ? AND r.kind = ? AND r.id = ?"
        );
        let row = sqlx::query(&sql)
            .bind(project_id)
            .bind(kind.as_str())
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| backend("get", e))?;
        row.as_ref().map(row_to_document).transpose()
    }

    async fn get_by_name(
        &self,
        project_id: &str,
        kind: Kind,
        name: &str,
    ) -> Result<Option<Document>> {
        if name.is_empty() {
            return Ok(None);
        }
        let sql = format!(
            "SELECT {COLS} FROM records r WHERE r.project_id = ? AND r.kind = ? AND r.name = ?"
        );
        let row = sqlx::query(&sql)
            .bind(project_id)
            .bind(kind.as_str())
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| backend("get_by_name", e))?;
        row.as_ref().map(row_to_document).transpose()
    }

    async fn update(&self, rec: &Document) -> Result<bool> {
        let op = "update";
        let body = body_text(&rec.body)?;
        let _g = self.write.lock().await;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| backend(op, e))?;
        let r = sqlx::query(
            "UPDATE records SET name = ?, parent_id = ?, body = ?, updated_at = ? \
             WHERE project_id = ? AND kind = ? AND id = ?",
        )
        .bind(&rec.name)
        .bind(&rec.parent_id)
        .bind(&body)
        .bind(rec.updated_at)
        .bind(&rec.project_id)
        .bind(rec.kind.as_str())
        .bind(&rec.id)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_write_err(op, e))?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM record_refs WHERE project_id = ? AND kind = ? AND id = ?")
            .bind(&rec.project_id)
            .bind(rec.kind.as_str())
            .bind(&rec.id)
            .execute(&mut *tx)
            .await
            .map_err(|e| backend(op, e))?;
        insert_refs(&mut tx, rec, op).await?;
        tx.commit().await.map_err(|e| backend(op, e))?;
        Ok(true)
    }

    async fn delete(&self, project_id: &str, kind: Kind, id: &str) -> Result<bool> {
        let op = "delete";
        let _g = self.write.lock().await;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| backend(op, e))?;
        // Document row first, then refs (same order as update). The foreign key cascades too; the
        // explicit delete keeps refs consistent even without the foreign_keys pragma.
        let r = sqlx::query("DELETE FROM records WHERE project_id = ? AND kind = ? AND id = ?")
            .bind(project_id)
            .bind(kind.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| backend(op, e))?;
        sqlx::query("DELETE FROM record_refs WHERE project_id = ? AND kind = ? AND id = ?")
            .bind(project_id)
            .bind(kind.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| backend(op, e))?;
        tx.commit().await.map_err(|e| backend(op, e))?;
        Ok(r.rows_affected() > 0)
    }

    async fn list(
        &self,
        project_id: &str,
        kind: Kind,
        q: &ListQuery,
    ) -> Result<(u64, Vec<Document>)> {
        let op = "list";
        // One read transaction: total and page come from the same WAL snapshot.
        let mut tx = self.pool.begin().await.map_err(|e| backend(op, e))?;
        let mut cq: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT COUNT(*)");
        push_filters(&mut cq, project_id, kind, q);
        let total: i64 = cq
            .build_query_scalar()
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| backend(op, e))?;

        let mut pq: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT ");
        pq.push(COLS);
        push_filters(&mut pq, project_id, kind, q);
        let dir = if q.descending { "DESC" } else { "ASC" };
        pq.push(format_args!(
            " ORDER BY {} {dir}, r.id {dir} LIMIT ",
            sort_column(q.sort)
        ));
        // SQLite: a negative LIMIT means "no limit".
        pq.push_bind(q.limit.map(to_i64).unwrap_or(-1))
            .push(" OFFSET ")
            .push_bind(to_i64(q.offset));
        let rows = pq
            .build()
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| backend(op, e))?;
        tx.commit().await.map_err(|e| backend(op, e))?;
        Ok((to_u64(total), rows_to_documents(&rows)?))
    }

    async fn count(&self, project_id: &str, kind: Kind, parent_id: Option<&str>) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM records WHERE project_id = ? AND kind = ? \
             AND (? IS NULL OR parent_id = ?)",
        )
        .bind(project_id)
        .bind(kind.as_str())
        .bind(parent_id)
        .bind(parent_id)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| backend("count", e))?;
        Ok(to_u64(n))
    }

    async fn referencing(&self, project_id: &str, key: &str) -> Result<Vec<Document>> {
        let sql = format!(
            "SELECT {COLS} FROM records r WHERE r.project_id = ? AND EXISTS (SELECT 1 FROM \
             record_refs f WHERE f.project_id = r.project_id AND f.kind = r.kind \
             AND f.id = r.id AND f.ref_key = ?) ORDER BY r.kind, r.id"
        );
        let rows = sqlx::query(&sql)
            .bind(project_id)
            .bind(key)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("referencing", e))?;
        rows_to_documents(&rows)
    }

    async fn referencing_global(&self, kind: Kind, key: &str) -> Result<Vec<Document>> {
        let sql = format!(
            "SELECT {COLS} FROM records r WHERE r.kind = ? AND EXISTS (SELECT 1 FROM \
             record_refs f WHERE f.project_id = r.project_id AND f.kind = r.kind \
             AND f.id = r.id AND f.ref_key = ?) ORDER BY r.project_id, r.id"
        );
        let rows = sqlx::query(&sql)
            .bind(kind.as_str())
            .bind(key)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("referencing_global", e))?;
        rows_to_documents(&rows)
    }

    /// One process owns the database file: a process-local section is exclusive.
    async fn exclusive(&self, name: &str) -> Result<crate::Exclusive> {
        Ok(crate::Exclusive::new(vec![Box::new(
            crate::local_section(name).await,
        )]))
    }

    async fn list_global(&self, kind: Kind) -> Result<Vec<Document>> {
        let sql =
            format!("SELECT {COLS} FROM records r WHERE r.kind = ? ORDER BY r.project_id, r.id");
        let rows = sqlx::query(&sql)
            .bind(kind.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("list_global", e))?;
        rows_to_documents(&rows)
    }

    async fn put_token(
        &self,
        token_sha256_hex: &str,
        project_id: &str,
        access_key: &str,
        expires_at: i64,
    ) -> Result<()> {
        let _g = self.write.lock().await;
        sqlx::query(
            "INSERT INTO api_tokens (token_sha256, project_id, access_key, expires_at) \
             VALUES (?, ?, ?, ?) ON CONFLICT (token_sha256) DO UPDATE SET \
             project_id = excluded.project_id, access_key = excluded.access_key, \
             expires_at = excluded.expires_at",
        )
        .bind(token_sha256_hex)
        .bind(project_id)
        .bind(access_key)
        .bind(expires_at)
        .execute(&self.pool)
        .await
        .map_err(|e| backend("put_token", e))?;
        Ok(())
    }

    async fn get_token(&self, token_sha256_hex: &str) -> Result<Option<(String, String, i64)>> {
        sqlx::query_as(
            "SELECT project_id, access_key, expires_at FROM api_tokens WHERE token_sha256 = ?",
        )
        .bind(token_sha256_hex)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| backend("get_token", e))
    }

    async fn purge_expired_tokens(&self, now_ms: i64) -> Result<u64> {
        let _g = self.write.lock().await;
        let r = sqlx::query("DELETE FROM api_tokens WHERE expires_at <= ?")
            .bind(now_ms)
            .execute(&self.pool)
            .await
            .map_err(|e| backend("purge_expired_tokens", e))?;
        Ok(r.rows_affected())
    }
}
