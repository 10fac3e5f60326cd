//! Hands SQLite's idle page caches back every [`INTERVAL`], so the memory an
//! upload or a download filled leaves the process soon after it ends (jemalloc
//! then returns the freed pages to the OS within its `dirty_decay_ms`).

use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::storage::Db;

/// How often idle connections' caches are released. Short enough that a
/// finished burst is gone within seconds; a busy connection is skipped, and
/// one in a long download re-reads at most a few pages per interval.
pub const INTERVAL: Duration = Duration::from_secs(5);

pub async fn run(db: Db, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(INTERVAL);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let _ = db
            .run(|store| {
                store.release_idle_memory();
                Ok(())
            })
            .await;
    }
}
