//! Publishing dead-letter records (`docs/limits.md`, "Dead letters").
//!
//! When a target with a `dead_letter_queue` fails for good, its delivery becomes
//! `DEAD_LETTER`: due like a retry, and claimed by the retry poller with the same lease, which
//! publishes the record here instead of attempting the target. The record reports the
//! target's attempts as stored (`attempts`, and the newest of `recent`: its status and end
//! time), which dead-letter publishes never change. A publish that fails is retried with the
//! delivery backoff until the dead-letter window ([`WINDOW`]) after the failure has passed;
//! then the record is dropped and logged. Nothing is dropped earlier: the state lives in the
//! delivery row, so restarts and crashes resume it.

use crate::dispatch::{lease_budget, RecorderMsg};
use crate::routes::{DeadLetterRoute, TargetRoute};
use crate::{now_ms, Engine};
use bytes::Bytes;
use openeg_connectors::backoff;
use openeg_connectors::sinks::dead_letter::DeadLetterRecord;
use openeg_connectors::Outcome;
use openeg_store::delivery::{
    DeadLetter, DeadLetterState, DeadLetterUpdate, Delivery, DeliveryStatus,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;

/// How long after a target's failure its dead-letter record is retried before it is dropped.
pub const WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Dead-letter publishes in flight at once, over every target.
pub(crate) const CONCURRENCY: usize = 64;

/// When the target failed for good: the end of its newest attempt.
fn failed_at(d: &Delivery) -> i64 {
    d.recent
        .first()
        .map_or(d.updated_at, |a| a.at.saturating_add(a.latency_ms))
}

/// The update recorded after one publish with outcome `o` at `now`.
pub(crate) fn next_state(d: &Delivery, o: &Outcome, now: i64) -> DeadLetterUpdate {
    let tries = d.dead_letter.tries;
    if o.is_success() {
        return DeadLetterUpdate {
            id: d.id,
            status: DeliveryStatus::Failed,
            next_at: 0,
            dead_letter: DeadLetter {
                state: DeadLetterState::Sent,
                tries,
            },
        };
    }
    let tries = tries.saturating_add(1);
    let next_at = now.saturating_add(backoff::delay(tries, None).as_millis() as i64);
    if next_at > failed_at(d).saturating_add(WINDOW.as_millis() as i64) {
        return DeadLetterUpdate {
            id: d.id,
            status: DeliveryStatus::Failed,
            next_at: 0,
            dead_letter: DeadLetter {
                state: DeadLetterState::Dropped,
                tries,
            },
        };
    }
    DeadLetterUpdate {
        id: d.id,
        status: DeliveryStatus::DeadLetter,
        next_at,
        dead_letter: DeadLetter {
            state: DeadLetterState::Pending,
            tries,
        },
    }
}

/// Publishes the dead-letter record of claimed delivery `d` (lease until `lease_until`) and
/// records the outcome. `event` is the original event's JSON text.
pub(crate) async fn publish(
    engine: Arc<Engine>,
    d: Delivery,
    route: Arc<TargetRoute>,
    event: Bytes,
    lease_until: i64,
    _permit: OwnedSemaphorePermit,
) {
    let now = now_ms();
    let outcome = match &route.dead_letter {
        Some(DeadLetterRoute::Topic(sink)) => {
            let last_status = d.recent.first().map_or("", |a| a.code.as_str());
            let record = DeadLetterRecord {
                event_id: &d.event_id,
                event: &event,
                subscription_id: &d.subscription_id,
                target_id: &d.target_id,
                attempts: d.attempts,
                last_status,
                failed_at_ms: failed_at(&d),
            };
            match lease_budget(lease_until, now) {
                None => return,
                Some(b) => match tokio::time::timeout(b, sink.publish(&record)).await {
                    Ok(o) => o,
                    Err(_) => Outcome::Retry {
                        code: String::new(),
                        detail: "the publish outlasted its lease".into(),
                        retry_after: None,
                    },
                },
            }
        }
        Some(DeadLetterRoute::Unavailable(reason)) => Outcome::Retry {
            code: String::new(),
            detail: reason.clone(),
            retry_after: None,
        },
        // The queue was removed from the target since it failed: nowhere to publish.
        None => Outcome::GiveUp {
            code: String::new(),
            detail: "the target no longer has a dead-letter queue".into(),
        },
    };
    let mut update = next_state(&d, &outcome, now_ms());
    if matches!(outcome, Outcome::GiveUp { .. }) {
        update.status = DeliveryStatus::Failed;
        update.next_at = 0;
        update.dead_letter.state = DeadLetterState::Dropped;
    }
    match (&outcome, update.dead_letter.state) {
        (_, DeadLetterState::Sent) => engine.metrics.dead_letters_sent.add(1),
        (Outcome::Retry { code, detail, .. } | Outcome::GiveUp { code, detail }, state) => {
            engine.metrics.dead_letter_failures.add(1);
            if state == DeadLetterState::Dropped {
                engine.metrics.dead_letters_dropped.add(1);
                tracing::warn!(subscription_id = %d.subscription_id, target_id = %d.target_id,
                    event_id = %d.event_id, tries = update.dead_letter.tries, code = %code,
                    reason = %detail, "dead-letter record dropped");
            } else {
                tracing::info!(subscription_id = %d.subscription_id, target_id = %d.target_id,
                    tries = update.dead_letter.tries, code = %code, reason = %detail,
                    "dead-letter publish failed; retrying");
            }
        }
        _ => {}
    }
    if engine
        .recorder
        .send(RecorderMsg::DeadLetter(update))
        .await
        .is_err()
    {
        tracing::debug!("dead-letter outcome not recorded: shutting down");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openeg_store::delivery::Attempt;

    fn delivery(tries: u32) -> Delivery {
        Delivery {
            id: 7,
            project_id: "p".into(),
            channel_id: "c".into(),
            offset: 0,
            event_id: "e".into(),
            received_at: 0,
            subscription_id: "s".into(),
            subscription_name: "sn".into(),
            target_id: "t".into(),
            target_name: "WEBHOOK".into(),
            status: DeliveryStatus::DeadLetter,
            attempts: 3,
            next_at: 0,
            recent: vec![Attempt {
                at: 1_000,
                success: false,
                latency_ms: 500,
                code: "503".into(),
            }],
            updated_at: 9_999,
            dead_letter: DeadLetter {
                state: DeadLetterState::Pending,
                tries,
            },
        }
    }

    #[test]
    fn sent_ends_the_delivery() {
        let u = next_state(
            &delivery(2),
            &Outcome::Delivered { code: "200".into() },
            5_000,
        );
        assert_eq!(u.status, DeliveryStatus::Failed);
        assert_eq!(u.dead_letter.state, DeadLetterState::Sent);
        assert_eq!(u.dead_letter.tries, 2);
    }

    #[test]
    fn failures_back_off_until_the_window_ends() {
        let fail = Outcome::Retry {
            code: "AllBrokersDown".into(),
            detail: "x".into(),
            retry_after: None,
        };
        let u = next_state(&delivery(0), &fail, 2_000);
        assert_eq!(u.status, DeliveryStatus::DeadLetter);
        assert_eq!(
            u.dead_letter,
            DeadLetter {
                state: DeadLetterState::Pending,
                tries: 1
            }
        );
        assert!((2_800..=3_200).contains(&u.next_at), "{}", u.next_at);
        // Near the end of the window (failure at 1.5 s): the next try would be past it.
        let late = 1_500 + WINDOW.as_millis() as i64 - 1_000;
        let u = next_state(&delivery(20), &fail, late);
        assert_eq!(u.status, DeliveryStatus::Failed);
        assert_eq!(u.dead_letter.state, DeadLetterState::Dropped);
        assert_eq!(u.dead_letter.tries, 21);
    }
}
