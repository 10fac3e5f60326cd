//! SIGKILL at random points while uploads, downloads, GC and VACUUM run,
//! then restart. After every kill: `PRAGMA integrity_check` is ok (checked on
//! the dead server's files), every upload that completed downloads
//! byte-exact, no partial upload is listed or left as a row, and one GC
//! (the one at start-up) leaves no orphan chunk.
//!
//! The kill points come from a seeded RNG; the seed is printed, and
//! `SHARERIG_KILL_SEED=N` replays a run.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{DataDir, TestServer, pattern_part, pattern_sha256};
use nix::sys::signal::Signal;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;

const WAIT: Duration = Duration::from_secs(30);
/// Kill points per activity; four activities make 20.
const KILLS_PER_ACTIVITY: usize = 5;

/// What runs when the server is killed.
#[derive(Debug, Clone, Copy)]
enum Activity {
    Uploads,
    Downloads,
    Gc,
    Vacuum,
}

impl Activity {
    /// Server flags: GC and VACUUM run back to back so a kill lands in them.
    fn flags(self) -> &'static [&'static str] {
        match self {
            Activity::Uploads | Activity::Downloads => &[],
            Activity::Gc => &["--gc-interval", "20ms"],
            Activity::Vacuum => &["--gc-interval", "20ms", "--vacuum"],
        }
    }
}

/// The content behind each stored name: `s<seed>-<size>.bin`.
fn name(seed: u64, size: u64) -> String {
    format!("s{seed}-{size}.bin")
}

fn parse_name(name: &str) -> (u64, u64) {
    let (seed, size) = name
        .strip_prefix('s')
        .and_then(|n| n.strip_suffix(".bin"))
        .and_then(|n| n.split_once('-'))
        .unwrap_or_else(|| panic!("unexpected stored name {name:?}"));
    (seed.parse().unwrap(), size.parse().unwrap())
}

fn seed() -> u64 {
    std::env::var("SHARERIG_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

/// Uploads that completed (answered 200): id → (seed, size).
type Completed = BTreeMap<String, (u64, u64)>;

async fn upload(server: &TestServer, seed: u64, size: u64) -> Option<String> {
    let form = reqwest::multipart::Form::new()
        .part("file", pattern_part(seed, size, &name(seed, size), None));
    let res = server
        .req(Method::POST, "/api/entry")
        .multipart(form)
        .send()
        .await
        .ok()?;
    if res.status() != 200 {
        return None;
    }
    let v: serde_json::Value = res.json().await.ok()?;
    Some(v["id"].as_str()?.to_owned())
}

/// Starts background work of `activity`, waits a random time, SIGKILLs the
/// server. Returns the uploads that completed before the kill.
async fn kill_during(
    server: &mut TestServer,
    dir: &DataDir,
    activity: Activity,
    rng: &mut StdRng,
    next_seed: &mut u64,
    completed: &mut Completed,
) -> Duration {
    let mut tasks = tokio::task::JoinSet::new();
    match activity {
        Activity::Uploads => {
            for _ in 0..3 {
                let (seed, size) = (*next_seed, rng.random_range(8_000_000..48_000_000));
                *next_seed += 1;
                let form = reqwest::multipart::Form::new()
                    .part("file", pattern_part(seed, size, &name(seed, size), None));
                let request = server.req(Method::POST, "/api/entry").multipart(form);
                tasks.spawn(async move {
                    let res = request.send().await.ok()?;
                    let v: serde_json::Value = res.json().await.ok()?;
                    Some((v["id"].as_str()?.to_owned(), seed, size))
                });
            }
        }
        Activity::Downloads => {
            for id in completed.keys().take(4) {
                let request = server.http.get(server.url(&format!("/-{id}")));
                tasks.spawn(async move {
                    let mut res = request.send().await.ok()?;
                    while let Ok(Some(_)) = res.chunk().await {}
                    None
                });
            }
        }
        Activity::Gc | Activity::Vacuum => {
            // Garbage for the collector: some entries expire, one is deleted
            // (its chunks go in batches after the row: orphans if killed).
            let ids: Vec<String> = completed.keys().cloned().collect();
            let conn = dir.sql();
            for id in ids.iter().take(3) {
                conn.execute(
                    "UPDATE entries SET expiration_time_ms = 1000 WHERE id = ?1",
                    [id],
                )
                .unwrap();
                completed.remove(id);
            }
            if let Some(id) = ids.get(3) {
                let request = server.req(Method::DELETE, &format!("/api/entry/{id}"));
                completed.remove(id);
                tasks.spawn(async move {
                    let _ = request.send().await;
                    None
                });
            }
        }
    }
    // GC starts within its 20 ms interval and is over soon: kill early.
    let max_delay = match activity {
        Activity::Gc => 150,
        Activity::Uploads => 400,
        Activity::Downloads | Activity::Vacuum => 800,
    };
    let delay = Duration::from_millis(rng.random_range(0..max_delay));
    tokio::time::sleep(delay).await;
    let status = server.stop_with(Signal::SIGKILL, WAIT);
    assert!(!status.success());
    while let Some(done) = tasks.join_next().await {
        if let Some((id, seed, size)) = done.unwrap() {
            completed.insert(id, (seed, size));
        }
    }
    delay
}

/// The database as the killed server left it: consistent. Returns what the
/// kill interrupted (partial upload rows, orphan chunks, WAL bytes), so the
/// printout shows the kills landed mid-work.
fn check_offline(dir: &DataDir, what: &str) -> String {
    let wal_path = dir.db().with_extension("db-wal");
    let wal = || std::fs::metadata(&wal_path).map_or(0, |m| m.len());
    let wal_before = wal();
    // Read-only, so closing it does not checkpoint: the restart must
    // recover from the WAL the crash left, as it would in production.
    let conn =
        rusqlite::Connection::open_with_flags(dir.db(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok", "integrity_check after {what}");
    let left = format!(
        "left {} partial upload rows, {} orphan chunks, a {} KiB WAL",
        count("SELECT COUNT(*) FROM entries WHERE state = 'uploading'"),
        count(
            "SELECT COUNT(*) FROM entries_data d WHERE NOT EXISTS \
             (SELECT 1 FROM entries e WHERE e.id = d.id)"
        ),
        wal_before / 1024
    );
    drop(conn);
    assert_eq!(
        wal(),
        wal_before,
        "checking must leave the WAL as the crash did"
    );
    left
}

/// After a restart: start-up GC done, nothing partial or orphaned, every
/// completed upload listed and byte-exact, every listed entry byte-exact.
async fn check_restarted(server: &TestServer, dir: &DataDir, completed: &Completed, what: &str) {
    common::eventually(WAIT, "the start-up GC", || {
        server.log_text().contains("garbage collection done")
    })
    .await;
    assert_eq!(
        dir.count("SELECT COUNT(*) FROM entries WHERE state = 'uploading'"),
        0,
        "partial upload rows left after {what}"
    );
    assert_eq!(
        dir.count(
            "SELECT COUNT(*) FROM entries_data d WHERE NOT EXISTS \
             (SELECT 1 FROM entries e WHERE e.id = d.id)"
        ),
        0,
        "orphan chunks left after one GC after {what}"
    );
    let listed = server.get_json("/api/entries").await;
    let listed: BTreeMap<String, String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_owned(),
                e["filename"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for id in completed.keys() {
        assert!(
            listed.contains_key(id),
            "completed upload {id} lost after {what}"
        );
    }
    // Uploads answered by the server just before the kill may be complete
    // without the client having seen the answer: those must be whole too.
    for (id, filename) in &listed {
        let (seed, size) = parse_name(filename);
        assert_eq!(
            server.download_hash(id).await,
            (size, pattern_sha256(seed, size)),
            "{id} ({filename}) is not byte-exact after {what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_nothing() {
    let seed = seed();
    println!("kill-point seed: {seed} (replay with SHARERIG_KILL_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut kills = Vec::new();
    for activity in [
        Activity::Uploads,
        Activity::Downloads,
        Activity::Gc,
        Activity::Vacuum,
    ] {
        let dir = DataDir::new();
        let mut completed = Completed::new();
        let mut next_seed = 1;
        let mut server = TestServer::start(&dir, activity.flags());
        server.login().await;
        for _ in 0..KILLS_PER_ACTIVITY {
            // Stored files for downloads to read and GC to collect.
            while completed.len() < 6 {
                let size = rng.random_range(2_000_000..16_000_000);
                if let Some(id) = upload(&server, next_seed, size).await {
                    completed.insert(id, (next_seed, size));
                }
                next_seed += 1;
            }
            let delay = kill_during(
                &mut server,
                &dir,
                activity,
                &mut rng,
                &mut next_seed,
                &mut completed,
            )
            .await;
            let what = format!("SIGKILL {delay:?} into {activity:?}");
            let left = check_offline(&dir, &what);
            server = TestServer::start(&dir, activity.flags());
            server.login().await;
            check_restarted(&server, &dir, &completed, &what).await;
            kills.push(format!("{what}: {left}; recovered"));
        }
    }
    println!("{} kill points:", kills.len());
    for k in &kills {
        println!("  {k}");
    }
    assert_eq!(kills.len(), 4 * KILLS_PER_ACTIVITY);
}
