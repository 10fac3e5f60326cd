//! No import circle between the files of `profiling/src`.
//!
//! One node per file of the library (`src/bin/` holds separate crates and is
//! left out). A file depends on the files its `crate::`, `super::` and
//! `self::` paths name, in `use` lines and in code (comments, strings and
//! `mod tests { use super::*; }` inside the file itself are not edges). A path
//! names the deepest module file it reaches: `crate::machine::vm::VmInfo`
//! names `machine/vm.rs`.
//!
//! The module tree counts like this:
//! - a parent's paths into its own subtree are no edge: it declares its
//!   children (`pub mod x;`), re-exports and dispatches to them; they are its
//!   parts;
//! - a path to a module from outside that module's subtree depends on the
//!   whole subtree (`crate::machine::Machine` gets `machine::open`, and
//!   through it `machine/vm.rs` and `machine/vm/boot.rs`);
//! - inside a subtree, file to file (a child on its parent, siblings on each
//!   other).
//!
//! A cycle fails the test, named file by file with the path behind each step.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::Path;

/// A module: its path from the crate root (`[]` is `lib.rs`).
type Module = Vec<String>;

#[test]
fn no_import_cycle_between_the_files_of_src() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    read_tree(&src, &src, &mut files);
    assert!(
        files.contains_key("lib.rs") && files.len() > 10,
        "{:?}",
        files.keys()
    );
    let graph = Graph::of(&files);
    if let Some(cycle) = graph.cycle() {
        panic!("import cycle in profiling/src:\n{cycle}");
    }
}

#[test]
fn the_rule_on_small_trees() {
    let files = |list: &[(&str, &str)]| -> BTreeMap<String, String> {
        list.iter()
            .map(|(p, s)| ((*p).to_owned(), (*s).to_owned()))
            .collect()
    };
    let cycle = |list: &[(&str, &str)]| Graph::of(&files(list)).cycle();
    let lib = ("lib.rs", "pub mod a; pub mod b;");
    // A parent using its child and the child its parent: no cycle.
    assert_eq!(
        cycle(&[
            lib,
            ("a.rs", "pub mod c; pub use c::X; fn f() { c::make(); }"),
            ("a/c.rs", "use super::Trait; use crate::a::Y;"),
        ]),
        None
    );
    // Across the tree, both ways: a cycle.
    let found = cycle(&[
        lib,
        ("a.rs", "use crate::b::Z;"),
        ("b.rs", "use crate::a::W;"),
    ]);
    assert!(
        found.as_deref().unwrap().contains("a.rs → b.rs"),
        "{found:?}"
    );
    // Through a subtree: a names b, b's child names a.
    let found = cycle(&[
        lib,
        ("a.rs", "fn f() { crate::b::open(); }"),
        ("b.rs", "mod c;"),
        ("b/c.rs", "use crate::a::{self, W as V};"),
    ]);
    assert!(found.as_deref().unwrap().contains("b/c.rs"), "{found:?}");
    // Comments, strings, a file's own tests module and `pub(in crate::x)` are no edges.
    assert_eq!(
        cycle(&[
            lib,
            (
                "a.rs",
                "// crate::b::X\nconst S: &str = \"crate::b\";\nuse crate::b::Y;"
            ),
            (
                "b.rs",
                "/* crate::a */ pub(in crate::a) fn g() {}\n#[cfg(test)]\nmod tests { use super::*; }"
            ),
        ]),
        None
    );
    // `super::super` and groups resolve.
    let found = cycle(&[
        lib,
        ("a.rs", "pub mod c;"),
        ("a/c.rs", "mod d;"),
        ("a/c/d.rs", "use super::super::super::{b::{K, L}};"),
        ("b.rs", "use crate::a::c::d::M;"),
    ]);
    assert!(found.is_some(), "{found:?}");
}

/// Every `.rs` file under `dir`, by its path relative to `root`, except `bin/`.
fn read_tree(root: &Path, dir: &Path, files: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if path.is_dir() {
            if rel != "bin" {
                read_tree(root, &path, files);
            }
        } else if rel.ends_with(".rs") {
            files.insert(rel, std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// `machine/vm.rs` (or `machine/vm/mod.rs`) is `[machine, vm]`; `lib.rs` is `[]`.
fn module_of(file: &str) -> Module {
    let stem = file.strip_suffix(".rs").unwrap_or(file);
    let stem = stem.strip_suffix("/mod").unwrap_or(stem);
    if stem == "lib" {
        return Vec::new();
    }
    stem.split('/').map(str::to_owned).collect()
}

/// `a` lies strictly under `b`.
fn under(a: &Module, b: &Module) -> bool {
    a.len() > b.len() && a.starts_with(b)
}

struct Graph {
    /// file → (file it depends on → the path behind it).
    edges: BTreeMap<String, BTreeMap<String, String>>,
}

impl Graph {
    fn of(files: &BTreeMap<String, String>) -> Graph {
        let modules: BTreeMap<Module, String> =
            files.keys().map(|f| (module_of(f), f.clone())).collect();
        let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (file, source) in files {
            let from = module_of(file);
            let out = edges.entry(file.clone()).or_default();
            for (path, text) in paths(&from, source) {
                // The deepest module file the path reaches.
                let Some(to) = (0..=path.len())
                    .rev()
                    .map(|n| path[..n].to_vec())
                    .find(|m| modules.contains_key(m))
                else {
                    continue;
                };
                if to == from || under(&to, &from) {
                    continue;
                }
                let mut reached = vec![to.clone()];
                if !under(&from, &to) {
                    reached.extend(modules.keys().filter(|m| under(m, &to)).cloned());
                }
                for m in reached.into_iter().filter(|m| *m != from) {
                    out.entry(modules[&m].clone())
                        .or_insert_with(|| text.clone());
                }
            }
        }
        Graph { edges }
    }

    /// One cycle, each step with the path that makes it, if there is one.
    fn cycle(&self) -> Option<String> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Open,
            Done,
        }
        fn visit<'a>(
            g: &'a Graph,
            file: &'a str,
            marks: &mut BTreeMap<&'a str, Mark>,
            stack: &mut Vec<&'a str>,
        ) -> Option<Vec<&'a str>> {
            match marks.get(file) {
                Some(Mark::Done) => return None,
                Some(Mark::Open) => {
                    let start = stack.iter().position(|f| *f == file)?;
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(file);
                    return Some(cycle);
                }
                None => {}
            }
            marks.insert(file, Mark::Open);
            stack.push(file);
            for next in g.edges.get(file).into_iter().flat_map(|e| e.keys()) {
                if let Some(cycle) = visit(g, next, marks, stack) {
                    return Some(cycle);
                }
            }
            stack.pop();
            marks.insert(file, Mark::Done);
            None
        }
        let mut marks = BTreeMap::new();
        for file in self.edges.keys() {
            if let Some(cycle) = visit(self, file, &mut marks, &mut Vec::new()) {
                let steps: Vec<String> = cycle
                    .windows(2)
                    .map(|w| format!("  {} → {} ({})", w[0], w[1], self.edges[w[0]][w[1]]))
                    .collect();
                return Some(steps.join("\n"));
            }
        }
        None
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    Ident(String),
    /// `::`
    Path,
    Punct(char),
}

/// Identifiers, `::` and other punctuation, without comments, strings and
/// char literals (a lifetime is an identifier after its quote).
fn tokens(source: &str) -> Vec<Token> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let hashes_at = |i: usize| {
        chars[i.min(chars.len())..]
            .iter()
            .take_while(|c| **c == '#')
            .count()
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == 'r' && at(i + 1 + hashes_at(i + 1)) == '"' {
            // A raw string: r"..", r#".."#.
            let hashes = hashes_at(i + 1);
            let close: String = std::iter::once('"')
                .chain("#".repeat(hashes).chars())
                .collect();
            let rest: String = chars[i + 2 + hashes..].iter().collect();
            i += 2 + hashes + rest.find(&close).map_or(rest.len(), |n| n + close.len());
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if at(i + 1) == '\\' {
                i += 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
            }
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else if c == ':' && at(i + 1) == ':' {
            out.push(Token::Path);
            i += 2;
        } else {
            if !c.is_whitespace() {
                out.push(Token::Punct(c));
            }
            i += 1;
        }
    }
    out
}

/// Every module path `source` names through `crate`, `super` or `self`,
/// absolute from the crate root, with the text that named it.
fn paths(module: &Module, source: &str) -> Vec<(Module, String)> {
    let toks = tokens(source);
    let ident = |i: usize| match toks.get(i) {
        Some(Token::Ident(s)) => Some(s.as_str()),
        _ => None,
    };
    let mut out = Vec::new();
    // Inline modules (`mod tests {`): name and the brace depth they close at.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    for i in 0..toks.len() {
        match &toks[i] {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                depth -= 1;
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            Token::Ident(k) if k == "mod" => {
                if let (Some(name), Some(Token::Punct('{'))) = (ident(i + 1), toks.get(i + 2)) {
                    inline.push((name.to_owned(), depth));
                }
            }
            Token::Ident(start) if ["crate", "super", "self"].contains(&start.as_str()) => {
                let after_path = i > 0 && toks[i - 1] == Token::Path;
                let macro_crate = i > 0 && toks[i - 1] == Token::Punct('$');
                let visibility = i > 0 && ident(i - 1) == Some("in");
                if after_path || macro_crate || visibility || toks.get(i + 1) != Some(&Token::Path)
                {
                    continue;
                }
                let here: Module = module
                    .iter()
                    .cloned()
                    .chain(inline.iter().map(|(n, _)| n.clone()))
                    .collect();
                let mut trees = Vec::new();
                let mut j = i;
                use_tree(&toks, &mut j, Vec::new(), &mut trees);
                for segments in trees {
                    let text = segments.join("::");
                    if let Some(path) = absolute(&here, &segments) {
                        out.push((path, text));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// A path or use tree from `toks[*i]` on, each leaf as its segments.
fn use_tree(toks: &[Token], i: &mut usize, mut prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    loop {
        match toks.get(*i) {
            Some(Token::Ident(s)) => {
                prefix.push(s.clone());
                *i += 1;
                if toks.get(*i) == Some(&Token::Path) {
                    *i += 1;
                } else {
                    out.push(prefix);
                    return;
                }
            }
            Some(Token::Punct('{')) => {
                *i += 1;
                loop {
                    use_tree(toks, i, prefix.clone(), out);
                    if matches!(toks.get(*i), Some(Token::Ident(s)) if s == "as") {
                        *i += 2;
                    }
                    match toks.get(*i) {
                        Some(Token::Punct(',')) => *i += 1,
                        Some(Token::Punct('}')) => {
                            *i += 1;
                            return;
                        }
                        _ => return,
                    }
                    if toks.get(*i) == Some(&Token::Punct('}')) {
                        *i += 1;
                        return;
                    }
                }
            }
            _ => {
                out.push(prefix);
                return;
            }
        }
    }
}

/// `segments` (starting with `crate`, `super` or `self`) from module `here`.
fn absolute(here: &Module, segments: &[String]) -> Option<Module> {
    let mut path = here.clone();
    for (n, s) in segments.iter().enumerate() {
        match s.as_str() {
            "crate" if n == 0 => path.clear(),
            "super" => {
                path.pop()?;
            }
            "self" => {}
            _ => path.push(s.clone()),
        }
    }
    Some(path)
}
