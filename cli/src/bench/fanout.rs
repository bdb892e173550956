//! Scenario `fanout`: one publisher, eight subscribers on eight connections; the figure
//! is total messages delivered per second (all subscribers together), from the first
//! publish of the measured batch until the last subscriber has everything.

use std::time::Instant;

use bytes::Bytes;
use serde_json::json;

use super::clients::{Client, Conn, Counter, round_order};
use super::error::BenchError;
use super::report::{Figure, ScenarioReport, Target, Unit};
use super::{Ctx, Drops};

/// Scenario id.
pub const ID: &str = "fanout";
/// What it measures.
pub const TITLE: &str = "fan-out 1 → 8 subscribers (8 connections), 16 B, total delivered msgs/s";
/// Payload size.
pub const PAYLOAD_BYTES: usize = 16;

/// Runs the scenario.
pub async fn run(ctx: &Ctx<'_>) -> Result<ScenarioReport, BenchError> {
    let s = &ctx.settings;
    let mut report = ScenarioReport::new(
        ID,
        TITLE,
        json!({
            "subscribers": s.fanout_subscribers, "messages": s.fanout_messages, "warmup_messages": s.fanout_warmup,
            "payload_bytes": PAYLOAD_BYTES, "rounds": s.rounds, "warmup_rounds": s.warmup_rounds,
        }),
    );
    for round in 0..s.warmup_rounds + s.rounds {
        let warmup_round = round < s.warmup_rounds;
        for client in round_order(round) {
            let (rate, drops) = run_once(ctx, client).await?;
            ctx.progress(&format!(
                "{ID} round {}{}: {} {}",
                round + 1,
                if warmup_round { " (warm-up)" } else { "" },
                client.label(),
                Unit::MsgPerSec.format(rate)
            ));
            if warmup_round {
                continue;
            }
            report
                .runs
                .push(json!({"round": round - s.warmup_rounds, "client": client, "msgs_per_s": rate, "drops": drops}));
            if let Some(flag) = drops.flag(&format!("{} round {}", client.label(), round + 1)) {
                report.flags.push(flag);
            }
            report.push(client, "throughput", Unit::MsgPerSec, rate);
        }
    }
    Ok(report)
}

async fn run_once(ctx: &Ctx<'_>, client: Client) -> Result<(f64, Drops), BenchError> {
    let s = &ctx.settings;
    let subject = ctx.subject("fan");
    let payload = Bytes::from(vec![b'x'; PAYLOAD_BYTES]);
    let (warmup, messages) = (s.fanout_warmup, s.fanout_messages);
    let capacity = s.capacity_for(warmup + messages);
    let server_slow_before = ctx.server.slow_consumers().await;
    let mut subscribers = Vec::new();
    let mut counters: Vec<Counter> = Vec::new();
    for i in 0..s.fanout_subscribers {
        let conn = Conn::connect(client, ctx.url(), &format!("bench-fan-{i}"), capacity).await?;
        counters.push(conn.subscribe_counting(&subject, &[warmup, warmup + messages]).await?);
        subscribers.push(conn);
    }
    let publisher_conn = Conn::connect(client, ctx.url(), "bench-fan-pub", capacity).await?;
    let publisher = publisher_conn.publisher(&subject)?;

    publisher.publish_n(&payload, warmup).await?;
    for counter in &mut counters {
        if counter.reached(0, ctx.deadline()).await.is_none() {
            return Err(BenchError::Timeout(format!("{} fan-out warm-up did not arrive in time", client.label())));
        }
    }
    let started = Instant::now();
    publisher.publish_n(&payload, messages).await?;
    let deadline = ctx.deadline();
    let mut last = started;
    for counter in &mut counters {
        let done = counter.reached(1, deadline).await.unwrap_or_else(Instant::now);
        last = last.max(done);
    }
    let received: u64 = counters.iter().map(|c| c.count().saturating_sub(warmup).min(messages)).sum();
    let expected = messages * counters.len() as u64;
    let drops = Drops {
        expected,
        received,
        slow_consumer_events: subscribers.iter().map(Conn::slow_consumer_events).sum(),
        server_slow_consumers: ctx.server_slow_delta(server_slow_before).await,
    };
    drop(counters);
    for conn in subscribers {
        conn.close().await;
    }
    publisher_conn.close().await;
    Ok((received as f64 / last.duration_since(started).as_secs_f64().max(1e-9), drops))
}

/// The table rows.
pub fn figures(all: &[ScenarioReport]) -> Vec<Figure> {
    let Some(report) = all.iter().find(|r| r.id == ID) else { return Vec::new() };
    vec![
        Figure::compare(
            "fanout",
            ID,
            "fan-out 1 → 8, ÷ raw",
            report.series(Client::Kinopio, "throughput"),
            report.series(Client::Raw, "throughput"),
            Target::RatioAtLeast { value: 0.90 },
        )
        .with_flags(&report.flags),
    ]
}
