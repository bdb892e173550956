//! Protocol 4 (kinopio-hub 3.0.0): shared variables that a late joiner syncs, watched live.
//! The README's protocol-4 example.
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

    panel.close().await;
    robot.close().await;
    Ok(())
}
