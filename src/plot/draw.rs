//! Drawing the figure with plotters, on any back end (SVG or PNG).
//!
//! Layout, top to bottom: title; a legend strip shared by all panels (run
//! colours, the Lmin/Lmax band, what was left out); then the chosen panels
//! stacked on one time axis so a size spike lines up with the interval
//! change it caused.

use std::ops::Range;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::plot::font::FAMILY;
use crate::plot::series::{
    clipped_count, panel_series, step_points, y_axis, Panel, PanelSeries, YAxis,
};
use crate::plot::PlotOptions;
use crate::report::rows::{is_live_round, selected_rows, IntervalSource, BYTES_PER_MIB};
use crate::row::Row;
use crate::units::format_bytes;

/// Okabe-Ito colours: distinct for readers with colour-vision deficiency
/// and in greyscale print; the band's green is kept out of this list.
const RUN_COLORS: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(240, 228, 66),
];
const BAND_FILL: RGBColor = RGBColor(0, 158, 115);
const BAND_EDGE: RGBColor = RGBColor(0, 110, 80);
const NOTE_GREY: RGBColor = RGBColor(90, 90, 90);

const TITLE_PX: u32 = 22;
const CAPTION_PX: u32 = 17;
const AXIS_DESC_PX: u32 = 15;
const TICK_PX: u32 = 14;
const LEGEND_PX: u32 = 15;
const LEGEND_LINE_HEIGHT_PX: i32 = 26;
/// Right margin of every panel (equal, so time axes line up), wide enough
/// for the Lmin/Lmax labels beside the size panel.
const BAND_LABEL_MARGIN_PX: u32 = 70;
/// Runs with at most this many points also get markers; denser runs would
/// turn into a smear of dots.
const MARKER_MAX_POINTS: usize = 150;
/// Width of the run curves, in pixels.
const CURVE_WIDTH_PX: u32 = 2;
/// Sharpest corner (degrees between the two segments) left inside one
/// stroked path; see [`stroke_pieces`].
const MIN_JOIN_ANGLE_DEG: f64 = 60.0;
/// Height of one two-line band-edge label ("Lmax" over "16 MiB").
// Reason: TICK_PX is a small constant (14); `try_from` is not const.
#[allow(clippy::cast_possible_wrap)]
const BAND_LABEL_BLOCK_PX: i32 = 2 * TICK_PX as i32 + 4;
/// Size of the triangles that mark values clipped to the top edge.
const CLIP_MARKER_PX: u32 = 5;

/// How the `index`-th run is stroked: runs 1-7 get the seven colours as
/// solid lines, runs 8-14 the same colours dashed, 15-21 dotted, and
/// every further seven a longer dash: no two runs share a style.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunStyle {
    pub color: RGBColor,
    /// `None`: solid; else (dash, gap) in pixels.
    pub dash_px: Option<(u32, u32)>,
}

pub fn run_style(index: usize) -> RunStyle {
    let round = index / RUN_COLORS.len();
    let dash_px = match round {
        0 => None,
        1 => Some((10, 6)),
        2 => Some((3, 4)),
        // 16, 20, 24, ... px dashes.
        _ => {
            let extra = u32::try_from(round - 3).unwrap_or(u32::MAX);
            Some((extra.saturating_mul(4).saturating_add(16), 6))
        }
    };
    RunStyle {
        color: RUN_COLORS[index % RUN_COLORS.len()],
        dash_px,
    }
}

fn drawing<E: std::fmt::Debug>(err: E) -> anyhow::Error {
    anyhow!("drawing the figure failed: {err:?}")
}

fn style(size_px: u32, color: RGBColor) -> TextStyle<'static> {
    TextStyle {
        color: color.to_backend_color(),
        ..TextStyle::from((FAMILY, size_px).into_font())
    }
}

/// Tick labels without float noise: `0.30000000000000004` becomes `0.3`.
fn tick_label(value: &f64) -> String {
    let magnitude = value.abs();
    let text = if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// Band edges as people set them: `16 MiB`, not `16.0MiB`. plotters'
/// embedded-font renderer draws a small `.` faintly, so whole MiB go
/// without one; other sizes fall back to [`format_bytes`].
pub fn band_edge_label(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    if bytes > 0 && bytes % MIB == 0 {
        format!("{} MiB", bytes / MIB)
    } else {
        format_bytes(bytes)
    }
}

/// The legend note naming runs without a checkpoint (an empty run is a
/// valid run: it is drawn with nothing on its axes).
pub const NO_CHECKPOINTS: &str = "no checkpoints";

/// Default title naming the runs compared.
pub fn default_title(runs: &[(String, Vec<Row>)]) -> String {
    let labels: Vec<&str> = runs.iter().map(|(label, _)| label.as_str()).collect();
    format!("Per-checkpoint cost over time: {}", labels.join(" vs "))
}

/// Shared time axis: from 0 (or the earliest point) to the last point;
/// 0..1 s when there is no point at all (every run empty: the figure is
/// drawn with empty axes and says so in its legend).
fn time_range(runs: &[(String, Vec<Row>)], opts: &PlotOptions) -> Range<f64> {
    let times = runs.iter().flat_map(|(_, rows)| {
        opts.panels
            .iter()
            .flat_map(|panel| panel_series(*panel, rows, opts.include_live).points)
            .map(|(t_s, _)| t_s)
            .collect::<Vec<_>>()
    });
    let (min_s, max_s) = times.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), t| {
        (lo.min(t), hi.max(t))
    });
    if !min_s.is_finite() || !max_s.is_finite() {
        return 0.0..1.0;
    }
    let start_s = min_s.min(0.0);
    let end_s = if max_s > start_s {
        max_s
    } else {
        start_s + 1.0
    };
    start_s..end_s
}

enum LegendEntry {
    Run(RunStyle, String),
    Band(String),
    Note(String),
}

fn legend_entries(runs: &[(String, Vec<Row>)], opts: &PlotOptions) -> Vec<LegendEntry> {
    let mut entries: Vec<LegendEntry> = runs
        .iter()
        .enumerate()
        .map(|(i, (label, _))| LegendEntry::Run(run_style(i), label.clone()))
        .collect();
    if opts.panels.contains(&Panel::Size) {
        entries.push(LegendEntry::Band(format!(
            "Lmin-Lmax band [{}, {}]",
            band_edge_label(opts.lmin_bytes),
            band_edge_label(opts.lmax_bytes)
        )));
    }
    let empty: Vec<&str> = runs
        .iter()
        .filter(|(_, rows)| selected_rows(rows, opts.include_live).is_empty())
        .map(|(label, _)| label.as_str())
        .collect();
    if !empty.is_empty() {
        entries.push(LegendEntry::Note(format!(
            "{}: {}",
            NO_CHECKPOINTS,
            empty.join(", ")
        )));
    }
    if !opts.include_live {
        let left_out: Vec<String> = runs
            .iter()
            .flat_map(|(label, rows)| {
                rows.iter()
                    .filter(|row| is_live_round(row))
                    .map(move |row| format!("{label} {}", format_bytes(row.size_bytes)))
            })
            .collect();
        if !left_out.is_empty() {
            entries.push(LegendEntry::Note(format!(
                "initial live round not shown ({})",
                left_out.join(", ")
            )));
        }
    }
    entries
}

/// A legend label, left-aligned and vertically centred on `at`.
fn legend_text<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    label: &str,
    at: (i32, i32),
) -> Result<()> {
    area.draw(&Text::new(
        label.to_string(),
        at,
        style(LEGEND_PX, BLACK).pos(Pos::new(HPos::Left, VPos::Center)),
    ))
    .map_err(drawing)?;
    Ok(())
}

/// Lays entries out left to right, wrapping; returns positions and height.
fn legend_layout<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
) -> Result<(Vec<(i32, i32)>, i32)> {
    let (width_px, _) = area.dim_in_pixel();
    let width_px = i32::try_from(width_px).unwrap_or(i32::MAX);
    let text_style = style(LEGEND_PX, BLACK);
    let left_px: i32 = 20;
    let (mut x, mut y) = (left_px, LEGEND_LINE_HEIGHT_PX / 2);
    let mut positions = Vec::with_capacity(entries.len());
    for entry in entries {
        let (text, swatch_px) = match entry {
            LegendEntry::Run(_, text) | LegendEntry::Band(text) => (text, 36),
            LegendEntry::Note(text) => (text, 0),
        };
        let (text_w, _) = area
            .estimate_text_size(text, &text_style)
            .map_err(drawing)?;
        let text_w = i32::try_from(text_w).unwrap_or(i32::MAX);
        let entry_w = text_w.saturating_add(swatch_px + 28);
        if x > left_px && x.saturating_add(entry_w) > width_px - 10 {
            x = left_px;
            y += LEGEND_LINE_HEIGHT_PX;
        }
        positions.push((x, y));
        x = x.saturating_add(entry_w);
    }
    Ok((positions, y + LEGEND_LINE_HEIGHT_PX / 2 + 4))
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
    positions: &[(i32, i32)],
) -> Result<()> {
    let left_middle = Pos::new(HPos::Left, VPos::Center);
    for (entry, &(x, y)) in entries.iter().zip(positions) {
        match entry {
            LegendEntry::Run(run, label) => {
                let swatch = vec![(x, y), (x + 28, y)];
                let stroke = run.color.stroke_width(3);
                match run.dash_px {
                    None => area.draw(&PathElement::new(swatch, stroke)),
                    Some((dash, gap)) => area.draw(&plotters::element::DashedPathElement::new(
                        swatch, dash, gap, stroke,
                    )),
                }
                .map_err(drawing)?;
                legend_text(area, label, (x + 36, y))?;
            }
            LegendEntry::Band(label) => {
                area.draw(&Rectangle::new(
                    [(x, y - 8), (x + 28, y + 8)],
                    BAND_FILL.mix(0.18).filled(),
                ))
                .map_err(drawing)?;
                area.draw(&Rectangle::new(
                    [(x, y - 8), (x + 28, y + 8)],
                    BAND_EDGE.stroke_width(1),
                ))
                .map_err(drawing)?;
                legend_text(area, label, (x + 36, y))?;
            }
            LegendEntry::Note(text) => {
                area.draw(&Text::new(
                    text.clone(),
                    (x, y),
                    style(LEGEND_PX, NOTE_GREY).pos(left_middle),
                ))
                .map_err(drawing)?;
            }
        }
    }
    Ok(())
}

fn panel_caption(
    panel: Panel,
    runs: &[(String, Vec<Row>)],
    series: &[PanelSeries],
    axis: YAxis,
) -> String {
    let from_period: Vec<&str> = runs
        .iter()
        .zip(series)
        .filter(|(_, s)| s.interval_source == Some(IntervalSource::PeriodMs))
        .map(|((label, _), _)| label.as_str())
        .collect();
    let mut caption = if panel == Panel::Interval && !from_period.is_empty() {
        format!(
            "{} (measured period for runs without a gate: {})",
            panel.caption(),
            from_period.join(", ")
        )
    } else {
        panel.caption().to_string()
    };
    if axis.clipped > 0 {
        // Say what was clipped, per run, so a reader never takes the edge
        // for the data: the triangles on the edge show where.
        let per_run: Vec<String> = runs
            .iter()
            .zip(series)
            .map(|((label, _), s)| {
                let values: Vec<f64> = s.points.iter().map(|(_, y)| *y).collect();
                (label, clipped_count(&values, axis.top))
            })
            .filter(|(_, count)| *count > 0)
            .map(|(label, count)| format!("{label} {count}"))
            .collect();
        caption.push_str(&format!(
            "; above {}, marked on the top edge: {}",
            tick_label(&axis.top),
            per_run.join(", ")
        ));
    }
    caption
}

/// Splits a polyline, given in backend pixels, into index ranges that
/// share their end points and have no corner sharper than
/// [`MIN_JOIN_ANGLE_DEG`].
///
/// Why: plotters (0.3.7, `plotters-backend` `rasterizer::path`) strokes a
/// path wider than 1 px on bitmaps by offsetting each segment and meeting
/// neighbours at the intersection of the offset lines, and caps that miter
/// only on the outer side of a corner. On the inner side of a near
/// reversal (a noisy rate that jumps up and straight back down) the
/// intersection lies arbitrarily far away, and the filled polygon becomes
/// a thin spike that leaves the panel (seen at the phase changes of the
/// dirty-rate panel). Splitting at such corners leaves only joins whose
/// miter is at most `width / (2 sin 30°)` = the stroke width. The SVG back
/// end hands the path to the viewer, which limits miters itself; it gets
/// the same pieces, drawn identically.
///
/// Repeated pixels are skipped when measuring corners, as plotters does.
pub fn stroke_pieces(pixels: &[(i32, i32)]) -> Vec<Range<usize>> {
    if pixels.len() < 2 {
        return std::iter::once(0..pixels.len()).collect();
    }
    let max_cos = MIN_JOIN_ANGLE_DEG.to_radians().cos();
    let mut pieces = Vec::new();
    let mut start = 0;
    // The last two distinct pixels of the current piece, by index.
    let mut before: Option<usize> = None;
    let mut corner = 0;
    for next in 1..pixels.len() {
        if pixels[next] == pixels[corner] {
            continue;
        }
        if let Some(prev) = before {
            let (a, b, c) = (pixels[prev], pixels[corner], pixels[next]);
            let back = (f64::from(a.0 - b.0), f64::from(a.1 - b.1));
            let ahead = (f64::from(c.0 - b.0), f64::from(c.1 - b.1));
            let lengths = back.0.hypot(back.1) * ahead.0.hypot(ahead.1);
            let cos = (back.0 * ahead.0 + back.1 * ahead.1) / lengths;
            if cos > max_cos {
                // The corner pixel repeats up to `next - 1`: end the piece
                // there and start the next one from the same pixel.
                pieces.push(start..next);
                start = next - 1;
                before = Some(next - 1);
                corner = next;
                continue;
            }
        }
        before = Some(corner);
        corner = next;
    }
    pieces.push(start..pixels.len());
    pieces
}

/// Centre heights (pixels) of the Lmax and Lmin label blocks beside lines
/// at `lmax_y` and `lmin_y` (`lmax_y <= lmin_y`, y grows downwards). Each
/// block is centred on its line unless the two would overlap; then they
/// are pushed apart, Lmax up and Lmin down, to touch but not overlap.
pub fn band_label_centres(lmax_y: i32, lmin_y: i32, block_px: i32) -> (i32, i32) {
    let gap = lmin_y - lmax_y;
    if gap >= block_px {
        return (lmax_y, lmin_y);
    }
    let missing = block_px - gap;
    let up = (missing + 1) / 2;
    (lmax_y - up, lmin_y + (missing - up))
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: Panel,
    runs: &[(String, Vec<Row>)],
    opts: &PlotOptions,
    x_range: Range<f64>,
    is_bottom: bool,
) -> Result<()> {
    let series: Vec<PanelSeries> = runs
        .iter()
        .map(|(_, rows)| panel_series(panel, rows, opts.include_live))
        .collect();
    let lmin_mib = opts.lmin_bytes as f64 / BYTES_PER_MIB;
    let lmax_mib = opts.lmax_bytes as f64 / BYTES_PER_MIB;
    let values: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|(_, y)| *y))
        .collect();
    let axis = y_axis(&values, panel.y_rule(lmax_mib));
    let y_top = axis.top;

    let mut chart = ChartBuilder::on(area)
        .caption(
            panel_caption(panel, runs, &series, axis),
            style(CAPTION_PX, BLACK),
        )
        .margin(6)
        .margin_right(BAND_LABEL_MARGIN_PX)
        .x_label_area_size(if is_bottom { 48 } else { 26 })
        .y_label_area_size(86)
        .build_cartesian_2d(x_range.clone(), 0.0..y_top)
        .map_err(drawing)?;
    let mut mesh = chart.configure_mesh();
    mesh.y_desc(panel.y_label())
        .label_style(style(TICK_PX, BLACK))
        .axis_desc_style(style(AXIS_DESC_PX, BLACK))
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(215, 215, 215))
        .x_label_formatter(&tick_label)
        .y_label_formatter(&tick_label)
        .x_labels(12)
        .y_labels(6);
    if is_bottom {
        mesh.x_desc("time since the first record (s)");
    }
    mesh.draw().map_err(drawing)?;

    if panel == Panel::Size {
        let (x0, x1) = (x_range.start, x_range.end);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x0, lmin_mib), (x1, lmax_mib)],
                BAND_FILL.mix(0.18).filled(),
            )))
            .map_err(drawing)?;
        let (base_x, base_y) = area.get_base_pixel();
        let (_, lmax_y) = chart.backend_coord(&(x1, lmax_mib));
        let (_, lmin_y) = chart.backend_coord(&(x1, lmin_mib));
        let (lmax_centre, lmin_centre) = band_label_centres(lmax_y, lmin_y, BAND_LABEL_BLOCK_PX);
        for (name, bytes, mib, centre_y) in [
            ("Lmax", opts.lmax_bytes, lmax_mib, lmax_centre),
            ("Lmin", opts.lmin_bytes, lmin_mib, lmin_centre),
        ] {
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(x0, mib), (x1, mib)],
                    8,
                    5,
                    BAND_EDGE.stroke_width(1),
                ))
                .map_err(drawing)?;
            // Labelled in the right margin, outside the data, so no curve
            // ever hides which line is which edge. A thin band would stack
            // the two labels on each other, so they are moved apart
            // (`band_label_centres`) and a short leader ties each label
            // to its line.
            let (edge_x, edge_y) = chart.backend_coord(&(x1, mib));
            let (edge_x, edge_y) = (edge_x - base_x, edge_y - base_y);
            let (label_x, label_y) = (edge_x + 8, centre_y - base_y);
            if label_y != edge_y {
                area.draw(&PathElement::new(
                    vec![
                        (edge_x, edge_y),
                        (edge_x + 3, edge_y),
                        (label_x - 4, label_y),
                    ],
                    BAND_EDGE.stroke_width(1),
                ))
                .map_err(drawing)?;
            }
            area.draw(&Text::new(
                name.to_string(),
                (label_x, label_y - 1),
                style(TICK_PX, BAND_EDGE).pos(Pos::new(HPos::Left, VPos::Bottom)),
            ))
            .map_err(drawing)?;
            area.draw(&Text::new(
                band_edge_label(bytes),
                (label_x, label_y + 1),
                style(TICK_PX, BAND_EDGE).pos(Pos::new(HPos::Left, VPos::Top)),
            ))
            .map_err(drawing)?;
        }
    }

    for (index, run) in series.iter().enumerate() {
        let RunStyle { color, dash_px } = run_style(index);
        // Values above the axis are drawn on its top edge: plotters does
        // not clip to the plotting area, so they would otherwise be drawn
        // over the panel above.
        let on_axis = |&(t_s, y): &(f64, f64)| (t_s, y.min(y_top));
        let points: Vec<(f64, f64)> = run.points.iter().map(on_axis).collect();
        let line = if panel == Panel::Interval {
            step_points(&points)
        } else {
            points.clone()
        };
        let pixels: Vec<(i32, i32)> = line.iter().map(|p| chart.backend_coord(p)).collect();
        for piece in stroke_pieces(&pixels) {
            let piece = line[piece].iter().copied();
            let stroke = color.stroke_width(CURVE_WIDTH_PX);
            match dash_px {
                None => chart.draw_series(LineSeries::new(piece, stroke)),
                Some((dash, gap)) => {
                    chart.draw_series(DashedLineSeries::new(piece, dash, gap, stroke))
                }
            }
            .map_err(drawing)?;
        }
        if run.points.len() <= MARKER_MAX_POINTS {
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|&point| Circle::new(point, 3, color.filled())),
                )
                .map_err(drawing)?;
        }
        chart
            .draw_series(
                run.points
                    .iter()
                    .filter(|(_, y)| y.is_finite() && *y > y_top)
                    .map(|&(t_s, _)| {
                        TriangleMarker::new((t_s, y_top), CLIP_MARKER_PX, color.filled())
                    }),
            )
            .map_err(drawing)?;
    }
    Ok(())
}

/// Draws the whole figure on `root`; the caller presents (writes) it.
pub fn draw_figure<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    runs: &[(String, Vec<Row>)],
    opts: &PlotOptions,
) -> Result<()> {
    let x_range = time_range(runs, opts);
    root.fill(&WHITE).map_err(drawing)?;
    let title = opts.title.clone().unwrap_or_else(|| default_title(runs));
    let body = root
        .titled(&title, style(TITLE_PX, BLACK))
        .map_err(drawing)?;

    let entries = legend_entries(runs, opts);
    let (positions, legend_height_px) = legend_layout(&body, &entries)?;
    let (legend_area, panels_area) = body.split_vertically(legend_height_px);
    draw_legend(&legend_area, &entries, &positions)?;

    let panel_areas = panels_area.split_evenly((opts.panels.len(), 1));
    for (index, (panel, area)) in opts.panels.iter().zip(&panel_areas).enumerate() {
        draw_panel(
            area,
            *panel,
            runs,
            opts,
            x_range.clone(),
            index + 1 == opts.panels.len(),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_run_has_its_own_style() {
        // Before: run 8 was drawn exactly like run 1 (the palette cycled).
        let styles: Vec<RunStyle> = (0..50).map(run_style).collect();
        for (i, a) in styles.iter().enumerate() {
            for (j, b) in styles.iter().enumerate().skip(i + 1) {
                assert_ne!(a, b, "runs {i} and {j}");
            }
        }
        assert!(styles[..RUN_COLORS.len()]
            .iter()
            .all(|s| s.dash_px.is_none()));
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick_label(&0.30000000000000004), "0.3");
        assert_eq!(tick_label(&1500.0), "1500");
        assert_eq!(tick_label(&2.5), "2.5");
        assert_eq!(tick_label(&0.0), "0");
        assert_eq!(tick_label(&16.0), "16");
    }

    #[test]
    fn sharp_corners_split_the_stroke() {
        // Up, then straight back down one pixel to the right: split at the
        // top, where plotters would draw a spike.
        let spike = [(0, 100), (10, 100), (11, 0), (12, 100), (20, 100)];
        assert_eq!(stroke_pieces(&spike), vec![0..3, 2..5]);
        // Right angles (interval steps) and straight runs stay whole, and
        // repeated pixels do not count as corners.
        let steps = [(0, 50), (10, 50), (10, 50), (10, 20), (30, 20)];
        assert_eq!(stroke_pieces(&steps), vec![0..5]);
        // A reversal after a repeated corner pixel starts from the repeat.
        let back = [(0, 0), (5, 0), (5, 0), (0, 1)];
        assert_eq!(stroke_pieces(&back), vec![0..3, 2..4]);
        assert_eq!(stroke_pieces(&[(1, 1)]), vec![0..1]);
        assert_eq!(stroke_pieces(&[]), vec![0..0]);
    }

    #[test]
    fn band_labels_never_overlap() {
        assert_eq!(band_label_centres(100, 200, 32), (100, 200));
        assert_eq!(band_label_centres(100, 132, 32), (100, 132));
        assert_eq!(band_label_centres(100, 120, 32), (94, 126));
        assert_eq!(band_label_centres(100, 101, 32), (84, 116));
        assert_eq!(band_label_centres(100, 100, 32), (84, 116));
    }

    #[test]
    fn band_edges_in_whole_mib() {
        assert_eq!(band_edge_label(16 << 20), "16 MiB");
        assert_eq!(band_edge_label(1536 << 10), "1.5MiB");
    }
}
