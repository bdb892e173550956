//! The examples run (cargo builds them for `cargo test`; this runs them against a real server).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use kinopio::testing::NatsServer;

fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/examples-<hash> -> target/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap().join("examples");
    dir.join(name)
}

#[tokio::test]
async fn quickstart_runs() {
    let server = NatsServer::start();
    let path = example("quickstart");
    assert!(path.exists(), "example not built at {}", path.display());
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(path).arg(server.url()).kill_on_drop(true).output(),
    )
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("math.double(21) = 42"), "{stdout}");
    assert!(stdout.contains(r#"chat.messages <- {"from": "quickstart", "text": "hello"}"#), "{stdout}");
}
