//! e2e-check RUN_DIR — the verdict on one `scripts/e2e-xen` run.
//!
//! Reads what the run left (RUN_DIR/serial.log, RUN_DIR/out/: per stage
//! the CSV, xl's -vvv log, the save helper's facts, the guest consoles,
//! status.env) and prints one line per named check:
//!
//! ```text
//! ok: a: records.seq: …        a check that held
//! FAIL: a: records.seq: …      one that did not, errored, panicked or never ran
//! note: …  timing: …  summary: …
//! checks: all N passed | checks: K of N failed    (the last line)
//! ```
//!
//! and writes RUN_DIR/summary.json. Exit status 0 only when every check
//! of every stage in the run's E2E_STAGES held. `--known-stages` prints
//! the stages this checker knows (the script refuses others up front).
//!
//! A separate binary, not a `remus-ckpt` subcommand: it judges this
//! repository's test scenario and is not part of the tool dom0 gets.
//! `E2E_CHECK_BREAK=<stage>:<check>[:error|panic|skip]` breaks one check
//! on purpose, for the tests of the verdict itself.

mod disk;
mod json;
mod phases;
mod records;
mod rundir;
mod scrape;
mod stages;
mod verdict;
mod work;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use json::Json;
use rundir::RunDir;
use stages::{Settings, StageCtx, KNOWN_STAGES};
use verdict::{outcome, run_stage, Break, Check, Line, Outcome};
use work::WorkRates;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag] if flag == "--known-stages" => {
            println!("{}", KNOWN_STAGES.join(" "));
            ExitCode::SUCCESS
        }
        [dir] if !dir.starts_with('-') => match judge(Path::new(dir)) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                println!("FAIL: run: checker: {e:#}");
                println!("checks: the checker could not run");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: e2e-check RUN_DIR | e2e-check --known-stages");
            ExitCode::from(2)
        }
    }
}

/// The run-level checks: dom0 finished, Xen is the version the scenario
/// pinned, and the stages asked for are ones this checker knows.
fn run_checks<'a>(
    run: &'a RunDir,
    stages: &'a [String],
    version: &'a Option<String>,
) -> Vec<Check<'a>> {
    vec![
        Check::new("dom0", move || {
            let serial = run.serial()?;
            let fails: Vec<&str> = serial
                .lines()
                .filter(|l| l.starts_with("E2E-DOM0-FAIL"))
                .collect();
            Ok(outcome(
                fails.is_empty() && serial.contains("E2E-DOM0-DONE"),
                "dom0 ran the scenario to its end",
                format!("dom0 did not finish cleanly: {}", fails.join("; ")),
            ))
        }),
        Check::new("xen.banner", move || {
            let v = version
                .as_deref()
                .context("scenario.env has no XEN_DEB_VERSION")?;
            let serial = run.serial()?;
            let banner = format!("(Debian {v})");
            Ok(outcome(
                serial
                    .lines()
                    .any(|l| l.contains("Xen version") && l.contains(&banner)),
                format!("the hypervisor is Debian's {v}"),
                format!("the serial log shows no Xen boot banner with {banner}"),
            ))
        }),
        Check::new("package", move || scrape::package(&run.out)),
        Check::new("xen.packages", move || {
            let v = version
                .as_deref()
                .context("scenario.env has no XEN_DEB_VERSION")?;
            let pkgs = run.xen_packages()?;
            let wrong: Vec<String> = pkgs
                .iter()
                .filter(|(p, ver)| (p.starts_with("xen") || p.starts_with("libxen")) && ver != v)
                .map(|(p, ver)| format!("{p}={ver}"))
                .collect();
            Ok(outcome(
                wrong.is_empty(),
                format!("dom0's {} Xen packages are all {v}", pkgs.len()),
                format!("dom0 Xen packages not at {v}: {}", wrong.join(" ")),
            ))
        }),
        Check::new("stages", move || {
            let unknown: Vec<&String> = stages
                .iter()
                .filter(|s| !KNOWN_STAGES.contains(&s.as_str()))
                .collect();
            if stages.is_empty() {
                return Ok(Outcome::Fail("E2E_STAGES names no stage".into()));
            }
            Ok(outcome(
                unknown.is_empty(),
                format!("stages {} are known", stages.join(" ")),
                format!(
                    "unknown stage(s) {:?} (known: {})",
                    unknown,
                    KNOWN_STAGES.join(" ")
                ),
            ))
        }),
    ]
}

fn judge(root: &Path) -> Result<bool> {
    if !root.is_dir() {
        bail!("{} is not a run directory", root.display());
    }
    let broken = Break::from_env_value(std::env::var("E2E_CHECK_BREAK").ok())?;
    let run = RunDir::new(root);
    let scenario = run.scenario();
    let stages: Vec<String> = scenario
        .as_ref()
        .ok()
        .and_then(|e| e.get("STAGES"))
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let version = scenario
        .as_ref()
        .ok()
        .and_then(|e| e.get("XEN_DEB_VERSION"))
        .map(str::to_string);
    let settings = scenario.and_then(|env| Settings::from_env(env, &run.out.join("scenario.env")));

    let mut lines: Vec<Line> = Vec::new();
    let run_names: Vec<String> = ["dom0", "xen.banner", "package", "xen.packages", "stages"]
        .map(String::from)
        .to_vec();
    lines.extend(run_stage(
        "run",
        &run_names,
        run_checks(&run, &stages, &version),
        broken.as_ref(),
    ));

    let mut notes = Vec::new();
    let mut summary = Json::obj();
    summary.set("run", root.display().to_string());
    summary.set("xen_version", version.clone());
    let mut stage_json = Json::obj();
    let mut short = Vec::new();
    for stage in &stages {
        let Some(expected) = stages::expected(stage) else {
            lines.push(Line {
                stage: stage.clone(),
                name: "stage".into(),
                status: verdict::Status::Error,
                message: format!("no such stage (known: {})", KNOWN_STAGES.join(" ")),
            });
            continue;
        };
        for (n, dir) in run.earlier_attempts(stage).iter().enumerate() {
            let why = rundir::Env::read(&dir.join("status.env"))
                .map(|e| e.all("stage_fail").join("; "))
                .unwrap_or_default();
            notes.push(format!(
                "note: {stage}: attempt {} failed ({why}); the verdict is on attempt {}",
                n + 1,
                run.earlier_attempts(stage).len() + 1
            ));
        }
        let ctx = StageCtx::load(stage, &run.out);
        let windows: Vec<WorkRates> = if stage == "d" {
            ctx.runs.iter().map(WorkRates::of).collect()
        } else {
            Vec::new()
        };
        match &settings {
            Ok(set) => {
                lines.extend(run_stage(
                    stage,
                    &expected,
                    stages::checks(&ctx, set, &windows),
                    broken.as_ref(),
                ));
                let mut f = stages::facts(&ctx, set, &windows);
                f.set("attempts", run.earlier_attempts(stage).len() + 1);
                short.push(short_summary(stage, &f));
                stage_json.set(stage, f);
            }
            Err(e) => lines.push(Line {
                stage: stage.clone(),
                name: "settings".into(),
                status: verdict::Status::Error,
                message: format!("{e:#}"),
            }),
        }
    }

    for line in &lines {
        println!("{}", line.render());
    }
    for note in &notes {
        println!("{note}");
    }
    print_timings(root, &stage_json);
    let failed: Vec<String> = lines
        .iter()
        .filter(|l| !l.passed())
        .map(|l| format!("{}: {}", l.stage, l.name))
        .collect();
    summary.set("verdict", if failed.is_empty() { "PASS" } else { "FAIL" });
    summary.set("checks", lines.len());
    summary.set(
        "failed",
        Json::Arr(failed.iter().cloned().map(Json::from).collect()),
    );
    summary.set("qemu_secs", qemu_secs(root));
    summary.set("stages", stage_json);
    let json_path: PathBuf = root.join("summary.json");
    std::fs::write(&json_path, format!("{summary}\n"))
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    println!("summary: {}", short.join("; "));
    if failed.is_empty() {
        println!("checks: all {} passed", lines.len());
    } else {
        println!("checks: {} of {} failed", failed.len(), lines.len());
    }
    Ok(failed.is_empty())
}

fn qemu_secs(root: &Path) -> Option<f64> {
    let t = std::fs::read_to_string(root.join("timings.txt")).ok()?;
    rundir::Env::parse(&t.replace(' ', "\n"))
        .get("qemu_secs")?
        .parse()
        .ok()
}

fn print_timings(root: &Path, stages: &Json) {
    let mut parts = Vec::new();
    if let Json::Obj(fields) = stages {
        for (name, f) in fields {
            if let Json::Obj(kv) = f {
                if let Some((_, Json::Num(s))) = kv.iter().find(|(k, _)| k == "stage_secs") {
                    parts.push(format!("{name} {s:.0} s"));
                }
            }
        }
    }
    if let Some(q) = qemu_secs(root) {
        parts.push(format!("qemu {q:.0} s"));
    }
    println!("timing: {}", parts.join(", "));
}

fn num(o: &Json, key: &str) -> Option<f64> {
    let Json::Obj(kv) = o else { return None };
    kv.iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| match v {
            Json::Num(n) => Some(*n),
            _ => None,
        })
}

fn get<'a>(o: &'a Json, key: &str) -> Option<&'a Json> {
    let Json::Obj(kv) = o else { return None };
    kv.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// One stage in a few words, for the E2E PASS line.
fn short_summary(stage: &str, f: &Json) -> String {
    let n = |k: &str| num(f, k).map_or("?".to_string(), |v| format!("{v:.0}"));
    let pct = |o: &Json| {
        num(o, "share_within_lmax").map_or("?".to_string(), |v| format!("{:.0}%", v * 100.0))
    };
    match stage {
        "a" | "c" => format!(
            "{}: {} records = xl's {} checkpoints, {} <= Lmax, interval high/low {}/{} ms",
            stage.to_uppercase(),
            n("records"),
            n("xl_checkpoints"),
            pct(f),
            n("interval_ms_median_high"),
            n("interval_ms_median_low")
        ),
        "e" => format!(
            "E: {} records = xl's {} checkpoints, disk {} bytes in {} checkpoints = {} written; interval with/without disk {}/{} ms",
            n("records"),
            n("xl_checkpoints"),
            n("disk_bytes_sum"),
            n("checkpoints_with_disk"),
            n("written_bytes"),
            n("interval_ms_median_disk"),
            n("interval_ms_median_no_disk")
        ),
        "b" => format!(
            "B: stock remus {} checkpoints, no records",
            n("xl_checkpoints")
        ),
        "d" => {
            let budget = get(f, "runs").and_then(|r| get(r, "budget"));
            let ov = get(f, "overhead");
            let r = |run: &str, k: &str| {
                ov.and_then(|o| get(o, run))
                    .and_then(|o| num(o, k))
                    .map_or("?".into(), |v| format!("{v:.2}"))
            };
            format!(
                "D: budget {} <= Lmax, {} of {} high checkpoints by budget; guest high/low rate vs stock: unconfigured {}/{}, fixed {}/{}, budget {}/{}",
                budget.map_or("?".into(), pct),
                budget.and_then(|b| num(b, "high_checkpoints_trigger_budget")).map_or("?".into(), |v| format!("{v:.0}")),
                budget.and_then(|b| num(b, "high_checkpoints")).map_or("?".into(), |v| format!("{v:.0}")),
                r("unconfigured", "guest_high_rate_vs_stock"),
                r("unconfigured", "guest_low_rate_vs_stock"),
                r("fixed", "guest_high_rate_vs_stock"),
                r("fixed", "guest_low_rate_vs_stock"),
                r("budget", "guest_high_rate_vs_stock"),
                r("budget", "guest_low_rate_vs_stock"),
            )
        }
        _ => stage.to_string(),
    }
}
