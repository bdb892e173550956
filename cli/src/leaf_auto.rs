//! `kinopio leaf auto`: take part in the LAN election of a discovery namespace, run the leaf
//! while elected, print one line per meaningful change (state, role, leader, epoch), and on
//! SIGINT or SIGTERM resign, stop the leaf and exit 0.

use std::time::Duration;

use clap::Args;
use kinopio::wire::beacon::MULTICAST_GROUP;
use kinopio_leaf::auto::{AutoEvent, AutoLeaf, AutoLeafOptions, AutoLeafStatus, InterfaceFilter, JoinedInterface};
use kinopio_leaf::election::NamespaceSecret;
use serde_json::{Map, Value as Json, json};
use tokio::sync::broadcast::error::RecvError;

use crate::leaf_common::{StartArgs, auto_failure};
use crate::output::{self, Failure};
use crate::signals;

/// Options of `kinopio leaf auto`: those of `leaf start` plus the election's.
#[derive(Debug, Args)]
pub(crate) struct AutoArgs {
    /// Discovery namespace: the devices that share it elect one leader among themselves
    /// (any string; it also selects the UDP port 44710 + crc32(namespace) % 1000).
    #[arg(long, value_name = "NAME")]
    discovery_namespace: String,
    /// How long followers wait after the leader's last beacon before electing a new one (never
    /// less than the 2 s peer expiry). A leader that stops gracefully resigns, and followers
    /// elect at once.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    leader_missing_grace_ms: u64,
    /// Shared secret of a secured namespace: beacons are signed (HMAC-SHA-256) and
    /// unsigned, forged or replayed ones are ignored, so strangers on the LAN cannot take
    /// over. Every member needs the same secret; kinopio-hub 0.1.1 nodes cannot join.
    /// Prefer the environment variable (command lines are visible to other users).
    #[arg(long, value_name = "SECRET", env = "KINOPIO_NAMESPACE_SECRET", hide_env_values = true)]
    namespace_secret: Option<String>,
    /// Network interface (name like eth0, an IPv4 address, or lo for loopback) to send and
    /// receive election beacons and mDNS on; repeat for several [default: every up,
    /// multicast-capable IPv4 interface except loopback, link-local, container bridges,
    /// tunnels and VPNs; loopback when there is none].
    #[arg(long = "interface", value_name = "NAME|IP")]
    interfaces: Vec<String>,
    /// Interface never to use (name or IPv4 address); repeatable.
    #[arg(long = "exclude-interface", value_name = "NAME|IP")]
    exclude_interfaces: Vec<String>,
    /// Do not advertise the leader over mDNS (_kinopio-hub._tcp.local.).
    #[arg(long)]
    no_mdns: bool,
    /// Election tuning: time between election beacons in ms, at most 500 so kinopio-hub
    /// 0.1.1 peers (which forget a peer after 2 s) see several per lease [default: 500].
    #[arg(long, value_name = "MS")]
    heartbeat_ms: Option<u64>,
    /// Election tuning: how long a node that sees no leader after starting waits before
    /// electing one, in ms [default: 1000].
    #[arg(long, value_name = "MS")]
    settle_ms: Option<u64>,
    /// Election tuning: time between round-trip probes of the backbone servers, in ms
    /// (nodes with a better backbone RTT rank higher) [default: 5000].
    #[arg(long, value_name = "MS")]
    rtt_probe_ms: Option<u64>,
    #[command(flatten)]
    leaf: StartArgs,
}

impl AutoArgs {
    fn options(&self) -> Result<AutoLeafOptions, Failure> {
        let json = self.leaf.json;
        let mut options = AutoLeafOptions::new(self.discovery_namespace.clone())
            .leaf(self.leaf.options())
            .leader_missing_grace(Duration::from_millis(self.leader_missing_grace_ms))
            .interfaces(InterfaceFilter { include: self.interfaces.clone(), exclude: self.exclude_interfaces.clone() })
            .mdns(!self.no_mdns);
        if let Some(secret) = &self.namespace_secret {
            let secret = NamespaceSecret::new(secret.as_bytes().to_vec()).map_err(|err| {
                Failure::new(2, "usage", format!("--namespace-secret / KINOPIO_NAMESPACE_SECRET: {err}"), json)
            })?;
            options = options.namespace_secret(secret);
        }
        if let Some(ms) = self.heartbeat_ms {
            options = options.election(|config| {
                config.heartbeat_interval = Duration::from_millis(ms);
                config.min_beacon_gap = config.min_beacon_gap.min(config.heartbeat_interval);
            });
        }
        if let Some(ms) = self.settle_ms {
            options = options.election(|config| config.settle = Duration::from_millis(ms));
        }
        if let Some(ms) = self.rtt_probe_ms {
            options = options.rtt_probe_interval(Duration::from_millis(ms.max(1)));
        }
        Ok(options)
    }
}

/// Runs `kinopio leaf auto` until SIGINT or SIGTERM.
pub(crate) async fn run(args: AutoArgs) -> Result<(), Failure> {
    let json = args.leaf.json;
    // Installed before anything starts, so an early signal is not lost.
    let shutdown = signals::shutdown();
    tokio::pin!(shutdown);
    let options = args.options()?;
    let node = AutoLeaf::start(options).await.map_err(|err| auto_failure(&err, json))?;
    print_started(&node.status(), json);
    let mut events = node.events();
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            event = events.recv() => match event {
                Ok(AutoEvent::StatusChanged(status)) => print_status(&status, json),
                Ok(AutoEvent::InterfacesChanged(joined)) => print_interfaces(node.node_id(), &joined, json),
                Ok(AutoEvent::Stopped(_)) | Err(RecvError::Closed) => break,
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
            },
        }
    }
    if !json {
        output::text("stopping: resigning, stopping the leaf, withdrawing mDNS...");
    }
    let last = tokio::select! {
        status = node.stop() => status,
        () = signals::shutdown() => {
            // A second signal: stop waiting; nats-server is killed when the process exits.
            if !json {
                output::text("second signal: exiting at once");
            }
            node.status()
        }
    };
    print_stopped(&last, json);
    Ok(())
}

fn interfaces_json(joined: &[JoinedInterface]) -> Json {
    Json::Array(joined.iter().map(|j| json!({"name": j.name, "ip": j.ip.to_string()})).collect())
}

fn interfaces_text(joined: &[JoinedInterface]) -> String {
    joined.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn print_started(status: &AutoLeafStatus, json: bool) {
    if json {
        output::line(&json!({
            "mode": "leaf-auto",
            "event": "started",
            "nodeId": status.node_id,
            "namespace": status.namespace,
            "group": MULTICAST_GROUP.to_string(),
            "port": status.port,
            "secured": status.secured,
            "interfaces": interfaces_json(&status.interfaces),
        }));
        return;
    }
    output::text(&format!(
        "auto leaf started: node {}, namespace {:?} ({}), multicast {}:{} on {}",
        status.node_id,
        status.namespace,
        if status.secured { "secured" } else { "open" },
        MULTICAST_GROUP,
        status.port,
        interfaces_text(&status.interfaces)
    ));
}

/// The `--json` line of a status change.
fn status_json(status: &AutoLeafStatus) -> Json {
    let mut line = Map::new();
    line.insert("mode".into(), json!("leaf-auto"));
    line.insert("event".into(), json!("status"));
    line.insert("nodeId".into(), json!(status.node_id));
    line.insert("namespace".into(), json!(status.namespace));
    line.insert("state".into(), json!(status.election.state.as_str()));
    line.insert("role".into(), json!(status.election.role.as_str()));
    line.insert("eligible".into(), json!(status.election.eligible));
    line.insert("epoch".into(), json!(status.max_seen_epoch));
    let leader = status.election.leader.as_ref().map_or(Json::Null, |leader| {
        json!({
            "nodeId": leader.node_id,
            "epoch": leader.epoch,
            "wssUrl": leader.wss_url,
            "discoveryUrl": leader.discovery_url,
            "isSelf": leader.is_self,
        })
    });
    line.insert("leader".into(), leader);
    line.insert("backboneRttMs".into(), json!(status.backbone_rtt_ms));
    line.insert("peers".into(), json!(status.peers));
    if let Some(leaf) = &status.leaf {
        line.insert("clientUrl".into(), json!(leaf.urls.client_url));
        line.insert("wssUrl".into(), json!(leaf.urls.wss_url));
        line.insert("discoveryUrl".into(), json!(leaf.urls.discovery_url));
        line.insert("monitorUrl".into(), json!(leaf.urls.monitor_url));
        line.insert("caCertFile".into(), json!(leaf.ca_cert_file.display().to_string()));
    }
    if let Some(error) = &status.last_leaf_error {
        line.insert("lastLeafError".into(), json!(error));
    }
    Json::Object(line)
}

fn print_status(status: &AutoLeafStatus, json: bool) {
    if json {
        output::line(&status_json(status));
        return;
    }
    let mut text = format!("auto leaf: {}", status.election);
    if let Some(leaf) = &status.leaf {
        text.push_str(&format!("; discovery {}; CA {}", leaf.urls.discovery_url, leaf.ca_cert_file.display()));
    }
    if !status.election.eligible
        && let Some(error) = &status.last_leaf_error
    {
        text.push_str(&format!(" (last leaf error: {error})"));
    }
    output::text(&text);
}

fn print_interfaces(node_id: &str, joined: &[JoinedInterface], json: bool) {
    if json {
        output::line(&json!({
            "mode": "leaf-auto",
            "event": "interfaces",
            "nodeId": node_id,
            "interfaces": interfaces_json(joined),
        }));
    } else {
        output::text(&format!("auto leaf: multicast interfaces now {}", interfaces_text(joined)));
    }
}

fn print_stopped(status: &AutoLeafStatus, json: bool) {
    let drops: Map<String, Json> = status.drops.iter().map(|(kind, n)| (kind.as_str().to_owned(), json!(n))).collect();
    if json {
        output::line(&json!({
            "mode": "leaf-auto",
            "event": "stopped",
            "nodeId": status.node_id,
            "state": status.election.state.as_str(),
            "epoch": status.max_seen_epoch,
            "drops": drops,
            "sent": status.sends.sent,
        }));
        return;
    }
    let dropped: Vec<String> = status.drops.iter().map(|(kind, n)| format!("{} {n}", kind.as_str())).collect();
    output::text(&format!(
        "auto leaf stopped (datagrams dropped: {})",
        if dropped.is_empty() { "none".to_owned() } else { dropped.join(", ") }
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use kinopio::wire::beacon::{DropCounts, Role, State};
    use kinopio_leaf::election::{LeaderSummary, Status};

    #[test]
    fn status_lines_carry_state_role_leader_and_epoch() {
        let status = AutoLeafStatus {
            node_id: "kinopio-a-1".into(),
            namespace: "studio".into(),
            port: 44716,
            secured: false,
            election: Status {
                state: State::FollowingLeader,
                role: Role::Follower,
                leader: Some(LeaderSummary {
                    node_id: "kinopio-b-2".into(),
                    epoch: 3,
                    wss_url: Some("wss://10.0.0.2:4443".into()),
                    discovery_url: None,
                    is_self: false,
                }),
                eligible: true,
            },
            max_seen_epoch: 3,
            backbone_rtt_ms: None,
            leaf: None,
            interfaces: vec![],
            peers: 2,
            drops: DropCounts::default(),
            sends: Default::default(),
            last_leaf_error: None,
            mdns_published: false,
        };
        let line = status_json(&status);
        assert_eq!(line["state"], "following-leader");
        assert_eq!(line["role"], "follower");
        assert_eq!(line["leader"]["nodeId"], "kinopio-b-2");
        assert_eq!(line["epoch"], 3);
        assert!(line.get("caCertFile").is_none());
    }
}
