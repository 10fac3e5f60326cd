//! The server's files outside the heap, read each sample on this host: the
//! database and its `-wal`/`-shm`, everything under the server's own temp
//! dir, and the files it holds open but has deleted (SQLite's `etilqs_*`
//! temp files are unlinked as soon as they are opened, so only
//! `/proc/<pid>/fd` shows them). One walk of the temp dir and one of the
//! fds per sample, stats only. [`Peak`] keeps the listing at the highest
//! temp + deleted-open + WAL bytes, grouped by path pattern for `meta.json`.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use run_format::FileSizes;
use run_format::file_groups::{self, FileGroup, FileKind, FilesAtPeak, KindBytes, MAX_GROUPS};

/// Entries a temp dir walk looks at, at most: a sample stays cheap even
/// when a bug leaks files by the thousand.
const MAX_TEMP_ENTRIES: usize = 20_000;
/// What `/proc/<pid>/fd/N` links to once the file is unlinked.
const DELETED: &str = " (deleted)";

/// The server's temp dir, as the probe knows it.
#[derive(Debug, Clone)]
pub struct TempDir {
    pub path: PathBuf,
    /// A tmpfs: its files are RAM charged to the cgroup, not page cache.
    pub on_tmpfs: bool,
}

impl TempDir {
    /// `path`, with whether it is on a tmpfs (asked of the kernel).
    pub fn at(path: &Path) -> TempDir {
        TempDir {
            path: path.to_owned(),
            on_tmpfs: is_tmpfs(path),
        }
    }
}

/// Whether `path` is on a tmpfs.
pub fn is_tmpfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}

/// One file seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFile {
    pub kind: FileKind,
    /// What its pattern is made of: relative to the temp dir for temp files,
    /// else the file name.
    pub name: String,
    pub path: PathBuf,
    pub bytes: u64,
    /// On a tmpfs (or a memfd): RAM that cannot be written back and dropped.
    pub in_ram: bool,
}

/// One sample's reading: the sizes for `samples.jsonl`, the files for the peak.
#[derive(Debug, Clone, Default)]
pub struct FileReading {
    pub sizes: FileSizes,
    /// Empty where the files are not listed (`vm` mode).
    pub listing: Vec<ListedFile>,
}

/// Reads the server's files on this host; `None` while the database does not exist.
pub fn read_local(db: &Path, pid: u32, temp: Option<&TempDir>) -> Option<FileReading> {
    let db_bytes = std::fs::metadata(db).ok()?.len();
    let with_suffix = |suffix: &str| {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        PathBuf::from(path)
    };
    let wal = with_suffix("-wal");
    let wal_bytes = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    let shm_bytes = std::fs::metadata(with_suffix("-shm"))
        .map(|m| m.len())
        .unwrap_or(0);
    let mut listing = vec![named(FileKind::Database, db, db_bytes, false)];
    if wal_bytes > 0 {
        listing.push(named(FileKind::Wal, &wal, wal_bytes, false));
    }
    let temp_start = listing.len();
    if let Some(temp) = temp {
        walk_temp(temp, &mut listing);
    }
    let temp_files = &listing[temp_start..];
    let sizes_temp = (temp_files.iter().map(|f| f.bytes).sum(), temp_files.len());
    let deleted_start = listing.len();
    let fds_read = deleted_open(pid, temp, &mut listing);
    let deleted = &listing[deleted_start..];
    let sizes_deleted = (deleted.iter().map(|f| f.bytes).sum(), deleted.len());
    Some(FileReading {
        sizes: FileSizes {
            db_bytes,
            wal_bytes,
            shm_bytes,
            temp_bytes: temp.map(|_| sizes_temp.0),
            temp_files: temp.map(|_| sizes_temp.1 as u64),
            deleted_open_bytes: fds_read.then_some(sizes_deleted.0),
            deleted_open_files: fds_read.then_some(sizes_deleted.1 as u64),
        },
        listing,
    })
}

fn named(kind: FileKind, path: &Path, bytes: u64, in_ram: bool) -> ListedFile {
    ListedFile {
        kind,
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: path.to_owned(),
        bytes,
        in_ram,
    }
}

/// Every regular file under the temp dir (depth first, bounded).
fn walk_temp(temp: &TempDir, out: &mut Vec<ListedFile>) {
    let mut dirs = vec![temp.path.clone()];
    let mut seen = 0;
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue; // removed meanwhile
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_TEMP_ENTRIES {
                return;
            }
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                dirs.push(path);
            } else if meta.is_file() {
                let name = path
                    .strip_prefix(&temp.path)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned();
                out.push(ListedFile {
                    kind: FileKind::Temp,
                    name,
                    path,
                    bytes: meta.len(),
                    in_ram: temp.on_tmpfs,
                });
            }
        }
    }
}

/// The files `pid` holds open whose links end in " (deleted)", each once
/// (by inode). False when its fds cannot be read (gone, not ours).
fn deleted_open(pid: u32, temp: Option<&TempDir>, out: &mut Vec<ListedFile>) -> bool {
    let fd_dir = PathBuf::from(format!("/proc/{pid}/fd"));
    let Ok(entries) = std::fs::read_dir(&fd_dir) else {
        return false;
    };
    let mut inodes = HashSet::new();
    for entry in entries.flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        let Some(was) = target.strip_suffix(DELETED) else {
            continue;
        };
        // The fd's link is followed: the size of the unlinked file itself.
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        if !meta.is_file() || !inodes.insert((meta.dev(), meta.ino())) {
            continue;
        }
        let was = PathBuf::from(was);
        let in_ram = was.starts_with("/memfd:")
            || was.starts_with("/dev/shm")
            || temp.is_some_and(|t| t.on_tmpfs && was.starts_with(&t.path));
        out.push(named(FileKind::DeletedOpen, &was, meta.len(), in_ram));
    }
    true
}

/// The listing at the peak, kept while sampling.
#[derive(Debug, Default)]
pub struct Peak {
    first: Option<KindBytes>,
    peak: Option<(u64, KindBytes, Vec<ListedFile>)>,
}

impl Peak {
    /// Takes a sample's listing; keeps it when its temp + deleted-open + WAL
    /// bytes are the highest yet (the first of equals).
    pub fn observe(&mut self, t_ms: u64, listing: Vec<ListedFile>) {
        if listing.is_empty() {
            return;
        }
        let bytes = kind_bytes(&listing);
        self.first.get_or_insert(bytes);
        let higher = self
            .peak
            .as_ref()
            .is_none_or(|(_, top, _)| bytes.outside_db() > top.outside_db());
        if higher {
            self.peak = Some((t_ms, bytes, listing));
        }
    }

    /// The peak's listing grouped; `None` when no sample listed files.
    pub fn finish(self) -> Option<FilesAtPeak> {
        let (t_ms, bytes, listing) = self.peak?;
        let (groups, groups_left_out) = group(&listing);
        Some(FilesAtPeak {
            t_ms,
            bytes,
            first_bytes: self.first.unwrap_or_default(),
            groups,
            groups_left_out,
        })
    }
}

fn kind_bytes(listing: &[ListedFile]) -> KindBytes {
    let mut bytes = KindBytes::default();
    for f in listing {
        bytes.add(f.kind, f.bytes);
    }
    bytes
}

/// Files grouped by kind, pattern and place (RAM or not), largest first; at
/// most [`MAX_GROUPS`], with how many were left out.
pub fn group(listing: &[ListedFile]) -> (Vec<FileGroup>, u64) {
    let mut groups: BTreeMap<(FileKind, String, bool), FileGroup> = BTreeMap::new();
    for f in listing {
        let pattern = file_groups::pattern(&f.name);
        let g = groups
            .entry((f.kind, pattern.clone(), f.in_ram))
            .or_insert_with(|| FileGroup {
                kind: f.kind,
                pattern,
                files: 0,
                bytes: 0,
                example: f.path.display().to_string(),
                in_ram: f.in_ram,
            });
        g.files += 1;
        g.bytes += f.bytes;
    }
    let mut groups: Vec<FileGroup> = groups.into_values().collect();
    groups.sort_by_key(|g| std::cmp::Reverse(g.bytes));
    let left_out = groups.len().saturating_sub(MAX_GROUPS) as u64;
    groups.truncate(MAX_GROUPS);
    (groups, left_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(kind: FileKind, name: &str, bytes: u64) -> ListedFile {
        ListedFile {
            kind,
            name: name.into(),
            path: PathBuf::from("/scratch/tmp").join(name),
            bytes,
            in_ram: kind == FileKind::Temp,
        }
    }

    #[test]
    fn leaked_files_group_by_pattern_largest_first() {
        let listing = vec![
            file(FileKind::Database, "store.db", 4096),
            file(FileKind::Temp, "sharerig-multipart-AbC123xyz.part", 100),
            file(FileKind::Temp, "sharerig-multipart-QrsTuvWxy.part", 300),
            file(FileKind::DeletedOpen, "etilqs_3f9a0c1d", 50),
            file(FileKind::Wal, "store.db-wal", 200),
        ];
        let (groups, left_out) = group(&listing);
        assert_eq!(left_out, 0);
        let rows: Vec<_> = groups
            .iter()
            .map(|g| (g.kind, g.pattern.as_str(), g.files, g.bytes))
            .collect();
        assert_eq!(
            rows,
            [
                (FileKind::Database, "store.db", 1, 4096),
                (FileKind::Temp, "sharerig-multipart-*.part", 2, 400),
                (FileKind::Wal, "store.db-wal", 1, 200),
                (FileKind::DeletedOpen, "etilqs_*", 1, 50),
            ]
        );
        assert!(groups[1].in_ram && !groups[2].in_ram);
        assert!(groups[1].example.ends_with(".part"), "{:?}", groups[1]);
    }

    #[test]
    fn the_peak_is_the_listing_with_the_most_outside_the_database() {
        let mut peak = Peak::default();
        peak.observe(0, vec![file(FileKind::Wal, "store.db-wal", 10)]);
        peak.observe(100, Vec::new()); // a sample without a listing
        peak.observe(
            200,
            vec![
                file(FileKind::Temp, "a-1", 500),
                file(FileKind::Wal, "store.db-wal", 10),
            ],
        );
        // A bigger database alone is no peak: it is the product's data.
        peak.observe(300, vec![file(FileKind::Database, "store.db", 1 << 30)]);
        peak.observe(400, vec![file(FileKind::Temp, "a-2", 400)]);
        let at = peak.finish().unwrap();
        assert_eq!(at.t_ms, 200);
        assert_eq!((at.bytes.temp, at.bytes.wal), (500, 10));
        assert_eq!(at.first_bytes.wal, 10);
        assert_eq!(at.groups.len(), 2);
        assert!(Peak::default().finish().is_none());
    }

    #[test]
    fn more_groups_than_kept_are_counted() {
        let listing: Vec<_> = (0..MAX_GROUPS + 3)
            .map(|i| {
                file(
                    FileKind::Temp,
                    &format!("kind{}", char::from(b'a' + i as u8)),
                    i as u64,
                )
            })
            .collect();
        let (groups, left_out) = group(&listing);
        assert_eq!((groups.len(), left_out), (MAX_GROUPS, 3));
        assert_eq!(groups[0].bytes, (MAX_GROUPS + 2) as u64);
    }

    #[test]
    fn a_local_reading_lists_temp_files_and_deleted_open_ones() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("store.db");
        std::fs::write(&db, [0; 4096]).unwrap();
        std::fs::write(dir.path().join("store.db-wal"), [0; 100]).unwrap();
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(tmp.join("sub")).unwrap();
        std::fs::write(tmp.join("sharerig-multipart-Ab12.part"), [0; 1000]).unwrap();
        std::fs::write(tmp.join("sub/x-77"), [0; 10]).unwrap();
        // Opened and unlinked, as SQLite does with its temp files.
        let gone = tmp.join("etilqs_0badc0de");
        let mut held = std::fs::File::create(&gone).unwrap();
        std::io::Write::write_all(&mut held, &[0; 2048]).unwrap();
        std::fs::remove_file(&gone).unwrap();

        let temp = TempDir::at(&tmp);
        let r = read_local(&db, std::process::id(), Some(&temp)).unwrap();
        assert_eq!((r.sizes.db_bytes, r.sizes.wal_bytes), (4096, 100));
        assert_eq!(
            (r.sizes.temp_bytes, r.sizes.temp_files),
            (Some(1010), Some(2))
        );
        assert!(r.sizes.deleted_open_bytes.unwrap() >= 2048, "{:?}", r.sizes);
        let names: Vec<_> = r
            .listing
            .iter()
            .map(|f| (f.kind, f.name.as_str()))
            .collect();
        assert!(names.contains(&(FileKind::Temp, "sub/x-77")), "{names:?}");
        assert!(
            names.contains(&(FileKind::DeletedOpen, "etilqs_0badc0de")),
            "{names:?}"
        );
        drop(held);
        assert!(read_local(&dir.path().join("none.db"), 1, None).is_none());
    }
}
