//! A TCP forwarder on a free loopback port to another address: a second URL for the same
//! nats-server, so a hub can hot-switch between two "servers" that share one subject
//! space. Stops (closing every forwarded connection) when dropped.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::error::BenchError;

/// A running forwarder.
#[derive(Debug)]
pub(crate) struct Forwarder {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    /// Listens on `127.0.0.1:<free port>` and forwards each connection to `target`.
    pub(crate) async fn start(target: SocketAddr) -> Result<Forwarder, BenchError> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(|source| BenchError::Io {
            what: "listen for the forwarder on",
            path: "127.0.0.1:0".into(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| BenchError::Io { what: "read the address of", path: "the forwarder".into(), source })?
            .port();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut inbound, _)) = accepted else { continue };
                        connections.spawn(async move {
                            let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                            let _ = inbound.set_nodelay(true);
                            let _ = outbound.set_nodelay(true);
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        });
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Ok(Forwarder { port, task })
    }

    /// `nats://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection.
        self.task.abort();
    }
}
