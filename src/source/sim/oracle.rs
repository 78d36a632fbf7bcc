//! `oracle`: the offline optimum of a compare, the yardstick for policies.
//!
//! The oracle knows the simulated guest's future (the workload is a pure
//! function of time) and the simulator's cost model, so after each
//! checkpoint it picks the longest interval whose checkpoint stays within
//! Lmax: it checkpoints exactly when the size would pass Lmax, or at tmax
//! if it never does, and never before tmin (where even tmin overshoots, it
//! takes tmin). Sizes are those of [`Domain::checkpoint`] under the run's
//! `--size-metric` (wire: dirty pages × (page size + 8) plus the fixed
//! records, with the working-set saturation of the workload model).
//!
//! Checkpointing as late as is feasible each time is optimal: an epoch's
//! size grows with its end and shrinks with its start, and a later suspend
//! means a later resume, so by induction the oracle's k-th checkpoint is
//! never earlier than any schedule's k-th checkpoint that keeps every size
//! within Lmax and every interval in [tmin, tmax] — no such schedule takes
//! fewer checkpoints. Intervals are whole ms, as on the control line.
//!
//! It runs as a [`Policy`] inside the virtual-time loop
//! ([`drive::run_virtual`]), so its rows are made, sized and written like
//! every other run's. The loop does not tell a policy the time, so the
//! oracle keeps the same clock: the live round at [`Domain::live_copy_s`],
//! each suspend by [`drive::paced_suspend_s`], each checkpoint's phases by
//! [`Work::times`](super::domain::Work::times) — the functions the loop
//! itself uses. It checks its clock against each observed period.

use std::fmt;

use super::domain::{Domain, PAGE_SIZE};
use super::drive;
use crate::policy::{Clamp, Decision, Observation, Policy};
use crate::report::RunSummary;
use crate::size::SizeMetric;

/// Disk bytes the guest writes in the epoch [from_s, to_s), as the run's
/// disk meter will count them (an upper bound is fine: the oracle stays
/// within Lmax); only used with `--size-metric total`.
pub type DiskModel = Box<dyn Fn(f64, f64) -> u64 + Send>;

/// The last checkpoint on the oracle's clock.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Last {
    suspend_s: f64,
    /// The guest runs again from here (the next epoch's start).
    resumed_s: f64,
    /// The save loop is back at the gate.
    done_s: f64,
}

pub struct Oracle {
    domain: Domain,
    metric: SizeMetric,
    disk_bytes: DiskModel,
    lmax_bytes: u64,
    clamp: Clamp,
    interval_ms: u32,
    last: Option<Last>,
    /// Whether the clock-drift warning was given.
    warned: bool,
}

impl fmt::Debug for Oracle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Oracle")
            .field("metric", &self.metric)
            .field("lmax_bytes", &self.lmax_bytes)
            .field("clamp", &self.clamp)
            .field("interval_ms", &self.interval_ms)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl Oracle {
    pub fn new(
        domain: Domain,
        metric: SizeMetric,
        disk_bytes: DiskModel,
        lmax_bytes: u64,
        clamp: Clamp,
        initial_ms: u32,
    ) -> Self {
        Oracle {
            domain,
            metric,
            disk_bytes,
            lmax_bytes,
            clamp,
            interval_ms: initial_ms,
            last: None,
            warned: false,
        }
    }

    /// The size the run will see for a checkpoint of the epoch
    /// [running_since_s, suspend_at_s).
    fn size_bytes(&self, running_since_s: f64, suspend_at_s: f64) -> u64 {
        let work = self.domain.checkpoint(running_since_s, suspend_at_s, false);
        match self.metric {
            SizeMetric::Wire => work.bytes_sent,
            SizeMetric::Memory => work.dirty_pages * u64::from(PAGE_SIZE),
            SizeMetric::Total => work
                .bytes_sent
                .saturating_add((self.disk_bytes)(running_since_s, suspend_at_s)),
        }
    }

    /// The longest interval in [tmin, tmax] after `last` whose checkpoint
    /// fits Lmax; tmin when none does.
    fn plan_ms(&self, last: &Last) -> u32 {
        let fits = |ms: u32| {
            let at = drive::paced_suspend_s(last.done_s, last.suspend_s, ms);
            self.size_bytes(last.resumed_s, at) <= self.lmax_bytes
        };
        let (mut lo, mut hi) = (self.clamp.tmin_ms, self.clamp.tmax_ms);
        if !fits(lo) {
            return lo;
        }
        if fits(hi) {
            return hi;
        }
        // The size only grows with the interval: fits(lo), !fits(hi).
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fits(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

impl Policy for Oracle {
    fn name(&self) -> String {
        LABEL.to_string()
    }

    fn initial(&self) -> Decision {
        Decision::interval(self.interval_ms)
    }

    fn decide(&mut self, obs: &Observation) -> Decision {
        Decision::interval(self.next_interval_ms(obs))
    }
}

impl Oracle {
    /// Plans the next interval after the checkpoint `obs` reports, ms.
    fn next_interval_ms(&mut self, obs: &Observation) -> u32 {
        let (suspend_s, running_since_s) = match (obs.live, self.last) {
            (true, _) => (self.domain.live_copy_s(), 0.0),
            (false, Some(last)) => (
                drive::paced_suspend_s(last.done_s, last.suspend_s, self.interval_ms),
                last.resumed_s,
            ),
            // Not behind the virtual loop (it starts with the live round):
            // nothing to plan from.
            (false, None) => return self.interval_ms,
        };
        if let Some(last) = self.last.filter(|_| !obs.live) {
            let mine_ms = (suspend_s - last.suspend_s) * 1e3;
            // Records carry ns; 1 µs is far above their rounding.
            if (mine_ms - obs.period_ms).abs() > 1e-3 && !self.warned {
                self.warned = true;
                eprintln!(
                    "remus-ckpt: warning: the oracle's clock left the run's \
                     (period {mine_ms} ms planned, {} ms seen); its rows are not optimal",
                    obs.period_ms
                );
            }
        }
        let times = self
            .domain
            .checkpoint(running_since_s, suspend_s, obs.live)
            .times(suspend_s);
        let last = Last {
            suspend_s,
            resumed_s: times.resumed_s,
            done_s: times.done_s,
        };
        self.interval_ms = self.plan_ms(&last);
        self.last = Some(last);
        self.interval_ms
    }
}

/// The label of the oracle's run in a compare.
pub const LABEL: &str = "oracle";

/// Each run of a compare against the oracle's: its checkpoints ÷ the
/// oracle's (1.00 is optimal, 2.00 twice as many) and the oracle's ÷ its
/// as a percentage ("% of oracle": 100 is optimal, 50 twice as many).
#[derive(Debug, Clone, PartialEq)]
pub struct AgainstOracle {
    rows: Vec<VsOracle>,
}

/// One run of [`AgainstOracle`].
#[derive(Debug, Clone, PartialEq)]
struct VsOracle {
    label: String,
    checkpoints: usize,
    /// Checkpoints ÷ the oracle's.
    ratio: Option<f64>,
    /// The oracle's checkpoints ÷ this run's × 100.
    pct_of_oracle: Option<f64>,
    pct_at_most_lmax: Option<f64>,
}

/// The runs of `summaries` against the one labelled [`LABEL`]; `None`
/// when the compare has no oracle.
pub fn against_oracle(summaries: &[RunSummary]) -> Option<AgainstOracle> {
    let best = summaries.iter().find(|s| s.label == LABEL)?.checkpoints;
    let rows = summaries
        .iter()
        .map(|s| {
            let n = s.checkpoints;
            VsOracle {
                label: s.label.clone(),
                checkpoints: n,
                ratio: (best > 0).then(|| n as f64 / best as f64),
                pct_of_oracle: (n > 0).then(|| 100.0 * best as f64 / n as f64),
                pct_at_most_lmax: s.pct_at_most_lmax,
            }
        })
        .collect();
    Some(AgainstOracle { rows })
}

impl AgainstOracle {
    const HEADERS: [&'static str; 5] = ["run", "ckpts", "ckpts/oracle", "% of oracle", "<=Lmax %"];

    fn cells(&self) -> Vec<[String; 5]> {
        let show = |v: Option<f64>, decimals: usize| {
            v.map_or_else(|| "-".to_string(), |v| format!("{v:.decimals$}"))
        };
        self.rows
            .iter()
            .map(|r| {
                [
                    r.label.clone(),
                    r.checkpoints.to_string(),
                    show(r.ratio, 2),
                    show(r.pct_of_oracle, 1),
                    show(r.pct_at_most_lmax, 1),
                ]
            })
            .collect()
    }

    fn note() -> &'static str {
        "ckpts/oracle: checkpoints ÷ the oracle's (1.00 = as few as the offline optimum); \
         % of oracle: the oracle's checkpoints ÷ the run's × 100."
    }

    /// Aligned text, as the compare prints it.
    pub fn table(&self) -> String {
        let cells = self.cells();
        let width = |i: usize| {
            cells
                .iter()
                .map(|row| row[i].chars().count())
                .chain([Self::HEADERS[i].chars().count()])
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..5).map(width).collect();
        let line = |row: &[String]| {
            let mut out = format!("{:<w$}", row[0], w = widths[0]);
            for (cell, w) in row.iter().zip(&widths).skip(1) {
                out.push_str(&format!("  {cell:>w$}"));
            }
            out.push('\n');
            out
        };
        let mut out = String::from("\nAgainst the oracle:\n");
        out.push_str(&line(&Self::HEADERS.map(String::from)));
        for row in &cells {
            out.push_str(&line(row));
        }
        out.push_str(Self::note());
        out.push('\n');
        out
    }

    /// A Markdown table, for report.md.
    pub fn markdown(&self) -> String {
        let mut out = String::from("Against the oracle:\n\n");
        out.push_str(&format!("| {} |\n", Self::HEADERS.join(" | ")));
        out.push_str("|:---|---:|---:|---:|---:|\n");
        for row in self.cells() {
            let row: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
        out.push('\n');
        out.push_str(Self::note());
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Controller;
    use crate::policy::{PolicyArgs, PolicySpec};
    use crate::report;
    use crate::row::Row;
    use crate::source::sim::domain::{DomainArgs, FIXED_RECORD_BYTES, PFN_BYTES};
    use crate::source::sim::workload::{Workload, WorkloadArgs};
    use clap::Parser;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        workload: WorkloadArgs,
        #[command(flatten)]
        domain: DomainArgs,
        #[command(flatten)]
        policy: PolicyArgs,
    }

    const DURATION_S: f64 = 40.0;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["t"];
        argv.extend_from_slice(extra);
        Args::parse_from(argv)
    }

    fn domain(a: &Args) -> Domain {
        let workload = Workload::new(&a.workload, PAGE_SIZE, DURATION_S).unwrap();
        Domain::new(&a.domain, workload).unwrap()
    }

    fn oracle(a: &Args) -> Box<dyn Policy> {
        Box::new(Oracle::new(
            domain(a),
            a.policy.size_metric,
            Box::new(|_, _| 0),
            a.policy.lmax.0,
            a.policy.clamp(),
            a.policy.initial_ms(),
        ))
    }

    fn run(a: &Args, policy: Box<dyn Policy>) -> Vec<Row> {
        let mut controller = Controller::new(policy, a.policy.size_metric);
        let mut rows = Vec::new();
        drive::run_virtual(
            &domain(a),
            DURATION_S,
            &mut controller,
            |_, _| Default::default(),
            |row| {
                rows.push(row);
                Ok(())
            },
        )
        .unwrap();
        rows
    }

    fn fixed(a: &Args, ms: u32) -> Box<dyn Policy> {
        let spec: PolicySpec = format!("fixed:{ms}ms").parse().unwrap();
        a.policy.build_spec(&spec).unwrap()
    }

    /// Steady r pages/s, no noise, a working set so large the dirty set is
    /// linear (1 TiB: at 4 000 pages the saturation term is 0.03 page), a
    /// link so fast that sending 16 MiB takes under 16 µs.
    #[test]
    fn steady_interval_by_hand() {
        let a = args(&[
            "--workload",
            "steady",
            "--rate",
            "10000",
            "--noise",
            "0",
            "--working-set",
            "1024GiB",
            "--bandwidth",
            "1024GiB",
            "--suspend-cost",
            "2ms",
            "--resume-cost",
            "1ms",
            "--lmax",
            "16MiB",
        ]);
        // Pages that fit: (16 MiB - 5632) / (4096 + 8) = 4086.6 -> 4086.
        let max_pages = ((16u64 << 20) - FIXED_RECORD_BYTES) / (u64::from(PAGE_SIZE) + PFN_BYTES);
        assert_eq!(max_pages, 4086);
        // The guest runs the interval minus the previous pause (2 ms
        // suspend + 1 ms resume + < 16 µs sending) and dirties 10 pages per
        // ms; a count rounds to at most 4086 below 408.65 ms of running, so
        // the interval is the whole ms below 408.65 + 3.016 = 411.67 ms.
        let expected_ms = 411;
        let rows = run(&a, oracle(&a));
        let steady: Vec<&Row> = rows.iter().skip(2).collect();
        assert!(steady.len() > 50, "{} rows", rows.len());
        for r in &steady {
            assert_eq!(r.interval_ms, expected_ms, "{r:?}");
            // 408.0 ms of running at 10 pages/ms.
            assert_eq!(r.dirty_pages, 4080, "{r:?}");
            assert!(r.size_bytes <= 16 << 20);
        }
        // One ms more would not fit: the oracle wastes no whole ms.
        let d = domain(&a);
        let pause_s = 0.003 + Domain::stream_bytes(4080) as f64 / (1u64 << 40) as f64;
        let run_s = (expected_ms + 1) as f64 / 1e3 - pause_s;
        assert!(d.checkpoint(10.0, 10.0 + run_s, false).bytes_sent > 16 << 20);
    }

    #[test]
    fn ratios_against_the_oracle_by_hand() {
        let run = |label: &str, checkpoints: usize| RunSummary {
            checkpoints,
            ..report::summarize(label, &[], 0, 1)
        };
        assert_eq!(against_oracle(&[run("fixed:10ms", 250)]), None);
        let t = against_oracle(&[run("fixed:10ms", 250), run(LABEL, 100), run("idle", 0)]).unwrap();
        let text = t.table();
        // 250 / 100 = 2.50; 100 / 250 = 40 %.
        assert!(
            text.contains("fixed:10ms    250          2.50         40.0"),
            "{text}"
        );
        assert!(
            text.contains("oracle        100          1.00        100.0"),
            "{text}"
        );
        assert!(
            text.contains("idle            0          0.00            -"),
            "{text}"
        );
        assert!(t
            .markdown()
            .contains("| fixed:10ms | 250 | 2.50 | 40.0 | - |"));
    }

    fn summary(rows: &[Row], a: &Args) -> report::RunSummary {
        report::summarize("run", rows, a.policy.lmin.0, a.policy.lmax.0)
    }

    /// Every fixed interval that keeps every checkpoint within Lmax takes
    /// at least as many checkpoints as the oracle, which also keeps all
    /// within Lmax.
    fn beats_every_safe_fixed_interval(a: &Args) {
        let best = summary(&run(a, oracle(a)), a);
        assert_eq!(best.pct_at_most_lmax, Some(100.0), "{best:?}");
        let mut safe = 0;
        for ms in [10, 20, 40, 80, 120, 160, 200, 300, 400, 600, 1000, 2000] {
            let s = summary(&run(a, fixed(a, ms)), a);
            if s.pct_at_most_lmax == Some(100.0) {
                safe += 1;
                assert!(
                    best.checkpoints <= s.checkpoints,
                    "fixed:{ms}ms took {} checkpoints, the oracle {}",
                    s.checkpoints,
                    best.checkpoints
                );
            }
        }
        assert!(
            safe >= 2,
            "only {safe} safe fixed intervals to compare with"
        );
    }

    #[test]
    fn no_safe_fixed_interval_beats_it_on_steady() {
        beats_every_safe_fixed_interval(&args(&["--workload", "steady"]));
    }

    #[test]
    fn no_safe_fixed_interval_beats_it_on_phases() {
        beats_every_safe_fixed_interval(&args(&["--workload", "phases"]));
    }

    #[test]
    fn each_interval_is_the_longest_that_fits() {
        // Low phases fill 16 MiB in 1.6 s: a 1 s tmax caps them.
        let a = args(&["--workload", "bursty", "--seed", "5", "--tmax", "1s"]);
        let d = domain(&a);
        let rows = run(&a, oracle(&a));
        let clamp = a.policy.clamp();
        let mut at_tmax = 0;
        let mut cut = 0;
        for pair in rows.windows(2).skip(1) {
            let (prev, r) = (&pair[0], &pair[1]);
            assert!(r.size_bytes <= a.policy.lmax.0, "{r:?}");
            assert!((u64::from(clamp.tmin_ms)..=u64::from(clamp.tmax_ms)).contains(&r.interval_ms));
            if r.interval_ms == u64::from(clamp.tmax_ms) {
                at_tmax += 1;
                continue;
            }
            // One ms later, the same epoch would have passed Lmax.
            let t0 = d.live_copy_s();
            // pause_ms runs from suspended to resumed: add the suspend.
            let resumed_s = t0 + prev.t_s + 0.002 + prev.pause_ms / 1e3;
            let later_s = t0 + prev.t_s + (r.interval_ms + 1) as f64 / 1e3;
            let bigger = d.checkpoint(resumed_s, later_s, false).bytes_sent;
            assert!(bigger > a.policy.lmax.0, "{r:?}: +1 ms is {bigger} B");
            cut += 1;
        }
        assert!(
            at_tmax > 0 && cut > 0,
            "{at_tmax} at tmax, {cut} cut by Lmax"
        );
    }
}
