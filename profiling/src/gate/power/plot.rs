//! `power.svg`: detection rate against effect size, one line per sized
//! fixture with its 95 % intervals, the 90 % target and the clean gates'
//! false-alarm rate.

use plotters::prelude::*;

use super::analysis::{Analysis, Rate, TARGET_DETECTION};

const MIB: f64 = 1024.0 * 1024.0;
const SIZE: (u32, u32) = (900, 560);
const COLOURS: [RGBColor; 4] = [
    RGBColor(40, 100, 200),
    RGBColor(210, 90, 30),
    RGBColor(50, 150, 60),
    RGBColor(150, 60, 160),
];

#[derive(Debug, thiserror::Error)]
#[error("the power plot: {0}")]
pub struct PlotError(String);

/// The plot as SVG text; an error when no sized fixture was measured.
pub fn svg(a: &Analysis) -> Result<String, PlotError> {
    reports::plot::register_font().map_err(|e| PlotError(e.to_string()))?;
    let sized: Vec<_> = a.rows.iter().filter(|r| r.size_bytes.is_some()).collect();
    let sizes: Vec<f64> = sized
        .iter()
        .filter_map(|r| r.size_bytes)
        .map(|s| s as f64 / MIB)
        .collect();
    let (Some(lo), Some(hi)) = (
        sizes.iter().copied().reduce(f64::min),
        sizes.iter().copied().reduce(f64::max),
    ) else {
        return Err(PlotError("no sized fixture measured".into()));
    };
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        draw(&root, a, lo / 1.5, hi * 1.5).map_err(|e| PlotError(e.to_string()))?;
        root.present().map_err(|e| PlotError(e.to_string()))?;
    }
    Ok(out)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn draw(
    root: &Area<'_>,
    a: &Analysis,
    x_lo: f64,
    x_hi: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    let font = reports::plot::FONT;
    root.fill(&WHITE)?;
    let caption = format!(
        "Detection rate by effect size (false alarms: {}/{} clean gates)",
        a.false_alarms.flagged, a.false_alarms.gates
    );
    let mut chart = ChartBuilder::on(root)
        .caption(caption, (font, 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d((x_lo..x_hi).log_scale(), -0.02..1.05)?;
    chart
        .configure_mesh()
        .x_desc("fixture size (MiB, log scale)")
        .y_desc("share of gates flagged")
        .x_label_formatter(&|v| format!("{v:.2}"))
        .y_label_formatter(&|v| format!("{:.0} %", v * 100.0))
        .max_light_lines(0)
        .label_style((font, 13))
        .draw()?;
    let target = TARGET_DETECTION;
    chart
        .draw_series(LineSeries::new(
            [(x_lo, target), (x_hi, target)],
            BLACK.mix(0.4).stroke_width(1),
        ))?
        .label("90 % detection")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK.mix(0.4)));
    let fa = a.false_alarms.rate;
    chart
        .draw_series(LineSeries::new(
            [(x_lo, fa), (x_hi, fa)],
            RGBColor(200, 30, 30).stroke_width(1),
        ))?
        .label(format!("false-alarm rate {:.0} %", fa * 100.0))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], RGBColor(200, 30, 30)));

    let mut fixtures: Vec<&str> = a.rows.iter().filter_map(|r| r.fixture.as_deref()).collect();
    fixtures.dedup();
    for (i, name) in fixtures.into_iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        // This fixture's sizes (MiB) with their rates, in the rows' order.
        let points: Vec<(f64, u64, &Rate)> = a
            .rows
            .iter()
            .filter(|r| r.fixture.as_deref() == Some(name))
            .filter_map(|r| Some((r.size_bytes? as f64 / MIB, r.size_bytes?, &r.detection)))
            .collect();
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|&(x, _, d)| (x, d.rate)),
                colour.stroke_width(2),
            ))?
            .label(name.to_owned())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2)));
        // The 95 % interval as a bar through each measured rate.
        chart.draw_series(points.iter().map(|&(x, _, d)| {
            PathElement::new([(x, d.low), (x, d.high)], colour.stroke_width(1))
        }))?;
        chart.draw_series(
            points
                .iter()
                .map(|&(x, _, d)| Circle::new((x, d.rate), 4, colour.filled())),
        )?;
        // Each point named: its size and k/n (the log axis labels few sizes).
        chart.draw_series(points.iter().map(|&(x, bytes, d)| {
            let y = if d.rate > 0.5 {
                d.rate - 0.06
            } else {
                d.rate + 0.04
            };
            Text::new(
                format!("{} {}/{}", loadgen::ByteSize(bytes), d.flagged, d.gates),
                (x * 1.03, y),
                (font, 13).into_font().color(&colour),
            )
        }))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .label_font((font, 13))
        .draw()?;
    Ok(())
}
