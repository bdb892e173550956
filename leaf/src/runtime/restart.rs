//! When to restart a nats-server that exited (pure, driven by an explicit clock): doubling
//! backoff, a bounded number of consecutive attempts, and a reset once a server has stayed
//! ready long enough.

use std::time::{Duration, Instant};

use super::options::RestartPolicy;

/// Tracks consecutive restarts against a [`RestartPolicy`].
#[derive(Debug, Clone)]
pub(crate) struct RestartBudget {
    policy: RestartPolicy,
    consecutive: u32,
    ready_since: Option<Instant>,
}

impl RestartBudget {
    /// A fresh budget.
    pub(crate) fn new(policy: RestartPolicy) -> Self {
        RestartBudget { policy, consecutive: 0, ready_since: None }
    }

    /// The server became ready at `now`.
    pub(crate) fn on_ready(&mut self, now: Instant) {
        self.ready_since = Some(now);
    }

    /// The server exited (or a restart failed) at `now`: the delay before the next
    /// attempt, or `None` when the budget is spent.
    pub(crate) fn on_exit(&mut self, now: Instant) -> Option<Duration> {
        if let Some(since) = self.ready_since.take()
            && now.saturating_duration_since(since) >= self.policy.stable_after
        {
            self.consecutive = 0;
        }
        if self.consecutive >= self.policy.max_attempts {
            return None;
        }
        let factor = 2u32.saturating_pow(self.consecutive);
        let delay = self.policy.initial_backoff.saturating_mul(factor).min(self.policy.max_backoff);
        self.consecutive += 1;
        Some(delay)
    }

    #[cfg(test)]
    /// Consecutive attempts so far.
    pub(crate) fn consecutive(&self) -> u32 {
        self.consecutive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RestartPolicy {
        RestartPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            max_attempts: 4,
            stable_after: Duration::from_secs(10),
        }
    }

    #[test]
    fn backoff_doubles_to_the_cap_then_gives_up() {
        let now = Instant::now();
        let mut budget = RestartBudget::new(policy());
        let delays: Vec<Option<Duration>> = (0..5).map(|_| budget.on_exit(now)).collect();
        assert_eq!(
            delays,
            [
                Some(Duration::from_millis(100)),
                Some(Duration::from_millis(200)),
                Some(Duration::from_millis(350)),
                Some(Duration::from_millis(350)),
                None
            ]
        );
    }

    #[test]
    fn a_short_lived_server_keeps_counting() {
        let start = Instant::now();
        let mut budget = RestartBudget::new(policy());
        assert_eq!(budget.on_exit(start), Some(Duration::from_millis(100)));
        budget.on_ready(start + Duration::from_secs(1));
        assert_eq!(budget.on_exit(start + Duration::from_secs(5)), Some(Duration::from_millis(200)));
        assert_eq!(budget.consecutive(), 2);
    }

    #[test]
    fn a_stable_server_resets_the_count() {
        let start = Instant::now();
        let mut budget = RestartBudget::new(policy());
        for _ in 0..4 {
            budget.on_exit(start);
        }
        budget.on_ready(start);
        assert_eq!(budget.on_exit(start + Duration::from_secs(10)), Some(Duration::from_millis(100)));
        assert_eq!(budget.consecutive(), 1);
    }
}
