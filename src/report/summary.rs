//! The numbers of one run: pure functions from rows to a [`RunSummary`].
//!
//! Percentiles use the nearest-rank method: the p-th percentile of n sorted
//! values is the value at rank `ceil(p/100 * n)` (1-based). It always
//! returns a value that was actually observed, so a table never shows a
//! checkpoint size no checkpoint had, and it is easy to check by hand.
//!
//! A run is summarised in one pass over its rows ([`Summarizer`]), in
//! constant memory, so a CSV of 10^7 checkpoints is read as a stream.
//! Percentiles are exact up to 65 536 values per quantity; past that they
//! come from a log histogram and may be above the exact value by less than
//! 0.79 % (see [`super::sketch`]). Counts, shares, sums and maxima are
//! always exact.

use std::cmp::Ordering;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};

use crate::report::rows::{is_live_round, IntervalSource};
use crate::report::sketch::QuantileSketch;
use crate::row::{for_each_row, Row};

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
    sorted.get(usize::try_from(rank - 1).ok()?).copied()
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
    let mut summarizer = Summarizer::new(label, lmin_bytes, lmax_bytes, include_live);
    rows.iter().for_each(|row| summarizer.add(row));
    summarizer.finish()
}

/// Summarises the checkpoint CSV at `path` as it is read, in constant
/// memory (the rows are never all in memory).
pub fn summarize_csv(
    path: &Path,
    label: &str,
    lmin_bytes: u64,
    lmax_bytes: u64,
    include_live: bool,
) -> Result<RunSummary> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open checkpoint CSV {}", path.display()))?;
    let reader = std::io::BufReader::new(file);
    let name = path.display().to_string();
    summarize_reader(reader, &name, label, lmin_bytes, lmax_bytes, include_live)
}

/// [`summarize_csv`] on any reader; `source_name` is what errors call it.
pub fn summarize_reader<R: Read>(
    reader: R,
    source_name: &str,
    label: &str,
    lmin_bytes: u64,
    lmax_bytes: u64,
    include_live: bool,
) -> Result<RunSummary> {
    let mut summarizer = Summarizer::new(label, lmin_bytes, lmax_bytes, include_live);
    for_each_row(reader, source_name, |row| summarizer.add(&row))?;
    Ok(summarizer.finish())
}

/// A [`RunSummary`] built one row at a time.
#[derive(Debug, Clone)]
pub struct Summarizer {
    label: String,
    lmin_bytes: u64,
    lmax_bytes: u64,
    include_live: bool,
    rows: usize,
    checkpoints: usize,
    at_most_lmax: usize,
    in_band: usize,
    /// Sum of the positive periods, in ms, added in row order.
    period_sum_ms: f64,
    sizes: QuantileSketch<u64>,
    /// Positive `interval_ms` values.
    intervals_ms: QuantileSketch<f64>,
    /// Positive `period_ms` values (the intervals of an ungated run).
    periods_ms: QuantileSketch<f64>,
    pauses_ms: QuantileSketch<f64>,
    total_bytes_sent: u64,
    total_disk_bytes: u64,
}

impl Summarizer {
    pub fn new(label: &str, lmin_bytes: u64, lmax_bytes: u64, include_live: bool) -> Self {
        Summarizer {
            label: label.to_string(),
            lmin_bytes,
            lmax_bytes,
            include_live,
            rows: 0,
            checkpoints: 0,
            at_most_lmax: 0,
            in_band: 0,
            period_sum_ms: 0.0,
            sizes: QuantileSketch::new(),
            intervals_ms: QuantileSketch::new(),
            periods_ms: QuantileSketch::new(),
            pauses_ms: QuantileSketch::new(),
            total_bytes_sent: 0,
            total_disk_bytes: 0,
        }
    }

    pub fn add(&mut self, row: &Row) {
        self.rows += 1;
        if !self.include_live && is_live_round(row) {
            return;
        }
        self.checkpoints += 1;
        if row.period_ms > 0.0 {
            self.period_sum_ms += row.period_ms;
            self.periods_ms.push(row.period_ms);
        }
        if row.interval_ms > 0 {
            self.intervals_ms.push(row.interval_ms as f64);
        }
        let size = row.size_bytes;
        self.sizes.push(size);
        self.at_most_lmax += usize::from(size <= self.lmax_bytes);
        self.in_band += usize::from((self.lmin_bytes..=self.lmax_bytes).contains(&size));
        self.pauses_ms.push(row.pause_ms);
        // A total past u64 (only a corrupt file gets there) shows as u64::MAX.
        self.total_bytes_sent = self.total_bytes_sent.saturating_add(row.bytes_sent);
        self.total_disk_bytes = self.total_disk_bytes.saturating_add(row.disk_bytes);
    }

    pub fn finish(self) -> RunSummary {
        let checkpoints = self.checkpoints;
        let percent_of =
            |count: usize| (checkpoints > 0).then(|| 100.0 * count as f64 / checkpoints as f64);
        let covered_s = self.period_sum_ms / 1000.0;
        let with_period = self.periods_ms.count();
        // The rule of rows::interval_points: interval_ms when any
        // checkpoint has one, else the measured period.
        let (interval_source, interval_ms) = if self.intervals_ms.count() > 0 {
            (IntervalSource::IntervalMs, self.intervals_ms.quantiles())
        } else {
            (IntervalSource::PeriodMs, self.periods_ms.quantiles())
        };
        RunSummary {
            label: self.label,
            lmin_bytes: self.lmin_bytes,
            lmax_bytes: self.lmax_bytes,
            checkpoints,
            live_rows_excluded: self.rows - checkpoints,
            covered_s,
            checkpoints_per_s: (covered_s > 0.0).then(|| with_period as f64 / covered_s),
            size_bytes: self.sizes.quantiles(),
            pct_at_most_lmax: percent_of(self.at_most_lmax),
            pct_in_band: percent_of(self.in_band),
            interval_source,
            interval_ms,
            pause_ms: self.pauses_ms.quantiles(),
            total_bytes_sent: self.total_bytes_sent,
            total_disk_bytes: self.total_disk_bytes,
        }
    }
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
