//! The background task that owns a running leaf's nats-server process and discovery
//! server: it refreshes the cached [`LeafStatus`] every poll interval (client port,
//! WSS handshake, `/healthz`, `/leafz`), restarts a crashed server with backoff, forwards
//! reloads, and on stop shuts the discovery server down and stops nats-server gracefully.
//!
//! Status readers never wait for this task: they read the last value of a watch channel.

use std::net::SocketAddr;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::options::LeafTimings;
use super::restart::RestartBudget;
use super::status::{LeafState, LeafStatus, bridge_state, leafz_remote_name};
use crate::discovery_server::DiscoveryServerHandle;
use crate::net;
use crate::process::{self, Monitor, ReadyCheck, ServerProcess, SpawnSpec, StopOutcome};
use kinopio::wire::manifest::BridgeState;

/// Requests to the supervisor.
#[derive(Debug)]
pub(crate) enum Command {
    /// Ask nats-server to reload its config and certificate files.
    Reload,
    /// Stop everything and report how nats-server ended.
    Stop {
        /// Where the outcome goes.
        reply: oneshot::Sender<StopOutcome>,
    },
}

/// What to do after an event.
enum Flow {
    Continue,
    Stop(Option<oneshot::Sender<StopOutcome>>),
}

enum Event {
    Command(Option<Command>),
    Exited(ExitStatus),
    Tick,
}

/// The state the supervisor owns.
pub(crate) struct Supervisor {
    pub(crate) process: Option<ServerProcess>,
    pub(crate) spec: SpawnSpec,
    /// The config with the ports fixed, written before the first restart.
    pub(crate) restart_config: Option<String>,
    pub(crate) ready: ReadyCheck,
    pub(crate) monitor: Monitor,
    pub(crate) client_addr: SocketAddr,
    pub(crate) websocket_addr: SocketAddr,
    pub(crate) discovery: Option<DiscoveryServerHandle>,
    pub(crate) status: Arc<watch::Sender<LeafStatus>>,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) budget: RestartBudget,
    pub(crate) timings: LeafTimings,
    pub(crate) has_backbone: bool,
}

impl Supervisor {
    /// Runs until stopped (a `Stop` command, or every command sender dropped).
    pub(crate) async fn run(mut self) {
        let period = self.timings.poll_interval.max(Duration::from_millis(10));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let event = match self.process.as_mut() {
                Some(process) => tokio::select! {
                    command = self.commands.recv() => Event::Command(command),
                    status = process.exited() => Event::Exited(status),
                    _ = ticker.tick() => Event::Tick,
                },
                None => Event::Command(self.commands.recv().await),
            };
            let flow = match event {
                Event::Command(Some(Command::Reload)) => {
                    self.reload();
                    Flow::Continue
                }
                Event::Command(Some(Command::Stop { reply })) => Flow::Stop(Some(reply)),
                Event::Command(None) => Flow::Stop(None),
                Event::Exited(status) => {
                    self.process = None;
                    self.recover(format!("nats-server exited unexpectedly ({status})")).await
                }
                Event::Tick => {
                    self.poll().await;
                    Flow::Continue
                }
            };
            if let Flow::Stop(reply) = flow {
                let outcome = self.shutdown().await;
                if let Some(reply) = reply {
                    let _ = reply.send(outcome);
                }
                return;
            }
        }
    }

    fn reload(&mut self) {
        let Some(process) = self.process.as_mut() else {
            return;
        };
        match process.reload() {
            Ok(()) => tracing::info!(pid = process.pid(), "asked nats-server to reload its certificate"),
            Err(err) => tracing::warn!(error = %err, "could not ask nats-server to reload"),
        }
    }

    /// Refreshes the status from probes (all bounded by the probe timeout).
    async fn poll(&mut self) {
        let Some(process) = self.process.as_mut() else {
            return;
        };
        if process.try_exit().is_some() {
            return; // The exit is handled on the next loop turn.
        }
        let timeout = self.timings.probe_timeout;
        let want_leafz = self.has_backbone;
        let monitor = &self.monitor;
        let (client_ok, websocket_ok, health, leafz) = tokio::join!(
            net::accepts(self.client_addr, timeout),
            net::accepts_tls(self.websocket_addr, timeout),
            monitor.healthy(),
            async { if want_leafz { monitor.leafz().await.ok() } else { None } },
        );
        let server_ready = matches!(health, Ok(true));
        let monitor_ready = health.is_ok();
        let discovery_ready = self.discovery.as_ref().is_some_and(DiscoveryServerHandle::is_running);
        let has_backbone = self.has_backbone;
        let mut transitions = Vec::new();
        self.status.send_if_modified(|status| {
            let before = status.clone();
            status.server_ready = server_ready;
            status.client.ready = client_ok;
            status.websocket.ready = websocket_ok;
            status.monitor.ready = monitor_ready;
            status.discovery.ready = discovery_ready;
            status.bridge_state = bridge_state(status.state, has_backbone, true, server_ready, leafz.as_ref());
            status.bridge_server = if status.bridge_state == BridgeState::Connected {
                leafz.as_ref().and_then(leafz_remote_name)
            } else {
                None
            };
            if before.server_ready != status.server_ready {
                transitions.push(format!("serverReady {} -> {}", before.server_ready, status.server_ready));
            }
            if before.bridge_state != status.bridge_state {
                transitions.push(format!("bridgeState {} -> {}", before.bridge_state, status.bridge_state));
            }
            if before.bridge_server != status.bridge_server {
                let name = |server: &Option<String>| server.clone().unwrap_or_else(|| "none".to_owned());
                transitions.push(format!(
                    "bridgeServer {} -> {}",
                    name(&before.bridge_server),
                    name(&status.bridge_server)
                ));
            }
            *status != before
        });
        for transition in transitions {
            if transition.ends_with("-> false") || transition.ends_with("-> error") {
                tracing::warn!(%transition, health = ?health, "leaf status changed");
            } else {
                tracing::info!(%transition, "leaf status changed");
            }
        }
    }

    /// Restarts nats-server after it exited, with backoff, until it is ready again, the
    /// budget is spent (state `failed`) or a stop is requested.
    async fn recover(&mut self, mut reason: String) -> Flow {
        loop {
            let tail = process::log_tail(&self.ready.log_files, 5);
            let delay = self.budget.on_exit(Instant::now());
            let has_backbone = self.has_backbone;
            let state = if delay.is_some() { LeafState::Restarting } else { LeafState::Failed };
            self.status.send_modify(|status| {
                status.state = state;
                status.process_id = None;
                status.server_ready = false;
                status.client.ready = false;
                status.websocket.ready = false;
                status.monitor.ready = false;
                status.bridge_state = bridge_state(state, has_backbone, false, false, None);
                status.bridge_server = None;
                status.last_error = Some(reason.clone());
            });
            let Some(delay) = delay else {
                tracing::error!(%reason, log_tail = %tail, "nats-server keeps failing; giving up (stop the leaf and check the log)");
                return Flow::Continue;
            };
            tracing::warn!(%reason, ?delay, log_tail = %tail, "restarting nats-server");
            if let Some(flow) = self.pause(delay).await {
                return flow;
            }
            if let Some(text) = self.restart_config.take()
                && let Err(err) = super::write_config(&self.spec.config_file, &text)
            {
                self.restart_config = Some(text);
                reason = format!("could not restart nats-server: {err}");
                continue;
            }
            let mut process = match ServerProcess::spawn(&self.spec).await {
                Ok(process) => process,
                Err(err) => {
                    reason = format!("could not restart nats-server: {err}");
                    continue;
                }
            };
            let pid = process.pid();
            self.status.send_modify(|status| {
                status.restarts += 1;
                status.process_id = Some(pid);
            });
            let ready_timeout = self.timings.ready_timeout;
            let waited = {
                let ready = process::wait_ready(&mut process, &self.ready, ready_timeout);
                tokio::pin!(ready);
                loop {
                    tokio::select! {
                        result = &mut ready => break Ok(result),
                        command = self.commands.recv() => match command {
                            // The new process reads the current certificate files anyway.
                            Some(Command::Reload) => continue,
                            Some(Command::Stop { reply }) => break Err(Some(reply)),
                            None => break Err(None),
                        },
                    }
                }
            };
            match waited {
                Err(reply) => {
                    self.process = Some(process);
                    return Flow::Stop(reply);
                }
                Ok(Err(err)) => {
                    let _ = process.stop(self.timings.stop_grace).await;
                    reason = format!("nats-server did not come back: {err}");
                }
                Ok(Ok(_ports)) => {
                    self.budget.on_ready(Instant::now());
                    self.process = Some(process);
                    self.status.send_modify(|status| {
                        status.state = LeafState::Running;
                        status.server_ready = true;
                        status.client.ready = true;
                        status.websocket.ready = true;
                        status.monitor.ready = true;
                        status.bridge_state = bridge_state(LeafState::Running, has_backbone, true, true, None);
                        status.bridge_server = None;
                    });
                    tracing::info!(pid, "nats-server restarted");
                    return Flow::Continue;
                }
            }
        }
    }

    /// Sleeps `delay` unless a stop arrives first (reloads are dropped: a restarted
    /// server reads the current files).
    async fn pause(&mut self, delay: Duration) -> Option<Flow> {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return None,
                command = self.commands.recv() => match command {
                    Some(Command::Reload) => continue,
                    Some(Command::Stop { reply }) => return Some(Flow::Stop(Some(reply))),
                    None => return Some(Flow::Stop(None)),
                },
            }
        }
    }

    /// Stops the discovery server, then nats-server; marks the status stopped.
    async fn shutdown(&mut self) -> StopOutcome {
        self.status.send_modify(|status| {
            status.state = LeafState::Stopping;
            status.bridge_state = bridge_state(LeafState::Stopping, false, false, false, None);
            status.bridge_server = None;
        });
        if let Some(discovery) = self.discovery.take() {
            discovery.shutdown().await;
        }
        let outcome = match self.process.take() {
            Some(process) => process.stop(self.timings.stop_grace).await,
            None => StopOutcome::AlreadyExited,
        };
        self.status.send_modify(|status| {
            status.state = LeafState::Stopped;
            status.bridge_state = bridge_state(LeafState::Stopped, false, false, false, None);
            status.bridge_server = None;
            status.server_ready = false;
            status.process_id = None;
            status.client.ready = false;
            status.websocket.ready = false;
            status.discovery.ready = false;
            status.monitor.ready = false;
        });
        outcome
    }
}
