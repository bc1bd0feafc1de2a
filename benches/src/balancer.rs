//! A small round-robin TCP load balancer on 127.0.0.1 for `pnpr-bench
//! scale`: each accepted connection goes to the next backend in turn and
//! its bytes are relayed both ways unchanged until either side closes.
//!
//! Why per connection (layer 4) rather than per request: the balancer then
//! never parses HTTP, so it cannot mis-frame a request or a chunked body
//! (nothing to get wrong, no request smuggling), and it costs one copy per
//! direction. Load generators and package managers hold keep-alive
//! connections, so with a few dozen connections the split is even (32
//! connections over 2 nodes: 16 each), as with an L4 proxy in front of a
//! real cluster. Invariants guarded: connections are assigned strictly in
//! turn (the counter only moves on accept); a backend that refuses the
//! connection is skipped for that connection (the next one is tried, each
//! backend once), so a dead node costs a retry, never a dropped client;
//! it listens on loopback only.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

#[cfg(test)]
mod tests;

/// A running balancer; it stops accepting when dropped.
pub struct Balancer {
    pub addr: SocketAddr,
    /// Connections relayed to each backend, in backend order.
    relayed: Arc<Vec<AtomicU64>>,
    task: tokio::task::JoinHandle<()>,
}

impl Balancer {
    /// Listens on a free 127.0.0.1 port and spreads connections over
    /// `backends` in turn. Must be called inside a tokio runtime.
    pub async fn start(backends: Vec<SocketAddr>) -> std::io::Result<Balancer> {
        if backends.is_empty() {
            return Err(std::io::Error::other("no backend"));
        }
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let relayed: Arc<Vec<AtomicU64>> =
            Arc::new(backends.iter().map(|_| AtomicU64::new(0)).collect());
        let task = tokio::spawn(accept_loop(listener, backends, Arc::clone(&relayed)));
        Ok(Balancer {
            addr,
            relayed,
            task,
        })
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Connections handed to each backend so far, in backend order.
    pub fn relayed(&self) -> Vec<u64> {
        self.relayed
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    backends: Vec<SocketAddr>,
    relayed: Arc<Vec<AtomicU64>>,
) {
    let backends: Arc<[SocketAddr]> = backends.into();
    let mut turn = 0usize;
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of descriptors and the like: back off instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let first = turn % backends.len();
        turn = turn.wrapping_add(1);
        let (backends, relayed) = (Arc::clone(&backends), Arc::clone(&relayed));
        tokio::spawn(async move {
            if let Some((i, upstream)) = connect_from(&backends, first).await {
                relayed[i].fetch_add(1, Ordering::Relaxed);
                relay(client, upstream).await;
            }
        });
    }
}

/// Connects to the backends starting at `first`, each at most once; the
/// index and stream of the first that accepts.
async fn connect_from(backends: &[SocketAddr], first: usize) -> Option<(usize, TcpStream)> {
    for k in 0..backends.len() {
        let i = (first + k) % backends.len();
        if let Ok(stream) = TcpStream::connect(backends[i]).await {
            return Some((i, stream));
        }
    }
    None
}

/// Copies both ways until both directions are closed (a half-close is
/// passed on, so a client that shuts its write side still gets the answer).
async fn relay(mut client: TcpStream, mut upstream: TcpStream) {
    // Small request and response heads must not wait for Nagle.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}
