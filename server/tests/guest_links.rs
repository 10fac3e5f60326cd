//! Guest links over real HTTP: every creation rule and its message, every
//! upload rule (unknown, disabled, expired, used up, too big; notes and
//! extra parts), the byte limit enforced inside the stream, the upload limit
//! under parallel uploads, and what a guest upload answers.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{DataDir, TestServer, error_of, pattern_part};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: u64 = 1 << 20;

async fn create(server: &TestServer, body: Value) -> reqwest::Response {
    server
        .req(Method::POST, "/api/guest-links")
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn create_ok(server: &TestServer, body: Value) -> Value {
    let res = create(server, body).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// A guest upload (no cookie) of `size` pattern bytes.
async fn guest_upload(
    server: &TestServer,
    link: &str,
    size: u64,
    accept: Option<&str>,
) -> reqwest::Response {
    let form =
        reqwest::multipart::Form::new().part("file", pattern_part(3, size, "guest.bin", None));
    let mut rb = server
        .http
        .post(server.url(&format!("/api/guest/{link}")))
        .multipart(form);
    if let Some(a) = accept {
        rb = rb.header("accept", a);
    }
    rb.send().await.unwrap()
}

fn rows(dir: &DataDir) -> (i64, i64) {
    (
        dir.count("SELECT COUNT(*) FROM entries"),
        dir.count("SELECT COUNT(*) FROM entries_data"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_link_checks_every_field() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);

    let res = create(&server, json!({"label": "x"})).await;
    assert_eq!(error_of(res).await.0, 401, "owners only");
    server.login().await;

    let soon = (chrono::Utc::now() + chrono::Duration::minutes(30)).to_rfc3339();
    let cases = [
        (
            json!({"label": "x".repeat(201)}),
            "label is 201 characters long; the limit is 200",
        ),
        (
            json!({"label": "a\u{7}b"}),
            "label must not contain control characters",
        ),
        (
            json!({"maxFileBytes": MIB - 1}),
            "maxFileBytes must be at least 1048576",
        ),
        (
            json!({"maxFileBytes": -5}),
            "maxFileBytes must be at least 1048576",
        ),
        (
            json!({"maxFileUploads": 0}),
            "maxFileUploads must be at least 1",
        ),
        (
            json!({"maxFileUploads": -3}),
            "maxFileUploads must be at least 1",
        ),
        (
            json!({"urlExpirationTime": "tomorrow"}),
            "urlExpirationTime: expiration \"tomorrow\" is not an RFC 3339 time",
        ),
        (
            json!({"urlExpirationTime": soon}),
            "less than 1 hour in the future",
        ),
        (
            json!({"fileLifetime": "59m"}),
            "fileLifetime must be at least 1 hour",
        ),
        (
            json!({"fileLifetime": "3651days"}),
            "fileLifetime must be at most 3650 days",
        ),
        (
            json!({"fileLifetime": "soon"}),
            "fileLifetime \"soon\" is not a duration",
        ),
        (
            json!({"label": "x", "colour": "red"}),
            "unknown field `colour`",
        ),
        (
            json!({"maxFileUploads": "two"}),
            "expected JSON with any of label",
        ),
    ];
    for (body, expect) in cases {
        let (status, msg) = error_of(create(&server, body.clone()).await).await;
        assert_eq!(status, 400, "{body}: {msg}");
        assert!(
            msg.contains(expect),
            "{body}: {msg:?} should say {expect:?}"
        );
    }
    let res = server
        .req(Method::POST, "/api/guest-links")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, msg) = error_of(res).await;
    assert_eq!(
        (status.as_u16(), msg.contains("expected JSON")),
        (400, true),
        "{msg}"
    );
    assert_eq!(
        server.get_json("/api/guest-links").await,
        json!([]),
        "nothing was created"
    );

    // Defaults: no limits, never expires, files live as long as the default setting.
    let link = create_ok(&server, json!({})).await;
    let id = link["id"].as_str().unwrap();
    assert_eq!(id.len(), 16);
    assert_eq!(link["label"], "");
    assert_eq!(link["urlExpires"], Value::Null);
    assert_eq!(link["fileLifetime"], "30days");
    assert_eq!(link["maxFileBytes"], Value::Null);
    assert_eq!(link["maxFileUploads"], Value::Null);
    assert_eq!(link["uploadsUsed"], 0);
    assert_eq!(link["disabled"], false);
    let res = server
        .req(Method::PUT, "/api/settings")
        .json(&json!({"defaultNeverExpire": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(create_ok(&server, json!({})).await["fileLifetime"], "never");

    // Everything given, in the reference's formats.
    let later = "2099-01-01T00:00:00Z";
    let full = create_ok(
        &server,
        json!({"label": "for Bob", "urlExpirationTime": later, "fileLifetime": "168h0m0s",
               "maxFileBytes": 5 * MIB, "maxFileUploads": 3}),
    )
    .await;
    assert_eq!(full["urlExpires"], "2099-01-01T00:00:00Z");
    assert_eq!(full["fileLifetime"], "7days");
    assert_eq!(
        (full["maxFileBytes"].clone(), full["maxFileUploads"].clone()),
        (json!(5 * MIB), json!(3))
    );
    let listed = server.get_json("/api/guest-links").await;
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert_eq!(listed[0]["id"], full["id"], "newest first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_uploads_follow_the_link() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    let link = create_ok(&server, json!({"label": "docs", "fileLifetime": "2days"})).await;
    let id = link["id"].as_str().unwrap().to_owned();

    // Unknown links.
    for bad in ["abcdefghijkmnopq", "short", "abcdefghijkmnop0"] {
        let (status, _) = error_of(guest_upload(&server, bad, 1000, None).await).await;
        assert_eq!(status, 404, "{bad}");
    }

    // What curl sees: the URL as text. A client asking for JSON gets JSON.
    let res = guest_upload(&server, &id, 200_000, None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
    let url = res.text().await.unwrap();
    assert!(
        url.starts_with(&format!("{}/-", server.base)) && url.ends_with('\n'),
        "{url:?}"
    );
    let res = guest_upload(&server, &id, 1000, Some("application/json")).await;
    let body: Value = res.json().await.unwrap();
    let entry_id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(body["url"], format!("{}/-{entry_id}", server.base));
    let got = reqwest::get(url.trim())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        got.to_vec(),
        common::pattern_slice(3, 0, 200_000),
        "the URL serves the file"
    );

    // The entry carries the link and the link's file lifetime.
    let entry = server.get_json(&format!("/api/entry/{entry_id}")).await;
    assert_eq!(entry["guestLinkId"], id.as_str());
    let uploaded: chrono::DateTime<chrono::Utc> =
        entry["uploaded"].as_str().unwrap().parse().unwrap();
    let expires: chrono::DateTime<chrono::Utc> =
        entry["expires"].as_str().unwrap().parse().unwrap();
    let lifetime = expires - uploaded;
    assert!(
        (lifetime - chrono::Duration::days(2)).num_seconds().abs() < 60,
        "expires {lifetime} after upload, the link says 2 days"
    );
    assert_eq!(
        server.get_json("/api/guest-links").await[0]["uploadsUsed"],
        2
    );

    // Guests send a file and nothing else.
    let (before_entries, before_chunks) = rows(&dir);
    let with_note = reqwest::multipart::Form::new()
        .part("file", pattern_part(4, 50_000, "a.bin", None))
        .text("note", "hi");
    let res = server
        .http
        .post(server.url(&format!("/api/guest/{id}")))
        .multipart(with_note)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(res).await,
        (
            StatusCode::BAD_REQUEST,
            "guest uploads cannot have a note".into()
        )
    );
    let extra = reqwest::multipart::Form::new()
        .text("comment", "hi")
        .part("file", pattern_part(4, 50_000, "a.bin", None));
    let res = server
        .http
        .post(server.url(&format!("/api/guest/{id}")))
        .multipart(extra)
        .send()
        .await
        .unwrap();
    let (status, msg) = error_of(res).await;
    assert_eq!(status, 400);
    assert!(
        msg.contains("a guest upload has only a `file` part"),
        "{msg}"
    );
    let res = server
        .http
        .post(server.url(&format!("/api/guest/{id}")))
        .body("plain")
        .send()
        .await
        .unwrap();
    let (status, msg) = error_of(res).await;
    assert_eq!(
        (status.as_u16(), msg.contains("multipart/form-data")),
        (400, true),
        "{msg}"
    );
    assert_eq!(
        rows(&dir),
        (before_entries, before_chunks),
        "refused uploads leave no rows"
    );

    // Disabled, enabled again.
    let res = server
        .req(Method::PUT, &format!("/api/guest-links/{id}/disable"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(
        error_of(guest_upload(&server, &id, 1000, None).await).await,
        (StatusCode::FORBIDDEN, "this guest link is disabled".into())
    );
    let page = server
        .http
        .get(server.url(&format!("/g/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 403, "the guest page says so too");
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("this guest link is disabled")
    );
    let res = server
        .req(Method::PUT, &format!("/api/guest-links/{id}/enable"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(guest_upload(&server, &id, 1000, None).await.status(), 200);

    // Expired (the link's expiry moved into the past in the database).
    dir.sql()
        .execute(
            "UPDATE guest_links SET url_expiration_time_ms = 1000 WHERE id = ?1",
            [&id],
        )
        .unwrap();
    let (status, msg) = error_of(guest_upload(&server, &id, 1000, None).await).await;
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(msg, "this guest link expired at 1970-01-01T00:00:01Z");
    let page = server
        .http
        .get(server.url(&format!("/g/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 410);

    // Owners only, for everything but the upload.
    let anon = reqwest::Client::new();
    for (method, path) in [
        (Method::GET, "/api/guest-links".to_owned()),
        (Method::DELETE, format!("/api/guest-links/{id}")),
        (Method::PUT, format!("/api/guest-links/{id}/disable")),
    ] {
        let res = anon
            .request(method.clone(), server.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(res).await.0, 401, "{method} {path}");
    }

    // Deleted: gone, and its files stay.
    let res = server
        .req(Method::DELETE, &format!("/api/guest-links/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(
        error_of(guest_upload(&server, &id, 1000, None).await)
            .await
            .0,
        404
    );
    for (method, path) in [
        (Method::DELETE, format!("/api/guest-links/{id}")),
        (Method::PUT, format!("/api/guest-links/{id}/enable")),
        (Method::PUT, "/api/guest-links/abc/enable".to_owned()),
    ] {
        let res = server.req(method.clone(), &path).send().await.unwrap();
        assert_eq!(error_of(res).await.0, 404, "{method} {path}");
    }
    assert_eq!(
        server.get_json(&format!("/api/entry/{entry_id}")).await["size"],
        1000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_limit_stops_the_stream_at_the_limit() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    let link = create_ok(&server, json!({"maxFileBytes": MIB})).await;
    let id = link["id"].as_str().unwrap().to_owned();

    // Exactly the limit is fine.
    let res = guest_upload(&server, &id, MIB, Some("application/json")).await;
    assert_eq!(res.status(), 200);
    let ok_id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        server.get_json(&format!("/api/entry/{ok_id}")).await["size"],
        MIB
    );
    let stored = rows(&dir);

    // One byte over: 413, nothing kept.
    let expect =
        format!("the file is larger than this guest link allows ({MIB} bytes); nothing was kept");
    assert_eq!(
        error_of(guest_upload(&server, &id, MIB + 1, None).await).await,
        (StatusCode::PAYLOAD_TOO_LARGE, expect.clone())
    );
    assert_eq!(rows(&dir), stored);

    // A 1 GiB body of unknown length (chunked, so nothing can be judged
    // before reading): the server stops storing at the limit and reads at
    // most its drain allowance (64 MiB) more so the client hears the 413.
    let sent = Arc::new(AtomicU64::new(0));
    let stream = common::pattern_stream(5, 1 << 30, Some(Arc::clone(&sent)));
    let part =
        reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(stream)).file_name("huge.bin");
    let res = server
        .http
        .post(server.url(&format!("/api/guest/{id}")))
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await;
    let sent = sent.load(Ordering::Relaxed);
    eprintln!("client handed {sent} bytes of 1 GiB to the connection before the 413");
    // What we sent is bounded by the limit, the drain allowance and the
    // socket buffers on both sides; far below the 1 GiB offered.
    assert!(sent < MIB + (64 + 32) * MIB, "the server read {sent} bytes");
    // Past the drain allowance the server closes the connection: a client
    // that reads only after sending (reqwest) sees a broken pipe, one that
    // reads while sending (curl, browsers) the 413.
    eprintln!("response: {:?}", res.as_ref().map(|r| r.status()));
    if let Ok(res) = res {
        assert_eq!(
            error_of(res).await,
            (StatusCode::PAYLOAD_TOO_LARGE, expect.clone())
        );
    }
    assert_eq!(rows(&dir), stored, "nothing of it is stored");

    // A declared length over the limit with `Expect: 100-continue`: refused
    // before a byte of the body is sent (what curl does with big files).
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/guest/{id} HTTP/1.1\r\nHost: {addr}\r\nExpect: 100-continue\r\n\
         Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: {}\r\n\r\n",
        10u64 << 30
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    sock.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert!(answer.contains(&expect), "{answer}");

    assert_eq!(
        server.get_json("/api/guest-links").await[0]["uploadsUsed"],
        1,
        "only the one that fit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guest_uploads_cannot_pass_the_upload_limit() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    let link = create_ok(&server, json!({"maxFileUploads": 2})).await;
    let id = link["id"].as_str().unwrap().to_owned();

    let server = Arc::new(server);
    let uploads: Vec<_> = (0..6)
        .map(|_| {
            let (server, id) = (Arc::clone(&server), id.clone());
            tokio::spawn(async move {
                let res = guest_upload(&server, &id, 2 * MIB, None).await;
                let status = res.status();
                (status, res.text().await.unwrap())
            })
        })
        .collect();
    let mut ok = 0;
    for u in uploads {
        let (status, body) = u.await.unwrap();
        match status.as_u16() {
            200 => ok += 1,
            403 => assert!(body.contains("reached its limit of 2 upload(s)"), "{body}"),
            s => panic!("unexpected {s}: {body}"),
        }
    }
    assert_eq!(ok, 2, "exactly the limit got through");
    assert_eq!(
        dir.count("SELECT COUNT(*) FROM entries WHERE guest_link_id IS NOT NULL"),
        2
    );
    common::eventually(
        std::time::Duration::from_secs(10),
        "refused uploads removed",
        || {
            dir.count("SELECT COUNT(*) FROM entries_data")
                == dir.count(
                    "SELECT COALESCE(SUM((size + chunk_size - 1) / chunk_size), 0) FROM entries",
                )
        },
    )
    .await;

    // Deleting one of its files frees a slot.
    let listed = server.listed_ids().await;
    let res = server
        .req(Method::DELETE, &format!("/api/entry/{}", listed[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(guest_upload(&server, &id, 1000, None).await.status(), 200);
    assert_eq!(guest_upload(&server, &id, 1000, None).await.status(), 403);
}
