//! Why a leaf could not start: [`LeafError`], with its derived [`LeafErrorKind`].

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
#[non_exhaustive]
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

crate::error::error_with_kind! {
    /// Why [`LeafNode::start`](super::LeafNode::start) failed. Nothing is left running and the
    /// runtime directory is cleaned up.
    #[derive(Debug, thiserror::Error)]
    pub enum LeafError => LeafErrorKind {
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
            /// The option (`allowed origin`, `advertised host`, ...).
            option: &'static str,
            /// What is wrong and what to do.
            reason: String,
        },
        /// The same port was asked for two listeners.
        #[error("port {port} was given for both the {first} and the {second}; give each listener its own port")]
        SamePort {
            /// The port.
            port: u16,
            /// One listener.
            first: ListenerKind,
            /// The other.
            second: ListenerKind,
        },
        /// A port that was asked for is taken.
        #[error(
            "port {} is already in use (the {listener} on {}); choose a free port for the {listener}, or leave its port unset to let the leaf pick one",
            addr.port(), addr.ip()
        )]
        PortInUse {
            /// Which listener.
            listener: ListenerKind,
            /// The address that could not be bound.
            addr: SocketAddr,
        },
        /// A listener address could not be bound for another reason.
        #[error(
            "could not listen on {addr} for the {listener}: {source}; check the LAN bind address (it must be an address of this machine)"
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
        #[error("the runtime directory {} is not empty; give an empty or new directory, or none to use a temporary one", path.display())]
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
        #[error("the leaf's {step} task failed: {source}")]
        Task {
            /// Which step.
            step: &'static str,
            /// Why (it panicked or was cancelled).
            #[source]
            source: tokio::task::JoinError,
        },
    }
}

impl LeafError {
    pub(crate) fn task(step: &'static str, err: tokio::task::JoinError) -> LeafError {
        LeafError::Task { step, source: err }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_in_use_names_the_port_and_the_listener() {
        let err = LeafError::PortInUse { listener: ListenerKind::Client, addr: "127.0.0.1:4222".parse().unwrap() };
        let text = err.to_string();
        assert!(text.contains("port 4222 is already in use (the NATS client listener"), "{text}");
        assert!(!text.contains("--"), "library messages name no CLI flags: {text}");
        assert_eq!(err.kind(), LeafErrorKind::PortInUse);
    }
}
