//! The receive loop every listening command shares (`sub`, `sub --namespace`, `live recv`):
//! until the stream ends, `--count` items arrived, `--timeout-ms` passed, or Ctrl-C.

use std::time::Duration;

use futures::{Stream, StreamExt};

use crate::output::Failure;

/// How a listen ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Listened {
    /// Items received.
    pub received: u64,
    /// `--timeout-ms` passed before the stream ended or `--count` was reached.
    pub timed_out: bool,
}

/// Receives from `stream`, calling `each` for every item, until it ends, `count` items
/// arrived, `timeout_ms` passed or Ctrl-C.
pub(crate) async fn listen<S, F>(stream: &mut S, count: Option<u64>, timeout_ms: Option<u64>, mut each: F) -> Listened
where
    S: Stream + Unpin,
    F: FnMut(S::Item),
{
    let shutdown = crate::signals::shutdown();
    tokio::pin!(shutdown);
    let limit = tokio::time::sleep(timeout_ms.map_or(Duration::from_secs(86_400 * 365), Duration::from_millis));
    tokio::pin!(limit);
    let mut listened = Listened { received: 0, timed_out: false };
    while count.is_none_or(|n| listened.received < n) {
        let next = tokio::select! {
            item = stream.next() => item,
            () = &mut shutdown => None,
            () = &mut limit => { listened.timed_out = true; None }
        };
        let Some(item) = next else { break };
        each(item);
        listened.received += 1;
    }
    listened
}

impl Listened {
    /// Exit code 4 when `--count N --timeout-ms T` ended with fewer than N `what`.
    pub(crate) fn check(
        &self,
        count: Option<u64>,
        timeout_ms: Option<u64>,
        what: &str,
        json: bool,
    ) -> Result<(), Failure> {
        match count {
            Some(n) if self.timed_out && self.received < n => Err(Failure::new(
                4,
                "timed-out",
                format!("received {} of {n} {what} in {} ms", self.received, timeout_ms.unwrap_or_default()),
                json,
            )),
            _ => Ok(()),
        }
    }
}
