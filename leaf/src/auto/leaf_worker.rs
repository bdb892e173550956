//! Starts and stops the elected node's leaf beside the election loop, one job at a time and
//! in order (so a stop always finishes before the next start binds the same ports), and
//! reports back: started, failed, advertisement changed (`bridgeState`), died (nats-server
//! kept exiting and the restart budget is spent).
//!
//! Each started leaf serves the auto-mode leader manifest (the leader beacon's fields plus
//! `discoveryNamespace`, `state: "leader"`, 2 s lease) through its HTTPS discovery server,
//! but only while the election says this node leads at that leaf's epoch; otherwise the
//! discovery server answers 503.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::discovery_server::ManifestProvider;
use crate::runtime::{LeafNode, LeafOptions, LeafState};

use kinopio::wire::manifest::{AUTO_MANIFEST_TTL, LeaderAdvert, LeaderManifest, ManifestInputs, ManifestMode};

/// What the worker is asked to do.
#[derive(Debug)]
pub(crate) enum LeafJob {
    /// Start a leaf for `epoch`; `seq` identifies this start.
    Start { seq: u64, epoch: u64, options: Box<LeafOptions> },
    /// Stop the leaf of `epoch`, if one runs.
    Stop { epoch: u64 },
}

/// What the worker reports.
#[derive(Debug)]
pub(crate) enum LeafReport {
    /// The start `seq` succeeded.
    Started { seq: u64, epoch: u64, leaf: Arc<LeafNode> },
    /// The start `seq` failed.
    Failed { seq: u64, epoch: u64, reason: String },
    /// The running leaf's advertisement changed.
    Updated { epoch: u64, advert: Box<LeaderAdvert> },
    /// The running leaf's nats-server is dead for good.
    Died { epoch: u64, reason: String },
}

/// What the manifest needs from the election, shared with every leaf's manifest provider.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LeaderState {
    /// The epoch this node leads at.
    pub epoch: u64,
    /// Own backbone RTT as advertised.
    pub rtt_ms: Option<f64>,
}

/// `Some` while this node leads; written by the election loop.
pub(crate) type SharedLeaderState = Arc<RwLock<Option<LeaderState>>>;

/// The election as the status page shows it, kept up to date by the shell.
pub(crate) type SharedElectionView = Arc<RwLock<Option<crate::status_page::ElectionView>>>;

/// The fixed parts of every leaf's manifest.
#[derive(Debug, Clone)]
pub(crate) struct ManifestIdentity {
    pub node_id: String,
    pub namespace: String,
}

/// The advertisement of a running leaf, for the leader beacon and mDNS (the same value its
/// manifest is built from).
pub(crate) fn advert_of(leaf: &LeafNode) -> LeaderAdvert {
    leaf.advert()
}

/// Runs jobs until `jobs` closes, then stops every leaf still running.
pub(crate) async fn run(
    mut jobs: mpsc::UnboundedReceiver<LeafJob>,
    reports: mpsc::UnboundedSender<LeafReport>,
    runtime_root: Option<PathBuf>,
    identity: ManifestIdentity,
    leader: SharedLeaderState,
    election_view: SharedElectionView,
) {
    let mut running: BTreeMap<u64, (Arc<LeafNode>, JoinHandle<()>)> = BTreeMap::new();
    while let Some(job) = jobs.recv().await {
        match job {
            LeafJob::Start { seq, epoch, options } => {
                if let Some((old, watcher)) = running.remove(&epoch) {
                    watcher.abort();
                    old.stop().await;
                }
                let mut options = *options;
                if let Some(root) = &runtime_root {
                    options = options.runtime_dir(epoch_dir(root, epoch, seq));
                }
                tracing::info!(epoch, "starting the leaf for this leadership");
                match Box::pin(LeafNode::start(options)).await {
                    Ok(leaf) => {
                        let leaf = Arc::new(leaf);
                        leaf.set_manifest_provider(Some(manifest_provider(&leaf, epoch, &identity, &leader)));
                        let view = election_view.clone();
                        leaf.set_election_provider(Some(Arc::new(move || {
                            view.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
                        })));
                        let watcher = tokio::spawn(watch_leaf(leaf.clone(), epoch, reports.clone()));
                        running.insert(epoch, (leaf.clone(), watcher));
                        let _ = reports.send(LeafReport::Started { seq, epoch, leaf });
                    }
                    Err(err) => {
                        let _ = reports.send(LeafReport::Failed { seq, epoch, reason: err.to_string() });
                    }
                }
            }
            LeafJob::Stop { epoch } => {
                if let Some((leaf, watcher)) = running.remove(&epoch) {
                    watcher.abort();
                    tracing::info!(epoch, "stopping the leaf of this leadership");
                    leaf.stop().await;
                }
            }
        }
    }
    for (epoch, (leaf, watcher)) in running {
        watcher.abort();
        tracing::info!(epoch, "stopping the leaf");
        leaf.stop().await;
    }
}

/// `<root>/epoch-<epoch>` (0.1.1's layout), or `<root>/epoch-<epoch>-<seq>` when that one is
/// already in use (a retried start of the same epoch).
fn epoch_dir(root: &Path, epoch: u64, seq: u64) -> PathBuf {
    let plain = root.join(format!("epoch-{epoch}"));
    let in_use = std::fs::read_dir(&plain).is_ok_and(|mut entries| entries.next().is_some());
    if in_use { root.join(format!("epoch-{epoch}-{seq}")) } else { plain }
}

/// Reports bridge-state changes and the leaf's death.
async fn watch_leaf(leaf: Arc<LeafNode>, epoch: u64, reports: mpsc::UnboundedSender<LeafReport>) {
    let mut watch = leaf.watch();
    let mut last_bridge = watch.borrow_and_update().bridge_state;
    while watch.changed().await.is_ok() {
        let status = watch.borrow_and_update().clone();
        match status.state {
            LeafState::Failed => {
                let reason = status.last_error.clone().unwrap_or_else(|| "nats-server keeps exiting".to_owned());
                let _ = reports.send(LeafReport::Died { epoch, reason });
                return;
            }
            LeafState::Stopping | LeafState::Stopped => return,
            LeafState::Running | LeafState::Restarting => {}
        }
        if status.bridge_state != last_bridge {
            last_bridge = status.bridge_state;
            if reports.send(LeafReport::Updated { epoch, advert: Box::new(advert_of(&leaf)) }).is_err() {
                return;
            }
        }
    }
}

/// The auto-mode manifest of the leaf of `epoch`: served while this node leads at that
/// epoch and nats-server is ready; `None` (503) otherwise. No I/O.
fn manifest_provider(
    leaf: &LeafNode,
    epoch: u64,
    identity: &ManifestIdentity,
    leader: &SharedLeaderState,
) -> ManifestProvider {
    let listeners = leaf.listeners().clone();
    let status = leaf.watch();
    let leader = leader.clone();
    let identity = identity.clone();
    Arc::new(move || {
        let state = leader.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()?;
        if state.epoch != epoch {
            return None;
        }
        let (bridge_state, servers, ca_sha) = {
            let current = status.borrow();
            if !(current.server_ready && current.state == LeafState::Running) {
                return None;
            }
            (current.bridge_state, current.backbone_servers.clone(), current.tls.material.ca_cert_sha256.clone())
        };
        let inputs = ManifestInputs {
            node_id: identity.node_id.clone(),
            advert: LeaderAdvert { listeners: listeners.clone(), bridge_state, backbone_servers: servers },
            leader_epoch: epoch,
            backbone_rtt_ms: state.rtt_ms,
            mode: ManifestMode::Auto { discovery_namespace: identity.namespace.clone() },
            ca_cert_sha256: Some(ca_sha),
        };
        Some(LeaderManifest::build(&inputs, OffsetDateTime::now_utc(), AUTO_MANIFEST_TTL))
    })
}
