//! What is drawn on a chart: lines and stacked bands of the timeline's
//! columns, shaded phases and the red lines at deaths and OOM kills.

use plotters::prelude::*;
use plotters::style::FontStyle;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::axes::Chart;
use super::legend::{Legend, Swatch};
use super::{FONT, Figure, MIB, PHASE_TINTS, RED, Result2};
use crate::load::PhaseSpan;
use crate::timeline::{Layer, Timeline};

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
pub(super) fn marks<'a, DB: DrawingBackend + 'a>(
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
pub(super) fn segments(t: &[f64], col: &[Option<f64>], scale: f64) -> Vec<Vec<(f64, f64)>> {
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

/// Draws a layer as a line (in MiB); adds it to the legend when it has figures.
pub(super) fn line<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    legend: &mut Legend,
    t: &Timeline,
    layer: Layer,
    color: RGBColor,
    width: u32,
) -> Result2<()> {
    line_of(
        chart,
        legend,
        (&t.t_s, t.col(layer)),
        layer.label(),
        color,
        width,
    )
}

/// Draws any column as a line (in MiB), labelled `label` in the legend.
pub(super) fn line_of<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    legend: &mut Legend,
    (t_s, col): (&[f64], &[Option<f64>]),
    label: &str,
    color: RGBColor,
    width: u32,
) -> Result2<()> {
    let segs = segments(t_s, col, MIB);
    if segs.is_empty() {
        return Ok(());
    }
    let style = color.stroke_width(width);
    chart
        .draw_series(segs.into_iter().map(|s| PathElement::new(s, style)))
        .map_err(|e| e.to_string())?;
    legend.push((label.to_owned(), Swatch::Line(color, width)));
    Ok(())
}

/// A filled band between two stacked levels.
pub(super) fn band<'a, DB: DrawingBackend + 'a>(
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
