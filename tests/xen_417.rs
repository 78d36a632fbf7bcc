//! Proofs for the patched Xen 4.17 libxenguest (patches/xen-4.17/, built by
//! build/xen.rs).  See docs/xen-4.17.md for how to run them.
//!
//! They need Debian's xen 4.17.5 source tree (`REMUS_CKPT_XEN_SRC`, from
//! `scripts/xen-source`), the packages from `scripts/install-xen-deps`,
//! and the libraries build.rs puts in `target/xen-4.17/` (the patched one
//! by any cargo build with `REMUS_CKPT_XEN_SRC` set, the unpatched one by
//! one with `REMUS_CKPT_XEN_UNPATCHED=1` as well).  When the variable or a
//! package is missing, each proof prints `SKIPPED: <why>` and returns; with
//! `REMUS_CKPT_XEN_REQUIRE=1` (CI) it fails instead, so that a broken setup
//! cannot pass unnoticed.  Run with `-- --show-output` to see the output.
//!
//! 1. `unpatched_build_reproduces_debian_build_id`: our build recipe is
//!    Debian's (same ELF Build ID as the shipped libxenguest.so.4.17.0), so
//!    the patched library differs from Debian's only by our patches.
//! 2. `patched_library_keeps_debian_abi`: same SONAME and same exported
//!    symbols with versions; nothing of remus_ckpt exported; the real
//!    libxl-save-helper resolves libxenguest from our directory with no
//!    undefined symbol.
//! 3. `series_applies_once_and_refuses_twice`: the series applies to the
//!    pristine tree, a second application is refused without touching the
//!    files, and the build used exactly these patched files.
//! 4. `patched_save_path_runs_without_hypervisor`: the hooks compiled at
//!    -Werror in the library build, and tests/xen_417/save_path.c runs the
//!    real patched save loop.  Covered: save(), suspend_and_send_dirty(),
//!    write_batch(), write_headers(), write_split_record() and remus_ckpt.c
//!    as built, writing to a real pipe and a real stats FIFO, for Remus,
//!    COLO and plain streams (details in save_path.c), with a
//!    toolstack-style writer appending libxl's records to the same pipe
//!    between checkpoints: `bytes_sent` is exactly the save code's bytes,
//!    and the rest of what the pipe carried is exactly that writer's.
//!    Not covered, as it
//!    needs a hypervisor and a guest: the hypercalls (log-dirty, foreign
//!    mapping, domain info are fakes), the x86 HVM/PV save ops (fake guest
//!    ops), libxl's callbacks and timing, and libxl-save-helper itself.

use std::collections::BTreeSet;
use std::env;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Debian version the series, the Build ID proof and the symbol proof
/// use: the pinned one (scripts/ci-xen-version, from Cargo.toml).
fn xen_deb_version() -> String {
    let out = Command::new("scripts/ci-xen-version")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run scripts/ci-xen-version");
    assert!(out.status.success(), "scripts/ci-xen-version failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
const LIB_FILE: &str = "libxenguest.so.4.17.0";
const LIB_SONAME: &str = "libxenguest.so.4.17";
const DEBIAN_LIB: &str = "/usr/lib/x86_64-linux-gnu/libxenguest.so.4.17.0";
const SAVE_HELPER: &str = "/usr/lib/xen-4.17/bin/libxl-save-helper";
const SERIES_DIR: &str = "patches/xen-4.17";

/// What a proof needs besides the source tree.
#[derive(Clone, Copy, PartialEq)]
enum Need {
    /// Debian's libxenguest at the pinned version.
    DebianLib,
    /// Debian's libxl-save-helper at the pinned version.
    SaveHelper,
    Tool(&'static str),
}

/// The pristine tree, or None after printing why the proof is skipped
/// (or panicking, under REMUS_CKPT_XEN_REQUIRE=1).
fn prerequisites(proof: &str, needs: &[Need]) -> Option<PathBuf> {
    let why = missing(needs);
    match why {
        Ok(src) => Some(src),
        Err(why) => {
            if env::var("REMUS_CKPT_XEN_REQUIRE").as_deref() == Ok("1") {
                panic!("{proof}: REMUS_CKPT_XEN_REQUIRE=1 but {why}");
            }
            // Straight to fd 2: the harness captures println!, and a skip
            // must show in the run's output.
            let _ = writeln!(std::io::stderr(), "SKIPPED: {proof}: {why}");
            None
        }
    }
}

fn missing(needs: &[Need]) -> Result<PathBuf, String> {
    let src = match env::var_os("REMUS_CKPT_XEN_SRC") {
        Some(s) if !s.is_empty() => PathBuf::from(s),
        _ => {
            return Err("REMUS_CKPT_XEN_SRC is not set (see docs/xen-4.17.md)".to_string());
        }
    };
    let src = src
        .canonicalize()
        .map_err(|e| format!("REMUS_CKPT_XEN_SRC {}: {e}", src.display()))?;
    for need in needs {
        match *need {
            Need::DebianLib => need_package("libxenmisc4.17", DEBIAN_LIB)?,
            Need::SaveHelper => need_package("xen-utils-4.17", SAVE_HELPER)?,
            Need::Tool(tool) => {
                let found = Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false);
                if !found {
                    return Err(format!(
                        "{tool} is not installed (scripts/install-xen-deps)"
                    ));
                }
            }
        }
    }
    Ok(src)
}

fn need_package(package: &str, file: &str) -> Result<(), String> {
    let version = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", package])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let pinned = xen_deb_version();
    match version {
        Some(v) if v == pinned && Path::new(file).exists() => Ok(()),
        Some(v) if v == pinned => Err(format!("{file} is missing")),
        Some(v) => Err(format!(
            "{package} is {v}, not {pinned} (scripts/install-xen-deps pins it)"
        )),
        None => Err(format!(
            "{package} is not installed (scripts/install-xen-deps)"
        )),
    }
}

/// target/xen-4.17, where build/xen.rs puts its results.
fn xen_out_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = match env::var_os("CARGO_TARGET_DIR") {
        Some(t) if !t.is_empty() => manifest.join(t),
        _ => manifest.join("target"),
    };
    target.join("xen-4.17")
}

/// build-info.txt of one build (`lib` or `unpatched`), checked to come
/// from the tree REMUS_CKPT_XEN_SRC names.  A missing build is a failure,
/// not a skip: the tree is there, so the build should be too.
fn build_info(subdir: &str, src: &Path, how: &str) -> Vec<(String, String)> {
    let path = xen_out_dir().join(subdir).join("build-info.txt");
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}\n  build it first: {how}", path.display()));
    let info: Vec<(String, String)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let source = lookup(&info, "source");
    assert_eq!(
        Path::new(&source),
        src,
        "{} was built from another tree; rebuild: {how}",
        path.display()
    );
    info
}

fn lookup(info: &[(String, String)], key: &str) -> String {
    info.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("build-info.txt has no {key}"))
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout_of(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

fn build_id(lib: &Path) -> String {
    let notes = stdout_of(Command::new("readelf").arg("-n").arg(lib));
    notes
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID:"))
        .map(|id| id.trim().to_string())
        .unwrap_or_else(|| panic!("{} has no Build ID note", lib.display()))
}

fn soname(lib: &Path) -> String {
    let dynamic = stdout_of(Command::new("readelf").arg("-d").arg(lib));
    dynamic
        .lines()
        .find(|l| l.contains("(SONAME)"))
        .and_then(|l| l.split('[').nth(1))
        .map(|s| s.trim_end_matches(']').to_string())
        .unwrap_or_else(|| panic!("{} has no SONAME", lib.display()))
}

/// Exported (defined) dynamic symbols as "type name@@version".
fn exported_symbols(lib: &Path) -> BTreeSet<String> {
    let out = stdout_of(Command::new("nm").args(["-D", "--defined-only"]).arg(lib));
    out.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let _address = f.next()?;
            Some(format!("{} {}", f.next()?, f.next()?))
        })
        .collect()
}

const HOW_PATCHED: &str = "REMUS_CKPT_XEN_SRC=<tree> cargo build";
const HOW_UNPATCHED: &str = "REMUS_CKPT_XEN_SRC=<tree> REMUS_CKPT_XEN_UNPATCHED=1 cargo build";

#[test]
fn unpatched_build_reproduces_debian_build_id() {
    let proof = "proof 1 (unpatched Build ID == Debian's)";
    let Some(src) = prerequisites(proof, &[Need::DebianLib, Need::Tool("readelf")]) else {
        return;
    };
    build_info("unpatched", &src, HOW_UNPATCHED);
    let ours = xen_out_dir().join("unpatched").join(LIB_FILE);

    let ours_id = build_id(&ours);
    let debian_id = build_id(Path::new(DEBIAN_LIB));
    println!(
        "{proof}\n  ours:   {ours_id}  {}\n  debian: {debian_id}  {DEBIAN_LIB}",
        ours.display()
    );
    assert_eq!(
        ours_id, debian_id,
        "the unpatched build does not reproduce Debian's"
    );
}

#[test]
fn patched_library_keeps_debian_abi() {
    let proof = "proof 2 (patched ABI == Debian's, libxl-save-helper resolves)";
    let needs = [
        Need::DebianLib,
        Need::SaveHelper,
        Need::Tool("readelf"),
        Need::Tool("nm"),
        Need::Tool("ldd"),
    ];
    let Some(src) = prerequisites(proof, &needs) else {
        return;
    };
    build_info("lib", &src, HOW_PATCHED);
    let dir = xen_out_dir().join("lib");
    let ours = dir.join(LIB_FILE);
    let debian = Path::new(DEBIAN_LIB);

    assert_eq!(soname(&ours), soname(debian), "SONAME differs");
    assert_eq!(soname(&ours), LIB_SONAME);
    assert_eq!(
        fs::read_link(dir.join(LIB_SONAME)).expect("SONAME symlink"),
        Path::new(LIB_FILE)
    );
    assert_ne!(
        build_id(&ours),
        build_id(debian),
        "the patched library is Debian's?"
    );

    let ours_syms = exported_symbols(&ours);
    let debian_syms = exported_symbols(debian);
    let added: Vec<_> = ours_syms.difference(&debian_syms).collect();
    let removed: Vec<_> = debian_syms.difference(&ours_syms).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "exported symbols differ\n  added: {added:?}\n  removed: {removed:?}"
    );
    // Every function and object carries the library's version; "A" is the
    // version definition itself.
    let unversioned: Vec<_> = ours_syms
        .iter()
        .filter(|s| !s.starts_with("A ") && !s.ends_with("@@VERS_4.17.0"))
        .collect();
    assert!(
        unversioned.is_empty(),
        "symbols without VERS_4.17.0: {unversioned:?}"
    );
    assert!(!ours_syms.iter().any(|s| s.contains("remus_ckpt")));

    let ldd = run(Command::new("ldd")
        .arg("-r")
        .arg(SAVE_HELPER)
        .env("LD_LIBRARY_PATH", &dir));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&ldd.stdout),
        String::from_utf8_lossy(&ldd.stderr)
    );
    let expected = format!("{LIB_SONAME} => {}", dir.join(LIB_SONAME).display());
    assert!(
        text.contains(&expected),
        "libxenguest not resolved from {}:\n{text}",
        dir.display()
    );
    assert!(
        !text.contains("undefined symbol"),
        "undefined symbols:\n{text}"
    );
    assert!(!text.contains("not found"), "missing libraries:\n{text}");
    println!(
        "{proof}\n  SONAME {LIB_SONAME}; {} exported symbols identical; \
         no remus_ckpt symbol exported\n  ldd -r {SAVE_HELPER}: {expected}, no undefined symbol",
        ours_syms.len()
    );
}

/// Patch file names from the series file.
fn series() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(SERIES_DIR);
    let text = fs::read_to_string(dir.join("series")).expect("read series");
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn patch_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(SERIES_DIR)
        .join(name)
}

/// Files the series modifies, relative to the tree.
fn touched_files(series: &[String]) -> BTreeSet<String> {
    series
        .iter()
        .flat_map(|p| {
            let text = fs::read_to_string(patch_path(p)).expect("read patch");
            text.lines()
                .filter_map(|l| l.strip_prefix("+++ b/"))
                .map(|f| f.split('\t').next().unwrap_or(f).trim().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn patch_cmd(dir: &Path, patch: &str) -> Command {
    let mut cmd = Command::new("patch");
    cmd.args([
        "-p1",
        "--forward",
        "--batch",
        "--no-backup-if-mismatch",
        "--reject-file=-",
    ])
    .arg("-d")
    .arg(dir)
    .arg("-i")
    .arg(patch_path(patch));
    cmd
}

#[test]
fn series_applies_once_and_refuses_twice() {
    let proof = "proof 3 (series applies to the pristine tree, refuses twice)";
    let Some(src) = prerequisites(proof, &[Need::Tool("patch")]) else {
        return;
    };
    let series = series();
    assert!(!series.is_empty());
    for p in &series {
        let text = fs::read_to_string(patch_path(p)).expect("read patch");
        // git format-patch output (scripts/patches-regen): the mbox From
        // line, then the mail header.
        assert!(
            text.starts_with("From 0000000000000000000000000000000000000000 ")
                && text.contains("\nFrom: ")
                && text.contains("\nSubject: [PATCH "),
            "{p}: not git format-patch output"
        );
    }

    let files = touched_files(&series);
    let tmp = tempfile::tempdir().expect("tempdir");
    for f in &files {
        let from = src.join(f);
        let text = fs::read_to_string(&from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        assert!(
            !text.contains("remus_ckpt"),
            "{} is not pristine",
            from.display()
        );
        let to = tmp.path().join(f);
        fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        fs::write(&to, text).expect("copy");
    }

    for p in &series {
        run(&mut patch_cmd(tmp.path(), p));
    }
    let read_all = || -> Vec<(String, String)> {
        files
            .iter()
            .map(|f| {
                (
                    f.clone(),
                    fs::read_to_string(tmp.path().join(f)).expect("read"),
                )
            })
            .collect()
    };
    let applied = read_all();

    for p in &series {
        let out = patch_cmd(tmp.path(), p).output().expect("run patch");
        assert!(!out.status.success(), "{p} applied a second time");
    }
    assert!(
        applied == read_all(),
        "a refused second application changed the files"
    );

    // The patched library was built from exactly these files.
    let mut compared = 0;
    if let Ok(text) = fs::read_to_string(xen_out_dir().join("lib/build-info.txt")) {
        if text
            .lines()
            .any(|l| l == format!("source={}", src.display()))
        {
            let tree = text
                .lines()
                .find_map(|l| l.strip_prefix("build_tree="))
                .expect("build_tree in build-info.txt");
            for (f, content) in &applied {
                let built = fs::read_to_string(Path::new(tree).join(f)).expect("read build tree");
                assert!(
                    &built == content,
                    "{f} in {tree} differs from the series' result"
                );
                compared += 1;
            }
        }
    }
    println!(
        "{proof}\n  {} patches applied to {} pristine files; second application refused, \
         files unchanged; {compared} files identical in the patched build tree",
        series.len(),
        files.len()
    );
}

#[test]
fn patched_save_path_runs_without_hypervisor() {
    let proof = "proof 4 (hooks compile at -Werror; patched save path runs)";
    let Some(src) = prerequisites(proof, &[Need::Tool("gcc")]) else {
        return;
    };
    let info = build_info("lib", &src, HOW_PATCHED);
    let tree = PathBuf::from(lookup(&info, "build_tree"));
    let logs = PathBuf::from(lookup(&info, "logs"));

    // The library build itself compiled the hooks with Xen's -Werror.
    let log = fs::read_to_string(logs.join("make-guest.log")).expect("make-guest.log");
    for obj in ["xg_sr_save.opic", "xg_sr_common.opic", "remus_ckpt.opic"] {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("-o {obj} ")))
            .unwrap_or_else(|| panic!("{obj} not compiled in make-guest.log"));
        assert!(line.contains(" -Werror "), "{obj} compiled without -Werror");
    }

    // Same warning flags as tools/Rules.mk and libs.mk, plus the tree's
    // own configuration, so that the program sees the library's code.
    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = tmp.path().join("save_path");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let guest = tree.join("tools/libs/guest");
    let libs = tree.join("tools/libs");
    let mut cc = Command::new("gcc");
    cc.args([
        "-std=gnu99",
        "-Wall",
        "-Wstrict-prototypes",
        "-Wmissing-prototypes",
        "-Wno-unused-but-set-variable",
        "-Wno-unused-local-typedefs",
        "-Werror",
        "-O2",
        "-g",
        "-pthread",
        "-D_GNU_SOURCE",
        "-D_LARGEFILE_SOURCE",
        "-D_LARGEFILE64_SOURCE",
        "-D__XEN_TOOLS__",
        "-D__XEN_INTERFACE_VERSION__=__XEN_LATEST_INTERFACE_VERSION__",
    ])
    .arg("-include")
    .arg(tree.join("tools/config.h"))
    .arg("-iquote")
    .arg(&guest)
    .arg("-iquote")
    .arg(libs.join("ctrl"))
    .arg("-iquote")
    .arg(tree.join("xen/common/libelf"))
    .arg("-I")
    .arg(tree.join("tools/include"))
    .arg("-o")
    .arg(&exe)
    .arg(manifest.join("tests/xen_417/save_path.c"))
    .arg(guest.join("xg_sr_common.c"))
    .arg(guest.join("remus_ckpt.c"))
    .arg(format!("-L{}", libs.join("ctrl").display()))
    .arg("-lxenctrl")
    .arg(format!("-Wl,-rpath,{}", libs.join("ctrl").display()));
    for lib in [
        "toolcore",
        "toollog",
        "evtchn",
        "gnttab",
        "call",
        "foreignmemory",
        "devicemodel",
    ] {
        cc.arg(format!("-Wl,-rpath-link,{}", libs.join(lib).display()));
    }
    run(&mut cc);

    let out = run(Command::new(&exe).arg(tmp.path().join("stats.fifo")));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("all checks passed"), "{text}");
    println!("{proof}\n  xg_sr_save.c, xg_sr_common.c, remus_ckpt.c compiled with -Werror\n{text}");
}
