//! [`DiskSource`] for `remus-ckpt simulate --disk drbd:sim`.
//!
//! The simulator's disk writer counts bytes into a shared atomic; this
//! source reports them in KiB like DRBD would, so simulated runs go
//! through exactly the same meter and delta path as real ones.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Result;

use super::{DiskSample, DiskSource};

/// The simulator's end: add the bytes the simulated guest wrote (and that
/// a protocol-C/D DRBD would therefore send to the peer).
#[derive(Debug, Clone, Default)]
pub struct SimulatedDiskHandle {
    written_bytes: Arc<AtomicU64>,
}

impl SimulatedDiskHandle {
    /// A handle with nothing written yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts `bytes` more written (and replicated).
    pub fn add_written_bytes(&self, bytes: u64) {
        // Relaxed: a lone counter, no other memory is published through it.
        self.written_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes written so far.
    pub fn written_bytes(&self) -> u64 {
        self.written_bytes.load(Ordering::Relaxed)
    }
}

/// Reports the simulator's written bytes as DRBD-style sent KiB.
#[derive(Debug, Clone)]
pub struct SimulatedDisk {
    handle: SimulatedDiskHandle,
}

impl SimulatedDisk {
    /// A source reading `handle`.
    pub fn new(handle: SimulatedDiskHandle) -> Self {
        SimulatedDisk { handle }
    }
}

impl DiskSource for SimulatedDisk {
    fn name(&self) -> &str {
        "drbd:sim (simulated disk)"
    }

    /// Whole KiB, like DRBD's counters: a partial KiB shows up once it fills.
    fn sample(&mut self) -> Result<DiskSample> {
        Ok(DiskSample {
            sent_kib: self.handle.written_bytes() / 1024,
            deferred: None,
            checkpoints: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_whole_kib() {
        let handle = SimulatedDiskHandle::new();
        let mut disk = SimulatedDisk::new(handle.clone());
        assert_eq!(disk.sample().unwrap().sent_kib, 0);
        handle.add_written_bytes(4096 + 1000);
        assert_eq!(disk.sample().unwrap().sent_kib, 4);
        handle.add_written_bytes(24);
        assert_eq!(disk.sample().unwrap().sent_kib, 5);
        assert_eq!(handle.written_bytes(), 5120);
    }
}
