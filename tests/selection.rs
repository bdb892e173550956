//! Server selection and hot switching against real servers: one nats-server seen through TCP
//! delay proxies with different round-trip times, and a two-server cluster.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kinopio::{Hub, HubEvent, HubOptions, Message, RequestErrorKind, SelectionMode, ServerUrl, SwitchReason, Value};
use kinopio_test_support::{DelayProxy, NatsServer};

use kinopio_test_support::WAIT;

fn addr(server: &NatsServer) -> SocketAddr {
    format!("127.0.0.1:{}", server.port()).parse().unwrap()
}

/// A proxy adding `rtt_ms` of round-trip time in front of `server`.
fn proxy(server: &NatsServer, rtt_ms: u64) -> DelayProxy {
    DelayProxy::start(addr(server), Duration::from_millis(rtt_ms / 2))
}

fn url(s: &str) -> ServerUrl {
    s.parse().unwrap()
}

async fn wait_for_switch(
    events: &mut (impl futures::Stream<Item = HubEvent> + Unpin),
    limit: Duration,
) -> Option<HubEvent> {
    tokio::time::timeout(limit, async {
        while let Some(e) = events.next().await {
            if matches!(e, HubEvent::ServerSwitched { .. }) {
                return e;
            }
        }
        futures::future::pending().await
    })
    .await
    .ok()
}

#[tokio::test]
async fn latency_mode_connects_to_the_fastest_server() {
    let server = NatsServer::start();
    let slow = proxy(&server, 60);
    let fast = proxy(&server, 4);
    let dead = kinopio_test_support::free_port();
    let hub = Hub::connect(
        HubOptions::new()
            .servers([format!("nats://127.0.0.1:{dead}"), slow.url(), fast.url()])
            .unwrap()
            .probe_timeout(Duration::from_secs(1)),
    )
    .await
    .unwrap();
    assert_eq!(hub.server(), Some(url(&fast.url())));
    let probes = hub.probe_results();
    assert_eq!(probes.len(), 3);
    assert!(probes[0].rtt.is_none() && probes[0].error.is_some(), "dead server marked unreachable");
    let (slow_rtt, fast_rtt) = (probes[1].rtt.unwrap(), probes[2].rtt.unwrap());
    assert!(slow_rtt >= Duration::from_millis(55), "{slow_rtt:?}");
    assert!(fast_rtt < slow_rtt, "{fast_rtt:?} vs {slow_rtt:?}");
    hub.close().await;
}

#[tokio::test]
async fn ordered_and_random_modes() {
    let server = NatsServer::start();
    let a = proxy(&server, 40);
    let b = proxy(&server, 0);
    let ordered =
        Hub::connect(HubOptions::new().servers([a.url(), b.url()]).unwrap().selection(SelectionMode::Ordered))
            .await
            .unwrap();
    assert_eq!(ordered.server(), Some(url(&a.url())), "ordered keeps the given order even when slower");
    ordered.close().await;

    let mut firsts = BTreeMap::new();
    for _ in 0..24 {
        let hub = Hub::connect(HubOptions::new().servers([a.url(), b.url()]).unwrap().selection(SelectionMode::Random))
            .await
            .unwrap();
        *firsts.entry(hub.server().unwrap().to_string()).or_insert(0) += 1;
        hub.close().await;
    }
    assert_eq!(firsts.len(), 2, "random mode reshuffles at each connect: {firsts:?}");
}

#[tokio::test]
async fn background_reprobe_switches_only_past_the_threshold() {
    let server = NatsServer::start();
    let a = proxy(&server, 4);
    let b = proxy(&server, 70);
    let hub = Hub::connect(
        HubOptions::new()
            .servers([a.url(), b.url()])
            .unwrap()
            .reprobe_interval(Some(Duration::from_millis(200)))
            .probe_timeout(Duration::from_secs(1)),
    )
    .await
    .unwrap();
    assert_eq!(hub.server(), Some(url(&a.url())));
    let mut events = hub.events();

    // a: 44 ms, b: 30 ms — 14 ms better, inside the 30 ms threshold: no switch.
    a.set_delay(Duration::from_millis(22));
    b.set_delay(Duration::from_millis(15));
    assert!(wait_for_switch(&mut events, Duration::from_secs(3)).await.is_none(), "switched inside the threshold");
    assert_eq!(hub.server(), Some(url(&a.url())));

    // a: 100 ms, b: 4 ms: switch to b.
    a.set_delay(Duration::from_millis(50));
    b.set_delay(Duration::from_millis(2));
    let event = wait_for_switch(&mut events, WAIT).await.expect("no switch to the faster server");
    let HubEvent::ServerSwitched { from, to, rtt_before, rtt_after, reason } = event else { unreachable!() };
    assert_eq!((from, to.clone(), reason), (Some(url(&a.url())), url(&b.url()), SwitchReason::Faster));
    assert!(rtt_before.unwrap() > rtt_after.unwrap() + Duration::from_millis(30));
    assert_eq!(hub.server(), Some(to));
    hub.close().await;
}

/// Everything a test stream needs to count deliveries.
struct Counter {
    seen: BTreeMap<u64, u32>,
}

impl Counter {
    fn lost_and_duplicates(&self, published: u64) -> (u64, u64) {
        let lost = (0..published).filter(|i| !self.seen.contains_key(i)).count() as u64;
        let dups = self.seen.values().map(|&n| u64::from(n.saturating_sub(1))).sum();
        (lost, dups)
    }
}

/// Publishes sequence numbers at ~1000 msg/s from its own hub until stopped.
fn steady_publisher(
    hub: Hub,
    subject: &str,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    let var = hub.variable(subject).unwrap();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let n = count.load(Ordering::Relaxed);
            var.publish(&n).await.unwrap();
            count.store(n + 1, Ordering::Relaxed);
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hot_switches_lose_and_duplicate_nothing() {
    let server = NatsServer::start();
    let a = proxy(&server, 2);
    let b = proxy(&server, 20);
    let publisher = Hub::connect(HubOptions::new().servers([server.url()]).unwrap()).await.unwrap();
    let hub = Hub::connect(
        HubOptions::new().servers([a.url(), b.url()]).unwrap().selection(SelectionMode::Ordered).reprobe_interval(None),
    )
    .await
    .unwrap();
    let mut sub = hub.variable("stream.seq").unwrap().subscribe().await.unwrap();
    let watch = hub.variable("stream.seq").unwrap().watch().await.unwrap();
    // A service on the switching hub, and one it calls on the publisher's side.
    hub.variable("stream.echo").unwrap().serve(|m: Message| async move { Ok::<_, String>(m.value()) }).await.unwrap();
    publisher
        .variable("stream.add")
        .unwrap()
        .serve(|m: Message| async move { Ok::<_, String>(m.decode::<i64>().map_err(|e| e.to_string())? + 1) })
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let pub_task = steady_publisher(publisher.clone(), "stream.seq", Arc::clone(&stop), Arc::clone(&published));

    // Requests in both directions all through the switches.
    let requests = {
        let (hub, publisher, stop) = (hub.clone(), publisher.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let (add, echo) = (hub.variable("stream.add").unwrap(), publisher.variable("stream.echo").unwrap());
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(add.request::<i64, _>(&n).await.unwrap(), n + 1, "request from the switching hub");
                assert_eq!(echo.request::<i64, _>(&n).await.unwrap(), n, "request to the switching hub");
                n += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            n
        })
    };

    let mut counter = Counter { seen: BTreeMap::new() };
    let mut switches = 0;
    let targets = [b.url(), a.url(), b.url(), a.url(), b.url()];
    let mut next_switch = Instant::now() + Duration::from_millis(300);
    let mut events = hub.events();
    let mut switch_events = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if switches < targets.len() && Instant::now() >= next_switch {
            let target = url(&targets[switches]);
            let hub = hub.clone();
            tokio::spawn(async move { hub.switch_to(&target).await.unwrap() });
            switches += 1;
            next_switch = Instant::now() + Duration::from_millis(400);
        }
        if switches == targets.len() && Instant::now() >= next_switch && !stop.load(Ordering::Relaxed) {
            stop.store(true, Ordering::Relaxed);
        }
        tokio::select! {
            m = sub.next() => {
                let n: u64 = m.unwrap().decode().unwrap();
                *counter.seen.entry(n).or_insert(0) += 1;
            }
            Some(e) = events.next() => {
                if matches!(e, HubEvent::ServerSwitched { reason: SwitchReason::Manual, .. }) { switch_events += 1; }
            }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        let total = published.load(Ordering::Relaxed);
        if stop.load(Ordering::Relaxed) && pub_task.is_finished() && counter.seen.len() as u64 >= total {
            break;
        }
        assert!(Instant::now() < deadline, "timed out: {} of {total} seen", counter.seen.len());
    }
    let answered = requests.await.unwrap();
    let total = published.load(Ordering::Relaxed);
    let (lost, dups) = counter.lost_and_duplicates(total);
    let dup_list: Vec<u64> = counter.seen.iter().filter(|(_, n)| **n > 1).map(|(k, _)| *k).collect();
    assert_eq!((lost, dups), (0, 0), "{total} published across 5 switches; duplicated: {dup_list:?}");
    assert_eq!(switch_events, 5);
    assert!(total > 1500, "the stream kept flowing: {total}");
    assert!(answered > 20, "requests kept being answered: {answered}");
    assert_eq!(hub.server(), Some(url(&b.url())));
    // Value tracking followed the switches.
    assert_eq!(watch.current(), Some(Value::from(total - 1)));
    hub.close().await;
    publisher.close().await;
}

#[tokio::test]
async fn reconnect_keeps_values_and_never_resurrects_a_stopped_service() {
    let server = NatsServer::start();
    let a = proxy(&server, 0);
    let b = proxy(&server, 0);
    let hub = Hub::connect(HubOptions::new().servers([a.url(), b.url()]).unwrap().selection(SelectionMode::Random))
        .await
        .unwrap();
    let other = Hub::connect(HubOptions::new().servers([server.url()]).unwrap()).await.unwrap();
    let svc = hub.variable("r.svc").unwrap().serve(|_m: Message| async { Ok::<_, String>(1) }).await.unwrap();
    let live = hub.variable("r.live").unwrap().serve(|_m: Message| async { Ok::<_, String>(2) }).await.unwrap();
    let mut watch = hub.variable("r.value").unwrap().watch().await.unwrap();
    svc.stop().await;

    for _ in 0..3 {
        hub.reconnect().await.unwrap();
        let err = other.variable("r.svc").unwrap().request::<i64, _>(&()).await.unwrap_err();
        assert_eq!(err.kind(), RequestErrorKind::NoResponders, "stopped service came back");
        assert_eq!(other.variable("r.live").unwrap().request::<i64, _>(&()).await.unwrap(), 2);
    }
    other.variable("r.value").unwrap().publish(&"after").await.unwrap();
    assert_eq!(tokio::time::timeout(WAIT, watch.changed()).await.unwrap(), Some(Value::from("after")));
    assert!(live.is_active());
    hub.close().await;
    other.close().await;
}

#[tokio::test]
async fn reconnect_to_unreachable_servers_keeps_the_current_connection() {
    let server = NatsServer::start();
    let hub = Hub::connect(HubOptions::new().servers([server.url()]).unwrap()).await.unwrap();
    let dead: ServerUrl = format!("nats://127.0.0.1:{}", kinopio_test_support::free_port()).parse().unwrap();
    let err = hub.switch_to(&dead).await.unwrap_err();
    assert_eq!(err.kind(), kinopio::SwitchErrorKind::Unreachable);
    assert_eq!(hub.server(), Some(url(&server.url())));
    assert!(hub.is_connected());
    hub.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_between_cluster_nodes_loses_and_duplicates_nothing() {
    let route_a = kinopio_test_support::free_port();
    let route_b = kinopio_test_support::free_port();
    let conf = |own: u16, other: u16| {
        format!(
            "cluster {{ name: kinopio-test, listen: \"127.0.0.1:{own}\", routes: [\"nats-route://127.0.0.1:{other}\"] }}"
        )
    };
    let n1 = NatsServer::start_with_config(&conf(route_a, route_b));
    let n2 = NatsServer::start_with_config(&conf(route_b, route_a));
    let publisher = Hub::connect(HubOptions::new().servers([n1.url()]).unwrap()).await.unwrap();
    // Wait until the route is up: a service on n2 answers a request through n1.
    let probe = Hub::connect(HubOptions::new().servers([n2.url()]).unwrap()).await.unwrap();
    probe.variable("c.ping").unwrap().serve(|_m: Message| async { Ok::<_, String>("pong") }).await.unwrap();
    tokio::time::timeout(WAIT, async {
        while publisher.variable("c.ping").unwrap().request::<String, _>(&()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("cluster route did not come up");

    let hub = Hub::connect(
        HubOptions::new()
            .servers([n1.url(), n2.url()])
            .unwrap()
            .selection(SelectionMode::Ordered)
            .reprobe_interval(None),
    )
    .await
    .unwrap();
    let mut sub = hub.variable("c.seq").unwrap().subscribe().await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let pub_task = steady_publisher(publisher.clone(), "c.seq", Arc::clone(&stop), Arc::clone(&published));
    let mut counter = Counter { seen: BTreeMap::new() };
    let switcher = {
        let (hub, n1, n2, stop) = (hub.clone(), url(&n1.url()), url(&n2.url()), Arc::clone(&stop));
        tokio::spawn(async move {
            for target in [&n2, &n1, &n2] {
                tokio::time::sleep(Duration::from_millis(400)).await;
                hub.switch_to(target).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        tokio::select! {
            m = sub.next() => { *counter.seen.entry(m.unwrap().decode::<u64>().unwrap()).or_insert(0) += 1; }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        if pub_task.is_finished() && counter.seen.len() as u64 >= published.load(Ordering::Relaxed) {
            break;
        }
        assert!(Instant::now() < deadline, "timed out");
    }
    switcher.await.unwrap();
    let total = published.load(Ordering::Relaxed);
    assert_eq!(counter.lost_and_duplicates(total), (0, 0), "{total} published across cluster switches");
    assert_eq!(hub.server(), Some(url(&n2.url())));
    hub.close().await;
    publisher.close().await;
    probe.close().await;
}
