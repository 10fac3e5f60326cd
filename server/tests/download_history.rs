//! The history flood of issue 16, over real loopback: 20,000 pipelined
//! `Range: bytes=0-0` GETs with a 600-byte user agent. Before the download
//! log this took 516 threads (a blocking task per record) and left an
//! unbounded history that a page then read whole. Now: threads stay few,
//! RSS bounded, every record is stored or counted as dropped, the history
//! keeps the last 1,000 rows and is read in pages.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use common::{DataDir, TestServer};
use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REQUESTS: u64 = 20_000;
const CONNECTIONS: u64 = 4;
/// `storage::downloads::KEPT_PER_ENTRY`.
const KEPT: i64 = 1_000;
const SIZE: u64 = 100_000;
const MIB: u64 = 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_flood_is_bounded_and_fully_accounted() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    let id = server.upload_ok(7, SIZE, "flooded.txt").await;
    let baseline = server.status_kib("Threads");
    let addr = server.base.trim_start_matches("http://").to_owned();

    // Sample threads while the flood runs.
    let (pid, stop) = (server.pid(), Arc::new(AtomicBool::new(false)));
    let max_threads = Arc::new(AtomicU64::new(0));
    let sampler = tokio::spawn({
        let (stop, max_threads) = (Arc::clone(&stop), Arc::clone(&max_threads));
        async move {
            while !stop.load(Relaxed) {
                max_threads.fetch_max(proc_field(pid, "Threads"), Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let start = Instant::now();
    let floods: Vec<_> = (0..CONNECTIONS)
        .map(|_| tokio::spawn(flood(addr.clone(), id.clone(), REQUESTS / CONNECTIONS)))
        .collect();

    // Mid-flood (once the first thousand have been served), the owner's
    // requests still answer.
    while stat(&server, "downloads_started_total").await < 1_000 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let health = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        server.download_hash(&id).await,
        (SIZE, common::pattern_sha256(7, SIZE)),
        "a whole download during the flood"
    );
    let mut partial = 0;
    for f in floods {
        partial += f.await.expect("flood task");
    }
    stop.store(true, Relaxed);
    sampler.await.unwrap();
    let flood_time = start.elapsed();
    assert_eq!(partial, REQUESTS, "every flood request answered 206");
    let served = REQUESTS + 1;

    // No silent loss: every served GET is recorded or counted as dropped.
    let (written, dropped) = loop {
        let w = stat(&server, "download_records_written_total").await;
        let d = stat(&server, "download_records_dropped_total").await;
        if w + d >= served || start.elapsed() > Duration::from_secs(120) {
            break (w, d);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        written + dropped,
        served,
        "written {written} + dropped {dropped}"
    );
    let entry = server.get_json(&format!("/api/entry/{id}")).await;
    assert_eq!(entry["downloads"], written, "the total counts every record");
    let rows = dir.count(&format!(
        "SELECT COUNT(*) FROM downloads WHERE entry_id = '{id}'"
    ));
    assert_eq!(
        rows,
        KEPT.min(written as i64),
        "retention keeps the last {KEPT}"
    );

    // Paging walks every kept row once, newest first, in pages ≤ the limit.
    let (ids, pages) = walk(&server, &id, "", 300).await;
    assert_eq!(ids.len() as i64, rows);
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "strictly newest first");
    assert_eq!(pages, (rows as u64).div_ceil(300) as i64);
    let (unique, _) = walk(&server, &id, "unique=true&", 1).await;
    assert!(
        (1..=2).contains(&unique.len()),
        "one row per client: {unique:?}"
    );
    // The page shows 100 rows and links to the next 100.
    let first = page_text(&server, &format!("/files/{id}/downloads")).await;
    assert_eq!(first.matches("<td data-label=\"Time\">").count(), 100);
    let older = first
        .split("href=\"")
        .filter_map(|h| h.split('"').next())
        .find(|h| h.contains("before="))
        .expect("an Older link");
    let second = page_text(&server, older).await;
    assert_eq!(second.matches("<td data-label=\"Time\">").count(), 100);
    assert!(second.contains(">Newest</a>"));
    for bad in ["limit=0", "limit=1001", "limit=x", "before=x"] {
        let res = server
            .req(
                reqwest::Method::GET,
                &format!("/api/entry/{id}/downloads?{bad}"),
            )
            .send()
            .await
            .unwrap();
        let (status, message) = common::error_of(res).await;
        assert_eq!(status, 400, "{bad}: {message}");
    }

    // Records still queued at SIGTERM are stored before the server exits.
    for _ in 0..50 {
        let res = server
            .http
            .get(server.url(&format!("/-{id}")))
            .header("range", "bytes=0-0")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 206);
    }
    let dropped = stat(&server, "download_records_dropped_total").await;
    let hwm = server.status_kib("VmHWM");
    let threads = max_threads.load(Relaxed);
    let exit = server.stop_with(Signal::SIGTERM, Duration::from_secs(20));
    assert!(exit.success(), "{exit:?}");
    let count = dir.count(&format!(
        "SELECT download_count FROM entries WHERE id = '{id}'"
    ));
    assert_eq!(count as u64 + dropped, served + 50, "flushed at shutdown");

    eprintln!(
        "{REQUESTS} pipelined GETs on {CONNECTIONS} connections in {flood_time:.1?}: \
         threads {baseline} idle, {threads} max; VmHWM {:.1} MiB; \
         {written} recorded, {dropped} dropped; {rows} rows kept",
        hwm as f64 / 1024.0
    );
    // Workers, one lookup and one chunk read per connection, the writer:
    // not one thread per record.
    assert!(
        threads <= baseline + 2 * CONNECTIONS + 16,
        "{threads} threads (idle: {baseline})"
    );
    assert!(hwm < 96 * MIB, "VmHWM {hwm} KiB");
}

/// Sends `n` pipelined range GETs on one connection while reading the
/// answers; returns how many were 206.
async fn flood(addr: String, id: String, n: u64) -> u64 {
    let stream = TcpStream::connect(&addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let agent = format!("flood/{}", "x".repeat(594));
    let request = format!(
        "GET /-{id} HTTP/1.1\r\nHost: {addr}\r\nRange: bytes=0-0\r\nUser-Agent: {agent}\r\n\r\n"
    );
    let writer = tokio::spawn(async move {
        for _ in 0..n {
            wr.write_all(request.as_bytes()).await.expect("write");
        }
        wr // closing it before the answers are read would end the connection
    });
    let (mut buf, mut read) = (Vec::new(), vec![0; 64 * 1024]);
    let (mut answers, mut partial) = (0, 0);
    while answers < n {
        let k = rd.read(&mut read).await.expect("read");
        assert!(k > 0, "connection closed after {answers} answers");
        buf.extend_from_slice(&read[..k]);
        while let Some((status, len)) = next_response(&buf) {
            buf.drain(..len);
            answers += 1;
            partial += u64::from(status == 206);
        }
    }
    drop(writer.await.expect("writer"));
    partial
}

/// The status and length of the first whole response in `buf`.
fn next_response(buf: &[u8]) -> Option<(u16, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).expect("ASCII head");
    let status = head.get(9..12)?.parse().expect("status");
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().expect("length"))
        })
        .unwrap_or(0);
    (buf.len() >= end + length).then_some((status, end + length))
}

/// Walks the history with `limit` per page; returns the row ids and pages.
async fn walk(server: &TestServer, id: &str, query: &str, limit: usize) -> (Vec<i64>, i64) {
    let (mut ids, mut pages, mut before) = (Vec::new(), 0, String::new());
    loop {
        let page = server
            .get_json(&format!(
                "/api/entry/{id}/downloads?{query}limit={limit}{before}"
            ))
            .await;
        let rows = page["downloads"].as_array().expect("downloads");
        assert!(rows.len() <= limit, "a page of {} > {limit}", rows.len());
        ids.extend(rows.iter().map(|r| r["id"].as_i64().expect("id")));
        pages += 1;
        match &page["nextBefore"] {
            Value::Null => return (ids, pages),
            next => before = format!("&before={next}"),
        }
    }
}

/// An owner's page as text.
async fn page_text(server: &TestServer, path: &str) -> String {
    let res = server
        .req(reqwest::Method::GET, path)
        .send()
        .await
        .expect("page request");
    assert_eq!(res.status(), 200, "{path}");
    res.text().await.expect("page text")
}

/// A counter of `/debug/stats`' `app` section.
async fn stat(server: &TestServer, name: &str) -> u64 {
    let stats: Value = server
        .http
        .get(format!("{}/debug/stats", server.debug_base))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats JSON");
    stats["app"][name].as_u64().expect(name)
}

/// A number from `/proc/<pid>/status` (the flood's sampler has no `TestServer`).
fn proc_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}
