//! run-format: the files of a rig run directory that more than one crate
//! reads. The rig (`profiling`) writes them; `reports` reads them. Kept in
//! their own crate so both can depend on the schema without depending on
//! each other (the layout is documented in `docs/scenarios.md`). Also the
//! server's startup lines ([`startup`]), which the rig and the tests read,
//! and the decoder of its heap profiles ([`pprof`]), which the reports and
//! the server's tests read.
//!
//! Every type reads files with fields missing (`#[serde(default)]`), so runs
//! of older rigs still load.

pub mod events;
pub mod exit;
pub mod file_groups;
pub mod health;
pub mod heap;
pub mod meta;
pub mod outcome;
pub mod pprof;
pub mod sample;
pub mod server_stats;
pub mod startup;

pub use events::Event;
pub use exit::Exit;
pub use file_groups::{FileGroup, FileKind, FilesAtPeak, KindBytes};
pub use health::{HealthProbe, HealthSummary};
pub use heap::{HeapProfile, HeapProfiles};
pub use meta::Meta;
pub use outcome::{Outcome, Peaks, PhaseOutcome, PhaseSummary};
pub use sample::{FileSizes, GroupProcess, MachineMemory, ProcessSample, Sample};
pub use server_stats::ServerStats;

/// File names inside a run directory.
pub mod files {
    pub const SCENARIO: &str = "scenario.toml";
    pub const META: &str = "meta.json";
    pub const SAMPLES: &str = "samples.jsonl";
    pub const EVENTS: &str = "events.jsonl";
    pub const SERVER_LOG: &str = "server.log";
    pub const OUTCOME: &str = "outcome.json";
    pub const HEALTHZ: &str = "healthz.jsonl";
    pub const LOADGEN_DIR: &str = "loadgen";
    pub const HEAP_DIR: &str = crate::heap::HEAP_DIR;
}
