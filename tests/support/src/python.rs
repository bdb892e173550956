//! The Python reference peer, kinopio-hub 0.1.1, in the virtualenv that
//! `scripts/install-deps.sh` creates.

use std::path::PathBuf;

/// Environment variable naming the Python interpreter that has kinopio-hub 0.1.1.
pub const PYTHON_ENV: &str = "KINOPIO_PYTHON";

/// Where the interpreter should be: `KINOPIO_PYTHON`, else the repository's
/// `.venv/bin/python` (it may not exist; see [`python`]).
pub fn python_path() -> PathBuf {
    std::env::var_os(PYTHON_ENV)
        .filter(|p| !p.is_empty())
        .map_or_else(|| crate::repo_root().join(".venv/bin/python"), PathBuf::from)
}

/// The interpreter; panics with what to do when it is missing (the tests that use it need it).
pub fn python() -> PathBuf {
    let path = python_path();
    assert!(
        path.exists(),
        "the Python reference peer is missing at {}: run scripts/install-deps.sh (or set {PYTHON_ENV})",
        path.display()
    );
    path
}

/// kinopio-hub 0.1.1's command-line program beside the interpreter; panics with what to do
/// when it is missing.
pub fn kinopio_hub() -> PathBuf {
    let python = python();
    let path = python.parent().map_or_else(|| PathBuf::from("kinopio-hub"), |dir| dir.join("kinopio-hub"));
    assert!(path.exists(), "kinopio-hub 0.1.1 is missing at {}: run scripts/install-deps.sh", path.display());
    path
}

/// Environment variable naming the Python interpreter that has kinopio-hub 3.0.0 (protocol 4).
pub const PYTHON_HUB3_ENV: &str = "KINOPIO_PYTHON_HUB3";

/// The interpreter with kinopio-hub 3.0.0: `KINOPIO_PYTHON_HUB3`, else the repository's
/// `.venv-hub3/bin/python`; panics with what to do when it is missing.
pub fn python_hub3() -> PathBuf {
    let path = std::env::var_os(PYTHON_HUB3_ENV)
        .filter(|p| !p.is_empty())
        .map_or_else(|| crate::repo_root().join(".venv-hub3/bin/python"), PathBuf::from);
    assert!(
        path.exists(),
        "kinopio-hub 3.0.0 is missing at {}: run scripts/install-deps.sh (or set {PYTHON_HUB3_ENV})",
        path.display()
    );
    path
}
