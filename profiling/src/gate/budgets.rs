//! The scenario's `[budgets]`: absolute limits every replicate must meet.
//! No OOM kill, no server death, no failed or unverified request are always
//! budgets; the rest are opt-in per scenario.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::metrics::{Metric, RunMetrics};
use loadgen::ByteSize;

/// `[budgets]` of a scenario file (documented in `docs/gate.md`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    pub peak_working_set: Option<ByteSize>,
    pub peak_anon: Option<ByteSize>,
    pub peak_rss: Option<ByteSize>,
    pub allocator_resident: Option<ByteSize>,
    pub db_size: Option<ByteSize>,
    pub wal_size: Option<ByteSize>,
    /// MiB of machine anon per GiB uploaded.
    pub anon_mib_per_gib: Option<f64>,
    /// MiB of allocator resident per GiB uploaded.
    pub allocator_mib_per_gib: Option<f64>,
    /// MiB of machine anon per hour (soaks).
    pub anon_mib_per_hour: Option<f64>,
    /// MiB of allocator resident per hour (soaks).
    pub allocator_mib_per_hour: Option<f64>,
    /// Slowest `/healthz` probe (a failed probe counts as its timeout), e.g. `"1s"`.
    #[serde(default, with = "humantime_serde")]
    pub healthz_max: Option<Duration>,
    /// 99th percentile of the `/healthz` probes.
    #[serde(default, with = "humantime_serde")]
    pub healthz_p99: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
#[error("[budgets]: {0}")]
pub struct BudgetsError(String);

impl Budgets {
    /// Reads the scenario's `[budgets]` table (kept raw by the scenario parser).
    pub fn from_table(table: &toml::Table) -> Result<Budgets, BudgetsError> {
        toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| BudgetsError(e.message().to_owned()))
    }

    /// Each metric limit, with its key in the scenario file.
    pub fn limits(&self) -> Vec<(&'static str, Metric, f64)> {
        let bytes = |b: &Option<ByteSize>| b.map(|b| b.0 as f64);
        let ms = |d: &Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        [
            (
                "peak_working_set",
                Metric::PeakWorkingSet,
                bytes(&self.peak_working_set),
            ),
            ("peak_anon", Metric::PeakAnon, bytes(&self.peak_anon)),
            ("peak_rss", Metric::PeakRss, bytes(&self.peak_rss)),
            (
                "allocator_resident",
                Metric::PeakAllocatorResident,
                bytes(&self.allocator_resident),
            ),
            ("db_size", Metric::PeakDb, bytes(&self.db_size)),
            ("wal_size", Metric::PeakWal, bytes(&self.wal_size)),
            (
                "anon_mib_per_gib",
                Metric::AnonMibPerGib,
                self.anon_mib_per_gib,
            ),
            (
                "allocator_mib_per_gib",
                Metric::AllocatorMibPerGib,
                self.allocator_mib_per_gib,
            ),
            (
                "anon_mib_per_hour",
                Metric::AnonMibPerHour,
                self.anon_mib_per_hour,
            ),
            (
                "allocator_mib_per_hour",
                Metric::AllocatorMibPerHour,
                self.allocator_mib_per_hour,
            ),
            ("healthz_max", Metric::HealthzMax, ms(&self.healthz_max)),
            ("healthz_p99", Metric::HealthzP99, ms(&self.healthz_p99)),
        ]
        .into_iter()
        .filter_map(|(key, metric, limit)| Some((key, metric, limit?)))
        .collect()
    }
}

/// One budget over all replicates.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BudgetResult {
    pub budget: String,
    /// The limit, for people.
    pub limit: String,
    /// The worst replicate's figure, for people (`not measured` when no
    /// replicate had it).
    pub worst: String,
    /// The worst figure in the metric's unit (bytes or MiB per unit).
    pub worst_value: Option<f64>,
    /// Replicates over the limit (or without the figure).
    pub failing_replicates: usize,
    pub pass: bool,
}

/// Checks every budget on every replicate: the worst replicate decides,
/// so a regression that shows one time in five still fails.
pub fn evaluate(budgets: &Budgets, runs: &[RunMetrics]) -> Vec<BudgetResult> {
    let mut out = vec![
        count("no OOM kill", runs, |r| r.oom_kills),
        count("server alive to the end", runs, |r| u64::from(r.died)),
        count("no failed request", runs, |r| r.failed_requests),
        count("no unverified download", runs, |r| r.unverified_requests),
    ];
    for (key, metric, limit) in budgets.limits() {
        let figures: Vec<Option<f64>> = runs.iter().map(|r| r.get(metric)).collect();
        let failing = figures
            .iter()
            .filter(|v| v.is_none_or(|v| v > limit))
            .count();
        let worst = figures.iter().flatten().copied().reduce(f64::max);
        out.push(BudgetResult {
            budget: key.to_owned(),
            limit: format!("≤ {}", metric.show(limit)),
            worst: worst.map_or_else(|| "not measured".to_owned(), |v| metric.show(v)),
            worst_value: worst,
            failing_replicates: failing,
            pass: failing == 0 && !runs.is_empty(),
        });
    }
    out
}

fn count(name: &str, runs: &[RunMetrics], f: impl Fn(&RunMetrics) -> u64) -> BudgetResult {
    let worst = runs.iter().map(&f).max().unwrap_or(0);
    let failing = runs.iter().filter(|r| f(r) > 0).count();
    BudgetResult {
        budget: name.to_owned(),
        limit: "= 0".to_owned(),
        worst: worst.to_string(),
        worst_value: Some(worst as f64),
        failing_replicates: failing,
        pass: failing == 0 && !runs.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn run(anon_mib: f64, wal: Option<f64>, oom: u64) -> RunMetrics {
        let mut values = BTreeMap::new();
        values.insert(Metric::PeakAnon, anon_mib * 1048576.0);
        if let Some(w) = wal {
            values.insert(Metric::PeakWal, w);
        }
        RunMetrics {
            run_dir: "r".into(),
            passed: oom == 0,
            verdict: None,
            oom_kills: oom,
            died: oom > 0,
            failed_requests: 0,
            unverified_requests: 0,
            phase_errors: vec![],
            values,
        }
    }

    fn budgets(text: &str) -> Budgets {
        Budgets::from_table(&text.parse::<toml::Table>().unwrap()).unwrap()
    }

    #[test]
    fn parses_sizes_and_slopes_and_refuses_unknown_keys() {
        let b = budgets("peak_anon = \"48MiB\"\nanon_mib_per_hour = 0.5\nhealthz_max = \"1s\"");
        assert_eq!(b.peak_anon, Some(ByteSize(48 << 20)));
        assert_eq!(b.healthz_max, Some(Duration::from_secs(1)));
        assert!(
            b.limits()
                .contains(&("healthz_max", Metric::HealthzMax, 1000.0))
        );
        assert_eq!(b.anon_mib_per_hour, Some(0.5));
        let err = Budgets::from_table(&"peak_anno = \"1MiB\"".parse().unwrap()).unwrap_err();
        assert!(err.to_string().contains("peak_anno"), "{err}");
    }

    #[test]
    fn worst_replicate_decides() {
        let b = budgets("peak_anon = \"48MiB\"");
        let results = evaluate(
            &b,
            &[run(20.0, None, 0), run(50.0, None, 0), run(30.0, None, 0)],
        );
        let anon = results.iter().find(|r| r.budget == "peak_anon").unwrap();
        assert!(!anon.pass);
        assert_eq!(anon.failing_replicates, 1);
        assert_eq!(anon.worst, "50.0 MiB");
        assert!(
            results
                .iter()
                .filter(|r| r.budget != "peak_anon")
                .all(|r| r.pass)
        );
    }

    #[test]
    fn an_oom_kill_fails_whatever_the_figures() {
        let results = evaluate(&Budgets::default(), &[run(1.0, None, 0), run(1.0, None, 1)]);
        let oom = results.iter().find(|r| r.budget == "no OOM kill").unwrap();
        assert!(!oom.pass);
        assert_eq!(oom.failing_replicates, 1);
    }

    #[test]
    fn a_budget_without_its_figure_fails() {
        let b = budgets("wal_size = \"32MiB\"");
        let results = evaluate(&b, &[run(1.0, Some(1000.0), 0), run(1.0, None, 0)]);
        let wal = results.iter().find(|r| r.budget == "wal_size").unwrap();
        assert!(!wal.pass);
        assert_eq!(wal.failing_replicates, 1);
    }

    #[test]
    fn no_replicates_pass_nothing() {
        assert!(evaluate(&Budgets::default(), &[]).iter().all(|r| !r.pass));
    }
}
