//! Hostile and broken clients at the connection level: slowloris headers,
//! stalls and aborts at every phase of an upload, and more connections than
//! the cap. Each ends with the server still serving and nothing partial
//! stored.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{DataDir, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(30);

async fn connect(server: &TestServer) -> TcpStream {
    TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes the connection (EOF or reset); panics
/// after `WAIT`. Returns what was read.
async fn until_closed(sock: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, sock.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server kept the connection open for {WAIT:?}"),
        }
    }
}

async fn healthy(server: &TestServer) {
    let res = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

/// Request head and multipart start of an upload announcing `body_len` bytes.
fn upload_head(cookie: &str, body_len: u64) -> String {
    format!(
        "POST /api/entry HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\
         Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: {body_len}\r\n\r\n"
    )
}

const NOTE_PART: &str = "--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n";
const FILE_PART_HEAD: &str = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; \
     filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n";

/// slowloris: many clients trickle header bytes and never finish. The
/// header-read timeout closes every one; the server keeps serving meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_are_cut_off_by_the_header_timeout() {
    let dir = DataDir::new();
    // All from 127.0.0.1: lift the per-address cap (attacks.rs tests it).
    let server = TestServer::start(
        &dir,
        &[
            "--header-timeout",
            "1s",
            "--max-connections-per-client",
            "256",
        ],
    );
    let mut clients = Vec::new();
    for i in 0..50 {
        let mut sock = connect(&server).await;
        sock.write_all(format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-{i}: ").as_bytes())
            .await
            .unwrap();
        clients.push(tokio::spawn(async move {
            // One byte every 200 ms: each byte arrives well within any
            // per-read timeout; only a whole-header deadline stops it.
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if sock.write_all(b"a").await.is_err() {
                    return;
                }
                let mut probe = [0u8; 512];
                match tokio::time::timeout(Duration::from_millis(1), sock.read(&mut probe)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return,
                    _ => {}
                }
            }
        }));
    }
    healthy(&server).await;
    for c in clients {
        tokio::time::timeout(WAIT, c)
            .await
            .expect("a slowloris connection outlived the header timeout")
            .unwrap();
    }
    healthy(&server).await;
}

/// A client that stops sending at each phase of an upload: in its headers,
/// in the middle of the file part, between parts. The first is cut by the
/// header timeout, the others by the idle timeout; no row is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_are_cut_off_and_leave_nothing() {
    let dir = DataDir::new();
    let server = TestServer::start(&dir, &["--header-timeout", "1s", "--idle-timeout", "1s"]);
    let cookie = server.session_cookie().await;
    let announced = 50_000_000u64;
    let head = upload_head(&cookie, announced);
    let data = vec![0x42u8; 2_000_000];
    let phases: [(&str, Vec<u8>); 4] = [
        (
            "request headers",
            head.as_bytes()[..head.len() / 2].to_vec(),
        ),
        (
            "mid-part",
            [head.as_bytes(), FILE_PART_HEAD.as_bytes(), &data].concat(),
        ),
        (
            "between parts",
            [head.as_bytes(), NOTE_PART.as_bytes()].concat(),
        ),
        (
            "after the file part",
            [
                head.as_bytes(),
                FILE_PART_HEAD.as_bytes(),
                &data,
                b"\r\n",
                NOTE_PART.as_bytes(),
            ]
            .concat(),
        ),
    ];
    for (phase, bytes) in phases {
        let mut sock = connect(&server).await;
        sock.write_all(&bytes).await.unwrap();
        let answer = until_closed(&mut sock).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            !answer.starts_with("HTTP/1.1 200"),
            "a stalled upload ({phase}) was stored: {answer}"
        );
        common::eventually(WAIT, "the stalled upload's rows are removed", || {
            dir.count("SELECT COUNT(*) FROM entries") == 0
                && dir.count("SELECT COUNT(*) FROM entries_data") == 0
        })
        .await;
        healthy(&server).await;
    }
}

/// A client that disconnects at each phase of an upload leaves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborts_at_every_phase_leave_nothing() {
    let dir = DataDir::new();
    let server = TestServer::start(&dir, &[]);
    let cookie = server.session_cookie().await;
    let head = upload_head(&cookie, 50_000_000);
    let data = vec![0x42u8; 3_000_000];
    let phases: [(&str, Vec<u8>); 5] = [
        ("request line", b"POST /api/en".to_vec()),
        (
            "request headers",
            head.as_bytes()[..head.len() - 10].to_vec(),
        ),
        (
            "part headers",
            [head.as_bytes(), &FILE_PART_HEAD.as_bytes()[..30]].concat(),
        ),
        (
            "mid-part",
            [head.as_bytes(), FILE_PART_HEAD.as_bytes(), &data].concat(),
        ),
        (
            "between parts",
            [
                head.as_bytes(),
                FILE_PART_HEAD.as_bytes(),
                &data,
                b"\r\n",
                NOTE_PART.as_bytes(),
            ]
            .concat(),
        ),
    ];
    for (phase, bytes) in phases {
        let mut sock = connect(&server).await;
        sock.write_all(&bytes).await.unwrap();
        sock.flush().await.unwrap();
        drop(sock);
        common::eventually(
            WAIT,
            &format!("nothing left after an abort in the {phase}"),
            || {
                dir.count("SELECT COUNT(*) FROM entries") == 0
                    && dir.count("SELECT COUNT(*) FROM entries_data") == 0
            },
        )
        .await;
        healthy(&server).await;
    }
}

/// Past `--max-connections`, a new connection first closes the connection
/// idle the longest; while every connection is busy (a request in flight) it
/// waits, and is served as soon as one of them finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_evict_idle_ones_or_wait_for_a_busy_one() {
    let dir = DataDir::new();
    let server = TestServer::start(&dir, &["--max-connections", "8", "--header-timeout", "60s"]);
    let cookie = server.session_cookie().await;
    let healthz = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    // 8 idle keep-alive connections: a 9th takes the place of the oldest.
    let mut idle = Vec::new();
    for _ in 0..8 {
        let mut sock = connect(&server).await;
        sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = sock.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        idle.push(sock);
    }
    let mut ninth = connect(&server).await;
    ninth.write_all(healthz).await.unwrap();
    assert!(until_closed(&mut ninth).await.starts_with(b"HTTP/1.1 200"));
    assert!(
        until_closed(&mut idle[0]).await.is_empty(),
        "the oldest idle one was closed"
    );
    drop(idle);
    tokio::time::sleep(Duration::from_millis(500)).await; // let them close

    // 8 busy connections (uploads in progress): a 9th waits for one to end.
    // `100 Continue` says the handler runs (a connection whose head is not
    // yet read still counts as idle).
    let mut busy = Vec::new();
    for _ in 0..8 {
        let mut sock = connect(&server).await;
        let head =
            upload_head(&cookie, 1 << 30).replace("\r\n\r\n", "\r\nExpect: 100-continue\r\n\r\n");
        sock.write_all(head.as_bytes()).await.unwrap();
        let mut buf = [0u8; 64];
        let n = sock.read(&mut buf).await.unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 100"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
        sock.write_all(FILE_PART_HEAD.as_bytes()).await.unwrap();
        sock.write_all(&[0u8; 1000]).await.unwrap();
        busy.push(sock);
    }
    let mut tenth = connect(&server).await; // the kernel's backlog takes it
    tenth.write_all(healthz).await.unwrap();
    let mut buf = [0u8; 256];
    // Not answered while all 8 are busy (a negative check: a slow server
    // cannot make it fail).
    let early = tokio::time::timeout(Duration::from_millis(1500), tenth.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "the connection was served past the cap: {:?}",
        early.map(|r| r.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned()))
    );
    drop(busy.pop());
    let n = tokio::time::timeout(WAIT, tenth.read(&mut buf))
        .await
        .expect("the connection was not served after a slot freed")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
}

/// Many connections each holding a large, unfinished request head: memory
/// grows by a bounded amount per connection (hyper's header limit), and a
/// head past the limit is refused with 431.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_connection_costs_bounded_memory() {
    let dir = DataDir::new();
    let server = TestServer::start(
        &dir,
        &[
            "--header-timeout",
            "60s",
            "--max-connections-per-client",
            "256",
        ],
    );
    healthy(&server).await;
    let before = server.status_kib("VmRSS");
    let connections = 100;
    let filler = "a".repeat(1000);
    let mut held = Vec::new();
    for _ in 0..connections {
        let mut sock = connect(&server).await;
        sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        // 60 headers of 1 kB: under the 64 KiB limit, never finished.
        for i in 0..60 {
            sock.write_all(format!("X-{i}: {filler}\r\n").as_bytes())
                .await
                .unwrap();
        }
        held.push(sock);
    }
    healthy(&server).await;
    let grown_kib = server.status_kib("VmRSS").saturating_sub(before);
    let per_connection_kib = grown_kib / connections;
    println!(
        "{connections} connections with 60 KB heads: RSS +{grown_kib} KiB ({per_connection_kib} KiB each)"
    );
    // The head itself (≤ 64 KiB) plus hyper's buffers and the task: 256 KiB
    // is a generous ceiling; without a header limit a head grows unbounded.
    assert!(
        per_connection_kib < 256,
        "{per_connection_kib} KiB per connection"
    );

    let mut big = connect(&server).await;
    big.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let header = format!("X-Big: {}\r\n", "b".repeat(70 * 1024));
    let _ = big.write_all(header.as_bytes()).await;
    let answer = until_closed(&mut big).await;
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    drop(held);
    healthy(&server).await;
}
