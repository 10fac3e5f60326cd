//! `run`: check the server, run the attack, write the summary (always, also on failure), and
//! map what happened to `Ok(Summary)` or an `Error` carrying the partial summary.

use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::attack;
use crate::config::Config;
use crate::error::Error;
use crate::preflight::{self, Fatal};
use crate::run_state::RunState;
use crate::summary::{ReportFiles, Summary};

/// goose's killswitch and ctrl-c handling are process-wide, so two runs at once in one process
/// would stop each other: runs wait for each other here.
static ONE_RUN_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs one load-generation phase against `config.host` and returns its summary, which is also
/// written to `config.report_dir/loadgen-summary.json` with goose's reports beside it.
///
/// `Ok` means the run completed; whether every request succeeded and every download verified is
/// `Summary::ok`. `Err` means the run could not start or was stopped (unreachable server, wrong
/// secret, server gone mid-run); the summary of what ran is still written, and is in the error
/// (`Error::partial_summary`). Every wait is bounded by `config.timeout`, so `run` never hangs.
pub async fn run(config: Config) -> Result<Summary, Error> {
    let _one_run = ONE_RUN_AT_A_TIME.lock().await;
    config.validate().map_err(Error::Config)?;
    let upload_size = config.upload_size().map_err(Error::Config)?;
    std::fs::create_dir_all(&config.report_dir).map_err(|source| Error::Io {
        action: "creating the report directory",
        path: config.report_dir.clone(),
        source,
    })?;
    let started_at = SystemTime::now();
    let clock = Instant::now();
    let state = Arc::new(
        RunState::new(config, upload_size)
            .map_err(|e| Error::Config(format!("cannot build an HTTP client: {e}")))?,
    );
    let config = &state.config;

    let checked = preflight::check(state.check_client(), &config.host, &config.secret).await;
    let (refused, goose_error) = match checked {
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
            let result = attack::execute(&state).await;
            // A killswitch pulled by `RunState::stop` must not outlive the run: goose's ctrl-c
            // handler would take it for a first ctrl-c and exit on the next one.
            goose::reset_killswitch();
            (None, result.err())
        }
    };

    let goose_ran = refused.is_none();
    let fatal = refused.or_else(|| state.fatal());
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

fn write_summary(summary: &Summary) -> Result<(), Error> {
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
