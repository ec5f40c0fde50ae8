//! Offset pairs of replication (event-router) jobs: where a copied record landed.
//!
//! A job that copies records from a source cluster to a sink cluster records, per source
//! partition, pairs `(source offset → target topic, partition, offset)`. Two uses:
//!
//! * **Resuming.** The greatest pair of a partition is the job's committed position there: a
//!   restarted job copies from `source_offset + 1`. Pairs are stored only after the sink
//!   acknowledged the records they describe, and before the source position is committed.
//! * **Translating consumer-group offsets.** A group that committed source offset `c` moves to
//!   the target at `t1 + (c − s1)`, where `(s1, t1)` is the greatest pair with `s1 <= c`. That
//!   is exact when, between two consecutive pairs, the copies sit at consecutive target
//!   offsets, which the job ensures by storing a pair wherever that run breaks.
//!
//! Pairs are keyed by job, source cluster (a job that is switched over reads another cluster
//! and must not resume from the first one's offsets), source topic, partition and offset. A
//! pair stored again for the same source record (a batch copied again after a crash) replaces
//! the earlier one: the later copy is the one a translated group should land after.
//!
//! Schema (version 9): `mirror_pairs(job_id, source_cluster, topic, partition, source_offset,
//! target_topic, target_partition, target_offset)`, primary key up to `source_offset`.

use crate::common::{backend, pg_sql, sqlite_sql};
use crate::{PgStore, Result, SqliteStore};
use async_trait::async_trait;

/// Where one source record was copied to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorPair {
    pub topic: String,
    pub partition: i32,
    pub source_offset: i64,
    pub target_topic: String,
    pub target_partition: i32,
    pub target_offset: i64,
}

impl MirrorPair {
    /// The target offset at which a consumer group that committed source offset `committed`
    /// (the next record it reads) resumes, when this pair is the one
    /// [`MirrorStore::mirror_pair_at`] gives for `committed`: `t + (committed − s)`, or `t`
    /// when `committed` is below every copied record. Exact while the copies between this
    /// pair and the next sit at consecutive offsets (the job stores a pair wherever they do
    /// not). The caller must not translate past what was copied.
    pub fn translate(&self, committed: i64) -> i64 {
        if committed <= self.source_offset {
            self.target_offset
        } else {
            self.target_offset
                .saturating_add(committed.saturating_sub(self.source_offset))
        }
    }
}

#[async_trait]
pub trait MirrorStore: Send + Sync + 'static {
    /// Stores the pairs of job `job` reading source cluster `cluster`, all or none, durable
    /// on return. A source record has one pair: a pair for a record that has one already
    /// replaces it (also when the record was copied into another target topic since).
    async fn put_mirror_pairs(&self, job: &str, cluster: &str, pairs: &[MirrorPair]) -> Result<()>;

    /// For each (topic, partition) of the job on `cluster`, its pair with the greatest source
    /// offset (the job's committed position there); ordered by topic, partition.
    async fn mirror_positions(&self, job: &str, cluster: &str) -> Result<Vec<MirrorPair>>;

    /// Per target topic and partition the job copied into while reading `cluster`, the
    /// greatest target offset of its stored pairs (start markers, whose target partition is
    /// negative, excluded); ordered by target topic, partition. A job switched over to read
    /// that target starts each of its partitions after this: what lies below is its own
    /// copies, which must not be copied back.
    async fn mirror_copy_ends(&self, job: &str, cluster: &str) -> Result<Vec<(String, i32, i64)>>;

    /// Of the pairs of `topic`/`partition` copied into `target_topic`, the one with the
    /// greatest source offset at or below `at`, else the one with the least source offset
    /// (nothing below it was copied); `None` when there is no such pair.
    async fn mirror_pair_at(
        &self,
        job: &str,
        cluster: &str,
        topic: &str,
        partition: i32,
        target_topic: &str,
        at: i64,
    ) -> Result<Option<MirrorPair>>;

    /// Deletes the pairs of `topic`/`partition` that no translation at or above `below` can
    /// need: per target topic, those under its greatest pair at or below `below`. Returns
    /// how many went.
    async fn prune_mirror_pairs(
        &self,
        job: &str,
        cluster: &str,
        topic: &str,
        partition: i32,
        below: i64,
    ) -> Result<u64>;

    /// Deletes the pairs of the job on `cluster` whose copies went to `target_topic` /
    /// `target_partition` (that partition was recreated: the copies are gone). Returns how
    /// many went.
    async fn forget_mirror_target(
        &self,
        job: &str,
        cluster: &str,
        target_topic: &str,
        target_partition: i32,
    ) -> Result<u64>;

    /// Deletes every pair of the job (it was deleted). Returns how many went.
    async fn delete_mirror_pairs(&self, job: &str) -> Result<u64>;

    /// Deletes every pair of `topic`/`partition` of the job on `cluster` (the source partition
    /// was recreated or truncated: its pairs describe records that are gone). Returns how
    /// many went.
    async fn forget_mirror_partition(
        &self,
        job: &str,
        cluster: &str,
        topic: &str,
        partition: i32,
    ) -> Result<u64>;
}

pub(crate) const PG_MIGRATION_9: &[&str] = &[r#"CREATE TABLE mirror_pairs (
        job_id TEXT COLLATE "C" NOT NULL,
        source_cluster TEXT COLLATE "C" NOT NULL,
        topic TEXT COLLATE "C" NOT NULL,
        partition BIGINT NOT NULL,
        source_offset BIGINT NOT NULL,
        target_topic TEXT COLLATE "C" NOT NULL,
        target_partition BIGINT NOT NULL,
        target_offset BIGINT NOT NULL,
        PRIMARY KEY (job_id, source_cluster, topic, partition, source_offset)
    )"#];

pub(crate) const SQLITE_MIGRATION_9: &[&str] = &["CREATE TABLE mirror_pairs (
        job_id TEXT NOT NULL,
        source_cluster TEXT NOT NULL,
        topic TEXT NOT NULL,
        partition INTEGER NOT NULL,
        source_offset INTEGER NOT NULL,
        target_topic TEXT NOT NULL,
        target_partition INTEGER NOT NULL,
        target_offset INTEGER NOT NULL,
        PRIMARY KEY (job_id, source_cluster, topic, partition, source_offset)
    )"];

type PairTuple = (String, i64, i64, String, i64, i64);

fn pair(t: PairTuple) -> MirrorPair {
    MirrorPair {
        topic: t.0,
        partition: i32::try_from(t.1).unwrap_or(i32::MAX),
        source_offset: t.2,
        target_topic: t.3,
        target_partition: i32::try_from(t.4).unwrap_or(i32::MAX),
        target_offset: t.5,
    }
}

// Written for PostgreSQL (`$n`) and given to SQLite as `?n` (see cluster.rs).
const PUT: &str = "INSERT INTO mirror_pairs (job_id, source_cluster, topic, partition, \
     source_offset, target_topic, target_partition, target_offset) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT (job_id, source_cluster, topic, partition, source_offset) DO UPDATE SET \
     target_topic = excluded.target_topic, target_partition = excluded.target_partition, \
     target_offset = excluded.target_offset";
const PAIR_COLS: &str =
    "topic, partition, source_offset, target_topic, target_partition, target_offset";
const POSITIONS: &str = "SELECT m.topic, m.partition, m.source_offset, m.target_topic, \
     m.target_partition, m.target_offset FROM mirror_pairs m \
     WHERE m.job_id = $1 AND m.source_cluster = $2 AND m.source_offset = \
     (SELECT MAX(x.source_offset) FROM mirror_pairs x WHERE x.job_id = m.job_id \
      AND x.source_cluster = m.source_cluster AND x.topic = m.topic \
      AND x.partition = m.partition) \
     ORDER BY m.topic, m.partition";
const COPY_ENDS: &str = "SELECT target_topic, target_partition, MAX(target_offset) \
     FROM mirror_pairs WHERE job_id = $1 AND source_cluster = $2 AND target_partition >= 0 \
     AND target_offset >= 0 GROUP BY target_topic, target_partition \
     ORDER BY target_topic, target_partition";
const AT_OR_BELOW: &str = "WHERE job_id = $1 AND source_cluster = $2 AND topic = $3 \
     AND partition = $4 AND target_topic = $5 AND source_offset <= $6 \
     ORDER BY source_offset DESC LIMIT 1";
const LEAST: &str = "WHERE job_id = $1 AND source_cluster = $2 AND topic = $3 \
     AND partition = $4 AND target_topic = $5 ORDER BY source_offset ASC LIMIT 1";
// Per target topic: a pair is needed while it is the greatest one at or below `below` of the
// target topic it translates into.
const PRUNE: &str = "DELETE FROM mirror_pairs WHERE job_id = $1 AND source_cluster = $2 \
     AND topic = $3 AND partition = $4 AND source_offset < \
     (SELECT MAX(y.source_offset) FROM mirror_pairs y WHERE y.job_id = $1 \
      AND y.source_cluster = $2 AND y.topic = $3 AND y.partition = $4 \
      AND y.target_topic = mirror_pairs.target_topic AND y.source_offset <= $5)";
const DELETE_JOB: &str = "DELETE FROM mirror_pairs WHERE job_id = $1";
const DELETE_TARGET: &str = "DELETE FROM mirror_pairs WHERE job_id = $1 \
     AND source_cluster = $2 AND target_topic = $3 AND target_partition = $4";
const DELETE_PARTITION: &str = "DELETE FROM mirror_pairs WHERE job_id = $1 \
     AND source_cluster = $2 AND topic = $3 AND partition = $4";

macro_rules! mirror_store {
    ($store:ty, $lock:ident, $sql:ident) => {
        #[async_trait]
        impl MirrorStore for $store {
            async fn put_mirror_pairs(
                &self,
                job: &str,
                cluster: &str,
                pairs: &[MirrorPair],
            ) -> Result<()> {
                if pairs.is_empty() {
                    return Ok(());
                }
                let _g = $lock!(self);
                let sql = $sql(PUT);
                let mut tx = self
                    .pool
                    .begin()
                    .await
                    .map_err(|e| backend("put_mirror_pairs", e))?;
                for p in pairs {
                    sqlx::query(&sql)
                        .bind(job)
                        .bind(cluster)
                        .bind(&p.topic)
                        .bind(i64::from(p.partition))
                        .bind(p.source_offset)
                        .bind(&p.target_topic)
                        .bind(i64::from(p.target_partition))
                        .bind(p.target_offset)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| backend("put_mirror_pairs", e))?;
                }
                tx.commit()
                    .await
                    .map_err(|e| backend("put_mirror_pairs", e))
            }

            async fn mirror_positions(&self, job: &str, cluster: &str) -> Result<Vec<MirrorPair>> {
                let rows: Vec<PairTuple> = sqlx::query_as(&$sql(POSITIONS))
                    .bind(job)
                    .bind(cluster)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| backend("mirror_positions", e))?;
                Ok(rows.into_iter().map(pair).collect())
            }

            async fn mirror_copy_ends(
                &self,
                job: &str,
                cluster: &str,
            ) -> Result<Vec<(String, i32, i64)>> {
                let rows: Vec<(String, i64, i64)> = sqlx::query_as(&$sql(COPY_ENDS))
                    .bind(job)
                    .bind(cluster)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| backend("mirror_copy_ends", e))?;
                Ok(rows
                    .into_iter()
                    .filter_map(|(t, p, o)| Some((t, i32::try_from(p).ok()?, o)))
                    .collect())
            }

            async fn mirror_pair_at(
                &self,
                job: &str,
                cluster: &str,
                topic: &str,
                partition: i32,
                target_topic: &str,
                at: i64,
            ) -> Result<Option<MirrorPair>> {
                let below = format!("SELECT {PAIR_COLS} FROM mirror_pairs {AT_OR_BELOW}");
                let row: Option<PairTuple> = sqlx::query_as(&$sql(&below))
                    .bind(job)
                    .bind(cluster)
                    .bind(topic)
                    .bind(i64::from(partition))
                    .bind(target_topic)
                    .bind(at)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| backend("mirror_pair_at", e))?;
                if let Some(row) = row {
                    return Ok(Some(pair(row)));
                }
                let least = format!("SELECT {PAIR_COLS} FROM mirror_pairs {LEAST}");
                let row: Option<PairTuple> = sqlx::query_as(&$sql(&least))
                    .bind(job)
                    .bind(cluster)
                    .bind(topic)
                    .bind(i64::from(partition))
                    .bind(target_topic)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| backend("mirror_pair_at", e))?;
                Ok(row.map(pair))
            }

            async fn prune_mirror_pairs(
                &self,
                job: &str,
                cluster: &str,
                topic: &str,
                partition: i32,
                below: i64,
            ) -> Result<u64> {
                let _g = $lock!(self);
                let r = sqlx::query(&$sql(PRUNE))
                    .bind(job)
                    .bind(cluster)
                    .bind(topic)
                    .bind(i64::from(partition))
                    .bind(below)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| backend("prune_mirror_pairs", e))?;
                Ok(r.rows_affected())
            }

            async fn forget_mirror_target(
                &self,
                job: &str,
                cluster: &str,
                target_topic: &str,
                target_partition: i32,
            ) -> Result<u64> {
                let _g = $lock!(self);
                let r = sqlx::query(&$sql(DELETE_TARGET))
                    .bind(job)
                    .bind(cluster)
                    .bind(target_topic)
                    .bind(i64::from(target_partition))
                    .execute(&self.pool)
                    .await
                    .map_err(|e| backend("forget_mirror_target", e))?;
                Ok(r.rows_affected())
            }

            async fn delete_mirror_pairs(&self, job: &str) -> Result<u64> {
                let _g = $lock!(self);
                let r = sqlx::query(&$sql(DELETE_JOB))
                    .bind(job)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| backend("delete_mirror_pairs", e))?;
                Ok(r.rows_affected())
            }

            async fn forget_mirror_partition(
                &self,
                job: &str,
                cluster: &str,
                topic: &str,
                partition: i32,
            ) -> Result<u64> {
                let _g = $lock!(self);
                let r = sqlx::query(&$sql(DELETE_PARTITION))
                    .bind(job)
                    .bind(cluster)
                    .bind(topic)
                    .bind(i64::from(partition))
                    .execute(&self.pool)
                    .await
                    .map_err(|e| backend("forget_mirror_partition", e))?;
                Ok(r.rows_affected())
            }
        }
    };
}

mirror_store!(SqliteStore, sqlite_write, sqlite_sql);
mirror_store!(PgStore, no_lock, pg_sql);

#[cfg(test)]
mod tests {
    use super::MirrorPair;

    #[test]
    fn translate_lands_right_after_what_the_group_read() {
        let p = MirrorPair {
            topic: "t".into(),
            partition: 0,
            source_offset: 50,
            target_topic: "t".into(),
            target_partition: 0,
            target_offset: 40,
        };
        // The group next reads 50: its copy is at 40.
        assert_eq!(p.translate(50), 40);
        // Next reads 57: the copies of 50..=56 are 40..=46, so the target resumes at 47.
        assert_eq!(p.translate(57), 47);
        // Below every copy: the first copy.
        assert_eq!(p.translate(3), 40);
        assert_eq!(p.translate(i64::MAX), i64::MAX - 10);
    }
}
