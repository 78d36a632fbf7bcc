//! Which Xen the scripts and `doctor` build for and check against, with a
//! fake `dpkg-query` (and fake `apt-get`/`apt-cache`/`dpkg-source`) first on
//! PATH: nothing is downloaded or installed, /etc/apt is not touched.
//!
//! - scripts/xen-source takes the installed Xen's source version (4.17.7 on
//!   an up-to-date Debian 12, 4.20.4 on Debian 13), a pin only when asked,
//!   and with nothing installed it needs the pin; when the archive lacks the
//!   version it fails naming the pin option.
//! - scripts/install-xen-deps never downgrades: over an installed Xen it
//!   adds missing packages at that version without --allow-downgrades, and
//!   refuses a pin that differs.
//! - `doctor` refuses a library built from another source than the
//!   installed Xen's, naming the command that rebuilds it; its defaults
//!   (helper, SONAME) follow the installed release.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_remus-ckpt");
const V4175: &str = "4.17.5+72-g01140da4e8-1";
const V4177: &str = "4.17.7+12-gabcdef0123-1~deb12u1";
const V4204: &str = "4.20.4+0-g0123456789-1";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A fake Debian: `installed` are (major.minor, source version) of
/// libxenmisc packages dpkg reports "ii"; `archive` the xen source
/// versions `apt-get source` can deliver; `missing` packages dpkg does not
/// have.  Every apt call is appended to `apt.log`.
struct FakeDebian {
    dir: tempfile::TempDir,
}

impl FakeDebian {
    fn new(installed: &[(&str, &str)], archive: &[&str], missing: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let listing: String = installed
            .iter()
            .map(|(mm, v)| format!("libxenmisc{mm}|ii |{v}\n"))
            .collect();
        std::fs::write(dir.path().join("listing"), listing).unwrap();
        let xen_version = installed.first().map_or("", |(_, v)| v);
        let log = dir.path().join("apt.log");
        // dpkg-query -W -f FORMAT PATTERN...: the listing for the
        // libxenmisc glob; for one package, installed at the Xen version
        // (Xen packages) or at "1" (build packages), unless missing.
        script(
            &bin.join("dpkg-query"),
            &format!(
                r#"eval last=\${{$#}}
case "$last" in
    'libxenmisc4.*') cat '{listing}'; exit 0 ;;
esac
for m in {missing}; do [ "$m" = "$last" ] && exit 1; done
case "$last" in
    libxen*|xen-utils*) [ -n '{xen_version}' ] || exit 1
                        echo 'install ok installed|{xen_version}' ;;
    *) echo 'install ok installed|1' ;;
esac
"#,
                listing = dir.path().join("listing").display(),
                missing = missing.join(" "),
            ),
        );
        let archive_cases: String = archive
            .iter()
            .map(|v| {
                let upstream = v.rsplit_once('-').unwrap().0;
                format!("    'xen={v}') mkdir -p 'xen-{upstream}/xen' && touch 'xen-{upstream}/xen/Makefile'; exit 0 ;;\n")
            })
            .collect();
        script(
            &bin.join("apt-get"),
            &format!(
                r#"echo "apt-get $*" >> '{log}'
case "$1" in
    indextargets) echo 'Sources bookworm'; exit 0 ;;
esac
for a in "$@"; do
    case "$a" in
{archive_cases}    xen=*) echo "E: Can not find version '${{a#xen=}}' of package 'xen'" >&2; exit 100 ;;
    esac
done
exit 0
"#,
                log = log.display()
            ),
        );
        script(
            &bin.join("apt-cache"),
            &format!("echo \"apt-cache $*\" >> '{}'\nexit 0\n", log.display()),
        );
        script(
            &bin.join("dpkg-source"),
            "echo unexpected dpkg-source >&2; exit 1\n",
        );
        FakeDebian { dir }
    }

    fn path_env(&self) -> String {
        format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    fn apt_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("apt.log")).unwrap_or_default()
    }

    /// Runs scripts/<name> with the fake first on PATH, sources cached in
    /// the temp directory.
    fn script(&self, name: &str, args: &[&str]) -> Output {
        Command::new(repo().join("scripts").join(name))
            .args(args)
            .env("PATH", self.path_env())
            .env("XEN_SOURCE_DIR", self.dir.path().join("src"))
            .env("XEN_SOURCE_SUITE", "bookworm")
            .env_remove("XEN_DEB_VERSION")
            .output()
            .unwrap()
    }
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn xen_source_takes_the_installed_4_20() {
    let fake = FakeDebian::new(&[("4.20", V4204)], &[V4204], &[]);
    let out = fake.script("xen-source", &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let tree = fake.dir.path().join("src/xen-4.20.4+0-g0123456789");
    assert_eq!(stdout.trim(), tree.to_str().unwrap(), "{stderr}");
    assert!(stderr.contains("installed: libxenmisc4.20"), "{stderr}");
    assert!(
        fake.apt_log().contains(&format!("source -q xen={V4204}")),
        "{}",
        fake.apt_log()
    );
}

#[test]
fn xen_source_takes_the_installed_4_17_7_and_says_how_when_the_archive_lacks_it() {
    // The archive here serves only 4.17.5, as this machine's does.
    let fake = FakeDebian::new(&[("4.17", V4177)], &[V4175], &[]);
    let out = fake.script("xen-source", &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "no path on failure: {stdout}");
    assert!(
        fake.apt_log().contains(&format!("source -q xen={V4177}")),
        "it asked for the installed version: {}",
        fake.apt_log()
    );
    assert!(
        stderr.contains(&format!("apt-get source xen={V4177} failed"))
            && stderr.contains("scripts/xen-source --version V")
            && stderr.contains("snapshot.debian.org"),
        "{stderr}"
    );
}

#[test]
fn xen_source_pin_is_taken_only_when_asked() {
    let fake = FakeDebian::new(&[("4.17", V4177)], &[V4175], &[]);
    let out = fake.script("xen-source", &["--version", V4175]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.trim().ends_with("/xen-4.17.5+72-g01140da4e8"),
        "{stdout}"
    );
    assert!(stderr.contains("pinned"), "{stderr}");
    assert!(!fake.apt_log().contains(V4177), "{}", fake.apt_log());
}

#[test]
fn xen_source_needs_a_pin_when_no_xen_is_installed() {
    let fake = FakeDebian::new(&[], &[V4175], &[]);
    let out = fake.script("xen-source", &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no Xen userland installed") && stderr.contains("--version"),
        "{stderr}"
    );
    assert!(
        fake.apt_log().is_empty(),
        "nothing fetched: {}",
        fake.apt_log()
    );
}

#[test]
fn xen_source_refuses_two_installed_releases() {
    let fake = FakeDebian::new(&[("4.17", V4177), ("4.20", V4204)], &[V4204], &[]);
    let out = fake.script("xen-source", &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("more than one Xen release"), "{stderr}");
    assert!(fake.apt_log().is_empty(), "{}", fake.apt_log());
}

#[test]
fn install_xen_deps_never_downgrades_an_installed_xen() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED: install-xen-deps needs root (it refuses otherwise)");
        return;
    }
    // 4.17.7 installed, libxen-dev missing, a 4.17.5 pin in the way.
    let fake = FakeDebian::new(&[("4.17", V4177)], &[V4175], &["libxen-dev"]);
    let out = fake.script("install-xen-deps", &["--version", V4175]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("never changes an installed Xen"),
        "{stderr}"
    );
    assert!(!fake.apt_log().contains("install"), "{}", fake.apt_log());

    let out = fake.script("install-xen-deps", &[]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let log = fake.apt_log();
    assert!(log.contains(&format!("libxen-dev={V4177}")), "{log}");
    assert!(!log.contains("allow-downgrades"), "{log}");
    assert!(!log.contains(V4175), "{log}");
}

#[test]
fn install_xen_deps_installs_the_pin_only_on_a_machine_without_xen() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED: install-xen-deps needs root (it refuses otherwise)");
        return;
    }
    let fake = FakeDebian::new(&[], &[V4175], &[]);
    let out = fake.script("install-xen-deps", &["--version", V4175]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let log = fake.apt_log();
    assert!(
        log.contains(&format!("libxenmisc4.17={V4175}"))
            && log.contains(&format!("xen-utils-4.17={V4175}")),
        "{log}"
    );
    assert!(!log.contains("allow-downgrades"), "{log}");
}

/// A lib dir as build/xen.rs leaves it, for `soname`, built from `from`.
fn built_lib(dir: &Path, soname: &str, xen: &str, from: &str) -> PathBuf {
    let lib = dir.join("lib");
    std::fs::create_dir(&lib).unwrap();
    std::fs::write(lib.join(soname), b"").unwrap();
    std::fs::write(
        lib.join("build-info.txt"),
        format!("mode=patched\nxen_version={xen}\nsource_version={from}\n"),
    )
    .unwrap();
    lib
}

fn doctor(fake: &FakeDebian, lib: &Path) -> String {
    let out = Command::new(BIN)
        .arg("doctor")
        .arg("--lib-dir")
        .arg(lib)
        .env("PATH", fake.path_env())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn doctor_refuses_a_library_built_from_another_xen_and_names_the_fix() {
    let fake = FakeDebian::new(&[("4.17", V4177)], &[], &[]);
    let lib = built_lib(fake.dir.path(), "libxenguest.so.4.17", "4.17", V4175);
    let text = doctor(&fake, &lib);
    assert!(
        text.contains(&format!(
            "FAIL  library built from xen {V4175}, but the installed Xen is xen {V4177}"
        )),
        "{text}"
    );
    assert!(
        text.contains("REMUS_CKPT_XEN_SRC=$(scripts/xen-source) cargo build --release"),
        "{text}"
    );

    // The same library with the matching Xen installed passes that check.
    let fake = FakeDebian::new(&[("4.17", V4175)], &[], &[]);
    let text = doctor(&fake, &lib);
    assert!(
        text.contains(&format!("ok    library built from xen {V4175}")),
        "{text}"
    );
}

#[test]
fn doctor_follows_an_installed_4_20() {
    let fake = FakeDebian::new(&[("4.20", V4204)], &[], &[]);
    // A 4.17 library: the 4.20 SONAME is missing, the 4.20 helper is named.
    let dir = tempfile::tempdir().unwrap();
    let lib = built_lib(dir.path(), "libxenguest.so.4.17", "4.17", V4175);
    let text = doctor(&fake, &lib);
    assert!(text.contains("no libxenguest.so.4.20 in"), "{text}");
    assert!(
        text.contains("save helper /usr/lib/xen-4.20/bin/libxl-save-helper")
            || Path::new("/usr/lib/xen-4.20/bin/libxl-save-helper").exists(),
        "{text}"
    );
    // A 4.20 library built from another 4.20 source is refused.
    let dir = tempfile::tempdir().unwrap();
    let lib = built_lib(dir.path(), "libxenguest.so.4.20", "4.20", "4.20.0-1");
    let text = doctor(&fake, &lib);
    assert!(
        text.contains(&format!(
            "FAIL  library built from xen 4.20.0-1, but the installed Xen is xen {V4204}"
        )),
        "{text}"
    );
}
