//! Waits, with a bound, until a started nats-server is ready.
//!
//! Ready means: the process is alive, its ports file names the ports it bound, the client
//! port accepts connections, the WebSocket port completes a TLS handshake and the monitor's
//! `/healthz` answers 200. Failures carry the log tail.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::log::{LOG_TAIL_LINES, log_tail};
use super::monitor::Monitor;
use super::ports::{BoundPorts, read_ports_file};
use super::{ProcessError, ServerProcess};
use crate::net;

/// What [`wait_ready`] checks.
#[derive(Debug, Clone)]
pub struct ReadyCheck {
    /// Where the ports file appears.
    pub ports_file_dir: PathBuf,
    /// Client listener bind address.
    pub client_host: IpAddr,
    /// WebSocket listener bind address.
    pub websocket_host: IpAddr,
    /// Monitor bind address.
    pub monitor_host: IpAddr,
    /// Log files for error messages.
    pub log_files: Vec<PathBuf>,
    /// Time between checks.
    pub poll_interval: Duration,
    /// Bound of each TCP or HTTP check.
    pub probe_timeout: Duration,
}

/// Waits up to `timeout` until `process` is ready (see the module docs) and returns the
/// ports it bound.
///
/// # Errors
///
/// [`ProcessError::Exited`] when nats-server exits first, [`ProcessError::NotReady`] when
/// the time is up (both with the log tail), [`ProcessError::Monitor`] when the monitor
/// client cannot be built.
///
/// # Cancel safety
///
/// Cancel-safe: it only observes the process; the caller still owns it.
pub async fn wait_ready(
    process: &mut ServerProcess,
    check: &ReadyCheck,
    timeout: Duration,
) -> Result<BoundPorts, ProcessError> {
    let started = Instant::now();
    let mut ports: Option<BoundPorts> = None;
    let mut monitor: Option<Monitor> = None;
    let mut pending;
    loop {
        if let Some(status) = process.try_exit() {
            return Err(ProcessError::Exited {
                status: status.to_string(),
                log_tail: log_tail(&check.log_files, LOG_TAIL_LINES),
            });
        }
        if ports.is_none() {
            ports = read_ports_file(&check.ports_file_dir, process.pid());
        }
        pending = Vec::new();
        match ports {
            None => pending.push("the ports file"),
            Some(bound) => {
                if monitor.is_none() {
                    let addr = SocketAddr::new(net::connect_address(check.monitor_host), bound.monitor);
                    monitor = Some(Monitor::new(addr, check.probe_timeout)?);
                }
                let Some(monitor) = monitor.as_ref() else { continue };
                let client = SocketAddr::new(net::connect_address(check.client_host), bound.client);
                let websocket = SocketAddr::new(net::connect_address(check.websocket_host), bound.websocket);
                let (client_ok, websocket_ok, healthy) = tokio::join!(
                    net::accepts(client, check.probe_timeout),
                    net::accepts_tls(websocket, check.probe_timeout),
                    monitor.healthy(),
                );
                if !client_ok {
                    pending.push("the client port");
                }
                if !websocket_ok {
                    pending.push("the WebSocket port");
                }
                if !matches!(healthy, Ok(true)) {
                    pending.push("the monitor's /healthz");
                }
                if pending.is_empty() {
                    tracing::debug!(pid = process.pid(), elapsed = ?started.elapsed(), ?bound, "nats-server is ready");
                    return Ok(bound);
                }
            }
        }
        if started.elapsed() >= timeout {
            return Err(ProcessError::NotReady {
                waited: started.elapsed(),
                pending: pending.join(", "),
                log_tail: log_tail(&check.log_files, LOG_TAIL_LINES),
            });
        }
        tokio::select! {
            status = process.exited() => {
                return Err(ProcessError::Exited {
                    status: status.to_string(),
                    log_tail: log_tail(&check.log_files, LOG_TAIL_LINES),
                });
            }
            () = tokio::time::sleep(check.poll_interval) => {}
        }
    }
}
