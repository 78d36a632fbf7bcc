//! Control sink: writes `interval_ms=<n>` lines to the save side.
//!
//! The save side opens the control FIFO only at its first checkpoint,
//! seconds after Remus starts, and may go away and come back; so the
//! writer opens without blocking, keeps the newest interval pending while
//! nobody reads, and delivers it as soon as someone does. A line is far
//! below PIPE_BUF, so a write is atomic or fails whole.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::fifo;

/// What became of an interval handed to [`ControlWriter::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Written to the FIFO.
    Written,
    /// Kept; will be written when the save side has the FIFO open.
    Pending,
}

pub struct ControlWriter {
    path: PathBuf,
    file: Option<File>,
    pending_ms: Option<u32>,
    /// Lines written so far.
    pub written: u64,
}

impl ControlWriter {
    pub fn new(path: &Path) -> Self {
        ControlWriter {
            path: path.to_path_buf(),
            file: None,
            pending_ms: None,
            written: 0,
        }
    }

    /// Queues `interval_ms` (replacing any older pending one) and tries to
    /// deliver it.
    pub fn send(&mut self, interval_ms: u32) -> Result<Delivery> {
        self.pending_ms = Some(interval_ms);
        self.flush()
    }

    /// Tries to deliver the pending interval, if any.
    pub fn flush(&mut self) -> Result<Delivery> {
        let Some(interval_ms) = self.pending_ms else {
            return Ok(Delivery::Written);
        };
        if self
            .file
            .as_ref()
            .is_some_and(|f| !fifo::same_inode(&self.path, f))
        {
            self.file = None;
        }
        if self.file.is_none() {
            self.file = fifo::open_writer(&self.path)
                .with_context(|| format!("cannot open control FIFO {}", self.path.display()))?;
        }
        let Some(file) = &mut self.file else {
            return Ok(Delivery::Pending);
        };
        let line = format!("interval_ms={interval_ms}\n");
        match file.write(line.as_bytes()) {
            Ok(n) if n == line.len() => {
                self.pending_ms = None;
                self.written += 1;
                Ok(Delivery::Written)
            }
            // A full pipe: the save side has not read our older lines yet.
            Ok(_) => Ok(Delivery::Pending),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Delivery::Pending),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                // The reader left; reopen (and wait for the next) later.
                self.file = None;
                Ok(Delivery::Pending)
            }
            Err(e) => Err(e)
                .with_context(|| format!("cannot write to control FIFO {}", self.path.display())),
        }
    }

    /// Whether an interval still waits for the save side.
    pub fn has_pending(&self) -> bool {
        self.pending_ms.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn pending_until_a_reader_comes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ctl");
        fifo::ensure_private_fifo(&p).unwrap();
        let mut w = ControlWriter::new(&p);
        assert_eq!(w.send(50).unwrap(), Delivery::Pending);
        assert_eq!(w.send(70).unwrap(), Delivery::Pending);
        let mut r = fifo::open_reader(&p).unwrap();
        assert_eq!(w.flush().unwrap(), Delivery::Written);
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        assert_eq!(s, "interval_ms=70\n", "only the newest interval is sent");
    }
}
