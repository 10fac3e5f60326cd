//! The running tally behind the summary. Transactions report each finished request here; the
//! tally is a std `Mutex` held only for a few additions, never across an `.await`.
//!
//! Memory is bounded per scenario and kind (one `Histogram` each, at most `MAX_REASONS`
//! failure reasons, `MAX_MISMATCH_EXAMPLES` mismatch details); only the upload records and the
//! deleted ids grow with the run, by design: they are what a later phase needs to know which
//! entries exist (~200 bytes per upload, ~30 per deletion).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::Scenario;
use crate::histogram::Histogram;
use crate::summary::{Mismatch, ScenarioSummary, Summary, TransferSummary, UploadRecord};

/// Distinct failure reasons kept per scenario; further ones are counted under "other".
pub const MAX_REASONS: usize = 32;
/// Mismatches kept in detail; all are counted.
pub const MAX_MISMATCH_EXAMPLES: usize = 16;

/// What a request was for; the summary groups durations and rates by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Login,
    Upload,
    /// An upload `abort-upload` disconnected on purpose.
    AbortedUpload,
    Download,
    Range,
    /// `DELETE /api/entry/{id}`.
    Delete,
    /// The `GET /api/entry/{id}` after a delete, which must answer 404.
    DeleteCheck,
}

impl Kind {
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Kind::Login => "login",
            Kind::Upload => "upload",
            Kind::AbortedUpload => "aborted-upload",
            Kind::Download => "download",
            Kind::Range => "range",
            Kind::Delete => "delete",
            Kind::DeleteCheck => "delete-check",
        }
    }
}

/// One finished request.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub scenario: Scenario,
    pub kind: Kind,
    pub started: Instant,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// `None` for success, else a short reason without ids, so reasons group.
    pub failure: Option<String>,
}

#[derive(Debug, Default)]
struct Transfers {
    bytes: u64,
    durations: Histogram,
    first_start: Option<Instant>,
    last_end: Option<Instant>,
}

#[derive(Debug, Default)]
struct ScenarioTally {
    requests: u64,
    failures: u64,
    reasons: BTreeMap<String, u64>,
    bytes_sent: u64,
    bytes_received: u64,
    transfers: BTreeMap<Kind, Transfers>,
}

#[derive(Debug, Default)]
struct Tally {
    scenarios: BTreeMap<Scenario, ScenarioTally>,
    uploads: Vec<UploadRecord>,
    verified_downloads: u64,
    verified_ranges: u64,
    mismatches: u64,
    mismatch_examples: Vec<Mismatch>,
    aborted_uploads: u64,
    deleted_ids: Vec<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Recorder {
    tally: Mutex<Tally>,
}

impl Recorder {
    fn lock(&self) -> MutexGuard<'_, Tally> {
        // A panic elsewhere while holding the lock leaves plain counters: still worth reporting.
        self.tally
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn request(&self, outcome: Outcome) {
        let ended = Instant::now();
        let mut tally = self.lock();
        if outcome.kind == Kind::AbortedUpload && outcome.failure.is_none() {
            tally.aborted_uploads += 1;
        }
        let s = tally.scenarios.entry(outcome.scenario).or_default();
        s.requests += 1;
        s.bytes_sent += outcome.bytes_sent;
        s.bytes_received += outcome.bytes_received;
        match outcome.failure {
            Some(reason) => {
                s.failures += 1;
                let key = if s.reasons.len() < MAX_REASONS || s.reasons.contains_key(&reason) {
                    reason
                } else {
                    "other".to_owned()
                };
                *s.reasons.entry(key).or_default() += 1;
            }
            None => {
                let t = s.transfers.entry(outcome.kind).or_default();
                t.bytes += outcome.bytes_sent + outcome.bytes_received;
                t.durations.record(ended - outcome.started);
                t.first_start = Some(
                    t.first_start
                        .map_or(outcome.started, |f| f.min(outcome.started)),
                );
                t.last_end = Some(ended);
            }
        }
    }

    pub(crate) fn upload(&self, record: UploadRecord) {
        self.lock().uploads.push(record);
    }

    /// An entry deleted and confirmed gone.
    pub(crate) fn deleted(&self, id: String) {
        self.lock().deleted_ids.push(id);
    }

    pub(crate) fn verified_download(&self) {
        self.lock().verified_downloads += 1;
    }

    pub(crate) fn verified_range(&self) {
        self.lock().verified_ranges += 1;
    }

    pub(crate) fn mismatch(&self, mismatch: Mismatch) {
        tracing::error!(
            id = %mismatch.id,
            kind = %mismatch.kind,
            range = ?mismatch.range,
            offset = ?mismatch.offset,
            "downloaded bytes differ from the uploaded bytes: {}",
            mismatch.detail
        );
        let mut tally = self.lock();
        tally.mismatches += 1;
        if tally.mismatch_examples.len() < MAX_MISMATCH_EXAMPLES {
            tally.mismatch_examples.push(mismatch);
        }
    }

    /// The summary so far; `error` is the reason the run stopped early, if it did.
    pub(crate) fn summary(&self, elapsed: Duration, error: Option<String>) -> Summary {
        let tally = self.lock();
        let scenarios: BTreeMap<String, ScenarioSummary> = tally
            .scenarios
            .iter()
            .map(|(scenario, s)| (scenario.name().to_owned(), scenario_summary(s)))
            .collect();
        let sum = |f: fn(&ScenarioSummary) -> u64| scenarios.values().map(f).sum::<u64>();
        let failures = sum(|s| s.failures);
        Summary {
            ok: error.is_none() && failures == 0 && tally.mismatches == 0,
            error,
            duration_seconds: elapsed.as_secs_f64(),
            requests: sum(|s| s.requests),
            failures,
            bytes_sent: sum(|s| s.bytes_sent),
            bytes_received: sum(|s| s.bytes_received),
            verified_downloads: tally.verified_downloads,
            verified_ranges: tally.verified_ranges,
            mismatches: tally.mismatches,
            aborted_uploads: tally.aborted_uploads,
            deleted: tally.deleted_ids.len() as u64,
            deleted_ids: tally.deleted_ids.clone(),
            uploads: tally.uploads.clone(),
            mismatch_examples: tally.mismatch_examples.clone(),
            scenarios,
            ..Summary::default()
        }
    }
}

fn scenario_summary(s: &ScenarioTally) -> ScenarioSummary {
    ScenarioSummary {
        requests: s.requests,
        failures: s.failures,
        failure_reasons: s.reasons.clone(),
        bytes_sent: s.bytes_sent,
        bytes_received: s.bytes_received,
        transfers: s
            .transfers
            .iter()
            .map(|(kind, t)| (kind.name().to_owned(), transfer_summary(t)))
            .collect(),
    }
}

fn transfer_summary(t: &Transfers) -> TransferSummary {
    let mb = t.bytes as f64 / 1e6;
    let rate = |seconds: f64| if seconds > 0.0 { mb / seconds } else { 0.0 };
    let wall = match (t.first_start, t.last_end) {
        (Some(start), Some(end)) => (end - start).as_secs_f64(),
        _ => 0.0,
    };
    TransferSummary {
        bytes: t.bytes,
        seconds: t.durations.stats(),
        mb_per_s: rate(t.durations.total_seconds()),
        aggregate_mb_per_s: rate(wall),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(kind: Kind, failure: Option<&str>) -> Outcome {
        Outcome {
            scenario: Scenario::Upload,
            kind,
            started: Instant::now(),
            bytes_sent: 10,
            bytes_received: 0,
            failure: failure.map(str::to_owned),
        }
    }

    #[test]
    fn counts_requests_failures_and_bytes() {
        let r = Recorder::default();
        r.request(outcome(Kind::Upload, None));
        r.request(outcome(Kind::Upload, Some("upload: HTTP 500")));
        r.request(outcome(Kind::AbortedUpload, None));
        let s = r.summary(Duration::from_secs(1), None);
        assert!(!s.ok);
        assert_eq!((s.requests, s.failures, s.bytes_sent), (3, 1, 30));
        assert_eq!(s.aborted_uploads, 1);
        let up = &s.scenarios["upload"];
        assert_eq!(up.failure_reasons["upload: HTTP 500"], 1);
        assert_eq!(up.transfers["upload"].bytes, 10);
        assert_eq!(up.transfers["upload"].seconds.count, 1);
    }

    #[test]
    fn reasons_are_bounded() {
        let r = Recorder::default();
        for i in 0..MAX_REASONS + 5 {
            r.request(outcome(Kind::Upload, Some(&format!("reason {i}"))));
        }
        let s = r.summary(Duration::ZERO, None);
        let reasons = &s.scenarios["upload"].failure_reasons;
        assert_eq!(reasons.len(), MAX_REASONS + 1);
        assert_eq!(reasons["other"], 5);
    }

    #[test]
    fn ok_needs_no_error_failure_or_mismatch() {
        let r = Recorder::default();
        r.request(outcome(Kind::Upload, None));
        assert!(r.summary(Duration::ZERO, None).ok);
        assert!(!r.summary(Duration::ZERO, Some("gone".into())).ok);
        r.mismatch(Mismatch {
            id: "x".into(),
            kind: "range".into(),
            range: Some((0, 1)),
            offset: Some(1),
            detail: "differs".into(),
        });
        assert!(!r.summary(Duration::ZERO, None).ok);
    }
}
