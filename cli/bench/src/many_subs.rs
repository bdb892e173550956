//! Scenario `many-subs`: N subscribed variables, for N over a series (1 000, 10 000,
//! 100 000), so the report shows how cost grows. Each measurement runs in a fresh child
//! process (`kinopio-bench many-subs-child ...`) so its resident memory is the client's
//! alone: RSS before connecting, after connecting and after subscribing (from
//! `/proc/self/status`), and the total time to subscribe. Both clients use the same
//! subscription capacity (1 024 messages).
//!
//! Modes: kinopio one `subscribe` after another with the default
//! [`Confirmation::Server`](kinopio::Confirmation::Server) (each returns once the server has
//! the interest); kinopio with [`Confirmation::Ordered`](kinopio::Confirmation::Ordered) (each
//! returns once its SUB is queued) followed by one `checkpoint`/`confirm` (the server has them
//! all, no refusal); kinopio 256 at a time (default confirmation); raw async-nats one after
//! another, then one round trip (so the server has them all).

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
pub(crate) const TITLE: &str = "N subscribed variables (a series over N): client RSS, bytes per subscription and total subscribe time (child process each)";
/// Subscriptions made concurrently in the `kinopio-concurrent` mode.
const CONCURRENCY: usize = 256;
/// How long one child may take.
/// Subscription capacity of both clients in the children (like with like).
const CAPACITY: usize = 1024;
/// The subscribe-time target: kinopio ÷ raw at most this.
pub(crate) const SUBSCRIBE_RATIO_TARGET: f64 = 2.0;
/// The memory target: kinopio ÷ raw at most this.
pub(crate) const MEMORY_RATIO_TARGET: f64 = 1.0;

/// What a child measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Mode {
    /// kinopio, one `subscribe` after another.
    Kinopio,
    /// kinopio, 256 `subscribe` calls in flight.
    KinopioConcurrent,
    /// kinopio with `Confirmation::Ordered`, one `subscribe` after another, then one
    /// `checkpoint`/`confirm`.
    KinopioOrdered,
    /// async-nats, one `subscribe` after another, then one round trip.
    Raw,
}

impl Mode {
    /// The name on the command line and in the report.
    fn name(self) -> &'static str {
        match self {
            Mode::Kinopio => "kinopio",
            Mode::KinopioConcurrent => "kinopio-concurrent",
            Mode::KinopioOrdered => "kinopio-ordered",
            Mode::Raw => "raw",
        }
    }

    fn client(self) -> Client {
        match self {
            Mode::Kinopio | Mode::KinopioConcurrent | Mode::KinopioOrdered => Client::Kinopio,
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
    let conn = if mode == Mode::KinopioOrdered {
        Conn::connect_tuned(mode.client(), url, "bench-many-subs", CAPACITY, |o| {
            o.subscribe_confirmation(kinopio::Confirmation::Ordered)
        })
        .await?
    } else {
        Conn::connect(mode.client(), url, "bench-many-subs", CAPACITY).await?
    };
    let rss_connected_kb = rss_kb();
    let last = subject(count.saturating_sub(1));
    let started = Instant::now();
    let (subscribe_ms, verified) = match (&conn, mode) {
        (Conn::Kinopio { hub, .. }, Mode::Kinopio | Mode::KinopioConcurrent | Mode::KinopioOrdered) => {
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
            if mode == Mode::KinopioOrdered {
                let checkpoint = hub.checkpoint().ok_or_else(|| BenchError::Child("no connection".to_owned()))?;
                for i in 0..count {
                    subs.push(subscribe_one(i).await?);
                }
                hub.confirm(&checkpoint).await.map_err(|e| BenchError::client("kinopio", "confirm", e))?;
            } else if mode == Mode::Kinopio {
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

async fn spawn_child(ctx: &Ctx<'_>, mode: Mode, count: usize) -> Result<ChildResult, BenchError> {
    let args = ["many-subs-child", "--mode", mode.name(), "--server", ctx.url(), "--subs", &count.to_string()];
    crate::child::run(&args.map(str::to_owned), mode.name()).await
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
        json!({"subscriptions": s.many_subs, "rounds": s.rounds, "concurrency": CONCURRENCY, "capacity": CAPACITY}),
    );
    for &count in &s.many_subs {
        for round in 0..s.rounds {
            let [first, second] = round_order(round);
            let modes = [first, second].map(|c| if c == Client::Kinopio { Mode::Kinopio } else { Mode::Raw });
            for mode in modes.into_iter().chain([Mode::KinopioOrdered, Mode::KinopioConcurrent]) {
                let r = spawn_child(ctx, mode, count).await?;
                if !r.verified {
                    let mode = mode.name();
                    report.flags.push(format!(
                        "{mode} {count} round {}: a message to the last subscription did not arrive",
                        round + 1
                    ));
                }
                let rss = mb(r.rss_subscribed_kb);
                let growth_kb = r.rss_subscribed_kb.zip(r.rss_connected_kb).map(|(a, b)| a.saturating_sub(b));
                ctx.progress(&format!(
                    "{ID} {count} round {}: {} in {:.0} ms, RSS {}",
                    round + 1,
                    mode.name(),
                    r.subscribe_ms,
                    rss.map_or("unknown".to_owned(), |v| Unit::Megabytes.format(v))
                ));
                let client = mode.client();
                let time_metric = match mode {
                    Mode::KinopioConcurrent => "subscribe_concurrent_ms",
                    Mode::KinopioOrdered => "subscribe_ordered_ms",
                    Mode::Kinopio | Mode::Raw => "subscribe_ms",
                };
                report.push(client, &metric(time_metric, count), Unit::Millis, r.subscribe_ms);
                if matches!(mode, Mode::Kinopio | Mode::Raw) {
                    if let Some(v) = rss {
                        report.push(client, &metric("rss_mb", count), Unit::Megabytes, v);
                    }
                    if let Some(kb) = growth_kb {
                        report.push(client, &metric("rss_growth_mb", count), Unit::Megabytes, kb as f64 * 1024.0 / 1e6);
                        let per_sub = kb as f64 * 1024.0 / count.max(1) as f64;
                        report.push(client, &metric("bytes_per_sub", count), Unit::Bytes, per_sub);
                    }
                }
                report.runs.push(json!({"subscriptions": count, "round": round, "result": r}));
            }
        }
    }
    Ok(report)
}

/// The name of a metric at `count` subscriptions: `subscribe_ms@10000`.
pub(crate) fn metric(name: &str, count: usize) -> String {
    format!("{name}@{count}")
}

/// `10 000` for people.
pub(crate) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// The table rows.
pub(crate) fn figures(all: &[ScenarioReport], counts: &[usize]) -> Vec<Figure> {
    let Some(report) = all.iter().find(|r| r.id == ID) else { return Vec::new() };
    let k = |m: &str, n: usize| report.series(Client::Kinopio, &metric(m, n));
    let r = |m: &str, n: usize| report.series(Client::Raw, &metric(m, n));
    let mut figures = Vec::new();
    for &n in counts {
        let label = thousands(n);
        figures.push(
            Figure::compare(
                &format!("subs_time@{n}"),
                ID,
                &format!("{label} variables subscribed one after another (default: server-confirmed)"),
                k("subscribe_ms", n),
                r("subscribe_ms", n),
                Target::RatioAtMost { value: SUBSCRIBE_RATIO_TARGET },
            )
            .with_flags(&report.flags)
            .with_note(
                "each subscribe waits for a PING/PONG round trip (that is its guarantee); raw makes one round trip at \
                 the end",
            ),
        );
        figures.push(
            Figure::compare(
                &format!("subs_time_ordered@{n}"),
                ID,
                &format!("{label} variables subscribed one after another, Confirmation::Ordered + one confirm"),
                k("subscribe_ordered_ms", n),
                r("subscribe_ms", n),
                Target::RatioAtMost { value: SUBSCRIBE_RATIO_TARGET },
            )
            .with_note("same end state as raw: the server has every subscription, checked once"),
        );
        figures.push(Figure::compare(
            &format!("subs_time_concurrent@{n}"),
            ID,
            &format!("{label} variables subscribed {CONCURRENCY} at a time (default confirmation)"),
            k("subscribe_concurrent_ms", n),
            r("subscribe_ms", n),
            Target::Report,
        ));
        figures.push(
            Figure::compare(
                &format!("subs_bytes@{n}"),
                ID,
                &format!("{label} subscribed variables: client memory per subscription (RSS growth ÷ N)"),
                k("bytes_per_sub", n),
                r("bytes_per_sub", n),
                if n >= 10_000 { Target::RatioAtMost { value: MEMORY_RATIO_TARGET } } else { Target::Report },
            )
            .with_note(format!("same subscription capacity ({CAPACITY}) on both clients")),
        );
        figures.push(Figure::compare(
            &format!("subs_rss@{n}"),
            ID,
            &format!("{label} subscribed variables: client RSS"),
            k("rss_mb", n),
            r("rss_mb", n),
            Target::Report,
        ));
    }
    figures
}
