//! The nats-server child process: spawn it so that it can never outlive kinopio, wait until
//! it is ready, read the ports it bound, probe its monitor, signal and stop it.
//!
//! - [`ServerProcess::spawn`] starts `nats-server -c <config>` in its own process group
//!   (a Ctrl-C in the terminal reaches kinopio only, which then stops the server in order),
//!   with stdout/stderr appended to a file. On Linux the child gets `PR_SET_PDEATHSIG =
//!   SIGKILL`: if kinopio dies in any way, even by SIGKILL, the kernel kills nats-server.
//!   Because that signal follows the *thread* that forked, children are forked by one
//!   dedicated thread that lives as long as the process.
//! - [`wait_ready`] waits, with a bound, until the process is alive, its ports file names
//!   the ports it bound, the client port accepts connections, the WebSocket port completes
//!   a TLS handshake and the monitor's `/healthz` answers 200; failures carry the log
//!   tail.
//! - [`ServerProcess::stop`] sends SIGTERM, waits a grace period, then SIGKILLs.
//!
//! Ports are never chosen by bind-then-close here: nats-server binds `-1` (random) ports
//! itself and reports them in `nats-server_<pid>.ports` (see [`read_ports_file`]).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::net;

/// Lines of log shown in errors.
pub const LOG_TAIL_LINES: usize = 40;

/// What to run and where its output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnSpec {
    /// The nats-server executable.
    pub binary: PathBuf,
    /// The config file (`-c`).
    pub config_file: PathBuf,
    /// stdout and stderr are appended here.
    pub output_file: PathBuf,
    /// Working directory of the child.
    pub working_dir: PathBuf,
}

/// Errors from running nats-server.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The process could not be started.
    #[error("could not start {}: {source}; check that it is an executable nats-server binary", binary.display())]
    Spawn {
        /// The executable.
        binary: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The output file could not be opened.
    #[error("could not open the nats-server log {}: {source}", path.display())]
    Output {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// nats-server exited while starting.
    #[error("nats-server exited while starting ({status}).\nLog output:\n{log_tail}")]
    Exited {
        /// How it exited.
        status: String,
        /// The last lines of its log.
        log_tail: String,
    },
    /// nats-server did not become ready in time.
    #[error("nats-server was not ready after {waited:?} (still waiting for: {pending}).\nLog output:\n{log_tail}")]
    NotReady {
        /// How long we waited.
        waited: Duration,
        /// The checks that had not passed.
        pending: String,
        /// The last lines of its log.
        log_tail: String,
    },
    /// The HTTP client for the monitor could not be set up.
    #[error("could not set up the HTTP client for the nats-server monitor: {reason}")]
    Monitor {
        /// Why.
        reason: String,
    },
    /// A signal could not be sent.
    #[error("could not send {signal} to nats-server (pid {pid}): {reason}")]
    Signal {
        /// The signal.
        signal: &'static str,
        /// The process.
        pid: u32,
        /// Why.
        reason: String,
    },
}

/// How [`ServerProcess::stop`] ended the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// It had already exited.
    AlreadyExited,
    /// It exited after SIGTERM within the grace period.
    Graceful,
    /// It had to be killed.
    Killed,
}

/// A running (or exited, not yet dropped) nats-server.
#[derive(Debug)]
pub struct ServerProcess {
    child: tokio::process::Child,
    pid: u32,
    exit: Option<ExitStatus>,
    started: Instant,
}

impl ServerProcess {
    /// Starts `spec.binary -c spec.config_file`. Must be called inside a tokio runtime.
    pub async fn spawn(spec: &SpawnSpec) -> Result<ServerProcess, ProcessError> {
        let output = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.output_file)
            .map_err(|source| ProcessError::Output { path: spec.output_file.clone(), source })?;
        let stderr =
            output.try_clone().map_err(|source| ProcessError::Output { path: spec.output_file.clone(), source })?;
        let mut command = tokio::process::Command::new(&spec.binary);
        command
            .arg("-c")
            .arg(&spec.config_file)
            .current_dir(&spec.working_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(output))
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        #[cfg(target_os = "linux")]
        die_with_parent(&mut command);

        let child = spawn_on_spawner_thread(command)
            .await
            .map_err(|source| ProcessError::Spawn { binary: spec.binary.clone(), source })?;
        let Some(pid) = child.id() else {
            return Err(ProcessError::Spawn {
                binary: spec.binary.clone(),
                source: std::io::Error::other("the process exited before its pid could be read"),
            });
        };
        tracing::info!(pid, binary = %spec.binary.display(), "started nats-server");
        Ok(ServerProcess { child, pid, exit: None, started: Instant::now() })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// How long ago it was started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The exit status if it has exited (never blocks).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            self.exit = Some(status);
        }
        self.exit
    }

    /// Waits until it exits. Cancel-safe: use it in `select!`.
    pub async fn exited(&mut self) -> ExitStatus {
        loop {
            if let Some(status) = self.exit {
                return status;
            }
            match self.child.wait().await {
                Ok(status) => self.exit = Some(status),
                Err(err) => {
                    // Should not happen; retry rather than report an exit that did not occur.
                    tracing::warn!(pid = self.pid, error = %err, "could not wait for nats-server; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Asks nats-server to reload its config file and TLS certificates (SIGHUP).
    pub fn reload(&mut self) -> Result<(), ProcessError> {
        self.signal(ServerSignal::Reload)
    }

    fn signal(&mut self, signal: ServerSignal) -> Result<(), ProcessError> {
        // Only signal a child we have not reaped: its pid cannot have been reused.
        if self.try_exit().is_some() {
            return Err(ProcessError::Signal {
                signal: signal.name(),
                pid: self.pid,
                reason: "it has exited".to_owned(),
            });
        }
        send_signal(&mut self.child, self.pid, signal)
    }

    /// Stops it: SIGTERM, up to `grace` to exit, then SIGKILL. Always reaps the process.
    pub async fn stop(mut self, grace: Duration) -> StopOutcome {
        if self.try_exit().is_some() {
            return StopOutcome::AlreadyExited;
        }
        if let Err(err) = self.signal(ServerSignal::Terminate) {
            tracing::warn!(pid = self.pid, error = %err, "could not ask nats-server to stop");
        }
        if let Ok(status) = tokio::time::timeout(grace, self.exited()).await {
            tracing::info!(pid = self.pid, %status, "nats-server stopped");
            return StopOutcome::Graceful;
        }
        tracing::warn!(pid = self.pid, ?grace, "nats-server did not stop in time; killing it");
        if let Err(err) = self.child.kill().await {
            tracing::warn!(pid = self.pid, error = %err, "could not kill nats-server");
        }
        StopOutcome::Killed
    }
}

#[derive(Debug, Clone, Copy)]
enum ServerSignal {
    Terminate,
    Reload,
}

impl ServerSignal {
    fn name(self) -> &'static str {
        match self {
            ServerSignal::Terminate => "SIGTERM",
            ServerSignal::Reload => "SIGHUP",
        }
    }
}

#[cfg(unix)]
fn send_signal(_child: &mut tokio::process::Child, pid: u32, signal: ServerSignal) -> Result<(), ProcessError> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let raw = match signal {
        ServerSignal::Terminate => Signal::SIGTERM,
        ServerSignal::Reload => Signal::SIGHUP,
    };
    let fail = |reason: String| ProcessError::Signal { signal: signal.name(), pid, reason };
    let pid_value = i32::try_from(pid).map_err(|_| fail("pid out of range".to_owned()))?;
    kill(Pid::from_raw(pid_value), raw).map_err(|errno| fail(errno.to_string()))
}

#[cfg(not(unix))]
fn send_signal(child: &mut tokio::process::Child, pid: u32, signal: ServerSignal) -> Result<(), ProcessError> {
    match signal {
        // No SIGTERM here: stop means kill.
        ServerSignal::Terminate => child.start_kill().map_err(|err| ProcessError::Signal {
            signal: signal.name(),
            pid,
            reason: err.to_string(),
        }),
        ServerSignal::Reload => Err(ProcessError::Signal {
            signal: signal.name(),
            pid,
            reason: "reloading is only supported on Unix".to_owned(),
        }),
    }
}

/// Makes the kernel SIGKILL the child when the forking thread (the spawner thread, which
/// lives as long as this process) dies, and refuses to exec if this process is already
/// gone by then.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn die_with_parent(command: &mut tokio::process::Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child between fork and exec, where only
    // async-signal-safe functions may be called. It calls prctl(2) and getppid(2), both
    // async-signal-safe, allocates nothing (io::Error::last_os_error and
    // from_raw_os_error do not allocate), takes no locks and touches no shared state.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect; then nobody would kill us.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

struct SpawnJob {
    command: tokio::process::Command,
    runtime: tokio::runtime::Handle,
    reply: tokio::sync::oneshot::Sender<std::io::Result<tokio::process::Child>>,
}

/// The long-lived thread that forks every nats-server (see the module docs).
fn spawner() -> Option<&'static std::sync::mpsc::Sender<SpawnJob>> {
    static SPAWNER: OnceLock<Option<std::sync::mpsc::Sender<SpawnJob>>> = OnceLock::new();
    SPAWNER
        .get_or_init(|| {
            let (sender, receiver) = std::sync::mpsc::channel::<SpawnJob>();
            let started = std::thread::Builder::new().name("kinopio-nats-spawner".into()).spawn(move || {
                for mut job in receiver {
                    let _entered = job.runtime.enter();
                    let _ = job.reply.send(job.command.spawn());
                }
            });
            match started {
                Ok(_) => Some(sender),
                Err(err) => {
                    tracing::warn!(error = %err, "could not start the spawner thread; forking from the caller's thread");
                    None
                }
            }
        })
        .as_ref()
}

async fn spawn_on_spawner_thread(mut command: tokio::process::Command) -> std::io::Result<tokio::process::Child> {
    let Some(spawner) = spawner() else {
        return command.spawn();
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job = SpawnJob { command, runtime: tokio::runtime::Handle::current(), reply };
    if let Err(std::sync::mpsc::SendError(mut job)) = spawner.send(job) {
        return job.command.spawn();
    }
    answer.await.map_err(|_| std::io::Error::other("the spawner thread stopped"))?
}

/// The ports nats-server reported binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundPorts {
    /// Plain NATS client port.
    pub client: u16,
    /// HTTP monitor port.
    pub monitor: u16,
    /// WebSocket port.
    pub websocket: u16,
}

/// The ports file nats-server writes into `dir` for `pid`.
pub fn ports_file_path(dir: &Path, pid: u32) -> PathBuf {
    dir.join(format!("nats-server_{pid}.ports"))
}

/// Parses a ports file (`{"nats":["nats://127.0.0.1:4222"],"monitoring":[...],
/// "websocket":[...]}`). Pure.
pub fn parse_ports_file(text: &str) -> Result<BoundPorts, String> {
    let value: Value = serde_json::from_str(text).map_err(|err| format!("not JSON: {err}"))?;
    let port = |key: &str| -> Result<u16, String> {
        let url = value
            .get(key)
            .and_then(Value::as_array)
            .and_then(|urls| urls.first())
            .and_then(Value::as_str)
            .ok_or_else(|| format!("no {key:?} URL"))?;
        url.trim_end_matches('/')
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .ok_or_else(|| format!("no port in {url:?}"))
    };
    Ok(BoundPorts { client: port("nats")?, monitor: port("monitoring")?, websocket: port("websocket")? })
}

/// Reads the ports file of `pid` in `dir`, if it is there and complete.
pub fn read_ports_file(dir: &Path, pid: u32) -> Option<BoundPorts> {
    let text = std::fs::read_to_string(ports_file_path(dir, pid)).ok()?;
    parse_ports_file(&text).ok()
}

/// The ports that nats-server could not bind because they were in use, from its log text
/// (`listen tcp 127.0.0.1:4222: bind: address already in use`). Pure.
pub fn ports_in_use(log: &str) -> Vec<u16> {
    const MARKER: &str = ": bind: address already in use";
    let mut ports = Vec::new();
    for line in log.lines() {
        let Some(end) = line.find(MARKER) else { continue };
        let Some(start) = line[..end].rfind("listen tcp ") else { continue };
        let addr = &line[start + "listen tcp ".len()..end];
        if let Some(port) = addr.rsplit(':').next().and_then(|port| port.parse::<u16>().ok())
            && !ports.contains(&port)
        {
            ports.push(port);
        }
    }
    ports
}

/// The last `max_lines` lines of each existing file of `files`, in order; `(empty log)`
/// when there is nothing.
pub fn log_tail(files: &[PathBuf], max_lines: usize) -> String {
    let mut parts = Vec::new();
    for file in files {
        let Ok(bytes) = std::fs::read(file) else { continue };
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        if lines.is_empty() {
            continue;
        }
        let tail = lines[lines.len().saturating_sub(max_lines)..].join("\n");
        parts.push(tail);
    }
    if parts.is_empty() { "(empty log)".to_owned() } else { parts.join("\n") }
}

/// An HTTP client for nats-server's monitor (`/healthz`, `/leafz`), with short timeouts
/// and no proxy.
#[derive(Debug, Clone)]
pub struct Monitor {
    http: reqwest::Client,
    base: String,
}

impl Monitor {
    /// A client for the monitor at `addr`; each request gives up after `timeout`.
    pub fn new(addr: SocketAddr, timeout: Duration) -> Result<Monitor, ProcessError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|err| ProcessError::Monitor { reason: describe(&err) })?;
        Ok(Monitor { http, base: format!("http://{}", net::host_port(&addr.ip().to_string(), addr.port())) })
    }

    /// The monitor's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `Ok(true)` when `/healthz` answers 200, `Ok(false)` for another status, `Err` when
    /// it cannot be reached.
    pub async fn healthy(&self) -> Result<bool, String> {
        let response = self.http.get(format!("{}/healthz", self.base)).send().await.map_err(|err| describe(&err))?;
        Ok(response.status() == reqwest::StatusCode::OK)
    }

    /// The `/leafz` document.
    pub async fn leafz(&self) -> Result<Value, String> {
        let response = self.http.get(format!("{}/leafz", self.base)).send().await.map_err(|err| describe(&err))?;
        if !response.status().is_success() {
            return Err(format!("/leafz answered {}", response.status()));
        }
        response.json::<Value>().await.map_err(|err| describe(&err))
    }
}

fn describe(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What [`wait_ready`] checks.
#[derive(Debug, Clone)]
pub struct ReadyCheck {
    /// Where the ports file appears.
    pub ports_file_dir: PathBuf,
    /// Client listener bind address.
    pub client_host: IpAddr,
    /// WebSocket listener bind address.
    pub websocket_host: IpAddr,
    /// Monitor bind address.
    pub monitor_host: IpAddr,
    /// Log files for error messages.
    pub log_files: Vec<PathBuf>,
    /// Time between checks.
    pub poll_interval: Duration,
    /// Bound of each TCP or HTTP check.
    pub probe_timeout: Duration,
}

/// Waits up to `timeout` until `process` is ready (see the module docs) and returns the
/// ports it bound.
pub async fn wait_ready(
    process: &mut ServerProcess,
    check: &ReadyCheck,
    timeout: Duration,
) -> Result<BoundPorts, ProcessError> {
    let started = Instant::now();
    let mut ports: Option<BoundPorts> = None;
    let mut monitor: Option<Monitor> = None;
    let mut pending;
    loop {
        if let Some(status) = process.try_exit() {
            return Err(ProcessError::Exited {
                status: status.to_string(),
                log_tail: log_tail(&check.log_files, LOG_TAIL_LINES),
            });
        }
        if ports.is_none() {
            ports = read_ports_file(&check.ports_file_dir, process.pid());
        }
        pending = Vec::new();
        match ports {
            None => pending.push("the ports file"),
            Some(bound) => {
                if monitor.is_none() {
                    let addr = SocketAddr::new(net::connect_address(check.monitor_host), bound.monitor);
                    monitor = Some(Monitor::new(addr, check.probe_timeout)?);
                }
                let Some(monitor) = monitor.as_ref() else { continue };
                let client = SocketAddr::new(net::connect_address(check.client_host), bound.client);
                let websocket = SocketAddr::new(net::connect_address(check.websocket_host), bound.websocket);
                let (client_ok, websocket_ok, healthy) = tokio::join!(
                    net::accepts(client, check.probe_timeout),
                    net::accepts_tls(websocket, check.probe_timeout),
                    monitor.healthy(),
                );
                if !client_ok {
                    pending.push("the client port");
                }
                if !websocket_ok {
                    pending.push("the WebSocket port");
                }
                if healthy != Ok(true) {
                    pending.push("the monitor's /healthz");
                }
                if pending.is_empty() {
                    tracing::debug!(pid = process.pid(), elapsed = ?started.elapsed(), ?bound, "nats-server is ready");
                    return Ok(bound);
                }
            }
        }
        if started.elapsed() >= timeout {
            return Err(ProcessError::NotReady {
                waited: started.elapsed(),
                pending: pending.join(", "),
                log_tail: log_tail(&check.log_files, LOG_TAIL_LINES),
            });
        }
        tokio::select! {
            status = process.exited() => {
                return Err(ProcessError::Exited {
                    status: status.to_string(),
                    log_tail: log_tail(&check.log_files, LOG_TAIL_LINES),
                });
            }
            () = tokio::time::sleep(check.poll_interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_ports_file() {
        let text = r#"{"nats":["nats://127.0.0.1:38507"],"monitoring":["http://127.0.0.1:40217"],"websocket":["wss://[::1]:36843"]}"#;
        assert_eq!(parse_ports_file(text), Ok(BoundPorts { client: 38507, monitor: 40217, websocket: 36843 }));
        assert!(parse_ports_file(r#"{"nats":["nats://127.0.0.1:1"]}"#).unwrap_err().contains("monitoring"));
        assert!(parse_ports_file("{").is_err());
    }

    #[test]
    fn finds_ports_in_use_in_the_log() {
        let log = "[1] [INF] Using configuration file: c.conf\n\
            [1] [FTL] Error listening on port: 127.0.0.1:40095, \"listen tcp 127.0.0.1:40095: bind: address already in use\"\n\
            [2] [FTL] Can't start monitoring: can't listen to the monitor port: listen tcp [::1]:8222: bind: address already in use\n\
            [3] [FTL] Unable to listen for websocket connections: listen tcp 127.0.0.1:40095: bind: address already in use\n";
        assert_eq!(ports_in_use(log), vec![40095, 8222]);
        assert!(ports_in_use("[1] [INF] Server is ready").is_empty());
    }

    #[test]
    fn log_tail_keeps_the_last_lines_of_each_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.log");
        let b = dir.path().join("b.log");
        std::fs::write(&a, "1\n2\n3\n").unwrap();
        std::fs::write(&b, "x\n").unwrap();
        assert_eq!(log_tail(&[a.clone(), dir.path().join("missing"), b], 2), "2\n3\nx");
        assert_eq!(log_tail(&[dir.path().join("missing")], 2), "(empty log)");
    }
}
