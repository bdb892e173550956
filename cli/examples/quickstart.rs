//! The README's quick start: a service, a request, a subscription and value tracking.
//!
//! Needs a NATS server: `kinopio leaf start` prints one (its `client_url`), or run any
//! `nats-server`. Then:
//!
//! ```text
//! cargo run -p kinopio-cli --example quickstart -- nats://127.0.0.1:4222
//! ```

use std::time::Duration;

use futures::StreamExt;
use kinopio::{Hub, HubOptions, Message};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = std::env::args().nth(1).unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned());
    let hub = Hub::connect(HubOptions::new().servers([server])?).await?;

    // A remote function: subject "math.double", queue group "math.double.service".
    let double = hub.scope("math")?.variable("double")?;
    let service = double
        .serve(|req: Message| async move {
            let n: i64 = req.decode()?;
            Ok::<_, kinopio::DecodeError>(n * 2)
        })
        .await?;
    let answer: i64 = double.request(&21).await?;
    println!("math.double(21) = {answer}");

    // A remote variable: subject "chat.messages".
    let messages = hub.scope("chat")?.variable("messages")?;
    let mut incoming = messages.subscribe().await?;
    messages.publish(&serde_json::json!({"from": "quickstart", "text": "hello"})).await?;
    let msg = tokio::time::timeout(Duration::from_secs(5), incoming.next()).await?.ok_or("no message")?;
    println!("{} <- {}", msg.subject, msg.value());
    println!("latest value of chat.messages: {:?}", messages.value());

    service.stop().await;
    hub.close().await;
    Ok(())
}
