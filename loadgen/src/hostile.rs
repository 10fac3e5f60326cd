//! Attack traffic: raw-socket clients (tokio `TcpStream`s writing hand-made HTTP/1.1), not goose
//! users, since goose cannot stall mid-body. One file per class: `login_flood`, `stalled_guest`,
//! `slow_body`, `idle_flood`, `history_flood`. Each is bounded in connections
//! (`connections`, at most `MAX_CONNECTIONS`) and in time (`run-time`, default 30 s), runs
//! against loopback only, and may come from other loopback addresses (`sources`).
//!
//! The server refusing, resetting or answering 413/429/503 is the expected result and is counted
//! (`AttackSummary`); a server gone (a fresh connect from 127.0.0.1 refused) stops the run as
//! `Error::ServerGone`.

mod conn;
mod history_flood;
mod idle_flood;
mod login_flood;
mod owner;
mod response;
mod slow_body;
mod sources;
mod stalled_guest;
mod tally;
mod target;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub use sources::{MAX_SOURCES, Sources};
pub use tally::{AttackSummary, HistoryCheck};

use crate::config::{Config, Scenario};
use crate::error::Error;
use crate::preflight::{self, Fatal};
use crate::summary::{ReportFiles, Summary};
use conn::Attack;
use owner::{Owner, Setup};

/// Most connections one attack holds.
pub const MAX_CONNECTIONS: usize = 4096;
/// Longest attack.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// An attack's time bound when `run-time` is unset.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(30);
/// How often the server's presence is checked during an attack.
const GONE_INTERVAL: Duration = Duration::from_secs(1);

/// A class's connections when `connections` is unset: what one attacker did to the old server.
pub const fn default_connections(scenario: Scenario) -> usize {
    match scenario {
        Scenario::LoginBodyFlood | Scenario::StalledGuestUpload => 200,
        Scenario::SlowBody => 260,
        Scenario::IdleFlood => 300,
        Scenario::HistoryFlood => 4,
        _ => 0,
    }
}

/// The checks of an attack's knobs (called by `Config::validate`).
pub(crate) fn validate(config: &Config) -> Result<(), String> {
    target::resolve(&config.host)?;
    config.sources.check()?;
    let connections = connections(config);
    if !(1..=MAX_CONNECTIONS).contains(&connections) {
        return Err(format!(
            "connections must be 1 to {MAX_CONNECTIONS}, not {connections}"
        ));
    }
    let duration = duration(config);
    if duration.is_zero() || duration > MAX_DURATION {
        return Err(format!(
            "run-time of an attack must be above 0 and at most 1h, not {}",
            humantime::format_duration(duration)
        ));
    }
    if config.trickle_interval.is_zero() {
        return Err("trickle-interval must be above 0".into());
    }
    if config.scenario == Scenario::HistoryFlood && config.history_requests == 0 {
        return Err("history-requests must be at least 1".into());
    }
    Ok(())
}

fn connections(config: &Config) -> usize {
    config
        .connections
        .unwrap_or_else(|| default_connections(config.scenario))
}

fn duration(config: &Config) -> Duration {
    config.run_time.unwrap_or(DEFAULT_DURATION)
}

/// Runs one attack (an already validated `config`) and returns its summary, written like any
/// run's. `ok`: it ran its course and the server is still there.
pub(crate) async fn run(config: Config) -> Result<Summary, Error> {
    let started_at = SystemTime::now();
    let clock = Instant::now();
    let (target, host) = target::resolve(&config.host).map_err(Error::Config)?;
    let attack = Arc::new(Attack {
        target,
        host,
        sources: config.sources.addresses(config.scenario),
        connections: connections(&config),
        deadline: tokio::time::Instant::now() + duration(&config),
        tally: tally::Tally::default(),
        stop: tokio_util::sync::CancellationToken::new(),
        config,
    });
    // Stops the connections when this future is dropped (a caller's timeout or select!).
    let _stop_on_drop = attack.stop.clone().drop_guard();
    let watcher = tokio::spawn(watch(Arc::clone(&attack)));
    let (fatal, setup_error, history) = match execute(&attack).await {
        Ok(history) => (None, None, history),
        Err(Setup::Fatal(fatal)) => (Some(fatal), None, None),
        Err(Setup::Failed(detail)) => (None, Some(format!("setup: {detail}")), None),
    };
    attack.stop.cancel();
    let gone_mid_run = watcher.await.unwrap_or(false);
    let gone = gone_mid_run || target::gone(attack.target).await;
    let fatal = fatal.or_else(|| {
        gone.then(|| Fatal::ServerGone("a fresh connection from 127.0.0.1 was refused".into()))
    });

    let config = &attack.config;
    let mut counted = attack.tally.summary();
    counted.connections = attack.connections;
    counted.sources = attack.sources.clone();
    counted.duration_limit_seconds = duration(config).as_secs_f64();
    counted.history = history;
    counted.server_alive = !gone;
    let error = fatal
        .as_ref()
        .map(|f| f.describe(&config.host))
        .or(setup_error);
    let summary = Summary {
        ok: error.is_none(),
        error,
        host: config.host.clone(),
        scenario: Some(config.scenario),
        started: humantime::format_rfc3339_seconds(started_at).to_string(),
        duration_seconds: clock.elapsed().as_secs_f64(),
        requests: counted.requests_started,
        bytes_sent: counted.bytes_sent,
        bytes_received: counted.bytes_received,
        attack: Some(counted),
        loadgen_peak_rss_bytes: memstat::process::read(None).ok().map(|m| m.vm_hwm_bytes),
        reports: ReportFiles {
            summary: config.report_dir.join(crate::summary::SUMMARY_FILE),
            goose: Vec::new(),
        },
        config: Some(config.redacted()),
        ..Summary::default()
    };
    crate::run::write_summary(&summary)?;
    let host = config.host.clone();
    let summary = Box::new(summary);
    match fatal {
        None => Ok(*summary),
        Some(Fatal::WrongSecret) => Err(Error::WrongSecret { host, summary }),
        Some(Fatal::Unreachable(detail)) => Err(Error::Unreachable {
            host,
            detail,
            summary,
        }),
        Some(Fatal::ServerGone(detail)) => Err(Error::ServerGone {
            host,
            detail,
            summary,
        }),
        Some(Fatal::Interrupted) => Err(Error::Interrupted { summary }),
    }
}

/// Checks the server is there, sets the class up (as the owner when it needs one) and runs it.
async fn execute(attack: &Arc<Attack>) -> Result<Option<HistoryCheck>, Setup> {
    let config = &attack.config;
    let client = preflight::client(&config.host)
        .map_err(|e| Setup::Failed(format!("cannot build an HTTP client: {e}")))?;
    preflight::healthy(&client, &config.host)
        .await
        .map_err(|detail| Setup::Fatal(Fatal::Unreachable(detail)))?;
    match config.scenario {
        Scenario::LoginBodyFlood => login_flood::run(attack).await,
        Scenario::SlowBody => slow_body::run(attack).await,
        Scenario::IdleFlood => idle_flood::run(attack).await,
        Scenario::StalledGuestUpload => {
            let owner = Owner::login(&config.host, &config.secret).await?;
            let link = owner
                .unlimited_guest_link("loadgen stalled-guest-upload")
                .await?;
            stalled_guest::run(attack, link).await;
        }
        Scenario::HistoryFlood => {
            let owner = Owner::login(&config.host, &config.secret).await?;
            let id = owner.small_upload("history-flood.bin").await?;
            history_flood::run(attack, id.clone()).await;
            return Ok(Some(owner.history(&id, config.timeout).await));
        }
        other => {
            return Err(Setup::Failed(format!("{other} is not an attack scenario")));
        }
    }
    Ok(None)
}

/// Checks every second that the server is there; true (and the attack stopped) when it is gone.
async fn watch(attack: Arc<Attack>) -> bool {
    let mut tick = tokio::time::interval(GONE_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = attack.stop.cancelled() => return false,
        }
        if target::gone(attack.target).await {
            attack.stop.cancel();
            return true;
        }
    }
}
