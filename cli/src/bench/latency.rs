//! Scenario `latency`: request → reply round-trip time with one request in flight, the
//! responder on another connection. kinopio: `Variable::request_with` against a
//! `Variable::serve` service; raw: `Client::request` against a subscriber loop that
//! replies. Both replies are the same bytes. Figures: p50 and p99 per round.

use bytes::Bytes;
use serde_json::json;

use super::Ctx;
use super::clients::{Client, Conn, round_order};
use super::error::BenchError;
use super::report::{Figure, ScenarioReport, Target, Unit};
use super::stats::Latencies;

/// Scenario id.
pub const ID: &str = "latency";
/// What it measures.
pub const TITLE: &str = "request → serve round trip, one request in flight, 16 B request";
/// Request payload size.
pub const PAYLOAD_BYTES: usize = 16;

/// Runs the scenario.
pub async fn run(ctx: &Ctx<'_>) -> Result<ScenarioReport, BenchError> {
    let s = &ctx.settings;
    let mut report = ScenarioReport::new(
        ID,
        TITLE,
        json!({
            "requests": s.latency_requests, "warmup_requests": s.latency_warmup,
            "payload_bytes": PAYLOAD_BYTES, "rounds": s.rounds, "warmup_rounds": s.warmup_rounds,
        }),
    );
    for round in 0..s.warmup_rounds + s.rounds {
        let warmup_round = round < s.warmup_rounds;
        for client in round_order(round) {
            let l = run_once(ctx, client, s.latency_requests, s.latency_warmup).await?;
            ctx.progress(&format!(
                "{ID} round {}{}: {} p50 {} p99 {}",
                round + 1,
                if warmup_round { " (warm-up)" } else { "" },
                client.label(),
                Unit::Micros.format(l.p50_us),
                Unit::Micros.format(l.p99_us)
            ));
            if warmup_round {
                continue;
            }
            report.runs.push(json!({"round": round - s.warmup_rounds, "client": client, "latency": l}));
            report.push(client, "p50", Unit::Micros, l.p50_us);
            report.push(client, "p99", Unit::Micros, l.p99_us);
        }
    }
    Ok(report)
}

/// One run: fresh connections, warm-up requests, measured requests.
pub async fn run_once(ctx: &Ctx<'_>, client: Client, requests: u64, warmup: u64) -> Result<Latencies, BenchError> {
    let subject = ctx.subject("rq");
    let payload = Bytes::from(vec![b'x'; PAYLOAD_BYTES]);
    let capacity = ctx.settings.capacity_for(1024);
    let server = Conn::connect(client, ctx.url(), "bench-serve", capacity).await?;
    let requester_conn = Conn::connect(client, ctx.url(), "bench-request", capacity).await?;
    let responder = server.serve(&subject).await?;
    let requester = requester_conn.requester(&subject)?;
    let measured = async {
        requester.measure(&payload, warmup).await?;
        requester.measure(&payload, requests).await
    };
    let times = tokio::time::timeout_at(ctx.deadline(), measured)
        .await
        .map_err(|_| BenchError::Timeout(format!("{} requests did not finish in time", client.label())))??;
    responder.stop().await;
    requester_conn.close().await;
    server.close().await;
    Latencies::of(&times).ok_or_else(|| BenchError::Timeout(format!("{} measured no request", client.label())))
}

/// The table rows.
pub fn figures(all: &[ScenarioReport]) -> Vec<Figure> {
    let Some(report) = all.iter().find(|r| r.id == ID) else { return Vec::new() };
    vec![
        Figure::compare(
            "request_p50",
            ID,
            "request → serve p50, ÷ raw",
            report.series(Client::Kinopio, "p50"),
            report.series(Client::Raw, "p50"),
            Target::RatioAtMost { value: 1.10 },
        ),
        Figure::compare(
            "request_p99",
            ID,
            "request → serve p99, ÷ raw",
            report.series(Client::Kinopio, "p99"),
            report.series(Client::Raw, "p99"),
            Target::Report,
        ),
    ]
}
