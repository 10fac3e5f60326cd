//! `meta.json`: exactly what ran, so a run can be compared with another
//! months later. The rig writes it at the start and again at the end (with
//! what the machine learnt while running); the reports show it.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Meta {
    pub rig_version: String,
    pub scenario: String,
    pub scenario_file: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub git: Git,
    pub server: ServerMeta,
    pub machine: MachineMeta,
    pub host: Host,
    pub sampling_interval_ms: u64,
    /// Heap profiles taken during the run (`[server] heap_profiles`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heap_profiles: Option<crate::heap::HeapProfiles>,
    /// The server's files outside the heap at their peak (local modes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files_at_peak: Option<crate::file_groups::FilesAtPeak>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Git {
    /// `None` outside a git checkout.
    pub revision: Option<String>,
    /// Uncommitted changes in the checkout (then the revision is not the whole story).
    pub dirty: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerMeta {
    pub binary: String,
    pub features: Vec<String>,
    pub no_default_features: bool,
    pub args: Vec<String>,
    /// `share-server --version`, which names the allocator.
    pub version: String,
    pub allocator: String,
}

/// The machine the server ran in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MachineMeta {
    /// `cgroup`, `machine`, `none` or `vm`.
    pub mode: String,
    /// The limit that applies to the server, bytes (`None`: unlimited).
    pub limit_bytes: Option<u64>,
    /// `cgroup-v1`, `cgroup-v2`, `meminfo` or `guest-meminfo`.
    pub memory_source: String,
    pub cgroup_path: Option<PathBuf>,
    pub tmpfs: Option<PathBuf>,
    /// The server's `TMPDIR` and `SQLITE_TMPDIR`: the tmpfs, else a directory
    /// of the run's scratch dir (local modes; `None` in `vm` mode).
    pub temp_dir: Option<PathBuf>,
    /// Things the run should know (e.g. "drop_caches skipped: not root").
    pub notes: Vec<String>,
    /// `vm` mode: the guest (accelerator, kernel, ports, how it shut down).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm: Option<VmMeta>,
}

/// A `vm` guest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VmMeta {
    /// `kvm` or `tcg`.
    pub accel: String,
    /// Why this accelerator.
    pub accel_reason: String,
    /// False under TCG: durations and rates are not comparable to native runs.
    pub timings_comparable: bool,
    pub memory_bytes: u64,
    pub cpus: u32,
    pub disk_bytes: u64,
    /// The guest kernel.
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

/// The host the rig ran on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_meta_with_fields_missing_loads() {
        // No finished_at, host, sampling interval or machine notes; a guest without ports.
        let old = r#"{
            "rig_version": "0.1.0", "scenario": "soak", "started_at": "2026-12-05T11:23:23Z",
            "git": {"revision": "8a38dcd", "dirty": false},
            "server": {"binary": "share-server", "allocator": "jemalloc"},
            "machine": {"mode": "vm", "limit_bytes": 268435456, "vm": {"accel": "tcg"}}
        }"#;
        let m: Meta = serde_json::from_str(old).unwrap();
        assert_eq!(m.scenario, "soak");
        assert!(m.started_at.is_some() && m.finished_at.is_none());
        assert_eq!(m.machine.limit_bytes, Some(268435456));
        assert_eq!(m.machine.vm.as_ref().map(|v| v.accel.as_str()), Some("tcg"));
        assert_eq!(m.host, Host::default());
        assert_eq!(serde_json::from_str::<Meta>("{}").unwrap(), Meta::default());
    }

    #[test]
    fn no_guest_writes_no_vm_key() {
        let text = serde_json::to_string(&MachineMeta::default()).unwrap();
        assert!(!text.contains("\"vm\""), "{text}");
    }
}
