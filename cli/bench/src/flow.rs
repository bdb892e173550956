//! Interleaved publish → subscribe flows, shared by `throughput` and `fanout`.
//!
//! Throughput on a shared machine drifts within seconds, so each round sets up both
//! clients side by side (publisher and subscribers on their own connections, a subject of
//! their own), warms both up, then lets them take turns in batches (A B, B A, ...): each
//! batch is published as fast as the client accepts it and timed from its first publish
//! until every subscriber has counted all of it. A client's rate for the round is what it
//! delivered divided by the time its batches took.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use super::clients::{Client, Conn, Counter, Publisher, round_order};
use super::error::BenchError;
use super::{Ctx, Drops};

/// The sizes of one round.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    /// Subscriber connections.
    pub subscribers: usize,
    /// Payload size in bytes.
    pub payload_bytes: usize,
    /// Messages before the measured batches.
    pub warmup: u64,
    /// Measured messages per client (split into `batches`).
    pub messages: u64,
    /// Turns per client.
    pub batches: u64,
}

/// One client's result for a round.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FlowResult {
    /// Which client.
    pub client: Client,
    /// Messages delivered per second (all subscribers together).
    pub rate: f64,
    /// Messages per second the publisher accepted (while publishing).
    pub publish_rate: f64,
    /// Seconds spent in measured batches.
    pub busy_s: f64,
    /// What went missing.
    pub drops: Drops,
}

struct Flow {
    client: Client,
    publisher_conn: Conn,
    publisher: Publisher,
    subscribers: Vec<Conn>,
    counters: Vec<Counter>,
    busy: Duration,
    publishing: Duration,
    next_mark: usize,
}

impl Flow {
    async fn open(ctx: &Ctx<'_>, client: Client, shape: &Shape, marks: &[u64]) -> Result<Flow, BenchError> {
        let subject = ctx.subject(if shape.subscribers > 1 { "fan" } else { "tp" });
        let capacity = ctx.settings.capacity_for(shape.warmup + shape.messages);
        let mut subscribers = Vec::new();
        let mut counters = Vec::new();
        for i in 0..shape.subscribers {
            let conn = Conn::connect(client, ctx.url(), &format!("bench-sub-{i}"), capacity).await?;
            counters.push(conn.subscribe_counting(&subject, marks).await?);
            subscribers.push(conn);
        }
        let publisher_conn = Conn::connect(client, ctx.url(), "bench-pub", capacity).await?;
        let publisher = publisher_conn.publisher(&subject)?;
        Ok(Flow {
            client,
            publisher_conn,
            publisher,
            subscribers,
            counters,
            busy: Duration::ZERO,
            publishing: Duration::ZERO,
            next_mark: 0,
        })
    }

    /// Publishes `count` messages and waits until every subscriber reached the next mark.
    async fn batch(&mut self, ctx: &Ctx<'_>, payload: &Bytes, count: u64) -> Result<Duration, BenchError> {
        let started = Instant::now();
        self.publisher.publish_n(payload, count).await?;
        self.publishing += started.elapsed();
        let deadline = ctx.deadline();
        let mark = self.next_mark;
        self.next_mark += 1;
        let mut last = started;
        for counter in &mut self.counters {
            match counter.reached(mark, deadline).await {
                Some(at) => last = last.max(at),
                None => {
                    return Err(BenchError::Timeout(format!(
                        "{}: a subscriber counted {} messages, short of its mark; server connections: {}",
                        self.client.label(),
                        counter.count(),
                        ctx.server.connections().await.unwrap_or_default()
                    )));
                }
            }
        }
        Ok(last.duration_since(started))
    }

    async fn close(self) {
        drop(self.counters);
        for conn in self.subscribers {
            conn.close().await;
        }
        self.publisher_conn.close().await;
    }
}

/// Runs one round of `shape` for kinopio and raw, interleaved; results in run order.
pub(crate) async fn round(ctx: &Ctx<'_>, round: u32, shape: &Shape) -> Result<Vec<FlowResult>, BenchError> {
    let payload = Bytes::from(vec![b'x'; shape.payload_bytes]);
    let batches = shape.batches.max(1);
    let batch = (shape.messages / batches).max(1);
    let marks: Vec<u64> =
        std::iter::once(shape.warmup).chain((1..=batches).map(|b| shape.warmup + b * batch)).collect();
    let server_slow_before = ctx.server.slow_consumers().await;
    let mut flows = Vec::new();
    for client in round_order(round) {
        flows.push(Flow::open(ctx, client, shape, &marks).await?);
    }
    for flow in &mut flows {
        flow.batch(ctx, &payload, shape.warmup).await?;
        flow.busy = Duration::ZERO;
        flow.publishing = Duration::ZERO;
    }
    for turn in 0..batches {
        let order = if turn.is_multiple_of(2) { [0, 1] } else { [1, 0] };
        for i in order {
            let took = flows[i].batch(ctx, &payload, batch).await?;
            flows[i].busy += took;
        }
    }
    let server_slow = ctx.server_slow_delta(server_slow_before).await;
    let mut results = Vec::new();
    for flow in flows {
        let subscribers = flow.counters.len() as u64;
        let expected = batch * batches * subscribers;
        let received: u64 = flow.counters.iter().map(|c| c.count().saturating_sub(shape.warmup)).sum();
        let drops = Drops {
            expected,
            received: received.min(expected),
            slow_consumer_events: flow.subscribers.iter().map(Conn::slow_consumer_events).sum::<u64>()
                + flow.publisher_conn.slow_consumer_events(),
            // The server's count covers both clients of the round.
            server_slow_consumers: server_slow,
        };
        results.push(FlowResult {
            client: flow.client,
            rate: expected as f64 / flow.busy.as_secs_f64().max(1e-9),
            publish_rate: (batch * batches) as f64 / flow.publishing.as_secs_f64().max(1e-9),
            busy_s: flow.busy.as_secs_f64(),
            drops,
        });
        flow.close().await;
    }
    Ok(results)
}

/// Runs the warm-up and measured rounds of one flow shape and records every measured round in
/// `report` under `metric` (`label` prefixes progress lines and drop flags; `extra` is merged
/// into each run's JSON record).
pub(crate) async fn record_rounds(
    ctx: &Ctx<'_>,
    shape: &Shape,
    label: &str,
    metric: &str,
    extra: serde_json::Value,
    report: &mut super::report::ScenarioReport,
) -> Result<(), BenchError> {
    let s = &ctx.settings;
    for round in 0..s.warmup_rounds + s.rounds {
        let warmup_round = round < s.warmup_rounds;
        for r in self::round(ctx, round, shape).await? {
            ctx.progress(&format!(
                "{label} round {}{}: {} {}",
                round + 1,
                if warmup_round { " (warm-up)" } else { "" },
                r.client.label(),
                super::report::Unit::MsgPerSec.format(r.rate)
            ));
            if warmup_round {
                continue;
            }
            if let Some(flag) = r.drops.flag(&format!("{label} {} round {}", r.client.label(), round + 1)) {
                report.flags.push(flag);
            }
            report.push(r.client, metric, super::report::Unit::MsgPerSec, r.rate);
            let mut run = serde_json::json!({"round": round - s.warmup_rounds, "result": r});
            if let (Some(run), Some(extra)) = (run.as_object_mut(), extra.as_object()) {
                run.extend(extra.clone());
            }
            report.runs.push(run);
        }
    }
    Ok(())
}
