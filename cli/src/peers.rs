//! `kinopio peers <namespace>`: the instances of a protocol-4 namespace (kinopio, Python and
//! JavaScript kinopio-hub 3.x), from their health reports.
//!
//! The command joins the namespace as an instance of its own (it reports its health like any
//! instance, so peers list it until 3 report intervals after it exits), listens for
//! `--wait-ms`, then prints one line per other instance. With `--watch` it prints every change
//! as it happens instead.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use clap::Args;
use futures::StreamExt;
use kinopio::p4::{Instance, InstanceEvent};
use serde_json::value::RawValue;

use crate::output::{self, Failure, Fields};
use crate::tools::ConnectArgs;

#[derive(Debug, Args)]
pub(crate) struct PeersArgs {
    /// The namespace, e.g. `workshop` (as given to KinopioHub("workshop")).
    namespace: String,
    /// How long to listen for health reports before printing the list (instances report
    /// every 5 s by default, and on connect).
    #[arg(long, default_value_t = 6_000)]
    wait_ms: u64,
    /// Print every change as it happens (joined, changed, offline) until Ctrl-C, --count or
    /// --timeout-ms.
    #[arg(long)]
    watch: bool,
    /// With --watch: exit after this many changes.
    #[arg(long, requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// With --watch: stop after this long; with --count, exit 4 if fewer changes came.
    #[arg(long, requires = "watch")]
    timeout_ms: Option<u64>,
    /// Also list this command's own instance.
    #[arg(long)]
    include_self: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

fn or_dash(value: Option<&str>) -> &str {
    value.unwrap_or("-")
}

/// The fields a person sees; a change of any of them is a change worth printing.
fn summary(i: &Instance) -> String {
    format!(
        "{:<36} {:<6} {:<8} {:<10} {:<7} {}{}",
        i.instance_id,
        or_dash(i.sdk.as_deref()),
        or_dash(i.version.as_deref()),
        i.connection.map_or("-", |c| c.as_str()),
        i.health.map_or("-", |h| h.as_str()),
        i.online,
        if i.is_self { " (this command)" } else { "" },
    )
}

fn fields(i: &Instance, event: Option<&str>) -> Fields {
    let mut line = Fields::new();
    if let Some(event) = event {
        line.put("event", event);
    }
    line.put("instanceId", &i.instance_id);
    line.put("self", i.is_self);
    line.put("sdk", &i.sdk);
    line.put("version", &i.version);
    line.put("runtime", &i.runtime);
    line.put("connection", i.connection.map(|c| c.as_str()));
    line.put("health", i.health.map(|h| h.as_str()));
    line.put("server", &i.server);
    line.put("online", i.online.as_str());
    line.put("fresh", i.fresh);
    line.put("lastSeen", i.last_seen.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64));
    line.put("intervalMs", i.interval.as_millis() as u64);
    // The status exactly as stored, in canonical JSON.
    if let Ok(bytes) = kinopio::wire::p4::canonical::encode(&i.status)
        && let Ok(text) = String::from_utf8(bytes)
        && let Ok(raw) = RawValue::from_string(text)
    {
        line.put_raw("status", raw);
    }
    line
}

pub(crate) async fn run(args: PeersArgs) -> Result<(), Failure> {
    let json = args.connect.json();
    if let Err(e) = kinopio::wire::p4::names::Name::new(args.namespace.as_str()) {
        return Err(Failure::new(2, "invalid-namespace", e.to_string(), json));
    }
    let session = args.connect.connect().await?;
    let ns = match session.hub.namespace(&args.namespace) {
        Ok(ns) => ns,
        Err(e) => {
            session.close().await;
            return Err(Failure::new(2, "invalid-namespace", e.to_string(), json));
        }
    };
    let result = if args.watch { watch(&args, &ns).await } else { list(&args, &ns).await };
    drop(ns);
    session.close().await;
    result
}

async fn list(args: &PeersArgs, ns: &kinopio::p4::Namespace) -> Result<(), Failure> {
    let json = args.connect.json();
    if !json {
        eprintln!("listening for health reports in {:?} for {} ms", args.namespace, args.wait_ms);
    }
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(args.wait_ms)) => {}
        () = crate::signals::shutdown() => {
            return Err(Failure::new(130, "interrupted", "interrupted while listening for health reports", json));
        }
    }
    let instances: Vec<Instance> = ns.instances().into_iter().filter(|i| args.include_self || !i.is_self).collect();
    if instances.is_empty() {
        return Err(Failure::new(
            4,
            "no-instances",
            format!(
                "no instance of namespace {:?} reported within {} ms (is a hub of that namespace connected to this \
                 server? raise --wait-ms if instances report less often)",
                args.namespace, args.wait_ms
            ),
            json,
        ));
    }
    if !json {
        output::text(&format!(
            "{:<36} {:<6} {:<8} {:<10} {:<7} {}",
            "INSTANCE", "SDK", "VERSION", "CONNECTION", "HEALTH", "ONLINE"
        ));
    }
    for instance in &instances {
        if json {
            fields(instance, None).print();
        } else {
            output::text(&summary(instance));
        }
    }
    Ok(())
}

async fn watch(args: &PeersArgs, ns: &kinopio::p4::Namespace) -> Result<(), Failure> {
    let json = args.connect.json();
    let mut events = ns.watch_instances();
    if !json {
        eprintln!("watching the instances of {:?} (Ctrl-C to stop)", args.namespace);
    }
    let shutdown = crate::signals::shutdown();
    tokio::pin!(shutdown);
    let limit = tokio::time::sleep(args.timeout_ms.map_or(Duration::from_secs(86_400 * 365), Duration::from_millis));
    tokio::pin!(limit);
    let mut shown: HashMap<String, String> = HashMap::new();
    let mut printed = 0u64;
    let mut timed_out = false;
    loop {
        let event = tokio::select! {
            e = events.next() => e,
            () = &mut shutdown => None,
            () = &mut limit => { timed_out = true; None }
        };
        let Some(event) = event else { break };
        let instance = event.instance();
        if instance.is_self && !args.include_self {
            continue;
        }
        let line = summary(instance);
        let name = match &event {
            InstanceEvent::Joined(_) => "joined",
            InstanceEvent::WentOffline(_) => "offline",
            // A report that changes nothing a person sees is not printed.
            _ if shown.get(&instance.instance_id) == Some(&line) => continue,
            _ => "changed",
        };
        shown.insert(instance.instance_id.clone(), line.clone());
        if json {
            fields(instance, Some(name)).print();
        } else {
            output::text(&format!("{name:<8} {line}"));
        }
        printed += 1;
        if args.count.is_some_and(|n| printed >= n) {
            break;
        }
    }
    match args.count {
        Some(n) if timed_out && printed < n => Err(Failure::new(
            4,
            "timed-out",
            format!("saw {printed} of {n} changes in {} ms", args.timeout_ms.unwrap_or_default()),
            json,
        )),
        _ => Ok(()),
    }
}
