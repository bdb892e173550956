//! What the benchmark ran on: CPU, cores, kernel, memory, the nats-server, the source
//! commit. Read from `/proc` and `git`; anything unavailable is left out.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

use super::server::ServerInfo;

/// The machine and software of a run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    /// CPU model name.
    pub cpu_model: Option<String>,
    /// Cores available to this process.
    pub cores: usize,
    /// Kernel release.
    pub kernel: Option<String>,
    /// Operating system and architecture.
    pub os: String,
    /// Total memory in MB.
    pub memory_mb: Option<u64>,
    /// The server used.
    pub nats_server: ServerInfo,
    /// kinopio's version.
    pub kinopio_version: &'static str,
    /// The source commit (`git rev-parse HEAD` in the source tree).
    pub git_commit: Option<String>,
    /// Whether the source tree had uncommitted changes.
    pub git_dirty: Option<bool>,
}

impl Machine {
    /// Describes this machine.
    pub(crate) fn describe(server: ServerInfo) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let source = kinopio_test_support::repo_root();
        let git_commit = git(&source, &["rev-parse", "HEAD"]);
        let git_dirty = git_commit
            .as_ref()
            .and_then(|_| git(&source, &["status", "--porcelain", "--untracked-files=no"]))
            .map(|s| !s.is_empty())
            .or_else(|| git_commit.as_ref().map(|_| false));
        Machine {
            cpu_model: field(&cpuinfo, "model name"),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_owned()),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            memory_mb: field(&meminfo, "MemTotal").and_then(|v| kilobytes(&v)).map(|kb| kb * 1024 / 1_000_000),
            nats_server: server,
            kinopio_version: env!("CARGO_PKG_VERSION"),
            git_commit,
            git_dirty,
        }
    }
}

/// The value of the first `name: value` line of a `/proc` file.
pub(crate) fn field(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then(|| value.trim().to_owned())
    })
}

/// `"12345 kB"` → 12345.
pub(crate) fn kilobytes(value: &str) -> Option<u64> {
    value.split_whitespace().next()?.parse().ok()
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_fields() {
        let text = "processor\t: 0\nmodel name\t: AMD EPYC\nMemTotal:       24576000 kB\n";
        assert_eq!(field(text, "model name").as_deref(), Some("AMD EPYC"));
        assert_eq!(field(text, "MemTotal").as_deref().and_then(kilobytes), Some(24_576_000));
        assert_eq!(field(text, "missing"), None);
    }
}
