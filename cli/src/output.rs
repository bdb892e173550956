//! Output for people and for machines: one JSON object per line with `--json`, readable
//! lines otherwise; failures carry an exit code and a message that says what to do next.

use std::io::Write;
use std::process::ExitCode;

use base64::Engine;
use kinopio::{Message, Value};
use serde_json::value::RawValue;
use serde_json::{Map, Value as Json, json};

/// A failure of a command: what to print and which exit code to use.
#[derive(Debug)]
pub(crate) struct Failure {
    pub code: u8,
    pub kind: &'static str,
    pub message: String,
    pub json: bool,
}

impl Failure {
    pub(crate) fn new(code: u8, kind: &'static str, message: impl Into<String>, json: bool) -> Failure {
        Failure { code, kind, message: message.into(), json }
    }

    /// A protocol-4 error as a failure, with the exit code of its kind (see `kinopio --help`):
    /// 2 for invalid input, 3 not connected, 4 timed out, 5 no responders/receivers, 1 else.
    pub(crate) fn p4(error: &kinopio::p4::Error, json: bool) -> Failure {
        use kinopio::p4::ErrorCode as C;
        let code = match error.kind() {
            C::InvalidName
            | C::InvalidTopic
            | C::InvalidValue
            | C::ValueTooLarge
            | C::InvalidHeaders
            | C::MessageTooLarge
            | C::InvalidOptions => 2,
            C::Disconnected => 3,
            C::Timeout => 4,
            C::NoResponders | C::NoReceivers => 5,
            _ => 1,
        };
        Failure::new(code, error.kind().as_str(), error.to_string(), json)
    }

    /// Prints the failure (a JSON line on stdout with `--json`, else a message on stderr).
    pub(crate) fn report(self) -> ExitCode {
        if self.json {
            line(&json!({"error": {"kind": self.kind, "message": self.message}}));
        } else {
            eprintln!("kinopio: {}", self.message);
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

/// A JSON object built field by field, where a field can be raw JSON text that is printed
/// exactly as it is (serde_json's `Value` would turn big integers into floats).
#[derive(Debug, Default)]
pub(crate) struct Fields(Vec<(String, Box<RawValue>)>);

impl Fields {
    pub(crate) fn new() -> Fields {
        Fields::default()
    }

    /// Adds a field from any serializable value.
    pub(crate) fn put(&mut self, key: &str, value: impl serde::Serialize) {
        if let Ok(raw) = serde_json::value::to_raw_value(&value) {
            self.0.push((key.to_owned(), raw));
        }
    }

    /// Adds a field whose value is already JSON text (printed as it is).
    pub(crate) fn put_raw(&mut self, key: &str, raw: Box<RawValue>) {
        self.0.push((key.to_owned(), raw));
    }

    /// Prints the object as one line.
    pub(crate) fn print(&self) {
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut out, self);
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    }
}

impl serde::Serialize for Fields {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// A payload as `--json` fields, exact and unambiguous (no sentinel values that a real
/// value could collide with):
/// - `"type"`: `"null"` (empty payload), `"json"`, `"text"` or `"bytes"` — how kinopio and
///   kinopio-hub decode it;
/// - `"value"`: for `json`, the JSON exactly as sent (big integers and float digits kept);
///   for `text`, the string; for `null`, `null`. Absent when the JSON has numbers standard
///   JSON cannot carry (`NaN`, `Infinity`, `1e400`): then only `"payload"` has it;
/// - `"payload"`: the payload as text, when it is UTF-8 and not `null`;
/// - `"base64"`: the payload bytes, for `bytes`.
pub(crate) fn payload_fields(fields: &mut Fields, payload: &[u8]) {
    let kind = payload_type(payload);
    fields.put("type", kind);
    match (kind, std::str::from_utf8(payload)) {
        ("null", _) => fields.put("value", ()),
        ("bytes", _) | (_, Err(_)) => fields.put("base64", base64::engine::general_purpose::STANDARD.encode(payload)),
        ("text", Ok(text)) => {
            fields.put("value", text);
            fields.put("payload", text);
        }
        (_, Ok(text)) => {
            // Standard JSON is embedded as sent, so every digit survives.
            if serde_json::from_str::<serde_json::Value>(text).is_ok()
                && let Ok(raw) = RawValue::from_string(text.trim().to_owned())
            {
                fields.put_raw("value", raw);
            }
            fields.put("payload", text);
        }
    }
}

/// How kinopio and kinopio-hub decode `payload`: `null`, `json`, `text` or `bytes`.
pub(crate) fn payload_type(payload: &[u8]) -> &'static str {
    match kinopio::decode_value(payload) {
        Value::Null if payload.is_empty() => "null",
        Value::String(_) if serde_json::from_slice::<String>(payload).is_err() => "text",
        Value::Bytes(_) => "bytes",
        _ => "json",
    }
}

/// A received message as a JSON object: subject, payload fields ([`payload_fields`]), and
/// the reply subject and headers when present. `subject` is given by the caller (a reply's own subject is an inbox).
pub(crate) fn message_fields(subject: &str, m: &Message) -> Fields {
    let mut fields = Fields::new();
    fields.put("subject", subject);
    payload_fields(&mut fields, &m.payload);
    if let Some(reply) = &m.reply {
        fields.put("reply", reply.as_str());
    }
    if let Some(headers) = &m.headers {
        let h: Map<String, Json> = headers
            .iter()
            .map(|(k, vs)| (k.to_string(), json!(vs.iter().map(|v| v.as_str()).collect::<Vec<_>>())))
            .collect();
        fields.put("headers", Json::Object(h));
    }
    fields
}

/// A payload as one line of text: UTF-8 payloads as they are (JSON exactly as sent), bytes
/// as `<N bytes, base64 …>`.
pub(crate) fn payload_text(payload: &[u8]) -> String {
    match std::str::from_utf8(payload) {
        Ok("") => "null".to_owned(),
        Ok(text) => text.to_owned(),
        Err(_) => {
            format!("<{} bytes, base64 {}>", payload.len(), base64::engine::general_purpose::STANDARD.encode(payload))
        }
    }
}

/// Writes a payload's bytes exactly, then a newline (`--raw`).
pub(crate) fn raw(payload: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(payload);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Runs `work` until it ends or a signal arrives; a signal is the failure "interrupted
/// `while`" with exit code 130 (the convention of every command).
pub(crate) async fn interruptible<T>(
    work: impl std::future::Future<Output = Result<T, Failure>>,
    while_: &str,
    json: bool,
) -> Result<T, Failure> {
    tokio::select! {
        r = work => r,
        () = crate::signals::shutdown() => Err(Failure::new(130, "interrupted", format!("interrupted {while_}"), json)),
    }
}
