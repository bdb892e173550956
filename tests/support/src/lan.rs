//! A LAN of network namespaces for multi-host tests and the benchmark's failover scenario:
//! `scripts/lan.sh` builds a bridge in a namespace of its own and hosts `<prefix>-h1..hN`
//! (host i is 10.77.0.i/24 on `eth0`, with a multicast route), so nothing touches the host's
//! network. Needs root and iproute2. The LAN is removed when its [`Lan`] is dropped (also on
//! panic): `lan.sh down` kills whatever still runs inside and deletes the namespaces.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Environment variable replacing the first part (`k`) of every namespace name, so that
/// runs of several checkouts on one machine can tell their namespaces apart.
pub const PREFIX_ENV: &str = "KINOPIO_LAN_PREFIX";

/// Interface names are limited to 15 bytes and `lan.sh` names a host's end `p<i>-<prefix>`.
const MAX_PREFIX: usize = 12;

/// Whether this process runs as root (network namespaces need it).
pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// `scripts/lan.sh` of this repository.
pub fn script() -> PathBuf {
    crate::repo_root().join("scripts/lan.sh")
}

/// A LAN of network namespaces; removed on drop.
#[derive(Debug)]
pub struct Lan {
    script: PathBuf,
    prefix: String,
}

impl Lan {
    /// Builds a LAN of `hosts` hosts named `<k><tag><pid>-h<i>` (`k` or `$KINOPIO_LAN_PREFIX`,
    /// then a short tag of the caller, then this process's id), after removing any left over
    /// under the same name.
    ///
    /// # Errors
    /// When the name is too long for an interface name, `scripts/lan.sh` is missing, or it
    /// fails (not root, no iproute2).
    pub fn up(tag: &str, hosts: usize) -> io::Result<Lan> {
        let base = std::env::var(PREFIX_ENV).ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "k".to_owned());
        // The last digits of the process id (up to 5), as many as fit.
        let pid = (std::process::id() % 100_000).to_string();
        let room = MAX_PREFIX.saturating_sub(base.len() + tag.len()).min(pid.len());
        if room < pid.len().min(3) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "LAN prefix {base:?} + tag {tag:?} leaves no room for a process id in {MAX_PREFIX} bytes (interface names are limited to 15); shorten {PREFIX_ENV}"
                ),
            ));
        }
        let prefix = format!("{base}{tag}{}", &pid[pid.len() - room..]);
        let lan = Lan { script: script(), prefix };
        lan.run(&["down"])?;
        lan.run(&["up", &hosts.to_string()])?;
        Ok(lan)
    }

    /// Runs `lan.sh <command> <prefix> <args>`.
    fn run(&self, args: &[&str]) -> io::Result<()> {
        let out = Command::new(&self.script)
            .arg(args[0])
            .arg(&self.prefix)
            .args(&args[1..])
            .output()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run {}: {e}", self.script.display())))?;
        if out.status.success() {
            return Ok(());
        }
        Err(io::Error::other(format!(
            "`{} {} {}` exited with {}: {}",
            self.script.display(),
            args[0],
            self.prefix,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }

    /// The first part of every namespace name of this LAN.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The network namespace of host `host` (1-based).
    pub fn netns(&self, host: usize) -> String {
        format!("{}-h{host}", self.prefix)
    }

    /// `ip netns exec <host> program`, to add arguments to and spawn.
    pub fn command(&self, host: usize, program: &Path) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.netns(host)]).arg(program);
        command
    }

    /// Disconnects host `host` from the bridge (a partition).
    ///
    /// # Errors
    /// When `lan.sh cut` fails.
    pub fn cut(&self, host: usize) -> io::Result<()> {
        self.run(&["cut", &host.to_string()])
    }

    /// Reconnects host `host`.
    ///
    /// # Errors
    /// When `lan.sh heal` fails.
    pub fn heal(&self, host: usize) -> io::Result<()> {
        self.run(&["heal", &host.to_string()])
    }

    /// Processes still running inside host `host` (none when they cannot be listed).
    pub fn pids(&self, host: usize) -> Vec<String> {
        let Ok(out) = Command::new("ip").args(["netns", "pids", &self.netns(host)]).output() else {
            return Vec::new();
        };
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect()
    }

    /// Waits until nothing runs inside host `host` any more; panics with what is left after
    /// `limit`.
    pub fn wait_empty(&self, host: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.pids(host).is_empty() {
            assert!(Instant::now() < deadline, "processes left on h{host}: {:?}", self.pids(host));
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = Command::new(&self.script)
            .args(["down", &self.prefix])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
