//! Event-router jobs: one cluster copied into another (`docs/router-jobs.md`).
//!
//! * [`kafka`]: Kafka→Kafka (`kafka2kafka`), one pipeline per topic, resumable from stored
//!   offset pairs, consumer-group offsets translated.
//! * [`redis`]: Redis→Redis (`dcs2dcs`), OpenEG as a replica of the source: the snapshot, then
//!   the command stream, resumable with `PSYNC` from the stored replication position.
//! * [`rocketmq`]: RocketMQ→RocketMQ (`rocketmq2rocketmq`), every queue of the copied topics
//!   read in the job's own group, offsets committed after the target stored the copies.

mod kafka;
mod redis;
mod rocketmq;

pub(crate) use kafka::{KafkaJobPlan, KafkaJobRun, GROUP_NOTE};
pub(crate) use redis::{RedisJobPlan, RedisJobRun};
pub(crate) use rocketmq::{RocketJobPlan, RocketJobRun};

use crate::metrics::JobFigures;
use crate::supervisor::ErrorInfo;
use crate::Engine;
use std::sync::{Arc, Weak};

/// A job document's `{cfg}.{name}` endpoint object with its secrets revealed (`family` names
/// the job type in the error).
fn revealed_member(
    body: &serde_json::Value,
    secrets: &openeg_store::secrets::SecretBox,
    cfg: &str,
    name: &str,
    family: &str,
) -> Result<serde_json::Value, String> {
    let mut v = body
        .get(cfg)
        .and_then(|c| c.get(name))
        .filter(|v| v.is_object())
        .cloned()
        .ok_or_else(|| format!("{cfg}.{name} is required to run a {family} job"))?;
    secrets.reveal_json(&mut v);
    Ok(v)
}

fn fail(msg: impl Into<String>) -> ErrorInfo {
    ErrorInfo::not_run(msg)
}

/// Forgets a run's figures when it ends: positions are live only while it runs. The side
/// statuses of a run that failed stay (they say why).
pub(super) struct FiguresEnd {
    pub(super) engine: Weak<Engine>,
    pub(super) job_id: String,
    pub(super) figures: Arc<JobFigures>,
    pub(super) failed: bool,
}

impl FiguresEnd {
    /// A run's start: its fresh figures, the delivery store (the job's offset pairs) and the
    /// guard that forgets the figures when the run ends (`failed` until the run says otherwise).
    pub(super) fn begin(
        engine: &Weak<Engine>,
        job_id: &str,
        failed: bool,
    ) -> Result<(FiguresEnd, Arc<dyn openeg_store::DeliveryStore>), ErrorInfo> {
        let e = engine
            .upgrade()
            .ok_or_else(|| fail("the engine is shutting down"))?;
        let end = FiguresEnd {
            engine: engine.clone(),
            job_id: job_id.to_string(),
            figures: e.metrics.start_job(job_id),
            failed,
        };
        Ok((end, e.delivery.clone()))
    }
}

impl Drop for FiguresEnd {
    fn drop(&mut self) {
        if let Ok(mut p) = self.figures.partitions.lock() {
            p.clear();
        }
        if let Ok(mut r) = self.figures.redis.lock() {
            *r = None;
        }
        if !self.failed {
            if let Some(e) = self.engine.upgrade() {
                e.metrics.end_job(&self.job_id, &self.figures);
            }
        }
    }
}
