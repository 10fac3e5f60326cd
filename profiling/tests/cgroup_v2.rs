//! The rig on cgroup v2, proven on a cgroup v1 host: boots the vm mode's
//! kernel with `scripts/vm/cgroup2-init`, which mounts cgroup2 in a CI
//! runner's layout and runs this build's `rig` and debug `share-server`:
//!
//! - as root from `/system.slice/runner.service` (a non-root cgroup holding
//!   processes, memory enabled down to `/system.slice`): `rig run`, `rig gate
//!   --replicates 1`, and a too-small scenario OOM-killed, seen in `memory.events`;
//! - the same as uid 1000 from a delegated subtree (`rig.scope`, the user's);
//! - as uid 1000 from the runner's cgroup: refused, saying what to run.
//!
//! After each run the run's cgroup is gone. Skipped, saying why, only when
//! qemu and the guest's tools are missing and cannot be installed.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{read_json, vm_assets, vm_host_tools_missing, workspace};
use profiling::machine::vm::qemu;
use serde_json::Value;

/// The whole guest (boot, ten rig commands, power-off) under TCG here takes
/// about a minute; a loaded CI host gets ten times that.
const GUEST_TIMEOUT: Duration = Duration::from_secs(600);
const GUEST_MEMORY: &str = "1536M";
const MIB: u64 = 1 << 20;

const SMALL: &str = r#"
name = "small"
description = "two 4 MB uploads and their verified downloads under 64 MiB"
[machine]
mode = "cgroup"
memory = "64MiB"
drop_caches = true
[server]
binary = "/bin/share-server"
[sampling]
interval = "200ms"
[[phases]]
name = "upload"
pause_after = "1s"
[phases.loadgen]
scenario = "upload"
users = 2
iterations = 1
size = "4MB"
[[phases]]
name = "download"
pause_after = "1s"
[phases.loadgen]
scenario = "download"
users = 2
iterations = 1
ranges-per-download = 2
"#;

const GATE_BUDGETS: &str = r#"
[budgets]
peak_anon = "48MiB"
peak_rss = "60MiB"
"#;

/// The debug server holds ~12 MiB of anon memory once up: 14 MiB lets it
/// start and kills it in the uploads.
const TOO_SMALL: &str = r#"
name = "too-small"
description = "three 64 MB uploads under 14 MiB: the server is OOM-killed"
[machine]
mode = "cgroup"
memory = "14MiB"
[server]
binary = "/bin/share-server"
[sampling]
interval = "50ms"
[[phases]]
name = "upload"
pause_after = "1s"
[phases.loadgen]
scenario = "upload"
users = 3
iterations = 1
size = "64MB"
"#;

/// Runs `cmd`, panics with its stderr unless it succeeds; returns stdout.
fn output(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Boots the guest on `disk` and waits for it to power off.
fn boot(assets: &Path, disk: &Path, console: &Path) {
    let (accel, why) = qemu::choose_accel();
    eprintln!(
        "cgroup v2 test: booting the guest ({}: {why})",
        accel.as_str()
    );
    let p = |path: PathBuf| path.display().to_string();
    let mut cmd = Command::new(qemu::QEMU);
    cmd.args(["-accel", accel.as_str(), "-m", GUEST_MEMORY, "-smp", "2"])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .args(["-kernel", &p(assets.join("vmlinuz"))])
        .args(["-initrd", &p(assets.join("initramfs.cpio.gz"))])
        .args(["-append", "console=ttyS0 panic=-1 loglevel=5"])
        .args(["-serial", &format!("file:{}", console.display())])
        .args([
            "-drive",
            &format!("file={},if=virtio,format=raw", disk.display()),
        ])
        .stdin(Stdio::null());
    if accel == qemu::Accel::Kvm {
        cmd.args(["-cpu", "host"]);
    }
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > GUEST_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the guest did not power off within {GUEST_TIMEOUT:?}; console:\n{}",
                std::fs::read_to_string(console).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = std::fs::read_to_string(console).unwrap_or_default();
    assert!(status.success(), "qemu: {status}; console:\n{log}");
    assert!(log.contains("cgroup2-init: done"), "console:\n{log}");
    eprintln!(
        "cgroup v2 test: the guest ran for {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// One place's output directory, as the guest left it.
struct Place {
    name: &'static str,
    dir: PathBuf,
}

impl Place {
    fn text(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file))
            .unwrap_or_else(|e| panic!("{}/{file}: {e}", self.name))
    }

    /// A step's exit status; its output is shown when it is not `want`.
    fn assert_rc(&self, step: &str, want: i32) {
        let rc: i32 = self.text(&format!("{step}.rc")).trim().parse().unwrap();
        assert_eq!(
            rc,
            want,
            "{}: rig {step} exited {rc}:\n{}",
            self.name,
            self.text(&format!("{step}.txt"))
        );
    }

    /// The run directory of `scenario` (the gate's replicate for `small-gate`).
    fn run_dir(&self, scenario: &str) -> PathBuf {
        let runs = self.dir.join("runs");
        walk(&runs)
            .into_iter()
            .find(|p| {
                p.join("meta.json").is_file()
                    && p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .strip_prefix(&format!("{scenario}-"))
                        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
            })
            .unwrap_or_else(|| panic!("{}: no run of {scenario} in {}", self.name, runs.display()))
    }
}

/// Every directory under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(entry.path());
            out.extend(walk(&entry.path()));
        }
    }
    out
}

fn samples(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("samples.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A run's cgroup: where the rig put it, and that it is gone after the step.
fn assert_cgroup(place: &Place, run: &Path, step: &str, parent: &str) {
    let meta = read_json(&run.join("meta.json"));
    let machine = &meta["machine"];
    assert_eq!(machine["memory_source"], "cgroup-v2", "{machine}");
    let path = machine["cgroup_path"].as_str().unwrap();
    assert_eq!(
        Path::new(path).parent(),
        Some(Path::new(parent)),
        "{}: the run's cgroup {path}",
        place.name
    );
    let notes = machine["notes"].to_string();
    assert!(notes.contains("memory.swap.max = 0"), "{notes}");
    let after = place.text(&format!("{step}.cgroups"));
    assert!(
        !after.lines().any(|l| l == path),
        "{}: {path} is left after rig {step}:\n{after}",
        place.name
    );
}

/// A healthy small run: passed, with v2's own figures in its samples.
fn assert_small_run(place: &Place, parent: &str) {
    place.assert_rc("run", 0);
    let run = place.run_dir("small");
    assert_cgroup(place, &run, "run", parent);
    assert_eq!(read_json(&run.join("summary.json"))["verdict"], "healthy");
    let outcome = read_json(&run.join("outcome.json"));
    assert_eq!(outcome["oom_kills"], 0, "{outcome}");
    let samples = samples(&run);
    let during: Vec<&Value> = samples
        .iter()
        .filter(|s| s["phase"] == "upload" && !s["machine"].is_null())
        .collect();
    assert!(
        !during.is_empty(),
        "{}: no sample in the uploads",
        place.name
    );
    for s in &during {
        let m = &s["machine"];
        assert_eq!(m["source"], "cgroup-v2", "{m}");
        assert_eq!(m["limit_bytes"].as_u64(), Some(64 * MIB), "{m}");
        // memory.peak (Linux 5.19+), memory.events, memory.stat, memory.pressure.
        let peak = m["peak_bytes"].as_u64().unwrap();
        assert!(
            peak >= m["usage_bytes"].as_u64().unwrap() && peak <= 64 * MIB,
            "{m}"
        );
        assert_eq!(m["oom_kills"], 0, "{m}");
        for key in [
            "limit_hits",
            "high_events",
            "shmem_bytes",
            "dirty_bytes",
            "writeback_bytes",
        ] {
            assert!(m[key].is_u64(), "{key} in {m}");
        }
        assert!(m["pressure"]["some_avg10"].is_f64(), "no PSI in {m}");
    }
    assert!(
        during
            .iter()
            .any(|s| s["machine"]["anon_bytes"].as_u64() > Some(MIB)
                && s["machine"]["file_bytes"].as_u64() > Some(0)),
        "{}: anon and file from memory.stat stay 0",
        place.name
    );
}

fn assert_gate(place: &Place, parent: &str) {
    place.assert_rc("gate", 0);
    assert!(
        place.text("gate.txt").contains("PASS"),
        "{}",
        place.text("gate.txt")
    );
    let run = place.run_dir("small-gate");
    assert_cgroup(place, &run, "gate", parent);
}

/// The too-small run: the server OOM-killed, counted from memory.events.
fn assert_oom(place: &Place, parent: &str) {
    place.assert_rc("oom", 1);
    let run = place.run_dir("too-small");
    assert_cgroup(place, &run, "oom", parent);
    let outcome = read_json(&run.join("outcome.json"));
    assert_eq!(outcome["oom_kills"], 1, "{outcome}");
    assert_eq!(outcome["server_exit"]["signal"], 9, "{outcome}");
    assert_eq!(read_json(&run.join("summary.json"))["verdict"], "crash");
    let last = samples(&run)
        .into_iter()
        .rev()
        .find(|s| !s["machine"].is_null())
        .unwrap();
    let m = &last["machine"];
    assert_eq!(
        (m["source"].as_str(), m["oom_kills"].as_u64()),
        (Some("cgroup-v2"), Some(1)),
        "{m}"
    );
    assert!(m["limit_hits"].as_u64() > Some(0), "memory.events max: {m}");
    assert_eq!(
        m["peak_bytes"].as_u64().map(|p| p > 12 * MIB),
        Some(true),
        "{m}"
    );
}

#[test]
fn the_rig_runs_on_cgroup_v2_as_root_in_a_runner_cgroup_and_delegated_as_a_user() {
    if let Some(why) = vm_host_tools_missing() {
        eprintln!("SKIPPED: the cgroup v2 guest needs qemu and the tools to build it: {why}");
        return;
    }
    let started = Instant::now();
    let server = profiling::target::build_debug(&workspace()).unwrap();
    let rig = env!("CARGO_BIN_EXE_rig");
    let assets = output(
        vm_assets()
            .arg("initramfs")
            .arg(workspace().join("scripts/vm/cgroup2-init"))
            .arg(format!("rig={rig}"))
            .arg(format!("share-server={}", server.display())),
    );
    let assets = PathBuf::from(assets.trim());

    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("scenarios")).unwrap();
    let scenarios = work.join("scenarios");
    std::fs::write(scenarios.join("small.toml"), SMALL).unwrap();
    let gate = SMALL.replace("name = \"small\"", "name = \"small-gate\"") + GATE_BUDGETS;
    std::fs::write(scenarios.join("small-gate.toml"), gate).unwrap();
    std::fs::write(scenarios.join("too-small.toml"), TOO_SMALL).unwrap();
    let disk = dir.path().join("work.img");
    output(vm_assets().arg("disk").arg(&disk).arg("1G").arg(&work));

    let console = dir.path().join("console.log");
    boot(&assets, &disk, &console);
    let out = dir.path().join("out");
    output(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("rdump /out {}", dir.path().display()))
            .arg(&disk),
    );
    let place = |name| Place {
        name,
        dir: out.join(name),
    };

    // As root from the runner's service cgroup: groups under the root's sharerig/.
    let runner = place("runner");
    runner.assert_rc("doctor", 0);
    let doctor = runner.text("doctor.txt");
    eprintln!("rig doctor, root in /system.slice/runner.service:\n{doctor}");
    assert!(
        doctor.contains("ok       cgroup       v2, the rig's cgroup /sys/fs/cgroup/system.slice/runner.service; as root the runs' groups go to /sys/fs/cgroup/sharerig/<run>"),
        "{doctor}"
    );
    let root_parent = "/sys/fs/cgroup/sharerig";
    assert_small_run(&runner, root_parent);
    assert_gate(&runner, root_parent);
    assert_oom(&runner, root_parent);

    // As uid 1000 in a delegated subtree: the rig moved into its leaf, groups beside it.
    let delegated = place("delegated");
    let scope = "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/rig.scope";
    delegated.assert_rc("doctor", 0);
    let doctor = delegated.text("doctor.txt");
    eprintln!("rig doctor, uid 1000 in a delegated scope:\n{doctor}");
    assert!(
        doctor.contains(&format!(
            "ok       cgroup       v2, the rig's cgroup {scope}; delegated subtree"
        )),
        "{doctor}"
    );
    let parent = format!("{scope}/sharerig");
    assert_small_run(&delegated, &parent);
    assert_gate(&delegated, &parent);
    assert_oom(&delegated, &parent);
    let tree = delegated.text("oom.cgroups");
    assert!(
        tree.lines().any(|l| l == format!("{scope}/rig")),
        "no leaf:\n{tree}"
    );
    let notes =
        read_json(&delegated.run_dir("small").join("meta.json"))["machine"]["notes"].to_string();
    assert!(notes.contains("drop_caches skipped: not root"), "{notes}");

    // As uid 1000 in the runner's cgroup: no delegation, no systemd here.
    let refused = place("refused");
    refused.assert_rc("run", 2);
    let said = refused.text("run.txt");
    assert!(
        said.contains("is not delegated to this user")
            && said.contains("systemd-run --user --scope -p Delegate=yes -- rig run")
            && said.contains("sudo rig run")
            && said.contains("`rig doctor` says"),
        "{said}"
    );
    let doctor = refused.text("doctor.txt");
    eprintln!("rig doctor, uid 1000 in /system.slice/runner.service:\n{doctor}");
    assert!(doctor.contains("MISSING  cgroup"), "{doctor}");

    // Nothing of any run is left in the hierarchy.
    let after = std::fs::read_to_string(out.join("cgroups-after.txt")).unwrap();
    let left: Vec<&str> = after
        .lines()
        .filter(|l| {
            l.starts_with(&format!("{root_parent}/")) || l.starts_with(&format!("{parent}/"))
        })
        .collect();
    assert!(left.is_empty(), "cgroups left: {left:?}");
    eprintln!(
        "cgroup v2 test: {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
}
