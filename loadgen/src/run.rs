//! `run`: check the server, run the attack, write the summary (always, also on failure), and
//! map what happened to `Ok(Summary)` or an `Error` carrying the partial summary.

use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::{Instant, SystemTime};

use goose::GooseError;
use tokio::sync::OwnedMutexGuard;

use crate::attack;
use crate::config::Config;
use crate::error::Error;
use crate::preflight::{self, Fatal};
use crate::run_state::RunState;
use crate::summary::{ReportFiles, Summary};

/// goose's killswitch and ctrl-c handling are process-wide, so two runs at once in one process
/// would stop each other: runs wait for each other here. The attack task holds it until goose
/// has stopped, even when the `run` future was dropped before.
static ONE_RUN_AT_A_TIME: LazyLock<Arc<tokio::sync::Mutex<()>>> =
    LazyLock::new(|| Arc::new(tokio::sync::Mutex::new(())));

/// Stops the run if the `run` future is dropped before the attack ends (a caller's `select!`
/// or timeout): in-flight requests end, goose stops its users and writes its reports, in the
/// background, instead of users running on without anyone waiting for them.
struct StopOnDrop(Option<Arc<RunState>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(state) = self.0.take() {
            state.stop(Fatal::Interrupted);
        }
    }
}

/// Runs one load-generation phase against `config.host` and returns its summary, which is also
/// written to `config.report_dir/loadgen-summary.json` with goose's reports beside it.
///
/// `Ok` means the run completed; whether every request succeeded and every download verified is
/// `Summary::ok`. `Err` means the run could not start or was stopped (unreachable server, wrong
/// secret, server gone mid-run); the summary of what ran is still written, and is in the error
/// (`Error::partial_summary`). Every wait is bounded by `config.timeout`, so `run` never hangs.
///
/// Dropping the future stops the run (as ctrl-c does) without a summary; goose winds down in the
/// background and the next `run` waits for it.
pub async fn run(config: Config) -> Result<Summary, Error> {
    if config.scenario.is_hostile() {
        // Raw sockets, no goose: attacks run beside each other and beside a goose run.
        config.validate().map_err(Error::Config)?;
        create_report_dir(&config)?;
        return crate::hostile::run(config).await;
    }
    let one_run = Arc::clone(&ONE_RUN_AT_A_TIME).lock_owned().await;
    config.validate().map_err(Error::Config)?;
    let upload_size = config.upload_size().map_err(Error::Config)?;
    create_report_dir(&config)?;
    let started_at = SystemTime::now();
    let clock = Instant::now();
    let state = Arc::new(
        RunState::new(config, upload_size)
            .map_err(|e| Error::Config(format!("cannot build an HTTP client: {e}")))?,
    );
    let config = &state.config;

    let checked = preflight::check(state.check_client(), &config.host, &config.secret).await;
    let goose_ran = checked.is_ok();
    let (early_stop, goose_error) = match checked {
        Err(fatal) => (Some(fatal), None),
        Ok(()) => {
            if !config.quiet {
                tracing::info!(
                    host = %config.host,
                    scenario = %config.scenario,
                    users = config.users,
                    "share-server answers and accepts the secret; starting goose"
                );
            }
            match attack_in_task(&state, one_run).await {
                Ok(result) => (None, result.err()),
                Err(fatal) => (Some(fatal), None),
            }
        }
    };

    let fatal = early_stop.or_else(|| state.fatal());
    let error_text = fatal
        .as_ref()
        .map(|f| f.describe(&config.host))
        .or_else(|| goose_error.as_ref().map(|e| format!("goose: {e}")));
    let mut summary = state.recorder.summary(clock.elapsed(), error_text);
    summary.host = config.host.clone();
    summary.scenario = Some(config.scenario);
    summary.started = humantime::format_rfc3339_seconds(started_at).to_string();
    summary.loadgen_peak_rss_bytes = memstat::process::read(None).ok().map(|m| m.vm_hwm_bytes);
    summary.reports = ReportFiles::new(&config.report_dir);
    if !goose_ran {
        summary.reports.goose.clear();
    }
    summary.config = Some(config.redacted());
    summary.known_uploads = config.known_uploads.len();
    write_summary(&summary)?;

    let host = config.host.clone();
    let boxed = Box::new(summary);
    match (fatal, goose_error) {
        (Some(Fatal::Unreachable(detail)), _) => Err(Error::Unreachable {
            host,
            detail,
            summary: boxed,
        }),
        (Some(Fatal::WrongSecret), _) => Err(Error::WrongSecret {
            host,
            summary: boxed,
        }),
        (Some(Fatal::ServerGone(detail)), _) => Err(Error::ServerGone {
            host,
            detail,
            summary: boxed,
        }),
        (Some(Fatal::Interrupted), _) => Err(Error::Interrupted { summary: boxed }),
        (None, Some(source)) => Err(Error::Goose {
            source,
            summary: boxed,
        }),
        (None, None) => Ok(*boxed),
    }
}

/// Runs the attack in its own task, which keeps `one_run` until goose has stopped: if this
/// future is dropped, `StopOnDrop` stops the run and the task still winds goose down.
async fn attack_in_task(
    state: &Arc<RunState>,
    one_run: OwnedMutexGuard<()>,
) -> Result<Result<(), GooseError>, Fatal> {
    let attack_state = Arc::clone(state);
    let attack = tokio::spawn(async move {
        let result = attack::execute(&attack_state).await;
        // A killswitch pulled by `RunState::stop` must not outlive the run: goose's ctrl-c
        // handler would take it for a first ctrl-c and exit on the next one.
        goose::reset_killswitch();
        drop(one_run);
        result
    });
    let mut stop_on_drop = StopOnDrop(Some(Arc::clone(state)));
    let joined = attack.await;
    stop_on_drop.0 = None;
    match joined {
        Ok(result) => Ok(result),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // The runtime is shutting down under us.
        Err(_) => Err(Fatal::Interrupted),
    }
}

fn create_report_dir(config: &Config) -> Result<(), Error> {
    std::fs::create_dir_all(&config.report_dir).map_err(|source| Error::Io {
        action: "creating the report directory",
        path: config.report_dir.clone(),
        source,
    })
}

pub(crate) fn write_summary(summary: &Summary) -> Result<(), Error> {
    let path: &Path = &summary.reports.summary;
    let io_error = |source| Error::Io {
        action: "writing the summary",
        path: path.to_owned(),
        source,
    };
    let json = serde_json::to_vec_pretty(summary).map_err(|e| io_error(e.into()))?;
    // Written to a temporary name first, so a reader never sees half a summary.
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, json).map_err(io_error)?;
    std::fs::rename(&partial, path).map_err(io_error)
}
