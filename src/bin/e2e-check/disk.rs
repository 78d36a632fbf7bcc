//! Stage E: per-checkpoint `disk_bytes` from real DRBD 8.4 replication,
//! against what the writer in dom0 wrote (scripts/e2e-xen.d/drbd-writer).
//!
//! No clock places a write in an epoch. Each write carries two counts the
//! writer read itself: `rows_before`, the data rows complete in the CSV
//! before it began (their samples were taken before it, so it counts in
//! row `rows_before` or later), and `suspends_after`, the "guest has
//! suspended" lines in xl's log right after it ended (suspend
//! `suspends_after + 1` is logged later, and its record, row
//! `suspends_after`, is sampled after the suspend, so the write counts in
//! that row at the latest). Row i belongs to xl's suspend i + 1 (row 0 is
//! the live round); the checks refuse a run where that does not hold.
//!
//! DRBD 8.4 counts `ns:` in 512-byte sectors and prints it in KiB (the
//! count halved, rounded down); every request here is a whole number of
//! 4 KiB pages (the writer's one `syswrite` of whole 4 KiB pages at an
//! aligned offset), so the KiB rounding loses nothing and the bounds
//! are exact byte counts.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use remus_ckpt::disk::{parse_events2, parse_proc_drbd, ProcFlavor};
use remus_ckpt::policy::{Observation, PolicyArgs};
use remus_ckpt::row::Row;
use remus_ckpt::size::SizeMetric;
use remus_ckpt::units::Millis;

use crate::records;
use crate::rundir::read_lossy;
use crate::verdict::{outcome, Outcome};

/// One write of the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub k: u64,
    pub phase: u64,
    pub bytes: u64,
    pub rows_before: usize,
    pub suspends_after: usize,
    pub status: i64,
}

/// What the writer reported.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Writes {
    pub writes: Vec<Write>,
    /// The `done` line: (chunks, bytes, failed), when the writer ended.
    pub done: Option<(u64, u64, u64)>,
}

fn kv<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

fn num<T: std::str::FromStr>(line: &str, key: &str) -> Result<T> {
    let v = kv(line, key).with_context(|| format!("no {key}= in '{line}'"))?;
    v.parse()
        .map_err(|_| anyhow::anyhow!("{key}={v} is not a number in '{line}'"))
}

impl Writes {
    pub fn parse(text: &str) -> Result<Writes> {
        let mut w = Writes::default();
        for line in text.lines() {
            if line.starts_with("chunk ") {
                w.writes.push(Write {
                    k: num(line, "k")?,
                    phase: num(line, "phase")?,
                    bytes: num(line, "bytes")?,
                    rows_before: num(line, "rows_before")?,
                    suspends_after: num(line, "suspends_after")?,
                    status: num(line, "status")?,
                });
            } else if line.starts_with("done ") {
                w.done = Some((
                    num(line, "chunks")?,
                    num(line, "bytes")?,
                    num(line, "failed")?,
                ));
            }
        }
        Ok(w)
    }

    pub fn read(path: &Path) -> Result<Writes> {
        Writes::parse(&read_lossy(path)?).with_context(|| format!("reading {}", path.display()))
    }

    pub fn total_bytes(&self) -> u64 {
        self.writes.iter().map(|w| w.bytes).sum()
    }
}

/// Where the writes may lie, row by row and as running sums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounds {
    /// Bytes of the writes that can only be in row i.
    pub row_lo: Vec<u64>,
    /// Bytes of the writes that may be in row i.
    pub row_hi: Vec<u64>,
    /// Bytes that must be in rows 0..=i (writes whose last possible row is ≤ i).
    pub prefix_lo: Vec<u64>,
    /// Bytes that may be in rows 0..=i (writes whose first possible row is ≤ i).
    pub prefix_hi: Vec<u64>,
}

/// Each write's rows: `rows_before ..= suspends_after`. Fails when a write
/// has no possible row among the `n_rows` (the run's records end before it
/// was sampled, or the counts contradict each other).
pub fn bounds(writes: &[Write], n_rows: usize) -> Result<Bounds> {
    let mut b = Bounds {
        row_lo: vec![0; n_rows],
        row_hi: vec![0; n_rows],
        prefix_lo: vec![0; n_rows],
        prefix_hi: vec![0; n_rows],
    };
    for w in writes {
        let (first, last) = (w.rows_before, w.suspends_after);
        if first > last || last >= n_rows {
            bail!(
                "write k={} may be in rows {first}..={last}, but the run has rows 0..{}",
                w.k,
                n_rows.saturating_sub(1)
            );
        }
        if first == last {
            b.row_lo[first] += w.bytes;
        }
        for hi in &mut b.row_hi[first..=last] {
            *hi += w.bytes;
        }
        for p in &mut b.prefix_lo[last..] {
            *p += w.bytes;
        }
        for p in &mut b.prefix_hi[first..] {
            *p += w.bytes;
        }
    }
    Ok(b)
}

/// Row i is the record of xl's suspend i + 1: rows numbered 0.. without a
/// gap, and as many as xl logged (one fewer when the run stopped in a
/// checkpoint).
fn rows_match_suspends(rows: &[Row], xl_suspends: usize) -> Result<()> {
    let n = rows.len();
    if let Some((i, r)) = rows
        .iter()
        .enumerate()
        .find(|(i, r)| r.seq != *i as u64 || r.gap != 0 || r.dropped != 0)
    {
        bail!(
            "row {i} has seq {} (gap {}, dropped {}): rows cannot be matched to xl's suspends",
            r.seq,
            r.gap,
            r.dropped
        );
    }
    if n != xl_suspends && n + 1 != xl_suspends {
        bail!("{n} rows but xl logged {xl_suspends} suspends: rows cannot be matched to them");
    }
    Ok(())
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / 1048576.0)
}

/// Every row's `disk_bytes` within the bytes of the writes that can only
/// be in it and of those that may be in it.
pub fn rows_check(rows: &[Row], xl_suspends: usize, writes: &Writes) -> Result<Outcome> {
    rows_match_suspends(rows, xl_suspends)?;
    let b = bounds(&writes.writes, rows.len())?;
    let mut bad = Vec::new();
    let (mut exact, mut bounded, mut with_writes, mut widest) = (0, 0, 0, 0);
    for (i, r) in rows.iter().enumerate() {
        let (lo, hi) = (b.row_lo[i], b.row_hi[i]);
        if hi > 0 {
            with_writes += 1;
        }
        if lo == hi {
            exact += usize::from(hi > 0);
        } else {
            bounded += 1;
        }
        widest = widest.max(hi - lo);
        if r.disk_bytes < lo || r.disk_bytes > hi {
            bad.push(format!("row {i}: {} not in [{lo}, {hi}]", r.disk_bytes));
        }
    }
    let burst_rows = rows.iter().filter(|r| r.disk_bytes > 0).count();
    Ok(outcome(
        bad.is_empty() && with_writes > 0,
        format!(
            "disk_bytes within the writes of its epoch in all {} rows ({burst_rows} with disk bytes; \
             {exact} rows pinned to the bytes written, {bounded} between bounds at most {} KiB \
             apart: the writes in flight while a checkpoint was taken and recorded)",
            rows.len(),
            widest / 1024
        ),
        format!(
            "{} rows with disk_bytes outside the writes of their epoch ({}){}",
            bad.len(),
            bad.iter().take(4).cloned().collect::<Vec<_>>().join("; "),
            if with_writes == 0 {
                "; no write fell in any row"
            } else {
                ""
            }
        ),
    ))
}

/// The running sum of `disk_bytes` within what must and what may have
/// been written by each row's sample.
pub fn prefix_check(rows: &[Row], xl_suspends: usize, writes: &Writes) -> Result<Outcome> {
    rows_match_suspends(rows, xl_suspends)?;
    let b = bounds(&writes.writes, rows.len())?;
    let mut sum = 0u64;
    let mut bad = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        sum += r.disk_bytes;
        if sum < b.prefix_lo[i] || sum > b.prefix_hi[i] {
            bad.push(format!(
                "rows 0..={i}: {sum} not in [{}, {}]",
                b.prefix_lo[i], b.prefix_hi[i]
            ));
        }
    }
    Ok(outcome(
        bad.is_empty(),
        format!(
            "the running sum of disk_bytes stays within the writes done and begun at every one of {} samples",
            rows.len()
        ),
        format!(
            "{} samples where the running sum left the bounds ({})",
            bad.len(),
            bad.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
        ),
    ))
}

/// The writer ended, every write succeeded, and it wrote in at least two
/// bursts, each write after the baseline sample.
pub fn writer_check(writes: &Writes) -> Result<Outcome> {
    let Some((chunks, bytes, failed)) = writes.done else {
        bail!("the writer left no `done` line (did it stop?)");
    };
    let bursts: std::collections::BTreeSet<u64> = writes.writes.iter().map(|w| w.phase).collect();
    let before_baseline = writes.writes.iter().filter(|w| w.rows_before < 1).count();
    let failed_lines = writes.writes.iter().filter(|w| w.status != 0).count();
    let ok = failed == 0
        && failed_lines == 0
        && chunks == writes.writes.len() as u64
        && bytes == writes.total_bytes()
        && bursts.len() >= 2
        && before_baseline == 0;
    Ok(outcome(
        ok,
        format!(
            "the writer wrote {} in {chunks} writes over {} bursts, all after the baseline sample, none failed",
            mib(bytes),
            bursts.len()
        ),
        format!(
            "writer: {chunks} writes ({} lines), {failed} failed ({failed_lines} lines), {} bursts (2 wanted), \
             {before_baseline} before the baseline sample, done bytes {bytes} vs lines {}",
            writes.writes.len(),
            bursts.len(),
            writes.total_bytes()
        ),
    ))
}

/// DRBD's own counters of the primary (minor 0) and the peer (minor 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrbdEnd {
    pub ns_kib: u64,
    pub peer_nr_kib: u64,
    pub events2_sent_kib: u64,
}

fn proc_counters(text: &str, what: &str) -> Result<(u64, u64)> {
    let p = parse_proc_drbd(text);
    if p.flavor() != ProcFlavor::Drbd84 {
        bail!("{what}: not DRBD 8.4 ({:?})", p.version);
    }
    let ns = p
        .minor(0)
        .and_then(|m| m.ns_kib)
        .with_context(|| format!("{what}: no ns: for minor 0"))?;
    let nr = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("1:"))
        .nth(1)
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("nr:")?.parse().ok())
        })
        .with_context(|| format!("{what}: no nr: for minor 1"))?;
    Ok((ns, nr))
}

/// The setup as /proc/drbd showed it before the run: DRBD 8.4, r0 primary
/// and r1 secondary, connected, both up to date, over protocol `proto`.
pub fn setup_check(start: &str, proto: &str) -> Result<Outcome> {
    let p = parse_proc_drbd(start);
    let m0 = p.minor(0).context("drbd-start.txt: no minor 0")?;
    let m1 = p.minor(1).context("drbd-start.txt: no minor 1")?;
    let line0 = start
        .lines()
        .find(|l| l.trim_start().starts_with("0:"))
        .unwrap_or("");
    let proto_ok = line0.split_whitespace().any(|w| w == proto);
    let ok = p.flavor() == ProcFlavor::Drbd84
        && m0.cs == "Connected"
        && m1.cs == "Connected"
        && m0.ro.as_deref() == Some("Primary/Secondary")
        && m1.ro.as_deref() == Some("Secondary/Primary")
        && m0.ds.as_deref() == Some("UpToDate/UpToDate")
        && proto_ok;
    Ok(outcome(
        ok,
        format!(
            "DRBD {}: r0 (minor 0) Primary, r1 (minor 1) Secondary, Connected over 127.0.0.1, UpToDate, protocol {proto}",
            p.version.as_ref().map_or("?", |v| v.text.as_str())
        ),
        format!("DRBD not set up as wanted: {}", line0.trim()),
    ))
}

pub fn drbd_end(end_proc: &str, events2: &str) -> Result<DrbdEnd> {
    let (ns_kib, peer_nr_kib) = proc_counters(end_proc, "drbd-end.txt")?;
    let state = parse_events2(events2);
    let sent: Vec<u64> = state
        .peer_devices_of("r0")
        .filter_map(|(_, info)| info.sent_kib)
        .collect();
    let [events2_sent_kib] = sent[..] else {
        bail!(
            "events2-end.txt: {} peer devices of r0 with sent: (one wanted)",
            sent.len()
        );
    };
    Ok(DrbdEnd {
        ns_kib,
        peer_nr_kib,
        events2_sent_kib,
    })
}

/// The tool's reading at its last sample (the KiB at the run's start plus
/// every disk_bytes) equals DRBD's ns: in /proc/drbd and sent: in
/// `drbdsetup events2`, and the peer received as much (nr:).
pub fn counters_check(rows: &[Row], ns_start_kib: u64, end: &DrbdEnd) -> Result<Outcome> {
    let sum: u64 = rows.iter().map(|r| r.disk_bytes).sum();
    if sum % 1024 != 0 {
        return Ok(Outcome::Fail(format!(
            "disk_bytes sum {sum} is not whole KiB (DRBD counts KiB)"
        )));
    }
    let tool_kib = ns_start_kib + sum / 1024;
    Ok(outcome(
        tool_kib == end.ns_kib && end.ns_kib == end.events2_sent_kib && end.peer_nr_kib == end.ns_kib,
        format!(
            "the tool's last reading {tool_kib} KiB = /proc/drbd ns: {} = drbdsetup events2 sent: {} = the peer's nr: {}",
            end.ns_kib, end.events2_sent_kib, end.peer_nr_kib
        ),
        format!(
            "counters differ: the tool {tool_kib} KiB ({ns_start_kib} at the start + {sum} bytes), \
             /proc/drbd ns: {}, events2 sent: {}, peer nr: {}",
            end.ns_kib, end.events2_sent_kib, end.peer_nr_kib
        ),
    ))
}

/// All the bytes: Σ disk_bytes = Σ writes = DRBD's ns: over the run.
pub fn total_check(rows: &[Row], writes: &Writes, ns_start_kib: u64, end: &DrbdEnd) -> Outcome {
    let sum: u64 = rows.iter().map(|r| r.disk_bytes).sum();
    let written = writes.total_bytes();
    let drbd = end.ns_kib.saturating_sub(ns_start_kib) * 1024;
    outcome(
        sum == written && written == drbd && written > 0,
        format!("{sum} bytes in disk_bytes = {written} written = DRBD's ns: over the run"),
        format!("disk_bytes sum {sum}, written {written}, DRBD ns: over the run {drbd} bytes"),
    )
}

pub fn proc_ns_start(start: &str) -> Result<u64> {
    Ok(proc_counters(start, "drbd-start.txt")?.0)
}

/// The policy steers on wire + disk, and the disk bytes decide: every
/// row's size is `bytes_sent + disk_bytes`, and in at least one checkpoint
/// the policy's answer from that size differs from its answer from the
/// wire bytes alone, the recorded `next_interval_ms` being the former.
///
/// Both answers are one step of the run's own policy from the interval in
/// force (the previous row's `next_interval_ms`): exact for a policy whose
/// only state is its interval (the threshold rule with `--below-count 1`,
/// the scenario's); a checkpoint the step does not reproduce fails the
/// check. Counts, not clocks: the scenario puts the wire bytes of an
/// epoch below Lmin and wire + one write above Lmax, so any epoch that
/// carried a whole write decides, however slowly the writes went.
pub fn policy_check(rows: &[Row], args: &PolicyArgs) -> Result<Outcome> {
    if args.size_metric != SizeMetric::Total {
        bail!("stage E's policy must steer on --size-metric total");
    }
    let mut in_force_ms = u64::from(args.initial_ms());
    let (mut with_disk, mut decided) = (0, 0);
    let mut wrong_size = Vec::new();
    let mut unreproduced = Vec::new();
    for row in rows {
        if row.size_bytes != row.bytes_sent.saturating_add(row.disk_bytes) {
            wrong_size.push(row.seq);
        }
        if row.live == 0 && row.gap == 0 {
            let total = one_step(args, in_force_ms, row, row.size_bytes)?;
            let wire = one_step(args, in_force_ms, row, row.bytes_sent)?;
            with_disk += usize::from(row.disk_bytes > 0);
            if total != row.next_interval_ms {
                unreproduced.push(format!(
                    "seq {}: {} not {total}",
                    row.seq, row.next_interval_ms
                ));
            } else if total != wire {
                decided += 1;
            }
        }
        in_force_ms = row.next_interval_ms;
    }
    let seqs = |v: &[u64]| {
        v.iter()
            .take(3)
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    Ok(if !wrong_size.is_empty() {
        Outcome::Fail(format!(
            "size_bytes is not bytes_sent + disk_bytes in {} rows (seq {})",
            wrong_size.len(),
            seqs(&wrong_size)
        ))
    } else if !unreproduced.is_empty() {
        Outcome::Fail(format!(
            "one step of the policy from the interval in force does not give the recorded next interval in {} \
             checkpoints ({})",
            unreproduced.len(),
            unreproduced.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
        ))
    } else {
        outcome(
            decided > 0,
            format!(
                "size = bytes_sent + disk_bytes in all {} rows; the disk bytes decided the next interval in \
                 {decided} checkpoints (of {with_disk} with disk bytes: the wire bytes alone give another answer), \
                 the policy's answer from wire + disk in each",
                rows.len()
            ),
            format!(
                "the disk bytes decided no next interval: in all {with_disk} checkpoints with disk bytes the wire \
                 bytes alone give the same answer"
            ),
        )
    })
}

/// The run's policy, one step from `in_force_ms`, on `row` seen at
/// `size_bytes`: the next interval, ms.
fn one_step(args: &PolicyArgs, in_force_ms: u64, row: &Row, size_bytes: u64) -> Result<u64> {
    let mut step = args.clone();
    step.interval = Millis(Duration::from_millis(in_force_ms));
    let mut policy = step.build()?;
    let obs = Observation {
        size_bytes,
        ..records::observation(row)
    };
    Ok(u64::from(policy.decide(&obs).interval_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(k: u64, bytes: u64, first: usize, last: usize) -> Write {
        Write {
            k,
            phase: 1,
            bytes,
            rows_before: first,
            suspends_after: last,
            status: 0,
        }
    }

    fn rows(disk: &[u64]) -> Vec<Row> {
        disk.iter()
            .enumerate()
            .map(|(i, &d)| Row {
                seq: i as u64,
                disk_bytes: d,
                live: u8::from(i == 0),
                ..Row::default()
            })
            .collect()
    }

    const M: u64 = 1 << 20;

    fn writes(v: Vec<Write>) -> Writes {
        let (n, b) = (v.len() as u64, v.iter().map(|w| w.bytes).sum());
        Writes {
            writes: v,
            done: Some((n, b, 0)),
        }
    }

    #[test]
    fn parses_the_writer_lines() {
        let text = "start rows=1 up=3.1\nphase n=1 kind=burst up=3.1\n\
            chunk k=1 phase=1 bytes=2097152 rows_before=1 suspends_after=2 status=0 t0=3.1 t1=3.2\n\
            done chunks=1 bytes=2097152 failed=0 up=9\n";
        let got = Writes::parse(text).unwrap();
        assert_eq!(got.writes, vec![w(1, 2 * M, 1, 2)]);
        assert_eq!(got.done, Some((1, 2 * M, 0)));
        assert!(Writes::parse("chunk k=x phase=1").is_err());
    }

    #[test]
    fn bounds_per_row_and_running() {
        // Row 1 surely 2 MiB; a write straddling rows 1-2; one in row 3.
        let ws = [w(1, 2 * M, 1, 1), w(2, 2 * M, 1, 2), w(3, M, 3, 3)];
        let b = bounds(&ws, 4).unwrap();
        assert_eq!(b.row_lo, vec![0, 2 * M, 0, M]);
        assert_eq!(b.row_hi, vec![0, 4 * M, 2 * M, M]);
        assert_eq!(b.prefix_lo, vec![0, 2 * M, 4 * M, 5 * M]);
        assert_eq!(b.prefix_hi, vec![0, 4 * M, 4 * M, 5 * M]);
        assert!(bounds(&ws, 3).is_err(), "a write after the last row");
        assert!(bounds(&[w(1, M, 2, 1)], 4).is_err(), "first > last");
    }

    #[test]
    fn rows_and_prefix_catch_misplaced_bytes() {
        let ws = writes(vec![w(1, 2 * M, 1, 1), w(2, 2 * M, 1, 2), w(3, M, 3, 3)]);
        // The straddling write split 1 MiB / 1 MiB: fine.
        let good = rows(&[0, 3 * M, M, M]);
        assert!(matches!(
            rows_check(&good, 4, &ws).unwrap(),
            Outcome::Pass(_)
        ));
        assert!(matches!(
            prefix_check(&good, 5, &ws).unwrap(),
            Outcome::Pass(_)
        ));
        // KiB instead of bytes (a unit slip): both fail.
        let kib = rows(&[0, 3 * 1024, 1024, 1024]);
        assert!(matches!(
            rows_check(&kib, 4, &ws).unwrap(),
            Outcome::Fail(_)
        ));
        assert!(matches!(
            prefix_check(&kib, 4, &ws).unwrap(),
            Outcome::Fail(_)
        ));
        // Bytes one row late: row 3 holds what row 1 surely had.
        let late = rows(&[0, M, 2 * M, 3 * M]);
        assert!(matches!(
            rows_check(&late, 4, &ws).unwrap(),
            Outcome::Fail(_)
        ));
        assert!(matches!(
            prefix_check(&late, 4, &ws).unwrap(),
            Outcome::Fail(_)
        ));
        // Rows that do not match xl's suspends cannot be judged.
        assert!(rows_check(&good, 7, &ws).is_err());
        let mut gap = good.clone();
        gap[2].seq = 5;
        assert!(prefix_check(&gap, 4, &ws).is_err());
        // No write at all: nothing was shown.
        let none = writes(vec![]);
        assert!(matches!(
            rows_check(&rows(&[0, 0, 0]), 3, &none).unwrap(),
            Outcome::Fail(_)
        ));
    }

    #[test]
    fn writer_needs_two_bursts_and_no_failure() {
        let mut ws = writes(vec![w(1, M, 1, 1), w(2, M, 2, 2)]);
        assert!(
            matches!(writer_check(&ws).unwrap(), Outcome::Fail(_)),
            "one burst"
        );
        ws.writes[1].phase = 3;
        assert!(matches!(writer_check(&ws).unwrap(), Outcome::Pass(_)));
        ws.writes[1].status = 256;
        assert!(matches!(writer_check(&ws).unwrap(), Outcome::Fail(_)));
        ws.writes[1].status = 0;
        ws.writes[0].rows_before = 0;
        assert!(
            matches!(writer_check(&ws).unwrap(), Outcome::Fail(_)),
            "before the baseline"
        );
        ws.done = None;
        assert!(writer_check(&ws).is_err());
    }

    // Real output of this stage's setup (DRBD 8.4.11 of Debian's 6.1
    // kernel, drbd-utils 9.22.0 through drbdsetup-84), from a test boot.
    const PROC_END: &str = "version: 8.4.11 (api:1/proto:86-101)
srcversion: B536C32A3EADA868561EFD9 
 0: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----
    ns:141152 nr:0 dw:141152 dr:0 al:16 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0
 1: cs:Connected ro:Secondary/Primary ds:UpToDate/UpToDate C r-----
    ns:0 nr:141152 dw:141152 dr:0 al:8 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0
";
    const EVENTS2_END: &str = "exists resource name:r0 role:Primary suspended:no write-ordering:flush
exists connection name:r0 peer-node-id:0 conn-name:peer connection:Connected role:Secondary congested:no
exists device name:r0 volume:0 minor:0 disk:UpToDate size:32728 read:0 written:141152 al-writes:16 bm-writes:0 upper-pending:0 lower-pending:0 al-suspended:no blocked:no
exists peer-device name:r0 peer-node-id:0 conn-name:peer volume:0 replication:Established peer-disk:UpToDate resync-suspended:no received:0 sent:141152 out-of-sync:0 pending:0 unacked:0
exists resource name:r1 role:Secondary suspended:no write-ordering:flush
exists connection name:r1 peer-node-id:0 conn-name:peer connection:Connected role:Primary congested:no
exists device name:r1 volume:0 minor:1 disk:UpToDate size:32728 read:0 written:141152 al-writes:8 bm-writes:0 upper-pending:0 lower-pending:0 al-suspended:no blocked:no
exists peer-device name:r1 peer-node-id:0 conn-name:peer volume:0 replication:Established peer-disk:UpToDate resync-suspended:no received:141152 sent:0 out-of-sync:0 pending:0 unacked:0
exists -
";

    #[test]
    fn drbd_counters_from_real_output() {
        let end = drbd_end(PROC_END, EVENTS2_END).unwrap();
        assert_eq!(
            end,
            DrbdEnd {
                ns_kib: 141_152,
                peer_nr_kib: 141_152,
                events2_sent_kib: 141_152
            }
        );
        assert!(matches!(
            setup_check(PROC_END, "C").unwrap(),
            Outcome::Pass(_)
        ));
        assert!(matches!(
            setup_check(PROC_END, "A").unwrap(),
            Outcome::Fail(_)
        ));
        let r = rows(&[0, 100_000 * 1024, 41_152 * 1024]);
        assert!(matches!(
            counters_check(&r, 0, &end).unwrap(),
            Outcome::Pass(_)
        ));
        assert!(matches!(
            counters_check(&r, 1, &end).unwrap(),
            Outcome::Fail(_)
        ));
        let ws = writes(vec![w(1, 141_152 * 1024, 1, 2)]);
        assert!(matches!(total_check(&r, &ws, 0, &end), Outcome::Pass(_)));
        assert!(matches!(total_check(&r, &ws, 2, &end), Outcome::Fail(_)));
        assert!(drbd_end(PROC_END, "").is_err());
    }

    #[test]
    fn the_disk_bytes_must_decide_an_interval() {
        let args = records::policy_args(
            "--policy threshold --size-metric total --lmin 1536KiB --lmax 2048KiB --interval 500ms \
             --tmin 100ms --tmax 2s --decrease 0.5 --increase 1.5 --below-count 1 --quiet",
        )
        .unwrap();
        let wire = 1300 * 1024;
        // The wire alone is below Lmin: 500 → 750 → … → 2000; one 1 MiB
        // write takes row 5 above Lmax (1000 ms, where the wire alone
        // would have kept 2000); row 6 grows again.
        let mut r = rows(&[0, 0, 0, 0, 0, M, 0]);
        for (row, ms) in r.iter_mut().zip([500, 750, 1125, 1688, 2000, 1000, 1500]) {
            row.bytes_sent = wire;
            row.size_bytes = wire + row.disk_bytes;
            row.next_interval_ms = ms;
        }
        let pass = |r: &[Row]| matches!(policy_check(r, &args).unwrap(), Outcome::Pass(_));
        assert!(pass(&r));
        // The policy ignored the disk bytes in row 5.
        let mut ignored = r.clone();
        ignored[5].next_interval_ms = 2000;
        ignored[6].next_interval_ms = 2000;
        assert!(!pass(&ignored));
        // The size it saw was not wire + disk.
        let mut wrong = r.clone();
        wrong[3].size_bytes += 4096;
        assert!(!pass(&wrong));
        // Disk bytes that changed nothing: half a MiB stays inside
        // [Lmin, Lmax] and the interval is at tmax already.
        let mut small = r.clone();
        small[5].disk_bytes = M / 2;
        small[5].size_bytes = wire + M / 2;
        small[5].next_interval_ms = 2000;
        small[6].next_interval_ms = 2000;
        assert!(!pass(&small));
        // Another size metric is refused outright.
        let wire_args = records::policy_args("--policy threshold --size-metric wire").unwrap();
        assert!(policy_check(&r, &wire_args).is_err());
    }
}
