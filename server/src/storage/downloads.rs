//! Download history: a row per recorded GET, the last [`KEPT_PER_ENTRY`] per
//! entry, and `entries.download_count`, the total that never shrinks.

use std::collections::BTreeMap;

use rusqlite::{Connection, params};

use super::{SqlContext, StorageError, Store};
use crate::entry::EntryId;

/// User agents are client-controlled: keep what we store bounded.
pub const MAX_USER_AGENT_BYTES: usize = 512;

/// History rows kept per entry (older ones are pruned as new ones arrive):
/// ten pages of the history page, at most ~0.6 MB of rows per entry, and the
/// bound on what `unique` groups. The total is `entries.download_count`,
/// which download limits check, so pruning never frees a limited download.
pub const KEPT_PER_ENTRY: u64 = 1_000;

/// Rows in a history page unless the client asks (the HTML page's size).
pub const DEFAULT_PAGE: u32 = 100;

/// Most rows one history page may ask for: ≤ ~1.3 MB for the rows and their JSON.
pub const MAX_PAGE: u32 = 1_000;

/// A download to record. Its fields are bounded when it is made (the IP is a
/// parsed address, the agent is cut to [`MAX_USER_AGENT_BYTES`]).
#[derive(Debug, Clone)]
pub struct NewDownload {
    pub entry_id: EntryId,
    pub time_ms: i64,
    pub client_ip: String,
    pub user_agent: String,
}

impl NewDownload {
    pub fn new(entry_id: EntryId, time_ms: i64, client_ip: String, user_agent: &str) -> Self {
        NewDownload {
            entry_id,
            time_ms,
            client_ip,
            user_agent: truncate_utf8(user_agent, MAX_USER_AGENT_BYTES).to_owned(),
        }
    }
}

/// Records a batch in one transaction: rows, counters, then pruning to the
/// last `keep` rows of each entry touched. Records of entries deleted since
/// are skipped. Returns how many were recorded.
pub fn record_batch(store: &Store, batch: &[NewDownload], keep: u64) -> Result<u64, StorageError> {
    let mut conn = store.writer();
    let tx = conn.transaction().ctx("starting a download batch")?;
    let mut per_entry: BTreeMap<&str, u64> = BTreeMap::new();
    for d in batch {
        let inserted = tx
            .prepare_cached(
                "INSERT INTO downloads (entry_id, download_time_ms, client_ip, user_agent)
                 SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM entries WHERE id = ?1)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    d.entry_id.as_str(),
                    d.time_ms,
                    d.client_ip,
                    d.user_agent
                ])
            })
            .ctx("recording a download")?;
        if inserted == 1 {
            *per_entry.entry(d.entry_id.as_str()).or_default() += 1;
        }
    }
    for (id, n) in &per_entry {
        tx.execute(
            "UPDATE entries SET download_count = download_count + ?2 WHERE id = ?1",
            params![id, *n as i64],
        )
        .ctx("counting downloads")?;
        prune(&tx, id, keep)?;
    }
    tx.commit().ctx("committing a download batch")?;
    Ok(per_entry.values().sum())
}

/// Records a download only if the entry has had fewer than `max` so far.
/// The check and the count's increment are one statement on the single
/// writer, so parallel requests cannot both take the last download. Returns
/// whether it was recorded (allowed).
pub fn record_within_limit(store: &Store, d: &NewDownload, max: u64) -> Result<bool, StorageError> {
    let mut conn = store.writer();
    let tx = conn.transaction().ctx("starting a limited download")?;
    let allowed = tx
        .execute(
            "UPDATE entries SET download_count = download_count + 1
             WHERE id = ?1 AND download_count < ?2",
            params![d.entry_id.as_str(), max as i64],
        )
        .ctx("taking a limited download")?
        == 1;
    if allowed {
        tx.execute(
            "INSERT INTO downloads (entry_id, download_time_ms, client_ip, user_agent)
             VALUES (?1, ?2, ?3, ?4)",
            params![d.entry_id.as_str(), d.time_ms, d.client_ip, d.user_agent],
        )
        .ctx("recording a limited download")?;
        prune(&tx, d.entry_id.as_str(), KEPT_PER_ENTRY)?;
    }
    tx.commit().ctx("committing a limited download")?;
    Ok(allowed)
}

/// Deletes all but the newest `keep` (≥ 1) rows of an entry: a walk of
/// `keep` index entries, then the older rows.
fn prune(conn: &Connection, id: &str, keep: u64) -> Result<(), StorageError> {
    conn.prepare_cached(
        "DELETE FROM downloads WHERE entry_id = ?1 AND id < (
             SELECT id FROM downloads WHERE entry_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
    )
    .and_then(|mut s| s.execute(params![id, keep.saturating_sub(1) as i64]))
    .ctx("pruning the download history")?;
    Ok(())
}

/// One recorded download (`unique`: one client's latest).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Download {
    /// The row's id: pass it as `before` to get the rows after it.
    pub id: i64,
    pub time: chrono::DateTime<chrono::Utc>,
    pub client_ip: String,
    pub user_agent: String,
}

/// Which part of an entry's history to read.
#[derive(Debug, Clone, Copy)]
pub struct HistoryQuery {
    /// One row per client (IP and user agent), at its latest download.
    pub unique: bool,
    /// Rows per page, 1 to [`MAX_PAGE`].
    pub limit: u32,
    /// Only rows with an id below this (the previous page's `nextBefore`).
    pub before: Option<i64>,
}

/// One page of history, newest first.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    pub downloads: Vec<Download>,
    /// `before` for the next page; `None` on the last page.
    pub next_before: Option<i64>,
}

/// A page of an entry's history. Memory is one page: SQLite keeps the
/// newest `limit + 1` rows while it walks the entry's index (and with
/// `unique`, its groups: at most [`KEPT_PER_ENTRY`] plus a batch of rows).
pub fn page(store: &Store, id: &EntryId, q: HistoryQuery) -> Result<HistoryPage, StorageError> {
    let conn = store.reader()?;
    let mut stmt = conn
        .prepare_cached(if q.unique {
            // A bare column beside MAX() comes from the row holding the max.
            "SELECT MAX(id) AS last, download_time_ms, client_ip, user_agent FROM downloads
             WHERE entry_id = ?1 GROUP BY client_ip, user_agent
             HAVING last < ?2 ORDER BY last DESC LIMIT ?3"
        } else {
            "SELECT id, download_time_ms, client_ip, user_agent FROM downloads
             WHERE entry_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3"
        })
        .ctx("preparing the download history")?;
    let limit = q.limit.clamp(1, MAX_PAGE);
    let before = q.before.unwrap_or(i64::MAX);
    let rows = stmt
        .query_map(params![id.as_str(), before, limit + 1], |r| {
            Ok(Download {
                id: r.get(0)?,
                time: chrono::DateTime::from_timestamp_millis(r.get(1)?).unwrap_or_default(),
                client_ip: r.get(2)?,
                user_agent: r.get(3)?,
            })
        })
        .ctx("reading the download history")?;
    let mut downloads: Vec<Download> = rows
        .collect::<Result<_, _>>()
        .ctx("reading the download history")?;
    // The extra row only says whether there is a next page.
    let next_before = (downloads.len() > limit as usize).then(|| {
        downloads.truncate(limit as usize);
        downloads.last().map_or(0, |d| d.id)
    });
    Ok(HistoryPage {
        downloads,
        next_before,
    })
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Test fixtures shared with the recorder's tests.
#[cfg(test)]
pub(crate) mod fixture {
    use super::*;
    use crate::entry::Expiration;
    use crate::storage::entries::{self, FinishedUpload, NewUpload};

    /// A store holding one complete entry.
    pub(crate) fn store_with_entry(dir: &tempfile::TempDir) -> (Store, EntryId) {
        let store = Store::open(&dir.path().join("t.db"), 0).unwrap();
        let id = EntryId::generate();
        let upload = NewUpload {
            id: id.clone(),
            filename: "f".into(),
            chunk_size: 4096,
            upload_time_ms: 0,
            expiration: Expiration::Never,
            max_downloads: None,
            guest_link: None,
        };
        entries::start_upload(&store, &upload).unwrap();
        let done = FinishedUpload {
            size: 0,
            content_type: "text/plain".into(),
            note: None,
        };
        entries::finish_upload(&store, &id, &done).unwrap();
        (store, id)
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::store_with_entry;
    use super::*;
    use crate::storage::entries;

    fn count(store: &Store, id: &EntryId) -> (u64, i64) {
        let e = entries::get(store, id, 1).unwrap();
        let rows = store
            .reader()
            .unwrap()
            .query_row(
                "SELECT COUNT(*) FROM downloads WHERE entry_id = ?1",
                [id.as_str()],
                |r| r.get(0),
            )
            .unwrap();
        (e.downloads, rows)
    }

    fn batch(id: &EntryId, n: usize, agent: &str) -> Vec<NewDownload> {
        (0..n)
            .map(|i| NewDownload::new(id.clone(), i as i64, "::1".into(), agent))
            .collect()
    }

    #[test]
    fn batches_prune_rows_but_the_count_stays_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (store, id) = store_with_entry(&dir);
        assert_eq!(record_batch(&store, &batch(&id, 7, "a"), 5).unwrap(), 7);
        assert_eq!(record_batch(&store, &batch(&id, 2, "b"), 5).unwrap(), 2);
        assert_eq!(count(&store, &id), (9, 5));
        let gone = NewDownload::new(EntryId::generate(), 0, "::1".into(), "x");
        assert_eq!(record_batch(&store, &[gone], 5).unwrap(), 0, "skipped");
    }

    #[test]
    fn a_limit_counts_downloads_not_kept_rows() {
        let dir = tempfile::tempdir().unwrap();
        let (store, id) = store_with_entry(&dir);
        let d = NewDownload::new(id.clone(), 1, "::1".into(), "a");
        record_batch(&store, &batch(&id, 3, "a"), 1).unwrap();
        assert!(!record_within_limit(&store, &d, 3).unwrap(), "3 of 3 taken");
        assert!(record_within_limit(&store, &d, 4).unwrap());
        assert!(!record_within_limit(&store, &d, 4).unwrap());
        assert_eq!(count(&store, &id), (4, 2));
    }

    #[test]
    fn pages_walk_every_row_once_and_unique_groups() {
        let dir = tempfile::tempdir().unwrap();
        let (store, id) = store_with_entry(&dir);
        let mut rows = batch(&id, 5, "a");
        rows.extend(batch(&id, 3, "b"));
        record_batch(&store, &rows, KEPT_PER_ENTRY).unwrap();
        let walk = |unique| {
            let (mut seen, mut before, mut pages) = (Vec::new(), None, 0);
            loop {
                let q = HistoryQuery {
                    unique,
                    limit: 3,
                    before,
                };
                let p = page(&store, &id, q).unwrap();
                assert!(p.downloads.len() <= 3);
                seen.extend(p.downloads.iter().map(|d| (d.id, d.user_agent.clone())));
                pages += 1;
                match p.next_before {
                    Some(b) => before = Some(b),
                    None => return (seen, pages),
                }
            }
        };
        let (all, pages) = walk(false);
        assert_eq!(pages, 3);
        let ids: Vec<i64> = all.iter().map(|r| r.0).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        sorted.dedup();
        assert_eq!(ids, sorted, "newest first, each row once");
        assert_eq!(ids.len(), 8);
        let (unique, pages) = walk(true);
        assert_eq!(pages, 1);
        assert_eq!(unique, vec![(ids[0], "b".into()), (ids[3], "a".into())]);
    }

    #[test]
    fn agents_are_cut_on_character_boundaries() {
        let long = "é".repeat(400);
        let d = NewDownload::new(EntryId::generate(), 0, String::new(), &long);
        assert_eq!(d.user_agent.len(), MAX_USER_AGENT_BYTES);
        assert_eq!(truncate_utf8("héllo", 2), "h");
        assert_eq!(truncate_utf8("abc", 10), "abc");
    }
}
