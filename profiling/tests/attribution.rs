//! Each of the story's bugs, named: a run of the fixture build with heap
//! profiles (`rig run --regression NAME --heap-profiles`) and room to live
//! (768 MiB, files of tens of MB), whose report's `cause` is the bug's
//! mechanism: the fixture's code for the heap bugs, the leaked files, the
//! WAL, SQLite's VACUUM (its heap path, temp files or WAL).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::workspace;

use profiling::fixture::Fixture;
use profiling::heap::HeapProfiling;
use profiling::run::{RunOptions, run};
use profiling::scenario::ServerSpec;
use reports::cause::{Cause, CauseKind};

/// Runs `fixture` with the phases `phases` (TOML) after an upload of two
/// `size` files, and returns the report's cause.
async fn cause_of(fixture: Fixture, size: &str, args: &str, phases: &str) -> Cause {
    cause_of_upload(fixture, "scenario = \"upload\"", size, args, phases).await
}

/// As [`cause_of`], with the upload phase's loadgen `scenario` (and its
/// options) given: `upload` lines.
async fn cause_of_upload(
    fixture: Fixture,
    upload: &str,
    size: &str,
    args: &str,
    phases: &str,
) -> Cause {
    let root = nix::unistd::Uid::effective().is_root();
    let mode = if root { "cgroup" } else { "none" };
    let spec = ServerSpec {
        heap_profiles: HeapProfiling::Peak,
        features: vec!["regressions".into()],
        ..ServerSpec::default()
    };
    let binary = profiling::target::build_debug_with(&spec, &workspace()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("attribution.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"
            name = "attribution"
            [machine]
            mode = "{mode}"
            memory = "768MiB"
            [server]
            binary = "{}"
            args = [{args}]
            [sampling]
            interval = "100ms"
            [[phases]]
            name = "upload"
            pause_after = "2500ms"
            [phases.loadgen]
            {upload}
            users = 2
            iterations = 1
            size = "{size}"
            {phases}
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
        heap_profiles: Some(HeapProfiling::Peak),
        regression: Some(fixture),
    })
    .await
    .unwrap();
    let summary = reports::report(&outcome.run_dir).unwrap();
    let md = std::fs::read_to_string(outcome.run_dir.join("summary.md")).unwrap();
    eprintln!("{}: {:?}\n{md}", fixture.name(), summary.cause);
    assert!(outcome.passed, "{outcome:#?}");
    let cause = summary.cause.clone().expect("the report names a cause");
    assert!(md.contains(&cause.text), "summary.md shows the cause");
    cause
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_multipart_names_the_fixtures_buffer() {
    // Throttled, so the buffers outlive a profile however fast the machine:
    // a 66 MB part fills the fixture's whole 64 MiB buffer after 3.4 s at
    // 10 MB/s and holds it 3 s more (at full speed an upload here can end,
    // freeing it, within the first profile's dump).
    let upload = "scenario = \"slow-upload\"\n slow-rate = \"10MB\"";
    let cause = cause_of_upload(Fixture::BufferedMultipart, upload, "66MB", "", "").await;
    assert_eq!(cause.kind, CauseKind::Heap, "{cause:?}");
    assert!(
        cause.name.starts_with("share_server::regressions::"),
        "{cause:?}"
    );
    // Two uploads' buffers of 64 MiB each, give or take the sampling.
    assert!(cause.grown_bytes > 48 << 20, "{cause:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_all_chunks_names_the_fixtures_read() {
    let download = r#"
        [[phases]]
        name = "download"
        pause_after = "1s"
        [phases.loadgen]
        scenario = "download"
        users = 2
        iterations = 1
    "#;
    // 64 MB: every chunk read loads the rest of the file, so a download
    // reads about 2 GB and lasts long enough for a profile to land in it.
    let cause = cause_of(Fixture::ReadAllChunks, "64MB", "", download).await;
    assert_eq!(cause.kind, CauseKind::Heap, "{cause:?}");
    assert!(
        cause.name.starts_with("share_server::regressions::"),
        "{cause:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaked_temp_files_names_the_files() {
    let cause = cause_of(Fixture::LeakedTempFiles, "40MB", "", "").await;
    assert_eq!(cause.kind, CauseKind::Files, "{cause:?}");
    assert!(cause.name.contains("sharerig-multipart-*"), "{cause:?}");
    assert!(cause.grown_bytes >= 72 << 20, "{cause:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_transaction_names_the_wal() {
    let cause = cause_of(Fixture::UploadTransaction, "40MB", "", "").await;
    assert_eq!(cause.kind, CauseKind::Files, "{cause:?}");
    assert!(cause.name.ends_with("-wal"), "{cause:?}");
    // The uploads commit one after the other: at least one file's 40 MB at once.
    assert!(cause.grown_bytes >= 32 << 20, "{cause:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_vacuum_names_sqlites_vacuum() {
    let delete = r#"
        [[phases]]
        name = "delete"
        pause_after = "5s"
        [phases.loadgen]
        scenario = "delete"
        users = 1
        iterations = 1
    "#;
    let args = r#""--gc-interval", "1s""#;
    let cause = cause_of(Fixture::PeriodicVacuum, "40MB", args, delete).await;
    let vacuum_site = cause.kind == CauseKind::Heap && cause.name.contains("acuum");
    // VACUUM's copy of the database: in the WAL, or in SQLite's temp files
    // (`etilqs_*`, or `#*` where SQLite opens them `O_TMPFILE`); the two
    // grow by about as much, so either may be named.
    let vacuum_files = cause.kind == CauseKind::Files
        && (cause.name.ends_with("-wal") || cause.name.contains("etilqs") || cause.name == "#*");
    assert!(vacuum_site || vacuum_files, "{cause:?}");
}
