//! Where kinopio keeps its cache: `KINOPIO_HUB_CACHE_DIR`, else the platform cache directory
//! (`directories`), e.g. `~/.cache/kinopio-hub` on Linux — the same root the Python
//! reference uses, so both can share a CA and a downloaded binary.

use std::path::PathBuf;

/// Environment variable that overrides the cache root.
pub(crate) const CACHE_DIR_ENV: &str = "KINOPIO_HUB_CACHE_DIR";

/// The cache root: `$KINOPIO_HUB_CACHE_DIR` (with `~` expanded) if set and non-empty, else
/// the platform cache directory joined with `kinopio-hub`, else `./.kinopio-hub-cache`.
pub(crate) fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_DIR_ENV).filter(|v| !v.is_empty()) {
        return expand_tilde(PathBuf::from(dir));
    }
    directories::BaseDirs::new()
        .map(|dirs| dirs.cache_dir().join("kinopio-hub"))
        .unwrap_or_else(|| PathBuf::from(".kinopio-hub-cache"))
}

/// Expands a leading `~` to the home directory.
pub(crate) fn expand_tilde(path: PathBuf) -> PathBuf {
    let Ok(rest) = path.strip_prefix("~") else {
        return path;
    };
    match directories::BaseDirs::new() {
        Some(dirs) => dirs.home_dir().join(rest),
        None => path,
    }
}
