//! What another client on the same server can do to a kinopio hub, against real nats-server
//! processes: a subscriber to `>` (a monitoring tool, `nats sub '>'`, an anonymous peer on a
//! leaf) must not stall any barrier, probe or switch, and a malformed message must be dropped
//! and counted without touching the connection or any other message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use kinopio::{Hub, HubEvent, HubOptions, SelectionMode, ServerUrl};
use kinopio_test_support::NatsServer;

/// Every step below is answered in milliseconds; the old barrier (a request to an unserved
/// subject) waited the whole request timeout, 30 s, whenever anybody subscribed to `>`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The bound for a whole scenario: far below one request timeout, far above the real cost.
const LIMIT: Duration = Duration::from_secs(8);

/// A plain async-nats client subscribed to `>` on `server`, with the interest in place.
async fn wildcard_watcher(server: &NatsServer) -> (async_nats::Client, async_nats::Subscriber) {
    let client = async_nats::connect(server.url()).await.unwrap();
    let sub = client.subscribe(">").await.unwrap();
    client.round_trip().await.unwrap();
    (client, sub)
}

/// Options for one server, with the long request timeout the old barrier would have waited.
fn ordered(server: &NatsServer) -> HubOptions {
    HubOptions::new()
        .servers([server.url()])
        .unwrap()
        .selection(SelectionMode::Ordered)
        .request_timeout(REQUEST_TIMEOUT)
}

async fn bounded<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.unwrap_or_else(|_| panic!("{what} did not finish within {LIMIT:?}"))
}

/// Subscribe, publish, receive, unsubscribe and close on `server` finish in bounded time
/// while a `>` subscriber on `watched` (the same server, or the backbone of a leaf) sees it.
async fn stays_fast_while_watched(server: &NatsServer, watched: &NatsServer) {
    let (_watcher, mut seen) = wildcard_watcher(watched).await;
    let hub = bounded("connect", Hub::connect(ordered(server))).await.unwrap();
    let var = hub.variable("hostile.subscribe").unwrap();
    bounded("subscribe, publish, receive, unsubscribe and close", async {
        let mut sub = var.subscribe().await.unwrap();
        var.publish(&1).await.unwrap();
        let msg = sub.next().await.unwrap();
        assert_eq!(msg.payload.as_ref(), b"1");
        sub.unsubscribe().await;
        hub.close().await;
    })
    .await;
    // The watcher really was subscribed: it saw the publish.
    let msg = bounded("the watcher's copy", seen.next()).await.unwrap();
    assert_eq!(msg.subject.as_str(), "hostile.subscribe");
}

#[tokio::test]
async fn a_wildcard_subscriber_does_not_stall_subscribe_publish_unsubscribe_or_close() {
    let server = NatsServer::start();
    stays_fast_while_watched(&server, &server).await;
}

/// The same with the `>` subscriber on the backbone and the hub on a leaf node of it (its
/// interest crosses the leafnode connection, as an anonymous WSS peer's would).
#[tokio::test]
async fn a_wildcard_subscriber_behind_a_leaf_connection_does_not_stall_either() {
    let backbone = NatsServer::start_with_config("leafnodes { listen: \"127.0.0.1:-1\" }\n");
    let leaf = NatsServer::start_with_config(&format!(
        "leafnodes {{ remotes = [ {{ url: \"{}\" }} ] }}\n",
        backbone.leafnode_url()
    ));
    // Wait until the leaf is connected: a subscription on the backbone reaches the leaf.
    let probe = async_nats::connect(backbone.url()).await.unwrap();
    let mut ready = probe.subscribe("hostile.ready").await.unwrap();
    probe.round_trip().await.unwrap();
    let on_leaf = async_nats::connect(leaf.url()).await.unwrap();
    bounded("the leaf connection", async {
        loop {
            on_leaf.publish("hostile.ready", "x".into()).await.unwrap();
            on_leaf.round_trip().await.unwrap();
            if tokio::time::timeout(Duration::from_millis(100), ready.next()).await.is_ok() {
                break;
            }
        }
    })
    .await;
    stays_fast_while_watched(&leaf, &backbone).await;
}

#[tokio::test]
async fn a_wildcard_subscriber_does_not_break_latency_probes_or_hot_switches() {
    let a = NatsServer::start();
    let b = NatsServer::start();
    let (_wa, _sa) = wildcard_watcher(&a).await;
    let (_wb, _sb) = wildcard_watcher(&b).await;
    let options = HubOptions::new()
        .servers([a.url(), b.url()])
        .unwrap()
        .request_timeout(REQUEST_TIMEOUT)
        .probe_timeout(Duration::from_secs(2));
    let hub = bounded("connect", Hub::connect(options)).await.unwrap();
    let probes = hub.probe_results();
    assert_eq!(probes.len(), 2);
    for probe in &probes {
        assert!(probe.rtt.is_some(), "probe of {} failed: {:?}", probe.server, probe.error);
    }

    let var = hub.variable("hostile.switch").unwrap();
    let mut sub = bounded("subscribe", var.subscribe()).await.unwrap();
    let current = hub.server().unwrap();
    let other: ServerUrl =
        if current.to_string().contains(&a.port().to_string()) { b.url() } else { a.url() }.parse().unwrap();
    let switched = bounded("switch", hub.switch_to(&other)).await.unwrap();
    assert_eq!(switched, other);
    var.publish(&"after").await.unwrap();
    let msg = bounded("a message after the switch", sub.next()).await.unwrap();
    assert_eq!(msg.payload.as_ref(), br#""after""#);
    hub.close().await;
}

/// Publishes `frames` (raw protocol text) from a bare TCP connection, then confirms with
/// PING/PONG that the server has processed them.
fn publish_raw(server: &NatsServer, frames: &[u8]) {
    let mut tcp = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    tcp.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1}\r\n").unwrap();
    tcp.write_all(frames).unwrap();
    tcp.write_all(b"PING\r\n").unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("PONG") {
        let n = std::io::Read::read(&mut tcp, &mut buf).expect("no PONG from the server");
        assert!(n > 0, "the server closed the raw publisher: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(!String::from_utf8_lossy(&seen).contains("-ERR"), "{}", String::from_utf8_lossy(&seen));
}

#[tokio::test]
async fn a_malformed_message_is_dropped_and_counted_without_a_reconnect() {
    let server = NatsServer::start();
    let hub = bounded("connect", Hub::connect(ordered(&server))).await.unwrap();
    let mut events = hub.events();
    let var = hub.variable("hostile.malformed").unwrap();
    let mut sub = bounded("subscribe", var.subscribe()).await.unwrap();
    let other = hub.variable("hostile.other").unwrap();
    let mut other_sub = bounded("subscribe", other.subscribe()).await.unwrap();

    // Header blocks nats-server relays but that are not `NATS/1.0 …`: a wrong version line,
    // a header length that runs into the body, a status that is not a number, then a
    // well-formed message on each subject.
    let bad_version = "XXXX/1.0\r\n\r\n";
    let overlapping = "NATS/1.0\r\n\r\nhel";
    let bad_status = "NATS/1.0 abc\r\n\r\n";
    let mut frames = String::new();
    for (header, body) in [(bad_version, "lost"), (overlapping, "lo"), (bad_status, "lost")] {
        let total = header.len() + body.len();
        frames.push_str(&format!("HPUB hostile.malformed {} {total}\r\n{header}{body}\r\n", header.len()));
    }
    frames.push_str("PUB hostile.malformed 2\r\nok\r\nPUB hostile.other 5\r\nother\r\n");
    publish_raw(&server, frames.as_bytes());

    let msg = bounded("the good message", sub.next()).await.unwrap();
    assert_eq!(msg.payload.as_ref(), b"ok", "a malformed message was delivered");
    let msg = bounded("the other subject's message", other_sub.next()).await.unwrap();
    assert_eq!(msg.payload.as_ref(), b"other");
    assert_eq!(hub.malformed_messages(), 3);
    // The connection never dropped.
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(50), events.next()).await {
        assert!(
            !matches!(event, HubEvent::Disconnected { .. } | HubEvent::Connected { .. }),
            "the connection dropped: {event:?}"
        );
    }
    assert!(hub.is_connected());
    hub.close().await;
}

/// Draining a subscription (what a hot switch does to the old one) delivers every message the
/// server sent it: the subscription ends only once the server has processed the UNSUB. With a
/// 20 ms link and a steady stream, async-nats 0.51 removed it earlier and dropped the tail (a
/// queue-group request lost that way is never answered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_subscription_loses_nothing_the_server_sent() {
    let server = NatsServer::start();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", server.port()).parse().unwrap();
    let proxy = kinopio_test_support::DelayProxy::start(addr, Duration::from_millis(20));
    let publisher = async_nats::connect(server.url()).await.unwrap();
    for round in 0..3 {
        let client = async_nats::connect(proxy.url()).await.unwrap();
        let mut sub = client.queue_subscribe("drain.q", "workers".into()).await.unwrap();
        client.round_trip().await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let pumping = {
            let (publisher, stop) = (publisher.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    publisher.publish("drain.q", "x".into()).await.unwrap();
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            })
        };
        let mut delivered = 0u64;
        let until = tokio::time::Instant::now() + Duration::from_millis(200);
        while tokio::time::Instant::now() < until {
            if tokio::time::timeout(Duration::from_millis(10), sub.next()).await.is_ok() {
                delivered += 1;
            }
        }
        sub.drain().await.unwrap();
        bounded("the drained subscription to end", async {
            while sub.next().await.is_some() {
                delivered += 1;
            }
        })
        .await;
        stop.store(true, Ordering::Relaxed);
        pumping.await.unwrap();
        let received = client.statistics().in_messages.load(Ordering::Relaxed);
        assert_eq!(delivered, received, "round {round}: the server sent {received}, the stream delivered {delivered}");
        assert!(delivered > 100, "the stream flowed: {delivered}");
    }
}
