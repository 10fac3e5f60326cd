//! Hostile input over real HTTP: range abuse, filenames built for header
//! and path injection, active content, broken and oversized multipart
//! bodies, and the login's defences (rate limit, cookie flags, the debug
//! routes kept off the public port).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{DataDir, SECRET, TestServer, pattern_slice};
use percent_encoding::percent_decode_str;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use reqwest::Method;
use reqwest::multipart::{Form, Part};

async fn stored(server: &TestServer, seed: u64, size: u64) -> String {
    server.upload_ok(seed, size, "f.bin").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_abuse_never_amplifies() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    let size = 100_000u64;
    let id = stored(&server, 1, size).await;
    let get = |range: String| {
        server
            .http
            .get(server.url(&format!("/-{id}")))
            .header("range", range)
            .send()
    };
    // Many, overlapping, repeated ranges: the whole file once, never more.
    let abusive = [
        format!(
            "bytes={}",
            (0..1000).map(|_| "0-99999").collect::<Vec<_>>().join(",")
        ),
        format!(
            "bytes={}",
            (0..17)
                .map(|i| format!("{}-{}", i * 10, i * 10 + 5))
                .collect::<Vec<_>>()
                .join(",")
        ),
        "bytes=0-50000,25000-99999".to_owned(),
        "bytes=-100000,0-".to_owned(),
    ];
    for range in abusive {
        let res = get(range.clone()).await.unwrap();
        assert_eq!(res.status(), 200, "{range:.60}");
        let body = res.bytes().await.unwrap();
        assert_eq!(body.len() as u64, size, "{range:.60}");
    }
    // 16 distinct ranges are served, each once.
    let sixteen = format!(
        "bytes={}",
        (0..16)
            .map(|i| format!("{}-{}", i * 1000, i * 1000 + 9))
            .collect::<Vec<_>>()
            .join(",")
    );
    let res = get(sixteen).await.unwrap();
    assert_eq!(res.status(), 206);
    assert!(res.bytes().await.unwrap().len() < 16 * 200);
    // Offsets past the end, or absurdly large: 416 with the real size.
    for range in [
        "bytes=100000-",
        "bytes=999999999999999-",
        "bytes=18446744073709551615-",
    ] {
        let res = get(range.into()).await.unwrap();
        assert_eq!(res.status(), 416, "{range}");
        assert_eq!(res.headers()["content-range"], format!("bytes */{size}"));
    }
    // An end past the file is clipped to it.
    let res = get("bytes=99990-18446744073709551614".into())
        .await
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.bytes().await.unwrap(), pattern_slice(1, 99_990, size));
}

/// Uploads `bytes` under `filename` (any string) and returns the response.
async fn upload_named(
    server: &TestServer,
    filename: &str,
    bytes: &'static [u8],
) -> reqwest::Response {
    let part = Part::bytes(bytes).file_name(filename.to_owned());
    server
        .req(Method::POST, "/api/entry")
        .multipart(Form::new().part("file", part))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filenames_cannot_inject_headers_or_paths() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    // Refused by our rules (the message names the filename) or, for a raw
    // newline, already by the multipart parser: 400 either way.
    // Refused by our rules (the message names the filename) or, for a raw
    // newline, already by the multipart parser: 400 either way.
    for bad in [
        "../etc/passwd",
        "a/../../b",
        "..",
        ".",
        "a\\b",
        "a\r\nSet-Cookie: x=1",
        "tab\there",
        "",
    ] {
        let res = upload_named(&server, bad, b"x").await;
        assert_eq!(res.status(), 400, "{bad:?}");
        let body: serde_json::Value = res.json().await.unwrap();
        let msg = body["error"].as_str().unwrap();
        assert!(
            msg.contains("filename") || msg.contains("header"),
            "{bad:?}: {body}"
        );
    }
    assert_eq!(dir.count("SELECT COUNT(*) FROM entries"), 0);

    // Quotes, semicolons, percent signs and non-ASCII survive exactly, in
    // the RFC 6266 `filename*`; the quoted fallback cannot be broken out of.
    for name in [
        "say \"hi\"; filename=evil.exe",
        "résumé ✓ 履歴書.pdf",
        "100% done.txt",
        "back\\slash-free 'single' quotes.txt",
    ] {
        let name = name.replace('\\', "");
        let res = upload_named(&server, &name, b"content").await;
        assert_eq!(res.status(), 200, "{name:?}");
        let id: serde_json::Value = res.json().await.unwrap();
        let res = server
            .http
            .get(server.url(&format!("/-{}", id["id"].as_str().unwrap())))
            .send()
            .await
            .unwrap();
        let cd = res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .to_owned();
        let (fallback, encoded) = cd
            .strip_prefix("inline; filename=\"")
            .and_then(|r| r.split_once("\"; filename*=UTF-8''"))
            .unwrap_or_else(|| panic!("unexpected Content-Disposition {cd:?}"));
        assert!(!fallback.contains('"') && fallback.is_ascii(), "{cd}");
        assert_eq!(
            percent_decode_str(encoded).decode_utf8().unwrap(),
            name,
            "{cd}"
        );
        assert!(!encoded.contains([' ', '"', ';', '\'']), "{cd}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_content_is_served_sandboxed() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    let files: [(&str, &'static [u8], &str); 3] = [
        (
            "page.html",
            b"<html><script>alert(document.cookie)</script></html>",
            "text/html",
        ),
        (
            "image.svg",
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>",
            "image/svg+xml",
        ),
        // No extension: sniffed content must not become HTML either.
        (
            "noext",
            b"<html><script>alert(1)</script></html>",
            "text/plain",
        ),
    ];
    for (name, bytes, _) in files {
        let res = upload_named(&server, name, bytes).await;
        assert_eq!(res.status(), 200);
        let id: serde_json::Value = res.json().await.unwrap();
        let res = server
            .http
            .get(server.url(&format!("/-{}", id["id"].as_str().unwrap())))
            .send()
            .await
            .unwrap();
        let h = res.headers();
        assert_eq!(h["content-security-policy"], "sandbox", "{name}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{name}");
        println!("{name}: {:?}", h["content-type"]);
    }
}

/// Sends a raw multipart body (with the session cookie) and returns the status.
async fn raw_upload(server: &TestServer, boundary: &str, body: Vec<u8>) -> u16 {
    server
        .req(Method::POST, "/api/entry")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

fn assert_nothing_stored(dir: &DataDir) {
    assert_eq!(dir.count("SELECT COUNT(*) FROM entries"), 0);
    assert_eq!(dir.count("SELECT COUNT(*) FROM entries_data"), 0);
}

/// Builds a request body (large ones only when needed).
type MakeBody = fn() -> Vec<u8>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_multipart_framing_is_refused_with_bounded_memory() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    let before = server.status_kib("VmHWM");
    // 100 MB without a boundary, then a part whose header never ends: multer
    // alone would hold each whole in memory.
    let hostile: [(&str, MakeBody); 2] = [
        ("no boundary", || vec![b'a'; 100_000_000]),
        ("endless part header", || {
            let mut b =
                b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\nX-Long: "
                    .to_vec();
            b.resize(100_000_000, b'h');
            b
        }),
    ];
    for (what, body) in hostile {
        let res = server
            .req(Method::POST, "/api/entry")
            .header("content-type", "multipart/form-data; boundary=B")
            .body(body())
            .send()
            .await;
        // The server answers 400 early and closes; the client may see the
        // answer or a reset mid-send. Either way nothing is stored.
        if let Ok(res) = res {
            assert_eq!(res.status(), 400, "{what}");
            let body: serde_json::Value = res.json().await.unwrap();
            println!("{what}: {body}");
        }
        assert_nothing_stored(&dir);
    }
    let grown_mib = (server.status_kib("VmHWM").saturating_sub(before)) / 1024;
    println!("peak RSS grew by {grown_mib} MiB over two 100 MB hostile bodies");
    assert!(
        grown_mib < 32,
        "peak RSS grew by {grown_mib} MiB for 100 MB framing"
    );

    // Thousands of parts are fine: read past one by one.
    let mut body = Vec::new();
    for i in 0..5000 {
        body.extend_from_slice(
            format!("--B\r\nContent-Disposition: form-data; name=\"x{i}\"\r\n\r\nv\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(
        b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"many.bin\"\r\n\r\n",
    );
    body.extend_from_slice(&[7u8; 10_000]);
    body.extend_from_slice(b"\r\n--B--\r\n");
    assert_eq!(raw_upload(&server, "B", body).await, 200);
    // A thousand file parts: the second is refused, nothing kept.
    let mut body = Vec::new();
    for _ in 0..1000 {
        body.extend_from_slice(
            b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\nzz\r\n",
        );
    }
    body.extend_from_slice(b"--B--\r\n");
    assert_eq!(raw_upload(&server, "B", body).await, 400);
    assert_eq!(dir.count("SELECT COUNT(*) FROM entries"), 1);
    let res = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

/// Random damage to a valid upload body (truncation, a wrong or missing
/// boundary, flipped bytes): never a 5xx, never a partial row, server up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_multipart_bodies_get_4xx_and_leave_nothing() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    let valid = [
        &b"--B\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n"[..],
        b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.bin\"\r\n\r\n",
        &[9u8; 3000],
        b"\r\n--B--\r\n",
    ]
    .concat();
    // proptest's strategies drive the damage; a deterministic runner makes
    // the 96 cases the same on every run (the server is the slow part, so
    // each case is one real request rather than a shrinking search).
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let damage = (0..valid.len(), any::<u8>(), 0usize..4);
    let cases: Vec<_> = (0..96)
        .map(|_| damage.new_tree(&mut runner).unwrap().current())
        .collect();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for (at, byte, kind) in cases {
        let mut body = valid.clone();
        match kind {
            0 => body.truncate(at),
            1 => body[at] = byte,
            2 => body
                .splice(at..at, std::iter::repeat_n(byte, 100))
                .for_each(drop),
            _ => body.drain(at..(at + 40).min(body.len())).for_each(drop),
        }
        let boundary = if kind == 1 && byte % 7 == 0 { "Q" } else { "B" };
        let status = raw_upload(&server, boundary, body.clone()).await;
        *statuses.entry(status).or_default() += 1;
        assert!(
            status == 200 || (400..500).contains(&status),
            "status {status} for damage {kind} at {at}"
        );
        if status != 200 {
            assert_eq!(
                dir.count("SELECT COUNT(*) FROM entries WHERE state = 'uploading'"),
                0
            );
        }
    }
    println!("statuses over 96 damaged bodies: {statuses:?}");
    // Whatever was stored is complete and of the right shape.
    assert_eq!(
        dir.count("SELECT COUNT(*) FROM entries_data d WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.id = d.id)"),
        0
    );
    let res = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

async fn login_as(
    server: &TestServer,
    secret: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = server
        .http
        .post(server.url("/api/auth"))
        .json(&serde_json::json!({ "sharedSecret": secret }));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_guessing_is_rate_limited_per_client() {
    let dir = DataDir::new();
    let server = TestServer::start(
        &dir,
        &[
            "--login-burst",
            "3",
            "--login-refill",
            "1h",
            "--behind-proxy",
        ],
    );
    let alice = [("x-forwarded-for", "198.51.100.7")];
    // Successful logins are never throttled.
    for _ in 0..20 {
        assert_eq!(login_as(&server, SECRET, &alice).await.status(), 200);
    }
    let mallory = [("x-forwarded-for", "203.0.113.66")];
    for i in 0..3 {
        let res = login_as(&server, &format!("guess-{i}"), &mallory).await;
        assert_eq!(res.status(), 401);
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"], "the shared secret is wrong");
    }
    // Out of attempts: 429 with Retry-After, even for the right secret (a
    // throttled client must not learn which guess was right).
    for secret in ["guess-4", SECRET] {
        let res = login_as(&server, secret, &mallory).await;
        assert_eq!(res.status(), 429);
        let retry: u64 = res.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((3000..=3600).contains(&retry), "Retry-After {retry}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("too many login attempts"),
            "{body}"
        );
    }
    // Others are unaffected.
    assert_eq!(login_as(&server, SECRET, &alice).await.status(), 200);
    assert_eq!(
        login_as(&server, SECRET, &[("x-forwarded-for", "192.0.2.1")])
            .await
            .status(),
        200
    );
}

fn set_cookie(res: &reqwest::Response) -> String {
    res.headers()["set-cookie"].to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookie_flags() {
    let dir = DataDir::new();
    let direct = TestServer::start(&dir, &[]);
    let res = login_as(&direct, SECRET, &[("x-forwarded-proto", "https")]).await;
    let cookie = set_cookie(&res);
    assert!(
        cookie.contains("; HttpOnly") && cookie.contains("; SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "a client cannot claim HTTPS without a proxy: {cookie}"
    );
    drop(direct);

    let proxied = TestServer::start(&dir, &["--behind-proxy"]);
    let res = login_as(&proxied, SECRET, &[("x-forwarded-proto", "https")]).await;
    let cookie = set_cookie(&res);
    assert!(
        cookie.contains("; Secure") && cookie.contains("; HttpOnly"),
        "{cookie}"
    );
    let res = login_as(&proxied, SECRET, &[("x-forwarded-proto", "http")]).await;
    assert!(!set_cookie(&res).contains("Secure"));
    // A wrong secret sets no cookie.
    let res = login_as(&proxied, "wrong", &[]).await;
    assert_eq!(res.status(), 401);
    assert!(res.headers().get("set-cookie").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_routes_are_not_on_the_public_port() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    for path in [
        "/debug/stats",
        "/metrics",
        "/debug/pprof/heap",
        "/debug/allocator/purge",
    ] {
        let res = server.req(Method::GET, path).send().await.unwrap();
        assert_eq!(res.status(), 404, "GET {path} on the public port");
        // POST meets the download route's method check: refused all the same.
        let res = server.req(Method::POST, path).send().await.unwrap();
        assert!(
            res.status().is_client_error(),
            "POST {path}: {}",
            res.status()
        );
    }
    let res = server
        .http
        .get(format!("{}/debug/stats", server.debug_base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the debug listener itself works");
    assert!(server.debug_base.starts_with("http://127.0.0.1:"));
}

/// The guest upload route is open to anyone holding a link: its multipart
/// framing has the same bounds as the owner's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_uploads_have_the_same_framing_bounds() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    let link: serde_json::Value = server
        .req(Method::POST, "/api/guest-links")
        .json(&serde_json::json!({"label": "open"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let link = link["id"].as_str().unwrap().to_owned();
    let before = server.status_kib("VmHWM");
    let mut body =
        b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\nX-Long: "
            .to_vec();
    body.resize(100_000_000, b'h');
    let res = server
        .http
        .post(server.url(&format!("/api/guest/{link}")))
        .header("content-type", "multipart/form-data; boundary=B")
        .body(body)
        .send()
        .await;
    if let Ok(res) = res {
        assert_eq!(res.status(), 400);
    }
    assert_nothing_stored(&dir);
    let grown_mib = (server.status_kib("VmHWM").saturating_sub(before)) / 1024;
    assert!(grown_mib < 32, "peak RSS grew by {grown_mib} MiB");
}
