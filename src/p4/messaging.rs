//! Events and requests (§5): publish, subscribe, request, request_many and handle on topics,
//! with headers and queue groups.

/// Messaging state of one namespace.
#[derive(Debug, Default)]
pub(crate) struct Messaging {}

impl Messaging {
    pub(crate) fn new() -> Self {
        Messaging::default()
    }
}
