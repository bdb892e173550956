//! Live channels (§6): leased, sequence-checked control inputs, wire-compatible with
//! kinopio-hub 3.0.0's `hub.live(name)`. The user-facing contract (what a send result means,
//! W16) is on [`LiveChannel`]; the pure lease rules are in `lease`, the message shapes in
//! [`crate::wire::p4::live`].
//!
//! # Deliberate differences from 3.0.0
//! - Eviction prefers leases without data (see [`LiveChannel`], W16). Wire-invisible.
//! - The optional acknowledgement ([`Delivery::Accepted`]): only between kinopio peers, and only when the
//!   sender asks for it.
//! - A receiver's values wait in a queue of 32 after acceptance (Python runs a synchronous
//!   callback per value, behind a native queue of 32 messages); a full queue drops the
//!   newest value and counts it ([`LiveStats::overflowed`]); it is never acknowledged.
//! - Channels that no handle refers to any more free their slot of the 128 (Python keeps
//!   every channel for the hub's lifetime).
//! - `"protocol": true` is not `1` (Python's `True == 1` lets it pass), and `1.0` passes
//!   where Python requires a JSON integer for `seq`/`ttl_ms` (the JSON model keeps no
//!   int/float distinction). No sender writes either.

mod lease;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_nats::{StatusCode, Subject};
use futures::{Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::namespace::{Core, Namespace, Stats, new_id};
use super::{Error, value};
use crate::engine::{Engine, Inbox, lock};
use crate::error::{PublishError, PublishErrorKind, SubscribeError, SubscribeErrorKind};
use crate::state::ConnectionState;
use crate::wire::p4::ErrorCode;
use crate::wire::p4::canonical::Json;
use crate::wire::p4::live::{self as wire, Ack, Data, Grant, MAX_TTL_MS, MIN_TTL_MS};
use crate::wire::p4::names::Name;

use lease::{CachedGrant, Leases};

/// Most live channels per namespace (§10.1).
pub(crate) const MAX_CHANNELS: usize = 128;
/// Most receivers per namespace (§10.1).
pub(crate) const MAX_RECEIVERS: usize = 32;
/// Accepted values a receiver holds for the application before dropping new ones.
const RECEIVER_QUEUE: usize = 32;

/// Live channel state of one namespace: its channels (by name) and receivers.
#[derive(Debug, Default)]
pub(crate) struct Live {
    channels: Mutex<HashMap<Name, Weak<Channel>>>,
    receivers: Mutex<Vec<Weak<Receiver>>>,
    /// Receivers alive (their [`LiveReceiver`] not dropped).
    receiver_count: AtomicUsize,
}

impl Live {
    pub(crate) fn new() -> Self {
        Live::default()
    }
}

/// The server connection in use (`None` while there is none). A receiver session belongs to
/// one: the activation counter alone lags the connected state by a moment, so it is not used
/// to tell connections apart.
fn current_connection(core: &Core) -> Option<(u64, u64)> {
    core.engine.checkpoint().map(|c| c.connection_key())
}

/// Gives every receiver a new session on the new connection (§6, §8.2): the leases of the
/// old session are dropped, so data sent under them is refused, and senders ask again.
pub(crate) async fn on_activation(core: &Arc<Core>) {
    let now = current_connection(core);
    let receivers: Vec<Arc<Receiver>> = {
        let mut all = lock(&core.live.receivers);
        all.retain(|r| r.strong_count() > 0);
        all.iter().filter_map(Weak::upgrade).collect()
    };
    for receiver in receivers {
        let mut connection = lock(&receiver.connection);
        if *connection != now {
            *connection = now;
            lock(&receiver.leases).renew(new_id().as_str().to_owned());
        }
    }
}

/// Counters of one live channel (both ends), for [`LiveChannel::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveStats {
    /// Leases this channel's receiver granted.
    pub granted: u64,
    /// Values the receiver accepted.
    pub accepted: u64,
    /// Well-formed data messages the receiver refused by the lease rules: another session
    /// (an older connection's, or another receiver's on the same channel), an unknown or
    /// expired lease, a `seq` not above the last.
    pub refused: u64,
    /// Malformed lease requests and data messages (also counted in
    /// [`Namespace::rejected`](super::Namespace::rejected)).
    pub malformed: u64,
    /// Leases the receiver evicted to make room for new ones (32 at most).
    pub evicted: u64,
    /// Accepted values dropped because the application did not take them fast enough (the
    /// receiver queue holds 32).
    pub overflowed: u64,
    /// Values this channel's sender flushed.
    pub sent: u64,
}

#[derive(Debug, Default)]
struct Counters {
    granted: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    malformed: AtomicU64,
    evicted: AtomicU64,
    overflowed: AtomicU64,
    sent: AtomicU64,
}

/// One channel of a namespace, shared by every [`LiveChannel`] handle of that name.
#[derive(Debug)]
struct Channel {
    name: Name,
    lease: Subject,
    data: Subject,
    /// `S.inbox.`: reply subjects of lease requests and data must start with it.
    inbox_prefix: String,
    /// The sender's cached grant; held for the whole of a send (one send at a time: `BUSY`).
    sender: tokio::sync::Mutex<Option<CachedGrant>>,
    /// The channel has a receiver (one at most: `ALREADY_SUBSCRIBED`).
    subscribed: AtomicBool,
    counters: Counters,
}

///
/// A live channel of a namespace (§6), from [`Namespace::live`] (`ns.live("robot/cmd")?`).
/// Cheap to clone; every handle of the same name in the same namespace is the same channel
/// (one receiver, one send at a time), and a handle keeps its namespace running. It is both
/// ends of the channel:
/// - [`LiveChannel::subscribe`] makes it a **receiver**: a [`LiveReceiver`] stream of the
///   values it accepted. Each connection activation gets a fresh session (a UUID); lease
///   requests on `S.lease` are granted per §6 (at most 32 leases, expired ones pruned, one
///   evicted to make room) and data on `S.data` is accepted only for the current session, a
///   known unexpired lease and a strictly increasing `seq`. Anything else is dropped and
///   counted ([`LiveStats`], and [`Namespace::rejected`] for
///   malformed messages); it never ends the stream.
/// - [`LiveChannel::send`] makes it a **sender**: it obtains a lease from the first receiver
///   that answers (or reuses a cached one), sends the value under the next `seq`, and
///   flushes.
///
/// # What a send result means
///
/// The 3.0.0 wire has no answer to a data message, so a sender cannot know whether a
/// receiver accepted the value: the lease may have expired in transit, or been evicted by
/// 32 lease requests from anyone (W16), and the receiver then drops the value silently.
/// Python's `send()` returns success once the data is flushed; kinopio says exactly that:
///
/// - [`Delivery::Flushed`] (plain [`LiveChannel::send`]): the server has the data message (a
///   PING/PONG round trip after it, on the same connection). Nothing is known about the
///   receiver.
/// - [`Delivery::Accepted`] (with [`LiveSendOptions::confirm`]): a **kinopio** receiver said
///   it accepted this value. kinopio adds an optional acknowledgement that Python peers never
///   see or ignore (the data message carries a reply subject, which the Python receiver does
///   not look at; see [`crate::wire::p4::live`]). A kinopio receiver that no longer holds the
///   lease answers that too, and the send fails with `EXPIRED` at once instead of claiming
///   success. A Python receiver never confirms, so a confirmed send to it ends in `TIMEOUT`
///   ("flushed, not confirmed"): use plain sends with Python receivers.
///
/// # W16: unauthenticated leases
///
/// Any client can request leases and send data; the wire has no way to tell a legitimate
/// sender from another. What kinopio does within the wire:
/// - its receiver evicts the oldest lease **that has not carried data** before a working one
///   (see [`LiveStats::evicted`]), so 32 bare lease requests no longer cut off an active
///   sender (a flooder now has to deliver 32 values the application sees);
/// - a confirmed send learns of an evicted or expired lease (`EXPIRED`) instead of reporting
///   success;
/// - it does not claim acceptance it cannot know ([`Delivery::Flushed`]).
///
/// Injection (any client obtaining a lease and sending a value that is accepted) cannot be
/// prevented on this wire; restrict who may publish to `_sys.v4.<hex(ns)>.live.>` with NATS
/// permissions if that matters.
///
/// # Examples
/// ```no_run
/// # async fn demo(hub: kinopio::Hub) -> Result<(), kinopio::p4::Error> {
/// use futures::StreamExt;
/// use kinopio::p4::{Delivery, LiveOptions};
///
/// let arm = hub.namespace("workshop")?.live("robot/cmd")?;
/// let mut commands = arm.subscribe(LiveOptions::new()).await?;
/// // Elsewhere (any kinopio or kinopio-hub 3.0.0 instance in the namespace):
/// assert_eq!(arm.send(&serde_json::json!({"step": 1})).await?, Delivery::Flushed);
/// while let Some(command) = commands.next().await {
///     // Re-check right before acting: the lease may have run out meanwhile.
///     if command.context().is_valid() {
///         println!("step {:?} (seq {})", command.value(), command.context().seq());
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LiveChannel {
    /// Keeps the namespace running while a handle or receiver of its channels exists.
    namespace: Namespace,
    core: Arc<Core>,
    channel: Arc<Channel>,
}

impl std::fmt::Debug for LiveChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveChannel").field("namespace", &self.core.name).field("name", &self.channel.name).finish()
    }
}

impl Namespace {
    /// The live channel `name` of this namespace (§6).
    ///
    /// # Errors
    /// `INVALID_NAME` unless `name` is 1–128 UTF-8 bytes without control characters;
    /// `LIMIT_EXCEEDED` when the namespace already has 128 channels in use.
    pub fn live(&self, name: &str) -> Result<LiveChannel, Error> {
        let name = Name::new(name)?;
        let core = self.core();
        let mut channels = lock(&core.live.channels);
        if let Some(channel) = channels.get(&name).and_then(Weak::upgrade) {
            return Ok(LiveChannel { namespace: self.clone(), core: Arc::clone(core), channel });
        }
        channels.retain(|_, c| c.strong_count() > 0);
        if channels.len() >= MAX_CHANNELS {
            return Err(Error::new(ErrorCode::LimitExceeded)
                .with_detail(format!("at most {MAX_CHANNELS} live channels per namespace; drop unused handles")));
        }
        let subjects = &core.subjects;
        let inbox_prefix = format!("{}.live.{}.inbox.", subjects.control(), name.token());
        let channel = Arc::new(Channel {
            lease: Subject::from(subjects.live_lease(&name)),
            data: Subject::from(subjects.live_data(&name)),
            inbox_prefix,
            name: name.clone(),
            sender: tokio::sync::Mutex::new(None),
            subscribed: AtomicBool::new(false),
            counters: Counters::default(),
        });
        channels.insert(name, Arc::downgrade(&channel));
        Ok(LiveChannel { namespace: self.clone(), core: Arc::clone(core), channel })
    }
}

/// What is known about a sent value (see [`LiveChannel`], "What a send result means").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery {
    /// The server has the data message. Whether a receiver accepted it is **not known**: its
    /// lease may have expired in transit or been evicted (W16). This is all 3.0.0 promises.
    Flushed,
    /// A kinopio receiver acknowledged that it accepted the value (only with
    /// [`LiveSendOptions::confirm`]).
    Accepted,
}

/// Options of [`LiveChannel::send_with`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LiveSendOptions {
    /// The deadline for the whole send (lease, data, flush, confirmation); default the
    /// namespace's [`timeout`](super::NamespaceOptions::timeout) (3 s).
    pub timeout: Option<Duration>,
    /// Ask the receiver to confirm acceptance (kinopio receivers only; see [`LiveChannel`]).
    pub confirm: bool,
}

impl LiveSendOptions {
    /// The defaults: the namespace timeout, no confirmation.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`LiveSendOptions::timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets [`LiveSendOptions::confirm`].
    pub fn confirm(mut self, confirm: bool) -> Self {
        self.confirm = confirm;
        self
    }
}

/// Options of [`LiveChannel::subscribe`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LiveOptions {
    /// How long a granted lease lasts (whole milliseconds, 1 ms – 60 s; default 300 ms): a
    /// sender must get a value through within this of asking for its lease.
    pub max_age: Duration,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions { max_age: Duration::from_millis(300) }
    }
}

impl LiveOptions {
    /// The defaults (300 ms leases).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`LiveOptions::max_age`].
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }
}

fn subscribe_error(e: SubscribeError) -> Error {
    let code = match e.kind() {
        SubscribeErrorKind::PermissionDenied => ErrorCode::PermissionDenied,
        SubscribeErrorKind::Closed => ErrorCode::Closed,
        _ => ErrorCode::Disconnected,
    };
    Error::new(code).with_source(e)
}

fn publish_error(e: PublishError) -> Error {
    let code = match e.kind() {
        PublishErrorKind::Closed => ErrorCode::Closed,
        PublishErrorKind::MaxPayloadExceeded => ErrorCode::MessageTooLarge,
        PublishErrorKind::Rejected => ErrorCode::PermissionDenied,
        _ => ErrorCode::Disconnected,
    };
    Error::new(code).with_source(e)
}

/// Where a send got to, for the timeout's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Lease,
    Flush,
    Confirm,
}

impl LiveChannel {
    /// The channel's name.
    pub fn name(&self) -> &str {
        self.channel.name.as_str()
    }

    /// The channel's counters (both ends).
    pub fn stats(&self) -> LiveStats {
        let c = &self.channel.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LiveStats {
            granted: get(&c.granted),
            accepted: get(&c.accepted),
            refused: get(&c.refused),
            malformed: get(&c.malformed),
            evicted: get(&c.evicted),
            overflowed: get(&c.overflowed),
            sent: get(&c.sent),
        }
    }

    /// Sends `value` with the default options: returns [`Delivery::Flushed`] once the server
    /// has it (see [`LiveChannel`] for what that does and does not mean).
    ///
    /// # Errors
    /// `INVALID_VALUE`/`VALUE_TOO_LARGE` (value rules), `DISCONNECTED` (not connected now,
    /// or the connection changed during the send), `BUSY` (another send on this channel is
    /// running), `NO_RECEIVERS` (nobody subscribes the channel), `EXPIRED` (the lease ran
    /// out before the data went out), `TIMEOUT`, `MESSAGE_TOO_LARGE` (over the server's
    /// `max_payload`), `CLOSED`.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the send; the value may or may not have gone out.
    pub async fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<Delivery, Error> {
        self.send_with(value, LiveSendOptions::default()).await
    }

    /// [`LiveChannel::send`] with a deadline.
    ///
    /// # Errors
    /// As [`LiveChannel::send`]; `INVALID_OPTIONS` for a zero timeout.
    pub async fn send_timeout<T: Serialize + ?Sized>(&self, value: &T, timeout: Duration) -> Result<Delivery, Error> {
        self.send_with(value, LiveSendOptions::new().timeout(timeout)).await
    }

    /// [`LiveChannel::send`] with options; with [`LiveSendOptions::confirm`] it returns
    /// [`Delivery::Accepted`] once a kinopio receiver confirms.
    ///
    /// # Errors
    /// As [`LiveChannel::send`]. With `confirm`: `EXPIRED` when the receiver answers that it
    /// no longer holds the lease; `NO_RECEIVERS` when nobody subscribed the data subject;
    /// `TIMEOUT` when no confirmation came (the value was flushed; a Python receiver never
    /// confirms).
    pub async fn send_json_with(&self, value: &Json, options: LiveSendOptions) -> Result<Delivery, Error> {
        let value = crate::wire::p4::canonical::value_of(value)?;
        self.send_value(value, options).await
    }

    /// [`LiveChannel::send`] with options (see [`LiveChannel::send_json_with`]).
    ///
    /// # Errors
    /// As [`LiveChannel::send_json_with`].
    pub async fn send_with<T: Serialize + ?Sized>(
        &self,
        value: &T,
        options: LiveSendOptions,
    ) -> Result<Delivery, Error> {
        let value = value::to_json(value)?;
        self.send_value(value, options).await
    }

    async fn send_value(&self, value: Json, options: LiveSendOptions) -> Result<Delivery, Error> {
        let timeout = options.timeout.unwrap_or(self.core.options.timeout);
        if timeout.is_zero() {
            return Err(Error::new(ErrorCode::InvalidOptions).with_detail("the timeout must be positive"));
        }
        let engine = &self.core.engine;
        if engine.is_closed() {
            return Err(Error::new(ErrorCode::Closed));
        }
        if engine.state() != ConnectionState::Connected {
            return Err(Error::new(ErrorCode::Disconnected).with_detail("live values need an active connection"));
        }
        let Ok(mut cached) = self.channel.sender.try_lock() else {
            return Err(Error::new(ErrorCode::Busy).with_detail("another send on this live channel is in progress"));
        };
        let mut phase = Phase::Lease;
        let result = tokio::time::timeout(timeout, self.send_inner(&mut cached, value, options.confirm, &mut phase))
            .await
            .unwrap_or_else(|_| {
                Err(Error::new(ErrorCode::Timeout).with_detail(match phase {
                    Phase::Lease => format!("no lease from a receiver within {} ms", timeout.as_millis()),
                    Phase::Flush => format!("the server did not confirm the data within {} ms", timeout.as_millis()),
                    Phase::Confirm => format!(
                        "the data was flushed to the server, but no receiver confirmed acceptance within {} ms \
                         (Python receivers never confirm; it may or may not have been accepted)",
                        timeout.as_millis()
                    ),
                }))
            });
        if result.is_ok() {
            Stats::add(&self.channel.counters.sent, 1);
        }
        result
    }

    fn count_sent(&self, bytes: u64) {
        Stats::add(&self.core.stats.sent_messages, 1);
        Stats::add(&self.core.stats.sent_bytes, bytes);
    }

    async fn send_inner(
        &self,
        cached: &mut Option<CachedGrant>,
        value: Json,
        confirm: bool,
        phase: &mut Phase,
    ) -> Result<Delivery, Error> {
        let engine = &self.core.engine;
        let channel = &self.channel;
        let checkpoint =
            engine.checkpoint().ok_or_else(|| Error::new(ErrorCode::Disconnected).with_detail("no connection"))?;
        let connection = checkpoint.connection_key();
        let same_connection = || engine.checkpoint().is_some_and(|c| c.connection_key() == connection);
        let reuse = cached.as_ref().is_some_and(|c| c.reusable(Instant::now(), connection));
        // One fresh inbox per send that needs one, as Python does per lease request: no
        // late answer to an earlier send can be mistaken for this one's.
        let mut inbox: Option<(Subject, Inbox)> = None;
        if !reuse || confirm {
            let subject = Subject::from(format!("{}{}", channel.inbox_prefix, new_id()));
            let sub = engine.subscribe(&subject, None).await.map_err(subscribe_error)?;
            inbox = Some((subject, sub));
        }
        if !reuse {
            *cached = None;
            let Some((reply, sub)) = inbox.as_mut() else { unreachable!("an inbox exists when a lease is needed") };
            let started = Instant::now();
            let request = wire::lease_request();
            let len = request.len() as u64;
            engine
                .publish_now(channel.lease.clone(), Some(reply.clone()), request.into(), None)
                .await
                .map_err(publish_error)?;
            self.count_sent(len);
            let grant = loop {
                let message = next_on_connection(engine, sub, "a lease").await?;
                if message.status == Some(StatusCode::NO_RESPONDERS) {
                    return Err(Error::new(ErrorCode::NoReceivers)
                        .with_detail(format!("no live receiver subscribes channel {:?}", channel.name.as_str())));
                }
                // The first valid grant wins; anything else on the inbox is ignored.
                if let Ok(grant) = Grant::parse(&message.payload) {
                    break grant;
                }
            };
            *cached = Some(CachedGrant::new(grant, started, Instant::now(), connection));
        }
        if !same_connection() {
            *cached = None;
            return Err(Error::new(ErrorCode::Disconnected).with_detail("the connection changed during the send"));
        }
        let Some(grant) = cached.as_mut() else { unreachable!("a grant is cached here") };
        if grant.expired(Instant::now()) {
            *cached = None;
            return Err(
                Error::new(ErrorCode::Expired).with_detail("the receiver's lease expired before the data went out")
            );
        }
        let Some(seq) = grant.next_seq() else {
            *cached = None;
            return Err(Error::new(ErrorCode::Expired).with_detail("the lease's sequence numbers are used up"));
        };
        let data = Data { session: grant.grant.session.clone(), lease: grant.grant.lease.clone(), seq, value };
        let payload = data.encode()?;
        *phase = Phase::Flush;
        let reply = if confirm { inbox.as_ref().map(|(s, _)| s.clone()) } else { None };
        let len = payload.len() as u64;
        engine.publish_now(channel.data.clone(), reply, payload.into(), None).await.map_err(publish_error)?;
        self.count_sent(len);
        engine.confirm(&checkpoint).await.map_err(|e| {
            let code = match e.kind() {
                PublishErrorKind::Closed => ErrorCode::Closed,
                PublishErrorKind::Rejected => ErrorCode::PermissionDenied,
                _ => ErrorCode::Disconnected,
            };
            Error::new(code).with_detail("the data may not have reached the server").with_source(e)
        })?;
        if !same_connection() {
            *cached = None;
            return Err(Error::new(ErrorCode::Disconnected).with_detail("the connection changed during the send"));
        }
        let Some((_, sub)) = inbox.as_mut().filter(|_| confirm) else { return Ok(Delivery::Flushed) };
        *phase = Phase::Confirm;
        loop {
            let message = next_on_connection(engine, sub, "the confirmation").await?;
            if message.status == Some(StatusCode::NO_RESPONDERS) {
                return Err(Error::new(ErrorCode::NoReceivers)
                    .with_detail("the data was flushed, but nobody subscribes the channel's data subject"));
            }
            let Ok(ack) = Ack::parse(&message.payload) else { continue };
            if ack.session != data.session || ack.lease != data.lease || ack.seq != data.seq {
                continue;
            }
            if ack.accepted {
                return Ok(Delivery::Accepted);
            }
            *cached = None;
            return Err(Error::new(ErrorCode::Expired).with_detail(
                "the receiver no longer holds the lease (expired in transit, or evicted by other lease requests); \
                 the value was not accepted",
            ));
        }
    }

    /// Makes this channel a receiver: returns the stream of values it accepts (§6).
    ///
    /// # Errors
    /// `INVALID_OPTIONS` (`max_age` not whole milliseconds in 1 ms–60 s),
    /// `ALREADY_SUBSCRIBED` (the channel has a receiver), `LIMIT_EXCEEDED` (32 receivers in
    /// the namespace), `PERMISSION_DENIED`, `DISCONNECTED` or `CLOSED` from the
    /// subscriptions.
    pub async fn subscribe(&self, options: LiveOptions) -> Result<LiveReceiver, Error> {
        let ms = options.max_age.as_millis();
        if !options.max_age.subsec_nanos().is_multiple_of(1_000_000)
            || !(u128::from(MIN_TTL_MS)..=u128::from(MAX_TTL_MS)).contains(&ms)
        {
            return Err(
                Error::new(ErrorCode::InvalidOptions).with_detail("max_age must be whole milliseconds, 1 ms to 60 s")
            );
        }
        let core = &self.core;
        if core.engine.is_closed() {
            return Err(Error::new(ErrorCode::Closed));
        }
        if self.channel.subscribed.swap(true, Ordering::AcqRel) {
            return Err(Error::new(ErrorCode::AlreadySubscribed).with_detail("a live channel has one receiver"));
        }
        let slot = Slot { namespace: self.namespace.clone(), channel: Arc::clone(&self.channel) };
        if core.live.receiver_count.fetch_add(1, Ordering::AcqRel) >= MAX_RECEIVERS {
            drop(slot);
            return Err(Error::new(ErrorCode::LimitExceeded)
                .with_detail(format!("at most {MAX_RECEIVERS} live receivers per namespace")));
        }
        let leases_inbox = core.engine.subscribe(&self.channel.lease, None).await.map_err(subscribe_error)?;
        let data_inbox = core.engine.subscribe(&self.channel.data, None).await.map_err(subscribe_error)?;
        let receiver = Arc::new(Receiver {
            leases: Mutex::new(Leases::new(new_id().as_str().to_owned(), options.max_age)),
            connection: Mutex::new(current_connection(core)),
            closed: AtomicBool::new(false),
            core: Arc::downgrade(core),
        });
        {
            let mut receivers = lock(&core.live.receivers);
            receivers.retain(|r| r.strong_count() > 0);
            receivers.push(Arc::downgrade(&receiver));
        }
        let (tx, rx) = mpsc::channel(RECEIVER_QUEUE);
        let stop = CancellationToken::new();
        tokio::spawn(receive(
            Arc::clone(core),
            Arc::clone(&self.channel),
            Arc::clone(&receiver),
            leases_inbox,
            data_inbox,
            tx,
            stop.clone(),
        ));
        Ok(LiveReceiver { rx, receiver, _slot: slot, _stop: stop.drop_guard() })
    }
}

/// The next message of `inbox`, or `DISCONNECTED` as soon as the connection is lost (an
/// answer to what was sent on it will not come).
async fn next_on_connection(engine: &Engine, inbox: &mut Inbox, what: &str) -> Result<async_nats::Message, Error> {
    let mut state = engine.state_watch();
    let lost =
        || Error::new(ErrorCode::Disconnected).with_detail(format!("the connection was lost while waiting for {what}"));
    tokio::select! {
        message = inbox.next() => message.ok_or_else(lost),
        _ = state.wait_for(|s| *s != ConnectionState::Connected) => Err(lost()),
    }
}

/// Frees the channel's receiver flag and the namespace's receiver slot.
struct Slot {
    namespace: Namespace,
    channel: Arc<Channel>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.namespace.core().live.receiver_count.fetch_sub(1, Ordering::AcqRel);
        self.channel.subscribed.store(false, Ordering::Release);
    }
}

/// A receiver's session and leases.
#[derive(Debug)]
struct Receiver {
    leases: Mutex<Leases>,
    /// The server connection the session belongs to.
    connection: Mutex<Option<(u64, u64)>>,
    closed: AtomicBool,
    core: Weak<Core>,
}

impl Receiver {
    fn is_current(&self, session: &str) -> bool {
        !self.closed.load(Ordering::Acquire)
            && self.core.upgrade().is_some_and(|c| c.engine.state() == ConnectionState::Connected)
            && lock(&self.leases).session() == session
    }
}

/// A value a live receiver accepted, with its [`LiveContext`].
#[derive(Debug, Clone)]
pub struct LiveValue {
    value: Json,
    context: LiveContext,
}

impl LiveValue {
    /// The value.
    pub fn value(&self) -> &Json {
        &self.value
    }

    /// The value, owned.
    pub fn into_value(self) -> Json {
        self.value
    }

    /// The value as `T`.
    ///
    /// # Errors
    /// `INVALID_VALUE` when it does not have `T`'s shape.
    pub fn get<T: DeserializeOwned>(&self) -> Result<T, Error> {
        value::from_json(&self.value)
    }

    /// Where it came from and whether it still holds.
    pub fn context(&self) -> &LiveContext {
        &self.context
    }
}

/// The lease a live value arrived under (Python's `LiveContext`).
#[derive(Debug, Clone)]
pub struct LiveContext {
    seq: u64,
    lease: String,
    session: String,
    expires_at: Instant,
    receiver: Weak<Receiver>,
}

impl LiveContext {
    /// The value's sequence number under its lease.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The lease id.
    pub fn lease(&self) -> &str {
        &self.lease
    }

    /// The receiver session the lease belongs to.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// When the lease ends, on this receiver's clock.
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }

    /// Whether the value still holds: the lease has not expired, the receiver is still
    /// subscribed, on the same session, and connected. Check it right before acting on a
    /// value that waited.
    pub fn is_valid(&self) -> bool {
        Instant::now() < self.expires_at && self.receiver.upgrade().is_some_and(|r| r.is_current(&self.session))
    }
}

/// The values a live channel's receiver accepts, in order (a [`Stream`]). Dropping it ends
/// the receiver (unsubscribes, frees its slot); it keeps its namespace running meanwhile.
/// The stream ends when the hub closes.
pub struct LiveReceiver {
    rx: mpsc::Receiver<LiveValue>,
    receiver: Arc<Receiver>,
    _slot: Slot,
    _stop: DropGuard,
}

impl std::fmt::Debug for LiveReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveReceiver").field("channel", &self._slot.channel.name).finish()
    }
}

impl LiveReceiver {
    /// The next accepted value; `None` once the receiver has ended.
    ///
    /// # Cancel safety
    /// Cancel safe: a value is only taken when it is returned.
    pub async fn recv(&mut self) -> Option<LiveValue> {
        self.rx.recv().await
    }

    /// The receiver's current session (changes on every connection activation).
    pub fn session(&self) -> String {
        lock(&self.receiver.leases).session().to_owned()
    }
}

impl Drop for LiveReceiver {
    fn drop(&mut self) {
        self.receiver.closed.store(true, Ordering::Release);
    }
}

impl Stream for LiveReceiver {
    type Item = LiveValue;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LiveValue>> {
        self.rx.poll_recv(cx)
    }
}

/// The receiver's task: answers lease requests and accepts data until stopped.
async fn receive(
    core: Arc<Core>,
    channel: Arc<Channel>,
    receiver: Arc<Receiver>,
    mut leases_inbox: Inbox,
    mut data_inbox: Inbox,
    tx: mpsc::Sender<LiveValue>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = core.cancel.cancelled() => break,
            m = leases_inbox.next() => match m {
                Some(m) => on_lease(&core, &channel, &receiver, m).await,
                None => break,
            },
            m = data_inbox.next() => match m {
                Some(m) => if !on_data(&core, &channel, &receiver, &tx, m).await { break },
                None => break,
            },
        }
    }
    receiver.closed.store(true, Ordering::Release);
}

fn malformed(core: &Core, channel: &Channel, what: &str, error: Error) {
    Stats::add(&channel.counters.malformed, 1);
    core.reject(what, &error);
}

/// Grants a lease (§6) when the request is valid.
async fn on_lease(core: &Core, channel: &Channel, receiver: &Receiver, message: async_nats::Message) {
    Stats::add(&core.stats.received_messages, 1);
    Stats::add(&core.stats.received_bytes, message.payload.len() as u64);
    let Some(reply) =
        message.reply.filter(|r| r.len() > channel.inbox_prefix.len() && r.starts_with(&channel.inbox_prefix))
    else {
        malformed(core, channel, "live lease request without a live inbox", Error::new(ErrorCode::NoReplySubject));
        return;
    };
    if let Err(e) = wire::check_lease_request(&message.payload) {
        malformed(core, channel, "live lease request", e.into());
        return;
    }
    let grant = {
        let mut leases = lock(&receiver.leases);
        let before = leases.evicted();
        let grant = leases.grant(Instant::now(), new_id().as_str().to_owned());
        Stats::add(&channel.counters.evicted, leases.evicted() - before);
        grant
    };
    let payload = grant.encode();
    let len = payload.len() as u64;
    match core.engine.publish_now(reply, None, payload.into(), None).await {
        Ok(()) => {
            Stats::add(&channel.counters.granted, 1);
            Stats::add(&core.stats.sent_messages, 1);
            Stats::add(&core.stats.sent_bytes, len);
        }
        Err(e) => tracing::debug!(channel = %channel.name, error = %e, "live grant not sent"),
    }
}

/// Accepts a data message (§6) when the rules allow; false when the application has gone.
async fn on_data(
    core: &Core,
    channel: &Channel,
    receiver: &Arc<Receiver>,
    tx: &mpsc::Sender<LiveValue>,
    message: async_nats::Message,
) -> bool {
    Stats::add(&core.stats.received_messages, 1);
    Stats::add(&core.stats.received_bytes, message.payload.len() as u64);
    let data = match Data::parse(&message.payload) {
        Ok(data) => data,
        Err(e) => {
            malformed(core, channel, "live data", e.into());
            return true;
        }
    };
    let verdict = lock(&receiver.leases).accept(Instant::now(), &data);
    // kinopio's acknowledgement goes only to a live inbox of this channel.
    let reply = message.reply.filter(|r| r.len() > channel.inbox_prefix.len() && r.starts_with(&channel.inbox_prefix));
    let accepted = match verdict {
        Ok(accepted) => accepted,
        Err(refusal) => {
            tracing::debug!(channel = %channel.name, ?refusal, seq = data.seq, "live data refused");
            Stats::add(&channel.counters.refused, 1);
            if refusal.lease_gone()
                && let Some(reply) = reply
            {
                acknowledge(core, reply, &data, false).await;
            }
            return true;
        }
    };
    let value = LiveValue {
        context: LiveContext {
            seq: accepted.seq,
            lease: data.lease.clone(),
            session: data.session.clone(),
            expires_at: accepted.expires_at,
            receiver: Arc::downgrade(receiver),
        },
        value: data.value.clone(),
    };
    tracing::trace!(channel = %channel.name, seq = data.seq, acknowledge = reply.is_some(), "live data accepted");
    // Room in the queue first, then the acknowledgement, then the value: a value is never
    // acknowledged and dropped, and the acknowledgement is on its way before the application
    // can see the value (and, say, close the hub).
    match tx.try_reserve() {
        Ok(permit) => {
            Stats::add(&channel.counters.accepted, 1);
            if let Some(reply) = reply {
                acknowledge(core, reply, &data, true).await;
            }
            permit.send(value);
            true
        }
        Err(mpsc::error::TrySendError::Full(())) => {
            Stats::add(&channel.counters.overflowed, 1);
            Stats::add(&core.stats.dropped_messages, 1);
            true
        }
        Err(mpsc::error::TrySendError::Closed(())) => false,
    }
}

async fn acknowledge(core: &Core, reply: Subject, data: &Data, accepted: bool) {
    let ack = Ack { session: data.session.clone(), lease: data.lease.clone(), seq: data.seq, accepted };
    if let Err(e) = core.engine.publish_now(reply, None, ack.encode().into(), None).await {
        tracing::debug!(error = %e, "live acknowledgement not sent");
    }
}
