//! `meta.json`'s `files_at_peak`: the server's files outside the heap (its
//! temp dir, files it holds open but has deleted, the WAL and the database)
//! at the sample where temp + deleted-open + WAL bytes were highest, grouped
//! by a path pattern ([`pattern`]) so a thousand leaked temp files are one
//! line. Also each kind's bytes in the first sample, so growth can be told.

use serde::{Deserialize, Serialize};

/// Where a file was found.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    /// In the server's temp dir (`TMPDIR`, `SQLITE_TMPDIR`).
    #[default]
    Temp,
    /// Held open by the server but unlinked (`/proc/<pid>/fd` says
    /// "(deleted)"): SQLite's `etilqs_*` temp files live only like this.
    DeletedOpen,
    /// The database's `-wal` file.
    Wal,
    /// The database file itself: the product's data, shown for scale.
    Database,
}

impl FileKind {
    pub const ALL: [FileKind; 4] = [
        FileKind::Temp,
        FileKind::DeletedOpen,
        FileKind::Wal,
        FileKind::Database,
    ];

    /// Its `kebab-case` name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Temp => "temp",
            FileKind::DeletedOpen => "deleted-open",
            FileKind::Wal => "wal",
            FileKind::Database => "database",
        }
    }
}

/// Bytes per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KindBytes {
    pub temp: u64,
    pub deleted_open: u64,
    pub wal: u64,
    pub database: u64,
}

impl KindBytes {
    pub fn get(&self, kind: FileKind) -> u64 {
        match kind {
            FileKind::Temp => self.temp,
            FileKind::DeletedOpen => self.deleted_open,
            FileKind::Wal => self.wal,
            FileKind::Database => self.database,
        }
    }

    pub fn add(&mut self, kind: FileKind, bytes: u64) {
        let slot = match kind {
            FileKind::Temp => &mut self.temp,
            FileKind::DeletedOpen => &mut self.deleted_open,
            FileKind::Wal => &mut self.wal,
            FileKind::Database => &mut self.database,
        };
        *slot += bytes;
    }

    /// What the peak is taken over: everything but the database.
    pub fn outside_db(&self) -> u64 {
        self.temp + self.deleted_open + self.wal
    }
}

/// Files of one kind whose paths share a pattern.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FileGroup {
    pub kind: FileKind,
    /// The file name (relative to the temp dir for temp files) with its
    /// variable parts as `*`, e.g. `sharerig-multipart-*.part`.
    pub pattern: String,
    pub files: u64,
    pub bytes: u64,
    /// One of the files, its whole path.
    pub example: String,
    /// On a tmpfs (or a memfd): RAM charged to the cgroup that cannot be
    /// written back and dropped. Else page cache, droppable once written back.
    pub in_ram: bool,
}

/// The listing at the peak, and the first sample's bytes per kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FilesAtPeak {
    /// The sample's time, ms since the run's start.
    pub t_ms: u64,
    /// Bytes per kind at the peak.
    pub bytes: KindBytes,
    /// Bytes per kind in the first sample with a listing.
    pub first_bytes: KindBytes,
    /// Largest first; at most [`MAX_GROUPS`], the rest in `groups_left_out`.
    pub groups: Vec<FileGroup>,
    pub groups_left_out: u64,
}

/// Groups kept in `meta.json`.
pub const MAX_GROUPS: usize = 20;

/// A file name with its variable parts as `*`: split on `-`, `_` and `.`, a
/// token with a digit, or of 8 or more letters mixing cases, is variable.
/// Each `/`-separated component is treated alike.
pub fn pattern(name: &str) -> String {
    name.split('/')
        .map(component_pattern)
        .collect::<Vec<_>>()
        .join("/")
}

fn component_pattern(name: &str) -> String {
    // An `O_TMPFILE` file has no name; the kernel shows `#<inode>`. SQLite
    // makes its temp files so on Linux (a VACUUM's copy of the database).
    if let Some(inode) = name.strip_prefix('#')
        && !inode.is_empty()
        && inode.chars().all(|c| c.is_ascii_digit())
    {
        return "#*".to_owned();
    }
    let mut out = String::with_capacity(name.len());
    let mut token = String::new();
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            out.push_str(token_pattern(&token));
            out.push(c);
            token.clear();
        } else {
            token.push(c);
        }
    }
    out.push_str(token_pattern(&token));
    out
}

fn token_pattern(token: &str) -> &str {
    let digit = token.chars().any(|c| c.is_ascii_digit());
    let random = token.chars().count() >= 8
        && token.chars().any(char::is_uppercase)
        && token.chars().any(char::is_lowercase);
    if digit || random { "*" } else { token }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_tokens_become_stars() {
        let cases = [
            (
                "sharerig-multipart-AbC123xyz.part",
                "sharerig-multipart-*.part",
            ),
            (
                "sharerig-multipart-AbCdeFghk.part",
                "sharerig-multipart-*.part",
            ),
            ("etilqs_3f9a0c1d", "etilqs_*"),
            ("tmp/#10077140", "tmp/#*"),
            ("store.db-wal", "store.db-wal"),
            ("upload-42/chunk_7.bin", "upload-*/chunk_*.bin"),
            // Short or single-case words stay: they are names, not ids.
            ("Cargo.toml", "Cargo.toml"),
            ("multipart", "multipart"),
            ("", ""),
        ];
        for (name, want) in cases {
            assert_eq!(pattern(name), want, "{name}");
        }
    }

    #[test]
    fn an_old_meta_without_files_at_peak_loads_and_kinds_are_kebab_case() {
        let m: crate::Meta = serde_json::from_str(r#"{"scenario": "x"}"#).unwrap_or_default();
        assert_eq!(m.scenario, "x");
        assert!(m.files_at_peak.is_none());
        for kind in FileKind::ALL {
            let json = serde_json::to_string(&kind).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        let mut b = KindBytes::default();
        b.add(FileKind::Wal, 5);
        b.add(FileKind::Database, 100);
        b.add(FileKind::Temp, 2);
        assert_eq!((b.get(FileKind::Wal), b.outside_db()), (5, 7));
    }
}
