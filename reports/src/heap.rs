//! Where the heap was at its peak: the run's heap profile taken at the
//! highest allocator resident bytes (`meta.json`'s `heap_profiles`), its
//! stacks collapsed to the server's own frames (`share_server::`) and
//! SQLite's, and the top allocation sites, exclusive (the innermost kept
//! frame holds the bytes) and inclusive (anywhere on the stack).
//!
//! A stack whose leaf is in a library (hyper, multer, std) is charged to the
//! innermost server or SQLite frame above it; SQLite's frames are the C
//! frames between rusqlite's call and the allocator, less SQLite's own
//! `malloc` wrappers. Sizes are jemalloc's sampled estimates: one sample per
//! 512 KiB allocated on average, so sites under about a MiB are noise.

pub mod flame;
pub mod growth;
pub mod pprof;

use std::collections::HashMap;
use std::path::Path;

use run_format::HeapProfiles;
use serde::{Deserialize, Serialize};

use growth::{Grown, SiteBytes};
use pprof::{Frame, Stack};

/// Sites listed.
pub const TOP_SITES: usize = 12;
/// Stacks with no server or SQLite frame (runtime, threads, libraries alone).
pub const OTHER: &str = "(no share_server or SQLite frame)";
/// The dump's own allocations (symbolizing), live while the profile is taken.
pub const DUMP: &str = "(the heap profile's own dump: jemalloc_pprof)";
/// The server's function that dumps a profile.
const DUMP_FRAME: &str = "share_server::allocator::heap_profile";

/// The peak profile, read: `summary.json`'s `heap`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeapSummary {
    /// The profile, relative to the run directory.
    pub profile: String,
    pub at_s: f64,
    /// Allocator resident bytes when it was taken.
    pub allocator_resident_bytes: Option<u64>,
    /// The profile's sampled live bytes, the shares' denominator.
    pub sampled_bytes: u64,
    /// The same less the profile's own dump: what the peak is chosen by.
    #[serde(default)]
    pub heap_bytes: u64,
    /// Profiles taken in the run.
    pub profiles: usize,
    pub sites: Vec<Site>,
    /// The run's first profile, the growth's start (none with one profile).
    #[serde(default)]
    pub first_profile: Option<String>,
    /// Sites that grew most from the first profile to the peak.
    #[serde(default)]
    pub grew: Vec<Grown>,
    /// Why the profile could not be read (then no sites).
    pub error: Option<String>,
    /// Its flame graph's file in the run directory, once written.
    #[serde(default)]
    pub flame_graph: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SiteKind {
    Server,
    Sqlite,
    Other,
}

/// An allocation site at the peak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Site {
    pub name: String,
    pub kind: SiteKind,
    pub exclusive_bytes: u64,
    pub exclusive_share: f64,
    pub inclusive_bytes: u64,
    pub inclusive_share: f64,
}

/// The run's heap at its peak; `None` when the run took no profiles.
///
/// The peak is the profile with the most live bytes less its own dump (the
/// symbolizing a dump does is the profiler's, and would otherwise make the
/// profile after each dump look like the peak); ties go to the earliest.
pub fn at_peak(run_dir: &Path, heap: Option<&HeapProfiles>) -> Option<HeapSummary> {
    let heap = heap?;
    let mut readable: Vec<(&run_format::HeapProfile, Vec<Stack>)> = Vec::new();
    let mut first_error = None;
    let mut by_time: Vec<&run_format::HeapProfile> = heap.profiles.iter().collect();
    by_time.sort_by_key(|p| p.t_ms);
    for p in by_time {
        match pprof::read(&run_dir.join(&p.file)) {
            Ok(stacks) => readable.push((p, stacks)),
            Err(e) => {
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let peak = readable
        .iter()
        .enumerate()
        .rev()
        .max_by_key(|(_, (_, stacks))| growth::heap_bytes(stacks))
        .map(|(i, _)| i);
    let Some(peak) = peak else {
        // None readable: name the one meta.json calls the peak, and why.
        let p = heap.at_peak()?;
        return Some(HeapSummary {
            profile: p.file.clone(),
            at_s: p.t_ms as f64 / 1000.0,
            allocator_resident_bytes: p.allocator_resident_bytes,
            sampled_bytes: 0,
            heap_bytes: 0,
            profiles: heap.profiles.len(),
            sites: Vec::new(),
            first_profile: None,
            grew: Vec::new(),
            error: first_error,
            flame_graph: None,
        });
    };
    let (p, stacks) = &readable[peak];
    let peak_sites = growth::by_site(stacks);
    let (first_profile, grew) = match readable.first() {
        Some((first, first_stacks)) if first.file != p.file => (
            Some(first.file.clone()),
            growth::grown(
                &growth::by_site(first_stacks),
                &peak_sites,
                growth::TOP_GROWN,
            ),
        ),
        _ => (None, Vec::new()),
    };
    Some(HeapSummary {
        profile: p.file.clone(),
        at_s: p.t_ms as f64 / 1000.0,
        allocator_resident_bytes: p.allocator_resident_bytes,
        sampled_bytes: stacks.iter().map(|s| s.bytes).sum(),
        heap_bytes: peak_sites.iter().map(|s| s.bytes).sum(),
        profiles: heap.profiles.len(),
        sites: sites(stacks, TOP_SITES),
        first_profile,
        grew,
        error: None,
        flame_graph: None,
    })
}

/// Every site's exclusive bytes in the run's peak profile (`heap.profile`),
/// for a comparison with another run's.
pub fn peak_sites(run_dir: &Path, heap: &HeapSummary) -> Result<Vec<SiteBytes>, String> {
    if let Some(e) = &heap.error {
        return Err(e.clone());
    }
    pprof::read(&run_dir.join(&heap.profile))
        .map(|stacks| growth::by_site(&stacks))
        .map_err(|e| e.to_string())
}

/// Draws the peak profile's flame graph into `run_dir` and records it in
/// `heap` (or why not, in `error`).
pub fn write_flame_graph(run_dir: &Path, heap: &mut HeapSummary) {
    if heap.error.is_some() {
        return;
    }
    let title = format!("Heap at the peak: {} at {:.1} s", heap.profile, heap.at_s);
    let drawn = pprof::read(&run_dir.join(&heap.profile))
        .map_err(|e| e.to_string())
        .and_then(|stacks| flame::write(&stacks, &title, run_dir));
    match drawn {
        Ok(()) => heap.flame_graph = Some(flame::FLAME_SVG.into()),
        Err(e) => heap.error = Some(e),
    }
}

/// The top `n` sites by exclusive bytes (then inclusive).
pub fn sites(stacks: &[Stack], n: usize) -> Vec<Site> {
    let total: u64 = stacks.iter().map(|s| s.bytes).sum();
    let mut by_name: HashMap<String, Site> = HashMap::new();
    for stack in stacks {
        let kept = collapse(&stack.frames);
        let Some((leaf, leaf_kind)) = kept.first() else {
            let other = entry(&mut by_name, OTHER, SiteKind::Other);
            other.exclusive_bytes += stack.bytes;
            other.inclusive_bytes += stack.bytes;
            continue;
        };
        entry(&mut by_name, leaf, *leaf_kind).exclusive_bytes += stack.bytes;
        let mut seen: Vec<&str> = Vec::new();
        for (name, kind) in &kept {
            if !seen.contains(&name.as_str()) {
                seen.push(name);
                entry(&mut by_name, name, *kind).inclusive_bytes += stack.bytes;
            }
        }
    }
    let share = |b: u64| {
        if total == 0 {
            0.0
        } else {
            b as f64 / total as f64
        }
    };
    let mut sites: Vec<Site> = by_name
        .into_values()
        .map(|mut s| {
            s.exclusive_share = share(s.exclusive_bytes);
            s.inclusive_share = share(s.inclusive_bytes);
            s
        })
        .collect();
    sites.sort_by(|a, b| {
        (b.exclusive_bytes, b.inclusive_bytes, &a.name).cmp(&(
            a.exclusive_bytes,
            a.inclusive_bytes,
            &b.name,
        ))
    });
    sites.truncate(n);
    sites
}

fn entry<'a>(sites: &'a mut HashMap<String, Site>, name: &str, kind: SiteKind) -> &'a mut Site {
    sites.entry(name.to_owned()).or_insert_with(|| Site {
        name: name.to_owned(),
        kind,
        exclusive_bytes: 0,
        exclusive_share: 0.0,
        inclusive_bytes: 0,
        inclusive_share: 0.0,
    })
}

/// The stack's server and SQLite frames, leaf first, names cleaned, repeats
/// of one name in a row merged.
pub fn collapse(frames: &[Frame]) -> Vec<(String, SiteKind)> {
    if frames.iter().any(|f| f.name.starts_with(DUMP_FRAME)) {
        return vec![(DUMP.to_owned(), SiteKind::Other)];
    }
    let sqlite = sqlite_frames(frames);
    let mut kept: Vec<(String, SiteKind)> = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        let kind = if is_ours(frame) {
            SiteKind::Server
        } else if sqlite.contains(&i) {
            SiteKind::Sqlite
        } else {
            continue;
        };
        let name = clean(&frame.name);
        if kept.last().is_none_or(|(last, _)| *last != name) {
            kept.push((name, kind));
        }
    }
    kept
}

/// Ours by name, or by file when names lack module paths; not the allocator
/// shims (`__rustc::__rust_alloc`) the binary's `#[global_allocator]` places in main.rs.
fn is_ours(frame: &Frame) -> bool {
    let shim = frame.name.starts_with("__rust") || frame.name.contains("__rustc::");
    !shim && (frame.name.contains("share_server::") || frame.file.contains("server/src/"))
}

/// Indices of SQLite's frames: the C frames leaf-ward of the first rusqlite
/// frame, up to the allocator, less SQLite's `malloc` wrappers.
fn sqlite_frames(frames: &[Frame]) -> Vec<usize> {
    let Some(boundary) = frames
        .iter()
        .position(|f| f.name.contains("rusqlite::") || f.name.contains("libsqlite3_sys::"))
    else {
        // No rusqlite frame (a thread of SQLite's own?): its API names only.
        return (0..frames.len())
            .filter(|i| {
                frames[*i].name.starts_with("sqlite3") && !is_sqlite_malloc(&frames[*i].name)
            })
            .collect();
    };
    (0..boundary)
        .rev()
        .take_while(|i| !is_allocator(&frames[*i].name))
        .filter(|i| is_c_name(&frames[*i].name) && !is_sqlite_malloc(&frames[*i].name))
        .collect()
}

/// A plain C symbol (not Rust's paths, not an unsymbolized address).
fn is_c_name(name: &str) -> bool {
    !name.is_empty() && !name.contains("::") && !name.starts_with('<') && !name.starts_with("0x")
}

/// The allocator's entry points and jemalloc's own frames.
fn is_allocator(name: &str) -> bool {
    matches!(
        name,
        "malloc" | "calloc" | "realloc" | "free" | "posix_memalign" | "aligned_alloc" | "memalign"
    ) || ["_rjem_", "je_", "prof_", "imalloc", "jemalloc"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// SQLite's wrappers around `malloc`: where every SQLite allocation passes.
fn is_sqlite_malloc(name: &str) -> bool {
    [
        "sqlite3Malloc",
        "sqlite3MemMalloc",
        "sqlite3MemRealloc",
        "sqlite3Realloc",
        "sqlite3DbMalloc",
        "sqlite3DbRealloc",
        "sqlite3_malloc",
        "sqlite3_realloc",
        "dbMallocRaw",
        "dbReallocFinish",
        "mallocWithAlarm",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// Drops the closure and async suffixes and the hash of a Rust name:
/// `share_server::upload::run::{{closure}}` → `share_server::upload::run`.
pub fn clean(name: &str) -> String {
    let mut name = name.trim();
    loop {
        let before = name;
        if let Some((head, tail)) = name.rsplit_once("::") {
            let hash = tail.len() == 17
                && tail.starts_with('h')
                && tail[1..].chars().all(|c| c.is_ascii_hexdigit());
            if hash || tail.starts_with("{{closure}}") || tail.starts_with('{') {
                name = head;
            }
        }
        if name == before {
            return name.to_owned();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use run_format::pprof::profile_of;

    fn frames(names: &[&str]) -> Vec<Frame> {
        names
            .iter()
            .map(|n| Frame {
                name: (*n).to_owned(),
                file: String::new(),
            })
            .collect()
    }

    #[test]
    fn names_lose_closures_and_hashes() {
        assert_eq!(
            clean("share_server::handlers::entries::receive_file::{{closure}}::{{closure}}"),
            "share_server::handlers::entries::receive_file"
        );
        assert_eq!(
            clean("share_server::upload::run::{async_fn#0}"),
            "share_server::upload::run"
        );
        assert_eq!(
            clean("share_server::storage::configure::h0123456789abcdef"),
            "share_server::storage::configure"
        );
        assert_eq!(clean("btreeBeginTrans"), "btreeBeginTrans");
    }

    #[test]
    fn a_library_leaf_is_charged_to_our_frame_and_sqlite_keeps_its_own() {
        let upload = frames(&[
            "prof_backtrace_impl",
            "malloc",
            "alloc::raw_vec::finish_grow",
            "bytes::bytes_mut::BytesMut::reserve_inner",
            "share_server::upload::UploadSink::send_buffered::{{closure}}",
            "share_server::handlers::entries::receive_file::{{closure}}",
            "tokio::runtime::task::core::Core<T,S>::poll",
        ]);
        let kept: Vec<String> = collapse(&upload).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            kept,
            [
                "share_server::upload::UploadSink::send_buffered",
                "share_server::handlers::entries::receive_file"
            ]
        );
        let vacuum = frames(&[
            "_rjem_je_prof_backtrace",
            "malloc",
            "sqlite3MemMalloc",
            "sqlite3Malloc",
            "pcache1Alloc",
            "sqlite3RunVacuum",
            "sqlite3VdbeExec",
            "sqlite3_step",
            "rusqlite::statement::Statement::execute",
            "share_server::storage::vacuum",
        ]);
        let kept = collapse(&vacuum);
        let names: Vec<&str> = kept.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "pcache1Alloc",
                "sqlite3RunVacuum",
                "sqlite3VdbeExec",
                "sqlite3_step",
                "share_server::storage::vacuum"
            ]
        );
        assert_eq!(kept[0].1, SiteKind::Sqlite);
        assert_eq!(kept[4].1, SiteKind::Server);
    }

    #[test]
    fn allocator_shims_and_the_dump_itself_are_not_sites() {
        let shim = vec![
            Frame {
                name: "__rustc::__rust_realloc".into(),
                file: "/w/server/src/main.rs".into(),
            },
            Frame {
                name: "share_server::upload::send".into(),
                file: "/w/server/src/upload.rs".into(),
            },
        ];
        let kept: Vec<String> = collapse(&shim).into_iter().map(|(n, _)| n).collect();
        assert_eq!(kept, ["share_server::upload::send"]);
        let dump = frames(&[
            "malloc",
            "addr2line::Context::new",
            "share_server::allocator::imp::heap_profile::{{closure}}",
            "share_server::allocator::heap_profile::{{closure}}",
            "share_server::handlers::debug::pprof_heap",
        ]);
        assert_eq!(collapse(&dump), [(DUMP.to_owned(), SiteKind::Other)]);
    }

    #[test]
    fn sites_have_exclusive_and_inclusive_bytes_and_shares() {
        let gz = profile_of(&[
            (
                &[
                    "malloc",
                    "share_server::upload::send",
                    "share_server::handlers::receive",
                ],
                6 << 20,
            ),
            (&["malloc", "share_server::handlers::receive"], 2 << 20),
            (&["malloc", "std::thread::spawn"], 2 << 20),
        ]);
        let stacks = pprof::decode(&gz).unwrap_or_default();
        let sites = sites(&stacks, 10);
        let find = |n: &str| sites.iter().find(|s| s.name == n).cloned();
        let send = find("share_server::upload::send").unwrap_or_else(|| panic!("{sites:?}"));
        assert_eq!(
            (send.exclusive_bytes, send.inclusive_bytes),
            (6 << 20, 6 << 20)
        );
        assert!((send.exclusive_share - 0.6).abs() < 1e-9);
        let receive =
            find("share_server::handlers::receive").unwrap_or_else(|| panic!("{sites:?}"));
        assert_eq!(
            (receive.exclusive_bytes, receive.inclusive_bytes),
            (2 << 20, 8 << 20)
        );
        assert!((receive.inclusive_share - 0.8).abs() < 1e-9);
        assert_eq!(find(OTHER).map(|s| s.exclusive_bytes), Some(2 << 20));
        assert_eq!(sites[0].name, "share_server::upload::send");
        assert_eq!(super::sites(&stacks, 1).len(), 1);
    }
}
