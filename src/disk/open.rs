//! Picks the [`DiskSource`] for a `--disk` spec from what the machine has.
//!
//! The user names a device; whether its counters come from `/proc/drbd`
//! or from `drbdsetup` is DRBD's business, decided here by the version
//! line of `/proc/drbd`. Every failure says what to do next.

use anyhow::{bail, Context, Result};

use super::events2_source::{Events2Config, Events2Source};
use super::meter::DiskMeter;
use super::proc_drbd::ProcFlavor;
use super::proc_source::{read_proc_drbd, ProcDrbdSource, ProcPaths};
use super::simulated::{SimulatedDisk, SimulatedDiskHandle};
use super::spec::DiskSpec;
use super::tap_remus::TapRemusSource;
use super::DiskSource;

/// Where each kind of disk source reads its counters: DRBD 8.x's
/// `/proc/drbd`, DRBD 9's `drbdsetup`, or the simulator's disk. Everything
/// [`open_with`] may need from outside; defaults are the real system.
#[derive(Debug, Clone, Default)]
pub struct DiskBackends {
    /// DRBD 8.x file locations.
    pub proc_paths: ProcPaths,
    /// DRBD 9 `drbdsetup` and its timeouts.
    pub events2: Events2Config,
    /// The simulator's disk, for `drbd:sim` (None outside `simulate`).
    pub simulated: Option<SimulatedDiskHandle>,
}

/// Opens `spec` using `options`.
pub fn open_with(spec: &DiskSpec, options: &DiskBackends) -> Result<Box<dyn DiskSource>> {
    if spec.is_simulated() {
        let Some(handle) = &options.simulated else {
            bail!("{spec} is the simulated disk; it exists only under `remus-ckpt simulate`");
        };
        return Ok(Box::new(SimulatedDisk::new(handle.clone())));
    }
    let proc = read_proc_drbd(&options.proc_paths.proc_drbd)?;
    match proc.flavor() {
        ProcFlavor::Drbd9 => match spec {
            DiskSpec::Resource(name) => Ok(Box::new(Events2Source::open(name, &options.events2)?)),
            DiskSpec::Minor(minor) => Ok(Box::new(Events2Source::open_minor(
                *minor,
                &options.events2,
            )?)),
            DiskSpec::TapRemus(_) => bail!("{spec} is not a DRBD device"),
        },
        _ => Ok(Box::new(ProcDrbdSource::open(
            spec,
            &options.proc_paths,
            &proc,
        )?)),
    }
}

impl DiskMeter {
    /// Opens every spec; fails (naming the spec) if any cannot be opened,
    /// since a typo in `--disk` should stop the run before it starts.
    pub fn open(specs: &[DiskSpec], options: &DiskBackends) -> Result<DiskMeter> {
        let mut sources = Vec::new();
        let mut epochs = Vec::new();
        for spec in specs {
            if let DiskSpec::TapRemus(arg) = spec {
                if options.simulated.is_some() {
                    bail!("--disk {spec}: `simulate` has only the simulated disk (drbd:sim)");
                }
                let control = super::tap_remus::control_fifo(arg);
                epochs.push(
                    TapRemusSource::open(&control).with_context(|| format!("--disk {spec}"))?,
                );
                continue;
            }
            sources.push(open_with(spec, options).with_context(|| format!("--disk {spec}"))?);
        }
        Ok(DiskMeter::new(sources).with_epochs(epochs))
    }
}
