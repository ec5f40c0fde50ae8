//! The supervisor: one place that runs, restarts and stops OpenEG's long-running work (event
//! sources pulling into a channel, event streams, event-router jobs), keyed by resource
//! ([`TaskKey`]: kind, project, id), and keeps each one's runtime status.
//!
//! The work is a [`Runtime`]: each [`Runtime::run`] is one run from scratch (connect, then
//! loop) until it fails or its [`StopSignal`] fires. What to run is decided elsewhere
//! ([`crate::runtimes`] reads the resource documents); the supervisor is told the desired
//! state of a resource ([`Desired`]) and makes it so:
//!
//! * `Run`: the task runs. Its status is observed, not declared: `Running` only once the run
//!   said it is ready ([`Ready::ready`]: connected and doing its work); until then it is
//!   `Error` with [`STARTING`] on the first run, or with the last failure on a restart. A run
//!   that fails (or ends on its own) sets `Error` with its [`ErrorInfo`] and is restarted
//!   after an exponential backoff (capped; a run that lasted at least the cap starts the
//!   series over). The same revision as the running task's leaves it alone; another
//!   replaces it.
//! * `Unrunnable`: it should run, but no runtime could be built (not supported by this
//!   build, invalid settings): `Error` with the reason, nothing runs.
//! * `Stopped`: the task is stopped (its stop signal, then aborted after a grace period);
//!   status `Stopped`.
//! * `Absent`: stopped and forgotten (the resource was deleted or is not supervised).
//!
//! Every status records the node that owns the task (this node: `EngineConfig::node_name`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// `error_info` code of work that does not run: an infrastructure condition, not a request
/// error (EG's internal error code).
pub const NOT_RUN_CODE: &str = "EG.00511000";

/// Why work that should run is not `Running` yet: its first run has not said it is ready.
pub const STARTING: &str = "starting: not ready yet";

/// The kinds of supervised work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskKind {
    /// A custom event source (RabbitMQ, RocketMQ, ...) pulling into its channel.
    EventSource,
    /// An event stream: one source to one sink.
    EventStream,
    /// An event-router replication job.
    RouterJob,
}

impl TaskKind {
    pub const ALL: [TaskKind; 3] = [
        TaskKind::EventSource,
        TaskKind::EventStream,
        TaskKind::RouterJob,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::EventSource => "event_source",
            TaskKind::EventStream => "event_stream",
            TaskKind::RouterJob => "router_job",
        }
    }

    /// The store kind of the resource documents.
    pub fn store_kind(self) -> openeg_store::Kind {
        match self {
            TaskKind::EventSource => openeg_store::Kind::Source,
            TaskKind::EventStream => openeg_store::Kind::EventStream,
            TaskKind::RouterJob => openeg_store::Kind::RouterJob,
        }
    }
}

/// Which resource a task belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskKey {
    pub kind: TaskKind,
    pub project_id: String,
    pub id: String,
}

impl TaskKey {
    pub fn new(kind: TaskKind, project_id: &str, id: &str) -> Self {
        TaskKey {
            kind,
            project_id: project_id.to_string(),
            id: id.to_string(),
        }
    }
}

/// Why work is not running: a code of `docs/errors.md` and a message for the user (never
/// secrets: runtimes must not put settings in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
}

impl ErrorInfo {
    /// [`NOT_RUN_CODE`] with `message`.
    pub fn not_run(message: impl Into<String>) -> Self {
        ErrorInfo {
            code: NOT_RUN_CODE.to_string(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// A run is under way and said it is ready ([`Ready::ready`]).
    Running,
    /// It should run but does not: the last run failed (a restart is scheduled, or the
    /// restarted run is not ready yet), the first run is not ready yet, or no runtime could
    /// be built. `RuntimeStatus::error` says why.
    Error,
    /// The desired state is stopped (paused); nothing runs.
    Stopped,
}

/// The runtime status of one resource's work, as this node's supervisor knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeStatus {
    pub state: RunState,
    /// Set exactly when `state` is `Error`.
    pub error: Option<ErrorInfo>,
    /// The node that owns the task.
    pub node_name: String,
    /// Restarts after failures since the work was (re)configured.
    pub restarts: u32,
}

/// Tells a run to stop. Runs check it between units of work (a batch) and return `Ok(())`;
/// a run still going after the supervisor's grace period is aborted.
#[derive(Debug, Clone)]
pub struct StopSignal(pub(crate) watch::Receiver<bool>);

impl StopSignal {
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the run should stop (also when the supervisor is gone).
    pub async fn stopped(&mut self) {
        let _ = self.0.wait_for(|s| *s).await;
    }
}

/// Lets a run report that it is ready (connected, doing its work): the status becomes
/// `Running` then, not when the run starts.
#[derive(Debug, Clone)]
pub struct Ready {
    status: Arc<Mutex<RuntimeStatus>>,
}

impl Ready {
    /// The run is ready: status `Running` (unless the task is being stopped).
    pub fn ready(&self) {
        let mut st = lock(&self.status);
        if st.state != RunState::Stopped {
            st.state = RunState::Running;
            st.error = None;
        }
    }

    /// The run is not doing its work now (for instance it waits for its cluster lease):
    /// status `Error` with `why` (unless the task is being stopped).
    pub fn not_ready(&self, why: ErrorInfo) {
        let mut st = lock(&self.status);
        if st.state != RunState::Stopped {
            st.state = RunState::Error;
            st.error = Some(why);
        }
    }
}

/// The long-running work of one resource.
#[async_trait::async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// One run from scratch until `stop` fires (then `Ok(())`) or it fails (`Err`, restarted
    /// with backoff). Returning `Ok(())` without being stopped counts as a failure. The run
    /// calls [`Ready::ready`] once it is connected and working; the status says `Running`
    /// from then on.
    async fn run(&self, stop: StopSignal, ready: Ready) -> Result<(), ErrorInfo>;
}

/// What a resource's work should be doing.
pub enum Desired {
    /// Run `runtime`; `revision` names its configuration: the same revision as the running
    /// task's leaves that task alone, another one replaces it.
    Run {
        revision: u64,
        runtime: Arc<dyn Runtime>,
    },
    /// It should run, but no runtime can be built: `Error` with this reason.
    Unrunnable(ErrorInfo),
    Stopped,
    /// Not supervised (deleted, or a kind that needs no task): no status.
    Absent,
}

/// Restart delays: `initial`, doubling per consecutive failure, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The delay before the restart after `failures` consecutive failures (≥ 1).
    pub fn delay(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(30);
        self.initial
            .checked_mul(1u32 << exp)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

struct TaskHandle {
    revision: u64,
    stop: watch::Sender<bool>,
    join: JoinHandle<()>,
}

struct Slot {
    status: Arc<Mutex<RuntimeStatus>>,
    task: Option<TaskHandle>,
}

pub struct Supervisor {
    node_name: String,
    backoff: Backoff,
    /// How long a stopped run may take to return before it is aborted.
    grace: Duration,
    slots: Mutex<HashMap<TaskKey, Slot>>,
    /// One change at a time (a change may wait for a task to stop).
    changes: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Supervisor {
    pub fn new(node_name: &str, backoff: Backoff, grace: Duration) -> Self {
        Supervisor {
            node_name: node_name.to_string(),
            backoff,
            grace,
            slots: Mutex::new(HashMap::new()),
            changes: tokio::sync::Mutex::new(()),
        }
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// Every resource supervised here.
    pub fn keys(&self) -> Vec<TaskKey> {
        lock(&self.slots).keys().cloned().collect()
    }

    /// The runtime status of a resource's work; `None` when it is not supervised here.
    pub fn status(&self, key: &TaskKey) -> Option<RuntimeStatus> {
        lock(&self.slots).get(key).map(|s| lock(&s.status).clone())
    }

    /// Makes the resource's work what `desired` says (see the module documentation).
    /// Returns once an old task is stopped and a new one is started.
    pub async fn apply(&self, key: TaskKey, desired: Desired) {
        self.apply_inner(key, desired, false).await
    }

    /// Like [`Supervisor::apply`], but a running task of the same revision is stopped and
    /// started again too: what it runs with changed outside its document (a connection).
    pub async fn restart(&self, key: TaskKey, desired: Desired) {
        self.apply_inner(key, desired, true).await
    }

    async fn apply_inner(&self, key: TaskKey, desired: Desired, force: bool) {
        let _one = self.changes.lock().await;
        if let (false, Desired::Run { revision, .. }) = (force, &desired) {
            let slots = lock(&self.slots);
            let unchanged = slots
                .get(&key)
                .and_then(|s| s.task.as_ref())
                .is_some_and(|t| {
                    t.revision == *revision && !t.join.is_finished() && !*t.stop.borrow()
                });
            if unchanged {
                return;
            }
        }
        let old = lock(&self.slots).get_mut(&key).and_then(|s| s.task.take());
        if let Some(t) = old {
            self.stop_task(&key, t).await;
        }
        let status = |state, error| {
            Arc::new(Mutex::new(RuntimeStatus {
                state,
                error,
                node_name: self.node_name.clone(),
                restarts: 0,
            }))
        };
        let slot = match desired {
            Desired::Absent => {
                lock(&self.slots).remove(&key);
                return;
            }
            Desired::Stopped => Slot {
                status: status(RunState::Stopped, None),
                task: None,
            },
            Desired::Unrunnable(e) => {
                tracing::info!(
                    kind = key.kind.as_str(),
                    project_id = %key.project_id,
                    id = %key.id,
                    reason = %e.message,
                    "supervised work cannot run"
                );
                Slot {
                    status: status(RunState::Error, Some(e)),
                    task: None,
                }
            }
            Desired::Run { revision, runtime } => {
                let st = status(RunState::Error, Some(ErrorInfo::not_run(STARTING)));
                let (stop, rx) = watch::channel(false);
                let join = tokio::spawn(drive(key.clone(), runtime, st.clone(), rx, self.backoff));
                Slot {
                    status: st,
                    task: Some(TaskHandle {
                        revision,
                        stop,
                        join,
                    }),
                }
            }
        };
        lock(&self.slots).insert(key, slot);
    }

    /// Signals the task to stop, waits up to the grace period, then aborts it.
    async fn stop_task(&self, key: &TaskKey, mut t: TaskHandle) {
        let _ = t.stop.send(true);
        if tokio::time::timeout(self.grace, &mut t.join).await.is_err() {
            tracing::warn!(
                kind = key.kind.as_str(),
                project_id = %key.project_id,
                id = %key.id,
                "supervised task did not stop within its grace period: aborted"
            );
            t.join.abort();
            let _ = t.join.await;
        }
    }

    /// Stops every task (engine shutdown); statuses say `Stopped`.
    pub async fn shutdown(&self) {
        let _one = self.changes.lock().await;
        let tasks: Vec<(TaskKey, TaskHandle)> = {
            let mut slots = lock(&self.slots);
            slots
                .iter_mut()
                .filter_map(|(k, s)| {
                    let t = s.task.take()?;
                    let mut st = lock(&s.status);
                    st.state = RunState::Stopped;
                    st.error = None;
                    Some((k.clone(), t))
                })
                .collect()
        };
        for (_, t) in &tasks {
            let _ = t.stop.send(true);
        }
        let deadline = tokio::time::Instant::now() + self.grace;
        for (key, mut t) in tasks {
            if tokio::time::timeout_at(deadline, &mut t.join)
                .await
                .is_err()
            {
                tracing::warn!(
                    kind = key.kind.as_str(),
                    project_id = %key.project_id,
                    id = %key.id,
                    "supervised task did not stop at shutdown: aborted"
                );
                t.join.abort();
            }
        }
    }
}

/// Runs `runtime` again and again until stopped, with backoff between failed runs.
async fn drive(
    key: TaskKey,
    runtime: Arc<dyn Runtime>,
    status: Arc<Mutex<RuntimeStatus>>,
    stop: watch::Receiver<bool>,
    backoff: Backoff,
) {
    let mut failures = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        // The status stays as it is (starting, or the last failure) until the run is ready.
        let ready = Ready {
            status: status.clone(),
        };
        let started = tokio::time::Instant::now();
        let result = runtime.run(StopSignal(stop.clone()), ready).await;
        if *stop.borrow() {
            return;
        }
        let error = match result {
            Ok(()) => ErrorInfo::not_run("the task ended without being stopped"),
            Err(e) => e,
        };
        if started.elapsed() >= backoff.max {
            failures = 0;
        }
        failures = failures.saturating_add(1);
        let delay = backoff.delay(failures);
        tracing::warn!(
            kind = key.kind.as_str(),
            project_id = %key.project_id,
            id = %key.id,
            error = %error.message,
            restart_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "supervised task failed"
        );
        {
            let mut st = lock(&status);
            st.state = RunState::Error;
            st.error = Some(error);
            st.restarts = st.restarts.saturating_add(1);
        }
        let mut wait_stop = stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = wait_stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::time::Instant;

    const NODE: &str = "node-a";

    fn supervisor(initial_ms: u64, max_ms: u64) -> Supervisor {
        Supervisor::new(
            NODE,
            Backoff {
                initial: Duration::from_millis(initial_ms),
                max: Duration::from_millis(max_ms),
            },
            Duration::from_millis(500),
        )
    }

    fn key(id: &str) -> TaskKey {
        TaskKey::new(TaskKind::EventSource, "p1", id)
    }

    /// Counts live runs; decremented when the run's future is dropped (returned or aborted).
    struct LiveGuard(Arc<AtomicUsize>);
    impl Drop for LiveGuard {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Test double: a runtime that says it is ready (unless `never_ready`) and runs until
    /// stopped (or, with `ignore_stop`, forever), counting its runs and the live ones.
    #[derive(Default)]
    struct ParkedRuntime {
        starts: AtomicUsize,
        live: Arc<AtomicUsize>,
        ignore_stop: bool,
        never_ready: bool,
    }

    #[async_trait::async_trait]
    impl Runtime for ParkedRuntime {
        async fn run(&self, mut stop: StopSignal, ready: Ready) -> Result<(), ErrorInfo> {
            self.starts.fetch_add(1, Ordering::SeqCst);
            self.live.fetch_add(1, Ordering::SeqCst);
            let _guard = LiveGuard(self.live.clone());
            if !self.never_ready {
                ready.ready();
            }
            if self.ignore_stop {
                std::future::pending::<()>().await;
            }
            stop.stopped().await;
            Ok(())
        }
    }

    /// Test double: a runtime whose every run fails at once, recording when it started.
    #[derive(Default)]
    struct FailingRuntime {
        starts: Mutex<Vec<Instant>>,
    }

    #[async_trait::async_trait]
    impl Runtime for FailingRuntime {
        async fn run(&self, _stop: StopSignal, _ready: Ready) -> Result<(), ErrorInfo> {
            let n = {
                let mut s = lock(&self.starts);
                s.push(Instant::now());
                s.len()
            };
            Err(ErrorInfo {
                code: "EG.00511000".into(),
                message: format!("broker unreachable (run {n})"),
            })
        }
    }

    /// Waits (in paused time) until `cond` holds.
    async fn until(mut cond: impl FnMut() -> bool) {
        for _ in 0..10_000 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("condition not reached");
    }

    #[tokio::test(start_paused = true)]
    async fn start_reports_running_with_the_node() {
        let sup = supervisor(100, 1000);
        let rt = Arc::new(ParkedRuntime::default());
        sup.apply(
            key("s1"),
            Desired::Run {
                revision: 1,
                runtime: rt.clone(),
            },
        )
        .await;
        until(|| rt.live.load(Ordering::SeqCst) == 1).await;
        assert_eq!(
            sup.status(&key("s1")),
            Some(RuntimeStatus {
                state: RunState::Running,
                error: None,
                node_name: NODE.into(),
                restarts: 0,
            })
        );
        assert_eq!(sup.status(&key("other")), None);

        // The same revision leaves the task alone; a new one replaces it.
        sup.apply(
            key("s1"),
            Desired::Run {
                revision: 1,
                runtime: rt.clone(),
            },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(rt.starts.load(Ordering::SeqCst), 1);
        sup.apply(
            key("s1"),
            Desired::Run {
                revision: 2,
                runtime: rt.clone(),
            },
        )
        .await;
        until(|| rt.starts.load(Ordering::SeqCst) == 2).await;
        assert_eq!(rt.live.load(Ordering::SeqCst), 1);
        sup.shutdown().await;
        assert_eq!(rt.live.load(Ordering::SeqCst), 0);
        assert_eq!(sup.status(&key("s1")).unwrap().state, RunState::Stopped);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_reported_and_restarted_with_growing_backoff() {
        let sup = supervisor(100, 1000);
        let rt = Arc::new(FailingRuntime::default());
        sup.apply(
            key("s1"),
            Desired::Run {
                revision: 1,
                runtime: rt.clone(),
            },
        )
        .await;
        until(|| lock(&rt.starts).len() >= 6).await;
        let st = sup.status(&key("s1")).unwrap();
        assert_eq!(st.state, RunState::Error);
        let e = st.error.unwrap();
        assert_eq!(e.code, "EG.00511000");
        assert!(e.message.starts_with("broker unreachable"), "{}", e.message);
        assert!(st.restarts >= 5);
        assert_eq!(st.node_name, NODE);
        // Restarted after 100, 200, 400, 800 ms, then capped at 1 s.
        let starts = lock(&rt.starts).clone();
        let gaps: Vec<u128> = starts
            .windows(2)
            .map(|w| (w[1] - w[0]).as_millis())
            .take(5)
            .collect();
        assert_eq!(gaps, vec![100, 200, 400, 800, 1000]);
        // Stopping during a backoff cancels the restart.
        sup.apply(key("s1"), Desired::Stopped).await;
        let n = lock(&rt.starts).len();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(lock(&rt.starts).len(), n);
        assert_eq!(
            sup.status(&key("s1")).map(|s| (s.state, s.error)),
            Some((RunState::Stopped, None))
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let ms: Vec<u128> = (1..=7).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(1));
        assert_eq!(Backoff::default().delay(100), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn stop_ends_the_task() {
        let sup = supervisor(100, 1000);
        let rt = Arc::new(ParkedRuntime::default());
        sup.apply(
            key("s1"),
            Desired::Run {
                revision: 1,
                runtime: rt.clone(),
            },
        )
        .await;
        until(|| rt.live.load(Ordering::SeqCst) == 1).await;
        sup.apply(key("s1"), Desired::Stopped).await;
        // apply returned after the run ended: the task is gone.
        assert_eq!(rt.live.load(Ordering::SeqCst), 0);
        let st = sup.status(&key("s1")).unwrap();
        assert_eq!(
            (st.state, st.error, st.node_name.as_str()),
            (RunState::Stopped, None, NODE)
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(rt.starts.load(Ordering::SeqCst), 1);

        // A run that ignores its stop signal is aborted after the grace period.
        let stubborn = Arc::new(ParkedRuntime {
            ignore_stop: true,
            ..Default::default()
        });
        sup.apply(
            key("s2"),
            Desired::Run {
                revision: 1,
                runtime: stubborn.clone(),
            },
        )
        .await;
        until(|| stubborn.live.load(Ordering::SeqCst) == 1).await;
        let before = Instant::now();
        sup.apply(key("s2"), Desired::Absent).await;
        assert_eq!(stubborn.live.load(Ordering::SeqCst), 0);
        assert_eq!(before.elapsed(), Duration::from_millis(500));
        // Absent: no status at all.
        assert_eq!(sup.status(&key("s2")), None);
    }

    #[tokio::test(start_paused = true)]
    async fn unrunnable_work_reports_the_reason() {
        let sup = supervisor(100, 1000);
        let reason = ErrorInfo::not_run("RABBITMQ sources are not supported by this build");
        sup.apply(key("s1"), Desired::Unrunnable(reason.clone()))
            .await;
        assert_eq!(
            sup.status(&key("s1")),
            Some(RuntimeStatus {
                state: RunState::Error,
                error: Some(reason),
                node_name: NODE.into(),
                restarts: 0,
            })
        );
        // A running task replaced by an unrunnable configuration is stopped.
        let rt = Arc::new(ParkedRuntime::default());
        sup.apply(
            key("s2"),
            Desired::Run {
                revision: 1,
                runtime: rt.clone(),
            },
        )
        .await;
        until(|| rt.live.load(Ordering::SeqCst) == 1).await;
        sup.apply(
            key("s2"),
            Desired::Unrunnable(ErrorInfo::not_run("invalid settings")),
        )
        .await;
        assert_eq!(rt.live.load(Ordering::SeqCst), 0);
        assert_eq!(sup.status(&key("s2")).unwrap().state, RunState::Error);
    }

    /// Test double: the first run fails at once; later runs wait `connect` (in paused time)
    /// before saying they are ready, then park until stopped.
    struct SlowConnect {
        starts: AtomicUsize,
        connect: Duration,
    }

    #[async_trait::async_trait]
    impl Runtime for SlowConnect {
        async fn run(&self, mut stop: StopSignal, ready: Ready) -> Result<(), ErrorInfo> {
            if self.starts.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err(ErrorInfo::not_run("wrong password"));
            }
            tokio::select! {
                _ = tokio::time::sleep(self.connect) => ready.ready(),
                _ = stop.stopped() => return Ok(()),
            }
            stop.stopped().await;
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn running_only_once_the_run_is_ready() {
        let sup = supervisor(100, 1000);
        // A run that never says it is ready is not reported running.
        let rt = Arc::new(ParkedRuntime {
            never_ready: true,
            ..Default::default()
        });
        sup.apply(
            key("s1"),
            Desired::Run {
                revision: 1,
                runtime: rt.clone(),
            },
        )
        .await;
        until(|| rt.live.load(Ordering::SeqCst) == 1).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let st = sup.status(&key("s1")).unwrap();
        assert_eq!(
            (st.state, st.error),
            (RunState::Error, Some(ErrorInfo::not_run(STARTING)))
        );

        // A restarted run keeps showing the last failure until it is ready.
        let slow = Arc::new(SlowConnect {
            starts: AtomicUsize::new(0),
            connect: Duration::from_millis(300),
        });
        sup.apply(
            key("s2"),
            Desired::Run {
                revision: 1,
                runtime: slow.clone(),
            },
        )
        .await;
        until(|| slow.starts.load(Ordering::SeqCst) == 2).await;
        let st = sup.status(&key("s2")).unwrap();
        assert_eq!(
            (st.state, st.error, st.restarts),
            (
                RunState::Error,
                Some(ErrorInfo::not_run("wrong password")),
                1
            )
        );
        tokio::time::sleep(Duration::from_millis(301)).await;
        let st = sup.status(&key("s2")).unwrap();
        assert_eq!((st.state, st.error), (RunState::Running, None));
        sup.shutdown().await;
        assert_eq!(sup.status(&key("s2")).unwrap().state, RunState::Stopped);
    }
}
