//! The scenario's load phases, each a `loadgen::run`. A phase waits for the one before it,
//! except after a `background` phase: that one is started and left running beside the phases
//! after it (attacks while the polite load runs), and the run waits for it at the end. Every
//! phase's start and end go to `events.jsonl` when they happen, so overlapping phases show as
//! overlapping spans in the report.

use std::path::Path;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::events::Events;
use crate::machine::Server;
use crate::sampler;
use crate::scenario::Phase;
use crate::target::Exit;
use run_format::events::detail;
use run_format::files;

/// How long a phase's loadgen may take to notice a dead server and return.
const LOADGEN_WIND_DOWN: Duration = Duration::from_secs(15);

/// A phase in `outcome.json`, with loadgen's whole summary.
pub type PhaseOutcome = run_format::PhaseOutcome<loadgen::Summary>;

/// How the phases ended.
pub(crate) struct Ran {
    /// In the scenario's order.
    pub phases: Vec<PhaseOutcome>,
    /// The server died on its own: how, and when (ms).
    pub died: Option<(Exit, u64)>,
    pub interrupted: bool,
}

/// What every phase needs from the run.
pub(crate) struct Context<'a> {
    pub events: &'a Events,
    pub label: &'a sampler::Phase,
    pub dir: &'a Path,
    pub secret: &'a str,
}

/// A started phase, enough to record its end even if its future is gone.
#[derive(Clone)]
struct Started {
    name: String,
    background: bool,
    started_ms: u64,
}

struct Background {
    index: usize,
    started: Started,
    handle: JoinHandle<(PhaseOutcome, bool)>,
}

pub(crate) async fn run_all(
    ctx: &Context<'_>,
    server: &mut Server,
    specs: &[Phase],
    configs: Vec<loadgen::Config>,
) -> Ran {
    let mut done: Vec<(usize, PhaseOutcome)> = Vec::new();
    let mut background = Vec::new();
    let mut died = None;
    let mut interrupted = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    for (index, (spec, mut config)) in specs.iter().zip(configs).enumerate() {
        fill(
            ctx,
            server,
            &mut config,
            index,
            spec,
            done.iter().map(|(_, p)| p),
        );
        let started = start(ctx.events, spec);
        if spec.background {
            let (events, record) = (ctx.events.clone(), started.clone());
            let handle = tokio::spawn(async move {
                let result = loadgen::run(config).await;
                end(&events, record, Some(result), "")
            });
            background.push(Background {
                index,
                started,
                handle,
            });
            continue;
        }
        ctx.label.set(&spec.name);
        let load = loadgen::run(config);
        tokio::pin!(load);
        let result = tokio::select! {
            result = &mut load => Some(result),
            exit = server.wait() => {
                died = Some((exit, ctx.events.now_ms()));
                // loadgen sees the server gone within seconds and returns what it did.
                tokio::time::timeout(LOADGEN_WIND_DOWN, &mut load).await.ok()
            }
            _ = &mut ctrl_c => {
                interrupted = true;
                None
            }
        };
        let missing = if interrupted {
            "interrupted"
        } else {
            "the server died"
        };
        let (outcome, stopped) = end(ctx.events, started, result, missing);
        interrupted |= stopped;
        done.push((index, outcome));
        if died.is_some() || interrupted {
            break;
        }
        if !spec.pause_after.is_zero() {
            ctx.label.set("pause");
            tokio::select! {
                () = tokio::time::sleep(spec.pause_after) => {}
                exit = server.wait() => died = Some((exit, ctx.events.now_ms())),
                _ = &mut ctrl_c => interrupted = true,
            }
            if died.is_some() || interrupted {
                break;
            }
        }
    }

    // The background phases still running, then their ends.
    let running: Vec<&str> = background
        .iter()
        .filter(|b| !b.handle.is_finished())
        .map(|b| b.started.name.as_str())
        .collect();
    if !running.is_empty() {
        ctx.label.set(&running.join("+"));
    }
    for mut phase in background {
        let joined = if died.is_some() || interrupted {
            None
        } else {
            tokio::select! {
                joined = &mut phase.handle => Some(joined),
                exit = server.wait() => {
                    died = Some((exit, ctx.events.now_ms()));
                    None
                }
                _ = &mut ctrl_c => {
                    interrupted = true;
                    None
                }
            }
        };
        let joined = match joined {
            Some(joined) => Some(joined),
            None if died.is_some() => tokio::time::timeout(LOADGEN_WIND_DOWN, &mut phase.handle)
                .await
                .ok(),
            None => None,
        };
        let (outcome, stopped) = match joined {
            Some(Ok(ended)) => ended,
            other => {
                phase.handle.abort();
                let why = match other {
                    Some(Err(e)) if e.is_panic() => "the phase panicked",
                    _ if interrupted => "interrupted",
                    _ => "the server died",
                };
                end(ctx.events, phase.started, None, why)
            }
        };
        interrupted |= stopped;
        done.push((phase.index, outcome));
    }
    done.sort_by_key(|(index, _)| *index);
    Ran {
        phases: done.into_iter().map(|(_, p)| p).collect(),
        died,
        interrupted,
    }
}

/// What the rig fills in: the server, the secret, the report directory, and what earlier
/// finished phases stored and did not delete.
fn fill<'a>(
    ctx: &Context<'_>,
    server: &Server,
    config: &mut loadgen::Config,
    index: usize,
    spec: &Phase,
    finished: impl Iterator<Item = &'a PhaseOutcome> + Clone,
) {
    config.host = server.base_url.clone();
    config.secret = ctx.secret.to_owned();
    config.report_dir =
        ctx.dir
            .join(files::LOADGEN_DIR)
            .join(format!("{}-{}", index + 1, spec.name));
    config
        .known_uploads
        .extend(loadgen::Summary::remaining_uploads(
            finished.filter_map(|p| p.summary.as_ref()),
        ));
    config.quiet = true;
}

fn start(events: &Events, spec: &Phase) -> Started {
    let started = Started {
        name: spec.name.clone(),
        background: spec.background,
        started_ms: events.now_ms(),
    };
    events.record(&detail::PhaseStart {
        phase: spec.name.clone(),
        background: spec.background,
    });
    started
}

/// Records the phase's end; `missing` says why there is no result. True when loadgen reports
/// a ctrl-c (goose replaces the process's SIGINT handler on its first run, so a ctrl-c during
/// a goose phase arrives as loadgen's error).
fn end(
    events: &Events,
    started: Started,
    result: Option<Result<loadgen::Summary, loadgen::Error>>,
    missing: &str,
) -> (PhaseOutcome, bool) {
    let mut interrupted = false;
    let (ok, error, summary) = match result {
        Some(Ok(summary)) => (summary.ok, None, Some(summary)),
        Some(Err(e)) => {
            interrupted = matches!(e, loadgen::Error::Interrupted { .. });
            (false, Some(e.to_string()), e.partial_summary().cloned())
        }
        None => (false, Some(missing.to_owned()), None),
    };
    events.record(&detail::PhaseEnd {
        phase: started.name.clone(),
        ok,
        error: error.clone(),
    });
    let outcome = PhaseOutcome {
        name: started.name,
        background: started.background,
        started_ms: started.started_ms,
        ended_ms: events.now_ms(),
        ok,
        error,
        summary,
    };
    (outcome, interrupted)
}
