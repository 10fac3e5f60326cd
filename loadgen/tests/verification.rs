//! Verification catches real corruption: a byte flipped in a stored chunk, directly in the
//! server's SQLite database, makes the `download` scenario report a mismatch.
#![allow(clippy::unwrap_used)]

mod common;

use common::Server;
use loadgen::{ByteSize, Config, Scenario};

/// share-server's default chunk size: chunk `i` holds bytes `i * CHUNK ..`.
const CHUNK: u64 = 327_680;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_a_chunk_is_a_mismatch() {
    let server = Server::start();
    let upload = loadgen::run(Config {
        size: ByteSize(1_000_000),
        ..server.config(Scenario::Upload, "upload")
    })
    .await
    .unwrap();
    assert!(upload.ok, "{}", upload.to_text());
    let record = upload.uploads[0].clone();

    // Flip one byte in the middle of chunk 1. The server reads chunks through SQLite on every
    // download (its page cache is per connection), so it serves the changed byte.
    let flipped_offset = CHUNK + 1234;
    let db = rusqlite::Connection::open(server.db()).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(30)).unwrap();
    let mut chunk: Vec<u8> = db
        .query_row(
            "SELECT chunk FROM entries_data WHERE id = ?1 AND chunk_index = 1",
            [&record.id],
            |row| row.get(0),
        )
        .unwrap();
    chunk[1234] ^= 0x01;
    let changed = db
        .execute(
            "UPDATE entries_data SET chunk = ?1 WHERE id = ?2 AND chunk_index = 1",
            rusqlite::params![chunk, record.id],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);

    // Ranges as long as the file, so some of the 16 cover the flipped byte.
    let download = loadgen::run(Config {
        known_uploads: vec![record.clone()],
        ranges_per_download: 16,
        range_size: ByteSize(record.size),
        ..server.config(Scenario::Download, "download")
    })
    .await
    .unwrap();
    assert!(!download.ok, "a corrupted download must fail the run");
    assert_eq!(download.verified_downloads, 0);
    assert!(download.mismatches >= 1);
    assert_eq!(download.failures, download.mismatches);
    let whole = download
        .mismatch_examples
        .iter()
        .find(|m| m.kind == "download")
        .expect("the whole download is a mismatch");
    assert_eq!(whole.id, record.id);
    assert!(whole.detail.contains("SHA-256"), "{}", whole.detail);
    let ranges: Vec<_> = download
        .mismatch_examples
        .iter()
        .filter(|m| m.kind == "range")
        .collect();
    assert!(!ranges.is_empty(), "no range covered byte {flipped_offset}");
    for range in &ranges {
        assert_eq!(range.offset, Some(flipped_offset), "{range:?}");
        let (first, last) = range.range.unwrap();
        assert!((first..=last).contains(&flipped_offset));
    }
    // Ranges that miss the flipped byte still verify.
    assert_eq!(download.verified_ranges + download.mismatches - 1, 16);
    let reasons = &download.scenarios["download"].failure_reasons;
    assert_eq!(reasons["download: content mismatch"], 1);
}
