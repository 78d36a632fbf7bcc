//! The guest's progress, and what each layer of stage D costs.
//!
//! The guest prints `GUEST-WORK phase=high|low k=… units=… t0=… t1=…` at
//! the end of each phase: the work it did between two of its own uptimes.
//! The rate is read from the line's content, so a console that delivers it
//! a minute late changes nothing. Only phases that lay wholly between the
//! first checkpoint and the stop count; the guest's uptime is placed on
//! dom0's clock by the pair noted when GUEST-UP arrived, before Remus
//! started (the console has no lag then).

use anyhow::{bail, Result};
use remus_ckpt::report::rows::selected_rows;
use remus_ckpt::report::summary::quantiles;

use crate::json::Json;
use crate::stages::RunCtx;
use crate::verdict::{outcome, Outcome};

/// One `GUEST-WORK` line.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseWork {
    pub high: bool,
    pub units: f64,
    pub t0: f64,
    pub t1: f64,
}

/// Parses every GUEST-WORK line of a console log.
pub fn parse(text: &str) -> Vec<PhaseWork> {
    text.lines()
        .filter_map(|l| l.split("GUEST-WORK ").nth(1))
        .filter_map(|rest| {
            let mut w = PhaseWork {
                high: false,
                units: f64::NAN,
                t0: f64::NAN,
                t1: f64::NAN,
            };
            for kv in rest.split_whitespace() {
                match kv.split_once('=')? {
                    ("phase", p) => w.high = p == "high",
                    ("units", u) => w.units = u.parse().ok()?,
                    ("t0", t) => w.t0 = t.parse().ok()?,
                    ("t1", t) => w.t1 = t.parse().ok()?,
                    _ => {}
                }
            }
            (w.units.is_finite() && w.t1 > w.t0).then_some(w)
        })
        .collect()
}

/// The guest's work rates in one run's checkpointing window, and what
/// the run's records or xl's log say about its checkpoints.
#[derive(Debug, Clone, Default)]
pub struct WorkRates {
    pub name: String,
    /// dd runs (32 MiB each) per second in high phases.
    pub high_per_s: Option<f64>,
    /// Busy-loop turns per second in low phases.
    pub low_per_s: Option<f64>,
    pub high_phases: usize,
    pub low_phases: usize,
    /// Checkpoints xl logged per second of the window.
    pub checkpoints_per_s: Option<f64>,
    pub pause_ms_p50: Option<f64>,
    pub pause_ms_p99: Option<f64>,
    pub checkpoint_ms_p50: Option<f64>,
    pub checkpoint_ms_p99: Option<f64>,
    /// Share of the checkpointing time spent probing (the guest paused).
    pub probe_share: Option<f64>,
    pub problem: Option<String>,
}

impl WorkRates {
    pub fn of(run: &RunCtx) -> WorkRates {
        let mut w = WorkRates {
            name: run.name.clone(),
            ..WorkRates::default()
        };
        if let Err(e) = w.fill(run) {
            w.problem = Some(format!("{e:#}"));
        }
        w
    }

    fn fill(&mut self, run: &RunCtx) -> Result<()> {
        if let Ok(rows) = run.rows() {
            let ck = selected_rows(rows, false);
            if let Some(q) = quantiles(ck.iter().map(|r| r.pause_ms).collect::<Vec<_>>()) {
                self.pause_ms_p50 = Some(q.p50);
                self.pause_ms_p99 = Some(q.p99);
            }
            if let Some(q) = quantiles(ck.iter().map(|r| r.checkpoint_ms).collect::<Vec<_>>()) {
                self.checkpoint_ms_p50 = Some(q.p50);
                self.checkpoint_ms_p99 = Some(q.p99);
            }
            let period: f64 = ck.iter().map(|r| r.period_ms).sum();
            let probe: f64 = ck.iter().map(|r| r.probe_ms).sum();
            if period > 0.0 {
                self.probe_share = Some(probe / period);
            }
        }
        let s = run.status()?;
        let p = run.files.path("status.env");
        let first = s.need_f64("first_ckpt_up", &p)?;
        let stop = s.need_f64("stop_up", &p)?;
        let offset = s.need_f64("guest_up_dom0", &p)? - s.need_f64("guest_up_guest", &p)?;
        let xl = run.xl()?;
        if stop > first && xl > 1 {
            self.checkpoints_per_s = Some((xl - 1) as f64 / (stop - first));
        }
        let log = crate::rundir::read_lossy(&run.files.path("guest-guest.log"))?;
        let (g0, g1) = (first - offset, stop - offset);
        let inside: Vec<PhaseWork> = parse(&log)
            .into_iter()
            .filter(|w| w.t0 >= g0 && w.t1 <= g1)
            .collect();
        let rate = |high: bool| -> (Option<f64>, usize) {
            let ph: Vec<&PhaseWork> = inside.iter().filter(|w| w.high == high).collect();
            let units: f64 = ph.iter().map(|w| w.units).sum();
            let secs: f64 = ph.iter().map(|w| w.t1 - w.t0).sum();
            ((secs > 0.0).then(|| units / secs), ph.len())
        };
        (self.high_per_s, self.high_phases) = rate(true);
        (self.low_per_s, self.low_phases) = rate(false);
        Ok(())
    }

    pub fn add_to(&self, o: &mut Json) {
        o.set("guest_dd_runs_per_s_high", self.high_per_s);
        o.set("guest_loop_turns_per_s_low", self.low_per_s);
        o.set("guest_high_phases", self.high_phases);
        o.set("guest_low_phases", self.low_phases);
        o.set("checkpoints_per_s", self.checkpoints_per_s);
        o.set("probe_share", self.probe_share);
    }
}

/// `<run>.work`: the guest's progress was measured in at least one whole
/// high and one whole low phase while Remus checkpointed.
pub fn check(run: &RunCtx) -> Result<Outcome> {
    let w = WorkRates::of(run);
    if let Some(p) = &w.problem {
        bail!("{p}");
    }
    Ok(outcome(
        w.high_phases >= 1 && w.low_phases >= 1,
        format!(
            "guest progress over {} high / {} low phases while checkpointing: {:.3} dd/s, {:.0} turns/s",
            w.high_phases,
            w.low_phases,
            w.high_per_s.unwrap_or(0.0),
            w.low_per_s.unwrap_or(0.0)
        ),
        format!(
            "the guest reported {} whole high and {} whole low phases while checkpointing (need 1 each)",
            w.high_phases, w.low_phases
        ),
    ))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// Ratios of each run against the stock one (Debian's library). Debian's
/// library writes no records, so pause and checkpoint times exist for
/// the runs with records; their ratios are against `fixed`, which paces
/// at the stock run's -i.
pub fn overhead_json(runs: &[WorkRates]) -> Json {
    let find = |n: &str| runs.iter().find(|w| w.name == n);
    let mut o = Json::obj();
    o.set(
        "note",
        "QEMU TCG: emulated time; ratios within one boot, against the stock run",
    );
    type Field = fn(&WorkRates) -> Option<f64>;
    let stock = find("stock");
    let fixed = find("fixed");
    // (key, figure, the run it is compared with)
    let ratios: [(&str, Field, Option<&WorkRates>); 6] = [
        ("guest_high_rate_vs_stock", |w| w.high_per_s, stock),
        ("guest_low_rate_vs_stock", |w| w.low_per_s, stock),
        ("checkpoints_per_s_vs_stock", |w| w.checkpoints_per_s, stock),
        ("pause_p50_vs_fixed", |w| w.pause_ms_p50, fixed),
        ("pause_p99_vs_fixed", |w| w.pause_ms_p99, fixed),
        ("checkpoint_p50_vs_fixed", |w| w.checkpoint_ms_p50, fixed),
    ];
    for w in runs {
        let mut r = Json::obj();
        for (key, field, base) in &ratios {
            r.set(key, ratio(field(w), base.and_then(field)));
        }
        r.set("pause_ms_p50", w.pause_ms_p50);
        r.set("pause_ms_p99", w.pause_ms_p99);
        r.set("checkpoint_ms_p50", w.checkpoint_ms_p50);
        r.set("checkpoint_ms_p99", w.checkpoint_ms_p99);
        r.set("probe_share", w.probe_share);
        o.set(&w.name, r);
    }
    o
}

/// `overhead`: every figure of the comparison could be computed.
pub fn overhead_check(runs: &[WorkRates]) -> Result<Outcome> {
    let mut missing = Vec::new();
    for w in runs {
        if w.high_per_s.is_none() || w.low_per_s.is_none() || w.checkpoints_per_s.is_none() {
            missing.push(format!("{}: guest or checkpoint rate", w.name));
        }
        if matches!(w.name.as_str(), "fixed" | "budget") && w.pause_ms_p50.is_none() {
            missing.push(format!("{}: pause times", w.name));
        }
    }
    if runs.len() != crate::stages::D_RUNS.len() {
        missing.push(format!(
            "{} runs instead of {}",
            runs.len(),
            crate::stages::D_RUNS.len()
        ));
    }
    let table: Vec<String> = runs
        .iter()
        .map(|w| {
            format!(
                "{} {:.2}/{:.2}",
                w.name,
                ratio(w.high_per_s, runs[0].high_per_s).unwrap_or(f64::NAN),
                ratio(w.low_per_s, runs[0].low_per_s).unwrap_or(f64::NAN)
            )
        })
        .collect();
    Ok(outcome(
        missing.is_empty(),
        format!(
            "overhead measured; guest progress high/low vs stock: {}",
            table.join(", ")
        ),
        format!("overhead figures missing: {}", missing.join("; ")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_work_lines_and_skips_broken_ones() {
        let text = "x GUEST-WORK phase=high k=1 units=12 t0=3.10 t1=11.50\n\
                    GUEST-WORK phase=low k=2 units=9000 t0=11.50 t1=19.52\n\
                    GUEST-WORK phase=low k=3 units=oops t0=1 t1=2\n\
                    GUEST-WORK phase=low k=4 units=5 t0=3 t1=2\n";
        let w = parse(text);
        assert_eq!(w.len(), 2);
        assert!(w[0].high && !w[1].high);
        assert_eq!(w[1].units, 9000.0);
    }
}
