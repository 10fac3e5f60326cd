//! The pictures: three panels over one time axis, drawn with plotters into
//! SVG (inlined in `report.html`, no font needed) and PNG (for CI summaries
//! and docs; text from the bundled DejaVu font, so no system font library is
//! involved).
//!
//! 1. The machine: usage and working set against the limit, over stacked
//!    anon / clean page cache / dirty+writeback: what a VM dashboard shows,
//!    split into what it means.
//! 2. Inside the process: RSS, anon RSS, the allocator's figures, SQLite.
//! 3. The data: DB and WAL sizes; bytes received and sent per second.
//!
//! Both backends lay text out with the font registered from the bundled
//! DejaVu (an SVG viewer then draws it with its own sans-serif).
//!
//! Phases are shaded and named; the server's death and OOM kills are red
//! lines across all panels.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::FontStyle;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::ReportError;
use crate::load::PhaseSpan;
use crate::timeline::{Layer, Timeline};

const MIB: f64 = 1024.0 * 1024.0;
/// One run's figure: three panels of 450 px.
pub const SIZE: (u32, u32) = (1400, 1400);
const FONT: &str = "sans-serif";

const INK: RGBColor = RGBColor(40, 40, 40);
const GRID: RGBColor = RGBColor(232, 232, 232);
const RED: RGBColor = RGBColor(200, 30, 30);
const ANON: RGBColor = RGBColor(222, 110, 90);
const CLEAN: RGBColor = RGBColor(140, 190, 225);
const DIRTY: RGBColor = RGBColor(250, 180, 80);
const WORKING_SET: RGBColor = RGBColor(120, 60, 170);
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

/// The ranges of the axes, so two runs can be drawn on the same ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Axes {
    pub t_max: f64,
    pub machine_mib: f64,
    pub process_mib: f64,
    pub files_mib: f64,
    pub rate_mib_s: f64,
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

fn max_mib(t: &Timeline, layers: impl IntoIterator<Item = Layer>) -> f64 {
    layers
        .into_iter()
        .flat_map(|l| t.col(l).iter().flatten())
        .fold(0.0, |m: f64, v| m.max(*v / MIB))
}

/// Head room above the highest figure, and never an empty range.
fn padded(v: f64) -> f64 {
    (v * 1.08).max(1.0)
}

impl Axes {
    pub fn of(fig: &Figure) -> Axes {
        let t = fig.timeline;
        let limit = fig.limit_bytes.map_or(0.0, |l| l / MIB);
        Axes {
            // A run killed in its first second still gets a readable axis.
            t_max: t.end_s().max(0.1),
            machine_mib: padded(max_mib(t, MACHINE_LINES).max(limit)),
            process_mib: padded(max_mib(t, PROCESS_LINES.map(|(l, _)| l))),
            files_mib: padded(max_mib(t, FILE_LINES.map(|(l, _)| l))),
            rate_mib_s: padded(max_mib(t, RATE_LINES.map(|(l, _)| l))),
        }
    }

    /// Axes wide enough for both.
    pub fn union(self, o: Axes) -> Axes {
        Axes {
            t_max: self.t_max.max(o.t_max),
            machine_mib: self.machine_mib.max(o.machine_mib),
            process_mib: self.process_mib.max(o.process_mib),
            files_mib: self.files_mib.max(o.files_mib),
            rate_mib_s: self.rate_mib_s.max(o.rate_mib_s),
        }
    }
}

/// plotters measures and (for PNG) draws text with a registered font; the
/// bundled DejaVu is registered once, so no system font is ever needed.
fn register_font() -> Result<(), ReportError> {
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
    machine_panel(&panels[0], fig, axes)?;
    process_panel(&panels[1], fig, axes)?;
    data_panel(&panels[2], fig, axes)?;
    Ok(())
}

/// Width of the legend column right of each panel: legends inside the plot
/// would hide the data they describe.
const LEGEND_WIDTH: i32 = 300;
/// Width of the right axis (panel 3's MiB/s).
const RIGHT_AXIS: u32 = 75;

/// How a legend entry is drawn.
#[derive(Clone, Copy)]
enum Swatch {
    Line(RGBColor, u32),
    Dashed(RGBColor),
    Fill(RGBAColor),
}

type Legend = Vec<(String, Swatch)>;

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Splits a panel into the plot and its legend column.
fn split_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
) -> (DrawingArea<DB, Shift>, DrawingArea<DB, Shift>) {
    let width = area.dim_in_pixel().0 as i32;
    area.split_horizontally(width - LEGEND_WIDTH)
}

fn chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    caption: &str,
    t_max: f64,
    y_max: f64,
    right_axis: bool,
) -> Result2<Chart<'a, DB>> {
    ChartBuilder::on(area)
        .caption(caption, (FONT, 20).into_font().color(&INK))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(75)
        // Without a right axis the same width stays empty, so all three
        // panels map time to the same pixels.
        .right_y_label_area_size(if right_axis { RIGHT_AXIS } else { 0 })
        .margin_right(if right_axis { 12 } else { 12 + RIGHT_AXIS })
        .build_cartesian_2d(0f64..t_max, 0f64..y_max)
        .map_err(|e| e.to_string())
}

/// Seconds with decimals only on short runs.
fn fmt_seconds(v: &f64, t_max: f64) -> String {
    if t_max >= 30.0 {
        format!("{v:.0}")
    } else if t_max >= 3.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn mesh<'a, DB: DrawingBackend + 'a>(chart: &mut Chart<'a, DB>, t_max: f64) -> Result2<()> {
    let x_fmt = move |v: &f64| fmt_seconds(v, t_max);
    chart
        .configure_mesh()
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(GRID)
        .x_labels(12)
        .y_labels(8)
        .axis_style(INK.mix(0.6))
        .x_desc("time since the run started (s)")
        .y_desc("MiB")
        .label_style((FONT, 14).into_font().color(&INK))
        .axis_desc_style((FONT, 15).into_font().color(&INK))
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(|e| e.to_string())
}

/// The height of a row of phase names, as a share of the panel's height.
const LABEL_ROW: f64 = 0.07;

/// The row of phase `i`'s name: the number of earlier phases still running when it starts.
fn label_row(phases: &[PhaseSpan], i: usize, end: f64) -> usize {
    let start = phases[i].start_s;
    phases[..i]
        .iter()
        .filter(|p| p.end_s.unwrap_or(end) > start)
        .count()
}

/// Shaded phases (named on the first panel) and red lines at deaths and OOM kills.
fn marks<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    fig: &Figure,
    y_max: f64,
    names: bool,
) -> Result2<()> {
    let end = fig.timeline.end_s();
    for (i, p) in fig.phases.iter().enumerate() {
        let tint = PHASE_TINTS[i % PHASE_TINTS.len()];
        let until = p.end_s.unwrap_or(end);
        // Phases that overlap (background ones) get their names on rows below each other.
        let row = label_row(fig.phases, i, end);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(p.start_s, 0.0), (until, y_max)],
                tint.mix(0.08).filled(),
            )))
            .map_err(|e| e.to_string())?;
        if names {
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{} ▸", p.name),
                    (p.start_s, y_max * (1.0 - LABEL_ROW * row as f64)),
                    (FONT, 15)
                        .into_font()
                        .style(FontStyle::Bold)
                        .color(&tint)
                        .pos(Pos::new(HPos::Left, VPos::Top)),
                )))
                .map_err(|e| e.to_string())?;
        }
    }
    let mut red = fig
        .oom_kills_at
        .iter()
        .map(|t| (*t, "OOM kill".to_owned()))
        .collect::<Vec<_>>();
    if let Some((t, label)) = &fig.death {
        // An OOM kill and the death it caused are one line, labelled once.
        red.retain(|(o, _)| (o - t).abs() > 1.0);
        red.push((*t, label.clone()));
    }
    for (t, label) in red {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(t, 0.0), (t, y_max)],
                RED.stroke_width(3),
            )))
            .map_err(|e| e.to_string())?;
        if names {
            chart
                .draw_series(std::iter::once(Text::new(
                    label,
                    (t, y_max),
                    (FONT, 16)
                        .into_font()
                        .style(FontStyle::Bold)
                        .color(&RED)
                        .pos(Pos::new(HPos::Right, VPos::Top)),
                )))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Runs of consecutive figures: a gap in the samples is a gap in the line.
fn segments(t: &[f64], col: &[Option<f64>], scale: f64) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current = Vec::new();
    for (x, v) in t.iter().zip(col) {
        match v {
            Some(v) => current.push((*x, v / scale)),
            None if !current.is_empty() => out.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Draws a column as a line (in MiB); adds it to the legend when it has figures.
fn line<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    legend: &mut Legend,
    t: &Timeline,
    layer: Layer,
    color: RGBColor,
    width: u32,
) -> Result2<()> {
    let segs = segments(&t.t_s, t.col(layer), MIB);
    if segs.is_empty() {
        return Ok(());
    }
    let style = color.stroke_width(width);
    chart
        .draw_series(segs.into_iter().map(|s| PathElement::new(s, style)))
        .map_err(|e| e.to_string())?;
    legend.push((layer.label().to_owned(), Swatch::Line(color, width)));
    Ok(())
}

/// A filled band between two stacked levels.
fn band<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    legend: &mut Legend,
    t: &[f64],
    low: &[Option<f64>],
    high: &[Option<f64>],
    label: &str,
    color: RGBColor,
) -> Result2<()> {
    let mut polys = Vec::new();
    let mut seg: Vec<(f64, f64, f64)> = Vec::new();
    let close = |seg: &[(f64, f64, f64)]| -> Vec<(f64, f64)> {
        let mut poly: Vec<(f64, f64)> = seg.iter().map(|(x, _, h)| (*x, *h)).collect();
        poly.extend(seg.iter().rev().map(|(x, l, _)| (*x, *l)));
        poly
    };
    for (x, v) in t.iter().zip(low.iter().zip(high).map(|(l, h)| l.zip(*h))) {
        match v {
            Some((l, h)) => seg.push((*x, l / MIB, h / MIB)),
            None => {
                if seg.len() > 1 {
                    polys.push(close(&seg));
                }
                seg.clear();
            }
        }
    }
    if seg.len() > 1 {
        polys.push(close(&seg));
    }
    if polys.is_empty() {
        return Ok(());
    }
    let fill = color.mix(0.75);
    chart
        .draw_series(polys.into_iter().map(|p| Polygon::new(p, fill.filled())))
        .map_err(|e| e.to_string())?;
    legend.push((label.to_owned(), Swatch::Fill(fill)));
    Ok(())
}

/// The legend column: a swatch and a label per entry, top-aligned with the plot.
fn draw_legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, legend: &Legend) -> Result2<()> {
    let font = (FONT, 15).into_font().color(&INK);
    for (i, (label, swatch)) in legend.iter().enumerate() {
        let y = 58 + i as i32 * 26;
        let (x0, x1) = (8, 40);
        match *swatch {
            Swatch::Line(c, w) => area.draw(&PathElement::new(
                vec![(x0, y), (x1, y)],
                c.stroke_width(w + 1),
            )),
            Swatch::Dashed(c) => {
                for x in [x0, x0 + 13, x0 + 26] {
                    area.draw(&PathElement::new(
                        vec![(x, y), (x + 7, y)],
                        c.stroke_width(3),
                    ))
                    .map_err(|e| e.to_string())?;
                }
                Ok(())
            }
            Swatch::Fill(c) => area.draw(&Rectangle::new([(x0, y - 8), (x1, y + 8)], c.filled())),
        }
        .map_err(|e| e.to_string())?;
        area.draw(&Text::new(
            label.clone(),
            (x1 + 10, y),
            font.pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn machine_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    fig: &Figure,
    axes: &Axes,
) -> Result2<()> {
    let t = fig.timeline;
    let (plot_area, legend_area) = split_panel(area);
    let limit = match fig.limit_bytes {
        Some(l) => format!("{:.0} MiB limit", l / MIB),
        None => "no limit".into(),
    };
    let mut legend = Legend::new();
    let mut chart = chart(
        &plot_area,
        &format!("1 · the machine: memory usage against the {limit}"),
        axes.t_max,
        axes.machine_mib,
        false,
    )?;
    mesh(&mut chart, axes.t_max)?;
    marks(&mut chart, fig, axes.machine_mib, true)?;
    // Stacked: anon, then clean page cache, then dirty + writeback on top.
    let anon = t.col(Layer::MachineAnon);
    let zero: Vec<Option<f64>> = anon.iter().map(|a| a.map(|_| 0.0)).collect();
    let add = |a: &[Option<f64>], b: &[Option<f64>]| -> Vec<Option<f64>> {
        a.iter().zip(b).map(|(a, b)| Some((*a)? + (*b)?)).collect()
    };
    let anon_clean = add(anon, t.col(Layer::PageCacheClean));
    let all = add(&anon_clean, t.col(Layer::DirtyWriteback));
    band(&mut chart, &mut legend, &t.t_s, &zero, anon, "anon", ANON)?;
    band(
        &mut chart,
        &mut legend,
        &t.t_s,
        anon,
        &anon_clean,
        "page cache (clean)",
        CLEAN,
    )?;
    band(
        &mut chart,
        &mut legend,
        &t.t_s,
        &anon_clean,
        &all,
        "dirty + writeback",
        DIRTY,
    )?;
    line(&mut chart, &mut legend, t, Layer::MachineUsage, INK, 2)?;
    line(
        &mut chart,
        &mut legend,
        t,
        Layer::MachineWorkingSet,
        WORKING_SET,
        2,
    )?;
    if let Some(l) = fig.limit_bytes {
        let y = l / MIB;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, y), (axes.t_max, y)],
                10,
                6,
                RED.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?;
        legend.push(("limit".into(), Swatch::Dashed(RED)));
    }
    if let Some((t, label)) = &fig.death {
        legend.push((format!("{label} at {t:.1} s"), Swatch::Line(RED, 3)));
    } else if !fig.oom_kills_at.is_empty() {
        legend.push(("OOM kill".into(), Swatch::Line(RED, 3)));
    }
    draw_legend(&legend_area, &legend)
}

fn process_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    fig: &Figure,
    axes: &Axes,
) -> Result2<()> {
    let t = fig.timeline;
    let (plot_area, legend_area) = split_panel(area);
    let mut legend = Legend::new();
    let mut chart = chart(
        &plot_area,
        "2 · inside the process: resident memory, allocator, SQLite",
        axes.t_max,
        axes.process_mib,
        false,
    )?;
    mesh(&mut chart, axes.t_max)?;
    marks(&mut chart, fig, axes.process_mib, false)?;
    for (layer, color) in PROCESS_LINES {
        let width = if layer == Layer::ProcessRss { 3 } else { 2 };
        line(&mut chart, &mut legend, t, layer, color, width)?;
    }
    draw_legend(&legend_area, &legend)
}

fn data_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    fig: &Figure,
    axes: &Axes,
) -> Result2<()> {
    let t = fig.timeline;
    let (plot_area, legend_area) = split_panel(area);
    let mut legend = Legend::new();
    let chart = chart(
        &plot_area,
        "3 · the data: database files (MiB, left) and traffic (MiB/s, right)",
        axes.t_max,
        axes.files_mib,
        true,
    )?;
    // The secondary axis takes the right label area; the mesh is drawn after,
    // so the primary labels stay on the left only.
    let mut chart = chart.set_secondary_coord(0f64..axes.t_max, 0f64..axes.rate_mib_s);
    mesh(&mut chart, axes.t_max)?;
    chart
        .configure_secondary_axes()
        .y_desc("MiB/s")
        .axis_style(INK.mix(0.6))
        .label_style((FONT, 14).into_font().color(&INK))
        .axis_desc_style((FONT, 15).into_font().color(&INK))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(|e| e.to_string())?;
    marks(&mut chart, fig, axes.files_mib, false)?;
    for (layer, color) in FILE_LINES {
        line(&mut chart, &mut legend, t, layer, color, 3)?;
    }
    for (layer, color) in RATE_LINES {
        let segs = segments(&t.t_s, t.col(layer), MIB);
        if segs.is_empty() {
            continue;
        }
        let style = color.stroke_width(2);
        chart
            .draw_secondary_series(segs.into_iter().map(|s| PathElement::new(s, style)))
            .map_err(|e| e.to_string())?;
        legend.push((
            format!("{} (MiB/s, right)", layer.label()),
            Swatch::Line(color, 2),
        ));
    }
    draw_legend(&legend_area, &legend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_split_lines() {
        let t = [0.0, 1.0, 2.0, 3.0, 4.0];
        let col = [Some(MIB), None, Some(2.0 * MIB), Some(3.0 * MIB), None];
        assert_eq!(
            segments(&t, &col, MIB),
            vec![vec![(0.0, 1.0)], vec![(2.0, 2.0), (3.0, 3.0)]]
        );
    }
}
