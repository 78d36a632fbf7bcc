//! Which Xen this dom0 runs, and what `run` and `doctor` default to for it.
//!
//! The installed Xen userland is the libxenmisc4.NN package dpkg has
//! installed (Debian 12: 4.17, Debian 13: 4.20); the source it was built
//! from is that package's Source version, the one `scripts/xen-source`
//! fetches by default (`scripts/xen-installed` asks dpkg-query the same
//! question). The patched library must be built from exactly that source:
//! `doctor` compares it with the `source_version` in the library's
//! build-info.txt (written by build/xen.rs).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The Xen release the defaults follow when none is installed (Debian 12).
pub const FALLBACK_MAJOR_MINOR: &str = "4.17";

/// One installed Xen userland.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledXen {
    /// "4.17", "4.20".
    pub major_minor: String,
    /// The package that told us, "libxenmisc4.17".
    pub package: String,
    /// Debian version of the xen source package, "4.17.7+...-1~deb12u1".
    pub source_version: String,
}

/// What dpkg-query says is installed: none, one, or (refused by callers)
/// several Xen releases. `Err` when dpkg-query cannot be run.
pub fn detect() -> Result<Vec<InstalledXen>, String> {
    let out = Command::new("dpkg-query")
        .args([
            "-W",
            "-f",
            "${Package}|${db:Status-Abbrev}|${source:Version}\n",
            "libxenmisc4.*",
        ])
        .output()
        .map_err(|e| format!("cannot run dpkg-query: {e}"))?;
    // dpkg-query exits 1 when no package matches: that is "none".
    Ok(parse_dpkg_query(&String::from_utf8_lossy(&out.stdout)))
}

/// The installed releases from `Package|Status-Abbrev|Source-Version`
/// lines; only fully installed ("ii") packages count.
pub fn parse_dpkg_query(text: &str) -> Vec<InstalledXen> {
    let mut found: Vec<InstalledXen> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split('|');
            let (package, status, version) = (f.next()?, f.next()?, f.next()?);
            let mm = package.strip_prefix("libxenmisc")?;
            let (major, minor) = mm.split_once('.')?;
            if major.parse::<u32>().is_err() || minor.parse::<u32>().is_err() {
                return None;
            }
            if status.trim() != "ii" || version.trim().is_empty() {
                return None;
            }
            Some(InstalledXen {
                major_minor: mm.to_string(),
                package: package.to_string(),
                source_version: version.trim().to_string(),
            })
        })
        .collect();
    found.sort_by(|a, b| a.package.cmp(&b.package));
    found.dedup();
    found
}

/// The installed Xen, detected once per process: the one release dpkg
/// has, or `None` (nothing installed, several, or no dpkg-query).
pub fn installed() -> Option<&'static InstalledXen> {
    static INSTALLED: OnceLock<Option<InstalledXen>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| match detect() {
            Ok(mut found) if found.len() == 1 => found.pop(),
            _ => None,
        })
        .as_ref()
}

/// The release the defaults follow: the installed one, else 4.17.
pub fn major_minor() -> &'static str {
    installed().map_or(FALLBACK_MAJOR_MINOR, |x| x.major_minor.as_str())
}

/// Debian's save helper for a release.
pub fn helper_path(major_minor: &str) -> PathBuf {
    PathBuf::from(format!("/usr/lib/xen-{major_minor}/bin/libxl-save-helper"))
}

/// The SONAME file of libxenguest for a release.
pub fn lib_soname(major_minor: &str) -> String {
    format!("libxenguest.so.{major_minor}")
}

/// What build/xen.rs recorded about a built library (build-info.txt).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BuildInfo {
    /// "4.17", from the tree's xen/Makefile.
    pub xen_version: Option<String>,
    /// Debian version of the source tree (debian/changelog), if it is one.
    pub source_version: Option<String>,
}

/// Reads `<lib_dir>/build-info.txt`. Older builds did not record
/// source_version: it is then read from the source tree's debian/changelog.
pub fn build_info(lib_dir: &Path) -> Option<BuildInfo> {
    let text = std::fs::read_to_string(lib_dir.join("build-info.txt")).ok()?;
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .map(str::to_string)
            .filter(|v| !v.is_empty())
    };
    let source_version = field("source_version").or_else(|| {
        let source = field("source")?;
        changelog_version(Path::new(&source))
    });
    Some(BuildInfo {
        xen_version: field("xen_version"),
        source_version,
    })
}

/// The Debian version at the top of `<tree>/debian/changelog`.
pub fn changelog_version(tree: &Path) -> Option<String> {
    let changelog = std::fs::read_to_string(tree.join("debian/changelog")).ok()?;
    let first = changelog.lines().next()?;
    Some(first.split('(').nth(1)?.split(')').next()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_installed_releases_only() {
        let text = "libxenmisc4.17|ii |4.17.7+8-1~deb12u1\n\
                    libxenmisc4.20|rc |4.20.4-1\n\
                    libxenmisc4.x|ii |1\n";
        let found = parse_dpkg_query(text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].major_minor, "4.17");
        assert_eq!(found[0].source_version, "4.17.7+8-1~deb12u1");
        assert!(parse_dpkg_query("").is_empty());
    }

    #[test]
    fn paths_follow_the_release() {
        assert_eq!(
            helper_path("4.20"),
            Path::new("/usr/lib/xen-4.20/bin/libxl-save-helper")
        );
        assert_eq!(lib_soname("4.20"), "libxenguest.so.4.20");
    }
}
