//! The `delete` scenario against the real share-server: known entries are deleted once each and
//! are gone; without known entries a user deletes its own upload; deleting what is already gone
//! is a failure with the server's reason.
#![allow(clippy::unwrap_used)]

mod common;

use common::Server;
use loadgen::{ByteSize, Config, Scenario, Summary};

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_each_entry_once_and_checks_it_is_gone() {
    let server = Server::start();
    let upload = loadgen::run(Config {
        users: 3,
        size: ByteSize(1_000_000),
        ..server.config(Scenario::Upload, "upload")
    })
    .await
    .unwrap();
    assert!(upload.ok, "{}", upload.to_text());
    let uploaded = sorted(upload.uploads.iter().map(|r| r.id.clone()).collect());
    assert_eq!(uploaded.len(), 3);
    assert_eq!(server.listed_ids().await, uploaded);

    // Three users, one iteration each: three known entries, each deleted by one user.
    let delete = loadgen::run(Config {
        users: 3,
        known_uploads: upload.uploads.clone(),
        ..server.config(Scenario::Delete, "delete")
    })
    .await
    .unwrap();
    assert!(delete.ok, "{}", delete.to_text());
    assert_eq!(delete.failures, 0);
    assert_eq!(delete.deleted, 3);
    assert_eq!(sorted(delete.deleted_ids.clone()), uploaded);
    assert!(delete.uploads.is_empty(), "known entries need no upload");
    let stats = &delete.scenarios["delete"];
    assert_eq!(stats.transfers["delete"].seconds.count, 3);
    assert_eq!(stats.transfers["delete-check"].seconds.count, 3);
    assert!(server.listed_ids().await.is_empty());
    assert!(Summary::remaining_uploads([&upload, &delete]).is_empty());
    let written = Summary::read(&delete.reports.summary).unwrap();
    assert_eq!(written.deleted_ids, delete.deleted_ids);

    // The same entries again: each DELETE meets a 404, reported with the server's reason.
    let again = loadgen::run(Config {
        users: 3,
        known_uploads: upload.uploads.clone(),
        ..server.config(Scenario::Delete, "delete-again")
    })
    .await
    .unwrap();
    assert!(!again.ok);
    assert_eq!((again.deleted, again.failures), (0, 3));
    let reasons = &again.scenarios["delete"].failure_reasons;
    assert!(
        reasons
            .keys()
            .all(|r| r.starts_with("delete: HTTP 404 Not Found")),
        "{reasons:?}"
    );

    // No known entries: each user uploads one and deletes that one.
    let alone = loadgen::run(Config {
        users: 2,
        size: ByteSize(1_000_000),
        ..server.config(Scenario::Delete, "delete-alone")
    })
    .await
    .unwrap();
    assert!(alone.ok, "{}", alone.to_text());
    assert_eq!(alone.deleted, 2);
    assert_eq!(
        sorted(alone.deleted_ids.clone()),
        sorted(alone.uploads.iter().map(|r| r.id.clone()).collect())
    );
    assert!(server.listed_ids().await.is_empty());
}
