//! HTTP download of release files: a streaming fetch into a file with a size limit, stall
//! timeout, SHA-256 computed on the fly and a progress bar on interactive terminals.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use url::Url;

use super::error::BinaryError;
use super::release::Sha256Digest;

/// Network limits of a download.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub connect_timeout: Duration,
    pub stall_timeout: Duration,
    pub max_bytes: u64,
}

/// An HTTP client for release downloads.
#[derive(Debug, Clone)]
pub(crate) struct Downloader {
    client: reqwest::Client,
    limits: Limits,
    progress: bool,
}

/// What a finished download produced.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fetched {
    pub bytes: u64,
    pub sha256: Sha256Digest,
}

impl Downloader {
    pub(crate) fn new(limits: Limits, progress: bool) -> Result<Downloader, BinaryError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .user_agent(concat!("kinopio/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(limits.connect_timeout)
            .read_timeout(limits.stall_timeout)
            .build()
            .map_err(|e| BinaryError::Http {
                url: String::new(),
                status: None,
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Downloader { client, limits, progress })
    }

    async fn get(&self, url: &Url) -> Result<reqwest::Response, BinaryError> {
        let response = tokio::time::timeout(
            self.limits.connect_timeout + self.limits.stall_timeout,
            self.client.get(url.clone()).send(),
        )
        .await
        .map_err(|_| http_error(url, None, "the server did not answer in time".into()))?
        .map_err(|e| http_error(url, None, describe(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(http_error(url, Some(status.as_u16()), format!("HTTP {status}")));
        }
        if let Some(len) = response.content_length()
            && len > self.limits.max_bytes
        {
            return Err(BinaryError::TooLarge { url: url.to_string(), limit: self.limits.max_bytes });
        }
        Ok(response)
    }

    /// Streams `url` into `out` (at `out_path`), hashing as it goes. `label` names the
    /// file on the progress bar.
    pub(crate) async fn fetch_to_file(
        &self,
        url: &Url,
        out: &mut tokio::fs::File,
        out_path: &std::path::Path,
        label: &str,
    ) -> Result<Fetched, BinaryError> {
        let mut response = self.get(url).await?;
        let bar = progress_bar(self.progress, response.content_length(), label);
        let mut hasher = Sha256::new();
        let mut bytes: u64 = 0;
        loop {
            let chunk = tokio::time::timeout(self.limits.stall_timeout, response.chunk())
                .await
                .map_err(|_| http_error(url, None, format!("no data for {:?} (stalled)", self.limits.stall_timeout)))?
                .map_err(|e| http_error(url, None, describe(&e)))?;
            let Some(chunk) = chunk else { break };
            bytes += chunk.len() as u64;
            if bytes > self.limits.max_bytes {
                bar.abandon();
                return Err(BinaryError::TooLarge { url: url.to_string(), limit: self.limits.max_bytes });
            }
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(|e| BinaryError::io("write the download to", out_path, e))?;
            bar.inc(chunk.len() as u64);
        }
        out.flush().await.map_err(|e| BinaryError::io("write the download to", out_path, e))?;
        bar.finish_and_clear();
        Ok(Fetched { bytes, sha256: hasher.finalize().into() })
    }

    /// Fetches a small text file (such as `SHA256SUMS`) into memory, at most `limit` bytes.
    pub(crate) async fn fetch_text(&self, url: &Url, limit: u64) -> Result<String, BinaryError> {
        let mut response = self.get(url).await?;
        let mut body = Vec::new();
        loop {
            let chunk = tokio::time::timeout(self.limits.stall_timeout, response.chunk())
                .await
                .map_err(|_| http_error(url, None, "stalled".into()))?
                .map_err(|e| http_error(url, None, describe(&e)))?;
            let Some(chunk) = chunk else { break };
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(BinaryError::TooLarge { url: url.to_string(), limit });
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).map_err(|_| http_error(url, None, "the file is not UTF-8 text".into()))
    }
}

fn http_error(url: &Url, status: Option<u16>, reason: String) -> BinaryError {
    BinaryError::Http { url: url.to_string(), status, reason }
}

/// A reqwest error with its causes, which carry the useful detail.
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A progress bar on stderr when it is a terminal and progress is wanted; hidden otherwise.
fn progress_bar(wanted: bool, total: Option<u64>, label: &str) -> ProgressBar {
    let target = if wanted && std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(total, target);
    let template = if total.is_some() {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{spinner} {msg} {bytes} {bytes_per_sec}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(format!("downloading {label}"));
    bar
}
