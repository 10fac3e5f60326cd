//! `rig doctor`: what this machine gives the rig (cgroup version and where
//! the rig may create groups, root or delegation, tmpfs, drop_caches, qemu
//! and KVM, and the tools some tests and scripts use), and what to run to
//! get the rest. It only looks; it runs `scripts/vm-assets.sh check` and,
//! as a user on cgroup v2 without delegation, two throwaway `systemd-run
//! --user` scopes (does one start, does it get the memory controller?).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use memstat::cgroup::{CGROUP_ROOT, Cgroup, Version};

use crate::machine::cgroup::v2::{self, Plan, Refusal, SYSTEMD_RUN, USER_DELEGATE_FIX};
use crate::machine::is_root;
use crate::machine::vm::{APT_LINE, qemu};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The rig has it.
    Ok,
    /// Missing; `fix` says what to run.
    Missing,
    /// Worth knowing, nothing to fix (or nothing the rig needs).
    Note,
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub what: &'static str,
    pub state: State,
    pub detail: String,
    pub fix: Option<String>,
}

fn finding(what: &'static str, state: State, detail: impl Into<String>) -> Finding {
    Finding {
        what,
        state,
        detail: detail.into(),
        fix: None,
    }
}

impl Finding {
    fn fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = Some(fix.into());
        self
    }
}

/// Everything `rig doctor` looks at; `workspace` holds `scripts/vm-assets.sh`.
pub fn examine(workspace: &Path) -> Vec<Finding> {
    vec![
        host(),
        cgroup(),
        user(),
        tmpfs(),
        drop_caches(),
        qemu_finding(),
        kvm(),
        vm_tools(workspace),
        tool(
            "chromium",
            &["chromium", "chromium-browser", "google-chrome"],
            "renders report.html in the reports test and drives the web UI test",
            "apt-get install -y chromium chromium-driver",
        ),
        tool(
            "promtool",
            &["promtool"],
            "checks /metrics in the server's tests",
            "apt-get install -y prometheus",
        ),
        pprof(),
    ]
}

/// The findings as text: one line each, then the commands for what is missing.
pub fn render(findings: &[Finding]) -> String {
    let mut out = String::from("rig doctor: what this machine gives the rig\n");
    for f in findings {
        let state = match f.state {
            State::Ok => "ok",
            State::Missing => "MISSING",
            State::Note => "note",
        };
        let _ = writeln!(out, "{state:<8} {:<12} {}", f.what, f.detail);
    }
    let mut fixes: Vec<&str> = Vec::new();
    for fix in findings.iter().filter_map(|f| f.fix.as_deref()) {
        if !fixes.contains(&fix) {
            fixes.push(fix);
        }
    }
    if fixes.is_empty() {
        out.push_str("nothing missing\n");
    } else {
        out.push_str("to get the rest:\n");
        for fix in fixes {
            let _ = writeln!(out, "  {fix}");
        }
    }
    out
}

fn host() -> Finding {
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "?".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let ram = memstat::system::read()
        .map(|m| {
            format!(
                "{:.1} GiB RAM",
                m.mem_total_bytes as f64 / (1u64 << 30) as f64
            )
        })
        .unwrap_or_else(|e| format!("RAM unknown ({e})"));
    finding(
        "host",
        State::Note,
        format!("Linux {kernel}, {cpus} CPUs, {ram}"),
    )
}

fn cgroup() -> Finding {
    let own = match Cgroup::of_process(None) {
        Ok(own) => own,
        Err(e) => {
            return finding("cgroup", State::Missing, format!("none: {e}")).fix(format!(
                "mount -t cgroup2 none {CGROUP_ROOT}   # or use mode = \"vm\" or \"none\""
            ));
        }
    };
    match own.version {
        Version::V1 => {
            let dir = Path::new(CGROUP_ROOT).join("memory/sharerig/<run>");
            let detail = format!(
                "v1, the rig's cgroup {}; runs' groups go to {}",
                own.dir.display(),
                dir.display()
            );
            if is_root() {
                finding("cgroup", State::Ok, format!("{detail} (root)"))
            } else {
                finding(
                    "cgroup",
                    State::Missing,
                    format!("{detail}, which needs root"),
                )
                .fix("sudo rig run ...   # v1 has no delegation to users")
            }
        }
        Version::V2 => cgroup_v2(&own),
    }
}

fn cgroup_v2(own: &Cgroup) -> Finding {
    let mine = format!("v2, the rig's cgroup {}", own.dir.display());
    match v2::plan(own) {
        Ok(Plan::Root { root, .. }) => {
            if !controllers(&root).contains(&"memory".to_owned()) {
                return finding(
                    "cgroup",
                    State::Missing,
                    format!(
                        "{mine}; the kernel offers no memory controller at {}",
                        root.display()
                    ),
                )
                .fix("boot without cgroup_disable=memory (a kernel with CONFIG_MEMCG)");
            }
            finding(
                "cgroup",
                State::Ok,
                format!(
                    "{mine}; as root the runs' groups go to {}/sharerig/<run> (+memory enabled on the way)",
                    root.display()
                ),
            )
        }
        Ok(Plan::Delegated { base }) => finding(
            "cgroup",
            State::Ok,
            format!(
                "{mine}; delegated subtree {}: the rig moves itself into its {}/ and creates sharerig/<run> there",
                base.display(),
                v2::LEAF,
            ),
        ),
        Err(Refusal::NotDelegated { .. }) => not_delegated(&mine),
        Err(refusal) => finding(
            "cgroup",
            State::Missing,
            format!("{mine}; {}", refusal.explain()),
        )
        .fix(match refusal {
            Refusal::NoMemory { .. } => USER_DELEGATE_FIX.to_owned(),
            _ => "sudo rig run ...".to_owned(),
        }),
    }
}

/// Not root, not delegated: whether `systemd-run --user` gives a scope with memory.
fn not_delegated(mine: &str) -> Finding {
    if !v2::systemd_run_works() {
        return finding(
            "cgroup",
            State::Missing,
            format!("{mine}, not delegated to this user, and `systemd-run --user --scope` does not work here"),
        )
        .fix(format!(
            "sudo rig run ...   # or in a user session with systemd: {SYSTEMD_RUN} rig run ..."
        ));
    }
    let scope = scope_controllers();
    if scope.iter().any(|c| c == "memory") {
        finding(
            "cgroup",
            State::Ok,
            format!(
                "{mine}, not delegated; `rig run` and `rig gate` run themselves again under \
                 `{SYSTEMD_RUN}` (a scope there gets: {})",
                scope.join(" ")
            ),
        )
    } else {
        finding(
            "cgroup",
            State::Missing,
            format!(
                "{mine}, not delegated; a `systemd-run --user` scope gets no memory controller \
                 (it gets: {})",
                scope.join(" ")
            ),
        )
        .fix(format!("{USER_DELEGATE_FIX}   # then log in again"))
    }
}

/// The controllers a `systemd-run --user --scope -p Delegate=yes` scope gets.
fn scope_controllers() -> Vec<String> {
    let script =
        format!("cat {CGROUP_ROOT}$(sed -n 's/^0:://p' /proc/self/cgroup)/cgroup.controllers");
    std::process::Command::new("systemd-run")
        .args(["--user", "--scope", "-p", "Delegate=yes", "--quiet", "--"])
        .args(["sh", "-c", &script])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn controllers(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("cgroup.controllers"))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn user() -> Finding {
    let uid = nix::unistd::Uid::effective();
    if uid.is_root() {
        finding("root", State::Ok, "running as root")
    } else {
        finding(
            "root",
            State::Note,
            format!(
                "not root (uid {uid}): cgroup v1, tmpfs and drop_caches need root; v2 works delegated"
            ),
        )
    }
}

fn tmpfs() -> Finding {
    match (is_root(), on_path(&["mount"])) {
        (true, Some(_)) => finding(
            "tmpfs",
            State::Ok,
            "machine.tmpfs can be mounted (root, mount)",
        ),
        (true, None) => finding("tmpfs", State::Missing, "no `mount` on the PATH")
            .fix("apt-get install -y util-linux"),
        (false, _) => finding(
            "tmpfs",
            State::Missing,
            "machine.tmpfs needs root to mount; scenarios with it stop",
        )
        .fix("sudo rig run ...   # or remove machine.tmpfs from the scenario"),
    }
}

fn drop_caches() -> Finding {
    let file = Path::new("/proc/sys/vm/drop_caches");
    if nix::unistd::access(file, nix::unistd::AccessFlags::W_OK).is_ok() {
        finding(
            "drop_caches",
            State::Ok,
            "runs can start with a cold page cache",
        )
    } else {
        finding(
            "drop_caches",
            State::Note,
            "not writable (root only): runs skip it and say so in meta.json",
        )
    }
}

fn qemu_finding() -> Finding {
    match qemu::find() {
        Ok(path) => finding(
            "qemu",
            State::Ok,
            format!("{} (mode = \"vm\")", path.display()),
        ),
        Err(_) => finding(
            "qemu",
            State::Missing,
            "no qemu-system-x86_64: mode = \"vm\" cannot run",
        )
        .fix(APT_LINE),
    }
}

fn kvm() -> Finding {
    let (accel, why) = qemu::choose_accel();
    match accel {
        qemu::Accel::Kvm => finding("kvm", State::Ok, format!("guests run under KVM ({why})")),
        qemu::Accel::Tcg => finding(
            "kvm",
            State::Note,
            format!(
                "guests run under TCG, emulated and many times slower; memory figures hold, timings do not ({why})"
            ),
        ),
    }
}

fn vm_tools(workspace: &Path) -> Finding {
    let script = workspace.join("scripts/vm-assets.sh");
    if !script.is_file() {
        return finding(
            "vm assets",
            State::Note,
            format!("no {} to check the guest's tools with", script.display()),
        );
    }
    match std::process::Command::new("bash")
        .arg(&script)
        .arg("check")
        .output()
    {
        Ok(o) if o.status.success() => finding(
            "vm assets",
            State::Ok,
            "busybox-static, cpio, e2fsprogs, binutils, apt-get: the guest can be built",
        ),
        Ok(o) => finding(
            "vm assets",
            State::Missing,
            String::from_utf8_lossy(&o.stderr).trim().to_owned(),
        )
        .fix(APT_LINE),
        Err(e) => finding("vm assets", State::Missing, format!("running bash: {e}")).fix(APT_LINE),
    }
}

fn tool(what: &'static str, names: &[&str], used_for: &str, fix: &str) -> Finding {
    match on_path(names) {
        Some(path) => finding(what, State::Ok, format!("{} ({used_for})", path.display())),
        None => finding(
            what,
            State::Missing,
            format!("not on the PATH ({used_for})"),
        )
        .fix(fix),
    }
}

fn pprof() -> Finding {
    let used_for = "scripts/heap-profile.sh opens heap profiles with it";
    if let Some(go) = on_path(&["go"]) {
        return finding(
            "pprof",
            State::Ok,
            format!("{} tool pprof ({used_for})", go.display()),
        );
    }
    tool(
        "pprof",
        &["pprof"],
        used_for,
        "apt-get install -y golang-go   # Go's pprof: go tool pprof",
    )
}

/// The first of `names` found on the PATH.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}
