//! `rig power`: what the gate can see. Clean gates (false alarms) and gates
//! of sized fixtures at several sizes (detection), interleaved round by
//! round so that the machine's drift over an hour falls on every size
//! alike; per size the detection rate, its interval and the wall time, and
//! the minimum detectable effect at 90 % detection. Every gate's replicate
//! figures are kept, so the same runs are decided again with fewer
//! replicates and other effect floors: the tuning table.
//!
//! - [`analysis`]: rates, intervals, the MDE and the tuning grid.
//! - [`plot`]: detection rate against effect size, `power.svg`.

pub mod analysis;
pub mod plot;

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::baseline::Baseline;
use super::metrics::{Metric, RunMetrics};
use super::prove::{Variant, gate_variant};
use super::{GateError, GateOptions, gate, io};
use crate::fixture::Fixture;
use crate::scenario::Scenario;
use analysis::Analysis;

pub const POWER_JSON: &str = "power.json";
pub const POWER_MD: &str = "power.md";
pub const POWER_SVG: &str = "power.svg";

/// What `rig power` measures.
pub struct PowerOptions {
    /// The gate as CI runs it (replicates, baseline); attribution is off.
    pub gate: GateOptions,
    pub clean_gates: usize,
    /// Sized fixtures, one per size (`retain-per-upload=1MiB`, …).
    pub fixtures: Vec<Fixture>,
    pub gates_per_fixture: usize,
    /// First one more clean gate whose replicates become the baseline
    /// (`<dir>/baseline.json`), instead of `gate.baseline`.
    pub fresh_baseline: bool,
}

/// One gate of the measurement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PowerGate {
    pub variant: Variant,
    /// The round it ran in (from 1): each round runs one gate of every build.
    pub round: usize,
    pub flagged: bool,
    pub failures: Vec<String>,
    /// Δ of the median peak anon against the baseline's, bytes.
    pub delta_peak_anon: Option<f64>,
    pub wall_seconds: f64,
    /// Every replicate's figures, to decide again (fewer replicates, other floors).
    pub replicates: Vec<RunMetrics>,
    pub gate_dir: PathBuf,
}

/// `power.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PowerReport {
    pub schema: u32,
    pub scenario: PathBuf,
    pub git_revision: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// Replicates per gate.
    pub replicates: usize,
    pub baseline: Option<PathBuf>,
    pub gates: Vec<PowerGate>,
    pub analysis: Analysis,
}

/// Runs the rounds and writes `power.json`, `power.md` and `power.svg`
/// after every gate (an interrupted measurement keeps what it measured).
pub async fn power(options: &PowerOptions) -> Result<PowerReport, GateError> {
    let scenario = Scenario::load(&options.gate.scenario)?;
    let budgets = super::budgets::Budgets::from_table(&scenario.budgets)?;
    let started_at = Utc::now();
    let dir = super::dated_dir(&options.gate.runs_dir, "power", &scenario.name, started_at)?;
    let text = std::fs::read_to_string(&options.gate.scenario)
        .map_err(io(format!("reading {}", options.gate.scenario.display())))?;
    let baseline_file = match options.fresh_baseline {
        true => Some(fresh_baseline(options, &dir).await?),
        false => options.gate.baseline.clone(),
    };
    let baseline = baseline_file.as_deref().map(Baseline::load).transpose()?;
    // Every gate: against that baseline, no attribution run.
    let gate_options = GateOptions {
        baseline: baseline_file.clone(),
        attribution: false,
        ..options.gate.clone()
    };

    let mut report = PowerReport {
        schema: 1,
        scenario: options.gate.scenario.clone(),
        git_revision: crate::meta::git(&options.gate.workspace).revision,
        started_at,
        finished_at: started_at,
        replicates: options.gate.replicates,
        baseline: baseline_file.clone(),
        gates: Vec::new(),
        analysis: Analysis::default(),
    };
    let schedule = schedule(
        options.clean_gates,
        &options.fixtures,
        options.gates_per_fixture,
    );
    let total = schedule.len();
    for (i, (round, variant)) in schedule.into_iter().enumerate() {
        eprintln!(
            "rig power: gate {}/{total}: {variant} (round {round})",
            i + 1
        );
        let clock = Instant::now();
        let g = gate_variant(&gate_options, &text, &dir, variant).await?;
        report.gates.push(PowerGate {
            variant,
            round,
            flagged: !g.passed,
            delta_peak_anon: g
                .comparisons
                .iter()
                .find(|c| c.metric == Metric::PeakAnon)
                .map(|c| c.delta),
            failures: g.failures,
            wall_seconds: clock.elapsed().as_secs_f64(),
            replicates: g.replicates,
            gate_dir: g.dir,
        });
        report.finished_at = Utc::now();
        report.analysis = analysis::analyse(&report.gates, &budgets, baseline.as_ref());
        write(&report, &dir)?;
    }
    Ok(report)
}

/// Reads `<dir>/power.json` and writes it, `power.md` and `power.svg` again
/// with this rig's analysis (its budgets from `scenario`, the baseline the
/// measurement used).
pub fn reanalyse(dir: &Path, scenario: &Path) -> Result<PowerReport, GateError> {
    let path = dir.join(POWER_JSON);
    let text = std::fs::read_to_string(&path).map_err(io(format!("reading {}", path.display())))?;
    let mut report: PowerReport = serde_json::from_str(&text)
        .map_err(std::io::Error::other)
        .map_err(io(format!("{} is not a power.json", path.display())))?;
    let s = Scenario::load(scenario)?;
    let budgets = super::budgets::Budgets::from_table(&s.budgets)?;
    let baseline = report.baseline.as_deref().map(Baseline::load).transpose()?;
    report.analysis = analysis::analyse(&report.gates, &budgets, baseline.as_ref());
    write(&report, dir)?;
    Ok(report)
}

/// A clean gate without a baseline, its replicates written as
/// `<dir>/baseline.json`: the baseline of this build on this machine now.
async fn fresh_baseline(options: &PowerOptions, dir: &Path) -> Result<PathBuf, GateError> {
    eprintln!("rig power: the baseline gate");
    let g = gate(&GateOptions {
        baseline: None,
        runs_dir: dir.join("baseline"),
        attribution: false,
        ..options.gate.clone()
    })
    .await?;
    let git = crate::meta::git(&options.gate.workspace);
    let path = dir.join("baseline.json");
    Baseline::of(&g.scenario, git.revision, &g.replicates).save(&path)?;
    if !g.passed {
        eprintln!(
            "rig power: warning: the baseline gate failed its budgets ({}); measuring against it anyway",
            g.failures.join(", ")
        );
    }
    Ok(path)
}

/// Round by round: every fixture's gate and a clean one per round, while
/// each has gates left (clean first, so a round starts from the baseline's build).
pub fn schedule(
    clean_gates: usize,
    fixtures: &[Fixture],
    gates_per_fixture: usize,
) -> Vec<(usize, Variant)> {
    let rounds = clean_gates.max(if fixtures.is_empty() {
        0
    } else {
        gates_per_fixture
    });
    let mut out = Vec::new();
    for round in 1..=rounds {
        if round <= clean_gates {
            out.push((round, Variant::Clean(round)));
        }
        if round <= gates_per_fixture {
            out.extend(fixtures.iter().map(|&f| (round, Variant::Fixture(f))));
        }
    }
    out
}

/// `power.json`, `power.md` and `power.svg` in `dir`.
pub fn write(report: &PowerReport, dir: &Path) -> Result<(), GateError> {
    let json = serde_json::to_string_pretty(report).map_err(std::io::Error::other);
    std::fs::write(
        dir.join(POWER_JSON),
        json.map_err(io("encoding power.json"))? + "\n",
    )
    .map_err(io("writing power.json"))?;
    std::fs::write(dir.join(POWER_MD), analysis::markdown(report))
        .map_err(io("writing power.md"))?;
    match plot::svg(&report.analysis) {
        Ok(svg) => std::fs::write(dir.join(POWER_SVG), svg).map_err(io("writing power.svg"))?,
        Err(e) => eprintln!("rig power: warning: no plot: {e}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use loadgen::ByteSize;

    #[test]
    fn rounds_interleave_every_build_and_stop_when_each_has_its_gates() {
        let a = Fixture::RetainPerUpload(ByteSize(1 << 20));
        let b = Fixture::RetainPerUpload(ByteSize(2 << 20));
        let s = schedule(3, &[a, b], 2);
        let names: Vec<String> = s.iter().map(|(r, v)| format!("{r}:{v}")).collect();
        assert_eq!(
            names,
            [
                "1:clean-1",
                "1:retain-per-upload=1MiB",
                "1:retain-per-upload=2MiB",
                "2:clean-2",
                "2:retain-per-upload=1MiB",
                "2:retain-per-upload=2MiB",
                "3:clean-3",
            ]
        );
        assert_eq!(schedule(0, &[a], 2).len(), 2);
        assert!(schedule(0, &[], 5).is_empty());
    }
}
