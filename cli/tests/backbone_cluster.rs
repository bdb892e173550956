//! The deployment manifests (`manifests/backbone`, `manifests/leaf`) against real processes:
//! three nats-server nodes started from the checked-in `backbone.conf` (only ports and file
//! paths differ, through its environment), TLS from a generated CA, leaves that authenticate
//! with the files `install-secrets.sh` lays out, and what a LAN sees while backbone nodes are
//! killed (`kill -9`) and restarted, one at a time and all at once. Loopback only.
//!
//! `systemd-analyze verify` of the units is `#[ignore]`d here (it needs systemd installed);
//! `scripts/test.sh` runs it with `--ignored` when `systemd-analyze` is there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kinopio::wire::manifest::BridgeState;
use kinopio::{Auth, Hub, HubOptions, Message, SelectionMode, Subscription, Variable};
use kinopio_leaf::runtime::{LeafNode, LeafOptions, LeafStatus, LeafTimings};
use kinopio_leaf::tls::{TlsOptions, TrustStoreConfig};
use kinopio_test_support::{WAIT, free_port, nats_server_binary};
use serde_json::Value;

const NODES: usize = 3;
const ROUTE_PASSWORD: &str = "k9f3a1c0d5e7b2a4c";
const APP_PASSWORD: &str = "k0b1c2d3e4f5a6b7c";
const STUDIO_PASSWORD: &str = "k5e6f7a8b9c0d1e2f";
const OFFICE_PASSWORD: &str = "ka1b2c3d4e5f60718";
const NAMESPACE_SECRET: &str = "a namespace secret for the deployment test";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn manifest(path: &str) -> PathBuf {
    repo().join("manifests").join(path)
}

/// A backbone certificate for 127.0.0.1 from a generated CA (the leaf's own TLS code).
struct BackboneTls {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

fn backbone_tls() -> BackboneTls {
    let dir = tempfile::tempdir().unwrap();
    let prepared = kinopio_leaf::tls::prepare(
        &TlsOptions::generated(dir.path().join("ca"), dir.path(), vec!["127.0.0.1".into()]),
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    let material = prepared.material();
    BackboneTls {
        cert: material.cert_file.clone(),
        key: material.key_file.clone(),
        ca: material.ca_file.clone(),
        _dir: dir,
    }
}

/// One node's ports and process.
struct Node {
    name: String,
    client_port: u16,
    leaf_port: u16,
    cluster_port: u16,
    monitor_port: u16,
    child: Option<Child>,
    log: PathBuf,
}

/// Three nodes of `manifests/backbone/backbone.conf`, killed on drop.
struct Cluster {
    nodes: Vec<Node>,
    tls_cert: PathBuf,
    tls_key: PathBuf,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Cluster {
    fn start(tls: &BackboneTls) -> Cluster {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let nodes = (1..=NODES)
            .map(|i| Node {
                name: format!("backbone-{i}"),
                client_port: free_port(),
                leaf_port: free_port(),
                cluster_port: free_port(),
                monitor_port: free_port(),
                child: None,
                log: dir.path().join(format!("backbone-{i}.log")),
            })
            .collect();
        let mut cluster = Cluster {
            nodes,
            tls_cert: tls.cert.clone(),
            tls_key: tls.key.clone(),
            _dir: dir,
            http: reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build().unwrap(),
        };
        for i in 0..NODES {
            cluster.spawn(i);
        }
        cluster
    }

    /// The environment `backbone.conf` reads (the same names as `backbone.env.example`).
    fn env(&self, i: usize) -> Vec<(String, String)> {
        let node = &self.nodes[i];
        let mut env = vec![
            ("BACKBONE_NAME".to_owned(), node.name.clone()),
            ("BACKBONE_HOST".to_owned(), "127.0.0.1".to_owned()),
            ("BACKBONE_CLIENT_PORT".to_owned(), node.client_port.to_string()),
            ("BACKBONE_LEAF_PORT".to_owned(), node.leaf_port.to_string()),
            ("BACKBONE_CLUSTER_PORT".to_owned(), node.cluster_port.to_string()),
            ("BACKBONE_MONITOR".to_owned(), format!("127.0.0.1:{}", node.monitor_port)),
            ("BACKBONE_TLS_CERT".to_owned(), self.tls_cert.display().to_string()),
            ("BACKBONE_TLS_KEY".to_owned(), self.tls_key.display().to_string()),
            ("BACKBONE_ROUTE_PASSWORD".to_owned(), ROUTE_PASSWORD.to_owned()),
            ("BACKBONE_APP_PASSWORD".to_owned(), APP_PASSWORD.to_owned()),
            ("LEAF_STUDIO_PASSWORD".to_owned(), STUDIO_PASSWORD.to_owned()),
            ("LEAF_OFFICE_PASSWORD".to_owned(), OFFICE_PASSWORD.to_owned()),
        ];
        for (j, peer) in self.nodes.iter().enumerate() {
            env.push((
                format!("BACKBONE_ROUTE_{}", j + 1),
                format!("nats-route://route:{ROUTE_PASSWORD}@127.0.0.1:{}", peer.cluster_port),
            ));
        }
        env
    }

    /// Starts node `i` from the checked-in config, retrying while its old ports linger.
    fn spawn(&mut self, i: usize) {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.nodes[i].log).unwrap();
            let mut child = Command::new(nats_server_binary())
                .arg("-c")
                .arg(manifest("backbone/backbone.conf"))
                .env_clear()
                .envs(self.env(i))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()
                .expect("start nats-server (set KINOPIO_NATS_SERVER or run scripts/install-deps.sh)");
            let node = &self.nodes[i];
            let ports = [node.client_port, node.leaf_port, node.monitor_port];
            let up = loop {
                if child.try_wait().unwrap().is_some() {
                    break false;
                }
                if ports.iter().all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok()) {
                    break true;
                }
                assert!(Instant::now() < deadline, "{} did not start:\n{}", node.name, self.log(i));
                std::thread::sleep(Duration::from_millis(20));
            };
            if up {
                self.nodes[i].child = Some(child);
                return;
            }
            assert!(Instant::now() < deadline, "{} keeps exiting:\n{}", self.nodes[i].name, self.log(i));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// SIGKILL, and wait for the exit.
    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn index_of(&self, name: &str) -> usize {
        self.nodes.iter().position(|n| n.name == name).unwrap_or_else(|| panic!("no backbone node named {name}"))
    }

    fn leaf_urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| format!("tls://127.0.0.1:{}", n.leaf_port)).collect()
    }

    fn client_urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| format!("tls://127.0.0.1:{}", n.client_port)).collect()
    }

    async fn monitor(&self, i: usize, path: &str) -> Option<Value> {
        let url = format!("http://127.0.0.1:{}/{path}", self.nodes[i].monitor_port);
        self.http.get(url).send().await.ok()?.json().await.ok()
    }

    /// Waits until every running node has routes to all other running nodes.
    async fn wait_routes(&self) {
        let running: BTreeSet<String> =
            self.nodes.iter().filter(|n| n.child.is_some()).map(|n| n.name.clone()).collect();
        let deadline = Instant::now() + WAIT;
        for (i, node) in self.nodes.iter().enumerate().filter(|(_, n)| n.child.is_some()) {
            loop {
                let peers: BTreeSet<String> = self
                    .monitor(i, "routez")
                    .await
                    .and_then(|v| v["routes"].as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|r| r["remote_name"].as_str().map(str::to_owned))
                    .collect();
                let expected: BTreeSet<String> = running.iter().filter(|n| **n != node.name).cloned().collect();
                if peers == expected {
                    break;
                }
                assert!(Instant::now() < deadline, "{} routes to {peers:?}, expected {expected:?}", node.name);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Leaf connections per node, from each node's `/leafz` (0 for a node that is down).
    async fn leaf_counts(&self) -> Vec<u64> {
        let mut counts = Vec::new();
        for i in 0..NODES {
            counts.push(self.monitor(i, "leafz").await.and_then(|v| v["leafnodes"].as_u64()).unwrap_or(0));
        }
        counts
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..NODES {
            self.kill(i);
        }
    }
}

/// Runs `manifests/leaf/install-secrets.sh` into a fresh directory.
fn install_secrets(ca: &Path) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let output = Command::new("sh")
        .arg(manifest("leaf/install-secrets.sh"))
        .arg(root.path())
        .env("KINOPIO_BACKBONE_PASSWORD", STUDIO_PASSWORD)
        .env("KINOPIO_NAMESPACE_SECRET", NAMESPACE_SECRET)
        .env("KINOPIO_BACKBONE_CA_FILE", ca)
        .output()
        .unwrap();
    assert!(output.status.success(), "install-secrets.sh failed: {}", String::from_utf8_lossy(&output.stderr));
    let shown = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!shown.contains(STUDIO_PASSWORD) && !shown.contains(NAMESPACE_SECRET), "a secret was printed");
    root
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn hub_options(urls: &[String], ca: &Path) -> HubOptions {
    HubOptions::new()
        .servers(urls)
        .unwrap()
        .selection(SelectionMode::Ordered)
        .tls_ca_file(ca)
        .request_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_secs(2))
}

async fn connect(options: HubOptions) -> Hub {
    tokio::time::timeout(WAIT, Hub::connect(options)).await.expect("connect timed out").unwrap()
}

async fn wait_status(leaf: &LeafNode, what: &str, predicate: impl FnMut(&LeafStatus) -> bool) -> LeafStatus {
    let mut watch = leaf.watch();
    match tokio::time::timeout(WAIT, watch.wait_for(predicate)).await {
        Ok(Ok(status)) => status.clone(),
        _ => panic!("timed out waiting for {what}; last status: {:#?}", leaf.status()),
    }
}

/// A value published on `from` arrives on `to` (retried until then: interest crosses the
/// bridge and the routes asynchronously).
async fn crosses(what: &str, from: &Variable, to: &mut Subscription, tag: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut n = 0u64;
    loop {
        n += 1;
        from.publish(&serde_json::json!({"tag": tag, "n": n})).await.unwrap();
        let wait = tokio::time::sleep(Duration::from_millis(200));
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => break,
                msg = to.next() => {
                    let msg = msg.expect("subscription ended");
                    if msg.decode::<Value>().is_ok_and(|v| v["tag"] == tag) {
                        return;
                    }
                }
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: nothing crossed the bridge ({n} sent)");
    }
}

/// `service` answers a request (retried until it does).
async fn answers(what: &str, service: &Variable) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match service.request::<i64, _>(&21).await {
            Ok(answer) => {
                assert_eq!(answer, 42);
                return;
            }
            Err(err) => assert!(tokio::time::Instant::now() < deadline, "{what}: the request failed: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The LAN side and the backbone side of the bridge.
struct Ends {
    /// On the leaf: publishes `studio.up`, requests `studio.double`, receives `studio.down`.
    lan: Hub,
    /// On the backbone (all three nodes, ordered): the reverse.
    backbone: Hub,
    up: Subscription,
    down: Subscription,
    _service: kinopio::Service,
}

impl Ends {
    async fn new(leaf: &LeafNode, cluster: &Cluster, ca: &Path) -> Ends {
        let backbone = connect(
            hub_options(&cluster.client_urls(), ca)
                .auth(Auth::UserPassword { user: "app".into(), password: APP_PASSWORD.into() }),
        )
        .await;
        let lan = connect(
            HubOptions::new()
                .servers([leaf.urls().client_url.as_str()])
                .unwrap()
                .request_timeout(Duration::from_millis(500)),
        )
        .await;
        let up = backbone.variable("studio.up").unwrap().subscribe().await.unwrap();
        let down = lan.variable("studio.down").unwrap().subscribe().await.unwrap();
        let service = backbone
            .variable("studio.double")
            .unwrap()
            .serve(|req: Message| async move { Ok::<_, kinopio::DecodeError>(req.decode::<i64>()? * 2) })
            .await
            .unwrap();
        Ends { lan, backbone, up, down, _service: service }
    }

    /// Both directions and a request across the bridge work.
    async fn bridge_works(&mut self, phase: &str) {
        let lan_up = self.lan.variable("studio.up").unwrap();
        crosses(&format!("{phase}: LAN → backbone"), &lan_up, &mut self.up, phase).await;
        let backbone_down = self.backbone.variable("studio.down").unwrap();
        crosses(&format!("{phase}: backbone → LAN"), &backbone_down, &mut self.down, phase).await;
        answers(&format!("{phase}: LAN request to a backbone service"), &self.lan.variable("studio.double").unwrap())
            .await;
    }
}

/// A LAN publisher and subscriber on the leaf and a LAN service: counts every message and
/// request that did not make it while it runs.
struct LanTraffic {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u64, u64, u64)>,
}

impl LanTraffic {
    async fn start(leaf: &LeafNode) -> (LanTraffic, Hub, Hub, kinopio::Service) {
        let url = leaf.urls().client_url.clone();
        let options = || HubOptions::new().servers([url.as_str()]).unwrap().request_timeout(Duration::from_millis(500));
        let a = connect(options()).await;
        let b = connect(options()).await;
        let service = b
            .variable("studio.local.double")
            .unwrap()
            .serve(|req: Message| async move { Ok::<_, kinopio::DecodeError>(req.decode::<i64>()? * 2) })
            .await
            .unwrap();
        let mut sub = b.variable("studio.local.ticks").unwrap().subscribe().await.unwrap();
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        tokio::spawn(async move {
            while sub.next().await.is_some() {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let ticks = a.variable("studio.local.ticks").unwrap();
        let double = a.variable("studio.local.double").unwrap();
        let task = tokio::spawn(async move {
            let (mut sent, mut failed_requests) = (0u64, 0u64);
            while !stopping.load(Ordering::Relaxed) {
                ticks.publish(&sent).await.unwrap();
                sent += 1;
                if double.request::<i64, _>(&21).await.ok() != Some(42) {
                    failed_requests += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Everything sent has arrived (bounded).
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while received.load(Ordering::Relaxed) < sent && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (sent, received.load(Ordering::Relaxed), failed_requests)
        });
        (LanTraffic { stop, task }, a, b, service)
    }

    async fn finish(self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        tokio::time::timeout(WAIT, self.task).await.expect("LAN traffic did not stop").unwrap()
    }
}

fn leaf_options(cluster: &Cluster, secrets: &Path, cache: &Path) -> LeafOptions {
    LeafOptions::new()
        .backbone_servers(cluster.leaf_urls())
        .backbone_ca_file(secrets.join("backbone-ca.pem"))
        .backbone_user("lan-studio")
        .backbone_password_file(secrets.join("secrets/backbone-password"))
        .binary_path(nats_server_binary())
        .cache_dir(cache)
        .lan_bind_address("127.0.0.1".parse().unwrap())
        .trust_store(TrustStoreConfig::none().with_env_skip(|_| Some("1".to_owned())))
        .timings(LeafTimings {
            poll_interval: Duration::from_millis(100),
            stop_grace: Duration::from_secs(5),
            ..LeafTimings::default()
        })
}

/// The bridge follows the backbone: a leaf given every node's URL moves to another node when
/// its node is killed (and again when that one is), `bridgeServer` names where it went,
/// traffic and requests cross again each time; with the whole backbone down the LAN keeps
/// working through the leaf (nothing lost), and everything bridges again when it is back.
/// The leaf authenticates with the files of the secrets layout; its user's permissions
/// keep other LANs' subjects out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_rides_backbone_node_kills_and_a_whole_backbone_outage() {
    let tls = backbone_tls();
    let mut cluster = Cluster::start(&tls);
    cluster.wait_routes().await;
    let secrets = install_secrets(&tls.ca);
    assert_eq!(mode(secrets.path()), 0o755);
    assert_eq!(mode(&secrets.path().join("secrets")), 0o700);
    assert_eq!(mode(&secrets.path().join("secrets/backbone-password")), 0o600);
    assert_eq!(mode(&secrets.path().join("secrets/namespace.env")), 0o600);
    assert_eq!(mode(&secrets.path().join("backbone-ca.pem")), 0o644);
    let cache = tempfile::tempdir().unwrap();
    let leaf = LeafNode::start(leaf_options(&cluster, secrets.path(), cache.path())).await.unwrap();
    assert_eq!(leaf.status().backbone_servers.len(), NODES);
    let connected = |s: &LeafStatus| s.bridge_state == BridgeState::Connected && s.bridge_server.is_some();
    let first = wait_status(&leaf, "the bridge", connected).await.bridge_server.unwrap();

    let mut ends = Ends::new(&leaf, &cluster, &tls.ca).await;
    ends.bridge_works("start").await;

    // Permissions: lan-studio may not publish other LANs' subjects onto the backbone.
    // Both interests travel the same way in order (office first), and messages of one leaf
    // connection stay in order, so when the marker after the refused message has arrived,
    // the refused one would have too.
    let mut office = ends.backbone.variable("office.secret").unwrap().subscribe().await.unwrap();
    let mut marker = ends.backbone.variable("studio.marker").unwrap().subscribe().await.unwrap();
    let lan_office = ends.lan.variable("office.secret").unwrap();
    let lan_marker = ends.lan.variable("studio.marker").unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        lan_office.publish(&"not for the backbone").await.unwrap();
        lan_marker.publish(&"marker").await.unwrap();
        if tokio::time::timeout(Duration::from_millis(200), marker.next()).await.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the marker never crossed");
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(100), office.next()).await.is_err(),
        "a subject outside lan-studio's permissions crossed the bridge"
    );

    // kill -9 the node the bridge is on: it moves to another node.
    let x = cluster.index_of(&first);
    cluster.kill(x);
    // The leaf waits its reconnect delay (1 s) before dialling another node: meanwhile its
    // status says the bridge is down.
    let between = wait_status(&leaf, "bridgeState connecting", |s| s.bridge_state == BridgeState::Connecting).await;
    assert_eq!(between.bridge_server, None);
    let second = wait_status(&leaf, "the bridge on another node", |s| {
        connected(s) && s.bridge_server.as_deref() != Some(first.as_str())
    })
    .await
    .bridge_server
    .unwrap();
    ends.bridge_works("first node killed").await;

    // The killed node comes back; kill the second one: the bridge moves again.
    cluster.spawn(x);
    cluster.wait_routes().await;
    let y = cluster.index_of(&second);
    cluster.kill(y);
    wait_status(&leaf, "bridgeState connecting", |s| s.bridge_state == BridgeState::Connecting).await;
    let third = wait_status(&leaf, "the bridge moved again", |s| {
        connected(s) && s.bridge_server.as_deref() != Some(second.as_str())
    })
    .await
    .bridge_server
    .unwrap();
    ends.bridge_works("second node killed").await;
    cluster.spawn(y);
    cluster.wait_routes().await;
    assert_eq!(cluster.leaf_counts().await.iter().sum::<u64>(), 1, "one leaf connection in the cluster");
    assert_eq!(cluster.leaf_counts().await[cluster.index_of(&third)], 1);

    // The whole backbone down for a while: the LAN keeps working through the leaf.
    let (traffic, _a, _b, _service) = LanTraffic::start(&leaf).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..NODES {
        cluster.kill(i);
    }
    let down = wait_status(&leaf, "the bridge down", |s| s.bridge_state == BridgeState::Connecting).await;
    assert_eq!(down.bridge_server, None);
    assert!(down.server_ready, "the leaf's own server stays up");
    tokio::time::sleep(Duration::from_millis(1500)).await; // a while, with LAN traffic flowing
    for i in 0..NODES {
        cluster.spawn(i);
    }
    cluster.wait_routes().await;
    wait_status(&leaf, "the bridge back", connected).await;
    ends.bridge_works("backbone back").await;
    let (sent, received, failed_requests) = traffic.finish().await;
    assert!(sent > 20, "LAN traffic ran ({sent} messages)");
    assert_eq!(received, sent, "LAN messages lost while the backbone was down");
    assert_eq!(failed_requests, 0, "LAN requests failed while the backbone was down");

    ends.lan.close().await;
    ends.backbone.close().await;
    leaf.stop().await;
}

/// The `ExecStart=` of a unit file, split into words (line continuations joined).
fn exec_start(unit: &str) -> Vec<String> {
    let joined = unit.replace("\\\n", " ");
    let line = joined.lines().find(|l| l.starts_with("ExecStart=")).expect("no ExecStart=");
    line.trim_start_matches("ExecStart=").split_whitespace().map(str::to_owned).collect()
}

/// A child process killed on drop (also when the test fails).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads a line-oriented process output with a bounded wait per line.
fn lines_of(child: &mut Child) -> Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The leaf service as deployed: `kinopio leaf auto` with the options of
/// `kinopio-leaf.service` (backbone URLs and paths pointed at the test cluster and the
/// secrets layout; loopback interface and a unique namespace added for the test), the
/// namespace secret from the layout's environment file. It leads, bridges to the backbone as
/// lan-studio, and when its node is killed the bridge moves to another node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leaf_unit_runs_against_the_backbone_config() {
    let unit = std::fs::read_to_string(manifest("leaf/kinopio-leaf.service")).unwrap();
    assert!(unit.contains("LoadCredential=backbone-password:/etc/kinopio/secrets/backbone-password\n"));
    assert!(unit.contains("EnvironmentFile=/etc/kinopio/secrets/namespace.env\n"));
    let tls = backbone_tls();
    let mut cluster = Cluster::start(&tls);
    let secrets = install_secrets(&tls.ca);
    let cache = tempfile::tempdir().unwrap();
    let root = secrets.path().display().to_string();
    let mut urls = cluster.leaf_urls().into_iter();
    let mut args: Vec<String> = exec_start(&unit)
        .into_iter()
        .skip(1)
        .map(|arg| {
            if arg.starts_with("tls://backbone-") {
                urls.next().expect("more backbone URLs in the unit than nodes")
            } else {
                arg.replace("%d", &format!("{root}/secrets"))
                    .replace("%C/kinopio", &cache.path().display().to_string())
                    .replace("/etc/kinopio", &root)
            }
        })
        .collect();
    assert!(urls.next().is_none(), "the unit names every backbone node");
    let at = args.iter().position(|a| a == "--discovery-namespace").unwrap();
    args[at + 1] = format!("backbone-unit-{}", std::process::id());
    let env_file = std::fs::read_to_string(secrets.path().join("secrets/namespace.env")).unwrap();
    let secret = env_file.trim_end().strip_prefix("KINOPIO_NAMESPACE_SECRET=").unwrap().to_owned();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kinopio"))
        .args(&args)
        .args(["--interface", "lo", "--lan-bind-address", "127.0.0.1", "--no-mdns", "--settle-ms", "100", "--json"])
        .arg("--binary-path")
        .arg(nats_server_binary())
        .env("KINOPIO_NAMESPACE_SECRET", secret)
        .env("KINOPIO_SKIP_CA_TRUST_INSTALL", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut child);
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.checked_duration_since(Instant::now()).unwrap_or_default();
        let line = lines.recv_timeout(left).unwrap_or_else(|_| panic!("no leader line; saw:\n{}", seen.join("\n")));
        let value: Value = serde_json::from_str(&line).unwrap_or_default();
        seen.push(line);
        if value["event"] == "started" {
            assert_eq!(value["secured"], true, "the namespace secret from the environment file is used");
        }
        if value["role"] == "leader" {
            break;
        }
    }
    let attached = |counts: &[u64]| counts.iter().sum::<u64>() == 1;
    let deadline = Instant::now() + WAIT;
    let mut counts = cluster.leaf_counts().await;
    while !attached(&counts) {
        assert!(Instant::now() < deadline, "the leaf never attached to the backbone: {counts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        counts = cluster.leaf_counts().await;
    }
    let on = counts.iter().position(|c| *c == 1).unwrap();
    cluster.kill(on);
    let deadline = Instant::now() + WAIT;
    loop {
        let counts = cluster.leaf_counts().await;
        if attached(&counts) && counts[on] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the leaf did not move to another node: {counts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap().success());
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "kinopio leaf auto did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "kinopio leaf auto exited with {status}");
}

/// `backbone.env.example` sets exactly the variables `backbone.conf` reads.
#[test]
fn the_backbone_env_example_names_every_variable_of_the_config() {
    let conf = std::fs::read_to_string(manifest("backbone/backbone.conf")).unwrap();
    let used: BTreeSet<String> = conf
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| {
            l.split('$')
                .skip(1)
                .map(|rest| rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>())
        })
        .collect();
    let example = std::fs::read_to_string(manifest("backbone/backbone.env.example")).unwrap();
    let set: BTreeSet<String> = example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains('='))
        .map(|l| l.split('=').next().unwrap().to_owned())
        .collect();
    assert_eq!(used, set);
}

/// `systemd-analyze verify` accepts the units (the leaf's with its drop-in), with the
/// binaries pointed at real files (verify checks that they exist) and nothing else changed.
#[test]
#[ignore = "needs systemd-analyze (scripts/install-deps.sh installs systemd as root); scripts/test.sh runs it when present"]
fn the_units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let leaf_unit = std::fs::read_to_string(manifest("leaf/kinopio-leaf.service"))
        .unwrap()
        .replace("/usr/local/bin/kinopio", env!("CARGO_BIN_EXE_kinopio"));
    std::fs::write(dir.path().join("kinopio-leaf.service"), leaf_unit).unwrap();
    std::fs::create_dir(dir.path().join("kinopio-leaf.service.d")).unwrap();
    std::fs::copy(
        manifest("leaf/kinopio-leaf.service.d/install-ca-trust.conf"),
        dir.path().join("kinopio-leaf.service.d/install-ca-trust.conf"),
    )
    .unwrap();
    let backbone_unit = std::fs::read_to_string(manifest("backbone/nats-backbone.service"))
        .unwrap()
        .replace("/usr/local/bin/nats-server", &nats_server_binary().display().to_string());
    std::fs::write(dir.path().join("nats-backbone.service"), backbone_unit).unwrap();
    for unit in ["kinopio-leaf.service", "nats-backbone.service"] {
        let output = Command::new("systemd-analyze")
            .arg("verify")
            .arg(dir.path().join(unit))
            .output()
            .expect("systemd-analyze is not installed (apt-get install systemd)");
        let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success() && said.trim().is_empty(), "systemd-analyze verify {unit}:\n{said}");
    }
}

/// Every option in the leaf unit's `ExecStart=` is one `kinopio leaf auto` takes, and the
/// drop-in's environment variable is the one `--install-ca-trust` reads.
#[test]
fn the_leaf_unit_uses_options_kinopio_has() {
    let unit = std::fs::read_to_string(manifest("leaf/kinopio-leaf.service")).unwrap();
    let args = exec_start(&unit);
    assert_eq!(args[0], "/usr/local/bin/kinopio");
    let output = Command::new(env!("CARGO_BIN_EXE_kinopio")).args(&args[1..]).arg("--help").output().unwrap();
    assert!(
        output.status.success(),
        "kinopio rejected the unit's options: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("KINOPIO_INSTALL_CA_TRUST"), "--install-ca-trust reads KINOPIO_INSTALL_CA_TRUST");
    assert!(help.contains("KINOPIO_NAMESPACE_SECRET"));
    let dropin = std::fs::read_to_string(manifest("leaf/kinopio-leaf.service.d/install-ca-trust.conf")).unwrap();
    assert!(dropin.contains("Environment=KINOPIO_INSTALL_CA_TRUST=1\n"));
}
