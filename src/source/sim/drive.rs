//! The simulated save loop, in real or virtual time.
//!
//! Real time is the honest end-to-end mode: this thread plays
//! libxl-save-helper, calling the real C library (gate, marks, emit) that
//! ships in libxenguest, so records cross a real FIFO to the consumer and
//! intervals come back through the real control FIFO.
//!
//! Virtual time is for comparing policies: the same domain model and the
//! same C gate (its interval and dirty-page budget rule), run on a virtual
//! clock injected into the C library (`remus_ckpt_set_clock`), with the
//! commands written to a pipe the C library reads as its control channel
//! and each record formatted by the C formatter and parsed back; no
//! sleeping and no threads, so a run is deterministic for its seed and
//! takes milliseconds.
//!
//! In both modes the gate's probe (`remus_ckpt_set_probe`) reads the
//! workload's dirty count since the guest last resumed, and costs the
//! domain's `--probe-cost` each time (the guest is paused in a PEEK). The
//! workload counts probe pauses as running time: they are microseconds.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::domain::{Domain, Work, PAGE_SIZE};
use crate::disk::DiskDelta;
use crate::ffi::{self, Ckpt, CkptStream, Clock, Mark, Probe};
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
    let resumed_s = Arc::new(Mutex::new(0.0));
    ckpt.set_probe(Box::new(RealProbe {
        domain: domain.clone(),
        start,
        resumed_s: Arc::clone(&resumed_s),
    }));

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
        *lock(&resumed_s) = running_since_s;
        sleep_s(work.commit_s);
        ckpt.emit();
        checkpoints += 1;
        live = false;
    }
    Ok(checkpoints)
}

/// The probe in real time: the workload's count since the guest resumed,
/// and a real pause of the probe's cost.
struct RealProbe {
    domain: Domain,
    start: Instant,
    /// When the simulated guest last resumed, seconds since `start`.
    resumed_s: Arc<Mutex<f64>>,
}

impl Probe for RealProbe {
    fn dirty_pages(&mut self) -> Option<u64> {
        let now_s = self.start.elapsed().as_secs_f64();
        let dirty = self.domain.dirty_now(*lock(&self.resumed_s), now_s);
        sleep_s(self.domain.probe_s());
        Some(dirty)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these small values leaves it usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Virtual time, shared by the C library's clock and the probe.
#[derive(Debug)]
struct VirtualTime {
    now_ns: u64,
    /// When the simulated guest last resumed, seconds of virtual time.
    resumed_s: f64,
}

/// Monotonic timestamps must not be 0 (0 means "not reached"): virtual
/// time 0 is this many ns.
const VIRTUAL_BASE_NS: u64 = 1_000_000_000;

fn to_ns(seconds: f64) -> u64 {
    crate::units::round_to_u64_saturating(seconds.max(0.0) * 1e9)
}

fn to_s(now_ns: u64) -> f64 {
    now_ns.saturating_sub(VIRTUAL_BASE_NS) as f64 / 1e9
}

struct VirtualClock(Arc<Mutex<VirtualTime>>);

impl Clock for VirtualClock {
    fn now_ns(&mut self) -> u64 {
        lock(&self.0).now_ns
    }

    fn sleep_until(&mut self, deadline_ns: u64) {
        let mut t = lock(&self.0);
        t.now_ns = t.now_ns.max(deadline_ns);
    }
}

/// The probe in virtual time: the guest is paused for the probe's cost.
struct VirtualProbe {
    domain: Domain,
    time: Arc<Mutex<VirtualTime>>,
}

impl Probe for VirtualProbe {
    fn dirty_pages(&mut self) -> Option<u64> {
        let mut t = lock(&self.time);
        let dirty = self.domain.dirty_now(t.resumed_s, to_s(t.now_ns));
        t.now_ns += to_ns(self.domain.probe_s());
        Some(dirty)
    }
}

/// A pipe: the read end for the C library's control channel (fd:N), the
/// write end for the commands.
fn control_pipe() -> Result<(OwnedFd, File)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error())
            .context("cannot create the virtual control pipe");
    }
    // SAFETY: pipe2 just created both fds; nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

/// Writes the controller's commands as the control lines the C reads.
fn command(pipe: &mut File, interval_ms: Option<u32>, budget_pages: Option<u64>) -> Result<()> {
    let mut lines = String::new();
    if let Some(ms) = interval_ms {
        lines.push_str(&format!("interval_ms={ms}\n"));
    }
    if let Some(pages) = budget_pages {
        lines.push_str(&format!("budget_pages={pages}\n"));
    }
    // A few lines per checkpoint, read at every gate: the pipe never fills.
    pipe.write_all(lines.as_bytes())
        .context("cannot write to the virtual control pipe")
}

/// The gate's rule in virtual time: the save loop back at the gate at
/// `now_s` suspends at once, or when `interval_ms` has passed since the
/// previous suspend, whichever is later.
pub fn paced_suspend_s(now_s: f64, prev_suspend_s: f64, interval_ms: u32) -> f64 {
    now_s.max(prev_suspend_s + f64::from(interval_ms) / 1e3)
}

/// Runs the loop in virtual time for `duration_s`, steering with
/// `controller` synchronously; `disk` gives each epoch's disk bytes and
/// every row goes to `on_row`. The C gate paces, on the virtual clock.
pub fn run_virtual(
    domain: &Domain,
    duration_s: f64,
    controller: &mut Controller,
    mut disk: impl FnMut(f64, f64) -> DiskDelta,
    mut on_row: impl FnMut(Row) -> Result<()>,
) -> Result<()> {
    let (control_read, mut control) = control_pipe()?;
    let spec = format!("fd:{}", control_read.as_raw_fd());
    let Some(mut ckpt) =
        Ckpt::open_with(SIM_DOMID, CkptStream::Remus, PAGE_SIZE, None, Some(&spec))?
    else {
        bail!("the C library stayed unconfigured with a control pipe given");
    };
    let time = Arc::new(Mutex::new(VirtualTime {
        now_ns: VIRTUAL_BASE_NS + to_ns(domain.live_copy_s()),
        resumed_s: 0.0,
    }));
    ckpt.set_clock(Box::new(VirtualClock(Arc::clone(&time))));
    ckpt.set_probe(Box::new(VirtualProbe {
        domain: domain.clone(),
        time: Arc::clone(&time),
    }));
    let initial = controller.initial();
    command(
        &mut control,
        Some(initial.interval_ms),
        (initial.budget_pages != 0).then_some(initial.budget_pages),
    )?;
    let now_s = || to_s(lock(&time).now_ns);
    let advance = |seconds: f64| lock(&time).now_ns += to_ns(seconds);

    let mut running_since_s = 0.0;
    let mut live = true;
    while now_s() < duration_s {
        ckpt.gate(live);
        let t_suspend = now_s();
        let work: Work = domain.checkpoint(running_since_s, t_suspend, live);
        advance(work.suspend_s);
        ckpt.mark(Mark::Suspended);
        ckpt.dirty(work.dirty_pages, 0);
        advance(work.send_s);
        ckpt.wrote(work.bytes_sent, work.pages_sent);
        ckpt.mark(Mark::Sent);
        advance(work.resume_s);
        ckpt.mark(Mark::Resumed);
        let resumed_s = now_s();
        lock(&time).resumed_s = resumed_s;
        advance(work.commit_s);
        ckpt.emit();

        let raw = ckpt.last().context("the C library kept no record")?;
        let line =
            ffi::format_record(&raw).context("the C formatter refused a simulated record")?;
        let rec: Record =
            record::parse_line(&line).with_context(|| format!("C record did not parse: {line}"))?;
        let epoch = disk(running_since_s, t_suspend);
        let step = controller.on_record(&rec, epoch);
        if step.command_ms.is_some() || step.command_budget_pages.is_some() {
            command(&mut control, step.command_ms, step.command_budget_pages)?;
        }
        on_row(step.row)?;

        running_since_s = resumed_s;
        live = false;
    }
    Ok(())
}
