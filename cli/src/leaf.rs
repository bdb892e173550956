//! `kinopio leaf start`: run a local leaf until SIGINT or SIGTERM, print a status snapshot
//! and then one line per meaningful change, stop cleanly.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use kinopio_leaf::runtime::{LeafNode, LeafOptions, LeafState, LeafStatus, StatusChange, TrustStatus, status_changes};
use serde_json::{Value as Json, json};

use crate::leaf_common::{StartArgs, leaf_failure};
use crate::output::{self, Failure};
use crate::signals;

/// `kinopio leaf ...`
#[derive(Debug, Subcommand)]
pub(crate) enum LeafCommand {
    /// Run a local nats-server leaf node until interrupted (SIGINT or SIGTERM).
    ///
    /// Serves NATS on 127.0.0.1 (plain TCP), NATS over WebSocket with TLS (wss://) and an
    /// HTTPS discovery manifest on the LAN address, and bridges to the backbone servers
    /// when given. Nothing on the LAN asks for authentication: anyone who can reach the
    /// LAN address can publish and subscribe through the WSS listener, and what they
    /// publish is bridged to the backbone.
    ///
    /// Prints a status snapshot (with --json: one JSON line with mode "leaf-start"), then
    /// one line per change of state, bridge, readiness, restarts or certificate. On SIGINT
    /// or SIGTERM it stops nats-server and removes the runtime files, then exits 0.
    Start(StartArgs),
    /// Take part in the LAN election of a discovery namespace and run the leaf while
    /// elected, until interrupted (SIGINT or SIGTERM).
    ///
    /// Devices running `leaf auto` with the same --discovery-namespace agree on one leader
    /// over UDP multicast (239.255.71.71, TTL 1; wire-compatible with kinopio-hub 0.1.1);
    /// the leader runs the leaf (as `leaf start` would), serves the leader manifest over
    /// HTTPS and advertises it over mDNS; the others follow it and take over when it goes:
    /// at once when it stops gracefully (it resigns), after --leader-missing-grace-ms when
    /// it vanishes. Prints one line per change of state, role, leader or epoch (with
    /// --json: one JSON object per line, mode "leaf-auto"). Without --namespace-secret
    /// anyone on the LAN can claim leadership; with it, only holders of the secret.
    Auto(crate::leaf_auto::AutoArgs),
    /// Show a running leaf's status: role, leader and epoch, bridge and backbone RTT,
    /// clients and message rates, certificate and trust, how to connect.
    ///
    /// Reads `/status.json` from the leaf's HTTPS discovery server — the data of the status
    /// page a browser sees at https://<leaf>/. Example:
    /// kinopio leaf status --url https://192.168.1.5:8443 --ca-file kinopio-ca.pem
    Status(crate::leaf_status::StatusArgs),
    /// Remove the local CA from every trust store kinopio added it to (`--install-ca-trust`).
    Untrust(UntrustArgs),
    /// Print the CA certificate of a secured namespace (PEM), derived from its secret.
    ///
    /// Every leader of the namespace serves a certificate from this CA, so a browser or
    /// another tool that trusts it once follows the leader from device to device. It can
    /// only vouch for LAN names and private addresses (name constraints). Its key is never
    /// written anywhere.
    ///
    /// Example: KINOPIO_NAMESPACE_SECRET=… kinopio leaf namespace-ca --discovery-namespace studio > studio-ca.pem
    NamespaceCa(NamespaceCaArgs),
}

/// Options of `kinopio leaf untrust`.
#[derive(Debug, Args)]
pub(crate) struct UntrustArgs {
    /// Cache root the CAs live under (as given to `leaf start` / `leaf auto`).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Options of `kinopio leaf namespace-ca`.
#[derive(Debug, Args)]
pub(crate) struct NamespaceCaArgs {
    /// The secured namespace.
    #[arg(long, value_name = "NAME")]
    discovery_namespace: String,
    /// Its secret (prefer the environment variable).
    #[arg(long, env = "KINOPIO_NAMESPACE_SECRET", hide_env_values = true)]
    namespace_secret: String,
    /// Write the certificate to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Print the namespace's LAN token instead (a secret: what a client that does not
    /// derive it itself passes as `--token` to a secured leaf's listeners).
    #[arg(long)]
    lan_token: bool,
}

/// Runs a `kinopio leaf` command.
pub(crate) async fn run(command: LeafCommand) -> Result<(), Failure> {
    match command {
        LeafCommand::Start(args) => start(args).await,
        LeafCommand::Auto(args) => crate::leaf_auto::run(args).await,
        LeafCommand::Status(args) => crate::leaf_status::run(args).await,
        LeafCommand::NamespaceCa(args) => namespace_ca(&args),
        LeafCommand::Untrust(args) => untrust(&args),
    }
}

fn untrust(args: &UntrustArgs) -> Result<(), Failure> {
    let mut options = LeafOptions::new();
    if let Some(dir) = &args.cache_dir {
        options = options.cache_dir(dir);
    }
    let tls_dir = options.ca_dir();
    // The device's own CA, and every secured namespace's CA this device led with.
    let mut dirs = vec![tls_dir.clone()];
    if let Ok(entries) = std::fs::read_dir(&tls_dir) {
        dirs.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    let mut report = kinopio_leaf::tls::UntrustReport::default();
    for dir in dirs {
        let one = kinopio_leaf::tls::untrust(&dir, std::time::Duration::from_secs(30));
        report.removed.extend(one.removed);
        report.failed.extend(one.failed);
    }
    if args.json {
        output::line(&json!({"removed": report.removed, "failed": report.failed}));
    } else if report.removed.is_empty() && report.failed.is_empty() {
        output::text("kinopio added no CA to any trust store here; nothing to remove");
    } else {
        for store in &report.removed {
            output::text(&format!("removed the kinopio CA from {store}"));
        }
        for failure in &report.failed {
            eprintln!("kinopio: could not remove the kinopio CA from {failure}");
        }
    }
    if report.failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(1, "untrust", format!("{} store(s) still trust the CA", report.failed.len()), args.json))
    }
}

fn namespace_ca(args: &NamespaceCaArgs) -> Result<(), Failure> {
    let ca = kinopio::trust::NamespaceCa::derive(&args.discovery_namespace, args.namespace_secret.as_bytes())
        .map_err(|e| Failure::new(2, "usage", e.to_string(), false))?;
    let text = if args.lan_token { format!("{}\n", ca.lan_token()) } else { ca.cert_pem().to_owned() };
    match &args.out {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| Failure::new(1, "io", format!("cannot write {}: {e}", path.display()), false)),
        None => {
            output::text(text.trim_end());
            Ok(())
        }
    }
}

async fn start(args: StartArgs) -> Result<(), Failure> {
    let json = args.json;
    // Created (and so its signal handlers installed) before anything starts.
    let shutdown = signals::shutdown();
    tokio::pin!(shutdown);
    let leaf = tokio::select! {
        started = LeafNode::start(args.options()) => {
            started.map_err(|err| leaf_failure(&err, json))?
        }
        () = &mut shutdown => {
            // Dropping the half-started leaf kills nats-server and cleans the runtime dir.
            if !json {
                output::text("interrupted while starting the leaf");
            }
            return Ok(());
        }
    };

    let mut watch = leaf.watch();
    let mut last = watch.borrow_and_update().clone();
    print_snapshot(&leaf, &last, json);
    let failure = loop {
        tokio::select! {
            () = &mut shutdown => break None,
            changed = watch.changed() => {
                if changed.is_err() {
                    break None;
                }
                let current = watch.borrow_and_update().clone();
                let changes = status_changes(&last, &current);
                if !changes.is_empty() {
                    print_changes(&changes, &current, json);
                }
                last = current;
                if last.state == LeafState::Failed {
                    let reason = last.last_error.clone().unwrap_or_else(|| "unknown error".to_owned());
                    break Some(Failure::new(
                        1,
                        "leaf-failed",
                        format!("nats-server keeps exiting and was not restarted again: {reason}; see {} (kept in --runtime-dir when given)", last.log_file.display()),
                        json,
                    ));
                }
            }
        }
    };

    if !json {
        output::text("stopping the leaf...");
    }
    tokio::select! {
        _ = leaf.stop() => {}
        () = signals::shutdown() => {
            // A second signal: stop waiting; dropping the leaf kills nats-server.
            if !json {
                output::text("second signal: killing nats-server");
            }
        }
    }
    if json {
        output::line(&json!({"mode": "leaf-start", "event": "stopped", "nodeId": leaf.node_id()}));
    } else {
        output::text("leaf runtime stopped");
    }
    match failure {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}

fn print_snapshot(leaf: &LeafNode, status: &LeafStatus, json: bool) {
    let urls = leaf.urls();
    if json {
        output::line(&json!({
            "mode": "leaf-start",
            "nodeId": leaf.node_id(),
            "clientUrl": urls.client_url,
            "wssUrl": urls.wss_url,
            "discoveryUrl": urls.discovery_url,
            "monitorUrl": urls.monitor_url,
            "caCertFile": leaf.ca_cert_file().display().to_string(),
            "status": to_json(status),
        }));
        return;
    }
    let backbone =
        if status.backbone_servers.is_empty() { "none".to_owned() } else { status.backbone_servers.join(", ") };
    let lines = [
        "leaf runtime started".to_owned(),
        format!("node_id: {}", leaf.node_id()),
        format!("client_url: {}", urls.client_url),
        format!("wss_url: {}", urls.wss_url),
        format!("discovery_url: {}", urls.discovery_url),
        format!("monitor_url: {}", urls.monitor_url),
        format!("ca_cert_file: {}", leaf.ca_cert_file().display()),
        format!("bridge_state: {}", status.bridge_state),
        format!("backbone_servers: {backbone}"),
        format!(
            "tls: {} certificate, valid until {}, trust: {}",
            tls_source(status),
            kinopio::wire::manifest::format_wire_time(status.tls.material.not_after),
            trust_text(&status.tls.trust)
        ),
        format!(
            "nats_server: {} ({}), pid {}",
            status.binary.path.display(),
            status.binary.version,
            status.process_id.map_or("-".to_owned(), |pid| pid.to_string())
        ),
        format!("runtime_dir: {}", status.runtime_dir.display()),
    ];
    for line in lines {
        output::text(&line);
    }
}

fn print_changes(changes: &[StatusChange], status: &LeafStatus, json: bool) {
    if json {
        output::line(&json!({
            "mode": "leaf-start",
            "event": "status-changed",
            "changes": to_json(&changes),
            "status": to_json(status),
        }));
        return;
    }
    let parts: Vec<String> = changes
        .iter()
        .map(|change| format!("{}: {} -> {}", change.field, brief(&change.from), brief(&change.to)))
        .collect();
    output::text(&format!("leaf status changed: {}", parts.join("; ")));
}

/// `value` as JSON; a value that cannot be represented (a non-UTF-8 path) becomes an
/// error object instead of a panic.
fn to_json<T: serde::Serialize>(value: &T) -> Json {
    serde_json::to_value(value).unwrap_or_else(|err| json!({"unrepresentable": err.to_string()}))
}

/// A JSON value for a one-line message: strings unquoted, trust states by name.
fn brief(value: &Json) -> String {
    match value {
        Json::String(text) => text.clone(),
        Json::Null => "none".to_owned(),
        Json::Object(map) => match map.get("state").and_then(Json::as_str) {
            Some(state) => state.to_owned(),
            None => value.to_string(),
        },
        other => other.to_string(),
    }
}

fn tls_source(status: &LeafStatus) -> &'static str {
    match status.tls.material.source {
        kinopio_leaf::tls::TlsSource::Generated => "generated",
        kinopio_leaf::tls::TlsSource::Supplied => "supplied",
        _ => "other",
    }
}

fn trust_text(trust: &TrustStatus) -> String {
    brief(&to_json(trust))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brief_values_read_well() {
        assert_eq!(brief(&json!("connected")), "connected");
        assert_eq!(brief(&json!(null)), "none");
        assert_eq!(brief(&json!(3)), "3");
        assert_eq!(brief(&json!({"state": "skipped", "reason": "x"})), "skipped");
    }
}
