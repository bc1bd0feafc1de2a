//! The `LISTEN pnpr_changed` session: tells this node's [`ChangeSink`]
//! about every hosted change committed on any node.
//!
//! Invariants: the session runs on its own thread with its own connection
//! (never a pool thread, never an async worker); after every (re)connect
//! the sink is handed the full set of names, since notices sent while not
//! listening are lost; every [`FALLBACK`] the committed epoch is compared
//! with the notices heard since the last check, and a shortfall is treated
//! like a reconnect. A failure never stops the thread: it reconnects with
//! a bounded backoff.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pnpr_pg::postgres::fallible_iterator::FallibleIterator;
use pnpr_pg::postgres::Client;
use pnpr_pg::{ConnectOptions, PgError};

use super::{CHANNEL, FALLBACK};
use crate::backend::ChangeSink;
use crate::{HostedError, Result};

/// How long one wait for notices lasts before the session checks on itself.
const POLL: Duration = Duration::from_millis(500);
/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Starts the watcher thread.
pub(super) fn spawn(options: ConnectOptions, sink: Arc<dyn ChangeSink>) -> Result<()> {
    std::thread::Builder::new()
        .name("pnpr-hosted-listen".into())
        .spawn(move || run(&options, &*sink))
        .map(drop)
        .map_err(HostedError::Io)
}

/// Every hosted name.
pub(super) fn names(c: &mut Client) -> Result<HashSet<String>, PgError> {
    Ok(c.query("SELECT name FROM pnpr_hosted_packages", &[])?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

fn run(options: &ConnectOptions, sink: &dyn ChangeSink) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let started = Instant::now();
        if let Err(e) = session(options, sink) {
            tracing::warn!(error = %e, "hosted change notices interrupted; reconnecting");
        }
        if started.elapsed() > MAX_BACKOFF {
            backoff = Duration::from_millis(100);
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn epoch(c: &mut Client) -> Result<i64, PgError> {
    Ok(
        c.query_one("SELECT n FROM pnpr_hosted_epoch WHERE id = 1", &[])?
            .get(0),
    )
}

/// One listening session, until its connection fails.
fn session(options: &ConnectOptions, sink: &dyn ChangeSink) -> Result<(), PgError> {
    let mut client = options.connect_client()?;
    client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
    // Listening from here on; whatever changed before is re-read whole.
    let mut seen = epoch(&mut client)?;
    sink.all(names(&mut client)?);
    tracing::info!("listening for hosted package changes");
    let mut heard: i64 = 0;
    let mut checked = Instant::now();
    loop {
        let notices = next_notices(&mut client)?;
        for name in notices {
            heard += 1;
            // Optimistic first (a publish is the common notice), then
            // corrected by the row itself.
            sink.package(&name, true);
            let exists = client
                .query_opt(
                    "SELECT 1 FROM pnpr_hosted_packages WHERE name = $1",
                    &[&name],
                )?
                .is_some();
            if !exists {
                sink.package(&name, false);
            }
        }
        if client.is_closed() {
            return Err(PgError::Query("the listening connection closed".into()));
        }
        if checked.elapsed() >= FALLBACK {
            let now = epoch(&mut client)?;
            if now - seen > heard {
                tracing::warn!("hosted change notices were missed; dropping derived caches");
                sink.all(names(&mut client)?);
            }
            seen = now;
            heard = 0;
            checked = Instant::now();
        }
    }
}

/// Waits up to [`POLL`] for a notice, then takes whatever else is already
/// there (without waiting for more: a notice is acted on when it comes).
fn next_notices(client: &mut Client) -> Result<Vec<String>, PgError> {
    let mut n = client.notifications();
    let mut out = Vec::new();
    let first = n.timeout_iter(POLL).next()?;
    if let Some(first) = first {
        out.push(first.payload().to_owned());
        let mut more = n.iter();
        while out.len() < 1024 {
            match more.next()? {
                Some(note) => out.push(note.payload().to_owned()),
                None => break,
            }
        }
    }
    Ok(out)
}
