//! Scenario `latency`: request → reply round-trip time with one request in flight, the
//! responder on another connection. kinopio: `Variable::request_with` against a
//! `Variable::serve` service; raw: `Client::request` against a subscriber loop that
//! replies. Both replies are the same bytes. Figures: p50 and p99 per round.
//!
//! Latency on a shared machine drifts within seconds, so inside each round both clients
//! are set up side by side and take turns in blocks of [`BLOCK`] requests (A B, B A, ...):
//! both see the same conditions, and the per-round ratio compares like with like.

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;

use super::Ctx;
use super::clients::{Client, Conn, Requester, Responder, round_order};
use super::error::BenchError;
use super::report::{Figure, ScenarioReport, Target, Unit};
use super::stats::Latencies;

/// Scenario id.
pub(crate) const ID: &str = "latency";
/// What it measures.
pub(crate) const TITLE: &str = "request → serve round trip, one request in flight, 16 B request";
/// Request payload size.
pub(crate) const PAYLOAD_BYTES: usize = 16;
/// Requests per turn.
pub(crate) const BLOCK: u64 = 100;

/// Runs the scenario.
pub(crate) async fn run(ctx: &Ctx<'_>) -> Result<ScenarioReport, BenchError> {
    let s = &ctx.settings;
    let mut report = ScenarioReport::new(
        ID,
        TITLE,
        json!({
            "requests": s.latency_requests, "warmup_requests": s.latency_warmup,
            "payload_bytes": PAYLOAD_BYTES, "rounds": s.rounds, "warmup_rounds": s.warmup_rounds,
            "method": format!("both clients side by side, alternating blocks of {BLOCK} requests"),
        }),
    );
    for round in 0..s.warmup_rounds + s.rounds {
        let results = run_round(ctx, round, s.latency_requests, s.latency_warmup).await?;
        for (client, l) in results {
            record_round(ctx, &mut report, ID, (round, s.warmup_rounds), client, &l);
        }
    }
    Ok(report)
}

/// A responder and a requester of one client, on two fresh connections.
struct Pair {
    client: Client,
    server: Conn,
    responder: Responder,
    requester_conn: Conn,
    requester: Requester,
    times: Vec<Duration>,
}

impl Pair {
    async fn open(ctx: &Ctx<'_>, client: Client) -> Result<Pair, BenchError> {
        let subject = ctx.subject("rq");
        let capacity = ctx.settings.capacity_for(1024);
        let server = Conn::connect(client, ctx.url(), "bench-serve", capacity).await?;
        let requester_conn = Conn::connect(client, ctx.url(), "bench-request", capacity).await?;
        let responder = server.serve(&subject).await?;
        let requester = requester_conn.requester(&subject)?;
        Ok(Pair { client, server, responder, requester_conn, requester, times: Vec::new() })
    }

    async fn close(self) {
        self.responder.stop().await;
        self.requester_conn.close().await;
        self.server.close().await;
    }
}

/// One round: both clients set up, warmed up, then measured in alternating blocks.
pub(crate) async fn run_round(
    ctx: &Ctx<'_>,
    round: u32,
    requests: u64,
    warmup: u64,
) -> Result<Vec<(Client, Latencies)>, BenchError> {
    let payload = Bytes::from(vec![b'x'; PAYLOAD_BYTES]);
    let mut pairs = Vec::new();
    for client in round_order(round) {
        pairs.push(Pair::open(ctx, client).await?);
    }
    let measured = async {
        for pair in &mut pairs {
            pair.requester.measure(&payload, warmup).await?;
        }
        let mut done = 0;
        let mut turn = 0usize;
        while done < requests {
            let block = BLOCK.min(requests - done);
            // A B, then B A: neither client always follows the other.
            let order = if turn.is_multiple_of(2) { [0, 1] } else { [1, 0] };
            for i in order {
                let times = pairs[i].requester.measure(&payload, block).await?;
                pairs[i].times.extend(times);
            }
            done += block;
            turn += 1;
        }
        Ok::<(), BenchError>(())
    };
    tokio::time::timeout_at(ctx.deadline(), measured)
        .await
        .map_err(|_| BenchError::Timeout("the requests did not finish in time".to_owned()))??;
    let mut results = Vec::new();
    for pair in pairs {
        let latencies = Latencies::of(&pair.times)
            .ok_or_else(|| BenchError::Timeout(format!("{} measured no request", pair.client.label())))?;
        results.push((pair.client, latencies));
        pair.close().await;
    }
    Ok(results)
}

/// The table rows.
pub(crate) fn figures(all: &[ScenarioReport]) -> Vec<Figure> {
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

/// Reports one round's latencies of `client`: a progress line, and the figures unless it is
/// a warm-up round (`round` counts the `warmup_rounds` first).
pub(crate) fn record_round(
    ctx: &Ctx<'_>,
    report: &mut ScenarioReport,
    id: &str,
    (round, warmup_rounds): (u32, u32),
    client: Client,
    l: &Latencies,
) {
    let warmup_round = round < warmup_rounds;
    ctx.progress(&format!(
        "{id} round {}{}: {} p50 {} p99 {}",
        round + 1,
        if warmup_round { " (warm-up)" } else { "" },
        client.label(),
        Unit::Micros.format(l.p50_us),
        Unit::Micros.format(l.p99_us)
    ));
    if warmup_round {
        return;
    }
    report.runs.push(json!({"round": round - warmup_rounds, "client": client, "latency": l}));
    report.push(client, "p50", Unit::Micros, l.p50_us);
    report.push(client, "p99", Unit::Micros, l.p99_us);
}
