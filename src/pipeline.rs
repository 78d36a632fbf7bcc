//! The consumer: record -> size -> policy -> sinks.
//!
//! [`Controller`] is the synchronous heart (used as is by the fast
//! simulator); [`run`] puts it on threads joined by channels so that a
//! slow disk under the CSV never delays the control line going back to
//! the save side:
//!
//! ```text
//! source thread --Record--> controller --interval--> control thread -> FIFO
//!                                      \--Row/note--> sink thread -> CSV, status
//! ```

use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::disk::{DiskDelta, DiskMeter};
use crate::policy::{Observation, Policy};
use crate::record::Record;
use crate::row::Row;
use crate::sink::control::{Command, ControlWriter, Delivery};
use crate::sink::csv::CsvSink;
use crate::sink::status::StatusLine;
use crate::size::{CheckpointSize, SizeMetric};

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
    /// Records missing between the previous record and this one.
    pub gap: u64,
}

/// Sizes records and runs the policy on them.
pub struct Controller {
    policy: Box<dyn Policy>,
    metric: SizeMetric,
    t0_ns: Option<u64>,
    prev_suspend_ns: Option<u64>,
    prev_seq: Option<u64>,
    /// The interval we want the save side to have.
    wanted_ms: u32,
    /// The dirty-page budget we want the save side to have (0: off).
    wanted_budget_pages: u64,
}

impl Controller {
    pub fn new(policy: Box<dyn Policy>, metric: SizeMetric) -> Self {
        let wanted_ms = policy.initial_interval_ms();
        Controller {
            policy,
            metric,
            t0_ns: None,
            prev_suspend_ns: None,
            prev_seq: None,
            wanted_ms,
            wanted_budget_pages: 0,
        }
    }

    /// Commands a fixed dirty-page budget (0: off) beside the policy's
    /// intervals, which then cap the wait.
    pub fn with_budget_pages(mut self, budget_pages: u64) -> Self {
        self.wanted_budget_pages = budget_pages;
        self
    }

    /// The budget to command before the first record (0: none).
    pub fn initial_budget_pages(&self) -> u64 {
        self.wanted_budget_pages
    }

    /// The interval to command before the first record.
    pub fn initial_interval_ms(&self) -> u32 {
        self.wanted_ms
    }

    pub fn on_record(&mut self, rec: &Record, disk: DiskDelta) -> Step {
        let gap = match self.prev_seq {
            Some(prev) if rec.seq > prev + 1 => rec.seq - prev - 1,
            _ => 0,
        };
        if self.prev_seq.is_some_and(|prev| rec.seq <= prev) {
            // A new save (the helper restarted): time starts again.
            self.prev_suspend_ns = None;
        }
        self.prev_seq = Some(rec.seq);

        let t0 = *self.t0_ns.get_or_insert(rec.t_suspend_ns);
        let period_ms = match self.prev_suspend_ns {
            Some(prev) if rec.t_suspend_ns > prev => (rec.t_suspend_ns - prev) as f64 / 1e6,
            _ => 0.0,
        };
        self.prev_suspend_ns = Some(rec.t_suspend_ns);

        let size = CheckpointSize::of(rec, disk.disk_bytes);
        let size_bytes = size.metric_bytes(self.metric);
        let next = self.policy.next_interval_ms(&Observation {
            size_bytes,
            period_ms,
            live: rec.live,
        });
        // Command when the decision changed, or when the save side does not
        // have what we want (it restarted, or a line was lost).
        let command_ms = (next != self.wanted_ms || rec.cmd_interval_ms != next).then_some(next);
        self.wanted_ms = next;
        let command_budget_pages =
            (rec.budget_pages != self.wanted_budget_pages).then_some(self.wanted_budget_pages);

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
            next_interval_ms: u64::from(next),
            drbd_deferred: disk.drbd_deferred,
            drbd_checkpoints: disk.drbd_checkpoints,
            trigger: trigger_column(rec),
            dirty_at_trigger: rec.dirty_at_trigger,
            budget_pages: rec.budget_pages,
            probes: rec.probes,
            probe_ms: rec.probe_ns as f64 / 1e6,
        };
        Step {
            row,
            command_ms,
            command_budget_pages,
            gap,
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
}

enum SinkMsg {
    Row(Row),
    Note(String),
}

/// Runs the consumer until `records` closes, then drains and joins.
pub fn run(cfg: Config, records: Receiver<Record>) -> Result<Outcome> {
    let (sink_tx, sink_rx) = crossbeam_channel::unbounded::<SinkMsg>();
    let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded::<Command>();

    let initial_ms = cfg.controller.initial_interval_ms();
    let initial_budget_pages = cfg.controller.initial_budget_pages();
    let control = match cfg.control.clone() {
        Some(path) => {
            let _ = ctl_tx.send(Command::IntervalMs(initial_ms));
            if initial_budget_pages != 0 {
                let _ = ctl_tx.send(Command::BudgetPages(initial_budget_pages));
            }
            Some(spawn_control(path, ctl_rx, sink_tx.clone())?)
        }
        None => None,
    };
    let sink = spawn_sink(cfg.csv.clone(), cfg.lmax_bytes, cfg.quiet, sink_rx)?;

    let mut outcome = control_loop(cfg, &records, &ctl_tx, &sink_tx);
    drop(ctl_tx);
    drop(sink_tx);

    if let Some(handle) = control {
        let (lines, pending) = join(handle, "control")??;
        outcome.control_lines = lines;
        outcome.control_pending = pending;
    }
    join(sink, "sink")??;
    Ok(outcome)
}

fn join<T>(handle: JoinHandle<T>, name: &str) -> Result<T> {
    handle
        .join()
        .map_err(|_| anyhow!("the {name} thread panicked"))
}

fn control_loop(
    mut cfg: Config,
    records: &Receiver<Record>,
    ctl_tx: &Sender<Command>,
    sink_tx: &Sender<SinkMsg>,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut stalled = false;
    let mut last_dropped = 0;
    loop {
        let stall_after = stall_timeout(cfg.controller.wanted_ms);
        let rec = match records.recv_timeout(stall_after) {
            Ok(rec) => rec,
            Err(RecvTimeoutError::Timeout) => {
                if !stalled && outcome.checkpoints > 0 {
                    stalled = true;
                    let _ = sink_tx.send(SinkMsg::Note(format!(
                        "remus-ckpt: warning: no checkpoint record for {:.1}s (interval {}ms): \
                         is Remus still running?",
                        stall_after.as_secs_f64(),
                        cfg.controller.wanted_ms
                    )));
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return outcome,
        };
        if stalled {
            stalled = false;
            let _ = sink_tx.send(SinkMsg::Note("remus-ckpt: records flow again".into()));
        }
        let disk = cfg
            .disk
            .as_mut()
            .map(|d| d.on_checkpoint())
            .unwrap_or_default();
        let step = cfg.controller.on_record(&rec, disk);
        if let Some(ms) = step.command_ms {
            let _ = ctl_tx.send(Command::IntervalMs(ms));
        }
        if let Some(pages) = step.command_budget_pages {
            let _ = ctl_tx.send(Command::BudgetPages(pages));
        }
        if step.gap > 0 {
            let _ = sink_tx.send(SinkMsg::Note(format!(
                "remus-ckpt: {} record(s) missing before seq {} (save side reports {} dropped)",
                step.gap, rec.seq, rec.dropped
            )));
        }
        outcome.lost += step.gap.max(rec.dropped.saturating_sub(last_dropped));
        last_dropped = rec.dropped;
        if !rec.live {
            outcome.checkpoints += 1;
            if step.row.size_bytes > cfg.lmax_bytes {
                outcome.over_lmax += 1;
            }
        }
        let _ = sink_tx.send(SinkMsg::Row(step.row));
    }
}

/// No record for this long is worth a warning: several intervals, and
/// never less than 2 s (a checkpoint of a large guest takes a while).
fn stall_timeout(interval_ms: u32) -> Duration {
    Duration::from_millis(u64::from(interval_ms) * 5).max(Duration::from_secs(2))
}

fn spawn_control(
    path: PathBuf,
    rx: Receiver<Command>,
    notes: Sender<SinkMsg>,
) -> Result<JoinHandle<Result<(u64, bool)>>> {
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            let mut writer = ControlWriter::new(&path);
            let mut warned = false;
            loop {
                match rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(cmd) => {
                        // Only the newest decision of each kind matters
                        // (the writer keeps one pending line per key).
                        writer.queue(cmd);
                        for cmd in rx.try_iter() {
                            writer.queue(cmd);
                        }
                        writer.flush()?;
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        if writer.flush()? == Delivery::Pending && !warned {
                            warned = true;
                            let _ = notes.send(SinkMsg::Note(format!(
                                "remus-ckpt: waiting for the save side to open {} \
                                 (it does at its first checkpoint)",
                                path.display()
                            )));
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

fn spawn_sink(
    csv: Option<PathBuf>,
    lmax_bytes: u64,
    quiet: bool,
    rx: Receiver<SinkMsg>,
) -> Result<JoinHandle<Result<()>>> {
    let mut csv = csv.map(|p| CsvSink::create(&p)).transpose()?;
    std::thread::Builder::new()
        .name("sink".into())
        .spawn(move || {
            let mut status = StatusLine::new(lmax_bytes, quiet);
            for msg in &rx {
                match msg {
                    SinkMsg::Row(row) => {
                        if let Some(csv) = &mut csv {
                            csv.write(&row)?;
                        }
                        status.update(&row);
                    }
                    SinkMsg::Note(text) => status.message(&text),
                }
                // Rows reach the file as soon as none is waiting: each one
                // is on disk within a checkpoint, and a burst is one write.
                if rx.is_empty() {
                    if let Some(csv) = &mut csv {
                        csv.flush()?;
                    }
                }
            }
            status.finish();
            if let Some(csv) = csv {
                csv.finish()?;
            }
            Ok(())
        })
        .context("cannot start the sink thread")
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
        assert_eq!(c.initial_interval_ms(), 200);
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
}
