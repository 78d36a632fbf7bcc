//! Checkpoint size: what the policy compares against Lmin/Lmax.
//!
//! Remus sends dirty memory and, with DRBD, the disk writes of the epoch.
//! `wire` is what actually left on the migration stream (what costs pause
//! time and bandwidth), `memory` is the dirty set as the hypervisor counts
//! it, `total` adds the disk side to the wire bytes.

use clap::ValueEnum;

use crate::record::Record;

/// Which size the policy steers on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum SizeMetric {
    /// Bytes written to the migration stream (bytes_sent).
    #[default]
    Wire,
    /// dirty_pages x page_size.
    Memory,
    /// bytes_sent + disk_bytes.
    Total,
}

/// The sizes of one checkpoint, all in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckpointSize {
    pub memory_bytes: u64,
    pub wire_bytes: u64,
    pub disk_bytes: u64,
}

impl CheckpointSize {
    pub fn of(rec: &Record, disk_bytes: u64) -> Self {
        CheckpointSize {
            memory_bytes: rec.dirty_pages.saturating_mul(u64::from(rec.page_size)),
            wire_bytes: rec.bytes_sent,
            disk_bytes,
        }
    }

    pub fn total_bytes(&self) -> u64 {
        self.wire_bytes.saturating_add(self.disk_bytes)
    }

    /// The size the policy sees under `metric`.
    pub fn metric_bytes(&self, metric: SizeMetric) -> u64 {
        match metric {
            SizeMetric::Wire => self.wire_bytes,
            SizeMetric::Memory => self.memory_bytes,
            SizeMetric::Total => self.total_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics() {
        let rec = Record {
            dirty_pages: 10,
            page_size: 4096,
            bytes_sent: 41_040,
            ..Record::default()
        };
        let size = CheckpointSize::of(&rec, 1000);
        assert_eq!(size.metric_bytes(SizeMetric::Memory), 40_960);
        assert_eq!(size.metric_bytes(SizeMetric::Wire), 41_040);
        assert_eq!(size.metric_bytes(SizeMetric::Total), 42_040);
    }
}
