//! `pnpr-s3`: the S3-compatible bucket behind `blobs: {s3: ...}`, the one
//! implementation of [`pnpr_store::BlobBackend`].
//!
//! Owns the client (`object_store`'s S3 store, path-style requests to the
//! configured endpoint) and the runtime it runs on. Invariants guarded here:
//! - credentials arrive as [`Secret`]s from the binary (this crate never
//!   reads the environment, and never falls back to instance metadata or
//!   any other credential source: without keys there is no backend), and no
//!   error or log line carries them; `Debug` names only bucket, endpoint and
//!   prefix;
//! - the endpoint is the operator's: every request goes to it under
//!   `<prefix><key>`, where keys come from [`pnpr_store::backend`]'s digest
//!   builders, so nothing a client sends chooses a URL or a key shape;
//! - calls run on this crate's own small runtime, so synchronous callers
//!   (hosted publishes on the blocking pool) and async ones alike can wait
//!   for them, and a bucket that hangs or refuses is given up on after a
//!   bounded retry budget rather than holding a request for minutes;
//! - requests go straight to the endpoint, never through a proxy: the HTTP
//!   client is built here ([`DirectConnector`]) with proxies off, because
//!   the stock one would follow `HTTP(S)_PROXY`/`ALL_PROXY` from the process
//!   environment and send signed bucket traffic wherever they point.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::client::{HttpClient, HttpConnector};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};
use pnpr_secret::Secret;
use pnpr_store::backend::{BackendFuture, BlobStream};
use pnpr_store::{BlobBackend, StoreError};
use tokio::io::AsyncWriteExt;

#[cfg(test)]
mod tests;

/// Objects up to this size are one `PUT`; larger ones are multipart
/// uploads in parts of this size.
const PART_SIZE: usize = 8 << 20;
/// Chunks of a download in flight between the client task and the reader.
const GET_QUEUE: usize = 8;
/// How long a connection to the bucket may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// What the bucket sees as the client.
const USER_AGENT: &str = concat!("pnpr/", env!("CARGO_PKG_VERSION"));

/// Errors of the S3 backend (setup only; calls report [`StoreError::Bucket`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum S3Error {
    #[error("blobs.s3: {0}")]
    Config(String),
    #[error("blobs.s3: cannot start the client runtime: {0}")]
    Runtime(std::io::Error),
}

/// The keys the binary read from `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

/// Where the bucket is.
#[derive(Debug, Clone)]
pub struct Options {
    pub bucket: String,
    /// An S3-compatible server (`http://` allowed: it is the operator's);
    /// `None` is the provider's default endpoint for `region`.
    pub endpoint: Option<url::Url>,
    pub region: String,
    /// Empty or ending in `/`.
    pub prefix: String,
    /// Per-request timeout (a multipart upload is many requests).
    pub timeout: Duration,
    /// Retries of a failed request (connection refused, 5xx) before the
    /// call fails.
    pub max_retries: usize,
}

impl Options {
    pub fn new(bucket: String, endpoint: Option<url::Url>, region: String, prefix: String) -> Self {
        Self {
            bucket,
            endpoint,
            region,
            prefix,
            timeout: Duration::from_secs(120),
            max_retries: 2,
        }
    }
}

/// Builds the bucket's HTTP client with no proxy at all (neither one from
/// the environment nor any other), the timeouts of [`Options`], and no
/// transparent decompression (a compressed answer would break the
/// `Content-Length` checks of the store).
#[derive(Debug)]
struct DirectConnector {
    timeout: Duration,
}

impl DirectConnector {
    fn client(&self) -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .no_proxy()
            .user_agent(USER_AGENT)
            .timeout(self.timeout)
            .connect_timeout(CONNECT_TIMEOUT)
            .no_gzip()
            .no_brotli()
            .no_zstd()
            .no_deflate()
            .build()
    }
}

impl HttpConnector for DirectConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = self.client().map_err(|e| object_store::Error::Generic {
            store: "S3",
            source: Box::new(e),
        })?;
        Ok(HttpClient::new(client))
    }
}

/// An S3 bucket as a [`BlobBackend`].
pub struct S3Backend {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    bucket: String,
    endpoint: String,
    rt: Runtime,
}

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Backend")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl S3Backend {
    pub fn new(opts: Options, creds: Credentials) -> Result<Self, S3Error> {
        if let Some(ep) = &opts.endpoint {
            if !ep.username().is_empty() || ep.password().is_some() {
                // Keys belong in AWS_*; a URL is logged.
                return Err(S3Error::Config(
                    "endpoint: must not carry credentials (use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)".into(),
                ));
            }
        }
        let endpoint = opts
            .endpoint
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/').to_owned());
        let client = ClientOptions::new()
            .with_allow_http(true)
            .with_timeout(opts.timeout)
            .with_connect_timeout(CONNECT_TIMEOUT);
        let retry = RetryConfig {
            max_retries: opts.max_retries,
            retry_timeout: Duration::from_secs(15),
            ..RetryConfig::default()
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&opts.bucket)
            .with_region(&opts.region)
            .with_access_key_id(creds.access_key_id.expose())
            .with_secret_access_key(creds.secret_access_key.expose())
            .with_virtual_hosted_style_request(false)
            .with_allow_http(true)
            .with_client_options(client)
            .with_http_connector(DirectConnector {
                timeout: opts.timeout,
            })
            .with_retry(retry);
        if let Some(token) = &creds.session_token {
            builder = builder.with_token(token.expose());
        }
        if let Some(ep) = &endpoint {
            builder = builder.with_endpoint(ep);
        }
        // The builder's messages name keys, never their values.
        let store = builder
            .build()
            .map_err(|e| S3Error::Config(e.to_string()))?;
        Ok(Self {
            store: Arc::new(store),
            prefix: opts.prefix,
            bucket: opts.bucket,
            endpoint: endpoint.unwrap_or_else(|| "(provider default)".into()),
            rt: Runtime::new()?,
        })
    }

    /// What to log about this bucket at startup.
    pub fn describe(&self) -> String {
        format!(
            "bucket {} at {} under {:?}",
            self.bucket, self.endpoint, self.prefix
        )
    }

    fn path(&self, key: &str) -> ObjectPath {
        ObjectPath::from(format!("{}{key}", self.prefix))
    }
}

fn bucket_err(what: &str, key: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Bucket(format!("{what} {key}: {e}"))
}

impl BlobBackend for S3Backend {
    fn put(&self, key: String, path: PathBuf) -> BackendFuture<()> {
        let store = Arc::clone(&self.store);
        let location = self.path(&key);
        let task = self.rt.spawn(async move {
            let mut file = tokio::fs::File::open(&path).await.map_err(StoreError::Io)?;
            let mut writer = BufWriter::with_capacity(store, location, PART_SIZE);
            let copied = async {
                tokio::io::copy(&mut file, &mut writer).await?;
                writer.shutdown().await
            }
            .await;
            if let Err(e) = copied {
                let _ = writer.abort().await;
                return Err(bucket_err("put", &key, e));
            }
            Ok(())
        });
        Box::pin(async move { joined(task.await) })
    }

    fn get(&self, key: String) -> BackendFuture<Option<BlobStream>> {
        let store = Arc::clone(&self.store);
        let location = self.path(&key);
        let (tx, rx) = tokio::sync::mpsc::channel::<pnpr_store::Result<Bytes>>(GET_QUEUE);
        let task = self.rt.spawn(async move {
            let found = match store.get(&location).await {
                Ok(found) => found,
                Err(object_store::Error::NotFound { .. }) => return Ok(false),
                Err(e) => return Err(bucket_err("get", &key, e)),
            };
            // The body is pulled on this runtime and handed over in order;
            // a reader that goes away ends the download.
            let mut body = found.into_stream();
            tokio::spawn(async move {
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.map_err(|e| bucket_err("get", &key, e));
                    let failed = chunk.is_err();
                    if tx.send(chunk).await.is_err() || failed {
                        break;
                    }
                }
            });
            Ok(true)
        });
        Box::pin(async move {
            if !joined(task.await)? {
                return Ok(None);
            }
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|chunk| (chunk, rx))
            });
            Ok(Some(Box::pin(stream) as BlobStream))
        })
    }

    fn exists(&self, key: String) -> BackendFuture<bool> {
        let store = Arc::clone(&self.store);
        let location = self.path(&key);
        let task = self.rt.spawn(async move {
            match store.head(&location).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(bucket_err("head", &key, e)),
            }
        });
        Box::pin(async move { joined(task.await) })
    }

    fn delete(&self, key: String) -> BackendFuture<()> {
        let store = Arc::clone(&self.store);
        let location = self.path(&key);
        let task = self.rt.spawn(async move {
            match store.delete(&location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(bucket_err("delete", &key, e)),
            }
        });
        Box::pin(async move { joined(task.await) })
    }
}

fn joined<T>(r: Result<pnpr_store::Result<T>, tokio::task::JoinError>) -> pnpr_store::Result<T> {
    r.unwrap_or_else(|e| Err(StoreError::Bucket(format!("client task failed: {e}"))))
}

/// The client's own runtime. Shut down in the background on drop, so the
/// owner may be dropped inside another runtime.
struct Runtime(Option<tokio::runtime::Runtime>);

impl Runtime {
    fn new() -> Result<Self, S3Error> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pnpr-s3")
            .enable_all()
            .build()
            .map_err(S3Error::Runtime)?;
        Ok(Self(Some(rt)))
    }

    fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.0 {
            Some(rt) => rt.spawn(fut),
            None => unreachable!("runtime is only taken on drop"),
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}
