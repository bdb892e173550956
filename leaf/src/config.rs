//! The nats-server configuration of a leaf, as data ([`ServerConfig`]) and as the text of
//! the config file ([`render`], pure).
//!
//! The shape follows the reference ([protocol notes](kinopio::wire::protocol#leaf-node-configuration)): a plain NATS client
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
//!     websocket_allowed_origins: Vec::new(),
//!     client_token: None,
//!     authorization_file: None,
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
///
/// The URLs it keeps and shows ([`LeafRemote::urls`]) never carry credentials: a user and
/// password or a token given inside a URL (`nats://user:pass@hub:7422`) is taken out into
/// [`BackboneAuth`] and only written into the config file (see [`render`]). Everything the
/// leaf publishes, advertises, prints or logs uses these public URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafRemote {
    urls: Vec<String>,
    /// How the leaf authenticates to the backbone, besides a credentials file.
    auth: Option<BackboneAuth>,
    /// CA file to verify the backbone's certificate (`tls { ca_file }`).
    pub ca_file: Option<PathBuf>,
    /// NATS credentials file (`credentials`).
    pub credentials: Option<PathBuf>,
}

/// A backbone user and password, or a token. Its `Debug` output never shows the secret.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackboneAuth {
    /// A user and password.
    UserPassword {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// A token.
    Token(String),
}

impl std::fmt::Debug for BackboneAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackboneAuth::UserPassword { user, .. } => {
                f.debug_struct("UserPassword").field("user", user).field("password", &"<redacted>").finish()
            }
            BackboneAuth::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

impl BackboneAuth {
    /// The `userinfo@` part of a URL carrying this authentication, percent-encoded.
    fn userinfo(&self) -> String {
        let enc = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
        match self {
            BackboneAuth::UserPassword { user, password } => format!("{}:{}@", enc(user), enc(password)),
            BackboneAuth::Token(token) => format!("{}@", enc(token)),
        }
    }
}

/// `url` with any `user:password@` / `token@` part replaced by `***@`, for messages. Works on
/// text that is not a valid URL too. Pure.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        // `user:pass@host:port` without a scheme.
        return match url.rfind('@') {
            Some(at) if !url[..at].contains('/') => format!("***@{}", &url[at + 1..]),
            _ => url.to_owned(),
        };
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &url[..scheme_end], &rest[at + 1..]),
        None => url.to_owned(),
    }
}

impl LeafRemote {
    /// One remote with all of `urls` (trimmed; a bare `host:port` means `nats://host:port`),
    /// or `None` when `urls` is empty. Each URL must be `nats://`, `tls://`, `ws://` or
    /// `wss://` with a host; WebSocket and plain URLs cannot be mixed (nats-server rejects a
    /// remote that mixes them). Credentials inside the URLs (`user:pass@` or `token@`) are
    /// taken out into [`LeafRemote::auth`]; all URLs that carry them must carry the same.
    /// Errors never repeat a secret. Pure.
    pub fn from_urls<I, S>(urls: I) -> Result<Option<LeafRemote>, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut checked: Vec<(String, bool)> = Vec::new();
        let mut auth: Option<BackboneAuth> = None;
        for raw in urls {
            let text = raw.as_ref().trim();
            let text = if text.contains("://") { text.to_owned() } else { format!("nats://{text}") };
            let invalid =
                |reason: &str| ConfigError::InvalidBackboneUrl { url: redact_url(&text), reason: reason.to_owned() };
            let mut url = Url::parse(&text).map_err(|err| invalid(&err.to_string()))?;
            let websocket = match url.scheme() {
                "nats" | "tls" => false,
                "ws" | "wss" => true,
                _ => return Err(invalid("the scheme must be nats://, tls://, ws:// or wss://")),
            };
            if url.host_str().is_none_or(str::is_empty) {
                return Err(invalid("it has no host"));
            }
            let had_auth = !url.username().is_empty() || url.password().is_some();
            if had_auth {
                let decode = |s: &str| {
                    percent_encoding::percent_decode_str(s)
                        .decode_utf8()
                        .map(|s| s.into_owned())
                        .map_err(|_| invalid("its credentials are not UTF-8 once %-decoded"))
                };
                let user = decode(url.username())?;
                let found = match url.password() {
                    Some(password) => BackboneAuth::UserPassword { user, password: decode(password)? },
                    None => BackboneAuth::Token(user),
                };
                if auth.as_ref().is_some_and(|known| *known != found) {
                    return Err(invalid("its credentials differ from another backbone URL's; give them once"));
                }
                auth = Some(found);
                let _ = url.set_username("");
                let _ = url.set_password(None);
            }
            checked.push((if had_auth { public_text(&url) } else { text }, websocket));
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
            auth,
            ca_file: None,
            credentials: None,
        }))
    }

    /// Sets how the leaf authenticates to the backbone (replacing credentials taken from the
    /// URLs).
    pub fn with_auth(mut self, auth: Option<BackboneAuth>) -> Self {
        if auth.is_some() {
            self.auth = auth;
        }
        self
    }

    /// The user/password or token the leaf presents, if any.
    pub fn auth(&self) -> Option<&BackboneAuth> {
        self.auth.as_ref()
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

    /// The URLs, in order, without credentials: safe to publish, print and log.
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

/// A URL as text without a trailing `/` that `url` adds to bare authorities.
fn public_text(url: &Url) -> String {
    let text = url.as_str();
    if url.path() == "/" && url.query().is_none() && url.fragment().is_none() {
        text.trim_end_matches('/').to_owned()
    } else {
        text.to_owned()
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
    /// Web origins (`https://host:port`) whose pages may open a WebSocket; a browser from
    /// any other origin is refused (HTTP 403) by nats-server. Clients that send no `Origin`
    /// (every non-browser client) are not affected. Empty: no check.
    pub websocket_allowed_origins: Vec<String>,
    /// A token every client must present, on the client and WebSocket listeners alike
    /// (`authorization { token }`); `None`: no authentication.
    pub client_token: Option<String>,
    /// A nats-server `authorization { … }` body of the user's (users, nkeys, per-subject
    /// permissions), included from this file for the client and WebSocket listeners; it
    /// takes the place of [`ServerConfig::client_token`].
    pub authorization_file: Option<PathBuf>,
    /// The backbone remote; `None` gives a standalone server.
    pub backbone: Option<LeafRemote>,
    /// Where nats-server writes `nats-server_<pid>.ports` with the ports it bound.
    pub ports_file_dir: PathBuf,
    /// Log file settings; `None` logs to stderr.
    pub log: Option<LogSettings>,
}

crate::error::error_with_kind! {
    /// Why a configuration cannot be rendered or a backbone URL is unusable.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum ConfigError => ConfigErrorKind {
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
    if let Some(file) = &config.authorization_file {
        let _ = writeln!(out, "authorization {{");
        let _ = writeln!(out, "  include {}", quoted_path("authorization file", file)?);
        let _ = writeln!(out, "}}");
    } else if let Some(token) = &config.client_token {
        let _ = writeln!(out, "authorization {{");
        let _ = writeln!(out, "  token: {}", quoted(token));
        let _ = writeln!(out, "}}");
    }
    let _ = writeln!(out, "websocket {{");
    let _ = writeln!(out, "  listen: {}", quoted(&config.websocket.render()));
    let _ = writeln!(out, "  tls {{");
    let _ = writeln!(out, "    cert_file: {}", quoted_path("certificate", &config.websocket_tls.cert_file)?);
    let _ = writeln!(out, "    key_file: {}", quoted_path("key", &config.websocket_tls.key_file)?);
    let _ = writeln!(out, "  }}");
    if !config.websocket_allowed_origins.is_empty() {
        let origins: Vec<String> = config.websocket_allowed_origins.iter().map(|o| quoted(o)).collect();
        let _ = writeln!(out, "  allowed_origins: [{}]", origins.join(", "));
    }
    let _ = writeln!(out, "}}");
    if let Some(remote) = &config.backbone {
        let userinfo = remote.auth.as_ref().map(BackboneAuth::userinfo).unwrap_or_default();
        let urls: Vec<String> = remote
            .urls
            .iter()
            .map(|url| match url.split_once("://") {
                Some((scheme, rest)) => quoted(&format!("{scheme}://{userinfo}{rest}")),
                None => quoted(url),
            })
            .collect();
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

    #[test]
    fn credentials_in_urls_are_taken_out_and_only_rendered_into_the_config() {
        let remote =
            LeafRemote::from_urls(["nats://leaf:p%40ss%20w@hub.example:7422", "nats://leaf:p%40ss%20w@b.example"])
                .unwrap()
                .unwrap();
        assert_eq!(remote.urls(), ["nats://hub.example:7422", "nats://b.example"]);
        assert_eq!(remote.auth(), Some(&BackboneAuth::UserPassword { user: "leaf".into(), password: "p@ss w".into() }));
        let shown = format!("{remote:?}");
        assert!(!shown.contains("p@ss") && !shown.contains("p%40ss"), "{shown}");
        let mut config = base();
        config.backbone = Some(remote);
        let text = render(&config).unwrap();
        assert!(
            text.contains(r#"urls: ["nats://leaf:p%40ss%20w@hub.example:7422", "nats://leaf:p%40ss%20w@b.example"]"#),
            "{text}"
        );

        let token = LeafRemote::from_urls(["tls://s3cr3t@hub:7422"]).unwrap().unwrap();
        assert_eq!(token.urls(), ["tls://hub:7422"]);
        assert_eq!(token.auth(), Some(&BackboneAuth::Token("s3cr3t".into())));
        assert_eq!(format!("{:?}", token.auth().unwrap()), "Token(<redacted>)");
        let given = token.with_auth(Some(BackboneAuth::Token("other".into())));
        assert_eq!(given.auth(), Some(&BackboneAuth::Token("other".into())));
    }

    #[test]
    fn errors_about_backbone_urls_never_repeat_the_secret() {
        let err = LeafRemote::from_urls(["nats://u:secret1@a:1", "nats://u:secret2@b:1"]).unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
        assert!(err.contains("differ"), "{err}");
        let err = LeafRemote::from_urls(["http://u:secret@a:1"]).unwrap_err().to_string();
        assert!(!err.contains("secret") && err.contains("***@a:1"), "{err}");
        let err = LeafRemote::from_urls(["nats://u:secret@"]).unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn redact_url_hides_userinfo_only() {
        assert_eq!(redact_url("nats://u:p@h:1"), "nats://***@h:1");
        assert_eq!(redact_url("nats://tok@h:1/x@y"), "nats://***@h:1/x@y");
        assert_eq!(redact_url("u:p@h:1"), "***@h:1");
        assert_eq!(redact_url("nats://h:1"), "nats://h:1");
        assert_eq!(redact_url("not a url"), "not a url");
    }

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
            websocket_allowed_origins: Vec::new(),
            client_token: None,
            authorization_file: None,
            backbone: None,
            ports_file_dir: "/run/kinopio-leaf-x".into(),
            log: None,
        }
    }

    #[test]
    fn allowed_origins_are_rendered_in_the_websocket_block() {
        let mut config = base();
        config.websocket_allowed_origins = vec!["https://192.168.1.5:8443".into(), "https://app.example".into()];
        let text = render(&config).unwrap();
        assert!(
            text.contains("  allowed_origins: [\"https://192.168.1.5:8443\", \"https://app.example\"]\n}\n"),
            "{text}"
        );
        assert!(!render(&base()).unwrap().contains("allowed_origins"));
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
