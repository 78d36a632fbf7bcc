//! The numbers of one run: pure functions from rows to a [`RunSummary`].
//!
//! Percentiles use the nearest-rank method: the p-th percentile of n sorted
//! values is the value at rank `ceil(p/100 * n)` (1-based). It always
//! returns a value that was actually observed, so a table never shows a
//! checkpoint size no checkpoint had, and it is easy to check by hand.

use std::cmp::Ordering;

use crate::report::rows::{interval_points, selected_rows, IntervalSource};
use crate::row::Row;

/// p50, p95, p99 and max of one quantity (nearest-rank).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantiles<T> {
    pub p50: T,
    pub p95: T,
    pub p99: T,
    pub max: T,
}

/// Nearest-rank percentile of ascending `sorted` values; `None` when empty.
/// `percent` is an integer so that ranks are exact (no 0.95 * 20 = 19.000…1).
pub fn nearest_rank<T: Copy>(sorted: &[T], percent: u32) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len() as u64;
    let rank = (u64::from(percent) * n).div_ceil(100).clamp(1, n);
    Some(sorted[(rank - 1) as usize])
}

/// Sorts `values` and takes their [`Quantiles`]; `None` when empty.
pub fn quantiles<T: Copy + PartialOrd>(mut values: Vec<T>) -> Option<Quantiles<T>> {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(Ordering::Equal));
    Some(Quantiles {
        p50: nearest_rank(&values, 50)?,
        p95: nearest_rank(&values, 95)?,
        p99: nearest_rank(&values, 99)?,
        max: *values.last()?,
    })
}

/// One run, summarised: one row of the `report` table.
///
/// Every figure is over the run's checkpoints; the initial live round is
/// left out (and counted in `live_rows_excluded`) unless asked for, because
/// it is a full memory copy, not a checkpoint the policy steered.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub label: String,
    pub lmin_bytes: u64,
    pub lmax_bytes: u64,
    /// Rows counted as checkpoints.
    pub checkpoints: usize,
    /// Live-round rows left out of every figure.
    pub live_rows_excluded: usize,
    /// Guest time the checkpoints cover: sum of their `period_ms`, in s.
    pub covered_s: f64,
    /// Checkpoints with a period, divided by `covered_s` (1000 / mean period).
    pub checkpoints_per_s: Option<f64>,
    pub size_bytes: Option<Quantiles<u64>>,
    /// Share of checkpoints with `size_bytes <= Lmax`, in percent.
    pub pct_at_most_lmax: Option<f64>,
    /// Share of checkpoints with `Lmin <= size_bytes <= Lmax`, in percent.
    pub pct_in_band: Option<f64>,
    /// Which column `interval_ms` below was taken from.
    pub interval_source: IntervalSource,
    pub interval_ms: Option<Quantiles<f64>>,
    pub pause_ms: Option<Quantiles<f64>>,
    /// Sum of `bytes_sent` (memory stream).
    pub total_bytes_sent: u64,
    /// Sum of `disk_bytes` (disk replication); 0 when not replicated.
    pub total_disk_bytes: u64,
}

/// Summarises a run's rows against the `[lmin_bytes, lmax_bytes]` band,
/// leaving the live round out.
pub fn summarize(label: &str, rows: &[Row], lmin_bytes: u64, lmax_bytes: u64) -> RunSummary {
    summarize_with(label, rows, lmin_bytes, lmax_bytes, false)
}

/// [`summarize`], optionally counting the live round as a checkpoint.
pub fn summarize_with(
    label: &str,
    rows: &[Row],
    lmin_bytes: u64,
    lmax_bytes: u64,
    include_live: bool,
) -> RunSummary {
    let selected = selected_rows(rows, include_live);
    let checkpoints = selected.len();

    let periods_ms: Vec<f64> = selected
        .iter()
        .map(|row| row.period_ms)
        .filter(|period| *period > 0.0)
        .collect();
    let covered_s = periods_ms.iter().sum::<f64>() / 1000.0;
    let checkpoints_per_s = (covered_s > 0.0).then(|| periods_ms.len() as f64 / covered_s);

    let sizes: Vec<u64> = selected.iter().map(|row| row.size_bytes).collect();
    let percent_of =
        |count: usize| (checkpoints > 0).then(|| 100.0 * count as f64 / checkpoints as f64);
    let at_most_lmax = sizes.iter().filter(|size| **size <= lmax_bytes).count();
    let in_band = sizes
        .iter()
        .filter(|size| (lmin_bytes..=lmax_bytes).contains(*size))
        .count();

    let (interval_source, interval_points) = interval_points(&selected);

    RunSummary {
        label: label.to_string(),
        lmin_bytes,
        lmax_bytes,
        checkpoints,
        live_rows_excluded: rows.len() - checkpoints,
        covered_s,
        checkpoints_per_s,
        pct_at_most_lmax: percent_of(at_most_lmax),
        pct_in_band: percent_of(in_band),
        size_bytes: quantiles(sizes),
        interval_source,
        interval_ms: quantiles(interval_points.into_iter().map(|(_, ms)| ms).collect()),
        pause_ms: quantiles(selected.iter().map(|row| row.pause_ms).collect()),
        total_bytes_sent: saturating_sum(selected.iter().map(|row| row.bytes_sent)),
        total_disk_bytes: saturating_sum(selected.iter().map(|row| row.disk_bytes)),
    }
}

/// A sum that stops at u64::MAX instead of overflowing on a hostile CSV.
fn saturating_sum(values: impl Iterator<Item = u64>) -> u64 {
    values.fold(0, u64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_by_hand() {
        let ten: Vec<u32> = (1..=10).collect();
        assert_eq!(nearest_rank(&ten, 50), Some(5));
        assert_eq!(nearest_rank(&ten, 95), Some(10));
        assert_eq!(nearest_rank(&ten, 0), Some(1));
        let twenty: Vec<u32> = (1..=20).collect();
        assert_eq!(nearest_rank(&twenty, 95), Some(19));
        assert_eq!(nearest_rank(&twenty, 99), Some(20));
        assert_eq!(nearest_rank::<u32>(&[], 50), None);
    }

    #[test]
    fn byte_totals_saturate() {
        // Before: `sum()` overflowed (a panic in debug) on two rows of
        // u64::MAX bytes.
        let row = Row {
            bytes_sent: u64::MAX,
            disk_bytes: u64::MAX,
            ..Row::default()
        };
        let summary = summarize("big", &[row.clone(), row], 1, 2);
        assert_eq!(summary.total_bytes_sent, u64::MAX);
        assert_eq!(summary.total_disk_bytes, u64::MAX);
    }

    #[test]
    fn empty_run_has_no_figures() {
        let summary = summarize("empty", &[], 1, 2);
        assert_eq!(summary.checkpoints, 0);
        assert_eq!(summary.size_bytes, None);
        assert_eq!(summary.checkpoints_per_s, None);
        assert_eq!(summary.pct_in_band, None);
    }
}
