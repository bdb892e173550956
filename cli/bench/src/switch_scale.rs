//! Scenario `switch-scale` (kinopio only): a hot switch with N live subscriptions, for N over
//! a series (1 000, 10 000). A subscribing hub holds N variables and is moved back and forth
//! with `Hub::switch_to` between the two servers of a 2-node nats-server cluster (started
//! by the bench; with `--server` it cannot, and falls back to two URLs of that server, direct
//! and through a [`Forwarder`]); a raw publisher on the first server sends numbered messages
//! at a steady rate, round robin over the N subjects, so after a switch they cross the route. Counted: messages lost and delivered twice; timed: each `switch_to` call
//! and the time from its start to [`HubEvent::SwitchSettled`] — every subscription's merge
//! finished and nothing left on the old connection ("back on one connection").

use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use futures::StreamExt;
use kinopio::{Confirmation, Hub, HubEvent, HubOptions, SelectionMode};
use serde_json::json;
use tokio::sync::{oneshot, watch};

use super::Ctx;
use super::clients::{Client, Conn};
use super::error::BenchError;
use super::forward::Forwarder;
use super::hot_switch::{PAYLOAD_BYTES, parse_url, socket_addr};
use super::many_subs::metric;
use super::report::{Figure, ScenarioReport, Target, Unit};

/// Scenario id.
pub(crate) const ID: &str = "switch-scale";
/// What it measures.
pub(crate) const TITLE: &str =
    "hot switch with N live subscriptions (a series over N) under a steady publish rate, round robin over them";
/// How long after publishing stops late (duplicate) deliveries are still counted.
const SETTLE: Duration = Duration::from_millis(300);

/// One round's outcome.
#[derive(Debug)]
struct Outcome {
    published: u64,
    delivered: u64,
    lost: u64,
    duplicates: u64,
    switch_ms: Vec<f64>,
    settled_ms: Vec<f64>,
}

/// Runs the scenario.
pub(crate) async fn run(ctx: &Ctx<'_>) -> Result<ScenarioReport, BenchError> {
    let s = &ctx.settings;
    let mut report = ScenarioReport::new(
        ID,
        TITLE,
        json!({
            "subscriptions": s.switch_scale_subs, "switches_per_round": s.switch_scale_switches,
            "publish_rate_per_s": s.switch_rate, "switch_interval_ms": s.switch_interval.as_millis() as u64,
            "rounds": s.rounds, "overlap": "HubOptions default (200 ms)",
            "setup": "Confirmation::Ordered + one confirm (the subscribe cost is measured by many-subs)",
        }),
    );
    let cluster = match ctx.server.start_cluster_pair().await {
        Ok(pair) => Some(pair),
        Err(e) => {
            ctx.progress(&format!("{ID}: no cluster ({e}); switching between two URLs of the one server"));
            None
        }
    };
    report.params["topology"] = json!(if cluster.is_some() {
        "2-node cluster, publisher on the first node"
    } else {
        "one server, two URLs (direct and a TCP forwarder)"
    });
    let urls = cluster.as_ref().map(|(a, b)| (a.url().to_owned(), b.url().to_owned()));
    let result = run_series(ctx, urls, &mut report).await;
    if let Some((a, b)) = cluster {
        a.stop().await;
        b.stop().await;
    }
    result.map(|()| report)
}

async fn run_series(
    ctx: &Ctx<'_>,
    cluster: Option<(String, String)>,
    report: &mut ScenarioReport,
) -> Result<(), BenchError> {
    let s = &ctx.settings;
    for &n in &s.switch_scale_subs {
        for round in 0..s.rounds {
            let o = run_once(ctx, n, cluster.as_ref()).await?;
            ctx.progress(&format!(
                "{ID} {n} round {}: {} published, {} lost, {} duplicates, switch_to {:?} ms, settled {:?} ms",
                round + 1,
                o.published,
                o.lost,
                o.duplicates,
                o.switch_ms.iter().map(|ms| ms.round()).collect::<Vec<_>>(),
                o.settled_ms.iter().map(|ms| ms.round()).collect::<Vec<_>>()
            ));
            report.runs.push(json!({
                "subscriptions": n, "round": round, "published": o.published, "delivered": o.delivered,
                "lost": o.lost, "duplicates": o.duplicates, "switch_ms": o.switch_ms, "settled_ms": o.settled_ms,
            }));
            report.push(Client::Kinopio, &metric("lost", n), Unit::Count, o.lost as f64);
            report.push(Client::Kinopio, &metric("duplicates", n), Unit::Count, o.duplicates as f64);
            for ms in &o.switch_ms {
                report.push(Client::Kinopio, &metric("switch_ms", n), Unit::Millis, *ms);
            }
            for ms in &o.settled_ms {
                report.push(Client::Kinopio, &metric("settled_ms", n), Unit::Millis, *ms);
            }
            if o.settled_ms.len() < o.switch_ms.len() {
                report.flags.push(format!(
                    "{n} round {}: {} of {} switches never settled",
                    round + 1,
                    o.switch_ms.len() - o.settled_ms.len(),
                    o.switch_ms.len()
                ));
            }
        }
    }
    Ok(())
}

async fn run_once(ctx: &Ctx<'_>, n: usize, cluster: Option<&(String, String)>) -> Result<Outcome, BenchError> {
    let s = &ctx.settings;
    // The hub starts on `first` (where the publisher is) and switches to `second` and back.
    let (forwarder, first_url, second_url) = match cluster {
        Some((a, b)) => (None, a.clone(), b.clone()),
        None => {
            let forwarder = Forwarder::start(socket_addr(ctx.url()).await?).await?;
            let url = forwarder.url();
            (Some(forwarder), ctx.url().to_owned(), url)
        }
    };
    let direct = parse_url(&first_url)?;
    let forwarded = parse_url(&second_url)?;
    let options = HubOptions::new()
        .servers([first_url.clone(), second_url.clone()])
        .map_err(|e| BenchError::client("kinopio", "parse server URL", e))?
        .selection(SelectionMode::Ordered)
        .reprobe_interval(None)
        .subscribe_confirmation(Confirmation::Ordered)
        .name("bench-switch-scale");
    let hub = Hub::connect(options).await.map_err(|e| BenchError::Connect {
        client: "kinopio",
        url: first_url.clone(),
        detail: e.to_string(),
    })?;
    let prefix = ctx.subject("ss");
    let subjects: Vec<String> = (0..n).map(|i| format!("{prefix}.v{i}")).collect();
    let checkpoint = hub.checkpoint().ok_or_else(|| BenchError::Child("the hub has no connection".to_owned()))?;
    let mut subscriptions = Vec::with_capacity(n);
    for subject in &subjects {
        subscriptions.push(
            hub.variable(subject)
                .map_err(|e| BenchError::client("kinopio", "variable", e))?
                .subscribe()
                .await
                .map_err(|e| BenchError::client("kinopio", "subscribe", e))?,
        );
    }
    hub.confirm(&checkpoint).await.map_err(|e| BenchError::client("kinopio", "confirm", e))?;
    let publisher_conn = Conn::connect(Client::Raw, &first_url, "bench-switch-scale-pub", 65_536).await?;
    let Conn::Raw { client: publisher, .. } = &publisher_conn else {
        return Err(BenchError::Child("the publisher is not a raw client".to_owned()));
    };
    let nats_subjects: Vec<async_nats::Subject> =
        subjects.iter().map(|s| async_nats::Subject::from(s.as_str())).collect();
    let mut events = hub.events();

    // Receiver: every sequence number, from all N subscriptions.
    let (count_tx, mut count_rx) = watch::channel(0u64);
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let receiver = tokio::spawn(async move {
        let mut all = futures::stream::select_all(subscriptions);
        let mut sequences = Vec::new();
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                msg = all.next() => {
                    let Some(msg) = msg else { break };
                    let seq = msg.payload.get(..8).and_then(|b| b.try_into().ok()).map_or(u64::MAX, u64::from_be_bytes);
                    sequences.push(seq);
                    count_tx.send_replace(sequences.len() as u64);
                }
            }
        }
        sequences
    });

    // Publisher: a steady rate, round robin over the subjects, until told to stop.
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
                    let subject = nats_subjects[usize::try_from(seq).unwrap_or(0) % n.max(1)].clone();
                    publisher
                        .publish(subject, payload.freeze())
                        .await
                        .map_err(|e| BenchError::client("raw async-nats", "publish", e))?;
                    seq += 1;
                }
            }
        }
        Ok::<u64, BenchError>(seq)
    };

    // Switcher: one interval of steady state, then switches; each waits for its
    // `SwitchSettled` (bounded by the run's deadline) before the next interval.
    let switching = async {
        let mut calls = Vec::new();
        let mut settled = Vec::new();
        tokio::time::sleep(s.switch_interval).await;
        for i in 0..s.switch_scale_switches {
            let target = if i % 2 == 0 { &forwarded } else { &direct };
            let started = Instant::now();
            hub.switch_to(target).await.map_err(|e| BenchError::client("kinopio", "switch_to", e))?;
            calls.push(started.elapsed().as_secs_f64() * 1e3);
            let wait = async {
                while let Some(event) = events.next().await {
                    if matches!(event, HubEvent::SwitchSettled { .. }) {
                        return true;
                    }
                }
                false
            };
            if let Ok(true) = tokio::time::timeout_at(ctx.deadline(), wait).await {
                settled.push(started.elapsed().as_secs_f64() * 1e3);
            }
            tokio::time::sleep(s.switch_interval).await;
        }
        let _ = pub_stop_tx.send(());
        Ok::<_, BenchError>((calls, settled))
    };
    let (published, (switch_ms, settled_ms)) =
        tokio::time::timeout_at(ctx.deadline(), async { tokio::try_join!(publishing, switching) })
            .await
            .map_err(|_| BenchError::Timeout("the switch-scale round did not finish in time".to_owned()))??;
    let _ = publisher.flush().await;
    let _ = tokio::time::timeout_at(ctx.deadline(), count_rx.wait_for(|c| *c >= published)).await;
    tokio::time::sleep(SETTLE).await;
    let _ = stop_tx.send(());
    let sequences = receiver.await.map_err(|e| BenchError::client("kinopio", "receive", e))?;
    publisher_conn.close().await;
    hub.close().await;
    drop(forwarder);
    let (lost, duplicates) = count(published, &sequences);
    Ok(Outcome { published, delivered: sequences.len() as u64, lost, duplicates, switch_ms, settled_ms })
}

/// Lost and duplicated (or unknown) sequence numbers among `published`.
fn count(published: u64, sequences: &[u64]) -> (u64, u64) {
    let mut seen = vec![0u32; usize::try_from(published).unwrap_or(0)];
    let mut duplicates = 0u64;
    for &seq in sequences {
        match usize::try_from(seq).ok().and_then(|i| seen.get_mut(i)) {
            Some(c) if *c > 0 => duplicates += 1,
            Some(c) => *c += 1,
            None => duplicates += 1,
        }
    }
    (seen.iter().filter(|c| **c == 0).count() as u64, duplicates)
}

/// The table rows.
pub(crate) fn figures(all: &[ScenarioReport], counts: &[usize]) -> Vec<Figure> {
    let Some(report) = all.iter().find(|r| r.id == ID) else { return Vec::new() };
    let k = |m: &str, n: usize| report.series(Client::Kinopio, &metric(m, n));
    let mut figures = Vec::new();
    for &n in counts {
        figures.push(
            Figure::single(
                &format!("switch_scale_lost@{n}"),
                ID,
                &format!("hot switch, {n} live subscriptions: lost deliveries per round"),
                k("lost", n),
                Target::Zero,
            )
            .with_flags(&report.flags),
        );
        figures.push(Figure::single(
            &format!("switch_scale_duplicates@{n}"),
            ID,
            &format!("hot switch, {n} live subscriptions: duplicate deliveries per round"),
            k("duplicates", n),
            Target::Zero,
        ));
        figures.push(Figure::single(
            &format!("switch_scale_call@{n}"),
            ID,
            &format!("hot switch, {n} live subscriptions: `switch_to` call"),
            k("switch_ms", n),
            Target::Report,
        ));
        figures.push(
            Figure::single(
                &format!("switch_scale_settled@{n}"),
                ID,
                &format!("hot switch, {n} live subscriptions: start → back on one connection"),
                k("settled_ms", n),
                Target::Report,
            )
            .with_note("until HubEvent::SwitchSettled: every merge finished, the old subscriptions drained"),
        );
    }
    figures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lost_and_duplicates() {
        assert_eq!(count(5, &[0, 1, 1, 3, 2, 9]), (1, 2));
        assert_eq!(count(0, &[]), (0, 0));
    }
}
