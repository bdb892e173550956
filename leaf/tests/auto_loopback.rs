//! Auto-leaf nodes in one process on loopback: real multicast sockets (joined and sent on
//! 127.0.0.1 only), real nats-server leaves, real HTTPS discovery and real mDNS (restricted to
//! `lo`). Every test uses its own namespace; trust stores and the real cache are never
//! touched.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use kinopio::wire::beacon::{Beacon, BeaconErrorKind, MULTICAST_GROUP, Role, State};
use kinopio::wire::manifest::{BridgeState, LeaderAdvert, LeaderManifest};
use kinopio_leaf::auto::{AutoLeaf, AutoLeafOptions, AutoLeafStatus, InterfaceFilter};
use kinopio_leaf::election::{BeaconCodec, NamespaceSecret};
use kinopio_leaf::runtime::{LeafOptions, LeafTimings, RestartPolicy};
use kinopio_leaf::tls::TrustStoreConfig;
use kinopio_test_support::nats_server_binary;
use socket2::{Domain, Protocol, Socket, Type};

use kinopio_test_support::WAIT;

fn init_logs() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("kinopio_leaf=debug").try_init();
}

fn namespace(tag: &str) -> String {
    format!("auto-test-{tag}-{}-{:08x}", std::process::id(), rand::random::<u32>())
}

fn leaf_options(cache: &Path) -> LeafOptions {
    LeafOptions::new()
        .binary_path(nats_server_binary())
        .cache_dir(cache)
        .lan_bind_address("127.0.0.1".parse().unwrap())
        .trust_store(TrustStoreConfig::none().with_env_skip(|_| Some("1".to_owned())))
        .timings(LeafTimings {
            poll_interval: Duration::from_millis(200),
            stop_grace: Duration::from_secs(5),
            ..LeafTimings::default()
        })
}

fn options(ns: &str, cache: &Path) -> AutoLeafOptions {
    AutoLeafOptions::new(ns)
        .leaf(leaf_options(cache))
        .interfaces(InterfaceFilter::loopback())
        .leader_missing_grace(Duration::from_secs(2))
}

/// Waits (on the node's events) until `predicate` holds for its status.
async fn wait_for(node: &AutoLeaf, what: &str, predicate: impl Fn(&AutoLeafStatus) -> bool) -> AutoLeafStatus {
    let mut events = node.events();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = node.status();
        if predicate(&status) {
            return status;
        }
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(_)) | Err(_) => panic!("timed out waiting for {what}; last status: {:#?}", node.status()),
        }
    }
}

fn is_leader(status: &AutoLeafStatus) -> bool {
    status.election.role == Role::Leader && status.leaf.is_some()
}

fn follows(status: &AutoLeafStatus, leader: &str) -> bool {
    status.election.state == State::FollowingLeader
        && status.election.leader.as_ref().is_some_and(|l| l.node_id == leader)
}

fn https_client(ca: &Path) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    reqwest::Client::builder().no_proxy().tls_certs_only([ca]).timeout(Duration::from_secs(5)).build().unwrap()
}

/// A UDP socket that multicasts on loopback only, like a stranger on the same host.
fn loopback_sender() -> Socket {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    socket.set_multicast_if_v4(&Ipv4Addr::LOCALHOST).unwrap();
    socket.set_multicast_ttl_v4(1).unwrap();
    socket.set_multicast_loop_v4(true).unwrap();
    socket
}

fn send(socket: &Socket, port: u16, datagram: &[u8]) {
    let target = SocketAddr::V4(SocketAddrV4::new(MULTICAST_GROUP, port));
    socket.send_to(datagram, &target.into()).unwrap();
}

/// A receiver joined on loopback that sees what the nodes multicast.
fn loopback_listener(port: u16) -> std::net::UdpSocket {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.set_reuse_port(true).unwrap();
    socket.bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)).into()).unwrap();
    socket.join_multicast_v4(&MULTICAST_GROUP, &Ipv4Addr::LOCALHOST).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    socket.into()
}

fn forged_leader(ns: &str, epoch: u64) -> Beacon {
    let advert = LeaderAdvert::from_urls(
        "127.0.0.1",
        [
            "wss://127.0.0.1:1",
            "nats://127.0.0.1:2",
            "http://127.0.0.1:3",
            "https://127.0.0.1:4/.well-known/kinopio-leader.json",
        ],
        BridgeState::Connected,
        Vec::new(),
    )
    .unwrap();
    Beacon::leader("kinopio-00000000-1", ns, epoch, Some(0.001), &advert)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_elect_one_leader_that_serves_its_manifest_and_hands_over_on_stop() {
    init_logs();
    let cache = tempfile::tempdir().unwrap();
    let ns = namespace("pair");
    // Same cache root: the two processes-to-be get ids from two different slots.
    let a = AutoLeaf::start(options(&ns, cache.path())).await.unwrap();
    let b = AutoLeaf::start(options(&ns, cache.path())).await.unwrap();
    assert_ne!(a.node_id(), b.node_id());
    let (leader, follower) = if a.node_id() < b.node_id() { (&a, &b) } else { (&b, &a) };
    let led = wait_for(leader, "the smaller id to lead", is_leader).await;
    wait_for(follower, "the other to follow", |s| follows(s, leader.node_id())).await;
    assert_eq!(led.election.leader.as_ref().unwrap().epoch, 1);
    assert!(!is_leader(&follower.status()));

    // The leader manifest over HTTPS: the auto shape with the election's fields.
    let leaf = led.leaf.clone().unwrap();
    let client = https_client(&leaf.ca_cert_file);
    let body = client.get(&leaf.urls.discovery_url).send().await.unwrap();
    assert_eq!(body.status(), 200);
    let manifest = LeaderManifest::parse(&body.bytes().await.unwrap(), time::OffsetDateTime::now_utc()).unwrap();
    assert_eq!(manifest.node_id, leader.node_id());
    assert_eq!(manifest.leader_epoch, 1);
    assert_eq!(manifest.discovery_namespace.as_deref(), Some(ns.as_str()));
    assert_eq!(manifest.state.as_deref(), Some("leader"));
    assert!(manifest.is_leader && manifest.generated_at.is_none());
    assert_eq!(manifest.wss_url.as_str(), leaf.urls.wss_url);
    let lease = manifest.expires_at - time::OffsetDateTime::now_utc();
    assert!(lease <= time::Duration::seconds(2), "{lease}");
    let health_url = leaf.urls.discovery_url.replace("/.well-known/kinopio-leader.json", "/healthz");
    let health: serde_json::Value = client.get(&health_url).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["ok"], true, "{health}");

    // The mDNS record on loopback, with the reference TXT keys.
    let browser = mdns_sd::ServiceDaemon::new().unwrap();
    browser.disable_interface(mdns_sd::IfKind::All).unwrap();
    browser.enable_interface(mdns_sd::IfKind::Name("lo".into())).unwrap();
    let found = browser.browse(kinopio::wire::mdns::SERVICE_TYPE).unwrap();
    let fullname = tokio::time::timeout(WAIT, async {
        loop {
            if let mdns_sd::ServiceEvent::ServiceResolved(info) = found.recv_async().await.unwrap()
                && info.get_property_val_str("namespace") == Some(ns.as_str())
            {
                assert_eq!(info.get_property_val_str("nodeId"), Some(leader.node_id()));
                assert_eq!(info.get_property_val_str("leaderEpoch"), Some("1"));
                assert_eq!(info.get_property_val_str("candidateRole"), Some("leader"));
                assert_eq!(info.get_property_val_str("wssUrl"), Some(leaf.urls.wss_url.as_str()));
                break info.fullname.clone();
            }
        }
    })
    .await
    .expect("the leader's mDNS record");
    assert!(leader.status().mdns_published);

    // Graceful stop: the leader resigns and the follower takes over at once (no grace).
    let stopped_at = Instant::now();
    let last = leader.stop().await;
    assert_eq!(last.election.state, State::Stopped);
    assert!(last.leaf.is_none() && !last.mdns_published);
    let took_over = wait_for(follower, "the follower to take over", is_leader).await;
    let handover = stopped_at.elapsed();
    assert_eq!(took_over.election.leader.as_ref().unwrap().epoch, 2);
    assert!(handover < Duration::from_secs(3), "handover took {handover:?}");
    // The old leader's mDNS record is withdrawn.
    tokio::time::timeout(WAIT, async {
        loop {
            if let mdns_sd::ServiceEvent::ServiceRemoved(_, name) = found.recv_async().await.unwrap()
                && name == fullname
            {
                break;
            }
        }
    })
    .await
    .expect("the old record's withdrawal");
    let _ = browser.shutdown();
    follower.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ids_are_unique_per_running_process_and_stable_across_restarts() {
    init_logs();
    let cache = tempfile::tempdir().unwrap();
    let ns = namespace("ids");
    let first = AutoLeaf::start(options(&ns, cache.path()).mdns(false)).await.unwrap();
    let second = AutoLeaf::start(options(&ns, cache.path()).mdns(false)).await.unwrap();
    let (id1, id2) = (first.node_id().to_owned(), second.node_id().to_owned());
    assert_ne!(id1, id2);
    assert!(id1.starts_with("kinopio-") && id2.starts_with("kinopio-"));
    first.stop().await;
    second.stop().await;
    let again = AutoLeaf::start(options(&ns, cache.path()).mdns(false)).await.unwrap();
    assert_eq!(again.node_id(), id1, "slot 0 keeps its id");
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_are_dropped_and_counted_without_stalling_heartbeats() {
    init_logs();
    let cache = tempfile::tempdir().unwrap();
    let ns = namespace("garbage");
    let node = AutoLeaf::start(options(&ns, cache.path()).mdns(false)).await.unwrap();
    let port = node.port();
    let listener = loopback_listener(port);
    let sender = loopback_sender();
    let node_id = node.node_id().to_owned();
    let ns_for_flood = ns.clone();

    // Flood for 3 s while watching the node's own heartbeats arrive.
    let flood = std::thread::spawn(move || {
        let huge = vec![b'x'; 60_000];
        let wrong_type = format!(
            r#"{{"nodeId": "p", "discoveryNamespace": "{ns_for_flood}", "isLeader": true, "leaderEpoch": "abc"}}"#
        );
        let null_epoch = format!(
            r#"{{"nodeId": "p", "discoveryNamespace": "{ns_for_flood}", "isLeader": true, "leaderEpoch": null}}"#
        );
        let huge_epoch = format!(
            r#"{{"nodeId": "p", "discoveryNamespace": "{ns_for_flood}", "isLeader": true, "leaderEpoch": 1e400}}"#
        );
        let big_int = format!(
            r#"{{"nodeId": "p", "discoveryNamespace": "{ns_for_flood}", "isLeader": true, "leaderEpoch": 99999999999999999999999}}"#
        );
        let samples: Vec<&[u8]> = vec![
            b"\xff\xfe\x00garbage",
            b"not json at all",
            b"[1, 2, 3]",
            b"{}",
            &huge,
            wrong_type.as_bytes(),
            null_epoch.as_bytes(),
            huge_epoch.as_bytes(),
            big_int.as_bytes(),
        ];
        let until = Instant::now() + Duration::from_secs(3);
        let mut sent = 0u64;
        while Instant::now() < until {
            for sample in &samples {
                send(&sender, port, sample);
                sent += 1;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        sent
    });
    let mut buf = vec![0u8; 70_000];
    let mut last_heartbeat = Instant::now();
    let mut worst_gap = Duration::ZERO;
    let mut heartbeats = 0;
    let watch_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch_until {
        if let Ok((len, _)) = listener.recv_from(&mut buf)
            && let Ok(beacon) = Beacon::from_json_bytes(&buf[..len])
            && beacon.node_id == node_id
        {
            worst_gap = worst_gap.max(last_heartbeat.elapsed());
            last_heartbeat = Instant::now();
            heartbeats += 1;
        }
    }
    let sent = flood.join().unwrap();
    assert!(sent > 1000, "the flood was too small: {sent}");
    assert!(heartbeats >= 5, "only {heartbeats} heartbeats in 3 s");
    assert!(worst_gap < Duration::from_millis(800), "a heartbeat gap of {worst_gap:?} during the flood");
    // Still elects itself; every kind of garbage was counted.
    let status = wait_for(&node, "the node to lead despite the flood", is_leader).await;
    for kind in [
        BeaconErrorKind::NotUtf8,
        BeaconErrorKind::NotJson,
        BeaconErrorKind::NotObject,
        BeaconErrorKind::MissingField,
        BeaconErrorKind::TooLarge,
        BeaconErrorKind::WrongType,
        BeaconErrorKind::InvalidInteger,
    ] {
        assert!(status.drops.get(kind) > 0, "no {kind:?} drops counted: {:?}", status.drops);
    }
    assert_eq!(status.peers, 0, "garbage never became a peer");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_broker_dies_for_good_resigns_and_a_follower_takes_over() {
    init_logs();
    let cache = tempfile::tempdir().unwrap();
    let ns = namespace("dead-broker");
    let fragile = |id: &str| {
        let leaf =
            leaf_options(cache.path()).restart_policy(RestartPolicy { max_attempts: 0, ..RestartPolicy::default() });
        options(&ns, cache.path()).leaf(leaf).node_id(id).mdns(false)
    };
    let a = AutoLeaf::start(fragile("kinopio-aaaaaaaa-1")).await.unwrap();
    let b = AutoLeaf::start(fragile("kinopio-bbbbbbbb-2")).await.unwrap();
    wait_for(&a, "a to lead", is_leader).await;
    wait_for(&b, "b to follow a", |s| follows(s, "kinopio-aaaaaaaa-1")).await;
    let pid = a.leaf_status().unwrap().process_id.unwrap();
    let killed_at = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()), nix::sys::signal::Signal::SIGKILL)
        .unwrap();
    let took_over = wait_for(&b, "b to take over from the dead broker", is_leader).await;
    let failover = killed_at.elapsed();
    assert!(failover < Duration::from_secs(4), "took {failover:?}: no grace period expected after a resign");
    assert_eq!(took_over.election.leader.as_ref().unwrap().epoch, 2);
    let a_status = wait_for(&a, "a to follow b", |s| follows(s, "kinopio-bbbbbbbb-2")).await;
    assert!(a_status.last_leaf_error.is_some());
    assert!(a.leaf_status().is_none());
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_high_epoch_beacon_takes_over_an_open_namespace_but_not_a_secured_one() {
    init_logs();
    let cache = tempfile::tempdir().unwrap();
    let secret = NamespaceSecret::new("correct horse battery staple").unwrap();
    let open_ns = namespace("open");
    let secured_ns = namespace("secured");
    let open = AutoLeaf::start(options(&open_ns, cache.path()).mdns(false)).await.unwrap();
    let secured =
        AutoLeaf::start(options(&secured_ns, cache.path()).mdns(false).namespace_secret(secret)).await.unwrap();
    wait_for(&open, "the open node to lead", is_leader).await;
    wait_for(&secured, "the secured node to lead", is_leader).await;

    let sender = loopback_sender();
    let mut stranger_open = BeaconCodec::open(&open_ns, "kinopio-00000000-1");
    let mut stranger_secured = BeaconCodec::open(&secured_ns, "kinopio-00000000-1");
    let wrong_secret = NamespaceSecret::new("guess").unwrap();
    let mut stranger_guess = BeaconCodec::secured(&secured_ns, "kinopio-00000000-1", &wrong_secret);
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let now = SystemTime::now();
        send(&sender, open.port(), &stranger_open.encode(&forged_leader(&open_ns, 1_000_000), now).unwrap());
        let forged = forged_leader(&secured_ns, 1_000_000);
        send(&sender, secured.port(), &stranger_secured.encode(&forged, now).unwrap());
        send(&sender, secured.port(), &stranger_guess.encode(&forged, now).unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Open (documented, as in 0.1.1): the stranger's beacon wins; the real leader steps down.
    let open_status = open.status();
    assert!(follows(&open_status, "kinopio-00000000-1"), "{open_status:#?}");
    assert!(open.leaf_status().is_none());
    // Secured: nothing changed; the stranger's datagrams were dropped as unsigned / forged.
    let secured_status = secured.status();
    assert!(is_leader(&secured_status), "{secured_status:#?}");
    assert_eq!(secured_status.election.leader.as_ref().unwrap().epoch, 1);
    assert!(secured_status.drops.get(BeaconErrorKind::Unsigned) >= 10, "{:?}", secured_status.drops);
    assert!(secured_status.drops.get(BeaconErrorKind::Forged) >= 10, "{:?}", secured_status.drops);
    open.stop().await;
    secured.stop().await;
}

fn fake_candidate(ns: &str, i: u32) -> Beacon {
    // Ids that rank better than any real node's, in the candidate shape.
    Beacon::candidate(
        &format!("kinopio-0000000{}-{i}", i % 10),
        ns,
        0,
        "127.0.0.1",
        Some(0.001),
        Role::Candidate,
        State::Electing,
    )
}

/// Attack: a stranger floods an open namespace with fake candidates (a new node id per
/// datagram). A source may introduce only a few new ids per window: the rest are dropped
/// and counted (`rate_limited`), the peer table stays small, the real leader keeps leading
/// and its follower keeps following.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_candidate_flood_is_rate_limited_and_changes_nothing() {
    init_logs();
    let cache = tempfile::tempdir().unwrap();
    let ns = namespace("flood");
    let a = AutoLeaf::start(options(&ns, cache.path()).mdns(false)).await.unwrap();
    wait_for(&a, "a to lead", is_leader).await;
    let b = AutoLeaf::start(options(&ns, cache.path()).mdns(false)).await.unwrap();
    let leader = a.status().node_id;
    wait_for(&b, "b to follow a", |s| follows(s, &leader)).await;

    let sender = loopback_sender();
    let mut stranger = BeaconCodec::open(&ns, "kinopio-ffffffff-1");
    let cpu_before = process_cpu();
    let started = Instant::now();
    for i in 0..3000u32 {
        let datagram = stranger.encode(&fake_candidate(&ns, i), SystemTime::now()).unwrap();
        send(&sender, a.port(), &datagram);
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "measured: 3000 fake candidates in {:.2} s cost this process {:.2} s of CPU (two nodes)",
        started.elapsed().as_secs_f64(),
        process_cpu() - cpu_before
    );
    let status = a.status();
    assert!(is_leader(&status), "{status:#?}");
    assert!(follows(&b.status(), &leader), "{:#?}", b.status());
    assert!(status.drops.get(BeaconErrorKind::RateLimited) >= 2900, "{:?}", status.drops);
    assert!(status.peers <= 1 + 8, "the peer table grew to {}", status.peers);
    a.stop().await;
    b.stop().await;
}

/// This process's user + system CPU time in seconds (Linux).
fn process_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
