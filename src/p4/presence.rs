//! Presence (§7): this instance's health reports and the list of the namespace's instances.

use std::sync::Arc;

use super::Error;
use super::namespace::Core;

/// Presence state of one namespace.
#[derive(Debug, Default)]
pub(crate) struct Presence {}

impl Presence {
    pub(crate) fn new() -> Self {
        Presence::default()
    }
}

/// Subscribes the namespace's health reports and starts the report timer.
pub(crate) async fn start(_core: &Arc<Core>) -> Result<(), Error> {
    Ok(())
}

/// How many instances of the namespace are online, this one included (at least 1).
pub(crate) fn online_instances(_core: &Core) -> usize {
    1
}

/// Reports health at once after an activation (§4.5 step 4).
pub(crate) async fn on_activation(_core: &Arc<Core>) {}
