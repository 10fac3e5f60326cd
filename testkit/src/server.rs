//! Starting `share-server` on ephemeral loopback ports and stopping it.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use run_format::startup;

use crate::Error;

/// The shared secret servers are started with unless told otherwise.
pub const SECRET: &str = "testkit-secret-correct-horse";
/// How long a server may take to print its addresses.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the server's stderr (its log) goes.
enum Log {
    /// A file in the data dir (the default).
    File,
    Inherit,
    Null,
}

/// How to start a server: `Spawn::new(binary)...start()`.
pub struct Spawn {
    binary: PathBuf,
    db: Option<PathBuf>,
    log_dir: Option<PathBuf>,
    args: Vec<OsString>,
    envs: Vec<(OsString, Option<OsString>)>,
    secret: Option<String>,
    debug: bool,
    log: Log,
    rust_log: String,
    wrapper: Option<(Vec<OsString>, Wrap)>,
}

/// How a wrapper takes the server's command line ([`Spawn::wrapped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrap {
    /// As arguments after the wrapper's own (`env`, `prod-entrypoint.sh`).
    Args,
    /// As one shell-quoted string (`litestream replicate -exec CMD`).
    OneString,
}

impl Spawn {
    /// Defaults: a temp data dir, [`SECRET`], the debug listener on,
    /// `RUST_LOG=info`, stderr to `server.log` in the data dir.
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Spawn {
            binary: binary.into(),
            db: None,
            log_dir: None,
            args: Vec::new(),
            envs: Vec::new(),
            secret: Some(SECRET.to_owned()),
            debug: true,
            log: Log::File,
            rust_log: "info".to_owned(),
            wrapper: None,
        }
    }

    /// The database to open (it outlives the server); the log goes next to
    /// it unless [`Spawn::log_dir`] says otherwise.
    pub fn db(mut self, db: impl Into<PathBuf>) -> Self {
        self.db = Some(db.into());
        self
    }

    /// The directory the log file is written to.
    pub fn log_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.log_dir = Some(dir.into());
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        let value = Some(value.as_ref().to_owned());
        self.envs.push((key.as_ref().to_owned(), value));
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.envs.push((key.as_ref().to_owned(), None));
        self
    }

    /// `PS_SHARED_SECRET`; `None` leaves it unset (to pass it another way).
    pub fn secret(mut self, secret: Option<&str>) -> Self {
        self.secret = secret.map(str::to_owned);
        self
    }

    /// Whether to start the debug listener (`--debug-listen 127.0.0.1:0`).
    pub fn debug_listener(mut self, on: bool) -> Self {
        self.debug = on;
        self
    }

    pub fn rust_log(mut self, filter: &str) -> Self {
        self.rust_log = filter.to_owned();
        self
    }

    /// Runs the server under `prefix` (a program and its arguments), which
    /// is given the server's command line as `style` says. The wrapper's
    /// stdout must carry the server's (its own log goes to stderr). Killing
    /// the [`Server`] kills the wrapper and everything it started.
    pub fn wrapped<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(
        mut self,
        prefix: I,
        style: Wrap,
    ) -> Self {
        let prefix = prefix.into_iter().map(|a| a.as_ref().to_owned()).collect();
        self.wrapper = Some((prefix, style));
        self
    }

    /// The server's stderr goes to ours instead of a log file.
    pub fn inherit_stderr(mut self) -> Self {
        self.log = Log::Inherit;
        self
    }

    /// The server's stderr is dropped.
    pub fn null_stderr(mut self) -> Self {
        self.log = Log::Null;
        self
    }

    /// Starts the server and waits until it prints its address(es).
    pub fn start(self) -> Result<Server, Error> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| Error::Io { what, source }
        };
        let (db, temp) = match &self.db {
            Some(db) => (db.clone(), None),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("testkit-server-")
                    .tempdir()
                    .map_err(io("the server's temp dir"))?;
                (temp.path().join("data").join("store.db"), Some(temp))
            }
        };
        let log_dir = self
            .log_dir
            .clone()
            .or_else(|| temp.as_ref().map(|t| t.path().to_owned()))
            .or_else(|| db.parent().map(Path::to_owned))
            .unwrap_or_else(|| PathBuf::from("."));
        let (stderr, log) = match self.log {
            Log::File => {
                let log = log_dir.join(format!("server-{}.log", unique()));
                let file = File::create(&log).map_err(io(&log.display().to_string()))?;
                (Stdio::from(file), Some(log))
            }
            Log::Inherit => (Stdio::inherit(), None),
            Log::Null => (Stdio::null(), None),
        };
        let mut argv: Vec<OsString> =
            vec![self.binary.clone().into(), "--db".into(), db.clone().into()];
        argv.extend(["--port", "0", "--listen", "127.0.0.1", "--debug-listen"].map(OsString::from));
        argv.push(if self.debug { "127.0.0.1:0" } else { "off" }.into());
        argv.extend(self.args.iter().cloned());
        let mut cmd = match &self.wrapper {
            None => {
                let mut cmd = Command::new(&argv[0]);
                cmd.args(&argv[1..]);
                cmd
            }
            Some((prefix, style)) => {
                let mut cmd =
                    Command::new(prefix.first().map_or(OsStr::new("sh"), |p| p.as_os_str()));
                cmd.args(prefix.iter().skip(1));
                match style {
                    Wrap::Args => cmd.args(&argv),
                    Wrap::OneString => cmd.arg(shell_words(&argv)),
                };
                cmd
            }
        };
        cmd.env_remove("PS_SHARED_SECRET")
            .env_remove("PS_SHARED_SECRET_FILE")
            .env_remove("PS_DEBUG_LISTEN")
            .env("RUST_LOG", &self.rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        if let Some(secret) = &self.secret {
            cmd.env("PS_SHARED_SECRET", secret);
        }
        for (key, value) in &self.envs {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        let program = PathBuf::from(cmd.get_program());
        let mut child = cmd.spawn().map_err(|source| Error::Spawn {
            binary: program,
            source,
        })?;
        let lines = stdout_lines(&mut child);
        let mut server = Server {
            child,
            lines: Mutex::new(lines),
            base: String::new(),
            debug_base: None,
            log,
            db,
            _temp: temp,
        };
        server.base = server.startup_line(startup::parse_listening)?;
        if self.debug {
            server.debug_base = Some(server.startup_line(startup::parse_debug_listening)?);
        }
        Ok(server)
    }
}

/// A running `share-server`; killed (and its temp dir removed) when dropped.
pub struct Server {
    child: Child,
    /// Its stdout, line by line, read by a thread so the pipe stays open.
    lines: Mutex<Receiver<String>>,
    /// `http://127.0.0.1:port` of the main listener.
    pub base: String,
    /// The debug listener (`/debug/stats`, `/metrics`), when started.
    pub debug_base: Option<String>,
    /// The log file (stderr), unless inherited or dropped.
    pub log: Option<PathBuf>,
    db: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The database file it was started on.
    pub fn db(&self) -> &Path {
        &self.db
    }

    /// The log so far (empty without a log file).
    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|log| std::fs::read_to_string(log).ok())
            .unwrap_or_default()
    }

    /// A field of `/proc/<pid>/status` in KiB (`VmHWM`, `VmRSS`, ...).
    pub fn status_kib(&self, field: &str) -> Result<u64, Error> {
        let path = format!("/proc/{}/status", self.pid());
        let missing = || Error::Proc {
            field: field.to_owned(),
            path: path.clone(),
        };
        let status = std::fs::read_to_string(&path).map_err(|_| missing())?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(missing)
    }

    /// Sends `signal` and waits for the exit; kills it after `deadline`.
    pub fn stop_with(&mut self, signal: Signal, deadline: Duration) -> Result<ExitStatus, Error> {
        let pid = i32::try_from(self.child.id()).map_err(|_| Error::Signal(nix::Error::ESRCH))?;
        kill(Pid::from_raw(pid), signal)?;
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().map_err(Error::Wait)? {
                return Ok(status);
            }
            if start.elapsed() > deadline {
                self.kill();
                return Err(Error::NoExit(deadline));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What it printed on stdout after its startup lines, up to its exit.
    pub fn rest_of_stdout(&self) -> Vec<String> {
        match self.lines.lock() {
            Ok(lines) => lines.iter().collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The processes it started (a wrapper's server, ...), children first.
    pub fn descendants(&self) -> Vec<u32> {
        let mut found = Vec::new();
        let mut queue = vec![self.child.id()];
        while let Some(pid) = queue.pop() {
            for child in children(pid) {
                found.push(child);
                queue.push(child);
            }
        }
        found
    }

    /// SIGKILLs it and every process it started, and waits for its exit.
    pub fn kill(&mut self) {
        let descendants = self.descendants();
        let _ = self.child.kill();
        for pid in descendants {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let _ = self.child.wait();
    }

    fn startup_line(&mut self, parse: fn(&str) -> Option<&str>) -> Result<String, Error> {
        let next = match self.lines.get_mut() {
            Ok(lines) => lines.recv_timeout(START_TIMEOUT),
            Err(_) => Err(RecvTimeoutError::Disconnected),
        };
        let line = match next {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                return Err(self.no_start(format!("no address within {START_TIMEOUT:?}")));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(self.no_start("exited before printing its address".into()));
            }
        };
        match parse(&line) {
            Some(url) => Ok(url.to_owned()),
            None => Err(self.no_start(format!("unexpected output {line:?}"))),
        }
    }

    fn no_start(&mut self, reason: String) -> Error {
        self.kill();
        Error::NoStart {
            reason,
            log: self.log_text(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads the child's stdout on a thread, one line per message, until EOF.
fn stdout_lines(child: &mut Child) -> Receiver<String> {
    let (tx, rx) = channel();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    rx
}

/// A process's children, from `/proc/<pid>/task/*/children`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// A command line as one string of single-quoted shell words.
pub fn shell_words(argv: &[OsString]) -> String {
    argv.iter()
        .map(|a| format!("'{}'", a.to_string_lossy().replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
