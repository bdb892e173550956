//! A peer script (the Python reference peers under `scripts/interop/`) that writes one JSON
//! value per line on stdout: spawned with its stderr kept aside (shown when something fails)
//! and every read bounded by [`WAIT`](crate::WAIT).

use std::ffi::OsStr;
use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::WAIT;

/// A running peer script, killed on drop.
#[derive(Debug)]
pub struct ScriptPeer {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: tempfile::NamedTempFile,
}

impl ScriptPeer {
    /// Runs `python script args…` with stdin and stdout piped (closing stdin ends the scripts
    /// that read commands from it).
    pub fn spawn<I, S>(python: &Path, script: &Path, args: I) -> ScriptPeer
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let stderr = tempfile::NamedTempFile::new().expect("a temporary file for the peer's stderr");
        let mut child = Command::new(python)
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Python clients log harmless tracebacks while closing: kept for failures only.
            .stderr(Stdio::from(stderr.reopen().expect("reopen the stderr file")))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start the peer {}: {e}", script.display()));
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        ScriptPeer { child, lines, stderr }
    }

    /// The next JSON line; panics with the peer's stderr when none comes in time.
    pub async fn line(&mut self) -> serde_json::Value {
        let line = tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("the peer said nothing in time:\n{}", self.stderr_text()))
            .expect("read the peer's stdout")
            .unwrap_or_else(|| panic!("the peer exited early:\n{}", self.stderr_text()));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"))
    }

    /// Writes one line to the peer's stdin.
    pub async fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("the peer's stdin is open");
        stdin.write_all(format!("{line}\n").as_bytes()).await.expect("write to the peer");
    }

    /// What the peer wrote on stderr so far.
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    /// Closes stdin and waits (bounded) for a successful exit.
    pub async fn finish(mut self) {
        drop(self.child.stdin.take());
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the peer did not exit in time:\n{}", self.stderr_text()))
            .expect("wait for the peer");
        assert!(status.success(), "the peer failed: {status}\n{}", self.stderr_text());
    }
}
