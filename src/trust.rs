//! Whether a path root is about to execute, load or create files in is
//! out of reach of unprivileged users (the rule of OpenSSH's StrictModes
//! and sudo).
//!
//! A path is trusted when it and every directory above it is owned by root
//! or by us (the effective uid) and writable by nobody else. An ancestor
//! may be group/other-writable only as a root-owned directory with the
//! sticky bit (/tmp): others can add names there but cannot rename or
//! remove ours. The path itself never gets that exception: a library
//! directory anyone may add files to is a directory anyone may put a
//! library in. Symbolic links are followed one component at a time, and
//! the directories every link leads through are checked as well.

use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Whether the last component may be a root-owned sticky directory that
/// others can add names to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf {
    /// Nobody else may write it (a file we execute, a library directory).
    Private,
    /// A root-owned sticky directory is fine (a base we create private
    /// directories in, like /tmp).
    StickyDirOk,
}

/// Symbolic links followed before giving up (Linux's MAXSYMLINKS).
const MAX_LINKS: u32 = 40;

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Checks one file system object found at `path` (from lstat, or from
/// fstat on a descriptor opened with O_NOFOLLOW).
pub fn check_meta(path: &Path, meta: &Metadata, leaf: Leaf) -> Result<()> {
    let euid = euid();
    if meta.uid() != 0 && meta.uid() != euid {
        bail!(
            "{p} is owned by uid {uid}, not by root or uid {euid}, so that user controls it \
             (fix: chown root:root {p}, or use a path only root can write)",
            p = path.display(),
            uid = meta.uid()
        );
    }
    let mode = meta.mode();
    let sticky_root_dir = meta.is_dir() && mode & 0o1000 != 0 && meta.uid() == 0;
    if mode & 0o022 != 0 && !(leaf == Leaf::StickyDirOk && sticky_root_dir) {
        bail!(
            "{p} has mode {m:04o}: writable by {who} (fix: chmod go-w {p})",
            p = path.display(),
            m = mode & 0o7777,
            who = match mode & 0o022 {
                0o020 => "its group",
                0o002 => "everyone",
                _ => "its group and everyone",
            }
        );
    }
    Ok(())
}

/// Checks `path`, every directory above it and every directory a symbolic
/// link on the way leads through; returns the path with the links
/// resolved (what to hand to exec or the loader).
pub fn check(path: &Path, leaf: Leaf) -> Result<PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .context("cannot read the current directory")?
            .join(path)
    };
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, &absolute);
    let mut current = PathBuf::from("/");
    let root = std::fs::symlink_metadata(&current).context("cannot stat /")?;
    check_meta(&current, &root, Leaf::StickyDirOk)?;
    let mut links = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            // `current` has no links in it: its parent is lexical.
            current.pop();
            continue;
        }
        let next = current.join(&name);
        let meta = std::fs::symlink_metadata(&next)
            .with_context(|| format!("cannot stat {}", next.display()))?;
        if meta.file_type().is_symlink() {
            // The link lives in `current`, already checked: only root or
            // we can replace it.
            links += 1;
            if links > MAX_LINKS {
                bail!("too many symbolic links resolving {}", path.display());
            }
            let target = std::fs::read_link(&next)
                .with_context(|| format!("cannot read the link {}", next.display()))?;
            if target.is_absolute() {
                current = PathBuf::from("/");
            }
            push_components(&mut pending, &target);
            continue;
        }
        let is_last = pending.is_empty();
        check_meta(&next, &meta, if is_last { leaf } else { Leaf::StickyDirOk })?;
        current = next;
    }
    Ok(current)
}

/// Pushes the components of `path` so that the first one pops first.
fn push_components(pending: &mut Vec<OsString>, path: &Path) {
    let names: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    pending.extend(names.into_iter().rev());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn accepts_a_private_tree_and_resolves_links() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        chmod(&real, 0o755);
        std::fs::write(real.join("f"), b"").unwrap();
        chmod(&real.join("f"), 0o755);
        symlink("real", dir.path().join("link")).unwrap();
        let resolved = check(&dir.path().join("link/./f"), Leaf::Private).unwrap();
        assert_eq!(resolved, real.join("f").canonicalize().unwrap());
    }

    #[test]
    fn refuses_a_writable_file_or_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("f"), b"").unwrap();
        chmod(&sub.join("f"), 0o646);
        let e = check(&sub.join("f"), Leaf::Private)
            .unwrap_err()
            .to_string();
        assert!(e.contains("0646") && e.contains("everyone"), "{e}");
        chmod(&sub.join("f"), 0o644);
        chmod(&sub, 0o775);
        let e = check(&sub.join("f"), Leaf::Private)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&*sub.display().to_string()), "{e}");
        assert!(e.contains("chmod go-w"), "{e}");
        // Sticky helps an ancestor, and a base, but never a private leaf.
        chmod(&sub, 0o1777);
        let sticky_ok = euid() == 0;
        assert_eq!(check(&sub.join("f"), Leaf::Private).is_ok(), sticky_ok);
        assert_eq!(check(&sub, Leaf::StickyDirOk).is_ok(), sticky_ok);
        assert!(check(&sub, Leaf::Private).is_err());
    }

    #[test]
    fn checks_the_directory_a_link_leads_through() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::write(open.join("f"), b"").unwrap();
        chmod(&open, 0o777);
        symlink(&open, dir.path().join("link")).unwrap();
        let e = check(&dir.path().join("link/f"), Leaf::Private)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&*open.display().to_string()), "{e}");
    }
}
