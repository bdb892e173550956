//! A limit on how many new node ids one source address may introduce: a stranger flooding
//! the namespace with fake candidates (a new id per datagram) fills the peer table and makes
//! every evaluation cost more. Pure, with an explicit clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// New node ids allowed per source address per window.
pub(crate) const NEW_PEERS_PER_SOURCE: u32 = 8;
/// The window.
pub(crate) const NEW_PEER_WINDOW: Duration = Duration::from_secs(10);
/// Source addresses tracked at most (older windows are forgotten first).
const MAX_SOURCES: usize = 4096;

/// Counts new node ids per source address in fixed windows.
#[derive(Debug, Default)]
pub(crate) struct NewPeerLimiter {
    sources: HashMap<IpAddr, (Instant, u32)>,
}

impl NewPeerLimiter {
    /// A limiter with the defaults above.
    pub(crate) fn new() -> NewPeerLimiter {
        NewPeerLimiter::default()
    }

    /// Whether `source` may introduce one more new node id at `now` (and counts it).
    pub(crate) fn admit(&mut self, source: IpAddr, now: Instant) -> bool {
        if self.sources.len() >= MAX_SOURCES && !self.sources.contains_key(&source) {
            self.sources.retain(|_, (start, _)| now.saturating_duration_since(*start) < NEW_PEER_WINDOW);
            if self.sources.len() >= MAX_SOURCES {
                return false;
            }
        }
        let entry = self.sources.entry(source).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= NEW_PEER_WINDOW {
            *entry = (now, 0);
        }
        if entry.1 >= NEW_PEERS_PER_SOURCE {
            return false;
        }
        entry.1 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_gets_a_few_new_ids_per_window() {
        let mut limiter = NewPeerLimiter::new();
        let t0 = Instant::now();
        let stranger: IpAddr = "10.0.0.66".parse().unwrap_or(IpAddr::from([10, 0, 0, 66]));
        let friend: IpAddr = IpAddr::from([10, 0, 0, 2]);
        let admitted = (0..100).filter(|_| limiter.admit(stranger, t0)).count();
        assert_eq!(admitted, NEW_PEERS_PER_SOURCE as usize);
        assert!(limiter.admit(friend, t0), "another host is not affected");
        assert!(!limiter.admit(stranger, t0 + NEW_PEER_WINDOW / 2));
        assert!(limiter.admit(stranger, t0 + NEW_PEER_WINDOW), "a new window");
    }
}
