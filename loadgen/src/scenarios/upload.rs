//! `upload`, `slow-upload` and `abort-upload`: one multipart `POST /api/entry` shaped like a
//! browser's (part `file` with a filename and a content type, then part `note`), its body
//! streamed by `body.rs`. `guest-upload`: the same `file` part alone, to the user's guest link
//! (`POST /api/guest/{id}`; the request still carries the owner's cookie, which that route
//! ignores). The id the server answers and the content's SHA-256 become an
//! `UploadRecord`.

use std::sync::Arc;

use goose::goose::{GooseMethod, GooseUser, TransactionError, TransactionResult};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};

use super::login::GuestLink;
use super::{Finished, Request, Sent, finish, send};
use crate::body::{self, Progress};
use crate::config::Scenario;
use crate::http::{Failure, read_id, status_failure};
use crate::recorder::Kind;
use crate::run_state::RunState;
use crate::summary::UploadRecord;

const UPLOAD_PATH: &str = "/api/entry";
const GUEST_UPLOAD_PATH: &str = "/api/guest";

pub(super) async fn transaction(
    state: &RunState,
    user: &mut GooseUser,
    scenario: Scenario,
) -> TransactionResult {
    upload(state, user, scenario).await.map(|_| ())
}

/// Uploads one entry; `Ok(Some(record))` when the server stored it, `Ok(None)` for an upload
/// aborted on purpose. Failures are recorded and returned as the transaction's error.
pub(super) async fn upload(
    state: &RunState,
    user: &mut GooseUser,
    scenario: Scenario,
) -> Result<Option<UploadRecord>, Box<TransactionError>> {
    let user_index = user.weighted_users_index;
    let iteration = user.get_iterations();
    let plan = state.upload_plan(scenario, user_index, iteration);
    let size = plan.spec.size;
    let progress = Arc::new(Progress::default());
    let stream = body::stream(plan.spec, Arc::clone(&progress), state.cancel.clone());
    let part = Part::stream_with_length(reqwest::Body::wrap_stream(stream), size)
        .file_name(plan.filename.clone())
        .mime_str(plan.content_type)
        .map_err(|e| Box::new(TransactionError::Reqwest(e)))?;
    let form = Form::new().part("file", part);
    // A guest upload has only its `file` part (the server refuses a note).
    let guest_link = user.get_session_data::<GuestLink>().map(|l| l.0.clone());
    let form = match guest_link {
        Some(_) => form,
        None => form.text(
            "note",
            format!("loadgen {scenario}: user {user_index}, iteration {iteration}"),
        ),
    };
    let path = match (&guest_link, state.config.expire_after) {
        (Some(link), _) => format!("{GUEST_UPLOAD_PATH}/{link}"),
        (None, Some(after)) => format!(
            "{UPLOAD_PATH}?expiration={}",
            humantime::format_rfc3339_seconds(std::time::SystemTime::now() + after)
        ),
        (None, None) => UPLOAD_PATH.to_owned(),
    };
    let name = if guest_link.is_some() {
        "/api/guest/{id}"
    } else {
        UPLOAD_PATH
    };
    let post = Request {
        method: GooseMethod::Post,
        path: &path,
        name,
        expect: None,
    };
    let Sent {
        mut metric,
        response,
        started,
    } = send(state, user, post, |b| {
        // Guest uploads answer the bare URL unless asked for JSON.
        b.header(reqwest::header::ACCEPT, "application/json")
            .multipart(form)
    })
    .await?;
    let answer = match response {
        Ok(mut response) if response.status() == StatusCode::OK => {
            read_id(&mut response, &state.cancel, "upload").await
        }
        Ok(response) => Err(status_failure(response, &state.cancel).await),
        Err(e) => Err(match progress.error() {
            // Our side ended the body (file unreadable, run stopped): not the server's fault.
            Some(local) => Failure::Local(local),
            None => Failure::transport(&e),
        }),
    };
    let seconds = started.elapsed().as_secs_f64();
    let mut done = Finished {
        scenario,
        kind: Kind::Upload,
        started,
        bytes_sent: progress.sent(),
        bytes_received: 0,
    };

    if scenario == Scenario::AbortUpload {
        done.kind = Kind::AbortedUpload;
        let result = match answer {
            Err(Failure::Transport(_)) if progress.aborted() => Ok(()),
            Err(failure) => Err(failure),
            Ok(id) => Err(Failure::Protocol(format!(
                "the server stored {id} although loadgen cut the body off"
            ))),
        };
        let intended = result.is_ok();
        finish(state, user, &mut metric, done, result).await?;
        if intended {
            // The request error was the point: take it off goose's failure count.
            user.set_success(&mut metric)?;
        }
        return Ok(None);
    }

    let record = answer.and_then(|id| {
        let sha256 = progress.sha256().ok_or_else(|| {
            Failure::Local("the server answered before the whole body was sent".into())
        })?;
        Ok(UploadRecord {
            id,
            size,
            sha256,
            seed: plan.seed,
            file: state.config.file.clone(),
            filename: plan.filename,
            scenario: Some(scenario),
            user: user_index,
            iteration,
            seconds,
        })
    });
    match record {
        Ok(record) => {
            state.recorder.upload(record.clone());
            // A delete user deletes its own upload: offered to the others too, a second user
            // could claim and delete it as well.
            if scenario != Scenario::Delete {
                state.add_downloadable(record.clone());
            }
            finish(state, user, &mut metric, done, Ok(())).await?;
            Ok(Some(record))
        }
        Err(failure) => {
            finish(state, user, &mut metric, done, Err(failure)).await?;
            Ok(None)
        }
    }
}
