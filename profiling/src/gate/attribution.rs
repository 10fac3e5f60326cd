//! What grew, named: after a gate fails (and when a baseline is written), one
//! more run of the scenario with heap profiles and room to live ([`ROOM`]),
//! apart from the measured replicates so the profiler's own cost never
//! enters a budget or a comparison. Its peak heap profile is diffed with the
//! baseline's (stored in the baseline file), and its report names what grew
//! within the run (heap sites and files); the largest is the gate's
//! "grew most".

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use reports::cause::{self, Cause, CauseKind};
use reports::heap::growth::{self, Grown, SiteBytes};

use super::GateOptions;
use crate::heap::{HeapProfiling, with_heap_profiles};
use crate::run::{RunOptions, run};
use crate::scenario::Scenario;

const MIB: u64 = 1 << 20;
/// The attribution run's memory limit: this many times the scenario's, and
/// at least [`MIN_ROOM`]; a run killed at once would name nothing.
pub const ROOM: u64 = 4;
pub const MIN_ROOM: u64 = 512 * MIB;
/// Sites of the baseline's peak profile kept in the baseline file.
pub const BASELINE_SITES: usize = 40;

/// The baseline build's peak heap profile, by site (the baseline file's `heap`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineHeap {
    /// The attribution run it came from (on the machine that wrote it).
    pub run_dir: PathBuf,
    pub sites: Vec<SiteBytes>,
}

/// `gate.json`'s `attribution`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attribution {
    pub run_dir: Option<PathBuf>,
    /// The memory limit it ran with, bytes (`None`: the scenario sets none).
    pub limit_bytes: Option<u64>,
    /// Heap sites that grew most from the baseline's peak profile to this run's.
    pub grew_vs_baseline: Vec<Grown>,
    /// What grew most within the run (heap from its first profile, files).
    pub within_run: Option<Cause>,
    /// The largest of the two, the gate's "grew most".
    pub grew_most: Option<Cause>,
    /// Why there is nothing to name, when so.
    pub error: Option<String>,
}

impl Attribution {
    fn failed(error: String) -> Attribution {
        Attribution {
            run_dir: None,
            limit_bytes: None,
            grew_vs_baseline: Vec::new(),
            within_run: None,
            grew_most: None,
            error: Some(error),
        }
    }

    /// The peak profile's sites, for a new baseline.
    pub fn baseline_heap(&self) -> Option<BaselineHeap> {
        let dir = self.run_dir.as_ref()?;
        let summary = reports::report(dir).ok()?;
        let mut sites = reports::heap::peak_sites(dir, summary.heap.as_ref()?).ok()?;
        sites.truncate(BASELINE_SITES);
        Some(BaselineHeap {
            run_dir: dir.clone(),
            sites,
        })
    }

    /// One line for people: "grew most: `…` +47.9 MiB (…)".
    pub fn line(&self) -> String {
        match (&self.grew_most, &self.error) {
            (Some(c), _) => c.text.clone(),
            (None, Some(e)) => format!("could not name what grew: {e}"),
            (None, None) => "nothing grew by 1 MiB or more in the attribution run".into(),
        }
    }
}

/// The scenario with heap profiles on and the memory limit raised.
pub fn scenario_text(text: &str, scenario: &Scenario) -> Result<(String, Option<u64>), String> {
    let text = with_heap_profiles(text, HeapProfiling::Peak)?;
    let limit = scenario.machine.memory.0;
    if limit == 0 {
        return Ok((text, None));
    }
    let room = (limit.saturating_mul(ROOM)).max(MIN_ROOM);
    let mut doc: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    if let Some(machine) = doc.get_mut("machine").and_then(|m| m.as_table_mut()) {
        machine.insert("memory".into(), format!("{}MiB", room / MIB).into());
    }
    let text = toml::to_string(&doc).map_err(|e| e.to_string())?;
    Ok((text, Some(room)))
}

/// Runs the attribution run of `scenario_file` into `dir` and names what grew.
pub async fn attribute(
    options: &GateOptions,
    scenario_file: &Path,
    dir: &Path,
    baseline: Option<&BaselineHeap>,
) -> Attribution {
    eprintln!("rig gate: attribution run (heap profiles, more memory) to name what grew");
    let prepared = std::fs::read_to_string(scenario_file)
        .map_err(|e| format!("reading {}: {e}", scenario_file.display()))
        .and_then(|text| {
            let scenario = Scenario::parse(&text, scenario_file).map_err(|e| e.to_string())?;
            scenario_text(&text, &scenario)
        });
    let (text, limit_bytes) = match prepared {
        Ok(p) => p,
        Err(e) => return Attribution::failed(e),
    };
    let file = dir.join("attribution.toml");
    if let Err(e) = std::fs::write(&file, text) {
        return Attribution::failed(format!("writing {}: {e}", file.display()));
    }
    let outcome = run(RunOptions {
        scenario: file,
        runs_dir: dir.join("attribution"),
        workspace: options.workspace.clone(),
        progress: options.progress,
        heap_profiles: None,
        regression: None,
    })
    .await;
    let run_dir = match outcome {
        Ok(o) => o.run_dir,
        Err(e) => return Attribution::failed(format!("the attribution run failed: {e}")),
    };
    let mut a = named(&run_dir, baseline);
    a.limit_bytes = limit_bytes;
    a
}

/// What the run in `run_dir` names, against the baseline's sites if any.
pub fn named(run_dir: &Path, baseline: Option<&BaselineHeap>) -> Attribution {
    let summary = match reports::report(run_dir) {
        Ok(s) => s,
        Err(e) => return Attribution::failed(format!("no report of the attribution run: {e}")),
    };
    let grew_vs_baseline = match (baseline, summary.heap.as_ref()) {
        (Some(b), Some(h)) => reports::heap::peak_sites(run_dir, h)
            .map(|now| growth::grown(&b.sites, &now, growth::TOP_GROWN))
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let vs_baseline = grew_vs_baseline.first().and_then(|g| {
        let grown = u64::try_from(g.delta_bytes()).ok()?;
        Some(Cause {
            kind: CauseKind::Heap,
            name: g.name.clone(),
            grown_bytes: grown,
            text: format!(
                "grew most: `{}` {:+.1} MiB (heap site, the baseline's peak profile → this build's)",
                g.name,
                grown as f64 / MIB as f64
            ),
        })
    });
    let within_run = summary.cause.clone();
    // Against the baseline's heap when it has one (a regression is a
    // difference between builds), else from the run's first profile; and
    // the files outside the heap, whichever grew more.
    let heap = vs_baseline.or_else(|| summary.heap.as_ref().and_then(cause::of_heap));
    let files = summary.outside_heap.as_ref().and_then(cause::of_files);
    Attribution {
        run_dir: Some(run_dir.to_owned()),
        limit_bytes: None,
        grew_most: cause::largest([heap, files]),
        grew_vs_baseline,
        within_run,
        error: summary
            .heap
            .is_none()
            .then(|| "the attribution run took no heap profiles".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attribution_scenario_profiles_with_room() {
        let text = "name = \"g\"\n[machine]\nmode = \"cgroup\"\nmemory = \"64MiB\"\n";
        let scenario = Scenario::parse(text, Path::new("g.toml")).unwrap();
        let (out, limit) = scenario_text(text, &scenario).unwrap();
        let s = Scenario::parse(&out, Path::new("g.toml")).unwrap();
        assert_eq!(limit, Some(512 * MIB));
        assert_eq!(s.machine.memory.0, 512 * MIB);
        assert!(s.server.heap_profiles.is_on());
        let text = text.replace("64MiB", "256MiB");
        let scenario = Scenario::parse(&text, Path::new("g.toml")).unwrap();
        assert_eq!(scenario_text(&text, &scenario).unwrap().1, Some(1024 * MIB));
    }
}
