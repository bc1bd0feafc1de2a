use std::process::Command;
use std::time::Duration;

use super::{run, LogBuffer, Server};

#[test]
fn run_captures_both_streams_and_status() {
    let out = run(
        Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");
    out.assert_failure();
    let shown = out.to_string();
    assert!(shown.contains("out") && shown.contains("err") && shown.contains("sh -c"));
}

#[test]
#[should_panic(expected = "did not finish within")]
fn run_kills_a_hung_command() {
    run(Command::new("sleep").arg("30"), Duration::from_millis(200));
}

#[test]
#[should_panic(expected = "command failed")]
fn assert_success_reports_failure() {
    run(&mut Command::new("false"), Duration::from_secs(10)).assert_success();
}

#[test]
fn server_hands_over_the_matching_stdout_line_and_keeps_logging() {
    let logs = LogBuffer::default();
    let mut server = Server::spawn(
        Command::new("sh").args([
            "-c",
            "echo starting; echo ready 42; echo oops >&2; exec sleep 30",
        ]),
        logs,
    );
    let got = server.wait_for_stdout(Duration::from_secs(10), |line| {
        line.strip_prefix("ready ")
            .and_then(|n| n.parse::<u32>().ok())
    });
    assert_eq!(got, Ok(42));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !server.logs().contains("[stderr] oops") {
        assert!(std::time::Instant::now() < deadline, "{}", server.logs());
        std::thread::sleep(Duration::from_millis(10));
    }
    // The two streams interleave arbitrarily; stdout keeps its own order.
    let stdout_lines: Vec<String> = server
        .logs()
        .lines()
        .filter(|l| !l.starts_with("[stderr] "))
        .map(str::to_string)
        .collect();
    assert_eq!(stdout_lines, ["starting", "ready 42"]);
    let (status, clean) = server.stop_with("TERM", Duration::from_secs(10));
    assert!(clean);
    assert!(status.is_some_and(|s| !s.success()));
}

#[test]
fn server_reports_early_exit() {
    let mut server = Server::spawn(
        Command::new("sh").args(["-c", "echo nope; exit 7"]),
        LogBuffer::default(),
    );
    let err = server
        .wait_for_stdout(Duration::from_secs(10), |_| None::<()>)
        .unwrap_err();
    assert!(err.contains("stdout closed"), "{err}");
}
