//! Flags that bound what clients can cost: the memory budget, connection
//! timeouts, counts and body rate, login attempts. Defaults suit a small VM
//! serving a handful of people.

use std::num::NonZeroU32;
use std::time::Duration;

use crate::budget;
use crate::serve::{BodyRate, ConnectionLimits};

#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Time a client has to send a request's headers; also how long an idle
    /// keep-alive connection stays open.
    #[arg(long, env = "PS_HEADER_TIMEOUT", value_parser = parse_nonzero_duration, default_value = "30s")]
    pub header_timeout: Duration,
    /// A connection on which no byte moves either way for this long is
    /// closed (a stalled upload is removed).
    #[arg(long, env = "PS_IDLE_TIMEOUT", value_parser = parse_nonzero_duration, default_value = "60s")]
    pub idle_timeout: Duration,
    /// Connections open at once; further ones wait to be accepted.
    #[arg(long, env = "PS_MAX_CONNECTIONS", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub max_connections: u32,
    /// Connections one client address (an IPv6 /64) may have open at once;
    /// behind a proxy, requests in flight per forwarded address.
    #[arg(long, env = "PS_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub max_connections_per_client: u32,
    /// A request body that sends less than this many bytes per second,
    /// measured over `--body-rate-window`, is cut (its upload removed).
    #[arg(long, env = "PS_MIN_BODY_RATE", default_value_t = 500)]
    pub min_body_rate: u32,
    /// The window of `--min-body-rate`.
    #[arg(long, env = "PS_BODY_RATE_WINDOW", value_parser = parse_nonzero_duration, default_value = "20s")]
    pub body_rate_window: Duration,
    /// Bytes all requests' buffers may hold together (uploads, downloads,
    /// small bodies); past it requests wait, then get 503. E.g. 48MiB.
    #[arg(long, env = "PS_MEMORY_BUDGET", value_parser = parse_budget, default_value = "48MiB")]
    pub memory_budget: u64,
    /// How long a request waits for room in the memory budget before 503.
    #[arg(long, env = "PS_BUDGET_WAIT", value_parser = humantime::parse_duration, default_value = "5s")]
    pub budget_wait: Duration,
    /// Login attempts a client address may make at once...
    #[arg(long, env = "PS_LOGIN_BURST", default_value = "10")]
    pub login_burst: NonZeroU32,
    /// ...after which it gets one more per this period (429 meanwhile).
    #[arg(long, env = "PS_LOGIN_REFILL", value_parser = parse_nonzero_duration, default_value = "6s")]
    pub login_refill: Duration,
}

fn parse_nonzero_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be more than zero".into()),
        Err(e) => Err(format!("{e} (e.g. 30s, 2m)")),
    }
}

/// `48MiB`, `512KiB`, `1GiB` or plain bytes; at least [`budget::MIN_BUDGET_BYTES`].
fn parse_budget(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "kib" | "k" => 10,
        "mib" | "m" => 20,
        "gib" | "g" => 30,
        other => return Err(format!("unknown unit {other:?} (use KiB, MiB or GiB)")),
    };
    let bytes = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("expected a size such as 48MiB, got {s:?}"))?;
    if bytes < budget::MIN_BUDGET_BYTES {
        return Err(format!(
            "the memory budget must be at least {} KiB",
            budget::MIN_BUDGET_BYTES >> 10
        ));
    }
    Ok(bytes)
}

/// The limits, resolved. `Default` is the flags' defaults (for embedding
/// the server in tests); a unit test keeps the two equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub connections: ConnectionLimits,
    pub memory_budget: u64,
    pub budget_wait: Duration,
    pub login_burst: NonZeroU32,
    pub login_refill: Duration,
}

impl From<&LimitArgs> for Limits {
    fn from(a: &LimitArgs) -> Self {
        Limits {
            connections: ConnectionLimits {
                header_timeout: a.header_timeout,
                idle_timeout: a.idle_timeout,
                max_connections: a.max_connections as usize,
                max_per_client: a.max_connections_per_client as usize,
                body_rate: BodyRate {
                    min_bytes_per_sec: u64::from(a.min_body_rate),
                    window: a.body_rate_window,
                },
            },
            memory_budget: a.memory_budget,
            budget_wait: a.budget_wait,
            login_burst: a.login_burst,
            login_refill: a.login_refill,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: ConnectionLimits {
                header_timeout: Duration::from_secs(30),
                idle_timeout: Duration::from_secs(60),
                max_connections: 256,
                max_per_client: 32,
                body_rate: BodyRate {
                    min_bytes_per_sec: 500,
                    window: Duration::from_secs(20),
                },
            },
            memory_budget: budget::DEFAULT_BUDGET_BYTES,
            budget_wait: budget::DEFAULT_WAIT,
            login_burst: NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN),
            login_refill: Duration::from_secs(6),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        limits: LimitArgs,
    }

    #[test]
    fn default_is_the_flags_defaults() {
        let flags = Flags::try_parse_from(["share-server"]).unwrap();
        assert_eq!(Limits::from(&flags.limits), Limits::default());
        assert!(Flags::try_parse_from(["s", "--header-timeout", "0s"]).is_err());
        assert!(Flags::try_parse_from(["s", "--max-connections", "0"]).is_err());
        assert!(Flags::try_parse_from(["s", "--login-burst", "0"]).is_err());
        assert!(Flags::try_parse_from(["s", "--memory-budget", "1KiB"]).is_err());
        assert!(Flags::try_parse_from(["s", "--memory-budget", "3 apples"]).is_err());
        let flags = Flags::try_parse_from(["s", "--memory-budget", "96MiB"]).unwrap();
        assert_eq!(flags.limits.memory_budget, 96 << 20);
    }
}
