//! Which hubs a client talks to, and how: TLS with the system's trusted
//! roots (read with `rustls-native-certs`, so a CA the administrator added
//! to the machine counts) plus an optional `--ca` PEM bundle, and the
//! loopback rule — plain `ws://`/`http://` only to a hub on this machine,
//! unless the user passes `--insecure`.
//!
//! [`ClientTls`] is built once per process from [`TlsOptions`] and shared
//! by the REST calls ([`crate::hub_api`]) and the WebSocket link
//! ([`crate::hub_link`]). Certificates are never skipped: `--insecure` only
//! allows plain connections, it does not weaken TLS. rustls runs on the
//! `ring` provider, chosen here explicitly rather than through a
//! process-wide default.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_tungstenite::MaybeTlsStream;

use crate::link::{HubAddr, is_loopback_host};

/// What the user chose: `--ca FILE` (`WEFT_CA`) and `--insecure`
/// (`WEFT_INSECURE`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// A PEM file of CA certificates trusted besides the system's roots
    /// (for a hub with a self-signed certificate or a private CA).
    pub ca: Option<PathBuf>,
    /// Allow plain `ws://`/`http://` to a hub that is not on loopback.
    pub insecure: bool,
}

/// The trust settings, ready to connect with; cheap to clone.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    insecure: bool,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").field("insecure", &self.insecure).finish_non_exhaustive()
    }
}

/// The rustls crypto provider every TLS connection of weft uses.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ClientTls {
    /// Loads the system's roots and `options.ca`. Fails, saying which
    /// file and why, if the CA file cannot be read or holds no certificate.
    pub fn new(options: &TlsOptions) -> anyhow::Result<ClientTls> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for err in &native.errors {
            tracing::debug!(%err, "a system root certificate could not be loaded");
        }
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(added, ignored, "loaded the system's root certificates");
        if let Some(path) = &options.ca {
            for cert in read_ca(path)? {
                roots.add(cert).with_context(|| {
                    format!("the CA file {} (--ca, WEFT_CA) holds a certificate rustls cannot use", path.display())
                })?;
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .context("setting up TLS")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ClientTls { config: Arc::new(config), insecure: options.insecure })
    }

    /// The loopback rule: a plain (non-TLS) hub must be on this machine
    /// unless the user passed `--insecure`.
    pub fn check(&self, hub: &HubAddr) -> anyhow::Result<()> {
        if hub.tls || self.insecure || hub.is_loopback() {
            return Ok(());
        }
        bail!("{}", plain_refused(&hub.authority))
    }

    /// [`ClientTls::check`] for a `ws://` or `wss://` URL.
    pub fn check_url(&self, url: &str) -> anyhow::Result<()> {
        let parsed = url::Url::parse(url).with_context(|| format!("{url} is not a URL"))?;
        let host = parsed.host_str().unwrap_or_default();
        if parsed.scheme() == "ws" && !self.insecure && !is_loopback_host(host) {
            bail!("{}", plain_refused(host));
        }
        Ok(())
    }

    /// The connector for `tokio_tungstenite` (used for `wss://` URLs only).
    pub fn ws_connector(&self) -> tokio_tungstenite::Connector {
        tokio_tungstenite::Connector::Rustls(Arc::clone(&self.config))
    }

    /// Opens a connection to `hub`: TCP, then TLS if the hub speaks it.
    /// Applies the loopback rule first.
    pub async fn connect(&self, hub: &HubAddr) -> anyhow::Result<MaybeTlsStream<TcpStream>> {
        self.check(hub)?;
        let tcp = TcpStream::connect(&hub.authority)
            .await
            .with_context(|| format!("cannot reach the hub at {}", hub.authority))?;
        if !hub.tls {
            return Ok(MaybeTlsStream::Plain(tcp));
        }
        let name = ServerName::try_from(hub.host().to_owned())
            .with_context(|| format!("{} is not a host name TLS can check", hub.host()))?;
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.config));
        match connector.connect(name, tcp).await {
            Ok(stream) => Ok(MaybeTlsStream::Rustls(stream)),
            Err(err) => match explain_io(&hub.authority, &err) {
                Some(why) => bail!("{why}"),
                None => Err(err).with_context(|| format!("TLS with the hub at {} failed", hub.authority)),
            },
        }
    }
}

fn plain_refused(host: &str) -> String {
    format!(
        "refusing to connect to the hub at {host} without TLS: it is not on this machine, so tokens and edits \
         would cross the network unencrypted. Use the hub's TLS address (wss://, https://; its links start with \
         weft+tls://), or pass --insecure (WEFT_INSECURE=1) if the network is trusted"
    )
}

/// Reads a PEM bundle of CA certificates.
fn read_ca(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let shown = path.display();
    let certs =
        CertificateDer::pem_file_iter(path).and_then(|certs| certs.collect::<Result<Vec<_>, _>>()).map_err(|err| {
            match err {
                rustls::pki_types::pem::Error::Io(io) => anyhow::anyhow!(
                    "cannot read the CA file {shown} (--ca, WEFT_CA): {io}; give the path of a PEM file with the \
                 certificate of the CA that signed the hub's certificate"
                ),
                other => anyhow::anyhow!(
                    "the CA file {shown} (--ca, WEFT_CA) is not a valid PEM file ({other}); it should hold \
                 -----BEGIN CERTIFICATE----- blocks"
                ),
            }
        })?;
    if certs.is_empty() {
        bail!("the CA file {shown} (--ca, WEFT_CA) holds no -----BEGIN CERTIFICATE----- block");
    }
    Ok(certs)
}

/// A clear explanation of a TLS failure, if `err` is one (it wraps a
/// rustls error). Such a failure does not go away by retrying.
pub fn explain_io(hub: &str, err: &std::io::Error) -> Option<String> {
    let tls = err.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(explain(hub, tls))
}

/// [`explain_io`] for an error of the WebSocket client.
pub fn explain_ws(hub: &str, err: &tokio_tungstenite::tungstenite::Error) -> Option<String> {
    use tokio_tungstenite::tungstenite::error::{Error, TlsError};
    match err {
        Error::Io(io) => explain_io(hub, io),
        Error::Tls(TlsError::Rustls(tls)) => Some(explain(hub, tls)),
        Error::Tls(TlsError::InvalidDnsName) => Some(format!("{hub} is not a host name TLS can check")),
        _ => None,
    }
}

fn explain(hub: &str, err: &rustls::Error) -> String {
    match err {
        rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
        | rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext { .. }) => format!(
            "the TLS certificate of the hub at {hub} is not valid for that name ({err}); connect with a name \
             the certificate was issued for"
        ),
        rustls::Error::InvalidCertificate(_) => format!(
            "the TLS certificate of the hub at {hub} is not trusted ({err}). If the hub uses a self-signed \
             certificate or a private CA, pass that CA's certificate (PEM) with --ca FILE or WEFT_CA"
        ),
        _ => format!(
            "TLS with the hub at {hub} failed ({err}); is it a TLS hub? A plain hub's links start with weft:// \
             and its address with ws://"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loopback_rule() -> anyhow::Result<()> {
        let strict = ClientTls::new(&TlsOptions::default())?;
        let loose = ClientTls::new(&TlsOptions { ca: None, insecure: true })?;
        for (hub, allowed) in
            [("ws://127.0.0.1:1", true), ("localhost:1", true), ("ws://10.1.2.3:1", false), ("wss://10.1.2.3:1", true)]
        {
            let hub = HubAddr::parse(hub)?;
            assert_eq!(strict.check(&hub).is_ok(), allowed, "{hub:?}");
            assert!(loose.check(&hub).is_ok(), "{hub:?}");
        }
        assert!(strict.check_url("ws://[::1]:1/ws/s").is_ok());
        assert!(strict.check_url("wss://example.com:1/ws/s").is_ok());
        let refused = strict.check_url("ws://example.com:1/ws/s").map_err(|e| e.to_string());
        assert!(refused.is_err_and(|e| e.contains("--insecure")));
        Ok(())
    }

    #[test]
    fn a_bad_ca_file_says_which_and_why() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("weft-ca-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n")?;
        for path in [dir.join("missing.pem"), garbage] {
            let err = ClientTls::new(&TlsOptions { ca: Some(path.clone()), insecure: false })
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default();
            assert!(err.contains(&path.display().to_string()) && err.contains("--ca"), "{err}");
        }
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
