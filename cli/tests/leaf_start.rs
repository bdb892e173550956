//! `kinopio leaf start` as a black box: the JSON snapshot, clean exit on SIGTERM/SIGINT
//! with nothing left behind, no orphan even when the CLI is SIGKILLed, and typed errors.

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use kinopio_test_support::WAIT;

struct Cli {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

fn start(cache: &Path, extra: &[&str]) -> Cli {
    start_in(cache, extra, &std::env::temp_dir())
}

/// `kinopio leaf start` with `TMPDIR` set to `tmp` (where its temporary runtime dir goes).
fn start_in(cache: &Path, extra: &[&str], tmp: &Path) -> Cli {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kinopio"))
        .args(["leaf", "start", "--json", "--lan-bind-address", "127.0.0.1", "--binary-path"])
        .arg(kinopio_test_support::nats_server_binary())
        .arg("--cache-dir")
        .arg(cache)
        .args(extra)
        .env("KINOPIO_SKIP_CA_TRUST_INSTALL", "1")
        .env("TMPDIR", tmp)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    Cli { child, lines }
}

impl Cli {
    async fn next_json(&mut self) -> Json {
        let line = tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .expect("timed out waiting for a line")
            .unwrap()
            .expect("stdout closed");
        serde_json::from_str(&line).unwrap_or_else(|err| panic!("not JSON: {line:?}: {err}"))
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().unwrap();
        let status =
            std::process::Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap();
        assert!(status.success());
    }

    /// Waits for exit and returns the exit code and the remaining stdout lines.
    async fn finish(mut self) -> (Option<i32>, Vec<Json>) {
        let mut rest = Vec::new();
        while let Some(line) = tokio::time::timeout(WAIT, self.lines.next_line()).await.unwrap().unwrap() {
            rest.push(serde_json::from_str(&line).unwrap());
        }
        let status = tokio::time::timeout(WAIT, self.child.wait()).await.unwrap().unwrap();
        (status.code(), rest)
    }
}

/// True while `pid` exists and is not a zombie.
fn running(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

fn wait_gone(pid: u64) {
    let deadline = Instant::now() + WAIT;
    while running(pid) {
        assert!(Instant::now() < deadline, "nats-server {pid} is still running");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn snapshot_fields(snapshot: &Json) -> (u64, PathBuf) {
    assert_eq!(snapshot["mode"], "leaf-start");
    for key in ["nodeId", "clientUrl", "wssUrl", "discoveryUrl", "monitorUrl", "caCertFile"] {
        assert!(snapshot[key].as_str().is_some_and(|v| !v.is_empty()), "missing {key} in {snapshot}");
    }
    assert!(snapshot["clientUrl"].as_str().unwrap().starts_with("nats://127.0.0.1:"));
    assert!(snapshot["wssUrl"].as_str().unwrap().starts_with("wss://127.0.0.1:"));
    assert!(snapshot["discoveryUrl"].as_str().unwrap().starts_with("https://127.0.0.1:"));
    let status = &snapshot["status"];
    assert_eq!(status["state"], "running");
    assert_eq!(status["serverReady"], true);
    assert_eq!(status["bridgeState"], "disabled");
    assert_eq!(status["nodeId"], snapshot["nodeId"]);
    assert_eq!(status["tls"]["source"], "generated");
    assert_eq!(status["tls"]["caFile"], snapshot["caCertFile"]);
    let pid = status["processId"].as_u64().unwrap();
    (pid, PathBuf::from(status["runtimeDir"].as_str().unwrap()))
}

#[tokio::test]
async fn sigterm_stops_cleanly_and_removes_the_temporary_runtime_dir() {
    let cache = tempfile::tempdir().unwrap();
    let mut cli = start(cache.path(), &["--name", "cli-test-leaf"]);
    let snapshot = cli.next_json().await;
    let (pid, runtime_dir) = snapshot_fields(&snapshot);
    assert_eq!(snapshot["status"]["serverName"], "cli-test-leaf");
    assert!(running(pid));
    assert!(runtime_dir.join("leaf-nats.conf").is_file());
    assert!(Path::new(snapshot["caCertFile"].as_str().unwrap()).starts_with(cache.path()));

    cli.signal("TERM");
    let (code, rest) = cli.finish().await;
    assert_eq!(code, Some(0));
    let last = rest.last().expect("a final line");
    assert_eq!(last["event"], "stopped");
    assert_eq!(last["nodeId"], snapshot["nodeId"]);
    wait_gone(pid);
    assert!(!runtime_dir.exists(), "the temporary runtime dir is removed");
}

#[tokio::test]
async fn sigint_stops_cleanly_and_keeps_a_given_runtime_dir() {
    let cache = tempfile::tempdir().unwrap();
    let parent = tempfile::tempdir().unwrap();
    let given = parent.path().join("leaf-runtime");
    let mut cli = start(cache.path(), &["--runtime-dir", given.to_str().unwrap()]);
    let (pid, runtime_dir) = snapshot_fields(&cli.next_json().await);
    assert_eq!(runtime_dir, given);
    cli.signal("INT");
    let (code, _) = cli.finish().await;
    assert_eq!(code, Some(0));
    wait_gone(pid);
    assert!(given.is_dir(), "a given runtime dir is kept");
    assert_eq!(std::fs::read_dir(&given).unwrap().count(), 0, "the leaf's files are removed");
}

/// SIGKILL: nats-server dies with the CLI; the runtime directory (private, 0700, it holds the
/// config with any backbone credentials) is left behind, and the next start cleans it — a
/// temporary one and a given one alike.
#[tokio::test]
async fn nats_server_dies_with_a_killed_cli_and_the_next_start_cleans_up() {
    use std::os::unix::fs::PermissionsExt;
    let cache = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let given = tmp.path().join("given-runtime");
    let mut killed = Vec::new();
    for extra in [vec![], vec!["--runtime-dir", given.to_str().unwrap()]] {
        let mut cli = start_in(cache.path(), &extra, tmp.path());
        let (pid, runtime_dir) = snapshot_fields(&cli.next_json().await);
        assert_eq!(std::fs::metadata(&runtime_dir).unwrap().permissions().mode() & 0o777, 0o700);
        cli.signal("KILL");
        let _ = tokio::time::timeout(WAIT, cli.child.wait()).await.unwrap();
        wait_gone(pid);
        assert!(runtime_dir.join("leaf-nats.conf").is_file(), "nobody could clean up after SIGKILL");
        killed.push(runtime_dir);
    }
    // The next start (temporary dir) removes the dead leaf's temporary dir; one on the given
    // dir reuses it instead of refusing a non-empty directory.
    for extra in [vec![], vec!["--runtime-dir", given.to_str().unwrap()]] {
        let mut cli = start_in(cache.path(), &extra, tmp.path());
        let (_, runtime_dir) = snapshot_fields(&cli.next_json().await);
        cli.signal("TERM");
        assert_eq!(cli.finish().await.0, Some(0));
        assert!(!runtime_dir.join("leaf-nats.conf").exists());
    }
    assert!(!killed[0].exists(), "the dead leaf's temporary runtime dir was removed");
    assert_eq!(std::fs::read_dir(&killed[1]).unwrap().count(), 0, "the given dir was cleaned");
}

#[tokio::test]
async fn a_taken_port_is_reported_as_a_json_error() {
    let cache = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let cli = start(cache.path(), &["--client-port", &port]);
    let (code, lines) = cli.finish().await;
    assert_eq!(code, Some(1));
    let error = &lines.last().expect("an error line")["error"];
    assert_eq!(error["kind"], "port-in-use");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains(&port) && message.contains("--client-port"), "{message}");
}

#[tokio::test]
async fn help_lists_the_flags() {
    let output = Command::new(env!("CARGO_BIN_EXE_kinopio")).args(["leaf", "start", "--help"]).output().await.unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--backbone-server",
        "--binary-path",
        "--cache-dir",
        "--runtime-dir",
        "--lan-bind-address",
        "--client-port",
        "--websocket-port",
        "--discovery-port",
        "--monitor-port",
        "--cert-file",
        "--key-file",
        "--ca-file",
        "--name",
        "--json",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}
