//! A cross-process exclusive lock on the cache's `.lock` file (`fd-lock`), so that only
//! one process downloads into a cache directory at a time. The blocking OS lock is held
//! by a dedicated thread; dropping the [`CacheLock`] releases it.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::mpsc as async_mpsc;

use super::error::BinaryError;

/// Holds the cache lock until dropped.
#[derive(Debug)]
pub(crate) struct CacheLock {
    // Dropping the sender wakes the holder thread, which then unlocks.
    _release: mpsc::Sender<()>,
}

enum LockState {
    Waiting,
    Acquired,
    Failed(std::io::Error),
}

impl CacheLock {
    /// Takes the lock on `path` (creating the file), calling `on_wait` once if another
    /// holder makes us wait; gives up after `timeout`.
    pub(crate) async fn acquire(
        path: &Path,
        timeout: Duration,
        on_wait: impl FnOnce(),
    ) -> Result<CacheLock, BinaryError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| BinaryError::io("open the lock file", path, e))?;
        let (state_tx, mut state_rx) = async_mpsc::unbounded_channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let owned_path: PathBuf = path.to_owned();
        std::thread::Builder::new()
            .name("kinopio-cache-lock".into())
            .spawn(move || hold(file, state_tx, release_rx))
            .map_err(|e| BinaryError::io("start the lock thread for", &owned_path, e))?;

        let mut on_wait = Some(on_wait);
        let wait = async {
            while let Some(state) = state_rx.recv().await {
                match state {
                    LockState::Waiting => {
                        if let Some(f) = on_wait.take() {
                            f();
                        }
                    }
                    LockState::Acquired => return Ok(()),
                    LockState::Failed(e) => return Err(e),
                }
            }
            Err(std::io::Error::other("the lock thread stopped"))
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(())) => Ok(CacheLock { _release: release_tx }),
            Ok(Err(e)) => Err(BinaryError::io("lock", owned_path, e)),
            Err(_) => Err(BinaryError::io(
                "lock",
                owned_path,
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("another kinopio process held it for more than {timeout:?}"),
                ),
            )),
        }
    }
}

/// Lock-holder thread: lock, report, wait for release (or for the waiter to go away).
fn hold(file: std::fs::File, state: async_mpsc::UnboundedSender<LockState>, release: mpsc::Receiver<()>) {
    let mut lock = fd_lock::RwLock::new(file);
    match lock.try_write() {
        Ok(guard) => return serve(guard, &state, &release),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(e) => {
            let _ = state.send(LockState::Failed(e));
            return;
        }
    }
    if state.send(LockState::Waiting).is_err() {
        return;
    }
    match lock.write() {
        Ok(guard) => serve(guard, &state, &release),
        Err(e) => {
            let _ = state.send(LockState::Failed(e));
        }
    }
}

/// Holds `guard` until the [`CacheLock`] is dropped (or at once releases it if the waiter
/// already gave up).
fn serve(
    guard: fd_lock::RwLockWriteGuard<'_, std::fs::File>,
    state: &async_mpsc::UnboundedSender<LockState>,
    release: &mpsc::Receiver<()>,
) {
    if state.send(LockState::Acquired).is_err() {
        return;
    }
    // Blocks until the sender disconnects.
    let _ = release.recv();
    drop(guard);
}
