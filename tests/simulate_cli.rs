//! End to end: the `remus-ckpt simulate` binary, as a user runs it.
//!
//! The real-time test is the whole loop: a simulated save helper calling
//! the C library, records through a real FIFO, the controller steering
//! through the real control FIFO, the CSV on disk. It checks what the
//! controller is for (README.md): one row per checkpoint, the interval
//! falling when the dirty rate rises and rising when it falls, and sizes
//! kept under Lmax.

use std::path::Path;
use std::process::Command;

use remus_ckpt::row::read_csv;
use remus_ckpt::row::Row;

const BIN: &str = env!("CARGO_BIN_EXE_remus-ckpt");
const LMAX: u64 = 16 << 20;

fn simulate(dir: &Path, csv: &str, extra: &[&str]) -> (Vec<Row>, String) {
    let out = Command::new(BIN)
        .current_dir(dir)
        .args(["simulate", "--quiet", "--csv", csv])
        .args(extra)
        .output()
        .expect("run remus-ckpt simulate");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "simulate failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    (read_csv(dir.join(csv)).expect("read the CSV"), stdout)
}

fn phase_of(row: &Row, phase_s: f64) -> u64 {
    remus_ckpt::units::round_to_u64_saturating((row.t_s / phase_s).floor())
}

/// Checks the phases run: interval down in high phases, up in low ones,
/// and sizes under Lmax once the policy had a few checkpoints to react.
fn check_phases(rows: &[Row], phase_s: f64, live_copy_s: f64) {
    // seq strictly increasing, no gaps, live round first.
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.seq, i as u64, "seq gap or reorder at row {i}");
    }
    assert_eq!(rows[0].live, 1);

    // Phases are in workload time (from the start of the live copy).
    let wl = |r: &Row| Row {
        t_s: r.t_s + live_copy_s,
        ..r.clone()
    };
    let phases: Vec<Vec<Row>> = {
        let mut v: Vec<Vec<Row>> = Vec::new();
        for r in rows.iter().skip(1).map(wl) {
            let p = usize::try_from(phase_of(&r, phase_s)).unwrap();
            while v.len() <= p {
                v.push(Vec::new());
            }
            v[p].push(r);
        }
        v
    };
    assert!(
        phases.len() >= 3,
        "need low, high, low phases; got {}",
        phases.len()
    );
    let median_interval = |p: &[Row]| {
        let mut v: Vec<u64> = p
            .iter()
            .skip(p.len() / 2)
            .map(|r| r.next_interval_ms)
            .collect();
        v.sort_unstable();
        v[v.len() / 2]
    };
    let (low1, high, low2) = (
        median_interval(&phases[0]),
        median_interval(&phases[1]),
        median_interval(&phases[2]),
    );
    assert!(
        high * 2 < low1,
        "interval should fall in the high phase: low {low1} ms, high {high} ms"
    );
    assert!(
        low2 > high * 2,
        "interval should rise again in the low phase: high {high} ms, low {low2} ms"
    );

    // >= 90 % of sizes <= Lmax after the first few checkpoints of each phase.
    let settled: Vec<&Row> = phases.iter().flat_map(|p| p.iter().skip(5)).collect();
    let ok = settled.iter().filter(|r| r.size_bytes <= LMAX).count();
    let pct = 100.0 * ok as f64 / settled.len() as f64;
    assert!(
        pct >= 90.0,
        "only {pct:.1}% of {} settled sizes <= Lmax",
        settled.len()
    );

    // Rows are internally consistent.
    for r in rows.iter().skip(1) {
        assert!(r.bytes_sent >= r.pages_sent * 4096);
        assert!(r.pause_ms > 0.0 && r.pause_ms <= r.checkpoint_ms);
        assert!(
            r.period_ms + 1.0 >= r.interval_ms as f64,
            "period shorter than the paced interval: {r:?}"
        );
        assert_eq!(r.size_bytes, r.bytes_sent);
    }
}

#[test]
fn realtime_phases_threshold_steers_through_the_c_library() {
    let dir = tempfile::tempdir().unwrap();
    // 1 GiB at 1 GiB/s: the live copy takes ~1 s of workload time.
    let (rows, stdout) = simulate(
        dir.path(),
        "rt.csv",
        &[
            "--workload",
            "phases",
            "--policy",
            "threshold",
            "--phase",
            "5s",
            "--duration",
            "15s",
        ],
    );
    let live_copy_s = 1.0;
    check_phases(&rows, 5.0, live_copy_s);
    assert!(stdout.contains("<=Lmax"), "summary table printed: {stdout}");
    assert!(rows.iter().all(|r| r.dropped == 0), "no record lost");
}

#[test]
fn fast_mode_is_deterministic_and_steers_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--fast",
        "--workload",
        "phases",
        "--phase",
        "10s",
        "--duration",
        "40s",
        "--seed",
        "3",
    ];
    let (a, _) = simulate(dir.path(), "a.csv", &args);
    let (b, _) = simulate(dir.path(), "b.csv", &args);
    assert_eq!(a, b, "same seed, same run");
    check_phases(&a, 10.0, 1.0);
    let (c, _) = simulate(
        dir.path(),
        "c.csv",
        &[
            "--fast",
            "--workload",
            "phases",
            "--duration",
            "40s",
            "--seed",
            "4",
        ],
    );
    assert_ne!(a, c, "another seed, another guest");
}

#[test]
fn compare_gives_every_policy_the_same_guest() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args([
            "simulate",
            "--workload",
            "bursty",
            "--duration",
            "20s",
            "--out-dir",
            "cmp",
            "--csv",
            "unused.csv",
            "--compare",
            "fixed:25ms,fixed:200ms,threshold,target",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    for name in ["fixed:25ms", "fixed:200ms", "threshold", "target"] {
        assert!(table.contains(name), "{name} missing from:\n{table}");
    }
    let cmp = dir.path().join("cmp");
    assert!(cmp.join("report.md").exists());
    let png = std::fs::read(cmp.join("compare.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    // Each compared run is exactly the standalone run of that policy on
    // the same seed: compare adds nothing and changes nothing. (That the
    // guest is the same function of time whatever the policy is checked
    // in the workload's unit tests.)
    for (file, policy) in [
        (
            "fixed-25ms.csv",
            &["--policy", "fixed", "--interval", "25ms"][..],
        ),
        (
            "fixed-200ms.csv",
            &["--policy", "fixed", "--interval", "200ms"][..],
        ),
        ("threshold.csv", &["--policy", "threshold"][..]),
        ("target.csv", &["--policy", "target"][..]),
    ] {
        let mut args = vec!["--fast", "--workload", "bursty", "--duration", "20s"];
        args.extend_from_slice(policy);
        let (alone, _) = simulate(dir.path(), "alone.csv", &args);
        assert_eq!(
            read_csv(cmp.join(file)).unwrap(),
            alone,
            "{file} differs from its standalone run"
        );
    }
}

#[test]
fn bad_arguments_are_named() {
    let out = Command::new(BIN)
        .args(["simulate", "--lmin", "32MiB", "--lmax", "16MiB"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--lmin"));
    let out = Command::new(BIN)
        .args(["simulate", "--lmax", "16 parsecs"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown size unit"));
    let out = Command::new(BIN)
        .args(["simulate", "--disk", "drbd:r0"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("drbd:sim"));
}

#[test]
fn simulated_drbd_disk_counts_and_total_metric_steers_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let common = [
        "--fast",
        "--workload",
        "phases",
        "--phase",
        "10s",
        "--duration",
        "30s",
        "--disk",
        "drbd:sim",
        "--disk-rate",
        "128MiB",
    ];
    let (wire, _) = simulate(
        dir.path(),
        "wire.csv",
        &[&common[..], &["--size-metric", "wire"]].concat(),
    );
    let (total, _) = simulate(
        dir.path(),
        "total.csv",
        &[&common[..], &["--size-metric", "total"]].concat(),
    );

    // disk_bytes is in the CSV, and heavier in the high phase.
    let per_s = |rows: &[Row], from: f64, to: f64| {
        let sel: Vec<&Row> = rows
            .iter()
            .filter(|r| r.live == 0 && r.t_s >= from && r.t_s < to)
            .collect();
        sel.iter().map(|r| r.disk_bytes as f64).sum::<f64>() / (to - from)
    };
    let (low, high) = (per_s(&total, 2.0, 8.0), per_s(&total, 12.0, 18.0));
    assert!(low > 0.0, "disk bytes in the low phase");
    assert!(
        high > 10.0 * low,
        "disk-heavy high phase: {high} vs {low} bytes/s"
    );
    for r in total.iter().filter(|r| r.live == 0) {
        assert_eq!(
            r.size_bytes,
            r.bytes_sent + r.disk_bytes,
            "total = wire + disk"
        );
    }
    for r in wire.iter().filter(|r| r.live == 0) {
        assert_eq!(r.size_bytes, r.bytes_sent);
    }

    // Counting the disk, the policy checkpoints more often in the high phase.
    let median_interval = |rows: &[Row]| {
        let mut v: Vec<u64> = rows
            .iter()
            .filter(|r| r.t_s >= 12.0 && r.t_s < 18.0)
            .map(|r| r.next_interval_ms)
            .collect();
        v.sort_unstable();
        v[v.len() / 2]
    };
    let (mi_wire, mi_total) = (median_interval(&wire), median_interval(&total));
    assert!(
        mi_total < mi_wire,
        "total should shorten the interval: wire {mi_wire} ms, total {mi_total} ms"
    );
}

/// A 5 s trace in `dir`: 100 ms checkpoints, 1000 pages/s for 2.5 s, then
/// 20 000 pages/s.
fn five_second_trace(dir: &Path) -> String {
    let mut csv = String::from(
        "seq,t_s,dirty_pages,pages_sent,bytes_sent,disk_bytes,size_bytes,\
         pause_ms,checkpoint_ms,period_ms,interval_ms,dropped\n\
         0,0.0,5,5,20000,0,20000,1,1,0,100,0\n",
    );
    for i in 1..=50 {
        let pages = if i <= 25 { 100 } else { 2000 };
        csv.push_str(&format!(
            "{i},{:.1},{pages},{pages},0,0,0,1,1,100,100,0\n",
            f64::from(i) * 0.1
        ));
    }
    let path = dir.join("five.csv");
    std::fs::write(&path, csv).unwrap();
    format!("trace:{}", path.display())
}

#[test]
fn a_trace_ends_the_run_or_loops() {
    let dir = tempfile::tempdir().unwrap();
    let trace = five_second_trace(dir.path());
    // 64 MiB at 1 GiB/s: the live copy takes 62.5 ms of trace time.
    let common = [
        "--fast",
        "--workload",
        &trace,
        "--noise",
        "0",
        "--memory",
        "64MiB",
        "--policy",
        "fixed",
        "--interval",
        "100ms",
        "--duration",
        "60s",
    ];
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args(["simulate", "--quiet", "--csv", "once.csv"])
        .args(common)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the trace covers 5.0s, so the run stops there"),
        "{stderr}"
    );
    let once = read_csv(dir.path().join("once.csv")).unwrap();
    let last = once.last().unwrap().t_s + 0.0625;
    // The last suspend is at most one interval past the trace's end.
    assert!((4.8..=5.1).contains(&last), "last suspend at {last} s");

    let (looped, _) = simulate(dir.path(), "loop.csv", &[&common[..], &["--loop"]].concat());
    let last = looped.last().unwrap().t_s + 0.0625;
    assert!((59.8..=60.1).contains(&last), "last suspend at {last} s");
    // Every lap replays the trace: low in its first half, 20x in its second.
    let rate = |from: f64, to: f64| {
        let sel: Vec<&Row> = looped
            .iter()
            .filter(|r| r.live == 0 && (from..to).contains(&(r.t_s + 0.0625)))
            .collect();
        assert!(sel.len() >= 10, "{} rows in [{from}, {to})", sel.len());
        sel.iter().map(|r| r.dirty_pages as f64).sum::<f64>()
            / sel.iter().map(|r| r.period_ms / 1e3).sum::<f64>()
    };
    for lap in 0..12 {
        let t = f64::from(lap) * 5.0;
        let (low, high) = (rate(t + 0.5, t + 2.0), rate(t + 3.0, t + 4.5));
        // Per period, so a little below the trace's rates: the guest is
        // paused for part of each period.
        assert!((800.0..=1000.0).contains(&low), "lap {lap}: low {low}");
        assert!(
            (15_000.0..=20_000.0).contains(&high),
            "lap {lap}: high {high}"
        );
    }
}

#[test]
fn compare_with_oracle_sweep_and_byterate() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args([
            "simulate",
            "--workload",
            "phases",
            "--duration",
            "40s",
            "--out-dir",
            "cmp",
            "--compare",
            "sweep:25ms..800ms:6,threshold,target,byterate,oracle",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Against the oracle"), "{stdout}");
    assert!(stdout.contains("% of oracle"), "{stdout}");
    let md = std::fs::read_to_string(dir.path().join("cmp/report.md")).unwrap();
    assert!(
        md.contains("| run | ckpts | ckpts/oracle | % of oracle |"),
        "{md}"
    );

    // 25 ms .. 800 ms in 6 points: x2 per step.
    let fixed = ["25", "50", "100", "200", "400", "800"];
    let summary = |file: &str| {
        let rows = read_csv(dir.path().join("cmp").join(file)).unwrap();
        remus_ckpt::report::summarize(file, &rows, 4 << 20, LMAX)
    };
    let oracle = summary("oracle.csv");
    assert_eq!(oracle.pct_at_most_lmax, Some(100.0));
    let mut safe = 0;
    for ms in fixed {
        let s = summary(&format!("fixed-{ms}ms.csv"));
        let ratio = s.checkpoints as f64 / oracle.checkpoints as f64;
        // The ratio column says the same as the CSVs.
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("fixed:{ms}ms ")) && l.split_whitespace().count() == 5)
            .unwrap_or_else(|| panic!("no oracle row for fixed:{ms}ms in\n{stdout}"));
        assert!(row.contains(&format!("{ratio:.2}")), "{row} vs {ratio:.2}");
        if s.pct_at_most_lmax == Some(100.0) {
            safe += 1;
            assert!(ratio >= 1.0, "fixed:{ms}ms beats the oracle: {ratio}");
        }
    }
    assert!(safe >= 2, "{safe} safe fixed intervals");
    for file in ["threshold.csv", "target.csv", "byterate.csv"] {
        assert!(summary(file).checkpoints > 0, "{file}");
    }
}
