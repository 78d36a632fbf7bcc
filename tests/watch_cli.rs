//! `remus-ckpt watch` against a save side made of the real C library: the
//! test plays libxl-save-helper (gate, marks, emit) while the binary
//! consumes, steers and writes the CSV, then stops on SIGINT keeping
//! every row.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use remus_ckpt::ffi::{Ckpt, CkptStream, Mark};
use remus_ckpt::report::read_csv;

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
    let start = Instant::now();
    let _probe = loop {
        if let Ok(Some(w)) = remus_ckpt::fifo::open_writer(&stats) {
            break w;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "watch never opened {}",
            stats.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    };

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
    // from 100 ms towards tmin (10 ms) and the gate must follow.
    let mut records = Vec::new();
    for i in 0..12 {
        ckpt.gate(i == 0);
        ckpt.mark(Mark::Suspended);
        ckpt.dirty(1024, 0);
        ckpt.wrote(1024 * 4104, 1024);
        ckpt.mark(Mark::Sent);
        ckpt.mark(Mark::Resumed);
        ckpt.emit();
        records.push(ckpt.last().unwrap());
        // Give the consumer time to answer, as a real checkpoint would.
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(ckpt);
    // Let the last rows reach the CSV before stopping.
    let start = Instant::now();
    while read_csv(&csv).map_or(0, |r| r.len()) < 12 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }

    // SAFETY: kill has no memory-safety preconditions; the pid is our
    // child, not yet reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "watch failed: {stderr}");
    // The live round is not counted as a checkpoint.
    assert!(stderr.contains("11 checkpoints, 11 above Lmax"), "{stderr}");
    assert!(stderr.contains("0 records lost"), "{stderr}");

    let rows = read_csv(&csv).unwrap();
    assert_eq!(rows.len(), 12, "one row per checkpoint");
    assert!(rows.iter().enumerate().all(|(i, r)| r.seq == i as u64));
    // The controller halved the interval; the save side received it and
    // paced for it.
    let commanded: Vec<u32> = records.iter().map(|r| r.cmd_interval_ms).collect();
    assert_eq!(
        commanded[0], 0,
        "nothing commanded before the first checkpoint"
    );
    assert!(
        commanded.contains(&50) && commanded.contains(&25),
        "intervals seen by the C side: {commanded:?}"
    );
    assert_eq!(
        *commanded.last().unwrap(),
        10,
        "clamped at tmin: {commanded:?}"
    );
    let paced: Vec<u32> = records.iter().map(|r| r.interval_ms).collect();
    assert!(
        paced.iter().skip(2).all(|ms| *ms > 0),
        "the gate paced: {paced:?}"
    );
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
