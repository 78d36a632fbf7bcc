//! `budget`: how many dirty pages the next checkpoint may have ("Measure,
//! don't predict").
//!
//! The size-triggered checkpoint ends an epoch when the log-dirty count of
//! the running epoch, polled by the C gate (a PEEK), reaches `budget_pages`;
//! `interval_ms` stays as the latency cap. This module chooses the budget:
//!
//! * **bytes per page and fixed bytes**, learned by least squares over the
//!   last [`BudgetConfig::fit_window`] (dirty_pages, bytes_sent) pairs: on
//!   Xen 4.17 the wire size is pages × (page_size + 8) + ~5.5 KB of fixed
//!   records (the defaults, from the simulator's measured model, until
//!   enough varied pairs are seen); compression on 4.2–4.5 changes the
//!   slope, which the fit follows. With `--size-metric memory` the model
//!   is exact (page_size per page, nothing fixed) and nothing is learned.
//! * **a margin for the overshoot**: pages dirtied between the trigger and
//!   the suspend (`dirty_pages − dirty_at_trigger` of budget-triggered
//!   records), kept as a decaying maximum: a larger overshoot is taken at
//!   once, a smaller one lowers the margin by [`BudgetConfig::margin_decay`]
//!   per record. Until the first is seen, a fraction of the budget.
//! * **disk bytes** with `--size-metric total`: the disk part of the next
//!   checkpoint is predicted as the recent disk rate × the expected
//!   interval (recent period, at most tmax) and taken off the budget.
//! * **tmax** is the latency cap (`interval_ms = tmax`); **tmin** the
//!   floor: the control line carries no minimum, so the budget is never
//!   below the pages the guest dirties in tmin at its recent rate (a budget
//!   reached sooner would checkpoint faster than tmin).
//!
//! ```text
//! budget_pages = max(floor((Lmax − fixed − disk) / bytes_per_page) − margin,
//!                    dirty rate × tmin, 1)
//! ```
//!
//! It is a [`Policy`] (`--policy budget`): the controller hands it each
//! record's [`Observation`] (`dirty_pages`, `bytes_sent`, `page_size`,
//! `trigger`, `dirty_at_trigger`, the disk meter's bytes and the period),
//! and commands its [`Decision`] as `interval_ms=<n>` and
//! `budget_pages=<n>` control lines when either changed or the save side
//! reports other values.

use std::collections::VecDeque;

use super::{Clamp, Decision, Observation, Policy};
use crate::record::Trigger;
use crate::size::SizeMetric;
use crate::source::sim::domain::{FIXED_RECORD_BYTES, PFN_BYTES};

/// Page size assumed before a record says otherwise.
const DEFAULT_PAGE_SIZE: u32 = 4096;

/// The budget's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetConfig {
    pub lmax_bytes: u64,
    pub clamp: Clamp,
    pub metric: SizeMetric,
    /// Recent (dirty_pages, bytes_sent) pairs the fit uses.
    pub fit_window: usize,
    /// Pairs needed before the fit replaces the defaults.
    pub min_fit: usize,
    /// Per-record factor by which a margin above the newest overshoot
    /// shrinks (0..1; closer to 1 forgets slower).
    pub margin_decay: f64,
    /// Margin before any overshoot was seen, as a share of the budget.
    pub initial_margin: f64,
    /// Weight of the newest record in the falling rate averages (a rising
    /// rate is taken at once).
    pub alpha: f64,
}

impl BudgetConfig {
    /// The defaults for `lmax_bytes`, `clamp` and `metric`.
    pub fn new(lmax_bytes: u64, clamp: Clamp, metric: SizeMetric) -> Self {
        BudgetConfig {
            lmax_bytes,
            clamp,
            metric,
            fit_window: 32,
            min_fit: 4,
            margin_decay: 0.9,
            initial_margin: 0.05,
            alpha: 0.3,
        }
    }
}

/// Bytes on the wire for a checkpoint of `pages` dirty pages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WireModel {
    pub bytes_per_page: f64,
    pub fixed_bytes: f64,
}

impl WireModel {
    /// Xen 4.17, as measured: the page and its pfn, plus fixed records.
    pub fn default_for(page_size: u32) -> Self {
        WireModel {
            bytes_per_page: f64::from(page_size) + PFN_BYTES as f64,
            fixed_bytes: FIXED_RECORD_BYTES as f64,
        }
    }

    /// Least squares over `(pages, bytes)`; `None` when the pages do not
    /// vary enough to tell slope from intercept or the fit is not a
    /// possible wire size (slope <= 0). A negative intercept is refitted
    /// through the origin.
    pub fn fit(pairs: &[(f64, f64)]) -> Option<Self> {
        let n = pairs.len() as f64;
        if pairs.len() < 2 {
            return None;
        }
        let mean_x = pairs.iter().map(|p| p.0).sum::<f64>() / n;
        let mean_y = pairs.iter().map(|p| p.1).sum::<f64>() / n;
        let sxx: f64 = pairs.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
        let sxy: f64 = pairs.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
        // The pages must spread by at least 1 page (standard deviation),
        // or the slope is noise.
        if sxx < n {
            return None;
        }
        let slope = sxy / sxx;
        let model = if mean_y - slope * mean_x < 0.0 {
            let sum_x: f64 = pairs.iter().map(|p| p.0).sum();
            WireModel {
                bytes_per_page: pairs.iter().map(|p| p.1).sum::<f64>() / sum_x,
                fixed_bytes: 0.0,
            }
        } else {
            WireModel {
                bytes_per_page: slope,
                fixed_bytes: mean_y - slope * mean_x,
            }
        };
        (model.bytes_per_page.is_finite() && model.bytes_per_page > 0.0).then_some(model)
    }
}

/// The budget policy's state.
#[derive(Debug, Clone)]
pub struct Budget {
    cfg: BudgetConfig,
    page_size: u32,
    pairs: VecDeque<(f64, f64)>,
    /// Decaying maximum of the overshoots, pages.
    margin_pages: Option<f64>,
    /// Recent period between suspends, ms.
    period_ms: Option<f64>,
    /// Recent dirty rate, pages per ms.
    dirty_per_ms: Option<f64>,
    /// Recent disk rate, bytes per ms.
    disk_per_ms: Option<f64>,
}

/// Rising values at once, falling ones averaged with weight `alpha`.
fn follow(old: Option<f64>, sample: f64, alpha: f64) -> f64 {
    match old {
        Some(old) if sample < old => old + alpha * (sample - old),
        _ => sample,
    }
}

impl Budget {
    pub fn new(cfg: BudgetConfig) -> Self {
        Budget {
            cfg,
            page_size: DEFAULT_PAGE_SIZE,
            pairs: VecDeque::new(),
            margin_pages: None,
            period_ms: None,
            dirty_per_ms: None,
            disk_per_ms: None,
        }
    }

    /// Learns from one record.
    pub fn observe(&mut self, s: &Observation) {
        if s.live {
            return;
        }
        if s.page_size > 0 {
            self.page_size = s.page_size;
        }
        self.pairs
            .push_back((s.dirty_pages as f64, s.bytes_sent as f64));
        while self.pairs.len() > self.cfg.fit_window.max(2) {
            self.pairs.pop_front();
        }
        if s.trigger == Trigger::Budget {
            let over = s.dirty_pages.saturating_sub(s.dirty_at_trigger) as f64;
            let decayed = self.margin_pages.map_or(0.0, |m| m * self.cfg.margin_decay);
            self.margin_pages = Some(over.max(decayed));
        }
        if s.period_ms > 0.0 {
            let a = self.cfg.alpha;
            // The period averages both ways: it only sizes the disk guess.
            self.period_ms = Some(match self.period_ms {
                Some(old) => old + a * (s.period_ms - old),
                None => s.period_ms,
            });
            self.dirty_per_ms = Some(follow(
                self.dirty_per_ms,
                s.dirty_pages as f64 / s.period_ms,
                a,
            ));
            self.disk_per_ms = Some(follow(
                self.disk_per_ms,
                s.disk_bytes as f64 / s.period_ms,
                a,
            ));
        }
    }

    /// The wire model in use: the fit once it has enough pairs, else the
    /// defaults; exact for the memory metric.
    pub fn wire_model(&self) -> WireModel {
        if self.cfg.metric == SizeMetric::Memory {
            return WireModel {
                bytes_per_page: f64::from(self.page_size),
                fixed_bytes: 0.0,
            };
        }
        let pairs: Vec<(f64, f64)> = self.pairs.iter().copied().collect();
        (pairs.len() >= self.cfg.min_fit)
            .then(|| WireModel::fit(&pairs))
            .flatten()
            .unwrap_or_else(|| WireModel::default_for(self.page_size))
    }

    /// Disk bytes expected in the next checkpoint (total metric only).
    pub fn predicted_disk_bytes(&self) -> f64 {
        if self.cfg.metric != SizeMetric::Total {
            return 0.0;
        }
        let tmax = f64::from(self.cfg.clamp.tmax_ms);
        let expected_ms = self.period_ms.map_or(tmax, |p| p.min(tmax));
        self.disk_per_ms.unwrap_or(0.0) * expected_ms
    }

    /// The margin in pages (before any overshoot: a share of the budget).
    pub fn margin_pages(&self, raw_budget_pages: f64) -> f64 {
        self.margin_pages
            .unwrap_or(raw_budget_pages * self.cfg.initial_margin)
    }

    /// What to send to the save side now: tmax as the latency cap, and a
    /// budget never 0 (which would mean "off" on the control line).
    pub fn command(&self) -> Decision {
        let model = self.wire_model();
        let room = self.cfg.lmax_bytes as f64 - model.fixed_bytes - self.predicted_disk_bytes();
        let raw = (room / model.bytes_per_page).floor().max(0.0);
        let fits = raw - self.margin_pages(raw);
        let floor = self.dirty_per_ms.unwrap_or(0.0) * f64::from(self.cfg.clamp.tmin_ms);
        let pages = fits.max(floor).floor();
        Decision {
            interval_ms: self.cfg.clamp.tmax_ms,
            budget_pages: if pages >= 1.0 {
                crate::units::round_to_u64_saturating(pages)
            } else {
                1
            },
        }
    }
}

impl Policy for Budget {
    fn name(&self) -> String {
        "budget".to_string()
    }

    fn initial(&self) -> Decision {
        self.command()
    }

    fn decide(&mut self, obs: &Observation) -> Decision {
        self.observe(obs);
        self.command()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LMAX: u64 = 16 << 20;
    const CLAMP: Clamp = Clamp {
        tmin_ms: 10,
        tmax_ms: 2000,
    };

    fn budget(metric: SizeMetric) -> Budget {
        Budget::new(BudgetConfig::new(LMAX, CLAMP, metric))
    }

    fn sample(dirty_pages: u64, bytes_sent: u64) -> Observation {
        Observation {
            page_size: 4096,
            dirty_pages,
            bytes_sent,
            size_bytes: bytes_sent,
            period_ms: 100.0,
            trigger: Trigger::Interval,
            ..Observation::default()
        }
    }

    #[test]
    fn defaults_before_any_record() {
        let b = budget(SizeMetric::Wire);
        // (16 MiB - 5632) / 4104 = 4086.6 -> 4086 pages; 5 % margin =
        // 204.3 -> 4086 - 204.3 = 3881.7 -> 3881.
        assert_eq!(
            b.command(),
            Decision {
                interval_ms: 2000,
                budget_pages: 3881
            }
        );
    }

    #[test]
    fn the_fit_learns_compression() {
        let mut b = budget(SizeMetric::Wire);
        // A compressing stream: 1000 bytes per page plus 10 000 fixed.
        for pages in [500u64, 900, 1300, 2000, 2600, 3100] {
            b.observe(&sample(pages, 1000 * pages + 10_000));
        }
        let m = b.wire_model();
        assert!((m.bytes_per_page - 1000.0).abs() < 1e-6, "{m:?}");
        assert!((m.fixed_bytes - 10_000.0).abs() < 1e-3, "{m:?}");
        // (16 777 216 - 10 000) / 1000 = 16 767.2 -> 16 767, minus 5 %
        // (838.35) = 15 928.65 -> 15 928.
        assert_eq!(b.command().budget_pages, 15_928);
    }

    #[test]
    fn too_few_or_too_alike_pairs_keep_the_defaults() {
        let mut b = budget(SizeMetric::Wire);
        for _ in 0..3 {
            b.observe(&sample(1000, 1_000_000));
        }
        assert_eq!(b.wire_model(), WireModel::default_for(4096));
        // Ten identical pairs: no slope to learn.
        for _ in 0..10 {
            b.observe(&sample(1000, 1_000_000));
        }
        assert_eq!(b.wire_model(), WireModel::default_for(4096));
        // The live round is not learned from.
        let mut live = sample(250_000, 1 << 30);
        live.live = true;
        let mut c = budget(SizeMetric::Wire);
        for _ in 0..10 {
            c.observe(&live);
        }
        assert_eq!(c.command(), budget(SizeMetric::Wire).command());
    }

    #[test]
    fn a_negative_intercept_is_fitted_through_zero() {
        let pairs = [(100.0, 0.0), (200.0, 300_000.0), (300.0, 600_000.0)];
        let m = WireModel::fit(&pairs).unwrap();
        assert_eq!(m.fixed_bytes, 0.0);
        // 900 000 bytes over 600 pages.
        assert!((m.bytes_per_page - 1500.0).abs() < 1e-9, "{m:?}");
    }

    #[test]
    fn the_margin_is_a_decaying_maximum_of_overshoots() {
        let mut b = budget(SizeMetric::Wire);
        let over = |dirty: u64, at: u64| Observation {
            trigger: Trigger::Budget,
            dirty_at_trigger: at,
            ..sample(dirty, dirty * 4104 + 5632)
        };
        b.observe(&over(3000, 2900));
        assert_eq!(b.margin_pages(4086.0), 100.0);
        b.observe(&over(3000, 2950)); // 50 < 100 x 0.9
        assert_eq!(b.margin_pages(4086.0), 90.0);
        b.observe(&over(3000, 2800)); // 200 taken at once
        assert_eq!(b.margin_pages(4086.0), 200.0);
        // An interval-triggered record says nothing about the overshoot.
        b.observe(&Observation {
            dirty_at_trigger: 0,
            ..sample(3000, 3000 * 4104 + 5632)
        });
        assert_eq!(b.margin_pages(4086.0), 200.0);
        // All pairs have 3000 pages (no slope to fit): the defaults give
        // 4086 pages, minus the margin of 200.
        assert_eq!(b.command().budget_pages, 3886);
    }

    #[test]
    fn memory_metric_is_exact() {
        let b = budget(SizeMetric::Memory);
        // 16 MiB / 4096 = 4096, minus 5 % = 3891.2 -> 3891.
        assert_eq!(b.command().budget_pages, 3891);
    }

    #[test]
    fn disk_bytes_count_against_the_total_budget() {
        let mut b = budget(SizeMetric::Total);
        let mut wire = budget(SizeMetric::Wire);
        // 4 MiB of disk per 100 ms: 41 943.04 bytes per ms, expected
        // interval 100 ms -> 4 MiB of the 16 MiB go to the disk.
        for s in [Observation {
            disk_bytes: 4 << 20,
            ..sample(1000, 1000 * 4104 + 5632)
        }; 3]
        {
            b.observe(&s);
            wire.observe(&s);
        }
        assert!((b.predicted_disk_bytes() - f64::from(4u32 << 20)).abs() < 1e-3);
        assert_eq!(wire.predicted_disk_bytes(), 0.0);
        // (12 MiB - 5632) / 4104 = 3064.2 -> 3064; minus 5 % (153.2) ->
        // 2910.8 -> 2910.
        assert_eq!(b.command().budget_pages, 2910);
        assert_eq!(wire.command().budget_pages, 3881);
    }

    #[test]
    fn never_below_what_tmin_dirties_nor_zero() {
        let mut b = budget(SizeMetric::Wire);
        // 10 000 pages per 20 ms = 500 pages per ms: tmin (10 ms) is 5000
        // pages, above the 3881 that fit.
        b.observe(&Observation {
            period_ms: 20.0,
            ..sample(10_000, 10_000 * 4104 + 5632)
        });
        assert_eq!(b.command().budget_pages, 5000);
        // An Lmax below the fixed bytes leaves no room: one page, not 0.
        let tiny = Budget::new(BudgetConfig::new(1000, CLAMP, SizeMetric::Wire));
        assert_eq!(tiny.command().budget_pages, 1);
        assert_eq!(tiny.command().interval_ms, 2000);
    }
}
