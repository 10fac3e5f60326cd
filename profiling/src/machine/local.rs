//! The local modes (`cgroup`, `machine`, `none`): the server is a child
//! process of the rig, started by the machine's command (in `cgroup` mode it
//! joins the cgroup first), or the child of a wrapper that is (`[server]
//! wrapper`: Litestream). Stopped with SIGTERM to the child (a wrapper passes
//! it on), then SIGKILL. Each run's server gets a temp dir of its own
//! ([`ServerTemp`]), so its temp files can be listed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

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

/// Starts the server inside `machine` on loopback ports, with its database,
/// log and wrapper as `launch` says, and waits until `/healthz` answers.
pub async fn start(machine: &dyn LocalMachine, launch: Launch<'_>) -> Result<Server, StartError> {
    let log = launch.log;
    let mut server: Vec<OsString> = vec![launch.binary.into(), "--db".into(), launch.db.into()];
    server.extend(
        [
            "--port",
            "0",
            "--listen",
            "127.0.0.1",
            "--debug-listen",
            "127.0.0.1:0",
        ]
        .map(OsString::from),
    );
    server.extend(launch.args.iter().map(OsString::from));
    let wrapped = !launch.wrapper.is_empty();
    let mut command = match launch.wrapper.split_first() {
        Some((program, rest)) => {
            let mut command = machine.command(Path::new(program));
            command.args(crate::wrapper::arguments(rest, &server));
            command
        }
        None => {
            let mut command = machine.command(launch.binary);
            command.args(&server[1..]);
            command
        }
    };
    let log_file = std::fs::File::create(log).map_err(|source| StartError::Spawn {
        program: log.to_owned(),
        source,
    })?;
    let mut child = command
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
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let mut next_address = async |parse: fn(&str) -> Option<&str>| -> Result<String, StartError> {
        loop {
            let line = tokio::time::timeout_at(deadline, lines.next_line())
                .await
                .map_err(|_| no_start(format!("no address printed within {START_TIMEOUT:?}")))?
                .map_err(|e| no_start(format!("reading its stdout: {e}")))?
                .ok_or_else(|| no_start("exited before printing its address".into()))?;
            match parse(&line) {
                Some(address) => return Ok(address.to_owned()),
                // A wrapper may print lines of its own first.
                None if wrapped => continue,
                None => return Err(no_start(format!("unexpected output {line:?}"))),
            }
        }
    };
    let base_url = next_address(run_format::startup::parse_listening).await?;
    let debug_url = next_address(run_format::startup::parse_debug_listening).await?;
    wait_healthy_until(&base_url, Instant::now() + START_TIMEOUT)
        .await
        .map_err(no_start)?;
    // What the server prints later, and a wrapper's output, never fills the pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    // The sampler and the events follow the server itself, not its wrapper.
    let server_pid = match wrapped {
        true => crate::wrapper::find_server(pid, launch.binary)
            .ok_or_else(|| no_start(format!("no {} under the wrapper", launch.binary.display())))?,
        false => pid,
    };
    let process = LocalProcess { child, pid };
    Ok(Server::new(
        Box::new(process),
        server_pid,
        base_url,
        debug_url,
        log.to_owned(),
    ))
}

/// The server (or its wrapper) as a child of the rig.
struct LocalProcess {
    child: Child,
    pid: u32,
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
