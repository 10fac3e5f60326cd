//! `vm` mode: the server runs in a qemu guest with the scenario's RAM, CPUs
//! and disk, so the guest kernel, its page cache, dirty pages and the server
//! share the same memory as on a real 256 MB VM (a cgroup limit only charges
//! the server's own pages). See `docs/vm-mode.md`.
//!
//! - [`assets`]: the agent binary, the kernel and initramfs (built by
//!   `scripts/vm-assets.sh` from Debian packages, cached), the run's disk.
//! - [`qemu`]: KVM or TCG, the qemu command line.
//! - [`boot`]: booting a guest with the server inside, step by step.
//! - [`guest`]: a booted guest: waiting for its end, stopping it.
//! - [`shared`]: the guest's facts ([`VmInfo`]) and its streams' news,
//!   shared by the machine, its probe and the guest.
//! - [`streams`]: the console and the agent's stream, read into [`shared`].
//! - [`agent`]: the agent's sample stream, parsed.
//! - [`console`]: OOM kills and panics on the guest kernel's console.
//!
//! The samples have the same schema as a cgroup run's: the machine's figures
//! from the guest's `/proc/meminfo` (limit: the guest's MemTotal), the
//! server's from its `/proc/<pid>/status` in the guest, `/debug/stats` as
//! the agent fetched them.

pub mod agent;
pub mod assets;
pub mod boot;
pub mod console;
pub mod guest;
pub mod qemu;
pub mod shared;
mod streams;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::server::{BoxFuture, Launch, Server, StartError};
use super::{Machine, MachineError, MachineInfo, OomKill, Probe, Setup};
use crate::files::FileReading;
use crate::scenario::{MachineSpec, Mode};
use memstat::system::SystemMemory;
use run_format::{MachineMemory, ProcessSample};
use shared::Shared;

/// The Debian packages vm mode needs on the host.
pub const APT_LINE: &str =
    "apt-get install -y qemu-system-x86 busybox-static cpio e2fsprogs binutils";

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("vm mode needs {what}; install it with: {APT_LINE}")]
    Missing { what: String },
    #[error("vm mode: {0}")]
    Setup(String),
}

/// The guest's facts: what `meta.json` records under `machine.vm`. Set when
/// the machine opens, filled in as the guest boots, runs and ends.
#[derive(Debug, Clone, Serialize)]
pub struct VmInfo {
    /// `kvm` or `tcg`.
    pub accel: qemu::Accel,
    /// Why this accelerator.
    pub accel_reason: String,
    /// False under TCG: durations and rates are not comparable to native runs.
    pub timings_comparable: bool,
    pub memory_bytes: u64,
    pub cpus: u32,
    pub disk_bytes: u64,
    /// The guest kernel (Debian's linux-image-amd64 of the day).
    pub kernel: String,
    pub initramfs: PathBuf,
    /// MemTotal inside the guest: the RAM left after the kernel's own
    /// reservations, and the limit the verdict is judged against.
    pub guest_mem_total_bytes: Option<u64>,
    pub qemu_pid: Option<u32>,
    /// The server's pid inside the guest.
    pub server_pid: Option<u32>,
    /// Loopback ports on the host forwarded to the server and its debug listener.
    pub host_port: Option<u16>,
    pub debug_host_port: Option<u16>,
    /// From starting qemu to the server answering `/healthz`.
    pub boot_seconds: Option<f64>,
    /// How the guest ended (powered off by itself, or killed after a timeout).
    pub shutdown: Option<String>,
    pub console_log: Option<PathBuf>,
}

impl VmInfo {
    /// Before the guest boots.
    pub fn new(
        spec: &MachineSpec,
        accel: qemu::Accel,
        accel_reason: String,
        assets: &assets::Assets,
    ) -> VmInfo {
        VmInfo {
            accel,
            accel_reason,
            timings_comparable: accel == qemu::Accel::Kvm,
            memory_bytes: spec.memory.0,
            cpus: spec.cpus,
            disk_bytes: spec.disk.0,
            kernel: assets.kernel_version.clone(),
            initramfs: assets.initramfs.clone(),
            guest_mem_total_bytes: None,
            qemu_pid: None,
            server_pid: None,
            host_port: None,
            debug_host_port: None,
            boot_seconds: None,
            shutdown: None,
            console_log: None,
        }
    }
}

pub struct VmMachine {
    boot: boot::Boot,
    notes: Vec<String>,
    shared: Arc<Shared>,
}

impl VmMachine {
    /// Checks the host, builds the agent and the guest's assets (cached),
    /// picks the accelerator. The guest boots with the server, in
    /// [`Machine::start_server`].
    pub fn open(
        spec: &MachineSpec,
        setup: &Setup<'_>,
        mut notes: Vec<String>,
    ) -> Result<VmMachine, VmError> {
        spec.check_vm().map_err(VmError::Setup)?;
        let (Some(workspace), Some(server)) = (setup.workspace, setup.server_binary) else {
            return Err(VmError::Setup(
                "the workspace and the server binary are needed to build the guest".into(),
            ));
        };
        let qemu = qemu::find()?;
        let agent = assets::build_agent(workspace)?;
        let assets = assets::build(workspace, server, &agent)?;
        let (accel, accel_reason) = qemu::choose_accel();
        if accel == qemu::Accel::Tcg {
            notes.push(format!(
                "qemu TCG (software emulation, {accel_reason}): durations and rates are not comparable to native runs"
            ));
        }
        let info = VmInfo::new(spec, accel, accel_reason, &assets);
        Ok(VmMachine {
            boot: boot::Boot {
                qemu,
                accel,
                memory: spec.memory.0,
                cpus: spec.cpus,
                disk: spec.disk.0,
                assets,
                workspace: workspace.to_owned(),
                scratch: setup.scratch.to_owned(),
                interval: setup.interval,
            },
            notes,
            shared: Arc::new(Shared::new(info)),
        })
    }
}

impl Machine for VmMachine {
    fn info(&self) -> MachineInfo {
        let vm = self.shared.info();
        MachineInfo {
            mode: Mode::Vm,
            limit_bytes: Some(vm.guest_mem_total_bytes.unwrap_or(vm.memory_bytes)),
            memory_source: "guest-meminfo".into(),
            cgroup_path: None,
            tmpfs: None,
            temp_dir: None,
            notes: self.notes.clone(),
            vm: Some(vm),
        }
    }

    /// Boots the guest with the server inside ([`boot::Boot::boot`]): the
    /// binary is in its initramfs, the database on its disk.
    fn start_server<'a>(&'a self, launch: Launch<'a>) -> BoxFuture<'a, Result<Server, StartError>> {
        Box::pin(self.boot.boot(Arc::clone(&self.shared), launch))
    }

    fn probe(&self) -> Arc<dyn Probe> {
        Arc::new(VmProbe {
            shared: Arc::clone(&self.shared),
            fresh: fresh_within(self.boot.interval),
        })
    }

    fn oom_kills(&self) -> Option<u64> {
        Some(self.shared.oom_kills())
    }

    fn oom_kill_log(&self) -> Vec<OomKill> {
        self.shared.oom_kill_log()
    }

    /// Kills a guest left running (the run failed before stopping it).
    fn teardown(&mut self) -> Result<(), MachineError> {
        self.shared.kill_qemu();
        Ok(())
    }
}

impl Drop for VmMachine {
    fn drop(&mut self) {
        self.shared.kill_qemu();
    }
}

/// How old an agent sample may be and still stand for "now": two intervals,
/// and at least a second (under TCG the agent's ticks can slip).
fn fresh_within(interval: Duration) -> Duration {
    (interval * 2).max(Duration::from_secs(1))
}

/// The guest agent's latest sample, while fresh.
struct VmProbe {
    shared: Arc<Shared>,
    fresh: Duration,
}

impl VmProbe {
    fn latest(&self) -> Result<agent::AgentSample, String> {
        match self.shared.latest() {
            Some((at, sample)) if at.elapsed() <= self.fresh => Ok(sample),
            Some((at, _)) => Err(format!(
                "the guest agent's last sample is {:.1} s old",
                at.elapsed().as_secs_f64()
            )),
            None => Err("no sample from the guest agent yet".into()),
        }
    }
}

impl Probe for VmProbe {
    fn machine(&self) -> Result<MachineMemory, String> {
        let s = self.latest()?;
        let m = s.meminfo.ok_or("the guest's meminfo did not parse")?;
        let kills = s.oom_kills.unwrap_or(0).max(self.shared.oom_kills());
        Ok(MachineMemory::from_meminfo(
            &m,
            Some(m.mem_total_bytes),
            Some(kills),
            s.pressure,
        ))
    }

    fn process(&self, _pid: u32) -> Result<ProcessSample, String> {
        self.latest()?
            .process
            .ok_or_else(|| "the server is not running in the guest".into())
    }

    /// The guest's meminfo: the guest is the whole system the server sees.
    fn system(&self) -> Option<SystemMemory> {
        self.latest().ok()?.meminfo
    }

    /// The database's files as the agent reads them; no temp dir or
    /// deleted-open files (the guest's are not listed).
    fn files(&self, _db: &Path, _pid: u32) -> Option<FileReading> {
        let sizes = self.latest().ok()?.files?;
        Some(FileReading {
            sizes,
            listing: Vec::new(),
        })
    }

    fn provides_server_stats(&self) -> bool {
        true
    }

    fn server_stats(&self) -> Option<run_format::ServerStats> {
        self.latest().ok()?.stats
    }
}
