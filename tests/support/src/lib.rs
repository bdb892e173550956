//! Test support for the kinopio workspace, in one place (not published): every test and the
//! benchmark take real `nats-server` processes, the Python reference peer, the namespace LAN,
//! free ports and the bounds of their waits from here.
//!
//! # Layout
//! - [`nats`]: real `nats-server` processes on free ports, killed on drop ([`NatsServer`]),
//!   the binary they run ([`nats_server_binary`]), [`free_port`], [`wait_accepting`], and a
//!   TCP delay proxy ([`DelayProxy`]).
//! - [`python`](mod@python): the Python reference peers, kinopio-hub 0.1.1 (`KINOPIO_PYTHON`)
//!   and 3.0.0 (`KINOPIO_PYTHON_HUB3`).
//! - [`lan`]: a LAN of network namespaces (`scripts/lan.sh`, needs root), removed on drop.
//! - [`WAIT`], [`SLOW_WAIT`]: the bounds of waits for something that should happen.
//!
//! Binaries and interpreters come from the environment that `scripts/test.sh` exports
//! (`KINOPIO_NATS_SERVER`, `KINOPIO_PYTHON`), else the repository's `.venv/`
//! (`scripts/install-deps.sh`), else `PATH`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod lan;
pub mod nats;
pub mod python;

pub use nats::{DelayProxy, NatsServer, free_port, nats_server_binary, wait_accepting};
pub use python::{P4Peer, python, python_hub3};

/// Bound of a test's wait for something that should happen (a message, a reply, a state, a
/// process's line). Only a failing test ever waits this long.
pub const WAIT: Duration = Duration::from_secs(20);

/// Bound of a wait that includes slow work (unpacking a release archive, building a CA).
pub const SLOW_WAIT: Duration = Duration::from_secs(60);

/// The root of the repository (where `scripts/`, `.venv/` and `results/` are).
pub fn repo_root() -> PathBuf {
    let support = Path::new(env!("CARGO_MANIFEST_DIR"));
    support.parent().and_then(Path::parent).map_or_else(|| support.join("../.."), Path::to_path_buf)
}
