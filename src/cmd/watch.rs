//! `remus-ckpt watch`: attach to a save helper already running with the
//! patched libxenguest and REMUS_CKPT_STATS / REMUS_CKPT_CONTROL set.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use clap::Args;

use crate::disk::{DiskArgs, DiskBackends, DiskMeter};
use crate::fifo;
use crate::metrics::{Exporter, MetricsArgs, MetricsHandle, RunInfo};
use crate::pipeline::{self, Controller, Outcome};
use crate::policy::PolicyArgs;
use crate::source::stats_fifo::{self, OnEof};

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Stats FIFO the save side writes records to (REMUS_CKPT_STATS);
    /// created 0600 if absent.
    #[arg(long, value_name = "PATH")]
    pub stats: PathBuf,

    /// Control FIFO the save side reads intervals from (REMUS_CKPT_CONTROL);
    /// created 0600 if absent. Without it, records are only observed.
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,

    #[command(flatten)]
    pub policy: PolicyArgs,

    #[command(flatten)]
    pub disk: DiskArgs,

    #[command(flatten)]
    pub metrics: MetricsArgs,

    /// Where to write one row per checkpoint.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,

    /// No live status line.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: &WatchArgs) -> Result<()> {
    let stop = super::stop_on_signals()?;
    fifo::ensure_private_fifo(&args.stats)?;
    if let Some(control) = &args.control {
        fifo::ensure_private_fifo(control)?;
    }
    if args.csv.is_none() {
        eprintln!("remus-ckpt: no --csv given: checkpoints are shown, not saved");
    }
    let mut exporter = start_metrics(&args.metrics, &args.policy, &args.disk, None)?;
    let outcome = consume(
        &args.policy,
        &args.disk,
        args.stats.clone(),
        args.control.clone(),
        args.csv.clone(),
        args.quiet,
        stop,
        exporter.as_mut().and_then(Exporter::handle),
    )?;
    print_outcome(&outcome, args.policy.lmax.0);
    finish_metrics(exporter, &args.metrics)?;
    if let Some(error) = &outcome.csv_error {
        bail!("the CSV was not fully written: {error}");
    }
    Ok(())
}

/// Starts the `--metrics` exporter, if asked for. Shared by `watch` and `run`.
pub fn start_metrics(
    args: &MetricsArgs,
    policy: &PolicyArgs,
    disk: &DiskArgs,
    name: Option<String>,
) -> Result<Option<Exporter>> {
    let info = RunInfo {
        name,
        disk: !disk.disk.is_empty(),
        lmax_bytes: policy.lmax.0,
    };
    Exporter::from_args(args, info)
}

/// Serves the final metrics for --metrics-linger (a signal cuts it
/// short), then stops the exporter.
pub fn finish_metrics(exporter: Option<Exporter>, args: &MetricsArgs) -> Result<()> {
    match exporter {
        Some(exporter) => exporter.finish(args.metrics_linger.0, &*super::stop_on_signals()?),
        None => Ok(()),
    }
}

/// Reads records from `stats` until `stop` is set, steering through
/// `control` if given. Shared by `watch` and `run`.
#[allow(clippy::too_many_arguments)]
pub fn consume(
    policy: &PolicyArgs,
    disk: &DiskArgs,
    stats: PathBuf,
    control: Option<PathBuf>,
    csv: Option<PathBuf>,
    quiet: bool,
    stop: Arc<AtomicBool>,
    metrics: Option<MetricsHandle>,
) -> Result<Outcome> {
    let policy_box = policy.build()?;
    let meter = if disk.disk.is_empty() {
        None
    } else {
        let meter = DiskMeter::open(&disk.disk, &DiskBackends::default())?;
        eprintln!(
            "remus-ckpt: disk side from {}",
            meter.source_names().join(", ")
        );
        Some(meter)
    };
    let (tx, rx) = crossbeam_channel::bounded(1024);
    let reader = stats_fifo::spawn(stats, OnEof::Reopen, Arc::clone(&stop), tx)?;
    let cfg = pipeline::Config {
        controller: Controller::new(policy_box, policy.size_metric),
        lmax_bytes: policy.lmax.0,
        csv,
        control,
        disk: meter,
        quiet,
        metrics,
    };
    let outcome = pipeline::run(cfg, rx);
    stop.store(true, Ordering::Relaxed);
    reader
        .join()
        .map_err(|_| anyhow!("the stats reader panicked"))??;
    outcome
}

pub fn print_outcome(outcome: &Outcome, lmax_bytes: u64) {
    let mut extra = String::new();
    if outcome.control_pending {
        extra.push_str(" (the last interval never reached the save side)");
    }
    if outcome.csv_rows_dropped > 0 {
        extra.push_str(&format!(
            ", {} CSV rows dropped (the CSV destination was too slow)",
            outcome.csv_rows_dropped
        ));
    }
    if let Some(error) = &outcome.csv_error {
        extra.push_str(&format!(", CSV error: {error}"));
    }
    if outcome.notes_dropped > 0 {
        extra.push_str(&format!(
            ", {} warnings not shown (stderr was not keeping up)",
            outcome.notes_dropped
        ));
    }
    eprintln!(
        "remus-ckpt: {} checkpoints, {} above Lmax ({}), {} records lost, {} control lines sent{extra}",
        outcome.checkpoints,
        outcome.over_lmax,
        crate::units::format_bytes(lmax_bytes),
        outcome.lost,
        outcome.control_lines,
    );
}
