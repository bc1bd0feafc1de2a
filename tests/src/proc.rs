//! Child-process plumbing shared by the peers and the clients: bounded
//! one-shot commands ([`run`]) and long-lived servers ([`Server`]) whose
//! output is drained into a shared buffer.
//!
//! Invariant guarded: no wait is unbounded, no pipe is left undrained (a full
//! pipe would stall the child), and a [`Server`] is killed and reaped on drop,
//! so a failing test never leaves a process listening behind it.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

#[cfg(test)]
mod tests;

/// Result of a finished one-shot command.
#[derive(Debug, Clone)]
pub struct Output {
    /// Human-readable command line, for failure messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics, showing the command, its status, stdout and stderr, unless it
    /// exited 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.success(), "command failed\n{self}");
        self
    }

    /// Panics, showing the full output, unless the command exited non-zero.
    #[track_caller]
    pub fn assert_failure(&self) -> &Self {
        assert!(!self.success(), "command unexpectedly succeeded\n{self}");
        self
    }

    /// stdout followed by stderr, for substring checks that should not care
    /// which stream a client chose.
    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "$ {}", self.command)?;
        writeln!(f, "status: {} after {:?}", self.status, self.elapsed)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout)?;
        write!(f, "--- stderr ---\n{}", self.stderr)
    }
}

/// Renders a command for messages: program and args, space separated.
pub fn describe(cmd: &Command) -> String {
    let mut out = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&arg.to_string_lossy());
    }
    out
}

/// Runs `cmd` to completion with stdin closed, capturing stdout and stderr.
/// Panics (showing what was captured so far) if it does not finish within
/// `timeout`: a hung client is always a test failure.
#[track_caller]
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    let command = describe(cmd);
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn `{command}`: {e}"));
    let stdout = read_to_end_in_thread(child.stdout.take());
    let stderr = read_to_end_in_thread(child.stderr.take());
    let status = match wait_bounded(&mut child, timeout) {
        Some(status) => status,
        None => {
            kill_and_reap(&mut child);
            let stdout = join_text(stdout);
            let stderr = join_text(stderr);
            panic!(
                "`{command}` did not finish within {timeout:?}; killed\n\
                 --- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
            );
        }
    };
    Output {
        command,
        status,
        stdout: join_text(stdout),
        stderr: join_text(stderr),
        elapsed: started.elapsed(),
    }
}

fn read_to_end_in_thread<R: Read + Send + 'static>(pipe: Option<R>) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            // A read error just truncates what we show; the exit status is
            // what decides success.
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

fn join_text(handle: JoinHandle<Vec<u8>>) -> String {
    let bytes = handle.join().unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Polls `child` until it exits or `timeout` passes; `None` on timeout.
pub fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(e) => panic!("cannot wait for child {}: {e}", child.id()),
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// SIGKILLs `child` (if still running) and reaps it.
pub fn kill_and_reap(child: &mut Child) {
    // Fails only when the child has already exited, which is the goal anyway.
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends `signal` (e.g. "HUP", "TERM") to `pid` with the `kill` command, which
/// keeps the harness free of unsafe libc calls.
pub fn send_signal(pid: u32, signal: &str) {
    let out = run(
        Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string()),
        Duration::from_secs(10),
    );
    out.assert_success();
}

/// Output a server has written so far, stdout and stderr interleaved by line.
#[derive(Debug, Clone, Default)]
pub struct LogBuffer(Arc<Mutex<String>>);

impl LogBuffer {
    fn push_line(&self, stream: &str, line: &str) {
        let mut buf = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        buf.push_str(stream);
        buf.push_str(line);
        buf.push('\n');
    }

    /// A copy of everything captured so far.
    pub fn snapshot(&self) -> String {
        self.0
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }
}

/// A long-lived child (a registry or pnpr) whose stdout and stderr are
/// drained line by line into a [`LogBuffer`]. Killed and reaped on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
    logs: LogBuffer,
    /// Every stdout line, for startup handshakes; closed at stdout EOF.
    stdout_lines: Option<Receiver<String>>,
    /// The stdout/stderr drain threads, so a dead process's last lines can be
    /// waited for before its logs are reported.
    drains: Vec<JoinHandle<()>>,
}

/// Spawns `cmd`, retrying briefly on `ETXTBSY`: an executable a test just
/// wrote can still be open for writing in a child another thread forked in
/// that instant (the fd lives until that child execs), which Linux reports as
/// "Text file busy". Bounded: at most 50 tries, 20 ms apart.
fn spawn_retrying(cmd: &mut Command) -> std::io::Result<Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(26) && tries < 50 => {
                tries += 1;
                thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

impl Server {
    /// Spawns `cmd` with stdin closed and both output streams drained.
    #[track_caller]
    pub fn spawn(cmd: &mut Command, logs: LogBuffer) -> Server {
        let command = describe(cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child =
            spawn_retrying(cmd).unwrap_or_else(|e| panic!("cannot spawn `{command}`: {e}"));
        let (tx, rx) = mpsc::channel();
        let mut drains = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            let logs = logs.clone();
            drains.push(thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    logs.push_line("", &line);
                    // The receiver goes away once startup is over; keep
                    // draining into the buffer regardless.
                    let _ = tx.send(line);
                }
            }));
        }
        if let Some(stderr) = child.stderr.take() {
            let logs = logs.clone();
            drains.push(thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    logs.push_line("[stderr] ", &line);
                }
            }));
        }
        Server {
            child,
            logs,
            stdout_lines: Some(rx),
            drains,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        self.logs.snapshot()
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits (bounded by `timeout`) for a stdout line for which `matcher`
    /// returns `Some`. `Err` carries why it gave up: timeout or stdout closed.
    pub fn wait_for_stdout<T>(
        &mut self,
        timeout: Duration,
        mut matcher: impl FnMut(&str) -> Option<T>,
    ) -> Result<T, String> {
        let Some(rx) = self.stdout_lines.as_ref() else {
            return Err("stdout handshake already consumed".to_string());
        };
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(found) = matcher(&line) {
                        // Later lines only need to reach the log buffer.
                        self.stdout_lines = None;
                        return Ok(found);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!("no matching stdout line within {timeout:?}"));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = wait_bounded(&mut self.child, Duration::from_secs(5));
                    self.settle_logs();
                    return Err(format!(
                        "stdout closed before a matching line (exit: {status:?})"
                    ));
                }
            }
        }
    }

    /// SIGKILLs and reaps the process; returns its exit status.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        kill_and_reap(&mut self.child);
        self.settle_logs();
        self.exited()
    }

    /// Once the process is gone, waits (briefly: a surviving grandchild may
    /// hold the pipes open) for the drain threads to copy its last lines.
    fn settle_logs(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.drains.iter().any(|h| !h.is_finished()) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends `signal` and waits up to `timeout` for the process to exit; if it
    /// does not, SIGKILLs it. Returns the status and whether it exited on its own.
    pub fn stop_with(&mut self, signal: &str, timeout: Duration) -> (Option<ExitStatus>, bool) {
        if let Some(status) = self.exited() {
            return (Some(status), true);
        }
        send_signal(self.pid(), signal);
        match wait_bounded(&mut self.child, timeout) {
            Some(status) => {
                self.settle_logs();
                (Some(status), true)
            }
            None => (self.kill(), false),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}
