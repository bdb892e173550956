//! Scenario `leaf-start`: how long `LeafNode::start` takes, with a cached binary and a cached
//! CA, until its HTTPS discovery manifest answers, against the bare start of the same
//! nats-server with the same listeners. The difference is what kinopio adds.
//!
//! Each round runs, alternating which goes first:
//! - **kinopio**: `LeafNode::start` (explicit binary, temporary runtime directory, the CA
//!   already in the cache directory, no trust-store install, LAN address 127.0.0.1), timed
//!   from the call until `GET <discoveryUrl>` answers 200 with a manifest that parses and
//!   names this leaf, over HTTPS verified by the cached CA (a client built beforehand, as a
//!   device that uses it would have); then `stop`.
//! - **bare**: nats-server spawned the same way (`ServerProcess::spawn`) with an equivalent
//!   config (`config::render`: client and monitor on 127.0.0.1, TLS WebSocket on
//!   127.0.0.1 with a certificate from the same CA, ports file, log file), written before
//!   the clock starts, timed until the ports file is there, the client port accepts, a TLS
//!   handshake on the WebSocket port completes and `/healthz` answers 200 — the checks
//!   kinopio makes — polled every [`BARE_POLL`]; then killed.
//!
//! and then, to explain the difference, times the parts of a start one by one: the binary
//! check (`binary::resolve` of an explicit path runs `nats-server --version`), the TLS
//! preparation (load the cached CA, issue and write a leaf certificate), kinopio's
//! readiness wait (`process::wait_ready`, 5 ms polls, as the runtime uses) on a bare server, and the first
//! manifest fetch after `start` returned. The CA is created once before the rounds (timed
//! and reported apart): later starts on a device find it in the cache.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kinopio::wire::manifest::LeaderManifest;
use kinopio_leaf::binary::BinaryOptions;
use kinopio_leaf::config::{self, Listen, LogSettings, ServerConfig, WebsocketTls};
use kinopio_leaf::process::{self, LOG_TAIL_LINES, ReadyCheck, ServerProcess, SpawnSpec};
use kinopio_leaf::runtime::{LeafNode, LeafOptions, LeafTimings};
use kinopio_leaf::tls::{self, LocalCa, TlsMaterial, TlsOptions, TrustStoreConfig};
use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;

use super::Ctx;
use super::clients::{Client, round_order};
use super::error::BenchError;
use super::report::{Figure, ScenarioReport, Target, Unit};

/// Scenario id.
pub(crate) const ID: &str = "leaf-start";
/// What it measures.
pub(crate) const TITLE: &str =
    "leaf start (cached binary and CA) → HTTPS manifest ready, against the bare nats-server start";
/// The target: kinopio's start may take this much longer than nats-server's own (ms).
pub(crate) const OVERHEAD_TARGET_MS: f64 = 200.0;
/// Poll interval of the bare start's readiness checks (the resolution of the baseline).
pub(crate) const BARE_POLL: Duration = Duration::from_millis(2);
/// Bound of one start.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound of each readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The nats-server binary for leaf scenarios: the one the bench started, else `--binary-path`,
/// `KINOPIO_NATS_SERVER`, the download cache, `PATH` or a download.
pub(crate) async fn nats_binary(ctx: &Ctx<'_>) -> Result<PathBuf, BenchError> {
    if let Some(path) = &ctx.server.info().binary {
        return Ok(path.clone());
    }
    let mut options = BinaryOptions::from_env();
    if let Some(path) = &ctx.binary_path {
        options = options.binary_path(path.clone());
    }
    let resolved = kinopio_leaf::binary::resolve(&options).await.map_err(|e| BenchError::Binary(e.to_string()))?;
    Ok(resolved.path)
}

/// An HTTPS client that trusts only the CA certificates in `ca_files` (PEM), no proxy.
pub(crate) fn https_client(ca_files: &[PathBuf], timeout: Duration) -> Result<reqwest::Client, BenchError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = Vec::new();
    for path in ca_files {
        let pem = std::fs::read(path).map_err(|source| BenchError::Io { what: "read", path: path.clone(), source })?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| BenchError::Io {
            what: "parse the CA certificate",
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        roots.push(cert);
    }
    reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only(roots)
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .map_err(|e| BenchError::client("reqwest", "build the HTTPS client", e))
}

/// `GET url`: the manifest when it answers 200 and parses, else why not.
pub(crate) async fn fetch_manifest(client: &reqwest::Client, url: &str) -> Result<LeaderManifest, String> {
    let response = client.get(url).send().await.map_err(|e| describe(&e))?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        return Err(format!("HTTP {status}"));
    }
    let body = response.bytes().await.map_err(|e| describe(&e))?;
    LeaderManifest::parse(&body, OffsetDateTime::now_utc()).map_err(|e| format!("manifest does not parse: {e}"))
}

fn describe(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn temp_dir(prefix: &str) -> Result<tempfile::TempDir, BenchError> {
    tempfile::Builder::new().prefix(prefix).tempdir().map_err(|source| BenchError::Io {
        what: "create a directory in",
        path: std::env::temp_dir(),
        source,
    })
}

/// One kinopio start.
#[derive(Debug, Clone, Serialize)]
struct KinopioStart {
    /// `LeafNode::start` returned.
    start_returned_ms: f64,
    /// The manifest answered 200 and parsed.
    manifest_ready_ms: f64,
    /// GETs until then.
    attempts: u32,
}

/// One bare nats-server start: when each check first passed, from the spawn call.
#[derive(Debug, Clone, Serialize)]
struct BareStart {
    spawned_ms: f64,
    ports_file_ms: f64,
    client_accepts_ms: f64,
    healthz_ms: f64,
    websocket_tls_ms: f64,
    /// All of them.
    ready_ms: f64,
}

/// The parts of a start, timed one by one.
#[derive(Debug, Clone, Serialize)]
struct Steps {
    /// `binary::resolve` of the explicit path (`nats-server --version`).
    binary_check_ms: f64,
    /// `tls::prepare` with the cached CA: load it, issue and write a leaf certificate.
    tls_prepare_ms: f64,
    /// A bare server readied by kinopio's own `process::wait_ready` (5 ms polls, as the runtime uses).
    bare_kinopio_wait_ready_ms: f64,
}

/// Runs the scenario.
pub(crate) async fn run(ctx: &Ctx<'_>) -> Result<ScenarioReport, BenchError> {
    let s = &ctx.settings;
    let binary = nats_binary(ctx).await?;
    let cache = temp_dir("kinopio-bench-leaf-cache-")?;
    let ca_dir = cache.path().join("tls");
    // The CA is created once, like on a device's first start; every measured start finds it.
    let created = Instant::now();
    let ca = {
        let ca_dir = ca_dir.clone();
        tokio::task::spawn_blocking(move || LocalCa::load_or_create(&ca_dir, OffsetDateTime::now_utc()))
            .await
            .map_err(|e| BenchError::Server(format!("the CA task failed: {e}")))?
            .map_err(|e| BenchError::Server(format!("could not create the bench's CA: {e}")))?
    };
    let ca_create_ms = ms(created.elapsed());
    let ca_file = ca.cert_path().to_path_buf();
    let client = https_client(std::slice::from_ref(&ca_file), Duration::from_secs(5))?;
    // The bare server's WebSocket certificate, from the same CA (prepared once).
    let bare_tls_dir = temp_dir("kinopio-bench-bare-tls-")?;
    let material = prepare_tls(&ca_dir, bare_tls_dir.path()).await?.material;

    let mut report = ScenarioReport::new(
        ID,
        TITLE,
        json!({
            "rounds": s.leaf_start_rounds, "warmup_rounds": s.leaf_start_warmup_rounds,
            "binary": binary, "ca_create_ms_first_start_only": ca_create_ms,
            "lan_bind_address": "127.0.0.1", "trust_store": "none (KINOPIO_SKIP_CA_TRUST_INSTALL equivalent)",
            "bare_poll_ms": ms(BARE_POLL),
            "kinopio": "LeafNode::start → GET discoveryUrl 200 + LeaderManifest::parse (HTTPS, cached CA)",
            "bare": "ServerProcess::spawn → ports file + client accepts + WebSocket TLS handshake + /healthz 200",
        }),
    );
    ctx.progress(&format!("{ID}: CA created once in {}", Unit::Millis.format(ca_create_ms)));
    for round in 0..s.leaf_start_warmup_rounds + s.leaf_start_rounds {
        let warmup = round < s.leaf_start_warmup_rounds;
        let mut kinopio = None;
        let mut bare = None;
        for side in round_order(round) {
            match side {
                Client::Kinopio => kinopio = Some(kinopio_start(&binary, cache.path(), &client).await?),
                _ => bare = Some(bare_start(&binary, &material).await?),
            }
        }
        let (Some(kinopio), Some(bare)) = (kinopio, bare) else { continue };
        let steps = steps(&binary, &ca_dir, &material).await?;
        let overhead = kinopio.manifest_ready_ms - bare.ready_ms;
        ctx.progress(&format!(
            "{ID} round {}{}: kinopio {} (start returned {}), bare nats-server {}, overhead {}; \
             binary check {}, TLS {}, kinopio wait_ready on bare {}",
            round + 1,
            if warmup { " (warm-up)" } else { "" },
            Unit::Millis.format(kinopio.manifest_ready_ms),
            Unit::Millis.format(kinopio.start_returned_ms),
            Unit::Millis.format(bare.ready_ms),
            Unit::Millis.format(overhead),
            Unit::Millis.format(steps.binary_check_ms),
            Unit::Millis.format(steps.tls_prepare_ms),
            Unit::Millis.format(steps.bare_kinopio_wait_ready_ms),
        ));
        if warmup {
            continue;
        }
        let first_fetch = kinopio.manifest_ready_ms - kinopio.start_returned_ms;
        let polling = steps.bare_kinopio_wait_ready_ms - bare.ready_ms;
        let rest = overhead - steps.binary_check_ms - steps.tls_prepare_ms - polling - first_fetch;
        report.runs.push(json!({
            "round": round - s.leaf_start_warmup_rounds, "order": round_order(round),
            "kinopio": kinopio, "bare": bare, "steps": steps, "overhead_ms": overhead,
        }));
        report.push(Client::Kinopio, "ready_ms", Unit::Millis, kinopio.manifest_ready_ms);
        report.push(Client::Raw, "ready_ms", Unit::Millis, bare.ready_ms);
        report.push(Client::Kinopio, "overhead_ms", Unit::Millis, overhead);
        report.push(Client::Kinopio, "binary_check_ms", Unit::Millis, steps.binary_check_ms);
        report.push(Client::Kinopio, "tls_prepare_ms", Unit::Millis, steps.tls_prepare_ms);
        report.push(Client::Kinopio, "ready_polling_ms", Unit::Millis, polling);
        report.push(Client::Kinopio, "first_fetch_ms", Unit::Millis, first_fetch);
        report.push(Client::Kinopio, "rest_ms", Unit::Millis, rest);
    }
    Ok(report)
}

/// `LeafNode::start` until the manifest answers, then `stop`.
async fn kinopio_start(binary: &Path, cache: &Path, client: &reqwest::Client) -> Result<KinopioStart, BenchError> {
    let options = LeafOptions::new()
        .binary_path(binary)
        .cache_dir(cache)
        .lan_bind_address(LOOPBACK)
        .trust_store(TrustStoreConfig::none())
        .timings(LeafTimings { stop_grace: Duration::from_secs(5), ..LeafTimings::default() });
    let started = Instant::now();
    let leaf = tokio::time::timeout(START_TIMEOUT, Box::pin(LeafNode::start(options)))
        .await
        .map_err(|_| BenchError::Timeout(format!("LeafNode::start did not return within {START_TIMEOUT:?}")))?
        .map_err(|e| BenchError::Server(format!("the kinopio leaf did not start: {e}")))?;
    let start_returned = started.elapsed();
    let url = leaf.urls().discovery_url.clone();
    let mut attempts = 0;
    let fetched = loop {
        attempts += 1;
        let last = match fetch_manifest(client, &url).await {
            Ok(manifest) if manifest.node_id == leaf.node_id() => break Ok(started.elapsed()),
            Ok(manifest) => format!("it names node {} instead of {}", manifest.node_id, leaf.node_id()),
            Err(why) => why,
        };
        if started.elapsed() >= START_TIMEOUT {
            break Err(BenchError::Timeout(format!(
                "the leaf's manifest at {url} did not answer within {START_TIMEOUT:?}: {last}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    leaf.stop().await;
    let ready = fetched?;
    Ok(KinopioStart { start_returned_ms: ms(start_returned), manifest_ready_ms: ms(ready), attempts })
}

struct Prepared {
    material: TlsMaterial,
}

async fn prepare_tls(ca_dir: &Path, runtime_dir: &Path) -> Result<Prepared, BenchError> {
    let options = TlsOptions::generated(ca_dir, runtime_dir, vec!["127.0.0.1".to_owned()]);
    let prepared = tokio::task::spawn_blocking(move || tls::prepare(&options, OffsetDateTime::now_utc()))
        .await
        .map_err(|e| BenchError::Server(format!("the TLS task failed: {e}")))?
        .map_err(|e| BenchError::Server(format!("could not prepare TLS material: {e}")))?;
    Ok(Prepared { material: prepared.material() })
}

/// A bare nats-server in a fresh directory, with the leaf's listeners.
struct Bare {
    dir: tempfile::TempDir,
    spec: SpawnSpec,
}

impl Bare {
    fn new(binary: &Path, material: &TlsMaterial) -> Result<Bare, BenchError> {
        let dir = temp_dir("kinopio-bench-bare-")?;
        let config = ServerConfig {
            server_name: "kinopio-bench-bare".to_owned(),
            client: Listen::new(LOOPBACK, None),
            monitor: Listen::new(LOOPBACK, None),
            websocket: Listen::new(LOOPBACK, None),
            websocket_tls: WebsocketTls { cert_file: material.cert_file.clone(), key_file: material.key_file.clone() },
            websocket_allowed_origins: Vec::new(),
            client_token: None,
            authorization_file: None,
            backbone: None,
            ports_file_dir: dir.path().to_owned(),
            log: Some(LogSettings {
                file: dir.path().join("nats.log"),
                size_limit_bytes: kinopio_leaf::runtime::LOG_SIZE_LIMIT_BYTES,
                max_files: kinopio_leaf::runtime::LOG_MAX_FILES,
            }),
        };
        let text = config::render(&config).map_err(|e| BenchError::Server(e.to_string()))?;
        let config_file = dir.path().join("nats.conf");
        std::fs::write(&config_file, text).map_err(|source| BenchError::Io {
            what: "write",
            path: config_file.clone(),
            source,
        })?;
        let spec = SpawnSpec {
            binary: binary.to_owned(),
            config_file,
            output_file: dir.path().join("nats.out"),
            working_dir: dir.path().to_owned(),
        };
        Ok(Bare { dir, spec })
    }

    fn logs(&self) -> Vec<PathBuf> {
        vec![self.spec.output_file.clone(), self.dir.path().join("nats.log")]
    }

    async fn spawn(&self) -> Result<ServerProcess, BenchError> {
        ServerProcess::spawn(&self.spec).await.map_err(|e| BenchError::Server(e.to_string()))
    }
}

/// The bare start, polled every [`BARE_POLL`].
async fn bare_start(binary: &Path, material: &TlsMaterial) -> Result<BareStart, BenchError> {
    let bare = Bare::new(binary, material)?;
    let started = Instant::now();
    let mut process = bare.spawn().await?;
    let spawned = started.elapsed();
    let mut ports = None;
    let (mut ports_at, mut client_at, mut healthz_at, mut wss_at) = (None, None, None, None);
    let result = loop {
        if let Some(status) = process.try_exit() {
            break Err(BenchError::Server(format!(
                "the bare nats-server exited with {status}:\n{}",
                process::log_tail(&bare.logs(), LOG_TAIL_LINES)
            )));
        }
        if ports.is_none() {
            ports = process::read_ports_file(bare.dir.path(), process.pid());
            if ports.is_some() {
                ports_at = Some(started.elapsed());
            }
        }
        if let Some(p) = ports {
            let client = SocketAddr::new(LOOPBACK, p.client);
            let websocket = SocketAddr::new(LOOPBACK, p.websocket);
            let (client_ok, healthz_ok, wss_ok) = tokio::join!(
                async { client_at.is_some() || kinopio_leaf::net::accepts(client, PROBE_TIMEOUT).await },
                async { healthz_at.is_some() || healthz(p.monitor).await },
                async { wss_at.is_some() || kinopio_leaf::net::accepts_tls(websocket, PROBE_TIMEOUT).await },
            );
            let now = started.elapsed();
            for (ok, at) in [(client_ok, &mut client_at), (healthz_ok, &mut healthz_at), (wss_ok, &mut wss_at)] {
                if ok && at.is_none() {
                    *at = Some(now);
                }
            }
        }
        if let (Some(p), Some(c), Some(h), Some(w)) = (ports_at, client_at, healthz_at, wss_at) {
            break Ok(BareStart {
                spawned_ms: ms(spawned),
                ports_file_ms: ms(p),
                client_accepts_ms: ms(c),
                healthz_ms: ms(h),
                websocket_tls_ms: ms(w),
                ready_ms: ms(p.max(c).max(h).max(w)),
            });
        }
        if started.elapsed() >= START_TIMEOUT {
            break Err(BenchError::Timeout(format!(
                "the bare nats-server was not ready within {START_TIMEOUT:?}:\n{}",
                process::log_tail(&bare.logs(), LOG_TAIL_LINES)
            )));
        }
        tokio::time::sleep(BARE_POLL).await;
    };
    process.stop(Duration::from_secs(5)).await;
    result
}

/// Whether the monitor on 127.0.0.1:`port` answers `GET /healthz` with 200 (HTTP/1.0, one
/// connection, no client to build).
async fn healthz(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect((LOOPBACK, port)).await.ok()?;
        stream.write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").await.ok()?;
        let mut head = [0u8; 16];
        let mut read = 0;
        while read < head.len() {
            let n = stream.read(&mut head[read..]).await.ok()?;
            if n == 0 {
                break;
            }
            read += n;
        }
        let text = std::str::from_utf8(&head[..read]).ok()?;
        (text.starts_with("HTTP/1.") && text.split_whitespace().nth(1) == Some("200")).then_some(())
    };
    matches!(tokio::time::timeout(PROBE_TIMEOUT, attempt).await, Ok(Some(())))
}

/// The parts of a start, each timed alone.
async fn steps(binary: &Path, ca_dir: &Path, material: &TlsMaterial) -> Result<Steps, BenchError> {
    let started = Instant::now();
    kinopio_leaf::binary::resolve(&BinaryOptions::from_env().binary_path(binary))
        .await
        .map_err(|e| BenchError::Binary(e.to_string()))?;
    let binary_check = started.elapsed();

    let dir = temp_dir("kinopio-bench-tls-")?;
    let started = Instant::now();
    prepare_tls(ca_dir, dir.path()).await?;
    let tls_prepare = started.elapsed();

    let bare = Bare::new(binary, material)?;
    let check = ReadyCheck {
        ports_file_dir: bare.dir.path().to_owned(),
        client_host: LOOPBACK,
        websocket_host: LOOPBACK,
        monitor_host: LOOPBACK,
        log_files: bare.logs(),
        // What `LeafNode::start` uses.
        poll_interval: Duration::from_millis(5),
        probe_timeout: LeafTimings::default().probe_timeout,
    };
    let started = Instant::now();
    let mut process = bare.spawn().await?;
    let ready = process::wait_ready(&mut process, &check, START_TIMEOUT).await;
    let wait_ready = started.elapsed();
    process.stop(Duration::from_secs(5)).await;
    ready.map_err(|e| BenchError::Server(e.to_string()))?;
    Ok(Steps {
        binary_check_ms: ms(binary_check),
        tls_prepare_ms: ms(tls_prepare),
        bare_kinopio_wait_ready_ms: ms(wait_ready),
    })
}

/// The table rows.
pub(crate) fn figures(all: &[ScenarioReport]) -> Vec<Figure> {
    let Some(report) = all.iter().find(|r| r.id == ID) else { return Vec::new() };
    let k = |metric: &str| report.series(Client::Kinopio, metric);
    let median = |metric: &str| k(metric).and_then(|s| super::stats::Summary::of(&s.samples)).map(|s| s.median);
    let mut overhead = Figure::single(
        "leaf_start_overhead",
        ID,
        "leaf start → manifest ready, minus bare nats-server start",
        k("overhead_ms"),
        Target::AtMost { value: OVERHEAD_TARGET_MS },
    );
    if let (Some(a), Some(b)) = (median("ready_ms"), report.series(Client::Raw, "ready_ms")) {
        let b = super::stats::Summary::of(&b.samples).map_or(f64::NAN, |s| s.median);
        overhead = overhead.with_note(format!(
            "per round (kinopio − bare); median kinopio {} − median bare {} = {}",
            Unit::Millis.format(a),
            Unit::Millis.format(b),
            Unit::Millis.format(a - b)
        ));
    }
    let step = |id: &str, metric: &str, label: &str, note: &str| {
        Figure::single(id, ID, label, k(metric), Target::Report).with_note(note)
    };
    vec![
        Figure::compare(
            "leaf_start_ready",
            ID,
            "leaf start → manifest ready (baseline: bare nats-server start)",
            k("ready_ms"),
            report.series(Client::Raw, "ready_ms"),
            Target::Report,
        )
        .with_note(
            "cached binary and CA, no trust-store install; bare = same listeners, ports file + client + WSS TLS + /healthz",
        ),
        overhead,
        step(
            "leaf_start_binary_check",
            "binary_check_ms",
            "· of which: binary check",
            "binary::resolve of an explicit path runs nats-server --version",
        ),
        step(
            "leaf_start_tls",
            "tls_prepare_ms",
            "· of which: TLS preparation",
            "load the cached CA, issue and write the leaf certificate",
        ),
        step(
            "leaf_start_polling",
            "ready_polling_ms",
            "· of which: readiness polling",
            "process::wait_ready (5 ms polls) on a bare server minus the 2 ms-polled bare start",
        ),
        step(
            "leaf_start_first_fetch",
            "first_fetch_ms",
            "· of which: first manifest fetch",
            "start returned → GET 200 (TCP + TLS handshake + HTTP)",
        ),
        step("leaf_start_rest", "rest_ms", "· of which: the rest", "overhead minus the parts above"),
    ]
}
