//! `kinopio-leaf` runs a local `nats-server` as a leaf node bridged to upstream backbone
//! servers: it provisions the binary, renders its config, generates the local CA and the
//! short-lived WSS certificate, serves the discovery manifest over HTTPS and, in auto mode,
//! takes part in the LAN election so that one device per namespace runs the leaf.
//!
//! Start with [`runtime::LeafNode`] (one leaf, `kinopio leaf start`) or
//! [`auto::AutoLeaf`] (the LAN election, `kinopio leaf auto`).
//!
//! # Layout
//!
//! Each module has one job; data flows downward in this list (a module uses the ones below
//! it, never the ones above):
//!
//! - [`auto`]: the auto-leaf — the I/O shell around the election: multicast transport,
//!   node id, backbone RTT probe, mDNS record, and the worker that starts and stops a
//!   [`runtime::LeafNode`] while this node leads.
//! - [`election`]: the LAN election as a pure, clock-injected state machine
//!   ([`election::Election`]), the beacon wire format shared with kinopio-hub 0.1.1, its
//!   signing codec and the ranking rules. No I/O.
//! - [`runtime`]: one running leaf — [`runtime::LeafNode::start`] in stages, the supervisor
//!   task that restarts nats-server and keeps the status, certificate renewal.
//! - [`discovery_server`]: the HTTPS server for the leader manifest, `/healthz` and the status
//!   page (built by [`status_page`]: the report, its HTML, the monitor sampler).
//! - [`process`]: the nats-server child process: spawn, readiness, ports file, log, monitor.
//! - [`config`]: nats-server's configuration as data, and its text (pure).
//! - [`tls`]: the local CA, the leaf certificate and its renewal, supplied certificates,
//!   trust-store installation.
//! - [`binary`]: finding, downloading and verifying the nats-server binary.
//! - [`net`]: local networking helpers (LAN address, `host:port`, port probes).
//! - `error` (private): the crate's error style — `thiserror` enums with a derived
//!   `*ErrorKind`, messages in library terms (options, files), never CLI flags.
//! - `paths` (private): the cache root shared with the Python reference.
//!
//! The wire contracts (manifest, beacon JSON, mDNS record) are the client's:
//! [`kinopio::wire`].

pub mod auto;
pub mod binary;
pub mod config;
pub mod discovery_server;
pub mod election;
mod error;
/// The discovery manifest types live in the client crate (the client parses them too).
pub mod net;
mod paths;
pub mod process;
pub mod runtime;
pub mod status_page;
pub mod tls;
