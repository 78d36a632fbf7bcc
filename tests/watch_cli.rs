//! `remus-ckpt watch` against a save side made of the real C library: the
//! test plays libxl-save-helper (gate, marks, emit) while the binary
//! consumes, steers and writes the CSV, then stops on SIGINT keeping
//! every row.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use remus_ckpt::ffi::{Ckpt, CkptStream, Mark};
use remus_ckpt::row::read_csv;

const BIN: &str = env!("CARGO_BIN_EXE_remus-ckpt");

#[test]
fn watch_steers_a_real_c_save_side_and_stops_cleanly_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats");
    let control = dir.path().join("control");
    let csv = dir.path().join("watch.csv");
    let child = Command::new(BIN)
        .args([
            "watch",
            "--quiet",
            "--policy",
            "threshold",
            "--interval",
            "100ms",
            "--lmax",
            "1MiB",
            "--lmin",
            "256KiB",
        ])
        .arg("--stats")
        .arg(&stats)
        .arg("--control")
        .arg(&control)
        .arg("--csv")
        .arg(&csv)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // watch creates both FIFOs and opens the stats one for reading; until
    // it has, a record would be dropped (and counted), as on a real save
    // side started before its consumer. Wait until it reads, holding a
    // writer open meanwhile so the reader never sees an end of stream.
    let _probe = common::writer_once_read(&stats, Duration::from_secs(10));

    let mut ckpt = Ckpt::open_with(
        7,
        CkptStream::Remus,
        4096,
        Some(stats.to_str().unwrap()),
        Some(control.to_str().unwrap()),
    )
    .unwrap()
    .expect("configured");
    // Every checkpoint is 4 MiB, far above Lmax: the interval must halve
    // from 100 ms towards tmin (10 ms) and the gate must follow. How many
    // checkpoints that takes depends on how fast the consumer answers (a
    // loaded machine answers later, and the save side may then see only
    // the newest of several commands), so checkpoints go on until the save
    // side has seen tmin, bounded by count: the test is about what arrives,
    // not when.
    const MIN_CHECKPOINTS: usize = 12;
    const MAX_CHECKPOINTS: usize = 300;
    let mut records = Vec::new();
    while records.len() < MAX_CHECKPOINTS {
        ckpt.gate(records.is_empty());
        ckpt.mark(Mark::Suspended);
        ckpt.dirty(1024, 0);
        ckpt.wrote(1024 * 4104, 1024);
        ckpt.mark(Mark::Sent);
        ckpt.mark(Mark::Resumed);
        ckpt.emit();
        let rec = ckpt.last().unwrap();
        let at_tmin = rec.cmd_interval_ms == 10;
        records.push(rec);
        if at_tmin && records.len() >= MIN_CHECKPOINTS {
            break;
        }
        // Give the consumer time to answer, as a real checkpoint would.
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(ckpt);
    let n = records.len();
    // Let the last rows reach the CSV before stopping.
    let start = Instant::now();
    while read_csv(&csv).map_or(0, |r| r.len()) < n && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }

    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill has no memory-safety preconditions; the pid is our
    // child, not yet reaped.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "watch failed: {stderr}");
    // The live round is not counted as a checkpoint.
    let summary = format!("{} checkpoints, {} above Lmax", n - 1, n - 1);
    assert!(stderr.contains(&summary), "want '{summary}' in: {stderr}");
    assert!(stderr.contains("0 records lost"), "{stderr}");

    let rows = read_csv(&csv).unwrap();
    assert_eq!(rows.len(), n, "one row per checkpoint");
    assert!(rows.iter().enumerate().all(|(i, r)| r.seq == i as u64));
    // The controller halved the interval; the save side received it and
    // paced for it.
    let decided: Vec<u64> = rows.iter().map(|r| r.next_interval_ms).collect();
    assert_eq!(
        &decided[..5],
        &[100, 50, 25, 13, 10],
        "the controller halves from --interval down to tmin"
    );
    let commanded: Vec<u32> = records.iter().map(|r| r.cmd_interval_ms).collect();
    assert_eq!(
        commanded[0], 0,
        "nothing commanded before the first checkpoint"
    );
    let seen: Vec<u32> = commanded.iter().copied().filter(|ms| *ms > 0).collect();
    assert!(
        seen.windows(2).all(|w| w[0] >= w[1])
            && seen.iter().all(|ms| decided.contains(&u64::from(*ms))),
        "the save side sees only the controller's decisions, in order: {commanded:?}"
    );
    assert_eq!(
        *commanded.last().unwrap(),
        10,
        "clamped at tmin within {MAX_CHECKPOINTS} checkpoints: {commanded:?}"
    );
    // Once a command has arrived, every later gate paces for it.
    for (rec, next) in records.iter().zip(records.iter().skip(1)) {
        if rec.cmd_interval_ms > 0 {
            assert!(next.interval_ms > 0, "the gate paced: {records:?}");
        }
    }
    for (rec, next) in records.iter().zip(records.iter().skip(1)) {
        if next.interval_ms > 0 {
            let period_ms = (next.t_suspend - rec.t_suspend) as f64 / 1e6;
            assert!(
                period_ms + 0.5 >= f64::from(next.interval_ms),
                "gate woke early: {period_ms} < {}",
                next.interval_ms
            );
        }
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn record_line(seq: u64) -> String {
    format!(
        "ckpt v=1 seq={seq} dirty_pages=10 pages_sent=10 bytes_sent=41040 t_suspend={ts} \
         t_suspended={ts} t_resumed={ts} t_done={ts}\n",
        ts = 1_000_000 * (seq + 1)
    )
}

/// `watch --quiet` on `stats` writing `csv`, stderr into `log`.
fn spawn_watch(stats: &Path, csv: &Path, log: &Path) -> std::process::Child {
    Command::new(BIN)
        .args(["watch", "--quiet", "--stats"])
        .arg(stats)
        .arg("--csv")
        .arg(csv)
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn sigint_and_wait(child: std::process::Child) -> std::process::Output {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill has no memory-safety preconditions; the pid is our
    // child, not yet reaped.
    unsafe { libc::kill(pid, libc::SIGINT) };
    child.wait_with_output().unwrap()
}

/// Blocks until watch holds `stats` open for reading, then gives a
/// blocking writer on it.
fn writer_once_open(stats: &Path) -> std::fs::File {
    wait_for("watch to open the stats FIFO", || {
        remus_ckpt::fifo::open_writer(stats).unwrap().is_some()
    });
    std::fs::OpenOptions::new().write(true).open(stats).unwrap()
}

#[test]
fn a_regular_file_at_the_stats_path_is_reported_once_and_never_read() {
    // Before: watch re-read the file in a loop, hundreds of thousands of
    // stderr lines and duplicate CSV rows a second.
    let dir = tempfile::tempdir().unwrap();
    let (stats, csv, log) = (
        dir.path().join("stats"),
        dir.path().join("w.csv"),
        dir.path().join("stderr"),
    );
    let child = spawn_watch(&stats, &csv, &log);
    drop(writer_once_open(&stats));
    std::fs::remove_file(&stats).unwrap();
    std::fs::write(&stats, format!("{}garbage\n", record_line(1))).unwrap();
    let logged = || std::fs::read_to_string(&log).unwrap();
    wait_for("the not-a-FIFO report", || logged().contains("not a FIFO"));
    // Three re-checks' worth of time: still one report, nothing read.
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(logged().matches("not a FIFO").count(), 1, "{}", logged());
    assert_eq!(
        read_csv(&csv).unwrap().len(),
        0,
        "the regular file was read"
    );

    // A FIFO again: records flow again.
    std::fs::remove_file(&stats).unwrap();
    remus_ckpt::fifo::ensure_private_fifo(&stats).unwrap();
    let mut w = writer_once_open(&stats);
    use std::io::Write;
    w.write_all(record_line(2).as_bytes()).unwrap();
    wait_for("the FIFO's record in the CSV", || {
        read_csv(&csv).map_or(0, |r| r.len()) == 1
    });
    drop(w);
    let out = sigint_and_wait(child);
    let stderr = logged();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("is a FIFO again"), "{stderr}");
    assert!(stderr.lines().count() < 20, "{stderr}");
    assert_eq!(read_csv(&csv).unwrap()[0].seq, 2);
}

#[test]
fn twenty_megabytes_of_garbage_on_the_fifo_cost_few_stderr_lines() {
    // Before: one stderr line per garbage line.
    let dir = tempfile::tempdir().unwrap();
    let (stats, csv, log) = (
        dir.path().join("stats"),
        dir.path().join("w.csv"),
        dir.path().join("stderr"),
    );
    let child = spawn_watch(&stats, &csv, &log);
    let mut w = writer_once_open(&stats);
    use std::io::Write;
    let chunk: String = (0..1000)
        .map(|i| format!("garbage {i} and more garbage\n"))
        .collect();
    let mut sent = 0;
    while sent < 20 << 20 {
        w.write_all(chunk.as_bytes()).unwrap();
        sent += chunk.len();
    }
    w.write_all(record_line(3).as_bytes()).unwrap();
    wait_for("the record after the garbage", || {
        read_csv(&csv).map_or(0, |r| r.len()) == 1
    });
    drop(w);
    let out = sigint_and_wait(child);
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.lines().count() < 100,
        "{} lines",
        stderr.lines().count()
    );
    assert!(stderr.contains("more malformed lines"), "{stderr}");
}

#[test]
fn an_unwritable_csv_fails_watch_naming_the_error() {
    // Before: `--csv /dev/full` ran on and failed silently until exit.
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["watch", "--quiet", "--csv", "/dev/full", "--stats"])
        .arg(dir.path().join("stats"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("watch kept running with --csv /dev/full");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("/dev/full") && stderr.contains("No space left"),
        "{stderr}"
    );
}
