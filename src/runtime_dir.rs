//! The private directory `run` keeps the save-helper wrapper and the two
//! FIFOs in while xl runs, removed when it is dropped.
//!
//! Root executes the wrapper, so nobody else may be able to rename, swap
//! or add to anything on the way to it. The base (/run/remus-ckpt) is
//! created 0700 whatever the umask, and a base found already there is used
//! only if it is a real directory that root (or we) own and nobody else
//! may write, unless root-owned and sticky. Each run gets a fresh directory in
//! it, created 0700 and checked through a descriptor opened without
//! following links.

use std::fs::{File, Metadata, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::trust::{self, Leaf};

/// Where runtime directories go when this process may create it (root on
/// a dom0); elsewhere the temp directory.
pub const RUNTIME_BASE: &str = "/run/remus-ckpt";

/// Opens the directory `path` itself, never a link's target.
fn open_dir_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn refuse_base(base: &Path, why: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "refusing the runtime base {b}: {why}; another user may control what root runs from it \
         (fix: remove it, rm -rf {b}, and run again; or chown root:root {b} && chmod 0700 {b})",
        b = base.display()
    )
}

/// Checks a base found already there (`meta` from lstat or from fstat on
/// an O_NOFOLLOW descriptor).
fn check_existing_base(base: &Path, meta: &Metadata) -> Result<()> {
    if meta.file_type().is_symlink() {
        return Err(refuse_base(base, "it is a symbolic link"));
    }
    if !meta.is_dir() {
        return Err(refuse_base(base, "it is not a directory"));
    }
    trust::check_meta(base, meta, Leaf::StickyDirOk)
        .map_err(|e| refuse_base(base, &format!("{e:#}")))
}

/// For `doctor`: whether `base` exists, and an error if it exists but
/// `run` would refuse it. Creates nothing.
pub fn inspect_base(base: &Path) -> Result<bool> {
    if let Some(parent) = base.parent() {
        if parent.exists() {
            trust::check(parent, Leaf::StickyDirOk)?;
        }
    }
    match std::fs::symlink_metadata(base) {
        Ok(meta) => check_existing_base(base, &meta).map(|()| true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot stat {}", base.display())),
    }
}

/// Creates `base` 0700 or checks the one there. `Ok(None)`: we may not
/// create it (not root, no parent): use the temp directory.
fn ensure_base(base: &Path) -> Result<Option<PathBuf>> {
    let parent = base.parent().unwrap_or(Path::new("/"));
    if !parent.exists() {
        return Ok(None);
    }
    trust::check(parent, Leaf::StickyDirOk)?;
    let created = match std::fs::DirBuilder::new().mode(0o700).create(base) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EACCES | libc::EPERM | libc::EROFS)
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", base.display())),
    };
    let dir = match open_dir_nofollow(base) {
        Ok(dir) => dir,
        // A link gives ENOTDIR or ELOOP with O_DIRECTORY|O_NOFOLLOW: say which.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
            let is_link =
                std::fs::symlink_metadata(base).is_ok_and(|meta| meta.file_type().is_symlink());
            return Err(refuse_base(
                base,
                if is_link {
                    "it is a symbolic link"
                } else {
                    "it is not a directory"
                },
            ));
        }
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", base.display())),
    };
    let meta = dir
        .metadata()
        .with_context(|| format!("cannot stat {}", base.display()))?;
    check_existing_base(base, &meta)?;
    if created {
        // mkdir's mode passes through the umask, which may have narrowed
        // it; set exactly 0700 on what we opened.
        dir.set_permissions(Permissions::from_mode(0o700))
            .with_context(|| format!("cannot chmod 0700 {}", base.display()))?;
    }
    Ok(Some(base.to_path_buf()))
}

/// Checks the fresh directory `path` is ours and sets it to exactly 0700.
fn make_private(path: &Path) -> Result<()> {
    let dir = open_dir_nofollow(path).with_context(|| format!("cannot open {}", path.display()))?;
    let meta = dir
        .metadata()
        .with_context(|| format!("cannot stat {}", path.display()))?;
    if !meta.is_dir() || meta.uid() != euid() {
        bail!(
            "{} is not a directory of ours (uid {}); refusing it",
            path.display(),
            meta.uid()
        );
    }
    dir.set_permissions(Permissions::from_mode(0o700))
        .with_context(|| format!("cannot chmod 0700 {}", path.display()))
}

/// A fresh private directory for one run: under [`RUNTIME_BASE`] when we
/// may create it there (root on a dom0), else in the temp directory. It
/// and everything in it go when the returned value is dropped.
pub fn create() -> Result<tempfile::TempDir> {
    let in_base = |base: &Path| {
        tempfile::Builder::new()
            .prefix("run.")
            .permissions(Permissions::from_mode(0o700))
            .tempdir_in(base)
    };
    let dir = match ensure_base(Path::new(RUNTIME_BASE))? {
        Some(base) => match in_base(&base) {
            Ok(dir) => dir,
            // Root's base, and we are not root.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => fallback(&in_base)?,
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot create a runtime directory in {}", base.display())
                })
            }
        },
        None => fallback(&in_base)?,
    };
    make_private(dir.path())?;
    Ok(dir)
}

/// The temp directory, once it passes the same rule as the base.
fn fallback(in_base: &dyn Fn(&Path) -> io::Result<tempfile::TempDir>) -> Result<tempfile::TempDir> {
    let tmp = trust::check(&std::env::temp_dir(), Leaf::StickyDirOk)
        .context("the temp directory (TMPDIR) is not safe for the save-helper wrapper")?;
    in_base(&tmp).with_context(|| format!("cannot create a runtime directory in {}", tmp.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_is_created_0700() {
        // (umask 000 is the integration test's job: the umask is
        // process-wide and other tests run in parallel threads.)
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        assert_eq!(ensure_base(&base).unwrap(), Some(base.clone()));
        let mode = std::fs::metadata(&base).unwrap().mode();
        assert_eq!(mode & 0o7777, 0o700);
        // Found again: used as it is.
        assert_eq!(ensure_base(&base).unwrap(), Some(base.clone()));
        assert!(inspect_base(&base).unwrap());
    }

    #[test]
    fn refuses_a_linked_or_open_base() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::create_dir(&target).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = format!("{:#}", ensure_base(&link).unwrap_err());
        assert!(e.contains("symbolic link") && e.contains("rm -rf"), "{e}");
        assert!(inspect_base(&link).is_err());
        std::fs::set_permissions(&target, Permissions::from_mode(0o777)).unwrap();
        let e = format!("{:#}", ensure_base(&target).unwrap_err());
        assert!(e.contains("0777") && e.contains("chmod 0700"), "{e}");
        assert!(inspect_base(&target).is_err());
        assert!(!inspect_base(&dir.path().join("absent")).unwrap());
    }
}
