//! The simulated save loop, in real or virtual time.
//!
//! Real time is the honest end-to-end mode: this thread plays
//! libxl-save-helper, calling the real C library (gate, marks, emit) that
//! ships in libxenguest, so records cross a real FIFO to the consumer and
//! intervals come back through the real control FIFO.
//!
//! Virtual time is for comparing policies: the same domain model and the
//! same gate rule (suspend at max(now, previous suspend + interval)), with
//! each record formatted by the C formatter and parsed back, but no
//! sleeping and no threads, so a run is deterministic for its seed and
//! takes milliseconds.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::domain::{Domain, Times, Work, PAGE_SIZE};
use crate::disk::DiskDelta;
use crate::ffi::{self, Ckpt, CkptStream, Mark};
use crate::pipeline::Controller;
use crate::record::{self, Record};
use crate::row::Row;

/// Simulated domain id in records.
pub const SIM_DOMID: u32 = 1;

fn sleep_s(seconds: f64) {
    if seconds > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(seconds));
    }
}

/// Runs the checkpoint loop on this thread for `duration`, in real time,
/// through the C library writing to `stats` and reading `control`.
/// `on_epoch(from_s, to_s)` is told each running span as it is suspended
/// (for the simulated disk writer). Returns the number of checkpoints taken.
pub fn run_realtime(
    domain: &Domain,
    duration: Duration,
    stats: &Path,
    control: &Path,
    stop: &AtomicBool,
    mut on_epoch: impl FnMut(f64, f64),
) -> Result<u64> {
    let stats = stats.to_str().context("stats FIFO path is not UTF-8")?;
    let control = control.to_str().context("control FIFO path is not UTF-8")?;
    let Some(mut ckpt) = Ckpt::open_with(
        SIM_DOMID,
        CkptStream::Remus,
        PAGE_SIZE,
        Some(stats),
        Some(control),
    )?
    else {
        bail!("the C library stayed unconfigured with both FIFOs given");
    };
    let start = Instant::now();
    let now_s = || start.elapsed().as_secs_f64();

    // Initial live copy: all memory while the guest runs.
    sleep_s(domain.live_copy_s());
    let mut running_since_s = 0.0;
    let mut checkpoints = 0;
    let mut live = true;
    while now_s() < duration.as_secs_f64() && !stop.load(Ordering::Relaxed) {
        ckpt.gate(live);
        let suspend_at_s = now_s();
        on_epoch(running_since_s, suspend_at_s);
        let work = domain.checkpoint(running_since_s, suspend_at_s, live);
        sleep_s(work.suspend_s);
        ckpt.mark(Mark::Suspended);
        ckpt.dirty(work.dirty_pages, 0);
        sleep_s(work.send_s);
        ckpt.wrote(work.bytes_sent, work.pages_sent);
        ckpt.mark(Mark::Sent);
        sleep_s(work.resume_s);
        ckpt.mark(Mark::Resumed);
        running_since_s = now_s();
        sleep_s(work.commit_s);
        ckpt.emit();
        checkpoints += 1;
        live = false;
    }
    Ok(checkpoints)
}

/// The gate's rule in virtual time: the save loop back at the gate at
/// `now_s` suspends at once, or when `interval_ms` has passed since the
/// previous suspend, whichever is later.
pub fn paced_suspend_s(now_s: f64, prev_suspend_s: f64, interval_ms: u32) -> f64 {
    now_s.max(prev_suspend_s + f64::from(interval_ms) / 1e3)
}

/// Runs the loop in virtual time for `duration_s`, steering with
/// `controller` synchronously; `disk` gives each epoch's disk bytes and
/// every row goes to `on_row`.
pub fn run_virtual(
    domain: &Domain,
    duration_s: f64,
    controller: &mut Controller,
    mut disk: impl FnMut(f64, f64) -> DiskDelta,
    mut on_row: impl FnMut(Row) -> Result<()>,
) -> Result<()> {
    const NS: f64 = 1e9;
    // Monotonic timestamps must not be 0 (0 means "not reached").
    let base_ns = 1_000_000_000u64;
    let ns = |t: f64| base_ns + (t * NS).round() as u64;

    let mut t = domain.live_copy_s();
    let mut running_since_s = 0.0;
    let mut prev_suspend_s: Option<f64> = None;
    let mut interval_ms = controller.initial_interval_ms();
    let mut seq = 0u64;
    while t < duration_s {
        let live = seq == 0;
        let t_gate = t;
        let paced = !live && prev_suspend_s.is_some();
        let t_suspend = match prev_suspend_s {
            Some(prev) if paced => paced_suspend_s(t, prev, interval_ms),
            _ => t,
        };
        let work: Work = domain.checkpoint(running_since_s, t_suspend, live);
        let Times {
            suspended_s: t_suspended,
            sent_s: t_sent,
            resumed_s: t_resumed,
            done_s: t_done,
        } = work.times(t_suspend);

        let raw = ffi::remus_ckpt_record {
            seq,
            domid: SIM_DOMID,
            stream: ffi::remus_ckpt_stream_REMUS_CKPT_STREAM_REMUS,
            live: u32::from(live),
            page_size: PAGE_SIZE,
            dirty_pages: work.dirty_pages,
            pages_sent: work.pages_sent,
            bytes_sent: work.bytes_sent,
            t_gate: ns(t_gate),
            t_suspend: ns(t_suspend),
            t_suspended: ns(t_suspended),
            t_sent: ns(t_sent),
            t_resumed: ns(t_resumed),
            t_done: ns(t_done),
            interval_ms: if paced { interval_ms } else { 0 },
            cmd_interval_ms: interval_ms,
            gate_wait_ns: ((t_suspend - t_gate) * NS).round() as u64,
            ..Default::default()
        };
        let line =
            ffi::format_record(&raw).context("the C formatter refused a simulated record")?;
        let rec: Record =
            record::parse_line(&line).with_context(|| format!("C record did not parse: {line}"))?;

        let epoch = disk(running_since_s, t_suspend);
        let step = controller.on_record(&rec, epoch);
        if let Some(ms) = step.command_ms {
            interval_ms = ms;
        }
        on_row(step.row)?;

        prev_suspend_s = Some(t_suspend);
        running_since_s = t_resumed;
        t = t_done;
        seq += 1;
    }
    Ok(())
}
