//! Scenario `p4-events`: protocol-4 event throughput, publish → subscriber on another
//! connection. The figure is events delivered per second at the subscriber, from the first
//! publish until the last delivery, and the share of sent events that arrived.
//!
//! - kinopio → kinopio: a publisher `Hub` and a subscriber `Hub` in this process,
//!   `Namespace::publish({"seq": i})` awaited one after another at full speed →
//!   `Namespace::subscribe` with its default queue sizes (65,536 messages / 64 MiB), read as
//!   fast as they come.
//! - Python → Python: a publisher hub and a subscriber hub of kinopio-hub 3.0.0 in **two
//!   processes** (each has a core's worth of event loop, Python's best case). The publisher
//!   awaits each `pub({"seq": i})` at full speed, as the reference measured it (§11 W14); the
//!   subscriber subscribes with `pending_messages=4096` (the reference's best setting; its
//!   default of 256 delivered 1,536 of 20,000). Python drops bursts: its delivery ratio is
//!   reported as measured, and its rate counts only what arrived. It is not paced (pacing to
//!   2,000 msg/s delivers everything but caps the rate at the pace). A second Python series
//!   uses its default queue (256) to show W14 as it is out of the box; the ≥ 20× target is
//!   judged against the 4096 series.
//! - raw async-nats: the same payloads on a subject of the same shape
//!   (`_msg.v1.<hex(ns)>.<hex(topic)>`), publish → `Subscriber` — the floor.
//!
//! The end of a run: every sent event arrived, or none arrived for [`QUIET`] after the
//! publisher finished (bounded by `--wait-timeout`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};

use super::Ctx;
use super::clients::{AbortOnDrop, Client, raw_round_trip, round_order};
use super::error::BenchError;
use super::p4_latency::kinopio_hub;
use super::p4_python::{Python3, hex};
use super::report::{Figure, ScenarioReport, Target, Unit};

/// Scenario id.
pub(crate) const ID: &str = "p4-events";
/// What it measures.
pub(crate) const TITLE: &str = "protocol 4: event throughput publish → subscriber (kinopio → kinopio, Python 3.0.0 → Python 3.0.0, raw async-nats as the floor), delivered events/s and delivery ratio";
/// No delivery for this long after the publisher finished ends a run.
const QUIET: Duration = Duration::from_secs(1);
/// The issue's target: kinopio's event throughput ÷ Python's.
pub(crate) const PYTHON_RATIO_TARGET: f64 = 20.0;
/// The topic.
const TOPIC: &str = "events";
/// Python's default subscription queue (`pending_messages`), measured as a second series.
const PYTHON_DEFAULT_QUEUE: u64 = 256;
/// The metric suffix of that series.
const DEFAULT_QUEUE_SUFFIX: &str = "_default_queue";

/// One run's result.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EventsResult {
    /// Which client.
    pub client: Client,
    /// Events the publisher sent (accepted by its client).
    pub sent: u64,
    /// Publishes that failed.
    pub failed: u64,
    /// Events the subscriber received.
    pub received: u64,
    /// Events delivered per second (first publish → last delivery).
    pub rate: f64,
    /// Events per second the publisher sent.
    pub publish_rate: f64,
    /// received ÷ sent, in percent.
    pub delivered_pct: f64,
    /// What the client reported dropping, where it says.
    pub dropped: Option<u64>,
    /// Python: the subscription's `pending_messages`.
    pub pending_messages: Option<u64>,
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
            "events": p.events, "python_events": p.python_events,
            "python_pending_messages": p.python_pending_messages, "python_paced": false,
            "payload": "{\"seq\": i}", "rounds": s.rounds, "warmup_rounds": s.warmup_rounds,
            "kinopio": kinopio_method(),
        }),
    );
    for round in 0..s.warmup_rounds + s.rounds {
        let warmup_round = round < s.warmup_rounds;
        let mut results = Vec::new();
        for client in round_order(round) {
            let r = match client {
                Client::Kinopio => kinopio_run(ctx, round).await?,
                _ => raw_run(ctx, round).await?,
            };
            results.push(r);
        }
        results.push(python_run(ctx, python, round, p.python_pending_messages).await?);
        results.push(python_run(ctx, python, round, PYTHON_DEFAULT_QUEUE).await?);
        for r in results {
            let queue = match r.pending_messages {
                Some(q) => format!(" (pending_messages={q})"),
                None => String::new(),
            };
            // Python with its default queue is a series of its own.
            let suffix = if r.pending_messages == Some(PYTHON_DEFAULT_QUEUE) { DEFAULT_QUEUE_SUFFIX } else { "" };
            ctx.progress(&format!(
                "{ID} round {}{}: {}{queue} {} delivered ({} of {}, {:.1} %), publisher {}",
                round + 1,
                if warmup_round { " (warm-up)" } else { "" },
                r.client.label(),
                Unit::MsgPerSec.format(r.rate),
                r.received,
                r.sent,
                r.delivered_pct,
                Unit::MsgPerSec.format(r.publish_rate),
            ));
            if warmup_round {
                continue;
            }
            // Python's default queue drops by design (W14): that is what the series shows, so
            // its losses are in its note, not flagged as a doubtful measurement.
            if (r.received < r.sent || r.failed > 0) && suffix.is_empty() {
                report.flags.push(format!(
                    "{}{queue} round {}: {} of {} events delivered ({:.1} %), {} publishes failed",
                    r.client.label(),
                    round + 1 - s.warmup_rounds,
                    r.received,
                    r.sent,
                    r.delivered_pct,
                    r.failed
                ));
            }
            report.push(r.client, &format!("events_rate{suffix}"), Unit::MsgPerSec, r.rate);
            report.push(r.client, &format!("delivered_pct{suffix}"), Unit::Percent, r.delivered_pct);
            report.runs.push(json!({"round": round - s.warmup_rounds, "result": r}));
        }
    }
    Ok(report)
}

/// How the kinopio side runs.
fn kinopio_method() -> &'static str {
    "two Hubs in this process: Namespace::publish (each awaited) → Namespace::subscribe (default queue sizes, 65 536 messages)"
}

/// The payload of every event.
#[derive(Serialize)]
struct Seq {
    seq: u64,
}

/// The kinopio → kinopio run.
async fn kinopio_run(ctx: &Ctx<'_>, round: u32) -> Result<EventsResult, BenchError> {
    let n = ctx.settings.p4.events;
    let fail = |op: &'static str| move |e: kinopio::p4::Error| BenchError::client("kinopio", op, e);
    let publisher = kinopio_hub(ctx.url(), "bench-p4-ev-pub").await?;
    let subscriber = kinopio_hub(ctx.url(), "bench-p4-ev-sub").await?;
    let name = format!("bench-p4-ev-k-{round}");
    // Events need no synced store: the handles are enough.
    let na = publisher.namespace(&name).map_err(fail("namespace"))?;
    let nb = subscriber.namespace(&name).map_err(fail("namespace"))?;
    let mut sub = nb.subscribe(TOPIC).await.map_err(fail("subscribe"))?;
    let tally = Arc::new(Tally::default());
    let dropped = Arc::new(AtomicU64::new(0));
    let (counting, drops) = (Arc::clone(&tally), Arc::clone(&dropped));
    let task = AbortOnDrop::spawn(async move {
        while sub.next().await.is_some() {
            counting.add();
            drops.store(sub.dropped(), Ordering::Relaxed);
        }
    });
    let started = Instant::now();
    let mut failed = 0;
    for i in 0..n {
        if na.publish(TOPIC, &Seq { seq: i }).await.is_err() {
            failed += 1;
        }
    }
    let publishing = started.elapsed();
    let sent = n - failed;
    tally.settle(sent, ctx.deadline()).await;
    let span = tally.last().map_or(Duration::ZERO, |l| l.saturating_duration_since(started));
    let mut r = result(Client::Kinopio, sent, failed, tally.received(), span, publishing);
    r.dropped = Some(dropped.load(Ordering::Relaxed));
    drop(task);
    drop((na, nb));
    publisher.close().await;
    subscriber.close().await;
    Ok(r)
}

fn payload(i: u64) -> Bytes {
    Bytes::from(format!(r#"{{"seq":{i}}}"#))
}

fn result(client: Client, sent: u64, failed: u64, received: u64, span: Duration, publishing: Duration) -> EventsResult {
    let secs = span.as_secs_f64();
    EventsResult {
        client,
        sent,
        failed,
        received,
        rate: if secs > 0.0 { received as f64 / secs } else { f64::NAN },
        publish_rate: if publishing.as_secs_f64() > 0.0 { sent as f64 / publishing.as_secs_f64() } else { f64::NAN },
        delivered_pct: if sent > 0 { received as f64 * 100.0 / sent as f64 } else { 0.0 },
        dropped: None,
        pending_messages: None,
    }
}

/// Counts deliveries: how many, and when the last one arrived.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    received: AtomicU64,
    last: std::sync::Mutex<Option<Instant>>,
}

impl Tally {
    /// One delivery now.
    pub(crate) fn add(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last.lock() {
            *last = Some(Instant::now());
        }
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    fn last(&self) -> Option<Instant> {
        self.last.lock().ok().and_then(|l| *l)
    }

    /// Waits until `sent` arrived, or nothing arrived for [`QUIET`], bounded by `deadline`.
    pub(crate) async fn settle(&self, sent: u64, deadline: tokio::time::Instant) {
        let mut seen = self.received();
        let mut quiet_since = Instant::now();
        while self.received() < sent && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let now = self.received();
            if now != seen {
                seen = now;
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() >= QUIET {
                break;
            }
        }
    }
}

async fn raw_run(ctx: &Ctx<'_>, round: u32) -> Result<EventsResult, BenchError> {
    let n = ctx.settings.p4.events;
    let fail = |op: &'static str| move |e: String| BenchError::client("raw async-nats", op, e);
    let capacity = ctx.settings.capacity_for(n);
    let connect = || async {
        async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(10))
            .subscription_capacity(capacity)
            .client_capacity(super::clients::CLIENT_CAPACITY)
            .connect(ctx.url())
            .await
            .map_err(|e| fail("connect")(e.to_string()))
    };
    let (publisher, subscriber) = (connect().await?, connect().await?);
    let subject = format!("_msg.v1.{}.{}", hex(&format!("bench-p4-ev-raw-{round}")), hex(TOPIC));
    let mut sub = subscriber.subscribe(subject.clone()).await.map_err(|e| fail("subscribe")(e.to_string()))?;
    raw_round_trip(&subscriber).await?;
    let tally = Arc::new(Tally::default());
    let counting = Arc::clone(&tally);
    let _task = AbortOnDrop::spawn(async move {
        while sub.next().await.is_some() {
            counting.add();
        }
    });
    let started = Instant::now();
    let mut failed = 0;
    for i in 0..n {
        if publisher.publish(subject.clone(), payload(i)).await.is_err() {
            failed += 1;
        }
    }
    let _ = publisher.flush().await;
    let publishing = started.elapsed();
    let sent = n - failed;
    tally.settle(sent, ctx.deadline()).await;
    let span = tally.last().map_or(Duration::ZERO, |l| l.saturating_duration_since(started));
    Ok(result(Client::Raw, sent, failed, tally.received(), span, publishing))
}

async fn python_run(ctx: &Ctx<'_>, python: &Python3, round: u32, queue: u64) -> Result<EventsResult, BenchError> {
    let p = &ctx.settings.p4;
    let namespace = format!("bench-p4-ev-py-{round}-{queue}");
    let (mut subscriber, mut publisher) = (python.spawn(ctx.url()).await?, python.spawn(ctx.url()).await?);
    subscriber.open("sub", &namespace, json!({})).await?;
    publisher.open("pub", &namespace, json!({})).await?;
    subscriber
        .cmd(
            json!({"op": "subscribe", "hub": "sub", "topic": TOPIC, "pending_messages": queue}),
            Duration::from_secs(30),
        )
        .await?;
    let limit = ctx.settings.wait_timeout + Duration::from_millis(p.python_events);
    let published =
        publisher.cmd(json!({"op": "publish", "hub": "pub", "topic": TOPIC, "count": p.python_events}), limit).await?;
    let field = |v: &Value, f: &str| v.get(f).and_then(Value::as_u64).unwrap_or(0);
    let (sent, failed) = (field(&published, "sent"), field(&published, "failed"));
    let (start_ns, end_ns) = (field(&published, "start_ns"), field(&published, "end_ns"));
    // Poll the subscriber until everything arrived or it has been quiet.
    let deadline = ctx.deadline();
    let mut seen = u64::MAX;
    let mut quiet_since = Instant::now();
    let stats = loop {
        let now = subscriber.cmd(json!({"op": "sub_stats", "hub": "sub"}), Duration::from_secs(10)).await?;
        let received = field(&now, "received");
        if received >= sent || tokio::time::Instant::now() >= deadline {
            break now;
        }
        if received != seen {
            seen = received;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= QUIET {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    subscriber.exit().await;
    publisher.exit().await;
    let received = field(&stats, "received");
    let last_ns = field(&stats, "last_ns");
    let span = Duration::from_nanos(last_ns.saturating_sub(start_ns));
    let publishing = Duration::from_nanos(end_ns.saturating_sub(start_ns));
    let mut r = result(Client::Python3, sent, failed, received, span, publishing);
    r.dropped = Some(field(&stats, "dropped") + field(&stats, "native_drops"));
    r.pending_messages = Some(queue);
    Ok(r)
}

/// The table rows.
pub(crate) fn figures(all: &[ScenarioReport]) -> Vec<Figure> {
    let Some(report) = all.iter().find(|r| r.id == ID) else { return Vec::new() };
    let k = report.series(Client::Kinopio, "events_rate");
    let delivered = |suffix: &str| {
        report
            .series(Client::Python3, &format!("delivered_pct{suffix}"))
            .and_then(|s| super::stats::Summary::of(&s.samples))
            .map_or_else(String::new, |d| {
                format!("Python delivered {} of what it sent", Unit::Percent.format_summary(&d))
            })
    };
    vec![
        Figure::compare(
            "p4_events_python",
            ID,
            "p4 events publish → subscriber, delivered/s, ÷ Python 3.0.0",
            k,
            report.series(Client::Python3, "events_rate"),
            Target::RatioAtLeast { value: PYTHON_RATIO_TARGET },
        )
        .with_flags(&report.flags)
        .with_note(format!(
            "{} (its subscription with pending_messages=4096, the reference's best setting; unpaced, each pub \
             awaited, publisher and subscriber in two processes; its rate counts delivered events only)",
            delivered("")
        )),
        Figure::compare(
            "p4_events_python_default_queue",
            ID,
            "p4 events publish → subscriber, delivered/s, ÷ Python 3.0.0 with its default queue (256)",
            k,
            report.series(Client::Python3, &format!("events_rate{DEFAULT_QUEUE_SUFFIX}")),
            Target::Report,
        )
        .with_note(format!("{} (Python's defaults drop bursts, §11 W14)", delivered(DEFAULT_QUEUE_SUFFIX))),
        Figure::compare(
            "p4_events_raw",
            ID,
            "p4 events publish → subscriber, delivered/s, ÷ raw async-nats",
            k,
            report.series(Client::Raw, "events_rate"),
            Target::Report,
        )
        .with_note("the floor: the same payloads on a subject of the same shape, no protocol-4 work"),
        Figure::compare(
            "p4_events_delivered",
            ID,
            "p4 events delivered ÷ sent, kinopio vs Python 3.0.0 (pending_messages=4096)",
            report.series(Client::Kinopio, "delivered_pct"),
            report.series(Client::Python3, "delivered_pct"),
            Target::Report,
        ),
    ]
}
