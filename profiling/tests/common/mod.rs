//! What the rig's integration tests share.
#![allow(clippy::unwrap_used, dead_code)] // test code; not every test uses every helper

use std::path::{Path, PathBuf};

/// The workspace root, which builds share-server and holds `scenarios/`.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// `scripts/vm-assets.sh`, to which the caller adds a command.
pub fn vm_assets() -> std::process::Command {
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(workspace().join("scripts/vm-assets.sh"));
    cmd
}

/// `None` when the host tools of the qemu guest tests are there (installed
/// here if root and missing), else why not.
pub fn vm_host_tools_missing() -> Option<String> {
    use profiling::machine::vm::APT_LINE;
    let check = || vm_assets().arg("check").output().unwrap();
    if check().status.success() {
        return None;
    }
    if nix::unistd::Uid::effective().is_root() {
        eprintln!("installing the vm guest's host tools: {APT_LINE}");
        let _ = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "apt-get update -q && {APT_LINE} --no-install-recommends"
            ))
            .status();
    }
    let output = check();
    (!output.status.success()).then(|| String::from_utf8_lossy(&output.stderr).trim().to_owned())
}

/// A JSON file of a run directory.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
