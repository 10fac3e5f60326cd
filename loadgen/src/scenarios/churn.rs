//! `churn`: what a share server sees over a day, compressed for soak runs. Each iteration
//! uploads an entry that expires `expire_after` later, downloads it whole and one random range
//! (both verified), then deletes it (and checks it is gone) with probability `delete_fraction`; the entries left expire
//! and the server's garbage collection removes them. Memory must stay flat through all of it.

use goose::goose::{GooseUser, TransactionResult};

use super::{delete, download, upload};
use crate::config::Scenario;
use crate::content::{SplitMix, purpose};
use crate::run_state::RunState;

pub(super) async fn transaction(state: &RunState, user: &mut GooseUser) -> TransactionResult {
    let Some(record) = upload::upload(state, user, Scenario::Churn).await? else {
        return Ok(());
    };
    let mut rng = SplitMix::derive(
        state.config.seed,
        purpose::CHURN,
        user.weighted_users_index,
        user.get_iterations(),
    );
    let mut first_error = download::whole(state, user, &record, Scenario::Churn)
        .await
        .err();
    if record.size > 0 && !state.stopped() {
        let start = rng.below(record.size);
        let len = 1 + rng.below(state.config.range_size.bytes().min(record.size - start));
        if let Err(e) = download::range(
            state,
            user,
            &record,
            start,
            start + len - 1,
            Scenario::Churn,
        )
        .await
        {
            first_error.get_or_insert(e);
        }
    }
    // delete_fraction in [0, 1] (validated): a draw below it in millionths deletes.
    let deleting = rng.below(1_000_000) < (state.config.delete_fraction * 1e6) as u64;
    if deleting
        && !state.stopped()
        && let Err(e) = delete::delete_confirmed(state, user, record.id, Scenario::Churn).await
    {
        first_error.get_or_insert(e);
    }
    first_error.map_or(Ok(()), Err)
}
