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

#![warn(missing_docs, unreachable_pub)]
#![warn(rustdoc::broken_intra_doc_links, rustdoc::private_intra_doc_links)]

mod backoff;
mod codec;
pub mod discovery;
mod engine;
mod error;
mod hub;
pub mod name;
mod options;
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
