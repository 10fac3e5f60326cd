//! `/metrics`: the stats snapshot in Prometheus text format 0.0.4, written
//! with prometheus-client. Names follow Prometheus conventions: prefix
//! `sharerig_`, base units in the name (`_bytes`, `_seconds`), `_total` on
//! counters (added by the encoder).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::allocator::AllocatorStats;
use crate::stats::Stats;

pub use prometheus_text::CONTENT_TYPE;

/// Builds a registry from `stats` and encodes it.
pub fn render(stats: &Stats) -> Result<String, std::fmt::Error> {
    let mut r = Registry::with_prefix("sharerig");
    let mut m = Metrics { r: &mut r };

    let build = Family::<Vec<(String, String)>, Gauge>::default();
    build
        .get_or_create(&vec![
            ("version".into(), env!("CARGO_PKG_VERSION").into()),
            ("allocator".into(), crate::allocator::NAME.into()),
        ])
        .set(1);
    m.r.register("build_info", "Version and allocator of this binary", build);

    match &stats.allocator {
        AllocatorStats::Jemalloc {
            allocated_bytes,
            active_bytes,
            resident_bytes,
            mapped_bytes,
            retained_bytes,
            metadata_bytes,
            ..
        } => {
            m.bytes(
                "allocator_allocated",
                "Bytes allocated by the program (jemalloc)",
                *allocated_bytes,
            );
            m.bytes(
                "allocator_active",
                "Bytes in active pages (jemalloc)",
                *active_bytes,
            );
            m.bytes(
                "allocator_resident",
                "Bytes jemalloc keeps resident in RAM",
                *resident_bytes,
            );
            m.bytes(
                "allocator_mapped",
                "Bytes in mapped extents (jemalloc)",
                *mapped_bytes,
            );
            m.bytes(
                "allocator_retained",
                "Virtual bytes retained but returned to the OS (jemalloc)",
                *retained_bytes,
            );
            m.bytes(
                "allocator_metadata",
                "Bytes of jemalloc metadata",
                *metadata_bytes,
            );
        }
        AllocatorStats::Dhat {
            current_bytes,
            peak_bytes,
            ..
        } => {
            m.bytes(
                "allocator_allocated",
                "Bytes live in the Rust heap (dhat)",
                *current_bytes,
            );
            m.bytes(
                "allocator_peak",
                "Peak bytes live in the Rust heap (dhat)",
                *peak_bytes,
            );
        }
        AllocatorStats::System {
            in_use_bytes,
            free_bytes,
            mmapped_bytes,
            ..
        } => {
            m.bytes(
                "allocator_allocated",
                "Bytes in use (glibc mallinfo2)",
                *in_use_bytes,
            );
            m.bytes(
                "allocator_free",
                "Free bytes held in arenas (glibc mallinfo2)",
                *free_bytes,
            );
            m.bytes(
                "allocator_mmapped",
                "Bytes in mmapped blocks (glibc mallinfo2)",
                *mmapped_bytes,
            );
        }
        AllocatorStats::Unavailable { .. } => {}
    }

    let s = &stats.sqlite;
    m.bytes(
        "sqlite_memory_used",
        "Bytes SQLite holds from the allocator",
        s.memory_used_bytes,
    );
    m.bytes(
        "sqlite_memory_used_highwater",
        "Peak bytes SQLite held",
        s.memory_used_highwater_bytes,
    );
    m.bytes(
        "sqlite_pagecache_overflow",
        "SQLite page cache bytes from malloc",
        s.pagecache_overflow_bytes,
    );
    m.bytes(
        "sqlite_cache_used",
        "Page cache bytes of the sampled SQLite connections",
        s.cache_used_bytes,
    );

    if let Some(p) = &stats.process {
        m.bytes(
            "process_resident",
            "Resident set size (VmRSS)",
            p.vm_rss_bytes,
        );
        m.bytes(
            "process_resident_anon",
            "Resident anonymous memory (RssAnon)",
            p.rss_anon_bytes,
        );
        m.bytes(
            "process_resident_file",
            "Resident file mappings (RssFile)",
            p.rss_file_bytes,
        );
        m.bytes(
            "process_resident_shmem",
            "Resident shared memory (RssShmem)",
            p.rss_shmem_bytes,
        );
        m.bytes(
            "process_resident_peak",
            "Peak resident set size (VmHWM)",
            p.vm_hwm_bytes,
        );
        m.gauge(
            "process_threads",
            "Threads of the server process",
            p.threads,
        );
        if let Some(fds) = p.open_fds {
            m.gauge("process_open_fds", "Open file descriptors", fds);
        }
    }

    if let Some(c) = &stats.cgroup {
        m.bytes(
            "cgroup_usage",
            "Memory charged to the cgroup, page cache included",
            c.usage_bytes,
        );
        if let Some(limit) = c.limit_bytes {
            m.bytes("cgroup_limit", "The cgroup's memory limit", limit);
        }
        if let Some(peak) = c.peak_bytes {
            m.bytes("cgroup_peak", "Peak memory charged to the cgroup", peak);
        }
        m.bytes(
            "cgroup_anon",
            "Anonymous memory in the cgroup",
            c.anon_bytes,
        );
        m.bytes("cgroup_file", "Page cache in the cgroup", c.file_bytes);
        m.bytes(
            "cgroup_mapped_file",
            "Page cache mapped into processes in the cgroup",
            c.mapped_file_bytes,
        );
        m.bytes(
            "cgroup_dirty",
            "Dirty page cache in the cgroup",
            c.dirty_bytes,
        );
        m.bytes(
            "cgroup_writeback",
            "Page cache under writeback in the cgroup",
            c.writeback_bytes,
        );
        m.bytes(
            "cgroup_inactive_file",
            "Inactive (cheaply reclaimable) page cache",
            c.inactive_file_bytes,
        );
        m.bytes(
            "cgroup_working_set",
            "Usage minus inactive page cache",
            c.working_set_bytes,
        );
        if let Some(kills) = c.oom_kills {
            m.counter("cgroup_oom_kills", "OOM kills in the cgroup", None, kills);
        }
        if let Some(hits) = c.limit_hits {
            m.counter(
                "cgroup_limit_hits",
                "Times usage reached the limit",
                None,
                hits,
            );
        }
    }

    if let Some(sys) = &stats.system {
        m.bytes(
            "system_memory_total",
            "MemTotal of the machine",
            sys.mem_total_bytes,
        );
        m.bytes(
            "system_memory_available",
            "MemAvailable of the machine",
            sys.mem_available_bytes,
        );
        m.bytes(
            "system_cached",
            "Page cache of the machine",
            sys.cached_bytes,
        );
        m.bytes(
            "system_dirty",
            "Dirty pages of the machine",
            sys.dirty_bytes,
        );
        m.bytes(
            "system_writeback",
            "Pages under writeback on the machine",
            sys.writeback_bytes,
        );
    }

    let a = &stats.app;
    let c = &a.counters;
    m.gauge(
        "uploads_in_flight",
        "Uploads being received",
        a.uploads_in_flight,
    );
    let b = &a.memory_budget;
    m.bytes(
        "memory_budget_limit",
        "What all request buffers may hold together (--memory-budget)",
        b.limit_bytes,
    );
    m.bytes(
        "memory_budget_in_use",
        "Bytes of the memory budget held by requests now",
        b.in_use_bytes,
    );
    m.bytes(
        "memory_budget_peak",
        "Most of the memory budget held at once since start",
        b.peak_in_use_bytes,
    );
    m.counter(
        "memory_budget_waits",
        "Requests that waited for room in the memory budget",
        None,
        b.waits_total,
    );
    m.counter(
        "memory_budget_refusals",
        "Requests refused (503) after waiting for room in the memory budget",
        None,
        b.refusals_total,
    );
    m.counter(
        "memory_budget_stalled_cut",
        "Requests stalled on their client, cut to make room in the memory budget",
        None,
        b.stalled_cut_total,
    );
    m.gauge(
        "downloads_in_flight",
        "Downloads being sent",
        c.downloads_in_flight,
    );
    m.counter(
        "received",
        "Upload body bytes received",
        Some(Unit::Bytes),
        c.bytes_received_total,
    );
    m.counter(
        "sent",
        "Download body bytes sent",
        Some(Unit::Bytes),
        c.bytes_sent_total,
    );
    m.counter(
        "chunks_written",
        "Chunk rows written",
        None,
        c.chunks_written_total,
    );
    m.counter(
        "uploads_completed",
        "Uploads stored",
        None,
        c.uploads_completed_total,
    );
    m.counter(
        "uploads_failed",
        "Uploads aborted or failed (their data removed)",
        None,
        c.uploads_failed_total,
    );
    m.counter(
        "downloads_started",
        "Downloads started (GET)",
        None,
        c.downloads_started_total,
    );
    m.counter(
        "download_records_written",
        "Download history rows stored (unlimited files, through the queue)",
        None,
        c.download_records_written_total,
    );
    m.counter(
        "download_records_dropped",
        "Download records not stored: queue full or write failed",
        None,
        c.download_records_dropped_total,
    );
    m.counter("gc_runs", "Garbage collections run", None, c.gc_runs_total);
    m.seconds(
        "gc_last_duration",
        "Duration of the last garbage collection",
        c.last_gc_duration_seconds,
    );
    m.bytes(
        "db_file",
        "Size of the SQLite database file",
        a.files.db_bytes,
    );
    m.bytes("wal_file", "Size of the SQLite WAL file", a.files.wal_bytes);
    m.bytes(
        "shm_file",
        "Size of the SQLite shared-memory file",
        a.files.shm_bytes,
    );
    m.seconds(
        "stats_collect",
        "Time to collect this snapshot",
        stats.collect_seconds,
    );

    let mut out = String::new();
    prometheus_text::encode(&mut out, &r)?;
    Ok(out)
}

struct Metrics<'a> {
    r: &'a mut Registry,
}

impl Metrics<'_> {
    fn bytes(&mut self, name: &str, help: &str, value: u64) {
        let g = Gauge::<u64, AtomicU64>::default();
        g.set(value);
        self.r.register_with_unit(name, help, Unit::Bytes, g);
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) {
        let g = Gauge::<u64, AtomicU64>::default();
        g.set(value);
        self.r.register(name, help, g);
    }

    fn seconds(&mut self, name: &str, help: &str, value: f64) {
        let g = Gauge::<f64, AtomicU64>::default();
        g.set(value);
        self.r.register_with_unit(name, help, Unit::Seconds, g);
    }

    fn counter(&mut self, name: &str, help: &str, unit: Option<Unit>, value: u64) {
        let c = Counter::<u64, AtomicU64>::default();
        c.inc_by(value);
        match unit {
            Some(u) => self.r.register_with_unit(name, help, u, c),
            None => self.r.register(name, help, c),
        }
    }
}
