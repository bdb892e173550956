//! An HTTP client for nats-server's monitor (`/healthz`, `/leafz`).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use super::ProcessError;
use crate::net;

/// An HTTP client for nats-server's monitor (`/healthz`, `/leafz`), with short timeouts
/// and no proxy.
#[derive(Debug, Clone)]
pub struct Monitor {
    http: reqwest::Client,
    base: String,
}

impl Monitor {
    /// A client for the monitor at `addr`; each request gives up after `timeout`.
    pub fn new(addr: SocketAddr, timeout: Duration) -> Result<Monitor, ProcessError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|source| ProcessError::Monitor(MonitorError::Client(Box::new(source))))?;
        Ok(Monitor { http, base: format!("http://{}", net::host_port(&addr.ip().to_string(), addr.port())) })
    }

    /// The monitor's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `Ok(true)` when `/healthz` answers 200, `Ok(false)` for another status.
    ///
    /// # Errors
    ///
    /// [`MonitorError::Request`] when the monitor cannot be reached within the timeout.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future abandons the request.
    pub async fn healthy(&self) -> Result<bool, MonitorError> {
        let url = format!("{}/healthz", self.base);
        let response = self.http.get(&url).send().await.map_err(|source| MonitorError::request(url, source))?;
        Ok(response.status() == reqwest::StatusCode::OK)
    }

    /// The `/leafz` document.
    ///
    /// # Errors
    ///
    /// [`MonitorError::Request`] when the monitor cannot be reached or answers no JSON,
    /// [`MonitorError::Status`] when it answers with an error status.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future abandons the request.
    pub async fn leafz(&self) -> Result<Value, MonitorError> {
        let url = format!("{}/leafz", self.base);
        let response = self.http.get(&url).send().await.map_err(|source| MonitorError::request(url.clone(), source))?;
        if !response.status().is_success() {
            return Err(MonitorError::Status { url, status: response.status().as_u16() });
        }
        response.json::<Value>().await.map_err(|source| MonitorError::request(url, source))
    }
}

crate::error::error_with_kind! {
    /// Why the monitor could not be asked.
    #[derive(Debug, thiserror::Error)]
    pub enum MonitorError => MonitorErrorKind {
        /// The HTTP client could not be built (no TLS backend, ...).
        #[error("{0}")]
        Client(#[source] Box<reqwest::Error>),
        /// The request failed (connection refused, timeout, unreadable answer).
        #[error("{url}: {source}")]
        Request {
            /// What was asked.
            url: String,
            /// The HTTP client's error.
            #[source]
            source: Box<reqwest::Error>,
        },
        /// The monitor answered with an error status.
        #[error("{url} answered HTTP {status}")]
        Status {
            /// What was asked.
            url: String,
            /// The status code.
            status: u16,
        },
    }
}

impl MonitorError {
    fn request(url: String, source: reqwest::Error) -> MonitorError {
        MonitorError::Request { url, source: Box::new(source) }
    }
}
