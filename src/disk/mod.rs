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
//! [`open`] picks the right one for a [`DiskSpec`]; [`DiskMeter`] turns
//! samples from any number of them into a [`DiskDelta`] per checkpoint.

pub mod counter;
pub mod events2;
pub mod proc_drbd;
pub mod spec;

pub use counter::{Counter, CounterStep, CounterWidth};
pub use events2::{parse_events2, parse_events2_line, Events2State};
pub use proc_drbd::{parse_proc_drbd, ProcDrbd, ProcFlavor, ProcMinor};
pub use spec::DiskSpec;

