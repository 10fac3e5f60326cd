//! The samples turned into columns: one time axis and one column per memory
//! layer, each value in bytes (or bytes per second for the rates), `None`
//! where the sample had no figure. Every later step (plots, correlation,
//! verdict, suspects) works on these plain columns, so it can be tested on
//! synthetic series without a run directory.

use run_format::Sample;

/// A named series of the run. `key` is the stable name used in
/// `summary.json`; `label` is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layer {
    MachineUsage,
    MachineWorkingSet,
    MachineLimit,
    MachineAnon,
    PageCache,
    PageCacheClean,
    DirtyWriteback,
    InactiveFile,
    LimitHits,
    OomKills,
    PressureSome,
    ProcessRss,
    ProcessAnon,
    ProcessShmem,
    AllocatorAllocated,
    AllocatorActive,
    AllocatorResident,
    AllocatorRetained,
    AllocatorFragmentation,
    SqliteMemory,
    DbFile,
    WalFile,
    BytesReceived,
    BytesSent,
    ReceiveRate,
    SendRate,
}

impl Layer {
    pub const ALL: [Layer; 26] = [
        Layer::MachineUsage,
        Layer::MachineWorkingSet,
        Layer::MachineLimit,
        Layer::MachineAnon,
        Layer::PageCache,
        Layer::PageCacheClean,
        Layer::DirtyWriteback,
        Layer::InactiveFile,
        Layer::LimitHits,
        Layer::OomKills,
        Layer::PressureSome,
        Layer::ProcessRss,
        Layer::ProcessAnon,
        Layer::ProcessShmem,
        Layer::AllocatorAllocated,
        Layer::AllocatorActive,
        Layer::AllocatorResident,
        Layer::AllocatorRetained,
        Layer::AllocatorFragmentation,
        Layer::SqliteMemory,
        Layer::DbFile,
        Layer::WalFile,
        Layer::BytesReceived,
        Layer::BytesSent,
        Layer::ReceiveRate,
        Layer::SendRate,
    ];

    /// The memory layers whose peaks are reported and compared (bytes of memory or files).
    pub const PEAKS: [Layer; 17] = [
        Layer::MachineUsage,
        Layer::MachineWorkingSet,
        Layer::MachineAnon,
        Layer::PageCache,
        Layer::PageCacheClean,
        Layer::DirtyWriteback,
        Layer::ProcessRss,
        Layer::ProcessAnon,
        Layer::ProcessShmem,
        Layer::AllocatorAllocated,
        Layer::AllocatorActive,
        Layer::AllocatorResident,
        Layer::AllocatorRetained,
        Layer::AllocatorFragmentation,
        Layer::SqliteMemory,
        Layer::DbFile,
        Layer::WalFile,
    ];

    /// Stable name (summary.json keys).
    pub fn key(self) -> &'static str {
        match self {
            Layer::MachineUsage => "machine_usage",
            Layer::MachineWorkingSet => "machine_working_set",
            Layer::MachineLimit => "machine_limit",
            Layer::MachineAnon => "machine_anon",
            Layer::PageCache => "page_cache",
            Layer::PageCacheClean => "page_cache_clean",
            Layer::DirtyWriteback => "dirty_writeback",
            Layer::InactiveFile => "inactive_file",
            Layer::LimitHits => "limit_hits",
            Layer::OomKills => "oom_kills",
            Layer::PressureSome => "pressure_some_avg10",
            Layer::ProcessRss => "process_rss",
            Layer::ProcessAnon => "process_anon",
            Layer::ProcessShmem => "process_shmem",
            Layer::AllocatorAllocated => "allocator_allocated",
            Layer::AllocatorActive => "allocator_active",
            Layer::AllocatorResident => "allocator_resident",
            Layer::AllocatorRetained => "allocator_retained",
            Layer::AllocatorFragmentation => "allocator_fragmentation",
            Layer::SqliteMemory => "sqlite_memory",
            Layer::DbFile => "db_file",
            Layer::WalFile => "wal_file",
            Layer::BytesReceived => "bytes_received",
            Layer::BytesSent => "bytes_sent",
            Layer::ReceiveRate => "receive_rate",
            Layer::SendRate => "send_rate",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Layer::MachineUsage => "machine usage",
            Layer::MachineWorkingSet => "working set (usage - inactive file)",
            Layer::MachineLimit => "limit",
            Layer::MachineAnon => "anon",
            Layer::PageCache => "page cache",
            Layer::PageCacheClean => "page cache (clean)",
            Layer::DirtyWriteback => "dirty + writeback",
            Layer::InactiveFile => "inactive file cache",
            Layer::LimitHits => "limit hits (failcnt)",
            Layer::OomKills => "OOM kills",
            Layer::PressureSome => "memory pressure (PSI some avg10, %)",
            Layer::ProcessRss => "RSS",
            Layer::ProcessAnon => "anon RSS",
            Layer::ProcessShmem => "shmem RSS (WAL index, tmpfs)",
            Layer::AllocatorAllocated => "allocator allocated",
            Layer::AllocatorActive => "allocator active",
            Layer::AllocatorResident => "allocator resident",
            Layer::AllocatorRetained => "allocator retained",
            Layer::AllocatorFragmentation => "allocator resident - allocated",
            Layer::SqliteMemory => "SQLite memory used",
            Layer::DbFile => "DB file",
            Layer::WalFile => "WAL file",
            Layer::BytesReceived => "bytes received",
            Layer::BytesSent => "bytes sent",
            Layer::ReceiveRate => "received per second",
            Layer::SendRate => "sent per second",
        }
    }

    /// This layer's figure in one sample (the derived rates are filled in by [`Timeline::from_samples`]).
    fn read(self, s: &Sample) -> Option<f64> {
        let m = s.machine.as_ref();
        let p = s.process.as_ref().map(|p| &p.memory);
        let server = s.server.as_ref();
        let allocator = server.map(|v| &v.allocator);
        let bytes = |v: u64| Some(v as f64);
        match self {
            Layer::MachineUsage => bytes(m?.usage_bytes),
            Layer::MachineWorkingSet => bytes(m?.working_set_bytes),
            Layer::MachineLimit => bytes(m?.limit_bytes?),
            Layer::MachineAnon => bytes(m?.anon_bytes),
            Layer::PageCache => bytes(m?.file_bytes),
            Layer::PageCacheClean => {
                let m = m?;
                bytes(
                    m.file_bytes
                        .saturating_sub(m.dirty_bytes)
                        .saturating_sub(m.writeback_bytes),
                )
            }
            Layer::DirtyWriteback => bytes(m?.dirty_bytes + m?.writeback_bytes),
            Layer::InactiveFile => bytes(m?.inactive_file_bytes),
            Layer::LimitHits => bytes(m?.limit_hits?),
            Layer::OomKills => bytes(m?.oom_kills?),
            Layer::PressureSome => Some(m?.pressure.as_ref()?.some_avg10),
            Layer::ProcessRss => bytes(p?.vm_rss_bytes),
            Layer::ProcessAnon => bytes(p?.rss_anon_bytes),
            Layer::ProcessShmem => bytes(p?.rss_shmem_bytes),
            Layer::AllocatorAllocated => bytes(allocator?.allocated_bytes?),
            Layer::AllocatorActive => bytes(allocator?.active_bytes?),
            Layer::AllocatorResident => bytes(allocator?.resident_bytes?),
            Layer::AllocatorRetained => bytes(allocator?.retained_bytes?),
            Layer::AllocatorFragmentation => {
                let a = allocator?;
                bytes(a.resident_bytes?.saturating_sub(a.allocated_bytes?))
            }
            Layer::SqliteMemory => bytes(server?.sqlite.memory_used_bytes?),
            Layer::DbFile => bytes(s.files?.db_bytes),
            Layer::WalFile => bytes(s.files?.wal_bytes),
            Layer::BytesReceived => bytes(server?.app.bytes_received_total?),
            Layer::BytesSent => bytes(server?.app.bytes_sent_total?),
            Layer::ReceiveRate | Layer::SendRate => None,
        }
    }
}

/// Window over which the byte counters are turned into rates: one second
/// smooths the 10 Hz jitter of a counter read at slightly uneven instants.
const RATE_WINDOW_S: f64 = 1.0;

/// One time axis (seconds since the run started) and a column per [`Layer`].
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    pub t_s: Vec<f64>,
    columns: Vec<Vec<Option<f64>>>,
    /// Anon RSS of each process name in the machine's group (`cgroup` mode):
    /// the server and a wrapper beside it. Empty without a listing.
    pub processes: Vec<(String, Vec<Option<f64>>)>,
}

impl Timeline {
    pub fn from_samples(samples: &[Sample]) -> Timeline {
        let t_s: Vec<f64> = samples.iter().map(|s| s.t_ms as f64 / 1000.0).collect();
        let mut columns: Vec<Vec<Option<f64>>> = Layer::ALL
            .iter()
            .map(|l| samples.iter().map(|s| l.read(s)).collect())
            .collect();
        columns[Layer::ReceiveRate as usize] =
            rate(&t_s, &columns[Layer::BytesReceived as usize], RATE_WINDOW_S);
        columns[Layer::SendRate as usize] =
            rate(&t_s, &columns[Layer::BytesSent as usize], RATE_WINDOW_S);
        let processes = crate::processes::anon_by_name(samples);
        Timeline {
            t_s,
            columns,
            processes,
        }
    }

    /// A timeline from given columns (tests, synthetic series); missing layers are empty.
    pub fn from_columns(t_s: Vec<f64>, given: &[(Layer, Vec<Option<f64>>)]) -> Timeline {
        let mut columns = vec![vec![None; t_s.len()]; Layer::ALL.len()];
        for (layer, values) in given {
            columns[*layer as usize] = values.clone();
        }
        Timeline {
            t_s,
            columns,
            processes: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.t_s.len()
    }

    pub fn is_empty(&self) -> bool {
        self.t_s.is_empty()
    }

    pub fn col(&self, layer: Layer) -> &[Option<f64>] {
        &self.columns[layer as usize]
    }

    /// Whether the layer has any figure at all (a `system` build has no jemalloc stats).
    pub fn has(&self, layer: Layer) -> bool {
        self.col(layer).iter().any(Option::is_some)
    }

    /// The run's duration: the last sample's time.
    pub fn end_s(&self) -> f64 {
        self.t_s.last().copied().unwrap_or(0.0)
    }
}

/// Per-second rate of a counter: (value now − value `window` seconds ago) / elapsed.
/// A counter that goes down (a restarted server) gives no rate there.
pub fn rate(t_s: &[f64], counter: &[Option<f64>], window: f64) -> Vec<Option<f64>> {
    let mut out = vec![None; t_s.len()];
    let mut start = 0;
    for i in 0..t_s.len() {
        let Some(now) = counter[i] else { continue };
        while start < i && (t_s[i] - t_s[start] > window || counter[start].is_none()) {
            start += 1;
        }
        // Fall back to the previous figure when the window holds only this one.
        let from = if start < i {
            Some(start)
        } else {
            (0..i).rev().find(|&j| counter[j].is_some())
        };
        if let Some(j) = from
            && let Some(before) = counter[j]
        {
            let dt = t_s[i] - t_s[j];
            if dt > 0.0 && now >= before {
                out[i] = Some((now - before) / dt);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_becomes_a_rate_over_one_second() {
        // 10 MB per second, sampled every 0.5 s.
        let t = [0.0, 0.5, 1.0, 1.5, 2.0];
        let c = [Some(0.0), Some(5e6), Some(10e6), Some(15e6), Some(20e6)];
        let r = rate(&t, &c, 1.0);
        assert_eq!(r[0], None);
        for v in &r[1..] {
            assert!((v.unwrap_or(0.0) - 10e6).abs() < 1e-6, "{r:?}");
        }
    }

    #[test]
    fn a_gap_or_a_reset_gives_no_bogus_rate() {
        let t = [0.0, 1.0, 2.0, 3.0];
        let c = [Some(100.0), None, Some(50.0), Some(150.0)];
        let r = rate(&t, &c, 1.0);
        assert_eq!(r[1], None);
        assert_eq!(r[2], None, "the counter went down");
        assert_eq!(r[3], Some(100.0));
    }
}
