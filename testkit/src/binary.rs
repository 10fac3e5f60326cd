//! The `share-server` executable. Inside share-server's own tests and
//! benches cargo names it (`CARGO_BIN_EXE_share-server`, in the caller's
//! profile); elsewhere it is built with `cargo build --message-format=json`
//! and its path taken from cargo's report, right whatever `CARGO_TARGET_DIR`
//! is (CI sets it outside the checkout).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::Error;

/// The binary for the calling crate: its `CARGO_BIN_EXE_share-server` when
/// cargo set one (share-server's tests and benches), else the debug build.
#[macro_export]
macro_rules! share_server_binary {
    () => {
        $crate::binary::named_or_debug(option_env!("CARGO_BIN_EXE_share-server"))
    };
}

/// Which build of the binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Debug,
    Release,
}

/// `exe` when given, else [`built`] in debug.
pub fn named_or_debug(exe: Option<&str>) -> Result<PathBuf, Error> {
    match exe {
        Some(exe) => Ok(PathBuf::from(exe)),
        None => built(Profile::Debug),
    }
}

/// `cargo build -p share-server` (once per process and profile) and the
/// executable cargo reports.
pub fn built(profile: Profile) -> Result<PathBuf, Error> {
    static DEBUG: OnceLock<PathBuf> = OnceLock::new();
    static RELEASE: OnceLock<PathBuf> = OnceLock::new();
    let cell = match profile {
        Profile::Debug => &DEBUG,
        Profile::Release => &RELEASE,
    };
    if let Some(path) = cell.get() {
        return Ok(path.clone());
    }
    let path = cargo_build(profile)?;
    Ok(cell.get_or_init(|| path).clone())
}

fn cargo_build(profile: Profile) -> Result<PathBuf, Error> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args(["build", "-p", "share-server", "--message-format=json"]);
    if profile == Profile::Release {
        cmd.arg("--release");
    }
    let output = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(Error::Cargo)?;
    if !output.status.success() {
        return Err(Error::Build(output.status.to_string()));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "share-server")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| Error::Build("cargo reported no share-server executable".into()))
}
