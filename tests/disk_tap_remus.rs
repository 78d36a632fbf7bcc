//! `remus-ckpt watch --disk tap-remus:... --size-metric total` against the
//! real C library on both sides: memory records from `remus_ckpt_*` (the
//! save side) and disk records from `remus_ckpt_disk_*` (what the patched
//! tap-remus driver calls), each checkpoint in the order Remus makes them
//! (suspend, disk flush, memory sent, done).  A recorded sequence with one
//! missing and one extra disk epoch: every row's disk_bytes is exactly the
//! wire bytes of its epoch, the missing one is reported and marked
//! unknown, the extra one is reported and summed.

mod common;

use std::ffi::CString;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use remus_ckpt::ffi::{self, Ckpt, CkptStream, Mark};
use remus_ckpt::row::read_csv;

const BIN: &str = env!("CARGO_BIN_EXE_remus-ckpt");
const SECTOR: u64 = 512;
const WREQ: u64 = ffi::REMUS_CKPT_DISK_WREQ_HEADER as u64;
const CREQ: u64 = ffi::REMUS_CKPT_DISK_CREQ as u64;

/// The driver's side: a `struct remus_ckpt_disk *` for one control FIFO.
struct Driver(*mut ffi::remus_ckpt_disk);

impl Driver {
    fn open(ctl: &std::path::Path) -> Driver {
        let c = CString::new(ctl.to_str().unwrap()).unwrap();
        // SAFETY: c lives through the call; the library copies the path.
        let d = unsafe { ffi::remus_ckpt_disk_open(c.as_ptr()) };
        assert!(!d.is_null());
        Driver(d)
    }
    fn write(&mut self, secs: u64) {
        // SAFETY: a live handle, used by this thread only.
        unsafe { ffi::remus_ckpt_disk_wrote(self.0, secs, SECTOR) }
    }
    fn flush(&mut self) {
        // SAFETY: as in write().
        unsafe { ffi::remus_ckpt_disk_commit(self.0, 1, 0) }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // SAFETY: closed once.
        unsafe { ffi::remus_ckpt_disk_close(self.0) }
    }
}

#[test]
fn watch_joins_tap_remus_epochs_with_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats");
    let csv = dir.path().join("watch.csv");
    let ctl = dir.path().join("remus_192.0.2.1_9000");
    let child = Command::new(BIN)
        .args(["watch", "--quiet", "--size-metric", "total", "--stats"])
        .arg(&stats)
        .arg("--disk")
        .arg(format!("tap-remus:{}", ctl.display()))
        .arg("--csv")
        .arg(&csv)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // watch opens the disk FIFO, then the stats FIFO: once the stats one
    // has a reader, both do.
    let _probe = common::writer_once_read(&stats, Duration::from_secs(20));
    assert!(
        dir.path().join("remus_192.0.2.1_9000.ckpt").exists(),
        "watch created the record FIFO beside the control FIFO"
    );

    let mut ckpt = Ckpt::open_with(
        7,
        CkptStream::Remus,
        4096,
        Some(stats.to_str().unwrap()),
        None,
    )
    .unwrap()
    .expect("configured");
    let mut driver = Driver::open(&ctl);
    // Per checkpoint: sectors written in its epoch, and flushes (1 normal;
    // checkpoint 3's flush never came, checkpoint 5 had an extra one).
    let plan: [(u64, u32); 8] = [
        (8, 1),
        (16, 1),
        (0, 1),
        (64, 0),
        (8, 1),
        (24, 2),
        (128, 1),
        (8, 1),
    ];
    let mut expected = Vec::new();
    let mut carried = 0u64; // writes of an epoch whose flush never came
    for (k, (secs, flushes)) in plan.iter().enumerate() {
        ckpt.gate(k == 0);
        // Guest writes of the epoch (forwarded before the suspend).
        if *secs > 0 {
            driver.write(*secs);
            carried += secs * SECTOR + WREQ;
        }
        ckpt.mark(Mark::Suspended);
        // remus' postsuspend: "flush" to the driver.
        let mut bytes = 0;
        for _ in 0..*flushes {
            driver.flush();
            bytes += carried + CREQ;
            carried = 0;
        }
        ckpt.dirty(100, 0);
        ckpt.wrote(100 * 4104, 100);
        ckpt.mark(Mark::Sent);
        ckpt.mark(Mark::Resumed);
        ckpt.emit();
        expected.push((bytes, u64::from(*flushes)));
    }
    drop(ckpt);
    drop(driver);

    let n = plan.len();
    let start = Instant::now();
    while read_csv(&csv).map_or(0, |r| r.len()) < n && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill has no memory-safety preconditions; the pid is our
    // child, not yet reaped.
    unsafe { libc::kill(pid_of(&child), libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "watch failed: {stderr}");

    let rows = read_csv(&csv).unwrap();
    assert_eq!(rows.len(), n, "one row per checkpoint: {stderr}");
    for (row, (bytes, flushes)) in rows.iter().zip(&expected) {
        assert_eq!(row.disk_epochs, Some(*flushes), "row {}: {stderr}", row.seq);
        assert_eq!(row.disk_bytes, *bytes, "row {}", row.seq);
        assert_eq!(row.disk_unknown, u8::from(*flushes == 0), "row {}", row.seq);
        assert_eq!(
            row.size_bytes,
            row.bytes_sent + row.disk_bytes,
            "total size"
        );
    }
    // Checkpoint 3's writes were forwarded but never committed on their
    // own: they went with checkpoint 4's flush, which says so.
    assert_eq!(rows[4].disk_bytes, (64 + 8) * SECTOR + 2 * WREQ + CREQ);
    assert!(
        stderr.contains("checkpoint 3: 0 disk epochs (expected 1), disk bytes unknown"),
        "{stderr}"
    );
    assert!(
        stderr.contains("checkpoint 5: 2 disk epochs (expected 1)"),
        "{stderr}"
    );
    assert!(stderr.contains("tap-remus:"), "names its source: {stderr}");
}

fn pid_of(child: &std::process::Child) -> libc::pid_t {
    libc::pid_t::try_from(child.id()).expect("a pid fits pid_t")
}
