//! Every Xen that has Remus: the series in patches/ apply to each release
//! and the patched save code compiles (scripts/xen-compile-check).  See
//! docs/xen-versions.md.
//!
//! The trees are not part of the repository (Xen's code is never
//! committed): give them in `REMUS_CKPT_XEN_TREES`, separated by spaces,
//! newlines or colons.  `scripts/xen-trees` verifies the archives of
//! ../shared/xen-trees against their SHA256SUMS, unpacks them into
//! target/xen-trees/ and prints their paths, so that
//!
//! ```sh
//! REMUS_CKPT_XEN_TREES="$(scripts/xen-trees)" REMUS_CKPT_XEN_TREES_REQUIRE=1 \
//!     cargo test --test xen_versions -- --show-output
//! ```
//!
//! is what CI (scripts/test) runs.
//!
//! For the releases of [`FULL_RELEASES`] the script also links
//! libxenguest and compares its exported symbols with the same build
//! without the series (`XEN_CHECK_FULL=1`; set it yourself to get that for
//! every tree with tools/libs/guest).
//!
//! `every_given_tree_applies_and_compiles` checks each given tree,
//! `REMUS_CKPT_XEN_JOBS` (default 2) at a time, and prints how long each
//! took.  A release of [`RELEASES`] that was not given prints
//! `SKIPPED: <release> (no tree given)`; with `REMUS_CKPT_XEN_TREES_REQUIRE=1`
//! (CI) it fails instead, as does a full build that was not possible.  It
//! prints the table of docs/xen-versions.md.  The other tests need no Xen
//! tree.

use std::collections::BTreeMap;
use std::env;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The releases the project proves, oldest first: the trees of
/// ../shared/xen-trees (its README.md says why each one), which cover every
/// series of patches/versions.
const RELEASES: [&str; 10] = [
    "4.1.2", "4.2.0", "4.5.5", "4.6.0", "4.7.0", "4.14.0", "4.15.0", "4.17.7", "4.20.4", "4.22.0",
];

/// Releases of [`RELEASES`] with blktap2 (Xen 4.0-4.12), whose tap-remus
/// driver the series patches (disk epochs, docs/disk.md).
const BLKTAP2_RELEASES: [&str; 5] = ["4.1.2", "4.2.0", "4.5.5", "4.6.0", "4.7.0"];

/// Releases whose libxenguest is also linked and compared with the
/// unpatched build of the same tree (XEN_CHECK_FULL=1): Debian 12's and
/// Debian 13's Xen and the newest release.
const FULL_RELEASES: [&str; 3] = ["4.17.7", "4.20.4", "4.22.0"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(t) if !t.is_empty() => repo().join(t),
        _ => repo().join("target"),
    }
}

/// XEN_VERSION.XEN_SUBVERSION plus the release digits of
/// XEN_EXTRAVERSION (".6.1$(XEN_VENDORVERSION)" -> "4.1.6.1").
fn release_of(tree: &Path) -> Result<String, String> {
    let makefile = tree.join("xen/Makefile");
    let text = fs::read_to_string(&makefile)
        .map_err(|e| format!("{}: {e} (not a Xen source tree?)", makefile.display()))?;
    let field = |name: &str| -> Option<String> {
        text.lines().find_map(|l| {
            let l = l.trim_start();
            let l = l.strip_prefix("export ").unwrap_or(l).trim_start();
            let rest = l.strip_prefix(name)?.trim_start();
            let value = rest.strip_prefix("?=").or_else(|| rest.strip_prefix('='))?;
            Some(value.trim().to_string())
        })
    };
    let major = field("XEN_VERSION").ok_or("no XEN_VERSION")?;
    let minor = field("XEN_SUBVERSION").ok_or("no XEN_SUBVERSION")?;
    let extra: String = field("XEN_EXTRAVERSION")
        .unwrap_or_default()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    Ok(format!("{major}.{minor}{extra}"))
}

fn given_trees() -> Vec<PathBuf> {
    env::var("REMUS_CKPT_XEN_TREES")
        .unwrap_or_default()
        .split(|c: char| c.is_whitespace() || c == ':')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// Outcome of scripts/xen-compile-check on one tree.
struct Check {
    tree: PathBuf,
    release: String,
    /// key=value pairs of the RESULT line (version, series, applies, ...).
    result: BTreeMap<String, String>,
    ok: bool,
    output: String,
    took: Duration,
}

fn run_check(tree: &Path, scratch: &Path) -> Check {
    let release = release_of(tree).unwrap_or_else(|e| panic!("{}: {e}", tree.display()));
    let started = Instant::now();
    let mut cmd = Command::new("nice");
    cmd.arg("bash")
        .arg(repo().join("scripts/xen-compile-check"))
        .arg(tree)
        .arg(scratch)
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL");
    if FULL_RELEASES.contains(&release.as_str()) {
        cmd.env("XEN_CHECK_FULL", "1");
    }
    let out = cmd.output().expect("run scripts/xen-compile-check");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let result = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find(|l| l.starts_with("RESULT ") || l.starts_with("UNSUPPORTED "))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    Check {
        tree: tree.to_path_buf(),
        release,
        result,
        ok: out.status.success(),
        output,
        took: started.elapsed(),
    }
}

/// Runs the check of every tree, `jobs` at a time, in the order given.
fn run_checks(trees: &[PathBuf], base: &Path, jobs: usize) -> Vec<Check> {
    let next = Mutex::new(0usize);
    let done: Mutex<Vec<(usize, Check)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    let i = *n;
                    *n += 1;
                    i
                };
                let Some(tree) = trees.get(i) else { break };
                let name = tree
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| format!("tree-{i}"));
                eprintln!("checking {} ...", tree.display());
                let c = run_check(tree, &base.join(&name));
                eprintln!(
                    "  {}: {} s: {}",
                    c.release,
                    c.took.as_secs(),
                    c.output.lines().last().unwrap_or("(no output)")
                );
                done.lock().unwrap().push((i, c));
            });
        }
    });
    let mut done = done.into_inner().unwrap();
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, c)| c).collect()
}

/// The lines of patches/versions as scripts/xen-series (its one reader,
/// which also rejects malformed or overlapping lines) prints them: one
/// map of column name to value per line, in file order.
fn versions_lines() -> Vec<BTreeMap<String, String>> {
    let out = Command::new("bash")
        .arg(repo().join("scripts/xen-series"))
        .arg("lines")
        .output()
        .expect("run scripts/xen-series");
    assert!(
        out.status.success(),
        "scripts/xen-series lines: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| {
            l.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// "4.17" -> (4, 17).
fn major_minor(v: &str) -> (u32, u32) {
    let mut it = v.split('.');
    let mut next = || -> u32 {
        it.next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a Xen version: {v}"))
    };
    (next(), next())
}

/// The full-build column: the release lines marked `yes` get cargo's full
/// libxenguest build (proved by tests/xen_417.rs on Debian's 4.17.5 tree);
/// the others get the compile check.  (first, last) per `yes` line.
fn full_build_lines() -> Vec<((u32, u32), (u32, u32))> {
    versions_lines()
        .iter()
        .filter(|l| l["full"] == "yes")
        .map(|l| (major_minor(&l["first"]), major_minor(&l["last"])))
        .collect()
}

/// The series of patches/versions, in file order.
fn all_series() -> Vec<String> {
    versions_lines()
        .into_iter()
        .map(|mut l| l.remove("series").expect("series="))
        .collect()
}

#[test]
fn every_given_tree_applies_and_compiles() {
    let trees = given_trees();
    // Not REMUS_CKPT_XEN_REQUIRE: that one is for the 4.17 proofs
    // (tests/xen_417.rs), which need Debian's source, not these trees.
    let require = env::var("REMUS_CKPT_XEN_TREES_REQUIRE").as_deref() == Ok("1");
    let jobs: usize = env::var("REMUS_CKPT_XEN_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .unwrap_or(2);
    let full = full_build_lines();
    let base = target_dir().join("xen-check").join("test");

    let started = Instant::now();
    let checks = run_checks(&trees, &base, jobs);
    let total = started.elapsed();

    // The table of docs/xen-versions.md.
    println!(
        "| release | series | applies | compiles | config | full build | tap-remus (blktap2) | check took |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for c in &checks {
        let get = |k: &str| c.result.get(k).cloned().unwrap_or_else(|| "-".into());
        let version = get("version");
        let linked = match get("full").as_str() {
            "yes" => "libxenguest linked, ABI = unpatched (XEN_CHECK_FULL=1)",
            "no" => "libxenguest build FAILED (XEN_CHECK_FULL=1)",
            "deps-fail" => "not possible here: a library libxenguest needs (untouched by the series) fails with gcc 12",
            _ => "not tried",
        };
        let in_full_line = version
            .split_once('.')
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
            .is_some_and(|v| full.iter().any(|(f, l)| (*f..=*l).contains(&v)));
        let full_build = if in_full_line {
            format!("cargo build: full build (Debian 4.17.5 tree proved by tests/xen_417.rs); this tree: {linked}")
        } else {
            format!("cargo build: compile check; {linked}")
        };
        let blktap2 = match get("blktap2").as_str() {
            "compiled" => "block-remus.o + remus_ckpt.o compiled (-Werror)".to_string(),
            "skipped" => "no tools/blktap2 in this tree".to_string(),
            "-" => "no blktap2 (removed after 4.12)".to_string(),
            other => other.to_string(),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} s |",
            c.release,
            if c.result.is_empty() {
                "unsupported".to_string()
            } else {
                format!("patches/{}/", get("series"))
            },
            get("applies"),
            get("compiles"),
            get("config"),
            full_build,
            blktap2,
            c.took.as_secs()
        );
    }
    // Straight to fd 2 from here: the harness captures println!, and the
    // times and skips must show in the run's output.
    let _ = writeln!(
        std::io::stderr(),
        "xen_versions: {} trees checked in {} s ({jobs} at a time)",
        checks.len(),
        total.as_secs()
    );
    let given: Vec<&str> = checks.iter().map(|c| c.release.as_str()).collect();
    let mut missing = Vec::new();
    for r in RELEASES {
        if !given.contains(&r) {
            let _ = writeln!(std::io::stderr(), "SKIPPED: {r} (no tree given)");
            missing.push(r);
        }
    }

    let failed: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| {
            format!(
                "{} ({}):\n{}",
                c.release,
                c.tree.display(),
                c.output
                    .lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "the compile check failed for:\n{}",
        failed.join("\n\n")
    );
    if require {
        assert!(
            missing.is_empty(),
            "REMUS_CKPT_XEN_TREES_REQUIRE=1 but no tree given for {missing:?} \
             (REMUS_CKPT_XEN_TREES; scripts/xen-trees unpacks them)"
        );
        for c in &checks {
            // Stubdom (4.1-4.13) builds tools/libxc's save code for
            // Mini-OS: the check must have proved remus_ckpt.c is kept
            // out of it.
            if matches!(
                c.result.get("series").map(String::as_str),
                Some("xen-4.1" | "xen-4.2" | "xen-4.6" | "xen-4.7")
            ) {
                assert_eq!(
                    c.result.get("stubdom").map(String::as_str),
                    Some("excluded"),
                    "{}: remus_ckpt.c not proved out of the stubdom build:\n{}",
                    c.release,
                    c.output
                );
            }
            // Xen 4.0-4.12 have blktap2: the tap-remus driver with the
            // series' hook must have been compiled.
            if BLKTAP2_RELEASES.contains(&c.release.as_str()) {
                assert_eq!(
                    c.result.get("blktap2").map(String::as_str),
                    Some("compiled"),
                    "{}: the patched tap-remus driver was not compiled:\n{}",
                    c.release,
                    c.output
                );
            }
            if FULL_RELEASES.contains(&c.release.as_str()) {
                assert_eq!(
                    c.result.get("full").map(String::as_str),
                    Some("yes"),
                    "{}: the full libxenguest build and ABI comparison did not happen:\n{}",
                    c.release,
                    c.output
                );
            }
        }
        let checked: Vec<&str> = checks
            .iter()
            .filter_map(|c| c.result.get("series").map(String::as_str))
            .collect();
        for series in all_series() {
            assert!(
                checked.contains(&series.as_str()),
                "no given tree exercises patches/{series}/"
            );
        }
    }
}

/// Every line of patches/versions names a series whose patches exist in
/// `git format-patch` form, its base release is one of RELEASES (so that
/// scripts/patches-regen has its tree), and every release of RELEASES is
/// covered.  Column syntax and overlaps: scripts/xen-series.
#[test]
fn versions_file_is_consistent() {
    let lines = versions_lines();
    assert!(!lines.is_empty(), "patches/versions lists no line");
    for l in &lines {
        let dir = repo().join("patches").join(&l["series"]);
        let out = Command::new("bash")
            .arg(repo().join("scripts/xen-series"))
            .args(["patches", &l["series"]])
            .output()
            .expect("run scripts/xen-series");
        assert!(
            out.status.success(),
            "{}/series: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let patches = String::from_utf8(out.stdout).expect("utf-8");
        for p in patches.lines() {
            let text = fs::read_to_string(dir.join(p))
                .unwrap_or_else(|e| panic!("{}/{p}: {e}", dir.display()));
            // git format-patch output: what and why before the diff.
            assert!(
                text.starts_with("From 0000000000000000000000000000000000000000 "),
                "{p}: not git format-patch --zero-commit output"
            );
            for field in [
                "\nFrom: ",
                "\nDate: ",
                "\nSubject: [PATCH",
                "\n---\n",
                "\ndiff --git a/",
            ] {
                assert!(text.contains(field), "{p}: no {field:?}");
            }
        }
        assert!(
            RELEASES.contains(&l["base"].as_str()),
            "patches/versions: base {} of {} is not a release of ../shared/xen-trees",
            l["base"],
            l["series"]
        );
    }
    for r in RELEASES {
        let v = major_minor(r);
        assert!(
            lines
                .iter()
                .any(|l| (major_minor(&l["first"])..=major_minor(&l["last"])).contains(&v)),
            "release {r} has no series in patches/versions"
        );
    }
}

/// A version without a series is refused with a clear message (exit 2),
/// before anything is copied or patched.
#[test]
fn unsupported_version_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(dir.path().join("xen")).unwrap();
    fs::write(
        dir.path().join("xen/Makefile"),
        "export XEN_VERSION       = 3\nexport XEN_SUBVERSION    = 4\n\
         export XEN_EXTRAVERSION ?= .3$(XEN_VENDORVERSION)\n",
    )
    .unwrap();
    let scratch = dir.path().join("scratch");
    let out = Command::new("bash")
        .arg(repo().join("scripts/xen-compile-check"))
        .arg(dir.path())
        .arg(&scratch)
        .output()
        .expect("run scripts/xen-compile-check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stdout.contains("UNSUPPORTED version=3.4"), "{stdout}");
    assert!(stderr.contains("Xen 3.4 is not supported"), "{stderr}");
    assert!(stderr.contains("patches/xen-4.1/"), "{stderr}");
    assert!(
        !scratch.exists(),
        "nothing may be copied for an unsupported tree"
    );
    assert_eq!(release_of(dir.path()).unwrap(), "3.4.3");
}
