//! Machine memory from `/proc/meminfo`.

use procfs::{FromRead, Meminfo};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What the machine (or VM) has, in bytes. `cached` is page cache: it is
/// reclaimable (the story's "RAM maxed out" was mostly this); `dirty` and
/// `writeback` are the part that must reach the disk first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemMemory {
    pub mem_total_bytes: u64,
    pub mem_available_bytes: u64,
    pub cached_bytes: u64,
    pub dirty_bytes: u64,
    pub writeback_bytes: u64,
    /// MemFree: not even used as cache.
    pub mem_free_bytes: u64,
    /// AnonPages: anonymous memory of every process.
    pub anon_bytes: u64,
    /// Buffers: block device cache.
    pub buffers_bytes: u64,
    /// Inactive(file): page cache the kernel drops first.
    pub inactive_file_bytes: u64,
    /// Mapped: page cache mapped into processes.
    pub mapped_bytes: u64,
}

pub fn parse_meminfo(text: &str) -> Result<SystemMemory> {
    let m = Meminfo::from_read(text.as_bytes()).map_err(|e| Error::Parse {
        what: "/proc/meminfo",
        detail: e.to_string(),
    })?;
    Ok(SystemMemory {
        mem_total_bytes: m.mem_total,
        mem_available_bytes: m.mem_available.unwrap_or(m.mem_free),
        cached_bytes: m.cached,
        dirty_bytes: m.dirty,
        writeback_bytes: m.writeback,
        mem_free_bytes: m.mem_free,
        anon_bytes: m.anon_pages.unwrap_or(0),
        buffers_bytes: m.buffers,
        inactive_file_bytes: m.inactive_file.unwrap_or(0),
        mapped_bytes: m.mapped,
    })
}

pub fn read() -> Result<SystemMemory> {
    parse_meminfo(&crate::read_to_string("/proc/meminfo".as_ref())?)
}

/// Machine-wide OOM kills since boot (`oom_kill` in `/proc/vmstat`, Linux 4.13+).
pub fn oom_kills() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/vmstat").ok()?;
    crate::cgroup::keyed(&text, "oom_kill")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_meminfo_in_bytes() {
        // Captured on the 2-core development machine (Writeback edited to be non-zero).
        let m = parse_meminfo(include_str!("../testdata/meminfo.txt")).unwrap();
        assert_eq!(m.mem_total_bytes, 24684092 * 1024);
        assert_eq!(m.mem_available_bytes, 23978072 * 1024);
        assert_eq!(m.cached_bytes, 3220952 * 1024);
        assert_eq!(m.dirty_bytes, 155852 * 1024);
        assert_eq!(m.writeback_bytes, 1234 * 1024);
    }

    #[test]
    fn reads_this_machine() {
        let m = read().unwrap();
        assert!(m.mem_total_bytes > 0 && m.mem_available_bytes <= m.mem_total_bytes);
    }
}
