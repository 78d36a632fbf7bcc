//! One CSV row per checkpoint: the shape every sink writes and every reader
//! (`report`, `plot`, trace replay) reads back.
//!
//! The first twelve columns are the stable core, in this order; the rest
//! were added later and default when absent so that older CSVs (and the
//! real-Xen trace in shared data) still load.

use serde::{Deserialize, Serialize};

/// A checkpoint as written to CSV. Times in the units their names carry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Checkpoint sequence number from the save side (0 = initial live round).
    pub seq: u64,
    /// Suspend time of this checkpoint, seconds since the first record's suspend.
    pub t_s: f64,
    /// Pages the log-dirty CLEAN reported dirty.
    pub dirty_pages: u64,
    /// Pages written to the migration stream.
    pub pages_sent: u64,
    /// Bytes written to the migration stream (headers included).
    pub bytes_sent: u64,
    /// Bytes the disk replication sent during this checkpoint's epoch.
    pub disk_bytes: u64,
    /// The size the policy saw (per `--size-metric`).
    pub size_bytes: u64,
    /// Guest paused: t_resumed - t_suspended.
    pub pause_ms: f64,
    /// Whole checkpoint: t_done - t_suspend.
    pub checkpoint_ms: f64,
    /// t_suspend - previous t_suspend (0 for the first record).
    pub period_ms: f64,
    /// Interval the save side's gate paced this checkpoint for (0: none).
    pub interval_ms: u64,
    /// Records the save side lost before this one.
    pub dropped: u64,
    /// 1 for the initial live round.
    #[serde(default)]
    pub live: u8,
    /// dirty_pages x page_size.
    #[serde(default)]
    pub memory_bytes: u64,
    /// Time the gate waited before suspending.
    #[serde(default)]
    pub gate_wait_ms: f64,
    /// Interval the controller commanded after seeing this checkpoint.
    #[serde(default)]
    pub next_interval_ms: u64,
    /// remus-drbd deferred writes (when known).
    #[serde(default)]
    pub drbd_deferred: Option<u64>,
    /// remus-drbd acknowledged checkpoints (when known).
    #[serde(default)]
    pub drbd_checkpoints: Option<u64>,
    /// Records known missing before this row (a sequence jump, or the save
    /// side's `dropped` rising), or 1 when none is known missing but the
    /// period was a stall; 0 normally. A row with `gap > 0` was not fed to
    /// the policy: its `period_ms` is not one interval.
    #[serde(default)]
    pub gap: u64,
    /// What ended the gate's wait: interval, budget, control, none (empty:
    /// the save side reported no budget keys).
    #[serde(default)]
    pub trigger: String,
    /// Dirty pages at the gate's last probe (0: no probe).
    #[serde(default)]
    pub dirty_at_trigger: u64,
    /// Dirty-page budget commanded to the save side (0: off).
    #[serde(default)]
    pub budget_pages: u64,
    /// Probes the gate made while waiting.
    #[serde(default)]
    pub probes: u64,
    /// Time spent in those probes (the guest is paused in each).
    #[serde(default)]
    pub probe_ms: f64,
    /// 1: the log-dirty CLEAN of this checkpoint failed (legacy Xen
    /// 4.1-4.5; the save went on): `dirty_pages` and `memory_bytes` are 0
    /// and no count, and the row was not fed to the policy. 0 normally.
    #[serde(default)]
    pub clean_error: u8,
}
