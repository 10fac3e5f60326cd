//! Faults and the life of stored data: expiry and GC, client aborts,
//! SIGKILL mid-upload, graceful shutdown, a full disk.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{DataDir, TestServer, pattern_part, pattern_sha256};
use nix::sys::signal::Signal;
use reqwest::Method;
use tokio::io::AsyncWriteExt;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_entries_stop_serving_and_gc_removes_them() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &["--gc-interval", "300ms"]);
    server.login().await;
    let keep = server.upload_ok(1, 1_000_000, "keep.bin").await;
    let old = server.upload_ok(2, 1_000_000, "old.bin").await;
    assert!(
        dir.count(&format!(
            "SELECT COUNT(*) FROM entries_data WHERE id = '{old}'"
        )) > 0
    );

    // Time passes for `old` (the API refuses past expirations, so move it in the database).
    dir.sql()
        .execute(
            "UPDATE entries SET expiration_time_ms = 1000 WHERE id = ?1",
            [&old],
        )
        .unwrap();
    let res = server
        .http
        .get(server.url(&format!("/-{old}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        404,
        "expired entries are not served, even before GC"
    );

    common::eventually(WAIT, "GC removes the expired entry and its chunks", || {
        dir.count(&format!("SELECT COUNT(*) FROM entries WHERE id = '{old}'")) == 0
            && dir.count(&format!(
                "SELECT COUNT(*) FROM entries_data WHERE id = '{old}'"
            )) == 0
    })
    .await;
    assert_eq!(
        server.download_hash(&keep).await.1,
        pattern_sha256(1, 1_000_000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_never_touches_an_upload_in_progress() {
    let dir = DataDir::new();
    // GC every 100 ms while a throttled upload runs for ~2 s.
    let mut server = TestServer::start(&dir, &["--gc-interval", "100ms"]);
    server.login().await;
    let size = 4_000_000u64;
    let slow =
        futures_util::StreamExt::then(common::pattern_stream(5, size, None), |b| async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            b
        });
    let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(slow), size)
        .file_name("slow.bin");
    let res = server
        .req(Method::POST, "/api/entry")
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let id: serde_json::Value = res.json().await.unwrap();
    let (len, hash) = server.download_hash(id["id"].as_str().unwrap()).await;
    assert_eq!((len, hash), (size, pattern_sha256(5, size)));
    assert!(
        server.log_text().matches("garbage collection done").count() >= 5,
        "GC ran during the upload"
    );
}

/// Starts a raw HTTP upload that announces `announced` body bytes, sends
/// `send` of them, and returns the open socket.
async fn partial_upload(server: &TestServer, announced: u64, send: u64) -> tokio::net::TcpStream {
    let addr = server.base.trim_start_matches("http://");
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"partial.bin\"\r\n\
                Content-Type: application/octet-stream\r\n\r\n";
    let token = server.session_cookie().await;
    let req = format!(
        "POST /api/entry HTTP/1.1\r\nHost: {addr}\r\nCookie: {token}\r\n\
         Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: {}\r\n\r\n{head}",
        announced + head.len() as u64
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    let block = vec![0x5a_u8; 64 * 1024];
    let mut sent = 0;
    while sent < send {
        let n = block.len().min((send - sent) as usize);
        sock.write_all(&block[..n]).await.unwrap();
        sent += n as u64;
    }
    sock.flush().await.unwrap();
    sock
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_upload_leaves_nothing() {
    let dir = DataDir::new();
    let server = TestServer::start(&dir, &[]);
    let sock = partial_upload(&server, 500_000_000, 20_000_000).await;
    common::eventually(WAIT, "chunks of the partial upload are written", || {
        dir.count("SELECT COUNT(*) FROM entries_data") > 10
    })
    .await;
    assert_eq!(
        dir.count("SELECT COUNT(*) FROM entries WHERE state = 'uploading'"),
        1
    );
    drop(sock);
    common::eventually(WAIT, "the aborted upload's rows are removed", || {
        dir.count("SELECT COUNT(*) FROM entries") == 0
            && dir.count("SELECT COUNT(*) FROM entries_data") == 0
    })
    .await;
    let res = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_upload_then_restart_recovers() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    let done = server.upload_ok(3, 3_000_000, "done.bin").await;

    let _sock = partial_upload(&server, 500_000_000, 20_000_000).await;
    common::eventually(WAIT, "chunks of the partial upload are written", || {
        dir.count("SELECT COUNT(*) FROM entries_data WHERE id IN (SELECT id FROM entries WHERE state = 'uploading')")
            > 10
    })
    .await;
    let status = server.stop_with(Signal::SIGKILL, WAIT);
    assert!(!status.success());

    // What the crash left: a consistent database with the partial upload's rows.
    let conn = dir.sql();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let partial: String = conn
        .query_row(
            "SELECT id FROM entries WHERE state = 'uploading'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        dir.count(&format!(
            "SELECT COUNT(*) FROM entries_data WHERE id = '{partial}'"
        )) > 0
    );
    drop(conn);

    // Restart: GC at start-up removes the leftovers; the finished file is intact.
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    assert_eq!(
        server.listed_ids().await,
        [done.as_str()],
        "the partial upload is not listed"
    );
    common::eventually(WAIT, "GC removes the partial upload's chunks", || {
        dir.count(&format!(
            "SELECT COUNT(*) FROM entries_data WHERE id = '{partial}'"
        )) == 0
            && dir.count(&format!(
                "SELECT COUNT(*) FROM entries WHERE id = '{partial}'"
            )) == 0
    })
    .await;
    assert_eq!(
        server.download_hash(&done).await.1,
        pattern_sha256(3, 3_000_000)
    );
    let check: String = dir
        .sql()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_aborts_and_closes_cleanly() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &["--shutdown-timeout", "1s"]);
    server.login().await;
    let done = server.upload_ok(4, 2_000_000, "done.bin").await;

    // An upload that would never finish on its own.
    let sock = partial_upload(&server, 500_000_000, 5_000_000).await;
    common::eventually(WAIT, "the slow upload has started", || {
        dir.count("SELECT COUNT(*) FROM entries WHERE state = 'uploading'") == 1
    })
    .await;
    let status = server.stop_with(Signal::SIGTERM, WAIT);
    drop(sock);
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        server.log_text()
    );
    let log = server.log_text();
    assert!(log.contains("aborting requests"), "{log}");
    assert!(log.contains("database closed cleanly"), "{log}");
    assert_eq!(
        dir.count("SELECT COUNT(*) FROM entries WHERE state = 'uploading'"),
        0
    );
    assert_eq!(
        dir.count(&format!(
            "SELECT COUNT(*) FROM entries_data WHERE id != '{done}'"
        )),
        0
    );
    let wal = dir.db().with_extension("db-wal");
    assert_eq!(
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0),
        0,
        "WAL checkpointed and truncated"
    );
}

/// A database on a small tmpfs: real ENOSPC from the kernel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_gives_507_and_loses_nothing() {
    if std::env::var_os("SHARERIG_SKIP_ROOT_TESTS").is_some() {
        eprintln!("SKIPPED: SHARERIG_SKIP_ROOT_TESTS is set (this test mounts a tmpfs)");
        return;
    }
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test mounts a tmpfs and needs root (CI runs as root); set SHARERIG_SKIP_ROOT_TESTS=1 to skip it"
    );
    let dir = DataDir::new();
    let mnt = dir.dir.path().join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(mnt.clone());

    let db = mnt.join("store.db");
    let mut server = TestServer::start_with_db(&db, dir.dir.path(), &[]);
    server.login().await;
    let kept = server.upload_ok(6, 4_000_000, "kept.bin").await;

    let sent = Arc::new(AtomicU64::new(0));
    let form = reqwest::multipart::Form::new().part(
        "file",
        pattern_part(7, 64_000_000, "too-big.bin", Some(sent.clone())),
    );
    let res = match server
        .req(Method::POST, "/api/entry")
        .multipart(form)
        .send()
        .await
    {
        Ok(res) => res,
        Err(e) => panic!(
            "upload to a full disk: {e:?}; server log:\n{}",
            server.log_text()
        ),
    };
    let status = res.status();
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(status, 507, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("disk is full"),
        "{body}"
    );
    assert!(
        sent.load(Ordering::Relaxed) > 10_000_000,
        "the disk filled mid-upload"
    );

    // Nothing lost, nothing left over, still serving.
    assert_eq!(
        server.download_hash(&kept).await.1,
        pattern_sha256(6, 4_000_000)
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.busy_timeout(WAIT).unwrap();
    let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    let removed = || {
        count("SELECT COUNT(*) FROM entries") == 1
            && count(&format!(
                "SELECT COUNT(*) FROM entries_data WHERE id != '{kept}'"
            )) == 0
    };
    let start = std::time::Instant::now();
    while !removed() {
        assert!(
            start.elapsed() < WAIT,
            "partial upload not removed; log:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let res = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let list: serde_json::Value = server.get_json("/api/entries").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    drop(conn);

    // Fill every byte left (the reserve is gone, spent on the clean-up),
    // then restart on the full disk: a clean stop, then a crash.
    let filler = mnt.join("filler");
    fill(&filler);
    for (how, signal) in [("SIGTERM", Signal::SIGTERM), ("SIGKILL", Signal::SIGKILL)] {
        server.stop_with(signal, WAIT);
        fill(&filler);
        server = TestServer::start_with_db(&db, dir.dir.path(), &[]);
        server.login().await;
        assert_eq!(
            server.listed_ids().await,
            [kept.as_str()],
            "restarted after {how} on a full disk; log:\n{}",
            server.log_text()
        );
        assert_eq!(
            server.download_hash(&kept).await.1,
            pattern_sha256(6, 4_000_000),
            "serves after a {how} restart on a full disk"
        );
        let res = server.upload(8, 2_000_000, "while-full.bin", "").await;
        assert_eq!(res.status(), 507, "uploads refused while the disk is full");
        let body: serde_json::Value = res.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("disk is full"),
            "{body}"
        );
    }

    // Space freed: uploads work again, and nothing was lost meanwhile.
    std::fs::remove_file(&filler).unwrap();
    let new = server.upload_ok(9, 2_000_000, "after.bin").await;
    assert_eq!(
        server.download_hash(&new).await.1,
        pattern_sha256(9, 2_000_000)
    );
    assert_eq!(
        server.download_hash(&kept).await.1,
        pattern_sha256(6, 4_000_000)
    );
    let check: String = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

/// Appends zeros to `path` until the filesystem is full.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
}
