//! `kinopio live send | recv`: protocol-4 live channels (kinopio-hub 3.0.0's `hub.live(name)`)
//! from the shell, over the library's [`kinopio::p4::LiveChannel`].
//!
//! `send` says exactly what is known when it succeeds: "flushed" (the server has the data;
//! whether a receiver accepted it is not known — the 3.0.0 wire has no answer), or with
//! `--confirm` "accepted" (a kinopio receiver confirmed; Python receivers never confirm).

use std::time::Duration;

use clap::{Args, Subcommand};
use kinopio::p4::{Delivery, ErrorCode, Json, LiveOptions, LiveSendOptions, Namespace};
use kinopio::wire::p4::canonical;
use serde_json::value::RawValue;

use crate::output::{self, Failure, Fields};
use crate::tools::{ConnectArgs, Session};

#[derive(Debug, Subcommand)]
pub(crate) enum LiveCommand {
    /// Send one value on a live channel; exits 0 once the server has it ("flushed").
    ///
    /// Examples:
    ///   kinopio live send workshop robot/cmd '{"step": 1}'
    ///   kinopio live send workshop robot/cmd '"stop"' --confirm --timeout-ms 500 --json
    #[command(verbatim_doc_comment)]
    Send(SendArgs),
    /// Receive the values a live channel accepts (as its receiver) and print them.
    ///
    /// Examples:
    ///   kinopio live recv workshop robot/cmd
    ///   kinopio live recv workshop robot/cmd --count 1 --timeout-ms 5000 --json
    #[command(verbatim_doc_comment)]
    Recv(RecvArgs),
}

pub(crate) async fn run(command: LiveCommand) -> Result<(), Failure> {
    match command {
        LiveCommand::Send(args) => send(args).await,
        LiveCommand::Recv(args) => recv(args).await,
    }
}

#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// Namespace (protocol 4), e.g. `workshop`.
    namespace: String,
    /// Live channel name, e.g. `robot/cmd`.
    channel: String,
    /// The value, as JSON: `42`, `'{"step": 1}'`, `'"text"'`, `null`.
    #[arg(allow_negative_numbers = true)]
    value: String,
    /// Give up after this long (lease, data and confirmation together).
    #[arg(long, default_value_t = 3_000, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
    /// Ask the receiver to confirm it accepted the value (kinopio receivers only; a Python
    /// kinopio-hub receiver never confirms, so the command then times out).
    #[arg(long)]
    confirm: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RecvArgs {
    /// Namespace (protocol 4), e.g. `workshop`.
    namespace: String,
    /// Live channel name, e.g. `robot/cmd`.
    channel: String,
    /// Exit after this many values.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Stop after this long; with --count, exit 4 if fewer values arrived.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// How long a lease granted to a sender lasts (1–60000).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    max_age_ms: u64,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// A live-channel error in the CLI's scheme ([`Failure::p4`]), with what to do for the
/// live-specific ones.
fn failure(e: &kinopio::p4::Error, json: bool) -> Failure {
    let mut failure = Failure::p4(e, json);
    match e.kind() {
        ErrorCode::NoReceivers => {
            failure.message.push_str(" (nobody receives on this channel: start `kinopio live recv`)")
        }
        ErrorCode::Expired => failure.message.push_str(" (try again, or give the receiver a longer --max-age-ms)"),
        _ => {}
    }
    failure
}

fn open(session: &Session, namespace: &str, json: bool) -> Result<Namespace, Failure> {
    session.hub.namespace(namespace).map_err(|e| failure(&e, json))
}

/// A value as raw JSON text (canonical form).
fn raw_json(value: &Json) -> Option<Box<RawValue>> {
    let bytes = canonical::encode(value).ok()?;
    RawValue::from_string(String::from_utf8(bytes).ok()?).ok()
}

/// Checks the names before connecting: a bad name is a usage error, not a network one.
fn check_names(namespace: &str, channel: &str, json: bool) -> Result<(), Failure> {
    for name in [namespace, channel] {
        kinopio::wire::p4::names::Name::new(name).map_err(|e| Failure::p4(&e.into(), json))?;
    }
    Ok(())
}

async fn send(args: SendArgs) -> Result<(), Failure> {
    let json = args.connect.json();
    check_names(&args.namespace, &args.channel, json)?;
    let value = canonical::decode(args.value.as_bytes())
        .map_err(|e| {
            let hint = "the value must be JSON, e.g. 42, '\"text\"', '{\"a\": 1}'";
            Failure::new(2, "INVALID_VALUE", format!("{:?}: {e} ({hint})", args.value), json)
        })
        .and_then(|v| canonical::value_of(&v).map_err(|e| Failure::p4(&e.into(), json)))?;
    let session = args.connect.connect().await?;
    let result = async {
        let ch = open(&session, &args.namespace, json)?.live(&args.channel).map_err(|e| failure(&e, json))?;
        let options = LiveSendOptions::new().timeout(Duration::from_millis(args.timeout_ms)).confirm(args.confirm);
        let sent = async { ch.send_json_with(&value, options).await.map_err(|e| failure(&e, json)) };
        crate::output::interruptible(sent, "while sending", json).await
    }
    .await;
    if let Ok(delivery) = &result {
        let (word, meaning) = match delivery {
            Delivery::Accepted => ("accepted", "a receiver confirmed it accepted the value"),
            _ => ("flushed", "the server has it; whether a receiver accepted it is not known"),
        };
        if json {
            let mut line = Fields::new();
            line.put("namespace", &args.namespace);
            line.put("channel", &args.channel);
            if let Some(raw) = raw_json(&value) {
                line.put_raw("value", raw);
            }
            line.put("delivery", word);
            line.print();
        } else {
            eprintln!("{word}: {meaning} (live channel {} in {})", args.channel, args.namespace);
        }
    }
    session.close().await;
    result.map(|_| ())
}

async fn recv(args: RecvArgs) -> Result<(), Failure> {
    let json = args.connect.json();
    check_names(&args.namespace, &args.channel, json)?;
    let session = args.connect.connect().await?;
    let subscribed = async {
        let ch = open(&session, &args.namespace, json)?.live(&args.channel).map_err(|e| failure(&e, json))?;
        let receiver = ch
            .subscribe(LiveOptions::new().max_age(Duration::from_millis(args.max_age_ms)))
            .await
            .map_err(|e| failure(&e, json))?;
        Ok::<_, Failure>((ch, receiver))
    }
    .await;
    let (ch, mut receiver) = match subscribed {
        Ok(pair) => pair,
        Err(failure) => {
            session.close().await;
            return Err(failure);
        }
    };
    if json {
        let mut line = Fields::new();
        line.put("event", "subscribed");
        line.put("namespace", &args.namespace);
        line.put("channel", &args.channel);
        line.print();
    } else {
        eprintln!("receiving on live channel {} in {}", args.channel, args.namespace);
    }
    let listened = crate::listen::listen(&mut receiver, args.count, args.timeout_ms, |value| {
        let text = canonical::encode(value.value()).map(|b| String::from_utf8_lossy(&b).into_owned());
        if json {
            let mut line = Fields::new();
            if let Some(raw) = raw_json(value.value()) {
                line.put_raw("value", raw);
            }
            line.put("seq", value.context().seq());
            line.put("lease", value.context().lease());
            line.put("session", value.context().session());
            line.print();
        } else {
            output::text(&text.unwrap_or_default());
        }
    })
    .await;
    let stats = ch.stats();
    drop(receiver);
    if !json && stats.refused + stats.malformed + stats.overflowed > 0 {
        eprintln!(
            "dropped: {} refused by the lease rules, {} malformed, {} not read in time",
            stats.refused, stats.malformed, stats.overflowed
        );
    }
    session.close().await;
    listened.check(args.count, args.timeout_ms, "values", json)
}
