//! The Python kinopio-hub 3.0.0 side of the protocol-4 scenarios: processes running
//! `scripts/bench/p4_bench.py`, each holding one or more hubs, driven by JSON lines (one
//! command, one answer). Where the interpreter is (`--python-hub3`, else
//! `KINOPIO_PYTHON_HUB3`, else the repository's `.venv-hub3/bin/python`) and whether it is
//! there (else the scenarios are reported as skipped).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::error::BenchError;
use super::report::{ScenarioReport, ScenarioStatus};

/// The environment variable naming the interpreter with kinopio-hub 3.0.0.
pub(crate) const ENV: &str = "KINOPIO_PYTHON_HUB3";

/// The interpreter and script of the protocol-4 Python side.
#[derive(Debug, Clone)]
pub(crate) struct Python3 {
    /// The interpreter.
    pub python: PathBuf,
    /// `scripts/bench/p4_bench.py`.
    pub script: PathBuf,
}

impl Python3 {
    /// `--python-hub3`, else `KINOPIO_PYTHON_HUB3`, else the repository's `.venv-hub3`.
    pub(crate) fn locate(explicit: Option<&Path>) -> Python3 {
        let python = explicit.map(Path::to_owned).unwrap_or_else(|| {
            std::env::var_os(ENV)
                .filter(|p| !p.is_empty())
                .map_or_else(|| kinopio_test_support::repo_root().join(".venv-hub3/bin/python"), PathBuf::from)
        });
        Python3 { python, script: kinopio_test_support::repo_root().join("scripts/bench/p4_bench.py") }
    }

    /// Why the Python side cannot run, if it cannot (for a "skipped" status).
    pub(crate) fn missing(&self) -> Option<String> {
        if !self.python.exists() {
            return Some(format!(
                "no Python kinopio-hub 3.0.0 interpreter at {}; run scripts/install-deps.sh, set {ENV} or pass \
                 --python-hub3",
                self.python.display()
            ));
        }
        if !self.script.exists() {
            return Some(format!("no {}", self.script.display()));
        }
        None
    }

    /// The report of scenario `id` when the Python side is missing: skipped, not passed.
    pub(crate) fn skipped(&self, id: &'static str, title: &'static str) -> Option<ScenarioReport> {
        self.missing().map(|reason| ScenarioReport::not_run(id, title, ScenarioStatus::Skipped { reason }))
    }

    /// Starts one Python process against `url`.
    pub(crate) async fn spawn(&self, url: &str) -> Result<PyProcess, BenchError> {
        let mut child = Command::new(&self.python)
            .arg(&self.script)
            .args(["--server", url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| BenchError::Io { what: "run", path: self.python.clone(), source })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(BenchError::Python("its stdin/stdout are not pipes".to_owned()));
        };
        let mut process = PyProcess { child, stdin, lines: BufReader::new(stdout).lines() };
        process.answer("start", Duration::from_secs(30)).await?;
        Ok(process)
    }
}

/// One running `p4_bench.py` process.
#[derive(Debug)]
pub(crate) struct PyProcess {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl PyProcess {
    /// Sends `cmd` and returns its answer; an error answer, a dead process or no answer within
    /// `limit` is an error.
    pub(crate) async fn cmd(&mut self, cmd: Value, limit: Duration) -> Result<Value, BenchError> {
        let op = cmd.get("op").and_then(Value::as_str).unwrap_or("?").to_owned();
        self.stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .map_err(|e| BenchError::Python(format!("cannot send {op}: {e}")))?;
        self.answer(&op, limit).await
    }

    async fn answer(&mut self, op: &str, limit: Duration) -> Result<Value, BenchError> {
        let line = tokio::time::timeout(limit, self.lines.next_line())
            .await
            .map_err(|_| BenchError::Python(format!("no answer to {op} within {limit:?}")))?
            .map_err(|e| BenchError::Python(format!("reading the answer to {op}: {e}")))?;
        let Some(line) = line else {
            let status = self.child.try_wait().ok().flatten();
            return Err(BenchError::Python(format!(
                "the process exited before answering {op} ({})",
                status.map_or("still running".to_owned(), |s| s.to_string())
            )));
        };
        let answer: Value = serde_json::from_str(&line)
            .map_err(|e| BenchError::Python(format!("answer to {op} is not JSON ({e}): {line}")))?;
        if answer.get("ok") != Some(&Value::Bool(true)) {
            let error = answer.get("error").and_then(Value::as_str).unwrap_or("no error text");
            return Err(BenchError::Python(format!("{op}: {error}")));
        }
        Ok(answer)
    }

    /// Opens hub `hub` on `namespace` with kinopio-hub `options`.
    pub(crate) async fn open(&mut self, hub: &str, namespace: &str, options: Value) -> Result<(), BenchError> {
        self.cmd(json!({"op": "open", "hub": hub, "namespace": namespace, "options": options}), Duration::from_secs(30))
            .await
            .map(drop)
    }

    /// Sets `prefix0…` on hub `hub`, then flushes; returns the milliseconds it took.
    pub(crate) async fn fill(&mut self, hub: &str, prefix: &str, count: usize) -> Result<f64, BenchError> {
        let answer = self
            .cmd(json!({"op": "fill", "hub": hub, "prefix": prefix, "count": count}), Duration::from_secs(300))
            .await?;
        Ok(answer.get("elapsed_ms").and_then(Value::as_f64).unwrap_or(f64::NAN))
    }

    /// Live records hub `hub` holds.
    pub(crate) async fn count(&mut self, hub: &str) -> Result<u64, BenchError> {
        let answer = self.cmd(json!({"op": "count", "hub": hub}), Duration::from_secs(30)).await?;
        answer.get("count").and_then(Value::as_u64).ok_or_else(|| BenchError::Python("count: no count".to_owned()))
    }

    /// The process's resident set size in kB.
    pub(crate) async fn rss_kb(&mut self) -> Result<u64, BenchError> {
        let answer = self.cmd(json!({"op": "rss"}), Duration::from_secs(10)).await?;
        answer.get("rss_kb").and_then(Value::as_u64).ok_or_else(|| BenchError::Python("rss: no rss_kb".to_owned()))
    }

    /// Closes its hubs and waits (bounded) for the process to end; kills it otherwise.
    pub(crate) async fn exit(mut self) {
        let _ = self.stdin.write_all(b"{\"op\":\"exit\"}\n").await;
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

/// `a` as a field of an answer.
pub(crate) fn f64_of(answer: &Value, field: &str) -> Result<f64, BenchError> {
    answer.get(field).and_then(Value::as_f64).ok_or_else(|| BenchError::Python(format!("its answer has no {field}")))
}

/// `hex(s)` as protocol-4 subjects spell names (§2).
pub(crate) fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercase_hex_of_their_bytes() {
        assert_eq!(hex("workshop"), "776f726b73686f70");
    }
}
