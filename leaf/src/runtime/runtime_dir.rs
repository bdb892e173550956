//! The leaf's working directory: a temporary one (removed on stop) or one the user gave
//! (must be empty or new; never removed — only the files the leaf wrote are deleted, so it
//! can be reused).

use std::path::{Path, PathBuf};

use super::error::LeafError;
use crate::tls::leaf_cert::{LEAF_CERT_FILE, LEAF_KEY_FILE};

/// nats-server config file name.
pub const CONFIG_FILE: &str = "leaf-nats.conf";
/// nats-server log file name (rotated copies get a suffix).
pub const LOG_FILE: &str = "leaf-nats.log";
/// File receiving nats-server's stdout and stderr (start-up errors before the log opens).
pub const OUTPUT_FILE: &str = "leaf-nats.out";
/// Prefix of the temporary files behind atomic writes (the same as the TLS module's).
pub const TEMP_PREFIX: &str = ".kinopio-tmp-";

/// A runtime directory and whether it is ours to delete.
#[derive(Debug)]
pub struct RuntimeDir {
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
    pub fn create(given: Option<&Path>) -> Result<RuntimeDir, LeafError> {
        let Some(given) = given else {
            let temp = tempfile::Builder::new().prefix("kinopio-leaf-").tempdir().map_err(|source| {
                LeafError::RuntimeDir { action: "create a temporary directory in", path: std::env::temp_dir(), source }
            })?;
            make_private(temp.path())?;
            return Ok(RuntimeDir { path: temp.path().to_path_buf(), temp: Some(temp), cleaned: false });
        };
        let path = crate::paths::expand_tilde(given.to_path_buf());
        let path = std::path::absolute(&path).unwrap_or(path);
        match std::fs::read_dir(&path) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(LeafError::RuntimeDirNotEmpty { path });
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
        Ok(RuntimeDir { path, temp: None, cleaned: false })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A file inside it.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// True when it is a temporary directory that cleanup removes.
    pub fn is_temporary(&self) -> bool {
        self.temp.is_some()
    }

    /// Removes the temporary directory, or the leaf's files from a given one. Idempotent.
    pub fn cleanup(&mut self) {
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
        let entries = match std::fs::read_dir(&self.path) {
            Ok(entries) => entries,
            Err(err) => {
                tracing::warn!(path = %self.path.display(), error = %err, "could not list the runtime directory");
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
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// True for the files a leaf writes into its runtime directory: the config, logs (and
/// rotated logs), the output file, the leaf certificate and key, temporary files of atomic
/// writes, and nats-server ports files. Pure.
pub fn is_leaf_file(name: &str) -> bool {
    let fixed = [CONFIG_FILE, LOG_FILE, OUTPUT_FILE, LEAF_CERT_FILE, LEAF_KEY_FILE];
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
