//! Turning a `Config` into a goose attack and running it.
//!
//! goose is configured in code (not from the process's arguments, which belong to the loadgen
//! CLI or to the rig): no telnet or WebSocket controller, reports into the report directory, one
//! HTTP client with a cookie jar per user, and the per-request timeout from the config instead
//! of goose's 60 s default, which a 618 MB upload outlasts.

use std::sync::Arc;
use std::time::Duration;

use goose::GooseAttack;
use goose::GooseError;
use goose::client::GooseClientBuilder;
use goose::config::GooseConfiguration;

use crate::http::is_plain_http;
use crate::preflight::Fatal;
use crate::run_state::RunState;
use crate::scenarios;
use crate::summary::GOOSE_REPORTS;

/// Runs the attack until every user has finished its iterations, the run time is over, or the
/// run was stopped (`RunState::stop` pulls goose's killswitch).
pub(crate) async fn execute(state: &Arc<RunState>) -> Result<(), GooseError> {
    let config = &state.config;
    let mut attack = GooseAttack::initialize_with_config(goose_configuration(state))?
        .set_client_builder_with_cookies(
            GooseClientBuilder::new()
                .timeout(config.timeout)
                // share-server never compresses; asking for gzip would only add headers.
                .gzip(false)
                .user_agent(concat!("loadgen/", env!("CARGO_PKG_VERSION")))
                // goose has no CA-store knob: for an http:// host (no TLS ever) this keeps
                // reqwest from loading the system's CA certificates, which fails where there
                // are none (see `http::client_builder`). https hosts keep verification.
                .accept_invalid_certs(is_plain_http(&config.host)),
        )?;
    for (scenario, weight) in config.weighted_scenarios() {
        attack = attack.register_scenario(scenarios::build(state, scenario, weight)?);
    }
    let watcher = tokio::spawn(watch(Arc::clone(state)));
    let result = attack.execute().await;
    // goose's killswitch is process-wide: the watcher must not pull it in a later run.
    watcher.abort();
    result.map(|_metrics| ())
}

/// How often the watcher looks at goose's killswitch and the clock.
const WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// Runs beside goose. With both iterations and a run time, goose takes the iterations and this
/// enforces the run time: when it is over, users stop after their current request. And when
/// something else pulls goose's killswitch (its ctrl-c handler), in-flight requests are stopped
/// too and the run ends as interrupted, rather than finishing 618 MB uploads first.
async fn watch(state: Arc<RunState>) {
    let deadline = match (state.config.iterations, state.config.run_time) {
        (Some(_), Some(run_time)) => Some(tokio::time::Instant::now() + run_time),
        _ => None,
    };
    let mut deadline_passed = false;
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    loop {
        tick.tick().await;
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) && !deadline_passed {
            deadline_passed = true;
            goose::trigger_killswitch("run time reached");
        }
        if goose::is_killswitch_triggered() && !deadline_passed && state.fatal().is_none() {
            state.stop(Fatal::Interrupted);
            return;
        }
    }
}

fn goose_configuration(state: &RunState) -> GooseConfiguration {
    let config = &state.config;
    let mut goose = GooseConfiguration::default();
    goose.host = Some(config.host.clone());
    goose.users = Some(config.users);
    goose.increase_rate = Some(config.increase_rate.to_string());
    match (config.effective_iterations(), config.run_time) {
        (Some(iterations), _) => goose.iterations = Some(iterations),
        (None, run_time) => {
            goose.run_time = run_time.map(|t| whole_seconds(t).to_string());
            // Keep the requests made while users were starting, as our own tally does.
            goose.no_reset_metrics = true;
        }
    }
    goose.report_file = GOOSE_REPORTS
        .iter()
        .map(|name| config.report_dir.join(name).to_string_lossy().into_owned())
        .collect();
    goose.no_telnet = true;
    goose.timeout = Some(whole_seconds(config.timeout).to_string());
    if config.quiet {
        goose.quiet = 1;
        goose.no_print_metrics = true;
    }
    goose
}

/// goose takes whole seconds; round up so a run is never shorter than asked.
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
