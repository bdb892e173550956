//! Live channels (§6) against a real nats-server: kinopio ↔ the real Python kinopio-hub
//! 3.0.0 (`scripts/interop/p4_live.py`, run with `.venv-hub3`) in both directions,
//! kinopio ↔ kinopio, fast failure without receivers, a new session after a server restart,
//! hostile input on the live subjects, and the W16 eviction defence.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kinopio::p4::{Delivery, ErrorCode, Json, LiveChannel, LiveOptions, LiveReceiver, LiveSendOptions, Namespace};
use kinopio::{Hub, HubOptions};
use kinopio_test_support::{NatsServer, WAIT, python_hub3};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const NS: &str = "workshop";
const CHANNEL: &str = "robot/cmd";

/// `_sys.v4.<hex(workshop)>.live.<hex(robot/cmd)>`
const BASE: &str = "_sys.v4.776f726b73686f70.live.726f626f742f636d64";

struct Peer {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: tempfile::NamedTempFile,
}

impl Peer {
    fn spawn(server: &NatsServer, args: &[&str]) -> Peer {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/interop/p4_live.py");
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let mut child = Command::new(python_hub3())
            .arg(script)
            .args(args)
            .args(["--server", &server.url(), "--namespace", NS, "--channel", CHANNEL])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr.reopen().unwrap()))
            .kill_on_drop(true)
            .spawn()
            .expect("start the Python 3.0.0 peer");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Peer { child, lines, stderr }
    }

    async fn line(&mut self) -> Value {
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

    async fn success(mut self) {
        let status = tokio::time::timeout(WAIT, self.child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "Python peer failed: {status}\n{}", self.stderr_text());
    }
}

async fn hub(server: &NatsServer) -> Hub {
    let options = HubOptions::new().servers([server.url()]).unwrap().retry(
        Duration::from_millis(50),
        1.5,
        Duration::from_millis(200),
    );
    let hub = Hub::new(options);
    hub.wait_connected(WAIT).await.unwrap();
    hub
}

async fn channel(hub: &Hub) -> (Namespace, LiveChannel) {
    let ns = hub.namespace(NS).unwrap();
    let ch = ns.live(CHANNEL).unwrap();
    (ns, ch)
}

async fn next(receiver: &mut LiveReceiver) -> kinopio::p4::LiveValue {
    tokio::time::timeout(WAIT, receiver.next()).await.expect("a live value in time").expect("the receiver ended")
}

/// Waits (bounded) until `check` holds, re-checking every few milliseconds.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn num(n: f64) -> Json {
    Json::Number(n)
}

#[tokio::test]
async fn rust_sender_to_python_receiver() {
    let server = NatsServer::start();
    let mut peer = Peer::spawn(&server, &["recv", "--count", "4"]);
    assert_eq!(peer.line().await, json!({"event": "ready"}));
    let hub = hub(&server).await;
    let (_ns, ch) = channel(&hub).await;
    assert_eq!(ch.send(&json!({"step": 1})).await.unwrap(), Delivery::Flushed);
    assert_eq!(ch.send(&json!({"step": 2})).await.unwrap(), Delivery::Flushed);
    // A pause longer than the 300 ms lease: the sender fetches a new one.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(ch.send(&"third").await.unwrap(), Delivery::Flushed);
    // A Python receiver accepts the data of a confirmed send (the reply subject is ignored)
    // but never confirms: kinopio says so instead of claiming acceptance.
    let unconfirmed = ch
        .send_with(&[1, 2, 3], LiveSendOptions::new().confirm(true).timeout(Duration::from_millis(800)))
        .await
        .unwrap_err();
    assert_eq!(unconfirmed.kind(), ErrorCode::Timeout);
    assert!(unconfirmed.to_string().contains("flushed"), "{unconfirmed}");
    for expected in [json!({"step": 1}), json!({"step": 2}), json!("third"), json!([1, 2, 3])] {
        assert_eq!(peer.line().await, json!({"value": expected, "valid": true}));
    }
    peer.success().await;
    assert_eq!(ch.stats().sent, 3);
    hub.close().await;
}

#[tokio::test]
async fn python_sender_to_rust_receiver() {
    let server = NatsServer::start();
    let hub = hub(&server).await;
    let (ns, ch) = channel(&hub).await;
    let mut receiver = ch.subscribe(LiveOptions::new()).await.unwrap();
    let values = r#"[{"step":1},{"step":2},"x",{"b":1,"a":[1.5,null]}]"#;
    let mut peer = Peer::spawn(&server, &["send", "--values", values, "--pause-ms", "120"]);
    let mut got = Vec::new();
    for _ in 0..4 {
        let v = next(&mut receiver).await;
        assert_eq!(v.context().session(), receiver.session());
        assert!(v.context().expires_at() > Instant::now() - Duration::from_secs(1));
        got.push((v.get::<Value>().unwrap(), v.context().seq()));
    }
    let values: Vec<Value> = got.iter().map(|(v, _)| v.clone()).collect();
    assert_eq!(values, vec![json!({"step": 1}), json!({"step": 2}), json!("x"), json!({"a": [1.5, null], "b": 1})]);
    // seq grows by one per value under a lease and restarts at 1 under a new one.
    assert_eq!(got[0].1, 1);
    for pair in got.windows(2) {
        assert!(pair[1].1 == pair[0].1 + 1 || pair[1].1 == 1, "{got:?}");
    }
    for _ in 0..4 {
        assert!(peer.line().await.get("sent").is_some());
    }
    peer.success().await;
    let stats = ch.stats();
    assert_eq!(stats.accepted, 4);
    assert!(stats.granted >= 1);
    assert_eq!((stats.malformed, stats.refused), (0, 0));
    assert_eq!(ns.rejected(), 0);
    hub.close().await;
}

#[tokio::test]
async fn rust_to_rust_with_confirmation_and_busy() {
    let server = NatsServer::start();
    let receiving = hub(&server).await;
    let sending = hub(&server).await;
    let (rns, rch) = channel(&receiving).await;
    let mut receiver = rch.subscribe(LiveOptions::new().max_age(Duration::from_secs(5))).await.unwrap();
    let (_sns, ch) = channel(&sending).await;
    assert_eq!(ch.send(&1).await.unwrap(), Delivery::Flushed);
    let confirmed = LiveSendOptions::new().confirm(true);
    assert_eq!(ch.send_with(&2, confirmed.clone()).await.unwrap(), Delivery::Accepted);
    let first = next(&mut receiver).await;
    let second = next(&mut receiver).await;
    assert_eq!((first.value(), first.context().seq()), (&num(1.0), 1));
    assert_eq!((second.value(), second.context().seq()), (&num(2.0), 2));
    assert_eq!(first.context().lease(), second.context().lease(), "the cached lease is reused");
    assert!(second.context().is_valid());
    // One send at a time per channel: the second of two concurrent sends is BUSY.
    let (a, b) = tokio::join!(ch.send(&3), ch.send(&4));
    assert_eq!(a.unwrap(), Delivery::Flushed);
    assert_eq!(b.unwrap_err().kind(), ErrorCode::Busy);
    assert_eq!(next(&mut receiver).await.value(), &num(3.0));
    // One receiver per channel, 32 per namespace.
    assert_eq!(rch.subscribe(LiveOptions::new()).await.unwrap_err().kind(), ErrorCode::AlreadySubscribed);
    let bad = LiveOptions::new().max_age(Duration::from_secs(61));
    let other = rns.live("other").unwrap();
    assert_eq!(other.subscribe(bad).await.unwrap_err().kind(), ErrorCode::InvalidOptions);
    let mut held = Vec::new();
    for i in 0..31 {
        held.push(rns.live(&format!("c{i}")).unwrap().subscribe(LiveOptions::new()).await.unwrap());
    }
    assert_eq!(other.subscribe(LiveOptions::new()).await.unwrap_err().kind(), ErrorCode::LimitExceeded);
    held.pop();
    other.subscribe(LiveOptions::new()).await.unwrap();
    // The value rules apply before anything is sent.
    assert_eq!(ch.send(&(1u64 << 53)).await.unwrap_err().kind(), ErrorCode::InvalidValue);
    assert_eq!(ch.send(&f64::NAN).await.unwrap_err().kind(), ErrorCode::InvalidValue);
    // Dropping the receiver frees the channel for a new one.
    drop(receiver);
    let _again = rch.subscribe(LiveOptions::new()).await.unwrap();
    receiving.close().await;
    sending.close().await;
}

#[tokio::test]
async fn no_receivers_fails_fast() {
    let server = NatsServer::start();
    let hub = hub(&server).await;
    let (ns, ch) = channel(&hub).await;
    let started = Instant::now();
    let err = ch.send(&"anyone?").await.unwrap_err();
    assert_eq!(err.kind(), ErrorCode::NoReceivers, "{err}");
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    assert_eq!(ch.stats().sent, 0);
    // 128 channels per namespace; the same name is the same channel.
    let mut held: Vec<LiveChannel> = (1..128).map(|i| ns.live(&format!("c{i}")).unwrap()).collect();
    assert_eq!(ns.live("one-too-many").unwrap_err().kind(), ErrorCode::LimitExceeded);
    assert!(ns.live(CHANNEL).is_ok());
    held.pop();
    assert!(ns.live("one-too-many").is_ok());
    assert_eq!(ns.live("").unwrap_err().kind(), ErrorCode::InvalidName);
    hub.close().await;
}

#[tokio::test]
async fn a_restart_starts_a_new_session_and_old_leases_are_dropped() {
    let mut server = NatsServer::start();
    let receiving = hub(&server).await;
    let sending = hub(&server).await;
    let (_rns, rch) = channel(&receiving).await;
    let mut receiver = rch.subscribe(LiveOptions::new().max_age(Duration::from_secs(30))).await.unwrap();
    let (_sns, ch) = channel(&sending).await;
    ch.send(&"before").await.unwrap();
    let before = next(&mut receiver).await;
    let old_session = before.context().session().to_owned();
    assert!(before.context().is_valid());

    server.restart();
    until("a new receiver session", || receiver.session() != old_session).await;
    assert!(!before.context().is_valid(), "a value of the old session no longer holds");
    sending.wait_connected(WAIT).await.unwrap();
    receiving.wait_connected(WAIT).await.unwrap();

    // Data under the old session's lease (here replayed by hand) is dropped and counted.
    let raw = async_nats::connect(server.url()).await.unwrap();
    let stale =
        json!({"protocol": 1, "session": old_session, "lease": before.context().lease(), "seq": 99, "value": "stale"});
    raw.publish(format!("{BASE}.data"), stale.to_string().into()).await.unwrap();
    raw.flush().await.unwrap();
    until("the stale value to be refused", || rch.stats().refused == 1).await;

    // The sender's cached lease belongs to the old connection: it asks again, and it works.
    // (The receiver's subscriptions reach the new server on its own reconnect; retry until
    // they have, within the bounded wait.)
    let deadline = Instant::now() + WAIT;
    let sent = loop {
        match ch.send(&"after").await {
            Err(e)
                if matches!(e.kind(), ErrorCode::NoReceivers | ErrorCode::Disconnected)
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => break other,
        }
    };
    assert_eq!(sent.unwrap(), Delivery::Flushed);
    let after = next(&mut receiver).await;
    assert_eq!(after.value(), &Json::String("after".into()));
    assert_eq!(after.context().session(), receiver.session());
    assert_ne!(after.context().session(), old_session);
    assert_eq!(after.context().seq(), 1);
    receiving.close().await;
    sending.close().await;
}

#[tokio::test]
async fn hostile_input_on_live_subjects_is_dropped_and_counted() {
    let server = NatsServer::start();
    let hub = hub(&server).await;
    let (ns, ch) = channel(&hub).await;
    let mut receiver = ch.subscribe(LiveOptions::new().max_age(Duration::from_secs(30))).await.unwrap();
    let raw = async_nats::connect(server.url()).await.unwrap();
    let session = receiver.session();
    let data = format!("{BASE}.data");
    let garbage: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"not json".to_vec(),
        br#"{"protocol":2,"session":"s","lease":"l","seq":1,"value":1}"#.to_vec(),
        json!({"protocol": 1, "session": session, "lease": "l", "seq": 0, "value": 1}).to_string().into_bytes(),
        json!({"protocol": 1, "session": session, "lease": "l", "seq": 1, "value": 1e300}).to_string().into_bytes(),
        json!({"protocol": 1, "session": session, "lease": "l", "seq": 1}).to_string().into_bytes(),
        vec![b'['; 60_000],
        vec![b'['; 100_000],
        vec![b' '; 70 * 1024],
    ];
    let n = garbage.len() as u64;
    for payload in garbage {
        raw.publish(data.clone(), payload.into()).await.unwrap();
    }
    // Well-formed but refused: another session, an unknown lease.
    let foreign = json!({"protocol": 1, "session": "someone-else", "lease": "l", "seq": 1, "value": 1});
    raw.publish(data.clone(), foreign.to_string().into()).await.unwrap();
    let unknown = json!({"protocol": 1, "session": session, "lease": "never-granted", "seq": 1, "value": 1});
    // kinopio answers a data message of its session whose lease it does not hold (only into
    // a live inbox of the channel): a confirming kinopio sender learns its lease is gone.
    let inbox = format!("{BASE}.inbox.probe");
    let mut answers = raw.subscribe(inbox.clone()).await.unwrap();
    raw.publish_with_reply(data.clone(), inbox.clone(), unknown.to_string().into()).await.unwrap();
    let nack = tokio::time::timeout(WAIT, answers.next()).await.unwrap().unwrap();
    let nack: Value = serde_json::from_slice(&nack.payload).unwrap();
    assert_eq!(nack, json!({"protocol": 1, "session": session, "lease": "never-granted", "seq": 1, "accepted": false}));
    // Lease requests without a live inbox, or not protocol 1, get no grant.
    let lease = format!("{BASE}.lease");
    raw.publish(lease.clone(), b"{\"protocol\":1}".to_vec().into()).await.unwrap();
    raw.publish_with_reply(lease.clone(), "_INBOX.elsewhere", b"{\"protocol\":1}".to_vec().into()).await.unwrap();
    raw.publish_with_reply(lease.clone(), inbox.clone(), b"{\"protocol\":7}".to_vec().into()).await.unwrap();
    raw.flush().await.unwrap();
    until("every hostile message to be counted", || {
        let s = ch.stats();
        s.malformed == n + 3 && s.refused == 2
    })
    .await;
    assert_eq!(ns.rejected(), n + 3);
    assert_eq!(ch.stats().granted, 0);
    // Nothing was accepted, and the channel still works.
    let sender_hub = self::hub(&server).await;
    let (_sns, sender) = channel(&sender_hub).await;
    assert_eq!(sender.send_with(&"ok", LiveSendOptions::new().confirm(true)).await.unwrap(), Delivery::Accepted);
    assert_eq!(next(&mut receiver).await.value(), &Json::String("ok".into()));
    assert_eq!(ch.stats().accepted, 1);
    sender_hub.close().await;
    hub.close().await;
}

/// W16: 32 lease requests from anyone used to evict a working sender's lease (its next send
/// still "succeeded" while the receiver dropped the value). kinopio's receiver evicts leases
/// that never carried data first; this test fails with 3.0.0's oldest-first eviction (the
/// confirmed send then ends in EXPIRED).
#[tokio::test]
async fn w16_a_lease_flood_does_not_evict_a_working_lease() {
    let server = NatsServer::start();
    let receiving = hub(&server).await;
    let sending = hub(&server).await;
    let (_rns, rch) = channel(&receiving).await;
    let mut receiver = rch.subscribe(LiveOptions::new().max_age(Duration::from_secs(30))).await.unwrap();
    let (_sns, ch) = channel(&sending).await;
    let confirmed = LiveSendOptions::new().confirm(true);
    assert_eq!(ch.send_with(&1, confirmed.clone()).await.unwrap(), Delivery::Accepted);
    let lease = next(&mut receiver).await.context().lease().to_owned();

    let raw = async_nats::connect(server.url()).await.unwrap();
    let inbox = format!("{BASE}.inbox.flood");
    let mut grants = raw.subscribe(inbox.clone()).await.unwrap();
    for _ in 0..40 {
        raw.publish_with_reply(format!("{BASE}.lease"), inbox.clone(), b"{\"protocol\":1}".to_vec().into())
            .await
            .unwrap();
    }
    for _ in 0..40 {
        tokio::time::timeout(WAIT, grants.next()).await.unwrap().unwrap();
    }
    assert_eq!(rch.stats().evicted, 9);
    assert_eq!(ch.send_with(&2, confirmed).await.unwrap(), Delivery::Accepted);
    let second = next(&mut receiver).await;
    assert_eq!((second.context().lease(), second.context().seq()), (lease.as_str(), 2));
    receiving.close().await;
    sending.close().await;
}

/// A stand-in receiver on a raw NATS connection: answers every lease request with
/// `ttl_ms` after `delay`, and collects data messages without ever acknowledging them.
async fn fake_receiver(server: &NatsServer, ttl_ms: u64, delay: Duration) -> async_nats::Subscriber {
    let raw = async_nats::connect(server.url()).await.unwrap();
    let mut leases = raw.subscribe(format!("{BASE}.lease")).await.unwrap();
    let data = raw.subscribe(format!("{BASE}.data")).await.unwrap();
    raw.flush().await.unwrap();
    tokio::spawn(async move {
        while let Some(request) = leases.next().await {
            tokio::time::sleep(delay).await;
            let grant = json!({"protocol": 1, "session": "fake", "lease": "l1", "ttl_ms": ttl_ms});
            if let Some(reply) = request.reply {
                let _ = raw.publish(reply, grant.to_string().into()).await;
            }
        }
    });
    data
}

#[tokio::test]
async fn a_lease_that_runs_out_before_the_data_goes_out_is_expired() {
    let server = NatsServer::start();
    let mut data = fake_receiver(&server, 1, Duration::from_millis(20)).await;
    let hub = hub(&server).await;
    let (_ns, ch) = channel(&hub).await;
    let err = ch.send(&"late").await.unwrap_err();
    assert_eq!(err.kind(), ErrorCode::Expired, "{err}");
    assert_eq!(ch.stats().sent, 0);
    // Nothing was sent under the expired lease.
    assert!(tokio::time::timeout(Duration::from_millis(200), data.next()).await.is_err());
    hub.close().await;
}

#[tokio::test]
async fn losing_the_connection_while_waiting_for_a_confirmation_is_disconnected() {
    let mut server = NatsServer::start();
    let mut data = fake_receiver(&server, 60_000, Duration::ZERO).await;
    let hub = hub(&server).await;
    let (_ns, ch) = channel(&hub).await;
    // The stand-in receiver never confirms; a plain send to it is "flushed".
    assert_eq!(ch.send(&1).await.unwrap(), Delivery::Flushed);
    let first: Value =
        serde_json::from_slice(&tokio::time::timeout(WAIT, data.next()).await.unwrap().unwrap().payload).unwrap();
    assert_eq!(first, json!({"protocol": 1, "session": "fake", "lease": "l1", "seq": 1, "value": 1}));
    let sending = {
        let ch = ch.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = ch.send_with(&2, LiveSendOptions::new().confirm(true).timeout(Duration::from_secs(30))).await;
            (result, started.elapsed())
        })
    };
    // The data went out under the cached lease (seq 2) with a reply subject for the
    // confirmation; then the server goes away.
    let second = tokio::time::timeout(WAIT, data.next()).await.unwrap().unwrap();
    assert!(second.reply.as_ref().is_some_and(|r| r.starts_with(&format!("{BASE}.inbox."))), "{second:?}");
    assert_eq!(serde_json::from_slice::<Value>(&second.payload).unwrap()["seq"], 2);
    server.kill();
    let (result, elapsed) = tokio::time::timeout(WAIT, sending).await.unwrap().unwrap();
    assert_eq!(result.unwrap_err().kind(), ErrorCode::Disconnected);
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    hub.close().await;
}
