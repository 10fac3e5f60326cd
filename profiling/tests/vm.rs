//! `vm` mode end to end: `rig run` boots a real qemu guest (KVM when usable,
//! else TCG) with the debug share-server inside, uploads through the
//! forwarded port, and the guest powers off when the rig stops the server.
//! Skipped, saying why, only when qemu is missing and cannot be installed.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{read_json, vm_host_tools_missing, workspace};
use std::path::PathBuf;

use profiling::run::{RunOptions, run};
use serde_json::Value;

/// The debug share-server, built if needed.
fn server_binary() -> PathBuf {
    profiling::target::build_debug(&workspace()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_scenario_boots_the_guest_samples_it_and_powers_it_off() {
    if let Some(why) = vm_host_tools_missing() {
        eprintln!("SKIPPED: vm mode needs qemu and the tools to build its guest: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("vm-tiny.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"
            name = "vm-tiny"
            [machine]
            mode = "vm"
            memory = "256MiB"
            cpus = 1
            disk = "256MiB"
            [server]
            binary = "{}"
            args = ["--gc-interval", "1h"]
            [sampling]
            interval = "200ms"
            [[phases]]
            name = "upload"
            pause_after = "1s"
            [phases.loadgen]
            scenario = "upload"
            users = 2
            iterations = 1
            size = "8MB"
            "#,
            server_binary().display()
        ),
    )
    .unwrap();

    let outcome = run(RunOptions {
        scenario,
        runs_dir: dir.path().join("runs"),
        workspace: workspace(),
        progress: false,
        heap_profiles: None,
        regression: None,
    })
    .await
    .unwrap();
    let run_dir = &outcome.run_dir;
    let console = std::fs::read_to_string(run_dir.join("console.log")).unwrap();
    assert!(
        outcome.passed,
        "{outcome:#?}\nconsole:\n{console}\nserver log:\n{}",
        std::fs::read_to_string(run_dir.join("server.log")).unwrap_or_default()
    );
    assert_eq!(outcome.oom_kills, 0);
    assert_eq!(outcome.phases[0].summary.as_ref().unwrap().uploads.len(), 2);

    // The guest, as meta.json records it.
    let meta = read_json(&run_dir.join("meta.json"));
    let vm = &meta["machine"]["vm"];
    assert_eq!(meta["machine"]["mode"], "vm");
    assert!(matches!(vm["accel"].as_str(), Some("kvm" | "tcg")), "{vm}");
    assert_eq!(vm["timings_comparable"], vm["accel"] == "kvm");
    let mem_total = vm["guest_mem_total_bytes"].as_u64().unwrap();
    // The kernel keeps part of the guest's RAM for itself.
    assert!(mem_total < 256 << 20, "MemTotal {mem_total}");
    assert_eq!(meta["machine"]["limit_bytes"].as_u64(), Some(mem_total));

    // Samples in the cgroup runs' schema, from inside the guest.
    let samples: Vec<Value> = std::fs::read_to_string(run_dir.join("samples.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let during: Vec<&Value> = samples.iter().filter(|s| s["phase"] == "upload").collect();
    assert!(!during.is_empty(), "no sample during the upload");
    let full = during
        .iter()
        .find(|s| !s["machine"].is_null() && !s["process"].is_null() && !s["server"].is_null())
        .unwrap_or_else(|| panic!("no sample with machine, process and server: {during:#?}"));
    let machine = &full["machine"];
    assert_eq!(machine["limit_bytes"].as_u64(), Some(mem_total));
    let usage = machine["usage_bytes"].as_u64().unwrap();
    assert!(
        usage > 0 && usage <= mem_total,
        "usage {usage} of {mem_total}"
    );
    assert!(machine["oom_kills"].as_u64().is_some());
    assert!(full["process"]["vm_rss_bytes"].as_u64().unwrap() > 0);
    // `@stats` crossed the wire whole: the typed view has what the reports read.
    let typed: run_format::Sample = serde_json::from_value((*full).clone()).unwrap();
    let stats = typed.server.unwrap();
    assert!(stats.allocator.resident_bytes.is_some(), "{stats:?}");
    assert!(stats.app.bytes_received_total.is_some(), "{stats:?}");
    assert_eq!(
        full["system"]["mem_total_bytes"].as_u64(),
        Some(mem_total),
        "system is the guest's meminfo"
    );
    // The database lives on the guest's disk and holds the uploads (in the
    // database file or still in its WAL).
    let stored = samples
        .iter()
        .filter_map(|s| Some(s["files"]["db_bytes"].as_u64()? + s["files"]["wal_bytes"].as_u64()?))
        .max()
        .unwrap();
    assert!(
        stored >= 2 * 8_000_000,
        "database + WAL {stored} bytes after 16 MB uploaded"
    );

    // A clean end: the server stopped by the rig, the guest powered off, qemu gone.
    let exit = outcome.server_exit.as_ref().unwrap();
    assert!(exit.stopped_by_rig);
    assert_eq!((exit.code, exit.signal), (Some(0), None), "{exit:?}");
    assert_eq!(vm["shutdown"], "the guest powered off", "{console}");
    assert!(console.contains("reboot: Power down"), "{console}");
    let qemu_pid = vm["qemu_pid"].as_u64().unwrap() as i32;
    assert_eq!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(qemu_pid), None),
        Err(nix::errno::Errno::ESRCH),
        "qemu {qemu_pid} still exists"
    );

    // `rig report` reads the run like any other.
    let summary = reports::report(run_dir).unwrap();
    assert_ne!(summary.verdict, reports::Verdict::Crash);
    assert_eq!(summary.run.mode, "vm");
    // The report says how comparable its timings are.
    assert_eq!(summary.run.accel.as_deref(), vm["accel"].as_str());
    let md = std::fs::read_to_string(run_dir.join("summary.md")).unwrap();
    assert!(md.contains("Ran in a qemu guest"), "{md}");
}
