//! `meta.json`: exactly what ran, so a run can be compared with another
//! months later (the story lost track of which hypothesis was in the code).
//! The file's shape is [`run_format::Meta`]; this module gathers its facts.

use std::path::Path;
use std::process::Command;

use run_format::meta::{Git, Host, MachineMeta, ServerMeta, VmMeta};

use crate::machine::MachineInfo;
use crate::machine::vm::VmInfo;
use crate::scenario::{Mode, Scenario};

/// The checkout's revision and whether it has uncommitted changes.
pub fn git(dir: &Path) -> Git {
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

/// This host's facts (sysinfo).
pub fn host() -> Host {
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

/// The server binary and how the scenario builds and starts it.
pub fn server(binary: &Path, scenario: &Scenario) -> ServerMeta {
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
        features: scenario.server.build_features(),
        no_default_features: scenario.server.no_default_features,
        args: scenario.server.args.clone(),
        version,
        allocator,
    }
}

/// What the machine says about itself, as `meta.json` records it.
pub fn machine(info: MachineInfo) -> MachineMeta {
    MachineMeta {
        mode: mode_name(info.mode).into(),
        limit_bytes: info.limit_bytes,
        memory_source: info.memory_source,
        cgroup_path: info.cgroup_path,
        tmpfs: info.tmpfs,
        temp_dir: info.temp_dir,
        notes: info.notes,
        vm: info.vm.map(vm),
    }
}

/// The scenario file's spelling.
fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Cgroup => "cgroup",
        Mode::Machine => "machine",
        Mode::None => "none",
        Mode::Vm => "vm",
    }
}

fn vm(v: VmInfo) -> VmMeta {
    VmMeta {
        accel: v.accel.as_str().into(),
        accel_reason: v.accel_reason,
        timings_comparable: v.timings_comparable,
        memory_bytes: v.memory_bytes,
        cpus: v.cpus,
        disk_bytes: v.disk_bytes,
        kernel: v.kernel,
        initramfs: v.initramfs,
        guest_mem_total_bytes: v.guest_mem_total_bytes,
        qemu_pid: v.qemu_pid,
        server_pid: v.server_pid,
        host_port: v.host_port,
        debug_host_port: v.debug_host_port,
        boot_seconds: v.boot_seconds,
        shutdown: v.shutdown,
        console_log: v.console_log,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::vm::qemu::Accel;

    /// `meta.json` used to hold `MachineInfo` itself: the conversion must write the same JSON.
    #[test]
    fn machine_meta_writes_what_machine_info_wrote() {
        let guest = VmInfo {
            accel: Accel::Tcg,
            accel_reason: "no /dev/kvm".into(),
            timings_comparable: false,
            memory_bytes: 256 << 20,
            cpus: 2,
            disk_bytes: 1 << 30,
            kernel: "6.1.0-48-amd64".into(),
            initramfs: "/var/cache/initramfs".into(),
            guest_mem_total_bytes: Some(200 << 20),
            qemu_pid: Some(10),
            server_pid: Some(112),
            host_port: Some(4000),
            debug_host_port: Some(4001),
            boot_seconds: Some(3.5),
            shutdown: Some("powered off".into()),
            console_log: Some("console.log".into()),
        };
        for (mode, vm) in [(Mode::Vm, Some(guest)), (Mode::Cgroup, None)] {
            let info = MachineInfo {
                mode,
                limit_bytes: Some(256 << 20),
                memory_source: "cgroup-v2".into(),
                cgroup_path: Some("/sys/fs/cgroup/sharerig/x".into()),
                tmpfs: None,
                temp_dir: Some("/tmp/sharerig-data-x/tmp".into()),
                notes: vec!["a note".into()],
                vm,
            };
            let before = serde_json::to_value(&info).unwrap();
            assert_eq!(serde_json::to_value(machine(info)).unwrap(), before);
        }
        for mode in [Mode::Cgroup, Mode::Machine, Mode::None, Mode::Vm] {
            assert_eq!(serde_json::to_value(mode).unwrap(), mode_name(mode));
        }
    }
}
