//! The nats-server every scenario runs against: started by the bench on free loopback
//! ports (binary from `--binary-path`, `KINOPIO_NATS_SERVER`, the download cache, `PATH`
//! or a download), or an existing server given with `--server`. Its monitor's `/varz`
//! tells whether the server itself dropped anything (slow consumers).

use std::path::{Path, PathBuf};
use std::time::Duration;

use kinopio_leaf::binary::{BinaryOptions, ResolvedBinary};
use kinopio_leaf::process::{LOG_TAIL_LINES, ServerProcess, SpawnSpec, log_tail, ports_file_path};
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
    /// Monitor port on 127.0.0.1.
    monitor: Option<u16>,
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
        BenchServer::spawn(binary.path, binary.version, "").await
    }

    /// Two more servers of the same binary as this one (which the bench must have started),
    /// clustered with each other on loopback routes, once the route carries messages: the
    /// `switch-scale` scenario moves a hub between them.
    pub async fn start_cluster_pair(&self) -> Result<(BenchServer, BenchServer), BenchError> {
        let (Some(binary), Some(version)) = (&self.info.binary, &self.info.version) else {
            return Err(BenchError::Server("an external server cannot be clustered by the bench".to_owned()));
        };
        let (a, b) = (free_port()?, free_port()?);
        let cluster = |listen: u16, peer: u16| {
            format!(
                "cluster {{\n  name: kinopio-bench\n  listen: \"127.0.0.1:{listen}\"\n  \
                 routes: [\"nats-route://127.0.0.1:{peer}\"]\n}}\n"
            )
        };
        let first = BenchServer::spawn(binary.clone(), version.clone(), &cluster(a, b)).await?;
        let second = BenchServer::spawn(binary.clone(), version.clone(), &cluster(b, a)).await?;
        wait_for_route(first.url(), second.url()).await?;
        Ok((first, second))
    }

    /// Starts `binary` on free loopback ports with `extra` appended to its config.
    async fn spawn(binary: PathBuf, version: String, extra: &str) -> Result<BenchServer, BenchError> {
        let dir = tempfile::Builder::new().prefix("kinopio-bench-").tempdir().map_err(|source| BenchError::Io {
            what: "create",
            path: std::env::temp_dir(),
            source,
        })?;
        let config_file = dir.path().join("server.conf");
        let output_file = dir.path().join("server.log");
        let config = format!(
            "host: 127.0.0.1\nport: -1\nhttp: \"127.0.0.1:-1\"\n\
             ports_file_dir: {:?}\n{extra}",
            dir.path().display().to_string()
        );
        std::fs::write(&config_file, config).map_err(|source| BenchError::Io {
            what: "write",
            path: config_file.clone(),
            source,
        })?;
        let spec = SpawnSpec {
            binary: binary.clone(),
            config_file,
            output_file: output_file.clone(),
            working_dir: dir.path().to_owned(),
        };
        let mut process = ServerProcess::spawn(&spec).await.map_err(|e| BenchError::Server(e.to_string()))?;
        let ports = wait_for_ports(&mut process, dir.path(), &output_file).await?;
        let url = format!("nats://127.0.0.1:{}", ports.0);
        Ok(BenchServer {
            process: Some(process),
            _dir: Some(dir),
            monitor: Some(ports.1),
            info: ServerInfo { origin: "started", url: url.clone(), version: Some(version), binary: Some(binary) },
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
        let port = self.monitor?;
        let varz = tokio::time::timeout(Duration::from_secs(2), http_get(port, "/varz")).await.ok()??;
        let varz: serde_json::Value = serde_json::from_str(&varz).ok()?;
        varz.get("slow_consumers")?.as_u64()
    }

    /// One line per client connection from the monitor's `/connz` (name, messages in and
    /// out, bytes pending), to explain a run that stalled; `None` when unavailable.
    pub async fn connections(&self) -> Option<String> {
        let port = self.monitor?;
        let connz = tokio::time::timeout(Duration::from_secs(2), http_get(port, "/connz?subs=1")).await.ok()??;
        let connz: serde_json::Value = serde_json::from_str(&connz).ok()?;
        let lines: Vec<String> = connz
            .get("connections")?
            .as_array()?
            .iter()
            .map(|c| {
                format!(
                    "cid {} {} in {} out {} pending {} B subs {}",
                    c.get("cid").and_then(serde_json::Value::as_u64).unwrap_or(0),
                    c.get("name").and_then(serde_json::Value::as_str).unwrap_or("?"),
                    c.get("in_msgs").and_then(serde_json::Value::as_u64).unwrap_or(0),
                    c.get("out_msgs").and_then(serde_json::Value::as_u64).unwrap_or(0),
                    c.get("pending_bytes").and_then(serde_json::Value::as_u64).unwrap_or(0),
                    c.get("subscriptions_list").map(ToString::to_string).unwrap_or_default(),
                )
            })
            .collect();
        Some(lines.join("; "))
    }

    /// Stops the server it started (SIGTERM, then SIGKILL).
    pub async fn stop(mut self) {
        if let Some(process) = self.process.take() {
            process.stop(Duration::from_secs(5)).await;
        }
    }
}

/// A TCP port free on 127.0.0.1 right now.
fn free_port() -> Result<u16, BenchError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|source| BenchError::Io {
        what: "bind",
        path: PathBuf::from("127.0.0.1:0"),
        source,
    })?;
    listener.local_addr().map(|a| a.port()).map_err(|source| BenchError::Io {
        what: "read the address of",
        path: PathBuf::from("127.0.0.1:0"),
        source,
    })
}

/// Waits until a message published on `from` reaches a subscriber on `to` (the route is up
/// and has carried the interest).
async fn wait_for_route(from: &str, to: &str) -> Result<(), BenchError> {
    use futures::StreamExt;
    let connect = |url: &str| {
        let url = url.to_owned();
        async move {
            async_nats::connect(url.as_str()).await.map_err(|e| BenchError::Connect {
                client: "raw async-nats",
                url,
                detail: e.to_string(),
            })
        }
    };
    let (publisher, subscriber) = (connect(from).await?, connect(to).await?);
    let mut sub = subscriber
        .subscribe("bench.route.check")
        .await
        .map_err(|e| BenchError::client("raw async-nats", "subscribe", e))?;
    let _ = subscriber.flush().await;
    let wait = async {
        loop {
            let _ = publisher.publish("bench.route.check", bytes::Bytes::from_static(b"?")).await;
            if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), sub.next()).await {
                return;
            }
        }
    };
    tokio::time::timeout(READY_TIMEOUT, wait)
        .await
        .map_err(|_| BenchError::Server(format!("no route from {from} to {to} after {READY_TIMEOUT:?}")))
}

/// Waits until the server has written its ports file and accepts connections on the client
/// port; returns (client port, monitor port).
async fn wait_for_ports(process: &mut ServerProcess, dir: &Path, log: &Path) -> Result<(u16, u16), BenchError> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    let ports_file = ports_file_path(dir, process.pid());
    let log_tail = || log_tail(&[log.to_owned()], LOG_TAIL_LINES);
    loop {
        if let Some(status) = process.try_exit() {
            return Err(BenchError::Server(format!("it exited with {status}:\n{}", log_tail())));
        }
        if let Some(ports) = std::fs::read_to_string(&ports_file).ok().and_then(|t| parse_ports(&t)) {
            let accepts = tokio::net::TcpStream::connect(("127.0.0.1", ports.0)).await.is_ok();
            if accepts {
                return Ok(ports);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(BenchError::Server(format!("not ready after {READY_TIMEOUT:?}:\n{}", log_tail())));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (client port, monitor port) from a ports file
/// (`{"nats":["nats://127.0.0.1:4222"],"monitoring":["http://127.0.0.1:8222"]}`).
fn parse_ports(text: &str) -> Option<(u16, u16)> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let port = |key: &str| -> Option<u16> {
        value.get(key)?.as_array()?.first()?.as_str()?.trim_end_matches('/').rsplit(':').next()?.parse().ok()
    };
    Some((port("nats")?, port("monitoring")?))
}

/// The body of `GET <path>` from the monitor on 127.0.0.1:`port` (HTTP/1.0: the server
/// closes the connection after the response).
async fn http_get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let text = String::from_utf8(response).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then_some(())?;
    head.split_whitespace().nth(1).filter(|code| *code == "200")?;
    Some(body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ports_files() {
        let text = r#"{"nats":["nats://127.0.0.1:42067"],"monitoring":["http://127.0.0.1:43037"]}"#;
        assert_eq!(parse_ports(text), Some((42067, 43037)));
        assert_eq!(parse_ports(r#"{"nats":["nats://127.0.0.1:42067"]}"#), None);
        assert_eq!(parse_ports("not json"), None);
    }
}
