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

#![allow(dead_code)]

use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};

use remus_ckpt::disk::DiskDelta;
use remus_ckpt::ffi;
use remus_ckpt::pipeline::Controller;
use remus_ckpt::policy::{PolicyArgs, PolicyKind};
use remus_ckpt::record::{self, Record, Stream};
use remus_ckpt::report::rows::{interval_points, read_csv_from, selected_rows};
use remus_ckpt::report::summary::quantiles;
use remus_ckpt::report::{self, Format, RunSummary};
use remus_ckpt::row::Row;
use remus_ckpt::sink::csv::CsvSink;
use remus_ckpt::source::stats_fifo::LineParser;
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

/// The record line format of docs/protocol.md, written independently of
/// both the C formatter and the Rust parser. `bytes_raw` 0 means absent,
/// as in the C struct.
fn reference_line(r: &ffi::remus_ckpt_record, stream: &str) -> String {
    let mut line = format!(
        "ckpt v=1 seq={} domid={} stream={stream} live={} page_size={} dirty_pages={} \
         deferred_pages={} pages_sent={} bytes_sent={}",
        r.seq,
        r.domid,
        u8::from(r.live != 0),
        r.page_size,
        r.dirty_pages,
        r.deferred_pages,
        r.pages_sent,
        r.bytes_sent
    );
    if r.bytes_raw != 0 {
        let _ = write!(line, " bytes_raw={}", r.bytes_raw);
    }
    let _ = writeln!(
        line,
        " t_gate={} t_suspend={} t_suspended={} t_sent={} t_resumed={} t_done={} \
         interval_ms={} cmd_interval_ms={} gate_wait_ns={} dropped={} ctl_rejected={}",
        r.t_gate,
        r.t_suspend,
        r.t_suspended,
        r.t_sent,
        r.t_resumed,
        r.t_done,
        r.interval_ms,
        r.cmd_interval_ms,
        r.gate_wait_ns,
        r.dropped,
        r.ctl_rejected
    );
    line
}

const REMUS: u32 = ffi::remus_ckpt_stream_REMUS_CKPT_STREAM_REMUS;
const COLO: u32 = ffi::remus_ckpt_stream_REMUS_CKPT_STREAM_COLO;

fn c_record(u: &mut Unstructured) -> ffi::remus_ckpt_record {
    ffi::remus_ckpt_record {
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
    }
}

fn stream_name(stream: u32) -> Option<&'static str> {
    match stream {
        REMUS => Some("remus"),
        COLO => Some("colo"),
        _ => None,
    }
}

/// What parse_line must return for a line made from `r`.
fn expected_record(r: &ffi::remus_ckpt_record) -> Record {
    Record {
        seq: r.seq,
        domid: r.domid,
        stream: if r.stream == COLO {
            Stream::Colo
        } else {
            Stream::Remus
        },
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
    }
}

/// The C struct for a parsed record (inverse of [`expected_record`]).
fn c_record_of(rec: &Record) -> ffi::remus_ckpt_record {
    ffi::remus_ckpt_record {
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
    }
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

const ODD_TOKENS: [&str; 12] = [
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
];

/// A valid record line from random values.
fn valid_line(rng: &mut Rng) -> String {
    let bytes = rng.bytes(200);
    let mut rec = c_record(&mut Unstructured::new(&bytes));
    rec.stream = if rng.chance(3) { COLO } else { REMUS };
    rec.page_size = rec.page_size.max(1);
    reference_line(&rec, stream_name(rec.stream).unwrap_or("remus"))
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
/// formats (reference and C formatter alike) and parses back to itself.
fn check_record_line(input: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(input);
    let Ok(mut rec) = record::parse_line(&text) else {
        return Ok(());
    };
    // `bytes_raw=0` parses as Some(0); writers omit a zero bytes_raw (the
    // C struct has no "absent"), so the canonical line has none.
    if rec.bytes_raw == Some(0) {
        rec.bytes_raw = None;
    }
    if rec.page_size == 0 {
        return Err(format!("accepted page_size=0: {rec:?}"));
    }
    let c = c_record_of(&rec);
    let line = reference_line(&c, rec.stream.as_str());
    let again = record::parse_line(&line);
    if again.as_ref() != Ok(&rec) {
        return Err(format!(
            "accepted {rec:?}\nbut its canonical line {line:?} parses to {again:?}"
        ));
    }
    if let Some(c_line) = ffi::format_record(&c) {
        if c_line != line {
            return Err(format!("C formatter wrote {c_line:?}, reference {line:?}"));
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
                // Longer than the reader keeps (MAX_LINE, 4096): padding
                // first, the record's own keys last.
                let line = valid_line(rng);
                let (head, tail) = line.split_at(9); // after "ckpt v=1 "
                                                     // Sized so that the cut at 4096 bytes lands in the last
                                                     // few tokens.
                let pad = (MAX_LINE + rng.below(40) as usize)
                    .saturating_sub(head.len() + 5 + tail.len())
                    .max(1);
                out.extend_from_slice(head.as_bytes());
                out.extend_from_slice(b"pad=");
                out.extend(std::iter::repeat(b'x').take(pad));
                out.push(b' ');
                out.extend_from_slice(tail.as_bytes());
            }
            _ => out.extend(gen_record_text(rng)),
        }
        if !out.ends_with(b"\n") && !rng.chance(4) {
            out.push(b'\n');
        }
    }
    out
}

/// The longest line LineParser keeps (src/source/stats_fifo.rs MAX_LINE).
const MAX_LINE: usize = 4096;

/// Reference model of LineParser: every complete line, parsed whole.
fn model_lines(stream: &[u8]) -> Vec<(u64, usize, Result<Record, record::ParseError>)> {
    let mut out = Vec::new();
    let mut line_no = 0;
    for line in stream.split_inclusive(|b| *b == b'\n') {
        if !line.ends_with(b"\n") {
            break;
        }
        line_no += 1;
        let text = String::from_utf8_lossy(line);
        if text.trim().is_empty() {
            continue;
        }
        out.push((line_no, line.len(), record::parse_line(&text)));
    }
    out
}

/// Fed in any split, LineParser gives what parsing each line whole gives:
/// the same line numbers, records and errors, and counts the errors.
/// Lines longer than it keeps may be refused when split, but are never
/// accepted as a record the whole line does not say.
fn check_line_parser(input: &[u8]) -> Result<(), String> {
    let Some((&cut, stream)) = input.split_first() else {
        return Ok(());
    };
    let model = model_lines(stream);
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
    for (g, (line_no, len, want)) in got.iter().zip(&model) {
        let (g_no, g_res) = match g {
            Ok(rec) => (None, Ok(rec)),
            Err(m) => (Some(m.line_no), Err(&m.error)),
        };
        if g_no.is_some_and(|n| n != *line_no) {
            return Err(format!("line {line_no} reported as line {g_no:?}"));
        }
        let same = g_res == want.as_ref();
        if *len <= MAX_LINE && !same {
            return Err(format!(
                "line {line_no} ({len} bytes, cut {cut}): got {g_res:?}, parsing it whole gives {want:?}"
            ));
        }
        if *len > MAX_LINE && g_res.is_ok() && !same {
            return Err(format!(
                "overlong line {line_no} ({len} bytes, cut {cut}) accepted as {g_res:?}, \
                 but parsed whole it is {want:?}"
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// (2) The C control-line parser and the C record formatter (through bindgen).
// ---------------------------------------------------------------------------

const CTL_PREFIX: &[u8] = b"interval_ms=";
const INTERVAL_MAX_MS: u32 = ffi::REMUS_CKPT_INTERVAL_MAX_MS;

/// What remus_ckpt_parse_control must return: the interval of a canonical
/// `interval_ms=<n>` (no sign, no leading zero, 1..=60000) followed only by
/// blanks, tabs or CRs; 0 for anything else.
pub fn model_control(line: &[u8]) -> u32 {
    let Some(rest) = line.strip_prefix(CTL_PREFIX) else {
        return 0;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let (number, tail) = rest.split_at(digits);
    if number.is_empty() || number[0] == b'0' || number.len() > 5 {
        return 0;
    }
    if !tail.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
        return 0;
    }
    let value: u32 = number.iter().fold(0, |v, d| v * 10 + u32::from(d - b'0'));
    if value > INTERVAL_MAX_MS {
        0
    } else {
        value
    }
}

fn c_parse_control(line: &[u8]) -> u32 {
    // A digit right after the line: a parser that reads past `len` would
    // take it as part of the number (and then disagree with the model).
    let mut buf = line.to_vec();
    buf.push(b'7');
    // SAFETY: buf holds line.len() + 1 readable bytes; the parser is told
    // line.len() and is a pure function of those bytes.
    unsafe { ffi::remus_ckpt_parse_control(buf.as_ptr().cast(), line.len()) }
}

fn gen_control_line(rng: &mut Rng) -> Vec<u8> {
    if rng.chance(10) {
        let len = rng.below(80) as usize;
        return rng.bytes(len);
    }
    let value = match rng.below(6) {
        0 => rng.pick(&INTERESTING_U64).to_string(),
        1 => rng.pick(&ODD_VALUES).to_string(),
        2 => format!("0{}", rng.below(70_000)),
        _ => (rng.below(70_000)).to_string(),
    };
    let mut line = format!("interval_ms={value}").into_bytes();
    for _ in 0..rng.below(4) {
        line.push(*rng.pick(b" \t\r\n\x0b\0x"));
    }
    if rng.chance(3) {
        mutate(rng, &mut line);
    }
    line
}

/// The C parser agrees with the model on every line, stays in range, and
/// accepts only the canonical spelling of the value it returns.
fn check_control_line(input: &[u8]) -> Result<(), String> {
    let got = c_parse_control(input);
    let want = model_control(input);
    if got != want {
        return Err(format!("C parser returned {got}, the model {want}"));
    }
    if got > INTERVAL_MAX_MS {
        return Err(format!("C parser returned {got} > {INTERVAL_MAX_MS}"));
    }
    if got != 0 {
        let canonical = format!("interval_ms={got}");
        let ok = input.starts_with(canonical.as_bytes())
            && input[canonical.len()..]
                .iter()
                .all(|b| matches!(b, b' ' | b'\t' | b'\r'));
        if !ok {
            return Err(format!("accepted {got} from a non-canonical line"));
        }
    }
    Ok(())
}

fn gen_struct_bytes(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(600) as usize;
    rng.bytes(len)
}

/// remus_ckpt_format writes exactly the reference line when it fits in
/// REMUS_CKPT_RECORD_MAX (and refuses otherwise), and parse_line reads
/// every field of it back.
fn check_c_format(input: &[u8]) -> Result<(), String> {
    let rec = c_record(&mut Unstructured::new(input));
    let got = ffi::format_record(&rec);
    let Some(stream) = stream_name(rec.stream) else {
        return match got {
            None => Ok(()),
            Some(line) => Err(format!("formatted unknown stream {}: {line:?}", rec.stream)),
        };
    };
    let want = reference_line(&rec, stream);
    let fits = want.len() <= ffi::REMUS_CKPT_RECORD_MAX as usize;
    match got {
        None if fits => Err(format!("refused a record that fits: {want:?}")),
        None => Ok(()),
        Some(line) if !fits => Err(format!("wrote {} bytes: {line:?}", line.len())),
        Some(line) if line != want => Err(format!("wrote {line:?}, expected {want:?}")),
        Some(line) => match record::parse_line(&line) {
            Ok(parsed) if parsed == expected_record(&rec) => Ok(()),
            other => Err(format!("{line:?} parses to {other:?}")),
        },
    }
}

// ---------------------------------------------------------------------------
// (3) Run CSVs: src/report/rows.rs read_csv_from, src/sink/csv.rs, and the
//     streaming summary of src/report/summary.rs.
// ---------------------------------------------------------------------------

const CSV_HEADER: &str = "seq,t_s,dirty_pages,pages_sent,bytes_sent,disk_bytes,size_bytes,\
    pause_ms,checkpoint_ms,period_ms,interval_ms,dropped,live,memory_bytes,gate_wait_ms,\
    next_interval_ms,drbd_deferred,drbd_checkpoints\n";
const LEGACY_HEADER: &str = "seq,t_s,dirty_pages,pages_sent,bytes_sent,disk_bytes,size_bytes,\
    pause_ms,checkpoint_ms,period_ms,interval_ms,dropped\n";

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

fn gen_csv_text(rng: &mut Rng) -> Vec<u8> {
    if rng.chance(10) {
        let len = rng.below(400) as usize;
        return rng.bytes(len);
    }
    let legacy = rng.chance(3);
    let mut text = String::from(if legacy { LEGACY_HEADER } else { CSV_HEADER });
    let columns = if legacy { 12 } else { 18 };
    for _ in 0..rng.below(8) {
        let cells: Vec<String> = (0..columns)
            .map(|column| match rng.below(60) {
                0 => rng.pick(&ODD_CELLS).to_string(),
                1 => rng.pick(&INTERESTING_U64).to_string(),
                // The float columns: t_s, pause_ms, checkpoint_ms,
                // period_ms, gate_wait_ms.
                _ if [1, 7, 8, 9, 14].contains(&column) => {
                    format!("{}.{}", rng.below(1000), rng.below(1000))
                }
                // live is a u8; the drbd columns may be empty.
                _ if column == 12 => rng.below(2).to_string(),
                _ if column >= 16 && rng.chance(2) => String::new(),
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

/// Arbitrary bytes never make the reader (or the summary) panic; what it
/// accepts writes back and reads back to the same text; and the streaming
/// summary of the bytes is, exactly, the all-in-memory summary of the rows
/// read (the inputs stay far below EXACT_MAX values).
fn check_csv_reader(input: &[u8]) -> Result<(), String> {
    let Ok(rows) = read_csv_from(input, "fuzz.csv") else {
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
    let mut sink = CsvSink::create(&path).map_err(|e| format!("{e:#}"))?;
    for row in &rows {
        sink.write(row).map_err(|e| format!("{e:#}"))?;
    }
    sink.finish().map_err(|e| format!("{e:#}"))?;
    let back = report::read_csv(&path).map_err(|e| format!("{e:#}"))?;
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
            &[PolicyKind::Fixed, PolicyKind::Threshold, PolicyKind::Target],
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
    }
}

/// on_record never panics; every interval the controller wants (and every
/// command) is the fixed one, or within [tmin, tmax] for adaptive
/// policies; every row it makes is one the CSV reader accepts (finite,
/// non-negative times).
pub fn check_controller_records(
    args: &PolicyArgs,
    records: &[Record],
    disk: &[u64],
) -> Result<(), String> {
    let policy = args
        .build()
        .map_err(|e| format!("valid args refused: {e:#}"))?;
    let adaptive = policy.is_adaptive();
    let tmin = args.tmin.0.as_millis() as u32;
    let tmax = args.tmax.0.as_millis() as u32;
    let fixed = args.interval.0.as_millis() as u32;
    let allowed = |ms: u32| {
        if adaptive {
            (tmin..=tmax).contains(&ms)
        } else {
            ms == fixed
        }
    };
    let mut controller = Controller::new(policy, args.size_metric);
    let initial = controller.initial_interval_ms();
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
        let row = &step.row;
        for (name, v) in [
            ("t_s", row.t_s),
            ("pause_ms", row.pause_ms),
            ("checkpoint_ms", row.checkpoint_ms),
            ("period_ms", row.period_ms),
            ("gate_wait_ms", row.gate_wait_ms),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("record {i}: row {name} = {v}"));
            }
        }
    }
    Ok(())
}

fn check_controller(input: &[u8]) -> Result<(), String> {
    let mut u = Unstructured::new(input);
    let args = policy_args(&mut u);
    let mut records = Vec::new();
    let mut disk = Vec::new();
    let mut prev = Record::default();
    while !u.is_empty() && records.len() < 64 {
        prev = next_record(&mut u, &prev);
        records.push(prev.clone());
        disk.push(if u.u8() % 4 == 0 { u.num() } else { 0 });
    }
    check_controller_records(&args, &records, &disk)
}
