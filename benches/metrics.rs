//! Metrics: does `--metrics`, scraped or not, slow the control path?
//!
//! `pipeline::run` with a real control FIFO, as in the consumer bench's
//! latency figure, but records handed straight to the controller's
//! channel: t0 when a record is sent, t1 when the control line it causes
//! is read from the FIFO. The records are sized so that the `target`
//! policy changes the interval on every one, and spaced 2 ms apart so
//! that scrapes land among them. Four runs in one process:
//!
//! - no --metrics (the baseline),
//! - the exporter running but never scraped,
//! - scraped at 1 Hz, and at 100 Hz, by a thread doing HTTP GETs.
//!
//! The figure is each run's p99 latency over the baseline's (a ratio in
//! one run: no absolute timing claim).

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use common::{percentile, sorted, verdict, Row};
use remus_ckpt::fifo;
use remus_ckpt::metrics::{Exporter, RunInfo};
use remus_ckpt::pipeline::{self, Controller};
use remus_ckpt::policy::{PolicyArgs, PolicyKind};
use remus_ckpt::record::Record;
use remus_ckpt::size::SizeMetric;

const SECTION: &str = "metrics";
const SPACING: Duration = Duration::from_millis(2);

fn main() -> Result<()> {
    let (records, rounds) = if common::quick() {
        (200, 1)
    } else {
        (1_500, 3)
    };
    let modes = [
        ("no --metrics", None),
        ("exporter on, never scraped", Some(0.0)),
        ("scraped at 1 Hz", Some(1.0)),
        ("scraped at 100 Hz", Some(100.0)),
    ];
    // Rounds alternate the modes, so that a machine busy for a while
    // weighs on all of them; each mode's figure is its median p99.
    let mut p99s = vec![Vec::new(); modes.len()];
    let mut scrapes = vec![0u64; modes.len()];
    for _ in 0..rounds {
        for (i, (_, scrape_hz)) in modes.iter().enumerate() {
            let (p99, n) = latency_p99(records, *scrape_hz)?;
            p99s[i].push(p99);
            scrapes[i] += n;
        }
    }
    let base = common::median(&p99s[0]);
    for (i, (case, _)) in modes.iter().enumerate().skip(1) {
        let p99 = common::median(&p99s[i]);
        let ratio = p99 / base;
        let scrapes = scrapes[i];
        Row {
            section: SECTION,
            case: &format!(
                "record -> control line p99 ms, --metrics {case} ({scrapes} scrapes; {rounds} rounds of n={records}, median)"
            ),
            value: format!("{:.3}", p99 / 1e6),
            baseline: format!("{:.3} (no --metrics)", base / 1e6),
            vs_baseline: format!("x{ratio:.2} ({:+.3} ms)", (p99 - base) / 1e6),
            target: "p99 within x1.5 of no --metrics",
            met: verdict(ratio <= 1.5, || format!("x{ratio:.2}")),
        }
        .print();
    }
    Ok(())
}

fn record(seq: u64, t_suspend_ns: u64, cmd_interval_ms: u32, bytes_sent: u64) -> Record {
    let pages = bytes_sent / 4104;
    Record {
        seq,
        domid: 7,
        live: seq == 0,
        page_size: 4096,
        dirty_pages: pages,
        pages_sent: pages,
        bytes_sent,
        t_suspend_ns,
        t_suspended_ns: t_suspend_ns + 400_000,
        t_resumed_ns: t_suspend_ns + 5_000_000,
        t_done_ns: t_suspend_ns + 5_100_000,
        interval_ms: cmd_interval_ms,
        cmd_interval_ms,
        stats_state: Some("ok".into()),
        ctl_state: Some("ok".into()),
        ..Record::default()
    }
}

/// p99 record -> control latency in ns, and the scrapes made; `scrape_hz`
/// None: no exporter; Some(0): exporter, no scraper.
fn latency_p99(records: u64, scrape_hz: Option<f64>) -> Result<(f64, u64)> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let control = dir.path().join("control");
    fifo::ensure_private_fifo(&control)?;
    let mut reader = fifo::open_reader(&control).context("open the control FIFO")?;

    let policy = PolicyArgs {
        policy: PolicyKind::Target,
        ..PolicyArgs::default()
    };
    let mut exporter = match scrape_hz {
        Some(_) => Some(Exporter::start(
            "127.0.0.1:0".parse()?,
            RunInfo {
                name: Some("bench".into()),
                disk: false,
                lmax_bytes: policy.lmax.0,
            },
        )?),
        None => None,
    };
    let (tx, rx) = crossbeam_channel::bounded(1024);
    let cfg = pipeline::Config {
        controller: Controller::new(policy.build()?, SizeMetric::Wire),
        lmax_bytes: policy.lmax.0,
        csv: None,
        control: Some(control.clone()),
        disk: None,
        quiet: true,
        metrics: exporter.as_mut().and_then(Exporter::handle),
    };
    let consumer = std::thread::spawn(move || pipeline::run(cfg, rx));

    let stop = Arc::new(AtomicBool::new(false));
    let scrapes = Arc::new(AtomicU64::new(0));
    let scraper = match (scrape_hz, &exporter) {
        (Some(hz), Some(e)) if hz > 0.0 => {
            let (addr, stop, scrapes) = (e.local_addr(), stop.clone(), scrapes.clone());
            Some(std::thread::spawn(move || {
                scrape_loop(addr, Duration::from_secs_f64(1.0 / hz), &stop, &scrapes)
            }))
        }
        _ => None,
    };

    let mut cmd_ms = read_control(&mut reader)?.context("no initial control line")?;
    let mut t_ns = 1_000_000_000u64;
    tx.send(record(0, t_ns, cmd_ms, 1 << 30))?;
    let mut latencies = Vec::with_capacity(usize::try_from(records)?);
    for seq in 1..=records {
        // As in the consumer bench: the dirty rate alternates, so the
        // target policy moves the interval on every record.
        let rate: u64 = if seq % 2 == 0 { 512 << 10 } else { 51 << 10 };
        t_ns += u64::from(cmd_ms) * 1_000_000;
        std::thread::sleep(SPACING);
        let t0 = Instant::now();
        tx.send(record(seq, t_ns, cmd_ms, rate * u64::from(cmd_ms)))?;
        match read_control(&mut reader)? {
            Some(ms) => {
                latencies.push(t0.elapsed().as_nanos() as f64);
                cmd_ms = ms;
            }
            None => bail!("record {seq} got no control line within 1 s"),
        }
    }
    drop(tx);
    stop.store(true, Ordering::Relaxed);
    if let Some(s) = scraper {
        s.join()
            .map_err(|_| anyhow::anyhow!("scraper panicked"))??;
    }
    consumer
        .join()
        .map_err(|_| anyhow::anyhow!("consumer panicked"))??;
    if let Some(e) = exporter {
        e.finish(Duration::ZERO, &stop)?;
    }
    Ok((
        percentile(&sorted(&latencies), 99.0),
        scrapes.load(Ordering::Relaxed),
    ))
}

fn scrape_loop(addr: SocketAddr, every: Duration, stop: &AtomicBool, n: &AtomicU64) -> Result<()> {
    while !stop.load(Ordering::Relaxed) {
        let mut s = TcpStream::connect(addr).context("connect to the exporter")?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nAccept: application/openmetrics-text\r\n\r\n")?;
        let mut body = Vec::new();
        s.read_to_end(&mut body)?;
        if !body.starts_with(b"HTTP/1.1 200") && !body.starts_with(b"HTTP/1.0 200") {
            bail!("scrape failed: {}", String::from_utf8_lossy(&body));
        }
        n.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(every);
    }
    Ok(())
}

/// The interval of the next control line, or None after 1 s.
fn read_control(reader: &mut File) -> Result<Option<u32>> {
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut text = String::new();
    let mut buf = [0u8; 512];
    while !text.ends_with('\n') {
        let left_ms = i32::try_from(
            deadline
                .saturating_duration_since(Instant::now())
                .as_millis(),
        )
        .unwrap_or(i32::MAX);
        if left_ms == 0 || fifo::poll_readable(reader, left_ms)? == 0 {
            return Ok(None);
        }
        match reader.read(&mut buf) {
            Ok(0) => std::thread::sleep(Duration::from_micros(200)),
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e).context("read the control FIFO"),
        }
    }
    let last = text.lines().last().unwrap_or_default();
    last.strip_prefix("interval_ms=")
        .and_then(|v| v.trim().parse().ok())
        .map(Some)
        .with_context(|| format!("not a control line: {last:?}"))
}
