//! The live status line on stderr, and the stall warning.
//!
//! On a terminal the line is redrawn in place (at most 10 times a second);
//! into a log it is printed every 10 s, so a CI log stays readable.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::row::Row;
use crate::units::format_bytes;

pub struct StatusLine {
    tty: bool,
    quiet: bool,
    every: Duration,
    last: Option<Instant>,
    checkpoints: u64,
    over_lmax: u64,
    drawn: bool,
}

impl StatusLine {
    pub fn new(quiet: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        StatusLine {
            tty,
            quiet,
            every: if tty {
                Duration::from_millis(100)
            } else {
                Duration::from_secs(10)
            },
            last: None,
            checkpoints: 0,
            over_lmax: 0,
            drawn: false,
        }
    }

    /// Shows `row` (when a redraw is due) with the run's counts so far.
    /// The counts come from the controller, so a row the status line
    /// never got (its queue was full) does not skew the share above Lmax.
    pub fn update(&mut self, row: &Row, checkpoints: u64, over_lmax: u64) {
        self.checkpoints = checkpoints;
        self.over_lmax = over_lmax;
        if self.quiet || self.last.is_some_and(|t| t.elapsed() < self.every) {
            return;
        }
        self.last = Some(Instant::now());
        let line = format!(
            "ckpt {:>6}  t {:>7.1}s  size {:>9}  pause {:>6.1}ms  period {:>7.1}ms  interval {:>5}ms -> {:>5}ms  >Lmax {:>4.1}%  dropped {}",
            row.seq,
            row.t_s,
            format_bytes(row.size_bytes),
            row.pause_ms,
            row.period_ms,
            row.interval_ms,
            row.next_interval_ms,
            self.over_lmax_pct(),
            row.dropped
        );
        let mut err = std::io::stderr().lock();
        // The status line is best effort: a closed stderr must not stop Remus.
        let _ = if self.tty {
            write!(err, "\r\x1b[2K{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
        self.drawn = self.tty;
    }

    /// Prints a message on its own line, keeping the status line intact.
    pub fn message(&mut self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = if self.drawn {
            writeln!(err, "\r\x1b[2K{text}")
        } else {
            writeln!(err, "{text}")
        };
        self.drawn = false;
        self.last = None;
    }

    pub fn over_lmax_pct(&self) -> f64 {
        if self.checkpoints == 0 {
            0.0
        } else {
            100.0 * self.over_lmax as f64 / self.checkpoints as f64
        }
    }

    /// Ends the status line so the next output starts clean.
    pub fn finish(&mut self) {
        if self.drawn {
            let _ = writeln!(std::io::stderr());
            self.drawn = false;
        }
    }
}
