//! Latency probes, the executor of [`Ranking`](crate::selection::ranking::Ranking): a short-lived
//! connection per server, RTT = one round trip after connect.

use futures::future::join_all;

use super::connection::{round_trip, security};
use crate::options::HubOptions;
use crate::selection::ProbeResult;
use crate::server::ServerUrl;

/// Probes every server in parallel, each bounded by the probe timeout. Results are in input
/// order.
pub(super) async fn probe_all(options: &HubOptions, servers: &[ServerUrl]) -> Vec<ProbeResult> {
    join_all(servers.iter().map(|s| probe_one(options, s))).await
}

/// Probes one server: connect (same TLS, name and echo settings as the hub), one round trip,
/// close.
pub(crate) async fn probe_one(options: &HubOptions, server: &ServerUrl) -> ProbeResult {
    let limit = options.probe_timeout;
    let attempt = async {
        let addr = server.to_server_addr().map_err(|e| e.to_string())?;
        let mut nats = async_nats::ConnectOptions::new()
            .connection_timeout(limit)
            .max_reconnects(Some(0))
            .ignore_discovered_servers()
            .request_timeout(Some(limit));
        if let Some(name) = &options.name {
            nats = nats.name(format!("{name} (probe)"));
        }
        nats = security(options, nats.no_echo());
        let client = nats.connect(addr).await.map_err(|e| e.to_string())?;
        let rtt = round_trip(&client, limit).await.map_err(|e| e.to_string());
        drop(client);
        rtt
    };
    let outcome = match tokio::time::timeout(limit, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
    };
    match outcome {
        Ok(rtt) => ProbeResult { server: server.clone(), rtt: Some(rtt), error: None },
        Err(error) => {
            tracing::debug!(server = %server, %error, "probe failed");
            ProbeResult { server: server.clone(), rtt: None, error: Some(error) }
        }
    }
}
