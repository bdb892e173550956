//! [`ServerUrl`]: a NATS server address, normalised so the same server always compares
//! equal (`h:4222`, `nats://h` and `NATS://H:4222/` are one server), fixing the reference's
//! raw-string comparison ([0.1.1 weakness C7](crate::wire::protocol#known-weaknesses-of-011-that-kinopio-fixes)).

use std::fmt;
use std::str::FromStr;

use url::Url;

/// A normalised server URL with scheme `nats`, `tls`, `ws` or `wss` and an explicit port.
///
/// ```
/// use kinopio::ServerUrl;
/// let a: ServerUrl = "127.0.0.1:4222".parse().unwrap();
/// let b: ServerUrl = "nats://127.0.0.1".parse().unwrap();
/// assert_eq!(a, b);
/// assert_eq!(a.to_string(), "nats://127.0.0.1:4222");
/// assert_eq!("wss://leaf.local".parse::<ServerUrl>().unwrap().to_string(), "wss://leaf.local:443");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ServerUrl {
    url: Url,
}

/// A server URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerUrlError {
    /// Not a URL at all.
    #[error("invalid server URL {url:?}: {reason} (expected e.g. nats://127.0.0.1:4222)")]
    Invalid {
        /// The text given.
        url: String,
        /// Why it does not parse.
        reason: String,
    },
    /// A scheme other than nats, tls, ws, wss.
    #[error("unsupported scheme {scheme:?} in server URL {url:?} (use nats://, tls://, ws:// or wss://)")]
    Scheme {
        /// The text given.
        url: String,
        /// The scheme found.
        scheme: String,
    },
    /// No host.
    #[error("server URL {url:?} has no host")]
    NoHost {
        /// The text given.
        url: String,
    },
}

impl ServerUrl {
    /// `nats://127.0.0.1:4222`.
    pub fn default_local() -> ServerUrl {
        "nats://127.0.0.1:4222".parse().unwrap_or_else(|_| unreachable!("valid literal"))
    }

    /// The scheme: `nats`, `tls`, `ws` or `wss`.
    pub fn scheme(&self) -> &str {
        self.url.scheme()
    }

    /// The host (IPv6 without brackets).
    pub fn host(&self) -> &str {
        match self.url.host_str() {
            Some(h) => h.trim_start_matches('[').trim_end_matches(']'),
            None => "",
        }
    }

    /// The port (explicit or the scheme's default).
    pub fn port(&self) -> u16 {
        self.url.port_or_known_default().unwrap_or(4222)
    }

    /// True for `ws://` and `wss://`.
    pub fn is_websocket(&self) -> bool {
        matches!(self.scheme(), "ws" | "wss")
    }

    /// True when the transport is encrypted (`tls://`, `wss://`).
    pub fn is_tls(&self) -> bool {
        matches!(self.scheme(), "tls" | "wss")
    }

    /// The URL as a string, e.g. `nats://127.0.0.1:4222`.
    pub fn as_str(&self) -> &str {
        self.url.as_str().trim_end_matches('/')
    }

    /// The URL with any user info removed, for logs and events.
    pub fn redacted(&self) -> String {
        let mut url = self.url.clone();
        if url.password().is_some() || !url.username().is_empty() {
            let _ = url.set_username("");
            let _ = url.set_password(None);
        }
        url.as_str().trim_end_matches('/').to_owned()
    }

    pub(crate) fn to_server_addr(&self) -> Result<async_nats::ServerAddr, std::io::Error> {
        async_nats::ServerAddr::from_url(self.url.clone())
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "nats" | "tls" => Some(4222),
        "ws" => Some(80),
        "wss" => Some(443),
        _ => None,
    }
}

impl FromStr for ServerUrl {
    type Err = ServerUrlError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let trimmed = raw.trim();
        let with_scheme = if trimmed.contains("://") { trimmed.to_owned() } else { format!("nats://{trimmed}") };
        let mut url = Url::parse(&with_scheme)
            .map_err(|e| ServerUrlError::Invalid { url: raw.to_owned(), reason: e.to_string() })?;
        let scheme = url.scheme().to_ascii_lowercase();
        let Some(port) = default_port(&scheme) else {
            return Err(ServerUrlError::Scheme { url: raw.to_owned(), scheme });
        };
        if url.host_str().is_none_or(str::is_empty) {
            return Err(ServerUrlError::NoHost { url: raw.to_owned() });
        }
        if let Some(host) = url.host_str().map(str::to_ascii_lowercase) {
            let _ = url.set_host(Some(&host));
        }
        if url.port().is_none() {
            // Special schemes (ws/wss) hide their default port; set it explicitly for others.
            let _ = url.set_port(Some(port));
        }
        if url.path() == "/" {
            url.set_path("");
        }
        Ok(ServerUrl { url })
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.redacted();
        if self.is_websocket() && self.url.port().is_none() {
            // ws/wss default ports are elided by `url`; print them for clarity.
            let (scheme, rest) = s.split_once("://").unwrap_or(("", &s));
            let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
            if path.is_empty() {
                return write!(f, "{scheme}://{host}:{}", self.port());
            }
            return write!(f, "{scheme}://{host}:{}/{path}", self.port());
        }
        f.write_str(&s)
    }
}

impl fmt::Debug for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerUrl({self})")
    }
}

impl serde::Serialize for ServerUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> ServerUrl {
        s.parse().unwrap()
    }

    #[test]
    fn normalises_equivalent_spellings() {
        assert_eq!(u("h:4222"), u("nats://h"));
        assert_eq!(u("NATS://H:4222/"), u("nats://h:4222"));
        assert_eq!(u("wss://h"), u("wss://h:443"));
        assert_eq!(u("ws://h"), u("ws://h:80"));
        assert_ne!(u("nats://h:4222"), u("tls://h:4222"));
        assert_eq!(u("tls://h").port(), 4222);
        assert_eq!(u("nats://[::1]:4223").host(), "::1");
    }

    #[test]
    fn rejects_bad_urls_with_a_hint() {
        let err = "http://h:80".parse::<ServerUrl>().unwrap_err();
        assert!(matches!(err, ServerUrlError::Scheme { .. }), "{err}");
        assert!(err.to_string().contains("use nats://"));
        assert!("nats://".parse::<ServerUrl>().is_err());
        assert!("nats://h:99999".parse::<ServerUrl>().is_err());
    }

    #[test]
    fn displays_with_ports_and_without_credentials() {
        assert_eq!(u("wss://leaf.local").to_string(), "wss://leaf.local:443");
        assert_eq!(u("nats://user:pw@h:4222").to_string(), "nats://h:4222");
        assert_eq!(u("nats://user:pw@h:4222").host(), "h");
    }
}
