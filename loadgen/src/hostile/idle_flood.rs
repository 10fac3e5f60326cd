//! `idle-flood`: connections that send nothing; when the server closes one, it is opened again
//! (after a short pause) until the end.

use std::sync::Arc;
use std::time::Duration;

use super::conn::Attack;

/// Pause before reopening, so a server that closes at once is not hammered in a loop.
const REOPEN_PAUSE: Duration = Duration::from_millis(200);

pub(crate) async fn run(attack: &Arc<Attack>) {
    attack.each(connection).await;
}

async fn connection(attack: Arc<Attack>, i: usize) {
    while !attack.is_over() {
        if let Some(mut stream) = attack.connect(i).await
            && attack.hold(&mut stream).await
        {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(REOPEN_PAUSE) => {}
            () = attack.over() => return,
        }
    }
}
