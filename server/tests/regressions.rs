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
    // the whole file (the clean build keeps it near its 32 MiB autocheckpoint).
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
    let size = 96 * MIB;
    server.upload_ok(6, size, "a.bin").await;
    let wal = std::fs::metadata(dir.db().with_extension("db-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    // Checkpoints keep it near the autocheckpoint size (plus the frames of
    // the transaction that crossed it), whatever the file's size.
    let bound = share_server::storage::WAL_AUTOCHECKPOINT_BYTES as u64 + 4 * MIB;
    assert!(
        wal < bound && wal < size / 2,
        "WAL is {wal} B without the regression (bound {bound} B)"
    );
    assert!(server.status_kib("VmHWM") * 1024 < 64 * MIB);
    assert!(!server.log_text().contains("vacuum done"));
}

/// A number from `/debug/stats`, by its JSON pointer (`/allocator/allocated_bytes`).
async fn stat(server: &TestServer, pointer: &str) -> u64 {
    let stats: serde_json::Value = server
        .http
        .get(format!("{}/debug/stats", server.debug_base))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats JSON");
    stats
        .pointer(pointer)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("no {pointer} in {stats}"))
}

const ALLOCATED: &str = "/allocator/allocated_bytes";

/// Peak RSS of one 16 MiB upload, and the heap held before and after it.
async fn upload_footprint(regression: &[&str]) -> (u64, u64, u64) {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, regression);
    server.login().await;
    let before = stat(&server, ALLOCATED).await;
    server.upload_ok(7, 16 * MIB, "a.bin").await;
    let after = stat(&server, ALLOCATED).await;
    (server.status_kib("VmHWM") * 1024, before, after)
}

#[tokio::test]
async fn retain_per_upload_holds_its_size_while_an_upload_runs() {
    let (clean, ..) = upload_footprint(&[]).await;
    let (hwm, before, after) = upload_footprint(&["--regression", "retain-per-upload=8MiB"]).await;
    eprintln!("peak RSS: {clean} B clean, {hwm} B retaining 8 MiB; heap {before} -> {after} B");
    // The 8 MiB are filled, so resident on top of the upload's own peak
    // (measured +7.8 to +8.8 MiB; the clean peak varies by a little).
    assert!(
        hwm >= clean + 6 * MIB,
        "peak RSS {hwm} B with 8 MiB retained, {clean} B clean"
    );
    // ..and freed when the upload ends.
    assert!(
        after < before + 4 * MIB,
        "heap {before} B before the upload, {after} B after: the 8 MiB were kept"
    );
}

/// Heap growth over 200 `/healthz` requests.
async fn heap_growth_of_200_requests(regression: &[&str]) -> u64 {
    let dir = DataDir::new();
    let server = TestServer::start(&dir, regression);
    let before = stat(&server, ALLOCATED).await;
    for _ in 0..200 {
        let res = server.http.get(server.url("/healthz")).send().await;
        assert_eq!(res.expect("healthz").status(), 200);
    }
    stat(&server, ALLOCATED).await.saturating_sub(before)
}

#[tokio::test]
async fn leak_per_request_leaks_its_size_on_every_request() {
    let clean = heap_growth_of_200_requests(&[]).await;
    let leaked = heap_growth_of_200_requests(&["--regression", "leak-per-request=64KiB"]).await;
    let expected = 200 * 64 * 1024;
    eprintln!("heap growth over 200 requests: {clean} B clean, {leaked} B leaking 64 KiB each");
    // Other allocations come and go: 1 MiB either way on top of the leak.
    assert!(
        clean < MIB,
        "the clean build grew {clean} B over 200 requests"
    );
    assert!(
        leaked + MIB >= expected && leaked <= expected + MIB,
        "the heap grew {leaked} B over 200 requests, expected {expected} B"
    );
}

/// SQLite's memory after a 48 MiB file is uploaded and read back.
async fn sqlite_memory_after_a_read(regression: &[&str]) -> u64 {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, regression);
    server.login().await;
    let id = server.upload_ok(8, 48 * MIB, "a.bin").await;
    assert_eq!(server.download_hash(&id).await.0, 48 * MIB);
    stat(&server, "/sqlite/memory_used_bytes").await
}

#[tokio::test]
async fn sqlite_cache_grows_sqlites_memory_to_its_size() {
    let clean = sqlite_memory_after_a_read(&[]).await;
    let cached = sqlite_memory_after_a_read(&["--regression", "sqlite-cache=32MiB"]).await;
    eprintln!("SQLite memory: {clean} B clean, {cached} B with a 32 MiB cache");
    // The clean build caches 2 MiB (writer) and 512 KiB per reader.
    assert!(
        cached >= clean + 24 * MIB,
        "SQLite holds {cached} B with a 32 MiB cache, {clean} B clean"
    );
}

#[test]
fn a_bad_regression_is_refused_with_the_valid_names() {
    let out = std::process::Command::new(common::binary())
        .args(["--regression", "retain-per-upload=1.5MiB"])
        .output()
        .expect("run the server");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a whole number"), "{err}");
    let out = std::process::Command::new(common::binary())
        .args(["--regression", "retain-per-uploads=1MiB"])
        .output()
        .expect("run the server");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("valid: buffered-multipart"), "{err}");
}
