//! A memory cgroup the size of the story's VM around each contender, so both
//! run under the same pressure (page cache included). cgroup v1's memory
//! controller or v2's `memory.max`; needs write access to the hierarchy
//! (root here and on CI). Without it the bench runs unlimited and says so.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

pub(crate) struct MemoryGroup {
    dir: PathBuf,
}

impl MemoryGroup {
    /// Creates `sharerig-bench-<pid>-<name>` with a limit of `limit_bytes`.
    pub(crate) fn create(name: &str, limit_bytes: u64) -> Result<MemoryGroup> {
        let leaf = format!("sharerig-bench-{}-{name}", std::process::id());
        let v1 = Path::new("/sys/fs/cgroup/memory");
        let v2 = Path::new("/sys/fs/cgroup");
        let (dir, limit_file) = if v1.join("memory.limit_in_bytes").exists() {
            (v1.join(leaf), "memory.limit_in_bytes")
        } else if v2.join("cgroup.controllers").exists() {
            (v2.join(leaf), "memory.max")
        } else {
            bail!("no cgroup memory controller mounted at /sys/fs/cgroup");
        };
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let group = MemoryGroup { dir };
        let limit = group.dir.join(limit_file);
        std::fs::write(&limit, limit_bytes.to_string())
            .with_context(|| format!("writing {}", limit.display()))?;
        Ok(group)
    }

    /// Moves `pid` into the group (memory it already holds stays charged
    /// where it was; the figures here come from `/proc`, not the group).
    pub(crate) fn add(&self, pid: u32) -> Result<()> {
        let procs = self.dir.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string())
            .with_context(|| format!("writing {}", procs.display()))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for MemoryGroup {
    /// Removable once its processes have exited (the caller stops them first).
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}
