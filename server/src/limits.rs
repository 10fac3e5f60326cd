//! Flags that bound what clients can cost: connection timeouts and count,
//! login attempts. Defaults suit a small VM serving a handful of people.

use std::num::NonZeroU32;
use std::time::Duration;

use crate::serve::ConnectionLimits;

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

/// The limits, resolved. `Default` is the flags' defaults (for embedding
/// the server in tests); a unit test keeps the two equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub connections: ConnectionLimits,
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
            },
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
            },
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
    }
}
