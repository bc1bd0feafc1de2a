use super::parse_listening_line;

#[test]
fn parses_the_exact_startup_line() {
    assert_eq!(
        parse_listening_line("pnpr listening on http://127.0.0.1:43117/"),
        Some(43117)
    );
}

#[test]
fn tolerates_a_log_prefix() {
    assert_eq!(
        parse_listening_line("2026-01-01T00:00:00Z INFO pnpr listening on http://127.0.0.1:8080/"),
        Some(8080)
    );
}

#[test]
fn rejects_lines_that_are_not_the_contract() {
    for line in [
        "",
        "pnpr listening on http://127.0.0.1:/",
        "pnpr listening on http://127.0.0.1:0/",
        "pnpr listening on http://127.0.0.1:99999/",
        "pnpr listening on http://127.0.0.1:8080",
        "pnpr listening on http://0.0.0.0:8080/",
        "pnpr listening on http://127.0.0.1:80a/",
    ] {
        assert_eq!(parse_listening_line(line), None, "{line:?}");
    }
}
