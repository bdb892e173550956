//! Test support for `tests/binary.rs`: a tiny HTTP/1.1 release server on 127.0.0.1 that
//! serves fixed files and counts requests, and builders for release archives (the real
//! nats-server packed like an official release, or hand-made hostile ones).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kinopio_leaf::binary::{Platform, version_from_output};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Path prefix of the release files on the test server (a mirror-style base URL).
pub(crate) const MIRROR_PREFIX: &str = "/mirror";

/// How the server answers a path.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// 200 with this body.
    Body(Arc<Vec<u8>>),
    /// This status with an empty body.
    Status(u16),
    /// 200 announcing the full length but closing after `send` bytes.
    CutShort { body: Arc<Vec<u8>>, send: usize },
}

/// A release server on 127.0.0.1; stops when dropped.
#[derive(Debug)]
pub(crate) struct ReleaseServer {
    addr: SocketAddr,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    task: JoinHandle<()>,
}

impl ReleaseServer {
    /// Serves `routes` (path → reply); any other path gets 404.
    pub(crate) async fn start(routes: Vec<(String, Reply)>) -> ReleaseServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let routes: Arc<HashMap<String, Reply>> = Arc::new(routes.into_iter().collect());
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let task_hits = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let routes = routes.clone();
                let hits = task_hits.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, &routes, &hits).await;
                });
            }
        });
        ReleaseServer { addr, hits, task }
    }

    /// The base URL to configure (`http://127.0.0.1:<port>/mirror`).
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}{MIRROR_PREFIX}", self.addr)
    }

    /// Requests seen for `path`.
    pub(crate) fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// All requests seen.
    pub(crate) fn total_hits(&self) -> usize {
        self.hits.lock().unwrap().values().sum()
    }
}

impl Drop for ReleaseServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The server path of a release file.
pub(crate) fn release_path(version: &str, file: &str) -> String {
    format!("{MIRROR_PREFIX}/v{version}/{file}")
}

async fn serve(
    mut stream: TcpStream,
    routes: &HashMap<String, Reply>,
    hits: &Mutex<HashMap<String, usize>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::other("request head timed out"))??;
        if n == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.lines().next().and_then(|line| line.split_whitespace().nth(1)).unwrap_or("").to_owned();
    *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let (status, body, send) = match routes.get(&path) {
        Some(Reply::Body(body)) => (200, body.clone(), body.len()),
        Some(Reply::Status(code)) => (*code, Arc::new(Vec::new()), 0),
        Some(Reply::CutShort { body, send }) => (200, body.clone(), *send),
        None => (404, Arc::new(Vec::new()), 0),
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    };
    let header = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes()).await?;
    stream.write_all(&body[..send]).await?;
    stream.flush().await?;
    stream.shutdown().await
}

/// The real nats-server used by the tests ([`kinopio_test_support::nats_server_binary`]).
pub(crate) fn real_binary() -> PathBuf {
    kinopio_test_support::nats_server_binary()
}

/// The version the real binary reports.
pub(crate) fn real_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let out = std::process::Command::new(real_binary()).arg("--version").output().unwrap();
        version_from_output(&String::from_utf8_lossy(&out.stdout)).unwrap()
    })
}

/// This machine's platform (the tests only run where downloads are supported).
pub(crate) fn platform() -> Platform {
    Platform::current().unwrap()
}

/// An archive and its SHA-256.
#[derive(Debug, Clone)]
pub(crate) struct Archive {
    pub bytes: Arc<Vec<u8>>,
    pub sha256: [u8; 32],
}

impl Archive {
    pub(crate) fn new(bytes: Vec<u8>) -> Archive {
        let sha256 = Sha256::digest(&bytes).into();
        Archive { bytes: Arc::new(bytes), sha256 }
    }
}

/// An entry for [`tar_gz`]; names are written raw so hostile names are possible.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    Dir(String),
    File(String, Vec<u8>),
    Symlink(String, String),
}

/// Builds a `.tar.gz` from `entries` (fast compression).
pub(crate) fn tar_gz(entries: &[Entry]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        let (name, kind, link, data): (&str, tar::EntryType, Option<&str>, &[u8]) = match entry {
            Entry::Dir(name) => (name, tar::EntryType::Directory, None, b""),
            Entry::File(name, data) => (name, tar::EntryType::Regular, None, data),
            Entry::Symlink(name, target) => (name, tar::EntryType::Symlink, Some(target), b""),
        };
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_entry_type(kind);
        header.set_mode(0o755);
        header.set_size(data.len() as u64);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// The directory name inside a release archive.
pub(crate) fn release_dir(version: &str) -> String {
    platform().release_dir_name(version)
}

/// A release-shaped archive for `version` whose binary is `binary`.
pub(crate) fn release_archive(version: &str, binary: Vec<u8>) -> Archive {
    let dir = release_dir(version);
    Archive::new(tar_gz(&[
        Entry::Dir(format!("{dir}/")),
        Entry::File(format!("{dir}/LICENSE"), b"Apache-2.0\n".to_vec()),
        Entry::File(format!("{dir}/README.md"), b"# NATS Server\n".to_vec()),
        Entry::File(format!("{dir}/{}", platform().binary_name()), binary),
    ]))
}

/// The real nats-server packed like an official release (built once per test binary).
pub(crate) fn real_archive() -> &'static Archive {
    static ARCHIVE: OnceLock<Archive> = OnceLock::new();
    ARCHIVE.get_or_init(|| release_archive(real_version(), std::fs::read(real_binary()).unwrap()))
}

/// A shell script to stand in for a binary.
pub(crate) fn script(body: &str) -> Vec<u8> {
    format!("#!/bin/sh\n{body}\n").into_bytes()
}

/// Entries of a cache directory other than the lock file (missing dir = none).
pub(crate) fn leftovers(cache_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(cache_dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> =
        entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|name| name != ".lock").collect();
    names.sort();
    names
}

/// Writes an executable file.
pub(crate) fn write_executable(path: &Path, contents: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut file = std::fs::File::create(path).unwrap();
    file.write_all(contents).unwrap();
    file.sync_all().unwrap();
    drop(file);
    set_mode(path, 0o755);
}

/// Sets a file's permission bits.
pub(crate) fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
