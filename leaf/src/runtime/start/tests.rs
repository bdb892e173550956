//! The start stages against a real nats-server: a stage that fails after nats-server was
//! spawned, or a start that is cancelled, leaves no nats-server process behind.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use kinopio_test_support::nats_server_binary;

use super::*;
use crate::tls::TrustStoreConfig;

const WAIT: Duration = Duration::from_secs(20);

fn options(cache: &Path, runtime: &Path) -> LeafOptions {
    LeafOptions::new()
        .binary_path(nats_server_binary())
        .cache_dir(cache)
        .runtime_dir(runtime)
        .lan_bind_address("127.0.0.1".parse().unwrap())
        .trust_store(TrustStoreConfig::none().with_env_skip(|_| Some("1".to_owned())))
        .timings(LeafTimings { stop_grace: Duration::from_secs(5), ..LeafTimings::default() })
}

/// The pids of the processes whose command line names `config_file` (Linux `/proc`).
fn processes_running(config_file: &Path) -> Vec<u32> {
    let needle = config_file.as_os_str().as_encoded_bytes();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if cmdline.windows(needle.len()).any(|window| window == needle) {
            pids.push(pid);
        }
    }
    pids
}

async fn wait_until_gone(config_file: &Path) {
    let deadline = Instant::now() + WAIT;
    while !processes_running(config_file).is_empty() {
        assert!(Instant::now() < deadline, "nats-server is still running: {:?}", processes_running(config_file));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_stage_failing_after_the_spawn_leaves_no_nats_server_behind() {
    let (cache, runtime) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let options = options(cache.path(), runtime.path());
    let config_file = runtime.path().join(CONFIG_FILE);
    let mut plan = Plan::new(&options).unwrap();
    let (listener, discovery_addr) = bind_discovery(&plan, &options).unwrap();
    let provisioned = provision(&options, &plan).await.unwrap();
    let launch = write_server_config(&options, &plan, &provisioned, discovery_addr).unwrap();
    // Stage 6 builds the advertised URLs once nats-server is ready; a host that makes them
    // unparsable fails it there (stage 1 refuses such a host, so it is changed afterwards).
    plan.hosts.advertised = "not a host".to_owned();
    let server = ServerGuard::spawn(&launch.spec, options.timings.stop_grace).await.unwrap();
    let pid = server.process.as_ref().unwrap().pid();
    assert_eq!(processes_running(&config_file), vec![pid]);

    let result = tokio::time::timeout(
        WAIT,
        server.run(async |process: &mut ServerProcess| {
            serve(process, &options, &plan, &provisioned, &launch, listener, discovery_addr).await
        }),
    )
    .await
    .unwrap();
    let Err(err) = result else { panic!("stage 6 succeeded with an unparsable advertised host") };

    assert!(matches!(err, LeafError::InvalidOption { option: "advertised host", .. }), "{err}");
    // `run` stopped nats-server before returning the error: nothing to wait for.
    assert_eq!(processes_running(&config_file), Vec::<u32>::new());
}

#[tokio::test]
async fn dropping_the_guard_stops_nats_server() {
    let (cache, runtime) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let options = options(cache.path(), runtime.path());
    let plan = Plan::new(&options).unwrap();
    let provisioned = provision(&options, &plan).await.unwrap();
    let (_listener, discovery_addr) = bind_discovery(&plan, &options).unwrap();
    let launch = write_server_config(&options, &plan, &provisioned, discovery_addr).unwrap();
    let guard = ServerGuard::spawn(&launch.spec, Duration::from_secs(5)).await.unwrap();
    let pid = guard.process.as_ref().unwrap().pid();
    assert_eq!(processes_running(&launch.spec.config_file), vec![pid]);

    drop(guard); // as when `LeafNode::start` is cancelled

    wait_until_gone(&launch.spec.config_file).await;
}
