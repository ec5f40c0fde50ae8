//! The retry schedule of `docs/limits.md`: delay before retry n (n ≥ 1) is
//! min(2^(n−1) s, 300 s) with ±20 % jitter; a `Retry-After` hint ≤ 300 s is honoured.

use std::time::Duration;

pub const MAX_DELAY: Duration = Duration::from_secs(300);
/// Events older than this are not retried any more.
pub const MAX_EVENT_AGE: Duration = Duration::from_secs(24 * 3600);

/// The un-jittered delay before retry `n` (1-based).
pub fn base_delay(n: u32) -> Duration {
    let exp = n.saturating_sub(1).min(16);
    Duration::from_secs(1u64 << exp).min(MAX_DELAY)
}

/// The delay before retry `n` with ±20 % jitter, or the peer's hint when it is usable.
pub fn delay(n: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(h) = retry_after.filter(|h| *h <= MAX_DELAY) {
        return h;
    }
    let base = base_delay(n).as_secs_f64();
    let jitter = 0.8 + rand::random::<f64>() * 0.4;
    Duration::from_secs_f64(base * jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule() {
        let secs: Vec<u64> = (1..=12).map(|n| base_delay(n).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(base_delay(100), MAX_DELAY);
        // 16 retries span about 43 minutes.
        let total: u64 = (1..=16).map(|n| base_delay(n).as_secs()).sum();
        assert_eq!(total, 511 + 300 * 7);
        for n in 1..20 {
            let d = delay(n, None).as_secs_f64();
            let b = base_delay(n).as_secs_f64();
            assert!(d >= b * 0.8 - 1e-9 && d <= b * 1.2 + 1e-9);
        }
        assert_eq!(
            delay(3, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        let d = delay(1, Some(Duration::from_secs(301))).as_secs_f64();
        assert!(d <= 1.2);
    }
}
