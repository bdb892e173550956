//! The leaf's status page and `/status.json` against a real leaf: live values (bridge, RTT,
//! clients, message rates), no secret anywhere on them, the page for browsers and the
//! manifest for scripts at `/`, and CORS limited to the allowed origins.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use kinopio::{Hub, HubOptions, SelectionMode};
use kinopio_leaf::runtime::{LeafNode, LeafOptions, LeafTimings};
use kinopio_leaf::status_page::StatusReport;
use kinopio_leaf::tls::TrustStoreConfig;
use kinopio_test_support::{NatsServer, WAIT, nats_server_binary};
use serde_json::Value as Json;

const BACKBONE_PASSWORD: &str = "backbone-pass-7c1e";
const NAMESPACE_SECRET: &str = "namespace secret 4d2a";
const APP_ORIGIN: &str = "https://app.example:8443";

fn options(cache: &Path) -> LeafOptions {
    LeafOptions::new()
        .binary_path(nats_server_binary())
        .cache_dir(cache)
        .lan_bind_address("127.0.0.1".parse().unwrap())
        .trust_store(TrustStoreConfig::none().with_env_skip(|_| Some("1".to_owned())))
        .timings(LeafTimings { poll_interval: Duration::from_millis(200), ..LeafTimings::default() })
}

fn https_client(ca: &Path) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    reqwest::Client::builder().no_proxy().tls_certs_only([ca]).timeout(Duration::from_secs(5)).build().unwrap()
}

fn base(leaf: &LeafNode) -> String {
    leaf.urls().discovery_url.replace("/.well-known/kinopio-leader.json", "")
}

/// A secured leaf bridged with a password: the status report shows live traffic, the
/// bridge and its RTT, and neither the backbone password, the namespace secret, its LAN
/// token nor any key appears in the report, the page or the CA download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_live_and_holds_no_secret() {
    let cache = tempfile::tempdir().unwrap();
    let backbone = NatsServer::start_with_config(&format!(
        "leafnodes {{\n  listen: \"127.0.0.1:-1\"\n  authorization {{ user: leafuser, password: \"{BACKBONE_PASSWORD}\" }}\n}}\n"
    ));
    let password_file = cache.path().join("backbone-password");
    std::fs::write(&password_file, format!("{BACKBONE_PASSWORD}\n")).unwrap();
    let namespace_ca =
        std::sync::Arc::new(kinopio::trust::NamespaceCa::derive("studio", NAMESPACE_SECRET.as_bytes()).unwrap());
    let leaf = LeafNode::start(
        options(cache.path())
            .backbone_server(backbone.leafnode_url())
            .backbone_user("leafuser")
            .backbone_password_file(&password_file)
            .namespace_ca(namespace_ca.clone())
            .allowed_origin(APP_ORIGIN),
    )
    .await
    .unwrap();
    let http = https_client(leaf.ca_cert_file());

    // A client on the leaf publishing: the report shows it and the rates.
    let hub = Hub::connect(
        HubOptions::new()
            .servers([leaf.urls().client_url.as_str()])
            .unwrap()
            .selection(SelectionMode::Ordered)
            .auth(kinopio::Auth::Token(namespace_ca.lan_token().to_owned())),
    )
    .await
    .unwrap();
    let variable = hub.scope("status").unwrap().variable("ticks").unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let report = loop {
        variable.publish(&1).await.unwrap();
        let body: Json = http.get(format!("{}/status.json", base(&leaf))).send().await.unwrap().json().await.unwrap();
        let report: StatusReport = serde_json::from_value(body).unwrap();
        let live = report.traffic.is_some_and(|t| t.clients >= 1 && t.in_msgs_per_sec > 0.0)
            && report.bridge.state == "connected"
            && report.bridge.rtt_ms.is_some();
        if live {
            break report;
        }
        assert!(tokio::time::Instant::now() < deadline, "the report never went live: {report:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(report.kind, "kinopio-leaf-status");
    assert_eq!(report.node_id, leaf.node_id());
    assert_eq!((report.mode.as_str(), report.role.as_str()), ("manual", "leaf"));
    assert_eq!(report.leader.node_id, leaf.node_id());
    assert!(report.election.is_none());
    assert_eq!(report.bridge.backbone_servers, [backbone.leafnode_url()]);
    assert_eq!(report.connect.wss_url, leaf.urls().wss_url);
    assert_eq!(report.connect.ca_cert_url, format!("{}/ca.pem", base(&leaf)));
    assert!(report.tls.expires_in_seconds > 0);
    assert_eq!(report.tls.trust["state"], "skipped");
    assert_eq!(leaf.status_report().node_id, report.node_id);

    // Everything a stranger can fetch, at every path.
    let mut public = String::new();
    for (path, accept) in [
        ("/status.json", "*/*"),
        ("/.well-known/kinopio-status.json", "*/*"),
        ("/", "text/html"),
        ("/", "*/*"),
        ("/ca.pem", "*/*"),
        ("/.well-known/kinopio-leader.json", "*/*"),
        ("/healthz", "*/*"),
    ] {
        let response = http.get(format!("{}{path}", base(&leaf))).header("accept", accept).send().await.unwrap();
        assert!(response.status().is_success(), "{path}: {}", response.status());
        public.push_str(&response.text().await.unwrap());
    }
    for secret in [BACKBONE_PASSWORD, NAMESPACE_SECRET, namespace_ca.lan_token(), "PRIVATE KEY", "leafuser"] {
        assert!(!public.contains(secret), "{secret:?} is public");
    }
    // No local paths either (the runtime directory, the cache, the CA file).
    assert!(!public.contains(&cache.path().display().to_string()));
    assert!(!public.contains(&leaf.runtime_dir().display().to_string()));
    // The CA download is the CA clients verify with.
    let pem = http.get(format!("{}/ca.pem", base(&leaf))).send().await.unwrap().text().await.unwrap();
    assert_eq!(pem.trim(), std::fs::read_to_string(leaf.ca_cert_file()).unwrap().trim());

    hub.close().await;
    leaf.stop().await;
}

/// `/` is the status page for a browser navigating to it and the manifest for scripts (the
/// 0.1.1 clients fetch it); pages from origins the leaf does not allow cannot read its
/// responses (attack: a stranger's page probing the LAN for the leaf's URLs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_for_browsers_and_cors_for_allowed_origins_only() {
    let cache = tempfile::tempdir().unwrap();
    let leaf = LeafNode::start(options(cache.path()).allowed_origin(APP_ORIGIN)).await.unwrap();
    let http = https_client(leaf.ca_cert_file());
    let get = |path: &str, headers: &[(&str, &str)]| {
        let mut request = http.get(format!("{}{path}", base(&leaf)));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };

    let page = get("/", &[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")]).await.unwrap();
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("default-src 'none'") && policy.contains("connect-src 'self'"), "{policy}");
    let html = page.text().await.unwrap();
    assert!(html.contains("/status.json") && html.contains("<title>kinopio leaf</title>"));
    assert!(!html.contains("http://") && !html.contains("src=\"https"), "the page loads nothing from elsewhere");

    let manifest = get("/", &[]).await.unwrap();
    assert_eq!(manifest.headers()["content-type"], "application/json");
    let manifest: Json = manifest.json().await.unwrap();
    assert_eq!(manifest["wssUrl"], leaf.urls().wss_url.as_str());

    // CORS: the allowed origin (and the leaf's own) may read; a stranger's page may not.
    let own = base(&leaf);
    for origin in [APP_ORIGIN, own.as_str()] {
        for path in ["/.well-known/kinopio-leader.json", "/status.json"] {
            let response = get(path, &[("origin", origin)]).await.unwrap();
            assert_eq!(response.headers().get("access-control-allow-origin").unwrap(), origin, "{path}");
        }
    }
    for path in ["/.well-known/kinopio-leader.json", "/status.json", "/ca.pem", "/healthz"] {
        let response = get(path, &[("origin", "https://stranger.example")]).await.unwrap();
        assert!(response.headers().get("access-control-allow-origin").is_none(), "{path} is readable by a stranger");
        assert!(response.headers()["vary"].to_str().unwrap().contains("Origin"));
    }
    leaf.stop().await;

    // With `*` every page may read (the operator's explicit choice).
    let leaf = LeafNode::start(options(cache.path()).allowed_origin("*")).await.unwrap();
    let response = get_any(&leaf, "https://stranger.example").await;
    assert_eq!(response, Some("*".to_owned()));
    leaf.stop().await;
}

async fn get_any(leaf: &LeafNode, origin: &str) -> Option<String> {
    let http = https_client(leaf.ca_cert_file());
    let response = http.get(format!("{}/status.json", base(leaf))).header("origin", origin).send().await.unwrap();
    response.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_owned())
}
