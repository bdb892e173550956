//! The two clients under comparison, configured alike: a kinopio [`Hub`] and a raw
//! `async_nats::Client`, each on its own connection with the same subscription capacity,
//! the same outgoing buffer and a count of slow-consumer events (messages dropped because
//! a subscription's buffer was full). Hot loops (publishing, requesting, answering) are
//! written once per client so that neither pays for the other's dispatch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use kinopio::{Hub, HubEvent, HubOptions, Message, Payload, RequestOptions, SelectionMode, Service, Variable};
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::error::BenchError;

/// Outgoing command buffer of every connection (what kinopio sets on its connections).
pub(crate) const CLIENT_CAPACITY: usize = 8192;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The reply every responder sends (kinopio encodes its handler's `1` to these bytes).
pub(crate) const REPLY: &[u8] = b"1";

/// A client implementation being measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Client {
    /// The kinopio client library (this workspace).
    Kinopio,
    /// async-nats used directly.
    Raw,
    /// The Python reference, kinopio-hub 0.1.1.
    Python,
    /// The Python reference of protocol 4, kinopio-hub 3.0.0.
    Python3,
}

impl Client {
    /// A short name for tables.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Client::Kinopio => "kinopio",
            Client::Raw => "raw async-nats",
            Client::Python => "Python kinopio-hub 0.1.1",
            Client::Python3 => "Python kinopio-hub 3.0.0",
        }
    }
}

/// The clients of round `round` in the order they run: kinopio first on even rounds, raw
/// first on odd ones (A B, B A, ...), so neither always profits from a warmer machine.
pub(crate) fn round_order(round: u32) -> [Client; 2] {
    if round.is_multiple_of(2) { [Client::Kinopio, Client::Raw] } else { [Client::Raw, Client::Kinopio] }
}

/// Aborts a background task when dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(JoinHandle<()>);

impl AbortOnDrop {
    /// Runs `task` in the background until the returned guard is dropped.
    pub(crate) fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) -> AbortOnDrop {
        AbortOnDrop(tokio::spawn(task))
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One open connection of either client.
#[derive(Debug)]
pub(crate) enum Conn {
    /// A kinopio hub, with the task counting its slow-consumer events.
    Kinopio {
        /// The hub.
        hub: Hub,
        /// Slow-consumer events seen.
        slow: Arc<AtomicU64>,
        /// Counts the events.
        _watch: AbortOnDrop,
    },
    /// A raw async-nats client.
    Raw {
        /// The client.
        client: async_nats::Client,
        /// Slow-consumer events seen.
        slow: Arc<AtomicU64>,
    },
}

impl Conn {
    /// Connects `client` (kinopio or raw) to `url`. `capacity` is the per-subscription
    /// buffer, in messages.
    pub(crate) async fn connect(client: Client, url: &str, name: &str, capacity: usize) -> Result<Conn, BenchError> {
        Conn::connect_tuned(client, url, name, capacity, |options| options).await
    }

    /// [`Conn::connect`] with kinopio's options adjusted by `tune` (raw ignores it).
    pub(crate) async fn connect_tuned(
        client: Client,
        url: &str,
        name: &str,
        capacity: usize,
        tune: impl FnOnce(HubOptions) -> HubOptions,
    ) -> Result<Conn, BenchError> {
        let slow = Arc::new(AtomicU64::new(0));
        let fail = |detail: String| BenchError::Connect { client: client.label(), url: url.to_owned(), detail };
        match client {
            Client::Kinopio => {
                let options = HubOptions::new()
                    .servers([url])
                    .map_err(|e| fail(e.to_string()))?
                    .selection(SelectionMode::Ordered)
                    .reprobe_interval(None)
                    .name(name)
                    .connect_timeout(CONNECT_TIMEOUT)
                    .subscription_capacity(capacity);
                let hub = Hub::connect(tune(options)).await.map_err(|e| fail(e.to_string()))?;
                let mut events = hub.events();
                let counter = Arc::clone(&slow);
                let watch = tokio::spawn(async move {
                    while let Some(event) = events.next().await {
                        if matches!(event, HubEvent::SlowConsumer { .. }) {
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
                Ok(Conn::Kinopio { hub, slow, _watch: AbortOnDrop(watch) })
            }
            Client::Raw => {
                let counter = Arc::clone(&slow);
                let connect = async_nats::ConnectOptions::new()
                    .name(name)
                    .subscription_capacity(capacity)
                    .client_capacity(CLIENT_CAPACITY)
                    .connection_timeout(CONNECT_TIMEOUT)
                    .event_callback(move |event| {
                        if matches!(event, async_nats::Event::SlowConsumer(_)) {
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                        async {}
                    })
                    .connect(url);
                let client = tokio::time::timeout(CONNECT_TIMEOUT, connect)
                    .await
                    .map_err(|_| fail(format!("no connection within {CONNECT_TIMEOUT:?}")))?
                    .map_err(|e| fail(e.to_string()))?;
                Ok(Conn::Raw { client, slow })
            }
            Client::Python | Client::Python3 => Err(fail("the Python client runs in its own process".to_owned())),
        }
    }

    /// Slow-consumer events (each means messages were dropped) since the connection opened.
    pub(crate) fn slow_consumer_events(&self) -> u64 {
        match self {
            Conn::Kinopio { slow, .. } | Conn::Raw { slow, .. } => slow.load(Ordering::Relaxed),
        }
    }

    fn variable(hub: &Hub, subject: &str) -> Result<Variable, BenchError> {
        hub.variable(subject).map_err(|e| BenchError::client("kinopio", "variable", e))
    }

    /// Subscribes to `subject` (the server has the interest when this returns) and counts
    /// what arrives in a background task (see [`Counter`]).
    pub(crate) async fn subscribe_counting(&self, subject: &str, marks: &[u64]) -> Result<Counter, BenchError> {
        match self {
            Conn::Kinopio { hub, .. } => {
                let sub = Conn::variable(hub, subject)?
                    .subscribe()
                    .await
                    .map_err(|e| BenchError::client("kinopio", "subscribe", e))?;
                Ok(Counter::spawn(sub, marks))
            }
            Conn::Raw { client, .. } => {
                let sub = client
                    .subscribe(subject.to_owned())
                    .await
                    .map_err(|e| BenchError::client("raw async-nats", "subscribe", e))?;
                raw_round_trip(client).await?;
                Ok(Counter::spawn(sub, marks))
            }
        }
    }

    /// A publisher on `subject`.
    pub(crate) fn publisher(&self, subject: &str) -> Result<Publisher, BenchError> {
        match self {
            Conn::Kinopio { hub, .. } => Ok(Publisher::Kinopio(Conn::variable(hub, subject)?)),
            Conn::Raw { client, .. } => Ok(Publisher::Raw(client.clone(), async_nats::Subject::from(subject))),
        }
    }

    /// Answers requests on `subject` with [`REPLY`], in the queue group kinopio services
    /// use (`<subject>.service`). Returns once the server has the interest.
    pub(crate) async fn serve(&self, subject: &str) -> Result<Responder, BenchError> {
        match self {
            Conn::Kinopio { hub, .. } => {
                let service = Conn::variable(hub, subject)?
                    .serve(|_request: Message| async { Ok::<u8, std::convert::Infallible>(1) })
                    .await
                    .map_err(|e| BenchError::client("kinopio", "serve", e))?;
                Ok(Responder::Kinopio(service))
            }
            Conn::Raw { client, .. } => {
                let mut sub = client
                    .queue_subscribe(subject.to_owned(), format!("{subject}.service"))
                    .await
                    .map_err(|e| BenchError::client("raw async-nats", "subscribe", e))?;
                raw_round_trip(client).await?;
                let replier = client.clone();
                let task = tokio::spawn(async move {
                    let reply_payload = Bytes::from_static(REPLY);
                    while let Some(request) = sub.next().await {
                        if let Some(reply) = request.reply
                            && let Err(e) = replier.publish(reply, reply_payload.clone()).await
                        {
                            tracing::warn!(error = %e, "raw responder could not reply");
                        }
                    }
                });
                Ok(Responder::Raw(AbortOnDrop(task)))
            }
        }
    }

    /// A requester on `subject`.
    pub(crate) fn requester(&self, subject: &str) -> Result<Requester, BenchError> {
        match self {
            Conn::Kinopio { hub, .. } => Ok(Requester::Kinopio(Conn::variable(hub, subject)?)),
            Conn::Raw { client, .. } => Ok(Requester::Raw(client.clone(), async_nats::Subject::from(subject))),
        }
    }

    /// Closes the connection (kinopio: drains; raw: drains), bounded in time.
    pub(crate) async fn close(self) {
        let limit = Duration::from_secs(5);
        match self {
            Conn::Kinopio { hub, .. } => {
                let _ = tokio::time::timeout(limit, hub.close()).await;
            }
            Conn::Raw { client, .. } => {
                let _ = tokio::time::timeout(limit, client.drain()).await;
            }
        }
    }
}

/// One round trip to the server on `client`: a PING answered by the server's PONG once it has
/// processed everything this connection sent before (`Client::round_trip`, from kinopio's
/// patched async-nats; `Client::flush` only writes the socket). The same barrier kinopio's
/// `subscribe` uses before it returns.
pub(crate) async fn raw_round_trip(client: &async_nats::Client) -> Result<(), BenchError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, client.round_trip()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(BenchError::client("raw async-nats", "round trip", e)),
        Err(_) => Err(BenchError::client("raw async-nats", "round trip", "timed out")),
    }
}

/// Publishes on one subject.
#[derive(Debug)]
pub(crate) enum Publisher {
    /// `Variable::publish_bytes`.
    Kinopio(Variable),
    /// `Client::publish`.
    Raw(async_nats::Client, async_nats::Subject),
}

impl Publisher {
    /// Publishes `payload` `count` times, as fast as the client accepts them.
    pub(crate) async fn publish_n(&self, payload: &Bytes, count: u64) -> Result<(), BenchError> {
        match self {
            Publisher::Kinopio(variable) => {
                for _ in 0..count {
                    variable
                        .publish_bytes(payload.clone())
                        .await
                        .map_err(|e| BenchError::client("kinopio", "publish", e))?;
                }
            }
            Publisher::Raw(client, subject) => {
                for _ in 0..count {
                    client
                        .publish(subject.clone(), payload.clone())
                        .await
                        .map_err(|e| BenchError::client("raw async-nats", "publish", e))?;
                }
            }
        }
        Ok(())
    }

    /// Publishes one payload.
    pub(crate) async fn publish(&self, payload: Bytes) -> Result<(), BenchError> {
        match self {
            Publisher::Kinopio(variable) => {
                variable.publish_bytes(payload).await.map_err(|e| BenchError::client("kinopio", "publish", e))
            }
            Publisher::Raw(client, subject) => client
                .publish(subject.clone(), payload)
                .await
                .map_err(|e| BenchError::client("raw async-nats", "publish", e)),
        }
    }
}

/// Sends requests on one subject.
#[derive(Debug)]
pub(crate) enum Requester {
    /// `Variable::request_with`.
    Kinopio(Variable),
    /// `Client::request`.
    Raw(async_nats::Client, async_nats::Subject),
}

impl Requester {
    /// Sends `count` requests one after the other (one in flight) and returns each one's
    /// round-trip time.
    pub(crate) async fn measure(&self, payload: &Bytes, count: u64) -> Result<Vec<Duration>, BenchError> {
        let mut times = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        match self {
            Requester::Kinopio(variable) => {
                for _ in 0..count {
                    let started = Instant::now();
                    let reply = variable
                        .request_with(Payload::bytes(payload.clone()), RequestOptions::default())
                        .await
                        .map_err(|e| BenchError::client("kinopio", "request", e))?;
                    times.push(started.elapsed());
                    check_reply("kinopio", &reply.payload)?;
                }
            }
            Requester::Raw(client, subject) => {
                for _ in 0..count {
                    let started = Instant::now();
                    let reply = client
                        .request(subject.clone(), payload.clone())
                        .await
                        .map_err(|e| BenchError::client("raw async-nats", "request", e))?;
                    times.push(started.elapsed());
                    check_reply("raw async-nats", &reply.payload)?;
                }
            }
        }
        Ok(times)
    }
}

fn check_reply(client: &'static str, payload: &[u8]) -> Result<(), BenchError> {
    if payload == REPLY {
        Ok(())
    } else {
        Err(BenchError::client(client, "request", format!("unexpected reply {:?}", String::from_utf8_lossy(payload))))
    }
}

/// A running responder.
#[derive(Debug)]
pub(crate) enum Responder {
    /// A kinopio service.
    Kinopio(Service),
    /// A subscriber loop answering each request.
    Raw(AbortOnDrop),
}

impl Responder {
    /// Stops answering.
    pub(crate) async fn stop(self) {
        match self {
            Responder::Kinopio(service) => {
                let _ = tokio::time::timeout(Duration::from_secs(5), service.stop()).await;
            }
            Responder::Raw(task) => drop(task),
        }
    }
}

/// Counts the messages of a subscription in a background task and notes the instant at
/// which each of a list of counts ("marks") is reached. Dropping it unsubscribes.
#[derive(Debug)]
pub(crate) struct Counter {
    count: Arc<AtomicU64>,
    marks: Vec<Option<oneshot::Receiver<Instant>>>,
    _task: AbortOnDrop,
}

impl Counter {
    /// Starts counting `stream`.
    pub(crate) fn spawn<S, T>(mut stream: S, marks: &[u64]) -> Counter
    where
        S: Stream<Item = T> + Unpin + Send + 'static,
        T: Send + 'static,
    {
        let count = Arc::new(AtomicU64::new(0));
        let (senders, receivers): (Vec<_>, Vec<_>) = marks.iter().map(|_| oneshot::channel::<Instant>()).unzip();
        let targets = marks.to_vec();
        let seen = Arc::clone(&count);
        let task = tokio::spawn(async move {
            let mut senders = senders.into_iter();
            let mut targets = targets.into_iter().peekable();
            let mut n = 0u64;
            while stream.next().await.is_some() {
                n += 1;
                seen.store(n, Ordering::Relaxed);
                while targets.peek().is_some_and(|&t| t <= n) {
                    targets.next();
                    if let Some(tx) = senders.next() {
                        let _ = tx.send(Instant::now());
                    }
                }
            }
        });
        Counter { count, marks: receivers.into_iter().map(Some).collect(), _task: AbortOnDrop(task) }
    }

    /// Messages counted so far.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Waits until mark `index` is reached, until `deadline` at the latest. `None` when
    /// the deadline passed first (or the subscription ended early).
    pub(crate) async fn reached(&mut self, index: usize, deadline: tokio::time::Instant) -> Option<Instant> {
        let rx = self.marks.get_mut(index)?.take()?;
        tokio::time::timeout_at(deadline, rx).await.ok()?.ok()
    }
}
