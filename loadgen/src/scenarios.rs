//! The goose scenarios: each logs in once per user (`on_start`), then repeats its transaction
//! once per iteration. `upload`, `slow-upload`, `abort-upload` and `guest-upload` share
//! `upload.rs` (a guest user's login also creates its link); `download` is `download.rs`;
//! `delete` is `delete.rs`; `mixed` registers the first four with weights.

mod churn;
mod delete;
mod download;
mod login;
mod upload;

use std::sync::Arc;
use std::time::{Duration, Instant};

use goose::GooseError;
use goose::goose::{
    GooseMethod, GooseRequest, GooseResponse, GooseUser, Scenario as GooseScenario, Transaction,
    TransactionError, TransactionFunction, TransactionResult,
};
use goose::metrics::GooseRequestMetric;
use reqwest::{RequestBuilder, Response, StatusCode};

use crate::config::Scenario;
use crate::http::Failure;
use crate::recorder::{Kind, Outcome};
use crate::run_state::RunState;

/// How long a transaction of a stopped run waits before returning.
const STOPPED_PAUSE: Duration = Duration::from_millis(100);

/// What a transaction does.
#[derive(Debug, Clone, Copy)]
enum Action {
    Login,
    Upload,
    Download,
    Churn,
    Delete,
}

/// The goose scenario for `scenario`, with `weight` users per round of allocation.
pub(crate) fn build(
    state: &Arc<RunState>,
    scenario: Scenario,
    weight: usize,
) -> Result<GooseScenario, GooseError> {
    let main = match scenario {
        Scenario::Download => Action::Download,
        Scenario::Churn => Action::Churn,
        Scenario::Delete => Action::Delete,
        _ => Action::Upload,
    };
    Ok(GooseScenario::new(scenario.name())
        .set_weight(weight)?
        .register_transaction(
            Transaction::new(transaction(state, scenario, Action::Login))
                .set_name("login")
                .set_on_start(),
        )
        .register_transaction(
            Transaction::new(transaction(state, scenario, main)).set_name(scenario.name()),
        ))
}

fn transaction(state: &Arc<RunState>, scenario: Scenario, action: Action) -> TransactionFunction {
    let state = Arc::clone(state);
    Arc::new(move |user| {
        let state = Arc::clone(&state);
        Box::pin(async move {
            if state.stopped() {
                // goose asks users to exit only every few hundred ms; pausing here keeps users
                // from spinning through empty iterations until then.
                tokio::time::sleep(STOPPED_PAUSE).await;
                return Ok(());
            }
            let result = match action {
                Action::Login => return login::transaction(&state, user, scenario).await,
                Action::Upload => upload::transaction(&state, user, scenario).await,
                Action::Download => download::transaction(&state, user).await,
                Action::Churn => churn::transaction(&state, user).await,
                Action::Delete => delete::transaction(&state, user).await,
            };
            if let Some(pause) = state.config.think_time {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = state.cancel.cancelled() => {}
                }
            }
            result
        })
    })
}

/// One request a scenario sends: `method path`, counted under `name` in goose's tables, where
/// `expect` (200 unless set) is the status goose counts as a success.
pub(crate) struct Request<'a> {
    pub method: GooseMethod,
    pub path: &'a str,
    pub name: &'a str,
    pub expect: Option<StatusCode>,
}

/// A sent request: goose's metric (for `finish`), the response and when it was sent.
pub(crate) struct Sent {
    pub metric: GooseRequestMetric,
    pub response: Result<Response, reqwest::Error>,
    pub started: Instant,
}

/// Sends `request` as `user` with the run's timeout; `shape` adds headers and the body.
pub(crate) async fn send(
    state: &RunState,
    user: &mut GooseUser,
    request: Request<'_>,
    shape: impl FnOnce(RequestBuilder) -> RequestBuilder,
) -> Result<Sent, Box<TransactionError>> {
    let builder = shape(user.get_request_builder(&request.method, request.path)?)
        .timeout(state.config.timeout);
    let mut goose_request = GooseRequest::builder()
        .set_request_builder(builder)
        .name(request.name);
    if let Some(status) = request.expect {
        goose_request = goose_request.expect_status_code(status.as_u16());
    }
    let started = Instant::now();
    let GooseResponse { request, response } = user.request(goose_request.build()).await?;
    Ok(Sent {
        metric: request,
        response,
        started,
    })
}

/// One finished request, for `finish`.
pub(crate) struct Finished {
    pub scenario: Scenario,
    pub kind: Kind,
    pub started: Instant,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

/// Records a finished request and turns a failure into the transaction's error. goose already
/// counted the request when its headers arrived; `set_failure` corrects that for failures it
/// could not see (a body that did not verify, a missing id). A connection-level failure also
/// checks that the server is still there.
pub(crate) async fn finish(
    state: &RunState,
    user: &mut GooseUser,
    request: &mut GooseRequestMetric,
    done: Finished,
    result: Result<(), Failure>,
) -> TransactionResult {
    let failure = result.err();
    let reason = failure.as_ref().map(|f| f.reason(done.kind.name()));
    state.recorder.request(Outcome {
        scenario: done.scenario,
        kind: done.kind,
        started: done.started,
        bytes_sent: done.bytes_sent,
        bytes_received: done.bytes_received,
        failure: reason.clone(),
    });
    let (Some(failure), Some(reason)) = (failure, reason) else {
        return Ok(());
    };
    if matches!(failure, Failure::Transport(_)) {
        state.check_server().await;
    }
    user.set_failure(&reason, request, None, None)
}
