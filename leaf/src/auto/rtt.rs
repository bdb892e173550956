//! Backbone round-trip time as the election ranks it: the TCP connect time to the backbone
//! servers, measured like kinopio-hub 0.1.1 ([Backbone RTT](kinopio::wire::protocol#backbone-rtt)) but in a background task, so the
//! election loop never waits for it (0.1.1 blocks its heartbeat loop for up to 0.5 s per
//! server, [0.1.1 weakness E8](kinopio::wire::protocol#known-weaknesses-of-011-that-kinopio-fixes)).
//!
//! For each backbone URL the host and port are taken from the URL (default port: 80 for
//! `ws`/`http`, 443 for `wss`/`https`, 4222 otherwise); a TCP connect is timed with a 0.5 s
//! limit; the RTT is the minimum over the servers that answered, `None` when none did or none
//! is configured. All servers are probed at once, every 5 s.
//!
//! The value is **self-reported**: peers rank a node by the `backboneRttMs` it advertises and
//! cannot verify it, so a node can claim a better RTT than it has (use a namespace secret to
//! keep strangers out; members are trusted).

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Default time between probes.
pub(crate) const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// Default limit of one TCP connect.
pub(crate) const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Where a backbone URL's TCP connect goes: `(host, port)`, or `None` when the URL has no
/// host (`nats://hub.example.com` → `hub.example.com:4222`, `wss://` → 443). Pure.
pub(crate) fn probe_target(url: &str) -> Option<(String, u16)> {
    let parsed = url::Url::parse(url.trim()).ok()?;
    let host = match parsed.host()? {
        url::Host::Domain(name) => name.to_owned(),
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Ipv6(ip) => ip.to_string(),
    };
    let port = parsed.port().unwrap_or(match parsed.scheme() {
        "ws" | "http" => 80,
        "wss" | "https" => 443,
        _ => 4222,
    });
    Some((host, port))
}

/// Times one TCP connect to `(host, port)` (name resolution included, as 0.1.1 does), in
/// milliseconds; `None` on failure or after `timeout`.
pub(crate) async fn connect_time_ms(host: &str, port: u16, timeout: Duration) -> Option<f64> {
    let started = Instant::now();
    let connect = tokio::net::TcpStream::connect((host, port));
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(stream)) => {
            let elapsed = started.elapsed().as_secs_f64() * 1000.0;
            drop(stream);
            Some(elapsed)
        }
        _ => None,
    }
}

/// One measurement: all servers at once, the minimum of those that connected.
pub(crate) async fn measure(backbone_servers: &[String], timeout: Duration) -> Option<f64> {
    let probes = backbone_servers
        .iter()
        .filter_map(|url| probe_target(url))
        .map(|(host, port)| async move { connect_time_ms(&host, port, timeout).await });
    futures::future::join_all(probes).await.into_iter().flatten().reduce(f64::min)
}

/// Measures now and then every `interval`, sending each result to `results` (also `None`).
/// Ends when the receiver is dropped. With no backbone servers it sends `None` once.
pub(crate) fn spawn_probe(
    backbone_servers: Vec<String>,
    interval: Duration,
    timeout: Duration,
    results: mpsc::Sender<Option<f64>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if backbone_servers.is_empty() {
            let _ = results.send(None).await;
            return;
        }
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let rtt = measure(&backbone_servers, timeout).await;
            tracing::trace!(?rtt, "backbone RTT measured");
            if results.send(rtt).await.is_err() {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_targets_default_the_port_by_scheme() {
        assert_eq!(probe_target("nats://hub.example.com"), Some(("hub.example.com".into(), 4222)));
        assert_eq!(probe_target("wss://hub.example.com"), Some(("hub.example.com".into(), 443)));
        assert_eq!(probe_target("tls://10.0.0.1:7422"), Some(("10.0.0.1".into(), 7422)));
    }

    #[test]
    fn targets_follow_the_reference_port_rule() {
        assert_eq!(probe_target("ws://h"), Some(("h".into(), 80)));
        assert_eq!(probe_target("http://h"), Some(("h".into(), 80)));
        assert_eq!(probe_target("https://h"), Some(("h".into(), 443)));
        assert_eq!(probe_target("tls://h"), Some(("h".into(), 4222)));
        assert_eq!(probe_target("nats://[::1]:7422"), Some(("::1".into(), 7422)));
        assert_eq!(probe_target("not a url"), None);
        assert_eq!(probe_target("unix:/tmp/x"), None);
    }

    #[tokio::test]
    async fn measures_the_minimum_over_reachable_servers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let servers = vec![format!("nats://127.0.0.1:{closed}"), format!("nats://127.0.0.1:{port}")];
        let rtt = measure(&servers, DEFAULT_PROBE_TIMEOUT).await.unwrap();
        assert!((0.0..500.0).contains(&rtt), "{rtt}");
        assert_eq!(measure(&servers[..1], DEFAULT_PROBE_TIMEOUT).await, None);
        assert_eq!(measure(&[], DEFAULT_PROBE_TIMEOUT).await, None);
    }
}
