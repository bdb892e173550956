//! `kinopio var set | get | rm | ls | watch`: protocol-4 shared variables of a namespace
//! (interoperable with kinopio-hub 3.0.0), thin shells over `kinopio::p4`.
//!
//! Protocol 4 keeps state in the running instances of a namespace, not in the server: a value
//! lives while at least one instance (a program using kinopio or kinopio-hub 3.0.0) holds it.
//! Each command is one short-lived instance: it syncs from the others first (so a write's
//! version beats what they hold), then acts.
//!
//! Values are JSON, parsed with protocol 4's bounded decoder and checked by its value rules
//! (integers within ±(2^53−1), no NaN, ≤ 64 KiB, depth ≤ 32): a value the wire cannot carry
//! exactly is refused (exit 2), never changed. Values are printed in protocol 4's canonical
//! JSON (object keys in a fixed order, `1.0` as `1`).

use std::time::Duration;

use clap::{Args, Subcommand};
use futures::StreamExt;
use kinopio::p4::{Json, Namespace, Version};
use kinopio::wire::p4::canonical;

use crate::output::{Failure, Fields};
use crate::tools::{ConnectArgs, Session};

#[derive(Debug, Subcommand)]
pub(crate) enum VarCommand {
    /// Set a variable; exits 0 once the server has the write. The value lives while an
    /// instance of the namespace runs (protocol 4 keeps state in its instances).
    ///
    /// Examples:
    ///   kinopio var set workshop battery 80
    ///   kinopio var set workshop config '{"mode": "auto", "limits": [1, 2]}'
    #[command(verbatim_doc_comment)]
    Set(SetArgs),
    /// Print a variable's value, once the namespace has synced; exits 7 when it does not
    /// exist (never set, or deleted).
    ///
    /// Examples:
    ///   kinopio var get workshop battery
    ///   kinopio var get workshop battery --json
    #[command(verbatim_doc_comment)]
    Get(NameArgs),
    /// Delete a variable (a tombstone that wins over older values everywhere); exits 0 once
    /// the server has it.
    Rm(NameArgs),
    /// List every live variable of a namespace, one per line, once it has synced.
    Ls(NamespaceArgs),
    /// Print a variable's value now and on every change.
    ///
    /// Examples:
    ///   kinopio var watch workshop battery
    ///   kinopio var watch workshop battery --count 3 --json
    #[command(verbatim_doc_comment)]
    Watch(WatchArgs),
}

#[derive(Debug, Args)]
pub(crate) struct NamespaceArgs {
    /// The protocol-4 namespace (1–128 UTF-8 bytes).
    namespace: String,
    /// How long to wait for the namespace to sync, or for the server to confirm a write.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub(crate) struct NameArgs {
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// The variable's name (1–128 UTF-8 bytes; dots are part of the name).
    #[arg(value_name = "NAME")]
    variable: String,
}

#[derive(Debug, Args)]
pub(crate) struct SetArgs {
    #[command(flatten)]
    target: NameArgs,
    /// The value, as JSON: `80`, `-5.5`, `'"text"'`, `'{"a": [1, 2]}'`, `null`.
    #[arg(allow_negative_numbers = true)]
    value: String,
}

#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    #[command(flatten)]
    target: NameArgs,
    /// Exit after this many values (the current one counts).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
}

pub(crate) async fn run(command: VarCommand) -> Result<(), Failure> {
    match command {
        VarCommand::Set(args) => set(args).await,
        VarCommand::Get(args) => get(args).await,
        VarCommand::Rm(args) => remove(args).await,
        VarCommand::Ls(args) => list(args).await,
        VarCommand::Watch(args) => watch(args).await,
    }
}

impl NamespaceArgs {
    fn json(&self) -> bool {
        self.connect.json()
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Connects and opens the namespace.
    async fn open(&self) -> Result<(Session, Namespace), Failure> {
        let json = self.json();
        // Check the name before connecting: a bad name is a usage error, not a network one.
        kinopio::wire::p4::names::Name::new(self.namespace.as_str()).map_err(|e| Failure::p4(&e.into(), json))?;
        let session = self.connect.connect().await?;
        match session.hub.namespace(&self.namespace) {
            Ok(ns) => Ok((session, ns)),
            Err(e) => {
                session.close().await;
                Err(Failure::p4(&e, json))
            }
        }
    }

    /// Connects, opens the namespace and waits until it has synced.
    async fn open_synced(&self) -> Result<(Session, Namespace), Failure> {
        let (session, ns) = self.open().await?;
        let sync = async { ns.wait_synced(self.timeout()).await.map_err(|e| Failure::p4(&e, self.json())) };
        let synced = crate::output::interruptible(sync, "while syncing", self.json()).await;
        match synced {
            Ok(_) => Ok((session, ns)),
            Err(failure) => {
                session.close().await;
                Err(failure)
            }
        }
    }
}

/// Parses a value argument as protocol-4 JSON, refusing what the wire cannot carry exactly.
fn parse_value(text: &str, json: bool) -> Result<serde_json::Value, Failure> {
    let parsed = canonical::decode(text.as_bytes()).map_err(|e| {
        Failure::new(2, "INVALID_VALUE", format!("{text:?} is not JSON ({e}); quote text as JSON, e.g. '\"on\"'"), json)
    })?;
    let value = canonical::value_of(&parsed).map_err(|e| Failure::p4(&e.into(), json))?;
    Ok(to_serde(&value))
}

fn to_serde(value: &Json) -> serde_json::Value {
    serde_json::Value::from(value)
}

fn canonical_text(value: &Json) -> String {
    String::from_utf8_lossy(&canonical::encode(value).unwrap_or_else(|_| b"null".to_vec())).into_owned()
}

fn version_json(version: &Version) -> serde_json::Value {
    serde_json::json!({"counter": version.counter.as_str(), "writer": version.writer.as_str()})
}

/// `var set`: the write, then the server's confirmation.
async fn set(args: SetArgs) -> Result<(), Failure> {
    let ns_args = &args.target.namespace;
    let json = ns_args.json();
    let value = parse_value(&args.value, json)?;
    // Synced first: the write's version must beat what the namespace holds.
    let (session, ns) = ns_args.open_synced().await?;
    let result = async {
        let var = ns.var::<serde_json::Value>(&args.target.variable).map_err(|e| Failure::p4(&e, json))?;
        let version = var.set(&value).map_err(|e| Failure::p4(&e, json))?;
        let confirmed = async { var.confirmed(ns_args.timeout()).await.map_err(|e| Failure::p4(&e, json)) };
        crate::output::interruptible(confirmed, "before the server confirmed the write", json).await?;
        if json {
            let mut line = Fields::new();
            line.put("set", &args.target.variable);
            line.put("namespace", &ns_args.namespace);
            line.put("version", version_json(&version));
            line.print();
        } else {
            eprintln!(
                "set {} in {} (version {} by {})",
                args.target.variable, ns_args.namespace, version.counter, version.writer
            );
        }
        Ok(())
    }
    .await;
    session.close().await;
    result
}

/// `var rm`.
async fn remove(args: NameArgs) -> Result<(), Failure> {
    let json = args.namespace.json();
    let (session, ns) = args.namespace.open_synced().await?;
    let result = async {
        let var = ns.var::<serde_json::Value>(&args.variable).map_err(|e| Failure::p4(&e, json))?;
        let version = var.delete().map_err(|e| Failure::p4(&e, json))?;
        var.confirmed(args.namespace.timeout()).await.map_err(|e| Failure::p4(&e, json))?;
        if json {
            let mut line = Fields::new();
            line.put("deleted", &args.variable);
            line.put("namespace", &args.namespace.namespace);
            line.put("version", version_json(&version));
            line.print();
        } else {
            eprintln!("deleted {} in {}", args.variable, args.namespace.namespace);
        }
        Ok(())
    }
    .await;
    session.close().await;
    result
}

/// Prints one variable's state.
fn print_value(name: &str, value: Option<&Json>, version: &Version, json: bool) {
    if json {
        let mut line = Fields::new();
        line.put("name", name);
        match value {
            Some(v) => line.put("value", to_serde(v)),
            None => line.put("deleted", true),
        }
        line.put("version", version_json(version));
        line.print();
    } else {
        match value {
            Some(v) => crate::output::text(&canonical_text(v)),
            None => crate::output::text("(deleted)"),
        }
    }
}

/// `var get`.
async fn get(args: NameArgs) -> Result<(), Failure> {
    let json = args.namespace.json();
    let (session, ns) = args.namespace.open_synced().await?;
    let result = (|| {
        let var = ns.var::<serde_json::Value>(&args.variable).map_err(|e| Failure::p4(&e, json))?;
        let meta = var.meta();
        match (var.json(), meta.version) {
            (Some(value), Some(version)) => {
                print_value(&args.variable, Some(&value), &version, json);
                Ok(())
            }
            (None, Some(_)) => Err(Failure::new(
                7,
                "not-found",
                format!("{} was deleted in {}", args.variable, args.namespace.namespace),
                json,
            )),
            _ => Err(Failure::new(
                7,
                "not-found",
                format!(
                    "{} does not exist in {} (no instance holds it; `kinopio var ls {}` lists what does)",
                    args.variable, args.namespace.namespace, args.namespace.namespace
                ),
                json,
            )),
        }
    })();
    session.close().await;
    result
}

/// `var ls`.
async fn list(args: NamespaceArgs) -> Result<(), Failure> {
    let json = args.json();
    let (session, ns) = args.open_synced().await?;
    let entries = ns.variables();
    for entry in &entries {
        if json {
            let mut line = Fields::new();
            line.put("name", &entry.name);
            line.put("value", to_serde(&entry.value));
            line.put("version", version_json(&entry.version));
            line.print();
        } else {
            crate::output::text(&format!("{}\t{}", entry.name, canonical_text(&entry.value)));
        }
    }
    if !json {
        eprintln!("{} variable(s) in {}", entries.len(), args.namespace);
    }
    session.close().await;
    Ok(())
}

/// `var watch`.
async fn watch(args: WatchArgs) -> Result<(), Failure> {
    let ns_args = &args.target.namespace;
    let json = ns_args.json();
    let (session, ns) = ns_args.open_synced().await?;
    let result = async {
        let var = ns.var::<serde_json::Value>(&args.target.variable).map_err(|e| Failure::p4(&e, json))?;
        let mut updates = var.watch();
        let mut seen = 0u64;
        loop {
            if args.count.is_some_and(|n| seen >= n) {
                return Ok(());
            }
            let update = tokio::select! {
                u = updates.next() => u,
                () = crate::signals::shutdown() => return Err(Failure::new(130, "interrupted", "interrupted", json)),
            };
            let Some(update) = update else {
                return Err(Failure::new(1, "closed", "the namespace closed", json));
            };
            let update = update.map_err(|e| Failure::p4(&e, json))?;
            let value = update.value.as_ref().map(Json::from);
            print_value(&args.target.variable, value.as_ref(), &update.version, json);
            seen += 1;
        }
    }
    .await;
    session.close().await;
    if let Err(f) = &result
        && f.code == 130
        && args.count.is_none()
    {
        return Ok(());
    }
    result
}
