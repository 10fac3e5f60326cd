//! A gate spread over CI jobs: each job of a matrix runs one replicate
//! (`rig gate SCENARIO --replicate-only K`) and uploads its run directory;
//! one job gathers them and decides (`rig gate SCENARIO --merge DIRS...`)
//! with the same budgets, baseline statistics and attribution as a gate
//! that ran them all itself. The run directories are the interface: the
//! merge measures each one again from its own files (`outcome.json`,
//! `samples.jsonl`, `healthz.jsonl`), wherever it was unpacked.

use std::path::{Path, PathBuf};

use chrono::Utc;

use super::metrics::RunMetrics;
use super::{GateError, GateOptions, GateReport, conclude, gate_dir, io, measure_run};
use crate::scenario::Scenario;

/// The file a replicate leaves beside its run: its figures as measured by
/// the job that ran it (the merge measures again; a check, not the input).
pub const REPLICATE_JSON: &str = "replicate.json";
/// How deep under each merged directory run directories are looked for.
const MAX_DEPTH: usize = 4;

/// Runs replicate `k` of the scenario into `options.runs_dir` and writes its
/// figures to `<run_dir>/replicate.json`.
pub async fn replicate_only(options: &GateOptions, k: usize) -> Result<RunMetrics, GateError> {
    let scenario = Scenario::load(&options.scenario)?;
    eprintln!(
        "rig gate: {} replicate {k} (of a split gate)",
        scenario.name
    );
    std::fs::create_dir_all(&options.runs_dir)
        .map_err(io(format!("creating {}", options.runs_dir.display())))?;
    let m = super::run_replicate(options, &options.runs_dir, k).await?;
    let json = serde_json::to_string_pretty(&m).map_err(std::io::Error::other);
    let path = m.run_dir.join(REPLICATE_JSON);
    std::fs::write(&path, json.map_err(io("encoding replicate.json"))? + "\n")
        .map_err(io(format!("writing {}", path.display())))?;
    Ok(m)
}

/// Decides on every run directory found under `dirs` (replicates of
/// `options.scenario`, in name order), as one gate of that many replicates.
pub async fn merge(options: &GateOptions, dirs: &[PathBuf]) -> Result<GateReport, GateError> {
    let scenario = Scenario::load(&options.scenario)?;
    let mut runs = Vec::new();
    for dir in dirs {
        find_runs(dir, MAX_DEPTH, &mut runs)?;
    }
    runs.sort();
    runs.dedup();
    if runs.is_empty() || runs.len() > super::stats::MAX_PER_SIDE {
        return Err(GateError::Replicates {
            got: runs.len(),
            max: super::stats::MAX_PER_SIDE,
        });
    }
    let started_at = Utc::now();
    let dir = gate_dir(options, &scenario, started_at)?;
    let mut replicates = Vec::new();
    for (i, run_dir) in runs.iter().enumerate() {
        eprintln!("rig gate: merging {}", run_dir.display());
        replicates.push(measure_dir(run_dir, i + 1)?);
    }
    conclude(options, &scenario, dir, started_at, replicates).await
}

/// Measures the run in `run_dir` from its files, wherever it now is.
pub fn measure_dir(run_dir: &Path, replicate: usize) -> Result<RunMetrics, GateError> {
    let path = run_dir.join(run_format::files::OUTCOME);
    let text = std::fs::read_to_string(&path).map_err(io(format!("reading {}", path.display())))?;
    let mut outcome: crate::run::Outcome = serde_json::from_str(&text)
        .map_err(|e| std::io::Error::other(e.to_string()))
        .map_err(io(format!("{} is not a run's outcome", path.display())))?;
    outcome.run_dir = run_dir.to_path_buf();
    measure_run(&outcome, replicate)
}

/// Directories under `dir` (itself included) holding an `outcome.json`.
fn find_runs(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) -> Result<(), GateError> {
    if dir.join(run_format::files::OUTCOME).is_file() {
        found.push(dir.to_path_buf());
        return Ok(());
    }
    if depth == 0 {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(io(format!("reading {}", dir.display())))?;
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            find_runs(&entry.path(), depth - 1, found)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_found_in_unpacked_artifacts_and_only_there() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let a = root.path().join("replicate-1/runs/ci-gate-1");
        let b = root.path().join("replicate-2/ci-gate-2");
        for d in [&a, &b] {
            std::fs::create_dir_all(d.join("loadgen")).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(d.join(run_format::files::OUTCOME), "{}")
                .unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::create_dir_all(root.path().join("empty/x")).unwrap_or_else(|e| panic!("{e}"));
        let mut found = Vec::new();
        find_runs(root.path(), MAX_DEPTH, &mut found).unwrap_or_else(|e| panic!("{e}"));
        found.sort();
        assert_eq!(found, [a, b]);
    }
}
