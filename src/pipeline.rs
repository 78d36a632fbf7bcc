//! The consumer: record -> size -> policy -> sinks.
//!
//! [`Controller`] is the synchronous heart (used as is by the fast
//! simulator); [`run`] puts it on threads joined by bounded channels so
//! that a slow disk under the CSV never delays the control line going back
//! to the save side:
//!
//! ```text
//! source thread --Record--> controller --interval--> control thread -> FIFO
//!                                      \--Row-----> CSV thread -> file
//!                                      \--Row/note-> status thread -> stderr
//! ```
//!
//! Every channel is bounded, and the controller never waits on a sink:
//!
//! - records (source -> controller, bounded by the caller): back-pressure.
//!   A controller that falls behind makes the reader wait, the FIFO fill,
//!   and the save side drop records, which it counts (`dropped`) and which
//!   show here as a gap; the save side itself never waits.
//! - intervals (controller -> control thread): one slot, newest wins. Only
//!   the newest decision matters, so an older one still waiting is replaced.
//! - rows (controller -> CSV thread): [`CSV_QUEUE_ROWS`]. When the CSV
//!   destination is so slow that the queue is full, the row is dropped and
//!   counted, with a rate-limited warning, and the count is in the final
//!   outcome line ([`Outcome::csv_rows_dropped`]). Waiting instead would
//!   stall the controller and with it the control path.
//! - status (controller, control and CSV threads -> status thread):
//!   [`STATUS_QUEUE`]. A status update that does not fit is skipped (the
//!   line is redrawn at most 10 times a second anyway; its counts come from
//!   the controller); a warning that does not fit is counted
//!   ([`Outcome::notes_dropped`]).
//!
//! A CSV write error (a full disk, `/dev/full`) is reported once when it
//! happens; CSV writing stops, control goes on, and the outcome carries
//! the error ([`Outcome::csv_error`]) so the command can fail at the end.
//!
//! Every number in a record is untrusted: the controller does no
//! arithmetic on one that can overflow. A sequence number that goes
//! backwards or jumps by more than [`MAX_SEQ_JUMP`] starts a new save
//! (time starts again) instead of counting billions of lost records, and a
//! row after missing records or a stall is marked (`gap`) and not fed to
//! the policy: its period is not one interval, so the policy step is
//! skipped and the interval kept.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::disk::{DiskDelta, DiskMeter};
use crate::metrics::MetricsHandle;
use crate::policy::{Decision, Observation, Policy};
use crate::record::Record;
use crate::row::CsvWriter;
use crate::row::Row;
use crate::sink::control::{Command, ControlWriter, Delivery};
use crate::sink::status::StatusLine;
use crate::sink::warn::RateLimit;
use crate::size::{CheckpointSize, SizeMetric};

/// Largest believable step in `seq` (or rise in `dropped`) from one record
/// to the next; beyond it the record starts a new save.
pub const MAX_SEQ_JUMP: u64 = 1_000_000;
/// Rows waiting for the CSV thread before rows are dropped (and counted).
pub const CSV_QUEUE_ROWS: usize = 1024;
/// Updates and warnings waiting for the status thread.
pub const STATUS_QUEUE: usize = 256;

/// The CSV's trigger column: empty when the record had no budget keys.
fn trigger_column(rec: &Record) -> String {
    if rec.budget_pages == 0 && rec.probes == 0 && rec.probe_errors == 0 {
        String::new()
    } else {
        rec.trigger.as_str().to_string()
    }
}

/// What the controller made of one record.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub row: Row,
    /// Interval to command now, when it differs from what the save side has.
    pub command_ms: Option<u32>,
    /// Dirty-page budget to command now (0: off), when the save side does
    /// not have the one wanted.
    pub command_budget_pages: Option<u64>,
    /// Records missing between the previous record and this one (a
    /// sequence jump, or the save side's `dropped` rising).
    pub gap: u64,
    /// The record began a new save (seq backwards, repeated, or an
    /// unbelievable jump): nothing is counted missing, time starts again.
    pub new_save: bool,
}

/// Sizes records and runs the policy on them.
pub struct Controller {
    policy: Box<dyn Policy>,
    metric: SizeMetric,
    t0_ns: Option<u64>,
    prev_suspend_ns: Option<u64>,
    prev_seq: Option<u64>,
    /// The save side's `dropped` in the previous record of this save.
    prev_dropped: u64,
    /// How long the previous checkpoint itself took, ns.
    prev_checkpoint_ns: u64,
    /// What we want the save side to have: the policy's latest decision.
    wanted: Decision,
}

impl Controller {
    pub fn new(policy: Box<dyn Policy>, metric: SizeMetric) -> Self {
        let wanted = policy.initial();
        Controller {
            policy,
            metric,
            t0_ns: None,
            prev_suspend_ns: None,
            prev_seq: None,
            prev_dropped: 0,
            prev_checkpoint_ns: 0,
            wanted,
        }
    }

    /// What to command before the first record (budget 0: none).
    pub fn initial(&self) -> Decision {
        self.wanted
    }

    pub fn on_record(&mut self, rec: &Record, disk: DiskDelta) -> Step {
        // No arithmetic on record numbers that can overflow: seq, dropped
        // and timestamps are whatever the line said.
        let (missing, new_save) = match self.prev_seq {
            None => (0, false),
            Some(prev) => match rec.seq.checked_sub(prev) {
                Some(step @ 1..=MAX_SEQ_JUMP) => (step - 1, false),
                // Backwards, repeated, or a jump no save side makes: a new
                // save (the helper restarted), and time starts again.
                _ => (0, true),
            },
        };
        if new_save {
            self.prev_suspend_ns = None;
            self.prev_dropped = 0;
        }
        self.prev_seq = Some(rec.seq);
        // `dropped` is cumulative per save; a fall or an unbelievable rise
        // counts nothing.
        let dropped_rise = rec
            .dropped
            .checked_sub(self.prev_dropped)
            .filter(|rise| *rise <= MAX_SEQ_JUMP)
            .unwrap_or(0);
        self.prev_dropped = rec.dropped;
        let gap = missing.max(dropped_rise);

        let t0 = *self.t0_ns.get_or_insert(rec.t_suspend_ns);
        let period_ms = match self.prev_suspend_ns {
            Some(prev) if rec.t_suspend_ns > prev => (rec.t_suspend_ns - prev) as f64 / 1e6,
            _ => 0.0,
        };
        self.prev_suspend_ns = Some(rec.t_suspend_ns);
        // A period far beyond the interval and the previous checkpoint's
        // own duration is a stall (of the save side, or of this consumer
        // while records waited), not one interval.
        let paced_ms = rec.interval_ms.max(self.wanted.interval_ms);
        let stall_ms =
            stall_timeout(paced_ms).as_secs_f64() * 1e3 + self.prev_checkpoint_ns as f64 / 1e6;
        let stall = period_ms > stall_ms;
        self.prev_checkpoint_ns = rec.checkpoint_ns();
        let row_gap = if gap > 0 { gap } else { u64::from(stall) };

        let size = CheckpointSize::of(rec, disk.disk_bytes);
        let size_bytes = size.metric_bytes(self.metric);
        // A missing disk epoch leaves the total size unknown: no policy
        // step on a number that would be too small. A failed CLEAN
        // (legacy Xen) leaves no dirty count: a policy fed dirty_pages=0
        // would take it for an idle guest.
        let size_unknown = disk.disk_unknown && self.metric == SizeMetric::Total;
        let next = if row_gap > 0 || size_unknown || rec.clean_error {
            // Not a normal period, or no size to judge: keep the
            // decision, skip the policy step.
            self.wanted
        } else {
            self.policy.decide(&Observation {
                size_bytes,
                period_ms,
                live: rec.live,
                page_size: rec.page_size,
                dirty_pages: rec.dirty_pages,
                bytes_sent: rec.bytes_sent,
                disk_bytes: disk.disk_bytes,
                trigger: rec.trigger,
                dirty_at_trigger: rec.dirty_at_trigger,
            })
        };
        // Command each value when the decision changed it, or when the save
        // side does not have what we want (it restarted, or a line was lost).
        let command_ms = (next.interval_ms != self.wanted.interval_ms
            || rec.cmd_interval_ms != next.interval_ms)
            .then_some(next.interval_ms);
        let command_budget_pages = (next.budget_pages != self.wanted.budget_pages
            || rec.budget_pages != next.budget_pages)
            .then_some(next.budget_pages);
        self.wanted = next;

        let row = Row {
            seq: rec.seq,
            t_s: rec.t_suspend_ns.saturating_sub(t0) as f64 / 1e9,
            dirty_pages: rec.dirty_pages,
            pages_sent: rec.pages_sent,
            bytes_sent: rec.bytes_sent,
            disk_bytes: disk.disk_bytes,
            size_bytes,
            pause_ms: rec.pause_ns() as f64 / 1e6,
            checkpoint_ms: rec.checkpoint_ns() as f64 / 1e6,
            period_ms,
            interval_ms: u64::from(rec.interval_ms),
            dropped: rec.dropped,
            live: u8::from(rec.live),
            memory_bytes: size.memory_bytes,
            gate_wait_ms: rec.gate_wait_ns as f64 / 1e6,
            next_interval_ms: u64::from(next.interval_ms),
            drbd_deferred: disk.drbd_deferred,
            drbd_checkpoints: disk.drbd_checkpoints,
            gap: row_gap,
            trigger: trigger_column(rec),
            dirty_at_trigger: rec.dirty_at_trigger,
            budget_pages: rec.budget_pages,
            probes: rec.probes,
            probe_ms: rec.probe_ns as f64 / 1e6,
            disk_epochs: disk.disk_epochs,
            disk_unknown: u8::from(disk.disk_unknown),
            clean_error: u8::from(rec.clean_error),
        };
        Step {
            row,
            command_ms,
            command_budget_pages,
            gap,
            new_save,
        }
    }
}

/// How to run the threaded consumer.
pub struct Config {
    pub controller: Controller,
    /// Lmax, for the status line's share of sizes above it.
    pub lmax_bytes: u64,
    pub csv: Option<PathBuf>,
    /// Control FIFO to steer through; `None` only observes.
    pub control: Option<PathBuf>,
    /// Disk replication counters (`--disk`); `None`: memory only.
    pub disk: Option<DiskMeter>,
    pub quiet: bool,
    /// `--metrics`: each record is handed over without waiting.
    pub metrics: Option<MetricsHandle>,
}

/// What a finished run saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub checkpoints: u64,
    pub over_lmax: u64,
    /// Records the save side reported lost, plus sequence gaps seen here.
    pub lost: u64,
    pub control_lines: u64,
    /// Whether an interval never reached the save side.
    pub control_pending: bool,
    /// Rows left out of the CSV because its destination was too slow.
    pub csv_rows_dropped: u64,
    /// The CSV write error that stopped CSV writing, if one did.
    pub csv_error: Option<String>,
    /// Warnings not shown because stderr was not keeping up.
    pub notes_dropped: u64,
}

enum StatusMsg {
    Row {
        /// Boxed: a Row is ~240 bytes, a Note 24; the channel's slots take
        /// the size of the largest variant.
        row: Box<Row>,
        checkpoints: u64,
        over_lmax: u64,
    },
    Note(String),
}

/// The way every thread hands a warning to the status thread without ever
/// waiting on it: a warning that does not fit is counted.
#[derive(Clone)]
struct Notes {
    tx: Sender<StatusMsg>,
    dropped: Arc<AtomicU64>,
}

impl Notes {
    fn send(&self, text: String) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(StatusMsg::Note(text)) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn send_opt(&self, text: Option<String>) {
        if let Some(text) = text {
            self.send(text);
        }
    }
}

/// What the CSV thread did.
struct CsvReport {
    error: Option<String>,
}

/// Runs the consumer until `records` closes, then drains and joins.
pub fn run(cfg: Config, records: Receiver<Record>) -> Result<Outcome> {
    let (status_tx, status_rx) = crossbeam_channel::bounded::<StatusMsg>(STATUS_QUEUE);
    let (csv_tx, csv_rx) = crossbeam_channel::bounded::<Row>(CSV_QUEUE_ROWS);
    let (ctl_tx, ctl_rx) = crossbeam_channel::bounded::<Commands>(1);
    let notes = Notes {
        tx: status_tx.clone(),
        dropped: Arc::new(AtomicU64::new(0)),
    };

    let csv_path = cfg.csv.clone();
    let csv = match &csv_path {
        Some(path) => Some(spawn_csv(CsvWriter::create(path)?, csv_rx, notes.clone())?),
        None => None,
    };
    let status = spawn_status(cfg.quiet, status_rx)?;
    let initial = cfg.controller.initial();
    let control = match cfg.control.clone() {
        Some(path) => {
            command(
                &ctl_tx,
                &ctl_rx,
                Commands {
                    interval_ms: Some(initial.interval_ms),
                    budget_pages: (initial.budget_pages != 0).then_some(initial.budget_pages),
                },
            );
            Some(spawn_control(path, ctl_rx.clone(), notes.clone())?)
        }
        None => None,
    };

    let mut outcome = control_loop(cfg, &records, &ctl_tx, &ctl_rx, &csv_tx, &status_tx, &notes);
    drop((ctl_tx, ctl_rx, csv_tx, status_tx));

    let control_result = control.map(|handle| join(handle, "control"));
    let csv_report = csv.map(|handle| join(handle, "CSV"));
    drop(notes.tx);
    join(status, "status")?;
    if let Some(report) = csv_report {
        outcome.csv_error = report?.error;
    }
    outcome.notes_dropped = notes.dropped.load(Ordering::Relaxed);
    if let Some(result) = control_result {
        let (lines, pending) = result??;
        outcome.control_lines = lines;
        outcome.control_pending = pending;
    }
    Ok(outcome)
}

fn join<T>(handle: JoinHandle<T>, name: &str) -> Result<T> {
    handle
        .join()
        .map_err(|_| anyhow!("the {name} thread panicked"))
}

/// What the controller wants the save side to have; `None`: unchanged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Commands {
    interval_ms: Option<u32>,
    budget_pages: Option<u64>,
}

/// Hands `cmd` to the control thread without waiting: the slot holds one
/// command, and a newer one is merged over an older one still there (the
/// newest value of each key wins; a key the newer one leaves unset keeps
/// the older value).
fn command(ctl_tx: &Sender<Commands>, ctl_rx: &Receiver<Commands>, mut cmd: Commands) {
    loop {
        match ctl_tx.try_send(cmd) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => return,
            Err(TrySendError::Full(_)) => {
                if let Ok(old) = ctl_rx.try_recv() {
                    cmd.interval_ms = cmd.interval_ms.or(old.interval_ms);
                    cmd.budget_pages = cmd.budget_pages.or(old.budget_pages);
                }
            }
        }
    }
}

/// The controller's repeated warnings, each kind rate-limited.
struct Warnings {
    gaps: RateLimit,
    new_saves: RateLimit,
    stalls: RateLimit,
    csv_drops: RateLimit,
}

impl Warnings {
    fn new() -> Self {
        Warnings {
            gaps: RateLimit::new("gaps"),
            new_saves: RateLimit::new("new saves"),
            stalls: RateLimit::new("stalls"),
            csv_drops: RateLimit::new("CSV rows dropped"),
        }
    }

    fn each(&mut self) -> [&mut RateLimit; 4] {
        [
            &mut self.gaps,
            &mut self.new_saves,
            &mut self.stalls,
            &mut self.csv_drops,
        ]
    }
}

fn control_loop(
    mut cfg: Config,
    records: &Receiver<Record>,
    ctl_tx: &Sender<Commands>,
    ctl_rx: &Receiver<Commands>,
    csv_tx: &Sender<Row>,
    status_tx: &Sender<StatusMsg>,
    notes: &Notes,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut warnings = Warnings::new();
    // Some(shown) while no record came for a while.
    let mut stalled: Option<bool> = None;
    let mut prev_seq = None;
    loop {
        let stall_after = stall_timeout(cfg.controller.wanted.interval_ms);
        let received = records.recv_timeout(stall_after);
        let now = Instant::now();
        for limit in warnings.each() {
            notes.send_opt(limit.tick(now));
        }
        let rec = match received {
            Ok(rec) => rec,
            Err(RecvTimeoutError::Timeout) => {
                if stalled.is_none() && outcome.checkpoints > 0 {
                    let note = warnings.stalls.note(now, || {
                        format!(
                            "remus-ckpt: warning: no checkpoint record for {:.1}s (interval {}ms): \
                             is Remus still running?",
                            stall_after.as_secs_f64(),
                            cfg.controller.wanted.interval_ms
                        )
                    });
                    // "Flow again" only follows a stall warning shown.
                    stalled = Some(note.is_some());
                    notes.send_opt(note);
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if stalled.take() == Some(true) {
            notes.send("remus-ckpt: records flow again".into());
        }
        let disk = cfg
            .disk
            .as_mut()
            .map(|d| d.on_record(&rec))
            .unwrap_or_default();
        let step = cfg.controller.on_record(&rec, disk);
        if let Some(metrics) = &cfg.metrics {
            metrics.observe(&rec, &step, now);
        }
        if step.command_ms.is_some() || step.command_budget_pages.is_some() {
            command(
                ctl_tx,
                ctl_rx,
                Commands {
                    interval_ms: step.command_ms,
                    budget_pages: step.command_budget_pages,
                },
            );
        }
        if step.new_save {
            if let Some(prev) = prev_seq {
                notes.send_opt(warnings.new_saves.note(now, || {
                    format!(
                        "remus-ckpt: seq {} after seq {prev}: taken as a new save \
                         (nothing counted lost, time starts again)",
                        rec.seq
                    )
                }));
            }
        }
        prev_seq = Some(rec.seq);
        if step.gap > 0 {
            notes.send_opt(warnings.gaps.note(now, || {
                format!(
                    "remus-ckpt: {} record(s) missing before seq {} (save side reports {} dropped)",
                    step.gap, rec.seq, rec.dropped
                )
            }));
        }
        outcome.lost = outcome.lost.saturating_add(step.gap);
        if !rec.live {
            outcome.checkpoints += 1;
            if step.row.size_bytes > cfg.lmax_bytes {
                outcome.over_lmax += 1;
            }
        }
        if cfg.csv.is_some() {
            if let Err(TrySendError::Full(row)) = csv_tx.try_send(step.row.clone()) {
                outcome.csv_rows_dropped += 1;
                notes.send_opt(warnings.csv_drops.note(now, || {
                    format!(
                        "remus-ckpt: warning: the CSV is not keeping up ({CSV_QUEUE_ROWS} rows \
                         waiting): row seq {} dropped (counted; the total is in the last line)",
                        row.seq
                    )
                }));
            }
        }
        // Best effort: a status update that does not fit is skipped.
        let _ = status_tx.try_send(StatusMsg::Row {
            row: Box::new(step.row),
            checkpoints: outcome.checkpoints,
            over_lmax: outcome.over_lmax,
        });
    }
    for limit in warnings.each() {
        notes.send_opt(limit.flush());
    }
    outcome
}

/// No record for this long is worth a warning: several intervals, and
/// never less than 2 s (a checkpoint of a large guest takes a while).
fn stall_timeout(interval_ms: u32) -> Duration {
    Duration::from_millis(u64::from(interval_ms) * 5).max(Duration::from_secs(2))
}

fn spawn_control(
    path: PathBuf,
    rx: Receiver<Commands>,
    notes: Notes,
) -> Result<JoinHandle<Result<(u64, bool)>>> {
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            let mut writer = ControlWriter::new(&path);
            let mut warned = false;
            loop {
                match rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(cmds) => {
                        // Only the newest decision of each kind matters
                        // (the writer keeps one pending line per key).
                        for cmds in std::iter::once(cmds).chain(rx.try_iter()) {
                            if let Some(ms) = cmds.interval_ms {
                                writer.queue(Command::IntervalMs(ms));
                            }
                            if let Some(pages) = cmds.budget_pages {
                                writer.queue(Command::BudgetPages(pages));
                            }
                        }
                        writer.flush()?;
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        if writer.flush()? == Delivery::Pending && !warned {
                            warned = true;
                            notes.send(format!(
                                "remus-ckpt: waiting for the save side to open {} \
                                 (it does at its first checkpoint)",
                                path.display()
                            ));
                        }
                    }
                    Err(RecvTimeoutError::Disconnected) => {
                        writer.flush()?;
                        return Ok((writer.written, writer.has_pending()));
                    }
                }
            }
        })
        .context("cannot start the control thread")
}

/// Writes rows to the CSV. The first error is reported when it happens,
/// and writing stops (rows still coming are taken and counted, so the
/// controller never finds the queue full because of a dead file).
fn spawn_csv(
    mut sink: CsvWriter,
    rx: Receiver<Row>,
    notes: Notes,
) -> Result<JoinHandle<CsvReport>> {
    std::thread::Builder::new()
        .name("csv".into())
        .spawn(move || {
            let mut error: Option<anyhow::Error> = None;
            // The last row known to be in the file (flushed).
            let mut on_disk_seq: Option<u64> = None;
            for row in &rx {
                if error.is_some() {
                    continue;
                }
                // Rows reach the file as soon as none is waiting: each one
                // is on disk within a checkpoint, and a burst is one write.
                let flush = rx.is_empty();
                let result = sink
                    .write(&row)
                    .and_then(|()| if flush { sink.flush() } else { Ok(()) });
                match result {
                    Ok(()) if flush => on_disk_seq = Some(row.seq),
                    Ok(()) => {}
                    Err(e) => {
                        notes.send(format!(
                            "remus-ckpt: error: {e:#}; CSV writing stopped (control goes on)"
                        ));
                        error = Some(e);
                    }
                }
            }
            if error.is_none() {
                if let Err(e) = sink.finish() {
                    notes.send(format!("remus-ckpt: error: {e:#}"));
                    error = Some(e);
                }
            }
            CsvReport {
                error: error.map(|e| match on_disk_seq {
                    Some(seq) => {
                        format!("{e:#} (the CSV ends at seq {seq}; later rows are missing)")
                    }
                    None => format!("{e:#} (no row reached the CSV)"),
                }),
            }
        })
        .context("cannot start the CSV thread")
}

/// The status line and every warning, on stderr.
fn spawn_status(quiet: bool, rx: Receiver<StatusMsg>) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("status".into())
        .spawn(move || {
            let mut status = StatusLine::new(quiet);
            for msg in &rx {
                match msg {
                    StatusMsg::Row {
                        row,
                        checkpoints,
                        over_lmax,
                    } => status.update(&row, checkpoints, over_lmax),
                    StatusMsg::Note(text) => status.message(&text),
                }
            }
            status.finish();
        })
        .context("cannot start the status thread")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyArgs;

    fn rec(seq: u64, t_suspend_ms: u64, bytes: u64, cmd: u32) -> Record {
        Record {
            seq,
            page_size: 4096,
            dirty_pages: bytes / 4104,
            pages_sent: bytes / 4104,
            bytes_sent: bytes,
            t_suspend_ns: t_suspend_ms * 1_000_000,
            t_suspended_ns: t_suspend_ms * 1_000_000 + 1_000_000,
            t_resumed_ns: t_suspend_ms * 1_000_000 + 6_000_000,
            t_done_ns: t_suspend_ms * 1_000_000 + 7_000_000,
            cmd_interval_ms: cmd,
            live: seq == 0,
            ..Record::default()
        }
    }

    #[test]
    fn rows_and_commands() {
        let mut c = Controller::new(PolicyArgs::default().build().unwrap(), SizeMetric::Wire);
        assert_eq!(c.initial(), Decision::interval(200));
        let s0 = c.on_record(&rec(0, 1000, 100 << 20, 0), DiskDelta::default());
        assert_eq!(s0.row.period_ms, 0.0);
        assert_eq!(s0.row.live, 1);
        assert_eq!(s0.command_ms, Some(200), "save side has no interval yet");
        let s1 = c.on_record(&rec(1, 1200, 32 << 20, 200), DiskDelta::default());
        assert_eq!(s1.row.period_ms, 200.0);
        assert_eq!(s1.row.pause_ms, 5.0);
        assert_eq!(s1.row.checkpoint_ms, 7.0);
        assert_eq!(s1.row.t_s, 0.2);
        assert_eq!(s1.command_ms, Some(100), "above Lmax halves the interval");
        let s2 = c.on_record(&rec(3, 1300, 8 << 20, 100), DiskDelta::default());
        assert_eq!(s2.gap, 1);
        assert_eq!(s2.command_ms, None, "inside the band, already commanded");
    }

    fn controller() -> Controller {
        Controller::new(PolicyArgs::default().build().unwrap(), SizeMetric::Wire)
    }

    fn step(c: &mut Controller, rec: &Record) -> Step {
        c.on_record(rec, DiskDelta::default())
    }

    #[test]
    fn seq_that_wraps_or_jumps_starts_a_new_save() {
        // Before: `prev + 1` overflowed on seq u64::MAX (a panic in debug,
        // u64::MAX - 1 "missing" records in release).
        let mut c = controller();
        step(&mut c, &rec(u64::MAX, 1000, 1 << 20, 200));
        let s = step(&mut c, &rec(0, 1200, 1 << 20, 200));
        assert!(s.new_save);
        assert_eq!((s.gap, s.row.gap, s.row.period_ms), (0, 0, 0.0));
        let s = step(&mut c, &rec(u64::MAX, 1400, 1 << 20, 200));
        assert!(
            s.new_save,
            "a jump to u64::MAX is no save side's next record"
        );
        assert_eq!(s.gap, 0);
        // Backwards by one, and forward by more than MAX_SEQ_JUMP.
        assert!(step(&mut c, &rec(u64::MAX - 1, 1600, 1 << 20, 200)).new_save);
        step(&mut c, &rec(5, 1800, 1 << 20, 200));
        let s = step(&mut c, &rec(6 + MAX_SEQ_JUMP, 2000, 1 << 20, 200));
        assert!(s.new_save);
        assert_eq!(s.gap, 0);
        // The largest believable jump is counted, not taken as a new save.
        let s = step(&mut c, &rec(6 + 2 * MAX_SEQ_JUMP, 2200, 1 << 20, 200));
        assert!(!s.new_save);
        assert_eq!(s.gap, MAX_SEQ_JUMP - 1);
    }

    #[test]
    fn timestamps_in_any_order_never_overflow() {
        let mut c = controller();
        let mut r = rec(1, 0, 1 << 20, 200);
        r.t_suspend_ns = u64::MAX;
        r.t_suspended_ns = 1;
        r.t_resumed_ns = 0;
        r.t_done_ns = 2;
        let s = step(&mut c, &r);
        assert_eq!((s.row.pause_ms, s.row.checkpoint_ms), (0.0, 0.0));
        r.seq = 2;
        r.t_suspend_ns = 0;
        r.t_suspended_ns = u64::MAX;
        r.t_resumed_ns = u64::MAX;
        r.t_done_ns = u64::MAX;
        let s = step(&mut c, &r);
        assert_eq!(
            (s.row.t_s, s.row.period_ms),
            (0.0, 0.0),
            "time went backwards"
        );
        r.seq = 3;
        r.t_suspend_ns = u64::MAX;
        let s = step(&mut c, &r);
        assert!(s.row.period_ms.is_finite() && s.row.period_ms > 0.0);
        assert_eq!(s.row.gap, 1, "an 18e9 s period is a stall, not an interval");
    }

    #[test]
    fn dropped_is_counted_only_when_believable() {
        let mut c = controller();
        let mut r = rec(1, 1000, 1 << 20, 200);
        r.dropped = u64::MAX;
        assert_eq!(
            step(&mut c, &r).gap,
            0,
            "u64::MAX lost records is not believed"
        );
        r.seq = 2;
        r.dropped = 5;
        assert_eq!(step(&mut c, &r).gap, 0, "dropped fell: nothing counted");
        r.seq = 3;
        r.dropped = 12;
        let s = step(&mut c, &r);
        assert_eq!((s.gap, s.row.gap), (7, 7));
        r.seq = 4;
        r.dropped = 12 + MAX_SEQ_JUMP;
        assert_eq!(step(&mut c, &r).gap, MAX_SEQ_JUMP);
    }

    /// `--size-metric total` with tap-remus epochs: a known disk burst
    /// moves the policy; a checkpoint whose disk epoch is missing does
    /// not (its size is unknown), and its row says so.
    #[test]
    fn a_missing_disk_epoch_is_not_fed_to_a_total_size_policy() {
        let mut c = Controller::new(PolicyArgs::default().build().unwrap(), SizeMetric::Total);
        let epoch = |bytes, epochs, unknown| DiskDelta {
            disk_bytes: bytes,
            disk_epochs: Some(epochs),
            disk_unknown: unknown,
            ..DiskDelta::default()
        };
        c.on_record(&rec(0, 1000, 1 << 20, 0), epoch(0, 1, false));
        let s = c.on_record(&rec(1, 1200, 1 << 20, 200), epoch(64 << 20, 1, false));
        assert_eq!(s.row.disk_bytes, 64 << 20);
        assert_eq!(s.command_ms, Some(100), "a 64 MiB disk epoch is above Lmax");
        let s = c.on_record(&rec(2, 1300, 1 << 20, 100), epoch(0, 0, true));
        assert_eq!((s.row.disk_epochs, s.row.disk_unknown), (Some(0), 1));
        assert_eq!(s.command_ms, None, "unknown size: the decision stands");
        assert_eq!(s.row.next_interval_ms, 100);
        // Under --size-metric wire the disk is not in the size: a missing
        // epoch changes nothing (same decision as with the epoch there).
        let wire = |unknown: bool| {
            let mut w = Controller::new(PolicyArgs::default().build().unwrap(), SizeMetric::Wire);
            w.on_record(&rec(0, 1000, 1 << 20, 0), epoch(0, 1, false));
            w.on_record(
                &rec(1, 1200, 64 << 20, 200),
                epoch(0, u64::from(!unknown), unknown),
            )
        };
        let (a, b) = (wire(true), wire(false));
        assert_eq!(a.command_ms, Some(100), "64 MiB of memory is above Lmax");
        assert_eq!(
            (a.command_ms, a.row.next_interval_ms),
            (b.command_ms, b.row.next_interval_ms)
        );
    }

    #[test]
    fn sizes_saturate() {
        let mut c = Controller::new(PolicyArgs::default().build().unwrap(), SizeMetric::Total);
        let mut r = rec(1, 1000, 0, 200);
        r.dirty_pages = u64::MAX;
        r.page_size = u32::MAX;
        r.bytes_sent = u64::MAX;
        let disk = DiskDelta {
            disk_bytes: u64::MAX,
            ..DiskDelta::default()
        };
        let s = c.on_record(&r, disk);
        assert_eq!((s.row.size_bytes, s.row.memory_bytes), (u64::MAX, u64::MAX));
    }

    #[test]
    fn hostile_records_through_the_threads_count_sanely() {
        // Every field at its extremes, through run(): no panic (before:
        // overflow in `prev + 1` and in `outcome.lost +=`), and the lost
        // count stays within what MAX_SEQ_JUMP allows per record.
        let (tx, rx) = crossbeam_channel::unbounded();
        let records = [
            (u64::MAX, u64::MAX),
            (0, 0),
            (u64::MAX, u64::MAX),
            (1, 3),
            (3, u64::MAX),
            (4, 0),
        ];
        for (i, (seq, dropped)) in records.into_iter().enumerate() {
            let mut r = rec(seq, 1000 + 200 * i as u64, u64::MAX, u32::MAX);
            r.dropped = dropped;
            r.t_done_ns = u64::MAX;
            tx.send(r).unwrap();
        }
        drop(tx);
        let cfg = Config {
            controller: controller(),
            lmax_bytes: 16 << 20,
            csv: None,
            control: None,
            disk: None,
            quiet: true,
            metrics: None,
        };
        let outcome = run(cfg, rx).unwrap();
        // seq 1 after u64::MAX: new save, dropped 3 from 0 → 3;
        // seq 3 after 1: one missing (dropped u64::MAX not believed).
        assert_eq!(outcome.lost, 4);
        assert_eq!(outcome.checkpoints, 5);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_records_never_panic(
            fields in proptest::collection::vec(proptest::prelude::any::<[u64; 8]>(), 1..40)
        ) {
            let mut c = controller();
            for f in fields {
                let r = Record {
                    seq: f[0], dropped: f[1], t_suspend_ns: f[2], t_suspended_ns: f[3],
                    t_resumed_ns: f[4], t_done_ns: f[5], dirty_pages: f[6], bytes_sent: f[7],
                    page_size: (f[6] & 0xffff_ffff) as u32 | 1,
                    interval_ms: (f[7] & 0xffff_ffff) as u32,
                    cmd_interval_ms: (f[3] & 0xffff_ffff) as u32, gate_wait_ns: f[4],
                    ..Record::default()
                };
                let s = c.on_record(&r, DiskDelta { disk_bytes: f[5], ..DiskDelta::default() });
                proptest::prop_assert!(s.gap <= MAX_SEQ_JUMP);
                proptest::prop_assert!(s.row.period_ms.is_finite() && s.row.period_ms >= 0.0);
                proptest::prop_assert!(s.row.t_s.is_finite() && s.row.t_s >= 0.0);
            }
        }
    }

    #[test]
    fn a_gap_or_stall_is_marked_and_not_fed_to_the_policy() {
        // Threshold policy, Lmax 16 MiB: every 32 MiB checkpoint halves.
        let mut c = controller();
        step(&mut c, &rec(0, 0, 100 << 20, 0));
        let s = step(&mut c, &rec(1, 200, 32 << 20, 200));
        assert_eq!((s.row.gap, s.row.next_interval_ms), (0, 100));
        // A 26 s period after a consumer stall (before: fed to the policy
        // as a real checkpoint). Marked, and the interval is kept.
        let s = step(&mut c, &rec(2, 26_200, 32 << 20, 100));
        assert_eq!(
            s.row.period_ms, 26_000.0,
            "the period itself is written as seen"
        );
        assert_eq!((s.row.gap, s.gap), (1, 0), "a stall, no record missing");
        assert_eq!((s.row.next_interval_ms, s.command_ms), (100, None));
        // Missing records: marked with their count, policy skipped.
        let s = step(&mut c, &rec(5, 26_500, 32 << 20, 100));
        assert_eq!(
            (s.row.gap, s.row.next_interval_ms, s.command_ms),
            (2, 100, None)
        );
        // The next normal checkpoint is fed again.
        let s = step(&mut c, &rec(6, 26_600, 32 << 20, 100));
        assert_eq!(
            (s.row.gap, s.row.next_interval_ms, s.command_ms),
            (0, 50, Some(50))
        );
        // A period long only because the previous checkpoint itself took
        // long (a big guest) is not a stall.
        let mut slow = rec(7, 26_650, 32 << 20, 50);
        slow.t_done_ns = slow.t_suspend_ns + 3_000_000_000;
        step(&mut c, &slow);
        let s = step(&mut c, &rec(8, 26_650 + 3_100, 32 << 20, 25));
        assert_eq!(s.row.gap, 0);
    }

    #[test]
    fn a_failed_clean_is_marked_and_not_fed_to_the_policy() {
        // Before: a legacy record after a failed CLEAN showed its stale
        // count as exact and was fed to the policy.
        let mut c = controller();
        step(&mut c, &rec(0, 0, 100 << 20, 0));
        let s = step(&mut c, &rec(1, 200, 32 << 20, 200));
        assert_eq!((s.row.clean_error, s.row.next_interval_ms), (0, 100));
        let failed = Record {
            dirty_pages: 0,
            clean_error: true,
            ..rec(2, 300, 32 << 20, 100)
        };
        let s = step(&mut c, &failed);
        assert_eq!((s.row.clean_error, s.row.dirty_pages), (1, 0));
        assert_eq!((s.row.gap, s.gap), (0, 0), "nothing is missing");
        assert_eq!(
            (s.row.next_interval_ms, s.command_ms),
            (100, None),
            "the 32 MiB checkpoint above Lmax was not fed: no halving"
        );
        let s = step(&mut c, &rec(3, 400, 32 << 20, 100));
        assert_eq!(
            (s.row.clean_error, s.row.next_interval_ms, s.command_ms),
            (0, 50, Some(50))
        );
    }

    fn budget_controller() -> Controller {
        let args = PolicyArgs {
            policy: crate::policy::PolicyKind::Budget,
            ..PolicyArgs::default()
        };
        Controller::new(args.build().unwrap(), SizeMetric::Wire)
    }

    /// A budget-triggered record: `dirty` pages at the suspend, `at` when
    /// the gate triggered, `budget` what the save side had.
    fn budget_rec(seq: u64, t_ms: u64, dirty: u64, at: u64, budget: u64) -> Record {
        Record {
            dirty_pages: dirty,
            pages_sent: dirty,
            bytes_sent: dirty * 4104 + 5632,
            trigger: crate::record::Trigger::Budget,
            dirty_at_trigger: at,
            budget_pages: budget,
            ..rec(seq, t_ms, 0, 2000)
        }
    }

    #[test]
    fn budget_margin_is_learned_and_commanded_through_the_controller() {
        // Wire model before 4 records: 4104 bytes per page + 5632 fixed,
        // (16 MiB - 5632) / 4104 = 4086 pages fit Lmax.
        let mut c = budget_controller();
        assert_eq!(
            c.initial(),
            Decision {
                interval_ms: 2000,
                budget_pages: 3881 // 4086 - 5 % before any overshoot
            }
        );
        let s = step(&mut c, &rec(0, 0, 100 << 20, 0));
        assert_eq!(
            (s.command_ms, s.command_budget_pages),
            (Some(2000), Some(3881)),
            "the save side has neither yet"
        );
        // 10 pages dirtied after the trigger: the margin is 10.
        let s = step(&mut c, &budget_rec(1, 500, 3881, 3871, 3881));
        assert_eq!((s.command_ms, s.command_budget_pages), (None, Some(4076)));
        // A 400-page overshoot is taken at once: fewer pages.
        let s = step(&mut c, &budget_rec(2, 1000, 4076, 3676, 4076));
        assert_eq!(s.command_budget_pages, Some(3686));
        assert_eq!(
            s.row.budget_pages, 4076,
            "the row shows what the save side had"
        );
        // No overshoot: the margin decays (400 x 0.9 = 360).
        let s = step(&mut c, &budget_rec(3, 1500, 3686, 3686, 3686));
        assert_eq!(s.command_budget_pages, Some(3726));
        // An interval-triggered record teaches no margin: the decision
        // stays, but the save side shows budget 0 (it restarted or lost
        // the line), so the budget is sent again.
        let mut r = budget_rec(4, 3500, 3000, 3000, 0);
        r.trigger = crate::record::Trigger::Interval;
        let s = step(&mut c, &r);
        assert_eq!((s.command_ms, s.command_budget_pages), (None, Some(3726)));
        // Once the save side has it, nothing is sent.
        r.seq = 5;
        r.t_suspend_ns += 2_000_000_000;
        r.budget_pages = 3726;
        let s = step(&mut c, &r);
        assert_eq!((s.command_ms, s.command_budget_pages), (None, None));
    }

    #[test]
    fn interval_policies_command_no_budget() {
        let mut c = controller();
        for seq in 0..5 {
            let s = step(&mut c, &rec(seq, 200 * seq, 32 << 20, 200));
            assert_eq!(s.command_budget_pages, None, "seq {seq}");
        }
    }

    fn cfg_with(csv: Option<PathBuf>, control: Option<PathBuf>) -> Config {
        Config {
            controller: controller(),
            lmax_bytes: 16 << 20,
            csv,
            control,
            disk: None,
            quiet: true,
            metrics: None,
        }
    }

    #[test]
    fn a_csv_that_blocks_costs_counted_rows_not_memory_or_control() {
        // The CSV is a FIFO nobody reads until the end: every write blocks
        // once the pipe is full. Before: the unbounded queue held every row.
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("slow.csv");
        crate::fifo::ensure_private_fifo(&csv).unwrap();
        let mut reader = crate::fifo::open_reader(&csv).unwrap();
        let (tx, rx) = crossbeam_channel::bounded(16);
        let consumer = std::thread::spawn({
            let csv = csv.clone();
            move || run(cfg_with(Some(csv), None), rx)
        });
        const N: u64 = 50_000;
        for seq in 0..N {
            // The controller must keep taking records while the CSV is
            // stuck; 10 s per record is a bound that cannot flake.
            tx.send_timeout(
                rec(seq, 1000 + seq * 200, 8 << 20, 200),
                Duration::from_secs(10),
            )
            .expect("the controller waited on the CSV");
        }
        drop(tx);
        // Now let the CSV drain: read it to its end.
        let mut text = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            use std::io::Read;
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => text.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
        }
        let outcome = consumer.join().unwrap().unwrap();
        let rows = crate::row::read_csv_from(&text[..], "slow.csv").unwrap();
        assert_eq!(
            outcome.checkpoints,
            N - 1,
            "every record reached the controller"
        );
        assert!(outcome.csv_rows_dropped > 0);
        assert_eq!(
            rows.len() as u64 + outcome.csv_rows_dropped,
            N,
            "every row written or counted"
        );
        // Rows that got through: the queue, plus what the pipe and the
        // writer's buffers hold (a 64 KiB pipe holds ~1,000 rows).
        assert!(
            rows.len() < CSV_QUEUE_ROWS + 8_000,
            "{} rows got through a CSV that never read",
            rows.len()
        );
        assert_eq!(outcome.csv_error, None);
    }

    #[test]
    fn a_csv_error_is_reported_and_control_goes_on() {
        // Before: the sink thread died silently at its first failed write
        // and run() only failed at the end. The CSV here is a FIFO whose
        // reader takes the header and goes away: the next flush fails.
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("gone.csv");
        crate::fifo::ensure_private_fifo(&csv).unwrap();
        let csv_reader = crate::fifo::open_reader(&csv).unwrap();
        let control = dir.path().join("control");
        crate::fifo::ensure_private_fifo(&control).unwrap();
        let mut reader = crate::fifo::open_reader(&control).unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let consumer = std::thread::spawn({
            let csv = csv.clone();
            move || run(cfg_with(Some(csv), Some(control)), rx)
        });
        // The header is in the pipe once create() returned; wait for it.
        let start = std::time::Instant::now();
        while crate::fifo::poll_readable(&csv_reader, 100).unwrap() == 0 {
            assert!(start.elapsed() < Duration::from_secs(10), "no CSV header");
        }
        drop(csv_reader);
        // 32 MiB each: above Lmax, the interval halves down to tmin.
        for seq in 0..10 {
            tx.send(rec(seq, 1000 + seq * 200, 32 << 20, 0)).unwrap();
        }
        drop(tx);
        let outcome = consumer.join().unwrap().unwrap();
        let error = outcome.csv_error.expect("the error is in the outcome");
        assert!(
            error.contains("gone.csv") && error.contains("Broken pipe"),
            "{error}"
        );
        assert_eq!(outcome.checkpoints, 9);
        let mut text = String::new();
        use std::io::Read;
        let _ = reader.read_to_string(&mut text);
        assert_eq!(
            text.lines().last(),
            Some("interval_ms=10"),
            "control followed the policy after the CSV failed: {text}"
        );
    }
}
