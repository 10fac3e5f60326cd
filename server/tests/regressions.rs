//! The gate's fixtures really bring back the story's mechanisms: each
//! `--regression` is checked by what it does (memory held, files leaked, WAL
//! grown, VACUUM run), so `rig prove` measures real bugs.
//!
//! Run with `cargo test -p share-server --features regressions --test regressions`.
#![cfg(feature = "regressions")]

mod common;

use common::{DataDir, TestServer, pattern_sha256};

const MIB: u64 = 1 << 20;

fn start(dir: &DataDir, regression: &str, extra: &[&str]) -> TestServer {
    let mut args = vec!["--regression", regression];
    args.extend_from_slice(extra);
    TestServer::start(dir, &args)
}

#[tokio::test]
async fn buffered_multipart_holds_the_file_part_in_memory() {
    let dir = DataDir::new();
    let mut server = start(&dir, "buffered-multipart", &[]);
    server.login().await;
    let id = server.upload_ok(1, 80 * MIB, "a.bin").await;
    let hwm = server.status_kib("VmHWM") * 1024;
    assert!(
        hwm >= 64 * MIB,
        "peak RSS {hwm} B: the 64 MiB multipart buffer was not held"
    );
    assert_eq!(
        server.download_hash(&id).await,
        (80 * MIB, pattern_sha256(1, 80 * MIB))
    );
}

#[tokio::test]
async fn leaked_temp_files_are_never_removed() {
    let dir = DataDir::new();
    let tmp = tempfile::tempdir().expect("tmp");
    let mut server = TestServer::start_with_env(
        &dir.db(),
        dir.dir.path(),
        &["--regression", "leaked-temp-files"],
        &[("TMPDIR", tmp.path().as_os_str())],
    );
    server.login().await;
    server.upload_ok(2, 3 * MIB, "a.bin").await;
    server.upload_ok(3, 5 * MIB, "b.bin").await;
    let mut sizes: Vec<u64> = std::fs::read_dir(tmp.path())
        .expect("read TMPDIR")
        .map(|e| e.expect("entry").metadata().expect("metadata").len())
        .collect();
    sizes.sort_unstable();
    assert_eq!(
        sizes,
        [3 * MIB, 5 * MIB],
        "one leaked spool file per upload"
    );
}

#[tokio::test]
async fn read_all_chunks_loads_the_rest_of_the_file_per_read() {
    let dir = DataDir::new();
    let mut server = start(&dir, "read-all-chunks", &[]);
    server.login().await;
    let size = 96 * MIB;
    let id = server.upload_ok(4, size, "a.bin").await;
    let before = server.status_kib("VmHWM") * 1024;
    assert_eq!(
        server.download_hash(&id).await,
        (size, pattern_sha256(4, size))
    );
    let after = server.status_kib("VmHWM") * 1024;
    // Reading chunk 0 loads all 96 MiB of chunks at once.
    assert!(
        after >= before + 64 * MIB,
        "peak RSS went from {before} to {after} B: later chunks were not loaded"
    );
}

#[tokio::test]
async fn upload_transaction_grows_the_wal_with_the_file() {
    let dir = DataDir::new();
    let mut server = start(&dir, "upload-transaction", &[]);
    server.login().await;
    let size = 48 * MIB;
    let id = server.upload_ok(5, size, "a.bin").await;
    // One transaction cannot be checkpointed while open, so the WAL holds
    // the whole file (the clean build keeps it near its 4 MiB autocheckpoint).
    let wal = std::fs::metadata(dir.db().with_extension("db-wal"))
        .expect("WAL file")
        .len();
    assert!(wal >= size, "WAL is {wal} B after a {size} B upload");
    assert_eq!(
        server.download_hash(&id).await,
        (size, pattern_sha256(5, size))
    );
}

#[tokio::test]
async fn periodic_vacuum_runs_vacuum_after_each_collection() {
    let dir = DataDir::new();
    let server = start(&dir, "periodic-vacuum", &["--gc-interval", "200ms"]);
    common::eventually(std::time::Duration::from_secs(30), "two VACUUMs", || {
        server.log_text().matches("vacuum done").count() >= 2
    })
    .await;
}

#[tokio::test]
async fn without_a_regression_the_server_is_clean() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &["--gc-interval", "200ms"]);
    server.login().await;
    server.upload_ok(6, 48 * MIB, "a.bin").await;
    let wal = std::fs::metadata(dir.db().with_extension("db-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(wal < 48 * MIB / 2, "WAL is {wal} B without the regression");
    assert!(server.status_kib("VmHWM") * 1024 < 64 * MIB);
    assert!(!server.log_text().contains("vacuum done"));
}
