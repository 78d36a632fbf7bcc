//! Fuzz targets shared by `tests/fuzz.rs` (a bounded, deterministic pass
//! under `cargo test`) and `examples/fuzz.rs` (the long mode, fresh seeds
//! for as long as asked).
//!
//! Every target is a pair: `generate` turns a seed into input bytes, and
//! `check` runs the code under test on those bytes and returns `Err` with
//! what went wrong (a panic is caught and reported the same way). The
//! bytes alone reproduce a failure: structured targets decode their
//! numbers from the bytes with [`Unstructured`], so a failing input printed
//! as hex replays with `--replay TARGET HEX`, and its seed with
//! `--seed TARGET SEED`.
//!
//! cargo-fuzz needs a nightly toolchain and libFuzzer; CI has stable
//! only, so this harness is plain Rust: seeded generators that know the
//! formats, and properties checked against reference models.
// Reason: the generators cut random u64s down to bytes, lengths and
// indices on purpose (`next_u64() as u8`, `below(n) as usize` with n a
// small length); a truncation there changes only which input is made.
#![allow(clippy::cast_possible_truncation)]
#![allow(dead_code)]

use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};

use remus_ckpt::disk::DiskDelta;
use remus_ckpt::ffi;
use remus_ckpt::pipeline::Controller;
use remus_ckpt::policy::{FixedBudget, Policy, PolicyArgs, PolicyKind};
use remus_ckpt::record::{self, Record, Stream, Trigger};
use remus_ckpt::report::rows::{interval_points, selected_rows};
use remus_ckpt::report::summary::quantiles;
use remus_ckpt::report::{self, Format, RunSummary};
use remus_ckpt::row::{read_csv, read_csv_from, CsvWriter, Row};
use remus_ckpt::source::stats_fifo::{LineError, LineParser, Malformed, MAX_LINE};
use remus_ckpt::units::{Bytes, Millis};

// ---------------------------------------------------------------------------
// Randomness: a seeded generator, and bytes read as structured values.
// ---------------------------------------------------------------------------

/// xorshift64* seeded through splitmix64 (so seeds 0, 1, 2, ... give
/// unrelated streams). Deterministic across machines and Rust versions.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-enough in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Values that break arithmetic and parsers more often than random ones.
const INTERESTING_U64: [u64; 14] = [
    0,
    1,
    2,
    9,
    10,
    4096,
    60_000,
    60_001,
    u32::MAX as u64,
    u32::MAX as u64 + 1,
    1 << 53,
    i64::MAX as u64,
    u64::MAX - 1,
    u64::MAX,
];

/// Reads numbers out of fuzz bytes; past the end everything is 0, so any
/// byte string decodes (and a shorter one is a simpler case).
pub struct Unstructured<'a> {
    data: &'a [u8],
}

impl<'a> Unstructured<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Unstructured { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    pub fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, i| acc | u64::from(self.u8()) << (8 * i))
    }

    /// Mostly small numbers, sometimes an interesting one, sometimes any.
    pub fn num(&mut self) -> u64 {
        match self.u8() % 8 {
            0 | 1 => *pick_by(&INTERESTING_U64, self.u8()),
            2 => self.u64(),
            _ => u64::from(self.u8()) * 1000 + u64::from(self.u8()),
        }
    }

    pub fn num_u32(&mut self) -> u32 {
        self.num().min(u64::from(u32::MAX)) as u32
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

fn pick_by<T>(items: &[T], selector: u8) -> &T {
    &items[usize::from(selector) % items.len()]
}

/// Lower-case hex, the form failing inputs are printed and replayed in.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub fn from_hex(hex: &str) -> Option<Vec<u8>> {
    let hex = hex.trim();
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

// ---------------------------------------------------------------------------
// Targets.
// ---------------------------------------------------------------------------

pub struct Target {
    pub name: &'static str,
    pub generate: fn(&mut Rng) -> Vec<u8>,
    pub check: fn(&[u8]) -> Result<(), String>,
}

pub const TARGETS: &[Target] = &[
    Target {
        name: "record_line",
        generate: gen_record_text,
        check: check_record_line,
    },
    Target {
        name: "line_parser",
        generate: gen_record_stream,
        check: check_line_parser,
    },
    Target {
        name: "control_line",
        generate: gen_control_line,
        check: check_control_line,
    },
    Target {
        name: "c_format",
        generate: gen_struct_bytes,
        check: check_c_format,
    },
    Target {
        name: "csv_reader",
        generate: gen_csv_text,
        check: check_csv_reader,
    },
    Target {
        name: "csv_round_trip",
        generate: gen_struct_bytes,
        check: check_csv_round_trip,
    },
    Target {
        name: "controller",
        generate: gen_struct_bytes,
        check: check_controller,
    },
];

pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// The input seed `seed` gives for `target`.
pub fn input_for(target: &Target, seed: u64) -> Vec<u8> {
    (target.generate)(&mut Rng::new(seed))
}

thread_local! {
    static IN_TARGET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static PANIC_AT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Panics in a target are caught and reported as failures: keep the
/// default hook from printing each one, but remember where it happened.
/// Panics elsewhere (a test's own assertion) print as usual.
pub fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_TARGET.with(|t| t.get()) {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                PANIC_AT.with(|p| *p.borrow_mut() = at);
            } else {
                default(info);
            }
        }));
    });
}

/// Runs one input; a panic is a failure like any other, with its message.
pub fn run_one(target: &Target, input: &[u8]) -> Result<(), String> {
    IN_TARGET.with(|t| t.set(true));
    let outcome = catch_unwind(AssertUnwindSafe(|| (target.check)(input)));
    IN_TARGET.with(|t| t.set(false));
    match outcome {
        Ok(result) => result,
        Err(panic) => Err(format!(
            "panicked at {}: {}",
            PANIC_AT.with(|p| p.borrow().clone()),
            panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)")
        )),
    }
}

/// A failing case, ready to print and replay.
pub struct Failure {
    pub target: &'static str,
    pub seed: u64,
    pub input_hex: String,
    pub error: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "target {} seed {}: {}\n  input (hex): {}\n  replay: cargo run --profile fuzz --example fuzz -- --replay {} {}",
            self.target, self.seed, self.error, self.input_hex, self.target, self.input_hex
        )
    }
}

/// Runs `target` on the input of `seed`; `Some` when it fails.
pub fn run_seed(target: &'static Target, seed: u64) -> Option<Failure> {
    let input = input_for(target, seed);
    run_one(target, &input).err().map(|error| Failure {
        target: target.name,
        seed,
        input_hex: to_hex(&input),
        error,
    })
}

// ---------------------------------------------------------------------------
// (1) Record lines: src/record.rs parse_line and the stats FIFO LineParser.
// ---------------------------------------------------------------------------

/// The wire names of the channel states (docs/protocol.md), indexed by
/// the C enums' values; index 0 is "not known", written as no key.
const STATS_STATES: [&str; 3] = ["", "ok", "reopened"];
const CTL_STATES: [&str; 7] = [
    "",
    "unset",
    "ok",
    "nowriter",
    "refused",
    "reopening",
    "fallback",
];
/// `trigger=` names by the C enum's value (any other value writes "none").
const TRIGGERS: [&str; 4] = ["none", "interval", "budget", "control"];
/// The C library's `end=` words, by their enum value (0: no key).
const ENDS: [&str; 4] = ["", "failover", "abort", "error"];

/// The record line format of docs/protocol.md, written independently of
/// both the C formatter and the Rust parser: key order, `bytes_raw` only
/// when known, the state keys only when known, and the budget keys only
/// once a budget was commanded or probed.
fn reference_line(r: &Record) -> String {
    let mut line = format!(
        "ckpt v=1 seq={} domid={} stream={} live={} page_size={} dirty_pages={} \
         deferred_pages={} pages_sent={} bytes_sent={}",
        r.seq,
        r.domid,
        r.stream.as_str(),
        u8::from(r.live),
        r.page_size,
        r.dirty_pages,
        r.deferred_pages,
        r.pages_sent,
        r.bytes_sent
    );
    if let Some(raw) = r.bytes_raw {
        let _ = write!(line, " bytes_raw={raw}");
    }
    let _ = write!(
        line,
        " t_gate={} t_suspend={} t_suspended={} t_sent={} t_resumed={} t_done={} \
         interval_ms={} cmd_interval_ms={} gate_wait_ns={} dropped={} ctl_rejected={}",
        r.t_gate_ns,
        r.t_suspend_ns,
        r.t_suspended_ns,
        r.t_sent_ns,
        r.t_resumed_ns,
        r.t_done_ns,
        r.interval_ms,
        r.cmd_interval_ms,
        r.gate_wait_ns,
        r.dropped,
        r.ctl_rejected
    );
    if let Some(s) = &r.stats_state {
        let _ = write!(line, " stats={s}");
    }
    if let Some(c) = &r.ctl_state {
        let _ = write!(line, " ctl={c}");
    }
    if has_budget_keys(r) {
        let _ = write!(
            line,
            " trigger={} dirty_at_trigger={} probes={} probe_ns={} budget_pages={} probe_errors={}",
            r.trigger.as_str(),
            r.dirty_at_trigger,
            r.probes,
            r.probe_ns,
            r.budget_pages,
            r.probe_errors
        );
    }
    if r.clean_error {
        line.push_str(" clean_error=1");
    }
    if let Some(e) = &r.end {
        let _ = write!(line, " end={e}");
    }
    line.push('\n');
    line
}

/// The C formatter's rule for writing the budget keys.
fn has_budget_keys(r: &Record) -> bool {
    r.budget_pages != 0 || r.probes != 0 || r.probe_errors != 0
}

/// What a record reads back as from its canonical line: the budget keys
/// are not written without a budget, so their other values are lost.
fn canonical(mut rec: Record) -> Record {
    if rec.bytes_raw == Some(0) {
        // Writers omit a zero bytes_raw (the C struct has no "absent").
        rec.bytes_raw = None;
    }
    if !has_budget_keys(&rec) {
        rec.trigger = Trigger::None;
        rec.dirty_at_trigger = 0;
        rec.probe_ns = 0;
    }
    rec
}

const REMUS: u32 = ffi::remus_ckpt_stream_REMUS_CKPT_STREAM_REMUS;
const COLO: u32 = ffi::remus_ckpt_stream_REMUS_CKPT_STREAM_COLO;

/// A state value: mostly a named one, sometimes 0 (none), sometimes any.
fn c_state(u: &mut Unstructured, named: usize) -> u32 {
    match u.u8() % 8 {
        0 => 0,
        1 => u32::from(u.u8()),
        2 => u.num_u32(),
        _ => 1 + u32::from(u.u8()) % (named as u32 - 1),
    }
}

fn c_record(u: &mut Unstructured) -> ffi::remus_ckpt_record {
    let mut r = ffi::remus_ckpt_record {
        seq: u.num(),
        domid: u.num_u32(),
        stream: match u.u8() % 8 {
            0 => COLO,
            1 => u32::from(u.u8()),
            _ => REMUS,
        },
        live: u32::from(u.u8() % 4 == 0),
        page_size: match u.u8() % 8 {
            0 => u.num_u32(),
            _ => 4096,
        },
        dirty_pages: u.num(),
        deferred_pages: u.num(),
        pages_sent: u.num(),
        bytes_sent: u.num(),
        bytes_raw: if u.u8() % 4 == 0 { u.num() } else { 0 },
        t_gate: u.num(),
        t_suspend: u.num(),
        t_suspended: u.num(),
        t_sent: u.num(),
        t_resumed: u.num(),
        t_done: u.num(),
        interval_ms: u.num_u32(),
        cmd_interval_ms: u.num_u32(),
        gate_wait_ns: u.num(),
        dropped: u.num(),
        ctl_rejected: u.num(),
        stats_state: c_state(u, STATS_STATES.len()),
        ctl_state: c_state(u, CTL_STATES.len()),
        trigger: 0,
        dirty_at_trigger: 0,
        probes: 0,
        probe_ns: 0,
        budget_pages: 0,
        probe_errors: 0,
        end: c_state(u, ENDS.len()),
        // Any non-zero value is written as clean_error=1.
        clean_error: match u.u8() % 8 {
            0 => u.num_u32(),
            1 => 1,
            _ => 0,
        },
    };
    // Half the records have no budget at all (the keys are then omitted
    // whatever the other budget fields say).
    let budget = u.u8();
    r.trigger = match u.u8() % 8 {
        0 => u.num_u32(),
        v => u32::from(v % 4),
    };
    r.dirty_at_trigger = u.num();
    r.probe_ns = u.num();
    if budget % 2 == 0 {
        r.budget_pages = if budget % 4 == 0 { u.num() } else { 0 };
        r.probes = if budget % 8 < 4 { u.num() } else { 0 };
        r.probe_errors = if budget % 16 < 8 { u.num() } else { 0 };
    }
    r
}

fn stream_name(stream: u32) -> Option<&'static str> {
    match stream {
        REMUS => Some("remus"),
        COLO => Some("colo"),
        _ => None,
    }
}

/// A state's wire name: `Ok(None)` for 0, `Err` for a value with no name
/// (the C formatter then refuses the record).
fn state_name(names: &[&'static str], v: u32) -> Result<Option<String>, ()> {
    match v {
        0 => Ok(None),
        v => match names.get(v as usize) {
            Some(name) => Ok(Some(name.to_string())),
            None => Err(()),
        },
    }
}

/// What parse_line must return for the line remus_ckpt_format makes from
/// `r`; `None` when the C formatter must refuse `r` (a stream or a state
/// that has no name).
fn expected_record(r: &ffi::remus_ckpt_record) -> Option<Record> {
    let stream = match stream_name(r.stream)? {
        "colo" => Stream::Colo,
        _ => Stream::Remus,
    };
    let rec = Record {
        seq: r.seq,
        domid: r.domid,
        stream,
        live: r.live != 0,
        page_size: r.page_size,
        dirty_pages: r.dirty_pages,
        deferred_pages: r.deferred_pages,
        pages_sent: r.pages_sent,
        bytes_sent: r.bytes_sent,
        bytes_raw: (r.bytes_raw != 0).then_some(r.bytes_raw),
        t_gate_ns: r.t_gate,
        t_suspend_ns: r.t_suspend,
        t_suspended_ns: r.t_suspended,
        t_sent_ns: r.t_sent,
        t_resumed_ns: r.t_resumed,
        t_done_ns: r.t_done,
        interval_ms: r.interval_ms,
        cmd_interval_ms: r.cmd_interval_ms,
        gate_wait_ns: r.gate_wait_ns,
        dropped: r.dropped,
        ctl_rejected: r.ctl_rejected,
        stats_state: state_name(&STATS_STATES, r.stats_state).ok()?,
        ctl_state: state_name(&CTL_STATES, r.ctl_state).ok()?,
        trigger: match TRIGGERS.get(r.trigger as usize).copied() {
            Some("interval") => Trigger::Interval,
            Some("budget") => Trigger::Budget,
            Some("control") => Trigger::Control,
            _ => Trigger::None,
        },
        dirty_at_trigger: r.dirty_at_trigger,
        probes: r.probes,
        probe_ns: r.probe_ns,
        budget_pages: r.budget_pages,
        probe_errors: r.probe_errors,
        end: state_name(&ENDS, r.end).ok()?,
        clean_error: r.clean_error != 0,
    };
    Some(canonical(rec))
}

/// The C struct for a parsed record (inverse of [`expected_record`]);
/// `None` when a value has no C spelling (a state word or a trigger this
/// C library does not write).
fn c_record_of(rec: &Record) -> Option<ffi::remus_ckpt_record> {
    let state = |names: &[&str], s: &Option<String>| match s {
        None => Some(0),
        Some(s) => names[1..].iter().position(|n| n == s).map(|i| i as u32 + 1),
    };
    Some(ffi::remus_ckpt_record {
        seq: rec.seq,
        domid: rec.domid,
        stream: match rec.stream {
            Stream::Remus => REMUS,
            Stream::Colo => COLO,
        },
        live: u32::from(rec.live),
        page_size: rec.page_size,
        dirty_pages: rec.dirty_pages,
        deferred_pages: rec.deferred_pages,
        pages_sent: rec.pages_sent,
        bytes_sent: rec.bytes_sent,
        bytes_raw: rec.bytes_raw.unwrap_or(0),
        t_gate: rec.t_gate_ns,
        t_suspend: rec.t_suspend_ns,
        t_suspended: rec.t_suspended_ns,
        t_sent: rec.t_sent_ns,
        t_resumed: rec.t_resumed_ns,
        t_done: rec.t_done_ns,
        interval_ms: rec.interval_ms,
        cmd_interval_ms: rec.cmd_interval_ms,
        gate_wait_ns: rec.gate_wait_ns,
        dropped: rec.dropped,
        ctl_rejected: rec.ctl_rejected,
        stats_state: state(&STATS_STATES, &rec.stats_state)?,
        ctl_state: state(&CTL_STATES, &rec.ctl_state)?,
        trigger: TRIGGERS
            .iter()
            .position(|t| *t == rec.trigger.as_str())
            .map(|i| i as u32)?,
        dirty_at_trigger: rec.dirty_at_trigger,
        probes: rec.probes,
        probe_ns: rec.probe_ns,
        budget_pages: rec.budget_pages,
        probe_errors: rec.probe_errors,
        end: state(&ENDS, &rec.end)?,
        clean_error: u32::from(rec.clean_error),
    })
}

/// Value spellings a parser of plain decimals must refuse or read exactly.
const ODD_VALUES: [&str; 16] = [
    "",
    "-1",
    "+1",
    "0x10",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999",
    "4294967296",
    "00",
    "1e3",
    " ",
    "\u{0661}",
    "１",
    "1_000",
    "\u{0}",
    "=",
];

const ODD_TOKENS: [&str; 26] = [
    "v=1",
    "v=2",
    "v=",
    "seq=1",
    "page_size=0",
    "stream=xen",
    "live=2",
    "key",
    "=",
    "future_key=x",
    "bytes_raw=0",
    "ckpt",
    "stats=ok",
    "stats=reopened",
    "stats=",
    "stats=OK",
    "ctl=fallback",
    "ctl=no-writer",
    "ctl=later",
    "ctl=ok2",
    "trigger=budget",
    "trigger=",
    "trigger=later",
    "budget_pages=1",
    "probes=0",
    "probe_errors=18446744073709551616",
];

/// State words a newer save side might write: the parser keeps them.
const NEW_STATE_WORDS: [&str; 4] = ["degraded", "x", "reopenedtwice", "closing"];

/// A valid record line from random values: what the C library writes, or
/// a newer writer's state words and trigger.
fn valid_line(rng: &mut Rng) -> String {
    let bytes = rng.bytes(240);
    let mut c = c_record(&mut Unstructured::new(&bytes));
    c.stream = if rng.chance(3) { COLO } else { REMUS };
    c.page_size = c.page_size.max(1);
    c.stats_state %= STATS_STATES.len() as u32;
    c.ctl_state %= CTL_STATES.len() as u32;
    c.end %= ENDS.len() as u32;
    let Some(mut rec) = expected_record(&c) else {
        unreachable!("a record with a stream and named states formats");
    };
    if rng.chance(8) {
        rec.stats_state = Some(rng.pick(&NEW_STATE_WORDS).to_string());
    }
    if rng.chance(8) {
        rec.ctl_state = Some(rng.pick(&NEW_STATE_WORDS).to_string());
    }
    if rng.chance(16) && has_budget_keys(&rec) {
        rec.trigger = Trigger::Other;
    }
    reference_line(&rec)
}

/// Mutates text the way broken writers and attackers do.
fn mutate(rng: &mut Rng, text: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let at = rng.below(text.len() as u64 + 1) as usize;
        match rng.below(9) {
            0 if !text.is_empty() => {
                let i = at.min(text.len() - 1);
                text[i] ^= 1 << rng.below(8);
            }
            1 => text.insert(at, rng.next_u64() as u8),
            2 => {
                let end = (at + rng.below(12) as usize).min(text.len());
                text.drain(at..end);
            }
            3 => {
                let tok = format!(" {}", rng.pick(&ODD_TOKENS));
                text.splice(at..at, tok.bytes());
            }
            4 => {
                // Replace the value after some '='.
                let eqs: Vec<usize> = (0..text.len()).filter(|&i| text[i] == b'=').collect();
                if let Some(&eq) = eqs.get(rng.below(eqs.len().max(1) as u64) as usize) {
                    let end = (eq + 1..text.len())
                        .find(|&i| text[i] == b' ' || text[i] == b'\n')
                        .unwrap_or(text.len());
                    text.splice(eq + 1..end, rng.pick(&ODD_VALUES).bytes());
                }
            }
            5 => text.truncate(at),
            6 => {
                const BLANKS: [&[u8]; 5] = [b"\t", b"  ", b"\r", b"\x0b", b"\xc2\xa0"];
                let ws = *rng.pick(&BLANKS);
                text.splice(at..at, ws.iter().copied());
            }
            7 => {
                // Duplicate a stretch (a repeated key, a repeated value).
                let end = (at + rng.below(24) as usize).min(text.len());
                let copy = text[at..end].to_vec();
                text.splice(end..end, copy);
            }
            _ => {}
        }
    }
}

fn gen_record_text(rng: &mut Rng) -> Vec<u8> {
    if rng.chance(8) {
        let len = rng.below(300) as usize;
        return rng.bytes(len);
    }
    let mut line = valid_line(rng).into_bytes();
    if !rng.chance(4) {
        mutate(rng, &mut line);
    }
    line
}

/// parse_line never panics, and whatever it accepts is a record that
/// formats (reference and C formatter alike) and parses back to itself;
/// state words it accepts are lower-case words, kept as the line said.
fn check_record_line(input: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(input);
    let Ok(rec) = record::parse_line(&text) else {
        return Ok(());
    };
    if rec.page_size == 0 {
        return Err(format!("accepted page_size=0: {rec:?}"));
    }
    for (key, got) in [("stats=", &rec.stats_state), ("ctl=", &rec.ctl_state)] {
        // The last token of the key wins, as for every key.
        let said = text
            .split_ascii_whitespace()
            .rev()
            .find_map(|t| t.strip_prefix(key));
        if said != got.as_deref() {
            return Err(format!("{key}{said:?} in the line, {got:?} parsed"));
        }
        if got
            .as_ref()
            .is_some_and(|w| w.is_empty() || !w.bytes().all(|b| b.is_ascii_lowercase()))
        {
            return Err(format!("accepted {key}{got:?}, not a lower-case word"));
        }
    }
    let rec = canonical(rec);
    let line = reference_line(&rec);
    let again = record::parse_line(&line);
    if again.as_ref() != Ok(&rec) {
        return Err(format!(
            "accepted {rec:?}\nbut its canonical line {line:?} parses to {again:?}"
        ));
    }
    if let Some(c) = c_record_of(&rec) {
        match ffi::format_record(&c) {
            Some(c_line) if c_line == line => {}
            other => return Err(format!("C formatter wrote {other:?}, reference {line:?}")),
        }
    }
    Ok(())
}

fn gen_record_stream(rng: &mut Rng) -> Vec<u8> {
    // Byte 0: how to cut the stream into reads (see check_line_parser).
    let mut out = vec![rng.next_u64() as u8];
    for _ in 0..rng.below(6) {
        match rng.below(8) {
            0 => out.extend_from_slice(b"\n"),
            1 => {
                const BLANK_LINES: [&[u8]; 3] = [b" \r\n", b"\t\n", b"\xff\xfe\n"];
                let line = *rng.pick(&BLANK_LINES);
                out.extend_from_slice(line)
            }
            2 => {
                // About as long as the reader keeps (MAX_LINE, 4096, the
                // newline included): one byte either side of the bound,
                // or the cut landing in the record's last tokens.
                let line = valid_line(rng);
                let (head, tail) = line.split_at(9); // after "ckpt v=1 "
                let spread = if rng.chance(2) { 4 } else { 40 };
                let len = MAX_LINE - 2 + rng.below(spread) as usize;
                let pad = len.saturating_sub(head.len() + 5 + tail.len()).max(1);
                out.extend_from_slice(head.as_bytes());
                out.extend_from_slice(b"pad=");
                out.extend(std::iter::repeat(b'x').take(pad));
                out.push(b' ');
                out.extend_from_slice(tail.as_bytes());
            }
            3 if rng.chance(4) => {
                // An overlong blank line.
                out.extend(std::iter::repeat(b' ').take(MAX_LINE + rng.below(3) as usize));
            }
            _ => out.extend(gen_record_text(rng)),
        }
        if !out.ends_with(b"\n") && !rng.chance(4) {
            out.push(b'\n');
        }
    }
    out
}

/// What LineParser must make of one line (its newline, if any, included):
/// too long, not UTF-8, blank (nothing), or what parse_line says.
fn model_line(line: &[u8]) -> Option<Result<Record, LineError>> {
    if line.len() > MAX_LINE {
        return Some(Err(LineError::TooLong));
    }
    let Ok(text) = std::str::from_utf8(line) else {
        return Some(Err(LineError::InvalidUtf8));
    };
    if text.trim().is_empty() {
        return None;
    }
    Some(record::parse_line(text).map_err(LineError::Record))
}

type Outcome = (u64, Result<Record, LineError>);

/// Reference model of LineParser: every line parsed whole and numbered
/// (blank lines count); the last one, without its newline, at finish.
fn model_lines(stream: &[u8]) -> (Vec<Outcome>, Option<Outcome>) {
    let mut out = Vec::new();
    let mut last = None;
    for (i, line) in stream.split_inclusive(|b| *b == b'\n').enumerate() {
        let line_no = i as u64 + 1;
        let outcome = model_line(line).map(|r| (line_no, r));
        if line.ends_with(b"\n") {
            out.extend(outcome);
        } else {
            last = outcome;
        }
    }
    (out, last)
}

fn outcome_of(r: Result<Record, Malformed>, lines_so_far: u64) -> (Option<u64>, Outcome) {
    match r {
        Ok(rec) => (None, (lines_so_far, Ok(rec))),
        Err(m) => (Some(m.line_no), (m.line_no, Err(m.error))),
    }
}

/// Fed in any split, LineParser gives what parsing each line whole gives:
/// the same line numbers, records and errors (lines longer than MAX_LINE
/// refused whole, however they arrive), and counts the errors.
fn check_line_parser(input: &[u8]) -> Result<(), String> {
    let Some((&cut, stream)) = input.split_first() else {
        return Ok(());
    };
    let (model, model_last) = model_lines(stream);
    let mut parser = LineParser::default();
    let mut got = Vec::new();
    // Cut into reads of 1..=cut+1 bytes, varying with position.
    let mut at = 0;
    let mut step = usize::from(cut) + 1;
    while at < stream.len() {
        let end = (at + step).min(stream.len());
        got.extend(parser.feed(&stream[at..end]));
        at = end;
        step = (step * 7 + 3) % (usize::from(cut) * 37 + 1) + 1;
    }
    if got.len() != model.len() {
        return Err(format!(
            "{} results, the model has {} (cut {cut})",
            got.len(),
            model.len()
        ));
    }
    let errors = got.iter().filter(|r| r.is_err()).count() as u64;
    if parser.malformed != errors {
        return Err(format!(
            "malformed = {}, errors returned {errors}",
            parser.malformed
        ));
    }
    for (g, (line_no, want)) in got.into_iter().zip(model) {
        // Records carry no line number: compare the rest.
        let (g_no, (_, g_res)) = outcome_of(g, line_no);
        if g_no.is_some_and(|n| n != line_no) {
            return Err(format!("line {line_no} reported as line {g_no:?}"));
        }
        if g_res != want {
            return Err(format!(
                "line {line_no} (cut {cut}): got {g_res:?}, parsing it whole gives {want:?}"
            ));
        }
    }
    let last = parser.finish().map(|r| outcome_of(r, 0).1);
    let last_ok = match (&last, &model_last) {
        (None, None) => true,
        (Some((n, a)), Some((m, b))) => a == b && (a.is_ok() || n == m),
        _ => false,
    };
    if !last_ok {
        return Err(format!(
            "the last line (no newline) gave {last:?}, the model {model_last:?}"
        ));
    }
    if parser.malformed != errors + u64::from(matches!(last, Some((_, Err(_))))) {
        return Err(format!("malformed = {} after finish", parser.malformed));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// (2) The C control-line parser and the C record formatter (through bindgen).
// ---------------------------------------------------------------------------

const INTERVAL_MAX_MS: u32 = ffi::REMUS_CKPT_INTERVAL_MAX_MS;
const BUDGET_MAX_PAGES: u64 = ffi::REMUS_CKPT_BUDGET_MAX_PAGES;
const KEY_INTERVAL: u32 = ffi::remus_ckpt_ctl_key_REMUS_CKPT_CTL_INTERVAL_MS;
const KEY_BUDGET: u32 = ffi::remus_ckpt_ctl_key_REMUS_CKPT_CTL_BUDGET_PAGES;

/// The control keys of docs/protocol.md: prefix, C key, bounds.
const CTL_KEYS: [(&[u8], u32, u64, u64); 2] = [
    (b"interval_ms=", KEY_INTERVAL, 1, INTERVAL_MAX_MS as u64),
    (b"budget_pages=", KEY_BUDGET, 0, BUDGET_MAX_PAGES),
];

/// What remus_ckpt_parse_control_kv must return: the key and value of a
/// canonical `<key>=<n>` (no sign, no leading zero but "0" itself, within
/// the key's bounds) followed only by blanks, tabs or CRs; `None` for
/// anything else.
pub fn model_control_kv(line: &[u8]) -> Option<(u32, u64)> {
    let (prefix, key, min, max) = CTL_KEYS.iter().find(|k| line.starts_with(k.0))?;
    let rest = &line[prefix.len()..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let (number, tail) = rest.split_at(digits);
    if number.is_empty() || (number[0] == b'0' && number.len() > 1) || number.len() > 20 {
        return None;
    }
    if !tail.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
        return None;
    }
    let value: u128 = number.iter().fold(0, |v, d| v * 10 + u128::from(d - b'0'));
    let value = u64::try_from(value).ok()?;
    (*min..=*max).contains(&value).then_some((*key, value))
}

/// What remus_ckpt_parse_control must return: the interval of an
/// `interval_ms` line, 0 for anything else (budget lines included).
pub fn model_control(line: &[u8]) -> u32 {
    match model_control_kv(line) {
        Some((KEY_INTERVAL, ms)) => u32::try_from(ms).expect("interval within its key's range"),
        _ => 0,
    }
}

/// `line` with a digit right after it: a parser that reads past `len`
/// would take it as part of the number (and then disagree with the model).
fn with_digit_after(line: &[u8]) -> Vec<u8> {
    let mut buf = line.to_vec();
    buf.push(b'7');
    buf
}

fn c_parse_control(line: &[u8]) -> u32 {
    let buf = with_digit_after(line);
    // SAFETY: buf holds line.len() + 1 readable bytes; the parser is told
    // line.len() and is a pure function of those bytes.
    unsafe { ffi::remus_ckpt_parse_control(buf.as_ptr().cast(), line.len()) }
}

fn c_parse_control_kv(line: &[u8]) -> Option<(u32, u64)> {
    let buf = with_digit_after(line);
    // Poisoned: a parser that fails must leave them, one that succeeds
    // must set both.
    let (mut key, mut value) = (u32::MAX, u64::MAX);
    // SAFETY: as in c_parse_control; key and value are valid for writes.
    let rc = unsafe {
        ffi::remus_ckpt_parse_control_kv(buf.as_ptr().cast(), line.len(), &mut key, &mut value)
    };
    match rc {
        0 => Some((key, value)),
        -1 if (key, value) == (u32::MAX, u64::MAX) => None,
        // Reported as a key no control line has: the check fails.
        _ => Some((u32::MAX - 1, value)),
    }
}

/// Values around the budget's bound and the canonical-zero rule.
const BUDGET_VALUES: [&str; 8] = [
    "0",
    "00",
    "01",
    "1",
    "1099511627775",
    "1099511627776",
    "1099511627777",
    "01099511627776",
];

fn gen_control_line(rng: &mut Rng) -> Vec<u8> {
    if rng.chance(10) {
        let len = rng.below(80) as usize;
        return rng.bytes(len);
    }
    let budget = rng.chance(2);
    let value = match rng.below(7) {
        0 => rng.pick(&INTERESTING_U64).to_string(),
        1 => rng.pick(&ODD_VALUES).to_string(),
        2 => format!("0{}", rng.below(70_000)),
        3 if budget => rng.pick(&BUDGET_VALUES).to_string(),
        4 if budget => (BUDGET_MAX_PAGES - 1000 + rng.below(2000)).to_string(),
        _ => (rng.below(70_000)).to_string(),
    };
    let key = if budget {
        "budget_pages"
    } else {
        "interval_ms"
    };
    let mut line = format!("{key}={value}").into_bytes();
    for _ in 0..rng.below(4) {
        line.push(*rng.pick(b" \t\r\n\x0b\0x"));
    }
    if rng.chance(3) {
        mutate(rng, &mut line);
    }
    line
}

/// Both C parsers agree with the model on every line, stay in range, and
/// accept only the canonical spelling of the value they return.
fn check_control_line(input: &[u8]) -> Result<(), String> {
    let want = model_control_kv(input);
    let got = c_parse_control_kv(input);
    if got != want {
        return Err(format!(
            "remus_ckpt_parse_control_kv returned {got:?}, the model {want:?}"
        ));
    }
    let (got_ms, want_ms) = (c_parse_control(input), model_control(input));
    if got_ms != want_ms {
        return Err(format!(
            "remus_ckpt_parse_control returned {got_ms}, the model {want_ms}"
        ));
    }
    if let Some((key, value)) = got {
        let Some((prefix, _, min, max)) = CTL_KEYS.iter().find(|k| k.1 == key) else {
            return Err(format!("unknown key {key}"));
        };
        if !(*min..=*max).contains(&value) {
            return Err(format!("value {value} out of [{min}, {max}]"));
        }
        let mut canonical = prefix.to_vec();
        canonical.extend_from_slice(value.to_string().as_bytes());
        let ok = input.starts_with(&canonical)
            && input[canonical.len()..]
                .iter()
                .all(|b| matches!(b, b' ' | b'\t' | b'\r'));
        if !ok {
            return Err(format!("accepted {value} from a non-canonical line"));
        }
    }
    Ok(())
}

fn gen_struct_bytes(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(600) as usize;
    rng.bytes(len)
}

/// The C formatter with a buffer of `len` bytes: the line, or -1.
fn c_format_into(rec: &ffi::remus_ckpt_record, len: usize) -> Result<String, i32> {
    let mut buf = vec![0xaau8; len + 1];
    // SAFETY: rec is a valid record; buf is writable for len (+1) bytes.
    let n = unsafe { ffi::remus_ckpt_format(rec, buf.as_mut_ptr().cast(), len) };
    if buf[len] != 0xaa {
        return Err(-2); // wrote past len
    }
    let n = usize::try_from(n).map_err(|_| n)?;
    if buf.get(n) != Some(&0) {
        return Err(-3); // no NUL after the line
    }
    String::from_utf8(buf[..n].to_vec()).map_err(|_| -4)
}

/// remus_ckpt_format writes exactly the reference line (every record
/// fits in REMUS_CKPT_RECORD_MAX), refuses only records with a stream or
/// state that has no name and buffers too small for the line and its NUL,
/// and parse_line reads every field of it back.
fn check_c_format(input: &[u8]) -> Result<(), String> {
    let mut u = Unstructured::new(input);
    let rec = c_record(&mut u);
    let max = ffi::REMUS_CKPT_RECORD_MAX as usize;
    let got = ffi::format_record(&rec);
    let Some(expected) = expected_record(&rec) else {
        return match got {
            None => Ok(()),
            Some(line) => Err(format!("formatted an unnamed stream or state: {line:?}")),
        };
    };
    let want = reference_line(&expected);
    if want.len() > max {
        return Err(format!("a record of {} bytes: {want:?}", want.len()));
    }
    match got {
        None => return Err(format!("refused a record that fits: {want:?}")),
        Some(line) if line != want => {
            return Err(format!("wrote {line:?}, expected {want:?}"));
        }
        Some(_) => {}
    }
    // The buffer bound: the line and its NUL, not one byte less.
    let exact = c_format_into(&rec, want.len() + 1);
    let short = c_format_into(
        &rec,
        (want.len() - u.num() as usize % want.len()).min(want.len()),
    );
    if exact.as_deref() != Ok(want.as_str()) || short != Err(-1) {
        return Err(format!(
            "with {} bytes: {exact:?}; with fewer: {short:?}",
            want.len() + 1
        ));
    }
    // page_size 0 is refused by the parser; the library never writes it
    // (remus_ckpt_open refuses page_size 0, docs/protocol.md).
    let parsed = record::parse_line(&want);
    let ok = if expected.page_size == 0 {
        parsed
            == Err(record::ParseError::BadValue {
                key: "page_size".into(),
                value: "0".into(),
            })
    } else {
        parsed.as_ref() == Ok(&expected)
    };
    if !ok {
        return Err(format!("{want:?} parses to {parsed:?}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// (3) Run CSVs: src/row/read.rs read_csv_from, src/row/write.rs, and the
//     streaming summary of src/report/summary.rs.
// ---------------------------------------------------------------------------

/// How a CSV column is read (src/row/mod.rs).
#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    U64,
    F64,
    Live,
    OptU64,
    Text,
}

/// The columns the CSV sink writes, in order, with their kinds.
pub const CSV_COLUMNS: [(&str, Kind); 27] = [
    ("seq", Kind::U64),
    ("t_s", Kind::F64),
    ("dirty_pages", Kind::U64),
    ("pages_sent", Kind::U64),
    ("bytes_sent", Kind::U64),
    ("disk_bytes", Kind::U64),
    ("size_bytes", Kind::U64),
    ("pause_ms", Kind::F64),
    ("checkpoint_ms", Kind::F64),
    ("period_ms", Kind::F64),
    ("interval_ms", Kind::U64),
    ("dropped", Kind::U64),
    ("live", Kind::Live),
    ("memory_bytes", Kind::U64),
    ("gate_wait_ms", Kind::F64),
    ("next_interval_ms", Kind::U64),
    ("drbd_deferred", Kind::OptU64),
    ("drbd_checkpoints", Kind::OptU64),
    ("gap", Kind::U64),
    ("trigger", Kind::Text),
    ("dirty_at_trigger", Kind::U64),
    ("budget_pages", Kind::U64),
    ("probes", Kind::U64),
    ("probe_ms", Kind::F64),
    ("disk_epochs", Kind::OptU64),
    // A u8 flag, read as `live` is.
    ("disk_unknown", Kind::Live),
    ("clean_error", Kind::Live),
];

/// Headers of the CSVs this reader must read: the current one, the one
/// before `clean_error`, the one before the gap and budget columns, and
/// the legacy twelve columns.
const HEADER_WIDTHS: [usize; 4] = [25, 24, 18, 12];

pub fn csv_header(width: usize) -> String {
    let names: Vec<&str> = CSV_COLUMNS[..width].iter().map(|c| c.0).collect();
    names.join(",") + "\n"
}

const ODD_CELLS: [&str; 14] = [
    "NaN",
    "inf",
    "-inf",
    "-1",
    "-0.0",
    "1e308",
    "1e309",
    "",
    "\"1\"",
    "\"a\nb\"",
    "0x1",
    "18446744073709551616",
    "4.9e-324",
    " 7 ",
];

/// Floats the reader must refuse (NaN, infinite, negative) or take.
const EDGE_FLOATS: [&str; 9] = [
    "NaN", "inf", "-inf", "-1.5", "1e309", "-1e-300", "-0.0", "0", "1e-320",
];

const TRIGGER_CELLS: [&str; 7] = ["", "interval", "budget", "control", "none", "other", "x y"];

fn gen_csv_text(rng: &mut Rng) -> Vec<u8> {
    if rng.chance(10) {
        let len = rng.below(400) as usize;
        return rng.bytes(len);
    }
    let width = *rng.pick(&HEADER_WIDTHS);
    let mut text = csv_header(width);
    let rows = rng.below(8);
    // One float cell of one row on the edge of what is valid.
    let edge = rng
        .chance(4)
        .then(|| (rng.below(rows.max(1)), rng.below(width as u64) as usize));
    for r in 0..rows {
        let cells: Vec<String> = CSV_COLUMNS[..width]
            .iter()
            .enumerate()
            .map(|(column, (_, kind))| match (rng.below(150), kind) {
                (_, Kind::F64) if edge == Some((r, column)) => rng.pick(&EDGE_FLOATS).to_string(),
                (0, _) => rng.pick(&ODD_CELLS).to_string(),
                (1, _) => rng.pick(&INTERESTING_U64).to_string(),
                (_, Kind::F64) => format!("{}.{}", rng.below(1000), rng.below(1000)),
                (_, Kind::Live) => rng.below(2).to_string(),
                (_, Kind::OptU64) if rng.chance(2) => String::new(),
                (_, Kind::Text) => rng.pick(&TRIGGER_CELLS).to_string(),
                _ => rng.below(5000).to_string(),
            })
            .collect();
        text.push_str(&cells.join(","));
        text.push('\n');
    }
    let mut bytes = text.into_bytes();
    if rng.chance(4) {
        mutate(rng, &mut bytes);
    }
    bytes
}

/// A cell the model knows the reader's verdict on: `Some(true)` valid,
/// `Some(false)` a float the value check must refuse, `None` unknown
/// (anything the csv crate's parsing decides: signs, hex, overflow, ...).
fn model_cell(kind: Kind, cell: &str) -> Option<bool> {
    let digits = !cell.is_empty() && cell.bytes().all(|b| b.is_ascii_digit());
    match kind {
        Kind::U64 => (digits && cell.parse::<u64>().is_ok()).then_some(true),
        Kind::OptU64 => {
            (cell.is_empty() || (digits && cell.parse::<u64>().is_ok())).then_some(true)
        }
        Kind::Live => (digits && cell.parse::<u8>().is_ok()).then_some(true),
        Kind::Text => Some(true),
        Kind::F64 => {
            let v: f64 = cell.parse().ok()?;
            Some(v.is_finite() && v >= 0.0)
        }
    }
}

/// What read_csv must say of a plain file (one of the known headers, no
/// quotes or blanks, every row as wide as the header): `Some(Ok)` when
/// every row reads, `Some(Err((line, column)))` for the first float it
/// must refuse; `None` when the model cannot tell.
pub fn model_csv(input: &[u8]) -> Option<Result<(), (usize, &'static str)>> {
    let text = std::str::from_utf8(input).ok()?;
    if text.contains(['"', '\r']) || text.chars().any(|c| c.is_whitespace() && c != '\n') {
        return None;
    }
    let mut lines: Vec<&str> = text.split('\n').collect();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    let (header, rows) = lines.split_first()?;
    let width = HEADER_WIDTHS
        .into_iter()
        .find(|w| csv_header(*w).trim_end() == *header)?;
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<&str> = row.split(',').collect();
        if cells.len() != width {
            return None;
        }
        let mut first_bad = None;
        for ((name, kind), cell) in CSV_COLUMNS.iter().zip(&cells) {
            if !model_cell(*kind, cell)? && first_bad.is_none() {
                first_bad = Some(*name);
            }
        }
        if let Some(name) = first_bad {
            return Some(Err((i + 2, name)));
        }
    }
    Some(Ok(()))
}

/// The rows as the CSV writer writes them.
fn csv_text(rows: &[Row]) -> Result<String, String> {
    let mut writer = csv::WriterBuilder::new()
        .has_headers(true)
        .from_writer(Vec::new());
    for row in rows {
        writer.serialize(row).map_err(|e| e.to_string())?;
    }
    let bytes = writer.into_inner().map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|e| e.to_string())
}

const LMIN: u64 = 4 << 20;
const LMAX: u64 = 16 << 20;

/// Arbitrary bytes never make the reader (or the summary) panic; a plain
/// file reads, or is refused at the line and column of its first NaN,
/// infinite or negative float, as the model says; what it accepts writes
/// back and reads back to the same text; and the streaming summary of
/// the bytes is, exactly, the all-in-memory summary of the rows read (the
/// inputs stay far below EXACT_MAX values).
fn check_csv_reader(input: &[u8]) -> Result<(), String> {
    let read = read_csv_from(input, "fuzz.csv");
    match (model_csv(input), &read) {
        (Some(Ok(())), Err(e)) => return Err(format!("refused a valid file: {e:#}")),
        (Some(Err((line, column))), Ok(_)) => {
            return Err(format!("accepted line {line} column {column}"));
        }
        (Some(Err((line, column))), Err(e)) => {
            let e = format!("{e:#}");
            if !e.contains(&format!("fuzz.csv: line {line}: column {column}: ")) {
                return Err(format!("line {line} column {column} refused as: {e}"));
            }
        }
        _ => {}
    }
    let Ok(rows) = read else {
        if report::summary::summarize_reader(input, "fuzz.csv", "f", LMIN, LMAX, false).is_ok() {
            return Err("the streaming summary accepted what read_csv refused".into());
        }
        return Ok(());
    };
    if rows.is_empty() {
        // Nothing to write back (the writer's header comes with the first
        // row; csv_round_trip covers a run without rows).
        return Ok(());
    }
    let text = csv_text(&rows)?;
    let again = read_csv_from(text.as_bytes(), "again.csv")
        .map_err(|e| format!("rows it accepted do not read back: {e:#}\n{text}"))?;
    let text_again = csv_text(&again)?;
    if text_again != text {
        return Err(format!(
            "rows changed on the way round:\n{text}\nbecame\n{text_again}"
        ));
    }
    for include_live in [false, true] {
        let whole = reference_summary(&rows, include_live);
        let streamed =
            report::summary::summarize_reader(input, "fuzz.csv", "f", LMIN, LMAX, include_live)
                .map_err(|e| format!("streaming summary failed: {e:#}"))?;
        let (a, b) = (
            report::render(&[whole], Format::Csv),
            report::render(&[streamed], Format::Csv),
        );
        if a != b {
            return Err(format!("summaries differ:\n{a}\nstreamed:\n{b}"));
        }
    }
    Ok(())
}

/// The summary as it was computed before it streamed (all rows in
/// memory, sorted): the model the streaming summary must equal exactly
/// while a run has no more than EXACT_MAX values per quantity.
fn reference_summary(rows: &[Row], include_live: bool) -> RunSummary {
    let selected = selected_rows(rows, include_live);
    let checkpoints = selected.len();
    let periods_ms: Vec<f64> = selected
        .iter()
        .map(|row| row.period_ms)
        .filter(|period| *period > 0.0)
        .collect();
    let covered_s = periods_ms.iter().sum::<f64>() / 1000.0;
    let sizes: Vec<u64> = selected.iter().map(|row| row.size_bytes).collect();
    let percent_of =
        |count: usize| (checkpoints > 0).then(|| 100.0 * count as f64 / checkpoints as f64);
    let (interval_source, points) = interval_points(&selected);
    RunSummary {
        label: "f".into(),
        lmin_bytes: LMIN,
        lmax_bytes: LMAX,
        checkpoints,
        live_rows_excluded: rows.len() - checkpoints,
        covered_s,
        checkpoints_per_s: (covered_s > 0.0).then(|| periods_ms.len() as f64 / covered_s),
        pct_at_most_lmax: percent_of(sizes.iter().filter(|s| **s <= LMAX).count()),
        pct_in_band: percent_of(sizes.iter().filter(|s| (LMIN..=LMAX).contains(*s)).count()),
        size_bytes: quantiles(sizes),
        interval_source,
        interval_ms: quantiles(points.into_iter().map(|(_, ms)| ms).collect()),
        pause_ms: quantiles(selected.iter().map(|row| row.pause_ms).collect()),
        total_bytes_sent: selected
            .iter()
            .fold(0u64, |t, row| t.saturating_add(row.bytes_sent)),
        total_disk_bytes: selected
            .iter()
            .fold(0u64, |t, row| t.saturating_add(row.disk_bytes)),
    }
}

/// A float a run can produce: finite, not negative.
fn valid_f64(u: &mut Unstructured) -> f64 {
    match u.u8() % 6 {
        0 => 0.0,
        1 => f64::from_bits(u.u64() & 0x7fef_ffff_ffff_ffff),
        2 => u.num() as f64 / 1e6,
        _ => f64::from(u.u8()) + f64::from(u.u8()) / 256.0,
    }
}

fn valid_row(u: &mut Unstructured) -> Row {
    let opt = |u: &mut Unstructured| (u.u8() % 2 == 0).then(|| u.num());
    Row {
        seq: u.num(),
        t_s: valid_f64(u),
        dirty_pages: u.num(),
        pages_sent: u.num(),
        bytes_sent: u.num(),
        disk_bytes: u.num(),
        size_bytes: u.num(),
        pause_ms: valid_f64(u),
        checkpoint_ms: valid_f64(u),
        period_ms: valid_f64(u),
        interval_ms: u.num(),
        dropped: u.num(),
        live: u.u8() % 2,
        memory_bytes: u.num(),
        gate_wait_ms: valid_f64(u),
        next_interval_ms: u.num(),
        drbd_deferred: opt(u),
        drbd_checkpoints: opt(u),
        gap: u.num(),
        // What the pipeline writes: a Trigger's name, or empty.
        trigger: pick_by(
            &["", "interval", "budget", "control", "none", "other"],
            u.u8(),
        )
        .to_string(),
        dirty_at_trigger: u.num(),
        budget_pages: u.num(),
        probes: u.num(),
        probe_ms: valid_f64(u),
        disk_epochs: opt(u),
        disk_unknown: u.u8() % 2,
        clean_error: u.u8() & 1,
    }
}

/// Every row a run can produce goes through the CSV sink and comes back
/// from read_csv unchanged.
fn check_csv_round_trip(input: &[u8]) -> Result<(), String> {
    let mut u = Unstructured::new(input);
    let mut rows = Vec::new();
    while !u.is_empty() && rows.len() < 16 {
        rows.push(valid_row(&mut u));
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("run.csv");
    let mut sink = CsvWriter::create(&path).map_err(|e| format!("{e:#}"))?;
    for row in &rows {
        sink.write(row).map_err(|e| format!("{e:#}"))?;
    }
    sink.finish().map_err(|e| format!("{e:#}"))?;
    let back = read_csv(&path).map_err(|e| format!("{e:#}"))?;
    if back != rows {
        return Err(format!("wrote {rows:?}\nread back {back:?}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// (4) The controller: pipeline::Controller::on_record.
// ---------------------------------------------------------------------------

/// Valid policy parameters (those `validate` accepts) from the bytes.
fn policy_args(u: &mut Unstructured) -> PolicyArgs {
    let ms = |v: u64| Millis(std::time::Duration::from_millis(v));
    let tmin = 1 + u.num() % 60_000;
    let tmax = tmin + u.num() % (60_001 - tmin);
    let lmin = u.num() % (1 << 40);
    let lmax = lmin + 1 + u.num() % (1 << 40);
    let mut args = PolicyArgs {
        policy: *pick_by(
            &[
                PolicyKind::Fixed,
                PolicyKind::Threshold,
                PolicyKind::Target,
                PolicyKind::Byterate,
            ],
            u.u8(),
        ),
        interval: ms(1 + u.num() % 60_000),
        lmin: Bytes(lmin),
        lmax: Bytes(lmax),
        tmin: ms(tmin),
        tmax: ms(tmax),
        decrease: (f64::from(u.u8()) + 1.0) / 257.0,
        increase: 1.0 + f64::from(u.u8()) / 16.0,
        increase_step: ms(u.num() % 100_000),
        below_count: u32::from(u.u8() % 5),
        target: None,
        max_step: 1.0 + (f64::from(u.u8()) + 1.0) / 32.0,
        alpha: (f64::from(u.u8()) + 1.0) / 256.0,
        byte_rate: Bytes(1 + u.num() % (1 << 40)),
        ..PolicyArgs::default()
    };
    if args.increase == 1.0 && args.increase_step.0.is_zero() {
        args.increase_step = ms(1);
    }
    if u.u8() % 2 == 0 {
        args.target = Some(Bytes(lmin + u.num() % (lmax - lmin + 1)));
    }
    args
}

/// The next record of a sequence: seq and time patterns that a restarting,
/// lossy or hostile save side produces.
fn next_record(u: &mut Unstructured, prev: &Record) -> Record {
    let seq = match u.u8() % 8 {
        0 => u.num(),
        1 => prev.seq, // repeated
        2 => u64::MAX,
        3 => prev.seq.wrapping_add(1 + u.num() % 1000), // a gap, or a wrap
        _ => prev.seq.wrapping_add(1),                  // u64::MAX -> 0 wraps
    };
    let t_suspend = match u.u8() % 6 {
        0 => u.num(),
        1 => u64::MAX - u.num() % 1000,
        2 => prev.t_suspend_ns.saturating_sub(u.num()), // backwards
        _ => prev.t_suspend_ns.wrapping_add(u.num()),
    };
    let spans: Vec<u64> = (0..5).map(|_| u.num()).collect();
    Record {
        seq,
        domid: 1,
        stream: Stream::Remus,
        live: u.u8() % 16 == 0,
        page_size: match u.u8() % 4 {
            0 => 0,
            1 => u.num_u32(),
            _ => 4096,
        },
        dirty_pages: u.num(),
        deferred_pages: u.num(),
        pages_sent: u.num(),
        bytes_sent: u.num(),
        bytes_raw: None,
        t_gate_ns: t_suspend.wrapping_sub(spans[0]),
        t_suspend_ns: t_suspend,
        t_suspended_ns: t_suspend.wrapping_add(spans[1]),
        t_sent_ns: t_suspend.wrapping_add(spans[2]),
        t_resumed_ns: t_suspend.wrapping_add(spans[3]),
        t_done_ns: t_suspend.wrapping_add(spans[4]),
        interval_ms: u.num_u32(),
        cmd_interval_ms: u.num_u32(),
        gate_wait_ns: u.num(),
        dropped: u.num(),
        ctl_rejected: u.num(),
        stats_state: (u.u8() % 2 == 0).then(|| pick_by(&STATS_STATES[1..], u.u8()).to_string()),
        ctl_state: (u.u8() % 2 == 0).then(|| pick_by(&CTL_STATES[1..], u.u8()).to_string()),
        trigger: *pick_by(
            &[
                Trigger::None,
                Trigger::Interval,
                Trigger::Budget,
                Trigger::Control,
                Trigger::Other,
            ],
            u.u8(),
        ),
        dirty_at_trigger: u.num(),
        probes: if u.u8() % 2 == 0 { u.num() } else { 0 },
        probe_ns: u.num(),
        budget_pages: match u.u8() % 4 {
            0 => u.num(),
            1 => prev.budget_pages,
            _ => 0,
        },
        probe_errors: if u.u8() % 4 == 0 { u.num() } else { 0 },
        end: (u.u8() % 8 == 0).then(|| pick_by(&ENDS[1..], u.u8()).to_string()),
        clean_error: u.u8() % 8 == 0,
    }
}

/// on_record never panics; every interval the controller wants (and every
/// command) is the fixed one, or within [tmin, tmax] for adaptive
/// policies; every row it makes is one the CSV reader accepts (finite,
/// non-negative times) and that reads back unchanged; a budget is
/// commanded exactly when the save side does not report the one wanted.
pub fn check_controller_records(
    args: &PolicyArgs,
    records: &[Record],
    disk: &[u64],
) -> Result<(), String> {
    check_controller_budget(args, 0, records, disk)
}

pub fn check_controller_budget(
    args: &PolicyArgs,
    budget_pages: u64,
    records: &[Record],
    disk: &[u64],
) -> Result<(), String> {
    let policy = args
        .build()
        .map_err(|e| format!("valid args refused: {e:#}"))?;
    let adaptive = policy.is_adaptive();
    let ms = |what: &str, d: std::time::Duration| {
        u32::try_from(d.as_millis()).map_err(|e| format!("{what} {d:?} past u32 ms: {e}"))
    };
    let tmin = ms("tmin", args.tmin.0)?;
    let tmax = ms("tmax", args.tmax.0)?;
    let fixed = ms("interval", args.interval.0)?;
    let allowed = |ms: u32| {
        if adaptive {
            (tmin..=tmax).contains(&ms)
        } else {
            ms == fixed
        }
    };
    // A fixed budget is a policy wrapper (simulate --budget-pages).
    let policy: Box<dyn Policy> = if budget_pages != 0 {
        Box::new(FixedBudget::new(policy, budget_pages))
    } else {
        policy
    };
    let mut controller = Controller::new(policy, args.size_metric);
    if controller.initial().budget_pages != budget_pages {
        return Err(format!(
            "initial budget {} pages, {budget_pages} commanded",
            controller.initial().budget_pages
        ));
    }
    let initial = controller.initial().interval_ms;
    let mut rows = Vec::new();
    if !allowed(initial) {
        return Err(format!(
            "initial interval {initial} ms (tmin {tmin}, tmax {tmax})"
        ));
    }
    for (i, rec) in records.iter().enumerate() {
        let delta = DiskDelta {
            disk_bytes: disk.get(i).copied().unwrap_or(0),
            ..DiskDelta::default()
        };
        let step = controller.on_record(rec, delta);
        let next = u32::try_from(step.row.next_interval_ms).unwrap_or(u32::MAX);
        if !allowed(next) || step.command_ms.is_some_and(|ms| !allowed(ms)) {
            return Err(format!(
                "record {i}: interval {next} ms, command {:?} (policy {:?}, tmin {tmin}, tmax {tmax})",
                step.command_ms, args.policy
            ));
        }
        let want_budget = (rec.budget_pages != budget_pages).then_some(budget_pages);
        if step.command_budget_pages != want_budget {
            return Err(format!(
                "record {i} reports budget {}: commanded {:?}, want {want_budget:?}",
                rec.budget_pages, step.command_budget_pages
            ));
        }
        let row = &step.row;
        for (name, v) in [
            ("t_s", row.t_s),
            ("pause_ms", row.pause_ms),
            ("checkpoint_ms", row.checkpoint_ms),
            ("period_ms", row.period_ms),
            ("gate_wait_ms", row.gate_wait_ms),
            ("probe_ms", row.probe_ms),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("record {i}: row {name} = {v}"));
            }
        }
        rows.push(step.row);
    }
    // What the run's CSV sink would write, read back.
    if !rows.is_empty() {
        let text = csv_text(&rows)?;
        match read_csv_from(text.as_bytes(), "run.csv") {
            Ok(back) if back == rows => {}
            Ok(back) => return Err(format!("rows {rows:?}\nread back as {back:?}")),
            Err(e) => return Err(format!("the rows it made do not read: {e:#}\n{text}")),
        }
    }
    Ok(())
}

fn check_controller(input: &[u8]) -> Result<(), String> {
    let mut u = Unstructured::new(input);
    let args = policy_args(&mut u);
    let budget_pages = match u.u8() % 4 {
        0 => 1 + u.num() % ffi::REMUS_CKPT_BUDGET_MAX_PAGES,
        _ => 0,
    };
    let mut records = Vec::new();
    let mut disk = Vec::new();
    let mut prev = Record::default();
    while !u.is_empty() && records.len() < 64 {
        prev = next_record(&mut u, &prev);
        records.push(prev.clone());
        disk.push(if u.u8() % 4 == 0 { u.num() } else { 0 });
    }
    check_controller_budget(&args, budget_pages, &records, &disk)
}
