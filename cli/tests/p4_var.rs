//! `kinopio var set | get | rm | ls | watch` as black boxes against a real nats-server, with
//! the real Python kinopio-hub 3.0.0 holding the namespace's state (protocol 4 keeps state in
//! its running instances).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kinopio_test_support::{NatsServer, P4Peer, WAIT};
use serde_json::{Value as Json, json};
use tokio::process::Command;

mod common;
use common::{run, spawn};

/// The command's own JSON lines (without the connection events).
fn lines(stdout: &str) -> Vec<Json> {
    stdout
        .lines()
        .map(|l| serde_json::from_str::<Json>(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .filter(|v| v.get("event").is_none())
        .collect()
}

#[tokio::test]
async fn var_commands_read_and_write_a_python_namespace() {
    let server = NatsServer::start();
    let mut py = P4Peer::start(&server.url(), "workshop");
    py.cmd(json!({"op": "set", "name": "battery", "value": {"level": 80}}));

    // get: after sync, the value Python holds.
    let (code, out, err) = run(&server, &["var", "get", "workshop", "battery"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), r#"{"level":80}"#);
    let (code, out, _) = run(&server, &["var", "get", "workshop", "battery", "--json"]).await;
    assert_eq!(code, 0);
    let got = &lines(&out)[0];
    assert_eq!(got["value"], json!({"level": 80}));
    assert_eq!(got["version"]["writer"], py.writer.as_str());

    // set: Python sees it, at a version above the one it held (the CLI synced first).
    let (code, out, err) = run(&server, &["var", "set", "workshop", "battery", r#"{"level": 75.0}"#, "--json"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines(&out)[0]["version"]["counter"], "2");
    let seen = py.cmd(json!({"op": "wait", "name": "battery", "value": {"level": 75}}));
    assert_eq!(seen["version"]["counter"], "2");

    // ls lists every live variable.
    py.cmd(json!({"op": "set", "name": "mode", "value": "auto"}));
    let (code, out, _) = run(&server, &["var", "ls", "workshop", "--json"]).await;
    assert_eq!(code, 0);
    let names: Vec<_> = lines(&out).iter().map(|l| l["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["battery", "mode"]);

    // rm: a tombstone Python applies; get then exits 7.
    let (code, _, err) = run(&server, &["var", "rm", "workshop", "mode"]).await;
    assert_eq!(code, 0, "{err}");
    py.cmd(json!({"op": "wait", "name": "mode", "deleted": true}));
    let (code, _, err) = run(&server, &["var", "get", "workshop", "mode"]).await;
    assert_eq!(code, 7, "{err}");
    assert!(err.contains("deleted"), "{err}");
    let (code, _, err) = run(&server, &["var", "get", "workshop", "never-set"]).await;
    assert_eq!(code, 7, "{err}");
    assert!(err.contains("does not exist"), "{err}");

    // watch: the current value, then Python's change.
    let (mut watch, mut out) = spawn(&server, &["var", "watch", "workshop", "battery", "--count", "2", "--json"]);
    let mut values = Vec::new();
    while values.len() < 2 {
        let line = tokio::time::timeout(WAIT, out.next_line()).await.unwrap().unwrap().expect("a line");
        let v: Json = serde_json::from_str(&line).unwrap();
        if v.get("event").is_none() {
            values.push(v["value"].clone());
            if values.len() == 1 {
                py.cmd(json!({"op": "set", "name": "battery", "value": {"level": 70}}));
            }
        }
    }
    assert_eq!(values, [json!({"level": 75}), json!({"level": 70})]);
    let status = tokio::time::timeout(WAIT, watch.wait()).await.unwrap().unwrap();
    assert!(status.success());

    // Python's health stayed ok through all of it.
    assert_eq!(py.cmd(json!({"op": "health"}))["health"], "ok");
}

#[tokio::test]
async fn var_set_refuses_values_the_wire_cannot_carry_exactly() {
    let server = NatsServer::start();
    for (value, why) in [
        ("12345678901234567890", "beyond"),
        ("hello", "not JSON"),
        ("NaN", "not JSON"),
        (&format!("{}1{}", "[".repeat(40), "]".repeat(40)), "deep"),
    ] {
        let (code, _, err) = run(&server, &["var", "set", "workshop", "x", value]).await;
        assert_eq!(code, 2, "{value}: {err}");
        assert!(err.contains(why) || err.contains("INVALID_VALUE"), "{value}: {err}");
    }
    let (code, _, err) = run(&server, &["var", "get", "bad\u{7f}ns", "x"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("INVALID_NAME"), "{err}");
    // Not connected: exit 3.
    let port = kinopio_test_support::free_port();
    let out = tokio::time::timeout(
        WAIT,
        Command::new(env!("CARGO_BIN_EXE_kinopio"))
            .args(["var", "get", "workshop", "x", "--connect-timeout-ms", "300", "--server"])
            .arg(format!("nats://127.0.0.1:{port}"))
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(out.status.code(), Some(3));
}
