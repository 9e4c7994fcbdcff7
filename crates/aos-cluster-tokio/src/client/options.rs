use aos_cluster::wire::Credential;
use aos_cluster::{ClientConfig, Endpoint};

use super::AllowList;
#[cfg(feature = "tls")]
use crate::tls::ClientTls;

/// What a client adds to its [`ClientConfig`] beyond the protocol: trust
/// (TLS, feature `tls`), an allow-list for ranked entries and a credential
/// for the instances' admission policy. The default is plain TCP, no
/// allow-list and no credential, exactly [`connect`](super::connect).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Verify every instance, seed or ranked entry, against these roots and
    /// the endpoint's host name.
    #[cfg(feature = "tls")]
    pub tls: Option<ClientTls>,
    /// Ranked entries outside it are skipped.
    pub allow_list: Option<AllowList>,
    /// Carried by every session request, for the instance's admission hook
    /// (at most 4 KiB; `Debug` shows its length only).
    pub credential: Option<Credential>,
}

impl ClientOptions {
    /// Plain TCP, no allow-list.
    pub fn new() -> Self {
        ClientOptions::default()
    }

    /// Every connection over TLS, verified with `tls`.
    #[cfg(feature = "tls")]
    pub fn with_tls(mut self, tls: ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Every session request carries `credential` (a token, a signed
    /// ticket: whatever the instances' admission hook reads). Without TLS it
    /// crosses the network in clear.
    pub fn with_credential(mut self, credential: Credential) -> Self {
        self.credential = Some(credential);
        self
    }

    /// Skip ranked entries outside `list`.
    pub fn with_allow_list(mut self, list: AllowList) -> Self {
        self.allow_list = Some(list);
        self
    }

    /// Why a session request to `endpoint` must not be sent, if it must not:
    /// a ranked entry outside the allow-list (a configured seed is trusted).
    pub(crate) fn refuse_target(&self, config: &ClientConfig, endpoint: &Endpoint) -> Option<String> {
        let list = self.allow_list.as_ref()?;
        let is_seed = config
            .seeds
            .iter()
            .any(|s| s.port() == endpoint.port() && s.host().eq_ignore_ascii_case(endpoint.host()));
        if is_seed || list.allows(endpoint) {
            return None;
        }
        tracing::warn!(%endpoint, allow_list = %list, "ranked entry outside the allow-list; skipped");
        Some(format!("{} is outside the allow-list; skipped", endpoint.socket_addr_string()))
    }

    #[cfg(feature = "tls")]
    pub(crate) fn rustls(&self) -> Option<&std::sync::Arc<rustls::ClientConfig>> {
        self.tls.as_ref().map(ClientTls::rustls_config)
    }
}
