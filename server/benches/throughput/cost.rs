//! Phase 4: what introspection costs (`/debug/stats` at idle and polled at
//! 10 Hz during uploads).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::process::{ServerProcess, Session};
use crate::raw::{Rate, median_rate, percentile};

/// Target for one `/debug/stats` collection at steady state.
pub(crate) const COLLECT_TARGET_MS: f64 = 2.0;
/// Idle collections sampled for the collection time.
pub(crate) const IDLE_SAMPLES: usize = 200;
/// The poller's rate: 10 Hz, much more often than any scraper.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Uploads per server, alternating between the two servers.
pub(crate) const COST_ROUNDS: usize = 3;

pub(crate) struct CostFigures {
    pub(crate) collect_median_ms: f64,
    pub(crate) collect_p99_ms: f64,
    pub(crate) request_median_ms: f64,
    /// Median upload of the server nobody polls.
    pub(crate) without: Rate,
    /// Median upload of the server polled at 10 Hz meanwhile.
    pub(crate) with: Rate,
    pub(crate) polls: usize,
    pub(crate) hwm_without_mib: f64,
    pub(crate) hwm_with_mib: f64,
}

/// Two fresh servers; uploads alternate between them (so machine noise hits
/// both alike), and one of them is polled at 10 Hz during its uploads.
pub(crate) async fn introspection_cost(size: u64) -> Result<CostFigures> {
    let quiet = ServerProcess::start(true).await?;
    let polled = ServerProcess::start(true).await?;
    let debug = polled.debug_url.clone().context("no debug listener")?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .context("building the HTTP client")?;

    let mut collect = Vec::with_capacity(IDLE_SAMPLES);
    let mut request = Vec::with_capacity(IDLE_SAMPLES);
    for _ in 0..IDLE_SAMPLES {
        let started = Instant::now();
        let stats = fetch_stats(&http, &debug).await?;
        request.push(started.elapsed().as_secs_f64() * 1e3);
        collect.push(
            stats["collect_seconds"]
                .as_f64()
                .context("stats without collect_seconds")?
                * 1e3,
        );
    }

    let quiet_session = Session::login(&quiet.base_url).await?;
    let polled_session = Session::login(&polled.base_url).await?;
    let (mut without, mut with, mut polls) = (Vec::new(), Vec::new(), 0);
    for _ in 0..COST_ROUNDS {
        without.push(quiet_session.upload(size).await?.1);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let poller = tokio::spawn(poll_stats(http.clone(), debug.clone(), stopped));
        with.push(polled_session.upload(size).await?.1);
        let _ = stop.send(());
        polls += poller.await.context("poller panicked")??;
    }
    let figures = CostFigures {
        collect_median_ms: percentile(&mut collect, 0.5),
        collect_p99_ms: percentile(&mut collect, 0.99),
        request_median_ms: percentile(&mut request, 0.5),
        without: median_rate(size, &mut without),
        with: median_rate(size, &mut with),
        polls,
        hwm_without_mib: quiet.vm_hwm_mib()?,
        hwm_with_mib: polled.vm_hwm_mib()?,
    };
    quiet.stop().await?;
    polled.stop().await?;
    Ok(figures)
}

pub(crate) async fn fetch_stats(http: &reqwest::Client, debug: &str) -> Result<Value> {
    http.get(format!("{debug}/debug/stats"))
        .send()
        .await
        .context("GET /debug/stats")?
        .error_for_status()
        .context("GET /debug/stats")?
        .json()
        .await
        .context("decoding /debug/stats")
}

/// Fetches `/debug/stats` every [`POLL_INTERVAL`] until `stop`; returns how many times.
pub(crate) async fn poll_stats(
    http: reqwest::Client,
    debug: String,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<usize> {
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    let mut polls = 0;
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(polls),
            _ = ticker.tick() => {
                fetch_stats(&http, &debug).await?;
                polls += 1;
            }
        }
    }
}
