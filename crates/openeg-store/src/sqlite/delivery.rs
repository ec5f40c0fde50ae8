//! [`DeliveryStore`] on SQLite: the queue / trace / metrics queries and their schema
//! (versions 2–4).
//!
//! Trace rows, one per routed event, are the store's hottest write. They live in a compact
//! `traces` table keyed by an integer channel key (`trace_topics`, cached in the store),
//! clustered on (topic, offset, subscription) without a rowid; their event ids are indexed in
//! sorted runs behind them (`trace_ids`; rows above a channel's `indexed_to` watermark are
//! scanned), so an index page is written once per run, not once per event (version 3). A
//! claim records its node (`claimed_by`, version 4); an outcome clears it.
//!
//! Every write takes the store's write mutex and runs in `BEGIN IMMEDIATE` (or is a single
//! statement), exactly like the metadata writes, so claims never race: a claim's SELECT and
//! UPDATE sit under one write lock.

use async_trait::async_trait;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::SqliteStore;
use crate::common::{backend, now_ms, to_i64, to_u64};
use crate::delivery::{
    attempt_json, check_offsets, check_period, delivery_from_tuple, offset_to_i64, prepend_recent,
    pub_bucket, sub_bucket, trace_from_tuple, Attempt, AttemptUpdate, CreatedDelivery,
    DeadLetterUpdate, Delivery, DeliveryStatus, DeliveryStore, DeliveryTuple, IdMap, InsertedKey,
    MetricsQuery, NewDelivery, PubBucket, PubTuple, RecordBatch, Routed, SubBucket, SubTuple,
    TraceQuery, TraceRow, TraceTuple, DELIVERY_COLS, DUE_STATUSES_SQL, PUB_AGGREGATES,
    SUB_AGGREGATES,
};
use crate::Result;

/// Schema version 2: trace rows and deliveries.
pub(super) const MIGRATION_2: &[&str] = &[
    "CREATE TABLE event_traces (
        project_id TEXT NOT NULL,
        channel_id TEXT NOT NULL,
        log_offset INTEGER NOT NULL,
        event_id TEXT NOT NULL,
        source_name TEXT NOT NULL,
        source_provider TEXT NOT NULL,
        event_type TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        subscription_id TEXT NOT NULL,
        subscription_name TEXT NOT NULL
    )",
    // Idempotent replays, and the rows of one event (event_traces second step).
    "CREATE UNIQUE INDEX event_traces_event ON event_traces
        (project_id, channel_id, log_offset, subscription_id)",
    "CREATE INDEX event_traces_list ON event_traces (project_id, channel_id, received_at)",
    "CREATE INDEX event_traces_event_id ON event_traces (project_id, event_id)",
    "CREATE INDEX event_traces_received ON event_traces (received_at)",
    // AUTOINCREMENT: ids are never reused, so a late record_attempt for a dropped delivery
    // can never land on a newer one.
    "CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project_id TEXT NOT NULL,
        channel_id TEXT NOT NULL,
        log_offset INTEGER NOT NULL,
        event_id TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        subscription_id TEXT NOT NULL,
        subscription_name TEXT NOT NULL,
        target_id TEXT NOT NULL,
        target_name TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        next_at INTEGER NOT NULL,
        recent TEXT NOT NULL,
        last_latency_ms INTEGER,
        updated_at INTEGER NOT NULL
    )",
    // Idempotent replays and event_deliveries (prefix + order).
    "CREATE UNIQUE INDEX deliveries_event ON deliveries
        (project_id, channel_id, log_offset, subscription_id, target_id)",
    "CREATE INDEX deliveries_due ON deliveries (next_at, id)
        WHERE status IN ('PENDING', 'RETRYING')",
    "CREATE INDEX deliveries_subscription ON deliveries (project_id, subscription_id)",
    "CREATE INDEX deliveries_received ON deliveries (received_at)",
];

/// Schema version 3: compact trace rows. A trace row is written for every routed event, so
/// its size decides what routing costs: the channel is an integer key (`trace_topics`)
/// instead of two id strings repeated in every row and index, and the table is clustered on
/// (topic, offset, subscription) without a rowid. Both it and its time index grow at their
/// right edge. Lookups by event id go through `trace_ids`, which is filled behind the rows
/// in sorted runs (see [`TRACE_INDEX_ROWS`]) rather than one random B-tree insert per event:
/// `trace_topics.indexed_to` is the offset below which every row of the channel is in
/// `trace_ids`; rows at or above it (the tail) are found by scanning it. Adds the event size
/// and routing time behind ListPubMetrics.
/// Version 4: the node holding a claim (`''` when none), so a restarted node releases its own
/// unanswered claims at once instead of waiting out their lease.
/// Version 5: dead letters. A target's failure whose record waits for the dead-letter topic
/// is due like a retry (`DEAD_LETTER` joins the claimable statuses of the due index), and
/// `dead_letter` holds where the record stands (`STATE/tries`, see `DeadLetter`).
pub(super) const MIGRATION_5: &[&str] = &[
    "ALTER TABLE deliveries ADD COLUMN dead_letter TEXT NOT NULL DEFAULT ''",
    "DROP INDEX deliveries_due",
    "CREATE INDEX deliveries_due ON deliveries (next_at, id)
        WHERE status IN ('PENDING', 'RETRYING', 'DEAD_LETTER')",
];

pub(super) const MIGRATION_4: &[&str] =
    &["ALTER TABLE deliveries ADD COLUMN claimed_by TEXT NOT NULL DEFAULT ''"];

pub(super) const MIGRATION_3: &[&str] = &[
    "CREATE TABLE trace_topics (
        topic INTEGER PRIMARY KEY,
        project_id TEXT NOT NULL,
        channel_id TEXT NOT NULL,
        indexed_to INTEGER NOT NULL DEFAULT 0,
        UNIQUE (project_id, channel_id)
    )",
    "CREATE TABLE traces (
        topic INTEGER NOT NULL,
        log_offset INTEGER NOT NULL,
        subscription_id TEXT NOT NULL,
        subscription_name TEXT NOT NULL,
        event_id TEXT NOT NULL,
        source_name TEXT NOT NULL,
        source_provider TEXT NOT NULL,
        event_type TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        event_size INTEGER NOT NULL,
        process_ms INTEGER NOT NULL,
        PRIMARY KEY (topic, log_offset, subscription_id)
    ) WITHOUT ROWID",
    "CREATE INDEX traces_received ON traces (topic, received_at)",
    "CREATE TABLE trace_ids (
        topic INTEGER NOT NULL,
        event_id TEXT NOT NULL,
        log_offset INTEGER NOT NULL,
        PRIMARY KEY (topic, event_id, log_offset)
    ) WITHOUT ROWID",
    "INSERT INTO trace_topics (project_id, channel_id)
        SELECT DISTINCT project_id, channel_id FROM event_traces",
    "INSERT INTO traces SELECT t.topic, e.log_offset, e.subscription_id, e.subscription_name,
        e.event_id, e.source_name, e.source_provider, e.event_type, e.received_at, 0, 0
        FROM event_traces e JOIN trace_topics t
        ON t.project_id = e.project_id AND t.channel_id = e.channel_id",
    "INSERT OR IGNORE INTO trace_ids SELECT topic, event_id, log_offset FROM traces",
    "UPDATE trace_topics SET indexed_to = COALESCE(
        (SELECT MAX(log_offset) + 1 FROM traces WHERE traces.topic = trace_topics.topic), 0)",
    "DROP TABLE event_traces",
];

/// Trace rows of a channel written since its last indexing run that trigger the next one:
/// the run inserts their event ids into `trace_ids` sorted, so each index page is written
/// once per run instead of once per event, and a lookup scans at most about this many tail
/// rows.
pub const TRACE_INDEX_ROWS: u64 = 8192;

/// A trace row as selected from `traces tr JOIN trace_topics tt`, in the order of
/// [`TraceTuple`].
const TRACE_SELECT: &str = "tt.project_id, tt.channel_id, tr.log_offset, tr.event_id, \
    tr.source_name, tr.source_provider, tr.event_type, tr.received_at, tr.subscription_id, \
    tr.subscription_name, tr.event_size, tr.process_ms";

/// Most rows per multi-row INSERT: up to 15 bound values each, far below SQLite's 32766 limit.
const INSERT_CHUNK: usize = 256;

/// Splits rows into chunks whose lengths are powers of two (at most [`INSERT_CHUNK`]), so a
/// multi-row INSERT has one of nine shapes and its prepared statement is always reused
/// instead of being parsed again for every batch size.
fn pow2_chunks<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if rows.is_empty() {
            return None;
        }
        let n = rows.len().min(INSERT_CHUNK);
        let n = 1usize << (usize::BITS - 1 - n.leading_zeros());
        let (chunk, rest) = rows.split_at(n);
        rows = rest;
        Some(chunk)
    })
}
/// Rows per DELETE of a purge, so the write lock is released between chunks.
const PURGE_CHUNK: i64 = 5000;

#[async_trait]
impl DeliveryStore for SqliteStore {
    async fn record_routed(
        &self,
        traces: &[TraceRow],
        deliveries: &[NewDelivery],
    ) -> Result<Vec<Routed>> {
        let op = "record_routed";
        if traces.is_empty() && deliveries.is_empty() {
            return Ok(Vec::new());
        }
        check_offsets(traces, deliveries)?;
        let now = now_ms();
        let mut ids = IdMap::new(deliveries);

        let _g = self.write.lock().await;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| backend(op, e))?;
        let written = self.insert_traces(&mut tx, traces, op).await?;
        for chunk in pow2_chunks(deliveries) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO deliveries (project_id, channel_id, log_offset, event_id, \
                 received_at, subscription_id, subscription_name, target_id, target_name, \
                 status, attempts, next_at, recent, updated_at) ",
            );
            qb.push_values(chunk, |mut b, d| {
                b.push_bind(d.project_id.as_str())
                    .push_bind(d.channel_id.as_str())
                    .push_bind(to_i64(d.offset))
                    .push_bind(d.event_id.as_str())
                    .push_bind(d.received_at)
                    .push_bind(d.subscription_id.as_str())
                    .push_bind(d.subscription_name.as_str())
                    .push_bind(d.target_id.as_str())
                    .push_bind(d.target_name.as_str())
                    .push("'PENDING'")
                    .push("0")
                    .push_bind(d.next_at)
                    .push("'[]'")
                    .push_bind(now);
            });
            qb.push(
                " ON CONFLICT DO NOTHING RETURNING id, project_id, channel_id, log_offset, \
                 subscription_id, target_id",
            );
            let rows: Vec<InsertedKey> = qb
                .build_query_as()
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| backend(op, e))?;
            for r in &rows {
                ids.set(r);
            }
        }
        // Deliveries that already existed (replay): look their ids up (one indexed lookup
        // each, in process; positions sharing a key are filled by the first).
        for pos in ids.missing_positions() {
            if ids.has(pos) {
                continue;
            }
            let d = &deliveries[pos];
            let id: i64 = sqlx::query_scalar(
                "SELECT id FROM deliveries WHERE project_id = ? AND channel_id = ? \
                 AND log_offset = ? AND subscription_id = ? AND target_id = ?",
            )
            .bind(&d.project_id)
            .bind(&d.channel_id)
            .bind(offset_to_i64(d.offset)?)
            .bind(&d.subscription_id)
            .bind(&d.target_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| backend(op, e))?;
            ids.set_at(pos, id);
        }
        tx.commit().await.map_err(|e| backend(op, e))?;
        self.traces_committed(written);
        ids.finish()
    }

    async fn record_batch(&self, batch: &RecordBatch) -> Result<()> {
        let op = "record_batch";
        if batch.is_empty() {
            return Ok(());
        }
        check_offsets(&batch.traces, &[])?;
        for c in &batch.created {
            offset_to_i64(c.delivery.offset)?;
        }
        let _g = self.write.lock().await;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| backend(op, e))?;
        let written = self.insert_traces(&mut tx, &batch.traces, op).await?;
        insert_created(&mut tx, &batch.created, op).await?;
        apply_updates(&mut tx, &batch.updates, op).await?;
        apply_dead_letters(&mut tx, &batch.dead_letters, op).await?;
        tx.commit().await.map_err(|e| backend(op, e))?;
        self.traces_committed(written);
        Ok(())
    }

    async fn record_attempt(
        &self,
        id: i64,
        status: DeliveryStatus,
        attempts: u32,
        next_at: i64,
        attempt: &Attempt,
    ) -> Result<bool> {
        let u = AttemptUpdate {
            id,
            status,
            attempts,
            next_at,
            attempt: attempt.clone(),
        };
        let found = self.record_attempts(std::slice::from_ref(&u)).await?;
        Ok(found.first().copied().unwrap_or(false))
    }

    async fn record_attempts(&self, updates: &[AttemptUpdate]) -> Result<Vec<bool>> {
        let op = "record_attempts";
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let _g = self.write.lock().await;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| backend(op, e))?;
        let found = apply_updates(&mut tx, updates, op).await?;
        tx.commit().await.map_err(|e| backend(op, e))?;
        Ok(found)
    }

    async fn release_pending(&self, now_ms: i64, node: &str) -> Result<u64> {
        let _g = self.write.lock().await;
        let r = sqlx::query(&format!(
            // Only rows with a future `next_at` can be held: the range scan of the due index,
            // not a scan of every delivery.
            "UPDATE deliveries SET next_at = ?, claimed_by = '' WHERE \
             status IN {DUE_STATUSES_SQL} AND next_at > ? \
             AND ((status = 'PENDING' AND claimed_by IN ('', ?)) OR claimed_by = ?)"
        ))
        .bind(now_ms)
        .bind(now_ms)
        .bind(node)
        .bind(node)
        .execute(&self.pool)
        .await
        .map_err(|e| backend("release_pending", e))?;
        Ok(r.rows_affected())
    }

    async fn claim_due(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
        node: &str,
    ) -> Result<Vec<Delivery>> {
        let op = "claim_due";
        if limit == 0 {
            return Ok(Vec::new());
        }
        let due_sql = format!(
            "SELECT id FROM deliveries WHERE status IN {DUE_STATUSES_SQL} AND next_at <= ? \
             ORDER BY next_at, id LIMIT ?"
        );
        let _g = self.write.lock().await;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| backend(op, e))?;
        // The claim order (old next_at) is lost once the UPDATE runs, so read it first; both
        // statements run under the same write lock and see the same rows.
        let order: Vec<i64> = sqlx::query_scalar(&due_sql)
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| backend(op, e))?;
        if order.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<DeliveryTuple> = sqlx::query_as(&format!(
            "UPDATE deliveries SET next_at = ?, claimed_by = ? WHERE id IN ({due_sql}) \
             RETURNING {DELIVERY_COLS}"
        ))
        .bind(now_ms.saturating_add(lease_ms))
        .bind(node)
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| backend(op, e))?;
        tx.commit().await.map_err(|e| backend(op, e))?;
        let mut out = rows
            .into_iter()
            .map(delivery_from_tuple)
            .collect::<Result<Vec<_>>>()?;
        let pos: std::collections::HashMap<i64, usize> =
            order.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        out.sort_by_key(|d| pos.get(&d.id).copied().unwrap_or(usize::MAX));
        Ok(out)
    }

    async fn list_traces(&self, project_id: &str, q: &TraceQuery) -> Result<(u64, Vec<TraceRow>)> {
        let op = "list_traces";
        let mut tx = self.pool.begin().await.map_err(|e| backend(op, e))?;
        let topic: Option<(i64, i64)> = sqlx::query_as(
            "SELECT topic, indexed_to FROM trace_topics WHERE project_id = ? AND channel_id = ?",
        )
        .bind(project_id)
        .bind(&q.channel_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| backend(op, e))?;
        let Some(topic) = topic else {
            return Ok((0, Vec::new()));
        };
        let mut cq: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT COUNT(*)");
        push_trace_filters(&mut cq, topic, q);
        let total: i64 = cq
            .build_query_scalar()
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| backend(op, e))?;
        let mut rows = Vec::new();
        if q.limit > 0 {
            let mut pq: QueryBuilder<Sqlite> = QueryBuilder::new(format!("SELECT {TRACE_SELECT}"));
            push_trace_filters(&mut pq, topic, q);
            pq.push(
                " ORDER BY tr.received_at DESC, tr.log_offset DESC, tr.subscription_id ASC LIMIT ",
            )
            .push_bind(to_i64(q.limit))
            .push(" OFFSET ")
            .push_bind(to_i64(q.offset));
            let page: Vec<TraceTuple> = pq
                .build_query_as()
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| backend(op, e))?;
            rows = page.into_iter().map(trace_from_tuple).collect();
        }
        tx.commit().await.map_err(|e| backend(op, e))?;
        Ok((to_u64(total), rows))
    }

    async fn event_traces(
        &self,
        project_id: &str,
        channel_id: Option<&str>,
        event_id: &str,
    ) -> Result<Vec<TraceRow>> {
        let op = "event_traces";
        let mut tx = self.pool.begin().await.map_err(|e| backend(op, e))?;
        // Every event with this id in the project's channels: indexed ones through
        // trace_ids, the unindexed tails by scanning them.
        let found: Vec<(i64, i64, i64, String)> = sqlx::query_as(
            "SELECT tr.topic, tr.log_offset, tr.received_at, t.channel_id \
             FROM trace_topics t JOIN trace_ids i ON i.topic = t.topic AND i.event_id = ?3 \
             JOIN traces tr ON tr.topic = i.topic AND tr.log_offset = i.log_offset \
             WHERE t.project_id = ?1 AND (?2 IS NULL OR t.channel_id = ?2) AND tr.event_id = ?3 \
             UNION \
             SELECT tr.topic, tr.log_offset, tr.received_at, t.channel_id \
             FROM trace_topics t JOIN traces tr ON tr.topic = t.topic \
             AND tr.log_offset >= t.indexed_to \
             WHERE t.project_id = ?1 AND (?2 IS NULL OR t.channel_id = ?2) AND tr.event_id = ?3",
        )
        .bind(project_id)
        .bind(channel_id)
        .bind(event_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| backend(op, e))?;
        // The newest: largest received_at, then offset, then channel id.
        let Some((topic, offset, _, _)) = found
            .into_iter()
            .max_by(|a, b| (a.2, a.1, &a.3).cmp(&(b.2, b.1, &b.3)))
        else {
            return Ok(Vec::new());
        };
        let rows: Vec<TraceTuple> = sqlx::query_as(&format!(
            "SELECT {TRACE_SELECT} FROM traces tr JOIN trace_topics tt ON tt.topic = tr.topic \
             WHERE tr.topic = ? AND tr.log_offset = ? ORDER BY tr.subscription_id"
        ))
        .bind(topic)
        .bind(offset)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| backend(op, e))?;
        tx.commit().await.map_err(|e| backend(op, e))?;
        Ok(rows.into_iter().map(trace_from_tuple).collect())
    }

    async fn event_deliveries(
        &self,
        project_id: &str,
        channel_id: &str,
        offset: u64,
    ) -> Result<Vec<Delivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLS} FROM deliveries WHERE project_id = ? AND channel_id = ? \
             AND log_offset = ? ORDER BY subscription_id, target_id"
        );
        let rows: Vec<DeliveryTuple> = sqlx::query_as(&sql)
            .bind(project_id)
            .bind(channel_id)
            .bind(offset_to_i64(offset)?)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("event_deliveries", e))?;
        rows.into_iter().map(delivery_from_tuple).collect()
    }

    async fn postpone(&self, ids: &[i64], next_at: i64) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let _g = self.write.lock().await;
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("UPDATE deliveries SET next_at = ");
        qb.push_bind(next_at);
        qb.push(", claimed_by = ''");
        qb.push(format!(" WHERE status IN {DUE_STATUSES_SQL} AND id IN ("));
        let mut sep = qb.separated(", ");
        for id in ids {
            sep.push_bind(*id);
        }
        qb.push(")");
        let r = qb
            .build()
            .execute(&self.pool)
            .await
            .map_err(|e| backend("postpone", e))?;
        Ok(r.rows_affected())
    }

    async fn drop_pending_for_subscription(
        &self,
        project_id: &str,
        subscription_id: &str,
    ) -> Result<u64> {
        let _g = self.write.lock().await;
        let r = sqlx::query(&format!(
            "DELETE FROM deliveries WHERE project_id = ? AND subscription_id = ? \
             AND status IN {DUE_STATUSES_SQL}"
        ))
        .bind(project_id)
        .bind(subscription_id)
        .execute(&self.pool)
        .await
        .map_err(|e| backend("drop_pending_for_subscription", e))?;
        Ok(r.rows_affected())
    }

    async fn purge_before(&self, cutoff_ms: i64) -> Result<u64> {
        let op = "purge_before";
        let mut removed = 0u64;
        // Trace rows per channel, along (topic, received_at).
        let topics: Vec<i64> = sqlx::query_scalar("SELECT topic FROM trace_topics")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend(op, e))?;
        let traces = "DELETE FROM traces WHERE (topic, log_offset, subscription_id) IN \
            (SELECT topic, log_offset, subscription_id FROM traces \
             WHERE topic = ? AND received_at < ? LIMIT ?)";
        for topic in topics {
            removed += self.purge_chunks(traces, Some(topic), cutoff_ms).await?;
            // Event ids below the channel's oldest remaining row point nowhere now.
            let _g = self.write.lock().await;
            sqlx::query(
                "DELETE FROM trace_ids WHERE topic = ?1 AND log_offset < COALESCE( \
                 (SELECT MIN(log_offset) FROM traces WHERE topic = ?1), \
                 (SELECT indexed_to FROM trace_topics WHERE topic = ?1))",
            )
            .bind(topic)
            .execute(&self.pool)
            .await
            .map_err(|e| backend(op, e))?;
        }
        let deliveries = "DELETE FROM deliveries WHERE rowid IN (SELECT rowid FROM deliveries \
            WHERE received_at < ? LIMIT ?)";
        removed += self.purge_chunks(deliveries, None, cutoff_ms).await?;
        Ok(removed)
    }

    async fn pub_metrics(&self, q: &MetricsQuery) -> Result<Vec<PubBucket>> {
        check_period(q)?;
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT (received_at - ");
        qb.push_bind(q.start_ms)
            .push(") / ")
            .push_bind(q.period_ms)
            .push(PUB_AGGREGATES)
            .push(
                " FROM (SELECT DISTINCT tr.topic, tr.log_offset, tr.received_at, tr.event_size, \
                 tr.process_ms FROM traces tr WHERE tr.topic IN \
                 (SELECT topic FROM trace_topics WHERE project_id = ",
            )
            .push_bind(q.project_id.as_str());
        if let Some(c) = &q.channel_id {
            qb.push(" AND channel_id = ").push_bind(c.as_str());
        }
        qb.push(") AND tr.received_at >= ")
            .push_bind(q.start_ms)
            .push(" AND tr.received_at < ")
            .push_bind(q.end_ms);
        if let Some(s) = &q.source_name {
            qb.push(" AND tr.source_name = ").push_bind(s.as_str());
        }
        qb.push(") GROUP BY bucket ORDER BY bucket");
        let rows: Vec<PubTuple> = qb
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("pub_metrics", e))?;
        Ok(rows.into_iter().map(|t| pub_bucket(q, t)).collect())
    }

    async fn sub_metrics(&self, q: &MetricsQuery) -> Result<Vec<SubBucket>> {
        check_period(q)?;
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT (received_at - ");
        qb.push_bind(q.start_ms)
            .push(") / ")
            .push_bind(q.period_ms)
            .push(SUB_AGGREGATES)
            .push(" FROM deliveries WHERE project_id = ")
            .push_bind(q.project_id.as_str())
            .push(" AND received_at >= ")
            .push_bind(q.start_ms)
            .push(" AND received_at < ")
            .push_bind(q.end_ms);
        if let Some(c) = &q.channel_id {
            qb.push(" AND channel_id = ").push_bind(c.as_str());
        }
        if let Some(s) = &q.subscription_id {
            qb.push(" AND subscription_id = ").push_bind(s.as_str());
        }
        if let Some(t) = &q.target_id {
            qb.push(" AND target_id = ").push_bind(t.as_str());
        }
        qb.push(" GROUP BY bucket ORDER BY bucket");
        let rows: Vec<SubTuple> = qb
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("sub_metrics", e))?;
        Ok(rows.into_iter().map(|t| sub_bucket(q, t)).collect())
    }
}

/// `topic` = (key, indexed_to) of the query's channel.
fn push_trace_filters<'a>(qb: &mut QueryBuilder<'a, Sqlite>, topic: (i64, i64), q: &'a TraceQuery) {
    qb.push(" FROM traces tr JOIN trace_topics tt ON tt.topic = tr.topic WHERE tr.topic = ")
        .push_bind(topic.0)
        .push(" AND tr.received_at >= ")
        .push_bind(q.start_ms)
        .push(" AND tr.received_at <= ")
        .push_bind(q.end_ms);
    if let Some(id) = &q.event_id {
        // Drive the lookup from the event-id index and the unindexed tail.
        qb.push(" AND tr.log_offset IN (SELECT log_offset FROM trace_ids WHERE topic = ")
            .push_bind(topic.0)
            .push(" AND event_id = ")
            .push_bind(id.as_str())
            .push(" UNION ALL SELECT log_offset FROM traces WHERE topic = ")
            .push_bind(topic.0)
            .push(" AND log_offset >= ")
            .push_bind(topic.1)
            .push(" AND event_id = ")
            .push_bind(id.as_str())
            .push(")");
    }
    for (col, v) in [
        ("event_id", &q.event_id),
        ("source_name", &q.source_name),
        ("event_type", &q.event_type),
        ("subscription_name", &q.subscription_name),
    ] {
        if let Some(v) = v {
            qb.push(format_args!(" AND tr.{col} = "))
                .push_bind(v.as_str());
        }
    }
}

/// A channel as trace rows key it: (project id, channel id).
pub(super) type TopicName = (String, String);

/// What a transaction's trace inserts leave for [`SqliteStore::traces_committed`].
#[derive(Default)]
pub(super) struct TracesWritten {
    /// Topic keys created or looked up that are not cached yet.
    fresh: Vec<(TopicName, i64)>,
    /// Rows written per topic that are not indexed yet.
    unindexed: Vec<(i64, u64)>,
    /// Topics whose tail this transaction indexed.
    indexed: Vec<i64>,
}

impl SqliteStore {
    /// Inserts trace rows (existing ones are kept: replays) and, for a channel whose
    /// unindexed tail has grown past [`TRACE_INDEX_ROWS`], indexes its tail's event ids.
    /// The caller passes the result to [`Self::traces_committed`] once the transaction
    /// commits (a rolled-back key or count must not be remembered).
    async fn insert_traces(
        &self,
        conn: &mut SqliteConnection,
        traces: &[TraceRow],
        op: &str,
    ) -> Result<TracesWritten> {
        let mut w = TracesWritten::default();
        let mut keys: Vec<i64> = Vec::with_capacity(traces.len());
        {
            // Rows of a batch almost always share one channel: remember the last key.
            let mut last: Option<(&str, &str, i64)> = None;
            for t in traces {
                let key = match last {
                    Some((p, c, k)) if p == t.project_id && c == t.channel_id => k,
                    _ => {
                        let cached =
                            self.cached_topic(&t.project_id, &t.channel_id).or_else(|| {
                                w.fresh
                                    .iter()
                                    .find(|((p, c), _)| *p == t.project_id && *c == t.channel_id)
                                    .map(|(_, k)| *k)
                            });
                        let k = match cached {
                            Some(k) => k,
                            None => {
                                let k = topic_key(conn, &t.project_id, &t.channel_id, op).await?;
                                w.fresh
                                    .push(((t.project_id.clone(), t.channel_id.clone()), k));
                                k
                            }
                        };
                        last = Some((&t.project_id, &t.channel_id, k));
                        k
                    }
                };
                keys.push(key);
            }
        }
        let rows: Vec<(i64, &TraceRow)> = keys.into_iter().zip(traces).collect();
        for chunk in pow2_chunks(&rows) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO traces (topic, log_offset, subscription_id, subscription_name, \
                 event_id, source_name, source_provider, event_type, received_at, event_size, \
                 process_ms) ",
            );
            qb.push_values(chunk, |mut b, (key, t)| {
                b.push_bind(*key)
                    .push_bind(to_i64(t.offset))
                    .push_bind(t.subscription_id.as_str())
                    .push_bind(t.subscription_name.as_str())
                    .push_bind(t.event_id.as_str())
                    .push_bind(t.source_name.as_str())
                    .push_bind(t.source_provider.as_str())
                    .push_bind(t.event_type.as_str())
                    .push_bind(t.received_at)
                    .push_bind(to_i64(t.event_size))
                    .push_bind(t.process_ms);
            });
            qb.push(" ON CONFLICT DO NOTHING");
            qb.build()
                .execute(&mut *conn)
                .await
                .map_err(|e| backend(op, e))?;
        }
        // Per topic: rows written and the lowest offset among them.
        let mut per_topic: Vec<(i64, u64, u64)> = Vec::new();
        for (key, t) in &rows {
            match per_topic.iter_mut().find(|(k, _, _)| k == key) {
                Some(e) => {
                    e.1 += 1;
                    e.2 = e.2.min(t.offset);
                }
                None => per_topic.push((*key, 1, t.offset)),
            }
        }
        for (topic, n, lowest) in per_topic {
            // A row below the watermark (routed again out of order) is indexed at once.
            sqlx::query(
                "INSERT OR IGNORE INTO trace_ids (topic, event_id, log_offset) \
                 SELECT topic, event_id, log_offset FROM traces WHERE topic = ?1 \
                 AND log_offset >= ?2 \
                 AND log_offset < (SELECT indexed_to FROM trace_topics WHERE topic = ?1)",
            )
            .bind(topic)
            .bind(to_i64(lowest))
            .execute(&mut *conn)
            .await
            .map_err(|e| backend(op, e))?;
            let pending = self.unindexed_rows(topic) + n;
            if pending >= self.trace_index_rows {
                index_tail(conn, topic, op).await?;
                w.indexed.push(topic);
            } else {
                w.unindexed.push((topic, n));
            }
        }
        Ok(w)
    }

    /// Remembers what a committed transaction's trace inserts did.
    fn traces_committed(&self, w: TracesWritten) {
        if !w.fresh.is_empty() {
            if let Ok(mut topics) = self.topics.lock() {
                for ((p, c), k) in w.fresh {
                    topics.entry(p).or_default().insert(c, k);
                }
            }
        }
        if let Ok(mut u) = self.unindexed.lock() {
            for topic in w.indexed {
                u.remove(&topic);
            }
            for (topic, n) in w.unindexed {
                *u.entry(topic).or_insert(0) += n;
            }
        }
    }

    fn unindexed_rows(&self, topic: i64) -> u64 {
        self.unindexed
            .lock()
            .ok()
            .and_then(|u| u.get(&topic).copied())
            .unwrap_or(0)
    }

    /// Indexes every channel's tail on the next trace write (tests: both lookup paths).
    pub fn set_trace_index_rows(&mut self, rows: u64) {
        self.trace_index_rows = rows.max(1);
    }

    fn cached_topic(&self, project_id: &str, channel_id: &str) -> Option<i64> {
        let topics = self.topics.lock().ok()?;
        topics
            .get(project_id)
            .and_then(|chans| chans.get(channel_id))
            .copied()
    }

    /// Runs a chunked DELETE (`?` = [topic,] cutoff, limit) until it removes less than a
    /// chunk, taking the write lock per chunk so routing is not blocked for long.
    async fn purge_chunks(&self, sql: &str, topic: Option<i64>, cutoff_ms: i64) -> Result<u64> {
        let mut removed = 0u64;
        loop {
            let n = {
                let _g = self.write.lock().await;
                let mut q = sqlx::query(sql);
                if let Some(t) = topic {
                    q = q.bind(t);
                }
                q.bind(cutoff_ms)
                    .bind(PURGE_CHUNK)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| backend("purge_before", e))?
                    .rows_affected()
            };
            removed += n;
            if n < to_u64(PURGE_CHUNK) {
                return Ok(removed);
            }
        }
    }
}

/// Moves a channel's unindexed tail into `trace_ids` in event-id order and raises its
/// watermark past it.
async fn index_tail(conn: &mut SqliteConnection, topic: i64, op: &str) -> Result<()> {
    sqlx::query(
        "INSERT OR IGNORE INTO trace_ids (topic, event_id, log_offset) \
         SELECT topic, event_id, log_offset FROM traces WHERE topic = ?1 \
         AND log_offset >= (SELECT indexed_to FROM trace_topics WHERE topic = ?1) \
         ORDER BY event_id, log_offset",
    )
    .bind(topic)
    .execute(&mut *conn)
    .await
    .map_err(|e| backend(op, e))?;
    sqlx::query(
        "UPDATE trace_topics SET indexed_to = COALESCE( \
         (SELECT MAX(log_offset) + 1 FROM traces WHERE topic = ?1), indexed_to) \
         WHERE topic = ?1",
    )
    .bind(topic)
    .execute(&mut *conn)
    .await
    .map_err(|e| backend(op, e))?;
    Ok(())
}

/// The key of a channel's trace rows, created on first use.
async fn topic_key(
    conn: &mut SqliteConnection,
    project_id: &str,
    channel_id: &str,
    op: &str,
) -> Result<i64> {
    sqlx::query(
        "INSERT INTO trace_topics (project_id, channel_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(project_id)
    .bind(channel_id)
    .execute(&mut *conn)
    .await
    .map_err(|e| backend(op, e))?;
    sqlx::query_scalar("SELECT topic FROM trace_topics WHERE project_id = ? AND channel_id = ?")
        .bind(project_id)
        .bind(channel_id)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| backend(op, e))
}

/// Created deliveries with their state; an existing row (replay) is kept as stored.
async fn insert_created(
    conn: &mut SqliteConnection,
    created: &[CreatedDelivery],
    op: &str,
) -> Result<()> {
    let now = now_ms();
    for chunk in pow2_chunks(created) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO deliveries (project_id, channel_id, log_offset, event_id, \
             received_at, subscription_id, subscription_name, target_id, target_name, \
             status, attempts, next_at, recent, last_latency_ms, updated_at) ",
        );
        qb.push_values(chunk, |mut b, c| {
            let d = &c.delivery;
            let recent = match &c.attempt {
                Some(a) => serde_json::Value::Array(vec![attempt_json(a)]).to_string(),
                None => "[]".to_string(),
            };
            b.push_bind(d.project_id.as_str())
                .push_bind(d.channel_id.as_str())
                .push_bind(to_i64(d.offset))
                .push_bind(d.event_id.as_str())
                .push_bind(d.received_at)
                .push_bind(d.subscription_id.as_str())
                .push_bind(d.subscription_name.as_str())
                .push_bind(d.target_id.as_str())
                .push_bind(d.target_name.as_str())
                .push_bind(c.status.as_str())
                .push_bind(i64::from(c.attempts))
                .push_bind(d.next_at)
                .push_bind(recent)
                .push_bind(c.attempt.as_ref().map(|a| a.latency_ms))
                .push_bind(now);
        });
        qb.push(" ON CONFLICT DO NOTHING");
        qb.build()
            .execute(&mut *conn)
            .await
            .map_err(|e| backend(op, e))?;
    }
    Ok(())
}

/// Dead-letter publishes: status, due time and record state; `attempts` and `recent` stay
/// the target's. Rare (one per exhausted delivery), so one statement each.
async fn apply_dead_letters(
    conn: &mut SqliteConnection,
    updates: &[DeadLetterUpdate],
    op: &str,
) -> Result<()> {
    let now = now_ms();
    for u in updates {
        sqlx::query(
            "UPDATE deliveries SET status = ?, next_at = ?, dead_letter = ?, updated_at = ?, \
             claimed_by = '' WHERE id = ?",
        )
        .bind(u.status.as_str())
        .bind(u.next_at)
        .bind(u.dead_letter.encode())
        .bind(now)
        .bind(u.id)
        .execute(&mut *conn)
        .await
        .map_err(|e| backend(op, e))?;
    }
    Ok(())
}

async fn apply_updates(
    conn: &mut SqliteConnection,
    updates: &[AttemptUpdate],
    op: &str,
) -> Result<Vec<bool>> {
    let now = now_ms();
    let mut found = Vec::with_capacity(updates.len());
    for u in updates {
        let stored: Option<String> =
            sqlx::query_scalar("SELECT recent FROM deliveries WHERE id = ?")
                .bind(u.id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| backend(op, e))?;
        let Some(stored) = stored else {
            found.push(false);
            continue;
        };
        let recent = prepend_recent(&stored, &u.attempt)?;
        sqlx::query(
            "UPDATE deliveries SET status = ?, attempts = ?, next_at = ?, recent = ?, \
                 last_latency_ms = ?, updated_at = ?, claimed_by = '' WHERE id = ?",
        )
        .bind(u.status.as_str())
        .bind(i64::from(u.attempts))
        .bind(u.next_at)
        .bind(&recent)
        .bind(u.attempt.latency_ms)
        .bind(now)
        .bind(u.id)
        .execute(&mut *conn)
        .await
        .map_err(|e| backend(op, e))?;
        found.push(true);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pow2_chunks_cover_everything_in_order() {
        for n in [0usize, 1, 2, 3, 7, 255, 256, 257, 700, 1000] {
            let rows: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = pow2_chunks(&rows).collect();
            assert!(chunks
                .iter()
                .all(|c| c.len().is_power_of_two() && c.len() <= INSERT_CHUNK));
            let joined: Vec<usize> = chunks.concat();
            assert_eq!(joined, rows, "n = {n}");
        }
        assert_eq!(
            pow2_chunks(&[0u8; 7]).map(<[u8]>::len).collect::<Vec<_>>(),
            [4, 2, 1]
        );
    }

    /// A database written by schema version 2 keeps its trace rows through the move to the
    /// compact table, and new rows of the same channel join them.
    #[tokio::test]
    async fn migration_3_keeps_version_2_traces() {
        let pool = super::super::memory_pool().await.unwrap();
        sqlx::query(
            "CREATE TABLE openeg_schema_migrations (
                version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )
        .execute(&pool)
        .await
        .unwrap();
        for (version, stmts) in super::super::MIGRATIONS.iter().filter(|(v, _)| *v <= 2) {
            for stmt in *stmts {
                sqlx::query(stmt).execute(&pool).await.unwrap();
            }
            sqlx::query("INSERT INTO openeg_schema_migrations VALUES (?, 0)")
                .bind(version)
                .execute(&pool)
                .await
                .unwrap();
        }
        sqlx::query(
            "INSERT INTO event_traces VALUES
                ('p', 'c', 7, 'e7', 'src', 'CUSTOM', 'ty', 1000, '', ''),
                ('p', 'c', 8, 'e8', 'HC.OBS', 'OFFICIAL', 'ty', 1001, 's1', 'sub1'),
                ('q', 'c', 1, 'e1', 'src', 'CUSTOM', 'ty', 1002, '', '')",
        )
        .execute(&pool)
        .await
        .unwrap();

        let store = SqliteStore::init(pool).await.unwrap();
        let query = TraceQuery {
            channel_id: "c".into(),
            start_ms: 0,
            end_ms: 5000,
            limit: 10,
            ..Default::default()
        };
        let (total, rows) = store.list_traces("p", &query).await.unwrap();
        assert_eq!(total, 2);
        assert_eq!(
            rows[0],
            TraceRow {
                project_id: "p".into(),
                channel_id: "c".into(),
                offset: 8,
                event_id: "e8".into(),
                source_name: "HC.OBS".into(),
                source_provider: "OFFICIAL".into(),
                event_type: "ty".into(),
                received_at: 1001,
                subscription_id: "s1".into(),
                subscription_name: "sub1".into(),
                event_size: 0,
                process_ms: 0,
            }
        );
        assert_eq!(rows[1].event_id, "e7");
        assert_eq!(store.event_traces("q", None, "e1").await.unwrap().len(), 1);

        let mut new = rows[1].clone();
        new.offset = 9;
        new.received_at = 1003;
        new.event_size = 42;
        let batch = RecordBatch {
            traces: vec![new.clone()],
            ..Default::default()
        };
        store.record_batch(&batch).await.unwrap();
        let (total, rows) = store.list_traces("p", &query).await.unwrap();
        assert_eq!(total, 3);
        assert_eq!(rows[0], new);
        let topics: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM trace_topics")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(topics, 2);
        // The migrated rows were indexed; the new one is in the tail.
        let ids: Vec<(String, i64)> =
            sqlx::query_as("SELECT event_id, log_offset FROM trace_ids ORDER BY log_offset")
                .fetch_all(&store.pool)
                .await
                .unwrap();
        assert_eq!(ids.len(), 3);
        let marks: Vec<i64> =
            sqlx::query_scalar("SELECT indexed_to FROM trace_topics ORDER BY project_id")
                .fetch_all(&store.pool)
                .await
                .unwrap();
        assert_eq!(marks, [9, 2]);
        // e7 is now at offset 7 (indexed) and 9 (tail): the newest wins.
        let newest = store.event_traces("p", Some("c"), "e7").await.unwrap();
        assert_eq!(newest.iter().map(|r| r.offset).collect::<Vec<_>>(), [9]);
    }

    fn row(offset: u64, event_id: &str) -> TraceRow {
        TraceRow {
            project_id: "p".into(),
            channel_id: "c".into(),
            offset,
            event_id: event_id.into(),
            source_name: "s".into(),
            source_provider: "CUSTOM".into(),
            event_type: "t".into(),
            received_at: 1000 + offset as i64,
            subscription_id: String::new(),
            subscription_name: String::new(),
            event_size: 10,
            process_ms: 1,
        }
    }

    async fn write(store: &SqliteStore, rows: Vec<TraceRow>) {
        let batch = RecordBatch {
            traces: rows,
            ..Default::default()
        };
        store.record_batch(&batch).await.unwrap();
    }

    /// Event ids are found whether they are indexed, in the tail, or written below the
    /// watermark after it moved (a replayed route).
    #[tokio::test]
    async fn event_ids_are_found_indexed_in_the_tail_and_below_the_watermark() {
        let mut store = SqliteStore::init(super::super::memory_pool().await.unwrap())
            .await
            .unwrap();
        store.set_trace_index_rows(3);
        let found = |id: &'static str| {
            let store = &store;
            async move {
                let rows = store.event_traces("p", None, id).await.unwrap();
                let q = TraceQuery {
                    channel_id: "c".into(),
                    start_ms: 0,
                    end_ms: 10_000,
                    event_id: Some(id.into()),
                    limit: 10,
                    ..Default::default()
                };
                let (total, listed) = store.list_traces("p", &q).await.unwrap();
                assert_eq!(total as usize, listed.len());
                // ShowDetailOfEventTrace takes the newest; the listing has every one.
                assert_eq!(rows.first(), listed.first(), "{id}");
                listed.into_iter().map(|r| r.offset).collect::<Vec<_>>()
            }
        };
        write(&store, vec![row(1, "a"), row(2, "b")]).await;
        assert_eq!(found("a").await, [1], "tail");
        write(&store, vec![row(3, "c"), row(4, "a")]).await;
        // Four rows: indexed up to offset 5.
        let mark: i64 = sqlx::query_scalar("SELECT indexed_to FROM trace_topics")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(mark, 5);
        assert_eq!(found("a").await, [4, 1], "both, indexed, newest first");
        assert_eq!(found("b").await, [2]);
        write(&store, vec![row(6, "d")]).await;
        assert_eq!(found("d").await, [6], "tail after indexing");
        write(&store, vec![row(0, "z")]).await;
        assert_eq!(found("z").await, [0], "below the watermark");
        assert!(found("nope").await.is_empty());
        // Retention drops the ids of purged rows with them.
        assert_eq!(store.purge_before(1003).await.unwrap(), 3);
        assert!(found("b").await.is_empty());
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM trace_ids WHERE log_offset < 3")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(left, 0);
        assert_eq!(found("a").await, [4]);
    }
}
