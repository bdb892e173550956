//! Measurements that must run in a fresh process (memory): `kinopio-bench <role> <args>` as a
//! child, bounded, whose last JSON line on stdout is its result.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::error::BenchError;

/// How long a child may take.
const CHILD_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs this binary with `args` (`what` names it in errors) and reads its result.
pub(crate) async fn run<T: DeserializeOwned>(args: &[String], what: &str) -> Result<T, BenchError> {
    let exe = std::env::current_exe().map_err(|source| BenchError::Io {
        what: "find the running executable",
        path: PathBuf::from("/proc/self/exe"),
        source,
    })?;
    let mut command = tokio::process::Command::new(&exe);
    command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let output = tokio::time::timeout(CHILD_TIMEOUT, command.output())
        .await
        .map_err(|_| BenchError::Child(format!("{what} did not finish within {CHILD_TIMEOUT:?}")))?
        .map_err(|source| BenchError::Io { what: "run", path: exe.clone(), source })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(BenchError::Child(format!(
            "{what} exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_default();
    serde_json::from_str(line).map_err(|e| BenchError::Child(format!("{what} printed no result ({e}): {stdout:?}")))
}
