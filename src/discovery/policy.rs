//! When to take, keep or leave a local leader — decided purely, like
//! [`Ranking`](crate::selection::ranking::Ranking): observations and `now` in, a [`Verdict`] out. No
//! I/O and no clock of its own, so every rule is unit tested with a fake clock.
//!
//! The rules:
//! - With no leader in use, [`Verdict::Survey`]: look for leaders (every `probe_interval`, or
//!   every [`FOLLOW_PROBE`] for [`FOLLOW_WINDOW`] after leaving one, because its successor is
//!   usually elected within seconds).
//! - A survey's candidates become [`Verdict::Try`]: every usable leader (it leads, and its
//!   bridge is up or disabled) with the URLs to try, in order — its plain loopback client URL
//!   when it runs on this machine, then its `wss://` URL (plaintext to another host only when
//!   allowed). Candidates that did not verify, or offer only plaintext, are rejected with a
//!   reason; every candidate is tried, so a stranger's record cannot shadow the real leader.
//! - With a leader in use: leave when the hub moved away from it, or has been disconnected
//!   from it for `local_switch_timeout`; re-fetch its manifest every `cache_ttl` and leave
//!   when another node leads, its bridge is not usable, or the manifest is gone.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::server::ServerUrl;
use crate::wire::manifest::{BridgeState, LeaderManifest};

/// After leaving a leader, look for its successor this often ...
pub(crate) const FOLLOW_PROBE: Duration = Duration::from_millis(500);
/// ... for this long.
pub(crate) const FOLLOW_WINDOW: Duration = Duration::from_secs(15);

/// The timers and switches of the policy (from [`DiscoveryOptions`](crate::DiscoveryOptions)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// How often to look for a leader while none is in use.
    pub(crate) probe_interval: Duration,
    /// How long a leader's connection may be down before the hub leaves it.
    pub(crate) local_switch_timeout: Duration,
    /// How long a fetched manifest is trusted before it is fetched again.
    pub(crate) cache_ttl: Duration,
    /// Whether a plaintext leader URL may be used.
    pub(crate) allow_plaintext: bool,
}

/// One candidate leader found by a survey.
#[derive(Debug)]
pub(crate) struct Candidate {
    /// The manifest URL (configured, or from an mDNS record).
    pub(crate) url: String,
    /// What fetching it gave.
    pub(crate) outcome: Result<LeaderManifest, FetchProblem>,
    /// True when the manifest URL's host is this machine.
    pub(crate) same_host: bool,
}

/// Why a manifest could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FetchProblem {
    /// It did not verify against what discovery trusts: a candidate to report.
    Untrusted(String),
    /// Anything else (unreachable, not served, malformed).
    Unavailable(String),
}

impl std::fmt::Display for FetchProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchProblem::Untrusted(s) | FetchProblem::Unavailable(s) => f.write_str(s),
        }
    }
}

/// A leader to try, with the URLs to try for it in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Attempt {
    /// Its manifest.
    pub(crate) manifest: LeaderManifest,
    /// Where the manifest came from.
    pub(crate) manifest_url: String,
    /// The URLs to try, best first.
    pub(crate) servers: Vec<ServerUrl>,
}

/// A refused candidate (url and reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    /// The manifest or server URL.
    pub(crate) url: String,
    /// Why it was refused.
    pub(crate) reason: String,
    /// True the first time this url was refused for this reason (warn once, then debug).
    pub(crate) first: bool,
}

/// What the hub's connection looks like to the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Link {
    /// The hub is on the leader in use.
    pub(crate) on_leader: bool,
    /// The hub's connection is up.
    pub(crate) connected: bool,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// Nothing this round.
    Stay,
    /// Look for leaders, then report [`Policy::surveyed`].
    Survey,
    /// Fetch the leader's manifest again from `url`, then report [`Policy::rechecked`].
    Recheck {
        /// The manifest URL of the leader in use.
        url: String,
    },
    /// Try these leaders in order (each with its URLs in order); report the first that
    /// connects with [`Policy::joined`] and each failure with [`Policy::reject`].
    Try {
        /// The usable leaders.
        attempts: Vec<Attempt>,
        /// Candidates refused outright.
        rejected: Vec<Rejection>,
    },
    /// Go back to the configured servers, then report [`Policy::left`] or
    /// [`Policy::leave_failed`].
    Leave {
        /// Why.
        reason: String,
    },
}

/// The leader in use.
#[derive(Debug)]
struct InUse {
    manifest: LeaderManifest,
    manifest_url: String,
    server: ServerUrl,
    /// When its manifest was last fetched (or the hub joined it).
    checked: Instant,
    /// Since when the connection to it has been down.
    disconnected_since: Option<Instant>,
}

/// The discovery policy of one hub (see the module docs).
#[derive(Debug)]
pub(crate) struct Policy {
    timing: Timing,
    in_use: Option<InUse>,
    /// When the hub last left a leader.
    left_at: Option<Instant>,
    /// Candidates already reported as rejected (url and reason), so each is warned once.
    reported: HashSet<(String, String)>,
}

impl Policy {
    pub(crate) fn new(timing: Timing) -> Policy {
        Policy { timing, in_use: None, left_at: None, reported: HashSet::new() }
    }

    /// True while the hub is on a discovered leader.
    pub(crate) fn in_use(&self) -> bool {
        self.in_use.is_some()
    }

    /// The server of the leader in use.
    pub(crate) fn leader_server(&self) -> Option<&ServerUrl> {
        self.in_use.as_ref().map(|u| &u.server)
    }

    /// One round: what to do, given the hub's link at `now`.
    pub(crate) fn tick(&mut self, now: Instant, link: Link) -> Verdict {
        let Some(using) = &mut self.in_use else {
            return Verdict::Survey;
        };
        if link.connected {
            using.disconnected_since = None;
        } else if using.disconnected_since.is_none() {
            using.disconnected_since = Some(now);
        }
        if !link.on_leader {
            return Verdict::Leave { reason: "the hub moved away from the leader".to_owned() };
        }
        if using.disconnected_since.is_some_and(|t| now - t >= self.timing.local_switch_timeout) {
            return Verdict::Leave { reason: "connection to the leader lost".to_owned() };
        }
        if now - using.checked >= self.timing.cache_ttl {
            return Verdict::Recheck { url: using.manifest_url.clone() };
        }
        Verdict::Stay
    }

    /// The result of a [`Verdict::Recheck`]: stay (the same leader, still usable) or leave.
    pub(crate) fn rechecked(&mut self, now: Instant, outcome: Result<LeaderManifest, FetchProblem>) -> Verdict {
        let Some(using) = &mut self.in_use else {
            return Verdict::Stay;
        };
        let reason = match outcome {
            Ok(m) if m.node_id == using.manifest.node_id && usable(&m) => {
                using.manifest = m;
                using.checked = now;
                return Verdict::Stay;
            }
            Ok(m) if m.node_id == using.manifest.node_id => format!("the leader's bridge is {}", m.bridge_state),
            Ok(m) => format!("{} is the leader now", m.node_id),
            Err(e) => format!("manifest unavailable: {e}"),
        };
        Verdict::Leave { reason }
    }

    /// The result of a [`Verdict::Survey`]: the leaders to try, and the refused candidates.
    pub(crate) fn surveyed(&mut self, candidates: Vec<Candidate>) -> Verdict {
        let mut attempts = Vec::new();
        let mut rejected = Vec::new();
        for candidate in candidates {
            match candidate.outcome {
                Ok(manifest) if usable(&manifest) => {
                    let servers = candidate_urls(&manifest, candidate.same_host, self.timing.allow_plaintext);
                    if servers.is_empty() {
                        let reason =
                            format!("the manifest offers only plaintext ({}); not allowed", manifest.wss_url.as_str());
                        rejected.push(self.reject(&candidate.url, reason));
                    } else {
                        attempts.push(Attempt { manifest, manifest_url: candidate.url, servers });
                    }
                }
                Ok(manifest) => {
                    tracing::debug!(url = %candidate.url, bridge = %manifest.bridge_state, "leader not usable yet");
                }
                Err(FetchProblem::Untrusted(reason)) => rejected.push(self.reject(&candidate.url, reason)),
                Err(FetchProblem::Unavailable(e)) => {
                    tracing::debug!(url = %candidate.url, error = %e, "no leader manifest");
                }
            }
        }
        if attempts.is_empty() && rejected.is_empty() { Verdict::Stay } else { Verdict::Try { attempts, rejected } }
    }

    /// Records a refused candidate; `first` says whether it is new.
    pub(crate) fn reject(&mut self, url: &str, reason: String) -> Rejection {
        let first = self.reported.insert((url.to_owned(), reason.clone()));
        Rejection { url: url.to_owned(), reason, first }
    }

    /// The hub is on `server`, the leader of `attempt`, since `now`.
    pub(crate) fn joined(&mut self, now: Instant, attempt: Attempt, server: ServerUrl) {
        self.in_use = Some(InUse {
            manifest: attempt.manifest,
            manifest_url: attempt.manifest_url,
            server,
            checked: now,
            disconnected_since: None,
        });
    }

    /// The hub went back to the configured servers at `now`.
    pub(crate) fn left(&mut self, now: Instant) {
        self.in_use = None;
        self.left_at = Some(now);
    }

    /// Leaving failed (no configured server reachable): stay on the leader, ask again next
    /// round (if the leader comes back, the hub simply stays).
    pub(crate) fn leave_failed(&mut self, now: Instant) {
        if let Some(using) = &mut self.in_use {
            using.checked = now;
        }
    }

    /// How long to wait before the next round.
    pub(crate) fn next_round(&self, now: Instant) -> Duration {
        if self.in_use.is_some() {
            // Watch a leader in use closely (its lease is short), but not more often than
            // the manifest cache allows.
            self.timing.cache_ttl.min(Duration::from_secs(1)).max(Duration::from_millis(200))
        } else if self.left_at.is_some_and(|at| now - at < FOLLOW_WINDOW) {
            self.timing.probe_interval.min(FOLLOW_PROBE)
        } else {
            self.timing.probe_interval
        }
    }
}

/// A leader worth switching to: it leads, and its leaf is bridged to the backbone (or has no
/// backbone at all). A leaf still connecting upstream would cut the hub off.
pub(crate) fn usable(m: &LeaderManifest) -> bool {
    m.is_leader && matches!(m.bridge_state, BridgeState::Connected | BridgeState::Disabled)
}

/// The URLs to try for a leader: its plain client URL when it runs on this machine (it
/// listens on loopback only), then its WSS URL. Plaintext to another host (`ws://`) only
/// when allowed.
fn candidate_urls(manifest: &LeaderManifest, same_host: bool, allow_plaintext: bool) -> Vec<ServerUrl> {
    let mut urls = Vec::new();
    // `nats://` is not a special scheme to the URL parser, so its host is text: parse it.
    let loopback_client = manifest
        .client_url
        .url()
        .host_str()
        .map(|h| h.trim_matches(['[', ']']))
        .and_then(|h| h.parse::<std::net::IpAddr>().ok())
        .is_some_and(|ip| ip.is_loopback());
    if same_host
        && loopback_client
        && let Ok(client) = manifest.client_url.as_str().parse()
    {
        urls.push(client);
    }
    let wss = manifest.wss_url.as_str();
    if (wss.starts_with("wss://") || allow_plaintext)
        && let Ok(wss) = wss.parse()
    {
        urls.push(wss);
    }
    urls
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const TIMING: Timing = Timing {
        probe_interval: Duration::from_secs(5),
        local_switch_timeout: Duration::from_millis(1500),
        cache_ttl: Duration::from_secs(5),
        allow_plaintext: false,
    };

    fn manifest_with(node: &str, wss: &str, client: &str, bridge: &str, leader: bool) -> LeaderManifest {
        let body = format!(
            r#"{{"version": 1, "nodeId": "{node}", "advertisedHostname": "192.168.1.9", "wssUrl": "{wss}",
            "clientUrl": "{client}", "monitorUrl": "http://127.0.0.1:3", "discoveryUrl": "https://192.168.1.9:4/m.json",
            "fallbackServers": [], "backboneRttMs": null, "backboneServers": [], "bridgeState": "{bridge}",
            "leaderEpoch": 1, "expiresAt": "2026-11-22T08:28:37Z", "leaseExpiresAt": "2026-11-22T08:28:37Z",
            "isLeader": {leader}, "candidateRole": "leader"}}"#
        );
        LeaderManifest::parse(body.as_bytes(), time::macros::datetime!(2026-11-22 08:28:33 UTC)).unwrap()
    }

    fn manifest(wss: &str, client: &str) -> LeaderManifest {
        manifest_with("n1", wss, client, "disabled", true)
    }

    fn candidate(url: &str, m: LeaderManifest, same_host: bool) -> Candidate {
        Candidate { url: url.to_owned(), outcome: Ok(m), same_host }
    }

    fn servers(v: &Verdict) -> Vec<Vec<String>> {
        match v {
            Verdict::Try { attempts, .. } => {
                attempts.iter().map(|a| a.servers.iter().map(|s| s.as_str().to_owned()).collect()).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Joins the leader of a one-candidate survey at `now`.
    fn join(policy: &mut Policy, now: Instant, m: LeaderManifest) -> ServerUrl {
        let Verdict::Try { mut attempts, .. } = policy.surveyed(vec![candidate("https://192.168.1.9:4/m", m, false)])
        else {
            panic!("expected attempts")
        };
        let attempt = attempts.remove(0);
        let server = attempt.servers[0].clone();
        policy.joined(now, attempt, server.clone());
        server
    }

    #[test]
    fn a_manifest_never_moves_the_hub_to_plaintext_unless_allowed() {
        let mut strict = Policy::new(TIMING);
        let url = "https://192.168.1.9:4/m.json";
        // A stranger's manifest pointing at its plaintext server: nothing to try, one rejection.
        let v = strict.surveyed(vec![candidate(url, manifest("ws://192.168.1.9:1", "nats://192.168.1.9:2"), false)]);
        match &v {
            Verdict::Try { attempts, rejected } => {
                assert!(attempts.is_empty());
                assert!(rejected[0].reason.contains("only plaintext"), "{rejected:?}");
            }
            other => panic!("{other:?}"),
        }
        // A plaintext client URL on another host is never used, even with wss offered.
        let v = strict.surveyed(vec![candidate(url, manifest("wss://192.168.1.9:1", "nats://192.168.1.9:2"), false)]);
        assert_eq!(servers(&v), [["wss://192.168.1.9:1"]]);
        let mut lax = Policy::new(Timing { allow_plaintext: true, ..TIMING });
        let v = lax.surveyed(vec![candidate(url, manifest("ws://192.168.1.9:1", "nats://192.168.1.9:2"), false)]);
        assert_eq!(servers(&v), [["ws://192.168.1.9:1"]]);
        // The loopback client URL is used only for a leader on this machine.
        let v = strict.surveyed(vec![candidate(
            "https://127.0.0.1:4/m",
            manifest("wss://127.0.0.1:1", "nats://127.0.0.1:2"),
            true,
        )]);
        assert_eq!(servers(&v), [["nats://127.0.0.1:2", "wss://127.0.0.1:1"]]);
        let v = strict.surveyed(vec![candidate(url, manifest("wss://127.0.0.1:1", "nats://127.0.0.1:2"), false)]);
        assert_eq!(servers(&v), [["wss://127.0.0.1:1"]]);
    }

    #[test]
    fn every_candidate_is_tried_and_untrusted_ones_are_reported_once() {
        let mut policy = Policy::new(TIMING);
        let survey = || {
            vec![
                Candidate {
                    url: "https://10.0.0.66/m".into(),
                    outcome: Err(FetchProblem::Untrusted("TLS verification failed".into())),
                    same_host: false,
                },
                Candidate {
                    url: "https://10.0.0.5/gone".into(),
                    outcome: Err(FetchProblem::Unavailable("HTTP 404".into())),
                    same_host: false,
                },
                candidate(
                    "https://10.0.0.7/m",
                    manifest_with("n7", "wss://10.0.0.7:1", "nats://10.0.0.7:2", "connected", true),
                    false,
                ),
                candidate(
                    "https://10.0.0.8/m",
                    manifest_with("n8", "wss://10.0.0.8:1", "nats://10.0.0.7:2", "connecting", true),
                    false,
                ),
                candidate(
                    "https://10.0.0.9/m",
                    manifest_with("n9", "wss://10.0.0.9:1", "nats://10.0.0.7:2", "disabled", false),
                    false,
                ),
            ]
        };
        let Verdict::Try { attempts, rejected } = policy.surveyed(survey()) else { panic!() };
        // The stranger's record does not hide the real leader; a leader whose bridge is still
        // connecting, and a non-leader, are not tried.
        assert_eq!(attempts.iter().map(|a| a.manifest.node_id.as_str()).collect::<Vec<_>>(), ["n7"]);
        assert_eq!(rejected.len(), 1);
        assert!(rejected[0].first);
        let Verdict::Try { rejected, .. } = policy.surveyed(survey()) else { panic!() };
        assert!(!rejected[0].first, "the same refusal is warned once");
        assert!(policy.reject("wss://10.0.0.7:1", "did not connect".into()).first);
        assert!(!policy.reject("wss://10.0.0.7:1", "did not connect".into()).first);
        // Nothing at all: stay.
        assert_eq!(policy.surveyed(Vec::new()), Verdict::Stay);
    }

    #[test]
    fn a_leader_is_rechecked_every_cache_ttl_and_left_when_it_changes() {
        let t0 = Instant::now();
        let mut policy = Policy::new(TIMING);
        assert_eq!(policy.tick(t0, Link { on_leader: false, connected: true }), Verdict::Survey);
        join(&mut policy, t0, manifest("wss://192.168.1.9:1", "nats://192.168.1.9:2"));
        assert!(policy.in_use());
        let up = Link { on_leader: true, connected: true };
        assert_eq!(policy.tick(t0 + Duration::from_secs(4), up), Verdict::Stay);
        let at = t0 + Duration::from_secs(5);
        assert!(matches!(policy.tick(at, up), Verdict::Recheck { url } if url == "https://192.168.1.9:4/m"));
        // Same leader, still usable: stay, and the next recheck is a cache_ttl later.
        assert_eq!(policy.rechecked(at, Ok(manifest("wss://192.168.1.9:1", "nats://192.168.1.9:2"))), Verdict::Stay);
        assert_eq!(policy.tick(at + Duration::from_secs(4), up), Verdict::Stay);
        // Another node leads now.
        let other = manifest_with("n2", "wss://192.168.1.9:1", "nats://10.0.0.7:2", "connected", true);
        assert!(
            matches!(policy.rechecked(at, Ok(other)), Verdict::Leave { reason } if reason == "n2 is the leader now")
        );
        // Its bridge went down.
        let down = manifest_with("n1", "wss://192.168.1.9:1", "nats://10.0.0.7:2", "connecting", true);
        assert!(
            matches!(policy.rechecked(at, Ok(down)), Verdict::Leave { reason } if reason == "the leader's bridge is connecting")
        );
        // Its manifest is gone.
        let gone = Err(FetchProblem::Unavailable("HTTP 503".into()));
        assert!(
            matches!(policy.rechecked(at, gone), Verdict::Leave { reason } if reason.starts_with("manifest unavailable"))
        );
    }

    #[test]
    fn a_short_outage_is_ridden_out_and_a_long_one_leaves() {
        let t0 = Instant::now();
        let mut policy = Policy::new(TIMING);
        join(&mut policy, t0, manifest("wss://192.168.1.9:1", "nats://192.168.1.9:2"));
        let down = Link { on_leader: true, connected: false };
        let up = Link { on_leader: true, connected: true };
        assert_eq!(policy.tick(t0 + Duration::from_millis(100), down), Verdict::Stay);
        assert_eq!(policy.tick(t0 + Duration::from_millis(1000), down), Verdict::Stay);
        // Back before local_switch_timeout: the outage clock resets.
        assert_eq!(policy.tick(t0 + Duration::from_millis(1200), up), Verdict::Stay);
        assert_eq!(policy.tick(t0 + Duration::from_millis(1300), down), Verdict::Stay);
        assert_eq!(policy.tick(t0 + Duration::from_millis(2700), down), Verdict::Stay);
        assert!(matches!(
            policy.tick(t0 + Duration::from_millis(2800), down),
            Verdict::Leave { reason } if reason == "connection to the leader lost"
        ));
        // Moved away (a manual switch, say): leave at once.
        assert!(matches!(
            policy.tick(t0 + Duration::from_millis(2900), Link { on_leader: false, connected: true }),
            Verdict::Leave { reason } if reason == "the hub moved away from the leader"
        ));
    }

    #[test]
    fn after_leaving_the_successor_is_looked_for_often_for_a_while() {
        let t0 = Instant::now();
        let mut policy = Policy::new(TIMING);
        assert_eq!(policy.next_round(t0), Duration::from_secs(5));
        join(&mut policy, t0, manifest("wss://192.168.1.9:1", "nats://192.168.1.9:2"));
        assert_eq!(policy.next_round(t0), Duration::from_secs(1));
        // A failed leave keeps the leader and postpones the recheck.
        policy.leave_failed(t0 + Duration::from_secs(9));
        assert!(policy.in_use());
        assert_eq!(policy.tick(t0 + Duration::from_secs(13), Link { on_leader: true, connected: true }), Verdict::Stay);
        let left = t0 + Duration::from_secs(20);
        policy.left(left);
        assert!(!policy.in_use());
        assert_eq!(policy.next_round(left), FOLLOW_PROBE);
        assert_eq!(policy.next_round(left + FOLLOW_WINDOW - Duration::from_millis(1)), FOLLOW_PROBE);
        assert_eq!(policy.next_round(left + FOLLOW_WINDOW), Duration::from_secs(5));
    }
}
