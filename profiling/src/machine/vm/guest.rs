//! A booted guest: qemu with the server inside. Three streams come out of
//! it: the kernel console (qemu's stdout, kept as `console.log` and read for
//! OOM kills and panics), the agent's samples (a Unix socket the rig
//! listens on) and the server's log (a file qemu writes). The guest's end is
//! whichever comes first: the agent reports the server's exit, the console
//! shows the server OOM-killed, qemu exits, or the agent falls silent
//! ([`HANG_TIMEOUT`]: the guest is killed and the run still reports).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::agent::{self, AgentSample, Message};
use super::assets::{self, Assets};
use super::{console, qemu, seconds_since};
use crate::machine::OomKill;
use crate::machine::server::{BoxFuture, Launch, Server, ServerProcess, StartError, tail};
use crate::target::{Exit, wait_healthy_until};
use memstat::system::SystemMemory;

/// From qemu's start to the server answering `/healthz`. Boot takes ~3-10 s
/// under TCG on a busy 2-core host; a cold page cache and a loaded CI runner
/// can take several times that.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// qemu connects to the agent socket as it starts, before the guest runs.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// No line from the agent for this long: the guest is hung (under TCG an
/// OOM-thrashing guest can stall for seconds, not a minute).
pub const HANG_TIMEOUT: Duration = Duration::from_secs(60);
/// After `stop`: the server drains for up to 10 s, slower under TCG.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// After the server ended: sync, unmount and power off.
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the console copy may take to reach qemu's last output once it has exited.
const CONSOLE_DRAIN: Duration = Duration::from_secs(5);
/// A console or agent line longer than this is cut (bounds the reader's buffer).
const MAX_LINE: u64 = 64 << 10;

/// What the machine, its probe and the running guest share.
pub struct Shared {
    state: Mutex<State>,
    changed: watch::Sender<()>,
}

#[derive(Default)]
struct State {
    latest: Option<(Instant, AgentSample)>,
    last_agent_line: Option<Instant>,
    kernel: Option<String>,
    server_pid: Option<u32>,
    server_exit: Option<(Option<i32>, Option<i32>)>,
    failed: Option<String>,
    oom_kills: Vec<OomKill>,
    vmstat_oom_kills: u64,
    panic: Option<String>,
    qemu_pid: Option<u32>,
    qemu_exit: Option<String>,
    hung: bool,
    host_port: Option<u16>,
    debug_host_port: Option<u16>,
    boot_seconds: Option<f64>,
    shutdown: Option<String>,
    console_log: Option<PathBuf>,
}

/// The guest's facts for `meta.json`.
pub struct Facts {
    pub kernel: Option<String>,
    pub qemu_pid: Option<u32>,
    pub server_pid: Option<u32>,
    pub host_port: Option<u16>,
    pub debug_host_port: Option<u16>,
    pub boot_seconds: Option<f64>,
    pub shutdown: Option<String>,
    pub console_log: Option<PathBuf>,
}

impl Default for Shared {
    fn default() -> Shared {
        Shared {
            state: Mutex::new(State::default()),
            changed: watch::channel(()).0,
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.lock());
        self.changed.send_replace(());
    }

    pub fn facts(&self) -> Facts {
        let s = self.lock();
        Facts {
            kernel: s.kernel.clone(),
            qemu_pid: s.qemu_pid,
            server_pid: s.server_pid,
            host_port: s.host_port,
            debug_host_port: s.debug_host_port,
            boot_seconds: s.boot_seconds,
            shutdown: s.shutdown.clone(),
            console_log: s.console_log.clone(),
        }
    }

    pub fn latest(&self) -> Option<(Instant, AgentSample)> {
        self.lock().latest.clone()
    }

    pub fn latest_meminfo(&self) -> Option<SystemMemory> {
        self.lock().latest.as_ref()?.1.meminfo
    }

    /// Kills in the guest: its console's lines or its /proc/vmstat, whichever saw more.
    pub fn oom_kills(&self) -> u64 {
        let s = self.lock();
        (s.oom_kills.len() as u64).max(s.vmstat_oom_kills)
    }

    pub fn oom_kill_log(&self) -> Vec<OomKill> {
        self.lock().oom_kills.clone()
    }

    /// SIGKILL to qemu by its pid, unless it has exited.
    pub fn kill_qemu(&self) {
        let s = self.lock();
        if let (Some(pid), None) = (s.qemu_pid, &s.qemu_exit) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// What a boot needs from the machine.
pub struct Boot<'a> {
    pub qemu: &'a Path,
    pub accel: qemu::Accel,
    pub memory: u64,
    pub cpus: u32,
    pub disk: u64,
    pub assets: &'a Assets,
    pub workspace: &'a Path,
    pub scratch: &'a Path,
    pub interval: Duration,
}

/// A running guest, owned by the [`Server`] it runs.
pub struct Guest {
    shared: Arc<Shared>,
    changes: watch::Receiver<()>,
    commands: OwnedWriteHalf,
    /// Copies the console until qemu's stdout closes.
    console: Option<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Guest {
    /// Makes the run's disk, boots qemu, and waits until the server inside
    /// answers `/healthz` on its forwarded port.
    pub async fn boot(
        b: &Boot<'_>,
        shared: Arc<Shared>,
        launch: Launch<'_>,
    ) -> Result<Server, StartError> {
        let (extra_args, log, secret) = (launch.args, launch.log, launch.secret);
        let run_dir = log.parent().unwrap_or(Path::new("."));
        let console_log = run_dir.join(CONSOLE_LOG);
        let no_start = |reason: String| StartError::NoStart {
            reason,
            log_tail: format!(
                "guest console ({}):\n{}\nserver log:\n{}",
                console_log.display(),
                tail(&console_log, 15),
                tail(log, 10)
            ),
        };
        let started = Instant::now();
        let image = b.scratch.join("disk.img");
        make_disk(b, &image, extra_args, secret)
            .await
            .map_err(|e| no_start(e.to_string()))?;
        let port = |what: &str| {
            qemu::free_port().map_err(|e| no_start(format!("no free port for {what}: {e}")))
        };
        let (host_port, debug_host_port) = (port("the server")?, port("its debug listener")?);
        let socket = b.scratch.join("agent.sock");
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)
            .map_err(|e| no_start(format!("binding {}: {e}", socket.display())))?;
        let launch = qemu::Launch {
            accel: b.accel,
            memory: b.memory,
            cpus: b.cpus,
            kernel: &b.assets.kernel,
            initramfs: &b.assets.initramfs,
            disk: &image,
            agent_socket: &socket,
            server_log: log,
            host_port,
            debug_host_port,
        };
        let qemu_log = run_dir.join(QEMU_LOG);
        let stderr = std::fs::File::create(&qemu_log)
            .map_err(|e| no_start(format!("creating {}: {e}", qemu_log.display())))?;
        let mut child = tokio::process::Command::new(b.qemu)
            .args(launch.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| no_start(format!("starting {}: {e}", b.qemu.display())))?;
        let qemu_pid = child.id();
        shared.update(|s| {
            s.qemu_pid = qemu_pid;
            s.host_port = Some(host_port);
            s.debug_host_port = Some(debug_host_port);
            s.console_log = Some(console_log.clone());
        });
        let mut tasks = Vec::new();
        let console = child.stdout.take().map(|stdout| {
            tokio::spawn(read_console(
                BufReader::new(stdout),
                console_log.clone(),
                Arc::clone(&shared),
            ))
        });
        tasks.push(tokio::spawn({
            let shared = Arc::clone(&shared);
            async move {
                let status = child.wait().await;
                shared.update(|s| {
                    s.qemu_exit = Some(match status {
                        Ok(status) => status.to_string(),
                        Err(e) => format!("unknown ({e})"),
                    })
                });
            }
        }));
        let mut changes = shared.changed.subscribe();
        let guest_gone = |s: &State| {
            s.qemu_exit.as_ref().map(|e| {
                format!(
                    "qemu ended ({e}); {}",
                    tail(&qemu_log, 5).trim().lines().last().unwrap_or("")
                )
            })
        };

        let connection = tokio::select! {
            accepted = tokio::time::timeout(CONNECT_TIMEOUT, listener.accept()) => accepted,
            gone = wait_until(&mut changes, &shared, guest_gone) => {
                shared.kill_qemu();
                return Err(no_start(gone));
            }
        };
        let stream = match connection {
            Ok(Ok((stream, _))) => stream,
            Ok(Err(e)) => {
                shared.kill_qemu();
                return Err(no_start(format!("accepting the agent's connection: {e}")));
            }
            Err(_) => {
                shared.kill_qemu();
                return Err(no_start(format!(
                    "qemu did not connect the agent port within {CONNECT_TIMEOUT:?}"
                )));
            }
        };
        let (read, commands) = stream.into_split();
        tasks.push(tokio::spawn(read_agent(
            BufReader::new(read),
            Arc::clone(&shared),
        )));
        let mut guest = Guest {
            shared: Arc::clone(&shared),
            changes: changes.clone(),
            commands,
            console,
            tasks,
        };

        let deadline = started + BOOT_TIMEOUT;
        let pid = tokio::time::timeout_at(
            deadline.into(),
            wait_until(&mut changes, &shared, |s| {
                if let Some(pid) = s.server_pid {
                    return Some(Ok(pid));
                }
                if let Some(f) = &s.failed {
                    return Some(Err(format!("the agent could not start the server: {f}")));
                }
                guest_gone(s).map(Err)
            }),
        )
        .await;
        let pid = match pid {
            Ok(Ok(pid)) => pid,
            Ok(Err(reason)) => return Err(guest.fail(no_start(reason))),
            Err(_) => {
                let reason = format!(
                    "the guest did not start the server within {BOOT_TIMEOUT:?} (accel {}; set {}=tcg if KVM is broken here)",
                    b.accel.as_str(),
                    qemu::ACCEL_ENV
                );
                return Err(guest.fail(no_start(reason)));
            }
        };
        let base_url = format!("http://127.0.0.1:{host_port}");
        let healthy = tokio::select! {
            r = wait_healthy_until(&base_url, deadline) => r,
            _ = guest.wait() => Err("the server ended before it answered /healthz".into()),
        };
        if let Err(reason) = healthy {
            return Err(guest.fail(no_start(reason)));
        }
        let boot_seconds = seconds_since(started);
        shared.update(|s| s.boot_seconds = Some(boot_seconds));
        Ok(Server::new(
            Box::new(guest),
            pid,
            base_url,
            format!("http://127.0.0.1:{debug_host_port}"),
            log.to_owned(),
        ))
    }

    /// Kills the guest after a failed boot and passes the error on.
    fn fail(self, error: StartError) -> StartError {
        self.shared.kill_qemu();
        error
    }

    /// `Some` once the server has ended (or the guest with it).
    pub fn try_exit(&mut self) -> Option<Exit> {
        end(&self.shared)
    }

    /// Waits for the server (or the guest) to end.
    pub async fn wait(&mut self) -> Exit {
        loop {
            if let Some(exit) = end(&self.shared) {
                return exit;
            }
            // A change, or a second passes (the hang check).
            let _ = tokio::time::timeout(Duration::from_secs(1), self.changes.changed()).await;
        }
    }

    /// Asks the agent to stop the server (SIGTERM inside the guest), waits
    /// for it, then for the guest to power off; qemu is killed by its pid
    /// if either takes too long. A server that already ended reports how.
    pub async fn stop(mut self) -> Exit {
        let exit = match end(&self.shared) {
            Some(exit) => exit,
            None => {
                let _ = self.commands.write_all(b"stop\n").await;
                match tokio::time::timeout(STOP_TIMEOUT, self.wait()).await {
                    Ok(exit) => Exit {
                        stopped_by_rig: true,
                        ..exit
                    },
                    Err(_) => Exit {
                        code: None,
                        signal: Some(9),
                        stopped_by_rig: true,
                    },
                }
            }
        };
        self.power_off().await;
        exit
    }

    /// Waits for qemu to exit after the guest's `poweroff`, or kills it.
    async fn power_off(&mut self) {
        let shared = Arc::clone(&self.shared);
        let done = tokio::time::timeout(
            POWEROFF_TIMEOUT,
            wait_until(&mut self.changes, &shared, |s| s.qemu_exit.clone()),
        )
        .await;
        let shutdown = {
            let s = self.shared.lock();
            match (&done, s.hung, &s.panic) {
                (_, true, _) => {
                    format!("qemu killed: the guest agent was silent for {HANG_TIMEOUT:?}")
                }
                (Ok(_), _, Some(panic)) => format!("the guest kernel panicked: {panic}"),
                (Ok(_), _, None) if s.server_exit.is_some() => "the guest powered off".into(),
                (Ok(status), _, None) => format!("qemu ended ({status})"),
                (Err(_), _, _) => format!(
                    "qemu killed by its pid: the guest did not power off within {POWEROFF_TIMEOUT:?}"
                ),
            }
        };
        if done.is_err() {
            self.shared.kill_qemu();
        }
        // The console's last lines (the power-off) are read after qemu exits.
        if let Some(console) = self.console.take() {
            let _ = tokio::time::timeout(CONSOLE_DRAIN, console).await;
        }
        self.shared.update(|s| s.shutdown = Some(shutdown));
    }
}

impl ServerProcess for Guest {
    fn try_exit(&mut self) -> Option<Exit> {
        Guest::try_exit(self)
    }

    fn wait(&mut self) -> BoxFuture<'_, Exit> {
        Box::pin(Guest::wait(self))
    }

    fn stop(self: Box<Self>) -> BoxFuture<'static, Exit> {
        Box::pin(Guest::stop(*self))
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.shared.kill_qemu();
        for task in self.tasks.iter().chain(&self.console) {
            task.abort();
        }
    }
}

/// The guest's console log and qemu's own messages, in the run directory.
pub const CONSOLE_LOG: &str = "console.log";
pub const QEMU_LOG: &str = "qemu.log";

/// How the server ended, if it has: the agent's report, an OOM kill of its
/// pid on the console, qemu's exit, or a hung guest (killed here).
fn end(shared: &Shared) -> Option<Exit> {
    let mut s = shared.lock();
    let exit = |code, signal| Exit {
        code,
        signal,
        stopped_by_rig: false,
    };
    if let Some((code, signal)) = s.server_exit {
        return Some(exit(code, signal));
    }
    if s.oom_kills.iter().any(|k| Some(k.pid) == s.server_pid) {
        return Some(exit(None, Some(9)));
    }
    if s.qemu_exit.is_some() || s.failed.is_some() {
        return Some(exit(None, None));
    }
    let silent = s
        .last_agent_line
        .is_some_and(|t| t.elapsed() > HANG_TIMEOUT);
    if silent && !s.hung {
        s.hung = true;
        drop(s);
        tracing::warn!("the guest agent was silent for {HANG_TIMEOUT:?}: killing qemu");
        shared.kill_qemu();
        return Some(exit(None, None));
    }
    s.hung.then(|| exit(None, None))
}

/// Waits until `check` returns something (checked on every change).
async fn wait_until<T>(
    changes: &mut watch::Receiver<()>,
    shared: &Shared,
    mut check: impl FnMut(&State) -> Option<T>,
) -> T {
    loop {
        if let Some(t) = check(&shared.lock()) {
            return t;
        }
        if changes.changed().await.is_err() {
            // The sender lives in `shared`, which outlives this wait.
            std::future::pending::<()>().await;
        }
    }
}

/// One line, at most [`MAX_LINE`] bytes; `None` at the end of the stream.
async fn next_line(reader: &mut (impl AsyncBufRead + Unpin), buf: &mut Vec<u8>) -> Option<String> {
    buf.clear();
    match reader.take(MAX_LINE).read_until(b'\n', buf).await {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(
            String::from_utf8_lossy(buf)
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
        ),
    }
}

/// Copies the console to `console.log` and notes OOM kills and panics.
async fn read_console(mut reader: impl AsyncBufRead + Unpin, path: PathBuf, shared: Arc<Shared>) {
    let mut file = match std::fs::File::create(&path) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(), "cannot write the guest console log");
            None
        }
    };
    let mut buf = Vec::new();
    while let Some(line) = next_line(&mut reader, &mut buf).await {
        if let Some(f) = file.as_mut() {
            let _ = writeln!(f, "{line}");
            let _ = f.flush();
        }
        if let Some(kill) = console::oom_kill(&line) {
            shared.update(|s| {
                s.oom_kills.push(OomKill {
                    at: Instant::now(),
                    pid: kill.pid,
                    process: kill.process,
                    line: line.clone(),
                })
            });
        } else if console::is_panic(&line) {
            shared.update(|s| s.panic = Some(line.clone()));
        }
    }
}

/// Parses the agent's stream into the shared state.
async fn read_agent(mut reader: impl AsyncBufRead + Unpin, shared: Arc<Shared>) {
    let mut parser = agent::Parser::default();
    let mut buf = Vec::new();
    while let Some(line) = next_line(&mut reader, &mut buf).await {
        let now = Instant::now();
        let message = parser.push(&line);
        shared.update(|s| {
            s.last_agent_line = Some(now);
            match message {
                Some(Message::Hello { kernel }) => s.kernel = Some(kernel),
                Some(Message::Started { pid }) => s.server_pid = Some(pid),
                Some(Message::Failed(reason)) => s.failed = Some(reason),
                Some(Message::Sample(sample)) => {
                    s.vmstat_oom_kills = s.vmstat_oom_kills.max(sample.oom_kills.unwrap_or(0));
                    s.latest = Some((now, *sample));
                }
                Some(Message::Exit { code, signal }) => s.server_exit = Some((code, signal)),
                None => {}
            }
        });
    }
}

/// The run's disk: `data/` for the server, `sharerig/run.env` for `/init`.
async fn make_disk(
    b: &Boot<'_>,
    image: &Path,
    extra_args: &[String],
    secret: &str,
) -> Result<(), super::VmError> {
    let stage = b.scratch.join("disk");
    let setup = |e: std::io::Error| super::VmError::Setup(format!("{}: {e}", stage.display()));
    std::fs::create_dir_all(stage.join("data")).map_err(setup)?;
    std::fs::create_dir_all(stage.join("sharerig")).map_err(setup)?;
    std::fs::write(
        stage.join("sharerig").join("run.env"),
        run_env(b.interval, secret, extra_args),
    )
    .map_err(setup)?;
    let (workspace, image, size) = (b.workspace.to_owned(), image.to_owned(), b.disk);
    tokio::task::spawn_blocking(move || assets::disk(&workspace, &image, size, &stage))
        .await
        .map_err(|e| super::VmError::Setup(format!("making the disk: {e}")))?
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

    #[test]
    fn an_oom_kill_of_the_server_ends_it_and_other_kills_do_not() {
        let shared = Shared::default();
        shared.update(|s| s.server_pid = Some(112));
        let kill = |pid| OomKill {
            at: Instant::now(),
            pid,
            process: "x".into(),
            line: String::new(),
        };
        shared.update(|s| s.oom_kills.push(kill(7)));
        assert!(end(&shared).is_none());
        assert_eq!(shared.oom_kills(), 1);
        shared.update(|s| s.oom_kills.push(kill(112)));
        let exit = end(&shared).unwrap();
        assert_eq!(exit.signal, Some(9));
        assert!(!exit.stopped_by_rig);
    }
}
