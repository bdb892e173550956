//! Scenario `p4-latency`: protocol-4 set → remote watch latency. Two instances of one
//! namespace, each on its own connection; the first sets a shared variable to 1, 2, ...; each
//! sample is the time from just before the `set` until the second instance's watch sees that
//! value, one write in flight.
//!
//! - kinopio → kinopio: two `Hub`s in this process, `SharedVar::set` and `SharedVar::watch`.
//! - Python → Python: two kinopio-hub 3.0.0 hubs in one Python process
//!   (`scripts/bench/p4_bench.py`, `latency`), `await var.set(i)` and `var.watch(callback)`.
//! - raw async-nats publish → subscriber (the floor: one NATS hop, no protocol-4 work).
//!
//! Per round: kinopio and raw alternate which goes first (A B, B A), Python runs after them.
//! Figures: p50 and p99 per round.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use kinopio::p4::Namespace;
use kinopio::{Hub, HubOptions, SelectionMode};
use serde_json::{Value, json};

use super::Ctx;
use super::clients::{Client, raw_round_trip, round_order};
use super::error::BenchError;
use super::p4_python::Python3;
use super::report::{Figure, ScenarioReport, Target};
use super::stats::Latencies;

/// Scenario id.
pub(crate) const ID: &str = "p4-latency";
/// What it measures.
pub(crate) const TITLE: &str = "protocol 4: set → remote watch latency, one write in flight (kinopio → kinopio, Python 3.0.0 → Python 3.0.0, raw async-nats publish → subscriber as the floor)";
/// The longest one sample may take.
const SAMPLE_LIMIT: Duration = Duration::from_secs(5);

/// A kinopio hub on `url` configured like the other scenarios' (one server, no re-probing).
pub(crate) async fn kinopio_hub(url: &str, name: &str) -> Result<Hub, BenchError> {
    let fail = |detail: String| BenchError::Connect { client: "kinopio", url: url.to_owned(), detail };
    let options = HubOptions::new()
        .servers([url])
        .map_err(|e| fail(e.to_string()))?
        .selection(SelectionMode::Ordered)
        .reprobe_interval(None)
        .name(name)
        .connect_timeout(Duration::from_secs(10));
    Hub::connect(options).await.map_err(|e| fail(e.to_string()))
}

/// Namespace `name` on `hub`, synced.
pub(crate) async fn synced_namespace(hub: &Hub, name: &str, bound: Duration) -> Result<Namespace, BenchError> {
    let ns = hub.namespace(name).map_err(|e| BenchError::client("kinopio", "namespace", e))?;
    ns.wait_synced(bound).await.map_err(|e| BenchError::client("kinopio", "wait_synced", e))?;
    Ok(ns)
}

/// Runs the scenario.
pub(crate) async fn run(ctx: &Ctx<'_>, python: &Python3) -> Result<ScenarioReport, BenchError> {
    if let Some(skipped) = python.skipped(ID, TITLE) {
        return Ok(skipped);
    }
    let s = &ctx.settings;
    let p = &s.p4;
    let mut report = ScenarioReport::new(
        ID,
        TITLE,
        json!({
            "samples": p.latency_samples, "warmup_samples": p.latency_warmup,
            "rounds": s.rounds, "warmup_rounds": s.warmup_rounds,
            "python": python.python, "python_method": "two hubs in one Python process",
        }),
    );
    for round in 0..s.warmup_rounds + s.rounds {
        let mut results = Vec::new();
        for client in round_order(round) {
            let samples = match client {
                Client::Kinopio => kinopio_round(ctx, round).await?,
                _ => raw_round(ctx).await?,
            };
            results.push((client, samples));
        }
        results.push((Client::Python3, python_round(ctx, python, round).await?));
        for (client, samples) in results {
            let Some(l) = Latencies::of(&samples) else { continue };
            super::latency::record_round(ctx, &mut report, ID, (round, s.warmup_rounds), client, &l);
        }
    }
    Ok(report)
}

async fn kinopio_round(ctx: &Ctx<'_>, round: u32) -> Result<Vec<Duration>, BenchError> {
    let p = &ctx.settings.p4;
    let bound = ctx.settings.wait_timeout;
    let (a, b) = (kinopio_hub(ctx.url(), "bench-p4-lat-a").await?, kinopio_hub(ctx.url(), "bench-p4-lat-b").await?);
    let name = format!("bench-p4-lat-{round}");
    let fail = |op: &'static str| move |e: kinopio::p4::Error| BenchError::client("kinopio", op, e);
    let na = synced_namespace(&a, &name, bound).await?;
    let var_a = na.var::<u64>("x").map_err(fail("var"))?;
    // A record to sync, so the second instance's sync ends after its quiet window instead of
    // waiting for a first answer that an empty store never sends.
    var_a.set(&0).map_err(fail("set"))?;
    var_a.confirmed(bound).await.map_err(fail("confirmed"))?;
    let nb = synced_namespace(&b, &name, bound).await?;
    let mut watch = nb.var::<u64>("x").map_err(fail("var"))?.watch();
    let mut samples = Vec::with_capacity(usize::try_from(p.latency_samples).unwrap_or(0));
    for i in 1..=p.latency_warmup + p.latency_samples {
        let started = Instant::now();
        var_a.set(&i).map_err(fail("set"))?;
        let seen = tokio::time::timeout(SAMPLE_LIMIT, async {
            while let Some(update) = watch.next().await {
                if update.ok().and_then(|u| u.value) == Some(i) {
                    return true;
                }
            }
            false
        })
        .await;
        if seen != Ok(true) {
            return Err(BenchError::Timeout(format!(
                "{ID}: kinopio's watch did not see write {i} within {SAMPLE_LIMIT:?}"
            )));
        }
        if i > p.latency_warmup {
            samples.push(started.elapsed());
        }
    }
    drop((na, nb));
    a.close().await;
    b.close().await;
    Ok(samples)
}

async fn raw_round(ctx: &Ctx<'_>) -> Result<Vec<Duration>, BenchError> {
    let p = &ctx.settings.p4;
    let fail = |op: &'static str| move |e: String| BenchError::client("raw async-nats", op, e);
    let connect = || async {
        async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(10))
            .connect(ctx.url())
            .await
            .map_err(|e| fail("connect")(e.to_string()))
    };
    let (publisher, subscriber) = (connect().await?, connect().await?);
    let subject = ctx.subject("p4lat");
    let mut sub = subscriber.subscribe(subject.clone()).await.map_err(|e| fail("subscribe")(e.to_string()))?;
    raw_round_trip(&subscriber).await?;
    let mut samples = Vec::with_capacity(usize::try_from(p.latency_samples).unwrap_or(0));
    for i in 1..=p.latency_warmup + p.latency_samples {
        // About the size of a protocol-4 record of a small integer.
        let payload = Bytes::from(format!(r#"{{"name":"x","version":{{"counter":"{i}"}},"value":{i}}}"#));
        let started = Instant::now();
        publisher.publish(subject.clone(), payload.clone()).await.map_err(|e| fail("publish")(e.to_string()))?;
        match tokio::time::timeout(SAMPLE_LIMIT, sub.next()).await {
            Ok(Some(m)) if m.payload == payload => {}
            _ => {
                return Err(BenchError::Timeout(format!(
                    "{ID}: raw message {i} did not arrive within {SAMPLE_LIMIT:?}"
                )));
            }
        }
        if i > p.latency_warmup {
            samples.push(started.elapsed());
        }
    }
    Ok(samples)
}

async fn python_round(ctx: &Ctx<'_>, python: &Python3, round: u32) -> Result<Vec<Duration>, BenchError> {
    let p = &ctx.settings.p4;
    let mut process = python.spawn(ctx.url()).await?;
    let namespace = format!("bench-p4-lat-py-{round}");
    process.open("a", &namespace, json!({})).await?;
    process.open("b", &namespace, json!({})).await?;
    let limit = ctx.settings.wait_timeout + Duration::from_millis(10 * (p.latency_samples + p.latency_warmup));
    let answer = process
        .cmd(
            json!({"op": "latency", "a": "a", "b": "b", "name": "x", "samples": p.latency_samples,
                   "warmup": p.latency_warmup, "timeout": SAMPLE_LIMIT.as_secs_f64()}),
            limit,
        )
        .await?;
    process.exit().await;
    let samples = answer
        .get("samples_us")
        .and_then(Value::as_array)
        .ok_or_else(|| BenchError::Python("latency: no samples_us".to_owned()))?;
    Ok(samples.iter().filter_map(Value::as_f64).map(|us| Duration::from_secs_f64(us / 1e6)).collect())
}

/// The table rows.
pub(crate) fn figures(all: &[ScenarioReport]) -> Vec<Figure> {
    let Some(report) = all.iter().find(|r| r.id == ID) else { return Vec::new() };
    let mut figures = Vec::new();
    for metric in ["p50", "p99"] {
        let f = Figure::compare(
            &format!("p4_set_watch_{metric}_python"),
            ID,
            &format!("p4 set → remote watch {metric}, ÷ Python 3.0.0"),
            report.series(Client::Kinopio, metric),
            report.series(Client::Python3, metric),
            Target::Report,
        );
        let note = f.ratio.filter(|r| *r > 0.0).map(|r| format!("Python takes {:.1}× kinopio's time", 1.0 / r));
        figures.push(match note {
            Some(n) => f.with_note(n),
            None => f,
        });
        figures.push(
            Figure::compare(
                &format!("p4_set_watch_{metric}_raw"),
                ID,
                &format!("p4 set → remote watch {metric}, ÷ raw publish → subscriber"),
                report.series(Client::Kinopio, metric),
                report.series(Client::Raw, metric),
                Target::Report,
            )
            .with_note("the floor: one NATS hop without records, versions or a store"),
        );
    }
    figures
}
