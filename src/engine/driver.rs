//! The engine's background task: makes the first connection (probing first in latency mode),
//! turns async-nats events into [`ConnectionState`] and [`HubEvent`]s, re-probes in the
//! background, runs local-leader discovery (asking its pure policy what to do) and performs
//! hot switches (make-before-break) for faster servers, manual reconnects and local leaders.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::Engine;
use super::connection::{Connection, ConnectionEvent, FirstConnect, round_trip};
use super::inbox::{Rebind, Switch, SwitchSettle};
use super::probe::probe_all;
use crate::discovery::Discovery;
use crate::discovery::policy::{Link, Rejection, Verdict};
use crate::error::{SwitchError, SwitchErrorKind};
use crate::options::HubOptions;
use crate::selection::ranking::{self, Decision, Ranking};
use crate::selection::{ProbeResult, SelectionMode};
use crate::server::ServerUrl;
use crate::state::{ConnectionState, HubEvent, SwitchReason};

/// Requests to the driver.
#[derive(Debug)]
pub(super) enum Command {
    /// Re-plan and move to the best reachable server (`Hub::reconnect`).
    Reconnect(oneshot::Sender<Result<ServerUrl, SwitchError>>),
    /// Move to this server now (tests, discovery).
    SwitchTo(ServerUrl, SwitchReason, oneshot::Sender<Result<ServerUrl, SwitchError>>),
}

/// How soon a faster server seen in one probe round is probed again to confirm it.
const CONFIRM_AFTER: Duration = Duration::from_secs(1);

struct Driver {
    engine: Arc<Engine>,
    events_tx: mpsc::UnboundedSender<ConnectionEvent>,
    ranking: Ranking,
    discovery: Option<Discovery>,
    /// When to start a fresh connection after async-nats gave up (auto retry on).
    restart_at: Option<tokio::time::Instant>,
    restarts: usize,
}

/// Runs until the hub is closed or dropped.
pub(super) async fn run(engine: Arc<Engine>, mut commands: mpsc::UnboundedReceiver<Command>) {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let discovery = engine.options.discovery.clone().filter(|d| d.enabled).map(Discovery::new);
    let mut sup = Driver {
        ranking: Ranking::new(engine.options.switch_threshold, 2),
        engine,
        events_tx,
        discovery,
        restart_at: None,
        restarts: 0,
    };
    let cancel = sup.engine.cancel.clone();
    tokio::select! {
        _ = cancel.cancelled() => return,
        () = sup.first_connection() => {}
    }
    let mut next_probe = sup.reprobe_interval().map(|d| tokio::time::Instant::now() + d);
    let mut next_discovery = sup.discovery.as_ref().map(|_| tokio::time::Instant::now());
    loop {
        let probe_at = next_probe.unwrap_or_else(far_future);
        let discovery_at = next_discovery.unwrap_or_else(far_future);
        let restart_at = sup.restart_at.unwrap_or_else(far_future);
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(event) = events.recv() => sup.on_event(event),
            Some(command) = commands.recv() => sup.on_command(command).await,
            _ = tokio::time::sleep_until(probe_at), if next_probe.is_some() => {
                let confirm = sup.reprobe().await;
                next_probe = sup.reprobe_interval().map(|d| tokio::time::Instant::now() + if confirm { CONFIRM_AFTER } else { d });
            }
            _ = tokio::time::sleep_until(restart_at), if sup.restart_at.is_some() => {
                sup.restart_at = None;
                sup.restart().await;
            }
            _ = tokio::time::sleep_until(discovery_at), if next_discovery.is_some() => {
                let wait = sup.discover().await;
                next_discovery = Some(tokio::time::Instant::now() + wait);
            }
        }
    }
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}

impl Driver {
    fn options(&self) -> &HubOptions {
        &self.engine.options
    }

    fn reprobe_interval(&self) -> Option<Duration> {
        let o = self.options();
        if o.selection == SelectionMode::Latency && o.servers.len() > 1 { o.reprobe_interval } else { None }
    }

    /// The servers in the order this mode wants them now (probing in latency mode).
    async fn plan(&self) -> Vec<ServerUrl> {
        let servers = self.options().servers.clone();
        match self.options().selection {
            SelectionMode::Ordered => servers,
            SelectionMode::Random => {
                let mut s = servers;
                use rand::seq::SliceRandom;
                s.shuffle(&mut rand::rng());
                s
            }
            SelectionMode::Latency if servers.len() < 2 => servers,
            SelectionMode::Latency => {
                let results = probe_all(self.options(), &servers).await;
                let order = ranking::order(&results);
                let plan = order.iter().map(|&i| results[i].server.clone()).collect();
                self.record_probes(&results);
                plan
            }
        }
    }

    fn record_probes(&self, results: &[ProbeResult]) {
        for r in results {
            tracing::debug!(server = %r.server, rtt_ms = r.rtt.map(|d| d.as_secs_f64() * 1e3), error = r.error.as_deref(), "probe");
        }
        self.engine.set_probes(results.to_vec());
    }

    async fn first_connection(&mut self) {
        self.engine.set_state(ConnectionState::Connecting);
        let plan = self.plan().await;
        match Connection::open(self.options(), plan, FirstConnect::Background, self.events_tx.clone(), true).await {
            Ok(conn) => {
                self.engine.replace_connection(Arc::new(conn));
            }
            Err(e) => {
                // Only invalid options end here (the background connect never fails).
                tracing::error!(error = %e, "cannot create the connection");
                self.engine.set_last_error(e.to_string());
                self.engine.set_state(ConnectionState::Error);
                self.engine.emit(HubEvent::Failed { message: e.to_string() });
            }
        }
    }

    fn on_event(&mut self, ev: ConnectionEvent) {
        let current = self.engine.current();
        let is_current = current.as_ref().is_some_and(|c| c.id == ev.connection);
        let server = current.as_ref().and_then(|c| c.server());
        use async_nats::Event;
        match ev.event {
            Event::SlowConsumer(sid) => {
                tracing::warn!(sid, "slow consumer: messages dropped; raise subscription_capacity or consume faster");
                self.engine.emit(HubEvent::SlowConsumer { sid });
            }
            _ if !is_current => {}
            Event::Connected => {
                tracing::info!(server = ?server.as_ref().map(ToString::to_string), "connected");
                self.engine.emit(HubEvent::Connected { server });
                self.engine.set_state(ConnectionState::Connected);
            }
            Event::Disconnected => {
                tracing::warn!(server = ?server.as_ref().map(ToString::to_string), "disconnected; reconnecting");
                self.engine.emit(HubEvent::Disconnected { server });
                self.engine.set_state(ConnectionState::Disconnected);
            }
            Event::LameDuckMode => self.engine.emit(HubEvent::LameDuck { server }),
            Event::ServerError(e) => {
                let message = e.to_string();
                self.engine.set_last_error(message.clone());
                self.engine.end_refused(&message);
                self.engine.emit(HubEvent::ServerError { message });
            }
            Event::ClientError(async_nats::ClientError::MaxReconnects) | Event::Closed => {
                if self.engine.is_closed() {
                    return;
                }
                if self.restart_at.is_some() {
                    return;
                }
                if self.options().auto_retry {
                    // Start over: re-plan and open a fresh connection after a backoff.
                    self.restarts += 1;
                    let delay = self.options().backoff().delay_random(self.restarts + 1);
                    tracing::warn!(delay_ms = delay.as_millis() as u64, "connection gave up; starting over");
                    self.engine.set_state(ConnectionState::Connecting);
                    self.restart_at = Some(tokio::time::Instant::now() + delay);
                    return;
                }
                let message = format!(
                    "gave up after {} connection attempts; last error: {}",
                    self.options().max_reconnect_attempts.unwrap_or(self.options().servers.len()),
                    self.engine.last_error().unwrap_or_else(|| "none".into())
                );
                tracing::error!("{message}");
                self.engine.set_state(ConnectionState::Error);
                self.engine.emit(HubEvent::Failed { message });
            }
            Event::ClientError(e) => {
                tracing::debug!(error = %e, "connection attempt failed");
                self.engine.set_last_error(e.to_string());
            }
            Event::Draining => {}
        }
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Reconnect(reply) => {
                self.ranking.reset();
                let plan = self.plan().await;
                let result = self.switch_plan(plan, SwitchReason::Manual, None).await;
                let _ = reply.send(result);
            }
            Command::SwitchTo(server, reason, reply) => {
                let mut plan = vec![server.clone()];
                plan.extend(self.options().servers.iter().filter(|s| **s != server).cloned());
                let result = self.switch_to(plan, reason, None, None).await;
                let _ = reply.send(result);
            }
        }
    }

    /// A fresh connection cycle after the old connection gave up: new plan, new connection
    /// (connecting in the background), every subscription re-created on it.
    async fn restart(&mut self) {
        if self.engine.is_closed() {
            return;
        }
        let plan = self.plan().await;
        let options = self.engine.options.clone();
        let new = match Connection::open(&options, plan, FirstConnect::Background, self.events_tx.clone(), true).await {
            Ok(c) => Arc::new(c),
            Err(e) => {
                tracing::error!(error = %e, "cannot create a connection");
                return;
            }
        };
        let engine = Arc::clone(&self.engine);
        let _switching = engine.switch_lock.lock().await;
        for binding in engine.bindings() {
            if let Ok(subscriber) = binding.subscribe_on(&new.client).await {
                let rebind = Rebind {
                    subscriber,
                    client: new.client.clone(),
                    dedup: false,
                    overlap: Duration::ZERO,
                    settle: None,
                };
                binding.mailbox.send(Switch::Rebind(Box::new(rebind)));
            }
        }
        if let Some(old) = engine.replace_connection(new) {
            old.retire();
        }
    }

    /// One discovery round: asks the policy what to do, does it, and returns how long to
    /// wait before the next round.
    async fn discover(&mut self) -> Duration {
        let Some(mut discovery) = self.discovery.take() else {
            return Duration::from_secs(3600);
        };
        let server = self.engine.server();
        let link = Link {
            on_leader: server.is_some() && server.as_ref() == discovery.policy.leader_server(),
            connected: self.engine.state() == ConnectionState::Connected,
        };
        let mut verdict = discovery.policy.tick(Instant::now(), link);
        loop {
            verdict = match verdict {
                Verdict::Stay => break,
                Verdict::Survey => {
                    let candidates = discovery.survey().await;
                    discovery.policy.surveyed(candidates)
                }
                Verdict::Recheck { url } => {
                    let outcome = discovery.fetch(&url).await;
                    discovery.policy.rechecked(Instant::now(), outcome)
                }
                Verdict::Try { attempts, rejected } => {
                    for rejection in rejected {
                        self.report(rejection);
                    }
                    self.try_leaders(&mut discovery, attempts).await;
                    break;
                }
                Verdict::Leave { reason } => {
                    tracing::info!(%reason, "leaving the local leader; back to the configured servers");
                    let plan = self.plan().await;
                    match self.switch_plan(plan, SwitchReason::LocalLeaderLost, None).await {
                        Ok(_) => discovery.policy.left(Instant::now()),
                        Err(e) => {
                            tracing::warn!(error = %e, "no configured server reachable; staying");
                            discovery.policy.leave_failed(Instant::now());
                        }
                    }
                    break;
                }
            };
        }
        let wait = discovery.policy.next_round(Instant::now());
        self.discovery = Some(discovery);
        wait
    }

    /// Tries the leaders in order; the first that connects is in use.
    async fn try_leaders(&mut self, discovery: &mut Discovery, attempts: Vec<crate::discovery::policy::Attempt>) {
        let options = match discovery.leader_options(&self.engine.options).await {
            Ok(options) => options,
            Err(e) => {
                tracing::warn!(error = %e, "local-leader discovery is off");
                return;
            }
        };
        let limit = discovery.local_switch_timeout() * 2;
        for attempt in attempts {
            for server in attempt.servers.clone() {
                if self.engine.server().as_ref() == Some(&server) {
                    return;
                }
                let switch = self.switch_to_with(&options, vec![server.clone()], SwitchReason::LocalLeader, None, None);
                let reason = match tokio::time::timeout(limit, switch).await {
                    Ok(Ok(_)) => {
                        tracing::info!(leader = %attempt.manifest.node_id, %server, "switched to the local leader");
                        discovery.policy.joined(Instant::now(), attempt, server);
                        return;
                    }
                    Ok(Err(e)) => format!("did not connect: {e}"),
                    Err(_) => "did not connect in time".to_owned(),
                };
                let rejection = discovery.policy.reject(server.as_str(), reason);
                self.report(rejection);
            }
        }
    }

    /// Reports a refused candidate: an event every time, a warning the first time.
    fn report(&self, rejection: Rejection) {
        let Rejection { url, reason, first } = rejection;
        if first {
            tracing::warn!(%url, %reason, "refused a local leader candidate");
        } else {
            tracing::debug!(%url, %reason, "refused a local leader candidate");
        }
        self.engine.emit(HubEvent::LocalLeaderRejected { url, reason });
    }

    /// One background probe round. Returns true when a confirmation round should follow soon.
    async fn reprobe(&mut self) -> bool {
        if self.engine.is_closed() || self.discovery.as_ref().is_some_and(|d| d.policy.in_use()) {
            return false;
        }
        let results = probe_all(self.options(), &self.options().servers.clone()).await;
        self.record_probes(&results);
        let current = self.engine.current().and_then(|c| c.server());
        match self.ranking.observe(current.as_ref(), &results) {
            Decision::Stay => false,
            Decision::Confirm { candidate } => {
                tracing::debug!(%candidate, "faster server seen; confirming");
                true
            }
            Decision::Switch { to, rtt_before, rtt_after } => {
                let order = ranking::order(&results);
                let mut plan = vec![to.clone()];
                plan.extend(order.iter().map(|&i| results[i].server.clone()).filter(|s| *s != to));
                if let Err(e) = self.switch_to(plan, SwitchReason::Faster, rtt_before, Some(rtt_after)).await {
                    tracing::warn!(%to, error = %e, "switch to a faster server failed; staying");
                }
                false
            }
        }
    }

    /// Tries each server of `plan` in order until one accepts a connection.
    async fn switch_plan(
        &mut self,
        plan: Vec<ServerUrl>,
        reason: SwitchReason,
        rtt_before: Option<Duration>,
    ) -> Result<ServerUrl, SwitchError> {
        let mut last = SwitchError::new(SwitchErrorKind::Unreachable);
        for i in 0..plan.len() {
            let mut rotated = plan[i..].to_vec();
            rotated.extend_from_slice(&plan[..i]);
            match self.switch_to(rotated, reason, rtt_before, None).await {
                Ok(server) => return Ok(server),
                Err(e) if e.kind() == SwitchErrorKind::Unreachable => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Make-before-break move to `plan[0]` (see the crate docs on hot switching).
    async fn switch_to(
        &mut self,
        plan: Vec<ServerUrl>,
        reason: SwitchReason,
        rtt_before: Option<Duration>,
        rtt_after: Option<Duration>,
    ) -> Result<ServerUrl, SwitchError> {
        let options = self.engine.options.clone();
        self.switch_to_with(&options, plan, reason, rtt_before, rtt_after).await
    }

    /// [`Driver::switch_to`] with connection options of its own (a local leader's CA).
    async fn switch_to_with(
        &mut self,
        options: &HubOptions,
        plan: Vec<ServerUrl>,
        reason: SwitchReason,
        rtt_before: Option<Duration>,
        rtt_after: Option<Duration>,
    ) -> Result<ServerUrl, SwitchError> {
        let started = Instant::now();
        let engine = Arc::clone(&self.engine);
        let Some(target) = plan.first().cloned() else {
            return Err(SwitchError::new(SwitchErrorKind::Unreachable));
        };
        let new =
            Connection::open(options, plan, FirstConnect::SingleAttempt, self.events_tx.clone(), false).await.map_err(
                |e| SwitchError::new(SwitchErrorKind::Unreachable).with_detail(target.to_string()).with_source(e),
            )?;
        let new = Arc::new(new);

        let _switching = engine.switch_lock.lock().await;
        if engine.is_closed() {
            return Err(SwitchError::new(SwitchErrorKind::Closed));
        }
        // 1. Tell every subscription to remember what it delivers from now on, re-create it
        //    on the new connection, and wait until the server has them all.
        let bindings = engine.bindings();
        for binding in &bindings {
            binding.mailbox.send(Switch::Prepare);
        }
        let abort = |e: SwitchError| {
            for binding in &bindings {
                binding.mailbox.send(Switch::Abort);
            }
            e
        };
        let mut rebinds = Vec::new();
        for binding in &bindings {
            let sub = binding
                .subscribe_on(&new.client)
                .await
                .map_err(|e| abort(SwitchError::new(SwitchErrorKind::Rebind).with_source(e)))?;
            rebinds.push((binding, sub));
        }
        let rtt_new = round_trip(&new.client, options.connect_timeout)
            .await
            .map_err(|e| abort(SwitchError::new(SwitchErrorKind::Rebind).with_detail(e.to_string())))?;
        // 2. Make it current (publishes wait at its gate), hand every subscription its new
        //    subscriber, then let the old connection flush before the gate opens, so a
        //    publisher's messages stay in order across the switch.
        let old = engine.replace_connection(Arc::clone(&new));
        let settle = Arc::new(SwitchSettle {
            engine: Arc::downgrade(&engine),
            server: target.clone(),
            subscriptions: rebinds.len(),
            started,
        });
        for (binding, subscriber) in rebinds {
            let rebind = Rebind {
                subscriber,
                client: new.client.clone(),
                dedup: binding.queue.is_none(),
                overlap: options.switch_overlap,
                settle: Some(Arc::clone(&settle)),
            };
            // A subscription dropped meanwhile: its new subscriber is dropped here too.
            binding.mailbox.send(Switch::Rebind(Box::new(rebind)));
        }
        let from = old.as_ref().and_then(|o| o.server());
        if let Some(old) = &old {
            if old.is_connected() {
                let _ = round_trip(&old.client, options.connect_timeout).await;
            }
            old.retire();
        }
        new.open_gate();
        // A hot switch stays `Connected`, so `set_state` does not count it as an activation.
        if !engine.set_state(ConnectionState::Connected) {
            engine.activated();
        }
        tracing::info!(from = ?from.as_ref().map(ToString::to_string), to = %target, ?reason, "switched server");
        engine.emit(HubEvent::ServerSwitched {
            from,
            to: target.clone(),
            rtt_before,
            rtt_after: rtt_after.or(Some(rtt_new)),
            reason,
        });
        // The last merge to end (or this, if none started) emits `SwitchSettled`.
        drop(settle);
        Ok(target)
    }
}
