//! `kinopio peers` as a black box against a real nats-server and the real Python
//! kinopio-hub 3.0.0 (`scripts/interop/p4_presence.py`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;

use kinopio_test_support::{NatsServer, WAIT, python_hub3, repo_root};
use serde_json::Value as Json;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

fn kinopio(server: &NatsServer, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kinopio"));
    cmd.args(args).arg("--server").arg(server.url()).kill_on_drop(true);
    cmd
}

async fn run(server: &NatsServer, args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(WAIT, kinopio(server, args).output()).await.unwrap().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_lines(stdout: &str) -> Vec<Json> {
    stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}"))).collect()
}

struct Peer {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: tempfile::NamedTempFile,
}

impl Peer {
    fn spawn(server: &NatsServer, duration_s: &str) -> Peer {
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let mut child = Command::new(python_hub3())
            .arg(repo_root().join("scripts/interop/p4_presence.py"))
            .args(["--server", &server.url(), "--namespace", "workshop", "--interval", "0.2"])
            .args(["--duration", duration_s, "--expect-sdk", "rust"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr.reopen().unwrap()))
            .kill_on_drop(true)
            .spawn()
            .expect("start the Python 3.0.0 peer");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Peer { child, lines, stderr }
    }

    async fn line(&mut self) -> Json {
        let text = std::fs::read_to_string(self.stderr.path()).unwrap_or_default();
        let line = tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("the Python peer said nothing in time:\n{text}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the Python peer exited early:\n{text}"));
        serde_json::from_str(&line).unwrap()
    }
}

#[tokio::test]
async fn peers_lists_a_python_instance_and_keeps_its_health_ok() {
    let server = NatsServer::start();
    let mut peer = Peer::spawn(&server, "5");
    let ready = peer.line().await;
    let python_id = ready["instanceId"].as_str().unwrap().to_owned();

    let wait = ["--wait-ms", "1000"];
    let json_args = [&["peers", "workshop", "--json"][..], &wait[..]].concat();
    let text_args = [&["peers", "workshop"][..], &wait[..]].concat();
    let watch_args = ["peers", "workshop", "--watch", "--count", "1", "--timeout-ms", "10000", "--json"];
    let ((code, out, err), (text_code, text, text_err)) =
        tokio::join!(run(&server, &json_args), run(&server, &text_args));
    // After those two exited, so the first instance the watch hears of is Python.
    let (watch_code, watched, watch_err) = run(&server, &watch_args).await;

    assert_eq!(code, 0, "{err}");
    let lines = json_lines(&out);
    assert_eq!(lines.first().unwrap()["event"], "connected", "{out}");
    assert_eq!(lines.last().unwrap()["event"], "closed", "{out}");
    let python = lines.iter().find(|l| l["instanceId"] == python_id.as_str()).unwrap_or_else(|| panic!("{out}"));
    assert_eq!(python["sdk"], "python");
    assert_eq!(python["version"], "3.0.0");
    assert_eq!(python["connection"], "connected");
    assert_eq!(python["health"], "ok");
    assert_eq!(python["online"], "online");
    assert_eq!(python["self"], false);
    assert_eq!(python["intervalMs"], 200);
    assert_eq!(python["status"]["instanceId"], python_id.as_str());
    assert!(lines.iter().all(|l| l["self"] != true), "the command's own instance is not listed by default: {out}");

    assert_eq!(text_code, 0, "{text_err}");
    let row = text.lines().find(|l| l.starts_with(&python_id)).unwrap_or_else(|| panic!("{text}"));
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(columns, [python_id.as_str(), "python", "3.0.0", "connected", "ok", "online"], "{text}");

    assert_eq!(watch_code, 0, "{watch_err}");
    let watched = json_lines(&watched);
    assert_eq!(watched[1]["event"], "joined", "{watched:?}");
    assert_eq!(watched[1]["instanceId"], python_id.as_str());

    // The three commands reported their health to the Python hub, which stayed "ok".
    let seen = peer.line().await;
    assert_eq!(seen["event"], "seen", "{seen}");
    assert_eq!(seen["row"]["sdk"], "rust");
    let done = peer.line().await;
    assert_eq!(done["healthAlwaysOk"], true, "{done}");
    let status = tokio::time::timeout(WAIT, peer.child.wait()).await.unwrap().unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn peers_without_instances_or_with_a_bad_namespace_fail_clearly() {
    let server = NatsServer::start();
    let (code, _, err) = run(&server, &["peers", "nobody-here", "--wait-ms", "300"]).await;
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("no instance of namespace \"nobody-here\""), "{err}");
    let (code, out, _) = run(&server, &["peers", "nobody-here", "--wait-ms", "300", "--json"]).await;
    assert_eq!(code, 4);
    let lines = json_lines(&out);
    assert_eq!(lines.last().unwrap()["error"]["kind"], "no-instances", "{out}");
    // --include-self lists the command itself.
    let (code, out, err) =
        run(&server, &["peers", "nobody-here", "--wait-ms", "300", "--include-self", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let own = json_lines(&out).into_iter().find(|l| l["self"] == true).unwrap_or_else(|| panic!("{out}"));
    assert_eq!(own["sdk"], "rust");
    assert_eq!(own["status"].get("name"), None);

    let (code, _, err) = run(&server, &["peers", "", "--wait-ms", "300"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("namespace") || err.contains("name"), "{err}");
    // Not connected: exit 3.
    let mut dead = NatsServer::start();
    dead.kill();
    let (code, _, err) = run(&dead, &["peers", "workshop", "--connect-timeout-ms", "500"]).await;
    assert_eq!(code, 3, "{err}");
}
