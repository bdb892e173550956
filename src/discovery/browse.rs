//! Browses mDNS for the leaders of a namespace and returns the HTTPS manifest URLs their
//! records point to. A thin executor for the [policy](super::policy).

use std::time::Duration;

use crate::wire::mdns::{SERVICE_TYPE, txt};

/// How long one browse round listens.
const BROWSE_FOR: Duration = Duration::from_millis(1500);

/// The mDNS browser of one hub (the daemon is started on first use and shut down on drop).
pub(crate) struct Browser {
    interfaces: Vec<String>,
    mdns: Option<mdns_sd::ServiceDaemon>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").field("interfaces", &self.interfaces).finish()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(mdns) = self.mdns.take() {
            let _ = mdns.shutdown();
        }
    }
}

impl Browser {
    pub(crate) fn new(interfaces: Vec<String>) -> Browser {
        Browser { interfaces, mdns: None }
    }

    /// Browses mDNS for leaders of `namespace` and returns their HTTPS manifest URLs.
    pub(crate) async fn browse(&mut self, namespace: &str) -> Vec<String> {
        let daemon = match &self.mdns {
            Some(d) => d.clone(),
            None => match self.start_mdns() {
                Ok(d) => d,
                Err(e) => {
                    tracing::debug!(error = %e, "mDNS unavailable");
                    return Vec::new();
                }
            },
        };
        let Ok(events) = daemon.browse(SERVICE_TYPE) else {
            return Vec::new();
        };
        let mut urls = Vec::new();
        let deadline = tokio::time::Instant::now() + BROWSE_FOR;
        loop {
            let event = tokio::select! {
                e = events.recv_async() => e,
                _ = tokio::time::sleep_until(deadline) => break,
            };
            let Ok(event) = event else { break };
            if let mdns_sd::ServiceEvent::ServiceResolved(info) = event {
                let value = |k: &str| info.get_property_val_str(k).map(str::to_owned);
                if value(txt::NAMESPACE).as_deref() != Some(namespace)
                    || value(txt::CANDIDATE_ROLE).as_deref() != Some(txt::LEADER)
                {
                    continue;
                }
                if let Some(url) = value(txt::DISCOVERY_URL).filter(|u| !urls.contains(u)) {
                    urls.push(url);
                }
            }
        }
        let _ = daemon.stop_browse(SERVICE_TYPE);
        urls
    }

    fn start_mdns(&mut self) -> Result<mdns_sd::ServiceDaemon, mdns_sd::Error> {
        let daemon = mdns_sd::ServiceDaemon::new()?;
        if !self.interfaces.is_empty() {
            daemon.disable_interface(mdns_sd::IfKind::All)?;
            for name in &self.interfaces {
                daemon.enable_interface(mdns_sd::IfKind::Name(name.clone()))?;
            }
        }
        self.mdns = Some(daemon.clone());
        Ok(daemon)
    }
}
