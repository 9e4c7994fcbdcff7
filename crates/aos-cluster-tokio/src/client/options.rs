use aos_cluster::wire::Credential;
use aos_cluster::{ClientConfig, Endpoint};

use super::AllowList;
#[cfg(feature = "tls")]
use crate::tls::ClientTls;

/// What a client adds to its [`ClientConfig`] beyond the protocol: trust
/// (TLS, feature `tls`), an allow-list for ranked entries and a credential
/// for the instances' admission policy, and seeded randomness. The default is
/// plain TCP, no allow-list, no credential and fresh randomness for every
/// connect.
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
    /// Seeds the salts, shuffles and jitter of every connect: the same seed
    /// and the same answers give the same attempts (tests, simulations).
    /// `None`: fresh randomness from the operating system each time.
    pub rng_seed: Option<u64>,
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

    /// Seeded randomness: a client's first connect uses `seed` itself, each
    /// later one the next value of a sequence fixed by `seed`.
    pub fn with_rng_seed(mut self, seed: u64) -> Self {
        self.rng_seed = Some(seed);
        self
    }

    /// The seed of a client's `n`-th connect (from 0).
    pub(crate) fn seed_for(&self, n: u64) -> u64 {
        match self.rng_seed {
            // SplitMix64's increment: distinct, well-spread seeds per connect.
            Some(seed) => seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            None => random_seed(),
        }
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
        let is_seed = config.seeds.iter().any(|seed| seed.same_target(endpoint));
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

/// A seed for the Connector's salts, shuffles and jitter: std's per-process
/// random hasher keys over the clock.
fn random_seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(crate::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_is_trusted_under_any_spelling_of_its_target() {
        let seeds = vec!["[::1]:2712".parse().unwrap(), "AOS1.example.com:2712".parse().unwrap()];
        let config = ClientConfig::with_seeds(seeds);
        let options = ClientOptions::new().with_allow_list(AllowList::parse(["10.0.0.0/8"]).unwrap());
        for trusted in ["[0:0::1]:2712", "[::1]:2712", "aos1.EXAMPLE.com:2712", "AOS01@aos1.example.com:2712"]
        {
            let endpoint: Endpoint = trusted.parse().unwrap();
            assert_eq!(options.refuse_target(&config, &endpoint), None, "{trusted}");
        }
        for refused in ["[::2]:2712", "[::1]:2713", "aos2.example.com:2712"] {
            let endpoint: Endpoint = refused.parse().unwrap();
            let reason = options.refuse_target(&config, &endpoint).expect(refused);
            assert!(reason.ends_with("is outside the allow-list; skipped"), "{reason}");
        }
        let allowed: Endpoint = "10.1.2.3:2712".parse().unwrap();
        assert_eq!(options.refuse_target(&config, &allowed), None);
    }
}
