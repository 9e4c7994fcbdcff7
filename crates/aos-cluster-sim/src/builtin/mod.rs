//! The built-in scenarios: the situations the protocol's quality goals are
//! stated for, each a plain [`Scenario`] value (print one as TOML or JSON to
//! start a scenario of your own).

use std::time::Duration;

use aos_cluster::config::{duration, DEFAULT_ATTEMPT_DELAY};

use crate::arrivals::{ArrivalGroup, Flood, Process};
use crate::dist::{Dist, SessionLength};
use crate::scenario::{default_return_window, Fault, FaultKind, InstanceGroup, Scenario, Seed};

mod floods;
mod logins;
mod membership;

/// Every built-in scenario family name, in report order.
pub const BUILTIN: [&str; 8] =
    ["login-storm", "heterogeneous", "rejections", "dead-seeds", "crash", "join", "drain", "handshake-flood"];

/// The flood rates of the `handshake-flood` family, as multiples of the real
/// clients' arrival rate.
pub const FLOOD_FACTORS: [u32; 3] = [1, 3, 10];

/// The cluster sizes of the `scale` family: `login-storm-N`,
/// `crash-N` and `join-N` for each. Not in [`BUILTIN`] (so `simulate all` and
/// the every-built-in test stay at 8 instances); `simulate scale` runs them.
pub const SCALE_SIZES: [u32; 3] = [100, 1000, 5000];

/// The largest `N` of the sized families (`burst-N`, `login-storm-N`, ...).
pub const MAX_SIZE: u32 = 10_000;

/// Clients per instance in `burst-N`: 20, a fifth of each instance's 100.
pub const BURST_CLIENTS_PER_INSTANCE: u32 = 20;

/// Waves in `waves-N`.
pub const WAVES: u32 = 20;

/// From one wave's start to the next's in `waves-N`.
const WAVE_PERIOD: Duration = Duration::from_secs(2);

/// How long the flood of `flood-aftermath` lasts.
const FLOOD_LENGTH: Duration = Duration::from_secs(12);

/// When `flood-aftermath`'s clients start after the flood: the default
/// `reservation_ttl` (5 s) plus one default snapshot (1 s).
const AFTER_FLOOD: Duration = Duration::from_secs(6);

/// Sizes (sessions per instance, clients per instance) are divided by this
/// above 1 000 instances.
fn scale_unit(n: u32) -> u32 {
    if n > 1000 {
        5
    } else {
        1
    }
}

/// The ranked list's length in the `scale` family (`InstanceConfig::max_list_len`;
/// the default is 1 024). A client walks the list only until an instance
/// admits it: in every scale run so far no client went past its second entry
/// (attempts per session 2.00, or 3.00 after a dead first seed). A full list
/// at 1 000 instances is built, sent, de-duplicated and kept (its capacity,
/// by the `Connector`) per handshake: 4x the run time and ~48 KB per client
/// (5.9 GB for `login-storm-1000`), which 5 000 instances could not afford.
/// Clients rarely go past the first entry (attempts per session 2.00 in the
/// storms), and on `login-storm-1000`, bounded, seed 0, 16 entries gave the
/// same balance figures as 1 000.
pub const SCALE_LIST_LEN: usize = 64;

/// Clients per instance in a scaled login storm: `login-storm`'s 1 000
/// clients over 8 instances (up to 1 000 instances; see
/// [`Scenario::login_storm_scaled`] for 5 000).
pub const STORM_CLIENTS_PER_INSTANCE: u32 = 125;

/// Clients per instance in the 5 000-instance storm: 125 000 clients, as at
/// 1 000 instances, not 625 000 (see [`Scenario::login_storm_scaled`]).
pub const STORM_CLIENTS_PER_INSTANCE_5000: u32 = 25;

impl Scenario {
    /// The built-in family `name` (several variants for `dead-seeds` and
    /// `handshake-flood`), or `None`.
    pub fn builtin(name: &str) -> Option<Vec<Scenario>> {
        Some(match name {
            "login-storm" => vec![Scenario::login_storm(8, 1000)],
            "heterogeneous" => vec![Scenario::heterogeneous()],
            "rejections" => vec![Scenario::rejections()],
            "dead-seeds" => {
                let mut all = Vec::new();
                for delay in [None, Some(DEFAULT_ATTEMPT_DELAY)] {
                    for k in 0..=3 {
                        all.push(Scenario::dead_seeds(k, delay));
                    }
                }
                all
            }
            "crash" => vec![Scenario::crash()],
            "join" => vec![Scenario::join()],
            "drain" => vec![Scenario::drain()],
            "handshake-flood" => FLOOD_FACTORS.iter().map(|&f| Scenario::handshake_flood(f)).collect(),
            "flood-aftermath" => vec![Scenario::flood_aftermath()],
            "scale" => SCALE_SIZES
                .iter()
                .flat_map(|&n| [Scenario::login_storm_scaled(n), Scenario::crash_at(n), Scenario::join_at(n)])
                .collect(),
            other => return Scenario::scaled(other).map(|s| vec![s]),
        })
    }

    /// One scenario of a sized family by name: `login-storm-N`, `crash-N`,
    /// `join-N` (the `scale` family runs them at [`SCALE_SIZES`]), `burst-N`
    /// and `waves-N`, for any `N` from 1 to [`MAX_SIZE`].
    fn scaled(name: &str) -> Option<Scenario> {
        let (family, size) = name.rsplit_once('-')?;
        let n: u32 = size.parse().ok()?;
        if !(1..=MAX_SIZE).contains(&n) {
            return None;
        }
        match family {
            "login-storm" => Some(Scenario::login_storm_scaled(n)),
            "crash" => Some(Scenario::crash_at(n)),
            "join" => Some(Scenario::join_at(n)),
            "burst" => Some(Scenario::burst_at(n)),
            "waves" => Some(Scenario::waves_at(n)),
            _ => None,
        }
    }

    /// Fits the instance template to a cluster of this size: every member
    /// stays in the snapshots (`limits.max_members` raised where the default
    /// 4 096 would cut it), and, from 100 instances, replies list the
    /// [`SCALE_LIST_LEN`] best members rather than up to 1 024.
    pub fn fit_to_size(&mut self) {
        let n = self.instance_count() as usize;
        self.keep_every_member();
        if n >= 100 {
            self.instance.max_list_len = self.instance.max_list_len.min(SCALE_LIST_LEN);
        }
    }

    /// Raises `limits.max_members` where the default 4 096 would leave
    /// members out of the snapshots; nothing else changes.
    pub fn keep_every_member(&mut self) {
        let n = self.instance_count() as usize;
        self.instance.limits.max_members = self.instance.limits.max_members.max(n);
    }
}
