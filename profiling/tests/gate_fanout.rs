//! A gate split over CI jobs: three `rig gate --replicate-only K` processes,
//! one after another, each into its own directory (as a matrix job's
//! artifact), then `rig gate --merge` over them. Its decision (failures,
//! budgets, the baseline comparison) is the one a gate makes over the same
//! runs, and the figures it measured again from the run directories are
//! those each replicate measured when it ran.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::path::Path;
use std::process::Command;

use common::{read_json, workspace};

use profiling::gate::baseline::Baseline;
use profiling::gate::budgets::Budgets;
use profiling::gate::metrics::RunMetrics;
use profiling::gate::{decide, fanout};
use profiling::scenario::{Scenario, ServerSpec};

fn rig(args: &[&str], scenario: &Path) -> std::process::ExitStatus {
    Command::new(env!("CARGO_BIN_EXE_rig"))
        .arg("gate")
        .arg(scenario)
        .args(["--no-progress", "--workspace"])
        .arg(workspace())
        .args(args)
        .status()
        .unwrap()
}

#[test]
fn a_merged_split_gate_decides_as_one_gate_over_the_same_runs() {
    let root = nix::unistd::Uid::effective().is_root();
    let mode = if root { "cgroup" } else { "none" };
    let binary = profiling::target::build_debug_with(&ServerSpec::default(), &workspace()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("fanout.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"
            name = "fanout"
            [machine]
            mode = "{mode}"
            memory = "256MiB"
            [server]
            binary = "{}"
            [[phases]]
            name = "upload"
            [phases.loadgen]
            scenario = "upload"
            users = 1
            iterations = 1
            size = "4MB"
            [budgets]
            peak_rss = "1MiB"     # fails: the decision has something to say
            "#,
            binary.display()
        ),
    )
    .unwrap();

    // Three jobs, three artifacts.
    let split = dir.path().join("split");
    for k in 1..=3 {
        let runs = split.join(format!("replicate-{k}"));
        let k = k.to_string();
        let runs = runs.to_str().unwrap();
        let args = ["--replicate-only", &k, "--runs-dir", runs, "--no-baseline"];
        assert!(rig(&args, &scenario).success(), "replicate {k}");
    }
    // What each job measured when it ran.
    let mut as_run: Vec<(std::path::PathBuf, RunMetrics)> = Vec::new();
    for entry in walk(&split) {
        if entry.ends_with(fanout::REPLICATE_JSON) {
            let m: RunMetrics =
                serde_json::from_str(&std::fs::read_to_string(&entry).unwrap()).unwrap();
            as_run.push((entry.parent().unwrap().to_path_buf(), m));
        }
    }
    as_run.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(as_run.len(), 3, "{as_run:?}");

    // A baseline at half the figures: comparisons with real p-values.
    let halved: Vec<RunMetrics> = as_run
        .iter()
        .map(|(_, m)| {
            let mut m = m.clone();
            m.values.values_mut().for_each(|v| *v /= 2.0);
            m
        })
        .collect();
    let baseline_file = dir.path().join("baseline.json");
    let baseline = Baseline::of("fanout", None, &halved);
    baseline.save(&baseline_file).unwrap();

    let merged = dir.path().join("merged");
    let status = rig(
        &[
            "--merge",
            split.to_str().unwrap(),
            "--runs-dir",
            merged.to_str().unwrap(),
            "--baseline",
            baseline_file.to_str().unwrap(),
            "--no-attribution",
        ],
        &scenario,
    );
    assert_eq!(status.code(), Some(1), "a budget fails: exit 1");
    let gate_dir = std::fs::read_dir(&merged)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let report = read_json(&gate_dir.join("gate.json"));

    // The figures measured again from the unpacked runs are those of the runs.
    let merged_replicates: Vec<RunMetrics> =
        serde_json::from_value(report["replicates"].clone()).unwrap();
    assert_eq!(merged_replicates.len(), 3);
    for ((run_dir, ran), again) in as_run.iter().zip(&merged_replicates) {
        assert_eq!(&again.run_dir, run_dir);
        assert_eq!(again.values, ran.values, "{}", run_dir.display());
        assert_eq!(again.verdict, ran.verdict);
    }

    // And the decision is a gate's over those replicates.
    let s = Scenario::load(&scenario).unwrap();
    let budgets = Budgets::from_table(&s.budgets).unwrap();
    let replicates: Vec<RunMetrics> = as_run.into_iter().map(|(_, m)| m).collect();
    let decision = decide(&budgets, Some(&baseline), &replicates);
    let failures: Vec<String> = serde_json::from_value(report["failures"].clone()).unwrap();
    assert_eq!(failures, decision.failures);
    assert!(
        failures.contains(&"budget peak_rss".to_owned()),
        "{failures:?}"
    );
    let p: Vec<f64> = report["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["p_higher"].as_f64().unwrap())
        .collect();
    let expected: Vec<f64> = decision.comparisons.iter().map(|c| c.p_higher).collect();
    assert_eq!(p, expected);
    assert!(!p.is_empty());
    assert_eq!(report["passed"], false);
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
