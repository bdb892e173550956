//! File helpers for TLS material: atomic writes with explicit permissions, directory
//! creation and reads that name the file in their errors.

use std::io::Write;
use std::path::Path;

use super::TlsError;

/// Permissions of private keys.
pub(crate) const PRIVATE_MODE: u32 = 0o600;
/// Permissions of certificates.
pub(crate) const PUBLIC_MODE: u32 = 0o644;

/// Creates `dir` (and parents) if missing; a directory we create is private (0700).
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), TlsError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|err| TlsError::io("create directory", dir, err))
}

/// Writes `contents` to `path` atomically: a temporary file in the same directory, created
/// with `mode`, is written, synced and renamed over `path`. Readers see the old file or the
/// new one, never a partial one.
pub(crate) fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    ensure_dir(dir)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".kinopio-tmp-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut temp = builder.tempfile_in(dir).map_err(|err| TlsError::io("create a temporary file in", dir, err))?;
    temp.write_all(contents)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|err| TlsError::io("write", temp.path(), err))?;
    temp.persist(path).map_err(|err| TlsError::io("replace", path, err.error))?;
    sync_dir(dir);
    Ok(())
}

/// Makes the rename durable (best effort; not supported everywhere).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Reads a whole file; a missing file is `Ok(None)`.
pub(crate) fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>, TlsError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(TlsError::io("read", path, err)),
    }
}

/// Tightens a private key file to 0600 if group or others can read it; returns true when it
/// changed something.
pub(crate) fn restrict_private_file(path: &Path) -> Result<bool, TlsError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let metadata = std::fs::metadata(path).map_err(|err| TlsError::io("inspect", path, err))?;
        if metadata.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(PRIVATE_MODE))
                .map_err(|err| TlsError::io("restrict permissions of", path, err))?;
            return Ok(true);
        }
        Ok(false)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(false)
    }
}
