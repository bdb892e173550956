//! The election node id of `kinopio leaf auto`: stable across restarts, yet unique among the
//! processes running at the same time on one host.
//!
//! The id is cached as plain text (no newline) in `<cache root>/auto-leaf-node-id`, the file
//! kinopio-hub 0.1.1 uses, so a device keeps its id (and its rank among equals) across
//! restarts. Unlike 0.1.1 ([0.1.1 weakness E3](kinopio::wire::protocol#known-weaknesses-of-011-that-kinopio-fixes)), the process holding the id keeps an exclusive lock on that
//! file for as long as it runs; a second process on the same host cannot take it and uses
//! the next slot, `auto-leaf-node-id.1`, `.2`, ... (each also cached and locked), so every
//! concurrently running process has an id of its own, and each slot's id is again stable
//! across restarts.
//!
//! New ids look like `kinopio-<8 random lowercase hex>-<pid>` (the 0.1.1 shape; the hex part is
//! random rather than a CRC of the clock).
//!
//! ```
//! use kinopio_leaf::auto::NodeIdentity;
//! let dir = tempfile::tempdir().unwrap();
//! let first = NodeIdentity::acquire(dir.path()).unwrap();
//! let second = NodeIdentity::acquire(dir.path()).unwrap(); // another process (or handle)
//! assert_ne!(first.id(), second.id());
//! assert_eq!(second.slot(), 1);
//! let id = first.id().to_owned();
//! drop(first);
//! assert_eq!(NodeIdentity::acquire(dir.path()).unwrap().id(), id); // stable
//! ```

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// File name of slot 0 (shared with kinopio-hub 0.1.1).
pub(crate) const NODE_ID_FILE: &str = "auto-leaf-node-id";
/// How many slots (concurrent processes per cache root) are tried.
pub(crate) const MAX_SLOTS: u32 = 64;
/// Longest cached id that is reused; longer content is replaced.
const MAX_ID_LEN: usize = 128;

/// A node id held by this process: the id plus the lock that keeps other processes off it.
/// The lock is released when this value is dropped (or the process ends).
#[derive(Debug)]
pub struct NodeIdentity {
    id: String,
    slot: u32,
    path: PathBuf,
    /// Open, exclusively locked id file (the lock lives as long as the handle).
    _file: File,
}

crate::error::error_with_kind! {
    /// Why no node id could be obtained.
    #[derive(Debug, thiserror::Error)]
    pub enum NodeIdError => NodeIdErrorKind {
        /// The cache directory or an id file could not be created, read, written or locked.
        #[error(
            "cannot {action} the auto-leaf node id file {path}: {source}; make the cache directory \
             writable or choose another cache directory"
        )]
        Io {
            /// What was being done.
            action: &'static str,
            /// The file or directory.
            path: PathBuf,
            /// The OS error.
            #[source]
            source: std::io::Error,
        },
        /// Every slot is locked by a running process.
        #[error(
            "all {slots} auto-leaf node id slots in {dir} are held by running processes; stop some \
             of them or give this one its own cache directory"
        )]
        AllSlotsBusy {
            /// The cache root.
            dir: PathBuf,
            /// Number of slots tried.
            slots: u32,
        },
    }
}

impl NodeIdentity {
    /// Takes the first free slot under `cache_root` (creating the directory and the file as
    /// needed) and returns its id: the cached one when the file holds a usable id, else a
    /// new one that is written to the file.
    pub fn acquire(cache_root: &Path) -> Result<NodeIdentity, NodeIdError> {
        std::fs::create_dir_all(cache_root).map_err(|source| NodeIdError::Io {
            action: "create the directory of",
            path: cache_root.to_owned(),
            source,
        })?;
        for slot in 0..MAX_SLOTS {
            let path = slot_path(cache_root, slot);
            let io = |action: &'static str, source| NodeIdError::Io { action, path: path.clone(), source };
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|source| io("open", source))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Error(source)) => return Err(io("lock", source)),
            }
            let mut text = String::new();
            let cached = match file.read_to_string(&mut text) {
                Ok(_) => usable_id(&text),
                // Not UTF-8: replace it.
                Err(err) if err.kind() == std::io::ErrorKind::InvalidData => None,
                Err(source) => return Err(io("read", source)),
            };
            let id = match cached {
                Some(id) => id,
                None => {
                    let id = new_node_id();
                    write_in_place(&mut file, &id).map_err(|source| io("write", source))?;
                    tracing::info!(path = %path.display(), node_id = %id, "created a new auto-leaf node id");
                    id
                }
            };
            return Ok(NodeIdentity { id, slot, path, _file: file });
        }
        Err(NodeIdError::AllSlotsBusy { dir: cache_root.to_owned(), slots: MAX_SLOTS })
    }

    /// The node id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The slot taken: 0 for `auto-leaf-node-id`, `n` for `auto-leaf-node-id.<n>`.
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// The locked id file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The file of a slot.
pub(crate) fn slot_path(cache_root: &Path, slot: u32) -> PathBuf {
    if slot == 0 { cache_root.join(NODE_ID_FILE) } else { cache_root.join(format!("{NODE_ID_FILE}.{slot}")) }
}

/// A fresh id: `kinopio-<8 random lowercase hex>-<pid>`.
pub(crate) fn new_node_id() -> String {
    format!("kinopio-{:08x}-{}", rand::random::<u32>(), std::process::id())
}

/// The cached content as an id, if usable: trimmed, non-empty, at most 128 bytes, printable
/// ASCII without spaces.
fn usable_id(text: &str) -> Option<String> {
    let id = text.trim();
    let usable = !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic());
    usable.then(|| id.to_owned())
}

fn write_in_place(file: &mut File, id: &str) -> std::io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(id.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_ids_are_trimmed_and_checked() {
        assert_eq!(usable_id("  kinopio-b4ecb34a-9036\n").as_deref(), Some("kinopio-b4ecb34a-9036"));
        assert_eq!(usable_id(""), None);
        assert_eq!(usable_id("two words"), None);
        assert_eq!(usable_id(&"x".repeat(129)), None);
        assert_eq!(usable_id("caf\u{e9}"), None);
    }

    #[test]
    fn new_ids_have_the_reference_shape() {
        let id = new_node_id();
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(parts.len(), 3, "{id}");
        assert_eq!(parts[0], "kinopio");
        assert_eq!(parts[1].len(), 8);
        assert!(parts[1].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(parts[2], std::process::id().to_string());
    }

    #[test]
    fn garbage_in_the_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(NODE_ID_FILE), b"\xff\xfe not an id").unwrap();
        let identity = NodeIdentity::acquire(dir.path()).unwrap();
        assert!(identity.id().starts_with("kinopio-"));
        assert_eq!(std::fs::read_to_string(identity.path()).unwrap(), identity.id());
    }

    #[test]
    fn a_python_id_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(NODE_ID_FILE), "kinopio-b4ecb34a-9036").unwrap();
        assert_eq!(NodeIdentity::acquire(dir.path()).unwrap().id(), "kinopio-b4ecb34a-9036");
    }
}
