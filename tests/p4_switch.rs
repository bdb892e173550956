//! Protocol 4 across hot switches: a namespace on a hub that moves between the nodes of a
//! cluster keeps its subscriptions (nothing lost, nothing twice), its variables and its
//! presence — the same engine, unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use kinopio::p4::Online;
use kinopio::{Hub, HubOptions, SelectionMode, ServerUrl};
use kinopio_test_support::{NatsServer, WAIT};

fn cluster() -> (NatsServer, NatsServer) {
    let (route_a, route_b) = (kinopio_test_support::free_port(), kinopio_test_support::free_port());
    let conf = |own: u16, other: u16| {
        format!(
            "cluster {{ name: p4-switch, listen: \"127.0.0.1:{own}\", routes: [\"nats-route://127.0.0.1:{other}\"] }}"
        )
    };
    (NatsServer::start_with_config(&conf(route_a, route_b)), NatsServer::start_with_config(&conf(route_b, route_a)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_rides_hot_switches_without_loss_or_duplicates() {
    let (n1, n2) = cluster();
    let writer = Hub::connect(HubOptions::new().servers([n1.url()]).unwrap()).await.unwrap();
    let moving = Hub::connect(
        HubOptions::new()
            .servers([n1.url(), n2.url()])
            .unwrap()
            .selection(SelectionMode::Ordered)
            .reprobe_interval(None),
    )
    .await
    .unwrap();
    let w = writer.namespace("factory").unwrap();
    let m = moving.namespace("factory").unwrap();
    w.wait_synced(WAIT).await.unwrap();
    m.wait_synced(WAIT).await.unwrap();
    let mut events = m.subscribe("line.>").await.unwrap();
    // Wait until the route carries the subscription: a probe event arrives.
    tokio::time::timeout(WAIT, async {
        loop {
            w.publish("line.probe", &-1).await.unwrap();
            if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(100), events.next()).await {
                break;
            }
        }
    })
    .await
    .expect("the cluster route carries the subscription");

    const N: i64 = 2000;
    let publisher = {
        let w = w.clone();
        tokio::spawn(async move {
            let count = w.var::<i64>("count").unwrap();
            for i in 0..N {
                w.publish("line.item", &i).await.unwrap();
                if i % 100 == 0 {
                    count.set(&i).unwrap();
                }
                // Paced (≥ 200 ms in all) so the four switches below happen mid-stream.
                if i % 20 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            count.set(&N).unwrap();
            w.flush(WAIT).await.unwrap();
        })
    };
    let switcher = {
        let moving = moving.clone();
        let (u1, u2): (ServerUrl, ServerUrl) = (n1.url().parse().unwrap(), n2.url().parse().unwrap());
        tokio::spawn(async move {
            for to in [&u2, &u1, &u2, &u1] {
                tokio::time::sleep(Duration::from_millis(15)).await;
                moving.switch_to(to).await.unwrap();
            }
        })
    };
    let mut seen: BTreeMap<i64, u32> = BTreeMap::new();
    tokio::time::timeout(WAIT, async {
        while seen.len() < N as usize {
            let msg = events.next().await.expect("the subscription lives");
            let i: i64 = msg.value().unwrap();
            if i >= 0 {
                *seen.entry(i).or_default() += 1;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} of {N} events arrived", seen.len()));
    publisher.await.unwrap();
    switcher.await.unwrap();
    assert!(
        seen.values().all(|n| *n == 1),
        "duplicates: {:?}",
        seen.iter().filter(|(_, n)| **n > 1).take(5).collect::<Vec<_>>()
    );
    assert_eq!(events.dropped(), 0);
    // The variable converged, and each instance still lists the other online.
    let count = m.var::<i64>("count").unwrap();
    tokio::time::timeout(WAIT, async {
        while count.get().unwrap() != Some(N) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the variable converges after the switches");
    m.report_health().await.unwrap();
    tokio::time::timeout(WAIT, async {
        while !w.instances().iter().any(|i| i.instance_id == m.instance_id() && i.online == Online::Online) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the moving instance is still listed online");
    assert_eq!(m.rejected(), 0);
    writer.close().await;
    moving.close().await;
}
