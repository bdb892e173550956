//! The pure lease rules of live channels (§6), driven by an explicit clock (`now` is passed
//! in): the receiver's lease table ([`Leases`]: grant, accept, expiry, eviction) and the
//! sender's cached grant ([`CachedGrant`]: when to reuse it, sequence numbers).

use std::time::{Duration, Instant};

use indexmap::IndexMap;

use crate::wire::p4::live::{Data, Grant, MAX_SEQ};

/// Most leases a receiver holds at once (§10.1).
pub(crate) const MAX_LEASES: usize = 32;

/// Extra time a sender keeps in hand before reusing a cached grant (§6: `+ 0.01` s).
pub(crate) const REUSE_MARGIN: Duration = Duration::from_millis(10);
/// Smallest transit estimate a sender assumes (stands in for the reference's connection RTT).
pub(crate) const MIN_TRANSIT: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LeaseState {
    expires_at: Instant,
    /// The last accepted sequence number (0: none yet).
    last_seq: u64,
}

/// Why a receiver dropped a data message that had a valid shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// It names another session (an older connection's, or another receiver's).
    WrongSession,
    /// Its lease was never granted by this session, or was evicted.
    UnknownLease,
    /// Its lease has expired.
    Expired,
    /// Its sequence number is not above the lease's last one (a replay or reordering).
    StaleSeq,
}

impl Refusal {
    /// Whether the sender should hear that its lease is gone (kinopio's negative
    /// acknowledgement): only for messages of this session, whose lease it no longer holds.
    pub(crate) fn lease_gone(self) -> bool {
        matches!(self, Refusal::UnknownLease | Refusal::Expired)
    }
}

/// A data message the receiver accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Accepted {
    pub seq: u64,
    pub expires_at: Instant,
}

/// One receiver's session and lease table.
///
/// Eviction differs from 3.0.0 on purpose (W16): when all 32 slots are taken, Python evicts
/// the oldest lease; kinopio evicts the oldest lease **that has not carried data yet**, and
/// only the oldest lease of all when every lease has. A flood of lease requests then pushes
/// out other fresh leases before a sender's working one; to evict a working lease the
/// flooder must use all of its own 32, i.e. deliver 32 values that the application sees.
#[derive(Debug)]
pub(crate) struct Leases {
    session: String,
    max_age: Duration,
    /// In grant order.
    leases: IndexMap<String, LeaseState>,
    evicted: u64,
}

impl Leases {
    pub(crate) fn new(session: String, max_age: Duration) -> Leases {
        Leases { session, max_age, leases: IndexMap::new(), evicted: 0 }
    }

    /// The current session.
    pub(crate) fn session(&self) -> &str {
        &self.session
    }

    /// Leases evicted to make room so far.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Starts a new session (a new connection): every lease of the old one is gone.
    pub(crate) fn renew(&mut self, session: String) {
        self.session = session;
        self.leases.clear();
    }

    /// Grants lease `id` (a fresh UUID) at `now`: prunes expired leases, makes room (see
    /// the type docs), records it with last seq 0 and returns the grant to send.
    pub(crate) fn grant(&mut self, now: Instant, id: String) -> Grant {
        self.leases.retain(|_, l| l.expires_at > now);
        if self.leases.len() >= MAX_LEASES {
            let victim = self.leases.iter().position(|(_, l)| l.last_seq == 0).unwrap_or(0);
            self.leases.shift_remove_index(victim);
            self.evicted += 1;
        }
        self.leases.insert(id.clone(), LeaseState { expires_at: now + self.max_age, last_seq: 0 });
        Grant { session: self.session.clone(), lease: id, ttl_ms: self.max_age.as_millis() as u64 }
    }

    /// Accepts a data message (already checked for shape and value by [`Data::parse`]) at
    /// `now`: same session, known lease not expired, seq strictly above the last one; then
    /// the lease's last seq becomes `data.seq`.
    pub(crate) fn accept(&mut self, now: Instant, data: &Data) -> Result<Accepted, Refusal> {
        if data.session != self.session {
            return Err(Refusal::WrongSession);
        }
        let lease = self.leases.get_mut(&data.lease).ok_or(Refusal::UnknownLease)?;
        if now >= lease.expires_at {
            return Err(Refusal::Expired);
        }
        if data.seq <= lease.last_seq {
            return Err(Refusal::StaleSeq);
        }
        lease.last_seq = data.seq;
        Ok(Accepted { seq: data.seq, expires_at: lease.expires_at })
    }
}

/// A sender's grant, cached for reuse while it is safely valid.
#[derive(Debug, Clone)]
pub(crate) struct CachedGrant {
    pub grant: Grant,
    /// The sender's view of the expiry: request time + `ttl_ms`, never later than the
    /// receiver's (which starts when it granted).
    pub expires_at: Instant,
    /// How long the lease request took.
    pub rtt: Duration,
    /// The last sequence number sent under it.
    pub seq: u64,
    /// The server connection it was obtained on (`Checkpoint::connection_key`): a new
    /// connection means a new receiver session.
    pub connection: (u64, u64),
}

impl CachedGrant {
    pub(crate) fn new(
        grant: Grant,
        requested_at: Instant,
        received_at: Instant,
        connection: (u64, u64),
    ) -> CachedGrant {
        CachedGrant {
            expires_at: requested_at + Duration::from_millis(grant.ttl_ms),
            rtt: received_at.saturating_duration_since(requested_at),
            grant,
            seq: 0,
            connection,
        }
    }

    /// Whether a send at `now` on `connection` may reuse it: same connection, and
    /// `now + max(rtt, 1 ms) + 10 ms < expiry`, so the data still arrives in time.
    pub(crate) fn reusable(&self, now: Instant, connection: (u64, u64)) -> bool {
        connection == self.connection
            && self.seq < MAX_SEQ
            && now + self.rtt.max(MIN_TRANSIT) + REUSE_MARGIN < self.expires_at
    }

    /// Whether it has expired at `now` (then sending under it is pointless: `EXPIRED`).
    pub(crate) fn expired(&self, now: Instant) -> bool {
        now >= self.expires_at
    }

    /// The next sequence number (1, 2, …), or `None` past 2^53 − 1.
    pub(crate) fn next_seq(&mut self) -> Option<u64> {
        if self.seq >= MAX_SEQ {
            return None;
        }
        self.seq += 1;
        Some(self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::p4::canonical::Json;

    const AGE: Duration = Duration::from_millis(300);

    fn data(session: &str, lease: &str, seq: u64) -> Data {
        Data { session: session.into(), lease: lease.into(), seq, value: Json::Null }
    }

    #[test]
    fn a_grant_is_accepted_with_increasing_seq_until_it_expires() {
        let t0 = Instant::now();
        let mut leases = Leases::new("s1".into(), AGE);
        let grant = leases.grant(t0, "l1".into());
        assert_eq!(grant, Grant { session: "s1".into(), lease: "l1".into(), ttl_ms: 300 });
        let at = t0 + Duration::from_millis(10);
        assert_eq!(leases.accept(at, &data("s1", "l1", 1)), Ok(Accepted { seq: 1, expires_at: t0 + AGE }));
        // seq must grow strictly; gaps are fine.
        assert_eq!(leases.accept(at, &data("s1", "l1", 1)), Err(Refusal::StaleSeq));
        assert_eq!(leases.accept(at, &data("s1", "l1", 5)).map(|a| a.seq), Ok(5));
        assert_eq!(leases.accept(at, &data("s1", "l1", 4)), Err(Refusal::StaleSeq));
        assert_eq!(leases.accept(at, &data("s1", "l1", MAX_SEQ)).map(|a| a.seq), Ok(MAX_SEQ));
        // Expiry is exclusive: at the deadline it is gone.
        assert_eq!(
            leases.accept(t0 + AGE - Duration::from_nanos(1), &data("s1", "l1", MAX_SEQ)),
            Err(Refusal::StaleSeq)
        );
        let mut fresh = Leases::new("s1".into(), AGE);
        fresh.grant(t0, "l1".into());
        assert_eq!(fresh.accept(t0 + AGE, &data("s1", "l1", 1)), Err(Refusal::Expired));
        assert!(Refusal::Expired.lease_gone() && Refusal::UnknownLease.lease_gone());
        assert!(!Refusal::WrongSession.lease_gone() && !Refusal::StaleSeq.lease_gone());
    }

    #[test]
    fn wrong_session_and_unknown_leases_are_refused() {
        let t0 = Instant::now();
        let mut leases = Leases::new("s1".into(), AGE);
        leases.grant(t0, "l1".into());
        assert_eq!(leases.accept(t0, &data("s0", "l1", 1)), Err(Refusal::WrongSession));
        assert_eq!(leases.accept(t0, &data("s1", "nope", 1)), Err(Refusal::UnknownLease));
        // A new session (reconnect) drops every lease of the old one.
        leases.renew("s2".into());
        assert_eq!(leases.session(), "s2");
        assert_eq!(leases.accept(t0, &data("s1", "l1", 1)), Err(Refusal::WrongSession));
        assert_eq!(leases.accept(t0, &data("s2", "l1", 1)), Err(Refusal::UnknownLease));
        let grant = leases.grant(t0, "l2".into());
        assert_eq!(grant.session, "s2");
        assert!(leases.accept(t0, &data("s2", "l2", 1)).is_ok());
    }

    #[test]
    fn the_33rd_grant_evicts_the_oldest_unused_lease() {
        let t0 = Instant::now();
        let mut leases = Leases::new("s".into(), AGE);
        for i in 0..MAX_LEASES {
            leases.grant(t0, format!("l{i}"));
        }
        assert_eq!(leases.evicted(), 0);
        // All unused: the 33rd evicts the oldest, as in 3.0.0.
        leases.grant(t0, "l32".into());
        assert_eq!(leases.evicted(), 1);
        assert_eq!(leases.accept(t0, &data("s", "l0", 1)), Err(Refusal::UnknownLease));
        assert!(leases.accept(t0, &data("s", "l1", 1)).is_ok());
        // l1 has carried data, so the next grant evicts l2 (the oldest unused), not l1 (W16).
        leases.grant(t0, "l33".into());
        assert!(leases.accept(t0, &data("s", "l1", 2)).is_ok());
        assert_eq!(leases.accept(t0, &data("s", "l2", 1)), Err(Refusal::UnknownLease));
        // When every lease has carried data, the oldest goes.
        for i in 3..=33 {
            assert!(leases.accept(t0, &data("s", &format!("l{i}"), 1)).is_ok(), "l{i}");
        }
        leases.grant(t0, "l34".into());
        assert_eq!(leases.accept(t0, &data("s", "l1", 3)), Err(Refusal::UnknownLease));
        assert_eq!(leases.evicted(), 3);
    }

    #[test]
    fn expired_leases_are_pruned_before_evicting() {
        let t0 = Instant::now();
        let mut leases = Leases::new("s".into(), AGE);
        for i in 0..MAX_LEASES {
            leases.grant(t0, format!("old{i}"));
        }
        let later = t0 + AGE;
        leases.grant(later, "new".into());
        assert_eq!(leases.evicted(), 0);
        assert_eq!(leases.leases.len(), 1);
    }

    #[test]
    fn a_cached_grant_is_reused_only_while_it_covers_the_transit() {
        let t0 = Instant::now();
        let grant = Grant { session: "s".into(), lease: "l".into(), ttl_ms: 300 };
        let mut cached = CachedGrant::new(grant, t0, t0 + Duration::from_millis(20), (1, 1));
        assert_eq!(cached.expires_at, t0 + AGE);
        assert_eq!(cached.rtt, Duration::from_millis(20));
        // 300 - 20 - 10 = 270 ms is the last moment it is reused.
        assert!(cached.reusable(t0 + Duration::from_millis(269), (1, 1)));
        assert!(!cached.reusable(t0 + Duration::from_millis(270), (1, 1)));
        // Another connection: another session, so never reused.
        assert!(!cached.reusable(t0, (2, 1)));
        assert!(!cached.reusable(t0, (1, 2)));
        assert!(!cached.expired(t0 + Duration::from_millis(299)));
        assert!(cached.expired(t0 + AGE));
        assert_eq!((cached.next_seq(), cached.next_seq()), (Some(1), Some(2)));
        cached.seq = MAX_SEQ - 1;
        assert_eq!(cached.next_seq(), Some(MAX_SEQ));
        assert_eq!(cached.next_seq(), None);
        assert!(!cached.reusable(t0, (1, 1)));
    }
}
