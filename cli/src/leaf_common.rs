//! What `kinopio leaf start` and `kinopio leaf auto` share: the leaf's options
//! ([`StartArgs`]) and how a leaf error becomes a failure that names the flag to change.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Args;
use kinopio_leaf::auto::{AutoLeafError, AutoLeafErrorKind, TransportError};
use kinopio_leaf::binary::{BinaryError, BinaryErrorKind};
use kinopio_leaf::runtime::{LeafError, LeafErrorKind, LeafOptions, ListenerKind};
use kinopio_leaf::tls::TlsErrorKind;

use crate::output::Failure;

/// Options of `kinopio leaf start`.
#[derive(Debug, Args)]
pub(crate) struct StartArgs {
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
        options = options.trust_store(if self.install_ca_trust {
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
            stores
        } else {
            kinopio_leaf::tls::TrustStoreConfig::skipped(
                "not requested (pass --install-ca-trust to add the CA to this device's trust stores)",
            )
        });
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

/// A failed [`LeafNode::start`](kinopio_leaf::runtime::LeafNode::start) as a failure: the
/// `--json` kind, and the library's message with the flag that changes what went wrong.
pub(crate) fn leaf_failure(err: &LeafError, json: bool) -> Failure {
    Failure::new(1, leaf_kind(err.kind()), leaf_message(err), json)
}

/// A failed [`AutoLeaf::start`](kinopio_leaf::auto::AutoLeaf::start) as a failure.
pub(crate) fn auto_failure(err: &AutoLeafError, json: bool) -> Failure {
    let kind = match err.kind() {
        AutoLeafErrorKind::NodeId => "node-id",
        AutoLeafErrorKind::Transport => "multicast",
        AutoLeafErrorKind::Trust => "trust",
        _ => "invalid-option",
    };
    let message = match err {
        AutoLeafError::Transport(TransportError::NoInterface { wanted, available }) => {
            format!("no usable IPv4 interface matches --interface {wanted}; available: {available}")
        }
        AutoLeafError::Transport(TransportError::NoMembership { .. }) => format!("{err} (--interface)"),
        AutoLeafError::NodeId(_) => format!("{err} (--cache-dir)"),
        _ => err.to_string(),
    };
    Failure::new(1, kind, message, json)
}

/// The stable `--json` name of a leaf failure.
fn leaf_kind(kind: LeafErrorKind) -> &'static str {
    match kind {
        LeafErrorKind::Binary => "binary",
        LeafErrorKind::Tls => "tls",
        LeafErrorKind::Config => "config",
        LeafErrorKind::InvalidOption | LeafErrorKind::SamePort => "invalid-option",
        LeafErrorKind::PortInUse => "port-in-use",
        LeafErrorKind::Bind => "bind",
        LeafErrorKind::RuntimeDirNotEmpty => "runtime-dir-not-empty",
        LeafErrorKind::RuntimeDir => "runtime-dir",
        LeafErrorKind::MissingFile => "missing-file",
        LeafErrorKind::Start => "start-failed",
        LeafErrorKind::Discovery => "discovery",
        LeafErrorKind::Task => "task",
        _ => "leaf",
    }
}

/// The flag that sets a listener's port.
fn port_flag(listener: ListenerKind) -> &'static str {
    match listener {
        ListenerKind::Client => "--client-port",
        ListenerKind::Websocket => "--websocket-port",
        ListenerKind::Discovery => "--discovery-port",
        ListenerKind::Monitor => "--monitor-port",
        _ => "the port flags",
    }
}

fn leaf_message(err: &LeafError) -> String {
    match err {
        LeafError::PortInUse { listener, addr } => {
            let flag = port_flag(*listener);
            format!(
                "port {} is already in use ({flag}: the {listener} on {}); pass a free port with {flag}, or leave {flag} out to let the leaf pick one",
                addr.port(),
                addr.ip()
            )
        }
        LeafError::SamePort { port, first, second } => format!(
            "port {port} was given for both {} and {}; give each listener its own port",
            port_flag(*first),
            port_flag(*second)
        ),
        LeafError::Bind { .. } => format!("{err} (--lan-bind-address)"),
        LeafError::RuntimeDirNotEmpty { path } => format!(
            "the runtime directory {} is not empty; pass an empty or new directory with --runtime-dir, or leave it out to use a temporary one",
            path.display()
        ),
        LeafError::Binary(binary) => binary_message(binary),
        LeafError::Tls(tls) if tls.kind() == TlsErrorKind::NotPermitted => format!("{err} (--cert-file/--key-file)"),
        _ => err.to_string(),
    }
}

/// A provisioning failure with the flags that bypass or redirect provisioning.
pub(crate) fn binary_message(err: &BinaryError) -> String {
    match err.kind() {
        BinaryErrorKind::Io => format!("{err} (the binary_path option is --binary-path; the cache is --cache-dir)"),
        _ => format!("{err} (the binary_path option is --binary-path)"),
    }
}
