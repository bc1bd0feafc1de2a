//! A fixed set of threads, each owning one synchronous PostgreSQL client.
//!
//! Owns the live connections. Invariants: a client is used by one job at a
//! time (the thread that owns it); a connection found broken is replaced
//! and the call retried once on the new one, so a database restart costs
//! no failed call once the server is back, and never a dead pool; the pool answers every job (with [`PgError::Stopped`] when its
//! threads are gone), so a caller never waits forever.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pnpr_secret::Secret;
use postgres::{Client, NoTls};

use crate::error::{describe, PgError};
use crate::tls::{self, SslMode, TlsOptions};

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the database is and who to log in as.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<Secret>,
    pub dbname: String,
    /// Shown as `application_name` in `pg_stat_activity`.
    pub application_name: String,
    /// `sslmode` and `sslrootcert`; every connection (pool and the
    /// sessions of [`ConnectOptions::connect_client`]) uses them.
    pub tls: TlsOptions,
}

impl ConnectOptions {
    fn client_config(&self) -> postgres::Config {
        let mut c = postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name(&self.application_name)
            .ssl_mode(self.tls.client_mode())
            .connect_timeout(CONNECT_TIMEOUT);
        if let Some(p) = &self.password {
            c.password(p.expose());
        }
        c
    }

    /// A connection of its own, outside the pool: for a caller that must
    /// hold one session (a `LISTEN`, or a transaction that calls back into
    /// the caller between statements). Use it off any async runtime worker.
    pub fn connect_client(&self) -> Result<Client, PgError> {
        self.connect()
    }

    fn connect(&self) -> Result<Client, PgError> {
        let config = self.client_config();
        let connected = if self.tls.mode == SslMode::Disable {
            config.connect(NoTls)
        } else {
            let connector = self.tls.connector().map_err(|r| self.failed(r))?;
            config.connect(connector)
        };
        // A TLS failure's own wording hides under "error performing TLS
        // handshake"; name it (untrusted, wrong name, no TLS).
        connected.map_err(|e| self.failed(tls::reason(&e).unwrap_or_else(|| describe(&e))))
    }

    fn failed(&self, reason: String) -> PgError {
        PgError::Connect {
            host: self.host.clone(),
            port: self.port,
            dbname: self.dbname.clone(),
            user: self.user.clone(),
            reason,
        }
    }
}

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

/// One pool thread's connection, made on demand.
struct Conn {
    client: Option<Client>,
    options: Arc<ConnectOptions>,
}

impl Conn {
    /// The live client, connecting first when there is none or the last
    /// one broke.
    fn client(&mut self) -> Result<&mut Client, PgError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            match self.options.connect() {
                Ok(c) => self.client = Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "PostgreSQL connection failed");
                    return Err(e);
                }
            }
        }
        self.client.as_mut().ok_or(PgError::Stopped)
    }

    /// Whether the client in hand turned out to be broken (the server
    /// restarted or the connection was cut while it sat idle).
    fn broken(&self) -> bool {
        self.client.as_ref().is_some_and(Client::is_closed)
    }
}

/// The pool. Cheap to share behind an `Arc`; dropping the last handle lets
/// the threads finish their queue and exit.
pub struct Pool {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    options: Arc<ConnectOptions>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("host", &self.options.host)
            .field("port", &self.options.port)
            .field("dbname", &self.options.dbname)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// Starts `size` pool threads (at least one), each connecting on first
    /// use, and checks the database answers.
    pub fn connect(options: ConnectOptions, size: usize) -> Result<Pool, PgError> {
        let options = Arc::new(options);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..size.max(1) {
            let rx = Arc::clone(&rx);
            let options = Arc::clone(&options);
            std::thread::Builder::new()
                .name(format!("pnpr-pg-{i}"))
                .spawn(move || worker(&rx, options))
                .map_err(|e| PgError::Query(format!("cannot start a pool thread: {e}")))?;
        }
        let pool = Pool {
            jobs: Mutex::new(Some(tx)),
            options,
        };
        // One round trip now, so bad credentials or a wrong address stop
        // startup with the reason (connecting happens on a pool thread:
        // the caller may be on an async runtime).
        pool.run(|c| Ok(c.simple_query("SELECT 1").map(drop)?))?;
        Ok(pool)
    }

    /// Where the pool connects, for a store that needs a session of its
    /// own ([`ConnectOptions::connect_client`]).
    pub fn options(&self) -> &ConnectOptions {
        &self.options
    }

    /// Runs `f` on one of the pool's clients and waits for its result.
    /// Blocks the calling thread for the round trips `f` makes. When `f`
    /// fails because the client's connection had broken while idle (it is
    /// found only by using it), `f` runs once more on a new connection; a
    /// statement whose connection broke mid-way may so run twice, which the
    /// stores tolerate (their writes are keyed and conflict, never
    /// duplicate).
    pub fn run<T, F>(&self, f: F) -> Result<T, PgError>
    where
        T: Send + 'static,
        F: Fn(&mut Client) -> Result<T, PgError> + Send + 'static,
    {
        let (reply, answer) = mpsc::sync_channel::<Result<T, PgError>>(1);
        let job: Job = Box::new(move |conn| {
            let mut result = conn.client().and_then(&f);
            if result.is_err() && conn.broken() {
                result = conn.client().and_then(&f);
            }
            let _ = reply.send(result);
        });
        {
            let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
            let sender = jobs.as_ref().ok_or(PgError::Stopped)?;
            sender.send(job).map_err(|_| PgError::Stopped)?;
        }
        answer.recv().unwrap_or(Err(PgError::Stopped))
    }
}

/// One pool thread: takes jobs until every sender is gone.
fn worker(rx: &Mutex<mpsc::Receiver<Job>>, options: Arc<ConnectOptions>) {
    let mut conn = Conn {
        client: None,
        options,
    };
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        job(&mut conn);
    }
}
