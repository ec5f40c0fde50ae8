//! The retry poller: claims due deliveries (retries, deliveries left over by a restart or
//! by a full target queue) and attempts them again, or publishes their dead-letter record
//! (`DEAD_LETTER`).

use crate::dead_letter;
use crate::dispatch::{self, Event, Job, Stored};
use crate::{now_ms, Engine, EngineError};
use openeg_store::delivery::{Attempt, DeliveryStatus};
use std::sync::Arc;

pub(crate) async fn run(engine: Arc<Engine>) {
    let mut shutdown = engine.shutdown.clone();
    loop {
        let busy = match poll_once(&engine).await {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::warn!(error = %e, "retry poll failed");
                false
            }
        };
        if !busy {
            tokio::select! {
                _ = tokio::time::sleep(engine.cfg.poll_interval) => {},
                _ = shutdown.changed() => return,
            }
        } else if *shutdown.borrow() {
            return;
        }
    }
}

/// One claim round; returns how many deliveries were claimed.
pub async fn poll_once(engine: &Arc<Engine>) -> Result<usize, EngineError> {
    let now = now_ms();
    let claimed = engine
        .delivery
        .claim_due(
            now,
            engine.cfg.lease.as_millis() as i64,
            256,
            &engine.cfg.node_name,
        )
        .await
        .map_err(EngineError::store("claiming due deliveries"))?;
    let n = claimed.len();
    let mut no_room = Vec::new();
    for d in claimed {
        let routes = engine.routes_for(&d.project_id, &d.channel_id).await?;
        let Some(route) = routes
            .targets
            .get(&(d.subscription_id.clone(), d.target_id.clone()))
            .cloned()
        else {
            // The target was removed from its subscription: nothing to deliver to any more.
            let a = Attempt {
                at: now,
                success: false,
                latency_ms: 0,
                code: String::new(),
            };
            let _ = engine
                .delivery
                .record_attempt(d.id, DeliveryStatus::Failed, d.attempts, 0, &a)
                .await;
            continue;
        };
        let raw = match engine
            .read_event(&d.project_id, &d.channel_id, d.offset)
            .await
        {
            Ok(raw) => raw,
            // Left claimed: it is claimed again when its lease has run out.
            Err(e @ EngineError::UnreadableRecord { .. }) => {
                tracing::debug!(delivery_id = d.id, error = %e, "the event cannot be read");
                continue;
            }
            Err(e) => return Err(e),
        };
        let Some(raw) = raw else {
            tracing::warn!(
                delivery_id = d.id,
                "the event is no longer in the log; giving up"
            );
            let a = Attempt {
                at: now,
                success: false,
                latency_ms: 0,
                code: String::new(),
            };
            let _ = engine
                .delivery
                .record_attempt(d.id, DeliveryStatus::Failed, d.attempts, 0, &a)
                .await;
            continue;
        };
        if d.status == DeliveryStatus::DeadLetter {
            let Ok(permit) = engine.dead_letter_slots.clone().try_acquire_owned() else {
                no_room.push(d.id);
                continue;
            };
            let lease_until = now + engine.cfg.lease.as_millis() as i64;
            tokio::spawn(dead_letter::publish(
                engine.clone(),
                d,
                route,
                raw,
                lease_until,
                permit,
            ));
            continue;
        }
        let event = Event::new(raw);
        if !dispatch::has_room(engine, &route) {
            no_room.push(d.id);
            continue;
        }
        dispatch::spawn(
            engine.clone(),
            Job {
                stored: Stored::Claimed {
                    id: d.id,
                    lease_until: now + engine.cfg.lease.as_millis() as i64,
                },
                route,
                event: Arc::new(event),
                attempts: d.attempts,
                received_at: d.received_at,
            },
        );
    }
    if !no_room.is_empty() {
        // The target's queue is full: give the claims back for a later poll rather than
        // holding them for a whole lease.
        let at = now_ms() + NO_ROOM_DELAY_MS;
        if let Err(e) = engine.delivery.postpone(&no_room, at).await {
            tracing::warn!(error = %e, "giving back claimed deliveries failed; they wait out their lease");
        }
        // Only what was attempted counts as progress, so a full queue does not spin the poller.
        return Ok(n - no_room.len());
    }
    Ok(n)
}

/// How long a delivery whose target queue was full waits before the poller tries again.
const NO_ROOM_DELAY_MS: i64 = 1_000;
