//! `outcome.json`: how a run ended. The rig writes it once the server is
//! stopped; a run whose rig died earlier has none.
//!
//! A phase's `summary` is loadgen's whole summary: the rig writes
//! `Outcome<loadgen::Summary>`; readers without loadgen use [`PhaseSummary`],
//! the figures the reports show.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Exit, HealthSummary, Sample};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Outcome<S = PhaseSummary> {
    pub run_dir: PathBuf,
    /// No OOM kill, the server alive until the rig stopped it, every phase ok, not interrupted,
    /// and with `[health] max_latency`, every `/healthz` probe answered within it.
    pub passed: bool,
    pub oom_kills: u64,
    pub server_exit: Option<Exit>,
    /// When the server died on its own, ms since the run started.
    pub died_at_ms: Option<u64>,
    pub interrupted: bool,
    pub phases: Vec<PhaseOutcome<S>>,
    pub samples: u64,
    /// The `/healthz` probes in numbers (`healthz.jsonl` has each one).
    pub health: Option<HealthSummary>,
    pub peaks: Peaks,
    /// The samples just before the end (or the death).
    pub last_samples: Vec<Sample>,
}

// By hand: a derive would ask `S: Default` of loadgen's summary.
impl<S> Default for Outcome<S> {
    fn default() -> Self {
        Outcome {
            run_dir: PathBuf::new(),
            passed: false,
            oom_kills: 0,
            server_exit: None,
            died_at_ms: None,
            interrupted: false,
            phases: Vec::new(),
            samples: 0,
            health: None,
            peaks: Peaks::default(),
            last_samples: Vec::new(),
        }
    }
}

/// One load phase, ms since the run started.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PhaseOutcome<S = PhaseSummary> {
    pub name: String,
    /// Ran beside the phases after it.
    pub background: bool,
    pub started_ms: u64,
    pub ended_ms: u64,
    pub ok: bool,
    /// loadgen's error, if it failed as a whole.
    pub error: Option<String>,
    pub summary: Option<S>,
}

impl<S> Default for PhaseOutcome<S> {
    fn default() -> Self {
        PhaseOutcome {
            name: String::new(),
            background: false,
            started_ms: 0,
            ended_ms: 0,
            ok: false,
            error: None,
            summary: None,
        }
    }
}

/// The figures of loadgen's summary that readers without loadgen use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PhaseSummary {
    pub requests: u64,
    pub failures: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Downloads whose bytes did not match what was uploaded.
    pub mismatches: u64,
}

/// Highest figures over the run, bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Peaks {
    pub machine_usage_bytes: u64,
    pub machine_working_set_bytes: u64,
    pub machine_anon_bytes: u64,
    pub machine_file_bytes: u64,
    pub process_rss_bytes: u64,
    pub process_anon_bytes: u64,
    pub process_hwm_bytes: u64,
    pub allocator_resident_bytes: u64,
}

impl Peaks {
    /// Raises the peaks to one more sample's figures.
    pub fn add(&mut self, s: &Sample) {
        let max = |a: &mut u64, b: u64| *a = (*a).max(b);
        if let Some(m) = &s.machine {
            max(&mut self.machine_usage_bytes, m.usage_bytes);
            max(&mut self.machine_working_set_bytes, m.working_set_bytes);
            max(&mut self.machine_anon_bytes, m.anon_bytes);
            max(&mut self.machine_file_bytes, m.file_bytes);
        }
        if let Some(p) = &s.process {
            max(&mut self.process_rss_bytes, p.memory.vm_rss_bytes);
            max(&mut self.process_anon_bytes, p.memory.rss_anon_bytes);
            max(&mut self.process_hwm_bytes, p.memory.vm_hwm_bytes);
        }
        if let Some(r) = s.server.as_ref().and_then(|v| v.allocator.resident_bytes) {
            max(&mut self.allocator_resident_bytes, r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_outcome_with_fields_missing_loads() {
        // No health, peaks, last_samples or samples; a phase without background or summary.
        let old = r#"{
            "run_dir": "runs/x", "passed": false, "oom_kills": 1, "died_at_ms": 20050,
            "server_exit": {"code": null, "signal": 9, "stopped_by_rig": false},
            "phases": [{"name": "upload", "started_ms": 10, "ended_ms": 20050, "ok": false,
                        "error": "the server died"}]
        }"#;
        let o: Outcome = serde_json::from_str(old).unwrap();
        assert_eq!(
            (o.oom_kills, o.died_at_ms, o.interrupted),
            (1, Some(20050), false)
        );
        assert_eq!(o.server_exit.unwrap().describe(), "killed by SIGKILL");
        assert!(!o.phases[0].background && o.phases[0].summary.is_none());
        assert!(o.health.is_none() && o.last_samples.is_empty());
        assert_eq!(o.peaks, Peaks::default());
        let empty: Outcome = serde_json::from_str("{}").unwrap();
        assert!(empty.phases.is_empty());
    }

    #[test]
    fn a_summary_reads_as_its_figures() {
        let phase = r#"{"name": "upload", "summary": {"ok": true, "requests": 40, "failures": 1,
            "bytes_sent": 5000, "bytes_received": 9, "mismatches": 0, "uploads": [], "attack": null}}"#;
        let p: PhaseOutcome = serde_json::from_str(phase).unwrap();
        let s = p.summary.unwrap();
        assert_eq!((s.requests, s.failures, s.bytes_sent), (40, 1, 5000));
    }

    #[test]
    fn peaks_follow_the_allocator() {
        let line = r#"{"t_ms": 0, "phase": "upload", "process": null, "machine": null,
            "system": null, "files": null, "server": {"allocator": {"resident_bytes": 7}}}"#;
        let mut peaks = Peaks::default();
        peaks.add(&serde_json::from_str(line).unwrap());
        assert_eq!(peaks.allocator_resident_bytes, 7);
    }
}
