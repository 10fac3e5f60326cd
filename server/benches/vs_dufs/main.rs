//! share-server against dufs, a Rust file server that streams uploads into
//! plain files: the same load on both, in one run, alternating.
//!
//! `cargo bench -p share-server --bench vs_dufs` runs `BENCH_ROUNDS` (3)
//! rounds; each round starts each server fresh in its own 256 MiB memory
//! cgroup (`BENCH_LIMIT_MIB`), uploads 3 × 618 MB in parallel
//! (`BENCH_PARALLEL_MB`), then downloads the three whole files in parallel,
//! and stops it. The order alternates from round to round. It prints, for
//! both, idle RSS after start-up, peak RSS (`VmHWM`), peak anon (highest
//! `RssAnon` seen by a 2 ms poll), upload and download wall time, and the
//! ratios against the targets of issue 21 (PASS/MISS, never a failure: the
//! machine is shared and noisy). A last share-server pass with the debug
//! listener splits its peak by layer. Figures also go to
//! `$CARGO_TARGET_DIR/bench-vs-dufs.json`. dufs is `$DUFS`, or on `PATH`,
//! or installed with `cargo install --locked dufs`. See `docs/benchmarks.md`.
//!
//! Modules: `contender` (the two servers and their clients), `cgroup`,
//! `watch` (peaks from `/proc`), `layers`, `report`.

mod cgroup;
mod contender;
mod layers;
mod report;
mod watch;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::future::try_join_all;

use cgroup::MemoryGroup;
use contender::{Contender, Kind};
use report::{Figures, Report};
use watch::{Status, Watch};

/// Uploads (and then downloads) running at once: the story's three.
const PARALLEL: usize = 3;
/// Settling time after start-up before the idle RSS is read.
const IDLE_SETTLE: Duration = Duration::from_millis(500);

struct Config {
    rounds: usize,
    size: u64,
    limit_bytes: u64,
    dufs: PathBuf,
}

impl Config {
    fn from_env() -> Result<Config> {
        let number = |key: &str, default: u64| -> Result<u64> {
            std::env::var(key).map_or(Ok(default), |v| {
                v.parse()
                    .with_context(|| format!("{key}={v} is not a whole number"))
            })
        };
        Ok(Config {
            rounds: number("BENCH_ROUNDS", 3)?.max(1) as usize,
            size: number("BENCH_PARALLEL_MB", 618)? * 1_000_000,
            limit_bytes: number("BENCH_LIMIT_MIB", 256)? << 20,
            dufs: find_dufs()?,
        })
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let config = Config::from_env()?;
    println!(
        "share-server vs dufs: {} rounds of {PARALLEL} x {} MB uploads + downloads, {} MiB cgroup each",
        config.rounds,
        config.size / 1_000_000,
        config.limit_bytes >> 20
    );
    let mut report = Report::default();
    for round in 0..config.rounds {
        let order = if round % 2 == 0 {
            [Kind::ShareServer, Kind::Dufs]
        } else {
            [Kind::Dufs, Kind::ShareServer]
        };
        for kind in order {
            let figures = one_round(kind, &config).await?;
            println!(
                "  round {}: {:<12} {}",
                round + 1,
                kind.name(),
                figures.line()
            );
            report.add(kind, figures);
        }
    }
    report.layers = Some(layers_pass(&config).await?);
    report.print();
    report.write_json()?;
    Ok(())
}

/// One server, fresh: idle RSS, the parallel uploads (watched), the downloads.
async fn one_round(kind: Kind, config: &Config) -> Result<Figures> {
    let group = match MemoryGroup::create(kind.name(), config.limit_bytes) {
        Ok(group) => Some(group),
        Err(e) => {
            eprintln!("  (no memory limit: {e:#})");
            None
        }
    };
    let contender = Contender::start(kind, &config.dufs, false).await?;
    if let Some(group) = &group {
        group
            .add(contender.pid())
            .with_context(|| format!("moving {} into {}", kind.name(), group.path().display()))?;
    }
    tokio::time::sleep(IDLE_SETTLE).await;
    let idle = Status::read(contender.pid())?;

    let watch = Watch::start(contender.pid());
    let started = Instant::now();
    let paths = try_join_all((0..PARALLEL).map(|n| contender.upload(n, config.size))).await?;
    let upload = started.elapsed();
    let peak = watch.finish();

    let started = Instant::now();
    try_join_all(paths.iter().map(|p| contender.download(p, config.size))).await?;
    let download = started.elapsed();
    tokio::task::block_in_place(|| contender.stop())?;
    drop(group);
    Ok(Figures {
        idle_rss_kib: idle.vm_rss_kib,
        peak_rss_kib: peak.vm_hwm_kib,
        peak_anon_kib: peak.rss_anon_kib,
        upload_seconds: upload.as_secs_f64(),
        download_seconds: download.as_secs_f64(),
    })
}

/// share-server once more, debug listener on, its uploads' peak by layer.
async fn layers_pass(config: &Config) -> Result<layers::Layers> {
    let group = MemoryGroup::create("layers", config.limit_bytes).ok();
    let contender = Contender::start(Kind::ShareServer, &config.dufs, true).await?;
    if let Some(group) = &group {
        group.add(contender.pid())?;
    }
    tokio::time::sleep(IDLE_SETTLE).await;
    let uploads = try_join_all((0..PARALLEL).map(|n| contender.upload(n, config.size)));
    let (peak, _) = layers::at_peak(&contender, uploads).await?;
    tokio::task::block_in_place(|| contender.stop())?;
    Ok(peak)
}

/// `$DUFS`, `dufs` on `PATH` or in `~/.cargo/bin`, else installed now.
fn find_dufs() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("DUFS") {
        return Ok(PathBuf::from(path));
    }
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|home| home.join("bin").join("dufs"));
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("dufs"));
    if let Some(found) = on_path.chain(cargo_bin.clone()).find(|p| p.is_file()) {
        return Ok(found);
    }
    println!("dufs not found: cargo install --locked dufs");
    let status = std::process::Command::new("cargo")
        .args(["install", "--locked", "dufs"])
        .status()
        .context("running cargo install --locked dufs")?;
    match cargo_bin {
        Some(path) if status.success() && path.is_file() => Ok(path),
        _ => bail!("cargo install --locked dufs failed ({status}); set DUFS=/path/to/dufs"),
    }
}
