//! The PNG charts: a figure per workload (or benchmark) as grouped bars, one bar per allocator,
//! normalised to the system allocator (glibc). Text is rasterised with ab_glyph from the DejaVu
//! font embedded by the `dejavu` crate, so no system font, fontconfig or freetype is needed.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

const FONT: &str = "sans-serif";

// Fixed per allocator name so a colour means the same allocator in every chart.
fn colour(alloc: &str, i: usize) -> RGBColor {
    match alloc {
        "system" | "glibc" => RGBColor(150, 150, 150),
        "hakmem" => RGBColor(214, 39, 40),
        "hakmem-checked" => RGBColor(240, 150, 150),
        "mimalloc" => RGBColor(31, 119, 180),
        "jemalloc" => RGBColor(44, 160, 44),
        "snmalloc" => RGBColor(255, 127, 14),
        "tcmalloc" => RGBColor(148, 103, 189),
        _ => {
            let (r, g, b) = Palette99::pick(i).to_rgba().rgb();
            RGBColor(r, g, b)
        }
    }
}

/// What one chart shows, beside its bars.
pub struct Chart<'a> {
    /// The title line.
    pub title: &'a str,
    /// The y axis's description.
    pub y_desc: &'a str,
    /// The grey line under the title (rounds, machine).
    pub subtitle: &'a str,
    /// The groups along the x axis, in order.
    pub workloads: &'a [&'a str],
    /// One bar per allocator in each group, in order.
    pub allocs: &'a [&'a str],
}

/// Writes `chart` to `path` (PNG); `value(workload, allocator)` is a bar's height, relative to
/// the system allocator (1 = as fast); None (a missing baseline or a failed run) leaves it out.
pub fn write_png(
    path: &Path,
    chart: &Chart,
    value: &dyn Fn(&str, &str) -> Option<f64>,
) -> Result<(), String> {
    // Registering twice is harmless; plotters keeps the last font under a name.
    register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| "embedded DejaVu font rejected".to_string())?;
    draw(path, chart, value).map_err(|e| format!("chart: {e}"))
}

fn draw(
    path: &Path,
    c: &Chart,
    value: &dyn Fn(&str, &str) -> Option<f64>,
) -> Result<(), Box<dyn std::error::Error>> {
    let (workloads, allocs) = (c.workloads, c.allocs);
    let top = workloads
        .iter()
        .flat_map(|w| allocs.iter().filter_map(move |a| value(w, a)))
        .fold(1.0f64, f64::max);
    let y_max = (top * 1.12).ceil().max(1.5);

    // Wide enough that group labels (up to ~16 characters) do not run into each other.
    let width = (workloads.len() as u32 * 130).max(1500);
    let full = BitMapBackend::new(path, (width, 720)).into_drawing_area();
    full.fill(&WHITE)?;
    // The top margin keeps the title's ascenders inside the image.
    let root = full
        .margin(8, 0, 0, 0)
        .titled(c.title, (FONT, 26).into_font())?;
    root.draw(&Text::new(
        c.subtitle.to_string(),
        (10, 0),
        (FONT, 15).into_font().color(&RGBColor(90, 90, 90)),
    ))?;

    let n = workloads.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .margin(20)
        .margin_bottom(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..n, 0f64..y_max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .y_desc(c.y_desc)
        .y_label_formatter(&|y| format!("{y:.1}x"))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 17))
        .draw()?;

    // Bars of one group fill 80% of a workload's slot, leaving a gap between workloads.
    let group = 0.8;
    let width = group / allocs.len().max(1) as f64;
    for (ai, a) in allocs.iter().enumerate() {
        let c = colour(a, ai);
        let bars = workloads.iter().enumerate().filter_map(|(wi, w)| {
            let v = value(w, a)?;
            let x0 = wi as f64 + (1.0 - group) / 2.0 + ai as f64 * width;
            Some(Rectangle::new(
                [(x0, 0.0), (x0 + width * 0.92, v)],
                c.filled(),
            ))
        });
        chart
            .draw_series(bars)?
            .label(*a)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], c.filled()));
    }
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(0.0, 1.0), (n, 1.0)],
        BLACK.stroke_width(1),
    )))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 16))
        .draw()?;

    // Workload names go under their groups, drawn on the whole image (whose coordinates are
    // the backend's) so the plot area does not clip them.
    let label = (FONT, 15)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    for (wi, w) in workloads.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(wi as f64 + 0.5, 0.0));
        full.draw(&Text::new(w.to_string(), (x, y + 8), label.clone()))?;
    }
    full.present()?;
    Ok(())
}
