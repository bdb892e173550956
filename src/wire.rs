//! Every cross-process contract of kinopio, in one place: what goes over a socket or into a
//! file another program reads. Nothing here does I/O.
//!
//! - [`json`]: the Python-compatible JSON writer (`json.dumps` formatting, float `repr`),
//!   Python's `float()` coercion and the canonical form beacon MACs are computed over — used
//!   by the payload encoding ([`crate::Payload`]), the beacons and the manifests.
//! - [`beacon`]: the election beacon (multicast group and port rule, the field table, both
//!   shapes, the Python-compatible encoding and a strict decoder), and the election states
//!   and roles as the wire spells them.
//! - [`manifest`]: the discovery manifest a leader serves over HTTPS, with its builder and its
//!   strict parser.
//! - [`mdns`]: the leader's mDNS advertisement (service type, TXT keys, names).
//! - [`protocol`]: notes on the kinopio-hub 0.1.1 wire contract that the code cites.
//! - [`p4`]: groundwork for protocol 4 (kinopio-hub 3.0.0): names and subjects, canonical
//!   JSON, variable records with their last-writer-wins order, message headers. Not yet used
//!   by the engine.
//!
//! The payload encoding of the 0.1.1 wire lives in the crate root ([`crate::Payload`], [`crate::decode_value`]), and subject names in
//! [`crate::name`]; both are described in [`protocol`].

pub mod beacon;
pub mod json;
pub mod manifest;
pub mod mdns;
pub mod p4;
pub mod protocol;
