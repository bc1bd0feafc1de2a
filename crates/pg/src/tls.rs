//! TLS to PostgreSQL: libpq's `sslmode` levels on rustls (ring provider).
//!
//! Owns the glue between the synchronous `postgres` client (which takes any
//! `MakeTlsConnect`) and `tokio-rustls`: a small adapter written here rather
//! than a crate, because the maintained adapters pull X.509 parsers or a
//! newer toolchain than the workspace's. Invariants guarded:
//! * `require` (and `prefer`) encrypt without authenticating the server,
//!   exactly as libpq does; `verify-ca` checks the chain against the roots
//!   but not the name; `verify-full` checks chain and host name (an IP
//!   address must be in the certificate's IP SANs);
//! * the roots are the `sslrootcert` file when given, else the system's
//!   (as `rustls-native-certs` finds them: it, not this crate, honours
//!   `SSL_CERT_FILE`/`SSL_CERT_DIR`, like every other TLS client of pnpr);
//!   an unreadable or empty file is an error, never an empty trust store
//!   that would fail every handshake with a misleading reason;
//! * failure reasons name what failed (untrusted certificate, wrong name,
//!   no TLS on the server), never the password or URL.
//!
//! No channel binding (`SCRAM-SHA-256-PLUS`): the client announces it does
//! not support it, which servers accept; `verify-full` is what
//! authenticates the server.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{ring, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// libpq's `sslmode`, the levels this client implements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS when the server offers it, else plain; no authentication.
    #[default]
    Prefer,
    /// TLS or fail; the server is not authenticated.
    Require,
    /// TLS, certificate chain checked against the roots.
    VerifyCa,
    /// TLS, chain and host name checked.
    VerifyFull,
}

/// How to secure the connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    pub mode: SslMode,
    /// PEM bundle of trusted CAs; `None` = the system's roots. Used by
    /// `verify-ca` and `verify-full` only.
    pub root_cert: Option<PathBuf>,
}

impl TlsOptions {
    /// What the client library negotiates: it knows disable/prefer/require;
    /// verification is the connector's business.
    pub(crate) fn client_mode(&self) -> postgres::config::SslMode {
        match self.mode {
            SslMode::Disable => postgres::config::SslMode::Disable,
            SslMode::Prefer => postgres::config::SslMode::Prefer,
            _ => postgres::config::SslMode::Require,
        }
    }

    /// The connector for these options. Errors say why (unreadable or
    /// empty CA file, no system roots).
    pub(crate) fn connector(&self) -> Result<MakeRustls, String> {
        let provider = Arc::new(ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match self.mode {
            SslMode::Disable | SslMode::Prefer | SslMode::Require => Arc::new(NoVerify {
                algorithms: provider.signature_verification_algorithms,
            }),
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let roots = Arc::new(roots(self.root_cert.as_deref())?);
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                        .build()
                        .map_err(|e| format!("cannot build the certificate verifier: {e}"))?;
                Arc::new(ChainCheck {
                    webpki,
                    check_name: self.mode == SslMode::VerifyFull,
                })
            }
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustls(tokio_rustls::TlsConnector::from(Arc::new(
            config,
        ))))
    }
}

/// The trusted roots: the file's certificates, or the system's.
fn roots(file: Option<&Path>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match file {
        Some(path) => {
            let shown = path.display();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read sslrootcert {shown}: {e}"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("cannot read sslrootcert {shown}: {e}"))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("sslrootcert {shown} holds no usable certificate"));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err("no system CA certificates found (set sslrootcert)".to_owned());
            }
        }
    }
    Ok(store)
}

/// A short reason for a TLS failure found anywhere in `e`'s source chain,
/// or `None` when it is no TLS failure.
pub(crate) fn reason(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(e);
    while let Some(err) = next {
        let tls = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<io::Error>()
                .and_then(io::Error::get_ref)
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(tls) = tls {
            return Some(describe(tls));
        }
        if err.to_string().contains("server does not support TLS") {
            return Some("server does not support TLS (sslmode requires it)".to_owned());
        }
        next = err.source();
    }
    None
}

fn describe(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "TLS: server certificate not trusted (not signed by a CA in sslrootcert or the system roots)"
                .to_owned()
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => "TLS: server certificate does not match the host name (sslmode=verify-full)".to_owned(),
        rustls::Error::InvalidCertificate(c) => format!("TLS: server certificate rejected: {c:?}"),
        other => format!("TLS handshake failed: {other}"),
    }
}

/// `require`: any certificate, but the handshake signatures must still be
/// made with its key (that is what makes the channel encrypted to it).
#[derive(Debug)]
struct NoVerify {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `verify-ca` / `verify-full`: the web PKI checks; for `verify-ca` a name
/// mismatch alone is forgiven (the chain was checked before the name).
#[derive(Debug)]
struct ChainCheck {
    webpki: Arc<WebPkiServerVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for ChainCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The `MakeTlsConnect` the client library takes.
#[derive(Clone)]
pub(crate) struct MakeRustls(tokio_rustls::TlsConnector);

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, io::Error> {
        // IP literals become IP names (checked against IP SANs).
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "invalid TLS server name"))?;
        Ok(RustlsConnect {
            connector: self.0.clone(),
            name,
        })
    }
}

/// One connection's handshake.
pub(crate) struct RustlsConnect {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

type Handshake<S> = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Handshake<S>;

    fn connect(self, stream: S) -> Handshake<S> {
        Box::pin(async move {
            let tls = self.connector.connect(self.name, stream).await?;
            Ok(RustlsStream(tls))
        })
    }
}

/// The encrypted stream (a newtype: the library's `TlsStream` trait and
/// tokio-rustls's type are both foreign).
pub(crate) struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_is_an_error() {
        let dir = std::env::temp_dir().join(format!("pnpr-pg-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        for (file, want) in [
            (dir.join("absent.pem"), "cannot read sslrootcert"),
            (empty, "holds no usable certificate"),
        ] {
            let opts = TlsOptions {
                mode: SslMode::VerifyFull,
                root_cert: Some(file),
            };
            let e = opts.connector().err().expect("must fail");
            assert!(e.contains(want), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn modes_map_to_the_client_negotiation() {
        use postgres::config::SslMode as M;
        let mode = |mode| {
            TlsOptions {
                mode,
                root_cert: None,
            }
            .client_mode()
        };
        assert_eq!(mode(SslMode::Disable), M::Disable);
        assert_eq!(mode(SslMode::Prefer), M::Prefer);
        for m in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
            assert_eq!(mode(m), M::Require);
        }
        assert!(TlsOptions {
            mode: SslMode::Require,
            root_cert: None
        }
        .connector()
        .is_ok());
    }
}
