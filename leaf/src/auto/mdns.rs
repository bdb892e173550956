//! The leader's mDNS advertisement: `_kinopio-hub._tcp.local.` with the TXT keys of
//! kinopio-hub 0.1.1 (`nodeId`, `namespace`, `wssUrl`, `discoveryUrl`, `candidateRole`,
//! `leaderEpoch`), a per-node instance and host name (0.1.1's collide, [0.1.1 weakness M1](kinopio::wire::protocol#known-weaknesses-of-011-that-kinopio-fixes)), and the
//! discovery server's port.
//!
//! The mDNS daemon (mdns-sd, its own thread) is created on the first publish and restricted
//! to the interfaces the election uses, so a loopback-only run never announces on a real
//! network. A record is (re-)registered only when it changed (0.1.1 re-announces on every
//! tick, [0.1.1 weakness M2](kinopio::wire::protocol#known-weaknesses-of-011-that-kinopio-fixes)). No call here blocks: registration and withdrawal are messages to the
//! daemon; only [`MdnsAdvertiser::shutdown`] waits, briefly, for the goodbye packets.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo};

use kinopio::wire::mdns::{MdnsAdvert, SERVICE_TYPE};

/// How long [`MdnsAdvertiser::shutdown`] waits for the withdrawal to be sent.
const GOODBYE_WAIT: Duration = Duration::from_secs(1);

/// Why a record could not be published (the election goes on without it).
#[derive(Debug, thiserror::Error)]
pub enum MdnsError {
    /// The daemon could not start or refused the record.
    #[error("mDNS advertisement failed: {0}")]
    Daemon(#[from] mdns_sd::Error),
    /// The discovery URL has no usable port.
    #[error("cannot advertise {url:?} over mDNS: the URL has no host or port")]
    BadUrl {
        /// The discovery URL.
        url: String,
    },
}

/// Publishes and withdraws this node's leader record.
pub struct MdnsAdvertiser {
    interfaces: Vec<String>,
    daemon: Option<ServiceDaemon>,
    published: Option<(String, MdnsAdvert)>,
}

impl std::fmt::Debug for MdnsAdvertiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MdnsAdvertiser")
            .field("interfaces", &self.interfaces)
            .field("running", &self.daemon.is_some())
            .field("published", &self.published)
            .finish()
    }
}

impl MdnsAdvertiser {
    /// An advertiser restricted to these interface names (the ones the election joined).
    /// Nothing starts until the first [`publish`](Self::publish).
    pub fn new(interfaces: Vec<String>) -> MdnsAdvertiser {
        MdnsAdvertiser { interfaces, daemon: None, published: None }
    }

    /// `true` while a record is registered.
    pub fn is_published(&self) -> bool {
        self.published.is_some()
    }

    /// The record registered now.
    pub fn published(&self) -> Option<&MdnsAdvert> {
        self.published.as_ref().map(|(_, advert)| advert)
    }

    /// Follows the election's interface set (new interfaces are enabled in the daemon).
    pub fn set_interfaces(&mut self, interfaces: Vec<String>) {
        if let Some(daemon) = &self.daemon {
            for name in interfaces.iter().filter(|name| !self.interfaces.contains(name)) {
                if let Err(err) = daemon.enable_interface(IfKind::Name(name.clone())) {
                    tracing::debug!(interface = %name, error = %err, "mDNS interface not enabled");
                }
            }
            for name in self.interfaces.iter().filter(|name| !interfaces.contains(name)) {
                if let Err(err) = daemon.disable_interface(IfKind::Name(name.clone())) {
                    tracing::debug!(interface = %name, error = %err, "mDNS interface not disabled");
                }
            }
        }
        self.interfaces = interfaces;
    }

    /// Registers `advert` (or updates the registered one); nothing happens when it is the
    /// record already published.
    pub fn publish(&mut self, advert: &MdnsAdvert) -> Result<(), MdnsError> {
        if self.published.as_ref().is_some_and(|(_, current)| current == advert) {
            return Ok(());
        }
        let info = service_info(advert)?;
        let previous = self.published.take();
        let daemon = self.daemon()?;
        if let Some((fullname, _)) = previous
            && fullname != info.get_fullname()
        {
            let _ = daemon.unregister(&fullname);
        }
        let fullname = info.get_fullname().to_owned();
        daemon.register(info)?;
        tracing::info!(instance = %fullname, epoch = advert.leader_epoch, "mDNS leader record published");
        self.published = Some((fullname, advert.clone()));
        Ok(())
    }

    /// Withdraws the record (goodbye packets), if one is registered.
    pub fn withdraw(&mut self) {
        if let (Some(daemon), Some((fullname, _))) = (&self.daemon, self.published.take()) {
            match daemon.unregister(&fullname) {
                Ok(_) => tracing::info!(instance = %fullname, "mDNS leader record withdrawn"),
                Err(err) => tracing::warn!(instance = %fullname, error = %err, "mDNS withdrawal failed"),
            }
        }
    }

    /// Withdraws the record, waits up to a second for the goodbye to go out, and stops the
    /// daemon.
    pub async fn shutdown(mut self) {
        let Some(daemon) = self.daemon.take() else { return };
        if let Some((fullname, _)) = self.published.take()
            && let Ok(done) = daemon.unregister(&fullname)
        {
            let _ = tokio::time::timeout(GOODBYE_WAIT, done.recv_async()).await;
        }
        if let Ok(done) = daemon.shutdown() {
            let _ = tokio::time::timeout(GOODBYE_WAIT, done.recv_async()).await;
        }
    }

    fn daemon(&mut self) -> Result<&ServiceDaemon, MdnsError> {
        if self.daemon.is_none() {
            let daemon = ServiceDaemon::new()?;
            daemon.disable_interface(IfKind::All)?;
            for name in &self.interfaces {
                daemon.enable_interface(IfKind::Name(name.clone()))?;
            }
            self.daemon = Some(daemon);
        }
        match &self.daemon {
            Some(daemon) => Ok(daemon),
            None => unreachable!("the daemon was just created"),
        }
    }
}

impl Drop for MdnsAdvertiser {
    fn drop(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            if let Some((fullname, _)) = self.published.take() {
                let _ = daemon.unregister(&fullname);
            }
            let _ = daemon.shutdown();
        }
    }
}

/// The service record of `advert`: instance and host names from
/// [`MdnsAdvert::instance_name`]/[`MdnsAdvert::host_name`], the discovery URL's port, its host
/// as the address when it is an IPv4 literal (else the enabled interfaces' addresses).
pub(crate) fn service_info(advert: &MdnsAdvert) -> Result<ServiceInfo, MdnsError> {
    let url =
        url::Url::parse(&advert.discovery_url).map_err(|_| MdnsError::BadUrl { url: advert.discovery_url.clone() })?;
    let port = url.port_or_known_default().ok_or_else(|| MdnsError::BadUrl { url: advert.discovery_url.clone() })?;
    let address: Option<Ipv4Addr> = match url.host() {
        Some(url::Host::Ipv4(ip)) if !ip.is_unspecified() => Some(ip),
        _ => None,
    };
    let txt: Vec<(&str, String)> = advert.txt_records();
    let addresses: Vec<IpAddr> = address.map(IpAddr::V4).into_iter().collect();
    let info =
        ServiceInfo::new(SERVICE_TYPE, &advert.instance_name(), &advert.host_name(), &addresses[..], port, &txt[..])?;
    Ok(if addresses.is_empty() { info.enable_addr_auto() } else { info })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_the_reference_txt_keys_and_unique_names() {
        let advert = MdnsAdvert {
            namespace: "room-1".into(),
            node_id: "kinopio-b6a027cb-10586".into(),
            wss_url: "wss://10.77.0.1:4443".into(),
            discovery_url: "https://10.77.0.1:8443/.well-known/kinopio-leader.json".into(),
            leader_epoch: 3,
        };
        let info = service_info(&advert).unwrap();
        assert_eq!(info.get_port(), 8443);
        assert!(info.get_fullname().starts_with("KinopioHub-room-1-"));
        assert!(info.get_fullname().ends_with("._kinopio-hub._tcp.local."));
        assert_eq!(info.get_hostname(), advert.host_name());
        assert_eq!(info.get_property_val_str("nodeId"), Some("kinopio-b6a027cb-10586"));
        assert_eq!(info.get_property_val_str("namespace"), Some("room-1"));
        assert_eq!(info.get_property_val_str("candidateRole"), Some("leader"));
        assert_eq!(info.get_property_val_str("leaderEpoch"), Some("3"));
        assert!(info.get_addresses_v4().contains(&"10.77.0.1".parse::<Ipv4Addr>().unwrap()));
        let named = MdnsAdvert { discovery_url: "https://leaf.local:8443/x".into(), ..advert.clone() };
        assert!(service_info(&named).unwrap().is_addr_auto());
        let broken = MdnsAdvert { discovery_url: "nonsense".into(), ..advert };
        assert!(matches!(service_info(&broken), Err(MdnsError::BadUrl { .. })));
    }
}
