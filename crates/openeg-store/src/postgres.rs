//! PostgreSQL implementation (distributed deployments).
//!
//! Text columns use `COLLATE "C"`: name ordering and `lower()` are then bytewise / ASCII-only,
//! identical to SQLite, whatever the database's default locale. Bodies are `json` (not
//! `jsonb`) so member order is kept exactly as written, like SQLite's TEXT.
//!
//! Quota atomicity: every insert takes `pg_advisory_xact_lock` on (project, kind) for the
//! inserted kind and every quota's kind (sorted, so two inserts never deadlock), then counts
//! and inserts in the same READ COMMITTED transaction; each statement's fresh snapshot sees
//! everything committed before the lock was granted.

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, QueryBuilder, Row};

use crate::changes::{Change, ChangeListener};
use crate::common::section_key;
use crate::common::{
    backend, body_text, build_record, counts_toward, lock_key, map_write_err, now_ms, sort_column,
    to_i64, to_u64,
};
use crate::{Document, Kind, ListQuery, MetaStore, QuotaCheck, Result, StoreError};

/// Serialises concurrent migrations from several nodes starting at once.
const MIGRATION_LOCK: i64 = 0x6f70_656e_6567_0001;

mod delivery;

const MIGRATIONS: &[(i64, &[&str])] = &[
    (
    1,
    &[
        r#"CREATE TABLE projects (
            project_id TEXT COLLATE "C" PRIMARY KEY,
            created_at BIGINT NOT NULL
        )"#,
        r#"CREATE TABLE records (
            project_id TEXT COLLATE "C" NOT NULL,
            kind TEXT COLLATE "C" NOT NULL,
            id TEXT COLLATE "C" NOT NULL,
            name TEXT COLLATE "C" NOT NULL,
            parent_id TEXT COLLATE "C",
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            body JSON NOT NULL,
            PRIMARY KEY (project_id, kind, id)
        )"#,
        "CREATE UNIQUE INDEX records_name_uq ON records (project_id, kind, name) WHERE name <> ''",
        "CREATE INDEX records_parent ON records (project_id, kind, parent_id)",
        // `pos` keeps the caller's order (and duplicates) so a record round-trips exactly.
        r#"CREATE TABLE record_refs (
            project_id TEXT COLLATE "C" NOT NULL,
            kind TEXT COLLATE "C" NOT NULL,
            id TEXT COLLATE "C" NOT NULL,
            pos INTEGER NOT NULL,
            ref_key TEXT COLLATE "C" NOT NULL,
            PRIMARY KEY (project_id, kind, id, pos),
            FOREIGN KEY (project_id, kind, id) REFERENCES records (project_id, kind, id)
                ON DELETE CASCADE
        )"#,
        "CREATE INDEX record_refs_project_key ON record_refs (project_id, ref_key)",
        "CREATE INDEX record_refs_kind_key ON record_refs (kind, ref_key)",
        r#"CREATE TABLE api_tokens (
            token_sha256 TEXT COLLATE "C" PRIMARY KEY,
            project_id TEXT COLLATE "C" NOT NULL,
            access_key TEXT COLLATE "C" NOT NULL,
            expires_at BIGINT NOT NULL
        )"#,
        "CREATE INDEX api_tokens_expires ON api_tokens (expires_at)",
    ],
    ),
    (2, delivery::MIGRATION_2),
    (3, delivery::MIGRATION_3),
    (4, delivery::MIGRATION_4),
    (5, delivery::MIGRATION_5),
    (6, crate::cluster::PG_MIGRATION_6),
    (7, crate::cluster::PG_MIGRATION_7),
    (8, crate::cluster::PG_MIGRATION_8),
    (9, crate::mirror::PG_MIGRATION_9),
];

const COLS: &str = "r.project_id, r.kind, r.id, r.name, r.parent_id, r.created_at, r.updated_at, \
    r.body::text AS body, (SELECT COALESCE(json_agg(f.ref_key ORDER BY f.pos), '[]'::json)::text \
    FROM record_refs f WHERE f.project_id = r.project_id AND f.kind = r.kind AND f.id = r.id) \
    AS refs";

/// PostgreSQL-backed [`MetaStore`].
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    /// The change feed's notification channel (`changes.rs`), per schema.
    changes_channel: String,
}

impl PgStore {
    /// Connects (`postgres://…`; `?options=-c search_path=…` selects a schema) and migrates.
    pub async fn connect(url: &str) -> Result<Self> {
        // Parse errors are reported without the URL, which may hold a password.
        let opts = PgConnectOptions::from_str(url)
            .map_err(|_| StoreError::Backend("invalid PostgreSQL URL".into()))?;
        Self::connect_with(opts).await
    }

    async fn connect_with(opts: PgConnectOptions) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .connect_with(opts)
            .await
            .map_err(|e| backend("connect postgres", e))?;
        let schema: String = sqlx::query_scalar("SELECT current_schema()::text")
            .fetch_one(&pool)
            .await
            .map_err(|e| backend("connect postgres", e))?;
        let store = PgStore {
            pool,
            changes_channel: format!("openeg_changes_{schema}"),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Listens to the change feed: every document write committed by any node on this
    /// database schema, this one's included (`changes.rs`).
    pub async fn listen_changes(&self) -> Result<ChangeListener> {
        ChangeListener::connect(self.pool.clone(), self.changes_channel.clone()).await
    }

    /// Announces a write inside its transaction (delivered to listeners on commit).
    async fn notify(&self, conn: &mut sqlx::PgConnection, change: &Change, op: &str) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&self.changes_channel)
            .bind(change.payload())
            .execute(conn)
            .await
            .map_err(|e| backend(op, e))?;
        Ok(())
    }

    /// Closes the pool (waits for checked-out connections).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn migrate(&self) -> Result<()> {
        let op = "migrate";
        let mut tx = self.pool.begin().await.map_err(|e| backend(op, e))?;
        // Lock before CREATE TABLE IF NOT EXISTS: two racing creates can still collide.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(|e| backend(op, e))?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS openeg_schema_migrations (
                version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| backend(op, e))?;
        let current: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0)::BIGINT FROM openeg_schema_migrations",
        )
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
            sqlx::query(
                "INSERT INTO openeg_schema_migrations (version, applied_at) VALUES ($1, $2)",
            )
            .bind(version)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(|e| backend(op, e))?;
        }
        tx.commit().await.map_err(|e| backend(op, e))
    }
}

fn row_to_document(row: &PgRow) -> Result<Document> {
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

fn rows_to_documents(rows: &[PgRow]) -> Result<Vec<Document>> {
    rows.iter().map(row_to_document).collect()
}

/// `AND <body member k is a string equal to v>`; key and value are bound parameters.
fn push_body_eq<'a>(qb: &mut QueryBuilder<'a, Postgres>, k: &'a str, v: &'a str) {
    qb.push(" AND json_typeof(r.body -> ")
        .push_bind(k)
        .push("::text) = 'string' AND (r.body ->> ")
        .push_bind(k)
        .push("::text) = ")
        .push_bind(v);
}

/// Appends the WHERE clause of a listing; every user value is a bound parameter.
fn push_filters<'a>(
    qb: &mut QueryBuilder<'a, Postgres>,
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
        // strpos() instead of LIKE: no wildcard escaping to get wrong; lower() under the
        // column's "C" collation folds ASCII only, which is exactly the contract.
        qb.push(" AND strpos(lower(r.name), ")
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
    for (k, v) in &q.body_eq {
        push_body_eq(qb, k, v);
    }
    for (k, v) in &q.body_contains {
        qb.push(" AND json_typeof(r.body -> ")
            .push_bind(k.as_str())
            .push("::text) = 'string' AND strpos(lower((r.body ->> ")
            .push_bind(k.as_str())
            .push(r#"::text) COLLATE "C"), "#)
            .push_bind(v.to_ascii_lowercase())
            .push(") > 0");
    }
}

async fn insert_refs(conn: &mut sqlx::PgConnection, rec: &Document, op: &str) -> Result<()> {
    if rec.refs.is_empty() {
        return Ok(());
    }
    // One statement for all refs: arrays instead of a parameter per value.
    let positions: Vec<i32> = (0..rec.refs.len())
        .map(|i| i32::try_from(i).unwrap_or(i32::MAX))
        .collect();
    sqlx::query(
        "INSERT INTO record_refs (project_id, kind, id, pos, ref_key) \
         SELECT $1, $2, $3, p, k FROM UNNEST($4::int4[], $5::text[]) AS t(p, k)",
    )
    .bind(&rec.project_id)
    .bind(rec.kind.as_str())
    .bind(&rec.id)
    .bind(&positions)
    .bind(&rec.refs)
    .execute(&mut *conn)
    .await
    .map_err(|e| backend(op, e))?;
    Ok(())
}

#[async_trait]
impl MetaStore for PgStore {
    async fn ensure_project(&self, project_id: &str) -> Result<bool> {
        let r = sqlx::query(
            "INSERT INTO projects (project_id, created_at) VALUES ($1, $2) \
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
        let mut keys: Vec<i64> = std::iter::once(rec.kind)
            .chain(quotas.iter().map(|q| q.kind))
            .map(|k| lock_key(&rec.project_id, k))
            .collect();
        keys.sort_unstable();
        keys.dedup();

        let mut tx = self.pool.begin().await.map_err(|e| backend(op, e))?;
        // Taken even without quotas: an unchecked insert of the same kind must not slip in
        // between another insert's count and its write.
        for k in keys {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(k)
                .execute(&mut *tx)
                .await
                .map_err(|e| backend(op, e))?;
        }
        for q in quotas {
            let mut qb: QueryBuilder<Postgres> =
                QueryBuilder::new("SELECT COUNT(*) FROM records r WHERE r.project_id = ");
            qb.push_bind(rec.project_id.as_str())
                .push(" AND r.kind = ")
                .push_bind(q.kind.as_str());
            if let Some(p) = &q.parent_id {
                qb.push(" AND r.parent_id = ").push_bind(p.as_str());
            }
            if let Some((k, v)) = &q.body_eq {
                push_body_eq(&mut qb, k, v);
            }
            let n: i64 = qb
                .build_query_scalar()
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| backend(op, e))?;
            let after = to_u64(n) + u64::from(counts_toward(rec, q));
            if after > q.max {
                // Dropping `tx` rolls back and releases the advisory locks.
                return Err(StoreError::Quota(q.quota));
            }
        }
        sqlx::query(
            "INSERT INTO records (project_id, kind, id, name, parent_id, created_at, updated_at, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8::json)",
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
        self.notify(&mut tx, &Change::of(rec), op).await?;
        tx.commit().await.map_err(|e| backend(op, e))
    }

    async fn get(&self, project_id: &str, kind: Kind, id: &str) -> Result<Option<Document>> {
        let sql = format!(
            "SELECT {COLS} FROM records r WHERE r.project_id = $1 AND r.kind = $2 AND r.id = $3"
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
            "SELECT {COLS} FROM records r WHERE r.project_id = $1 AND r.kind = $2 AND r.name = $3"
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
        let mut tx = self.pool.begin().await.map_err(|e| backend(op, e))?;
        let r = sqlx::query(
            "UPDATE records SET name = $1, parent_id = $2, body = $3::json, updated_at = $4 \
             WHERE project_id = $5 AND kind = $6 AND id = $7",
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
        sqlx::query("DELETE FROM record_refs WHERE project_id = $1 AND kind = $2 AND id = $3")
            .bind(&rec.project_id)
            .bind(rec.kind.as_str())
            .bind(&rec.id)
            .execute(&mut *tx)
            .await
            .map_err(|e| backend(op, e))?;
        insert_refs(&mut tx, rec, op).await?;
        self.notify(&mut tx, &Change::of(rec), op).await?;
        tx.commit().await.map_err(|e| backend(op, e))?;
        Ok(true)
    }

    async fn delete(&self, project_id: &str, kind: Kind, id: &str) -> Result<bool> {
        let op = "delete";
        let mut tx = self.pool.begin().await.map_err(|e| backend(op, e))?;
        // Document row first, like update does: the same lock order in both means a concurrent
        // update and delete of one record never deadlock. The foreign key cascades to the
        // refs; the explicit delete keeps that true without relying on it.
        let deleted: Option<(Option<String>,)> = sqlx::query_as(
            "DELETE FROM records WHERE project_id = $1 AND kind = $2 AND id = $3 \
             RETURNING parent_id",
        )
        .bind(project_id)
        .bind(kind.as_str())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| backend(op, e))?;
        sqlx::query("DELETE FROM record_refs WHERE project_id = $1 AND kind = $2 AND id = $3")
            .bind(project_id)
            .bind(kind.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| backend(op, e))?;
        let Some((parent_id,)) = deleted else {
            return Ok(false);
        };
        let change = Change {
            project_id: project_id.to_string(),
            kind,
            id: id.to_string(),
            parent_id,
        };
        self.notify(&mut tx, &change, op).await?;
        tx.commit().await.map_err(|e| backend(op, e))?;
        Ok(true)
    }

    async fn list(
        &self,
        project_id: &str,
        kind: Kind,
        q: &ListQuery,
    ) -> Result<(u64, Vec<Document>)> {
        let op = "list";
        // One snapshot for total and page.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(|e| backend(op, e))?;
        let mut cq: QueryBuilder<Postgres> = QueryBuilder::new("SELECT COUNT(*)");
        push_filters(&mut cq, project_id, kind, q);
        let total: i64 = cq
            .build_query_scalar()
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| backend(op, e))?;

        let mut pq: QueryBuilder<Postgres> = QueryBuilder::new("SELECT ");
        pq.push(COLS);
        push_filters(&mut pq, project_id, kind, q);
        let dir = if q.descending { "DESC" } else { "ASC" };
        pq.push(format_args!(
            " ORDER BY {} {dir}, r.id {dir}",
            sort_column(q.sort)
        ));
        if let Some(l) = q.limit {
            pq.push(" LIMIT ").push_bind(to_i64(l));
        }
        pq.push(" OFFSET ").push_bind(to_i64(q.offset));
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
            "SELECT COUNT(*) FROM records WHERE project_id = $1 AND kind = $2 \
             AND ($3::text IS NULL OR parent_id = $3)",
        )
        .bind(project_id)
        .bind(kind.as_str())
        .bind(parent_id)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| backend("count", e))?;
        Ok(to_u64(n))
    }

    async fn referencing(&self, project_id: &str, key: &str) -> Result<Vec<Document>> {
        let sql = format!(
            "SELECT {COLS} FROM records r WHERE r.project_id = $1 AND EXISTS (SELECT 1 FROM \
             record_refs f WHERE f.project_id = r.project_id AND f.kind = r.kind \
             AND f.id = r.id AND f.ref_key = $2) ORDER BY r.kind, r.id"
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
            "SELECT {COLS} FROM records r WHERE r.kind = $1 AND EXISTS (SELECT 1 FROM \
             record_refs f WHERE f.project_id = r.project_id AND f.kind = r.kind \
             AND f.id = r.id AND f.ref_key = $2) ORDER BY r.project_id, r.id"
        );
        let rows = sqlx::query(&sql)
            .bind(kind.as_str())
            .bind(key)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("referencing_global", e))?;
        rows_to_documents(&rows)
    }

    /// A session-level advisory lock on a connection of its own, which is closed (not returned
    /// to the pool) when the guard drops: closing the session releases the lock, so no
    /// unlock can be forgotten. The process-local section is taken first, so waiters of one
    /// process hold at most one pooled connection between them (the holder's writes need
    /// the pool too).
    async fn exclusive(&self, name: &str) -> Result<crate::Exclusive> {
        let op = "exclusive";
        let local = crate::local_section(name).await;
        let mut conn = self.pool.acquire().await.map_err(|e| backend(op, e))?;
        // Before the wait: if this future is dropped while waiting, the session must end
        // (and with it a lock granted later), not go back to the pool holding it.
        conn.close_on_drop();
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(section_key(name))
            .execute(&mut *conn)
            .await
            .map_err(|e| backend(op, e))?;
        Ok(crate::Exclusive::new(vec![Box::new(conn), Box::new(local)]))
    }

    async fn list_global(&self, kind: Kind) -> Result<Vec<Document>> {
        let sql =
            format!("SELECT {COLS} FROM records r WHERE r.kind = $1 ORDER BY r.project_id, r.id");
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
        sqlx::query(
            "INSERT INTO api_tokens (token_sha256, project_id, access_key, expires_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (token_sha256) DO UPDATE SET \
             project_id = EXCLUDED.project_id, access_key = EXCLUDED.access_key, \
             expires_at = EXCLUDED.expires_at",
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
            "SELECT project_id, access_key, expires_at FROM api_tokens WHERE token_sha256 = $1",
        )
        .bind(token_sha256_hex)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| backend("get_token", e))
    }

    async fn purge_expired_tokens(&self, now_ms: i64) -> Result<u64> {
        let r = sqlx::query("DELETE FROM api_tokens WHERE expires_at <= $1")
            .bind(now_ms)
            .execute(&self.pool)
            .await
            .map_err(|e| backend("purge_expired_tokens", e))?;
        Ok(r.rows_affected())
    }
}
