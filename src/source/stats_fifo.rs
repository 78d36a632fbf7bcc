//! Reads record lines from the stats FIFO and parses them, and the one
//! line reader every input goes through ([`LineParser`]: the FIFO here,
//! files and stdin in `dump` via [`read_records`]).
//!
//! The reader never blocks the save side: it holds the FIFO open for
//! reading (so the C writer's non-blocking open succeeds) and drains it as
//! lines arrive. When the writer goes away (the save helper exited, or the
//! FIFO was recreated) it reopens and waits for the next one, unless told
//! to end at the first end of stream.
//!
//! The stats path must stay a FIFO. It is opened with `O_NOFOLLOW` and the
//! *opened* file is checked with `fstat` (after an `lstat` that keeps
//! devices from being opened at all). Anything else found there (a regular
//! file, a symlink, a device) is reported once and never read: the reader
//! keeps waiting, re-checking once a second, for a FIFO to take its place
//! (friendlier for `run`, whose save helper may still come back), and says
//! so when one does. Ctrl-C ends the wait as usual.
//!
//! Lines are bounded ([`MAX_LINE`]); a longer line, invalid UTF-8 or a
//! line that is not a record is skipped and counted, and reported through
//! a [`RateLimit`] (the first few in full, then counts).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossbeam_channel::Sender;

use crate::fifo;
use crate::record::{self, Record};
use crate::sink::warn::{emit, RateLimit};

/// What to do when the writer closes the FIFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnEof {
    /// Reopen and wait for another writer (`watch`, `run`).
    Reopen,
    /// End the stream (`simulate`, whose one writer is done).
    Stop,
}

/// Longest line kept, newline included; record lines are at most
/// `REMUS_CKPT_RECORD_MAX` (1024) bytes.
pub const MAX_LINE: usize = 4096;

/// How often a stats path that is not a FIFO is looked at again.
const RECHECK_NOT_FIFO: Duration = Duration::from_secs(1);

/// Splits bytes into lines and parses them, counting line numbers. Lines
/// longer than [`MAX_LINE`] are never held whole: their start is dropped
/// as soon as they pass the bound, and they come out as
/// [`LineError::TooLong`].
#[derive(Debug, Default)]
pub struct LineParser {
    partial: Vec<u8>,
    /// The line being read has passed [`MAX_LINE`]: skip to its end.
    overlong: bool,
    line_no: u64,
    /// Lines that were not records.
    pub malformed: u64,
}

/// Why a line was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    /// Valid text, but not a record.
    Record(record::ParseError),
    /// Bytes that are not UTF-8.
    InvalidUtf8,
    /// Longer than [`MAX_LINE`].
    TooLong,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineError::Record(e) => e.fmt(f),
            LineError::InvalidUtf8 => write!(f, "not UTF-8 text"),
            LineError::TooLong => write!(f, "line longer than {MAX_LINE} bytes"),
        }
    }
}

/// A line that was not a record, with where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub line_no: u64,
    pub error: LineError,
}

/// The stderr lines for skipped input lines: the first few in full (file
/// and line number), then counts (see [`crate::sink::warn`]).
#[derive(Debug)]
pub struct SkipWarnings {
    path: PathBuf,
    limit: RateLimit,
}

impl SkipWarnings {
    pub fn new(path: &Path) -> Self {
        SkipWarnings {
            path: path.to_path_buf(),
            limit: RateLimit::new("malformed lines"),
        }
    }

    /// Reports one skipped line (or counts it).
    pub fn skipped(&mut self, m: &Malformed) {
        let path = &self.path;
        emit(self.limit.note(Instant::now(), || {
            format!(
                "remus-ckpt: {}: line {}: {} (skipped)",
                path.display(),
                m.line_no,
                m.error
            )
        }));
    }

    /// Shows the count when one is due (call it now and then).
    pub fn tick(&mut self) {
        emit(self.limit.tick(Instant::now()));
    }

    /// Shows what is still counted.
    pub fn finish(&mut self) {
        emit(self.limit.flush());
    }
}

/// One complete line (newline, if any, included); `None` for a blank one.
fn parse_record_line(line: &[u8], line_no: u64) -> Option<Result<Record, Malformed>> {
    let text = match std::str::from_utf8(line) {
        Ok(text) => text,
        Err(_) => {
            return Some(Err(Malformed {
                line_no,
                error: LineError::InvalidUtf8,
            }))
        }
    };
    if text.trim().is_empty() {
        return None;
    }
    Some(record::parse_line(text).map_err(|error| Malformed {
        line_no,
        error: LineError::Record(error),
    }))
}

impl LineParser {
    /// Feeds bytes; returns what complete lines parsed to, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Result<Record, Malformed>> {
        let mut out = Vec::new();
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            let complete = chunk.ends_with(b"\n");
            if complete && self.partial.is_empty() && !self.overlong && chunk.len() <= MAX_LINE {
                // The common case: a whole line in one read, no copy.
                self.line_no += 1;
                let parsed = parse_record_line(chunk, self.line_no);
                self.push(parsed, &mut out);
                continue;
            }
            self.keep(chunk);
            if complete {
                let parsed = self.take_line();
                self.push(parsed, &mut out);
            }
        }
        out
    }

    /// The last line of an input that does not end in a newline (a file);
    /// `None` when there is none.
    pub fn finish(&mut self) -> Option<Result<Record, Malformed>> {
        if self.partial.is_empty() && !self.overlong {
            return None;
        }
        let parsed = self.take_line();
        if matches!(parsed, Some(Err(_))) {
            self.malformed += 1;
        }
        parsed
    }

    /// Forgets a partial line (its writer went away).
    pub fn reset_partial(&mut self) {
        self.partial.clear();
        self.overlong = false;
    }

    /// Appends to the line being read, never past [`MAX_LINE`].
    fn keep(&mut self, chunk: &[u8]) {
        if self.overlong {
            return;
        }
        if self.partial.len() + chunk.len() > MAX_LINE {
            self.overlong = true;
            self.partial = Vec::new();
        } else {
            self.partial.extend_from_slice(chunk);
        }
    }

    fn take_line(&mut self) -> Option<Result<Record, Malformed>> {
        self.line_no += 1;
        let parsed = if self.overlong {
            Some(Err(Malformed {
                line_no: self.line_no,
                error: LineError::TooLong,
            }))
        } else {
            parse_record_line(&self.partial, self.line_no)
        };
        self.reset_partial();
        parsed
    }

    fn push(
        &mut self,
        parsed: Option<Result<Record, Malformed>>,
        out: &mut Vec<Result<Record, Malformed>>,
    ) {
        if let Some(p) = parsed {
            if p.is_err() {
                self.malformed += 1;
            }
            out.push(p);
        }
    }
}

/// Reads record lines from `input` (a file, stdin) to its end through the
/// one [`LineParser`], handing each record to `on_record`; skipped lines
/// are reported through [`SkipWarnings`] naming `name`. Memory stays
/// bounded whatever the input (`/dev/zero` included). Returns the number
/// of lines skipped.
pub fn read_records(
    mut input: impl Read,
    name: &Path,
    mut on_record: impl FnMut(Record) -> Result<()>,
) -> Result<u64> {
    let mut parser = LineParser::default();
    let mut warnings = SkipWarnings::new(name);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                warnings.finish();
                return Err(e).with_context(|| format!("read error in {}", name.display()));
            }
        };
        for parsed in parser.feed(&buf[..n]) {
            match parsed {
                Ok(rec) => on_record(rec)?,
                Err(m) => warnings.skipped(&m),
            }
        }
        warnings.tick();
    }
    match parser.finish() {
        Some(Ok(rec)) => on_record(rec)?,
        Some(Err(m)) => warnings.skipped(&m),
        None => {}
    }
    warnings.finish();
    Ok(parser.malformed)
}

/// What is at the stats path.
#[derive(Debug)]
enum Opened {
    Fifo(File),
    Absent,
    /// Something that is not a FIFO (what it is, for the message).
    NotFifo(&'static str),
}

fn describe(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_file() {
        "a regular file"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "not a FIFO"
    }
}

/// Opens the stats FIFO for reading without blocking, refusing anything
/// that is not a FIFO: `lstat` first (a device is not even opened), then
/// `O_NOFOLLOW` and `fstat` on what was opened (the path may change in
/// between; the opened file is what counts).
fn open_stats(path: &Path) -> io::Result<Opened> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_fifo() => {
            return Ok(Opened::NotFifo(describe(meta.file_type())))
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Opened::Absent),
        Err(e) => return Err(e),
    }
    let file = match crate::fifo::open_reader(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Opened::Absent),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(Opened::NotFifo("a symbolic link"))
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.file_type().is_fifo() {
        return Ok(Opened::NotFifo(describe(meta.file_type())));
    }
    Ok(Opened::Fifo(file))
}

/// Sleeps `total` in short steps; true when `stop` was set meanwhile.
fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) -> bool {
    let step = Duration::from_millis(100);
    let mut slept = Duration::ZERO;
    while slept < total {
        if stop.load(Ordering::Relaxed) {
            return true;
        }
        std::thread::sleep(step);
        slept += step;
    }
    stop.load(Ordering::Relaxed)
}

/// Reads `path` (or `file`, already opened on it) until `stop` is set (or,
/// with [`OnEof::Stop`], the writer closes), sending each record to `tx`.
/// Malformed lines are reported on stderr with their line number
/// (rate-limited) and skipped.
fn read_from(
    path: &Path,
    mut file: Option<File>,
    on_eof: OnEof,
    stop: &AtomicBool,
    tx: &Sender<Record>,
) -> Result<()> {
    let mut parser = LineParser::default();
    let mut warnings = SkipWarnings::new(path);
    let mut not_fifo = RateLimit::new("reports of a stats path that is not a FIFO");
    // What stands at the path instead of a FIFO, while it does.
    let mut refused: Option<&'static str> = None;
    let mut buf = vec![0u8; 64 * 1024];
    let mut had_writer = false;
    let result = loop {
        let f = match &mut file {
            Some(f) => f,
            None => match open_stats(path) {
                Ok(Opened::Fifo(f)) => {
                    if refused.take().is_some() {
                        emit(Some(format!(
                            "remus-ckpt: {} is a FIFO again: reading records from it",
                            path.display()
                        )));
                    }
                    file.insert(f)
                }
                Ok(Opened::Absent) => {
                    if sleep_unless_stopped(Duration::from_millis(100), stop) {
                        break Ok(());
                    }
                    continue;
                }
                Ok(Opened::NotFifo(what)) => {
                    if refused != Some(what) {
                        refused = Some(what);
                        emit(not_fifo.note(Instant::now(), || {
                            format!(
                                "remus-ckpt: warning: {} is {what}, not a FIFO: not reading it; \
                                 waiting for a FIFO to replace it (checked every {} s)",
                                path.display(),
                                RECHECK_NOT_FIFO.as_secs()
                            )
                        }));
                    }
                    if sleep_unless_stopped(RECHECK_NOT_FIFO, stop) {
                        break Ok(());
                    }
                    continue;
                }
                Err(e) => {
                    break Err(e)
                        .with_context(|| format!("cannot open stats FIFO {}", path.display()))
                }
            },
        };
        let revents = match fifo::poll_readable(f, 100) {
            Ok(r) => r,
            Err(e) => break Err(e).with_context(|| format!("poll on {}", path.display())),
        };
        if revents == 0 {
            warnings.tick();
            if stop.load(Ordering::Relaxed) {
                break Ok(());
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
                    break Ok(());
                }
                if stop.load(Ordering::Relaxed) {
                    break Ok(());
                }
            }
            Ok(n) => {
                had_writer = true;
                for parsed in parser.feed(&buf[..n]) {
                    match parsed {
                        Ok(rec) => {
                            if tx.send(rec).is_err() {
                                warnings.finish();
                                return Ok(());
                            }
                        }
                        Err(m) => warnings.skipped(&m),
                    }
                }
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e).with_context(|| format!("read from {}", path.display())),
        }
    };
    warnings.finish();
    emit(not_fifo.flush());
    result
}

/// Spawns [`read_from`] on its own thread. The FIFO is opened before this
/// returns (when it exists and is one), so a writer starting right after
/// is not dropped for want of a reader.
pub fn spawn(
    path: PathBuf,
    on_eof: OnEof,
    stop: Arc<AtomicBool>,
    tx: Sender<Record>,
) -> Result<std::thread::JoinHandle<Result<()>>> {
    let file = match open_stats(&path) {
        Ok(Opened::Fifo(f)) => Some(f),
        _ => None,
    };
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

    const RECORD: &str = "ckpt v=1 seq=1 dirty_pages=1 pages_sent=1 bytes_sent=4104 t_suspend=1 \
                          t_suspended=2 t_resumed=3 t_done=4";

    #[test]
    fn an_overlong_line_is_skipped_whole_even_if_it_starts_as_a_record() {
        // Before: the first 4096 bytes were kept and parsed, so a record
        // padded with an unknown key came through as a record.
        let mut p = LineParser::default();
        let line = format!("{RECORD} pad={}\n", "x".repeat(10 << 20));
        let out = p.feed(line.as_bytes());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].as_ref().unwrap_err().error, LineError::TooLong);
        assert!(p.partial.capacity() <= MAX_LINE);
        // The next line is read normally, with its own number.
        let out = p.feed(format!("{RECORD}\n").as_bytes());
        assert_eq!(out[0].as_ref().unwrap().seq, 1);
        assert_eq!(p.malformed, 1);
        // A line of exactly MAX_LINE bytes (newline included) is kept.
        let fit = format!("{RECORD} pad={}\n", "x".repeat(MAX_LINE - RECORD.len() - 6));
        assert_eq!(fit.len(), MAX_LINE);
        let (a, b) = fit.split_at(100);
        assert!(p.feed(a.as_bytes()).is_empty());
        assert!(p.feed(b.as_bytes())[0].is_ok());
    }

    #[test]
    fn invalid_utf8_is_skipped_not_guessed() {
        // Before: decoded lossily, so a record with a stray byte in an
        // unknown key's value was accepted.
        let mut p = LineParser::default();
        let mut line = format!("{RECORD} note=").into_bytes();
        line.extend_from_slice(b"\xff\xfe\n");
        let out = p.feed(&line);
        assert_eq!(out[0].as_ref().unwrap_err().error, LineError::InvalidUtf8);
        assert_eq!(p.malformed, 1);
    }

    #[test]
    fn the_last_line_without_newline_is_read_at_the_end() {
        let mut p = LineParser::default();
        assert!(p.feed(RECORD.as_bytes()).is_empty());
        assert_eq!(p.finish().unwrap().unwrap().seq, 1);
        assert!(p.finish().is_none());
        let mut records = Vec::new();
        let input = format!("junk\n{}\n{RECORD}", "y".repeat(1 << 20));
        let skipped = read_records(input.as_bytes(), Path::new("t"), |r| {
            records.push(r.seq);
            Ok(())
        })
        .unwrap();
        assert_eq!((records, skipped), (vec![1], 2));
    }

    #[test]
    fn only_a_fifo_is_opened() {
        let dir = tempfile::tempdir().unwrap();
        let fifo_path = dir.path().join("stats");
        assert!(matches!(open_stats(&fifo_path).unwrap(), Opened::Absent));
        fifo::ensure_private_fifo(&fifo_path).unwrap();
        assert!(matches!(open_stats(&fifo_path).unwrap(), Opened::Fifo(_)));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&fifo_path, &link).unwrap();
        assert!(matches!(
            open_stats(&link).unwrap(),
            Opened::NotFifo("a symbolic link")
        ));
        let file = dir.path().join("file");
        std::fs::write(&file, format!("{RECORD}\n")).unwrap();
        assert!(matches!(
            open_stats(&file).unwrap(),
            Opened::NotFifo("a regular file")
        ));
        assert!(matches!(
            open_stats(Path::new("/dev/zero")).unwrap(),
            Opened::NotFifo("a character device")
        ));
    }
}
