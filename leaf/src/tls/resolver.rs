//! A rustls server certificate resolver whose certificate can be replaced while the server
//! runs: connections accepted after [`SwappableServerCert::swap`] get the new certificate,
//! established ones keep theirs. Used to renew the leaf certificate without a restart.

use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The certificate an in-process TLS server presents, replaceable at run time.
#[derive(Debug)]
pub struct SwappableServerCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl SwappableServerCert {
    /// Starts with `initial`.
    pub fn new(initial: Arc<CertifiedKey>) -> Arc<Self> {
        Arc::new(SwappableServerCert { current: RwLock::new(initial) })
    }

    /// Presents `next` to every handshake from now on.
    pub fn swap(&self, next: Arc<CertifiedKey>) {
        // A poisoned lock only means a writer panicked; the Arc inside is still whole.
        let mut current = self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *current = next;
    }

    /// The certificate presented right now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

impl ResolvesServerCert for SwappableServerCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}
