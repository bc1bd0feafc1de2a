//! The `pnpr` binary: parses flags, loads the config (or the embedded
//! default), sets up logging and signals, and hands a bound listener to
//! `pnpr_server::run`. Everything else lives in the library crates; this is
//! the only place that reads the process environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use pnpr_config::{Config, Env, LogFormat};
use pnpr_server::{AppState, ServerOptions};

// mimalloc returns memory after a spike (a 25 MB document: +39 MB RSS
// afterwards, against +260 MB with the system allocator; see e2e faults).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// npm registry proxy and install accelerator.
#[derive(Parser, Debug)]
#[command(name = "pnpr", version, about)]
struct Cli {
    /// Config file (Verdaccio-shaped YAML). Without it the embedded default
    /// runs (PNPR_CONFIG also names a file): SQLite + on-disk CAS under the data dir, no uplink unless
    /// PNPR_UPLINK is set.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:4873, or `listen:` from the config).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Base URL clients reach us at (default http://<listen>/).
    #[arg(long)]
    public_url: Option<url::Url>,
    /// Data directory; overrides `storage:` (and puts the cache inside it).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Report the cache's size per store against `cache_max_size`, and trim
    /// it to the budget (least recently used package versions first). Trims
    /// only while no pnpr runs on this cache (a running server keeps its
    /// own budget; then this only reports).
    Gc {
        /// Only report; never remove anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Copy this deployment's embedded users and tokens (htpasswd file,
    /// tokens.sqlite under the storage dir) into the config's `database:`,
    /// and its local tarballs (proxied and hosted) into `blobs:`.
    /// Idempotent: rows and objects already there are kept. Hosted
    /// documents are not copied yet.
    Copy,
}

const DEFAULT_LISTEN: &str = "127.0.0.1:4873";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = Env::from_pairs(std::env::vars());
    let mut config = match load_config(&cli, &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pnpr: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    // A network-exposed server must not run with open registration by default.
    let listen = config.listen.unwrap_or_else(|| {
        DEFAULT_LISTEN
            .parse()
            .unwrap_or(([127, 0, 0, 1], 4873).into())
    });
    if let Err(e) = config.check_exposure(listen) {
        eprintln!("pnpr: invalid configuration: {e}");
        return ExitCode::from(2);
    }
    if let Some(u) = &cli.public_url {
        let mut u = u.clone();
        if !u.path().ends_with('/') {
            let p = format!("{}/", u.path());
            u.set_path(&p);
        }
        config.public_url = Some(u);
    }
    init_logging(&config);
    match cli.command {
        Some(Command::Gc { dry_run }) => return gc(&config, dry_run),
        Some(Command::Copy) => return copy(&config),
        None => {}
    }
    for w in &config.warnings {
        tracing::warn!("config: {w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pnpr: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(cli, config, env)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("pnpr: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `pnpr gc`: the library does the work; this prints its report.
fn gc(config: &Config, dry_run: bool) -> ExitCode {
    match pnpr_server::disk::gc(config, dry_run) {
        Ok(outcome) => {
            print!("{}", outcome.report);
            if outcome.server_running {
                println!("pnpr is running on this cache: it keeps cache_max_size itself; nothing trimmed here");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pnpr gc: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, the
/// keys of `blobs: {s3: ...}` (only the binary reads the environment).
fn aws_credentials() -> Option<pnpr_s3::Credentials> {
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .map(pnpr_secret::Secret::new)
    };
    Some(pnpr_s3::Credentials {
        access_key_id: var("AWS_ACCESS_KEY_ID")?,
        secret_access_key: var("AWS_SECRET_ACCESS_KEY")?,
        session_token: var("AWS_SESSION_TOKEN"),
    })
}

/// `pnpr copy`: the library does the work; this prints what it did.
fn copy(config: &Config) -> ExitCode {
    let mut status = ExitCode::SUCCESS;
    // Users and tokens when `database:` is named (or nothing else is, so
    // the missing `database:` is reported).
    if config.database.is_some() || config.blobs.is_none() {
        match pnpr_server::shared::copy_embedded(config) {
            Ok(r) => println!(
                "users: {} copied, {} already there; tokens: {} copied, {} skipped",
                r.users_copied, r.users_kept, r.tokens_copied, r.tokens_skipped
            ),
            Err(e) => {
                eprintln!("pnpr copy: {e}");
                status = ExitCode::FAILURE;
            }
        }
    }
    if config.database.is_some() {
        match pnpr_server::shared::copy_hosted(config) {
            Ok(r) => println!(
                "hosted packages: {} copied, {} already there",
                r.copied, r.kept
            ),
            Err(e) => {
                eprintln!("pnpr copy: {e}");
                status = ExitCode::FAILURE;
            }
        }
    }
    if config.blobs.is_some() {
        match pnpr_server::shared::copy_blobs(config, aws_credentials()) {
            Ok(c) => println!(
                "blobs: {} uploaded, {} already in the bucket, {} damaged on this disk (not copied)",
                c.uploaded, c.present, c.damaged
            ),
            Err(e) => {
                eprintln!("pnpr copy: {e}");
                status = ExitCode::FAILURE;
            }
        }
    }
    status
}

fn load_config(cli: &Cli, env: &Env) -> Result<Config, String> {
    let file = cli.config.clone().or_else(|| {
        env.get("PNPR_CONFIG")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    });
    let mut config = match &file {
        Some(path) => Config::load_file(path, env).map_err(|e| e.to_string())?,
        None => {
            let dir = cli
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("data"));
            let dir = std::path::absolute(&dir).map_err(|e| e.to_string())?;
            Config::embedded_default(&dir, env).map_err(|e| e.to_string())?
        }
    };
    if let (Some(_), Some(dir)) = (&file, &cli.data_dir) {
        let dir = std::path::absolute(dir).map_err(|e| e.to_string())?;
        config.cache = dir.join(".pnpr-cache");
        config.storage = dir;
    }
    if let Some(l) = cli.listen {
        config.listen = Some(l);
    }
    Ok(config)
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::new(format!(
        "{},hyper=warn,reqwest=warn,hickory_proto=warn,hickory_resolver=warn",
        config.log.tracing_level()
    ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.compact().init(),
    }
}

async fn serve(_cli: Cli, config: Config, env: Env) -> Result<(), String> {
    let listen = match config.listen {
        Some(l) => l,
        None => DEFAULT_LISTEN.parse().map_err(|e| format!("{e}"))?,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    if bound.ip().is_unspecified() && config.public_url.is_none() {
        // URLs then follow each request's Host header; a request without a
        // usable one would get http://0.0.0.0/... URLs.
        tracing::warn!(
            %bound,
            "listening on a wildcard address without `public_url`: URLs are derived from each request's Host header (X-Forwarded-Host only from network.trusted_proxies); set public_url (or PNPR_PUBLIC_URL) to fix them"
        );
    }
    let fallback_secret: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
    if config.secret.is_none() {
        tracing::warn!(
            "no `secret:` configured: using a random per-process key; private cache namespaces will not survive a restart"
        );
    }
    let blob_credentials = config.blobs.as_ref().and_then(|_| aws_credentials());
    let config_path = config.config_path.clone();
    let uplink_names: Vec<String> = config.uplinks.iter().map(|u| u.name.clone()).collect();
    let state = AppState::build(
        config,
        ServerOptions {
            bound,
            resolver: Arc::new(pnpr_upstream::SystemResolver::new()),
            fallback_secret,
            blob_credentials,
        },
    )
    .map_err(|e| format!("cannot start: {e}"))?;

    if uplink_names.is_empty() {
        tracing::warn!("no uplink configured: only locally stored packages are served (set PNPR_UPLINK=<registry url> or add `uplinks:` to a config file)");
    } else {
        tracing::info!(uplinks = ?uplink_names, "uplinks configured");
    }
    tracing::info!(
        storage = %state.config.storage.display(),
        cache = %state.config.cache.display(),
        config = %config_path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "embedded default".into()),
        "pnpr starting"
    );

    let hup = Arc::new(tokio::sync::Notify::new());
    if let Some(path) = config_path {
        tokio::spawn(pnpr_server::reload::watch(
            Arc::clone(&state),
            path,
            env,
            Arc::clone(&hup),
        ));
    }
    spawn_hup_forwarder(Arc::clone(&hup));

    // The contract with scripts and tests: this exact line on stdout.
    println!("pnpr listening on {}", state.public_url_for_banner(bound));
    pnpr_server::run(listener, state, shutdown_signal())
        .await
        .map_err(|e| format!("server error: {e}"))?;
    tracing::info!("shut down cleanly");
    Ok(())
}

fn spawn_hup_forwarder(hup: Arc<tokio::sync::Notify>) {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(mut s) => {
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    tracing::info!("SIGHUP: reloading access policy");
                    hup.notify_one();
                }
            });
        }
        Err(e) => tracing::warn!("cannot install the SIGHUP handler: {e}"),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutdown requested: finishing in-flight requests");
}
