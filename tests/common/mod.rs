//! What the tests of csrc/remus_ckpt.c (tests/c_*.rs) share: opening a
//! handle through `remus_ckpt::ffi::Ckpt`, FIFOs and pipes, and record
//! lines parsed back independently of the C formatter (docs/protocol.md).

// Each test file is its own crate and uses a part of these helpers.
#![allow(dead_code)]

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use remus_ckpt::ffi::{self, Ckpt, CkptStream, Mark};

pub const REMUS: u32 = ffi::remus_ckpt_stream_REMUS_CKPT_STREAM_REMUS;
pub const COLO: u32 = ffi::remus_ckpt_stream_REMUS_CKPT_STREAM_COLO;
pub const SUSPENDED: Mark = Mark::Suspended;
pub const SENT: Mark = Mark::Sent;
pub const RESUMED: Mark = Mark::Resumed;
pub const RECORD_MAX: usize = ffi::REMUS_CKPT_RECORD_MAX as usize;
pub const MS: u64 = 1_000_000;

/// Opens a handle for domain 7 with 4 KiB pages; `None` when unconfigured.
pub fn open(stream: CkptStream, stats: Option<&str>, control: Option<&str>) -> Option<Ckpt> {
    Ckpt::open_with(7, stream, 4096, stats, control).expect("spec without NUL")
}

pub fn cstring(s: &str) -> CString {
    CString::new(s).expect("spec without NUL")
}

/// One full checkpoint, as the Xen hooks make it.
pub trait Checkpoint {
    fn checkpoint(&mut self, live: bool) -> ffi::remus_ckpt_record;
}

impl Checkpoint for Ckpt {
    fn checkpoint(&mut self, live: bool) -> ffi::remus_ckpt_record {
        self.gate(live);
        self.mark(Mark::Suspended);
        self.mark(Mark::Sent);
        self.mark(Mark::Resumed);
        self.emit();
        self.last().expect("a record after emit")
    }
}

/// A formatter's return value as the length it is (fails on -1).
pub fn len_of(n: i32) -> usize {
    usize::try_from(n).expect("a length, not -1")
}

pub fn format(rec: &ffi::remus_ckpt_record, len: usize) -> (i32, Vec<u8>) {
    let mut buf = vec![0xffu8; len];
    // SAFETY: rec is a valid record; buf is writable for exactly `len`
    // bytes, the length passed (a dangling non-NULL pointer when len == 0,
    // which the C side must not touch).
    let n = unsafe { ffi::remus_ckpt_format(rec, buf.as_mut_ptr().cast(), len) };
    (n, buf)
}

pub fn mkfifo(path: &Path, mode: u32) {
    let c = cstring(path.to_str().unwrap());
    // SAFETY: c is a NUL-terminated path that outlives the call.
    let r = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(r, 0, "mkfifo {path:?}: {}", std::io::Error::last_os_error());
    // mkfifo's mode is filtered by the umask: set the exact mode wanted.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn fifo_reader(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .expect("open FIFO reader")
}

/// Open a FIFO for writing the way the Rust consumer does: non-blocking,
/// retrying on ENXIO until the save side has its read end open.
pub fn fifo_writer(path: &Path) -> File {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            Ok(f) => return f,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(e) => panic!("open FIFO writer {path:?}: {e}"),
        }
    }
}

/// An anonymous pipe: (read end, write end).
pub fn pipe() -> (File, File) {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0);
    // SAFETY: both fds were just created by pipe2 and are owned by nobody
    // else; each File takes sole ownership of one.
    unsafe {
        (
            File::from(OwnedFd::from_raw_fd(fds[0])),
            File::from(OwnedFd::from_raw_fd(fds[1])),
        )
    }
}

pub fn set_nonblock(f: &File, on: bool) {
    // SAFETY: fcntl on an fd owned by f, which outlives the calls.
    unsafe {
        let fl = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
        assert!(fl >= 0);
        let fl = if on {
            fl | libc::O_NONBLOCK
        } else {
            fl & !libc::O_NONBLOCK
        };
        assert_eq!(libc::fcntl(f.as_raw_fd(), libc::F_SETFL, fl), 0);
    }
}

/// Everything readable right now from a non-blocking fd.
pub fn read_available(mut f: &File) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => panic!("read: {e}"),
        }
    }
    String::from_utf8(out).expect("records are ASCII")
}

pub fn lines(s: &str) -> Vec<String> {
    s.split_inclusive('\n').map(str::to_owned).collect()
}

pub const KEYS: [&str; 22] = [
    "v",
    "seq",
    "domid",
    "stream",
    "live",
    "page_size",
    "dirty_pages",
    "deferred_pages",
    "pages_sent",
    "bytes_sent",
    "t_gate",
    "t_suspend",
    "t_suspended",
    "t_sent",
    "t_resumed",
    "t_done",
    "interval_ms",
    "cmd_interval_ms",
    "gate_wait_ns",
    "dropped",
    "ctl_rejected",
    "bytes_raw",
];

/// The numeric keys a record line must carry, in order (the state keys
/// `stats=` / `ctl=` may follow: see [`state_keys`]).
pub fn expected_keys(with_raw: bool) -> Vec<&'static str> {
    let mut k: Vec<&str> = KEYS[..21].to_vec();
    if with_raw {
        k.insert(10, "bytes_raw");
    }
    k
}

pub const STATS_STATES: [(u32, &str); 2] = [
    (ffi::remus_ckpt_stats_state_REMUS_CKPT_STATS_OK, "ok"),
    (
        ffi::remus_ckpt_stats_state_REMUS_CKPT_STATS_REOPENED,
        "reopened",
    ),
];
pub const CTL_STATES: [(u32, &str); 6] = [
    (ffi::remus_ckpt_ctl_state_REMUS_CKPT_CTL_UNSET, "unset"),
    (ffi::remus_ckpt_ctl_state_REMUS_CKPT_CTL_OK, "ok"),
    (
        ffi::remus_ckpt_ctl_state_REMUS_CKPT_CTL_NOWRITER,
        "nowriter",
    ),
    (ffi::remus_ckpt_ctl_state_REMUS_CKPT_CTL_REFUSED, "refused"),
    (
        ffi::remus_ckpt_ctl_state_REMUS_CKPT_CTL_REOPENING,
        "reopening",
    ),
    (
        ffi::remus_ckpt_ctl_state_REMUS_CKPT_CTL_FALLBACK,
        "fallback",
    ),
];

pub fn state_name(table: &[(u32, &'static str)], v: u32) -> &'static str {
    table
        .iter()
        .find(|(n, _)| *n == v)
        .unwrap_or_else(|| panic!("state {v}"))
        .1
}

pub fn state_value(table: &[(u32, &'static str)], name: &str) -> u32 {
    table
        .iter()
        .find(|(_, n)| *n == name)
        .unwrap_or_else(|| panic!("state {name}"))
        .0
}

/// The ctl= state of a record, by name.
pub fn ctl(r: &ffi::remus_ckpt_record) -> &'static str {
    if r.ctl_state == 0 {
        return "(none)";
    }
    state_name(&CTL_STATES, r.ctl_state)
}

/// The stats= state of a record, by name.
pub fn stats(r: &ffi::remus_ckpt_record) -> &'static str {
    if r.stats_state == 0 {
        return "(none)";
    }
    state_name(&STATS_STATES, r.stats_state)
}

/// Split a record line into (key, value) pairs, checking its framing.
pub fn parse_line(line: &str) -> Vec<(String, String)> {
    assert!(
        line.len() <= RECORD_MAX,
        "record longer than {RECORD_MAX}: {line:?}"
    );
    let body = line.strip_suffix('\n').expect("record ends with a newline");
    assert!(!body.contains('\n'));
    let mut words = body.split(' ');
    assert_eq!(words.next(), Some("ckpt"), "{line:?}");
    words
        .map(|w| {
            let (k, v) = w
                .split_once('=')
                .unwrap_or_else(|| panic!("word {w:?} in {line:?}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

pub fn num(kv: &[(String, String)], key: &str) -> u64 {
    let v = &kv
        .iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no key {key}"))
        .1;
    assert!(
        v == "0" || (!v.starts_with('0') && v.bytes().all(|b| b.is_ascii_digit())),
        "{key}={v} is not canonical decimal"
    );
    v.parse().unwrap_or_else(|_| panic!("{key}={v}"))
}

/// Parse a record line back into the C struct (the inverse of format).
pub fn record_from_line(line: &str) -> ffi::remus_ckpt_record {
    let mut kv = parse_line(line);
    // clean_error, when present, comes after the state words.
    let mut clean_error = 0;
    if kv.last().is_some_and(|(k, _)| k == "clean_error") {
        assert_eq!(kv.pop().unwrap().1, "1", "clean_error is 1 or absent");
        clean_error = 1;
    }
    // The state words, which only come last and in this order.
    let mut ctl_state = 0;
    let mut stats_state = 0;
    if kv.last().is_some_and(|(k, _)| k == "ctl") {
        ctl_state = state_value(&CTL_STATES, &kv.pop().unwrap().1);
    }
    if kv.last().is_some_and(|(k, _)| k == "stats") {
        stats_state = state_value(&STATS_STATES, &kv.pop().unwrap().1);
    }
    let keys: Vec<&str> = kv.iter().map(|(k, _)| k.as_str()).collect();
    let raw = keys.contains(&"bytes_raw");
    assert_eq!(keys, expected_keys(raw), "keys and order of {line:?}");
    assert_eq!(num(&kv, "v"), 1);
    let stream = match kv[3].1.as_str() {
        "remus" => REMUS,
        "colo" => COLO,
        s => panic!("stream={s}"),
    };
    let u32v = |k| u32::try_from(num(&kv, k)).unwrap();
    ffi::remus_ckpt_record {
        seq: num(&kv, "seq"),
        domid: u32v("domid"),
        stream,
        live: u32v("live"),
        page_size: u32v("page_size"),
        dirty_pages: num(&kv, "dirty_pages"),
        deferred_pages: num(&kv, "deferred_pages"),
        pages_sent: num(&kv, "pages_sent"),
        bytes_sent: num(&kv, "bytes_sent"),
        bytes_raw: if raw { num(&kv, "bytes_raw") } else { 0 },
        t_gate: num(&kv, "t_gate"),
        t_suspend: num(&kv, "t_suspend"),
        t_suspended: num(&kv, "t_suspended"),
        t_sent: num(&kv, "t_sent"),
        t_resumed: num(&kv, "t_resumed"),
        t_done: num(&kv, "t_done"),
        interval_ms: u32v("interval_ms"),
        cmd_interval_ms: u32v("cmd_interval_ms"),
        gate_wait_ns: num(&kv, "gate_wait_ns"),
        dropped: num(&kv, "dropped"),
        ctl_rejected: num(&kv, "ctl_rejected"),
        stats_state,
        ctl_state,
        clean_error,
        ..Default::default()
    }
}

pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(r, 0);
    timespec_ns(&ts)
}

/// A clock reading (never negative) in ns.
pub fn timespec_ns(ts: &libc::timespec) -> u64 {
    let secs = u64::try_from(ts.tv_sec).expect("a clock reading is not negative");
    let nanos = u64::try_from(ts.tv_nsec).expect("tv_nsec is in 0..1e9");
    secs * 1_000_000_000 + nanos
}

/// `ns` as a timespec (an absolute deadline on a clock).
pub fn ns_timespec(ns: u64) -> libc::timespec {
    libc::timespec {
        tv_sec: libc::time_t::try_from(ns / 1_000_000_000).expect("a deadline fits time_t"),
        tv_nsec: libc::c_long::try_from(ns % 1_000_000_000).expect("below 1e9"),
    }
}

/// Run `f` on its own thread and fail (rather than hang) if it blocks.
pub fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("the C library blocked (or the check panicked)")
}

/// Runs the ignored test `name` of this test binary in a child process,
/// set up by `setup` (its environment, say); panics unless the test ran
/// and passed, and returns the child's stderr.
pub fn run_child(name: &str, setup: impl FnOnce(&mut Command)) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        name,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    setup(&mut cmd);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "child {name}: {}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "child {name} really ran"
    );
    stderr
}

/// A child's stderr split into the `remus-ckpt:` lines printed after each
/// `case NAME` marker.
pub fn warnings_by_case(stderr: &str) -> Vec<(String, Vec<String>)> {
    let mut cases: Vec<(String, Vec<String>)> = Vec::new();
    for l in stderr.lines() {
        if let Some(name) = l.strip_prefix("case ") {
            cases.push((name.to_owned(), Vec::new()));
        } else if l.starts_with("remus-ckpt: ") {
            cases
                .last_mut()
                .expect("warning after a case marker")
                .1
                .push(l.to_owned());
        }
    }
    cases
}

/// Runs the ignored child test `name` and returns its stderr, split into
/// the `remus-ckpt:` lines printed after each `case NAME` marker.
pub fn child_warnings(name: &str) -> Vec<(String, Vec<String>)> {
    warnings_by_case(&run_child(name, |_| {}))
}

/// Waits (up to `bound`) until a consumer has `fifo` open for reading,
/// and returns a writer, held by the caller so that the reader never sees
/// an end of stream before the records come.
pub fn writer_once_read(fifo: &Path, bound: Duration) -> File {
    let start = Instant::now();
    loop {
        if let Ok(Some(w)) = remus_ckpt::fifo::open_writer(fifo) {
            return w;
        }
        assert!(
            start.elapsed() < bound,
            "nothing opened {} for reading within {bound:?}",
            fifo.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
