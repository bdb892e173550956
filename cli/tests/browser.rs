//! A real browser against a real leaf: headless Chromium (driven over WebDriver by the
//! system `chromedriver`) runs a page that uses the real JavaScript NATS client (`nats.ws`,
//! installed by `scripts/install-deps.sh` into `.npm/`) the way the JavaScript kinopio-hub
//! 2.x does: backbone WebSocket first, then the leaf's `wssUrl` from its HTTPS manifest, back
//! to the backbone when the leaf stops. Values go both ways between the browser, a Rust
//! kinopio hub and a Python kinopio-hub 0.1.1 peer on the backbone.
//!
//! The browser trusts the leaf only because `kinopio leaf start --install-ca-trust
//! --ca-trust-store nss` put its CA into the NSS database of a temporary HOME (the machine's
//! trust stores are never touched); a leaf whose CA was not installed, a leaf with an expired
//! certificate and a page from an origin the leaf does not allow are each refused, visibly,
//! while the page keeps its session. The status page is checked live and saved as
//! `results/leaf-status-page.png`.
//!
//! `#[ignore]`d: it needs Chromium, chromedriver, certutil and nats.ws; `scripts/test.sh`
//! runs it with `--ignored` when they are installed (CI installs them), so a run without them
//! reports it as ignored, never as passed.

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kinopio::{Hub, HubOptions};
use kinopio_test_support::{NatsServer, WAIT, free_port, wait_accepting};
use serde_json::{Value as Json, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

fn repo() -> PathBuf {
    kinopio_test_support::repo_root()
}

fn nats_ws_module() -> PathBuf {
    repo().join(".npm/node_modules/nats.ws/esm/nats.js")
}

/// What is missing to run the test (each with how to get it).
fn missing_tools() -> Vec<String> {
    let mut missing = Vec::new();
    for (program, package) in
        [("chromium", "chromium"), ("chromedriver", "chromium-driver"), ("certutil", "libnss3-tools")]
    {
        if which(program).is_none() {
            missing.push(format!("{program} (apt-get install {package})"));
        }
    }
    if !nats_ws_module().is_file() {
        missing.push("nats.ws (scripts/install-deps.sh installs it into .npm/)".to_owned());
    }
    missing
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
}

// ---------------------------------------------------------------------------------------
// A small HTTP server for the test page (a different origin from the leaf's).

/// Serves `/` (the page) and `/nats.js` (the nats.ws ES module) on 127.0.0.1.
async fn serve_page() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let page = std::fs::read(repo().join("cli/tests/browser/page.html")).unwrap();
    let module = std::fs::read(nats_ws_module()).unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let (page, module) = (page.clone(), module.clone());
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => request.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let line = String::from_utf8_lossy(&request);
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let (status, kind, body) = match path.as_str() {
                    "/" => ("200 OK", "text/html; charset=utf-8", page),
                    "/nats.js" => ("200 OK", "text/javascript", module),
                    _ => ("404 Not Found", "text/plain", b"not found".to_vec()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (port, task)
}

// ---------------------------------------------------------------------------------------
// `kinopio leaf start` as a child process.

struct Leaf {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    first: Json,
}

impl Leaf {
    /// Starts `kinopio leaf start --json` with `HOME` (and the cache) in `home`.
    async fn start(home: &Path, extra: &[&str], install_trust: bool) -> Leaf {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kinopio"));
        command
            .args(["leaf", "start", "--json", "--lan-bind-address", "127.0.0.1", "--binary-path"])
            .arg(kinopio_test_support::nats_server_binary())
            .arg("--cache-dir")
            .arg(home.join("cache"))
            .args(extra)
            .env("HOME", home)
            .env("TMPDIR", home)
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        if install_trust {
            // The real install path, into the temporary HOME's NSS database only.
            command.args(["--install-ca-trust", "--ca-trust-store", "nss"]).env_remove("KINOPIO_SKIP_CA_TRUST_INSTALL");
        } else {
            command.env("KINOPIO_SKIP_CA_TRUST_INSTALL", "1");
        }
        let mut child = command.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = next_json(&mut lines).await;
        assert!(first.get("wssUrl").is_some(), "unexpected first line {first}");
        Leaf { child, lines, first }
    }

    fn url(&self, key: &str) -> String {
        self.first[key].as_str().unwrap().to_owned()
    }

    fn base(&self) -> String {
        self.url("discoveryUrl").replace("/.well-known/kinopio-leader.json", "")
    }

    /// Reads status lines until `done(status)` holds.
    async fn wait_status(&mut self, what: &str, done: impl Fn(&Json) -> bool) -> Json {
        if done(&self.first["status"]) {
            return self.first["status"].clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "leaf: no {what} in time");
            let line = next_json(&mut self.lines).await;
            if done(&line["status"]) {
                return line["status"].clone();
            }
        }
    }

    async fn stop(mut self) {
        let pid = self.child.id().unwrap();
        std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap();
        let status = tokio::time::timeout(WAIT, self.child.wait()).await.unwrap().unwrap();
        assert_eq!(status.code(), Some(0));
    }
}

async fn next_json(lines: &mut Lines<BufReader<ChildStdout>>) -> Json {
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("timed out waiting for a leaf line")
        .unwrap()
        .expect("the leaf exited");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"))
}

// ---------------------------------------------------------------------------------------
// A minimal W3C WebDriver client over chromedriver.

struct Browser {
    driver: Child,
    http: reqwest::Client,
    base: String,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium whose HOME (and so NSS database) is `home`.
    async fn start(home: &Path) -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .env("HOME", home)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so Chromium goes with it even when the test panics.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        tokio::task::spawn_blocking(move || wait_accepting(port, Duration::from_secs(10))).await.unwrap();
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap();
        let mut browser = Browser { driver, http, base: format!("http://127.0.0.1:{port}") };
        let profile = home.join("profile");
        let session = browser
            .call(
                reqwest::Method::POST,
                "/session",
                json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:loggingPrefs": {"browser": "ALL"},
                    "goog:chromeOptions": {
                        "binary": which("chromium").unwrap(),
                        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                 "--no-first-run", "--window-size=1100,1500",
                                 format!("--user-data-dir={}", profile.display())],
                    },
                }}}),
            )
            .await;
        let id = session["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {session}")).to_owned();
        browser.base = format!("{}/session/{id}", browser.base);
        browser
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Json) -> Json {
        let request = self.http.request(method.clone(), format!("{}{path}", self.base));
        let request = if method == reqwest::Method::GET { request } else { request.json(&body) };
        let response: Json = request.send().await.unwrap().json().await.unwrap();
        response["value"].clone()
    }

    async fn goto(&self, url: &str) {
        let value = self.call(reqwest::Method::POST, "/url", json!({"url": url})).await;
        assert!(value.is_null(), "navigating to {url}: {value}");
    }

    /// Runs `window.T.<call>` in the page and returns its result.
    async fn run(&self, call: &str) -> Json {
        let script = format!(
            "const done = arguments[arguments.length - 1];\
             Promise.resolve().then(() => window.T.{call}).then(done, (e) => done({{thrown: String(e)}}));"
        );
        self.call(reqwest::Method::POST, "/execute/async", json!({"script": script, "args": []})).await
    }

    async fn eval(&self, expression: &str) -> Json {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": format!("return {expression};"), "args": []}),
        )
        .await
    }

    /// Polls `expression` until `done` holds (every 100 ms, up to `WAIT`).
    async fn wait_for(&self, what: &str, expression: &str, done: impl Fn(&Json) -> bool) -> Json {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.eval(expression).await;
            if done(&value) {
                return value;
            }
            assert!(Instant::now() < deadline, "browser: {what} did not happen in time; last: {value}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn page_ready(&self) {
        self.wait_for("the page module loading", "document.title", |v| v == "ready").await;
    }

    /// Opens a tab beside `from` and switches to it.
    async fn new_tab(&self, from: &str) -> String {
        // chromedriver can lose track of a tab whose page changed process; select it again.
        self.switch_to(from).await;
        let value = self.call(reqwest::Method::POST, "/window/new", json!({"type": "tab"})).await;
        let handle = value["handle"].as_str().unwrap_or_else(|| panic!("no new tab: {value}")).to_owned();
        self.switch_to(&handle).await;
        handle
    }

    async fn switch_to(&self, handle: &str) {
        let value = self.call(reqwest::Method::POST, "/window", json!({"handle": handle})).await;
        assert!(value.is_null(), "switching to {handle}: {value}");
    }

    async fn close_tab(&self) {
        self.call(reqwest::Method::DELETE, "/window", json!({})).await;
    }

    async fn window(&self) -> String {
        let value = self.call(reqwest::Method::GET, "/window", Json::Null).await;
        value.as_str().unwrap_or_else(|| panic!("no window handle: {value}")).to_owned()
    }

    /// The browser's console and network errors since the last call.
    async fn log(&self) -> String {
        let value = self.call(reqwest::Method::POST, "/se/log", json!({"type": "browser"})).await;
        value
            .as_array()
            .map(|entries| entries.iter().filter_map(|e| e["message"].as_str()).collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    async fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let value = self.call(reqwest::Method::GET, "/screenshot", Json::Null).await;
        let png = base64::engine::general_purpose::STANDARD.decode(value.as_str().unwrap()).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    async fn quit(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.call(reqwest::Method::DELETE, "", json!({}))).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver and the Chromium it started (one process group, ours).
        if let Some(pid) = self.driver.id() {
            let _ = std::process::Command::new("kill").args(["-s", "KILL", "--"]).arg(format!("-{pid}")).status();
        }
    }
}

// ---------------------------------------------------------------------------------------

/// The Python kinopio-hub 0.1.1 peer (`scripts/interop/peer.py`).
fn python_peer(server: &str, args: &[&str]) -> (Child, Lines<BufReader<ChildStdout>>) {
    let python = kinopio_test_support::python();
    let mut child = Command::new(python)
        .arg(repo().join("scripts/interop/peer.py"))
        .args(["--server", server])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the Python peer (scripts/install-deps.sh)");
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

async fn peer_line(lines: &mut Lines<BufReader<ChildStdout>>) -> Json {
    let line = tokio::time::timeout(WAIT, lines.next_line()).await.expect("Python peer: no line in time").unwrap();
    serde_json::from_str(&line.expect("the Python peer exited")).unwrap()
}

/// True when the page received `value` through `via`.
fn received(state: &Json, via: &str, value: &Json) -> bool {
    state["received"].as_array().is_some_and(|all| all.iter().any(|m| m["via"] == via && &m["value"] == value))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, chromedriver, certutil and nats.ws: scripts/test.sh runs it with --ignored once scripts/install-deps.sh installed them"]
async fn a_real_browser_goes_local_first_through_the_leaf_and_back() {
    let missing = missing_tools();
    assert!(missing.is_empty(), "cannot run the browser test; missing: {}", missing.join(", "));
    let started = Instant::now();
    let _ = rustls::crypto::ring::default_provider().install_default();

    // The backbone: leafnode port for the leaves, a WebSocket listener for browsers.
    let ws_port = free_port();
    let backbone = NatsServer::start_with_config(&format!(
        "leafnodes {{ listen: \"127.0.0.1:-1\" }}\nwebsocket {{ host: \"127.0.0.1\", port: {ws_port}, no_tls: true }}\n"
    ));
    let backbone_ws = format!("ws://127.0.0.1:{ws_port}");
    wait_accepting(ws_port, Duration::from_secs(10));

    // Two origins serving the same page: the app's and a stranger's.
    let (app_port, _app) = serve_page().await;
    let (stranger_port, _stranger) = serve_page().await;
    let app_origin = format!("http://127.0.0.1:{app_port}");
    let stranger_origin = format!("http://127.0.0.1:{stranger_port}");

    // HOME of the browser's device: kinopio installs the leaf's CA into its NSS database.
    let home = tempfile::Builder::new().prefix("kinopio-browser-").tempdir().unwrap();
    let nssdb = home.path().join(".pki/nssdb");
    std::fs::create_dir_all(&nssdb).unwrap();
    let created = std::process::Command::new("certutil")
        .args(["-N", "--empty-password", "-d"])
        .arg(format!("sql:{}", nssdb.display()))
        .status()
        .unwrap();
    assert!(created.success(), "certutil could not create the NSS database");

    let leafnode = backbone.leafnode_url();
    let mut leaf =
        Leaf::start(home.path(), &["--backbone-server", &leafnode, "--allowed-origin", &app_origin], true).await;
    let status = leaf
        .wait_status("CA installed into NSS and bridge connected", |s| {
            matches!(s["tls"]["trust"]["state"].as_str(), Some("installed" | "alreadyInstalled"))
                && s["bridgeState"] == "connected"
        })
        .await;
    let stores = status["tls"]["trust"]["stores"].to_string();
    assert!(stores.contains("nss"), "installed into {stores}");
    assert!(!stores.contains("system"), "the machine's store must not be touched: {stores}");

    // A leaf whose CA this device does not trust (no install step), and one with an expired
    // certificate from the CA this device does trust.
    let other_home = tempfile::Builder::new().prefix("kinopio-browser-other-").tempdir().unwrap();
    let untrusted = Leaf::start(other_home.path(), &["--allowed-origin", &app_origin], false).await;
    let expired_dir = tempfile::Builder::new().prefix("kinopio-browser-expired-").tempdir().unwrap();
    let ca =
        kinopio_leaf::tls::LocalCa::load_or_create(&home.path().join("cache/tls"), time::OffsetDateTime::now_utc())
            .unwrap();
    let request = kinopio_leaf::tls::LeafCertRequest::new(vec!["127.0.0.1".to_owned()])
        .with_lifetime(Duration::from_secs(24 * 3600));
    let old = ca.issue_leaf(&request, time::OffsetDateTime::now_utc() - time::Duration::days(3)).unwrap();
    let files = old.write_to(expired_dir.path()).unwrap();
    let (cert, key) = (files.cert_file.display().to_string(), files.key_file.display().to_string());
    let ca_file = ca.cert_path().display().to_string();
    let expired = Leaf::start(
        expired_dir.path(),
        &["--cert-file", &cert, "--key-file", &key, "--ca-file", &ca_file, "--allowed-origin", &app_origin],
        false,
    )
    .await;

    // The Rust hub and the Python peer on the backbone.
    let hub = Hub::connect(HubOptions::new().servers([backbone.url()]).unwrap()).await.unwrap();
    let from_browser = hub.scope("browser").unwrap().variable("fromBrowser").unwrap();
    let to_browser = hub.scope("browser").unwrap().variable("toBrowser").unwrap();
    let mut rust_incoming = from_browser.subscribe().await.unwrap();
    let (_python_sub, mut python_sub) = python_peer(&backbone.url(), &["sub", "browser.fromBrowser", "1"]);
    assert_eq!(peer_line(&mut python_sub).await, json!({"ready": true}));

    let browser = Browser::start(home.path()).await;
    browser.goto(&format!("{app_origin}/")).await;
    browser.page_ready().await;
    // (After the navigation: Chromium may give the page a new target.)
    let app_tab = browser.window().await;

    // 1. Remote first: the backbone's WebSocket.
    let on = browser.run(&format!("start({backbone_ws:?})")).await;
    assert_eq!(on["on"], "backbone", "{on}");
    let hello = json!({"from": "rust", "n": 0});
    deliver(&browser, || to_browser.publish(&hello), "backbone", &hello).await;

    // 2. Discovery: manifest over HTTPS from another origin (CORS), then the leaf's wssUrl.
    let switched = browser.run(&format!("discover({:?})", leaf.url("discoveryUrl"))).await;
    assert_eq!(switched["switched"], true, "the page did not switch to the leaf: {switched}\n{}", browser.log().await);
    assert_eq!(switched["wssUrl"], leaf.url("wssUrl"));

    // 3. Through the leaf, both ways: browser -> backbone (Rust hub and Python peer) ...
    let from_page = json!({"from": "browser", "n": 1});
    let deadline = Instant::now() + WAIT;
    let got = loop {
        assert!(Instant::now() < deadline, "the browser's publish never reached the backbone");
        let published = browser.run(&format!("publish(\"browser.fromBrowser\", {from_page})")).await;
        assert_eq!(published["on"], "local leaf", "{published}");
        if let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(500), rust_incoming.next()).await {
            break msg;
        }
    };
    assert_eq!(got.decode::<Json>().unwrap(), from_page);
    let python_got = peer_line(&mut python_sub).await;
    assert_eq!(python_got["value"], from_page, "the Python peer got {python_got}");
    // ... and backbone -> browser, from the Rust hub and from the Python peer.
    let from_rust = json!({"from": "rust", "n": 2});
    deliver(&browser, || to_browser.publish(&from_rust), "local leaf", &from_rust).await;
    let (_python_pub, mut python_pub) = python_peer(&backbone.url(), &["pub", "browser.toBrowser", "nested"]);
    assert_eq!(peer_line(&mut python_pub).await, json!({"published": 1}));
    let nested = json!({"a": {"b": [1, {"c": "d"}]}, "é": "ü"});
    browser.wait_for("the Python peer's value", "window.T.state()", |s| received(s, "local leaf", &nested)).await;

    // 4. The status page, live, in a second tab (the first keeps its connection).
    browser.new_tab(&app_tab).await;
    browser.goto(&format!("{}/", leaf.base())).await;
    let page = browser
        .wait_for(
            "live values on the status page",
            "{banner: document.getElementById('banner').textContent, clients: document.getElementById('clients').textContent, \
              bridge: document.getElementById('bridge').textContent, rtt: document.getElementById('rtt').textContent, \
              trust: document.getElementById('tls-trust').textContent, wss: document.getElementById('wss').textContent, \
              role: document.getElementById('role').textContent, members: document.getElementById('members').textContent, \
              in: document.getElementById('in').textContent}",
            |v| {
                // The values the page showed so far: messages have gone through the leaf.
                let total_in = v["in"].as_str().and_then(|t| t.split('(').nth(1)).and_then(|t| t.split(' ').next());
                v["banner"].as_str().is_some_and(|b| b.starts_with("live"))
                    && total_in.and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n > 0)
                    && v["clients"].as_str().and_then(|c| c.parse::<u64>().ok()).is_some_and(|c| c >= 1)
                    && v["rtt"].as_str().is_some_and(|r| r.ends_with(" ms"))
            },
        )
        .await;
    assert_eq!(page["bridge"], "connected", "{page}");
    assert_eq!(page["trust"], "installed: nss", "the store kind, never its path: {page}");
    assert_eq!(page["wss"], leaf.url("wssUrl"));
    assert_eq!(page["role"], "leaf");
    assert!(page["members"].as_str().unwrap().contains("no election"), "{page}");
    browser.screenshot(&repo().join("results/leaf-status-page.png")).await;
    browser.close_tab().await;

    // 4b. Without the install step the same page fails: a second browser whose HOME's NSS
    //     database lacks the CA is refused by the same leaf, and stays on the backbone.
    let clean_home = tempfile::Builder::new().prefix("kinopio-browser-clean-").tempdir().unwrap();
    let clean = Browser::start(clean_home.path()).await;
    clean.goto(&format!("{app_origin}/")).await;
    clean.page_ready().await;
    assert_eq!(clean.run(&format!("start({backbone_ws:?})")).await["on"], "backbone");
    let refused = clean.run(&format!("discover({:?})", leaf.url("discoveryUrl"))).await;
    assert_eq!(refused["switched"], false, "a browser without the CA trusted the leaf: {refused}");
    assert_eq!(refused["on"], "backbone");
    let direct = clean.run(&format!("tryConnect({:?})", leaf.url("wssUrl"))).await;
    assert_eq!(direct["ok"], false, "a browser without the CA opened the leaf's WebSocket: {direct}");
    let log = clean.log().await;
    assert!(log.contains("ERR_CERT_AUTHORITY_INVALID"), "expected ERR_CERT_AUTHORITY_INVALID:\n{log}");
    clean.quit().await;

    // 5. A page from a stranger's origin: CORS refuses it the manifest, nats-server its
    //    WebSocket; it stays on the backbone.
    browser.new_tab(&app_tab).await;
    browser.goto(&format!("{stranger_origin}/")).await;
    browser.page_ready().await;
    browser.log().await;
    assert_eq!(browser.run(&format!("start({backbone_ws:?})")).await["on"], "backbone");
    let refused = browser.run(&format!("discover({:?})", leaf.url("discoveryUrl"))).await;
    assert_eq!(refused["switched"], false, "a stranger's page read the manifest: {refused}");
    assert_eq!(refused["stage"], "manifest", "{refused}");
    assert_eq!(refused["on"], "backbone");
    assert!(browser.log().await.contains("CORS"), "no CORS refusal in the browser's log");
    let direct = browser.run(&format!("tryConnect({:?})", leaf.url("wssUrl"))).await;
    assert_eq!(direct["ok"], false, "a stranger's page opened the leaf's WebSocket: {direct}");
    browser.close_tab().await;
    browser.switch_to(&app_tab).await;

    // 6. An untrusted CA and an expired certificate: refused, visibly, session kept.
    browser.log().await;
    for (leaf, net_error) in [(&untrusted, "ERR_CERT_AUTHORITY_INVALID"), (&expired, "ERR_CERT_DATE_INVALID")] {
        let result = browser.run(&format!("discover({:?})", leaf.url("discoveryUrl"))).await;
        assert_eq!(result["switched"], false, "{net_error}: {result}");
        assert_eq!(result["on"], "local leaf", "a refused candidate must not disturb the session: {result}");
        let direct = browser.run(&format!("tryConnect({:?})", leaf.url("wssUrl"))).await;
        assert_eq!(direct["ok"], false, "{net_error}: the browser opened {}", leaf.url("wssUrl"));
        let log = browser.log().await;
        assert!(log.contains(net_error), "expected {net_error} in the browser's log:\n{log}");
    }
    let visible = browser.eval("document.getElementById('log').textContent").await;
    assert!(visible.as_str().unwrap().contains("manifest refused"), "{visible}");

    // 7. The leaf stops: the page goes back to the backbone and keeps exchanging values.
    leaf.stop().await;
    browser.wait_for("the fallback to the backbone", "window.T.state().on", |on| on == "backbone").await;
    let after = json!({"from": "rust", "n": 3});
    deliver(&browser, || to_browser.publish(&after), "backbone", &after).await;

    browser.quit().await;
    hub.close().await;
    untrusted.stop().await;
    expired.stop().await;
    let took = started.elapsed();
    eprintln!("browser test took {took:?}");
    assert!(took < Duration::from_secs(60), "the browser test took {took:?}");
}

/// Publishes with `publish` until the page received `value` via `via` (interest crosses the
/// leafnode connection asynchronously, so the first publish may find no route yet).
async fn deliver<F, Fut, E>(browser: &Browser, publish: F, via: &str, value: &Json)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Debug,
{
    let deadline = Instant::now() + WAIT;
    loop {
        publish().await.unwrap();
        let state = browser.eval("window.T.state()").await;
        if received(&state, via, value) {
            return;
        }
        assert!(Instant::now() < deadline, "the page never received {value} via {via}: {state}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
