//! What the gate measures in one run: the figures budgets and baselines are
//! about, read from the run's own files (`samples.jsonl`) and its outcome.

use std::collections::BTreeMap;
use std::io::BufRead;

use serde::{Deserialize, Serialize};

use crate::run::Outcome;
use run_format::Sample;

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

/// A memory figure of one run. Lower is better for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Peak working set of the machine (cgroup usage minus inactive file
    /// pages): what the kernel cannot simply drop.
    PeakWorkingSet,
    /// Peak anonymous memory of the machine (heap, stacks; the OOM's fuel).
    PeakAnon,
    /// Peak resident set of the server process.
    PeakRss,
    /// Peak jemalloc resident bytes, from the server's `/debug/stats`.
    PeakAllocatorResident,
    /// Peak size of the SQLite WAL file.
    PeakWal,
    /// Peak size of the SQLite database file.
    PeakDb,
    /// Slope of machine anon against bytes uploaded, MiB per GiB.
    AnonMibPerGib,
    /// Slope of allocator resident against bytes uploaded, MiB per GiB.
    AllocatorMibPerGib,
    /// Slope of machine anon against time, MiB per hour.
    AnonMibPerHour,
    /// Slope of allocator resident against time, MiB per hour.
    AllocatorMibPerHour,
    /// Slowest `/healthz` probe, ms (a failed probe counts as its timeout).
    HealthzMax,
    /// 99th percentile of the `/healthz` probes, ms (failures as their timeout).
    HealthzP99,
}

impl Metric {
    pub const ALL: [Metric; 12] = [
        Metric::PeakWorkingSet,
        Metric::PeakAnon,
        Metric::PeakRss,
        Metric::PeakAllocatorResident,
        Metric::PeakWal,
        Metric::PeakDb,
        Metric::AnonMibPerGib,
        Metric::AllocatorMibPerGib,
        Metric::AnonMibPerHour,
        Metric::AllocatorMibPerHour,
        Metric::HealthzMax,
        Metric::HealthzP99,
    ];

    /// The peaks compared with the baseline. Held to budgets only: the working
    /// set (it counts the active page cache, which depends on the kernel's
    /// LRU aging more than on the code, and the limit caps it: 44–63 MiB over
    /// five identical runs of `ci-gate`), the slopes (a minutes-long run's
    /// swing with where a cache fill lands) and the DB size (the data uploaded).
    pub const COMPARED: [Metric; 4] = [
        Metric::PeakAnon,
        Metric::PeakRss,
        Metric::PeakAllocatorResident,
        Metric::PeakWal,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::PeakWorkingSet => "peak_working_set",
            Metric::PeakAnon => "peak_anon",
            Metric::PeakRss => "peak_rss",
            Metric::PeakAllocatorResident => "peak_allocator_resident",
            Metric::PeakWal => "peak_wal",
            Metric::PeakDb => "peak_db",
            Metric::AnonMibPerGib => "anon_mib_per_gib",
            Metric::AllocatorMibPerGib => "allocator_mib_per_gib",
            Metric::AnonMibPerHour => "anon_mib_per_hour",
            Metric::AllocatorMibPerHour => "allocator_mib_per_hour",
            Metric::HealthzMax => "healthz_max",
            Metric::HealthzP99 => "healthz_p99",
        }
    }

    /// Bytes (shown in MiB), or a slope already in MiB per unit.
    pub fn is_bytes(self) -> bool {
        matches!(
            self,
            Metric::PeakWorkingSet
                | Metric::PeakAnon
                | Metric::PeakRss
                | Metric::PeakAllocatorResident
                | Metric::PeakWal
                | Metric::PeakDb
        )
    }

    /// A value for people: `12.3 MiB`, `0.42 MiB/GiB` or `840 ms`.
    pub fn show(self, v: f64) -> String {
        match self {
            _ if self.is_bytes() => format!("{:.1} MiB", v / MIB),
            Metric::AnonMibPerGib | Metric::AllocatorMibPerGib => format!("{v:.2} MiB/GiB"),
            Metric::HealthzMax | Metric::HealthzP99 => format!("{v:.0} ms"),
            _ => format!("{v:.2} MiB/h"),
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One replicate, measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunMetrics {
    pub run_dir: std::path::PathBuf,
    /// The rig's own pass (no OOM kill, server alive, phases ok).
    pub passed: bool,
    /// The report's verdict (`crash`, `pressure`, `bloat`, `healthy`), if it was written.
    pub verdict: Option<String>,
    pub oom_kills: u64,
    /// The server died on its own (OOM or otherwise).
    pub died: bool,
    /// Requests loadgen counted as failed, plus phases that failed as a whole.
    pub failed_requests: u64,
    /// Downloads or ranges whose bytes did not match.
    pub unverified_requests: u64,
    /// Each failed phase and why.
    pub phase_errors: Vec<String>,
    pub values: BTreeMap<Metric, f64>,
}

impl RunMetrics {
    pub fn get(&self, m: Metric) -> Option<f64> {
        self.values.get(&m).copied()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("reading {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Measures a finished run from its outcome and `samples.jsonl`.
pub fn measure(outcome: &Outcome, verdict: Option<String>) -> Result<RunMetrics, MetricsError> {
    let path = outcome.run_dir.join(run_format::files::SAMPLES);
    let file = std::fs::File::open(&path).map_err(|source| MetricsError::Io {
        path: path.clone(),
        source,
    })?;
    let mut samples = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(|source| MetricsError::Io {
            path: path.clone(),
            source,
        })?;
        // A torn last line (the rig was killed mid-write) is skipped.
        if let Ok(s) = serde_json::from_str::<Sample>(&line) {
            samples.push(s);
        }
    }
    let mut failed = 0;
    let mut unverified = 0;
    let mut phase_errors = Vec::new();
    for p in &outcome.phases {
        if let Some(s) = &p.summary {
            failed += s.failures;
            unverified += s.mismatches;
        }
        if !p.ok {
            if p.summary.as_ref().is_none_or(|s| s.failures == 0) {
                failed += 1; // the phase failed as a whole
            }
            phase_errors.push(format!(
                "{}: {}",
                p.name,
                p.error.as_deref().unwrap_or("failed requests")
            ));
        }
    }
    let mut values = values(&samples);
    values.extend(health_values(&outcome.run_dir)?);
    Ok(RunMetrics {
        run_dir: outcome.run_dir.clone(),
        passed: outcome.passed,
        verdict,
        oom_kills: outcome.oom_kills,
        died: outcome.died_at_ms.is_some(),
        failed_requests: failed,
        unverified_requests: unverified,
        phase_errors,
        values,
    })
}

/// `healthz_max` and `healthz_p99` from the run's `healthz.jsonl` (none without probes).
fn health_values(run_dir: &std::path::Path) -> Result<BTreeMap<Metric, f64>, MetricsError> {
    let path = run_dir.join(run_format::files::HEALTHZ);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        // A run from before the prober existed.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => return Err(MetricsError::Io { path, source }),
    };
    let probes = run_format::health::parse(&text);
    if probes.is_empty() {
        return Ok(BTreeMap::new());
    }
    let summary = run_format::HealthSummary::of(&probes, None);
    Ok(BTreeMap::from([
        (Metric::HealthzMax, summary.max_ms),
        (Metric::HealthzP99, summary.p99_ms),
    ]))
}

/// Reads one figure from a sample.
type Figure = dyn Fn(&Sample) -> Option<f64>;

fn allocator_resident(s: &Sample) -> Option<f64> {
    Some(s.server.as_ref()?.allocator.resident_bytes? as f64)
}

fn uploaded(s: &Sample) -> Option<f64> {
    Some(s.server.as_ref()?.app.bytes_received_total? as f64)
}

fn machine_anon(s: &Sample) -> Option<f64> {
    s.machine.as_ref().map(|m| m.anon_bytes as f64)
}

/// Every metric that the samples hold.
pub fn values(samples: &[Sample]) -> BTreeMap<Metric, f64> {
    let mut out = BTreeMap::new();
    let mut peak = |m: Metric, f: &Figure| {
        if let Some(v) = samples.iter().filter_map(f).reduce(f64::max) {
            out.insert(m, v);
        }
    };
    peak(Metric::PeakWorkingSet, &|s| {
        s.machine.as_ref().map(|m| m.working_set_bytes as f64)
    });
    peak(Metric::PeakAnon, &machine_anon);
    peak(Metric::PeakRss, &|s| {
        s.process.as_ref().map(|p| p.memory.vm_rss_bytes as f64)
    });
    peak(Metric::PeakAllocatorResident, &allocator_resident);
    peak(Metric::PeakWal, &|s| {
        s.files.as_ref().map(|f| f.wal_bytes as f64)
    });
    peak(Metric::PeakDb, &|s| {
        s.files.as_ref().map(|f| f.db_bytes as f64)
    });

    let gib = |s: &Sample| uploaded(s).map(|b| b / GIB);
    let anon_mib = |s: &Sample| machine_anon(s).map(|b| b / MIB);
    let alloc_mib = |s: &Sample| allocator_resident(s).map(|b| b / MIB);
    let slopes: [(Metric, &Figure, &Figure); 2] = [
        (Metric::AnonMibPerGib, &gib, &anon_mib),
        (Metric::AllocatorMibPerGib, &gib, &alloc_mib),
    ];
    for (metric, x, y) in slopes {
        if let Some(slope) = slope(samples, x, y) {
            out.insert(metric, slope);
        }
    }
    // Against time: the report's drift, which leaves a `warm-up` phase out.
    let drift = reports::drift::drift(samples);
    let per_hour = [
        (Metric::AnonMibPerHour, drift.anon_mib_per_hour),
        (Metric::AllocatorMibPerHour, drift.allocator_mib_per_hour),
    ];
    for (metric, slope) in per_hour {
        if let Some(slope) = slope {
            out.insert(metric, slope);
        }
    }
    out
}

/// Least-squares slope of `y` against `x` over the samples that have both;
/// `None` when `x` does not move (nothing uploaded, one sample).
fn slope(samples: &[Sample], x: &Figure, y: &Figure) -> Option<f64> {
    let (xs, ys): (Vec<f64>, Vec<f64>) =
        samples.iter().filter_map(|s| Some((x(s)?, y(s)?))).unzip();
    reports::stats::linear_fit(&xs, &ys).map(|f| f.slope)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t_ms: u64, anon_mib: u64, uploaded_gib: f64, wal: u64) -> Sample {
        serde_json::from_value(serde_json::json!({
            "t_ms": t_ms,
            "phase": "upload",
            "process": null,
            "machine": {
                "source": "cgroup-v1", "usage_bytes": 0, "limit_bytes": null, "peak_bytes": null,
                "anon_bytes": anon_mib << 20, "file_bytes": 0, "mapped_file_bytes": 0,
                "dirty_bytes": 0, "writeback_bytes": 0, "inactive_file_bytes": 0,
                "working_set_bytes": (anon_mib + 1) << 20, "oom_kills": 0, "limit_hits": 0,
                "pressure": null
            },
            "system": null,
            "server": {"app": {"bytes_received_total": (uploaded_gib * GIB) as u64},
                       "allocator": {"resident_bytes": 8u64 << 20}},
            "files": {"db_bytes": 1000, "wal_bytes": wal, "shm_bytes": 0}
        }))
        .expect("a valid sample")
    }

    #[test]
    fn peaks_and_slopes_from_samples() {
        // anon grows 10 MiB per GiB uploaded and 10 MiB per hour (one GiB per hour).
        let samples: Vec<Sample> = (0..=4)
            .map(|i| sample(i * 3_600_000, 20 + 10 * i, i as f64, 100 * i))
            .collect();
        let v = values(&samples);
        assert_eq!(v[&Metric::PeakAnon], (60u64 << 20) as f64);
        assert_eq!(v[&Metric::PeakWorkingSet], (61u64 << 20) as f64);
        assert_eq!(v[&Metric::PeakWal], 400.0);
        assert_eq!(v[&Metric::PeakDb], 1000.0);
        assert_eq!(v[&Metric::PeakAllocatorResident], (8u64 << 20) as f64);
        assert!((v[&Metric::AnonMibPerGib] - 10.0).abs() < 1e-9);
        assert!((v[&Metric::AnonMibPerHour] - 10.0).abs() < 1e-9);
        assert!(v[&Metric::AllocatorMibPerHour].abs() < 1e-9);
        // No process samples: no RSS figure rather than a made-up zero.
        assert!(!v.contains_key(&Metric::PeakRss));
    }

    #[test]
    fn no_slope_without_uploads() {
        // Two minutes: the shortest window a drift is fitted over.
        let samples: Vec<Sample> = (0..3).map(|i| sample(i * 60_000, 5, 0.0, 0)).collect();
        let v = values(&samples);
        assert!(!v.contains_key(&Metric::AnonMibPerGib));
        assert!(v.contains_key(&Metric::AnonMibPerHour));
    }
}
