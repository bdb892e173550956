//! Safe extraction of the nats-server binary from a release archive (`.tar.gz` or `.zip`).
//!
//! Every entry's name is checked (no absolute paths, drive letters or `..`), every link
//! must stay inside the archive root, and the whole archive is rejected if any entry
//! fails. Only the expected binary (`nats-server-v<ver>-<platform>/nats-server`), which
//! must be a regular file, is written; nothing else touches the disk. The archive is read
//! to its end so that a truncated download fails its gzip/zip checksum.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::Path;

use flate2::read::GzDecoder;

use super::error::BinaryError;
use super::platform::ArchiveKind;

/// Why an archive entry name or link target is unsafe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathProblem {
    /// The path is absolute (`/x`, `\x`).
    Absolute,
    /// The path starts with a Windows drive or UNC prefix (`C:`).
    DrivePrefix,
    /// The path contains a `..` component.
    ParentDir,
    /// The path contains a NUL byte.
    Nul,
    /// A link's target leaves the archive root.
    LinkEscapes,
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathProblem::Absolute => "is an absolute path",
            PathProblem::DrivePrefix => "has a drive prefix",
            PathProblem::ParentDir => "contains `..`",
            PathProblem::Nul => "contains a NUL byte",
            PathProblem::LinkEscapes => "is a link pointing outside the archive",
        })
    }
}

/// Normalises an archive entry name to `/`-separated components without `.`, rejecting
/// names that could land outside the extraction directory. Both `/` and `\` count as
/// separators (Windows extractors honour `\`).
///
/// ```
/// use kinopio_leaf::binary::{normalize_entry_path, PathProblem};
/// assert_eq!(normalize_entry_path("./a//b/./c").as_deref(), Ok("a/b/c"));
/// assert_eq!(normalize_entry_path("a/../../evil"), Err(PathProblem::ParentDir));
/// assert_eq!(normalize_entry_path("/etc/passwd"), Err(PathProblem::Absolute));
/// ```
pub fn normalize_entry_path(name: &str) -> Result<String, PathProblem> {
    if name.contains('\0') {
        return Err(PathProblem::Nul);
    }
    if name.starts_with('/') || name.starts_with('\\') {
        return Err(PathProblem::Absolute);
    }
    let bytes = name.as_bytes();
    if bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic() {
        return Err(PathProblem::DrivePrefix);
    }
    let mut parts = Vec::new();
    for part in name.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => return Err(PathProblem::ParentDir),
            normal => parts.push(normal),
        }
    }
    Ok(parts.join("/"))
}

/// Checks that a symlink at `entry` (already normalised) pointing at `target` resolves,
/// lexically, inside the archive root.
///
/// ```
/// use kinopio_leaf::binary::{check_symlink_target, PathProblem};
/// assert_eq!(check_symlink_target("d/link", "../d/file"), Ok(()));
/// assert_eq!(check_symlink_target("d/link", "../../etc"), Err(PathProblem::LinkEscapes));
/// ```
pub fn check_symlink_target(entry: &str, target: &str) -> Result<(), PathProblem> {
    if target.contains('\0') {
        return Err(PathProblem::Nul);
    }
    if target.starts_with('/') || target.starts_with('\\') {
        return Err(PathProblem::LinkEscapes);
    }
    let bytes = target.as_bytes();
    if bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic() {
        return Err(PathProblem::LinkEscapes);
    }
    let mut stack: Vec<&str> = entry.split('/').filter(|p| !p.is_empty()).collect();
    stack.pop(); // the link itself; its target is relative to its directory
    for part in target.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                if stack.pop().is_none() {
                    return Err(PathProblem::LinkEscapes);
                }
            }
            normal => stack.push(normal),
        }
    }
    Ok(())
}

/// Checks a hard link's target, which tar stores relative to the archive root.
pub fn check_hardlink_target(target: &str) -> Result<(), PathProblem> {
    normalize_entry_path(target).map(|_| ()).map_err(|_| PathProblem::LinkEscapes)
}

/// What to extract and where.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExtractSpec<'a> {
    /// Asset name, for messages.
    pub asset: &'a str,
    /// Archive format.
    pub kind: ArchiveKind,
    /// The binary's entry name, e.g. `nats-server-v2.12.7-linux-amd64/nats-server`.
    pub entry: &'a str,
    /// The file to create (its parent directories are created).
    pub dest: &'a Path,
    /// Largest accepted uncompressed binary size.
    pub max_size: u64,
}

/// Extracts the expected binary from `archive` into `spec.dest` (mode 0755, synced).
/// Blocking; run it on a blocking thread.
pub(crate) fn extract_binary(archive: &Path, spec: ExtractSpec<'_>) -> Result<(), BinaryError> {
    let file = File::open(archive).map_err(|e| BinaryError::io("open", archive, e))?;
    let found = match spec.kind {
        ArchiveKind::TarGz => extract_tar_gz(file, spec)?,
        ArchiveKind::Zip => extract_zip(file, spec)?,
    };
    if !found {
        return Err(BinaryError::MissingBinary { asset: spec.asset.to_owned(), entry: spec.entry.to_owned() });
    }
    Ok(())
}

fn corrupt(spec: &ExtractSpec<'_>, reason: impl fmt::Display) -> BinaryError {
    BinaryError::CorruptArchive { asset: spec.asset.to_owned(), reason: reason.to_string() }
}

fn unsafe_entry(spec: &ExtractSpec<'_>, entry: &str, reason: impl fmt::Display) -> BinaryError {
    BinaryError::UnsafeArchive { asset: spec.asset.to_owned(), entry: entry.to_owned(), reason: reason.to_string() }
}

fn extract_tar_gz(file: File, spec: ExtractSpec<'_>) -> Result<bool, BinaryError> {
    let mut archive = tar::Archive::new(GzDecoder::new(BufReader::new(file)));
    let mut found = false;
    let entries = archive.entries().map_err(|e| corrupt(&spec, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| corrupt(&spec, e))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = normalize_entry_path(&raw).map_err(|p| unsafe_entry(&spec, &raw, p))?;
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry.link_name_bytes().map(|t| String::from_utf8_lossy(&t).into_owned()).unwrap_or_default();
            let check =
                if kind.is_symlink() { check_symlink_target(&path, &target) } else { check_hardlink_target(&target) };
            check.map_err(|p| unsafe_entry(&spec, &raw, format!("({target:?}) {p}")))?;
            if path == spec.entry {
                return Err(unsafe_entry(&spec, &raw, "is a link, not the binary itself"));
            }
        } else if kind.is_file() && path == spec.entry {
            if found {
                return Err(unsafe_entry(&spec, &raw, "appears twice"));
            }
            if entry.size() > spec.max_size {
                return Err(corrupt(
                    &spec,
                    format!("the binary is {} bytes, above the {}-byte limit", entry.size(), spec.max_size),
                ));
            }
            write_binary(&mut entry, &spec)?;
            found = true;
        }
    }
    // Read the gzip stream to its end so that its CRC and length trailer are checked.
    let mut rest = archive.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(|e| corrupt(&spec, e))?;
    Ok(found)
}

fn extract_zip(file: File, spec: ExtractSpec<'_>) -> Result<bool, BinaryError> {
    let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| corrupt(&spec, e))?;
    let mut found = false;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(|e| corrupt(&spec, e))?;
        let raw = entry.name().to_owned();
        let path = normalize_entry_path(&raw).map_err(|p| unsafe_entry(&spec, &raw, p))?;
        if entry.is_symlink() {
            let mut target = String::new();
            (&mut entry).take(4096).read_to_string(&mut target).map_err(|e| corrupt(&spec, e))?;
            check_symlink_target(&path, &target).map_err(|p| unsafe_entry(&spec, &raw, format!("({target:?}) {p}")))?;
            if path == spec.entry {
                return Err(unsafe_entry(&spec, &raw, "is a link, not the binary itself"));
            }
        } else if entry.is_file() && path == spec.entry {
            if found {
                return Err(unsafe_entry(&spec, &raw, "appears twice"));
            }
            if entry.size() > spec.max_size {
                return Err(corrupt(
                    &spec,
                    format!("the binary is {} bytes, above the {}-byte limit", entry.size(), spec.max_size),
                ));
            }
            write_binary(&mut entry, &spec)?;
            found = true;
        }
    }
    Ok(found)
}

/// Copies `reader` into a new `spec.dest` with mode 0755 and syncs it. Read errors mean a
/// corrupt archive; write errors are I/O errors.
fn write_binary(reader: &mut impl Read, spec: &ExtractSpec<'_>) -> Result<(), BinaryError> {
    let dest = spec.dest;
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| BinaryError::io("create", parent, e))?;
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o755);
    }
    let mut out = options.open(dest).map_err(|e| BinaryError::io("create", dest, e))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut written: u64 = 0;
    loop {
        let n = reader.read(&mut buf).map_err(|e| corrupt(spec, e))?;
        if n == 0 {
            break;
        }
        written += n as u64;
        if written > spec.max_size {
            return Err(corrupt(spec, format!("the binary is larger than the {}-byte limit", spec.max_size)));
        }
        out.write_all(&buf[..n]).map_err(|e| BinaryError::io("write", dest, e))?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // The creation mode is filtered by the umask; make it exactly 0755.
        out.set_permissions(std::fs::Permissions::from_mode(0o755))
            .map_err(|e| BinaryError::io("set permissions of", dest, e))?;
    }
    out.sync_all().map_err(|e| BinaryError::io("sync", dest, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binary::BinaryErrorKind;

    const ENTRY: &str = "nats-server-v2.12.7-linux-amd64/nats-server";

    #[test]
    fn normalizes_safe_names() {
        assert_eq!(normalize_entry_path(ENTRY).as_deref(), Ok(ENTRY));
        assert_eq!(normalize_entry_path("./x/./y/").as_deref(), Ok("x/y"));
        assert_eq!(normalize_entry_path("a\\b").as_deref(), Ok("a/b"));
        assert_eq!(normalize_entry_path("./").as_deref(), Ok(""));
        assert_eq!(normalize_entry_path("a..b/c").as_deref(), Ok("a..b/c"));
    }

    #[test]
    fn rejects_escaping_names() {
        assert_eq!(normalize_entry_path("../evil"), Err(PathProblem::ParentDir));
        assert_eq!(normalize_entry_path("a/../../evil"), Err(PathProblem::ParentDir));
        assert_eq!(normalize_entry_path("a\\..\\evil"), Err(PathProblem::ParentDir));
        assert_eq!(normalize_entry_path("/etc/passwd"), Err(PathProblem::Absolute));
        assert_eq!(normalize_entry_path("\\\\server\\x"), Err(PathProblem::Absolute));
        assert_eq!(normalize_entry_path("C:\\evil"), Err(PathProblem::DrivePrefix));
        assert_eq!(normalize_entry_path("c:evil"), Err(PathProblem::DrivePrefix));
        assert_eq!(normalize_entry_path("a\0b"), Err(PathProblem::Nul));
    }

    #[test]
    fn checks_link_targets() {
        assert_eq!(check_symlink_target("d/l", "f"), Ok(()));
        assert_eq!(check_symlink_target("d/e/l", "../../f"), Ok(()));
        assert_eq!(check_symlink_target("d/l", "../../f"), Err(PathProblem::LinkEscapes));
        assert_eq!(check_symlink_target("l", ".."), Err(PathProblem::LinkEscapes));
        assert_eq!(check_symlink_target("d/l", "/etc/passwd"), Err(PathProblem::LinkEscapes));
        assert_eq!(check_symlink_target("d/l", "C:/x"), Err(PathProblem::LinkEscapes));
        assert_eq!(check_symlink_target("d/l", "x/../../../y"), Err(PathProblem::LinkEscapes));
        assert_eq!(check_hardlink_target("d/f"), Ok(()));
        assert_eq!(check_hardlink_target("../f"), Err(PathProblem::LinkEscapes));
        assert_eq!(check_hardlink_target("/f"), Err(PathProblem::LinkEscapes));
    }

    /// Appends an entry whose name is written raw (the tar builder refuses unsafe names).
    fn raw_entry(
        builder: &mut tar::Builder<impl Write>,
        name: &str,
        kind: tar::EntryType,
        link: Option<&str>,
        data: &[u8],
    ) {
        let mut header = tar::Header::new_gnu();
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_entry_type(kind);
        header.set_mode(0o755);
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }

    fn tar_gz(entries: &[(&str, tar::EntryType, Option<&str>, &[u8])]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut builder = tar::Builder::new(gz);
        for (name, kind, link, data) in entries {
            raw_entry(&mut builder, name, *kind, *link, data);
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    fn extract(bytes: &[u8], kind: ArchiveKind) -> (tempfile::TempDir, Result<(), BinaryError>) {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("archive");
        std::fs::write(&archive, bytes).unwrap();
        let dest = dir.path().join("out").join(ENTRY);
        let result =
            extract_binary(&archive, ExtractSpec { asset: "asset", kind, entry: ENTRY, dest: &dest, max_size: 1024 });
        (dir, result)
    }

    use tar::EntryType as T;

    #[test]
    fn extracts_only_the_binary_from_tar_gz() {
        let bytes = tar_gz(&[
            ("nats-server-v2.12.7-linux-amd64/", T::Directory, None, b""),
            ("nats-server-v2.12.7-linux-amd64/README.md", T::Regular, None, b"readme"),
            (ENTRY, T::Regular, None, b"#!/bin/sh\n"),
            ("nats-server-v2.12.7-linux-amd64/link", T::Symlink, Some("nats-server"), b""),
        ]);
        let (dir, result) = extract(&bytes, ArchiveKind::TarGz);
        result.unwrap();
        let out = dir.path().join("out");
        assert_eq!(std::fs::read(out.join(ENTRY)).unwrap(), b"#!/bin/sh\n");
        let names: Vec<_> = std::fs::read_dir(out.join("nats-server-v2.12.7-linux-amd64"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["nats-server"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(out.join(ENTRY)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o755);
        }
    }

    #[test]
    fn rejects_unsafe_tar_entries_even_after_the_binary() {
        let cases: [(&str, T, Option<&str>); 5] = [
            ("../evil", T::Regular, None),
            ("/tmp/evil", T::Regular, None),
            ("nats-server-v2.12.7-linux-amd64/l", T::Symlink, Some("../../etc")),
            ("nats-server-v2.12.7-linux-amd64/l", T::Symlink, Some("/etc/passwd")),
            ("nats-server-v2.12.7-linux-amd64/h", T::Link, Some("../outside")),
        ];
        for (name, kind, link) in cases {
            let bytes = tar_gz(&[(ENTRY, T::Regular, None, b"bin"), (name, kind, link, b"x")]);
            let (dir, result) = extract(&bytes, ArchiveKind::TarGz);
            let err = result.unwrap_err();
            assert_eq!(err.kind(), BinaryErrorKind::UnsafeArchive, "{name}: {err}");
            assert!(!dir.path().join("evil").exists());
        }
    }

    #[test]
    fn rejects_binary_that_is_a_link_or_duplicated_or_too_big() {
        let link = tar_gz(&[(ENTRY, T::Symlink, Some("other"), b"")]);
        assert_eq!(extract(&link, ArchiveKind::TarGz).1.unwrap_err().kind(), BinaryErrorKind::UnsafeArchive);
        let twice = tar_gz(&[(ENTRY, T::Regular, None, b"a"), (ENTRY, T::Regular, None, b"b")]);
        assert_eq!(extract(&twice, ArchiveKind::TarGz).1.unwrap_err().kind(), BinaryErrorKind::UnsafeArchive);
        let big = vec![0u8; 2048];
        let too_big = tar_gz(&[(ENTRY, T::Regular, None, &big)]);
        assert_eq!(extract(&too_big, ArchiveKind::TarGz).1.unwrap_err().kind(), BinaryErrorKind::CorruptArchive);
    }

    #[test]
    fn reports_missing_binary_and_truncation() {
        let other = tar_gz(&[("nats-server-v2.12.7-linux-amd64/README.md", T::Regular, None, b"x")]);
        assert_eq!(extract(&other, ArchiveKind::TarGz).1.unwrap_err().kind(), BinaryErrorKind::MissingBinary);
        let good = tar_gz(&[(ENTRY, T::Regular, None, b"binary")]);
        for cut in [good.len() - 4, good.len() / 2, 5] {
            let err = extract(&good[..cut], ArchiveKind::TarGz).1.unwrap_err();
            assert_eq!(err.kind(), BinaryErrorKind::CorruptArchive, "cut at {cut}: {err}");
        }
    }

    fn zip_bytes(files: &[(&str, &[u8])], symlinks: &[(&str, &str)]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
        for (name, data) in files {
            writer.start_file(*name, options).unwrap();
            writer.write_all(data).unwrap();
        }
        for (name, target) in symlinks {
            writer.add_symlink(*name, *target, options).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    #[test]
    fn extracts_from_zip_and_rejects_unsafe_zip_entries() {
        let good = zip_bytes(&[(ENTRY, b"zipbin"), ("x/LICENSE", b"l")], &[]);
        let (dir, result) = extract(&good, ArchiveKind::Zip);
        result.unwrap();
        assert_eq!(std::fs::read(dir.path().join("out").join(ENTRY)).unwrap(), b"zipbin");

        let escaping = zip_bytes(&[(ENTRY, b"zipbin")], &[("x/l", "../../etc")]);
        let err = extract(&escaping, ArchiveKind::Zip).1.unwrap_err();
        assert_eq!(err.kind(), BinaryErrorKind::UnsafeArchive, "{err}");

        let dotdot = zip_bytes(&[(ENTRY, b"zipbin"), ("../evil", b"x")], &[]);
        let err = extract(&dotdot, ArchiveKind::Zip).1.unwrap_err();
        assert_eq!(err.kind(), BinaryErrorKind::UnsafeArchive, "{err}");

        let missing = zip_bytes(&[("x/LICENSE", b"l")], &[]);
        let err = extract(&missing, ArchiveKind::Zip).1.unwrap_err();
        assert_eq!(err.kind(), BinaryErrorKind::MissingBinary);

        let err = extract(&good[..good.len() / 2], ArchiveKind::Zip).1.unwrap_err();
        assert_eq!(err.kind(), BinaryErrorKind::CorruptArchive);
    }
}
