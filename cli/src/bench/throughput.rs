//! Scenario `throughput`: one publisher connection publishes as fast as it can, a
//! subscriber on another connection counts; the figure is messages per second at the
//! subscriber (first publish of the measured batch → last message received), for 16 B
//! and 1 KiB payloads. kinopio: `Variable::publish_bytes` and a `Subscription`; raw:
//! `Client::publish` and a `Subscriber`.

use std::time::Instant;

use bytes::Bytes;
use serde_json::json;

use super::clients::{Client, Conn, round_order};
use super::error::BenchError;
use super::report::{Figure, ScenarioReport, Target, Unit};
use super::{Ctx, Drops};

/// Scenario id.
pub const ID: &str = "throughput";
/// What it measures.
pub const TITLE: &str = "publish → subscribe throughput (separate connections), msgs/s at the subscriber";

/// The payload sizes measured, with the metric name of each.
pub const SIZES: [(usize, &str, &str); 2] = [(16, "throughput_16B", "16 B"), (1024, "throughput_1KiB", "1 KiB")];

/// One measured run.
#[derive(Debug)]
pub struct Run {
    /// Messages per second at the subscriber.
    pub rate: f64,
    /// Messages per second accepted by the publisher.
    pub publish_rate: f64,
    /// What arrived of the measured batch.
    pub received: u64,
    /// Dropped messages and slow-consumer events.
    pub drops: Drops,
}

/// Runs the scenario.
pub async fn run(ctx: &Ctx<'_>) -> Result<ScenarioReport, BenchError> {
    let s = &ctx.settings;
    let mut report = ScenarioReport::new(
        ID,
        TITLE,
        json!({
            "payloads": SIZES.iter().map(|(size, _, _)| json!({"bytes": size, "messages": s.throughput_messages(*size)})).collect::<Vec<_>>(),
            "warmup_messages": s.throughput_warmup,
            "rounds": s.rounds,
            "warmup_rounds": s.warmup_rounds,
        }),
    );
    for (size, metric, label) in SIZES {
        let messages = s.throughput_messages(size);
        for round in 0..s.warmup_rounds + s.rounds {
            let warmup_round = round < s.warmup_rounds;
            for client in round_order(round) {
                let run = run_once(ctx, client, size, messages, s.throughput_warmup).await?;
                ctx.progress(&format!(
                    "{ID} {label} round {}{}: {} {}",
                    round + 1,
                    if warmup_round { " (warm-up)" } else { "" },
                    client.label(),
                    Unit::MsgPerSec.format(run.rate)
                ));
                if warmup_round {
                    continue;
                }
                report.runs.push(json!({
                    "payload_bytes": size, "round": round - s.warmup_rounds, "client": client,
                    "messages": messages, "received": run.received, "msgs_per_s": run.rate,
                    "publish_msgs_per_s": run.publish_rate, "drops": run.drops,
                }));
                if let Some(flag) = run.drops.flag(&format!("{label} {} round {}", client.label(), round + 1)) {
                    report.flags.push(flag);
                }
                report.push(client, metric, Unit::MsgPerSec, run.rate);
            }
        }
    }
    Ok(report)
}

/// One run: fresh connections, warm-up batch, measured batch.
pub async fn run_once(
    ctx: &Ctx<'_>,
    client: Client,
    size: usize,
    messages: u64,
    warmup: u64,
) -> Result<Run, BenchError> {
    let subject = ctx.subject("tp");
    let payload = Bytes::from(vec![b'x'; size]);
    let capacity = ctx.settings.capacity_for(warmup + messages);
    let server_slow_before = ctx.server.slow_consumers().await;
    let subscriber = Conn::connect(client, ctx.url(), "bench-sub", capacity).await?;
    let publisher_conn = Conn::connect(client, ctx.url(), "bench-pub", capacity).await?;
    let mut counter = subscriber.subscribe_counting(&subject, &[warmup, warmup + messages]).await?;
    let publisher = publisher_conn.publisher(&subject)?;

    publisher.publish_n(&payload, warmup).await?;
    if counter.reached(0, ctx.deadline()).await.is_none() {
        return Err(BenchError::Timeout(format!(
            "{} warm-up: {} of {warmup} messages arrived in time; server connections: {}",
            client.label(),
            counter.count(),
            ctx.server.connections().await.unwrap_or_default()
        )));
    }
    let started = Instant::now();
    publisher.publish_n(&payload, messages).await?;
    let published = started.elapsed();
    let done = counter.reached(1, ctx.deadline()).await;
    let ended = done.unwrap_or_else(Instant::now);
    let received = counter.count().saturating_sub(warmup).min(messages);
    let elapsed = ended.duration_since(started).as_secs_f64();
    let drops = Drops {
        expected: messages,
        received,
        slow_consumer_events: subscriber.slow_consumer_events() + publisher_conn.slow_consumer_events(),
        server_slow_consumers: ctx.server_slow_delta(server_slow_before).await,
    };
    drop(counter);
    subscriber.close().await;
    publisher_conn.close().await;
    Ok(Run {
        rate: received as f64 / elapsed.max(1e-9),
        publish_rate: messages as f64 / published.as_secs_f64().max(1e-9),
        received,
        drops,
    })
}

/// The table rows.
pub fn figures(all: &[ScenarioReport]) -> Vec<Figure> {
    let Some(report) = all.iter().find(|r| r.id == ID) else { return Vec::new() };
    SIZES
        .iter()
        .map(|(_, metric, label)| {
            let flags: Vec<String> = report.flags.iter().filter(|f| f.starts_with(label)).cloned().collect();
            Figure::compare(
                metric,
                ID,
                &format!("publish → subscribe {label}, ÷ raw"),
                report.series(Client::Kinopio, metric),
                report.series(Client::Raw, metric),
                Target::RatioAtLeast { value: 0.90 },
            )
            .with_flags(&flags)
        })
        .collect()
}
