//! Protocol-4 shared variables against a real nats-server: kinopio with kinopio, and kinopio
//! with the real Python kinopio-hub 3.0.0 (`scripts/interop/p4_peer.py`), both ways.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt;
use kinopio::p4::{ErrorCode, Namespace, NamespaceOptions, SyncEnd};
use kinopio::{Hub, HubOptions};
use kinopio_test_support::{DelayProxy, NatsServer, ScriptPeer, WAIT, python_hub3, repo_root};
use serde_json::{Value, json};

/// A Python kinopio-hub 3.0.0 peer driven over JSON lines (`scripts/interop/p4_peer.py`).
struct Peer {
    script: ScriptPeer,
    writer: String,
}

impl Peer {
    async fn start(server: &NatsServer, namespace: &str) -> Peer {
        let script = repo_root().join("scripts/interop/p4_peer.py");
        let mut script = ScriptPeer::spawn(&python_hub3(), &script, [server.url().as_str(), namespace]);
        let ready = script.line().await;
        let writer = ready["writer"].as_str().unwrap().to_owned();
        Peer { script, writer }
    }

    async fn cmd(&mut self, cmd: Value) -> Value {
        self.script.send(&cmd.to_string()).await;
        let answer = self.script.line().await;
        assert_eq!(answer["ok"], true, "{cmd} → {answer}");
        answer
    }

    async fn close(mut self) {
        self.cmd(json!({"op": "close"})).await;
        self.script.finish().await;
    }
}

async fn hub(server: &NatsServer) -> Hub {
    Hub::connect(HubOptions::new().servers([server.url().as_str()]).unwrap()).await.unwrap()
}

async fn namespace(hub: &Hub, name: &str) -> Namespace {
    let ns = hub.namespace(name).unwrap();
    ns.wait_synced(WAIT).await.unwrap();
    ns
}

/// Waits until `var` holds `expected`.
async fn wait_value(ns: &Namespace, name: &str, expected: Value) {
    let var = ns.var::<Value>(name).unwrap();
    let mut watch = var.watch();
    tokio::time::timeout(WAIT, async {
        loop {
            if var.get().unwrap().as_ref() == Some(&expected) {
                return;
            }
            watch.next().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{name} became {expected}; it is {:?}", var.get()));
}

#[tokio::test]
async fn kinopio_instances_share_state_and_a_late_joiner_gets_everything() {
    let server = NatsServer::start();
    let (a, b) = (hub(&server).await, hub(&server).await);
    let na = namespace(&a, "workshop").await;
    assert!(na.is_synced());
    let battery = na.var::<u32>("battery").unwrap();
    battery.set(&80).unwrap();
    battery.confirmed(WAIT).await.unwrap();
    assert!(!battery.meta().pending);

    // A second instance joins late and syncs the value.
    let nb = namespace(&b, "workshop").await;
    assert_eq!(nb.var::<u32>("battery").unwrap().get().unwrap(), Some(80));
    // Live updates both ways, and deletes.
    let mut watch = nb.var::<u32>("battery").unwrap().watch();
    assert_eq!(watch.next().await.unwrap().unwrap().value, Some(80));
    battery.set(&81).unwrap();
    let update = tokio::time::timeout(WAIT, watch.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(update.value, Some(81));
    nb.var::<u32>("battery").unwrap().delete().unwrap();
    tokio::time::timeout(WAIT, async {
        while battery.meta().exists != Some(false) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the delete reaches the first instance");
    assert_eq!(battery.get().unwrap(), None);
    assert!(na.variables().is_empty(), "a deleted variable is not listed");
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn a_late_joiner_receives_every_record_of_a_large_namespace() {
    let server = NatsServer::start();
    let (a, b) = (hub(&server).await, hub(&server).await);
    let na = namespace(&a, "big").await;
    const N: usize = 10_000;
    for i in 0..N {
        na.var::<usize>(&format!("v{i}")).unwrap().set(&i).unwrap();
    }
    na.flush(WAIT).await.unwrap();
    let nb = b.namespace("big").unwrap();
    let report = nb.wait_synced(WAIT).await.unwrap();
    assert_eq!(report.end, SyncEnd::Quiet, "{report:?}");
    assert_eq!(nb.variables().len(), N, "{report:?}");
    assert_eq!(nb.var::<usize>("v9999").unwrap().get().unwrap(), Some(9999));
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn writes_made_offline_go_out_on_connect() {
    let mut server = NatsServer::start();
    let a = hub(&server).await;
    let na = namespace(&a, "offline").await;
    server.kill();
    tokio::time::timeout(WAIT, async {
        while a.is_connected() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let door = na.var::<String>("door").unwrap();
    door.set(&"open".to_owned()).unwrap();
    assert!(door.meta().pending);
    let err = na.flush(Duration::from_millis(200)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorCode::Timeout);
    server.restart();
    door.confirmed(WAIT).await.unwrap();
    let b = hub(&server).await;
    let nb = namespace(&b, "offline").await;
    assert_eq!(nb.var::<String>("door").unwrap().get().unwrap().as_deref(), Some("open"));
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn hostile_records_are_dropped_and_counted_and_change_nothing() {
    let server = NatsServer::start();
    let a = hub(&server).await;
    let na = namespace(&a, "workshop").await;
    na.var::<u32>("battery").unwrap().set(&5).unwrap();
    na.flush(WAIT).await.unwrap();
    let raw = async_nats::connect(server.url()).await.unwrap();
    let subject = format!("{}.{}", hex("workshop"), hex("battery"));
    let other = format!("{}.{}", hex("workshop"), hex("other"));
    let deep = "[".repeat(100_000);
    let bad: [(&str, &[u8]); 5] = [
        (&subject, b""),
        (&subject, b"{\"name\":\"battery\"}"),
        (&other, br#"{"name":"battery","version":{"counter":"99","writer":"x"},"deleted":false,"value":1}"#),
        (&subject, deep.as_bytes()),
        (&subject, br#"{"name":"battery","version":{"counter":"01","writer":"x"},"deleted":false,"value":1}"#),
    ];
    let before = na.rejected();
    for (subject, payload) in bad {
        raw.publish(subject.to_owned(), payload.to_vec().into()).await.unwrap();
    }
    // A valid record after the garbage still applies.
    raw.publish(
        subject.clone(),
        br#"{"name":"battery","version":{"counter":"50","writer":"x"},"deleted":false,"value":7}"#.to_vec().into(),
    )
    .await
    .unwrap();
    raw.flush().await.unwrap();
    wait_value(&na, "battery", json!(7)).await;
    assert_eq!(na.rejected() - before, 5);
    // The refused records did not become this instance's error (3.0.0's W8).
    na.report_health().await.unwrap();
    let own = na.instances().into_iter().find(|i| i.instance_id == na.instance_id()).expect("own row");
    assert_eq!(own.health, Some(kinopio::p4::Health::Ok), "{:?}", own.status);
    // A maximal counter (§11 W9) on one variable does not wedge writes of the others.
    let poison = format!(
        r#"{{"name":"battery","version":{{"counter":"{}","writer":"x"}},"deleted":false,"value":0}}"#,
        "9".repeat(40)
    );
    raw.publish(subject.clone(), poison.into_bytes().into()).await.unwrap();
    raw.flush().await.unwrap();
    wait_value(&na, "battery", json!(0)).await;
    let next = na.var::<u32>("door").unwrap().set(&1).unwrap();
    assert_eq!(next.counter.as_str(), "1", "the hub-wide clock is saturated; the variable's own counter + 1 is used");
    na.flush(WAIT).await.unwrap();
    assert_eq!(na.var::<u32>("door").unwrap().get().unwrap(), Some(1));
    a.close().await;
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn kinopio_and_python_share_variables_both_ways() {
    let server = NatsServer::start();
    let mut py = Peer::start(&server, "workshop").await;
    py.cmd(json!({"op": "set", "name": "battery", "value": {"level": 80, "volts": 12.5}})).await;
    let a = hub(&server).await;
    let na = namespace(&a, "workshop").await;
    // Late join from Python's store.
    assert_eq!(na.var::<Value>("battery").unwrap().get().unwrap(), Some(json!({"level": 80, "volts": 12.5})));
    // Python → kinopio live.
    py.cmd(json!({"op": "set", "name": "mode", "value": "auto"})).await;
    wait_value(&na, "mode", json!("auto")).await;
    // kinopio → Python, typed values in, the same JSON out.
    na.var::<Vec<f64>>("path").unwrap().set(&vec![1.0, -0.0, 2.5]).unwrap();
    na.flush(WAIT).await.unwrap();
    let got = py.cmd(json!({"op": "wait", "name": "path", "value": [1, 0, 2.5]})).await;
    assert_eq!(got["pending"], false);
    assert_eq!(got["version"]["writer"], na.writer());
    // Deletes both ways.
    na.var::<Value>("mode").unwrap().delete().unwrap();
    py.cmd(json!({"op": "wait", "name": "mode", "deleted": true})).await;
    py.cmd(json!({"op": "delete", "name": "battery"})).await;
    tokio::time::timeout(WAIT, async {
        while na.var::<Value>("battery").unwrap().meta().exists != Some(false) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    // Python's health stays ok.
    let health = py.cmd(json!({"op": "health"})).await;
    assert_eq!(health["health"], "ok", "{health}");
    py.close().await;
    a.close().await;
}

#[tokio::test]
async fn concurrent_writes_resolve_identically_on_both_sides() {
    let server = NatsServer::start();
    let mut py = Peer::start(&server, "race").await;
    // kinopio reaches the server through a proxy whose delay makes the two writes concurrent:
    // neither side sees the other's write before making its own.
    let proxy = DelayProxy::start(([127, 0, 0, 1], server.port()).into(), Duration::ZERO);
    let a = Hub::connect(HubOptions::new().servers([proxy.url().as_str()]).unwrap()).await.unwrap();
    let na = namespace(&a, "race").await;
    py.cmd(json!({"op": "set", "name": "x", "value": 1})).await;
    wait_value(&na, "x", json!(1)).await;
    proxy.set_delay(Duration::from_millis(500));
    let ours = na.var::<Value>("x").unwrap().set(&json!("rust")).unwrap();
    let theirs = py.cmd(json!({"op": "set", "name": "x", "value": "python"})).await;
    let _ = theirs;
    assert_eq!(ours.counter.as_str(), "2");
    // Both wrote counter 2: the higher writer id wins on both sides (§4.2).
    let winner = if na.writer() > py.writer.as_str() { json!("rust") } else { json!("python") };
    wait_value(&na, "x", winner.clone()).await;
    let seen = py.cmd(json!({"op": "wait", "name": "x", "value": winner})).await;
    assert_eq!(seen["version"]["counter"], "2");
    let ours_now = na.var::<Value>("x").unwrap().meta().version.unwrap();
    assert_eq!(seen["version"]["writer"], ours_now.writer.as_str(), "the same version on both sides");
    let health = py.cmd(json!({"op": "health"})).await;
    assert_eq!(health["health"], "ok", "{health}");
    py.close().await;
    a.close().await;
}

#[tokio::test]
async fn kinopio_late_joins_a_python_namespace_past_the_python_window() {
    let server = NatsServer::start();
    let mut py = Peer::start(&server, "many").await;
    const N: usize = 3000;
    py.cmd(json!({"op": "fill", "prefix": "v", "count": N})).await;
    let a = hub(&server).await;
    let na = a.namespace("many").unwrap();
    let report = na.wait_synced(WAIT).await.unwrap();
    assert_eq!(na.variables().len(), N, "{report:?}");
    // And Python late-joins kinopio's records.
    for i in 0..100 {
        na.var::<usize>(&format!("k{i}")).unwrap().set(&i).unwrap();
    }
    na.flush(WAIT).await.unwrap();
    let mut late = Peer::start(&server, "many").await;
    let counted = late.cmd(json!({"op": "wait", "name": "k99", "value": 99, "timeout": 10})).await;
    assert_eq!(counted["exists"], true);
    let counted = late.cmd(json!({"op": "count", "prefix": "k"})).await;
    assert_eq!(counted["count"], 100);
    late.close().await;
    py.close().await;
    a.close().await;
}

#[tokio::test]
async fn an_empty_namespace_syncs_at_once_and_options_apply() {
    let server = NatsServer::start();
    let a = hub(&server).await;
    let ns = a.namespace_with("empty", NamespaceOptions::new().sync_first_reply(Duration::from_secs(30))).unwrap();
    let report = ns.wait_synced(Duration::from_secs(5)).await.unwrap();
    assert_eq!(report.end, SyncEnd::NoPeers, "no one else listens: the server says so at once");
    assert!(a.namespace("bad\u{1}name").is_err());
    assert_eq!(a.namespace("").unwrap_err().kind(), ErrorCode::InvalidName);
    a.close().await;
}

#[tokio::test]
async fn a_namespace_opened_before_the_server_is_up_works_once_it_is() {
    let mut server = NatsServer::start();
    server.kill();
    let a = Hub::new(HubOptions::new().servers([server.url().as_str()]).unwrap());
    let ns = a.namespace("early").unwrap();
    let var = ns.var::<u32>("x").unwrap();
    var.set(&1).unwrap();
    assert!(!ns.is_synced());
    assert_eq!(ns.wait_synced(Duration::from_millis(300)).await.unwrap_err().kind(), ErrorCode::Timeout);
    server.restart();
    ns.wait_synced(WAIT).await.unwrap();
    var.confirmed(WAIT).await.unwrap();
    let b = hub(&server).await;
    let nb = namespace(&b, "early").await;
    assert_eq!(nb.var::<u32>("x").unwrap().get().unwrap(), Some(1));
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn stores_that_drifted_apart_converge_by_anti_entropy() {
    // Two servers that do not share traffic: B writes on its own, then moves to A's server.
    // Its write was confirmed on the other server, so no republish carries it; the
    // anti-entropy round (short here) does.
    let (s1, s2) = (NatsServer::start(), NatsServer::start());
    let options = || NamespaceOptions::new().repair_interval(Some(Duration::from_millis(200)));
    let a = hub(&s1).await;
    let b = hub(&s2).await;
    let na = a.namespace_with("drift", options()).unwrap();
    let nb = b.namespace_with("drift", options()).unwrap();
    na.wait_synced(WAIT).await.unwrap();
    nb.wait_synced(WAIT).await.unwrap();
    na.var::<u32>("from-a").unwrap().set(&1).unwrap();
    nb.var::<u32>("from-b").unwrap().set(&2).unwrap();
    na.flush(WAIT).await.unwrap();
    nb.flush(WAIT).await.unwrap();
    b.switch_to(&s1.url().parse().unwrap()).await.unwrap();
    // B's activation syncs A's record at once…
    wait_value(&nb, "from-a", json!(1)).await;
    // …and a repair round brings B's record to A.
    wait_value(&na, "from-b", json!(2)).await;
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn drain_delivers_pending_writes_or_says_it_could_not() {
    let mut server = NatsServer::start();
    let (a, b) = (hub(&server).await, hub(&server).await);
    let na = namespace(&a, "drain").await;
    let nb = namespace(&b, "drain").await;
    na.var::<u32>("last").unwrap().set(&7).unwrap();
    na.drain(WAIT).await.unwrap();
    assert!(!na.var::<u32>("last").unwrap().meta().pending);
    wait_value(&nb, "last", json!(7)).await;
    assert_eq!(na.publish("t", &1).await.unwrap_err().kind(), ErrorCode::Draining);
    // Disconnected: the write cannot be confirmed, and drain says so.
    server.kill();
    tokio::time::timeout(WAIT, async {
        while b.is_connected() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    nb.var::<u32>("late").unwrap().set(&1).unwrap();
    let err = nb.drain(Duration::from_millis(300)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorCode::DrainTimeout, "{err}");
    a.close().await;
    b.close().await;
}
