//! Local-leader discovery: find the leaf a LAN's elected leader runs, and hot-switch to it
//! when it really accepts a connection; fall back to the configured servers when it goes.
//!
//! # Layout
//! - `policy`: when to take, keep or leave a leader — a pure state machine (observations and
//!   `now` in, a verdict out), unit tested with a fake clock.
//! - `fetch`: the HTTPS executor — fetches manifests verified by what discovery trusts.
//! - `browse`: the mDNS executor — finds the manifest URLs of a namespace's leaders.
//! - `Discovery` (this module) puts the executors together for the engine's driver, which
//!   asks the policy what to do and performs the switches itself.
//!
//! A leader is found through a manifest URL or by browsing mDNS (`_kinopio-hub._tcp.local.`)
//! for the namespace and fetching the manifest each leader record points to. What is trusted:
//! with a namespace secret, only the namespace CA derived from it; else with a CA file, only
//! that CA; else the system roots (an open namespace: a stranger can redirect the hub). The
//! manifest is fetched over HTTPS verified that way and parsed strictly
//! ([`LeaderManifest::parse`]); the hub then connects to the leader's `wss://` listener
//! verified the same way (never to plaintext unless allowed). A stranger's mDNS record cannot
//! shadow the real leader: every record is tried. Every refused candidate is visible (a
//! [`HubEvent::LocalLeaderRejected`](crate::HubEvent::LocalLeaderRejected) and a warning, once
//! per candidate and reason); nothing here disturbs the remote session.

mod browse;
mod fetch;
pub(crate) mod policy;

use std::net::IpAddr;

use crate::options::{Auth, DiscoveryOptions, HubOptions};
use crate::wire::manifest::LeaderManifest;

use browse::Browser;
use fetch::{Fetcher, SetupError, Trust};
use policy::{Candidate, FetchProblem, Policy, Timing};

/// The discovery of one hub: its policy and its executors.
#[derive(Debug)]
pub(crate) struct Discovery {
    options: DiscoveryOptions,
    /// What to do, decided purely.
    pub(crate) policy: Policy,
    fetcher: Fetcher,
    browser: Browser,
}

impl Discovery {
    pub(crate) fn new(options: DiscoveryOptions) -> Discovery {
        let timing = Timing {
            probe_interval: options.probe_interval,
            local_switch_timeout: options.local_switch_timeout,
            cache_ttl: options.cache_ttl,
            allow_plaintext: options.allow_plaintext,
        };
        Discovery {
            policy: Policy::new(timing),
            fetcher: Fetcher::new(options.clone()),
            browser: Browser::new(options.interfaces.clone()),
            options,
        }
    }

    /// How long a leader gets to accept a connection.
    pub(crate) fn local_switch_timeout(&self) -> std::time::Duration {
        self.options.local_switch_timeout
    }

    /// The options to connect to a leader with: `base`, plus what discovery trusts (the
    /// namespace or user CA) and the namespace's LAN token. `Err` when the trust cannot be
    /// set up (discovery is then off, with the reason).
    pub(crate) async fn leader_options(&mut self, base: &HubOptions) -> Result<HubOptions, SetupError> {
        let trust = self.fetcher.trust().await?;
        let mut options = base.clone();
        if let Some(ca) = trust.ca_file() {
            options = options.tls_ca_file(ca);
        }
        if let Trust::Namespace { lan_token, .. } = &trust {
            options = options.auth(Auth::Token(lan_token.expose().to_owned()));
        }
        Ok(options.connect_timeout(self.options.local_switch_timeout))
    }

    /// Fetches the manifest at `url` again.
    pub(crate) async fn fetch(&mut self, url: &str) -> Result<LeaderManifest, FetchProblem> {
        self.fetcher.fetch(url).await
    }

    /// Every candidate manifest URL (configured, then mDNS) and what fetching it gave.
    pub(crate) async fn survey(&mut self) -> Vec<Candidate> {
        let mut urls = Vec::new();
        if let Some(url) = self.options.manifest_url.clone() {
            urls.push(url);
        }
        if let Some(namespace) = self.options.namespace.clone() {
            for url in self.browser.browse(&namespace).await {
                if !urls.contains(&url) {
                    urls.push(url);
                }
            }
        }
        let mut candidates = Vec::new();
        for url in urls {
            let outcome = self.fetcher.fetch(&url).await;
            let same_host = url::Url::parse(&url)
                .ok()
                .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()))
                .and_then(|h| h.parse::<IpAddr>().ok())
                .is_some_and(is_local_address);
            candidates.push(Candidate { url, outcome, same_host });
        }
        candidates
    }
}

/// True for loopback addresses and addresses of this machine's interfaces.
fn is_local_address(ip: IpAddr) -> bool {
    ip.is_loopback() || if_addrs::get_if_addrs().is_ok_and(|ifs| ifs.iter().any(|i| i.ip() == ip))
}

/// What [`check_leaders`] found about one candidate leader.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct LeaderCheck {
    /// The manifest URL (configured, or from an mDNS record).
    pub url: String,
    /// The leader's node id when its manifest verified.
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
///
/// # Cancel safety
/// Cancel safe: it only reads.
pub async fn check_leaders(options: &DiscoveryOptions) -> Vec<LeaderCheck> {
    let mut discovery = Discovery::new(options.clone());
    if let Err(e) = discovery.fetcher.trust().await {
        return vec![LeaderCheck {
            url: options.manifest_url.clone().unwrap_or_default(),
            node_id: None,
            wss_url: None,
            usable: false,
            problem: Some(e.to_string()),
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
                usable: policy::usable(&m),
                problem: None,
                untrusted: false,
            },
            Err(e) => LeaderCheck {
                url: candidate.url,
                node_id: None,
                wss_url: None,
                usable: false,
                untrusted: matches!(e, FetchProblem::Untrusted(_)),
                problem: Some(e.to_string()),
            },
        })
        .collect()
}
