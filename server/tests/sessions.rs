//! Sessions over real HTTP: the cookie is a random token (not keyed with the
//! secret), logging out ends the session for every copy of the cookie, "log
//! out everywhere" ends all, a new secret ends all, a short secret stops the
//! start, the cookie's name over HTTPS, and planted duplicate cookies.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{DataDir, SECRET, TestServer, error_of};
use hmac::{KeyInit, Mac};
use nix::sys::signal::Signal;
use reqwest::Method;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The status of `GET /api/entries` with `cookie` as the `Cookie` header.
async fn entries_status(server: &TestServer, cookie: &str) -> u16 {
    server
        .http
        .get(server.url("/api/entries"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The value of a `name=value` cookie.
fn value(cookie: &str) -> &str {
    cookie.split_once('=').unwrap().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_is_a_random_token_not_keyed_with_the_secret() {
    let dir = DataDir::new();
    let server = TestServer::start(&dir, &[]);
    let a = server.session_cookie().await;
    let b = server.session_cookie().await;
    assert!(a.starts_with("sharerig_session="), "{a}");
    let token = value(&a);
    assert_ne!(token, value(&b), "every login gets its own token");
    assert_eq!(token.len(), 64, "{token}");
    assert!(token.bytes().all(|c| c.is_ascii_hexdigit()), "{token}");
    // The old scheme, "<ms>.<HMAC(secret, 'sharerig-session-v1:' + ms)>", cannot be it.
    let now = chrono::Utc::now().timestamp_millis();
    for ms in now - 60_000..=now {
        let mut mac = HmacSha256::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("sharerig-session-v1:{ms}").as_bytes());
        assert_ne!(hex::encode(mac.finalize().into_bytes()), token);
    }
    // Stored: a keyed hash of each session, a server key, never the secret or a token.
    let sql = dir.sql();
    assert_eq!(dir.count("SELECT COUNT(*) FROM sessions"), 2);
    let stored: i64 = sql
        .query_row(
            "SELECT COUNT(*) FROM sessions WHERE hex(token_hash) = upper(?1)",
            [token],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 0, "the token itself is not stored");
    let key: String = sql
        .query_row(
            "SELECT value FROM settings WHERE key = 'server_key'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(key.len(), 64);
    let mut rows = sql.prepare("SELECT value FROM settings").unwrap();
    let values: Vec<String> = rows
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let secret_hex = hex::encode(SECRET);
    assert!(
        values
            .iter()
            .all(|v| !v.contains(SECRET) && !v.contains(&secret_hex)),
        "{values:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_ends_the_session_for_every_copy_of_the_cookie() {
    let dir = DataDir::new();
    let server = TestServer::start(&dir, &[]);
    let kept = server.session_cookie().await;
    let other = server.session_cookie().await;
    assert_eq!(entries_status(&server, &kept).await, 200);
    // As a browser does it: same-origin, with Origin.
    let res = server
        .http
        .delete(server.url("/api/auth"))
        .header("cookie", &kept)
        .header("origin", &server.base)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let cleared = res.headers()["set-cookie"].to_str().unwrap();
    assert!(cleared.starts_with("sharerig_session=;") && cleared.contains("Max-Age=0"));
    assert_eq!(
        entries_status(&server, &kept).await,
        401,
        "a captured copy is refused"
    );
    assert_eq!(
        entries_status(&server, &other).await,
        200,
        "other sessions live on"
    );
    assert_eq!(dir.count("SELECT COUNT(*) FROM sessions"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_everywhere_ends_every_session() {
    let dir = DataDir::new();
    let server = TestServer::start(&dir, &[]);
    let phone = server.session_cookie().await;
    let laptop = server.session_cookie().await;

    let res = server
        .http
        .delete(server.url("/api/sessions"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "needs a session");
    // CSRF-protected like every state change.
    let res = server
        .http
        .delete(server.url("/api/sessions"))
        .header("cookie", &phone)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(entries_status(&server, &laptop).await, 200);

    let res = server
        .http
        .delete(server.url("/api/sessions"))
        .header("cookie", &phone)
        .header("origin", &server.base)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert!(
        res.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(entries_status(&server, &phone).await, 401);
    assert_eq!(entries_status(&server, &laptop).await, 401);
    assert_eq!(dir.count("SELECT COUNT(*) FROM sessions"), 0);
    let again = server.session_cookie().await;
    assert_eq!(entries_status(&server, &again).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_restart_and_end_when_the_secret_changes() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    let cookie = server.session_cookie().await;
    server.stop_with(Signal::SIGTERM, Duration::from_secs(30));

    let mut server = TestServer::start(&dir, &[]);
    assert_eq!(
        entries_status(&server, &cookie).await,
        200,
        "same secret: kept"
    );
    server.stop_with(Signal::SIGTERM, Duration::from_secs(30));

    let new_secret = "an-entirely-new-secret";
    let server = TestServer::start_with_env(
        &dir.db(),
        dir.dir.path(),
        &[],
        &[("PS_SHARED_SECRET", new_secret.as_ref())],
    );
    assert_eq!(
        entries_status(&server, &cookie).await,
        401,
        "new secret: ended"
    );
    assert_eq!(dir.count("SELECT COUNT(*) FROM sessions"), 0);
    assert!(server.log_text().contains("every session ended"));
    assert!(
        testkit::login(&server.http, &server.base, SECRET)
            .await
            .is_err()
    );
    let fresh = testkit::login(&server.http, &server.base, new_secret)
        .await
        .unwrap();
    assert_eq!(entries_status(&server, &fresh).await, 200);
}

#[test]
fn a_short_secret_stops_the_start_and_says_the_minimum() {
    let dir = DataDir::new();
    let out = std::process::Command::new(common::binary())
        .arg("--db")
        .arg(dir.db())
        .args(["--port", "0", "--debug-listen", "off"])
        .env("PS_SHARED_SECRET", "elevenchars")
        .env_remove("PS_SHARED_SECRET_FILE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("11 characters") && stderr.contains("at least 12"),
        "{stderr}"
    );
    assert!(stderr.contains("PS_SHARED_SECRET"), "{stderr}");
    assert!(!dir.db().exists(), "nothing was opened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_the_cookie_is_host_prefixed_and_secure() {
    let dir = DataDir::new();
    let server = TestServer::start(&dir, &["--behind-proxy"]);
    let res = server
        .http
        .post(server.url("/api/auth"))
        .header("x-forwarded-proto", "https")
        .json(&serde_json::json!({ "sharedSecret": SECRET }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let set = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.starts_with("__Host-sharerig_session="), "{set}");
    for attribute in ["; Path=/;", "; HttpOnly", "; SameSite=Strict", "; Secure"] {
        assert!(set.contains(attribute), "{attribute} in {set}");
    }
    assert!(!set.to_ascii_lowercase().contains("domain"), "{set}");
    let cookie = set.split(';').next().unwrap();
    assert_eq!(entries_status(&server, cookie).await, 200);

    // Over plain HTTP (the proxy says so), the plain name without Secure.
    let plain = testkit::login(&server.http, &server.base, SECRET)
        .await
        .unwrap();
    assert!(plain.starts_with("sharerig_session="), "{plain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_duplicate_cookie_does_not_log_the_owner_out() {
    let dir = DataDir::new();
    let server = TestServer::start(&dir, &[]);
    let good = value(&server.session_cookie().await).to_owned();
    let forged = "0".repeat(64);
    for cookie in [
        format!("sharerig_session=bad; sharerig_session={good}"),
        format!("sharerig_session={good}; sharerig_session=bad"),
        format!("sharerig_session={forged}; other=1; sharerig_session={good}"),
        format!("__Host-sharerig_session=x; sharerig_session={good}"),
    ] {
        assert_eq!(entries_status(&server, &cookie).await, 200, "{cookie}");
    }
    let bad = format!("sharerig_session=bad; sharerig_session={forged}");
    let res = server
        .http
        .get(server.url("/api/entries"))
        .header("cookie", &bad)
        .send()
        .await
        .unwrap();
    let (status, msg) = error_of(res).await;
    assert_eq!(status, 401);
    assert!(msg.contains("not logged in"), "{msg}");
    // Two Cookie headers count too.
    let res = server
        .req(Method::GET, "/api/entries")
        .header("cookie", "sharerig_session=bad")
        .header("cookie", format!("sharerig_session={good}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}
