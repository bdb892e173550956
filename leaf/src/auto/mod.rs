//! Auto-leaf (`kinopio leaf auto`): takes part in the LAN election of a discovery namespace
//! and runs the leaf while this node is the elected leader.
//!
//! The decisions are the pure [`Election`]; this module is its
//! I/O shell:
//! - `transport`: UDP multicast on `239.255.71.71`, port `44710 + crc32(namespace) % 1000`,
//!   TTL 1, membership on every selected interface (re-scanned every few seconds);
//! - `node_id`: the cached, per-process-locked node id;
//! - `rtt`: the backbone RTT probe (TCP connect time; self-reported), in the background;
//! - `mdns`: the leader's `_kinopio-hub._tcp.local.` record;
//! - the leaf worker: starts and stops the leaf beside the loop, serves the auto-mode leader
//!   manifest over HTTPS through the leaf's discovery server (`/healthz` reflects the real
//!   nats-server health) and reports a broker that died for good (the leader then resigns);
//! - the loop: one tokio task that never blocks its heartbeats.
//!
//! Security: in an open namespace (no secret) the wire is exactly kinopio-hub 0.1.1's and
//! anyone on the LAN who can send a UDP datagram to the port can claim leadership with a
//! high `leaderEpoch` (the real leader steps down and followers advertise the stranger's
//! URLs). With a namespace secret every beacon is signed (HMAC-SHA-256 over its canonical
//! content, a timestamp and a sequence number) and unsigned, forged, stale or replayed
//! beacons are dropped; 0.1.1 nodes cannot join a secured namespace. Backbone RTTs are
//! self-reported in both cases.
//!
//! ```no_run
//! # async fn run() -> Result<(), kinopio_leaf::auto::AutoLeafError> {
//! use kinopio_leaf::auto::{AutoEvent, AutoLeaf, AutoLeafOptions};
//! use kinopio_leaf::runtime::LeafOptions;
//!
//! let node = AutoLeaf::start(
//!     AutoLeafOptions::new("studio").leaf(LeafOptions::new().backbone_server("tls://hub.example.com:7422")),
//! )
//! .await?;
//! let mut events = node.events();
//! while let Ok(AutoEvent::StatusChanged(status)) = events.recv().await {
//!     println!("{}", status.election); // e.g. "leader (leader), leading at epoch 3 at wss://..."
//! #   break;
//! }
//! node.stop().await; // resigns: followers elect at once
//! # Ok(()) }
//! ```

mod leaf_worker;
pub(crate) mod mdns;
pub(crate) mod node_id;
mod options;
pub(crate) mod rtt;
mod shell;
mod status;
pub(crate) mod transport;

use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use crate::election::{BeaconCodec, Election, ElectionConfigError, EncodeError};
use crate::runtime::{LeafNode, LeafStatus};
use kinopio::wire::beacon::DropCounts;

pub use mdns::{MdnsAdvertiser, MdnsError};
pub use node_id::{NodeIdError, NodeIdErrorKind, NodeIdentity};
pub use options::{AutoLeafOptions, DEFAULT_INTERFACE_RESCAN};
pub use status::{AutoEvent, AutoLeafStatus, LeaderLeaf};
pub use transport::{
    CandidateInterface, InterfaceFilter, JoinedInterface, MulticastTransport, SendStats, TransportError,
    TransportErrorKind, select_interfaces,
};

use leaf_worker::ManifestIdentity;
use shell::Shell;

/// Events buffered per subscriber before the oldest are dropped.
const EVENT_BUFFER: usize = 1024;

crate::error::error_with_kind! {
    /// Why an auto-leaf could not start.
    #[derive(Debug, thiserror::Error)]
    pub enum AutoLeafError => AutoLeafErrorKind {
        /// The election timers or limits are inconsistent.
        #[error(transparent)]
        Config(#[from] ElectionConfigError),
        /// This node's leader beacon would not fit one datagram: it would never be heard,
        /// and every node would lead.
        #[error(
            "this node's leader beacon would not fit one datagram ({0}); shorten the namespace, the advertised host or the backbone server list"
        )]
        BeaconTooLarge(#[source] EncodeError),
        /// A background step (deriving the beacon key) panicked or was cancelled.
        #[error("the auto-leaf's {step} task failed: {source}")]
        Task {
            /// Which step.
            step: &'static str,
            /// Why.
            #[source]
            source: tokio::task::JoinError,
        },
        /// No node id could be obtained.
        #[error(transparent)]
        NodeId(#[from] NodeIdError),
        /// The multicast sockets could not be set up.
        #[error(transparent)]
        Transport(#[from] TransportError),
        /// The namespace CA could not be derived from the secret.
        #[error(transparent)]
        Trust(#[from] kinopio::trust::TrustError),
    }
}

/// Refuses to start when this node's leader beacon could not be sent (a long namespace,
/// advertised host or backbone list): it would never be heard, and every node would lead.
fn check_beacon_size(
    codec: &mut BeaconCodec,
    node_id: &str,
    namespace: &str,
    advertised_hostname: &str,
    options: &AutoLeafOptions,
) -> Result<(), AutoLeafError> {
    let backbone = crate::config::LeafRemote::from_urls(options.leaf.backbone_server_list())
        .ok()
        .flatten()
        .map(|remote| remote.urls().to_vec())
        .unwrap_or_default();
    let host = crate::net::host_port(advertised_hostname, u16::MAX);
    let urls = [
        format!("wss://{host}"),
        format!("nats://127.0.0.1:{}", u16::MAX),
        format!("http://127.0.0.1:{}", u16::MAX),
        format!("https://{host}/.well-known/kinopio-leader.json"),
    ];
    let urls = [urls[0].as_str(), urls[1].as_str(), urls[2].as_str(), urls[3].as_str()];
    let Ok(advert) = kinopio::wire::manifest::LeaderAdvert::from_urls(
        advertised_hostname,
        urls,
        kinopio::wire::manifest::BridgeState::Connecting,
        backbone,
    ) else {
        // A host that makes no URL: the leaf's start refuses it, naming the option.
        return Ok(());
    };
    let largest = kinopio::wire::beacon::Beacon::leader(node_id, namespace, u64::MAX, Some(99_999.999), &advert);
    codec.encode(&largest, std::time::SystemTime::now()).map(|_| ()).map_err(AutoLeafError::BeaconTooLarge)
}

/// A running auto-leaf node. See the module docs.
///
/// Dropping it without [`stop`](Self::stop) still resigns and stops the leaf in the
/// background (as long as the tokio runtime runs).
#[derive(Debug)]
pub struct AutoLeaf {
    node_id: String,
    namespace: String,
    port: u16,
    stop: watch::Sender<bool>,
    task: tokio::sync::Mutex<Option<JoinHandle<AutoLeafStatus>>>,
    shared: Arc<Mutex<AutoLeafStatus>>,
    leaf_slot: Arc<Mutex<Option<Arc<LeafNode>>>>,
    events: broadcast::Sender<AutoEvent>,
    first_events: Mutex<Option<broadcast::Receiver<AutoEvent>>>,
}

impl AutoLeaf {
    /// Obtains the node id, binds the multicast sockets and starts the election loop.
    /// Returns at once; the node settles for a second, then follows a leader or stands.
    ///
    /// # Errors
    ///
    /// [`AutoLeafError`]: inconsistent election settings, a leader beacon too large for one
    /// datagram, no node id, no multicast membership, or a namespace CA that cannot be
    /// derived from the secret.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: nothing runs until it returns (the sockets and the node id lock are
    /// released when the future is dropped).
    pub async fn start(options: AutoLeafOptions) -> Result<AutoLeaf, AutoLeafError> {
        let mut election_config = options.election.clone();
        election_config.advertised_hostname = options.advertised_hostname();
        election_config.validate()?;
        let (identity, node_id) = match &options.node_id {
            Some(id) => (None, id.clone()),
            None => {
                let identity = NodeIdentity::acquire(&options.effective_node_id_dir())?;
                let id = identity.id().to_owned();
                (Some(identity), id)
            }
        };
        let namespace = election_config.namespace.clone();
        let advertised_hostname = election_config.advertised_hostname.clone();
        let election = Election::new(election_config, node_id.clone(), std::time::Instant::now())?;
        if let Some(weak) = options.secret.as_ref().and_then(|s| s.weakness()) {
            tracing::warn!("{weak}");
        }
        let mut codec = match &options.secret {
            Some(secret) => {
                let (ns, id, secret) = (namespace.clone(), node_id.clone(), secret.clone());
                // The beacon key takes a memory-hard hash to derive.
                tokio::task::spawn_blocking(move || BeaconCodec::secured(&ns, &id, &secret))
                    .await
                    .map_err(|source| AutoLeafError::Task { step: "beacon key derivation", source })?
                    .with_replay_window(options.replay_window)
            }
            None => BeaconCodec::open(&namespace, &node_id),
        };
        check_beacon_size(&mut codec, &node_id, &namespace, &advertised_hostname, &options)?;
        // A secured namespace has one CA, derived from its secret on every member device, so
        // whichever device leads, clients holding the secret (or the CA, once) trust it.
        let leaf_options = match &options.secret {
            Some(secret) => {
                let (ns, bytes) = (namespace.clone(), secret.bytes().to_vec());
                let ca = tokio::task::spawn_blocking(move || kinopio::trust::NamespaceCa::derive(&ns, &bytes))
                    .await
                    .map_err(|e| kinopio::trust::TrustError::Derive(e.to_string()))??;
                options.leaf.clone().namespace_ca(Arc::new(ca))
            }
            None => options.leaf.clone(),
        };
        let transport = MulticastTransport::bind(codec.port(), options.interfaces.clone())?;
        let port = transport.port();
        let joined = transport.joined().to_vec();
        tracing::info!(
            node_id = %node_id,
            namespace = %namespace,
            port,
            secured = codec.is_secured(),
            interfaces = ?joined.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "auto-leaf election started"
        );
        let mdns = options.mdns.then(|| MdnsAdvertiser::new(joined.iter().map(|j| j.name.clone()).collect()));

        let leader_state = Arc::new(RwLock::new(None));
        let election_view = Arc::new(RwLock::new(None));
        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        let runtime_root = options.leaf.runtime_dir.clone();
        let worker = tokio::spawn(leaf_worker::run(
            jobs_rx,
            reports_tx,
            runtime_root,
            ManifestIdentity { node_id: node_id.clone(), namespace: namespace.clone() },
            leader_state.clone(),
            election_view.clone(),
        ));
        let (rtt_tx, rtt_rx) = mpsc::channel(4);
        let rtt_task = rtt::spawn_probe(
            options.leaf.backbone_server_list().to_vec(),
            options.rtt_probe_interval,
            options.rtt_probe_timeout,
            rtt_tx,
        );
        let initial = AutoLeafStatus {
            node_id: node_id.clone(),
            namespace: namespace.clone(),
            port,
            secured: codec.is_secured(),
            election: election.status(),
            max_seen_epoch: 0,
            backbone_rtt_ms: None,
            leaf: None,
            interfaces: joined,
            peers: 0,
            drops: DropCounts::default(),
            sends: SendStats::default(),
            last_leaf_error: None,
            mdns_published: false,
        };
        let shared = Arc::new(Mutex::new(initial));
        let (events, first_events) = broadcast::channel(EVENT_BUFFER);
        let (stop_tx, stop_rx) = watch::channel(false);
        let leaf_slot = Arc::new(Mutex::new(None));
        let shell = Shell {
            election,
            codec,
            transport,
            mdns,
            leaf_options,
            jobs: jobs_tx,
            reports: reports_rx,
            worker,
            rtt: rtt_rx,
            rtt_task,
            stop: stop_rx,
            rescan_every: options.interface_rescan,
            leader_state,
            election_view,
            shared: shared.clone(),
            events: events.clone(),
            identity,
            next_seq: 0,
            pending: None,
            arriving: None,
            leading: None,
            leaf_slot: leaf_slot.clone(),
            drops: DropCounts::default(),
            new_peers: crate::election::flood::NewPeerLimiter::new(),
            last_leaf_error: None,
        };
        let task = tokio::spawn(shell.run());
        Ok(AutoLeaf {
            node_id,
            namespace,
            port,
            stop: stop_tx,
            task: tokio::sync::Mutex::new(Some(task)),
            shared,
            leaf_slot,
            events,
            first_events: Mutex::new(Some(first_events)),
        })
    }

    /// The election node id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The discovery namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The namespace's UDP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The latest status (never blocks on I/O).
    pub fn status(&self) -> AutoLeafStatus {
        match self.shared.lock() {
            Ok(status) => status.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The status of this node's own leaf while it leads (`None` otherwise); never blocks.
    pub fn leaf_status(&self) -> Option<LeafStatus> {
        let slot = self.leaf_slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        slot.as_ref().map(|leaf| leaf.status())
    }

    /// Events: the first call receives every event since start; later calls receive events
    /// from the moment of the call.
    pub fn events(&self) -> broadcast::Receiver<AutoEvent> {
        let first = self.first_events.lock().ok().and_then(|mut slot| slot.take());
        first.unwrap_or_else(|| self.events.subscribe())
    }

    /// Resigns (followers elect at once), stops the leaf, withdraws mDNS, and returns the
    /// final status. Idempotent: later calls return the current status at once.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe in effect: the stop is signalled first, so the background task resigns
    /// and stops the leaf even if this future is dropped before it finishes.
    pub async fn stop(&self) -> AutoLeafStatus {
        let _ = self.stop.send(true);
        let task = self.task.lock().await.take();
        match task {
            Some(task) => match task.await {
                Ok(status) => status,
                Err(err) => {
                    tracing::warn!(error = %err, "the auto-leaf loop ended abnormally");
                    self.status()
                }
            },
            None => self.status(),
        }
    }
}

impl Drop for AutoLeaf {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
