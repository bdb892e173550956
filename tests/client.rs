//! The `kinopio` client against real nats-server processes: naming, pub/sub, request/serve,
//! value tracking, connection state, restarts, bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kinopio::{
    ConnectErrorKind, ConnectionState, Hub, HubEvent, HubOptions, Message, RequestErrorKind, SelectionMode, Value,
};
use kinopio_test_support::NatsServer;

use kinopio_test_support::WAIT;

fn options(server: &NatsServer) -> HubOptions {
    HubOptions::new()
        .servers([server.url()])
        .unwrap()
        .selection(SelectionMode::Ordered)
        .request_timeout(Duration::from_secs(2))
}

async fn hub(server: &NatsServer) -> Hub {
    Hub::connect(options(server)).await.unwrap()
}

async fn next(sub: &mut kinopio::Subscription) -> Message {
    tokio::time::timeout(WAIT, sub.next()).await.expect("timed out waiting for a message").expect("stream ended")
}

#[tokio::test]
async fn scopes_map_to_subjects_and_are_cached() {
    let server = NatsServer::start();
    let hub = hub(&server).await;
    let a = hub.scope("a").unwrap();
    let c = a.scope("b").unwrap().variable("c").unwrap();
    assert_eq!(c.subject(), "a.b.c");
    assert!(c.same_as(&hub.variable("a.b.c").unwrap()));
    assert!(c.same_as(&hub.scope("a.b").unwrap().variable("c").unwrap()));
    assert!(a.same_as(&hub.scope("a").unwrap()));
    assert_eq!(hub.scope("chat").unwrap().variable("messages").unwrap().subject(), "chat.messages");

    for bad in ["", "a b", "*", "x.>", "a..b", "tab\there", "nul\0"] {
        let err = hub.scope("ok").unwrap().variable(bad).unwrap_err();
        assert_eq!(err.name, bad);
        assert!(err.to_string().contains("invalid variable name"), "{err}");
    }
    assert!(hub.scope(" ").is_err());
    hub.close().await;
}

#[tokio::test]
async fn publish_subscribe_round_trip_with_decoded_values_and_headers() {
    let server = NatsServer::start();
    let a = hub(&server).await;
    let b = hub(&server).await;
    let var_b = b.scope("chat").unwrap().variable("messages").unwrap();
    let mut sub = var_b.subscribe().await.unwrap();
    let var_a = a.scope("chat").unwrap().variable("messages").unwrap();

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Chat {
        text: String,
        n: u8,
    }
    var_a.publish(&Chat { text: "hi".into(), n: 1 }).await.unwrap();
    var_a.publish_text("plain").await.unwrap();
    var_a.publish(&()).await.unwrap();
    var_a.publish_bytes(&b"\xff\x01"[..]).await.unwrap();
    var_a.publish(&"123").await.unwrap();
    let mut headers = kinopio::HeaderMap::new();
    headers.insert("X-Trace", "abc");
    var_a.publish_payload(kinopio::Payload::json(&7).unwrap(), Some(headers)).await.unwrap();

    let m = next(&mut sub).await;
    assert_eq!(m.subject.as_str(), "chat.messages");
    assert_eq!(m.payload.as_ref(), br#"{"text": "hi", "n": 1}"#);
    assert_eq!(m.value()["text"], Value::from("hi"));
    let chat: Chat = m.decode().unwrap();
    assert_eq!((chat.text.as_str(), chat.n), ("hi", 1));
    assert_eq!(next(&mut sub).await.value(), Value::from("plain"));
    let null = next(&mut sub).await;
    assert!(null.payload.is_empty());
    assert_eq!(null.value(), Value::Null);
    assert_eq!(next(&mut sub).await.value(), Value::Bytes(bytes::Bytes::from_static(b"\xff\x01")));
    let quoted = next(&mut sub).await;
    assert_eq!(quoted.decode::<String>().unwrap(), "123", "a JSON string stays a string");
    let with_headers = next(&mut sub).await;
    assert_eq!(with_headers.headers.as_ref().unwrap().get("X-Trace").unwrap().as_str(), "abc");
    assert_eq!(with_headers.decode::<i32>().unwrap(), 7);

    // The receiving variable remembers the latest value it saw.
    assert_eq!(var_b.value(), Some(Value::Int(7)));
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn undecodable_payloads_give_typed_errors_that_keep_the_payload() {
    let server = NatsServer::start();
    let hub = hub(&server).await;
    let var = hub.variable("sensor.level").unwrap();
    let mut values = var.subscribe().await.unwrap().values::<u32>();
    var.publish_text("not a number").await.unwrap();
    var.publish(&5).await.unwrap();
    let err = tokio::time::timeout(WAIT, values.next()).await.unwrap().unwrap().unwrap_err();
    assert_eq!(err.subject, "sensor.level");
    assert_eq!(err.payload.as_ref(), b"not a number");
    assert!(err.to_string().contains("u32"), "{err}");
    assert_eq!(tokio::time::timeout(WAIT, values.next()).await.unwrap().unwrap().unwrap(), 5);
    hub.close().await;
}

#[tokio::test]
async fn queue_groups_deliver_each_message_once() {
    let server = NatsServer::start();
    let hub = hub(&server).await;
    let var = hub.variable("work.items").unwrap();
    let mut s1 = var.subscribe_queue("workers").await.unwrap();
    let mut s2 = var.subscribe_queue("workers").await.unwrap();
    for i in 0..40 {
        var.publish(&i).await.unwrap();
    }
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    let (mut n1, mut n2) = (0, 0);
    while got.len() < 40 && Instant::now() < deadline {
        tokio::select! {
            Some(m) = s1.next() => { n1 += 1; got.push(m.decode::<i32>().unwrap()); }
            Some(m) = s2.next() => { n2 += 1; got.push(m.decode::<i32>().unwrap()); }
        }
    }
    got.sort();
    assert_eq!(got, (0..40).collect::<Vec<_>>());
    assert!(n1 > 0 && n2 > 0, "both members got work: {n1} / {n2}");
    assert!(var.subscribe_queue("bad group").await.is_err());
    hub.close().await;
}

#[tokio::test]
async fn request_and_serve_with_typed_errors() {
    let server = NatsServer::start();
    let server_hub = hub(&server).await;
    let client_hub = hub(&server).await;
    let calc = server_hub.scope("math").unwrap().variable("calc").unwrap();
    let svc = calc
        .serve(|req: Message| async move {
            let n: i64 = req.decode().map_err(|e| e.to_string())?;
            if n < 0 {
                return Err(format!("negative input {n}"));
            }
            if n == 13 {
                panic!("unlucky");
            }
            Ok(n * 2)
        })
        .await
        .unwrap();
    assert_eq!(svc.queue_group(), "math.calc.service");

    let remote = client_hub.scope("math").unwrap().variable("calc").unwrap();
    let doubled: i64 = remote.request(&21).await.unwrap();
    assert_eq!(doubled, 42);

    let err = remote.request::<i64, _>(&-1).await.unwrap_err();
    assert_eq!(err.kind(), RequestErrorKind::Remote { message: "negative input -1".into() });
    let err = remote.request::<i64, _>(&13).await.unwrap_err();
    assert!(matches!(err.kind(), RequestErrorKind::Remote { message } if message.contains("unlucky")), "{err}");
    // The raw error reply is exactly what a Python service sends.
    let raw = remote.request_with(kinopio::Payload::json(&-5).unwrap(), Default::default()).await.unwrap_err();
    assert!(matches!(raw.kind(), RequestErrorKind::Remote { .. }));

    let err = remote.request::<Vec<String>, _>(&2).await.unwrap_err();
    assert_eq!(err.kind(), RequestErrorKind::Decode, "4 is not a list: {err}");

    // Nobody serves this subject: fails at once, not at the timeout, even after the
    // variable was touched, published to and its value read.
    let nobody = client_hub.variable("math.nobody").unwrap();
    nobody.publish(&1).await.unwrap();
    let _ = nobody.value();
    let started = Instant::now();
    let err = nobody.request::<Value, _>(&1).await.unwrap_err();
    assert_eq!(err.kind(), RequestErrorKind::NoResponders);
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());

    svc.stop().await;
    let err = remote.request::<i64, _>(&1).await.unwrap_err();
    assert_eq!(err.kind(), RequestErrorKind::NoResponders, "a stopped service is gone");
    server_hub.close().await;
    client_hub.close().await;
}

#[tokio::test]
async fn request_times_out_with_its_own_kind() {
    let server = NatsServer::start();
    let hub = hub(&server).await;
    let slow = hub.variable("svc.slow").unwrap();
    slow.serve(|_m: Message| async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, String>(1)
    })
    .await
    .unwrap();
    let started = Instant::now();
    let err = slow
        .request_with(
            kinopio::Payload::null(),
            kinopio::RequestOptions { timeout: Some(Duration::from_millis(300)), headers: None },
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), RequestErrorKind::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(3));
    hub.close().await;
}

#[tokio::test]
async fn handlers_run_concurrently_up_to_the_bound() {
    let server = NatsServer::start();
    let hub = Hub::connect(options(&server).max_concurrent_handlers(4)).await.unwrap();
    let active = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let var = hub.variable("svc.parallel").unwrap();
    let (a, p) = (Arc::clone(&active), Arc::clone(&peak));
    var.serve(move |_m: Message| {
        let (a, p) = (Arc::clone(&a), Arc::clone(&p));
        async move {
            let now = a.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
            a.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, String>(())
        }
    })
    .await
    .unwrap();
    let client = Hub::connect(options(&server)).await.unwrap();
    let remote = client.variable("svc.parallel").unwrap();
    let calls: Vec<_> = (0..8).map(|_| remote.request::<Value, _>(&())).collect();
    for r in futures::future::join_all(calls).await {
        assert_eq!(r.unwrap(), Value::Null);
    }
    assert_eq!(peak.load(Ordering::SeqCst), 4, "handlers overlap, but never more than the bound");
    hub.close().await;
    client.close().await;
}

#[tokio::test]
async fn serving_again_replaces_the_previous_service() {
    let server = NatsServer::start();
    let hub = hub(&server).await;
    let var = hub.variable("svc.version").unwrap();
    let first = var.serve(|_m: Message| async { Ok::<_, String>("v1") }).await.unwrap();
    assert_eq!(var.request::<String, _>(&()).await.unwrap(), "v1");
    var.serve(|_m: Message| async { Ok::<_, String>("v2") }).await.unwrap();
    tokio::time::timeout(WAIT, async {
        while first.is_active() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    for _ in 0..5 {
        assert_eq!(var.request::<String, _>(&()).await.unwrap(), "v2");
    }
    hub.close().await;
}

#[tokio::test]
async fn value_tracks_publishes_subscriptions_and_watches() {
    let server = NatsServer::start();
    let a = hub(&server).await;
    let b = hub(&server).await;
    let var_a = a.variable("room.temp").unwrap();
    assert_eq!(var_a.value(), None);
    var_a.publish(&20.5).await.unwrap();
    assert_eq!(var_a.value(), Some(Value::Float(20.5)));

    let var_b = b.variable("room.temp").unwrap();
    let mut watch = var_b.watch().await.unwrap();
    var_a.publish(&21.0).await.unwrap();
    // The earlier 20.5 may still be on its way when the watch subscribes: wait for 21.0.
    let v = tokio::time::timeout(WAIT, async {
        loop {
            let v = watch.changed().await.unwrap();
            if v == Value::Float(21.0) {
                return v;
            }
            assert_eq!(v, Value::Float(20.5), "only the two published values can arrive");
        }
    })
    .await
    .unwrap();
    assert_eq!(v, Value::Float(21.0));
    assert_eq!(var_b.value_as::<f64>().unwrap().unwrap(), 21.0);
    assert_eq!(watch.current(), Some(Value::Float(21.0)));
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn no_echo_hides_own_publishes() {
    let server = NatsServer::start();
    let quiet = Hub::connect(options(&server).no_echo(true)).await.unwrap();
    let other = hub(&server).await;
    let var = quiet.variable("echo.test").unwrap();
    let mut mine = var.subscribe().await.unwrap();
    var.publish(&"self").await.unwrap();
    other.variable("echo.test").unwrap().publish(&"other").await.unwrap();
    assert_eq!(next(&mut mine).await.decode::<String>().unwrap(), "other");
    quiet.close().await;
    other.close().await;
}

#[tokio::test]
async fn wait_connected_returns_at_its_timeout_and_retrying_stays_idle() {
    let port = kinopio_test_support::free_port();
    let hub = Hub::new(
        HubOptions::new()
            .servers([format!("nats://127.0.0.1:{port}")])
            .unwrap()
            .selection(SelectionMode::Ordered)
            .retry(Duration::from_millis(200), 2.0, Duration::from_secs(2))
            .reconnect_wait(Duration::from_millis(100)),
    );
    let started = Instant::now();
    let err = hub.wait_connected(Duration::from_millis(500)).await.unwrap_err();
    let waited = started.elapsed();
    assert_eq!(err.kind(), ConnectErrorKind::TimedOut);
    assert!(waited >= Duration::from_millis(500) && waited < Duration::from_millis(1500), "{waited:?}");
    assert!(err.to_string().contains(&port.to_string()), "error names the server: {err}");

    // While the server stays unreachable, attempts back off instead of spinning.
    let cpu_before = process_cpu_time();
    let var = hub.variable("x.y").unwrap();
    let err = tokio::time::timeout(Duration::from_secs(5), var.publish(&1)).await.unwrap().unwrap_err();
    assert_eq!(err.kind(), kinopio::PublishErrorKind::NotConnected);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = process_cpu_time() - cpu_before;
    assert!(cpu < Duration::from_millis(500), "used {cpu:?} CPU in ~4.5 s while retrying");
    assert_ne!(hub.state(), ConnectionState::Connected);

    // The server appears: the hub connects without being asked.
    let server = NatsServer::start_with_args(&["-p", &port.to_string()]);
    hub.wait_connected(WAIT).await.unwrap();
    assert_eq!(hub.server().unwrap().port(), server.port());
    hub.close().await;
}

fn process_cpu_time() -> Duration {
    // utime + stime of this process, from /proc (Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

#[tokio::test]
async fn subscriptions_services_and_values_survive_a_server_restart() {
    let mut server = NatsServer::start();
    let opts = options(&server).retry(Duration::from_millis(100), 1.5, Duration::from_millis(500));
    let hub = Hub::connect(opts.clone()).await.unwrap();
    let mut states = hub.state_watch();
    let var = hub.variable("restart.values").unwrap();
    let mut sub = var.subscribe().await.unwrap();
    let mut watch = hub.variable("restart.watched").unwrap().watch().await.unwrap();
    hub.variable("restart.svc")
        .unwrap()
        .serve(|m: Message| async move { Ok::<_, String>(m.decode::<i64>().map_err(|e| e.to_string())? + 1) })
        .await
        .unwrap();

    server.restart();
    tokio::time::timeout(WAIT, states.wait_for(|s| *s == ConnectionState::Disconnected)).await.unwrap().unwrap();
    tokio::time::timeout(WAIT, states.wait_for(|s| *s == ConnectionState::Connected)).await.unwrap().unwrap();

    let other = Hub::connect(opts).await.unwrap();
    // The restarted server learns the re-sent subscriptions right after the reconnect; wait
    // until the service answers, then check everything else.
    let svc = other.variable("restart.svc").unwrap();
    let answer = tokio::time::timeout(WAIT, async {
        loop {
            match svc.request::<i64, _>(&41).await {
                Ok(v) => return v,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(answer, 42);
    other.variable("restart.values").unwrap().publish(&"after").await.unwrap();
    assert_eq!(next(&mut sub).await.decode::<String>().unwrap(), "after");
    other.variable("restart.watched").unwrap().publish(&9).await.unwrap();
    assert_eq!(tokio::time::timeout(WAIT, watch.changed()).await.unwrap(), Some(Value::Int(9)));
    hub.close().await;
    other.close().await;
}

#[tokio::test]
async fn close_drains_and_is_idempotent() {
    let server = NatsServer::start();
    let publisher = hub(&server).await;
    let receiver = hub(&server).await;
    let mut sub = receiver.variable("drain.items").unwrap().subscribe().await.unwrap();
    let var = publisher.variable("drain.items").unwrap();
    for i in 0..500 {
        var.publish(&i).await.unwrap();
    }
    publisher.close().await;
    publisher.close().await;
    assert_eq!(publisher.state(), ConnectionState::Disconnected);
    for i in 0..500 {
        assert_eq!(next(&mut sub).await.decode::<i32>().unwrap(), i);
    }
    let err = var.publish(&1).await.unwrap_err();
    assert_eq!(err.kind(), kinopio::PublishErrorKind::Closed);
    receiver.close().await;
    // The subscription of a closed hub ends.
    assert!(tokio::time::timeout(WAIT, sub.next()).await.unwrap().is_none());
}

#[tokio::test]
async fn events_report_connection_changes() {
    let mut server = NatsServer::start();
    let hub = Hub::connect(options(&server).retry(Duration::from_millis(100), 1.5, Duration::from_millis(300)))
        .await
        .unwrap();
    let mut events = hub.events();
    server.restart();
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, async {
        while let Some(e) = events.next().await {
            let done = matches!(e, HubEvent::Connected { .. });
            seen.push(e);
            if done {
                break;
            }
        }
    })
    .await
    .unwrap();
    assert!(matches!(seen.first(), Some(HubEvent::Disconnected { .. })), "{seen:?}");
    assert!(matches!(seen.last(), Some(HubEvent::Connected { server: Some(s) }) if s.port() == server.port()));
    hub.close().await;
}

#[tokio::test]
async fn slow_consumers_are_reported() {
    let server = NatsServer::start();
    let hub = Hub::connect(options(&server).subscription_capacity(8)).await.unwrap();
    let mut events = hub.events();
    let var = hub.variable("burst.items").unwrap();
    let _sub = var.subscribe().await.unwrap(); // never polled
    for i in 0..200 {
        var.publish(&i).await.unwrap();
    }
    let event = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(HubEvent::SlowConsumer { sid }) = events.next().await {
                return sid;
            }
        }
    })
    .await
    .unwrap();
    assert!(event > 0);
    hub.close().await;
}

#[tokio::test]
async fn without_auto_retry_the_hub_gives_up_with_an_error_state() {
    let port = kinopio_test_support::free_port();
    let hub = Hub::new(
        HubOptions::new()
            .servers([format!("nats://127.0.0.1:{port}")])
            .unwrap()
            .auto_retry(false)
            .max_reconnect_attempts(Some(2))
            .retry(Duration::from_millis(50), 1.0, Duration::from_millis(50))
            .reconnect_wait(Duration::from_millis(50)),
    );
    let mut states = hub.state_watch();
    tokio::time::timeout(WAIT, states.wait_for(|s| *s == ConnectionState::Error)).await.unwrap().unwrap();
    let err = hub.wait_connected(Duration::from_secs(1)).await.unwrap_err();
    assert_eq!(err.kind(), ConnectErrorKind::Failed);
    hub.close().await;
}

#[tokio::test]
async fn with_auto_retry_a_hub_that_exhausted_its_attempts_starts_over() {
    let port = kinopio_test_support::free_port();
    let hub = Hub::new(
        HubOptions::new()
            .servers([format!("nats://127.0.0.1:{port}")])
            .unwrap()
            .max_reconnect_attempts(Some(2))
            .retry(Duration::from_millis(50), 1.0, Duration::from_millis(100))
            .reconnect_wait(Duration::from_millis(50)),
    );
    let var = hub.variable("late.server").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_ne!(hub.state(), ConnectionState::Error, "auto retry keeps trying");
    let server = NatsServer::start_with_args(&["-p", &port.to_string()]);
    hub.wait_connected(WAIT).await.unwrap();
    let mut sub = var.subscribe().await.unwrap();
    let other = Hub::connect(options(&server)).await.unwrap();
    other.variable("late.server").unwrap().publish(&1).await.unwrap();
    assert_eq!(next(&mut sub).await.decode::<i32>().unwrap(), 1);
    hub.close().await;
    other.close().await;
}

/// `Hub::confirm` tells exactly whether what was sent since a checkpoint arrived: yes after a
/// round trip; no, with the server's own words, when the server refused a publish (its
/// `-ERR` comes before the PONG, so this is never a race); no when the connection was lost
/// and re-established in between.
#[tokio::test]
async fn confirm_reports_refusals_and_reconnects_exactly() {
    let mut server = NatsServer::start_with_config(
        "authorization {\n  users = [ { user: app, password: pw, permissions: { publish: { deny: \"secret.>\" } } } ]\n}\n",
    );
    let options = options(&server).auth(kinopio::Auth::UserPassword { user: "app".into(), password: "pw".into() });
    let hub = Hub::connect(options).await.unwrap();
    for _ in 0..20 {
        let mark = hub.checkpoint().unwrap();
        hub.variable("open.x").unwrap().publish(&1).await.unwrap();
        hub.confirm(&mark).await.unwrap();
        let mark = hub.checkpoint().unwrap();
        hub.variable("secret.x").unwrap().publish(&1).await.unwrap();
        let err = hub.confirm(&mark).await.unwrap_err();
        assert_eq!(err.kind(), kinopio::PublishErrorKind::Rejected, "{err}");
        assert!(err.to_string().to_lowercase().contains("permissions violation"), "{err}");
    }
    let mark = hub.checkpoint().unwrap();
    server.restart();
    hub.wait_connected(WAIT).await.unwrap();
    let err = hub.confirm(&mark).await.unwrap_err();
    assert_eq!(err.kind(), kinopio::PublishErrorKind::NotConnected, "{err}");
    hub.close().await;
}
