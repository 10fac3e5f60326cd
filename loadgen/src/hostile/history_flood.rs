//! `history-flood`: `history-requests` pipelined `GET /-{id}` with `Range: bytes=0-0` and a
//! 600-byte User-Agent, spread over the connections; each records a download row on the old
//! server. The owner then opens the entry's download history (in `hostile::run`).

use std::sync::Arc;

use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::conn::Attack;
use super::response;

/// Bytes of each request's User-Agent.
const USER_AGENT_BYTES: usize = 600;

pub(crate) async fn run(attack: &Arc<Attack>, id: String) {
    let id = Arc::new(id);
    attack
        .each(move |attack, i| connection(attack, i, Arc::clone(&id)))
        .await;
}

/// Connection `i`'s share of the requests.
fn share(total: usize, connections: usize, i: usize) -> usize {
    total / connections + usize::from(i < total % connections)
}

async fn connection(attack: Arc<Attack>, i: usize, id: Arc<String>) {
    let mut left = share(attack.config.history_requests, attack.connections, i);
    let request = request(&attack.host, &id);
    // A server that closes after some requests gets the rest on a new connection.
    while left > 0 && !attack.is_over() {
        let Some(stream) = attack.connect(i).await else {
            return;
        };
        // The write half lives until the answers are read: dropping it sends a FIN, and the
        // server would drop the requests still queued.
        let (read, mut write) = stream.into_split();
        let answered = tokio::select! {
            ((), answered) = async {
                tokio::join!(
                    write_all(&attack, &mut write, &request, left),
                    read_all(&attack, read, left)
                )
            } => answered,
            () = attack.over() => return,
        };
        if answered == 0 {
            return;
        }
        left -= answered;
    }
}

fn request(host: &str, id: &str) -> Vec<u8> {
    let prefix = "loadgen-history-flood/";
    let agent = format!("{prefix}{}", "a".repeat(USER_AGENT_BYTES - prefix.len()));
    format!(
        "GET /-{id} HTTP/1.1\r\nHost: {host}\r\nRange: bytes=0-0\r\nUser-Agent: {agent}\r\n\r\n"
    )
    .into_bytes()
}

async fn write_all(attack: &Attack, write: &mut OwnedWriteHalf, request: &[u8], n: usize) {
    let mut write = BufWriter::with_capacity(64 * 1024, write);
    for _ in 0..n {
        attack.tally.request_started();
        if let Err(e) = write.write_all(request).await {
            attack.tally.io_failed(&e);
            return;
        }
        attack.tally.sent(request.len());
        attack.tally.request_sent();
    }
    if let Err(e) = write.flush().await {
        attack.tally.io_failed(&e);
    }
}

/// Reads the answers in order until all `n` came or the connection ended; how many came.
async fn read_all(attack: &Attack, read: OwnedReadHalf, n: usize) -> usize {
    let mut read = BufReader::new(read);
    for answered in 0..n {
        let head = match response::read_head(&mut read).await {
            Ok(Some(head)) => head,
            Ok(None) => {
                attack.tally.closed();
                return answered;
            }
            Err(e) => {
                attack.tally.io_failed(&e);
                return answered;
            }
        };
        attack.tally.status(head.status);
        attack.tally.received(head.bytes);
        match response::skip_body(&mut read, head.framing).await {
            Ok(bytes) => attack
                .tally
                .received(usize::try_from(bytes).unwrap_or(usize::MAX)),
            Err(e) => {
                attack.tally.io_failed(&e);
                return answered;
            }
        }
        if head.framing == response::Framing::UntilClose {
            return answered + 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_requests_have_the_agent() {
        let total: usize = (0..3).map(|i| share(20_000, 3, i)).sum();
        assert_eq!(total, 20_000);
        let r = String::from_utf8(request("127.0.0.1:1", "abc")).unwrap();
        assert!(r.starts_with("GET /-abc HTTP/1.1\r\n"));
        let agent = r
            .lines()
            .find_map(|l| l.strip_prefix("User-Agent: "))
            .unwrap();
        assert_eq!(agent.len(), USER_AGENT_BYTES);
    }
}
