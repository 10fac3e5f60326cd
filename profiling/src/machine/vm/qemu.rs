//! qemu: finding it, KVM or TCG, and the command line of a guest.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::VmError;

pub const QEMU: &str = "qemu-system-x86_64";
/// Overrides the accelerator choice: `kvm` or `tcg`.
pub const ACCEL_ENV: &str = "SHARERIG_VM_ACCEL";

/// The guest's ports (the host's are picked free per run).
pub const GUEST_PORT: u16 = 4001;
pub const GUEST_DEBUG_PORT: u16 = 6060;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation: near-native speed.
    Kvm,
    /// Software emulation: every guest instruction translated; slow.
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// `qemu-system-x86_64` on the PATH.
pub fn find() -> Result<PathBuf, VmError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(QEMU))
        .find(|p| p.is_file())
        .ok_or_else(|| VmError::Missing {
            what: QEMU.to_owned(),
        })
}

/// KVM when `/dev/kvm` opens read-write and the CPU has hardware
/// virtualisation (vmx/svm); TCG otherwise. A `/dev/kvm` alone is not enough:
/// on some hosts (this development VM) it opens, but a guest never runs.
pub fn choose_accel() -> (Accel, String) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    choose(
        std::env::var(ACCEL_ENV).ok().as_deref(),
        kvm_opens(),
        &cpuinfo,
    )
}

fn kvm_opens() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

fn choose(forced: Option<&str>, kvm_opens: bool, cpuinfo: &str) -> (Accel, String) {
    match forced {
        Some("kvm") => return (Accel::Kvm, format!("{ACCEL_ENV}=kvm")),
        Some("tcg") => return (Accel::Tcg, format!("{ACCEL_ENV}=tcg")),
        _ => {}
    }
    let hardware = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    match (kvm_opens, hardware) {
        (true, true) => (Accel::Kvm, "/dev/kvm and vmx/svm present".into()),
        (false, _) => (Accel::Tcg, "no usable /dev/kvm".into()),
        (true, false) => (
            Accel::Tcg,
            "/dev/kvm opens but the CPU shows no vmx/svm".into(),
        ),
    }
}

/// Everything a guest's qemu command line names.
pub struct Launch<'a> {
    pub accel: Accel,
    pub memory: u64,
    pub cpus: u32,
    pub kernel: &'a Path,
    pub initramfs: &'a Path,
    pub disk: &'a Path,
    /// The rig listens here; qemu connects the agent's virtio-serial port to it.
    pub agent_socket: &'a Path,
    /// The server's stdout and stderr land here.
    pub server_log: &'a Path,
    pub host_port: u16,
    pub debug_host_port: u16,
}

impl Launch<'_> {
    /// The arguments after the program name. The kernel console is qemu's
    /// stdout; `-no-reboot` with `panic=-1` makes a guest panic end qemu.
    pub fn args(&self) -> Vec<String> {
        let p = |path: &Path| path.display().to_string();
        let mut args: Vec<String> = vec![
            "-accel".into(),
            self.accel.as_str().into(),
            "-m".into(),
            format!("{}M", self.memory >> 20),
            "-smp".into(),
            self.cpus.to_string(),
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-no-reboot".into(),
            "-kernel".into(),
            p(self.kernel),
            "-initrd".into(),
            p(self.initramfs),
            "-append".into(),
            // loglevel=5: warnings and worse (the OOM killer's report) reach the console.
            "console=ttyS0 panic=-1 loglevel=5".into(),
            "-chardev".into(),
            "stdio,id=console,signal=off".into(),
            "-serial".into(),
            "chardev:console".into(),
            "-device".into(),
            "virtio-serial-pci".into(),
            "-chardev".into(),
            format!("socket,id=agent,path={}", p(self.agent_socket)),
            "-device".into(),
            "virtserialport,chardev=agent,name=sharerig.agent".into(),
            "-chardev".into(),
            format!("file,id=log,path={}", p(self.server_log)),
            "-device".into(),
            "virtserialport,chardev=log,name=sharerig.log".into(),
            "-drive".into(),
            format!("file={},if=virtio,format=raw", p(self.disk)),
            "-netdev".into(),
            format!(
                "user,id=net0,hostfwd=tcp:127.0.0.1:{}-:{GUEST_PORT},hostfwd=tcp:127.0.0.1:{}-:{GUEST_DEBUG_PORT}",
                self.host_port, self.debug_host_port
            ),
            "-device".into(),
            "virtio-net-pci,netdev=net0".into(),
        ];
        if self.accel == Accel::Kvm {
            args.extend(["-cpu".into(), "host".into()]);
        }
        args
    }
}

/// A loopback port free right now (qemu binds it a moment later).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_only_with_hardware_virtualisation() {
        let vmx = "flags\t\t: fpu vme vmx sse\n";
        let none = "flags\t\t: fpu vme hypervisor sse\n";
        assert_eq!(choose(None, true, vmx).0, Accel::Kvm);
        assert_eq!(choose(None, true, none).0, Accel::Tcg);
        assert_eq!(choose(None, false, vmx).0, Accel::Tcg);
        assert_eq!(choose(Some("kvm"), false, none).0, Accel::Kvm);
        assert_eq!(choose(Some("tcg"), true, vmx).0, Accel::Tcg);
    }

    #[test]
    fn the_command_line_forwards_both_ports_to_loopback() {
        let l = Launch {
            accel: Accel::Tcg,
            memory: 256 << 20,
            cpus: 1,
            kernel: Path::new("/k"),
            initramfs: Path::new("/i"),
            disk: Path::new("/d.img"),
            agent_socket: Path::new("/s"),
            server_log: Path::new("/l"),
            host_port: 40001,
            debug_host_port: 40002,
        };
        let args = l.args().join(" ");
        assert!(args.contains("-m 256M"));
        assert!(args.contains("hostfwd=tcp:127.0.0.1:40001-:4001"));
        assert!(args.contains("hostfwd=tcp:127.0.0.1:40002-:6060"));
        assert!(!args.contains("-cpu host"));
    }
}
