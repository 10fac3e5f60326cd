//! The ranges of the axes and the charts drawn on them: one time axis shared
//! by the panels, MiB on the left, MiB/s on panel 3's right.

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::{
    FILE_LINES, FONT, Figure, GRID, INK, MACHINE_LINES, MIB, PROCESS_LINES, RATE_LINES, Result2,
};
use crate::timeline::{Layer, Timeline};

/// The ranges of the axes, so two runs can be drawn on the same ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Axes {
    pub t_max: f64,
    pub machine_mib: f64,
    pub process_mib: f64,
    pub files_mib: f64,
    pub rate_mib_s: f64,
}

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

/// Width of the legend column right of each panel: legends inside the plot
/// would hide the data they describe.
pub(super) const LEGEND_WIDTH: i32 = 300;
/// Width of the right axis (panel 3's MiB/s).
pub(super) const RIGHT_AXIS: u32 = 75;

pub(super) type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Splits a panel into the plot and its legend column.
pub(super) fn split_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
) -> (DrawingArea<DB, Shift>, DrawingArea<DB, Shift>) {
    let width = area.dim_in_pixel().0 as i32;
    area.split_horizontally(width - LEGEND_WIDTH)
}

pub(super) fn chart<'a, DB: DrawingBackend>(
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

pub(super) fn mesh<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    t_max: f64,
) -> Result2<()> {
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
