//! The CI files that cannot run here stay valid: the GitHub Actions workflow
//! parses as YAML and runs the same gate as `.ci/run`.

use yaml_rust2::{Yaml, YamlLoader};

fn repo_file(path: &str) -> String {
    let full = concat!(env!("CARGO_MANIFEST_DIR"), "/../").to_owned() + path;
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {full}: {e}"))
}

/// A job's steps, and their `run` and `uses` lines.
fn steps_of(job: &Yaml) -> (&Vec<Yaml>, Vec<&str>, Vec<&str>) {
    let steps = job["steps"].as_vec().expect("steps");
    let runs = steps.iter().filter_map(|s| s["run"].as_str()).collect();
    let uses = steps.iter().filter_map(|s| s["uses"].as_str()).collect();
    (steps, runs, uses)
}

/// The job's artifact upload step.
fn upload(steps: &[Yaml]) -> &Yaml {
    steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/upload-artifact"))
        })
        .expect("an artifact upload step")
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
    let jobs = wf["jobs"].as_hash().expect("jobs");
    for (name, job) in jobs {
        assert!(
            job["runs-on"]
                .as_str()
                .is_some_and(|r| r.starts_with("ubuntu")),
            "{name:?}"
        );
        assert!(job["timeout-minutes"].as_i64().is_some_and(|t| t <= 90));
        let (steps, _, uses) = steps_of(job);
        assert!(uses.iter().any(|u| u.starts_with("actions/checkout")));
        assert!(uses.contains(&"./.github/actions/rust-setup"), "{name:?}");
        // Every step is a map with exactly one of `run` or `uses`.
        for s in steps {
            assert!(matches!(s, Yaml::Hash(_)));
            assert!(s["run"].is_badvalue() != s["uses"].is_badvalue(), "{s:?}");
        }
    }

    let (_, runs, _) = steps_of(&wf["jobs"]["tests"]);
    assert!(
        runs.iter().any(|r| r.contains("cargo test --workspace")),
        "the README's test command"
    );
    // The cgroup v2 guest test (cgroup_v2.rs) proves the path the gate takes
    // on the runner, root from the runner's cgroup; it must not skip there.
    assert!(
        runs.iter()
            .any(|r| r.contains("qemu-system-x86") && r.contains("busybox-static")),
        "the guest tests' tools are installed"
    );

    // Five replicates, one per job, as root, each run uploaded.
    let replicate = &wf["jobs"]["replicate"];
    let k = replicate["strategy"]["matrix"]["k"]
        .as_vec()
        .expect("a matrix over k");
    assert_eq!(k.len(), 5);
    let (steps, runs, _) = steps_of(replicate);
    assert!(
        runs.iter().any(|r| r.contains("sudo")
            && r.contains("gate scenarios/ci-gate.toml --replicate-only ${{ matrix.k }}")),
        "each job runs its replicate as root"
    );
    assert!(
        runs.iter().any(|r| r.contains("rig\" doctor")),
        "rig doctor in the log"
    );
    let up = upload(steps);
    assert_eq!(up["if"].as_str(), Some("always()"));
    assert_eq!(
        up["with"]["name"].as_str(),
        Some("replicate-${{ matrix.k }}")
    );

    // One job decides on all of them.
    let gate = &wf["jobs"]["gate"];
    assert_eq!(gate["needs"].as_str(), Some("replicate"));
    let (steps, runs, _) = steps_of(gate);
    let download = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/download-artifact"))
        })
        .expect("the replicates are downloaded");
    assert_eq!(download["with"]["pattern"].as_str(), Some("replicate-*"));
    let merge_dir = download["with"]["path"].as_str().expect("a download path");
    assert!(
        runs.iter().any(|r| r.contains("sudo")
            && r.contains("gate scenarios/ci-gate.toml")
            && r.contains(&format!("--merge {merge_dir}"))),
        "the gate merges what was downloaded, as root"
    );
    let up = upload(steps);
    assert_eq!(
        up["if"].as_str(),
        Some("always()"),
        "runs are uploaded when the gate fails too"
    );
    assert_eq!(up["with"]["path"].as_str(), Some("runs/"));
}

#[test]
fn the_shared_setup_action_parses() {
    let docs = YamlLoader::load_from_str(&repo_file(".github/actions/rust-setup/action.yml"))
        .expect("action.yml is valid YAML");
    let action = &docs[0];
    assert_eq!(action["runs"]["using"].as_str(), Some("composite"));
    let steps = action["runs"]["steps"].as_vec().expect("steps");
    assert!(steps.iter().any(|s| {
        s["uses"]
            .as_str()
            .is_some_and(|u| u.starts_with("actions/cache"))
    }));
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
