//! The e2e verdict (src/bin/e2e-check) on a recorded real run: the one in
//! tests/fixtures/e2e-run.tar.gz, trimmed from a `scripts/e2e-xen` run on
//! this machine by `scripts/e2e-xen.d/make-fixture` (see
//! docs/real-xen.md). It must pass as recorded, and fail when one check
//! is broken, when a stage left no data and when a stage is unknown.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A whole default run (stages A, C, D and E with real DRBD 8.4).
const FIXTURE: &str = "tests/fixtures/e2e-run.tar.gz";

/// Unpacks the fixture into a fresh directory; returns (guard, run dir).
fn unpack() -> (tempfile::TempDir, PathBuf) {
    unpack_from(FIXTURE)
}

fn unpack_from(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&fixture)
        .arg("-C")
        .arg(tmp.path())
        .status()
        .expect("run tar");
    assert!(status.success(), "tar -xzf {} failed", fixture.display());
    let run = tmp.path().join("run");
    assert!(run.join("out").is_dir(), "the fixture has no run/out");
    (tmp, run)
}

struct Verdict {
    code: i32,
    stdout: String,
}

fn check(run: &Path, broken: Option<&str>) -> Verdict {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_e2e-check"));
    cmd.arg(run).env_remove("E2E_CHECK_BREAK");
    if let Some(b) = broken {
        cmd.env("E2E_CHECK_BREAK", b);
    }
    let out = cmd.output().expect("run e2e-check");
    Verdict {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
    }
}

fn last_line(s: &str) -> &str {
    s.lines().last().unwrap_or("")
}

fn set_stages(run: &Path, stages: &str) {
    let p = run.join("out/scenario.env");
    let text = std::fs::read_to_string(&p).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("STAGES=") {
                format!("STAGES=\"{stages}\"\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&p, text).unwrap();
}

#[test]
fn the_recorded_run_passes_with_every_check_once() {
    let (_tmp, run) = unpack();
    let v = check(&run, None);
    assert_eq!(v.code, 0, "{}", v.stdout);
    assert!(
        last_line(&v.stdout).starts_with("checks: all "),
        "{}",
        v.stdout
    );
    assert!(!v.stdout.contains("FAIL"), "{}", v.stdout);
    // Every stage of the run reported; each check name appears once.
    let oks: Vec<&str> = v.stdout.lines().filter(|l| l.starts_with("ok: ")).collect();
    for stage in ["run", "a", "c", "d", "e"] {
        assert!(
            oks.iter().any(|l| l.starts_with(&format!("ok: {stage}: "))),
            "no check of stage {stage}:\n{}",
            v.stdout
        );
    }
    let mut names: Vec<String> = oks
        .iter()
        .map(|l| l.splitn(4, ": ").take(3).collect::<Vec<_>>().join(": "))
        .collect();
    let n = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n, "a check reported twice");
    // The operator's path: the .deb installed in dom0, stage A's endpoint.
    for name in ["ok: run: package: ", "ok: a: metrics: "] {
        assert!(v.stdout.contains(name), "no {name}:\n{}", v.stdout);
    }
    let json = std::fs::read_to_string(run.join("summary.json")).expect("summary.json written");
    assert!(json.contains("\"verdict\": \"PASS\""), "{json}");
    for key in [
        "\"overhead\"",
        "\"share_within_lmax\"",
        "\"stage_secs\"",
        "\"backup_running\"",
    ] {
        assert!(json.contains(key), "summary.json lacks {key}: {json}");
    }
}

#[test]
fn a_check_that_errors_panics_or_never_runs_fails_the_run() {
    let (_tmp, run) = unpack();
    for (how, words) in [
        ("error", "error: injected"),
        ("panic", "panicked: injected"),
        ("skip", "never ran"),
    ] {
        let v = check(&run, Some(&format!("a:records.seq:{how}")));
        assert_eq!(v.code, 1, "{how}: {}", v.stdout);
        assert!(
            v.stdout.contains(&format!("FAIL: a: records.seq: {words}")),
            "{how}: {}",
            v.stdout
        );
        assert!(
            last_line(&v.stdout).starts_with("checks: 1 of "),
            "{how}: {}",
            v.stdout
        );
    }
    // Stage D's checks are as binding as A's.
    let v = check(&run, Some("d:budget.lmax"));
    assert_eq!(v.code, 1, "{}", v.stdout);
    assert!(
        v.stdout.contains("FAIL: d: budget.lmax: error: injected"),
        "{}",
        v.stdout
    );
}

#[test]
fn a_stage_without_data_fails() {
    let (_tmp, run) = unpack();
    std::fs::remove_dir_all(run.join("out/c")).unwrap();
    let v = check(&run, None);
    assert_eq!(v.code, 1, "{}", v.stdout);
    assert!(v.stdout.contains("FAIL: c: stage: error: "), "{}", v.stdout);
    assert!(
        v.stdout.contains("FAIL: c: records.seq: error: "),
        "{}",
        v.stdout
    );
    assert!(!v.stdout.contains("FAIL: a: "), "{}", v.stdout);

    // A stage asked for whose directory was never written (B here).
    let (_tmp1, run) = unpack();
    set_stages(&run, "a b c d");
    let v = check(&run, None);
    assert_eq!(v.code, 1, "{}", v.stdout);
    assert!(
        v.stdout.contains("FAIL: b: helper: error: "),
        "{}",
        v.stdout
    );

    let (_tmp2, run) = unpack();
    std::fs::remove_dir_all(run.join("out/d/budget")).unwrap();
    let v = check(&run, None);
    assert_eq!(v.code, 1, "{}", v.stdout);
    assert!(
        v.stdout.contains("FAIL: d: budget.records.seq: error: "),
        "{}",
        v.stdout
    );
    assert!(v.stdout.contains("FAIL: d: overhead: "), "{}", v.stdout);
}

#[test]
fn an_unknown_or_missing_stage_fails() {
    let (_tmp, run) = unpack();
    set_stages(&run, "a b c d x");
    let v = check(&run, None);
    assert_eq!(v.code, 1, "{}", v.stdout);
    assert!(
        v.stdout.contains("FAIL: x: stage: error: no such stage"),
        "{}",
        v.stdout
    );
    assert!(
        v.stdout.contains("FAIL: run: stages: unknown stage"),
        "{}",
        v.stdout
    );

    set_stages(&run, "");
    let v = check(&run, None);
    assert_eq!(v.code, 1, "{}", v.stdout);
    assert!(
        v.stdout
            .contains("FAIL: run: stages: E2E_STAGES names no stage"),
        "{}",
        v.stdout
    );
}

#[test]
fn a_wrong_xen_version_fails() {
    let (_tmp, run) = unpack();
    let p = run.join("out/xen-packages.txt");
    let text = std::fs::read_to_string(&p).unwrap();
    let first = text.lines().next().unwrap().to_string();
    let (pkg, _) = first.split_once('=').unwrap();
    std::fs::write(&p, text.replacen(&first, &format!("{pkg}=4.17.7-1"), 1)).unwrap();
    let v = check(&run, None);
    assert_eq!(v.code, 1, "{}", v.stdout);
    assert!(
        v.stdout.contains("FAIL: run: xen.packages: "),
        "{}",
        v.stdout
    );
}

/// Rewrites column `col` of CSV row `row` (0 = the first data row).
fn edit_csv(path: &Path, row: usize, col: &str, f: impl Fn(u64) -> u64) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let idx = lines[0]
        .split(',')
        .position(|c| c == col)
        .unwrap_or_else(|| panic!("no column {col} in {}", path.display()));
    let mut cells: Vec<String> = lines[row + 1].split(',').map(str::to_string).collect();
    cells[idx] = f(cells[idx].parse().unwrap()).to_string();
    lines[row + 1] = cells.join(",");
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn the_drbd_stage_passes_as_recorded_and_catches_wrong_disk_bytes() {
    let (_tmp, run) = unpack();
    let v = check(&run, None);
    assert_eq!(v.code, 0, "{}", v.stdout);
    for name in [
        "drbd.setup",
        "disk.writer",
        "disk.rows",
        "disk.prefix",
        "disk.total",
        "disk.counters",
        "disk.policy",
        "records.policy",
    ] {
        assert!(
            v.stdout.contains(&format!("ok: e: {name}: ")),
            "{name}: {}",
            v.stdout
        );
    }

    // One KiB more in row 0, the live round (every write came after its
    // sample): the row, the sums and the counters must all object, and
    // the size the policy saw is no longer wire + disk.
    let csv = run.join("out/e/e.csv");
    edit_csv(&csv, 0, "disk_bytes", |b| b + 1024);
    let v = check(&run, None);
    assert_eq!(v.code, 1, "{}", v.stdout);
    for name in [
        "disk.rows",
        "disk.prefix",
        "disk.total",
        "disk.counters",
        "disk.policy",
    ] {
        assert!(
            v.stdout.contains(&format!("FAIL: e: {name}: ")),
            "{name}: {}",
            v.stdout
        );
    }
    edit_csv(&csv, 0, "disk_bytes", |b| b - 1024);
    assert_eq!(check(&run, None).code, 0);

    // A writer line lost: the sums no longer meet the writes.
    let writes = run.join("out/e/writes.txt");
    let text = std::fs::read_to_string(&writes).unwrap();
    let first = text.lines().find(|l| l.starts_with("chunk ")).unwrap();
    std::fs::write(&writes, text.replacen(&format!("{first}\n"), "", 1)).unwrap();
    let v = check(&run, None);
    assert!(v.stdout.contains("FAIL: e: disk.total: "), "{}", v.stdout);
    assert!(v.stdout.contains("FAIL: e: disk.writer: "), "{}", v.stdout);
}

#[test]
fn the_budget_stage_fails_when_too_many_checkpoints_pass_lmax() {
    let (_tmp, run) = unpack();
    let csv = run.join("out/d/budget/budget.csv");
    // The scenario's Lmax (16 MiB); row 0 is the live round, rows 1.. are
    // the budget run's 60 checkpoints.
    let lmax_bytes: u64 = 16 << 20;
    let past = |_| lmax_bytes + 4096;

    // One checkpoint past Lmax in 60 is within "at most 1 %".
    edit_csv(&csv, 1, "size_bytes", past);
    let v = check(&run, None);
    assert!(
        v.stdout
            .contains("ok: d: budget.lmax: 1 of 60 checkpoints above Lmax"),
        "{}",
        v.stdout
    );

    // Five in 60 are not (P(X >= 5) ~ 0.0003 at 1 %, below 0.001).
    for row in 2..=5 {
        edit_csv(&csv, row, "size_bytes", past);
    }
    let v = check(&run, None);
    assert_eq!(v.code, 1, "{}", v.stdout);
    assert!(
        v.stdout
            .contains("FAIL: d: budget.lmax: 5 of 60 checkpoints above Lmax"),
        "{}",
        v.stdout
    );
}
