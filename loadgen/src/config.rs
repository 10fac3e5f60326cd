//! What a run does: the `Config` the CLI and the rig's TOML scenario files both fill, its
//! defaults, and the checks that refuse a run that could never finish or could not work.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::hostile::Sources;
use crate::size::ByteSize;
use crate::summary::UploadRecord;

/// The traffic one run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Log in, then stream a browser-shaped multipart upload (`file` + `note`) of `size` bytes.
    Upload,
    /// Fetch uploaded entries whole and by random Range requests, verifying every byte.
    Download,
    /// An upload throttled to `slow_rate`, like a phone on a bad link.
    SlowUpload,
    /// An upload that disconnects after `abort_fraction` of its body.
    AbortUpload,
    /// Users spread over the four scenarios above by `mixed` weights.
    Mixed,
    /// A share's life, compressed for soaks: upload with an expiration `expire_after` ahead,
    /// download whole and one range (verified), then delete with probability
    /// `delete_fraction`; the rest expire and the server's GC removes them.
    Churn,
    /// A guest's upload: the owner logs in and creates an unlimited guest link per user, then
    /// each iteration streams a `file`-only multipart upload of `size` bytes to
    /// `/api/guest/{id}`; stored files become downloadable like owner uploads.
    GuestUpload,
    /// Delete uploaded entries (`DELETE /api/entry/{id}`), each once, and check they are gone.
    /// Not part of `mixed`: downloads there would fetch what it deleted.
    Delete,
    /// Hostile (raw sockets, `hostile`): `POST /api/auth` with a 2 MB JSON body per
    /// connection, response never read.
    LoginBodyFlood,
    /// Hostile: multipart uploads to an unlimited guest link that send `stall-after` bytes and
    /// stall.
    StalledGuestUpload,
    /// Hostile: POST bodies trickled one byte per `trickle-interval`.
    SlowBody,
    /// Hostile: connections that send nothing, reopened when the server closes them.
    IdleFlood,
    /// Hostile: `history-requests` pipelined one-byte Range downloads of one small entry, then
    /// its download history fetched as the owner.
    HistoryFlood,
}

impl Scenario {
    /// Every scenario, in the order help texts list them.
    pub const ALL: [Scenario; 13] = [
        Scenario::Upload,
        Scenario::Download,
        Scenario::SlowUpload,
        Scenario::AbortUpload,
        Scenario::Mixed,
        Scenario::Churn,
        Scenario::GuestUpload,
        Scenario::Delete,
        Scenario::LoginBodyFlood,
        Scenario::StalledGuestUpload,
        Scenario::SlowBody,
        Scenario::IdleFlood,
        Scenario::HistoryFlood,
    ];

    /// An attack class: raw-socket clients in `hostile`, not goose users.
    pub const fn is_hostile(self) -> bool {
        matches!(
            self,
            Scenario::LoginBodyFlood
                | Scenario::StalledGuestUpload
                | Scenario::SlowBody
                | Scenario::IdleFlood
                | Scenario::HistoryFlood
        )
    }

    /// The kebab-case name used on the command line, in TOML and in the summary.
    pub const fn name(self) -> &'static str {
        match self {
            Scenario::Upload => "upload",
            Scenario::Download => "download",
            Scenario::SlowUpload => "slow-upload",
            Scenario::AbortUpload => "abort-upload",
            Scenario::Mixed => "mixed",
            Scenario::Churn => "churn",
            Scenario::GuestUpload => "guest-upload",
            Scenario::Delete => "delete",
            Scenario::LoginBodyFlood => "login-body-flood",
            Scenario::StalledGuestUpload => "stalled-guest-upload",
            Scenario::SlowBody => "slow-body",
            Scenario::IdleFlood => "idle-flood",
            Scenario::HistoryFlood => "history-flood",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a scenario name did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseScenarioError {
    #[error(
        "unknown scenario {0:?} (one of: upload, download, slow-upload, abort-upload, mixed, delete, \
         churn, guest-upload, login-body-flood, stalled-guest-upload, slow-body, idle-flood, \
         history-flood)"
    )]
    Unknown(String),
}

impl FromStr for Scenario {
    type Err = ParseScenarioError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Scenario::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| ParseScenarioError::Unknown(name.to_owned()))
    }
}

/// How `mixed` spreads users: goose allocates users to scenarios round-robin in proportion to
/// these weights (0 leaves a scenario out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct MixedWeights {
    pub upload: usize,
    pub download: usize,
    pub slow_upload: usize,
    pub abort_upload: usize,
}

impl Default for MixedWeights {
    fn default() -> Self {
        MixedWeights {
            upload: 3,
            download: 3,
            slow_upload: 1,
            abort_upload: 1,
        }
    }
}

impl MixedWeights {
    /// The scenarios with a non-zero weight.
    pub fn weighted(&self) -> Vec<(Scenario, usize)> {
        [
            (Scenario::Upload, self.upload),
            (Scenario::Download, self.download),
            (Scenario::SlowUpload, self.slow_upload),
            (Scenario::AbortUpload, self.abort_upload),
        ]
        .into_iter()
        .filter(|&(_, weight)| weight > 0)
        .collect()
    }
}

impl FromStr for MixedWeights {
    type Err = String;

    /// `upload=3,download=3,slow-upload=1,abort-upload=1`; unnamed scenarios get weight 0.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut weights = MixedWeights {
            upload: 0,
            download: 0,
            slow_upload: 0,
            abort_upload: 0,
        };
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, weight) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not NAME=WEIGHT"))?;
            let weight: usize = weight
                .trim()
                .parse()
                .map_err(|_| format!("weight {weight:?} of {name} is not a whole number"))?;
            let slot = match name.trim() {
                "upload" => &mut weights.upload,
                "download" => &mut weights.download,
                "slow-upload" => &mut weights.slow_upload,
                "abort-upload" => &mut weights.abort_upload,
                other => {
                    return Err(format!(
                        "{other:?} cannot be mixed (upload, download, slow-upload, abort-upload)"
                    ));
                }
            };
            *slot = weight;
        }
        Ok(weights)
    }
}

/// One run of the load generator. Every field has a default (see `Default`), so a TOML table
/// names only what it changes; unknown keys are refused so a typo cannot silently do nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Config {
    /// The server's base URL, e.g. `http://127.0.0.1:4001`.
    pub host: String,
    /// The shared secret for `POST /api/auth`.
    pub secret: String,
    pub scenario: Scenario,
    /// Concurrent goose users.
    pub users: usize,
    /// Iterations of the scenario per user. Unset: 1, or no limit when `run_time` is set. With
    /// `run_time` as well, `run_time` is a deadline after which users stop once their current
    /// request ends.
    pub iterations: Option<usize>,
    /// How long users keep running once all have started (goose's `--run-time`), e.g. `"30s"`.
    #[serde(with = "humantime_serde")]
    pub run_time: Option<Duration>,
    /// Users started per second (goose's `--increase-rate`).
    pub increase_rate: f64,
    /// Bytes per upload (ignored with `file`).
    pub size: ByteSize,
    /// Upload this file, streamed from disk, instead of generated content.
    pub file: Option<PathBuf>,
    /// Base seed: content and range choices are derived from it, the user and the iteration.
    pub seed: u64,
    /// Per-request timeout, whole body included. It is what bounds a run against a server that
    /// stops answering.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Bytes per second of `slow-upload`.
    pub slow_rate: ByteSize,
    /// Fraction of the body after which `abort-upload` disconnects, in (0, 1).
    pub abort_fraction: f64,
    /// Random Range requests after each whole download.
    pub ranges_per_download: usize,
    /// Entries a `download` phase may fetch and a `delete` phase deletes, e.g. an earlier
    /// phase's `Summary::uploads`.
    pub known_uploads: Vec<UploadRecord>,
    /// Where goose's reports and `loadgen-summary.json` are written (created if missing).
    pub report_dir: PathBuf,
    /// Less console output: goose warnings only, no final goose tables.
    pub quiet: bool,
    /// Longest random Range request (each is 1 byte to this many).
    pub range_size: ByteSize,
    /// User weights of `mixed`.
    pub mixed: MixedWeights,
    /// Uploads ask to expire this long after they start (`?expiration=`); unset: the server's
    /// default. The server refuses less than its `--min-expiration` (1 h unless lowered).
    #[serde(with = "humantime_serde")]
    pub expire_after: Option<Duration>,
    /// Share of `churn` entries deleted after their downloads, in [0, 1]; the rest expire.
    pub delete_fraction: f64,
    /// Pause after each iteration of a user, like a person between actions (soaks use it to
    /// pace traffic). Unset: none.
    #[serde(with = "humantime_serde")]
    pub think_time: Option<Duration>,
    /// Attack connections (hostile scenarios); unset: the class's default
    /// (`hostile::default_connections`).
    pub connections: Option<usize>,
    /// Loopback addresses the attack connections come from (hostile scenarios).
    pub sources: Sources,
    /// Requests `history-flood` pipelines.
    pub history_requests: usize,
    /// Time between the bytes of `slow-body`.
    #[serde(with = "humantime_serde")]
    pub trickle_interval: Duration,
    /// Body bytes each `stalled-guest-upload` connection sends before it stalls.
    pub stall_after: ByteSize,
}

/// 618 MB at 5 MB/s takes 124 s; 300 s leaves room for a 618 MB upload down to ~2 MB/s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

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
            trickle_interval: Duration::from_secs(20),
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
    fn scenario_names_round_trip() {
        for s in Scenario::ALL {
            assert_eq!(s.name().parse::<Scenario>(), Ok(s));
        }
        assert_eq!(
            "guest-uploads".parse::<Scenario>(),
            Err(ParseScenarioError::Unknown("guest-uploads".into()))
        );
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

    #[test]
    fn mixed_weights_parse() {
        let w: MixedWeights = "upload=2, abort-upload=1".parse().unwrap();
        assert_eq!(
            w.weighted(),
            vec![(Scenario::Upload, 2), (Scenario::AbortUpload, 1)]
        );
        assert!("guest-upload=1".parse::<MixedWeights>().is_err());
    }
}
