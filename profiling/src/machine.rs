//! The "machine" a server runs in, one abstraction over the modes: how to
//! start a process inside it, where its memory figures come from, how a kill
//! is detected, and how to clean up. `cgroup` (a fresh memory cgroup with a
//! limit), `machine` (this whole machine, for a real small VM) and `none` (no
//! limit). A qemu `vm` mode plugs in by implementing [`Machine`] and [`Probe`].

pub mod cgroup;
pub mod host;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use tokio::process::Command;

use crate::scenario::{MachineSpec, Mode};
use run_format::{MachineMemory, ProcessSample};

/// A place to run the server.
pub trait Machine: Send + Sync {
    /// What it is, for `meta.json` and reports.
    fn info(&self) -> MachineInfo;
    /// A command that runs `program` inside the machine; the caller adds arguments.
    fn command(&self, program: &Path) -> Command;
    /// Where the memory figures come from.
    fn probe(&self) -> Arc<dyn Probe>;
    /// OOM kills so far in the machine (a rise during a run is a kill).
    fn oom_kills(&self) -> Option<u64>;
    /// Removes what was set up (cgroup, tmpfs). Idempotent.
    fn teardown(&mut self) -> Result<(), MachineError>;
}

/// Reads the machine's and the server process's memory.
pub trait Probe: Send + Sync {
    fn machine(&self) -> Result<MachineMemory, String>;
    fn process(&self, pid: u32) -> Result<ProcessSample, String>;
}

#[derive(Debug, Clone, Serialize)]
pub struct MachineInfo {
    pub mode: Mode,
    /// The limit that applies to the server, bytes (`None`: unlimited).
    pub limit_bytes: Option<u64>,
    /// `cgroup-v1`, `cgroup-v2` or `meminfo`.
    pub memory_source: String,
    pub cgroup_path: Option<PathBuf>,
    pub tmpfs: Option<PathBuf>,
    /// Things the run should know (e.g. "drop_caches skipped: not root").
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error("{0}")]
    Unsupported(String),
    #[error("{action} {path}: {source}{}", hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
        hint: Option<String>,
    },
}

/// Sets up the machine a scenario asks for. `run_id` names the cgroup;
/// `scratch` is where a tmpfs is mounted.
pub fn open(
    spec: &MachineSpec,
    run_id: &str,
    scratch: &Path,
) -> Result<Box<dyn Machine>, MachineError> {
    let mut notes = Vec::new();
    if spec.drop_caches {
        notes.push(drop_page_cache());
    }
    let machine: Box<dyn Machine> = match spec.mode {
        Mode::Cgroup => Box::new(cgroup::CgroupMachine::create(spec, run_id, scratch, notes)?),
        Mode::Machine => Box::new(host::HostMachine::new(true, notes)),
        Mode::None => Box::new(host::HostMachine::new(false, notes)),
    };
    Ok(machine)
}

/// Writes back dirty pages and drops clean page cache, so a run starts cold.
fn drop_page_cache() -> String {
    if !nix::unistd::Uid::effective().is_root() {
        return "drop_caches skipped: not root".into();
    }
    nix::unistd::sync();
    match std::fs::write("/proc/sys/vm/drop_caches", "1") {
        Ok(()) => "page cache dropped before the run".into(),
        Err(e) => format!("drop_caches failed: {e}"),
    }
}

pub(crate) fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Reads a process's memory and its PSS.
pub(crate) fn read_process(pid: u32) -> Result<ProcessSample, String> {
    let memory = memstat::process::read(Some(pid as i32)).map_err(|e| e.to_string())?;
    let pss_bytes = procfs::process::Process::new(pid as i32)
        .and_then(|p| p.smaps_rollup())
        .ok()
        .and_then(|r| {
            r.memory_map_rollup
                .0
                .first()
                .and_then(|m| m.extension.map.get("Pss").copied())
        });
    Ok(ProcessSample { memory, pss_bytes })
}
