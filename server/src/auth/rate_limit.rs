//! Login attempts per client address, so guessing the shared secret costs
//! time: a token bucket (GCRA: one "theoretical arrival time" per address)
//! of `burst` attempts, refilled one per `refill`.
//!
//! Every attempt takes a token before the secret is checked (so parallel
//! guesses cannot all slip past an emptying bucket, and a throttled client
//! learns nothing), and a successful login gives its token back: people who
//! log in often are never throttled, guessers are. governor, the usual crate,
//! cannot give a token back, hence these few lines.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::client::client_key;

/// Addresses tracked at most. Past this, addresses whose bucket is full again
/// are forgotten; if none are, the new ones share one bucket. Bounds the map
/// to about this many × 48 bytes (< 1 MiB).
pub const MAX_TRACKED_CLIENTS: usize = 10_000;

/// The shared bucket of addresses that arrive while the map is full.
const OVERFLOW: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

/// Login throttling.
pub struct LoginLimiter {
    /// Time between tokens.
    refill: Duration,
    /// How far ahead of now an address's arrival time may run: (burst − 1) × refill.
    tolerance: Duration,
    /// Theoretical arrival time per address: when its bucket would be full again,
    /// less one token.
    buckets: Mutex<HashMap<IpAddr, Instant>>,
}

impl LoginLimiter {
    /// `burst` failed attempts at once, then one more every `refill`.
    pub fn new(burst: NonZeroU32, refill: Duration) -> Self {
        LoginLimiter {
            refill,
            tolerance: refill.saturating_mul(burst.get() - 1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for an attempt from `ip`; `Err(wait)` when none is left.
    pub fn attempt(&self, ip: IpAddr) -> Result<(), Duration> {
        self.attempt_at(ip, Instant::now())
    }

    /// Gives back the token of an attempt that succeeded.
    pub fn succeeded(&self, ip: IpAddr) {
        let mut buckets = self.lock();
        if let Some(tat) = buckets.get_mut(&client_key(ip)) {
            *tat = tat.checked_sub(self.refill).unwrap_or(*tat);
        }
    }

    fn attempt_at(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.lock();
        let mut key = client_key(ip);
        if !buckets.contains_key(&key) && buckets.len() >= MAX_TRACKED_CLIENTS {
            // Forget buckets that are full again: they hold nothing.
            buckets.retain(|_, tat| *tat > now);
            if buckets.len() >= MAX_TRACKED_CLIENTS {
                key = OVERFLOW;
            }
        }
        let tat = buckets.get(&key).copied().unwrap_or(now).max(now);
        if tat > now + self.tolerance {
            return Err(tat - self.tolerance - now);
        }
        buckets.insert(key, tat + self.refill);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Instant>> {
        // The map holds plain instants: still valid after a panic elsewhere.
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Addresses currently tracked.
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn limiter(burst: u32, refill: Duration) -> LoginLimiter {
        LoginLimiter::new(NonZeroU32::new(burst).unwrap(), refill)
    }

    #[test]
    fn a_burst_then_one_per_refill() {
        let l = limiter(3, Duration::from_secs(10));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.attempt_at(ip, t0).is_ok());
        }
        assert_eq!(l.attempt_at(ip, t0), Err(Duration::from_secs(10)));
        assert_eq!(
            l.attempt_at(ip, t0 + Duration::from_secs(4)),
            Err(Duration::from_secs(6)),
            "refused attempts take nothing"
        );
        assert!(l.attempt_at(ip, t0 + Duration::from_secs(10)).is_ok());
        assert!(l.attempt_at(ip, t0 + Duration::from_secs(10)).is_err());
        assert!(
            l.attempt_at("192.0.2.2".parse().unwrap(), t0).is_ok(),
            "others keep their own bucket"
        );
    }

    #[test]
    fn successful_logins_give_their_token_back() {
        let l = limiter(2, HOUR);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..100 {
            assert!(l.attempt(ip).is_ok());
            l.succeeded(ip);
        }
        assert!(l.attempt(ip).is_ok());
        assert!(l.attempt(ip).is_ok());
        assert!(l.attempt(ip).is_err(), "two failures empty a bucket of two");
    }

    #[test]
    fn ipv6_addresses_of_one_slash_64_share_a_bucket() {
        let l = limiter(1, HOUR);
        assert!(l.attempt("2001:db8:1:2::1".parse().unwrap()).is_ok());
        assert!(l.attempt("2001:db8:1:2:ffff::9".parse().unwrap()).is_err());
        assert!(l.attempt("2001:db8:1:3::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn the_map_stays_bounded_and_overflow_is_still_limited() {
        let l = limiter(5, HOUR);
        for i in 0..(MAX_TRACKED_CLIENTS as u32 + 500) {
            let _ = l.attempt(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)));
        }
        assert!(l.tracked() <= MAX_TRACKED_CLIENTS + 1, "{}", l.tracked());
        // The 500 late addresses shared one bucket of 5.
        let late: IpAddr = "203.0.113.9".parse().unwrap();
        assert!(l.attempt(late).is_err());
    }
}
