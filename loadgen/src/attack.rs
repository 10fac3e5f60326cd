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
                .user_agent(concat!("loadgen/", env!("CARGO_PKG_VERSION"))),
        )?;
    for (scenario, weight) in config.weighted_scenarios() {
        attack = attack.register_scenario(scenarios::build(state, scenario, weight)?);
    }
    // With both iterations and a run time, goose takes the iterations and we enforce the run
    // time: when it is over, users stop after their current request.
    let deadline = match (config.iterations, config.run_time) {
        (Some(_), Some(run_time)) => Some(tokio::spawn(async move {
            tokio::time::sleep(run_time).await;
            goose::trigger_killswitch("run time reached");
        })),
        _ => None,
    };
    let result = attack.execute().await;
    if let Some(deadline) = deadline {
        // goose's killswitch is process-wide: it must not fire into a later run.
        deadline.abort();
    }
    result.map(|_metrics| ())
}

fn goose_configuration(state: &RunState) -> GooseConfiguration {
    let config = &state.config;
    let mut goose = GooseConfiguration::default();
    goose.host = Some(config.host.clone());
    goose.users = Some(config.users);
    goose.increase_rate = Some(config.increase_rate.to_string());
    match (config.iterations, config.run_time) {
        (Some(iterations), _) => goose.iterations = Some(iterations),
        (None, Some(run_time)) => {
            goose.run_time = Some(whole_seconds(run_time).to_string());
            // Keep the requests made while users were starting, as our own tally does.
            goose.no_reset_metrics = true;
        }
        (None, None) => {} // refused by Config::validate
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
