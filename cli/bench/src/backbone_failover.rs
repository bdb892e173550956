//! Scenario `backbone-failover`: how long traffic stops when a backbone node dies under a
//! LAN leaf and under a hub connected straight to the backbone, and when the whole backbone
//! comes back after an outage.
//!
//! Each round starts a fresh three-node cluster from `manifests/backbone/backbone.conf` (the
//! checked-in file, embedded; ports and file paths through its environment; TLS from a
//! generated CA), on loopback, and:
//! - a leaf (`LeafNode`, every node's leafnode URL, user `lan-studio`) bridged to node 1,
//!   and a kinopio hub on the leaf publishing `studio.bench.leaf` every [`TICK`];
//! - a kinopio hub straight on the backbone (every node's client URL, ordered, so on node 1,
//!   default reconnect settings) publishing `studio.bench.hub` every [`TICK`];
//! - a kinopio hub on node 3 subscribed to both; every message carries its send time.
//!
//! Then node 1 is killed (`kill -9`) and, once reaped, the clock starts: the **gap** of each
//! publisher is the time until the first message it sent after that arrives on node 3 (the
//! leaf has to reconnect to another node and get node 3's interest again; the hub has to
//! reconnect and resubscribe nothing). Then nodes 2 and 3 are killed too, the backbone stays
//! down for [`OUTAGE`], all three start again, and the **return** of each publisher is the
//! time from the last node accepting connections to the first message sent after that
//! arriving (the subscriber has to reconnect to node 3 too). Resolution: [`TICK`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kinopio::{Auth, Hub, HubOptions, SelectionMode, Variable};
use kinopio_leaf::runtime::{LeafNode, LeafOptions, LeafTimings};
use kinopio_leaf::tls::{TlsOptions, TrustStoreConfig};
use serde_json::json;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::Ctx;
use crate::clients::Client;
use crate::error::BenchError;
use crate::leaf_start::nats_binary;
use crate::report::{Figure, ScenarioReport, ScenarioStatus, Target, Unit};
use crate::stats::Summary;

/// Scenario id.
pub(crate) const ID: &str = "backbone-failover";
/// What it measures.
pub(crate) const TITLE: &str =
    "backbone node kill -9 → first message across again, leaf vs hub on the backbone; backbone outage → back";
/// The backbone configuration, as checked in.
const BACKBONE_CONF: &str = include_str!("../../../manifests/backbone/backbone.conf");
/// Publish interval of each publisher (the resolution of the gaps).
pub(crate) const TICK: Duration = Duration::from_millis(5);
/// How long the whole backbone stays down.
pub(crate) const OUTAGE: Duration = Duration::from_secs(1);
const NODES: usize = 3;
const PASSWORD: &str = "kbench0a1b2c3d4e5f";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs the scenario; opt-in under `--quick` (add `--scenario backbone-failover`).
pub(crate) async fn run(ctx: &Ctx<'_>, explicit: bool) -> Result<ScenarioReport, BenchError> {
    if ctx.settings.quick && !explicit {
        return Ok(ScenarioReport::not_run(
            ID,
            TITLE,
            ScenarioStatus::Skipped {
                reason: "opt-in under --quick (a few seconds per round); add --scenario backbone-failover".to_owned(),
            },
        ));
    }
    let binary = nats_binary(ctx).await?;
    let rounds = ctx.settings.rounds;
    let mut report = ScenarioReport::new(
        ID,
        TITLE,
        json!({"rounds": rounds, "tick_ms": ms(TICK), "outage_ms": ms(OUTAGE), "nodes": NODES}),
    );
    for round in 0..rounds {
        let run = measure(ctx, &binary).await?;
        ctx.progress(&format!(
            "round {}: kill -9 → across again: leaf {:.0} ms, hub {:.0} ms; backbone back → across: leaf {:.0} ms, hub {:.0} ms",
            round + 1,
            run.leaf_gap_ms,
            run.hub_gap_ms,
            run.leaf_return_ms,
            run.hub_return_ms
        ));
        report.push(Client::Kinopio, "leaf_gap_ms", Unit::Millis, run.leaf_gap_ms);
        report.push(Client::Kinopio, "hub_gap_ms", Unit::Millis, run.hub_gap_ms);
        report.push(Client::Kinopio, "leaf_return_ms", Unit::Millis, run.leaf_return_ms);
        report.push(Client::Kinopio, "hub_return_ms", Unit::Millis, run.hub_return_ms);
        report.runs.push(serde_json::to_value(&run).unwrap_or_default());
    }
    Ok(report)
}

/// The table rows.
pub(crate) fn figures(all: &[ScenarioReport]) -> Vec<Figure> {
    let Some(report) = all.iter().find(|r| r.id == ID) else { return Vec::new() };
    let k = |metric: &str| report.series(Client::Kinopio, metric);
    let median = |metric: &str| {
        k(metric).and_then(|s| Summary::of(&s.samples)).map_or("—".to_owned(), |s| Unit::Millis.format(s.median))
    };
    vec![
        Figure::single(
            "backbone_kill_leaf_gap",
            ID,
            "backbone node kill -9 → first message across again, through a leaf",
            k("leaf_gap_ms"),
            Target::Report,
        )
        .with_note(format!(
            "three-node cluster from manifests/backbone/backbone.conf; the leaf reconnects to another node (nats-server \
             leafnode `reconnect: 1s`), a hub straight on the backbone took {}",
            median("hub_gap_ms")
        )),
        Figure::single(
            "backbone_kill_hub_gap",
            ID,
            "backbone node kill -9 → first message across again, hub on the backbone",
            k("hub_gap_ms"),
            Target::Report,
        ),
        Figure::single(
            "backbone_back_leaf",
            ID,
            &format!("whole backbone down {:.0} s → back → first message across, through a leaf", OUTAGE.as_secs_f64()),
            k("leaf_return_ms"),
            Target::Report,
        )
        .with_note(format!(
            "from the last node accepting again, including the subscriber's own reconnect to node 3; a hub on the \
             backbone took {}",
            median("hub_return_ms")
        )),
        Figure::single(
            "backbone_back_hub",
            ID,
            &format!("whole backbone down {:.0} s → back → first message across, hub on the backbone", OUTAGE.as_secs_f64()),
            k("hub_return_ms"),
            Target::Report,
        ),
    ]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One round's figures.
#[derive(Debug, Clone, serde::Serialize)]
struct Round {
    leaf_gap_ms: f64,
    hub_gap_ms: f64,
    leaf_return_ms: f64,
    hub_return_ms: f64,
    /// Where the leaf's bridge went after node 1 died.
    leaf_moved_to: Option<String>,
    /// The server of the hub on the backbone before the kill (node 1) and after.
    hub_server_before: Option<String>,
    hub_server_after: Option<String>,
}

/// Three nodes of the embedded `backbone.conf`; killed on drop.
struct Cluster {
    dir: tempfile::TempDir,
    binary: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    ports: Vec<[u16; 4]>,
    children: Vec<Option<Child>>,
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BenchError {
    let path = path.to_path_buf();
    move |source| BenchError::Io { what, path, source }
}

fn free_port() -> Result<u16, BenchError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("bind", Path::new("127.0.0.1:0")))?;
    Ok(listener.local_addr().map_err(io("read the address of", Path::new("127.0.0.1:0")))?.port())
}

impl Cluster {
    fn new(binary: &Path) -> Result<Cluster, BenchError> {
        let dir = tempfile::Builder::new()
            .prefix("kinopio-bench-backbone-")
            .tempdir()
            .map_err(io("create a directory in", &std::env::temp_dir()))?;
        let conf = dir.path().join("backbone.conf");
        std::fs::write(&conf, BACKBONE_CONF).map_err(io("write", &conf))?;
        let prepared = kinopio_leaf::tls::prepare(
            &TlsOptions::generated(dir.path().join("ca"), dir.path(), vec!["127.0.0.1".into()]),
            time::OffsetDateTime::now_utc(),
        )
        .map_err(|e| BenchError::Server(format!("backbone TLS: {e}")))?;
        let material = prepared.material();
        let mut ports = Vec::new();
        for _ in 0..NODES {
            ports.push([free_port()?, free_port()?, free_port()?, free_port()?]);
        }
        Ok(Cluster {
            binary: binary.to_path_buf(),
            cert: material.cert_file.clone(),
            key: material.key_file.clone(),
            ca: material.ca_file.clone(),
            ports,
            children: (0..NODES).map(|_| None).collect(),
            dir,
        })
    }

    fn env(&self, i: usize) -> Vec<(String, String)> {
        let [client, leaf, cluster, monitor] = self.ports[i];
        let mut env = vec![
            ("BACKBONE_NAME".to_owned(), format!("backbone-{}", i + 1)),
            ("BACKBONE_HOST".to_owned(), "127.0.0.1".to_owned()),
            ("BACKBONE_CLIENT_PORT".to_owned(), client.to_string()),
            ("BACKBONE_LEAF_PORT".to_owned(), leaf.to_string()),
            ("BACKBONE_CLUSTER_PORT".to_owned(), cluster.to_string()),
            ("BACKBONE_MONITOR".to_owned(), format!("127.0.0.1:{monitor}")),
            ("BACKBONE_TLS_CERT".to_owned(), self.cert.display().to_string()),
            ("BACKBONE_TLS_KEY".to_owned(), self.key.display().to_string()),
            ("BACKBONE_ROUTE_PASSWORD".to_owned(), PASSWORD.to_owned()),
            ("BACKBONE_APP_PASSWORD".to_owned(), PASSWORD.to_owned()),
            ("LEAF_STUDIO_PASSWORD".to_owned(), PASSWORD.to_owned()),
            ("LEAF_OFFICE_PASSWORD".to_owned(), PASSWORD.to_owned()),
        ];
        for (j, peer) in self.ports.iter().enumerate() {
            env.push((
                format!("BACKBONE_ROUTE_{}", j + 1),
                format!("nats-route://route:{PASSWORD}@127.0.0.1:{}", peer[2]),
            ));
        }
        env
    }

    /// Starts node `i` and waits until its client and leafnode ports accept.
    async fn spawn(&mut self, i: usize) -> Result<(), BenchError> {
        let log = self.dir.path().join(format!("backbone-{}.log", i + 1));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).map_err(io("open", &log))?;
            let mut child = Command::new(&self.binary)
                .arg("-c")
                .arg(self.dir.path().join("backbone.conf"))
                .env_clear()
                .envs(self.env(i))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(file)
                .kill_on_drop(true)
                .spawn()
                .map_err(io("start", &self.binary))?;
            let [client, leaf, _, _] = self.ports[i];
            loop {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                let accepting = tokio::net::TcpStream::connect(("127.0.0.1", client)).await.is_ok()
                    && tokio::net::TcpStream::connect(("127.0.0.1", leaf)).await.is_ok();
                if accepting {
                    self.children[i] = Some(child);
                    return Ok(());
                }
                if Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if Instant::now() > deadline {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(5).collect();
                return Err(BenchError::Server(format!("backbone-{} did not start: {}", i + 1, tail.join(" | "))));
            }
            tokio::time::sleep(Duration::from_millis(50)).await; // the old process's ports linger
        }
    }

    /// SIGKILL node `i` and reap it.
    async fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    fn urls(&self, which: usize) -> Vec<String> {
        self.ports.iter().map(|p| format!("tls://127.0.0.1:{}", p[which])).collect()
    }
}

/// When each message a publisher sent after `since` first arrived.
#[derive(Default)]
struct Arrivals {
    leaf: Vec<(Instant, Instant)>,
    hub: Vec<(Instant, Instant)>,
}

impl Arrivals {
    fn first_after(list: &[(Instant, Instant)], since: Instant) -> Option<Duration> {
        list.iter().filter(|(sent, _)| *sent > since).map(|(_, arrived)| arrived.saturating_duration_since(since)).min()
    }
}

async fn hub(urls: &[String], ca: Option<&Path>, auth: Option<Auth>) -> Result<Hub, BenchError> {
    let mut options = HubOptions::new()
        .servers(urls)
        .map_err(|e| BenchError::client("kinopio", "parse the server URLs", e))?
        .selection(SelectionMode::Ordered);
    if let Some(ca) = ca {
        options = options.tls_ca_file(ca);
    }
    if let Some(auth) = auth {
        options = options.auth(auth);
    }
    tokio::time::timeout(START_TIMEOUT, Hub::connect(options))
        .await
        .map_err(|_| BenchError::Timeout(format!("connecting to {}", urls.join(", "))))?
        .map_err(|e| BenchError::Connect { client: "kinopio", url: urls.join(", "), detail: e.to_string() })
}

/// Publishes the send time (nanoseconds since `origin`) every [`TICK`] until aborted.
fn ticker(variable: Variable, origin: Instant) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            interval.tick().await;
            let sent = u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
            // A publish while disconnected fails or is dropped: that is the gap being measured.
            let _ = variable.publish(&sent).await;
        }
    })
}

async fn measure(ctx: &Ctx<'_>, binary: &Path) -> Result<Round, BenchError> {
    let mut cluster = Cluster::new(binary)?;
    for i in 0..NODES {
        cluster.spawn(i).await?;
    }
    let password_file = cluster.dir.path().join("leaf-password");
    std::fs::write(&password_file, PASSWORD).map_err(io("write", &password_file))?;
    let cache = cluster.dir.path().join("leaf-cache");
    let leaf = LeafNode::start(
        LeafOptions::new()
            .backbone_servers(cluster.urls(1))
            .backbone_ca_file(&cluster.ca)
            .backbone_user("lan-studio")
            .backbone_password_file(&password_file)
            .binary_path(binary)
            .cache_dir(&cache)
            .lan_bind_address(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
            .trust_store(TrustStoreConfig::none())
            .timings(LeafTimings { poll_interval: Duration::from_millis(50), ..LeafTimings::default() }),
    )
    .await
    .map_err(|e| BenchError::Server(format!("leaf: {e}")))?;
    let mut watch = leaf.watch();
    let bridged = watch.wait_for(|s| s.bridge_server.as_deref() == Some("backbone-1"));
    tokio::time::timeout(START_TIMEOUT, bridged)
        .await
        .map_err(|_| {
            BenchError::Timeout(format!("the leaf never bridged to backbone-1: {:?}", leaf.status().bridge_state))
        })?
        .map_err(|_| BenchError::Server("the leaf stopped".to_owned()))?;
    let app = || Some(Auth::UserPassword { user: "app".into(), password: PASSWORD.into() });
    let client_urls = cluster.urls(0);
    let subscriber = hub(&client_urls[2..], Some(&cluster.ca), app()).await?;
    let direct = hub(&client_urls, Some(&cluster.ca), app()).await?;
    let lan = hub(&[leaf.urls().client_url.clone()], None, None).await?;

    let origin = Instant::now();
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let mut leaf_sub = subscriber
        .variable("studio.bench.leaf")
        .map_err(|e| BenchError::client("kinopio", "name a variable", e))?
        .subscribe()
        .await
        .map_err(|e| BenchError::client("kinopio", "subscribe", e))?;
    let mut hub_sub = subscriber
        .variable("studio.bench.hub")
        .map_err(|e| BenchError::client("kinopio", "name a variable", e))?
        .subscribe()
        .await
        .map_err(|e| BenchError::client("kinopio", "subscribe", e))?;
    let recorder = {
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            loop {
                let (msg, leaf_side) = tokio::select! {
                    Some(msg) = leaf_sub.next() => (msg, true),
                    Some(msg) = hub_sub.next() => (msg, false),
                    else => return,
                };
                let arrived = Instant::now();
                let Ok(nanos) = msg.decode::<u64>() else { continue };
                let sent = origin + Duration::from_nanos(nanos);
                let mut arrivals = arrivals.lock().await;
                if leaf_side { arrivals.leaf.push((sent, arrived)) } else { arrivals.hub.push((sent, arrived)) }
            }
        })
    };
    let name = |hub: &Hub, subject: &str| {
        hub.variable(subject).map_err(|e| BenchError::client("kinopio", "name a variable", e))
    };
    let leaf_ticker = ticker(name(&lan, "studio.bench.leaf")?, origin);
    let hub_ticker = ticker(name(&direct, "studio.bench.hub")?, origin);
    let result = async {
        // Both flows cross before anything is killed.
        let steady = Instant::now();
        wait_both(ctx, &arrivals, steady, "the flows to start").await?;

        let hub_server_before = direct.server().map(|s| s.to_string());
        cluster.kill(0).await;
        let killed = Instant::now();
        let (leaf_gap, hub_gap) = wait_both(ctx, &arrivals, killed, "traffic after the kill").await?;
        // The leaf's status follows its monitor at the poll interval: wait for it (bounded).
        let moved = watch.wait_for(|s| s.bridge_server.as_deref().is_some_and(|name| name != "backbone-1"));
        let leaf_moved_to = match tokio::time::timeout(Duration::from_secs(5), moved).await {
            Ok(Ok(status)) => status.bridge_server.clone(),
            _ => None,
        };
        let hub_server_after = direct.server().map(|s| s.to_string());

        cluster.kill(1).await;
        cluster.kill(2).await;
        tokio::time::sleep(OUTAGE).await;
        for i in 0..NODES {
            cluster.spawn(i).await?;
        }
        let back = Instant::now();
        let (leaf_return, hub_return) = wait_both(ctx, &arrivals, back, "traffic after the backbone came back").await?;
        Ok(Round {
            leaf_gap_ms: ms(leaf_gap),
            hub_gap_ms: ms(hub_gap),
            leaf_return_ms: ms(leaf_return),
            hub_return_ms: ms(hub_return),
            leaf_moved_to,
            hub_server_before,
            hub_server_after,
        })
    }
    .await;
    leaf_ticker.abort();
    hub_ticker.abort();
    recorder.abort();
    for h in [&lan, &direct, &subscriber] {
        h.close().await;
    }
    leaf.stop().await;
    result
}

/// Waits until a message of each publisher sent after `since` has arrived; their delays.
async fn wait_both(
    ctx: &Ctx<'_>,
    arrivals: &Mutex<Arrivals>,
    since: Instant,
    what: &str,
) -> Result<(Duration, Duration), BenchError> {
    let deadline = ctx.deadline();
    loop {
        {
            let arrivals = arrivals.lock().await;
            if let (Some(leaf), Some(hub)) =
                (Arrivals::first_after(&arrivals.leaf, since), Arrivals::first_after(&arrivals.hub, since))
            {
                return Ok((leaf, hub));
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(BenchError::Timeout(format!("{what}: no message crossed within the wait timeout")));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
