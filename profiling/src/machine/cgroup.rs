//! `cgroup` mode: a fresh memory cgroup with the scenario's limit and swap
//! off; only the server inside (the rig and loadgen stay outside, like
//! clients on another host). cgroup v1 (this development machine) and v2
//! (Fly VMs, CI runners, laptops: where the group may go is in [`v2`]).

pub mod v2;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memstat::cgroup::{CGROUP_ROOT, Cgroup, Version};
use tokio::process::Command;

use super::local::{self, LocalMachine, ServerTemp};
use super::server::{BoxFuture, Launch, Server, StartError};
use super::{Machine, MachineError, MachineInfo, Probe, is_root, read_group, read_process};
use crate::files::{self, FileReading, TempDir};
use crate::scenario::{MachineSpec, Mode};
use run_format::{GroupProcess, MachineMemory, ProcessSample};

/// Parent of the rig's cgroups, so they are easy to find and clean.
const PARENT: &str = "sharerig";
/// How long teardown waits for killed processes to leave the cgroup.
const EMPTY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct CgroupMachine {
    cgroup: Cgroup,
    limit: u64,
    tmpfs: Option<PathBuf>,
    /// The server's temp dir: the tmpfs, else one in the scratch dir.
    temp: Option<ServerTemp>,
    notes: Vec<String>,
    torn_down: bool,
}

fn io_err(
    action: &'static str,
    path: &Path,
    hint: Option<String>,
) -> impl FnOnce(std::io::Error) -> MachineError {
    let path = path.to_owned();
    move |source| MachineError::Io {
        action,
        path,
        source,
        hint,
    }
}

impl CgroupMachine {
    /// Creates `<hierarchy>/sharerig/<run_id>` with the limit, the tmpfs and
    /// the server's temp dir.
    pub fn create(
        spec: &MachineSpec,
        run_id: &str,
        scratch: &Path,
        notes: Vec<String>,
    ) -> Result<Self, MachineError> {
        let own = Cgroup::of_process(None).map_err(|e| {
            MachineError::Unsupported(format!(
                "cgroup mode needs a memory cgroup hierarchy: {e}; use mode = \"none\" to run without a limit"
            ))
        })?;
        let limit = spec.memory.0;
        let mut notes = notes;
        let cgroup = match own.version {
            Version::V1 => create_v1(run_id, limit)?,
            Version::V2 => {
                let created = v2::create(&own, run_id, limit)?;
                notes.push(created.note);
                created.cgroup
            }
        };
        let mut machine = CgroupMachine {
            cgroup,
            limit,
            tmpfs: None,
            temp: None,
            notes,
            torn_down: false,
        };
        if let Some(size) = spec.tmpfs {
            let dir = scratch.join("tmpfs");
            if let Err(e) = mount_tmpfs(&dir, size.0) {
                let _ = machine.teardown();
                return Err(e);
            }
            machine.tmpfs = Some(dir);
        }
        match ServerTemp::new(machine.tmpfs.as_deref(), scratch) {
            Ok(temp) => machine.temp = Some(temp),
            Err(e) => {
                let _ = machine.teardown();
                return Err(e);
            }
        }
        Ok(machine)
    }

    pub fn cgroup(&self) -> &Cgroup {
        &self.cgroup
    }
}

fn write(dir: &Path, file: &str, value: &str, hint: Option<String>) -> Result<(), MachineError> {
    let path = dir.join(file);
    std::fs::write(&path, value).map_err(io_err("writing", &path, hint))
}

fn create_v1(run_id: &str, limit: u64) -> Result<Cgroup, MachineError> {
    let dir = Path::new(CGROUP_ROOT)
        .join("memory")
        .join(PARENT)
        .join(run_id);
    let hint =
        (!is_root()).then(|| "creating a cgroup v1 needs root; run the rig with sudo".to_owned());
    std::fs::create_dir_all(&dir).map_err(io_err("creating cgroup", &dir, hint))?;
    let setup = || -> Result<(), MachineError> {
        write(&dir, "memory.limit_in_bytes", &limit.to_string(), None)?;
        // Swap off: memory+swap may not exceed memory (only where swap accounting exists).
        if dir.join("memory.memsw.limit_in_bytes").exists() {
            write(
                &dir,
                "memory.memsw.limit_in_bytes",
                &limit.to_string(),
                None,
            )?;
        }
        write(&dir, "memory.swappiness", "0", None)
    };
    setup().inspect_err(|_| {
        let _ = std::fs::remove_dir(&dir);
    })?;
    Ok(Cgroup {
        version: Version::V1,
        dir,
    })
}

fn mount_tmpfs(dir: &Path, size: u64) -> Result<(), MachineError> {
    if !is_root() {
        return Err(MachineError::Unsupported(
            "machine.tmpfs needs root to mount a tmpfs; remove it or run the rig as root".into(),
        ));
    }
    std::fs::create_dir_all(dir).map_err(io_err("creating", dir, None))?;
    let status = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=1777"),
            "sharerig-tmp",
        ])
        .arg(dir)
        .status()
        .map_err(io_err(
            "running mount for",
            dir,
            Some("is util-linux installed?".into()),
        ))?;
    if !status.success() {
        return Err(MachineError::Unsupported(format!(
            "mount -t tmpfs on {} failed: {status}",
            dir.display()
        )));
    }
    Ok(())
}

impl Machine for CgroupMachine {
    fn info(&self) -> MachineInfo {
        MachineInfo {
            mode: Mode::Cgroup,
            limit_bytes: Some(self.limit),
            memory_source: match self.cgroup.version {
                Version::V1 => "cgroup-v1".into(),
                Version::V2 => "cgroup-v2".into(),
            },
            cgroup_path: Some(self.cgroup.dir.clone()),
            tmpfs: self.tmpfs.clone(),
            temp_dir: self.temp.as_ref().map(|t| t.path.clone()),
            notes: self.notes.clone(),
            vm: None,
        }
    }

    fn start_server<'a>(&'a self, launch: Launch<'a>) -> BoxFuture<'a, Result<Server, StartError>> {
        Box::pin(local::start(self, launch))
    }

    fn probe(&self) -> Arc<dyn Probe> {
        Arc::new(CgroupProbe {
            cgroup: self.cgroup.clone(),
            temp: self.temp.as_ref().map(|t| TempDir::at(&t.path)),
        })
    }

    fn oom_kills(&self) -> Option<u64> {
        self.cgroup.oom_kills()
    }

    fn teardown(&mut self) -> Result<(), MachineError> {
        if self.torn_down {
            return Ok(());
        }
        kill_members(&self.cgroup.dir);
        // Both stay named: meta.json is written again after teardown.
        if let Some(temp) = &self.temp {
            temp.remove();
        }
        if let Some(tmp) = &self.tmpfs {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(tmp)
                .status();
            let _ = std::fs::remove_dir(tmp);
        }
        let dir = &self.cgroup.dir;
        let started = Instant::now();
        // rmdir fails with EBUSY until the killed processes have left.
        loop {
            match std::fs::remove_dir(dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if started.elapsed() > EMPTY_TIMEOUT => {
                    return Err(io_err("removing cgroup", dir, None)(e));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        self.torn_down = true;
        Ok(())
    }
}

impl LocalMachine for CgroupMachine {
    /// `sh` joins the cgroup, then execs the program: it is inside from its
    /// first instruction, with no unsafe `pre_exec`.
    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("echo $$ > \"$0/cgroup.procs\" && exec \"$@\"")
            .arg(&self.cgroup.dir)
            .arg(program);
        if let Some(temp) = &self.temp {
            temp.apply(&mut cmd);
        }
        cmd
    }
}

impl Drop for CgroupMachine {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            tracing::warn!(error = %e, "could not remove the run's cgroup");
        }
    }
}

/// SIGKILLs every process left in the cgroup.
fn kill_members(dir: &Path) {
    let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) else {
        return;
    };
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

struct CgroupProbe {
    cgroup: Cgroup,
    temp: Option<TempDir>,
}

impl Probe for CgroupProbe {
    fn machine(&self) -> Result<MachineMemory, String> {
        let memory = self.cgroup.read().map_err(|e| e.to_string())?;
        Ok(MachineMemory::from_cgroup(&memory, self.cgroup.pressure()))
    }

    fn process(&self, pid: u32) -> Result<ProcessSample, String> {
        read_process(pid)
    }

    fn group_processes(&self) -> Option<Vec<GroupProcess>> {
        read_group(&self.cgroup.dir)
    }

    fn files(&self, db: &Path, pid: u32) -> Option<FileReading> {
        files::read_local(db, pid, self.temp.as_ref())
    }
}
