//! `machine` mode (the whole machine is the limit: a real small VM such as
//! the Fly dev VM) and `none` mode (no limit, for profiling only). No child
//! cgroup; the machine's figures come from `/proc/meminfo`, kills from
//! `/proc/vmstat`. The server's temp dir is `tmp` in the run's scratch dir.

use std::path::Path;
use std::sync::Arc;

use tokio::process::Command;

use super::local::{self, LocalMachine, ServerTemp};
use super::server::{BoxFuture, Launch, Server, StartError};
use super::{Machine, MachineError, MachineInfo, Probe, read_process};
use crate::files::{self, FileReading, TempDir};
use crate::scenario::Mode;
use run_format::{MachineMemory, ProcessSample};

pub struct HostMachine {
    /// `machine` mode: MemTotal is the limit. `none`: no limit.
    limited: bool,
    temp: ServerTemp,
    notes: Vec<String>,
}

impl HostMachine {
    /// Makes the server's temp dir in `scratch`.
    pub fn new(
        limited: bool,
        scratch: &Path,
        mut notes: Vec<String>,
    ) -> Result<Self, MachineError> {
        if !limited {
            notes.push("no memory limit (mode = \"none\"): figures are for profiling, not for OOM verdicts".into());
        }
        Ok(HostMachine {
            limited,
            temp: ServerTemp::new(None, scratch)?,
            notes,
        })
    }
}

impl Machine for HostMachine {
    fn info(&self) -> MachineInfo {
        MachineInfo {
            mode: if self.limited {
                Mode::Machine
            } else {
                Mode::None
            },
            limit_bytes: self.limited.then(host_limit).flatten(),
            memory_source: "meminfo".into(),
            cgroup_path: None,
            tmpfs: None,
            temp_dir: Some(self.temp.path.clone()),
            notes: self.notes.clone(),
            vm: None,
        }
    }

    fn start_server<'a>(&'a self, launch: Launch<'a>) -> BoxFuture<'a, Result<Server, StartError>> {
        Box::pin(local::start(self, launch))
    }

    fn probe(&self) -> Arc<dyn Probe> {
        Arc::new(HostProbe {
            limited: self.limited,
            temp: TempDir::at(&self.temp.path),
        })
    }

    fn oom_kills(&self) -> Option<u64> {
        memstat::system::oom_kills()
    }

    fn teardown(&mut self) -> Result<(), MachineError> {
        self.temp.remove();
        Ok(())
    }
}

impl LocalMachine for HostMachine {
    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        self.temp.apply(&mut cmd);
        cmd
    }
}

/// `machine` mode's limit: MemTotal.
fn host_limit() -> Option<u64> {
    memstat::system::read().ok().map(|m| m.mem_total_bytes)
}

struct HostProbe {
    limited: bool,
    temp: TempDir,
}

impl Probe for HostProbe {
    fn machine(&self) -> Result<MachineMemory, String> {
        let m = memstat::system::read().map_err(|e| e.to_string())?;
        let pressure = std::fs::read_to_string("/proc/pressure/memory")
            .ok()
            .and_then(|t| memstat::cgroup::parse_pressure(&t));
        let limit = self.limited.then_some(m.mem_total_bytes);
        Ok(MachineMemory::from_meminfo(
            &m,
            limit,
            memstat::system::oom_kills(),
            pressure,
        ))
    }

    fn process(&self, pid: u32) -> Result<ProcessSample, String> {
        read_process(pid)
    }

    fn files(&self, db: &Path, pid: u32) -> Option<FileReading> {
        files::read_local(db, pid, Some(&self.temp))
    }
}
