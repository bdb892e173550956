//! Download-and-install of the pinned release into the cache, done while holding the
//! cache lock: fetch (with checksum), extract into a staging directory inside the cache,
//! run `--version`, then rename into place. Any failure removes everything it created.

use std::path::{Path, PathBuf};

use super::archive::{ExtractSpec, extract_binary};
use super::cache::{BinaryCache, TEMP_PREFIXES};
use super::download::{Downloader, Limits};
use super::error::BinaryError;
use super::options::{BinaryOptions, ProvisionEvent};
use super::platform::Platform;
use super::probe::probe_version;
use super::release::{CHECKSUMS_ASSET, ReleaseTable, Sha256Digest, checksum_for_asset, release_file_url};

/// Largest accepted `SHA256SUMS` file.
const MAX_SUMS_BYTES: u64 = 1024 * 1024;
/// Largest accepted uncompressed binary.
const MAX_BINARY_BYTES: u64 = 512 * 1024 * 1024;

/// Removes temporary entries left by a process that died mid-install. Only call this
/// while holding the cache lock (nobody else can be using them then).
pub(crate) fn sweep_leftovers(cache: &BinaryCache) {
    let Ok(entries) = std::fs::read_dir(cache.dir()) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !TEMP_PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let path = entry.path();
        let removed = match entry.file_type() {
            Ok(kind) if kind.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        match removed {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed a leftover of an interrupted nats-server install")
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not remove a leftover in the nats-server cache")
            }
        }
    }
}

/// Downloads, verifies and installs `table`'s release for `platform` into `cache`;
/// returns the installed binary. The caller holds the cache lock.
pub(crate) async fn download_and_install(
    cache: &BinaryCache,
    platform: Platform,
    table: &ReleaseTable,
    base_url: &str,
    options: &BinaryOptions,
) -> Result<PathBuf, BinaryError> {
    let version = table.version();
    let asset = platform.asset_name(version);
    let url = release_file_url(base_url, version, &asset)?;
    let timeouts = options.timeouts();
    let downloader = Downloader::new(
        Limits { connect_timeout: timeouts.connect, stall_timeout: timeouts.stall, max_bytes: options.max_bytes() },
        options.progress_wanted(),
    )?;

    let expected = match table.sha256(platform) {
        Some(digest) => digest,
        None => checksum_from_sums(&downloader, base_url, version, &asset, options).await?,
    };

    // 1. Download into a temporary file inside the cache (removed on drop).
    let archive = tempfile::Builder::new()
        .prefix(".download-")
        .tempfile_in(cache.dir())
        .map_err(|e| BinaryError::io("create a temporary file in", cache.dir(), e))?;
    let writer = archive.as_file().try_clone().map_err(|e| BinaryError::io("open", archive.path(), e))?;
    let mut writer = tokio::fs::File::from_std(writer);
    tracing::info!(%url, "downloading nats-server {version}");
    options.emit(ProvisionEvent::Downloading { url: url.to_string() });
    let fetched = downloader.fetch_to_file(&url, &mut writer, archive.path(), &asset).await?;
    drop(writer);
    if fetched.sha256 != expected {
        return Err(BinaryError::ChecksumMismatch {
            url: url.to_string(),
            expected: hex::encode(expected),
            actual: hex::encode(fetched.sha256),
        });
    }
    options.emit(ProvisionEvent::Verified {
        url: url.to_string(),
        bytes: fetched.bytes,
        sha256: hex::encode(fetched.sha256),
    });

    // 2. Extract the binary into a staging directory inside the cache (removed on drop).
    let staging = tempfile::Builder::new()
        .prefix(".install-")
        .tempdir_in(cache.dir())
        .map_err(|e| BinaryError::io("create a staging directory in", cache.dir(), e))?;
    let release_dir_name = platform.release_dir_name(version);
    let staged_dir = staging.path().join(&release_dir_name);
    let staged_binary = staged_dir.join(platform.binary_name());
    {
        let archive_path = archive.path().to_owned();
        let asset_name = asset.clone();
        let entry = platform.binary_entry(version);
        let dest = staged_binary.clone();
        let kind = platform.archive_kind();
        tokio::task::spawn_blocking(move || {
            extract_binary(
                &archive_path,
                ExtractSpec { asset: &asset_name, kind, entry: &entry, dest: &dest, max_size: MAX_BINARY_BYTES },
            )
        })
        .await
        .map_err(|e| BinaryError::CorruptArchive {
            asset: asset.clone(),
            reason: format!("the extraction task failed: {e}"),
        })??;
    }
    drop(archive);

    // 3. The binary must run and report the expected version.
    let reported = probe_version(&staged_binary, timeouts.version)
        .await
        .map_err(|reason| BinaryError::NotRunnable { path: staged_binary.clone(), reason })?;
    if reported != version {
        return Err(BinaryError::WrongVersion { expected: version.to_owned(), reported });
    }

    // 4. Record what was verified, so the cache is only trusted for what kinopio put there.
    super::cache::write_install_record(&staged_dir, &staged_binary)
        .map_err(|e| BinaryError::io("write the install record in", &staged_dir, e))?;

    // 5. Move into place atomically.
    let final_dir = cache.release_dir(platform, version);
    clear_broken_install(cache, &final_dir)?;
    std::fs::rename(&staged_dir, &final_dir).map_err(|e| BinaryError::io("move the new binary into", &final_dir, e))?;
    sync_dir(cache.dir());
    if let Err(e) = staging.close() {
        tracing::warn!(error = %e, "could not remove the empty staging directory");
    }
    let installed = cache.binary_path(platform, version);
    tracing::info!(path = %installed.display(), "installed nats-server {version}");
    options.emit(ProvisionEvent::Installed { path: installed.clone(), version: version.to_owned() });
    Ok(installed)
}

/// The asset's digest from the release's `SHA256SUMS`, failing closed.
async fn checksum_from_sums(
    downloader: &Downloader,
    base_url: &str,
    version: &str,
    asset: &str,
    options: &BinaryOptions,
) -> Result<Sha256Digest, BinaryError> {
    let sums_url = release_file_url(base_url, version, CHECKSUMS_ASSET)?;
    let unavailable = |reason: String| BinaryError::ChecksumUnavailable {
        asset: asset.to_owned(),
        url: sums_url.to_string(),
        reason,
    };
    tracing::info!(url = %sums_url, "no pinned SHA-256 for {asset}; fetching the release checksums");
    options.emit(ProvisionEvent::Downloading { url: sums_url.to_string() });
    let text = downloader.fetch_text(&sums_url, MAX_SUMS_BYTES).await.map_err(|e| {
        unavailable(match e {
            BinaryError::Http { reason, .. } => reason,
            BinaryError::TooLarge { limit, .. } => format!("larger than {limit} bytes"),
            other => other.to_string(),
        })
    })?;
    checksum_for_asset(&text, asset).map_err(|e| unavailable(e.to_string()))
}

/// A directory already at the install target holds no working binary (the cache lookup
/// rejected it), e.g. a half-extracted install by an older tool: move it aside and delete.
fn clear_broken_install(cache: &BinaryCache, target: &Path) -> Result<(), BinaryError> {
    let Ok(meta) = std::fs::symlink_metadata(target) else {
        return Ok(());
    };
    tracing::warn!(path = %target.display(), "replacing a broken nats-server install");
    let aside = tempfile::Builder::new()
        .prefix(".stale-")
        .tempdir_in(cache.dir())
        .map_err(|e| BinaryError::io("create a temporary directory in", cache.dir(), e))?;
    let moved = aside.path().join("old");
    std::fs::rename(target, &moved).map_err(|e| BinaryError::io("move aside the broken install", target, e))?;
    if !meta.is_dir() {
        let _ = std::fs::remove_file(&moved);
    }
    // Dropping `aside` deletes it with the old install inside.
    drop(aside);
    Ok(())
}

/// Makes a rename durable (best effort; a no-op where directories cannot be synced).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}
