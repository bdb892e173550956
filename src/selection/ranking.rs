//! Pure server ranking and the switch decision, with hysteresis. No I/O, no clock reads.
//!
//! Order: reachable first, then lower RTT, then input order (a stable sort). If nothing is
//! reachable, the input order is kept.
//!
//! Switching away from the current server needs another reachable server faster by at least
//! `threshold`, in `confirmations` consecutive probe rounds, with the same target each time.
//! Servers are compared by normalised [`ServerUrl`], never by raw string. After a switch the
//! roles reverse, so going back needs the old server to be `threshold` faster than the new
//! one: RTTs wobbling around the threshold cannot make the hub flap.

use std::time::Duration;

use crate::selection::ProbeResult;
use crate::server::ServerUrl;

/// Orders probe results: reachable first, then RTT, then input position. Returns indexes into
/// `results`. If no server is reachable, the input order.
pub(crate) fn order(results: &[ProbeResult]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..results.len()).collect();
    if results.iter().all(|r| r.rtt.is_none()) {
        return idx;
    }
    idx.sort_by_key(|&i| (results[i].rtt.is_none(), results[i].rtt.unwrap_or(Duration::MAX), i));
    idx
}

/// What the ranking recommends after a probe round.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum Decision {
    /// Stay on the current server.
    Stay,
    /// A faster server was seen but must be confirmed by another round soon.
    Confirm {
        /// The faster server.
        candidate: ServerUrl,
    },
    /// Switch to this server.
    Switch {
        /// The server to move to.
        to: ServerUrl,
        /// The current server's RTT, if it answered.
        rtt_before: Option<Duration>,
        /// The new server's RTT.
        rtt_after: Duration,
    },
}

/// The hysteresis state between probe rounds.
#[derive(Debug, Clone)]
pub(crate) struct Ranking {
    threshold: Duration,
    confirmations: u32,
    streak: Option<(ServerUrl, u32)>,
}

impl Ranking {
    /// A ranking that switches for `threshold` or more, after `confirmations` rounds in a row
    /// (at least 1).
    pub(crate) fn new(threshold: Duration, confirmations: u32) -> Self {
        Ranking { threshold, confirmations: confirmations.max(1), streak: None }
    }

    /// Feeds one probe round; `current` is the server in use.
    pub(crate) fn observe(&mut self, current: Option<&ServerUrl>, results: &[ProbeResult]) -> Decision {
        let best = order(results).into_iter().map(|i| &results[i]).find(|r| r.rtt.is_some());
        let Some(best) = best else {
            self.streak = None;
            return Decision::Stay;
        };
        let best_rtt = best.rtt.unwrap_or(Duration::MAX);
        let current_rtt = current.and_then(|c| results.iter().find(|r| &r.server == c)).and_then(|r| r.rtt);
        let better = match (current, current_rtt) {
            (Some(c), _) if c == &best.server => false,
            // The current server did not answer its probe: any reachable server is better.
            (_, None) => true,
            (_, Some(cur)) => cur >= best_rtt + self.threshold,
        };
        if !better {
            self.streak = None;
            return Decision::Stay;
        }
        let count = match &self.streak {
            Some((server, n)) if server == &best.server => n + 1,
            _ => 1,
        };
        if count >= self.confirmations {
            self.streak = None;
            Decision::Switch { to: best.server.clone(), rtt_before: current_rtt, rtt_after: best_rtt }
        } else {
            self.streak = Some((best.server.clone(), count));
            Decision::Confirm { candidate: best.server.clone() }
        }
    }

    /// Forgets a pending confirmation (e.g. after a manual reconnect).
    pub(crate) fn reset(&mut self) {
        self.streak = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(port: u16) -> ServerUrl {
        format!("nats://127.0.0.1:{port}").parse().unwrap()
    }

    fn res(port: u16, ms: Option<u64>) -> ProbeResult {
        ProbeResult {
            server: url(port),
            rtt: ms.map(Duration::from_millis),
            error: ms.is_none().then(|| "refused".to_owned()),
        }
    }

    #[test]
    fn orders_by_reachability_rtt_then_input() {
        let r = [res(1, Some(35)), res(2, Some(12)), res(3, None)];
        assert_eq!(order(&r), vec![1, 0, 2]);
        let ties = [res(1, Some(5)), res(2, Some(5)), res(3, Some(5))];
        assert_eq!(order(&ties), vec![0, 1, 2]);
        let none = [res(1, None), res(2, None)];
        assert_eq!(order(&none), vec![0, 1]);
        let dead_first = [res(1, None), res(2, Some(50))];
        assert_eq!(order(&dead_first), vec![1, 0]);
    }

    #[test]
    fn switches_only_past_the_threshold_and_after_confirmation() {
        let mut r = Ranking::new(Duration::from_millis(30), 2);
        let cur = url(1);
        // 29 ms better: stay.
        assert_eq!(r.observe(Some(&cur), &[res(1, Some(60)), res(2, Some(31))]), Decision::Stay);
        // 30 ms better: needs a second round.
        assert_eq!(
            r.observe(Some(&cur), &[res(1, Some(60)), res(2, Some(30))]),
            Decision::Confirm { candidate: url(2) }
        );
        // A round without the advantage resets the streak.
        assert_eq!(r.observe(Some(&cur), &[res(1, Some(60)), res(2, Some(45))]), Decision::Stay);
        assert!(matches!(r.observe(Some(&cur), &[res(1, Some(60)), res(2, Some(5))]), Decision::Confirm { .. }));
        assert_eq!(
            r.observe(Some(&cur), &[res(1, Some(60)), res(2, Some(5))]),
            Decision::Switch {
                to: url(2),
                rtt_before: Some(Duration::from_millis(60)),
                rtt_after: Duration::from_millis(5)
            }
        );
    }

    #[test]
    fn never_flaps_around_the_threshold() {
        // RTTs wobble by ±14 ms around 30 ms apart; once switched, the hub stays.
        let mut r = Ranking::new(Duration::from_millis(30), 1);
        let mut current = url(1);
        let mut switches = 0;
        for round in 0..200u64 {
            let wobble = (round * 7919 % 29) as i64 - 14;
            let a = (60 + wobble) as u64;
            let b = (30 - wobble / 2) as u64;
            if let Decision::Switch { to, .. } = r.observe(Some(&current), &[res(1, Some(a)), res(2, Some(b))]) {
                current = to;
                switches += 1;
            }
        }
        assert!(switches <= 1, "flapped {switches} times");
    }

    #[test]
    fn unreachable_current_server_is_left_for_any_reachable_one() {
        let mut r = Ranking::new(Duration::from_millis(30), 1);
        let d = r.observe(Some(&url(1)), &[res(1, None), res(2, Some(80))]);
        assert!(matches!(d, Decision::Switch { ref to, rtt_before: None, .. } if to == &url(2)));
        // Nothing reachable: stay put.
        assert_eq!(r.observe(Some(&url(1)), &[res(1, None), res(2, None)]), Decision::Stay);
    }

    #[test]
    fn compares_normalised_urls() {
        let mut r = Ranking::new(Duration::from_millis(30), 1);
        let spelled: ServerUrl = "127.0.0.1:1".parse().unwrap();
        // Current server is the fastest under another spelling: no switch to itself.
        assert_eq!(r.observe(Some(&spelled), &[res(1, Some(5)), res(2, Some(90))]), Decision::Stay);
    }
}
