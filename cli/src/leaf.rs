//! `kinopio leaf start`: run a local leaf until SIGINT or SIGTERM, print a status snapshot
//! and then one line per meaningful change, stop cleanly.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use kinopio_leaf::runtime::{LeafNode, LeafOptions, LeafState, LeafStatus, StatusChange, TrustStatus, status_changes};
use serde_json::{Value as Json, json};

use crate::output::{self, Failure};
use crate::signals;

/// `kinopio leaf ...`
#[derive(Debug, Subcommand)]
pub enum LeafCommand {
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
pub struct UntrustArgs {
    /// Cache root the CAs live under (as given to `leaf start` / `leaf auto`).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Options of `kinopio leaf namespace-ca`.
#[derive(Debug, Args)]
pub struct NamespaceCaArgs {
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

/// Options of `kinopio leaf start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Backbone server to bridge to (nats://, tls://, ws:// or wss://; repeat for
    /// several, all in one leafnode remote). Without one the leaf runs standalone.
    /// Credentials inside a URL (user:pass@ or token@) are only written into nats-server's
    /// config, never published or printed; prefer the file options below, which keep
    /// secrets off the command line.
    #[arg(long = "backbone-server", value_name = "URL")]
    backbone_servers: Vec<String>,
    /// User the leaf presents to the backbone (with --backbone-password-file).
    #[arg(long, value_name = "USER")]
    backbone_user: Option<String>,
    /// File holding the backbone password (first line).
    #[arg(long, value_name = "FILE", requires = "backbone_user")]
    backbone_password_file: Option<PathBuf>,
    /// Web origin (https://host[:port]) whose pages may open a WebSocket to the leaf
    /// (repeatable). By default only the leaf's own HTTPS origin may; pages from other
    /// origins are refused. Non-browser clients are not affected. `*` allows every web
    /// page the user opens.
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    allowed_origins: Vec<String>,
    /// nats-server authorization for the leaf's LAN WebSocket and loopback listeners: a file
    /// with the body of an `authorization { … }` block (token, or users with passwords or
    /// nkeys and per-subject permissions). Replaces a secured namespace's derived token.
    #[arg(long, value_name = "FILE")]
    lan_authorization: Option<PathBuf>,
    /// Let public web pages fetch the discovery manifest from this private address
    /// (answer Private Network Access preflights).
    #[arg(long)]
    allow_private_network_access: bool,
    /// File holding a backbone token (first line).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["backbone_user", "backbone_password_file"])]
    backbone_token_file: Option<PathBuf>,
    /// CA file (PEM) that verifies the backbone servers' certificates (turns TLS on).
    #[arg(long, value_name = "FILE")]
    backbone_ca_file: Option<PathBuf>,
    /// NATS credentials file presented to the backbone servers.
    #[arg(long, value_name = "FILE")]
    backbone_credentials: Option<PathBuf>,
    /// nats-server binary to run [default: KINOPIO_NATS_SERVER, else the cache, else
    /// `nats-server` on PATH, else a checksum-verified download of the pinned release].
    #[arg(long, value_name = "PATH")]
    binary_path: Option<PathBuf>,
    /// Cache root: the downloaded nats-server goes to <DIR>/nats-server, the local CA to
    /// <DIR>/tls [default: KINOPIO_HUB_CACHE_DIR, else the platform cache directory +
    /// kinopio-hub].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Working directory for the config, logs and certificate. It must be empty or not
    /// exist; it is kept on exit and only the leaf's files are removed [default: a
    /// temporary directory, removed on exit].
    #[arg(long, value_name = "DIR")]
    runtime_dir: Option<PathBuf>,
    /// IP address of the LAN-facing WSS and discovery listeners; 0.0.0.0 or :: listen on
    /// every interface [default: this machine's LAN IPv4 address (an up, non-loopback,
    /// non-link-local interface; private addresses first), else 127.0.0.1].
    #[arg(long, value_name = "IP")]
    lan_bind_address: Option<IpAddr>,
    /// Host name or address put into the wss:// and https:// URLs and the certificate
    /// [default: the LAN bind address, or the detected LAN address for 0.0.0.0 / ::].
    #[arg(long, value_name = "HOST")]
    advertised_host: Option<String>,
    /// Port of the plain NATS client listener on 127.0.0.1 [default: a free port].
    #[arg(long, value_name = "PORT")]
    client_port: Option<u16>,
    /// Port of the NATS WebSocket (wss://) listener on the LAN address [default: a free
    /// port].
    #[arg(long, value_name = "PORT")]
    websocket_port: Option<u16>,
    /// Port of the HTTPS discovery server on the LAN address [default: a free port].
    #[arg(long, value_name = "PORT")]
    discovery_port: Option<u16>,
    /// Port of the nats-server HTTP monitor on 127.0.0.1 [default: a free port].
    #[arg(long, value_name = "PORT")]
    monitor_port: Option<u16>,
    /// Certificate (PEM, chain allowed) for the WSS and discovery listeners, used as given
    /// (no renewal, no trust-store install); needs --key-file [default: a 7-day
    /// certificate from the local CA in the cache, renewed while running].
    #[arg(long, value_name = "FILE", requires = "key_file")]
    cert_file: Option<PathBuf>,
    /// Add the local CA to this device's trust stores (Linux system anchors, NSS for
    /// Chromium/Firefox, macOS keychain, Windows user store), so browsers here trust the
    /// leaf. Recorded, and undone by `kinopio leaf untrust`. Off by default;
    /// KINOPIO_SKIP_CA_TRUST_INSTALL=1 skips it even when given.
    #[arg(long, env = "KINOPIO_INSTALL_CA_TRUST")]
    install_ca_trust: bool,
    /// With --install-ca-trust: only these stores (repeatable): `system` (Linux system
    /// anchors), `nss` (~/.pki/nssdb, what Chromium and Firefox read on Linux), `keychain`
    /// (macOS), `windows` [default: every store of this platform].
    #[arg(long = "ca-trust-store", value_name = "STORE", requires = "install_ca_trust", value_parser = ["system", "nss", "keychain", "windows"])]
    ca_trust_stores: Vec<String>,
    /// Private key (PEM) of --cert-file.
    #[arg(long, value_name = "FILE", requires = "cert_file")]
    key_file: Option<PathBuf>,
    /// CA certificate (PEM) that clients should trust for --cert-file [default: the
    /// --cert-file itself].
    #[arg(long, value_name = "FILE", requires = "cert_file")]
    ca_file: Option<PathBuf>,
    /// nats-server server name [default: kinopio-leaf-<first 8 hex digits of the node id>].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Print one JSON object per line (snapshot, changes, stop, errors).
    #[arg(long)]
    pub(crate) json: bool,
}

impl StartArgs {
    pub(crate) fn options(&self) -> LeafOptions {
        let mut options = LeafOptions::new().backbone_servers(self.backbone_servers.iter().cloned());
        if let Some(path) = &self.backbone_ca_file {
            options = options.backbone_ca_file(path);
        }
        if let Some(path) = &self.backbone_credentials {
            options = options.backbone_credentials(path);
        }
        if let Some(user) = &self.backbone_user {
            options = options.backbone_user(user);
        }
        if let Some(path) = &self.backbone_password_file {
            options = options.backbone_password_file(path);
        }
        if let Some(path) = &self.backbone_token_file {
            options = options.backbone_token_file(path);
        }
        for origin in &self.allowed_origins {
            options = options.allowed_origin(origin);
        }
        options = options.private_network_access(self.allow_private_network_access);
        if let Some(path) = &self.lan_authorization {
            options = options.lan_authorization(path);
        }
        if self.install_ca_trust {
            let mut stores = kinopio_leaf::tls::TrustStoreConfig::platform_default();
            if !self.ca_trust_stores.is_empty() {
                let wanted = |name: &str| self.ca_trust_stores.iter().any(|s| s == name);
                if !wanted("system") {
                    stores.system_anchors = None;
                }
                if !wanted("nss") {
                    stores.nss.clear();
                }
                if !wanted("keychain") {
                    stores.macos_keychain = None;
                }
                if !wanted("windows") {
                    stores.windows_user_root = None;
                }
            }
            options = options.trust_store(stores);
        }
        if let Some(path) = &self.binary_path {
            options = options.binary_path(path);
        }
        if let Some(dir) = &self.cache_dir {
            options = options.cache_dir(dir);
        }
        if let Some(dir) = &self.runtime_dir {
            options = options.runtime_dir(dir);
        }
        if let Some(address) = self.lan_bind_address {
            options = options.lan_bind_address(address);
        }
        if let Some(host) = &self.advertised_host {
            options = options.advertised_host(host);
        }
        if let Some(port) = self.client_port {
            options = options.client_port(port);
        }
        if let Some(port) = self.websocket_port {
            options = options.websocket_port(port);
        }
        if let Some(port) = self.discovery_port {
            options = options.discovery_port(port);
        }
        if let Some(port) = self.monitor_port {
            options = options.monitor_port(port);
        }
        if let Some(path) = &self.cert_file {
            options = options.cert_file(path);
        }
        if let Some(path) = &self.key_file {
            options = options.key_file(path);
        }
        if let Some(path) = &self.ca_file {
            options = options.ca_file(path);
        }
        if let Some(name) = &self.name {
            options = options.name(name);
        }
        options
    }
}

/// Runs a `kinopio leaf` command.
pub async fn run(command: LeafCommand) -> Result<(), Failure> {
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
    let mut report = kinopio_leaf::tls::trust::UntrustReport::default();
    for dir in dirs {
        let one = kinopio_leaf::tls::trust::untrust(&dir, std::time::Duration::from_secs(30));
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
            started.map_err(|err| Failure::new(1, err.kind(), err.to_string(), json))?
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
