//! What the guest boots: the agent binary (built from the workspace), the
//! kernel and initramfs (`scripts/vm-assets.sh build`, cached and keyed by
//! the server binary's hash), and the run's fresh data disk.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::VmError;

/// The asset script, relative to the workspace.
pub const SCRIPT: &str = "scripts/vm-assets.sh";
/// The script's exit status for missing host tools.
const EXIT_MISSING: i32 = 3;

/// A built kernel and initramfs.
#[derive(Debug, Clone)]
pub struct Assets {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub kernel_version: String,
}

/// Builds `sharerig-agent` (release; std only, nothing to do once cached).
pub fn build_agent(workspace: &Path) -> Result<PathBuf, VmError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace)
        .args(["build", "--release", "-p", "vm-agent"])
        .status()
        .map_err(|e| VmError::Setup(format!("running cargo to build the guest agent: {e}")))?;
    if !status.success() {
        return Err(VmError::Setup(format!(
            "building the guest agent (cargo build --release -p vm-agent) failed ({status}): see the cargo output above"
        )));
    }
    Ok(crate::target::target_dir(workspace)
        .join("release")
        .join("sharerig-agent"))
}

/// The kernel and an initramfs holding `server` and `agent`.
pub fn build(workspace: &Path, server: &Path, agent: &Path) -> Result<Assets, VmError> {
    let output = script(
        workspace,
        &["build".as_ref(), server.as_os_str(), agent.as_os_str()],
    )?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = stdout
        .lines()
        .last()
        .map(PathBuf::from)
        .ok_or_else(|| VmError::Setup(format!("{SCRIPT} build printed no directory")))?;
    let kernel_version = std::fs::read_to_string(dir.join("kernel-version"))
        .map(|v| v.trim().to_owned())
        .map_err(|e| VmError::Setup(format!("{}: {e}", dir.join("kernel-version").display())))?;
    Ok(Assets {
        kernel: dir.join("vmlinuz"),
        initramfs: dir.join("initramfs.cpio.gz"),
        kernel_version,
    })
}

/// A fresh ext4 image of `size` bytes holding `from`'s files (sparse).
pub fn disk(workspace: &Path, image: &Path, size: u64, from: &Path) -> Result<(), VmError> {
    script(
        workspace,
        &[
            "disk".as_ref(),
            image.as_os_str(),
            size.to_string().as_ref(),
            from.as_os_str(),
        ],
    )
    .map(|_| ())
}

fn script(workspace: &Path, args: &[&std::ffi::OsStr]) -> Result<Output, VmError> {
    let path = workspace.join(SCRIPT);
    let output = Command::new("bash")
        .arg(&path)
        .args(args)
        .output()
        .map_err(|e| VmError::Setup(format!("running {}: {e}", path.display())))?;
    match output.status.code() {
        Some(0) => Ok(output),
        Some(EXIT_MISSING) => Err(VmError::Missing {
            what: tail(&output.stderr, 3)
                .trim()
                .trim_start_matches("vm-assets: missing ")
                .split(';')
                .next()
                .unwrap_or("host tools")
                .to_owned(),
        }),
        _ => Err(VmError::Setup(format!(
            "{SCRIPT} {} failed ({}):\n{}",
            args.first()
                .map(|a| a.to_string_lossy())
                .unwrap_or_default(),
            output.status,
            tail(&output.stderr, 20)
        ))),
    }
}

/// The last `n` lines of a process's output.
fn tail(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
