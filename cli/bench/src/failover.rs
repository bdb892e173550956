//! Scenario `failover`: `kinopio leaf auto` on a LAN of network namespaces
//! (`scripts/lan.sh`, needs root): how long from the leader's `kill -9`, and from its
//! graceful stop (SIGTERM: it resigns), until a new leader **serves** — until another host
//! fetches the new leader's discovery manifest over HTTPS.
//!
//! Set-up: hosts h1–h3 each run the real binary (`kinopio leaf auto --json`, the `kinopio`
//! executable beside `kinopio-bench`) with its own cache (a seeded node id, so h1 ranks
//! best, and a CA created beforehand, as on a device that has led before), a short
//! `--leader-missing-grace-ms` and the discovery server on a fixed port. Host h4 runs a prober (`kinopio-bench
//! probe-manifest`) that GETs `https://10.77.0.{1,2,3}:<port>/.well-known/kinopio-leader.json`
//! every [`PROBE_INTERVAL`], trusting the three CAs, and prints a line whenever what a URL
//! answers changes (a parsed manifest naming node and epoch, or not).
//!
//! Per round: `kill -9` the leader, wait for a new one serving, restart the killed node and
//! wait until it follows; then SIGTERM the leader, the same, restart it. "Serving" is the
//! arrival of the prober's line saying that a node other than the old leader answers with a
//! manifest of a higher epoch — the moment a client on another host could find it. Also
//! recorded from the nodes' status lines (arrival times of the piped lines): when a
//! survivor first reacted (`leader-missing-grace` after a kill), when the new leader began
//! starting its leaf (`starting-leaf`: elected) and when it said `leader`.
//!
//! The LAN ([`kinopio_test_support::lan::Lan`]) is always removed: its guard runs
//! `lan.sh down` when the scenario ends, fails or is interrupted (SIGINT/SIGTERM).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use kinopio_leaf::discovery_server::WELL_KNOWN_PATH;
use kinopio_leaf::tls::LocalCa;
use kinopio_test_support::lan::{self, Lan};
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use super::Ctx;
use super::clients::Client;
use super::error::BenchError;
use super::leaf_start::{fetch_manifest, https_client, nats_binary};
use super::report::{Figure, ScenarioReport, ScenarioStatus, Target, Unit};
use super::stats::Summary;

/// Scenario id.
pub(crate) const ID: &str = "failover";
/// What it measures.
pub(crate) const TITLE: &str = "kinopio leaf auto, 3 hosts on a namespace LAN: leader kill -9 / SIGTERM → new leader serving its manifest to a 4th host";
/// Nodes running `leaf auto` (hosts 1..=NODES).
const NODES: usize = 3;
/// The host of the prober.
const PROBE_HOST: usize = NODES + 1;
/// The discovery port of every node (each host has its own network namespace).
pub(crate) const DISCOVERY_PORT: u16 = 18443;
/// How often the prober fetches each URL.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// The prober's bound of one fetch.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Target after a kill: the grace plus this (ms).
pub(crate) const KILL_MARGIN_MS: f64 = 1500.0;
/// Target after a graceful stop (ms).
pub(crate) const GRACEFUL_TARGET_MS: f64 = 1000.0;
/// Peer expiry of the election (2 s, as kinopio-hub 0.1.1), for the notes.
const PEER_EXPIRY_MS: f64 = 2000.0;
/// Heartbeat interval of the election (0.5 s).
const HEARTBEAT: Duration = Duration::from_millis(500);
/// Quiet time before each kill or SIGTERM once the fleet has converged.
const SETTLE: Duration = Duration::from_secs(1);

/// The delay before the event of `round`: [`SETTLE`] plus an offset that spreads the
/// events evenly over the heartbeat period. Convergence is noticed on a line that a
/// beacon caused, so without the offset every kill would land just after a beacon and
/// always see the longest expiry (2 s); a real crash lands anywhere between two beacons.
fn event_delay(round: u32, rounds: u32) -> Duration {
    let fraction = (f64::from(round) + 0.5) / f64::from(rounds.max(1));
    SETTLE + HEARTBEAT.mul_f64(fraction.clamp(0.0, 1.0))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `ip netns exec <host> program`, killed when dropped.
fn netns_command(lan: &Lan, host: usize, program: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::from(lan.command(host, program));
    command.kill_on_drop(true);
    command
}

/// The `kinopio` executable beside this one (`cargo build -p kinopio-cli` puts both in the
/// same directory).
fn kinopio_beside() -> Result<PathBuf, BenchError> {
    let exe = std::env::current_exe().map_err(|source| BenchError::Io {
        what: "find",
        path: PathBuf::from("the running kinopio-bench executable"),
        source,
    })?;
    let kinopio = exe.with_file_name(format!("kinopio{}", std::env::consts::EXE_SUFFIX));
    if kinopio.exists() {
        return Ok(kinopio);
    }
    Err(BenchError::Io {
        what: "find",
        path: kinopio,
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no kinopio executable beside kinopio-bench; build both (cargo build --release -p kinopio-cli -p kinopio-bench, as scripts/bench.sh does)",
        ),
    })
}

fn url_of(host: usize) -> String {
    format!("https://10.77.0.{host}:{DISCOVERY_PORT}{WELL_KNOWN_PATH}")
}

/// Runs the scenario; skipped when not root, without `scripts/lan.sh`, or under `--quick`
/// unless chosen with `--scenario` (`explicit`).
pub(crate) async fn run(ctx: &Ctx<'_>, explicit: bool) -> Result<ScenarioReport, BenchError> {
    let skip = |reason: String| Ok(ScenarioReport::not_run(ID, TITLE, ScenarioStatus::Skipped { reason }));
    if ctx.settings.quick && !explicit {
        return skip("opt-in under --quick (it takes about a minute); add --scenario failover".to_owned());
    }
    if !lan::is_root() {
        return skip("needs root for network namespaces (scripts/lan.sh); run the bench as root".to_owned());
    }
    let script = lan::script();
    if !script.exists() {
        return skip(format!("no {} (run from a checkout of the repository)", script.display()));
    }
    let kinopio = kinopio_beside()?;
    let prober = std::env::current_exe().map_err(|source| BenchError::Io {
        what: "find",
        path: PathBuf::from("the running kinopio-bench executable"),
        source,
    })?;
    let binary = nats_binary(ctx).await?;
    tokio::select! {
        result = measure(ctx, &kinopio, &prober, &binary) => result,
        () = crate::signals::shutdown() => Err(BenchError::Timeout(
            "interrupted (SIGINT/SIGTERM); the LAN was removed".to_owned(),
        )),
    }
}

/// What a node's latest status line says.
#[derive(Debug, Clone, PartialEq)]
struct View {
    state: String,
    role: String,
    leader: Option<String>,
    epoch: u64,
    discovery_url: Option<String>,
}

impl View {
    fn parse(line: &Value) -> Option<View> {
        (line["event"] == "status").then_some(())?;
        Some(View {
            state: line["state"].as_str()?.to_owned(),
            role: line["role"].as_str()?.to_owned(),
            leader: line["leader"]["nodeId"].as_str().map(str::to_owned),
            epoch: line["epoch"].as_u64()?,
            discovery_url: line["discoveryUrl"].as_str().map(str::to_owned),
        })
    }

    fn leads(&self) -> bool {
        self.role == "leader" && self.state == "leader"
    }
}

/// Who sent a line: node `index` (its `generation`-th process) or the prober.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
    Node { index: usize, generation: u32 },
    Probe,
}

type Line = (Source, Instant, Value);

/// A manifest as the prober saw it: node id and epoch.
type Served = Option<(String, u64)>;

/// A change the prober reported.
struct ProbeChange {
    /// Arrival of its line.
    at: Instant,
    url: String,
    served: Served,
    /// How long the GET that saw it took.
    fetch_ms: Option<f64>,
}

struct Node {
    host: usize,
    id: String,
    cache: tempfile::TempDir,
    child: Option<tokio::process::Child>,
    generation: u32,
    view: Option<View>,
    history: Vec<(Instant, View)>,
}

impl Node {
    fn stderr_path(&self) -> PathBuf {
        self.cache.path().join(format!("stderr-{}.log", self.generation))
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(self.stderr_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    fn first_after(&self, after: Instant, mut check: impl FnMut(&View) -> bool) -> Option<Instant> {
        self.history.iter().find(|(at, view)| *at > after && check(view)).map(|(at, _)| *at)
    }
}

/// The nodes, the prober and the LAN (field order = drop order: processes, then the LAN).
struct Fleet {
    nodes: Vec<Node>,
    probe: Option<tokio::process::Child>,
    /// The latest answer per URL.
    served: HashMap<String, Served>,
    /// Every change the prober reported.
    probe_history: Vec<ProbeChange>,
    lines_tx: mpsc::UnboundedSender<Line>,
    lines: mpsc::UnboundedReceiver<Line>,
    binary: PathBuf,
    /// The `kinopio` executable the nodes run.
    exe: PathBuf,
    /// The `kinopio-bench` executable the prober runs.
    prober: PathBuf,
    namespace: String,
    grace_ms: u64,
    lan: Lan,
}

/// Forwards a child's stdout lines, with their arrival time.
fn forward(stdout: tokio::process::ChildStdout, source: Source, tx: mpsc::UnboundedSender<Line>) {
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
            if tx.send((source, Instant::now(), value)).is_err() {
                break;
            }
        }
    });
}

impl Fleet {
    /// The nodes of h1..=h[`NODES`], not started yet: each with a cache holding a seeded node
    /// id (h1 ranks best) and a CA created now.
    fn new(lan: Lan, binary: &Path, exe: &Path, prober: &Path, grace_ms: u64) -> Result<Fleet, BenchError> {
        let mut nodes = Vec::new();
        for host in 1..=NODES {
            let id = format!("kinopio-{host}0000000-{host}");
            let cache = tempfile::Builder::new().prefix("kinopio-bench-failover-").tempdir().map_err(|source| {
                BenchError::Io { what: "create a directory in", path: std::env::temp_dir(), source }
            })?;
            let id_file = cache.path().join("auto-leaf-node-id");
            std::fs::write(&id_file, &id).map_err(|source| BenchError::Io { what: "write", path: id_file, source })?;
            LocalCa::load_or_create(&cache.path().join("tls"), OffsetDateTime::now_utc())
                .map_err(|e| BenchError::Server(format!("could not create h{host}'s CA: {e}")))?;
            nodes.push(Node { host, id, cache, child: None, generation: 0, view: None, history: Vec::new() });
        }
        let (lines_tx, lines) = mpsc::unbounded_channel();
        Ok(Fleet {
            nodes,
            probe: None,
            served: HashMap::new(),
            probe_history: Vec::new(),
            lines_tx,
            lines,
            binary: binary.to_owned(),
            exe: exe.to_owned(),
            prober: prober.to_owned(),
            namespace: format!("bench-failover-{}", std::process::id()),
            grace_ms,
            lan,
        })
    }

    fn start_node(&mut self, index: usize) -> Result<(), BenchError> {
        let node = &mut self.nodes[index];
        node.generation += 1;
        let stderr_path = node.stderr_path();
        let stderr = std::fs::File::create(&stderr_path).map_err(|source| BenchError::Io {
            what: "create",
            path: stderr_path.clone(),
            source,
        })?;
        let mut command = netns_command(&self.lan, node.host, &self.exe);
        command
            .args(["leaf", "auto", "--json", "--discovery-namespace", &self.namespace])
            .arg("--binary-path")
            .arg(&self.binary)
            .arg("--cache-dir")
            .arg(node.cache.path())
            .args(["--lan-bind-address", &format!("10.77.0.{}", node.host), "--interface", "eth0"])
            .args(["--discovery-port", &DISCOVERY_PORT.to_string()])
            .args(["--leader-missing-grace-ms", &self.grace_ms.to_string()])
            .env("KINOPIO_SKIP_CA_TRUST_INSTALL", "1")
            .env("KINOPIO_LOG", "kinopio_leaf=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = command.spawn().map_err(|source| BenchError::Io {
            what: "start (ip netns exec)",
            path: self.exe.clone(),
            source,
        })?;
        let stdout = child.stdout.take().ok_or_else(|| BenchError::Child("a node has no stdout".to_owned()))?;
        forward(stdout, Source::Node { index, generation: node.generation }, self.lines_tx.clone());
        node.child = Some(child);
        node.view = None;
        Ok(())
    }

    fn start_probe(&mut self) -> Result<(), BenchError> {
        let mut command = netns_command(&self.lan, PROBE_HOST, &self.prober);
        command.arg("probe-manifest");
        for node in &self.nodes {
            command.arg("--url").arg(url_of(node.host));
            command.arg("--ca").arg(node.cache.path().join("tls/ca-cert.pem"));
        }
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = command.spawn().map_err(|source| BenchError::Io {
            what: "start the prober (ip netns exec)",
            path: self.prober.clone(),
            source,
        })?;
        let stdout = child.stdout.take().ok_or_else(|| BenchError::Child("the prober has no stdout".to_owned()))?;
        forward(stdout, Source::Probe, self.lines_tx.clone());
        self.probe = Some(child);
        Ok(())
    }

    fn absorb(&mut self, (source, at, line): Line) {
        match source {
            Source::Node { index, generation } => {
                let Some(node) = self.nodes.get_mut(index) else { return };
                if node.generation != generation {
                    return;
                }
                if let Some(view) = View::parse(&line)
                    && node.view.as_ref() != Some(&view)
                {
                    node.view = Some(view.clone());
                    node.history.push((at, view));
                }
            }
            Source::Probe => {
                let Some(url) = line["url"].as_str() else { return };
                let served = if line["ok"] == true {
                    line["nodeId"].as_str().zip(line["epoch"].as_u64()).map(|(id, epoch)| (id.to_owned(), epoch))
                } else {
                    None
                };
                self.served.insert(url.to_owned(), served.clone());
                self.probe_history.push(ProbeChange {
                    at,
                    url: url.to_owned(),
                    served,
                    fetch_ms: line["fetchMs"].as_f64(),
                });
            }
        }
    }

    /// Waits (bounded) until `check` holds, re-checking on every line.
    async fn wait(&mut self, limit: Duration, what: &str, check: impl Fn(&Fleet) -> bool) -> Result<(), BenchError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            while let Ok(line) = self.lines.try_recv() {
                self.absorb(line);
            }
            if check(self) {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => self.absorb(line),
                Ok(None) => return Err(BenchError::Child("every output pipe closed".to_owned())),
                Err(_) => {
                    return Err(BenchError::Timeout(format!(
                        "timed out after {limit:?} waiting for {what}\n{}",
                        self.dump()
                    )));
                }
            }
        }
    }

    fn dump(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            out.push_str(&format!("--- h{} {}: {:?}\n{}\n", node.host, node.id, node.view, node.tail()));
        }
        out.push_str(&format!("--- prober: {:?}\n", self.served));
        out
    }

    /// The single leader that every other running node follows and whose manifest the
    /// prober gets.
    fn converged(&self) -> Option<usize> {
        let running: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].child.is_some()).collect();
        let leaders: Vec<usize> =
            running.iter().copied().filter(|&i| self.nodes[i].view.as_ref().is_some_and(View::leads)).collect();
        let [leader] = leaders[..] else { return None };
        let node = &self.nodes[leader];
        let epoch = node.view.as_ref()?.epoch;
        let follow = running.iter().filter(|&&i| i != leader).all(|&i| {
            self.nodes[i]
                .view
                .as_ref()
                .is_some_and(|v| v.state == "following-leader" && v.leader.as_deref() == Some(node.id.as_str()))
        });
        let served = self.served.get(&url_of(node.host)) == Some(&Some((node.id.clone(), epoch)));
        (follow && served).then_some(leader)
    }

    /// First prober report after `after` of a manifest from a node other than `old` with
    /// an epoch above `old_epoch`, and the node's index.
    fn served_after(&self, after: Instant, old: usize, old_epoch: u64) -> Option<(&ProbeChange, usize)> {
        self.probe_history.iter().find_map(|change| {
            let (id, epoch) = change.served.as_ref()?;
            let index = self.nodes.iter().position(|n| &n.id == id)?;
            let fresh = change.at > after && index != old && *epoch > old_epoch;
            (fresh && change.url == url_of(self.nodes[index].host)).then_some((change, index))
        })
    }

    /// Ends the leader `leader` by `event` and waits until another node serves.
    async fn fail_over(&mut self, leader: usize, event: Event, limit: Duration) -> Result<Failover, BenchError> {
        let old_epoch = self.nodes[leader].view.as_ref().map_or(0, |v| v.epoch);
        let mut child =
            self.nodes[leader].child.take().ok_or_else(|| BenchError::Child("the leader is not running".to_owned()))?;
        let at = Instant::now();
        let mut exit = None;
        match event {
            Event::Kill => {
                let _ = child.start_kill();
                exit = child.wait().await.ok().map(|status| (at.elapsed(), status));
            }
            Event::Term => {
                let pid = child.id().ok_or_else(|| BenchError::Child("the leader has no pid".to_owned()))?;
                let sent = tokio::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
                if !sent.is_ok_and(|s| s.success()) {
                    return Err(BenchError::Child(format!("could not send SIGTERM to the leader (pid {pid})")));
                }
            }
        }
        let what = format!("a new leader serving after {}", event.name());
        self.wait(limit, &what, |f| f.served_after(at, leader, old_epoch).is_some()).await?;
        let (serving_at, new, new_epoch, serving_fetch_ms) = self
            .served_after(at, leader, old_epoch)
            .map(|(change, index)| {
                (change.at, index, change.served.as_ref().map_or(0, |(_, epoch)| *epoch), change.fetch_ms)
            })
            .ok_or_else(|| BenchError::Child("the serving leader vanished from the history".to_owned()))?;
        // Its `leader` line may arrive just after the prober's 200.
        self.wait(Duration::from_secs(5), "the new leader's leader line", |f| {
            f.nodes[new].first_after(at, View::leads).is_some()
        })
        .await?;
        if exit.is_none() {
            let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await.ok().and_then(Result::ok);
            exit = status.map(|status| (at.elapsed(), status));
        }
        let since = |when: Instant| ms(when - at);
        let reacted = (0..self.nodes.len())
            .filter(|&i| i != leader)
            .filter_map(|i| self.nodes[i].first_after(at, |_| true))
            .min();
        let new_node = &self.nodes[new];
        Ok(Failover {
            event: event.name(),
            old_leader: self.nodes[leader].id.clone(),
            new_leader: new_node.id.clone(),
            new_host: new_node.host,
            new_epoch,
            reacted_ms: reacted.map(since),
            elected_ms: new_node.first_after(at, |v| v.state == "starting-leaf").map(since),
            leader_ms: new_node.first_after(at, View::leads).map(since),
            serving_ms: since(serving_at),
            serving_fetch_ms,
            exited_ms: exit.map(|(after, _)| ms(after)),
            exit_ok: exit.map(|(_, status)| event == Event::Kill || status.success()),
            advertised_discovery_url: new_node.view.as_ref().and_then(|v| v.discovery_url.clone()),
        })
    }

    /// Restarts node `index` and waits until it follows the serving leader.
    async fn rejoin(&mut self, index: usize, limit: Duration) -> Result<(), BenchError> {
        self.start_node(index)?;
        let what = format!("{} to rejoin and follow", self.nodes[index].id);
        self.wait(limit, &what, |f| {
            f.converged().is_some() && f.nodes[index].view.as_ref().is_some_and(|v| v.state == "following-leader")
        })
        .await
    }

    /// Kills every process it started (the LAN's guard then removes the namespaces).
    async fn stop_all(&mut self) {
        let children = self.nodes.iter_mut().filter_map(|n| n.child.take()).chain(self.probe.take());
        for mut child in children.collect::<Vec<_>>() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

/// How the leader is ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// SIGKILL: it vanishes; followers wait for its expiry and the grace.
    Kill,
    /// SIGTERM: it resigns; followers elect at once.
    Term,
}

impl Event {
    fn name(self) -> &'static str {
        match self {
            Event::Kill => "kill",
            Event::Term => "term",
        }
    }
}

/// One failover measured: times from the kill or SIGTERM.
#[derive(Debug, Clone, Serialize)]
struct Failover {
    /// `kill` or `term`.
    event: &'static str,
    old_leader: String,
    new_leader: String,
    new_host: usize,
    new_epoch: u64,
    /// A survivor's first status line after the event (after a kill: `leader-missing-grace`).
    reacted_ms: Option<f64>,
    /// The new leader's first `starting-leaf` line (elected, leaf starting).
    elected_ms: Option<f64>,
    /// The new leader's first `leader` line.
    leader_ms: Option<f64>,
    /// The prober on another host got the new leader's manifest.
    serving_ms: f64,
    /// How long that GET took (connect, TLS, HTTP).
    serving_fetch_ms: Option<f64>,
    /// The old process was reaped (SIGTERM: after resigning and stopping its leaf).
    exited_ms: Option<f64>,
    /// It exited with status 0 after SIGTERM (always true after a kill).
    exit_ok: Option<bool>,
    /// The new leader's discoveryUrl from its status line.
    advertised_discovery_url: Option<String>,
}

impl Failover {
    /// Problems that make the figure doubtful.
    fn flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if self.advertised_discovery_url.as_deref().is_some_and(|url| url != url_of(self.new_host)) {
            flags.push(format!("{} advertises a discovery URL other than {}", self.new_leader, url_of(self.new_host)));
        }
        if self.exit_ok != Some(true) {
            flags.push(format!("{} did not exit cleanly after {}", self.old_leader, self.event));
        }
        flags
    }

    /// The samples it adds to the report.
    fn record(&self, report: &mut ScenarioReport) {
        let parts = [
            ("serving_ms", Some(self.serving_ms)),
            ("serving_fetch_ms", self.serving_fetch_ms),
            ("reacted_ms", self.reacted_ms),
            ("elected_ms", self.elected_ms),
            ("leader_ms", self.leader_ms),
            ("elected_to_serving_ms", self.elected_ms.map(|e| self.serving_ms - e)),
        ];
        for (metric, value) in parts {
            if let Some(value) = value {
                report.push(Client::Kinopio, &format!("{}_{metric}", self.event), Unit::Millis, value);
            }
        }
    }

    fn describe(&self) -> String {
        let fmt = |v: Option<f64>| v.map_or("—".to_owned(), |v| Unit::Millis.format(v));
        format!(
            "{} → {} (epoch {}): reacted {}, elected {}, leader {}, serving {} (that GET took {})",
            self.old_leader,
            self.new_leader,
            self.new_epoch,
            fmt(self.reacted_ms),
            fmt(self.elected_ms),
            fmt(self.leader_ms),
            Unit::Millis.format(self.serving_ms),
            fmt(self.serving_fetch_ms),
        )
    }
}

async fn measure(ctx: &Ctx<'_>, exe: &Path, prober: &Path, binary: &Path) -> Result<ScenarioReport, BenchError> {
    let s = &ctx.settings;
    let grace_ms = u64::try_from(s.failover_grace.as_millis()).unwrap_or(u64::MAX);
    let mut report = ScenarioReport::new(
        ID,
        TITLE,
        json!({
            "rounds": s.failover_rounds, "nodes": NODES, "leader_missing_grace_ms": grace_ms,
            "peer_expiry_ms": PEER_EXPIRY_MS, "heartbeat_ms": ms(HEARTBEAT), "probe_interval_ms": ms(PROBE_INTERVAL),
            "settle_ms": ms(SETTLE), "discovery_port": DISCOVERY_PORT, "binary": binary, "kinopio": exe,
            "serving": "the prober on another host (h4) got 200 + a parsing manifest naming the new leader with a higher epoch",
            "ca": "created in each node's cache before the start (a device that has led before)",
        }),
    );
    ctx.progress(&format!("{ID}: LAN of {PROBE_HOST} hosts (scripts/lan.sh), grace {grace_ms} ms"));
    // Interface names are limited to 15 bytes: keep the tag short.
    let lan = Lan::up("bf", PROBE_HOST).map_err(|source| BenchError::Io {
        what: "build the LAN with",
        path: lan::script(),
        source,
    })?;
    let mut fleet = Fleet::new(lan, binary, exe, prober, grace_ms)?;
    fleet.start_probe()?;
    for index in 0..NODES {
        fleet.start_node(index)?;
    }
    let started = Instant::now();
    let measured = async {
        fleet
            .wait(Duration::from_secs(30), "one leader that all follow and that serves", |f| f.converged().is_some())
            .await?;
        ctx.progress(&format!("{ID}: converged in {}", Unit::Millis.format(ms(started.elapsed()))));
        let limit = Duration::from_secs(20);
        for round in 0..s.failover_rounds {
            for event in [Event::Kill, Event::Term] {
                let delay = event_delay(round, s.failover_rounds);
                tokio::time::sleep(delay).await;
                let what = format!("one serving leader before the {}", event.name());
                fleet.wait(limit, &what, |f| f.converged().is_some()).await?;
                let leader = fleet.converged().ok_or_else(|| BenchError::Timeout(what.clone()))?;
                let failover = fleet.fail_over(leader, event, s.failover_grace + limit).await?;
                ctx.progress(&format!("{ID} round {} {}: {}", round + 1, event.name(), failover.describe()));
                report.flags.extend(failover.flags());
                failover.record(&mut report);
                report.runs.push(json!({"round": round, "delay_ms": ms(delay), "failover": failover}));
                // Back to three nodes: the old leader rejoins (and, ranking best or not, follows).
                fleet.rejoin(leader, limit).await?;
            }
        }
        Ok::<(), BenchError>(())
    }
    .await;
    fleet.stop_all().await;
    drop(fleet);
    measured.map(|()| report)
}

/// The prober (`kinopio-bench probe-manifest --url URL ... --ca FILE ...`):
/// fetches every URL every [`PROBE_INTERVAL`], trusting only the given CAs, and prints a
/// JSON line whenever what a URL answers changes; exits when stdin closes.
pub(crate) async fn probe_child(urls: &[String], ca_files: &[PathBuf]) -> Result<(), BenchError> {
    let client = https_client(ca_files, PROBE_TIMEOUT)?;
    let mut tasks = Vec::new();
    for url in urls {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut last: Option<Served> = None;
            loop {
                let fetch = Instant::now();
                let result = fetch_manifest(&client, &url).await;
                let fetch_ms = ms(fetch.elapsed());
                let (served, error) = match result {
                    Ok(manifest) => (Some((manifest.node_id, manifest.leader_epoch)), None),
                    Err(why) => (None, Some(why)),
                };
                if last.as_ref() != Some(&served) {
                    let line = match &served {
                        Some((id, epoch)) => {
                            json!({"event": "probe", "url": url, "ok": true, "nodeId": id, "epoch": epoch, "fetchMs": fetch_ms})
                        }
                        None => json!({"event": "probe", "url": url, "ok": false, "error": error, "fetchMs": fetch_ms}),
                    };
                    crate::output::line(&line);
                    last = Some(served);
                }
                tokio::time::sleep(PROBE_INTERVAL).await;
            }
        }));
    }
    // Until the parent goes away (stdin closes).
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(_)) = stdin.next_line().await {}
    for task in tasks {
        task.abort();
    }
    Ok(())
}

/// The table rows.
pub(crate) fn figures(all: &[ScenarioReport], grace: Duration) -> Vec<Figure> {
    let Some(report) = all.iter().find(|r| r.id == ID) else { return Vec::new() };
    let grace_ms = ms(grace);
    let k = |metric: &str| report.series(Client::Kinopio, metric);
    let median = |metric: &str| {
        k(metric).and_then(|s| Summary::of(&s.samples)).map_or("—".to_owned(), |s| Unit::Millis.format(s.median))
    };
    let breakdown = |kind: &str| {
        format!(
            "medians from the {kind}: a survivor reacted {}, elected (starting-leaf) {}, `leader` line {}, served to h4 {}",
            median(&format!("{kind}_reacted_ms")),
            median(&format!("{kind}_elected_ms")),
            median(&format!("{kind}_leader_ms")),
            median(&format!("{kind}_serving_ms")),
        )
    };
    vec![
        Figure::single(
            "failover_kill",
            ID,
            &format!("leader kill -9 → new leader serving (grace {:.1} s)", grace_ms / 1e3),
            k("kill_serving_ms"),
            Target::AtMost { value: grace_ms + KILL_MARGIN_MS },
        )
        .with_note(format!(
            "{}; followers elect once the grace has passed since the leader's last beacon (never before the \
             {:.0} s peer expiry; heartbeat 0.5 s), so the floor is ≈ {:.1}–{:.1} s before the leaf starts",
            breakdown("kill"),
            PEER_EXPIRY_MS / 1e3,
            (grace_ms.max(PEER_EXPIRY_MS) - 500.0) / 1e3,
            grace_ms.max(PEER_EXPIRY_MS) / 1e3,
        )),
        Figure::single(
            "failover_kill_start",
            ID,
            "· kill -9: elected → serving",
            k("kill_elected_to_serving_ms"),
            Target::Report,
        )
        .with_note("leaf start + manifest served, from the new leader's starting-leaf line to the prober's 200"),
        Figure::single(
            "failover_term",
            ID,
            "leader graceful stop (SIGTERM) → new leader serving",
            k("term_serving_ms"),
            Target::AtMost { value: GRACEFUL_TARGET_MS },
        )
        .with_note(breakdown("term")),
        Figure::single(
            "failover_term_start",
            ID,
            "· SIGTERM: elected → serving",
            k("term_elected_to_serving_ms"),
            Target::Report,
        )
        .with_note("leaf start + manifest served, from the new leader's starting-leaf line to the prober's 200"),
    ]
}
