//! Reads nats-server's log: the tail shown in errors and the ports it could not bind.

use std::path::PathBuf;

/// Lines of log shown in errors.
pub const LOG_TAIL_LINES: usize = 40;

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

#[cfg(test)]
mod tests {
    use super::*;

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
