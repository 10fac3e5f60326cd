//! profiling: the rig. It starts `share-server` inside a memory limit like a
//! small VM's, replays load with loadgen, samples every memory layer over
//! time and knows an OOM kill when it sees one.
//!
//! Module map:
//! - [`scenario`]: the scenario file (machine, server, phases, sampling, budgets).
//! - [`machine`]: where the server runs: a fresh memory cgroup (`cgroup`), the
//!   whole machine (`machine`, for a real small VM), no limit (`none`) or a
//!   qemu guest booted for the run (`vm`); each starts the server inside it
//!   ([`machine::Machine::start_server`], one [`machine::Server`] handle to
//!   watch and stop it), says where its memory figures come from and how a
//!   kill is detected.
//! - [`target`]: the server binary (build or locate) and its `/healthz` wait.
//! - [`wrapper`]: `[server] wrapper`, a command the server runs under
//!   (Litestream), and the Litestream config the rig writes for a run.
//! - [`heap`]: heap profiles during a run (`heap/<t_ms>.pb.gz`), after new peaks and on an interval.
//! - [`fixture`]: the story's bugs as server builds (`--regression NAME`), for `rig prove` and `rig run`.
//! - The sample schema written to `samples.jsonl` is in the `run-format` crate
//!   (shared with the reports).
//! - [`sampler`]: the periodic sampler that writes it (every process of the
//!   cgroup too, so a wrapper's memory is on record beside the server's).
//! - [`files`]: the server's files outside the heap (temp dir, deleted but
//!   open, WAL) each sample, and their listing at the peak.
//! - [`meta`]: what ran (git revision, features, kernel, cgroup, limit).
//! - `phases`: the load phases, in order or in the `background`; `health`: the `/healthz`
//!   prober (`healthz.jsonl`); `events`: `events.jsonl`.
//! - [`run`]: `rig run`, tying it all together into a run directory.
//! - [`gate`]: `rig gate`, the memory-regression gate over N runs, and
//!   `rig prove` ([`gate::prove`]), the gate run over the story's bugs.
//! - [`doctor`]: `rig doctor`, what this machine gives the rig and what to run for the rest.

pub mod doctor;
mod events;
pub mod files;
pub mod fixture;
pub mod gate;
mod health;
pub mod heap;
pub mod machine;
pub mod meta;
mod phases;
pub mod run;
mod run_progress;
pub mod sampler;
pub mod scenario;
pub mod target;
pub mod wrapper;
