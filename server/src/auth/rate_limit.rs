//! Login attempts per client: a token bucket per address (governor's GCRA),
//! so guessing the shared secret costs time. Every attempt takes a token,
//! right or wrong: were only failures charged, a throttled client would
//! still learn when a guess was right.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Addresses tracked at most. Past this, buckets that are full again are
/// dropped; if that is not enough, new addresses share one bucket. Bounds
/// the map to about this many × ~100 bytes (≈ 1 MiB).
pub const MAX_TRACKED_CLIENTS: usize = 10_000;

/// Login throttling.
pub struct LoginLimiter {
    per_client: DefaultKeyedRateLimiter<IpAddr>,
    /// For addresses that arrive while the map is full.
    overflow: DefaultDirectRateLimiter,
    clock: DefaultClock,
}

impl LoginLimiter {
    /// `burst` attempts at once, then one more every `refill`.
    pub fn new(burst: NonZeroU32, refill: Duration) -> Self {
        let quota = Quota::with_period(refill)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        LoginLimiter {
            per_client: RateLimiter::keyed(quota),
            overflow: RateLimiter::direct(quota),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one attempt for `ip`; `Err(wait)` when it has none left.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        if self.per_client.len() >= MAX_TRACKED_CLIENTS {
            self.per_client.retain_recent();
            self.per_client.shrink_to_fit();
        }
        let result = if self.per_client.len() < MAX_TRACKED_CLIENTS {
            self.per_client.check_key(&client_key(ip))
        } else {
            // Still full: many addresses are guessing at once; they share a bucket.
            self.overflow.check()
        };
        result.map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Addresses currently tracked.
    pub fn tracked(&self) -> usize {
        self.per_client.len()
    }
}

/// The bucket an address falls in. IPv6 clients get a /64 each (what one
/// host or customer usually holds), so one machine cannot get fresh buckets
/// by rotating through its addresses.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(segments.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_nothing_until_refilled() {
        let limiter = LoginLimiter::new(NonZeroU32::new(3).unwrap(), Duration::from_secs(3600));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check(ip).is_ok());
        }
        let wait = limiter.check(ip).unwrap_err();
        assert!(
            wait > Duration::from_secs(3000) && wait <= Duration::from_secs(3600),
            "{wait:?}"
        );
        assert!(
            limiter.check("192.0.2.2".parse().unwrap()).is_ok(),
            "others keep their own bucket"
        );
    }

    #[test]
    fn ipv6_addresses_of_one_slash_64_share_a_bucket() {
        let limiter = LoginLimiter::new(NonZeroU32::MIN, Duration::from_secs(3600));
        assert!(limiter.check("2001:db8:1:2::1".parse().unwrap()).is_ok());
        assert!(
            limiter
                .check("2001:db8:1:2:ffff::9".parse().unwrap())
                .is_err()
        );
        assert!(limiter.check("2001:db8:1:3::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn the_map_stays_bounded() {
        let limiter = LoginLimiter::new(NonZeroU32::new(5).unwrap(), Duration::from_secs(3600));
        for i in 0..(MAX_TRACKED_CLIENTS as u32 + 500) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = limiter.check(ip);
        }
        assert!(
            limiter.tracked() <= MAX_TRACKED_CLIENTS,
            "{}",
            limiter.tracked()
        );
    }
}
