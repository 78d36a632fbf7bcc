//! Disk epochs of blktap2's tap-remus driver (Xen 4.0-4.12), joined with
//! the memory checkpoints.
//!
//! The patched driver (patches/xen-*/0006) writes one `disk v=1 ...` line
//! per flush the remus tool asks for (docs/protocol.md, "Disk record") to
//! `<control FIFO>.ckpt`, a FIFO we create beside the driver's control
//! FIFO `/var/run/tap/remus_<host>_<port>`. Each flush closes the disk
//! epoch of one checkpoint, while the guest is suspended for it.
//!
//! The join is by commit order, checked with the commit times: the epoch
//! of checkpoint k was flushed after checkpoint k-1 was done and no later
//! than checkpoint k was done, so the epochs whose `t_commit` lies in
//! (t_done(k-1), t_done(k)] belong to record k (the first record of a save:
//! [t_suspend, t_done]). Both clocks are CLOCK_MONOTONIC of the same dom0.
//! Exactly one epoch there is the normal case; none is a missing epoch (its
//! disk bytes are unknown, never taken as 0 by the policy); more than one
//! are extra epochs (a flush someone else asked for), whose bytes add up.
//! Epochs older than the window arrived too late for their checkpoint and
//! are counted as late, not added to a later one.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::record::Record;

/// Version of the disk record line this reader understands.
pub const DISK_RECORD_VERSION: u32 = 1;
/// Where the driver's control FIFOs live (blktaplib.h BLKTAP_CTRL_DIR).
pub const TAP_CTRL_DIR: &str = "/var/run/tap";
/// Suffix of the record FIFO beside a control FIFO (REMUS_CKPT_DISK_SUFFIX).
pub const RECORD_SUFFIX: &str = ".ckpt";
/// Longest record line kept (REMUS_CKPT_RECORD_MAX); longer ones are refused.
const LINE_MAX: usize = 1024;
/// Epochs kept waiting for their checkpoint; older ones are dropped first.
const QUEUE_MAX: usize = 4096;

/// How the driver closed an epoch (`commit=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// The commit request went to the backup.
    Sent,
    /// Sending it failed: the backup is gone.
    Failed,
    /// No connection to the backup: nothing was committed.
    None,
}

/// One `disk v=1` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskEpoch {
    pub seq: u64,
    pub writes: u64,
    /// Payload bytes forwarded (sectors x sector size).
    pub bytes: u64,
    /// What went on the replication stream: payload, per-write headers and
    /// the commit request.
    pub wire_bytes: u64,
    /// CLOCK_MONOTONIC ns of the flush.
    pub t_commit_ns: u64,
    pub commit: Commit,
    /// Disk records the driver lost before this one.
    pub dropped: u64,
}

/// Parses one `disk` line (with or without its newline). Unknown keys are
/// ignored (keys are only ever added at the end within a version).
pub fn parse_disk_line(line: &str) -> Result<DiskEpoch> {
    let body = line.trim_end_matches(['\n', '\r']);
    let mut words = body.split(' ');
    if words.next() != Some("disk") {
        bail!("not a disk record: {body:?}");
    }
    let (mut seq, mut writes, mut bytes, mut wire, mut t, mut commit, mut dropped) =
        (None, None, None, None, None, None, None);
    let mut version = None;
    for w in words {
        let (k, v) = w
            .split_once('=')
            .with_context(|| format!("disk record word {w:?} is not key=value"))?;
        let n = || -> Result<u64> {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                bail!("disk record {k}={v:?}: not a decimal number");
            }
            v.parse::<u64>()
                .with_context(|| format!("disk record {k}={v:?}: out of range"))
        };
        match k {
            "v" => version = Some(n()?),
            "seq" => seq = Some(n()?),
            "writes" => writes = Some(n()?),
            "bytes" => bytes = Some(n()?),
            "wire_bytes" => wire = Some(n()?),
            "t_commit" => t = Some(n()?),
            "dropped" => dropped = Some(n()?),
            "commit" => {
                commit = Some(match v {
                    "sent" => Commit::Sent,
                    "failed" => Commit::Failed,
                    "none" => Commit::None,
                    _ => bail!("disk record commit={v:?}: unknown"),
                })
            }
            _ => {}
        }
    }
    if version != Some(u64::from(DISK_RECORD_VERSION)) {
        bail!("disk record version {version:?} is not {DISK_RECORD_VERSION}");
    }
    let need =
        |name: &str, v: Option<u64>| v.with_context(|| format!("disk record without {name}"));
    Ok(DiskEpoch {
        seq: need("seq", seq)?,
        writes: need("writes", writes)?,
        bytes: need("bytes", bytes)?,
        wire_bytes: need("wire_bytes", wire)?,
        t_commit_ns: need("t_commit", t)?,
        commit: commit.context("disk record without commit")?,
        dropped: need("dropped", dropped)?,
    })
}

/// What the join found for one memory checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EpochMatch {
    /// Disk epochs joined to the checkpoint: 1 normally, 0 missing (bytes
    /// unknown), more: extra epochs, their bytes summed.
    pub epochs: u64,
    /// Their wire bytes (0 when none).
    pub wire_bytes: u64,
    /// Epochs that came too late for their checkpoint, found now.
    pub late: u64,
}

/// The join of disk epochs with memory checkpoints (pure: no I/O).
#[derive(Debug, Default)]
pub struct EpochJoin {
    pending: VecDeque<DiskEpoch>,
    /// t_done and seq of the previous checkpoint of this save.
    prev: Option<(u64, u64)>,
    /// Epochs dropped because the queue was full.
    pub overflowed: u64,
}

impl EpochJoin {
    /// A disk epoch as read, in the order the driver wrote them.
    pub fn push(&mut self, epoch: DiskEpoch) {
        if self.pending.len() == QUEUE_MAX {
            self.pending.pop_front();
            self.overflowed += 1;
        }
        self.pending.push_back(epoch);
    }

    /// Joins the epochs read so far with the checkpoint `rec`.
    pub fn on_record(&mut self, rec: &Record) -> EpochMatch {
        // A sequence that does not go forward is a new save: time restarts.
        let start = match self.prev {
            Some((t_done, seq)) if rec.seq > seq && rec.t_done_ns >= t_done => Some(t_done),
            _ => None,
        };
        let end = rec.t_done_ns;
        let mut m = EpochMatch::default();
        while let Some(e) = self.pending.front() {
            let t = e.t_commit_ns;
            let before = match start {
                Some(s) => t <= s,
                None => t < rec.t_suspend_ns,
            };
            if before {
                // Its checkpoint was already joined (late), or it belongs
                // to one before the first record we saw (not counted).
                if start.is_some() {
                    m.late += 1;
                }
                self.pending.pop_front();
            } else if t <= end {
                m.epochs += 1;
                m.wire_bytes = m.wire_bytes.saturating_add(e.wire_bytes);
                self.pending.pop_front();
            } else {
                break;
            }
        }
        self.prev = Some((rec.t_done_ns, rec.seq));
        m
    }
}

/// The name of the control FIFO block-remus.c makes for a `tap:remus:`
/// disk: `remus_` and the driver's argument (`host:port`), with `:` and
/// `/` replaced by `_`.
fn control_fifo_name(arg: &str) -> String {
    let name: String = arg
        .chars()
        .map(|c| if c == ':' || c == '/' { '_' } else { c })
        .collect();
    if name.starts_with("remus_") {
        name
    } else {
        format!("remus_{name}")
    }
}

/// The control FIFO a `--disk tap-remus:ARG` names: an absolute path as
/// is, else `/var/run/tap/remus_<ARG scrubbed>` (ARG: `host:port`, as in
/// the domain's `tap:remus:host:port|aio:...` disk, or the FIFO's name).
pub fn control_fifo(arg: &str) -> PathBuf {
    if arg.starts_with('/') {
        PathBuf::from(arg)
    } else {
        Path::new(TAP_CTRL_DIR).join(control_fifo_name(arg))
    }
}

/// The record FIFO beside a control FIFO.
pub fn record_fifo(control: &Path) -> PathBuf {
    let mut s = control.as_os_str().to_owned();
    s.push(RECORD_SUFFIX);
    PathBuf::from(s)
}

/// Reads a tap-remus driver's disk records and joins them per checkpoint.
pub struct TapRemusSource {
    name: String,
    path: PathBuf,
    fifo: File,
    buf: Vec<u8>,
    /// The current line overflowed LINE_MAX: skip to its newline.
    skipping: bool,
    join: EpochJoin,
    /// Lines that were not valid disk records.
    pub rejected: u64,
    last_dropped: u64,
    /// Checkpoints joined with other than one epoch, or with late ones.
    pub anomalies: u64,
}

impl TapRemusSource {
    /// Creates (or checks) `<control>.ckpt` as a private FIFO and opens it.
    /// The driver finds it by name: no configuration of tapdisk is needed.
    pub fn open(control: &Path) -> Result<Self> {
        let path = record_fifo(control);
        let dir = control.parent().unwrap_or(Path::new("/"));
        if !dir.is_dir() {
            bail!(
                "{} does not exist: is tapdisk running with a tap:remus: disk \
                 (its control FIFO {} lives there)?",
                dir.display(),
                control.display()
            );
        }
        // Run as root: the FIFO is created in a directory nobody else can
        // write (tapdisk makes /var/run/tap root-owned 0755), so nobody can
        // put a name there first or swap ours afterwards.
        crate::trust::check(dir, crate::trust::Leaf::Private)
            .with_context(|| format!("the tap-remus record FIFO's directory {}", dir.display()))?;
        crate::fifo::ensure_private_fifo(&path)
            .with_context(|| format!("tap-remus record FIFO {}", path.display()))?;
        let fifo = crate::fifo::open_private_reader(&path)
            .with_context(|| format!("tap-remus record FIFO {}", path.display()))?;
        Ok(TapRemusSource {
            name: format!("tap-remus:{} ({})", control.display(), path.display()),
            path,
            fifo,
            buf: Vec::new(),
            skipping: false,
            join: EpochJoin::default(),
            rejected: 0,
            last_dropped: 0,
            anomalies: 0,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads every complete line available now (never blocks).
    fn drain(&mut self) -> Result<()> {
        let mut chunk = [0u8; 4096];
        loop {
            match self.fifo.read(&mut chunk) {
                Ok(0) => return Ok(()), // no writer right now
                Ok(n) => self.feed(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("reading {}", self.path.display()))
                }
            }
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                if !self.skipping {
                    let line = std::mem::take(&mut self.buf);
                    self.line(&line);
                }
                self.buf.clear();
                self.skipping = false;
            } else if self.buf.len() < LINE_MAX {
                self.buf.push(b);
            } else {
                self.skipping = true;
                self.rejected += 1;
                self.buf.clear();
            }
        }
    }

    fn line(&mut self, line: &[u8]) {
        match std::str::from_utf8(line)
            .map_err(anyhow::Error::from)
            .and_then(parse_disk_line)
        {
            Ok(epoch) => {
                self.last_dropped = epoch.dropped;
                self.join.push(epoch);
            }
            Err(_) => self.rejected += 1,
        }
    }

    /// The epochs of checkpoint `rec` (reads what is there first).
    pub fn on_record(&mut self, rec: &Record) -> Result<EpochMatch> {
        self.drain()?;
        Ok(self.join.on_record(rec))
    }

    /// The warning for a join that was not one epoch (missing, extra or
    /// late ones), or None. Said for the first 10 such checkpoints, then
    /// at the 16th, 32nd, 64th...: a driver that never writes (tapdisk not
    /// patched, not running) must not flood stderr once per checkpoint.
    pub fn anomaly(&mut self, rec: &Record, m: &EpochMatch) -> Option<String> {
        if m.epochs == 1 && m.late == 0 {
            return None;
        }
        self.anomalies += 1;
        let n = self.anomalies;
        if n > 10 && !n.is_power_of_two() {
            return None;
        }
        let mut text = format!(
            "remus-ckpt: warning: {}: checkpoint {}: {} disk epochs (expected 1)",
            self.name, rec.seq, m.epochs
        );
        if m.epochs == 0 {
            text.push_str(", disk bytes unknown");
        }
        if m.late > 0 {
            text.push_str(&format!(
                ", {} late epoch(s) of earlier checkpoints",
                m.late
            ));
        }
        if n >= 10 {
            text.push_str(&format!(
                " ({n} such checkpoints so far; the driver reported {} records lost, \
                 {} lines refused)",
                self.last_dropped, self.rejected
            ));
        }
        Some(text)
    }

    /// Disk records the driver said it lost, as of its last record.
    pub fn driver_dropped(&self) -> u64 {
        self.last_dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi;

    fn rec(seq: u64, t_suspend_ns: u64, t_done_ns: u64) -> Record {
        Record {
            seq,
            t_suspend_ns,
            t_done_ns,
            ..Record::default()
        }
    }

    fn epoch(seq: u64, t_commit_ns: u64, wire_bytes: u64) -> DiskEpoch {
        DiskEpoch {
            seq,
            writes: 1,
            bytes: wire_bytes,
            wire_bytes,
            t_commit_ns,
            commit: Commit::Sent,
            dropped: 0,
        }
    }

    /// A recorded sequence: checkpoints every 100 (suspend at 100k + 10,
    /// flush at 100k + 20, done at 100k + 80), with one disk record lost
    /// (epoch 2) and one extra flush (inside checkpoint 4's window).
    #[test]
    fn joins_by_commit_order_and_reports_missing_and_extra_epochs() {
        let mut j = EpochJoin::default();
        for (seq, t, b) in [
            (0, 20, 1000),
            (1, 120, 2000),
            // epoch 2 (t 220) lost: the driver's next record says dropped=1
            (3, 320, 4000),
            (4, 420, 5000),
            (5, 450, 7), // an extra flush, same checkpoint window
            (6, 520, 6000),
        ] {
            j.push(epoch(seq, t, b));
        }
        let got: Vec<EpochMatch> = (0..6)
            .map(|k| j.on_record(&rec(k, 100 * k + 10, 100 * k + 80)))
            .collect();
        let m = |epochs, wire_bytes| EpochMatch {
            epochs,
            wire_bytes,
            late: 0,
        };
        assert_eq!(
            got,
            vec![
                m(1, 1000),
                m(1, 2000),
                m(0, 0), // missing: bytes unknown
                m(1, 4000),
                m(2, 5007), // extra: both flushes of that window
                m(1, 6000),
            ]
        );
    }

    #[test]
    fn a_late_epoch_is_not_added_to_the_next_checkpoint() {
        let mut j = EpochJoin::default();
        j.push(epoch(0, 20, 1000));
        assert_eq!(j.on_record(&rec(0, 10, 80)).epochs, 1);
        // Checkpoint 1 is joined before its epoch (t 120) was read.
        let m1 = j.on_record(&rec(1, 110, 180));
        assert_eq!((m1.epochs, m1.late), (0, 0));
        j.push(epoch(1, 120, 2000));
        j.push(epoch(2, 220, 3000));
        let m2 = j.on_record(&rec(2, 210, 280));
        assert_eq!(
            m2,
            EpochMatch {
                epochs: 1,
                wire_bytes: 3000,
                late: 1
            },
            "epoch 1 is late, not part of checkpoint 2"
        );
    }

    #[test]
    fn epochs_before_the_first_record_and_after_a_new_save_are_not_joined() {
        let mut j = EpochJoin::default();
        j.push(epoch(7, 5, 999)); // before the consumer saw any checkpoint
        j.push(epoch(8, 20, 1000));
        assert_eq!(
            j.on_record(&rec(0, 10, 80)),
            EpochMatch {
                epochs: 1,
                wire_bytes: 1000,
                late: 0
            }
        );
        // A new save (seq back to 0, later clock): its first window starts
        // at its own t_suspend; the stale epoch at 500 is not joined.
        j.push(epoch(9, 500, 1));
        j.push(epoch(10, 1020, 2000));
        let m = j.on_record(&rec(0, 1010, 1080));
        assert_eq!((m.epochs, m.wire_bytes, m.late), (1, 2000, 0));
    }

    #[test]
    fn epochs_of_a_later_checkpoint_wait_for_it() {
        let mut j = EpochJoin::default();
        j.push(epoch(0, 20, 1000));
        j.push(epoch(1, 120, 2000));
        assert_eq!(j.on_record(&rec(0, 10, 80)).wire_bytes, 1000);
        assert_eq!(j.on_record(&rec(1, 110, 180)).wire_bytes, 2000);
    }

    /// The line the C library formats is the line this parser reads.
    #[test]
    fn parses_what_the_c_library_formats() {
        let r = ffi::remus_ckpt_disk_record {
            seq: 4,
            sector_size: 512,
            writes: 3,
            sectors: 24,
            bytes: 12288,
            wire_bytes: 12340,
            t_commit: 81234519998011,
            commit: ffi::remus_ckpt_disk_commit_REMUS_CKPT_DISK_COMMIT_FAILED,
            dropped: 2,
            stats_state: ffi::remus_ckpt_stats_state_REMUS_CKPT_STATS_OK,
        };
        let mut buf = vec![0u8; 1100];
        // SAFETY: buf is writable for its length; r is a valid record.
        let n = unsafe { ffi::remus_ckpt_disk_format(&r, buf.as_mut_ptr().cast(), buf.len()) };
        let n = usize::try_from(n).expect("a formatted line, not -1");
        assert!(n > 0);
        let line = std::str::from_utf8(&buf[..n]).unwrap();
        assert_eq!(
            parse_disk_line(line).unwrap(),
            DiskEpoch {
                seq: 4,
                writes: 3,
                bytes: 12288,
                wire_bytes: 12340,
                t_commit_ns: 81234519998011,
                commit: Commit::Failed,
                dropped: 2,
            }
        );
    }

    #[test]
    fn refuses_what_is_not_a_v1_disk_record() {
        let good = "disk v=1 seq=0 sector_size=512 writes=0 sectors=0 bytes=0 wire_bytes=4 \
                    t_commit=5 commit=sent dropped=0 stats=ok";
        assert!(parse_disk_line(good).is_ok());
        assert!(parse_disk_line(&format!("{good} future_key=1")).is_ok());
        for bad in [
            good.replace("v=1", "v=2"),
            good.replace("disk ", "ckpt "),
            good.replace("bytes=0 ", "bytes=-1 "),
            good.replace("commit=sent", "commit=maybe"),
            good.replace(" t_commit=5", ""),
            good.replace("seq=0", "seq=99999999999999999999999"),
        ] {
            assert!(parse_disk_line(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn control_fifo_names_follow_block_remus() {
        assert_eq!(
            control_fifo("192.168.1.2:9000"),
            PathBuf::from("/var/run/tap/remus_192.168.1.2_9000")
        );
        assert_eq!(
            control_fifo("remus_backup_9000"),
            PathBuf::from("/var/run/tap/remus_backup_9000")
        );
        assert_eq!(control_fifo("/tmp/x/ctl"), PathBuf::from("/tmp/x/ctl"));
        assert_eq!(
            record_fifo(Path::new("/var/run/tap/remus_h_1")),
            PathBuf::from("/var/run/tap/remus_h_1.ckpt")
        );
    }

    /// A driver that never writes: the warning is said for the first 10
    /// checkpoints, then only at powers of two.
    #[test]
    fn anomalies_are_said_sparingly() {
        let dir = tempfile::tempdir().unwrap();
        let mut src = TapRemusSource::open(&dir.path().join("remus_h_1")).unwrap();
        let said: Vec<u64> = (0..100)
            .filter(|&k| {
                let m = src.on_record(&rec(k, 10 * k + 1, 10 * k + 5)).unwrap();
                assert_eq!(m.epochs, 0);
                src.anomaly(&rec(k, 0, 0), &m).is_some()
            })
            .map(|k| k + 1)
            .collect();
        assert_eq!(said, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 16, 32, 64]);
        assert_eq!(src.anomalies, 100);
        let ok = EpochMatch {
            epochs: 1,
            wire_bytes: 4,
            late: 0,
        };
        assert!(src.anomaly(&rec(100, 0, 0), &ok).is_none());
    }

    /// Where another user could put or swap the record FIFO, the source
    /// refuses to start: a directory others may write, a name that is a
    /// link to a FIFO of ours elsewhere, a FIFO others may write.
    #[test]
    fn record_fifo_out_of_others_reach() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let open = |ctl: &Path| {
            TapRemusSource::open(ctl)
                .map(|_| ())
                .map_err(|e| format!("{e:#}"))
        };

        let loose = dir.path().join("loose");
        std::fs::create_dir(&loose).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = open(&loose.join("remus_h_1")).unwrap_err();
        assert!(e.contains("writable by"), "{e}");
        assert!(
            !loose.join("remus_h_1.ckpt").exists(),
            "nothing created there"
        );

        let tight = dir.path().join("tight");
        std::fs::create_dir(&tight).unwrap();
        let elsewhere = dir.path().join("elsewhere.fifo");
        crate::fifo::create_private_fifo(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, tight.join("remus_h_2.ckpt")).unwrap();
        let e = open(&tight.join("remus_h_2")).unwrap_err();
        assert!(e.contains("not a FIFO"), "{e}");

        crate::fifo::create_private_fifo(&tight.join("remus_h_3.ckpt")).unwrap();
        std::fs::set_permissions(
            tight.join("remus_h_3.ckpt"),
            std::fs::Permissions::from_mode(0o622),
        )
        .unwrap();
        let e = open(&tight.join("remus_h_3")).unwrap_err();
        assert!(e.contains("has mode"), "{e}");
        open(&tight.join("remus_h_4")).expect("a private directory is fine");
    }

    /// The source end to end: the real C writer into the FIFO the source
    /// created, joined with two memory checkpoints.
    #[test]
    fn source_reads_the_fifo_the_driver_writes() {
        let dir = tempfile::tempdir().unwrap();
        let ctl = dir.path().join("remus_h_9000");
        let mut src = TapRemusSource::open(&ctl).unwrap();
        let c = std::ffi::CString::new(ctl.to_str().unwrap()).unwrap();
        // SAFETY: c lives through the call; the handle is closed below.
        let d = unsafe { ffi::remus_ckpt_disk_open(c.as_ptr()) };
        assert!(!d.is_null());
        let now = || {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: ts is writable.
            unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
            u64::try_from(ts.tv_sec).expect("not negative") * 1_000_000_000
                + u64::try_from(ts.tv_nsec).expect("below 1e9")
        };
        let t0 = now();
        // SAFETY: d is a live handle used by this thread only.
        unsafe {
            ffi::remus_ckpt_disk_wrote(d, 8, 512);
            ffi::remus_ckpt_disk_commit(d, 1, 0);
        }
        let t1 = now();
        let m = src.on_record(&rec(0, t0, t1)).unwrap();
        assert_eq!((m.epochs, m.wire_bytes), (1, 4096 + 16 + 4));
        // Checkpoint 1: no flush (the record was never written): missing.
        let t2 = now();
        let m = src.on_record(&rec(1, t1, t2)).unwrap();
        assert_eq!(m.epochs, 0);
        // SAFETY: closed once.
        unsafe { ffi::remus_ckpt_disk_close(d) };
        assert_eq!(src.rejected, 0);
    }
}
