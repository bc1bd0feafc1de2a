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

mod lifecycle {
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use tempfile::TempDir;

    use crate::pnpr::Pnpr;

    /// A stand-in for the binary that honours the startup contract: echoes
    /// the listening line for the `--listen` port (4321 for port 0), prints
    /// its env and args, and reports SIGHUP.
    fn stub(dir: &TempDir, script_body: &str) -> PathBuf {
        let path = dir.path().join("pnpr-stub");
        std::fs::write(&path, format!("#!/bin/sh\n{script_body}")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    const CONTRACT: &str = r#"
port=${4##*:}; [ "$port" = 0 ] && port=4321
echo "args: $*"
echo "env: GREETING=$GREETING HOME=${HOME:-unset}"
trap 'echo got-hup' HUP
echo "pnpr listening on http://127.0.0.1:$port/"
i=0; while [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
"#;

    fn wait_for_log(pnpr: &Pnpr, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pnpr.logs().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in:\n{}",
                pnpr.logs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn start_signal_restart_and_kill() {
        let dir = TempDir::new().unwrap();
        let binary = stub(&dir, CONTRACT);
        let mut pnpr =
            Pnpr::try_start_with(&binary, "upstream: x\n", &[("GREETING", "hi")]).unwrap();
        assert_eq!(pnpr.url, "http://127.0.0.1:4321/");
        assert_eq!(pnpr.port, 4321);
        assert_eq!(
            std::fs::read_to_string(&pnpr.config_path).unwrap(),
            "upstream: x\n"
        );
        let logs = pnpr.logs();
        assert!(logs.contains("--listen 127.0.0.1:0 --data-dir"), "{logs}");
        assert!(
            logs.contains(&pnpr.data_dir.display().to_string()),
            "{logs}"
        );
        // Only the env the test passed: HOME is not inherited.
        assert!(logs.contains("env: GREETING=hi HOME=unset"), "{logs}");

        pnpr.signal_hup();
        wait_for_log(&pnpr, "got-hup");

        pnpr.restart();
        assert_eq!(pnpr.url, "http://127.0.0.1:4321/");
        assert!(
            pnpr.logs().contains("--listen 127.0.0.1:4321"),
            "{}",
            pnpr.logs()
        );

        pnpr.kill_hard();
        assert_eq!(pnpr.pid(), None);
    }

    #[test]
    fn a_binary_that_exits_early_is_a_start_failure() {
        let dir = TempDir::new().unwrap();
        let binary = stub(&dir, "echo 'config: bad key' >&2\nexit 2\n");
        let failure = Pnpr::try_start_with(&binary, "bad: [", &[]).unwrap_err();
        assert_eq!(failure.status.and_then(|s| s.code()), Some(2));
        assert!(
            failure.reason.contains("stdout closed"),
            "{}",
            failure.reason
        );
        assert!(
            failure.logs.contains("[stderr] config: bad key"),
            "{}",
            failure.logs
        );
    }

    #[test]
    fn stop_reports_a_clean_exit_on_term() {
        let dir = TempDir::new().unwrap();
        let binary = stub(
            &dir,
            "trap 'echo bye; exit 0' TERM\necho 'pnpr listening on http://127.0.0.1:9/'\n\
             i=0; while [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done\n",
        );
        let mut pnpr = Pnpr::try_start_with(&binary, "", &[]).unwrap();
        let (status, clean) = pnpr.stop();
        assert!(clean);
        assert!(status.is_some_and(|s| s.success()), "{status:?}");
        assert!(pnpr.logs().contains("bye"));
    }
}
