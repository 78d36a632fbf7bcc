//! csrc/remus_ckpt.c's control channel: the `interval_ms=` grammar, bad
//! lines refused and warned about once, floods read in bounded slices,
//! and a dead controller's fallback.
//!
//! Driven in process through `remus_ckpt::ffi`, with real pipes, FIFOs,
//! signals and the real clock. Tests that must observe stderr or the
//! process environment re-run this test binary as a child process
//! (`#[ignore]`d `child_*` tests), so the parent is never mutated.

mod common;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::ptr;
use std::time::{Duration, Instant};

use common::*;
use proptest::prelude::*;
use remus_ckpt::ffi::{self, Ckpt, CkptStream, Fallback};

fn parse_control(line: &[u8]) -> u32 {
    // SAFETY: line points to line.len() readable bytes; the parser reads
    // at most len bytes and needs no NUL.
    unsafe { ffi::remus_ckpt_parse_control(line.as_ptr().cast(), line.len()) }
}

fn fifo_writer_enxio(path: &Path) -> bool {
    let r = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
    matches!(r, Err(e) if e.raw_os_error() == Some(libc::ENXIO))
}

/// The control grammar, written independently of the C code.
fn reference_parse(line: &[u8]) -> u32 {
    let Ok(s) = std::str::from_utf8(line) else {
        return 0;
    };
    let s = s.trim_end_matches([' ', '\t', '\r']);
    let Some(n) = s.strip_prefix("interval_ms=") else {
        return 0;
    };
    match n.parse::<u32>() {
        Ok(v) if (1..=60000).contains(&v) && n == v.to_string() => v,
        _ => 0,
    }
}

fn arb_control_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..80),
        "interval_ms=[0-9+-]{0,8}[ \t\r]{0,3}".prop_map(String::into_bytes),
        "[ ]?interval_ms=[1-9][0-9]{0,5}[ \t\rx\n\0]{0,3}".prop_map(String::into_bytes),
        (any::<u64>(), "[ \t\r]{0,2}")
            .prop_map(|(v, t)| format!("interval_ms={v}{t}").into_bytes()),
        (1u32..=60000).prop_map(|v| format!("interval_ms={v}").into_bytes()),
    ]
}

fn open_cfg(
    stream: CkptStream,
    stats: Option<&str>,
    control: Option<&str>,
    fallback_ms: u32,
    control_timeout_ms: u32,
) -> Option<Ckpt> {
    let fallback = Fallback {
        interval_ms: fallback_ms,
        control_timeout_ms,
    };
    Ckpt::open_cfg(7, stream, 4096, stats, control, fallback).expect("spec without NUL")
}

#[test]
fn parse_control_table() {
    let pad = |n: usize| format!("interval_ms=20{}", " ".repeat(n));
    let valid: &[(&[u8], u32)] = &[
        (b"interval_ms=1", 1),
        (b"interval_ms=20", 20),
        (b"interval_ms=60000", 60000),
        (b"interval_ms=100 ", 100),
        (b"interval_ms=100\t \r", 100),
        (b"interval_ms=100\r", 100),
    ];
    for (l, v) in valid {
        assert_eq!(parse_control(l), *v, "{:?}", String::from_utf8_lossy(l));
    }
    assert_eq!(
        parse_control(pad(200).as_bytes()),
        20,
        "the parser has no length cap"
    );

    let invalid: &[&[u8]] = &[
        b"",
        b"garbage",
        b"interval_ms",
        b"interval_ms=",
        b"interval_ms=0",
        b"interval_ms=00",
        b"interval_ms=010",
        b"interval_ms=-5",
        b"interval_ms=+5",
        b"interval_ms=60001",
        b"interval_ms=4294967297",
        b"interval_ms=99999999999999999999",
        b" interval_ms=10",
        b"\tinterval_ms=10",
        b"interval_ms= 10",
        b"interval_ms =10",
        b"interval_ms=50x",
        b"interval_ms=50 x",
        b"interval_ms=5.0",
        b"interval_ms=10\n",
        b"interval_ms=10\0",
        b"INTERVAL_MS=10",
        b"interval=10",
        b"interval_ms=10;interval_ms=20",
        b"\xffinterval_ms=10",
    ];
    for l in invalid {
        assert_eq!(parse_control(l), 0, "{:?}", String::from_utf8_lossy(l));
    }

    // len is honoured: only the first len bytes are the line.
    assert_eq!(parse_control(&b"interval_ms=123"[..13]), 1);
    assert_eq!(parse_control(&b"interval_ms=123x"[..15]), 123);
    // SAFETY: NULL with len 0: nothing may be read.
    assert_eq!(unsafe { ffi::remus_ckpt_parse_control(ptr::null(), 0) }, 0);

    // Every canonical value, exhaustively.
    for v in 1..=60000u32 {
        assert_eq!(parse_control(format!("interval_ms={v}").as_bytes()), v);
    }
}

#[test]
fn control_rejects_bad_lines_last_valid_wins() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctl");
    mkfifo(&path, 0o600);
    let mut ckpt = open(CkptStream::Remus, None, Some(path.to_str().unwrap())).unwrap();
    ckpt.gate(true); // opens the control FIFO (at the first checkpoint)
    ckpt.emit();
    let mut w = fifo_writer(&path);

    let at_limit = format!("interval_ms=30{}", " ".repeat(64 - 14));
    assert_eq!(at_limit.len(), 64);
    let overlong = format!("interval_ms=20{}", " ".repeat(65 - 14));
    let input = [
        "interval_ms=100\n".to_owned(),
        "garbage\n".into(),
        "interval_ms=0\n".into(),
        "interval_ms=-5\n".into(),
        "interval_ms=60001\n".into(),
        "interval_ms=99999999999999999999\n".into(),
        "\n".into(),
        "  interval_ms=10\n".into(),
        "interval_ms=50x\n".into(),
        format!("{overlong}\n"),
        format!("{at_limit}\n"),
        "interval_ms=250\t \r\n".into(),
        "nope\n".into(),
        format!("interval_ms=7{}\n", "9".repeat(5000)),
    ]
    .concat();
    w.write_all(input.as_bytes()).unwrap();
    let rejected = 11;

    // At most 4 KiB of control input is read per gate wake: this 5.4 KB
    // takes two gates.
    assert!(input.len() > 4096 && input.len() <= 2 * 4096);
    ckpt.gate(true);
    ckpt.gate(true);
    ckpt.emit();
    let r = ckpt.last().unwrap();
    assert_eq!(r.cmd_interval_ms, 250, "the last valid line wins");
    assert_eq!(r.ctl_rejected, rejected);
    assert_eq!(r.interval_ms, 0, "live round: not paced");

    // Lines may arrive in pieces: a split line is assembled, not rejected.
    w.write_all(b"interval_").unwrap();
    ckpt.gate(true);
    w.write_all(b"ms=60000\n").unwrap();
    ckpt.gate(true);
    ckpt.emit();
    let r = ckpt.last().unwrap();
    assert_eq!((r.cmd_interval_ms, r.ctl_rejected), (60000, rejected));

    // A partial line when the writer closes (EOF) is dropped and counted;
    // the FIFO is reopened, so the writer can come back.
    w.write_all(b"interval_ms=30").unwrap();
    drop(w);
    ckpt.gate(true);
    ckpt.emit();
    let r = ckpt.last().unwrap();
    assert_eq!((r.cmd_interval_ms, r.ctl_rejected), (60000, rejected + 1));

    let mut w = fifo_writer(&path);
    w.write_all(b"interval_ms=40\n").unwrap();
    ckpt.gate(true);
    ckpt.emit();
    let r = ckpt.last().unwrap();
    assert_eq!((r.cmd_interval_ms, r.ctl_rejected), (40, rejected + 1));
}

#[test]
fn control_refusals_warn_once() {
    let stderr = run_child("child_control_refusals", |_| {});
    // Between "case NAME" markers, exactly one "refusing control" line.
    let cases = warnings_by_case(stderr.split("stats-bad-spec\n").next().unwrap());
    let names: Vec<&str> = cases.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        REFUSAL_CASES.iter().map(|(n, _)| *n).collect::<Vec<_>>()
    );
    for ((name, warnings), (_, reason)) in cases.iter().zip(REFUSAL_CASES) {
        assert_eq!(warnings.len(), 1, "{name}: {warnings:?}");
        let w = &warnings[0];
        assert!(
            w.starts_with("remus-ckpt: refusing control "),
            "{name}: {w}"
        );
        assert!(
            w.ends_with(reason),
            "{name}: {w:?} should end with {reason:?}"
        );
    }
    // The stats side warns about a bad spec once too, and that is all.
    let stats_part = stderr
        .split("stats-bad-spec\n")
        .nth(1)
        .expect("stats case ran");
    let ro = stats_part
        .lines()
        .find_map(|l| l.strip_prefix("stats-ro="))
        .expect("ro fd");
    let warnings: Vec<&str> = stats_part
        .lines()
        .filter(|l| l.starts_with("remus-ckpt: "))
        .collect();
    assert_eq!(
        warnings,
        [
            "remus-ckpt: cannot use stats fd:x: invalid fd:N spec".to_owned(),
            "remus-ckpt: cannot use stats fd:999999: Bad file descriptor".into(),
            format!("remus-ckpt: cannot use stats fd:{ro}: not open for writing"),
        ]
    );
}

const REFUSAL_CASES: [(&str, &str); 10] = [
    ("regular-file", ": not a FIFO"),
    ("directory", ": not a FIFO"),
    ("fifo-0644", ": mode wider than 0600"),
    ("fifo-0620", ": mode wider than 0600"),
    ("fifo-0601", ": mode wider than 0600"),
    ("fifo-other-owner", ": not owned by this user"),
    ("fd-regular-file", ": not a pipe or FIFO"),
    ("fd-write-end", ": not open for reading"),
    ("fd-bad-spec", ": invalid fd:N spec"),
    ("fd-leading-zero", ": invalid fd:N spec"),
];

#[test]
#[ignore = "child process of control_refusals_warn_once"]
fn child_control_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let regular = d.join("regular");
    std::fs::write(&regular, "interval_ms=2000\n").unwrap();
    let regular_file = File::open(&regular).unwrap();
    // A pipe's write end: a FIFO, but not one control could be read from.
    let (_ctl_read_end, ctl_write_end) = pipe();
    let fifo = |name: &str, mode| {
        let p = d.join(name);
        mkfifo(&p, mode);
        p
    };
    let other = fifo("other", 0o600);
    let other_c = cstring(other.to_str().unwrap());
    // Only root can give a file to another user (CI runs as root).
    // SAFETY: other_c is a NUL-terminated path that outlives the call;
    // geteuid() has no preconditions.
    let (chowned, root) = unsafe {
        (
            libc::chown(other_c.as_ptr(), 65534, 65534) == 0,
            libc::geteuid() == 0,
        )
    };
    assert!(chowned || !root, "chown as root");

    let specs: Vec<(&str, String, Option<std::path::PathBuf>)> = vec![
        ("regular-file", regular.to_str().unwrap().into(), None),
        ("directory", d.to_str().unwrap().into(), None),
        (
            "fifo-0644",
            fifo("f644", 0o644).to_str().unwrap().into(),
            Some(d.join("f644")),
        ),
        (
            "fifo-0620",
            fifo("f620", 0o620).to_str().unwrap().into(),
            Some(d.join("f620")),
        ),
        (
            "fifo-0601",
            fifo("f601", 0o601).to_str().unwrap().into(),
            Some(d.join("f601")),
        ),
        (
            "fifo-other-owner",
            other.to_str().unwrap().into(),
            Some(other.clone()),
        ),
        (
            "fd-regular-file",
            format!("fd:{}", regular_file.as_raw_fd()),
            None,
        ),
        (
            "fd-write-end",
            format!("fd:{}", ctl_write_end.as_raw_fd()),
            None,
        ),
        ("fd-bad-spec", "fd:12a".into(), None),
        ("fd-leading-zero", "fd:03".into(), None),
    ];
    for ((name, spec, fifo_path), (want, _)) in specs.iter().zip(REFUSAL_CASES) {
        assert_eq!(*name, want);
        eprintln!("case {name}");
        if *name == "fifo-other-owner" && !chowned {
            // Not root: cannot create the case; keep the expected output.
            eprintln!("remus-ckpt: refusing control (skipped): not owned by this user");
            continue;
        }
        let (tx_r, tx_w) = pipe();
        let mut ckpt = open(
            CkptStream::Remus,
            Some(&format!("fd:{}", tx_w.as_raw_fd())),
            Some(spec),
        )
        .unwrap();
        // Configure a 2 s interval where the refused control could carry it.
        ckpt.gate(true);
        ckpt.emit();
        if let Some(p) = fifo_path {
            assert!(
                fifo_writer_enxio(p),
                "{name}: refused FIFO is not held open"
            );
        }
        let start = Instant::now();
        for _ in 0..4 {
            ckpt.checkpoint(false);
        }
        assert!(
            start.elapsed() < Duration::from_millis(1500),
            "{name}: gate paced"
        );
        let r = ckpt.last().unwrap();
        assert_eq!(
            (r.interval_ms, r.cmd_interval_ms, r.dropped),
            (0, 0, 0),
            "{name}"
        );
        drop(ckpt);
        assert_eq!(
            lines(&{
                set_nonblock(&tx_r, true);
                read_available(&tx_r)
            })
            .len(),
            5,
            "{name}: records still flow"
        );
    }

    // A bad stats spec, an fd that is not open, one that is read-only:
    // each warned once, every record counted as dropped.
    eprintln!("stats-bad-spec");
    let (ro, _wo) = pipe();
    for spec in [
        "fd:x".to_owned(),
        "fd:999999".into(),
        format!("fd:{}", ro.as_raw_fd()),
    ] {
        let mut ckpt = open(CkptStream::Remus, Some(&spec), None).unwrap();
        for _ in 0..3 {
            ckpt.checkpoint(false);
        }
        assert_eq!(ckpt.last().unwrap().dropped, 2, "{spec}");
    }
    eprintln!("stats-ro={}", ro.as_raw_fd());
}

#[test]
fn control_flood_is_read_in_bounded_slices() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctl");
    mkfifo(&path, 0o600);
    let mut ckpt = open(CkptStream::Remus, None, Some(path.to_str().unwrap())).unwrap();
    ckpt.checkpoint(true);
    let mut w = fifo_writer(&path);
    w.write_all(b"interval_ms=1\n").unwrap();
    assert_eq!(ckpt.checkpoint(false).cmd_interval_ms, 1);

    // A writer that refills the pipe with (rejected) lines as fast as it
    // is read.
    set_nonblock(&w, false);
    let wfd = w.as_raw_fd();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let flood = std::thread::spawn(move || {
        let chunk = b"x\n".repeat(2048);
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            if w.write_all(&chunk).is_err() {
                break; // EPIPE once the save side is closed
            }
        }
    });
    let queued = || {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD on the pipe's write end (held open by the flood
        // thread until stop) writes one c_int.
        assert_eq!(unsafe { libc::ioctl(wfd, libc::FIONREAD, &mut n) }, 0);
        n
    };
    let end = Instant::now() + Duration::from_secs(10);
    while queued() < 32 * 1024 {
        assert!(Instant::now() < end, "the flood never filled the pipe");
        std::thread::sleep(Duration::from_millis(1));
    }

    // The deadline has passed: one bounded read (4 KiB, and no read after
    // 128 lines: at most 128 + 128 two-byte lines from the last 256-byte
    // read), then the gate suspends.  Draining the pipe while the writer
    // refills it would parse 16384 lines or more.
    std::thread::sleep(Duration::from_millis(5));
    let before = ckpt.last().unwrap().ctl_rejected;
    let r = ckpt.checkpoint(false);
    let parsed = r.ctl_rejected - before;
    assert!(parsed > 0 && parsed <= 256, "{parsed} lines in one gate");
    assert_eq!((r.interval_ms, r.cmd_interval_ms, ctl(&r)), (1, 1, "ok"));

    // Paced at 1 ms under the flood: every gate returns (generously).
    for i in 0..20 {
        let t = Instant::now();
        let r = ckpt.checkpoint(false);
        assert!(
            t.elapsed() < Duration::from_millis(200),
            "gate {i} took {:?}",
            t.elapsed()
        );
        assert_eq!(r.interval_ms, 1);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(ckpt); // closes the read end: the flood's write fails with EPIPE
    flood.join().unwrap();
}

#[test]
fn control_writer_death_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctl");
    mkfifo(&path, 0o600);
    let p = path.to_str().unwrap();
    let mut ckpt = open_cfg(CkptStream::Remus, None, Some(p), 20, 300).unwrap();
    assert_eq!(ctl(&ckpt.checkpoint(true)), "nowriter");

    // A controller commands one checkpoint a minute, then dies.
    let mut w = fifo_writer(&path);
    w.write_all(b"interval_ms=60000\n").unwrap();
    drop(w);
    let t = Instant::now();
    let r = ckpt.checkpoint(false);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "the gate woke to switch to the fallback: {:?}",
        t.elapsed()
    );
    assert_eq!(
        (r.interval_ms, r.cmd_interval_ms, ctl(&r)),
        (20, 60000, "fallback")
    );
    assert!(r.gate_wait_ns >= 300 * MS, "not before the timeout");

    // Paced at the fallback from then on.
    let mut prev = r.t_suspend;
    for _ in 0..5 {
        let r = ckpt.checkpoint(false);
        assert_eq!((r.interval_ms, ctl(&r)), (20, "fallback"));
        assert!(r.t_suspend - prev >= 20 * MS);
        prev = r.t_suspend;
    }

    // The controller comes back and commands: it takes over, and an idle
    // writer that stays is no reason to fall back.
    let mut w = fifo_writer(&path);
    w.write_all(b"interval_ms=50\n").unwrap();
    let r = ckpt.checkpoint(false);
    assert_eq!((r.interval_ms, r.cmd_interval_ms, ctl(&r)), (50, 50, "ok"));
    std::thread::sleep(Duration::from_millis(400));
    let r = ckpt.checkpoint(false);
    assert_eq!((r.interval_ms, ctl(&r)), (50, "ok"));
    drop(w);

    // Without a fallback, the dead controller's interval stays.
    let (r_end, mut w) = pipe();
    let spec = format!("fd:{}", r_end.as_raw_fd());
    let mut ckpt = open_cfg(CkptStream::Remus, None, Some(&spec), 0, 1).unwrap();
    ckpt.checkpoint(true);
    w.write_all(b"interval_ms=30\n").unwrap();
    drop(w);
    std::thread::sleep(Duration::from_millis(20));
    let r = ckpt.checkpoint(false);
    assert_eq!((r.interval_ms, ctl(&r)), (30, "nowriter"));
    let r = ckpt.checkpoint(false);
    assert_eq!((r.interval_ms, ctl(&r)), (30, "nowriter"));
}

#[test]
fn control_heals_and_warns_once_per_episode() {
    let cases = child_warnings("child_control_heals");
    let got: Vec<(&str, Vec<&str>)> = cases
        .iter()
        .map(|(n, w)| (n.as_str(), w.iter().map(String::as_str).collect()))
        .collect();
    let p = |n: &str| format!("remus-ckpt: refusing control {n}");
    let dir_prefix = got
        .iter()
        .flat_map(|(_, w)| w.iter())
        .next()
        .and_then(|w| w.strip_prefix(&p("")))
        .and_then(|w| w.split_once(": "))
        .map(|(path, _)| path.to_owned())
        .expect("a refusal line");
    assert_eq!(
        got,
        vec![
            (
                "wide",
                vec![format!("{}{dir_prefix}: mode wider than 0600", p("")).as_str()]
            ),
            ("still-wide", vec![]),
            ("healed", vec![]),
            (
                "regular-file",
                vec![format!("{}{dir_prefix}: not a FIFO", p("")).as_str()]
            ),
        ]
    );
}

#[test]
#[ignore = "child process of control_heals_and_warns_once_per_episode"]
fn child_control_heals() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctl");
    // A consumer restarting: for a moment its FIFO is 0666.
    mkfifo(&path, 0o666);
    let mut ckpt = open(CkptStream::Remus, None, Some(path.to_str().unwrap())).unwrap();
    eprintln!("case wide");
    assert_eq!(ctl(&ckpt.checkpoint(true)), "refused");
    assert!(fifo_writer_enxio(&path), "a refused FIFO is not held open");

    eprintln!("case still-wide");
    for _ in 0..3 {
        assert_eq!(ctl(&ckpt.checkpoint(false)), "refused");
    }

    // Fixed: within a second it is opened, and a writer is heard.
    eprintln!("case healed");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(ctl(&ckpt.checkpoint(true)), "nowriter");
    let mut w = fifo_writer(&path);
    w.write_all(b"interval_ms=5\n").unwrap();
    let r = ckpt.checkpoint(false);
    assert_eq!((r.cmd_interval_ms, ctl(&r)), (5, "ok"));

    // Broken again: a second episode, a second line.
    eprintln!("case regular-file");
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, "interval_ms=7\n").unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let r = ckpt.checkpoint(false);
    assert_eq!((r.cmd_interval_ms, ctl(&r)), (5, "refused"));
    drop(w);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parse_control_accepts_exactly_canonical(line in arb_control_line()) {
        prop_assert_eq!(parse_control(&line), reference_parse(&line));
    }
}
