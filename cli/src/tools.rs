//! `kinopio pub | sub | req | serve`: thin shells over the `kinopio` library, so they double
//! as black-box probes of it.

use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use kinopio::{ConnectErrorKind, Hub, HubEvent, HubOptions, Message, Payload, RequestErrorKind, SelectionMode, Value};
use serde_json::json;

use crate::output::{self, Failure};

/// Options shared by the messaging tools.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// NATS server URL (nats://, tls://, ws://, wss://); repeat for several candidates.
    #[arg(
        long = "server",
        short = 's',
        default_value = "nats://127.0.0.1:4222",
        env = "KINOPIO_SERVER",
        value_delimiter = ','
    )]
    servers: Vec<String>,
    /// How to order several servers: ordered, random or latency.
    #[arg(long, default_value = "latency")]
    selection: SelectionMode,
    /// Re-probe interval in latency mode (0 disables re-probing).
    #[arg(long, default_value_t = 600_000)]
    reprobe_interval_ms: u64,
    /// How much faster another server must be before switching to it.
    #[arg(long, default_value_t = 30)]
    switch_threshold_ms: u64,
    /// Time allowed to connect.
    #[arg(long, default_value_t = 5_000)]
    connect_timeout_ms: u64,
    /// CA file (PEM) to trust for tls:// and wss:// servers.
    #[arg(long)]
    tls_ca_file: Option<std::path::PathBuf>,
    /// Look for a local leader at this HTTPS manifest URL and switch to it when it connects.
    #[arg(long)]
    discovery_manifest_url: Option<String>,
    /// Look for a local leader of this namespace over mDNS and switch to it when it connects.
    #[arg(long)]
    discovery_namespace: Option<String>,
    /// CA file (PEM) the local leader's manifest and WSS listener are signed with.
    #[arg(long)]
    discovery_ca_file: Option<std::path::PathBuf>,
    /// Connection name shown in the server's monitoring.
    #[arg(long, default_value = "kinopio-cli")]
    name: String,
    /// Print one JSON object per line (values, replies, events, errors).
    #[arg(long)]
    json: bool,
}

impl ConnectArgs {
    fn options(&self) -> Result<HubOptions, Failure> {
        let mut options = HubOptions::new()
            .servers(&self.servers)
            .map_err(|e| Failure::new(2, "invalid-server", e.to_string(), self.json))?
            .selection(self.selection)
            .name(&self.name)
            .connect_timeout(Duration::from_millis(self.connect_timeout_ms))
            .switch_threshold(Duration::from_millis(self.switch_threshold_ms))
            .reprobe_interval((self.reprobe_interval_ms > 0).then(|| Duration::from_millis(self.reprobe_interval_ms)));
        if let Some(ca) = &self.tls_ca_file {
            options = options.tls_ca_file(ca);
        }
        if self.discovery_manifest_url.is_some() || self.discovery_namespace.is_some() {
            options = options.discovery(kinopio::DiscoveryOptions {
                manifest_url: self.discovery_manifest_url.clone(),
                namespace: self.discovery_namespace.clone(),
                ca_file: self.discovery_ca_file.clone(),
                ..Default::default()
            });
        }
        Ok(options)
    }

    /// Connects and starts printing connection events.
    async fn connect(&self) -> Result<Hub, Failure> {
        let hub = Hub::new(self.options()?);
        let json = self.json;
        let mut events = hub.events();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                print_event(&event, json);
            }
        });
        let probing = if self.servers.len() > 1 { Duration::from_secs(2) } else { Duration::ZERO };
        let budget = Duration::from_millis(self.connect_timeout_ms) + probing;
        if let Err(e) = hub.wait_connected(budget).await {
            hub.close().await;
            let code = if e.kind() == ConnectErrorKind::Closed { 1 } else { 3 };
            return Err(Failure::new(code, "not-connected", e.to_string(), self.json));
        }
        Ok(hub)
    }
}

fn print_event(event: &HubEvent, json: bool) {
    if json {
        if let Ok(v) = serde_json::to_value(event) {
            output::line(&v);
        }
        return;
    }
    match event {
        HubEvent::Connected { server: Some(s) } => eprintln!("connected to {s}"),
        HubEvent::Disconnected { server } => {
            eprintln!("disconnected from {}; reconnecting", server.as_ref().map_or("?".into(), ToString::to_string));
        }
        HubEvent::ServerSwitched { from, to, .. } => {
            eprintln!("switched from {} to {to}", from.as_ref().map_or("?".into(), ToString::to_string));
        }
        HubEvent::SlowConsumer { .. } => eprintln!("warning: messages dropped (slow consumer)"),
        HubEvent::ServerError { message } => eprintln!("server error: {message}"),
        HubEvent::Failed { message } => eprintln!("gave up connecting: {message}"),
        _ => {}
    }
}

/// A payload argument: valid JSON is sent as JSON (so `'"42"'` stays a string), anything
/// else as text; the empty string as null.
fn parse_payload(arg: &str) -> Payload {
    match serde_json::from_str::<serde_json::Value>(arg) {
        Ok(v) => Payload::json(&v).unwrap_or_else(|_| Payload::text(arg)),
        Err(_) => Payload::text(arg),
    }
}

fn variable(hub: &Hub, subject: &str, json: bool) -> Result<kinopio::Variable, Failure> {
    hub.variable(subject).map_err(|e| Failure::new(2, "invalid-subject", e.to_string(), json))
}

#[derive(Debug, Args)]
pub struct PubArgs {
    /// Subject, e.g. `chat.messages`.
    subject: String,
    /// Value: JSON (`42`, `'{"a":1}'`, `'"text"'`) or plain text; "" publishes null.
    payload: String,
    #[command(flatten)]
    connect: ConnectArgs,
}

pub async fn publish(args: PubArgs) -> Result<(), Failure> {
    let json = args.connect.json;
    let hub = args.connect.connect().await?;
    let var = variable(&hub, &args.subject, json)?;
    let payload = parse_payload(&args.payload);
    let len = payload.len();
    var.publish_payload(payload, None).await.map_err(|e| Failure::new(1, "publish-failed", e.to_string(), json))?;
    hub.close().await;
    if json {
        output::line(&json!({"published": args.subject, "bytes": len}));
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct SubArgs {
    /// Subject, e.g. `chat.messages`.
    subject: String,
    /// Exit after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Join this queue group (each message goes to one member).
    #[arg(long)]
    queue: Option<String>,
    #[command(flatten)]
    connect: ConnectArgs,
}

pub async fn subscribe(args: SubArgs) -> Result<(), Failure> {
    let json = args.connect.json;
    let hub = args.connect.connect().await?;
    let var = variable(&hub, &args.subject, json)?;
    let sub = match &args.queue {
        Some(q) => var.subscribe_queue(q).await,
        None => var.subscribe().await,
    };
    let mut sub = sub.map_err(|e| Failure::new(1, "subscribe-failed", e.to_string(), json))?;
    if json {
        output::line(&json!({"event": "subscribed", "subject": args.subject}));
    } else {
        eprintln!("listening on {}", args.subject);
    }
    let mut received = 0u64;
    let shutdown = crate::signals::shutdown();
    tokio::pin!(shutdown);
    loop {
        let next = tokio::select! {
            m = sub.next() => m,
            _ = &mut shutdown => None,
        };
        let Some(msg) = next else { break };
        if json {
            output::line(&output::message_json(&msg));
        } else {
            output::text(&format!("[{}] {}", msg.subject, msg.value()));
        }
        received += 1;
        if args.count.is_some_and(|n| received >= n) {
            break;
        }
    }
    drop(sub);
    hub.close().await;
    Ok(())
}

#[derive(Debug, Args)]
pub struct ReqArgs {
    /// Subject, e.g. `math.double`.
    subject: String,
    /// Request value: JSON or plain text; "" sends null.
    payload: String,
    /// Give up after this long.
    #[arg(long, default_value_t = 3_000)]
    timeout_ms: u64,
    #[command(flatten)]
    connect: ConnectArgs,
}

pub async fn request(args: ReqArgs) -> Result<(), Failure> {
    let json = args.connect.json;
    let hub = args.connect.connect().await?;
    let var = variable(&hub, &args.subject, json)?;
    let options = kinopio::RequestOptions { timeout: Some(Duration::from_millis(args.timeout_ms)), headers: None };
    let result = var.request_with(parse_payload(&args.payload), options).await;
    hub.close().await;
    match result {
        Ok(reply) => {
            if json {
                output::line(&output::message_json(&reply));
            } else {
                output::text(&reply.value().to_string());
            }
            Ok(())
        }
        Err(e) => {
            let (code, kind) = match e.kind() {
                RequestErrorKind::TimedOut => (4, "timed-out"),
                RequestErrorKind::NoResponders => (5, "no-responders"),
                RequestErrorKind::Remote { .. } => (6, "remote-error"),
                RequestErrorKind::NotConnected => (3, "not-connected"),
                _ => (1, "request-failed"),
            };
            Err(Failure::new(code, kind, e.to_string(), json))
        }
    }
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["reply", "echo"])))]
pub struct ServeArgs {
    /// Subject, e.g. `math.double`.
    subject: String,
    /// Answer every request with this value (JSON or plain text).
    #[arg(long)]
    reply: Option<String>,
    /// Answer every request with the request itself.
    #[arg(long)]
    echo: bool,
    /// Queue group (default `<subject>.service`, shared with Python kinopio-hub servers).
    #[arg(long)]
    queue: Option<String>,
    /// Exit after answering this many requests.
    #[arg(long)]
    count: Option<u64>,
    #[command(flatten)]
    connect: ConnectArgs,
}

pub async fn serve(args: ServeArgs) -> Result<(), Failure> {
    let json = args.connect.json;
    let hub = args.connect.connect().await?;
    let var = variable(&hub, &args.subject, json)?;
    let fixed = args.reply.as_deref().map(|r| kinopio::codec::decode_value(parse_payload(r).as_bytes()));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let handler = move |m: Message| {
        let reply = fixed.clone().unwrap_or_else(|| m.value());
        let done = done_tx.clone();
        async move {
            if json {
                output::line(
                    &json!({"subject": m.subject.as_str(), "request": output::value_json(&m.value()), "reply": output::value_json(&reply)}),
                );
            } else {
                output::text(&format!("[{}] {} -> {}", m.subject, m.value(), reply));
            }
            let _ = done.send(());
            Ok::<Value, String>(reply)
        }
    };
    let group = args.queue.clone().unwrap_or_else(|| kinopio::name::service_queue_group(&args.subject));
    let service =
        var.serve_queue(&group, handler).await.map_err(|e| Failure::new(1, "serve-failed", e.to_string(), json))?;
    if json {
        output::line(&json!({"event": "serving", "subject": args.subject, "queue": group}));
    } else {
        eprintln!("serving {} (queue group {group})", args.subject);
    }
    let mut answered = 0u64;
    let shutdown = crate::signals::shutdown();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            d = done_rx.recv() => {
                if d.is_none() { break; }
                answered += 1;
                if args.count.is_some_and(|n| answered >= n) { break; }
            }
            _ = &mut shutdown => break,
        }
    }
    service.stop().await;
    hub.close().await;
    Ok(())
}
