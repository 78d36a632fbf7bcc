//! Per-checkpoint disk bytes from any number of [`DiskSource`]s.
//!
//! The meter is called from the checkpoint record path, which must keep
//! going whatever DRBD does: a source that fails is dropped with one
//! warning and the run carries on memory-only, rather than losing the
//! memory records the user came for.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::tap_remus::TapRemusSource;
use super::DiskSource;
use crate::record::Record;

/// What the disk side added to one checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskDelta {
    /// Bytes DRBD sent since the previous checkpoint record, all sources
    /// summed (KiB resolution: DRBD counts in KiB).
    pub disk_bytes: u64,
    /// remus-drbd `def:` now (writes deferred to the next checkpoint),
    /// summed over the sources that report it; a level, not a delta.
    pub drbd_deferred: Option<u64>,
    /// remus-drbd `chkpt:` now (checkpoints the peer acknowledged so far),
    /// summed over the sources that report it; cumulative, not a delta.
    pub drbd_checkpoints: Option<u64>,
    /// tap-remus disk epochs joined to this checkpoint, summed over the
    /// drivers; None without a tap-remus source. 1 per driver is normal;
    /// [`DiskDelta::disk_unknown`] says when one was missing.
    pub disk_epochs: Option<u64>,
    /// A tap-remus epoch of this checkpoint is missing: `disk_bytes` lacks
    /// its bytes and must not be taken as the checkpoint's disk size.
    pub disk_unknown: bool,
}

struct Metered {
    source: Box<dyn DiskSource>,
    /// Previous `sent_kib`; None until the baseline sample.
    last_kib: Option<u64>,
}

/// Turns cumulative source samples into per-checkpoint deltas.
#[derive(Default)]
pub struct DiskMeter {
    sources: Vec<Metered>,
    /// tap-remus drivers: per-epoch records, joined per checkpoint.
    epochs: Vec<TapRemusSource>,
}

impl std::fmt::Debug for DiskMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskMeter")
            .field("sources", &self.source_names())
            .field("epochs", &self.epochs.len())
            .finish()
    }
}

impl DiskMeter {
    /// A meter over `sources` (empty: memory-only, every delta 0).
    pub fn new(sources: Vec<Box<dyn DiskSource>>) -> Self {
        DiskMeter {
            sources: sources
                .into_iter()
                .map(|source| Metered {
                    source,
                    last_kib: None,
                })
                .collect(),
            epochs: Vec::new(),
        }
    }

    /// Adds tap-remus epoch sources (joined in [`DiskMeter::on_record`]).
    pub fn with_epochs(mut self, epochs: Vec<TapRemusSource>) -> Self {
        self.epochs = epochs;
        self
    }

    /// Names of the sources still being metered.
    pub fn source_names(&self) -> Vec<String> {
        self.sources
            .iter()
            .map(|m| m.source.name().to_owned())
            .chain(self.epochs.iter().map(|e| e.name().to_owned()))
            .collect()
    }

    /// True when no source is left (never had one, or all failed).
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty() && self.epochs.is_empty()
    }

    /// [`DiskMeter::on_checkpoint`] plus the tap-remus epochs of `rec`
    /// (joined by commit order, module [`crate::disk::tap_remus`]). A
    /// missing or extra epoch is said on stderr and in the delta; a driver
    /// whose FIFO fails is dropped with one warning, as a DRBD source is.
    pub fn on_record(&mut self, rec: &Record) -> DiskDelta {
        let mut delta = self.on_checkpoint();
        if self.epochs.is_empty() {
            return delta;
        }
        let mut joined = 0u64;
        self.epochs.retain_mut(|src| match src.on_record(rec) {
            Ok(m) => {
                if let Some(warning) = src.anomaly(rec, &m) {
                    eprintln!("{warning}");
                }
                delta.disk_unknown |= m.epochs == 0;
                joined = joined.saturating_add(m.epochs);
                delta.disk_bytes = delta.disk_bytes.saturating_add(m.wire_bytes);
                true
            }
            Err(e) => {
                eprintln!(
                    "remus-ckpt: warning: disk source {} failed, continuing without it \
                     (disk_bytes no longer counts it): {e:#}",
                    src.name()
                );
                false
            }
        });
        delta.disk_epochs = Some(joined);
        delta
    }

    /// Samples every source once; call once per checkpoint record. The
    /// first call sets the baseline and reports 0 bytes. Never fails: a
    /// source that errors (or panics) is dropped with one warning on stderr.
    pub fn on_checkpoint(&mut self) -> DiskDelta {
        let mut delta = DiskDelta::default();
        self.sources.retain_mut(|metered| {
            let sampled = catch_unwind(AssertUnwindSafe(|| metered.source.sample()));
            let sample = match sampled {
                Ok(Ok(sample)) => sample,
                Ok(Err(e)) => {
                    eprintln!(
                        "remus-ckpt: warning: disk source {} failed, continuing without it \
                         (disk_bytes no longer counts it): {e:#}",
                        metered.source.name()
                    );
                    return false;
                }
                Err(_) => {
                    eprintln!(
                        "remus-ckpt: warning: disk source {} panicked, continuing without it",
                        metered.source.name()
                    );
                    return false;
                }
            };
            if let Some(last) = metered.last_kib {
                // Sources widen their counters, so a decrease is a source bug: count nothing.
                let kib = sample.sent_kib.saturating_sub(last);
                delta.disk_bytes = delta.disk_bytes.saturating_add(kib.saturating_mul(1024));
            }
            metered.last_kib = Some(sample.sent_kib);
            delta.drbd_deferred = super::add_counts(delta.drbd_deferred, sample.deferred);
            delta.drbd_checkpoints = super::add_counts(delta.drbd_checkpoints, sample.checkpoints);
            true
        });
        delta
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::DiskSample;
    use anyhow::{bail, Result};

    struct Script {
        readings: Vec<Result<u64, &'static str>>,
        at: usize,
    }

    impl DiskSource for Script {
        fn name(&self) -> &str {
            "script"
        }
        fn sample(&mut self) -> Result<DiskSample> {
            let r = self.readings.get(self.at).copied().unwrap_or(Err("done"));
            self.at += 1;
            match r {
                Ok(kib) => Ok(DiskSample {
                    sent_kib: kib,
                    deferred: Some(1),
                    checkpoints: Some(self.at as u64),
                }),
                Err(e) => bail!("{e}"),
            }
        }
    }

    #[test]
    fn baseline_then_kib_deltas_in_bytes() {
        let mut m = DiskMeter::new(vec![Box::new(Script {
            readings: vec![Ok(100), Ok(110), Ok(110), Ok(90), Ok(95)],
            at: 0,
        })]);
        assert_eq!(m.on_checkpoint().disk_bytes, 0);
        let d = m.on_checkpoint();
        assert_eq!(d.disk_bytes, 10 * 1024);
        assert_eq!(d.drbd_deferred, Some(1));
        assert_eq!(d.drbd_checkpoints, Some(2));
        assert_eq!(m.on_checkpoint().disk_bytes, 0);
        assert_eq!(m.on_checkpoint().disk_bytes, 0, "a decrease counts nothing");
        assert_eq!(m.on_checkpoint().disk_bytes, 5 * 1024);
    }

    #[test]
    fn empty_meter_is_memory_only() {
        let mut m = DiskMeter::default();
        assert!(m.is_empty());
        assert_eq!(m.on_checkpoint(), DiskDelta::default());
    }

    struct Panicky;
    impl DiskSource for Panicky {
        fn name(&self) -> &str {
            "panicky"
        }
        fn sample(&mut self) -> Result<DiskSample> {
            panic!("bug in a source");
        }
    }

    #[test]
    fn a_panicking_source_is_dropped() {
        let mut m = DiskMeter::new(vec![Box::new(Panicky)]);
        assert_eq!(m.on_checkpoint(), DiskDelta::default());
        assert!(m.is_empty());
    }
}
