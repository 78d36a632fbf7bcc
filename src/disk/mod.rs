//! Disk replication sources (DRBD): per-checkpoint disk bytes.
//!
//! A Remus checkpoint is memory plus disk. With DRBD the disk side of a
//! checkpoint is what DRBD sent to the peer during that epoch, so we sample
//! DRBD's cumulative "sent" counter once per checkpoint record and take the
//! difference. Where the counter lives depends on the DRBD generation:
//!
//! - DRBD 8.3 / 8.4 / remus-drbd: `/proc/drbd` `ns:` ([`proc_drbd`], [`proc_source`]);
//! - DRBD 9: `drbdsetup events2 --statistics --poll` ([`events2`], [`events2_source`]);
//! - `remus-ckpt simulate`: the simulator's own byte count ([`simulated`]).
//!
//! [`open_with()`] picks the right one for a [`DiskSpec`]; [`DiskMeter`] turns
//! samples from any number of them into a [`DiskDelta`] per checkpoint.

pub mod counter;
pub mod events2;
pub mod events2_source;
pub mod meter;
pub mod open;
pub mod proc_drbd;
pub mod proc_source;
pub mod simulated;
pub mod spec;
pub mod tap_remus;

pub use counter::{Counter, CounterStep, CounterWidth};
pub use events2::{parse_events2, parse_events2_line, Events2State};
pub use events2_source::{Events2Config, Events2Source};
pub use meter::{DiskDelta, DiskMeter};
pub use open::{open_with, DiskBackends};
pub use proc_drbd::{parse_proc_drbd, ProcDrbd, ProcFlavor, ProcMinor};
pub use proc_source::{ProcDrbdSource, ProcPaths};
pub use simulated::{SimulatedDisk, SimulatedDiskHandle};
pub use tap_remus::{DiskEpoch, EpochJoin, EpochMatch, TapRemusSource};
/// Sums two optional counters: a missing one adds nothing, and the sum is
/// missing only when both are (a source without the counter at all).
pub(crate) fn add_counts(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.saturating_add(y)),
        (x, None) | (None, x) => x,
    }
}

pub use spec::DiskSpec;

/// Cumulative counters of one source at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskSample {
    /// KiB sent to peers since the source was opened (plus the kernel's
    /// count at that time), widened across 32-bit wraps and device
    /// restarts, summed over peers and volumes. Never decreases.
    pub sent_kib: u64,
    /// remus-drbd `def:` (writes deferred to the next checkpoint), when known.
    pub deferred: Option<u64>,
    /// remus-drbd `chkpt:` (checkpoints acknowledged), when known.
    pub checkpoints: Option<u64>,
}

/// Something that can say how much DRBD has sent so far.
pub trait DiskSource: Send {
    /// Human name, e.g. "drbd:r0 (/proc/drbd 8.4, minor 0)".
    fn name(&self) -> &str;
    /// Cumulative counters now; called once per checkpoint record.
    fn sample(&mut self) -> anyhow::Result<DiskSample>;
}

/// `--disk` for the `watch`, `run` and `simulate` subcommands to flatten in.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct DiskArgs {
    /// Count the disk replication traffic of this device into each
    /// checkpoint's size (disk_bytes column, bytes sent to the peer during
    /// the checkpoint's epoch). A minor (drbd:0, drbd:/dev/drbd0) or a
    /// resource name (drbd:r0); DRBD 8.3/8.4/remus-drbd via /proc/drbd,
    /// DRBD 9 via `drbdsetup events2`. `drbd:sim` is the simulated disk of
    /// `simulate`. tap-remus:HOST:PORT: blktap2's tap-remus driver (Xen
    /// 4.0-4.12), per checkpoint epoch, from the records of the patched
    /// driver (docs/disk.md). Repeat for several devices; bytes add up.
    #[arg(long = "disk", value_name = "drbd:RESOURCE|MINOR|tap-remus:HOST:PORT")]
    pub disk: Vec<DiskSpec>,
}
