//! Where the memory went, in one line: of what grew during the run (the heap
//! site that grew most from the first heap profile to the peak, and the files
//! outside the heap), the largest, named. `summary.json`'s `cause`, the line
//! under the verdict in `summary.md` and `report.html`.

use serde::{Deserialize, Serialize};

use crate::files::{self, FilesSummary};
use crate::heap::HeapSummary;

const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CauseKind {
    /// A heap allocation site (from the heap profiles).
    Heap,
    /// Files: tmpfs, temp files, the WAL (from the samples' file listing).
    Files,
}

/// The growth named.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cause {
    pub kind: CauseKind,
    /// The site (`share_server::...`, a SQLite function) or the files' pattern.
    pub name: String,
    pub grown_bytes: u64,
    /// For people: "grew most: `…` +47.9 MiB (heap, first profile → peak)".
    pub text: String,
}

/// The heap's candidate: the site that grew most within the run.
pub fn of_heap(heap: &HeapSummary) -> Option<Cause> {
    let top = heap.grew.first()?;
    let grown = u64::try_from(top.delta_bytes()).ok()?;
    Some(Cause {
        kind: CauseKind::Heap,
        name: top.name.clone(),
        grown_bytes: grown,
        text: format!(
            "grew most: `{}` {:+.1} MiB (heap site, from the first profile to the peak at {:.1} s)",
            top.name,
            grown as f64 / MIB,
            heap.at_s
        ),
    })
}

/// The files' candidate: the kind of file outside the heap that grew most
/// (temp files, deleted-but-open files, the WAL; never the database).
pub fn of_files(outside: &FilesSummary) -> Option<Cause> {
    let g = files::largest_growth(outside)?;
    Some(Cause {
        kind: CauseKind::Files,
        name: g.pattern.clone(),
        grown_bytes: g.growth_bytes,
        text: format!(
            "grew most: {} (+{:.1} MiB outside the heap since the first sample)",
            g.phrase,
            g.growth_bytes as f64 / MIB
        ),
    })
}

/// The run's cause: the larger of its heap's and its files' growth.
pub fn of_run(heap: Option<&HeapSummary>, outside: Option<&FilesSummary>) -> Option<Cause> {
    largest([heap.and_then(of_heap), outside.and_then(of_files)])
}

/// The largest of the candidates.
pub fn largest(candidates: impl IntoIterator<Item = Option<Cause>>) -> Option<Cause> {
    candidates
        .into_iter()
        .flatten()
        .max_by_key(|c| c.grown_bytes)
}
