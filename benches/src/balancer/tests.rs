use super::*;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A backend on a real loopback socket: answers each connection with its
/// `id` byte, then echoes everything until the client closes its side.
async fn backend(id: u8) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                conn.write_all(&[id]).await.expect("id");
                let (mut r, mut w) = conn.split();
                tokio::io::copy(&mut r, &mut w).await.expect("echo");
                w.shutdown().await.expect("shutdown");
            });
        }
    });
    addr
}

/// Sends `payload` through the balancer, half-closes, and returns the
/// backend id and the echoed bytes.
async fn round_trip(balancer: SocketAddr, payload: &[u8]) -> (u8, Vec<u8>) {
    let mut conn = TcpStream::connect(balancer).await.expect("connect");
    let (mut r, mut w) = conn.split();
    let send = async {
        w.write_all(payload).await.expect("send");
        w.shutdown().await.expect("half-close");
    };
    let mut answer = Vec::new();
    let recv = r.read_to_end(&mut answer);
    let (_, got) = tokio::join!(send, recv);
    got.expect("receive");
    (answer[0], answer[1..].to_vec())
}

#[tokio::test]
async fn spreads_connections_in_turn_and_relays_bytes_both_ways() {
    let backends = vec![backend(b'a').await, backend(b'b').await];
    let lb = Balancer::start(backends).await.expect("start");
    assert!(lb.addr.ip().is_loopback());
    // More than a socket buffer each way, so the relay must stream.
    let payload: Vec<u8> = (0..(3 << 20)).map(|i| (i % 251) as u8).collect();
    let mut ids = Vec::new();
    for _ in 0..4 {
        let (id, echoed) = round_trip(lb.addr, &payload).await;
        assert!(echoed == payload, "bytes changed on the way");
        ids.push(id);
    }
    assert_eq!(ids, b"abab");
    assert_eq!(lb.relayed(), [2, 2]);
}

#[tokio::test]
async fn skips_a_backend_that_refuses_and_keeps_the_turn() {
    // A port nothing listens on any more.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let live = backend(b'z').await;
    let lb = Balancer::start(vec![dead, live]).await.expect("start");
    for _ in 0..3 {
        let (id, echoed) = round_trip(lb.addr, b"ping").await;
        assert_eq!((id, echoed.as_slice()), (b'z', &b"ping"[..]));
    }
    assert_eq!(lb.relayed(), [0, 3]);
}

#[tokio::test]
async fn refuses_an_empty_backend_list() {
    assert!(Balancer::start(Vec::new()).await.is_err());
}
