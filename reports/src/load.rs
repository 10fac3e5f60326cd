//! Reading a run directory (layout in `docs/scenarios.md`) into the types of
//! `run_format`. Their fields default when missing, so runs of older rigs
//! load; `meta.json` and `outcome.json` may be absent (a rig that died before
//! writing `outcome.json`).

use std::path::{Path, PathBuf};

use run_format::events::{detail, name as event};
use run_format::{Event, Meta, Outcome, Sample, files};
use serde::de::DeserializeOwned;

use crate::error::ReportError;

/// Everything the reports read from one run directory.
#[derive(Debug, Clone)]
pub struct Run {
    pub dir: PathBuf,
    pub samples: Vec<Sample>,
    pub events: Vec<Event>,
    pub meta: Option<Meta>,
    pub outcome: Option<Outcome>,
    pub scenario_text: Option<String>,
    /// goose's and loadgen's report files, relative to `dir` (`loadgen/1-upload/goose-report.html`).
    pub loadgen_files: Vec<PathBuf>,
    /// The rig's `/healthz` probes (`healthz.jsonl`; empty for runs from before it).
    pub health: Vec<run_format::HealthProbe>,
}

/// How the server ended, from `outcome.json`, else from `events.jsonl`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ending {
    /// The server died on its own (not stopped by the rig), seconds since the start.
    pub died_at_s: Option<f64>,
    /// `killed by SIGKILL`, `exited with status 1`, ...
    pub how: Option<String>,
    pub signal: Option<i32>,
    pub oom_kills: u64,
    pub interrupted: bool,
}

/// A load phase as the events record it, seconds since the start.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseSpan {
    pub name: String,
    pub start_s: f64,
    pub end_s: Option<f64>,
}

/// Reads a run directory. Only `samples.jsonl` is required; a line that does
/// not parse (cut by a crash of the rig) is skipped like the rig does.
pub fn load(dir: &Path) -> Result<Run, ReportError> {
    let samples_path = dir.join(files::SAMPLES);
    let text = std::fs::read_to_string(&samples_path)
        .map_err(ReportError::io("reading", &samples_path))?;
    let samples: Vec<Sample> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if samples.is_empty() {
        return Err(ReportError::NoSamples { path: samples_path });
    }
    let events = optional_text(&dir.join(files::EVENTS))?
        .map(|t| run_format::events::parse(&t))
        .unwrap_or_default();
    Ok(Run {
        dir: dir.to_owned(),
        samples,
        events,
        meta: optional_json(&dir.join(files::META))?,
        outcome: optional_json(&dir.join(files::OUTCOME))?,
        scenario_text: optional_text(&dir.join(files::SCENARIO))?,
        loadgen_files: loadgen_files(dir)?,
        health: optional_text(&dir.join(files::HEALTHZ))?
            .map(|t| run_format::health::parse(&t))
            .unwrap_or_default(),
    })
}

fn optional_text(path: &Path) -> Result<Option<String>, ReportError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ReportError::io("reading", path)(e)),
    }
}

fn optional_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, ReportError> {
    optional_text(path)?
        .map(|t| {
            serde_json::from_str(&t).map_err(|cause| ReportError::Json {
                path: path.to_owned(),
                cause,
            })
        })
        .transpose()
}

/// The files under `loadgen/<n>-<phase>/`, sorted, relative to the run directory.
fn loadgen_files(dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let root = dir.join(files::LOADGEN_DIR);
    let mut found = Vec::new();
    let Ok(phases) = std::fs::read_dir(&root) else {
        return Ok(found);
    };
    for phase in phases {
        let phase = phase.map_err(ReportError::io("listing", &root))?.path();
        let Ok(entries) = std::fs::read_dir(&phase) else {
            continue;
        };
        for entry in entries {
            let path = entry.map_err(ReportError::io("listing", &phase))?.path();
            if path.is_file()
                && let Ok(rel) = path.strip_prefix(dir)
            {
                found.push(rel.to_owned());
            }
        }
    }
    found.sort();
    Ok(found)
}

impl Run {
    /// The run directory's name, e.g. `parallel-uploads-20261128T101500Z`.
    pub fn name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.dir.display().to_string())
    }

    /// A text of `meta.json`; `None` without the file or when it is empty.
    pub fn meta_text(&self, field: impl FnOnce(&Meta) -> &str) -> Option<String> {
        let text = field(self.meta.as_ref()?);
        (!text.is_empty()).then(|| text.to_owned())
    }

    /// `cgroup`, `machine`, `none` or `vm` (`unknown` without `meta.json`).
    pub fn mode(&self) -> String {
        self.meta_text(|m| &m.machine.mode)
            .unwrap_or_else(|| "unknown".into())
    }

    /// The memory limit: the samples' own figure first (what the kernel
    /// enforced), else what `meta.json` says the rig set.
    pub fn limit_bytes(&self) -> Option<u64> {
        self.samples
            .iter()
            .find_map(|s| s.machine.as_ref().and_then(|m| m.limit_bytes))
            .or_else(|| self.meta.as_ref()?.machine.limit_bytes)
    }

    /// Phase spans from `phase-start`/`phase-end` events.
    pub fn phases(&self) -> Vec<PhaseSpan> {
        let mut spans: Vec<PhaseSpan> = Vec::new();
        for e in &self.events {
            let t = e.t_ms as f64 / 1000.0;
            if let Some(start) = e.detail::<detail::PhaseStart>() {
                if !start.phase.is_empty() {
                    spans.push(PhaseSpan {
                        name: start.phase,
                        start_s: t,
                        end_s: None,
                    });
                }
            } else if let Some(end) = e.detail::<detail::PhaseEnd>()
                && let Some(span) = spans
                    .iter_mut()
                    .rev()
                    .find(|s| s.name == end.phase && s.end_s.is_none())
            {
                span.end_s = Some(t);
            }
        }
        spans
    }

    /// How the server ended. `outcome.json` knows best; a rig that died
    /// before writing it still left `server-died` in `events.jsonl` and the
    /// cgroup's OOM kill count in the samples.
    pub fn ending(&self) -> Ending {
        // The name alone says it died; the detail adds when and how.
        let died = self
            .events
            .iter()
            .find(|e| e.event == event::SERVER_DIED)
            .map(|e| (e.t_ms, e.detail::<detail::ServerDied>().unwrap_or_default()));
        let mut ending = Ending {
            died_at_s: died
                .as_ref()
                .map(|(t_ms, d)| d.at_ms.unwrap_or(*t_ms) as f64 / 1000.0),
            how: died.and_then(|(_, d)| (!d.exit.is_empty()).then_some(d.exit)),
            signal: None,
            oom_kills: self.sampled_oom_kills(),
            interrupted: self.events.iter().any(|e| e.event == event::INTERRUPTED),
        };
        if let Some(o) = &self.outcome {
            if let Some(at) = o.died_at_ms {
                ending.died_at_s = Some(at as f64 / 1000.0);
            }
            ending.oom_kills = ending.oom_kills.max(o.oom_kills);
            ending.interrupted |= o.interrupted;
            if let Some(exit) = &o.server_exit {
                ending.signal = exit.signal;
                if !exit.stopped_by_rig && ending.died_at_s.is_some() && ending.how.is_none() {
                    ending.how = Some(exit.describe());
                }
            }
        }
        ending
    }

    /// OOM kills seen by the samples: the rise of the machine's counter.
    fn sampled_oom_kills(&self) -> u64 {
        let counts: Vec<u64> = self
            .samples
            .iter()
            .filter_map(|s| s.machine.as_ref()?.oom_kills)
            .collect();
        match (counts.first(), counts.iter().max()) {
            (Some(first), Some(max)) => max - first,
            _ => 0,
        }
    }
}
