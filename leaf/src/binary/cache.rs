//! The on-disk binary cache: its layout (`<dir>/nats-server-v<ver>-<platform>/nats-server`,
//! `<dir>/.lock`, temporary `.download-*`/`.install-*` entries) and the choice of a cached
//! binary (pure ranking over a directory scan).

use std::path::{Path, PathBuf};

use super::platform::Platform;
use super::version::Version;

/// Name of the lock file that serialises downloads into one cache directory.
pub const LOCK_FILE_NAME: &str = ".lock";

/// Prefixes of temporary entries; any such entry found while holding the lock is a
/// leftover of a crashed process and is removed.
pub(crate) const TEMP_PREFIXES: [&str; 3] = [".download-", ".install-", ".stale-"];

/// A nats-server binary cache directory (normally `<cache_root>/nats-server/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryCache {
    dir: PathBuf,
}

impl BinaryCache {
    /// The cache in `dir` itself.
    pub fn new(dir: impl Into<PathBuf>) -> BinaryCache {
        BinaryCache { dir: dir.into() }
    }

    /// The cache under a cache root: `<root>/nats-server/`.
    pub fn under_root(root: impl AsRef<Path>) -> BinaryCache {
        BinaryCache::new(root.as_ref().join("nats-server"))
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The lock file (`<dir>/.lock`).
    pub fn lock_path(&self) -> PathBuf {
        self.dir.join(LOCK_FILE_NAME)
    }

    /// Where `version` for `platform` is installed: `<dir>/nats-server-v<ver>-<platform>/`.
    pub fn release_dir(&self, platform: Platform, version: &str) -> PathBuf {
        self.dir.join(platform.release_dir_name(version))
    }

    /// The installed binary of `version` for `platform`.
    pub fn binary_path(&self, platform: Platform, version: &str) -> PathBuf {
        self.release_dir(platform, version).join(platform.binary_name())
    }
}

/// The file kinopio writes beside a binary it installed: the binary's SHA-256. Other tools
/// share the cache root (kinopio-hub's unverified downloads land in the same layout), so a
/// cached binary is only run when this record exists and matches.
pub const INSTALL_RECORD_FILE: &str = "kinopio-install.json";

/// Writes the install record of `binary` into `release_dir` (what the installer does after
/// verifying a download).
///
/// # Errors
/// The binary cannot be read or the record written.
pub fn write_install_record(release_dir: &Path, binary: &Path) -> std::io::Result<()> {
    let record = serde_json::json!({ "sha256": file_sha256(binary)?, "installedBy": "kinopio" });
    std::fs::write(release_dir.join(INSTALL_RECORD_FILE), record.to_string())
}

/// Why a cached binary is not trusted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UntrustedCacheEntry {
    #[error("no kinopio install record (another tool put it there?); not running it")]
    NoRecord,
    #[error("unreadable install record: {0}")]
    Unreadable(#[source] serde_json::Error),
    #[error("the install record has no sha256")]
    NoDigest,
    #[error("cannot read it: {0}")]
    Read(#[source] std::io::Error),
    #[error("its SHA-256 differs from the install record; not running it")]
    DigestMismatch,
}

/// Whether `binary` is the one kinopio installed into `release_dir`: `Ok(())`, or why not.
pub(crate) fn check_install_record(release_dir: &Path, binary: &Path) -> Result<(), UntrustedCacheEntry> {
    let record =
        std::fs::read_to_string(release_dir.join(INSTALL_RECORD_FILE)).map_err(|_| UntrustedCacheEntry::NoRecord)?;
    let record: serde_json::Value = serde_json::from_str(&record).map_err(UntrustedCacheEntry::Unreadable)?;
    let want = record["sha256"].as_str().ok_or(UntrustedCacheEntry::NoDigest)?;
    let have = file_sha256(binary).map_err(UntrustedCacheEntry::Read)?;
    if have == want { Ok(()) } else { Err(UntrustedCacheEntry::DigestMismatch) }
}

fn file_sha256(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut file = std::fs::File::open(path)?;
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// The version in a cache entry name `nats-server-v<version>-<platform tag>`, if the name
/// is for `platform` and the version is valid.
///
/// ```
/// use kinopio_leaf::binary::{cached_version, Platform};
/// assert_eq!(cached_version("nats-server-v2.12.7-linux-amd64", Platform::LinuxAmd64).as_deref(), Some("2.12.7"));
/// assert_eq!(cached_version("nats-server-v2.12.7-linux-arm64", Platform::LinuxAmd64), None);
/// ```
pub fn cached_version(name: &str, platform: Platform) -> Option<String> {
    let rest = name.strip_prefix("nats-server-v")?;
    let version = rest.strip_suffix(platform.tag())?.strip_suffix('-')?;
    Version::parse(version).map(|_| version.to_owned())
}

/// One installed binary found in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedBinary {
    /// Version from the directory name.
    pub version: String,
    /// Path of the binary.
    pub path: PathBuf,
    /// Whether the binary is a regular file with execute permission.
    pub executable: bool,
}

/// Orders usable cache entries best first: the `preferred` (pinned) version, then the
/// others by descending version. Entries whose binary is not executable are dropped.
pub fn rank_cached(mut entries: Vec<CachedBinary>, preferred: &str) -> Vec<CachedBinary> {
    entries.retain(|e| e.executable);
    entries.sort_by(|a, b| {
        let a_pref = a.version == preferred;
        let b_pref = b.version == preferred;
        b_pref.cmp(&a_pref).then_with(|| match (Version::parse(&a.version), Version::parse(&b.version)) {
            (Some(va), Some(vb)) => vb.cmp(&va),
            _ => b.version.cmp(&a.version),
        })
    });
    entries
}

/// Lists the cache entries for `platform` (unranked). A missing or unreadable cache
/// directory yields no entries.
pub(crate) fn scan(cache: &BinaryCache, platform: Platform) -> Vec<CachedBinary> {
    let Ok(read_dir) = std::fs::read_dir(cache.dir()) else {
        return Vec::new();
    };
    read_dir
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let version = cached_version(name.to_str()?, platform)?;
            let path = entry.path().join(platform.binary_name());
            let executable = is_executable_file(&path);
            Some(CachedBinary { version, path, executable })
        })
        .collect()
}

/// Whether `path` (following symlinks) is a regular file that may be executed.
pub(crate) fn is_executable_file(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: &str, executable: bool) -> CachedBinary {
        CachedBinary {
            version: version.to_owned(),
            path: PathBuf::from(format!("/c/nats-server-v{version}-linux-amd64/nats-server")),
            executable,
        }
    }

    #[test]
    fn parses_cache_dir_names_for_this_platform_only() {
        let p = Platform::LinuxAmd64;
        assert_eq!(cached_version("nats-server-v2.12.7-linux-amd64", p).as_deref(), Some("2.12.7"));
        assert_eq!(cached_version("nats-server-v2.11.0-RC.1-linux-amd64", p).as_deref(), Some("2.11.0-RC.1"));
        for other in [
            "nats-server-v2.12.7-darwin-amd64",
            "nats-server-v2.12.7-linux-amd64.tar.gz",
            "nats-server-vlatest-linux-amd64",
            "nats-server-v-linux-amd64",
            "nats-server-2.12.7-linux-amd64",
            ".install-abc",
            ".lock",
        ] {
            assert_eq!(cached_version(other, p), None, "{other}");
        }
    }

    #[test]
    fn prefers_pinned_then_highest_executable() {
        let ranked = rank_cached(
            vec![
                entry("2.9.0", true),
                entry("2.12.7", true),
                entry("2.13.0", true),
                entry("2.14.0", false),
                entry("2.10.1", true),
            ],
            "2.12.7",
        );
        let versions: Vec<&str> = ranked.iter().map(|e| e.version.as_str()).collect();
        assert_eq!(versions, ["2.12.7", "2.13.0", "2.10.1", "2.9.0"]);
    }

    #[test]
    fn highest_wins_without_pinned_and_nothing_when_not_executable() {
        let ranked = rank_cached(vec![entry("2.9.22", true), entry("2.10.0", true)], "2.12.7");
        assert_eq!(ranked[0].version, "2.10.0");
        assert!(rank_cached(vec![entry("2.12.7", false)], "2.12.7").is_empty());
    }

    #[test]
    fn layout_matches_the_reference() {
        let cache = BinaryCache::under_root("/root");
        assert_eq!(cache.dir(), Path::new("/root/nats-server"));
        assert_eq!(cache.lock_path(), Path::new("/root/nats-server/.lock"));
        assert_eq!(
            cache.binary_path(Platform::LinuxAmd64, "2.12.7"),
            Path::new("/root/nats-server/nats-server-v2.12.7-linux-amd64/nats-server")
        );
    }
}
