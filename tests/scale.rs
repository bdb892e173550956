//! Subscribing many variables and switching with many live subscriptions, against real
//! nats-server: the two subscribe confirmations (what each guarantees and where a refusal
//! goes), round trips shared by concurrent callers (the coalesced PING in the vendored
//! async-nats), and `HubEvent::SwitchSettled` after a switch with many subscriptions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt;
use kinopio::{Confirmation, Hub, HubEvent, HubOptions, SelectionMode, SubscribeErrorKind};
use kinopio_test_support::{DelayProxy, NatsServer, WAIT};

/// Users may subscribe to everything but `secret.>`.
const DENY_SECRET: &str = "authorization {\n  users = [ { user: app, password: pw, permissions: { subscribe: { deny: \"secret.>\" } } } ]\n}\n";

fn options(url: &str) -> HubOptions {
    HubOptions::new()
        .servers([url])
        .unwrap()
        .selection(SelectionMode::Ordered)
        .reprobe_interval(None)
        .request_timeout(Duration::from_secs(2))
}

fn app(options: HubOptions) -> HubOptions {
    options.auth(kinopio::Auth::UserPassword { user: "app".into(), password: "pw".into() })
}

async fn next(sub: &mut kinopio::Subscription) -> kinopio::Message {
    tokio::time::timeout(WAIT, sub.next()).await.expect("timed out waiting for a message").expect("stream ended")
}

async fn server_error(events: &mut (impl futures::Stream<Item = HubEvent> + Unpin)) -> String {
    let wait = async {
        while let Some(event) = events.next().await {
            if let HubEvent::ServerError { message } = event {
                return message;
            }
        }
        panic!("the event stream ended");
    };
    tokio::time::timeout(WAIT, wait).await.expect("a ServerError event")
}

#[tokio::test]
async fn ordered_subscribe_is_ordered_before_the_same_hubs_publishes() {
    let server = NatsServer::start();
    let hub = Hub::connect(options(&server.url()).subscribe_confirmation(Confirmation::Ordered)).await.unwrap();
    // Each subscribe returns without a round trip; a publish right after it, through the same
    // hub, must still reach it (the server handles the connection's SUB before the PUB).
    for i in 0..300 {
        let var = hub.variable(&format!("ordered.v{i}")).unwrap();
        let mut sub = var.subscribe().await.unwrap();
        var.publish(&i).await.unwrap();
        assert_eq!(next(&mut sub).await.decode::<i32>().unwrap(), i);
    }
    // Other clients see the interest once `confirm` returns.
    let mark = hub.checkpoint().unwrap();
    let mut subs = Vec::new();
    for i in 0..300 {
        subs.push(hub.variable(&format!("others.v{i}")).unwrap().subscribe().await.unwrap());
    }
    hub.confirm(&mark).await.unwrap();
    let other = Hub::connect(options(&server.url())).await.unwrap();
    for i in 0..300 {
        other.variable(&format!("others.v{i}")).unwrap().publish(&i).await.unwrap();
    }
    for (i, sub) in subs.iter_mut().enumerate() {
        assert_eq!(next(sub).await.decode::<usize>().unwrap(), i);
    }
    other.close().await;
    hub.close().await;
}

#[tokio::test]
async fn ordered_subscribe_refusal_reaches_confirm_the_events_and_ends_the_stream() {
    let server = NatsServer::start_with_config(DENY_SECRET);
    let hub = Hub::connect(app(options(&server.url())).subscribe_confirmation(Confirmation::Ordered)).await.unwrap();
    let mut events = hub.events();
    let mark = hub.checkpoint().unwrap();
    let mut allowed = hub.variable("open.x").unwrap().subscribe().await.unwrap();
    // Returns at once: nothing has waited for the server.
    let mut refused = hub.variable("secret.x").unwrap().subscribe().await.unwrap();
    let err = hub.confirm(&mark).await.unwrap_err();
    assert_eq!(err.kind(), kinopio::PublishErrorKind::Rejected, "{err}");
    assert!(err.to_string().contains("secret.x"), "{err}");
    assert!(server_error(&mut events).await.contains("secret.x"));
    let ended = tokio::time::timeout(WAIT, refused.next()).await.expect("the refused stream ends");
    assert!(ended.is_none(), "the refused subscription delivers nothing: {ended:?}");
    // The allowed one is untouched.
    hub.variable("open.x").unwrap().publish(&7).await.unwrap();
    assert_eq!(next(&mut allowed).await.decode::<i32>().unwrap(), 7);
    hub.close().await;
}

#[tokio::test]
async fn a_refused_queue_subscription_ends_only_itself() {
    // Members of queue group "workers" may not subscribe to jobs.x; anyone else may.
    let server = NatsServer::start_with_config(
        "authorization {\n  users = [ { user: app, password: pw, permissions: { subscribe: { deny: [\"jobs.x workers\"] } } } ]\n}\n",
    );
    // Default confirmation: the call fails, for that group only.
    let hub = Hub::connect(app(options(&server.url()))).await.unwrap();
    let jobs = hub.variable("jobs.x").unwrap();
    let err = jobs.subscribe_queue("workers").await.unwrap_err();
    assert_eq!(err.kind(), SubscribeErrorKind::PermissionDenied, "{err}");
    let mut others = jobs.subscribe_queue("others").await.unwrap();
    // Ordered: the refusal ends the refused queue subscription, not the plain one beside it.
    let ordered =
        Hub::connect(app(options(&server.url())).subscribe_confirmation(Confirmation::Ordered)).await.unwrap();
    let mut events = ordered.events();
    let ordered_jobs = ordered.variable("jobs.x").unwrap();
    let mut plain = ordered_jobs.subscribe().await.unwrap();
    let mut refused = ordered_jobs.subscribe_queue("workers").await.unwrap();
    assert!(server_error(&mut events).await.contains("workers"));
    let ended = tokio::time::timeout(WAIT, refused.next()).await.expect("the refused stream ends");
    assert!(ended.is_none(), "{ended:?}");
    jobs.publish(&1).await.unwrap();
    assert_eq!(next(&mut plain).await.decode::<i32>().unwrap(), 1);
    assert_eq!(next(&mut others).await.decode::<i32>().unwrap(), 1);
    ordered.close().await;
    hub.close().await;
}

#[tokio::test]
async fn concurrent_server_confirmed_subscribes_share_round_trips_and_each_gets_its_own_answer() {
    let server = NatsServer::start_with_config(DENY_SECRET);
    let hub = Hub::connect(app(options(&server.url()))).await.unwrap();
    // 400 subscribes in flight at once (their round trips are coalesced into a few PINGs),
    // every tenth one refused: each caller must get its own result.
    let results: Vec<(usize, Result<kinopio::Subscription, kinopio::SubscribeError>)> =
        futures::stream::iter(0..400usize)
            .map(|i| {
                let hub = hub.clone();
                async move {
                    let subject = if i % 10 == 0 { format!("secret.v{i}") } else { format!("open.v{i}") };
                    (i, hub.variable(&subject).unwrap().subscribe().await)
                }
            })
            .buffer_unordered(400)
            .collect()
            .await;
    let other = Hub::connect(app(options(&server.url()))).await.unwrap();
    let mut subs = Vec::new();
    for (i, result) in results {
        if i % 10 == 0 {
            let err = result.expect_err("a refused subject");
            assert_eq!(err.kind(), SubscribeErrorKind::PermissionDenied, "{i}: {err}");
            assert!(err.to_string().contains(&format!("secret.v{i}")), "{i}: the refusal of another subject: {err}");
        } else {
            // Returned only once the server had the interest: another client's publish
            // reaches it, with no confirm in between.
            let sub = result.unwrap();
            other.variable(&format!("open.v{i}")).unwrap().publish(&i).await.unwrap();
            subs.push((i, sub));
        }
    }
    for (i, sub) in &mut subs {
        assert_eq!(next(sub).await.decode::<usize>().unwrap(), *i);
    }
    // Concurrent confirms (round trips) all resolve too.
    let mark = hub.checkpoint().unwrap();
    let confirms = futures::future::join_all((0..100).map(|_| hub.confirm(&mark))).await;
    assert!(confirms.iter().all(Result::is_ok), "{confirms:?}");
    other.close().await;
    hub.close().await;
}

#[tokio::test]
async fn a_switch_with_many_subscriptions_settles_and_loses_nothing() {
    const N: usize = 500;
    let server = NatsServer::start();
    let target = format!("127.0.0.1:{}", server.port()).parse().unwrap();
    let proxy = DelayProxy::start(target, Duration::ZERO);
    let hub = Hub::connect(
        HubOptions::new()
            .servers([server.url(), proxy.url()])
            .unwrap()
            .selection(SelectionMode::Ordered)
            .reprobe_interval(None)
            .subscribe_confirmation(Confirmation::Ordered),
    )
    .await
    .unwrap();
    let mark = hub.checkpoint().unwrap();
    let mut subs = Vec::new();
    for i in 0..N {
        subs.push(hub.variable(&format!("many.v{i}")).unwrap().subscribe().await.unwrap());
    }
    hub.confirm(&mark).await.unwrap();
    let publisher = Hub::connect(options(&server.url())).await.unwrap();
    let mut events = hub.events();
    let to = proxy.url().parse().unwrap();
    hub.switch_to(&to).await.unwrap();
    // One message per subscription while the merges run.
    for i in 0..N {
        publisher.variable(&format!("many.v{i}")).unwrap().publish(&i).await.unwrap();
    }
    let mut all = futures::stream::select_all(subs.iter_mut());
    let mut got = vec![0u32; N];
    for _ in 0..N {
        let msg = tokio::time::timeout(WAIT, all.next()).await.expect("a message").expect("open");
        got[msg.decode::<usize>().unwrap()] += 1;
    }
    // SwitchSettled comes once every merge has ended; keep receiving meanwhile (a late
    // duplicate would be counted).
    let settled = async {
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(HubEvent::SwitchSettled { server, subscriptions, elapsed }) => {
                        break (server, subscriptions, elapsed);
                    }
                    Some(_) => {}
                    None => panic!("the event stream ended"),
                },
                Some(msg) = all.next() => got[msg.decode::<usize>().unwrap()] += 1,
            }
        }
    };
    let (server_url, subscriptions, elapsed) = tokio::time::timeout(WAIT, settled).await.expect("SwitchSettled");
    assert_eq!(server_url, to);
    assert_eq!(subscriptions, N);
    assert!(elapsed < WAIT, "{elapsed:?}");
    assert!(got.iter().all(|c| *c == 1), "each message exactly once: {:?}", got.iter().filter(|c| **c != 1).count());
    drop(all);
    publisher.close().await;
    hub.close().await;
}

#[tokio::test]
async fn a_switch_without_subscriptions_settles_right_after_it_switched() {
    let server = NatsServer::start();
    let target = format!("127.0.0.1:{}", server.port()).parse().unwrap();
    let proxy = DelayProxy::start(target, Duration::ZERO);
    let hub =
        Hub::connect(HubOptions::new().servers([server.url(), proxy.url()]).unwrap().selection(SelectionMode::Ordered))
            .await
            .unwrap();
    let mut events = hub.events();
    hub.switch_to(&proxy.url().parse().unwrap()).await.unwrap();
    let order = async {
        let mut seen = Vec::new();
        while let Some(event) = events.next().await {
            match event {
                HubEvent::ServerSwitched { .. } => seen.push("switched"),
                HubEvent::SwitchSettled { subscriptions, .. } => {
                    assert_eq!(subscriptions, 0);
                    seen.push("settled");
                    return seen;
                }
                _ => {}
            }
        }
        seen
    };
    assert_eq!(tokio::time::timeout(WAIT, order).await.unwrap(), ["switched", "settled"]);
    hub.close().await;
}
