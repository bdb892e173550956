//! Scenario `p4-late-join`: how long a new instance takes to hold every record of a
//! namespace of N variables (1 000 and 10 000), timed from connecting.
//!
//! - kinopio ← kinopio: a kinopio holder (this process) set N variables and flushed; a fresh
//!   `Hub` connects, opens the namespace and is done when `wait_synced` returned **and** all N
//!   records are present (kinopio's sync ends after answers have been quiet for
//!   `sync_quiet`, 300 ms, which is included).
//!   A second figure times the same join until the last record arrived (what Python's figure
//!   measures, since Python cannot tell when it is complete).
//! - Python ← Python: a kinopio-hub 3.0.0 holder process filled N variables; a joiner hub in
//!   another process is done when it holds all N records (polled every 2 ms). The reference
//!   did not complete a large namespace with two responders (§11 W10: its 2.4 s window cuts
//!   the same tail every round), so the wait is bounded (`late_join_bound`, 30 s) and an
//!   incomplete join is reported as "k of N after X s"; further Python rounds of that size
//!   and holder count are then skipped.
//! - kinopio ← Python (cross): a fresh kinopio `Hub` joins the Python holder's namespace.
//!
//! Every size runs with one holder of each kind, then again with two (the reference's W10
//! setup: the joiner receives every record twice; the second Python holder rewrites every
//! variable so both hold the same N records). Each joiner leaves before the next one starts.

use std::time::{Duration, Instant};

use futures::StreamExt;
use kinopio::p4::Namespace;
use serde_json::{Value, json};

use super::Ctx;
use super::clients::Client;
use super::error::BenchError;
use super::many_subs::{metric, thousands};
use super::p4_latency::{kinopio_hub, synced_namespace};
use super::p4_python::{PyProcess, Python3, f64_of};
use super::report::{Figure, ScenarioReport, Target, Unit};

/// Scenario id.
pub(crate) const ID: &str = "p4-late-join";
/// What it measures.
pub(crate) const TITLE: &str = "protocol 4: late-join sync time (connect → holds every record) for N variables, kinopio ← kinopio, Python 3.0.0 ← Python 3.0.0, kinopio ← Python";
/// The target for 10 000 variables (kinopio ← kinopio), ms.
pub(crate) const TARGET_10K_MS: f64 = 2_000.0;

/// Runs the scenario.
pub(crate) async fn run(ctx: &Ctx<'_>, python: &Python3) -> Result<ScenarioReport, BenchError> {
    if let Some(skipped) = python.skipped(ID, TITLE) {
        return Ok(skipped);
    }
    let p = &ctx.settings.p4;
    let mut report = ScenarioReport::new(
        ID,
        TITLE,
        json!({
            "variables": p.late_join, "rounds": p.late_join_rounds, "bound_ms": p.late_join_bound.as_millis() as u64,
            "python_options": "defaults (peer_timeout 2.4 s, probe_interval 15 s)",
        }),
    );
    for &n in &p.late_join {
        measure_size(ctx, python, n, &mut report).await?;
    }
    Ok(report)
}

async fn measure_size(
    ctx: &Ctx<'_>,
    python: &Python3,
    n: usize,
    report: &mut ScenarioReport,
) -> Result<(), BenchError> {
    let p = &ctx.settings.p4;
    let bound = p.late_join_bound;
    let fail = |op: &'static str| move |e: kinopio::p4::Error| BenchError::client("kinopio", op, e);

    // The holders.
    let k_name = format!("bench-p4-join-k-{n}");
    let holder = kinopio_hub(ctx.url(), "bench-p4-holder").await?;
    let holder_ns = synced_namespace(&holder, &k_name, bound).await?;
    let filling = Instant::now();
    for i in 0..n {
        holder_ns.var::<usize>(&format!("v{i}")).map_err(fail("var"))?.set(&i).map_err(fail("set"))?;
    }
    holder_ns.flush(ctx.settings.wait_timeout).await.map_err(fail("flush"))?;
    ctx.progress(&format!("{ID} {n}: kinopio holder filled in {:.0} ms", filling.elapsed().as_secs_f64() * 1e3));
    let py_name = format!("bench-p4-join-py-{n}");
    let mut py_holder = python.spawn(ctx.url()).await?;
    py_holder.open("holder", &py_name, json!({})).await?;
    let fill_ms = py_holder.fill("holder", "v", n).await?;
    ctx.progress(&format!("{ID} {n}: Python holder filled in {fill_ms:.0} ms"));
    let mut py_joiner = python.spawn(ctx.url()).await?;
    let sizes = Sizes { n, k_name: &k_name, py_name: &py_name };
    join_rounds(ctx, &sizes, 1, &mut py_joiner, report).await?;

    // A second holder of each kind, as the reference measured W10 (two responders): the
    // joiner then receives every record twice.
    let holder2 = kinopio_hub(ctx.url(), "bench-p4-holder-2").await?;
    let holder2_ns = synced_namespace(&holder2, &k_name, bound).await?;
    let have = holder2_ns.variables().len();
    if have < n {
        return Err(BenchError::Timeout(format!("{ID}: the second kinopio holder synced {have} of {n} records")));
    }
    let mut py_holder2 = python.spawn(ctx.url()).await?;
    py_holder2.open("holder", &py_name, json!({})).await?;
    // Whatever its own join got, it then writes every variable (newer versions that reach the
    // first holder too), so both hold the same N records.
    py_holder2.fill("holder", "v", n).await?;
    let (have1, have2) = (py_holder.count("holder").await?, py_holder2.count("holder").await?);
    if have1 < n as u64 || have2 < n as u64 {
        return Err(BenchError::Python(format!("the Python holders hold {have1} and {have2} of {n} records")));
    }
    join_rounds(ctx, &sizes, 2, &mut py_joiner, report).await?;
    py_holder2.exit().await;
    drop(holder2_ns);
    holder2.close().await;
    py_joiner.exit().await;
    py_holder.exit().await;
    drop(holder_ns);
    holder.close().await;
    Ok(())
}

/// The namespaces of one size.
struct Sizes<'a> {
    n: usize,
    k_name: &'a str,
    py_name: &'a str,
}

/// The metric name of `what` with `holders` holders: `join_ms`, `join_2h_ms`, ...
pub(crate) fn joined(what: &str, holders: usize, n: usize) -> String {
    let name = match (holders > 1, what.split_once('_')) {
        (false, _) => what.to_owned(),
        (true, Some((head, tail))) => format!("{head}_{holders}h_{tail}"),
        (true, None) => format!("{what}_{holders}h"),
    };
    metric(&name, n)
}

async fn join_rounds(
    ctx: &Ctx<'_>,
    sizes: &Sizes<'_>,
    holders: usize,
    py_joiner: &mut PyProcess,
    report: &mut ScenarioReport,
) -> Result<(), BenchError> {
    let p = &ctx.settings.p4;
    let (n, bound) = (sizes.n, p.late_join_bound);
    let mut python_done = false;
    for round in 0..p.late_join_rounds {
        for (holder, namespace, what) in
            [("kinopio", sizes.k_name, "join"), ("python", sizes.py_name, "join_from_python")]
        {
            let j = kinopio_join(ctx, namespace, n, bound).await?;
            ctx.progress(&format!(
                "{ID} {n} × {holders} holder(s) round {}: kinopio ← {holder}: all {n} records in {}, synced in {}",
                round + 1,
                Unit::Millis.format(j.data_ms),
                Unit::Millis.format(j.synced_ms)
            ));
            report.push(Client::Kinopio, &joined(&format!("{what}_ms"), holders, n), Unit::Millis, j.synced_ms);
            report.push(Client::Kinopio, &joined(&format!("{what}_data_ms"), holders, n), Unit::Millis, j.data_ms);
            report.runs.push(json!({"variables": n, "holders": holders, "round": round, "joiner": "kinopio",
                                    "holder": holder, "synced_ms": j.synced_ms, "data_ms": j.data_ms, "sync": j.sync}));
        }

        // Python ← Python.
        if python_done {
            continue;
        }
        let hub = format!("j{holders}-{round}");
        let (complete, have, ms) = python_join(ctx, py_joiner, sizes.py_name, n, &hub).await?;
        report.runs.push(json!({"variables": n, "holders": holders, "round": round, "joiner": "python",
                                "holder": "python", "complete": complete, "have": have, "ms": ms}));
        report.push(Client::Python3, &joined("have", holders, n), Unit::Count, have as f64);
        if complete {
            ctx.progress(&format!(
                "{ID} {n} × {holders} holder(s) round {}: Python ← Python: all {n} records in {}",
                round + 1,
                Unit::Millis.format(ms)
            ));
            report.push(Client::Python3, &joined("join_ms", holders, n), Unit::Millis, ms);
        } else {
            let line =
                format!("Python ← {holders} Python holder(s), {n}: incomplete: {have} of {n} after {:.1} s", ms / 1e3);
            ctx.progress(&format!("{ID} round {}: {line}", round + 1));
            report.flags.push(format!("{line} (later rounds of this size skipped)"));
            python_done = true;
        }
    }
    Ok(())
}

/// A fresh kinopio hub joins `name`. Returns the milliseconds until it synced (`wait_synced`
/// returned) and holds all `n` records, the milliseconds until the last record `v{n-1}`
/// arrived (the holder answers in store order, one connection: the data is complete then,
/// before the quiet window tells kinopio so), and its sync report.
async fn kinopio_join(ctx: &Ctx<'_>, name: &str, n: usize, bound: Duration) -> Result<Joined, BenchError> {
    let started = Instant::now();
    let hub = kinopio_hub(ctx.url(), "bench-p4-joiner").await?;
    let ns: Namespace = hub.namespace(name).map_err(|e| BenchError::client("kinopio", "namespace", e))?;
    let mut last = ns
        .var::<usize>(&format!("v{}", n.saturating_sub(1)))
        .map_err(|e| BenchError::client("kinopio", "var", e))?
        .watch();
    let data = async {
        last.next().await;
        started.elapsed()
    };
    let (data, sync) = tokio::join!(tokio::time::timeout(bound, data), ns.wait_synced(bound));
    let sync = sync.map_err(|e| BenchError::client("kinopio", "wait_synced", e))?;
    let mut have = ns.variables().len();
    while have < n && started.elapsed() < bound {
        tokio::time::sleep(Duration::from_millis(5)).await;
        have = ns.variables().len();
    }
    let synced_ms = started.elapsed().as_secs_f64() * 1e3;
    let sync = json!({"end": format!("{:?}", sync.end), "answers": sync.answers, "stored": sync.stored,
                      "elapsed_ms": sync.elapsed.as_secs_f64() * 1e3});
    drop(ns);
    hub.close().await;
    match data {
        Ok(data) if have >= n => Ok(Joined { synced_ms, data_ms: data.as_secs_f64() * 1e3, sync }),
        _ => Err(BenchError::Timeout(format!(
            "{ID}: the kinopio joiner of {name} holds {have} of {n} records after {:.1} s (sync {sync})",
            synced_ms / 1e3
        ))),
    }
}

/// A kinopio join's times.
struct Joined {
    synced_ms: f64,
    data_ms: f64,
    sync: Value,
}

/// A Python hub (in `process`) joins `name`; returns (complete, records held, ms).
async fn python_join(
    ctx: &Ctx<'_>,
    process: &mut PyProcess,
    name: &str,
    n: usize,
    hub: &str,
) -> Result<(bool, u64, f64), BenchError> {
    let bound = ctx.settings.p4.late_join_bound;
    let answer = process
        .cmd(
            json!({"op": "join", "hub": hub, "namespace": name, "count": n, "timeout": bound.as_secs_f64()}),
            bound + Duration::from_secs(30),
        )
        .await?;
    process.cmd(json!({"op": "close", "hub": hub}), Duration::from_secs(30)).await?;
    let complete = answer.get("complete").and_then(Value::as_bool).unwrap_or(false);
    let have = answer.get("have").and_then(Value::as_u64).unwrap_or(0);
    Ok((complete, have, f64_of(&answer, "elapsed_ms")?))
}

/// The table rows.
pub(crate) fn figures(all: &[ScenarioReport], sizes: &[usize]) -> Vec<Figure> {
    let Some(report) = all.iter().find(|r| r.id == ID) else { return Vec::new() };
    let mut figures = Vec::new();
    for &n in sizes {
        for holders in [1, 2] {
            figures.extend(size_figures(report, n, holders));
        }
    }
    figures
}

fn size_figures(report: &ScenarioReport, n: usize, holders: usize) -> Vec<Figure> {
    let label = thousands(n);
    let (by, suffix) = if holders > 1 { (" (2 holders)", format!("_{holders}h")) } else { ("", String::new()) };
    let k = |what: &str| report.series(Client::Kinopio, &joined(what, holders, n));
    let py = report.series(Client::Python3, &joined("join_ms", holders, n));
    let flags: Vec<String> = report
        .flags
        .iter()
        .filter(|f| f.starts_with(&format!("Python ← {holders} Python holder(s), {n}:")))
        .cloned()
        .collect();
    let python_note = if flags.is_empty() {
        "Python ← Python as baseline"
    } else {
        "Python ← Python did not complete within the bound (§11 W10), so it has no time"
    };
    let target = if n >= 10_000 { Target::AtMost { value: TARGET_10K_MS } } else { Target::Report };
    vec![
        Figure::compare(
            &format!("p4_late_join{suffix}@{n}"),
            ID,
            &format!("p4 late join{by}, {label} variables: kinopio ← kinopio synced, ÷ Python ← Python"),
            k("join_ms"),
            py,
            target,
        )
        .with_flags(&flags)
        .with_note(format!(
            "connect → wait_synced returned with all {label} records (includes kinopio's 300 ms quiet window); \
             {python_note}"
        )),
        Figure::compare(
            &format!("p4_late_join_data{suffix}@{n}"),
            ID,
            &format!("p4 late join{by}, {label} variables: kinopio ← kinopio all records present, ÷ Python ← Python"),
            k("join_data_ms"),
            py,
            Target::Report,
        )
        .with_flags(&flags)
        .with_note("like with like: connect → the last record arrived (Python cannot tell when it is complete)"),
        Figure::compare(
            &format!("p4_late_join_cross{suffix}@{n}"),
            ID,
            &format!("p4 late join{by}, {label} variables: kinopio ← Python synced, ÷ Python ← Python"),
            k("join_from_python_ms"),
            py,
            Target::Report,
        )
        .with_flags(&flags)
        .with_note(format!("connect → wait_synced returned with all records from Python holders; {python_note}")),
    ]
}
