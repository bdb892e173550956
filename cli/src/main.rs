//! `kinopio`: run a local leaf (`leaf start`, `leaf auto`) and talk to variables from the
//! shell (`pub`, `sub`, `req`, `serve`).

mod bench;
mod leaf;
mod leaf_auto;
mod output;
mod signals;
mod tools;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Remote variables and functions over NATS.
///
/// Exit codes: 0 success, 1 error, 2 usage error, 3 not connected, 4 request timed out,
/// 5 no responders, 6 the service replied with an error.
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
    /// Publish one value to a subject.
    Pub(tools::PubArgs),
    /// Print values published to a subject.
    Sub(tools::SubArgs),
    /// Send a request and print the reply.
    Req(tools::ReqArgs),
    /// Answer requests on a subject.
    Serve(tools::ServeArgs),
    /// Benchmark kinopio against raw async-nats and the Python reference; write a report.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log);
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
            Command::Bench(args) => bench::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

fn init_tracing(filter: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}
