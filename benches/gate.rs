// Reason: the casts here are between u64 CLOCK_MONOTONIC nanoseconds and
// the signed errors measured from them (both far below 2^63 ns, 292 years);
// an `as` cannot wrap or lose a sign for these values.
#![allow(clippy::cast_possible_wrap, clippy::cast_sign_loss)]
//! Gate: how exactly `remus_ckpt_gate` keeps the commanded interval.
//!
//! For each interval (5, 20, 100 ms) the real C gate paces a few hundred
//! checkpoints on the real clock, the interval commanded over a real
//! control FIFO (so the gate sleeps in ppoll on it, as in Xen); the error
//! is the achieved period (t_suspend - previous t_suspend, from the
//! records) minus the interval. The baseline, on a second thread at the
//! same time (same load), is a bare clock_nanosleep(TIMER_ABSTIME) to the
//! same deadline rule: previous wake-up + interval. No checkpoint work is
//! simulated between gates: the error is the gate's own.
//!
//! The figures are taken twice: with the default scheduler (what the save
//! helper gets), and with both threads SCHED_FIFO (when permitted), which
//! takes most of the other load on a shared machine out of the wake-up
//! latency and so shows what the gate itself adds.

mod common;

use std::io::Write;

use anyhow::{bail, Context, Result};
use common::{percentile, sorted, verdict, Row};
use remus_ckpt::ffi::{Ckpt, CkptStream};
use remus_ckpt::fifo;

const NSEC_PER_MSEC: u64 = 1_000_000;

fn main() -> Result<()> {
    let quick = common::quick();
    for realtime in [false, true] {
        for (interval_ms, checkpoints) in [
            (5u32, 300usize),
            (20, 300),
            (100, if realtime { 100 } else { 200 }),
        ] {
            let checkpoints = if quick { checkpoints / 15 } else { checkpoints };
            let baseline = std::thread::Builder::new()
                .name("nanosleep".into())
                .spawn(move || -> Result<Vec<i64>> {
                    if realtime {
                        set_fifo()?;
                    }
                    Ok(nanosleep_errors_ns(interval_ms, checkpoints))
                })
                .context("spawn the baseline thread")?;
            let gate = std::thread::Builder::new()
                .name("gate".into())
                .spawn(move || -> Result<Vec<i64>> {
                    if realtime {
                        set_fifo()?;
                    }
                    gate_errors_ns(interval_ms, checkpoints)
                })
                .context("spawn the gate thread")?;
            let gate = gate
                .join()
                .map_err(|_| anyhow::anyhow!("gate thread panicked"))?;
            let base = baseline
                .join()
                .map_err(|_| anyhow::anyhow!("baseline thread panicked"))?;
            match (gate, base) {
                (Ok(gate), Ok(base)) => report(interval_ms, realtime, &gate, &base),
                (Err(e), _) | (_, Err(e)) if realtime => {
                    not_measured(interval_ms, &format!("{e:#}"));
                    break;
                }
                (Err(e), _) | (_, Err(e)) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Makes the calling thread SCHED_FIFO (priority 10).
fn set_fifo() -> Result<()> {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: pid 0 is the calling thread; param is a valid sched_param.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
        return Err(std::io::Error::last_os_error()).context("SCHED_FIFO not permitted");
    }
    Ok(())
}

fn not_measured(interval_ms: u32, why: &str) {
    Row {
        section: "gate",
        case: &format!("period - target at {interval_ms}.. ms, SCHED_FIFO"),
        value: "not measured".into(),
        baseline: "-".into(),
        vs_baseline: "-".into(),
        target: "(informational)",
        met: why.into(),
    }
    .print();
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write; CLOCK_MONOTONIC exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Period - interval of `checkpoints` gated checkpoints, ns.
fn gate_errors_ns(interval_ms: u32, checkpoints: usize) -> Result<Vec<i64>> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let control = dir.path().join("control");
    fifo::ensure_private_fifo(&control)?;
    let spec = control.to_str().context("temporary path is not UTF-8")?;
    let Some(mut ckpt) = Ckpt::open_with(1, CkptStream::Remus, 4096, None, Some(spec))? else {
        bail!("the C library stayed unconfigured with a control path");
    };
    // The live round opens the control FIFO; then command the interval.
    ckpt.gate(true);
    ckpt.emit();
    let mut writer =
        fifo::open_writer(&control)?.context("the C library did not open the control FIFO")?;
    writer
        .write_all(format!("interval_ms={interval_ms}\n").as_bytes())
        .context("write the control line")?;

    let mut prev_ns = ckpt.last().context("no record")?.t_suspend;
    let mut errors = Vec::with_capacity(checkpoints);
    for _ in 0..checkpoints {
        ckpt.gate(false);
        ckpt.emit();
        let rec = ckpt.last().context("no record")?;
        if rec.interval_ms != interval_ms {
            bail!(
                "the gate paced for {} ms, not {interval_ms} ms",
                rec.interval_ms
            );
        }
        errors.push(
            rec.t_suspend as i64 - prev_ns as i64 - i64::from(interval_ms) * NSEC_PER_MSEC as i64,
        );
        prev_ns = rec.t_suspend;
    }
    Ok(errors)
}

/// The same rule with a bare absolute clock_nanosleep, ns.
fn nanosleep_errors_ns(interval_ms: u32, checkpoints: usize) -> Vec<i64> {
    let interval_ns = u64::from(interval_ms) * NSEC_PER_MSEC;
    let mut prev_ns = now_ns();
    let mut errors = Vec::with_capacity(checkpoints);
    for _ in 0..checkpoints {
        let deadline = prev_ns + interval_ns;
        let ts = libc::timespec {
            tv_sec: (deadline / 1_000_000_000) as libc::time_t,
            tv_nsec: (deadline % 1_000_000_000) as libc::c_long,
        };
        // SAFETY: ts is a valid timespec; an absolute sleep restarted
        // after EINTR keeps its deadline.
        while unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        } == libc::EINTR
        {}
        let now = now_ns();
        errors.push(now as i64 - prev_ns as i64 - interval_ns as i64);
        prev_ns = now;
    }
    errors
}

fn ms(ns: f64) -> String {
    format!("{:.3}", ns / 1e6)
}

fn report(interval_ms: u32, realtime: bool, gate_ns: &[i64], base_ns: &[i64]) {
    let stats = |v: &[i64]| {
        let s = sorted(&v.iter().map(|&x| x as f64).collect::<Vec<_>>());
        (
            percentile(&s, 50.0),
            percentile(&s, 99.0),
            s.last().copied().unwrap_or(f64::NAN),
        )
    };
    let (g50, g99, gmax) = stats(gate_ns);
    let (b50, b99, bmax) = stats(base_ns);
    let case = format!(
        "period - target at {interval_ms} ms, {}p50/p99/max ms (n={})",
        if realtime {
            "both threads SCHED_FIFO, "
        } else {
            ""
        },
        gate_ns.len()
    );
    Row {
        section: "gate",
        case: &case,
        value: format!("{} / {} / {}", ms(g50), ms(g99), ms(gmax)),
        baseline: format!("{} / {} / {} (clock_nanosleep)", ms(b50), ms(b99), ms(bmax)),
        vs_baseline: format!("p99 {:+.3} ms", (g99 - b99) / 1e6),
        target: if realtime {
            "p99 <= 1 ms (informational)"
        } else {
            "p99 <= 1 ms"
        },
        met: verdict(g99 <= 1e6, || format!("by {} ms", ms(g99 - 1e6))),
    }
    .print();
    // A gate that returns early would show as a negative error.
    if let Some(min) = gate_ns.iter().min() {
        if *min < -(NSEC_PER_MSEC as i64) / 10 {
            eprintln!(
                "gate: at {interval_ms} ms a period was {} ms short",
                ms(-*min as f64)
            );
        }
    }
}
