//! loadgen: a goose load generator for share-server that replays the story's parallel 618 MB
//! uploads and the rest of the traffic a share server sees, exactly and cheaply.
//!
//! - `config`: `Config` (what a run does; filled by the CLI or the rig's TOML) and `Scenario`.
//! - `size`: `ByteSize`, sizes written as `618MB` or `2GiB`.
//! - `content`: deterministic content from a seed, any slice computable on its own.
//! - `body`: the streamed upload body (hashed on the way, throttled or cut off).
//! - `verify`: checking downloaded bytes against the uploaded ones as they arrive.
//! - `scenarios`: the goose scenarios (`upload`, `download`, `slow-upload`, `abort-upload`,
//!   `mixed`, `delete`, `churn`, `guest-upload`).
//! - `hostile`: attack scenarios (`login-body-flood`, `stalled-guest-upload`, `slow-body`,
//!   `idle-flood`, `history-flood`): raw-socket clients, bounded, loopback only.
//! - `attack`: the goose configuration and run; `preflight`: server checks with short timeouts.
//! - `recorder` + `histogram`: the bounded tally; `summary`: the summary written as JSON.
//! - `run`: the entry point, `run(config) -> Result<Summary, Error>`.
//!
//! Memory: an upload holds a few 256 KiB pieces, a range check one 64 KiB piece, the tally a
//! fixed amount per scenario plus one record per completed upload and one id per deletion. Nothing grows with file size.

mod attack;
mod body;
mod config;
mod content;
mod error;
mod histogram;
mod hostile;
mod http;
mod preflight;
mod recorder;
mod run;
mod run_state;
mod scenarios;
mod size;
mod summary;
mod verify;

pub use body::{PIECE, pattern_sha256};
pub use config::{Config, DEFAULT_TIMEOUT, MixedWeights, ParseScenarioError, Scenario};
pub use content::Pattern;
pub use error::Error;
pub use hostile::{
    AttackSummary, DEFAULT_DURATION as DEFAULT_ATTACK_DURATION, HistoryCheck, MAX_CONNECTIONS,
    MAX_SOURCES, Sources, default_connections,
};
pub use http::client_builder;
pub use recorder::{MAX_MISMATCH_EXAMPLES, MAX_REASONS};
pub use run::run;
pub use size::{ByteSize, ParseSizeError};
pub use summary::{
    DurationStats, GOOSE_REPORTS, Mismatch, ReportFiles, SUMMARY_FILE, ScenarioSummary, Summary,
    TransferSummary, UploadRecord,
};
