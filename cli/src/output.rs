//! Output for people and for machines: one JSON object per line with `--json`, readable
//! lines otherwise; failures carry an exit code and a message that says what to do next.

use std::io::Write;
use std::process::ExitCode;

use base64::Engine;
use kinopio::{Message, Value};
use serde_json::{Map, Value as Json, json};

/// A failure of a command: what to print and which exit code to use.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub kind: &'static str,
    pub message: String,
    pub json: bool,
}

impl Failure {
    pub fn new(code: u8, kind: &'static str, message: impl Into<String>, json: bool) -> Failure {
        Failure { code, kind, message: message.into(), json }
    }

    /// Prints the failure (a JSON line on stdout with `--json`, else a message on stderr).
    pub fn report(self) -> ExitCode {
        if self.json {
            line(&json!({"error": {"kind": self.kind, "message": self.message}}));
        } else {
            eprintln!("kinopio: {}", self.message);
        }
        ExitCode::from(self.code)
    }
}

/// Prints one JSON line on stdout and flushes.
pub fn line(value: &Json) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// Prints one text line on stdout and flushes.
pub fn text(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{s}");
    let _ = out.flush();
}

/// A decoded value as JSON for `--json` output: bytes become `{"$bytes": "<base64>"}`,
/// non-finite floats `{"$float": "NaN"}` (JSON has no such numbers).
pub fn value_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(i),
        Value::UInt(u) => json!(u),
        Value::Float(f) if f.is_finite() => json!(f),
        Value::Float(f) => json!({"$float": kinopio::codec::python_float_repr(*f)}),
        Value::String(s) => json!(s),
        Value::Bytes(b) => json!({"$bytes": base64::engine::general_purpose::STANDARD.encode(b)}),
        Value::Array(a) => Json::Array(a.iter().map(value_json).collect()),
        Value::Object(o) => Json::Object(o.iter().map(|(k, v)| (k.clone(), value_json(v))).collect::<Map<_, _>>()),
    }
}

/// A received message as a JSON object: subject, value, and reply/headers when present.
pub fn message_json(m: &Message) -> Json {
    let mut obj = Map::new();
    obj.insert("subject".into(), json!(m.subject.as_str()));
    obj.insert("value".into(), value_json(&m.value()));
    if let Some(reply) = &m.reply {
        obj.insert("reply".into(), json!(reply.as_str()));
    }
    if let Some(headers) = &m.headers {
        let h: Map<String, Json> = headers
            .iter()
            .map(|(k, vs)| (k.to_string(), json!(vs.iter().map(|v| v.as_str()).collect::<Vec<_>>())))
            .collect();
        obj.insert("headers".into(), Json::Object(h));
    }
    Json::Object(obj)
}
