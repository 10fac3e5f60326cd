//! `rig gate`: the CI memory-regression gate. Runs a scenario N times, holds
//! every replicate to the scenario's `[budgets]`, compares the replicates'
//! peaks with a committed baseline by a rank test and a bootstrap interval
//! with an effect floor, and writes `gate.json` and `gate.md`.
//!
//! - [`stats`]: Mann-Whitney U (exact) and the bootstrap.
//! - [`metrics`]: the figures of one run.
//! - [`budgets`]: `[budgets]` and their evaluation.
//! - [`baseline`]: baseline files and the comparison.
//! - [`output`]: the terminal table, `gate.md` and `gate.json`.
//! - [`attribution`]: after a failure, one profiled run that names what grew.
//! - [`fanout`]: one replicate per CI job (`--replicate-only K`) and the
//!   decision on all of them (`--merge DIRS`).
//! - [`prove`]: `rig prove`, the clean build and each of the story's bugs
//!   through the same gate, and which budget or metric caught each one.
//! - [`power`]: `rig power`, detection rate by effect size and false alarms
//!   over many gates, and the tuning grid.

pub mod attribution;
pub mod baseline;
pub mod budgets;
pub mod fanout;
pub mod metrics;
pub mod output;
pub mod power;
pub mod prove;
pub mod stats;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::run::{RunError, RunOptions, run};
use crate::scenario::{Scenario, ScenarioError};
use attribution::Attribution;
use baseline::{Baseline, BaselineError, Comparison};
use budgets::{BudgetResult, Budgets, BudgetsError};
use metrics::RunMetrics;

/// Replicates per gate unless told otherwise: the fewest for which the exact
/// one-sided rank test can reach p < 0.05 with room (1/252 at 5 vs 5).
pub const DEFAULT_REPLICATES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("{0}")]
    Budgets(#[from] BudgetsError),
    #[error(transparent)]
    Baseline(#[from] BaselineError),
    #[error("replicate {replicate}: {source}")]
    Run {
        replicate: usize,
        source: Box<RunError>,
    },
    #[error("replicate {replicate}: {source}")]
    Measure {
        replicate: usize,
        source: metrics::MetricsError,
    },
    /// `rig prove` could not add a fixture to the scenario.
    #[error(transparent)]
    Fixture(#[from] crate::fixture::FixtureError),
    #[error("--replicates must be 1 to {max}, got {got}")]
    Replicates { got: usize, max: usize },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> GateError {
    let context = context.into();
    move |source| GateError::Io { context, source }
}

#[derive(Clone)]
pub struct GateOptions {
    pub scenario: PathBuf,
    /// Compare with this baseline (none: budgets only).
    pub baseline: Option<PathBuf>,
    pub replicates: usize,
    /// Where the gate's directory goes (`runs/`).
    pub runs_dir: PathBuf,
    pub workspace: PathBuf,
    pub progress: bool,
    /// After a failure, one more run with heap profiles to name what grew.
    pub attribution: bool,
}

/// The baseline a gate compared with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaselineInfo {
    pub path: PathBuf,
    pub created: DateTime<Utc>,
    pub git_revision: Option<String>,
    /// How this machine differs from the baseline's (a warning, not a failure).
    pub machine_differences: Vec<String>,
}

/// `gate.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateReport {
    pub schema: u32,
    pub scenario: String,
    pub dir: PathBuf,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub replicates: Vec<RunMetrics>,
    pub budgets: Vec<BudgetResult>,
    pub baseline: Option<BaselineInfo>,
    pub comparisons: Vec<Comparison>,
    /// What failed: budget names and regressed metrics.
    pub failures: Vec<String>,
    pub passed: bool,
    /// What grew, named by the attribution run of a failed gate.
    #[serde(default)]
    pub attribution: Option<Attribution>,
}

impl GateReport {
    pub fn verdicts(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .replicates
            .iter()
            .map(|r| r.verdict.clone().unwrap_or_else(|| "no report".into()))
            .collect();
        v.dedup();
        v
    }
}

/// Runs the gate: N replicates, budgets, baseline comparison, output files.
pub async fn gate(options: &GateOptions) -> Result<GateReport, GateError> {
    if options.replicates == 0 || options.replicates > stats::MAX_PER_SIDE {
        return Err(GateError::Replicates {
            got: options.replicates,
            max: stats::MAX_PER_SIDE,
        });
    }
    let scenario = Scenario::load(&options.scenario)?;
    let started_at = Utc::now();
    let dir = gate_dir(options, &scenario, started_at)?;
    let mut replicates = Vec::new();
    for replicate in 1..=options.replicates {
        eprintln!(
            "rig gate: {} replicate {replicate}/{}",
            scenario.name, options.replicates
        );
        replicates.push(run_replicate(options, &dir, replicate).await?);
    }
    conclude(options, &scenario, dir, started_at, replicates).await
}

/// `runs/gate-<scenario>-<UTC>/`, created.
fn gate_dir(
    options: &GateOptions,
    scenario: &Scenario,
    started_at: DateTime<Utc>,
) -> Result<PathBuf, GateError> {
    dated_dir(&options.runs_dir, "gate", &scenario.name, started_at)
}

/// `<runs_dir>/<kind>-<scenario>-<UTC>/`, created: where a gate, a proof or
/// a power measurement writes.
fn dated_dir(
    runs_dir: &Path,
    kind: &str,
    scenario: &str,
    at: DateTime<Utc>,
) -> Result<PathBuf, GateError> {
    let dir = runs_dir.join(format!("{kind}-{scenario}-{}", at.format("%Y%m%dT%H%M%SZ")));
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    Ok(dir)
}

/// One replicate: a run of the scenario into `runs_dir`, its report, its figures.
async fn run_replicate(
    options: &GateOptions,
    runs_dir: &Path,
    replicate: usize,
) -> Result<RunMetrics, GateError> {
    let outcome = run(RunOptions {
        scenario: options.scenario.clone(),
        runs_dir: runs_dir.to_path_buf(),
        workspace: options.workspace.clone(),
        progress: options.progress,
        heap_profiles: None,
        regression: None,
    })
    .await
    .map_err(|source| GateError::Run {
        replicate,
        source: Box::new(source),
    })?;
    measure_run(&outcome, replicate)
}

/// A finished run's figures, with its report's verdict (written now).
fn measure_run(outcome: &crate::run::Outcome, replicate: usize) -> Result<RunMetrics, GateError> {
    let verdict = match reports::report(&outcome.run_dir) {
        Ok(summary) => Some(summary.verdict.to_string()),
        Err(e) => {
            eprintln!("rig gate: warning: no report for replicate {replicate}: {e}");
            None
        }
    };
    metrics::measure(outcome, verdict).map_err(|source| GateError::Measure { replicate, source })
}

/// The decision on a set of replicates: budgets, the baseline comparison,
/// what failed. The same for a gate's own runs and for merged ones.
pub struct Decision {
    pub budgets: Vec<BudgetResult>,
    pub comparisons: Vec<Comparison>,
    pub failures: Vec<String>,
}

pub fn decide(
    budgets: &Budgets,
    baseline: Option<&Baseline>,
    replicates: &[RunMetrics],
) -> Decision {
    decide_with(budgets, baseline, replicates, baseline::Floor::DEFAULT)
}

/// [`decide`] with another effect floor (`rig power`'s tuning).
pub fn decide_with(
    budgets: &Budgets,
    baseline: Option<&Baseline>,
    replicates: &[RunMetrics],
    floor: baseline::Floor,
) -> Decision {
    let budget_results = budgets::evaluate(budgets, replicates);
    let comparisons =
        baseline.map_or_else(Vec::new, |b| baseline::compare_with(b, replicates, floor));
    let failures = budget_results
        .iter()
        .filter(|b| !b.pass)
        .map(|b| format!("budget {}", b.budget))
        .chain(
            comparisons
                .iter()
                .filter(|c| c.regression)
                .map(|c| format!("baseline {}", c.metric)),
        )
        .collect();
    Decision {
        budgets: budget_results,
        comparisons,
        failures,
    }
}

/// Decides on `replicates`, names what grew if they failed, writes the output.
async fn conclude(
    options: &GateOptions,
    scenario: &Scenario,
    dir: PathBuf,
    started_at: DateTime<Utc>,
    replicates: Vec<RunMetrics>,
) -> Result<GateReport, GateError> {
    let budgets = Budgets::from_table(&scenario.budgets)?;
    let baseline = options
        .baseline
        .as_deref()
        .map(|p| Baseline::load(p).map(|b| (p.to_path_buf(), b)))
        .transpose()?;
    let decision = decide(&budgets, baseline.as_ref().map(|(_, b)| b), &replicates);
    let baseline_info = baseline.as_ref().map(|(path, b)| BaselineInfo {
        path: path.clone(),
        created: b.created,
        git_revision: b.git_revision.clone(),
        machine_differences: baseline::MachineFacts::current().differences(&b.machine),
    });
    let attribution = match decision.failures.is_empty() || !options.attribution {
        true => None,
        false => Some(
            attribution::attribute(
                options,
                &options.scenario,
                &dir,
                baseline.as_ref().and_then(|(_, b)| b.heap.as_ref()),
            )
            .await,
        ),
    };
    let report = GateReport {
        schema: 1,
        scenario: scenario.name.clone(),
        dir: dir.clone(),
        started_at,
        finished_at: Utc::now(),
        passed: decision.failures.is_empty(),
        failures: decision.failures,
        replicates,
        budgets: decision.budgets,
        baseline: baseline_info,
        comparisons: decision.comparisons,
        attribution,
    };
    output::write(&report, &dir)?;
    Ok(report)
}

/// Writes the baseline of a passing gate to `path`, with the peak heap
/// profile of one attribution run (unless `options.attribution` is off).
pub async fn update_baseline(
    report: &GateReport,
    options: &GateOptions,
    path: &Path,
) -> Result<Baseline, GateError> {
    let git = crate::meta::git(&options.workspace);
    let mut b = Baseline::of(&report.scenario, git.revision, &report.replicates);
    if options.attribution {
        let a = attribution::attribute(options, &options.scenario, &report.dir, None).await;
        b.heap = a.baseline_heap();
        if b.heap.is_none() {
            eprintln!(
                "rig gate: warning: the baseline has no heap profile: {}",
                a.error
                    .as_deref()
                    .unwrap_or("its peak profile could not be read")
            );
        }
    }
    b.save(path)?;
    Ok(b)
}

/// Where a scenario's baseline lives by default: `scenarios/baselines/<name>.json`
/// beside the scenario file.
pub fn default_baseline_path(scenario_file: &Path, name: &str) -> PathBuf {
    scenario_file
        .parent()
        .unwrap_or(Path::new("."))
        .join("baselines")
        .join(format!("{name}.json"))
}
