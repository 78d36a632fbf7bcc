//! Shared by the bench targets: one machine-readable row per figure, and
//! small statistics helpers.
//!
//! Every row is printed as `bench-row<TAB>section<TAB>case<TAB>value<TAB>
//! baseline<TAB>vs baseline<TAB>target<TAB>met`; `scripts/bench` collects
//! the rows of all targets and prints them as one table. A target run on
//! its own (`cargo bench --bench gate`) prints the same rows, readable as
//! they are.

#![allow(dead_code)]

/// One line of the final table.
pub struct Row<'a> {
    pub section: &'a str,
    pub case: &'a str,
    pub value: String,
    pub baseline: String,
    pub vs_baseline: String,
    pub target: &'a str,
    pub met: String,
}

impl Row<'_> {
    pub fn print(&self) {
        let clean = |s: &str| s.replace(['\t', '\n'], " ");
        println!(
            "bench-row\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            clean(self.section),
            clean(self.case),
            clean(&self.value),
            clean(&self.baseline),
            clean(&self.vs_baseline),
            clean(self.target),
            clean(&self.met)
        );
    }
}

/// The `p`-th percentile (0..=100) of `sorted`, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank =
        remus_ckpt::units::round_to_u64_saturating(((p / 100.0) * sorted.len() as f64).ceil());
    let rank = usize::try_from(rank).unwrap_or(usize::MAX);
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sorts a copy of `values` (NaN last).
pub fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

pub fn median(values: &[f64]) -> f64 {
    percentile(&sorted(values), 50.0)
}

/// "met" or "MISSED (by ...)".
pub fn verdict(ok: bool, miss: impl FnOnce() -> String) -> String {
    if ok {
        "met".to_string()
    } else {
        format!("MISSED ({})", miss())
    }
}

/// Whether we were asked for a quick run (`BENCH_QUICK=1`): fewer
/// samples, for checking that the benches work, not for numbers.
pub fn quick() -> bool {
    std::env::var_os("BENCH_QUICK").is_some_and(|v| v != "0")
}
