//! What a running leaf reports: [`LeafStatus`] (serialisable, camelCase), the pure rules
//! that derive `bridgeState` from nats-server's `/leafz`, and the list of meaningful
//! differences between two statuses ([`status_changes`]) that the CLI prints.

use std::path::PathBuf;

use serde::{Serialize, Serializer};
use serde_json::{Value, json};

use crate::binary::ResolvedBinary;
use crate::tls::{TlsMaterial, TrustState};
use kinopio::wire::manifest::BridgeState;

/// Lifecycle of a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum LeafState {
    /// nats-server is up (it may still be unhealthy; see `serverReady`).
    Running,
    /// nats-server exited; a restart is scheduled or under way.
    Restarting,
    /// nats-server kept exiting and the restart budget is spent; only stopping is left.
    Failed,
    /// `stop()` is under way.
    Stopping,
    /// Stopped; nothing runs.
    Stopped,
}

impl LeafState {
    /// The camelCase name.
    pub fn as_str(self) -> &'static str {
        match self {
            LeafState::Running => "running",
            LeafState::Restarting => "restarting",
            LeafState::Failed => "failed",
            LeafState::Stopping => "stopping",
            LeafState::Stopped => "stopped",
        }
    }
}

/// One listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    /// The URL clients use.
    pub url: String,
    /// The bind address.
    pub host: String,
    /// The port.
    pub port: u16,
    /// True when the last check succeeded (TCP accept; `/healthz` reachable for the
    /// monitor; serving for discovery).
    pub ready: bool,
}

/// State of the CA trust-store installation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrustStatus {
    /// Running in the background.
    Pending,
    /// Done.
    Done(TrustState),
}

impl Serialize for TrustStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            TrustStatus::Pending => json!({"state": "pending"}).serialize(serializer),
            TrustStatus::Done(state) => state.serialize(serializer),
        }
    }
}

/// TLS material and trust state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsStatus {
    /// Files, source (`generated`/`supplied`), CA fingerprint, certificate expiry.
    #[serde(flatten)]
    pub material: TlsMaterial,
    /// Trust-store installation of the generated CA (`external` for supplied files).
    pub trust: TrustStatus,
    /// How often the generated certificate was renewed while running.
    pub renewals: u32,
}

/// A snapshot of a leaf, kept up to date by a background task; reading it never blocks.
///
/// It holds no timestamps of its own, so two snapshots differ only when something
/// happened (a probe result, a restart, a renewal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeafStatus {
    /// Lifecycle.
    pub state: LeafState,
    /// This start's node id (32 hex characters).
    pub node_id: String,
    /// nats-server `server_name`.
    pub server_name: String,
    /// Plain NATS client listener (loopback).
    pub client: ListenerStatus,
    /// WSS listener (LAN).
    pub websocket: ListenerStatus,
    /// HTTPS discovery server (LAN).
    pub discovery: ListenerStatus,
    /// nats-server monitor (loopback).
    pub monitor: ListenerStatus,
    /// Bridge to the backbone (see [`bridge_state`]).
    pub bridge_state: BridgeState,
    /// The backbone server the bridge is connected to (its `server_name`, from `/leafz`)
    /// while `bridgeState` is `connected`, else `None`: when a backbone node dies, this
    /// names the node the bridge moved to.
    pub bridge_server: Option<String>,
    /// Backbone server URLs as configured.
    pub backbone_servers: Vec<String>,
    /// nats-server is alive and its `/healthz` answered 200.
    pub server_ready: bool,
    /// nats-server's pid while it runs.
    pub process_id: Option<u32>,
    /// How often nats-server was restarted after exiting.
    pub restarts: u32,
    /// The last problem (an unexpected exit, a failed restart or renewal).
    pub last_error: Option<String>,
    /// TLS material and trust.
    pub tls: TlsStatus,
    /// The nats-server binary.
    pub binary: ResolvedBinary,
    /// The runtime directory.
    pub runtime_dir: PathBuf,
    /// nats-server's log file.
    pub log_file: PathBuf,
}

/// True when a `/leafz` document shows a leafnode connection: a non-empty list under
/// `leafs`, `leaf_nodes` or `remote_leafs`, or a positive number under `leafnodes`,
/// `num_leafs` or `num_leaf_nodes` (the reference's rule, [Leaf monitor fields](kinopio::wire::protocol#leaf-monitor-fields)). Pure.
pub fn leafz_connected(leafz: &Value) -> bool {
    let listed = ["leafs", "leaf_nodes", "remote_leafs"]
        .iter()
        .any(|key| leafz.get(key).and_then(Value::as_array).is_some_and(|list| !list.is_empty()));
    let counted = ["leafnodes", "num_leafs", "num_leaf_nodes"]
        .iter()
        .any(|key| leafz.get(key).and_then(Value::as_f64).is_some_and(|n| n > 0.0));
    listed || counted
}

/// The name of the server at the other end of the first leafnode connection a `/leafz`
/// document lists (`leafs[0].name`), if any. Pure.
pub fn leafz_remote_name(leafz: &Value) -> Option<String> {
    ["leafs", "leaf_nodes", "remote_leafs"]
        .iter()
        .filter_map(|key| leafz.get(key).and_then(Value::as_array))
        .flatten()
        .find_map(|leaf| leaf.get("name").and_then(Value::as_str).filter(|name| !name.is_empty()))
        .map(str::to_owned)
}

/// The bridge state, checked in order: `stopped` when stopping/stopped, `disabled`
/// without backbone servers, `error` when nats-server is not running, `connecting` while
/// it is not ready or `/leafz` is unknown or shows no connection, else `connected`. Pure.
pub fn bridge_state(
    state: LeafState,
    has_backbone: bool,
    process_running: bool,
    server_ready: bool,
    leafz: Option<&Value>,
) -> BridgeState {
    if matches!(state, LeafState::Stopping | LeafState::Stopped) {
        return BridgeState::Stopped;
    }
    if !has_backbone {
        return BridgeState::Disabled;
    }
    if !process_running {
        return BridgeState::Error;
    }
    if server_ready && leafz.is_some_and(leafz_connected) { BridgeState::Connected } else { BridgeState::Connecting }
}

/// One meaningful difference between two statuses.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusChange {
    /// The field (camelCase path, e.g. `bridgeState`, `websocket.ready`).
    pub field: &'static str,
    /// Old value.
    pub from: Value,
    /// New value.
    pub to: Value,
}

/// The differences worth telling a person about: lifecycle, bridge (state and the backbone
/// server it is connected to), readiness of the
/// server and each listener, pid, restarts, last error, certificate expiry and trust. Pure.
pub fn status_changes(old: &LeafStatus, new: &LeafStatus) -> Vec<StatusChange> {
    let pairs: [(&'static str, Value, Value); 13] = [
        ("state", json!(old.state), json!(new.state)),
        ("bridgeState", json!(old.bridge_state), json!(new.bridge_state)),
        ("bridgeServer", json!(old.bridge_server), json!(new.bridge_server)),
        ("serverReady", json!(old.server_ready), json!(new.server_ready)),
        ("processId", json!(old.process_id), json!(new.process_id)),
        ("restarts", json!(old.restarts), json!(new.restarts)),
        ("client.ready", json!(old.client.ready), json!(new.client.ready)),
        ("websocket.ready", json!(old.websocket.ready), json!(new.websocket.ready)),
        ("discovery.ready", json!(old.discovery.ready), json!(new.discovery.ready)),
        ("monitor.ready", json!(old.monitor.ready), json!(new.monitor.ready)),
        ("lastError", json!(old.last_error), json!(new.last_error)),
        (
            "tls.notAfter",
            json!(old.tls.material).get("notAfter").cloned().unwrap_or_default(),
            json!(new.tls.material).get("notAfter").cloned().unwrap_or_default(),
        ),
        ("tls.trust", json!(old.tls.trust), json!(new.tls.trust)),
    ];
    pairs
        .into_iter()
        .filter(|(_, from, to)| from != to)
        .map(|(field, from, to)| StatusChange { field, from, to })
        .collect()
}

/// The URLs a leaf is reached at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeafUrls {
    /// `nats://127.0.0.1:<port>` (this machine only).
    pub client_url: String,
    /// `wss://<advertised host>:<port>` (the LAN).
    pub wss_url: String,
    /// `https://<advertised host>:<port>/.well-known/kinopio-leader.json`.
    pub discovery_url: String,
    /// `http://127.0.0.1:<port>` (this machine only).
    pub monitor_url: String,
    /// The host in `wssUrl` and `discoveryUrl`.
    pub advertised_host: String,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::binary::BinarySource;
    use crate::tls::TlsSource;

    fn listener(port: u16) -> ListenerStatus {
        ListenerStatus { url: format!("nats://127.0.0.1:{port}"), host: "127.0.0.1".into(), port, ready: true }
    }

    fn status() -> LeafStatus {
        sample()
    }

    /// A running leaf's status with made-up values (for tests of this module's users).
    pub(crate) fn sample() -> LeafStatus {
        LeafStatus {
            state: LeafState::Running,
            node_id: "a".repeat(32),
            server_name: "kinopio-leaf-aaaaaaaa".into(),
            client: listener(1),
            websocket: listener(2),
            discovery: listener(3),
            monitor: listener(4),
            bridge_state: BridgeState::Connecting,
            bridge_server: None,
            backbone_servers: vec!["nats://127.0.0.1:7422".into()],
            server_ready: true,
            process_id: Some(42),
            restarts: 0,
            last_error: None,
            tls: TlsStatus {
                material: TlsMaterial {
                    source: TlsSource::Generated,
                    cert_file: "/r/leaf-cert.pem".into(),
                    key_file: "/r/leaf-key.pem".into(),
                    ca_file: "/c/tls/ca-cert.pem".into(),
                    ca_cert_sha256: "00".repeat(32),
                    not_after: time::macros::datetime!(2026-11-29 00:00 UTC),
                },
                trust: TrustStatus::Pending,
                renewals: 0,
            },
            binary: ResolvedBinary {
                path: "/bin/nats-server".into(),
                version: "2.12.7".into(),
                source: BinarySource::Explicit,
            },
            runtime_dir: "/r".into(),
            log_file: "/r/leaf-nats.log".into(),
        }
    }

    #[test]
    fn leafz_shapes_of_the_reference() {
        assert!(leafz_connected(&json!({"leafnodes": 1, "leafs": [{"name": "hub"}]})));
        assert!(leafz_connected(&json!({"leafs": [{}]})));
        assert!(leafz_connected(&json!({"num_leafs": 2})));
        assert!(leafz_connected(&json!({"remote_leafs": [1]})));
        assert!(!leafz_connected(&json!({"leafnodes": 0, "leafs": []})));
        assert!(!leafz_connected(&json!({})));
        assert!(!leafz_connected(&json!({"leafnodes": "1"})));
    }

    #[test]
    fn leafz_names_the_backbone_server_of_the_bridge() {
        let up = json!({"leafnodes": 1, "leafs": [{"name": "backbone-2", "ip": "127.0.0.1", "port": 7422}]});
        assert_eq!(leafz_remote_name(&up).as_deref(), Some("backbone-2"));
        assert_eq!(leafz_remote_name(&json!({"leafnodes": 0, "leafs": []})), None);
        assert_eq!(leafz_remote_name(&json!({"leafs": [{"name": ""}, {"name": 3}]})), None);
        assert_eq!(leafz_remote_name(&json!({})), None);
    }

    #[test]
    fn bridge_state_rules_in_order() {
        let up = json!({"leafnodes": 1, "leafs": [{}]});
        let down = json!({"leafnodes": 0, "leafs": []});
        use LeafState::*;
        assert_eq!(bridge_state(Stopped, true, false, false, None), BridgeState::Stopped);
        assert_eq!(bridge_state(Stopping, true, true, true, Some(&up)), BridgeState::Stopped);
        assert_eq!(bridge_state(Running, false, true, true, Some(&up)), BridgeState::Disabled);
        assert_eq!(bridge_state(Restarting, true, false, false, None), BridgeState::Error);
        assert_eq!(bridge_state(Running, true, true, false, Some(&up)), BridgeState::Connecting);
        assert_eq!(bridge_state(Running, true, true, true, Some(&down)), BridgeState::Connecting);
        assert_eq!(bridge_state(Running, true, true, true, None), BridgeState::Connecting);
        assert_eq!(bridge_state(Running, true, true, true, Some(&up)), BridgeState::Connected);
    }

    #[test]
    fn changes_list_only_meaningful_fields() {
        let old = status();
        assert!(status_changes(&old, &old).is_empty());
        let mut new = old.clone();
        new.bridge_state = BridgeState::Connected;
        new.bridge_server = Some("backbone-1".into());
        new.restarts = 1;
        new.process_id = Some(43);
        new.tls.trust = TrustStatus::Done(TrustState::Skipped { reason: "test".into() });
        let changes = status_changes(&old, &new);
        let fields: Vec<&str> = changes.iter().map(|change| change.field).collect();
        assert_eq!(fields, ["bridgeState", "bridgeServer", "processId", "restarts", "tls.trust"]);
        assert_eq!(changes[0].from, json!("connecting"));
        assert_eq!(changes[0].to, json!("connected"));
        assert_eq!(changes[1].from, json!(null));
        assert_eq!(changes[1].to, json!("backbone-1"));
        assert_eq!(changes[4].from, json!({"state": "pending"}));
        assert_eq!(changes[4].to, json!({"state": "skipped", "reason": "test"}));
    }

    #[test]
    fn status_serialises_camel_case() {
        let value = serde_json::to_value(status()).unwrap();
        for key in [
            "state",
            "nodeId",
            "bridgeState",
            "backboneServers",
            "serverReady",
            "processId",
            "restarts",
            "tls",
            "runtimeDir",
        ] {
            assert!(value.get(key).is_some(), "missing {key} in {value}");
        }
        assert_eq!(value["tls"]["source"], "generated");
        assert_eq!(value["tls"]["caFile"], "/c/tls/ca-cert.pem");
        assert_eq!(value["tls"]["trust"]["state"], "pending");
        assert_eq!(value["client"]["ready"], true);
    }
}
