//! Memory outside the heap, named by files: the server's temp files, the
//! files it holds open but has deleted, and the WAL, at their peak
//! (`meta.json`'s `files_at_peak`, kept by the rig's sampler), grouped by
//! path pattern, with each kind's growth since the first sample and where
//! that memory lives: on a tmpfs it is RAM charged to the cgroup that cannot
//! be dropped; on disk it is page cache, droppable once written back. The
//! database file is listed for scale but never named as a cause: its page
//! cache is the product's data.

use std::path::PathBuf;

use run_format::{FileKind, FilesAtPeak, Meta};
use serde::{Deserialize, Serialize};

const MIB: f64 = 1024.0 * 1024.0;
/// Growth below this is not named as a cause (a WAL's few pages).
pub const MIN_GROWTH_BYTES: u64 = 1 << 20;

/// `summary.json`'s `outside_heap`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilesSummary {
    /// When temp + deleted-open + WAL bytes peaked, seconds since the start.
    pub at_s: f64,
    /// Those bytes at the peak.
    pub peak_bytes: u64,
    /// The server's temp dir (`meta.json`'s `machine.temp_dir`).
    pub temp_dir: Option<PathBuf>,
    /// Largest first.
    pub groups: Vec<FilesGroup>,
    /// Groups the rig did not keep (it keeps the largest 20).
    pub groups_left_out: u64,
    /// Per kind: bytes in the first sample and at the peak.
    pub growth: Vec<KindGrowth>,
}

/// Where a file's memory lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Place {
    /// tmpfs/shmem: counts against the cgroup, cannot be dropped.
    Ram,
    /// Disk: page cache, droppable once written back.
    PageCache,
}

impl Place {
    fn of(in_ram: bool) -> Place {
        if in_ram { Place::Ram } else { Place::PageCache }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Place::Ram => "RAM",
            Place::PageCache => "page cache",
        }
    }

    /// What it means for the limit.
    pub fn meaning(self) -> &'static str {
        match self {
            Place::Ram => "RAM (tmpfs/shmem): counts against the cgroup, cannot be dropped",
            Place::PageCache => "page cache: droppable once written back",
        }
    }
}

/// Files of one kind sharing a path pattern, at the peak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilesGroup {
    pub kind: FileKind,
    pub pattern: String,
    pub files: u64,
    pub bytes: u64,
    pub example: String,
    pub place: Place,
}

/// One kind's bytes in the first sample and at the peak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindGrowth {
    pub kind: FileKind,
    pub first_bytes: u64,
    pub peak_bytes: u64,
    /// Peak − first; negative when it shrank.
    pub growth_bytes: i64,
    /// Where most of its bytes at the peak live.
    pub place: Place,
}

/// The kind that grew most, for the report's cause line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileGrowth {
    pub kind: FileKind,
    /// Its largest group's pattern.
    pub pattern: String,
    pub files: u64,
    /// That group's bytes at the peak.
    pub bytes: u64,
    /// The kind's growth since the first sample.
    pub growth_bytes: u64,
    pub place: Place,
    /// E.g. "tmpfs files sharerig-multipart-*.part: 4 files, 400.0 MiB (RAM)".
    pub phrase: String,
}

impl FilesSummary {
    /// From `meta.json`; `None` for runs without a listing (`vm` mode, older rigs).
    pub fn of(meta: Option<&Meta>) -> Option<FilesSummary> {
        let meta = meta?;
        let at = meta.files_at_peak.as_ref()?;
        Some(summarize(at, meta.machine.temp_dir.clone()))
    }
}

fn summarize(at: &FilesAtPeak, temp_dir: Option<PathBuf>) -> FilesSummary {
    let groups: Vec<FilesGroup> = at
        .groups
        .iter()
        .map(|g| FilesGroup {
            kind: g.kind,
            pattern: g.pattern.clone(),
            files: g.files,
            bytes: g.bytes,
            example: g.example.clone(),
            place: Place::of(g.in_ram),
        })
        .collect();
    let growth = FileKind::ALL
        .iter()
        .map(|&kind| {
            let (first, peak) = (at.first_bytes.get(kind), at.bytes.get(kind));
            let of_kind = || groups.iter().filter(move |g| g.kind == kind);
            let in_ram: u64 = of_kind()
                .filter(|g| g.place == Place::Ram)
                .map(|g| g.bytes)
                .sum();
            let total: u64 = of_kind().map(|g| g.bytes).sum();
            KindGrowth {
                kind,
                first_bytes: first,
                peak_bytes: peak,
                growth_bytes: peak as i64 - first as i64,
                place: Place::of(total > 0 && in_ram * 2 > total),
            }
        })
        .collect();
    FilesSummary {
        at_s: at.t_ms as f64 / 1000.0,
        peak_bytes: at.bytes.outside_db(),
        temp_dir,
        groups,
        groups_left_out: at.groups_left_out,
        growth,
    }
}

/// The kind (not the database) that grew most since the first sample, by at
/// least [`MIN_GROWTH_BYTES`], with its largest group and a phrase naming it.
pub fn largest_growth(s: &FilesSummary) -> Option<FileGrowth> {
    let kind = s
        .growth
        .iter()
        .filter(|g| g.kind != FileKind::Database && g.growth_bytes >= MIN_GROWTH_BYTES as i64)
        .max_by_key(|g| g.growth_bytes)?;
    let group = s
        .groups
        .iter()
        .filter(|g| g.kind == kind.kind)
        .max_by_key(|g| g.bytes)?;
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / MIB);
    let files = match group.files {
        1 => "1 file".to_owned(),
        n => format!("{n} files"),
    };
    let place = group.place.as_str();
    let phrase = match kind.kind {
        FileKind::Wal => format!(
            "WAL {} grew to {} ({place})",
            group.pattern,
            mib(group.bytes)
        ),
        other => format!(
            "{} {}: {files}, {} ({place})",
            kind_words(other, group.place),
            group.pattern,
            mib(group.bytes)
        ),
    };
    Some(FileGrowth {
        kind: kind.kind,
        pattern: group.pattern.clone(),
        files: group.files,
        bytes: group.bytes,
        growth_bytes: kind.growth_bytes as u64,
        place: group.place,
        phrase,
    })
}

/// How a kind is called in a sentence.
pub fn kind_words(kind: FileKind, place: Place) -> &'static str {
    match (kind, place) {
        (FileKind::Temp, Place::Ram) => "tmpfs files",
        (FileKind::Temp, Place::PageCache) => "temp files",
        (FileKind::DeletedOpen, _) => "deleted but open files",
        (FileKind::Wal, _) => "WAL",
        (FileKind::Database, _) => "database",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use run_format::{FileGroup, KindBytes};

    fn group(kind: FileKind, pattern: &str, files: u64, bytes: u64, in_ram: bool) -> FileGroup {
        FileGroup {
            kind,
            pattern: pattern.into(),
            files,
            bytes,
            example: format!("/scratch/tmp/{pattern}"),
            in_ram,
        }
    }

    fn at_peak(first: KindBytes, groups: Vec<FileGroup>) -> FilesAtPeak {
        let mut bytes = KindBytes::default();
        for g in &groups {
            bytes.add(g.kind, g.bytes);
        }
        FilesAtPeak {
            t_ms: 12_300,
            bytes,
            first_bytes: first,
            groups,
            groups_left_out: 0,
        }
    }

    const MB100: u64 = 100 << 20;

    #[test]
    fn leaked_tmpfs_files_are_the_largest_growth_and_ram() {
        let at = at_peak(
            KindBytes {
                wal: 4 << 20,
                database: 4096,
                ..KindBytes::default()
            },
            vec![
                group(FileKind::Database, "store.db", 1, 900 << 20, false),
                group(
                    FileKind::Temp,
                    "sharerig-multipart-*.part",
                    4,
                    4 * MB100,
                    true,
                ),
                group(FileKind::Temp, "other-*", 1, 1 << 20, true),
                group(FileKind::Wal, "store.db-wal", 1, 30 << 20, false),
            ],
        );
        let s = summarize(&at, Some("/scratch/tmp".into()));
        assert_eq!(s.at_s, 12.3);
        assert_eq!(s.peak_bytes, 4 * MB100 + (1 << 20) + (30 << 20));
        let temp = &s.growth[0];
        assert_eq!(
            (temp.kind, temp.growth_bytes),
            (FileKind::Temp, (401 << 20) as i64)
        );
        assert_eq!(temp.place, Place::Ram);
        let g = largest_growth(&s).unwrap();
        assert_eq!(g.kind, FileKind::Temp);
        assert_eq!(g.pattern, "sharerig-multipart-*.part");
        assert_eq!(
            g.phrase,
            "tmpfs files sharerig-multipart-*.part: 4 files, 400.0 MiB (RAM)"
        );
    }

    #[test]
    fn a_grown_wal_is_named_and_the_database_never_is() {
        let at = at_peak(
            KindBytes::default(),
            vec![
                group(FileKind::Database, "store.db", 1, 2000 << 20, false),
                group(FileKind::Wal, "store.db-wal", 1, 210 << 20, false),
                group(FileKind::DeletedOpen, "etilqs_*", 1, 20 << 20, false),
            ],
        );
        let s = summarize(&at, None);
        let g = largest_growth(&s).unwrap();
        assert_eq!(g.kind, FileKind::Wal);
        assert_eq!(g.phrase, "WAL store.db-wal grew to 210.0 MiB (page cache)");
        assert_eq!(g.growth_bytes, 210 << 20);
    }

    #[test]
    fn no_growth_names_nothing() {
        let first = KindBytes {
            wal: 30 << 20,
            ..KindBytes::default()
        };
        let at = at_peak(
            first,
            vec![group(FileKind::Wal, "store.db-wal", 1, 30 << 20, false)],
        );
        assert!(largest_growth(&summarize(&at, None)).is_none());
        // Under a MiB is a WAL's pages, not a cause.
        let at = at_peak(
            KindBytes::default(),
            vec![group(FileKind::Wal, "store.db-wal", 1, 500 << 10, false)],
        );
        assert!(largest_growth(&summarize(&at, None)).is_none());
    }

    #[test]
    fn a_run_without_a_listing_has_no_summary() {
        assert!(FilesSummary::of(None).is_none());
        assert!(FilesSummary::of(Some(&Meta::default())).is_none());
        let meta = Meta {
            files_at_peak: Some(at_peak(KindBytes::default(), Vec::new())),
            ..Meta::default()
        };
        assert!(FilesSummary::of(Some(&meta)).is_some());
    }
}
