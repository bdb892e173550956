//! Starts nats-server so that it can never outlive kinopio, signals it and stops it.
//!
//! [`ServerProcess::spawn`] starts `nats-server -c <config>` in its own process group (a
//! Ctrl-C in the terminal reaches kinopio only, which then stops the server in order), with
//! stdout/stderr appended to a file. On Linux the child gets `PR_SET_PDEATHSIG = SIGKILL`:
//! if kinopio dies in any way, even by SIGKILL, the kernel kills nats-server. Because that
//! signal follows the *thread* that forked, children are forked by one dedicated thread
//! that lives as long as the process. [`ServerProcess::stop`] sends SIGTERM, waits a grace
//! period, then SIGKILLs.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::ProcessError;

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

/// How [`ServerProcess::stop`] ended the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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
    ///
    /// # Errors
    ///
    /// [`ProcessError::Output`] when the output file cannot be opened,
    /// [`ProcessError::Spawn`] when the binary cannot be started.
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped after the fork, the child is killed when its handle (held
    /// by the dropped future) is dropped.
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

    /// Waits until it exits.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: use it in `select!`; the exit status is kept once seen.
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
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe in the sense of finishing the stop, but safe: if the future is
    /// dropped, the process handle is dropped with it, which kills nats-server.
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
