use super::*;

const SAMPLE: &str = "Running 10s test @ http://127.0.0.1:1234/x
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.05ms  300.00us   9.00ms   90.00%
  Latency Distribution
     50%  812.00us
     75%    1.10ms
     90%    1.50ms
     99%    3.25ms
  123456 requests in 10.00s, 1.00GB read
Requests/sec:  12345.60
Transfer/sec:    100.00MB
";

#[test]
fn parses_wrk_latency_report() {
    let r = parse_wrk(SAMPLE).expect("parse");
    assert!((r.rps - 12345.6).abs() < 1e-6);
    assert_eq!(r.p50, Duration::from_micros(812));
    assert_eq!(r.p99, Duration::from_micros(3250));
    assert_eq!(r.requests, 123456);
}

#[test]
fn rejects_output_without_throughput() {
    assert!(parse_wrk("unable to connect to 127.0.0.1:1 Connection refused").is_none());
}

#[test]
fn reads_own_peak_rss() {
    let kb = peak_rss_kb(std::process::id()).expect("VmHWM");
    assert!(kb > 0);
}
