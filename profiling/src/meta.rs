//! `meta.json`: exactly what ran, so a run can be compared with another
//! months later (the story lost track of which hypothesis was in the code).

use std::path::Path;
use std::process::Command;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::machine::MachineInfo;
use crate::scenario::Scenario;

#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    pub rig_version: &'static str,
    pub scenario: String,
    pub scenario_file: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub git: Git,
    pub server: ServerMeta,
    pub machine: MachineInfo,
    pub host: Host,
    pub sampling_interval_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Git {
    /// `None` outside a git checkout.
    pub revision: Option<String>,
    /// Uncommitted changes in the checkout (then the revision is not the whole story).
    pub dirty: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerMeta {
    pub binary: String,
    pub features: Vec<String>,
    pub no_default_features: bool,
    pub args: Vec<String>,
    /// `share-server --version`, which names the allocator.
    pub version: String,
    pub allocator: String,
}

/// Machine facts (sysinfo).
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub hostname: Option<String>,
    pub kernel: Option<String>,
    pub os: Option<String>,
    pub arch: String,
    pub cpus: usize,
    pub physical_cores: Option<usize>,
    pub memory_total_bytes: Option<u64>,
    /// `v1`, `v2` or `none`.
    pub cgroup_version: String,
}

impl Git {
    pub fn of(dir: &Path) -> Git {
        let git = |args: &[&str]| {
            Command::new("git")
                .current_dir(dir)
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        };
        Git {
            revision: git(&["rev-parse", "HEAD"]),
            dirty: git(&["status", "--porcelain"]).map(|s| !s.is_empty()),
        }
    }
}

impl Host {
    pub fn current() -> Host {
        let memory_total_bytes = sysinfo::System::new().ok().map(|mut s| {
            s.refresh_memory();
            s.total_memory()
        });
        Host {
            hostname: sysinfo::System::host_name().ok(),
            kernel: sysinfo::System::kernel_version().ok(),
            os: sysinfo::System::long_os_version().ok(),
            arch: sysinfo::System::cpu_arch(),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            physical_cores: sysinfo::System::physical_core_count().ok(),
            memory_total_bytes,
            cgroup_version: match memstat::cgroup::Cgroup::of_process(None) {
                Ok(c) => format!("{:?}", c.version).to_lowercase(),
                Err(_) => "none".into(),
            },
        }
    }
}

impl ServerMeta {
    pub fn of(binary: &Path, scenario: &Scenario) -> ServerMeta {
        let version = Command::new(binary)
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let allocator = version
            .split("allocator: ")
            .nth(1)
            .map(|a| a.trim_end_matches(')').to_owned())
            .unwrap_or_else(|| "unknown".into());
        ServerMeta {
            binary: binary.display().to_string(),
            features: scenario.server.features.clone(),
            no_default_features: scenario.server.no_default_features,
            args: scenario.server.args.clone(),
            version,
            allocator,
        }
    }
}
