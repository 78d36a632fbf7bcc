//! The checkpoint CSV format, in one module: one row per checkpoint, the
//! shape the CSV sink writes and every reader (`report`, `plot`, trace
//! replay) reads back.
//!
//! - [`Row`]: the columns, in file order (serde names them; [`header`]);
//! - [`write`]: creating a CSV and appending rows ([`CsvWriter`]);
//! - [`read`]: reading one back, checked ([`read_csv`]).
//!
//! The first twelve columns are the stable core, in this order; the rest
//! were added later and default when absent so that older CSVs (and the
//! real-Xen trace in shared data) still load.

pub mod read;
pub mod write;

use serde::{Deserialize, Serialize};

pub use read::{for_each_row, read_csv, read_csv_from};
pub use write::CsvWriter;

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
    /// tap-remus disk epochs joined to this checkpoint (empty: no
    /// tap-remus source). One per driver is normal; more: extra flushes,
    /// whose bytes are in `disk_bytes` (docs/disk.md).
    #[serde(default)]
    pub disk_epochs: Option<u64>,
    /// 1: a tap-remus epoch of this checkpoint is missing, so `disk_bytes`
    /// lacks its bytes (it holds only what is known) and the row was not
    /// fed to a `--size-metric total` policy.
    #[serde(default)]
    pub disk_unknown: u8,
    /// 1: the log-dirty CLEAN of this checkpoint failed (legacy Xen
    /// 4.1-4.5; the save went on): `dirty_pages` and `memory_bytes` are 0
    /// and no count, and the row was not fed to the policy. 0 normally.
    #[serde(default)]
    pub clean_error: u8,
}

/// The header line: the column names in file order, as serde names them
/// from [`Row`]'s fields (so the order is written down once, there).
pub fn header() -> csv::StringRecord {
    let mut writer = csv::WriterBuilder::new()
        .has_headers(true)
        .from_writer(Vec::new());
    // Serialising a default row into memory cannot fail.
    let _ = writer.serialize(Row::default());
    let bytes = writer.into_inner().unwrap_or_default();
    let mut reader = csv::ReaderBuilder::new().from_reader(&bytes[..]);
    reader.headers().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row whose every field differs from its default and from every
    /// other field, so a column lost, swapped or read as its default shows.
    fn distinct_row(seq: u64) -> Row {
        Row {
            seq,
            t_s: 1.25,
            dirty_pages: 3,
            pages_sent: 4,
            bytes_sent: 5,
            disk_bytes: 6,
            size_bytes: 7,
            pause_ms: 8.5,
            checkpoint_ms: 9.5,
            period_ms: 10.5,
            interval_ms: 11,
            dropped: 12,
            live: 1,
            memory_bytes: 13,
            gate_wait_ms: 14.5,
            next_interval_ms: 15,
            drbd_deferred: Some(16),
            drbd_checkpoints: Some(17),
            gap: 18,
            trigger: "budget".to_string(),
            dirty_at_trigger: 19,
            budget_pages: 20,
            probes: 21,
            probe_ms: 22.5,
            disk_epochs: Some(23),
            disk_unknown: 1,
            clean_error: 1,
        }
    }

    #[test]
    fn the_header_names_every_column_once() {
        let header = header();
        let names: Vec<&str> = header.iter().collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "a column twice: {names:?}");
        assert!(names.iter().all(|n| !n.is_empty()), "{names:?}");
        // As many names as a row has cells: no field left unnamed.
        let mut writer = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        writer.serialize(distinct_row(1)).unwrap();
        let line = writer.into_inner().unwrap();
        let cells = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(&line[..])
            .records()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(cells.len(), names.len(), "{names:?}");
    }

    #[test]
    fn rows_written_read_back_equal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.csv");
        let rows = vec![
            distinct_row(0),
            Row {
                drbd_deferred: None,
                drbd_checkpoints: None,
                trigger: String::new(),
                ..distinct_row(1)
            },
            Row::default(),
        ];
        let mut writer = CsvWriter::create(&path).unwrap();
        for row in &rows {
            writer.write(row).unwrap();
        }
        writer.finish().unwrap();
        assert_eq!(read_csv(&path).unwrap(), rows);
    }
}
