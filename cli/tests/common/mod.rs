//! What the CLI tests share: running the `kinopio` binary against a server, bounded, and
//! reading its JSON lines.

#![allow(dead_code)] // each test crate uses its own subset

use kinopio_test_support::{NatsServer, WAIT};
use serde_json::Value as Json;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};

/// `kinopio <args> --server <server>`, killed on drop.
pub(crate) fn kinopio(server: &NatsServer, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kinopio"));
    cmd.args(args).arg("--server").arg(server.url()).kill_on_drop(true);
    cmd
}

/// Runs `kinopio` to its end (bounded): exit code, stdout, stderr.
pub(crate) async fn run(server: &NatsServer, args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(WAIT, kinopio(server, args).output()).await.unwrap().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every stdout line as JSON (panics on a line that is not).
pub(crate) fn json_lines(stdout: &str) -> Vec<Json> {
    stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}"))).collect()
}

/// The next JSON line of a running `kinopio` (bounded).
pub(crate) async fn next(lines: &mut Lines<BufReader<ChildStdout>>) -> Json {
    let line = tokio::time::timeout(WAIT, lines.next_line()).await.unwrap().unwrap().expect("a line");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"))
}

/// Starts a long-running `kinopio` (`sub`, `serve`, `live recv`, `var watch`, …) and returns
/// it with its stdout lines.
pub(crate) fn spawn(server: &NatsServer, args: &[&str]) -> (tokio::process::Child, Lines<BufReader<ChildStdout>>) {
    let mut child = kinopio(server, args).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}
