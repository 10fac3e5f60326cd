//! cgroup v2 (unified) memory files.

use std::path::Path;

use super::{CgroupMemory, Version, keyed, parse_u64, read_u64};
use crate::Result;

pub fn read(dir: &Path) -> Result<CgroupMemory> {
    let stat = crate::read_to_string(&dir.join("memory.stat"))?;
    let usage = read_u64(dir, "memory.current")?.unwrap_or(0);
    let max = std::fs::read_to_string(dir.join("memory.max")).ok();
    let peak = read_u64(dir, "memory.peak")?;
    let events = std::fs::read_to_string(dir.join("memory.events")).ok();
    from_files(dir, usage, max.as_deref(), peak, &stat, events.as_deref())
}

/// Builds the figures from the files' contents (`memory.max` is `max` when unlimited).
pub fn from_files(
    dir: &Path,
    usage: u64,
    max: Option<&str>,
    peak: Option<u64>,
    stat: &str,
    events: Option<&str>,
) -> Result<CgroupMemory> {
    let limit = match max.map(str::trim) {
        None | Some("max") => None,
        Some(v) => Some(parse_u64(v, "memory.max")?),
    };
    let get = |key: &str| keyed(stat, key).unwrap_or(0);
    let inactive_file = get("inactive_file");
    Ok(CgroupMemory {
        version: Version::V2,
        path: dir.display().to_string(),
        usage_bytes: usage,
        limit_bytes: limit,
        peak_bytes: peak,
        anon_bytes: get("anon"),
        file_bytes: get("file"),
        mapped_file_bytes: get("file_mapped"),
        dirty_bytes: get("file_dirty"),
        writeback_bytes: get("file_writeback"),
        inactive_file_bytes: inactive_file,
        working_set_bytes: usage.saturating_sub(inactive_file),
        oom_kills: events.and_then(|e| keyed(e, "oom_kill")),
        limit_hits: events.and_then(|e| keyed(e, "max")),
        shmem_bytes: get("shmem"),
        high_events: events.and_then(|e| keyed(e, "high")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v2_files() {
        let stat = "anon 104857600\nfile 52428800\nfile_mapped 4096000\nkernel 1000\nfile_dirty 4096\nfile_writeback 8192\ninactive_file 40000000\nshmem 2097152\n";
        let events = "low 0\nhigh 3\nmax 17\noom 1\noom_kill 1\noom_group_kill 0\n";
        let m = from_files(
            Path::new("/sys/fs/cgroup/rig"),
            160_000_000,
            Some("268435456\n"),
            Some(200_000_000),
            stat,
            Some(events),
        )
        .unwrap();
        assert_eq!(m.limit_bytes, Some(268_435_456));
        assert_eq!((m.anon_bytes, m.file_bytes), (104_857_600, 52_428_800));
        assert_eq!((m.dirty_bytes, m.writeback_bytes), (4096, 8192));
        assert_eq!(m.mapped_file_bytes, 4_096_000);
        assert_eq!(m.working_set_bytes, 120_000_000);
        assert_eq!((m.oom_kills, m.limit_hits), (Some(1), Some(17)));
        assert_eq!((m.shmem_bytes, m.high_events), (2_097_152, Some(3)));
        let m = from_files(Path::new("x"), 1, Some("max\n"), None, "", None).unwrap();
        assert_eq!(m.limit_bytes, None);
        assert!(from_files(Path::new("x"), 1, Some("lots"), None, "", None).is_err());
    }
}
