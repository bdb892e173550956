//! `kinopio live send | recv` as black boxes against a real nats-server, with each other and
//! with the real Python kinopio-hub 3.0.0 (`scripts/interop/p4_live.py`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;

use kinopio_test_support::{NatsServer, WAIT, python_hub3};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

mod common;
use common::{json_lines, next, run, spawn};

#[tokio::test]
async fn live_send_and_recv_print_what_is_known() {
    let server = NatsServer::start();
    let (mut recv, mut lines) = spawn(&server, &["live", "recv", "workshop", "robot/cmd", "--count", "2", "--json"]);
    assert_eq!(next(&mut lines).await["event"], "connected");
    assert_eq!(next(&mut lines).await, json!({"event": "subscribed", "namespace": "workshop", "channel": "robot/cmd"}));
    let (code, out, err) = run(&server, &["live", "send", "workshop", "robot/cmd", r#"{"step": 1}"#, "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let out = json_lines(&out);
    assert_eq!(
        out[1],
        json!({"namespace": "workshop", "channel": "robot/cmd", "value": {"step": 1}, "delivery": "flushed"})
    );
    assert_eq!(out.last().unwrap(), &json!({"event": "closed"}));
    // With --confirm a kinopio receiver confirms: "accepted".
    let (code, _, err) = run(&server, &["live", "send", "workshop", "robot/cmd", r#""two""#, "--confirm"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("accepted: a receiver confirmed"), "{err}");
    let first = next(&mut lines).await;
    assert_eq!((&first["value"], &first["seq"]), (&json!({"step": 1}), &json!(1)));
    assert!(first["lease"].is_string() && first["session"].is_string(), "{first}");
    assert_eq!(next(&mut lines).await["value"], "two");
    assert_eq!(next(&mut lines).await, json!({"event": "closed"}));
    let status = tokio::time::timeout(WAIT, recv.wait()).await.unwrap().unwrap();
    assert!(status.success(), "recv exits after --count");
}

#[tokio::test]
async fn live_failures_have_their_exit_codes() {
    let server = NatsServer::start();
    // Nobody receives: exit 5 at once, saying what to do.
    let (code, _, err) = run(&server, &["live", "send", "workshop", "robot/cmd", "1"]).await;
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("NO_RECEIVERS") && err.contains("kinopio live recv"), "{err}");
    let (code, out, _) = run(&server, &["live", "send", "workshop", "robot/cmd", "1", "--json"]).await;
    assert_eq!(code, 5);
    assert_eq!(json_lines(&out).last().unwrap()["error"]["kind"], "NO_RECEIVERS");
    // Not JSON, or not an allowed value: a usage error before connecting.
    let (code, _, err) = run(&server, &["live", "send", "workshop", "robot/cmd", "not json"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("must be JSON"), "{err}");
    let (code, _, _) = run(&server, &["live", "send", "workshop", "robot/cmd", "9007199254740992"]).await;
    assert_eq!(code, 2);
    let (code, _, _) = run(&server, &["live", "send", "", "robot/cmd", "1"]).await;
    assert_eq!(code, 2);
    // Fewer values than --count before --timeout-ms: exit 4.
    let (code, _, err) =
        run(&server, &["live", "recv", "workshop", "robot/cmd", "--count", "1", "--timeout-ms", "300"]).await;
    assert_eq!(code, 4, "{err}");
}

#[tokio::test]
async fn live_send_to_a_python_receiver() {
    let server = NatsServer::start();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/interop/p4_live.py");
    let mut peer = Command::new(python_hub3())
        .arg(script)
        .args(["recv", "--count", "2", "--server", &server.url(), "--namespace", "workshop", "--channel", "robot/cmd"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(peer.stdout.take().unwrap()).lines();
    assert_eq!(next(&mut lines).await, json!({"event": "ready"}));
    let (code, _, err) = run(&server, &["live", "send", "workshop", "robot/cmd", r#"{"step": 1}"#]).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("flushed: the server has it; whether a receiver accepted it is not known"), "{err}");
    // A Python receiver accepts the value but never confirms: exit 4, and the message says
    // the value was flushed.
    let (code, _, err) =
        run(&server, &["live", "send", "workshop", "robot/cmd", "2", "--confirm", "--timeout-ms", "500"]).await;
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("flushed") && err.contains("Python receivers never confirm"), "{err}");
    assert_eq!(next(&mut lines).await, json!({"value": {"step": 1}, "valid": true}));
    assert_eq!(next(&mut lines).await, json!({"value": 2, "valid": true}));
    let status = tokio::time::timeout(WAIT, peer.wait()).await.unwrap().unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn live_recv_from_a_python_sender() {
    let server = NatsServer::start();
    let (mut recv, mut lines) = spawn(&server, &["live", "recv", "workshop", "robot/cmd", "--count", "2", "--json"]);
    assert_eq!(next(&mut lines).await["event"], "connected");
    assert_eq!(next(&mut lines).await["event"], "subscribed");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/interop/p4_live.py");
    let out = tokio::time::timeout(
        WAIT,
        Command::new(python_hub3())
            .arg(script)
            .args(["send", "--values", r#"[{"b": 2, "a": 1}, "x"]"#, "--server", &server.url()])
            .args(["--namespace", "workshop", "--channel", "robot/cmd"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let first = next(&mut lines).await;
    assert_eq!((&first["value"], &first["seq"]), (&json!({"a": 1, "b": 2}), &json!(1)));
    let second = next(&mut lines).await;
    assert_eq!(second["value"], "x");
    // Python reuses its lease for a quick second send (seq 2), else asks again (seq 1).
    let expected_seq = if second["lease"] == first["lease"] { 2 } else { 1 };
    assert_eq!(second["seq"], expected_seq);
    assert_eq!(next(&mut lines).await, json!({"event": "closed"}));
    let status = tokio::time::timeout(WAIT, recv.wait()).await.unwrap().unwrap();
    assert!(status.success());
}
