//! The election's I/O shell: one tokio task that feeds the pure [`Election`] with received
//! beacons, timer ticks, RTT measurements and leaf reports, and carries out its actions.
//!
//! The loop only does socket I/O and `handle`: decoding a datagram, sending a beacon
//! (non-blocking), registering an mDNS record (a message to the mDNS thread) and queueing a
//! leaf job take microseconds. Leaf starts and stops run in the leaf worker
//! ([`super::leaf_worker`]), RTT probes in their own task ([`super::rtt`]); both report back
//! through channels. Timers come from [`Election::poll_timeout`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use crate::election::{Action, BeaconCodec, Election, Input, Status};
use crate::runtime::{LeafNode, LeafOptions};
use kinopio::wire::beacon::{BeaconError, DropCounts};

use super::leaf_worker::{LeaderState, LeafJob, LeafReport, SharedElectionView, SharedLeaderState, advert_of};
use super::mdns::MdnsAdvertiser;
use super::node_id::NodeIdentity;
use super::status::{AutoEvent, AutoLeafStatus, LeaderLeaf};
use super::transport::{MulticastTransport, RECEIVE_BUFFER_BYTES};

/// How long the shutdown waits for the leaf worker to stop the leaf, beyond its stop grace.
const WORKER_STOP_SLACK: Duration = Duration::from_secs(15);

/// Everything the loop owns.
pub(crate) struct Shell {
    pub election: Election,
    pub codec: BeaconCodec,
    pub transport: MulticastTransport,
    pub mdns: Option<MdnsAdvertiser>,
    pub leaf_options: LeafOptions,
    pub jobs: mpsc::UnboundedSender<LeafJob>,
    pub reports: mpsc::UnboundedReceiver<LeafReport>,
    pub worker: JoinHandle<()>,
    pub rtt: mpsc::Receiver<Option<f64>>,
    pub rtt_task: JoinHandle<()>,
    pub stop: watch::Receiver<bool>,
    pub rescan_every: Duration,
    pub leader_state: SharedLeaderState,
    /// The members the status page of this node's leaf shows.
    pub election_view: SharedElectionView,
    pub shared: Arc<Mutex<AutoLeafStatus>>,
    pub events: broadcast::Sender<AutoEvent>,
    /// Holds the node id's lock for as long as the loop runs.
    pub identity: Option<NodeIdentity>,
    pub next_seq: u64,
    /// The leaf start in flight: (seq, epoch).
    pub pending: Option<(u64, u64)>,
    /// A leaf that just reported started, until the machine accepts or refuses it.
    pub arriving: Option<(u64, Arc<LeafNode>)>,
    /// The leaf the machine leads with.
    pub leading: Option<(u64, Arc<LeafNode>)>,
    /// `leading`'s leaf, for [`AutoLeaf::leaf_status`](super::AutoLeaf::leaf_status).
    pub leaf_slot: Arc<Mutex<Option<Arc<LeafNode>>>>,
    pub drops: DropCounts,
    /// Limits the new node ids one source address may introduce (fake-candidate floods).
    pub new_peers: crate::election::flood::NewPeerLimiter,
    pub last_leaf_error: Option<String>,
}

impl std::fmt::Debug for Shell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shell").field("node_id", &self.election.node_id()).finish_non_exhaustive()
    }
}

impl Shell {
    /// Runs until asked to stop (or the handle is dropped), then resigns, stops the leaf,
    /// withdraws mDNS and returns the final status.
    pub(super) async fn run(mut self) -> AutoLeafStatus {
        let mut buf = vec![0u8; RECEIVE_BUFFER_BYTES];
        let mut rescan = tokio::time::interval_at(tokio::time::Instant::now() + self.rescan_every, self.rescan_every);
        rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut receive_errors: u64 = 0;
        self.step(Input::Tick);
        while let Some(deadline) = self.election.poll_timeout() {
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline));
            tokio::select! {
                changed = self.stop.changed() => {
                    if changed.is_err() || *self.stop.borrow() {
                        break;
                    }
                }
                received = self.transport.recv(&mut buf) => match received {
                    Ok((len, from)) => {
                        let datagram = buf.get(..len).unwrap_or_default();
                        self.on_datagram(datagram, from);
                        // A flood of datagrams never delays a due heartbeat.
                        if Instant::now() >= deadline {
                            self.step(Input::Tick);
                        }
                    }
                    Err(err) => {
                        receive_errors = receive_errors.saturating_add(1);
                        if receive_errors.is_power_of_two() {
                            tracing::warn!(error = %err, count = receive_errors, "election receive error");
                        }
                    }
                },
                Some(report) = self.reports.recv() => self.on_report(report),
                Some(rtt) = self.rtt.recv() => self.step(Input::BackboneRtt(rtt)),
                _ = rescan.tick() => self.rescan(),
                () = sleep => self.step(Input::Tick),
            }
        }
        self.shutdown().await
    }

    fn on_datagram(&mut self, datagram: &[u8], from: SocketAddr) {
        let decoded = self.codec.decode(datagram, SystemTime::now()).and_then(|beacon| {
            if self.election.knows_peer(&beacon.node_id) || self.new_peers.admit(from.ip(), Instant::now()) {
                Ok(beacon)
            } else {
                Err(BeaconError::RateLimited { source_addr: from.ip().to_string(), node_id: beacon.node_id })
            }
        });
        match decoded {
            Ok(beacon) => self.step(Input::beacon(beacon, Instant::now())),
            Err(err) => {
                self.drops.record(&err);
                if !err.is_benign() {
                    tracing::debug!(%from, error = %err, "election datagram dropped");
                }
                self.with_shared(|status| status.drops = self.drops.clone());
            }
        }
    }

    fn on_report(&mut self, report: LeafReport) {
        match report {
            LeafReport::Started { seq, epoch, leaf } => {
                if self.pending != Some((seq, epoch)) {
                    // Abandoned meanwhile; the worker already has the stop job.
                    return;
                }
                self.pending = None;
                let advert = advert_of(&leaf);
                self.arriving = Some((epoch, leaf));
                self.step(Input::LeafStarted { epoch, advert });
            }
            LeafReport::Failed { seq, epoch, reason } => {
                if self.pending != Some((seq, epoch)) {
                    return;
                }
                self.pending = None;
                tracing::warn!(epoch, %reason, "leaf start failed");
                self.last_leaf_error = Some(reason.clone());
                self.step(Input::LeafFailed { epoch, reason });
            }
            LeafReport::Updated { epoch, advert } => {
                if self.leading.as_ref().is_some_and(|(e, _)| *e == epoch) {
                    self.step(Input::LeafUpdated { epoch, advert: *advert });
                }
            }
            LeafReport::Died { epoch, reason } => {
                if self.leading.as_ref().is_some_and(|(e, _)| *e == epoch) {
                    tracing::warn!(epoch, %reason, "the leaf's nats-server is dead and was not restarted");
                    self.last_leaf_error = Some(reason.clone());
                    self.step(Input::LeafDied { epoch, reason });
                }
            }
        }
    }

    fn rescan(&mut self) {
        if self.transport.rescan() {
            let joined = self.transport.joined().to_vec();
            if let Some(mdns) = &mut self.mdns {
                mdns.set_interfaces(joined.iter().map(|j| j.name.clone()).collect());
            }
            self.with_shared(|status| status.interfaces = joined.clone());
            let _ = self.events.send(AutoEvent::InterfacesChanged(joined));
        }
    }

    /// One input through the machine, then its actions.
    fn step(&mut self, input: Input) {
        let actions = self.election.handle(Instant::now(), input);
        self.reconcile_leading();
        for action in actions {
            self.execute(action);
        }
        let rtt = self.election.backbone_rtt_ms();
        let peers = self.election.peers().count();
        let sends = self.transport.stats();
        self.update_election_view();
        self.with_shared(|status| {
            status.backbone_rtt_ms = rtt;
            status.peers = peers;
            status.sends = sends;
        });
    }

    /// What the status page shows of the election: this node and the peers it hears.
    fn update_election_view(&self) {
        let own = self.election.heartbeat();
        let member = |beacon: &kinopio::wire::beacon::Beacon, this_node: bool| crate::status_page::Member {
            node_id: beacon.node_id.clone(),
            role: beacon.candidate_role.clone(),
            epoch: beacon.leader_epoch,
            backbone_rtt_ms: beacon.backbone_rtt_ms,
            this_node,
        };
        let mut members = vec![member(&own, true)];
        members.extend(self.election.peers().map(|peer| member(peer, false)));
        let view = crate::status_page::ElectionView {
            namespace: own.discovery_namespace.clone(),
            secured: self.codec.is_secured(),
            members,
        };
        *self.election_view.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(view);
    }

    /// Keeps `leading` and the manifest's shared state in line with the machine.
    fn reconcile_leading(&mut self) {
        let epoch = self.election.leading_epoch();
        if let Some(arriving) = self.arriving.take()
            && Some(arriving.0) == epoch
        {
            self.leading = Some(arriving);
        }
        if self.leading.as_ref().map(|(e, _)| *e) != epoch {
            self.leading = None;
        }
        self.sync_leaf_slot();
        let state = self
            .leading
            .as_ref()
            .map(|(epoch, _)| LeaderState { epoch: *epoch, rtt_ms: self.election.backbone_rtt_ms() });
        let mut slot = self.leader_state.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if *slot != state {
            *slot = state;
        }
    }

    fn execute(&mut self, action: Action) {
        match action {
            Action::SendBeacon(beacon) => match self.codec.encode(&beacon, SystemTime::now()) {
                Ok(datagram) => self.transport.send(&datagram),
                Err(err) => tracing::warn!(error = %err, "beacon not sent"),
            },
            Action::StartLeaf { epoch } => {
                if let Some((_, old_epoch)) = self.pending.take() {
                    let _ = self.jobs.send(LeafJob::Stop { epoch: old_epoch });
                }
                self.next_seq += 1;
                let seq = self.next_seq;
                self.pending = Some((seq, epoch));
                let options = Box::new(self.leaf_options.clone());
                if self.jobs.send(LeafJob::Start { seq, epoch, options }).is_err() {
                    tracing::error!("the leaf worker is gone; cannot start the leaf");
                }
            }
            Action::StopLeaf { epoch } => {
                if self.pending.is_some_and(|(_, e)| e == epoch) {
                    self.pending = None;
                }
                if self.leading.as_ref().is_some_and(|(e, _)| *e == epoch) {
                    self.leading = None;
                    self.sync_leaf_slot();
                }
                let _ = self.jobs.send(LeafJob::Stop { epoch });
            }
            Action::PublishMdns(advert) => {
                if let Some(mdns) = &mut self.mdns
                    && let Err(err) = mdns.publish(&advert)
                {
                    tracing::warn!(error = %err, "mDNS leader record not published");
                }
                self.sync_mdns();
            }
            Action::WithdrawMdns => {
                if let Some(mdns) = &mut self.mdns {
                    mdns.withdraw();
                }
                self.sync_mdns();
            }
            Action::StatusChanged(status) => {
                tracing::info!(%status, "election status");
                let snapshot = self.snapshot(status);
                if let Ok(mut shared) = self.shared.lock() {
                    *shared = snapshot.clone();
                }
                let _ = self.events.send(AutoEvent::StatusChanged(Box::new(snapshot)));
            }
        }
    }

    fn sync_leaf_slot(&self) {
        let leaf = self.leading.as_ref().map(|(_, leaf)| leaf.clone());
        let mut slot = self.leaf_slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let same = match (&*slot, &leaf) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same {
            *slot = leaf;
        }
    }

    fn sync_mdns(&mut self) {
        let published = self.mdns.as_ref().is_some_and(MdnsAdvertiser::is_published);
        self.with_shared(|status| status.mdns_published = published);
    }

    /// The full status for an election status.
    fn snapshot(&self, election: Status) -> AutoLeafStatus {
        let leaf = self.leading.as_ref().map(|(epoch, leaf)| LeaderLeaf {
            epoch: *epoch,
            urls: leaf.urls().clone(),
            ca_cert_file: leaf.ca_cert_file().to_path_buf(),
        });
        AutoLeafStatus {
            node_id: self.election.node_id().to_owned(),
            namespace: self.election.config().namespace.clone(),
            port: self.transport.port(),
            secured: self.codec.is_secured(),
            election,
            max_seen_epoch: self.election.max_seen_epoch(),
            backbone_rtt_ms: self.election.backbone_rtt_ms(),
            leaf,
            interfaces: self.transport.joined().to_vec(),
            peers: self.election.peers().count(),
            drops: self.drops.clone(),
            sends: self.transport.stats(),
            last_leaf_error: self.last_leaf_error.clone(),
            mdns_published: self.mdns.as_ref().is_some_and(MdnsAdvertiser::is_published),
        }
    }

    fn with_shared(&self, update: impl FnOnce(&mut AutoLeafStatus)) {
        if let Ok(mut shared) = self.shared.lock() {
            update(&mut shared);
        }
    }

    /// Resign (the machine's resign beacons go out now), stop the leaf, withdraw mDNS.
    async fn shutdown(mut self) -> AutoLeafStatus {
        self.step(Input::Stop);
        self.rtt_task.abort();
        // Closing the job queue makes the worker stop every leaf and end.
        let (closed, _) = mpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.jobs, closed));
        let budget = self.leaf_options.timings.stop_grace + WORKER_STOP_SLACK;
        if tokio::time::timeout(budget, &mut self.worker).await.is_err() {
            tracing::warn!("the leaf did not stop in time; abandoning it (nats-server is killed on exit)");
            self.worker.abort();
        }
        self.leading = None;
        self.arriving = None;
        self.sync_leaf_slot();
        if let Some(mdns) = self.mdns.take() {
            mdns.shutdown().await;
        }
        let status = self.snapshot(self.election.status());
        if let Ok(mut shared) = self.shared.lock() {
            *shared = status.clone();
        }
        let _ = self.events.send(AutoEvent::Stopped(Box::new(status.clone())));
        tracing::info!(node_id = %status.node_id, "auto-leaf stopped");
        drop(self.identity.take());
        status
    }
}
