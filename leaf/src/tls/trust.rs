//! Installation of the local CA into the device's trust stores (opt-in), so browsers and
//! system TLS clients accept the leaf's `wss://` and `https://` listeners, and its removal:
//! every store changed is recorded beside the CA (`trust-installs.json`) and [`untrust`]
//! (`kinopio leaf untrust`) removes exactly those.
//!
//! Stores: the Linux system anchors directory (+ `update-ca-certificates` or
//! `update-ca-trust`), an NSS database (`certutil`, used by Chromium/Firefox on Linux), the
//! macOS login keychain (`security add-trusted-cert`) and the Windows user Root store
//! (`certutil -user -addstore`). Every path and command is part of [`TrustStoreConfig`] so
//! tests point them at temporary directories. `KINOPIO_SKIP_CA_TRUST_INSTALL=1` skips it
//! all. Installing the same CA twice reports [`TrustState::AlreadyInstalled`].

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::LocalCa;
use super::ca::CA_COMMON_NAME;
use super::files::{self, PUBLIC_MODE};

/// Environment variable that skips trust-store installation when set to `1`/`true`/`yes`.
pub const SKIP_ENV: &str = "KINOPIO_SKIP_CA_TRUST_INSTALL";

/// Outcome of [`install_ca`], for logs and status output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "camelCase")]
#[non_exhaustive]
pub enum TrustState {
    /// The CA was added to these stores (others may have failed; see the logs).
    Installed {
        /// Names of the stores changed.
        stores: Vec<String>,
    },
    /// Every reachable store already trusted this CA.
    AlreadyInstalled {
        /// Names of the stores that already had it.
        stores: Vec<String>,
    },
    /// Installation was not attempted.
    Skipped {
        /// Why.
        reason: String,
    },
    /// No store could be changed.
    Failed {
        /// What went wrong, per store.
        error: String,
    },
    /// The certificates were supplied by the caller; their CA is the caller's business.
    External,
}

/// The Linux system anchors directory and the command that rebuilds the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemAnchorStore {
    /// e.g. `/usr/local/share/ca-certificates` (Debian) or
    /// `/etc/pki/ca-trust/source/anchors` (Fedora).
    pub anchor_dir: PathBuf,
    /// Run after adding the file (program and arguments), e.g. `update-ca-certificates`;
    /// `None` runs nothing.
    pub update_command: Option<Vec<OsString>>,
}

/// An NSS certificate database (`sql:` format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NssStore {
    /// The database directory, e.g. `~/.pki/nssdb`; skipped when it does not exist.
    pub db_dir: PathBuf,
    /// The `certutil` program.
    pub certutil: OsString,
}

/// A macOS keychain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacosKeychainStore {
    /// The `security` program.
    pub security: OsString,
    /// The keychain file, e.g. `~/Library/Keychains/login.keychain-db`.
    pub keychain: PathBuf,
}

/// The Windows current-user Root store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowsUserRootStore {
    /// The `certutil` program.
    pub certutil: OsString,
}

/// Which stores to try and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustStoreConfig {
    /// When set, nothing is installed and this is the reason reported.
    pub skip_reason: Option<String>,
    /// Linux system store.
    pub system_anchors: Option<SystemAnchorStore>,
    /// NSS databases.
    pub nss: Vec<NssStore>,
    /// macOS keychain.
    pub macos_keychain: Option<MacosKeychainStore>,
    /// Windows user Root store.
    pub windows_user_root: Option<WindowsUserRootStore>,
    /// Upper bound for each external command.
    pub command_timeout: Duration,
}

impl TrustStoreConfig {
    /// No stores at all (a base for tests and custom setups).
    pub fn none() -> Self {
        TrustStoreConfig {
            skip_reason: None,
            system_anchors: None,
            nss: Vec::new(),
            macos_keychain: None,
            windows_user_root: None,
            command_timeout: Duration::from_secs(30),
        }
    }

    /// Installs nothing, and says so: the default, since adding a root to a device's trust
    /// stores is the user's decision.
    pub fn not_requested() -> Self {
        TrustStoreConfig::skipped(
            "not requested (set the trust_store option to add the CA to this device's trust stores)",
        )
    }

    /// Installs nothing and reports `reason` as why (a program says how its users ask for
    /// the install).
    pub fn skipped(reason: impl Into<String>) -> Self {
        TrustStoreConfig { skip_reason: Some(reason.into()), ..TrustStoreConfig::none() }
    }

    /// The stores of this platform, honouring `KINOPIO_SKIP_CA_TRUST_INSTALL`.
    pub fn platform_default() -> Self {
        let home = directories::BaseDirs::new().map(|dirs| dirs.home_dir().to_path_buf());
        let mut config = TrustStoreConfig::none();
        if cfg!(target_os = "macos") {
            if let Some(home) = &home {
                config.macos_keychain = Some(MacosKeychainStore {
                    security: "security".into(),
                    keychain: home.join("Library/Keychains/login.keychain-db"),
                });
            }
        } else if cfg!(windows) {
            config.windows_user_root = Some(WindowsUserRootStore { certutil: "certutil".into() });
        } else {
            config.system_anchors = default_system_anchors();
            if let Some(home) = &home {
                config.nss.push(NssStore { db_dir: home.join(".pki/nssdb"), certutil: "certutil".into() });
            }
        }
        config.with_env_skip(|name| std::env::var(name).ok())
    }

    /// Sets [`TrustStoreConfig::skip_reason`] when `lookup(SKIP_ENV)` asks to skip.
    pub fn with_env_skip(mut self, lookup: impl Fn(&str) -> Option<String>) -> Self {
        if skip_requested(lookup(SKIP_ENV).as_deref()) {
            self.skip_reason = Some(format!("{SKIP_ENV} is set"));
        }
        self
    }
}

/// True for `1`, `true`, `yes`, `on` (any case). Pure.
pub(crate) fn skip_requested(value: Option<&str>) -> bool {
    value.is_some_and(|value| matches!(value.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

/// Debian-style anchors with `update-ca-certificates`, else Fedora-style with
/// `update-ca-trust extract`, else none.
fn default_system_anchors() -> Option<SystemAnchorStore> {
    let candidates = [
        ("/usr/local/share/ca-certificates", "update-ca-certificates", &[][..]),
        ("/etc/pki/ca-trust/source/anchors", "update-ca-trust", &["extract"][..]),
    ];
    candidates.into_iter().find_map(|(dir, program, args)| {
        let dir = PathBuf::from(dir);
        if !dir.is_dir() {
            return None;
        }
        let update_command = find_program(program)
            .map(|path| std::iter::once(path.into_os_string()).chain(args.iter().map(OsString::from)).collect());
        Some(SystemAnchorStore { anchor_dir: dir, update_command })
    })
}

/// Looks `program` up in `PATH`, `/usr/sbin` and `/sbin`.
fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// The file name of the CA in an anchors directory: `kinopio-<short fingerprint>.crt`.
pub fn anchor_file_name(ca: &LocalCa) -> String {
    format!("kinopio-{}.crt", ca.short_fingerprint())
}

/// The NSS nickname of the CA: `Kinopio Local Leaf CA <short fingerprint>`.
pub(crate) fn nss_nickname(ca: &LocalCa) -> String {
    format!("{CA_COMMON_NAME} {}", ca.short_fingerprint())
}

/// What happened in one store.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StoreOutcome {
    Installed,
    AlreadyInstalled,
    NotAvailable(String),
    Failed(String),
}

/// Installs `ca` into every store of `config` (best effort, never panics, never returns an
/// error: failures are reported in the [`TrustState`] and logged). Blocks while external
/// commands run (each bounded by `config.command_timeout`).
pub fn install_ca(ca: &LocalCa, config: &TrustStoreConfig) -> TrustState {
    if let Some(reason) = &config.skip_reason {
        tracing::info!(%reason, "not installing the local CA into trust stores");
        return TrustState::Skipped { reason: reason.clone() };
    }
    let mut outcomes: Vec<(String, StoreOutcome)> = Vec::new();
    let mut added: Vec<InstallRecord> = Vec::new();
    if let Some(store) = &config.system_anchors {
        let outcome = install_system_anchor(ca, store, config.command_timeout);
        if outcome == StoreOutcome::Installed {
            added.push(InstallRecord::System {
                anchor_file: store.anchor_dir.join(anchor_file_name(ca)),
                update_command: store.update_command.clone().unwrap_or_default(),
            });
        }
        outcomes.push((format!("system:{}", store.anchor_dir.display()), outcome));
    }
    for store in &config.nss {
        let outcome = install_nss(ca, store, config.command_timeout);
        if outcome == StoreOutcome::Installed {
            added.push(InstallRecord::Nss {
                db_dir: store.db_dir.clone(),
                nickname: nss_nickname(ca),
                certutil: store.certutil.clone(),
            });
        }
        outcomes.push((format!("nss:{}", store.db_dir.display()), outcome));
    }
    if let Some(store) = &config.macos_keychain {
        let outcome = install_macos(ca, store, config.command_timeout);
        if outcome == StoreOutcome::Installed {
            added.push(InstallRecord::Macos {
                keychain: store.keychain.clone(),
                sha1: sha1_hex(ca.cert_der()),
                security: store.security.clone(),
            });
        }
        outcomes.push((format!("macos:{}", store.keychain.display()), outcome));
    }
    if let Some(store) = &config.windows_user_root {
        let outcome = install_windows(ca, store, config.command_timeout);
        if outcome == StoreOutcome::Installed {
            added.push(InstallRecord::Windows { sha1: sha1_hex(ca.cert_der()), certutil: store.certutil.clone() });
        }
        outcomes.push(("windows:CurrentUser\\Root".to_owned(), outcome));
    }
    if !added.is_empty()
        && let Some(dir) = ca.cert_path().parent()
        && let Err(err) = append_records(dir, &added)
    {
        tracing::warn!(error = %err, "could not record the trust-store install; `kinopio leaf untrust` will not know it");
    }
    summarize(outcomes)
}

/// The file (beside the CA certificate) listing every store kinopio added a CA to, so
/// [`untrust`] can remove exactly those.
pub(crate) const INSTALL_RECORDS_FILE: &str = "trust-installs.json";

/// One store kinopio added a CA to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "store", rename_all = "camelCase")]
pub enum InstallRecord {
    /// A file in the Linux anchors directory, and the command that rebuilds the bundle.
    #[serde(rename_all = "camelCase")]
    System {
        /// The anchor file written.
        anchor_file: PathBuf,
        /// Run again after removing it (empty: nothing).
        update_command: Vec<OsString>,
    },
    /// A certificate in an NSS database.
    #[serde(rename_all = "camelCase")]
    Nss {
        /// The database directory.
        db_dir: PathBuf,
        /// The nickname it was added under.
        nickname: String,
        /// The `certutil` program.
        certutil: OsString,
    },
    /// A certificate in a macOS keychain.
    #[serde(rename_all = "camelCase")]
    Macos {
        /// The keychain.
        keychain: PathBuf,
        /// The certificate's SHA-1 hash (what `security delete-certificate -Z` takes).
        sha1: String,
        /// The `security` program.
        security: OsString,
    },
    /// A certificate in the Windows user Root store.
    #[serde(rename_all = "camelCase")]
    Windows {
        /// The certificate's SHA-1 thumbprint (what `certutil -delstore` takes).
        sha1: String,
        /// The `certutil` program.
        certutil: OsString,
    },
}

/// The stores kinopio added the CA in `ca_dir` to (from `trust-installs.json`).
pub fn installed_stores(ca_dir: &std::path::Path) -> Vec<InstallRecord> {
    read_records(ca_dir)
}

fn read_records(dir: &std::path::Path) -> Vec<InstallRecord> {
    std::fs::read(dir.join(INSTALL_RECORDS_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

fn write_records(dir: &std::path::Path, records: &[InstallRecord]) -> std::io::Result<()> {
    let path = dir.join(INSTALL_RECORDS_FILE);
    if records.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        };
    }
    let text = serde_json::to_vec_pretty(records).map_err(std::io::Error::other)?;
    files::write_atomically(&path, &text, PUBLIC_MODE).map_err(|e| std::io::Error::other(e.to_string()))
}

fn append_records(dir: &std::path::Path, added: &[InstallRecord]) -> std::io::Result<()> {
    let mut records = read_records(dir);
    for record in added {
        if !records.contains(record) {
            records.push(record.clone());
        }
    }
    write_records(dir, &records)
}

/// The SHA-1 of a certificate: the identifier macOS and Windows trust stores delete by.
fn sha1_hex(der: &[u8]) -> String {
    sha1_smol::Sha1::from(der).digest().to_string()
}

/// What [`untrust`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UntrustReport {
    /// Stores the CA was removed from.
    pub removed: Vec<String>,
    /// Stores it could not be removed from, and why (they stay recorded for a retry).
    pub failed: Vec<String>,
}

/// Removes every CA kinopio added to a trust store, as recorded in `ca_dir`
/// (`trust-installs.json`); what failed stays recorded.
pub fn untrust(ca_dir: &std::path::Path, timeout: Duration) -> UntrustReport {
    let mut report = UntrustReport::default();
    let mut left = Vec::new();
    for record in read_records(ca_dir) {
        let (name, result) = remove_record(&record, timeout);
        match result {
            Ok(()) => report.removed.push(name),
            Err(error) => {
                report.failed.push(format!("{name}: {error}"));
                left.push(record);
            }
        }
    }
    if let Err(err) = write_records(ca_dir, &left) {
        report.failed.push(format!("{}: {err}", ca_dir.join(INSTALL_RECORDS_FILE).display()));
    }
    report
}

/// Why a CA could not be removed from one store.
#[derive(Debug, thiserror::Error)]
enum RemovalError {
    /// The anchor file could not be deleted.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The store's tool failed (described as [`describe_failure`] does).
    #[error("{0}")]
    Command(String),
}

fn remove_record(record: &InstallRecord, timeout: Duration) -> (String, Result<(), RemovalError>) {
    let run = |program: &OsStr, args: Vec<OsString>| match run_command(program, &args, timeout) {
        Ok(output) if output.status.success() => Ok(()),
        result => Err(RemovalError::Command(describe_failure(program, result))),
    };
    match record {
        InstallRecord::System { anchor_file, update_command } => {
            let name = format!("system:{}", anchor_file.display());
            let removed = match std::fs::remove_file(anchor_file) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(RemovalError::Io(err)),
                _ => Ok(()),
            };
            let result = removed.and_then(|()| match update_command.split_first() {
                Some((program, args)) => {
                    let mut args = args.to_vec();
                    // update-ca-certificates only drops links of removed anchors with --fresh.
                    if program.to_string_lossy().ends_with("update-ca-certificates") {
                        args.push("--fresh".into());
                    }
                    run(program, args)
                }
                None => Ok(()),
            });
            (name, result)
        }
        InstallRecord::Nss { db_dir, nickname, certutil } => {
            let db: OsString = [OsStr::new("sql:"), db_dir.as_os_str()].into_iter().collect();
            let args = vec!["-d".into(), db, "-D".into(), "-n".into(), nickname.into()];
            (format!("nss:{}", db_dir.display()), run(certutil, args))
        }
        InstallRecord::Macos { keychain, sha1, security } => {
            let args = vec!["delete-certificate".into(), "-Z".into(), sha1.into(), keychain.as_os_str().to_owned()];
            (format!("macos:{}", keychain.display()), run(security, args))
        }
        InstallRecord::Windows { sha1, certutil } => {
            let args = vec!["-user".into(), "-delstore".into(), "Root".into(), sha1.into()];
            ("windows:CurrentUser\\Root".to_owned(), run(certutil, args))
        }
    }
}

/// Folds per-store outcomes into one state and logs each.
fn summarize(outcomes: Vec<(String, StoreOutcome)>) -> TrustState {
    let mut installed = Vec::new();
    let mut already = Vec::new();
    let mut failures = Vec::new();
    for (store, outcome) in outcomes {
        match outcome {
            StoreOutcome::Installed => {
                tracing::info!(%store, "installed the local CA");
                installed.push(store);
            }
            StoreOutcome::AlreadyInstalled => {
                tracing::debug!(%store, "the local CA is already trusted");
                already.push(store);
            }
            StoreOutcome::NotAvailable(why) => {
                tracing::debug!(%store, %why, "trust store not available");
            }
            StoreOutcome::Failed(error) => {
                tracing::warn!(%store, %error, "could not install the local CA");
                failures.push(format!("{store}: {error}"));
            }
        }
    }
    if !installed.is_empty() {
        TrustState::Installed { stores: installed }
    } else if !already.is_empty() {
        TrustState::AlreadyInstalled { stores: already }
    } else if !failures.is_empty() {
        TrustState::Failed { error: failures.join("; ") }
    } else {
        TrustState::Skipped { reason: "no trust store is available on this device".to_owned() }
    }
}

fn install_system_anchor(ca: &LocalCa, store: &SystemAnchorStore, timeout: Duration) -> StoreOutcome {
    if !store.anchor_dir.is_dir() {
        return StoreOutcome::NotAvailable(format!("{} does not exist", store.anchor_dir.display()));
    }
    let target = store.anchor_dir.join(anchor_file_name(ca));
    if std::fs::read(&target).is_ok_and(|existing| existing == ca.cert_pem().as_bytes()) {
        return StoreOutcome::AlreadyInstalled;
    }
    if let Err(err) = files::write_atomically(&target, ca.cert_pem().as_bytes(), PUBLIC_MODE) {
        return StoreOutcome::Failed(format!(
            "{err}; to trust the CA manually run: sudo cp {} {} && sudo update-ca-certificates",
            ca.cert_path().display(),
            target.display()
        ));
    }
    let Some(command) = &store.update_command else {
        return StoreOutcome::Installed;
    };
    let Some((program, args)) = command.split_first() else {
        return StoreOutcome::Installed;
    };
    match run_command(program, args, timeout) {
        Ok(output) if output.status.success() => StoreOutcome::Installed,
        result => {
            // Remove the anchor so the next start retries instead of reporting "already".
            let _ = std::fs::remove_file(&target);
            StoreOutcome::Failed(describe_failure(program, result))
        }
    }
}

fn install_nss(ca: &LocalCa, store: &NssStore, timeout: Duration) -> StoreOutcome {
    if !store.db_dir.is_dir() {
        return StoreOutcome::NotAvailable(format!("{} does not exist", store.db_dir.display()));
    }
    let db: OsString = [OsStr::new("sql:"), store.db_dir.as_os_str()].into_iter().collect();
    let nickname = nss_nickname(ca);
    let list_args: Vec<OsString> = vec!["-d".into(), db.clone(), "-L".into(), "-n".into(), nickname.clone().into()];
    match run_command(&store.certutil, &list_args, timeout) {
        Ok(output) if output.status.success() => return StoreOutcome::AlreadyInstalled,
        Ok(_) => {}
        Err(CommandFailure::NotFound) => {
            return StoreOutcome::NotAvailable(format!(
                "{} not found (install libnss3-tools / nss-tools)",
                store.certutil.to_string_lossy()
            ));
        }
        Err(other) => return StoreOutcome::Failed(describe_failure(&store.certutil, Err(other))),
    }
    let add_args: Vec<OsString> = vec![
        "-d".into(),
        db,
        "-A".into(),
        "-t".into(),
        "C,,".into(),
        "-n".into(),
        nickname.into(),
        "-i".into(),
        ca.cert_path().as_os_str().to_owned(),
    ];
    match run_command(&store.certutil, &add_args, timeout) {
        Ok(output) if output.status.success() => StoreOutcome::Installed,
        result => StoreOutcome::Failed(describe_failure(&store.certutil, result)),
    }
}

fn install_macos(ca: &LocalCa, store: &MacosKeychainStore, timeout: Duration) -> StoreOutcome {
    let find_args: Vec<OsString> = vec![
        "find-certificate".into(),
        "-a".into(),
        "-Z".into(),
        "-c".into(),
        CA_COMMON_NAME.into(),
        store.keychain.as_os_str().to_owned(),
    ];
    match run_command(&store.security, &find_args, timeout) {
        Ok(output) if output.status.success() && output.stdout.to_ascii_lowercase().contains(ca.sha256_hex()) => {
            return StoreOutcome::AlreadyInstalled;
        }
        Ok(_) => {}
        Err(CommandFailure::NotFound) => {
            return StoreOutcome::NotAvailable("the security tool was not found".to_owned());
        }
        Err(other) => return StoreOutcome::Failed(describe_failure(&store.security, Err(other))),
    }
    let add_args: Vec<OsString> = vec![
        "add-trusted-cert".into(),
        "-r".into(),
        "trustRoot".into(),
        "-k".into(),
        store.keychain.as_os_str().to_owned(),
        ca.cert_path().as_os_str().to_owned(),
    ];
    match run_command(&store.security, &add_args, timeout) {
        Ok(output) if output.status.success() => StoreOutcome::Installed,
        result => StoreOutcome::Failed(describe_failure(&store.security, result)),
    }
}

fn install_windows(ca: &LocalCa, store: &WindowsUserRootStore, timeout: Duration) -> StoreOutcome {
    let args: Vec<OsString> =
        vec!["-user".into(), "-addstore".into(), "Root".into(), ca.cert_path().as_os_str().to_owned()];
    match run_command(&store.certutil, &args, timeout) {
        Ok(output) if output.status.success() => {
            if output.stdout.to_ascii_lowercase().contains("already in store") {
                StoreOutcome::AlreadyInstalled
            } else {
                StoreOutcome::Installed
            }
        }
        Err(CommandFailure::NotFound) => StoreOutcome::NotAvailable("certutil was not found".to_owned()),
        result => StoreOutcome::Failed(describe_failure(&store.certutil, result)),
    }
}

/// Captured output of a finished command.
#[derive(Debug)]
struct CommandOutput {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Why a command produced no output.
#[derive(Debug)]
enum CommandFailure {
    NotFound,
    Spawn(std::io::Error),
    TimedOut(Duration),
}

fn describe_failure(program: &OsStr, result: Result<CommandOutput, CommandFailure>) -> String {
    let program = program.to_string_lossy();
    match result {
        Ok(output) => {
            let detail = if output.stderr.trim().is_empty() {
                output.stdout.trim().to_owned()
            } else {
                output.stderr.trim().to_owned()
            };
            format!("{program} exited with {}: {detail}", output.status)
        }
        Err(CommandFailure::NotFound) => format!("{program} was not found"),
        Err(CommandFailure::Spawn(err)) => format!("could not run {program}: {err}"),
        Err(CommandFailure::TimedOut(limit)) => {
            format!("{program} did not finish within {} s and was killed", limit.as_secs())
        }
    }
}

/// Runs a command with no stdin, capturing its output, killing it after `timeout`.
fn run_command(program: &OsStr, args: &[OsString], timeout: Duration) -> Result<CommandOutput, CommandFailure> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound => CommandFailure::NotFound,
            _ => CommandFailure::Spawn(err),
        })?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CommandFailure::TimedOut(timeout));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(err) => return Err(CommandFailure::Spawn(err)),
        }
    };
    Ok(CommandOutput { status, stdout: stdout.join().unwrap_or_default(), stderr: stderr.join().unwrap_or_default() })
}

/// Reads a child's pipe to the end on a helper thread.
fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_values() {
        for yes in ["1", "true", "TRUE", " yes ", "on"] {
            assert!(skip_requested(Some(yes)), "{yes}");
        }
        for no in ["0", "", "false", "no", "off", "2"] {
            assert!(!skip_requested(Some(no)), "{no}");
        }
        assert!(!skip_requested(None));
    }

    #[test]
    fn summary_prefers_installed_then_already_then_failed() {
        let installed = summarize(vec![
            ("a".into(), StoreOutcome::Failed("x".into())),
            ("b".into(), StoreOutcome::Installed),
            ("c".into(), StoreOutcome::AlreadyInstalled),
        ]);
        assert_eq!(installed, TrustState::Installed { stores: vec!["b".into()] });
        let already = summarize(vec![
            ("a".into(), StoreOutcome::NotAvailable("x".into())),
            ("c".into(), StoreOutcome::AlreadyInstalled),
        ]);
        assert_eq!(already, TrustState::AlreadyInstalled { stores: vec!["c".into()] });
        let failed = summarize(vec![("a".into(), StoreOutcome::Failed("boom".into()))]);
        assert_eq!(failed, TrustState::Failed { error: "a: boom".into() });
        assert!(matches!(summarize(vec![]), TrustState::Skipped { .. }));
    }

    #[test]
    fn missing_program_is_reported_as_not_found() {
        let result = run_command(OsStr::new("kinopio-test-no-such-program"), &[], Duration::from_secs(5));
        assert!(matches!(result, Err(CommandFailure::NotFound)));
    }

    #[cfg(unix)]
    #[test]
    fn slow_command_is_killed_after_timeout() {
        let started = Instant::now();
        let result = run_command(OsStr::new("sleep"), &["30".into()], Duration::from_millis(200));
        assert!(matches!(result, Err(CommandFailure::TimedOut(_))));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
