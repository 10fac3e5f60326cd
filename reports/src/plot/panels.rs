//! The three panels: the machine, inside the process, the data.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::axes::{Axes, chart, mesh, split_panel};
use super::legend::{Legend, Swatch, draw_legend};
use super::series::{band, line, line_of, marks, segments};
use super::{
    ANON, CLEAN, DIRTY, FILE_LINES, FONT, Figure, GROUP_TINTS, INK, MIB, PROCESS_LINES, RATE_LINES,
    RED, Result2, WORKING_SET,
};
use crate::timeline::Layer;

pub(super) fn machine<DB: DrawingBackend>(
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
    // With more than the server in the group (a wrapper), each one's anon.
    if t.processes.len() > 1 {
        for (i, (name, col)) in t.processes.iter().enumerate() {
            let tint = GROUP_TINTS[i % GROUP_TINTS.len()];
            line_of(
                &mut chart,
                &mut legend,
                (&t.t_s, col),
                &format!("anon: {name}"),
                tint,
                2,
            )?;
        }
    }
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

pub(super) fn process<DB: DrawingBackend>(
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

pub(super) fn data<DB: DrawingBackend>(
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
