//! Guest link rows. The rules are in `crate::guest_links`; this applies them
//! inside the writer's transaction when a guest upload starts, so the check
//! and the new `uploading` row are one step and parallel uploads cannot pass
//! a link's upload limit together.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{SqlContext, StorageError, Store};
use crate::entry::Expiration;
use crate::guest_links::{FileLifetime, GuestLink, GuestLinkId, NewGuestLink};

const LINK_COLUMNS: &str = "g.id, g.label, g.created_time_ms, g.url_expiration_time_ms,
     g.file_lifetime_s, g.max_file_bytes, g.max_file_uploads, g.disabled,
     (SELECT COUNT(*) FROM entries e WHERE e.guest_link_id = g.id)";

fn link_from_row(row: &Row<'_>) -> rusqlite::Result<GuestLink> {
    let url_expires = match Expiration::from_millis(row.get(3)?) {
        Expiration::Never => None,
        Expiration::At(t) => Some(t),
    };
    Ok(GuestLink {
        id: row.get(0)?,
        label: row.get(1)?,
        created: chrono::DateTime::from_timestamp_millis(row.get(2)?).unwrap_or_default(),
        url_expires,
        file_lifetime: FileLifetime::from_secs(row.get(4)?),
        max_file_bytes: row.get::<_, Option<i64>>(5)?.map(|n| n as u64),
        max_file_uploads: row.get::<_, Option<i64>>(6)?.map(|n| n as u64),
        disabled: row.get(7)?,
        uploads_used: row.get::<_, i64>(8)? as u64,
    })
}

/// Inserts a new link. Fails with a constraint error if the id exists.
pub fn insert(
    store: &Store,
    id: &GuestLinkId,
    link: &NewGuestLink,
    now_ms: i64,
) -> Result<(), StorageError> {
    store
        .writer()
        .execute(
            "INSERT INTO guest_links (id, label, max_file_bytes, max_file_uploads,
                 file_lifetime_s, created_time_ms, url_expiration_time_ms, disabled)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)",
            params![
                id.as_str(),
                link.label,
                link.max_file_bytes.map(|n| n as i64),
                link.max_file_uploads.map(|n| n as i64),
                link.file_lifetime.to_secs(),
                now_ms,
                link.url_expiration.to_millis(),
            ],
        )
        .ctx("inserting a guest link")?;
    Ok(())
}

pub fn get(store: &Store, id: &GuestLinkId) -> Result<GuestLink, StorageError> {
    get_with(&*store.reader()?, id)
}

fn get_with(conn: &Connection, id: &GuestLinkId) -> Result<GuestLink, StorageError> {
    conn.prepare_cached(&format!(
        "SELECT {LINK_COLUMNS} FROM guest_links g WHERE g.id = ?1"
    ))
    .ctx("preparing a guest link read")?
    .query_row([id.as_str()], link_from_row)
    .optional()
    .ctx("reading a guest link")?
    .ok_or(StorageError::NotFound)
}

/// Every link, newest first.
pub fn list(store: &Store) -> Result<Vec<GuestLink>, StorageError> {
    let conn = store.reader()?;
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {LINK_COLUMNS} FROM guest_links g
             ORDER BY g.created_time_ms DESC, g.rowid DESC"
        ))
        .ctx("preparing the guest link list")?;
    let rows = stmt
        .query_map([], link_from_row)
        .ctx("listing guest links")?;
    rows.collect::<Result<_, _>>().ctx("listing guest links")
}

pub fn set_disabled(store: &Store, id: &GuestLinkId, disabled: bool) -> Result<(), StorageError> {
    let changed = store
        .writer()
        .execute(
            "UPDATE guest_links SET disabled = ?2 WHERE id = ?1",
            params![id.as_str(), disabled],
        )
        .ctx("enabling or disabling a guest link")?;
    match changed {
        0 => Err(StorageError::NotFound),
        _ => Ok(()),
    }
}

/// Deletes a link. Files uploaded through it stay.
pub fn delete(store: &Store, id: &GuestLinkId) -> Result<(), StorageError> {
    let removed = store
        .writer()
        .execute("DELETE FROM guest_links WHERE id = ?1", [id.as_str()])
        .ctx("deleting a guest link")?;
    match removed {
        0 => Err(StorageError::NotFound),
        _ => Ok(()),
    }
}

/// Inside the writer's transaction that inserts a guest upload's row: the
/// link must exist and take an upload at `now_ms`.
pub(crate) fn check_upload(
    conn: &Connection,
    id: &GuestLinkId,
    now_ms: i64,
) -> Result<(), StorageError> {
    let link = get_with(conn, id)?;
    let now = chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
    match link.refusal(now) {
        Some(refusal) => Err(StorageError::GuestLinkRefused(refusal)),
        None => Ok(()),
    }
}

/// Attempts at a fresh random id before giving up (a clash is ~1e-28 likely).
const ID_ATTEMPTS: usize = 5;

/// Creates a link under a fresh id and returns the id.
pub fn create(
    store: &Store,
    link: &NewGuestLink,
    now_ms: i64,
) -> Result<GuestLinkId, StorageError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let id = GuestLinkId::generate();
        match insert(store, &id, link, now_ms) {
            Err(StorageError::Sqlite { source, .. })
                if attempt < ID_ATTEMPTS
                    && source.sqlite_error_code()
                        == Some(rusqlite::ErrorCode::ConstraintViolation) => {}
            other => return other.map(|()| id),
        }
    }
}
