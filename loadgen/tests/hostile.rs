//! The attack scenarios against the real server, small and short: each runs its bounded
//! course (in time and connections), comes from the source addresses it was given, and its
//! summary counts what happened. A non-loopback target is refused; a server that dies
//! mid-attack ends the run as `ServerGone`.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::Server;
use loadgen::{AttackSummary, ByteSize, Config, Error, Scenario, Sources, Summary};

/// Time bound of every attack here; a run must end within it plus this slack.
const RUN_TIME: Duration = Duration::from_secs(2);
const SLACK: Duration = Duration::from_secs(4);

fn attack_config(server: &Server, scenario: Scenario, connections: usize) -> Config {
    Config {
        connections: Some(connections),
        run_time: Some(RUN_TIME),
        sources: Sources::List(vec![
            "127.0.0.2".parse().unwrap(),
            "127.0.0.3".parse().unwrap(),
        ]),
        ..server.config(scenario, scenario.name())
    }
}

/// Runs `config`, checks it was bounded and ok, and returns what it counted.
async fn bounded_run(config: Config, limit: Duration) -> (Summary, AttackSummary) {
    let started = Instant::now();
    let summary = loadgen::run(config).await.unwrap();
    let took = started.elapsed();
    assert!(took < limit, "the attack took {took:?}");
    assert!(summary.ok, "{}", summary.to_text());
    let attack = summary.attack.clone().unwrap();
    assert!(attack.server_alive);
    assert!(summary.reports.summary.is_file());
    (summary, attack)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_body_flood_sends_every_body_and_holds() {
    let server = Server::start();
    let config = attack_config(&server, Scenario::LoginBodyFlood, 4);
    let (summary, attack) = bounded_run(config, RUN_TIME + SLACK).await;
    assert!(
        summary.duration_seconds >= RUN_TIME.as_secs_f64() - 0.1,
        "held to the end"
    );
    // The server refuses the 2 MB body early (413) and closes; a body cut off that way is
    // sent again on a new connection, so there may be more than 4 connections, each with
    // one request, and every body sent whole counts its 2 MB.
    assert!(attack.connections_opened >= 4, "{attack:?}");
    assert_eq!(attack.requests_started, attack.connections_opened);
    assert!(attack.bytes_sent >= attack.requests_sent * 2_000_000);
    assert_eq!(attack.sources.len(), 2);
    // A wrong secret: the old server answers 401 once it has read the body; a fixed one may
    // refuse earlier (413/429) or close. Either way every request is accounted for.
    let answered: u64 = attack.statuses.values().sum();
    assert!(
        answered + attack.closed_by_server + attack.reset_by_server >= 4,
        "{attack:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_guest_upload_stalls_after_its_bytes() {
    let server = Server::start();
    let config = Config {
        stall_after: ByteSize(300_000),
        ..attack_config(&server, Scenario::StalledGuestUpload, 3)
    };
    let (_, attack) = bounded_run(config, RUN_TIME + SLACK).await;
    assert_eq!(attack.connections_opened, 3);
    assert_eq!(attack.requests_started, 3);
    let refused: u64 = attack.statuses.values().sum::<u64>() + attack.reset_by_server;
    assert!(attack.requests_sent == 3 || refused > 0, "{attack:?}");
    assert!(
        attack.bytes_sent >= 3 * 300_000 || refused > 0,
        "{attack:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_body_trickles_bytes() {
    let server = Server::start();
    let config = Config {
        trickle_interval: Duration::from_millis(250),
        ..attack_config(&server, Scenario::SlowBody, 3)
    };
    let (_, attack) = bounded_run(config, RUN_TIME + SLACK).await;
    assert_eq!(attack.connections_opened, 3);
    // The head, then about one byte every 250 ms for 2 s on each connection.
    let head_bytes = 3 * 100;
    assert!(attack.bytes_sent > head_bytes + 3 * 4, "{attack:?}");
    assert!(attack.bytes_sent < head_bytes * 3 + 3 * 12, "{attack:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_flood_holds_connections_and_uses_its_sources() {
    let server = Server::start();
    let config = Config {
        sources: Sources::Count(3),
        ..attack_config(&server, Scenario::IdleFlood, 6)
    };
    let (summary, attack) = bounded_run(config, RUN_TIME + SLACK).await;
    assert!(attack.connections_opened >= 6, "{attack:?}");
    assert_eq!(attack.bytes_sent, 0);
    assert_eq!(attack.sources.len(), 3);
    assert!(
        attack
            .sources
            .iter()
            .all(|ip| ip.is_loopback() && !ip.to_string().ends_with(".1"))
    );
    assert!(summary.duration_seconds >= RUN_TIME.as_secs_f64() - 0.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_flood_pipelines_and_reads_the_history() {
    let server = Server::start();
    let config = Config {
        history_requests: 300,
        run_time: Some(Duration::from_secs(20)),
        ..attack_config(&server, Scenario::HistoryFlood, 2)
    };
    let (_, attack) = bounded_run(config, Duration::from_secs(25)).await;
    assert!(attack.connections_opened >= 2, "{attack:?}");
    assert!(attack.requests_sent >= 300, "{attack:?}");
    assert_eq!(attack.responses, 300, "{attack:?}");
    let history = attack.history.unwrap();
    assert_eq!(history.status, Some(200), "{history:?}");
    assert!(history.rows.unwrap() > 0, "{history:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_stay_on_this_machine() {
    let dir = tempfile::tempdir().unwrap();
    let base = Config {
        secret: "x".into(),
        scenario: Scenario::IdleFlood,
        report_dir: dir.path().to_owned(),
        ..Config::default()
    };
    let outside = Config {
        host: "http://10.1.2.3:4001".into(),
        ..base.clone()
    };
    let error = loadgen::run(outside).await.unwrap_err();
    assert!(matches!(error, Error::Config(_)), "{error}");
    assert!(error.to_string().contains("loopback"), "{error}");
    let source = Config {
        sources: "192.168.0.9".parse().unwrap(),
        ..base.clone()
    };
    assert!(
        loadgen::run(source)
            .await
            .unwrap_err()
            .to_string()
            .contains("loopback")
    );
    let too_many = Config {
        connections: Some(loadgen::MAX_CONNECTIONS + 1),
        ..base
    };
    assert!(loadgen::run(too_many).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_gone_mid_attack_ends_it() {
    let mut server = Server::start();
    let config = Config {
        run_time: Some(Duration::from_secs(30)),
        ..attack_config(&server, Scenario::IdleFlood, 3)
    };
    let started = Instant::now();
    let attack = tokio::spawn(loadgen::run(config));
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.kill();
    let error = attack.await.unwrap().unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "ended soon after"
    );
    assert!(matches!(error, Error::ServerGone { .. }), "{error}");
    let summary = error.partial_summary().unwrap();
    assert!(!summary.ok);
    assert!(!summary.attack.as_ref().unwrap().server_alive);
}
