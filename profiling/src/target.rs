//! The server under test: build or locate the binary, start it inside the
//! machine, wait until it answers, and stop it (SIGTERM, then SIGKILL).

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout};

use crate::machine::Machine;
use crate::machine::vm::Guest;
use crate::scenario::ServerSpec;

/// A cold start on a 256 MiB cgroup takes well under a second; 30 s covers a loaded CI host.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// SIGTERM drains requests (10 s by default) and checkpoints; then SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("building share-server failed ({status}): see the cargo output above")]
    Build { status: ExitStatus },
    #[error("running cargo: {0}")]
    Cargo(std::io::Error),
    #[error("starting {program}: {source}")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("share-server did not start: {reason}; last log lines:\n{log_tail}")]
    NoStart { reason: String, log_tail: String },
}

/// Builds share-server in release mode with the scenario's features and
/// returns the binary, or returns the scenario's own binary.
pub fn build(spec: &ServerSpec, workspace: &Path) -> Result<PathBuf, TargetError> {
    if let Some(binary) = &spec.binary {
        return Ok(binary.clone());
    }
    cargo_build(spec, workspace, true)
}

/// Builds the debug share-server with its default features: what the
/// end-to-end tests run (a test cannot name another package's binary).
pub fn build_debug(workspace: &Path) -> Result<PathBuf, TargetError> {
    cargo_build(&ServerSpec::default(), workspace, false)
}

fn cargo_build(spec: &ServerSpec, workspace: &Path, release: bool) -> Result<PathBuf, TargetError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "-p", "share-server"]);
    if release {
        cmd.arg("--release");
    }
    if spec.no_default_features {
        cmd.arg("--no-default-features");
    }
    if !spec.features.is_empty() {
        cmd.args(["--features", &spec.features.join(",")]);
    }
    let status = cmd.status().map_err(TargetError::Cargo)?;
    if !status.success() {
        return Err(TargetError::Build { status });
    }
    let profile = if release { "release" } else { "debug" };
    Ok(target_dir(workspace).join(profile).join("share-server"))
}

/// Cargo's target directory: `CARGO_TARGET_DIR`, else `<workspace>/target`.
pub fn target_dir(workspace: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace.join(dir)
            }
        }
        None => workspace.join("target"),
    }
}

/// How the server ended.
#[derive(Debug, Clone, Serialize)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Stopped by the rig (SIGTERM at the end), as opposed to dying on its own.
    pub stopped_by_rig: bool,
}

impl Exit {
    /// How a process ended, from its wait status.
    pub fn observe(status: ExitStatus, stopped_by_rig: bool) -> Self {
        Self::from_status(status, stopped_by_rig)
    }

    fn from_status(status: ExitStatus, stopped_by_rig: bool) -> Self {
        Exit {
            code: status.code(),
            signal: status.signal(),
            stopped_by_rig,
        }
    }

    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (_, Some(9)) => "killed by SIGKILL".into(),
            (_, Some(s)) => format!("killed by signal {s}"),
            (Some(c), None) => format!("exited with status {c}"),
            (None, None) => "ended".into(),
        }
    }
}

/// A running server.
pub struct Server {
    process: Process,
    /// Its pid (inside the guest in `vm` mode).
    pub pid: u32,
    pub base_url: String,
    pub debug_url: String,
    pub log: PathBuf,
}

enum Process {
    Local {
        child: Box<Child>,
        /// Kept open so the server never writes to a closed pipe.
        _stdout: tokio::io::Lines<BufReader<ChildStdout>>,
    },
    Guest(Guest),
}

impl Server {
    /// Starts `binary` inside `machine` on loopback ports, with its database
    /// at `db` and its log at `log`, and waits until `/healthz` answers. In
    /// `vm` mode the machine boots its guest with the server inside instead
    /// (`binary` is already in the guest's initramfs, `db` on its disk).
    pub async fn start(
        machine: &dyn Machine,
        binary: &Path,
        extra_args: &[String],
        db: &Path,
        log: &Path,
        secret: &str,
    ) -> Result<Server, TargetError> {
        if let Some(vm) = machine.vm() {
            return vm.start(extra_args, log, secret).await;
        }
        let mut command = machine
            .command(binary)
            .ok_or_else(|| TargetError::NoStart {
                reason: "this machine runs no local processes".into(),
                log_tail: String::new(),
            })?;
        let log_file = std::fs::File::create(log).map_err(|source| TargetError::Spawn {
            program: log.to_owned(),
            source,
        })?;
        let mut child = command
            .arg("--db")
            .arg(db)
            .args([
                "--port",
                "0",
                "--listen",
                "127.0.0.1",
                "--debug-listen",
                "127.0.0.1:0",
            ])
            .args(extra_args)
            .env("PS_SHARED_SECRET", secret)
            .env_remove("PS_SHARED_SECRET_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| TargetError::Spawn {
                program: binary.to_owned(),
                source,
            })?;
        let no_start = |reason: String| TargetError::NoStart {
            reason,
            log_tail: tail(log, 10),
        };
        let pid = child
            .id()
            .ok_or_else(|| no_start("exited at once".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| no_start("no stdout".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let mut next_address =
            async |parse: fn(&str) -> Option<&str>| -> Result<String, TargetError> {
                let line = tokio::time::timeout(START_TIMEOUT, lines.next_line())
                    .await
                    .map_err(|_| no_start(format!("no address printed within {START_TIMEOUT:?}")))?
                    .map_err(|e| no_start(format!("reading its stdout: {e}")))?
                    .ok_or_else(|| no_start("exited before printing its address".into()))?;
                parse(&line)
                    .map(str::to_owned)
                    .ok_or_else(|| no_start(format!("unexpected output {line:?}")))
            };
        let base_url = next_address(run_format::startup::parse_listening).await?;
        let debug_url = next_address(run_format::startup::parse_debug_listening).await?;
        wait_healthy(&base_url).await.map_err(no_start)?;
        Ok(Server {
            process: Process::Local {
                child: Box::new(child),
                _stdout: lines,
            },
            pid,
            base_url,
            debug_url,
            log: log.to_owned(),
        })
    }

    /// A server running in a booted guest.
    pub(crate) fn in_guest(
        guest: Guest,
        pid: u32,
        base_url: String,
        debug_url: String,
        log: PathBuf,
    ) -> Server {
        Server {
            process: Process::Guest(guest),
            pid,
            base_url,
            debug_url,
            log,
        }
    }

    /// `Some` once the server has exited (on its own or killed).
    pub fn try_exit(&mut self) -> Option<Exit> {
        match &mut self.process {
            Process::Local { child, .. } => match child.try_wait() {
                Ok(Some(status)) => Some(Exit::from_status(status, false)),
                _ => None,
            },
            Process::Guest(guest) => guest.try_exit(),
        }
    }

    /// Waits for the server to exit on its own.
    pub async fn wait(&mut self) -> Exit {
        let child = match &mut self.process {
            Process::Local { child, .. } => child,
            Process::Guest(guest) => return guest.wait().await,
        };
        match child.wait().await {
            Ok(status) => Exit::from_status(status, false),
            Err(_) => Exit {
                code: None,
                signal: None,
                stopped_by_rig: false,
            },
        }
    }

    /// SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]; a guest is then
    /// powered off. A server that already died reports how.
    pub async fn stop(mut self) -> Exit {
        if let Some(exit) = self.try_exit()
            && matches!(self.process, Process::Local { .. })
        {
            return exit;
        }
        let mut child = match self.process {
            Process::Local { child, .. } => child,
            Process::Guest(guest) => return guest.stop().await,
        };
        let pid = nix::unistd::Pid::from_raw(self.pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let status = match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
            Ok(Ok(status)) => status,
            _ => {
                let _ = child.kill().await;
                match child.wait().await {
                    Ok(status) => status,
                    Err(_) => {
                        return Exit {
                            code: None,
                            signal: Some(9),
                            stopped_by_rig: true,
                        };
                    }
                }
            }
        };
        Exit::from_status(status, true)
    }
}

async fn wait_healthy(base_url: &str) -> Result<(), String> {
    wait_healthy_until(base_url, Instant::now() + START_TIMEOUT).await
}

/// Polls `/healthz` until it answers 200 or `deadline` passes.
pub(crate) async fn wait_healthy_until(base_url: &str, deadline: Instant) -> Result<(), String> {
    // Plain HTTP: no CA store needed (a minimal guest has none; see loadgen::client_builder).
    let http = loadgen::client_builder(base_url)
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| {
            let cause = std::error::Error::source(&e).map(|c| format!(": {c}"));
            format!("building an HTTP client: {e}{}", cause.unwrap_or_default())
        })?;
    let started = Instant::now();
    loop {
        match http.get(format!("{base_url}/healthz")).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            _ if Instant::now() > deadline => {
                return Err(format!(
                    "/healthz did not answer 200 within {:?}",
                    started.elapsed()
                ));
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The last `n` lines of a file (for error messages).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
