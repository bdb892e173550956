//! The pinned nats-server release table (`manifests/nats-server-release.json`, embedded at
//! build time), download URL layout, and `SHA256SUMS` parsing. Pure functions only.
//!
//! URL layout: `<base>/v<version>/<asset>` and `<base>/v<version>/SHA256SUMS`, where the
//! official base is `https://github.com/nats-io/nats-server/releases/download`. A mirror
//! must keep that layout below its base, which is what the common setups do: an
//! Artifactory/Nexus "generic"/"raw" remote proxying `https://github.com/` is used as
//! `https://mirror/<repo>/nats-io/nats-server/releases/download`, and a plain file server
//! just needs a `v2.12.7/` folder holding the asset(s) and `SHA256SUMS`.

use std::collections::BTreeMap;

use serde::Deserialize;
use url::Url;

use super::error::BinaryError;
use super::platform::Platform;
use super::version::is_valid_version;

/// The release table as shipped, embedded from `manifests/nats-server-release.json`.
pub(crate) const PINNED_RELEASE_JSON: &str = include_str!("../../../manifests/nats-server-release.json");

/// Where nats-server publishes its releases (the default download base URL).
pub const OFFICIAL_BASE_URL: &str = "https://github.com/nats-io/nats-server/releases/download";

/// Name of the checksum file published with every release.
pub const CHECKSUMS_ASSET: &str = "SHA256SUMS";

/// A SHA-256 digest.
pub type Sha256Digest = [u8; 32];

/// Which nats-server release to download and the SHA-256 of each platform's archive.
///
/// ```
/// use kinopio_leaf::binary::{Platform, ReleaseTable};
/// let pinned = ReleaseTable::pinned()?;
/// assert_eq!(pinned.version(), "2.12.7");
/// assert!(pinned.sha256(Platform::LinuxAmd64).is_some());
///
/// // Tests inject their own table (locally built archives cannot match the real sums):
/// let table = ReleaseTable::new("2.12.7")?.with_sha256(Platform::LinuxAmd64, [0u8; 32]);
/// assert_eq!(table.sha256(Platform::LinuxAmd64), Some([0u8; 32]));
/// # Ok::<(), kinopio_leaf::binary::BinaryError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseTable {
    version: String,
    base_url: String,
    sha256: BTreeMap<Platform, Sha256Digest>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReleaseFile {
    version: String,
    base_url: String,
    checksums_asset: String,
    assets: BTreeMap<String, AssetFile>,
}

#[derive(Debug, Deserialize)]
struct AssetFile {
    asset: String,
    sha256: Option<String>,
}

impl ReleaseTable {
    /// The pinned table shipped with this crate.
    pub fn pinned() -> Result<ReleaseTable, BinaryError> {
        ReleaseTable::from_json(PINNED_RELEASE_JSON)
    }

    /// A table for `version` with the official base URL and no pinned checksums (every
    /// platform then falls back to the release's `SHA256SUMS`).
    pub fn new(version: impl Into<String>) -> Result<ReleaseTable, BinaryError> {
        let version = version.into();
        if !is_valid_version(&version) {
            return Err(table_error(format!("version {version:?} is not like 2.12.7")));
        }
        Ok(ReleaseTable { version, base_url: OFFICIAL_BASE_URL.to_owned(), sha256: BTreeMap::new() })
    }

    /// Pins the SHA-256 of `platform`'s archive.
    pub fn with_sha256(mut self, platform: Platform, digest: Sha256Digest) -> ReleaseTable {
        self.sha256.insert(platform, digest);
        self
    }

    /// Parses and validates a release table in the `manifests/nats-server-release.json`
    /// format.
    pub fn from_json(json: &str) -> Result<ReleaseTable, BinaryError> {
        let file: ReleaseFile = serde_json::from_str(json).map_err(|e| table_error(format!("not valid JSON: {e}")))?;
        let mut table = ReleaseTable::new(file.version)?;
        if file.checksums_asset != CHECKSUMS_ASSET {
            return Err(table_error(format!(
                "checksumsAsset must be {CHECKSUMS_ASSET:?}, found {:?}",
                file.checksums_asset
            )));
        }
        parse_base_url(&file.base_url)?;
        table.base_url = file.base_url;
        for (tag, entry) in file.assets {
            let platform = Platform::from_tag(&tag).ok_or_else(|| table_error(format!("unknown platform {tag:?}")))?;
            let want = platform.asset_name(&table.version);
            if entry.asset != want {
                return Err(table_error(format!("asset for {tag} is {:?}, expected {want:?}", entry.asset)));
            }
            if let Some(hex_sum) = entry.sha256 {
                let digest = parse_sha256_hex(&hex_sum)
                    .ok_or_else(|| table_error(format!("sha256 for {tag} is not 64 hex digits")))?;
                table.sha256.insert(platform, digest);
            }
        }
        Ok(table)
    }

    /// The release version, e.g. `2.12.7`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The table's own download base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The pinned SHA-256 of `platform`'s archive, if any.
    pub fn sha256(&self, platform: Platform) -> Option<Sha256Digest> {
        self.sha256.get(&platform).copied()
    }
}

fn table_error(reason: String) -> BinaryError {
    BinaryError::ReleaseTable { reason }
}

/// Checks that `base` is an absolute http(s) URL usable as a download base.
pub(crate) fn parse_base_url(base: &str) -> Result<Url, BinaryError> {
    let invalid = |reason: String| BinaryError::InvalidBaseUrl { base: base.to_owned(), reason };
    let url = Url::parse(base).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!("scheme {:?} is not http or https", url.scheme())));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it must not have a query or fragment".to_owned()));
    }
    Ok(url)
}

/// `<base>/v<version>/<file>`; a trailing `/` on `base` is ignored.
///
/// ```
/// use kinopio_leaf::binary::release_file_url;
/// let url = release_file_url("https://mirror.example/nats/", "2.12.7", "SHA256SUMS")?;
/// assert_eq!(url.as_str(), "https://mirror.example/nats/v2.12.7/SHA256SUMS");
/// # Ok::<(), kinopio_leaf::binary::BinaryError>(())
/// ```
pub fn release_file_url(base: &str, version: &str, file: &str) -> Result<Url, BinaryError> {
    let base_url = parse_base_url(base)?;
    let joined = format!("{}/v{version}/{file}", base_url.as_str().trim_end_matches('/'));
    Url::parse(&joined).map_err(|e| BinaryError::InvalidBaseUrl { base: base.to_owned(), reason: e.to_string() })
}

/// Parses 64 hex digits (either case).
pub fn parse_sha256_hex(text: &str) -> Option<Sha256Digest> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    hex::decode_to_slice(text, &mut digest).ok()?;
    Some(digest)
}

/// Why `SHA256SUMS` gave no usable checksum for an asset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChecksumLookupError {
    /// No line names the asset.
    #[error("the file has no line for this asset")]
    Missing,
    /// The line naming the asset has no valid digest.
    #[error("the line for this asset is malformed: {0:?}")]
    Malformed(String),
    /// Several lines name the asset with different digests.
    #[error("the file lists this asset twice with different digests")]
    Conflicting,
}

/// Finds `asset`'s digest in a `sha256sum`-style file (`<hex>  <name>` or
/// `<hex> *<name>` per line).
///
/// ```
/// use kinopio_leaf::binary::checksum_for_asset;
/// let sums = format!("{}  nats-server-v2.12.7-linux-amd64.tar.gz\n", "ab".repeat(32));
/// assert_eq!(checksum_for_asset(&sums, "nats-server-v2.12.7-linux-amd64.tar.gz"), Ok([0xab; 32]));
/// ```
pub fn checksum_for_asset(sums: &str, asset: &str) -> Result<Sha256Digest, ChecksumLookupError> {
    let mut found: Option<Sha256Digest> = None;
    for line in sums.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((hex_sum, name)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let name = name.trim_start();
        let name = name.strip_prefix('*').unwrap_or(name);
        if name != asset {
            continue;
        }
        let digest = parse_sha256_hex(hex_sum).ok_or_else(|| ChecksumLookupError::Malformed(line.to_owned()))?;
        match found {
            Some(previous) if previous != digest => return Err(ChecksumLookupError::Conflicting),
            _ => found = Some(digest),
        }
    }
    found.ok_or(ChecksumLookupError::Missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_table_is_valid_and_pins_linux() {
        let table = ReleaseTable::pinned().unwrap();
        assert_eq!(table.version(), "2.12.7");
        assert_eq!(table.base_url(), OFFICIAL_BASE_URL);
        assert_eq!(
            table.sha256(Platform::LinuxAmd64).map(hex::encode).as_deref(),
            Some("570d2d627db111e679cc1e6bc57ba78f373ed1769acd8dc9c21c8f62d15b3c52")
        );
        assert_eq!(
            table.sha256(Platform::LinuxArm64).map(hex::encode).as_deref(),
            Some("3b9a79986778285c0e5acaba0b1218b72f6159db68fe5b8916a7d846240f9f22")
        );
        assert_eq!(table.sha256(Platform::WindowsAmd64), None);
    }

    #[test]
    fn pinned_json_lists_every_platform() {
        let file: ReleaseFile = serde_json::from_str(PINNED_RELEASE_JSON).unwrap();
        for p in Platform::ALL {
            assert!(file.assets.contains_key(p.tag()), "{p} missing");
        }
    }

    #[test]
    fn rejects_inconsistent_tables() {
        let bad_asset = r#"{"version":"2.12.7","baseUrl":"https://x/y","checksumsAsset":"SHA256SUMS",
            "assets":{"linux-amd64":{"asset":"nats-server-v2.12.6-linux-amd64.tar.gz","sha256":null}}}"#;
        let bad_sum = r#"{"version":"2.12.7","baseUrl":"https://x/y","checksumsAsset":"SHA256SUMS",
            "assets":{"linux-amd64":{"asset":"nats-server-v2.12.7-linux-amd64.tar.gz","sha256":"abc"}}}"#;
        let bad_platform = r#"{"version":"2.12.7","baseUrl":"https://x/y","checksumsAsset":"SHA256SUMS",
            "assets":{"plan9-amd64":{"asset":"x","sha256":null}}}"#;
        let bad_version = r#"{"version":"latest","baseUrl":"https://x/y","checksumsAsset":"SHA256SUMS","assets":{}}"#;
        let bad_base = r#"{"version":"2.12.7","baseUrl":"ftp://x/y","checksumsAsset":"SHA256SUMS","assets":{}}"#;
        for json in [bad_asset, bad_sum, bad_platform, bad_version] {
            let err = ReleaseTable::from_json(json).unwrap_err();
            assert_eq!(err.kind(), super::super::BinaryErrorKind::ReleaseTable, "{err}");
        }
        let err = ReleaseTable::from_json(bad_base).unwrap_err();
        assert_eq!(err.kind(), super::super::BinaryErrorKind::InvalidBaseUrl);
    }

    #[test]
    fn builds_release_urls() {
        let url = release_file_url(OFFICIAL_BASE_URL, "2.12.7", "nats-server-v2.12.7-linux-amd64.tar.gz").unwrap();
        assert_eq!(
            url.as_str(),
            "https://github.com/nats-io/nats-server/releases/download/v2.12.7/nats-server-v2.12.7-linux-amd64.tar.gz"
        );
        let url = release_file_url("http://127.0.0.1:8080", "2.12.7", "SHA256SUMS").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/v2.12.7/SHA256SUMS");
        assert!(release_file_url("file:///tmp", "2.12.7", "x").is_err());
        assert!(release_file_url("not a url", "2.12.7", "x").is_err());
        assert!(release_file_url("https://x/?q=1", "2.12.7", "x").is_err());
    }

    #[test]
    fn finds_checksums_in_sha256sums() {
        let a = "a".repeat(64);
        let b = "B".repeat(64);
        let sums = format!(
            "# comment\n{a}  nats-server-v2.12.7-linux-amd64.tar.gz\n\
             {b} *nats-server-v2.12.7-windows-amd64.zip\n\
             {a}  nats-server-v2.12.7-linux-amd64.tar.gz.sig\n"
        );
        assert_eq!(checksum_for_asset(&sums, "nats-server-v2.12.7-linux-amd64.tar.gz"), Ok([0xaa; 32]));
        assert_eq!(checksum_for_asset(&sums, "nats-server-v2.12.7-windows-amd64.zip"), Ok([0xbb; 32]));
        assert_eq!(
            checksum_for_asset(&sums, "nats-server-v2.12.7-darwin-arm64.tar.gz"),
            Err(ChecksumLookupError::Missing)
        );
        assert_eq!(
            checksum_for_asset("zz  x.tar.gz\n", "x.tar.gz"),
            Err(ChecksumLookupError::Malformed("zz  x.tar.gz".into()))
        );
        let twice = format!("{a}  x.tar.gz\n{b}  x.tar.gz\n");
        assert_eq!(checksum_for_asset(&twice, "x.tar.gz"), Err(ChecksumLookupError::Conflicting));
        // A line naming a longer file must not match a prefix of it.
        assert_eq!(checksum_for_asset(&format!("{a}  x.tar.gz.sig\n"), "x.tar.gz"), Err(ChecksumLookupError::Missing));
    }
}
