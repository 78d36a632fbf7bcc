//! What one checkpoint of the simulated domain costs.
//!
//! The stream cost follows what Xen 4.17 was measured to send: every page
//! goes out with its 8-byte pfn, plus about 5.5 KB of fixed records per
//! checkpoint; the guest stays paused while pages are written, so the pause
//! is suspend + bytes / bandwidth + resume.

use anyhow::{bail, Result};
use clap::Args;

use super::workload::Workload;
use crate::units::{Bytes, Millis};

/// Bytes of per-checkpoint records besides pages (measured on Xen 4.17).
pub const FIXED_RECORD_BYTES: u64 = 5_632;
/// Bytes sent with each page besides its contents: its pfn.
pub const PFN_BYTES: u64 = 8;
pub const PAGE_SIZE: u32 = 4096;

/// The simulated domain and link.
#[derive(Debug, Clone, Args)]
pub struct DomainArgs {
    /// Guest memory, all of it sent in the initial live round.
    #[arg(long, value_name = "SIZE", default_value = "1GiB")]
    pub memory: Bytes,

    /// Replication link bandwidth, per second.
    #[arg(long, value_name = "SIZE", default_value = "1GiB")]
    pub bandwidth: Bytes,

    /// Time to get the guest suspended.
    #[arg(long, value_name = "DURATION", default_value = "2ms")]
    pub suspend_cost: Millis,

    /// Time to resume the guest after the pages are sent.
    #[arg(long, value_name = "DURATION", default_value = "1ms")]
    pub resume_cost: Millis,

    /// Time for the backup to acknowledge the checkpoint (guest running).
    #[arg(long, value_name = "DURATION", default_value = "1ms")]
    pub commit_cost: Millis,

    /// Guest pause of one dirty-count probe (a log-dirty PEEK), made by
    /// the gate only while a dirty-page budget is commanded.
    #[arg(long, value_name = "DURATION", default_value = "20us")]
    pub probe_cost: Millis,
}

/// One checkpoint's work, in seconds and counts.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Work {
    pub dirty_pages: u64,
    pub pages_sent: u64,
    pub bytes_sent: u64,
    pub suspend_s: f64,
    pub send_s: f64,
    pub resume_s: f64,
    pub commit_s: f64,
}

/// When one checkpoint's phases end, seconds on the run's clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Times {
    pub suspended_s: f64,
    pub sent_s: f64,
    /// The guest runs again from here: the next epoch starts.
    pub resumed_s: f64,
    /// The backup acknowledged: the save loop is back at the gate.
    pub done_s: f64,
}

impl Work {
    /// The phases of this checkpoint when it suspends at `suspend_at_s`
    /// (the one place the simulator's timeline is added up).
    pub fn times(&self, suspend_at_s: f64) -> Times {
        let suspended_s = suspend_at_s + self.suspend_s;
        let sent_s = suspended_s + self.send_s;
        let resumed_s = sent_s + self.resume_s;
        Times {
            suspended_s,
            sent_s,
            resumed_s,
            done_s: resumed_s + self.commit_s,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Domain {
    pub workload: Workload,
    memory_pages: u64,
    bandwidth_bytes_per_s: f64,
    suspend_s: f64,
    resume_s: f64,
    commit_s: f64,
    probe_s: f64,
}

impl Domain {
    pub fn new(args: &DomainArgs, workload: Workload) -> Result<Self> {
        if args.bandwidth.0 == 0 {
            bail!("--bandwidth must be above 0");
        }
        Ok(Domain {
            workload,
            memory_pages: args.memory.0 / u64::from(PAGE_SIZE),
            bandwidth_bytes_per_s: args.bandwidth.0 as f64,
            suspend_s: args.suspend_cost.0.as_secs_f64(),
            resume_s: args.resume_cost.0.as_secs_f64(),
            commit_s: args.commit_cost.0.as_secs_f64(),
            probe_s: args.probe_cost.0.as_secs_f64(),
        })
    }

    /// Bytes on the wire for a checkpoint of `pages` pages.
    pub fn stream_bytes(pages: u64) -> u64 {
        pages * (u64::from(PAGE_SIZE) + PFN_BYTES) + FIXED_RECORD_BYTES
    }

    /// Guest pause of one dirty-count probe, seconds.
    pub fn probe_s(&self) -> f64 {
        self.probe_s
    }

    /// Pages dirtied since the guest resumed at `running_since_s`, as a
    /// probe at `now_s` sees them (the log-dirty count since the CLEAN).
    pub fn dirty_now(&self, running_since_s: f64, now_s: f64) -> u64 {
        self.workload.dirty_pages(running_since_s, now_s)
    }

    /// How long the initial live copy of all memory runs, seconds.
    pub fn live_copy_s(&self) -> f64 {
        Self::stream_bytes(self.memory_pages) as f64 / self.bandwidth_bytes_per_s
    }

    /// The checkpoint suspended at `suspend_at_s` after the guest ran
    /// since `running_since_s`. The live round also sends all memory.
    pub fn checkpoint(&self, running_since_s: f64, suspend_at_s: f64, live: bool) -> Work {
        let dirty_pages = self.workload.dirty_pages(running_since_s, suspend_at_s);
        let pages_sent = if live {
            self.memory_pages + dirty_pages
        } else {
            dirty_pages
        };
        let bytes_sent = Self::stream_bytes(pages_sent);
        // In the live round only the final dirty set is sent while paused.
        let paused_bytes = Self::stream_bytes(dirty_pages);
        Work {
            dirty_pages,
            pages_sent,
            bytes_sent,
            suspend_s: self.suspend_s,
            send_s: paused_bytes as f64 / self.bandwidth_bytes_per_s,
            resume_s: self.resume_s,
            commit_s: self.commit_s,
        }
    }
}
