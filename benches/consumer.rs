//! Consumer: how fast records go through, and how soon a control line
//! comes back.
//!
//! * Throughput, one thread: pre-formatted record lines (the C formatter's
//!   output, sizes varying around the band) fed in 64 KiB chunks through
//!   the line parser, the controller (size + policy, default threshold)
//!   and the CSV sink into a file, against raw line splitting of the same
//!   bytes. Alternating rounds, median.
//! * Latency, threads and real FIFOs: `pipeline::run` with the stats FIFO
//!   reader and a `ControlWriter` on a real control FIFO. Each record line
//!   is written to the stats FIFO (t0) and the control line it causes is
//!   read from the control FIFO (t1); t1 - t0, one record at a time. The
//!   records are sized so that the `target` policy (default parameters)
//!   changes the interval on every record, are spaced by the interval last
//!   received, and carry it as cmd_interval_ms, as the save side would.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use common::{median, percentile, sorted, verdict, Row};
use remus_ckpt::ffi;
use remus_ckpt::fifo;
use remus_ckpt::pipeline::{self, Controller};
use remus_ckpt::policy::{PolicyArgs, PolicyKind};
use remus_ckpt::row::CsvWriter;
use remus_ckpt::size::SizeMetric;
use remus_ckpt::source::stats_fifo::{self, LineParser, OnEof};

const SECTION: &str = "consumer";
const CHUNK_BYTES: usize = 64 * 1024;
const BASE_NS: u64 = 1_000_000_000;

fn main() -> Result<()> {
    let quick = common::quick();
    throughput(
        if quick { 20_000 } else { 200_000 },
        if quick { 3 } else { 7 },
    )?;
    latency(if quick { 200 } else { 2_000 })?;
    Ok(())
}

/// Record `seq` as the C library would write it: 50 ms apart, the wire
/// size cycling below, inside and above the default 4..16 MiB band.
fn record(seq: u64, cmd_interval_ms: u32, period_ns: u64, bytes_sent: u64) -> Result<String> {
    let pages = bytes_sent / 4104;
    let t_suspend = BASE_NS + seq * period_ns;
    let raw = ffi::remus_ckpt_record {
        seq,
        domid: 7,
        stream: ffi::remus_ckpt_stream_REMUS_CKPT_STREAM_REMUS,
        live: u32::from(seq == 0),
        page_size: 4096,
        dirty_pages: pages,
        pages_sent: pages,
        bytes_sent,
        t_gate: t_suspend - 1_000_000,
        t_suspend,
        t_suspended: t_suspend + 400_000,
        t_sent: t_suspend + 4_900_000,
        t_resumed: t_suspend + 5_000_000,
        t_done: t_suspend + 5_100_000,
        interval_ms: if seq == 0 { 0 } else { cmd_interval_ms },
        cmd_interval_ms,
        gate_wait_ns: 1_000_000,
        ..Default::default()
    };
    ffi::format_record(&raw).context("the C formatter refused a record")
}

fn controller(kind: PolicyKind) -> Result<Controller> {
    let args = PolicyArgs {
        policy: kind,
        ..PolicyArgs::default()
    };
    Ok(Controller::new(args.build()?, SizeMetric::Wire))
}

fn throughput(records: u64, rounds: usize) -> Result<()> {
    const SIZES: [u64; 5] = [2 << 20, 6 << 20, 12 << 20, 24 << 20, 3 << 20];
    let mut bytes = Vec::new();
    for seq in 0..records {
        let line = record(seq, 200, 50_000_000, SIZES[(seq % 5) as usize] + seq % 4096)?;
        bytes.extend_from_slice(line.as_bytes());
    }
    let dir = tempfile::tempdir().context("temporary directory")?;
    let csv_path = dir.path().join("bench.csv");

    let (mut full_s, mut nocsv_s, mut split_s) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let n = consume(&bytes, Some(&csv_path))?;
        full_s.push(t.elapsed().as_secs_f64());
        check_count(n, records)?;

        let t = Instant::now();
        let n = consume(&bytes, None)?;
        nocsv_s.push(t.elapsed().as_secs_f64());
        check_count(n, records)?;

        let t = Instant::now();
        let n = split_lines(&bytes);
        split_s.push(t.elapsed().as_secs_f64());
        check_count(n, records)?;
    }
    let rate = |s: &[f64]| records as f64 / median(s);
    let base = rate(&split_s);
    let full = rate(&full_s);
    let nocsv = rate(&nocsv_s);
    let baseline = format!("{:.0} rec/s (raw line split)", base);
    Row {
        section: SECTION,
        case: "records/s, parse -> size -> policy -> CSV file, one thread",
        value: format!("{full:.0} rec/s"),
        baseline: baseline.clone(),
        vs_baseline: format!("{:.1}% of split", 100.0 * full / base),
        target: ">= 500000 rec/s",
        met: verdict(full >= 500_000.0, || {
            format!(
                "by {:.0} rec/s, {:.0}% short",
                500_000.0 - full,
                100.0 * (1.0 - full / 500_000.0)
            )
        }),
    }
    .print();
    Row {
        section: SECTION,
        case: "records/s, parse -> size -> policy, no CSV (where the time goes)",
        value: format!("{nocsv:.0} rec/s"),
        baseline,
        vs_baseline: format!("{:.1}% of split", 100.0 * nocsv / base),
        target: "(informational)",
        met: "-".into(),
    }
    .print();
    eprintln!(
        "consumer: throughput: {records} records ({} bytes) x {rounds} rounds, median round; CSV file under {}",
        bytes.len(),
        std::env::temp_dir().display()
    );
    Ok(())
}

fn check_count(got: u64, want: u64) -> Result<()> {
    if got != want {
        bail!("{got} records came through, not {want}");
    }
    Ok(())
}

/// The consumer path on one thread: the number of rows written.
fn consume(bytes: &[u8], csv: Option<&Path>) -> Result<u64> {
    let mut parser = LineParser::default();
    let mut controller = controller(PolicyKind::Threshold)?;
    let mut sink = csv.map(CsvWriter::create).transpose()?;
    let mut rows = 0u64;
    for chunk in bytes.chunks(CHUNK_BYTES) {
        for parsed in parser.feed(chunk) {
            let rec = parsed.map_err(|m| anyhow::anyhow!("line {}: {}", m.line_no, m.error))?;
            let step = controller.on_record(&rec, Default::default());
            match &mut sink {
                Some(sink) => sink.write(&step.row)?,
                None => {
                    std::hint::black_box(&step);
                }
            }
            rows += 1;
        }
    }
    if let Some(sink) = sink {
        sink.finish()?;
    }
    Ok(rows)
}

/// The baseline: the same chunks split into lines, nothing else.
fn split_lines(bytes: &[u8]) -> u64 {
    let mut lines = 0u64;
    let mut line_bytes = 0usize;
    for chunk in bytes.chunks(CHUNK_BYTES) {
        for piece in chunk.split_inclusive(|b| *b == b'\n') {
            line_bytes += piece.len();
            if piece.ends_with(b"\n") {
                lines += 1;
            }
        }
    }
    std::hint::black_box(line_bytes);
    lines
}

fn latency(records: u64) -> Result<()> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let stats = dir.path().join("stats");
    let control = dir.path().join("control");
    fifo::ensure_private_fifo(&stats)?;
    fifo::ensure_private_fifo(&control)?;
    // The save side's end of the control FIFO, open before the writer.
    let mut ctl_reader = fifo::open_reader(&control).context("open the control FIFO")?;

    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = crossbeam_channel::bounded(1024);
    let source = stats_fifo::spawn(stats.clone(), OnEof::Stop, stop.clone(), tx)?;
    let cfg = pipeline::Config {
        controller: controller(PolicyKind::Target)?,
        lmax_bytes: PolicyArgs::default().lmax.0,
        csv: Some(dir.path().join("latency.csv")),
        control: Some(control.clone()),
        disk: None,
        quiet: true,
        metrics: None,
    };
    let consumer = std::thread::Builder::new()
        .name("consumer".into())
        .spawn(move || pipeline::run(cfg, rx))
        .context("spawn the consumer")?;

    // The initial interval comes first.
    let mut cmd_ms = read_control(&mut ctl_reader, 2_000)?.context("no initial control line")?;
    let mut stats_writer: File = loop {
        if let Some(f) = fifo::open_writer(&stats)? {
            break f;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    };

    // The live round: its size says nothing, the interval stays (no line).
    stats_writer
        .write_all(record(0, cmd_ms, 0, 1 << 30)?.as_bytes())
        .context("write to the stats FIFO")?;
    if let Some(ms) = read_control(&mut ctl_reader, 50)? {
        cmd_ms = ms;
    }

    let mut latencies_ns = Vec::with_capacity(usize::try_from(records)?);
    let mut missing = 0u64;
    let mut t_ns = 0u64;
    for seq in 1..=records {
        // The guest's dirty rate alternates between 0.5 and 0.05 MiB per
        // ms of period: the target policy's rate estimate (rises taken at
        // once, falls averaged) and so its interval move on every record
        // (about 20 and 27 ms), inside [tmin, tmax].
        let rate_bytes_per_ms: u64 = if seq % 2 == 0 { 512 << 10 } else { 51 << 10 };
        let bytes_sent = rate_bytes_per_ms * u64::from(cmd_ms);
        t_ns += u64::from(cmd_ms) * 1_000_000;
        let line = record(seq, cmd_ms, 0, bytes_sent)?.replace(
            &format!(" t_suspend={BASE_NS} "),
            &format!(" t_suspend={} ", BASE_NS + t_ns),
        );
        let t0 = Instant::now();
        stats_writer
            .write_all(line.as_bytes())
            .context("write to the stats FIFO")?;
        match read_control(&mut ctl_reader, 500)? {
            Some(ms) => {
                latencies_ns.push(t0.elapsed().as_nanos() as f64);
                cmd_ms = ms;
            }
            None => missing += 1,
        }
    }
    drop(stats_writer);
    let outcome = consumer
        .join()
        .map_err(|_| anyhow::anyhow!("consumer thread panicked"))??;
    stop.store(true, Ordering::Relaxed);
    source
        .join()
        .map_err(|_| anyhow::anyhow!("stats reader panicked"))??;

    let echo_ns = echo_latencies_ns(records)?;
    let stats3 = |v: &[f64]| {
        let s = sorted(v);
        (
            percentile(&s, 50.0),
            percentile(&s, 99.0),
            s.last().copied().unwrap_or(f64::NAN),
        )
    };
    let (p50, p99, max) = stats3(&latencies_ns);
    let (e50, e99, emax) = stats3(&echo_ns);
    let answered = if missing > 0 {
        format!("; {missing} record(s) without a control line")
    } else {
        String::new()
    };
    Row {
        section: SECTION,
        case: &format!(
            "record in -> control line out, real FIFOs, threaded pipeline::run; p50/p99/max ms (n={})",
            latencies_ns.len()
        ),
        value: format!("{:.3} / {:.3} / {:.3}", p50 / 1e6, p99 / 1e6, max / 1e6),
        baseline: format!(
            "{:.3} / {:.3} / {:.3} (echo thread, same FIFOs)",
            e50 / 1e6,
            e99 / 1e6,
            emax / 1e6
        ),
        vs_baseline: format!("p99 {:+.3} ms{answered}", (p99 - e99) / 1e6),
        target: "p99 <= 1 ms",
        met: verdict(p99 <= 1e6 && missing == 0, || {
            if missing > 0 {
                format!("{missing} unanswered")
            } else {
                format!("by {:.3} ms", (p99 - 1e6) / 1e6)
            }
        }),
    }
    .print();
    eprintln!(
        "consumer: latency run: {} checkpoints, {} control lines written by the pipeline",
        outcome.checkpoints, outcome.control_lines
    );
    Ok(())
}

/// The baseline: the same two kinds of FIFO with a thread that answers
/// every line read from one with a fixed line on the other (no parsing,
/// no policy, no channels), timed the same way.
fn echo_latencies_ns(records: u64) -> Result<Vec<f64>> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let stats = dir.path().join("stats");
    let control = dir.path().join("control");
    fifo::ensure_private_fifo(&stats)?;
    fifo::ensure_private_fifo(&control)?;
    let mut ctl_reader = fifo::open_reader(&control).context("open the control FIFO")?;
    let mut stats_reader = fifo::open_reader(&stats).context("open the stats FIFO")?;
    let mut ctl_writer = fifo::open_writer(&control)?.context("no reader on the control FIFO")?;
    let mut stats_writer = fifo::open_writer(&stats)?.context("no reader on the stats FIFO")?;
    let echo = std::thread::Builder::new()
        .name("echo".into())
        .spawn(move || -> Result<()> {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                if fifo::poll_readable(&stats_reader, 1_000)? == 0 {
                    continue;
                }
                match stats_reader.read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(_) => ctl_writer
                        .write_all(b"interval_ms=20\n")
                        .context("echo a control line")?,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e).context("read the stats FIFO"),
                }
            }
        })
        .context("spawn the echo thread")?;
    let line = record(1, 20, 20_000_000, 10 << 20)?;
    let mut latencies_ns = Vec::with_capacity(usize::try_from(records)?);
    for _ in 0..records {
        let t0 = Instant::now();
        stats_writer
            .write_all(line.as_bytes())
            .context("write to the stats FIFO")?;
        if read_control(&mut ctl_reader, 500)?.is_some() {
            latencies_ns.push(t0.elapsed().as_nanos() as f64);
        }
    }
    drop(stats_writer);
    echo.join()
        .map_err(|_| anyhow::anyhow!("echo thread panicked"))??;
    Ok(latencies_ns)
}

/// Waits up to `timeout_ms` for control lines; returns the newest interval.
fn read_control(reader: &mut File, timeout_ms: i32) -> Result<Option<u32>> {
    let deadline =
        Instant::now() + std::time::Duration::from_millis(u64::try_from(timeout_ms.max(0))?);
    let mut text = String::new();
    let mut buf = [0u8; 512];
    loop {
        let left_ms = i32::try_from(
            deadline
                .saturating_duration_since(Instant::now())
                .as_millis(),
        )
        .unwrap_or(i32::MAX);
        if fifo::poll_readable(reader, left_ms.max(0))? == 0 {
            return Ok(None);
        }
        match reader.read(&mut buf) {
            Ok(0) => {
                if left_ms <= 0 {
                    return Ok(None);
                }
                // No writer yet (or between opens): wait a little.
                std::thread::sleep(std::time::Duration::from_micros(200));
                continue;
            }
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e).context("read the control FIFO"),
        }
        if text.ends_with('\n') {
            let last = text.lines().last().unwrap_or_default();
            let ms = last
                .strip_prefix("interval_ms=")
                .and_then(|v| v.trim().parse().ok())
                .with_context(|| format!("not a control line: {last:?}"))?;
            return Ok(Some(ms));
        }
    }
}
