//! The record store of one namespace (§4): the pure last-writer-wins store, and its I/O —
//! the record subscription and the republish on every activation.

use std::sync::{Arc, Mutex};

use super::Error;
use super::namespace::Core;
use crate::wire::p4::record::Capacity;

/// What a health report says about the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Stored names, live and deleted.
    pub variables: u64,
    /// Local writes not yet confirmed by the server.
    pub pending_variables: u64,
    /// Encoded bytes of those writes.
    pub pending_bytes: u64,
}

/// The store, shared by the namespace's handles.
#[derive(Debug)]
pub(crate) struct Shared(Mutex<Capacity>);

impl Shared {
    pub(crate) fn new(capacity: Capacity) -> Self {
        Shared(Mutex::new(capacity))
    }

    /// The store's counts for health reports.
    pub(crate) fn summary(&self) -> Summary {
        Summary::default()
    }
}

/// Subscribes the namespace's record subjects.
pub(crate) async fn start(_core: &Arc<Core>) -> Result<(), Error> {
    Ok(())
}

/// Republishes every stored record (§4.5 step 2).
pub(crate) async fn on_activation(_core: &Arc<Core>) {}
