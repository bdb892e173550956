//! nats-server provisioning against a real HTTP server on 127.0.0.1 serving archives built
//! from the real nats-server binary (or hostile ones), with temporary cache directories.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support_binary;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kinopio_leaf::binary::{
    BinaryError, BinaryErrorKind, BinaryOptions, BinarySource, CHECKSUMS_ASSET, ExplicitOrigin, ExplicitPathProblem,
    ProvisionEvent, ReleaseTable, resolve,
};
use support_binary::{
    Archive, Entry, ReleaseServer, Reply, leftovers, platform, real_archive, real_binary, real_version,
    release_archive, release_dir, release_path, script, set_mode, tar_gz, write_executable,
};
use tempfile::TempDir;

// Every wait in these tests is bounded by this (downloads and unpacking are slow).
use kinopio_test_support::SLOW_WAIT as WAIT;

/// A release table for `version` pinning `sha256` for this platform.
fn table(version: &str, sha256: [u8; 32]) -> ReleaseTable {
    ReleaseTable::new(version).unwrap().with_sha256(platform(), sha256)
}

/// Options isolated from the environment: temp cache root, the test server, no PATH.
fn options(root: &Path, server: &ReleaseServer, table: ReleaseTable) -> BinaryOptions {
    BinaryOptions::new()
        .cache_dir(root)
        .base_url(server.base_url())
        .release(table)
        .progress(false)
        .connect_timeout(Duration::from_secs(5))
        .stall_timeout(Duration::from_secs(10))
}

fn asset(version: &str) -> String {
    platform().asset_name(version)
}

/// A server that serves `archive` as `version`'s asset.
async fn serve_archive(version: &str, archive: &Archive) -> ReleaseServer {
    ReleaseServer::start(vec![(release_path(version, &asset(version)), Reply::Body(archive.bytes.clone()))]).await
}

async fn resolve_bounded(options: &BinaryOptions) -> Result<kinopio_leaf::binary::ResolvedBinary, BinaryError> {
    tokio::time::timeout(WAIT, resolve(options)).await.expect("resolve did not finish in time")
}

/// Asserts a failed provisioning left nothing but the lock file, in the cache dir and
/// around it, and that its message tells how to supply a binary instead.
fn assert_failed_cleanly(root: &TempDir, err: &BinaryError, kind: BinaryErrorKind) {
    assert_eq!(err.kind(), kind, "unexpected error: {err}");
    let msg = err.to_string();
    assert!(
        msg.contains("binary_path option") && msg.contains("KINOPIO_NATS_SERVER"),
        "message does not say how to supply a binary: {msg}"
    );
    let cache = root.path().join("nats-server");
    assert_eq!(leftovers(&cache), Vec::<String>::new(), "leftovers after: {err}");
    let root_entries: Vec<String> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(root_entries.iter().all(|n| n == "nats-server"), "something escaped the cache dir: {root_entries:?}");
}

fn run_version(path: &Path) -> String {
    let out = std::process::Command::new(path).arg("--version").output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha256_file(path: &Path) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(path).unwrap()).into()
}

/// Puts the real binary into the cache as if it had been installed (a symlink).
fn seed_cache(root: &Path, version: &str) -> PathBuf {
    let dir = root.join("nats-server").join(release_dir(version));
    std::fs::create_dir_all(&dir).unwrap();
    let binary = dir.join(platform().binary_name());
    std::os::unix::fs::symlink(real_binary(), &binary).unwrap();
    kinopio_leaf::binary::write_install_record(&dir, &binary).unwrap();
    binary
}

#[tokio::test]
async fn downloads_verifies_installs_then_uses_the_cache() {
    let version = real_version();
    let archive = real_archive();
    let server = serve_archive(version, archive).await;
    let root = TempDir::new().unwrap();
    // A leftover of a process that died mid-install, to be swept under the lock.
    let cache = root.path().join("nats-server");
    std::fs::create_dir_all(cache.join(".install-dead/x")).unwrap();
    std::fs::write(cache.join(".download-dead"), b"partial").unwrap();
    let (events_tx, mut events_rx) = tokio::sync::mpsc::unbounded_channel();
    let opts = options(root.path(), &server, table(version, archive.sha256)).events(events_tx);

    let resolved = resolve_bounded(&opts).await.unwrap();
    assert_eq!(resolved.source, BinarySource::Downloaded);
    assert_eq!(resolved.version, version);
    let expected_path = cache.join(release_dir(version)).join("nats-server");
    assert_eq!(resolved.path, expected_path);
    assert_eq!(sha256_file(&resolved.path), sha256_file(&real_binary()));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&resolved.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
    }
    assert!(run_version(&resolved.path).contains(&format!("v{version}")));
    assert_eq!(leftovers(&cache), [release_dir(version)]);
    let mut installed: Vec<_> =
        std::fs::read_dir(cache.join(release_dir(version))).unwrap().map(|e| e.unwrap().file_name()).collect();
    installed.sort();
    assert_eq!(installed, ["kinopio-install.json", "nats-server"], "only the binary is extracted, and its record");
    assert_eq!(server.hits(&release_path(version, &asset(version))), 1);

    let mut events = Vec::new();
    while let Ok(event) = events_rx.try_recv() {
        events.push(event);
    }
    assert!(matches!(events.first(), Some(ProvisionEvent::Downloading { .. })), "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ProvisionEvent::Verified { bytes, .. } if *bytes == archive.bytes.len() as u64))
    );
    assert!(matches!(events.last(), Some(ProvisionEvent::Installed { path, .. }) if *path == expected_path));

    let again = resolve_bounded(&opts).await.unwrap();
    assert_eq!(again.source, BinarySource::Cached);
    assert_eq!(again.path, expected_path);
    assert_eq!(again.version, version);
    assert_eq!(server.total_hits(), 1, "the cached binary must not trigger a request");
}

#[tokio::test]
async fn checksum_mismatch_installs_nothing() {
    let version = real_version();
    let server = serve_archive(version, real_archive()).await;
    let root = TempDir::new().unwrap();
    let mut wrong = real_archive().sha256;
    wrong[0] ^= 0xff;
    let err = resolve_bounded(&options(root.path(), &server, table(version, wrong))).await.unwrap_err();
    assert_failed_cleanly(&root, &err, BinaryErrorKind::ChecksumMismatch);
    assert!(err.to_string().contains(&hex::encode(wrong)), "{err}");
}

#[tokio::test]
async fn truncated_archive_is_rejected_even_with_a_matching_sum() {
    let version = real_version();
    let full = &real_archive().bytes;
    let truncated = Archive::new(full[..full.len() / 2].to_vec());
    let server = serve_archive(version, &truncated).await;
    let root = TempDir::new().unwrap();
    let err = resolve_bounded(&options(root.path(), &server, table(version, truncated.sha256))).await.unwrap_err();
    assert_failed_cleanly(&root, &err, BinaryErrorKind::CorruptArchive);
}

#[tokio::test]
async fn connection_cut_mid_download_is_an_http_error() {
    let version = real_version();
    let archive = real_archive();
    let server = ReleaseServer::start(vec![(
        release_path(version, &asset(version)),
        Reply::CutShort { body: archive.bytes.clone(), send: archive.bytes.len() / 3 },
    )])
    .await;
    let root = TempDir::new().unwrap();
    let err = resolve_bounded(&options(root.path(), &server, table(version, archive.sha256))).await.unwrap_err();
    assert_failed_cleanly(&root, &err, BinaryErrorKind::Http);
}

#[tokio::test]
async fn archives_with_escaping_entries_are_rejected() {
    let version = "9.1.0";
    let dir = release_dir(version);
    let binary = Entry::File(format!("{dir}/nats-server"), script("echo nats-server: v9.1.0"));
    let hostile = [
        Entry::File("../evil".into(), b"pwned".to_vec()),
        Entry::File(format!("{dir}/../../evil"), b"pwned".to_vec()),
        Entry::File("/tmp/kinopio-test-evil-absolute".into(), b"pwned".to_vec()),
        Entry::Symlink(format!("{dir}/escape"), "../../..".into()),
        Entry::Symlink(format!("{dir}/abs"), "/etc/passwd".into()),
    ];
    for bad in hostile {
        // The hostile entry comes after the binary so a lazy extractor would be fooled.
        let archive = Archive::new(tar_gz(&[binary.clone(), bad.clone()]));
        let server = serve_archive(version, &archive).await;
        let root = TempDir::new().unwrap();
        let err = resolve_bounded(&options(root.path(), &server, table(version, archive.sha256))).await.unwrap_err();
        assert_failed_cleanly(&root, &err, BinaryErrorKind::UnsafeArchive);
        assert!(!Path::new("/tmp/kinopio-test-evil-absolute").exists());
        assert!(!root.path().join("evil").exists(), "{bad:?}");
    }
}

#[tokio::test]
async fn archive_without_the_binary_is_rejected() {
    let version = "9.1.1";
    let dir = release_dir(version);
    let archive = Archive::new(tar_gz(&[
        Entry::Dir(format!("{dir}/")),
        Entry::File(format!("{dir}/README.md"), b"no binary here".to_vec()),
        Entry::File("nats-server".into(), script("echo nats-server: v9.1.1")),
    ]));
    let server = serve_archive(version, &archive).await;
    let root = TempDir::new().unwrap();
    let err = resolve_bounded(&options(root.path(), &server, table(version, archive.sha256))).await.unwrap_err();
    assert_failed_cleanly(&root, &err, BinaryErrorKind::MissingBinary);
}

#[tokio::test]
async fn http_404_is_a_typed_error() {
    let server = ReleaseServer::start(Vec::new()).await;
    let root = TempDir::new().unwrap();
    let version = real_version();
    let err = resolve_bounded(&options(root.path(), &server, table(version, [7; 32]))).await.unwrap_err();
    assert_failed_cleanly(&root, &err, BinaryErrorKind::Http);
    assert!(matches!(err, BinaryError::Http { status: Some(404), .. }), "{err:?}");
    assert_eq!(server.hits(&release_path(version, &asset(version))), 1);
}

#[tokio::test]
async fn binary_that_fails_version_is_not_installed() {
    let version = "9.2.0";
    let archive = release_archive(version, script("echo broken >&2; exit 3"));
    let server = serve_archive(version, &archive).await;
    let root = TempDir::new().unwrap();
    let err = resolve_bounded(&options(root.path(), &server, table(version, archive.sha256))).await.unwrap_err();
    assert_failed_cleanly(&root, &err, BinaryErrorKind::NotRunnable);
    assert!(err.to_string().contains("broken"), "{err}");
}

#[tokio::test]
async fn binary_reporting_another_version_is_not_installed() {
    let version = "9.2.1";
    let archive = release_archive(version, script("echo 'nats-server: v2.1.0'"));
    let server = serve_archive(version, &archive).await;
    let root = TempDir::new().unwrap();
    let err = resolve_bounded(&options(root.path(), &server, table(version, archive.sha256))).await.unwrap_err();
    assert_failed_cleanly(&root, &err, BinaryErrorKind::WrongVersion);
    assert!(
        matches!(&err, BinaryError::WrongVersion { expected, reported } if expected == "9.2.1" && reported == "2.1.0"),
        "{err:?}"
    );
}

#[tokio::test]
async fn oversized_download_is_stopped() {
    let version = real_version();
    let archive = real_archive();
    let server = serve_archive(version, archive).await;
    let root = TempDir::new().unwrap();
    let opts = options(root.path(), &server, table(version, archive.sha256))
        .max_download_bytes(archive.bytes.len() as u64 - 1);
    let err = resolve_bounded(&opts).await.unwrap_err();
    assert_failed_cleanly(&root, &err, BinaryErrorKind::TooLarge);
}

#[tokio::test]
async fn sha256sums_fallback_verifies_the_download() {
    let version = "9.3.0";
    let archive = release_archive(version, script("echo 'nats-server: v9.3.0'"));
    let sums = format!(
        "{}  nats-server-v9.3.0-other-platform.tar.gz\n{}  {}\n",
        "0".repeat(64),
        hex::encode(archive.sha256),
        asset(version)
    );
    let server = ReleaseServer::start(vec![
        (release_path(version, &asset(version)), Reply::Body(archive.bytes.clone())),
        (release_path(version, CHECKSUMS_ASSET), Reply::Body(sums.into_bytes().into())),
    ])
    .await;
    let root = TempDir::new().unwrap();
    let no_pinned_sum = ReleaseTable::new(version).unwrap();
    let resolved = resolve_bounded(&options(root.path(), &server, no_pinned_sum)).await.unwrap();
    assert_eq!(resolved.source, BinarySource::Downloaded);
    assert_eq!(resolved.version, version);
    assert_eq!(server.hits(&release_path(version, CHECKSUMS_ASSET)), 1);
    assert_eq!(server.hits(&release_path(version, &asset(version))), 1);
}

#[tokio::test]
async fn sha256sums_without_the_asset_fails_closed() {
    let version = "9.3.1";
    let archive = release_archive(version, script("echo 'nats-server: v9.3.1'"));
    let other_sums = format!("{}  nats-server-v9.3.1-plan9-amd64.tar.gz\n", hex::encode(archive.sha256));
    for sums_reply in [Reply::Body(other_sums.into_bytes().into()), Reply::Status(404)] {
        let server = ReleaseServer::start(vec![
            (release_path(version, &asset(version)), Reply::Body(archive.bytes.clone())),
            (release_path(version, CHECKSUMS_ASSET), sums_reply.clone()),
        ])
        .await;
        let root = TempDir::new().unwrap();
        let err =
            resolve_bounded(&options(root.path(), &server, ReleaseTable::new(version).unwrap())).await.unwrap_err();
        assert_failed_cleanly(&root, &err, BinaryErrorKind::ChecksumUnavailable);
        assert_eq!(
            server.hits(&release_path(version, &asset(version))),
            0,
            "the archive must not even be fetched without a checksum ({sums_reply:?})"
        );
    }
}

#[tokio::test]
async fn explicit_path_wins_over_cache_and_path() {
    let server = ReleaseServer::start(Vec::new()).await;
    let root = TempDir::new().unwrap();
    let version = real_version();
    seed_cache(root.path(), version);
    let explicit_dir = TempDir::new().unwrap();
    let explicit = explicit_dir.path().join("my-nats-server");
    std::os::unix::fs::symlink(real_binary(), &explicit).unwrap();
    let path_dir = TempDir::new().unwrap();
    std::os::unix::fs::symlink(real_binary(), path_dir.path().join("nats-server")).unwrap();

    let opts =
        options(root.path(), &server, table(version, [0; 32])).search_path(path_dir.path()).binary_path(&explicit);
    let resolved = resolve_bounded(&opts).await.unwrap();
    assert_eq!(resolved.source, BinarySource::Explicit);
    assert_eq!(resolved.path, explicit);
    assert_eq!(resolved.version, version);
    assert_eq!(server.total_hits(), 0);
}

#[tokio::test]
async fn unusable_explicit_paths_are_typed_errors() {
    let server = ReleaseServer::start(Vec::new()).await;
    let root = TempDir::new().unwrap();
    let scratch = TempDir::new().unwrap();
    let not_executable = scratch.path().join("plain");
    std::fs::write(&not_executable, script("echo nats-server: v2.12.7")).unwrap();
    set_mode(&not_executable, 0o644);
    let failing = scratch.path().join("failing");
    write_executable(&failing, &script("exit 1"));
    let cases = [
        (scratch.path().join("missing"), "NotFound"),
        (scratch.path().to_owned(), "NotAFile"),
        (not_executable, "NotExecutable"),
        (failing, "VersionCheck"),
    ];
    for (path, want) in cases {
        let opts = options(root.path(), &server, table("2.12.7", [0; 32])).binary_path(&path);
        let err = resolve_bounded(&opts).await.unwrap_err();
        let BinaryError::ExplicitPath { origin, path: got, problem } = &err else {
            panic!("expected an explicit-path error, got {err:?}");
        };
        assert_eq!(*origin, ExplicitOrigin::Option);
        assert_eq!(*got, path);
        let name = match problem {
            ExplicitPathProblem::NotFound(_) => "NotFound",
            ExplicitPathProblem::NotAFile => "NotAFile",
            ExplicitPathProblem::NotExecutable => "NotExecutable",
            ExplicitPathProblem::VersionCheck(_) => "VersionCheck",
            other => panic!("unexpected problem {other:?}"),
        };
        assert_eq!(name, want, "{err}");
        assert!(err.to_string().contains("the binary_path option"), "{err}");
    }
    assert_eq!(server.total_hits(), 0, "an explicit path never falls back to a download");
}

/// Attack: another tool (or user) sharing the cache root puts an unverified binary in the
/// cache layout. kinopio never runs it: without its install record, or with a binary that no
/// longer matches the record, the cached entry is skipped.
#[tokio::test]
async fn cached_binaries_without_a_matching_install_record_are_never_run() {
    let server = ReleaseServer::start(Vec::new()).await;
    let root = TempDir::new().unwrap();
    let scratch = TempDir::new().unwrap();
    let marker = scratch.path().join("ran");
    let dir = root.path().join("nats-server").join(release_dir("2.12.7"));
    std::fs::create_dir_all(&dir).unwrap();
    let binary = dir.join(platform().binary_name());
    write_executable(&binary, &script(&format!("touch {}\necho nats-server: v2.12.7", marker.display())));
    let opts = options(root.path(), &server, table("2.12.7", [0; 32])).download(false).search_path("");
    assert!(resolve_bounded(&opts).await.is_err(), "nothing usable");
    assert!(!marker.exists(), "the unrecorded binary was run");
    // Recorded, then replaced: still refused.
    kinopio_leaf::binary::write_install_record(&dir, &binary).unwrap();
    write_executable(&binary, &script(&format!("touch {}\necho nats-server: v2.12.7 ", marker.display())));
    assert!(resolve_bounded(&opts).await.is_err());
    assert!(!marker.exists(), "a binary changed after its install was run");
    // Recorded and unchanged: used.
    kinopio_leaf::binary::write_install_record(&dir, &binary).unwrap();
    assert_eq!(resolve_bounded(&opts).await.unwrap().path, binary);
}

/// A version probe leaves nothing running: a "binary" that starts a background process and
/// hangs is killed with everything it started when the probe times out, and one that
/// answers but leaves a child behind has that child killed too.
#[tokio::test]
async fn version_probes_leave_no_process_behind() {
    let server = ReleaseServer::start(Vec::new()).await;
    let root = TempDir::new().unwrap();
    let scratch = TempDir::new().unwrap();
    for (name, tail) in [("hangs", "sleep 300"), ("answers", "echo nats-server: v2.12.7")] {
        let pid_file = scratch.path().join(format!("{name}.pid"));
        let path = scratch.path().join(name);
        write_executable(&path, &script(&format!("sleep 300 &\necho $! > {}\n{tail}", pid_file.display())));
        let opts = options(root.path(), &server, table("2.12.7", [0; 32]))
            .binary_path(&path)
            .version_timeout(Duration::from_millis(500));
        let _ = resolve_bounded(&opts).await;
        let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        // Gone (or a zombie reaped by init): signal 0 fails, or /proc says Z.
        loop {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let gone = state.is_empty() || state.split_whitespace().nth(2) == Some("Z");
            if gone {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{name}: the probe left pid {pid} running");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn nats_server_on_path_is_used() {
    let server = ReleaseServer::start(Vec::new()).await;
    let root = TempDir::new().unwrap();
    let empty = TempDir::new().unwrap();
    let bin = TempDir::new().unwrap();
    let on_path = bin.path().join("nats-server");
    std::os::unix::fs::symlink(real_binary(), &on_path).unwrap();
    let search = std::env::join_paths([empty.path(), bin.path()]).unwrap();
    let opts = options(root.path(), &server, table(real_version(), [0; 32])).search_path(search);
    let resolved = resolve_bounded(&opts).await.unwrap();
    assert_eq!(resolved.source, BinarySource::Path);
    assert_eq!(resolved.path, on_path);
    assert_eq!(resolved.version, real_version());
    assert_eq!(server.total_hits(), 0);
}

#[tokio::test]
async fn cached_binary_beats_path_and_broken_entries_are_skipped() {
    let server = ReleaseServer::start(Vec::new()).await;
    let root = TempDir::new().unwrap();
    let version = real_version();
    let cached = seed_cache(root.path(), version);
    // A higher version whose binary is not executable, and one for another platform.
    let cache = root.path().join("nats-server");
    let higher = cache.join(release_dir("99.0.0")).join("nats-server");
    std::fs::create_dir_all(higher.parent().unwrap()).unwrap();
    std::fs::write(&higher, b"junk").unwrap();
    std::fs::create_dir_all(cache.join("nats-server-v98.0.0-plan9-amd64")).unwrap();
    let bin = TempDir::new().unwrap();
    std::os::unix::fs::symlink(real_binary(), bin.path().join("nats-server")).unwrap();

    let opts = options(root.path(), &server, table(version, [0; 32])).search_path(bin.path());
    let resolved = resolve_bounded(&opts).await.unwrap();
    assert_eq!(resolved.source, BinarySource::Cached);
    assert_eq!(resolved.path, cached);
    assert_eq!(server.total_hits(), 0);
}

#[tokio::test]
async fn nothing_found_with_downloads_disabled_is_a_typed_error() {
    let server = ReleaseServer::start(Vec::new()).await;
    let root = TempDir::new().unwrap();
    let opts = options(root.path(), &server, table(real_version(), [0; 32])).download(false);
    let err = resolve_bounded(&opts).await.unwrap_err();
    assert_failed_cleanly(&root, &err, BinaryErrorKind::DownloadDisabled);
    assert_eq!(server.total_hits(), 0);
}

#[tokio::test]
async fn waiting_for_the_lock_then_using_what_the_holder_installed() {
    let version = real_version();
    let archive = real_archive();
    let server = serve_archive(version, archive).await;
    let root = TempDir::new().unwrap();
    let cache = root.path().join("nats-server");
    std::fs::create_dir_all(&cache).unwrap();

    // Play the other process: hold the lock on our own file descriptor.
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(cache.join(".lock"))
        .unwrap();
    let mut other_process = fd_lock::RwLock::new(lock_file);
    let guard = other_process.try_write().unwrap();

    let (events_tx, mut events_rx) = tokio::sync::mpsc::unbounded_channel();
    let opts = options(root.path(), &server, table(version, archive.sha256)).events(events_tx);
    let waiter = tokio::spawn(async move { resolve(&opts).await });

    let event = tokio::time::timeout(WAIT, events_rx.recv()).await.unwrap().unwrap();
    assert!(matches!(event, ProvisionEvent::WaitingForLock { .. }), "{event:?}");
    // The "other process" finishes its install and releases the lock.
    let installed = seed_cache(root.path(), version);
    drop(guard);

    let resolved = tokio::time::timeout(WAIT, waiter).await.unwrap().unwrap().unwrap();
    assert_eq!(resolved.source, BinarySource::Cached);
    assert_eq!(resolved.path, installed);
    assert_eq!(server.total_hits(), 0, "the waiter must not download again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_resolves_download_once() {
    let version = real_version();
    let archive = real_archive();
    let server = serve_archive(version, archive).await;
    let root = TempDir::new().unwrap();
    let opts = options(root.path(), &server, table(version, archive.sha256));
    let (a, b) = tokio::join!(resolve_bounded(&opts), resolve_bounded(&opts));
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut sources = [a.source, b.source];
    sources.sort_by_key(|s| *s == BinarySource::Cached);
    assert_eq!(sources, [BinarySource::Downloaded, BinarySource::Cached]);
    assert_eq!(a.path, b.path);
    assert_eq!(server.hits(&release_path(version, &asset(version))), 1);
    assert_eq!(leftovers(&root.path().join("nats-server")), [release_dir(version)]);
}

/// Environment of [`cross_process_child`]: `root|base_url|version|sha256 hex`.
const CHILD_ENV: &str = "KINOPIO_BINARY_TEST_CHILD";

/// Not a test on its own: the child process of
/// [`two_processes_share_one_download`]. Without its environment variable it does nothing.
#[tokio::test]
#[ignore = "child process of two_processes_share_one_download"]
async fn cross_process_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let [root, base, version, sha] = parts[..] else {
        panic!("bad {CHILD_ENV}: {spec}");
    };
    let mut digest = [0u8; 32];
    hex::decode_to_slice(sha, &mut digest).unwrap();
    let opts = BinaryOptions::new().cache_dir(root).base_url(base).release(table(version, digest)).progress(false);
    let resolved = resolve_bounded(&opts).await.unwrap();
    println!("RESOLVED {}", serde_json::to_string(&resolved).unwrap());
}

#[tokio::test]
async fn two_processes_share_one_download() {
    let version = real_version();
    let archive = real_archive();
    let server = serve_archive(version, archive).await;
    let root = TempDir::new().unwrap();
    let spec = format!("{}|{}|{version}|{}", root.path().display(), server.base_url(), hex::encode(archive.sha256));
    let spawn = || {
        tokio::process::Command::new(std::env::current_exe().unwrap())
            .args(["cross_process_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &spec)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .output()
    };
    let (a, b) = tokio::time::timeout(WAIT, async { tokio::join!(spawn(), spawn()) }).await.unwrap();
    let mut sources = Vec::new();
    for out in [a.unwrap(), b.unwrap()] {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed: {stdout}");
        let json = stdout
            .lines()
            .find_map(|l| l.split_once("RESOLVED ").map(|(_, json)| json))
            .unwrap_or_else(|| panic!("child printed no result: {stdout}"));
        let resolved: kinopio_leaf::binary::ResolvedBinary = serde_json::from_str(json).unwrap();
        assert_eq!(resolved.version, version);
        sources.push(resolved.source);
    }
    sources.sort_by_key(|s| *s == BinarySource::Cached);
    assert_eq!(sources, [BinarySource::Downloaded, BinarySource::Cached]);
    assert_eq!(server.hits(&release_path(version, &asset(version))), 1);
    assert_eq!(leftovers(&root.path().join("nats-server")), [release_dir(version)]);
}

/// Set (to anything) to make [`env_child`] run.
const ENV_CHILD: &str = "KINOPIO_BINARY_TEST_ENV_CHILD";

/// Not a test on its own: a child process that resolves with
/// [`BinaryOptions::from_env`], so the parent can set environment variables for it
/// (changing this process's environment would race with the other tests).
#[tokio::test]
#[ignore = "child process of the environment tests"]
async fn env_child() {
    if std::env::var_os(ENV_CHILD).is_none() {
        return;
    }
    match resolve_bounded(&BinaryOptions::from_env().progress(false)).await {
        Ok(resolved) => println!("RESOLVED {}", serde_json::to_string(&resolved).unwrap()),
        Err(err) => println!("FAILED {:?} {err}", err.kind()),
    }
}

/// Runs [`env_child`] with `vars` (plus an isolated cache root and an empty PATH unless
/// given) and returns its result line.
async fn run_env_child(vars: &[(&str, &std::ffi::OsStr)]) -> String {
    let mut command = tokio::process::Command::new(std::env::current_exe().unwrap());
    command
        .args(["env_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(ENV_CHILD, "1")
        .env_remove("KINOPIO_NATS_SERVER")
        .env_remove("KINOPIO_NATS_SERVER_BASE_URL")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in vars {
        command.env(name, value);
    }
    let out = tokio::time::timeout(WAIT, command.output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "child failed: {stdout}");
    stdout
        .lines()
        .find_map(|l| l.find("RESOLVED ").or_else(|| l.find("FAILED ")).map(|at| l[at..].to_owned()))
        .unwrap_or_else(|| panic!("child printed no result: {stdout}"))
}

#[tokio::test]
async fn environment_names_the_binary() {
    let root = TempDir::new().unwrap();
    let empty = TempDir::new().unwrap();
    let line = run_env_child(&[
        ("KINOPIO_NATS_SERVER", real_binary().as_os_str()),
        ("KINOPIO_HUB_CACHE_DIR", root.path().as_os_str()),
        ("PATH", empty.path().as_os_str()),
    ])
    .await;
    let json = line.strip_prefix("RESOLVED ").unwrap_or_else(|| panic!("{line}"));
    let resolved: kinopio_leaf::binary::ResolvedBinary = serde_json::from_str(json).unwrap();
    assert_eq!(resolved.source, BinarySource::Explicit);
    assert_eq!(resolved.path, real_binary());

    let missing = root.path().join("no-such-nats-server");
    let line = run_env_child(&[
        ("KINOPIO_NATS_SERVER", missing.as_os_str()),
        ("KINOPIO_HUB_CACHE_DIR", root.path().as_os_str()),
        ("PATH", empty.path().as_os_str()),
    ])
    .await;
    assert!(line.starts_with("FAILED ExplicitPath"), "{line}");
    assert!(line.contains("KINOPIO_NATS_SERVER"), "{line}");
}

#[tokio::test]
async fn environment_redirects_the_download_base_url() {
    // The pinned release is requested from the mirror given by the environment. The
    // locally built archive cannot match the real pinned SHA-256 (or, on platforms
    // without a pinned sum, the mirror has no SHA256SUMS), so it must be refused.
    let pinned = ReleaseTable::pinned().unwrap();
    let version = pinned.version().to_owned();
    let server = serve_archive(&version, &release_archive(&version, script("exit 0"))).await;
    let root = TempDir::new().unwrap();
    let empty = TempDir::new().unwrap();
    let base = server.base_url();
    let line = run_env_child(&[
        ("KINOPIO_NATS_SERVER_BASE_URL", base.as_ref()),
        ("KINOPIO_HUB_CACHE_DIR", root.path().as_os_str()),
        ("PATH", empty.path().as_os_str()),
    ])
    .await;
    assert!(line.starts_with("FAILED ChecksumMismatch") || line.starts_with("FAILED ChecksumUnavailable"), "{line}");
    assert!(line.contains(&base), "{line}");
    assert!(server.total_hits() >= 1, "the mirror was not asked");
    assert_eq!(leftovers(&root.path().join("nats-server")), Vec::<String>::new());
}
