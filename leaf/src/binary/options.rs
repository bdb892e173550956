//! How to find or fetch nats-server: [`BinaryOptions`], a chained builder whose explicit
//! settings win over the environment (`KINOPIO_NATS_SERVER`,
//! `KINOPIO_NATS_SERVER_BASE_URL`, `PATH`), and the [`ProvisionEvent`]s it reports.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;

use super::cache::BinaryCache;
use super::error::ExplicitOrigin;
use super::release::ReleaseTable;

/// Environment variable naming an explicit nats-server binary.
pub const BINARY_ENV: &str = "KINOPIO_NATS_SERVER";

/// Environment variable overriding the download base URL (files at
/// `<base>/v<version>/<asset>`).
pub const BASE_URL_ENV: &str = "KINOPIO_NATS_SERVER_BASE_URL";

/// Default limit on the archive size.
pub const DEFAULT_MAX_DOWNLOAD_BYTES: u64 = 100 * 1024 * 1024;

/// The time limits of one resolution.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub connect: Duration,
    pub stall: Duration,
    pub version: Duration,
    pub lock: Duration,
}

/// A step of provisioning, for progress reporting (`--json` lines, logs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "camelCase")]
#[non_exhaustive]
pub enum ProvisionEvent {
    /// Another process holds the cache lock; waiting for it.
    #[serde(rename_all = "camelCase")]
    WaitingForLock {
        /// The lock file.
        lock: PathBuf,
    },
    /// A download starts.
    #[serde(rename_all = "camelCase")]
    Downloading {
        /// What is fetched.
        url: String,
    },
    /// The archive arrived and its SHA-256 matched.
    #[serde(rename_all = "camelCase")]
    Verified {
        /// The archive URL.
        url: String,
        /// Its size in bytes.
        bytes: u64,
        /// Its SHA-256 (hex).
        sha256: String,
    },
    /// The binary was installed into the cache.
    #[serde(rename_all = "camelCase")]
    Installed {
        /// The installed binary.
        path: PathBuf,
        /// Its version.
        version: String,
    },
}

/// Settings for [`resolve`](super::resolve). Explicit settings always beat the
/// environment, whatever the call order.
///
/// ```no_run
/// # async fn run() -> Result<(), kinopio_leaf::binary::BinaryError> {
/// use kinopio_leaf::binary::{resolve, BinaryOptions};
/// let options = BinaryOptions::from_env().cache_dir("/var/cache/kinopio");
/// let binary = resolve(&options).await?;
/// println!("{} {} ({:?})", binary.path.display(), binary.version, binary.source);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct BinaryOptions {
    binary_path: Option<PathBuf>,
    env_binary_path: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    base_url: Option<String>,
    env_base_url: Option<String>,
    release: Option<ReleaseTable>,
    search_path: Option<OsString>,
    download: bool,
    progress: bool,
    max_download_bytes: u64,
    connect_timeout: Duration,
    stall_timeout: Duration,
    version_timeout: Duration,
    lock_timeout: Duration,
    events: Option<UnboundedSender<ProvisionEvent>>,
}

impl Default for BinaryOptions {
    fn default() -> Self {
        BinaryOptions::new()
    }
}

impl BinaryOptions {
    /// Options that ignore the environment variables above and `PATH` (useful for
    /// embedding and tests): pinned release, official base URL, cache under
    /// `cache_root` (the platform cache directory + `kinopio-hub`, or `KINOPIO_HUB_CACHE_DIR`), downloads allowed, progress bar on terminals.
    pub fn new() -> BinaryOptions {
        BinaryOptions {
            binary_path: None,
            env_binary_path: None,
            cache_dir: None,
            base_url: None,
            env_base_url: None,
            release: None,
            search_path: None,
            download: true,
            progress: true,
            max_download_bytes: DEFAULT_MAX_DOWNLOAD_BYTES,
            connect_timeout: Duration::from_secs(15),
            stall_timeout: Duration::from_secs(30),
            version_timeout: Duration::from_secs(10),
            lock_timeout: Duration::from_secs(600),
            events: None,
        }
    }

    /// [`new`](Self::new) plus `KINOPIO_NATS_SERVER`, `KINOPIO_NATS_SERVER_BASE_URL` and
    /// `PATH` from the process environment (empty values are ignored).
    pub fn from_env() -> BinaryOptions {
        let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let mut options = BinaryOptions::new();
        options.env_binary_path = non_empty(BINARY_ENV).map(PathBuf::from);
        options.env_base_url = non_empty(BASE_URL_ENV).and_then(|v| v.into_string().ok());
        options.search_path = std::env::var_os("PATH");
        options
    }

    /// Use this binary (`--binary-path`); it must exist and run.
    pub fn binary_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary_path = Some(path.into());
        self
    }

    /// Cache root (`--cache-dir`): binaries live in `<dir>/nats-server/`.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Download base URL; files are fetched from `<base>/v<version>/<asset>`.
    pub fn base_url(mut self, base: impl Into<String>) -> Self {
        self.base_url = Some(base.into());
        self
    }

    /// Release table to use instead of the pinned one.
    pub fn release(mut self, table: ReleaseTable) -> Self {
        self.release = Some(table);
        self
    }

    /// Directories to search for `nats-server`, in `PATH` syntax.
    pub fn search_path(mut self, path: impl Into<OsString>) -> Self {
        self.search_path = Some(path.into());
        self
    }

    /// Whether a download may happen (default `true`).
    pub fn download(mut self, allowed: bool) -> Self {
        self.download = allowed;
        self
    }

    /// Whether to draw a progress bar when stderr is a terminal (default `true`).
    pub fn progress(mut self, shown: bool) -> Self {
        self.progress = shown;
        self
    }

    /// Largest accepted archive (default 100 MiB).
    pub fn max_download_bytes(mut self, bytes: u64) -> Self {
        self.max_download_bytes = bytes;
        self
    }

    /// TCP/TLS connect timeout (default 15 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Longest pause without data before a download is abandoned (default 30 s).
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }

    /// Time allowed for `nats-server --version` (default 10 s).
    pub fn version_timeout(mut self, timeout: Duration) -> Self {
        self.version_timeout = timeout;
        self
    }

    /// Longest wait for another process's download (default 10 min).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Sends [`ProvisionEvent`]s to `sink`.
    pub fn events(mut self, sink: UnboundedSender<ProvisionEvent>) -> Self {
        self.events = Some(sink);
        self
    }

    /// The explicit binary and where it came from (option beats environment).
    pub fn explicit_binary(&self) -> Option<(&Path, ExplicitOrigin)> {
        self.binary_path
            .as_deref()
            .map(|p| (p, ExplicitOrigin::Option))
            .or_else(|| self.env_binary_path.as_deref().map(|p| (p, ExplicitOrigin::Env)))
    }

    /// The binary cache these options use.
    pub fn cache(&self) -> BinaryCache {
        match &self.cache_dir {
            Some(dir) => BinaryCache::under_root(crate::paths::expand_tilde(dir.clone())),
            None => BinaryCache::under_root(crate::paths::cache_root()),
        }
    }

    /// The base URL override (option beats environment); `None` means the table's own.
    pub fn base_url_override(&self) -> Option<&str> {
        self.base_url.as_deref().or(self.env_base_url.as_deref())
    }

    pub(crate) fn release_table(&self) -> Option<&ReleaseTable> {
        self.release.as_ref()
    }

    pub(crate) fn search_path_value(&self) -> Option<&OsString> {
        self.search_path.as_ref()
    }

    pub(crate) fn download_allowed(&self) -> bool {
        self.download
    }

    pub(crate) fn progress_wanted(&self) -> bool {
        self.progress
    }

    pub(crate) fn max_bytes(&self) -> u64 {
        self.max_download_bytes
    }

    pub(crate) fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: self.connect_timeout,
            stall: self.stall_timeout,
            version: self.version_timeout,
            lock: self.lock_timeout,
        }
    }

    pub(crate) fn emit(&self, event: ProvisionEvent) {
        tracing::debug!(?event, "nats-server provisioning");
        if let Some(sink) = &self.events {
            let _ = sink.send(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_beats_environment() {
        let mut options = BinaryOptions::new();
        options.env_binary_path = Some("/env/nats-server".into());
        options.env_base_url = Some("https://env.example".into());
        assert_eq!(options.explicit_binary(), Some((Path::new("/env/nats-server"), ExplicitOrigin::Env)));
        assert_eq!(options.base_url_override(), Some("https://env.example"));
        let options = options.binary_path("/opt/nats-server").base_url("https://opt.example");
        assert_eq!(options.explicit_binary(), Some((Path::new("/opt/nats-server"), ExplicitOrigin::Option)));
        assert_eq!(options.base_url_override(), Some("https://opt.example"));
    }

    #[test]
    fn cache_dir_option_maps_to_nats_server_subdir() {
        let options = BinaryOptions::new().cache_dir("/tmp/kc");
        assert_eq!(options.cache().dir(), Path::new("/tmp/kc/nats-server"));
    }

    #[test]
    fn events_serialize_as_tagged_json() {
        let event = ProvisionEvent::Installed { path: "/c/nats-server".into(), version: "2.12.7".into() };
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"event":"installed","path":"/c/nats-server","version":"2.12.7"}"#
        );
    }
}
