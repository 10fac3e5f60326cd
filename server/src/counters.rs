//! Application counters: cheap atomics bumped on the hot paths and read by
//! `/debug/stats` and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

#[derive(Debug, Default)]
pub struct Counters {
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub chunks_written: AtomicU64,
    pub uploads_completed: AtomicU64,
    pub uploads_failed: AtomicU64,
    pub downloads_started: AtomicU64,
    pub downloads_in_flight: AtomicU64,
    /// Download history rows stored by the download log's writer.
    pub download_records_written: AtomicU64,
    /// Download records not stored: the queue was full, or a batch failed.
    pub download_records_dropped: AtomicU64,
    pub gc_runs: AtomicU64,
    pub last_gc_duration_micros: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn snapshot(&self) -> CounterValues {
        CounterValues {
            bytes_received_total: self.bytes_received.load(Relaxed),
            bytes_sent_total: self.bytes_sent.load(Relaxed),
            chunks_written_total: self.chunks_written.load(Relaxed),
            uploads_completed_total: self.uploads_completed.load(Relaxed),
            uploads_failed_total: self.uploads_failed.load(Relaxed),
            downloads_started_total: self.downloads_started.load(Relaxed),
            downloads_in_flight: self.downloads_in_flight.load(Relaxed),
            download_records_written_total: self.download_records_written.load(Relaxed),
            download_records_dropped_total: self.download_records_dropped.load(Relaxed),
            gc_runs_total: self.gc_runs.load(Relaxed),
            last_gc_duration_seconds: self.last_gc_duration_micros.load(Relaxed) as f64 / 1e6,
        }
    }
}

/// The counters at one instant (bytes are bytes, durations seconds).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CounterValues {
    pub bytes_received_total: u64,
    pub bytes_sent_total: u64,
    pub chunks_written_total: u64,
    pub uploads_completed_total: u64,
    pub uploads_failed_total: u64,
    pub downloads_started_total: u64,
    pub downloads_in_flight: u64,
    pub download_records_written_total: u64,
    pub download_records_dropped_total: u64,
    pub gc_runs_total: u64,
    pub last_gc_duration_seconds: f64,
}

/// Counts one download in flight until dropped.
pub struct InFlight(Arc<Counters>);

impl InFlight {
    pub fn download(counters: &Arc<Counters>) -> Self {
        counters.downloads_started.fetch_add(1, Relaxed);
        counters.downloads_in_flight.fetch_add(1, Relaxed);
        InFlight(Arc::clone(counters))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.downloads_in_flight.fetch_sub(1, Relaxed);
    }
}
