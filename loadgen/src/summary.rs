//! The loadgen summary: what a run did, in numbers goose's own reports cannot give (whole-body
//! durations, verified bytes, the ids and hashes of uploads for a later download phase).
//! Written as `loadgen-summary.json` in the report directory, also when a run fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{Config, Scenario};
pub use crate::histogram::DurationStats;
use crate::hostile::AttackSummary;

/// File name of the summary inside `Config::report_dir`.
pub const SUMMARY_FILE: &str = "loadgen-summary.json";
/// File names of goose's reports inside `Config::report_dir`.
pub const GOOSE_REPORTS: [&str; 3] = ["goose-report.html", "goose-report.md", "goose-report.json"];

/// One upload the server accepted: enough to download and verify it later, in this run or a
/// later phase (`Config::known_uploads`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadRecord {
    /// The entry id the server answered; downloads are at `/-{id}`.
    pub id: String,
    /// Bytes of content.
    pub size: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
    /// Seed of the generated content (`Pattern::new(seed)`); unused when `file` is set.
    pub seed: u64,
    /// The file the content was read from (`--file`), instead of generated content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// The filename sent in the multipart part.
    #[serde(default)]
    pub filename: String,
    /// The scenario that uploaded it.
    #[serde(default)]
    pub scenario: Option<Scenario>,
    /// The goose user (0-based) and its iteration (0-based) that uploaded it.
    #[serde(default)]
    pub user: usize,
    #[serde(default)]
    pub iteration: usize,
    /// Whole-request duration: from sending the request until the response body was read.
    #[serde(default)]
    pub seconds: f64,
}

/// A download whose bytes were not the uploaded bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mismatch {
    pub id: String,
    /// `download` (whole file, SHA-256 compared) or `range` (bytes compared).
    pub kind: String,
    /// First and last byte requested, for a range.
    pub range: Option<(u64, u64)>,
    /// File offset of the first differing byte, when bytes were compared.
    pub offset: Option<u64>,
    pub detail: String,
}

/// Requests of one kind (`upload`, `download`, `range`, ...) that succeeded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TransferSummary {
    /// Content bytes moved by the successful requests.
    pub bytes: u64,
    /// Whole-body durations (request sent → last body byte), not goose's time-to-headers.
    pub seconds: DurationStats,
    /// Mean rate of one request: bytes / sum of durations, in MB/s (10^6 bytes).
    pub mb_per_s: f64,
    /// Rate of all of them together: bytes / (last end − first start), in MB/s.
    pub aggregate_mb_per_s: f64,
}

/// Everything one scenario's users did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScenarioSummary {
    /// HTTP requests made (logins included).
    pub requests: u64,
    /// Requests that failed, verification mismatches included.
    pub failures: u64,
    /// Failures by reason (at most `MAX_REASONS` distinct reasons; the rest under "other").
    pub failure_reasons: BTreeMap<String, u64>,
    /// File content bytes handed to the connection (multipart framing not counted, as the
    /// server's `bytes_received_total` does not count it either).
    pub bytes_sent: u64,
    /// File content bytes received by downloads.
    pub bytes_received: u64,
    /// Successful requests by kind.
    pub transfers: BTreeMap<String, TransferSummary>,
}

/// Where a run's files are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportFiles {
    pub summary: PathBuf,
    /// goose's HTML, Markdown and JSON reports; absent when goose did not run (a failed check
    /// before the start).
    pub goose: Vec<PathBuf>,
}

impl ReportFiles {
    pub(crate) fn new(dir: &Path) -> Self {
        ReportFiles {
            summary: dir.join(SUMMARY_FILE),
            goose: GOOSE_REPORTS.iter().map(|f| dir.join(f)).collect(),
        }
    }
}

/// The result of a run. `ok` is true only when nothing failed and every download matched.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub ok: bool,
    /// Why the run stopped early (unreachable server, wrong secret, server gone mid-run).
    pub error: Option<String>,
    pub host: String,
    pub scenario: Option<Scenario>,
    /// Start of the run, RFC 3339 UTC.
    pub started: String,
    pub duration_seconds: f64,
    pub requests: u64,
    pub failures: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Whole downloads whose SHA-256 and length matched.
    pub verified_downloads: u64,
    /// Range requests whose bytes all matched.
    pub verified_ranges: u64,
    /// Downloads or ranges whose bytes did not match (each is also a failure).
    pub mismatches: u64,
    /// Uploads disconnected on purpose by `abort-upload`.
    pub aborted_uploads: u64,
    /// Entries `delete` deleted and then found gone (`GET /api/entry/{id}` answered 404).
    #[serde(default)]
    pub deleted: u64,
    /// Their ids: a later phase must not expect them (the rig and `--known-uploads` drop them).
    #[serde(default)]
    pub deleted_ids: Vec<String>,
    /// Uploads the server accepted in this run, in completion order (deleted ones included:
    /// see `deleted_ids`).
    pub uploads: Vec<UploadRecord>,
    /// By scenario name (`upload`, `download`, `slow-upload`, `abort-upload`, `delete`).
    pub scenarios: BTreeMap<String, ScenarioSummary>,
    /// The first `MAX_MISMATCH_EXAMPLES` mismatches in detail.
    pub mismatch_examples: Vec<Mismatch>,
    /// Peak resident memory (VmHWM) of the process that ran loadgen, when readable.
    pub loadgen_peak_rss_bytes: Option<u64>,
    pub reports: ReportFiles,
    /// The configuration, without the secret and the known uploads.
    pub config: Option<Config>,
    /// How many `known_uploads` the run was given.
    pub known_uploads: usize,
    /// What an attack scenario did (`hostile`); absent for the polite scenarios.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attack: Option<AttackSummary>,
}

impl Summary {
    /// A few lines for a terminal: per scenario, requests, failures and rates.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "loadgen {}: {} requests, {} failed, {:.1} MB sent, {:.1} MB received in {:.1} s",
            if self.ok { "ok" } else { "FAILED" },
            self.requests,
            self.failures,
            self.bytes_sent as f64 / 1e6,
            self.bytes_received as f64 / 1e6,
            self.duration_seconds
        );
        for (name, s) in &self.scenarios {
            out += &format!("\n  {name}: {} requests, {} failed", s.requests, s.failures);
            for (kind, t) in s.transfers.iter().filter(|(_, t)| t.bytes > 0) {
                out += &format!(
                    "\n    {kind}: {} ok, {:.1} MB, {:.2} s mean, {:.1} MB/s each, {:.1} MB/s together",
                    t.seconds.count,
                    t.bytes as f64 / 1e6,
                    t.seconds.mean,
                    t.mb_per_s,
                    t.aggregate_mb_per_s
                );
            }
            for (reason, n) in &s.failure_reasons {
                out += &format!("\n    failed x{n}: {reason}");
            }
        }
        out += &format!(
            "\n  uploads stored {}, aborted on purpose {}, deleted {}; downloads verified {}, ranges verified {}, mismatches {}",
            self.uploads.len(),
            self.aborted_uploads,
            self.deleted,
            self.verified_downloads,
            self.verified_ranges,
            self.mismatches
        );
        if let Some(attack) = &self.attack {
            out += &attack.to_text();
        }
        if let Some(rss) = self.loadgen_peak_rss_bytes {
            out += &format!(
                "\n  loadgen peak RSS {:.1} MiB",
                rss as f64 / (1 << 20) as f64
            );
        }
        if let Some(error) = &self.error {
            out += &format!("\n  stopped: {error}");
        }
        out += &format!("\n  summary: {}", self.reports.summary.display());
        out
    }

    /// The entries of `summaries` still stored after them: their uploads less their deletions.
    pub fn remaining_uploads<'a>(
        summaries: impl IntoIterator<Item = &'a Summary> + Clone,
    ) -> Vec<UploadRecord> {
        let deleted: std::collections::HashSet<&str> = summaries
            .clone()
            .into_iter()
            .flat_map(|s| s.deleted_ids.iter().map(String::as_str))
            .collect();
        summaries
            .into_iter()
            .flat_map(|s| &s.uploads)
            .filter(|u| !deleted.contains(u.id.as_str()))
            .cloned()
            .collect()
    }

    /// Reads a summary written by an earlier run, e.g. to feed its `uploads` to a download run.
    pub fn read(path: &Path) -> std::io::Result<Summary> {
        let text = std::fs::read(path)?;
        serde_json::from_slice(&text).map_err(std::io::Error::other)
    }
}
