//! Runs `<binary> --version` (bounded by a timeout) to learn which nats-server version a
//! binary is, and whether it runs at all.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use super::version::version_from_output;

/// How often a spawn that failed with "text file busy" is retried. That error is a
/// benign race: another thread of this process forked while the just-written binary was
/// still open for writing, and the child holds that descriptor until it execs.
const BUSY_RETRIES: u32 = 50;
const BUSY_BACKOFF: Duration = Duration::from_millis(20);

/// Why running `<binary> --version` gave no nats-server version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The binary could not be started.
    #[error("cannot start it: {0}")]
    Spawn(String),
    /// It did not finish in time (it was killed).
    #[error("`--version` did not finish within {0:?}")]
    Timeout(Duration),
    /// Its output could not be collected.
    #[error("cannot run it: {0}")]
    Wait(String),
    /// It exited with an error.
    #[error("`--version` exited with {status}{excerpt}")]
    Exit {
        /// The exit status.
        status: String,
        /// The start of its output (empty or `: ...`).
        excerpt: String,
    },
    /// Its output holds no nats-server version.
    #[error("`--version` printed no nats-server version{excerpt}")]
    NoVersion {
        /// The start of its output (empty or `: ...`).
        excerpt: String,
    },
}

/// Runs `path --version` and returns the version it reports.
pub(crate) async fn probe_version(path: &Path, timeout: Duration) -> Result<String, ProbeError> {
    let mut attempt = 0;
    let child = loop {
        let mut command = tokio::process::Command::new(path);
        command.arg("--version").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        // Its own process group, so whatever it starts can be killed with it.
        #[cfg(unix)]
        command.process_group(0);
        match command.spawn() {
            Ok(child) => break child,
            Err(e) if is_text_file_busy(&e) && attempt < BUSY_RETRIES => {
                attempt += 1;
                tokio::time::sleep(BUSY_BACKOFF).await;
            }
            Err(e) => return Err(ProbeError::Spawn(e.to_string())),
        }
    };
    let group = child.id();
    let output = tokio::time::timeout(timeout, child.wait_with_output()).await;
    // A probe leaves nothing behind: not the binary, nor anything it started.
    kill_group(group);
    let output = output.map_err(|_| ProbeError::Timeout(timeout))?.map_err(|e| ProbeError::Wait(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(ProbeError::Exit { status: output.status.to_string(), excerpt: excerpt(&stderr, &stdout) });
    }
    version_from_output(&stdout)
        .or_else(|| version_from_output(&stderr))
        .ok_or_else(|| ProbeError::NoVersion { excerpt: excerpt(&stderr, &stdout) })
}

/// Kills the process group `group` (the probe and its descendants); a group already gone is
/// fine.
fn kill_group(group: Option<u32>) {
    #[cfg(unix)]
    if let Some(pid) = group.and_then(|pid| i32::try_from(pid).ok()) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    #[cfg(not(unix))]
    let _ = group;
}

fn is_text_file_busy(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        e.raw_os_error() == Some(libc::ETXTBSY)
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// A short quote of the program's output for error messages.
fn excerpt(stderr: &str, stdout: &str) -> String {
    let text = if stderr.trim().is_empty() { stdout } else { stderr };
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let short: String = text.chars().take(200).collect();
    format!(" (output: {short:?})")
}
