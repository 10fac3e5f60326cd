//! One run analysed: the loaded directory, its timeline, and every finding
//! the outputs (plots, HTML, markdown, JSON, comparison) are made from. Kept
//! apart from the writers so `report` and `compare` compute the same thing.

use crate::correlate::{self, LayerCorrelation};
use crate::heap::{self, HeapSummary};
use crate::load::{Ending, PhaseSpan, Run};
use crate::plot::Figure;
use crate::stats;
use crate::suspects::{self, Suspects};
use crate::timeline::{Layer, Timeline};
use crate::verdict::{self, Diagnosis, Facts};

pub struct Analysis {
    pub run: Run,
    pub timeline: Timeline,
    pub phases: Vec<PhaseSpan>,
    pub ending: Ending,
    pub limit_bytes: Option<u64>,
    pub diagnosis: Diagnosis,
    pub correlations: Vec<LayerCorrelation>,
    pub suspects: Suspects,
    /// The heap profile at the peak, read (runs with heap profiles).
    pub heap: Option<HeapSummary>,
}

impl Analysis {
    pub fn of(run: Run) -> Analysis {
        let timeline = Timeline::from_samples(&run.samples);
        let ending = run.ending();
        let limit_bytes = run.limit_bytes();
        let diagnosis = verdict::diagnose(&Facts::of(&timeline, limit_bytes, &ending));
        let heap_profiles = run.meta.as_ref().and_then(|m| m.heap_profiles.as_ref());
        Analysis {
            heap: heap::at_peak(&run.dir, heap_profiles),
            correlations: correlate::correlate(&timeline),
            suspects: suspects::suspects(&timeline),
            phases: run.phases(),
            run,
            timeline,
            ending,
            limit_bytes,
            diagnosis,
        }
    }

    /// (peak bytes, at seconds) of a layer.
    pub fn peak(&self, layer: Layer) -> Option<(u64, f64)> {
        stats::peak(self.timeline.col(layer)).map(|(i, v)| (v as u64, self.timeline.t_s[i]))
    }

    /// When the machine's OOM kill count rose.
    pub fn oom_kills_at(&self) -> Vec<f64> {
        let col = self.timeline.col(Layer::OomKills);
        let mut prev: Option<f64> = None;
        let mut at = Vec::new();
        for (t, v) in self.timeline.t_s.iter().zip(col) {
            if let Some(v) = *v {
                if prev.is_some_and(|p| v > p) {
                    at.push(*t);
                }
                prev = Some(v);
            }
        }
        at
    }

    pub fn figure(&self) -> Figure<'_> {
        let death = self.ending.died_at_s.map(|t| {
            let label = if self.ending.oom_kills > 0 {
                "OOM kill".to_owned()
            } else {
                format!("server {}", self.ending.how.as_deref().unwrap_or("died"))
            };
            (t, label)
        });
        Figure {
            title: format!("{} — verdict: {}", self.run.name(), self.diagnosis.verdict),
            timeline: &self.timeline,
            phases: &self.phases,
            limit_bytes: self.limit_bytes.map(|l| l as f64),
            death,
            oom_kills_at: self.oom_kills_at(),
        }
    }
}
