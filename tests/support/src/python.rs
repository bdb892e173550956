//! The Python reference peer, kinopio-hub 0.1.1, in the virtualenv that
//! `scripts/install-deps.sh` creates.

use std::path::PathBuf;

/// Environment variable naming the Python interpreter that has kinopio-hub 0.1.1.
pub const PYTHON_ENV: &str = "KINOPIO_PYTHON";

/// Where the interpreter should be: `KINOPIO_PYTHON`, else the repository's
/// `.venv/bin/python` (it may not exist; see [`python`]).
pub fn python_path() -> PathBuf {
    std::env::var_os(PYTHON_ENV)
        .filter(|p| !p.is_empty())
        .map_or_else(|| crate::repo_root().join(".venv/bin/python"), PathBuf::from)
}

/// The interpreter; panics with what to do when it is missing (the tests that use it need it).
pub fn python() -> PathBuf {
    let path = python_path();
    assert!(
        path.exists(),
        "the Python reference peer is missing at {}: run scripts/install-deps.sh (or set {PYTHON_ENV})",
        path.display()
    );
    path
}

/// kinopio-hub 0.1.1's command-line program beside the interpreter; panics with what to do
/// when it is missing.
pub fn kinopio_hub() -> PathBuf {
    let python = python();
    let path = python.parent().map_or_else(|| PathBuf::from("kinopio-hub"), |dir| dir.join("kinopio-hub"));
    assert!(path.exists(), "kinopio-hub 0.1.1 is missing at {}: run scripts/install-deps.sh", path.display());
    path
}

/// Environment variable naming the Python interpreter that has kinopio-hub 3.0.0 (protocol 4).
pub const PYTHON_HUB3_ENV: &str = "KINOPIO_PYTHON_HUB3";

/// The interpreter with kinopio-hub 3.0.0: `KINOPIO_PYTHON_HUB3`, else the repository's
/// `.venv-hub3/bin/python`; panics with what to do when it is missing.
pub fn python_hub3() -> PathBuf {
    let path = std::env::var_os(PYTHON_HUB3_ENV)
        .filter(|p| !p.is_empty())
        .map_or_else(|| crate::repo_root().join(".venv-hub3/bin/python"), PathBuf::from);
    assert!(
        path.exists(),
        "kinopio-hub 3.0.0 is missing at {}: run scripts/install-deps.sh (or set {PYTHON_HUB3_ENV})",
        path.display()
    );
    path
}

/// A Python kinopio-hub 3.0.0 peer (`scripts/interop/p4_peer.py`) driven over JSON lines,
/// blocking (for tests that run the CLI binary; async tests drive the script themselves).
/// The process is killed on drop.
#[derive(Debug)]
pub struct P4Peer {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
    /// The peer's writer id.
    pub writer: String,
}

impl P4Peer {
    /// Starts a peer in `namespace` on the server at `url` and waits until it is connected.
    pub fn start(url: &str, namespace: &str) -> P4Peer {
        use std::io::BufRead;
        let mut child = std::process::Command::new(python_hub3())
            .arg(crate::repo_root().join("scripts/interop/p4_peer.py"))
            .args([url, namespace])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the Python protocol-4 peer");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut peer = P4Peer { child, stdin, lines, writer: String::new() };
        let ready = peer.answer("start");
        peer.writer = ready["writer"].as_str().unwrap_or_default().to_owned();
        peer
    }

    fn answer(&mut self, what: &str) -> serde_json::Value {
        let line = self
            .lines
            .recv_timeout(std::time::Duration::from_secs(90))
            .unwrap_or_else(|_| panic!("the Python peer answers {what} in time"));
        let answer: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        assert_eq!(answer["ok"], true, "{what} → {answer}");
        answer
    }

    /// Sends one command and returns its answer (which must be `ok`).
    pub fn cmd(&mut self, cmd: serde_json::Value) -> serde_json::Value {
        use std::io::Write;
        writeln!(self.stdin, "{cmd}").expect("write to the Python peer");
        self.answer(&cmd.to_string())
    }
}

impl Drop for P4Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
