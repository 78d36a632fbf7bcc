//! [`DiskSource`] for DRBD 8.3 / 8.4 / remus-drbd: re-reads `/proc/drbd`.
//!
//! Reading the file is cheap (one small read per checkpoint) and needs no
//! helper process, which matters on the old Dom0s that still run
//! remus-drbd. A resource name is resolved once, at open, through the udev
//! symlinks under `/dev/drbd/by-res/`, since 8.x `/proc/drbd` lists minors only.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::counter::{Counter, CounterStep, CounterWidth};
use super::proc_drbd::{parse_proc_drbd, ProcDrbd};
use super::spec::DiskSpec;
use super::{DiskSample, DiskSource};

/// Where the DRBD 8.x files live; injectable so tests run on fixtures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcPaths {
    /// `/proc/drbd`.
    pub proc_drbd: PathBuf,
    /// `/dev/drbd/by-res`: `NAME -> ../../drbdN` (8.3) or `NAME/VOL -> …` (8.4).
    pub by_res_dir: PathBuf,
}

impl Default for ProcPaths {
    fn default() -> Self {
        ProcPaths {
            proc_drbd: PathBuf::from("/proc/drbd"),
            by_res_dir: PathBuf::from("/dev/drbd/by-res"),
        }
    }
}

/// Reads and parses `/proc/drbd`, saying what to do when it is missing.
pub fn read_proc_drbd(path: &Path) -> Result<ProcDrbd> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(parse_proc_drbd(&text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
            "no DRBD on this machine: {} does not exist; is the drbd module loaded? (modprobe drbd)",
            path.display()
        ),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// `…/drbd3` → 3.
fn minor_of_link(link: &Path) -> Result<u32> {
    let target =
        fs::read_link(link).with_context(|| format!("reading symlink {}", link.display()))?;
    let file = target
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or_default();
    file.strip_prefix("drbd")
        .and_then(|digits| digits.parse::<u32>().ok())
        .with_context(|| {
            format!(
                "{} points to {}, not a /dev/drbdN device",
                link.display(),
                target.display()
            )
        })
}

/// Resolves a DRBD 8.x resource to its minors (one per volume).
pub fn resolve_resource(by_res_dir: &Path, name: &str, proc: &ProcDrbd) -> Result<Vec<u32>> {
    let path = by_res_dir.join(name);
    let meta = match fs::symlink_metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
            "unknown DRBD resource '{name}': {} does not exist; give the minor instead \
             (drbd:N; minors in /proc/drbd: {})",
            path.display(),
            proc.describe_minors()
        ),
        Err(e) => return Err(e).with_context(|| format!("looking up {}", path.display())),
    };
    if !meta.is_dir() {
        return Ok(vec![minor_of_link(&path)?]);
    }
    let mut links: Vec<PathBuf> = fs::read_dir(&path)
        .with_context(|| format!("listing {}", path.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    links.sort();
    let minors = links
        .iter()
        .map(|link| minor_of_link(link))
        .collect::<Result<Vec<u32>>>()?;
    if minors.is_empty() {
        bail!(
            "DRBD resource '{name}' has no volumes under {}",
            path.display()
        );
    }
    Ok(minors)
}

/// One minor and its widened counter.
#[derive(Debug)]
struct MinorCounter {
    minor: u32,
    ns: Counter,
}

/// Samples `ns:` of one or more minors (the volumes of a resource).
#[derive(Debug)]
pub struct ProcDrbdSource {
    name: String,
    path: PathBuf,
    minors: Vec<MinorCounter>,
}

impl ProcDrbdSource {
    /// Opens `spec` on an already parsed `/proc/drbd`, checking that every
    /// minor exists, is connected and has an `ns:` counter.
    pub fn open(spec: &DiskSpec, paths: &ProcPaths, proc: &ProcDrbd) -> Result<Self> {
        let minors = match spec {
            DiskSpec::Minor(minor) => vec![*minor],
            DiskSpec::Resource(name) => resolve_resource(&paths.by_res_dir, name, proc)?,
            DiskSpec::TapRemus(_) => bail!("{spec} is not a DRBD device"),
        };
        let connect_hint = match spec {
            DiskSpec::Resource(name) => format!("drbdadm connect {name}"),
            DiskSpec::Minor(minor) => format!("drbdadm connect <resource of /dev/drbd{minor}>"),
            DiskSpec::TapRemus(_) => String::new(),
        };
        for &minor in &minors {
            let block = proc
                .minor(minor)
                .filter(|m| m.is_configured())
                .with_context(|| {
                    format!(
                        "{spec}: DRBD minor {minor} is not configured in {} (configured minors: {})",
                        paths.proc_drbd.display(),
                        proc.describe_minors()
                    )
                })?;
            if !block.is_connected() {
                bail!(
                    "{spec}: DRBD minor {minor} is not connected (cs:{}); nothing is replicated \
                     until it is: {connect_hint}",
                    block.cs
                );
            }
            if block.ns_kib.is_none() {
                bail!(
                    "{spec}: no ns: counter for minor {minor} in {}",
                    paths.proc_drbd.display()
                );
            }
        }
        let list: Vec<String> = minors.iter().map(u32::to_string).collect();
        let name = format!(
            "{spec} ({} {}, minor{} {})",
            paths.proc_drbd.display(),
            proc.flavor().label(),
            if minors.len() > 1 { "s" } else { "" },
            list.join(",")
        );
        Ok(ProcDrbdSource {
            name,
            path: paths.proc_drbd.clone(),
            minors: minors
                .into_iter()
                .map(|minor| MinorCounter {
                    minor,
                    ns: Counter::new(CounterWidth::U32),
                })
                .collect(),
        })
    }
}

impl DiskSource for ProcDrbdSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn sample(&mut self) -> Result<DiskSample> {
        let proc = read_proc_drbd(&self.path)?;
        let mut sample = DiskSample::default();
        for entry in &mut self.minors {
            let block = proc.minor(entry.minor).with_context(|| {
                format!(
                    "DRBD minor {} vanished from {}",
                    entry.minor,
                    self.path.display()
                )
            })?;
            let ns_kib = block.ns_kib.with_context(|| {
                format!(
                    "no ns: counter for DRBD minor {} in {} (cs:{})",
                    entry.minor,
                    self.path.display(),
                    block.cs
                )
            })?;
            if let CounterStep::Restarted { previous, now } = entry.ns.update(ns_kib) {
                eprintln!(
                    "remus-ckpt: warning: {}: minor {} ns: went back from {previous} to {now} KiB; \
                     counting it as restarted",
                    self.name, entry.minor
                );
            }
            sample.sent_kib = sample.sent_kib.saturating_add(entry.ns.total());
            sample.deferred = super::add_counts(sample.deferred, block.deferred);
            sample.checkpoints = super::add_counts(sample.checkpoints, block.checkpoints);
        }
        Ok(sample)
    }
}
