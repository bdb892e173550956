//! The examples run (cargo builds them for `cargo test`; this runs them against a real server).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use kinopio_test_support::NatsServer;

fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/examples-<hash> -> target/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap().join("examples");
    dir.join(name)
}

/// Runs example `name` with the server URL, bounded; its stdout (it must succeed).
async fn run_example(name: &str, server: &str) -> String {
    let path = example(name);
    assert!(path.exists(), "example not built at {}", path.display());
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(path).arg(server).kill_on_drop(true).output(),
    )
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[tokio::test]
async fn quickstart_runs() {
    let server = NatsServer::start();
    let stdout = run_example("quickstart", &server.url()).await;
    assert!(stdout.contains("math.double(21) = 42"), "{stdout}");
    assert!(stdout.contains(r#"chat.messages <- {"from": "quickstart", "text": "hello"}"#), "{stdout}");
}

#[tokio::test]
async fn local_leader_runs() {
    let server = NatsServer::start_with_config("leafnodes { listen: \"127.0.0.1:-1\" }\n");
    let path = example("local_leader");
    assert!(path.exists(), "example not built at {}", path.display());
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(path)
            .arg(server.url())
            .arg(server.leafnode_url())
            .env("KINOPIO_NATS_SERVER", kinopio_test_support::nats_server_binary())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("switched to the local leader: nats://127.0.0.1:"), "{stdout}");
    assert!(stdout.contains(&format!("back on {}", server.url())), "{stdout}");
}

#[tokio::test]
async fn shared_state_runs() {
    let server = NatsServer::start();
    let stdout = run_example("shared_state", &server.url()).await;
    assert!(stdout.contains("synced 1 record(s) (Quiet)"), "{stdout}");
    assert!(stdout.contains("battery = Some(Battery { level: 80, charging: false })"), "{stdout}");
    assert!(stdout.contains("battery changed to Some(Battery { level: 79, charging: true }) (version 2)"), "{stdout}");
    assert!(stdout.contains("battery deleted: true"), "{stdout}");
    assert!(stdout.contains(r#"event sensor.temp = 21.5 (x-trace Some("op-42"))"#), "{stdout}");
    assert!(stdout.contains("lamp.toggle(true) = false"), "{stdout}");
    assert!(stdout.contains("2 instances online"), "{stdout}");
    assert!(stdout.contains(r#"live drive: sent (Flushed), received {"speed":0.5} (seq 1)"#), "{stdout}");
}
