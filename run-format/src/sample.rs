//! One line of `samples.jsonl`: every memory layer at one instant. The
//! sampler writes it, the reports read it; a missing figure is `null`, never 0.

use memstat::cgroup::{CgroupMemory, Pressure};
use memstat::process::ProcessMemory;
use memstat::system::SystemMemory;
use serde::{Deserialize, Serialize};

use crate::ServerStats;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// Milliseconds since the run started (monotonic clock).
    pub t_ms: u64,
    /// The load phase running (or `start`, `pause`, `end`).
    pub phase: String,
    /// The server process; `null` once it is gone.
    pub process: Option<ProcessSample>,
    /// The machine the server runs in: its cgroup, or the whole machine.
    pub machine: Option<MachineMemory>,
    pub system: Option<SystemMemory>,
    /// The server's own `/debug/stats` (allocator, sqlite, app); `null` when
    /// it did not answer within the sampling interval.
    pub server: Option<ServerStats>,
    /// The server's files outside the heap: database, temp dir, deleted but open.
    pub files: Option<FileSizes>,
    /// Every process in the machine's group (`cgroup` mode's `cgroup.procs`):
    /// the server and what runs beside it (a wrapper such as Litestream).
    /// `null` in the other modes and in runs of older rigs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<Vec<GroupProcess>>,
}

/// One process of the machine's group at one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupProcess {
    pub pid: u32,
    /// Its name (`/proc/<pid>/comm`: `share-server`, `litestream`).
    pub name: String,
    #[serde(flatten)]
    pub memory: ProcessMemory,
}

/// The sum of the group's processes' anon RSS; `None` without a listing.
pub fn group_anon_bytes(processes: Option<&[GroupProcess]>) -> Option<u64> {
    processes.map(|ps| ps.iter().map(|p| p.memory.rss_anon_bytes).sum())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessSample {
    #[serde(flatten)]
    pub memory: ProcessMemory,
    /// Proportional set size from `smaps_rollup` (shared pages split among sharers).
    pub pss_bytes: Option<u64>,
}

/// The memory of the machine the server runs in, bytes: a cgroup's files,
/// or `/proc/meminfo` for a whole machine (`source` says which).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineMemory {
    /// `cgroup-v1`, `cgroup-v2` or `meminfo`.
    pub source: String,
    pub usage_bytes: u64,
    /// `null`: no limit.
    pub limit_bytes: Option<u64>,
    pub peak_bytes: Option<u64>,
    pub anon_bytes: u64,
    pub file_bytes: u64,
    pub mapped_file_bytes: u64,
    pub dirty_bytes: u64,
    pub writeback_bytes: u64,
    pub inactive_file_bytes: u64,
    /// usage − inactive file cache: what cannot simply be dropped.
    pub working_set_bytes: u64,
    pub oom_kills: Option<u64>,
    pub limit_hits: Option<u64>,
    pub pressure: Option<Pressure>,
    /// Shared memory and tmpfs pages (a cgroup's `shmem`); `null` for meminfo.
    pub shmem_bytes: Option<u64>,
    /// cgroup v2 `memory.events` `high`: times over `memory.high`.
    pub high_events: Option<u64>,
}

impl MachineMemory {
    pub fn from_cgroup(c: &CgroupMemory, pressure: Option<Pressure>) -> Self {
        MachineMemory {
            source: match c.version {
                memstat::cgroup::Version::V1 => "cgroup-v1".into(),
                memstat::cgroup::Version::V2 => "cgroup-v2".into(),
            },
            usage_bytes: c.usage_bytes,
            limit_bytes: c.limit_bytes,
            peak_bytes: c.peak_bytes,
            anon_bytes: c.anon_bytes,
            file_bytes: c.file_bytes,
            mapped_file_bytes: c.mapped_file_bytes,
            dirty_bytes: c.dirty_bytes,
            writeback_bytes: c.writeback_bytes,
            inactive_file_bytes: c.inactive_file_bytes,
            working_set_bytes: c.working_set_bytes,
            oom_kills: c.oom_kills,
            limit_hits: c.limit_hits,
            pressure,
            shmem_bytes: Some(c.shmem_bytes),
            high_events: c.high_events,
        }
    }

    /// A whole machine from `/proc/meminfo`: used = total − free, limited by
    /// MemTotal (`limit` is `None` to say "no limit is enforced here").
    pub fn from_meminfo(
        m: &SystemMemory,
        limit: Option<u64>,
        oom_kills: Option<u64>,
        pressure: Option<Pressure>,
    ) -> Self {
        let usage = m.mem_total_bytes.saturating_sub(m.mem_free_bytes);
        MachineMemory {
            source: "meminfo".into(),
            usage_bytes: usage,
            limit_bytes: limit,
            peak_bytes: None,
            anon_bytes: m.anon_bytes,
            file_bytes: m.cached_bytes + m.buffers_bytes,
            mapped_file_bytes: m.mapped_bytes,
            dirty_bytes: m.dirty_bytes,
            writeback_bytes: m.writeback_bytes,
            inactive_file_bytes: m.inactive_file_bytes,
            working_set_bytes: usage.saturating_sub(m.inactive_file_bytes),
            oom_kills,
            limit_hits: None,
            pressure,
            shmem_bytes: None,
            high_events: None,
        }
    }
}

/// The server's files, bytes. The temp dir and deleted-open figures are
/// `null` where they are not read (`vm` mode, runs of older rigs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSizes {
    pub db_bytes: u64,
    pub wal_bytes: u64,
    pub shm_bytes: u64,
    /// Everything under the server's own temp dir (`TMPDIR`).
    #[serde(default)]
    pub temp_bytes: Option<u64>,
    #[serde(default)]
    pub temp_files: Option<u64>,
    /// Files the server holds open but has deleted (`/proc/<pid>/fd`).
    #[serde(default)]
    pub deleted_open_bytes: Option<u64>,
    #[serde(default)]
    pub deleted_open_files: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_samples_load_without_a_process_listing() {
        let old = r#"{"t_ms": 5, "phase": "upload", "process": null, "machine": null,
                      "system": null, "server": null, "files": null}"#;
        let s: Sample = serde_json::from_str(old).unwrap();
        assert!(s.processes.is_none());
        let line = serde_json::to_string(&s).unwrap();
        assert!(!line.contains("processes"), "{line}");
    }

    #[test]
    fn a_process_listing_round_trips_and_sums() {
        let line = r#"{"t_ms": 5, "phase": "upload", "process": null, "machine": null,
            "system": null, "server": null, "files": null, "processes": [
            {"pid": 10, "name": "litestream", "vm_rss_bytes": 30, "rss_anon_bytes": 20,
             "rss_file_bytes": 10, "rss_shmem_bytes": 0, "vm_hwm_bytes": 40, "threads": 8},
            {"pid": 11, "name": "share-server", "vm_rss_bytes": 300, "rss_anon_bytes": 200,
             "rss_file_bytes": 90, "rss_shmem_bytes": 10, "vm_hwm_bytes": 400, "threads": 9}]}"#;
        let s: Sample = serde_json::from_str(line).unwrap();
        let ps = s.processes.as_deref().unwrap();
        assert_eq!((ps[0].name.as_str(), ps[1].pid), ("litestream", 11));
        assert_eq!(group_anon_bytes(Some(ps)), Some(220));
        let back: Sample = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back.processes, s.processes);
    }

    #[test]
    fn old_file_sizes_load_with_the_new_figures_null() {
        let old = r#"{"db_bytes": 4096, "wal_bytes": 8, "shm_bytes": 32768}"#;
        let f: FileSizes = serde_json::from_str(old).unwrap();
        assert_eq!((f.db_bytes, f.wal_bytes, f.shm_bytes), (4096, 8, 32768));
        assert_eq!((f.temp_bytes, f.deleted_open_bytes), (None, None));
    }
}
