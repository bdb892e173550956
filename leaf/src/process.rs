//! The nats-server child process, one module per job:
//!
//! - [`spawn`](ServerProcess::spawn): start it so that it can never outlive kinopio, signal
//!   it, stop it (SIGTERM, then SIGKILL after a grace period);
//! - [`wait_ready`]: wait, with a bound, until it serves (ports file, client port, WSS
//!   handshake, `/healthz`);
//! - ports: read the ports it bound from its ports file ([`read_ports_file`]);
//! - log: the log tail shown in errors and the ports it could not bind ([`log_tail`],
//!   [`ports_in_use`]);
//! - monitor: an HTTP client for its monitor ([`Monitor`]).

mod log;
mod monitor;
mod ports;
mod ready;
mod spawn;

use std::path::PathBuf;
use std::time::Duration;

pub use log::{LOG_TAIL_LINES, log_tail, ports_in_use};
pub use monitor::{Monitor, MonitorError, MonitorErrorKind};
pub use ports::{BoundPorts, PortsFileError, PortsFileErrorKind, parse_ports_file, ports_file_path, read_ports_file};
pub use ready::{ReadyCheck, wait_ready};
pub use spawn::{ServerProcess, SpawnSpec, StopOutcome};

crate::error::error_with_kind! {
    /// Errors from running nats-server.
    #[derive(Debug, thiserror::Error)]
    pub enum ProcessError => ProcessErrorKind {
        /// The process could not be started.
        #[error("could not start {}: {source}; check that it is an executable nats-server binary", binary.display())]
        Spawn {
            /// The executable.
            binary: PathBuf,
            /// The underlying error.
            #[source]
            source: std::io::Error,
        },
        /// The output file could not be opened.
        #[error("could not open the nats-server log {}: {source}", path.display())]
        Output {
            /// The file.
            path: PathBuf,
            /// The underlying error.
            #[source]
            source: std::io::Error,
        },
        /// nats-server exited while starting.
        #[error("nats-server exited while starting ({status}).\nLog output:\n{log_tail}")]
        Exited {
            /// How it exited.
            status: String,
            /// The last lines of its log.
            log_tail: String,
        },
        /// nats-server did not become ready in time.
        #[error("nats-server was not ready after {waited:?} (still waiting for: {pending}).\nLog output:\n{log_tail}")]
        NotReady {
            /// How long we waited.
            waited: Duration,
            /// The checks that had not passed.
            pending: String,
            /// The last lines of its log.
            log_tail: String,
        },
        /// The HTTP client for the monitor could not be set up.
        #[error("could not set up the HTTP client for the nats-server monitor: {0}")]
        Monitor(#[source] MonitorError),
        /// A signal could not be sent.
        #[error("could not send {signal} to nats-server (pid {pid}): {reason}")]
        Signal {
            /// The signal.
            signal: &'static str,
            /// The process.
            pid: u32,
            /// Why.
            reason: String,
        },
    }
}
