//! The record line the save side writes once per checkpoint
//! (`ckpt v=1 key=value ...`, see docs/protocol.md), parsed.
//!
//! Parsing never panics: a line is either a [`Record`] or a [`ParseError`]
//! saying why, and the reader reports it with its line number and goes on.
//! Unknown keys are ignored so that a newer save side works with this
//! consumer; a missing required key is an error.

use std::fmt;

/// Record format version this consumer understands: the one the C
/// emitter writes (csrc/remus_ckpt.h, through the bindings).
pub const RECORD_VERSION: u32 = crate::ffi::REMUS_CKPT_RECORD_VERSION;

/// Which checkpointed stream produced the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stream {
    #[default]
    Remus,
    Colo,
}

impl Stream {
    pub fn as_str(&self) -> &'static str {
        match self {
            Stream::Remus => "remus",
            Stream::Colo => "colo",
        }
    }
}

/// What ended the save side's gate wait (`trigger=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Trigger {
    /// No wait at all (not paced, or already late); also when absent.
    #[default]
    None,
    /// The interval's deadline.
    Interval,
    /// The dirty-page budget.
    Budget,
    /// A control line moved the deadline into the past.
    Control,
    /// A value this consumer does not know (a newer save side).
    Other,
}

impl Trigger {
    pub fn as_str(&self) -> &'static str {
        match self {
            Trigger::None => "none",
            Trigger::Interval => "interval",
            Trigger::Budget => "budget",
            Trigger::Control => "control",
            Trigger::Other => "other",
        }
    }

    pub fn parse(value: &str) -> Trigger {
        match value {
            "none" => Trigger::None,
            "interval" => Trigger::Interval,
            "budget" => Trigger::Budget,
            "control" => Trigger::Control,
            _ => Trigger::Other,
        }
    }
}

/// One checkpoint as reported by the save side. Timestamps are
/// CLOCK_MONOTONIC nanoseconds of the save host; 0 means "not reached".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub domid: u32,
    pub stream: Stream,
    pub live: bool,
    pub page_size: u32,
    pub dirty_pages: u64,
    pub deferred_pages: u64,
    pub pages_sent: u64,
    pub bytes_sent: u64,
    /// Bytes before compression (legacy Xen with compression), if reported.
    pub bytes_raw: Option<u64>,
    pub t_gate_ns: u64,
    pub t_suspend_ns: u64,
    pub t_suspended_ns: u64,
    pub t_sent_ns: u64,
    pub t_resumed_ns: u64,
    pub t_done_ns: u64,
    /// Interval the gate paced this checkpoint for (0: none).
    pub interval_ms: u32,
    /// Latest commanded interval when the record was written (0: none).
    pub cmd_interval_ms: u32,
    pub gate_wait_ns: u64,
    /// Records the save side lost before this one.
    pub dropped: u64,
    /// Control lines the save side refused so far.
    pub ctl_rejected: u64,
    /// `stats=`: the stats channel when the record was written (`ok`,
    /// `reopened`); `None` from writers that predate the key. Values this
    /// build does not know are kept as they are.
    pub stats_state: Option<String>,
    /// `ctl=`: control at the gate (`unset`, `ok`, `nowriter`, `refused`,
    /// `reopening`, `fallback`); `None` when absent (older writers, or no
    /// gate in this checkpoint).
    pub ctl_state: Option<String>,
    /// Budget keys (present once a budget was commanded or probed).
    pub trigger: Trigger,
    /// Dirty count at the last probe of the gate (0: no probe).
    pub dirty_at_trigger: u64,
    /// Probe calls in this checkpoint's gate.
    pub probes: u64,
    /// Time spent in those probes (the guest is paused during each).
    pub probe_ns: u64,
    /// Latest commanded dirty-page budget (0: off).
    pub budget_pages: u64,
    /// Probe calls that failed so far in this save.
    pub probe_errors: u64,
    /// `end=`: the save ended at this checkpoint after the guest resumed
    /// from it (`failover`: COLO's secondary is gone; `abort`: Remus'
    /// checkpoint callback returned 0; `error`); `None` while the save goes
    /// on. Values this build does not know are kept as they are.
    pub end: Option<String>,
    /// `clean_error=1`: the log-dirty CLEAN of this checkpoint failed and
    /// the save went on (legacy Xen 4.1-4.5), so `dirty_pages` (0) is no
    /// count. Absent: false.
    pub clean_error: bool,
}

impl Record {
    /// Guest paused time: t_resumed - t_suspended, in ns (0 if unknown).
    pub fn pause_ns(&self) -> u64 {
        span_ns(self.t_suspended_ns, self.t_resumed_ns)
    }

    /// Whole checkpoint: t_done - t_suspend, in ns (0 if unknown).
    pub fn checkpoint_ns(&self) -> u64 {
        span_ns(self.t_suspend_ns, self.t_done_ns)
    }
}

fn span_ns(from: u64, to: u64) -> u64 {
    if from == 0 || to == 0 {
        0
    } else {
        to.saturating_sub(from)
    }
}

/// Why a line is not a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The line does not start with `ckpt`.
    NotARecord,
    /// `v=` names a version this consumer does not read.
    Version(String),
    /// A required key is absent.
    Missing(&'static str),
    /// A key's value is not valid for it.
    BadValue { key: String, value: String },
    /// A token is not `key=value`.
    BadToken(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NotARecord => {
                write!(f, "not a checkpoint record (expected 'ckpt v=1 ...')")
            }
            ParseError::Version(v) => {
                write!(
                    f,
                    "record version v={v} is not supported (this build reads v={RECORD_VERSION})"
                )
            }
            ParseError::Missing(k) => write!(f, "required key '{k}' is missing"),
            ParseError::BadValue { key, value } => write!(f, "bad value '{value}' for key '{key}'"),
            ParseError::BadToken(t) => write!(f, "token '{t}' is not key=value"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Keys every record must carry, as bits of a mask (see `apply`).
const REQUIRED: [&str; 8] = [
    "seq",
    "dirty_pages",
    "pages_sent",
    "bytes_sent",
    "t_suspend",
    "t_suspended",
    "t_resumed",
    "t_done",
];
const ALL_REQUIRED: u8 = u8::MAX;

/// Parses one record line (with or without its trailing newline).
pub fn parse_line(line: &str) -> Result<Record, ParseError> {
    let mut tokens = line.trim_end_matches(['\n', '\r']).split_ascii_whitespace();
    if tokens.next() != Some("ckpt") {
        return Err(ParseError::NotARecord);
    }
    let mut rec = Record {
        page_size: 4096,
        ..Record::default()
    };
    let mut version_seen = false;
    let mut seen: u8 = 0;
    for token in tokens {
        let (key, value) = token
            .split_once('=')
            .ok_or_else(|| ParseError::BadToken(token.to_string()))?;
        if key == "v" {
            if num::<u32>(key, value).ok() != Some(RECORD_VERSION) {
                return Err(ParseError::Version(value.to_string()));
            }
            version_seen = true;
            continue;
        }
        seen |= apply(&mut rec, key, value)?;
    }
    if !version_seen {
        return Err(ParseError::Missing("v"));
    }
    if seen != ALL_REQUIRED {
        let missing = (0..REQUIRED.len())
            .find(|i| seen & (1 << i) == 0)
            .unwrap_or(0);
        return Err(ParseError::Missing(REQUIRED[missing]));
    }
    Ok(rec)
}

/// A plain decimal: digits only (no sign, no blanks), no overflow. One
/// pass over the bytes: this runs ~20 times per record.
fn num<T: TryFrom<u64>>(key: &str, value: &str) -> Result<T, ParseError> {
    if value.is_empty() {
        return Err(bad(key, value));
    }
    let mut n: u64 = 0;
    for b in value.bytes() {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return Err(bad(key, value));
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(digit)))
            .ok_or_else(|| bad(key, value))?;
    }
    T::try_from(n).map_err(|_| bad(key, value))
}

/// A state word (`stats=`, `ctl=`): lower-case letters, kept as written so
/// that states added later still parse.
fn state(key: &str, value: &str) -> Result<String, ParseError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_lowercase()) {
        return Err(bad(key, value));
    }
    Ok(value.to_string())
}

/// A 0|1 key (`live=`, `clean_error=`).
fn flag(key: &str, value: &str) -> Result<bool, ParseError> {
    match value {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(bad(key, value)),
    }
}

fn bad(key: &str, value: &str) -> ParseError {
    ParseError::BadValue {
        key: key.to_string(),
        value: value.to_string(),
    }
}

/// Sets the field `key` names; returns its bit in the required-key mask
/// (0 for optional keys), in the order of [`REQUIRED`].
fn apply(rec: &mut Record, key: &str, value: &str) -> Result<u8, ParseError> {
    let bit = match key {
        "seq" => {
            rec.seq = num(key, value)?;
            1 << 0
        }
        "dirty_pages" => {
            rec.dirty_pages = num(key, value)?;
            1 << 1
        }
        "pages_sent" => {
            rec.pages_sent = num(key, value)?;
            1 << 2
        }
        "bytes_sent" => {
            rec.bytes_sent = num(key, value)?;
            1 << 3
        }
        "t_suspend" => {
            rec.t_suspend_ns = num(key, value)?;
            1 << 4
        }
        "t_suspended" => {
            rec.t_suspended_ns = num(key, value)?;
            1 << 5
        }
        "t_resumed" => {
            rec.t_resumed_ns = num(key, value)?;
            1 << 6
        }
        "t_done" => {
            rec.t_done_ns = num(key, value)?;
            1 << 7
        }
        _ => {
            apply_optional(rec, key, value)?;
            0
        }
    };
    Ok(bit)
}

fn apply_optional(rec: &mut Record, key: &str, value: &str) -> Result<(), ParseError> {
    match key {
        "domid" => rec.domid = num(key, value)?,
        "stream" => {
            rec.stream = match value {
                "remus" => Stream::Remus,
                "colo" => Stream::Colo,
                _ => return Err(bad(key, value)),
            }
        }
        "live" => rec.live = flag(key, value)?,
        "page_size" => {
            rec.page_size = num(key, value)?;
            if rec.page_size == 0 {
                return Err(bad(key, value));
            }
        }
        "deferred_pages" => rec.deferred_pages = num(key, value)?,
        "bytes_raw" => rec.bytes_raw = Some(num(key, value)?),
        "t_gate" => rec.t_gate_ns = num(key, value)?,
        "t_sent" => rec.t_sent_ns = num(key, value)?,
        "interval_ms" => rec.interval_ms = num(key, value)?,
        "cmd_interval_ms" => rec.cmd_interval_ms = num(key, value)?,
        "gate_wait_ns" => rec.gate_wait_ns = num(key, value)?,
        "dropped" => rec.dropped = num(key, value)?,
        "ctl_rejected" => rec.ctl_rejected = num(key, value)?,
        "stats" => rec.stats_state = Some(state(key, value)?),
        "ctl" => rec.ctl_state = Some(state(key, value)?),
        "trigger" => rec.trigger = Trigger::parse(value),
        "dirty_at_trigger" => rec.dirty_at_trigger = num(key, value)?,
        "probes" => rec.probes = num(key, value)?,
        "probe_ns" => rec.probe_ns = num(key, value)?,
        "budget_pages" => rec.budget_pages = num(key, value)?,
        "probe_errors" => rec.probe_errors = num(key, value)?,
        "end" => rec.end = Some(state(key, value)?),
        "clean_error" => rec.clean_error = flag(key, value)?,
        // Forward compatibility: keys of newer writers are ignored.
        _ => {}
    }
    Ok(())
}

/// Formats a record the way the C library does: an independent reference
/// for the parser's round-trip tests (the shipped formatter is the C one,
/// `ffi::format_record`, checked against this shape in tests/c_records.rs).
#[cfg(test)]
fn format_line(rec: &Record) -> String {
    let mut line = format!(
        "ckpt v={RECORD_VERSION} seq={} domid={} stream={} live={} page_size={} \
         dirty_pages={} deferred_pages={} pages_sent={} bytes_sent={}",
        rec.seq,
        rec.domid,
        rec.stream.as_str(),
        u8::from(rec.live),
        rec.page_size,
        rec.dirty_pages,
        rec.deferred_pages,
        rec.pages_sent,
        rec.bytes_sent
    );
    if let Some(raw) = rec.bytes_raw {
        line.push_str(&format!(" bytes_raw={raw}"));
    }
    line.push_str(&format!(
        " t_gate={} t_suspend={} t_suspended={} t_sent={} t_resumed={} t_done={} \
         interval_ms={} cmd_interval_ms={} gate_wait_ns={} dropped={} ctl_rejected={}\n",
        rec.t_gate_ns,
        rec.t_suspend_ns,
        rec.t_suspended_ns,
        rec.t_sent_ns,
        rec.t_resumed_ns,
        rec.t_done_ns,
        rec.interval_ms,
        rec.cmd_interval_ms,
        rec.gate_wait_ns,
        rec.dropped,
        rec.ctl_rejected
    ));
    if let Some(s) = &rec.stats_state {
        line.insert_str(line.len() - 1, &format!(" stats={s}"));
    }
    if let Some(c) = &rec.ctl_state {
        line.insert_str(line.len() - 1, &format!(" ctl={c}"));
    }
    if rec.budget_pages != 0 || rec.probes != 0 || rec.probe_errors != 0 {
        line.pop();
        line.push_str(&format!(
            " trigger={} dirty_at_trigger={} probes={} probe_ns={} budget_pages={} \
             probe_errors={}\n",
            rec.trigger.as_str(),
            rec.dirty_at_trigger,
            rec.probes,
            rec.probe_ns,
            rec.budget_pages,
            rec.probe_errors
        ));
    }
    if rec.clean_error {
        line.insert_str(line.len() - 1, " clean_error=1");
    }
    if let Some(e) = &rec.end {
        line.insert_str(line.len() - 1, &format!(" end={e}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LINE: &str = "ckpt v=1 seq=7 domid=3 stream=remus live=0 page_size=4096 \
        dirty_pages=1201 deferred_pages=0 pages_sent=1201 bytes_sent=4934400 \
        t_gate=100 t_suspend=200 t_suspended=300 t_sent=400 t_resumed=500 t_done=600 \
        interval_ms=300 cmd_interval_ms=250 gate_wait_ns=90 dropped=2 ctl_rejected=1\n";

    #[test]
    fn parses_a_full_record() {
        let rec = parse_line(LINE).unwrap();
        assert_eq!(rec.seq, 7);
        assert_eq!(rec.domid, 3);
        assert_eq!(rec.dirty_pages, 1201);
        assert_eq!(rec.bytes_sent, 4_934_400);
        assert_eq!(rec.pause_ns(), 200);
        assert_eq!(rec.checkpoint_ns(), 400);
        assert_eq!(rec.interval_ms, 300);
        assert_eq!(rec.cmd_interval_ms, 250);
        assert_eq!(rec.dropped, 2);
        assert_eq!(format_line(&rec), LINE);
    }

    #[test]
    fn parses_channel_states_and_reads_old_records_without_them() {
        let old = parse_line(LINE).unwrap();
        assert_eq!((old.stats_state, old.ctl_state), (None, None));

        let line = LINE.replace(
            "ctl_rejected=1",
            "ctl_rejected=1 stats=reopened ctl=fallback",
        );
        let rec = parse_line(&line).unwrap();
        assert_eq!(rec.stats_state.as_deref(), Some("reopened"));
        assert_eq!(rec.ctl_state.as_deref(), Some("fallback"));
        assert_eq!(format_line(&rec), line);

        // A state this build does not know yet still parses.
        let rec =
            parse_line(&LINE.replace("ctl_rejected=1", "ctl_rejected=1 ctl=sleeping")).unwrap();
        assert_eq!(rec.ctl_state.as_deref(), Some("sleeping"));
        for bad in ["ctl=", "ctl=OK", "stats=ok;rm", "stats=1"] {
            assert!(
                matches!(
                    parse_line(&LINE.replace("ctl_rejected=1", &format!("ctl_rejected=1 {bad}"))),
                    Err(ParseError::BadValue { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn parses_how_the_save_ended() {
        assert_eq!(parse_line(LINE).unwrap().end, None);
        for word in ["failover", "abort", "error", "later"] {
            let line = LINE.replace(
                "ctl_rejected=1\n",
                &format!("ctl_rejected=1 stats=ok ctl=ok end={word}\n"),
            );
            let rec = parse_line(&line).unwrap();
            assert_eq!(rec.end.as_deref(), Some(word));
            assert_eq!(format_line(&rec), line);
        }
        assert!(matches!(
            parse_line(&LINE.replace("ctl_rejected=1\n", "ctl_rejected=1 end=\n")),
            Err(ParseError::BadValue { .. })
        ));
    }

    #[test]
    fn parses_a_failed_clean() {
        // Before: a failed CLEAN (legacy Xen) left a stale dirty count that
        // read as exact; now the record flags it and the flag is kept.
        assert!(!parse_line(LINE).unwrap().clean_error);
        let line = LINE.replace("dirty_pages=1201", "dirty_pages=0").replace(
            "ctl_rejected=1\n",
            "ctl_rejected=1 clean_error=1 end=abort\n",
        );
        let rec = parse_line(&line).unwrap();
        assert!(rec.clean_error);
        assert_eq!(rec.dirty_pages, 0);
        assert_eq!(rec.end.as_deref(), Some("abort"));
        assert_eq!(format_line(&rec), line);
        for bad in ["clean_error=2", "clean_error=", "clean_error=yes"] {
            assert!(
                matches!(
                    parse_line(&LINE.replace("ctl_rejected=1", &format!("ctl_rejected=1 {bad}"))),
                    Err(ParseError::BadValue { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn parses_the_budget_keys() {
        let line = LINE.replace(
            "ctl_rejected=1\n",
            "ctl_rejected=1 trigger=budget dirty_at_trigger=900 probes=4 probe_ns=80000 \
             budget_pages=1000 probe_errors=0\n",
        );
        let rec = parse_line(&line).unwrap();
        assert_eq!(rec.trigger, Trigger::Budget);
        assert_eq!(rec.dirty_at_trigger, 900);
        assert_eq!(rec.probes, 4);
        assert_eq!(rec.probe_ns, 80_000);
        assert_eq!(rec.budget_pages, 1000);
        assert_eq!(format_line(&rec), line);
        // Absent (no budget): the defaults; unknown trigger values parse.
        assert_eq!(parse_line(LINE).unwrap().trigger, Trigger::None);
        let newer = line.replace("trigger=budget", "trigger=thermal");
        assert_eq!(parse_line(&newer).unwrap().trigger, Trigger::Other);
    }

    #[test]
    fn ignores_unknown_keys() {
        let line = LINE.replace("dropped=2", "dropped=2 future_key=xyz");
        assert_eq!(parse_line(&line).unwrap().dropped, 2);
    }

    #[test]
    fn rejects_what_it_must() {
        assert_eq!(parse_line("hello"), Err(ParseError::NotARecord));
        assert!(matches!(
            parse_line(&LINE.replace("v=1", "v=2")),
            Err(ParseError::Version(_))
        ));
        assert_eq!(
            parse_line(&LINE.replace(" t_done=600", "")),
            Err(ParseError::Missing("t_done"))
        );
        assert!(matches!(
            parse_line(&LINE.replace("seq=7", "seq=-7")),
            Err(ParseError::BadValue { .. })
        ));
        assert!(matches!(
            parse_line(&LINE.replace("seq=7", "seq=+7")),
            Err(ParseError::BadValue { .. })
        ));
        assert!(matches!(
            parse_line(&LINE.replace("seq=7", "seq=99999999999999999999")),
            Err(ParseError::BadValue { .. })
        ));
        assert!(matches!(
            parse_line(&LINE.replace("seq=7", "seq")),
            Err(ParseError::BadToken(_))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_line(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn arbitrary_tokens_never_panic(tail in "[a-z_=0-9 ]{0,200}") {
            let _ = parse_line(&format!("ckpt v=1 {tail}"));
        }

        #[test]
        fn round_trip(seq in any::<u64>(), dirty in any::<u64>(), bytes in any::<u64>(),
                      raw in proptest::option::of(any::<u64>()), live in any::<bool>(),
                      t in any::<[u64; 6]>(), interval in any::<u32>(), dropped in any::<u64>(),
                      stats_state in proptest::option::of("[a-z]{1,9}"),
                      ctl_state in proptest::option::of("[a-z]{1,9}"),
                      clean_error in any::<bool>()) {
            let rec = Record {
                seq, dirty_pages: dirty, pages_sent: dirty, bytes_sent: bytes, bytes_raw: raw,
                live, page_size: 4096, t_gate_ns: t[0], t_suspend_ns: t[1], t_suspended_ns: t[2],
                t_sent_ns: t[3], t_resumed_ns: t[4], t_done_ns: t[5], interval_ms: interval,
                cmd_interval_ms: interval, dropped, stats_state, ctl_state, clean_error,
                ..Record::default()
            };
            prop_assert_eq!(parse_line(&format_line(&rec)), Ok(rec));
        }
    }
}
