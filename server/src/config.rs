//! Command-line flags and environment, resolved into a [`ServerConfig`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Chunk sizes below this make per-row overhead dominate; above this one
/// chunk is a noticeable share of a 256 MB machine per in-flight upload.
pub const CHUNK_SIZE_RANGE: std::ops::RangeInclusive<u64> = 4096..=(16 << 20);
/// The reference server's chunk size (the story's 327,680 bytes).
pub const DEFAULT_CHUNK_SIZE: u64 = 327_680;

/// Room for the WAL pages of removing a failed upload on a full disk:
/// deleting 64 chunks per transaction writes a few pages, so 8 MiB covers
/// the clean-up of uploads of many GB.
pub const DEFAULT_DISK_RESERVE: u64 = 8 << 20;

/// The shortest shared secret accepted, in characters: it is all that stands
/// between the Internet and the files (logins are rate-limited, but a short
/// secret still falls to patient guessing).
pub const MIN_SECRET_CHARS: usize = 12;

/// share-server: a self-hosted file-share server that stores files as chunks
/// in SQLite and keeps memory flat in file size.
#[derive(Debug, Parser)]
#[command(version = crate::allocator::VERSION_LINE, about)]
pub struct Cli {
    /// SQLite database file (its directory is created).
    #[arg(long, env = "PS_DB", default_value = "data/store.db")]
    pub db: PathBuf,
    /// TCP port (0 picks a free one; the bound address is printed).
    #[arg(long, env = "PORT", default_value_t = 4001)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "PS_LISTEN", default_value = "0.0.0.0")]
    pub listen: IpAddr,
    /// The shared secret for logging in. Prefer the environment variable or
    /// PS_SHARED_SECRET_FILE: a flag is visible in the process list.
    #[arg(long, env = "PS_SHARED_SECRET", hide_env_values = true)]
    pub shared_secret: Option<String>,
    /// File holding the shared secret (trailing newline ignored).
    #[arg(long, env = "PS_SHARED_SECRET_FILE")]
    pub shared_secret_file: Option<PathBuf>,
    /// Trust X-Forwarded-For from a reverse proxy for client IPs, and mark
    /// cookies Secure (the proxy terminates TLS).
    #[arg(long, env = "PS_BEHIND_PROXY")]
    pub behind_proxy: bool,
    /// How often expired entries and leftovers are collected (e.g. 7h, 30m, 10s).
    #[arg(long, env = "PS_GC_INTERVAL", value_parser = humantime::parse_duration, default_value = "7h")]
    pub gc_interval: Duration,
    /// VACUUM after each collection. Off by default: a VACUUM writes the whole
    /// database to the WAL first (the story's 310 MB WAL growth).
    #[arg(long, env = "PS_VACUUM")]
    pub vacuum: bool,
    /// Bytes per stored chunk (applies to new uploads).
    #[arg(long, env = "PS_CHUNK_SIZE", default_value_t = DEFAULT_CHUNK_SIZE,
          value_parser = clap::value_parser!(u64).range(*CHUNK_SIZE_RANGE.start()..=*CHUNK_SIZE_RANGE.end()))]
    pub chunk_size: u64,
    /// Bytes kept free in a reserve file beside the database (`<db>.reserve`),
    /// released on a full disk so failed uploads can still be removed. 0 disables.
    #[arg(long, env = "PS_DISK_RESERVE", default_value_t = DEFAULT_DISK_RESERVE)]
    pub disk_reserve: u64,
    /// Address of the debug listener (`/debug/stats`, `/metrics`,
    /// `/debug/pprof/heap`), or `off`. Loopback by default so it is never
    /// public by accident (Go's pprof convention).
    #[arg(long, env = "PS_DEBUG_LISTEN", default_value = "127.0.0.1:6060", value_parser = parse_debug_listen)]
    pub debug_listen: DebugListen,
    /// A host name the debug listener answers to besides 127.0.0.1,
    /// localhost, [::1] and IP addresses (repeat the flag, or separate names
    /// with commas in the variable). Other `Host` headers are refused, so a
    /// web page cannot reach the listener by DNS rebinding.
    #[arg(
        long = "debug-allowed-host",
        env = "PS_DEBUG_ALLOWED_HOSTS",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub debug_allowed_hosts: Vec<String>,
    /// Where dhat-heap builds write their profile on graceful shutdown.
    #[cfg(feature = "dhat-heap")]
    #[arg(long, env = "PS_DHAT_FILE", default_value = "dhat-heap.json")]
    pub dhat_file: PathBuf,
    /// On SIGTERM/SIGINT, how long in-flight requests may finish before they are aborted.
    #[arg(long, env = "PS_SHUTDOWN_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10s")]
    pub shutdown_timeout: Duration,
    /// Shortest expiration accepted (1h: a shorter one is almost surely a
    /// mistake). Soak tests lower it to compress a day of expirations.
    #[arg(long, env = "PS_MIN_EXPIRATION", value_parser = humantime::parse_duration, default_value = "1h")]
    pub min_expiration: Duration,
    #[command(flatten)]
    pub limits: crate::limits::LimitArgs,
    /// Bring back one of the story's memory bugs, for the gate's fixtures.
    /// Only in builds with the `regressions` feature; never in production.
    #[cfg(feature = "regressions")]
    #[arg(long, env = "PS_REGRESSION", value_parser = crate::regressions::RegressionParser)]
    pub regression: Option<crate::regressions::Regression>,
}

/// `--debug-listen`: an address, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebugListen(pub Option<SocketAddr>);

fn parse_debug_listen(s: &str) -> Result<DebugListen, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(DebugListen(None));
    }
    s.parse()
        .map(|a| DebugListen(Some(a)))
        .map_err(|_| format!("expected ADDR:PORT (e.g. 127.0.0.1:6060) or `off`, got {s:?}"))
}

/// Everything the server needs, resolved.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub db: PathBuf,
    pub shared_secret: String,
    pub behind_proxy: bool,
    pub gc_interval: Duration,
    pub vacuum: bool,
    pub chunk_size: u64,
    pub disk_reserve: u64,
    pub shutdown_timeout: Duration,
    pub min_expiration: Duration,
    pub limits: crate::limits::Limits,
    /// Host names the debug listener answers to beyond loopback and IPs.
    pub debug_allowed_hosts: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no shared secret: set PS_SHARED_SECRET, or PS_SHARED_SECRET_FILE to a file holding it; \
         users log in with it"
    )]
    NoSecret,
    #[error("the shared secret is empty")]
    EmptySecret,
    #[error(
        "the shared secret is {chars} characters long; it must be at least {MIN_SECRET_CHARS}: \
         set PS_SHARED_SECRET (or PS_SHARED_SECRET_FILE, or --shared-secret) to a longer one"
    )]
    ShortSecret { chars: usize },
    #[error("reading the shared secret from {path}: {source}")]
    SecretFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--gc-interval must be more than zero")]
    ZeroGcInterval,
}

impl Cli {
    pub fn server_config(&self) -> Result<ServerConfig, ConfigError> {
        let secret = match (&self.shared_secret, &self.shared_secret_file) {
            (Some(s), _) => s.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|source| ConfigError::SecretFile {
                    path: path.clone(),
                    source,
                })?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
            (None, None) => return Err(ConfigError::NoSecret),
        };
        if secret.is_empty() {
            return Err(ConfigError::EmptySecret);
        }
        let chars = secret.chars().count();
        if chars < MIN_SECRET_CHARS {
            return Err(ConfigError::ShortSecret { chars });
        }
        if self.gc_interval.is_zero() {
            return Err(ConfigError::ZeroGcInterval);
        }
        Ok(ServerConfig {
            db: self.db.clone(),
            shared_secret: secret,
            behind_proxy: self.behind_proxy,
            gc_interval: self.gc_interval,
            vacuum: self.vacuum,
            chunk_size: self.chunk_size,
            disk_reserve: self.disk_reserve,
            shutdown_timeout: self.shutdown_timeout,
            min_expiration: self.min_expiration,
            limits: (&self.limits).into(),
            debug_allowed_hosts: self.debug_allowed_hosts.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("share-server").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn secret_from_file_without_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "hunter2-hunter2\n").unwrap();
        let cli = parse(&["--shared-secret-file", path.to_str().unwrap()]);
        assert_eq!(
            cli.server_config().unwrap().shared_secret,
            "hunter2-hunter2"
        );
    }

    #[test]
    fn refuses_to_start_without_a_secret() {
        let mut cli = parse(&[]);
        cli.shared_secret = None; // whatever the test's environment holds
        cli.shared_secret_file = None;
        assert!(matches!(cli.server_config(), Err(ConfigError::NoSecret)));
        let cli = parse(&["--shared-secret", ""]);
        assert!(matches!(cli.server_config(), Err(ConfigError::EmptySecret)));
    }

    #[test]
    fn refuses_a_short_secret_and_says_how_long() {
        let cli = parse(&["--shared-secret", "éléphant-01"]); // 11 characters, 13 bytes
        let e = cli.server_config().unwrap_err();
        assert!(matches!(e, ConfigError::ShortSecret { chars: 11 }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("at least 12") && msg.contains("PS_SHARED_SECRET"),
            "{msg}"
        );
        assert!(
            parse(&["--shared-secret", "éléphant-012"])
                .server_config()
                .is_ok()
        );
    }

    #[test]
    fn defaults_and_bounds() {
        let cli = parse(&["--shared-secret", "x"]);
        assert_eq!(cli.port, 4001);
        assert!(cli.debug_allowed_hosts.is_empty());
        assert_eq!(
            parse(&[
                "--debug-allowed-host",
                "a.internal",
                "--debug-allowed-host",
                "b"
            ])
            .debug_allowed_hosts,
            ["a.internal", "b"]
        );
        assert_eq!(cli.chunk_size, DEFAULT_CHUNK_SIZE);
        assert_eq!(cli.gc_interval, Duration::from_secs(7 * 3600));
        assert!(!cli.vacuum);
        assert_eq!(
            cli.debug_listen,
            DebugListen(Some("127.0.0.1:6060".parse().unwrap()))
        );
        assert_eq!(
            parse(&["--debug-listen", "off"]).debug_listen,
            DebugListen(None)
        );
        assert!(Cli::try_parse_from(["s", "--debug-listen", "6060"]).is_err());
        assert!(Cli::try_parse_from(["s", "--chunk-size", "10"]).is_err());
        assert!(
            parse(&[
                "--shared-secret",
                "long-enough-secret",
                "--gc-interval",
                "0s"
            ])
            .server_config()
            .is_err()
        );
    }
}
