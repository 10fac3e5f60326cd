//! cgroup v1 memory controller files.

use std::path::Path;

use super::{CgroupMemory, Version, keyed, read_u64};
use crate::Result;

/// v1 reports "no limit" as a huge page-aligned number (2^63 − 4096 on x86_64).
const UNLIMITED_ABOVE: u64 = 1 << 62;

pub fn read(dir: &Path) -> Result<CgroupMemory> {
    let stat = crate::read_to_string(&dir.join("memory.stat"))?;
    let usage = read_u64(dir, "memory.usage_in_bytes")?.unwrap_or(0);
    let limit = read_u64(dir, "memory.limit_in_bytes")?;
    let peak = read_u64(dir, "memory.max_usage_in_bytes")?;
    let oom_control = std::fs::read_to_string(dir.join("memory.oom_control")).ok();
    let failcnt = read_u64(dir, "memory.failcnt")?;
    Ok(from_files(
        dir,
        usage,
        limit,
        peak,
        &stat,
        oom_control.as_deref(),
        failcnt,
    ))
}

/// Builds the figures from the files' contents. `total_*` keys include child
/// cgroups (the rig puts the server in a child), so they are preferred.
pub fn from_files(
    dir: &Path,
    usage: u64,
    limit: Option<u64>,
    peak: Option<u64>,
    stat: &str,
    oom_control: Option<&str>,
    failcnt: Option<u64>,
) -> CgroupMemory {
    let get = |key: &str| {
        keyed(stat, &format!("total_{key}"))
            .or_else(|| keyed(stat, key))
            .unwrap_or(0)
    };
    let inactive_file = get("inactive_file");
    CgroupMemory {
        version: Version::V1,
        path: dir.display().to_string(),
        usage_bytes: usage,
        limit_bytes: limit.filter(|&l| l < UNLIMITED_ABOVE),
        peak_bytes: peak,
        anon_bytes: get("rss"),
        file_bytes: get("cache"),
        mapped_file_bytes: get("mapped_file"),
        dirty_bytes: get("dirty"),
        writeback_bytes: get("writeback"),
        inactive_file_bytes: inactive_file,
        working_set_bytes: usage.saturating_sub(inactive_file),
        oom_kills: oom_control.and_then(|t| keyed(t, "oom_kill")),
        limit_hits: failcnt,
        shmem_bytes: get("shmem"),
        high_events: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cache 9494528\nrss 4161536\nshmem 9068544\ndirty 32768\nwriteback 0\ninactive_file 20480\n\
        total_cache 2778738688\ntotal_mapped_file 122847232\ntotal_rss 307720192\ntotal_dirty 62849024\ntotal_writeback 4096\ntotal_inactive_file 991879168\ntotal_shmem 9068544\n";

    #[test]
    fn prefers_hierarchical_totals() {
        let m = from_files(
            Path::new("/sys/fs/cgroup/memory/rig"),
            3_082_956_800,
            Some(9_223_372_036_854_771_712),
            Some(3_100_000_000),
            STAT,
            Some("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            Some(5),
        );
        assert_eq!(m.limit_bytes, None, "the v1 'unlimited' value");
        assert_eq!(m.anon_bytes, 307_720_192);
        assert_eq!(m.file_bytes, 2_778_738_688);
        assert_eq!(m.mapped_file_bytes, 122_847_232);
        assert_eq!(m.dirty_bytes, 62_849_024);
        assert_eq!(m.writeback_bytes, 4096);
        assert_eq!(m.working_set_bytes, 3_082_956_800 - 991_879_168);
        assert_eq!(m.oom_kills, Some(2));
        assert_eq!(m.limit_hits, Some(5));
        assert_eq!((m.shmem_bytes, m.high_events), (9_068_544, None));
    }

    #[test]
    fn falls_back_to_local_keys_and_keeps_real_limits() {
        let m = from_files(
            Path::new("x"),
            100,
            Some(256 << 20),
            None,
            "rss 10\ncache 20\ninactive_file 200\n",
            None,
            None,
        );
        assert_eq!(m.limit_bytes, Some(256 << 20));
        assert_eq!((m.anon_bytes, m.file_bytes), (10, 20));
        assert_eq!(m.working_set_bytes, 0, "never negative");
    }
}
