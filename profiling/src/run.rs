//! `rig run SCENARIO.toml`: build the server, start it inside the machine,
//! sample it, run the load phases through loadgen, stop everything and
//! leave a run directory:
//!
//! ```text
//! runs/<scenario>-<UTC time>/
//!   scenario.toml    the scenario as run
//!   meta.json        what ran (git, features, flags, allocator, kernel, cgroup, limit)
//!   samples.jsonl    one sample per tick (see `sample.rs`)
//!   events.jsonl     phase boundaries, the server's start and death
//!   loadgen/<n>-<phase>/   loadgen's summary and goose's reports per phase
//!   server.log       the server's stderr (and a wrapper's: Litestream logs there)
//!   litestream.yml   the Litestream config, when `[server] wrapper` names one
//!   heap/<t_ms>.pb.gz   heap profiles, when `[server] heap_profiles` is on
//!   outcome.json     how it ended: exit, OOM kills, time of death, phases
//! ```

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use chrono::Utc;
use rand::distr::{Alphanumeric, SampleString};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::events::Events;
use crate::fixture::Fixture;
use crate::health;
use crate::heap::{self, HeapProfiling};
use crate::machine::{self, Machine};
use crate::meta;
use crate::phases;
pub use crate::phases::PhaseOutcome;
use crate::sampler::{self, Sampler};
use crate::scenario::{HealthSpec, PROFILING_FEATURE, Scenario};
use crate::target;
use run_format::events::detail;
use run_format::{FilesAtPeak, HealthSummary, HeapProfiles, Peaks, Sample, files};

/// Samples kept in `outcome.json` from just before the end (or the death).
const LAST_SAMPLES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Scenario(#[from] crate::scenario::ScenarioError),
    #[error(transparent)]
    Machine(#[from] machine::MachineError),
    #[error(transparent)]
    Target(#[from] target::TargetError),
    #[error(transparent)]
    Start(#[from] machine::StartError),
    #[error("phase {phase}: its loadgen configuration is invalid: {source}")]
    PhaseConfig {
        phase: String,
        source: toml::de::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Fixture(#[from] crate::fixture::FixtureError),
    #[error("heap profiles: {0}")]
    HeapProfiles(String),
    #[error(transparent)]
    Wrapper(#[from] crate::wrapper::WrapperError),
    #[error("interrupted before the server was up")]
    Interrupted,
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let context = context.into();
    move |source| RunError::Io { context, source }
}

pub struct RunOptions {
    pub scenario: PathBuf,
    /// Where run directories go (`runs/`).
    pub runs_dir: PathBuf,
    /// The workspace, to build share-server and read the git revision.
    pub workspace: PathBuf,
    /// Show the live line on the terminal.
    pub progress: bool,
    /// Overrides the scenario's `[server] heap_profiles` (`--heap-profiles`).
    pub heap_profiles: Option<HeapProfiling>,
    /// Runs this fixture's build of the server (`--regression NAME`).
    pub regression: Option<Fixture>,
}

/// How a run ended; `outcome.json`, with loadgen's whole summary per phase.
pub type Outcome = run_format::Outcome<loadgen::Summary>;

/// Runs this process has started: part of each run's cgroup name.
static RUNS_STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Runs a scenario end to end. Errors before the server runs are returned;
/// once it runs, everything ends in an [`Outcome`] (a crash is a result).
pub async fn run(options: RunOptions) -> Result<Outcome, RunError> {
    let scenario_text = scenario_as_run(&options)?;
    let scenario = Scenario::parse(&scenario_text, &options.scenario)?;
    let invoked = Utc::now();
    let run_id = format!("{}-{}", scenario.name, invoked.format("%Y%m%dT%H%M%SZ"));
    let dir = options.runs_dir.join(&run_id);
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    std::fs::write(dir.join(files::SCENARIO), &scenario_text)
        .map_err(io("writing scenario.toml"))?;
    // Validate every phase before spending minutes on a build.
    let phase_configs = scenario
        .phases
        .iter()
        .map(|p| {
            toml::Value::Table(p.loadgen.clone())
                .try_into::<loadgen::Config>()
                .map_err(|source| RunError::PhaseConfig {
                    phase: p.name.clone(),
                    source,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;

    let spec = scenario.server.clone();
    let workspace = options.workspace.clone();
    let binary = tokio::task::spawn_blocking(move || target::build(&spec, &workspace))
        .await
        .map_err(|e| io("building share-server")(std::io::Error::other(e)))??;

    let server_meta = meta::server(&binary, &scenario);
    if scenario.server.heap_profiles.is_on() && server_meta.allocator != PROFILING_FEATURE {
        return Err(RunError::HeapProfiles(format!(
            "{} has allocator {:?}; heap profiles need a build with the {PROFILING_FEATURE} feature",
            binary.display(),
            server_meta.allocator
        )));
    }
    let data = tempfile::Builder::new()
        .prefix("sharerig-data-")
        .tempdir()
        .map_err(io("creating the server's data dir"))?;
    // The cgroup's name: two runs of one scenario started in the same second
    // (parallel tests, two rigs on one host) must not share a group, or the
    // first to end kills the other's server as it empties its group.
    let cgroup_id = format!(
        "{run_id}-{}-{}",
        std::process::id(),
        RUNS_STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let setup = machine::Setup {
        run_id: &cgroup_id,
        scratch: data.path(),
        workspace: Some(&options.workspace),
        server_binary: Some(&binary),
        interval: scenario.sampling.interval,
    };
    let mut machine = machine::open(&scenario.machine, &setup)?;
    let mut run_meta = run_format::Meta {
        rig_version: env!("CARGO_PKG_VERSION").into(),
        scenario: scenario.name.clone(),
        scenario_file: options.scenario.display().to_string(),
        // The run's name and start are the same instant (the build comes after).
        started_at: Some(invoked),
        finished_at: None,
        git: meta::git(&options.workspace),
        server: server_meta,
        machine: meta::machine(machine.info()),
        host: meta::host(),
        sampling_interval_ms: scenario.sampling.interval.as_millis() as u64,
        heap_profiles: None,
        files_at_peak: None,
    };
    write_json(&dir.join(files::META), &run_meta)?;

    let outcome = drive(
        &scenario,
        phase_configs,
        machine.as_ref(),
        &binary,
        &dir,
        data.path(),
        options.progress,
    )
    .await;
    if let Err(e) = machine.teardown() {
        tracing::warn!(error = %e, "tearing down the machine");
    }
    // What the machine learnt while running (a guest's kernel, MemTotal, shutdown).
    run_meta.machine = meta::machine(machine.info());
    run_meta.finished_at = Some(Utc::now());
    let outcome = outcome.map(|driven| {
        run_meta.heap_profiles = driven.heap;
        run_meta.files_at_peak = driven.files_at_peak;
        driven.outcome
    });
    write_json(&dir.join(files::META), &run_meta)?;
    let outcome = outcome?;
    write_json(&dir.join(files::OUTCOME), &outcome)?;
    Ok(outcome)
}

/// The scenario file's text with the command line's overrides applied (then
/// re-encoded, comments gone): what runs and what `scenario.toml` keeps.
fn scenario_as_run(options: &RunOptions) -> Result<String, RunError> {
    let path = &options.scenario;
    let mut text =
        std::fs::read_to_string(path).map_err(io(format!("reading {}", path.display())))?;
    if let Some(fixture) = options.regression {
        text = crate::fixture::with_fixture(&text, fixture)?;
    }
    if let Some(setting) = options.heap_profiles {
        text = heap::with_heap_profiles(&text, setting).map_err(|problem| {
            crate::scenario::ScenarioError::Invalid {
                path: path.clone(),
                problem,
            }
        })?;
    }
    Ok(text)
}

/// What [`drive`] leaves: the outcome, and what `meta.json` adds at the end.
struct Driven {
    outcome: Outcome,
    heap: Option<HeapProfiles>,
    files_at_peak: Option<FilesAtPeak>,
}

/// The part of a run with the server up; also the heap profiles taken and
/// the server's files at their peak.
async fn drive(
    scenario: &Scenario,
    phase_configs: Vec<loadgen::Config>,
    machine: &dyn Machine,
    binary: &Path,
    dir: &Path,
    data: &Path,
    progress: bool,
) -> Result<Driven, RunError> {
    let secret = Alphanumeric.sample_string(&mut rand::rng(), 32);
    let db = data.join("store.db");
    let oom_before = machine.oom_kills().unwrap_or(0);
    let events =
        Events::new(File::create(dir.join(files::EVENTS)).map_err(io("creating events.jsonl"))?);
    let log = dir.join(files::SERVER_LOG);
    // A Litestream replica goes beside the database, removed with it.
    let wrapper = crate::wrapper::prepare(
        &scenario.server.wrapper,
        &db,
        &dir.join(crate::wrapper::CONFIG_FILE),
        &data.join("litestream-replica"),
    )?;
    let mut server = tokio::select! {
        server = machine.start_server(machine::Launch {
            binary,
            args: &scenario.server.args,
            db: &db,
            log: &log,
            secret: &secret,
            wrapper: &wrapper,
        }) => server?,
        _ = tokio::signal::ctrl_c() => return Err(RunError::Interrupted),
    };
    events.record(&detail::ServerStarted { pid: server.pid });

    let phase = sampler::Phase::default();
    phase.set("start");
    let (latest_tx, latest_rx) = watch::channel(None);
    let stop_sampling = CancellationToken::new();
    let sampler = Sampler {
        probe: machine.probe(),
        target: sampler::Target {
            pid: server.pid,
            debug_url: server.debug_url.clone(),
            db: db.clone(),
        },
        interval: scenario.sampling.interval,
        started: events.started,
        phase: phase.clone(),
    };
    let samples_path = dir.join(files::SAMPLES);
    let sampling = {
        let (path, stop) = (samples_path.clone(), stop_sampling.clone());
        tokio::spawn(async move { sampler.run(&path, latest_tx, stop).await })
    };
    let stop_profiling = CancellationToken::new();
    let profiling = scenario.server.heap_profiles.is_on().then(|| {
        let profiler = heap::HeapProfiler {
            setting: scenario.server.heap_profiles,
            debug_url: server.debug_url.clone(),
            dir: dir.to_owned(),
            started: events.started,
        };
        let (samples, stop) = (latest_rx.clone(), stop_profiling.clone());
        tokio::spawn(async move { profiler.run(samples, stop).await })
    });
    let live = progress.then(|| crate::run_progress::spawn(latest_rx, machine.info().limit_bytes));

    let stop_probing = CancellationToken::new();
    let probing = {
        let prober = health::Prober {
            address: health::address_of(&server.base_url),
            spec: scenario.health.clone(),
            started: events.started,
            label: phase.clone(),
        };
        let (path, stop) = (dir.join(files::HEALTHZ), stop_probing.clone());
        tokio::spawn(async move { prober.run(&path, stop).await })
    };

    let context = phases::Context {
        events: &events,
        label: &phase,
        dir,
        secret: &secret,
    };
    let phases::Ran {
        phases,
        died,
        interrupted,
    } = phases::run_all(&context, &mut server, &scenario.phases, phase_configs).await;
    record_oom_kills(&events, machine);
    if let Some((exit, at)) = &died {
        events.record(&detail::ServerDied {
            at_ms: Some(*at),
            exit: exit.describe(),
        });
    }
    if interrupted {
        events.record(&detail::Interrupted);
    }

    phase.set("end");
    // One more tick so the last state is on record, then stop sampling.
    tokio::time::sleep(scenario.sampling.interval).await;
    stop_sampling.cancel();
    stop_probing.cancel();
    stop_profiling.cancel();
    let heap = match profiling {
        Some(task) => Some(
            task.await
                .map_err(|e| io("the heap profiler")(std::io::Error::other(e)))?,
        ),
        None => None,
    };
    match probing.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(io("writing healthz.jsonl")(e)),
        Err(e) => return Err(io("the health prober")(std::io::Error::other(e))),
    }
    let sampled = match sampling.await {
        Ok(Ok(sampled)) => sampled,
        Ok(Err(e)) => return Err(io("writing samples.jsonl")(e)),
        Err(e) => return Err(io("the sampler task")(std::io::Error::other(e))),
    };
    if let Some(live) = live {
        live.finish();
    }
    let died_at_ms = died.as_ref().map(|(_, at)| *at);
    // Also after a death: a guest still has to power off.
    let stopped = server.stop().await;
    let exit = match died {
        Some((exit, _)) => exit,
        None => stopped,
    };
    events.record(&detail::ServerStopped {
        exit: exit.describe(),
    });
    let oom_kills = machine.oom_kills().unwrap_or(0).saturating_sub(oom_before);
    let (peaks, last_samples) = read_back(&samples_path)?;
    let health = read_health(&dir.join(files::HEALTHZ), &scenario.health)?;
    let health_ok =
        scenario.health.max_latency.is_none() || health.as_ref().is_some_and(|h| h.passed);
    let passed = oom_kills == 0
        && died_at_ms.is_none()
        && !interrupted
        && phases.iter().all(|p| p.ok)
        && health_ok;
    let outcome = Outcome {
        run_dir: dir.to_owned(),
        passed,
        oom_kills,
        died_at_ms,
        server_exit: Some(exit),
        interrupted,
        phases,
        samples: sampled.samples,
        health,
        peaks,
        last_samples,
    };
    Ok(Driven {
        outcome,
        heap,
        files_at_peak: sampled.files_at_peak,
    })
}

/// The probes of `healthz.jsonl` in numbers; `None` when there were none.
fn read_health(path: &Path, spec: &HealthSpec) -> Result<Option<HealthSummary>, RunError> {
    let text = std::fs::read_to_string(path).map_err(io(format!("reading {}", path.display())))?;
    let probes = run_format::health::parse(&text);
    let limit = spec.max_latency.map(|d| d.as_secs_f64() * 1000.0);
    Ok((!probes.is_empty()).then(|| HealthSummary::of(&probes, limit)))
}

/// `oom-kill` events at the time the machine saw them (the guest kernel's
/// console in `vm` mode), with the victim and the kernel's line.
fn record_oom_kills(events: &Events, machine: &dyn Machine) {
    for kill in machine.oom_kill_log() {
        let at = kill
            .at
            .saturating_duration_since(events.started)
            .as_millis() as u64;
        events.record_at(
            at,
            &detail::OomKill {
                pid: kill.pid,
                process: kill.process,
                line: kill.line,
            },
        );
    }
}

/// Peaks over all samples and the last few samples.
fn read_back(path: &Path) -> Result<(Peaks, Vec<Sample>), RunError> {
    let file = File::open(path).map_err(io(format!("reading {}", path.display())))?;
    let mut peaks = Peaks::default();
    let mut last = std::collections::VecDeque::with_capacity(LAST_SAMPLES);
    for line in BufReader::new(file).lines() {
        let line = line.map_err(io("reading samples.jsonl"))?;
        let Ok(sample) = serde_json::from_str::<Sample>(&line) else {
            continue; // a line cut by a crash of the rig itself
        };
        peaks.add(&sample);
        if last.len() == LAST_SAMPLES {
            last.pop_front();
        }
        last.push_back(sample);
    }
    Ok((peaks, last.into()))
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), RunError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| io("encoding JSON")(std::io::Error::other(e)))?;
    std::fs::write(path, text + "\n").map_err(io(format!("writing {}", path.display())))
}
