//! `rig run` end to end on a small scenario: the real share-server (debug
//! build), real loadgen phases, a real cgroup when root (else no limit).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::workspace;
use std::path::{Path, PathBuf};

use profiling::run::{RunOptions, run};

/// The debug share-server, built if needed.
fn server_binary() -> PathBuf {
    profiling::target::build_debug(&workspace()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_scenario_runs_and_leaves_a_complete_run_directory() {
    let root = nix::unistd::Uid::effective().is_root();
    let mode = if root { "cgroup" } else { "none" };
    if !root {
        eprintln!("not root: running in mode = \"none\" (no cgroup)");
    }
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("small.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"
            name = "small"
            [machine]
            mode = "{mode}"
            memory = "256MiB"
            [server]
            binary = "{}"
            args = ["--gc-interval", "1h"]
            [sampling]
            interval = "50ms"
            [[phases]]
            name = "upload"
            pause_after = "200ms"
            [phases.loadgen]
            scenario = "upload"
            users = 2
            iterations = 1
            size = "20MB"
            [[phases]]
            name = "download"
            [phases.loadgen]
            scenario = "download"
            users = 2
            iterations = 1
            ranges-per-download = 4
            [[phases]]
            name = "delete"
            [phases.loadgen]
            scenario = "delete"
            users = 2
            iterations = 1
            [[phases]]
            name = "after-delete"
            [phases.loadgen]
            scenario = "download"
            users = 1
            iterations = 1
            size = "1MB"
            "#,
            server_binary().display()
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
    .unwrap();

    assert!(outcome.passed, "{outcome:#?}");
    assert_eq!(outcome.oom_kills, 0);
    assert_eq!(outcome.phases.len(), 4);
    let uploads = &outcome.phases[0].summary.as_ref().unwrap().uploads;
    assert_eq!(uploads.len(), 2);
    assert!(
        outcome.phases[1]
            .summary
            .as_ref()
            .unwrap()
            .verified_downloads
            >= 2
    );
    // The delete phase deletes both stored entries; the download after it is given none of
    // them, so it uploads its own.
    let delete = outcome.phases[2].summary.as_ref().unwrap();
    assert_eq!(delete.deleted, 2);
    assert!(delete.uploads.is_empty());
    let after = outcome.phases[3].summary.as_ref().unwrap();
    assert_eq!(after.known_uploads, 0);
    assert_eq!(after.verified_downloads, 1);
    assert!(outcome.samples >= 5, "{} samples", outcome.samples);
    assert!(outcome.peaks.process_rss_bytes > 0);

    let run_dir = &outcome.run_dir;
    for file in [
        "scenario.toml",
        "meta.json",
        "samples.jsonl",
        "events.jsonl",
        "server.log",
        "outcome.json",
    ] {
        assert!(
            run_dir.join(file).is_file(),
            "{file} missing in {}",
            run_dir.display()
        );
    }
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("meta.json")).unwrap()).unwrap();
    assert!(
        meta["git"]["revision"]
            .as_str()
            .is_some_and(|r| r.len() == 40),
        "{meta}"
    );
    assert!(
        meta["server"]["allocator"]
            .as_str()
            .is_some_and(|a| a.starts_with("jemalloc")),
        "{meta}"
    );
    assert!(meta["finished_at"].is_string());
    assert_eq!(meta["machine"]["mode"], mode);
    // What the rig wrote reads back as the reports read it.
    let read = |f: &str| std::fs::read_to_string(run_dir.join(f)).unwrap();
    let typed: run_format::Meta = serde_json::from_str(&read("meta.json")).unwrap();
    assert_eq!(typed.machine.mode, mode);
    assert_eq!(serde_json::to_value(&typed).unwrap(), meta);
    let written: run_format::Outcome = serde_json::from_str(&read("outcome.json")).unwrap();
    assert!(written.passed);
    assert_eq!(written.peaks, outcome.peaks);
    for (w, o) in written.phases.iter().zip(&outcome.phases) {
        let (w, o) = (w.summary.unwrap(), o.summary.as_ref().unwrap());
        assert_eq!(
            (w.requests, w.failures, w.bytes_sent, w.bytes_received),
            (o.requests, o.failures, o.bytes_sent, o.bytes_received)
        );
    }

    // Every sample line parses; server stats arrived while the server ran.
    let samples = std::fs::read_to_string(run_dir.join("samples.jsonl")).unwrap();
    let parsed: Vec<run_format::Sample> = samples
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(parsed.iter().any(|s| s.phase == "upload"));
    assert!(parsed.iter().any(|s| s.server.is_some()));
    // The fields the rig and the reports read are there.
    let stats = parsed.iter().rev().find_map(|s| s.server.as_ref()).unwrap();
    assert!(stats.allocator.resident_bytes.is_some(), "{stats:?}");
    assert!(stats.sqlite.memory_used_bytes.is_some(), "{stats:?}");
    assert!(stats.app.bytes_received_total.unwrap() > 0, "{stats:?}");
    assert!(
        parsed.windows(2).all(|w| w[0].t_ms <= w[1].t_ms),
        "monotonic time"
    );
    let events = std::fs::read_to_string(run_dir.join("events.jsonl")).unwrap();
    use run_format::events::name;
    for event in [
        name::SERVER_STARTED,
        name::PHASE_START,
        name::PHASE_END,
        name::SERVER_STOPPED,
    ] {
        assert!(events.contains(event), "{event} not in events.jsonl");
    }
    if root {
        let cgroup = meta["machine"]["cgroup_path"].as_str().unwrap();
        assert!(!Path::new(cgroup).exists(), "the run's cgroup is removed");
    }
}
