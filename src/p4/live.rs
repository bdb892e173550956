//! Live channels (§6): leased, sequence-checked control inputs.

use std::sync::Arc;

use super::namespace::Core;

/// Live channel state of one namespace.
#[derive(Debug, Default)]
pub(crate) struct Live {}

impl Live {
    pub(crate) fn new() -> Self {
        Live::default()
    }
}

/// Gives every receiver a new session on the new connection (§6, §8.2).
pub(crate) async fn on_activation(_core: &Arc<Core>) {}
