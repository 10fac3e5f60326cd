//! `machine` mode (the whole machine is the limit: a real small VM such as
//! the Fly dev VM) and `none` mode (no limit, for profiling only). No child
//! cgroup; the machine's figures come from `/proc/meminfo`, kills from
//! `/proc/vmstat`.

use std::path::Path;
use std::sync::Arc;

use tokio::process::Command;

use super::local::{self, LocalMachine};
use super::server::{BoxFuture, Launch, Server, StartError};
use super::{Machine, MachineError, MachineInfo, Probe, read_process};
use crate::scenario::Mode;
use run_format::{MachineMemory, ProcessSample};

pub struct HostMachine {
    /// `machine` mode: MemTotal is the limit. `none`: no limit.
    limited: bool,
    notes: Vec<String>,
}

impl HostMachine {
    pub fn new(limited: bool, mut notes: Vec<String>) -> Self {
        if !limited {
            notes.push("no memory limit (mode = \"none\"): figures are for profiling, not for OOM verdicts".into());
        }
        HostMachine { limited, notes }
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
            limit_bytes: HostProbe {
                limited: self.limited,
            }
            .limit(),
            memory_source: "meminfo".into(),
            cgroup_path: None,
            tmpfs: None,
            notes: self.notes.clone(),
            vm: None,
        }
    }

    fn start_server<'a>(&'a self, launch: Launch<'a>) -> BoxFuture<'a, Result<Server, StartError>> {
        Box::pin(local::start(self.command(launch.binary), launch))
    }

    fn probe(&self) -> Arc<dyn Probe> {
        Arc::new(HostProbe {
            limited: self.limited,
        })
    }

    fn oom_kills(&self) -> Option<u64> {
        memstat::system::oom_kills()
    }

    fn teardown(&mut self) -> Result<(), MachineError> {
        Ok(())
    }
}

impl LocalMachine for HostMachine {
    fn command(&self, program: &Path) -> Command {
        Command::new(program)
    }
}

struct HostProbe {
    limited: bool,
}

impl HostProbe {
    fn limit(&self) -> Option<u64> {
        if !self.limited {
            return None;
        }
        memstat::system::read().ok().map(|m| m.mem_total_bytes)
    }
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
}
