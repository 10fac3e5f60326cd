//! What the sampler costs: the rig's own CPU time while sampling a running
//! share-server at 10 Hz (every layer, including the server's /debug/stats),
//! as a share of one core. Target: ≤ 2%.
//!
//! `cargo bench -p profiling --bench sampler_overhead` (env `SAMPLER_BENCH_SECS`, default 20).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use profiling::machine;
use profiling::sampler::{Phase, Sampler, Target};
use profiling::scenario::{MachineSpec, Mode, ServerSpec};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const TARGET_PERCENT: f64 = 2.0;

/// CPU seconds (user + system) this process has used.
fn cpu_seconds() -> Result<f64> {
    let stat = procfs::process::Process::myself()?.stat()?;
    let ticks = procfs::ticks_per_second() as f64;
    Ok((stat.utime + stat.stime) as f64 / ticks)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let secs: u64 = std::env::var("SAMPLER_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let binary = profiling::target::build(&ServerSpec::default(), &workspace)
        .context("building share-server")?;
    let scratch = tempfile::tempdir()?;
    let spec = MachineSpec {
        mode: Mode::None,
        ..MachineSpec::default()
    };
    let machine = machine::open(&spec, &machine::Setup::local("bench", scratch.path()))?;
    let db = scratch.path().join("store.db");
    let server = machine
        .start_server(machine::Launch {
            binary: &binary,
            args: &[],
            db: &db,
            log: &scratch.path().join("server.log"),
            secret: "bench-secret",
            wrapper: &[],
        })
        .await?;

    // The idle cost of this process (the tokio runtime, nothing to do).
    let idle_cpu = cpu_seconds()?;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let idle = cpu_seconds()? - idle_cpu;

    let sampler = Sampler {
        probe: machine.probe(),
        target: Target {
            pid: server.pid,
            debug_url: server.debug_url.clone(),
            db,
        },
        interval: Duration::from_millis(100),
        started: Instant::now(),
        phase: Phase::default(),
    };
    let (latest, _keep) = watch::channel(None);
    let stop = CancellationToken::new();
    let out = scratch.path().join("samples.jsonl");
    let before = cpu_seconds()?;
    let wall = Instant::now();
    let task = {
        let (stop, out) = (stop.clone(), out.clone());
        tokio::spawn(async move { sampler.run(&out, latest, stop).await })
    };
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.cancel();
    let samples = task.await??.samples;
    let used = cpu_seconds()? - before;
    let elapsed = wall.elapsed().as_secs_f64();
    server.stop().await;

    let percent = (used - idle) / elapsed * 100.0;
    println!("sampler overhead, {secs} s at 10 Hz against a running share-server");
    println!(
        "  samples written       {samples} ({:.1} per second)",
        samples as f64 / elapsed
    );
    println!("  rig CPU while idle    {:.3} s", idle);
    println!("  rig CPU while sampling {:.3} s", used);
    println!(
        "  cost per sample       {:.3} ms of CPU",
        (used - idle) / samples.max(1) as f64 * 1e3
    );
    println!(
        "  overhead              {percent:.2}% of one core (target <= {TARGET_PERCENT}%): {}",
        if percent <= TARGET_PERCENT {
            "PASS"
        } else {
            "MISS"
        }
    );
    Ok(())
}
