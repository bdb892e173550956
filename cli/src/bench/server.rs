//! The nats-server every scenario runs against: started by the bench on free loopback
//! ports (binary from `--binary-path`, `KINOPIO_NATS_SERVER`, the download cache, `PATH`
//! or a download), or an existing server given with `--server`. Its monitor's `/varz`
//! tells whether the server itself dropped anything (slow consumers).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use kinopio_leaf::binary::{BinaryOptions, ResolvedBinary};
use kinopio_leaf::process::{ReadyCheck, ServerProcess, SpawnSpec, wait_ready};
use serde::Serialize;

use super::error::BenchError;

/// How long the server gets to come up.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// What the report says about the server.
#[derive(Debug, Clone, Serialize)]
pub struct ServerInfo {
    /// `started` (by the bench) or `external` (`--server`).
    pub origin: &'static str,
    /// Client URL.
    pub url: String,
    /// Version it reports.
    pub version: Option<String>,
    /// The binary (when started here).
    pub binary: Option<PathBuf>,
}

/// The server under the benchmark.
#[derive(Debug)]
pub struct BenchServer {
    process: Option<ServerProcess>,
    _dir: Option<tempfile::TempDir>,
    url: String,
    monitor: Option<String>,
    http: reqwest::Client,
    info: ServerInfo,
}

impl BenchServer {
    /// Finds a binary (see the module docs) and starts it on free loopback ports.
    pub async fn start(binary_path: Option<PathBuf>) -> Result<BenchServer, BenchError> {
        let mut options = BinaryOptions::from_env();
        if let Some(path) = binary_path {
            options = options.binary_path(path);
        }
        let binary: ResolvedBinary =
            kinopio_leaf::binary::resolve(&options).await.map_err(|e| BenchError::Binary(e.to_string()))?;
        let dir = tempfile::Builder::new().prefix("kinopio-bench-").tempdir().map_err(|source| BenchError::Io {
            what: "create",
            path: std::env::temp_dir(),
            source,
        })?;
        let config_file = dir.path().join("server.conf");
        let output_file = dir.path().join("server.log");
        let config = format!(
            "host: 127.0.0.1\nport: -1\nhttp: \"127.0.0.1:-1\"\n\
             websocket {{ host: 127.0.0.1, port: -1, no_tls: true }}\nports_file_dir: {:?}\n",
            dir.path().display().to_string()
        );
        std::fs::write(&config_file, config).map_err(|source| BenchError::Io {
            what: "write",
            path: config_file.clone(),
            source,
        })?;
        let spec = SpawnSpec {
            binary: binary.path.clone(),
            config_file,
            output_file: output_file.clone(),
            working_dir: dir.path().to_owned(),
        };
        let mut process = ServerProcess::spawn(&spec).await.map_err(|e| BenchError::Server(e.to_string()))?;
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let check = ReadyCheck {
            ports_file_dir: dir.path().to_owned(),
            client_host: loopback,
            websocket_host: loopback,
            monitor_host: loopback,
            log_files: vec![output_file],
            poll_interval: Duration::from_millis(20),
            probe_timeout: Duration::from_secs(1),
        };
        let ports =
            wait_ready(&mut process, &check, READY_TIMEOUT).await.map_err(|e| BenchError::Server(e.to_string()))?;
        let url = format!("nats://127.0.0.1:{}", ports.client);
        Ok(BenchServer {
            process: Some(process),
            _dir: Some(dir),
            monitor: Some(format!("http://127.0.0.1:{}", ports.monitor)),
            http: http_client(),
            info: ServerInfo {
                origin: "started",
                url: url.clone(),
                version: Some(binary.version),
                binary: Some(binary.path),
            },
            url,
        })
    }

    /// Uses a server that is already running at `url` (its version is read on connect).
    pub async fn external(url: &str) -> Result<BenchServer, BenchError> {
        let client = async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(5)).connect(url);
        let client = tokio::time::timeout(Duration::from_secs(10), client)
            .await
            .map_err(|_| BenchError::Connect {
                client: "raw async-nats",
                url: url.to_owned(),
                detail: "timed out".into(),
            })?
            .map_err(|e| BenchError::Connect {
                client: "raw async-nats",
                url: url.to_owned(),
                detail: e.to_string(),
            })?;
        let version = client.server_info().version;
        let _ = client.drain().await;
        Ok(BenchServer {
            process: None,
            _dir: None,
            url: url.to_owned(),
            monitor: None,
            http: http_client(),
            info: ServerInfo { origin: "external", url: url.to_owned(), version: Some(version), binary: None },
        })
    }

    /// The client URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What the report says about it.
    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    /// The server's count of slow consumers so far (`/varz`); `None` for an external
    /// server or when the monitor does not answer.
    pub async fn slow_consumers(&self) -> Option<u64> {
        let base = self.monitor.as_ref()?;
        let response = self.http.get(format!("{base}/varz")).send().await.ok()?;
        let varz: serde_json::Value = response.json().await.ok()?;
        varz.get("slow_consumers")?.as_u64()
    }

    /// Stops the server it started (SIGTERM, then SIGKILL).
    pub async fn stop(mut self) {
        if let Some(process) = self.process.take() {
            process.stop(Duration::from_secs(5)).await;
        }
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "could not configure the monitor client; using defaults");
        reqwest::Client::new()
    })
}
