//! What the web UI stands on, over real HTTP: settings, download limits,
//! the CSRF check on cookie-authenticated changes, what uploads answer, and
//! the pages themselves (login redirects, escaping of user text, headers).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::sync::Arc;

use common::{DataDir, TestServer, error_of, pattern_part};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn put_settings(server: &TestServer, body: Value) -> reqwest::Response {
    server
        .req(Method::PUT, "/api/settings")
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn lifetime_days(entry: &Value) -> f64 {
    let at = |k: &str| {
        entry[k]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    };
    (at("expires") - at("uploaded")).num_seconds() as f64 / 86400.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_are_checked_and_set_the_default_expiration() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    let res = server
        .http
        .get(server.url("/api/settings"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(res).await.0, 401);
    server.login().await;
    assert_eq!(
        server.get_json("/api/settings").await,
        json!({"defaultExpirationDays": 30, "defaultNeverExpire": false})
    );

    for (body, expect) in [
        (
            json!({"defaultExpirationDays": 0}),
            "defaultExpirationDays must be from 1 to 3650",
        ),
        (
            json!({"defaultExpirationDays": 3651}),
            "defaultExpirationDays must be from 1 to 3650",
        ),
        (
            json!({"defaultExpirationDays": -2}),
            "defaultExpirationDays must be from 1 to 3650",
        ),
        (json!({}), "give defaultExpirationDays"),
        (
            json!({"defaultExpirationDays": 5, "theme": "dark"}),
            "unknown field `theme`",
        ),
        (
            json!({"defaultExpirationDays": "5"}),
            "expected JSON with defaultExpirationDays",
        ),
    ] {
        let (status, msg) = error_of(put_settings(&server, body.clone()).await).await;
        assert_eq!(status, 400, "{body}");
        assert!(msg.contains(expect), "{body}: {msg:?}");
    }
    assert_eq!(
        server.get_json("/api/settings").await["defaultExpirationDays"],
        30,
        "unchanged"
    );

    let res = put_settings(&server, json!({"defaultExpirationDays": 7})).await;
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"defaultExpirationDays": 7, "defaultNeverExpire": false})
    );
    let id = server.upload_ok(1, 1000, "a.bin").await;
    let days = lifetime_days(&server.get_json(&format!("/api/entry/{id}")).await);
    assert!(
        (days - 7.0).abs() < 0.01,
        "expires {days} days after upload"
    );

    put_settings(&server, json!({"defaultNeverExpire": true})).await;
    let id = server.upload_ok(1, 1000, "b.bin").await;
    assert_eq!(
        server.get_json(&format!("/api/entry/{id}")).await["expires"],
        Value::Null
    );
    // An explicit expiration still wins.
    let id = server
        .upload_ok_query(1, 1000, "c.bin", "?expiration=2099-01-01T00:00:00Z")
        .await;
    assert_eq!(
        server.get_json(&format!("/api/entry/{id}")).await["expires"],
        "2099-01-01T00:00:00Z"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_limit_stops_serving_after_n() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;

    for (query, expect) in [
        ("?maxDownloads=0", "maxDownloads must be at least 1"),
        ("?maxDownloads=-1", "not a whole number"),
        ("?maxDownloads=two", "not a whole number"),
    ] {
        let (status, msg) = error_of(server.upload(1, 100_000, "x.bin", query).await).await;
        assert_eq!(status, 400, "{query}");
        assert!(msg.contains(expect), "{query}: {msg}");
    }
    assert_eq!(dir.count("SELECT COUNT(*) FROM entries"), 0);

    let id = server
        .upload_ok_query(2, 100_000, "twice.bin", "?maxDownloads=2")
        .await;
    assert_eq!(
        server.get_json(&format!("/api/entry/{id}")).await["maxDownloads"],
        2
    );
    let url = server.url(&format!("/-{id}"));
    // HEAD does not count.
    for _ in 0..3 {
        assert_eq!(server.http.head(&url).send().await.unwrap().status(), 200);
    }
    for _ in 0..2 {
        let res = server.http.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.bytes().await.unwrap().len(), 100_000);
    }
    let gone = (
        StatusCode::GONE,
        "this file has reached its limit of 2 download(s)".to_owned(),
    );
    assert_eq!(
        error_of(server.http.get(&url).send().await.unwrap()).await,
        gone
    );
    assert_eq!(server.http.head(&url).send().await.unwrap().status(), 410);
    let entry = server.get_json(&format!("/api/entry/{id}")).await;
    assert_eq!(
        (entry["downloads"].clone(), entry["maxDownloads"].clone()),
        (json!(2), json!(2)),
        "still listed for its owner"
    );

    // Edits: raise, remove, refuse nonsense.
    for (body, expect) in [
        (
            json!({"maxDownloads": 0}),
            "maxDownloads must be at least 1",
        ),
        (
            json!({"maxDownloads": "3"}),
            "maxDownloads must be a whole number",
        ),
        (
            json!({"maxDownloads": -1}),
            "maxDownloads must be a whole number",
        ),
    ] {
        let res = server
            .req(Method::PUT, &format!("/api/entry/{id}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, msg) = error_of(res).await;
        assert_eq!(status, 400, "{body}");
        assert!(msg.contains(expect), "{body}: {msg}");
    }
    let res = server
        .req(Method::PUT, &format!("/api/entry/{id}"))
        .json(&json!({"maxDownloads": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["maxDownloads"], 3);
    assert_eq!(server.http.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(server.http.get(&url).send().await.unwrap().status(), 410);
    let res = server
        .req(Method::PUT, &format!("/api/entry/{id}"))
        .json(&json!({"note": "kept"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.json::<Value>().await.unwrap()["maxDownloads"],
        3,
        "absent: unchanged"
    );
    let res = server
        .req(Method::PUT, &format!("/api/entry/{id}"))
        .json(&json!({"maxDownloads": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.json::<Value>().await.unwrap()["maxDownloads"],
        Value::Null
    );
    assert_eq!(
        server.http.get(&url).send().await.unwrap().status(),
        200,
        "no limit any more"
    );

    // Parallel downloads cannot take more than the limit: exactly 3 of 10.
    let res = server
        .upload(3, 2 << 20, "race.bin", "?maxDownloads=3")
        .await;
    let race = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let server = Arc::new(server);
    let gets: Vec<_> = (0..10)
        .map(|_| {
            let (server, race) = (Arc::clone(&server), race.clone());
            tokio::spawn(async move {
                let res = server
                    .http
                    .get(server.url(&format!("/-{race}")))
                    .send()
                    .await
                    .unwrap();
                let status = res.status().as_u16();
                let len = res.bytes().await.unwrap().len();
                (status, len)
            })
        })
        .collect();
    let mut served = 0;
    for g in gets {
        match g.await.unwrap() {
            (200, len) => {
                assert_eq!(len, 2 << 20);
                served += 1;
            }
            (410, _) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(served, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_authenticated_changes_need_our_origin() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    let id = server.upload_ok(1, 1000, "keep.bin").await;
    let ours = server.base.clone();
    let evil = "https://evil.example";

    let changes = [
        (
            Method::POST,
            "/api/guest-links".to_owned(),
            Some(json!({"label": "x"})),
        ),
        (
            Method::PUT,
            "/api/settings".to_owned(),
            Some(json!({"defaultExpirationDays": 2})),
        ),
        (
            Method::PUT,
            format!("/api/entry/{id}"),
            Some(json!({"note": "pwned"})),
        ),
        (Method::DELETE, format!("/api/entry/{id}"), None),
        (Method::DELETE, "/api/auth".to_owned(), None),
    ];
    for (method, path, body) in &changes {
        let mut rb = server.req(method.clone(), path).header("origin", evil);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let (status, msg) = error_of(rb.send().await.unwrap()).await;
        assert_eq!(status, 403, "{method} {path}");
        assert_eq!(
            msg,
            format!(
                "cross-origin request refused: Origin {evil} is not this server ({})",
                ours.trim_start_matches("http://")
            )
        );
    }
    // A cross-site upload, and fetch metadata without Origin.
    let form = reqwest::multipart::Form::new().part("file", pattern_part(2, 5000, "x.bin", None));
    let res = server
        .req(Method::POST, "/api/entry")
        .header("origin", "null")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(res).await.0, 403);
    let res = server
        .req(Method::DELETE, &format!("/api/entry/{id}"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(res).await.0, 403);
    // Nothing changed.
    let entry = server.get_json(&format!("/api/entry/{id}")).await;
    assert_eq!(entry["note"], "from the tests");
    assert_eq!(server.get_json("/api/guest-links").await, json!([]));
    assert_eq!(
        server.get_json("/api/settings").await["defaultExpirationDays"],
        30
    );
    assert_eq!(dir.count("SELECT COUNT(*) FROM entries"), 1);

    // Our own origin passes, and so does a client that sends none (curl).
    let res = server
        .req(Method::PUT, &format!("/api/entry/{id}"))
        .header("origin", &ours)
        .header("sec-fetch-site", "same-origin")
        .json(&json!({"note": "edited"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = server
        .req(Method::PUT, "/api/settings")
        .json(&json!({"defaultExpirationDays": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Without the cookie a request acts as nobody, so it is not checked:
    // a guest upload from anywhere works (and reads need no Origin).
    let link = server
        .req(Method::POST, "/api/guest-links")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let link = link.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let form = reqwest::multipart::Form::new().part("file", pattern_part(2, 5000, "x.bin", None));
    let res = server
        .http
        .post(server.url(&format!("/api/guest/{link}")))
        .header("origin", evil)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = server
        .req(Method::GET, "/api/entries")
        .header("origin", evil)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_answer_json_or_the_plain_url() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    let res = server.upload(1, 1000, "a.bin", "").await;
    assert_eq!(res.headers()["content-type"], "application/json");
    let body: Value = res.json().await.unwrap();
    let id = body["id"].as_str().unwrap();
    assert_eq!(body["url"], format!("{}/-{id}", server.base));

    let form = reqwest::multipart::Form::new().part("file", pattern_part(1, 1000, "b.bin", None));
    let res = server
        .req(Method::POST, "/api/entry")
        .header("accept", "text/plain")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
    let url = res.text().await.unwrap();
    assert!(
        url.starts_with(&format!("{}/-", server.base)) && url.ends_with('\n'),
        "{url:?}"
    );
    assert_eq!(reqwest::get(url.trim()).await.unwrap().status(), 200);
}

/// The raw page HTML.
async fn page(server: &TestServer, path: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let res = server.req(Method::GET, path).send().await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    (status, headers, res.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_need_a_login_and_show_user_text_as_text() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in [
        "/",
        "/files",
        "/files/abcdefghij",
        "/guest-links",
        "/guest-links/new",
        "/settings",
        "/system",
    ] {
        let res = no_redirects.get(server.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 303, "{path}");
        assert_eq!(res.headers()["location"], "/login", "{path}");
    }
    let (status, headers, html) = page(&server, "/login").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(html.contains("<label for=\"secret\">"));
    for (path, kind) in [
        ("/static/app.js", "text/javascript"),
        ("/static/style.css", "text/css"),
    ] {
        let res = server.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
    }

    server.login().await;
    let res = server.req(Method::GET, "/login").send().await.unwrap();
    assert_eq!(
        res.url().path(),
        "/",
        "logged in: /login goes on to the upload page"
    );

    // User text full of markup.
    let name = "<img src=x onerror=alert(1)>.html";
    let note = "<script>alert(\"note\")</script> & more";
    let label = "<b onmouseover='alert(1)'>label</b>";
    let form = reqwest::multipart::Form::new()
        .part("file", pattern_part(1, 2000, name, None))
        .text("note", note);
    let res = server
        .req(Method::POST, "/api/entry")
        .multipart(form)
        .send()
        .await
        .unwrap();
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let link = server
        .req(Method::POST, "/api/guest-links")
        .json(&json!({"label": label}))
        .send()
        .await
        .unwrap();
    let link = link.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = server
        .http
        .get(server.url(&format!("/-{id}")))
        .header("user-agent", "<i>agent</i>")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["content-security-policy"],
        "sandbox",
        "downloads stay sandboxed"
    );
    assert_eq!(
        res.headers()["content-type"],
        "text/html",
        "an uploaded HTML file..."
    );
    common::eventually(
        std::time::Duration::from_secs(5),
        "the download is recorded",
        || dir.count("SELECT COUNT(*) FROM downloads") == 1,
    )
    .await;

    let escaped_name = "&#60;img src=x onerror=alert(1)&#62;.html";
    let escaped_note = "&#60;script&#62;alert(&#34;note&#34;)&#60;/script&#62; &#38; more";
    let pages = [
        ("/files".to_owned(), vec![escaped_name, escaped_note]),
        (format!("/files/{id}"), vec![escaped_name, escaped_note]),
        (
            format!("/files/{id}/downloads"),
            vec![escaped_name, "&#60;i&#62;agent&#60;/i&#62;"],
        ),
        (
            "/guest-links".to_owned(),
            vec!["&#60;b onmouseover=&#39;alert(1)&#39;&#62;label&#60;/b&#62;"],
        ),
        (
            format!("/g/{link}"),
            vec!["&#60;b onmouseover=&#39;alert(1)&#39;&#62;label&#60;/b&#62;"],
        ),
    ];
    for (path, expected) in pages {
        let (status, headers, html) = page(&server, &path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(headers["cache-control"], "no-store", "{path}");
        for raw in [name, note, label, "<i>agent</i>"] {
            assert!(!html.contains(raw), "{path} prints {raw:?} unescaped");
        }
        for e in expected {
            assert!(html.contains(e), "{path} should show {e:?}:\n{html}");
        }
    }

    // A guest sees no owner navigation, even on an error page.
    let guest = reqwest::get(server.url("/g/abcdefghijkmnopq"))
        .await
        .unwrap();
    assert_eq!(guest.status(), 404);
    assert!(!guest.text().await.unwrap().contains("Log out"));

    // Unknown things are 404 pages.
    for path in [
        "/files/abcdefghij",
        "/files/zz",
        "/files/abcdefghij/downloads",
        "/g/abcdefghijkmnopq",
        "/g/x",
    ] {
        let (status, headers, html) = page(&server, path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        assert!(html.contains("does not exist"), "{path}");
    }
}
