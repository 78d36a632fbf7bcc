//! Policies: from the checkpoint just taken to what the next one should
//! wait for, an interval and (for `budget`) a dirty-page budget.
//!
//! * `fixed`: stock Remus, one interval for ever.
//! * `threshold`: the Lmin/Lmax rule. Above Lmax the interval is cut by a
//!   factor, after staying below Lmin it grows, inside the band it holds.
//! * `target`: estimates the dirty rate and picks the interval that lands
//!   the next checkpoint at a target size inside the band, rate-limited.
//! * `byterate`: a literature baseline (US patent 9,652,338): the next
//!   interval is the last checkpoint's bytes over a target byte rate.
//! * `budget`: "measure, don't predict": the interval is tmax (the
//!   latency cap) and the gate, polling the dirty count, ends each wait at
//!   a page budget that fits Lmax ([`budget`]).
//!
//! Every policy answers with a [`Decision`] (interval and budget, 0 =
//! none), the one thing the controller commands. [`FixedBudget`] adds a
//! fixed budget to another policy's intervals (`simulate --budget-pages`).
//! [`compare`] is what `simulate --compare` takes.
//!
//! Policies are pure state machines over [`Observation`]s, so that the
//! simulator, the tests and the live controller drive the same code.

pub mod budget;
mod byterate;
pub mod compare;
mod fixed;
mod fixed_budget;
mod target;
mod threshold;

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use crate::record::Trigger;
use crate::size::SizeMetric;
use crate::units::{Bytes, Millis};

pub use budget::Budget;
pub use byterate::ByteRate;
pub use fixed::Fixed;
pub use fixed_budget::FixedBudget;
pub use target::Target;
pub use threshold::Threshold;

/// Largest interval the save side accepts: REMUS_CKPT_INTERVAL_MAX_MS of
/// csrc/remus_ckpt.h, through the bindings (the value lives there only).
pub const INTERVAL_MAX_MS: u32 = crate::ffi::REMUS_CKPT_INTERVAL_MAX_MS;

/// The default size band, written as `--help` shows it: the one default of
/// `--lmin` / `--lmax` for every command that takes them (run, watch,
/// simulate through [`PolicyArgs`]; report; plot).
pub const LMIN_DEFAULT: &str = "4MiB";
/// See [`LMIN_DEFAULT`].
pub const LMAX_DEFAULT: &str = "16MiB";

/// [`LMIN_DEFAULT`] and [`LMAX_DEFAULT`] in bytes.
pub fn default_band_bytes() -> (u64, u64) {
    let bytes = |text: &str| {
        crate::units::parse_bytes(text)
            .unwrap_or_else(|e| unreachable!("band default {text} does not parse: {e}"))
    };
    (bytes(LMIN_DEFAULT), bytes(LMAX_DEFAULT))
}

/// What a policy learns from one checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Observation {
    /// The size under the chosen metric, bytes.
    pub size_bytes: u64,
    /// Time since the previous checkpoint's suspend, ms (0 for the first).
    pub period_ms: f64,
    /// The initial live round: its size says nothing about the interval.
    pub live: bool,
    /// The record's page size, bytes.
    pub page_size: u32,
    /// Pages dirtied in the epoch (the record's `dirty_pages`).
    pub dirty_pages: u64,
    /// Bytes the save side sent for the checkpoint (`bytes_sent`).
    pub bytes_sent: u64,
    /// Disk replication bytes of the epoch (0 without a disk).
    pub disk_bytes: u64,
    /// What ended the gate's wait (`trigger=`).
    pub trigger: Trigger,
    /// The dirty count the gate saw at its last probe (0: none).
    pub dirty_at_trigger: u64,
}

/// What the save side should have for the next checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The gate's interval, ms: the pacing, or with a budget the cap.
    pub interval_ms: u32,
    /// The gate ends its wait at this many dirty pages (0: no budget).
    pub budget_pages: u64,
}

impl Decision {
    /// An interval and no budget.
    pub fn interval(interval_ms: u32) -> Self {
        Decision {
            interval_ms,
            budget_pages: 0,
        }
    }
}

/// A policy: what the next checkpoint should wait for.
pub trait Policy: Send {
    /// Short name for logs and CSV file names, e.g. `threshold`, `fixed:25ms`.
    fn name(&self) -> String;
    /// What to command before any checkpoint was seen.
    fn initial(&self) -> Decision;
    /// What to command for the next checkpoint after seeing `obs`.
    fn decide(&mut self, obs: &Observation) -> Decision;
    /// Whether the policy steers the save side (fixed does not).
    fn is_adaptive(&self) -> bool {
        true
    }
}

/// The policy families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyKind {
    /// One interval (--interval) for ever, as stock Remus.
    Fixed,
    /// Lmin/Lmax rule: shrink above Lmax, grow below Lmin, hold inside.
    Threshold,
    /// Aim each checkpoint at --target from the estimated dirty rate.
    Target,
    /// Next interval = last checkpoint's bytes / --byte-rate (US 9,652,338).
    Byterate,
    /// Size-triggered: the gate polls the dirty count and suspends at a
    /// page budget that fits --lmax (bytes per page, fixed bytes and the
    /// overshoot learned from the records); interval = --tmax, the latency
    /// cap; the budget never ends a wait sooner than --tmin would.
    Budget,
}

/// A policy named on the command line, e.g. in `--compare`:
/// `fixed:25ms`, `threshold`, `target`, `byterate`, `budget`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicySpec {
    pub kind: PolicyKind,
    /// For `fixed:<interval>`.
    pub interval: Option<Millis>,
}

impl FromStr for PolicySpec {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        let kind = PolicyKind::from_str(name.trim(), true).map_err(|_| {
            anyhow::anyhow!(
                "unknown policy '{name}' (fixed:<ms>, threshold, target, byterate, budget)"
            )
        })?;
        let interval = match (kind, arg) {
            (PolicyKind::Fixed, Some(a)) => {
                Some(a.parse::<Millis>().with_context(|| format!("in '{s}'"))?)
            }
            (_, Some(_)) => bail!("only fixed takes an interval ('{s}')"),
            (_, None) => None,
        };
        Ok(PolicySpec { kind, interval })
    }
}

impl fmt::Display for PolicySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, self.interval) {
            (PolicyKind::Fixed, Some(i)) => write!(f, "fixed:{}ms", i.0.as_millis()),
            (PolicyKind::Fixed, None) => write!(f, "fixed"),
            (PolicyKind::Threshold, _) => write!(f, "threshold"),
            (PolicyKind::Target, _) => write!(f, "target"),
            (PolicyKind::Byterate, _) => write!(f, "byterate"),
            (PolicyKind::Budget, _) => write!(f, "budget"),
        }
    }
}

/// Policy parameters, shared by `simulate`, `watch` and `run`.
#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// Policy: what each checkpoint waits for.
    #[arg(long, value_enum, default_value = "threshold")]
    pub policy: PolicyKind,

    /// Interval for `fixed`, and the starting interval of adaptive policies
    /// (units: ns, us, ms, s; a bare number is ms).
    #[arg(long, value_name = "DURATION", default_value = "200ms")]
    pub interval: Millis,

    /// Lower edge of the size band (B, KiB, MiB, GiB, KB, MB, GB).
    #[arg(long, value_name = "SIZE", default_value = LMIN_DEFAULT)]
    pub lmin: Bytes,

    /// Upper edge of the size band: checkpoints above it shorten the
    /// interval; for `budget`, the size each checkpoint is kept within.
    #[arg(long, value_name = "SIZE", default_value = LMAX_DEFAULT)]
    pub lmax: Bytes,

    /// What counts as the checkpoint's size: wire = bytes_sent, memory =
    /// dirty_pages x page_size, total = bytes_sent + disk bytes.
    #[arg(long, value_enum, default_value = "wire")]
    pub size_metric: SizeMetric,

    /// Shortest interval a policy may choose (budget: no budget smaller
    /// than what the guest dirties in this long).
    #[arg(long, value_name = "DURATION", default_value = "10ms")]
    pub tmin: Millis,

    /// Longest interval a policy may choose (at most 60s); budget: the
    /// interval it commands, the cap on every wait.
    #[arg(long, value_name = "DURATION", default_value = "2s")]
    pub tmax: Millis,

    /// threshold: factor applied to the interval above Lmax (0 < f < 1).
    #[arg(long, value_name = "FACTOR", default_value_t = 0.5)]
    pub decrease: f64,

    /// threshold: factor applied to the interval below Lmin (>= 1).
    #[arg(long, value_name = "FACTOR", default_value_t = 1.25)]
    pub increase: f64,

    /// threshold: added to the interval below Lmin, after --increase.
    #[arg(long, value_name = "DURATION", default_value = "0ms")]
    pub increase_step: Millis,

    /// threshold: consecutive checkpoints below Lmin before growing.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub below_count: u32,

    /// target: size to aim at (default: the middle of [Lmin, Lmax]).
    #[arg(long, value_name = "SIZE")]
    pub target: Option<Bytes>,

    /// target: largest factor by which one step may change the interval.
    #[arg(long, value_name = "FACTOR", default_value_t = 2.0)]
    pub max_step: f64,

    /// target: weight of the newest checkpoint in the falling dirty-rate
    /// average (a rising rate is taken at once).
    #[arg(long, value_name = "WEIGHT", default_value_t = 0.3)]
    pub alpha: f64,

    /// byterate: target link rate R, bytes per second (B, KiB, MiB, ...
    /// per second); the next interval is the last checkpoint's bytes / R.
    #[arg(long, value_name = "SIZE_PER_S", default_value = "64MiB")]
    pub byte_rate: Bytes,
}

impl Default for PolicyArgs {
    fn default() -> Self {
        use clap::Parser;

        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: PolicyArgs,
        }
        // The defaults are those declared above; parsing no arguments
        // cannot fail.
        Wrapper::try_parse_from(["remus-ckpt"])
            .map(|w| w.args)
            .unwrap_or_else(|e| unreachable!("policy defaults do not parse: {e}"))
    }
}

fn to_ms(m: Millis) -> u32 {
    crate::units::duration_to_ms_saturating(m.0)
}

impl PolicyArgs {
    /// Checks the parameters together; errors say which one and why.
    pub fn validate(&self) -> Result<()> {
        if self.lmin.0 >= self.lmax.0 {
            bail!(
                "--lmin ({}) must be below --lmax ({})",
                self.lmin,
                self.lmax
            );
        }
        let (tmin, tmax) = (to_ms(self.tmin), to_ms(self.tmax));
        if tmin == 0 {
            bail!("--tmin must be at least 1ms");
        }
        if tmin > tmax {
            bail!("--tmin ({tmin}ms) must not exceed --tmax ({tmax}ms)");
        }
        if tmax > INTERVAL_MAX_MS {
            bail!("--tmax ({tmax}ms) is above the save side's limit of {INTERVAL_MAX_MS}ms");
        }
        let interval = to_ms(self.interval);
        if interval == 0 || interval > INTERVAL_MAX_MS {
            bail!("--interval must be between 1ms and {INTERVAL_MAX_MS}ms");
        }
        if !(self.decrease > 0.0 && self.decrease < 1.0) {
            bail!("--decrease must be between 0 and 1 (got {})", self.decrease);
        }
        if !(self.increase >= 1.0 && self.increase.is_finite()) {
            bail!("--increase must be at least 1 (got {})", self.increase);
        }
        if self.increase == 1.0 && self.increase_step.0.is_zero() {
            bail!("--increase 1 with --increase-step 0 never lengthens the interval");
        }
        if !(self.max_step > 1.0 && self.max_step.is_finite()) {
            bail!("--max-step must be above 1 (got {})", self.max_step);
        }
        if !(self.alpha > 0.0 && self.alpha <= 1.0) {
            bail!("--alpha must be in (0, 1] (got {})", self.alpha);
        }
        if self.byte_rate.0 == 0 {
            bail!("--byte-rate must be above 0 bytes per second");
        }
        if let Some(t) = self.target {
            if t.0 < self.lmin.0 || t.0 > self.lmax.0 {
                bail!("--target ({t}) must lie inside [--lmin, --lmax]");
            }
        }
        Ok(())
    }

    /// The policy these arguments describe.
    pub fn build(&self) -> Result<Box<dyn Policy>> {
        self.build_spec(&PolicySpec {
            kind: self.policy,
            interval: None,
        })
    }

    /// The [tmin, tmax] range of the adaptive policies, ms.
    pub fn clamp(&self) -> Clamp {
        Clamp {
            tmin_ms: to_ms(self.tmin),
            tmax_ms: to_ms(self.tmax),
        }
    }

    /// The starting interval of the adaptive policies (--interval,
    /// clamped), ms.
    pub fn initial_ms(&self) -> u32 {
        self.clamp().apply(f64::from(to_ms(self.interval)))
    }

    /// The policy `spec` names, with the other parameters from `self`.
    pub fn build_spec(&self, spec: &PolicySpec) -> Result<Box<dyn Policy>> {
        self.validate()?;
        let clamp = self.clamp();
        let initial_ms = self.initial_ms();
        Ok(match spec.kind {
            PolicyKind::Fixed => {
                let ms = to_ms(spec.interval.unwrap_or(self.interval));
                if ms == 0 || ms > INTERVAL_MAX_MS {
                    bail!("fixed interval must be between 1ms and {INTERVAL_MAX_MS}ms");
                }
                Box::new(Fixed::new(ms))
            }
            PolicyKind::Threshold => Box::new(Threshold {
                lmin_bytes: self.lmin.0,
                lmax_bytes: self.lmax.0,
                decrease: self.decrease,
                increase: self.increase,
                increase_step_ms: self.increase_step.as_ms_f64(),
                below_count: self.below_count.max(1),
                clamp,
                interval_ms: initial_ms,
                below_run: 0,
            }),
            PolicyKind::Target => Box::new(Target::new(
                self.target
                    .map(|t| t.0)
                    .unwrap_or((self.lmin.0 + self.lmax.0) / 2),
                self.max_step,
                self.alpha,
                clamp,
                initial_ms,
            )),
            PolicyKind::Byterate => Box::new(ByteRate::new(self.byte_rate.0, clamp, initial_ms)),
            PolicyKind::Budget => Box::new(Budget::new(budget::BudgetConfig::new(
                self.lmax.0,
                clamp,
                self.size_metric,
            ))),
        })
    }
}

/// The [tmin, tmax] range every adaptive policy stays in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clamp {
    pub tmin_ms: u32,
    pub tmax_ms: u32,
}

impl Clamp {
    pub fn apply(&self, ms: f64) -> u32 {
        if ms.is_nan() {
            return self.tmin_ms;
        }
        crate::units::round_to_u32_saturating(
            ms.round()
                .clamp(f64::from(self.tmin_ms), f64::from(self.tmax_ms)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        let s: PolicySpec = "fixed:25ms".parse().unwrap();
        assert_eq!(s.kind, PolicyKind::Fixed);
        assert_eq!(s.to_string(), "fixed:25ms");
        assert_eq!(
            "threshold".parse::<PolicySpec>().unwrap().kind,
            PolicyKind::Threshold
        );
        assert!("target:5ms".parse::<PolicySpec>().is_err());
        assert_eq!(
            "byterate".parse::<PolicySpec>().unwrap().to_string(),
            "byterate"
        );
        assert!("pid".parse::<PolicySpec>().is_err());
        let b: PolicySpec = "budget".parse().unwrap();
        assert_eq!(
            (b.kind, b.to_string()),
            (PolicyKind::Budget, "budget".into())
        );
        assert!("budget:4000".parse::<PolicySpec>().is_err());
    }

    #[test]
    fn budget_commands_tmax_and_a_budget_the_others_none() {
        let args = PolicyArgs {
            policy: PolicyKind::Budget,
            ..PolicyArgs::default()
        };
        let d = args.build().unwrap().initial();
        assert_eq!(d.interval_ms, 2000, "tmax is the latency cap");
        assert!(d.budget_pages > 0);
        for kind in [
            PolicyKind::Fixed,
            PolicyKind::Threshold,
            PolicyKind::Target,
            PolicyKind::Byterate,
        ] {
            let args = PolicyArgs {
                policy: kind,
                ..PolicyArgs::default()
            };
            let mut p = args.build().unwrap();
            assert_eq!(p.initial().budget_pages, 0, "{kind:?}");
            let obs = Observation {
                size_bytes: 8 << 20,
                period_ms: 200.0,
                ..Observation::default()
            };
            assert_eq!(p.decide(&obs).budget_pages, 0, "{kind:?}");
        }
    }

    #[test]
    fn defaults_validate_and_bad_values_do_not() {
        let args = PolicyArgs::default();
        args.validate().unwrap();
        assert_eq!(args.lmax.0, 16 << 20);
        let bad = PolicyArgs {
            lmin: Bytes(32 << 20),
            ..PolicyArgs::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("--lmin"));
        let bad = PolicyArgs {
            decrease: 1.5,
            ..PolicyArgs::default()
        };
        assert!(bad.validate().is_err());
    }
}
