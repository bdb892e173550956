//! The HTTPS discovery server over real TLS on loopback: clients trusting the generated CA
//! fetch and parse the manifest, others are refused; CORS, methods, health, certificate
//! swap, misbehaving peers and shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kinopio::wire::manifest::{
    BridgeState, LeaderAdvert, LeaderManifest, ListenerUrls, MANUAL_MANIFEST_TTL, ManifestInputs, ManifestMode,
    ManifestUrl,
};
use kinopio_leaf::discovery_server::{
    DiscoveryServer, DiscoveryServerConfig, DiscoveryServerError, DiscoveryServerHandle, HealthReport,
    manifest_from_watch,
};
use kinopio_leaf::tls::{LeafCertRequest, LocalCa, SwappableServerCert};
use reqwest::{Method, StatusCode};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use kinopio_test_support::WAIT;

struct Pki {
    _temp: tempfile::TempDir,
    ca: LocalCa,
}

impl Pki {
    fn new() -> Pki {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let temp = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(temp.path(), OffsetDateTime::now_utc()).unwrap();
        Pki { _temp: temp, ca }
    }

    fn server_cert(&self) -> Arc<SwappableServerCert> {
        SwappableServerCert::new(self.certified_key())
    }

    fn certified_key(&self) -> Arc<rustls::sign::CertifiedKey> {
        self.ca
            .issue_leaf(&LeafCertRequest::new(vec!["127.0.0.1".into()]), OffsetDateTime::now_utc())
            .unwrap()
            .certified_key()
            .unwrap()
    }

    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.ca.cert_pem().as_bytes()).unwrap()])
            .no_proxy()
            .timeout(WAIT)
            .build()
            .unwrap()
    }

    fn tls_connector(&self) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.cert_der().clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

fn manifest_now(discovery_port: u16) -> LeaderManifest {
    let url = |scheme: &str, port: u16, path: &str| ManifestUrl::from_parts(scheme, "127.0.0.1", port, path).unwrap();
    LeaderManifest::build(
        &ManifestInputs {
            node_id: "node-under-test".into(),
            advert: LeaderAdvert {
                listeners: ListenerUrls {
                    advertised_hostname: "127.0.0.1".into(),
                    wss_url: url("wss", 4443, ""),
                    client_url: url("nats", 4222, ""),
                    monitor_url: url("http", 8222, ""),
                    discovery_url: url("https", discovery_port, "/.well-known/kinopio-leader.json"),
                },
                bridge_state: BridgeState::Disabled,
                backbone_servers: Vec::new(),
            },
            leader_epoch: 0,
            backbone_rtt_ms: None,
            mode: ManifestMode::Manual,
            ca_cert_sha256: None,
        },
        OffsetDateTime::now_utc(),
        MANUAL_MANIFEST_TTL,
    )
}

async fn start(
    pki: &Pki,
    manifest: impl Fn() -> Option<LeaderManifest> + Send + Sync + 'static,
    health: impl Fn() -> HealthReport + Send + Sync + 'static,
    config: DiscoveryServerConfig,
) -> DiscoveryServerHandle {
    DiscoveryServer::new(pki.server_cert(), manifest, health)
        .config(config)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

async fn start_default(pki: &Pki) -> DiscoveryServerHandle {
    start(pki, || Some(manifest_now(0)), || HealthReport::new(true), DiscoveryServerConfig::default()).await
}

fn url(handle: &DiscoveryServerHandle, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", handle.local_addr().port())
}

fn assert_common_headers(response: &reqwest::Response) {
    let headers = response.headers();
    let get = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(get("content-type").as_deref(), Some("application/json"));
    assert_eq!(get("cache-control").as_deref(), Some("no-store"));
    assert_eq!(get("access-control-allow-origin").as_deref(), Some("*"));
    assert_eq!(get("access-control-allow-methods").as_deref(), Some("GET, HEAD, OPTIONS"));
    assert_eq!(get("access-control-allow-headers").as_deref(), Some("*"));
    // Private Network Access is opt-in (see `private_network_access_is_opt_in`).
    assert_eq!(get("access-control-allow-private-network"), None);
}

#[tokio::test]
async fn private_network_access_is_opt_in() {
    let pki = Pki::new();
    let config = DiscoveryServerConfig { private_network_access: true, ..DiscoveryServerConfig::default() };
    let handle = start(&pki, || Some(manifest_now(0)), || HealthReport::new(true), config).await;
    let response = pki.client().request(reqwest::Method::OPTIONS, url(&handle, "/manifest.json")).send().await.unwrap();
    assert_eq!(response.headers().get("access-control-allow-private-network").unwrap(), "true");
    handle.shutdown().await;
}

/// Attack: one LAN host opens idle connections until every slot is taken (256 used to lock
/// every other client out). Its connections beyond the per-source limit are closed at once,
/// and a client from another address is still served.
#[tokio::test]
async fn one_host_holding_idle_connections_cannot_lock_others_out() {
    let pki = Pki::new();
    let config = DiscoveryServerConfig {
        max_connections: 64,
        max_connections_per_source: 8,
        handshake_timeout: Duration::from_secs(30),
        ..DiscoveryServerConfig::default()
    };
    let handle = start(&pki, || Some(manifest_now(0)), || HealthReport::new(true), config).await;
    let port = handle.local_addr().port();
    // The flood comes from 127.0.0.2, the honest client from 127.0.0.1 (both loopback).
    let mut flood = Vec::new();
    for _ in 0..200 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        flood.push(socket.connect(handle.local_addr()).await.unwrap());
    }
    // Everything past the eighth is closed by the server.
    let mut closed = 0;
    for stream in flood.iter_mut().skip(8) {
        wait_for_close(stream).await;
        closed += 1;
    }
    assert_eq!(closed, 192);
    let response = pki.client().get(format!("https://127.0.0.1:{port}/manifest.json")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    handle.shutdown().await;
}

#[tokio::test]
async fn manifest_is_served_over_https_and_parses() {
    let pki = Pki::new();
    let handle = start_default(&pki).await;
    assert_ne!(handle.local_addr().port(), 0);
    let client = pki.client();
    for path in [
        "/.well-known/kinopio-leader.json",
        "/manifest.json",
        "/",
        "/manifest.json?x=1",
        "/.well-known/kinopio-leader.json?cache=bust",
    ] {
        let response = client.get(url(&handle, path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_common_headers(&response);
        let body = response.bytes().await.unwrap();
        let manifest = LeaderManifest::parse(&body, OffsetDateTime::now_utc()).unwrap();
        assert_eq!(manifest.node_id, "node-under-test");
        assert!(manifest.is_leader);
    }
    assert!(
        handle
            .well_known_url("127.0.0.1")
            .ends_with(&format!(":{}/.well-known/kinopio-leader.json", handle.local_addr().port()))
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn client_that_does_not_trust_the_ca_is_refused() {
    let pki = Pki::new();
    let stranger = Pki::new();
    let handle = start_default(&pki).await;
    let result = stranger.client().get(url(&handle, "/manifest.json")).send().await;
    let err = result.expect_err("a client trusting another CA must fail");
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    // The same server still serves a client that trusts its CA.
    let ok = pki.client().get(url(&handle, "/manifest.json")).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    handle.shutdown().await;
}

#[tokio::test]
async fn cors_preflight_head_and_errors() {
    let pki = Pki::new();
    let handle = start_default(&pki).await;
    let client = pki.client();

    let preflight = client
        .request(Method::OPTIONS, url(&handle, "/.well-known/kinopio-leader.json"))
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Private-Network", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    assert_common_headers(&preflight);
    assert!(preflight.bytes().await.unwrap().is_empty());

    let get = client.get(url(&handle, "/healthz")).send().await.unwrap();
    let get_length = get.content_length().unwrap();
    let head = client.head(url(&handle, "/healthz")).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_common_headers(&head);
    assert_eq!(head.headers()["content-length"].to_str().unwrap(), get_length.to_string());
    assert!(head.bytes().await.unwrap().is_empty());

    let head_manifest = client.head(url(&handle, "/manifest.json")).send().await.unwrap();
    assert_eq!(head_manifest.status(), StatusCode::OK);

    let missing = client.get(url(&handle, "/nope")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_common_headers(&missing);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"], "not_found");

    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let response = client.request(method.clone(), url(&handle, "/manifest.json")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_common_headers(&response);
        assert_eq!(response.headers()["allow"], "GET, HEAD, OPTIONS");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "method_not_allowed");
    }
    handle.shutdown().await;
}

#[tokio::test]
async fn missing_manifest_is_503_starting_and_watch_updates_are_served() {
    let pki = Pki::new();
    let (tx, rx) = tokio::sync::watch::channel(None);
    let handle = DiscoveryServer::with_providers(
        pki.server_cert(),
        manifest_from_watch(rx),
        Arc::new(|| HealthReport::new(true)),
    )
    .bind("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap();
    let client = pki.client();

    let response = client.get(url(&handle, "/manifest.json")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_common_headers(&response);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "starting");
    assert!(body["message"].as_str().unwrap().contains("starting"));

    tx.send(Some(manifest_now(handle.local_addr().port()))).unwrap();
    let response = client.get(url(&handle, "/manifest.json")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let manifest = LeaderManifest::parse(&response.bytes().await.unwrap(), OffsetDateTime::now_utc()).unwrap();
    assert_eq!(manifest.discovery_url.url().port(), Some(handle.local_addr().port()));
    handle.shutdown().await;
}

#[tokio::test]
async fn healthz_follows_the_health_provider() {
    let pki = Pki::new();
    let healthy = Arc::new(AtomicBool::new(true));
    let flag = healthy.clone();
    let handle = start(
        &pki,
        || Some(manifest_now(0)),
        move || {
            let ok = flag.load(Ordering::SeqCst);
            let report = HealthReport::new(ok).with("bridgeState", "connected");
            if ok { report } else { report.with("error", "nats-server is not answering") }
        },
        DiscoveryServerConfig::default(),
    )
    .await;
    let client = pki.client();

    let response = client.get(url(&handle, "/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_common_headers(&response);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["ok"], true);
    assert_eq!(body["bridgeState"], "connected");

    healthy.store(false, Ordering::SeqCst);
    let response = client.get(url(&handle, "/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["ok"], false);
    assert_eq!(body["error"], "nats-server is not answering");

    healthy.store(true, Ordering::SeqCst);
    let response = client.get(url(&handle, "/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    handle.shutdown().await;
}

#[tokio::test]
async fn swapped_certificate_is_used_by_new_connections() {
    let first = Pki::new();
    let second = Pki::new();
    let handle = start_default(&first).await;
    let path = "/manifest.json";

    assert!(first.client().get(url(&handle, path)).send().await.is_ok());
    assert!(second.client().get(url(&handle, path)).send().await.is_err());

    handle.certificate().swap(second.certified_key());

    let response = second.client().get(url(&handle, path)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        first.client().get(url(&handle, path)).send().await.is_err(),
        "new connections must present the new certificate"
    );
    handle.shutdown().await;
}

/// Reads until EOF or error; returns how long that took.
async fn wait_for_close(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    tokio::time::timeout(WAIT, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    })
    .await
    .expect("the server should have closed the connection");
    started.elapsed()
}

#[tokio::test]
async fn garbage_and_stalled_peers_do_not_affect_others() {
    let pki = Pki::new();
    let handle = start(
        &pki,
        || Some(manifest_now(0)),
        || HealthReport::new(true),
        DiscoveryServerConfig { handshake_timeout: Duration::from_millis(500), ..DiscoveryServerConfig::default() },
    )
    .await;
    let addr = handle.local_addr();

    // A peer that never speaks, one that speaks plain HTTP, one that sends random bytes.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"GET /manifest.json HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut noise = TcpStream::connect(addr).await.unwrap();
    noise.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3, 4, 5]).await.unwrap();

    // A well-behaved client is served while those are open.
    let response = pki.client().get(url(&handle, "/manifest.json")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    wait_for_close(&mut plain).await;
    wait_for_close(&mut noise).await;
    // The silent peer is dropped by the handshake timeout.
    wait_for_close(&mut silent).await;

    let response = pki.client().get(url(&handle, "/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(handle.is_running());
    handle.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_stops_accepting() {
    let pki = Pki::new();
    let handle = start_default(&pki).await;
    let addr = handle.local_addr();
    let client = pki.client();
    // Leave a pooled keep-alive connection and a raw idle TLS connection open.
    assert!(client.get(url(&handle, "/healthz")).send().await.is_ok());
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = pki.tls_connector().connect("127.0.0.1".try_into().unwrap(), tcp).await.unwrap();

    let report = tokio::time::timeout(WAIT, handle.shutdown()).await.expect("shutdown must finish");
    assert_eq!(report.forced_connections, 0);

    let mut buffer = [0u8; 16];
    let read = tokio::time::timeout(WAIT, tls.read(&mut buffer)).await.unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "idle connection should be closed: {read:?}");
    assert!(TcpStream::connect(addr).await.is_err(), "listener must be closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_lets_in_flight_requests_finish() {
    let pki = Pki::new();
    let (entered_tx, mut entered_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let first_call = AtomicBool::new(true);
    let handle = start(
        &pki,
        move || {
            if first_call.swap(false, Ordering::SeqCst) {
                // Simulate a request that is in the middle of being answered.
                entered_tx.send(()).unwrap();
                let _ = release_rx.lock().unwrap().recv_timeout(WAIT);
            }
            Some(manifest_now(0))
        },
        || HealthReport::new(true),
        DiscoveryServerConfig::default(),
    )
    .await;
    let addr = handle.local_addr();
    let client = pki.client();
    let request = tokio::spawn(client.get(url(&handle, "/manifest.json")).send());
    tokio::time::timeout(WAIT, entered_rx.recv()).await.unwrap().unwrap();

    let shutdown = tokio::spawn(handle.shutdown());
    // New connections are refused once the listener is gone, while the request is held.
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "listener still accepting after shutdown");
        tokio::task::yield_now().await;
    }
    assert!(!shutdown.is_finished(), "shutdown must wait for the in-flight request");

    release_tx.send(()).unwrap();
    let response = tokio::time::timeout(WAIT, request).await.unwrap().unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    LeaderManifest::parse(&response.bytes().await.unwrap(), OffsetDateTime::now_utc()).unwrap();
    let report = tokio::time::timeout(WAIT, shutdown).await.unwrap().unwrap();
    assert_eq!(report.forced_connections, 0);
}

#[tokio::test]
async fn shutdown_is_bounded_when_a_client_stops_reading() {
    let pki = Pki::new();
    let (entered_tx, mut entered_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    // A manifest far larger than the socket buffers, so the write blocks.
    let mut huge = manifest_now(0);
    huge.backbone_servers = vec!["x".repeat(32 * 1024 * 1024)];
    let handle = start(
        &pki,
        move || {
            let _ = entered_tx.send(());
            Some(huge.clone())
        },
        || HealthReport::new(true),
        DiscoveryServerConfig { shutdown_grace: Duration::from_millis(300), ..DiscoveryServerConfig::default() },
    )
    .await;
    let tcp = TcpStream::connect(handle.local_addr()).await.unwrap();
    let mut tls = pki.tls_connector().connect("127.0.0.1".try_into().unwrap(), tcp).await.unwrap();
    tls.write_all(b"GET /manifest.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::timeout(WAIT, entered_rx.recv()).await.unwrap().unwrap();

    let started = Instant::now();
    let report = tokio::time::timeout(WAIT, handle.shutdown()).await.unwrap();
    assert_eq!(report.forced_connections, 1);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    drop(tls);
}

#[tokio::test]
async fn serves_on_given_listeners_and_reports_bind_errors() {
    let pki = Pki::new();
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = std_listener.local_addr().unwrap();
    let handle = DiscoveryServer::new(pki.server_cert(), || Some(manifest_now(0)), || HealthReport::new(true))
        .serve_std(std_listener)
        .unwrap();
    assert_eq!(handle.local_addr(), addr);
    let response = pki.client().get(url(&handle, "/manifest.json")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let err =
        DiscoveryServer::new(pki.server_cert(), || None, || HealthReport::new(true)).bind(addr).await.unwrap_err();
    assert!(matches!(err, DiscoveryServerError::Bind { addr: a, .. } if a == addr), "{err}");
    assert!(err.to_string().contains(&addr.to_string()));

    let tokio_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tokio_addr = tokio_listener.local_addr().unwrap();
    let second = DiscoveryServer::new(pki.server_cert(), || Some(manifest_now(0)), || HealthReport::new(true))
        .serve(tokio_listener)
        .unwrap();
    assert_eq!(second.local_addr(), tokio_addr);
    let response = pki.client().get(url(&second, "/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    handle.shutdown().await;
    second.shutdown().await;
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let pki = Pki::new();
    let handle = start_default(&pki).await;
    let addr = handle.local_addr();
    drop(handle);
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "server still accepting after drop");
        tokio::task::yield_now().await;
    }
}

/// Polls `url` until `accept(status)` holds, up to `WAIT`.
async fn wait_for_status(client: &reqwest::Client, url: &str, accept: impl Fn(StatusCode) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(response) = client.get(url).send().await
            && accept(response.status())
        {
            return;
        }
        assert!(Instant::now() < deadline, "{url} never reached the expected status");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn healthz_reflects_a_real_nats_server() {
    let binary = kinopio_test_support::nats_server_binary();
    let pki = Pki::new();
    let ports_dir = tempfile::tempdir().unwrap();
    let mut nats = tokio::process::Command::new(&binary)
        .args(["-a", "127.0.0.1", "-p", "-1", "-m", "-1", "--ports_file_dir"])
        .arg(ports_dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {} ({e}): run scripts/install-deps.sh or set KINOPIO_NATS_SERVER", binary.display())
        });

    // Wait for nats-server to report its monitoring port.
    let deadline = Instant::now() + WAIT;
    let monitor = loop {
        let ports = std::fs::read_dir(ports_dir.path())
            .unwrap()
            .filter_map(|entry| std::fs::read(entry.unwrap().path()).ok())
            .find_map(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
        if let Some(url) = ports.as_ref().and_then(|p| p["monitoring"][0].as_str()) {
            break url.to_owned();
        }
        assert!(Instant::now() < deadline, "nats-server wrote no ports file");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // The caller's side: a background task tracks nats-server health; the provider only
    // reads the latest result.
    let healthy = Arc::new(AtomicBool::new(false));
    let tracker_flag = healthy.clone();
    let probe = reqwest::Client::builder().no_proxy().timeout(Duration::from_millis(500)).build().unwrap();
    let tracker = tokio::spawn(async move {
        loop {
            let ok = probe
                .get(format!("{monitor}/healthz"))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            tracker_flag.store(ok, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let flag = healthy.clone();
    let handle = start(
        &pki,
        || Some(manifest_now(0)),
        move || HealthReport::new(flag.load(Ordering::SeqCst)),
        DiscoveryServerConfig::default(),
    )
    .await;
    let client = pki.client();
    let health_url = url(&handle, "/healthz");

    wait_for_status(&client, &health_url, |status| status == StatusCode::OK).await;
    nats.kill().await.unwrap();
    wait_for_status(&client, &health_url, |status| status == StatusCode::SERVICE_UNAVAILABLE).await;
    let body: serde_json::Value = client.get(&health_url).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["ok"], false);

    tracker.abort();
    handle.shutdown().await;
}
