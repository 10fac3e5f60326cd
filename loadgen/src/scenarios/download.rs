//! `download`: fetch an uploaded entry whole (length and SHA-256 checked), then make
//! `ranges_per_download` random single-range requests, as a video player seeking does, each
//! checked byte for byte against the regenerated content.
//!
//! Entries come from `known_uploads` and this run's uploads, round-robin. When there is none
//! yet (a `download` run on its own, or download users starting before any upload finished in
//! `mixed`), the user uploads one entry of `size` first and downloads that.

use goose::goose::{GooseMethod, GooseUser, TransactionError, TransactionResult};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, RANGE};

use super::{Finished, Request, Sent, finish, send, upload};
use crate::config::Scenario;
use crate::content::{SplitMix, purpose};
use crate::http::{Failure, next_chunk, status_failure};
use crate::recorder::Kind;
use crate::run_state::RunState;
use crate::summary::{Mismatch, UploadRecord};
use crate::verify::{Differs, Expected, RangeCheck, WholeCheck};

pub(super) async fn transaction(state: &RunState, user: &mut GooseUser) -> TransactionResult {
    let record = match state.next_download() {
        Some(record) => record,
        None => match upload::upload(state, user, Scenario::Download).await? {
            Some(record) => record,
            None => return Ok(()),
        },
    };
    let mut first_error = whole(state, user, &record, Scenario::Download).await.err();
    let mut rng = SplitMix::derive(
        state.config.seed,
        purpose::RANGES,
        user.weighted_users_index,
        user.get_iterations(),
    );
    for _ in 0..state.config.ranges_per_download {
        if state.stopped() || record.size == 0 {
            break;
        }
        let max_len = state.config.range_size.bytes();
        let start = rng.below(record.size);
        let len = 1 + rng.below(max_len.min(record.size - start));
        if let Err(e) = range(
            state,
            user,
            &record,
            start,
            start + len - 1,
            Scenario::Download,
        )
        .await
        {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The whole entry, length and SHA-256 checked; recorded under `scenario`.
pub(super) async fn whole(
    state: &RunState,
    user: &mut GooseUser,
    record: &UploadRecord,
    scenario: Scenario,
) -> Result<(), Box<TransactionError>> {
    let path = format!("/-{}", record.id);
    let get = Request {
        method: GooseMethod::Get,
        path: &path,
        name: "/-{id}",
        expect: None,
    };
    let Sent {
        mut metric,
        response,
        started,
    } = send(state, user, get, |b| b).await?;
    let mut received = 0;
    let result = async {
        let mut response = response.map_err(|e| Failure::transport(&e))?;
        if response.status() != StatusCode::OK {
            return Err(status_failure(response, &state.cancel).await);
        }
        let mut check = WholeCheck::default();
        while let Some(chunk) = next_chunk(&mut response, &state.cancel).await? {
            received += chunk.len() as u64;
            check.update(&chunk);
        }
        check.finish(record).map_err(|detail| Failure::Mismatch {
            detail,
            offset: None,
        })
    }
    .await;
    note_verification(state, record, "download", None, &result);
    let done = Finished {
        scenario,
        kind: Kind::Download,
        started,
        bytes_sent: 0,
        bytes_received: received,
    };
    finish(state, user, &mut metric, done, result).await
}

/// Bytes `first..=last` of the entry, checked byte for byte; recorded under `scenario`.
pub(super) async fn range(
    state: &RunState,
    user: &mut GooseUser,
    record: &UploadRecord,
    first: u64,
    last: u64,
    scenario: Scenario,
) -> Result<(), Box<TransactionError>> {
    let path = format!("/-{}", record.id);
    let get = Request {
        method: GooseMethod::Get,
        path: &path,
        name: "/-{id} (range)",
        expect: Some(StatusCode::PARTIAL_CONTENT),
    };
    let range = format!("bytes={first}-{last}");
    let Sent {
        mut metric,
        response,
        started,
    } = send(state, user, get, |b| b.header(RANGE, range)).await?;
    let mut received = 0;
    let result = async {
        let mut response = response.map_err(|e| Failure::transport(&e))?;
        if response.status() != StatusCode::PARTIAL_CONTENT {
            return Err(status_failure(response, &state.cancel).await);
        }
        let expected_range = format!("bytes {first}-{last}/{}", record.size);
        let content_range = response
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if content_range != expected_range {
            return Err(Failure::Protocol(format!(
                "Content-Range is not the range asked for (expected \"{expected_range}\")"
            )));
        }
        let mut check = RangeCheck::new(Expected::of(record), first)
            .await
            .map_err(|e| Failure::Local(format!("reading the expected bytes: {e}")))?;
        let len = last - first + 1;
        while let Some(chunk) = next_chunk(&mut response, &state.cancel).await? {
            received += chunk.len() as u64;
            if received > len {
                return Err(Failure::Mismatch {
                    detail: format!("more than the {len} bytes asked for"),
                    offset: Some(first + len),
                });
            }
            match check.update(&chunk).await {
                Ok(Ok(())) => {}
                Ok(Err(Differs(offset))) => {
                    return Err(Failure::Mismatch {
                        detail: format!("byte {offset} differs"),
                        offset: Some(offset),
                    });
                }
                Err(e) => return Err(Failure::Local(format!("reading the expected bytes: {e}"))),
            }
        }
        if received < len {
            return Err(Failure::Mismatch {
                detail: format!("{received} of the {len} bytes asked for"),
                offset: Some(check.offset()),
            });
        }
        Ok(())
    }
    .await;
    note_verification(state, record, "range", Some((first, last)), &result);
    let done = Finished {
        scenario,
        kind: Kind::Range,
        started,
        bytes_sent: 0,
        bytes_received: received,
    };
    finish(state, user, &mut metric, done, result).await
}

/// Counts a verified download or range, or records the mismatch in detail.
fn note_verification(
    state: &RunState,
    record: &UploadRecord,
    kind: &str,
    range: Option<(u64, u64)>,
    result: &Result<(), Failure>,
) {
    match result {
        Ok(()) if range.is_some() => state.recorder.verified_range(),
        Ok(()) => state.recorder.verified_download(),
        Err(Failure::Mismatch { detail, offset }) => state.recorder.mismatch(Mismatch {
            id: record.id.clone(),
            kind: kind.to_owned(),
            range,
            offset: *offset,
            detail: detail.clone(),
        }),
        Err(_) => {}
    }
}
