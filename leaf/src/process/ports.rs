//! Reads the ports file nats-server writes after binding its `-1` (random) ports.
//!
//! Ports are never chosen by bind-then-close: nats-server binds the ports itself and reports
//! them in `nats-server_<pid>.ports` (see [`read_ports_file`]).

use std::path::{Path, PathBuf};

use serde_json::Value;

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

crate::error::error_with_kind! {
    /// Why a ports file could not be read.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum PortsFileError => PortsFileErrorKind {
        /// The text is not JSON (nats-server may still be writing it).
        #[error("the ports file is not JSON: {0}")]
        NotJson(String),
        /// A listener's URL is missing.
        #[error("the ports file has no {0:?} URL")]
        MissingUrl(&'static str),
        /// A listener's URL has no port.
        #[error("the ports file has no port in {0:?}")]
        NoPort(String),
    }
}

/// Parses a ports file (`{"nats":["nats://127.0.0.1:4222"],"monitoring":[...],
/// "websocket":[...]}`). Pure.
///
/// # Errors
///
/// [`PortsFileError`] when the text is not JSON or lacks a listener's URL or port.
pub fn parse_ports_file(text: &str) -> Result<BoundPorts, PortsFileError> {
    let value: Value = serde_json::from_str(text).map_err(|err| PortsFileError::NotJson(err.to_string()))?;
    let port = |key: &'static str| -> Result<u16, PortsFileError> {
        let url = value
            .get(key)
            .and_then(Value::as_array)
            .and_then(|urls| urls.first())
            .and_then(Value::as_str)
            .ok_or(PortsFileError::MissingUrl(key))?;
        url.trim_end_matches('/')
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .ok_or_else(|| PortsFileError::NoPort(url.to_owned()))
    };
    Ok(BoundPorts { client: port("nats")?, monitor: port("monitoring")?, websocket: port("websocket")? })
}

/// Reads the ports file of `pid` in `dir`, if it is there and complete.
pub fn read_ports_file(dir: &Path, pid: u32) -> Option<BoundPorts> {
    let text = std::fs::read_to_string(ports_file_path(dir, pid)).ok()?;
    parse_ports_file(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_ports_file() {
        let text = r#"{"nats":["nats://127.0.0.1:38507"],"monitoring":["http://127.0.0.1:40217"],"websocket":["wss://[::1]:36843"]}"#;
        assert_eq!(parse_ports_file(text), Ok(BoundPorts { client: 38507, monitor: 40217, websocket: 36843 }));
        assert_eq!(
            parse_ports_file(r#"{"nats":["nats://127.0.0.1:1"]}"#),
            Err(PortsFileError::MissingUrl("monitoring"))
        );
        assert!(parse_ports_file("{").is_err());
    }
}
