//! Protocol 4 (kinopio-hub 3.0.0), the README's example: shared variables that a late
//! joiner syncs and watches, an event with headers, a request to a handler, the instance
//! list, and a live channel.
//!
//! Needs a NATS server, then:
//!
//! ```text
//! cargo run -p kinopio-cli --example shared_state -- nats://127.0.0.1:4222
//! ```
//!
//! Two hubs stand for two programs (or devices) in the namespace `workshop`; a Python
//! program with `KinopioHub("workshop", servers=…)` would see the same variables.

use std::time::Duration;

use futures::StreamExt;
use kinopio::p4::{LiveOptions, Message, Online};
use kinopio::{Hub, HubOptions};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Battery {
    level: u8,
    charging: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = std::env::args().nth(1).unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned());
    let wait = Duration::from_secs(10);

    // The first program sets a variable; it is held by every instance of the namespace.
    let robot = Hub::connect(HubOptions::new().servers([server.as_str()])?).await?;
    let workshop = robot.namespace("workshop")?;
    workshop.wait_synced(wait).await?;
    let battery = workshop.var::<Battery>("battery")?;
    battery.set(&Battery { level: 80, charging: false })?; // committed at once, sent when connected
    battery.confirmed(wait).await?; // the server has it

    // A second program joins later and syncs what the namespace holds.
    let panel = Hub::connect(HubOptions::new().servers([server.as_str()])?).await?;
    let view = panel.namespace("workshop")?;
    let report = view.wait_synced(wait).await?;
    println!("synced {} record(s) ({:?})", report.stored, report.end);
    let seen = view.var::<Battery>("battery")?;
    println!("battery = {:?}", seen.get()?);

    // It watches; the first program writes again.
    let mut changes = seen.watch();
    changes.next().await; // the current value
    battery.set(&Battery { level: 79, charging: true })?;
    let update = tokio::time::timeout(wait, changes.next()).await?.ok_or("watch ended")??;
    println!("battery changed to {:?} (version {})", update.value, update.version.counter);

    // Deletes are versioned too.
    battery.delete()?;
    workshop.flush(wait).await?;
    let update = tokio::time::timeout(wait, changes.next()).await?.ok_or("watch ended")??;
    println!("battery deleted: {}", update.value.is_none());

    // Events with headers, on topics with patterns.
    let mut temps = view.subscribe("sensor.*").await?;
    workshop.publish_with_headers("sensor.temp", &21.5, [("X-Trace", "op-42")]).await?;
    let event = tokio::time::timeout(wait, temps.next()).await?.ok_or("no event")?;
    println!("event {} = {} (x-trace {:?})", event.topic(), event.value::<f64>()?, event.headers().get("x-trace"));

    // A request answered by a handler in the other program.
    let lamp = view
        .handle("lamp.toggle", |m: Message| async move { Ok::<_, kinopio::p4::Error>(!m.value::<bool>()?) })
        .await?;
    let reply = workshop.request("lamp.toggle", &true, wait).await?;
    println!("lamp.toggle(true) = {}", reply.value::<bool>()?);
    lamp.stop(wait).await;

    // Presence: the instances of the namespace, from their health reports.
    workshop.report_health().await?;
    let deadline = tokio::time::Instant::now() + wait;
    while view.instances().iter().filter(|i| i.online == Online::Online).count() < 2 {
        if tokio::time::Instant::now() > deadline {
            return Err("the other instance did not report".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("{} instances online", view.instances().iter().filter(|i| i.online == Online::Online).count());

    // A live channel: a leased, sequence-checked control input.
    let mut drive = view.live("drive")?.subscribe(LiveOptions::new()).await?;
    let sent = workshop.live("drive")?.send(&serde_json::json!({"speed": 0.5})).await?;
    let got = tokio::time::timeout(wait, drive.next()).await?.ok_or("no live value")?;
    println!(
        "live drive: sent ({sent:?}), received {} (seq {})",
        serde_json::Value::from(got.value()),
        got.context().seq()
    );

    panel.close().await;
    robot.close().await;
    Ok(())
}
