//! The legend column right of each panel.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{FONT, INK, Result2};

/// How a legend entry is drawn.
#[derive(Clone, Copy)]
pub(super) enum Swatch {
    Line(RGBColor, u32),
    Dashed(RGBColor),
    Fill(RGBAColor),
}

pub(super) type Legend = Vec<(String, Swatch)>;

/// The legend column: a swatch and a label per entry, top-aligned with the plot.
pub(super) fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    legend: &Legend,
) -> Result2<()> {
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
