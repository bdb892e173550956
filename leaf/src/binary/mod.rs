//! Provides a nats-server binary: an explicit path, a cached download, one on `PATH`, or
//! a fresh download of the pinned release, verified and installed atomically.
//!
//! Resolution order ([`resolve`]):
//! 1. **explicit**: [`BinaryOptions::binary_path`] (`--binary-path`), else
//!    `KINOPIO_NATS_SERVER`; it must be an executable file that answers `--version`;
//! 2. **cached**: `<cache>/nats-server-v<ver>-<platform>/nats-server` for this platform,
//!    the pinned version first, then the highest; it must carry kinopio's install record
//!    (the binary's SHA-256, written after verifying the download) and match it — binaries
//!    other tools put in the shared cache are never run — and answer `--version` with the
//!    version in its directory name;
//! 3. **`PATH`**: the first executable `nats-server` that answers `--version`;
//! 4. **download** of the pinned release ([`ReleaseTable`], from
//!    `manifests/nats-server-release.json`) from `<base>/v<ver>/<asset>`, where the base is
//!    [`BinaryOptions::base_url`], else `KINOPIO_NATS_SERVER_BASE_URL`, else GitHub
//!    releases. A mirror must keep GitHub's layout below its base (see [`ReleaseTable`]).
//!
//! The cache is `<cache_root>/nats-server/` (the platform cache directory, or
//! `<--cache-dir>/nats-server/`). Downloads are serialised across processes by
//! `<cache>/.lock`; a process that waited finds the other's install and uses it. The
//! archive is streamed to a temporary file in the cache with a size limit, its SHA-256 is
//! checked against the table (or the release's `SHA256SUMS` when the table pins none),
//! only the binary is extracted (path-escape checks), it must report the expected version,
//! and only then is its directory renamed into place. Any failure removes every temporary
//! file; the cache then holds nothing but the `.lock` file.

mod archive;
mod cache;
mod download;
mod error;
mod install;
mod lock;
mod options;
mod platform;
mod probe;
pub(crate) mod release;
mod version;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use archive::{PathProblem, check_hardlink_target, check_symlink_target, normalize_entry_path};
pub use cache::{
    BinaryCache, CachedBinary, INSTALL_RECORD_FILE, LOCK_FILE_NAME, cached_version, rank_cached, write_install_record,
};
pub use error::{BinaryError, BinaryErrorKind, ExplicitOrigin, ExplicitPathProblem, HOW_TO_SUPPLY};
pub use options::{BASE_URL_ENV, BINARY_ENV, BinaryOptions, DEFAULT_MAX_DOWNLOAD_BYTES, ProvisionEvent};
pub use platform::{ArchiveKind, Platform, UnsupportedPlatform};
pub use probe::ProbeError;
pub use release::{
    CHECKSUMS_ASSET, ChecksumLookupError, OFFICIAL_BASE_URL, ReleaseTable, Sha256Digest, checksum_for_asset,
    parse_sha256_hex, release_file_url,
};
pub use version::{Version, version_from_output};

use lock::CacheLock;
use probe::probe_version;

/// Where a resolved binary came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum BinarySource {
    /// `--binary-path` or `KINOPIO_NATS_SERVER`.
    Explicit,
    /// An earlier download in the cache.
    Cached,
    /// Found on `PATH`.
    Path,
    /// Downloaded just now.
    Downloaded,
}

/// A usable nats-server binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedBinary {
    /// The executable.
    pub path: PathBuf,
    /// The version it reports (`2.12.7`).
    pub version: String,
    /// How it was found.
    pub source: BinarySource,
}

/// Finds or downloads a nats-server binary (see the module docs for the order).
///
/// # Errors
///
/// A [`BinaryError`] saying why no binary could be provided: an unusable explicit path,
/// downloading disabled or unsupported here, a failed or unverifiable download, a cache
/// that cannot be written. Each message says how to supply a binary instead.
///
/// # Cancel safety
///
/// Safe to drop: downloads and extraction go to temporary files in the cache that are
/// removed when dropped (or by the next provisioning), and only a complete, verified binary
/// is renamed into place, so nothing half-written is ever run.
pub async fn resolve(options: &BinaryOptions) -> Result<ResolvedBinary, BinaryError> {
    if let Some((path, origin)) = options.explicit_binary() {
        return resolve_explicit(path, origin, options).await;
    }
    let table = match options.release_table() {
        Some(table) => table.clone(),
        None => ReleaseTable::pinned()?,
    };
    let platform = Platform::current();
    let cache = options.cache();

    if let Ok(platform) = platform
        && let Some(found) = find_cached(&cache, platform, table.version(), options).await
    {
        return Ok(found);
    }
    let binary_name = match platform {
        Ok(p) => p.binary_name(),
        Err(_) if cfg!(windows) => "nats-server.exe",
        Err(_) => "nats-server",
    };
    if let Some(search_path) = options.search_path_value()
        && let Some(found) = find_on_path(search_path, binary_name, options).await
    {
        return Ok(found);
    }
    if !options.download_allowed() {
        return Err(BinaryError::DownloadDisabled { cache_dir: cache.dir().to_owned() });
    }
    let platform = platform.map_err(|u| BinaryError::UnsupportedPlatform { os: u.os, arch: u.arch })?;
    let base_url = options.base_url_override().unwrap_or(table.base_url()).to_owned();
    release::parse_base_url(&base_url)?;

    std::fs::create_dir_all(cache.dir()).map_err(|e| BinaryError::io("create the cache directory", cache.dir(), e))?;
    let lock_path = cache.lock_path();
    let _lock = CacheLock::acquire(&lock_path, options.timeouts().lock, || {
        tracing::info!(lock = %lock_path.display(), "waiting for another process's nats-server download");
        options.emit(ProvisionEvent::WaitingForLock { lock: lock_path.clone() });
    })
    .await?;
    // Another process may have installed it while we waited.
    if let Some(found) = find_cached(&cache, platform, table.version(), options).await {
        return Ok(found);
    }
    install::sweep_leftovers(&cache);
    let path = install::download_and_install(&cache, platform, &table, &base_url, options).await?;
    Ok(ResolvedBinary { path, version: table.version().to_owned(), source: BinarySource::Downloaded })
}

async fn resolve_explicit(
    path: &Path,
    origin: ExplicitOrigin,
    options: &BinaryOptions,
) -> Result<ResolvedBinary, BinaryError> {
    let path = crate::paths::expand_tilde(path.to_owned());
    // Relative paths are made absolute so the result stays valid if the cwd changes.
    let path = std::path::absolute(&path).unwrap_or(path);
    let fail = |problem| BinaryError::ExplicitPath { origin, path: path.clone(), problem };
    let meta = std::fs::metadata(&path).map_err(|e| fail(ExplicitPathProblem::NotFound(e.to_string())))?;
    if !meta.is_file() {
        return Err(fail(ExplicitPathProblem::NotAFile));
    }
    if !cache::is_executable_file(&path) {
        return Err(fail(ExplicitPathProblem::NotExecutable));
    }
    let version_timeout = options.timeouts().version;
    let version =
        probe_version(&path, version_timeout).await.map_err(|why| fail(ExplicitPathProblem::VersionCheck(why)))?;
    Ok(ResolvedBinary { path, version, source: BinarySource::Explicit })
}

/// The best cached binary that runs and reports the version of its directory.
async fn find_cached(
    cache: &BinaryCache,
    platform: Platform,
    preferred: &str,
    options: &BinaryOptions,
) -> Option<ResolvedBinary> {
    let version_timeout = options.timeouts().version;
    for candidate in rank_cached(cache::scan(cache, platform), preferred) {
        // Never run a cached binary kinopio did not verify and install itself.
        let release_dir = candidate.path.parent().unwrap_or(cache.dir());
        if let Err(why) = cache::check_install_record(release_dir, &candidate.path) {
            tracing::warn!(path = %candidate.path.display(), "skipping cached nats-server: {why}");
            continue;
        }
        match probe_version(&candidate.path, version_timeout).await {
            Ok(reported) if reported == candidate.version => {
                return Some(ResolvedBinary { path: candidate.path, version: reported, source: BinarySource::Cached });
            }
            Ok(reported) => tracing::warn!(
                path = %candidate.path.display(),
                "skipping cached nats-server: it reports {reported}, its directory says {}",
                candidate.version
            ),
            Err(why) => tracing::warn!(
                path = %candidate.path.display(),
                "skipping cached nats-server: {why}"
            ),
        }
    }
    None
}

/// Candidate binaries on a `PATH`-style list, in order. Empty and relative entries are
/// skipped (they would depend on the current directory).
pub fn path_candidates(search_path: &OsStr, binary_name: &str) -> Vec<PathBuf> {
    std::env::split_paths(search_path).filter(|dir| dir.is_absolute()).map(|dir| dir.join(binary_name)).collect()
}

async fn find_on_path(search_path: &OsStr, binary_name: &str, options: &BinaryOptions) -> Option<ResolvedBinary> {
    let version_timeout = options.timeouts().version;
    for candidate in path_candidates(search_path, binary_name) {
        if !cache::is_executable_file(&candidate) {
            continue;
        }
        match probe_version(&candidate, version_timeout).await {
            Ok(version) => {
                return Some(ResolvedBinary { path: candidate, version, source: BinarySource::Path });
            }
            Err(why) => tracing::warn!(
                path = %candidate.display(),
                "skipping nats-server on PATH: {why}"
            ),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_candidates_keep_order_and_skip_relative_entries() {
        let joined = std::env::join_paths(["/a", "", "rel", "/b/c"]).unwrap();
        assert_eq!(
            path_candidates(&joined, "nats-server"),
            [PathBuf::from("/a/nats-server"), PathBuf::from("/b/c/nats-server")]
        );
    }

    #[test]
    fn resolved_binary_serializes() {
        let resolved = ResolvedBinary {
            path: "/x/nats-server".into(),
            version: "2.12.7".into(),
            source: BinarySource::Downloaded,
        };
        let json = serde_json::to_string(&resolved).unwrap();
        assert_eq!(json, r#"{"path":"/x/nats-server","version":"2.12.7","source":"downloaded"}"#);
        assert_eq!(serde_json::from_str::<ResolvedBinary>(&json).unwrap(), resolved);
    }
}
