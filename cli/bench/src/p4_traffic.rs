//! Scenario `p4-traffic`: background traffic of idle protocol-4 instances (§11 W11). Three
//! instances of one namespace hold the same N records (one filled them, two joined and
//! synced); once all three hold them, a raw async-nats spy counts every message on
//! `_sys.v4.<hex(ns)>.>` (sync requests, sync answers on inboxes, health reports) and on the
//! record subjects `<hex(ns)>.*` for a window, with nobody writing.
//!
//! - kinopio: three `Hub`s in this process, default options. kinopio does not re-sync
//!   periodically; its anti-entropy runs about one sync round per namespace per
//!   `repair_interval` (30 s) across the fleet (each instance with probability 1 / instances
//!   online), so in expectation (H−1)·R answers per 30 s, plus health reports.
//! - Python 3.0.0: three hubs in one Python process. Python re-syncs from every peer every
//!   `probe_interval` (15 s by default): H·(H−1)·R answers per 15 s.
//!
//! The full run keeps both defaults and counts for 60 s (four Python cycles, about two kinopio
//! repair rounds: kinopio's rounds are random, so a shorter window says little); `--quick`
//! counts for 6 s and shortens Python's `probe_interval` to 2 s so that its cycles show
//! (recorded in the settings and the figure's note).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use serde_json::json;

use super::Ctx;
use super::clients::{AbortOnDrop, Client, raw_round_trip};
use super::error::BenchError;
use super::p4_latency::{kinopio_hub, synced_namespace};
use super::p4_python::{Python3, hex};
use super::report::{Figure, ScenarioReport, Target, Unit};

/// Scenario id.
pub(crate) const ID: &str = "p4-traffic";
/// What it measures.
pub(crate) const TITLE: &str = "protocol 4: idle background traffic of 3 instances holding N records each, messages/s on _sys.v4.> (raw spy), kinopio vs Python 3.0.0";
/// Quiet time after setup before counting starts.
const SETTLE: Duration = Duration::from_secs(1);

/// Messages the spy counted, by kind.
#[derive(Debug, Default)]
struct Counts {
    sync: AtomicU64,
    inbox: AtomicU64,
    health: AtomicU64,
    other_sys: AtomicU64,
    records: AtomicU64,
}

/// One window's counts.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Window {
    /// Which client.
    pub client: Client,
    /// Seconds counted.
    pub seconds: f64,
    /// Sync requests.
    pub sync_requests: u64,
    /// Sync answers (records on inboxes).
    pub sync_answers: u64,
    /// Health reports.
    pub health_reports: u64,
    /// Other `_sys.v4` messages (live channels).
    pub other_sys: u64,
    /// Messages on record subjects.
    pub records: u64,
    /// Every `_sys.v4.>` message per second.
    pub sys_per_s: f64,
}

struct Spy {
    counts: Arc<Counts>,
    _tasks: Vec<AbortOnDrop>,
    client: async_nats::Client,
}

impl Spy {
    async fn start(url: &str, namespace: &str) -> Result<Spy, BenchError> {
        let fail = |op: &'static str| move |e: String| BenchError::client("raw async-nats spy", op, e);
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(10))
            .subscription_capacity(1 << 16)
            .connect(url)
            .await
            .map_err(|e| fail("connect")(e.to_string()))?;
        let ns = hex(namespace);
        let counts = Arc::new(Counts::default());
        let prefix = format!("_sys.v4.{ns}.");
        let mut sys = client.subscribe(format!("{prefix}>")).await.map_err(|e| fail("subscribe")(e.to_string()))?;
        let mut records = client.subscribe(format!("{ns}.*")).await.map_err(|e| fail("subscribe")(e.to_string()))?;
        raw_round_trip(&client).await?;
        let c = Arc::clone(&counts);
        let sys_task = AbortOnDrop::spawn(async move {
            while let Some(m) = sys.next().await {
                let rest = m.subject.as_str().strip_prefix(prefix.as_str()).unwrap_or_default();
                let counter = if rest == "sync" {
                    &c.sync
                } else if rest.starts_with("inbox.") {
                    &c.inbox
                } else if rest.starts_with("health.") {
                    &c.health
                } else {
                    &c.other_sys
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        let c = Arc::clone(&counts);
        let records_task = AbortOnDrop::spawn(async move {
            while records.next().await.is_some() {
                c.records.fetch_add(1, Ordering::Relaxed);
            }
        });
        Ok(Spy { counts, _tasks: vec![sys_task, records_task], client })
    }

    fn snapshot(&self) -> [u64; 5] {
        let c = &self.counts;
        [&c.sync, &c.inbox, &c.health, &c.other_sys, &c.records].map(|a| a.load(Ordering::Relaxed))
    }

    /// Counts for `window` from now.
    async fn count(&self, client: Client, window: Duration) -> Result<Window, BenchError> {
        // Everything published before the window has reached the spy once a round trip is done.
        raw_round_trip(&self.client).await?;
        let before = self.snapshot();
        let started = Instant::now();
        tokio::time::sleep(window).await;
        let after = self.snapshot();
        let seconds = started.elapsed().as_secs_f64();
        let d: Vec<u64> = after.iter().zip(before).map(|(a, b)| a.saturating_sub(b)).collect();
        let sys: u64 = d[..4].iter().sum();
        Ok(Window {
            client,
            seconds,
            sync_requests: d[0],
            sync_answers: d[1],
            health_reports: d[2],
            other_sys: d[3],
            records: d[4],
            sys_per_s: sys as f64 / seconds,
        })
    }
}

/// Runs the scenario.
pub(crate) async fn run(ctx: &Ctx<'_>, python: &Python3) -> Result<ScenarioReport, BenchError> {
    if let Some(skipped) = python.skipped(ID, TITLE) {
        return Ok(skipped);
    }
    let p = &ctx.settings.p4;
    let (n, window) = (p.traffic_records, p.traffic_window);
    let mut report = ScenarioReport::new(
        ID,
        TITLE,
        json!({"instances": 3, "records": n, "window_ms": window.as_millis() as u64,
               "python_probe_interval_s": p.traffic_probe_interval_s.unwrap_or(15.0),
               "python_probe_interval_default": p.traffic_probe_interval_s.is_none()}),
    );
    let bound = ctx.settings.wait_timeout;
    let fail = |op: &'static str| move |e: kinopio::p4::Error| BenchError::client("kinopio", op, e);

    // kinopio.
    let name = "bench-p4-traffic-k";
    let spy = Spy::start(ctx.url(), name).await?;
    let mut hubs = Vec::new();
    let mut namespaces = Vec::new();
    for i in 0..3 {
        let hub = kinopio_hub(ctx.url(), &format!("bench-p4-idle-{i}")).await?;
        let ns = synced_namespace(&hub, name, bound).await?;
        if i == 0 {
            for v in 0..n {
                ns.var::<usize>(&format!("v{v}")).map_err(fail("var"))?.set(&v).map_err(fail("set"))?;
            }
            ns.flush(bound).await.map_err(fail("flush"))?;
        } else if ns.variables().len() < n {
            return Err(BenchError::Timeout(format!(
                "{ID}: kinopio instance {i} synced only {} of {n}",
                ns.variables().len()
            )));
        }
        hubs.push(hub);
        namespaces.push(ns);
    }
    tokio::time::sleep(SETTLE).await;
    let w = spy.count(Client::Kinopio, window).await?;
    ctx.progress(&format!("{ID}: kinopio {:.1} msg/s on _sys.v4 ({w:?})", w.sys_per_s));
    report.push(Client::Kinopio, "sys_msgs_per_s", Unit::MsgPerSec, w.sys_per_s);
    report.push(Client::Kinopio, "record_msgs_per_s", Unit::MsgPerSec, w.records as f64 / w.seconds);
    report.runs.push(json!(w));
    drop(namespaces);
    for hub in hubs {
        hub.close().await;
    }
    drop(spy);

    // Python.
    let name = "bench-p4-traffic-py";
    let spy = Spy::start(ctx.url(), name).await?;
    let options = p.traffic_probe_interval_s.map_or_else(|| json!({}), |s| json!({"probe_interval": s}));
    let mut process = python.spawn(ctx.url()).await?;
    for i in 0..3 {
        let hub = format!("h{i}");
        process.open(&hub, name, options.clone()).await?;
        if i == 0 {
            process.fill(&hub, "v", n).await?;
        }
    }
    let deadline = Instant::now() + bound;
    for hub in ["h1", "h2"] {
        while process.count(hub).await? < n as u64 {
            if Instant::now() > deadline {
                return Err(BenchError::Timeout(format!(
                    "{ID}: Python {hub} did not sync {n} records within {bound:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(SETTLE).await;
    let w = spy.count(Client::Python3, window).await?;
    process.exit().await;
    ctx.progress(&format!("{ID}: Python {:.1} msg/s on _sys.v4 ({w:?})", w.sys_per_s));
    report.push(Client::Python3, "sys_msgs_per_s", Unit::MsgPerSec, w.sys_per_s);
    report.push(Client::Python3, "record_msgs_per_s", Unit::MsgPerSec, w.records as f64 / w.seconds);
    report.runs.push(json!(w));
    Ok(report)
}

/// The table rows.
pub(crate) fn figures(all: &[ScenarioReport]) -> Vec<Figure> {
    let Some(report) = all.iter().find(|r| r.id == ID) else { return Vec::new() };
    let n = report.params.get("records").and_then(serde_json::Value::as_u64).unwrap_or(0);
    let probe = report.params.get("python_probe_interval_s").and_then(serde_json::Value::as_f64).unwrap_or(15.0);
    let default = report.params.get("python_probe_interval_default").and_then(serde_json::Value::as_bool) == Some(true);
    vec![
        Figure::compare(
            "p4_idle_sys_traffic",
            ID,
            &format!("p4 idle traffic on _sys.v4.>, 3 instances × {n} records, ÷ Python 3.0.0"),
            report.series(Client::Kinopio, "sys_msgs_per_s"),
            report.series(Client::Python3, "sys_msgs_per_s"),
            Target::Report,
        )
        .with_note(format!(
            "Python probe_interval {probe} s{}, kinopio repair_interval 30 s (random rounds); sync requests, answers \
             and health reports (breakdown in bench.json)",
            if default { " (its default)" } else { " (shortened for the short window)" }
        )),
    ]
}
