//! `rig gate`: the CI memory-regression gate. Runs a scenario N times, holds
//! every replicate to the scenario's `[budgets]`, compares the replicates'
//! peaks with a committed baseline by a rank test and a bootstrap interval
//! with an effect floor, and writes `gate.json` and `gate.md`.
//!
//! `rig gate --prove` runs the clean build and each of the story's bugs
//! (`share-server --features regressions --regression NAME`) through the
//! same gate and prints which budget or metric caught each one.
//!
//! - [`stats`]: Mann-Whitney U (exact) and the bootstrap.
//! - [`metrics`]: the figures of one run.
//! - [`budgets`]: `[budgets]` and their evaluation.
//! - [`baseline`]: baseline files and the comparison.
//! - [`output`]: the terminal table, `gate.md` and `gate.json`.

pub mod baseline;
pub mod budgets;
pub mod metrics;
pub mod output;
pub mod stats;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::run::{RunError, RunOptions, run};
use crate::scenario::{Scenario, ScenarioError};
use baseline::{Baseline, BaselineError, Comparison};
use budgets::{BudgetResult, Budgets, BudgetsError};
use metrics::RunMetrics;

/// Replicates per gate unless told otherwise: the fewest for which the exact
/// one-sided rank test can reach p < 0.05 with room (1/252 at 5 vs 5).
pub const DEFAULT_REPLICATES: usize = 5;

/// The fixtures of `--prove`: `share-server --regression NAME`.
pub const FIXTURES: [&str; 5] = [
    "buffered-multipart",
    "leaked-temp-files",
    "read-all-chunks",
    "upload-transaction",
    "periodic-vacuum",
];

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
    #[error("making the fixture scenario: {0}")]
    Fixture(String),
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

pub struct GateOptions {
    pub scenario: PathBuf,
    /// Compare with this baseline (none: budgets only).
    pub baseline: Option<PathBuf>,
    pub replicates: usize,
    /// Where the gate's directory goes (`runs/`).
    pub runs_dir: PathBuf,
    pub workspace: PathBuf,
    pub progress: bool,
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
    let budgets = Budgets::from_table(&scenario.budgets)?;
    let baseline = options
        .baseline
        .as_deref()
        .map(|p| Baseline::load(p).map(|b| (p.to_path_buf(), b)))
        .transpose()?;
    let started_at = Utc::now();
    let dir = options.runs_dir.join(format!(
        "gate-{}-{}",
        scenario.name,
        started_at.format("%Y%m%dT%H%M%SZ")
    ));
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;

    let mut replicates = Vec::new();
    for replicate in 1..=options.replicates {
        eprintln!(
            "rig gate: {} replicate {replicate}/{}",
            scenario.name, options.replicates
        );
        let outcome = run(RunOptions {
            scenario: options.scenario.clone(),
            runs_dir: dir.clone(),
            workspace: options.workspace.clone(),
            progress: options.progress,
        })
        .await
        .map_err(|source| GateError::Run {
            replicate,
            source: Box::new(source),
        })?;
        let verdict = match reports::report(&outcome.run_dir) {
            Ok(summary) => Some(summary.verdict.to_string()),
            Err(e) => {
                eprintln!("rig gate: warning: no report for replicate {replicate}: {e}");
                None
            }
        };
        let m = metrics::measure(&outcome, verdict)
            .map_err(|source| GateError::Measure { replicate, source })?;
        replicates.push(m);
    }

    let budget_results = budgets::evaluate(&budgets, &replicates);
    let (comparisons, baseline_info) = match &baseline {
        Some((path, b)) => (
            baseline::compare(b, &replicates),
            Some(BaselineInfo {
                path: path.clone(),
                created: b.created,
                git_revision: b.git_revision.clone(),
                machine_differences: baseline::MachineFacts::current().differences(&b.machine),
            }),
        ),
        None => (Vec::new(), None),
    };
    let failures: Vec<String> = budget_results
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
    let report = GateReport {
        schema: 1,
        scenario: scenario.name.clone(),
        dir: dir.clone(),
        started_at,
        finished_at: Utc::now(),
        passed: failures.is_empty(),
        failures,
        replicates,
        budgets: budget_results,
        baseline: baseline_info,
        comparisons,
    };
    output::write(&report, &dir)?;
    Ok(report)
}

/// Writes the baseline of a passing gate to `path`.
pub fn update_baseline(
    report: &GateReport,
    path: &Path,
    workspace: &Path,
) -> Result<Baseline, GateError> {
    let git = crate::meta::git(workspace);
    let b = Baseline::of(&report.scenario, git.revision, &report.replicates);
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

/// One row of the `--prove` detection table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Detection {
    /// `clean` or a fixture name.
    pub variant: String,
    pub verdicts: Vec<String>,
    pub flagged: bool,
    /// The budgets and metrics that caught it.
    pub flagged_by: Vec<String>,
    /// Effect sizes of what caught it, for people.
    pub effects: Vec<String>,
    pub gate_dir: PathBuf,
}

impl Detection {
    fn of(variant: &str, r: &GateReport) -> Detection {
        let mut effects: Vec<String> = r
            .budgets
            .iter()
            .filter(|b| !b.pass)
            .map(|b| format!("{} {} (limit {})", b.budget, b.worst, b.limit))
            .collect();
        effects.extend(r.comparisons.iter().filter(|c| c.regression).map(|c| {
            format!(
                "{} {:+.0}% ({} → {}, p={:.3})",
                c.metric,
                c.delta_relative * 100.0,
                c.metric.show(c.baseline_median),
                c.metric.show(c.current_median),
                c.p_higher
            )
        }));
        Detection {
            variant: variant.to_owned(),
            verdicts: r.verdicts(),
            flagged: !r.passed,
            flagged_by: r.failures.clone(),
            effects,
            gate_dir: r.dir.clone(),
        }
    }
}

/// `--prove`: the clean build `clean_gates` times, then each fixture once,
/// every one a full gate against the baseline.
pub async fn prove(
    options: &GateOptions,
    clean_gates: usize,
    fixtures: &[String],
) -> Result<Vec<Detection>, GateError> {
    let scenario = Scenario::load(&options.scenario)?;
    let dir = options.runs_dir.join(format!(
        "prove-{}-{}",
        scenario.name,
        Utc::now().format("%Y%m%dT%H%M%SZ")
    ));
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let text = std::fs::read_to_string(&options.scenario)
        .map_err(io(format!("reading {}", options.scenario.display())))?;

    let mut variants: Vec<(String, Option<&str>)> = (1..=clean_gates)
        .map(|i| (format!("clean-{i}"), None))
        .collect();
    variants.extend(fixtures.iter().map(|f| (f.clone(), Some(f.as_str()))));
    let mut rows = Vec::new();
    for (variant, regression) in variants {
        let file = dir.join(format!("{variant}.toml"));
        std::fs::write(&file, fixture_scenario(&text, regression)?)
            .map_err(io(format!("writing {}", file.display())))?;
        let report = gate(&GateOptions {
            scenario: file,
            baseline: options.baseline.clone(),
            replicates: options.replicates,
            runs_dir: dir.clone(),
            workspace: options.workspace.clone(),
            progress: options.progress,
        })
        .await?;
        let row = Detection::of(&variant, &report);
        eprintln!(
            "rig gate --prove: {variant}: {}",
            if row.flagged { "FLAGGED" } else { "passed" }
        );
        rows.push(row);
    }
    output::write_prove(&rows, &dir, &options.scenario)?;
    Ok(rows)
}

/// The scenario text with the `regressions` feature and `--regression NAME`
/// added (unchanged for the clean build).
pub fn fixture_scenario(text: &str, regression: Option<&str>) -> Result<String, GateError> {
    let Some(name) = regression else {
        return Ok(text.to_owned());
    };
    let bad = |what: &str| GateError::Fixture(what.to_owned());
    let mut doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| bad(e.message()))?;
    let server = doc
        .entry("server")
        .or_insert_with(|| toml::Value::Table(Default::default()))
        .as_table_mut()
        .ok_or_else(|| bad("[server] is not a table"))?;
    let mut push = |key: &str, values: &[&str]| -> Result<(), GateError> {
        let list = server
            .entry(key)
            .or_insert_with(|| toml::Value::Array(Vec::new()))
            .as_array_mut()
            .ok_or_else(|| bad("server.features and server.args must be lists"))?;
        list.extend(values.iter().map(|v| toml::Value::String((*v).to_owned())));
        Ok(())
    };
    push("features", &["regressions"])?;
    push("args", &["--regression", name])?;
    if let Some(toml::Value::String(n)) = doc.get_mut("name") {
        *n = format!("{n}-{name}");
    }
    toml::to_string(&doc).map_err(|e| bad(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_scenarios_add_the_feature_and_flag() {
        let text = "name = \"g\"\n[server]\nargs = [\"--gc-interval\", \"2s\"]\n";
        let out = fixture_scenario(text, Some("read-all-chunks")).unwrap();
        let s = Scenario::parse(&out, Path::new("x.toml")).unwrap();
        assert_eq!(s.name, "g-read-all-chunks");
        assert_eq!(s.server.features, ["regressions"]);
        assert_eq!(
            s.server.args,
            ["--gc-interval", "2s", "--regression", "read-all-chunks"]
        );
        assert_eq!(fixture_scenario(text, None).unwrap(), text);
        // A scenario without [server] gets one.
        let out = fixture_scenario("name = \"g\"\n", Some("x")).unwrap();
        assert!(Scenario::parse(&out, Path::new("x.toml")).is_ok());
    }
}
