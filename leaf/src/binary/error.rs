//! Errors of nats-server binary provisioning: one [`BinaryError`] with a
//! [`BinaryErrorKind`] per failure, each message saying what failed and how to supply a
//! binary instead.

use std::fmt;
use std::path::PathBuf;

use super::probe::ProbeError;

/// How a user can bypass provisioning; appended to every error that came from the
/// download path (a program maps the `binary_path` option to its own flag or setting).
pub const HOW_TO_SUPPLY: &str = "To use a nats-server you already have instead, give its \
path as the binary_path option, set KINOPIO_NATS_SERVER=/path/to/nats-server, or put \
nats-server on PATH";

/// Where an explicit binary path came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExplicitOrigin {
    /// The `binary_path` option.
    Option,
    /// The `KINOPIO_NATS_SERVER` environment variable.
    Env,
}

impl fmt::Display for ExplicitOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExplicitOrigin::Option => f.write_str("the binary_path option"),
            ExplicitOrigin::Env => f.write_str("KINOPIO_NATS_SERVER"),
        }
    }
}

/// What is wrong with an explicitly given binary path.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExplicitPathProblem {
    /// Nothing exists at the path (or it cannot be inspected).
    NotFound(String),
    /// The path exists but is not a regular file.
    NotAFile,
    /// The file has no execute permission.
    NotExecutable,
    /// Running `<path> --version` failed or printed no nats-server version.
    VersionCheck(ProbeError),
}

impl fmt::Display for ExplicitPathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExplicitPathProblem::NotFound(why) => write!(f, "does not exist ({why})"),
            ExplicitPathProblem::NotAFile => f.write_str("is not a regular file"),
            ExplicitPathProblem::NotExecutable => f.write_str("is not executable (fix with: chmod +x <path>)"),
            ExplicitPathProblem::VersionCheck(why) => {
                write!(f, "does not run as nats-server: {why}")
            }
        }
    }
}

crate::error::error_with_kind! {
    /// A failure to provide a nats-server binary.
    #[derive(Debug, thiserror::Error)]
    pub enum BinaryError => BinaryErrorKind {
        /// The explicit binary path is unusable.
        #[error(
            "the nats-server binary given by {origin} ({}) {problem}; point {origin} at an \
             executable nats-server, or unset it to let kinopio use a cached, PATH or downloaded one",
            path.display()
        )]
        ExplicitPath {
            /// Where the path came from.
            origin: ExplicitOrigin,
            /// The path as given (after `~` expansion).
            path: PathBuf,
            /// What is wrong with it.
            problem: ExplicitPathProblem,
        },
        /// No release build exists for this OS/CPU.
        #[error(
            "automatic nats-server download is not supported on {os}/{arch}; give the path of a \
             nats-server as the binary_path option (or set KINOPIO_NATS_SERVER, or put nats-server on PATH)"
        )]
        UnsupportedPlatform {
            /// Rust's OS name.
            os: String,
            /// Rust's CPU architecture name.
            arch: String,
        },
        /// Nothing usable was found and downloading is disabled.
        #[error(
            "no usable nats-server was found (cache {}, PATH) and downloading is disabled. \
             {HOW_TO_SUPPLY}",
            cache_dir.display()
        )]
        DownloadDisabled {
            /// The cache directory that was searched.
            cache_dir: PathBuf,
        },
        /// The release table is malformed.
        #[error("the nats-server release table is invalid: {reason}; fix the table. {HOW_TO_SUPPLY}")]
        ReleaseTable {
            /// What is wrong.
            reason: String,
        },
        /// The download base URL is unusable.
        #[error(
            "the nats-server download base URL {base:?} is invalid ({reason}); set \
             KINOPIO_NATS_SERVER_BASE_URL to an http(s) URL laid out like \
             https://github.com/nats-io/nats-server/releases/download (files at <base>/v<version>/<asset>)"
        )]
        InvalidBaseUrl {
            /// The base URL as given.
            base: String,
            /// Why it is invalid.
            reason: String,
        },
        /// The HTTP request failed.
        #[error(
            "downloading {url} failed: {reason}; check the network, proxy settings and \
             KINOPIO_NATS_SERVER_BASE_URL. {HOW_TO_SUPPLY}"
        )]
        Http {
            /// The URL that was fetched.
            url: String,
            /// The HTTP status, when the server answered with an error status.
            status: Option<u16>,
            /// What failed.
            reason: String,
        },
        /// The download exceeds the size limit.
        #[error(
            "downloading {url} was stopped: it is larger than the {limit}-byte limit; the \
             mirror may serve the wrong file. {HOW_TO_SUPPLY}"
        )]
        TooLarge {
            /// The URL that was fetched.
            url: String,
            /// The limit in bytes.
            limit: u64,
        },
        /// No trustworthy checksum is available.
        #[error(
            "no SHA-256 is pinned for {asset} and none could be taken from {url}: {reason}; \
             refusing to install an unverified binary. {HOW_TO_SUPPLY}"
        )]
        ChecksumUnavailable {
            /// The asset that needed a checksum.
            asset: String,
            /// The checksum file URL.
            url: String,
            /// Why it could not be used.
            reason: String,
        },
        /// The archive's SHA-256 differs from the expected one.
        #[error(
            "the download of {url} is corrupt or was tampered with: SHA-256 {actual}, expected \
             {expected}; nothing was installed; retry later. {HOW_TO_SUPPLY}"
        )]
        ChecksumMismatch {
            /// The URL that was fetched.
            url: String,
            /// The expected digest (hex).
            expected: String,
            /// The digest of what arrived (hex).
            actual: String,
        },
        /// The archive cannot be read.
        #[error("the archive {asset} is truncated or corrupt: {reason}; nothing was installed. {HOW_TO_SUPPLY}")]
        CorruptArchive {
            /// The asset name.
            asset: String,
            /// The decoder's complaint.
            reason: String,
        },
        /// The archive contains an entry that escapes its directory.
        #[error(
            "refusing to install from {asset}: entry {entry:?} {reason}; nothing was installed. \
             {HOW_TO_SUPPLY}"
        )]
        UnsafeArchive {
            /// The asset name.
            asset: String,
            /// The offending entry name.
            entry: String,
            /// Why it is unsafe.
            reason: String,
        },
        /// The archive lacks the expected binary.
        #[error("the archive {asset} does not contain {entry}; nothing was installed. {HOW_TO_SUPPLY}")]
        MissingBinary {
            /// The asset name.
            asset: String,
            /// The entry that was expected.
            entry: String,
        },
        /// The downloaded binary does not run.
        #[error(
            "the downloaded nats-server ({}) does not run: {reason}; nothing was installed. {HOW_TO_SUPPLY}",
            path.display()
        )]
        NotRunnable {
            /// Where the binary was (in a temporary directory, now removed).
            path: PathBuf,
            /// What happened when it was run with `--version`.
            reason: ProbeError,
        },
        /// The downloaded binary reports another version.
        #[error(
            "the downloaded nats-server reports version {reported}, expected {expected}; \
             nothing was installed. {HOW_TO_SUPPLY}"
        )]
        WrongVersion {
            /// The version from the release table.
            expected: String,
            /// The version the binary printed.
            reported: String,
        },
        /// A file-system operation failed.
        #[error(
            "could not {action} {}: {source}; check the permissions and free space of the cache \
             directory (or choose another cache directory, or set KINOPIO_HUB_CACHE_DIR). {HOW_TO_SUPPLY}",
            path.display()
        )]
        Io {
            /// What was being done ("create", "lock", ...).
            action: &'static str,
            /// The path involved.
            path: PathBuf,
            /// The OS error.
            #[source]
            source: std::io::Error,
        },
    }
}

impl BinaryError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BinaryError::Io { action, path: path.into(), source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_errors_say_how_to_supply_a_binary() {
        let errors = [
            BinaryError::Http { url: "http://x/a".into(), status: Some(404), reason: "HTTP 404".into() },
            BinaryError::ChecksumMismatch { url: "http://x/a".into(), expected: "aa".into(), actual: "bb".into() },
            BinaryError::MissingBinary { asset: "a.tar.gz".into(), entry: "x/nats-server".into() },
            BinaryError::WrongVersion { expected: "2.12.7".into(), reported: "9.9.9".into() },
        ];
        for err in errors {
            let msg = err.to_string();
            assert!(msg.contains("binary_path option") && !msg.contains("--"), "{msg}");
            assert!(msg.contains("KINOPIO_NATS_SERVER=/path/to/nats-server"), "{msg}");
            assert!(msg.contains("PATH"), "{msg}");
        }
    }

    #[test]
    fn unsupported_platform_points_to_binary_path() {
        let err = BinaryError::UnsupportedPlatform { os: "freebsd".into(), arch: "x86_64".into() };
        assert_eq!(err.kind(), BinaryErrorKind::UnsupportedPlatform);
        let msg = err.to_string();
        assert!(msg.contains("freebsd/x86_64") && msg.contains("binary_path option"), "{msg}");
    }
}
