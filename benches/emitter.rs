//! Emitter: what one checkpoint record costs the save side.
//!
//! * ns per record of the C hook set Xen calls per checkpoint
//!   (gate without an interval, the three marks, dirty, wrote, emit) and of
//!   `remus_ckpt_emit` alone, both writing to a stats FIFO that a reader
//!   thread drains, against a bare `write(2)` of the same line into the same
//!   FIFO. Rounds of the three alternate; the median round is reported.
//! * ns per `remus_ckpt_emit` to a `fd:N` SOCK_SEQPACKET / SOCK_DGRAM
//!   socket (send(MSG_DONTWAIT|MSG_NOSIGNAL): no SIGPIPE mask around it)
//!   against a bare send(2) of the same line on the same socket.
//! * heap allocations per record: benches/c/alloc_driver.c, built with
//!   csrc/remus_ckpt.c, run under valgrind memcheck for K and 2K
//!   checkpoints; (allocs(2K) - allocs(K)) / K.

mod common;

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use common::{median, verdict, Row};
use remus_ckpt::ffi::{self, Ckpt, CkptStream, Mark};
use remus_ckpt::fifo;

const SECTION: &str = "emitter";
/// Pipe buffer for the stats FIFO, so a reader descheduled for a moment
/// (two cores shared with other work) does not turn writes into drops.
const PIPE_BYTES: i32 = 1 << 20;
/// Records timed back to back: 1000 lines of ~340 bytes fit the pipe.
const BATCH: u64 = 1000;

/// Waits (untimed) until the reader has emptied the FIFO `fd` writes to.
fn wait_empty(fd: i32) -> Result<()> {
    for _ in 0..100_000 {
        let mut queued: libc::c_int = 0;
        // SAFETY: FIONREAD on an open pipe fd writes one c_int.
        if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut queued) } != 0 {
            return Err(std::io::Error::last_os_error()).context("FIONREAD on the stats FIFO");
        }
        if queued == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_micros(50));
    }
    bail!("the drain thread did not empty the stats FIFO")
}

fn main() -> Result<()> {
    let (rounds, per_round) = if common::quick() {
        (3, 2_000)
    } else {
        (21, 20_000)
    };
    timing(rounds, per_round)?;
    for (ty, name) in [
        (libc::SOCK_SEQPACKET, "SOCK_SEQPACKET"),
        (libc::SOCK_DGRAM, "SOCK_DGRAM"),
    ] {
        socket_timing(ty, name, rounds, per_round)?;
    }
    allocations()?;
    Ok(())
}

/// Drains the FIFO until `stop`; returns the bytes read.
fn spawn_reader(
    path: &Path,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<Result<u64>>> {
    let mut file =
        fifo::open_reader(path).with_context(|| format!("open {} for reading", path.display()))?;
    // SAFETY: F_SETPIPE_SZ on a FIFO fd we own; failure only leaves the
    // default 64 KiB buffer, which is checked through the drop counts.
    let _ = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES) };
    let handle = std::thread::Builder::new()
        .name("drain".into())
        .spawn(move || -> Result<u64> {
            let mut buf = vec![0u8; 256 * 1024];
            let mut total_bytes = 0u64;
            loop {
                let revents = fifo::poll_readable(&file, 20).context("poll on the stats FIFO")?;
                if revents == 0 {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(total_bytes);
                    }
                    continue;
                }
                match file.read(&mut buf) {
                    Ok(n) => total_bytes += n as u64,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e).context("read the stats FIFO"),
                }
                // POLLHUP with nothing left: every writer closed.
                if revents & libc::POLLHUP != 0 && stop.load(Ordering::Relaxed) {
                    return Ok(total_bytes);
                }
            }
        })
        .context("spawn the drain thread")?;
    Ok(handle)
}

/// The hooks the patched save loop calls for one Remus checkpoint.
fn checkpoint(ckpt: &mut Ckpt, i: u64) {
    ckpt.gate(false);
    ckpt.mark(Mark::Suspended);
    ckpt.dirty(1830 + i % 1000, 0);
    ckpt.wrote(7_541_112 + i % 1000, 1830 + i % 1000);
    ckpt.mark(Mark::Sent);
    ckpt.mark(Mark::Resumed);
    ckpt.emit();
}

fn dropped(ckpt: &Ckpt) -> u64 {
    ckpt.last().map_or(0, |r| r.dropped)
}

fn timing(rounds: usize, per_round: u64) -> Result<()> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let path = dir.path().join("stats");
    fifo::ensure_private_fifo(&path)?;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = spawn_reader(&path, stop.clone())?;

    let spec = path.to_str().context("temporary path is not UTF-8")?;
    let Some(mut ckpt) = Ckpt::open_with(1, CkptStream::Remus, 4096, Some(spec), None)? else {
        bail!("the C library stayed unconfigured with a stats path");
    };
    // Warm up (opens the path, faults in the code) and take a real line.
    ckpt.gate(true);
    ckpt.emit();
    for i in 0..1000 {
        checkpoint(&mut ckpt, i);
    }
    let line = ckpt
        .last()
        .and_then(|r| ffi::format_record(&r))
        .context("the C formatter refused a record")?;
    let line = line.as_bytes();

    let writer: File = fifo::open_writer(&path)?.context("no reader on the stats FIFO")?;
    let fd = writer.as_raw_fd();
    let bare_write = |eagain: &mut u64| {
        // SAFETY: fd is an open FIFO for writing (writer lives across the
        // call); line is a valid buffer of line.len() bytes.
        let n = unsafe { libc::write(fd, line.as_ptr().cast(), line.len()) };
        if usize::try_from(n).ok() != Some(line.len()) {
            *eagain += 1;
        }
    };

    let rec = ckpt.last().context("no record after warm-up")?;
    let mut buf = [0u8; ffi::REMUS_CKPT_RECORD_MAX as usize + 1];
    let mut format_only = || {
        // SAFETY: rec is a valid record; buf is writable for buf.len() bytes.
        unsafe { ffi::remus_ckpt_format(&rec, buf.as_mut_ptr().cast(), buf.len()) }
    };

    // Records are timed in batches that fit the pipe buffer; between
    // batches (untimed) we wait for the reader to empty the pipe, so that
    // neither side measures EAGAIN fast paths instead of writes.
    let batches = per_round.div_ceil(BATCH);
    let empty = || wait_empty(fd);
    let (mut hooks_ns, mut emit_ns, mut write_ns, mut format_ns) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut hooks_dropped, mut emit_dropped, mut write_failed) = (0u64, 0u64, 0u64);
    let mut i = 0u64;
    for _ in 0..rounds {
        let before = dropped(&ckpt);
        let mut ns = 0u128;
        for _ in 0..batches {
            empty()?;
            let t = Instant::now();
            for _ in 0..BATCH {
                checkpoint(&mut ckpt, i);
                i += 1;
            }
            ns += t.elapsed().as_nanos();
        }
        hooks_ns.push(ns as f64 / (batches * BATCH) as f64);
        hooks_dropped += dropped(&ckpt) - before;

        let before = dropped(&ckpt);
        let mut ns = 0u128;
        for _ in 0..batches {
            empty()?;
            let t = Instant::now();
            for _ in 0..BATCH {
                ckpt.emit();
            }
            ns += t.elapsed().as_nanos();
        }
        emit_ns.push(ns as f64 / (batches * BATCH) as f64);
        emit_dropped += dropped(&ckpt) - before;

        let mut ns = 0u128;
        for _ in 0..batches {
            empty()?;
            let t = Instant::now();
            for _ in 0..BATCH {
                bare_write(&mut write_failed);
            }
            ns += t.elapsed().as_nanos();
        }
        write_ns.push(ns as f64 / (batches * BATCH) as f64);

        let t = Instant::now();
        for _ in 0..per_round {
            std::hint::black_box(format_only());
        }
        format_ns.push(t.elapsed().as_nanos() as f64 / per_round as f64);
    }
    drop(writer);
    drop(ckpt);
    stop.store(true, Ordering::Relaxed);
    let drained_bytes = reader
        .join()
        .map_err(|_| anyhow::anyhow!("drain thread panicked"))??;

    let total = rounds as u64 * batches * BATCH;
    let base = median(&write_ns);
    let note = |d: u64| {
        if d > 0 {
            format!("; {d} of {total} not written (pipe full)")
        } else {
            String::new()
        }
    };
    for (case, ns, drops) in [
        (
            "ns/record, full hook set (gate no interval, 3 marks, dirty, wrote, emit) vs bare write(2)",
            median(&hooks_ns),
            hooks_dropped,
        ),
        (
            "ns/record, remus_ckpt_emit alone vs bare write(2)",
            median(&emit_ns),
            emit_dropped,
        ),
    ] {
        let ratio = ns / base;
        Row {
            section: SECTION,
            case,
            value: format!("{ns:.0} ns{}", note(drops)),
            baseline: format!("{base:.0} ns{}", note(write_failed)),
            vs_baseline: format!("{ratio:.2}x"),
            target: "<= 2x bare write",
            met: verdict(ratio <= 2.0, || {
                format!("by {:.2}x, {:.0} ns over", ratio - 2.0, ns - 2.0 * base)
            }),
        }
        .print();
    }
    // Where the time goes: the formatting alone, no I/O (informational).
    let ns = median(&format_ns);
    Row {
        section: SECTION,
        case: "ns/record, remus_ckpt_format alone (no I/O; part of emit) vs bare write(2)",
        value: format!("{ns:.0} ns"),
        baseline: format!("{base:.0} ns"),
        vs_baseline: format!("{:.2}x", ns / base),
        target: "(informational)",
        met: "-".into(),
    }
    .print();
    eprintln!(
        "emitter: {rounds} rounds x {} records each (batches of {BATCH}, pipe emptied between batches), {} line bytes, {drained_bytes} bytes drained",
        batches * BATCH,
        line.len()
    );
    Ok(())
}

/// Records timed back to back on a socket: well under what a Unix socket
/// queues by default (about 200 messages), so none is dropped.
const SOCK_BATCH: u64 = 100;

/// Drains `peer` until `stop`.
fn spawn_socket_reader(
    peer: OwnedFd,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 20_000,
    };
    // SAFETY: SO_RCVTIMEO on a socket we own, from a valid timeval.
    let r = unsafe {
        libc::setsockopt(
            peer.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            libc::socklen_t::try_from(std::mem::size_of::<libc::timeval>())?,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).context("SO_RCVTIMEO on the peer socket");
    }
    std::thread::Builder::new()
        .name("sock-drain".into())
        .spawn(move || {
            let mut buf = [0u8; 1024];
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: buf is writable for its length; peer is open.
                unsafe { libc::recv(peer.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            }
        })
        .context("spawn the socket drain thread")
}

/// Emit to a stats socket (`fd:N`) against a bare send(2) of the same line.
fn socket_timing(ty: libc::c_int, name: &str, rounds: usize, per_round: u64) -> Result<()> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors socketpair writes.
    if unsafe { libc::socketpair(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) } != 0
    {
        return Err(std::io::Error::last_os_error()).context("socketpair");
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    let (ours, peer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let stop = Arc::new(AtomicBool::new(false));
    let reader = spawn_socket_reader(peer, stop.clone())?;

    let spec = format!("fd:{}", ours.as_raw_fd());
    let Some(mut ckpt) = Ckpt::open_with(1, CkptStream::Remus, 4096, Some(&spec), None)? else {
        bail!("the C library stayed unconfigured with a stats socket");
    };
    ckpt.gate(true);
    ckpt.emit();
    let line = ckpt
        .last()
        .and_then(|r| ffi::format_record(&r))
        .context("the C formatter refused a record")?;
    let line = line.as_bytes();
    let fd = ours.as_raw_fd();
    // Waits (untimed) until the reader has taken every message sent.
    let wait = || -> Result<()> {
        for _ in 0..100_000 {
            let mut queued: libc::c_int = 0;
            // SAFETY: SIOCOUTQ (TIOCOUTQ) on an open socket writes one c_int.
            if unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) } != 0 {
                return Err(std::io::Error::last_os_error()).context("SIOCOUTQ on the socket");
            }
            if queued == 0 {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
        bail!("the drain thread did not empty the socket")
    };

    let batches = per_round.div_ceil(SOCK_BATCH);
    let (mut emit_ns, mut send_ns) = (Vec::new(), Vec::new());
    let (mut emit_dropped, mut send_failed) = (0u64, 0u64);
    for _ in 0..rounds {
        let mut ns = 0u128;
        for _ in 0..batches {
            wait()?;
            let before = dropped(&ckpt);
            let t = Instant::now();
            for _ in 0..SOCK_BATCH {
                ckpt.emit();
            }
            ns += t.elapsed().as_nanos();
            emit_dropped += dropped(&ckpt) - before;
        }
        emit_ns.push(ns as f64 / (batches * SOCK_BATCH) as f64);

        let mut ns = 0u128;
        for _ in 0..batches {
            wait()?;
            let t = Instant::now();
            for _ in 0..SOCK_BATCH {
                // SAFETY: fd is our open socket; line is a valid buffer.
                let n = unsafe {
                    libc::send(
                        fd,
                        line.as_ptr().cast(),
                        line.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                if usize::try_from(n).ok() != Some(line.len()) {
                    send_failed += 1;
                }
            }
            ns += t.elapsed().as_nanos();
        }
        send_ns.push(ns as f64 / (batches * SOCK_BATCH) as f64);
    }
    drop(ckpt);
    stop.store(true, Ordering::Relaxed);
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("socket drain thread panicked"))?;

    let (ns, base) = (median(&emit_ns), median(&send_ns));
    let ratio = ns / base;
    let total = rounds as u64 * batches * SOCK_BATCH;
    let note = |d: u64| {
        if d > 0 {
            format!("; {d} of {total} not sent (socket full)")
        } else {
            String::new()
        }
    };
    Row {
        section: SECTION,
        case: &format!("ns/record, remus_ckpt_emit alone to a {name} fd:N vs bare send(2)"),
        value: format!("{ns:.0} ns{}", note(emit_dropped)),
        baseline: format!("{base:.0} ns{}", note(send_failed)),
        vs_baseline: format!("{ratio:.2}x"),
        target: "<= 2x bare send",
        met: verdict(ratio <= 2.0, || {
            format!("by {:.2}x, {:.0} ns over", ratio - 2.0, ns - 2.0 * base)
        }),
    }
    .print();
    Ok(())
}

/// Heap allocations per record, from valgrind on the C driver.
fn allocations() -> Result<()> {
    let row = |value: String, met: String| Row {
        section: SECTION,
        case: "heap allocations per record, full hook set (valgrind memcheck, K=1000 vs 2K)",
        value,
        baseline: "0".into(),
        vs_baseline: "-".into(),
        target: "0",
        met,
    };
    match count_allocations(1000) {
        Ok(per_record) => row(
            format!("{per_record}"),
            verdict(per_record == 0.0, || format!("{per_record} per record")),
        )
        .print(),
        Err(e) => row("not measured".into(), format!("not measured: {e:#}")).print(),
    }
    Ok(())
}

fn count_allocations(k: u64) -> Result<f64> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().context("temporary directory")?;
    let exe = dir.path().join("alloc_driver");
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args([
            "-O2",
            "-g",
            "-std=c99",
            "-D_GNU_SOURCE",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-I",
        ])
        .arg(root.join("csrc"))
        .arg(root.join("csrc/remus_ckpt.c"))
        .arg(root.join("benches/c/alloc_driver.c"))
        .arg("-o")
        .arg(&exe)
        .status()
        .context("run the C compiler (cc) for benches/c/alloc_driver.c")?;
    if !status.success() {
        bail!("building benches/c/alloc_driver.c failed ({status})");
    }
    let mut allocs = Vec::new();
    for (n, checkpoints) in [k, 2 * k].into_iter().enumerate() {
        let out = Command::new("valgrind")
            .args(["--tool=memcheck", "--error-exitcode=3"])
            .arg(&exe)
            .arg(checkpoints.to_string())
            .arg(dir.path().join(format!("stats{n}")))
            .output()
            .context("run valgrind (apt-get install valgrind)")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!(
                "valgrind alloc_driver {checkpoints} failed ({}): {stderr}",
                out.status
            );
        }
        if !stdout.contains(" dropped=0 ") {
            bail!("records were dropped, the write path was not measured: {stdout}");
        }
        allocs.push(
            parse_allocs(&stderr)
                .with_context(|| format!("no heap summary in valgrind output: {stderr}"))?,
        );
    }
    eprintln!(
        "emitter: valgrind total heap usage: {} allocs for {k} checkpoints, {} for {}",
        allocs[0],
        allocs[1],
        2 * k
    );
    Ok((allocs[1] as f64 - allocs[0] as f64) / k as f64)
}

/// "==123==   total heap usage: 3 allocs, 3 frees, 4,612 bytes allocated"
fn parse_allocs(valgrind_stderr: &str) -> Option<u64> {
    let line = valgrind_stderr
        .lines()
        .find(|l| l.contains("total heap usage:"))?;
    let after = line.split("total heap usage:").nth(1)?;
    after
        .split_whitespace()
        .next()?
        .replace(',', "")
        .parse()
        .ok()
}
