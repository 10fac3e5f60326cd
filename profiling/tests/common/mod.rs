//! What the rig's integration tests share.
#![allow(clippy::unwrap_used, dead_code)] // test code; not every test uses every helper

use std::path::{Path, PathBuf};

/// The workspace root, which builds share-server and holds `scenarios/`.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}
