//! nats-server version strings: validation, ordering, and reading the version out of
//! `nats-server --version` output. Pure functions only.

use std::cmp::Ordering;

/// A parsed nats-server version such as `2.12.7` or `2.11.0-RC.1`, ordered numerically
/// (a release sorts above its pre-releases).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    numbers: Vec<u64>,
    pre: Option<String>,
}

impl Version {
    /// Parses `<digits>(.<digits>)*(-<pre-release>)?`; a leading `v` is not accepted.
    pub fn parse(text: &str) -> Option<Version> {
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (text, None),
        };
        let numbers = core
            .split('.')
            .map(|part| {
                if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                    None
                } else {
                    part.parse::<u64>().ok()
                }
            })
            .collect::<Option<Vec<u64>>>()?;
        if let Some(pre) = pre {
            let valid = !pre.is_empty() && pre.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            if !valid {
                return None;
            }
        }
        Some(Version { numbers, pre: pre.map(str::to_owned) })
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let len = self.numbers.len().max(other.numbers.len());
        for i in 0..len {
            let a = self.numbers.get(i).copied().unwrap_or(0);
            let b = other.numbers.get(i).copied().unwrap_or(0);
            match a.cmp(&b) {
                Ordering::Equal => {}
                unequal => return unequal,
            }
        }
        match (&self.pre, &other.pre) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(a), Some(b)) => a.cmp(b),
        }
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Whether `text` is a valid version string (see [`Version::parse`]).
pub(super) fn is_valid_version(text: &str) -> bool {
    Version::parse(text).is_some()
}

/// Extracts the version from `nats-server --version` output (`nats-server: v2.12.7`):
/// the first whitespace-separated token of the form `v<version>`.
///
/// ```
/// use kinopio_leaf::binary::version_from_output;
/// assert_eq!(version_from_output("nats-server: v2.12.7\n").as_deref(), Some("2.12.7"));
/// assert_eq!(version_from_output("usage: foo"), None);
/// ```
pub fn version_from_output(output: &str) -> Option<String> {
    output.split_whitespace().find_map(|token| {
        let token = token.trim_end_matches([',', ';', ')']);
        let rest = token.strip_prefix('v')?;
        is_valid_version(rest).then(|| rest.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_release_and_pre_release_versions() {
        assert!(is_valid_version("2.12.7"));
        assert!(is_valid_version("2.11.0-RC.1"));
        assert!(is_valid_version("10"));
        for bad in ["", "v2.12.7", "2..7", "2.x.7", "2.12.7-", "2.12.7-a b", "2.12.7/.."] {
            assert!(!is_valid_version(bad), "{bad:?}");
        }
    }

    #[test]
    fn orders_numerically_and_releases_above_pre_releases() {
        let v = |s: &str| Version::parse(s).unwrap();
        assert!(v("2.12.7") > v("2.9.22"));
        assert!(v("2.12.10") > v("2.12.7"));
        assert!(v("2.12.0") > v("2.12.0-RC.3"));
        assert!(v("2.12.0-RC.3") > v("2.12.0-RC.1"));
        assert_eq!(v("2.12").cmp(&v("2.12.0")), Ordering::Equal);
    }

    #[test]
    fn reads_version_from_nats_server_output() {
        assert_eq!(version_from_output("nats-server: v2.12.7").as_deref(), Some("2.12.7"));
        assert_eq!(version_from_output("nats-server: v2.11.0-RC.1\n").as_deref(), Some("2.11.0-RC.1"));
        assert_eq!(version_from_output("nats-server: version unknown"), None);
        assert_eq!(version_from_output(""), None);
    }
}
