//! Local-leader discovery: find the leaf a LAN's elected leader runs, and hot-switch to it
//! when it really accepts a connection; fall back to the configured servers when it goes.
//!
//! A leader is found through a manifest URL or by browsing mDNS (`_kinopio-hub._tcp.local.`)
//! for the namespace and fetching the manifest each leader record points to. What is trusted
//! ([`Trust`]): with a namespace secret, only the namespace CA derived from it; else with a CA
//! file, only that CA; else the system roots (an open namespace: a stranger can redirect the
//! hub). The manifest is fetched over HTTPS verified that way and parsed strictly
//! ([`LeaderManifest::parse`]); the hub then connects to the leader's `wss://` listener
//! verified the same way (never to plaintext unless allowed). A stranger's mDNS record cannot
//! shadow the real leader: every record is tried. Every refused candidate is visible (a
//! [`HubEvent::LocalLeaderRejected`] and a warning, once per candidate and reason); nothing
//! here disturbs the remote session.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::manifest::LeaderManifest;
use crate::options::DiscoveryOptions;
use crate::server::ServerUrl;
use crate::state::{ConnectionState, HubEvent, SwitchReason};
use crate::supervisor::Supervisor;
use crate::trust::NamespaceCa;

/// mDNS service type of kinopio leaders (same as the Python reference).
pub const MDNS_SERVICE_TYPE: &str = "_kinopio-hub._tcp.local.";

/// After leaving a leader, look for its successor this often ...
const FOLLOW_PROBE: Duration = Duration::from_millis(500);
/// ... for this long.
const FOLLOW_WINDOW: Duration = Duration::from_secs(15);

/// How long one mDNS browse round listens.
const BROWSE_FOR: Duration = Duration::from_millis(1500);

#[derive(Debug)]
struct InUse {
    manifest: LeaderManifest,
    manifest_url: String,
    server: ServerUrl,
    checked: Instant,
    disconnected_since: Option<Instant>,
}

/// What discovery trusts for manifests and leader listeners, and how it authenticates.
#[derive(Debug, Clone)]
enum Trust {
    /// A secured namespace: only its CA (written to a file for async-nats, removed when the
    /// last clone goes), and the LAN token its leaders require.
    Namespace { ca_file: std::sync::Arc<tempfile::TempPath>, lan_token: crate::trust::Secret },
    /// Only the user's CA file.
    CaFile(PathBuf),
    /// The system roots: an open namespace.
    System,
}

impl Trust {
    /// The only CA file to trust, if any.
    fn ca_file(&self) -> Option<&std::path::Path> {
        match self {
            Trust::Namespace { ca_file, .. } => Some(ca_file),
            Trust::CaFile(path) => Some(path),
            Trust::System => None,
        }
    }
}

/// The discovery state of one hub (driven by its supervisor).
pub(crate) struct Discovery {
    options: DiscoveryOptions,
    /// Decided on first use (deriving a namespace CA costs a memory-hard hash).
    trust: Option<Trust>,
    http: Option<reqwest::Client>,
    mdns: Option<mdns_sd::ServiceDaemon>,
    in_use: Option<InUse>,
    /// Candidates already reported as rejected (url and reason), so each is warned once.
    reported: HashSet<(String, String)>,
    /// When the hub last left a leader (to look for its successor often for a while).
    left_at: Option<Instant>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery").field("in_use", &self.in_use).finish()
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        if let Some(mdns) = self.mdns.take() {
            let _ = mdns.shutdown();
        }
    }
}

impl Discovery {
    pub fn new(options: DiscoveryOptions) -> Discovery {
        Discovery {
            options,
            trust: None,
            http: None,
            mdns: None,
            in_use: None,
            reported: HashSet::new(),
            left_at: None,
        }
    }

    /// What to trust, decided once (deriving the namespace CA costs a memory-hard hash).
    async fn trust(&mut self) -> Result<Trust, String> {
        if let Some(trust) = &self.trust {
            return Ok(trust.clone());
        }
        let trust = match (&self.options.namespace_secret, &self.options.namespace, &self.options.ca_file) {
            (Some(secret), Some(namespace), _) => {
                let (namespace, secret) = (namespace.clone(), secret.clone());
                let ca =
                    tokio::task::spawn_blocking(move || NamespaceCa::derive(&namespace, secret.expose().as_bytes()))
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| e.to_string())?;
                let mut file = tempfile::Builder::new()
                    .prefix("kinopio-namespace-ca-")
                    .suffix(".pem")
                    .tempfile()
                    .map_err(|e| format!("cannot write the namespace CA: {e}"))?;
                std::io::Write::write_all(&mut file, ca.cert_pem().as_bytes())
                    .map_err(|e| format!("cannot write the namespace CA: {e}"))?;
                if self.options.ca_file.is_some() {
                    tracing::warn!(
                        "a namespace secret is given: discovery trusts only its namespace CA, not the CA file"
                    );
                }
                Trust::Namespace {
                    ca_file: std::sync::Arc::new(file.into_temp_path()),
                    lan_token: crate::trust::Secret::new(ca.lan_token()),
                }
            }
            (Some(_), None, _) => return Err("a namespace secret needs the namespace".into()),
            (None, _, Some(ca)) => Trust::CaFile(ca.clone()),
            (None, _, None) => Trust::System,
        };
        self.trust = Some(trust.clone());
        Ok(trust)
    }

    /// Reports a refused candidate: an event every time, a warning once per url and reason.
    fn reject(&mut self, sup: &Supervisor, url: &str, reason: String) {
        if self.reported.insert((url.to_owned(), reason.clone())) {
            tracing::warn!(%url, %reason, "refused a local leader candidate");
        } else {
            tracing::debug!(%url, %reason, "refused a local leader candidate");
        }
        sup.shared().emit(HubEvent::LocalLeaderRejected { url: url.to_owned(), reason });
    }

    /// True while the hub is on a discovered local leader.
    pub fn in_use(&self) -> bool {
        self.in_use.is_some()
    }

    /// One round; returns how long to wait before the next.
    pub async fn step(&mut self, sup: &mut Supervisor) -> Duration {
        if self.in_use.is_some() {
            self.check_leader(sup).await;
        } else {
            self.look_for_leader(sup).await;
        }
        if self.in_use.is_some() {
            // Watch a leader in use closely (its lease is short), but not more often than
            // the manifest cache allows.
            self.options.cache_ttl.min(Duration::from_secs(1)).max(Duration::from_millis(200))
        } else if self.left_at.is_some_and(|at| at.elapsed() < FOLLOW_WINDOW) {
            // A leader just went: its successor is usually elected within seconds, so look
            // often for a while instead of waiting a whole probe interval.
            self.options.probe_interval.min(FOLLOW_PROBE)
        } else {
            self.options.probe_interval
        }
    }

    async fn look_for_leader(&mut self, sup: &mut Supervisor) {
        let trust = match self.trust().await {
            Ok(trust) => trust,
            Err(e) => {
                tracing::warn!(error = %e, "local-leader discovery is off");
                return;
            }
        };
        for (manifest, manifest_url) in self.find_manifests(sup).await {
            let candidates = self.candidate_urls(&manifest, &manifest_url);
            if candidates.is_empty() {
                let reason = format!("the manifest offers only plaintext ({}); not allowed", manifest.wss_url.as_str());
                self.reject(sup, &manifest_url, reason);
                continue;
            }
            for server in candidates {
                if sup.shared().current().and_then(|c| c.server()).as_ref() == Some(&server) {
                    return;
                }
                let mut options = sup.shared().options.clone();
                if let Some(ca) = trust.ca_file() {
                    options = options.tls_ca_file(ca);
                }
                if let Trust::Namespace { lan_token, .. } = &trust {
                    options = options.auth(crate::options::Auth::Token(lan_token.expose().to_owned()));
                }
                options = options.connect_timeout(self.options.local_switch_timeout);
                let attempt = sup.switch_to_with(&options, vec![server.clone()], SwitchReason::LocalLeader, None, None);
                match tokio::time::timeout(self.options.local_switch_timeout * 2, attempt).await {
                    Ok(Ok(_)) => {
                        tracing::info!(leader = %manifest.node_id, %server, "switched to the local leader");
                        self.in_use = Some(InUse {
                            manifest,
                            manifest_url,
                            server,
                            checked: Instant::now(),
                            disconnected_since: None,
                        });
                        return;
                    }
                    Ok(Err(e)) => self.reject(sup, server.as_str(), format!("did not connect: {e}")),
                    Err(_) => self.reject(sup, server.as_str(), "did not connect in time".to_owned()),
                }
            }
        }
    }

    /// Keeps using the leader while its manifest stays valid and the connection holds;
    /// otherwise goes back to the configured servers.
    async fn check_leader(&mut self, sup: &mut Supervisor) {
        let Some(using) = &mut self.in_use else { return };
        let now = Instant::now();
        let on_leader = sup.shared().current().and_then(|c| c.server()).as_ref() == Some(&using.server);
        let connected = sup.shared().state() == ConnectionState::Connected;
        if connected {
            using.disconnected_since = None;
        } else if using.disconnected_since.is_none() {
            using.disconnected_since = Some(now);
        }
        let mut lost = if !on_leader {
            Some("the hub moved away from the leader".to_owned())
        } else if using.disconnected_since.is_some_and(|t| now - t >= self.options.local_switch_timeout) {
            Some("connection to the leader lost".to_owned())
        } else {
            None
        };
        if lost.is_none() && now - using.checked >= self.options.cache_ttl {
            let url = using.manifest_url.clone();
            let node = using.manifest.node_id.clone();
            match self.fetch(&url).await {
                Ok(m) if m.node_id == node && usable(&m) => {
                    if let Some(using) = &mut self.in_use {
                        using.manifest = m;
                        using.checked = now;
                    }
                }
                Ok(m) if m.node_id == node => {
                    lost = Some(format!("the leader's bridge is {}", m.bridge_state.as_str()))
                }
                Ok(m) => lost = Some(format!("{} is the leader now", m.node_id)),
                Err(e) => lost = Some(format!("manifest unavailable: {e}")),
            }
        }
        let Some(reason) = lost else { return };
        tracing::info!(%reason, "leaving the local leader; back to the configured servers");
        let plan = sup.plan().await;
        match sup.switch_plan(plan, SwitchReason::LocalLeaderLost, None).await {
            Ok(_) => {
                self.in_use = None;
                self.left_at = Some(Instant::now());
            }
            Err(e) => {
                tracing::warn!(error = %e, "no configured server reachable; staying");
                // Keep trying on the next round; if the leader comes back we stay on it.
                if let Some(using) = &mut self.in_use {
                    using.checked = now;
                }
            }
        }
    }

    /// The URLs to try for a leader: its plain client URL when it runs on this machine (it
    /// listens on loopback only), then its WSS URL. Plaintext to another host (`ws://`) only
    /// when allowed.
    fn candidate_urls(&self, manifest: &LeaderManifest, manifest_url: &str) -> Vec<ServerUrl> {
        let mut urls = Vec::new();
        let same_host = url::Url::parse(manifest_url)
            .ok()
            .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()))
            .and_then(|h| h.parse::<IpAddr>().ok())
            .is_some_and(is_local_address);
        let loopback_client = url::Url::parse(manifest.client_url.as_str())
            .ok()
            .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()))
            .and_then(|h| h.parse::<IpAddr>().ok())
            .is_some_and(|ip| ip.is_loopback());
        if same_host
            && loopback_client
            && let Ok(client) = manifest.client_url.as_str().parse()
        {
            urls.push(client);
        }
        let wss = manifest.wss_url.as_str();
        if (wss.starts_with("wss://") || self.options.allow_plaintext)
            && let Ok(wss) = wss.parse()
        {
            urls.push(wss);
        }
        urls
    }

    /// The usable manifests found: the configured URL, then every leader advertised over
    /// mDNS for the namespace (a stranger's record cannot hide the real one). Refused
    /// candidates are reported.
    async fn find_manifests(&mut self, sup: &Supervisor) -> Vec<(LeaderManifest, String)> {
        let mut found = Vec::new();
        for candidate in self.survey().await {
            match candidate.outcome {
                Ok(manifest) if usable(&manifest) => found.push((manifest, candidate.url)),
                Ok(manifest) => {
                    tracing::debug!(url = %candidate.url, bridge = manifest.bridge_state.as_str(), "leader not usable yet");
                }
                Err(e) if e.is_trust() => self.reject(sup, &candidate.url, e.to_string()),
                Err(e) => tracing::debug!(url = %candidate.url, error = %e, "no leader manifest"),
            }
        }
        found
    }

    /// Every candidate manifest URL (configured, then mDNS) and what fetching it gave.
    async fn survey(&mut self) -> Vec<Candidate> {
        let mut urls = Vec::new();
        if let Some(url) = self.options.manifest_url.clone() {
            urls.push(url);
        }
        if let Some(namespace) = self.options.namespace.clone() {
            for url in self.browse(&namespace).await {
                if !urls.contains(&url) {
                    urls.push(url);
                }
            }
        }
        let mut candidates = Vec::new();
        for url in urls {
            let outcome = self.fetch(&url).await;
            candidates.push(Candidate { url, outcome });
        }
        candidates
    }

    /// Fetches and strictly parses a manifest over HTTPS verified by the [`Trust`].
    async fn fetch(&mut self, url: &str) -> Result<LeaderManifest, FetchError> {
        if !url.starts_with("https://") {
            return Err(FetchError::Trust("only https:// manifests are trusted".into()));
        }
        let client = self.http_client().await.map_err(FetchError::Other)?;
        let response = client.get(url).timeout(self.options.local_switch_timeout).send().await.map_err(|e| {
            let text = format!("{e:#}");
            if is_tls_failure(&e) {
                FetchError::Trust(format!("TLS verification failed: {text}"))
            } else {
                FetchError::Other(text)
            }
        })?;
        if !response.status().is_success() {
            return Err(FetchError::Other(format!("HTTP {}", response.status())));
        }
        let body = response.bytes().await.map_err(|e| FetchError::Other(e.to_string()))?;
        if body.len() > 64 * 1024 {
            return Err(FetchError::Other("manifest larger than 64 KiB".into()));
        }
        LeaderManifest::parse(&body, time::OffsetDateTime::now_utc()).map_err(|e| FetchError::Other(e.to_string()))
    }

    async fn http_client(&mut self) -> Result<reqwest::Client, String> {
        if let Some(c) = &self.http {
            return Ok(c.clone());
        }
        crate::tls::install_crypto_provider();
        let mut builder = reqwest::Client::builder().connect_timeout(self.options.local_switch_timeout).no_proxy();
        if let Some(ca) = self.trust().await?.ca_file() {
            let pem = std::fs::read(ca).map_err(|e| format!("cannot read CA file {}: {e}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| e.to_string())?;
            builder = builder.tls_certs_only(certs);
        }
        let client = builder.build().map_err(|e| format!("{e:#}"))?;
        self.http = Some(client.clone());
        Ok(client)
    }

    /// Browses mDNS for leaders of `namespace` and returns their HTTPS manifest URLs.
    async fn browse(&mut self, namespace: &str) -> Vec<String> {
        let daemon = match &self.mdns {
            Some(d) => d.clone(),
            None => match self.start_mdns() {
                Ok(d) => d,
                Err(e) => {
                    tracing::debug!(error = %e, "mDNS unavailable");
                    return Vec::new();
                }
            },
        };
        let Ok(events) = daemon.browse(MDNS_SERVICE_TYPE) else {
            return Vec::new();
        };
        let mut urls = Vec::new();
        let deadline = tokio::time::Instant::now() + BROWSE_FOR;
        loop {
            let event = tokio::select! {
                e = events.recv_async() => e,
                _ = tokio::time::sleep_until(deadline) => break,
            };
            let Ok(event) = event else { break };
            if let mdns_sd::ServiceEvent::ServiceResolved(info) = event {
                let txt = |k: &str| info.get_property_val_str(k).map(str::to_owned);
                if txt("namespace").as_deref() != Some(namespace) || txt("candidateRole").as_deref() != Some("leader") {
                    continue;
                }
                if let Some(url) = txt("discoveryUrl").filter(|u| !urls.contains(u)) {
                    urls.push(url);
                }
            }
        }
        let _ = daemon.stop_browse(MDNS_SERVICE_TYPE);
        urls
    }

    fn start_mdns(&mut self) -> Result<mdns_sd::ServiceDaemon, mdns_sd::Error> {
        let daemon = mdns_sd::ServiceDaemon::new()?;
        if !self.options.interfaces.is_empty() {
            daemon.disable_interface(mdns_sd::IfKind::All)?;
            for name in &self.options.interfaces {
                daemon.enable_interface(mdns_sd::IfKind::Name(name.clone()))?;
            }
        }
        self.mdns = Some(daemon.clone());
        Ok(daemon)
    }
}

/// A leader worth switching to: it leads, and its leaf is bridged to the backbone (or has no
/// backbone at all). A leaf still connecting upstream would cut the hub off.
fn usable(m: &LeaderManifest) -> bool {
    use crate::manifest::BridgeState;
    m.is_leader && matches!(m.bridge_state, BridgeState::Connected | BridgeState::Disabled)
}

/// True for loopback addresses and addresses of this machine's interfaces.
fn is_local_address(ip: IpAddr) -> bool {
    ip.is_loopback() || if_addrs::get_if_addrs().is_ok_and(|ifs| ifs.iter().any(|i| i.ip() == ip))
}

/// A candidate leader: its manifest URL and what fetching it gave.
#[derive(Debug)]
struct Candidate {
    url: String,
    outcome: Result<LeaderManifest, FetchError>,
}

/// What [`check_leaders`] found about one candidate leader.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderCheck {
    /// The manifest URL (configured, or from an mDNS record).
    pub url: String,
    /// The leader's node id and `wss://` URL when its manifest verified.
    pub node_id: Option<String>,
    /// Its WSS URL.
    pub wss_url: Option<String>,
    /// Whether a hub would switch to it now (it leads and its bridge is up or disabled).
    pub usable: bool,
    /// Why not, when it did not verify or could not be fetched.
    pub problem: Option<String>,
    /// True when the problem is that it did not verify against what discovery trusts.
    pub untrusted: bool,
}

/// Looks for the local leaders `options` would find (configured manifest URL, mDNS for the
/// namespace) and checks each the way a hub does (same trust), without connecting: for
/// diagnostics such as `kinopio doctor`.
pub async fn check_leaders(options: &DiscoveryOptions) -> Vec<LeaderCheck> {
    let mut discovery = Discovery::new(options.clone());
    if let Err(e) = discovery.trust().await {
        return vec![LeaderCheck {
            url: options.manifest_url.clone().unwrap_or_default(),
            node_id: None,
            wss_url: None,
            usable: false,
            problem: Some(e),
            untrusted: false,
        }];
    }
    discovery
        .survey()
        .await
        .into_iter()
        .map(|candidate| match candidate.outcome {
            Ok(m) => LeaderCheck {
                url: candidate.url,
                node_id: Some(m.node_id.clone()),
                wss_url: Some(m.wss_url.as_str().to_owned()),
                usable: usable(&m),
                problem: None,
                untrusted: false,
            },
            Err(e) => LeaderCheck {
                url: candidate.url,
                node_id: None,
                wss_url: None,
                usable: false,
                untrusted: e.is_trust(),
                problem: Some(e.to_string()),
            },
        })
        .collect()
}

/// Why a manifest could not be used.
#[derive(Debug)]
enum FetchError {
    /// It did not verify against what discovery trusts: a candidate to report.
    Trust(String),
    /// Anything else (unreachable, not served, malformed).
    Other(String),
}

impl FetchError {
    fn is_trust(&self) -> bool {
        matches!(self, FetchError::Trust(_))
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Trust(s) | FetchError::Other(s) => f.write_str(s),
        }
    }
}

/// True when a request failed in the TLS handshake (certificate not trusted, wrong name).
fn is_tls_failure(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        let text = err.to_string().to_ascii_lowercase();
        if text.contains("certificate") || text.contains("invalid peer") {
            return true;
        }
        source = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn manifest(wss: &str, client: &str) -> LeaderManifest {
        let body = format!(
            r#"{{"version": 1, "nodeId": "n1", "advertisedHostname": "192.168.1.9", "wssUrl": "{wss}",
            "clientUrl": "{client}", "monitorUrl": "http://127.0.0.1:3", "discoveryUrl": "https://192.168.1.9:4/m.json",
            "fallbackServers": [], "backboneRttMs": null, "backboneServers": [], "bridgeState": "disabled",
            "leaderEpoch": 1, "expiresAt": "2026-11-22T08:28:37Z", "leaseExpiresAt": "2026-11-22T08:28:37Z",
            "isLeader": true, "candidateRole": "leader"}}"#
        );
        LeaderManifest::parse(body.as_bytes(), time::macros::datetime!(2026-11-22 08:28:33 UTC)).unwrap()
    }

    #[test]
    fn a_manifest_never_moves_the_hub_to_plaintext_unless_allowed() {
        let strict = Discovery::new(DiscoveryOptions::default());
        let url = "https://192.168.1.9:4/m.json";
        // A stranger's manifest pointing at its plaintext server: nothing to try.
        assert!(strict.candidate_urls(&manifest("ws://192.168.1.9:1", "nats://192.168.1.9:2"), url).is_empty());
        // A plaintext client URL on another host is never used, even with wss offered.
        let urls = strict.candidate_urls(&manifest("wss://192.168.1.9:1", "nats://192.168.1.9:2"), url);
        assert_eq!(urls.iter().map(ServerUrl::as_str).collect::<Vec<_>>(), ["wss://192.168.1.9:1"]);
        let lax = Discovery::new(DiscoveryOptions { allow_plaintext: true, ..Default::default() });
        assert_eq!(lax.candidate_urls(&manifest("ws://192.168.1.9:1", "nats://192.168.1.9:2"), url).len(), 1);
        // The loopback client URL is used only for a leader on this machine.
        let local =
            strict.candidate_urls(&manifest("wss://127.0.0.1:1", "nats://127.0.0.1:2"), "https://127.0.0.1:4/m");
        assert_eq!(
            local.iter().map(ServerUrl::as_str).collect::<Vec<_>>(),
            ["nats://127.0.0.1:2", "wss://127.0.0.1:1"]
        );
    }
}
