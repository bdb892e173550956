//! Scenario `p4-late-join`: how long a new instance takes to hold every record of a
//! namespace of N variables (1 000 and 10 000), timed from connecting.
//!
//! - kinopio ← kinopio: a kinopio holder (this process) set N variables and flushed; a fresh
//!   `Hub` connects, opens the namespace and is done when `wait_synced` returned **and** all N
//!   records are present (kinopio's sync ends after answers have been quiet for
//!   `sync_quiet`, 300 ms, which is included).
//! - Python ← Python: a kinopio-hub 3.0.0 holder process filled N variables; a joiner hub in
//!   another process is done when it holds all N records. The reference never completes
//!   large namespaces (§11 W10: its 2.4 s window cuts the same tail every round), so the wait
//!   is bounded (`late_join_bound`, 30 s) and an incomplete join is reported as "k of N after
//!   X s"; further Python rounds of that size are then skipped.
//! - kinopio ← Python (cross): a fresh kinopio `Hub` joins the Python holder's namespace.
//!
//! Each joiner leaves before the next one starts, so every join has exactly one responder.

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

    let mut python_done = false;
    for round in 0..p.late_join_rounds {
        for (holder, namespace, prefix) in [("kinopio", &k_name, "join"), ("python", &py_name, "join_from_python")] {
            let j = kinopio_join(ctx, namespace, n, bound).await?;
            ctx.progress(&format!(
                "{ID} {n} round {}: kinopio ← {holder}: all {n} records in {}, synced in {}",
                round + 1,
                Unit::Millis.format(j.data_ms),
                Unit::Millis.format(j.synced_ms)
            ));
            report.push(Client::Kinopio, &metric(&format!("{prefix}_ms"), n), Unit::Millis, j.synced_ms);
            report.push(Client::Kinopio, &metric(&format!("{prefix}_data_ms"), n), Unit::Millis, j.data_ms);
            report.runs.push(json!({"variables": n, "round": round, "joiner": "kinopio", "holder": holder,
                                    "synced_ms": j.synced_ms, "data_ms": j.data_ms, "sync": j.sync}));
        }

        // Python ← Python.
        if python_done {
            continue;
        }
        let (complete, have, ms) = python_join(ctx, &mut py_joiner, &py_name, n, round).await?;
        report.runs.push(json!({"variables": n, "round": round, "joiner": "python", "holder": "python", "complete": complete, "have": have, "ms": ms}));
        report.push(Client::Python3, &metric("have", n), Unit::Count, have as f64);
        if complete {
            ctx.progress(&format!(
                "{ID} {n} round {}: Python ← Python: all {n} records in {}",
                round + 1,
                Unit::Millis.format(ms)
            ));
            report.push(Client::Python3, &metric("join_ms", n), Unit::Millis, ms);
        } else {
            let line = format!("Python ← Python {n}: incomplete: {have} of {n} after {:.1} s", ms / 1e3);
            ctx.progress(&format!("{ID} round {}: {line}", round + 1));
            report.flags.push(format!("{line} (later rounds of this size skipped)"));
            python_done = true;
        }
    }
    py_joiner.exit().await;
    py_holder.exit().await;
    drop(holder_ns);
    holder.close().await;
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
    round: u32,
) -> Result<(bool, u64, f64), BenchError> {
    let bound = ctx.settings.p4.late_join_bound;
    let hub = format!("j{round}");
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
        let label = thousands(n);
        let flags: Vec<String> =
            report.flags.iter().filter(|f| f.starts_with(&format!("Python ← Python {n}:"))).cloned().collect();
        let python_note = if flags.is_empty() {
            "Python ← Python as baseline".to_owned()
        } else {
            "Python ← Python never completed within the bound (§11 W10), so it has no time".to_owned()
        };
        let target = if n >= 10_000 { Target::AtMost { value: TARGET_10K_MS } } else { Target::Report };
        figures.push(
            Figure::compare(
                &format!("p4_late_join@{n}"),
                ID,
                &format!("p4 late join, {label} variables: kinopio ← kinopio, ÷ Python ← Python"),
                report.series(Client::Kinopio, &metric("join_ms", n)),
                report.series(Client::Python3, &metric("join_ms", n)),
                target,
            )
            .with_flags(&flags)
            .with_note(format!("connect → synced with all {label} records; {python_note}")),
        );
        figures.push(
            Figure::compare(
                &format!("p4_late_join_data@{n}"),
                ID,
                &format!("p4 late join, {label} variables, all records present: kinopio ← kinopio, ÷ Python ← Python"),
                report.series(Client::Kinopio, &metric("join_data_ms", n)),
                report.series(Client::Python3, &metric("join_ms", n)),
                Target::Report,
            )
            .with_note(
                "like with like: connect → the last record arrived (Python cannot tell when it is complete; kinopio \
                 knows after its quiet window, the row above)",
            ),
        );
        figures.push(
            Figure::compare(
                &format!("p4_late_join_cross@{n}"),
                ID,
                &format!("p4 late join, {label} variables: kinopio ← Python, ÷ Python ← Python"),
                report.series(Client::Kinopio, &metric("join_from_python_ms", n)),
                report.series(Client::Python3, &metric("join_ms", n)),
                Target::Report,
            )
            .with_note("connect → synced with all records; a kinopio joiner receives a Python holder's whole store"),
        );
    }
    figures
}
