//! Reads record lines from the stats FIFO and parses them.
//!
//! The reader never blocks the save side: it holds the FIFO open for
//! reading (so the C writer's non-blocking open succeeds) and drains it as
//! lines arrive. When the writer goes away (the save helper exited, or the
//! FIFO was recreated) it reopens and waits for the next one, unless told
//! to end at the first end of stream.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use crossbeam_channel::Sender;

use crate::fifo;
use crate::record::{self, Record};

/// What to do when the writer closes the FIFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnEof {
    /// Reopen and wait for another writer (`watch`, `run`).
    Reopen,
    /// End the stream (`simulate`, whose one writer is done).
    Stop,
}

/// Splits bytes into lines and parses them, counting line numbers.
#[derive(Debug, Default)]
pub struct LineParser {
    partial: Vec<u8>,
    line_no: u64,
    /// Lines that were not records.
    pub malformed: u64,
}

/// A line that was not a record, with where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub line_no: u64,
    pub error: record::ParseError,
}

/// The one stderr line for a record line that does not parse: it is
/// skipped, and reading goes on.
pub fn warn_skipped(path: &Path, line_no: u64, error: &record::ParseError) {
    eprintln!(
        "remus-ckpt: {}: line {line_no}: {error} (skipped)",
        path.display()
    );
}

/// Longest line kept; record lines are at most 512 bytes.
const MAX_LINE: usize = 4096;

/// One complete line (newline included); `None` for a blank one.
fn parse_record_line(line: &[u8], line_no: u64) -> Option<Result<Record, Malformed>> {
    let text = match std::str::from_utf8(line) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(line),
    };
    if text.trim().is_empty() {
        return None;
    }
    Some(record::parse_line(&text).map_err(|error| Malformed { line_no, error }))
}

impl LineParser {
    /// Feeds bytes; returns what complete lines parsed to, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Result<Record, Malformed>> {
        let mut out = Vec::new();
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            if !chunk.ends_with(b"\n") {
                // A line still being written: keep it (bounded) for later.
                let room = MAX_LINE.saturating_sub(self.partial.len());
                self.partial
                    .extend_from_slice(&chunk[..chunk.len().min(room)]);
                continue;
            }
            self.line_no += 1;
            let parsed = if self.partial.is_empty() {
                parse_record_line(chunk, self.line_no)
            } else {
                let room = MAX_LINE.saturating_sub(self.partial.len());
                self.partial
                    .extend_from_slice(&chunk[..chunk.len().min(room)]);
                let parsed = parse_record_line(&self.partial, self.line_no);
                self.partial.clear();
                parsed
            };
            if let Some(p) = parsed {
                if p.is_err() {
                    self.malformed += 1;
                }
                out.push(p);
            }
        }
        out
    }

    /// Forgets a partial line (its writer went away).
    pub fn reset_partial(&mut self) {
        self.partial.clear();
    }
}

/// Reads `path` (or `file`, already opened on it) until `stop` is set (or,
/// with [`OnEof::Stop`], the writer closes), sending each record to `tx`.
/// Malformed lines are reported on stderr with their line number and
/// skipped.
fn read_from(
    path: &Path,
    mut file: Option<File>,
    on_eof: OnEof,
    stop: &AtomicBool,
    tx: &Sender<Record>,
) -> Result<()> {
    let mut parser = LineParser::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut had_writer = false;
    loop {
        let f = match &mut file {
            Some(f) => f,
            None => match fifo::open_reader(path) {
                Ok(f) => file.insert(f),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot open stats FIFO {}", path.display()))
                }
            },
        };
        let revents =
            fifo::poll_readable(f, 100).with_context(|| format!("poll on {}", path.display()))?;
        if revents == 0 {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            if !fifo::same_inode(path, f) {
                file = None;
            }
            continue;
        }
        match f.read(&mut buf) {
            Ok(0) => {
                // Every writer closed: the save helper is gone.
                parser.reset_partial();
                file = None;
                if on_eof == OnEof::Stop && had_writer {
                    return Ok(());
                }
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
            }
            Ok(n) => {
                had_writer = true;
                for parsed in parser.feed(&buf[..n]) {
                    match parsed {
                        Ok(rec) => {
                            if tx.send(rec).is_err() {
                                return Ok(());
                            }
                        }
                        Err(m) => warn_skipped(path, m.line_no, &m.error),
                    }
                }
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).with_context(|| format!("read from {}", path.display())),
        }
    }
}

/// Spawns [`read_from`] on its own thread. The FIFO is opened before this
/// returns (when it exists), so a writer starting right after is not
/// dropped for want of a reader.
pub fn spawn(
    path: PathBuf,
    on_eof: OnEof,
    stop: Arc<AtomicBool>,
    tx: Sender<Record>,
) -> Result<std::thread::JoinHandle<Result<()>>> {
    let file = fifo::open_reader(&path).ok();
    std::thread::Builder::new()
        .name("stats-reader".into())
        .spawn(move || read_from(&path, file, on_eof, &stop, &tx))
        .context("cannot start the stats reader thread")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_reads() {
        let mut p = LineParser::default();
        let line = "ckpt v=1 seq=1 dirty_pages=1 pages_sent=1 bytes_sent=4104 t_suspend=1 \
                    t_suspended=2 t_resumed=3 t_done=4\n";
        let (a, b) = line.split_at(30);
        assert!(p.feed(a.as_bytes()).is_empty());
        let out = p.feed(format!("{b}garbage\n").as_bytes());
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].as_ref().unwrap().seq, 1);
        assert_eq!(out[1].as_ref().unwrap_err().line_no, 2);
        assert_eq!(p.malformed, 1);
    }

    #[test]
    fn overlong_lines_are_bounded() {
        let mut p = LineParser::default();
        let big = vec![b'x'; 100_000];
        assert!(p.feed(&big).is_empty());
        assert!(p.partial.len() <= MAX_LINE);
        assert_eq!(p.feed(b"\n").len(), 1);
    }
}
