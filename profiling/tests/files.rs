//! Memory outside the heap named by files, end to end: the story's bugs 2
//! (leaked temp files) and 4 (one transaction per upload, a WAL as big as
//! the upload) brought back with `--regression NAME`, two 50 MB uploads, and
//! the report's `outside_heap` names the temp files' pattern, or the WAL.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::workspace;

use profiling::fixture::Fixture;
use profiling::run::{RunOptions, run};
use profiling::scenario::ServerSpec;
use reports::files::{FilesSummary, Place, largest_growth};
use run_format::FileKind;

/// Two users, one 50 MB upload each.
const UPLOADED: u64 = 2 * 50_000_000;

/// Runs the small upload scenario with `fixture` (the temp dir on a tmpfs
/// when asked and root), writes its report and returns the summary's
/// `outside_heap` and `meta.json`.
async fn run_with(fixture: Fixture, tmpfs: bool) -> (FilesSummary, run_format::Meta) {
    let root = nix::unistd::Uid::effective().is_root();
    let mode = if root { "cgroup" } else { "none" };
    let tmpfs = if tmpfs && root {
        "tmpfs = \"256MiB\""
    } else {
        ""
    };
    let spec = ServerSpec {
        features: vec!["regressions".into()],
        ..ServerSpec::default()
    };
    let binary = profiling::target::build_debug_with(&spec, &workspace()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("files.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"
            name = "files"
            [machine]
            mode = "{mode}"
            memory = "512MiB"
            {tmpfs}
            [server]
            binary = "{}"
            [[phases]]
            name = "upload"
            pause_after = "300ms"
            [phases.loadgen]
            scenario = "upload"
            users = 2
            iterations = 1
            size = "50MB"
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
        // The built binary has the feature; this adds `--regression NAME`.
        regression: Some(fixture),
    })
    .await
    .unwrap();
    assert!(outcome.passed, "{outcome:#?}");
    let run_dir = &outcome.run_dir;
    let meta: run_format::Meta =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("meta.json")).unwrap()).unwrap();
    let temp_dir = meta
        .machine
        .temp_dir
        .clone()
        .expect("meta.json names the temp dir");
    assert!(
        !temp_dir.exists(),
        "{} is removed at teardown",
        temp_dir.display()
    );

    reports::report(run_dir).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    let files: FilesSummary = serde_json::from_value(json["outside_heap"].clone())
        .unwrap_or_else(|e| panic!("summary.json's outside_heap: {e}\n{json:#}"));
    let md = std::fs::read_to_string(run_dir.join("summary.md")).unwrap();
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(md.contains("### Outside the heap"), "{md}");
    assert!(html.contains("Outside the heap"));
    eprintln!("{}", reports::summary::outside_heap_markdown(&files));
    (files, meta)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaked_temp_files_are_named_by_pattern() {
    let (files, meta) = run_with(Fixture::LeakedTempFiles, true).await;
    let leaked = files
        .groups
        .iter()
        .find(|g| g.pattern == "sharerig-multipart-*.part")
        .unwrap_or_else(|| panic!("no sharerig-multipart-*.part group: {files:#?}"));
    assert_eq!(
        (leaked.kind, leaked.files),
        (FileKind::Temp, 2),
        "{leaked:?}"
    );
    let temp = files
        .growth
        .iter()
        .find(|g| g.kind == FileKind::Temp)
        .unwrap();
    assert!(
        temp.growth_bytes as f64 >= UPLOADED as f64 * 0.9,
        "temp files grew {} bytes, uploaded {UPLOADED}",
        temp.growth_bytes
    );
    // On the tmpfs (root) the leaked files are RAM; in a plain directory, page cache.
    let on_tmpfs = meta.machine.tmpfs.is_some();
    assert_eq!(leaked.place == Place::Ram, on_tmpfs, "{leaked:?}");
    let top = largest_growth(&files).unwrap();
    assert_eq!(top.kind, FileKind::Temp, "{top:?}");
    assert_eq!(top.pattern, "sharerig-multipart-*.part");
    assert!(
        leaked
            .example
            .starts_with(&*meta.machine.temp_dir.unwrap().to_string_lossy()),
        "{leaked:?}"
    );
    eprintln!("{}", top.phrase);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_grown_by_one_transaction_per_upload_is_the_largest_growth() {
    let (files, _) = run_with(Fixture::UploadTransaction, false).await;
    let top = largest_growth(&files).unwrap_or_else(|| panic!("nothing grew: {files:#?}"));
    assert_eq!(top.kind, FileKind::Wal, "{files:#?}");
    assert!(top.pattern.ends_with(".db-wal"), "{top:?}");
    assert!(
        top.growth_bytes >= UPLOADED / 2,
        "the WAL grew {} bytes, uploaded {UPLOADED}",
        top.growth_bytes
    );
    eprintln!("{}", top.phrase);
}
