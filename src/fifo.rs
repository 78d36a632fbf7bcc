//! Named pipes between the save side and the consumer.
//!
//! Both FIFOs are created private (0600, our uid): the C side refuses a
//! control FIFO anyone else could write to, since whoever writes it sets
//! how often a protected VM is paused.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Creates `path` as a FIFO with mode 0600, or checks that the FIFO already
/// there is one the save side will accept.
pub fn ensure_private_fifo(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => check_private_fifo(path, &meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => create_private_fifo(path),
        Err(e) => Err(e).with_context(|| format!("cannot stat {}", path.display())),
    }
}

/// Creates `path` as a new FIFO of ours with mode exactly 0600, whatever
/// the umask. Fails if anything is there already, a symbolic link
/// included (mkfifo never follows one).
pub fn create_private_fifo(path: &Path) -> Result<()> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .with_context(|| format!("{} contains a NUL byte", path.display()))?;
    // SAFETY: c_path is a valid NUL-terminated path for the call.
    let rc = unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) };
    if rc != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("cannot create FIFO {}", path.display()));
    }
    // mkfifo's mode passes through the umask: set 0600 through a
    // descriptor on what we just made (O_NOFOLLOW: never a link's target;
    // O_NONBLOCK: opening a FIFO for reading does not wait for a writer).
    let fifo = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .with_context(|| format!("cannot open the new FIFO {}", path.display()))?;
    let meta = fifo
        .metadata()
        .with_context(|| format!("cannot stat {}", path.display()))?;
    if !meta.file_type().is_fifo() || meta.uid() != euid() {
        bail!(
            "{} was replaced while being created; refusing it",
            path.display()
        );
    }
    fifo.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot chmod 600 {}", path.display()))
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn check_private_fifo(path: &Path, meta: &std::fs::Metadata) -> Result<()> {
    if !meta.file_type().is_fifo() {
        bail!(
            "{} exists and is not a FIFO; remove it or choose another path",
            path.display()
        );
    }
    let euid = euid();
    if meta.uid() != euid {
        bail!(
            "{} is owned by uid {}, not by us (uid {euid}); the save side would refuse it",
            path.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o077 != 0 {
        bail!(
            "{} has mode {:o}; the save side only accepts FIFOs no wider than 0600 (chmod 600 {})",
            path.display(),
            meta.mode() & 0o777,
            path.display()
        );
    }
    Ok(())
}

/// Opens a FIFO of ours for reading without blocking, and checks what was
/// opened (O_NOFOLLOW, then fstat: a FIFO we own, no wider than 0600), so
/// that a name swapped after [`ensure_private_fifo`] is refused, not read.
pub fn open_private_reader(path: &Path) -> Result<File> {
    let file =
        open_reader(path).with_context(|| format!("cannot open {} for reading", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot stat {}", path.display()))?;
    check_private_fifo(path, &meta)?;
    Ok(file)
}

/// Opens a FIFO for reading without blocking, even with no writer yet;
/// never through a symbolic link (ELOOP) and never as a controlling tty.
pub fn open_reader(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(path)
}

/// Opens a FIFO for writing without blocking: `Ok(None)` while no reader
/// has it open (ENXIO), so callers retry instead of hanging.
pub fn open_writer(path: &Path) -> io::Result<Option<File>> {
    match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) || e.kind() == io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Whether `path` still names the inode `file` has open (a FIFO removed and
/// created again must be reopened).
pub fn same_inode(path: &Path, file: &File) -> bool {
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(p), Ok(f)) => p.dev() == f.dev() && p.ino() == f.ino(),
        _ => false,
    }
}

/// Waits up to `timeout_ms` for `file` to become readable. Returns the
/// poll revents (0 on timeout).
pub fn poll_readable(file: &File, timeout_ms: i32) -> io::Result<i16> {
    use std::os::fd::AsRawFd;

    let mut pfd = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: pfd is one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(if n == 0 { 0 } else { pfd.revents })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_and_checks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ctl");
        ensure_private_fifo(&p).unwrap();
        ensure_private_fifo(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(ensure_private_fifo(&p)
            .unwrap_err()
            .to_string()
            .contains("0600"));
        let f = dir.path().join("file");
        std::fs::write(&f, b"x").unwrap();
        assert!(ensure_private_fifo(&f).is_err());
    }

    #[test]
    fn creates_exclusively_never_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("stats");
        create_private_fifo(&p).unwrap();
        let meta = std::fs::symlink_metadata(&p).unwrap();
        assert!(meta.file_type().is_fifo());
        assert_eq!(meta.mode() & 0o7777, 0o600);
        // Already there: refused, not reused.
        assert!(create_private_fifo(&p).is_err());
        // A link to elsewhere: refused, and nothing appears at its target.
        let target = dir.path().join("target");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(create_private_fifo(&link).is_err());
        assert!(!target.exists());
        assert!(ensure_private_fifo(&link).is_err());
    }

    #[test]
    fn writer_waits_for_reader() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fifo");
        ensure_private_fifo(&p).unwrap();
        assert!(open_writer(&p).unwrap().is_none());
        let r = open_reader(&p).unwrap();
        assert!(open_writer(&p).unwrap().is_some());
        assert!(same_inode(&p, &r));
    }
}
