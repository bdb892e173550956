//! Runs a local leaf: composes the nats-server binary ([`crate::binary`]), TLS material
//! ([`crate::tls`]), the rendered config ([`crate::config`]), the supervised process
//! ([`crate::process`]) and the HTTPS discovery server ([`crate::discovery_server`]).
//!
//! [`LeafNode::start`] returns once nats-server is ready; [`LeafNode::status`] returns at
//! once from a cache that a background task refreshes about every second
//! ([`LeafNode::watch`] yields each change); [`LeafNode::stop`] stops the discovery
//! server, then nats-server (SIGTERM, then SIGKILL after a grace period), and cleans the
//! runtime directory. Dropping a [`LeafNode`] without `stop` kills nats-server.
//!
//! Listeners: the plain NATS client port and the HTTP monitor on loopback; the WSS
//! listener and the HTTPS discovery server on the LAN address. None of them asks for
//! authentication (as in the reference): anyone who can reach the LAN address can use the
//! WSS listener, and what they publish is bridged to the backbone.
//!
//! ```no_run
//! # async fn run() -> Result<(), kinopio_leaf::runtime::LeafError> {
//! use kinopio_leaf::runtime::{LeafNode, LeafOptions};
//! let leaf = LeafNode::start(LeafOptions::new().backbone_server("nats://hub.example.com:7422")).await?;
//! let status = leaf.status();
//! println!("{} bridge={}", leaf.urls().wss_url, status.bridge_state);
//! leaf.stop().await;
//! # Ok(()) }
//! ```

mod error;
mod listeners;
mod options;
mod providers;
pub(crate) mod renewal;
pub(crate) mod restart;
pub(crate) mod runtime_dir;
mod start;
mod status;
mod supervisor;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use error::{LeafError, LeafErrorKind, ListenerKind};
pub use options::{LeafOptions, LeafTimings, RestartPolicy};
pub use status::{
    LeafState, LeafStatus, LeafUrls, ListenerStatus, StatusChange, TlsStatus, TrustStatus, bridge_state,
    leafz_connected, leafz_remote_name, status_changes,
};

use crate::discovery_server::ManifestProvider;
use crate::process::StopOutcome;
use crate::status_page::{ElectionProvider, ReportInputs, StatusProvider, StatusReport};
use kinopio::wire::manifest::{LeaderAdvert, LeaderManifest, ListenerUrls};
use runtime_dir::RuntimeDir;
use start::write_config;
use supervisor::Command;

/// nats-server rotates its log at this size.
pub const LOG_SIZE_LIMIT_BYTES: u64 = 10 * 1024 * 1024;
/// nats-server keeps this many log files.
pub const LOG_MAX_FILES: u32 = 3;

/// How [`LeafNode::stop`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReport {
    /// This call stopped the leaf; how nats-server ended.
    Stopped(StopOutcome),
    /// An earlier call already stopped it.
    AlreadyStopped,
}

/// A running local leaf. See the module docs.
pub struct LeafNode {
    node_id: String,
    urls: LeafUrls,
    /// The same URLs as the wire (manifest, leader beacon) carries them.
    listeners: ListenerUrls,
    ca_cert_file: PathBuf,
    status_tx: Arc<watch::Sender<LeafStatus>>,
    status_rx: watch::Receiver<LeafStatus>,
    commands: mpsc::Sender<Command>,
    supervisor: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    tls_task: JoinHandle<()>,
    runtime_dir: std::sync::Mutex<RuntimeDir>,
    manifest: ManifestProvider,
    manifest_override: Arc<RwLock<Option<ManifestProvider>>>,
    /// The election view `leaf auto` shows on the status page.
    election: Arc<RwLock<Option<ElectionProvider>>>,
    /// What the status page and `/status.json` show.
    status_report: StatusProvider,
    /// Samples nats-server's monitor for the status page.
    sampler_task: JoinHandle<()>,
    timings: LeafTimings,
}

impl std::fmt::Debug for LeafNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafNode").field("node_id", &self.node_id).field("urls", &self.urls).finish_non_exhaustive()
    }
}

/// A fresh 32-hex-character node id (like the reference's `uuid4().hex`).
pub fn new_node_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl LeafNode {
    /// Starts a leaf and returns once nats-server is ready and the discovery server serves.
    /// On error nothing is left running and the runtime directory is cleaned up.
    ///
    /// # Errors
    ///
    /// A [`LeafError`] saying which option, file, port, binary, certificate or process
    /// step failed; [`LeafError::kind`] tells them apart.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops whatever it started: a spawned nats-server is stopped in
    /// the background and the runtime directory is removed.
    pub async fn start(options: LeafOptions) -> Result<LeafNode, LeafError> {
        start::start(options).await
    }

    /// This start's node id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The leaf's URLs as the wire carries them (checked once, at start).
    pub fn listeners(&self) -> &ListenerUrls {
        &self.listeners
    }

    /// What this leaf advertises now (URLs, bridge state, backbone servers): the one value
    /// its manifest and, under `leaf auto`, the leader beacon are built from.
    pub fn advert(&self) -> LeaderAdvert {
        let status = self.status_rx.borrow();
        LeaderAdvert {
            listeners: self.listeners.clone(),
            bridge_state: status.bridge_state,
            backbone_servers: status.backbone_servers.clone(),
        }
    }

    /// The leaf's URLs.
    pub fn urls(&self) -> &LeafUrls {
        &self.urls
    }

    /// The CA certificate clients should trust for the WSS and discovery listeners.
    pub fn ca_cert_file(&self) -> &Path {
        &self.ca_cert_file
    }

    /// The runtime directory.
    pub fn runtime_dir(&self) -> PathBuf {
        self.status_rx.borrow().runtime_dir.clone()
    }

    /// The latest status (never blocks).
    pub fn status(&self) -> LeafStatus {
        self.status_rx.borrow().clone()
    }

    /// A receiver that sees every status change (`changed().await`, `wait_for(..)`).
    pub fn watch(&self) -> watch::Receiver<LeafStatus> {
        self.status_rx.clone()
    }

    /// The manifest the discovery server serves right now (`None` while nats-server is
    /// not ready).
    pub fn manifest(&self) -> Option<LeaderManifest> {
        (self.manifest)()
    }

    /// Serves manifests from `provider` instead of the manual-mode manifest (used by the
    /// auto-leaf election); `None` restores the manual-mode manifest.
    pub fn set_manifest_provider(&self, provider: Option<ManifestProvider>) {
        let mut slot = self.manifest_override.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *slot = provider;
    }

    /// Shows `provider`'s election view (namespace, members) on the status page (used by
    /// the auto-leaf election); `None` shows the leaf as a manual one.
    pub fn set_election_provider(&self, provider: Option<ElectionProvider>) {
        *self.election.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = provider;
    }

    /// What the status page and `/status.json` show right now (no I/O).
    pub fn status_report(&self) -> StatusReport {
        (self.status_report)()
    }

    /// Stops the leaf: the discovery server, then nats-server (SIGTERM, SIGKILL after the
    /// grace period), then removes the runtime directory (or the leaf's files in a given
    /// one). Idempotent; later calls return [`StopReport::AlreadyStopped`].
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: dropping the future part-way may leave the stop half done (the
    /// supervisor may already have been told to stop). Dropping the [`LeafNode`] afterwards
    /// still kills nats-server.
    pub async fn stop(&self) -> StopReport {
        let mut slot = self.supervisor.lock().await;
        let Some(mut task) = slot.take() else {
            return StopReport::AlreadyStopped;
        };
        self.tls_task.abort();
        self.sampler_task.abort();
        let (reply, outcome) = oneshot::channel();
        let budget = self.timings.stop_grace + Duration::from_secs(10);
        let outcome = if self.commands.send(Command::Stop { reply }).await.is_ok() {
            tokio::time::timeout(budget, outcome).await.ok().and_then(Result::ok)
        } else {
            None
        };
        if tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err() {
            tracing::warn!("the leaf supervisor did not finish; aborting it");
            task.abort();
        }
        self.status_tx.send_if_modified(|status| {
            let stopped = status.state == LeafState::Stopped;
            if !stopped {
                status.state = LeafState::Stopped;
                status.bridge_state = kinopio::wire::manifest::BridgeState::Stopped;
                status.server_ready = false;
                status.process_id = None;
            }
            !stopped
        });
        self.runtime_dir.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).cleanup();
        tracing::info!(node_id = %self.node_id, "leaf stopped");
        StopReport::Stopped(outcome.unwrap_or(StopOutcome::Killed))
    }
}

impl Drop for LeafNode {
    fn drop(&mut self) {
        self.tls_task.abort();
        self.sampler_task.abort();
        if let Ok(mut slot) = self.supervisor.try_lock()
            && let Some(task) = slot.take()
        {
            tracing::warn!(node_id = %self.node_id, "leaf dropped without stop(); killing nats-server");
            // Dropping the task drops the process handle, which kills nats-server.
            task.abort();
        }
    }
}

/// The status report built from the cached status, manifest, election view and monitor
/// sample (no I/O).
pub(crate) fn status_provider(
    status: watch::Receiver<LeafStatus>,
    urls: LeafUrls,
    manifest: ManifestProvider,
    election: Arc<RwLock<Option<ElectionProvider>>>,
    sample: Arc<RwLock<Option<crate::status_page::MonitorSample>>>,
) -> StatusProvider {
    Arc::new(move || {
        let current = status.borrow().clone();
        let manifest = manifest();
        let election = election.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let election = election.and_then(|provider| provider());
        let sample = *sample.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        StatusReport::build(
            ReportInputs {
                status: &current,
                urls: &urls,
                manifest: manifest.as_ref(),
                election: election.as_ref(),
                sample: sample.as_ref(),
            },
            time::OffsetDateTime::now_utc(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_32_hex_and_fresh() {
        let a = new_node_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(a, new_node_id());
    }
}
