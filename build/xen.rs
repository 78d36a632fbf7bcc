//! Xen part of the build script: a patched drop-in libxenguest for the Xen
//! of the given tree (4.17 for Debian 12, 4.20 for Debian 13: every release
//! whose line in patches/versions says `yes` in the full-build column).
//!
//! Runs only when `REMUS_CKPT_XEN_SRC` names an unpacked Xen source tree
//! (Debian's, from `scripts/xen-source`); otherwise it does nothing, so a
//! plain `cargo build` stays fast and needs no Xen build dependencies.
//! The version (major.minor) is the tree's (xen/Makefile), the series the
//! one patches/versions names for it.
//!
//! The tree is never modified: it is copied to `OUT_DIR`, csrc/ is copied
//! into `tools/libs/guest/`, `patches/<series>/series` is applied, and the
//! tools libraries up to libxenguest are built with Debian's configure
//! flags and compiler flags, so that the result differs from Debian's
//! library only by our patches.  `REMUS_CKPT_XEN_UNPATCHED=1` builds the
//! same tree without them, which must reproduce Debian's ELF Build ID
//! (tests/xen_417.rs proves both).
//!
//! Output (stable, outside the hashed `OUT_DIR`, for docs and tests):
//! `target/xen-<M.m>/lib/` (patched) or `target/xen-<M.m>/unpatched/`, each
//! with `libxenguest.so.<M.m>.0`, the `libxenguest.so.<M.m>` SONAME link and
//! `build-info.txt` (xen_version, source_version: the Debian version of the
//! tree, which `remus-ckpt doctor` compares with the installed Xen); logs in
//! `target/xen-<M.m>/logs/<mode>/`.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Library file we deliver for a release ("4.17" -> libxenguest.so.4.17.0).
fn lib_file(version: &str) -> String {
    format!("libxenguest.so.{version}.0")
}

/// Its SONAME link.
fn lib_soname(version: &str) -> String {
    format!("libxenguest.so.{version}")
}
/// Build order: libxenguest links against the in-tree libraries before it.
const LIBS_IN_ORDER: [&str; 9] = [
    "toolcore",
    "toollog",
    "evtchn",
    "gnttab",
    "call",
    "foreignmemory",
    "devicemodel",
    "ctrl",
    "guest",
];
/// csrc/ files the patched build compiles into libxenguest.
const CSRC_FILES: [&str; 2] = ["remus_ckpt.c", "remus_ckpt.h"];
/// Lines of a failing step's log quoted in the panic message.
const LOG_TAIL_LINES: usize = 25;
/// Longest quoted log line.
const LOG_LINE_MAX_CHARS: usize = 160;

/// Patched (our series applied) or unpatched (Debian's code as is).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Patched,
    Unpatched,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Patched => "patched",
            Mode::Unpatched => "unpatched",
        }
    }

    /// Directory under target/xen-<M.m>/ that receives the library.
    fn out_subdir(self) -> &'static str {
        match self {
            Mode::Patched => "lib",
            Mode::Unpatched => "unpatched",
        }
    }
}

/// A build failure: what failed, and the log that says why (if any).
struct Failure {
    what: String,
    log: Option<PathBuf>,
}

impl Failure {
    fn new(what: impl Into<String>) -> Self {
        Failure {
            what: what.into(),
            log: None,
        }
    }

    fn io(what: impl Into<String>, err: io::Error) -> Self {
        Failure::new(format!("{}: {err}", what.into()))
    }
}

type Result<T> = std::result::Result<T, Failure>;

/// Entry point, called from build.rs.  Panics with a multi-line message
/// (what failed, the log file, its last lines) when the Xen build fails:
/// a build script has no other way to stop the build with context.
pub fn main() {
    println!("cargo:rerun-if-env-changed=REMUS_CKPT_XEN_SRC");
    println!("cargo:rerun-if-env-changed=REMUS_CKPT_XEN_UNPATCHED");
    println!("cargo:rerun-if-env-changed=REMUS_CKPT_XEN_CHECK");
    println!("cargo:rerun-if-changed=patches");
    println!("cargo:rerun-if-changed=scripts/xen-compile-check");
    println!("cargo:rerun-if-changed=scripts/xen-series");
    println!("cargo:rerun-if-changed=csrc");

    let src = match env::var_os("REMUS_CKPT_XEN_SRC") {
        Some(s) if !s.is_empty() => PathBuf::from(s),
        _ => return,
    };
    let mode = match env::var("REMUS_CKPT_XEN_UNPATCHED").as_deref() {
        Ok("1") => Mode::Unpatched,
        _ => Mode::Patched,
    };
    let compile_only = match env::var("REMUS_CKPT_XEN_CHECK").as_deref() {
        Ok("compile") => true,
        Ok("") | Err(_) => false,
        Ok(other) => panic!(
            "\n\nREMUS_CKPT_XEN_CHECK={other}: the only value is `compile` \
             (apply the series and compile the save code, no full build)\n"
        ),
    };

    // Which series serves this tree (patches/versions), and whether this
    // version gets the full libxenguest build or the compile check.
    let line = match select_series(&src) {
        Ok(line) => line,
        Err(f) => panic!(
            "{}",
            failure_message(&src, "choosing the Xen patch series", &f)
        ),
    };
    if compile_only || !line.full_build {
        if mode == Mode::Unpatched {
            panic!(
                "\n\nREMUS_CKPT_XEN_UNPATCHED=1 needs the full build, which Xen {} \
                 does not get (patches/versions; REMUS_CKPT_XEN_CHECK={})\n",
                line.version,
                if compile_only { "compile" } else { "unset" }
            );
        }
        match compile_check(&src, &line) {
            Ok(summary) => println!("cargo:warning={summary}"),
            Err(f) => panic!("{}", failure_message(&src, "the Xen compile check", &f)),
        }
        return;
    }

    match build(&src, mode, &line) {
        Ok(dir) => println!(
            "cargo:warning=Xen {} libxenguest ({}): {}",
            line.version,
            mode.name(),
            dir.join(lib_file(&line.version)).display()
        ),
        Err(f) => panic!(
            "{}",
            failure_message(
                &src,
                &format!(
                    "building the {} Xen {} libxenguest",
                    mode.name(),
                    line.version
                ),
                &f
            )
        ),
    }
}

/// One line of patches/versions, matched to the tree.
struct SeriesLine {
    /// The tree's version, "4.1".
    version: String,
    /// patches/<series>/.
    series: String,
    /// Whether cargo build builds libxenguest for it (`yes` in the
    /// full-build column), rather than the compile check.
    full_build: bool,
}

/// Find the series for the tree's version in patches/versions (through
/// scripts/xen-series, its one reader); a clear error listing the
/// supported versions when there is none.
fn select_series(src: &Path) -> Result<SeriesLine> {
    let (major, minor) = tree_version(src)?;
    let version = format!("{major}.{minor}");
    let line = xen_series(&["for", &version]).map_err(|f| {
        Failure::new(format!(
            "{}\n  (the tree is Xen {version}: {})",
            f.what,
            src.join("xen/Makefile").display()
        ))
    })?;
    // key=value fields, as scripts/xen-series prints them.
    let field = |key: &str| -> Result<String> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_string)
            .ok_or_else(|| Failure::new(format!("scripts/xen-series printed no {key}=: {line}")))
    };
    Ok(SeriesLine {
        version,
        series: field("series")?,
        full_build: field("full")? == "yes",
    })
}

/// Run scripts/xen-series (the one reader of patches/versions and the
/// series files) and return its stdout; its stderr is the error.
fn xen_series(args: &[&str]) -> Result<String> {
    let script = manifest_dir()?.join("scripts/xen-series");
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Failure::io(format!("running {}", script.display()), e))?;
    if !out.status.success() {
        // Exit 2: no line serves the version (its stderr lists those that do).
        let what = if out.status.code() == Some(2) {
            "unsupported Xen version".to_string()
        } else {
            format!("scripts/xen-series {}", args.join(" "))
        };
        return Err(Failure::new(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim_end()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
}

/// Apply the series to a scratch copy and compile the patched save code
/// with the tree's own Makefiles (scripts/xen-compile-check).  Returns the
/// one-line summary for cargo:warning.
fn compile_check(src: &Path, line: &SeriesLine) -> Result<String> {
    let manifest = manifest_dir()?;
    let target = target_dir(&manifest);
    let src = src
        .canonicalize()
        .map_err(|e| Failure::io(format!("REMUS_CKPT_XEN_SRC {}", src.display()), e))?;
    let name = src
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tree".to_string());
    let base = target.join("xen-check");
    let scratch = base.join(&name);
    let logs = base.join("logs");
    fs::create_dir_all(&logs)
        .map_err(|e| Failure::io(format!("creating {}", logs.display()), e))?;
    let log = logs.join(format!("{name}.log"));
    let _ = fs::remove_file(&log);
    let mut cmd = Command::new("bash");
    cmd.arg(manifest.join("scripts/xen-compile-check"))
        .arg(&src)
        .arg(&scratch);
    // cargo's jobserver and flags are not for Xen's Makefiles.
    scrub_cargo_env(&mut cmd);
    run_logged(
        &mut cmd,
        &log,
        &format!(
            "compile check of Xen {} with patches/{}/ (scripts/xen-compile-check)",
            line.version, line.series
        ),
    )?;
    let text = fs::read_to_string(&log).unwrap_or_default();
    let result = text
        .lines()
        .rev()
        .find(|l| l.starts_with("RESULT "))
        .unwrap_or("RESULT ?")
        .to_string();
    Ok(format!(
        "Xen {} compile check, patches/{}/: {} (no full build; log {})",
        line.version,
        line.series,
        result.trim_start_matches("RESULT "),
        log.display()
    ))
}

fn failure_message(src: &Path, title: &str, f: &Failure) -> String {
    let mut msg = format!(
        "\n\n{title} failed\n  \
         source tree (REMUS_CKPT_XEN_SRC): {}\n  what failed: {}\n",
        src.display(),
        f.what
    );
    if let Some(log) = &f.log {
        let _ = writeln!(msg, "  log: {}", log.display());
        match fs::read_to_string(log) {
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                let start = lines.len().saturating_sub(LOG_TAIL_LINES);
                let _ = writeln!(msg, "  last {} lines:", lines.len() - start);
                for line in &lines[start..] {
                    // V=1 compiler command lines are long; the error is not.
                    let cut: String = line.chars().take(LOG_LINE_MAX_CHARS).collect();
                    let more = if cut.len() < line.len() { " ..." } else { "" };
                    let _ = writeln!(msg, "    | {cut}{more}");
                }
            }
            Err(e) => {
                let _ = writeln!(msg, "  (log unreadable: {e})");
            }
        }
    }
    msg.push_str(
        "  hints: scripts/install-xen-deps installs the build packages; \
         scripts/xen-source prints a pristine tree; docs/xen-4.17.md, docs/xen-versions.md\n",
    );
    msg
}

/// Directories the build uses.
struct Dirs {
    manifest: PathBuf,
    /// Scratch copy of the tree (under OUT_DIR).
    work: PathBuf,
    /// Stable output directory (target/xen-<M.m>/<lib|unpatched>).
    out: PathBuf,
    logs: PathBuf,
}

fn dirs(mode: Mode, version: &str) -> Result<Dirs> {
    let manifest = manifest_dir()?;
    let out_dir =
        PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| Failure::new("OUT_DIR unset"))?);
    let target = target_dir(&manifest);
    let base = target.join(format!("xen-{version}"));
    Ok(Dirs {
        work: out_dir.join(format!("xen-{}", mode.name())),
        out: base.join(mode.out_subdir()),
        logs: base.join("logs").join(mode.name()),
        manifest,
    })
}

fn build(src: &Path, mode: Mode, line: &SeriesLine) -> Result<PathBuf> {
    let version = line.version.as_str();
    let lib = lib_file(version);
    let d = dirs(mode, version)?;
    let src = src
        .canonicalize()
        .map_err(|e| Failure::io(format!("REMUS_CKPT_XEN_SRC {}", src.display()), e))?;
    let target_arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if target_arch != "x86_64" {
        return Err(Failure::new(format!(
            "the Xen {version} build supports x86_64 only (target arch: {target_arch})"
        )));
    }

    // The scratch copy is deleted and recreated: never let that be the source.
    if src.starts_with(&d.work) {
        return Err(Failure::new(format!(
            "REMUS_CKPT_XEN_SRC is inside the build's own scratch tree {}",
            d.work.display()
        )));
    }
    let patch_dir = d.manifest.join("patches").join(&line.series);
    let series = read_series(&line.series)?;
    check_pristine(&src, &patch_dir, &series)?;

    let stamp = stamp_text(&src, mode, &d.manifest, &patch_dir, &series)?;
    let stamp_path = d.out.join("inputs.stamp");
    if d.out.join(&lib).is_file()
        && fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str())
    {
        return Ok(d.out);
    }

    // From here on the scratch tree changes: invalidate the published
    // build first, so that a failed build is never taken for a good one.
    for stale in ["inputs.stamp", "build-info.txt"] {
        let path = d.out.join(stale);
        if path.exists() {
            fs::remove_file(&path)
                .map_err(|e| Failure::io(format!("removing {}", path.display()), e))?;
        }
    }
    recreate_dir(&d.logs)?;
    let tree = d.work.join("xen");
    recreate_dir(&d.work)?;
    run_logged(
        Command::new("cp").arg("-a").arg(&src).arg(&tree),
        &d.logs.join("copy.log"),
        "copying the source tree to OUT_DIR",
    )?;

    if mode == Mode::Patched {
        let guest = tree.join("tools/libs/guest");
        for f in CSRC_FILES {
            let from = d.manifest.join("csrc").join(f);
            fs::copy(&from, guest.join(f))
                .map_err(|e| Failure::io(format!("copying {}", from.display()), e))?;
        }
        let log = d.logs.join("patch.log");
        for p in &series {
            run_logged(
                Command::new("patch")
                    .args(["-p1", "--forward", "--batch", "-d"])
                    .arg(&tree)
                    .arg("-i")
                    .arg(patch_dir.join(p)),
                &log,
                &format!("applying patches/{}/{p}", line.series),
            )?;
        }
    }

    configure(&tree, &d.logs, version)?;
    make_libs(&tree, &d.logs)?;
    install(&tree, &src, mode, &d, &stamp, version)?;
    Ok(d.out)
}

/// XEN_VERSION.XEN_SUBVERSION from the tree's xen/Makefile.
fn tree_version(src: &Path) -> Result<(u32, u32)> {
    let makefile = src.join("xen/Makefile");
    let text = fs::read_to_string(&makefile).map_err(|e| {
        Failure::io(
            format!(
                "reading {} (is REMUS_CKPT_XEN_SRC a Xen source tree?)",
                makefile.display()
            ),
            e,
        )
    })?;
    let field = |name: &str| -> Option<String> {
        text.lines().find_map(|l| {
            let l = l
                .trim_start()
                .strip_prefix("export ")
                .unwrap_or(l)
                .trim_start();
            let rest = l.strip_prefix(name)?.trim_start();
            let value = rest.strip_prefix("?=").or_else(|| rest.strip_prefix('='))?;
            Some(value.trim().to_string())
        })
    };
    let (major, minor) = match (field("XEN_VERSION"), field("XEN_SUBVERSION")) {
        (Some(a), Some(b)) => (a, b),
        _ => {
            return Err(Failure::new(format!(
                "{} has no XEN_VERSION/XEN_SUBVERSION",
                makefile.display()
            )))
        }
    };
    match (major.parse(), minor.parse()) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        _ => Err(Failure::new(format!(
            "{}: XEN_VERSION/XEN_SUBVERSION are not numbers ({major}.{minor})",
            makefile.display()
        ))),
    }
}

/// Patch file names from the quilt-style `series` file, in order
/// (scripts/xen-series reads it).
fn read_series(series: &str) -> Result<Vec<String>> {
    Ok(xen_series(&["patches", series])?
        .lines()
        .map(str::to_string)
        .collect())
}

/// Refuse a tree that already carries our hooks: applying the series to
/// it would fail half-way, or (worse) build something else than intended.
/// Every file the series touches is checked for the `remus_ckpt` marker.
fn check_pristine(src: &Path, patch_dir: &Path, series: &[String]) -> Result<()> {
    for p in series {
        let path = patch_dir.join(p);
        let text = fs::read_to_string(&path)
            .map_err(|e| Failure::io(format!("reading {}", path.display()), e))?;
        for target in text.lines().filter_map(|l| l.strip_prefix("+++ b/")) {
            let target = target.split('\t').next().unwrap_or(target).trim();
            let file = src.join(target);
            // A file the series creates does not exist in a pristine tree.
            let Ok(content) = fs::read_to_string(&file) else {
                continue;
            };
            if content.contains("remus_ckpt") {
                return Err(Failure::new(format!(
                    "the tree is already patched: {} mentions remus_ckpt.\n  \
                     REMUS_CKPT_XEN_SRC must name a pristine tree (scripts/xen-source \
                     prints one); the build applies {} to its own copy",
                    file.display(),
                    patch_dir.display()
                )));
            }
        }
    }
    Ok(())
}

/// Everything that decides the output, so that an unchanged build is
/// skipped.  Files are identified by content hash, not by mtime.
fn stamp_text(
    src: &Path,
    mode: Mode,
    manifest: &Path,
    patch_dir: &Path,
    series: &[String],
) -> Result<String> {
    let mut s = format!("tree={}\nmode={}\n", src.display(), mode.name());
    let mut add = |path: &Path| -> Result<()> {
        let data =
            fs::read(path).map_err(|e| Failure::io(format!("reading {}", path.display()), e))?;
        let _ = writeln!(
            s,
            "{} {:016x} {}",
            path.display(),
            fnv1a64(&data),
            data.len()
        );
        Ok(())
    };
    add(&src.join("xen/Makefile"))?;
    if mode == Mode::Patched {
        add(&patch_dir.join("series"))?;
        for p in series {
            add(&patch_dir.join(p))?;
        }
        for f in CSRC_FILES {
            add(&manifest.join("csrc").join(f))?;
        }
    }
    Ok(s)
}

/// FNV-1a: enough to notice a changed input; no dependency needed.
fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Compiler flags exactly as debian/rules builds the tools (hardening=+all,
/// with the source path mapped to "." so the tree's location does not
/// change the objects), which is what makes the unpatched Build ID match.
struct Flags {
    cflags: String,
    ldflags: String,
}

fn dpkg_buildflags(var: &str, maint_options: &str, logs: &Path) -> Result<String> {
    let out = Command::new("dpkg-buildflags")
        .args(["--get", var])
        .env("DEB_BUILD_MAINT_OPTIONS", maint_options)
        .current_dir("/")
        .output()
        .map_err(|e| Failure::io("running dpkg-buildflags (apt-get install dpkg-dev)", e))?;
    if !out.status.success() {
        let log = logs.join("dpkg-buildflags.log");
        let _ = fs::write(&log, &out.stderr);
        return Err(Failure {
            what: format!("dpkg-buildflags --get {var} failed"),
            log: Some(log),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn flags(tree: &Path, logs: &Path) -> Result<Flags> {
    let hardening = "hardening=+all";
    let cflags = dpkg_buildflags(
        "CFLAGS",
        "hardening=+all reproducible=-fixfilepath,-fixdebugpath",
        logs,
    )?;
    let cppflags = dpkg_buildflags("CPPFLAGS", hardening, logs)?;
    let ldflags = dpkg_buildflags("LDFLAGS", hardening, logs)?;
    Ok(Flags {
        cflags: format!("{cflags} -ffile-prefix-map={}=. {cppflags}", tree.display()),
        ldflags,
    })
}

/// Removes what cargo (its jobserver, the caller's flags) leaks into a
/// child's environment: none of it is for Xen's configure and Makefiles.
fn scrub_cargo_env(cmd: &mut Command) -> &mut Command {
    for var in [
        "CFLAGS",
        "CPPFLAGS",
        "LDFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "MAKELEVEL",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// This crate's directory (build scripts run with it set).
fn manifest_dir() -> Result<PathBuf> {
    env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .ok_or_else(|| Failure::new("CARGO_MANIFEST_DIR unset"))
}

/// cargo's target directory: CARGO_TARGET_DIR when the user set it (build
/// scripts inherit the environment; a relative one is taken from the
/// crate, an absolute one as it is), else this crate's target/.
fn target_dir(manifest: &Path) -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(t) if !t.is_empty() => manifest.join(t),
        _ => manifest.join("target"),
    }
}

/// Environment of every configure/make step: Debian's, and nothing that
/// cargo or the caller's shell could leak into the build.
fn xen_env(cmd: &mut Command) -> &mut Command {
    scrub_cargo_env(cmd)
        .env("DEB_BUILD_MAINT_OPTIONS", "hardening=+all")
        .env("WGET", "/bin/false")
        .env("GIT", "/bin/false")
        .env("CC", "x86_64-linux-gnu-gcc")
        .env("LD", "x86_64-linux-gnu-ld")
        .env("XEN_COMPILE_ARCH", "x86_64")
        .env("XEN_TARGET_ARCH", "x86_64")
}

/// Debian's patches delete configure and config.{sub,guess}: regenerate
/// them as the package build does, then configure the tools only.
fn configure(tree: &Path, logs: &Path, version: &str) -> Result<()> {
    for f in ["config.sub", "config.guess"] {
        let from = Path::new("/usr/share/misc").join(f);
        fs::copy(&from, tree.join(f)).map_err(|e| {
            Failure::io(
                format!("copying {} (apt-get install autotools-dev)", from.display()),
                e,
            )
        })?;
    }
    let log = logs.join("autoconf.log");
    run_logged(
        xen_env(Command::new("autoconf").arg("-f").current_dir(tree)),
        &log,
        "autoconf (top level)",
    )?;
    run_logged(
        xen_env(
            Command::new("autoconf")
                .arg("-f")
                .current_dir(tree.join("tools")),
        ),
        &log,
        "autoconf (tools)",
    )?;
    run_logged(
        xen_env(Command::new("autoheader").current_dir(tree.join("tools"))),
        &log,
        "autoheader (tools)",
    )?;

    // debian/rules' configure flags.  ac_cv_header_*=no: Debian's buildd
    // has no libbz2-dev, liblzo2-dev or valgrind; a host that has them
    // would otherwise build a different library.
    let leaf_dir = format!("--with-libexec-leaf-dir=xen-{version}");
    run_logged(
        xen_env(Command::new("./configure").current_dir(tree)).args([
            "--disable-xen",
            "--disable-docs",
            "--disable-stubdom",
            "--prefix=/usr",
            "--includedir=/usr/include",
            "--libdir=/usr/lib/x86_64-linux-gnu",
            "--with-libexec-libdir-suffix=/x86_64-linux-gnu",
            &leaf_dir,
            "--sysconfdir=/etc",
            "--localstatedir=/var",
            "--disable-ocamltools",
            "--disable-golang",
            "--disable-monitors",
            "--disable-qemu-traditional",
            "--disable-rombios",
            "--disable-seabios",
            "--disable-ipxe",
            "--disable-xsmpolicy",
            "--disable-pvshim",
            "--with-system-qemu=/usr/libexec/xen-qemu-system-i386",
            "ac_cv_header_bzlib_h=no",
            "ac_cv_header_lzo_lzo1x_h=no",
            "ac_cv_header_valgrind_memcheck_h=no",
        ]),
        &logs.join("configure.log"),
        "configure",
    )
}

/// tools/include, then the libraries in link order, up to libxenguest.
fn make_libs(tree: &Path, logs: &Path) -> Result<()> {
    let f = flags(tree, logs)?;
    // cargo passes its job count; the jobserver is not handed on.
    let jobs = env::var("NUM_JOBS").unwrap_or_else(|_| "2".to_string());
    let make = |dir: &str, log: &str| -> Result<()> {
        run_logged(
            xen_env(&mut Command::new("make"))
                .arg("-C")
                .arg(tree.join(dir))
                .arg(format!("-j{jobs}"))
                .args([
                    "CC=x86_64-linux-gnu-gcc",
                    "LD=x86_64-linux-gnu-ld",
                    "XEN_COMPILE_ARCH=x86_64",
                    "XEN_TARGET_ARCH=x86_64",
                    "V=1",
                ])
                .arg(format!("EXTRA_CFLAGS_XEN_TOOLS={}", f.cflags))
                .arg(format!("PREPEND_LDFLAGS_XEN_TOOLS={}", f.ldflags)),
            &logs.join(log),
            &format!("make -C {dir}"),
        )
    };
    make("tools/include", "make-include.log")?;
    for lib in LIBS_IN_ORDER {
        make(&format!("tools/libs/{lib}"), &format!("make-{lib}.log"))?;
    }
    Ok(())
}

/// Publish the library atomically (a reader never sees half a file) with
/// its SONAME link, build-info.txt and the stamp, which goes last.
fn install(
    tree: &Path,
    src: &Path,
    mode: Mode,
    d: &Dirs,
    stamp: &str,
    version: &str,
) -> Result<()> {
    let lib = lib_file(version);
    let built = tree.join("tools/libs/guest").join(&lib);
    fs::create_dir_all(&d.out)
        .map_err(|e| Failure::io(format!("creating {}", d.out.display()), e))?;
    let tmp = d.out.join(format!(".{lib}.tmp"));
    fs::copy(&built, &tmp).map_err(|e| Failure::io(format!("copying {}", built.display()), e))?;
    fs::rename(&tmp, d.out.join(&lib))
        .map_err(|e| Failure::io(format!("installing {}", d.out.join(&lib).display()), e))?;
    let link = d.out.join(lib_soname(version));
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(&lib, &link)
        .map_err(|e| Failure::io(format!("creating {}", link.display()), e))?;
    // source_version: the Debian version of the tree (empty for a tree
    // that is not Debian's), compared by `doctor` with the installed Xen.
    let info = format!(
        "# Written by build/xen.rs; read by tests/xen_417.rs and remus-ckpt doctor.\n\
         mode={}\nxen_version={version}\nsource_version={}\nsource={}\n\
         build_tree={}\nlogs={}\n",
        mode.name(),
        debian_version(src).unwrap_or_default(),
        src.display(),
        tree.display(),
        d.logs.display()
    );
    let write = |name: &str, text: &str| -> Result<()> {
        let path = d.out.join(name);
        fs::write(&path, text).map_err(|e| Failure::io(format!("writing {}", path.display()), e))
    };
    write("build-info.txt", &info)?;
    write("inputs.stamp", stamp)
}

/// The Debian version at the top of the tree's debian/changelog, if any.
fn debian_version(tree: &Path) -> Option<String> {
    let changelog = fs::read_to_string(tree.join("debian/changelog")).ok()?;
    let first = changelog.lines().next()?;
    Some(first.split('(').nth(1)?.split(')').next()?.to_string())
}

fn recreate_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir)
            .map_err(|e| Failure::io(format!("removing {}", dir.display()), e))?;
    }
    fs::create_dir_all(dir).map_err(|e| Failure::io(format!("creating {}", dir.display()), e))
}

/// Run one step with stdout and stderr appended to `log`.
fn run_logged(cmd: &mut Command, log: &Path, what: &str) -> Result<()> {
    let open = || {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Failure::io(format!("opening log {}", log.display()), e))
    };
    let out = open()?;
    let err = out
        .try_clone()
        .map_err(|e| Failure::io(format!("duplicating log {}", log.display()), e))?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| Failure {
            what: format!("{what}: cannot run {:?}: {e}", cmd.get_program()),
            log: None,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(Failure {
            what: format!("{what} ({status})"),
            log: Some(log.to_path_buf()),
        })
    }
}
