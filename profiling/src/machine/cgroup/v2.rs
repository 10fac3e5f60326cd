//! cgroup v2: where the rig may create the run's group, and creating it.
//!
//! v2's no-internal-process rule: a cgroup that holds processes cannot hand
//! a controller down (writing `+memory` to its `cgroup.subtree_control`
//! fails with EBUSY); only the hierarchy's root is exempt. A CI runner's
//! step runs in `/system.slice/<runner>.service` with the runner's own
//! processes, a laptop's shell in a session scope: neither can be a parent.
//! So the rig never enables a controller in a cgroup it merely sits in:
//!
//! - as root, the run's group is `<root>/sharerig/<run>`, with `+memory`
//!   enabled on the root and on `sharerig` (the runner's cgroup is left alone);
//! - in a delegated subtree (a cgroup this user may write, such as a
//!   `systemd-run --user --scope -p Delegate=yes` scope), the rig first moves
//!   the subtree's processes (itself) into a leaf `<own>/rig`, then enables
//!   `+memory` on `<own>` and creates `<own>/sharerig/<run>`. Root falls back
//!   to this when the root cannot be used (a cgroup namespace's root that
//!   holds processes).
//!
//! Nothing else is moved or changed. See docs/where-it-runs.md.

use std::io::ErrorKind;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use memstat::cgroup::{CGROUP_ROOT, Cgroup, Version};
use nix::unistd::{AccessFlags, access};

use super::{PARENT, io_err, write};
use crate::machine::{MachineError, is_root};

/// The leaf the rig moves itself into inside a delegated subtree.
pub const LEAF: &str = "rig";
/// Set in the environment of a rig re-run under `systemd-run`, so it does not re-run again.
pub const REEXEC_ENV: &str = "SHARERIG_DELEGATED";
/// The line that gives a non-root user a delegated subtree for one command.
pub const SYSTEMD_RUN: &str = "systemd-run --user --scope -p Delegate=yes --";
/// [`SYSTEMD_RUN`]'s arguments, quiet.
const SYSTEMD_RUN_ARGS: [&str; 5] = ["--user", "--scope", "-p", "Delegate=yes", "--quiet"];
/// systemd's drop-in that hands the memory controller to user services
/// (needed where `user@.service` does not delegate it).
pub const USER_DELEGATE_FIX: &str = "sudo mkdir -p /etc/systemd/system/user@.service.d && \
printf '[Service]\\nDelegate=cpu cpuset io memory pids\\n' | \
sudo tee /etc/systemd/system/user@.service.d/delegate.conf && sudo systemctl daemon-reload";

/// Where runs' groups go, decided without changing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// As root: `<root>/sharerig/<run>`.
    Root { root: PathBuf, own: PathBuf },
    /// A delegated subtree: `<base>/sharerig/<run>`, the rig in `<base>/rig`.
    Delegated { base: PathBuf },
}

/// Why the rig cannot create a group here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not root and the rig's cgroup is not writable by this user.
    NotDelegated { own: PathBuf },
    /// A writable cgroup whose parent does not hand it the memory controller.
    NoMemory { base: PathBuf },
    /// `/sys/fs/cgroup` is mounted read-only (an unprivileged container).
    ReadOnly,
}

impl Refusal {
    /// The sentence a user reads, with what to run.
    pub fn explain(&self) -> String {
        match self {
            Refusal::NotDelegated { own } => format!(
                "cgroup v2: the rig's cgroup {} is not delegated to this user, so it cannot create \
                 a memory cgroup; run it in a delegated scope: `{SYSTEMD_RUN} rig run ...` (the rig \
                 does this itself when systemd-run works), or as root: `sudo rig run ...`",
                own.display()
            ),
            Refusal::NoMemory { base } => format!(
                "cgroup v2: the delegated cgroup {} has no memory controller (its parent does not \
                 hand it down); let systemd delegate it to user services: {USER_DELEGATE_FIX}, then \
                 log in again; or run the rig as root",
                base.display()
            ),
            Refusal::ReadOnly => format!(
                "cgroup v2: {CGROUP_ROOT} is mounted read-only (a container without its own cgroup \
                 rights?); run the rig on the host, in a privileged container, or use mode = \"none\""
            ),
        }
    }
}

impl From<Refusal> for MachineError {
    fn from(r: Refusal) -> Self {
        MachineError::Unsupported(r.explain())
    }
}

fn controllers(dir: &Path, file: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn has_memory(dir: &Path, file: &str) -> bool {
    controllers(dir, file).iter().any(|c| c == "memory")
}

fn writable(path: &Path) -> bool {
    access(path, AccessFlags::W_OK).is_ok()
}

/// This user may manage `dir`'s children: the directory and the files the
/// kernel's delegation model hands over (cgroup-v2.rst, "Delegation").
fn delegated(dir: &Path) -> bool {
    [
        dir.to_owned(),
        dir.join("cgroup.procs"),
        dir.join("cgroup.subtree_control"),
    ]
    .iter()
    .all(|p| writable(p))
}

fn read_only_mount() -> bool {
    matches!(
        access(Path::new(CGROUP_ROOT), AccessFlags::W_OK),
        Err(nix::errno::Errno::EROFS)
    )
}

/// Where this process would put a run's group on the v2 hierarchy `own` belongs to.
pub fn plan(own: &Cgroup) -> Result<Plan, Refusal> {
    if read_only_mount() {
        return Err(Refusal::ReadOnly);
    }
    if is_root() {
        return Ok(Plan::Root {
            root: PathBuf::from(CGROUP_ROOT),
            own: own.dir.clone(),
        });
    }
    let base = subtree_base(&own.dir);
    if !delegated(&base) {
        return Err(Refusal::NotDelegated {
            own: own.dir.clone(),
        });
    }
    if !has_memory(&base, "cgroup.controllers") {
        return Err(Refusal::NoMemory { base });
    }
    Ok(Plan::Delegated { base })
}

/// The subtree the rig manages from `own`: its parent when `own` is the
/// rig's leaf already (an earlier run of this process moved it there).
fn subtree_base(own: &Path) -> PathBuf {
    match own.parent() {
        Some(parent) if own.file_name().is_some_and(|n| n == LEAF) => parent.to_owned(),
        _ => own.to_owned(),
    }
}

/// A run's group, created; `note` says where and why, for `meta.json`.
pub struct Created {
    pub cgroup: Cgroup,
    pub note: String,
}

/// Creates `<parent>/sharerig/<run_id>` per [`plan`], with the limit and swap off.
pub fn create(own: &Cgroup, run_id: &str, limit: u64) -> Result<Created, MachineError> {
    let (parent, note) = match plan(own)? {
        Plan::Root { root, own } => match enable_from_root(&root) {
            Ok(parent) => (
                parent,
                format!(
                    "cgroup v2 as root: the run's group is under {}, not under the rig's own \
                     cgroup {} (a cgroup holding processes cannot hand a controller down)",
                    root.join(PARENT).display(),
                    own.display()
                ),
            ),
            // A cgroup namespace's root holding processes: do as a delegated subtree does.
            Err(e) if is_busy(&e) => {
                let base = subtree_base(&own);
                (
                    enable_in_subtree(&base)?,
                    format!(
                        "cgroup v2 as root: {CGROUP_ROOT} holds processes (a cgroup namespace); \
                         the rig moved its cgroup's processes into {} and creates its groups \
                         under {}",
                        base.join(LEAF).display(),
                        base.join(PARENT).display()
                    ),
                )
            }
            Err(e) => return Err(e),
        },
        Plan::Delegated { base } => (
            enable_in_subtree(&base)?,
            format!(
                "cgroup v2, delegated subtree {}: the rig runs in its leaf {} and creates its \
                 groups under {}",
                base.display(),
                base.join(LEAF).display(),
                base.join(PARENT).display()
            ),
        ),
    };
    let dir = parent.join(run_id);
    std::fs::create_dir(&dir).map_err(io_err("creating cgroup", &dir, None))?;
    let setup = || -> Result<String, MachineError> {
        write(&dir, "memory.max", &limit.to_string(), None)?;
        // No swap: what does not fit is OOM-killed, as on a small VM without swap.
        if dir.join("memory.swap.max").exists() {
            write(&dir, "memory.swap.max", "0", None)?;
            Ok("swap off: memory.swap.max = 0".into())
        } else {
            Ok("no memory.swap.max (no swap accounting): swap is not limited".into())
        }
    };
    let swap = setup().inspect_err(|_| {
        let _ = std::fs::remove_dir(&dir);
    })?;
    Ok(Created {
        cgroup: Cgroup {
            version: Version::V2,
            dir,
        },
        note: format!("{note}; {swap}"),
    })
}

fn is_busy(e: &MachineError) -> bool {
    matches!(e, MachineError::Io { source, .. }
        if source.raw_os_error() == Some(nix::errno::Errno::EBUSY as i32))
}

/// `+memory` on the root and `<root>/sharerig`; returns the latter.
fn enable_from_root(root: &Path) -> Result<PathBuf, MachineError> {
    enable_memory(root)?;
    let parent = root.join(PARENT);
    make_dir(&parent)?;
    enable_memory(&parent)?;
    Ok(parent)
}

/// Moves the subtree's processes into `<base>/rig`, then `+memory` on
/// `<base>` and `<base>/sharerig`; returns the latter.
fn enable_in_subtree(base: &Path) -> Result<PathBuf, MachineError> {
    let leaf = base.join(LEAF);
    make_dir(&leaf)?;
    move_all(base, &leaf)?;
    enable_memory(base)?;
    let parent = base.join(PARENT);
    make_dir(&parent)?;
    enable_memory(&parent)?;
    Ok(parent)
}

fn make_dir(dir: &Path) -> Result<(), MachineError> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => {
            Err(io_err("creating cgroup", dir, None)(e))
        }
        _ => Ok(()),
    }
}

fn enable_memory(dir: &Path) -> Result<(), MachineError> {
    if has_memory(dir, "cgroup.subtree_control") {
        return Ok(());
    }
    let hint = format!("{} holds processes or is not ours to change", dir.display());
    write(dir, "cgroup.subtree_control", "+memory", Some(hint))
}

/// Moves every process of `from` into `to` (a process forked meanwhile is
/// moved on the next pass); one that exits first is skipped.
fn move_all(from: &Path, to: &Path) -> Result<(), MachineError> {
    let procs = from.join("cgroup.procs");
    for _ in 0..10 {
        let text = std::fs::read_to_string(&procs).map_err(io_err("reading", &procs, None))?;
        let pids: Vec<&str> = text.split_whitespace().collect();
        if pids.is_empty() {
            return Ok(());
        }
        for pid in pids {
            match std::fs::write(to.join("cgroup.procs"), pid) {
                Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ESRCH as i32) => {}
                Err(e) => {
                    let hint = Some(format!(
                        "moving process {pid} out of {} into the rig's leaf",
                        from.display()
                    ));
                    return Err(io_err("writing", &to.join("cgroup.procs"), hint)(e));
                }
                Ok(()) => {}
            }
        }
    }
    Err(MachineError::Unsupported(format!(
        "processes keep appearing in {}; run the rig alone in its cgroup (`{SYSTEMD_RUN} rig ...`)",
        from.display()
    )))
}

/// As non-root on cgroup v2 without a delegated cgroup, runs this rig again
/// under [`SYSTEMD_RUN`] (replacing this process) when systemd-run works
/// here; else returns and the run says what to do. Does nothing elsewhere.
pub fn reexec_delegated() {
    if is_root() || std::env::var_os(REEXEC_ENV).is_some() {
        return;
    }
    let Ok(own) = Cgroup::of_process(None) else {
        return;
    };
    if own.version != Version::V2 || !matches!(plan(&own), Err(Refusal::NotDelegated { .. })) {
        return;
    }
    if !systemd_run_works() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    eprintln!("rig: not delegated a cgroup here; running again under `{SYSTEMD_RUN}`");
    let e = std::process::Command::new("systemd-run")
        .args(SYSTEMD_RUN_ARGS)
        .arg("--")
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(REEXEC_ENV, "1")
        .exec();
    eprintln!("rig: could not run systemd-run: {e}");
}

/// `systemd-run --user --scope` can start a delegated scope (a user manager runs).
pub fn systemd_run_works() -> bool {
    std::process::Command::new("systemd-run")
        .args(SYSTEMD_RUN_ARGS)
        .args(["--", "true"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
