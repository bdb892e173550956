//! `kinopio pub | sub | req | serve` as black boxes against a real nats-server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use kinopio_test_support::NatsServer;
use serde_json::{Value as Json, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use kinopio_test_support::WAIT;

mod common;
use common::{json_lines, kinopio, run, spawn};

#[tokio::test]
async fn pub_and_sub_print_values_as_json_lines() {
    let server = NatsServer::start();
    let (mut sub, mut lines) = spawn(&server, &["sub", "demo.values", "--count", "4", "--json"]);
    async fn next(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> Json {
        let line = tokio::time::timeout(WAIT, lines.next_line()).await.unwrap().unwrap().unwrap();
        serde_json::from_str(&line).unwrap()
    }
    // A defined order: `connected` first, then the command's lines, `closed` last.
    assert_eq!(next(&mut lines).await["event"], "connected");
    assert_eq!(next(&mut lines).await, json!({"event": "subscribed", "subject": "demo.values"}));
    for payload in [r#"{"a": [1, 2]}"#, "plain text", "", r#""42""#] {
        let (code, out, err) = run(&server, &["pub", "demo.values", payload, "--json"]).await;
        assert_eq!(code, 0, "{err}");
        let out = json_lines(&out);
        assert_eq!(out.len(), 3, "{out:?}");
        assert_eq!(out[0]["event"], "connected");
        assert_eq!(out[1], json!({"published": "demo.values", "bytes": payload.len(), "count": 1}));
        assert_eq!(out[2], json!({"event": "closed"}));
    }
    assert_eq!(
        next(&mut lines).await,
        json!({"subject": "demo.values", "type": "json", "value": {"a": [1, 2]}, "payload": r#"{"a": [1, 2]}"#})
    );
    assert_eq!(
        next(&mut lines).await,
        json!({"subject": "demo.values", "type": "text", "value": "plain text", "payload": "plain text"})
    );
    assert_eq!(next(&mut lines).await, json!({"subject": "demo.values", "type": "null", "value": null}));
    assert_eq!(next(&mut lines).await["value"], "42");
    assert_eq!(next(&mut lines).await, json!({"event": "closed"}));
    let status = tokio::time::timeout(WAIT, sub.wait()).await.unwrap().unwrap();
    assert!(status.success(), "sub exits after --count");
}

/// Values leave exactly as typed and come back exactly as sent: big integers, every float
/// digit, negative numbers, Python's non-finite tokens and numbers beyond f64 (shown only as
/// `payload`, never as a look-alike `value`), a file's binary bytes, headers.
#[tokio::test]
async fn values_round_trip_exactly_and_are_shown_without_ambiguity() {
    let server = NatsServer::start();
    let (mut sub, mut lines) = spawn(&server, &["sub", "exact.>", "--count", "8", "--json"]);
    let mut next =
        async || -> String { tokio::time::timeout(WAIT, lines.next_line()).await.unwrap().unwrap().unwrap() };
    assert!(next().await.contains("connected"));
    assert!(next().await.contains("subscribed"));
    for value in ["12345678901234567890123", "0.30000000000000004", "-5", "NaN", "1e400", r#"{"$float": "NaN"}"#] {
        let (code, _, err) = run(&server, &["pub", "exact.v", value]).await;
        assert_eq!(code, 0, "{value}: {err}");
    }
    let bytes: &[u8] = b"\xff\x00binary\n";
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    let (code, _, err) =
        run(&server, &["pub", "exact.file", "--file", file.path().to_str().unwrap(), "-H", "X-Kind: blob"]).await;
    assert_eq!(code, 0, "{err}");
    let mut stdin_pub = kinopio(&server, &["pub", "exact.stdin", "--file", "-"]).stdin(Stdio::piped()).spawn().unwrap();
    tokio::io::AsyncWriteExt::write_all(stdin_pub.stdin.as_mut().unwrap(), b"from stdin").await.unwrap();
    drop(stdin_pub.stdin.take());
    assert!(tokio::time::timeout(WAIT, stdin_pub.wait()).await.unwrap().unwrap().success());

    // Raw lines: the exact digits must be in the text, not just an equal float.
    let big = next().await;
    assert!(big.contains(r#""value":12345678901234567890123,"#), "{big}");
    assert!(next().await.contains(r#""value":0.30000000000000004,"#));
    assert!(next().await.contains(r#""value":-5,"#));
    let nan: Json = serde_json::from_str(&next().await).unwrap();
    assert_eq!(nan, json!({"subject": "exact.v", "type": "json", "payload": "NaN"}));
    let huge: Json = serde_json::from_str(&next().await).unwrap();
    assert_eq!(huge, json!({"subject": "exact.v", "type": "json", "payload": "1e400"}));
    let lookalike: Json = serde_json::from_str(&next().await).unwrap();
    assert_eq!(lookalike["value"], json!({"$float": "NaN"}), "a literal object stays an object");
    let file_line: Json = serde_json::from_str(&next().await).unwrap();
    assert_eq!(file_line["type"], "bytes");
    assert_eq!(file_line["base64"], "/wBiaW5hcnkK");
    assert_eq!(file_line["headers"]["X-Kind"], json!(["blob"]));
    let stdin_line: Json = serde_json::from_str(&next().await).unwrap();
    assert_eq!(stdin_line["value"], "from stdin");
    assert!(tokio::time::timeout(WAIT, sub.wait()).await.unwrap().unwrap().success());

    // --raw prints the payload bytes exactly; --count publishes several times.
    let mut raw = kinopio(&server, &["sub", "exact.raw", "--count", "2", "--raw"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut raw_lines = BufReader::new(raw.stdout.take().unwrap()).lines();
    let mut raw_err = BufReader::new(raw.stderr.take().unwrap()).lines();
    // The subscription is in place once it says so.
    loop {
        let line = tokio::time::timeout(WAIT, raw_err.next_line()).await.unwrap().unwrap().unwrap();
        if line.starts_with("listening on") {
            break;
        }
    }
    let (code, _, _) = run(&server, &["pub", "exact.raw", "--count", "2", "12345678901234567890123"]).await;
    assert_eq!(code, 0);
    for _ in 0..2 {
        let line = tokio::time::timeout(WAIT, raw_lines.next_line()).await.unwrap().unwrap().unwrap();
        assert_eq!(line, "12345678901234567890123");
    }
    assert!(tokio::time::timeout(WAIT, raw.wait()).await.unwrap().unwrap().success());
}

/// The nats-CLI habits: wildcard subscriptions, a bounded `sub`, `req --json` naming the
/// request's subject (not the reply inbox), errors that do not repeat themselves.
#[tokio::test]
async fn wildcards_timeouts_and_request_lines_behave_like_the_nats_cli() {
    let server = NatsServer::start();
    let (mut sub, mut lines) = spawn(&server, &["sub", "sensors.*.temp", "--count", "2", "--json"]);
    loop {
        let line = tokio::time::timeout(WAIT, lines.next_line()).await.unwrap().unwrap().unwrap();
        if line.contains("subscribed") {
            break;
        }
    }
    for subject in ["sensors.kitchen.temp", "sensors.kitchen.humidity", "sensors.hall.temp"] {
        assert_eq!(run(&server, &["pub", subject, "21.5"]).await.0, 0);
    }
    let got: Vec<Json> = vec![
        serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap(),
        serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap(),
    ];
    assert_eq!(got[0]["subject"], "sensors.kitchen.temp");
    assert_eq!(got[1]["subject"], "sensors.hall.temp");
    assert!(tokio::time::timeout(WAIT, sub.wait()).await.unwrap().unwrap().success());

    let (code, out, _) = run(&server, &["sub", "quiet.subject", "--count", "1", "--timeout-ms", "300", "--json"]).await;
    assert_eq!(code, 4, "{out}");
    assert_eq!(json_lines(&out).last().unwrap()["error"]["kind"], "timed-out");
    let (code, _, _) = run(&server, &["sub", "quiet.subject", "--timeout-ms", "200"]).await;
    assert_eq!(code, 0, "without --count, a timeout just ends the listening");

    let hub = kinopio::Hub::connect(kinopio::HubOptions::new().servers([server.url()]).unwrap()).await.unwrap();
    let _service =
        hub.variable("math.big").unwrap().serve(|_m: kinopio::Message| async { Ok::<_, String>(1u8) }).await.unwrap();
    // A subscriber sees the request with its reply subject.
    let (_watcher, mut watched) = spawn(&server, &["sub", "math.big", "--count", "1", "--json"]);
    loop {
        let line = tokio::time::timeout(WAIT, watched.next_line()).await.unwrap().unwrap().unwrap();
        if line.contains("subscribed") {
            break;
        }
    }
    let (code, out, _) = run(&server, &["req", "math.big", "-7", "--json"]).await;
    assert_eq!(code, 0);
    let reply = json_lines(&out).into_iter().find(|l| l.get("value").is_some()).unwrap();
    assert_eq!(reply["subject"], "math.big");
    assert!(reply.get("reply").is_none(), "a reply has no reply subject: {reply}");
    let seen: Json = serde_json::from_str(&watched.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(seen["value"], -7);
    assert!(seen["reply"].as_str().is_some_and(|r| r.starts_with("_INBOX.")), "{seen}");
    let (code, _, err) = run(&server, &["req", "math.nobody", "1"]).await;
    assert_eq!(code, 5);
    assert_eq!(err.matches("no responders").count(), 1, "{err}");
    hub.close().await;
}

#[tokio::test]
async fn req_and_serve_answer_and_report_errors_with_exit_codes() {
    let server = NatsServer::start();
    let (mut serve, mut lines) = spawn(&server, &["serve", "math.echo", "--echo", "--json"]);
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
    assert_eq!(served["request"], json!({"type": "json", "value": {"x": 1}, "payload": r#"{"x": 1}"#}));
    assert_eq!(served["reply"], served["request"], "--echo answers byte for byte");

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
    let (code, _, err) = run(&server, &["sub", "a.>.b"]).await;
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&server, &["--log", "kinopio=[", "pub", "x.y", "1"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("not a valid filter"), "{err}");
    let (code, _, err) =
        run(&server, &["pub", "x.y", "1", "--discovery-manifest-url", "http://127.0.0.1:1/m.json"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("https://"), "{err}");
    // A subject the server refuses (longer than its control line): the data did not go out.
    let long = "a".repeat(100_000);
    let (code, out, _) = run(&server, &["pub", &long, "1", "--json"]).await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(json_lines(&out).last().unwrap()["error"]["kind"], "not-delivered");

    // Names are checked before connecting: a dead server does not hide a bad name.
    let dead = kinopio_test_support::free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_kinopio"))
        .args(["pub", "bad subject", "1", "--server", &format!("nats://127.0.0.1:{dead}")])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let (code, _, err) = run(&server, &["serve", "x.y"]).await;
    assert_eq!(code, 2, "serve needs --reply or --echo: {err}");

    let dead = kinopio_test_support::free_port();
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
    let message = line["error"]["message"].as_str().unwrap();
    assert!(message.contains(&dead.to_string()), "{message}");
    assert!(message.contains("Connection refused") && message.contains("is nats-server running"), "{message}");
}

/// The CLI's encode and decode paths against the Python peer's decoding, on random values
/// and names (`scripts/interop/cli_roundtrip.py`; a failure prints its seed to replay).
#[tokio::test]
async fn random_values_and_names_round_trip_against_the_python_peer() {
    let server = NatsServer::start();
    let root = kinopio_test_support::repo_root();
    let python = kinopio_test_support::python();
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        Command::new(python)
            .arg(root.join("scripts/interop/cli_roundtrip.py"))
            .args(["--server", &server.url(), "--kinopio", env!("CARGO_BIN_EXE_kinopio"), "--cases", "40"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the round trip did not finish in time")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("\"ok\": true"), "{stdout}");
}

/// Credentials like the `nats` CLI's: user and password (flags or environment), token; a
/// wrong password says what to check; a subscription the server's permissions refuse is a
/// typed error at once, not a silent hang.
#[tokio::test]
async fn credentials_and_permissions() {
    let server = NatsServer::start_with_config(
        "authorization {\n  users = [\n    { user: app, password: \"pw-123\", permissions: { publish: \">\", subscribe: { allow: \">\", deny: \"secret.>\" } } }\n  ]\n}\n",
    );
    let (code, _, err) = run(&server, &["pub", "open.x", "1", "--user", "app", "--password", "pw-123"]).await;
    assert_eq!(code, 0, "{err}");
    let with_env =
        kinopio(&server, &["pub", "open.x", "1", "--user", "app"]).env("KINOPIO_PASSWORD", "pw-123").output();
    let out = tokio::time::timeout(WAIT, with_env).await.unwrap().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let (code, out, _) = run(
        &server,
        &["pub", "open.x", "1", "--user", "app", "--password", "wrong", "--connect-timeout-ms", "1500", "--json"],
    )
    .await;
    assert_eq!(code, 3, "{out}");
    let message = json_lines(&out).last().unwrap()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("authorization") && message.contains("--password"), "{message}");
    let (code, out, _) =
        run(&server, &["sub", "secret.plans", "--user", "app", "--password", "pw-123", "--json"]).await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(json_lines(&out).last().unwrap()["error"]["kind"], "permission-denied");

    let server = NatsServer::start_with_config("authorization { token: \"tok-abc\" }\n");
    let with_env = kinopio(&server, &["pub", "open.x", "1"]).env("KINOPIO_TOKEN", "tok-abc").output();
    let out = tokio::time::timeout(WAIT, with_env).await.unwrap().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let (code, _, _) = run(&server, &["pub", "open.x", "1", "--connect-timeout-ms", "1500"]).await;
    assert_eq!(code, 3, "no token, no connection");
}

/// Ctrl-C (SIGINT) ends a command at any moment with exit code 130: while connecting to a
/// server that never answers, and while waiting for a reply that never comes.
#[tokio::test]
async fn ctrl_c_ends_a_command_at_any_moment() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("nats://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let server = NatsServer::start();
    let listener = async_nats::connect(server.url()).await.unwrap();
    let _never_answers = listener.subscribe("slow.x").await.unwrap();
    listener.round_trip().await.unwrap();
    let cases: [(&str, Vec<&str>); 2] = [
        ("connecting", vec!["pub", "x.y", "1", "--connect-timeout-ms", "30000", "--server", &silent_url]),
        ("waiting for a reply", vec!["req", "slow.x", "1", "--timeout-ms", "30000"]),
    ];
    for (what, args) in cases {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kinopio"));
        command.args(&args).kill_on_drop(true).stdout(Stdio::null()).stderr(Stdio::null());
        if !args.contains(&"--server") {
            command.arg("--server").arg(server.url());
        }
        let mut child = command.spawn().unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        let pid = child.id().unwrap().to_string();
        assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
        let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .unwrap_or_else(|_| panic!("Ctrl-C did not end the command while {what}"))
            .unwrap();
        assert_eq!(status.code(), Some(130), "{what}");
    }
}
