//! What the rows of a checkpoint CSV mean to `report` and `plot`: the
//! rule that says which row is the initial live round, which rows count,
//! and the per-checkpoint quantities both commands derive from a row.
//! (Reading and writing the CSV itself is `crate::row`.)
//!
//! Both commands go through this module so that a table and the figure
//! made from the same file always agree on what a "checkpoint" is.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};

use crate::row::Row;

/// Bytes in a MiB: figures and tables show sizes in MiB.
pub const BYTES_PER_MIB: f64 = 1024.0 * 1024.0;

/// True for the initial live round, which is not a checkpoint.
pub fn is_live_round(row: &Row) -> bool {
    row.live != 0
}

/// The rows statistics and plots use: checkpoints only, unless the caller
/// asked for the live round too.
pub fn selected_rows(rows: &[Row], include_live: bool) -> Vec<&Row> {
    rows.iter()
        .filter(|row| include_live || !is_live_round(row))
        .collect()
}

/// One label per run: `--label` values in order, else each file's stem.
pub fn run_labels(files: &[PathBuf], labels: &[String]) -> Result<Vec<String>> {
    if labels.is_empty() {
        return files
            .iter()
            .map(|file| {
                file.file_stem()
                    .map(|stem| stem.to_string_lossy().into_owned())
                    .ok_or_else(|| anyhow!("{} has no file name to label it by", file.display()))
            })
            .collect();
    }
    if labels.len() != files.len() {
        bail!(
            "{} --label values for {} files: give one --label per file, or none",
            labels.len(),
            files.len()
        );
    }
    Ok(labels.to_vec())
}

/// Which column a run's interval figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntervalSource {
    /// `interval_ms`: what the save side's gate paced each checkpoint for,
    /// i.e. the interval the controller chose.
    IntervalMs,
    /// `period_ms`: the measured time between suspends, used for runs that
    /// have no gate (all `interval_ms` are 0).
    PeriodMs,
}

impl IntervalSource {
    /// The CSV column name, as tables and figure notes print it.
    pub fn column(self) -> &'static str {
        match self {
            IntervalSource::IntervalMs => "interval_ms",
            IntervalSource::PeriodMs => "period_ms",
        }
    }
}

/// `(t_s, interval in ms)` per checkpoint and the column it came from.
///
/// The choice is per run, never per row, so one run's curve never mixes
/// commanded intervals with measured periods: `interval_ms` when any row
/// has one (rows with 0 are then left out), else `period_ms` (rows with
/// period 0 left out).
pub fn interval_points(rows: &[&Row]) -> (IntervalSource, Vec<(f64, f64)>) {
    if rows.iter().any(|row| row.interval_ms > 0) {
        let points = rows
            .iter()
            .filter(|row| row.interval_ms > 0)
            .map(|row| (row.t_s, row.interval_ms as f64))
            .collect();
        (IntervalSource::IntervalMs, points)
    } else {
        let points = rows
            .iter()
            .filter(|row| row.period_ms > 0.0)
            .map(|row| (row.t_s, row.period_ms))
            .collect();
        (IntervalSource::PeriodMs, points)
    }
}

/// Dirty pages per second of guest run time: `dirty_pages / period`, which
/// makes checkpoints taken at different intervals comparable. Rows with
/// period 0 have no rate and are skipped, and so are rows whose CLEAN
/// failed (`clean_error`): their dirty_pages is no count.
pub fn dirty_rate_per_s(row: &Row) -> Option<f64> {
    (row.period_ms > 0.0 && row.clean_error == 0)
        .then(|| row.dirty_pages as f64 / (row.period_ms / 1000.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_round_is_left_out_unless_asked_for() {
        let rows = [
            Row {
                live: 1,
                ..Row::default()
            },
            Row {
                seq: 1,
                ..Row::default()
            },
        ];
        let checkpoints = selected_rows(&rows, false);
        assert_eq!(checkpoints.len(), 1);
        assert_eq!(checkpoints[0].seq, 1);
        assert_eq!(selected_rows(&rows, true).len(), 2);
    }

    #[test]
    fn interval_falls_back_to_period_per_run() {
        let gated = [
            Row {
                t_s: 1.0,
                interval_ms: 300,
                period_ms: 310.0,
                ..Row::default()
            },
            Row {
                t_s: 2.0,
                interval_ms: 0,
                period_ms: 290.0,
                ..Row::default()
            },
        ];
        let refs: Vec<&Row> = gated.iter().collect();
        assert_eq!(
            interval_points(&refs),
            (IntervalSource::IntervalMs, vec![(1.0, 300.0)])
        );
        let ungated = [
            Row {
                t_s: 0.0,
                period_ms: 0.0,
                ..Row::default()
            },
            Row {
                t_s: 2.0,
                period_ms: 290.0,
                ..Row::default()
            },
        ];
        let refs: Vec<&Row> = ungated.iter().collect();
        assert_eq!(
            interval_points(&refs),
            (IntervalSource::PeriodMs, vec![(2.0, 290.0)])
        );
    }

    #[test]
    fn dirty_rate_skips_period_zero() {
        assert_eq!(
            dirty_rate_per_s(&Row {
                dirty_pages: 30,
                period_ms: 300.0,
                ..Row::default()
            }),
            Some(100.0)
        );
        assert_eq!(
            dirty_rate_per_s(&Row {
                dirty_pages: 30,
                ..Row::default()
            }),
            None
        );
        // A failed CLEAN's 0 is no count: no rate (before: a rate of 0).
        assert_eq!(
            dirty_rate_per_s(&Row {
                period_ms: 300.0,
                clean_error: 1,
                ..Row::default()
            }),
            None
        );
    }

    #[test]
    fn labels_from_stems_or_flags() {
        let files = vec![
            PathBuf::from("/x/fixed-300ms.csv"),
            PathBuf::from("adaptive.csv"),
        ];
        assert_eq!(
            run_labels(&files, &[]).unwrap(),
            vec!["fixed-300ms", "adaptive"]
        );
        let labels = vec!["a".to_string(), "b".to_string()];
        assert_eq!(run_labels(&files, &labels).unwrap(), labels);
        assert!(run_labels(&files, &labels[..1]).is_err());
    }
}
