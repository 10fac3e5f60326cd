//! Download history: one row per served GET.

use rusqlite::params;

use super::{SqlContext, StorageError, Store};
use crate::entry::EntryId;

/// User agents are client-controlled: keep what we store bounded.
pub const MAX_USER_AGENT_BYTES: usize = 512;

pub fn record(
    store: &Store,
    id: &EntryId,
    time_ms: i64,
    client_ip: &str,
    user_agent: &str,
) -> Result<(), StorageError> {
    let ua = truncate_utf8(user_agent, MAX_USER_AGENT_BYTES);
    store
        .writer()
        .execute(
            "INSERT INTO downloads (entry_id, download_time_ms, client_ip, user_agent)
             VALUES (?1, ?2, ?3, ?4)",
            params![id.as_str(), time_ms, client_ip, ua],
        )
        .ctx("recording a download")?;
    Ok(())
}

/// Records a download only if the entry has had fewer than `max` so far.
/// One statement on the single writer, so parallel requests cannot both
/// take the last download. Returns whether it was recorded (allowed).
pub fn record_within_limit(
    store: &Store,
    id: &EntryId,
    max: u64,
    time_ms: i64,
    client_ip: &str,
    user_agent: &str,
) -> Result<bool, StorageError> {
    let ua = truncate_utf8(user_agent, MAX_USER_AGENT_BYTES);
    let inserted = store
        .writer()
        .execute(
            "INSERT INTO downloads (entry_id, download_time_ms, client_ip, user_agent)
             SELECT ?1, ?2, ?3, ?4
             WHERE (SELECT COUNT(*) FROM downloads WHERE entry_id = ?1) < ?5",
            params![id.as_str(), time_ms, client_ip, ua, max as i64],
        )
        .ctx("recording a limited download")?;
    Ok(inserted == 1)
}

/// One recorded download.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Download {
    pub time: chrono::DateTime<chrono::Utc>,
    pub client_ip: String,
    pub user_agent: String,
}

/// The history of one entry, newest first. `unique`: one row per client
/// (IP and user agent), at its latest download.
pub fn list(store: &Store, id: &EntryId, unique: bool) -> Result<Vec<Download>, StorageError> {
    let conn = store.reader();
    let mut stmt = conn
        .prepare_cached(if unique {
            "SELECT MAX(download_time_ms) AS t, client_ip, user_agent FROM downloads
             WHERE entry_id = ?1 GROUP BY client_ip, user_agent ORDER BY t DESC"
        } else {
            "SELECT download_time_ms, client_ip, user_agent FROM downloads
             WHERE entry_id = ?1 ORDER BY download_time_ms DESC, rowid DESC"
        })
        .ctx("preparing the download history")?;
    let rows = stmt
        .query_map([id.as_str()], |r| {
            Ok(Download {
                time: chrono::DateTime::from_timestamp_millis(r.get(0)?).unwrap_or_default(),
                client_ip: r.get(1)?,
                user_agent: r.get(2)?,
            })
        })
        .ctx("reading the download history")?;
    rows.collect::<Result<_, _>>()
        .ctx("reading the download history")
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

#[cfg(test)]
mod tests {
    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(super::truncate_utf8("héllo", 2), "h");
        assert_eq!(super::truncate_utf8("héllo", 3), "hé");
        assert_eq!(super::truncate_utf8("abc", 10), "abc");
    }
}
