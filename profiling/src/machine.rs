//! The "machine" a server runs in, one abstraction over the modes: how the
//! server is started inside it, where its memory figures come from, how a
//! kill is detected, and how to clean up. `cgroup` (a fresh memory cgroup
//! with a limit), `machine` (this whole machine, for a real small VM), `none`
//! (no limit) and `vm` (a qemu guest booted for the run, the server inside).
//!
//! - [`server`]: the running server, one handle whatever runs it.
//! - [`local`]: the server as a child process of the rig (`cgroup`, `host`).
//! - [`cgroup`], [`host`], [`vm`]: the modes.

pub mod cgroup;
pub mod host;
pub mod local;
pub mod server;
pub mod vm;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::files::{self, FileReading};
use crate::scenario::{MachineSpec, Mode};
use memstat::system::SystemMemory;
use run_format::{GroupProcess, MachineMemory, ProcessSample};

pub use local::LocalMachine;
pub use server::{BoxFuture, Launch, Server, ServerProcess, StartError};

/// A place to run the server.
pub trait Machine: Send + Sync {
    /// What it is, for `meta.json` and reports.
    fn info(&self) -> MachineInfo;
    /// Starts the server inside the machine and waits until it answers
    /// `/healthz`. In `vm` mode this boots the guest with the server inside.
    fn start_server<'a>(&'a self, launch: Launch<'a>) -> BoxFuture<'a, Result<Server, StartError>>;
    /// Where the memory figures come from.
    fn probe(&self) -> Arc<dyn Probe>;
    /// OOM kills so far in the machine (a rise during a run is a kill).
    fn oom_kills(&self) -> Option<u64>;
    /// Removes what was set up (cgroup, tmpfs, a guest left running). Idempotent.
    fn teardown(&mut self) -> Result<(), MachineError>;
    /// OOM kills with their time and victim, where the machine tells them
    /// (the guest kernel's console); the other modes only count them.
    fn oom_kill_log(&self) -> Vec<OomKill> {
        Vec::new()
    }
}

/// Reads the machine's and the server process's memory. The defaults read
/// this host; the `vm` probe answers from the guest agent's samples.
pub trait Probe: Send + Sync {
    fn machine(&self) -> Result<MachineMemory, String>;
    fn process(&self, pid: u32) -> Result<ProcessSample, String>;
    /// Every process in the machine's group, by name (`cgroup` mode: the
    /// server and a wrapper beside it); `None` where there is no group.
    fn group_processes(&self) -> Option<Vec<GroupProcess>> {
        None
    }
    /// The whole system's `/proc/meminfo` (the sample's `system`).
    fn system(&self) -> Option<SystemMemory> {
        memstat::system::read().ok()
    }
    /// The server's files: the database's, and in the local modes its temp
    /// dir and the files `pid` holds open but has deleted.
    fn files(&self, db: &Path, pid: u32) -> Option<FileReading> {
        files::read_local(db, pid, None)
    }
    /// The probe gets the server's `/debug/stats` itself (the guest agent
    /// fetches them); the sampler then does not fetch them over HTTP.
    fn provides_server_stats(&self) -> bool {
        false
    }
    /// The server's latest `/debug/stats`, when [`Probe::provides_server_stats`].
    fn server_stats(&self) -> Option<run_format::ServerStats> {
        None
    }
}

/// An OOM kill seen on the machine.
#[derive(Debug, Clone, Serialize)]
pub struct OomKill {
    #[serde(skip)]
    pub at: Instant,
    pub pid: u32,
    pub process: String,
    /// The kernel's line, as printed.
    pub line: String,
}

/// What [`open`] needs beyond the scenario's `[machine]`.
pub struct Setup<'a> {
    /// Names the cgroup (unique per run: the run's id, the rig's pid and a count).
    pub run_id: &'a str,
    /// A directory for the run's scratch files (tmpfs mount point, the
    /// server's temp dir, disk image).
    pub scratch: &'a Path,
    /// The workspace (`vm` mode builds the agent and runs `scripts/vm-assets.sh`).
    pub workspace: Option<&'a Path>,
    /// The server binary (`vm` mode puts it in the guest's initramfs).
    pub server_binary: Option<&'a Path>,
    /// The sampling interval (`vm` mode's agent samples at it).
    pub interval: Duration,
}

impl<'a> Setup<'a> {
    /// For the local modes, which need nothing else.
    pub fn local(run_id: &'a str, scratch: &'a Path) -> Setup<'a> {
        Setup {
            run_id,
            scratch,
            workspace: None,
            server_binary: None,
            interval: Duration::from_millis(100),
        }
    }
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
    /// The server's `TMPDIR` and `SQLITE_TMPDIR` (local modes).
    pub temp_dir: Option<PathBuf>,
    /// Things the run should know (e.g. "drop_caches skipped: not root").
    pub notes: Vec<String>,
    /// `vm` mode: the guest (accelerator, kernel, ports, how it shut down).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm: Option<vm::VmInfo>,
}

#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Vm(#[from] vm::VmError),
    #[error("{action} {path}: {source}{}", hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
        hint: Option<String>,
    },
}

/// Sets up the machine a scenario asks for.
pub fn open(spec: &MachineSpec, setup: &Setup<'_>) -> Result<Box<dyn Machine>, MachineError> {
    if spec.mode == Mode::Vm {
        return Ok(Box::new(vm::VmMachine::open(spec, setup, notes(spec))?));
    }
    let machine: Box<dyn Machine> = open_local(spec, setup)?;
    Ok(machine)
}

/// Sets up a local mode (`cgroup`, `machine`, `none`): one that can run any
/// program inside, not only the server.
pub fn open_local(
    spec: &MachineSpec,
    setup: &Setup<'_>,
) -> Result<Box<dyn LocalMachine>, MachineError> {
    let notes = notes(spec);
    Ok(match spec.mode {
        Mode::Cgroup => Box::new(cgroup::CgroupMachine::create(
            spec,
            setup.run_id,
            setup.scratch,
            notes,
        )?),
        Mode::Machine => Box::new(host::HostMachine::new(true, setup.scratch, notes)?),
        Mode::None => Box::new(host::HostMachine::new(false, setup.scratch, notes)?),
        Mode::Vm => {
            return Err(MachineError::Unsupported(
                "vm mode runs the server in a guest, not as a local process".into(),
            ));
        }
    })
}

/// What the run should know before it starts.
fn notes(spec: &MachineSpec) -> Vec<String> {
    let mut notes = Vec::new();
    if spec.drop_caches {
        notes.push(drop_page_cache());
    }
    notes
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

/// Every process in the cgroup at `dir` (`cgroup.procs`, v1 and v2 alike)
/// with its name and memory; one that exits while being read is left out.
pub(crate) fn read_group(dir: &Path) -> Option<Vec<GroupProcess>> {
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).ok()?;
    let read = |pid: u32| {
        let memory = memstat::process::read(Some(pid as i32)).ok()?;
        let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        Some(GroupProcess {
            pid,
            name: name.trim_end().to_owned(),
            memory,
        })
    };
    Some(
        procs
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .filter_map(read)
            .collect(),
    )
}
