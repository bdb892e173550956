//! `kinopio`: run a local leaf (`leaf start`, `leaf auto`) and talk to variables from the
//! shell (`pub`, `sub`, `req`, `serve`), list a protocol-4 namespace's instances (`peers`).

// The doc comments of the argument structs are `--help` text (`https://<leaf>/`,
// `host[:port]`), not rustdoc.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

mod doctor;
mod leaf;
mod leaf_auto;
mod leaf_common;
mod leaf_status;
mod listen;
mod live;
mod output;
mod p4_var;
mod peers;
mod signals;
mod tools;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Remote variables and functions over NATS.
///
/// Exit codes: 0 success, 1 error (including data that did not go out or come back as
/// asked), 2 usage error (including a value or name protocol 4 refuses), 3 not connected,
/// 4 timed out, 5 no responders (or no live receivers), 6 the service replied with an error,
/// 7 not found (`var get` of a variable that does not exist), 130 interrupted (Ctrl-C).
#[derive(Debug, Parser)]
#[command(name = "kinopio", version, propagate_version = true)]
struct Cli {
    /// Log filter for diagnostics on stderr (e.g. `info`, `kinopio=debug`); also
    /// `KINOPIO_LOG`.
    #[arg(long, global = true, env = "KINOPIO_LOG", default_value = "warn")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a local nats-server leaf node.
    Leaf {
        #[command(subcommand)]
        command: Box<leaf::LeafCommand>,
    },
    /// Publish a value to a subject; exits 0 once the server has it.
    ///
    /// Examples:
    ///   kinopio pub chat.messages '{"text": "hi"}'
    ///   kinopio pub sensors.temp -5.5 --count 3
    ///   kinopio pub files.logo --file logo.png -H 'Content-Type: image/png'
    ///   echo hello | kinopio pub chat.messages --file -
    ///   kinopio pub sensor.temp '{"v": 21.5}' --namespace workshop -H 'X-Trace: op-1'
    #[command(verbatim_doc_comment)]
    Pub(tools::PubArgs),
    /// Print the messages published to a subject (wildcards allowed).
    ///
    /// Examples:
    ///   kinopio sub chat.messages
    ///   kinopio sub 'sensors.*.temp' --count 10 --timeout-ms 5000 --json
    ///   kinopio sub '>' --raw
    ///   kinopio sub 'sensor.>' --namespace workshop --json
    #[command(verbatim_doc_comment)]
    Sub(tools::SubArgs),
    /// Send a request and print the reply.
    ///
    /// Examples:
    ///   kinopio req math.double 21
    ///   kinopio req math.double 21 --json --timeout-ms 500
    ///   kinopio req lamp '{"on": true}' --namespace workshop --many --max-replies 4
    #[command(verbatim_doc_comment)]
    Req(tools::ReqArgs),
    /// Answer requests on a subject.
    ///
    /// Examples:
    ///   kinopio serve math.echo --echo
    ///   kinopio serve status.ping --reply '"pong"' --count 1
    ///   kinopio serve math.echo --echo --namespace workshop --queue workers
    #[command(verbatim_doc_comment)]
    Serve(tools::ServeArgs),
    /// Shared variables of a protocol-4 namespace (kinopio-hub 3.0.0): set, get, rm, ls,
    /// watch.
    ///
    /// Examples:
    ///   kinopio var set workshop battery 80
    ///   kinopio var get workshop battery
    ///   kinopio var ls workshop --json
    ///   kinopio var watch workshop battery --count 3
    #[command(verbatim_doc_comment)]
    Var {
        #[command(subcommand)]
        command: p4_var::VarCommand,
    },
    /// List the instances of a protocol-4 namespace (kinopio and kinopio-hub 3.x peers) from
    /// their health reports: id, SDK, version, connection, health, online.
    ///
    /// Exit code 4 when no instance reported within --wait-ms.
    ///
    /// Examples:
    ///   kinopio peers workshop
    ///   kinopio peers workshop --json --wait-ms 2000
    ///   kinopio peers workshop --watch
    #[command(verbatim_doc_comment)]
    Peers(peers::PeersArgs),
    /// Protocol-4 live channels (kinopio-hub 3.0.0): send a leased value, or receive them.
    Live {
        #[command(subcommand)]
        command: live::LiveCommand,
    },
    /// Check this machine: nats-server binary, local CA and trust, multicast interfaces,
    /// servers (reachability, RTT), a namespace's leaders (manifest verification).
    ///
    /// Examples:
    ///   kinopio doctor
    ///   kinopio doctor --server nats://hub.example:4222 --discovery-namespace studio --json
    #[command(verbatim_doc_comment)]
    Doctor(doctor::DoctorArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(message) = init_tracing(&cli.log) {
        eprintln!("kinopio: {message}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kinopio: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Leaf { command } => leaf::run(*command).await,
            Command::Pub(args) => tools::publish(args).await,
            Command::Sub(args) => tools::subscribe(args).await,
            Command::Req(args) => tools::request(args).await,
            Command::Serve(args) => tools::serve(args).await,
            Command::Doctor(args) => doctor::run(args).await,
            Command::Peers(args) => peers::run(args).await,
            Command::Var { command } => p4_var::run(command).await,
            Command::Live { command } => live::run(command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

fn init_tracing(filter: &str) -> Result<(), String> {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| format!("--log {filter:?} is not a valid filter ({e}); try `info` or `kinopio=debug`"))?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
    Ok(())
}
