//! What `simulate --compare` takes: policies, fixed-interval sweeps and the
//! offline oracle, each expanding to the runs the compare makes.
//!
//! * a policy spec (`fixed:25ms`, `threshold`, `target`, `byterate`,
//!   `budget`);
//! * `sweep:FROM..TO[:N]`: N fixed intervals (default 8) from FROM to TO on
//!   a log scale, so the table shows the fixed-interval Pareto front
//!   (checkpoints against share within Lmax); `sweep` alone spans
//!   [--tmin, --tmax];
//! * `oracle`: the offline optimum (src/source/sim/oracle.rs), the yardstick
//!   the ratio columns are taken against.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Context, Result};

use super::{PolicyArgs, PolicyKind, PolicySpec, INTERVAL_MAX_MS};
use crate::source::sim::oracle::LABEL as ORACLE;
use crate::units::Millis;

/// Points of a sweep without `:N`.
pub const SWEEP_DEFAULT_POINTS: usize = 8;
/// Most points one sweep may ask for.
pub const SWEEP_MAX_POINTS: usize = 64;

/// One comma-separated entry of `--compare`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CompareSpec {
    Policy(PolicySpec),
    /// Fixed intervals from..to (None: --tmin..--tmax), `points` of them.
    Sweep {
        range: Option<(Millis, Millis)>,
        points: usize,
    },
    Oracle,
}

/// One run of a compare.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CompareRun {
    Policy(PolicySpec),
    Oracle,
}

impl CompareRun {
    /// The name in the table, e.g. `fixed:25ms`, `oracle`.
    pub fn label(&self) -> String {
        match self {
            CompareRun::Policy(spec) => spec.to_string(),
            CompareRun::Oracle => ORACLE.to_string(),
        }
    }
}

impl FromStr for CompareSpec {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s == ORACLE {
            return Ok(CompareSpec::Oracle);
        }
        if s == "sweep" {
            return Ok(CompareSpec::Sweep {
                range: None,
                points: SWEEP_DEFAULT_POINTS,
            });
        }
        let Some(arg) = s.strip_prefix("sweep:") else {
            return s.parse().map(CompareSpec::Policy).map_err(|e| {
                anyhow::anyhow!("{e}; --compare also takes sweep:FROM..TO[:N] and oracle")
            });
        };
        let (range, points) = match arg.split_once(':') {
            Some((range, n)) => (
                range,
                n.parse::<usize>()
                    .with_context(|| format!("sweep point count '{n}' in '{s}'"))?,
            ),
            None => (arg, SWEEP_DEFAULT_POINTS),
        };
        let Some((from, to)) = range.split_once("..") else {
            bail!("'{s}': a sweep is sweep:FROM..TO[:N], e.g. sweep:10ms..2s:8");
        };
        let from: Millis = from.parse().with_context(|| format!("in '{s}'"))?;
        let to: Millis = to.parse().with_context(|| format!("in '{s}'"))?;
        let spec = CompareSpec::Sweep {
            range: Some((from, to)),
            points,
        };
        // Check the range now, so a typo fails before any run.
        sweep_ms(from, to, points).with_context(|| format!("in '{s}'"))?;
        Ok(spec)
    }
}

impl fmt::Display for CompareSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompareSpec::Policy(spec) => write!(f, "{spec}"),
            CompareSpec::Oracle => write!(f, "{ORACLE}"),
            CompareSpec::Sweep { range: None, .. } => write!(f, "sweep"),
            CompareSpec::Sweep {
                range: Some((a, b)),
                points,
            } => write!(f, "sweep:{a}..{b}:{points}"),
        }
    }
}

/// `points` intervals from `from` to `to` inclusive, evenly spaced on a log
/// scale, rounded to whole ms; duplicates after rounding appear once.
pub fn sweep_ms(from: Millis, to: Millis, points: usize) -> Result<Vec<u32>> {
    let ms = |m: Millis| crate::units::duration_to_ms_saturating(m.0);
    let (a, b) = (ms(from), ms(to));
    if a == 0 || b > INTERVAL_MAX_MS || a >= b {
        bail!("a sweep needs 1ms <= FROM < TO <= {INTERVAL_MAX_MS}ms (got {a}ms..{b}ms)");
    }
    if !(2..=SWEEP_MAX_POINTS).contains(&points) {
        bail!("a sweep has 2 to {SWEEP_MAX_POINTS} points (got {points})");
    }
    let ratio = f64::from(b) / f64::from(a);
    let mut out: Vec<u32> = (0..points)
        .map(|i| {
            let f = i as f64 / (points - 1) as f64;
            crate::units::round_to_u32_saturating(f64::from(a) * ratio.powf(f))
        })
        .collect();
    out.dedup();
    Ok(out)
}

/// The runs `specs` ask for, in order; a run named twice runs once.
pub fn expand(specs: &[CompareSpec], policy: &PolicyArgs) -> Result<Vec<CompareRun>> {
    let mut runs: Vec<CompareRun> = Vec::new();
    let mut push = |run: CompareRun| {
        if !runs.iter().any(|r| r.label() == run.label()) {
            runs.push(run);
        }
    };
    for spec in specs {
        match *spec {
            CompareSpec::Policy(p) => push(CompareRun::Policy(p)),
            CompareSpec::Oracle => push(CompareRun::Oracle),
            CompareSpec::Sweep { range, points } => {
                let (from, to) = range.unwrap_or((policy.tmin, policy.tmax));
                for ms in sweep_ms(from, to, points).context("in --compare sweep")? {
                    push(CompareRun::Policy(PolicySpec {
                        kind: PolicyKind::Fixed,
                        interval: Some(Millis(std::time::Duration::from_millis(u64::from(ms)))),
                    }));
                }
            }
        }
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Millis {
        Millis(std::time::Duration::from_millis(n))
    }

    #[test]
    fn sweep_is_log_spaced_and_ends_on_the_range() {
        // 10 ms .. 1000 ms in 3 points: 10, 100, 1000 (a ratio of 10 each).
        assert_eq!(sweep_ms(ms(10), ms(1000), 3).unwrap(), vec![10, 100, 1000]);
        // 10 ms .. 2 s in 8: 10 x 200^(i/7), e.g. i = 5: e^(5/7 ln 200) =
        // e^3.7845 = 43.98 -> 439.8 ms -> 440.
        assert_eq!(
            sweep_ms(ms(10), ms(2000), 8).unwrap(),
            vec![10, 21, 45, 97, 206, 440, 938, 2000]
        );
        // Rounding may merge neighbours: they appear once.
        assert_eq!(sweep_ms(ms(1), ms(3), 8).unwrap(), vec![1, 2, 3]);
    }

    #[test]
    fn sweep_rejects_bad_ranges() {
        assert!(sweep_ms(ms(0), ms(10), 4).is_err());
        assert!(sweep_ms(ms(100), ms(10), 4).is_err());
        assert!(sweep_ms(ms(10), ms(120_000), 4).is_err());
        assert!(sweep_ms(ms(10), ms(100), 1).is_err());
        assert!("sweep:10ms".parse::<CompareSpec>().is_err());
        assert!("sweep:10ms..2s:x".parse::<CompareSpec>().is_err());
        assert!("sweep:2s..10ms".parse::<CompareSpec>().is_err());
    }

    #[test]
    fn specs_expand_to_runs_once_each() {
        let specs: Vec<CompareSpec> = ["fixed:100ms", "sweep:10ms..1s:3", "oracle", "threshold"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let labels: Vec<String> = expand(&specs, &PolicyArgs::default())
            .unwrap()
            .iter()
            .map(CompareRun::label)
            .collect();
        assert_eq!(
            labels,
            [
                "fixed:100ms",
                "fixed:10ms",
                "fixed:1000ms",
                "oracle",
                "threshold"
            ]
        );
    }

    #[test]
    fn bare_sweep_spans_tmin_to_tmax() {
        let policy = PolicyArgs {
            tmin: ms(20),
            tmax: ms(500),
            ..PolicyArgs::default()
        };
        let runs = expand(&["sweep".parse().unwrap()], &policy).unwrap();
        assert_eq!(runs.len(), SWEEP_DEFAULT_POINTS);
        assert_eq!(runs[0].label(), "fixed:20ms");
        assert_eq!(runs[SWEEP_DEFAULT_POINTS - 1].label(), "fixed:500ms");
    }

    #[test]
    fn unknown_entries_name_the_alternatives() {
        let err = "pid".parse::<CompareSpec>().unwrap_err().to_string();
        assert!(err.contains("sweep:FROM..TO"), "{err}");
        assert!(err.contains("byterate"), "{err}");
    }
}
