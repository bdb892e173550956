//! The late-joiner sync (§4.7).

use std::sync::Arc;

use super::Error;
use super::namespace::Core;

/// Sync state of one namespace.
#[derive(Debug, Default)]
pub(crate) struct Shared {}

/// Subscribes the sync subject, to answer other instances.
pub(crate) async fn start(_core: &Arc<Core>) -> Result<(), Error> {
    Ok(())
}

/// Requests a sync after an activation.
pub(crate) async fn on_activation(_core: &Arc<Core>) {}
