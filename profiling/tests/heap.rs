//! Heap profiles during a run, end to end: a debug share-server built with
//! `jemalloc-prof`, a small upload, `heap_profiles = "peak"`; the profiles
//! are saved under `heap/`, listed in `meta.json`, and name the server's code.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::workspace;

use profiling::heap::HeapProfiling;
use profiling::run::{RunOptions, run};
use profiling::scenario::ServerSpec;
use reports::heap::SiteKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_heap_profiles_saves_profiles_that_name_the_server() {
    let root = nix::unistd::Uid::effective().is_root();
    let mode = if root { "cgroup" } else { "none" };
    let spec = ServerSpec {
        heap_profiles: HeapProfiling::Peak,
        ..ServerSpec::default()
    };
    let binary = profiling::target::build_debug_with(&spec, &workspace()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("heap.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"
            name = "heap"
            [machine]
            mode = "{mode}"
            memory = "256MiB"
            [server]
            binary = "{}"
            [[phases]]
            name = "upload"
            # Longer than the rate limit: a peak within it is taken once it ends.
            pause_after = "2500ms"
            [phases.loadgen]
            scenario = "upload"
            users = 2
            iterations = 1
            size = "40MB"
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
        // The command line's override turns them on (the file does not).
        heap_profiles: Some(HeapProfiling::Peak),
        regression: None,
    })
    .await
    .unwrap();
    assert!(outcome.passed, "{outcome:#?}");

    let run_dir = &outcome.run_dir;
    let meta: run_format::Meta =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta.server.allocator, "jemalloc-prof");
    let heap = meta.heap_profiles.expect("meta.json lists heap_profiles");
    assert_eq!(heap.setting, "peak");
    assert_eq!(heap.failures, 0, "{:?}", heap.failure_examples);
    assert!(!heap.profiles.is_empty(), "no profile taken");
    // The rate limit holds, but for jumps of the heap.
    for w in heap.profiles.windows(2) {
        let gap = w[1].t_ms - w[0].t_ms >= heap.min_gap_ms;
        let jump = match (w[0].allocator_resident_bytes, w[1].allocator_resident_bytes) {
            (Some(a), Some(b)) => b >= a + profiling::heap::JUMP.max(a / 4),
            _ => false,
        };
        assert!(gap || jump, "{:?}", heap.profiles);
    }
    for p in &heap.profiles {
        let gz = std::fs::read(run_dir.join(&p.file)).unwrap();
        assert!(gz.starts_with(&[0x1f, 0x8b]), "{} is gzip", p.file);
        assert_eq!(gz.len() as u64, p.bytes);
    }
    eprintln!(
        "{} profiles, fetch ms {:?}, sizes {:?}",
        heap.profiles.len(),
        heap.profiles.iter().map(|p| p.fetch_ms).collect::<Vec<_>>(),
        heap.profiles.iter().map(|p| p.bytes).collect::<Vec<_>>()
    );
    let scenario_as_run = std::fs::read_to_string(run_dir.join("scenario.toml")).unwrap();
    assert!(
        scenario_as_run.contains("heap_profiles = \"peak\""),
        "{scenario_as_run}"
    );

    // The peak profile decodes and names the server's code.
    let peak = heap.at_peak().unwrap();
    let stacks = reports::heap::pprof::read(&run_dir.join(&peak.file)).unwrap();
    let ours = stacks
        .iter()
        .flat_map(|s| &s.frames)
        .find(|f| f.name.contains("share_server::"));
    assert!(
        ours.is_some(),
        "no share_server:: frame in {}: {stacks:#?}",
        peak.file
    );

    // The report lists the top sites at the peak, the server's among them.
    let summary = reports::report(run_dir).unwrap();
    let sites = summary.heap.as_ref().unwrap();
    assert!(sites.error.is_none(), "{sites:?}");
    // Its peak is the profile with the most live bytes less the dump's own.
    let heap_bytes = |file: &str| {
        let stacks = reports::heap::pprof::read(&run_dir.join(file)).unwrap();
        reports::heap::growth::heap_bytes(&stacks)
    };
    let most = heap.profiles.iter().map(|p| heap_bytes(&p.file)).max();
    assert_eq!(Some(heap_bytes(&sites.profile)), most, "{sites:?}");
    assert_eq!(sites.heap_bytes, heap_bytes(&sites.profile));
    assert!(
        sites.sites.iter().any(|s| s.kind == SiteKind::Server),
        "{sites:#?}"
    );
    eprintln!("{}", reports::summary::heap_markdown(sites));
    let md = std::fs::read_to_string(run_dir.join("summary.md")).unwrap();
    assert!(
        md.contains("Heap at the peak") && md.contains("share_server::"),
        "{md}"
    );
    // And its flame graph, shown in the page.
    assert_eq!(sites.flame_graph.as_deref(), Some("heap-peak.svg"));
    let flame = std::fs::read_to_string(run_dir.join("heap-peak.svg")).unwrap();
    assert!(flame.contains("<svg") && flame.contains("share_server::"));
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(html.contains("src=\"heap-peak.svg\""));
    assert!(html.contains("Heap at the peak") && html.contains("share_server::"));
}
