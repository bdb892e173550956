//! The client's local-leader discovery against a real leaf: the hub starts on a remote
//! (backbone) server, finds the leaf through its HTTPS manifest or mDNS, hot-switches to it
//! without losing messages, and falls back when the leaf goes away.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt;
use kinopio::wire::beacon::Role;
use kinopio::{DiscoveryOptions, Hub, HubEvent, HubOptions, SelectionMode, ServerUrl, SwitchReason};
use kinopio_leaf::auto::{AutoLeaf, AutoLeafOptions, InterfaceFilter};
use kinopio_leaf::election::NamespaceSecret;
use kinopio_leaf::runtime::{LeafNode, LeafOptions};
use kinopio_leaf::tls::TrustStoreConfig;
use kinopio_test_support::{NatsServer, nats_server_binary};

use kinopio_test_support::WAIT;

fn leaf_options(backbone: &str, cache: &std::path::Path, discovery_port: u16) -> LeafOptions {
    LeafOptions::new()
        .backbone_server(backbone)
        .binary_path(nats_server_binary())
        .cache_dir(cache)
        .discovery_port(discovery_port)
        .lan_bind_address("127.0.0.1".parse().unwrap())
        .trust_store(TrustStoreConfig::none())
}

async fn switched(events: &mut (impl futures::Stream<Item = HubEvent> + Unpin), reason: SwitchReason) -> ServerUrl {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(HubEvent::ServerSwitched { to, reason: r, .. }) = events.next().await
                && r == reason
            {
                return to;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no switch for {reason:?}"))
}

fn discovery(options: &LeafOptions, port: u16) -> DiscoveryOptions {
    DiscoveryOptions {
        manifest_url: Some(format!("https://127.0.0.1:{port}/.well-known/kinopio-leader.json")),
        ca_file: Some(options.ca_dir().join("ca-cert.pem")),
        probe_interval: Duration::from_millis(200),
        cache_ttl: Duration::from_millis(300),
        local_switch_timeout: Duration::from_secs(1),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_switches_to_the_local_leaf_and_back_without_losing_messages() {
    let backbone = NatsServer::start_with_config("leafnodes { listen: \"127.0.0.1:-1\" }\n");
    let cache = tempfile::tempdir().unwrap();
    let port = kinopio_test_support::free_port();
    let options = leaf_options(&backbone.leafnode_url(), cache.path(), port);

    // The hub runs on the backbone first; the leaf appears later, as a leader would.
    let hub = Hub::new(
        HubOptions::new()
            .servers([backbone.url()])
            .unwrap()
            .selection(SelectionMode::Ordered)
            .discovery(discovery(&options, port)),
    );
    let mut events = hub.events();
    hub.wait_connected(WAIT).await.unwrap();
    let mut sub = hub.variable("room.seq").unwrap().subscribe().await.unwrap();
    let publisher = Hub::connect(HubOptions::new().servers([backbone.url()]).unwrap()).await.unwrap();
    let var = publisher.variable("room.seq").unwrap();

    let leaf = tokio::time::timeout(WAIT, LeafNode::start(options)).await.unwrap().unwrap();

    let mut next = 0u64;
    let mut publish_some = |n: u64| {
        let var = var.clone();
        let start = next;
        next += n;
        async move {
            for i in start..start + n {
                var.publish(&i).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    let before = tokio::spawn(publish_some(200));
    let to = switched(&mut events, SwitchReason::LocalLeader).await;
    assert_eq!(leaf.status().bridge_state.as_str(), "connected", "only a bridged leaf is used");
    assert_eq!(to.to_string(), leaf.urls().client_url.to_string(), "same host: the plain client URL is used");
    before.await.unwrap();
    publish_some(50).await;

    // The leaf goes away: back to the configured server.
    let lost = tokio::spawn(publish_some(200));
    leaf.stop().await;
    let back = switched(&mut events, SwitchReason::LocalLeaderLost).await;
    assert_eq!(back, backbone.url().parse().unwrap());
    lost.await.unwrap();
    publish_some(50).await;

    let mut seen = std::collections::BTreeMap::new();
    let total = next;
    tokio::time::timeout(WAIT, async {
        while seen.len() < total as usize {
            let n: u64 = sub.next().await.unwrap().decode().unwrap();
            *seen.entry(n).or_insert(0u32) += 1;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {total} arrived", seen.len()));
    // Messages published while the leaf was being stopped may be lost (the leaf's own
    // connection drops them), but nothing is ever delivered twice.
    assert!(seen.values().all(|&n| n == 1), "duplicates: {seen:?}");
    hub.close().await;
    publisher.close().await;
}

#[tokio::test]
async fn untrusted_manifest_urls_are_ignored_and_the_remote_session_stays() {
    let remote = NatsServer::start();
    let hub = Hub::connect(HubOptions::new().servers([remote.url()]).unwrap().discovery(DiscoveryOptions {
        // Plain HTTP is never trusted for a manifest (malformed and expired manifests are
        // rejected by `LeaderManifest::parse`, tested in the manifest module).
        manifest_url: Some(format!("http://127.0.0.1:{}/manifest.json", remote.port())),
        probe_interval: Duration::from_millis(100),
        ..Default::default()
    }))
    .await
    .unwrap();
    let mut events = hub.events();
    let switched = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(e) = events.next().await {
            if matches!(e, HubEvent::ServerSwitched { .. }) {
                return;
            }
        }
    })
    .await;
    assert!(switched.is_err(), "must not switch on an untrusted manifest");
    assert_eq!(hub.server(), Some(remote.url().parse().unwrap()));
    hub.variable("x.y").unwrap().publish(&1).await.unwrap();
    hub.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_finds_a_leader_advertised_over_mdns() {
    let backbone = NatsServer::start_with_config("leafnodes { listen: \"127.0.0.1:-1\" }\n");
    let cache = tempfile::tempdir().unwrap();
    let port = kinopio_test_support::free_port();
    let options = leaf_options(&backbone.leafnode_url(), cache.path(), port);
    let ca = options.ca_dir().join("ca-cert.pem");
    let leaf = tokio::time::timeout(WAIT, LeafNode::start(options)).await.unwrap().unwrap();
    let namespace = format!("mdns-test-{}", std::process::id());

    // Advertise it the way a leader does, on loopback only (never the host's real NIC).
    let daemon = mdns_sd::ServiceDaemon::new().unwrap();
    daemon.disable_interface(mdns_sd::IfKind::All).unwrap();
    daemon.enable_interface(mdns_sd::IfKind::Name("lo".into())).unwrap();
    let instance = format!("KinopioHub-{namespace}");
    let txt = [
        ("nodeId", leaf.node_id().to_owned()),
        ("namespace", namespace.clone()),
        ("wssUrl", leaf.urls().wss_url.clone()),
        ("discoveryUrl", leaf.urls().discovery_url.clone()),
        ("candidateRole", "leader".to_owned()),
        ("leaderEpoch", "1".to_owned()),
    ];
    let info = mdns_sd::ServiceInfo::new(
        kinopio::wire::mdns::SERVICE_TYPE,
        &instance,
        &format!("{instance}.local."),
        "127.0.0.1",
        port,
        &txt[..],
    )
    .unwrap();
    daemon.register(info).unwrap();

    let hub = Hub::new(HubOptions::new().servers([backbone.url()]).unwrap().discovery(DiscoveryOptions {
        namespace: Some(namespace),
        ca_file: Some(ca),
        probe_interval: Duration::from_millis(300),
        interfaces: vec!["lo".into()],
        ..Default::default()
    }));
    let mut events = hub.events();
    let to = switched(&mut events, SwitchReason::LocalLeader).await;
    assert_eq!(to.to_string(), leaf.urls().client_url);
    hub.close().await;
    let _ = daemon.shutdown();
    leaf.stop().await;
}

fn auto_options(ns: &str, secret: &str, backbone: &str, cache: &std::path::Path) -> AutoLeafOptions {
    let leaf = LeafOptions::new()
        .backbone_server(backbone)
        .binary_path(nats_server_binary())
        .cache_dir(cache)
        .lan_bind_address("127.0.0.1".parse().unwrap())
        .trust_store(TrustStoreConfig::none().with_env_skip(|_| Some("1".to_owned())));
    AutoLeafOptions::new(ns)
        .leaf(leaf)
        .interfaces(InterfaceFilter::loopback())
        .leader_missing_grace(Duration::from_secs(2))
        .namespace_secret(NamespaceSecret::new(secret).unwrap())
}

async fn leading(node: &AutoLeaf) -> kinopio_leaf::auto::LeaderLeaf {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut events = node.events();
    loop {
        let status = node.status();
        if status.election.role == Role::Leader
            && let Some(leaf) = status.leaf
        {
            return leaf;
        }
        assert!(tokio::time::timeout_at(deadline, events.recv()).await.is_ok(), "no leader: {:#?}", node.status());
    }
}

/// One trust per namespace, and a stranger cannot hijack discovery. A stranger on the LAN
/// advertises itself over mDNS as the namespace's leader, with a certificate from a root the
/// client trusts (its CA is given as the client's CA file) — the client refuses it, visibly.
/// Then two real devices lead one after the other: the client, holding only the namespace
/// secret (no device's CA), follows the first and, after it stops, the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secured_namespace_client_follows_its_leaders_and_refuses_a_stranger() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("kinopio=debug").try_init();
    let backbone = NatsServer::start_with_config("leafnodes { listen: \"127.0.0.1:-1\" }\n");
    let ns = format!("secured-discovery-{}-{:08x}", std::process::id(), rand::random::<u32>());
    let secret = "correct horse battery staple";
    let (stranger_cache, a_cache, b_cache) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    // The stranger does not know the secret: it leads in its own view and advertises itself.
    let stranger =
        AutoLeaf::start(auto_options(&ns, "a guess", &backbone.leafnode_url(), stranger_cache.path())).await.unwrap();
    let stranger_leaf = leading(&stranger).await;

    let hub =
        Hub::new(HubOptions::new().servers([backbone.url()]).unwrap().selection(SelectionMode::Ordered).discovery(
            DiscoveryOptions {
                namespace: Some(ns.clone()),
                namespace_secret: Some(kinopio::trust::Secret::new(secret)),
                ca_file: Some(stranger_leaf.ca_cert_file.clone()),
                probe_interval: Duration::from_millis(300),
                cache_ttl: Duration::from_millis(300),
                local_switch_timeout: Duration::from_secs(1),
                interfaces: vec!["lo".into()],
                ..Default::default()
            },
        ));
    let mut events = hub.events();
    hub.wait_connected(WAIT).await.unwrap();
    let rejected = tokio::time::timeout(WAIT, async {
        loop {
            match events.next().await {
                Some(HubEvent::LocalLeaderRejected { url, reason }) => return (url, reason),
                Some(HubEvent::ServerSwitched { to, .. }) => panic!("switched to the stranger at {to}"),
                _ => {}
            }
        }
    })
    .await
    .expect("the stranger was never reported as rejected");
    assert_eq!(rejected.0, stranger_leaf.urls.discovery_url);
    assert!(rejected.1.contains("TLS"), "{}", rejected.1);

    // The real devices.
    let a = AutoLeaf::start(auto_options(&ns, secret, &backbone.leafnode_url(), a_cache.path())).await.unwrap();
    let a_leaf = leading(&a).await;
    let b = AutoLeaf::start(auto_options(&ns, secret, &backbone.leafnode_url(), b_cache.path())).await.unwrap();
    assert_ne!(a_leaf.ca_cert_file, stranger_leaf.ca_cert_file);
    let to = switched(&mut events, SwitchReason::LocalLeader).await;
    assert!(
        [a_leaf.urls.client_url.as_str(), a_leaf.urls.wss_url.as_str()].contains(&to.as_str()),
        "switched to {to}, not to the leader {a_leaf:?}"
    );

    // The first leader goes; the second takes over; the client follows with the same trust.
    a.stop().await;
    let b_leaf = leading(&b).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let to = tokio::time::timeout_at(deadline, async {
            loop {
                if let Some(HubEvent::ServerSwitched { to, reason: SwitchReason::LocalLeader, .. }) =
                    events.next().await
                {
                    return to;
                }
            }
        })
        .await
        .expect("the client did not follow the second leader");
        if [b_leaf.urls.client_url.as_str(), b_leaf.urls.wss_url.as_str()].contains(&to.as_str()) {
            break;
        }
    }
    // Messages flow through the new leader to the backbone.
    let var = hub.variable("secured.check").unwrap();
    let mut sub = var.subscribe().await.unwrap();
    var.publish(&1).await.unwrap();
    assert!(tokio::time::timeout(WAIT, sub.next()).await.unwrap().is_some());
    hub.close().await;
    b.stop().await;
    stranger.stop().await;
}
