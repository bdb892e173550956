//! The one rustls crypto provider of this workspace (ring), installed once per process.

/// Installs ring as the process-wide rustls provider unless one is installed already.
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
