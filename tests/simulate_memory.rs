//! Memory stays bounded however long the run: `simulate --fast` and the
//! summary it prints (the same streaming summary `report` uses) must not
//! hold a run's rows in memory. Before the summary streamed, it read the
//! whole CSV back: ~150 bytes per row, 150 MB at 10^6 checkpoints and
//! 1.5 GB at 10^7.
//!
//! The figure is the children's peak RSS from getrusage(RUSAGE_CHILDREN)
//! after they exit (VmHWM of the largest child), so it covers the run to
//! its very end. This file holds one test so that no other child of this
//! test process enters that maximum.
//!
//! Sizes are chosen for CI (a debug build on a loaded 2-core machine): the
//! summary is checked on 10^6 rows (where reading them all would need
//! about three times the bound), the simulator end to end on 5 x 10^4
//! checkpoints. The 10^7-checkpoint release run is in docs/benchmarks.md.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::process::Command;

/// The bound: far above what a streaming run needs (under 10 MB), far
/// below what holding 10^6 rows takes.
const RSS_LIMIT_KB: i64 = 50 * 1024;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_remus-ckpt"))
}

/// Peak RSS (KB) of the largest child this process has waited for.
fn children_max_rss_kb() -> i64 {
    // SAFETY: rusage is plain data that getrusage fills in; an all-zero
    // value is a valid initial state.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: usage is a valid, writable rusage for the call.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
    usage.ru_maxrss
}

fn lines_of(path: &Path) -> usize {
    let file = std::fs::File::open(path).unwrap();
    BufReader::new(file).lines().count()
}

/// A run CSV of `rows` checkpoints, written the way the CSV sink writes.
fn write_big_csv(path: &Path, rows: u64) {
    let mut out = BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(
        out,
        "seq,t_s,dirty_pages,pages_sent,bytes_sent,disk_bytes,size_bytes,pause_ms,\
         checkpoint_ms,period_ms,interval_ms,dropped,live,memory_bytes,gate_wait_ms,\
         next_interval_ms,drbd_deferred,drbd_checkpoints"
    )
    .unwrap();
    for seq in 0..rows {
        let size = 4096 * (1000 + seq % 5000);
        writeln!(
            out,
            "{seq},{:.3},{},{},{size},0,{size},{}.25,{}.5,100.0,100,0,{},{size},0.0,100,,",
            seq as f64 * 0.1,
            size / 4096,
            size / 4096,
            1 + seq % 37,
            2 + seq % 41,
            u8::from(seq == 0)
        )
        .unwrap();
    }
    out.flush().unwrap();
}

#[test]
fn summary_and_simulate_stay_under_50_mb() {
    let dir = tempfile::tempdir().unwrap();

    // The summary on 10^6 rows: `report` runs the same summarize_csv that
    // `simulate` prints its table with.
    let big = dir.path().join("big.csv");
    write_big_csv(&big, 1_000_000);
    let out = bin()
        .args(["report", "--format", "csv"])
        .arg(&big)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(",999999,"), "all checkpoints counted: {text}");
    let report_rss_kb = children_max_rss_kb();
    assert!(
        report_rss_kb < RSS_LIMIT_KB,
        "report on 10^6 rows peaked at {report_rss_kb} KB (limit {RSS_LIMIT_KB} KB)"
    );
    std::fs::remove_file(&big).unwrap();

    // simulate --fast end to end, summary included: ~4 checkpoints per ms
    // of virtual time with a 1 ms fixed interval and free checkpoints.
    let csv = dir.path().join("sim.csv");
    let out = bin()
        .args([
            "simulate",
            "--fast",
            "--quiet",
            "--policy",
            "fixed",
            "--interval",
            "1ms",
            "--workload",
            "steady",
            "--rate",
            "100",
            "--suspend-cost",
            "0ms",
            "--resume-cost",
            "0ms",
            "--commit-cost",
            "0ms",
            "--duration",
            "50s",
            "--csv",
        ])
        .arg(&csv)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = lines_of(&csv) - 1;
    assert!(rows >= 45_000, "only {rows} checkpoints simulated");
    assert!(String::from_utf8_lossy(&out.stdout).contains("<=Lmax"));
    let rss_kb = children_max_rss_kb();
    assert!(
        rss_kb < RSS_LIMIT_KB,
        "simulate of {rows} checkpoints peaked at {rss_kb} KB (limit {RSS_LIMIT_KB} KB)"
    );
    eprintln!(
        "peak RSS: report 10^6 rows {report_rss_kb} KB, simulate {rows} checkpoints {rss_kb} KB"
    );
}
