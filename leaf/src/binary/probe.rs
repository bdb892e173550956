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

/// Runs `path --version` and returns the version it reports, or a description of what
/// went wrong (spawn error, timeout, non-zero exit, no version in the output).
pub(crate) async fn probe_version(path: &Path, timeout: Duration) -> Result<String, String> {
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
            Err(e) => return Err(format!("cannot start it: {e}")),
        }
    };
    let group = child.id();
    let output = tokio::time::timeout(timeout, child.wait_with_output()).await;
    // A probe leaves nothing behind: not the binary, nor anything it started.
    kill_group(group);
    let output = output
        .map_err(|_| format!("`--version` did not finish within {timeout:?}"))?
        .map_err(|e| format!("cannot run it: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!("`--version` exited with {}{}", output.status, excerpt(&stderr, &stdout)));
    }
    version_from_output(&stdout)
        .or_else(|| version_from_output(&stderr))
        .ok_or_else(|| format!("`--version` printed no nats-server version{}", excerpt(&stderr, &stdout)))
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
