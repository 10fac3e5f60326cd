//! `rig power` end to end on a small scenario: a clean gate and a gate of a
//! fixture that holds 96 MiB per upload, against a 56 MiB `peak_rss` budget.
//! The clean build passes, the fixture is flagged by that budget, and the
//! files say so: `power.json` (gates, rates, MDE, tuning grid), `power.md`
//! and the plot.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::process::Command;

use common::{read_json, workspace};
use profiling::scenario::ServerSpec;

#[test]
fn power_flags_a_large_fixture_and_not_the_clean_build() {
    let root = nix::unistd::Uid::effective().is_root();
    let mode = if root { "cgroup" } else { "none" };
    // A scenario naming its binary runs it for every build: this one has the
    // fixtures compiled in, and the clean gates run it without `--regression`.
    let spec = ServerSpec {
        features: vec!["regressions".into()],
        ..ServerSpec::default()
    };
    let binary = profiling::target::build_debug_with(&spec, &workspace()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("power.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"
            name = "power"
            [machine]
            mode = "{mode}"
            memory = "512MiB"
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
            peak_rss = "56MiB"
            "#,
            binary.display()
        ),
    )
    .unwrap();
    let runs = dir.path().join("runs");
    let out = Command::new(env!("CARGO_BIN_EXE_rig"))
        .arg("power")
        .arg(&scenario)
        .args(["--no-progress", "--no-baseline", "--replicates", "1"])
        .args(["--clean-gates", "1", "--gates-per-size", "1"])
        .args(["--fixtures", "retain-per-upload=96MiB"])
        .arg("--workspace")
        .arg(workspace())
        .arg("--runs-dir")
        .arg(&runs)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let power_dir = std::fs::read_dir(&runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let report = read_json(&power_dir.join("power.json"));

    let gates = report["gates"].as_array().unwrap();
    let names: Vec<&str> = gates
        .iter()
        .map(|g| g["variant"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["clean-1", "retain-per-upload=96MiB"]);
    assert_eq!(gates[0]["flagged"], false, "{:#}", gates[0]);
    assert_eq!(gates[1]["flagged"], true, "{:#}", gates[1]);
    assert!(
        gates[1]["failures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "budget peak_rss"),
        "{:#}",
        gates[1]
    );

    let a = &report["analysis"];
    assert_eq!(a["false_alarms"]["gates"], 1);
    assert_eq!(a["false_alarms"]["flagged"], 0);
    assert_eq!(a["rows"][1]["build"], "retain-per-upload=96MiB");
    assert_eq!(a["rows"][1]["detection"]["rate"], 1.0);
    assert_eq!(a["mde"][0]["fixture"], "retain-per-upload");
    assert_eq!(a["mde"][0]["detected_at"], 96 << 20);
    // One replicate: the tuning grid is that replicate at each floor.
    assert_eq!(
        a["tuning"].as_array().unwrap().len(),
        profiling::gate::power::analysis::TUNING_FLOORS_MIB.len()
    );

    let md = std::fs::read_to_string(power_dir.join("power.md")).unwrap();
    assert!(md.contains("False alarms: 0/1"), "{md}");
    assert!(
        md.contains("| retain-per-upload=96MiB | 1/1 = 100 %"),
        "{md}"
    );
    assert!(stdout.contains("Minimum detectable effect"), "{stdout}");
    let svg = std::fs::read_to_string(power_dir.join("power.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("retain-per-upload"));
}
