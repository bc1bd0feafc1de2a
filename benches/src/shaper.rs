//! `Shaper`: a latency + bandwidth shaping TCP proxy on 127.0.0.1, put
//! between the benchmarked client and each server it talks to.
//!
//! Model (per direction): a chunk read at time `t` leaves the "wire" at
//! `depart = max(t, previous depart) + len / rate` (the link serialises
//! bytes at `rate`) and is written out at `depart + latency` (propagation
//! delay). By default the link is shared: "previous depart" is that of the
//! last chunk of *any* connection through this shaper in that direction, so
//! parallel connections split `rate` like they would on one real access link.
//! With `per_connection` each connection has a private link of `rate`.
//! A new connection first pays one round trip (the TCP handshake) before any
//! byte is forwarded. Slow start and loss are not modelled: the figures
//! favour many parallel connections slightly less than a real WAN would
//! penalise one long stream.
//!
//! Invariant guarded: no byte reaches the other side earlier than its
//! modelled arrival time, and in-flight data per direction is bounded (a
//! bounded channel plays the role of the TCP window), so the shaping cannot
//! be bypassed by a fast reader.
//!
//! Counters (bytes each way, connections, `POST /v1/install` seen) let the
//! harness prove a scenario actually went through its target.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

#[cfg(test)]
mod tests;

/// Read size per chunk; small enough that serialisation delay of one chunk
/// (64 KiB at 200 Mbit/s = 2.6 ms) stays below the latency being modelled.
const CHUNK: usize = 64 * 1024;
/// Chunks in flight per direction (1024 x 64 KiB = 64 MiB): larger than any
/// bandwidth-delay product benchmarked, so only rate and latency limit.
const IN_FLIGHT: usize = 1024;

/// Link parameters.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// One-way delay.
    pub latency: Duration,
    /// Bits per second per direction; 0 = unlimited.
    pub rate_bps: u64,
    /// `rate_bps` applies to each connection separately instead of to the
    /// aggregate of all connections through one shaper.
    pub per_connection: bool,
}

impl Shape {
    /// Time the link needs to serialise `len` bytes.
    pub fn serialisation(&self, len: usize) -> Duration {
        if self.rate_bps == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos((len as u64).saturating_mul(8_000_000_000) / self.rate_bps)
    }
}

/// Departure time of the last chunk queued on one direction of a link:
/// shared by every connection of a shaper (shared link) or private to one
/// connection (`per_connection`).
type Link = Arc<Mutex<Instant>>;

fn new_link() -> Link {
    Arc::new(Mutex::new(Instant::now()))
}

/// Reserves the wire for `len` bytes read now; returns when they leave it.
fn reserve(link: &Link, shape: &Shape, len: usize) -> Instant {
    // A poisoned lock only means another relay panicked mid-update; the
    // stored instant is still a valid departure time.
    let mut last = link.lock().unwrap_or_else(|p| p.into_inner());
    let depart = (*last).max(Instant::now()) + shape.serialisation(len);
    *last = depart;
    depart
}

/// What went through one shaper.
#[derive(Debug, Default)]
pub struct Counters {
    pub connections: AtomicU64,
    pub to_server: AtomicU64,
    pub to_client: AtomicU64,
    pub saw_v1_install: AtomicBool,
    pub saw_v0_resolve: AtomicBool,
}

/// Snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Traffic {
    pub connections: u64,
    pub to_server: u64,
    pub to_client: u64,
    pub saw_v1_install: bool,
    /// A `POST /-/pnpr/v0/…` (resolve or verify-lockfile) went through.
    pub saw_v0_resolve: bool,
}

/// A running shaping proxy; stops accepting when dropped.
#[derive(Debug)]
pub struct Shaper {
    /// `http://127.0.0.1:PORT/`.
    pub url: String,
    pub addr: SocketAddr,
    counters: Arc<Counters>,
    target_port: Arc<AtomicU16>,
    /// Connections accepted while set are relayed unshaped (the
    /// "instant server" sample of the floor).
    bypass: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Shaper {
    /// Listens on 127.0.0.1 (any port) and forwards every connection to
    /// `target`, shaped by `shape`. Must be called inside a tokio runtime.
    pub async fn start(target: SocketAddr, shape: Shape) -> std::io::Result<Shaper> {
        let shaper = Self::start_pending(shape).await?;
        shaper.set_target_port(target.port());
        Ok(shaper)
    }

    /// Listens before the target is known (a server that must be told its
    /// public URL, the shaper's, before it starts); connections made before
    /// [`Shaper::set_target_port`] fail. The target is always 127.0.0.1.
    pub async fn start_pending(shape: Shape) -> std::io::Result<Shaper> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let target_port = Arc::new(AtomicU16::new(0));
        let bypass = Arc::new(AtomicBool::new(false));
        let c = Arc::clone(&counters);
        let port = Arc::clone(&target_port);
        let unshaped = Arc::clone(&bypass);
        let shared = (new_link(), new_link());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                c.connections.fetch_add(1, Ordering::Relaxed);
                let c = Arc::clone(&c);
                let target = SocketAddr::from(([127, 0, 0, 1], port.load(Ordering::Relaxed)));
                let shape = if unshaped.load(Ordering::Relaxed) {
                    Shape {
                        latency: Duration::ZERO,
                        rate_bps: 0,
                        per_connection: true,
                    }
                } else {
                    shape
                };
                let links = if shape.per_connection {
                    (new_link(), new_link())
                } else {
                    (Arc::clone(&shared.0), Arc::clone(&shared.1))
                };
                tokio::spawn(async move {
                    let _ = relay(client, target, shape, links, c).await;
                });
            }
        });
        Ok(Shaper {
            url: format!("http://{addr}/"),
            addr,
            counters,
            target_port,
            bypass,
            task,
        })
    }

    /// Points the shaper at 127.0.0.1:`port`.
    pub fn set_target_port(&self, port: u16) {
        self.target_port.store(port, Ordering::Relaxed);
    }

    /// Relays connections accepted from now on unshaped (`true`) or shaped
    /// again (`false`); connections already open keep their shape.
    pub fn set_bypass(&self, on: bool) {
        self.bypass.store(on, Ordering::Relaxed);
    }

    /// Current counters.
    pub fn traffic(&self) -> Traffic {
        Traffic {
            connections: self.counters.connections.load(Ordering::Relaxed),
            to_server: self.counters.to_server.load(Ordering::Relaxed),
            to_client: self.counters.to_client.load(Ordering::Relaxed),
            saw_v1_install: self.counters.saw_v1_install.load(Ordering::Relaxed),
            saw_v0_resolve: self.counters.saw_v0_resolve.load(Ordering::Relaxed),
        }
    }

    /// Zeroes the counters (between scenario runs).
    pub fn reset(&self) {
        self.counters.connections.store(0, Ordering::Relaxed);
        self.counters.to_server.store(0, Ordering::Relaxed);
        self.counters.to_client.store(0, Ordering::Relaxed);
        self.counters.saw_v1_install.store(false, Ordering::Relaxed);
        self.counters.saw_v0_resolve.store(false, Ordering::Relaxed);
    }
}

impl Drop for Shaper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    client: TcpStream,
    target: SocketAddr,
    shape: Shape,
    (up_link, down_link): (Link, Link),
    counters: Arc<Counters>,
) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    // The server is reached unshaped; the handshake round trip is charged
    // before the first byte moves.
    let server = TcpStream::connect(target).await?;
    server.set_nodelay(true)?;
    tokio::time::sleep(shape.latency * 2).await;
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pipe(cr, sw, shape, up_link, Arc::clone(&counters), true);
    let down = pipe(sr, cw, shape, down_link, counters, false);
    let _ = tokio::join!(up, down);
    Ok(())
}

/// One shaped direction: a reader stamping arrival times and a writer
/// releasing chunks at those times.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    shape: Shape,
    link: Link,
    counters: Arc<Counters>,
    upstream: bool,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let reader = async move {
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.truncate(n);
            if upstream {
                counters.to_server.fetch_add(n as u64, Ordering::Relaxed);
                if buf.starts_with(b"POST /v1/install") {
                    counters.saw_v1_install.store(true, Ordering::Relaxed);
                }
                if buf.starts_with(b"POST /-/pnpr/v0/") {
                    counters.saw_v0_resolve.store(true, Ordering::Relaxed);
                }
            } else {
                counters.to_client.fetch_add(n as u64, Ordering::Relaxed);
            }
            let depart = reserve(&link, &shape, n);
            if tx.send((depart + shape.latency, buf)).await.is_err() {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((at, buf)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&buf).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

/// Connections of the parallel probe of [`self_check`].
pub const PARALLEL: usize = 4;

/// Result of [`self_check`].
#[derive(Debug, Clone, Copy)]
pub struct CheckResult {
    /// Median request/response round trip over an open connection.
    pub rtt: Duration,
    /// Payload size used for the throughput probes.
    pub payload: usize,
    /// Time from request to last byte of the payload, one connection.
    pub transfer: Duration,
    /// Measured goodput of one connection, bits per second.
    pub measured_bps: f64,
    /// Time for [`PARALLEL`] connections to each fetch `payload / PARALLEL`
    /// bytes at once.
    pub parallel_transfer: Duration,
    /// Measured aggregate goodput of the parallel probe, bits per second:
    /// about `rate` on a shared link, about `PARALLEL x rate` per connection.
    pub aggregate_bps: f64,
}

/// Measures a shaper in front of a local sink that answers every 1-byte
/// ping with 1 byte, a `b'B'` request with `payload` bytes and a `b'Q'`
/// request with `payload / PARALLEL` bytes: proves the configured latency,
/// per-stream rate and aggregate rate are what a client actually sees.
pub async fn self_check(shape: Shape, payload: usize) -> std::io::Result<CheckResult> {
    let sink = TcpListener::bind(("127.0.0.1", 0)).await?;
    let sink_addr = sink.local_addr()?;
    let sink_task = tokio::spawn(async move {
        while let Ok((mut s, _)) = sink.accept().await {
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let mut b = [0u8; 1];
                while let Ok(1) = s.read(&mut b).await {
                    let reply = match b[0] {
                        b'B' => vec![7u8; payload],
                        b'Q' => vec![7u8; payload / PARALLEL],
                        _ => b.to_vec(),
                    };
                    if s.write_all(&reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let result = probe(sink_addr, shape, payload).await;
    sink_task.abort();
    result
}

async fn probe(sink: SocketAddr, shape: Shape, payload: usize) -> std::io::Result<CheckResult> {
    let shaper = Shaper::start(sink, shape).await?;
    let mut c = TcpStream::connect(shaper.addr).await?;
    c.set_nodelay(true)?;
    let mut rtts = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        ping(&mut c).await?;
        rtts.push(t.elapsed());
    }
    rtts.sort();
    let rtt = rtts[rtts.len() / 2];
    let t = Instant::now();
    c.write_all(b"B").await?;
    drain(&mut c, payload).await?;
    let transfer = t.elapsed();

    // Parallel probe over already-open connections, so only the link is
    // measured, not handshakes.
    let mut conns = Vec::new();
    for _ in 0..PARALLEL {
        let mut c = TcpStream::connect(shaper.addr).await?;
        c.set_nodelay(true)?;
        ping(&mut c).await?;
        conns.push(c);
    }
    let each = payload / PARALLEL;
    let t = Instant::now();
    let jobs: Vec<_> = conns
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                c.write_all(b"Q").await?;
                drain(&mut c, each).await
            })
        })
        .collect();
    for j in jobs {
        j.await.map_err(std::io::Error::other)??;
    }
    let parallel_transfer = t.elapsed();
    // Goodput excludes the one round trip spent on the request itself.
    let goodput = |bytes: usize, took: Duration| {
        bytes as f64 * 8.0 / took.saturating_sub(rtt).as_secs_f64().max(1e-9)
    };
    Ok(CheckResult {
        rtt,
        payload,
        transfer,
        measured_bps: goodput(payload, transfer),
        parallel_transfer,
        aggregate_bps: goodput(each * PARALLEL, parallel_transfer),
    })
}

async fn ping(c: &mut TcpStream) -> std::io::Result<()> {
    let mut b = [0u8; 1];
    c.write_all(b"p").await?;
    c.read_exact(&mut b).await?;
    Ok(())
}

async fn drain(c: &mut TcpStream, mut left: usize) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    while left > 0 {
        let n = c.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::other("sink closed early"));
        }
        left = left.saturating_sub(n);
    }
    Ok(())
}
