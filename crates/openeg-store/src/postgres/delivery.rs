//! [`DeliveryStore`] on PostgreSQL: schema version 2 and the queue / trace / metrics queries.
//!
//! * `record_routed` inserts each table with ONE statement over `UNNEST` of column arrays:
//!   a constant, cached statement with 10–11 parameters whatever the batch size (no bind
//!   limit to chunk around), and ids are matched to inputs by their unique key, never by the
//!   order of RETURNING (which PostgreSQL does not promise).
//! * `claim_due` locks due rows with `FOR UPDATE SKIP LOCKED`, so concurrent claimers (other
//!   nodes) never wait on or double-claim each other's rows.
//! * `record_attempt` is one UPDATE that rewrites `recent` in SQL under the row lock.

use async_trait::async_trait;
use sqlx::{PgConnection, Postgres, QueryBuilder};
use std::collections::HashMap;

use super::PgStore;
use crate::common::{backend, now_ms, to_i64, to_u64};
use crate::delivery::{
    attempt_json, check_offsets, check_period, delivery_from_tuple, offset_to_i64, pub_bucket,
    sub_bucket, trace_from_tuple, Attempt, AttemptUpdate, CreatedDelivery, DeadLetterUpdate,
    Delivery, DeliveryStatus, DeliveryStore, DeliveryTuple, IdMap, InsertedKey, MetricsQuery,
    NewDelivery, PubBucket, PubTuple, RecordBatch, Routed, SubBucket, SubTuple, TraceQuery,
    TraceRow, TraceTuple, DELIVERY_COLS, DUE_STATUSES_SQL, KEPT_ATTEMPTS, PUB_AGGREGATES,
    SUB_AGGREGATES, TRACE_COLS,
};
use crate::Result;

/// Schema version 3: per-event size and routing time on trace rows (ListPubMetrics).
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
    "ALTER TABLE event_traces ADD COLUMN event_size BIGINT NOT NULL DEFAULT 0, \
     ADD COLUMN process_ms BIGINT NOT NULL DEFAULT 0",
];

/// Schema version 2: trace rows and deliveries.
pub(super) const MIGRATION_2: &[&str] = &[
    r#"CREATE TABLE event_traces (
        project_id TEXT COLLATE "C" NOT NULL,
        channel_id TEXT COLLATE "C" NOT NULL,
        log_offset BIGINT NOT NULL,
        event_id TEXT COLLATE "C" NOT NULL,
        source_name TEXT COLLATE "C" NOT NULL,
        source_provider TEXT COLLATE "C" NOT NULL,
        event_type TEXT COLLATE "C" NOT NULL,
        received_at BIGINT NOT NULL,
        subscription_id TEXT COLLATE "C" NOT NULL,
        subscription_name TEXT COLLATE "C" NOT NULL
    )"#,
    // Idempotent replays, and the rows of one event (event_traces second step).
    "CREATE UNIQUE INDEX event_traces_event ON event_traces
        (project_id, channel_id, log_offset, subscription_id)",
    "CREATE INDEX event_traces_list ON event_traces (project_id, channel_id, received_at)",
    "CREATE INDEX event_traces_event_id ON event_traces (project_id, event_id)",
    "CREATE INDEX event_traces_received ON event_traces (received_at)",
    // Identity ids are never reused, so a late record_attempt for a dropped delivery can
    // never land on a newer one.
    r#"CREATE TABLE deliveries (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        project_id TEXT COLLATE "C" NOT NULL,
        channel_id TEXT COLLATE "C" NOT NULL,
        log_offset BIGINT NOT NULL,
        event_id TEXT COLLATE "C" NOT NULL,
        received_at BIGINT NOT NULL,
        subscription_id TEXT COLLATE "C" NOT NULL,
        subscription_name TEXT COLLATE "C" NOT NULL,
        target_id TEXT COLLATE "C" NOT NULL,
        target_name TEXT COLLATE "C" NOT NULL,
        status TEXT COLLATE "C" NOT NULL,
        attempts BIGINT NOT NULL,
        next_at BIGINT NOT NULL,
        recent TEXT NOT NULL,
        last_latency_ms BIGINT,
        updated_at BIGINT NOT NULL
    )"#,
    // Idempotent replays and event_deliveries (prefix + order).
    "CREATE UNIQUE INDEX deliveries_event ON deliveries
        (project_id, channel_id, log_offset, subscription_id, target_id)",
    "CREATE INDEX deliveries_due ON deliveries (next_at, id)
        WHERE status IN ('PENDING', 'RETRYING')",
    "CREATE INDEX deliveries_subscription ON deliveries (project_id, subscription_id)",
    "CREATE INDEX deliveries_received ON deliveries (received_at)",
];

#[async_trait]
impl DeliveryStore for PgStore {
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

        let mut tx = self.pool.begin().await.map_err(|e| backend(op, e))?;
        insert_traces(&mut tx, traces, op).await?;
        if !deliveries.is_empty() {
            let col = |f: fn(&NewDelivery) -> &str| deliveries.iter().map(f).collect::<Vec<&str>>();
            let rows: Vec<InsertedKey> = sqlx::query_as(
                "INSERT INTO deliveries (project_id, channel_id, log_offset, event_id, \
                 received_at, subscription_id, subscription_name, target_id, target_name, \
                 status, attempts, next_at, recent, updated_at) \
                 SELECT p, c, o, e, r, s, sn, t, tn, 'PENDING', 0, n, '[]', $11 \
                 FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::int8[], \
                 $6::text[], $7::text[], $8::text[], $9::text[], $10::int8[]) \
                 AS u(p, c, o, e, r, s, sn, t, tn, n) \
                 ON CONFLICT DO NOTHING \
                 RETURNING id, project_id, channel_id, log_offset, subscription_id, target_id",
            )
            .bind(col(|d| &d.project_id))
            .bind(col(|d| &d.channel_id))
            .bind(
                deliveries
                    .iter()
                    .map(|d| to_i64(d.offset))
                    .collect::<Vec<i64>>(),
            )
            .bind(col(|d| &d.event_id))
            .bind(
                deliveries
                    .iter()
                    .map(|d| d.received_at)
                    .collect::<Vec<i64>>(),
            )
            .bind(col(|d| &d.subscription_id))
            .bind(col(|d| &d.subscription_name))
            .bind(col(|d| &d.target_id))
            .bind(col(|d| &d.target_name))
            .bind(deliveries.iter().map(|d| d.next_at).collect::<Vec<i64>>())
            .bind(now)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| backend(op, e))?;
            for r in &rows {
                ids.set(r);
            }
        }
        // Deliveries that already existed (a replay after a crash): their ids in one
        // statement. A replayed batch is mostly such rows, and one query per row made a
        // restart's replay crawl on PostgreSQL.
        let missing = ids.missing();
        if !missing.is_empty() {
            let col =
                |f: fn(&NewDelivery) -> &str| missing.iter().map(|d| f(d)).collect::<Vec<&str>>();
            let rows: Vec<InsertedKey> = sqlx::query_as(
                "SELECT d.id, d.project_id, d.channel_id, d.log_offset, d.subscription_id, \
                 d.target_id FROM deliveries d JOIN UNNEST($1::text[], $2::text[], $3::int8[], \
                 $4::text[], $5::text[]) AS u(p, c, o, s, t) ON d.project_id = u.p \
                 AND d.channel_id = u.c AND d.log_offset = u.o AND d.subscription_id = u.s \
                 AND d.target_id = u.t",
            )
            .bind(col(|d| &d.project_id))
            .bind(col(|d| &d.channel_id))
            .bind(
                missing
                    .iter()
                    .map(|d| offset_to_i64(d.offset))
                    .collect::<Result<Vec<i64>>>()?,
            )
            .bind(col(|d| &d.subscription_id))
            .bind(col(|d| &d.target_id))
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| backend(op, e))?;
            for r in &rows {
                ids.set_existing(r);
            }
        }
        tx.commit().await.map_err(|e| backend(op, e))?;
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
        let mut tx = self.pool.begin().await.map_err(|e| backend(op, e))?;
        insert_traces(&mut tx, &batch.traces, op).await?;
        insert_created(&mut tx, &batch.created, op).await?;
        apply_updates(&mut tx, &batch.updates, op).await?;
        apply_dead_letters(&mut tx, &batch.dead_letters, op).await?;
        tx.commit().await.map_err(|e| backend(op, e))?;
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
        let mut tx = self.pool.begin().await.map_err(|e| backend(op, e))?;
        let found = apply_updates(&mut tx, updates, op).await?;
        tx.commit().await.map_err(|e| backend(op, e))?;
        Ok(found)
    }

    async fn release_pending(&self, now_ms: i64, node: &str) -> Result<u64> {
        let r = sqlx::query(&format!(
            // Only rows with a future `next_at` can be held: the range scan of the due index,
            // not a scan of every delivery.
            "UPDATE deliveries SET next_at = $1, claimed_by = '' WHERE \
             status IN {DUE_STATUSES_SQL} AND next_at > $1 \
             AND ((status = 'PENDING' AND claimed_by IN ('', $2)) OR claimed_by = $2)"
        ))
        .bind(now_ms)
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
        if limit == 0 {
            return Ok(Vec::new());
        }
        let cols = DELIVERY_COLS
            .split(", ")
            .map(|c| format!("d.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        // A single statement is its own transaction. Rows another claimer has locked are
        // skipped; rows it already committed are re-checked against `next_at <= now` after
        // the lock (READ COMMITTED re-evaluation) and drop out, so nothing is claimed twice.
        // RETURNING has no order: the outer SELECT restores the claim order (previous
        // next_at, id).
        let sql = format!(
            "WITH due AS (SELECT id, next_at FROM deliveries \
                WHERE status IN {DUE_STATUSES_SQL} AND next_at <= $1 \
                ORDER BY next_at, id LIMIT $3 FOR UPDATE SKIP LOCKED), \
             claimed AS (UPDATE deliveries d SET next_at = $2, claimed_by = $4 FROM due \
                WHERE d.id = due.id RETURNING {cols}, due.next_at AS claimed_from) \
             SELECT {DELIVERY_COLS} FROM claimed ORDER BY claimed_from, id"
        );
        let rows: Vec<DeliveryTuple> = sqlx::query_as(&sql)
            .bind(now_ms)
            .bind(now_ms.saturating_add(lease_ms))
            .bind(i64::from(limit))
            .bind(node)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("claim_due", e))?;
        rows.into_iter().map(delivery_from_tuple).collect()
    }

    async fn list_traces(&self, project_id: &str, q: &TraceQuery) -> Result<(u64, Vec<TraceRow>)> {
        let op = "list_traces";
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(|e| backend(op, e))?;
        let mut cq: QueryBuilder<Postgres> = QueryBuilder::new("SELECT COUNT(*)");
        push_trace_filters(&mut cq, project_id, q);
        let total: i64 = cq
            .build_query_scalar()
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| backend(op, e))?;
        let mut rows = Vec::new();
        if q.limit > 0 {
            let mut pq: QueryBuilder<Postgres> = QueryBuilder::new(format!("SELECT {TRACE_COLS}"));
            push_trace_filters(&mut pq, project_id, q);
            pq.push(" ORDER BY received_at DESC, log_offset DESC, subscription_id ASC LIMIT ")
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
        let sql = format!(
            "SELECT {TRACE_COLS} FROM event_traces WHERE (project_id, channel_id, log_offset) = \
             (SELECT project_id, channel_id, log_offset FROM event_traces \
              WHERE project_id = $1 AND event_id = $2 AND ($3::text IS NULL OR channel_id = $3) \
              ORDER BY received_at DESC, log_offset DESC, channel_id DESC LIMIT 1) \
             ORDER BY subscription_id"
        );
        let rows: Vec<TraceTuple> = sqlx::query_as(&sql)
            .bind(project_id)
            .bind(event_id)
            .bind(channel_id)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("event_traces", e))?;
        Ok(rows.into_iter().map(trace_from_tuple).collect())
    }

    async fn event_deliveries(
        &self,
        project_id: &str,
        channel_id: &str,
        offset: u64,
    ) -> Result<Vec<Delivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLS} FROM deliveries WHERE project_id = $1 AND channel_id = $2 \
             AND log_offset = $3 ORDER BY subscription_id, target_id"
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
        let r = sqlx::query(&format!(
            "UPDATE deliveries SET next_at = $1, claimed_by = '' WHERE status IN {DUE_STATUSES_SQL} \
             AND id = ANY($2)"
        ))
        .bind(next_at)
        .bind(ids)
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
        let r = sqlx::query(&format!(
            "DELETE FROM deliveries WHERE project_id = $1 AND subscription_id = $2 \
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
        let mut removed = 0u64;
        for table in ["event_traces", "deliveries"] {
            let r = sqlx::query(&format!("DELETE FROM {table} WHERE received_at < $1"))
                .bind(cutoff_ms)
                .execute(&self.pool)
                .await
                .map_err(|e| backend("purge_before", e))?;
            removed += r.rows_affected();
        }
        // Fresh planner statistics after the retention pass: where autovacuum is off (some
        // installations turn it off) the planner would otherwise judge the queue's and the
        // traces' indexes by the empty tables it saw at creation.
        sqlx::query("ANALYZE event_traces, deliveries")
            .execute(&self.pool)
            .await
            .map_err(|e| backend("purge_before", e))?;
        Ok(removed)
    }

    async fn pub_metrics(&self, q: &MetricsQuery) -> Result<Vec<PubBucket>> {
        check_period(q)?;
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new("SELECT (received_at - ");
        qb.push_bind(q.start_ms)
            .push(") / ")
            .push_bind(q.period_ms)
            .push(PUB_AGGREGATES)
            .push(
                " FROM (SELECT DISTINCT channel_id, log_offset, received_at, event_size, \
                 process_ms FROM event_traces WHERE project_id = ",
            )
            .push_bind(q.project_id.as_str())
            .push(" AND received_at >= ")
            .push_bind(q.start_ms)
            .push(" AND received_at < ")
            .push_bind(q.end_ms);
        if let Some(c) = &q.channel_id {
            qb.push(" AND channel_id = ").push_bind(c.as_str());
        }
        if let Some(s) = &q.source_name {
            qb.push(" AND source_name = ").push_bind(s.as_str());
        }
        qb.push(") ev GROUP BY bucket ORDER BY bucket");
        let rows: Vec<PubTuple> = qb
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("pub_metrics", e))?;
        Ok(rows.into_iter().map(|t| pub_bucket(q, t)).collect())
    }

    async fn sub_metrics(&self, q: &MetricsQuery) -> Result<Vec<SubBucket>> {
        check_period(q)?;
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new("SELECT (received_at - ");
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

fn push_trace_filters<'a>(
    qb: &mut QueryBuilder<'a, Postgres>,
    project_id: &'a str,
    q: &'a TraceQuery,
) {
    qb.push(" FROM event_traces WHERE project_id = ")
        .push_bind(project_id)
        .push(" AND channel_id = ")
        .push_bind(q.channel_id.as_str())
        .push(" AND received_at >= ")
        .push_bind(q.start_ms)
        .push(" AND received_at <= ")
        .push_bind(q.end_ms);
    for (col, v) in [
        ("event_id", &q.event_id),
        ("source_name", &q.source_name),
        ("event_type", &q.event_type),
        ("subscription_name", &q.subscription_name),
    ] {
        if let Some(v) = v {
            qb.push(format_args!(" AND {col} = ")).push_bind(v.as_str());
        }
    }
}

async fn insert_traces(conn: &mut PgConnection, traces: &[TraceRow], op: &str) -> Result<()> {
    if !traces.is_empty() {
        let col = |f: fn(&TraceRow) -> &str| traces.iter().map(f).collect::<Vec<&str>>();
        sqlx::query(&format!(
            "INSERT INTO event_traces ({TRACE_COLS}) SELECT * FROM UNNEST($1::text[], \
                 $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::text[], \
                 $8::int8[], $9::text[], $10::text[], $11::int8[], $12::int8[]) \
                 ON CONFLICT DO NOTHING"
        ))
        .bind(col(|t| &t.project_id))
        .bind(col(|t| &t.channel_id))
        .bind(
            traces
                .iter()
                .map(|t| to_i64(t.offset))
                .collect::<Vec<i64>>(),
        )
        .bind(col(|t| &t.event_id))
        .bind(col(|t| &t.source_name))
        .bind(col(|t| &t.source_provider))
        .bind(col(|t| &t.event_type))
        .bind(traces.iter().map(|t| t.received_at).collect::<Vec<i64>>())
        .bind(col(|t| &t.subscription_id))
        .bind(col(|t| &t.subscription_name))
        .bind(
            traces
                .iter()
                .map(|t| to_i64(t.event_size))
                .collect::<Vec<i64>>(),
        )
        .bind(traces.iter().map(|t| t.process_ms).collect::<Vec<i64>>())
        .execute(&mut *conn)
        .await
        .map_err(|e| backend(op, e))?;
    }
    Ok(())
}

/// Created deliveries with their state; an existing row (replay) is kept as stored.
async fn insert_created(
    conn: &mut PgConnection,
    created: &[CreatedDelivery],
    op: &str,
) -> Result<()> {
    if created.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&NewDelivery) -> &str| {
        created
            .iter()
            .map(|c| f(&c.delivery))
            .collect::<Vec<&str>>()
    };
    let int = |f: fn(&CreatedDelivery) -> i64| created.iter().map(f).collect::<Vec<i64>>();
    sqlx::query(
        "INSERT INTO deliveries (project_id, channel_id, log_offset, event_id, \
         received_at, subscription_id, subscription_name, target_id, target_name, \
         status, attempts, next_at, recent, last_latency_ms, updated_at) \
         SELECT p, c, o, e, r, s, sn, t, tn, st, a, n, rc, l, $15 \
         FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::int8[], \
         $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::int8[], \
         $12::int8[], $13::text[], $14::int8[]) \
         AS u(p, c, o, e, r, s, sn, t, tn, st, a, n, rc, l) \
         ON CONFLICT DO NOTHING",
    )
    .bind(col(|d| &d.project_id))
    .bind(col(|d| &d.channel_id))
    .bind(int(|c| to_i64(c.delivery.offset)))
    .bind(col(|d| &d.event_id))
    .bind(int(|c| c.delivery.received_at))
    .bind(col(|d| &d.subscription_id))
    .bind(col(|d| &d.subscription_name))
    .bind(col(|d| &d.target_id))
    .bind(col(|d| &d.target_name))
    .bind(
        created
            .iter()
            .map(|c| c.status.as_str())
            .collect::<Vec<&str>>(),
    )
    .bind(int(|c| i64::from(c.attempts)))
    .bind(int(|c| c.delivery.next_at))
    .bind(
        created
            .iter()
            .map(|c| match &c.attempt {
                Some(a) => serde_json::Value::Array(vec![attempt_json(a)]).to_string(),
                None => "[]".to_string(),
            })
            .collect::<Vec<String>>(),
    )
    .bind(
        created
            .iter()
            .map(|c| c.attempt.as_ref().map(|a| a.latency_ms))
            .collect::<Vec<Option<i64>>>(),
    )
    .bind(now_ms())
    .execute(&mut *conn)
    .await
    .map_err(|e| backend(op, e))?;
    Ok(())
}

/// Dead-letter publishes: status, due time and record state; `attempts` and `recent` stay
/// the target's. Rare (one per exhausted delivery), so one statement each.
async fn apply_dead_letters(
    conn: &mut PgConnection,
    updates: &[DeadLetterUpdate],
    op: &str,
) -> Result<()> {
    let now = now_ms();
    for u in updates {
        sqlx::query(
            "UPDATE deliveries SET status = $1, next_at = $2, dead_letter = $3, updated_at = $4, \
             claimed_by = '' WHERE id = $5",
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
    conn: &mut PgConnection,
    updates: &[AttemptUpdate],
    op: &str,
) -> Result<Vec<bool>> {
    let now = now_ms();
    let mut found = vec![false; updates.len()];
    // One statement per round: a round holds each delivery at most once (an UPDATE … FROM
    // applies one source row per target row), and a delivery's later outcomes go to later
    // rounds, so they are applied in order. Almost every batch is one round: one round trip
    // for thousands of outcomes instead of one per outcome (a replayed backlog's outcomes
    // otherwise fell seconds behind its deliveries).
    let mut round_of: HashMap<i64, usize> = HashMap::with_capacity(updates.len());
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (i, u) in updates.iter().enumerate() {
        let r = round_of.entry(u.id).and_modify(|r| *r += 1).or_insert(0);
        if rounds.len() <= *r {
            rounds.push(Vec::new());
        }
        rounds[*r].push(i);
    }
    for round in rounds {
        let mut ids = Vec::with_capacity(round.len());
        let mut statuses = Vec::with_capacity(round.len());
        let mut attempts = Vec::with_capacity(round.len());
        let mut next_ats = Vec::with_capacity(round.len());
        let mut latencies = Vec::with_capacity(round.len());
        let mut recents = Vec::with_capacity(round.len());
        for &i in &round {
            let u = &updates[i];
            ids.push(u.id);
            statuses.push(u.status.as_str());
            attempts.push(i64::from(u.attempts));
            next_ats.push(u.next_at);
            latencies.push(u.attempt.latency_ms);
            recents.push(attempt_json(&u.attempt).to_string());
        }
        // The new attempt first (ordinality 0), then the stored ones (1, 2, …), newest first.
        let updated: Vec<(i64,)> = sqlx::query_as(
            "UPDATE deliveries d SET status = u.status, attempts = u.attempts, \
             next_at = u.next_at, last_latency_ms = u.latency, updated_at = $7, claimed_by = '', \
             recent = (SELECT json_agg(x.e ORDER BY x.o)::text FROM ( \
                SELECT e, o FROM (SELECT u.attempt::json AS e, 0::bigint AS o \
                    UNION ALL SELECT t.e, t.o \
                    FROM json_array_elements(d.recent::json) WITH ORDINALITY AS t(e, o)) s \
                ORDER BY o LIMIT $8) x) \
             FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], \
                         $6::text[]) AS u(id, status, attempts, next_at, latency, attempt) \
             WHERE d.id = u.id RETURNING d.id",
        )
        .bind(&ids)
        .bind(&statuses)
        .bind(&attempts)
        .bind(&next_ats)
        .bind(&latencies)
        .bind(&recents)
        .bind(now)
        .bind(to_i64(KEPT_ATTEMPTS as u64))
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| backend(op, e))?;
        let hit: std::collections::HashSet<i64> = updated.into_iter().map(|(id,)| id).collect();
        for &i in &round {
            found[i] = hit.contains(&updates[i].id);
        }
    }
    Ok(found)
}
