//! One snapshot of every memory layer, from inside the server: allocator,
//! SQLite, the process, its cgroup, the machine, and the app's own counters.
//! Served as JSON at `/debug/stats` and as Prometheus text at `/metrics`
//! (documented in `docs/stats.md`).

use std::time::Instant;

use chrono::{DateTime, Utc};
use memstat::cgroup::{Cgroup, CgroupMemory};
use memstat::process::ProcessMemory;
use memstat::system::SystemMemory;
use serde::Serialize;

use crate::allocator::{self, AllocatorStats};
use crate::budget::BudgetStats;
use crate::counters::CounterValues;
use crate::state::AppState;
use crate::storage::FileSizes;
use crate::storage::status::SqliteMemory;

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub timestamp: DateTime<Utc>,
    pub version: &'static str,
    pub allocator: AllocatorStats,
    pub sqlite: SqliteMemory,
    /// `null` when /proc is not readable (then `process_error` says why).
    pub process: Option<ProcessMemory>,
    pub process_error: Option<String>,
    /// `null` when no memory cgroup was found (then `cgroup_error` says why).
    pub cgroup: Option<CgroupMemory>,
    pub cgroup_error: Option<String>,
    pub system: Option<SystemMemory>,
    pub system_error: Option<String>,
    pub app: AppStats,
    /// How long this snapshot took to collect.
    pub collect_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AppStats {
    pub uploads_in_flight: u64,
    /// The memory budget every request buffer draws from (`budget.rs`).
    pub memory_budget: BudgetStats,
    #[serde(flatten)]
    pub counters: CounterValues,
    #[serde(flatten)]
    pub files: FileSizes,
}

/// Collects a snapshot. Blocking (reads files, takes the SQLite writer lock
/// briefly): call from `spawn_blocking`.
pub fn collect(state: &AppState, cgroup: Option<&Cgroup>) -> Stats {
    let start = Instant::now();
    let store = state.db.store();
    let (process, process_error) = split(memstat::process::read(None));
    let (cgroup, cgroup_error) = match cgroup {
        Some(cg) => split(cg.read()),
        None => (None, Some(cgroup_unavailable())),
    };
    let (system, system_error) = split(memstat::system::read());
    Stats {
        timestamp: Utc::now(),
        version: allocator::VERSION_LINE,
        allocator: allocator::stats(),
        sqlite: store.memory(),
        process,
        process_error,
        cgroup,
        cgroup_error,
        system,
        system_error,
        app: AppStats {
            uploads_in_flight: state.live_uploads.len() as u64,
            memory_budget: state.budget.stats(),
            counters: state.counters.snapshot(),
            files: store.file_sizes(),
        },
        collect_seconds: start.elapsed().as_secs_f64(),
    }
}

/// A reading, or why there is none.
fn split<T>(r: memstat::Result<T>) -> (Option<T>, Option<String>) {
    match r {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e.to_string())),
    }
}

fn cgroup_unavailable() -> String {
    match Cgroup::of_process(None) {
        Ok(_) => "the memory cgroup appeared after start-up".into(),
        Err(e) => e.to_string(),
    }
}
