//! The background collector: runs storage GC at start-up and then every
//! `--gc-interval`, and the opt-in VACUUM after it.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::counters::Counters;
use crate::live_uploads::LiveUploads;
use crate::storage::{Db, gc, now_millis};

pub async fn run(
    db: Db,
    live: Arc<LiveUploads>,
    counters: Arc<Counters>,
    every: Duration,
    vacuum: bool,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let live = Arc::clone(&live);
        let started = std::time::Instant::now();
        let result = db.run(move |s| gc::collect(s, &live, now_millis())).await;
        Counters::add(&counters.gc_runs, 1);
        counters.last_gc_duration_micros.store(
            started.elapsed().as_micros() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        match result {
            Ok(report) => tracing::info!(?report, "garbage collection done"),
            Err(e) => {
                tracing::warn!(error = %e, "garbage collection failed; retrying next interval")
            }
        }
        if vacuum {
            match db.run(gc::vacuum).await {
                Ok(()) => tracing::info!("vacuum done"),
                Err(e) => tracing::warn!(error = %e, "vacuum failed"),
            }
        }
    }
}
