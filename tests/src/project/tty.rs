//! Runs a client that prompts (npm login, yarn login) under a pseudo
//! terminal (`script` from util-linux) and answers each prompt once it has
//! been printed, so the client reads every answer with its own prompt.
//!
//! Invariant guarded: an answer is written only after its prompt appeared
//! (a client that reads its prompts from a fresh reader each time loses
//! answers typed ahead), and the run is time-bounded like every client run.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::proc::{describe, kill_and_reap, wait_bounded, Output};

/// `cmd` rewritten to run under `script -qec '<cmd>' /dev/null`.
fn under_pty(cmd: &Command) -> Command {
    let quote = |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', "'\\''"));
    let mut line = quote(cmd.get_program());
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&quote(arg));
    }
    let mut wrapped = Command::new("script");
    wrapped.args(["-qec", &line, "/dev/null"]);
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped.env_clear();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            wrapped.env(k, v);
        }
    }
    wrapped
}

/// Runs `cmd` under a pty, writing each `(prompt, answer)` once `prompt`
/// has been printed (after the previous one). Panics when a prompt does not
/// appear or the command does not finish within `timeout`.
#[track_caller]
pub fn run_answering(cmd: &Command, answers: &[(&str, &str)], timeout: Duration) -> Output {
    let mut wrapped = under_pty(cmd);
    let command = describe(cmd);
    let started = Instant::now();
    let mut child = wrapped
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn `{command}` under script: {e}"));
    let seen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let sink = Arc::clone(&seen);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(&buf[..n]);
        }
    });
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut from = 0;
    for (prompt, answer) in answers {
        let deadline = started + timeout;
        loop {
            let text = String::from_utf8_lossy(&seen.lock().unwrap_or_else(|e| e.into_inner()))
                .into_owned();
            if let Some(at) = text.get(from..).and_then(|t| t.find(prompt)) {
                from += at + prompt.len();
                break;
            }
            if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                kill_and_reap(&mut child);
                panic!("`{command}`: prompt {prompt:?} never appeared\n--- output ---\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The client switches its terminal mode after printing a prompt.
        std::thread::sleep(Duration::from_millis(100));
        let _ = stdin.write_all(format!("{answer}\r").as_bytes());
        let _ = stdin.flush();
    }
    let left = timeout.saturating_sub(started.elapsed());
    let status = match wait_bounded(&mut child, left) {
        Some(s) => s,
        None => {
            kill_and_reap(&mut child);
            panic!("`{command}` did not finish within {timeout:?}; killed");
        }
    };
    drop(stdin);
    let _ = reader.join();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let stdout =
        String::from_utf8_lossy(&seen.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    Output {
        command,
        status,
        stdout,
        stderr,
        elapsed: started.elapsed(),
    }
}
