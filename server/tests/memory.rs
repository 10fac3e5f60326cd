//! Memory does not grow with file size: the server's peak RSS (VmHWM) after
//! moving 64 MB and after moving 640 MB differ by less than 8 MiB.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

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
