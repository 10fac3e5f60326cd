//! `stalled-guest-upload`: the owner creates an unlimited guest link; then each connection
//! starts a multipart upload to it with a 1 GB Content-Length, sends `stall-after` bytes of
//! the file and stalls, reading whatever the server answers; an upload the server ends is
//! started again on a new connection.

use std::sync::Arc;

use super::conn::{Attack, PIECE};

/// The announced body: far more than is ever sent.
const ANNOUNCED: u64 = 1_000_000_000;
const BOUNDARY: &str = "loadgen-stalled-guest-upload";
static FILLER: [u8; PIECE] = [b's'; PIECE];

pub(crate) async fn run(attack: &Arc<Attack>, link: String) {
    let link = Arc::new(link);
    attack
        .each_repeating(move |attack, i| connection(attack, i, Arc::clone(&link)))
        .await;
}

async fn connection(attack: Arc<Attack>, i: usize, link: Arc<String>) -> bool {
    let Some(mut stream) = attack.connect(i).await else {
        return false;
    };
    let head = format!(
        "POST /api/guest/{link} HTTP/1.1\r\nHost: {}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
         Content-Length: {ANNOUNCED}\r\n\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"stall-{i}.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n",
        attack.host
    );
    attack.tally.request_started();
    if !attack.send(&mut stream, head.as_bytes()).await {
        return false;
    }
    let mut left = attack.config.stall_after.bytes();
    while left > 0 {
        let n = usize::try_from(left).unwrap_or(PIECE).min(PIECE);
        if !attack.send(&mut stream, &FILLER[..n]).await {
            return false;
        }
        left -= n as u64;
    }
    attack.tally.request_sent();
    attack.hold(&mut stream).await
}
