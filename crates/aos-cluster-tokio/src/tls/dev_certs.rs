//! Throwaway certificates for demos and tests (feature `dev-certs`): a CA and
//! certificates it signs, generated at run time (rcgen) into a temporary
//! directory that is deleted when the [`DevPki`] is dropped. No private key is
//! ever committed; none of these keys is fit for production.
//!
//! ```no_run
//! # async fn run(registry: std::sync::Arc<dyn aos_cluster_tokio::registry::Registry>,
//! #     config: aos_cluster_tokio::ServerConfig, client: aos_cluster::ClientConfig)
//! #     -> Result<(), Box<dyn std::error::Error>> {
//! use aos_cluster_tokio::tls::dev_certs::DevPki;
//! use aos_cluster_tokio::{Client, ClientOptions, Server, ServerOptions};
//!
//! let pki = DevPki::new()?;
//! // Each instance: a certificate for the host of its advertised endpoint.
//! let tls = pki.server_tls(&["127.0.0.1", "localhost"])?;
//! let server = Server::bind_with(config, registry, ServerOptions::new().with_tls(tls)).await?;
//! // Each client: trust the throwaway CA.
//! let session = Client::with_options(client, ClientOptions::new().with_tls(pki.client_tls()?)).connect().await?;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};

use super::{ClientTls, Identity, ServerTls, TlsError, TrustRoots};

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
}

impl CertFiles {
    /// The pair loaded as an [`Identity`].
    pub fn identity(&self) -> Result<Identity, TlsError> {
        Identity::from_pem_files(&self.cert, &self.key)
    }
}

/// A throwaway CA in a temporary directory, issuing certificates for demos
/// and tests. See the module docs.
pub struct DevPki {
    dir: tempfile::TempDir,
    ca: Issuer<'static, KeyPair>,
    ca_cert: PathBuf,
}

impl std::fmt::Debug for DevPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevPki").field("dir", &self.dir.path()).finish_non_exhaustive()
    }
}

fn rcgen_error(e: rcgen::Error) -> TlsError {
    TlsError::Config(format!("generating a certificate: {e}"))
}

fn write(path: &Path, text: &str) -> Result<(), TlsError> {
    std::fs::write(path, text).map_err(|e| TlsError::Pem { path: path.to_owned(), reason: e.to_string() })
}

fn leaf_params(names: &[&str], common_name: &str) -> Result<CertificateParams, TlsError> {
    // rcgen turns a name that parses as an IP address into an IP SAN.
    let mut params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
        .map_err(rcgen_error)?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // Both: an instance serves clients and is itself a client of its peers.
    params.extended_key_usages =
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

impl DevPki {
    /// A new CA ("aos-cluster dev CA ...") in a new temporary directory.
    pub fn new() -> Result<Self, TlsError> {
        let dir = tempfile::Builder::new()
            .prefix("aos-cluster-dev-pki-")
            .tempdir()
            .map_err(|e| TlsError::Config(format!("temporary directory: {e}")))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error)?;
        // A name of its own (the directory's random part): two throwaway CAs
        // must not look like one, or a stranger's certificate reads as a bad
        // signature rather than an unknown issuer.
        let suffix = dir.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        params.distinguished_name.push(DnType::CommonName, format!("aos-cluster dev CA {suffix}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().map_err(rcgen_error)?;
        let cert = params.self_signed(&key).map_err(rcgen_error)?;
        let ca_cert = dir.path().join("ca.pem");
        write(&ca_cert, &cert.pem())?;
        Ok(DevPki { dir, ca: Issuer::new(params, key), ca_cert })
    }

    /// The directory holding every file (deleted with `self`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate (PEM): the clients' trust root and the cluster CA.
    pub fn ca_cert(&self) -> &Path {
        &self.ca_cert
    }

    /// A certificate signed by the CA for `names` (host names and IP
    /// addresses), usable as a server and as a client certificate, written as
    /// `NAME.pem` and `NAME-key.pem` (`name` is a file stem).
    pub fn issue(&self, name: &str, names: &[&str]) -> Result<CertFiles, TlsError> {
        let params = leaf_params(names, name)?;
        self.sign(name, &params)
    }

    /// Like [`issue`](Self::issue), but valid only during the year 2000: an
    /// expired certificate.
    pub fn issue_expired(&self, name: &str, names: &[&str]) -> Result<CertFiles, TlsError> {
        let mut params = leaf_params(names, name)?;
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        self.sign(name, &params)
    }

    /// A certificate for `names` signed by its own key, not by the CA: what a
    /// rogue process could present.
    pub fn self_signed(&self, name: &str, names: &[&str]) -> Result<CertFiles, TlsError> {
        let params = leaf_params(names, name)?;
        let key = KeyPair::generate().map_err(rcgen_error)?;
        let cert = params.self_signed(&key).map_err(rcgen_error)?;
        self.store(name, &cert.pem(), &key)
    }

    fn sign(&self, name: &str, params: &CertificateParams) -> Result<CertFiles, TlsError> {
        let key = KeyPair::generate().map_err(rcgen_error)?;
        let cert = params.signed_by(&key, &self.ca).map_err(rcgen_error)?;
        self.store(name, &cert.pem(), &key)
    }

    fn store(&self, name: &str, cert_pem: &str, key: &KeyPair) -> Result<CertFiles, TlsError> {
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(TlsError::Config(format!("{name:?} is not a plain file stem")));
        }
        let files = CertFiles {
            cert: self.dir().join(format!("{name}.pem")),
            key: self.dir().join(format!("{name}-key.pem")),
        };
        write(&files.cert, cert_pem)?;
        write(&files.key, &key.serialize_pem())?;
        Ok(files)
    }

    /// The CA as trust roots.
    pub fn trust_roots(&self) -> Result<TrustRoots, TlsError> {
        TrustRoots::from_pem_file(&self.ca_cert)
    }

    /// A client trusting this CA (no client certificate).
    pub fn client_tls(&self) -> Result<ClientTls, TlsError> {
        ClientTls::new(self.trust_roots()?)
    }

    /// An instance's TLS: a fresh certificate for `names` (the host of its
    /// advertised endpoint, as clients and peers dial it), with this CA as
    /// the cluster CA.
    pub fn server_tls(&self, names: &[&str]) -> Result<ServerTls, TlsError> {
        let stem =
            format!("instance-{}", names.first().copied().unwrap_or("unnamed").replace([':', '/'], "_"));
        let mut stem_unique = stem.clone();
        let mut n = 1;
        while self.dir().join(format!("{stem_unique}.pem")).exists() {
            n += 1;
            stem_unique = format!("{stem}-{n}");
        }
        let files = self.issue(&stem_unique, names)?;
        ServerTls::new(files.identity()?, self.trust_roots()?)
    }
}
