//! The late-joiner sync (§4.7): on every activation the namespace asks its peers for their
//! records, and it answers their requests with its own.
//!
//! The wire is the reference's: a request `{"instanceId":…}` on `_sys.v4.<hex(ns)>.sync` with
//! a reply inbox `_sys.v4.<hex(ns)>.inbox.<id>`, answered by every peer with each of its
//! records as one message, with no count and no end marker.
//!
//! # Deliberate differences from 3.0.0 (W10, W11)
//! - **A sync ends when it is complete, not after a fixed window.** Python listens for 2.4 s
//!   and drops the rest, so a late joiner of a 10,000-variable namespace never gets the tail.
//!   kinopio keeps its inbox open while answers keep coming and ends the round once they have
//!   been quiet for [`NamespaceOptions::sync_quiet`](super::NamespaceOptions) (bounded by
//!   `sync_limit`); it waits [`sync_first_reply`](super::NamespaceOptions) for a first answer.
//! - **An empty namespace is known at once.** The first request goes out before this
//!   instance subscribes the sync subject itself, so when nobody else is listening the server
//!   answers "no responders" (503) and the round ends immediately instead of after 2.4 s.
//! - **It says when it has synced**: [`Namespace::wait_synced`], [`Namespace::is_synced`].
//! - **No quadratic re-sync.** Python re-syncs every 15 s from every hub (H·(H−1)·R record
//!   messages per 15 s for H hubs holding R records). kinopio syncs on every activation
//!   (connect, reconnect, switch) — while connected, records arrive on the record subjects —
//!   plus an anti-entropy round that about **one** instance of the namespace runs per
//!   `repair_interval` (30 s; each instance with probability 1 / instances online), which
//!   repairs stores that drifted apart without anyone reconnecting (a backbone partition that
//!   healed). Background traffic is therefore about (H−1)·R per 30 s, linear in the fleet,
//!   and a join costs one answer per peer. kinopio still answers Python's periodic requests
//!   (rate-limited per instance like Python).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use indexmap::IndexMap;
use tokio::sync::watch;

use super::namespace::{Core, Namespace, new_id};
use super::store;
use super::{Error, NamespaceOptions};
use crate::engine::lock;
use crate::wire::p4::ErrorCode;
use crate::wire::p4::canonical::{self, Json};
use crate::wire::p4::names::{Id, Subjects};
use crate::wire::p4::record::Record;

/// Most instances the answer rate limiter remembers (the reference's `max_instances`).
const MAX_REMEMBERED: usize = 1024;

/// How a sync round ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncEnd {
    /// The server said nobody else listens for sync requests: the namespace has no peers.
    NoPeers,
    /// No answer came within the first-reply wait.
    NoAnswer,
    /// Answers came and then stayed quiet: everything the peers sent has arrived.
    Quiet,
    /// The round hit its overall limit while answers were still coming.
    Limit,
}

/// The result of a completed sync round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncReport {
    /// How the round ended.
    pub end: SyncEnd,
    /// Record messages received (from every peer, duplicates included).
    pub answers: u64,
    /// Of those, records that changed the store.
    pub stored: u64,
    /// From the request to the end of the round.
    pub elapsed: Duration,
}

/// The pure rules of one requesting round (an injectable clock: every call takes `now`).
#[derive(Debug, Clone)]
pub(crate) struct Round {
    started: Instant,
    last_answer: Option<Instant>,
    first_reply: Duration,
    quiet: Duration,
    limit: Duration,
}

impl Round {
    pub(crate) fn new(now: Instant, options: &NamespaceOptions) -> Self {
        Round {
            started: now,
            last_answer: None,
            first_reply: options.sync_first_reply,
            quiet: options.sync_quiet,
            limit: options.sync_limit,
        }
    }

    /// An answer arrived.
    pub(crate) fn answered(&mut self, now: Instant) {
        self.last_answer = Some(now);
    }

    /// When the round ends unless another answer comes first.
    pub(crate) fn deadline(&self) -> Instant {
        let end = match self.last_answer {
            None => self.started + self.first_reply,
            Some(last) => last + self.quiet,
        };
        end.min(self.started + self.limit)
    }

    /// How the round ends at `now`, if it does.
    pub(crate) fn end(&self, now: Instant) -> Option<SyncEnd> {
        if now < self.deadline() {
            return None;
        }
        Some(match self.last_answer {
            _ if now >= self.started + self.limit && self.last_answer.is_some_and(|l| now < l + self.quiet) => {
                SyncEnd::Limit
            }
            None => SyncEnd::NoAnswer,
            Some(_) => SyncEnd::Quiet,
        })
    }
}

/// The responder's checks of §4.7: the requesting instance's id, if the request deserves an
/// answer.
/// `Ok(None)` for this instance's own request (echoed back by the server).
pub(crate) fn requester(
    subjects: &Subjects,
    own: &Id,
    payload: &[u8],
    reply: Option<&str>,
) -> Result<Option<Id>, Error> {
    let reply = reply
        .ok_or_else(|| Error::new(ErrorCode::NoReplySubject).with_detail("a sync request without a reply subject"))?;
    if subjects.inbox_id(reply).is_none() {
        return Err(Error::new(ErrorCode::InvalidMessage)
            .with_detail("a sync request whose reply subject is not this namespace's inbox"));
    }
    let json = canonical::decode(payload)?;
    let Json::Object(map) = json else {
        return Err(Error::new(ErrorCode::InvalidMessage).with_detail("a sync request that is not an object"));
    };
    let Some(Json::String(id)) = map.get("instanceId") else {
        return Err(Error::new(ErrorCode::InvalidMessage).with_detail("a sync request without an instanceId"));
    };
    let id = Id::new(id.as_str())?;
    Ok((&id != own).then_some(id))
}

/// Answers each instance at most once per interval (the reference's rule), remembering at
/// most [`MAX_REMEMBERED`] instances (oldest forgotten first).
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    last: IndexMap<Id, Instant>,
}

impl Limiter {
    /// Whether to answer `id` at `now`.
    pub(crate) fn admit(&mut self, id: &Id, now: Instant, interval: Duration) -> bool {
        if let Some(at) = self.last.get(id)
            && now.saturating_duration_since(*at) < interval
        {
            return false;
        }
        self.last.shift_remove(id);
        if self.last.len() >= MAX_REMEMBERED {
            self.last.shift_remove_index(0);
        }
        self.last.insert(id.clone(), now);
        true
    }
}

/// Where the namespace's sync stands.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct State {
    /// The last completed round, if any.
    pub last: Option<SyncReport>,
}

/// Sync state of one namespace.
#[derive(Debug)]
pub(crate) struct Shared {
    pub state: watch::Sender<State>,
    responder: AtomicBool,
    limiter: Mutex<Limiter>,
    round: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            state: watch::channel(State::default()).0,
            responder: AtomicBool::new(false),
            limiter: Mutex::new(Limiter::default()),
            round: Mutex::new(None),
        }
    }
}

/// Whether this instance runs the anti-entropy round of this period: with probability
/// 1 / `instances` (the instances online, this one included), so the namespace runs about
/// one round per period whatever its size. `draw` is uniform in [0, 1).
pub(crate) fn repairs(instances: usize, draw: f64) -> bool {
    draw * (instances.max(1) as f64) < 1.0
}

/// Starts the anti-entropy task (the responder subscribes after the first request, see the
/// module docs).
pub(crate) async fn start(core: &Arc<Core>) -> Result<(), Error> {
    if let Some(period) = core.options.repair_interval {
        tokio::spawn(repair(Arc::clone(core), period));
    }
    Ok(())
}

/// Anti-entropy: each period (jittered ±50 %), maybe one sync round.
async fn repair(core: Arc<Core>, period: Duration) {
    loop {
        let jitter = rand::random_range(0.5..1.5);
        tokio::select! {
            () = core.cancel.cancelled() => return,
            () = tokio::time::sleep(period.mul_f64(jitter)) => {}
        }
        let synced = core.sync.state.borrow().last.is_some();
        if synced && repairs(super::presence::online_instances(&core), rand::random::<f64>()) {
            tracing::debug!(namespace = %core.name, "anti-entropy sync round");
            on_activation(&core).await;
        }
    }
}

/// Starts a sync round for the new connection (ending a round still running for an older one).
pub(crate) async fn on_activation(core: &Arc<Core>) {
    let task = tokio::spawn(round(Arc::clone(core)));
    if let Some(old) = lock(&core.sync.round).replace(task) {
        old.abort();
    }
}

/// One requesting round.
async fn round(core: Arc<Core>) {
    match request(&core).await {
        Ok(report) => {
            tracing::debug!(namespace = %core.name, ?report, "synced");
            core.sync.state.send_modify(|s| s.last = Some(report));
        }
        Err(e) => tracing::debug!(namespace = %core.name, error = %e, "sync round failed; the next activation retries"),
    }
}

async fn request(core: &Arc<Core>) -> Result<SyncReport, Error> {
    let id = new_id();
    let inbox_subject = async_nats::Subject::from(core.subjects.inbox(&id));
    let mut inbox = core.engine.subscribe(&inbox_subject, None).await.map_err(|e| {
        Error::new(ErrorCode::Disconnected).with_detail("could not subscribe the sync inbox").with_source(e)
    })?;
    let payload = format!("{{\"instanceId\":\"{}\"}}", core.instance_id);
    let sent_at = Instant::now();
    core.engine
        .publish_now(async_nats::Subject::from(core.subjects.sync()), Some(inbox_subject), payload.into(), None)
        .await
        .map_err(|e| Error::new(ErrorCode::Disconnected).with_source(e))?;
    if !core.sync.responder.swap(true, Ordering::AcqRel)
        && let Err(e) = start_responder(core).await
    {
        core.sync.responder.store(false, Ordering::Release);
        tracing::warn!(namespace = %core.name, error = %e, "could not subscribe sync requests; peers cannot sync from this instance");
    }
    let mut round = Round::new(sent_at, &core.options);
    let (mut answers, mut stored) = (0u64, 0u64);
    let end = loop {
        let deadline = tokio::time::Instant::from_std(round.deadline());
        let msg = tokio::select! {
            () = core.cancel.cancelled() => return Err(Error::new(ErrorCode::Closed)),
            () = tokio::time::sleep_until(deadline) => None,
            msg = inbox.next() => msg,
        };
        let now = Instant::now();
        match msg {
            None => {
                if let Some(end) = round.end(now) {
                    break end;
                }
            }
            Some(msg) if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS) => break SyncEnd::NoPeers,
            Some(msg) => {
                round.answered(now);
                answers += 1;
                match Record::decode(&msg.payload) {
                    Ok(record) => stored += u64::from(store::receive(core, record)),
                    Err(e) => core.reject("a malformed sync answer", &e.into()),
                }
            }
        }
    };
    drop(inbox);
    Ok(SyncReport { end, answers, stored, elapsed: sent_at.elapsed() })
}

/// Subscribes the sync subject and answers requests.
async fn start_responder(core: &Arc<Core>) -> Result<(), Error> {
    let subject = async_nats::Subject::from(core.subjects.sync());
    let mut requests = core.engine.subscribe(&subject, None).await.map_err(|e| {
        Error::new(ErrorCode::Disconnected).with_detail("could not subscribe sync requests").with_source(e)
    })?;
    let core = Arc::clone(core);
    tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                () = core.cancel.cancelled() => break,
                msg = requests.next() => match msg { Some(m) => m, None => break },
            };
            let reply = msg.reply.as_ref().map(|r| r.as_str());
            let id = match requester(&core.subjects, &core.instance_id, &msg.payload, reply) {
                Ok(Some(id)) => id,
                Ok(None) => continue,
                Err(e) => {
                    core.reject("a sync request", &e);
                    continue;
                }
            };
            if !lock(&core.sync.limiter).admit(&id, Instant::now(), core.options.sync_answer_interval) {
                continue;
            }
            let Some(reply) = msg.reply.clone() else { continue };
            let answer = Arc::clone(&core);
            tokio::spawn(async move { answer_with_store(&answer, reply).await });
        }
    });
    Ok(())
}

/// Sends every stored record to `reply`, one message each, in store order, then this
/// instance's health report (like Python, §4.7).
async fn answer_with_store(core: &Core, reply: async_nats::Subject) {
    let records: Vec<bytes::Bytes> = core.store.with(|s| s.entries().map(|e| e.encoded.clone()).collect());
    for encoded in records {
        if core.engine.publish_now(reply.clone(), None, encoded, None).await.is_err() {
            return;
        }
    }
    if let Err(e) = super::presence::report_now(core).await {
        tracing::debug!(namespace = %core.name, error = %e, "no health report after a sync answer");
    }
}

impl Namespace {
    /// True once a sync round has completed on the current or an earlier connection: the
    /// namespace holds what its peers held then.
    pub fn is_synced(&self) -> bool {
        self.core().sync.state.borrow().last.is_some()
    }

    /// Waits until the first sync round has completed (see [`Namespace::is_synced`]) and
    /// returns its report.
    ///
    /// # Errors
    /// `TIMEOUT` when no round completed within `timeout` (for example while the hub cannot
    /// connect), `CLOSED` when the namespace is gone.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn wait_synced(&self, timeout: Duration) -> Result<SyncReport, Error> {
        let mut rx = self.core().sync.state.subscribe();
        match tokio::time::timeout(timeout, rx.wait_for(|s| s.last.is_some())).await {
            Ok(Ok(state)) => state.last.ok_or_else(|| Error::new(ErrorCode::Closed)),
            Ok(Err(_)) => Err(Error::new(ErrorCode::Closed)),
            Err(_) => Err(Error::new(ErrorCode::Timeout).with_detail(format!(
                "namespace {} did not finish syncing within {} ms (is the hub connected?)",
                self.name(),
                timeout.as_millis()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::p4::names::Name;

    fn options() -> NamespaceOptions {
        NamespaceOptions::default().sync_first_reply(Duration::from_millis(2400)).sync_quiet(Duration::from_millis(300))
    }

    #[test]
    fn a_round_waits_for_a_first_answer_then_for_quiet() {
        let t0 = Instant::now();
        let mut round = Round::new(t0, &options());
        assert_eq!(round.end(t0 + Duration::from_millis(2399)), None);
        assert_eq!(round.end(t0 + Duration::from_millis(2400)), Some(SyncEnd::NoAnswer));
        round.answered(t0 + Duration::from_millis(10));
        assert_eq!(round.deadline(), t0 + Duration::from_millis(310));
        // A long stream of answers keeps it open past Python's 2.4 s window…
        for ms in (10..5000).step_by(100) {
            round.answered(t0 + Duration::from_millis(ms));
            assert_eq!(round.end(t0 + Duration::from_millis(ms + 50)), None);
        }
        // …and quiet ends it.
        assert_eq!(round.end(t0 + Duration::from_millis(4910 + 300)), Some(SyncEnd::Quiet));
    }

    #[test]
    fn a_round_never_outlives_its_limit() {
        let t0 = Instant::now();
        let mut round = Round::new(t0, &options());
        let limit = options().sync_limit;
        let mut t = t0;
        while t < t0 + limit {
            round.answered(t);
            t += Duration::from_millis(100);
        }
        assert_eq!(round.deadline(), t0 + limit);
        assert_eq!(round.end(t0 + limit), Some(SyncEnd::Limit));
    }

    #[test]
    fn responders_check_requests_like_python() {
        let subjects = Subjects::new(&Name::new("workshop").unwrap());
        let own = Id::new("me").unwrap();
        let inbox = subjects.inbox(&Id::new("abc").unwrap());
        let ok = requester(&subjects, &own, br#"{"instanceId":"peer-1"}"#, Some(&inbox)).unwrap();
        assert_eq!(ok.unwrap().as_str(), "peer-1");
        assert_eq!(requester(&subjects, &own, br#"{"instanceId":"me"}"#, Some(&inbox)).unwrap(), None, "own request");
        assert!(requester(&subjects, &own, br#"{"instanceId":"a b"}"#, Some(&inbox)).is_err(), "bad id");
        assert!(requester(&subjects, &own, br#"{"instanceId":"p"}"#, Some("_INBOX.x")).is_err(), "foreign inbox");
        assert!(requester(&subjects, &own, br#"{"instanceId":"p"}"#, None).is_err(), "no reply");
        assert!(requester(&subjects, &own, b"[[[[", Some(&inbox)).is_err(), "garbage");
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(requester(&subjects, &own, deep.as_bytes(), Some(&inbox)).is_err(), "deep nesting is bounded");
    }

    #[test]
    fn about_one_instance_repairs_per_period() {
        assert!(repairs(1, 0.99), "alone, always");
        assert!(repairs(0, 0.5), "no presence yet counts as alone");
        assert!(repairs(10, 0.05) && !repairs(10, 0.1));
        // Over many draws the expected number of rounds per period is one, whatever the size.
        for n in [2usize, 5, 40] {
            let draws = 10_000;
            let rounds: usize = (0..draws).map(|i| usize::from(repairs(n, (i as f64 + 0.5) / draws as f64))).sum();
            let per_period = rounds as f64 * n as f64 / draws as f64;
            assert!((per_period - 1.0).abs() < 0.01, "{n}: {per_period}");
        }
    }

    #[test]
    fn the_limiter_answers_each_instance_once_per_interval_and_forgets_the_oldest() {
        let mut limiter = Limiter::default();
        let t0 = Instant::now();
        let i = Duration::from_millis(2400);
        let a = Id::new("a").unwrap();
        assert!(limiter.admit(&a, t0, i));
        assert!(!limiter.admit(&a, t0 + Duration::from_millis(2399), i));
        assert!(limiter.admit(&a, t0 + i, i));
        for n in 0..MAX_REMEMBERED + 10 {
            limiter.admit(&Id::new(format!("x{n}")).unwrap(), t0 + i, i);
        }
        assert_eq!(limiter.last.len(), MAX_REMEMBERED);
        assert!(limiter.admit(&a, t0 + i + Duration::from_millis(1), i), "forgotten, so answered again");
    }
}
