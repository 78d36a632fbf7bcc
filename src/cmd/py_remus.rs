//! `remus-ckpt run -- remus …`: the Python `remus` tool of Xen 4.0–4.4.
//!
//! There is no save helper there. `tools/remus/remus` calls
//! `xc_domain_save()` in its own process, through the Python extension
//! `xen.lowlevel.checkpoint` (`libcheckpoint.c`), which the dynamic loader
//! links against `libxenguest.so.<MAJOR>` when `remus` imports it
//! (`tools/python/setup.py`: `libraries = [xenctrl, xenguest, xenstore]`, no
//! rpath). (`save.py` names `/usr/lib/xen/bin/xc_save` in a variable but
//! never runs it.) So the patched library and the two channels go into
//! the environment of the `remus` process itself: `LD_LIBRARY_PATH` for
//! the loader, `REMUS_CKPT_STATS`/`REMUS_CKPT_CONTROL` for the library.
//! Everything `remus` starts inherits them (`ifdown`, `tc`, `xm destroy`
//! from its `die()`, …): only a Remus `xc_domain_save()` opens remus_ckpt,
//! so none of them records anything.
//!
//! What root loads there passes the same [`crate::cmd::run::check_lib_dir_for`]
//! rule as for `xl remus`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

/// SONAMEs of the libxenguest a Python `remus` loads: Xen 4.0 and 4.1 build
/// `libxenguest.so.4.0` (`MAJOR = 4.0` in 4.1's tools/libxc/Makefile), 4.2
/// to 4.4 their own version. 4.5 dropped xend and with it the tool.
pub const SONAMES: [&str; 4] = [
    "libxenguest.so.4.0",
    "libxenguest.so.4.2",
    "libxenguest.so.4.3",
    "libxenguest.so.4.4",
];

/// Long options of `remus` (optparse accepts any unique prefix of them)
/// and whether each takes a value.
const LONG_OPTIONS: [(&str, bool); 6] = [
    ("interval", true),
    ("port", true),
    ("blackhole", false),
    ("no-net", false),
    ("timer", false),
    ("help", false),
];

/// What `run` needs to know of a `remus [options] DOMAIN [HOST]` command.
#[derive(Debug, PartialEq, Eq)]
pub struct PyRemus {
    /// `-i`/`--interval` given.
    pub has_interval: bool,
    /// `--timer`: a timer thread suspends the guest, outside the save loop.
    pub timer: bool,
    /// The first operand: a domain name or domid.
    pub domain: Option<String>,
}

/// Whether `program` (the first word after `--`) is the Python `remus`.
pub fn is_py_remus(program: &OsString) -> bool {
    Path::new(program).file_name().and_then(|n| n.to_str()) == Some("remus")
}

/// Parses `remus`'s arguments (without the program) as optparse does.
pub fn parse(args: &[OsString]) -> Result<PyRemus> {
    let mut parsed = PyRemus {
        has_interval: false,
        timer: false,
        domain: None,
    };
    let mut args = args.iter().map(|a| a.to_string_lossy());
    while let Some(arg) = args.next() {
        if arg == "--" {
            // Everything after is an operand.
            if parsed.domain.is_none() {
                parsed.domain = args.next().map(|a| a.into_owned());
            }
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline_value) = match long.split_once('=') {
                Some((n, _)) => (n, true),
                None => (long, false),
            };
            let (option, takes_value) = long_option(name)?;
            parsed.has_interval |= option == "interval";
            parsed.timer |= option == "timer";
            if takes_value && !inline_value {
                args.next();
            }
            continue;
        }
        if let Some(short) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
            // Short options: -i MS, -iMS, -p PORT, -h.
            match short.chars().next() {
                Some(letter @ ('i' | 'p')) => {
                    parsed.has_interval |= letter == 'i';
                    if short.len() == 1 {
                        args.next();
                    }
                }
                Some('h') => {}
                _ => bail!("remus has no option {arg} (see remus --help)"),
            }
            continue;
        }
        if parsed.domain.is_none() {
            parsed.domain = Some(arg.into_owned());
        }
    }
    Ok(parsed)
}

/// The long option `name` abbreviates, as optparse resolves it.
fn long_option(name: &str) -> Result<(&'static str, bool)> {
    let matches: Vec<_> = LONG_OPTIONS
        .iter()
        .filter(|(long, _)| !name.is_empty() && long.starts_with(name))
        .collect();
    match matches.as_slice() {
        [(long, takes_value)] => Ok((long, *takes_value)),
        [] => bail!("remus has no option --{name} (see remus --help)"),
        _ => bail!("remus's option --{name} is ambiguous"),
    }
}

/// The patched library in `--lib-dir` for a Python `remus`: the directory
/// and the one SONAME of [`SONAMES`] it holds. No default: no package or
/// build here makes a 4.0–4.4 library (docs/xen-versions.md).
pub fn lib_dir(arg: Option<&Path>) -> Result<(PathBuf, &'static str)> {
    let dir = arg.ok_or_else(|| {
        anyhow!(
            "remus (Xen 4.1's Python tool) needs --lib-dir: the directory of the \
             libxenguest.so.4.0 built from a tree with patches/xen-4.1/ applied \
             (docs/xen-versions.md)"
        )
    })?;
    let present: Vec<&'static str> = SONAMES
        .iter()
        .copied()
        .filter(|s| dir.join(s).exists())
        .collect();
    let soname = match present.as_slice() {
        [one] => *one,
        [] => bail!(
            "no {} in {}: build libxenguest from a Xen 4.1 tree with patches/xen-4.1/ \
             applied (4.2-4.4: patches/xen-4.2/) and pass its directory as --lib-dir",
            SONAMES.join(" nor "),
            dir.display()
        ),
        several => bail!(
            "{} holds {}: keep only the one of the installed Xen",
            dir.display(),
            several.join(" and ")
        ),
    };
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    Ok((dir, soname))
}

/// The environment of the `remus` process: the library directory in front
/// of the loader's path (`existing`, the inherited LD_LIBRARY_PATH, after
/// it), the stats FIFO, and with steering the control FIFO and the
/// fallback interval.
pub fn environment(
    lib_dir: &Path,
    existing: Option<OsString>,
    stats: &Path,
    steering: Option<super::run::Steering>,
) -> Vec<(&'static str, OsString)> {
    let mut path = OsString::from(lib_dir);
    if let Some(existing) = existing.filter(|e| !e.is_empty()) {
        path.push(":");
        path.push(existing);
    }
    let mut env = vec![
        ("LD_LIBRARY_PATH", path),
        ("REMUS_CKPT_STATS", stats.as_os_str().to_owned()),
    ];
    if let Some(steering) = steering {
        env.push((
            "REMUS_CKPT_CONTROL",
            steering.control.as_os_str().to_owned(),
        ));
        env.push((
            "REMUS_CKPT_FALLBACK_MS",
            steering.fallback_ms.to_string().into(),
        ));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn finds_interval_timer_and_domain_as_optparse_does() {
        let r = parse(&argv("-p 8002 guest backup")).unwrap();
        assert_eq!(
            r,
            PyRemus {
                has_interval: false,
                timer: false,
                domain: Some("guest".into())
            },
            "the port's value is no operand"
        );
        for with in [
            "-i 100 guest",
            "-i100 guest",
            "--interval 100 guest",
            "--interval=100 guest",
            "--int 100 guest",
        ] {
            let r = parse(&argv(with)).unwrap();
            assert!(r.has_interval, "{with}");
            assert_eq!(r.domain.as_deref(), Some("guest"), "{with}");
        }
        let r = parse(&argv("--blackhole --no-net --timer 7 host")).unwrap();
        assert!(r.timer && !r.has_interval);
        assert_eq!(r.domain.as_deref(), Some("7"));
        assert_eq!(
            parse(&argv("-- -weird")).unwrap().domain.as_deref(),
            Some("-weird")
        );
        assert!(parse(&argv("--bogus guest")).is_err());
        assert!(parse(&argv("-x guest")).is_err());
    }

    #[test]
    fn only_the_remus_program_is_the_python_tool() {
        assert!(is_py_remus(&"remus".into()));
        assert!(is_py_remus(&"/usr/sbin/remus".into()));
        assert!(!is_py_remus(&"xl".into()));
        assert!(!is_py_remus(&"remus-ckpt".into()));
    }

    #[test]
    fn lib_dir_needs_exactly_one_legacy_soname() {
        let dir = tempfile::tempdir().unwrap();
        assert!(lib_dir(None).unwrap_err().to_string().contains("--lib-dir"));
        let err = lib_dir(Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains("libxenguest.so.4.0"), "{err}");
        std::fs::write(dir.path().join("libxenguest.so.4.0"), b"").unwrap();
        let (found, soname) = lib_dir(Some(dir.path())).unwrap();
        assert_eq!(soname, "libxenguest.so.4.0");
        assert_eq!(found, dir.path().canonicalize().unwrap());
        std::fs::write(dir.path().join("libxenguest.so.4.2"), b"").unwrap();
        let err = lib_dir(Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains("keep only"), "{err}");
    }

    #[test]
    fn environment_puts_the_library_first_and_steers_only_when_asked() {
        let control = Path::new("/c");
        let env = environment(
            Path::new("/l"),
            Some("/usr/lib".into()),
            Path::new("/s"),
            Some(super::super::run::Steering {
                control,
                fallback_ms: 250,
            }),
        );
        assert_eq!(
            env,
            [
                ("LD_LIBRARY_PATH", "/l:/usr/lib".into()),
                ("REMUS_CKPT_STATS", "/s".into()),
                ("REMUS_CKPT_CONTROL", "/c".into()),
                ("REMUS_CKPT_FALLBACK_MS", "250".into()),
            ]
        );
        let env = environment(Path::new("/l"), Some("".into()), Path::new("/s"), None);
        assert_eq!(
            env,
            [
                ("LD_LIBRARY_PATH", "/l".into()),
                ("REMUS_CKPT_STATS", "/s".into()),
            ]
        );
    }
}
