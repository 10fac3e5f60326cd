//! loadgen against the real share-server: uploads are stored and listed, downloads and ranges
//! verify, slow and aborted uploads behave, and loadgen's numbers agree with the server's own
//! `/debug/stats` counters.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Server, eventually};
use loadgen::{ByteSize, Config, MixedWeights, Scenario, Summary};

const MB: u64 = 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_downloads_slow_and_aborted_uploads_match_the_server() {
    let server = Server::start();

    // 3 parallel 20 MB uploads: all stored, all listed.
    let upload = loadgen::run(Config {
        users: 3,
        ..server.config(Scenario::Upload, "upload")
    })
    .await
    .unwrap();
    assert!(upload.ok, "{}", upload.to_text());
    assert_eq!(upload.uploads.len(), 3);
    for record in &upload.uploads {
        assert_eq!(record.size, 20 * MB);
        assert_eq!(
            record.sha256,
            loadgen::pattern_sha256(loadgen::Pattern::new(record.seed), record.size)
        );
    }
    let mut uploaded: Vec<String> = upload.uploads.iter().map(|r| r.id.clone()).collect();
    uploaded.sort();
    assert_eq!(server.listed_ids().await, uploaded);
    let stats = &upload.scenarios["upload"];
    assert_eq!(stats.bytes_sent, 60 * MB);
    assert_eq!(stats.transfers["upload"].seconds.count, 3);
    assert!(stats.transfers["upload"].mb_per_s > 0.0);
    for name in loadgen::GOOSE_REPORTS {
        let report = server.dir.path().join("upload").join(name);
        assert!(report.is_file(), "goose report {name} missing");
    }
    let written = Summary::read(&upload.reports.summary).unwrap();
    assert_eq!(written.uploads, upload.uploads);

    // A separate download phase from the upload phase's records: every byte verified.
    let download = loadgen::run(Config {
        users: 3,
        ranges_per_download: 4,
        known_uploads: upload.uploads.clone(),
        ..server.config(Scenario::Download, "download")
    })
    .await
    .unwrap();
    assert!(download.ok, "{}", download.to_text());
    assert_eq!(download.verified_downloads, 3);
    assert_eq!(download.verified_ranges, 12);
    assert_eq!(download.mismatches, 0);
    assert!(
        download.uploads.is_empty(),
        "known uploads need no new upload"
    );

    // A slow upload at 1 MB/s of 2 MB takes about 2 s.
    let slow = loadgen::run(Config {
        size: ByteSize(2 * MB),
        slow_rate: ByteSize(MB),
        ..server.config(Scenario::SlowUpload, "slow")
    })
    .await
    .unwrap();
    assert!(slow.ok, "{}", slow.to_text());
    assert_eq!(slow.uploads.len(), 1);
    let slow_upload = &slow.scenarios["slow-upload"].transfers["upload"];
    assert!(
        (1.8..10.0).contains(&slow_upload.seconds.max),
        "2 MB at 1 MB/s took {} s",
        slow_upload.seconds.max
    );
    assert!(slow_upload.mb_per_s < 1.1, "{} MB/s", slow_upload.mb_per_s);

    // An upload cut off at half its body: counted as aborted, absent from the list.
    let abort = loadgen::run(Config {
        abort_fraction: 0.5,
        ..server.config(Scenario::AbortUpload, "abort")
    })
    .await
    .unwrap();
    assert!(abort.ok, "{}", abort.to_text());
    assert_eq!(abort.aborted_uploads, 1);
    assert!(abort.uploads.is_empty());
    assert_eq!(abort.bytes_sent, 10 * MB);
    let mut stored = uploaded.clone();
    stored.push(slow.uploads[0].id.clone());
    stored.sort();
    assert_eq!(
        server.listed_ids().await,
        stored,
        "the aborted upload is not listed"
    );

    // loadgen's numbers against the server's counters.
    eventually(
        Duration::from_secs(10),
        "the aborted upload to be counted",
        || {
            let server = &server;
            async move { server.counter("uploads_failed_total").await == 1 }
        },
    )
    .await;
    let counters = server.counters().await;
    let counter = |name: &str| counters[name].as_u64().unwrap();
    let runs = [&upload, &download, &slow, &abort];
    let total = |f: fn(&Summary) -> u64| runs.iter().map(|s| f(s)).sum::<u64>();
    assert_eq!(
        counter("uploads_completed_total"),
        total(|s| s.uploads.len() as u64)
    );
    assert_eq!(
        counter("uploads_failed_total"),
        total(|s| s.aborted_uploads)
    );
    assert_eq!(
        counter("downloads_started_total"),
        total(|s| s.verified_downloads + s.verified_ranges)
    );
    assert_eq!(counter("bytes_sent_total"), total(|s| s.bytes_received));
    // Stored uploads arrive whole; of the aborted body the server may have read less than was
    // sent (the rest was in flight when the connection closed).
    let stored_bytes = 60 * MB + 2 * MB;
    let received = counter("bytes_received_total");
    assert!(
        (stored_bytes..=total(|s| s.bytes_sent)).contains(&received),
        "server received {received} bytes, loadgen sent {}",
        total(|s| s.bytes_sent)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_run_downloads_its_own_uploads() {
    let server = Server::start();
    let mixed = loadgen::run(Config {
        users: 4,
        iterations: Some(2),
        size: ByteSize(3 * MB),
        slow_rate: ByteSize(10 * MB),
        ranges_per_download: 2,
        mixed: MixedWeights {
            upload: 1,
            download: 1,
            slow_upload: 1,
            abort_upload: 1,
        },
        ..server.config(Scenario::Mixed, "mixed")
    })
    .await
    .unwrap();
    assert!(mixed.ok, "{}", mixed.to_text());
    for name in ["upload", "download", "slow-upload", "abort-upload"] {
        assert!(mixed.scenarios.contains_key(name), "{name} did not run");
    }
    assert_eq!(mixed.verified_downloads, 2);
    assert_eq!(mixed.verified_ranges, 4);
    assert_eq!(mixed.aborted_uploads, 2);
    // 2 uploads + 2 slow uploads, plus the download user's own when none had finished yet.
    let stored = mixed.uploads.len();
    assert!((4..=5).contains(&stored), "{stored} uploads");
    assert_eq!(server.listed_ids().await.len(), stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_alone_uploads_what_it_verifies_and_file_uploads_replay_a_file() {
    let server = Server::start();
    let download = loadgen::run(Config {
        size: ByteSize(MB),
        ranges_per_download: 3,
        ..server.config(Scenario::Download, "download-alone")
    })
    .await
    .unwrap();
    assert!(download.ok, "{}", download.to_text());
    assert_eq!(download.uploads.len(), 1);
    assert_eq!(
        (download.verified_downloads, download.verified_ranges),
        (1, 3)
    );

    let file = server.dir.path().join("clip.mp4");
    let data: Vec<u8> = (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    let upload = loadgen::run(Config {
        file: Some(file.clone()),
        ..server.config(Scenario::Upload, "file-upload")
    })
    .await
    .unwrap();
    assert!(upload.ok, "{}", upload.to_text());
    let record = &upload.uploads[0];
    assert_eq!(record.size, data.len() as u64);
    assert_eq!(record.file.as_deref(), Some(file.as_path()));
    assert_eq!(record.filename, "clip.mp4");
    let check = loadgen::run(Config {
        known_uploads: upload.uploads.clone(),
        ranges_per_download: 5,
        ..server.config(Scenario::Download, "file-download")
    })
    .await
    .unwrap();
    assert!(check.ok, "{}", check.to_text());
    assert_eq!((check.verified_downloads, check.verified_ranges), (1, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_time_alone_or_as_a_deadline_ends_the_run() {
    let server = Server::start();
    let timed = loadgen::run(Config {
        run_time: Some(Duration::from_secs(2)),
        size: ByteSize(MB),
        ..server.config(Scenario::Upload, "timed")
    })
    .await
    .unwrap();
    assert!(timed.ok, "{}", timed.to_text());
    assert!(
        timed.uploads.len() > 1,
        "iterations are unlimited with a run time"
    );
    assert!((2.0..10.0).contains(&timed.duration_seconds));

    let deadline = loadgen::run(Config {
        iterations: Some(1_000_000),
        run_time: Some(Duration::from_secs(1)),
        size: ByteSize(MB),
        ..server.config(Scenario::Upload, "deadline")
    })
    .await
    .unwrap();
    assert!(deadline.ok, "{}", deadline.to_text());
    assert!((1.0..10.0).contains(&deadline.duration_seconds));
    assert!(deadline.uploads.len() < 1_000_000);
}

/// `churn`: every entry is uploaded, verified whole and by a range, and then either deleted or
/// left to expire; with a short expiration and a fast GC nothing is left on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_deletes_or_expires_everything_it_uploads() {
    let server = Server::start_with(&["--min-expiration", "1s", "--gc-interval", "200ms"]);
    let churn = loadgen::run(Config {
        users: 2,
        iterations: Some(4),
        size: ByteSize(MB),
        expire_after: Some(Duration::from_secs(2)),
        delete_fraction: 0.5,
        ..server.config(Scenario::Churn, "churn")
    })
    .await
    .unwrap();
    assert!(churn.ok, "{}", churn.to_text());
    assert_eq!(churn.uploads.len(), 8);
    assert_eq!(churn.verified_downloads, 8);
    assert_eq!(churn.verified_ranges, 8);
    let stats = &churn.scenarios["churn"];
    let deletes = stats.transfers.get("delete").map_or(0, |t| t.seconds.count);
    assert!(
        deletes < 8,
        "with delete-fraction 0.5 and this seed some entries are left to expire"
    );
    assert!(deletes > 0, "and some are deleted");
    eventually(
        Duration::from_secs(30),
        "expired entries unlisted",
        || async { server.listed_ids().await.is_empty() },
    )
    .await;
    let db = rusqlite::Connection::open(server.db()).unwrap();
    let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    eventually(
        Duration::from_secs(30),
        "GC removes expired rows and chunks",
        || {
            let left =
                count("SELECT COUNT(*) FROM entries") + count("SELECT COUNT(*) FROM entries_data");
            async move { left == 0 }
        },
    )
    .await;
}

/// `guest-upload`: each user creates its own guest link and uploads through it; the owner sees
/// the files (with a link each) and they download byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_uploads_go_through_a_link_per_user_and_verify() {
    let server = Server::start();
    let guest = loadgen::run(Config {
        users: 2,
        iterations: Some(2),
        size: ByteSize(3 * MB),
        ..server.config(Scenario::GuestUpload, "guest-upload")
    })
    .await
    .unwrap();
    assert!(guest.ok, "{}", guest.to_text());
    assert_eq!(guest.uploads.len(), 4);
    let mut uploaded: Vec<String> = guest.uploads.iter().map(|r| r.id.clone()).collect();
    uploaded.sort();
    assert_eq!(server.listed_ids().await, uploaded);
    let db = rusqlite::Connection::open(server.db()).unwrap();
    let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(
        count("SELECT COUNT(*) FROM guest_links"),
        2,
        "one link per user"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM entries WHERE guest_link_id IS NOT NULL"),
        4,
        "every file came through a link"
    );
    let download = loadgen::run(Config {
        users: 2,
        iterations: Some(2),
        ranges_per_download: 2,
        known_uploads: guest.uploads.clone(),
        ..server.config(Scenario::Download, "download-guest")
    })
    .await
    .unwrap();
    assert!(download.ok, "{}", download.to_text());
    assert_eq!(download.verified_downloads, 4);
}
