//! Control sink: writes `interval_ms=<n>` and `budget_pages=<n>` lines to
//! the save side.
//!
//! The save side opens the control FIFO only at its first checkpoint,
//! seconds after Remus starts, and may go away and come back; so the
//! writer opens without blocking, keeps the newest value of each key
//! pending while nobody reads, and delivers them as soon as someone does.
//! The pending lines go in one write far below PIPE_BUF, so it is atomic
//! or fails whole.

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

/// One value to command to the save side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `interval_ms=<n>`: the gate's interval (the cap with a budget).
    IntervalMs(u32),
    /// `budget_pages=<n>`: end the wait at this dirty count (0: off).
    BudgetPages(u64),
}

pub struct ControlWriter {
    path: PathBuf,
    file: Option<File>,
    pending_ms: Option<u32>,
    pending_budget_pages: Option<u64>,
    /// Lines written so far.
    pub written: u64,
}

impl ControlWriter {
    pub fn new(path: &Path) -> Self {
        ControlWriter {
            path: path.to_path_buf(),
            file: None,
            pending_ms: None,
            pending_budget_pages: None,
            written: 0,
        }
    }

    /// Queues `interval_ms` (replacing any older pending one) and tries to
    /// deliver it.
    pub fn send(&mut self, interval_ms: u32) -> Result<Delivery> {
        self.queue(Command::IntervalMs(interval_ms));
        self.flush()
    }

    /// Queues `budget_pages` (0: off; replacing any older pending one) and
    /// tries to deliver it.
    pub fn send_budget(&mut self, budget_pages: u64) -> Result<Delivery> {
        self.queue(Command::BudgetPages(budget_pages));
        self.flush()
    }

    /// Queues a command without writing, replacing the older pending value
    /// of its key; [`flush`](Self::flush) delivers.
    pub fn queue(&mut self, cmd: Command) {
        match cmd {
            Command::IntervalMs(ms) => self.pending_ms = Some(ms),
            Command::BudgetPages(pages) => self.pending_budget_pages = Some(pages),
        }
    }

    /// The pending lines, in one string (interval first).
    fn pending_lines(&self) -> String {
        let mut lines = String::new();
        if let Some(ms) = self.pending_ms {
            lines.push_str(&format!("interval_ms={ms}\n"));
        }
        if let Some(pages) = self.pending_budget_pages {
            lines.push_str(&format!("budget_pages={pages}\n"));
        }
        lines
    }

    /// Tries to deliver the pending lines, if any.
    pub fn flush(&mut self) -> Result<Delivery> {
        if !self.has_pending() {
            return Ok(Delivery::Written);
        }
        let line = self.pending_lines();
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
        match file.write(line.as_bytes()) {
            Ok(n) if n == line.len() => {
                self.written += line.matches('\n').count() as u64;
                self.pending_ms = None;
                self.pending_budget_pages = None;
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

    /// Whether a line still waits for the save side.
    pub fn has_pending(&self) -> bool {
        self.pending_ms.is_some() || self.pending_budget_pages.is_some()
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

    #[test]
    fn budget_lines_beside_intervals() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ctl");
        fifo::ensure_private_fifo(&p).unwrap();
        let mut w = ControlWriter::new(&p);
        assert_eq!(w.send_budget(100).unwrap(), Delivery::Pending);
        assert_eq!(w.send(50).unwrap(), Delivery::Pending);
        assert_eq!(w.send_budget(2560).unwrap(), Delivery::Pending);
        let mut r = fifo::open_reader(&p).unwrap();
        assert_eq!(w.flush().unwrap(), Delivery::Written);
        assert_eq!(w.written, 2);
        assert!(!w.has_pending());
        assert_eq!(w.send_budget(0).unwrap(), Delivery::Written);
        drop(w);
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        assert_eq!(s, "interval_ms=50\nbudget_pages=2560\nbudget_pages=0\n");
    }
}
