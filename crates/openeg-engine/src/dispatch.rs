//! One delivery attempt: render the transforms, send, and record the outcome durably.

use crate::routes::{Delivery, TargetRoute};
use crate::{now_ms, Engine, MAX_HOPS};
use bytes::Bytes;
use openeg_connectors::backoff;
use openeg_connectors::{Message, Outcome};
use openeg_rules::Rendered;
use openeg_store::delivery::{Attempt, AttemptUpdate, DeliveryStatus};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;

/// A delivery to attempt.
pub struct Job {
    pub id: i64,
    pub route: Arc<TargetRoute>,
    pub event: Arc<Value>,
    /// Attempts already made.
    pub attempts: u32,
    pub received_at: i64,
}

/// Concurrency slot of one target: in-flight permits and the number of queued attempts.
pub struct Slot {
    pub sem: Semaphore,
    pub queued: AtomicUsize,
}

fn slot(engine: &Engine, route: &TargetRoute) -> Arc<Slot> {
    let mut slots = match engine.slots.lock() {
        Ok(s) => s,
        Err(p) => p.into_inner(),
    };
    slots
        .entry(route.slot_key.clone())
        .or_insert_with(|| {
            Arc::new(Slot {
                sem: Semaphore::new(engine.cfg.target_concurrency),
                queued: AtomicUsize::new(0),
            })
        })
        .clone()
}

/// Whether the target can take one more queued attempt (a slow target never blocks a
/// router: beyond the queue bound its deliveries wait in the store for the retry poller).
pub fn has_room(engine: &Engine, route: &TargetRoute) -> bool {
    slot(engine, route).queued.load(Ordering::Relaxed) < engine.cfg.target_queue
}

/// Queues an attempt on the target's slot.
pub fn spawn(engine: Arc<Engine>, job: Job) {
    let s = slot(&engine, &job.route);
    s.queued.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        let permit = s.sem.acquire().await;
        s.queued.fetch_sub(1, Ordering::Relaxed);
        if permit.is_ok() {
            attempt(&engine, job).await;
        }
    });
}

fn render(route: &TargetRoute, event: &Value) -> Message {
    let payload = match route.payload.render(event) {
        Rendered::Text(s) => Bytes::from(s),
        Rendered::None => Bytes::new(),
    };
    Message {
        payload,
        key: route.key.as_ref().and_then(|k| k.render_text(event)),
        subject: route.subject.as_ref().and_then(|s| s.render_text(event)),
    }
}

fn hop_count(ev: &Value) -> u64 {
    match ev.get("eghopcount") {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

/// HC.EG: the output must be a CloudEvent; it is republished into the target channel.
async fn forward(
    engine: &Engine,
    project_id: &str,
    channel_id: &str,
    source_event: &Value,
    payload: &[u8],
) -> Outcome {
    let give_up = |detail: String| Outcome::GiveUp {
        code: String::new(),
        detail,
    };
    let Ok(mut ev) = serde_json::from_slice::<Value>(payload) else {
        return give_up("the transformed event is not JSON".into());
    };
    let hops = hop_count(source_event).max(hop_count(&ev)) + 1;
    if hops > MAX_HOPS {
        return give_up(format!("the event already crossed {MAX_HOPS} channels"));
    }
    if let Some(m) = ev.as_object_mut() {
        m.insert("eghopcount".into(), Value::String(hops.to_string()));
    }
    if let Err(e) = openeg_api::event::validate(&ev) {
        return give_up(format!("not a valid CloudEvent: {}", e.msg));
    }
    match engine
        .meta
        .get(project_id, openeg_store::Kind::Channel, channel_id)
        .await
    {
        Ok(Some(_)) => {}
        Ok(None) => return give_up("the target channel does not exist".into()),
        Err(e) => {
            return Outcome::Retry {
                code: String::new(),
                detail: e.to_string(),
                retry_after: None,
            }
        }
    }
    match engine.publish(project_id, channel_id, &[&ev]).await {
        Ok(()) => Outcome::Delivered { code: "200".into() },
        Err(e) => Outcome::Retry {
            code: String::new(),
            detail: e,
            retry_after: None,
        },
    }
}

/// Makes one attempt and records it.
pub async fn attempt(engine: &Engine, job: Job) {
    let started = now_ms();
    let t0 = Instant::now();
    let route = &job.route;
    let msg = render(route, &job.event);
    let outcome = match &route.delivery {
        Delivery::Sink(sink) => sink.send(&msg).await,
        Delivery::Channel {
            project_id,
            channel_id,
        } => forward(engine, project_id, channel_id, &job.event, &msg.payload).await,
        Delivery::Unavailable(reason) => Outcome::GiveUp {
            code: String::new(),
            detail: reason.clone(),
        },
    };
    let latency = t0.elapsed();
    let n = job.attempts + 1;
    let now = now_ms();
    let too_old = now - job.received_at > backoff::MAX_EVENT_AGE.as_millis() as i64;
    let (status, next_at) = match &outcome {
        Outcome::Delivered { .. } => (DeliveryStatus::Succeeded, 0),
        Outcome::Retry { retry_after, .. } if job.attempts < route.retry_times && !too_old => {
            let d = backoff::delay(n, *retry_after);
            (DeliveryStatus::Retrying, now + d.as_millis() as i64)
        }
        _ => (DeliveryStatus::Failed, 0),
    };
    engine.metrics.record_attempt(
        &outcome,
        status,
        latency,
        now - job.received_at,
        job.attempts > 0,
    );
    if let Outcome::GiveUp { detail, .. } | Outcome::Retry { detail, .. } = &outcome {
        tracing::debug!(subscription_id = %route.subscription_id, target_id = %route.target_id, %detail, "delivery attempt failed");
    }
    let attempt = Attempt {
        at: started,
        success: outcome.is_success(),
        latency_ms: latency.as_millis() as i64,
        code: outcome.code().to_string(),
    };
    let update = AttemptUpdate {
        id: job.id,
        status,
        attempts: n,
        next_at,
        attempt,
    };
    if engine.recorder.send(update).await.is_err() {
        // Shutting down: the lease expires and the delivery is attempted again (at-least-once).
        tracing::debug!(delivery_id = job.id, "attempt not recorded: shutting down");
    }
}

/// Records attempt outcomes in batches: one store transaction (one fsync) for everything that
/// finished while the previous batch was being written.
pub(crate) async fn run_recorder(
    delivery: Arc<dyn openeg_store::delivery::DeliveryStore>,
    mut rx: tokio::sync::mpsc::Receiver<AttemptUpdate>,
) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < RECORD_BATCH {
            match rx.try_recv() {
                Ok(u) => batch.push(u),
                Err(_) => break,
            }
        }
        if let Err(e) = delivery.record_attempts(&batch).await {
            // Their leases expire and they are attempted again: at-least-once.
            tracing::warn!(count = batch.len(), error = %e, "recording delivery attempts failed");
        }
        batch.clear();
    }
}

const RECORD_BATCH: usize = 1024;
