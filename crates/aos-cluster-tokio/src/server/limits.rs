//! Connection accounting: the global and per-IP caps, saturation, and the
//! driver's counters.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use aos_cluster::wire::RejectReason;
use tokio::sync::watch;
use tokio::time::Instant;

/// The driver's own figures, updated by every task without a lock.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub refused_at_cap: AtomicU64,
    pub refused_per_ip: AtomicU64,
    pub closed_first_frame_timeout: AtomicU64,
    pub closed_idle_timeout: AtomicU64,
    pub closed_write_timeout: AtomicU64,
    pub malformed_frames: AtomicU64,
    pub accept_errors: AtomicU64,
    pub sessions_handed_over: AtomicU64,
    pub sessions_dropped_queue_full: AtomicU64,
    pub peer_dials: AtomicU64,
    pub peer_links_replaced: AtomicU64,
    pub heartbeat_failures: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    pub peer_queries_refused: AtomicU64,
    pub refused_sessions_per_ip: AtomicU64,
    pub refused_by_hook: AtomicU64,
    pub admission_hook_timeouts: AtomicU64,
    pub registration_lost: AtomicBool,
    /// Session requests refused, by reason (the reply's `RejectReason`).
    pub sessions_rejected: Mutex<BTreeMap<String, u64>>,
    /// Registry calls that failed, by operation and kind.
    pub registry_errors: Mutex<BTreeMap<String, BTreeMap<String, u64>>>,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Counts a session refused for `reason`, under its name in snake case
    /// (`Full` is `full`): a reason added to the protocol is counted under
    /// its own name with no change here.
    pub fn session_rejected(&self, reason: RejectReason) {
        let mut map = self.sessions_rejected.lock().unwrap_or_else(PoisonError::into_inner);
        *map.entry(snake_case(&format!("{reason:?}"))).or_default() += 1;
    }

    /// Counts a registry call of `operation` (`heartbeat`, `snapshot`,
    /// `remove`) that failed with `kind` ([`RegistryError::kind`], or `timeout`).
    pub fn registry_error(&self, operation: &str, kind: &str) {
        let mut map = self.registry_errors.lock().unwrap_or_else(PoisonError::into_inner);
        *map.entry(operation.to_owned()).or_default().entry(kind.to_owned()).or_default() += 1;
    }

    pub fn sessions_rejected(&self) -> BTreeMap<String, u64> {
        self.sessions_rejected.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn registry_errors(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        self.registry_errors.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// `AlreadyInSession` as `already_in_session`.
pub(crate) fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Why a new connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    AtCap,
    PerIp,
}

#[derive(Debug, Default)]
struct State {
    open: usize,
    per_ip: HashMap<IpAddr, usize>,
    /// Sessions (admitted, or about to be offered to the machine) per
    /// address; kept only with `max_sessions_per_ip`.
    sessions_per_ip: HashMap<IpAddr, usize>,
    at_cap: bool,
    accept_failing: bool,
}

/// Counts open connections and says when the instance is saturated: at the
/// connection cap, or unable to accept (out of descriptors). Saturation is
/// published on a watch the actor turns into `set_saturated`.
#[derive(Debug)]
pub(super) struct Limiter {
    max: usize,
    max_per_ip: usize,
    max_sessions_per_ip: Option<usize>,
    /// Saturation ends once `open` is at most this: a little hysteresis, so a
    /// cluster at its limit does not flip the advertisement on every close.
    low_water: usize,
    state: Mutex<State>,
    saturated: watch::Sender<bool>,
}

impl Limiter {
    pub fn new(max: usize, max_per_ip: usize, max_sessions_per_ip: Option<usize>) -> Self {
        let low_water = max - (max / 20).max(1);
        Limiter {
            max,
            max_per_ip,
            max_sessions_per_ip,
            low_water,
            state: Mutex::new(State::default()),
            saturated: watch::Sender::new(false),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.saturated.subscribe()
    }

    pub fn open(&self) -> usize {
        self.lock().open
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the counts torn (each
        // update is a few integer writes), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection from `ip`, or why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnSlot, Refusal> {
        let mut state = self.lock();
        if state.open >= self.max {
            state.at_cap = true;
            self.publish(&state);
            return Err(Refusal::AtCap);
        }
        let from_ip = state.per_ip.entry(ip).or_insert(0);
        if *from_ip >= self.max_per_ip {
            return Err(Refusal::PerIp);
        }
        *from_ip += 1;
        state.open += 1;
        if state.open >= self.max {
            state.at_cap = true;
            self.publish(&state);
        }
        Ok(ConnSlot { limiter: self.clone(), ip, session: false })
    }

    /// Whether `ip` is below `max_sessions_per_ip` (always, without one).
    pub fn session_room(&self, ip: IpAddr) -> bool {
        let Some(max) = self.max_sessions_per_ip else { return true };
        self.lock().sessions_per_ip.get(&ip).copied().unwrap_or(0) < max
    }

    /// Sessions held by `ip` now (0 without `max_sessions_per_ip`).
    #[cfg(test)]
    pub fn sessions_from(&self, ip: IpAddr) -> usize {
        self.lock().sessions_per_ip.get(&ip).copied().unwrap_or(0)
    }

    /// Takes a session place for `ip` if it is below its cap: the check and
    /// the count in one step, so parallel requests cannot pass together.
    fn take_session(&self, ip: IpAddr) -> bool {
        let Some(max) = self.max_sessions_per_ip else { return true };
        let mut state = self.lock();
        let held = state.sessions_per_ip.entry(ip).or_insert(0);
        if *held >= max {
            if *held == 0 {
                state.sessions_per_ip.remove(&ip);
            }
            return false;
        }
        *held += 1;
        true
    }

    fn give_back_session(&self, ip: IpAddr) {
        if self.max_sessions_per_ip.is_none() {
            return;
        }
        let mut state = self.lock();
        if let Some(n) = state.sessions_per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                state.sessions_per_ip.remove(&ip);
            }
        }
    }

    fn release(&self, ip: IpAddr) {
        let mut state = self.lock();
        state.open = state.open.saturating_sub(1);
        if let Some(n) = state.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                state.per_ip.remove(&ip);
            }
        }
        if state.at_cap && state.open <= self.low_water {
            state.at_cap = false;
            self.publish(&state);
        }
    }

    pub fn set_accept_failing(&self, failing: bool) {
        let mut state = self.lock();
        if state.accept_failing != failing {
            state.accept_failing = failing;
            self.publish(&state);
        }
    }

    fn publish(&self, state: &State) {
        let saturated = state.at_cap || state.accept_failing;
        self.saturated.send_if_modified(|s| std::mem::replace(s, saturated) != saturated);
    }
}

/// One open connection's place under the caps; freed on drop, wherever the
/// connection ends (protocol task or the application's stream).
#[derive(Debug)]
pub(super) struct ConnSlot {
    limiter: Arc<Limiter>,
    ip: IpAddr,
    /// Holds one of its address's session places (`max_sessions_per_ip`).
    session: bool,
}

impl ConnSlot {
    /// Takes a session place for this connection's address, if the address
    /// is below `max_sessions_per_ip`; held until
    /// [`give_back_session`](Self::give_back_session) or the drop. `true`
    /// when held (always without a cap).
    pub fn take_session(&mut self) -> bool {
        if !self.session {
            self.session = self.limiter.take_session(self.ip);
        }
        self.session
    }

    /// The machine did not open the session: the place goes back.
    pub fn give_back_session(&mut self) {
        if std::mem::take(&mut self.session) {
            self.limiter.give_back_session(self.ip);
        }
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.give_back_session();
        self.limiter.release(self.ip);
    }
}

/// At most one warning per `every`, saying how many were held back.
#[derive(Debug)]
pub(super) struct RateLimitedWarning {
    every: Duration,
    last: Option<Instant>,
    held_back: u64,
}

impl RateLimitedWarning {
    pub fn new(every: Duration) -> Self {
        RateLimitedWarning { every, last: None, held_back: 0 }
    }

    /// `Some(count)` (this occurrence plus those held back) when it is time
    /// to warn again.
    pub fn hit(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now.duration_since(last) < self.every) {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back) + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_reasons_are_counted_under_their_snake_case_names() {
        let counters = Counters::default();
        counters.session_rejected(RejectReason::Full);
        counters.session_rejected(RejectReason::AlreadyInSession);
        counters.session_rejected(RejectReason::Full);
        let expected = BTreeMap::from([("already_in_session".to_owned(), 1), ("full".to_owned(), 2)]);
        assert_eq!(counters.sessions_rejected(), expected);
    }

    #[test]
    fn caps_refuse_and_saturation_clears_below_the_limit() {
        let limiter = Arc::new(Limiter::new(3, 2, None));
        let rx = limiter.subscribe();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let s1 = limiter.admit(a).unwrap();
        let _s2 = limiter.admit(a).unwrap();
        assert_eq!(limiter.admit(a).unwrap_err(), Refusal::PerIp);
        assert!(!*rx.borrow());
        let _s3 = limiter.admit(b).unwrap();
        assert!(*rx.borrow(), "the third connection reaches the cap");
        assert_eq!(limiter.admit(b).unwrap_err(), Refusal::AtCap);
        drop(s1);
        assert!(!*rx.borrow(), "one below the cap is not saturated");
        assert_eq!(limiter.open(), 2);
        assert!(limiter.admit(a).is_ok());
    }

    #[test]
    fn session_places_per_address_are_capped_and_given_back() {
        let limiter = Arc::new(Limiter::new(100, 100, Some(2)));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let mut slots: Vec<ConnSlot> = (0..4).map(|_| limiter.admit(a).unwrap()).collect();
        assert!(slots[0].take_session() && slots[1].take_session());
        assert!(slots[0].take_session(), "taking twice holds one place");
        assert!(!limiter.session_room(a));
        assert!(!slots[2].take_session(), "a third session from one address");
        let mut other = limiter.admit(b).unwrap();
        assert!(other.take_session(), "another address has its own places");
        slots[1].give_back_session();
        assert_eq!(limiter.sessions_from(a), 1);
        assert!(slots[2].take_session());
        drop(slots.remove(0));
        assert_eq!(limiter.sessions_from(a), 1, "a dropped slot gives its place back");
        drop(slots);
        assert_eq!(limiter.sessions_from(a), 0);
        assert!(limiter.lock().sessions_per_ip.keys().all(|ip| *ip == b), "no entry left for a");
        // Without a cap nothing is counted.
        let open = Arc::new(Limiter::new(10, 10, None));
        let mut slot = open.admit(a).unwrap();
        assert!(slot.take_session() && open.session_room(a));
        assert_eq!(open.sessions_from(a), 0);
    }

    #[test]
    fn accept_failures_saturate_until_cleared() {
        let limiter = Arc::new(Limiter::new(10, 10, None));
        let rx = limiter.subscribe();
        limiter.set_accept_failing(true);
        assert!(*rx.borrow());
        limiter.set_accept_failing(false);
        assert!(!*rx.borrow());
    }
}
