//! What a run does: the `Config` the CLI and the rig's TOML scenario files both fill, its
//! defaults, and the checks that refuse a run that could never finish or could not work.
//! The command line's flags are derived from `Config` itself (clap), so the two cannot drift.

mod scenario;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use scenario::{MixedWeights, ParseScenarioError, Scenario};

use crate::hostile::Sources;
use crate::size::ByteSize;
use crate::summary::UploadRecord;

/// One run of the load generator. Every field has a default (see `Default`), so a TOML table
/// names only what it changes; unknown keys are refused so a typo cannot silently do nothing.
/// Each field is also a flag of the `loadgen` command, with the same default.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Config {
    /// The server's base URL, e.g. `http://127.0.0.1:4001`.
    #[arg(long, default_value_t = Config::default().host)]
    pub host: String,
    /// The server's shared secret (for `POST /api/auth`).
    #[arg(long, env = "PS_SHARED_SECRET", hide_env_values = true)]
    pub secret: String,
    /// A polite scenario or an attack, see below.
    #[arg(long, default_value_t = Config::default().scenario)]
    pub scenario: Scenario,
    /// Concurrent goose users.
    #[arg(short, long, default_value_t = Config::default().users)]
    pub users: usize,
    /// Iterations of the scenario per user [default: 1, or no limit with a run time]. With a
    /// run time as well, the run time is a deadline after which users stop once their current
    /// request ends.
    #[arg(long)]
    pub iterations: Option<usize>,
    /// How long users keep running once all have started (goose's `--run-time`), e.g. `30s`.
    #[serde(with = "humantime_serde")]
    #[arg(short = 't', long, value_parser = humantime::parse_duration)]
    pub run_time: Option<Duration>,
    /// Users started per second (goose's `--increase-rate`).
    #[arg(short = 'r', long, default_value_t = Config::default().increase_rate)]
    pub increase_rate: f64,
    /// Bytes per upload (ignored with a file).
    #[arg(long, default_value_t = Config::default().size)]
    pub size: ByteSize,
    /// Upload this file, streamed from disk, instead of generated content.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Base seed: content and range choices are derived from it, the user and the iteration.
    #[arg(long, default_value_t = Config::default().seed)]
    pub seed: u64,
    /// Per-request timeout, whole body included (the default fits 618 MB at 2 MB/s). It is
    /// what bounds a run against a server that stops answering.
    #[serde(with = "humantime_serde")]
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    pub timeout: Duration,
    /// Bytes per second of `slow-upload`.
    #[arg(long, default_value_t = Config::default().slow_rate)]
    pub slow_rate: ByteSize,
    /// Fraction of the body after which `abort-upload` disconnects, in (0, 1).
    #[arg(long, default_value_t = Config::default().abort_fraction)]
    pub abort_fraction: f64,
    /// Random Range requests after each whole download.
    #[arg(long = "ranges", default_value_t = Config::default().ranges_per_download)]
    pub ranges_per_download: usize,
    /// Entries a `download` phase may fetch and a `delete` phase deletes, e.g. an earlier
    /// phase's `Summary::uploads` (the command fills it from `--known-uploads` files).
    #[arg(skip)]
    pub known_uploads: Vec<UploadRecord>,
    /// Where goose's reports and `loadgen-summary.json` are written (created if missing).
    #[arg(long, default_value_os_t = Config::default().report_dir)]
    pub report_dir: PathBuf,
    /// Less console output: goose warnings only, no final goose tables.
    #[arg(short, long)]
    pub quiet: bool,
    /// Longest random Range request (each is 1 byte to this many).
    #[arg(long, default_value_t = Config::default().range_size)]
    pub range_size: ByteSize,
    /// User weights of `mixed` (a scenario left out weighs 0).
    #[arg(long = "mix", default_value_t = Config::default().mixed)]
    pub mixed: MixedWeights,
    /// Uploads ask to expire this long after they start (`?expiration=`); unset: the server's
    /// default. The server refuses less than its `--min-expiration` (1 h unless lowered).
    #[serde(with = "humantime_serde")]
    #[arg(long, value_parser = humantime::parse_duration)]
    pub expire_after: Option<Duration>,
    /// Share of `churn` entries deleted after their downloads, in [0, 1]; the rest expire.
    #[arg(long, default_value_t = Config::default().delete_fraction)]
    pub delete_fraction: f64,
    /// Pause after each iteration of a user, like a person between actions (soaks use it to
    /// pace traffic). Unset: none.
    #[serde(with = "humantime_serde")]
    #[arg(long, value_parser = humantime::parse_duration)]
    pub think_time: Option<Duration>,
    /// Attacks: connections held at once [default: the class's, see below].
    #[arg(long)]
    pub connections: Option<usize>,
    /// Attacks: source addresses, a count (16: spread over 127/8) or a list
    /// (127.0.0.2,127.0.0.3) [default: none, the kernel picks].
    #[arg(long, default_value_t = Config::default().sources, hide_default_value = true)]
    pub sources: Sources,
    /// `history-flood`: requests pipelined.
    #[arg(long, default_value_t = Config::default().history_requests)]
    pub history_requests: usize,
    /// `slow-body`: time between body bytes.
    #[serde(with = "humantime_serde")]
    #[arg(long, value_parser = humantime::parse_duration, default_value = "20s")]
    pub trickle_interval: Duration,
    /// `stalled-guest-upload`: body bytes each connection sends before it stalls.
    #[arg(long, default_value_t = Config::default().stall_after)]
    pub stall_after: ByteSize,
}

/// 618 MB at 5 MB/s takes 124 s; 300 s leaves room for a 618 MB upload down to ~2 MB/s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// `slow-body`'s pause between bytes: longer than a typical idle timeout's step.
const DEFAULT_TRICKLE_INTERVAL: Duration = Duration::from_secs(20);

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "http://127.0.0.1:4001".to_owned(),
            secret: String::new(),
            scenario: Scenario::Upload,
            users: 1,
            iterations: None,
            run_time: None,
            // Fast enough that `--users 3` starts all three uploads at once, as in the story.
            increase_rate: 10.0,
            size: ByteSize(618_000_000),
            file: None,
            seed: 1,
            timeout: DEFAULT_TIMEOUT,
            slow_rate: ByteSize(1_000_000),
            abort_fraction: 0.5,
            ranges_per_download: 4,
            known_uploads: Vec::new(),
            report_dir: PathBuf::from("loadgen-report"),
            quiet: false,
            range_size: ByteSize(1 << 20),
            mixed: MixedWeights::default(),
            expire_after: None,
            delete_fraction: 0.5,
            think_time: None,
            connections: None,
            sources: Sources::default(),
            history_requests: 20_000,
            trickle_interval: DEFAULT_TRICKLE_INTERVAL,
            stall_after: ByteSize(1_200_000),
        }
    }
}

impl Config {
    /// Iterations per user goose runs: `iterations`, else 1 without `run_time`, else no limit.
    pub fn effective_iterations(&self) -> Option<usize> {
        match (self.iterations, self.run_time) {
            (None, Some(_)) => None,
            (iterations, _) => Some(iterations.unwrap_or(1)),
        }
    }

    /// The scenarios goose runs and their user weights.
    pub fn weighted_scenarios(&self) -> Vec<(Scenario, usize)> {
        match self.scenario {
            Scenario::Mixed => self.mixed.weighted(),
            single => vec![(single, 1)],
        }
    }

    /// Refuses what cannot work: a run without an end, an empty secret, a slow upload that
    /// cannot finish within the timeout, an unreadable file.
    pub fn validate(&self) -> Result<(), String> {
        let url = reqwest::Url::parse(&self.host)
            .map_err(|e| format!("host {:?} is not a URL: {e}", self.host))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "host {:?} must start with http:// or https://",
                self.host
            ));
        }
        if self.secret.is_empty() {
            return Err("the shared secret is empty (--secret or PS_SHARED_SECRET)".into());
        }
        if self.scenario.is_hostile() {
            return crate::hostile::validate(self);
        }
        if self.users == 0 {
            return Err("users must be at least 1".into());
        }
        if self.iterations == Some(0) {
            return Err("iterations must be at least 1".into());
        }
        if self.run_time.is_some_and(|t| t.is_zero()) {
            return Err("run-time must be above 0".into());
        }
        if !(self.increase_rate.is_finite() && self.increase_rate > 0.0) {
            return Err(format!(
                "increase-rate must be above 0 users/s, not {}",
                self.increase_rate
            ));
        }
        if self.timeout.is_zero() {
            return Err("timeout must be above 0".into());
        }
        if !(self.abort_fraction > 0.0 && self.abort_fraction < 1.0) {
            return Err(format!(
                "abort-fraction must be between 0 and 1 (exclusive), not {}",
                self.abort_fraction
            ));
        }
        if !(0.0..=1.0).contains(&self.delete_fraction) {
            return Err(format!(
                "delete-fraction must be between 0 and 1, not {}",
                self.delete_fraction
            ));
        }
        if self.expire_after.is_some_and(|d| d.is_zero()) {
            return Err("expire-after must be above 0".into());
        }
        if self.range_size.bytes() == 0 {
            return Err("range-size must be at least 1 byte".into());
        }
        let weighted = self.weighted_scenarios();
        if weighted.is_empty() {
            return Err("mixed has no scenario with a weight above 0".into());
        }
        let size = self.upload_size()?;
        if size == 0 {
            return Err("size must be at least 1 byte".into());
        }
        if weighted.iter().any(|&(s, _)| s == Scenario::SlowUpload) {
            if self.slow_rate.bytes() == 0 {
                return Err("slow-rate must be above 0".into());
            }
            let needed = Duration::from_secs_f64(size as f64 / self.slow_rate.bytes() as f64);
            if needed >= self.timeout {
                return Err(format!(
                    "a slow upload of {} at {}/s takes {}, not less than the timeout of {}: \
                     raise --timeout or lower --size",
                    ByteSize(size),
                    self.slow_rate,
                    humantime::format_duration(round_secs(needed)),
                    humantime::format_duration(self.timeout)
                ));
            }
        }
        Ok(())
    }

    /// Bytes of one upload: the file's length with `file`, else `size`.
    pub fn upload_size(&self) -> Result<u64, String> {
        match &self.file {
            None => Ok(self.size.bytes()),
            Some(path) => {
                let meta = std::fs::metadata(path)
                    .map_err(|e| format!("cannot read --file {}: {e}", path.display()))?;
                if !meta.is_file() {
                    return Err(format!("--file {} is not a regular file", path.display()));
                }
                Ok(meta.len())
            }
        }
    }

    /// A copy that is safe to write into reports: no secret, and the known uploads only
    /// counted (they can be long and are already in the earlier summary).
    pub(crate) fn redacted(&self) -> Config {
        Config {
            secret: "(redacted)".to_owned(),
            known_uploads: Vec::new(),
            ..self.clone()
        }
    }
}

fn round_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs_f64().ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Config {
        Config {
            secret: "s".into(),
            ..Config::default()
        }
    }

    #[test]
    fn churn_settings_are_checked() {
        let churn = |delete_fraction: f64, expire_after: Option<Duration>| Config {
            scenario: Scenario::Churn,
            delete_fraction,
            expire_after,
            ..valid()
        };
        churn(0.0, Some(Duration::from_secs(20)))
            .validate()
            .unwrap();
        churn(1.0, None).validate().unwrap();
        assert!(
            churn(1.5, None)
                .validate()
                .unwrap_err()
                .contains("delete-fraction")
        );
        assert!(
            churn(-0.1, None)
                .validate()
                .unwrap_err()
                .contains("delete-fraction")
        );
        assert!(
            churn(0.5, Some(Duration::ZERO))
                .validate()
                .unwrap_err()
                .contains("expire-after")
        );
        assert_eq!("churn".parse::<Scenario>(), Ok(Scenario::Churn));
        let parsed: Config = serde_json::from_value(serde_json::json!({
            "scenario": "churn", "expire-after": "20s", "think-time": "500ms",
            "delete-fraction": 0.25
        }))
        .unwrap();
        assert_eq!(parsed.expire_after, Some(Duration::from_secs(20)));
        assert_eq!(parsed.think_time, Some(Duration::from_millis(500)));
        assert_eq!(parsed.delete_fraction, 0.25);
    }

    #[test]
    fn defaults_are_valid_once_a_secret_is_set() {
        valid().validate().unwrap();
        assert!(Config::default().validate().is_err());
    }

    #[test]
    fn default_timeout_covers_618mb_at_5mb_per_s() {
        assert!(Config::default().timeout.as_secs_f64() >= 618e6 / 5e6);
    }

    #[test]
    fn iterations_default_to_one_unless_a_run_time_is_set() {
        assert_eq!(valid().effective_iterations(), Some(1));
        let timed = Config {
            run_time: Some(Duration::from_secs(30)),
            ..valid()
        };
        assert_eq!(timed.effective_iterations(), None);
        let both = Config {
            iterations: Some(3),
            ..timed
        };
        assert_eq!(both.effective_iterations(), Some(3));
    }

    #[test]
    fn refuses_runs_that_cannot_finish() {
        let zero = Config {
            iterations: Some(0),
            ..valid()
        };
        assert!(zero.validate().is_err());
        let slow = Config {
            scenario: Scenario::SlowUpload,
            size: ByteSize(618_000_000),
            ..valid()
        };
        assert!(slow.validate().unwrap_err().contains("slow upload"));
        let abort = Config {
            abort_fraction: 1.0,
            ..valid()
        };
        assert!(abort.validate().is_err());
    }

    #[test]
    fn reads_kebab_case_toml_like_json_and_refuses_unknown_keys() {
        let config: Config = serde_json::from_str(
            r#"{"host":"http://h:1","secret":"x","scenario":"slow-upload","size":"20MB",
                "run-time":"30s","iterations":null,"timeout":"10m","slow-rate":1000000}"#,
        )
        .unwrap();
        assert_eq!(config.scenario, Scenario::SlowUpload);
        assert_eq!(config.size, ByteSize(20_000_000));
        assert_eq!(config.run_time, Some(Duration::from_secs(30)));
        assert_eq!(config.timeout, Duration::from_secs(600));
        assert_eq!(config.users, 1, "defaults fill the rest");
        assert!(serde_json::from_str::<Config>(r#"{"sise":"1MB"}"#).is_err());
    }
}

#[cfg(test)]
mod flag_tests {
    use clap::{CommandFactory, FromArgMatches, Parser};

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    fn parse(args: &[&str]) -> Config {
        let matches = Cli::command()
            .try_get_matches_from(std::iter::once("loadgen").chain(args.iter().copied()))
            .unwrap();
        Cli::from_arg_matches(&matches).unwrap().config
    }

    #[test]
    fn flag_defaults_are_the_config_defaults() {
        let from_flags = serde_json::to_value(parse(&["--secret", "s"])).unwrap();
        let defaults = serde_json::to_value(Config {
            secret: "s".into(),
            ..Config::default()
        })
        .unwrap();
        assert_eq!(from_flags, defaults);
    }

    #[test]
    fn every_setting_but_the_known_uploads_is_a_flag() {
        let command = Cli::command();
        let flags: Vec<&str> = command
            .get_arguments()
            .filter_map(|a| a.get_long())
            .collect();
        let keys = serde_json::to_value(Config::default()).unwrap();
        for key in keys.as_object().unwrap().keys() {
            let flag = match key.as_str() {
                "known-uploads" => continue,
                "ranges-per-download" => "ranges",
                "mixed" => "mix",
                other => other,
            };
            assert!(flags.contains(&flag), "no --{flag} for the setting {key}");
        }
    }

    #[test]
    fn flags_fill_the_config() {
        let config = parse(&[
            "--secret",
            "s",
            "--scenario",
            "churn",
            "-u",
            "3",
            "-t",
            "90s",
            "--mix",
            "upload=1",
            "--ranges",
            "2",
            "--sources",
            "4",
            "--trickle-interval",
            "1s",
        ]);
        assert_eq!(config.scenario, Scenario::Churn);
        assert_eq!(config.users, 3);
        assert_eq!(config.run_time, Some(Duration::from_secs(90)));
        assert_eq!(config.mixed.weighted(), vec![(Scenario::Upload, 1)]);
        assert_eq!(config.ranges_per_download, 2);
        assert_eq!(config.sources, Sources::Count(4));
        assert_eq!(config.trickle_interval, Duration::from_secs(1));
    }
}
