//! # kinopio
//!
//! Remote variables and functions that feel local, on top of NATS.
//!
//! A [`Hub`] connects to one of several NATS servers (ranked by measured round-trip time,
//! re-probed in the background, hot-switched without losing anything). `hub.scope("chat")?
//! .variable("messages")?` is the subject `chat.messages`; a [`Variable`] can
//! [publish](Variable::publish), [subscribe](Variable::subscribe),
//! [request](Variable::request) and [serve](Variable::serve), and remembers the latest
//! [value](Variable::value) it has seen.
//!
//! kinopio speaks the wire protocol of the Python package kinopio-hub 0.1.1: subjects,
//! payload encoding ([`Payload`], [`decode_value`]), the `<subject>.service` queue group and the
//! `{"error": true, "message": ...}` error reply are identical, so mixed fleets work.
//!
//! On the same hub it also speaks protocol 4, the wire of kinopio-hub 3.0.0: namespaces of
//! shared, replicated variables, events and requests with headers, presence and live
//! channels — see [`p4`] and [`Hub::namespace`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use futures::StreamExt;
//! let hub = kinopio::Hub::connect(kinopio::HubOptions::new()).await?;
//! let calc = hub.scope("math")?.variable("double")?;
//! calc.serve(|req: kinopio::Message| async move {
//!     Ok::<_, kinopio::DecodeError>(req.decode::<i64>()? * 2)
//! }).await?;
//! let answer: i64 = calc.request(&21).await?;
//! assert_eq!(answer, 42);
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! Data flows downward: the handles call the engine; the engine's driver asks the pure
//! policies what to do and performs it; nothing below calls back up.
//!
//! - Handles: `hub` ([`Hub`]), `scope` ([`Scope`], and `Hub::scope`), `variable`
//!   ([`Variable`], `Hub::variable`, `Hub::subscribe_pattern`), `subscription`
//!   ([`Subscription`], [`Message`]), `service` ([`Service`]); `variable_state` keeps a
//!   subject's latest value for them.
//! - `engine`: the connection engine — connections, the registry of live subscriptions,
//!   publishing, requests, and its driver task (first connection, events, re-probes, hot
//!   switches, local-leader switches).
//! - Pure policies with an injectable clock: `selection::ranking` (when a faster server is
//!   worth a switch) and `discovery::policy` (when to take, keep or leave a local leader);
//!   their executors are the engine's probes and [`discovery`]'s HTTPS fetcher and mDNS
//!   browser.
//! - [`p4`]: the protocol-4 API (namespaces, shared variables, sync, events, presence, live
//!   channels) on the same engine; it watches the engine's activations to republish and sync.
//! - [`wire`]: every cross-process contract (JSON writer, manifest, beacon, mDNS record), the
//!   protocol notes and protocol 4's wire rules ([`wire::p4`]); `codec` is the 0.1.1 payload
//!   encoding, [`name`] its subject rules.
//! - [`trust`]: a namespace's CA and LAN token, derived from its secret.
//! - `options`, `error`, `state`, `server`, `backoff`, `tls`: options, errors, events and
//!   small helpers, re-exported at the crate root where public.

mod backoff;
mod codec;
pub mod discovery;
mod engine;
mod error;
mod hub;
pub mod name;
mod options;
pub mod p4;
mod scope;
mod selection;
mod server;
mod service;
mod state;
mod subscription;
mod tls;
pub mod trust;
mod value;
mod variable;
mod variable_state;
pub mod wire;

pub use codec::{Codec, DecodeError, EncodeError, Encoding, IntoReply, Payload, decode, decode_value};
pub use engine::Checkpoint;
pub use error::{
    ConnectError, ConnectErrorKind, Error, PublishError, PublishErrorKind, RequestError, RequestErrorKind,
    SubscribeError, SubscribeErrorKind, SwitchError, SwitchErrorKind,
};
pub use hub::Hub;
pub use options::{Auth, Confirmation, DiscoveryOptions, HubOptions};
pub use scope::Scope;
pub use selection::{ProbeResult, SelectionMode, UnknownSelectionMode};
pub use server::{ServerUrl, ServerUrlError};
pub use service::{ERROR_HEADER, Service};
pub use state::{ConnectionState, HubEvent, SwitchReason};
pub use subscription::{HeaderMap, Message, Subject, Subscription};
pub use value::{Value, ValueError};
pub use variable::{RequestOptions, ValueWatch, Variable};

/// The README's Rust examples, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
