//! What each panel shows, as data: pure functions from rows to points, so
//! the numbers on a figure can be tested without looking at pixels.

use crate::report::rows::{
    dirty_rate_per_s, interval_points, selected_rows, IntervalSource, BYTES_PER_MIB,
};
use crate::report::summary::nearest_rank;
use crate::row::Row;

/// One stacked panel of the figure; all share the time axis (`t_s`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Panel {
    /// Checkpoint size (MiB) against the shaded Lmin/Lmax band.
    Size,
    /// Interval the controller chose (ms).
    Interval,
    /// Guest pause per checkpoint (ms).
    Pause,
    /// Dirty pages per second of run time.
    Dirty,
}

impl Panel {
    /// All panels, top to bottom, in the order the thesis figure uses.
    pub const ALL: [Panel; 4] = [Panel::Size, Panel::Interval, Panel::Pause, Panel::Dirty];

    /// Y axis label, with the unit.
    pub fn y_label(self) -> &'static str {
        match self {
            Panel::Size => "checkpoint size (MiB)",
            Panel::Interval => "interval (ms)",
            Panel::Pause => "pause (ms)",
            Panel::Dirty => "dirty pages/s",
        }
    }

    /// One line above the panel saying what is plotted.
    pub fn caption(self) -> &'static str {
        match self {
            Panel::Size => "Checkpoint size per checkpoint, against the [Lmin, Lmax] band",
            Panel::Interval => "Checkpoint interval the controller chose",
            Panel::Pause => "Guest pause per checkpoint",
            Panel::Dirty => "Dirty-page rate: dirty pages / period since the previous checkpoint",
        }
    }

    /// How this panel picks its y range (see [`y_axis`]). Size and pause
    /// spike at phase changes (a 135 MiB overshoot, a 135 ms pause); fitting
    /// those would squash the band and every typical value into a sliver, so
    /// these two clip. Interval and dirty rate have no such outliers: the
    /// whole range is the story there, so they fit everything.
    pub fn y_rule(self, lmax_mib: f64) -> YRule {
        match self {
            Panel::Size => YRule::Robust { floor: lmax_mib },
            Panel::Pause => YRule::Robust { floor: 0.0 },
            Panel::Interval | Panel::Dirty => YRule::FitAll,
        }
    }
}

/// Space above the highest value kept in view, so that the top point does
/// not sit on the frame. 1.125 rather than 1.1 so that axis tops are exact
/// in binary and the rule can be tested with `assert_eq!`.
pub const Y_HEADROOM: f64 = 1.125;
/// A robust axis reaches at least this many times the floor (Lmax): the
/// band then fills at most 40 % of the panel and overshoots up to 2.5 x
/// Lmax stay visible.
pub const Y_FLOOR_ROOM: f64 = 2.5;
/// ... and, however high the p99, at most this many times the floor, so the
/// band keeps at least a quarter of the panel's height.
pub const Y_FLOOR_CAP: f64 = 4.0;
/// Percentile (nearest-rank, as in `report`) of the pooled values of all
/// runs that a robust axis keeps in view.
pub const Y_PERCENTILE: u32 = 99;

/// How a panel's y range is chosen; see [`y_axis`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum YRule {
    /// Every value in view, nothing clipped.
    FitAll,
    /// Room for `floor` (Lmax on the size panel) and the p99, not for
    /// rare spikes, which are clipped to the top edge.
    Robust { floor: f64 },
}

/// A panel's y axis: `0..top`, and how many values lie above `top` (drawn
/// on the top edge and counted in the caption).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YAxis {
    pub top: f64,
    pub clipped: usize,
}

/// The y axis for `values` (all runs of one panel, pooled) under `rule`.
///
/// The highest value kept in view, `keep`, is:
/// - [`YRule::FitAll`]: the largest value;
/// - [`YRule::Robust`]: `min(max(largest, floor), limit)` with
///   `limit = max(2.5 x floor, p99)`, and, when `floor > 0`, `limit` at
///   most `4 x floor`. So an axis never goes higher than the data needs,
///   the floor is always in view, and spikes above the p99 (or above
///   4 x Lmax) are clipped.
///
/// The axis top is `1.125 x keep` (1 when `keep` is 0, so an empty panel
/// still has an axis); values above the top are `clipped`. Non-finite
/// values are ignored: they cannot be placed on any axis.
pub fn y_axis(values: &[f64], rule: YRule) -> YAxis {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let largest = sorted.last().copied().unwrap_or(0.0).max(0.0);
    let keep = match rule {
        YRule::FitAll => largest,
        YRule::Robust { floor } => {
            let floor = if floor.is_finite() {
                floor.max(0.0)
            } else {
                0.0
            };
            let p99 = nearest_rank(&sorted, Y_PERCENTILE).unwrap_or(0.0);
            let mut limit = (Y_FLOOR_ROOM * floor).max(p99);
            if floor > 0.0 {
                limit = limit.min(Y_FLOOR_CAP * floor);
            }
            largest.max(floor).min(limit)
        }
    };
    let top = if keep > 0.0 { keep * Y_HEADROOM } else { 1.0 };
    YAxis {
        top,
        clipped: clipped_count(values, top),
    }
}

/// How many of `values` lie above an axis that ends at `top`.
pub fn clipped_count(values: &[f64], top: f64) -> usize {
    values.iter().filter(|v| v.is_finite() && **v > top).count()
}

/// Points of one run on one panel, `(t_s, value in the panel's unit)`.
#[derive(Debug, Clone, PartialEq)]
pub struct PanelSeries {
    pub points: Vec<(f64, f64)>,
    /// For [`Panel::Interval`]: the column used (see `report::rows`).
    pub interval_source: Option<IntervalSource>,
}

/// The points `panel` shows for `rows`, live round left out unless asked.
pub fn panel_series(panel: Panel, rows: &[Row], include_live: bool) -> PanelSeries {
    let selected = selected_rows(rows, include_live);
    let mut interval_source = None;
    let points = match panel {
        Panel::Size => selected
            .iter()
            .map(|row| (row.t_s, row.size_bytes as f64 / BYTES_PER_MIB))
            .collect(),
        Panel::Interval => {
            let (source, points) = interval_points(&selected);
            interval_source = Some(source);
            points
        }
        Panel::Pause => selected.iter().map(|row| (row.t_s, row.pause_ms)).collect(),
        Panel::Dirty => selected
            .iter()
            .filter_map(|row| dirty_rate_per_s(row).map(|rate| (row.t_s, rate)))
            .collect(),
    };
    PanelSeries {
        points,
        interval_source,
    }
}

/// The interval as the gate applied it: checkpoint `i`'s `interval_ms` is
/// the wait that ended at `t_i`, so the value holds over `(t_{i-1}, t_i]`
/// and changes in a step, not a ramp between two checkpoints. Returns the
/// corners of that step line through `points`.
pub fn step_points(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut corners = Vec::with_capacity(points.len() * 2);
    for pair in points.windows(2) {
        let ((t_now, value_now), (_, value_next)) = (pair[0], pair[1]);
        corners.push((t_now, value_now));
        corners.push((t_now, value_next));
    }
    corners.extend(points.last().copied());
    corners
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Row> {
        vec![
            Row {
                t_s: 0.0,
                size_bytes: 100 << 20,
                live: 1,
                ..Row::default()
            },
            Row {
                t_s: 0.5,
                size_bytes: 2 << 20,
                pause_ms: 12.5,
                dirty_pages: 100,
                period_ms: 500.0,
                interval_ms: 500,
                ..Row::default()
            },
        ]
    }

    #[test]
    fn interval_changes_in_steps() {
        let points = [(1.0, 200.0), (1.2, 200.0), (1.6, 400.0)];
        assert_eq!(
            step_points(&points),
            vec![
                (1.0, 200.0),
                (1.0, 200.0),
                (1.2, 200.0),
                (1.2, 400.0),
                (1.6, 400.0)
            ]
        );
        assert_eq!(step_points(&[]), vec![]);
    }

    #[test]
    fn panels_convert_units_and_skip_live() {
        let rows = rows();
        assert_eq!(
            panel_series(Panel::Size, &rows, false).points,
            vec![(0.5, 2.0)]
        );
        assert_eq!(
            panel_series(Panel::Size, &rows, true).points,
            vec![(0.0, 100.0), (0.5, 2.0)]
        );
        assert_eq!(
            panel_series(Panel::Pause, &rows, false).points,
            vec![(0.5, 12.5)]
        );
        assert_eq!(
            panel_series(Panel::Dirty, &rows, false).points,
            vec![(0.5, 200.0)]
        );
        let interval = panel_series(Panel::Interval, &rows, false);
        assert_eq!(interval.points, vec![(0.5, 500.0)]);
        assert_eq!(interval.interval_source, Some(IntervalSource::IntervalMs));
    }
}
