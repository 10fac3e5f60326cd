//! The pictures: three panels over one time axis, drawn with plotters into
//! SVG (inlined in `report.html`, no font needed) and PNG (for CI summaries
//! and docs; text from the bundled DejaVu font, so no system font library is
//! involved).
//!
//! 1. The machine: usage and working set against the limit, over stacked
//!    anon / clean page cache / dirty+writeback: what a VM dashboard shows,
//!    split into what it means; with a wrapper beside the server, each
//!    process's anon.
//! 2. Inside the process: RSS, anon RSS, the allocator's figures, SQLite.
//! 3. The data: DB and WAL sizes; bytes received and sent per second.
//!
//! Both backends lay text out with the font registered from the bundled
//! DejaVu (an SVG viewer then draws it with its own sans-serif).
//!
//! Phases are shaded and named; the server's death and OOM kills are red
//! lines across all panels.
//!
//! Modules: [`axes`] (ranges, charts and their mesh), [`series`] (lines,
//! bands, phase and death marks), [`legend`] and [`panels`] (the three panels).

mod axes;
mod legend;
mod panels;
mod series;

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

pub use axes::Axes;

use crate::error::ReportError;
use crate::load::PhaseSpan;
use crate::timeline::{Layer, Timeline};

const MIB: f64 = 1024.0 * 1024.0;
/// One run's figure: three panels of 450 px.
pub const SIZE: (u32, u32) = (1400, 1400);
pub const FONT: &str = "sans-serif";

const INK: RGBColor = RGBColor(40, 40, 40);
const GRID: RGBColor = RGBColor(232, 232, 232);
const RED: RGBColor = RGBColor(200, 30, 30);
const ANON: RGBColor = RGBColor(222, 110, 90);
const CLEAN: RGBColor = RGBColor(140, 190, 225);
const DIRTY: RGBColor = RGBColor(250, 180, 80);
const WORKING_SET: RGBColor = RGBColor(120, 60, 170);
/// The anon lines of the group's processes (panel 1).
const GROUP_TINTS: [RGBColor; 3] = [
    RGBColor(160, 40, 20),
    RGBColor(20, 120, 120),
    RGBColor(120, 120, 20),
];
const PHASE_TINTS: [RGBColor; 3] = [
    RGBColor(70, 130, 180),
    RGBColor(60, 160, 90),
    RGBColor(190, 140, 40),
];

/// What one run's figure shows.
pub struct Figure<'a> {
    pub title: String,
    pub timeline: &'a Timeline,
    pub phases: &'a [PhaseSpan],
    pub limit_bytes: Option<f64>,
    /// When the server died and a short label (`OOM kill`, `killed by signal 6`).
    pub death: Option<(f64, String)>,
    /// When the OOM kill count rose (each rise once).
    pub oom_kills_at: Vec<f64>,
}

const MACHINE_LINES: [Layer; 4] = [
    Layer::MachineUsage,
    Layer::MachineWorkingSet,
    Layer::MachineLimit,
    Layer::PageCache,
];
const PROCESS_LINES: [(Layer, RGBColor); 7] = [
    (Layer::ProcessRss, RGBColor(30, 30, 30)),
    (Layer::ProcessAnon, RGBColor(210, 60, 50)),
    (Layer::AllocatorAllocated, RGBColor(40, 100, 200)),
    (Layer::AllocatorActive, RGBColor(30, 170, 190)),
    (Layer::AllocatorResident, RGBColor(50, 150, 60)),
    (Layer::AllocatorRetained, RGBColor(150, 150, 150)),
    (Layer::SqliteMemory, RGBColor(230, 140, 20)),
];
const FILE_LINES: [(Layer, RGBColor); 2] = [
    (Layer::DbFile, RGBColor(90, 90, 90)),
    (Layer::WalFile, RGBColor(150, 80, 170)),
];
const RATE_LINES: [(Layer, RGBColor); 2] = [
    (Layer::ReceiveRate, RGBColor(40, 100, 200)),
    (Layer::SendRate, RGBColor(50, 160, 70)),
];

/// plotters measures and (for PNG) draws text with a registered font; the
/// bundled DejaVu is registered once, so no system font is ever needed.
pub fn register_font() -> Result<(), ReportError> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
            && plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold()).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(plot_error("the bundled font", "DejaVu Sans did not load"))
    }
}

fn plot_error(what: &str, detail: impl std::fmt::Display) -> ReportError {
    ReportError::Plot {
        what: what.into(),
        detail: detail.to_string(),
    }
}

/// One or more runs side by side, as SVG text.
pub fn svg(figs: &[(&Figure, Axes)]) -> Result<String, ReportError> {
    // Text layout (legend boxes, centred titles) measures glyphs even for SVG.
    register_font()?;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size(figs.len())).into_drawing_area();
        draw_columns(&root, figs).map_err(|e| plot_error("the SVG plot", e))?;
        root.present().map_err(|e| plot_error("the SVG plot", e))?;
    }
    Ok(out)
}

/// One or more runs side by side, as a PNG file.
pub fn png(figs: &[(&Figure, Axes)], path: &Path) -> Result<(), ReportError> {
    register_font()?;
    let what = path.display().to_string();
    let root = BitMapBackend::new(path, size(figs.len())).into_drawing_area();
    draw_columns(&root, figs).map_err(|e| plot_error(&what, e))?;
    root.present().map_err(|e| plot_error(&what, e))
}

fn size(columns: usize) -> (u32, u32) {
    (SIZE.0 * columns.max(1) as u32, SIZE.1)
}

type Result2<T> = Result<T, String>;

fn draw_columns<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    figs: &[(&Figure, Axes)],
) -> Result2<()> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let columns = root.split_evenly((1, figs.len().max(1)));
    for (area, (fig, axes)) in columns.iter().zip(figs) {
        draw_figure(area, fig, axes)?;
    }
    Ok(())
}

fn draw_figure<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    fig: &Figure,
    axes: &Axes,
) -> Result2<()> {
    let area = area
        .margin(12, 0, 0, 0)
        .titled(
            &fig.title,
            (FONT, 26).into_font().style(FontStyle::Bold).color(&INK),
        )
        .map_err(|e| e.to_string())?;
    let panels = area.split_evenly((3, 1));
    panels::machine(&panels[0], fig, axes)?;
    panels::process(&panels[1], fig, axes)?;
    panels::data(&panels[2], fig, axes)?;
    Ok(())
}
