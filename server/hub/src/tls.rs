//! TLS for the hub: loads the certificate chain and private key (PEM files
//! named by `--tls-cert`/`--tls-key`), and [`TlsListener`], which accepts
//! TCP connections and completes their TLS handshakes on their own tasks,
//! so one slow or hostile client never holds up the others. axum serves
//! the same router over it as over plain TCP, with the same graceful
//! shutdown.
//!
//! It does not reload certificates (restart the hub after renewing them),
//! ask clients for certificates, or speak HTTP/2. rustls runs on the
//! `ring` provider, chosen here explicitly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The PEM files of a hub that serves TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain: the hub's certificate first, then any
    /// intermediates (`--tls-cert`, `WEFT_TLS_CERT`).
    pub cert: PathBuf,
    /// The private key of that certificate: PKCS#8, PKCS#1 (RSA) or SEC1
    /// (EC) (`--tls-key`, `WEFT_TLS_KEY`).
    pub key: PathBuf,
}

/// Why the certificate or key cannot be used; each message names the file
/// and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate {} (--tls-cert, WEFT_TLS_CERT): {error}; give the path of a PEM file with the hub's certificate chain", .path.display())]
    ReadCert { path: PathBuf, error: std::io::Error },
    #[error("the TLS certificate file {} (--tls-cert, WEFT_TLS_CERT) holds no usable certificate: {detail}; it must be PEM with -----BEGIN CERTIFICATE----- blocks, the hub's certificate first", .path.display())]
    BadCert { path: PathBuf, detail: String },
    #[error("cannot read the TLS private key {} (--tls-key, WEFT_TLS_KEY): {error}; give the path of the PEM file with the certificate's private key", .path.display())]
    ReadKey { path: PathBuf, error: std::io::Error },
    #[error("the TLS private key file {} (--tls-key, WEFT_TLS_KEY) holds no usable private key: {detail}; it must be PEM with a -----BEGIN PRIVATE KEY----- (or RSA/EC PRIVATE KEY) block", .path.display())]
    BadKey { path: PathBuf, detail: String },
    #[error("the TLS certificate {} and private key {} do not fit together ({detail}); give the key that belongs to the certificate", .cert.display(), .key.display())]
    Mismatch { cert: PathBuf, key: PathBuf, detail: String },
}

/// Loads `files` into a rustls server configuration (HTTP/1.1 only).
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = read_chain(&files.cert)?;
    let key = read_key(&files.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mismatch = |err: rustls::Error| TlsError::Mismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
        detail: err.to_string(),
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(mismatch)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(mismatch)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |detail: String| TlsError::BadCert { path: path.to_owned(), detail };
    let chain =
        CertificateDer::pem_file_iter(path).and_then(|certs| certs.collect::<Result<Vec<_>, _>>()).map_err(|err| {
            match err {
                rustls::pki_types::pem::Error::Io(error) => TlsError::ReadCert { path: path.to_owned(), error },
                other => bad(other.to_string()),
            }
        })?;
    if chain.is_empty() {
        return Err(bad("no PEM certificate block in it".into()));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|err| match err {
        rustls::pki_types::pem::Error::Io(error) => TlsError::ReadKey { path: path.to_owned(), error },
        rustls::pki_types::pem::Error::NoItemsFound => {
            TlsError::BadKey { path: path.to_owned(), detail: "no PEM private key block in it".into() }
        }
        other => TlsError::BadKey { path: path.to_owned(), detail: other.to_string() },
    })
}

/// Time a client has to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; connections beyond it are closed at
/// once (a flood of half-open handshakes must not exhaust memory).
pub const MAX_HANDSHAKES: usize = 1024;

/// A TCP listener whose connections come out TLS-wrapped (see the module
/// doc). A failed handshake is logged and the connection dropped; nothing
/// reaches the router until the handshake has completed.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl TlsListener {
    /// Serves TLS with `config` on `tcp`.
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> TlsListener {
        TlsListener { tcp, acceptor: TlsAcceptor::from(config), handshakes: JoinSet::new() }
    }

    fn start_handshake(&mut self, stream: TcpStream, peer: SocketAddr) {
        if self.handshakes.len() >= MAX_HANDSHAKES {
            tracing::warn!(%peer, "too many TLS handshakes in progress; connection closed");
            return;
        }
        let acceptor = self.acceptor.clone();
        // Small frames go out at once (see `run`'s plain listener).
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, "could not set TCP_NODELAY");
        }
        self.handshakes.spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => Some((tls, peer)),
                Ok(Err(err)) => {
                    tracing::info!(%peer, %err, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::info!(%peer, "TLS handshake failed: not completed within {HANDSHAKE_TIMEOUT:?}");
                    None
                }
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    // Cancel-safe, as axum needs at shutdown: both awaited futures are, and
    // every state change between them is synchronous.
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, peer)) => self.start_handshake(stream, peer),
                    Err(err) => accept_error(err).await,
                },
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(connection)) = done {
                        return connection;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Like axum's own listener: per-connection errors are skipped, others
/// (out of file descriptors, ...) pause accepting for a second.
async fn accept_error(err: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(err.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset) {
        return;
    }
    tracing::error!(%err, "accepting a connection failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_are_named_in_the_error() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "this is not PEM\n")?;
        let missing = dir.path().join("missing.pem");
        let cases = [
            (TlsFiles { cert: missing.clone(), key: garbage.clone() }, "--tls-cert", &missing),
            (TlsFiles { cert: garbage.clone(), key: missing.clone() }, "--tls-cert", &garbage),
        ];
        for (files, flag, path) in cases {
            let err = server_config(&files).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(flag) && err.contains(&path.display().to_string()), "{err}");
        }
        Ok(())
    }
}
