//! The guest's phases, told from the records themselves: each checkpoint's
//! dirty rate (dirty pages per second of its period), split in two classes
//! where the split best separates them (Otsu's rule on log rates).
//!
//! The guest console says when a phase began, but it reaches dom0 up to a
//! minute late under load; the records carry their own rate, so the
//! verdict does not depend on when a console line arrived.

use remus_ckpt::report::summary::nearest_rank;
use remus_ckpt::row::Row;

/// Pages per second of period for a checkpoint that was a normal period.
pub fn dirty_rate(row: &Row) -> Option<f64> {
    (row.live == 0 && row.gap == 0 && row.period_ms > 0.0)
        .then(|| row.dirty_pages as f64 / (row.period_ms / 1000.0))
}

/// Which rows lay in high and low phases.
#[derive(Debug, Clone, PartialEq)]
pub struct Phases {
    /// Indexes (into the rows) of high-rate checkpoints.
    pub high: Vec<usize>,
    pub low: Vec<usize>,
    /// The rate that divides them, pages/s.
    pub split_rate: f64,
}

/// Splits the rows' rates in two; `None` with fewer than two rates.
pub fn classify(rows: &[Row]) -> Option<Phases> {
    let mut rated: Vec<(f64, usize)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| dirty_rate(r).map(|rate| ((rate.max(1e-3)).ln(), i)))
        .collect();
    if rated.len() < 2 {
        return None;
    }
    rated.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = rated.len();
    let total: f64 = rated.iter().map(|x| x.0).sum();
    let (mut best_k, mut best_var, mut left) = (1, f64::MIN, 0.0);
    for k in 1..n {
        left += rated[k - 1].0;
        let (w0, w1) = (k as f64, (n - k) as f64);
        let (m0, m1) = (left / w0, (total - left) / w1);
        let var = w0 * w1 * (m0 - m1) * (m0 - m1);
        if var > best_var {
            best_var = var;
            best_k = k;
        }
    }
    let split_rate = ((rated[best_k - 1].0 + rated[best_k].0) / 2.0).exp();
    let mut low: Vec<usize> = rated[..best_k].iter().map(|x| x.1).collect();
    let mut high: Vec<usize> = rated[best_k..].iter().map(|x| x.1).collect();
    low.sort_unstable();
    high.sort_unstable();
    Some(Phases {
        high,
        low,
        split_rate,
    })
}

/// Nearest-rank median of `values` (the report's percentile rule).
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    nearest_rank(&values, 50)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(dirty_pages: u64, period_ms: f64) -> Row {
        Row {
            dirty_pages,
            period_ms,
            ..Row::default()
        }
    }

    #[test]
    fn splits_two_clusters_and_ignores_live_and_gaps() {
        let mut rows = vec![Row {
            live: 1,
            dirty_pages: 60_000,
            period_ms: 0.0,
            ..Row::default()
        }];
        for _ in 0..5 {
            rows.push(row(2000, 200.0)); // 10,000 pages/s
            rows.push(row(400, 2000.0)); // 200 pages/s
        }
        rows.push(Row {
            gap: 1,
            ..row(100_000, 10.0)
        });
        let p = classify(&rows).unwrap();
        assert_eq!(p.high, vec![1, 3, 5, 7, 9]);
        assert_eq!(p.low, vec![2, 4, 6, 8, 10]);
        assert!(p.split_rate > 200.0 && p.split_rate < 10_000.0);
        assert_eq!(classify(&rows[..2]), None);
    }

    #[test]
    fn median_is_nearest_rank() {
        assert_eq!(median(vec![3.0, 1.0, 2.0, 10.0]), Some(2.0));
        assert_eq!(median(vec![]), None);
    }
}
