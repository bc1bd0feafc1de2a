use super::{free_port, http_status, parse_status_line};
use std::time::Duration;

#[test]
fn parses_status_lines() {
    assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Some(200));
    assert_eq!(parse_status_line(b"HTTP/1.0 401 Unauthorized"), Some(401));
    assert_eq!(parse_status_line(b"SSH-2.0"), None);
    assert_eq!(parse_status_line(b""), None);
}

#[test]
fn a_closed_port_has_no_status() {
    let port = free_port();
    assert_ne!(port, 0);
    assert_eq!(http_status(port, "/", Duration::from_millis(500)), None);
}
