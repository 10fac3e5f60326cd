//! Litestream replication of the database (docs/server.md, "Operating it").
//! The server runs under `litestream replicate -exec`: once to a file
//! replica, once to an S3-compatible endpoint (moto's server on a loopback
//! port) through `scripts/prod-entrypoint.sh`, as the prod image runs it.
//! Three uploads complete and reach the replica; a fourth, throttled, is cut
//! by SIGKILL of Litestream and the server together. The data dir is deleted,
//! `litestream restore` brings the database back, and on it every completed
//! upload downloads byte-exact while the partial one is neither listed nor
//! left as chunks once the start-up GC has run. How far the replica was
//! behind at the kill (the partial upload's chunks in the killed database but
//! not in the restored one) is printed; docs/server.md quotes it.
//!
//! Needs `litestream` and `moto_server` on PATH (`.ci/run` installs them);
//! without them the tests fail with the `pip install` to run.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{CHUNK, TestServer, binary, eventually, pattern_sha256, pattern_stream};
use futures_util::StreamExt;
use nix::sys::signal::Signal;
use testkit::Wrap;
use testkit::tools::{LITESTREAM, MOTO_SERVER};

/// Completed uploads, (seed, size): sizes off chunk boundaries, one tiny.
const COMPLETED: [(u64, u64); 3] = [(1, 3 * CHUNK + 17), (2, 5_000_001), (3, 1000)];
/// The partial upload: far bigger than what is sent before the kill.
const PARTIAL_SIZE: u64 = 256 << 20;
/// Bytes per second it is sent at, to turn the lag in bytes into seconds.
const PARTIAL_RATE: u64 = 8 << 20;
/// Bytes of it sent when Litestream and the server are killed.
const SENT_AT_KILL: u64 = 24 << 20;
/// pattern_stream's block, sent one per tick.
const BLOCK: u64 = 64 * 1024;
const WAIT: Duration = Duration::from_secs(60);

/// The server under `litestream replicate -exec`, replicating `dir`'s
/// database to a file replica in `dir`: (spawn, config, database).
fn under_litestream(litestream: &Path, dir: &Path) -> (testkit::Spawn, PathBuf, PathBuf) {
    let db = dir.join("data").join("store.db");
    let config = dir.join("litestream.yml");
    let replica = dir.join("replica");
    std::fs::write(
        &config,
        format!(
            "logging:\n  stderr: true\ndbs:\n  - path: {}\n    replica:\n      type: file\n      path: {}\n",
            db.display(),
            replica.display()
        ),
    )
    .unwrap();
    let spawn = testkit::Spawn::new(binary()).db(&db).log_dir(dir).wrapped(
        [
            litestream.as_os_str(),
            OsStr::new("replicate"),
            OsStr::new("-config"),
            config.as_os_str(),
            OsStr::new("-exec"),
        ],
        Wrap::OneString,
    );
    (spawn, config, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_replica_restores_every_completed_upload() {
    let litestream = LITESTREAM.require().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let (spawn, config, db) = under_litestream(&litestream, dir.path());
    let killed = upload_then_kill(TestServer::from_spawn(spawn), &litestream, &config, &db).await;

    std::fs::remove_dir_all(db.parent().unwrap()).unwrap();
    restore(&litestream, &config, &db, &db);
    report_lag("file replica", &killed, &db);
    let server = TestServer::start_with_db(&db, dir.path(), &[]);
    check_restored(server, &killed, &db).await;
}

/// SIGTERM to Litestream reaches the server, which stops in seconds: its
/// last checkpoint does not wait out the busy timeout (30 s) behind
/// Litestream's read transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_under_litestream_takes_seconds() {
    let litestream = LITESTREAM.require().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let (spawn, ..) = under_litestream(&litestream, dir.path());
    let mut server = TestServer::from_spawn(spawn);
    server.login().await;
    server
        .upload_ok(7, 2 * CHUNK + 5, "before-the-stop.bin")
        .await;
    // Litestream has synced the upload and holds its read transaction again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let asked = Instant::now();
    let status = server.stop_with(Signal::SIGTERM, WAIT);
    let took = asked.elapsed();
    println!("stop under Litestream: {took:?}, {status}");
    assert!(status.success(), "{status}:\n{}", server.log_text());
    assert!(
        took < Duration::from_secs(10),
        "the stop took {took:?}:\n{}",
        server.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_s3_replica_restores_through_the_prod_entrypoint() {
    let litestream = LITESTREAM.require().unwrap_or_else(|e| panic!("{e}"));
    let moto = MOTO_SERVER.require().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let s3 = Moto::start(&moto, dir.path()).await;
    s3.create_bucket("sharerig-backups").await;
    let db = dir.path().join("data").join("store.db");
    let config = dir.path().join("litestream.yml");
    let entrypoint = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/prod-entrypoint.sh");
    // As the image runs it, with this user in place of the image's (no privilege drop).
    let me = format!("{}:{}", nix::unistd::getuid(), nix::unistd::getgid());
    let spawn = || {
        testkit::Spawn::new(binary())
            .db(&db)
            .log_dir(dir.path())
            .wrapped([&entrypoint], Wrap::Args)
            .env("PS_DB", &db)
            .env("PS_RUN_AS", &me)
            .env("LITESTREAM_BUCKET", "sharerig-backups")
            .env("LITESTREAM_ENDPOINT", &s3.endpoint)
            .env("LITESTREAM_REGION", "us-east-1")
            .env("LITESTREAM_ACCESS_KEY_ID", "test-key-id")
            .env("LITESTREAM_SECRET_ACCESS_KEY", "test-secret")
            .env("LITESTREAM_CONFIG", &config)
            // A CA bundle (a proxy's, on some hosts) breaks Litestream's S3
            // client setup; a plain-HTTP endpoint needs none.
            .env_remove("AWS_CA_BUNDLE")
    };
    let killed = upload_then_kill(TestServer::from_spawn(spawn()), &litestream, &config, &db).await;

    std::fs::remove_dir_all(db.parent().unwrap()).unwrap();
    // Restored on the side to count what came back before the start-up GC...
    let measured = dir.path().join("measured.db");
    restore(&litestream, &config, &db, &measured);
    report_lag("S3 replica", &killed, &measured);
    // ...and by the entrypoint itself, which restores a missing database.
    let server = TestServer::from_spawn(spawn());
    assert!(
        db.exists(),
        "the entrypoint did not restore {}",
        db.display()
    );
    check_restored(server, &killed, &db).await;
}

/// What the killed server's database held.
struct Killed {
    /// Completed upload id → (seed, size).
    completed: Vec<(String, u64, u64)>,
    /// Chunks of the partial upload in the database at the kill.
    partial_chunks: i64,
}

/// Three completed uploads (waited for in the replica), then a throttled one
/// cut by SIGKILL of the server and its wrapper.
async fn upload_then_kill(
    mut server: TestServer,
    litestream: &Path,
    config: &Path,
    db: &Path,
) -> Killed {
    server.login().await;
    let mut completed = Vec::new();
    for (seed, size) in COMPLETED {
        let id = server
            .upload_ok(seed, size, &format!("done-{seed}.bin"))
            .await;
        completed.push((id, seed, size));
    }
    // The completed uploads are in the replica before the partial one starts.
    let probe = db.with_file_name("probe.db");
    let deadline = Instant::now() + WAIT;
    loop {
        let _ = std::fs::remove_file(&probe);
        if try_restore(litestream, config, db, &probe)
            && count(&probe, "SELECT count(*) FROM entries") >= 3
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the completed uploads never reached the replica"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = std::fs::remove_file(&probe);

    let sent = Arc::new(AtomicU64::new(0));
    let pause = Duration::from_secs_f64(BLOCK as f64 / PARTIAL_RATE as f64);
    let body =
        pattern_stream(9, PARTIAL_SIZE, Some(Arc::clone(&sent))).then(move |block| async move {
            tokio::time::sleep(pause).await;
            block
        });
    let part = reqwest::multipart::Part::stream_with_length(
        reqwest::Body::wrap_stream(body),
        PARTIAL_SIZE,
    )
    .file_name("partial.bin")
    .mime_str("application/octet-stream")
    .unwrap();
    let request = server
        .req(reqwest::Method::POST, "/api/entry")
        .multipart(reqwest::multipart::Form::new().part("file", part));
    let upload = tokio::spawn(request.send());
    eventually(WAIT, "the partial upload to be under way", || {
        sent.load(Ordering::Relaxed) >= SENT_AT_KILL
    })
    .await;
    server.kill();
    let cut = upload.await.unwrap();
    assert!(
        cut.is_err() || !cut.unwrap().status().is_success(),
        "the partial upload completed"
    );

    let ids: BTreeSet<_> = completed.iter().map(|(id, ..)| id.clone()).collect();
    let partial_chunks = partial_chunks(db, &ids);
    assert!(
        partial_chunks > 0,
        "the killed server stored none of the partial upload"
    );
    Killed {
        completed,
        partial_chunks,
    }
}

/// Prints how far behind the replica was at the kill, and checks the
/// replica was streaming during the upload, not only at its start.
fn report_lag(label: &str, killed: &Killed, restored: &Path) {
    let ids: BTreeSet<_> = killed.completed.iter().map(|(id, ..)| id.clone()).collect();
    let restored_chunks = partial_chunks(restored, &ids);
    let behind = killed.partial_chunks - restored_chunks;
    let bytes = behind.max(0) as u64 * CHUNK;
    println!(
        "{label}: replica lag at SIGKILL: {behind} chunks = {bytes} bytes \
         (~{:.1} s of an upload at {} MB/s); the killed database held {} chunks of the partial upload, the restored one {}",
        bytes as f64 / PARTIAL_RATE as f64,
        PARTIAL_RATE >> 20,
        killed.partial_chunks,
        restored_chunks
    );
    assert!(
        restored_chunks > 0,
        "nothing of the partial upload was replicated while it ran"
    );
    assert!(
        (0..=killed.partial_chunks).contains(&restored_chunks),
        "the restore has chunks the killed database did not"
    );
    assert!(
        bytes < 10 * PARTIAL_RATE,
        "the replica was more than 10 s behind: {bytes} bytes"
    );
}

/// The restored server lists and serves exactly the completed uploads, and
/// its start-up GC removes what the partial one left.
async fn check_restored(mut server: TestServer, killed: &Killed, db: &Path) {
    server.login().await;
    let want: BTreeSet<_> = killed.completed.iter().map(|(id, ..)| id.clone()).collect();
    let listed: BTreeSet<_> = server.listed_ids().await.into_iter().collect();
    assert_eq!(listed, want, "the restored server lists other entries");
    for (id, seed, size) in &killed.completed {
        assert_eq!(
            server.download_hash(id).await,
            (*size, pattern_sha256(*seed, *size)),
            "entry {id}"
        );
    }
    eventually(
        WAIT,
        "the start-up GC to remove the partial upload's chunks",
        || partial_chunks(db, &want) == 0 && count(db, "SELECT count(*) FROM entries") == 3,
    )
    .await;
}

fn partial_chunks(db: &Path, completed: &BTreeSet<String>) -> i64 {
    let list = completed
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",");
    count(
        db,
        &format!("SELECT count(*) FROM entries_data WHERE id NOT IN ({list})"),
    )
}

fn count(db: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(30)).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// `litestream restore` of `db`'s replica to `out`.
fn try_restore(litestream: &Path, config: &Path, db: &Path, out: &Path) -> bool {
    Command::new(litestream)
        .arg("restore")
        .arg("-config")
        .arg(config)
        .arg("-o")
        .arg(out)
        .arg(db)
        .env_remove("AWS_CA_BUNDLE")
        .env("LITESTREAM_ACCESS_KEY_ID", "test-key-id")
        .env("LITESTREAM_SECRET_ACCESS_KEY", "test-secret")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn restore(litestream: &Path, config: &Path, db: &Path, out: &Path) {
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    assert!(
        try_restore(litestream, config, db, out),
        "litestream restore of {} failed",
        db.display()
    );
}

/// Moto's S3 server on a free loopback port; killed on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    async fn start(program: &Path, dir: &Path) -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.join("moto.log")).unwrap();
        let child = Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + WAIT;
        while http.get(&moto.endpoint).send().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on {}",
                moto.endpoint
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        moto
    }

    /// S3's CreateBucket: `PUT /<bucket>` (path-style).
    async fn create_bucket(&self, bucket: &str) {
        let res = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .unwrap();
        assert!(
            res.status().is_success(),
            "creating bucket {bucket}: {}",
            res.status()
        );
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
