//! Reconnect backoff with jitter: attempt 1 is immediate, then each wait is drawn between
//! half and all of `base × factor^(n-2)` (capped), and never below `min_wait` — so an
//! unreachable server costs a few attempts a minute, never a busy loop ([0.1.1 weakness C1](crate::wire::protocol#known-weaknesses-of-011-that-kinopio-fixes)).

use std::time::Duration;

/// Backoff parameters (see [`HubOptions::retry`](crate::HubOptions::retry)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Backoff {
    /// Floor of every wait after the first attempt.
    pub min_wait: Duration,
    /// Delay before the second attempt.
    pub base: Duration,
    /// Growth per attempt.
    pub factor: f64,
    /// Cap.
    pub max: Duration,
}

impl Backoff {
    /// The upper bound of the wait before attempt `attempt` (1-based). Pure.
    pub(crate) fn ceiling(&self, attempt: usize) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let exp = i32::try_from(attempt - 2).unwrap_or(i32::MAX);
        let secs = self.base.as_secs_f64() * self.factor.powi(exp);
        let capped = if secs.is_finite() { secs.min(self.max.as_secs_f64()) } else { self.max.as_secs_f64() };
        Duration::from_secs_f64(capped.max(0.0))
    }

    /// The wait before attempt `attempt`, with `unit` in `[0, 1)` as the jitter source.
    pub(crate) fn delay(&self, attempt: usize, unit: f64) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let ceiling = self.ceiling(attempt);
        let jittered = ceiling.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0));
        jittered.max(self.min_wait)
    }

    /// The wait before attempt `attempt` with random jitter.
    pub(crate) fn delay_random(&self, attempt: usize) -> Duration {
        self.delay(attempt, rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b() -> Backoff {
        Backoff {
            min_wait: Duration::from_millis(500),
            base: Duration::from_secs(1),
            factor: 1.5,
            max: Duration::from_secs(30),
        }
    }

    #[test]
    fn grows_geometrically_and_caps() {
        let b = b();
        assert_eq!(b.ceiling(1), Duration::ZERO);
        assert_eq!(b.ceiling(2), Duration::from_secs(1));
        assert_eq!(b.ceiling(3), Duration::from_millis(1500));
        assert_eq!(b.ceiling(4), Duration::from_millis(2250));
        assert_eq!(b.ceiling(100), Duration::from_secs(30));
        assert_eq!(b.ceiling(usize::MAX), Duration::from_secs(30));
    }

    #[test]
    fn jitter_stays_in_range_and_respects_the_floor() {
        let b = b();
        assert_eq!(b.delay(1, 0.7), Duration::ZERO);
        assert_eq!(b.delay(2, 0.0), Duration::from_millis(500));
        assert_eq!(b.delay(2, 1.0), Duration::from_secs(1));
        for attempt in 2..50 {
            let d = b.delay_random(attempt);
            assert!(d >= b.min_wait && d <= b.ceiling(attempt).max(b.min_wait), "{attempt}: {d:?}");
        }
    }
}
