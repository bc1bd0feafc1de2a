use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_and_rate_are_what_the_client_sees() {
    let shape = Shape {
        latency: Duration::from_millis(10),
        rate_bps: 80_000_000,
        per_connection: false,
    };
    let r = self_check(shape, 2_000_000).await.expect("self check");
    // Round trip = 2 x one-way, plus scheduling noise.
    assert!(r.rtt >= Duration::from_millis(20), "rtt {:?}", r.rtt);
    assert!(r.rtt < Duration::from_millis(35), "rtt {:?}", r.rtt);
    // 2 MB at 80 Mbit/s = 200 ms on the wire.
    let ratio = r.measured_bps / 80_000_000.0;
    assert!(
        (0.75..1.1).contains(&ratio),
        "measured {} bps",
        r.measured_bps
    );
    // Shared link: parallel connections split the rate.
    let agg = r.aggregate_bps / 80_000_000.0;
    assert!(
        (0.75..1.1).contains(&agg),
        "aggregate {} bps",
        r.aggregate_bps
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_connection_rate_multiplies_with_connections() {
    let shape = Shape {
        latency: Duration::from_millis(10),
        rate_bps: 40_000_000,
        per_connection: true,
    };
    let r = self_check(shape, 2_000_000).await.expect("self check");
    let single = r.measured_bps / 40_000_000.0;
    assert!(
        (0.75..1.1).contains(&single),
        "single {} bps",
        r.measured_bps
    );
    // 4 private links of 40 Mbit/s: well above one link's rate.
    let agg = r.aggregate_bps / 40_000_000.0;
    assert!(
        agg > 2.0 && agg < PARALLEL as f64 * 1.1,
        "aggregate {} bps",
        r.aggregate_bps
    );
}

#[tokio::test]
async fn counters_see_traffic_and_v1_install() {
    let sink = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let addr = sink.local_addr().expect("addr");
    tokio::spawn(async move {
        if let Ok((mut s, _)) = sink.accept().await {
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let _ = s.write_all(&buf[..n]).await;
        }
    });
    let shaper = Shaper::start(
        addr,
        Shape {
            latency: Duration::from_millis(1),
            rate_bps: 0,
            per_connection: false,
        },
    )
    .await
    .expect("shaper");
    let mut c = TcpStream::connect(shaper.addr).await.expect("connect");
    c.write_all(b"POST /v1/install HTTP/1.1\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 27];
    c.read_exact(&mut buf).await.expect("echo");
    let t = shaper.traffic();
    assert_eq!(t.connections, 1);
    assert_eq!(t.to_server, 27);
    assert_eq!(t.to_client, 27);
    assert!(t.saw_v1_install);
    shaper.reset();
    assert_eq!(shaper.traffic(), Traffic::default());
}

#[test]
fn serialisation_delay_follows_the_rate() {
    let s = Shape {
        latency: Duration::ZERO,
        rate_bps: 200_000_000,
        per_connection: false,
    };
    assert_eq!(s.serialisation(25_000_000), Duration::from_secs(1));
    let unlimited = Shape { rate_bps: 0, ..s };
    assert_eq!(unlimited.serialisation(1 << 30), Duration::ZERO);
}
