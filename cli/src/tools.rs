//! `kinopio pub | sub | req | serve`: thin shells over the `kinopio` library, so they double
//! as black-box probes of it.
//!
//! Values go out exactly as typed: the argument's UTF-8 bytes (or a file's bytes) are the
//! payload, and peers decode them by the 0.1.1 wire rule (empty = null, JSON — with Python's
//! `NaN`/`Infinity` — else text, else bytes). Nothing is parsed and re-encoded on the way, so
//! big integers, float digits and key order arrive as written. Received payloads are shown
//! exactly as they came ([`output::payload_fields`]).

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use futures::StreamExt;
use kinopio::{
    Auth, ConnectErrorKind, HeaderMap, Hub, HubEvent, HubOptions, Message, Payload, RequestErrorKind, SelectionMode,
};

use crate::output::{self, Failure, Fields};

mod p4;

/// `--namespace`: speak protocol 4 (kinopio-hub 3.0.0) instead of the 0.1.1 wire.
#[derive(Debug, Args)]
pub(crate) struct Protocol4Args {
    /// Use protocol 4 (kinopio-hub 3.0.0 messaging) in this namespace: the subject is a
    /// topic, values are JSON, headers are lower-cased. Without it, the 0.1.1 wire.
    #[arg(long)]
    namespace: Option<String>,
}

/// Options shared by the messaging tools.
#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
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
    #[arg(long, env = "KINOPIO_TLS_CA_FILE")]
    tls_ca_file: Option<PathBuf>,
    /// NATS credentials file (.creds: JWT and nkey seed).
    #[arg(long, value_name = "FILE", env = "KINOPIO_CREDS", conflicts_with_all = ["user", "token", "nkey"])]
    creds: Option<PathBuf>,
    /// User name (with --password).
    #[arg(long, env = "KINOPIO_USER", requires = "password", conflicts_with_all = ["token", "nkey"])]
    user: Option<String>,
    /// Password for --user. Prefer the environment variable: a command line is visible to
    /// other local users.
    #[arg(long, env = "KINOPIO_PASSWORD", hide_env_values = true, requires = "user")]
    password: Option<String>,
    /// Authorization token. Prefer the environment variable.
    #[arg(long, env = "KINOPIO_TOKEN", hide_env_values = true, conflicts_with = "nkey")]
    token: Option<String>,
    /// File holding an nkey seed (SU…) to authenticate with.
    #[arg(long, value_name = "FILE", env = "KINOPIO_NKEY")]
    nkey: Option<PathBuf>,
    /// Look for a local leader at this HTTPS manifest URL and switch to it when it connects.
    #[arg(long)]
    discovery_manifest_url: Option<String>,
    /// Look for a local leader of this namespace over mDNS and switch to it when it connects.
    #[arg(long)]
    discovery_namespace: Option<String>,
    /// Secret of a secured namespace (as given to `leaf auto`): the leader's manifest and
    /// WSS listener must then chain to the namespace CA derived from it, and nothing else is
    /// trusted, so a host without the secret cannot redirect this client.
    #[arg(long, env = "KINOPIO_NAMESPACE_SECRET", hide_env_values = true, requires = "discovery_namespace")]
    namespace_secret: Option<String>,
    /// CA file (PEM) the local leader's manifest and WSS listener must chain to (only it is
    /// trusted for discovery).
    #[arg(long)]
    discovery_ca_file: Option<PathBuf>,
    /// Let a discovered leader move this client to plaintext (ws://). Off by default.
    #[arg(long)]
    discovery_allow_plaintext: bool,
    /// Connection name shown in the server's monitoring.
    #[arg(long, default_value = "kinopio-cli")]
    name: String,
    /// Print one JSON object per line: first {"event":"connected"}, then the command's
    /// lines (and connection events as they happen), last {"event":"closed"}; an error is
    /// {"error":{"kind","message"}}.
    #[arg(long)]
    json: bool,
}

impl ConnectArgs {
    /// `--json` was given.
    pub(crate) fn json(&self) -> bool {
        self.json
    }

    pub(crate) fn fail(&self, code: u8, kind: &'static str, message: impl Into<String>) -> Failure {
        Failure::new(code, kind, message, self.json)
    }

    fn auth(&self) -> Result<Option<Auth>, Failure> {
        let read = |what: &str, path: &PathBuf| {
            std::fs::read_to_string(path).map_err(|e| {
                self.fail(2, "invalid-option", format!("cannot read the {what} file {}: {e}", path.display()))
            })
        };
        if let Some(path) = &self.creds {
            return Ok(Some(Auth::Credentials(read("credentials", path)?)));
        }
        if let Some(path) = &self.nkey {
            let seed = read("nkey seed", path)?.trim().to_owned();
            if !seed.starts_with('S') {
                return Err(self.fail(
                    2,
                    "invalid-option",
                    format!("{} does not hold an nkey seed (S…)", path.display()),
                ));
            }
            return Ok(Some(Auth::NkeySeed(seed)));
        }
        if let Some(token) = &self.token {
            return Ok(Some(Auth::Token(token.clone())));
        }
        match (&self.user, &self.password) {
            (Some(user), Some(password)) => {
                Ok(Some(Auth::UserPassword { user: user.clone(), password: password.clone() }))
            }
            _ => Ok(None),
        }
    }

    fn options(&self) -> Result<HubOptions, Failure> {
        let mut options = HubOptions::new()
            .servers(&self.servers)
            .map_err(|e| self.fail(2, "invalid-server", e.to_string()))?
            .selection(self.selection)
            .name(&self.name)
            .connect_timeout(Duration::from_millis(self.connect_timeout_ms))
            .switch_threshold(Duration::from_millis(self.switch_threshold_ms))
            .reprobe_interval((self.reprobe_interval_ms > 0).then(|| Duration::from_millis(self.reprobe_interval_ms)));
        if let Some(ca) = &self.tls_ca_file {
            if !ca.is_file() {
                return Err(self.fail(2, "invalid-option", format!("--tls-ca-file {}: no such file", ca.display())));
            }
            options = options.tls_ca_file(ca);
        }
        if let Some(auth) = self.auth()? {
            options = options.auth(auth);
        }
        if self.discovery_ca_file.is_some()
            && self.discovery_manifest_url.is_none()
            && self.discovery_namespace.is_none()
        {
            return Err(self.fail(
                2,
                "invalid-option",
                "--discovery-ca-file needs --discovery-manifest-url or --discovery-namespace",
            ));
        }
        if let Some(url) = &self.discovery_manifest_url
            && !url.starts_with("https://")
        {
            return Err(self.fail(2, "invalid-option", format!("--discovery-manifest-url {url:?} must be https://")));
        }
        if self.discovery_manifest_url.is_some() || self.discovery_namespace.is_some() {
            if self.namespace_secret.as_deref() == Some("") {
                return Err(self.fail(2, "invalid-option", "--namespace-secret is empty"));
            }
            options = options.discovery(kinopio::DiscoveryOptions {
                manifest_url: self.discovery_manifest_url.clone(),
                namespace: self.discovery_namespace.clone(),
                namespace_secret: self.namespace_secret.clone().map(kinopio::trust::Secret::new),
                ca_file: self.discovery_ca_file.clone(),
                allow_plaintext: self.discovery_allow_plaintext,
                ..Default::default()
            });
        }
        Ok(options)
    }

    /// Connects, prints the `connected` line, then prints connection events as they happen
    /// (Ctrl-C while connecting ends the command with exit code 130).
    pub(crate) async fn connect(&self) -> Result<Session, Failure> {
        let hub = Hub::new(self.options()?);
        let mut events = hub.events();
        let probing = if self.servers.len() > 1 { Duration::from_secs(2) } else { Duration::ZERO };
        let budget = Duration::from_millis(self.connect_timeout_ms) + probing;
        let connected = tokio::select! {
            r = hub.wait_connected(budget) => r,
            () = crate::signals::shutdown() => {
                hub.close().await;
                return Err(self.fail(130, "interrupted", "interrupted while connecting"));
            }
        };
        if let Err(e) = connected {
            hub.close().await;
            let code = if e.kind() == ConnectErrorKind::Closed { 1 } else { 3 };
            return Err(self.fail(code, "not-connected", explain_connect_error(&e.to_string())));
        }
        // The first `connected` is printed here, in order; the rest as they happen.
        print_event(&HubEvent::Connected { server: hub.server() }, self.json);
        let json = self.json;
        let printer = tokio::spawn(async move {
            let mut first = true;
            while let Some(event) = events.next().await {
                match &event {
                    HubEvent::Connected { .. } if first => first = false,
                    HubEvent::Closed => {}
                    _ => print_event(&event, json),
                }
            }
        });
        Ok(Session { hub, json, printer })
    }
}

/// What to do about a connection error, when it is recognisable.
pub(crate) fn connect_hint(reason: &str) -> Option<&'static str> {
    let lower = reason.to_ascii_lowercase();
    Some(if lower.contains("refused") {
        "connection refused: is nats-server running there, on that port?"
    } else if lower.contains("authorization") || lower.contains("authentication") {
        "the server refused the credentials: check --user/--password, --token, --nkey or --creds"
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("unknownissuer") {
        "TLS failed: pass the server's CA with --tls-ca-file, or check the server name in the URL"
    } else if lower.contains("dns") || lower.contains("lookup") || lower.contains("resolve") {
        "the host name does not resolve: check the URL"
    } else if lower.contains("timed out") || lower.contains("timeout") || lower.contains("no answer") {
        "no answer in time: check the address, a firewall, or raise --connect-timeout-ms"
    } else {
        return None;
    })
}

/// Says what a connection error means and what to do about it.
fn explain_connect_error(reason: &str) -> String {
    match connect_hint(reason) {
        Some(hint) => format!("{reason} ({hint})"),
        None => reason.to_owned(),
    }
}

/// A connected hub with its event printer.
pub(crate) struct Session {
    pub(crate) hub: Hub,
    json: bool,
    printer: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Where the connection stands before sending (see [`Session::confirm`]).
    fn checkpoint(&self) -> Result<kinopio::Checkpoint, Failure> {
        self.hub.checkpoint().ok_or_else(|| Failure::new(3, "not-connected", "the connection was lost", self.json))
    }

    /// Confirms with the server that everything sent since `since` arrived: a round trip on
    /// the same connection, no reconnect and no server error in between.
    async fn confirm(&self, since: &kinopio::Checkpoint, what: &str) -> Result<(), Failure> {
        self.hub
            .confirm(since)
            .await
            .map_err(|e| Failure::new(1, "not-delivered", format!("{what} may not have arrived: {e}"), self.json))
    }

    /// Closes the hub and prints the `closed` line last.
    pub(crate) async fn close(self) {
        self.hub.close().await;
        self.printer.abort();
        let _ = self.printer.await;
        print_event(&HubEvent::Closed, self.json);
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
        HubEvent::SwitchSettled { server, elapsed, .. } => {
            eprintln!("back on one connection ({server}) after {} ms", elapsed.as_millis());
        }
        HubEvent::SlowConsumer { .. } => eprintln!("warning: messages dropped (slow consumer)"),
        HubEvent::ServerError { message } => eprintln!("server error: {message}"),
        HubEvent::Failed { message } => eprintln!("gave up connecting: {message}"),
        HubEvent::LocalLeaderRejected { url, reason } => eprintln!("warning: refused local leader {url}: {reason}"),
        _ => {}
    }
}

/// What to send: a value argument or a file, plus headers.
#[derive(Debug, Args)]
pub(crate) struct PayloadArgs {
    /// The value, sent exactly as typed: JSON (`42`, `-5`, `'{"a": 1}'`, `'"text"'`,
    /// `12345678901234567890123`), Python's non-finite floats `NaN`, `Infinity`,
    /// `-Infinity`, or any other text; "" sends null (an empty payload).
    #[arg(allow_negative_numbers = true, required_unless_present = "file")]
    value: Option<String>,
    /// Send this file's bytes exactly (binary is fine); `-` reads standard input.
    #[arg(long, short = 'f', value_name = "FILE", conflicts_with = "value")]
    file: Option<PathBuf>,
    /// A header `Name: value` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME:VALUE")]
    headers: Vec<String>,
}

impl PayloadArgs {
    fn payload(&self, json: bool) -> Result<Payload, Failure> {
        match (&self.value, &self.file) {
            (Some(value), _) => Ok(Payload::bytes(Bytes::copy_from_slice(value.as_bytes()))),
            (None, Some(path)) if path.as_os_str() == "-" => {
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut data)
                    .map_err(|e| Failure::new(2, "invalid-input", format!("cannot read standard input: {e}"), json))?;
                Ok(Payload::bytes(data))
            }
            (None, Some(path)) => std::fs::read(path)
                .map(Payload::bytes)
                .map_err(|e| Failure::new(2, "invalid-input", format!("cannot read {}: {e}", path.display()), json)),
            (None, None) => Err(Failure::new(2, "invalid-input", "give a value or --file FILE (- for stdin)", json)),
        }
    }

    fn header_map(&self, json: bool) -> Result<Option<HeaderMap>, Failure> {
        if self.headers.is_empty() {
            return Ok(None);
        }
        let mut map = HeaderMap::new();
        for header in &self.headers {
            let Some((name, value)) = header.split_once(':') else {
                return Err(Failure::new(2, "invalid-header", format!("header {header:?} is not NAME:VALUE"), json));
            };
            let name = name.trim();
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control() || c == ':') {
                return Err(Failure::new(2, "invalid-header", format!("header name {name:?} is not valid"), json));
            }
            if value.chars().any(|c| c == '\r' || c == '\n') {
                return Err(Failure::new(2, "invalid-header", format!("header {name:?} has a line break"), json));
            }
            map.append(name, value.trim());
        }
        Ok(Some(map))
    }
}

/// Checks `subject` (no wildcards) before anything connects, then connects and returns the
/// session with the subject's variable.
async fn open_variable(subject: &str, connect: &ConnectArgs) -> Result<(Session, kinopio::Variable), Failure> {
    let invalid = |e: kinopio::name::InvalidName| Failure::new(2, "invalid-subject", e.to_string(), connect.json);
    kinopio::name::validate("variable", subject).map_err(invalid)?;
    let session = connect.connect().await?;
    let var = session.hub.variable(subject).map_err(invalid)?;
    Ok((session, var))
}

#[derive(Debug, Args)]
pub(crate) struct PubArgs {
    /// Subject, e.g. `chat.messages`.
    subject: String,
    #[command(flatten)]
    payload: PayloadArgs,
    /// Publish the value this many times.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    count: u64,
    #[command(flatten)]
    p4: Protocol4Args,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// `kinopio pub`: exits 0 only once the server has confirmed it received every message.
pub(crate) async fn publish(args: PubArgs) -> Result<(), Failure> {
    if let Some(namespace) = args.p4.namespace.clone() {
        return p4::publish(args, &namespace).await;
    }
    let json = args.connect.json;
    let payload = args.payload.payload(json)?;
    let headers = args.payload.header_map(json)?;
    let (session, var) = open_variable(&args.subject, &args.connect).await?;
    let len = payload.len();
    let sent = async {
        let since = session.checkpoint()?;
        for _ in 0..args.count {
            var.publish_payload(payload.clone(), headers.clone())
                .await
                .map_err(|e| Failure::new(1, "publish-failed", e.to_string(), json))?;
        }
        session.confirm(&since, if args.count == 1 { "the message" } else { "the messages" }).await
    };
    let result = crate::output::interruptible(sent, "while publishing", json).await;
    if result.is_ok() {
        if json {
            let mut line = Fields::new();
            line.put("published", &args.subject);
            line.put("bytes", len);
            line.put("count", args.count);
            line.print();
        } else {
            eprintln!("published {} message(s) of {len} bytes to {}", args.count, args.subject);
        }
    }
    session.close().await;
    result
}

#[derive(Debug, Args)]
pub(crate) struct SubArgs {
    /// Subject, e.g. `chat.messages`; the wildcards `*` (one token) and `>` (the rest) are
    /// allowed: `sensors.*.temp`, `chat.>`, `>`.
    subject: String,
    /// Exit after this many messages.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Stop after this long; with --count, exit 4 if fewer messages arrived.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Join this queue group (each message goes to one member).
    #[arg(long)]
    queue: Option<String>,
    /// Print only each payload's bytes, exactly, one per line.
    #[arg(long, conflicts_with = "json")]
    raw: bool,
    #[command(flatten)]
    p4: Protocol4Args,
    #[command(flatten)]
    connect: ConnectArgs,
}

pub(crate) async fn subscribe(args: SubArgs) -> Result<(), Failure> {
    if let Some(namespace) = args.p4.namespace.clone() {
        return p4::subscribe(args, &namespace).await;
    }
    let json = args.connect.json;
    kinopio::name::validate_pattern("subject", &args.subject)
        .map_err(|e| Failure::new(2, "invalid-subject", e.to_string(), json))?;
    let session = args.connect.connect().await?;
    let sub = session.hub.subscribe_pattern(&args.subject, args.queue.as_deref()).await.map_err(|e| {
        let kind = match e.kind() {
            kinopio::SubscribeErrorKind::PermissionDenied => "permission-denied",
            _ => "subscribe-failed",
        };
        Failure::new(1, kind, e.to_string(), json)
    });
    let mut sub = match sub {
        Ok(sub) => sub,
        Err(failure) => {
            session.close().await;
            return Err(failure);
        }
    };
    if json {
        let mut line = Fields::new();
        line.put("event", "subscribed");
        line.put("subject", &args.subject);
        line.print();
    } else {
        eprintln!("listening on {}", args.subject);
    }
    let listened = crate::listen::listen(&mut sub, args.count, args.timeout_ms, |msg| {
        if json {
            output::message_fields(msg.subject.as_str(), &msg).print();
        } else if args.raw {
            output::raw(&msg.payload);
        } else {
            output::text(&format!("[{}] {}", msg.subject, output::payload_text(&msg.payload)));
        }
    })
    .await;
    drop(sub);
    session.close().await;
    listened.check(args.count, args.timeout_ms, "messages", json)
}

#[derive(Debug, Args)]
pub(crate) struct ReqArgs {
    /// Subject, e.g. `math.double`.
    subject: String,
    #[command(flatten)]
    payload: PayloadArgs,
    /// Give up after this long.
    #[arg(long, default_value_t = 3_000)]
    timeout_ms: u64,
    /// Print only the reply payload's bytes, exactly.
    #[arg(long, conflicts_with = "json")]
    raw: bool,
    /// Collect every reply until --timeout-ms or --max-replies (protocol 4, --namespace).
    #[arg(long, requires = "namespace")]
    many: bool,
    /// With --many: stop after this many replies (1–16, default 16).
    #[arg(long, requires = "many", value_parser = clap::value_parser!(u64).range(1..=16))]
    max_replies: Option<u64>,
    #[command(flatten)]
    p4: Protocol4Args,
    #[command(flatten)]
    connect: ConnectArgs,
}

pub(crate) async fn request(args: ReqArgs) -> Result<(), Failure> {
    if let Some(namespace) = args.p4.namespace.clone() {
        return p4::request(args, &namespace).await;
    }
    let json = args.connect.json;
    let payload = args.payload.payload(json)?;
    let headers = args.payload.header_map(json)?;
    let (session, var) = open_variable(&args.subject, &args.connect).await?;
    let options = kinopio::RequestOptions { timeout: Some(Duration::from_millis(args.timeout_ms)), headers };
    let asked = async {
        var.request_with(payload, options).await.map_err(|e| {
            let (code, kind) = match e.kind() {
                RequestErrorKind::TimedOut => (4, "timed-out"),
                RequestErrorKind::NoResponders => (5, "no-responders"),
                RequestErrorKind::Remote { .. } => (6, "remote-error"),
                RequestErrorKind::NotConnected => (3, "not-connected"),
                _ => (1, "request-failed"),
            };
            Failure::new(code, kind, e.to_string(), json)
        })
    };
    let result = crate::output::interruptible(asked, "while waiting for the reply", json).await;
    if let Ok(reply) = &result {
        if json {
            output::message_fields(&args.subject, reply).print();
        } else if args.raw {
            output::raw(&reply.payload);
        } else {
            output::text(&output::payload_text(&reply.payload));
        }
    }
    session.close().await;
    result.map(|_| ())
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["reply", "echo"])))]
pub(crate) struct ServeArgs {
    /// Subject, e.g. `math.double`.
    subject: String,
    /// Answer every request with this value, sent exactly as typed (see `pub`).
    #[arg(long, allow_negative_numbers = true)]
    reply: Option<String>,
    /// Answer every request with the request's own payload, byte for byte.
    #[arg(long)]
    echo: bool,
    /// Queue group (default `<subject>.service`, shared with Python kinopio-hub servers;
    /// with --namespace no default, like kinopio-hub 3.0.0's `handle`).
    #[arg(long)]
    queue: Option<String>,
    /// Exit after answering this many requests.
    #[arg(long)]
    count: Option<u64>,
    #[command(flatten)]
    p4: Protocol4Args,
    #[command(flatten)]
    connect: ConnectArgs,
}

pub(crate) async fn serve(args: ServeArgs) -> Result<(), Failure> {
    if let Some(namespace) = args.p4.namespace.clone() {
        return p4::serve(args, &namespace).await;
    }
    let json = args.connect.json;
    let (session, var) = open_variable(&args.subject, &args.connect).await?;
    let fixed = args.reply.as_deref().map(|r| Bytes::copy_from_slice(r.as_bytes()));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let handler = move |m: Message| {
        let reply = fixed.clone().unwrap_or_else(|| m.payload.clone());
        let done = done_tx.clone();
        async move {
            if json {
                let mut request = Fields::new();
                output::payload_fields(&mut request, &m.payload);
                let mut answer = Fields::new();
                output::payload_fields(&mut answer, &reply);
                let mut line = Fields::new();
                line.put("subject", m.subject.as_str());
                line.put("request", &request);
                line.put("reply", &answer);
                line.print();
            } else {
                output::text(&format!(
                    "[{}] {} -> {}",
                    m.subject,
                    output::payload_text(&m.payload),
                    output::payload_text(&reply)
                ));
            }
            let _ = done.send(());
            Ok::<Payload, String>(Payload::bytes(reply))
        }
    };
    let group = args.queue.clone().unwrap_or_else(|| kinopio::name::service_queue_group(&args.subject));
    let service = match var.serve_queue(&group, handler).await {
        Ok(service) => service,
        Err(e) => {
            session.close().await;
            return Err(Failure::new(1, "serve-failed", e.to_string(), json));
        }
    };
    if json {
        let mut line = Fields::new();
        line.put("event", "serving");
        line.put("subject", &args.subject);
        line.put("queue", &group);
        line.print();
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
            () = &mut shutdown => break,
        }
    }
    service.stop().await;
    session.close().await;
    Ok(())
}
