//! The CI files that cannot run here stay valid: the GitHub Actions workflow
//! parses as YAML and runs the same gate as `.ci/run`.

use yaml_rust2::{Yaml, YamlLoader};

fn repo_file(path: &str) -> String {
    let full = concat!(env!("CARGO_MANIFEST_DIR"), "/../").to_owned() + path;
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {full}: {e}"))
}

#[test]
fn the_memory_gate_workflow_parses_and_runs_the_gate() {
    let docs = YamlLoader::load_from_str(&repo_file(".github/workflows/memory-gate.yml"))
        .expect("memory-gate.yml is valid YAML");
    let wf = &docs[0];
    assert_eq!(wf["name"].as_str(), Some("memory-gate"));
    // `on` is a string key in YAML 1.2 (yaml-rust2), not the boolean of YAML 1.1.
    assert!(
        !wf["on"]["pull_request"].is_badvalue(),
        "runs on pull requests"
    );
    let job = &wf["jobs"]["gate"];
    assert!(
        job["runs-on"]
            .as_str()
            .is_some_and(|r| r.starts_with("ubuntu"))
    );
    let steps = job["steps"].as_vec().expect("steps");
    let runs: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
    let uses: Vec<&str> = steps.iter().filter_map(|s| s["uses"].as_str()).collect();
    assert!(
        runs.iter().any(|r| r.contains("cargo test --workspace")),
        "the README's test command"
    );
    assert!(
        runs.iter()
            .any(|r| r.contains("gate scenarios/ci-gate.toml")),
        "the gate on the CI scenario"
    );
    let upload = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/upload-artifact"))
        })
        .expect("an artifact upload step");
    assert_eq!(
        upload["if"].as_str(),
        Some("always()"),
        "runs are uploaded when the gate fails too"
    );
    assert_eq!(upload["with"]["path"].as_str(), Some("runs/"));
    assert!(uses.iter().any(|u| u.starts_with("actions/checkout")));
    // The cgroup v2 guest test (cgroup_v2.rs) proves the path the gate takes
    // on the runner, root from the runner's cgroup; it must not skip there.
    assert!(
        runs.iter()
            .any(|r| r.contains("qemu-system-x86") && r.contains("busybox-static")),
        "the guest tests' tools are installed"
    );
    assert!(
        runs.iter()
            .any(|r| r.contains("sudo") && r.contains("gate scenarios/ci-gate.toml")),
        "the gate runs as root"
    );
    assert!(
        runs.iter().any(|r| r.contains("rig\" doctor")),
        "rig doctor in the log"
    );
    assert!(job["timeout-minutes"].as_i64().is_some_and(|t| t <= 90));
    // Every step is a map with exactly one of `run` or `uses`.
    for s in steps {
        assert!(matches!(s, Yaml::Hash(_)));
        assert!(s["run"].is_badvalue() != s["uses"].is_badvalue(), "{s:?}");
    }
}

#[test]
fn ci_runs_the_gate_and_the_scenario_has_a_baseline() {
    let ci = repo_file(".ci/run");
    assert!(ci.contains("cargo test --workspace"));
    assert!(ci.contains("gate scenarios/ci-gate.toml"));
    let baseline = repo_file("scenarios/baselines/ci-gate.json");
    let b: profiling::gate::baseline::Baseline =
        serde_json::from_str(&baseline).expect("the committed baseline parses");
    assert_eq!(b.scenario, "ci-gate");
    assert!(
        b.metrics.values().all(|v| v.len() >= 5),
        "5 replicates per metric"
    );
}
