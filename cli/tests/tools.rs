//! `kinopio pub | sub | req | serve` as black boxes against a real nats-server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use kinopio::testing::NatsServer;
use serde_json::{Value as Json, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(15);

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

#[tokio::test]
async fn pub_and_sub_print_values_as_json_lines() {
    let server = NatsServer::start();
    let mut sub =
        kinopio(&server, &["sub", "demo.values", "--count", "4", "--json"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(sub.stdout.take().unwrap()).lines();
    async fn next(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> Json {
        let line = tokio::time::timeout(WAIT, lines.next_line()).await.unwrap().unwrap().unwrap();
        serde_json::from_str(&line).unwrap()
    }
    // The connection event and the subscription line come from different tasks: either order.
    let first = [next(&mut lines).await, next(&mut lines).await];
    assert!(first.iter().any(|l| l["event"] == "connected"), "{first:?}");
    assert!(first.contains(&json!({"event": "subscribed", "subject": "demo.values"})), "{first:?}");
    for payload in [r#"{"a": [1, 2]}"#, "plain text", "", r#""42""#] {
        let (code, out, err) = run(&server, &["pub", "demo.values", payload, "--json"]).await;
        assert_eq!(code, 0, "{err}");
        assert!(json_lines(&out).iter().any(|l| l["published"] == "demo.values"), "{out}");
    }
    assert_eq!(next(&mut lines).await, json!({"subject": "demo.values", "value": {"a": [1, 2]}}));
    assert_eq!(next(&mut lines).await["value"], "plain text");
    assert_eq!(next(&mut lines).await["value"], Json::Null);
    assert_eq!(next(&mut lines).await["value"], "42");
    let status = tokio::time::timeout(WAIT, sub.wait()).await.unwrap().unwrap();
    assert!(status.success(), "sub exits after --count");
}

#[tokio::test]
async fn req_and_serve_answer_and_report_errors_with_exit_codes() {
    let server = NatsServer::start();
    let mut serve =
        kinopio(&server, &["serve", "math.echo", "--echo", "--json"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    loop {
        let line = tokio::time::timeout(WAIT, lines.next_line()).await.unwrap().unwrap().unwrap();
        if line.contains("\"serving\"") {
            assert!(line.contains("math.echo.service"), "{line}");
            break;
        }
    }
    let (code, out, _) = run(&server, &["req", "math.echo", r#"{"x": 1}"#]).await;
    assert_eq!((code, out.trim()), (0, r#"{"x": 1}"#));
    let (code, out, _) = run(&server, &["req", "math.echo", "21", "--json"]).await;
    assert_eq!(code, 0);
    assert!(json_lines(&out).iter().any(|l| l["value"] == 21), "{out}");
    let served = loop {
        let line: Json = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        if line.get("request").is_some() {
            break line;
        }
    };
    assert_eq!(served["request"], json!({"x": 1}));

    let (code, out, _) = run(&server, &["req", "math.nobody", "1", "--json"]).await;
    assert_eq!(code, 5);
    assert!(json_lines(&out).iter().any(|l| l["error"]["kind"] == "no-responders"), "{out}");

    // A service that fails: exit code 6 and the service's message.
    let hub = kinopio::Hub::connect(kinopio::HubOptions::new().servers([server.url()]).unwrap()).await.unwrap();
    hub.variable("math.fail")
        .unwrap()
        .serve(|_m: kinopio::Message| async { Err::<(), _>("division by zero") })
        .await
        .unwrap();
    let (code, _, err) = run(&server, &["req", "math.fail", "1"]).await;
    assert_eq!(code, 6);
    assert!(err.contains("division by zero"), "{err}");
    hub.close().await;

    serve.start_kill().unwrap();
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let server = NatsServer::start();
    let (code, _, err) = run(&server, &["pub", "bad subject", "1"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("invalid variable name"), "{err}");
    let (code, _, err) = run(&server, &["serve", "x.y"]).await;
    assert_eq!(code, 2, "serve needs --reply or --echo: {err}");

    let dead = kinopio::testing::free_port();
    let out = tokio::time::timeout(
        WAIT,
        Command::new(env!("CARGO_BIN_EXE_kinopio"))
            .args(["req", "x.y", "1", "--json", "--connect-timeout-ms", "300", "--server"])
            .arg(format!("nats://127.0.0.1:{dead}"))
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let line =
        json_lines(&String::from_utf8_lossy(&out.stdout)).into_iter().find(|l| l.get("error").is_some()).unwrap();
    assert_eq!(line["error"]["kind"], "not-connected");
    assert!(line["error"]["message"].as_str().unwrap().contains(&dead.to_string()));
}
