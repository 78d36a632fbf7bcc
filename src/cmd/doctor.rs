//! `remus-ckpt doctor`: what `run` needs on a dom0, checked one by one,
//! each failure with the command that fixes it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;
use clap::Args;

use super::run::{self, DEFAULT_HELPER, LIB_SONAME};
use crate::runtime_dir;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Directory of the patched libxenguest (default as for `run`).
    #[arg(long, value_name = "DIR")]
    pub lib_dir: Option<PathBuf>,

    /// The save helper `run` will wrap.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_HELPER)]
    pub helper: PathBuf,

    /// Also check these FIFOs (e.g. the ones a `watch` will use).
    #[arg(long, value_name = "PATH")]
    pub fifo: Vec<PathBuf>,
}

enum Verdict {
    Ok(String),
    Warn(String, String),
    Fail(String, String),
}

fn dpkg_version(package: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}|${Version}", package])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.strip_prefix("install ok installed|")
        .map(str::to_string)
}

fn check_dom0() -> Verdict {
    match std::fs::read_to_string("/proc/xen/capabilities") {
        Ok(caps) if caps.contains("control_d") => {
            let version = Command::new("xl")
                .arg("info")
                .output()
                .ok()
                .and_then(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .filter(|l| l.starts_with("xen_major") || l.starts_with("xen_minor") || l.starts_with("xen_extra"))
                        .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
                        .reduce(|a, b| format!("{a}.{b}").replace("..", "."))
                });
            match version {
                Some(v) if v.starts_with("4.17") => Verdict::Ok(format!("Xen dom0, hypervisor {v}")),
                Some(v) => Verdict::Fail(
                    format!("hypervisor is Xen {v}"),
                    "the patched library is built for Xen 4.17 (Debian 12); see docs/xen-versions.md".into(),
                ),
                None => Verdict::Warn("Xen dom0, but `xl info` gave no version".into(), "is xencommons running?".into()),
            }
        }
        Ok(_) => Verdict::Fail("this is a Xen guest, not dom0".into(), "run remus-ckpt in dom0".into()),
        Err(_) => Verdict::Fail(
            "not running on Xen (/proc/xen/capabilities missing)".into(),
            "boot the Xen hypervisor (apt-get install xen-system-amd64) or try `remus-ckpt simulate`".into(),
        ),
    }
}

fn check_helper(helper: &Path) -> Verdict {
    if helper.exists() {
        Verdict::Ok(format!("save helper {}", helper.display()))
    } else {
        Verdict::Fail(
            format!("save helper {} missing", helper.display()),
            "apt-get install xen-utils-4.17 (scripts/install-xen-deps pins the version)".into(),
        )
    }
}

/// The Debian version of the source tree the library was built from:
/// build-info.txt's `debian_version=` (the package writes it, as the
/// source tree is not on the machine it is installed on), else that
/// tree's debian/changelog.
fn built_from(lib_dir: &Path) -> Option<String> {
    let info = std::fs::read_to_string(lib_dir.join("build-info.txt")).ok()?;
    if let Some(version) = info.lines().find_map(|l| l.strip_prefix("debian_version=")) {
        return Some(version.to_string());
    }
    let source = info.lines().find_map(|l| l.strip_prefix("source="))?;
    let changelog = std::fs::read_to_string(Path::new(source).join("debian/changelog")).ok()?;
    let first = changelog.lines().next()?;
    Some(first.split('(').nth(1)?.split(')').next()?.to_string())
}

/// `trusted`: both passed [`run::check_executed`]'s rule; otherwise ldd,
/// which loads the library into the helper's loader as root, is not run.
fn check_library(lib_dir: &Path, helper: &Path, trusted: bool) -> Vec<Verdict> {
    let mut out = Vec::new();
    let installed = dpkg_version("libxenmisc4.17");
    match (&installed, built_from(lib_dir)) {
        (Some(i), Some(b)) if *i == b => out.push(Verdict::Ok(format!("library built from {b}, installed libxenctrl {i}"))),
        (Some(i), Some(b)) => out.push(Verdict::Fail(
            format!("library built from {b}, but installed libxenmisc4.17 is {i}"),
            format!("scripts/install-xen-deps (pins {b}), or rebuild from the installed version's source"),
        )),
        (None, _) => out.push(Verdict::Fail(
            "libxenmisc4.17 (libxenctrl, libxenguest) not installed".into(),
            "scripts/install-xen-deps".into(),
        )),
        (Some(i), None) => out.push(Verdict::Warn(
            format!("cannot tell which source {} was built from (installed: {i})", lib_dir.display()),
            "rebuild with REMUS_CKPT_XEN_SRC=$(scripts/xen-source) cargo build --release".into(),
        )),
    }
    if helper.exists() && !trusted {
        out.push(Verdict::Warn(
            "not running ldd on the helper: others can write what it would load".into(),
            "fix the paths named above first".into(),
        ));
    } else if helper.exists() {
        match Command::new("ldd")
            .arg("-r")
            .arg(helper)
            .env("LD_LIBRARY_PATH", lib_dir)
            .output()
        {
            Ok(o) => {
                let text = String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr);
                let ours = text
                    .lines()
                    .any(|l| l.contains(LIB_SONAME) && l.contains(&*lib_dir.to_string_lossy()));
                let undefined: Vec<&str> = text
                    .lines()
                    .filter(|l| l.contains("undefined symbol") || l.contains("not found"))
                    .collect();
                if ours && undefined.is_empty() {
                    out.push(Verdict::Ok(
                        "the helper resolves the patched libxenguest with no undefined symbol"
                            .into(),
                    ));
                } else if !undefined.is_empty() {
                    out.push(Verdict::Fail(
                        format!("ldd -r on the helper: {}", undefined.join("; ")),
                        "library and installed Xen libraries differ: scripts/install-xen-deps, then rebuild".into(),
                    ));
                } else {
                    out.push(Verdict::Fail(
                        "the helper does not pick up the patched library".into(),
                        format!("check {} holds {LIB_SONAME}", lib_dir.display()),
                    ));
                }
            }
            Err(e) => out.push(Verdict::Warn(
                format!("cannot run ldd: {e}"),
                "apt-get install libc-bin".into(),
            )),
        }
    }
    out
}

fn check_fifo(path: &Path) -> Verdict {
    match std::fs::symlink_metadata(path) {
        Err(_) => Verdict::Warn(
            format!("{} does not exist", path.display()),
            "`watch` creates it 0600; `run` makes its own".into(),
        ),
        Ok(_) => match crate::fifo::ensure_private_fifo(path) {
            Ok(()) => Verdict::Ok(format!("{} is a private FIFO", path.display())),
            Err(e) => Verdict::Fail(
                format!("{e:#}"),
                format!("rm {} and let remus-ckpt create it", path.display()),
            ),
        },
    }
}

/// The rule `run` applies before it starts: nobody but root (or us) can
/// change what root executes and loads.
fn check_trusted(what: &str, checked: Result<PathBuf>) -> Verdict {
    match checked {
        Ok(path) => Verdict::Ok(format!(
            "{what} {}: only root can change it and the directories above it",
            path.display()
        )),
        Err(e) => Verdict::Fail(
            format!("{e:#}"),
            "`run` refuses this: make every directory on the path root-owned and not \
             group/other-writable"
                .into(),
        ),
    }
}

fn check_runtime_dir() -> Verdict {
    let base = Path::new(runtime_dir::RUNTIME_BASE);
    match runtime_dir::inspect_base(base) {
        Ok(true) => Verdict::Ok(format!("runtime directories go to {}", base.display())),
        Ok(false) => Verdict::Ok(format!(
            "{} does not exist yet; `run` creates it 0700 (as root; otherwise it uses {})",
            base.display(),
            std::env::temp_dir().display()
        )),
        Err(e) => Verdict::Fail(
            format!("{e:#}"),
            "`run` refuses this base until it is fixed".into(),
        ),
    }
}

/// Prints every check; exit code 1 if any failed.
pub fn run(args: &DoctorArgs) -> Result<i32> {
    let mut verdicts = vec![check_dom0(), check_helper(&args.helper)];
    let mut helper_trusted = false;
    if args.helper.exists() {
        let checked = run::check_helper(&args.helper);
        helper_trusted = checked.is_ok();
        verdicts.push(check_trusted("save helper", checked));
    }
    match run::lib_dir(args.lib_dir.as_deref()) {
        Ok(dir) => {
            verdicts.push(Verdict::Ok(format!("patched library in {}", dir.display())));
            let checked = run::check_lib_dir(&dir);
            let trusted = helper_trusted && checked.is_ok();
            verdicts.push(check_trusted("library directory", checked));
            verdicts.extend(check_library(&dir, &args.helper, trusted));
        }
        Err(e) => verdicts.push(Verdict::Fail(
            format!("{e:#}"),
            "see docs/xen-4.17.md".into(),
        )),
    }
    verdicts.extend(args.fifo.iter().map(|f| check_fifo(f)));
    verdicts.push(check_runtime_dir());

    let mut failed = 0;
    for v in &verdicts {
        match v {
            Verdict::Ok(what) => println!("ok    {what}"),
            Verdict::Warn(what, fix) => println!("warn  {what}\n        -> {fix}"),
            Verdict::Fail(what, fix) => {
                failed += 1;
                println!("FAIL  {what}\n        -> {fix}");
            }
        }
    }
    if failed == 0 {
        println!("all checks passed: `remus-ckpt run -- xl remus …` should work here");
        Ok(0)
    } else {
        println!("{failed} check(s) failed");
        Ok(1)
    }
}
