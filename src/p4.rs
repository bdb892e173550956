//! Protocol 4: shared state, events, presence and live control, interoperable with the Python
//! package kinopio-hub 3.0.0 (and its JavaScript sibling), on the same [`Hub`](crate::Hub)
//! connection as the 0.1.1 API — latency selection, hot switch and local-leader discovery
//! apply to it unchanged.
//!
//! A [`Namespace`] (`hub.namespace("workshop")?`) holds the current value of every variable of
//! that namespace, replicated between every instance in it:
//!
//! - shared variables ([`SharedVar`]): set / delete / get / watch, last-writer-wins with
//!   logical versions, writes that work offline and go out on (re)connect, a late-joiner sync
//!   that says when it is complete;
//! - events and requests on topics (publish, subscribe, request, request_many, handle), with
//!   headers and queue groups;
//! - presence: health reports, and the list of the namespace's instances
//!   ([`Namespace::instances`], [`Namespace::watch_instances`]); a refused report is dropped
//!   and counted and never changes this instance's health (3.0.0's W8), and freshness honours
//!   a claimed report interval only up to [`MAX_FRESH_INTERVAL`] (W13);
//! - live channels: leased, sequence-checked control inputs.
//!
//! The wire rules (names, subjects, canonical JSON, records, headers) live in
//! [`crate::wire::p4`]; this module is the behaviour on top of them. Every error is a
//! [`Error`] whose kind is the reference's error code ([`ErrorCode`]).
//!
//! # Deliberate differences from 3.0.0
//!
//! None changes a byte a compliant peer sends or must accept; each is tested. In short (the
//! module and type docs say more):
//!
//! - **Sync** (`sync`): a round ends when answers go quiet, not after 2.4 s, so a late joiner
//!   of a 10,000-variable namespace gets every record (W10), and [`Namespace::wait_synced`]
//!   says when; an empty namespace is known at once (no responders); no every-15-s re-sync
//!   from every instance (W11) — one anti-entropy round per namespace per
//!   [`NamespaceOptions::repair_interval`] instead; a (re)connect republishes only
//!   unconfirmed writes, not the whole store.
//! - **Hostile input** (everywhere): a malformed record, report, sync request, message or
//!   live datagram, and a colliding record, are dropped and counted
//!   ([`Namespace::rejected`]) and never change this instance's health (W8); JSON is bounded
//!   in size and depth before parsing.
//! - **W9**: a maximal counter poisons only its own variable (see
//!   [`crate::wire::p4::record`]).
//! - **Messaging** (`messaging`): per-subscription queues of 65,536 messages / 64 MiB by
//!   default with every drop counted (W14); no hub-wide 128-subscription / 64-request /
//!   8 MiB budgets; handler errors send no reply like Python, or an opt-in error reply
//!   (W15); handlers cannot set reply headers; [`Namespace::drain`] drains messaging and confirms
//!   every write but does not close the hub, and cannot tell it runs inside a handler.
//! - **Presence** (`presence`): freshness honours a claimed interval up to
//!   [`MAX_FRESH_INTERVAL`] (W13); at the 1,024 cap the stalest row goes; reports never
//!   carry `mesh` and always fit 2,048 bytes; secrets are redacted before truncation.
//! - **Live** (`live`): leases that never carried data are evicted first (W16); a send
//!   result says [`Delivery::Flushed`] unless a kinopio receiver confirmed
//!   ([`Delivery::Accepted`], opt-in, ignored by Python receivers).
//! - Numbers have one JSON type here, so `5000.0` is accepted where Python wants an integer
//!   (`interval`, `seq`, `ttl_ms`), and `true` is not taken for `1`.
//!
//! # Layout
//! - `namespace`: the [`Namespace`] handle, its shared core (ids, options, counters) and the
//!   task that runs the activation sequence on every (re)connect.
//! - `store`: the pure record store (LWW, capacity, pending writes, clock).
//! - `sync`: the late-joiner sync (pure requester/responder rules plus their I/O).
//! - `variable`: [`SharedVar`].
//! - `messaging`: events, requests and handlers (`checks`: the pure outbound/inbound rules;
//!   `send`: publish and requests; `stream`: subscriptions and their bounded queues;
//!   `handler`: handlers).
//! - `presence`: health reports and the instance list.
//! - `live`: live channels.
//! - `value`: typed values (serde) to and from protocol-4 JSON.

mod error;
mod live;
mod messaging;
mod namespace;
mod presence;
mod store;
mod sync;
mod value;
mod variable;

pub use crate::wire::p4::ErrorCode;
pub use crate::wire::p4::canonical::Json;
pub use crate::wire::p4::headers::Headers;
pub use crate::wire::p4::record::{Capacity, Version};
pub use crate::wire::p4::report::{Connection as InstanceConnection, Health};
pub use error::Error;
pub use live::{Delivery, LiveChannel, LiveContext, LiveOptions, LiveReceiver, LiveSendOptions, LiveStats, LiveValue};
pub use messaging::{
    DEFAULT_PENDING_BYTES, DEFAULT_PENDING_MESSAGES, ERROR_HEADER, HandleOptions, Handler, MAX_MANY_BYTES,
    MAX_MANY_REPLIES, ManyReason, ManyReplies, Message, MessageStream, Reply, RequestOptions, SubscribeOptions,
};
pub(crate) use namespace::Registry;
pub use namespace::{Namespace, NamespaceOptions};
pub use presence::{Instance, InstanceEvent, MAX_FRESH_INTERVAL, MAX_INSTANCES, Online};
pub use sync::{SyncEnd, SyncReport};
pub use variable::{Entry, Meta, SharedVar, Update};
