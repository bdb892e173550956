//! Scenario `p4-memory`: resident memory per additional protocol-4 instance holding N
//! variables, in a process of its own (like `many-subs`).
//!
//! Each process first opens one instance and sets its N variables (so the runtime, the
//! interpreter and every lazily allocated buffer are in), reads its RSS, then opens K more
//! instances, each in its own namespace setting its own N variables, and reads its RSS
//! again: the figure is the growth ÷ K.
//!
//! - kinopio, one `Hub` (own connection) per instance: `kinopio-bench p4-memory-child
//!   --mode hub`.
//! - kinopio, one namespace per instance on a single `Hub`: `--mode namespace`.
//! - Python 3.0.0: one `KinopioHub` (own connection) per instance in one interpreter
//!   (`scripts/bench/p4_bench.py`).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Ctx;
use super::clients::Client;
use super::error::BenchError;
use super::many_subs::{metric, rss_kb, thousands};
use super::p4_latency::{kinopio_hub, synced_namespace};
use super::p4_python::Python3;
use super::report::{Figure, ScenarioReport, Target, Unit};

/// Scenario id.
pub(crate) const ID: &str = "p4-memory";
/// What it measures.
pub(crate) const TITLE: &str =
    "protocol 4: RSS growth per additional instance holding N variables (child process each), kinopio vs Python 3.0.0";
/// What one instance is in the kinopio child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Mode {
    /// A `Hub` (its own connection) with one namespace.
    Hub,
    /// A namespace on the one `Hub`.
    Namespace,
}

/// What a child prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ChildResult {
    /// The mode.
    pub mode: Mode,
    /// Variables per instance.
    pub variables: usize,
    /// Instances added after the first.
    pub units: usize,
    /// RSS at start, kB.
    pub rss_start_kb: Option<u64>,
    /// RSS with the first instance filled, kB.
    pub rss_first_kb: Option<u64>,
    /// RSS with every instance filled, kB.
    pub rss_all_kb: Option<u64>,
}

/// The child: opens 1 + `units` instances of `variables` variables each.
pub(crate) async fn child(mode: Mode, url: &str, variables: usize, units: usize) -> Result<ChildResult, BenchError> {
    let rss_start_kb = rss_kb();
    let bound = Duration::from_secs(60);
    let fail = |op: &'static str| move |e: kinopio::p4::Error| BenchError::client("kinopio", op, e);
    let mut hubs = Vec::new();
    let mut namespaces = Vec::new();
    let mut rss_first_kb = None;
    for unit in 0..=units {
        if mode == Mode::Hub || hubs.is_empty() {
            hubs.push(kinopio_hub(url, &format!("bench-p4-mem-{unit}")).await?);
        }
        let Some(hub) = hubs.last() else { continue };
        let ns = synced_namespace(hub, &format!("bench-p4-mem-{}-{unit}", std::process::id()), bound).await?;
        for i in 0..variables {
            ns.var::<usize>(&format!("v{i}")).map_err(fail("var"))?.set(&i).map_err(fail("set"))?;
        }
        ns.flush(bound).await.map_err(fail("flush"))?;
        namespaces.push(ns);
        if unit == 0 {
            rss_first_kb = rss_kb();
        }
    }
    let rss_all_kb = rss_kb();
    drop(namespaces);
    for hub in hubs {
        hub.close().await;
    }
    Ok(ChildResult { mode, variables, units, rss_start_kb, rss_first_kb, rss_all_kb })
}

async fn spawn_child(ctx: &Ctx<'_>, mode: Mode, variables: usize, units: usize) -> Result<ChildResult, BenchError> {
    let mode_arg = match mode {
        Mode::Hub => "hub",
        Mode::Namespace => "namespace",
    };
    let (variables, units) = (variables.to_string(), units.to_string());
    let args =
        ["p4-memory-child", "--mode", mode_arg, "--server", ctx.url(), "--variables", &variables, "--units", &units];
    crate::child::run(&args.map(str::to_owned), &format!("p4-memory {mode_arg}")).await
}

/// kB → MB (10^6 bytes).
fn mb(kb: u64) -> f64 {
    kb as f64 * 1024.0 / 1e6
}

/// Runs the scenario.
pub(crate) async fn run(ctx: &Ctx<'_>, python: &Python3) -> Result<ScenarioReport, BenchError> {
    if let Some(skipped) = python.skipped(ID, TITLE) {
        return Ok(skipped);
    }
    let s = &ctx.settings;
    let k = s.p4.memory_units;
    let mut report = ScenarioReport::new(
        ID,
        TITLE,
        json!({"variables": s.p4.memory_variables, "added_instances": k, "rounds": s.rounds,
               "method": "RSS after 1 + K instances minus RSS after the first, ÷ K; a process per measurement"}),
    );
    for &n in &s.p4.memory_variables {
        for round in 0..s.rounds {
            measure(ctx, python, n, round, &mut report).await?;
        }
    }
    Ok(report)
}

async fn measure(
    ctx: &Ctx<'_>,
    python: &Python3,
    n: usize,
    round: u32,
    report: &mut ScenarioReport,
) -> Result<(), BenchError> {
    let k = ctx.settings.p4.memory_units;
    for mode in [Mode::Hub, Mode::Namespace] {
        let r = spawn_child(ctx, mode, n, k).await?;
        let (Some(first), Some(all)) = (r.rss_first_kb, r.rss_all_kb) else {
            report.flags.push("no /proc/self/status: memory unknown".to_owned());
            continue;
        };
        let per = mb(all.saturating_sub(first)) / k.max(1) as f64;
        let name = match mode {
            Mode::Hub => "mb_per_hub",
            Mode::Namespace => "mb_per_namespace",
        };
        ctx.progress(&format!(
            "{ID} {n} variables round {}: kinopio {name} {} (RSS {} → {})",
            round + 1,
            Unit::Megabytes.format(per),
            Unit::Megabytes.format(mb(first)),
            Unit::Megabytes.format(mb(all))
        ));
        report.push(Client::Kinopio, &metric(name, n), Unit::Megabytes, per);
        report.push(Client::Kinopio, &metric(&format!("{name}_rss_first"), n), Unit::Megabytes, mb(first));
        report.runs.push(json!({"variables": n, "round": round, "client": "kinopio", "result": r}));
    }
    let mut process = python.spawn(ctx.url()).await?;
    let start = process.rss_kb().await?;
    let mut first = 0;
    for unit in 0..=k {
        let hub = format!("h{unit}");
        process.open(&hub, &format!("bench-p4-mem-py-{n}-{round}-{unit}"), json!({})).await?;
        if n > 0 {
            process.fill(&hub, "v", n).await?;
        }
        if unit == 0 {
            first = process.rss_kb().await?;
        }
    }
    let all = process.rss_kb().await?;
    process.exit().await;
    let per = mb(all.saturating_sub(first)) / k.max(1) as f64;
    ctx.progress(&format!(
        "{ID} {n} variables round {}: Python mb_per_hub {} (RSS {} → {})",
        round + 1,
        Unit::Megabytes.format(per),
        Unit::Megabytes.format(mb(first)),
        Unit::Megabytes.format(mb(all))
    ));
    report.push(Client::Python3, &metric("mb_per_hub", n), Unit::Megabytes, per);
    report.push(Client::Python3, &metric("mb_per_hub_rss_first", n), Unit::Megabytes, mb(first));
    report.runs.push(json!({"variables": n, "round": round, "client": "python3", "units": k,
                            "rss_start_kb": start, "rss_first_kb": first, "rss_all_kb": all}));
    Ok(())
}

/// The table rows.
pub(crate) fn figures(all: &[ScenarioReport], sizes: &[usize]) -> Vec<Figure> {
    let Some(report) = all.iter().find(|r| r.id == ID) else { return Vec::new() };
    let mut figures = Vec::new();
    for &n in sizes {
        let label = thousands(n);
        let py = report.series(Client::Python3, &metric("mb_per_hub", n));
        figures.push(
            Figure::compare(
                &format!("p4_memory_per_hub@{n}"),
                ID,
                &format!("p4 memory per additional hub holding {label} variables, ÷ Python 3.0.0"),
                report.series(Client::Kinopio, &metric("mb_per_hub", n)),
                py,
                Target::Report,
            )
            .with_note("each hub with its own connection; RSS growth ÷ added hubs"),
        );
        figures.push(
            Figure::compare(
                &format!("p4_memory_per_namespace@{n}"),
                ID,
                &format!(
                    "p4 memory per additional namespace on one hub holding {label} variables, ÷ Python 3.0.0 per hub"
                ),
                report.series(Client::Kinopio, &metric("mb_per_namespace", n)),
                py,
                Target::Report,
            )
            .with_note("Python has one namespace per hub (and connection); kinopio shares the connection"),
        );
    }
    if let Some(&n) = sizes.last() {
        figures.push(
            Figure::compare(
                "p4_memory_first",
                ID,
                &format!("p4 process RSS with one hub holding {} variables, ÷ Python 3.0.0", thousands(n)),
                report.series(Client::Kinopio, &metric("mb_per_hub_rss_first", n)),
                report.series(Client::Python3, &metric("mb_per_hub_rss_first", n)),
                Target::Report,
            )
            .with_note("the whole process: kinopio-bench binary vs the Python interpreter"),
        );
    }
    figures
}
