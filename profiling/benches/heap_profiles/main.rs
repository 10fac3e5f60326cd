//! What heap profiles during a run cost: the same small upload scenario run
//! with profiles off and on, alternately (off, on, off, on, …), in one
//! process through the rig's library, as `rig run SCENARIO [--heap-profiles]`
//! would run it.
//!
//! - off: share-server as users run it, the `release` profile with its
//!   default allocator (jemalloc, profiling not compiled in); no profiles.
//! - on: the build `--heap-profiles` makes, the `profiling` profile (release
//!   with `debug = "limited"`) with `jemalloc-prof` (jemalloc sampling one
//!   allocation per 512 KiB), and `/debug/pprof/heap` fetched after each new
//!   peak of the allocator's resident bytes.
//!
//! Per run it reads the upload phase's aggregate rate (loadgen's summary),
//! the peaks the rig sampled and the profiles in `meta.json`; then prints the
//! medians of each side, their ratios (on / off) and each "on" run's ratio
//! to the "off" run just before it, since the machine is shared and noisy.
//! It never fails on a figure. The figures also go to
//! `$CARGO_TARGET_DIR/bench-heap-profiles.json` (else `target/`), the run
//! directories to `bench-heap-profiles-runs/` beside it.
//!
//! `cargo bench -p profiling --bench heap_profiles`; environment:
//! `BENCH_HEAP_PAIRS` (default 3), `BENCH_HEAP_USERS` (parallel uploads,
//! default 3), `BENCH_HEAP_MB` (each upload, default 200; MB = 10^6 bytes).
//! Needs a memory cgroup (root, or a delegated cgroup v2 subtree); without
//! one it says so and exits 0 with no figures.

mod figures;
mod summary;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use profiling::heap::HeapProfiling;
use profiling::machine;
use profiling::run::{RunOptions, run};
use profiling::scenario::{MachineSpec, Mode};

use figures::RunFigures;

/// The limit of the story's VM, as in `scenarios/parallel-uploads.toml`.
const MEMORY: &str = "256MiB";

/// The knobs, from the environment.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct Config {
    pub(crate) pairs: usize,
    pub(crate) users: usize,
    pub(crate) upload_mb: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let config = Config {
        pairs: from_env("BENCH_HEAP_PAIRS", 3)?,
        users: from_env("BENCH_HEAP_USERS", 3)?,
        upload_mb: from_env("BENCH_HEAP_MB", 200)?,
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .context("the workspace")?;
    let target = profiling::target::target_dir(&workspace);
    let scratch = tempfile::tempdir().context("creating a scratch dir")?;
    if let Some(why) = cgroup_refusal(scratch.path()) {
        println!("heap_profiles bench: skipped, the rig cannot make a memory cgroup here: {why}");
        println!("  run it as root (cgroup v1 or v2) or with a delegated cgroup v2 subtree;");
        println!("  `cargo run --bin rig -- doctor` says what this machine gives the rig");
        return Ok(());
    }
    let scenario = scratch.path().join("heap-bench.toml");
    std::fs::write(&scenario, scenario_text(&config)).context("writing the scenario")?;
    let runs_dir = target.join("bench-heap-profiles-runs");
    println!(
        "heap profiles overhead: {} pairs (off, on), {} parallel uploads of {} MB under {MEMORY}",
        config.pairs, config.users, config.upload_mb
    );
    println!("  off: release build, default allocator (jemalloc, no profiling), no profiles");
    println!(
        "  on:  `profiling` build (release + debug = limited) with jemalloc-prof, profiles after each new peak"
    );
    println!("  run directories: {}", runs_dir.display());

    let mut runs = Vec::with_capacity(2 * config.pairs);
    for pair in 1..=config.pairs {
        for setting in [HeapProfiling::Off, HeapProfiling::Peak] {
            let side = if setting.is_on() { "on" } else { "off" };
            println!("\n[pair {pair}/{}] profiles {side}", config.pairs);
            let outcome = run(RunOptions {
                scenario: scenario.clone(),
                runs_dir: runs_dir.clone(),
                workspace: workspace.clone(),
                progress: false,
                heap_profiles: Some(setting),
                regression: None,
            })
            .await
            .with_context(|| format!("the run with profiles {side}"))?;
            let figures = RunFigures::read(setting.is_on(), &outcome)?;
            println!("  {}", figures.line());
            runs.push(figures);
        }
    }

    let report = summary::Summary::of(config, &runs);
    report.print();
    let path = target.join("bench-heap-profiles.json");
    report.write_json(&path)?;
    println!("\nfigures written to {}", path.display());
    Ok(())
}

/// Why the rig cannot make a memory cgroup here, if it cannot: it tries.
fn cgroup_refusal(scratch: &Path) -> Option<String> {
    let spec = MachineSpec {
        mode: Mode::Cgroup,
        ..MachineSpec::default()
    };
    match machine::open(&spec, &machine::Setup::local("heap-bench-check", scratch)) {
        Ok(mut m) => m.teardown().err().map(|e| e.to_string()),
        Err(e) => Some(e.to_string()),
    }
}

/// The scenario both sides run; `--heap-profiles` (here `RunOptions`) sets the side.
fn scenario_text(config: &Config) -> String {
    format!(
        r#"name = "heap-bench"
description = "{users} parallel {mb} MB uploads under {MEMORY}: heap profiles' cost"

[machine]
mode = "cgroup"
memory = "{MEMORY}"
drop_caches = true

[[phases]]
name = "upload"
pause_after = "2500ms" # longer than the profiles' 2 s gap: the last peak is taken
[phases.loadgen]
scenario = "upload"
users = {users}
iterations = 1
size = "{mb}MB"
"#,
        users = config.users,
        mb = config.upload_mb
    )
}

/// A positive whole number from `name`, or `default` when unset.
fn from_env<T>(name: &str, default: T) -> Result<T>
where
    T: std::str::FromStr + PartialOrd + From<u8>,
{
    let value = match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse::<T>()
            .ok()
            .with_context(|| format!("{name}={v:?} is not a whole number"))?,
        Err(std::env::VarError::NotPresent) => default,
        Err(e) => return Err(e).with_context(|| format!("reading {name}")),
    };
    ensure!(value >= T::from(1), "{name} must be at least 1");
    Ok(value)
}

/// A run's directory relative to where the runs go, for the JSON.
pub(crate) fn short(dir: &Path) -> PathBuf {
    dir.file_name()
        .map_or_else(|| dir.to_owned(), PathBuf::from)
}
