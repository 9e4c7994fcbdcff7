//! TLS for clients, instances and their peer links (feature `tls`, rustls
//! with the *ring* provider; no OpenSSL). SPEC "Drivers: trust".
//!
//! - A client given a [`ClientTls`] (through
//!   [`ClientOptions::with_tls`](crate::client::ClientOptions::with_tls))
//!   verifies every instance it connects to, seed or ranked entry, against
//!   its [`TrustRoots`] and the endpoint's host name (an IP-address endpoint
//!   against the certificate's IP SANs). A certificate that fails is a failed
//!   attempt, `certificate for aos3 not valid: ...`, and the walk moves on.
//! - An instance given a [`ServerTls`] (through
//!   [`ServerOptions`](crate::server::ServerOptions)) speaks TLS on every
//!   inbound connection. It asks for (does not require) a client certificate:
//!   a presented one must chain to the cluster CA or the handshake fails; a
//!   client without one gets handshakes and sessions as usual, but a
//!   `WorkloadQuery` is answered only on a connection whose client
//!   certificate chains to the cluster CA (otherwise the connection is
//!   closed and counted in
//!   [`ServerStats::peers`](crate::ServerStats)). The
//!   instance's peer links present its own certificate and verify the peer's
//!   against the cluster CA.
//!
//! Certificates are read from PEM files ([`TrustRoots::from_pem_file`],
//! [`Identity::from_pem_files`]) or the platform store
//! ([`TrustRoots::platform`]). With feature `dev-certs`,
//! [`dev_certs::DevPki`] generates a throwaway CA and per-instance
//! certificates for demos and tests.

#[cfg(feature = "dev-certs")]
pub mod dev_certs;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or holds no usable item.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The platform's certificate store could not be read (or is empty).
    #[error("platform certificate store: {0}")]
    Platform(String),
    /// rustls refused the configuration (for example a key that does not
    /// match its certificate).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The crypto provider every configuration of this crate uses: explicit, so a
/// process-wide default installed by someone else changes nothing here.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_error(path: &Path, reason: impl fmt::Display) -> TlsError {
    TlsError::Pem { path: path.to_owned(), reason: reason.to_string() }
}

fn certs_from_pem_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no CERTIFICATE in the file"));
    }
    Ok(certs)
}

/// The certificate authorities a client (or an instance, for its peers)
/// trusts.
#[derive(Debug, Clone)]
pub struct TrustRoots {
    store: RootCertStore,
}

impl TrustRoots {
    /// No roots yet (add some with [`add_pem_file`](Self::add_pem_file)).
    pub fn empty() -> Self {
        TrustRoots { store: RootCertStore::empty() }
    }

    /// Every certificate in a PEM file (one CA or a bundle).
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Self, TlsError> {
        let mut roots = TrustRoots::empty();
        roots.add_pem_file(path)?;
        Ok(roots)
    }

    /// The platform's certificate store (on Linux the system bundle, or the
    /// files named by `SSL_CERT_FILE`/`SSL_CERT_DIR`).
    pub fn platform() -> Result<Self, TlsError> {
        let found = rustls_native_certs::load_native_certs();
        let mut store = RootCertStore::empty();
        let (added, _ignored) = store.add_parsable_certificates(found.certs);
        if added == 0 {
            let why =
                found.errors.first().map_or_else(|| "no certificate found".to_owned(), |e| e.to_string());
            return Err(TlsError::Platform(why));
        }
        Ok(TrustRoots { store })
    }

    /// Adds every certificate of a PEM file.
    pub fn add_pem_file(&mut self, path: impl AsRef<Path>) -> Result<&mut Self, TlsError> {
        let path = path.as_ref();
        for cert in certs_from_pem_file(path)? {
            self.store.add(cert).map_err(|e| pem_error(path, format!("not a usable CA certificate: {e}")))?;
        }
        Ok(self)
    }

    /// How many roots are held.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Whether no root is held.
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }
}

/// A certificate chain and its private key: what an instance serves with, and
/// what it (or a client) presents as a client certificate.
#[derive(Debug)]
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity { chain: self.chain.clone(), key: self.key.clone_key() }
    }
}

impl Identity {
    /// The chain (leaf first) from `cert` and the private key (PKCS#8, PKCS#1
    /// or SEC1) from `key`, both PEM files.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self, TlsError> {
        let chain = certs_from_pem_file(cert.as_ref())?;
        let key_path = key.as_ref();
        let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| pem_error(key_path, e))?;
        Ok(Identity { chain, key })
    }
}

/// A client's trust configuration: the roots instances' certificates must
/// chain to, and optionally a client certificate to present.
#[derive(Debug, Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
}

impl ClientTls {
    /// Verify instances against `roots`; present no client certificate.
    pub fn new(roots: TrustRoots) -> Result<Self, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots.store);
        Ok(ClientTls { config: Arc::new(builder.with_no_client_auth()) })
    }

    /// Verify instances against `roots` and present `identity` when asked.
    pub fn with_identity(roots: TrustRoots, identity: Identity) -> Result<Self, TlsError> {
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots.store)
            .with_client_auth_cert(identity.chain, identity.key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(ClientTls { config: Arc::new(config) })
    }

    /// A rustls configuration built by the caller (its own verifier, ALPN...).
    pub fn from_rustls(config: Arc<rustls::ClientConfig>) -> Self {
        ClientTls { config }
    }

    /// The rustls configuration (shared by every connection of a client).
    pub fn rustls_config(&self) -> &Arc<rustls::ClientConfig> {
        &self.config
    }
}

/// An instance's TLS: its certificate and key, and the cluster CA that peers'
/// (and optional clients') certificates must chain to.
#[derive(Debug, Clone)]
// A client-only build has nothing to serve with it.
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub struct ServerTls {
    server: Arc<rustls::ServerConfig>,
    peers: Arc<rustls::ClientConfig>,
}

#[cfg_attr(not(feature = "server"), allow(dead_code))]
impl ServerTls {
    /// Serve with `identity`; accept client certificates chaining to
    /// `cluster_ca` (asked for, not required); query peers presenting
    /// `identity` and verifying them against `cluster_ca`.
    pub fn new(identity: Identity, cluster_ca: TrustRoots) -> Result<Self, TlsError> {
        let roots = Arc::new(cluster_ca.store);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let peers = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(identity.chain, identity.key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(ServerTls { server: Arc::new(server), peers: Arc::new(peers) })
    }

    /// [`new`](Self::new) from PEM files: the instance's certificate chain,
    /// its key, and the cluster CA.
    pub fn from_pem_files(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
        cluster_ca: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        ServerTls::new(Identity::from_pem_files(cert, key)?, TrustRoots::from_pem_file(cluster_ca)?)
    }

    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.server.clone())
    }

    pub(crate) fn peer_connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(self.peers.clone())
    }
}

/// The name a certificate must carry for `host`: an IP address as an IP SAN,
/// anything else as a DNS name.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_owned()).map_err(|e| format!("{host} cannot be verified by TLS: {e}"))
}

/// A failed TLS handshake in the words of an attempt log. A certificate
/// problem reads `certificate for HOST not valid: WHY`.
pub(crate) fn handshake_failure(host: &str, e: &io::Error) -> String {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(cert)) => {
            format!("certificate for {host} not valid: {}", describe_certificate_error(cert))
        }
        Some(rustls::Error::AlertReceived(alert)) => {
            format!(
                "TLS handshake with {host} failed: it sent alert {alert:?} (does it trust our certificate?)"
            )
        }
        Some(other) => format!("TLS handshake with {host} failed: {other}"),
        None => format!("TLS handshake with {host} failed: {}", crate::client_frames::describe(e)),
    }
}

fn describe_certificate_error(e: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match e {
        C::UnknownIssuer => "issued by an authority we do not trust (unknown issuer)".into(),
        C::BadSignature => "bad signature".into(),
        C::Expired => "certificate expired".into(),
        C::NotValidYet => "certificate not valid yet".into(),
        C::NotValidForName => "certificate not valid for this name".into(),
        C::Revoked => "certificate revoked".into(),
        other => other.to_string(),
    }
}
