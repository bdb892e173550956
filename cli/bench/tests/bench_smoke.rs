//! `kinopio-bench --quick` as a black box against a real nats-server and the real Python
//! references, kinopio-hub 0.1.1 and 3.0.0 (all required: `scripts/install-deps.sh`): the report files exist and parse,
//! and every scenario produced samples. Nothing here asserts on speed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(300);

async fn bench(args: &[&str], out: &Path) -> (String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kinopio-bench"));
    cmd.args(args).arg("--out").arg(out).kill_on_drop(true);
    cmd.env("KINOPIO_NATS_SERVER", kinopio_test_support::nats_server_binary());
    cmd.env("KINOPIO_PYTHON", kinopio_test_support::python());
    cmd.env("KINOPIO_PYTHON_HUB3", kinopio_test_support::python_hub3());
    let output = tokio::time::timeout(LIMIT, cmd.output()).await.expect("bench finishes").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "kinopio-bench failed ({}):\n{stdout}\n{stderr}", output.status);
    (stdout, stderr)
}

fn scenario<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["scenarios"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap_or_else(|| panic!("no scenario {id}"))
}

fn samples(scenario: &Value, client: &str, metric: &str) -> Vec<f64> {
    scenario["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["client"] == client && s["metric"] == metric)
        .unwrap_or_else(|| panic!("no series {client} {metric} in {}", scenario["id"]))["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

fn positive(values: &[f64], what: &str) {
    assert!(!values.is_empty(), "{what}: no samples");
    assert!(values.iter().all(|v| v.is_finite() && *v > 0.0), "{what}: {values:?}");
}

#[tokio::test]
async fn quick_bench_writes_parsable_reports_with_samples_for_every_scenario() {
    let out = tempfile::tempdir().unwrap();
    let (stdout, _) = bench(&["--quick", "--json"], out.path()).await;

    let printed: Value = serde_json::from_str(stdout.lines().last().unwrap()).expect("stdout is one JSON document");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.path().join("bench.json")).unwrap()).unwrap();
    assert_eq!(printed["figures"], report["figures"], "--json prints the report that was written");
    assert_eq!(report["schema"], 1);
    assert_eq!(report["settings"]["quick"], true);
    assert!(report["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(report["machine"]["nats_server"]["version"].as_str().is_some_and(|v| !v.is_empty()));

    for id in ["throughput", "latency", "fanout", "hot-switch", "many-subs", "switch-scale"] {
        assert_eq!(scenario(&report, id)["status"]["state"], "ok", "{id}: {}", scenario(&report, id)["status"]);
    }
    let tp = scenario(&report, "throughput");
    for client in ["kinopio", "raw"] {
        positive(&samples(tp, client, "throughput_16B"), "throughput 16 B");
        positive(&samples(tp, client, "throughput_1KiB"), "throughput 1 KiB");
        positive(&samples(scenario(&report, "latency"), client, "p50"), "latency p50");
        positive(&samples(scenario(&report, "latency"), client, "p99"), "latency p99");
        positive(&samples(scenario(&report, "fanout"), client, "throughput"), "fan-out");
        for n in [100, 400] {
            let subs = scenario(&report, "many-subs");
            positive(&samples(subs, client, &format!("subscribe_ms@{n}")), "subscribe time");
            positive(&samples(subs, client, &format!("rss_mb@{n}")), "RSS");
            assert_eq!(samples(subs, client, &format!("bytes_per_sub@{n}")).len(), 1, "bytes per subscription");
        }
    }
    positive(&samples(scenario(&report, "many-subs"), "kinopio", "subscribe_ordered_ms@400"), "ordered subscribe");
    let scale = scenario(&report, "switch-scale");
    for n in [100, 400] {
        assert_eq!(samples(scale, "kinopio", &format!("lost@{n}")).len(), 1, "one round of lost counts");
        assert_eq!(samples(scale, "kinopio", &format!("duplicates@{n}")).len(), 1);
        assert_eq!(samples(scale, "kinopio", &format!("settled_ms@{n}")).len(), 2, "every switch settled");
    }
    let switch = scenario(&report, "hot-switch");
    assert_eq!(samples(switch, "kinopio", "lost").len(), 1, "one round of lost counts");
    assert_eq!(samples(switch, "kinopio", "duplicates").len(), 1);
    positive(&samples(switch, "kinopio", "switch_ms"), "switch_to durations");
    let runs = switch["runs"].as_array().unwrap();
    assert!(runs[0]["published"].as_u64().unwrap() > 0, "the publisher ran during the switches");

    let leaf = scenario(&report, "leaf-start");
    assert_eq!(leaf["status"]["state"], "ok", "{}", leaf["status"]);
    positive(&samples(leaf, "kinopio", "ready_ms"), "leaf start → manifest");
    positive(&samples(leaf, "raw", "ready_ms"), "bare nats-server start");
    assert!(leaf["runs"][0]["kinopio"]["attempts"].as_u64().unwrap() >= 1, "the manifest was fetched");
    assert_eq!(scenario(&report, "failover")["status"]["state"], "skipped", "failover is opt-in under --quick");
    assert_eq!(
        scenario(&report, "backbone-failover")["status"]["state"],
        "skipped",
        "backbone-failover is opt-in under --quick"
    );

    for id in ["p4-events", "p4-memory", "p4-traffic"] {
        assert_eq!(scenario(&report, id)["status"]["state"], "ok", "{id}: {}", scenario(&report, id)["status"]);
    }
    positive(&samples(scenario(&report, "p4-events"), "python3", "events_rate"), "Python 3.0.0 events");
    assert_eq!(samples(scenario(&report, "p4-memory"), "python3", "mb_per_hub@100").len(), 1, "Python 3.0.0 memory");
    positive(&samples(scenario(&report, "p4-traffic"), "python3", "sys_msgs_per_s"), "Python 3.0.0 sync traffic");

    let python = scenario(&report, "python");
    assert_eq!(python["status"]["state"], "ok", "{}", python["status"]);
    positive(&samples(python, "python", "throughput_16B"), "Python throughput");
    positive(&samples(python, "python", "p50"), "Python latency");

    let figures = report["figures"].as_array().unwrap();
    let figure = |id: &str| figures.iter().find(|f| f["id"] == id).unwrap_or_else(|| panic!("no figure {id}"));
    assert_eq!(figure("throughput_16B")["target"], serde_json::json!({"kind": "ratio_at_least", "value": 0.95}));
    assert!(figure("throughput_16B")["ratio"].as_f64().unwrap() > 0.0);
    assert!(figure("request_p50")["ratio"].as_f64().unwrap() > 0.0);
    assert!(figure("switch_lost")["met"].is_boolean());
    assert!(figure("leaf_start_overhead")["met"].is_boolean());

    let md = std::fs::read_to_string(out.path().join("bench.md")).unwrap();
    assert!(md.contains("| figure | kinopio | baseline | kinopio ÷ baseline | target | met? | notes |"), "{md}");
    assert!(md.contains("publish → subscribe 16 B"), "{md}");
}

#[tokio::test]
async fn rounds_alternate_and_pair_kinopio_with_raw() {
    let out = tempfile::tempdir().unwrap();
    let (stdout, _) = bench(&["--quick", "--rounds", "2", "--scenario", "latency"], out.path()).await;
    assert!(stdout.contains("request → serve p50"), "the table is printed: {stdout}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.path().join("bench.json")).unwrap()).unwrap();
    let scenarios = report["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 1, "only the chosen scenario runs");
    let latency = &scenarios[0];
    let order: Vec<&str> = latency["runs"].as_array().unwrap().iter().map(|r| r["client"].as_str().unwrap()).collect();
    assert_eq!(order, ["kinopio", "raw", "raw", "kinopio"], "A B, then B A");
    assert_eq!(samples(latency, "kinopio", "p50").len(), 2);
    let figure = report["figures"].as_array().unwrap().iter().find(|f| f["id"] == "request_p50").unwrap();
    assert_eq!(figure["ratio_per_round"]["n"], 2, "per-round ratios pair the rounds");
}

#[tokio::test]
async fn protocol_4_scenarios_measure_kinopio_and_python_3() {
    let out = tempfile::tempdir().unwrap();
    let _ = bench(&["--quick", "--scenario", "p4-latency,p4-late-join"], out.path()).await;
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.path().join("bench.json")).unwrap()).unwrap();
    let latency = scenario(&report, "p4-latency");
    assert_eq!(latency["status"]["state"], "ok", "{}", latency["status"]);
    for client in ["kinopio", "python3", "raw"] {
        positive(&samples(latency, client, "p50"), "p4 set → watch p50");
    }
    let join = scenario(&report, "p4-late-join");
    positive(&samples(join, "kinopio", "join_ms@1000"), "kinopio late join");
    positive(&samples(join, "kinopio", "join_from_python_ms@1000"), "kinopio joins Python");
    assert_eq!(samples(join, "python3", "have@1000"), [1000.0], "the Python joiner got everything");
    let figures = report["figures"].as_array().unwrap();
    assert!(figures.iter().any(|f| f["id"] == "p4_set_watch_p50_python" && f["ratio"].as_f64().is_some()));
}

#[tokio::test]
async fn protocol_4_scenarios_without_python_3_are_skipped_not_passed() {
    let out = tempfile::tempdir().unwrap();
    let (_, _) = bench(
        &["--quick", "--scenario", "p4-memory,p4-traffic", "--python-hub3", "/nonexistent/python", "--json"],
        out.path(),
    )
    .await;
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.path().join("bench.json")).unwrap()).unwrap();
    for id in ["p4-memory", "p4-traffic"] {
        let s = scenario(&report, id);
        assert_eq!(s["status"]["state"], "skipped", "{id}: {}", s["status"]);
        assert!(s["status"]["reason"].as_str().unwrap().contains("kinopio-hub 3.0.0"), "{}", s["status"]);
    }
}
