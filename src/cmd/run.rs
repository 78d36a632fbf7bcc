//! `remus-ckpt run -- xl remus …`: Remus with the controller attached.
//!
//! The patched libxenguest is put in front of libxl-save-helper alone:
//! libxl starts the helper named by LIBXL_SAVE_HELPER, so `run` writes a
//! small wrapper that sets LD_LIBRARY_PATH and the two FIFO paths for that
//! one process and execs Debian's helper. xl, libxl and every other Xen
//! tool keep Debian's libraries.
//!
//! `remus-ckpt run -- remus …` (Xen 4.0–4.4's Python tool, which saves in
//! its own process): the same settings go into that process's environment
//! ([`super::py_remus`]).
//!
//! `run` runs as root, so everything root executes or loads on its behalf
//! (the library directory and what is in it, the helper) must pass
//! [`crate::trust`], and the wrapper and FIFOs live in a fresh private
//! directory ([`crate::runtime_dir`]) that goes on every way out.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;

use super::py_remus::{self, PyRemus};
use super::watch::{consume, finish_metrics, print_outcome, start_metrics};
use crate::disk::DiskArgs;
use crate::fifo;
use crate::metrics::MetricsArgs;
use crate::policy::PolicyArgs;
use crate::runtime_dir;
use crate::trust::{self, Leaf};
use crate::xen_install;

/// Debian's save helper for the installed Xen (4.17 when none is).
pub fn default_helper() -> PathBuf {
    xen_install::helper_path(xen_install::major_minor())
}

/// The SONAME file the patched build leaves in its lib directory, for the
/// installed Xen: libxenguest.so.4.17 (Debian 12), .4.20 (Debian 13).
pub fn lib_soname() -> String {
    xen_install::lib_soname(xen_install::major_minor())
}
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  remus-ckpt run --policy threshold --lmin 4MiB --lmax 16MiB --csv run.csv -- \\\n      xl remus -F -b -n -d guest dummyhost\n\nWith an adaptive policy and no -i, `-i 1` is passed to xl so that the\npacing gate in the save helper, steered by the controller, sets the interval.\n\nXen 4.1's Python remus (4.0-4.4), which saves in its own process:\n  remus-ckpt run --policy threshold --lib-dir /path/to/patched/tools/libxc \\\n      --csv run.csv -- remus guest backup-host\n(the library and the channels go into remus's environment; -i 1 likewise)."
)]
pub struct RunArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,

    #[command(flatten)]
    pub disk: DiskArgs,

    #[command(flatten)]
    pub metrics: MetricsArgs,

    /// Where to write one row per checkpoint.
    #[arg(long, value_name = "FILE")]
    pub csv: PathBuf,

    /// Directory holding the patched libxenguest.so.<major.minor> of the
    /// installed Xen (default: target/xen-<major.minor>/lib next to this
    /// binary's target directory, else the package's
    /// /usr/lib/remus-ckpt/xen-<major.minor>).
    #[arg(long, value_name = "DIR")]
    pub lib_dir: Option<PathBuf>,

    /// The save helper to wrap (default: the installed Xen's,
    /// /usr/lib/xen-<major.minor>/bin/libxl-save-helper).
    #[arg(long, value_name = "PATH")]
    pub helper: Option<PathBuf>,

    /// No live status line.
    #[arg(long, short)]
    pub quiet: bool,

    /// The Remus command: `xl [xl options] remus [remus options] DOMAIN HOST`,
    /// or Xen 4.0-4.4's Python `remus [options] DOMAIN [HOST]` (then
    /// --lib-dir is required and --helper does not apply).
    #[arg(last = true, required = true, value_name = "REMUS COMMAND")]
    pub command: Vec<OsString>,
}

/// Where the Debian package (scripts/build-deb) installs the patched
/// library for the installed Xen: beside Debian's own, diverting nothing.
pub fn packaged_lib_dir() -> PathBuf {
    PathBuf::from(format!(
        "/usr/lib/remus-ckpt/xen-{}",
        xen_install::major_minor()
    ))
}

/// The lib directory next to this binary: target/{debug,release}/remus-ckpt
/// -> target/xen-<major.minor>/lib, for the installed Xen.
pub fn default_lib_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(
        exe.parent()?
            .parent()?
            .join(format!("xen-{}", xen_install::major_minor()))
            .join("lib"),
    )
}

/// `--lib-dir`, or else the first of [`default_lib_dir`] and
/// [`packaged_lib_dir`] that holds the library.
pub fn lib_dir(arg: Option<&Path>) -> Result<PathBuf> {
    let candidates: Vec<PathBuf> = match arg {
        Some(d) => vec![d.to_path_buf()],
        None => default_lib_dir()
            .into_iter()
            .chain(std::iter::once(packaged_lib_dir()))
            .collect(),
    };
    let soname = lib_soname();
    let Some(dir) = candidates.iter().find(|d| d.join(&soname).exists()) else {
        let searched: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
        bail!(
            "no {soname} in {}: install the remus-ckpt package, build the patched \
             library (REMUS_CKPT_XEN_SRC=$(scripts/xen-source) cargo build --release), \
             or pass --lib-dir",
            searched.join(" nor in ")
        );
    };
    dir.canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))
}

/// What root executes and loads for `run`, each checked by
/// [`trust::check`] and with symbolic links resolved.
#[derive(Debug)]
pub struct Executed {
    pub lib_dir: PathBuf,
    pub helper: PathBuf,
}

/// What a refusal below says about why it matters.
const EXECUTED: &str = "root would load or execute it";

/// Checks that no unprivileged user can change the library directory,
/// anything in it (the loader searches all of it), or the helper, nor any
/// directory above them. `run` refuses to start otherwise; `doctor`
/// reports it.
pub fn check_executed(lib_dir: &Path, helper: &Path) -> Result<Executed> {
    Ok(Executed {
        lib_dir: check_lib_dir(lib_dir)?,
        helper: check_helper(helper)?,
    })
}

/// The library-directory half of [`check_executed`].
pub fn check_lib_dir(lib_dir: &Path) -> Result<PathBuf> {
    check_lib_dir_for(lib_dir, &lib_soname())
}

/// [`check_lib_dir`] for the library `soname` (the Python `remus` of Xen
/// 4.0-4.4 loads an older one).
pub fn check_lib_dir_for(lib_dir: &Path, soname: &str) -> Result<PathBuf> {
    let lib_dir = trust::check(lib_dir, Leaf::Private)
        .with_context(|| format!("refusing the library directory ({EXECUTED})"))?;
    trust::check(&lib_dir.join(soname), Leaf::Private)
        .with_context(|| format!("refusing the patched library ({EXECUTED})"))?;
    let entries = std::fs::read_dir(&lib_dir)
        .with_context(|| format!("cannot list {}", lib_dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", lib_dir.display()))?;
        trust::check(&entry.path(), Leaf::Private).with_context(|| {
            format!(
                "refusing a file in the library directory {} ({EXECUTED})",
                lib_dir.display()
            )
        })?;
    }
    Ok(lib_dir)
}

/// The helper half of [`check_executed`].
pub fn check_helper(helper: &Path) -> Result<PathBuf> {
    trust::check(helper, Leaf::Private)
        .with_context(|| format!("refusing the save helper ({EXECUTED})"))
}

/// Where `remus` sits in an xl command line, whether it has `-i`, and the
/// domain it names.
#[derive(Debug, PartialEq, Eq)]
pub struct XlRemus {
    pub remus_index: usize,
    pub has_interval: bool,
    /// The first operand after `remus`: a domain name or domid.
    pub domain: Option<String>,
}

/// Finds the `remus` subcommand and an interval option in `xl … remus …`.
pub fn parse_xl(command: &[OsString]) -> Result<XlRemus> {
    let first = command
        .first()
        .ok_or_else(|| anyhow!("no command after --"))?;
    if Path::new(first).file_name().and_then(|n| n.to_str()) != Some("xl") {
        bail!(
            "the command after -- must be `xl … remus …`, or Xen 4.0-4.4's Python \
             `remus …` (got {})",
            first.to_string_lossy()
        );
    }
    let remus_index = command
        .iter()
        .position(|a| a == "remus")
        .ok_or_else(|| anyhow!("the xl command has no `remus` subcommand"))?;
    let mut has_interval = false;
    let mut domain = None;
    let mut args = command[remus_index + 1..]
        .iter()
        .map(|a| a.to_string_lossy());
    while let Some(arg) = args.next() {
        if arg == "--" || !arg.starts_with('-') || arg == "-" {
            if arg != "--" && domain.is_none() {
                domain = Some(arg.into_owned());
            }
            continue;
        }
        if arg.starts_with("--") {
            has_interval |= arg == "--interval" || arg.starts_with("--interval=");
            continue;
        }
        // A cluster of short options: `-Fbi100`, `-i 100`, `-s cmd`.
        for (i, c) in arg.char_indices().skip(1) {
            if "isN".contains(c) {
                has_interval |= c == 'i';
                if i + c.len_utf8() == arg.len() {
                    args.next();
                }
                break;
            }
        }
    }
    Ok(XlRemus {
        remus_index,
        has_interval,
        domain,
    })
}

/// The `name` label of the metrics: the domain xl was given, unless it
/// was a domid (the records carry that).
pub fn domain_name(xl: &XlRemus) -> Option<String> {
    domain_label(xl.domain.as_deref())
}

/// A domain operand as the metrics' `name` label: none for a domid.
fn domain_label(domain: Option<&str>) -> Option<String> {
    domain
        .filter(|d| !d.is_empty() && !d.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string)
}

/// Single-quotes `s` for /bin/sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow!("{} is not UTF-8", p.display()))
}

/// What the save side needs to be steered: the control FIFO, and the
/// interval its gate falls back to once the controller is gone.
#[derive(Debug, Clone, Copy)]
pub struct Steering<'a> {
    pub control: &'a Path,
    /// The policy's starting interval (--interval), in ms.
    pub fallback_ms: u32,
}

/// Writes the LIBXL_SAVE_HELPER wrapper into `dir`, a fresh private
/// directory: created exclusively (never through a link), mode exactly 0700.
pub fn write_wrapper(
    dir: &Path,
    lib_dir: &Path,
    helper: &Path,
    stats: &Path,
    steering: Option<Steering>,
) -> Result<PathBuf> {
    let path = dir.join("save-helper");
    let mut text = String::from(
        "#!/bin/sh\n# Written by remus-ckpt run: the patched libxenguest for this helper only.\n",
    );
    text += &format!(
        "LD_LIBRARY_PATH={}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}\nexport LD_LIBRARY_PATH\n",
        sh_quote(path_str(lib_dir)?)
    );
    text += &format!(
        "REMUS_CKPT_STATS={}\nexport REMUS_CKPT_STATS\n",
        sh_quote(path_str(stats)?)
    );
    if let Some(steering) = steering {
        text += &format!(
            "REMUS_CKPT_CONTROL={}\nexport REMUS_CKPT_CONTROL\n",
            sh_quote(path_str(steering.control)?)
        );
        text += &format!(
            "REMUS_CKPT_FALLBACK_MS={}\nexport REMUS_CKPT_FALLBACK_MS\n",
            steering.fallback_ms
        );
    }
    text += &format!("exec {} \"$@\"\n", sh_quote(path_str(helper)?));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    // The umask may have narrowed the mode (no x bit: no exec).
    file.set_permissions(std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot chmod 0700 {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Runs Remus; returns xl's exit code (128 + signal if it was killed), or 1
/// when xl succeeded but the CSV could not be fully written.
///
/// Everything made here lives in the runtime directory, removed when `dir`
/// drops: on a normal exit, when xl fails, on every error return after it
/// exists, and after SIGINT/SIGTERM/SIGHUP, which are caught (forwarded to
/// xl once it runs) from before the directory exists.
pub fn run(args: &RunArgs) -> Result<i32> {
    args.policy.validate()?;
    let target = Target::parse(&args.command)?;
    let policy = args.policy.build()?;
    let adaptive = policy.is_adaptive();
    let loaded = match &target {
        Target::Xl(_) => Loaded::Helper(xl_executed(args)?),
        Target::Python(remus) => Loaded::InProcess(py_remus_lib_dir(args, remus, adaptive)?),
    };
    let program = target.program();
    // Before the command starts: a port in use stops here, not with Remus
    // running.
    let mut exporter = start_metrics(
        &args.metrics,
        &args.policy,
        &args.disk,
        target.domain_name(),
    )?;

    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
    .context("cannot install signal handlers")?;
    let signal_handle = signals.handle();

    let dir = runtime_dir::create()?;
    let stats = dir.path().join("stats.fifo");
    let control = dir.path().join("control.fifo");
    fifo::create_private_fifo(&stats)?;
    fifo::create_private_fifo(&control)?;
    // A fixed policy observes only: stock Remus paces with xl's -i.
    let steering = adaptive.then(|| Steering {
        control: &control,
        fallback_ms: args.policy.initial_ms(),
    });
    let environment: Vec<(&str, OsString)> = match &loaded {
        Loaded::Helper(executed) => {
            let wrapper = write_wrapper(
                dir.path(),
                &executed.lib_dir,
                &executed.helper,
                &stats,
                steering,
            )?;
            vec![("LIBXL_SAVE_HELPER", wrapper.into_os_string())]
        }
        Loaded::InProcess(lib_dir) => py_remus::environment(
            lib_dir,
            std::env::var_os("LD_LIBRARY_PATH"),
            &stats,
            steering,
        ),
    };

    let mut command = args.command.clone();
    if adaptive && !target.has_interval() {
        let at = target.interval_index();
        command.insert(at, "1".into());
        command.insert(at, "-i".into());
        eprintln!(
            "remus-ckpt: passing -i 1 to {program}: the controller sets the interval through the gate"
        );
    } else if adaptive {
        eprintln!(
            "remus-ckpt: note: {program}'s own -i also paces; the controller can only lengthen the interval beyond it"
        );
    }

    // A signal before the command starts: nothing to forward it to; stop.
    if let Some(sig) = signals.pending().next() {
        eprintln!("remus-ckpt: signal {sig} before {program} started; stopping");
        return Ok(128 + sig);
    }

    // Signals go to us and are forwarded once: xl runs in its own process
    // group so a terminal's Ctrl-C does not reach it twice.
    let stop = Arc::new(AtomicBool::new(false));

    eprintln!(
        "remus-ckpt: running {} (records: {}, CSV: {})",
        command
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
        stats.display(),
        args.csv.display()
    );
    let mut child = Command::new(&command[0])
        .args(&command[1..])
        .envs(environment)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", command[0].to_string_lossy()))?;
    let pid = libc::pid_t::try_from(child.id())
        .with_context(|| format!("child pid {} does not fit in a pid_t", child.id()))?;
    let forwarder = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                eprintln!("remus-ckpt: forwarding signal {sig} to {program} (pid {pid})");
                // SAFETY: kill has no memory-safety preconditions; pid is
                // our child, which we have not reaped yet.
                unsafe { libc::kill(pid, sig) };
            }
        })
        .context("cannot start the signal thread")?;

    let consumer = {
        let metrics = exporter.as_mut().and_then(|e| e.handle());
        let (policy, disk, csv, quiet) = (
            args.policy.clone(),
            args.disk.clone(),
            args.csv.clone(),
            args.quiet,
        );
        let stop = Arc::clone(&stop);
        let control = steering.map(|s| s.control.to_path_buf());
        std::thread::Builder::new()
            .name("consumer".into())
            .spawn(move || {
                consume(
                    &policy,
                    &disk,
                    stats,
                    control,
                    Some(csv),
                    quiet,
                    stop,
                    metrics,
                )
            })
            .context("cannot start the consumer")?
    };

    let status = child
        .wait()
        .with_context(|| format!("waiting for {program}"))?;
    stop.store(true, Ordering::Relaxed);
    signal_handle.close();
    let _ = forwarder.join();
    let outcome = consumer
        .join()
        .map_err(|_| anyhow!("the consumer panicked"))??;
    print_outcome(&outcome, args.policy.lmax.0);
    drop(dir);
    finish_metrics(exporter, &args.metrics)?;

    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        _ => 1,
    };
    if code != 0 {
        eprintln!("remus-ckpt: {program} exited with status {code}");
    }
    // Remus itself may have been fine, but rows were lost: say so in the
    // exit status too (xl's own failure status wins).
    if let Some(error) = &outcome.csv_error {
        eprintln!("remus-ckpt: the CSV was not fully written: {error}");
        if code == 0 {
            return Ok(1);
        }
    }
    Ok(code)
}

/// Which Remus `run` drives.
enum Target {
    /// `xl … remus …`: libxl-save-helper saves.
    Xl(XlRemus),
    /// Xen 4.0-4.4's Python `remus`: saves in its own process.
    Python(PyRemus),
}

impl Target {
    fn parse(command: &[OsString]) -> Result<Target> {
        match command.first() {
            Some(first) if py_remus::is_py_remus(first) => {
                Ok(Target::Python(py_remus::parse(&command[1..])?))
            }
            _ => Ok(Target::Xl(parse_xl(command)?)),
        }
    }

    /// The command's name in messages.
    fn program(&self) -> &'static str {
        match self {
            Target::Xl(_) => "xl",
            Target::Python(_) => "remus",
        }
    }

    fn has_interval(&self) -> bool {
        match self {
            Target::Xl(xl) => xl.has_interval,
            Target::Python(remus) => remus.has_interval,
        }
    }

    /// Where `-i 1` goes: right after `remus` (the subcommand of xl, or the
    /// Python program itself).
    fn interval_index(&self) -> usize {
        match self {
            Target::Xl(xl) => xl.remus_index + 1,
            Target::Python(_) => 1,
        }
    }

    /// The metrics' `name` label: the domain given, unless a domid.
    fn domain_name(&self) -> Option<String> {
        match self {
            Target::Xl(xl) => domain_name(xl),
            Target::Python(remus) => domain_label(remus.domain.as_deref()),
        }
    }
}

/// What root makes the save side load, checked.
enum Loaded {
    /// The wrapped libxl-save-helper and its library directory.
    Helper(Executed),
    /// The library directory the Python `remus` process loads from.
    InProcess(PathBuf),
}

/// `xl remus`: the library directory and the helper, both checked.
fn xl_executed(args: &RunArgs) -> Result<Executed> {
    let lib_dir = lib_dir(args.lib_dir.as_deref())?;
    let helper = args.helper.clone().unwrap_or_else(default_helper);
    if !helper.exists() {
        bail!(
            "save helper {} not found: is xen-utils-{} installed? (or pass --helper)",
            helper.display(),
            xen_install::major_minor()
        );
    }
    check_executed(&lib_dir, &helper)
}

/// The Python `remus`: its library directory, checked by the same rule.
fn py_remus_lib_dir(args: &RunArgs, remus: &PyRemus, adaptive: bool) -> Result<PathBuf> {
    if args.helper.is_some() {
        bail!(
            "--helper does not apply to the Python remus: it runs xc_domain_save() \
             in its own process, with no save helper"
        );
    }
    if adaptive && remus.timer {
        bail!(
            "remus --timer suspends the guest from a timer thread, outside the save \
             loop, so the gate cannot pace it: drop --timer (or use --policy fixed to \
             only observe)"
        );
    }
    let (dir, soname) = py_remus::lib_dir(args.lib_dir.as_deref())?;
    check_lib_dir_for(&dir, soname)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn finds_remus_and_interval() {
        assert_eq!(
            parse_xl(&argv("xl -vvv remus -F -b -n -d guest dummyhost")).unwrap(),
            XlRemus {
                remus_index: 2,
                has_interval: false,
                domain: Some("guest".into()),
            }
        );
        let xl = parse_xl(&argv("xl remus -i 100 -s cmd -- guest host")).unwrap();
        assert_eq!(
            xl.domain.as_deref(),
            Some("guest"),
            "option arguments skipped"
        );
        assert_eq!(domain_name(&xl).as_deref(), Some("guest"));
        let xl = parse_xl(&argv("xl remus -b 12 host")).unwrap();
        assert_eq!(domain_name(&xl), None, "a domid is no name");
        assert!(
            parse_xl(&argv("xl remus -i 100 guest host"))
                .unwrap()
                .has_interval
        );
        assert!(
            parse_xl(&argv("xl remus -Fbi100 guest host"))
                .unwrap()
                .has_interval
        );
        assert!(
            parse_xl(&argv("xl remus -Fbi 100 guest host"))
                .unwrap()
                .has_interval
        );
        // -s takes an argument: an `i` inside it is not an interval.
        assert!(
            !parse_xl(&argv("xl remus -s -i guest host"))
                .unwrap()
                .has_interval
        );
        assert!(parse_xl(&argv("xl migrate guest host")).is_err());
        assert!(parse_xl(&argv("ssh host xl remus guest")).is_err());
    }

    #[test]
    fn wrapper_sets_the_helper_environment_only() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("it's lib");
        let w = write_wrapper(
            dir.path(),
            &lib,
            Path::new("/bin/true"),
            Path::new("/s"),
            Some(Steering {
                control: Path::new("/c"),
                fallback_ms: 250,
            }),
        )
        .unwrap();
        let text = std::fs::read_to_string(&w).unwrap();
        assert!(text.contains(r"LD_LIBRARY_PATH='"));
        assert!(text.contains(r"it'\''s lib"));
        assert!(text.contains("REMUS_CKPT_CONTROL='/c'"));
        assert!(text.contains("REMUS_CKPT_FALLBACK_MS=250\nexport REMUS_CKPT_FALLBACK_MS\n"));
        assert!(text.ends_with("exec '/bin/true' \"$@\"\n"));
        let mode = std::fs::metadata(&w).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // The wrapper really runs and passes arguments through.
        let out = Command::new(&w).arg("x").status().unwrap();
        assert!(out.success());
        // Created exclusively: a second wrapper in the same place is refused.
        assert!(write_wrapper(
            dir.path(),
            &lib,
            Path::new("/bin/true"),
            Path::new("/s"),
            None
        )
        .is_err());
    }

    #[test]
    fn observing_only_sets_no_control_and_no_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let w = write_wrapper(
            dir.path(),
            Path::new("/l"),
            Path::new("/bin/true"),
            Path::new("/s"),
            None,
        )
        .unwrap();
        let text = std::fs::read_to_string(&w).unwrap();
        assert!(text.contains("REMUS_CKPT_STATS='/s'"));
        assert!(!text.contains("REMUS_CKPT_CONTROL"), "{text}");
        assert!(!text.contains("REMUS_CKPT_FALLBACK_MS"), "{text}");
    }
}
