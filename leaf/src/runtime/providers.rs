//! What the discovery server serves for a manual leaf: the manifest (5 s TTL,
//! `generatedAt`) and `/healthz`, both built from the cached status without I/O.

use std::sync::{Arc, RwLock};

use time::OffsetDateTime;
use tokio::sync::watch;

use super::error::LeafError;
use super::status::{LeafState, LeafStatus, LeafUrls};
use crate::discovery_server::{HealthProvider, HealthReport, ManifestProvider};
use kinopio::wire::manifest::{
    BridgeState, LeaderAdvert, LeaderManifest, ListenerUrls, MANUAL_MANIFEST_TTL, ManifestInputs, ManifestMode,
    ManifestUrl,
};

/// The leaf's URLs as the wire carries them (checked once, at start).
pub(crate) fn listener_urls(urls: &LeafUrls) -> Result<ListenerUrls, LeafError> {
    let parse = |text: &str| {
        ManifestUrl::parse(text).map_err(|err| LeafError::InvalidOption {
            option: "advertised host",
            reason: format!("it gives the URL {text:?}, which does not parse: {err}"),
        })
    };
    Ok(ListenerUrls {
        advertised_hostname: urls.advertised_host.clone(),
        wss_url: parse(&urls.wss_url)?,
        client_url: parse(&urls.client_url)?,
        monitor_url: parse(&urls.monitor_url)?,
        discovery_url: parse(&urls.discovery_url)?,
    })
}

/// The manifest inputs of a manual leaf (epoch 0, no backbone RTT).
pub(crate) fn manifest_inputs(
    node_id: &str,
    listeners: ListenerUrls,
    backbone_servers: &[String],
    ca_cert_sha256: &str,
) -> ManifestInputs {
    ManifestInputs {
        node_id: node_id.to_owned(),
        advert: LeaderAdvert {
            listeners,
            bridge_state: BridgeState::Connecting,
            backbone_servers: backbone_servers.to_vec(),
        },
        leader_epoch: 0,
        backbone_rtt_ms: None,
        mode: ManifestMode::Manual,
        ca_cert_sha256: Some(ca_cert_sha256.to_owned()),
    }
}

/// The manual-mode manifest (5 s TTL, `generatedAt`) built from the cached status; `None`
/// while nats-server is not ready. No I/O.
pub(crate) fn manual_manifest_provider(
    inputs: ManifestInputs,
    status: watch::Receiver<LeafStatus>,
    override_slot: Arc<RwLock<Option<ManifestProvider>>>,
) -> ManifestProvider {
    Arc::new(move || {
        let custom = override_slot.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        if let Some(custom) = custom {
            return custom();
        }
        let (ready, bridge) = {
            let current = status.borrow();
            (current.server_ready && current.state == LeafState::Running, current.bridge_state)
        };
        if !ready {
            return None;
        }
        let mut inputs = inputs.clone();
        inputs.advert.bridge_state = bridge;
        Some(LeaderManifest::build(&inputs, OffsetDateTime::now_utc(), MANUAL_MANIFEST_TTL))
    })
}

/// `/healthz`: ok when nats-server is ready, with the lifecycle and bridge state.
pub(crate) fn health_provider(status: watch::Receiver<LeafStatus>) -> HealthProvider {
    Arc::new(move || {
        let current = status.borrow();
        HealthReport::new(current.server_ready && current.state == LeafState::Running)
            .with("state", current.state.as_str())
            .with("bridgeState", current.bridge_state.as_str())
            .with("nodeId", current.node_id.clone())
            .with("restarts", current.restarts)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery_server::HealthReport;

    fn urls() -> LeafUrls {
        LeafUrls {
            client_url: "nats://127.0.0.1:4222".into(),
            wss_url: "wss://[fd00::5]:4443".into(),
            discovery_url: "https://[fd00::5]:8443/.well-known/kinopio-leader.json".into(),
            monitor_url: "http://127.0.0.1:8222".into(),
            advertised_host: "fd00::5".into(),
        }
    }

    #[test]
    fn manifest_follows_the_cached_status() {
        let inputs = manifest_inputs("n1", listener_urls(&urls()).unwrap(), &["nats://hub:7422".into()], "ab");
        let (tx, rx) = watch::channel(super::super::status::tests::sample());
        let slot = Arc::new(RwLock::new(None));
        let provider = manual_manifest_provider(inputs, rx.clone(), slot.clone());
        let manifest = provider().unwrap();
        assert_eq!(manifest.node_id, "n1");
        assert_eq!(manifest.wss_url.as_str(), "wss://[fd00::5]:4443");
        assert_eq!(manifest.bridge_state, BridgeState::Connecting);
        assert_eq!(manifest.backbone_servers, ["nats://hub:7422"]);
        assert_eq!(manifest.ca_cert_sha256.as_deref(), Some("ab"));
        assert!(manifest.generated_at.is_some());

        tx.send_modify(|status| status.bridge_state = BridgeState::Connected);
        assert_eq!(provider().unwrap().bridge_state, BridgeState::Connected);
        tx.send_modify(|status| status.server_ready = false);
        assert!(provider().is_none(), "no manifest while nats-server is not ready");

        let custom = provider_returning(manifest_inputs("other", listener_urls(&urls()).unwrap(), &[], "cd"));
        *slot.write().unwrap() = Some(custom);
        assert_eq!(provider().unwrap().node_id, "other");

        let health: HealthReport = health_provider(rx)();
        assert!(!health.ok);
        assert_eq!(health.details()["bridgeState"], "connected");
    }

    fn provider_returning(inputs: ManifestInputs) -> ManifestProvider {
        Arc::new(move || Some(LeaderManifest::build(&inputs, OffsetDateTime::now_utc(), MANUAL_MANIFEST_TTL)))
    }
}
