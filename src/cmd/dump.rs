//! `remus-ckpt dump`: records as a table a person can read.

use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use clap::Args;

use crate::record::Record;
use crate::source::stats_fifo::{self, OnEof};

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// A stats FIFO, a file of record lines, or `-` for stdin.
    pub path: PathBuf,

    /// On a FIFO: keep reading when the writer goes away (until Ctrl-C).
    #[arg(long, short)]
    pub follow: bool,
}

const HEADER: &str = "     seq live  dirty_pg   sent_pg   bytes_sent  pause_ms   ckpt_ms  period_ms  gate_ms  ivl/cmd_ms  dropped";

fn line(rec: &Record, prev_suspend_ns: Option<u64>) -> String {
    let period = match prev_suspend_ns {
        Some(p) if rec.t_suspend_ns > p => format!("{:>9.1}", (rec.t_suspend_ns - p) as f64 / 1e6),
        _ => format!("{:>9}", "-"),
    };
    format!(
        "{:>8} {:>4} {:>9} {:>9} {:>12} {:>9.1} {:>9.1} {} {:>8.1} {:>5}/{:<5} {:>7}",
        rec.seq,
        u8::from(rec.live),
        rec.dirty_pages,
        rec.pages_sent,
        rec.bytes_sent,
        rec.pause_ns() as f64 / 1e6,
        rec.checkpoint_ns() as f64 / 1e6,
        period,
        rec.gate_wait_ns as f64 / 1e6,
        rec.interval_ms,
        rec.cmd_interval_ms,
        rec.dropped
    )
}

pub fn run(args: &DumpArgs) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "{HEADER}").map_err(super::stdout_error)?;
    let mut prev = None;
    let mut print = |rec: &Record, out: &mut dyn Write| -> Result<()> {
        writeln!(out, "{}", line(rec, prev)).map_err(super::stdout_error)?;
        prev = Some(rec.t_suspend_ns);
        Ok(())
    };

    let is_fifo = args.path.as_os_str() != "-"
        && std::fs::metadata(&args.path)
            .with_context(|| format!("cannot open {}", args.path.display()))?
            .file_type()
            .is_fifo();
    if is_fifo {
        let stop = super::stop_on_signals()?;
        // Bounded: a slow terminal makes the reader wait, and the save
        // side drop (and count) records, rather than this process grow.
        let (tx, rx) = crossbeam_channel::bounded(1024);
        let on_eof = if args.follow {
            OnEof::Reopen
        } else {
            OnEof::Stop
        };
        let reader = stats_fifo::spawn(args.path.clone(), on_eof, Arc::clone(&stop), tx)?;
        for rec in rx {
            print(&rec, &mut out)?;
        }
        return reader.join().map_err(|_| anyhow!("the reader panicked"))?;
    }

    // Files and stdin go through the same bounded line reader as the FIFO.
    let input: Box<dyn Read> = if args.path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            std::fs::File::open(&args.path)
                .with_context(|| format!("cannot open {}", args.path.display()))?,
        )
    };
    stats_fifo::read_records(input, &args.path, |rec| print(&rec, &mut out))?;
    Ok(())
}
