//! `kinopio leaf auto` on one host, loopback only (`--interface lo`): two processes sharing a
//! cache get their own node ids and elect one leader; SIGTERM resigns and exits 0; ids are
//! stable across restarts; bad options fail with a readable message and a non-zero exit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use kinopio_test_support::nats_server_binary;
use serde_json::Value;

use kinopio_test_support::WAIT;

fn namespace(tag: &str) -> String {
    format!("cli-auto-{tag}-{}", std::process::id())
}

fn command(ns: &str, cache: &Path, json: bool) -> Command {
    command_on(ns, cache, json, "lo")
}

fn command_on(ns: &str, cache: &Path, json: bool, interface: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kinopio"));
    command
        .args([
            "leaf",
            "auto",
            "--discovery-namespace",
            ns,
            "--interface",
            interface,
            "--lan-bind-address",
            "127.0.0.1",
        ])
        .arg("--binary-path")
        .arg(nats_server_binary())
        .arg("--cache-dir")
        .arg(cache)
        .args(["--leader-missing-grace-ms", "2000"])
        .env("KINOPIO_SKIP_CA_TRUST_INSTALL", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if json {
        command.arg("--json");
    }
    command
}

/// A running process and its stdout lines.
struct Proc {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn spawn(mut command: Command) -> Proc {
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc { child, lines, seen: Vec::new() }
    }

    /// The next line matching `predicate` (bounded wait).
    fn wait_line(&mut self, what: &str, predicate: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.checked_duration_since(Instant::now()).unwrap_or_default();
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if predicate(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no line for {what}; saw:\n{}", self.seen.join("\n")),
            }
        }
    }

    fn wait_json(&mut self, what: &str, predicate: impl Fn(&Value) -> bool) -> Value {
        let line = self.wait_line(what, |line| serde_json::from_str::<Value>(line).is_ok_and(|v| predicate(&v)));
        serde_json::from_str(&line).unwrap()
    }

    fn sigterm(&self) {
        assert!(Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap().success());
    }

    fn exit_code(&mut self) -> i32 {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "the process did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_processes_on_one_host_get_their_own_ids_and_elect_one_leader() {
    let cache = tempfile::tempdir().unwrap();
    let ns = namespace("pair");
    let mut a = Proc::spawn(command(&ns, cache.path(), true));
    let a_id = a.wait_json("a's start", |v| v["event"] == "started")["nodeId"].as_str().unwrap().to_owned();
    let mut b = Proc::spawn(command(&ns, cache.path(), true));
    let started = b.wait_json("b's start", |v| v["event"] == "started");
    let b_id = started["nodeId"].as_str().unwrap().to_owned();
    assert_ne!(a_id, b_id, "two processes with one cache share no id");
    assert_eq!(started["interfaces"][0]["name"], "lo");
    assert_eq!(started["secured"], false);

    let (mut leader, mut follower, leader_id) = if a_id < b_id { (a, b, a_id.clone()) } else { (b, a, b_id.clone()) };
    let led = leader.wait_json("the leader line", |v| v["event"] == "status" && v["role"] == "leader");
    assert_eq!(led["epoch"], 1);
    assert!(led["wssUrl"].as_str().unwrap().starts_with("wss://127.0.0.1:"));
    assert!(Path::new(led["caCertFile"].as_str().unwrap()).is_file());
    follower.wait_json("the follower line", |v| v["state"] == "following-leader" && v["leader"]["nodeId"] == leader_id);

    // `kinopio leaf status` (the status page's data) shows the election: role, epoch and
    // both members.
    let follower_id = if leader_id == a_id { b_id.clone() } else { a_id.clone() };
    let status_args =
        ["--url", led["discoveryUrl"].as_str().unwrap(), "--ca-file", led["caCertFile"].as_str().unwrap()];
    let deadline = Instant::now() + WAIT;
    let report = loop {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_kinopio"))
            .args(["leaf", "status", "--json"])
            .args(status_args)
            .output()
            .unwrap();
        assert!(output.status.success(), "leaf status failed: {}", String::from_utf8_lossy(&output.stderr));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let members = report["election"]["members"].to_string();
        if members.contains(&leader_id) && members.contains(&follower_id) {
            break report;
        }
        assert!(Instant::now() < deadline, "the status never showed both members: {report}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!((report["mode"].as_str(), report["role"].as_str()), (Some("auto"), Some("leader")), "{report}");
    assert_eq!(report["leader"], serde_json::json!({"nodeId": leader_id, "epoch": 1}));
    assert_eq!(report["election"]["namespace"], ns.as_str());
    let readable = std::process::Command::new(env!("CARGO_BIN_EXE_kinopio"))
        .args(["leaf", "status"])
        .args(status_args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&readable.stdout);
    assert!(text.contains(&format!("role: leader in namespace {ns}")) && text.contains("(this node)"), "{text}");

    leader.sigterm();
    let stopped_at = Instant::now();
    let took_over = follower.wait_json("the take-over", |v| v["role"] == "leader" && v["state"] == "leader");
    let handover = stopped_at.elapsed();
    assert!(handover < Duration::from_secs(2), "handover took {handover:?}");
    assert_eq!(took_over["epoch"], 2);
    let last = leader.wait_json("the stopped line", |v| v["event"] == "stopped");
    assert_eq!(last["state"], "stopped");
    assert!(last["drops"]["own_beacon"].as_u64().unwrap() > 0);
    assert_eq!(leader.exit_code(), 0);
    follower.sigterm();
    assert_eq!(follower.exit_code(), 0);

    // Restarted, the first slot's process gets its id back.
    let mut again = Proc::spawn(command(&ns, cache.path(), true));
    let restarted = again.wait_json("the restart", |v| v["event"] == "started");
    assert_eq!(restarted["nodeId"], a_id);
    again.sigterm();
    assert_eq!(again.exit_code(), 0);
}

#[test]
fn text_output_shows_one_line_per_change() {
    let cache = tempfile::tempdir().unwrap();
    let ns = namespace("text");
    let mut node = Proc::spawn(command(&ns, cache.path(), false));
    node.wait_line("the start line", |l| {
        l.starts_with("auto leaf started: node kinopio-") && l.contains("on lo (127.0.0.1)")
    });
    node.wait_line("discovering", |l| l.starts_with("auto leaf: discovering (candidate)"));
    let led = node.wait_line("leading", |l| l.starts_with("auto leaf: leader (leader), leading at epoch 1 at wss://"));
    assert!(led.contains("; discovery https://127.0.0.1:"), "{led}");
    // Heartbeats and lease renewals print nothing.
    let quiet = node.lines.recv_timeout(Duration::from_millis(1500));
    assert!(quiet.is_err(), "unexpected line: {quiet:?}");
    node.sigterm();
    node.wait_line("the stop line", |l| l.starts_with("auto leaf stopped"));
    assert_eq!(node.exit_code(), 0);
}

#[test]
fn bad_options_fail_with_a_readable_message() {
    let cache = tempfile::tempdir().unwrap();
    let ns = namespace("bad");
    // Bounded: a command that unexpectedly keeps running is killed and fails the test.
    let run = |interface: &str, extra: &[&str], json: bool| {
        let mut cmd = command_on(&ns, cache.path(), json, interface);
        cmd.args(extra).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + WAIT;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("kinopio leaf auto {interface} {extra:?} did not fail");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, stderr) = run("nosuch0", &[], false);
    assert_eq!(code, 1);
    assert!(stderr.contains("no usable IPv4 interface matches --interface") && stderr.contains("nosuch0"), "{stderr}");
    let (code, stdout, _) = run("nosuch0", &[], true);
    assert_eq!(code, 1);
    let error: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(error["error"]["kind"], "multicast");
    let (code, _, stderr) = run("lo", &["--heartbeat-ms", "900"], false);
    assert_eq!(code, 1);
    assert!(stderr.contains("500 ms"), "{stderr}");
    let (code, _, stderr) = run("lo", &["--namespace-secret", ""], false);
    assert_eq!(code, 2);
    assert!(stderr.contains("secret is empty"), "{stderr}");
    // A namespace too long for a beacon (it used to make every node a leader).
    let long = "n".repeat(2000);
    let out = command_on(&long, cache.path(), false, "lo").stderr(Stdio::piped()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("fit in a beacon"), "{stderr}");
    // Backbone URLs too many for a leader beacon.
    let mut many = Vec::new();
    for i in 0..40 {
        many.push("--backbone-server".to_owned());
        many.push(format!("nats://backbone-{i}.example.internal:7422"));
    }
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let (code, _, stderr) = run("lo", &many, false);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("would not fit one datagram"), "{stderr}");
}

/// A receiver joined on loopback that sees what the nodes multicast, like a third host.
fn beacon_listener(port: u16) -> std::net::UdpSocket {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    use std::net::{Ipv4Addr, SocketAddrV4};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.set_reuse_port(true).unwrap();
    socket.bind(&SockAddr::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))).unwrap();
    socket.join_multicast_v4(&Ipv4Addr::new(239, 255, 71, 71), &Ipv4Addr::LOCALHOST).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    socket.into()
}

/// The command lines of `pid` and all its descendants.
fn command_lines(pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(pid) = todo.pop() {
        if let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            out.push(String::from_utf8_lossy(&raw).replace('\0', " "));
        }
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
            let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            todo.extend(children.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    out
}

/// Attack: backbone credentials given in a `--backbone-server` URL used to appear in the
/// manifest, every leader beacon and the output. A host on the LAN captures beacons and
/// fetches the manifest; the output, the logs and the child's command line are searched too.
/// The bridge still works, so the credentials did reach nats-server.
#[test]
fn backbone_credentials_in_a_url_never_leave_the_device() {
    const USER: &str = "leafuser";
    const SECRET: &str = "S3cret-pw-never-published";
    let backbone = kinopio_test_support::NatsServer::start_with_config(&format!(
        "leafnodes {{\n  listen: \"127.0.0.1:-1\"\n  authorization {{ user: {USER}, password: \"{SECRET}\" }}\n}}\n"
    ));
    let url = backbone.leafnode_url().replace("nats://", &format!("nats://{USER}:{SECRET}@"));
    let cache = tempfile::tempdir().unwrap();
    let logs = cache.path().join("stderr.log");
    let ns = namespace("creds");
    let mut cmd = command(&ns, cache.path(), true);
    cmd.args(["--backbone-server", &url, "--log", "kinopio=debug,kinopio_leaf=debug"])
        .stderr(std::fs::File::create(&logs).unwrap());
    let mut node = Proc::spawn(cmd);
    let started = node.wait_json("the start", |v| v["event"] == "started");
    let capture = beacon_listener(u16::try_from(started["port"].as_u64().unwrap()).unwrap());
    let led = node.wait_json("the leader line", |v| v["role"] == "leader" && v["state"] == "leader");
    let ca = led["caCertFile"].as_str().unwrap().to_owned();
    let discovery = led["discoveryUrl"].as_str().unwrap().to_owned();
    let client_url = led["clientUrl"].as_str().unwrap().to_owned();

    // Beacons, as a third host sees them.
    let mut beacons = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 65536];
    while Instant::now() < deadline {
        if let Ok((n, _)) = capture.recv_from(&mut buf) {
            beacons.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    assert!(beacons.iter().any(|b| b.contains("\"isLeader\": true")), "no leader beacon captured: {beacons:?}");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let manifest = runtime.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap();
        let client =
            reqwest::Client::builder().no_proxy().tls_certs_only([ca]).timeout(Duration::from_secs(5)).build().unwrap();
        // The bridge comes up asynchronously: wait until the manifest says so.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let body = client.get(&discovery).send().await.unwrap().text().await.unwrap();
            if body.contains("\"bridgeState\": \"connected\"") || body.contains("\"bridgeState\":\"connected\"") {
                break body;
            }
            assert!(tokio::time::Instant::now() < deadline, "the bridge never connected: {body}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    assert!(manifest.contains(&format!("127.0.0.1:{}", backbone.leafnode_url().rsplit(':').next().unwrap())));

    // The bridge works: a value published on the leaf reaches the backbone.
    runtime.block_on(async {
        let options =
            |url: &str| kinopio::HubOptions::new().servers([url]).unwrap().selection(kinopio::SelectionMode::Ordered);
        let on_backbone = kinopio::Hub::connect(options(&backbone.url())).await.unwrap();
        let on_leaf = kinopio::Hub::connect(options(&client_url)).await.unwrap();
        let mut sub = on_backbone.variable("bridge.check").unwrap().subscribe().await.unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            on_leaf.variable("bridge.check").unwrap().publish(&1).await.unwrap();
            if tokio::time::timeout(Duration::from_millis(200), futures::StreamExt::next(&mut sub)).await.is_ok() {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "nothing crossed the bridge");
        }
        on_leaf.close().await;
        on_backbone.close().await;
    });

    let children = command_lines(node.child.id());
    assert!(children.iter().any(|c| c.contains("nats-server")), "no nats-server child: {children:?}");
    node.sigterm();
    node.wait_json("the stopped line", |v| v["event"] == "stopped");
    assert_eq!(node.exit_code(), 0);
    while let Ok(line) = node.lines.try_recv() {
        node.seen.push(line);
    }
    let stdout = node.seen.join("\n");
    let stderr = std::fs::read_to_string(&logs).unwrap();
    assert!(stderr.contains("DEBUG"), "debug logs were not captured");
    for (place, text) in [
        ("a beacon", beacons.join("\n")),
        ("the manifest", manifest),
        ("stdout", stdout),
        ("the logs", stderr),
        ("a child's command line", children[1..].join("\n")),
    ] {
        assert!(!text.contains(SECRET), "the backbone password is in {place}:\n{text}");
        assert!(!text.contains(&format!("{USER}:")), "the backbone user:password is in {place}:\n{text}");
    }
}

fn public_key(pem_file: &Path) -> String {
    let out = Command::new("openssl").args(["x509", "-noout", "-pubkey", "-in"]).arg(pem_file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// One trust per namespace: a secured leader's CA is the namespace CA that
/// `kinopio leaf namespace-ca` derives on any device from the secret (same key), and it is
/// name-constrained.
#[test]
fn a_secured_leader_serves_the_namespace_ca_that_any_device_can_derive() {
    let cache = tempfile::tempdir().unwrap();
    let ns = namespace("nsca");
    let mut cmd = command(&ns, cache.path(), true);
    cmd.env("KINOPIO_NAMESPACE_SECRET", "correct horse battery staple");
    let mut node = Proc::spawn(cmd);
    let led = node.wait_json("the leader line", |v| v["role"] == "leader" && v["state"] == "leader");
    let leader_ca = std::path::PathBuf::from(led["caCertFile"].as_str().unwrap());
    let derived = cache.path().join("derived-ca.pem");
    let out = Command::new(env!("CARGO_BIN_EXE_kinopio"))
        .args(["leaf", "namespace-ca", "--discovery-namespace", &ns, "--out"])
        .arg(&derived)
        .env("KINOPIO_NAMESPACE_SECRET", "correct horse battery staple")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(public_key(&leader_ca), public_key(&derived));
    let text = Command::new("openssl").args(["x509", "-noout", "-text", "-in"]).arg(&derived).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("Name Constraints") && text.contains("Kinopio Namespace CA"), "{text}");
    let other = Command::new(env!("CARGO_BIN_EXE_kinopio"))
        .args(["leaf", "namespace-ca", "--discovery-namespace", &ns])
        .env("KINOPIO_NAMESPACE_SECRET", "another secret")
        .output()
        .unwrap();
    let other_file = cache.path().join("other-ca.pem");
    std::fs::write(&other_file, &other.stdout).unwrap();
    assert_ne!(public_key(&leader_ca), public_key(&other_file), "another secret, another CA");
    node.sigterm();
    assert_eq!(node.exit_code(), 0);
}

/// `kinopio doctor` against a running secured leader: its manifest verifies with the
/// namespace secret (exit 0, an ok line), and does not with another secret (exit 1, a FAIL
/// line that says what to do); `--json` carries the same checks.
#[test]
fn doctor_checks_a_namespace_leader_with_its_trust() {
    let cache = tempfile::tempdir().unwrap();
    let ns = namespace("doctor");
    let mut cmd = command(&ns, cache.path(), true);
    cmd.env("KINOPIO_NAMESPACE_SECRET", "correct horse battery staple");
    let mut node = Proc::spawn(cmd);
    node.wait_json("the leader line", |v| v["role"] == "leader" && v["state"] == "leader");
    let doctor = |secret: &str, json: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kinopio"));
        command
            .args(["doctor", "--discovery-namespace", &ns, "--interface", "lo", "--cache-dir"])
            .arg(cache.path())
            .env("KINOPIO_NAMESPACE_SECRET", secret)
            .env_remove("KINOPIO_SERVER");
        if json {
            command.arg("--json");
        }
        let out = command.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // mDNS answers can take a moment after the leader starts: retry briefly.
    let deadline = Instant::now() + WAIT;
    let (code, out) = loop {
        let (code, out) = doctor("correct horse battery staple", false);
        if out.contains("manifest verified") || Instant::now() > deadline {
            break (code, out);
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("ok   namespace {ns:?}: leader kinopio-")), "{out}");
    let (code, out) = doctor("another secret", false);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAIL namespace") && out.contains("does not verify") && out.contains("→"), "{out}");
    let (code, out) = doctor("another secret", true);
    assert_eq!(code, Some(1));
    let report: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert!(report["failed"].as_u64().unwrap() >= 1, "{report}");
    assert!(report["checks"].as_array().unwrap().iter().any(|c| c["status"] == "fail"), "{report}");
    node.sigterm();
    assert_eq!(node.exit_code(), 0);
}

/// With a CA file, only that CA is trusted for discovery, even when the system trusts the
/// leader's CA too (`SSL_CERT_FILE` makes this leader's CA a system root here). Without a CA
/// file the system roots decide (the control that shows the system really trusts it).
#[test]
fn a_discovery_ca_file_is_the_only_trust_for_discovery() {
    let cache = tempfile::tempdir().unwrap();
    let ns = namespace("cafile");
    let mut node = Proc::spawn(command(&ns, cache.path(), true));
    let led = node.wait_json("the leader line", |v| v["role"] == "leader" && v["state"] == "leader");
    let leader_ca = led["caCertFile"].as_str().unwrap().to_owned();
    let other_ca = cache.path().join("other-ca.pem");
    let out = Command::new(env!("CARGO_BIN_EXE_kinopio"))
        .args(["leaf", "namespace-ca", "--discovery-namespace", "elsewhere", "--out"])
        .arg(&other_ca)
        .env("KINOPIO_NAMESPACE_SECRET", "an unrelated namespace's secret")
        .output()
        .unwrap();
    assert!(out.status.success());
    let doctor = |ca_file: Option<&Path>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kinopio"));
        command
            .args(["doctor", "--discovery-namespace", &ns, "--interface", "lo", "--cache-dir"])
            .arg(cache.path())
            .env("SSL_CERT_FILE", &leader_ca)
            .env_remove("KINOPIO_SERVER")
            .env_remove("KINOPIO_NAMESPACE_SECRET");
        if let Some(ca) = ca_file {
            command.arg("--discovery-ca-file").arg(ca);
        }
        let out = command.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let deadline = Instant::now() + WAIT;
    let (code, out) = loop {
        let (code, out) = doctor(None);
        if out.contains("manifest verified") || Instant::now() > deadline {
            break (code, out);
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(code, Some(0), "the system (SSL_CERT_FILE) trusts the leader: {out}");
    let (code, out) = doctor(Some(&other_ca));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("does not verify"), "{out}");
    node.sigterm();
    assert_eq!(node.exit_code(), 0);
}
