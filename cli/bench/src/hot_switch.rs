//! Scenario `hot-switch` (kinopio only): a raw publisher sends numbered messages at a
//! steady rate (1 000 msg/s) while a subscribing hub with two URLs for the same server
//! (direct, and through a [`Forwarder`]) is moved back and forth with `Hub::switch_to`.
//! Counted: messages lost, delivered twice, delivered out of order; timed: each
//! `switch_to` call, the longest pause between deliveries, and — observed through the
//! subscription's `Debug` output, which shows whether it is merging — how long after the
//! call started the subscription was back on one connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use futures::StreamExt;
use kinopio::{Hub, HubOptions, SelectionMode, ServerUrl};
use serde_json::json;
use tokio::sync::{oneshot, watch};

use super::Ctx;
use super::clients::{Client, Conn};
use super::error::BenchError;
use super::forward::Forwarder;
use super::report::{Figure, ScenarioReport, Target, Unit};

/// Scenario id.
pub(crate) const ID: &str = "hot-switch";
/// What it measures.
pub(crate) const TITLE: &str =
    "hot switch of a subscribing hub between two URLs of one server under a steady publish rate";
/// Payload size (an 8-byte sequence number and padding).
pub(crate) const PAYLOAD_BYTES: usize = 16;
/// How long after publishing stops late (duplicate) deliveries are still counted.
const SETTLE: Duration = Duration::from_millis(300);

/// One round's outcome.
#[derive(Debug)]
struct Outcome {
    published: u64,
    delivered: u64,
    lost: u64,
    duplicates: u64,
    reordered: u64,
    switch_ms: Vec<f64>,
    settled_ms: Vec<f64>,
    max_gap_ms: f64,
}

/// Runs the scenario.
pub(crate) async fn run(ctx: &Ctx<'_>) -> Result<ScenarioReport, BenchError> {
    let s = &ctx.settings;
    let mut report = ScenarioReport::new(
        ID,
        TITLE,
        json!({
            "switches_per_round": s.switches, "publish_rate_per_s": s.switch_rate,
            "switch_interval_ms": s.switch_interval.as_millis() as u64, "payload_bytes": PAYLOAD_BYTES,
            "rounds": s.rounds, "warmup_rounds": s.warmup_rounds, "overlap": "HubOptions default (200 ms)",
        }),
    );
    for round in 0..s.warmup_rounds + s.rounds {
        let warmup_round = round < s.warmup_rounds;
        let o = run_once(ctx).await?;
        ctx.progress(&format!(
            "{ID} round {}{}: {} published, {} lost, {} duplicates, switch_to {:?} ms",
            round + 1,
            if warmup_round { " (warm-up)" } else { "" },
            o.published,
            o.lost,
            o.duplicates,
            o.switch_ms.iter().map(|ms| (ms * 10.0).round() / 10.0).collect::<Vec<_>>()
        ));
        if warmup_round {
            continue;
        }
        report.runs.push(json!({
            "round": round - s.warmup_rounds, "published": o.published, "delivered": o.delivered,
            "lost": o.lost, "duplicates": o.duplicates, "reordered": o.reordered,
            "switch_ms": o.switch_ms, "settled_ms": o.settled_ms, "max_gap_ms": o.max_gap_ms,
        }));
        report.push(Client::Kinopio, "lost", Unit::Count, o.lost as f64);
        report.push(Client::Kinopio, "duplicates", Unit::Count, o.duplicates as f64);
        report.push(Client::Kinopio, "reordered", Unit::Count, o.reordered as f64);
        report.push(Client::Kinopio, "max_gap_ms", Unit::Millis, o.max_gap_ms);
        for ms in &o.switch_ms {
            report.push(Client::Kinopio, "switch_ms", Unit::Millis, *ms);
        }
        for ms in &o.settled_ms {
            report.push(Client::Kinopio, "settled_ms", Unit::Millis, *ms);
        }
    }
    Ok(report)
}

/// `host:port` of a `nats://host:port` URL, resolved.
pub(crate) async fn socket_addr(url: &str) -> Result<SocketAddr, BenchError> {
    let host_port = url.split_once("://").map_or(url, |(_, rest)| rest).trim_end_matches('/');
    let fail = |detail: String| BenchError::Connect { client: "forwarder", url: url.to_owned(), detail };
    tokio::net::lookup_host(host_port)
        .await
        .map_err(|e| fail(e.to_string()))?
        .next()
        .ok_or_else(|| fail("the name resolves to no address".to_owned()))
}

pub(crate) fn parse_url(url: &str) -> Result<ServerUrl, BenchError> {
    url.parse::<ServerUrl>().map_err(|e| BenchError::client("kinopio", "parse server URL", e))
}

/// What the receiving task saw.
#[derive(Debug, Default)]
struct Received {
    sequences: Vec<u64>,
    arrivals: Vec<Instant>,
    merge_ends: Vec<Instant>,
}

async fn run_once(ctx: &Ctx<'_>) -> Result<Outcome, BenchError> {
    let s = &ctx.settings;
    let forwarder = Forwarder::start(socket_addr(ctx.url()).await?).await?;
    let direct = parse_url(ctx.url())?;
    let forwarded = parse_url(&forwarder.url())?;
    let options = HubOptions::new()
        .servers([ctx.url().to_owned(), forwarder.url()])
        .map_err(|e| BenchError::client("kinopio", "parse server URL", e))?
        .selection(SelectionMode::Ordered)
        .reprobe_interval(None)
        .name("bench-switch-sub");
    let hub = Hub::connect(options).await.map_err(|e| BenchError::Connect {
        client: "kinopio",
        url: ctx.url().to_owned(),
        detail: e.to_string(),
    })?;
    let subject = ctx.subject("sw");
    let mut subscription = hub
        .variable(&subject)
        .map_err(|e| BenchError::client("kinopio", "variable", e))?
        .subscribe()
        .await
        .map_err(|e| BenchError::client("kinopio", "subscribe", e))?;
    let publisher_conn = Conn::connect(Client::Raw, ctx.url(), "bench-switch-pub", 65_536).await?;
    let publisher = publisher_conn.publisher(&subject)?;

    // Receiver: records every sequence number and when the subscription stops merging.
    let (count_tx, mut count_rx) = watch::channel(0u64);
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let receiver = tokio::spawn(async move {
        let mut got = Received::default();
        let mut merging = false;
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                msg = subscription.next() => {
                    let Some(msg) = msg else { break };
                    let now = Instant::now();
                    let seq = msg.payload.get(..8).and_then(|b| b.try_into().ok()).map_or(u64::MAX, u64::from_be_bytes);
                    got.sequences.push(seq);
                    got.arrivals.push(now);
                    count_tx.send_replace(got.sequences.len() as u64);
                    // The Debug output of a Subscription says whether it is merging two
                    // connections; the only outside view of when a switch has settled.
                    let now_merging = format!("{subscription:?}").contains("switching: true");
                    if merging && !now_merging {
                        got.merge_ends.push(now);
                    }
                    merging = now_merging;
                }
            }
        }
        got
    });

    // Publisher: a steady rate until told to stop.
    let period = Duration::from_secs_f64(1.0 / f64::from(s.switch_rate.max(1)));
    let (pub_stop_tx, mut pub_stop_rx) = oneshot::channel::<()>();
    let publishing = async {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut seq = 0u64;
        loop {
            tokio::select! {
                _ = &mut pub_stop_rx => break,
                _ = ticker.tick() => {
                    let mut payload = BytesMut::with_capacity(PAYLOAD_BYTES);
                    payload.put_u64(seq);
                    payload.put_bytes(b'x', PAYLOAD_BYTES - 8);
                    publisher.publish(payload.freeze()).await?;
                    seq += 1;
                }
            }
        }
        Ok::<u64, BenchError>(seq)
    };

    // Switcher: one interval of steady state, then a switch every interval.
    let switching = async {
        let mut calls = Vec::new();
        tokio::time::sleep(s.switch_interval).await;
        for i in 0..s.switches {
            let target = if i % 2 == 0 { &forwarded } else { &direct };
            let started = Instant::now();
            hub.switch_to(target).await.map_err(|e| BenchError::client("kinopio", "switch_to", e))?;
            calls.push((started, started.elapsed()));
            tokio::time::sleep(s.switch_interval).await;
        }
        let _ = pub_stop_tx.send(());
        Ok::<_, BenchError>(calls)
    };
    let (published, calls) = tokio::time::timeout_at(ctx.deadline(), async { tokio::try_join!(publishing, switching) })
        .await
        .map_err(|_| BenchError::Timeout("the hot-switch round did not finish in time".to_owned()))??;
    if let Conn::Raw { client, .. } = &publisher_conn {
        let _ = client.flush().await;
    }
    // Wait until everything published has been delivered (or the deadline), then a little
    // longer for late duplicates.
    let _ = tokio::time::timeout_at(ctx.deadline(), count_rx.wait_for(|n| *n >= published)).await;
    tokio::time::sleep(SETTLE).await;
    let _ = stop_tx.send(());
    let got = receiver.await.map_err(|e| BenchError::client("kinopio", "receive", e))?;
    publisher_conn.close().await;
    hub.close().await;
    drop(forwarder);
    Ok(analyse(published, &got, &calls))
}

fn analyse(published: u64, got: &Received, calls: &[(Instant, Duration)]) -> Outcome {
    let mut seen = vec![0u32; usize::try_from(published).unwrap_or(0)];
    let mut duplicates = 0u64;
    let mut reordered = 0u64;
    let mut highest: Option<u64> = None;
    for &seq in &got.sequences {
        match usize::try_from(seq).ok().and_then(|i| seen.get_mut(i)) {
            Some(count) => {
                if *count > 0 {
                    duplicates += 1;
                }
                *count += 1;
            }
            // Not a sequence number we published: count it as a duplicate (an extra).
            None => duplicates += 1,
        }
        if highest.is_some_and(|h| seq < h) {
            reordered += 1;
        }
        highest = highest.max(Some(seq));
    }
    let lost = seen.iter().filter(|c| **c == 0).count() as u64;
    let max_gap_ms = got.arrivals.windows(2).map(|w| w[1].duration_since(w[0]).as_secs_f64() * 1e3).fold(0.0, f64::max);
    let settled_ms = calls
        .iter()
        .filter_map(|(started, _)| {
            let end = got.merge_ends.iter().find(|end| *end > started)?;
            Some(end.duration_since(*started).as_secs_f64() * 1e3)
        })
        .collect();
    Outcome {
        published,
        delivered: got.sequences.len() as u64,
        lost,
        duplicates,
        reordered,
        switch_ms: calls.iter().map(|(_, d)| d.as_secs_f64() * 1e3).collect(),
        settled_ms,
        max_gap_ms,
    }
}

/// The table rows.
pub(crate) fn figures(all: &[ScenarioReport]) -> Vec<Figure> {
    let Some(report) = all.iter().find(|r| r.id == ID) else { return Vec::new() };
    let k = |metric: &str| report.series(Client::Kinopio, metric);
    vec![
        Figure::single("switch_lost", ID, "hot switch: lost deliveries per round", k("lost"), Target::Zero),
        Figure::single(
            "switch_duplicates",
            ID,
            "hot switch: duplicate deliveries per round",
            k("duplicates"),
            Target::Zero,
        ),
        Figure::single(
            "switch_reordered",
            ID,
            "hot switch: out-of-order deliveries per round",
            k("reordered"),
            Target::Report,
        ),
        Figure::single("switch_call", ID, "hot switch: `switch_to` call", k("switch_ms"), Target::Report),
        Figure::single(
            "switch_settled",
            ID,
            "hot switch: start → back on one connection",
            k("settled_ms"),
            Target::Report,
        )
        .with_note("observed at the first delivery after the merge (subscription Debug output)"),
        Figure::single(
            "switch_max_gap",
            ID,
            "hot switch: longest pause between deliveries",
            k("max_gap_ms"),
            Target::Report,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analysis_counts_lost_duplicate_and_reordered() {
        let t = Instant::now();
        let got = Received {
            sequences: vec![0, 1, 1, 3, 2, 9],
            arrivals: vec![t, t + Duration::from_millis(1), t + Duration::from_millis(5)],
            merge_ends: vec![t + Duration::from_millis(4)],
        };
        let o = analyse(5, &got, &[(t, Duration::from_millis(2))]);
        assert_eq!((o.lost, o.duplicates, o.reordered), (1, 2, 1)); // 4 lost; 1 twice and 9 extra; 2 after 3
        assert_eq!(o.delivered, 6);
        assert!((o.max_gap_ms - 4.0).abs() < 1e-6);
        assert_eq!(o.settled_ms.len(), 1);
        assert!((o.settled_ms[0] - 4.0).abs() < 1e-6);
        assert_eq!(o.switch_ms, vec![2.0]);
    }
}
