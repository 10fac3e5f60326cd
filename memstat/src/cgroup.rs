//! The memory cgroup of a process, v1 or v2.
//!
//! A cgroup limit is what the kernel OOM-kills against. Its usage counts page
//! cache too, so the figures that matter are split out: anon (what the
//! process really holds), file cache (reclaimable), dirty/writeback (must be
//! written first) and the working set (usage − inactive file), which is what
//! container runtimes and our verdicts compare with the limit.

pub mod v1;
pub mod v2;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Where the cgroup hierarchies are mounted on every mainstream distribution.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    V1,
    V2,
}

/// Memory of one cgroup, in bytes (counts are plain numbers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupMemory {
    pub version: Version,
    /// The cgroup's directory.
    pub path: String,
    /// v1 `memory.usage_in_bytes`, v2 `memory.current`.
    pub usage_bytes: u64,
    /// `None`: unlimited.
    pub limit_bytes: Option<u64>,
    /// v1 `memory.max_usage_in_bytes`, v2 `memory.peak` (kernel 5.19+).
    pub peak_bytes: Option<u64>,
    /// Anonymous memory (v1 `total_rss`, v2 `anon`).
    pub anon_bytes: u64,
    /// Page cache (v1 `total_cache`, v2 `file`).
    pub file_bytes: u64,
    /// Page cache mapped into processes (v1 `total_mapped_file`, v2 `file_mapped`).
    pub mapped_file_bytes: u64,
    pub dirty_bytes: u64,
    pub writeback_bytes: u64,
    pub inactive_file_bytes: u64,
    /// usage − inactive_file: memory the kernel cannot simply drop.
    pub working_set_bytes: u64,
    /// OOM kills in this cgroup (v1 `memory.oom_control`, v2 `memory.events`).
    pub oom_kills: Option<u64>,
    /// Times usage hit the limit (v1 `memory.failcnt`; v2 `max` events).
    pub limit_hits: Option<u64>,
    /// Shared memory and tmpfs pages charged here (v1 `total_shmem`, v2 `shmem`).
    pub shmem_bytes: u64,
    /// Times usage went over `memory.high` and the kernel throttled and
    /// reclaimed (v2 `memory.events` `high`; v1 has no such limit: `None`).
    pub high_events: Option<u64>,
}

/// A located memory cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    pub version: Version,
    pub dir: PathBuf,
}

impl Cgroup {
    /// The memory cgroup of `pid` (`None`: this process).
    pub fn of_process(pid: Option<i32>) -> Result<Cgroup> {
        let file = match pid {
            Some(p) => format!("/proc/{p}/cgroup"),
            None => "/proc/self/cgroup".to_owned(),
        };
        let text = crate::read_to_string(file.as_ref())?;
        locate(&text, Path::new(CGROUP_ROOT))
    }

    pub fn read(&self) -> Result<CgroupMemory> {
        match self.version {
            Version::V1 => v1::read(&self.dir),
            Version::V2 => v2::read(&self.dir),
        }
    }
}

/// Finds the memory cgroup directory from `/proc/<pid>/cgroup` text and the
/// cgroup mount root. A v1 `memory` controller line wins (on hybrid systems
/// memory is accounted there); else the unified `0::` line. Inside a cgroup
/// namespace the listed path may not exist below the mount: then the mount
/// itself is the process's cgroup.
pub fn locate(proc_cgroup: &str, root: &Path) -> Result<Cgroup> {
    let mut unified = None;
    for line in proc_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == "memory") {
            let mount = root.join("memory");
            return Ok(Cgroup {
                version: Version::V1,
                dir: existing_or_mount(&mount, path),
            });
        }
        if id == "0" && controllers.is_empty() {
            unified = Some(path.to_owned());
        }
    }
    match unified {
        Some(path) if root.join("cgroup.controllers").exists() => Ok(Cgroup {
            version: Version::V2,
            dir: existing_or_mount(root, &path),
        }),
        _ => Err(Error::NoCgroup(
            "no memory controller in /proc/self/cgroup and no cgroup v2 mount at /sys/fs/cgroup"
                .into(),
        )),
    }
}

fn existing_or_mount(mount: &Path, path: &str) -> PathBuf {
    let dir = mount.join(path.trim_start_matches('/'));
    if dir.is_dir() { dir } else { mount.to_owned() }
}

/// Reads `dir/name` as one number; `None` if the file is absent.
pub(crate) fn read_u64(dir: &Path, name: &'static str) -> Result<Option<u64>> {
    let path = dir.join(name);
    if !path.exists() {
        return Ok(None);
    }
    let text = crate::read_to_string(&path)?;
    parse_u64(text.trim(), name).map(Some)
}

pub(crate) fn parse_u64(text: &str, what: &'static str) -> Result<u64> {
    text.parse().map_err(|_| Error::Parse {
        what,
        detail: format!("expected a number, got {text:?}"),
    })
}

/// Looks `key` up in a flat-keyed file (`memory.stat`, `memory.events`,
/// `memory.oom_control`): lines of `key value`.
pub(crate) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_v1_memory_controller() {
        let dir = std::env::temp_dir().join(format!("memstat-locate-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("memory/rig/run1")).unwrap();
        let text = "4:memory:/rig/run1\n0::/\n";
        let cg = locate(text, &dir).unwrap();
        assert_eq!(cg.version, Version::V1);
        assert_eq!(cg.dir, dir.join("memory/rig/run1"));
        // A path that does not exist below the mount (cgroup namespace): the mount.
        let cg = locate("4:memory:/elsewhere\n", &dir).unwrap();
        assert_eq!(cg.dir, dir.join("memory"));
        // v2 needs cgroup.controllers at the root.
        assert!(locate("0::/user.slice\n", &dir).is_err());
        std::fs::write(dir.join("cgroup.controllers"), "memory pids\n").unwrap();
        let cg = locate("0::/user.slice\n", &dir).unwrap();
        assert_eq!((cg.version, cg.dir.clone()), (Version::V2, dir.clone()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keyed_files() {
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed(text, "oom_kill"), Some(3));
        assert_eq!(keyed(text, "oom"), None);
    }
}

/// Pressure stall information (`memory.pressure`, v2 or `/proc/pressure/memory`):
/// the share of time tasks waited for memory.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Pressure {
    /// % of the last 10 s some task stalled on memory.
    pub some_avg10: f64,
    /// % of the last 10 s all tasks stalled on memory.
    pub full_avg10: f64,
    /// Total stall time, microseconds.
    pub some_total_us: u64,
    pub full_total_us: u64,
}

/// Parses PSI text: `some avg10=0.00 avg60=0.00 avg300=0.00 total=1310` and a `full` line.
pub fn parse_pressure(text: &str) -> Option<Pressure> {
    let line = |kind: &str| -> Option<(f64, u64)> {
        let l = text.lines().find(|l| l.starts_with(kind))?;
        let field = |name: &str| l.split_whitespace().find_map(|f| f.strip_prefix(name));
        Some((
            field("avg10=")?.parse().ok()?,
            field("total=")?.parse().ok()?,
        ))
    };
    let (some_avg10, some_total_us) = line("some ")?;
    let (full_avg10, full_total_us) = line("full ").unwrap_or((0.0, 0));
    Some(Pressure {
        some_avg10,
        full_avg10,
        some_total_us,
        full_total_us,
    })
}

impl Cgroup {
    /// The cgroup's `memory.pressure` (v2 with PSI); `None` elsewhere.
    pub fn pressure(&self) -> Option<Pressure> {
        let text = std::fs::read_to_string(self.dir.join("memory.pressure")).ok()?;
        parse_pressure(&text)
    }

    /// OOM kills so far, reading only the one small file.
    pub fn oom_kills(&self) -> Option<u64> {
        let file = match self.version {
            Version::V1 => "memory.oom_control",
            Version::V2 => "memory.events",
        };
        keyed(
            &std::fs::read_to_string(self.dir.join(file)).ok()?,
            "oom_kill",
        )
    }
}

#[cfg(test)]
mod pressure_tests {
    use super::*;

    #[test]
    fn parses_psi() {
        let p = parse_pressure("some avg10=1.50 avg60=0.20 avg300=0.00 total=1310\nfull avg10=0.25 avg60=0.00 avg300=0.00 total=419\n").unwrap();
        assert_eq!(
            (p.some_avg10, p.full_avg10, p.some_total_us, p.full_total_us),
            (1.5, 0.25, 1310, 419)
        );
        assert_eq!(parse_pressure("nonsense"), None);
    }
}
