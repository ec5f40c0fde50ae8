//! What the supervisor runs for a resource document ([`plan`]), and the runtimes themselves.
//!
//! * Custom event sources: APPLICATION sources (and official ones) are not supervised: PutEvents
//!   is their runtime, so they are `RUNNING` whenever the server is (the API shows that
//!   statically). Broker sources always want to run; they run a [`SourcePump`] over the
//!   `openeg_connectors::sources` registry when it has their `type` (RABBITMQ), and otherwise
//!   are `ERROR` with the reason. A pump is `RUNNING` once its source connected.
//! * Event streams and router jobs run when their stored `_desired` state is `RUNNING`
//!   (START), and are stopped otherwise (before the first operation, and after PAUSE/STOP).
//!   A started stream runs a [`crate::stream::StreamRun`] when its source kind is in the
//!   sources registry (`HC.Kafka`, the RocketMQ kinds) and its sink is one the stream runtime
//!   has (Kafka, FunctionGraph); otherwise it is `ERROR` with the reason. A started Kafka,
//!   RocketMQ or DCS router job runs a [`crate::replication`] run.

use crate::supervisor::{ErrorInfo, Ready, RunState, Runtime, RuntimeStatus, StopSignal, TaskKind};
use crate::Engine;
use openeg_connectors::sources::{
    self, AppendError, BuildContext, BuildError, DurableLog, SourceRecord, SourceSpec,
};
use serde_json::Value;
use std::hash::{Hash, Hasher};
use std::sync::Weak;

/// Why a started event-router job whose `source_type` OpenEG does not run shows `ERROR`, and
/// why syncDetail has no figures.
pub const ROUTER_JOB_NOT_RUN: &str = "this event-router job has no source type OpenEG runs \
                                      (KAFKA, ROCKETMQ or DCS): nothing is copied";

/// Why a started event stream whose source kind has no runtime shows `ERROR`.
pub fn stream_source_not_run(kind: &str) -> String {
    format!("{kind} stream sources are not run by this OpenEG build: no data moves")
}

/// Records per batch a source is asked for.
const SOURCE_BATCH: usize = 500;

/// Why a broker source of `ty` does not run in this build.
pub fn source_not_run(ty: &str) -> String {
    format!(
        "{ty} event sources are stored but not run: this OpenEG build has no broker consumer \
         yet, so no message is read from the broker"
    )
}

/// What should happen to a resource's work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Not supervised (no status from the supervisor).
    Unsupervised,
    Stopped,
    /// It should run, and cannot: the reason.
    Unrunnable(ErrorInfo),
    /// It should run, and this build has a runtime for it.
    Run,
}

fn str_of<'a>(body: &'a Value, key: &str) -> &'a str {
    body.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The plan for a resource document of `kind` (pure: no secrets, no I/O).
pub fn plan(kind: TaskKind, body: &Value) -> Plan {
    match kind {
        TaskKind::EventSource => {
            let ty = str_of(body, "type");
            if str_of(body, "provider_type") == "OFFICIAL" || matches!(ty, "" | "APPLICATION") {
                Plan::Unsupervised
            } else if sources::is_supported(ty) {
                Plan::Run
            } else {
                Plan::Unrunnable(ErrorInfo::not_run(source_not_run(ty)))
            }
        }
        TaskKind::EventStream if str_of(body, "_desired") == "RUNNING" => {
            let source = body.get("source").unwrap_or(&Value::Null);
            let kind = str_of(source, "name");
            if !sources::is_supported(kind) {
                return Plan::Unrunnable(ErrorInfo::not_run(stream_source_not_run(kind)));
            }
            match crate::stream::SinkPlan::of(body.get("sink").unwrap_or(&Value::Null)) {
                Ok(_) => Plan::Run,
                Err(why) => Plan::Unrunnable(ErrorInfo::not_run(why)),
            }
        }
        // A job without source and sink cannot be started (the API refuses START).
        TaskKind::RouterJob
            if str_of(body, "_desired") == "RUNNING"
                && str_of(body, "status") != "NO_CONFIGURATION" =>
        {
            let member = match str_of(body, "source_type") {
                "KAFKA" => "kafka2kafka",
                "ROCKETMQ" => "rocketmq2rocketmq",
                // Every dcs2dcs setting has a default.
                "DCS" => return Plan::Run,
                _ => return Plan::Unrunnable(ErrorInfo::not_run(ROUTER_JOB_NOT_RUN)),
            };
            match body.get("advance_config").and_then(|a| a.get(member)) {
                Some(a) if a.is_object() => Plan::Run,
                _ => Plan::Unrunnable(ErrorInfo::not_run(format!(
                    "advance_config.{member} is required to run a {} job",
                    if member == "kafka2kafka" {
                        "Kafka"
                    } else {
                        "RocketMQ"
                    }
                ))),
            }
        }
        TaskKind::EventStream | TaskKind::RouterJob => Plan::Stopped,
    }
}

/// Identifies the configuration a task runs with: the members its runtime reads.
pub fn revision(kind: TaskKind, body: &Value) -> u64 {
    let members: &[&str] = match kind {
        TaskKind::EventSource => &["type", "detail", "channel_id", "name"],
        TaskKind::EventStream => &["source", "sink", "rule_config", "option"],
        TaskKind::RouterJob => &[
            "source_config",
            "sink_config",
            "advance_config",
            "_switched",
        ],
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for m in members {
        m.hash(&mut h);
        body.get(*m)
            .map(Value::to_string)
            .unwrap_or_default()
            .hash(&mut h);
    }
    h.finish()
}

/// The status a node without a data plane (no supervisor) reports: what does not need to
/// run, or cannot, is what the supervisor would say; what could run does not run there.
pub fn status_without_data_plane(
    kind: TaskKind,
    body: &Value,
    node_name: &str,
) -> Option<RuntimeStatus> {
    let (state, error) = match plan(kind, body) {
        Plan::Unsupervised => return None,
        Plan::Stopped => (RunState::Stopped, None),
        Plan::Unrunnable(e) => (RunState::Error, Some(e)),
        Plan::Run => (
            RunState::Error,
            Some(ErrorInfo::not_run(
                "not run on this node: it has no data plane, or has not picked this resource up",
            )),
        ),
    };
    Some(RuntimeStatus {
        state,
        error,
        node_name: node_name.to_string(),
        restarts: 0,
    })
}

/// A build failure as the status shows it.
pub(crate) fn build_error_info(e: &BuildError) -> ErrorInfo {
    match e {
        BuildError::Unsupported { kind } => ErrorInfo::not_run(source_not_run(kind)),
        BuildError::Invalid { .. } => ErrorInfo::not_run(e.to_string()),
    }
}

/// A custom source's work: connect (then report ready), read batches from the broker,
/// append them durably to the source's channel, then acknowledge them upstream (the commit
/// rule of `openeg_connectors::sources`).
pub(crate) struct SourcePump {
    pub(crate) engine: Weak<Engine>,
    pub(crate) project_id: String,
    pub(crate) channel_id: String,
    /// Secrets in clear: never logged (`SourceSpec`'s `Debug` shows the kind only).
    pub(crate) spec: SourceSpec,
    pub(crate) ctx: BuildContext,
    /// `openeg_connectors::sources::build` (a test double in tests).
    pub(crate) build: sources::BuildFn,
}

#[async_trait::async_trait]
impl Runtime for SourcePump {
    async fn run(&self, mut stop: StopSignal, ready: Ready) -> Result<(), ErrorInfo> {
        let mut source = (self.build)(&self.spec, &self.ctx).map_err(|e| build_error_info(&e))?;
        tokio::select! {
            _ = stop.stopped() => return Ok(()),
            c = source.connect() => c.map_err(|e| {
                ErrorInfo::not_run(format!("connecting to the broker failed: {e}"))
            })?,
        }
        ready.ready();
        let log = ChannelAppender {
            engine: self.engine.clone(),
            project_id: self.project_id.clone(),
            channel_id: self.channel_id.clone(),
            source_id: self.ctx.resource_id.clone(),
        };
        loop {
            let batch = tokio::select! {
                _ = stop.stopped() => return Ok(()),
                b = source.next_batch(SOURCE_BATCH) => b.map_err(|e| {
                    ErrorInfo::not_run(format!("reading from the broker failed: {e}"))
                })?,
            };
            let ack = batch
                .append_durably(&log)
                .await
                .map_err(|e| ErrorInfo::not_run(format!("appending to the channel failed: {e}")))?;
            source.ack(ack).await.map_err(|e| {
                ErrorInfo::not_run(format!("acknowledging to the broker failed: {e}"))
            })?;
        }
    }
}

/// A channel's log as a source's [`DurableLog`]: records must be CloudEvents (JSON text);
/// each is checked (`openeg_api::event::check`) and the valid ones appended, durable when
/// `publish_texts` returns. Invalid records are dropped with a warning: retrying them
/// cannot help, and holding the batch back would stall the source.
struct ChannelAppender {
    engine: Weak<Engine>,
    project_id: String,
    channel_id: String,
    source_id: String,
}

#[async_trait::async_trait]
impl DurableLog for ChannelAppender {
    async fn append(&self, records: &[SourceRecord]) -> Result<(), AppendError> {
        let engine = self
            .engine
            .upgrade()
            .ok_or_else(|| AppendError("the engine stopped".into()))?;
        let mut texts = Vec::with_capacity(records.len());
        let mut rejected = 0usize;
        for r in records {
            let checked = serde_json::from_slice::<Box<serde_json::value::RawValue>>(&r.payload)
                .ok()
                .map(|raw| openeg_api::event::check(raw.get()).result);
            match checked {
                Some(Ok(text)) => texts.push(text),
                _ => rejected += 1,
            }
        }
        if rejected > 0 {
            tracing::warn!(
                project_id = %self.project_id,
                source_id = %self.source_id,
                rejected,
                "source records that are not valid CloudEvents were dropped"
            );
        }
        if texts.is_empty() {
            return Ok(());
        }
        engine
            .publish_texts(&self.project_id, &self.channel_id, &texts)
            .await
            .map_err(|e| AppendError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::{Desired, TaskKey};
    use crate::{Engine, EngineConfig};
    use openeg_connectors::sources::{Ack, Batch, BatchToken, Health, Source, SourceError};
    use serde_json::json;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// Tokens the [`TwoBatches`] test double was acknowledged for.
    static ACKED: Mutex<Vec<u64>> = Mutex::new(Vec::new());

    /// Test double: a broker source with two batches (the second also holds a record that
    /// is not an event), then nothing.
    struct TwoBatches {
        next: u64,
    }

    fn record(text: &str) -> SourceRecord {
        SourceRecord {
            payload: bytes::Bytes::from(text.to_string()),
            ..SourceRecord::default()
        }
    }

    fn event(id: &str) -> String {
        json!({"id": id, "source": "rmq", "specversion": "1.0", "type": "t", "data": {"k": 1}})
            .to_string()
    }

    #[async_trait::async_trait]
    impl Source for TwoBatches {
        async fn next_batch(&mut self, _max: usize) -> Result<Batch, SourceError> {
            self.next += 1;
            match self.next {
                1 => Ok(Batch::new(BatchToken(1), vec![record(&event("e1"))])),
                2 => Ok(Batch::new(
                    BatchToken(2),
                    vec![record("not json"), record(&event("e2"))],
                )),
                _ => std::future::pending().await,
            }
        }
        async fn ack(&mut self, ack: Ack) -> Result<(), SourceError> {
            ACKED.lock().unwrap().push(ack.token().0);
            Ok(())
        }
        fn health(&self) -> Health {
            Health::Healthy
        }
    }

    fn build_two(_spec: &SourceSpec, _ctx: &BuildContext) -> Result<Box<dyn Source>, BuildError> {
        Ok(Box::new(TwoBatches { next: 0 }))
    }

    #[tokio::test]
    async fn a_source_pump_appends_durably_then_acks() {
        let dir = std::env::temp_dir().join(format!(
            "openeg-pump-{}-{}",
            std::process::id(),
            crate::now_ms()
        ));
        let store = Arc::new(openeg_store::SqliteStore::open_in_memory().await.unwrap());
        let log = Arc::new(
            openeg_log::SegmentLog::open(dir.join("log"), openeg_log::LogConfig::default())
                .await
                .unwrap(),
        );
        let key = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
        let engine = Engine::start(
            store.clone(),
            store,
            log,
            openeg_store::secrets::SecretBox::from_key_base64(key).unwrap(),
            EngineConfig::default(),
            Vec::new(),
        )
        .await
        .unwrap();
        let pump = SourcePump {
            engine: Arc::downgrade(&engine),
            project_id: "p1".into(),
            channel_id: "c1".into(),
            spec: SourceSpec {
                kind: "TEST".into(),
                detail: json!({}),
            },
            ctx: BuildContext::default(),
            build: build_two,
        };
        let task = TaskKey::new(TaskKind::EventSource, "p1", "s1");
        engine
            .supervisor
            .apply(
                task.clone(),
                Desired::Run {
                    revision: 1,
                    runtime: Arc::new(pump),
                },
            )
            .await;
        for _ in 0..500 {
            if ACKED.lock().unwrap().len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(*ACKED.lock().unwrap(), vec![1, 2]);
        // Both events are in the channel's log (the non-event was dropped), so both acks
        // came after durable appends.
        for (offset, id) in [(0, "e1"), (1, "e2")] {
            let raw = engine
                .read_event("p1", "c1", offset)
                .await
                .unwrap()
                .unwrap();
            let v: Value = serde_json::from_slice(&raw).unwrap();
            assert_eq!(v["id"], id);
        }
        assert_eq!(engine.read_event("p1", "c1", 2).await.unwrap(), None);
        assert_eq!(
            engine
                .runtime_status(TaskKind::EventSource, "p1", "s1")
                .unwrap()
                .state,
            RunState::Running
        );
        engine.shutdown().await;
        assert_eq!(
            engine
                .runtime_status(TaskKind::EventSource, "p1", "s1")
                .unwrap()
                .state,
            RunState::Stopped
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn plans() {
        let src = |ty: &str| json!({"type": ty, "provider_type": "CUSTOM"});
        assert_eq!(
            plan(TaskKind::EventSource, &src("APPLICATION")),
            Plan::Unsupervised
        );
        assert_eq!(
            plan(
                TaskKind::EventSource,
                &json!({"provider_type": "OFFICIAL", "name": "HC.OBS"})
            ),
            Plan::Unsupervised
        );
        assert_eq!(plan(TaskKind::EventSource, &src("RABBITMQ")), Plan::Run);
        assert_eq!(plan(TaskKind::EventSource, &src("ROCKETMQ")), Plan::Run);
        let Plan::Unrunnable(e) = plan(TaskKind::EventSource, &src("KAFKA")) else {
            panic!("KAFKA sources have no runtime in this build");
        };
        assert_eq!(e.code, "EG.00511000");
        assert_eq!(
            e.message,
            "KAFKA event sources are stored but not run: this OpenEG build has no broker \
             consumer yet, so no message is read from the broker"
        );
        for kind in [TaskKind::EventStream, TaskKind::RouterJob] {
            assert_eq!(plan(kind, &json!({"status": "CREATED"})), Plan::Stopped);
            assert_eq!(plan(kind, &json!({"_desired": "STOPPED"})), Plan::Stopped);
            assert!(matches!(
                plan(kind, &json!({"_desired": "RUNNING"})),
                Plan::Unrunnable(_)
            ));
        }
        assert_eq!(
            plan(
                TaskKind::RouterJob,
                &json!({"_desired": "RUNNING", "status": "NO_CONFIGURATION"})
            ),
            Plan::Stopped
        );
        let s =
            status_without_data_plane(TaskKind::RouterJob, &json!({"_desired": "RUNNING"}), "n")
                .unwrap();
        assert_eq!(
            (
                s.state,
                s.error.unwrap().message.as_str(),
                s.node_name.as_str()
            ),
            (RunState::Error, ROUTER_JOB_NOT_RUN, "n")
        );
        // Kafka jobs run; without their kafka2kafka settings they cannot.
        let kafka = |adv: serde_json::Value| {
            json!({"_desired": "RUNNING", "status": "WAIT_START", "source_type": "KAFKA",
                "advance_config": adv})
        };
        assert_eq!(
            plan(
                TaskKind::RouterJob,
                &kafka(json!({"kafka2kafka": {"topics": "t"}}))
            ),
            Plan::Run
        );
        let Plan::Unrunnable(e) = plan(TaskKind::RouterJob, &kafka(Value::Null)) else {
            panic!("a Kafka job without kafka2kafka cannot run");
        };
        assert!(e.message.contains("kafka2kafka"), "{e:?}");
        let mut dcs = kafka(json!({"dcs2dcs": {}}));
        dcs["source_type"] = json!("DCS");
        assert_eq!(plan(TaskKind::RouterJob, &dcs), Plan::Run);
        // RocketMQ jobs run with their rocketmq2rocketmq settings.
        dcs["source_type"] = json!("ROCKETMQ");
        let Plan::Unrunnable(e) = plan(TaskKind::RouterJob, &dcs) else {
            panic!("a RocketMQ job without rocketmq2rocketmq cannot run");
        };
        assert!(e.message.contains("rocketmq2rocketmq"), "{e:?}");
        dcs["advance_config"] = json!({"rocketmq2rocketmq": {"topics": "t"}});
        assert_eq!(plan(TaskKind::RouterJob, &dcs), Plan::Run);
        dcs["source_type"] = json!("MQTT");
        assert_eq!(
            plan(TaskKind::RouterJob, &dcs),
            Plan::Unrunnable(ErrorInfo::not_run(ROUTER_JOB_NOT_RUN))
        );
    }

    #[test]
    fn revisions_follow_the_runtime_settings_only() {
        let a = json!({"type": "RABBITMQ", "detail": {"queue_name": "q"}, "description": "x"});
        let mut b = a.clone();
        b["description"] = json!("y");
        assert_eq!(
            revision(TaskKind::EventSource, &a),
            revision(TaskKind::EventSource, &b)
        );
        b["detail"]["queue_name"] = json!("q2");
        assert_ne!(
            revision(TaskKind::EventSource, &a),
            revision(TaskKind::EventSource, &b)
        );
    }
}
