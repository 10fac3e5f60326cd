//! A run that cannot work ends quickly with a clear error and a non-zero outcome, and still
//! writes its partial summary: unreachable server, wrong secret, server killed mid-run.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Server, eventually};
use loadgen::{ByteSize, Config, Error, Scenario, Summary};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_an_error_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on: bind one, then close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let error = loadgen::run(Config {
        host: format!("http://127.0.0.1:{port}"),
        secret: "x".into(),
        report_dir: dir.path().to_owned(),
        quiet: true,
        ..Config::default()
    })
    .await
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(error, Error::Unreachable { .. }), "{error}");
    assert!(error.to_string().contains("cannot reach"), "{error}");
    let written = Summary::read(&dir.path().join(loadgen::SUMMARY_FILE)).unwrap();
    assert!(!written.ok);
    assert!(written.error.unwrap().contains("cannot reach"));
    assert_eq!(written.config.unwrap().secret, "(redacted)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_is_an_error_and_nothing_is_uploaded() {
    let server = Server::start();
    let error = loadgen::run(Config {
        secret: "not-the-secret".into(),
        ..server.config(Scenario::Upload, "wrong-secret")
    })
    .await
    .unwrap_err();
    assert!(matches!(error, Error::WrongSecret { .. }), "{error}");
    assert!(error.to_string().contains("refused the shared secret"));
    let summary = error.partial_summary().unwrap();
    assert!(!summary.ok);
    assert!(summary.reports.summary.is_file());
    assert_eq!(server.counter("uploads_completed_total").await, 0);
    assert_eq!(server.counter("bytes_received_total").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_run_stops_the_run_with_a_partial_summary() {
    let mut server = Server::start();
    let config = Config {
        users: 2,
        size: ByteSize(50_000_000_000),
        timeout: Duration::from_secs(600),
        ..server.config(Scenario::Upload, "killed")
    };
    let summary_path = config.report_dir.join(loadgen::SUMMARY_FILE);
    let run = tokio::spawn(loadgen::run(config));
    eventually(Duration::from_secs(30), "uploads to be under way", || {
        let server = &server;
        async move { server.counter("bytes_received_total").await > 10_000_000 }
    })
    .await;
    server.kill();
    let killed = Instant::now();
    let error = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("loadgen hung after the server died")
        .unwrap()
        .unwrap_err();
    assert!(
        killed.elapsed() < Duration::from_secs(20),
        "took {:?} to notice",
        killed.elapsed()
    );
    assert!(matches!(error, Error::ServerGone { .. }), "{error}");
    let summary = Summary::read(&summary_path).unwrap();
    assert!(!summary.ok);
    assert!(summary.error.unwrap().contains("stopped answering"));
    assert!(
        summary.failures >= 2,
        "both uploads failed: {}",
        summary.failures
    );
    assert!(summary.bytes_sent > 10_000_000, "partial bytes are counted");
    assert!(summary.uploads.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_run_stops_its_uploads_and_frees_the_next_run() {
    let server = Server::start();
    let endless = loadgen::run(Config {
        users: 2,
        size: ByteSize(50_000_000_000),
        timeout: Duration::from_secs(600),
        ..server.config(Scenario::Upload, "dropped")
    });
    // Dropped while both uploads stream, as a caller's select! or timeout would.
    assert!(
        tokio::time::timeout(Duration::from_secs(3), endless)
            .await
            .is_err()
    );
    eventually(Duration::from_secs(10), "the uploads to stop", || {
        let server = &server;
        async move {
            let app = server.counters().await;
            app["uploads_in_flight"] == 0 && app["uploads_failed_total"] == 2
        }
    })
    .await;
    let next = tokio::time::timeout(
        Duration::from_secs(30),
        loadgen::run(Config {
            size: ByteSize(1_000_000),
            ..server.config(Scenario::Upload, "next")
        }),
    )
    .await
    .expect("the next run waited for the dropped one for too long")
    .unwrap();
    assert!(next.ok, "{}", next.to_text());
}
