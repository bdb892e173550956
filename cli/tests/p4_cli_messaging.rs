//! `kinopio pub | sub | req | serve --namespace NS` (protocol 4) as black boxes against a real
//! nats-server, one of them against the real Python kinopio-hub 3.0.0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;

use kinopio_test_support::{NatsServer, WAIT, python_hub3};
use serde_json::{Value as Json, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};

mod common;
use common::{json_lines, next, run, spawn};

/// Reads lines until one has `key` equal to `value`.
async fn until(lines: &mut Lines<BufReader<ChildStdout>>, key: &str, value: &str) -> Json {
    loop {
        let line = next(lines).await;
        if line[key] == value {
            return line;
        }
    }
}

#[tokio::test]
async fn pub_sub_req_serve_speak_protocol_4() {
    let server = NatsServer::start();
    let (mut sub, mut lines) =
        spawn(&server, &["sub", "sensor.*", "--namespace", "workshop", "--count", "2", "--json"]);
    assert_eq!(next(&mut lines).await["event"], "connected");
    assert_eq!(next(&mut lines).await, json!({"event": "subscribed", "topic": "sensor.*", "namespace": "workshop"}));

    let (code, out, err) = run(
        &server,
        &["pub", "sensor.temp", r#"{"b": 1, "a": 1.0}"#, "--namespace", "workshop", "-H", "X-Trace: op-1", "--json"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_lines(&out)[1], json!({"published": "sensor.temp", "namespace": "workshop", "count": 1}));
    let (code, _, err) = run(&server, &["pub", "sensor.hum", "null", "--namespace", "workshop"]).await;
    assert_eq!(code, 0, "{err}");

    assert_eq!(
        next(&mut lines).await,
        json!({"topic": "sensor.temp", "value": {"a": 1, "b": 1}, "headers": [["x-trace", "op-1"]]})
    );
    assert_eq!(next(&mut lines).await, json!({"topic": "sensor.hum", "value": null, "headers": []}));
    assert_eq!(next(&mut lines).await, json!({"event": "summary", "received": 2, "dropped": 0, "rejected": 0}));
    assert!(tokio::time::timeout(WAIT, sub.wait()).await.unwrap().unwrap().success());

    // serve --echo, req and req --many.
    let (mut serve, mut served) =
        spawn(&server, &["serve", "math.echo", "--echo", "--namespace", "workshop", "--json"]);
    until(&mut served, "event", "serving").await;
    let (code, out, err) = run(&server, &["req", "math.echo", r#"{"x": [1, 2.0]}"#, "--namespace", "workshop"]).await;
    assert_eq!((code, out.trim()), (0, r#"{"x":[1,2]}"#), "{err}");
    let line = until(&mut served, "topic", "math.echo").await;
    assert_eq!(line["request"], json!({"x": [1, 2]}));
    let (code, out, _) =
        run(&server, &["req", "math.echo", "7", "--namespace", "workshop", "--many", "--timeout-ms", "500", "--json"])
            .await;
    assert_eq!(code, 0);
    let out = json_lines(&out);
    assert!(out.iter().any(|l| l["value"] == 7), "{out:?}");
    assert!(out.iter().any(|l| l["reason"] == "deadline" && l["replies"] == 1), "{out:?}");
    let (code, out, _) =
        run(&server, &["req", "math.echo", "8", "--namespace", "workshop", "--many", "--max-replies", "1", "--json"])
            .await;
    assert_eq!(code, 0);
    assert!(json_lines(&out).iter().any(|l| l["reason"] == "maxReplies"), "{out}");
    serve.start_kill().unwrap();
}

#[tokio::test]
async fn exit_codes_say_what_went_wrong() {
    let server = NatsServer::start();
    let ns = ["--namespace", "workshop"];
    let with = |args: &[&'static str]| -> Vec<&'static str> { [args, &ns[..]].concat() };
    // No responders: 5, at once.
    let (code, out, _) = run(&server, &with(&["req", "nobody", "1", "--json"])).await;
    assert_eq!(code, 5);
    assert!(json_lines(&out).iter().any(|l| l["error"]["kind"] == "no-responders"), "{out}");
    // Invalid input: 2, before connecting.
    for args in [
        with(&["pub", "a.*", "1"]),
        with(&["pub", "a", "not json"]),
        with(&["pub", "a", "1", "-H", "Bad Name: x"]),
        with(&["sub", "a", "--queue", "q>"]),
        vec!["pub", "a", "1", "--namespace", ""],
    ] {
        let (code, _, err) = run(&server, &args).await;
        assert_eq!(code, 2, "{args:?}: {err}");
    }
    // A silent handler (a Python-style failure): 4 after the timeout; --many with no reply too.
    let hub = kinopio::Hub::connect(kinopio::HubOptions::new().servers([server.url()]).unwrap()).await.unwrap();
    let namespace = hub.namespace("workshop").unwrap();
    let _silent = namespace.handle("silent", |_m: kinopio::p4::Message| async { Err::<(), _>("no") }).await.unwrap();
    let (code, _, err) = run(&server, &with(&["req", "silent", "1", "--timeout-ms", "300"])).await;
    assert_eq!(code, 4, "{err}");
    let (code, _, _) = run(&server, &with(&["req", "silent", "1", "--timeout-ms", "300", "--many"])).await;
    assert_eq!(code, 4);
    // An error reply of a kinopio handler: 6 with its text.
    let _loud = namespace
        .handle_with("loud", kinopio::p4::HandleOptions::new().error_replies(true), |_m: kinopio::p4::Message| async {
            Err::<(), _>("out of paper")
        })
        .await
        .unwrap();
    let (code, _, err) = run(&server, &with(&["req", "loud", "1"])).await;
    assert_eq!(code, 6);
    assert!(err.contains("out of paper"), "{err}");
    // sub --count with too few messages: 4, and the summary is printed.
    let (code, out, _) = run(&server, &with(&["sub", "quiet", "--count", "1", "--timeout-ms", "200", "--json"])).await;
    assert_eq!(code, 4);
    assert!(json_lines(&out).iter().any(|l| l["event"] == "summary" && l["received"] == 0), "{out}");
    hub.close().await;
}

/// `kinopio req --namespace` against a Python kinopio-hub 3.0.0 handler, and a Python
/// request to `kinopio serve --namespace`.
#[tokio::test]
async fn cli_and_python_answer_each_other() {
    let server = NatsServer::start();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/interop/p4_messaging.py");
    let mut py = Command::new(python_hub3())
        .arg(&script)
        .args(["--server", &server.url(), "--namespace", "workshop", "serve", "lamp", "py"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut py_lines = BufReader::new(py.stdout.take().unwrap()).lines();
    assert_eq!(next(&mut py_lines).await, json!("READY"));
    let (code, out, err) =
        run(&server, &["req", "lamp", r#"{"on": true}"#, "--namespace", "workshop", "-H", "X-Trace:t", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let reply = json_lines(&out).into_iter().find(|l| l.get("value").is_some()).unwrap();
    assert_eq!(reply["value"], json!({"by": "py", "input": {"on": true}}));
    assert_eq!(reply["headers"], json!([["x-worker", "py"]]));
    let handled = next(&mut py_lines).await;
    assert_eq!(handled["headers"], json!([["x-trace", "t"]]));
    drop(py.stdin.take());
    assert!(tokio::time::timeout(WAIT, py.wait()).await.unwrap().unwrap().success());

    let (mut serve, mut served) =
        spawn(&server, &["serve", "rust.echo", "--echo", "--namespace", "workshop", "--count", "1", "--json"]);
    until(&mut served, "event", "serving").await;
    let out = tokio::time::timeout(
        WAIT,
        Command::new(python_hub3())
            .arg(&script)
            .args(["--server", &server.url(), "--namespace", "workshop", "req", "rust.echo", "[1, \"two\"]"])
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    let line: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["data"], json!([1, "two"]));
    assert!(tokio::time::timeout(WAIT, serve.wait()).await.unwrap().unwrap().success(), "serve exits after --count");
}
