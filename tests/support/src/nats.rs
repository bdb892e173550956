//! Real `nats-server` processes on free ports, killed on drop, and a TCP delay proxy that
//! gives one server several round-trip times.
//!
//! The binary comes from `KINOPIO_NATS_SERVER`, else the repository's `.venv/bin/nats-server`
//! (installed by `scripts/install-deps.sh`), else `nats-server` on `PATH`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where the nats-server binary for tests is.
pub fn nats_server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("KINOPIO_NATS_SERVER").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let venv = crate::repo_root().join(".venv/bin/nats-server");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("nats-server")
}

/// A running nats-server, killed (and its directory removed) on drop.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    config: Option<PathBuf>,
    extra_args: Vec<String>,
}

impl NatsServer {
    /// Starts a plain server on a free port.
    pub fn start() -> NatsServer {
        NatsServer::start_with(&[], None)
    }

    /// Starts a server with extra command-line arguments.
    pub fn start_with_args(args: &[&str]) -> NatsServer {
        NatsServer::start_with(args, None)
    }

    /// Starts a server with a config file body; `{port}` in it is not needed (the port is
    /// given on the command line and wins), `{dir}` is replaced by the server's directory.
    pub fn start_with_config(config: &str) -> NatsServer {
        NatsServer::start_with(&[], Some(config))
    }

    fn start_with(args: &[&str], config: Option<&str>) -> NatsServer {
        let dir = tempfile::Builder::new().prefix("kinopio-nats-").tempdir().expect("temp dir");
        let config = config.map(|body| {
            let path = dir.path().join("server.conf");
            let body = body.replace("{dir}", &dir.path().display().to_string());
            std::fs::write(&path, body).expect("write config");
            path
        });
        let mut server = NatsServer {
            child: None,
            port: 0,
            dir,
            config,
            extra_args: args.iter().map(|s| (*s).to_owned()).collect(),
        };
        server.spawn(None);
        server
    }

    fn spawn(&mut self, port: Option<u16>) {
        let ports_dir = self.dir.path().join("ports");
        let _ = std::fs::remove_dir_all(&ports_dir);
        std::fs::create_dir_all(&ports_dir).unwrap();
        let mut cmd = Command::new(nats_server_binary());
        cmd.arg("-a").arg("127.0.0.1");
        cmd.arg("-p").arg(port.map_or_else(|| "-1".to_owned(), |p| p.to_string()));
        cmd.arg("--ports_file_dir").arg(&ports_dir);
        if let Some(config) = &self.config {
            cmd.arg("-c").arg(config);
        }
        cmd.args(&self.extra_args);
        cmd.stdout(Stdio::null()).stderr(Stdio::from(
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("server.log")).unwrap(),
        ));
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}); run scripts/install-deps.sh or set KINOPIO_NATS_SERVER",
                nats_server_binary().display()
            )
        });
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let ports_file = ports_dir.join(format!("nats-server_{pid}.ports"));
        loop {
            if let Ok(text) = std::fs::read_to_string(&ports_file)
                && let Some(p) = parse_client_port(&text)
            {
                self.port = p;
                break;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("nats-server exited with {status}: {}", self.log());
            }
            assert!(Instant::now() < deadline, "nats-server did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
        wait_accepting(self.port, Duration::from_secs(10));
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `nats://127.0.0.1:<port>` of the leafnode listener, for a server started with a
    /// `leafnodes { listen: "127.0.0.1:-1" }` config (read from its log: nats-server does not
    /// put leafnode ports into its ports file).
    pub fn leafnode_url(&self) -> String {
        let marker = "Listening for leafnode connections on ";
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if let Some(line) = log.lines().rev().find(|line| line.contains(marker)) {
                let addr = line.split(marker).nth(1).unwrap().trim();
                let port = addr.rsplit(':').next().unwrap();
                return format!("nats://127.0.0.1:{port}");
            }
            assert!(Instant::now() < deadline, "no leafnode listener in the log:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Its working directory (config, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let port = self.port;
        let deadline = Instant::now() + Duration::from_secs(10);
        // The port may linger briefly; retry until the new process binds it.
        loop {
            self.spawn_on(port);
            if self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none()) {
                return;
            }
            assert!(Instant::now() < deadline, "cannot restart on port {port}: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn spawn_on(&mut self, port: u16) {
        self.spawn(Some(port));
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn parse_client_port(text: &str) -> Option<u16> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let url = v.get("nats")?.as_array()?.first()?.as_str()?;
    url.rsplit(':').next()?.parse().ok()
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_accepting(port: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing accepts connections on port {port}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; fine for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A TCP proxy on 127.0.0.1 that forwards to a target and adds a one-way delay in each
/// direction (so the round trip grows by twice the delay). The delay can be changed at run
/// time; bytes are delayed in order, never reordered.
#[derive(Debug)]
pub struct DelayProxy {
    port: u16,
    delay_us: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl DelayProxy {
    /// Starts a proxy to `target` adding `one_way` delay per direction.
    pub fn start(target: SocketAddr, one_way: Duration) -> DelayProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let delay_us = Arc::new(AtomicU64::new(one_way.as_micros() as u64));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (d, s) = (Arc::clone(&delay_us), Arc::clone(&stop));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(target) else { continue };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap(), Arc::clone(&d), Arc::clone(&s));
                pipe(server, client, Arc::clone(&d), Arc::clone(&s));
            }
        });
        DelayProxy { port, delay_us, stop }
    }

    /// `nats://127.0.0.1:<port>` of the proxy.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Changes the one-way delay for bytes read from now on.
    pub fn set_delay(&self, one_way: Duration) {
        self.delay_us.store(one_way.as_micros() as u64, Ordering::Relaxed);
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies `from` → `to`, releasing each chunk `delay` after it was read.
fn pipe(mut from: TcpStream, to: TcpStream, delay_us: Arc<AtomicU64>, stop: Arc<std::sync::atomic::AtomicBool>) {
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let due = Instant::now() + Duration::from_micros(delay_us.load(Ordering::Relaxed));
                    if tx.send((due, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
        let _ = from.shutdown(std::net::Shutdown::Both);
    });
    std::thread::spawn(move || {
        let mut to = to;
        while let Ok((due, chunk)) = rx.recv() {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}
