//! Workload models: the guest's page-dirtying rate over time.
//!
//! Dirtying is modelled as uniform random writes over a working set of W
//! pages at rate r(t): after running for a span, the number of distinct
//! dirty pages is W (1 - exp(-∫r dt / W)). That gives the real shape seen
//! on Xen: linear for short intervals, levelling off at the working set for
//! long ones. The rate is piecewise constant over 50 ms slots with a
//! seeded multiplicative noise, and everything is a pure function of time,
//! so two runs with the same seed see the same guest whatever their
//! checkpoint times. docs/workloads.md lists the suite and its parameters.
//!
//! A trace knows its rate only for the time it covers: a run on it ends
//! where the trace ends ([`Workload::end_s`]), or replays it from its start
//! again with `--loop`; nothing is invented past its end.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::units::{round_to_u64_saturating, Bytes, Millis};

/// Rate granularity: noise and bursts change at most this often.
const SLOT_S: f64 = 0.05;

/// The workload families.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkloadKind {
    /// Constant rate (--rate).
    Steady,
    /// Low rate with random bursts of the high rate.
    Bursty,
    /// Alternating low and high rates, --phase each, starting low.
    Phases,
    /// Rate rising linearly from low to high over the run.
    Ramp,
    /// Dirty rate replayed from a CSV this tool wrote (dirty_pages / period).
    Trace(PathBuf),
}

impl FromStr for WorkloadKind {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "steady" => WorkloadKind::Steady,
            "bursty" => WorkloadKind::Bursty,
            "phases" => WorkloadKind::Phases,
            "ramp" => WorkloadKind::Ramp,
            _ => match s.strip_prefix("trace:") {
                Some(path) if !path.is_empty() => WorkloadKind::Trace(PathBuf::from(path)),
                _ => bail!("unknown workload '{s}' (steady, bursty, phases, ramp, trace:FILE.csv)"),
            },
        })
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkloadKind::Steady => write!(f, "steady"),
            WorkloadKind::Bursty => write!(f, "bursty"),
            WorkloadKind::Phases => write!(f, "phases"),
            WorkloadKind::Ramp => write!(f, "ramp"),
            WorkloadKind::Trace(p) => write!(f, "trace:{}", p.display()),
        }
    }
}

impl WorkloadKind {
    /// The kind as a figure title names it: a trace by its file name, not
    /// its full path.
    pub fn short_name(&self) -> String {
        match self {
            WorkloadKind::Trace(p) => match p.file_name() {
                Some(name) => format!("trace:{}", name.to_string_lossy()),
                None => self.to_string(),
            },
            _ => self.to_string(),
        }
    }
}

/// Workload parameters on the command line.
#[derive(Debug, Clone, Args)]
pub struct WorkloadArgs {
    /// Guest behaviour: steady, bursty, phases, ramp, or trace:FILE.csv.
    #[arg(long, value_name = "KIND", default_value = "phases")]
    pub workload: WorkloadKind,

    /// steady: dirtying rate, pages per second.
    #[arg(long, value_name = "PAGES_PER_S", default_value_t = 10_000.0)]
    pub rate: f64,

    /// phases/bursty/ramp: the low dirtying rate, pages per second.
    #[arg(long, value_name = "PAGES_PER_S", default_value_t = 2_500.0)]
    pub low_rate: f64,

    /// phases/bursty/ramp: the high dirtying rate, pages per second.
    #[arg(long, value_name = "PAGES_PER_S", default_value_t = 50_000.0)]
    pub high_rate: f64,

    /// phases: length of each low or high phase.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub phase: Millis,

    /// bursty: share of time spent in bursts (0..1).
    #[arg(long, value_name = "FRACTION", default_value_t = 0.2)]
    pub burst_share: f64,

    /// bursty: length of one burst.
    #[arg(long, value_name = "DURATION", default_value = "500ms")]
    pub burst: Millis,

    /// Relative noise on the rate, per 50 ms (0 = none).
    #[arg(long, value_name = "FRACTION", default_value_t = 0.1)]
    pub noise: f64,

    /// Memory the guest writes to (bounds the dirty set of one checkpoint).
    #[arg(long, value_name = "SIZE", default_value = "256MiB")]
    pub working_set: Bytes,

    /// Seed of the noise and burst placement.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// trace: when the trace ends, replay it from its start (default: the
    /// run ends with the trace, whatever --duration says).
    #[arg(long = "loop")]
    pub loop_trace: bool,
}

/// A workload, ready to answer "how many pages got dirty in [a, b)".
#[derive(Debug, Clone)]
pub struct Workload {
    kind: WorkloadKind,
    rate: f64,
    low_rate: f64,
    high_rate: f64,
    phase_s: f64,
    burst_share: f64,
    burst_s: f64,
    noise: f64,
    working_set_pages: f64,
    seed: u64,
    /// Run length, for ramp.
    duration_s: f64,
    /// Trace: (start time s, rate pages/s), sorted.
    trace: Vec<(f64, f64)>,
    /// Trace: the time it covers, s (the last checkpoint's suspend).
    trace_end_s: f64,
    /// Trace: replay from the start past `trace_end_s`.
    loop_trace: bool,
}

impl Workload {
    pub fn new(args: &WorkloadArgs, page_size: u32, duration_s: f64) -> Result<Self> {
        for (name, v) in [
            ("--rate", args.rate),
            ("--low-rate", args.low_rate),
            ("--high-rate", args.high_rate),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                bail!("{name} must be a rate >= 0 pages/s (got {v})");
            }
        }
        if !(0.0..=1.0).contains(&args.burst_share) {
            bail!("--burst-share must be between 0 and 1");
        }
        if !(0.0..1.0).contains(&args.noise) {
            bail!("--noise must be in [0, 1)");
        }
        let working_set_pages = (args.working_set.0 / u64::from(page_size.max(1))) as f64;
        if working_set_pages < 1.0 {
            bail!("--working-set must be at least one page");
        }
        let (trace, trace_end_s) = match &args.workload {
            WorkloadKind::Trace(path) => load_trace(path)?,
            _ => (Vec::new(), 0.0),
        };
        if args.loop_trace && trace.is_empty() {
            bail!("--loop replays a trace; use it with --workload trace:FILE.csv");
        }
        Ok(Workload {
            kind: args.workload.clone(),
            rate: args.rate,
            low_rate: args.low_rate,
            high_rate: args.high_rate,
            phase_s: args.phase.0.as_secs_f64().max(SLOT_S),
            burst_share: args.burst_share,
            burst_s: args.burst.0.as_secs_f64().max(SLOT_S),
            noise: args.noise,
            working_set_pages,
            seed: args.seed,
            duration_s: duration_s.max(SLOT_S),
            trace,
            trace_end_s,
            loop_trace: args.loop_trace,
        })
    }

    /// Where the guest's behaviour is known to end, seconds from the start:
    /// a trace's length unless it loops; `None` for the models, which are
    /// defined for all time.
    pub fn end_s(&self) -> Option<f64> {
        match self.kind {
            WorkloadKind::Trace(_) if !self.loop_trace => Some(self.trace_end_s),
            _ => None,
        }
    }

    /// The mean rate at `t_s`, pages per second, before noise.
    pub fn base_rate(&self, t_s: f64) -> f64 {
        match &self.kind {
            WorkloadKind::Steady => self.rate,
            WorkloadKind::Phases => {
                if round_to_u64_saturating((t_s / self.phase_s).floor()) % 2 == 0 {
                    self.low_rate
                } else {
                    self.high_rate
                }
            }
            WorkloadKind::Bursty => {
                let window = round_to_u64_saturating((t_s / self.burst_s).floor());
                if unit(self.seed ^ 0xb0b5, window) < self.burst_share {
                    self.high_rate
                } else {
                    self.low_rate
                }
            }
            WorkloadKind::Ramp => {
                let f = (t_s / self.duration_s).clamp(0.0, 1.0);
                self.low_rate + f * (self.high_rate - self.low_rate)
            }
            WorkloadKind::Trace(_) => {
                let t_s = if self.loop_trace {
                    t_s.rem_euclid(self.trace_end_s)
                } else {
                    // Past the end only the run's last epoch can reach (the
                    // gate suspends after the run's end at most one
                    // interval late); it sees the last rate.
                    t_s
                };
                let i = self.trace.partition_point(|(start, _)| *start <= t_s);
                self.trace.get(i.saturating_sub(1)).map_or(0.0, |(_, r)| *r)
            }
        }
    }

    /// The rate in the 50 ms slot holding `t_s`, noise included.
    fn slot_rate(&self, slot: u64) -> f64 {
        let t = slot as f64 * SLOT_S;
        let jitter = 1.0 + self.noise * (2.0 * unit(self.seed, slot) - 1.0);
        self.base_rate(t) * jitter
    }

    /// Pages written (with repeats) while the guest ran in [from_s, to_s).
    pub fn writes(&self, from_s: f64, to_s: f64) -> f64 {
        if to_s <= from_s {
            return 0.0;
        }
        // Iterate over slot indices, not a float cursor: a cursor can stop
        // advancing when a slot edge rounds onto it.
        let from_s = from_s.max(0.0);
        let first = round_to_u64_saturating((from_s / SLOT_S).floor());
        let last = round_to_u64_saturating((to_s / SLOT_S).ceil());
        let mut total = 0.0;
        for slot in first..last {
            let a = from_s.max(slot as f64 * SLOT_S);
            let b = to_s.min((slot + 1) as f64 * SLOT_S);
            if b > a {
                total += self.slot_rate(slot) * (b - a);
            }
        }
        total
    }

    /// Distinct pages dirty after running in [from_s, to_s).
    pub fn dirty_pages(&self, from_s: f64, to_s: f64) -> u64 {
        let w = self.working_set_pages;
        round_to_u64_saturating(w * (1.0 - (-self.writes(from_s, to_s) / w).exp()))
    }
}

/// splitmix64 of (seed, n) mapped to [0, 1): noise that depends only on
/// the seed and the time slot.
fn unit(seed: u64, n: u64) -> f64 {
    let mut z = seed
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(n)
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// A trace's (start s, rate pages/s) steps from its first period's start,
/// and the time it covers (its last suspend), seconds.
fn load_trace(path: &std::path::Path) -> Result<(Vec<(f64, f64)>, f64)> {
    let rows = crate::row::read_csv(path)
        .with_context(|| format!("cannot load trace {}", path.display()))?;
    let mut points: Vec<(f64, f64)> = rows
        .iter()
        // The live round and rows without a period carry no rate.
        .filter(|row| row.live == 0 && row.period_ms > 0.0)
        .map(|row| {
            let start_s = (row.t_s - row.period_ms / 1e3).max(0.0);
            (start_s, row.dirty_pages as f64 / (row.period_ms / 1e3))
        })
        .collect();
    if points.is_empty() {
        bail!(
            "trace {} has no checkpoint with a period to replay",
            path.display()
        );
    }
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let t0 = points[0].0;
    let end_s = rows
        .iter()
        .filter(|row| row.live == 0 && row.period_ms > 0.0)
        .map(|row| row.t_s - t0)
        .fold(0.0, f64::max);
    if end_s < SLOT_S {
        bail!(
            "trace {} covers {end_s:.3}s, less than one {SLOT_S}s slot",
            path.display()
        );
    }
    let points = points.into_iter().map(|(t, r)| (t - t0, r)).collect();
    Ok((points, end_s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct W {
        #[command(flatten)]
        w: WorkloadArgs,
    }

    fn workload(args: &[&str]) -> Workload {
        let mut argv = vec!["t"];
        argv.extend_from_slice(args);
        Workload::new(&W::parse_from(argv).w, 4096, 60.0).unwrap()
    }

    #[test]
    fn a_trace_is_named_by_its_file_name() {
        let kind: WorkloadKind = "trace:/srv/traces/db-night.csv".parse().unwrap();
        assert_eq!(kind.to_string(), "trace:/srv/traces/db-night.csv");
        assert_eq!(kind.short_name(), "trace:db-night.csv");
        assert_eq!(WorkloadKind::Bursty.short_name(), "bursty");
    }

    #[test]
    fn phases_alternate_at_least_ten_fold() {
        let w = workload(&["--workload", "phases", "--noise", "0"]);
        let low = w.dirty_pages(1.0, 1.1);
        let high = w.dirty_pages(11.0, 11.1);
        assert_eq!(low, 250);
        assert!(high >= 10 * low, "high {high} low {low}");
        assert_eq!(w.dirty_pages(21.0, 21.1), low);
    }

    #[test]
    fn saturates_at_the_working_set() {
        let w = workload(&["--workload", "steady", "--working-set", "4MiB"]);
        assert!(w.dirty_pages(0.0, 100.0) <= 1024);
        assert!(w.dirty_pages(0.0, 100.0) >= 1023);
    }

    #[test]
    fn same_seed_same_guest_whatever_the_split() {
        let w = workload(&["--workload", "bursty", "--seed", "7"]);
        let whole = w.writes(0.0, 10.0);
        let parts: f64 = (0..100)
            .map(|i| w.writes(i as f64 * 0.1, (i + 1) as f64 * 0.1))
            .sum();
        assert!((whole - parts).abs() < 1e-6 * whole);
        let other = workload(&["--workload", "bursty", "--seed", "8"]);
        assert_ne!(whole, other.writes(0.0, 10.0));
    }

    #[test]
    fn bursty_has_bursts() {
        let w = workload(&["--workload", "bursty", "--noise", "0"]);
        let highs = (0..400)
            .filter(|i| w.base_rate(*i as f64 * 0.5) > 40_000.0)
            .count();
        assert!((40..=120).contains(&highs), "{highs} bursts in 400 windows");
    }

    /// A 5 s trace: 100 ms checkpoints, 1000 pages/s for 2.5 s, then
    /// 20 000 pages/s; the first row (no period) carries no rate.
    fn five_second_trace(dir: &std::path::Path) -> String {
        let mut csv = String::from(
            "seq,t_s,dirty_pages,pages_sent,bytes_sent,disk_bytes,size_bytes,\
             pause_ms,checkpoint_ms,period_ms,interval_ms,dropped\n\
             0,0.0,5,5,20000,0,20000,1,1,0,100,0\n",
        );
        for i in 1..=50 {
            let pages = if i <= 25 { 100 } else { 2000 };
            csv.push_str(&format!(
                "{i},{:.1},{pages},{pages},0,0,0,1,1,100,100,0\n",
                f64::from(i) * 0.1
            ));
        }
        let path = dir.join("five.csv");
        std::fs::write(&path, csv).unwrap();
        format!("trace:{}", path.display())
    }

    #[test]
    fn a_trace_ends_where_it_ends_unless_it_loops() {
        let dir = tempfile::tempdir().unwrap();
        let kind = five_second_trace(dir.path());
        let once = workload(&["--workload", &kind, "--noise", "0"]);
        assert_eq!(once.end_s(), Some(5.0));
        assert_eq!(once.base_rate(1.0), 1000.0);
        assert_eq!(once.base_rate(4.0), 20_000.0);

        let looped = workload(&["--workload", &kind, "--noise", "0", "--loop"]);
        assert_eq!(looped.end_s(), None);
        for t in [0.5, 1.0, 2.6, 4.9] {
            assert_eq!(looped.base_rate(t + 5.0), once.base_rate(t), "t {t}");
            assert_eq!(looped.base_rate(t + 50.0), once.base_rate(t), "t {t}");
        }
        // The same pages in every lap.
        assert_eq!(looped.dirty_pages(40.0, 45.0), once.dirty_pages(0.0, 5.0));
    }

    #[test]
    fn loop_needs_a_trace() {
        let mut argv = vec!["t", "--workload", "steady", "--loop"];
        let err = Workload::new(&W::parse_from(argv.drain(..)).w, 4096, 60.0).unwrap_err();
        assert!(err.to_string().contains("--loop"), "{err}");
    }

    #[test]
    fn kinds_parse() {
        assert!("trace:".parse::<WorkloadKind>().is_err());
        assert_eq!(
            "trace:a.csv".parse::<WorkloadKind>().unwrap().to_string(),
            "trace:a.csv"
        );
        assert!("random".parse::<WorkloadKind>().is_err());
    }
}
