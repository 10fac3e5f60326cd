//! The local modes (`cgroup`, `machine`, `none`): the server is a child
//! process of the rig, started by the machine's command (in `cgroup` mode it
//! joins the cgroup first). Stopped with SIGTERM, then SIGKILL. Each run's
//! server gets a temp dir of its own ([`ServerTemp`]), so its temp files
//! can be listed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use super::server::{BoxFuture, Launch, Server, ServerProcess, StartError, tail};
use super::{Machine, MachineError};
use crate::target::{Exit, wait_healthy_until};

/// A cold start on a 256 MiB cgroup takes well under a second; 30 s covers a loaded CI host.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// SIGTERM drains requests (10 s by default) and checkpoints; then SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// A machine whose server is a child process of the rig.
pub trait LocalMachine: Machine {
    /// A command that runs `program` inside the machine; the caller adds arguments.
    fn command(&self, program: &Path) -> Command;
}

/// The server's `TMPDIR` and `SQLITE_TMPDIR`: the machine's tmpfs when the
/// scenario asks for one, else `tmp` in the run's scratch dir.
#[derive(Debug)]
pub struct ServerTemp {
    pub path: PathBuf,
    /// Made here, so removed at teardown (a tmpfs is unmounted instead).
    made: bool,
}

impl ServerTemp {
    /// The tmpfs at `tmpfs`, or a fresh `scratch/tmp`.
    pub fn new(tmpfs: Option<&Path>, scratch: &Path) -> Result<ServerTemp, MachineError> {
        if let Some(dir) = tmpfs {
            return Ok(ServerTemp {
                path: dir.to_owned(),
                made: false,
            });
        }
        let path = scratch.join("tmp");
        std::fs::create_dir_all(&path).map_err(|source| MachineError::Io {
            action: "creating the server's temp dir",
            path: path.clone(),
            source,
            hint: None,
        })?;
        Ok(ServerTemp { path, made: true })
    }

    /// Points `cmd`'s temp files (std's, SQLite's) at it.
    pub fn apply(&self, cmd: &mut Command) {
        cmd.env("TMPDIR", &self.path)
            .env("SQLITE_TMPDIR", &self.path);
    }

    /// Removes the directory it made, with what the server left in it.
    pub fn remove(&self) {
        if self.made
            && let Err(e) = std::fs::remove_dir_all(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, path = %self.path.display(), "removing the server's temp dir");
        }
    }
}

/// Starts the server by `command` on loopback ports, with its database and
/// log as `launch` says, and waits until `/healthz` answers.
pub async fn start(mut command: Command, launch: Launch<'_>) -> Result<Server, StartError> {
    let log = launch.log;
    let log_file = std::fs::File::create(log).map_err(|source| StartError::Spawn {
        program: log.to_owned(),
        source,
    })?;
    let mut child = command
        .arg("--db")
        .arg(launch.db)
        .args([
            "--port",
            "0",
            "--listen",
            "127.0.0.1",
            "--debug-listen",
            "127.0.0.1:0",
        ])
        .args(launch.args)
        .env("PS_SHARED_SECRET", launch.secret)
        .env_remove("PS_SHARED_SECRET_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| StartError::Spawn {
            program: launch.binary.to_owned(),
            source,
        })?;
    let no_start = |reason: String| StartError::NoStart {
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
    let mut next_address = async |parse: fn(&str) -> Option<&str>| -> Result<String, StartError> {
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
    wait_healthy_until(&base_url, Instant::now() + START_TIMEOUT)
        .await
        .map_err(no_start)?;
    let process = LocalProcess {
        child,
        pid,
        _stdout: lines,
    };
    Ok(Server::new(
        Box::new(process),
        pid,
        base_url,
        debug_url,
        log.to_owned(),
    ))
}

/// The server as a child of the rig.
struct LocalProcess {
    child: Child,
    pid: u32,
    /// Kept open so the server never writes to a closed pipe.
    _stdout: Lines<BufReader<ChildStdout>>,
}

impl ServerProcess for LocalProcess {
    fn try_exit(&mut self) -> Option<Exit> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(Exit::observe(status, false)),
            _ => None,
        }
    }

    fn wait(&mut self) -> BoxFuture<'_, Exit> {
        Box::pin(async move {
            match self.child.wait().await {
                Ok(status) => Exit::observe(status, false),
                Err(_) => Exit {
                    code: None,
                    signal: None,
                    stopped_by_rig: false,
                },
            }
        })
    }

    /// SIGTERM, then SIGKILL after [`STOP_TIMEOUT`].
    fn stop(mut self: Box<Self>) -> BoxFuture<'static, Exit> {
        Box::pin(async move {
            if let Some(exit) = self.try_exit() {
                return exit;
            }
            let pid = nix::unistd::Pid::from_raw(self.pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let child = &mut self.child;
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
            Exit::observe(status, true)
        })
    }
}
