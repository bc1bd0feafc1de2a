//! Loopback networking helpers: picking a free port and a dependency-free
//! readiness probe.
//!
//! Invariant guarded: everything binds and connects to 127.0.0.1 only, and
//! the readiness probe is bounded by its deadline.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

#[cfg(test)]
mod tests;

/// A port that was free on 127.0.0.1 a moment ago. Another process can grab it
/// before the caller binds it; callers that spawn servers retry on that.
#[track_caller]
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("cannot read bound address: {e}"))
        .port()
}

/// One plain HTTP/1.1 GET of `path` on 127.0.0.1:`port`; returns the status
/// code, or `None` if the connection or the status line failed.
pub fn http_status(port: u16, path: &str, timeout: Duration) -> Option<u16> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    // The status line fits in the first read of any sane server; reading to
    // the end is not needed and could block on a keep-alive misbehaviour.
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).ok()?;
    parse_status_line(head.get(..n)?)
}

/// Parses "HTTP/1.x NNN ..." into NNN.
pub fn parse_status_line(head: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(head).ok()?;
    let mut parts = text.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.get(..3)?.parse().ok()
}

/// Polls `path` until it answers 200 or `deadline` passes; `is_alive` is
/// checked between attempts so a crashed server is reported at once.
pub fn wait_http_ok(
    port: u16,
    path: &str,
    deadline: Instant,
    mut is_alive: impl FnMut() -> bool,
) -> Result<(), String> {
    loop {
        if http_status(port, path, Duration::from_secs(2)) == Some(200) {
            return Ok(());
        }
        if !is_alive() {
            return Err("process exited before answering".to_string());
        }
        if Instant::now() >= deadline {
            return Err(format!("no 200 from {path} before the deadline"));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}
