//! `kinopio leaf status`: fetch a running leaf's status report (`/status.json` on its HTTPS
//! discovery server, what its status page shows) and print it, readable or as one JSON line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use kinopio_leaf::status_page::{STATUS_PATH, StatusReport};
use serde_json::Value as Json;

use crate::output::{self, Failure};

/// Options of `kinopio leaf status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The leaf's discovery server: `https://host:port`, its manifest URL
    /// (`…/.well-known/kinopio-leader.json`, the `discoveryUrl` that `leaf start` prints) or
    /// the status URL itself.
    #[arg(long, value_name = "URL", env = "KINOPIO_LEAF_URL")]
    url: String,
    /// CA certificate (PEM) that verifies the leaf: the `caCertFile` that `leaf start`
    /// prints, or the file downloaded from `https://host:port/ca.pem` after comparing its
    /// fingerprint [default: the system's roots].
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Give up after this long.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    timeout_ms: u64,
    /// Print the report as one JSON object (the `/status.json` body).
    #[arg(long)]
    json: bool,
}

/// The status URL for what the user gave: a base, a manifest URL or a status URL.
fn status_url(given: &str) -> Result<String, String> {
    let mut url = url::Url::parse(given.trim())
        .map_err(|e| format!("{given:?} is not a URL ({e}); give https://host:port of the leaf"))?;
    if url.scheme() != "https" {
        return Err(format!("{given:?} is not https://: a leaf's discovery server only speaks HTTPS"));
    }
    let path = url.path();
    if path != STATUS_PATH && path != kinopio_leaf::status_page::WELL_KNOWN_STATUS_PATH {
        url.set_path(STATUS_PATH);
    }
    url.set_query(None);
    Ok(url.to_string())
}

/// Runs `kinopio leaf status`.
pub(crate) async fn run(args: StatusArgs) -> Result<(), Failure> {
    let json = args.json;
    let url = status_url(&args.url).map_err(|message| Failure::new(2, "usage", message, json))?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let timeout = Duration::from_millis(args.timeout_ms);
    let mut builder = reqwest::Client::builder().no_proxy().timeout(timeout).connect_timeout(timeout);
    if let Some(path) = &args.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| Failure::new(2, "usage", format!("cannot read the CA file {}: {e}", path.display()), json))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| Failure::new(2, "usage", format!("{} holds no PEM certificate: {e}", path.display()), json))?;
        builder = builder.tls_certs_only(certs);
    }
    let client = builder.build().map_err(|e| Failure::new(1, "tls", format!("cannot set up HTTPS: {e}"), json))?;
    let response = client.get(&url).send().await.map_err(|e| {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        let hint = if text.contains("certificate") || text.contains("UnknownIssuer") {
            "; pass the leaf's CA with --ca-file (leaf start prints caCertFile)"
        } else {
            "; is the leaf running, and is this its discovery URL?"
        };
        Failure::new(3, "not-connected", format!("cannot reach {url}: {text}{hint}"), json)
    })?;
    if !response.status().is_success() {
        return Err(Failure::new(
            1,
            "bad-response",
            format!("{url} answered {}; is this a kinopio leaf's discovery server?", response.status()),
            json,
        ));
    }
    let body: Json = response
        .json()
        .await
        .map_err(|e| Failure::new(1, "bad-response", format!("{url} did not answer JSON: {e}"), json))?;
    let report: StatusReport = serde_json::from_value(body.clone()).map_err(|e| {
        Failure::new(1, "bad-response", format!("{url} did not answer a kinopio leaf status report: {e}"), json)
    })?;
    if json {
        output::line(&body);
    } else {
        for line in readable(&report) {
            output::text(&line);
        }
    }
    Ok(())
}

/// The report as lines for a terminal. Pure.
pub(crate) fn readable(report: &StatusReport) -> Vec<String> {
    let mut lines = vec![format!("leaf {} · {} · node {}", report.server_name, report.state, report.node_id)];
    match &report.election {
        None => {
            lines.push(format!("role: {} (manual: kinopio leaf start, no election)", report.role));
            lines.push(format!("leader: {} (itself), epoch {}", report.leader.node_id, report.leader.epoch));
            lines.push("members: none (a manual leaf takes part in no election)".to_owned());
        }
        Some(election) => {
            lines.push(format!("role: {} in namespace {}", report.role, election.namespace));
            lines.push(format!("leader: {}, epoch {}", report.leader.node_id, report.leader.epoch));
            for member in &election.members {
                lines.push(format!(
                    "member: {} {} epoch {} rtt {}{}",
                    member.node_id,
                    member.role,
                    member.epoch,
                    member.backbone_rtt_ms.map_or("-".to_owned(), |ms| format!("{ms:.1} ms")),
                    if member.this_node { " (this node)" } else { "" }
                ));
            }
        }
    }
    let servers = if report.bridge.backbone_servers.is_empty() {
        "none".to_owned()
    } else {
        report.bridge.backbone_servers.join(", ")
    };
    lines.push(format!(
        "bridge: {} · backbone RTT {} · servers {servers}",
        report.bridge.state,
        report.bridge.rtt_ms.map_or("not measured".to_owned(), |ms| format!("{ms:.2} ms"))
    ));
    lines.push(match &report.traffic {
        Some(t) => format!(
            "traffic: {} clients · in {:.1} msg/s ({} total) · out {:.1} msg/s ({} total)",
            t.clients, t.in_msgs_per_sec, t.in_msgs, t.out_msgs_per_sec, t.out_msgs
        ),
        None => "traffic: not sampled yet".to_owned(),
    });
    let trust = &report.tls.trust;
    let trust_state = trust.get("state").and_then(Json::as_str).unwrap_or("unknown");
    let expiry = if report.tls.expires_in_seconds < 0 {
        "EXPIRED".to_owned()
    } else {
        format!("in {:.1} days", report.tls.expires_in_seconds as f64 / 86400.0)
    };
    lines.push(format!(
        "certificate: {}, valid until {} ({expiry}) · trust here: {trust_state} · CA sha256 {}",
        report.tls.source, report.tls.not_after, report.tls.ca_cert_sha256
    ));
    lines.push(format!("connect: {} · manifest {}", report.connect.wss_url, report.connect.manifest_url));
    lines.push(format!("CA certificate: {}", report.connect.ca_cert_url));
    lines.push(format!("example: {}", report.connect.sub_example));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_urls_come_from_any_leaf_url() {
        assert_eq!(status_url("https://127.0.0.1:8443").unwrap(), "https://127.0.0.1:8443/status.json");
        assert_eq!(
            status_url("https://127.0.0.1:8443/.well-known/kinopio-leader.json?x=1").unwrap(),
            "https://127.0.0.1:8443/status.json"
        );
        assert_eq!(
            status_url("https://h.local:1/.well-known/kinopio-status.json").unwrap(),
            "https://h.local:1/.well-known/kinopio-status.json"
        );
        assert!(status_url("http://127.0.0.1:8443").is_err());
        assert!(status_url("not a url").is_err());
    }
}
