//! The nats-server configuration of a leaf, as data ([`ServerConfig`]) and as the text of
//! the config file ([`render`], pure).
//!
//! The shape follows the reference (§2.5 of the protocol notes): a plain NATS client
//! listener and the HTTP monitor on loopback, a TLS WebSocket listener on the LAN address,
//! and — only when backbone servers are given — one `leafnodes` remote holding every
//! backbone URL with `reconnect: 1s` and `no_randomize: true`. On top of the reference:
//! an explicit `tls {}` block (with the CA when given) for `tls://`/`wss://` remotes,
//! optional remote credentials, IPv6 hosts in brackets, a ports file so random ports can be
//! read back, and a size-limited, rotated log file (the reference's log grew without
//! bound). Every string is written as a JSON string literal, which the nats-server config
//! parser reads verbatim.
//!
//! ```
//! use kinopio_leaf::config::{render, Listen, LeafRemote, ServerConfig, WebsocketTls};
//! let config = ServerConfig {
//!     server_name: "kinopio-leaf-1".into(),
//!     client: Listen::new("127.0.0.1".parse().unwrap(), None),
//!     monitor: Listen::new("127.0.0.1".parse().unwrap(), Some(8222)),
//!     websocket: Listen::new("192.168.1.5".parse().unwrap(), Some(4443)),
//!     websocket_tls: WebsocketTls { cert_file: "/run/leaf/leaf-cert.pem".into(), key_file: "/run/leaf/leaf-key.pem".into() },
//!     backbone: LeafRemote::from_urls(["tls://hub.example.com:7422"]).unwrap(),
//!     ports_file_dir: "/run/leaf".into(),
//!     log: None,
//! };
//! let text = render(&config).unwrap();
//! assert!(text.contains("listen: \"127.0.0.1:-1\""));
//! assert!(text.contains("urls: [\"tls://hub.example.com:7422\"]"));
//! ```

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use url::Url;

use crate::net::url_host;

/// A listener: bind address and port (`None` or `Some(0)`: nats-server picks a free one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    /// Bind address.
    pub host: IpAddr,
    /// Port; `None`/`0` render as `-1` (random), because port 0 means "default port" or
    /// "disabled" to nats-server depending on the listener.
    pub port: Option<u16>,
}

impl Listen {
    /// A listener on `host:port`.
    pub fn new(host: IpAddr, port: Option<u16>) -> Self {
        Listen { host, port }
    }

    /// `host:port` as nats-server reads it (`-1` for a random port, IPv6 bracketed).
    pub fn render(&self) -> String {
        let port = match self.port {
            Some(port) if port != 0 => port.to_string(),
            _ => "-1".to_owned(),
        };
        format!("{}:{port}", url_host(&self.host.to_string()))
    }
}

/// The certificate and key of the WebSocket listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebsocketTls {
    /// Certificate (chain) PEM.
    pub cert_file: PathBuf,
    /// Private key PEM.
    pub key_file: PathBuf,
}

/// Where nats-server logs, and how much it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// The log file.
    pub file: PathBuf,
    /// Rotate when the file reaches this many bytes.
    pub size_limit_bytes: u64,
    /// Keep at most this many files (current + rotated).
    pub max_files: u32,
}

/// The `leafnodes` remote connecting the leaf to its backbone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafRemote {
    urls: Vec<String>,
    /// CA file to verify the backbone's certificate (`tls { ca_file }`).
    pub ca_file: Option<PathBuf>,
    /// NATS credentials file (`credentials`).
    pub credentials: Option<PathBuf>,
}

impl LeafRemote {
    /// One remote with all of `urls` (trimmed; a bare `host:port` means `nats://host:port`),
    /// or `None` when `urls` is empty. Each URL must be `nats://`, `tls://`, `ws://` or
    /// `wss://` with a host; WebSocket and plain URLs cannot be mixed (nats-server rejects a
    /// remote that mixes them). Pure.
    pub fn from_urls<I, S>(urls: I) -> Result<Option<LeafRemote>, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut checked: Vec<(String, bool)> = Vec::new();
        for raw in urls {
            let text = raw.as_ref().trim();
            let text = if text.contains("://") { text.to_owned() } else { format!("nats://{text}") };
            let invalid =
                |reason: &str| ConfigError::InvalidBackboneUrl { url: text.clone(), reason: reason.to_owned() };
            let url = Url::parse(&text).map_err(|err| invalid(&err.to_string()))?;
            let websocket = match url.scheme() {
                "nats" | "tls" => false,
                "ws" | "wss" => true,
                _ => return Err(invalid("the scheme must be nats://, tls://, ws:// or wss://")),
            };
            if url.host_str().is_none_or(str::is_empty) {
                return Err(invalid("it has no host"));
            }
            checked.push((text, websocket));
        }
        if let (Some((ws, _)), Some((plain, _))) =
            (checked.iter().find(|(_, ws)| *ws), checked.iter().find(|(_, ws)| !*ws))
        {
            return Err(ConfigError::MixedBackboneTransports { websocket: ws.clone(), plain: plain.clone() });
        }
        if checked.is_empty() {
            return Ok(None);
        }
        Ok(Some(LeafRemote {
            urls: checked.into_iter().map(|(url, _)| url).collect(),
            ca_file: None,
            credentials: None,
        }))
    }

    /// Sets the CA file used to verify the backbone.
    pub fn with_ca_file(mut self, ca_file: Option<PathBuf>) -> Self {
        self.ca_file = ca_file;
        self
    }

    /// Sets the credentials file presented to the backbone.
    pub fn with_credentials(mut self, credentials: Option<PathBuf>) -> Self {
        self.credentials = credentials;
        self
    }

    /// The URLs, in order.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// True when the remote needs a `tls {}` block: a URL is `tls://` or `wss://`, or a CA
    /// file was given.
    pub fn needs_tls(&self) -> bool {
        self.ca_file.is_some()
            || self.urls.iter().any(|url| {
                let scheme = url.split("://").next().unwrap_or_default().to_ascii_lowercase();
                scheme == "tls" || scheme == "wss"
            })
    }
}

/// Everything the config file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// `server_name` (no whitespace).
    pub server_name: String,
    /// Plain NATS client listener (loopback).
    pub client: Listen,
    /// HTTP monitor (loopback).
    pub monitor: Listen,
    /// WebSocket listener (LAN address), always with TLS.
    pub websocket: Listen,
    /// Its certificate and key.
    pub websocket_tls: WebsocketTls,
    /// The backbone remote; `None` gives a standalone server.
    pub backbone: Option<LeafRemote>,
    /// Where nats-server writes `nats-server_<pid>.ports` with the ports it bound.
    pub ports_file_dir: PathBuf,
    /// Log file settings; `None` logs to stderr.
    pub log: Option<LogSettings>,
}

/// Why a configuration cannot be rendered or a backbone URL is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A backbone URL cannot be used.
    #[error(
        "the backbone server {url:?} is not usable: {reason}; give it as nats://host:port, tls://host:port, ws://host:port or wss://host:port (IPv6 hosts in brackets)"
    )]
    InvalidBackboneUrl {
        /// The URL as understood (bare `host:port` gets `nats://`).
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// WebSocket and plain backbone URLs were mixed.
    #[error(
        "backbone servers {websocket:?} (WebSocket) and {plain:?} (plain NATS) cannot be mixed; nats-server needs all URLs of a leaf remote to use the same transport"
    )]
    MixedBackboneTransports {
        /// A WebSocket URL.
        websocket: String,
        /// A plain URL.
        plain: String,
    },
    /// The server name is unusable.
    #[error("the server name {name:?} is not usable: {reason}")]
    InvalidServerName {
        /// The name given.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A path is not valid UTF-8 and cannot be written into the config.
    #[error("the {what} path {} is not valid UTF-8; use a path made of UTF-8 characters", path.display())]
    NonUtf8Path {
        /// Which path.
        what: &'static str,
        /// The path.
        path: PathBuf,
    },
}

/// Checks a `server_name`: non-empty, at most 256 characters, no whitespace or control
/// characters (nats-server rejects names with spaces). Pure.
pub fn validate_server_name(name: &str) -> Result<(), ConfigError> {
    let invalid = |reason| ConfigError::InvalidServerName { name: name.to_owned(), reason };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.chars().count() > 256 {
        return Err(invalid("it is longer than 256 characters"));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("it contains whitespace or control characters"));
    }
    Ok(())
}

/// A JSON string literal.
fn quoted(text: &str) -> String {
    // Serialising a &str cannot fail.
    serde_json::to_string(text).unwrap_or_else(|_| format!("\"{}\"", text.escape_default()))
}

fn quoted_path(what: &'static str, path: &Path) -> Result<String, ConfigError> {
    path.to_str().map(quoted).ok_or_else(|| ConfigError::NonUtf8Path { what, path: path.to_owned() })
}

/// Renders the config file: LF line endings, two-space indentation, trailing newline. Pure.
pub fn render(config: &ServerConfig) -> Result<String, ConfigError> {
    validate_server_name(&config.server_name)?;
    let mut out = String::new();
    // Writing into a String cannot fail; the results are ignored.
    let _ = writeln!(out, "# nats-server configuration written by kinopio for a local leaf; rewritten on every start.");
    let _ = writeln!(out, "server_name: {}", quoted(&config.server_name));
    let _ = writeln!(out, "listen: {}", quoted(&config.client.render()));
    let _ = writeln!(out, "http: {}", quoted(&config.monitor.render()));
    let _ = writeln!(out, "ports_file_dir: {}", quoted_path("ports file directory", &config.ports_file_dir)?);
    if let Some(log) = &config.log {
        let _ = writeln!(out, "log_file: {}", quoted_path("log file", &log.file)?);
        let _ = writeln!(out, "logfile_size_limit: {}", log.size_limit_bytes);
        let _ = writeln!(out, "logfile_max_num: {}", log.max_files);
    }
    let _ = writeln!(out, "websocket {{");
    let _ = writeln!(out, "  listen: {}", quoted(&config.websocket.render()));
    let _ = writeln!(out, "  tls {{");
    let _ = writeln!(out, "    cert_file: {}", quoted_path("certificate", &config.websocket_tls.cert_file)?);
    let _ = writeln!(out, "    key_file: {}", quoted_path("key", &config.websocket_tls.key_file)?);
    let _ = writeln!(out, "  }}");
    let _ = writeln!(out, "}}");
    if let Some(remote) = &config.backbone {
        let urls: Vec<String> = remote.urls.iter().map(|url| quoted(url)).collect();
        let _ = writeln!(out, "leafnodes {{");
        let _ = writeln!(out, "  reconnect: 1s");
        let _ = writeln!(out, "  remotes = [");
        let _ = writeln!(out, "    {{");
        let _ = writeln!(out, "      urls: [{}]", urls.join(", "));
        let _ = writeln!(out, "      no_randomize: true");
        if let Some(credentials) = &remote.credentials {
            let _ = writeln!(out, "      credentials: {}", quoted_path("credentials", credentials)?);
        }
        if remote.needs_tls() {
            match &remote.ca_file {
                Some(ca_file) => {
                    let _ = writeln!(out, "      tls {{");
                    let _ = writeln!(out, "        ca_file: {}", quoted_path("backbone CA", ca_file)?);
                    let _ = writeln!(out, "      }}");
                }
                None => {
                    let _ = writeln!(out, "      tls {{}}");
                }
            }
        }
        let _ = writeln!(out, "    }}");
        let _ = writeln!(out, "  ]");
        let _ = writeln!(out, "}}");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ServerConfig {
        ServerConfig {
            server_name: "kinopio-leaf-a7b7b290".into(),
            client: Listen::new("127.0.0.1".parse().unwrap(), Some(52627)),
            monitor: Listen::new("127.0.0.1".parse().unwrap(), Some(37311)),
            websocket: Listen::new("192.168.1.5".parse().unwrap(), Some(35277)),
            websocket_tls: WebsocketTls {
                cert_file: "/run/kinopio-leaf-x/leaf-cert.pem".into(),
                key_file: "/run/kinopio-leaf-x/leaf-key.pem".into(),
            },
            backbone: None,
            ports_file_dir: "/run/kinopio-leaf-x".into(),
            log: None,
        }
    }

    #[test]
    fn renders_a_standalone_leaf_without_leafnodes() {
        let text = render(&base()).unwrap();
        assert_eq!(
            text,
            "# nats-server configuration written by kinopio for a local leaf; rewritten on every start.\n\
             server_name: \"kinopio-leaf-a7b7b290\"\n\
             listen: \"127.0.0.1:52627\"\n\
             http: \"127.0.0.1:37311\"\n\
             ports_file_dir: \"/run/kinopio-leaf-x\"\n\
             websocket {\n\
             \x20 listen: \"192.168.1.5:35277\"\n\
             \x20 tls {\n\
             \x20   cert_file: \"/run/kinopio-leaf-x/leaf-cert.pem\"\n\
             \x20   key_file: \"/run/kinopio-leaf-x/leaf-key.pem\"\n\
             \x20 }\n\
             }\n"
        );
        assert!(!text.contains("leafnodes"));
        assert!(!text.contains('\r'));
    }

    #[test]
    fn renders_one_remote_with_all_urls_and_tls_for_tls_schemes() {
        let mut config = base();
        config.backbone = LeafRemote::from_urls(["tls://a.example:7422", " nats://b.example:7422 "]).unwrap();
        let text = render(&config).unwrap();
        assert!(text.ends_with(
            "leafnodes {\n\
             \x20 reconnect: 1s\n\
             \x20 remotes = [\n\
             \x20   {\n\
             \x20     urls: [\"tls://a.example:7422\", \"nats://b.example:7422\"]\n\
             \x20     no_randomize: true\n\
             \x20     tls {}\n\
             \x20   }\n\
             \x20 ]\n\
             }\n"
        ));
    }

    #[test]
    fn plain_remote_has_no_tls_block_and_credentials_when_given() {
        let mut config = base();
        config.backbone = LeafRemote::from_urls(["nats://127.0.0.1:7422"])
            .unwrap()
            .map(|remote| remote.with_credentials(Some("/etc/kinopio/leaf.creds".into())));
        let text = render(&config).unwrap();
        assert!(text.contains("      urls: [\"nats://127.0.0.1:7422\"]\n"));
        assert!(text.contains("      credentials: \"/etc/kinopio/leaf.creds\"\n"));
        assert!(!text.contains("tls {}"));
        assert!(!text.contains("ca_file"));
    }

    #[test]
    fn wss_remote_gets_tls_with_the_ca_file() {
        let mut config = base();
        config.backbone = LeafRemote::from_urls(["wss://hub.example:443"])
            .unwrap()
            .map(|remote| remote.with_ca_file(Some("/etc/kinopio/hub-ca.pem".into())));
        let text = render(&config).unwrap();
        assert!(text.contains("      tls {\n        ca_file: \"/etc/kinopio/hub-ca.pem\"\n      }\n"));
    }

    #[test]
    fn ca_file_alone_turns_tls_on_for_a_nats_url() {
        let remote = LeafRemote::from_urls(["nats://hub:7422"]).unwrap().unwrap();
        assert!(!remote.needs_tls());
        assert!(remote.with_ca_file(Some("/ca.pem".into())).needs_tls());
    }

    #[test]
    fn ipv6_hosts_are_bracketed_and_missing_ports_are_random() {
        let mut config = base();
        config.client = Listen::new("::1".parse().unwrap(), None);
        config.monitor = Listen::new("::1".parse().unwrap(), Some(0));
        config.websocket = Listen::new("fd00::5".parse().unwrap(), None);
        config.backbone = LeafRemote::from_urls(["nats://[::1]:7422"]).unwrap();
        let text = render(&config).unwrap();
        assert!(text.contains("listen: \"[::1]:-1\"\n"));
        assert!(text.contains("http: \"[::1]:-1\"\n"));
        assert!(text.contains("  listen: \"[fd00::5]:-1\"\n"));
        assert!(text.contains("urls: [\"nats://[::1]:7422\"]"));
    }

    #[test]
    fn strings_are_json_literals() {
        let mut config = base();
        config.server_name = "leaf-\"q\"\\x".into();
        config.websocket_tls.cert_file = "/tmp/we\"ird\\dir/cert.pem".into();
        let text = render(&config).unwrap();
        assert!(text.contains(r#"server_name: "leaf-\"q\"\\x""#));
        assert!(text.contains(r#"cert_file: "/tmp/we\"ird\\dir/cert.pem""#));
    }

    #[test]
    fn log_settings_are_rendered() {
        let mut config = base();
        config.log = Some(LogSettings { file: "/run/x/leaf-nats.log".into(), size_limit_bytes: 1024, max_files: 3 });
        let text = render(&config).unwrap();
        assert!(text.contains("log_file: \"/run/x/leaf-nats.log\"\nlogfile_size_limit: 1024\nlogfile_max_num: 3\n"));
    }

    #[test]
    fn backbone_urls_are_validated() {
        assert_eq!(LeafRemote::from_urls(Vec::<String>::new()).unwrap(), None);
        let bare = LeafRemote::from_urls(["127.0.0.1:7422"]).unwrap().unwrap();
        assert_eq!(bare.urls(), ["nats://127.0.0.1:7422"]);
        assert!(matches!(LeafRemote::from_urls(["http://hub:80"]), Err(ConfigError::InvalidBackboneUrl { .. })));
        assert!(matches!(LeafRemote::from_urls(["nats://::1:7422"]), Err(ConfigError::InvalidBackboneUrl { .. })));
        let mixed = LeafRemote::from_urls(["wss://a:443", "nats://b:7422"]).unwrap_err();
        assert_eq!(
            mixed,
            ConfigError::MixedBackboneTransports { websocket: "wss://a:443".into(), plain: "nats://b:7422".into() }
        );
        assert!(mixed.to_string().contains("cannot be mixed"));
    }

    #[test]
    fn server_names_with_spaces_are_rejected() {
        let mut config = base();
        config.server_name = "my leaf".into();
        assert!(matches!(render(&config), Err(ConfigError::InvalidServerName { .. })));
        config.server_name = String::new();
        assert!(matches!(render(&config), Err(ConfigError::InvalidServerName { .. })));
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_paths_are_rejected() {
        use std::os::unix::ffi::OsStrExt;
        let mut config = base();
        config.ports_file_dir = PathBuf::from(std::ffi::OsStr::from_bytes(b"/tmp/\xff"));
        assert!(matches!(render(&config), Err(ConfigError::NonUtf8Path { .. })));
    }
}
