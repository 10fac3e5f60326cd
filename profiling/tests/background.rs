//! Background phases and the `/healthz` prober, end to end: an attack phase runs beside a
//! polite upload, both are recorded with overlapping spans, the prober writes its probes,
//! the outcome and the report's summary carry their numbers, and a `[health] max_latency`
//! no probe can meet fails the run.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::workspace;
use std::path::Path;

use profiling::run::{Outcome, RunOptions, run};

async fn run_scenario(dir: &Path, max_latency: &str) -> Outcome {
    let root = nix::unistd::Uid::effective().is_root();
    let mode = if root { "cgroup" } else { "none" };
    let binary = profiling::target::build_debug(&workspace()).unwrap();
    let scenario = dir.join("background.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"
            name = "background"
            [machine]
            mode = "{mode}"
            [server]
            binary = "{}"
            [health]
            interval = "100ms"
            timeout = "2s"
            max_latency = "{max_latency}"
            [[phases]]
            name = "idle-flood"
            background = true
            [phases.loadgen]
            scenario = "idle-flood"
            connections = 5
            run-time = "3s"
            sources = 2
            [[phases]]
            name = "upload"
            [phases.loadgen]
            scenario = "upload"
            users = 1
            size = "5MB"
            "#,
            binary.display()
        ),
    )
    .unwrap();
    run(RunOptions {
        scenario,
        runs_dir: dir.join("runs"),
        workspace: workspace(),
        progress: false,
        heap_profiles: None,
        regression: None,
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_attack_runs_beside_the_upload_and_healthz_is_probed() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = run_scenario(dir.path(), "1s").await;
    assert!(outcome.passed, "{outcome:#?}");
    let [attack, upload] = &outcome.phases[..] else {
        panic!("two phases: {:#?}", outcome.phases);
    };
    assert!(attack.background && !upload.background);
    assert!(attack.ok && upload.ok);
    // The upload started while the attack ran, and the run waited for the attack.
    assert!(upload.started_ms < attack.ended_ms, "{attack:?} {upload:?}");
    assert!(attack.ended_ms - attack.started_ms >= 2900);
    let counted = attack.summary.as_ref().unwrap().attack.as_ref().unwrap();
    assert!(counted.connections_opened >= 5);
    let events = std::fs::read_to_string(outcome.run_dir.join("events.jsonl")).unwrap();
    assert_eq!(events.matches("\"phase-end\"").count(), 2, "{events}");

    let health = outcome.health.as_ref().unwrap();
    assert!(health.probes >= 20, "{health:?}");
    assert_eq!(health.failures, 0, "{health:?}");
    assert!(health.passed);
    let probes = std::fs::read_to_string(outcome.run_dir.join("healthz.jsonl")).unwrap();
    assert_eq!(probes.lines().count() as u64, health.probes);

    let summary = reports::report(&outcome.run_dir).unwrap();
    assert_eq!(summary.health.as_ref().unwrap().probes, health.probes);
    let md = std::fs::read_to_string(outcome.run_dir.join("summary.md")).unwrap();
    assert!(md.contains("/healthz"), "{md}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_limit_no_probe_meets_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = run_scenario(dir.path(), "1us").await;
    assert!(outcome.phases.iter().all(|p| p.ok), "{outcome:#?}");
    assert!(!outcome.passed, "every probe is over 1 µs");
    assert!(outcome.health.unwrap().over_limit > 0);
}
