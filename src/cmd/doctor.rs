//! `remus-ckpt doctor`: what `run` needs on a dom0, checked one by one,
//! each failure with the command that fixes it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;
use clap::Args;

use super::run;
use crate::runtime_dir;
use crate::xen_install::{self, InstalledXen};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Directory of the patched libxenguest (default as for `run`).
    #[arg(long, value_name = "DIR")]
    pub lib_dir: Option<PathBuf>,

    /// The save helper `run` will wrap (default as for `run`: the
    /// installed Xen's).
    #[arg(long, value_name = "PATH")]
    pub helper: Option<PathBuf>,

    /// Also check these FIFOs (e.g. the ones a `watch` will use).
    #[arg(long, value_name = "PATH")]
    pub fifo: Vec<PathBuf>,
}

enum Verdict {
    Ok(String),
    Warn(String, String),
    Fail(String, String),
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
            let userland = xen_install::major_minor();
            match version {
                Some(v) if v.starts_with(&format!("{userland}.")) => {
                    Verdict::Ok(format!("Xen dom0, hypervisor {v}"))
                }
                Some(v) => Verdict::Fail(
                    format!("hypervisor is Xen {v}, the Xen userland is {userland}"),
                    "boot the hypervisor of the installed Xen userland (or install the \
                     userland of the running hypervisor); see docs/xen-versions.md"
                        .into(),
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
            format!(
                "apt-get install xen-utils-{} (or pass --helper)",
                xen_install::major_minor()
            ),
        )
    }
}

/// The fix for a library built from another source than the installed
/// Xen's: rebuild it from the installed version's source.
const REBUILD: &str = "REMUS_CKPT_XEN_SRC=$(scripts/xen-source) cargo build --release \
                       (builds from the installed Xen's source)";

/// The library must be built from the source of the installed Xen: its
/// build-info.txt (build/xen.rs) against dpkg's libxenmisc4.NN.
fn check_built_from(lib_dir: &Path) -> Verdict {
    let installed: InstalledXen = match xen_install::detect() {
        Err(e) => {
            return Verdict::Warn(
                format!("cannot tell which Xen is installed: {e}"),
                "doctor reads the installed Xen from dpkg (Debian)".into(),
            )
        }
        Ok(found) if found.is_empty() => {
            return Verdict::Fail(
                "no Xen userland installed (no libxenmisc4.NN)".into(),
                "apt-get install xen-utils (or scripts/install-xen-deps --version V)".into(),
            )
        }
        Ok(found) if found.len() > 1 => {
            let names: Vec<String> = found
                .iter()
                .map(|x| format!("{} {}", x.package, x.source_version))
                .collect();
            return Verdict::Fail(
                format!("more than one Xen release installed: {}", names.join(", ")),
                "remove all but the one the hypervisor runs (apt-get remove)".into(),
            );
        }
        Ok(mut found) => found.remove(0),
    };
    let i = &installed.source_version;
    let Some(info) = xen_install::build_info(lib_dir) else {
        return Verdict::Warn(
            format!(
                "cannot tell which source {} was built from (no build-info.txt; installed: xen {i})",
                lib_dir.display()
            ),
            REBUILD.into(),
        );
    };
    if let Some(v) = info.xen_version.as_deref() {
        if v != installed.major_minor {
            return Verdict::Fail(
                format!(
                    "library built for Xen {v}, but the installed Xen is {} ({} {i})",
                    installed.major_minor, installed.package
                ),
                REBUILD.into(),
            );
        }
    }
    match info.source_version {
        Some(b) if b == *i => Verdict::Ok(format!(
            "library built from xen {b}, the installed Xen's source ({})",
            installed.package
        )),
        Some(b) => Verdict::Fail(
            format!(
                "library built from xen {b}, but the installed Xen is xen {i} ({})",
                installed.package
            ),
            REBUILD.into(),
        ),
        None => Verdict::Warn(
            format!(
                "{} was not built from a Debian source tree: cannot compare it with \
                 the installed xen {i}",
                lib_dir.display()
            ),
            REBUILD.into(),
        ),
    }
}

/// `trusted`: both passed [`run::check_executed`]'s rule; otherwise ldd,
/// which loads the library into the helper's loader as root, is not run.
fn check_library(lib_dir: &Path, helper: &Path, trusted: bool) -> Vec<Verdict> {
    let mut out = vec![check_built_from(lib_dir)];
    let soname = run::lib_soname();
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
                    .any(|l| l.contains(&soname) && l.contains(&*lib_dir.to_string_lossy()));
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
                        format!("library and installed Xen libraries differ: {REBUILD}"),
                    ));
                } else {
                    out.push(Verdict::Fail(
                        "the helper does not pick up the patched library".into(),
                        format!("check {} holds {soname}", lib_dir.display()),
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
    let helper = args.helper.clone().unwrap_or_else(run::default_helper);
    let mut verdicts = vec![check_dom0(), check_helper(&helper)];
    let mut helper_trusted = false;
    if helper.exists() {
        let checked = run::check_helper(&helper);
        helper_trusted = checked.is_ok();
        verdicts.push(check_trusted("save helper", checked));
    }
    match run::lib_dir(args.lib_dir.as_deref()) {
        Ok(dir) => {
            verdicts.push(Verdict::Ok(format!("patched library in {}", dir.display())));
            let checked = run::check_lib_dir(&dir);
            let trusted = helper_trusted && checked.is_ok();
            verdicts.push(check_trusted("library directory", checked));
            verdicts.extend(check_library(&dir, &helper, trusted));
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
            Verdict::Ok(what) => super::print_stdout(format_args!("ok    {what}\n"))?,
            Verdict::Warn(what, fix) => {
                super::print_stdout(format_args!("warn  {what}\n        -> {fix}\n"))?;
            }
            Verdict::Fail(what, fix) => {
                failed += 1;
                super::print_stdout(format_args!("FAIL  {what}\n        -> {fix}\n"))?;
            }
        }
    }
    if failed == 0 {
        super::print_stdout(format_args!(
            "all checks passed: `remus-ckpt run -- xl remus …` should work here\n"
        ))?;
        Ok(0)
    } else {
        super::print_stdout(format_args!("{failed} check(s) failed\n"))?;
        Ok(1)
    }
}
