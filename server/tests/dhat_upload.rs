//! The peak Rust heap of a 64 MB upload and download, measured exactly with
//! dhat's testing mode: the server runs in this process (through the
//! library) with dhat as the global allocator, and the whole process's peak
//! of live heap bytes must stay far below the file's size.
//!
//! One test in this file on purpose: dhat allows one profiler per process and
//! counts every allocation of the process, so nothing may run beside it.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::{SECRET, pattern_part, pattern_sha256};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use share_server::Server;
use share_server::config::{DEFAULT_CHUNK_SIZE, DEFAULT_DISK_RESERVE, ServerConfig};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const MIB: usize = 1 << 20;
const SIZE: u64 = 64_000_000;

/// The bound on the peak of live Rust heap bytes in this process, server and
/// client together (SQLite's page cache and its copies of chunk blobs are C
/// `malloc` calls, which dhat does not see). From docs/server.md "Memory
/// bounds", at the default 320 KiB chunk:
/// - the upload pipeline: 1 chunk filling + 2 queued + 2 in the writer's
///   transaction = 5 × 320 KiB = 1.6 MiB (`upload::pipeline_bytes`);
/// - the download: the chunk being sent, the one queued and the one being
///   read = 3 × 320 KiB = 0.94 MiB (after the upload, not during it);
/// - multer's stream buffer (fed ≤ 64 KiB per poll by the multipart guard)
///   and hyper's read buffer, ~100 KiB each;
/// - the client: the 64 KiB blocks of the generated body queued for hyper's
///   writes and the response chunks being hashed;
/// - fixed state: the runtime, tokio's signal table, the route table, the
///   download-log writer's batch (tens of KiB).
///
/// Measured (2026-12-05, the dhat profile's "At t-gmax"): peak 2.52 MiB at
/// the upload = the 5 pipeline chunks 1600 KiB + the client's 8 body blocks
/// 512 KiB + multer 120 KiB + hyper 112 KiB + ~180 KiB of small blocks.
/// 8 MiB leaves room for a faster or slower machine shifting which buffers
/// coincide, and is still 8× below the 64 MB file: a change that holds the
/// file, or a growing share of it, fails.
const MAX_PEAK_BYTES: usize = 8 * MIB;

#[test]
fn peak_heap_of_a_64_mb_round_trip_stays_far_below_the_file() {
    let profile_file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dhat-upload.json");
    let _ = std::fs::remove_file(&profile_file);
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    // Started first, so the runtime and the server are counted too. A failed
    // dhat assertion writes the profile (open it in dh_view.html).
    let _profiler = dhat::Profiler::builder()
        .testing()
        .file_name(&profile_file)
        .build();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(round_trip(dir.path().join("data").join("store.db")));
    drop(runtime);

    let stats = dhat::HeapStats::get();
    eprintln!(
        "dhat: peak live heap {:.2} MiB in {} blocks (bound {} MiB); {:.1} MiB in {} blocks \
         allocated in total; {} bytes live at the end; {:.1} s",
        stats.max_bytes as f64 / MIB as f64,
        stats.max_blocks,
        MAX_PEAK_BYTES / MIB,
        stats.total_bytes as f64 / MIB as f64,
        stats.total_blocks,
        stats.curr_bytes,
        start.elapsed().as_secs_f64()
    );
    dhat::assert!(
        stats.max_bytes < MAX_PEAK_BYTES,
        "peak live heap {} bytes ≥ bound {MAX_PEAK_BYTES} for a {SIZE}-byte file; \
         profile in {} (open it in DHAT's dh_view.html, sort by \"At t-gmax\")",
        stats.max_bytes,
        profile_file.display()
    );
    // The file went through the heap: ~64 MB in total, never at once.
    dhat::assert!(stats.total_bytes > 2 * SIZE, "the bytes were counted");
}

async fn round_trip(db: std::path::PathBuf) {
    let server = Server::open(ServerConfig {
        db,
        shared_secret: SECRET.to_owned(),
        behind_proxy: false,
        gc_interval: Duration::from_secs(3600),
        vacuum: false,
        chunk_size: DEFAULT_CHUNK_SIZE,
        disk_reserve: DEFAULT_DISK_RESERVE,
        shutdown_timeout: Duration::from_secs(10),
        min_expiration: Duration::from_secs(3600),
        limits: share_server::limits::Limits::default(),
        debug_allowed_hosts: Vec::new(),
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(listener, None, async {
        let _ = stopped.await;
    }));

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let res = http
        .post(format!("{base}/api/auth"))
        .json(&serde_json::json!({ "sharedSecret": SECRET }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "login");
    let cookie = res.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();

    // The body is generated in 64 KiB blocks as the client sends it.
    let form =
        reqwest::multipart::Form::new().part("file", pattern_part(5, SIZE, "dhat.bin", None));
    let res = http
        .post(format!("{base}/api/entry"))
        .header("cookie", &cookie)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "upload");
    let id = res.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let res = http.get(format!("{base}/-{id}")).send().await.unwrap();
    assert_eq!(res.status(), 200, "download");
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    let mut body = res.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        len += chunk.len() as u64;
        hasher.update(&chunk);
    }
    assert_eq!(len, SIZE);
    assert_eq!(
        hex::encode(hasher.finalize()),
        pattern_sha256(5, SIZE),
        "download differs from upload"
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), serving)
        .await
        .expect("the server shuts down")
        .unwrap()
        .unwrap();
}
