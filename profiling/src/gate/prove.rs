//! `rig prove`: the gate shown to work. The clean build and each of the
//! story's bugs (`share-server --features regressions --regression NAME`) go
//! through the same gate; the detection table says which budget or metric
//! caught each one, in `prove.md` and `prove.json`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::output::append_step_summary;
use super::{GateError, GateOptions, GateReport, gate, io};
use crate::scenario::Scenario;

pub const PROVE_JSON: &str = "prove.json";
pub const PROVE_MD: &str = "prove.md";

pub use crate::fixture::Fixture;

/// A build put through the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Variant {
    /// The clean build, its `n`th gate (from 1): must pass.
    Clean(usize),
    /// The server with a bug brought back: must be flagged.
    Fixture(Fixture),
}

impl Variant {
    pub fn is_clean(self) -> bool {
        matches!(self, Variant::Clean(_))
    }
}

/// `clean-2`, `read-all-chunks`: the row's name and its scenario file's.
impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Variant::Clean(n) => write!(f, "clean-{n}"),
            Variant::Fixture(fixture) => write!(f, "{fixture}"),
        }
    }
}

impl FromStr for Variant {
    type Err = String;

    fn from_str(s: &str) -> Result<Variant, String> {
        if let Some(n) = s.strip_prefix("clean-").and_then(|n| n.parse().ok()) {
            return Ok(Variant::Clean(n));
        }
        s.parse()
            .map(Variant::Fixture)
            .map_err(|e| format!("unknown build {s:?}: {e}"))
    }
}

impl From<Variant> for String {
    fn from(v: Variant) -> String {
        v.to_string()
    }
}

impl TryFrom<String> for Variant {
    type Error = String;

    fn try_from(s: String) -> Result<Variant, String> {
        s.parse()
    }
}

/// One row of the detection table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Detection {
    pub variant: Variant,
    pub verdicts: Vec<String>,
    pub flagged: bool,
    /// The budgets and metrics that caught it.
    pub flagged_by: Vec<String>,
    /// Effect sizes of what caught it, for people.
    pub effects: Vec<String>,
    /// What grew most, from the gate's attribution run (flagged builds).
    #[serde(default)]
    pub grew_most: Option<String>,
    pub gate_dir: PathBuf,
}

impl Detection {
    fn of(variant: Variant, r: &GateReport) -> Detection {
        let mut effects: Vec<String> = r
            .budgets
            .iter()
            .filter(|b| !b.pass)
            .map(|b| format!("{} {} (limit {})", b.budget, b.worst, b.limit))
            .collect();
        effects.extend(r.comparisons.iter().filter(|c| c.regression).map(|c| {
            format!(
                "{} {:+.0}% ({} → {}, p={:.3})",
                c.metric,
                c.delta_relative * 100.0,
                c.metric.show(c.baseline_median),
                c.metric.show(c.current_median),
                c.p_higher
            )
        }));
        Detection {
            variant,
            verdicts: r.verdicts(),
            flagged: !r.passed,
            flagged_by: r.failures.clone(),
            effects,
            grew_most: r.attribution.as_ref().map(|a| a.line()),
            gate_dir: r.dir.clone(),
        }
    }

    /// A fixture caught, or a clean build let through.
    pub fn right(&self) -> bool {
        self.flagged != self.variant.is_clean()
    }
}

/// The clean build `clean_gates` times, then each fixture once, every one a
/// full gate against the baseline.
pub async fn prove(
    options: &GateOptions,
    clean_gates: usize,
    fixtures: &[Fixture],
) -> Result<Vec<Detection>, GateError> {
    let scenario = Scenario::load(&options.scenario)?;
    let dir = super::dated_dir(&options.runs_dir, "prove", &scenario.name, Utc::now())?;
    let text = std::fs::read_to_string(&options.scenario)
        .map_err(io(format!("reading {}", options.scenario.display())))?;

    let variants = (1..=clean_gates)
        .map(Variant::Clean)
        .chain(fixtures.iter().copied().map(Variant::Fixture));
    let mut rows = Vec::new();
    for variant in variants {
        let report = gate_variant(options, &text, &dir, variant).await?;
        let row = Detection::of(variant, &report);
        eprintln!(
            "rig prove: {variant}: {}",
            if row.flagged { "FLAGGED" } else { "passed" }
        );
        rows.push(row);
    }
    write(&rows, &dir, &options.scenario)?;
    Ok(rows)
}

/// One gate of `variant`: its scenario (`text` with the fixture added)
/// written to `<dir>/<variant>.toml`, its runs into `dir`; the rest of
/// `options` (baseline, replicates, attribution) as given.
pub async fn gate_variant(
    options: &GateOptions,
    text: &str,
    dir: &Path,
    variant: Variant,
) -> Result<GateReport, GateError> {
    let file = dir.join(format!("{variant}.toml"));
    std::fs::write(&file, fixture_scenario(text, variant)?)
        .map_err(io(format!("writing {}", file.display())))?;
    gate(&GateOptions {
        scenario: file,
        runs_dir: dir.to_path_buf(),
        ..options.clone()
    })
    .await
}

/// The scenario text with the `regressions` feature and `--regression NAME`
/// added (unchanged for the clean build).
pub fn fixture_scenario(text: &str, variant: Variant) -> Result<String, GateError> {
    let Variant::Fixture(fixture) = variant else {
        return Ok(text.to_owned());
    };
    Ok(crate::fixture::with_fixture(text, fixture)?)
}

/// `prove.md` and `prove.json`: the detection table.
pub fn write(rows: &[Detection], dir: &Path, scenario: &Path) -> Result<(), GateError> {
    let json = serde_json::to_string_pretty(rows).map_err(std::io::Error::other);
    std::fs::write(
        dir.join(PROVE_JSON),
        json.map_err(io("encoding prove.json"))? + "\n",
    )
    .map_err(io("writing prove.json"))?;
    let md = markdown(rows, scenario);
    std::fs::write(dir.join(PROVE_MD), &md).map_err(io("writing prove.md"))?;
    append_step_summary(&md);
    Ok(())
}

pub fn markdown(rows: &[Detection], scenario: &Path) -> String {
    let mut md = String::new();
    let (cleans, fixtures): (Vec<&Detection>, Vec<&Detection>) =
        rows.iter().partition(|r| r.variant.is_clean());
    let _ = writeln!(
        md,
        "Detection of `{}` ({}): {} of {} fixtures flagged, {} false alarms in {} clean gates.\n",
        scenario.display(),
        Utc::now().format("%Y-%m-%d"),
        fixtures.iter().filter(|r| r.flagged).count(),
        fixtures.len(),
        cleans.iter().filter(|r| r.flagged).count(),
        cleans.len()
    );
    let _ = writeln!(
        md,
        "| build | verdicts | gate | flagged by | effect | grew most (attribution run) |"
    );
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- |");
    let list = |items: &[String]| {
        if items.is_empty() {
            "—".to_owned()
        } else {
            items.join("; ")
        }
    };
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            r.variant,
            r.verdicts.join(", "),
            if r.flagged { "FAIL" } else { "pass" },
            list(&r.flagged_by),
            list(&r.effects),
            r.grew_most.as_deref().map_or("—".into(), |g| g
                .trim_start_matches("grew most: ")
                .to_owned())
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_scenarios_add_the_feature_and_flag() {
        let text = "name = \"g\"\n[server]\nargs = [\"--gc-interval\", \"2s\"]\n";
        let read_all = Variant::Fixture(Fixture::ReadAllChunks);
        let out = fixture_scenario(text, read_all).unwrap();
        let s = Scenario::parse(&out, Path::new("x.toml")).unwrap();
        assert_eq!(s.name, "g-read-all-chunks");
        assert_eq!(s.server.features, ["regressions"]);
        assert_eq!(
            s.server.args,
            ["--gc-interval", "2s", "--regression", "read-all-chunks"]
        );
        assert_eq!(fixture_scenario(text, Variant::Clean(1)).unwrap(), text);
        // A scenario without [server] gets one.
        let out = fixture_scenario("name = \"g\"\n", read_all).unwrap();
        assert!(Scenario::parse(&out, Path::new("x.toml")).is_ok());
    }

    #[test]
    fn variants_are_named_as_before() {
        for (v, name) in [
            (Variant::Clean(3), "clean-3"),
            (Variant::Fixture(Fixture::PeriodicVacuum), "periodic-vacuum"),
            (
                Variant::Fixture(Fixture::RetainPerUpload(loadgen::ByteSize(8 << 20))),
                "retain-per-upload=8MiB",
            ),
        ] {
            assert_eq!(v.to_string(), name);
            assert_eq!(name.parse::<Variant>(), Ok(v));
            assert_eq!(serde_json::to_value(v).unwrap(), name);
        }
        assert!("clean".parse::<Variant>().is_err());
    }

    #[test]
    fn a_proof_is_right_when_fixtures_are_flagged_and_clean_builds_are_not() {
        let row = |variant, flagged| Detection {
            variant,
            verdicts: Vec::new(),
            flagged,
            flagged_by: Vec::new(),
            effects: Vec::new(),
            grew_most: None,
            gate_dir: "g".into(),
        };
        let vacuum = Variant::Fixture(Fixture::PeriodicVacuum);
        assert!(row(Variant::Clean(1), false).right());
        assert!(!row(Variant::Clean(1), true).right());
        assert!(row(vacuum, true).right());
        assert!(!row(vacuum, false).right());
        let named = Detection {
            grew_most: Some("grew most: `etilqs_*` +40.0 MiB".into()),
            ..row(vacuum, true)
        };
        let md = markdown(&[row(Variant::Clean(1), false), named], Path::new("s.toml"));
        assert!(md.contains("1 of 1 fixtures flagged, 0 false alarms in 1 clean gates"));
        assert!(md.contains("| clean-1 |  | pass | — | — | — |"), "{md}");
        assert!(md.contains("| `etilqs_*` +40.0 MiB |"), "{md}");
    }
}
