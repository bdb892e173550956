//! The benchmark's output: the report as text or one JSON document on stdout, child
//! processes' JSON lines, and failures with an exit code.

use std::io::Write;
use std::process::ExitCode;

use serde_json::{Value as Json, json};

/// A failure of the benchmark: what to print and which exit code to use.
#[derive(Debug)]
pub(crate) struct Failure {
    code: u8,
    kind: &'static str,
    message: String,
    json: bool,
}

impl Failure {
    pub(crate) fn new(code: u8, kind: &'static str, message: impl Into<String>, json: bool) -> Failure {
        Failure { code, kind, message: message.into(), json }
    }

    /// Prints the failure (a JSON line on stdout with `--json`, else a message on stderr).
    pub(crate) fn report(self) -> ExitCode {
        if self.json {
            line(&json!({"error": {"kind": self.kind, "message": self.message}}));
        } else {
            eprintln!("kinopio-bench: {}", self.message);
        }
        ExitCode::from(self.code)
    }
}

/// Prints one JSON line on stdout and flushes.
pub(crate) fn line(value: &Json) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// Prints one text line on stdout and flushes.
pub(crate) fn text(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{s}");
    let _ = out.flush();
}
