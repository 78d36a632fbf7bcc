//! Integration tests of the disk-epoch half of csrc/remus_ckpt.c: what the
//! patched blktap2 tap-remus driver (block-remus.c, Xen 4.0-4.12) calls to
//! count the bytes it forwards to the backup and to write one "disk"
//! record per checkpoint flush.  Driven through the raw bindgen bindings
//! `remus_ckpt::ffi`, with real FIFOs, files, symlinks and signals.
//!
//! The record channel is `<control FIFO>.ckpt` (REMUS_CKPT_DISK_SUFFIX);
//! the tests give a control-FIFO path in a temporary directory and create
//! (or not) the `.ckpt` FIFO beside it, as `remus-ckpt` does under
//! /var/run/tap.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::ptr::{self, NonNull};
use std::time::Duration;

mod common;

use common::{fifo_reader, mkfifo, monotonic_ns, read_available, RECORD_MAX};
use remus_ckpt::ffi;

const SENT: u32 = ffi::remus_ckpt_disk_commit_REMUS_CKPT_DISK_COMMIT_SENT;
const FAILED: u32 = ffi::remus_ckpt_disk_commit_REMUS_CKPT_DISK_COMMIT_FAILED;
const NONE: u32 = ffi::remus_ckpt_disk_commit_REMUS_CKPT_DISK_COMMIT_NONE;
const WREQ: u64 = ffi::REMUS_CKPT_DISK_WREQ_HEADER as u64;
const CREQ: u64 = ffi::REMUS_CKPT_DISK_CREQ as u64;

/// Owns one non-NULL `struct remus_ckpt_disk *`; closes it on drop.
struct Disk {
    raw: NonNull<ffi::remus_ckpt_disk>,
}

impl Disk {
    fn open(ctl_path: &Path) -> Option<Disk> {
        let c = CString::new(ctl_path.to_str().unwrap()).unwrap();
        // SAFETY: c is a NUL-terminated path that lives until the call
        // returns; the library copies what it keeps.
        let raw = unsafe { ffi::remus_ckpt_disk_open(c.as_ptr()) };
        NonNull::new(raw).map(|raw| Disk { raw })
    }

    fn wrote(&mut self, secs: u64, sector_size: u64) {
        // SAFETY: self.raw is live (closed only in Drop), used by one thread.
        unsafe { ffi::remus_ckpt_disk_wrote(self.raw.as_ptr(), secs, sector_size) }
    }

    fn commit(&mut self, connected: bool, flush_rc: i32) {
        // SAFETY: as in wrote().
        unsafe { ffi::remus_ckpt_disk_commit(self.raw.as_ptr(), connected as i32, flush_rc) }
    }

    fn last(&self) -> Option<ffi::remus_ckpt_disk_record> {
        let mut out = ffi::remus_ckpt_disk_record::default();
        // SAFETY: self.raw is live; out is a valid, writable record.
        let r = unsafe { ffi::remus_ckpt_disk_last(self.raw.as_ptr(), &mut out) };
        (r == 0).then_some(out)
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        // SAFETY: self.raw came from remus_ckpt_disk_open and is closed once.
        unsafe { ffi::remus_ckpt_disk_close(self.raw.as_ptr()) }
    }
}

/// key=value pairs of one "disk" line, after checking its shape.
fn fields(line: &str) -> Vec<(String, String)> {
    let body = line
        .strip_suffix('\n')
        .expect("a record ends with a newline");
    let mut words = body.split(' ');
    assert_eq!(words.next(), Some("disk"), "{line}");
    words
        .map(|w| {
            let (k, v) = w.split_once('=').expect("key=value");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn get<'a>(kv: &'a [(String, String)], key: &str) -> &'a str {
    kv.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in {kv:?}"))
}

fn num(kv: &[(String, String)], key: &str) -> u64 {
    get(kv, key).parse().unwrap()
}

/// A control-FIFO path in `dir` and the record FIFO path derived from it.
fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    let ctl = dir.join("remus_192.0.2.1_9000");
    let rec = dir.join("remus_192.0.2.1_9000.ckpt");
    (ctl, rec)
}

const KEYS: [&str; 11] = [
    "v",
    "seq",
    "sector_size",
    "writes",
    "sectors",
    "bytes",
    "wire_bytes",
    "t_commit",
    "commit",
    "dropped",
    "stats",
];

#[test]
fn counts_each_epoch_and_writes_one_record_per_flush() {
    let dir = tempfile::tempdir().unwrap();
    let (ctl, rec) = paths(dir.path());
    mkfifo(&rec, 0o600);
    let reader = fifo_reader(&rec);
    let mut d = Disk::open(&ctl).expect("a handle for a control path");

    // Epoch 0: two 4 KiB writes of 512-byte sectors and one of 4096-byte
    // sectors, then a flush whose creq was sent.
    let before = monotonic_ns();
    d.wrote(8, 512);
    d.wrote(8, 512);
    d.wrote(1, 4096);
    d.commit(true, 0);
    let after = monotonic_ns();
    let text = read_available(&reader);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    assert_eq!(lines.len(), 1, "one record per flush: {text:?}");
    let kv = fields(lines[0]);
    let keys: Vec<&str> = kv.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, KEYS, "key order is part of the protocol");
    assert_eq!(get(&kv, "v"), "1");
    assert_eq!(num(&kv, "seq"), 0);
    assert_eq!(num(&kv, "writes"), 3);
    assert_eq!(num(&kv, "sectors"), 17);
    assert_eq!(num(&kv, "bytes"), 2 * 8 * 512 + 4096);
    assert_eq!(num(&kv, "wire_bytes"), 2 * 8 * 512 + 4096 + 3 * WREQ + CREQ);
    assert_eq!(num(&kv, "sector_size"), 4096, "the last write's");
    let t = num(&kv, "t_commit");
    assert!(before <= t && t <= after, "{before} <= {t} <= {after}");
    assert_eq!(get(&kv, "commit"), "sent");
    assert_eq!(num(&kv, "dropped"), 0);
    assert_eq!(get(&kv, "stats"), "reopened", "first record on a new FIFO");
    assert!(lines[0].len() <= RECORD_MAX);

    // Epoch 1: nothing written; the counters started again from zero.
    d.commit(true, 0);
    // Epoch 2: a write, then the creq failed (backup gone): no creq bytes.
    d.wrote(2, 512);
    d.commit(true, -1);
    // Epoch 3: not connected: nothing was committed.
    d.commit(false, 0);
    let text = read_available(&reader);
    let recs: Vec<_> = text.split_inclusive('\n').map(fields).collect();
    assert_eq!(recs.len(), 3, "{text:?}");
    let pick = |r: &[(String, String)]| {
        (
            num(r, "seq"),
            num(r, "writes"),
            num(r, "bytes"),
            num(r, "wire_bytes"),
            get(r, "commit").to_owned(),
            get(r, "stats").to_owned(),
        )
    };
    assert_eq!(pick(&recs[0]), (1, 0, 0, CREQ, "sent".into(), "ok".into()));
    assert_eq!(
        pick(&recs[1]),
        (2, 1, 1024, 1024 + WREQ, "failed".into(), "ok".into())
    );
    assert_eq!(pick(&recs[2]), (3, 0, 0, 0, "none".into(), "ok".into()));
    let last = d.last().expect("a closed epoch");
    assert_eq!((last.seq, last.commit), (3, NONE));
    let _ = (SENT, FAILED);
}

#[test]
fn absent_channel_changes_nothing_and_counts_what_was_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (ctl, rec) = paths(dir.path());
    let mut d = Disk::open(&ctl).unwrap();
    for _ in 0..3 {
        d.wrote(8, 512);
        d.commit(true, 0);
    }
    // Nothing was created: no FIFO, no file, in the directory.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert_eq!(d.last().unwrap().seq, 2, "the epochs were still counted");

    // The consumer arrives: the next record says 3 were lost before it.
    mkfifo(&rec, 0o600);
    let reader = fifo_reader(&rec);
    d.wrote(1, 512);
    d.commit(true, 0);
    let text = read_available(&reader);
    let kv = fields(&text);
    assert_eq!(num(&kv, "seq"), 3);
    assert_eq!(num(&kv, "dropped"), 3);
    assert_eq!(num(&kv, "writes"), 1, "only this epoch's write");
}

#[test]
fn null_handles_and_paths_are_no_ops() {
    // SAFETY: every function accepts NULL and then does nothing; a NULL
    // or empty control path yields NULL.
    unsafe {
        assert!(ffi::remus_ckpt_disk_open(ptr::null()).is_null());
        assert!(ffi::remus_ckpt_disk_open(c"".as_ptr()).is_null());
        ffi::remus_ckpt_disk_wrote(ptr::null_mut(), 8, 512);
        ffi::remus_ckpt_disk_commit(ptr::null_mut(), 1, 0);
        ffi::remus_ckpt_disk_close(ptr::null_mut());
        let mut out = ffi::remus_ckpt_disk_record::default();
        assert_eq!(ffi::remus_ckpt_disk_last(ptr::null(), &mut out), -1);
    }
    let dir = tempfile::tempdir().unwrap();
    let d = Disk::open(&dir.path().join("ctl")).unwrap();
    assert!(d.last().is_none(), "no epoch closed yet");
}

/// What the channel must refuse: it is a path under /var/run/tap, which
/// another dom0 process may have put there.  Each refused channel leaves
/// the thing untouched and counts the records as dropped.
#[test]
fn untrusted_channels_are_refused() {
    let dir = tempfile::tempdir().unwrap();

    // A regular file: never written to (a hung filesystem would block).
    let (ctl, rec) = paths(&dir.path().join("file").tap_mkdir());
    std::fs::write(&rec, b"").unwrap();
    std::fs::set_permissions(&rec, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut d = Disk::open(&ctl).unwrap();
    d.wrote(8, 512);
    d.commit(true, 0);
    d.commit(true, 0);
    assert_eq!(
        std::fs::read(&rec).unwrap(),
        b"",
        "a regular file is not written"
    );

    // A FIFO readable by others (mode 0644): refused.
    let (ctl, rec) = paths(&dir.path().join("wide").tap_mkdir());
    mkfifo(&rec, 0o644);
    let reader = fifo_reader(&rec);
    let mut d = Disk::open(&ctl).unwrap();
    d.commit(true, 0);
    assert_eq!(read_available(&reader), "", "a 0644 FIFO is refused");

    // A symlink to a good FIFO: refused, not followed.
    let (ctl, rec) = paths(&dir.path().join("link").tap_mkdir());
    let target = dir.path().join("link/target");
    mkfifo(&target, 0o600);
    let reader = fifo_reader(&target);
    std::os::unix::fs::symlink(&target, &rec).unwrap();
    let mut d = Disk::open(&ctl).unwrap();
    d.commit(true, 0);
    assert_eq!(read_available(&reader), "", "a symlink is not followed");

    // ... and once the symlink is replaced by a good FIFO, records flow,
    // saying how many were lost (after the 1 s refused-path recheck).
    std::fs::remove_file(&rec).unwrap();
    mkfifo(&rec, 0o600);
    let reader = fifo_reader(&rec);
    std::thread::sleep(Duration::from_millis(1100));
    d.commit(true, 0);
    let kv = fields(&read_available(&reader));
    assert_eq!(num(&kv, "seq"), 1);
    assert_eq!(num(&kv, "dropped"), 1);
}

trait TapMkdir {
    fn tap_mkdir(self) -> PathBuf;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> PathBuf {
        std::fs::create_dir(&self).unwrap();
        self
    }
}

/// A reader that never reads: the pipe fills, commits never block, every
/// record is either in the pipe or counted as dropped.
#[test]
fn full_pipe_never_blocks_and_every_loss_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (ctl, rec) = paths(dir.path());
    mkfifo(&rec, 0o600);
    let reader = fifo_reader(&rec);
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let mut d = Disk::open(&ctl).unwrap();
        // ~130-byte lines: 2000 of them are four times a 64 KiB pipe.
        for _ in 0..2000 {
            d.wrote(u64::from(u32::MAX), 4096);
            d.commit(true, 0);
        }
        let last = d.last().unwrap();
        let _ = tx.send((last.seq, last.dropped));
    });
    // Generous: 2000 non-blocking writes take milliseconds; a blocking
    // write would never return.
    let (seq, dropped_before_last) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("remus_ckpt_disk_commit blocked on a full pipe");
    worker.join().unwrap();
    let text = read_available(&reader);
    let recs: Vec<_> = text.split_inclusive('\n').map(fields).collect();
    assert!(recs.len() < 2000, "the pipe cannot hold them all");
    // The last record was written iff it is the last one read.
    let last_written = recs.last().is_some_and(|r| num(r, "seq") == seq);
    let lost = dropped_before_last + u64::from(!last_written);
    assert_eq!(
        recs.len() as u64 + lost,
        seq + 1,
        "every record is read or counted as dropped"
    );
    for r in &recs {
        assert_eq!(
            num(r, "bytes"),
            u64::from(u32::MAX) * 4096,
            "no epoch leaked into another"
        );
    }
}

/// In a child with SIGPIPE at its default action (tapdisk2 ignores it,
/// but tapdisk-stream, tapdisk-diff and the qcow tools link the same
/// driver without doing so): a reader that goes away must not kill the
/// process.
#[test]
fn vanished_reader_does_not_kill_tapdisk() {
    let dir = tempfile::tempdir().unwrap();
    let (ctl, rec) = paths(dir.path());
    mkfifo(&rec, 0o600);
    let rec_c = CString::new(rec.to_str().unwrap()).unwrap();

    // SAFETY: fork() in a multi-threaded test process: the child only uses
    // libc, malloc and the C library under test, then leaves with _exit().
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        // SAFETY: single-threaded child: default SIGPIPE, unblocked.
        let code = unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, ptr::null_mut());
            let r = libc::open(rec_c.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK);
            match Disk::open(&ctl) {
                Some(mut d) if r >= 0 => {
                    d.commit(true, 0); // opens the FIFO, written
                    libc::close(r); // the reader goes away
                    for _ in 0..5 {
                        d.commit(true, 0); // EPIPE, then ENXIO: dropped
                    }
                    match d.last() {
                        Some(l) if l.seq == 5 && l.dropped == 4 => 0,
                        _ => 3,
                    }
                }
                _ => 2,
            }
        };
        // SAFETY: leave the child without unwinding.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: pid is our child; status is writable.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        !libc::WIFSIGNALED(status),
        "the child died of signal {}",
        libc::WTERMSIG(status)
    );
    assert_eq!(libc::WEXITSTATUS(status), 0, "child check failed");
}

#[test]
fn format_is_bounded_and_refuses_unknown_commits() {
    let rec = ffi::remus_ckpt_disk_record {
        seq: u64::MAX,
        sector_size: u64::MAX,
        writes: u64::MAX,
        sectors: u64::MAX,
        bytes: u64::MAX,
        wire_bytes: u64::MAX,
        t_commit: u64::MAX,
        commit: FAILED,
        dropped: u64::MAX,
        stats_state: ffi::remus_ckpt_stats_state_REMUS_CKPT_STATS_REOPENED,
    };
    let mut buf = vec![0u8; RECORD_MAX + 1];
    // SAFETY: buf is writable for its length; rec is a valid record.
    let n = unsafe { ffi::remus_ckpt_disk_format(&rec, buf.as_mut_ptr().cast(), buf.len()) };
    let n = usize::try_from(n).expect("a formatted line, not -1");
    assert!(n > 0 && n <= RECORD_MAX, "{n}");
    let line = std::str::from_utf8(&buf[..n]).unwrap();
    assert_eq!(
        line,
        format!(
            "disk v=1 seq={m} sector_size={m} writes={m} sectors={m} bytes={m} \
             wire_bytes={m} t_commit={m} commit=failed dropped={m} stats=reopened\n",
            m = u64::MAX
        )
    );
    // Too small a buffer, an unknown commit or stats state: -1, no line.
    // SAFETY: as above.
    unsafe {
        assert_eq!(
            ffi::remus_ckpt_disk_format(&rec, buf.as_mut_ptr().cast(), n),
            -1,
            "the NUL needs room too"
        );
        let bad = ffi::remus_ckpt_disk_record { commit: 9, ..rec };
        assert_eq!(
            ffi::remus_ckpt_disk_format(&bad, buf.as_mut_ptr().cast(), buf.len()),
            -1
        );
        let bad = ffi::remus_ckpt_disk_record {
            stats_state: 9,
            ..rec
        };
        assert_eq!(
            ffi::remus_ckpt_disk_format(&bad, buf.as_mut_ptr().cast(), buf.len()),
            -1
        );
    }
}

#[test]
fn counters_saturate_instead_of_wrapping() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Disk::open(&dir.path().join("ctl")).unwrap();
    d.wrote(u64::MAX, 512);
    d.wrote(1, 512);
    d.commit(true, 0);
    let l = d.last().unwrap();
    assert_eq!(l.writes, 2);
    assert_eq!(l.sectors, u64::MAX);
    assert_eq!(l.bytes, u64::MAX);
    assert_eq!(l.wire_bytes, u64::MAX);
}
