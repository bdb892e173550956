//! `kinopio doctor`: what works on this machine and what does not, each with what to do.
//!
//! Checks, in order: the nats-server binary a leaf would run (found where, verified), the
//! local CA (name constraints, expiry, trust stores kinopio added it to), the interfaces a
//! `leaf auto` would use for multicast, each `--server` (reachable, RTT, or why not), and a
//! namespace's local leaders (found over mDNS, manifest verified with the same trust a
//! client uses). Exit code 0 when nothing failed, 1 otherwise (warnings do not fail).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use kinopio_leaf::auto::InterfaceFilter;
use kinopio_leaf::auto::{CandidateInterface, select_interfaces};
use kinopio_leaf::binary::BinaryOptions;
use kinopio_leaf::runtime::LeafOptions;
use serde::Serialize;

use crate::output::{self, Failure};

/// Options of `kinopio doctor`.
#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// A NATS server to check (reachability, round-trip time); repeatable.
    #[arg(long = "server", short = 's', env = "KINOPIO_SERVER", value_delimiter = ',')]
    servers: Vec<String>,
    /// CA file (PEM) to trust for tls:// and wss:// servers.
    #[arg(long)]
    tls_ca_file: Option<PathBuf>,
    /// Look for this namespace's local leaders over mDNS and verify their manifests.
    #[arg(long, value_name = "NAME")]
    discovery_namespace: Option<String>,
    /// The namespace's secret: verify leaders against its namespace CA (as clients do).
    #[arg(long, env = "KINOPIO_NAMESPACE_SECRET", hide_env_values = true, requires = "discovery_namespace")]
    namespace_secret: Option<String>,
    /// CA file the leaders' manifests must chain to (open namespaces).
    #[arg(long)]
    discovery_ca_file: Option<PathBuf>,
    /// Browse mDNS only on this interface (repeatable; `lo` for a single-host setup).
    #[arg(long = "interface", value_name = "NAME")]
    interfaces: Vec<String>,
    /// Cache root of the leaf (nats-server binaries, CAs).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// The nats-server binary a leaf would be given.
    #[arg(long, value_name = "PATH")]
    binary_path: Option<PathBuf>,
    /// One JSON object with every check.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
struct Check {
    check: String,
    status: Verdict,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

impl Check {
    fn new(check: impl Into<String>, status: Verdict, detail: impl Into<String>) -> Check {
        Check { check: check.into(), status, detail: detail.into(), fix: None }
    }

    fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }
}

pub(crate) async fn run(args: DoctorArgs) -> Result<(), Failure> {
    let mut checks = vec![binary(&args).await, local_ca(&args), multicast()];
    for server in &args.servers {
        checks.push(server_check(&args, server).await);
    }
    if let Some(namespace) = &args.discovery_namespace {
        checks.extend(leaders(&args, namespace).await);
    }
    let failed = checks.iter().filter(|c| c.status == Verdict::Fail).count();
    if args.json {
        output::line(&serde_json::json!({ "checks": checks, "failed": failed }));
    } else {
        for c in &checks {
            let mark = match c.status {
                Verdict::Ok => "ok  ",
                Verdict::Warn => "warn",
                Verdict::Fail => "FAIL",
            };
            output::text(&format!("{mark} {}: {}", c.check, c.detail));
            if let Some(fix) = &c.fix {
                output::text(&format!("     → {fix}"));
            }
        }
    }
    if failed == 0 {
        Ok(())
    } else {
        // The checks already said what failed; the exit code tells scripts.
        Err(Failure::new(1, "doctor", format!("{failed} check(s) failed"), args.json))
    }
}

fn leaf_options(args: &DoctorArgs) -> LeafOptions {
    let mut options = LeafOptions::new();
    if let Some(dir) = &args.cache_dir {
        options = options.cache_dir(dir);
    }
    options
}

async fn binary(args: &DoctorArgs) -> Check {
    let mut options = BinaryOptions::from_env().download(false).progress(false);
    if let Some(dir) = &args.cache_dir {
        options = options.cache_dir(dir.join("nats-server"));
    }
    if let Some(path) = &args.binary_path {
        options = options.binary_path(path);
    }
    match kinopio_leaf::binary::resolve(&options).await {
        Ok(found) => Check::new(
            "nats-server",
            Verdict::Ok,
            format!("{} v{} ({:?}, verified)", found.path.display(), found.version, found.source),
        ),
        Err(e) => Check::new("nats-server", Verdict::Warn, format!("none usable here yet: {e}")).fix(
            "`kinopio leaf start` downloads and verifies the pinned release on first use; offline, pass --binary-path or set KINOPIO_NATS_SERVER",
        ),
    }
}

fn local_ca(args: &DoctorArgs) -> Check {
    let dir = leaf_options(args).ca_dir();
    let cert = dir.join(kinopio_leaf::tls::CA_CERT_FILE);
    if !cert.is_file() {
        return Check::new(
            "local CA",
            Verdict::Ok,
            format!("none yet ({} is created on the first leaf start)", cert.display()),
        );
    }
    let Ok((constrained, not_after)) = kinopio_leaf::tls::inspect_ca_file(&cert) else {
        return Check::new("local CA", Verdict::Warn, format!("{} is unreadable", cert.display()))
            .fix("it is replaced on the next leaf start");
    };
    let stores = kinopio_leaf::tls::installed_stores(&dir);
    let trust = if stores.is_empty() {
        "in no trust store (opt-in: --install-ca-trust)".to_owned()
    } else {
        format!("kinopio added it to {} trust store(s) (`kinopio leaf untrust` removes it)", stores.len())
    };
    if !constrained {
        return Check::new("local CA", Verdict::Warn, format!("{} has no name constraints; {trust}", cert.display()))
            .fix("start a leaf once: it replaces the CA with a name-constrained one (then run `kinopio leaf untrust` for the old one)");
    }
    Check::new(
        "local CA",
        Verdict::Ok,
        format!("{}, name-constrained, valid until {not_after}; {trust}", cert.display()),
    )
}

fn multicast() -> Check {
    let joined = select_interfaces(&CandidateInterface::list(), &InterfaceFilter::automatic());
    let names: Vec<String> = joined.iter().map(ToString::to_string).collect();
    let only_loopback = joined.iter().all(|j| j.ip.is_loopback());
    if joined.is_empty() || only_loopback {
        Check::new("multicast", Verdict::Warn, format!("only loopback would be used ({})", names.join(", ")))
            .fix("other devices will not see this one: connect to a LAN, or pass --interface NAME to leaf auto")
    } else {
        Check::new("multicast", Verdict::Ok, format!("leaf auto would join {}", names.join(", ")))
    }
}

async fn server_check(args: &DoctorArgs, server: &str) -> Check {
    let name = format!("server {server}");
    let mut options = match kinopio::HubOptions::new().servers([server]) {
        Ok(options) => options,
        Err(e) => {
            return Check::new(name, Verdict::Fail, e.to_string())
                .fix("give it as nats://host:port, tls://, ws:// or wss://");
        }
    };
    if let Some(ca) = &args.tls_ca_file {
        options = options.tls_ca_file(ca);
    }
    let options = options.probe_timeout(Duration::from_secs(3));
    let Ok(url) = server.parse::<kinopio::ServerUrl>() else {
        return Check::new(name, Verdict::Fail, "not a server URL");
    };
    let result = kinopio::Hub::probe(&options, &url).await;
    match (result.rtt, result.error) {
        (Some(rtt), _) => {
            Check::new(name, Verdict::Ok, format!("reachable, round trip {:.1} ms", rtt.as_secs_f64() * 1e3))
        }
        (None, error) => {
            let error = error.unwrap_or_else(|| "no answer".into());
            let fix = crate::tools::connect_hint(&error);
            let check = Check::new(name, Verdict::Fail, error);
            match fix {
                Some(fix) => check.fix(fix),
                None => check,
            }
        }
    }
}

async fn leaders(args: &DoctorArgs, namespace: &str) -> Vec<Check> {
    let options = kinopio::DiscoveryOptions {
        namespace: Some(namespace.to_owned()),
        namespace_secret: args.namespace_secret.clone().map(kinopio::trust::Secret::new),
        ca_file: args.discovery_ca_file.clone(),
        interfaces: args.interfaces.clone(),
        ..Default::default()
    };
    let found = kinopio::discovery::check_leaders(&options).await;
    let name = format!("namespace {namespace:?}");
    if found.is_empty() {
        return vec![Check::new(name, Verdict::Warn, "no leader answered over mDNS").fix(
            "is a `kinopio leaf auto --discovery-namespace` running on this LAN? mDNS needs multicast between the devices",
        )];
    }
    found
        .into_iter()
        .map(|leader| match (&leader.node_id, &leader.problem) {
            (Some(node), _) if leader.usable => Check::new(
                name.clone(),
                Verdict::Ok,
                format!("leader {node} at {}, manifest verified ({})", leader.wss_url.clone().unwrap_or_default(), leader.url),
            ),
            (Some(node), _) => {
                Check::new(name.clone(), Verdict::Warn, format!("leader {node} is not ready (bridge not up) at {}", leader.url))
            }
            (None, Some(problem)) if leader.untrusted => {
                Check::new(name.clone(), Verdict::Fail, format!("{} does not verify: {problem}", leader.url)).fix(
                    "a stranger, or a leader of another secret/CA: give the namespace secret (secured) or its CA with --discovery-ca-file (open)",
                )
            }
            (_, problem) => Check::new(
                name.clone(),
                Verdict::Warn,
                format!("{}: {}", leader.url, problem.clone().unwrap_or_default()),
            ),
        })
        .collect()
}
