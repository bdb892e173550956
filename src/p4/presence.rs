//! Presence (§7): this instance's health reports and the list of the namespace's instances.
//!
//! - Publishing: a report `{"status":{…},"interval":<ms>}` on
//!   `_sys.v4.<hex(ns)>.health.<instanceId>` on every activation, every
//!   [`NamespaceOptions::health_interval`](super::NamespaceOptions::health_interval) while
//!   connected, and after every sync answer ([`report_now`]). Built and size-checked by
//!   [`crate::wire::p4::report`], so a Python receiver always accepts it (a refused report
//!   would turn every Python peer's health to `"error"`, §11 W8).
//! - Receiving: every report on `…health.*` is checked like Python's `status_of`; a refused
//!   one is dropped and counted ([`Namespace::rejected`](super::Namespace::rejected)) and
//!   changes nothing else — in particular not this instance's health (Python turns its own
//!   health to `"error"`, W8).
//! - The instance table ([`Table`], pure, with an injected clock) keeps the stored status,
//!   when it was seen, and whether it is fresh / online (§7.3).
//!
//! # Deliberate differences from 3.0.0
//!
//! - **Invalid reports never change health** (W8): dropped and counted only.
//! - **Freshness is capped** (W13): a report's `interval` is accepted up to 2^31−1 ms like
//!   Python, but freshness uses at most [`MAX_FRESH_INTERVAL`] (60 s), so an instance that
//!   stops reporting is offline at most 3 minutes after its last report, whatever interval it
//!   claimed (Python: a forged 2^31−1 ms keeps a ghost online for ~74 days). A genuine instance
//!   reporting less often than every 60 s shows offline between its reports.
//! - **Eviction**: at [`MAX_INSTANCES`] rows a new instance evicts the row seen longest ago
//!   among those that are not fresh, and only when every row is fresh the one seen longest ago
//!   (Python evicts the oldest *inserted*, even if it is online and reporting). This instance's
//!   own row is never evicted.
//! - **This instance's row** comes from the report it sends, not from its echo; a received
//!   report claiming this instance's id (an echo, or a forgery) is ignored.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use futures::{Stream, StreamExt};
use tokio::sync::broadcast;

use super::namespace::{Core, Namespace, Stats};
use super::{Error, Json};
use crate::engine::lock;
use crate::state::{ConnectionState, HubEvent, SwitchReason};
use crate::wire::p4::ErrorCode;
use crate::wire::p4::report::{
    self, Connection, ErrorDetail, Health, MessagingStatus, Phase, Received, Status, encode_report, error_message,
};

/// Most instances kept in the table (the reference's `max_instances`).
pub const MAX_INSTANCES: usize = 1024;
/// The longest report interval freshness honours (see the module docs, W13).
pub const MAX_FRESH_INTERVAL: Duration = Duration::from_secs(60);
/// A report is fresh for this many of its intervals (§7.3).
const FRESH_INTERVALS: u32 = 3;
/// The `sdk` of kinopio's reports.
pub(crate) const SDK: &str = "rust";
/// The `runtime` of kinopio's reports.
pub(crate) const RUNTIME: &str = "rust/tokio";

/// Whether an instance is online, as this instance sees it (§7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Online {
    /// Its last report is fresh (less than 3 intervals old).
    Online,
    /// Its last report is stale.
    Offline,
    /// This instance is not connected, so it cannot tell.
    Unknown,
}

impl Online {
    /// `online`, `offline` or `unknown`, as Python spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Online::Online => "online",
            Online::Offline => "offline",
            Online::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Online {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One instance of the namespace, from its last health report.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Instance {
    /// Its instance id.
    pub instance_id: String,
    /// True for this instance's own row.
    pub is_self: bool,
    /// `rust`, `python`, `js`, … as it reports it.
    pub sdk: Option<String>,
    /// Its SDK version.
    pub version: Option<String>,
    /// Its runtime (`python/3.11.7`, `rust/tokio`, …).
    pub runtime: Option<String>,
    /// Its connection as it reports it.
    pub connection: Option<Connection>,
    /// Its own judgement of its health.
    pub health: Option<Health>,
    /// The server it is on (`scheme://host:port`).
    pub server: Option<String>,
    /// Whether it is online as this instance sees it.
    pub online: Online,
    /// Its last report is less than 3 intervals old and this instance is connected.
    pub fresh: bool,
    /// When its last report arrived (wall clock).
    pub last_seen: SystemTime,
    /// The report period it claims.
    pub interval: Duration,
    /// The whole status as stored (normalised, known fields only, §7.2).
    pub status: Json,
}

/// A change in the instance list ([`Namespace::watch_instances`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum InstanceEvent {
    /// An instance reported for the first time, or again after it had gone offline.
    Joined(Instance),
    /// An online instance reported again.
    Updated(Instance),
    /// An instance stopped reporting: its last report is now stale.
    WentOffline(Instance),
}

impl InstanceEvent {
    /// The instance the event is about.
    pub fn instance(&self) -> &Instance {
        match self {
            InstanceEvent::Joined(i) | InstanceEvent::Updated(i) | InstanceEvent::WentOffline(i) => i,
        }
    }
}

#[derive(Debug, Clone)]
struct Row {
    status: Json,
    interval: Duration,
    /// Receipt time (monotonic), for freshness.
    seen: Instant,
    /// Receipt time (wall clock), for display.
    last_seen: SystemTime,
    /// Whether the last event said it is online (so each change is announced once).
    announced_online: bool,
}

fn freshness(interval: Duration) -> Duration {
    interval.min(MAX_FRESH_INTERVAL) * FRESH_INTERVALS
}

impl Row {
    fn fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.seen) < freshness(self.interval)
    }

    fn expires(&self) -> Instant {
        self.seen + freshness(self.interval)
    }
}

fn field(status: &Json, key: &str) -> Option<String> {
    match status {
        Json::Object(map) => match map.get(key) {
            Some(Json::String(s)) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// The instance table of one namespace: pure rules, the clock passed in (`now`), whether
/// this instance is connected passed in (`connected`).
#[derive(Debug)]
pub(crate) struct Table {
    own: String,
    rows: HashMap<String, Row>,
    cap: usize,
}

impl Table {
    pub(crate) fn new(own: &str, cap: usize) -> Self {
        Table { own: own.to_owned(), rows: HashMap::new(), cap: cap.max(1) }
    }

    fn instance(&self, id: &str, row: &Row, now: Instant, connected: bool) -> Instance {
        let fresh = connected && row.fresh(now);
        Instance {
            instance_id: id.to_owned(),
            is_self: id == self.own,
            sdk: field(&row.status, "sdk"),
            version: field(&row.status, "version"),
            runtime: field(&row.status, "runtime"),
            connection: field(&row.status, "connection").and_then(|c| Connection::parse(&c)),
            health: field(&row.status, "health").and_then(|h| Health::parse(&h)),
            server: field(&row.status, "server"),
            online: match (connected, fresh) {
                (false, _) => Online::Unknown,
                (true, true) => Online::Online,
                (true, false) => Online::Offline,
            },
            fresh,
            last_seen: row.last_seen,
            interval: row.interval,
            status: row.status.clone(),
        }
    }

    /// Stores a report (already checked) from `id`, received at `now` / `wall`; returns the
    /// change to announce. A report claiming this instance's id is ignored unless `own` (the
    /// report this instance itself sent).
    pub(crate) fn receive(
        &mut self,
        id: &str,
        report: Received,
        own: bool,
        now: Instant,
        wall: SystemTime,
        connected: bool,
    ) -> Option<InstanceEvent> {
        if (id == self.own) != own {
            return None;
        }
        if !self.rows.contains_key(id) && self.rows.len() >= self.cap {
            self.evict(now);
        }
        let row = Row {
            status: report.status,
            interval: Duration::from_millis(report.interval_ms),
            seen: now,
            last_seen: wall,
            announced_online: true,
        };
        let was_online = self.rows.insert(id.to_owned(), row).is_some_and(|old| old.announced_online);
        let row = self.rows.get(id)?;
        let instance = self.instance(id, row, now, connected);
        Some(if was_online { InstanceEvent::Updated(instance) } else { InstanceEvent::Joined(instance) })
    }

    /// Makes room for one row: the stale row seen longest ago, else the row seen longest ago;
    /// never this instance's own.
    fn evict(&mut self, now: Instant) {
        let victim = self
            .rows
            .iter()
            .filter(|(id, _)| **id != self.own)
            .min_by_key(|(_, row)| (row.fresh(now), row.seen))
            .map(|(id, _)| id.clone());
        if let Some(id) = victim {
            self.rows.remove(&id);
        }
    }

    /// The rows that went stale since they were last announced online; announces each once.
    /// Nothing goes offline while this instance is disconnected (every row is unknown then).
    pub(crate) fn expire(&mut self, now: Instant, connected: bool) -> Vec<InstanceEvent> {
        if !connected {
            return Vec::new();
        }
        let stale: Vec<String> =
            self.rows.iter().filter(|(_, r)| r.announced_online && !r.fresh(now)).map(|(id, _)| id.clone()).collect();
        let mut events = Vec::with_capacity(stale.len());
        for id in stale {
            if let Some(row) = self.rows.get_mut(&id) {
                row.announced_online = false;
                let row = row.clone();
                events.push(InstanceEvent::WentOffline(self.instance(&id, &row, now, connected)));
            }
        }
        events
    }

    /// When the next announced-online row goes stale.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.rows.values().filter(|r| r.announced_online).map(Row::expires).min()
    }

    /// Every row, this instance's first, then by instance id.
    pub(crate) fn list(&self, now: Instant, connected: bool) -> Vec<Instance> {
        let mut list: Vec<Instance> =
            self.rows.iter().map(|(id, row)| self.instance(id, row, now, connected)).collect();
        list.sort_by(|a, b| b.is_self.cmp(&a.is_self).then_with(|| a.instance_id.cmp(&b.instance_id)));
        list
    }

    /// How many rows are online at `now`, this instance's own row counted only if `with_own`.
    pub(crate) fn online(&self, now: Instant, connected: bool, with_own: bool) -> usize {
        if !connected {
            return 0;
        }
        self.rows.iter().filter(|(id, row)| (with_own || **id != self.own) && row.fresh(now)).count()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.rows.len()
    }
}

/// Presence state of one namespace.
#[derive(Debug)]
pub(crate) struct Presence {
    table: Mutex<Option<Table>>,
    events: broadcast::Sender<InstanceEvent>,
    /// Why the hub is on its current server, in Python's words (`lastSwitchReason`).
    switch_reason: Mutex<Option<&'static str>>,
    /// Wakes the presence task when the table changed (a new expiry to wait for).
    changed: tokio::sync::Notify,
}

impl Presence {
    pub(crate) fn new() -> Self {
        Presence {
            table: Mutex::new(None),
            events: broadcast::channel(256).0,
            switch_reason: Mutex::new(None),
            changed: tokio::sync::Notify::new(),
        }
    }
}

fn with_table<R>(core: &Core, f: impl FnOnce(&mut Table) -> R) -> R {
    let mut table = lock(&core.presence.table);
    f(table.get_or_insert_with(|| Table::new(core.instance_id.as_str(), MAX_INSTANCES)))
}

fn connected(core: &Core) -> bool {
    core.engine.state() == ConnectionState::Connected
}

fn announce(core: &Core, events: impl IntoIterator<Item = InstanceEvent>) {
    for event in events {
        let _ = core.presence.events.send(event);
    }
}

/// Subscribes the namespace's health reports and starts the presence task (receiving,
/// periodic reports, offline detection).
///
/// # Errors
///
/// The subscription failed: `PERMISSION_DENIED`, `CLOSED`, or `DISCONNECTED`.
pub(crate) async fn start(core: &Arc<Core>) -> Result<(), Error> {
    let subject = async_nats::Subject::from(core.subjects.healths());
    let inbox = core.engine.subscribe(&subject, None).await.map_err(|e| {
        let code = match e.kind() {
            crate::SubscribeErrorKind::PermissionDenied => ErrorCode::PermissionDenied,
            crate::SubscribeErrorKind::Closed => ErrorCode::Closed,
            _ => ErrorCode::Disconnected,
        };
        Error::new(code).with_detail(format!("health reports: {e}"))
    })?;
    tokio::spawn(run(Arc::clone(core), inbox));
    Ok(())
}

async fn run(core: Arc<Core>, mut inbox: crate::engine::Inbox) {
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + core.options.health_interval,
        core.options.health_interval.max(Duration::from_millis(1)),
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut hub_events = core.engine.events();
    let mut state = core.engine.state_watch();
    loop {
        let next = if connected(&core) { with_table(&core, |t| t.next_expiry()) } else { None };
        let expiry = async move {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = core.cancel.cancelled() => break,
            message = inbox.next() => match message {
                Some(message) => on_report(&core, &message),
                None => break,
            },
            _ = ticker.tick() => {
                if connected(&core)
                    && let Err(e) = report_now(&core).await
                {
                    tracing::debug!(namespace = %core.name, error = %e, "health report not sent");
                }
            }
            event = hub_events.next() => match event {
                Some(event) => on_hub_event(&core, &event),
                None => break,
            },
            changed = state.changed() => if changed.is_err() { break },
            () = core.presence.changed.notified() => {}
            () = expiry => {
                let events = with_table(&core, |t| t.expire(Instant::now(), true));
                announce(&core, events);
            }
        }
    }
}

/// Tracks why the hub is on its server, in Python's `lastSwitchReason` words.
fn on_hub_event(core: &Core, event: &HubEvent) {
    let reason = match event {
        HubEvent::ServerSwitched { reason: SwitchReason::Faster, .. } => "lower-latency",
        HubEvent::ServerSwitched { reason: SwitchReason::LocalLeader, .. } => "elected-lan-node",
        HubEvent::ServerSwitched { .. } | HubEvent::Connected { .. } => "available-server",
        _ => return,
    };
    *lock(&core.presence.switch_reason) = Some(reason);
}

/// Checks and stores one received report; a refused one is dropped and counted.
fn on_report(core: &Core, message: &async_nats::Message) {
    Stats::add(&core.stats.received_messages, 1);
    Stats::add(&core.stats.received_bytes, message.payload.len() as u64);
    let instance = message.subject.as_str().rsplit('.').next().unwrap_or_default();
    if instance == core.instance_id.as_str() {
        return;
    }
    match report::receive(&message.payload, instance, core.name.as_str()) {
        Ok(received) => {
            let now = Instant::now();
            let is_connected = connected(core);
            let event =
                with_table(core, |t| t.receive(instance, received, false, now, SystemTime::now(), is_connected));
            announce(core, event);
            core.presence.changed.notify_one();
        }
        Err(e) => core.reject("health report", &Error::from(e)),
    }
}

/// `scheme://host:port` of a server, never with credentials.
fn display_server(server: &crate::ServerUrl) -> String {
    let host = server.host();
    if host.contains(':') {
        format!("{}://[{host}]:{}", server.scheme(), server.port())
    } else {
        format!("{}://{host}:{}", server.scheme(), server.port())
    }
}

fn secrets(core: &Core) -> Vec<String> {
    match &core.engine.options().auth {
        Some(crate::Auth::Token(token)) => vec![token.clone()],
        Some(crate::Auth::UserPassword { password, .. }) => vec![password.clone()],
        Some(crate::Auth::NkeySeed(seed)) => vec![seed.clone()],
        _ => Vec::new(),
    }
}

/// This instance's status now.
fn status(core: &Core) -> Status {
    let state = core.engine.state();
    let closed = core.cancel.is_cancelled() || core.engine.is_closed();
    let connection = match state {
        _ if closed => Connection::Closed,
        ConnectionState::Connected => Connection::Connected,
        ConnectionState::Connecting => Connection::Connecting,
        ConnectionState::Error => Connection::Error,
        _ => Connection::Offline,
    };
    let server = core.engine.server();
    let rtt_ms = server.as_ref().and_then(|s| {
        core.engine
            .probe_results()
            .into_iter()
            .find(|p| &p.server == s)
            .and_then(|p| p.rtt)
            .map(|d| d.as_secs_f64() * 1000.0)
    });
    let secrets = secrets(core);
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let detail = |note: &super::namespace::ErrorNote| ErrorDetail {
        code: note.code.as_str().to_owned(),
        message: error_message(&note.message, &secrets),
        at: note.at,
    };
    let (current_error, last_error) = {
        let log = lock(&core.errors);
        (log.current.as_ref().map(detail), log.last.as_ref().map(detail))
    };
    let health = match (&current_error, connection) {
        (Some(_), _) => Health::Error,
        (None, Connection::Connected) => Health::Ok,
        (None, _) => Health::Warning,
    };
    let summary = core.store.summary();
    let stats = &core.stats;
    Status {
        instance_id: core.instance_id.clone(),
        namespace: core.name.as_str().to_owned(),
        sdk: SDK.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        runtime: RUNTIME.to_owned(),
        uptime_ms: core.started.elapsed().as_millis() as u64,
        connection,
        messaging: MessagingStatus {
            phase: match connection {
                Connection::Closed => Phase::Closed,
                Connection::Connected => Phase::Active,
                _ => Phase::Offline,
            },
            pending_requests: Stats::get(&stats.pending_requests),
            pending_messages: Stats::get(&stats.pending_messages),
            pending_bytes: Stats::get(&stats.pending_bytes),
            in_flight_handlers: Stats::get(&stats.in_flight_handlers),
            dropped_messages: Stats::get(&stats.dropped_messages),
            native_dropped_messages: 0,
        },
        server: server.as_ref().map(display_server),
        rtt_ms,
        last_switch_reason: lock(&core.presence.switch_reason).map(str::to_owned),
        pending_variables: summary.pending_variables,
        pending_bytes: summary.pending_bytes,
        variables: summary.variables,
        subscriptions: Stats::get(&stats.subscriptions),
        reconnects: Stats::get(&stats.reconnects),
        sent_messages: Stats::get(&stats.sent_messages),
        received_messages: Stats::get(&stats.received_messages),
        sent_bytes: Stats::get(&stats.sent_bytes),
        received_bytes: Stats::get(&stats.received_bytes),
        health,
        current_error,
        last_error,
    }
}

/// Publishes this instance's health report now, if connected (nothing otherwise, like
/// Python). The sync responder is to call this after every answer (§7.1).
///
/// # Errors
///
/// `INVALID_REPORT` if the status cannot be made to fit (never for valid parts);
/// `DISCONNECTED` / `CLOSED` if the connection went away while sending.
pub(crate) async fn report_now(core: &Core) -> Result<(), Error> {
    if !connected(core) {
        return Ok(());
    }
    {
        let mut reason = lock(&core.presence.switch_reason);
        reason.get_or_insert("available-server");
    }
    let interval_ms = core.options.health_interval.as_millis().try_into().unwrap_or(u64::MAX);
    let status = status(core);
    let payload = encode_report(&status, interval_ms).map_err(Error::from)?;
    // The own row is what a receiver stores of this report.
    if let Ok(own) = report::receive(&payload, core.instance_id.as_str(), core.name.as_str()) {
        let id = core.instance_id.as_str();
        let event = with_table(core, |t| t.receive(id, own, true, Instant::now(), SystemTime::now(), true));
        announce(core, event);
        core.presence.changed.notify_one();
    }
    let len = payload.len() as u64;
    let subject = async_nats::Subject::from(core.subjects.health(&core.instance_id));
    core.engine.publish_now(subject, None, payload.into(), None).await.map_err(|e| {
        let code = if core.engine.is_closed() { ErrorCode::Closed } else { ErrorCode::Disconnected };
        Error::new(code).with_detail(format!("health report: {e}"))
    })?;
    Stats::add(&core.stats.sent_messages, 1);
    Stats::add(&core.stats.sent_bytes, len);
    Ok(())
}

/// How many instances of the namespace are online, this one included (at least 1).
pub(crate) fn online_instances(core: &Core) -> usize {
    let is_connected = connected(core);
    let now = Instant::now();
    let others = with_table(core, |t| t.online(now, is_connected, false));
    others + 1
}

/// Reports health at once after an activation (§4.5 step 4).
pub(crate) async fn on_activation(core: &Arc<Core>) {
    if let Err(e) = report_now(core).await {
        tracing::debug!(namespace = %core.name, error = %e, "health report after activation not sent");
    }
}

impl Namespace {
    /// The namespace's instances, this one first, as this instance sees them now: every
    /// instance whose health report it has received (at most 1,024), with its reported status
    /// and whether it is online (§7.3).
    pub fn instances(&self) -> Vec<Instance> {
        let core = self.core();
        let is_connected = connected(core);
        with_table(core, |t| t.list(Instant::now(), is_connected))
    }

    /// The changes of [`Namespace::instances`] from now on: an instance joined (or came
    /// back), reported again, or went offline (3 report intervals without a report). A
    /// watcher that falls more than 256 changes behind skips the oldest ones. The stream ends
    /// when the namespace is closed.
    pub fn watch_instances(&self) -> impl Stream<Item = InstanceEvent> + Send + Unpin + 'static {
        let rx = self.core().presence.events.subscribe();
        let cancel = self.core().cancel.clone();
        Box::pin(futures::stream::unfold((rx, cancel), |(mut rx, cancel)| async move {
            loop {
                let received = tokio::select! {
                    () = cancel.cancelled() => return None,
                    r = rx.recv() => r,
                };
                match received {
                    Ok(event) => return Some((event, (rx, cancel))),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "instance watch lagged");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }))
    }

    /// Publishes this instance's health report now (it is also sent on every (re)connect and
    /// every [`health_interval`](super::NamespaceOptions::health_interval)).
    ///
    /// # Errors
    ///
    /// `DISCONNECTED` when not connected, `CLOSED` when the hub is closed.
    pub async fn report_health(&self) -> Result<(), Error> {
        let core = self.core();
        if !connected(core) {
            let code = if core.engine.is_closed() { ErrorCode::Closed } else { ErrorCode::Disconnected };
            return Err(Error::new(code).with_detail("health report: not connected"));
        }
        report_now(core).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: &str, interval_ms: u64, sdk: &str) -> Received {
        let text = format!(
            r#"{{"status":{{"instanceId":"{id}","namespace":"workshop","sdk":"{sdk}","health":"ok","connection":"connected"}},"interval":{interval_ms}}}"#
        );
        report::receive(text.as_bytes(), id, "workshop").unwrap()
    }

    fn wall() -> SystemTime {
        SystemTime::UNIX_EPOCH
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn freshness_and_offline_after_three_intervals() {
        let t0 = Instant::now();
        let mut table = Table::new("me", 16);
        let joined = table.receive("py", report("py", 100, "python"), false, t0, wall(), true).unwrap();
        let InstanceEvent::Joined(instance) = joined else { panic!("{joined:?}") };
        assert_eq!((instance.online, instance.fresh, instance.sdk.as_deref()), (Online::Online, true, Some("python")));
        assert_eq!(instance.health, Some(Health::Ok));
        assert_eq!(table.next_expiry(), Some(t0 + 300 * MS));
        assert_eq!(table.online(t0 + 299 * MS, true, true), 1);
        assert_eq!(table.online(t0 + 300 * MS, true, true), 0);
        assert_eq!(table.online(t0, false, true), 0);
        // Just before 3 intervals: still online; no events.
        assert!(table.expire(t0 + 299 * MS, true).is_empty());
        assert_eq!(table.list(t0 + 299 * MS, true)[0].online, Online::Online);
        // At 3 intervals: offline, announced once.
        let events = table.expire(t0 + 300 * MS, true);
        assert!(matches!(&events[..], [InstanceEvent::WentOffline(i)] if i.online == Online::Offline && !i.fresh));
        assert!(table.expire(t0 + 400 * MS, true).is_empty());
        assert_eq!(table.next_expiry(), None);
        // It comes back: joined again; then an update.
        let back = table.receive("py", report("py", 100, "python"), false, t0 + 500 * MS, wall(), true).unwrap();
        assert!(matches!(back, InstanceEvent::Joined(_)));
        let again = table.receive("py", report("py", 100, "python"), false, t0 + 550 * MS, wall(), true).unwrap();
        assert!(matches!(again, InstanceEvent::Updated(_)));
    }

    #[test]
    fn unknown_while_disconnected() {
        let t0 = Instant::now();
        let mut table = Table::new("me", 16);
        table.receive("py", report("py", 100, "python"), false, t0, wall(), true);
        let list = table.list(t0, false);
        assert_eq!((list[0].online, list[0].fresh), (Online::Unknown, false));
        // Nothing goes offline while disconnected; on reconnect the stale row does.
        assert!(table.expire(t0 + 10_000 * MS, false).is_empty());
        assert_eq!(table.list(t0 + 10_000 * MS, false)[0].online, Online::Unknown);
        assert_eq!(table.expire(t0 + 10_000 * MS, true).len(), 1);
    }

    #[test]
    fn forged_long_interval_is_capped() {
        let t0 = Instant::now();
        let mut table = Table::new("me", 16);
        table.receive("ghost", report("ghost", 2_147_483_647, "x"), false, t0, wall(), true);
        let row = &table.list(t0, true)[0];
        assert_eq!(row.interval, Duration::from_millis(2_147_483_647), "the claim is kept");
        let limit = MAX_FRESH_INTERVAL * 3;
        assert_eq!(table.list(t0 + limit - MS, true)[0].online, Online::Online);
        assert_eq!(table.list(t0 + limit, true)[0].online, Online::Offline);
        assert_eq!(table.expire(t0 + limit, true).len(), 1);
    }

    #[test]
    fn eviction_prefers_stale_rows_and_keeps_self() {
        let t0 = Instant::now();
        let mut table = Table::new("me", 3);
        table.receive("me", report("me", 100, "rust"), true, t0, wall(), true);
        table.receive("old-online", report("old-online", 10_000, "python"), false, t0, wall(), true);
        table.receive("stale", report("stale", 100, "python"), false, t0 + MS, wall(), true);
        let now = t0 + 1000 * MS;
        // "stale" is offline (seen later than "old-online", but not fresh): it goes first.
        table.receive("new", report("new", 100, "python"), false, now, wall(), true);
        let ids: Vec<String> = table.list(now, true).into_iter().map(|i| i.instance_id).collect();
        assert_eq!(ids, ["me", "new", "old-online"]);
        // All fresh: the one seen longest ago goes; never this instance.
        table.receive("newer", report("newer", 100, "python"), false, now + MS, wall(), true);
        let ids: Vec<String> = table.list(now + MS, true).into_iter().map(|i| i.instance_id).collect();
        assert_eq!(ids, ["me", "new", "newer"]);
        assert_eq!(table.len(), 3);
        assert!(table.list(now, true)[0].is_self);
    }

    #[test]
    fn reports_claiming_this_instance_are_ignored() {
        let t0 = Instant::now();
        let mut table = Table::new("me", 16);
        assert!(table.receive("me", report("me", 100, "forged"), false, t0, wall(), true).is_none());
        assert_eq!(table.len(), 0);
        assert!(table.receive("me", report("me", 100, "rust"), true, t0, wall(), true).is_some());
        assert!(table.receive("other", report("other", 100, "rust"), true, t0, wall(), true).is_none());
    }

    #[test]
    fn invalid_reports_are_refused_before_the_table() {
        // The table only takes checked reports; these never reach it.
        for payload in [
            &b"garbage"[..],
            br#"{"status":{"instanceId":"py","namespace":"workshop","name":"x"},"interval":100}"#,
            br#"{"status":{"instanceId":"other","namespace":"workshop"},"interval":100}"#,
            br#"{"status":{"instanceId":"py","namespace":"workshop"},"interval":0}"#,
        ] {
            assert!(report::receive(payload, "py", "workshop").is_err());
        }
    }

    #[test]
    fn display_server_never_has_credentials() {
        let url: crate::ServerUrl = "nats://user:pw@127.0.0.1:4222".parse().unwrap();
        assert_eq!(display_server(&url), "nats://127.0.0.1:4222");
        let url: crate::ServerUrl = "wss://[::1]".parse().unwrap();
        assert_eq!(display_server(&url), "wss://[::1]:443");
    }
}
