//! The leaf's working directory: a temporary one (removed on stop) or one the user gave
//! (must be empty or new; never removed — only the files the leaf wrote are deleted, so it
//! can be reused).

use std::path::{Path, PathBuf};

use super::error::LeafError;
use crate::tls::leaf_cert::{LEAF_CERT_FILE, LEAF_KEY_FILE};

/// nats-server config file name.
pub(crate) const CONFIG_FILE: &str = "leaf-nats.conf";
/// nats-server log file name (rotated copies get a suffix).
pub(crate) const LOG_FILE: &str = "leaf-nats.log";
/// File receiving nats-server's stdout and stderr (start-up errors before the log opens).
pub(crate) const OUTPUT_FILE: &str = "leaf-nats.out";
/// The copy of the user's LAN authorization file that the config includes.
pub(crate) const LAN_AUTHORIZATION_FILE: &str = "lan-authorization.conf";
/// Prefix of the temporary files behind atomic writes (the same as the TLS module's).
pub(crate) const TEMP_PREFIX: &str = ".kinopio-tmp-";
/// The file holding the pid of the process that owns the directory: a leaf that died
/// without cleaning up (SIGKILL, power loss) is recognised by it and cleaned on the next start.
pub(crate) const OWNER_FILE: &str = "leaf.pid";
/// Prefix of temporary runtime directories.
const TEMP_DIR_PREFIX: &str = "kinopio-leaf-";

/// A runtime directory and whether it is ours to delete.
#[derive(Debug)]
pub(crate) struct RuntimeDir {
    path: PathBuf,
    temp: Option<tempfile::TempDir>,
    cleaned: bool,
}

/// Mode 0700: the config file inside may hold backbone credentials, so only the leaf's user
/// may enter.
fn make_private(path: &Path) -> Result<(), LeafError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(|source| {
            LeafError::RuntimeDir { action: "make the runtime directory private (0700)", path: path.to_owned(), source }
        })?;
    }
    Ok(())
}

impl RuntimeDir {
    /// Creates a temporary `kinopio-leaf-*` directory, or prepares `given` (created with
    /// its parents if missing; refused when it holds anything).
    pub(crate) fn create(given: Option<&Path>) -> Result<RuntimeDir, LeafError> {
        let Some(given) = given else {
            remove_stale_temp_dirs(&std::env::temp_dir());
            let temp = tempfile::Builder::new().prefix(TEMP_DIR_PREFIX).tempdir().map_err(|source| {
                LeafError::RuntimeDir { action: "create a temporary directory in", path: std::env::temp_dir(), source }
            })?;
            make_private(temp.path())?;
            write_owner(temp.path())?;
            return Ok(RuntimeDir { path: temp.path().to_path_buf(), temp: Some(temp), cleaned: false });
        };
        let path = crate::paths::expand_tilde(given.to_path_buf());
        let path = std::path::absolute(&path).unwrap_or(path);
        match std::fs::read_dir(&path) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    // Left by a leaf that died without cleaning up: clean it now.
                    if !is_stale(&path) {
                        return Err(LeafError::RuntimeDirNotEmpty { path });
                    }
                    tracing::info!(path = %path.display(), "cleaning the files of a leaf that did not stop cleanly");
                    remove_leaf_files(&path);
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&path).map_err(|source| LeafError::RuntimeDir {
                    action: "create the runtime directory",
                    path: path.clone(),
                    source,
                })?;
            }
            Err(source) => {
                return Err(LeafError::RuntimeDir { action: "read the runtime directory", path, source });
            }
        }
        make_private(&path)?;
        write_owner(&path)?;
        Ok(RuntimeDir { path, temp: None, cleaned: false })
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A file inside it.
    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    #[cfg(test)]
    /// True when it is a temporary directory that cleanup removes.
    pub(crate) fn is_temporary(&self) -> bool {
        self.temp.is_some()
    }

    /// Removes the temporary directory, or the leaf's files from a given one. Idempotent.
    pub(crate) fn cleanup(&mut self) {
        if self.cleaned {
            return;
        }
        self.cleaned = true;
        if let Some(temp) = self.temp.take() {
            let path = temp.path().to_path_buf();
            if let Err(err) = temp.close() {
                tracing::warn!(path = %path.display(), error = %err, "could not remove the runtime directory");
            }
            return;
        }
        remove_leaf_files(&self.path);
    }
}

/// Removes the files a leaf writes from `dir`.
fn remove_leaf_files(dir: &Path) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => {
            tracing::warn!(path = %dir.display(), error = %err, "could not list the runtime directory");
            return;
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_leaf_file(name) {
            let path = entry.path();
            if let Err(err) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %err, "could not remove a runtime file");
            }
        }
    }
}

fn write_owner(dir: &Path) -> Result<(), LeafError> {
    let path = dir.join(OWNER_FILE);
    std::fs::write(&path, std::process::id().to_string()).map_err(|source| LeafError::RuntimeDir {
        action: "write the owner file",
        path,
        source,
    })
}

/// True when `dir` holds only a leaf's files and the process named in its owner file is gone.
fn is_stale(dir: &Path) -> bool {
    let Ok(owner) = std::fs::read_to_string(dir.join(OWNER_FILE)) else { return false };
    let Ok(pid) = owner.trim().parse::<i32>() else { return false };
    if process_exists(pid) {
        return false;
    }
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().all(|e| e.file_name().to_str().is_some_and(is_leaf_file)))
        .unwrap_or(false)
}

fn process_exists(pid: i32) -> bool {
    #[cfg(unix)]
    {
        // EPERM: it exists, as another user's process.
        !matches!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None), Err(nix::errno::Errno::ESRCH))
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// Removes this user's temporary runtime directories whose leaf died without cleaning up.
fn remove_stale_temp_dirs(temp_root: &Path) {
    let Ok(entries) = std::fs::read_dir(temp_root) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_str().is_some_and(|n| n.starts_with(TEMP_DIR_PREFIX)) {
            continue;
        }
        let path = entry.path();
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            if !meta.is_dir() || meta.uid() != nix::unistd::geteuid().as_raw() {
                continue;
            }
        }
        if is_stale(&path) {
            tracing::info!(path = %path.display(), "removing the runtime directory of a leaf that did not stop cleanly");
            remove_leaf_files(&path);
            let _ = std::fs::remove_dir(&path);
        }
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// True for the files a leaf writes into its runtime directory: the config, logs (and
/// rotated logs), the output file, the leaf certificate and key, temporary files of atomic
/// writes, and nats-server ports files. Pure.
pub(crate) fn is_leaf_file(name: &str) -> bool {
    let fixed = [CONFIG_FILE, LOG_FILE, OUTPUT_FILE, LEAF_CERT_FILE, LEAF_KEY_FILE, OWNER_FILE, LAN_AUTHORIZATION_FILE];
    fixed.contains(&name)
        || name.starts_with(&format!("{LOG_FILE}."))
        || (name.starts_with("nats-server_") && name.ends_with(".ports"))
        || name.starts_with(TEMP_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_dir_is_removed() {
        let mut dir = RuntimeDir::create(None).unwrap();
        let path = dir.path().to_path_buf();
        assert!(dir.is_temporary());
        std::fs::write(dir.file(CONFIG_FILE), "x").unwrap();
        dir.cleanup();
        assert!(!path.exists());
    }

    #[test]
    fn given_dir_is_kept_and_only_leaf_files_go() {
        let parent = tempfile::tempdir().unwrap();
        let given = parent.path().join("a/b");
        let dir = RuntimeDir::create(Some(&given)).unwrap();
        assert!(!dir.is_temporary());
        for name in [
            CONFIG_FILE,
            LOG_FILE,
            "leaf-nats.log.2026-11-22T10-00-00",
            OUTPUT_FILE,
            LEAF_KEY_FILE,
            "nats-server_77.ports",
            ".kinopio-tmp-abc",
        ] {
            std::fs::write(dir.file(name), "x").unwrap();
        }
        std::fs::write(dir.file("notes.txt"), "mine").unwrap();
        drop(dir);
        let left: Vec<String> =
            std::fs::read_dir(&given).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(left, ["notes.txt"]);
    }

    #[test]
    fn non_empty_given_dir_is_refused() {
        let parent = tempfile::tempdir().unwrap();
        std::fs::write(parent.path().join("x"), "x").unwrap();
        let err = RuntimeDir::create(Some(parent.path())).unwrap_err();
        assert!(matches!(err, LeafError::RuntimeDirNotEmpty { .. }), "{err}");
        assert!(parent.path().join("x").exists());
    }
}
