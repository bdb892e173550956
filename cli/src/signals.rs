//! Waiting for the signals that end a long-running command: SIGINT (Ctrl-C) and SIGTERM.

use std::future::Future;

/// Resolves on SIGINT or SIGTERM (on non-Unix platforms: Ctrl-C). The handlers are installed
/// when this is called, not when the future is first polled, so a signal that arrives before
/// the caller starts waiting is not lost (nor does it kill the process with the default
/// action). Must be called inside the runtime.
pub(crate) fn shutdown() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::interrupt()).ok().zip(signal(SignalKind::terminate()).ok())
    };
    async move {
        #[cfg(unix)]
        if let Some((mut int, mut term)) = signals {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
