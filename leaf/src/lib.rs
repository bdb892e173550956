//! `kinopio-leaf` runs a local `nats-server` as a leaf node bridged to upstream backbone
//! servers: it provisions the binary, renders its config, generates the local CA and the
//! short-lived WSS certificate, serves the discovery manifest over HTTPS and, in auto mode,
//! takes part in the LAN election so that one device per namespace runs the leaf.

#![warn(missing_docs, unreachable_pub)]
#![warn(rustdoc::broken_intra_doc_links, rustdoc::private_intra_doc_links)]

pub mod auto;
pub mod binary;
pub mod config;
pub mod discovery_server;
pub mod election;
mod error;
/// The discovery manifest types live in the client crate (the client parses them too).
pub(crate) use kinopio::manifest;
pub mod net;
mod paths;
pub mod process;
pub mod runtime;
pub mod tls;
