//! The JSON API over real HTTP: login, bad input (clear errors, nothing
//! stored, server still up), edits, deletes, expiration defaults.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{DataDir, SECRET, TestServer, pattern_part};
use reqwest::{Method, StatusCode};
use serde_json::Value;

async fn error_of(res: reqwest::Response) -> (StatusCode, String) {
    let status = res.status();
    let body: Value = res.json().await.expect("JSON error body");
    (
        status,
        body["error"].as_str().expect("error message").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_logout() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);

    let res = server
        .http
        .get(server.url("/api/entries"))
        .send()
        .await
        .unwrap();
    let (status, msg) = error_of(res).await;
    assert_eq!(status, 401);
    assert!(msg.contains("not logged in"), "{msg}");

    let res = server
        .http
        .post(server.url("/api/auth"))
        .json(&serde_json::json!({ "sharedSecret": "wrong" }))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(res).await.0, 401);
    let res = server
        .http
        .post(server.url("/api/auth"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, msg) = error_of(res).await;
    assert_eq!(status, 400);
    assert!(msg.contains("sharedSecret"), "{msg}");

    server.login().await;
    let res = server
        .req(Method::GET, "/api/entries")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), serde_json::json!([]));

    let res = server
        .req(Method::DELETE, "/api/auth")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let cookie = res.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("Max-Age=0"), "{cookie}");
    let res = server
        .req(Method::GET, "/api/entries")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        401,
        "logging out ends the session: a copy of the cookie is refused too"
    );

    // A forged cookie is refused.
    let res = server
        .http
        .get(server.url("/api/entries"))
        .header("cookie", "sharerig_session=1700000000000.deadbeef")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_stores_nothing() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);

    // Not logged in: refused before the body is read.
    let res = server.upload(1, 4096, "a.bin", "").await;
    assert_eq!(error_of(res).await.0, 401);

    server.login().await;
    let cases: Vec<(&str, reqwest::multipart::Form, &str, &str)> = vec![
        (
            "no file part",
            reqwest::multipart::Form::new().text("note", "hi"),
            "",
            "no `file` part",
        ),
        (
            "dot-dot name",
            form_named("..x"),
            "",
            "must not be '.' or start with '..'",
        ),
        ("traversal", form_named("../x"), "", "'/'"),
        ("slash", form_named("a/b"), "", "'/'"),
        ("backslash", form_named("a\\b"), "", "'/'"),
        ("C1 control char", form_named("a\u{85}b"), "", "control"),
        // A raw C0 control cannot even pass the multipart header parser.
        (
            "C0 control char",
            form_named("a\u{7}b"),
            "",
            "malformed multipart",
        ),
        (
            "long name",
            form_named(&"n".repeat(256)),
            "",
            "limit is 255",
        ),
        (
            "past expiration",
            form_named("ok.bin"),
            "?expiration=2001-01-01T00:00:00Z",
            "1 hour",
        ),
        (
            "bad expiration",
            form_named("ok.bin"),
            "?expiration=next-week",
            "RFC 3339",
        ),
        (
            "long note after the file",
            form_named("ok.bin").text("note", "x".repeat(501)),
            "",
            "note is",
        ),
        (
            "two files",
            form_named("a.bin").part("file", pattern_part(2, 1000, "b.bin", None)),
            "",
            "one `file` part",
        ),
    ];
    for (what, form, query, expect) in cases {
        let res = server
            .req(Method::POST, &format!("/api/entry{query}"))
            .multipart(form)
            .send()
            .await
            .unwrap();
        let (status, msg) = error_of(res).await;
        assert_eq!(status, 400, "{what}: {msg}");
        assert!(
            msg.contains(expect),
            "{what}: {msg:?} should mention {expect:?}"
        );
    }

    // Not multipart at all.
    let res = server
        .req(Method::POST, "/api/entry")
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    let (status, msg) = error_of(res).await;
    assert_eq!(status, 400);
    assert!(msg.contains("multipart"), "{msg}");

    // Unknown ids.
    for path in [
        "/-doesnotexist",
        "/-abcdefghij",
        "/-abcdefghij/name.txt",
        "/nothing-here",
    ] {
        let res = server.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(error_of(res).await.0, 404, "{path}");
    }
    for method in [Method::GET, Method::DELETE] {
        let res = server
            .req(method, "/api/entry/abcdefghij")
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(res).await.0, 404);
    }

    // Nothing of the failed uploads is stored, and the server still serves.
    common::eventually(
        std::time::Duration::from_secs(5),
        "partial uploads removed",
        || {
            dir.count("SELECT COUNT(*) FROM entries") == 0
                && dir.count("SELECT COUNT(*) FROM entries_data") == 0
        },
    )
    .await;
    let id = server.upload_ok(9, 100_000, "fine.bin").await;
    assert_eq!(
        server.download_hash(&id).await.1,
        common::pattern_sha256(9, 100_000)
    );
}

fn form_named(name: &str) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new().part("file", pattern_part(1, 700_000, name, None))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_list_and_delete() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    let a = server.upload_ok(1, 1_000_000, "a.bin").await;
    let b = server.upload_ok(2, 2000, "b.bin").await;

    assert_eq!(
        server.listed_ids().await,
        [b.as_str(), a.as_str()],
        "newest first"
    );

    let res = server
        .req(Method::PUT, &format!("/api/entry/{a}"))
        .json(&serde_json::json!({ "filename": "renamed.mp4", "note": "edited", "expiration": "never" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let entry: Value = res.json().await.unwrap();
    assert_eq!(entry["filename"], "renamed.mp4");
    assert_eq!(entry["contentType"], "video/mp4");
    assert_eq!(entry["note"], "edited");
    assert_eq!(entry["expires"], Value::Null);

    for (body, expect) in [
        (serde_json::json!({ "filename": ".." }), "'..'"),
        (serde_json::json!({ "expiration": "yesterday" }), "RFC 3339"),
        (serde_json::json!({ "note": "n".repeat(501) }), "note is"),
        (serde_json::json!({ "colour": "red" }), "unknown field"),
    ] {
        let res = server
            .req(Method::PUT, &format!("/api/entry/{a}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, msg) = error_of(res).await;
        assert_eq!(status, 400, "{body}");
        assert!(msg.contains(expect), "{msg}");
    }
    let res = server
        .req(Method::PUT, "/api/entry/abcdefghij")
        .json(&serde_json::json!({ "note": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    let res = server
        .req(Method::DELETE, &format!("/api/entry/{a}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = server
        .http
        .get(server.url(&format!("/-{a}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(
        dir.count(&format!(
            "SELECT COUNT(*) FROM entries_data WHERE id = '{a}'"
        )),
        0
    );
    assert_eq!(
        server.download_hash(&b).await.0,
        2000,
        "the other file is intact"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiration_defaults_and_never() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;

    let id = server.upload_ok(1, 10, "default.bin").await;
    let e: Value = server.get_json(&format!("/api/entry/{id}")).await;
    let expires = chrono::DateTime::parse_from_rfc3339(e["expires"].as_str().unwrap()).unwrap();
    let days = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_hours() as f64 / 24.0;
    assert!(
        (29.9..=30.1).contains(&days),
        "default is 30 days, got {days}"
    );

    let res = server.upload(1, 10, "never.bin", "?expiration=never").await;
    let id: Value = res.json().await.unwrap();
    let e: Value = server
        .get_json(&format!("/api/entry/{}", id["id"].as_str().unwrap()))
        .await;
    assert_eq!(e["expires"], Value::Null);

    let at = (chrono::Utc::now() + chrono::Duration::days(2))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let res = server
        .upload(1, 10, "dated.bin", &format!("?expiration={at}"))
        .await;
    assert_eq!(res.status(), 200);
    let id: Value = res.json().await.unwrap();
    let e: Value = server
        .get_json(&format!("/api/entry/{}", id["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(e["expires"].as_str().unwrap()).unwrap(),
        chrono::DateTime::parse_from_rfc3339(&at).unwrap()
    );
}

#[test]
fn refuses_to_start_without_a_secret() {
    let dir = DataDir::new();
    let out = std::process::Command::new(common::binary())
        .arg("--db")
        .arg(dir.db())
        .args(["--port", "0"])
        .env_remove("PS_SHARED_SECRET")
        .env_remove("PS_SHARED_SECRET_FILE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PS_SHARED_SECRET"), "{stderr}");

    let secret_file = dir.dir.path().join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let server = testkit::Spawn::new(common::binary())
        .db(dir.db())
        .secret(None)
        .env("PS_SHARED_SECRET_FILE", &secret_file)
        .debug_listener(false)
        .null_stderr()
        .start()
        .unwrap();
    assert!(
        server.base.starts_with("http://127.0.0.1:"),
        "{}",
        server.base
    );
}
