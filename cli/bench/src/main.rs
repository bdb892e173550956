//! `kinopio-bench`: measures the kinopio client against raw async-nats on the same
//! nats-server in the same run (alternating A B / B A over several rounds, with warm-up),
//! plus the Python reference kinopio-hub 0.1.1, and writes `bench.json` (every sample,
//! medians, ratios, machine) and `bench.md` (the table with targets).
//!
//! Scenarios are modules with `ID`, `TITLE`, `run` and `figures`; each adds its rows to
//! the table. `leaf-start` times a leaf's start against nats-server's own; `failover`
//! (root only: network namespaces) times the election after the leader dies or stops;
//! `backbone-failover` times traffic across a leaf and a hub when backbone nodes die.
//! The `p4-*` scenarios measure protocol 4 (shared variables, events, late join, memory,
//! idle traffic) against the real Python kinopio-hub 3.0.0 (`scripts/bench/p4_bench.py`,
//! driven by `p4_python`) and raw async-nats; without that interpreter they are skipped.
//!
//! Its own binary, not part of the `kinopio` command line: the child processes it starts
//! are subcommands of this binary (`many-subs-child`, `probe-manifest`), and the failover
//! scenarios run the `kinopio` executable found beside it.

// The doc comments of the argument structs are `--help` text (`https://<leaf>/`,
// `host[:port]`), not rustdoc.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

mod backbone_failover;
mod child;
mod clients;
mod error;
mod failover;
mod fanout;
mod flow;
mod forward;
mod hot_switch;
mod latency;
mod leaf_start;
mod machine;
mod many_subs;
mod output;
mod p4_events;
mod p4_late_join;
mod p4_latency;
mod p4_memory;
mod p4_python;
mod p4_traffic;
mod python;
mod report;
mod server;
// The CLI's signal handling, shared as source (one copy of a subtle piece: handlers are
// installed when called, so a signal arriving early is not lost).
#[path = "../../src/signals.rs"]
mod signals;
mod stats;
mod switch_scale;
mod throughput;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use error::BenchError;
use machine::Machine;
use output::Failure;
use report::{Report, ScenarioReport, ScenarioStatus};
use server::BenchServer;

/// Benchmark kinopio against raw async-nats and the Python reference; write a report.
#[derive(Debug, Parser)]
#[command(name = "kinopio-bench", version, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Log filter for diagnostics on stderr (e.g. `info`, `kinopio=debug`); also
    /// `KINOPIO_LOG`.
    #[arg(long, global = true, env = "KINOPIO_LOG", default_value = "warn")]
    log: String,

    /// A child process of a scenario (the benchmark starts these itself).
    #[command(subcommand)]
    role: Option<Role>,

    #[command(flatten)]
    bench: BenchArgs,
}

/// The child processes the benchmark starts.
#[derive(Debug, Subcommand)]
enum Role {
    /// Child of the `many-subs` scenario: measure one case in this process and print it as
    /// one JSON line.
    ManySubsChild {
        /// Which client and how it subscribes.
        #[arg(long)]
        mode: many_subs::Mode,
        /// The server to connect to.
        #[arg(long)]
        server: String,
        /// Subscriptions to make.
        #[arg(long, default_value_t = 10_000)]
        subs: usize,
    },
    /// Child of the `p4-memory` scenario: open protocol-4 hubs or namespaces holding N
    /// variables each and print the resident memory as one JSON line.
    P4MemoryChild {
        /// A hub (own connection) per unit, or a namespace on one hub.
        #[arg(long)]
        mode: p4_memory::Mode,
        /// The server to connect to.
        #[arg(long)]
        server: String,
        /// Variables each unit holds.
        #[arg(long)]
        variables: usize,
        /// Units added after the first one.
        #[arg(long)]
        units: usize,
    },
    /// Prober of the `failover` scenario: fetch these leader manifest URLs repeatedly and
    /// print each change as a JSON line, until stdin closes.
    ProbeManifest {
        /// A leader manifest URL; repeatable.
        #[arg(long = "url", required = true)]
        urls: Vec<String>,
        /// A CA certificate to trust; repeatable.
        #[arg(long = "ca")]
        ca_files: Vec<PathBuf>,
    },
}

/// Options of the benchmark.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Use this running nats-server instead of starting one (e.g. nats://127.0.0.1:4222).
    #[arg(long)]
    server: Option<String>,
    /// The nats-server binary to start (else KINOPIO_NATS_SERVER, the download cache, PATH,
    /// or a download of the pinned release).
    #[arg(long)]
    binary_path: Option<PathBuf>,
    /// Measured rounds per scenario (each runs kinopio and raw once, alternating which goes
    /// first). Default 5, or 1 with --quick.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: Option<u32>,
    /// A tiny smoke run (a few seconds): few messages, one round, no warm-up round.
    #[arg(long)]
    quick: bool,
    /// Scenarios to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    scenario: Vec<ScenarioId>,
    /// Directory for bench.json and bench.md.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Print the report as one JSON document on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Python interpreter with kinopio-hub 0.1.1 (else KINOPIO_PYTHON, else the repository's
    /// .venv/bin/python).
    #[arg(long)]
    python: Option<PathBuf>,
    /// The Python side of the bench (default: the repository's scripts/bench/python_bench.py).
    #[arg(long)]
    python_script: Option<PathBuf>,
    /// Python interpreter with kinopio-hub 3.0.0, for the protocol-4 scenarios (else
    /// KINOPIO_PYTHON_HUB3, else the repository's .venv-hub3/bin/python).
    #[arg(long)]
    python_hub3: Option<PathBuf>,
    /// Bound of every wait for messages or replies, in seconds (default 60, or 30 with
    /// --quick).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    wait_timeout: Option<u64>,
}

/// A scenario of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScenarioId {
    /// Publish → subscribe throughput, 16 B and 1 KiB.
    Throughput,
    /// Request → serve latency.
    Latency,
    /// Fan-out 1 → 8.
    Fanout,
    /// The Python reference on the throughput and latency scenarios.
    Python,
    /// Hot switch under a steady publish rate.
    HotSwitch,
    /// N subscribed variables (1 000, 10 000, 100 000): subscribe time and memory.
    ManySubs,
    /// Hot switch with N live subscriptions (1 000, 10 000) under a steady publish rate.
    SwitchScale,
    /// Leaf start → manifest ready, against nats-server's own start.
    LeafStart,
    /// `leaf auto` leader kill -9 / SIGTERM → new leader serving (needs root).
    Failover,
    /// Backbone node kill -9 → traffic across again, leaf vs hub on the backbone.
    BackboneFailover,
    /// Protocol 4: set → remote watch latency, kinopio vs Python 3.0.0 (raw async-nats floor).
    P4Latency,
    /// Protocol 4: event throughput publish → subscriber, kinopio vs Python 3.0.0 (raw floor).
    P4Events,
    /// Protocol 4: late-join sync time for 1 000 and 10 000 variables.
    P4LateJoin,
    /// Protocol 4: memory per additional hub / namespace holding N variables.
    P4Memory,
    /// Protocol 4: idle background traffic on `_sys.v4.>` of 3 instances with 1 000 records.
    P4Traffic,
}

const ALL: [ScenarioId; 15] = [
    ScenarioId::Throughput,
    ScenarioId::Latency,
    ScenarioId::Fanout,
    ScenarioId::Python,
    ScenarioId::HotSwitch,
    ScenarioId::ManySubs,
    ScenarioId::SwitchScale,
    ScenarioId::LeafStart,
    ScenarioId::Failover,
    ScenarioId::BackboneFailover,
    ScenarioId::P4Latency,
    ScenarioId::P4Events,
    ScenarioId::P4LateJoin,
    ScenarioId::P4Memory,
    ScenarioId::P4Traffic,
];

impl ScenarioId {
    fn id_and_title(self) -> (&'static str, &'static str) {
        match self {
            ScenarioId::Throughput => (throughput::ID, throughput::TITLE),
            ScenarioId::Latency => (latency::ID, latency::TITLE),
            ScenarioId::Fanout => (fanout::ID, fanout::TITLE),
            ScenarioId::Python => (python::ID, python::TITLE),
            ScenarioId::HotSwitch => (hot_switch::ID, hot_switch::TITLE),
            ScenarioId::ManySubs => (many_subs::ID, many_subs::TITLE),
            ScenarioId::SwitchScale => (switch_scale::ID, switch_scale::TITLE),
            ScenarioId::LeafStart => (leaf_start::ID, leaf_start::TITLE),
            ScenarioId::Failover => (failover::ID, failover::TITLE),
            ScenarioId::BackboneFailover => (backbone_failover::ID, backbone_failover::TITLE),
            ScenarioId::P4Latency => (p4_latency::ID, p4_latency::TITLE),
            ScenarioId::P4Events => (p4_events::ID, p4_events::TITLE),
            ScenarioId::P4LateJoin => (p4_late_join::ID, p4_late_join::TITLE),
            ScenarioId::P4Memory => (p4_memory::ID, p4_memory::TITLE),
            ScenarioId::P4Traffic => (p4_traffic::ID, p4_traffic::TITLE),
        }
    }
}

/// Sizes and counts of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// `--quick`.
    pub quick: bool,
    /// Measured rounds.
    pub rounds: u32,
    /// Unrecorded rounds before them.
    pub warmup_rounds: u32,
    /// Messages per throughput run with 16 B payloads.
    pub throughput_messages_16b: u64,
    /// Messages per throughput run with 1 KiB payloads.
    pub throughput_messages_1kib: u64,
    /// Messages published (and awaited) before the measured throughput batches.
    pub throughput_warmup: u64,
    /// Turns each client takes per throughput or fan-out round (the messages are split
    /// evenly among them).
    pub batches: u64,
    /// Requests per latency run.
    pub latency_requests: u64,
    /// Requests before each measured batch.
    pub latency_warmup: u64,
    /// Subscriber connections in the fan-out.
    pub fanout_subscribers: usize,
    /// Messages per fan-out run.
    pub fanout_messages: u64,
    /// Messages before each measured fan-out batch.
    pub fanout_warmup: u64,
    /// Messages per Python throughput run.
    pub python_messages: u64,
    /// Messages before each measured Python batch.
    pub python_warmup_messages: u64,
    /// Requests per Python latency run.
    pub python_requests: u64,
    /// Requests before each measured Python batch.
    pub python_warmup_requests: u64,
    /// Hot switches per round.
    pub switches: u32,
    /// Publish rate during the hot switches, messages per second.
    pub switch_rate: u32,
    /// Time between hot switches.
    #[serde(serialize_with = "as_millis")]
    pub switch_interval: Duration,
    /// Subscribed variables in `many-subs` (the series over N).
    pub many_subs: Vec<usize>,
    /// Live subscriptions in `switch-scale` (the series over N).
    pub switch_scale_subs: Vec<usize>,
    /// Hot switches per `switch-scale` round.
    pub switch_scale_switches: u32,
    /// Bound of every wait for messages or replies.
    #[serde(serialize_with = "as_millis")]
    pub wait_timeout: Duration,
    /// Measured leaf starts (each: kinopio and a bare nats-server).
    pub leaf_start_rounds: u32,
    /// Unrecorded leaf starts before them.
    pub leaf_start_warmup_rounds: u32,
    /// Failover rounds (each: one kill -9 and one SIGTERM of the leader).
    pub failover_rounds: u32,
    /// `--leader-missing-grace-ms` of the failover nodes.
    #[serde(serialize_with = "as_millis")]
    pub failover_grace: Duration,
    /// Protocol-4 settings.
    pub p4: P4Settings,
}

/// Sizes and counts of the protocol-4 scenarios.
#[derive(Debug, Clone, Serialize)]
pub struct P4Settings {
    /// Measured set → watch samples per client and round.
    pub latency_samples: u64,
    /// Unrecorded samples before them.
    pub latency_warmup: u64,
    /// Events per kinopio / raw throughput run.
    pub events: u64,
    /// Events per Python throughput run (the reference measured 20 000).
    pub python_events: u64,
    /// Python subscription queue (`pending_messages`; the reference's best case was 4 096).
    pub python_pending_messages: u64,
    /// Namespace sizes of the late-join scenario.
    pub late_join: Vec<usize>,
    /// Joins per client and size.
    pub late_join_rounds: u32,
    /// The longest a joiner is waited for (Python may never complete, §11 W10).
    #[serde(serialize_with = "as_millis")]
    pub late_join_bound: Duration,
    /// Variables each hub / namespace holds in the memory scenario (a series: 0 shows the
    /// cost of an empty instance).
    pub memory_variables: Vec<usize>,
    /// Hubs / namespaces added after the first one.
    pub memory_units: usize,
    /// Records the idle instances hold in the traffic scenario.
    pub traffic_records: usize,
    /// How long the spy counts.
    #[serde(serialize_with = "as_millis")]
    pub traffic_window: Duration,
    /// Python's `probe_interval` (its periodic re-sync) in the traffic scenario; `None`: its
    /// default, 15 s.
    pub traffic_probe_interval_s: Option<f64>,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Settings {
    /// The full benchmark, or the tiny smoke run.
    pub fn new(quick: bool, rounds: Option<u32>) -> Settings {
        if quick {
            Settings {
                quick,
                rounds: rounds.unwrap_or(1),
                warmup_rounds: 0,
                throughput_messages_16b: 2_000,
                throughput_messages_1kib: 2_000,
                throughput_warmup: 200,
                batches: 2,
                latency_requests: 200,
                latency_warmup: 20,
                fanout_subscribers: 8,
                fanout_messages: 1_000,
                fanout_warmup: 100,
                python_messages: 500,
                python_warmup_messages: 50,
                python_requests: 100,
                python_warmup_requests: 10,
                switches: 2,
                switch_rate: 500,
                switch_interval: Duration::from_millis(400),
                many_subs: vec![100, 400],
                switch_scale_subs: vec![100, 400],
                switch_scale_switches: 2,
                wait_timeout: Duration::from_secs(30),
                leaf_start_rounds: rounds.unwrap_or(2),
                leaf_start_warmup_rounds: 0,
                failover_rounds: rounds.unwrap_or(1),
                failover_grace: Duration::from_secs(2),
                p4: P4Settings {
                    latency_samples: 200,
                    latency_warmup: 20,
                    events: 2_000,
                    python_events: 1_000,
                    python_pending_messages: 4_096,
                    late_join: vec![1_000],
                    late_join_rounds: 1,
                    late_join_bound: Duration::from_secs(10),
                    memory_variables: vec![0, 100],
                    memory_units: 2,
                    traffic_records: 200,
                    traffic_window: Duration::from_secs(6),
                    traffic_probe_interval_s: Some(2.0),
                },
            }
        } else {
            Settings {
                quick,
                rounds: rounds.unwrap_or(5),
                warmup_rounds: 1,
                throughput_messages_16b: 500_000,
                throughput_messages_1kib: 100_000,
                throughput_warmup: 20_000,
                batches: 10,
                latency_requests: 5_000,
                latency_warmup: 500,
                fanout_subscribers: 8,
                fanout_messages: 100_000,
                fanout_warmup: 5_000,
                python_messages: 20_000,
                python_warmup_messages: 1_000,
                python_requests: 2_000,
                python_warmup_requests: 200,
                switches: 5,
                switch_rate: 1_000,
                switch_interval: Duration::from_secs(1),
                many_subs: vec![1_000, 10_000, 100_000],
                switch_scale_subs: vec![1_000, 10_000],
                switch_scale_switches: 4,
                wait_timeout: Duration::from_secs(60),
                leaf_start_rounds: rounds.unwrap_or(15),
                leaf_start_warmup_rounds: 1,
                failover_rounds: rounds.unwrap_or(3),
                failover_grace: Duration::from_secs(2),
                p4: P4Settings {
                    latency_samples: 2_000,
                    latency_warmup: 200,
                    events: 100_000,
                    python_events: 20_000,
                    python_pending_messages: 4_096,
                    late_join: vec![1_000, 10_000],
                    late_join_rounds: rounds.unwrap_or(3),
                    late_join_bound: Duration::from_secs(30),
                    memory_variables: vec![0, 1_000],
                    memory_units: 8,
                    traffic_records: 1_000,
                    traffic_window: Duration::from_secs(60),
                    traffic_probe_interval_s: None,
                },
            }
        }
    }

    /// Messages per throughput run for a payload size.
    pub fn throughput_messages(&self, size: usize) -> u64 {
        if size <= 16 { self.throughput_messages_16b } else { self.throughput_messages_1kib }
    }

    /// A subscription capacity that holds `messages` whole, so a run can never drop in the
    /// client because the consumer fell behind (at least kinopio's default, 65 536).
    pub fn capacity_for(&self, messages: u64) -> usize {
        usize::try_from(messages).unwrap_or(usize::MAX).max(65_536).next_power_of_two()
    }
}

/// Messages missing from a run and drop events; anything non-zero flags the run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Drops {
    /// Messages that should have arrived.
    pub expected: u64,
    /// Messages that did.
    pub received: u64,
    /// Client slow-consumer events (each means dropped messages).
    pub slow_consumer_events: u64,
    /// New slow consumers the server counted during the run (`None`: unknown).
    pub server_slow_consumers: Option<u64>,
}

impl Drops {
    /// A flag describing the problem, if there is one.
    pub fn flag(&self, what: &str) -> Option<String> {
        let missing = self.expected.saturating_sub(self.received);
        let server = self.server_slow_consumers.unwrap_or(0);
        (missing > 0 || self.slow_consumer_events > 0 || server > 0).then(|| {
            format!(
                "{what}: {missing} of {} messages missing, {} client slow-consumer events, {server} server slow consumers",
                self.expected, self.slow_consumer_events
            )
        })
    }
}

/// What scenarios share: the server, the settings, unique subjects, progress output.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The server.
    pub server: &'a BenchServer,
    /// Sizes and counts.
    pub settings: Settings,
    /// `--binary-path` (for the leaf scenarios when the server is external).
    pub binary_path: Option<PathBuf>,
    next_subject: AtomicU64,
    started: Instant,
}

impl Ctx<'_> {
    /// The server's client URL.
    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// A subject no other run uses: `bench.<prefix>.<n>`.
    pub fn subject(&self, prefix: &str) -> String {
        format!("bench.{prefix}.{}", self.next_subject.fetch_add(1, Ordering::Relaxed))
    }

    /// The bound for a wait starting now.
    pub fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.settings.wait_timeout
    }

    /// A progress line on stderr.
    pub fn progress(&self, line: &str) {
        eprintln!("[bench {:6.1}s] {line}", self.started.elapsed().as_secs_f64());
    }

    /// How many slow consumers the server counted since `before` was read.
    pub async fn server_slow_delta(&self, before: Option<u64>) -> Option<u64> {
        let after = self.server.slow_consumers().await?;
        Some(after.saturating_sub(before?))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(message) = init_tracing(&cli.log) {
        eprintln!("kinopio-bench: {message}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kinopio-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.role {
            Some(role) => run_child(role).await,
            None => run(cli.bench).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

fn init_tracing(filter: &str) -> Result<(), String> {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| format!("--log {filter:?} is not a valid filter ({e}); try `info` or `kinopio=debug`"))?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
    Ok(())
}

/// Runs a child process of a scenario.
async fn run_child(role: Role) -> Result<(), Failure> {
    let fail = |e: BenchError| Failure::new(1, "bench", e.to_string(), false);
    match role {
        Role::ManySubsChild { mode, server, subs } => {
            let result = many_subs::child(mode, &server, subs).await.map_err(fail)?;
            output::line(&serde_json::to_value(&result).unwrap_or_default());
            Ok(())
        }
        Role::P4MemoryChild { mode, server, variables, units } => {
            let result = p4_memory::child(mode, &server, variables, units).await.map_err(fail)?;
            output::line(&serde_json::to_value(&result).unwrap_or_default());
            Ok(())
        }
        Role::ProbeManifest { urls, ca_files } => failover::probe_child(&urls, &ca_files).await.map_err(fail),
    }
}

/// Runs the benchmark.
async fn run(args: BenchArgs) -> Result<(), Failure> {
    let fail = |e: BenchError| Failure::new(1, "bench", e.to_string(), args.json);
    let mut settings = Settings::new(args.quick, args.rounds);
    if let Some(secs) = args.wait_timeout {
        settings.wait_timeout = Duration::from_secs(secs);
    }
    let server = match &args.server {
        Some(url) => BenchServer::external(url).await,
        None => BenchServer::start(args.binary_path.clone()).await,
    }
    .map_err(fail)?;
    let machine = Machine::describe(server.info().clone());
    let ctx = Ctx {
        server: &server,
        settings: settings.clone(),
        binary_path: args.binary_path.clone(),
        next_subject: AtomicU64::new(1),
        started: Instant::now(),
    };
    if cfg!(debug_assertions) {
        ctx.progress("this is a debug build: its numbers mean little (build with --release)");
    }
    ctx.progress(&format!("server {} ({})", server.url(), server.info().version.as_deref().unwrap_or("?")));

    let selected: Vec<ScenarioId> = if args.scenario.is_empty() { ALL.to_vec() } else { args.scenario.clone() };
    let python = python::python_path(args.python.as_deref());
    let script = python::script_path(args.python_script.as_deref());
    let python3 = p4_python::Python3::locate(args.python_hub3.as_deref());
    let mut scenarios: Vec<ScenarioReport> = Vec::new();
    for scenario in ALL.into_iter().filter(|s| selected.contains(s)) {
        let (id, title) = scenario.id_and_title();
        ctx.progress(&format!("scenario {id}: {title}"));
        let started = Instant::now();
        let result = match scenario {
            ScenarioId::Throughput => throughput::run(&ctx).await,
            ScenarioId::Latency => latency::run(&ctx).await,
            ScenarioId::Fanout => fanout::run(&ctx).await,
            ScenarioId::Python => python::run(&ctx, &python, &script).await,
            ScenarioId::HotSwitch => hot_switch::run(&ctx).await,
            ScenarioId::ManySubs => many_subs::run(&ctx).await,
            ScenarioId::SwitchScale => switch_scale::run(&ctx).await,
            ScenarioId::LeafStart => leaf_start::run(&ctx).await,
            ScenarioId::Failover => failover::run(&ctx, args.scenario.contains(&ScenarioId::Failover)).await,
            ScenarioId::BackboneFailover => {
                backbone_failover::run(&ctx, args.scenario.contains(&ScenarioId::BackboneFailover)).await
            }
            ScenarioId::P4Latency => p4_latency::run(&ctx, &python3).await,
            ScenarioId::P4Events => p4_events::run(&ctx, &python3).await,
            ScenarioId::P4LateJoin => p4_late_join::run(&ctx, &python3).await,
            ScenarioId::P4Memory => p4_memory::run(&ctx, &python3).await,
            ScenarioId::P4Traffic => p4_traffic::run(&ctx, &python3).await,
        };
        let mut report = result.unwrap_or_else(|e| {
            ctx.progress(&format!("scenario {id} FAILED: {e}"));
            ScenarioReport::not_run(id, title, ScenarioStatus::Failed { error: e.to_string() })
        });
        report.elapsed_s = started.elapsed().as_secs_f64();
        report.summarize();
        scenarios.push(report);
    }
    server.stop().await;

    let mut figures = Vec::new();
    figures.extend(throughput::figures(&scenarios));
    figures.extend(latency::figures(&scenarios));
    figures.extend(fanout::figures(&scenarios));
    figures.extend(python::figures(&scenarios));
    figures.extend(hot_switch::figures(&scenarios));
    figures.extend(many_subs::figures(&scenarios, &settings.many_subs));
    figures.extend(switch_scale::figures(&scenarios, &settings.switch_scale_subs));
    figures.extend(leaf_start::figures(&scenarios));
    figures.extend(failover::figures(&scenarios, settings.failover_grace));
    figures.extend(backbone_failover::figures(&scenarios));
    figures.extend(p4_latency::figures(&scenarios));
    figures.extend(p4_events::figures(&scenarios));
    figures.extend(p4_late_join::figures(&scenarios, &settings.p4.late_join));
    figures.extend(p4_memory::figures(&scenarios, &settings.p4.memory_variables));
    figures.extend(p4_traffic::figures(&scenarios));

    let mut flags: Vec<String> = Vec::new();
    if cfg!(debug_assertions) {
        flags.push("debug build: numbers are not representative (use a release build)".to_owned());
    }
    if settings.quick {
        flags.push("--quick smoke run: sample sizes are too small for conclusions".to_owned());
    }
    for s in &scenarios {
        flags.extend(s.flags.iter().map(|f| format!("{}: {f}", s.id)));
        if let ScenarioStatus::Failed { error } = &s.status {
            flags.push(format!("{} failed: {error}", s.id));
        }
    }
    let report = Report {
        schema: report::SCHEMA_VERSION,
        generated_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        command: command_line(),
        build: if cfg!(debug_assertions) { "debug" } else { "release" },
        machine,
        settings: serde_json::to_value(&settings).unwrap_or_default(),
        scenarios,
        figures,
        flags,
    };
    let written = report.write_files(&args.out).map_err(fail)?;
    if args.json {
        output::line(&serde_json::to_value(&report).unwrap_or_default());
    } else {
        output::text(&report.text_table());
        for path in &written {
            output::text(&format!("wrote {}", path.display()));
        }
    }
    let failed: Vec<&str> =
        report.scenarios.iter().filter(|s| matches!(s.status, ScenarioStatus::Failed { .. })).map(|s| s.id).collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            1,
            "bench",
            format!("scenarios failed: {} (see the report for the errors)", failed.join(", ")),
            args.json,
        ))
    }
}

fn command_line() -> String {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    args.insert(0, "kinopio-bench".to_owned());
    args.join(" ")
}
