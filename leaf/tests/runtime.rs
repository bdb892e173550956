//! The leaf runtime against real processes: a real nats-server leaf (and backbone), real
//! TLS (generated CA in a temporary cache), real HTTPS discovery, the kinopio client over
//! TCP and WSS. Loopback only; trust stores are never touched.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use kinopio::wire::manifest::{BridgeState, LeaderManifest};
use kinopio::{Hub, HubOptions, Message, SelectionMode};
use kinopio_leaf::config::{LeafRemote, Listen, ServerConfig, WebsocketTls, render};
use kinopio_leaf::runtime::{
    LeafError, LeafErrorKind, LeafNode, LeafOptions, LeafState, LeafStatus, LeafTimings, ListenerKind, RestartPolicy,
    StopReport, TrustStatus,
};
use kinopio_leaf::tls::{TlsSource, TrustState, TrustStoreConfig};
use kinopio_test_support::{NatsServer, nats_server_binary};

use kinopio_test_support::WAIT;

/// A temporary cache (CA, no binaries: the binary is explicit) and fast timings.
struct Fixture {
    cache: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("kinopio_leaf=debug").try_init();
        Fixture { cache: tempfile::tempdir().unwrap() }
    }

    fn options(&self) -> LeafOptions {
        LeafOptions::new()
            .binary_path(nats_server_binary())
            .cache_dir(self.cache.path())
            .lan_bind_address("127.0.0.1".parse().unwrap())
            .trust_store(TrustStoreConfig::none().with_env_skip(|_| Some("1".to_owned())))
            .timings(LeafTimings {
                poll_interval: Duration::from_millis(200),
                stop_grace: Duration::from_secs(5),
                ..LeafTimings::default()
            })
    }
}

async fn wait_status(leaf: &LeafNode, what: &str, predicate: impl FnMut(&LeafStatus) -> bool) -> LeafStatus {
    let mut watch = leaf.watch();
    match tokio::time::timeout(WAIT, watch.wait_for(predicate)).await {
        Ok(Ok(status)) => status.clone(),
        _ => panic!("timed out waiting for {what}; last status: {:#?}", leaf.status()),
    }
}

async fn connect(url: &str, ca: Option<&Path>) -> Hub {
    let mut options = HubOptions::new()
        .servers([url])
        .unwrap()
        .selection(SelectionMode::Ordered)
        .request_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(5));
    if let Some(ca) = ca {
        options = options.tls_ca_file(ca);
    }
    tokio::time::timeout(WAIT, Hub::connect(options)).await.expect("connect timed out").unwrap()
}

/// A backbone nats-server accepting leafnode connections, and its leafnode URL.
fn backbone() -> (NatsServer, String) {
    let server = NatsServer::start_with_config("leafnodes { listen: \"127.0.0.1:-1\" }\n");
    let url = server.leafnode_url();
    (server, url)
}

fn pid_alive(pid: u32) -> bool {
    // Signal 0 checks existence; a zombie would still count, but our children are reaped.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

#[test]
fn rendered_configs_are_accepted_by_nats_server() {
    let dir = tempfile::tempdir().unwrap();
    let tls = kinopio_leaf::tls::prepare(
        &kinopio_leaf::tls::TlsOptions::generated(dir.path().join("ca"), dir.path(), vec!["127.0.0.1".into()]),
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    let material = tls.material();
    let ca = dir.path().join("ca/ca-cert.pem");
    let base = ServerConfig {
        server_name: "kinopio-leaf-test".into(),
        client: Listen::new("127.0.0.1".parse().unwrap(), None),
        monitor: Listen::new("127.0.0.1".parse().unwrap(), Some(0)),
        websocket: Listen::new("::1".parse().unwrap(), None),
        websocket_tls: WebsocketTls { cert_file: material.cert_file.clone(), key_file: material.key_file.clone() },
        websocket_allowed_origins: Vec::new(),
        client_token: None,
        authorization_file: None,
        backbone: None,
        ports_file_dir: dir.path().to_path_buf(),
        log: Some(kinopio_leaf::config::LogSettings {
            file: dir.path().join("leaf-nats.log"),
            size_limit_bytes: 1 << 20,
            max_files: 2,
        }),
    };
    let variants = [
        None,
        LeafRemote::from_urls(["nats://127.0.0.1:7422", "nats://[::1]:7422"]).unwrap(),
        LeafRemote::from_urls(["tls://127.0.0.1:7422"]).unwrap().map(|r| r.with_ca_file(Some(ca.clone()))),
        LeafRemote::from_urls(["wss://127.0.0.1:443"]).unwrap(),
    ];
    for (index, backbone) in variants.into_iter().enumerate() {
        let origins = if index == 1 { vec!["https://127.0.0.1:8443".to_owned()] } else { Vec::new() };
        let config = ServerConfig { backbone, websocket_allowed_origins: origins, ..base.clone() };
        let path = dir.path().join(format!("leaf-{index}.conf"));
        std::fs::write(&path, render(&config).unwrap()).unwrap();
        let output = std::process::Command::new(nats_server_binary()).arg("-t").arg("-c").arg(&path).output().unwrap();
        assert!(
            output.status.success(),
            "nats-server rejected config {index}:\n{}\n{}{}",
            std::fs::read_to_string(&path).unwrap(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaf_bridges_to_the_backbone_and_leaf_clients_reach_backbone_services() {
    let fixture = Fixture::new();
    let (backbone, backbone_url) = backbone();
    let leaf = LeafNode::start(fixture.options().backbone_server(&backbone_url).name("bridged-leaf")).await.unwrap();
    let status = leaf.status();
    assert_eq!(status.backbone_servers, std::slice::from_ref(&backbone_url));
    assert_eq!(status.server_name, "bridged-leaf");
    assert!(status.server_ready);
    wait_status(&leaf, "bridgeState connected", |s| s.bridge_state == BridgeState::Connected).await;
    assert_eq!(leaf.manifest().unwrap().bridge_state, BridgeState::Connected);

    let backbone_hub = connect(&backbone.url(), None).await;
    let _service = backbone_hub
        .scope("math")
        .unwrap()
        .variable("double")
        .unwrap()
        .serve(|req: Message| async move { Ok::<_, kinopio::DecodeError>(req.decode::<i64>()? * 2) })
        .await
        .unwrap();
    let leaf_hub = connect(&leaf.urls().client_url, None).await;
    let remote = leaf_hub.scope("math").unwrap().variable("double").unwrap();
    // Interest crosses the leafnode connection asynchronously: retry until it has.
    let deadline = tokio::time::Instant::now() + WAIT;
    let answer: i64 = loop {
        match remote.request::<i64, _>(&21).await {
            Ok(answer) => break answer,
            Err(err) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(%err, "backbone service not reachable yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("the backbone service never answered: {err}"),
        }
    };
    assert_eq!(answer, 42);

    leaf_hub.close().await;
    backbone_hub.close().await;
    assert!(matches!(leaf.stop().await, StopReport::Stopped(_)));
    assert_eq!(leaf.status().bridge_state, BridgeState::Stopped);
}

/// How many leafnode authentication failures a server has logged.
fn auth_failures(server: &NatsServer) -> usize {
    server.log().to_lowercase().matches("authentication error").count()
}

/// Backbone credentials from files: the bridge connects, nothing the leaf shows carries the
/// password, the config that holds it sits in a private (0700) runtime directory, and
/// nats-server's command line names only the config file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backbone_credentials_from_files_reach_only_the_private_config() {
    use std::os::unix::fs::PermissionsExt;
    const SECRET: &str = "file-secret-9f2b";
    let fixture = Fixture::new();
    let backbone = NatsServer::start_with_config(&format!(
        "leafnodes {{\n  listen: \"127.0.0.1:-1\"\n  authorization {{ user: leafuser, password: \"{SECRET}\" }}\n}}\n"
    ));
    let password_file = fixture.cache.path().join("backbone-password");
    std::fs::write(&password_file, format!("{SECRET}\n")).unwrap();
    let options = fixture
        .options()
        .backbone_server(backbone.leafnode_url())
        .backbone_user("leafuser")
        .backbone_password_file(&password_file);
    assert!(!format!("{options:?}").contains(SECRET));
    let leaf = LeafNode::start(options).await.unwrap();
    wait_status(&leaf, "bridgeState connected", |s| s.bridge_state == BridgeState::Connected).await;
    let status = leaf.status();
    assert_eq!(status.backbone_servers, [backbone.leafnode_url()]);
    let shown = format!("{status:?} {:?}", leaf.manifest().unwrap());
    assert!(!shown.contains(SECRET), "{shown}");
    let dir = leaf.runtime_dir();
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    // Percent-encoded in the remote URL (`-` is `%2D`).
    assert!(std::fs::read_to_string(dir.join("leaf-nats.conf")).unwrap().contains("leafuser:file%2Dsecret%2D9f2b@"));
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", status.process_id.unwrap())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(SECRET));
    leaf.stop().await;

    // A wrong password is not silently accepted: the bridge never connects.
    std::fs::write(&password_file, "wrong\n").unwrap();
    let options = fixture
        .options()
        .backbone_server(backbone.leafnode_url())
        .backbone_user("leafuser")
        .backbone_password_file(&password_file);
    let failures_before = auth_failures(&backbone);
    let leaf = LeafNode::start(options).await.unwrap();
    // Wait for the backbone to refuse it (an event, not a fixed sleep), twice: it retried.
    let deadline = tokio::time::Instant::now() + WAIT;
    while auth_failures(&backbone) < failures_before + 2 {
        assert!(tokio::time::Instant::now() < deadline, "the backbone never refused the leaf:\n{}", backbone.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(leaf.status().bridge_state, BridgeState::Connected);
    leaf.stop().await;

    // Half-given credentials are a typed error before anything starts.
    let err = LeafNode::start(fixture.options().backbone_server(backbone.leafnode_url()).backbone_user("leafuser"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), LeafErrorKind::InvalidOption);
    assert!(err.to_string().contains("password file"), "{err}");
}

/// Attack: a stranger on the LAN connects to a secured namespace's leaf with an ordinary NATS
/// client (WSS, and a local user on the loopback port). Both listeners require the token
/// derived from the namespace secret; with it, a client gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secured_leaf_serves_only_clients_holding_the_namespace_secret() {
    let fixture = Fixture::new();
    let ca = std::sync::Arc::new(kinopio::trust::NamespaceCa::derive("studio", b"correct horse").unwrap());
    let leaf = LeafNode::start(fixture.options().namespace_ca(ca.clone())).await.unwrap();
    let urls = leaf.urls().clone();
    let config = std::fs::read_to_string(leaf.runtime_dir().join("leaf-nats.conf")).unwrap();
    assert!(config.contains(ca.lan_token()), "the token is in the private config");
    let manifest = format!("{:?}", leaf.manifest().unwrap());
    assert!(!manifest.contains(ca.lan_token()), "and nowhere public");
    let options = |url: &str, auth: Option<kinopio::Auth>| {
        let mut options = HubOptions::new()
            .servers([url])
            .unwrap()
            .selection(SelectionMode::Ordered)
            .connect_timeout(Duration::from_millis(1500))
            .auto_retry(false);
        if url.starts_with("wss://") {
            options = options.tls_ca_file(leaf.ca_cert_file());
        }
        if let Some(auth) = auth {
            options = options.auth(auth);
        }
        options
    };
    for url in [&urls.wss_url, &urls.client_url] {
        let refused = Hub::connect(options(url, None)).await.unwrap_err();
        assert!(refused.to_string().to_lowercase().contains("authorization"), "{url}: {refused}");
        let wrong = Hub::connect(options(url, Some(kinopio::Auth::Token("guess".into())))).await.unwrap_err();
        assert!(wrong.to_string().to_lowercase().contains("authorization"), "{url}: {wrong}");
        let hub = Hub::connect(options(url, Some(kinopio::Auth::Token(ca.lan_token().to_owned())))).await.unwrap();
        hub.close().await;
    }
    leaf.stop().await;
}

/// Any namespace can use nats-server's own authorization with per-subject permissions on the
/// leaf's listeners: anonymous clients are refused, a user gets exactly its subjects, and a
/// subscription outside them is a typed error at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lan_authorization_gives_users_their_subjects_only() {
    let fixture = Fixture::new();
    let auth = fixture.cache.path().join("lan-auth.conf");
    std::fs::write(
        &auth,
        "users = [\n  { user: kitchen, password: \"pw-kitchen\", permissions: { publish: \"kitchen.>\", subscribe: [\"kitchen.>\", \"_INBOX.>\"] } }\n]\n",
    )
    .unwrap();
    let leaf = LeafNode::start(fixture.options().lan_authorization(&auth)).await.unwrap();
    let url = leaf.urls().client_url.clone();
    let options = |auth: Option<kinopio::Auth>| {
        let mut options = HubOptions::new()
            .servers([url.as_str()])
            .unwrap()
            .selection(SelectionMode::Ordered)
            .connect_timeout(Duration::from_millis(1500))
            .auto_retry(false);
        if let Some(auth) = auth {
            options = options.auth(auth);
        }
        options
    };
    let refused = Hub::connect(options(None)).await.unwrap_err();
    assert!(refused.to_string().to_lowercase().contains("authorization"), "{refused}");
    let kitchen = kinopio::Auth::UserPassword { user: "kitchen".into(), password: "pw-kitchen".into() };
    let hub = Hub::connect(options(Some(kitchen))).await.unwrap();
    let mut sub = hub.variable("kitchen.temp").unwrap().subscribe().await.unwrap();
    hub.variable("kitchen.temp").unwrap().publish(&21).await.unwrap();
    assert!(tokio::time::timeout(WAIT, sub.next()).await.unwrap().is_some());
    let denied = hub.variable("hall.temp").unwrap().subscribe().await.unwrap_err();
    assert_eq!(denied.kind(), kinopio::SubscribeErrorKind::PermissionDenied, "{denied}");
    hub.close().await;
    leaf.stop().await;
}

/// The WebSocket handshake's HTTP status line, sent over TLS (trusting `ca`) with `origin`.
async fn websocket_status(addr: std::net::SocketAddr, ca: &Path, origin: Option<&str>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(addr.ip().to_string()).unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let origin = origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(WAIT, tls.read(&mut buf)).await.unwrap().unwrap();
    String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_owned()
}

/// Attack: a hostile web page (any origin) opening a WebSocket to the leaf on the LAN. Only
/// the leaf's own origin and the configured ones may; non-browser clients (no `Origin`)
/// are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_listener_refuses_foreign_web_origins() {
    let fixture = Fixture::new();
    let leaf = LeafNode::start(fixture.options().allowed_origin("https://app.example:8443")).await.unwrap();
    let status = leaf.status();
    let addr = std::net::SocketAddr::new(status.websocket.host.parse().unwrap(), status.websocket.port);
    let own = format!("https://127.0.0.1:{}", status.discovery.port);
    let ca = leaf.ca_cert_file().to_path_buf();
    assert!(websocket_status(addr, &ca, Some("https://evil.example.com")).await.contains(" 403"));
    assert!(websocket_status(addr, &ca, Some("https://app.example:8443")).await.contains(" 101"));
    assert!(websocket_status(addr, &ca, Some(&own)).await.contains(" 101"));
    assert!(websocket_status(addr, &ca, None).await.contains(" 101"));
    leaf.stop().await;

    // `*` turns the check off (the page of any origin gets in: the user asked for it).
    let leaf = LeafNode::start(fixture.options().allowed_origin("*")).await.unwrap();
    let status = leaf.status();
    let addr = std::net::SocketAddr::new(status.websocket.host.parse().unwrap(), status.websocket.port);
    assert!(websocket_status(addr, leaf.ca_cert_file(), Some("https://evil.example.com")).await.contains(" 101"));
    leaf.stop().await;

    let err = LeafNode::start(fixture.options().allowed_origin("app.example")).await.unwrap_err();
    assert_eq!(err.kind(), LeafErrorKind::InvalidOption);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_client_trusting_the_ca_exchanges_messages_with_a_tcp_client() {
    let fixture = Fixture::new();
    let leaf = LeafNode::start(fixture.options()).await.unwrap();
    let status = leaf.status();
    assert_eq!(status.bridge_state, BridgeState::Disabled);
    assert_eq!(status.tls.material.source, TlsSource::Generated);
    assert_eq!(leaf.ca_cert_file(), fixture.cache.path().join("tls/ca-cert.pem"));
    assert!(leaf.urls().wss_url.starts_with("wss://127.0.0.1:"));

    let wss_hub = connect(&leaf.urls().wss_url, Some(leaf.ca_cert_file())).await;
    let tcp_hub = connect(&leaf.urls().client_url, None).await;
    let mut from_tcp = wss_hub.variable("room.chat").unwrap().subscribe().await.unwrap();
    let mut from_wss = tcp_hub.variable("room.reply").unwrap().subscribe().await.unwrap();
    tcp_hub.variable("room.chat").unwrap().publish_text("over tcp").await.unwrap();
    wss_hub.variable("room.reply").unwrap().publish_text("over wss").await.unwrap();
    let got = tokio::time::timeout(WAIT, from_tcp.next()).await.unwrap().unwrap();
    assert_eq!(got.value(), kinopio::Value::from("over tcp"));
    let got = tokio::time::timeout(WAIT, from_wss.next()).await.unwrap().unwrap();
    assert_eq!(got.value(), kinopio::Value::from("over wss"));

    // Without the CA the WSS listener is not trusted.
    let untrusted = HubOptions::new()
        .servers([leaf.urls().wss_url.as_str()])
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .max_reconnect_attempts(Some(0));
    assert!(tokio::time::timeout(WAIT, Hub::connect(untrusted)).await.unwrap().is_err());

    wss_hub.close().await;
    tcp_hub.close().await;
    leaf.stop().await;
}

fn https_client(ca: &Path) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    reqwest::Client::builder().no_proxy().tls_certs_only([ca]).timeout(Duration::from_secs(5)).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_is_served_over_https_verified_by_the_ca() {
    let fixture = Fixture::new();
    let leaf = LeafNode::start(fixture.options()).await.unwrap();
    let urls = leaf.urls().clone();
    assert!(urls.discovery_url.starts_with("https://127.0.0.1:"), "{}", urls.discovery_url);
    assert!(urls.discovery_url.ends_with("/.well-known/kinopio-leader.json"));

    let client = https_client(leaf.ca_cert_file());
    let response = client.get(&urls.discovery_url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.unwrap();
    let manifest = LeaderManifest::parse(&body, time::OffsetDateTime::now_utc()).unwrap();
    assert_eq!(manifest.node_id, leaf.node_id());
    assert_eq!(manifest.wss_url.as_str(), urls.wss_url);
    assert_eq!(manifest.client_url.as_str(), urls.client_url);
    assert_eq!(manifest.monitor_url.as_str(), urls.monitor_url);
    assert_eq!(manifest.discovery_url.as_str(), urls.discovery_url);
    assert_eq!(manifest.advertised_hostname, "127.0.0.1");
    assert_eq!(manifest.bridge_state, BridgeState::Disabled);
    assert!(manifest.generated_at.is_some());
    assert_eq!(manifest.expires_at - manifest.generated_at.unwrap(), time::Duration::seconds(5));
    assert_eq!(manifest.ca_cert_sha256.as_deref(), Some(leaf.status().tls.material.ca_cert_sha256.as_str()));

    let legacy = urls.discovery_url.replace("/.well-known/kinopio-leader.json", "/manifest.json");
    assert_eq!(client.get(&legacy).send().await.unwrap().status(), 200);
    let health: serde_json::Value = client
        .get(urls.discovery_url.replace("/.well-known/kinopio-leader.json", "/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["ok"], true);
    assert_eq!(health["bridgeState"], "disabled");

    // A client that does not trust the CA is refused.
    let stranger =
        reqwest::Client::builder().no_proxy().tls_certs_only(Vec::<reqwest::Certificate>::new()).build().unwrap();
    assert!(stranger.get(&urls.discovery_url).send().await.is_err());
    leaf.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_backbone_still_gives_a_working_local_leaf() {
    let fixture = Fixture::new();
    let dead = format!("nats://127.0.0.1:{}", kinopio_test_support::free_port());
    let leaf = LeafNode::start(fixture.options().backbone_server(&dead)).await.unwrap();
    // Several polls later it is still connecting (not error, not connected).
    let mut watch = leaf.watch();
    for _ in 0..3 {
        let _ = tokio::time::timeout(Duration::from_millis(500), watch.changed()).await;
    }
    let status = leaf.status();
    assert!(status.server_ready);
    assert_eq!(status.bridge_state, BridgeState::Connecting);
    assert_eq!(status.state, LeafState::Running);

    let hub = connect(&leaf.urls().client_url, None).await;
    let variable = hub.variable("local.only").unwrap();
    let mut sub = variable.subscribe().await.unwrap();
    variable.publish(&7).await.unwrap();
    let got = tokio::time::timeout(WAIT, sub.next()).await.unwrap().unwrap();
    assert_eq!(got.decode::<i64>().unwrap(), 7);
    hub.close().await;
    leaf.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_server_is_restarted_on_the_same_ports() {
    let fixture = Fixture::new();
    let leaf = LeafNode::start(fixture.options()).await.unwrap();
    let before = leaf.status();
    let old_pid = before.process_id.unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old_pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();

    let after = wait_status(&leaf, "a restarted, ready server", |s| {
        s.restarts == 1 && s.state == LeafState::Running && s.server_ready && s.process_id.is_some()
    })
    .await;
    assert_ne!(after.process_id, Some(old_pid));
    assert!(after.last_error.as_deref().unwrap().contains("exited unexpectedly"), "{:?}", after.last_error);
    assert_eq!(after.client.port, before.client.port);
    assert_eq!(after.websocket.port, before.websocket.port);
    assert!(!pid_alive(old_pid));

    let hub = connect(&leaf.urls().client_url, None).await;
    assert!(hub.is_connected());
    hub.close().await;
    leaf.stop().await;
    assert!(!pid_alive(after.process_id.unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_is_a_typed_error_naming_port_and_flag() {
    let fixture = Fixture::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let runtime = tempfile::tempdir().unwrap();
    let given_dir = runtime.path().join("leaf");

    type SetPort = fn(LeafOptions, u16) -> LeafOptions;
    let cases: [(ListenerKind, SetPort); 4] = [
        (ListenerKind::Client, LeafOptions::client_port),
        (ListenerKind::Websocket, LeafOptions::websocket_port),
        (ListenerKind::Discovery, LeafOptions::discovery_port),
        (ListenerKind::Monitor, LeafOptions::monitor_port),
    ];
    for (expected, set_port) in cases {
        let options = set_port(fixture.options().runtime_dir(&given_dir), port);
        let err = LeafNode::start(options).await.unwrap_err();
        match &err {
            LeafError::PortInUse { listener, addr } => {
                assert_eq!(*listener, expected);
                assert_eq!(addr.port(), port);
            }
            other => panic!("expected PortInUse for {expected:?}, got {other}"),
        }
        assert_eq!(err.kind(), LeafErrorKind::PortInUse);
        let text = err.to_string();
        assert!(text.contains(&port.to_string()) && text.contains(&expected.to_string()), "{text}");
        // Nothing was left behind in the given runtime directory.
        if given_dir.exists() {
            assert_eq!(std::fs::read_dir(&given_dir).unwrap().count(), 0);
        }
    }
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_removes_a_temporary_runtime_dir_and_keeps_a_given_one() {
    let fixture = Fixture::new();
    let leaf = LeafNode::start(fixture.options()).await.unwrap();
    let temp_dir = leaf.runtime_dir();
    let pid = leaf.status().process_id.unwrap();
    assert!(temp_dir.join("leaf-nats.conf").is_file());
    assert!(matches!(leaf.stop().await, StopReport::Stopped(_)));
    assert_eq!(leaf.stop().await, StopReport::AlreadyStopped);
    assert!(!temp_dir.exists());
    assert!(!pid_alive(pid));
    let status = leaf.status();
    assert_eq!(status.state, LeafState::Stopped);
    assert_eq!(status.process_id, None);
    assert!(!status.server_ready && !status.client.ready && !status.discovery.ready);

    let parent = tempfile::tempdir().unwrap();
    let given: PathBuf = parent.path().join("runtime");
    let leaf = LeafNode::start(fixture.options().runtime_dir(&given)).await.unwrap();
    assert_eq!(leaf.runtime_dir(), given);
    assert!(given.join("leaf-nats.log").is_file());
    leaf.stop().await;
    assert!(given.is_dir(), "a given runtime dir is never deleted");
    assert_eq!(std::fs::read_dir(&given).unwrap().count(), 0, "the leaf's files are removed");
    // It can be used again.
    let leaf = LeafNode::start(fixture.options().runtime_dir(&given)).await.unwrap();
    leaf.stop().await;

    std::fs::write(given.join("mine.txt"), "keep").unwrap();
    let err = LeafNode::start(fixture.options().runtime_dir(&given)).await.unwrap_err();
    assert_eq!(err.kind(), LeafErrorKind::RuntimeDirNotEmpty);
    assert!(given.join("mine.txt").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_is_renewed_while_running() {
    let fixture = Fixture::new();
    // A 3-second certificate renewed every second: after a few renewals the first one has
    // expired, so WSS and HTTPS only verify if nats-server reloaded and the discovery
    // server swapped its certificate.
    let options = fixture.options().leaf_cert_lifetime(Duration::from_secs(3)).timings(LeafTimings {
        poll_interval: Duration::from_millis(200),
        renewal_min_interval: Duration::from_secs(1),
        ..LeafTimings::default()
    });
    let leaf = LeafNode::start(options).await.unwrap();
    let first = leaf.status().tls.material.not_after;
    let renewed = wait_status(&leaf, "five renewals", |s| s.tls.renewals >= 5).await;
    assert!(renewed.tls.material.not_after > first);
    assert!(time::OffsetDateTime::now_utc() > first, "the first certificate has expired");
    assert_eq!(
        renewed.tls.trust,
        TrustStatus::Done(TrustState::Skipped { reason: "KINOPIO_SKIP_CA_TRUST_INSTALL is set".into() })
    );

    let client = https_client(leaf.ca_cert_file());
    assert_eq!(client.get(&leaf.urls().discovery_url).send().await.unwrap().status(), 200);
    let hub = connect(&leaf.urls().wss_url, Some(leaf.ca_cert_file())).await;
    assert!(hub.is_connected());
    hub.close().await;

    // A restarted server (started from the fixed-port config) reloads renewed
    // certificates too.
    let pid = renewed.process_id.unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    let restarted =
        wait_status(&leaf, "a restart", |s| s.restarts == 1 && s.state == LeafState::Running && s.server_ready).await;
    let renewals = restarted.tls.renewals;
    wait_status(&leaf, "four more renewals", |s| s.tls.renewals >= renewals + 4).await;
    let hub = connect(&leaf.urls().wss_url, Some(leaf.ca_cert_file())).await;
    assert!(hub.is_connected());
    hub.close().await;
    leaf.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supplied_certificates_are_used_as_given() {
    let fixture = Fixture::new();
    // Issue a certificate with a separate CA, then hand the files to the leaf.
    let material_dir = tempfile::tempdir().unwrap();
    let supplied = kinopio_leaf::tls::prepare(
        &kinopio_leaf::tls::TlsOptions::generated(
            material_dir.path().join("ca"),
            material_dir.path(),
            vec!["127.0.0.1".into()],
        ),
        time::OffsetDateTime::now_utc(),
    )
    .unwrap()
    .material();
    let leaf = LeafNode::start(
        fixture.options().cert_file(&supplied.cert_file).key_file(&supplied.key_file).ca_file(&supplied.ca_file),
    )
    .await
    .unwrap();
    let status = leaf.status();
    assert_eq!(status.tls.material.source, TlsSource::Supplied);
    assert_eq!(status.tls.material.cert_file, supplied.cert_file);
    assert_eq!(status.tls.trust, TrustStatus::Done(TrustState::External));
    assert_eq!(leaf.ca_cert_file(), supplied.ca_file);
    assert!(!fixture.cache.path().join("tls/ca-cert.pem").exists(), "no CA is generated");
    let hub = connect(&leaf.urls().wss_url, Some(&supplied.ca_file)).await;
    assert!(hub.is_connected());
    hub.close().await;
    leaf.stop().await;
    assert!(supplied.cert_file.is_file(), "supplied files are never removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_lan_address_is_bracketed_in_urls_and_works() {
    let fixture = Fixture::new();
    let leaf = LeafNode::start(fixture.options().lan_bind_address("::1".parse().unwrap())).await.unwrap();
    let urls = leaf.urls().clone();
    assert!(urls.wss_url.starts_with("wss://[::1]:"), "{}", urls.wss_url);
    assert!(urls.discovery_url.starts_with("https://[::1]:"), "{}", urls.discovery_url);
    assert_eq!(urls.advertised_host, "::1");
    assert_eq!(leaf.status().websocket.host, "::1");

    let body = https_client(leaf.ca_cert_file()).get(&urls.discovery_url).send().await.unwrap().bytes().await.unwrap();
    let manifest = LeaderManifest::parse(&body, time::OffsetDateTime::now_utc()).unwrap();
    assert_eq!(manifest.wss_url.as_str(), urls.wss_url);
    let hub = connect(&urls.wss_url, Some(leaf.ca_cert_file())).await;
    assert!(hub.is_connected());
    hub.close().await;
    leaf.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_keeps_dying_is_given_up_and_health_says_so() {
    let fixture = Fixture::new();
    let policy =
        RestartPolicy { max_attempts: 1, initial_backoff: Duration::from_millis(50), ..RestartPolicy::default() };
    let leaf = LeafNode::start(fixture.options().restart_policy(policy)).await.unwrap();
    let client = https_client(leaf.ca_cert_file());
    let health_url = leaf.urls().discovery_url.replace("/.well-known/kinopio-leader.json", "/healthz");
    assert_eq!(client.get(&health_url).send().await.unwrap().status(), 200);

    let kill = |pid: u32| {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap()
    };
    kill(leaf.status().process_id.unwrap());
    let restarted = wait_status(&leaf, "one restart", |s| s.restarts == 1 && s.state == LeafState::Running).await;
    kill(restarted.process_id.unwrap());
    let failed = wait_status(&leaf, "the failed state", |s| s.state == LeafState::Failed).await;
    assert!(!failed.server_ready);
    assert_eq!(failed.process_id, None);
    assert_eq!(failed.restarts, 1);

    // The discovery server stays up and tells the truth: unhealthy, no manifest.
    let response = client.get(&health_url).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let health: serde_json::Value = response.json().await.unwrap();
    assert_eq!(health["ok"], false);
    assert_eq!(health["state"], "failed");
    assert_eq!(client.get(&leaf.urls().discovery_url).send().await.unwrap().status(), 503);
    assert!(leaf.manifest().is_none());
    assert!(matches!(leaf.stop().await, StopReport::Stopped(_)));
}
