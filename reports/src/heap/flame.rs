//! The peak profile as a flame graph (SVG, inferno): every stack whole, root
//! first, widths in sampled bytes. Written beside `report.html`, which shows
//! it as an image (inferno's search and zoom work when the file is opened).

use std::path::Path;

use inferno::flamegraph::{self, Options};

use super::clean;
use super::pprof::Stack;

/// The file in the run directory.
pub const FLAME_SVG: &str = "heap-peak.svg";

/// Stacks in inferno's collapsed format: `root;…;leaf bytes`.
pub fn collapsed(stacks: &[Stack]) -> Vec<String> {
    stacks
        .iter()
        .filter(|s| s.bytes > 0)
        .map(|s| {
            let frames: Vec<String> = s
                .frames
                .iter()
                .rev()
                .map(|f| clean(&f.name).replace(';', ":"))
                .collect();
            format!("{} {}", frames.join(";"), s.bytes)
        })
        .collect()
}

/// Writes the flame graph of `stacks` to `dir/heap-peak.svg`.
pub fn write(stacks: &[Stack], title: &str, dir: &Path) -> Result<(), String> {
    let lines = collapsed(stacks);
    let mut options = Options::default();
    options.title = title.to_owned();
    options.count_name = "bytes".into();
    let mut svg = Vec::new();
    flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut svg)
        .map_err(|e| format!("drawing the flame graph: {e}"))?;
    let path = dir.join(FLAME_SVG);
    std::fs::write(&path, svg).map_err(|e| format!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::super::pprof::Frame;
    use super::*;

    #[test]
    fn stacks_are_collapsed_root_first_and_drawn() {
        let frame = |n: &str| Frame {
            name: n.into(),
            file: String::new(),
        };
        let stacks = [Stack {
            frames: vec![
                frame("malloc"),
                frame("share_server::upload::send::{{closure}}"),
                frame("main"),
            ],
            bytes: 4096,
        }];
        assert_eq!(
            collapsed(&stacks),
            ["main;share_server::upload::send;malloc 4096"]
        );
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        write(&stacks, "peak", dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let svg = std::fs::read_to_string(dir.path().join(FLAME_SVG)).unwrap_or_default();
        assert!(svg.contains("<svg") && svg.contains("share_server::upload::send"));
    }
}
