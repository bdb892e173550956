//! Local-leader discovery: find the leaf a LAN's elected leader runs, and hot-switch to it
//! when it really accepts a connection; fall back to the configured servers when it goes.
//!
//! A leader is found through a manifest URL (HTTPS, verified against the system roots plus
//! an optional CA file) or by browsing mDNS (`_kinopio-hub._tcp.local.`) for the namespace and
//! fetching the manifest its TXT record points to. The manifest is parsed strictly
//! ([`LeaderManifest::parse`]): malformed or expired manifests are ignored. Every failure here
//! is silent (debug logs) and never disturbs the remote session.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::manifest::LeaderManifest;
use crate::options::DiscoveryOptions;
use crate::server::ServerUrl;
use crate::state::{ConnectionState, SwitchReason};
use crate::supervisor::Supervisor;

/// mDNS service type of kinopio leaders (same as the Python reference).
pub const MDNS_SERVICE_TYPE: &str = "_kinopio-hub._tcp.local.";

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

/// The discovery state of one hub (driven by its supervisor).
pub(crate) struct Discovery {
    options: DiscoveryOptions,
    http: Option<reqwest::Client>,
    mdns: Option<mdns_sd::ServiceDaemon>,
    in_use: Option<InUse>,
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
        Discovery { options, http: None, mdns: None, in_use: None }
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
        } else {
            self.options.probe_interval
        }
    }

    async fn look_for_leader(&mut self, sup: &mut Supervisor) {
        let Some((manifest, manifest_url)) = self.find_manifest().await else {
            return;
        };
        for server in self.candidate_urls(&manifest, &manifest_url) {
            if sup.shared().current().and_then(|c| c.server()).as_ref() == Some(&server) {
                return;
            }
            let mut options = sup.shared().options.clone();
            if let Some(ca) = &self.options.ca_file {
                options = options.tls_ca_file(ca);
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
                Ok(Err(e)) => tracing::debug!(%server, error = %e, "local leader not reachable"),
                Err(_) => tracing::debug!(%server, "local leader did not connect in time"),
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
            Ok(_) => self.in_use = None,
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
    /// listens on loopback only), then its WSS URL.
    fn candidate_urls(&self, manifest: &LeaderManifest, manifest_url: &str) -> Vec<ServerUrl> {
        let mut urls = Vec::new();
        let same_host = url::Url::parse(manifest_url)
            .ok()
            .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()))
            .and_then(|h| h.parse::<IpAddr>().ok())
            .is_some_and(is_local_address);
        if same_host && let Ok(client) = manifest.client_url.as_str().parse() {
            urls.push(client);
        }
        if let Ok(wss) = manifest.wss_url.as_str().parse() {
            urls.push(wss);
        }
        urls
    }

    async fn find_manifest(&mut self) -> Option<(LeaderManifest, String)> {
        if let Some(url) = self.options.manifest_url.clone() {
            match self.fetch(&url).await {
                Ok(m) if usable(&m) => return Some((m, url)),
                Ok(m) => tracing::debug!(%url, bridge = m.bridge_state.as_str(), "leader not usable yet"),
                Err(e) => tracing::debug!(%url, error = %e, "no leader manifest"),
            }
        }
        let namespace = self.options.namespace.clone()?;
        for url in self.browse(&namespace).await {
            match self.fetch(&url).await {
                Ok(m) if usable(&m) => return Some((m, url)),
                Ok(_) => {}
                Err(e) => tracing::debug!(%url, error = %e, "advertised manifest unusable"),
            }
        }
        None
    }

    /// Fetches and strictly parses a manifest over HTTPS.
    async fn fetch(&mut self, url: &str) -> Result<LeaderManifest, String> {
        if !url.starts_with("https://") {
            return Err("only https:// manifests are trusted".into());
        }
        let client = self.http_client()?;
        let response =
            client.get(url).timeout(self.options.local_switch_timeout).send().await.map_err(|e| format!("{e:#}"))?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        if body.len() > 64 * 1024 {
            return Err("manifest larger than 64 KiB".into());
        }
        LeaderManifest::parse(&body, time::OffsetDateTime::now_utc()).map_err(|e| e.to_string())
    }

    fn http_client(&mut self) -> Result<reqwest::Client, String> {
        if let Some(c) = &self.http {
            return Ok(c.clone());
        }
        crate::tls::install_crypto_provider();
        let mut builder = reqwest::Client::builder().connect_timeout(self.options.local_switch_timeout);
        if let Some(ca) = &self.options.ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("cannot read CA file {}: {e}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| e.to_string())?;
            builder = builder.tls_certs_merge(certs);
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
                    break;
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
