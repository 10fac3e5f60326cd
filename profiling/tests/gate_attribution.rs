//! A failed gate names what grew: one replicate of a build with the story's
//! bug 1 (`--regression buffered-multipart`) over an allocator budget, then
//! the attribution run with heap profiles, diffed with the baseline's heap
//! sites; `gate.json` and `gate.md` name the fixture's code.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::workspace;

use profiling::gate::{GateOptions, gate};
use profiling::heap::HeapProfiling;
use profiling::scenario::ServerSpec;

const SITE: &str = "share_server::regressions::mechanisms::UploadHooks::observe";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_gate_names_the_site_that_grew_against_the_baselines_profile() {
    let root = nix::unistd::Uid::effective().is_root();
    let mode = if root { "cgroup" } else { "none" };
    // One build serves the replicate and the attribution run: a scenario's
    // own binary must have jemalloc-prof for heap profiles.
    let spec = ServerSpec {
        heap_profiles: HeapProfiling::Peak,
        features: vec!["regressions".into()],
        ..ServerSpec::default()
    };
    let binary = profiling::target::build_debug_with(&spec, &workspace()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("bug1.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"
            name = "bug1"
            [machine]
            mode = "{mode}"
            memory = "256MiB"
            [server]
            binary = "{}"
            args = ["--regression", "buffered-multipart"]
            [[phases]]
            name = "upload"
            pause_after = "2500ms"
            [phases.loadgen]
            # Throttled, so the buffers outlive a profile on a fast machine:
            # each 66 MB part fills the fixture's 64 MiB buffer in 3.4 s and
            # holds it 3 s more.
            scenario = "slow-upload"
            slow-rate = "10MB"
            users = 2
            iterations = 1
            size = "66MB"
            [budgets]
            allocator_resident = "24MiB"
            "#,
            binary.display()
        ),
    )
    .unwrap();
    // A baseline with no figures to compare and the clean build's site at 1 MiB.
    let baseline = dir.path().join("baseline.json");
    std::fs::write(
        &baseline,
        serde_json::json!({
            "schema": 1,
            "scenario": "bug1",
            "created": "2026-12-06T00:00:00Z",
            "git_revision": null,
            "machine": {"kernel": null, "cgroup_version": "v1", "cpus": 2, "memory_total_bytes": null},
            "metrics": {},
            "heap": {"run_dir": "elsewhere", "sites": [{"name": SITE, "kind": "server", "bytes": 1 << 20}]}
        })
        .to_string(),
    )
    .unwrap();
    let report = gate(&GateOptions {
        scenario,
        baseline: Some(baseline),
        replicates: 1,
        runs_dir: dir.path().join("runs"),
        workspace: workspace(),
        progress: false,
        attribution: true,
    })
    .await
    .unwrap();
    assert!(!report.passed, "{:?}", report.failures);
    let a = report.attribution.as_ref().expect("an attribution run");
    eprintln!("{}", a.line());
    assert!(a.error.is_none(), "{a:#?}");
    let top = a.grew_vs_baseline.first().expect("a site grew");
    assert_eq!(top.name, SITE, "{a:#?}");
    assert_eq!(top.from_bytes, 1 << 20);
    // Two uploads' buffers of 64 MiB each, less sampling error.
    assert!(top.to_bytes > 40 << 20, "{top:?}");
    let named = a.grew_most.as_ref().unwrap();
    assert!(
        named.name.starts_with("share_server::regressions::"),
        "{named:?}"
    );
    // The attribution run had room: 4 × 256 MiB.
    assert_eq!(a.limit_bytes, Some(1 << 30));

    let md = std::fs::read_to_string(report.dir.join("gate.md")).unwrap();
    assert!(
        md.contains("**Where it went**: grew most: `share_server::regressions::"),
        "{md}"
    );
    assert!(md.contains(&format!("| `{SITE}` | 1.0 |")), "{md}");
    let json = common::read_json(&report.dir.join("gate.json"));
    assert_eq!(json["attribution"]["grew_vs_baseline"][0]["name"], SITE);
}
