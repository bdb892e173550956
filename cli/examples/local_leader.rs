//! Local-leader discovery end to end: a hub on a "remote" server finds a local leaf through
//! its HTTPS manifest and hot-switches to it, then falls back when the leaf stops.
//!
//! ```text
//! KINOPIO_NATS_SERVER=/path/to/nats-server cargo run -p kinopio-cli --example local_leader -- nats://127.0.0.1:4222
//! ```
//!
//! The argument is the remote (backbone) server; it must accept leafnode connections on
//! port 7422 of the same host (`nats-server --leafnodes nats://0.0.0.0:7422` or a config with
//! `leafnodes { listen: "127.0.0.1:7422" }`), or pass the leafnode URL as a second argument.

use std::time::Duration;

use futures::StreamExt;
use kinopio::{DiscoveryOptions, Hub, HubEvent, HubOptions, SwitchReason};
use kinopio_leaf::runtime::{LeafNode, LeafOptions};
use kinopio_leaf::tls::TrustStoreConfig;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let remote = std::env::args().nth(1).unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned());
    let leafnodes = std::env::args().nth(2).unwrap_or_else(|| "nats://127.0.0.1:7422".to_owned());
    let cache = tempfile::tempdir()?;
    let discovery_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let leaf_options = LeafOptions::new()
        .backbone_server(&leafnodes)
        .cache_dir(cache.path())
        .discovery_port(discovery_port)
        .lan_bind_address("127.0.0.1".parse()?)
        .trust_store(TrustStoreConfig::none());

    // The hub starts on the remote server and looks for a leader in the background.
    let hub = Hub::new(HubOptions::new().servers([remote.as_str()])?.discovery(DiscoveryOptions {
        manifest_url: Some(format!("https://127.0.0.1:{discovery_port}/.well-known/kinopio-leader.json")),
        ca_file: Some(leaf_options.ca_dir().join("ca-cert.pem")),
        probe_interval: Duration::from_millis(500),
        ..Default::default()
    }));
    let mut events = hub.events();
    hub.wait_connected(Duration::from_secs(5)).await?;
    println!("connected to {}", hub.server().map(|s| s.to_string()).unwrap_or_default());

    let leaf = LeafNode::start(leaf_options).await?;
    println!("leaf started: {} (manifest {})", leaf.urls().client_url, leaf.urls().discovery_url);
    wait_for(&mut events, SwitchReason::LocalLeader).await?;
    println!("switched to the local leader: {}", hub.server().map(|s| s.to_string()).unwrap_or_default());

    leaf.stop().await;
    wait_for(&mut events, SwitchReason::LocalLeaderLost).await?;
    println!("leaf gone, back on {}", hub.server().map(|s| s.to_string()).unwrap_or_default());
    hub.close().await;
    Ok(())
}

async fn wait_for(
    events: &mut (impl futures::Stream<Item = HubEvent> + Unpin),
    reason: SwitchReason,
) -> Result<(), Box<dyn std::error::Error>> {
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(event) = events.next().await {
            if matches!(event, HubEvent::ServerSwitched { reason: r, .. } if r == reason) {
                return;
            }
        }
    })
    .await
    .map_err(|_| format!("no {reason:?} switch within 20 s").into())
}
