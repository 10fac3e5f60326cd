//! `rig`: run scenarios against share-server inside a memory limit.
//!
//! Exit codes: 0 the run (or gate) passed, 1 it failed (OOM kill, the server
//! died, a phase failed, interrupted; for `gate`, a budget or a baseline
//! regression; for `prove`, a fixture missed or a clean build flagged; `power`
//! always passes once measured), 2
//! the rig itself could not run it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use profiling::gate::prove::{self, Fixture};
use profiling::gate::{self, GateOptions};
use profiling::heap::HeapProfiling;
use profiling::run::{RunError, RunOptions, run};
use profiling::scenario::{Mode, Scenario};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    version,
    about = "Run share-server inside a small machine's memory limit and record every memory layer"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario and write runs/<scenario>-<UTC time>/.
    Run {
        scenario: PathBuf,
        /// Where run directories go.
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
        /// The cargo workspace that builds share-server.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/.."))]
        workspace: PathBuf,
        /// No live terminal line.
        #[arg(long)]
        no_progress: bool,
        /// Take heap profiles during the run (builds the server with jemalloc-prof):
        /// `peak` (after each new peak of the allocator's resident bytes) or an
        /// interval such as `5s` (that too); overrides `[server] heap_profiles`.
        #[arg(long, value_name = "WHEN", num_args = 0..=1, default_missing_value = "peak")]
        heap_profiles: Option<HeapProfiling>,
        /// Run the server with one of the story's bugs brought back, as `rig
        /// prove` does: buffered-multipart, leaked-temp-files, read-all-chunks,
        /// upload-transaction, periodic-vacuum; or a sized fixture:
        /// retain-per-upload=SIZE (held by each upload while it runs),
        /// leak-per-request=SIZE (leaked by every request), sqlite-cache=SIZE
        /// (SQLite page cache per connection, whole KiB). SIZE: 1MiB, 512KiB, 4096.
        #[arg(long, value_name = "NAME[=SIZE]")]
        regression: Option<Fixture>,
    },
    /// The memory-regression gate: run a scenario N times, check its
    /// [budgets] and compare with the committed baseline.
    Gate {
        #[command(flatten)]
        gate: GateArgs,
        /// Write the baseline from these replicates (only if every budget passes).
        #[arg(long, conflicts_with_all = ["replicate_only", "merge"])]
        update_baseline: bool,
        /// Run only replicate K into --runs-dir and decide nothing: one job of
        /// a CI matrix (then `--merge` decides on all of them).
        #[arg(long, value_name = "K", conflicts_with = "merge")]
        replicate_only: Option<usize>,
        /// Decide on the run directories found under DIRS (the matrix jobs'
        /// `--replicate-only` runs), as one gate of that many replicates.
        #[arg(long, value_name = "DIRS", num_args = 1..)]
        merge: Vec<PathBuf>,
    },
    /// Prove the gate: run the clean build and each regression fixture
    /// through it and print the detection table (builds share-server
    /// --features regressions). Passes when every fixture is flagged and no
    /// clean build is.
    Prove {
        #[command(flatten)]
        gate: GateArgs,
        /// Gates of the clean build (false-alarm check).
        #[arg(long, default_value_t = 1)]
        clean_gates: usize,
        /// These fixtures only (comma-separated, NAME or NAME=SIZE as for
        /// `rig run --regression`) [default: the story's five].
        #[arg(long, value_delimiter = ',')]
        fixtures: Vec<Fixture>,
    },
    /// What the gate can see: clean gates (false alarms) and gates of sized
    /// fixtures at several sizes, interleaved; detection rate per size, the
    /// minimum detectable effect and the tuning grid, in power.md,
    /// power.json and power.svg (no attribution runs).
    Power {
        #[command(flatten)]
        gate: GateArgs,
        /// Gates of the clean build.
        #[arg(long, default_value_t = 20)]
        clean_gates: usize,
        /// Sized fixtures, one per size (comma-separated NAME=SIZE).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "retain-per-upload=512KiB,retain-per-upload=768KiB,retain-per-upload=1MiB,retain-per-upload=2MiB"
        )]
        fixtures: Vec<Fixture>,
        /// Gates of each fixture size.
        #[arg(long, default_value_t = 10)]
        gates_per_size: usize,
        /// Measure the baseline first (one more clean gate, its replicates
        /// written to the power directory's baseline.json) and compare with it.
        #[arg(long, conflicts_with_all = ["baseline", "no_baseline"])]
        fresh_baseline: bool,
        /// Run nothing: analyse DIR's power.json again (the tables, the plot).
        #[arg(long, value_name = "DIR")]
        reanalyse: Option<PathBuf>,
    },
    /// Check a scenario file without running it.
    Check { scenario: PathBuf },
    /// What this machine gives the rig (cgroup version and where groups may
    /// go, root or delegation, tmpfs, drop_caches, qemu/KVM, tools) and what
    /// to run to get the rest.
    Doctor {
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/.."))]
        workspace: PathBuf,
    },
    /// Report on a run directory (plots, verdict, report.html, summary.json);
    /// with two, compare them side by side into A/compare-<B>/.
    Report {
        #[arg(required = true, num_args = 1..=2)]
        run_dirs: Vec<PathBuf>,
    },
}

/// What `gate` and `prove` both take: a scenario run N times per gate.
#[derive(clap::Args)]
struct GateArgs {
    scenario: PathBuf,
    /// Baseline JSON [default: scenarios/baselines/<name>.json beside the
    /// scenario, when it exists].
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Budgets only, even if a baseline exists.
    #[arg(long)]
    no_baseline: bool,
    /// Runs of the scenario per gate (1 to 10).
    #[arg(long, default_value_t = profiling::gate::DEFAULT_REPLICATES)]
    replicates: usize,
    #[arg(long, default_value = "runs")]
    runs_dir: PathBuf,
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/.."))]
    workspace: PathBuf,
    #[arg(long)]
    no_progress: bool,
    /// No attribution run after a failure (nor a heap profile in a new baseline).
    #[arg(long)]
    no_attribution: bool,
}

impl GateArgs {
    /// The gate's options, comparing with no baseline when `skip_baseline`;
    /// also the scenario's name.
    fn options(self, skip_baseline: bool) -> anyhow::Result<(GateOptions, String)> {
        let name = Scenario::load(&self.scenario)?.name;
        let options = GateOptions {
            baseline: baseline_to_compare(
                &self.scenario,
                &name,
                self.baseline,
                self.no_baseline || skip_baseline,
            ),
            scenario: self.scenario,
            replicates: self.replicates,
            runs_dir: self.runs_dir,
            workspace: canonical_workspace(&self.workspace)?,
            progress: !self.no_progress,
            attribution: !self.no_attribution,
        };
        Ok((options, name))
    }
}

fn canonical_workspace(workspace: &Path) -> anyhow::Result<PathBuf> {
    workspace
        .canonicalize()
        .with_context(|| format!("workspace {}", workspace.display()))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match real_main().await {
        Ok(passed) if passed => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("rig: {e:#}");
            if could_not_start(&e) {
                eprintln!(
                    "rig: `rig doctor` says what this machine gives the rig and what to run to get the rest"
                );
            }
            ExitCode::from(2)
        }
    }
}

/// The machine could not be set up or the server not started there.
fn could_not_start(e: &anyhow::Error) -> bool {
    let run = e
        .downcast_ref::<RunError>()
        .or_else(|| match e.downcast_ref() {
            Some(gate::GateError::Run { source, .. }) => Some(source.as_ref()),
            _ => None,
        });
    matches!(run, Some(RunError::Machine(_) | RunError::Target(_)))
}

async fn real_main() -> anyhow::Result<bool> {
    let cli = Cli::parse();
    let scenario = match &cli.command {
        Command::Run { scenario, .. } => Some(scenario),
        Command::Gate { gate, .. } | Command::Prove { gate, .. } | Command::Power { gate, .. } => {
            Some(&gate.scenario)
        }
        _ => None,
    };
    if let Some(scenario) = scenario
        && Scenario::load(scenario).is_ok_and(|s| s.machine.mode == Mode::Cgroup)
    {
        // Non-root on cgroup v2 without a delegated cgroup: again under systemd-run, if it works.
        profiling::machine::cgroup::v2::reexec_delegated();
    }
    match cli.command {
        Command::Doctor { workspace } => {
            print!(
                "{}",
                profiling::doctor::render(&profiling::doctor::examine(&workspace))
            );
            Ok(true)
        }
        Command::Check { scenario } => {
            let s = Scenario::load(&scenario)?;
            for phase in &s.phases {
                toml::Value::Table(phase.loadgen.clone())
                    .try_into::<loadgen::Config>()
                    .with_context(|| format!("phase {}", phase.name))?;
            }
            profiling::gate::budgets::Budgets::from_table(&s.budgets)?;
            println!("{}: ok ({} phases)", scenario.display(), s.phases.len());
            Ok(true)
        }
        Command::Run {
            scenario,
            runs_dir,
            workspace,
            no_progress,
            heap_profiles,
            regression,
        } => {
            let workspace = canonical_workspace(&workspace)?;
            let outcome = run(RunOptions {
                scenario,
                runs_dir,
                workspace,
                progress: !no_progress,
                heap_profiles,
                regression,
            })
            .await?;
            print_outcome(&outcome);
            // The report is a reading of the run: failing to write it never changes the run's result.
            match reports::report(&outcome.run_dir) {
                Ok(summary) => print_verdict(&summary),
                Err(e) => eprintln!("rig: warning: no report: {e}"),
            }
            Ok(outcome.passed)
        }
        Command::Report { run_dirs } => report(&run_dirs),
        Command::Gate {
            gate,
            update_baseline,
            replicate_only,
            merge,
        } => {
            // --update-baseline writes where --baseline points, else the default.
            let baseline = gate.baseline.clone();
            let (options, name) = gate.options(update_baseline)?;
            if let Some(k) = replicate_only {
                let m = gate::fanout::replicate_only(&options, k).await?;
                println!(
                    "replicate {k}: {} ({})",
                    m.run_dir.display(),
                    m.verdict.as_deref().unwrap_or("no report")
                );
                return Ok(true);
            }
            let baseline_file =
                baseline.unwrap_or_else(|| gate::default_baseline_path(&options.scenario, &name));
            let report = match merge.is_empty() {
                true => gate::gate(&options).await?,
                false => gate::fanout::merge(&options, &merge).await?,
            };
            print!("{}", gate::output::terminal(&report));
            if update_baseline {
                if !report.passed {
                    eprintln!("rig gate: not writing a baseline from a failing build");
                    return Ok(false);
                }
                gate::update_baseline(&report, &options, &baseline_file).await?;
                println!("baseline written: {}", baseline_file.display());
            }
            Ok(report.passed)
        }
        Command::Prove {
            gate,
            clean_gates,
            fixtures,
        } => {
            let (options, _) = gate.options(false)?;
            let fixtures = if fixtures.is_empty() {
                Fixture::ALL.to_vec()
            } else {
                fixtures
            };
            let rows = prove::prove(&options, clean_gates, &fixtures).await?;
            print!("{}", prove::markdown(&rows, &options.scenario));
            Ok(rows.iter().all(|r| r.right()))
        }
        Command::Power {
            gate,
            clean_gates,
            fixtures,
            gates_per_size,
            fresh_baseline,
            reanalyse,
        } => {
            if let Some(dir) = reanalyse {
                let report = gate::power::reanalyse(&dir, &gate.scenario)?;
                print!("{}", gate::power::analysis::markdown(&report));
                return Ok(true);
            }
            let (options, _) = gate.options(false)?;
            let report = gate::power::power(&gate::power::PowerOptions {
                gate: options,
                clean_gates,
                fixtures,
                gates_per_fixture: gates_per_size,
                fresh_baseline,
            })
            .await?;
            print!("{}", gate::power::analysis::markdown(&report));
            Ok(true)
        }
    }
}

/// The baseline a gate compares with: `--baseline`, else the default one
/// when it exists; none when `skip`.
fn baseline_to_compare(
    scenario: &Path,
    name: &str,
    baseline: Option<PathBuf>,
    skip: bool,
) -> Option<PathBuf> {
    if skip {
        return None;
    }
    baseline.or_else(|| {
        let default = gate::default_baseline_path(scenario, name);
        default.exists().then_some(default)
    })
}

/// `rig report RUN` or `rig report A B`: exit 0 once the report is written.
fn report(run_dirs: &[PathBuf]) -> anyhow::Result<bool> {
    match run_dirs {
        [run] => {
            let summary = reports::report(run)?;
            print_verdict(&summary);
        }
        [a, b] => {
            let name = b
                .file_name()
                .map_or_else(|| "b".into(), |n| n.to_string_lossy());
            let out = a.join(format!("compare-{name}"));
            let c = reports::compare(a, b, &out)?;
            println!("A {}: {}", c.a.verdict, c.a.headline);
            println!("B {}: {}", c.b.verdict, c.b.headline);
            println!(
                "report: {}",
                out.join(reports::compare::COMPARE_HTML).display()
            );
        }
        _ => anyhow::bail!("rig report takes one run directory, or two to compare"),
    }
    Ok(true)
}

fn print_verdict(s: &reports::Summary) {
    println!("verdict: {} ({})", s.verdict, s.headline);
    println!("report: {}", s.run.dir.join(&s.files.report_html).display());
}

fn print_outcome(o: &profiling::run::Outcome) {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    for p in &o.phases {
        let detail = match (&p.summary, &p.error) {
            (_, Some(e)) => format!("error: {e}"),
            (Some(s), None) => format!(
                "{} uploads, {} verified downloads, {} failures",
                s.uploads.len(),
                s.verified_downloads,
                s.failures
            ),
            (None, None) => String::new(),
        };
        println!(
            "phase {:<12} {:>7.1} s  {}  {detail}",
            p.name,
            (p.ended_ms - p.started_ms) as f64 / 1000.0,
            if p.ok { "ok  " } else { "FAIL" }
        );
    }
    let k = &o.peaks;
    println!(
        "peaks: machine {:.1} MiB (working set {:.1}, anon {:.1}, page cache {:.1}); server RSS {:.1} MiB (anon {:.1}, VmHWM {:.1}); allocator resident {:.1} MiB",
        mib(k.machine_usage_bytes),
        mib(k.machine_working_set_bytes),
        mib(k.machine_anon_bytes),
        mib(k.machine_file_bytes),
        mib(k.process_rss_bytes),
        mib(k.process_anon_bytes),
        mib(k.process_hwm_bytes),
        mib(k.allocator_resident_bytes),
    );
    if let Some(at) = o.died_at_ms {
        let how = o
            .server_exit
            .as_ref()
            .map(|e| e.describe())
            .unwrap_or_default();
        println!(
            "the server died at {:.1} s: {how}; OOM kills: {}",
            at as f64 / 1000.0,
            o.oom_kills
        );
    }
    println!(
        "{}: {} ({} samples) in {}",
        if o.passed { "PASS" } else { "FAIL" },
        if o.passed {
            "no OOM kill, every phase ok".to_owned()
        } else {
            format!("OOM kills {}, interrupted {}", o.oom_kills, o.interrupted)
        },
        o.samples,
        o.run_dir.display()
    );
}
