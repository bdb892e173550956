//! Scenario `fanout`: one publisher, eight subscribers on eight connections; the figure
//! is total messages delivered per second (all subscribers together), from the first
//! publish of a batch until the last subscriber has all of it (see [`flow`]).

use serde_json::json;

use super::Ctx;
use super::clients::Client;
use super::error::BenchError;
use super::flow::{self, Shape};
use super::report::{Figure, ScenarioReport, Target};

/// Scenario id.
pub(crate) const ID: &str = "fanout";
/// What it measures.
pub(crate) const TITLE: &str = "fan-out 1 → 8 subscribers (8 connections), 16 B, total delivered msgs/s";
/// Payload size.
pub(crate) const PAYLOAD_BYTES: usize = 16;

/// Runs the scenario.
pub(crate) async fn run(ctx: &Ctx<'_>) -> Result<ScenarioReport, BenchError> {
    let s = &ctx.settings;
    let mut report = ScenarioReport::new(
        ID,
        TITLE,
        json!({
            "subscribers": s.fanout_subscribers, "messages": s.fanout_messages, "warmup_messages": s.fanout_warmup,
            "batches": s.batches, "payload_bytes": PAYLOAD_BYTES, "rounds": s.rounds, "warmup_rounds": s.warmup_rounds,
            "method": "both clients side by side, alternating batches (see flow.rs)",
        }),
    );
    let shape = Shape {
        subscribers: s.fanout_subscribers,
        payload_bytes: PAYLOAD_BYTES,
        warmup: s.fanout_warmup,
        messages: s.fanout_messages,
        batches: s.batches,
    };
    flow::record_rounds(ctx, &shape, ID, "throughput", json!({}), &mut report).await?;
    Ok(report)
}

/// The table rows.
pub(crate) fn figures(all: &[ScenarioReport]) -> Vec<Figure> {
    let Some(report) = all.iter().find(|r| r.id == ID) else { return Vec::new() };
    vec![
        Figure::compare(
            "fanout",
            ID,
            "fan-out 1 → 8, ÷ raw",
            report.series(Client::Kinopio, "throughput"),
            report.series(Client::Raw, "throughput"),
            Target::RatioAtLeast { value: 0.95 },
        )
        .with_flags(&report.flags),
    ]
}
