//! Hardening over real HTTP: internal errors answer a request id and never
//! SQLite's text, JSON is `no-store` and `nosniff`, the debug listener
//! checks `Host` and what its POSTs carry, filenames with bidi or zero-width
//! characters are refused everywhere, and stopping a guest link stops its
//! uploads in progress.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{DataDir, TestServer, error_of, eventually};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A multipart body with one `file` part named `filename`, its raw UTF-8 as
/// curl sends it; returns (content type, body).
fn raw_form(filename: &str, content: &[u8]) -> (String, Vec<u8>) {
    let mut body = format!(
        "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(b"\r\n--XyZ--\r\n");
    ("multipart/form-data; boundary=XyZ".to_owned(), body)
}

fn stored(dir: &DataDir) -> (i64, i64) {
    (
        dir.count("SELECT COUNT(*) FROM entries"),
        dir.count("SELECT COUNT(*) FROM entries_data"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_internal_error_answers_a_request_id_and_logs_the_cause() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    assert_eq!(
        server
            .req(Method::GET, "/api/settings")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Break the database under the running server.
    dir.sql()
        .execute_batch("ALTER TABLE settings RENAME TO settings_moved_away")
        .unwrap();
    let res = server
        .req(Method::GET, "/api/settings")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["cache-control"], "no-store");
    let (status, msg) = error_of(res).await;
    assert_eq!(status, 500);
    let id = msg
        .split("request id ")
        .nth(1)
        .and_then(|rest| rest.get(..16))
        .unwrap_or_else(|| panic!("no request id in {msg:?}"));
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{msg}");
    for leak in ["no such table", "settings", "SQLite", "sqlite"] {
        assert!(!msg.contains(leak), "{leak:?} in {msg:?}");
    }
    let log = server.log_text();
    let line = log
        .lines()
        .find(|l| l.contains(id))
        .unwrap_or_else(|| panic!("request id {id} not in the log:\n{log}"));
    assert!(line.contains("no such table: settings"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_answers_are_not_cached_and_nothing_is_sniffed() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    let unauthorized = server
        .req(Method::GET, "/api/entries")
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    server.login().await;
    let id = server.upload_ok(1, 100, "data.json").await;
    for res in [
        unauthorized,
        server
            .req(Method::GET, "/api/entries")
            .send()
            .await
            .unwrap(),
        server
            .req(Method::GET, &format!("/api/entry/{id}"))
            .send()
            .await
            .unwrap(),
        server
            .req(Method::GET, "/api/settings")
            .send()
            .await
            .unwrap(),
    ] {
        let h = res.headers();
        assert!(
            h["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        assert_eq!(h["cache-control"], "no-store", "{}", res.url());
        assert_eq!(h["x-content-type-options"], "nosniff", "{}", res.url());
    }
    let health = server.req(Method::GET, "/healthz").send().await.unwrap();
    assert_eq!(health.headers()["x-content-type-options"], "nosniff");
    let stats = server
        .http
        .get(format!("{}/debug/stats", server.debug_base))
        .send()
        .await
        .unwrap();
    assert_eq!(stats.headers()["cache-control"], "no-store");
    // A download keeps its own caching, JSON or not.
    let download = server
        .req(Method::GET, &format!("/-{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    assert_ne!(
        download
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store"),
        "the download's own policy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_debug_listener_answers_only_local_hosts_and_safe_posts() {
    let dir = DataDir::new();
    let server = TestServer::start(&dir, &["--debug-allowed-host", "metrics.internal"]);
    let port = server.debug_base.rsplit(':').next().unwrap().to_owned();
    let get = |host: String| {
        server
            .http
            .get(format!("{}/debug/stats", server.debug_base))
            .header("host", host)
            .send()
    };
    for host in ["evil.example".to_owned(), format!("evil.example:{port}")] {
        let (status, msg) = error_of(get(host.clone()).await.unwrap()).await;
        assert_eq!(status, 403, "{host}");
        assert!(msg.contains("--debug-allowed-host"), "{msg}");
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "[::1]".to_owned(),
        format!("metrics.internal:{port}"),
    ] {
        assert_eq!(get(host.clone()).await.unwrap().status(), 200, "{host}");
    }

    let purge = server
        .http
        .post(format!("{}/debug/allocator/purge", server.debug_base));
    let res = purge
        .try_clone()
        .unwrap()
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    let (status, msg) = error_of(res).await;
    assert_eq!(status, 403);
    assert!(msg.contains("X-Sharerig-Debug"), "{msg}");
    let bare = purge.try_clone().unwrap().send().await.unwrap();
    assert_eq!(
        bare.status(),
        403,
        "no content type at all is a simple request too"
    );
    for extra in [
        ("content-type", "application/json"),
        ("x-sharerig-debug", "1"),
    ] {
        let res = purge
            .try_clone()
            .unwrap()
            .header(extra.0, extra.1)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{extra:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filenames_with_bidi_or_zero_width_characters_are_refused() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    let link: Value = server
        .req(Method::POST, "/api/guest-links")
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let link = link["id"].as_str().unwrap().to_owned();
    let cases = [
        (
            "gpj\u{202E}exe.txt",
            "bidirectional control character U+202E",
        ),
        ("a\u{2066}b.txt", "bidirectional control character U+2066"),
        ("pay\u{200B}pal.pdf", "zero-width character U+200B"),
        ("\u{FEFF}bom.txt", "zero-width character U+FEFF"),
    ];
    for (name, expected) in cases {
        for path in ["/api/entry".to_owned(), format!("/api/guest/{link}")] {
            let (content_type, body) = raw_form(name, &[7u8; 100_000]);
            let res = server
                .req(Method::POST, &path)
                .header("content-type", content_type)
                .header("accept", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let (status, msg) = error_of(res).await;
            assert_eq!(status, 400, "{path} {name:?}");
            assert!(msg.contains(expected), "{path}: {msg}");
        }
    }
    assert_eq!(stored(&dir), (0, 0), "nothing kept, not even partly");

    // Renaming follows the same rule.
    let id = server.upload_ok(1, 10, "plain.txt").await;
    let res = server
        .req(Method::PUT, &format!("/api/entry/{id}"))
        .json(&json!({ "filename": "evil\u{202E}fdp.exe" }))
        .send()
        .await
        .unwrap();
    let (status, msg) = error_of(res).await;
    assert_eq!(status, 400);
    assert!(msg.contains("U+202E"), "{msg}");
    let entry = server.get_json(&format!("/api/entry/{id}")).await;
    assert_eq!(entry["filename"], "plain.txt");
    // Right-to-left text itself is fine.
    server.upload_ok(2, 10, "שלום.txt").await;
}

/// Starts a raw guest upload announcing 64 MB and sends its first `send`
/// bytes; returns the open socket.
async fn stalled_guest_upload(
    server: &TestServer,
    link: &str,
    send: usize,
) -> tokio::net::TcpStream {
    let addr = server.base.trim_start_matches("http://");
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\
                Content-Type: application/octet-stream\r\n\r\n";
    let req = format!(
        "POST /api/guest/{link} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n\
         Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: {}\r\n\r\n{head}",
        (64 << 20) + head.len()
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    sock.write_all(&vec![0x5a_u8; send]).await.unwrap();
    sock.flush().await.unwrap();
    sock
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_guest_link_aborts_its_uploads_in_progress() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    for (method, action) in [(Method::PUT, "/disable"), (Method::DELETE, "")] {
        let link: Value = server
            .req(Method::POST, "/api/guest-links")
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let link = link["id"].as_str().unwrap().to_owned();
        let mut sock = stalled_guest_upload(&server, &link, 1 << 20).await;
        // Three 320 KiB chunks stored: the upload is well under way, then stalls.
        eventually(
            Duration::from_secs(20),
            "chunks of the guest upload",
            || dir.count("SELECT COUNT(*) FROM entries_data") >= 3,
        )
        .await;
        assert_eq!(
            dir.count("SELECT COUNT(*) FROM entries WHERE state = 'uploading'"),
            1
        );

        let res = server
            .req(method.clone(), &format!("/api/guest-links/{link}{action}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204, "{method} {action}");

        // The uploader hears at once (not after the 60 s idle timeout).
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut answer))
            .await
            .unwrap_or_else(|_| panic!("{method} {action}: the stalled upload got no answer"))
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        assert!(answer.contains("disabled or deleted"), "{answer}");
        eventually(
            Duration::from_secs(10),
            "the partial upload removed",
            || stored(&dir) == (0, 0),
        )
        .await;
    }
    assert!(
        server
            .log_text()
            .contains("stopped the uploads in progress")
    );
}
