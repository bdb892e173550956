//! [`BenchError`]: what can stop a benchmark or one of its scenarios, with what to do next.

use std::path::PathBuf;

/// A benchmark (or one scenario of it) could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// No nats-server binary was found or could be fetched.
    #[error("no nats-server to benchmark against: {0}; pass --binary-path, set KINOPIO_NATS_SERVER or --server")]
    Binary(String),
    /// The nats-server started for the benchmark did not come up.
    #[error("could not start nats-server: {0}")]
    Server(String),
    /// A file or process operation failed.
    #[error("could not {what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which file or program.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A client could not connect.
    #[error("{client} could not connect to {url}: {detail}; check that the server is running and reachable")]
    Connect {
        /// Which client.
        client: &'static str,
        /// Where to.
        url: String,
        /// Why not.
        detail: String,
    },
    /// A client operation failed during a measurement.
    #[error("{client} {operation} failed: {detail}")]
    Client {
        /// Which client.
        client: &'static str,
        /// What it was doing.
        operation: &'static str,
        /// The error.
        detail: String,
    },
    /// A measurement did not complete in time.
    #[error("{0}")]
    Timeout(String),
    /// The Python side of the benchmark failed.
    #[error("the Python bench failed: {0}")]
    Python(String),
    /// The child process measuring memory failed.
    #[error("the memory-measuring child process failed: {0}")]
    Child(String),
}

impl BenchError {
    /// A failed client operation.
    pub fn client(client: &'static str, operation: &'static str, detail: impl std::fmt::Display) -> BenchError {
        BenchError::Client { client, operation, detail: detail.to_string() }
    }
}
