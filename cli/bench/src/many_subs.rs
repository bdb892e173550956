//! Scenario `many-subs`: 10 000 subscribed variables. Each measurement runs in a fresh
//! child process (`kinopio-bench many-subs-child ...`) so its resident memory is the
//! client's alone: RSS before connecting, after connecting and after subscribing (from
//! `/proc/self/status`), and the total time to subscribe. kinopio subscribes one after
//! another (each `subscribe` returns once the server has the interest) and, separately,
//! 256 at a time; raw async-nats subscribes one after another, then makes one round trip (so the
//! server has them all).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Ctx;
use super::clients::{Client, Conn, raw_round_trip, round_order};
use super::error::BenchError;
use super::machine::{field, kilobytes};
use super::report::{Figure, ScenarioReport, Target, Unit};

/// Scenario id.
pub(crate) const ID: &str = "many-subs";
/// What it measures.
pub(crate) const TITLE: &str = "many subscribed variables: client RSS and total subscribe time (child process each)";
/// Subscriptions made concurrently in the `kinopio-concurrent` mode.
const CONCURRENCY: usize = 256;
/// How long one child may take.
const CHILD_TIMEOUT: Duration = Duration::from_secs(180);
/// The kinopio memory target.
pub(crate) const RSS_TARGET_MB: f64 = 50.0;

/// What a child measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Mode {
    /// kinopio, one `subscribe` after another.
    Kinopio,
    /// kinopio, 256 `subscribe` calls in flight.
    KinopioConcurrent,
    /// async-nats, one `subscribe` after another, then one round trip.
    Raw,
}

impl Mode {
    /// The name on the command line and in the report.
    fn name(self) -> &'static str {
        match self {
            Mode::Kinopio => "kinopio",
            Mode::KinopioConcurrent => "kinopio-concurrent",
            Mode::Raw => "raw",
        }
    }

    fn client(self) -> Client {
        match self {
            Mode::Kinopio | Mode::KinopioConcurrent => Client::Kinopio,
            Mode::Raw => Client::Raw,
        }
    }
}

/// What a child prints (one JSON line).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ChildResult {
    /// The mode.
    pub mode: Mode,
    /// Subscriptions made.
    pub subscriptions: usize,
    /// RSS at start, kB.
    pub rss_start_kb: Option<u64>,
    /// RSS once connected, kB.
    pub rss_connected_kb: Option<u64>,
    /// RSS with every subscription in place, kB.
    pub rss_subscribed_kb: Option<u64>,
    /// Time to make all subscriptions (until the server has them all), ms.
    pub subscribe_ms: f64,
    /// Whether a message published to the last subject arrived on its subscription.
    pub verified: bool,
}

/// The process's resident set size in kB (`VmRSS`), where `/proc` has it.
pub(crate) fn rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    field(&status, "VmRSS").and_then(|v| kilobytes(&v))
}

fn subject(i: usize) -> String {
    format!("bench.subs.v{i}")
}

/// The child side: connects, subscribes `count` variables, prints a [`ChildResult`].
pub(crate) async fn child(mode: Mode, url: &str, count: usize) -> Result<ChildResult, BenchError> {
    let rss_start_kb = rss_kb();
    let conn = Conn::connect(mode.client(), url, "bench-many-subs", 1024).await?;
    let rss_connected_kb = rss_kb();
    let last = subject(count.saturating_sub(1));
    let started = Instant::now();
    let (subscribe_ms, verified) = match (&conn, mode) {
        (Conn::Kinopio { hub, .. }, Mode::Kinopio | Mode::KinopioConcurrent) => {
            let subscribe_one = |i: usize| {
                let hub = hub.clone();
                async move {
                    hub.variable(&subject(i))
                        .map_err(|e| BenchError::client("kinopio", "variable", e))?
                        .subscribe()
                        .await
                        .map_err(|e| BenchError::client("kinopio", "subscribe", e))
                }
            };
            let mut subs = Vec::with_capacity(count);
            if mode == Mode::Kinopio {
                for i in 0..count {
                    subs.push(subscribe_one(i).await?);
                }
            } else {
                let mut indexed: Vec<(usize, kinopio::Subscription)> = futures::stream::iter(0..count)
                    .map(|i| async move { subscribe_one(i).await.map(|s| (i, s)) })
                    .buffer_unordered(CONCURRENCY)
                    .collect::<Vec<_>>()
                    .await
                    .into_iter()
                    .collect::<Result<_, _>>()?;
                indexed.sort_by_key(|(i, _)| *i);
                subs.extend(indexed.into_iter().map(|(_, s)| s));
            }
            let elapsed = started.elapsed();
            let var = hub.variable(&last).map_err(|e| BenchError::client("kinopio", "variable", e))?;
            var.publish_bytes(Bytes::from_static(b"ping"))
                .await
                .map_err(|e| BenchError::client("kinopio", "publish", e))?;
            let verified = match subs.last_mut() {
                Some(sub) => matches!(tokio::time::timeout(Duration::from_secs(5), sub.next()).await, Ok(Some(_))),
                None => false,
            };
            (elapsed, verified)
        }
        (Conn::Raw { client, .. }, _) => {
            let mut subs = Vec::with_capacity(count);
            for i in 0..count {
                subs.push(
                    client
                        .subscribe(subject(i))
                        .await
                        .map_err(|e| BenchError::client("raw async-nats", "subscribe", e))?,
                );
            }
            raw_round_trip(client).await?;
            let elapsed = started.elapsed();
            client
                .publish(last.clone(), Bytes::from_static(b"ping"))
                .await
                .map_err(|e| BenchError::client("raw async-nats", "publish", e))?;
            let verified = match subs.last_mut() {
                Some(sub) => matches!(tokio::time::timeout(Duration::from_secs(5), sub.next()).await, Ok(Some(_))),
                None => false,
            };
            (elapsed, verified)
        }
        _ => return Err(BenchError::Child(format!("mode {mode:?} does not match the connection"))),
    };
    // Measure after the verification so every lazily allocated buffer is in.
    let rss_subscribed_kb = rss_kb();
    let result = ChildResult {
        mode,
        subscriptions: count,
        rss_start_kb,
        rss_connected_kb,
        rss_subscribed_kb,
        subscribe_ms: subscribe_ms.as_secs_f64() * 1e3,
        verified,
    };
    conn.close().await;
    Ok(result)
}

async fn spawn_child(ctx: &Ctx<'_>, mode: Mode) -> Result<ChildResult, BenchError> {
    let exe = std::env::current_exe().map_err(|source| BenchError::Io {
        what: "find the running executable",
        path: PathBuf::from("/proc/self/exe"),
        source,
    })?;
    let mode_arg = mode.name();
    let mut command = tokio::process::Command::new(&exe);
    command
        .args(["many-subs-child", "--mode", mode_arg, "--server", ctx.url()])
        .arg("--subs")
        .arg(ctx.settings.many_subs.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(CHILD_TIMEOUT, command.output())
        .await
        .map_err(|_| BenchError::Child(format!("{mode_arg} did not finish within {CHILD_TIMEOUT:?}")))?
        .map_err(|source| BenchError::Io { what: "run", path: exe.clone(), source })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(BenchError::Child(format!(
            "{mode_arg} exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_default();
    serde_json::from_str(line).map_err(|e| BenchError::Child(format!("{mode_arg} printed no result ({e}): {stdout:?}")))
}

fn mb(kb: Option<u64>) -> Option<f64> {
    kb.map(|kb| kb as f64 * 1024.0 / 1e6)
}

/// Runs the scenario.
pub(crate) async fn run(ctx: &Ctx<'_>) -> Result<ScenarioReport, BenchError> {
    let s = &ctx.settings;
    let mut report = ScenarioReport::new(
        ID,
        TITLE,
        json!({"subscriptions": s.many_subs, "rounds": s.rounds, "concurrency": CONCURRENCY}),
    );
    for round in 0..s.rounds {
        let [first, second] = round_order(round);
        let modes = [first, second].map(|c| if c == Client::Kinopio { Mode::Kinopio } else { Mode::Raw });
        for mode in modes.into_iter().chain([Mode::KinopioConcurrent]) {
            let r = spawn_child(ctx, mode).await?;
            if !r.verified {
                let mode = mode.name();
                report
                    .flags
                    .push(format!("{mode} round {}: a message to the last subscription did not arrive", round + 1));
            }
            let rss = mb(r.rss_subscribed_kb);
            let growth = mb(r.rss_subscribed_kb.zip(r.rss_connected_kb).map(|(a, b)| a.saturating_sub(b)));
            ctx.progress(&format!(
                "{ID} round {}: {} {} subscriptions in {:.0} ms, RSS {}",
                round + 1,
                mode.name(),
                r.subscriptions,
                r.subscribe_ms,
                rss.map_or("unknown".to_owned(), |v| Unit::Megabytes.format(v))
            ));
            let client = mode.client();
            let time_metric = if mode == Mode::KinopioConcurrent { "subscribe_concurrent_ms" } else { "subscribe_ms" };
            report.push(client, time_metric, Unit::Millis, r.subscribe_ms);
            if mode != Mode::KinopioConcurrent {
                if let Some(v) = rss {
                    report.push(client, "rss_mb", Unit::Megabytes, v);
                }
                if let Some(v) = growth {
                    report.push(client, "rss_growth_mb", Unit::Megabytes, v);
                }
            }
            report.runs.push(json!({"round": round, "result": r}));
        }
    }
    Ok(report)
}

/// The table rows.
pub(crate) fn figures(all: &[ScenarioReport], count: usize) -> Vec<Figure> {
    let Some(report) = all.iter().find(|r| r.id == ID) else { return Vec::new() };
    let k = |m: &str| report.series(Client::Kinopio, m);
    let r = |m: &str| report.series(Client::Raw, m);
    let mut rss = Figure::compare(
        "subs_rss",
        ID,
        &format!("{count} subscribed variables: client RSS"),
        k("rss_mb"),
        r("rss_mb"),
        Target::AtMost { value: RSS_TARGET_MB },
    )
    .with_flags(&report.flags);
    if let Some(raw) = rss.baseline.as_ref().map(|b| b.summary.median).filter(|m| *m > RSS_TARGET_MB) {
        rss = rss.with_note(format!(
            "raw async-nats alone needs {} (each async-nats subscription is a tokio channel whose first block \
             holds 32 messages)",
            Unit::Megabytes.format(raw)
        ));
    }
    vec![
        rss,
        Figure::compare(
            "subs_rss_growth",
            ID,
            &format!("{count} subscribed variables: RSS growth after connecting"),
            k("rss_growth_mb"),
            r("rss_growth_mb"),
            Target::Report,
        ),
        Figure::compare(
            "subs_time",
            ID,
            &format!("{count} subscribed variables: subscribe time, one after another"),
            k("subscribe_ms"),
            r("subscribe_ms"),
            Target::Report,
        )
        .with_note("kinopio confirms each subscription with a round trip; raw makes one round trip at the end"),
        Figure::compare(
            "subs_time_concurrent",
            ID,
            &format!("{count} subscribed variables: subscribe time, kinopio {CONCURRENCY} at a time"),
            k("subscribe_concurrent_ms"),
            r("subscribe_ms"),
            Target::Report,
        ),
    ]
}
