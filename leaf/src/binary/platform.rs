//! Which nats-server release build fits this machine: maps Rust's `(OS, ARCH)` to the
//! release's platform tag (`linux-amd64`, ...), archive format and binary file name.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A platform for which nats-server publishes a release build that kinopio knows how to
/// install.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Platform {
    /// macOS on Intel (`darwin-amd64`).
    #[serde(rename = "darwin-amd64")]
    DarwinAmd64,
    /// macOS on Apple silicon (`darwin-arm64`).
    #[serde(rename = "darwin-arm64")]
    DarwinArm64,
    /// Linux on x86-64 (`linux-amd64`).
    #[serde(rename = "linux-amd64")]
    LinuxAmd64,
    /// Linux on 64-bit ARM (`linux-arm64`).
    #[serde(rename = "linux-arm64")]
    LinuxArm64,
    /// Windows on x86-64 (`windows-amd64`).
    #[serde(rename = "windows-amd64")]
    WindowsAmd64,
}

/// The archive format of a release asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// A gzip-compressed tarball (`.tar.gz`).
    TarGz,
    /// A zip file (`.zip`).
    Zip,
}

impl ArchiveKind {
    /// The file extension without the leading dot.
    pub fn extension(self) -> &'static str {
        match self {
            ArchiveKind::TarGz => "tar.gz",
            ArchiveKind::Zip => "zip",
        }
    }
}

/// `(os, arch)` has no nats-server build that kinopio can install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedPlatform {
    /// Rust's name of the operating system (`std::env::consts::OS`).
    pub os: String,
    /// Rust's name of the CPU architecture (`std::env::consts::ARCH`).
    pub arch: String,
}

impl Platform {
    /// Every supported platform.
    pub const ALL: [Platform; 5] = [
        Platform::DarwinAmd64,
        Platform::DarwinArm64,
        Platform::LinuxAmd64,
        Platform::LinuxArm64,
        Platform::WindowsAmd64,
    ];

    /// The platform this program was compiled for.
    pub fn current() -> Result<Platform, UnsupportedPlatform> {
        Platform::from_rust(std::env::consts::OS, std::env::consts::ARCH)
    }

    /// Maps Rust's `std::env::consts::{OS, ARCH}` names to a platform.
    ///
    /// ```
    /// use kinopio_leaf::binary::Platform;
    /// assert_eq!(Platform::from_rust("linux", "x86_64"), Ok(Platform::LinuxAmd64));
    /// assert!(Platform::from_rust("freebsd", "x86_64").is_err());
    /// ```
    pub fn from_rust(os: &str, arch: &str) -> Result<Platform, UnsupportedPlatform> {
        match (os, arch) {
            ("macos", "x86_64") => Ok(Platform::DarwinAmd64),
            ("macos", "aarch64") => Ok(Platform::DarwinArm64),
            ("linux", "x86_64") => Ok(Platform::LinuxAmd64),
            ("linux", "aarch64") => Ok(Platform::LinuxArm64),
            ("windows", "x86_64") => Ok(Platform::WindowsAmd64),
            _ => Err(UnsupportedPlatform { os: os.to_owned(), arch: arch.to_owned() }),
        }
    }

    /// Parses a release platform tag such as `linux-amd64`.
    pub fn from_tag(tag: &str) -> Option<Platform> {
        Platform::ALL.into_iter().find(|p| p.tag() == tag)
    }

    /// The tag nats-server uses in its asset names, e.g. `linux-amd64`.
    pub fn tag(self) -> &'static str {
        match self {
            Platform::DarwinAmd64 => "darwin-amd64",
            Platform::DarwinArm64 => "darwin-arm64",
            Platform::LinuxAmd64 => "linux-amd64",
            Platform::LinuxArm64 => "linux-arm64",
            Platform::WindowsAmd64 => "windows-amd64",
        }
    }

    /// The archive format of this platform's release asset.
    pub fn archive_kind(self) -> ArchiveKind {
        match self {
            Platform::WindowsAmd64 => ArchiveKind::Zip,
            _ => ArchiveKind::TarGz,
        }
    }

    /// The file name of the server binary on this platform.
    pub fn binary_name(self) -> &'static str {
        match self {
            Platform::WindowsAmd64 => "nats-server.exe",
            _ => "nats-server",
        }
    }

    /// The directory name inside the archive and inside the cache for `version`, e.g.
    /// `nats-server-v2.12.7-linux-amd64`.
    pub fn release_dir_name(self, version: &str) -> String {
        format!("nats-server-v{version}-{}", self.tag())
    }

    /// The official asset file name for `version`, e.g.
    /// `nats-server-v2.12.7-linux-amd64.tar.gz`.
    pub fn asset_name(self, version: &str) -> String {
        format!("{}.{}", self.release_dir_name(version), self.archive_kind().extension())
    }

    /// The binary's path inside the archive, `/`-separated, e.g.
    /// `nats-server-v2.12.7-linux-amd64/nats-server`.
    pub fn binary_entry(self, version: &str) -> String {
        format!("{}/{}", self.release_dir_name(version), self.binary_name())
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_every_supported_rust_target() {
        let cases = [
            ("macos", "x86_64", Platform::DarwinAmd64),
            ("macos", "aarch64", Platform::DarwinArm64),
            ("linux", "x86_64", Platform::LinuxAmd64),
            ("linux", "aarch64", Platform::LinuxArm64),
            ("windows", "x86_64", Platform::WindowsAmd64),
        ];
        for (os, arch, want) in cases {
            assert_eq!(Platform::from_rust(os, arch), Ok(want), "{os}/{arch}");
        }
    }

    #[test]
    fn rejects_unsupported_targets() {
        for (os, arch) in
            [("linux", "x86"), ("linux", "arm"), ("windows", "aarch64"), ("freebsd", "x86_64"), ("linux", "riscv64")]
        {
            let err = Platform::from_rust(os, arch).unwrap_err();
            assert_eq!((err.os.as_str(), err.arch.as_str()), (os, arch));
        }
    }

    #[test]
    fn names_assets_like_the_official_releases() {
        assert_eq!(Platform::LinuxAmd64.asset_name("2.12.7"), "nats-server-v2.12.7-linux-amd64.tar.gz");
        assert_eq!(Platform::DarwinArm64.asset_name("2.12.7"), "nats-server-v2.12.7-darwin-arm64.tar.gz");
        assert_eq!(Platform::WindowsAmd64.asset_name("2.12.7"), "nats-server-v2.12.7-windows-amd64.zip");
        assert_eq!(Platform::WindowsAmd64.binary_entry("2.12.7"), "nats-server-v2.12.7-windows-amd64/nats-server.exe");
        assert_eq!(Platform::LinuxArm64.binary_entry("2.12.7"), "nats-server-v2.12.7-linux-arm64/nats-server");
    }

    #[test]
    fn tags_round_trip() {
        for p in Platform::ALL {
            assert_eq!(Platform::from_tag(p.tag()), Some(p));
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.tag()));
        }
        assert_eq!(Platform::from_tag("linux-386"), None);
    }
}
