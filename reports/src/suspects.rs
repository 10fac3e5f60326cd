//! Which layer grew with the bytes uploaded. A server that streams uploads
//! holds a fixed amount of memory per upload in flight, whatever the file's
//! size; a layer that instead grows in a straight line with the bytes
//! uploaded keeps something per byte: the classic leak signature (the
//! story's unreleased multipart temp data, bug 2).

use serde::{Deserialize, Serialize};

use crate::stats;
use crate::timeline::{Layer, Timeline};

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

/// The layers suspected of growing with uploads.
pub const LAYERS: [Layer; 5] = [
    Layer::ProcessAnon,
    Layer::AllocatorFragmentation,
    Layer::SqliteMemory,
    Layer::DirtyWriteback,
    Layer::ProcessShmem,
];

/// A slope below this is noise or a fixed cost per upload in flight.
pub const GROWS_MIB_PER_GIB: f64 = 8.0;
/// How straight a line must be to be called linear growth.
pub const LINEAR_R2: f64 = 0.8;
/// Below this much upload the slope says little.
pub const MIN_UPLOAD_BYTES: f64 = 16.0 * MIB;
/// And a leak must add up to something visible.
pub const MIN_GROWTH_BYTES: f64 = 4.0 * MIB;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suspect {
    pub layer: String,
    pub label: String,
    /// Least-squares slope of the layer against the bytes uploaded.
    pub slope_mib_per_gib: f64,
    /// How straight that line is (0–1).
    pub r2: f64,
    /// The layer's rise over the upload (last − first figure while uploading).
    pub growth_bytes: f64,
    /// The layer at the end of the run minus before the first upload: what was not given back.
    pub kept_bytes: Option<f64>,
    /// `leak`, `grows` (with uploads, not in a straight line) or `flat`.
    pub finding: Finding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Finding {
    /// Linear growth with the bytes uploaded.
    Leak,
    /// Grows with the uploads but not in a straight line (buffers, caches filling up).
    Grows,
    Flat,
}

/// The upload part of the run and each layer's slope against it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suspects {
    /// Bytes the server received over the run (its `bytes_received_total`).
    pub uploaded_bytes: f64,
    pub layers: Vec<Suspect>,
}

impl Suspects {
    pub fn leaks(&self) -> impl Iterator<Item = &Suspect> {
        self.layers.iter().filter(|s| s.finding == Finding::Leak)
    }
}

pub fn suspects(t: &Timeline) -> Suspects {
    let uploaded = t.col(Layer::BytesReceived);
    let (first, last) = upload_window(uploaded);
    let uploaded_bytes = match (first, last) {
        (Some(a), Some(b)) => uploaded[b].unwrap_or(0.0) - uploaded[a].unwrap_or(0.0),
        _ => 0.0,
    };
    let mut layers = Vec::new();
    if let (Some(a), Some(b)) = (first, last)
        && uploaded_bytes >= MIN_UPLOAD_BYTES
    {
        for &layer in LAYERS.iter().filter(|l| t.has(**l)) {
            let col = t.col(layer);
            let (x, y) = stats::paired(&uploaded[a..=b], &col[a..=b]);
            let x: Vec<f64> = x.iter().map(|v| v / GIB).collect();
            let y: Vec<f64> = y.iter().map(|v| v / MIB).collect();
            let Some(fit) = stats::linear_fit(&x, &y) else {
                continue;
            };
            let growth_bytes = (y.last().unwrap_or(&0.0) - y.first().unwrap_or(&0.0)) * MIB;
            let before = stats::last_at_or_before(col, a);
            let end = col.iter().rev().find_map(|v| *v);
            layers.push(Suspect {
                layer: layer.key().into(),
                label: layer.label().into(),
                slope_mib_per_gib: fit.slope,
                r2: fit.r2,
                growth_bytes,
                kept_bytes: before.zip(end).map(|(b, e)| e - b),
                finding: classify(fit, growth_bytes, uploaded_bytes),
            });
        }
    }
    Suspects {
        uploaded_bytes,
        layers,
    }
}

/// Leak: a slope worth noting, on a straight line, over enough upload and
/// growth to be more than noise. Grows: the slope without the straight line.
pub fn classify(fit: stats::Fit, growth_bytes: f64, uploaded_bytes: f64) -> Finding {
    if uploaded_bytes < MIN_UPLOAD_BYTES || fit.slope < GROWS_MIB_PER_GIB {
        Finding::Flat
    } else if fit.r2 >= LINEAR_R2 && growth_bytes >= MIN_GROWTH_BYTES {
        Finding::Leak
    } else {
        Finding::Grows
    }
}

/// The indices of the sample before the upload counter first rises and of
/// the sample where it last rises: the slope is taken over that span only, so
/// a download phase after it (counter flat, memory moving) does not blur it.
fn upload_window(counter: &[Option<f64>]) -> (Option<usize>, Option<usize>) {
    let mut prev: Option<(usize, f64)> = None;
    let (mut first, mut last) = (None, None);
    for (i, v) in counter.iter().enumerate() {
        let Some(v) = *v else { continue };
        if let Some((j, p)) = prev
            && v > p
        {
            first.get_or_insert(j);
            last = Some(i);
        }
        prev = Some((i, v));
    }
    (first, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(v: impl IntoIterator<Item = f64>) -> Vec<Option<f64>> {
        v.into_iter().map(Some).collect()
    }

    /// 2 GiB uploaded in 0.25 GiB steps after two idle samples, then a
    /// download (counter flat). Anon leaks 100 MiB per GiB on top of 30 MiB;
    /// SQLite memory is flat at 8 MiB; dirty pages step up to 40 MiB once and stay.
    #[test]
    fn a_linear_layer_is_a_leak_a_flat_one_is_not() {
        let n = 14;
        let t: Vec<f64> = (0..n).map(f64::from).collect();
        let up: Vec<f64> = (0..n)
            .map(|i| (f64::from(i) - 1.0).clamp(0.0, 8.0) * 0.25 * GIB)
            .collect();
        let anon: Vec<f64> = up.iter().map(|u| (30.0 + 100.0 * u / GIB) * MIB).collect();
        let dirty: Vec<f64> = (0..n)
            .map(|i| if i >= 2 { 40.0 * MIB } else { 0.0 })
            .collect();
        let tl = Timeline::from_columns(
            t,
            &[
                (Layer::BytesReceived, some(up)),
                (Layer::ProcessAnon, some(anon)),
                (Layer::SqliteMemory, some(vec![8.0 * MIB; 14])),
                (Layer::DirtyWriteback, some(dirty)),
            ],
        );
        let s = suspects(&tl);
        assert_eq!(s.uploaded_bytes, 2.0 * GIB);
        let find = |k: &str| s.layers.iter().find(|l| l.layer == k).unwrap();
        let anon = find("process_anon");
        assert!((anon.slope_mib_per_gib - 100.0).abs() < 1e-6, "{anon:?}");
        assert!((anon.r2 - 1.0).abs() < 1e-9);
        assert!((anon.growth_bytes - 200.0 * MIB).abs() < 1.0);
        assert_eq!(anon.kept_bytes, Some(200.0 * MIB));
        assert_eq!(anon.finding, Finding::Leak);
        let sqlite = find("sqlite_memory");
        assert_eq!((sqlite.slope_mib_per_gib, sqlite.r2), (0.0, 0.0));
        assert_eq!(sqlite.finding, Finding::Flat);
        // Window: samples 1..=9; x = 0, .25, ..., 2 GiB; dirty 0 then 40 MiB
        // from x = 0.25 on. Slope = Σdxdy/Σdx²: x̄ = 1, ȳ = 320/9;
        // Σdxdy = Σ(x−1)·y = 40·Σ_{x≥.25}(x−1) = 40·(0 − (0−1)) = 40;
        // Σdx² = 0.0625·(16+9+4+1+0+1+4+9+16) = 3.75 → 10.667 MiB/GiB,
        // r² = 40²/(3.75·Σdy²) with Σdy² = Σy² − 9ȳ² = 8·1600 − 9·(320/9)² = 1422.2 → 0.3
        let dirty = find("dirty_writeback");
        assert!(
            (dirty.slope_mib_per_gib - 40.0 / 3.75).abs() < 1e-9,
            "{dirty:?}"
        );
        assert!((dirty.r2 - 1600.0 / (3.75 * (12800.0 - 102400.0 / 9.0))).abs() < 1e-9);
        assert_eq!(dirty.finding, Finding::Grows);
    }

    #[test]
    fn too_little_upload_gives_no_slopes() {
        // 10 MiB uploaded: below MIN_UPLOAD_BYTES, whatever anon does.
        let tl = Timeline::from_columns(
            vec![0.0, 1.0, 2.0],
            &[
                (Layer::BytesReceived, some([0.0, 5.0 * MIB, 10.0 * MIB])),
                (Layer::ProcessAnon, some([1.0, 2.0 * MIB, 4.0 * MIB])),
            ],
        );
        let s = suspects(&tl);
        assert_eq!(s.uploaded_bytes, 10.0 * MIB);
        assert!(s.layers.is_empty());
    }

    #[test]
    fn no_upload_no_suspects() {
        let tl = Timeline::from_columns(
            vec![0.0, 1.0],
            &[
                (Layer::BytesReceived, some([5.0, 5.0])),
                (Layer::ProcessAnon, some([1.0, 9e9])),
            ],
        );
        let s = suspects(&tl);
        assert_eq!(s.uploaded_bytes, 0.0);
        assert!(s.layers.is_empty());
    }
}
