//! Rate-limited warnings: every warning that can repeat (malformed lines,
//! missing records, stalls, CSV rows dropped, a stats path that is not a
//! FIFO) goes through a [`RateLimit`], so 20 MB of garbage costs a handful
//! of stderr lines, not one per line.
//!
//! The rule, per kind: the first [`FIRST_SHOWN`] occurrences are shown in
//! full; after that they are only counted, and one summary line
//! ("… and 12345 more malformed lines") is shown at most every
//! [`SUMMARY_EVERY`], plus a last one when the kind is flushed at the end.
//! Time is passed in, so tests drive it with a fake clock.

use std::time::{Duration, Instant};

/// Occurrences of one kind shown in full before counting starts.
pub const FIRST_SHOWN: u64 = 5;
/// At most one summary line per kind this often.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// The limiter for one kind of warning.
#[derive(Debug)]
pub struct RateLimit {
    /// Plural noun for the summary: "malformed lines", "gaps".
    what: &'static str,
    first: u64,
    every: Duration,
    seen: u64,
    /// Counted but not yet shown in a summary.
    unreported: u64,
    last_summary: Option<Instant>,
}

impl RateLimit {
    pub fn new(what: &'static str) -> Self {
        Self::with(what, FIRST_SHOWN, SUMMARY_EVERY)
    }

    pub fn with(what: &'static str, first: u64, every: Duration) -> Self {
        RateLimit {
            what,
            first,
            every,
            seen: 0,
            unreported: 0,
            last_summary: None,
        }
    }

    /// One more occurrence at `now`: the line to show, if any. `text` is
    /// only built when it is shown.
    pub fn note(&mut self, now: Instant, text: impl FnOnce() -> String) -> Option<String> {
        self.seen = self.seen.saturating_add(1);
        if self.seen <= self.first {
            let mut line = text();
            if self.seen == self.first {
                self.last_summary = Some(now);
                line.push_str(&format!(
                    " (further {} are counted, summarised every {} s)",
                    self.what,
                    self.every.as_secs()
                ));
            }
            return Some(line);
        }
        self.unreported = self.unreported.saturating_add(1);
        self.tick(now)
    }

    /// The summary line, if one is due at `now` and something is unreported.
    pub fn tick(&mut self, now: Instant) -> Option<String> {
        let due = self
            .last_summary
            .map_or(true, |t| now.saturating_duration_since(t) >= self.every);
        if due && self.unreported > 0 {
            self.last_summary = Some(now);
            self.flush()
        } else {
            None
        }
    }

    /// The summary of whatever is still unreported (at the end of a run).
    pub fn flush(&mut self) -> Option<String> {
        let n = std::mem::take(&mut self.unreported);
        (n > 0).then(|| format!("remus-ckpt: … and {n} more {}", self.what))
    }

    /// Occurrences so far, shown or not.
    pub fn seen(&self) -> u64 {
        self.seen
    }
}

/// Prints `line` on stderr if there is one (a closed stderr is ignored: a
/// warning must never stop Remus).
pub fn emit(line: Option<String>) {
    if let Some(line) = line {
        use std::io::Write;
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_shown_then_one_summary_per_interval() {
        let t0 = Instant::now();
        let mut r = RateLimit::with("bad lines", 3, Duration::from_secs(10));
        let shown: Vec<Option<String>> =
            (0..3).map(|i| r.note(t0, || format!("bad {i}"))).collect();
        assert_eq!(shown[0].as_deref(), Some("bad 0"));
        assert!(shown[2].as_deref().unwrap().contains("further bad lines"));
        // 10,000 more within the interval: nothing shown, all counted.
        let more = (0..10_000)
            .filter_map(|_| r.note(t0 + Duration::from_secs(1), || unreachable!()))
            .count();
        assert_eq!(more, 0);
        assert_eq!(
            r.note(t0 + Duration::from_secs(10), || unreachable!())
                .as_deref(),
            Some("remus-ckpt: … and 10001 more bad lines")
        );
        assert_eq!(r.tick(t0 + Duration::from_secs(12)), None, "nothing new");
        assert_eq!(
            r.note(t0 + Duration::from_secs(15), || unreachable!()),
            None
        );
        assert_eq!(
            r.flush().as_deref(),
            Some("remus-ckpt: … and 1 more bad lines")
        );
        assert_eq!(r.flush(), None);
        assert_eq!(r.seen(), 10_005);
    }
}
