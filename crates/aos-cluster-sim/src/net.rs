//! The network model: per-link latency, loss and partitions.
//!
//! Three kinds of link: client <-> instance, instance <-> instance (peer
//! workload queries) and instance <-> registry. Each has its own one-way
//! latency distribution. A lost message simply never arrives (the waiting
//! party's timer fires). A partition cuts an instance off, for clients, for
//! peers or for both, during a window: either silently (a blackhole: nothing
//! arrives, the sender waits for its timeout) or by refusing (the sender learns
//! of the failure after one round trip, as with a TCP reset).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dist::{chance, Dist};
use crate::rng::Rng;
use aos_cluster::config::duration;

/// Latencies, loss and partitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Network {
    /// One-way latency between a client and an instance.
    pub client_latency: Dist,
    /// One-way latency between two instances.
    pub peer_latency: Dist,
    /// One-way latency between an instance and the registry (the database).
    pub registry_latency: Dist,
    /// Probability that one client or peer message is lost.
    pub loss: f64,
    /// Windows during which instances are cut off.
    pub partitions: Vec<Partition>,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            client_latency: Dist::uniform_ms(5, 15),
            peer_latency: Dist::Uniform { min: Duration::from_micros(200), max: Duration::from_micros(600) },
            registry_latency: Dist::uniform_ms(1, 3),
            loss: 0.0,
            partitions: Vec::new(),
        }
    }
}

/// Which traffic of an instance a partition cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Client traffic only.
    Clients,
    /// Peer traffic only.
    Peers,
    /// Everything but the registry.
    #[default]
    All,
}

/// How a cut link behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Cut {
    /// Nothing arrives and nothing says so: the sender times out.
    #[default]
    Blackhole,
    /// The sender learns of the failure after one round trip.
    Refuse,
}

/// Instances cut off during `[from, until)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// Start of the window.
    #[serde(with = "duration", default)]
    pub from: Duration,
    /// End of the window (exclusive).
    #[serde(with = "duration")]
    pub until: Duration,
    /// Indices of the instances cut off.
    pub instances: Vec<u32>,
    /// Which of their traffic is cut.
    #[serde(default)]
    pub side: Side,
    /// Silent or refusing.
    #[serde(default)]
    pub cut: Cut,
}

/// A message's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Between a client and instance `i`, either way.
    Client(u32),
    /// Between instances `from` and `to`.
    Peer(u32, u32),
    /// Between instance `i` and the registry.
    Registry(u32),
}

/// What happens to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// It arrives after this delay.
    Arrive(Duration),
    /// It never arrives.
    Lost,
    /// The sender learns it failed after this delay.
    Refused(Duration),
}

impl Network {
    /// The fate of a message sent at `now` on `link`.
    pub fn fate(&self, now: Duration, link: Link, rng: &mut Rng) -> Fate {
        let (latency, ends, side) = match link {
            Link::Client(i) => (&self.client_latency, [Some(i), None], Side::Clients),
            Link::Peer(a, b) => (&self.peer_latency, [Some(a), Some(b)], Side::Peers),
            Link::Registry(_) => return Fate::Arrive(self.registry_latency.sample(rng)),
        };
        let cut = self.partitions.iter().find(|p| {
            p.from <= now
                && now < p.until
                && (p.side == Side::All || p.side == side)
                && ends.iter().flatten().any(|i| p.instances.contains(i))
        });
        match cut {
            Some(p) if p.cut == Cut::Blackhole => Fate::Lost,
            Some(_) => Fate::Refused(latency.sample(rng) + latency.sample(rng)),
            None if chance(rng, self.loss) => Fate::Lost,
            None => Fate::Arrive(latency.sample(rng)),
        }
    }

    /// The slowest possible round trip between a client and an instance.
    pub fn client_rtt_max(&self) -> Duration {
        self.client_latency.max() * 2
    }

    /// Checks distributions and probabilities.
    pub fn validate(&self) -> Result<(), String> {
        self.client_latency.validate("client_latency")?;
        self.peer_latency.validate("peer_latency")?;
        self.registry_latency.validate("registry_latency")?;
        if !(0.0..=1.0).contains(&self.loss) {
            return Err(format!("loss must be within 0..=1, got {}", self.loss));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_cut_only_their_window_side_and_instances() {
        let net = Network {
            partitions: vec![
                Partition {
                    from: Duration::from_secs(1),
                    until: Duration::from_secs(2),
                    instances: vec![3],
                    side: Side::Clients,
                    cut: Cut::Blackhole,
                },
                Partition {
                    from: Duration::ZERO,
                    until: Duration::from_secs(9),
                    instances: vec![4],
                    side: Side::All,
                    cut: Cut::Refuse,
                },
            ],
            ..Network::default()
        };
        let mut rng = Rng::new(1);
        let s = Duration::from_millis;
        assert_eq!(net.fate(s(1500), Link::Client(3), &mut rng), Fate::Lost);
        assert!(matches!(net.fate(s(2000), Link::Client(3), &mut rng), Fate::Arrive(_)));
        assert!(matches!(net.fate(s(1500), Link::Peer(3, 1), &mut rng), Fate::Arrive(_)));
        assert!(matches!(net.fate(s(10), Link::Peer(1, 4), &mut rng), Fate::Refused(_)));
        assert!(matches!(net.fate(s(10), Link::Registry(4), &mut rng), Fate::Arrive(_)));
    }

    #[test]
    fn loss_drops_about_its_share() {
        let net = Network { loss: 0.1, ..Network::default() };
        let mut rng = Rng::new(5);
        let lost =
            (0..10_000).filter(|_| net.fate(Duration::ZERO, Link::Client(0), &mut rng) == Fate::Lost).count();
        assert!((850..1150).contains(&lost), "{lost}");
    }
}
