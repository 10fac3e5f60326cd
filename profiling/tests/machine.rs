//! The machine layer against the real kernel: an OOM kill inside a small
//! cgroup is seen (with its time), the sampler agrees with /proc, and the
//! cgroup is gone after a crash. Creating cgroups needs root: without root or
//! a memory cgroup hierarchy these tests say so and return (CI runs as root).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::time::{Duration, Instant};

use loadgen::ByteSize as Size;
use profiling::machine::{self, Setup};
use profiling::sampler::{Phase, Sampler, Target};
use profiling::scenario::{MachineSpec, Mode};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Why the cgroup tests cannot run here, if they cannot.
fn cgroup_unavailable() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("not root".into());
    }
    memstat::cgroup::Cgroup::of_process(None)
        .err()
        .map(|e| e.to_string())
}

macro_rules! require_cgroups {
    () => {
        if let Some(why) = cgroup_unavailable() {
            eprintln!("SKIPPED: creating memory cgroups needs root and a cgroup hierarchy: {why}");
            return;
        }
    };
}

fn spec(memory: u64) -> MachineSpec {
    MachineSpec {
        mode: Mode::Cgroup,
        memory: Size(memory),
        ..MachineSpec::default()
    }
}

fn run_id(name: &str) -> String {
    format!("test-{name}-{}", std::process::id())
}

#[tokio::test]
async fn an_oom_kill_in_a_64_mib_cgroup_is_reported_with_its_time() {
    require_cgroups!();
    let scratch = tempfile::tempdir().unwrap();
    let mut machine = machine::open_local(
        &spec(64 << 20),
        &Setup::local(&run_id("oom"), scratch.path()),
    )
    .unwrap();
    let cgroup_dir = machine.info().cgroup_path.unwrap();
    let before = machine.oom_kills().unwrap();

    let started = Instant::now();
    let mut child = machine
        .command(Path::new(env!("CARGO_BIN_EXE_memhog")))
        .spawn()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .unwrap()
        .unwrap();
    let died_after = started.elapsed();

    let end = profiling::target::Exit::observe(status, false);
    let kills = machine.oom_kills().unwrap() - before;
    eprintln!(
        "memhog {} after {:.2} s; OOM kills {kills}",
        end.describe(),
        died_after.as_secs_f64()
    );
    assert_eq!(end.signal, Some(9), "killed by SIGKILL");
    assert_eq!(kills, 1, "the cgroup counted one OOM kill");
    assert!(died_after < Duration::from_secs(30));

    machine.teardown().unwrap();
    assert!(
        !cgroup_dir.exists(),
        "the cgroup is removed after the crash"
    );
}

#[tokio::test]
async fn the_cgroup_is_removed_even_with_a_process_inside() {
    require_cgroups!();
    let scratch = tempfile::tempdir().unwrap();
    let mut machine = machine::open_local(
        &spec(64 << 20),
        &Setup::local(&run_id("busy"), scratch.path()),
    )
    .unwrap();
    let dir = machine.info().cgroup_path.unwrap();
    let mut child = machine
        .command(Path::new(env!("CARGO_BIN_EXE_memhog")))
        .arg("8")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .await
        .unwrap();
    assert_eq!(line.trim(), "holding 8 MiB");
    machine.teardown().unwrap();
    assert!(!dir.exists());
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success(), "the process left inside was killed");
}

#[tokio::test]
async fn sampler_figures_agree_with_proc() {
    let scratch = tempfile::tempdir().unwrap();
    // In a cgroup when possible (then the cgroup figures are checked too).
    let mode = if cgroup_unavailable().is_none() {
        Mode::Cgroup
    } else {
        Mode::None
    };
    let mut machine = machine::open_local(
        &MachineSpec {
            mode,
            ..spec(128 << 20)
        },
        &Setup::local(&run_id("agree"), scratch.path()),
    )
    .unwrap();
    let mut child = machine
        .command(Path::new(env!("CARGO_BIN_EXE_memhog")))
        .arg("24")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .await
        .unwrap();
    let pid = child.id().unwrap();

    let sampler = Sampler {
        probe: machine.probe(),
        target: Target {
            pid,
            debug_url: "http://127.0.0.1:9".into(), // nothing listens: `server` is null
            db: scratch.path().join("none.db"),
        },
        interval: Duration::from_millis(500),
        started: Instant::now(),
        phase: Phase::default(),
    };
    let http = reqwest::Client::new();
    let sample = sampler.take(&http).await;
    let direct = memstat::process::read(Some(pid as i32)).unwrap();

    let process = sample.process.unwrap();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    assert!(
        (mib(process.memory.vm_rss_bytes) - mib(direct.vm_rss_bytes)).abs() < 1.0,
        "sampled RSS {} MiB, /proc {} MiB",
        mib(process.memory.vm_rss_bytes),
        mib(direct.vm_rss_bytes)
    );
    assert!(
        mib(process.memory.rss_anon_bytes) >= 24.0,
        "memhog holds 24 MiB of anon memory"
    );
    assert!(process.pss_bytes.unwrap() > 0);
    assert!(
        sample.server.is_none(),
        "a silent server is null, not zeros"
    );
    assert!(sample.files.is_none());

    let machine_memory = sample.machine.unwrap();
    if let Some(dir) = machine.info().cgroup_path {
        let file = if dir.join("memory.usage_in_bytes").exists() {
            "memory.usage_in_bytes"
        } else {
            "memory.current"
        };
        let usage: u64 = std::fs::read_to_string(dir.join(file))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            (mib(machine_memory.usage_bytes) - mib(usage)).abs() < 2.0,
            "sampled cgroup usage {} MiB, file {} MiB",
            mib(machine_memory.usage_bytes),
            mib(usage)
        );
        assert_eq!(machine_memory.limit_bytes, Some(128 << 20));
        assert!(mib(machine_memory.anon_bytes) >= 24.0);
    } else {
        eprintln!("no cgroup here: checked the process figures only");
        assert_eq!(machine_memory.source, "meminfo");
    }
    child.kill().await.unwrap();
    machine.teardown().unwrap();
}
