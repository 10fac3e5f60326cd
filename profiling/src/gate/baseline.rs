//! Baselines: the figures of N replicates of a scenario on a known build,
//! committed in `scenarios/baselines/<scenario>.json`, and the comparison of
//! a new set of replicates with them.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::metrics::{Metric, RunMetrics};
use super::stats::{self, Interval};

pub const SCHEMA: u32 = 1;
/// Significance level of the one-sided Mann-Whitney test.
pub const ALPHA: f64 = 0.05;
/// Effect floors: a difference smaller than both of these is noise however
/// significant. 1 MiB from `rig power` (docs/gate.md, "Power"): over 20 clean
/// gates against a fresh baseline no metric moved by as much, and with it
/// the gate catches `retain-per-upload=512KiB` (+1.2 MiB of peak anon) where
/// 2 MiB let it through.
pub const MIN_RELATIVE_EFFECT: f64 = 0.05;
pub const MIN_ABSOLUTE_EFFECT_BYTES: f64 = 1024.0 * 1024.0;

/// The effect floor: a regression must exceed the larger of the two.
/// `rig power` re-decides its gates under other floors to tune these.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Floor {
    /// Share of the baseline median.
    pub relative: f64,
    /// Bytes, for the byte metrics.
    pub absolute_bytes: f64,
}

impl Floor {
    pub const DEFAULT: Floor = Floor {
        relative: MIN_RELATIVE_EFFECT,
        absolute_bytes: MIN_ABSOLUTE_EFFECT_BYTES,
    };
}
/// Bootstrap interval confidence and seed (fixed: a gate must be reproducible).
pub const CONFIDENCE: f64 = 0.95;
const BOOTSTRAP_SEED: u64 = 0x5EED_6A7E;

/// The machine a baseline was measured on: figures from another kernel,
/// cgroup version or core count may differ for reasons that are not the code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineFacts {
    pub kernel: Option<String>,
    pub cgroup_version: String,
    pub cpus: usize,
    pub memory_total_bytes: Option<u64>,
}

impl MachineFacts {
    pub fn current() -> MachineFacts {
        let h = crate::meta::host();
        MachineFacts {
            kernel: h.kernel,
            cgroup_version: h.cgroup_version,
            cpus: h.cpus,
            memory_total_bytes: h.memory_total_bytes,
        }
    }

    /// What differs from `other`, for a warning.
    pub fn differences(&self, other: &MachineFacts) -> Vec<String> {
        let mut d = Vec::new();
        if self.kernel != other.kernel {
            d.push(format!("kernel {:?} vs {:?}", self.kernel, other.kernel));
        }
        if self.cgroup_version != other.cgroup_version {
            d.push(format!(
                "cgroup {} vs {}",
                self.cgroup_version, other.cgroup_version
            ));
        }
        if self.cpus != other.cpus {
            d.push(format!("{} vs {} CPUs", self.cpus, other.cpus));
        }
        d
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Baseline {
    pub schema: u32,
    pub scenario: String,
    pub created: DateTime<Utc>,
    pub git_revision: Option<String>,
    pub machine: MachineFacts,
    /// Each compared metric's figure per replicate.
    pub metrics: BTreeMap<Metric, Vec<f64>>,
    /// The baseline build's peak heap profile by site, what a failed gate's
    /// attribution run is diffed with (older baselines have none).
    #[serde(default)]
    pub heap: Option<super::attribution::BaselineHeap>,
}

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("reading baseline {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("baseline {path} is not a baseline file: {source}")]
    Parse {
        path: std::path::PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "baseline {path} has schema {found}; this rig reads {SCHEMA}: run rig gate --update-baseline"
    )]
    Schema {
        path: std::path::PathBuf,
        found: u32,
    },
    #[error("writing baseline {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl Baseline {
    pub fn of(scenario: &str, git_revision: Option<String>, runs: &[RunMetrics]) -> Baseline {
        let metrics = Metric::COMPARED
            .into_iter()
            .map(|m| (m, runs.iter().filter_map(|r| r.get(m)).collect::<Vec<_>>()))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        Baseline {
            schema: SCHEMA,
            scenario: scenario.to_owned(),
            created: Utc::now(),
            git_revision,
            machine: MachineFacts::current(),
            metrics,
            heap: None,
        }
    }

    pub fn load(path: &Path) -> Result<Baseline, BaselineError> {
        let text = std::fs::read_to_string(path).map_err(|source| BaselineError::Read {
            path: path.into(),
            source,
        })?;
        let b: Baseline = serde_json::from_str(&text).map_err(|source| BaselineError::Parse {
            path: path.into(),
            source,
        })?;
        if b.schema != SCHEMA {
            return Err(BaselineError::Schema {
                path: path.into(),
                found: b.schema,
            });
        }
        Ok(b)
    }

    pub fn save(&self, path: &Path) -> Result<(), BaselineError> {
        let write = |source| BaselineError::Write {
            path: path.into(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(write)?;
        }
        let text = serde_json::to_string_pretty(self)
            .map_err(std::io::Error::other)
            .map_err(write)?;
        std::fs::write(path, text + "\n").map_err(write)
    }
}

/// One metric, new replicates against the baseline's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    pub metric: Metric,
    pub baseline_median: f64,
    pub current_median: f64,
    /// current − baseline medians.
    pub delta: f64,
    /// `delta` relative to the baseline median.
    pub delta_relative: f64,
    /// Bootstrap interval of the difference of medians.
    pub interval: Interval,
    /// One-sided exact Mann-Whitney p that the new figures are higher.
    pub p_higher: f64,
    /// The smallest delta that counts (the larger of the two floors).
    pub floor: f64,
    pub regression: bool,
}

/// Compares each metric the baseline has; a metric regresses when the new
/// figures are significantly higher (p < [`ALPHA`], interval above 0) by
/// more than the effect floor.
pub fn compare(baseline: &Baseline, runs: &[RunMetrics]) -> Vec<Comparison> {
    compare_with(baseline, runs, Floor::DEFAULT)
}

/// [`compare`] with another effect floor.
pub fn compare_with(baseline: &Baseline, runs: &[RunMetrics], floor: Floor) -> Vec<Comparison> {
    let mut out = Vec::new();
    for (&metric, base) in &baseline.metrics {
        if !Metric::COMPARED.contains(&metric) {
            continue; // an older baseline may hold more
        }
        let current: Vec<f64> = runs.iter().filter_map(|r| r.get(metric)).collect();
        if let Some(c) = compare_one(metric, base, &current, floor) {
            out.push(c);
        }
    }
    out
}

pub fn compare_one(
    metric: Metric,
    base: &[f64],
    current: &[f64],
    floor: Floor,
) -> Option<Comparison> {
    let baseline_median = stats::median(base)?;
    let current_median = stats::median(current)?;
    let interval = stats::bootstrap_median_difference(
        current,
        base,
        CONFIDENCE,
        stats::BOOTSTRAP_RESAMPLES,
        BOOTSTRAP_SEED,
    )?;
    let p_higher = stats::mann_whitney_p_greater(current, base)?;
    let delta = current_median - baseline_median;
    let absolute_floor = if metric.is_bytes() {
        floor.absolute_bytes
    } else {
        0.0
    };
    let floor = (floor.relative * baseline_median.abs()).max(absolute_floor);
    Some(Comparison {
        metric,
        baseline_median,
        current_median,
        delta,
        delta_relative: if baseline_median != 0.0 {
            delta / baseline_median
        } else {
            0.0
        },
        interval,
        p_higher,
        floor,
        regression: p_higher < ALPHA && interval.low > 0.0 && delta > floor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: f64 = 1048576.0;

    fn mib(v: &[f64]) -> Vec<f64> {
        v.iter().map(|x| x * MIB).collect()
    }

    #[test]
    fn a_clear_rise_is_a_regression() {
        let base = mib(&[20.0, 21.0, 20.5, 19.8, 20.2]);
        let now = mib(&[40.0, 41.0, 39.5, 40.2, 40.8]);
        let c = compare_one(Metric::PeakAnon, &base, &now, Floor::DEFAULT).unwrap();
        assert!(c.regression, "{c:?}");
        assert!((c.delta - 20.0 * MIB).abs() < 1.0);
        assert!(c.p_higher < 0.01);
        assert!(c.interval.low > 0.0);
    }

    #[test]
    fn noise_is_not_a_regression() {
        let base = mib(&[20.0, 21.0, 20.5, 19.8, 20.2]);
        let now = mib(&[20.4, 20.9, 19.9, 20.6, 21.1]);
        assert!(
            !compare_one(Metric::PeakAnon, &base, &now, Floor::DEFAULT)
                .unwrap()
                .regression
        );
    }

    #[test]
    fn a_significant_but_tiny_rise_is_below_the_floor() {
        // +0.5 MiB every time: significant (p = 1/252) but under 1 MiB and
        // under 5 % of 20.2 MiB (the larger floor here).
        let base = mib(&[20.0, 20.1, 20.2, 20.3, 20.4]);
        let now = mib(&[20.5, 20.6, 20.7, 20.8, 20.9]);
        let c = compare_one(Metric::PeakAnon, &base, &now, Floor::DEFAULT).unwrap();
        assert!(c.p_higher < ALPHA);
        assert!(!c.regression, "{c:?}");
        assert!((c.floor - 0.05 * 20.2 * MIB).abs() < 1.0, "{c:?}");
    }

    #[test]
    fn one_outlier_is_not_enough() {
        let base = mib(&[20.0, 21.0, 20.5, 19.8, 20.2]);
        let now = mib(&[20.1, 20.3, 80.0, 20.4, 19.9]);
        assert!(
            !compare_one(Metric::PeakAnon, &base, &now, Floor::DEFAULT)
                .unwrap()
                .regression
        );
    }

    #[test]
    fn a_drop_is_never_a_regression() {
        let base = mib(&[40.0, 41.0, 39.5, 40.2, 40.8]);
        let now = mib(&[20.0, 21.0, 20.5, 19.8, 20.2]);
        let c = compare_one(Metric::PeakAnon, &base, &now, Floor::DEFAULT).unwrap();
        assert!(!c.regression);
        assert!(c.p_higher > 0.9);
    }

    #[test]
    fn round_trips_through_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b/base.json");
        let mut b = Baseline::of("s", Some("abc".into()), &[]);
        b.metrics.insert(Metric::PeakWal, vec![1.0, 2.0]);
        b.save(&path).unwrap();
        let back = Baseline::load(&path).unwrap();
        assert_eq!(back.metrics, b.metrics);
        assert_eq!(back.machine, b.machine);
        std::fs::write(&path, "{\"schema\": 9}").unwrap();
        assert!(Baseline::load(&path).is_err());
    }

    #[test]
    fn machine_differences_are_named() {
        let a = MachineFacts {
            kernel: Some("6.1".into()),
            cgroup_version: "v1".into(),
            cpus: 2,
            memory_total_bytes: None,
        };
        let b = MachineFacts {
            cgroup_version: "v2".into(),
            ..a.clone()
        };
        assert_eq!(a.differences(&b), ["cgroup v1 vs v2"]);
        assert!(a.differences(&a).is_empty());
    }
}
