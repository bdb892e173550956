//! The leaf's status page: the [`StatusReport`] the discovery server serves as JSON at
//! [`STATUS_PATH`] (and [`WELL_KNOWN_STATUS_PATH`]), the self-contained HTML page at `/` that
//! renders it live, and the [`MonitorSampler`] that reads client counts, message rates and
//! the backbone RTT from nats-server's loopback monitor.
//!
//! The report is public (anyone who can reach the discovery port reads it): it carries
//! URLs, states, counts and the CA fingerprint, never a secret — no backbone credentials
//! (URLs are redacted), no namespace secret, no LAN token, no key and no local file path.
//! [`StatusReport::build`] is pure; the sampler is a thin loop around [`TrafficCounters`].

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::runtime::{LeafStatus, LeafUrls};
use kinopio::wire::manifest::{LeaderManifest, format_wire_time};

/// The path of the JSON status report.
pub const STATUS_PATH: &str = "/status.json";
/// The same report at a well-known path.
pub const WELL_KNOWN_STATUS_PATH: &str = "/.well-known/kinopio-status.json";
/// The path of the CA certificate (PEM) clients should trust.
pub const CA_PATH: &str = "/ca.pem";

/// The HTML status page (no external assets: it must work on an offline LAN). It fetches
/// [`STATUS_PATH`] every second and renders it.
pub const STATUS_PAGE_HTML: &str = include_str!("status_page.html");

/// Returns the current report (cheap: reads cached state, no I/O).
pub type StatusProvider = Arc<dyn Fn() -> StatusReport + Send + Sync>;

/// This node's place in the election, as the status page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ElectionView {
    /// The discovery namespace.
    pub namespace: String,
    /// True when beacons are signed (a secured namespace).
    pub secured: bool,
    /// The namespace's members this node currently hears, itself included.
    pub members: Vec<Member>,
}

/// One member of a namespace, from its beacon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// Its node id.
    pub node_id: String,
    /// `leader`, `starting-leaf`, `candidate`, `following-leader`, ...
    pub role: String,
    /// The leadership epoch it advertises.
    pub epoch: u64,
    /// Its self-reported backbone RTT.
    pub backbone_rtt_ms: Option<f64>,
    /// True for this node.
    pub this_node: bool,
}

/// Returns the election view of a leaf run by `leaf auto` (`None` for `leaf start`).
pub type ElectionProvider = Arc<dyn Fn() -> Option<ElectionView> + Send + Sync>;

/// The body of [`STATUS_PATH`]. Every field is public information.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    /// Always `kinopio-leaf-status`.
    pub kind: String,
    /// Format version (1).
    pub version: u32,
    /// When this report was made (RFC 3339, UTC).
    pub generated_at: String,
    /// This node's id (the election's node id under `leaf auto`).
    pub node_id: String,
    /// nats-server's server name.
    pub server_name: String,
    /// Lifecycle: `running`, `restarting`, `failed`, `stopping`, `stopped`.
    pub state: String,
    /// `manual` (`leaf start`: no election) or `auto` (`leaf auto`).
    pub mode: String,
    /// This node's role (`leader` when it serves as a namespace's leaf; `leaf` for a manual
    /// leaf).
    pub role: String,
    /// The leader this page's node follows (itself while it serves).
    pub leader: LeaderInfo,
    /// The election (namespace, members); `None` for a manual leaf, which takes part in none.
    pub election: Option<ElectionView>,
    /// The bridge to the backbone.
    pub bridge: BridgeInfo,
    /// Clients and message rates from nats-server's monitor; `None` until the first sample.
    pub traffic: Option<Traffic>,
    /// The certificate of the WSS and discovery listeners.
    pub tls: TlsInfo,
    /// How to connect.
    pub connect: ConnectInfo,
}

/// The leader and its epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderInfo {
    /// The leader's node id.
    pub node_id: String,
    /// Its leadership epoch (0 for a manual leaf).
    pub epoch: u64,
}

/// The bridge to the backbone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BridgeInfo {
    /// `connected`, `connecting`, `disabled`, `error`, `stopped`.
    pub state: String,
    /// The backbone URLs, credentials redacted.
    pub backbone_servers: Vec<String>,
    /// The leafnode connection's RTT as nats-server measures it (`/leafz`).
    pub rtt_ms: Option<f64>,
}

/// Traffic through the leaf's nats-server.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Traffic {
    /// Client connections now (NATS and WebSocket).
    pub clients: u64,
    /// Messages received per second over the last interval.
    pub in_msgs_per_sec: f64,
    /// Messages delivered per second over the last interval.
    pub out_msgs_per_sec: f64,
    /// Bytes received per second.
    pub in_bytes_per_sec: f64,
    /// Bytes delivered per second.
    pub out_bytes_per_sec: f64,
    /// Messages received since nats-server started.
    pub in_msgs: u64,
    /// Messages delivered since nats-server started.
    pub out_msgs: u64,
}

/// Certificate and trust.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsInfo {
    /// `generated` (the local CA, renewed while running) or `supplied`.
    pub source: String,
    /// When the listeners' certificate expires (RFC 3339).
    pub not_after: String,
    /// Seconds until then (negative once expired).
    pub expires_in_seconds: i64,
    /// SHA-256 of the CA certificate clients should trust.
    pub ca_cert_sha256: String,
    /// Where this device's trust stores stand: `state` (`installed`, `alreadyInstalled`,
    /// `skipped`, `failed`, `external`, `pending`), store kinds, the reason for a skip.
    pub trust: Value,
}

/// How to connect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectInfo {
    /// NATS over WebSocket with TLS, for browsers and other devices.
    pub wss_url: String,
    /// The discovery manifest.
    pub manifest_url: String,
    /// The CA certificate to trust (PEM).
    pub ca_cert_url: String,
    /// This report.
    pub status_url: String,
    /// A command that subscribes to everything through the leaf from another device, given
    /// the CA from `caCertUrl` saved as `kinopio-ca.pem`.
    pub sub_example: String,
}

/// Everything [`StatusReport::build`] reads.
#[derive(Debug, Clone, Copy)]
pub struct ReportInputs<'a> {
    /// The cached leaf status.
    pub status: &'a LeafStatus,
    /// The listener URLs.
    pub urls: &'a LeafUrls,
    /// The manifest served now (role, epoch, leader for `leaf auto`).
    pub manifest: Option<&'a LeaderManifest>,
    /// The election, for `leaf auto`.
    pub election: Option<&'a ElectionView>,
    /// The latest monitor sample.
    pub sample: Option<&'a MonitorSample>,
}

impl StatusReport {
    /// Builds the report. Pure.
    pub fn build(inputs: ReportInputs<'_>, now: OffsetDateTime) -> StatusReport {
        let ReportInputs { status, urls, manifest, election, sample } = inputs;
        let base = discovery_base(&urls.discovery_url);
        let (role, leader_id, epoch) = match manifest {
            Some(m) if election.is_some() => (m.candidate_role.clone(), m.node_id.clone(), m.leader_epoch),
            Some(m) => ("leaf".to_owned(), m.node_id.clone(), m.leader_epoch),
            None => ("leaf".to_owned(), status.node_id.clone(), 0),
        };
        let not_after = status.tls.material.not_after;
        let ca_cert_url = format!("{base}{CA_PATH}");
        StatusReport {
            kind: "kinopio-leaf-status".to_owned(),
            version: 1,
            generated_at: format_wire_time(now),
            // Under `leaf auto` the node is known by its election id.
            node_id: election
                .and_then(|e| e.members.iter().find(|m| m.this_node))
                .map_or_else(|| status.node_id.clone(), |m| m.node_id.clone()),
            server_name: status.server_name.clone(),
            state: status.state.as_str().to_owned(),
            mode: if election.is_some() { "auto" } else { "manual" }.to_owned(),
            role,
            leader: LeaderInfo { node_id: leader_id, epoch },
            election: election.cloned(),
            bridge: BridgeInfo {
                state: status.bridge_state.as_str().to_owned(),
                backbone_servers: status.backbone_servers.iter().map(|url| crate::config::redact_url(url)).collect(),
                rtt_ms: sample.and_then(|s| s.backbone_rtt_ms),
            },
            traffic: sample.and_then(|s| s.traffic),
            tls: TlsInfo {
                source: match status.tls.material.source {
                    crate::tls::TlsSource::Generated => "generated",
                    crate::tls::TlsSource::Supplied => "supplied",
                }
                .to_owned(),
                not_after: format_wire_time(not_after),
                expires_in_seconds: (not_after - now).whole_seconds(),
                ca_cert_sha256: status.tls.material.ca_cert_sha256.clone(),
                trust: public_trust(&status.tls.trust),
            },
            connect: ConnectInfo {
                wss_url: urls.wss_url.clone(),
                manifest_url: urls.discovery_url.clone(),
                // The CA file is the one downloaded from `ca_cert_url` (fingerprint compared).
                sub_example: format!("kinopio sub '>' --server {} --tls-ca-file kinopio-ca.pem", urls.wss_url),
                ca_cert_url,
                status_url: format!("{base}{STATUS_PATH}"),
            },
        }
    }
}

/// The trust state without local details: store kinds (`nss`, `system`, ...) instead of
/// their paths, and no error text (it may name files; the leaf's log has it). Pure.
fn public_trust(trust: &crate::runtime::TrustStatus) -> Value {
    let mut value = serde_json::to_value(trust).unwrap_or(Value::Null);
    if let Some(map) = value.as_object_mut() {
        if let Some(stores) = map.get_mut("stores").and_then(Value::as_array_mut) {
            for store in stores.iter_mut() {
                let kind = store.as_str().map(|s| s.split(':').next().unwrap_or(s).to_owned());
                if let Some(kind) = kind {
                    *store = Value::String(kind);
                }
            }
        }
        if map.contains_key("error") {
            map.insert("error".to_owned(), Value::String("see the leaf's log".to_owned()));
        }
    }
    value
}

/// `https://host:port` of a discovery URL (everything before the path).
fn discovery_base(discovery_url: &str) -> String {
    let after_scheme = discovery_url.find("://").map_or(0, |i| i + 3);
    match discovery_url[after_scheme..].find('/') {
        Some(slash) => discovery_url[..after_scheme + slash].to_owned(),
        None => discovery_url.to_owned(),
    }
}

/// What the monitor showed at the last sample.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MonitorSample {
    /// Clients and rates (rates are 0 at the first sample); `None` when `/varz` failed.
    pub traffic: Option<Traffic>,
    /// The leafnode connection's RTT.
    pub backbone_rtt_ms: Option<f64>,
}

/// nats-server's cumulative counters from `/varz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrafficCounters {
    /// `connections`.
    pub clients: u64,
    /// `in_msgs`.
    pub in_msgs: u64,
    /// `out_msgs`.
    pub out_msgs: u64,
    /// `in_bytes`.
    pub in_bytes: u64,
    /// `out_bytes`.
    pub out_bytes: u64,
}

impl TrafficCounters {
    /// Reads the counters of a `/varz` document (missing fields count 0). Pure.
    pub fn from_varz(varz: &Value) -> TrafficCounters {
        let n = |key: &str| varz.get(key).and_then(Value::as_u64).unwrap_or(0);
        TrafficCounters {
            clients: n("connections"),
            in_msgs: n("in_msgs"),
            out_msgs: n("out_msgs"),
            in_bytes: n("in_bytes"),
            out_bytes: n("out_bytes"),
        }
    }

    /// Rates between `previous` (taken `elapsed` earlier) and `self`; with no previous
    /// sample (or a counter reset by a restart) the rates are 0. Pure.
    pub fn traffic_since(&self, previous: Option<(TrafficCounters, Duration)>) -> Traffic {
        let rate = |now: u64, before: u64, elapsed: Duration| {
            let seconds = elapsed.as_secs_f64();
            if now < before || seconds <= 0.0 { 0.0 } else { (now - before) as f64 / seconds }
        };
        let (p, elapsed) = previous.unwrap_or((*self, Duration::ZERO));
        Traffic {
            clients: self.clients,
            in_msgs_per_sec: rate(self.in_msgs, p.in_msgs, elapsed),
            out_msgs_per_sec: rate(self.out_msgs, p.out_msgs, elapsed),
            in_bytes_per_sec: rate(self.in_bytes, p.in_bytes, elapsed),
            out_bytes_per_sec: rate(self.out_bytes, p.out_bytes, elapsed),
            in_msgs: self.in_msgs,
            out_msgs: self.out_msgs,
        }
    }
}

/// The smallest RTT of the leafnode connections in a `/leafz` document, in milliseconds
/// (nats-server writes Go durations such as `1.234ms` or `850µs`). Pure.
pub fn leafz_rtt_ms(leafz: &Value) -> Option<f64> {
    leafz
        .get("leafs")
        .and_then(Value::as_array)?
        .iter()
        .filter_map(|leaf| leaf.get("rtt").and_then(Value::as_str).and_then(go_duration_ms))
        .min_by(f64::total_cmp)
}

/// A Go duration string (`1h2m3.5s`, `1.2ms`, `850µs`, `12ns`) in milliseconds. Pure.
pub fn go_duration_ms(text: &str) -> Option<f64> {
    let text = text.trim();
    if text == "0" {
        return Some(0.0);
    }
    let mut total = 0.0;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let factor = match &rest[..unit_end] {
            "ns" => 1e-6,
            "us" | "µs" | "μs" => 1e-3,
            "ms" => 1.0,
            "s" => 1e3,
            "m" => 60e3,
            "h" => 3600e3,
            _ => return None,
        };
        total += number * factor;
        rest = &rest[unit_end..];
    }
    Some(total)
}

/// Samples nats-server's monitor (`/varz`, `/leafz`) on loopback about every `interval`
/// into a shared slot; the status provider reads the slot without I/O.
#[derive(Debug, Clone)]
pub struct MonitorSampler {
    http: reqwest::Client,
    base: String,
    slot: Arc<RwLock<Option<MonitorSample>>>,
}

impl MonitorSampler {
    /// A sampler of the monitor at `monitor_url` (`http://127.0.0.1:port`).
    pub fn new(monitor_url: &str, timeout: Duration) -> Option<MonitorSampler> {
        let http = reqwest::Client::builder().no_proxy().timeout(timeout).connect_timeout(timeout).build().ok()?;
        Some(MonitorSampler { http, base: monitor_url.trim_end_matches('/').to_owned(), slot: Arc::default() })
    }

    /// The slot the sampler writes.
    pub fn slot(&self) -> Arc<RwLock<Option<MonitorSample>>> {
        self.slot.clone()
    }

    async fn get(&self, path: &str) -> Option<Value> {
        let response = self.http.get(format!("{}{path}", self.base)).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json::<Value>().await.ok()
    }

    /// Samples until the task is aborted. A failed request leaves the last sample's counts
    /// in place but clears the rates.
    pub async fn run(self, interval: Duration) {
        let mut previous: Option<(TrafficCounters, Instant)> = None;
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let (varz, leafz) = tokio::join!(self.get("/varz"), self.get("/leafz"));
            let now = Instant::now();
            let traffic = varz.map(|varz| {
                let counters = TrafficCounters::from_varz(&varz);
                let traffic = counters.traffic_since(previous.map(|(c, at)| (c, now - at)));
                previous = Some((counters, now));
                traffic
            });
            let sample = MonitorSample { traffic, backbone_rtt_ms: leafz.as_ref().and_then(leafz_rtt_ms) };
            *self.slot.write().unwrap_or_else(|p| p.into_inner()) = Some(sample);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn go_durations_parse() {
        assert_eq!(go_duration_ms("1.5ms"), Some(1.5));
        assert_eq!(go_duration_ms("850µs"), Some(0.85));
        assert_eq!(go_duration_ms("2s"), Some(2000.0));
        assert_eq!(go_duration_ms("1m2s"), Some(62000.0));
        assert_eq!(go_duration_ms("0"), Some(0.0));
        assert_eq!(go_duration_ms(""), None);
        assert_eq!(go_duration_ms("fast"), None);
        assert_eq!(go_duration_ms("3parsecs"), None);
    }

    #[test]
    fn leafz_gives_the_smallest_rtt() {
        let leafz = json!({"leafs": [{"rtt": "3ms"}, {"rtt": "250µs"}, {"rtt": "junk"}]});
        assert_eq!(leafz_rtt_ms(&leafz), Some(0.25));
        assert_eq!(leafz_rtt_ms(&json!({"leafs": []})), None);
        assert_eq!(leafz_rtt_ms(&json!({})), None);
    }

    #[test]
    fn rates_come_from_two_samples() {
        let first = TrafficCounters::from_varz(&json!({"connections": 2, "in_msgs": 100, "out_msgs": 10}));
        let zero = first.traffic_since(None);
        assert_eq!((zero.clients, zero.in_msgs_per_sec), (2, 0.0));
        let second = TrafficCounters::from_varz(&json!({"connections": 3, "in_msgs": 300, "out_msgs": 20}));
        let traffic = second.traffic_since(Some((first, Duration::from_secs(2))));
        assert_eq!(traffic.clients, 3);
        assert_eq!(traffic.in_msgs_per_sec, 100.0);
        assert_eq!(traffic.out_msgs_per_sec, 5.0);
        // A restart resets the counters: no negative rate.
        let reset = TrafficCounters::from_varz(&json!({"connections": 1, "in_msgs": 5}));
        assert_eq!(reset.traffic_since(Some((second, Duration::from_secs(1)))).in_msgs_per_sec, 0.0);
    }

    #[test]
    fn trust_shows_store_kinds_not_paths() {
        use crate::runtime::TrustStatus;
        use crate::tls::TrustState;
        let installed = TrustStatus::Done(TrustState::Installed {
            stores: vec!["nss:/home/ann/.pki/nssdb".into(), "system".into()],
        });
        assert_eq!(public_trust(&installed), json!({"state": "installed", "stores": ["nss", "system"]}));
        let failed = TrustStatus::Done(TrustState::Failed { error: "cannot write /home/ann/x".into() });
        assert_eq!(public_trust(&failed), json!({"state": "failed", "error": "see the leaf's log"}));
        assert_eq!(public_trust(&TrustStatus::Pending), json!({"state": "pending"}));
    }

    #[test]
    fn discovery_base_drops_the_path() {
        assert_eq!(
            discovery_base("https://192.168.1.5:8443/.well-known/kinopio-leader.json"),
            "https://192.168.1.5:8443"
        );
        assert_eq!(discovery_base("https://[fd00::5]:8443/x"), "https://[fd00::5]:8443");
    }
}
