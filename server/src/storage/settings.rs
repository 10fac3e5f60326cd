//! The `settings` table: one row per key.

use rusqlite::{OptionalExtension, params};

use super::{SqlContext, StorageError, Store};
use crate::settings::{MAX_EXPIRATION_DAYS, Settings};

const DEFAULT_EXPIRATION_KEY: &str = "default_expiration_days";

/// The settings; defaults for keys never set.
pub fn get(store: &Store) -> Result<Settings, StorageError> {
    let value: Option<String> = store
        .reader()?
        .query_row(
            "SELECT value FROM settings WHERE key = ?1",
            [DEFAULT_EXPIRATION_KEY],
            |r| r.get(0),
        )
        .optional()
        .ctx("reading settings")?;
    let default = Settings::default();
    let default_expiration_days = match value.as_deref() {
        None => default.default_expiration_days,
        Some("never") => None,
        // Only `put` writes this key; a value out of range was edited by hand.
        Some(v) => match v.parse::<u32>() {
            Ok(d) if (1..=MAX_EXPIRATION_DAYS).contains(&d) => Some(d),
            _ => {
                tracing::warn!(value = v, "ignoring an invalid default expiration setting");
                default.default_expiration_days
            }
        },
    };
    Ok(Settings {
        default_expiration_days,
    })
}

pub fn put(store: &Store, settings: &Settings) -> Result<(), StorageError> {
    let value = match settings.default_expiration_days {
        None => "never".to_owned(),
        Some(d) => d.to_string(),
    };
    store
        .writer()
        .execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![DEFAULT_EXPIRATION_KEY, value],
        )
        .ctx("saving settings")?;
    Ok(())
}
