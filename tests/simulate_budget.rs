//! End to end: `remus-ckpt simulate --budget-pages`, the dirty-page
//! budget of the C gate driven by the simulated guest's dirty count, in
//! virtual time (the C gate on an injected clock) and in real time
//! (records with trigger= keys through the real stats FIFO).

use std::path::Path;
use std::process::Command;

use remus_ckpt::row::read_csv;
use remus_ckpt::row::Row;

const BIN: &str = env!("CARGO_BIN_EXE_remus-ckpt");
const LMAX: u64 = 16 << 20;
/// Pages of 4 KiB + 8 bytes of pfn, plus ~5.5 KB of records, under Lmax.
const BUDGET_PAGES: u64 = 4000;
/// 1 GiB at 1 GiB/s: the live round takes ~1 s of workload time.
const LIVE_COPY_S: f64 = 1.0;

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

/// Whether a row's checkpoint started in a high phase of `phases`.
fn in_high_phase(row: &Row, phase_s: f64) -> bool {
    remus_ckpt::units::round_to_u64_saturating(((row.t_s + LIVE_COPY_S) / phase_s).floor()) % 2 == 1
}

#[test]
fn fast_phases_with_a_fixed_budget_stay_under_lmax() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--fast",
        "--workload",
        "phases",
        "--phase",
        "10s",
        "--duration",
        "60s",
        "--policy",
        "fixed",
        "--interval",
        "200ms",
        "--budget-pages",
        "4000",
    ];
    let (rows, stdout) = simulate(dir.path(), "budget.csv", &args);
    let (again, _) = simulate(dir.path(), "again.csv", &args);
    assert_eq!(
        rows, again,
        "same seed, same run: virtual time is deterministic"
    );

    let paced: Vec<&Row> = rows.iter().filter(|r| r.live == 0).collect();
    assert!(paced.len() > 200, "{} checkpoints", paced.len());
    // >= 99 % of checkpoints <= Lmax after the first few.
    let settled = &paced[5..];
    let ok = settled.iter().filter(|r| r.size_bytes <= LMAX).count();
    assert!(
        ok * 100 >= settled.len() * 99,
        "only {ok} of {} checkpoints <= Lmax",
        settled.len()
    );

    // High phases: the budget ends the wait (the interval would give
    // 10000 pages at 50000 pages/s); low phases: the interval caps it.
    let high: Vec<&&Row> = settled.iter().filter(|r| in_high_phase(r, 10.0)).collect();
    let low: Vec<&&Row> = settled.iter().filter(|r| !in_high_phase(r, 10.0)).collect();
    let budget_high = high.iter().filter(|r| r.trigger == "budget").count();
    assert!(
        budget_high * 10 >= high.len() * 9,
        "trigger=budget in {budget_high} of {} high-phase checkpoints",
        high.len()
    );
    let interval_low = low.iter().filter(|r| r.trigger == "interval").count();
    assert!(
        interval_low * 10 >= low.len() * 9,
        "trigger=interval in {interval_low} of {} low-phase checkpoints",
        low.len()
    );
    for r in &paced {
        assert_eq!(r.budget_pages, BUDGET_PAGES, "{r:?}");
        assert!(r.dirty_at_trigger <= r.dirty_pages, "{r:?}");
        if r.trigger == "budget" {
            assert!(r.dirty_pages <= BUDGET_PAGES + 100, "{r:?}");
        }
        // Probes never closer than 1 ms: at most wait / 1 ms + 1.
        assert!(
            r.probes as f64 <= r.gate_wait_ms + 1.0,
            "{} probes in {} ms",
            r.probes,
            r.gate_wait_ms
        );
        // 20 us of guest pause per probe (the default --probe-cost).
        assert!((r.probe_ms - r.probes as f64 * 0.02).abs() < 1e-6, "{r:?}");
    }
    assert!(
        stdout.contains("budget: gates ended by budget"),
        "probe summary printed: {stdout}"
    );
    assert!(stdout.contains("ms of guest pause in probes"), "{stdout}");

    // Without a budget: the same gate, no probe, no budget columns.
    let (plain, _) = simulate(dir.path(), "plain.csv", &args[..args.len() - 2]);
    assert!(plain
        .iter()
        .all(|r| r.probes == 0 && r.trigger.is_empty() && r.budget_pages == 0));
    assert!(
        plain.iter().filter(|r| r.size_bytes > LMAX).count() > 50,
        "without the budget, fixed 200ms exceeds Lmax in high phases"
    );
}

#[test]
fn probe_cost_is_charged_per_probe() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, _) = simulate(
        dir.path(),
        "cost.csv",
        &[
            "--fast",
            "--workload",
            "steady",
            "--rate",
            "40000",
            "--duration",
            "10s",
            "--policy",
            "fixed",
            "--interval",
            "500ms",
            "--budget-pages",
            "2000",
            "--probe-cost",
            "1ms",
        ],
    );
    let paced: Vec<&Row> = rows.iter().filter(|r| r.live == 0).collect();
    assert!(paced.iter().all(|r| r.probes > 0));
    for r in &paced {
        assert!((r.probe_ms - r.probes as f64).abs() < 1e-6, "{r:?}");
        // min_period = 100 x 1 ms: at most one probe per 100 ms waited.
        assert!(
            r.probes as f64 <= r.gate_wait_ms / 100.0 + 1.0,
            "{} probes in {} ms",
            r.probes,
            r.gate_wait_ms
        );
    }
}

#[test]
fn bad_budget_is_named() {
    let out = Command::new(BIN)
        .args(["simulate", "--fast", "--budget-pages", "1099511627777"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--budget-pages"));
}

#[test]
fn realtime_records_carry_trigger_keys_through_the_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, _) = simulate(
        dir.path(),
        "rt.csv",
        &[
            "--workload",
            "phases",
            "--phase",
            "2s",
            "--duration",
            "5s",
            "--policy",
            "fixed",
            "--interval",
            "200ms",
            "--budget-pages",
            "4000",
        ],
    );
    let paced: Vec<&Row> = rows.iter().filter(|r| r.live == 0).collect();
    assert!(paced.len() > 5, "{} checkpoints", paced.len());
    // The budget reaches the C gate through the control FIFO, and the
    // record keys come back through the stats FIFO: every paced row has
    // them once the budget arrived (the first gate may precede it).
    let with_keys: Vec<&&Row> = paced.iter().filter(|r| r.budget_pages != 0).collect();
    assert!(with_keys.len() + 2 >= paced.len(), "{paced:?}");
    for r in &with_keys {
        assert_eq!(r.budget_pages, BUDGET_PAGES);
        assert!(
            ["budget", "interval", "control", "none"].contains(&r.trigger.as_str()),
            "{r:?}"
        );
    }
    // 50000 pages/s in the high phase (2-4 s of workload time): 200 ms
    // would be 10000 pages; the budget ends those waits.
    let budget = with_keys
        .iter()
        .filter(|r| in_high_phase(r, 2.0) && r.trigger == "budget")
        .count();
    assert!(budget > 0, "no trigger=budget in the high phase: {paced:?}");
    assert!(with_keys.iter().any(|r| r.probes > 0));
}

/// Paced rows after the first `skip`, and how many of them are <= Lmax.
fn settled_within_lmax(rows: &[Row], skip: usize) -> (usize, usize) {
    let paced: Vec<&Row> = rows.iter().filter(|r| r.live == 0).skip(skip).collect();
    let ok = paced.iter().filter(|r| r.size_bytes <= LMAX).count();
    (ok, paced.len())
}

#[test]
fn budget_policy_on_phases_keeps_lmax_with_fewer_checkpoints_than_threshold() {
    // The budget policy's targets in docs/benchmarks.md ("Targets: met or
    // missed"), on fast mode, seed 1, the default 30 s.
    let dir = tempfile::tempdir().unwrap();
    let run = |policy: &str| {
        let csv = format!("{policy}.csv");
        let args = ["--fast", "--workload", "phases", "--policy", policy];
        simulate(dir.path(), &csv, &args)
    };
    let (budget, stdout) = run("budget");
    let (threshold, _) = run("threshold");
    let (ok, n) = settled_within_lmax(&budget, 5);
    assert!(n > 50, "{n} checkpoints");
    assert!(ok * 100 >= n * 99, "only {ok} of {n} checkpoints <= Lmax");
    let count = |rows: &[Row]| rows.iter().filter(|r| r.live == 0).count();
    assert!(
        count(&budget) < count(&threshold),
        "budget took {} checkpoints, threshold {}",
        count(&budget),
        count(&threshold)
    );
    // The policy commands the budget and tmax: every paced row shows a
    // budget and the 2 s cap, and most waits end at the budget.
    let paced: Vec<&Row> = budget.iter().filter(|r| r.live == 0).collect();
    assert!(paced
        .iter()
        .all(|r| r.budget_pages > 0 && r.interval_ms == 2000));
    let by_budget = paced.iter().filter(|r| r.trigger == "budget").count();
    assert!(
        by_budget * 10 >= paced.len() * 9,
        "{by_budget} of {}",
        paced.len()
    );
    // Each budget fits Lmax: at most (16 MiB - 5632) / 4104 = 4086 pages.
    assert!(paced.iter().all(|r| r.budget_pages <= 4086), "{paced:?}");
    assert!(stdout.contains("budget: gates ended by budget"), "{stdout}");
}

#[test]
fn compare_with_budget_and_oracle_prints_the_oracle_table() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args([
            "simulate",
            "--workload",
            "phases",
            "--compare",
            "fixed:100ms,threshold,target,budget,oracle",
            "--out-dir",
            "cmp",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = stdout
        .split("Against the oracle:")
        .nth(1)
        .unwrap_or_else(|| panic!("no oracle table: {stdout}"));
    assert!(table.contains("% of oracle"), "{table}");
    let row = |label: &str| -> Vec<String> {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(label))
            .unwrap_or_else(|| panic!("no {label} row: {table}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let (budget, oracle, threshold) = (row("budget"), row("oracle"), row("threshold"));
    let ckpts = |r: &[String]| r[1].parse::<u64>().unwrap();
    // Fewer checkpoints than threshold, never fewer than the oracle.
    assert!(ckpts(&budget) < ckpts(&threshold), "{table}");
    assert!(ckpts(&budget) >= ckpts(&oracle), "{table}");
    assert!(dir.path().join("cmp/budget.csv").exists());
}

#[test]
fn budget_policy_takes_no_fixed_budget() {
    for extra in [
        &["--policy", "budget"][..],
        &["--compare", "threshold,budget"][..],
    ] {
        let out = Command::new(BIN)
            .args(["simulate", "--fast", "--budget-pages", "4000"])
            .args(extra)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{extra:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--budget-pages"), "{stderr}");
    }
}

#[test]
fn realtime_budget_policy_commands_reach_the_save_side() {
    // Real time: the policy's budget_pages lines cross the real control
    // FIFO to the C gate, which echoes the budget in its records.
    let dir = tempfile::tempdir().unwrap();
    let (rows, _) = simulate(
        dir.path(),
        "rt-budget.csv",
        &[
            "--workload",
            "phases",
            "--phase",
            "2s",
            "--duration",
            "5s",
            "--policy",
            "budget",
        ],
    );
    let paced: Vec<&Row> = rows.iter().filter(|r| r.live == 0).collect();
    assert!(paced.len() > 5, "{} checkpoints", paced.len());
    let with_budget: Vec<&&Row> = paced.iter().filter(|r| r.budget_pages != 0).collect();
    assert!(with_budget.len() + 2 >= paced.len(), "{paced:?}");
    // The budget the save side reports is one the policy chose: below
    // the 4086 pages of Lmax, never 0.
    assert!(
        with_budget.iter().all(|r| r.budget_pages <= 4086),
        "{paced:?}"
    );
    // The interval the save side has is the policy's tmax.
    assert!(
        paced.iter().skip(2).all(|r| r.interval_ms == 2000),
        "{paced:?}"
    );
    let by_budget = with_budget.iter().filter(|r| r.trigger == "budget").count();
    assert!(by_budget > 0, "no wait ended by the budget: {paced:?}");
}
