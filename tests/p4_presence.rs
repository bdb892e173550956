//! Presence (protocol 4, §7) against a real nats-server and the real Python kinopio-hub 3.0.0
//! (`scripts/interop/p4_presence.py`): each side lists the other, a Python hub's health stays
//! "ok" while kinopio reports, hostile reports change nothing but a counter, and an instance
//! that stops reporting goes offline after 3 intervals.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kinopio::p4::{Health, InstanceConnection, InstanceEvent, Namespace, NamespaceOptions, Online};
use kinopio::{Hub, HubOptions, SelectionMode};
use kinopio_test_support::{NatsServer, WAIT, python_hub3};
use serde_json::Value as Json;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const INTERVAL: Duration = Duration::from_millis(200);

struct Peer {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: tempfile::NamedTempFile,
}

impl Peer {
    fn spawn(server: &NatsServer, namespace: &str, duration_s: f64, expect_sdk: Option<&str>) -> Peer {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/interop/p4_presence.py");
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let mut command = Command::new(python_hub3());
        command
            .arg(script)
            .args(["--server", &server.url(), "--namespace", namespace, "--interval", "0.2"])
            .args(["--duration", &duration_s.to_string()]);
        if let Some(sdk) = expect_sdk {
            command.args(["--expect-sdk", sdk]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr.reopen().unwrap()))
            .kill_on_drop(true)
            .spawn()
            .expect("start the Python 3.0.0 peer");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Peer { child, lines, stderr }
    }

    async fn line(&mut self) -> Json {
        let line = tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("the Python peer said nothing in time:\n{}", self.stderr_text()))
            .unwrap()
            .unwrap_or_else(|| panic!("the Python peer exited early:\n{}", self.stderr_text()));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"))
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    async fn finish(mut self) {
        let status = tokio::time::timeout(WAIT, self.child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "Python peer failed: {status}\n{}", self.stderr_text());
    }
}

async fn namespace(server: &NatsServer, name: &str) -> (Hub, Namespace) {
    let hub = Hub::connect(HubOptions::new().servers([server.url()]).unwrap().selection(SelectionMode::Ordered))
        .await
        .unwrap();
    let ns = hub.namespace_with(name, NamespaceOptions::new().health_interval(INTERVAL)).unwrap();
    (hub, ns)
}

/// Waits for the first event that `pick` accepts.
async fn next_event<S>(events: &mut S, mut pick: impl FnMut(&InstanceEvent) -> bool) -> InstanceEvent
where
    S: futures::Stream<Item = InstanceEvent> + Unpin,
{
    tokio::time::timeout(WAIT, async {
        loop {
            let event = events.next().await.expect("the instance watch ended");
            if pick(&event) {
                return event;
            }
        }
    })
    .await
    .expect("no such instance event in time")
}

/// Waits until `ns`'s own row has a report newer than `after` and returns it.
async fn own_report_after(ns: &Namespace, after: std::time::SystemTime) -> kinopio::p4::Instance {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(own) = ns.instances().into_iter().find(|i| i.is_self && i.last_seen > after) {
                return own;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("no own report in time")
}

#[tokio::test]
async fn kinopio_and_python_list_each_other_and_python_health_stays_ok() {
    let server = NatsServer::start();
    let (hub, ns) = namespace(&server, "workshop").await;
    let mut events = ns.watch_instances();
    // Python runs for 3 s, i.e. 15 kinopio reports at 200 ms.
    let mut peer = Peer::spawn(&server, "workshop", 3.0, Some("rust"));
    let ready = peer.line().await;
    assert_eq!(ready["event"], "ready");
    let python_id = ready["instanceId"].as_str().unwrap().to_owned();

    // kinopio lists Python.
    let joined = next_event(&mut events, |e| matches!(e, InstanceEvent::Joined(i) if i.instance_id == python_id)).await;
    let python = joined.instance();
    assert_eq!(python.sdk.as_deref(), Some("python"));
    assert_eq!(python.version.as_deref(), Some("3.0.0"));
    assert_eq!(python.connection, Some(InstanceConnection::Connected));
    assert_eq!(python.online, Online::Online);
    assert_eq!(python.interval, INTERVAL);
    assert!(!python.is_self);

    // Python lists kinopio.
    let seen = peer.line().await;
    assert_eq!(seen["event"], "seen", "{seen}");
    let row = &seen["row"];
    assert_eq!(row["instanceId"], ns.instance_id());
    assert_eq!(row["sdk"], "rust");
    assert_eq!(row["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(row["namespace"], "workshop");
    assert_eq!(row["connection"], "connected");
    assert_eq!(row["health"], "ok");
    assert_eq!(row["online"], "online");
    assert_eq!(row["server"], server.url());
    assert!(row.get("name").is_none());

    // Python's own health stayed "ok" for the whole run, with many kinopio reports received.
    let done = peer.line().await;
    assert_eq!(done["event"], "done", "{done}");
    assert_eq!(done["healthAlwaysOk"], true, "Python's health did not stay ok: {done}");
    assert!(done["samples"].as_u64().unwrap() >= 20, "{done}");
    assert!(done["expectedReports"].as_u64().unwrap() >= 5, "too few kinopio reports reached Python: {done}");
    assert_eq!(done["lastError"], Json::Null, "{done}");
    peer.finish().await;

    // Python stopped reporting: offline after 3 of its intervals (not before).
    let last_report = ns.instances().into_iter().find(|i| i.instance_id == python_id).unwrap().last_seen;
    let offline =
        next_event(&mut events, |e| matches!(e, InstanceEvent::WentOffline(i) if i.instance_id == python_id)).await;
    let silent = offline.instance().last_seen.elapsed().unwrap_or_default();
    assert!(silent >= INTERVAL * 3, "offline after only {silent:?}");
    assert_eq!(offline.instance().last_seen, last_report);
    let listed = ns.instances();
    assert_eq!(listed[0].instance_id, ns.instance_id(), "this instance is listed first");
    assert_eq!(listed[0].sdk.as_deref(), Some("rust"));
    assert_eq!(listed[0].online, Online::Online);
    assert_eq!(listed.iter().find(|i| i.instance_id == python_id).unwrap().online, Online::Offline);
    assert_eq!(ns.rejected(), 0, "nothing Python sent was refused");
    hub.close().await;
}

/// A raw NATS client, for what no SDK would send.
async fn raw(server: &NatsServer) -> async_nats::Client {
    async_nats::connect(server.url()).await.unwrap()
}

fn health_subject(instance: &str) -> String {
    // _sys.v4.<hex("workshop")>.health.<id>
    format!("_sys.v4.776f726b73686f70.health.{instance}")
}

fn valid_report(instance: &str, interval_ms: u64) -> String {
    format!(
        r#"{{"status":{{"instanceId":"{instance}","namespace":"workshop","sdk":"probe","health":"ok"}},"interval":{interval_ms}}}"#
    )
}

#[tokio::test]
async fn hostile_reports_are_counted_and_change_nothing_else() {
    let server = NatsServer::start();
    let (hub, ns) = namespace(&server, "workshop").await;
    let start = std::time::SystemTime::now();
    let before = own_report_after(&ns, std::time::SystemTime::UNIX_EPOCH).await;
    assert_eq!(before.health, Some(Health::Ok));
    let client = raw(&server).await;
    let hostile: Vec<(String, String)> = vec![
        (health_subject("garbage"), "not json at all".to_owned()),
        (health_subject("empty"), String::new()),
        (
            health_subject("named"),
            r#"{"status":{"instanceId":"named","namespace":"workshop","name":"robot"},"interval":200}"#.to_owned(),
        ),
        (health_subject("claimed"), valid_report("someone-else", 200)),
        (health_subject("zero"), valid_report("zero", 0)),
        (
            health_subject("other-ns"),
            r#"{"status":{"instanceId":"other-ns","namespace":"elsewhere"},"interval":200}"#.to_owned(),
        ),
        (
            health_subject("big"),
            format!(
                r#"{{"status":{{"instanceId":"big","namespace":"workshop","pad":"{}"}},"interval":200}}"#,
                "x".repeat(3000)
            ),
        ),
        (health_subject("deep"), format!("{}{}", "[".repeat(100_000), "]".repeat(100_000))),
    ];
    for (subject, payload) in &hostile {
        client.publish(subject.clone(), payload.clone().into()).await.unwrap();
    }
    // A report forging this instance's id: ignored (not listed, not counted).
    client.publish(health_subject(ns.instance_id()), valid_report(ns.instance_id(), 200).into()).await.unwrap();
    // A valid report last: once it is listed, everything before it was handled.
    client.publish(health_subject("probe"), valid_report("probe", 60_000).into()).await.unwrap();
    client.flush().await.unwrap();
    tokio::time::timeout(WAIT, async {
        while !ns.instances().iter().any(|i| i.instance_id == "probe") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the valid probe report was not listed");

    assert_eq!(ns.rejected(), hostile.len() as u64, "every hostile report is counted");
    let ids: Vec<String> = ns.instances().into_iter().map(|i| i.instance_id).collect();
    assert_eq!(ids, [ns.instance_id().to_owned(), "probe".to_owned()], "the list only gained the valid report");
    let own = ns.instances().remove(0);
    assert_eq!(own.sdk.as_deref(), Some("rust"), "the forged own report did not replace this instance's row");
    // This instance's next report still says "ok", with no error.
    let after = own_report_after(&ns, std::time::SystemTime::now()).await;
    assert!(after.last_seen > start);
    assert_eq!(after.health, Some(Health::Ok));
    let kinopio::p4::Json::Object(status) = &after.status else { panic!("{:?}", after.status) };
    assert_eq!(status.get("currentError"), Some(&kinopio::p4::Json::Null));
    assert_eq!(status.get("lastError"), Some(&kinopio::p4::Json::Null));
    hub.close().await;
}

#[tokio::test]
async fn an_instance_that_stops_reporting_goes_offline_after_three_intervals() {
    let server = NatsServer::start();
    let (hub, ns) = namespace(&server, "workshop").await;
    let mut events = ns.watch_instances();
    let client = raw(&server).await;
    client.publish(health_subject("brief"), valid_report("brief", 100).into()).await.unwrap();
    client.flush().await.unwrap();
    next_event(&mut events, |e| matches!(e, InstanceEvent::Joined(i) if i.instance_id == "brief")).await;
    let joined_at = Instant::now();
    let offline =
        next_event(&mut events, |e| matches!(e, InstanceEvent::WentOffline(i) if i.instance_id == "brief")).await;
    let waited = joined_at.elapsed();
    assert!(waited >= Duration::from_millis(250), "offline too early: {waited:?}");
    assert!(waited < Duration::from_secs(5), "offline too late: {waited:?}");
    assert_eq!(offline.instance().online, Online::Offline);

    // Disconnected: every row is unknown.
    let mut server = server;
    server.kill();
    tokio::time::timeout(WAIT, async {
        while ns.instances().iter().any(|i| i.online != Online::Unknown) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("rows did not become unknown while disconnected");
    hub.close().await;
}
