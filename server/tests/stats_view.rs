//! `/debug/stats` as the rig and the reports read it: the answer parses into
//! `run_format::ServerStats` with every figure they use present, and the
//! sections the rig keeps are written back as the server sent them.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{DataDir, TestServer};
use run_format::ServerStats;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rigs_view_reads_the_servers_stats() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    server.upload_ok(3, 1_000_000, "one.bin").await;
    let url = format!("{}/debug/stats", server.debug_base);
    let raw: Value = server
        .http
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let view: ServerStats = serde_json::from_value(raw.clone()).unwrap();
    let a = &view.allocator;
    assert_eq!(a.name.as_deref(), Some("jemalloc"), "{raw}");
    for (name, figure) in [
        ("allocated_bytes", a.allocated_bytes),
        ("active_bytes", a.active_bytes),
        ("resident_bytes", a.resident_bytes),
        ("retained_bytes", a.retained_bytes),
        ("memory_used_bytes", view.sqlite.memory_used_bytes),
        ("bytes_received_total", view.app.bytes_received_total),
        ("bytes_sent_total", view.app.bytes_sent_total),
    ] {
        assert!(figure.is_some(), "{name} missing from the view of {raw}");
    }
    assert!(view.app.bytes_received_total.unwrap() >= 1_000_000);
    assert!(view.collect_seconds.is_some_and(|s| s > 0.0));

    let back = serde_json::to_value(&view).unwrap();
    for section in ["allocator", "sqlite", "app", "collect_seconds"] {
        assert_eq!(
            back[section], raw[section],
            "{section} written back changed"
        );
    }
}
