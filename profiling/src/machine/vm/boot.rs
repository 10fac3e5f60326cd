//! Booting a guest with the server inside, step by step: the run's disk,
//! two free ports and the agent's socket, qemu with its console and exit
//! watched, the agent's connection, the server's pid, then `/healthz` on the
//! forwarded port.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::BufReader;
use tokio::net::{UnixListener, UnixStream};
use tokio::process::Child;
use tokio::task::JoinHandle;

use super::assets::{self, Assets};
use super::guest::Guest;
use super::shared::{Shared, wait_until};
use super::streams::{read_agent, read_console};
use super::{VmError, qemu};
use crate::machine::server::{Launch, Server, StartError, tail};
use crate::target::wait_healthy_until;

/// From qemu's start to the server answering `/healthz`. Boot takes ~3-10 s
/// under TCG on a busy 2-core host; a cold page cache and a loaded CI runner
/// can take several times that.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// qemu connects to the agent socket as it starts, before the guest runs.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// The guest's console log and qemu's own messages, in the run directory.
pub const CONSOLE_LOG: &str = "console.log";
pub const QEMU_LOG: &str = "qemu.log";

/// What a boot needs from the machine.
pub struct Boot {
    pub qemu: PathBuf,
    pub accel: qemu::Accel,
    pub memory: u64,
    pub cpus: u32,
    pub disk: u64,
    pub assets: Assets,
    pub workspace: PathBuf,
    pub scratch: PathBuf,
    pub interval: Duration,
}

/// Where a failed boot's reasons are: the console, qemu's and the server's logs.
struct Logs<'a> {
    console: PathBuf,
    qemu: PathBuf,
    server: &'a Path,
}

impl Logs<'_> {
    /// The logs in the server log's directory (the run directory).
    fn beside(server_log: &Path) -> Logs<'_> {
        let run_dir = server_log.parent().unwrap_or(Path::new("."));
        Logs {
            console: run_dir.join(CONSOLE_LOG),
            qemu: run_dir.join(QEMU_LOG),
            server: server_log,
        }
    }

    fn no_start(&self, reason: String) -> StartError {
        StartError::NoStart {
            reason,
            log_tail: format!(
                "guest console ({}):\n{}\nserver log:\n{}",
                self.console.display(),
                tail(&self.console, 15),
                tail(self.server, 10)
            ),
        }
    }
}

/// The host's loopback ports forwarded to the server and its debug listener.
struct Ports {
    server: u16,
    debug: u16,
}

impl Boot {
    /// Makes the run's disk, boots qemu, and waits until the server inside
    /// answers `/healthz` on its forwarded port.
    pub async fn boot(
        &self,
        shared: Arc<Shared>,
        launch: Launch<'_>,
    ) -> Result<Server, StartError> {
        let logs = Logs::beside(launch.log);
        let started = Instant::now();
        let image = self
            .make_disk(launch)
            .await
            .map_err(|e| logs.no_start(e.to_string()))?;
        let ports = free_ports().map_err(|e| logs.no_start(e))?;
        let (socket, listener) = self.agent_socket(&logs)?;
        let child = self.spawn_qemu(&image, &socket, &ports, &logs)?;
        shared.update(|s| {
            s.info.qemu_pid = child.id();
            s.info.host_port = Some(ports.server);
            s.info.debug_host_port = Some(ports.debug);
            s.info.console_log = Some(logs.console.clone());
        });
        let (console, exit) = watch_qemu(child, &logs.console, &shared);
        let agent = accept_agent(&listener, &shared, &logs).await?;
        let (read, commands) = agent.into_split();
        let reader = tokio::spawn(read_agent(BufReader::new(read), Arc::clone(&shared)));
        let mut guest = Guest::new(Arc::clone(&shared), commands, console, vec![exit, reader]);
        let deadline = started + BOOT_TIMEOUT;
        let pid = match server_pid(&mut guest, deadline, self.accel, &logs).await {
            Ok(pid) => pid,
            Err(e) => return Err(guest.fail(e)),
        };
        let base_url = format!("http://127.0.0.1:{}", ports.server);
        if let Err(reason) = healthy(&mut guest, &base_url, deadline).await {
            return Err(guest.fail(logs.no_start(reason)));
        }
        let boot_seconds = started.elapsed().as_secs_f64();
        shared.update(|s| s.info.boot_seconds = Some(boot_seconds));
        let debug_url = format!("http://127.0.0.1:{}", ports.debug);
        let log = launch.log.to_owned();
        Ok(Server::new(Box::new(guest), pid, base_url, debug_url, log))
    }

    /// The run's disk: `data/` for the server, `sharerig/run.env` for `/init`.
    async fn make_disk(&self, launch: Launch<'_>) -> Result<PathBuf, VmError> {
        let image = self.scratch.join("disk.img");
        let stage = self.scratch.join("disk");
        let setup = |e: std::io::Error| VmError::Setup(format!("{}: {e}", stage.display()));
        std::fs::create_dir_all(stage.join("data")).map_err(setup)?;
        std::fs::create_dir_all(stage.join("sharerig")).map_err(setup)?;
        std::fs::write(
            stage.join("sharerig").join("run.env"),
            run_env(self.interval, launch.secret, launch.args),
        )
        .map_err(setup)?;
        let (workspace, to, size) = (self.workspace.clone(), image.clone(), self.disk);
        tokio::task::spawn_blocking(move || assets::disk(&workspace, &to, size, &stage))
            .await
            .map_err(|e| VmError::Setup(format!("making the disk: {e}")))??;
        Ok(image)
    }

    /// The socket qemu connects the agent's serial port to.
    fn agent_socket(&self, logs: &Logs<'_>) -> Result<(PathBuf, UnixListener), StartError> {
        let socket = self.scratch.join("agent.sock");
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)
            .map_err(|e| logs.no_start(format!("binding {}: {e}", socket.display())))?;
        Ok((socket, listener))
    }

    /// qemu, its console on a pipe, its own messages in `qemu.log`.
    fn spawn_qemu(
        &self,
        disk: &Path,
        agent_socket: &Path,
        ports: &Ports,
        logs: &Logs<'_>,
    ) -> Result<Child, StartError> {
        let launch = qemu::Launch {
            accel: self.accel,
            memory: self.memory,
            cpus: self.cpus,
            kernel: &self.assets.kernel,
            initramfs: &self.assets.initramfs,
            disk,
            agent_socket,
            server_log: logs.server,
            host_port: ports.server,
            debug_host_port: ports.debug,
        };
        let stderr = std::fs::File::create(&logs.qemu)
            .map_err(|e| logs.no_start(format!("creating {}: {e}", logs.qemu.display())))?;
        tokio::process::Command::new(&self.qemu)
            .args(launch.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| logs.no_start(format!("starting {}: {e}", self.qemu.display())))
    }
}

/// Two loopback ports free right now.
fn free_ports() -> Result<Ports, String> {
    let port = |what: &str| qemu::free_port().map_err(|e| format!("no free port for {what}: {e}"));
    Ok(Ports {
        server: port("the server")?,
        debug: port("its debug listener")?,
    })
}

/// Copies qemu's console into `console.log` and records qemu's exit; the
/// console's task and the exit's.
fn watch_qemu(
    mut child: Child,
    console_log: &Path,
    shared: &Arc<Shared>,
) -> (Option<JoinHandle<()>>, JoinHandle<()>) {
    let console = child.stdout.take().map(|stdout| {
        tokio::spawn(read_console(
            BufReader::new(stdout),
            console_log.to_owned(),
            Arc::clone(shared),
        ))
    });
    let shared = Arc::clone(shared);
    let exit = tokio::spawn(async move {
        let status = child.wait().await;
        shared.update(|s| {
            s.qemu_exit = Some(match status {
                Ok(status) => status.to_string(),
                Err(e) => format!("unknown ({e})"),
            })
        });
    });
    (console, exit)
}

/// The agent's connection: qemu connects its serial port as it starts.
async fn accept_agent(
    listener: &UnixListener,
    shared: &Shared,
    logs: &Logs<'_>,
) -> Result<UnixStream, StartError> {
    let mut changes = shared.subscribe();
    let reason = tokio::select! {
        accepted = tokio::time::timeout(CONNECT_TIMEOUT, listener.accept()) => match accepted {
            Ok(Ok((stream, _))) => return Ok(stream),
            Ok(Err(e)) => format!("accepting the agent's connection: {e}"),
            Err(_) => format!("qemu did not connect the agent port within {CONNECT_TIMEOUT:?}"),
        },
        gone = wait_until(&mut changes, shared, |s| s.qemu_gone(&logs.qemu)) => gone,
    };
    shared.kill_qemu();
    Err(logs.no_start(reason))
}

/// The server's pid in the guest, once the agent has started it.
async fn server_pid(
    guest: &mut Guest,
    deadline: Instant,
    accel: qemu::Accel,
    logs: &Logs<'_>,
) -> Result<u32, StartError> {
    let started = guest.until(|s| {
        if let Some(pid) = s.info.server_pid {
            return Some(Ok(pid));
        }
        if let Some(f) = &s.failed {
            return Some(Err(format!("the agent could not start the server: {f}")));
        }
        s.qemu_gone(&logs.qemu).map(Err)
    });
    match tokio::time::timeout_at(deadline.into(), started).await {
        Ok(Ok(pid)) => Ok(pid),
        Ok(Err(reason)) => Err(logs.no_start(reason)),
        Err(_) => Err(logs.no_start(format!(
            "the guest did not start the server within {BOOT_TIMEOUT:?} (accel {}; set {}=tcg if KVM is broken here)",
            accel.as_str(),
            qemu::ACCEL_ENV
        ))),
    }
}

/// `/healthz` answers on the forwarded port before the deadline, unless the server ends first.
async fn healthy(guest: &mut Guest, base_url: &str, deadline: Instant) -> Result<(), String> {
    tokio::select! {
        r = wait_healthy_until(base_url, deadline) => r,
        _ = guest.wait() => Err("the server ended before it answered /healthz".into()),
    }
}

/// `/init` sources this: ports, interval, secret, and the server's extra
/// arguments as its positional parameters.
fn run_env(interval: Duration, secret: &str, extra_args: &[String]) -> String {
    let args: Vec<String> = extra_args.iter().map(|a| sh_quote(a)).collect();
    format!(
        "SERVER_PORT={}\nDEBUG_PORT={}\nINTERVAL_MS={}\nPS_SHARED_SECRET={}\nset -- {}\n",
        qemu::GUEST_PORT,
        qemu::GUEST_DEBUG_PORT,
        interval.as_millis(),
        sh_quote(secret),
        args.join(" ")
    )
}

/// Single-quoted for sh: every byte literal.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_env_quotes_what_the_shell_would_split_or_expand() {
        let env = run_env(
            Duration::from_millis(250),
            "s3cr'et",
            &["--regression".into(), "a b $HOME".into()],
        );
        assert!(env.contains("INTERVAL_MS=250\n"));
        assert!(env.contains("PS_SHARED_SECRET='s3cr'\\''et'\n"));
        assert!(env.contains("set -- '--regression' 'a b $HOME'\n"));
    }
}
