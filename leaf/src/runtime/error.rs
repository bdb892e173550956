//! Why a leaf could not start, with a stable [`LeafError::kind`] for `--json` output.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;

use crate::binary::BinaryError;
use crate::config::ConfigError;
use crate::discovery_server::DiscoveryServerError;
use crate::process::ProcessError;
use crate::tls::TlsError;

/// One of the leaf's listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ListenerKind {
    /// Plain NATS client listener (loopback).
    Client,
    /// NATS WebSocket (WSS) listener on the LAN.
    Websocket,
    /// HTTPS discovery server on the LAN.
    Discovery,
    /// nats-server HTTP monitor (loopback).
    Monitor,
}

impl ListenerKind {
    /// The CLI flag that sets its port (`--client-port`, ...).
    pub fn port_flag(self) -> &'static str {
        match self {
            ListenerKind::Client => "--client-port",
            ListenerKind::Websocket => "--websocket-port",
            ListenerKind::Discovery => "--discovery-port",
            ListenerKind::Monitor => "--monitor-port",
        }
    }

    /// What it is, for messages.
    pub fn description(self) -> &'static str {
        match self {
            ListenerKind::Client => "NATS client listener",
            ListenerKind::Websocket => "NATS WebSocket (WSS) listener",
            ListenerKind::Discovery => "HTTPS discovery server",
            ListenerKind::Monitor => "nats-server monitor",
        }
    }
}

impl fmt::Display for ListenerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// Why [`LeafNode::start`](super::LeafNode::start) failed. Nothing is left running and the
/// runtime directory is cleaned up.
#[derive(Debug, thiserror::Error)]
pub enum LeafError {
    /// No nats-server binary could be provided.
    #[error(transparent)]
    Binary(#[from] BinaryError),
    /// TLS material could not be prepared.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The configuration is invalid (backbone URL, server name, path).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An option is invalid.
    #[error("invalid {option}: {reason}")]
    InvalidOption {
        /// The option (`--lan-bind-address`, ...).
        option: &'static str,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A port that was asked for is taken.
    #[error(
        "port {} is already in use ({flag}: the {listener} on {}); pass a free port with {flag}, or leave {flag} out to let the leaf pick one",
        addr.port(), addr.ip(), flag = listener.port_flag()
    )]
    PortInUse {
        /// Which listener.
        listener: ListenerKind,
        /// The address that could not be bound.
        addr: SocketAddr,
    },
    /// A listener address could not be bound for another reason.
    #[error(
        "could not listen on {addr} for the {listener}: {source}; check --lan-bind-address (it must be an address of this machine)"
    )]
    Bind {
        /// Which listener.
        listener: ListenerKind,
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The given runtime directory holds files.
    #[error("the runtime directory {} is not empty; pass an empty or new directory with --runtime-dir, or leave it out to use a temporary one", path.display())]
    RuntimeDirNotEmpty {
        /// The directory.
        path: PathBuf,
    },
    /// A runtime-directory operation failed.
    #[error("could not {action} {}: {source}", path.display())]
    RuntimeDir {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file given in the options does not exist.
    #[error("the {what} {} does not exist", path.display())]
    MissingFile {
        /// What the file is.
        what: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// nats-server did not start or did not become ready.
    #[error("failed to start the local leaf: {0}")]
    Start(#[source] ProcessError),
    /// The discovery server could not start.
    #[error(transparent)]
    Discovery(#[from] DiscoveryServerError),
    /// A background step panicked or was cancelled.
    #[error("the leaf's {step} task failed: {reason}")]
    Task {
        /// Which step.
        step: &'static str,
        /// Why.
        reason: String,
    },
}

impl LeafError {
    /// A stable, kebab-case name of the failure (`port-in-use`, `binary`, ...), for
    /// machine-readable output.
    pub fn kind(&self) -> &'static str {
        match self {
            LeafError::Binary(_) => "binary",
            LeafError::Tls(_) => "tls",
            LeafError::Config(_) => "config",
            LeafError::InvalidOption { .. } => "invalid-option",
            LeafError::PortInUse { .. } => "port-in-use",
            LeafError::Bind { .. } => "bind",
            LeafError::RuntimeDirNotEmpty { .. } => "runtime-dir-not-empty",
            LeafError::RuntimeDir { .. } => "runtime-dir",
            LeafError::MissingFile { .. } => "missing-file",
            LeafError::Start(_) => "start-failed",
            LeafError::Discovery(_) => "discovery",
            LeafError::Task { .. } => "task",
        }
    }

    pub(crate) fn task(step: &'static str, err: tokio::task::JoinError) -> LeafError {
        LeafError::Task { step, reason: err.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_in_use_names_the_port_and_the_flag() {
        let err = LeafError::PortInUse { listener: ListenerKind::Client, addr: "127.0.0.1:4222".parse().unwrap() };
        let text = err.to_string();
        assert!(text.contains("port 4222 is already in use"), "{text}");
        assert!(text.contains("--client-port"), "{text}");
        assert_eq!(err.kind(), "port-in-use");
    }
}
