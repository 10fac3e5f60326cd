//! What grew between two heap profiles: each site's exclusive bytes (the
//! innermost server or SQLite frame, as in [`super::sites`]) in both, and the
//! sites whose bytes grew most. Used within a run (the peak profile against
//! the first) and between runs (`rig report A B`, the gate against its
//! baseline's profile).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::pprof::Stack;
use super::{DUMP, OTHER, SiteKind, collapse};

/// Sites listed as grown.
pub const TOP_GROWN: usize = 8;
/// Growth smaller than this is sampling noise (one sample per 512 KiB).
pub const MIN_GROWTH_BYTES: u64 = 1 << 20;

/// A site's exclusive bytes in one profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteBytes {
    pub name: String,
    pub kind: SiteKind,
    pub bytes: u64,
}

/// A site that grew from one profile to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grown {
    pub name: String,
    pub kind: SiteKind,
    pub from_bytes: u64,
    pub to_bytes: u64,
}

impl Grown {
    pub fn delta_bytes(&self) -> i64 {
        self.to_bytes as i64 - self.from_bytes as i64
    }
}

/// Every site's exclusive bytes, largest first; the profile's own dump left
/// out (it is the profiler's, not the server's).
pub fn by_site(stacks: &[Stack]) -> Vec<SiteBytes> {
    let mut sites: HashMap<String, SiteBytes> = HashMap::new();
    for stack in stacks {
        let kept = collapse(&stack.frames);
        let (name, kind) = kept
            .into_iter()
            .next()
            .unwrap_or_else(|| (OTHER.to_owned(), SiteKind::Other));
        if name == DUMP {
            continue;
        }
        sites
            .entry(name.clone())
            .or_insert(SiteBytes {
                name,
                kind,
                bytes: 0,
            })
            .bytes += stack.bytes;
    }
    let mut sites: Vec<SiteBytes> = sites.into_values().collect();
    sites.sort_by(|a, b| (b.bytes, &a.name).cmp(&(a.bytes, &b.name)));
    sites
}

/// The heap's bytes without the profile's own dump: what a peak is chosen by.
pub fn heap_bytes(stacks: &[Stack]) -> u64 {
    by_site(stacks).iter().map(|s| s.bytes).sum()
}

/// The `n` sites that grew most from `from` to `to`, by at least
/// [`MIN_GROWTH_BYTES`], largest growth first.
pub fn grown(from: &[SiteBytes], to: &[SiteBytes], n: usize) -> Vec<Grown> {
    let before: HashMap<&str, u64> = from.iter().map(|s| (s.name.as_str(), s.bytes)).collect();
    let mut grown: Vec<Grown> = to
        .iter()
        .map(|s| Grown {
            name: s.name.clone(),
            kind: s.kind,
            from_bytes: before.get(s.name.as_str()).copied().unwrap_or(0),
            to_bytes: s.bytes,
        })
        .filter(|g| g.delta_bytes() >= MIN_GROWTH_BYTES as i64)
        .collect();
    grown.sort_by(|a, b| (b.delta_bytes(), &a.name).cmp(&(a.delta_bytes(), &b.name)));
    grown.truncate(n);
    grown
}

#[cfg(test)]
mod tests {
    use super::*;
    use run_format::pprof::{decode, profile_of};

    const MIB: i64 = 1 << 20;

    fn sites(stacks: &[(&[&str], i64)]) -> Vec<SiteBytes> {
        by_site(&decode(&profile_of(stacks)).unwrap_or_default())
    }

    #[test]
    fn the_site_that_grew_most_comes_first_and_noise_is_dropped() {
        let before = sites(&[
            (&["malloc", "share_server::upload::send"], 4 * MIB),
            (&["malloc", "share_server::db::open"], 8 * MIB),
        ]);
        let after = sites(&[
            (&["malloc", "share_server::upload::send"], 52 * MIB),
            (&["malloc", "share_server::db::open"], 8 * MIB + MIB / 2),
            (&["malloc", "share_server::download::read"], 3 * MIB),
        ]);
        let g = grown(&before, &after, TOP_GROWN);
        let names: Vec<&str> = g.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(
            names,
            ["share_server::upload::send", "share_server::download::read"]
        );
        assert_eq!(g[0].delta_bytes(), 48 * MIB);
        assert_eq!((g[1].from_bytes, g[1].to_bytes), (0, 3 << 20));
        assert!(grown(&after, &before, TOP_GROWN).is_empty());
    }

    #[test]
    fn the_dump_is_not_the_heap() {
        let stacks = decode(&profile_of(&[
            (&["malloc", "share_server::upload::send"], 2 * MIB),
            (
                &[
                    "malloc",
                    "addr2line::Context::new",
                    "share_server::allocator::heap_profile",
                ],
                40 * MIB,
            ),
            (&["malloc", "std::thread::spawn"], MIB),
        ]))
        .unwrap_or_default();
        assert_eq!(heap_bytes(&stacks), 3 << 20);
        let names: Vec<String> = by_site(&stacks).into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["share_server::upload::send", OTHER]);
    }
}
