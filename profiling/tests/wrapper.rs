//! `[server] wrapper` end to end: a small scenario whose server runs under
//! `litestream replicate -exec` with the config the rig writes. The run must
//! pass with the server (not Litestream) followed by the sampler; in a
//! cgroup (root) every sample lists both processes, their anon adds up to
//! the cgroup's, and the report names Litestream's peak.
//!
//! Needs `litestream` on PATH (`.ci/run` installs it); without it the run
//! fails with the `pip install` to run.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::workspace;
use run_format::Sample;

use profiling::run::{RunOptions, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litestream_runs_beside_the_server_and_each_is_sampled() {
    let root = nix::unistd::Uid::effective().is_root();
    let mode = if root { "cgroup" } else { "none" };
    if !root {
        eprintln!("not root: mode = \"none\", so no cgroup and no per-process listing to check");
    }
    let binary = profiling::target::build_debug(&workspace()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("wrapped.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"
            name = "wrapped"
            [machine]
            mode = "{mode}"
            memory = "256MiB"
            [server]
            binary = "{}"
            wrapper = ["litestream", "replicate", "-config", "{{litestream_config}}", "-exec", "{{server}}"]
            [sampling]
            interval = "50ms"
            [[phases]]
            name = "upload"
            pause_after = "1500ms"
            [phases.loadgen]
            scenario = "upload"
            users = 2
            iterations = 1
            size = "10MB"
            "#,
            binary.display()
        ),
    )
    .unwrap();
    let outcome = run(RunOptions {
        scenario,
        runs_dir: dir.path().join("runs"),
        workspace: workspace(),
        progress: false,
        heap_profiles: None,
        regression: None,
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(outcome.passed, "{outcome:#?}");
    let run_dir = &outcome.run_dir;
    let read = |f: &str| std::fs::read_to_string(run_dir.join(f)).unwrap();
    let config = read("litestream.yml");
    assert!(config.contains("type: file"), "{config}");
    let log = read("server.log");
    assert!(
        log.contains("replicating to"),
        "no Litestream in the log:\n{log}"
    );
    // The sampler followed the server, not its wrapper.
    let events = read("events.jsonl");
    let started: serde_json::Value = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["event"] == "server-started")
        .unwrap_or_else(|| panic!("no server-started event:\n{events}"));
    let server_pid = started["detail"]["pid"].as_u64().unwrap() as u32;
    let exe = std::fs::canonicalize(&binary).unwrap();
    assert!(outcome.peaks.process_rss_bytes > 0);
    if !root {
        return;
    }

    let samples: Vec<Sample> = read("samples.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut ratios = Vec::new();
    for s in samples.iter().filter(|s| s.phase == "upload") {
        let group = s
            .processes
            .as_deref()
            .expect("a process listing in cgroup mode");
        let name_of = |pid: u32| group.iter().find(|p| p.pid == pid).map(|p| p.name.as_str());
        assert_eq!(
            name_of(server_pid),
            Some("share-server"),
            "{group:?} ({exe:?})"
        );
        assert!(group.iter().any(|p| p.name == "litestream"), "{group:?}");
        let sum: u64 = group.iter().map(|p| p.memory.rss_anon_bytes).sum();
        let machine = s.machine.as_ref().unwrap().anon_bytes;
        ratios.push(sum as f64 / machine as f64);
    }
    assert!(ratios.len() >= 10, "{} upload samples", ratios.len());
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    println!(
        "Σ processes' anon / cgroup anon over {} samples: median {median:.3}, from {:.3} to {:.3}",
        ratios.len(),
        ratios[0],
        ratios[ratios.len() - 1]
    );
    assert!((0.9..=1.1).contains(&median), "median {median}: {ratios:?}");

    let summary = reports::report(run_dir).unwrap();
    let group = summary.group.expect("the report's group section");
    let litestream = group
        .processes
        .iter()
        .find(|p| p.name == "litestream")
        .unwrap();
    assert!(
        litestream.peak_anon_bytes > 0 && litestream.peak_rss_bytes >= litestream.peak_anon_bytes
    );
    assert!(read("summary.md").contains("### Processes in the group"));
}
