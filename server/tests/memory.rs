//! Memory does not grow with file size: the server's peak RSS (VmHWM) after
//! moving 64 MB and after moving 640 MB differ by less than 8 MiB. SQLite's
//! memory is taken on demand and handed back when idle.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::{DataDir, TestServer, pattern_sha256};

/// Peak RSS (KiB) of a fresh server after uploading and downloading `size` bytes.
async fn peak_after(size: u64) -> u64 {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    let id = server.upload_ok(11, size, "sized.bin").await;
    let (len, hash) = server.download_hash(&id).await;
    assert_eq!((len, hash), (size, pattern_sha256(11, size)));
    server.status_kib("VmHWM")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_rss_is_flat_in_file_size() {
    let small = peak_after(64_000_000).await;
    let large = peak_after(640_000_000).await;
    let diff_mib = (large as f64 - small as f64) / 1024.0;
    eprintln!(
        "VmHWM after 64 MB: {:.1} MiB, after 640 MB: {:.1} MiB, difference {diff_mib:.1} MiB (bound 8)",
        small as f64 / 1024.0,
        large as f64 / 1024.0
    );
    assert!(
        diff_mib < 8.0,
        "peak RSS grew {diff_mib:.1} MiB for 10x the data"
    );
}

/// `/debug/stats`'s `sqlite` section.
async fn sqlite_stats(server: &TestServer) -> serde_json::Value {
    let stats: serde_json::Value = server
        .http
        .get(format!("{}/debug/stats", server.debug_base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["sqlite"].clone()
}

fn field(v: &serde_json::Value, name: &str) -> u64 {
    v[name]
        .as_u64()
        .unwrap_or_else(|| panic!("sqlite.{name} missing: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_memory_is_taken_on_demand_and_handed_back() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    let idle = sqlite_stats(&server).await;
    eprintln!("idle: {idle}");
    // The start-up GC's queries may have opened one; nothing else reads yet.
    assert!(
        field(&idle, "readers_open") <= 1,
        "readers are opened on demand: {idle}"
    );
    // A connection's default bulk page-cache allocation alone is 1.3 MiB
    // with 64 KiB pages; five of them were 6.5 MB.
    assert!(
        field(&idle, "memory_used_bytes") < 1 << 20,
        "an idle server's SQLite holds under 1 MiB: {idle}"
    );

    server.login().await;
    let size = 16_000_000;
    let id = server.upload_ok(5, size, "cache.bin").await;
    assert_eq!(
        server.download_hash(&id).await,
        (size, pattern_sha256(5, size))
    );
    let busy = sqlite_stats(&server).await;
    eprintln!("after a transfer: {busy}");
    let readers = field(&busy, "readers_open");
    assert!(
        (1..=4).contains(&readers),
        "readers opened on demand, at most 4: {busy}"
    );
    assert!(
        field(&busy, "cache_used_bytes") >= 1 << 20,
        "the transfer filled the caches (over 1 MiB): {busy}"
    );

    // Within a few trim intervals (5 s) every idle cache is handed back.
    let started = Instant::now();
    loop {
        let now = sqlite_stats(&server).await;
        // What stays is a page or two per connection (its schema's), not
        // the transfer's pages.
        let left = field(&now, "cache_used_bytes");
        if left < 512 << 10
            && left < field(&busy, "cache_used_bytes") / 4
            && field(&now, "connections_sampled") == readers + 1
        {
            eprintln!("released after {:?}: {now}", started.elapsed());
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "idle page caches not handed back within 30 s: {now}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
