//! Control quality: each adaptive policy against fixed intervals, per
//! workload, in virtual time (`run_virtual`: deterministic for the seed,
//! same guest for every policy).
//!
//! Per run: the share of checkpoint sizes at or below Lmax (higher is
//! better: the pause bound holds) and the mean achieved interval (higher is
//! better: fewer checkpoints, less overhead). An adaptive policy
//! Pareto-dominates a fixed interval when it is at least as good on both
//! and strictly better on one. Default policy, domain and workload
//! parameters throughout (Lmax 16 MiB, wire size).

mod common;

use anyhow::{Context, Result};
use clap::Parser;
use common::Row;
use remus_ckpt::pipeline::Controller;
use remus_ckpt::policy::{PolicyArgs, PolicyKind, PolicySpec};
use remus_ckpt::source::sim::domain::{Domain, DomainArgs, PAGE_SIZE};
use remus_ckpt::source::sim::drive;
use remus_ckpt::source::sim::workload::{Workload, WorkloadArgs, WorkloadKind};
use remus_ckpt::units::Millis;

const SECTION: &str = "control";
const FIXED_MS: [u64; 6] = [10, 25, 50, 100, 200, 400];
/// Workloads on which threshold and target are held to dominating every
/// fixed interval; on the others their row is informational (the Pareto
/// rows in docs/benchmarks.md).
const TARGETED: [&str; 3] = ["steady", "bursty", "phases"];

#[derive(Parser)]
struct Defaults {
    #[command(flatten)]
    workload: WorkloadArgs,
    #[command(flatten)]
    domain: DomainArgs,
}

#[derive(Debug, Clone, Copy)]
struct Quality {
    /// Share of non-live checkpoints with size <= Lmax, percent.
    within_lmax_pct: f64,
    /// Mean achieved period of non-live checkpoints, ms.
    mean_interval_ms: f64,
}

impl Quality {
    fn dominates(&self, other: &Quality) -> bool {
        let ge = self.within_lmax_pct >= other.within_lmax_pct
            && self.mean_interval_ms >= other.mean_interval_ms;
        let gt = self.within_lmax_pct > other.within_lmax_pct
            || self.mean_interval_ms > other.mean_interval_ms;
        ge && gt
    }

    fn show(&self) -> String {
        format!(
            "{:.1}% <= Lmax, mean {:.1} ms",
            self.within_lmax_pct, self.mean_interval_ms
        )
    }
}

fn main() -> Result<()> {
    let duration_s = if common::quick() { 60.0 } else { 300.0 };
    let policy = PolicyArgs::default();
    let defaults =
        Defaults::try_parse_from(["bench"]).context("default workload/domain arguments")?;
    eprintln!(
        "control: {duration_s:.0} s of virtual time per run, seed {}, Lmin {}, Lmax {}, tmin {} ms, tmax {} ms",
        defaults.workload.seed,
        policy.lmin,
        policy.lmax,
        policy.tmin.0.as_millis(),
        policy.tmax.0.as_millis()
    );
    for kind in [
        WorkloadKind::Steady,
        WorkloadKind::Bursty,
        WorkloadKind::Phases,
        WorkloadKind::Ramp,
    ] {
        let name = kind.to_string();
        let mut args = defaults.workload.clone();
        args.workload = kind;
        let domain = Domain::new(
            &defaults.domain,
            Workload::new(&args, PAGE_SIZE, duration_s)?,
        )?;

        let mut fixed = Vec::new();
        for ms in FIXED_MS {
            let spec = PolicySpec {
                kind: PolicyKind::Fixed,
                interval: Some(Millis(std::time::Duration::from_millis(ms))),
            };
            let q = run(&domain, duration_s, &policy, &spec)?;
            Row {
                section: SECTION,
                case: &format!("{name}: fixed {ms} ms"),
                value: q.show(),
                baseline: "-".into(),
                vs_baseline: "-".into(),
                target: "(baseline)",
                met: "-".into(),
            }
            .print();
            fixed.push((ms, q));
        }
        for kind in [PolicyKind::Threshold, PolicyKind::Target] {
            let spec = PolicySpec {
                kind,
                interval: None,
            };
            let q = run(&domain, duration_s, &policy, &spec)?;
            let not: Vec<String> = fixed
                .iter()
                .filter(|(_, f)| !q.dominates(f))
                .map(|(ms, f)| {
                    format!(
                        "{ms} ms ({:.1}%, {:.1} ms)",
                        f.within_lmax_pct, f.mean_interval_ms
                    )
                })
                .collect();
            let dominated = FIXED_MS.len() - not.len();
            // The weaker question: is the policy on the trade-off frontier
            // the fixed intervals draw, or is some fixed interval better?
            let beaten_by: Vec<String> = fixed
                .iter()
                .filter(|(_, f)| f.dominates(&q))
                .map(|(ms, _)| format!("{ms} ms"))
                .collect();
            let beaten_by = if beaten_by.is_empty() {
                "none".to_string()
            } else {
                beaten_by.join(", ")
            };
            let same_safety = match fixed_equivalent_ms(&fixed, q.within_lmax_pct) {
                Some(ms) => format!(
                    "{:.2}x the fixed interval at equal safety ({ms:.0} ms)",
                    q.mean_interval_ms / ms
                ),
                None => "safer than every fixed interval".into(),
            };
            let targeted = TARGETED.contains(&name.as_str());
            Row {
                section: SECTION,
                case: &format!("{name}: {spec}"),
                value: q.show(),
                baseline: "fixed 10..400 ms above".into(),
                vs_baseline: format!(
                    "dominates {dominated}/{} fixed; dominated by {beaten_by}; {same_safety}",
                    FIXED_MS.len()
                ),
                target: if targeted {
                    "dominate every fixed"
                } else {
                    "(informational)"
                },
                met: match (targeted, not.is_empty()) {
                    (_, true) => "met".into(),
                    (true, false) => format!("MISSED: not over {}", not.join(", ")),
                    (false, false) => format!("not over {}", not.join(", ")),
                },
            }
            .print();
        }
        if std::env::var_os("BENCH_SWEEP").is_some() {
            sweep(&name, &domain, duration_s, &policy, &fixed)?;
        }
    }
    Ok(())
}

/// `BENCH_SWEEP=1`: non-default parameters of the adaptive policies, to
/// see whether the defaults are a reasonable choice (informational rows).
fn sweep(
    name: &str,
    domain: &Domain,
    duration_s: f64,
    defaults: &PolicyArgs,
    fixed: &[(u64, Quality)],
) -> Result<()> {
    let mib = |n: u64| remus_ckpt::units::Bytes(n << 20);
    let ms = |n: u64| Millis(std::time::Duration::from_millis(n));
    let mut variants: Vec<(String, PolicyArgs)> = Vec::new();
    for t in [6, 8, 12, 14] {
        variants.push((
            format!("target --target {t}MiB"),
            PolicyArgs {
                policy: PolicyKind::Target,
                target: Some(mib(t)),
                ..defaults.clone()
            },
        ));
    }
    for tmax in [200, 400] {
        variants.push((
            format!("target --tmax {tmax}ms"),
            PolicyArgs {
                policy: PolicyKind::Target,
                tmax: ms(tmax),
                ..defaults.clone()
            },
        ));
    }
    for lmin in [8, 12] {
        variants.push((
            format!("threshold --lmin {lmin}MiB"),
            PolicyArgs {
                policy: PolicyKind::Threshold,
                lmin: mib(lmin),
                ..defaults.clone()
            },
        ));
    }
    for tmax in [200, 400] {
        variants.push((
            format!("threshold --tmax {tmax}ms"),
            PolicyArgs {
                policy: PolicyKind::Threshold,
                tmax: ms(tmax),
                ..defaults.clone()
            },
        ));
    }
    variants.push((
        "threshold --lmin 12MiB --decrease 0.25".into(),
        PolicyArgs {
            policy: PolicyKind::Threshold,
            lmin: mib(12),
            decrease: 0.25,
            ..defaults.clone()
        },
    ));
    for (label, args) in variants {
        let spec = PolicySpec {
            kind: args.policy,
            interval: None,
        };
        let q = run(domain, duration_s, &args, &spec)?;
        let dominated = fixed.iter().filter(|(_, f)| q.dominates(f)).count();
        let beaten_by: Vec<String> = fixed
            .iter()
            .filter(|(_, f)| f.dominates(&q))
            .map(|(ms, _)| format!("{ms} ms"))
            .collect();
        let same_safety = fixed_equivalent_ms(fixed, q.within_lmax_pct)
            .map_or("safer than every fixed".into(), |f| {
                format!("{:.2}x at equal safety", q.mean_interval_ms / f)
            });
        Row {
            section: SECTION,
            case: &format!("{name}: sweep {label}"),
            value: q.show(),
            baseline: "fixed 10..400 ms above".into(),
            vs_baseline: format!(
                "dominates {dominated}/{}; dominated by {}; {same_safety}",
                fixed.len(),
                if beaten_by.is_empty() {
                    "none".into()
                } else {
                    beaten_by.join(", ")
                }
            ),
            target: "(sweep, informational)",
            met: "-".into(),
        }
        .print();
    }
    Ok(())
}

/// The fixed interval that would give `pct` % of sizes <= Lmax on this
/// workload: linear between the measured fixed intervals (the share falls
/// as the interval grows); the longest measured one when several reach
/// `pct`. `None` when no fixed interval is that safe.
fn fixed_equivalent_ms(fixed: &[(u64, Quality)], pct: f64) -> Option<f64> {
    let safe: Vec<&(u64, Quality)> = fixed
        .iter()
        .filter(|(_, q)| q.within_lmax_pct >= pct)
        .collect();
    let &(ms_a, qa) = *safe.last()?;
    let next = fixed.iter().find(|(ms, _)| *ms > ms_a);
    Some(match next {
        Some(&(ms_b, qb)) if qa.within_lmax_pct > pct && qb.within_lmax_pct < pct => {
            let f = (qa.within_lmax_pct - pct) / (qa.within_lmax_pct - qb.within_lmax_pct);
            ms_a as f64 + f * (ms_b - ms_a) as f64
        }
        _ => ms_a as f64,
    })
}

fn run(
    domain: &Domain,
    duration_s: f64,
    policy: &PolicyArgs,
    spec: &PolicySpec,
) -> Result<Quality> {
    let mut controller = Controller::new(policy.build_spec(spec)?, policy.size_metric);
    let lmax_bytes = policy.lmax.0;
    let (mut n, mut within, mut period_sum_ms, mut periods) = (0u64, 0u64, 0.0, 0u64);
    drive::run_virtual(
        domain,
        duration_s,
        &mut controller,
        |_, _| Default::default(),
        |row| {
            if row.live == 0 {
                n += 1;
                if row.size_bytes <= lmax_bytes {
                    within += 1;
                }
                if row.period_ms > 0.0 {
                    period_sum_ms += row.period_ms;
                    periods += 1;
                }
            }
            Ok(())
        },
    )
    .with_context(|| format!("virtual run of {spec}"))?;
    Ok(Quality {
        within_lmax_pct: if n == 0 {
            f64::NAN
        } else {
            100.0 * within as f64 / n as f64
        },
        mean_interval_ms: if periods == 0 {
            f64::NAN
        } else {
            period_sum_ms / periods as f64
        },
    })
}
